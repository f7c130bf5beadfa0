//! Test plugin: scores from the window context of WIT 0.2.0, so a host test can tell it
//! arrived. Written as one whole-window `score` function (no `score_item`).
//!
//! Item `k` scores `1000 · top_n + (slide_ms / 1000) + boost + 100 · [tag == "hot"] +
//! len(id) / 100`, where `boost` and `tag` are the declared features of those names (0 and ""
//! when not declared). With params `{"report": true}` the call fails with
//! `tenant=<t> scenario=<s> slide=<ms> top_n=<n> ids=<id,id,...> features=<name,name,...>`,
//! which the host reports as the plugin's error.

use rtscore_guest::{Batch, Feature, Scorer};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    pub report: bool,
}

pub struct Context {
    report: bool,
}

impl Scorer for Context {
    type Params = Params;

    fn new(p: Params) -> Result<Self, String> {
        Ok(Self { report: p.report })
    }

    fn score(&self, batch: &Batch<'_>, out: &mut Vec<f64>) -> Result<(), String> {
        if self.report {
            let names: Vec<&str> = batch.features().iter().map(|c| c.name.as_str()).collect();
            return Err(format!(
                "tenant={} scenario={} slide={} top_n={} ids={} features={}",
                batch.tenant_id(),
                batch.scenario_id(),
                batch.slide_ms(),
                batch.top_n(),
                batch.item_ids().collect::<Vec<_>>().join(","),
                names.join(",")
            ));
        }
        // Columns looked up once per window, indexed per item.
        let boost = batch.feature("boost").and_then(Feature::numbers);
        let tag = batch.feature("tag").and_then(Feature::texts);
        let base = 1000.0 * f64::from(batch.top_n()) + batch.slide_ms() as f64 / 1000.0;
        out.extend(batch.items().map(|item| {
            let k = item.index();
            let boost = boost.map_or(0.0, |v| v[k]);
            let hot = if tag.is_some_and(|v| v[k] == "hot") { 100.0 } else { 0.0 };
            base + boost + hot + item.id().len() as f64 / 100.0
        }));
        Ok(())
    }
}

rtscore_guest::export_scorer!(Context);

#[cfg(test)]
mod tests {
    use super::*;
    use rtscore_guest::testing::BatchBuilder;

    #[test]
    fn scores_from_the_context() {
        let batch = BatchBuilder::new().top_n(3).slide_ms(60_000).feature("a", "boost", 2.5).feature_text("bb", "tag", "hot").build();
        assert_eq!(batch.run::<Context>("null").unwrap(), vec![3060.0 + 2.5 + 0.01, 3060.0 + 100.0 + 0.02]);
    }

    #[test]
    fn report_names_the_context() {
        let batch = BatchBuilder::new().tenant("t").scenario("s").top_n(5).item("x").feature("x", "boost", 1.0).build();
        let err = batch.run::<Context>(r#"{"report": true}"#).unwrap_err();
        assert_eq!(err, "tenant=t scenario=s slide=60000 top_n=5 ids=x features=boost");
    }
}

//! Window-by-window comparison of two JSONL sinks: per scenario, top-K overlap (Jaccard and
//! rank-biased overlap), score drift percentiles, and the items that enter and leave the hot
//! list (the measures are `scoring::ranking`'s). Pure: the same two inputs always give the
//! same report, byte for byte.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::scoring::ranking::{drift_ratios, jaccard_at, percentile, rbo_at};

/// One hot list: items in hot-list order with their scores.
pub type HotItems = Vec<(String, f64)>;
/// Hot lists by (`tenant/scenario`, window end).
pub type Sink = BTreeMap<(String, i64), HotItems>;

/// Parses the hot lists of a JSONL sink (other kinds and blank lines are skipped).
pub fn parse_sink(text: &str) -> Result<Sink, String> {
    let mut out = Sink::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        if v["kind"] != "hot" {
            continue;
        }
        let field = |f: &str| v[f].as_str().map(str::to_string).ok_or_else(|| format!("line {}: missing {f}", n + 1));
        let key = format!("{}/{}", field("tenant_id")?, field("scenario_id")?);
        let end = v["window_end"].as_i64().ok_or_else(|| format!("line {}: missing window_end", n + 1))?;
        let items = v["items"]
            .as_array()
            .ok_or_else(|| format!("line {}: missing items", n + 1))?
            .iter()
            .filter_map(|i| Some((i["item_id"].as_str()?.to_string(), i["score"].as_f64()?)))
            .collect();
        out.insert((key, end), items);
    }
    Ok(out)
}

/// The comparison of one scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioDiff {
    pub scenario: String,
    pub windows_compared: usize,
    pub windows_only_in_a: usize,
    pub windows_only_in_b: usize,
    pub mean_jaccard: f64,
    pub mean_rbo: f64,
    /// Relative score drift `|b - a| / |a|` of items in both lists: p50, p90, p99, max.
    pub drift_p50: f64,
    pub drift_p90: f64,
    pub drift_p99: f64,
    pub drift_max: f64,
    /// Items most often in B's top-K but not A's (entering), and the reverse, with counts.
    pub entering: Vec<(String, usize)>,
    pub leaving: Vec<(String, usize)>,
}

/// Compares two sinks at depth `k`.
pub fn diff(a: &Sink, b: &Sink, k: usize) -> Vec<ScenarioDiff> {
    let scenarios: BTreeSet<&String> = a.keys().chain(b.keys()).map(|(s, _)| s).collect();
    scenarios
        .into_iter()
        .map(|scenario| {
            let ends_a: BTreeSet<i64> = a.keys().filter(|(s, _)| s == scenario).map(|(_, e)| *e).collect();
            let ends_b: BTreeSet<i64> = b.keys().filter(|(s, _)| s == scenario).map(|(_, e)| *e).collect();
            let (mut jac, mut rbo, mut drift) = (Vec::new(), Vec::new(), Vec::new());
            let (mut entering, mut leaving): (BTreeMap<String, usize>, BTreeMap<String, usize>) = Default::default();
            for end in ends_a.intersection(&ends_b) {
                let la = &a[&(scenario.clone(), *end)];
                let lb = &b[&(scenario.clone(), *end)];
                jac.push(jaccard_at(la, lb, k));
                rbo.push(rbo_at(la, lb, k, 0.9));
                drift.extend(drift_ratios(la, lb, k));
                let ta: BTreeSet<&str> = la.iter().take(k).map(|(i, _)| i.as_str()).collect();
                let tb: BTreeSet<&str> = lb.iter().take(k).map(|(i, _)| i.as_str()).collect();
                for item in ta.difference(&tb) {
                    *leaving.entry(item.to_string()).or_default() += 1;
                }
                for item in tb.difference(&ta) {
                    *entering.entry(item.to_string()).or_default() += 1;
                }
            }
            drift.sort_by(f64::total_cmp);
            let mean = |v: &[f64]| if v.is_empty() { 1.0 } else { v.iter().sum::<f64>() / v.len() as f64 };
            let top = |m: BTreeMap<String, usize>| {
                let mut v: Vec<(String, usize)> = m.into_iter().collect();
                v.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
                v.truncate(10);
                v
            };
            ScenarioDiff {
                scenario: scenario.clone(),
                windows_compared: jac.len(),
                windows_only_in_a: ends_a.difference(&ends_b).count(),
                windows_only_in_b: ends_b.difference(&ends_a).count(),
                mean_jaccard: mean(&jac),
                mean_rbo: mean(&rbo),
                drift_p50: percentile(&drift, 0.5),
                drift_p90: percentile(&drift, 0.9),
                drift_p99: percentile(&drift, 0.99),
                drift_max: drift.last().copied().unwrap_or(0.0),
                entering: top(entering),
                leaving: top(leaving),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_counts_windows_drift_and_movers() {
        let mut a = Sink::new();
        let mut b = Sink::new();
        a.insert(("t/s".into(), 1), vec![("i1".into(), 10.0), ("i2".into(), 5.0)]);
        b.insert(("t/s".into(), 1), vec![("i1".into(), 11.0), ("i3".into(), 4.0)]);
        a.insert(("t/s".into(), 2), vec![("i1".into(), 1.0)]);
        let r = diff(&a, &b, 10);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].windows_compared, r[0].windows_only_in_a, r[0].windows_only_in_b), (1, 1, 0));
        assert!((r[0].drift_max - 0.1).abs() < 1e-12);
        assert_eq!(r[0].entering, vec![("i3".to_string(), 1)]);
        assert_eq!(r[0].leaving, vec![("i2".to_string(), 1)]);
        assert!((r[0].mean_jaccard - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn parses_sink_lines_and_skips_other_kinds() {
        let text = "{\"kind\":\"hot\",\"tenant_id\":\"t\",\"scenario_id\":\"s\",\"window_end\":5,\"items\":[{\"item_id\":\"a\",\"score\":1.5}]}\n{\"kind\":\"metrics\"}\n\n";
        let s = parse_sink(text).unwrap();
        assert_eq!(s[&("t/s".to_string(), 5)], vec![("a".to_string(), 1.5)]);
        assert!(parse_sink("{oops").is_err());
    }
}

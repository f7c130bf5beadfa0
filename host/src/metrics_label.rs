//! Which pipeline of a host (`--threads`) a task records metrics for: a Prometheus recorder
//! wrapper ([`Labelled`]) adds `pipeline="<i>"` to what a pipeline's task records, so two
//! pipelines setting the same absolute counter or gauge do not overwrite each other.

use std::future::Future;

tokio::task_local! {
    static PIPELINE: usize;
}

/// Runs `fut` as pipeline `i`'s: what it records (not the tasks it spawns) carries the label.
pub fn scope<F: Future>(i: usize, fut: F) -> impl Future<Output = F::Output> {
    PIPELINE.scope(i, fut)
}

/// The pipeline the current task runs for, if any.
pub fn current() -> Option<usize> {
    PIPELINE.try_with(|p| *p).ok()
}

/// A recorder that labels what a pipeline's task records with `pipeline="<i>"` (installed with
/// `--threads` > 1). Tasks of no pipeline (the HTTP server, the sinks' writers) record
/// unlabelled; sum without `pipeline` for the host's figure.
pub struct Labelled<R>(pub R);

/// Wraps `recorder` in [`Labelled`].
pub fn labelled<R: metrics::Recorder>(recorder: R) -> Labelled<R> {
    Labelled(recorder)
}

fn with_pipeline(key: &metrics::Key) -> metrics::Key {
    match current() {
        Some(i) => key.with_extra_labels(vec![metrics::Label::new("pipeline", i.to_string())]),
        None => key.clone(),
    }
}

impl<R: metrics::Recorder> metrics::Recorder for Labelled<R> {
    fn describe_counter(&self, key: metrics::KeyName, unit: Option<metrics::Unit>, description: metrics::SharedString) {
        self.0.describe_counter(key, unit, description)
    }

    fn describe_gauge(&self, key: metrics::KeyName, unit: Option<metrics::Unit>, description: metrics::SharedString) {
        self.0.describe_gauge(key, unit, description)
    }

    fn describe_histogram(&self, key: metrics::KeyName, unit: Option<metrics::Unit>, description: metrics::SharedString) {
        self.0.describe_histogram(key, unit, description)
    }

    fn register_counter(&self, key: &metrics::Key, metadata: &metrics::Metadata<'_>) -> metrics::Counter {
        self.0.register_counter(&with_pipeline(key), metadata)
    }

    fn register_gauge(&self, key: &metrics::Key, metadata: &metrics::Metadata<'_>) -> metrics::Gauge {
        self.0.register_gauge(&with_pipeline(key), metadata)
    }

    fn register_histogram(&self, key: &metrics::Key, metadata: &metrics::Metadata<'_>) -> metrics::Histogram {
        self.0.register_histogram(&with_pipeline(key), metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pipelines_task_knows_its_index() {
        assert_eq!(current(), None);
        assert_eq!(scope(3, async { current() }).await, Some(3));
    }
}

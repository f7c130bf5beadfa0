//! Reads user profiles back from Redis before a batch is processed (DESIGN §4, "Durable
//! profiles"). The pipeline lists the batch's users that are not in memory; their hashes are
//! read in one pipelined round trip per batch (never per event), installed, and only then does
//! the batch run. Redis not answering within [`READ_BACK_WAIT`] does not hold the input: those
//! users start empty, counted (`rtscore_profile_read_backs_total{result="failed"}`) and logged.

use std::future::Future;
use std::time::Duration;

use crate::config::redis_keys as keys;
use crate::event::RecordBatch;
use crate::pipeline::Pipeline;
use crate::sinks::redis::RedisSink;

/// How long a batch waits for its profiles at most, retries included.
pub const READ_BACK_WAIT: Duration = Duration::from_secs(2);
/// Users read per round trip; a batch with more takes several.
const KEYS_PER_ROUND_TRIP: usize = 1_000;

/// Reads back the profiles `batch` needs and installs them in `pipeline`.
pub async fn read_back(pipeline: &mut Pipeline, batch: &mut RecordBatch, redis: &RedisSink) {
    if !pipeline.profile_read_back() {
        return;
    }
    // Parsed once here (the source may not have), and the pipeline reuses the parse.
    if batch.parsed.is_none() {
        batch.parse_ahead();
    }
    let refs = pipeline.profiles_to_load(batch);
    if refs.is_empty() {
        return;
    }
    let names: Vec<String> = refs.iter().map(|r| keys::profile(&r.key, &r.user_id)).collect();
    let deadline = tokio::time::Instant::now() + READ_BACK_WAIT;
    let (mut fetched, mut answered) = (Vec::with_capacity(names.len()), true);
    for chunk in names.chunks(KEYS_PER_ROUND_TRIP) {
        let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
        match fetch_within(wait, || redis.read_hashes(chunk)).await {
            Some(hashes) => fetched.extend(hashes),
            None => {
                answered = false;
                break;
            }
        }
    }
    let fetched = answered.then_some(fetched);
    if fetched.is_none() {
        tracing::warn!(
            users = refs.len(),
            wait_ms = READ_BACK_WAIT.as_millis() as u64,
            "Redis did not return the profiles to read back in time; these users start empty and their next write replaces the stored profile"
        );
    }
    pipeline.install_profiles(&refs, fetched.as_deref());
}

/// Runs `attempt` until it succeeds, retrying failures with backoff, for at most `wait`;
/// `None` when it did not succeed in time.
pub async fn fetch_within<T, E, F, Fut>(wait: Duration, mut attempt: F) -> Option<T>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + wait;
    let mut delay = Duration::from_millis(50);
    loop {
        match tokio::time::timeout_at(deadline, attempt()).await {
            Ok(Ok(v)) => return Some(v),
            Ok(Err(e)) => tracing::debug!(error = %e, "profile read-back failed; retrying"),
            Err(_) => return None,
        }
        if tokio::time::Instant::now() + delay >= deadline {
            return None;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

/// The profile store's counters as Prometheus metrics (absolute: the pipeline counts).
pub fn export_metrics(pipeline: &Pipeline) {
    let job = pipeline.profile_job();
    let c = job.counters;
    metrics::counter!("rtscore_profile_evictions_total", "reason" => "idle").absolute(c.evicted_idle);
    metrics::counter!("rtscore_profile_evictions_total", "reason" => "memory").absolute(c.evicted_memory);
    metrics::counter!("rtscore_profile_read_backs_total", "result" => "found").absolute(c.read_back);
    metrics::counter!("rtscore_profile_read_backs_total", "result" => "absent").absolute(c.read_back_absent);
    metrics::counter!("rtscore_profile_read_backs_total", "result" => "invalid").absolute(c.read_back_invalid);
    metrics::counter!("rtscore_profile_read_backs_total", "result" => "failed").absolute(c.read_back_failed);
    metrics::counter!("rtscore_profile_replayed_events_total").absolute(job.replayed());
    metrics::gauge!("rtscore_profile_users_in_memory").set(job.totals().0 as f64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    const WAIT: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn a_store_that_never_answers_gives_up_after_the_wait() {
        let started = Instant::now();
        let got: Option<u32> = fetch_within(WAIT, std::future::pending::<Result<u32, String>>).await;
        assert_eq!(got, None);
        assert!((WAIT..WAIT * 3).contains(&started.elapsed()), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_store_that_refuses_is_retried_until_the_wait_ends() {
        let tries = AtomicU32::new(0);
        let started = Instant::now();
        let got: Option<u32> = fetch_within(WAIT, || {
            tries.fetch_add(1, Ordering::Relaxed);
            async { Err::<u32, _>("connection refused") }
        })
        .await;
        assert_eq!(got, None);
        assert!(started.elapsed() < WAIT * 3, "bounded: {:?}", started.elapsed());
        assert!(tries.load(Ordering::Relaxed) >= 3, "retried with backoff");
    }

    #[tokio::test]
    async fn a_store_that_comes_back_in_time_answers() {
        let tries = AtomicU32::new(0);
        let got = fetch_within(WAIT * 10, || {
            let n = tries.fetch_add(1, Ordering::Relaxed);
            async move { if n < 2 { Err("down") } else { Ok(n) } }
        })
        .await;
        assert_eq!(got, Some(2));
    }
}

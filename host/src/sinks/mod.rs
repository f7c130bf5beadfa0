//! Sinks: where emitted results and rejected events go (Redis, JSON lines, the terminal view,
//! the dead-letter topic or file, the in-memory live view behind the console).

pub mod dead_letter;
pub mod jsonl;
pub mod live;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(not(feature = "redis"))]
pub mod redis {
    //! Built without the `redis` feature: no Redis sink can exist.

    use crate::config::ScenarioKey;
    use crate::output::Output;

    /// The Redis sink; cannot exist in this build.
    pub enum RedisSink {}

    impl RedisSink {
        pub fn outages(&self) -> u64 {
            match *self {}
        }

        pub fn background(&self) -> Self {
            match *self {}
        }

        pub async fn write(&mut self, _outputs: &[Output]) -> anyhow::Result<()> {
            match *self {}
        }

        pub async fn write_status(&mut self, _key: &ScenarioKey, _fields: &[(&str, String)]) -> anyhow::Result<()> {
            match *self {}
        }

        pub async fn read_hashes(&self, _keys: &[String]) -> anyhow::Result<Vec<std::collections::HashMap<String, String>>> {
            match *self {}
        }

        pub fn queued(&self) -> u64 {
            match *self {}
        }

        pub fn acked(&self) -> u64 {
            match *self {}
        }

        pub async fn acked_changed(&mut self) -> anyhow::Result<()> {
            match *self {}
        }

        pub async fn settle(&mut self) -> anyhow::Result<()> {
            match *self {}
        }
    }

    /// `rtscore status` reads the hosts' status hashes from Redis: not in this build.
    pub async fn read_statuses(
        url: &str,
        _layout: &crate::config::redis_keys::KeyLayout,
        _tenant: Option<&str>,
    ) -> anyhow::Result<Vec<(String, std::collections::BTreeMap<String, String>)>> {
        anyhow::bail!("cannot read Redis at {url}: this rtscore was built without the `redis` feature")
    }
}
pub mod terminal;

//! The `rtscore` binary under test: `rtscore run` as a typed builder ([`Host`]), the running
//! process ([`HostProcess`]), and one-shot calls of the other subcommands ([`cli`]).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::stack::Stack;

/// The `rtscore` executable the tests run. `RTSCORE_TEST_BIN` runs another build (the release
/// binary, to measure bounds as users run it); by default it is the binary Cargo built with the
/// test or bench (`CARGO_BIN_EXE_rtscore`, which `cargo test` and `cargo bench` also set when
/// they run it), or, for a test executable started by hand, the `rtscore` beside Cargo's `deps/`
/// directory that holds the executable.
pub fn rtscore_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("RTSCORE_TEST_BIN").or_else(|| std::env::var_os("CARGO_BIN_EXE_rtscore")) {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("the path of this test executable");
    exe.parent()
        .and_then(Path::parent)
        .map(|profile| profile.join(format!("rtscore{}", std::env::consts::EXE_SUFFIX)))
        .filter(|b| b.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no rtscore binary beside {}: run the tests through cargo (`cargo test -p rtscore --test it`), or set RTSCORE_TEST_BIN",
                exe.display()
            )
        })
}

/// `rtscore` with none of the environment defaults (KAFKA_SERVERS, MONGODB_URL, REDIS_URL,
/// RTSCORE_*) that a developer's shell or scripts/test.sh exports: tests pass every flag.
/// The executable is [`rtscore_bin`].
pub fn rtscore_command() -> Command {
    rtscore_command_of(&rtscore_bin())
}

/// [`rtscore_command`] running the executable at `bin`.
pub fn rtscore_command_of(bin: &Path) -> Command {
    let mut c = Command::new(bin);
    for (k, _) in std::env::vars_os() {
        let Some(k) = k.to_str() else { continue };
        if k.starts_with("RTSCORE_") || ["KAFKA_SERVERS", "MONGODB_URL", "MONGODB_DATABASE", "REDIS_URL"].contains(&k) {
            c.env_remove(k);
        }
    }
    c
}

/// Runs `rtscore <args>` (a subcommand other than `run`: `scenario`, `plugin`, `token`, `diff`,
/// ...) to completion; panics with its output if it fails.
pub fn cli(args: &[&str]) -> String {
    let out = rtscore_command().args(args).output().expect("run rtscore");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "rtscore {args:?} failed:\n{text}");
    text
}

/// `rtscore run` and its flags, typed: the flags tests use have a method each, any other goes
/// through [`Host::arg`] or [`Host::flag`]. Then [`Host::start`] runs it in the background, or
/// [`Host::status`], [`Host::output`] and [`Host::run_to_end`] run a replay to its end.
///
/// ```no_run
/// # use rtscore_testkit::{Host, Stack};
/// # let (stack, dir) = (Stack::ensure(), std::path::Path::new("/tmp"));
/// let host = Host::run().kafka(&stack, "events", "g1").redis(&stack).scenarios_dir(dir).view_off().http(8080).start();
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Host {
    args: Vec<OsString>,
    stdin_piped: bool,
    /// Another build than [`rtscore_bin`] (to compare two builds side by side).
    bin: Option<PathBuf>,
}

impl Host {
    /// `rtscore run` with no flags yet.
    pub fn run() -> Host {
        Host { args: vec!["run".into()], stdin_piped: false, bin: None }
    }

    /// Runs the executable at `bin` instead of [`rtscore_bin`].
    pub fn binary(mut self, bin: impl Into<PathBuf>) -> Host {
        self.bin = Some(bin.into());
        self
    }

    /// `flag value`, for a flag without a method of its own.
    pub fn arg(mut self, flag: &str, value: impl AsRef<OsStr>) -> Host {
        self.args.push(flag.into());
        self.args.push(value.as_ref().to_owned());
        self
    }

    /// A flag without a value, such as `--dead-letter-all`.
    pub fn flag(mut self, flag: &str) -> Host {
        self.args.push(flag.into());
        self
    }

    /// Consumes `topic` in consumer group `group` from the stack's Kafka.
    pub fn kafka(self, stack: &Stack, topic: &str, group: &str) -> Host {
        self.kafka_topic(stack, topic).group_id(group)
    }

    /// Consumes `topic` from the stack's Kafka in the host's default consumer group.
    pub fn kafka_topic(self, stack: &Stack, topic: &str) -> Host {
        self.arg("--kafka-servers", &stack.kafka).arg("--topic", topic)
    }

    /// `--repartition`: a topic keyed any way, shuffled through the internal topic
    /// `<group>.by-scenario` (register it with `Stack::delete_later`).
    pub fn repartition(self) -> Host {
        self.flag("--repartition")
    }

    /// `--group-id`.
    pub fn group_id(self, group: &str) -> Host {
        self.arg("--group-id", group)
    }

    /// `--dlq-topic`: dead letters to this Kafka topic.
    pub fn dlq_topic(self, topic: &str) -> Host {
        self.arg("--dlq-topic", topic)
    }

    /// Reads events from `path` (a recorded JSONL replay), to its end.
    pub fn events_file(self, path: impl AsRef<Path>) -> Host {
        self.arg("--events-file", path.as_ref())
    }

    /// Reads events from stdin (`--events-file -`), a pipe: take its writing end with
    /// [`HostProcess::take_stdin`]. The input ends when that end is dropped.
    pub fn events_stdin(mut self) -> Host {
        self.stdin_piped = true;
        self.arg("--events-file", "-")
    }

    /// Generated events, `rate` a second (`--generate-rate`).
    pub fn generate_rate(self, rate: u32) -> Host {
        self.arg("--generate-rate", rate.to_string())
    }

    /// Writes hot lists, profiles and metrics to the stack's Redis.
    pub fn redis(self, stack: &Stack) -> Host {
        self.arg("--redis-url", &stack.redis_url)
    }

    /// Reads scenario documents (and plugins) from `database` in the stack's MongoDB.
    pub fn mongo(self, stack: &Stack, database: &str) -> Host {
        self.arg("--mongodb-url", &stack.mongodb_url).arg("--mongodb-database", database)
    }

    /// `--scenarios-dir`: scenario documents from a directory.
    pub fn scenarios_dir(self, dir: impl AsRef<Path>) -> Host {
        self.arg("--scenarios-dir", dir.as_ref())
    }

    /// `--plugins-dir`: the watched plugins directory.
    pub fn plugins_dir(self, dir: impl AsRef<Path>) -> Host {
        self.arg("--plugins-dir", dir.as_ref())
    }

    /// `--jsonl-out`: every output record to a JSONL file.
    pub fn jsonl_out(self, path: impl AsRef<Path>) -> Host {
        self.arg("--jsonl-out", path.as_ref())
    }

    /// `--dead-letter-file`: dead letters to a JSONL file.
    pub fn dead_letter_file(self, path: impl AsRef<Path>) -> Host {
        self.arg("--dead-letter-file", path.as_ref())
    }

    /// `--job` (`item_hot_score`, `metrics`, `all`, ...).
    pub fn job(self, job: &str) -> Host {
        self.arg("--job", job)
    }

    /// Only this tenant's scenario (`--tenant-id`, `--scenario-id`).
    pub fn only(self, tenant: &str, scenario: &str) -> Host {
        self.arg("--tenant-id", tenant).arg("--scenario-id", scenario)
    }

    /// `--view off`: no terminal view.
    pub fn view_off(self) -> Host {
        self.arg("--view", "off")
    }

    /// The operations and admin HTTP server on `127.0.0.1:port` (`--http-addr`).
    pub fn http(self, port: u16) -> Host {
        self.arg("--http-addr", format!("127.0.0.1:{port}"))
    }

    /// `--api-tokens-file`: the admin API's tokens.
    pub fn api_tokens_file(self, path: impl AsRef<Path>) -> Host {
        self.arg("--api-tokens-file", path.as_ref())
    }

    /// `--config-poll-ms`: how often MongoDB is asked for changed documents.
    pub fn config_poll_ms(self, ms: u64) -> Host {
        self.arg("--config-poll-ms", ms.to_string())
    }

    /// `--config-resync-ms`: how often every document is read again.
    pub fn config_resync_ms(self, ms: u64) -> Host {
        self.arg("--config-resync-ms", ms.to_string())
    }

    /// `--snapshot-interval-ms`.
    pub fn snapshot_interval_ms(self, ms: u64) -> Host {
        self.arg("--snapshot-interval-ms", ms.to_string())
    }

    /// `--partition-idle-ms`: after how long a quiet partition stops holding the watermark.
    pub fn partition_idle_ms(self, ms: i64) -> Host {
        self.arg("--partition-idle-ms", ms.to_string())
    }

    /// The arguments after `rtscore`, `run` first.
    pub fn args(&self) -> &[OsString] {
        &self.args
    }

    /// The command (environment cleaned by [`rtscore_command`]), for a caller that sets up its
    /// own stdio; stdin is a pipe after [`Host::events_stdin`].
    pub fn command(&self) -> Command {
        let mut c = match &self.bin {
            Some(bin) => rtscore_command_of(bin),
            None => rtscore_command(),
        };
        c.args(&self.args);
        if self.stdin_piped {
            c.stdin(Stdio::piped());
        }
        c
    }

    /// Starts the host in the background; see [`HostProcess`].
    pub fn start(self) -> HostProcess {
        HostProcess::spawn(self)
    }

    /// Runs the host to its end with the test's stdout and stderr; its exit status.
    pub fn status(self) -> ExitStatus {
        self.command().status().expect("run rtscore")
    }

    /// Runs the host to its end, its stdout and stderr captured.
    pub fn output(self) -> Output {
        self.command().output().expect("run rtscore")
    }

    /// Like [`Host::output`], and fails the test, with the host's stderr, if it did not exit
    /// successfully.
    pub fn run_to_end(self) -> Output {
        let out = self.output();
        assert!(out.status.success(), "rtscore run exited with {}:\n{}", out.status, String::from_utf8_lossy(&out.stderr));
        out
    }
}

/// The runtime binary, running; stopped with SIGTERM (then killed) when dropped. Its stderr
/// goes to a file that is printed if the test fails.
pub struct HostProcess {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl HostProcess {
    fn spawn(host: Host) -> HostProcess {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("host.log");
        let stdin = if host.stdin_piped { Stdio::piped() } else { Stdio::inherit() };
        let child = host
            .command()
            .env("RTSCORE_LOG", "info")
            .stdin(stdin)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start rtscore");
        HostProcess { child, log, _dir: dir }
    }

    /// The writing end of the host's stdin (a host started with [`Host::events_stdin`]).
    pub fn take_stdin(&mut self) -> ChildStdin {
        self.child.stdin.take().expect("started with Host::events_stdin")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `within` for the process to exit by itself.
    pub fn wait_for_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGKILL: no flush, no snapshot, no commit (a crash).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit (the runtime flushes on SIGTERM).
    pub fn stop(&mut self) -> ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        self.child.wait().unwrap()
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.stop();
        }
        if std::thread::panicking() {
            eprintln!("---- rtscore log ----\n{}", self.log());
        }
    }
}

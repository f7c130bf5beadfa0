//! docs/migration.md runs as written (issue 18): its `sh` blocks, in order, against the real
//! stack, replay the seed's document through the seed's admin call and get the seed's intended
//! result (purchase raised to 15, every other weight kept).

use std::process::Command;
use std::time::{Duration, Instant};

use rtscore_testkit::host::rtscore_bin;
use rtscore_testkit::*;

/// The guide's `sh` blocks, in order.
fn sh_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn the_migration_guide_runs_as_written_and_the_seeds_admin_call_gives_the_seeds_result() {
    let stack = Stack::ensure();
    let guide = std::fs::read_to_string(repo_root().join("docs/migration.md")).unwrap();
    let blocks = sh_blocks(&guide);
    assert!(blocks.len() >= 5, "the guide lost its runnable blocks: {}", blocks.len());
    let script = format!("set -euo pipefail\n{}", blocks.join("\n"));
    let scratch = tempfile::tempdir().unwrap();
    let bin_dir = rtscore_bin().parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let admin = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env("PATH", path)
        .env("TMPDIR", scratch.path())
        .env("KAFKA_SERVERS", &stack.kafka)
        .env("MONGODB_URL", &stack.mongodb_url)
        .env("REDIS_URL", &stack.redis_url)
        .env("MONGODB_DATABASE", unique("migration"))
        .env("ADMIN", &admin)
        // Files, not pipes: nothing blocks on a full pipe, and the background host's inherited
        // stdout does not hold the test open.
        .stdout(std::fs::File::create(scratch.path().join("stdout")).unwrap())
        .stderr(std::fs::File::create(scratch.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    // Whatever happened, nothing the guide started outlives the test: its host is the one
    // process serving this test's own address.
    let _ = child.kill();
    let _ = Command::new("pkill").args(["-f", "--", &format!("--http-addr {admin}")]).status();
    let status = child.wait().unwrap();
    let read = |name: &str| std::fs::read_to_string(scratch.path().join(name)).unwrap_or_default();
    let (stdout, stderr) = (read("stdout"), read("stderr"));
    assert!(status.success(), "the guide failed ({status:?})\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("before: clip-a,clip-c,clip-b"), "{stdout}");
    assert!(
        stdout.contains(r#"{"impression":0.5,"view":1,"click":2,"like":3,"favorite":4,"comment":5,"share":6,"purchase":15}"#),
        "the seed's admin call did not raise purchase alone: {stdout}"
    );
    assert!(stdout.contains("after: clip-b,clip-a,clip-c"), "the new revision did not score the replay: {stdout}");
    assert!(stdout.contains("clip-b\nclip-a\nclip-c"), "the Redis consumer's list: {stdout}");
}

//! `cargo bench -p rtscore --bench e2e_kafka`: events/s end to end through the local Kafka and
//! Redis. Produces N events (`RTSCORE_BENCH_EVENTS`, default 1,000,000) to a fresh 3-partition
//! topic first (not timed), then times a host from start until it has consumed them all with
//! windows scored and written to Redis, and the host's emission delay (watermark passing a window
//! end -> hot list in Redis, p50/p99 from its `/metrics`). Starts the local stack if needed.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rtscore::config::ScenarioKey;
use rtscore::sources::generator::EventMaker;

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    Some(buf.split_once("\r\n\r\n")?.1.to_string())
}

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    assert!(Command::new("bash").arg(root.join("scripts/stack.sh")).arg("start").status().unwrap().success(), "stack start failed");
    let n: u64 = std::env::var("RTSCORE_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let kafka = std::env::var("KAFKA_SERVERS").unwrap_or_else(|_| "127.0.0.1:19092".into());
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:16379".into());
    let topic = format!("bench-e2e-{}", std::process::id());
    assert!(Command::new("bash").arg(root.join("scripts/stack.sh")).args(["topic-create", &topic, "3"]).status().unwrap().success());

    let keys: Vec<ScenarioKey> = ["home", "search", "trending"].iter().map(|s| ScenarioKey::new("bench", s)).collect();
    let dir = std::env::temp_dir().join(format!("rtscore-e2e-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (k, (w, s, l)) in keys.iter().zip([(60, 15, 0.1), (30, 10, 0.0), (20, 5, 2.0)]) {
        let doc = serde_json::json!({"tenant_id": "bench", "scenario_id": &*k.scenario_id, "config": {"realtime_compute": {"hot_score": {
            "window_size_minutes": w, "window_slide_minutes": s, "decay_lambda": l}}}});
        std::fs::write(dir.join(format!("{}.json", k.scenario_id)), serde_json::to_vec(&doc).unwrap()).unwrap();
    }
    eprintln!("producing {n} events to {topic} ...");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &kafka)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .create()
        .unwrap();
    let mut maker = EventMaker::new(keys, 1_000_000, 3);
    let t0 = 1_767_225_600_000i64;
    for i in 0..n {
        let line = maker.next_event(t0 + (i as i64) * 6 * 3_600_000 / n as i64).to_vec();
        let mut rec: BaseRecord<'_, (), [u8]> = BaseRecord::to(&topic).payload(&line[..]).partition((i % 3) as i32);
        while let Err((_, back)) = producer.send(rec) {
            producer.poll(Duration::from_millis(5));
            rec = back;
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let started = Instant::now();
    let mut host = Command::new(env!("CARGO_BIN_EXE_rtscore"))
        .args(["run", "--kafka-servers", &kafka, "--topic", &topic, "--group-id", &format!("bench-{}", std::process::id())])
        .args([
            "--scenarios-dir",
            dir.to_str().unwrap(),
            "--redis-url",
            &redis,
            "--view",
            "off",
            "--http-addr",
            &format!("127.0.0.1:{port}"),
        ])
        .env_remove("MONGODB_URL")
        .stderr(Stdio::null())
        .spawn()
        .expect("start rtscore");
    let elapsed = loop {
        let seen = http_get(port, "/status")
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| v["stats"]["events_in"].as_u64())
            .unwrap_or(0);
        if seen >= n {
            break started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(600), "only {seen} of {n} events consumed in 10 minutes");
        std::thread::sleep(Duration::from_millis(50));
    };
    // Emission delay as the host measured it (a Prometheus summary: quantiles over the run).
    let metrics = http_get(port, "/metrics").unwrap_or_default();
    let quantile = |q: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with("rtscore_hot_emission_delay_seconds{") && l.contains(&format!("quantile=\"{q}\"")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map_or("n/a".to_string(), |s| format!("{:.1}", s * 1e3))
    };
    let (p50, p99) = (quantile("0.5"), quantile("0.99"));
    let _ = host.kill();
    let _ = host.wait();
    let _ = std::fs::remove_dir_all(&dir);
    println!("\n| path | events | seconds (incl. host start) | events/s |");
    println!("|---|---:|---:|---:|");
    println!(
        "| Kafka (3 partitions) -> host (release) -> Redis, item_hot_score | {n} | {:.2} | {:.0} |",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
    println!("\nwatermark passing a window end -> its hot list written to Redis: p50 {p50} ms, p99 {p99} ms (target p99 <= 200 ms)");
}

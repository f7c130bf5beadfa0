//! Abuse limits of the admin surface on a real host (docs/security.md, "Admin API, console and
//! `/status`"): body caps (413), the upload rate per tenant (429 with `Retry-After`), the
//! failed-compile cache, caps on live console streams, `/status` without a tokens file only
//! for local requests, the console editor's revision check, and a tenant seeing only its own
//! counters.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use rtscore_testkit::web::{ApiHost, Resp, console_post, request, request_raw, upload_plugin};
use rtscore_testkit::{Host, event_line, free_port, http_get, plugins, wait_until, write_scenarios};
use serde_json::{Value, json};

fn scenario(tenant: &str, id: &str) -> Value {
    json!({"tenant_id": tenant, "scenario_id": id, "status": "active", "revision": 1,
           "config": {"realtime_compute": {"hot_score": {"action_weights": {"view": 1.0, "purchase": 10.0},
                      "window_size_minutes": 1, "window_slide_minutes": 1, "top_n": 10}}}})
}

fn upload(port: u16, tenant: &str, token: &str, name: &str, body: &[u8]) -> Resp {
    upload_plugin(port, tenant, token, name, "1.0.0", body)
}

/// The status line of a request sent as raw bytes (its own `Host`, a body that never comes).
fn raw_status(port: u16, head: &str) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).expect("an answer before the body was sent");
    let line = String::from_utf8_lossy(&buf[..n]).to_string();
    line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status line: {line}"))
}

/// The value of the `/metrics` sample of `name` whose labels include `labels`, 0 if absent.
fn metric(port: u16, name: &str, labels: &[&str]) -> f64 {
    let text = request(port, "GET", "/metrics", None, b"").body;
    text.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn oversized_bodies_are_refused_early_with_413() {
    let api = ApiHost::start_with(&[scenario("acme", "home")], |host| host.arg("--api-max-body-bytes", "4096"));
    let acme = api.token("tenant:acme");
    let port = api.port;
    api.put_tenant(&json!({"tenant_id": "acme", "quotas": {"max_module_bytes": 2000}}));
    // A scenario write above the API's body limit: JSON 413 naming the flag; nothing stored.
    let big = json!({"status": "active", "owner": "x".repeat(5000)}).to_string();
    let r = request(port, "PATCH", "/api/v1/tenants/acme/scenarios/home", Some(&acme), big.as_bytes());
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.json()["error"].as_str().is_some_and(|e| e.contains("--api-max-body-bytes")), "{}", r.body);
    let small = request(port, "PATCH", "/api/v1/tenants/acme/scenarios/home", Some(&acme), br#"{"owner":"team"}"#);
    assert_eq!(small.status, 200, "{}", small.body);
    // The console's forms too.
    let c = format!("rtscore_token={acme}");
    let form = format!("action=validate&document={}", "x".repeat(5000));
    let r = console_post(port, &c, "/console/tenants/acme/scenarios/home/config", form.as_bytes());
    assert_eq!(r.status, 413, "{}", r.body);
    // A plugin upload is capped by the tenant's module-size quota, not the API's limit.
    let r = upload(port, "acme", &acme, "big", &vec![0u8; 2001]);
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.json()["error"].as_str().is_some_and(|e| e.contains("module-size quota") && e.contains("2000")), "{}", r.body);
    assert_eq!(upload(port, "acme", &acme, "small", b"\0asm junk").status, 422, "below the quota: compiled and refused");
    // An upload that declares 100 MiB is refused before a byte of its body is sent.
    let head = format!(
        "POST /api/v1/tenants/acme/plugins?name=huge&version=1.0.0 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {acme}\r\nContent-Length: {}\r\n\r\n",
        100 << 20
    );
    assert_eq!(raw_status(port, &head), 413);
    // So is one without a length that streams past the quota (chunked).
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /api/v1/tenants/acme/plugins?name=stream&version=1.0.0 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {acme}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .unwrap();
    for _ in 0..3 {
        let _ = write!(s, "400\r\n{}\r\n", "a".repeat(0x400));
    }
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).expect("an answer while the body is still coming");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 413"), "{}", String::from_utf8_lossy(&buf[..n]));
}

#[test]
fn uploads_are_rate_limited_per_tenant_and_failed_modules_are_not_compiled_twice() {
    let api = ApiHost::start(&[scenario("acme", "home"), scenario("rival", "feed")]);
    let (acme, rival) = (api.token("tenant:acme"), api.token("tenant:rival"));
    let port = api.port;
    api.put_tenant(&json!({"tenant_id": "acme", "quotas": {"plugin_uploads_per_minute": 3}}));
    let compiles = || metric(port, "rtscore_plugin_compiles_total", &[]);
    let before = compiles();
    // A module that does not compile, then the same bytes again under another name: the same
    // error, and no second compile.
    let junk = b"\0asm\x0d\0\x01\0 not a component".to_vec();
    let first = upload(port, "acme", &acme, "broken", &junk);
    assert_eq!(first.status, 422, "{}", first.body);
    assert_eq!(compiles(), before + 1.0);
    let again = upload(port, "acme", &acme, "broken-again", &junk);
    assert_eq!(again.status, 422, "{}", again.body);
    assert_eq!(again.json()["errors"], first.json()["errors"], "the original error");
    assert_eq!(compiles(), before + 1.0, "the second upload compiled nothing");
    assert_eq!(metric(port, "rtscore_plugin_upload_refused_total", &[r#"tenant="acme""#, r#"reason="failed_before""#]), 1.0);
    // The third upload in the minute is the last one acme may make.
    assert_eq!(upload(port, "acme", &acme, "third", b"\0asm other junk").status, 422);
    let limited = upload(port, "acme", &acme, "fourth", b"\0asm more junk");
    assert_eq!(limited.status, 429, "{}", limited.body);
    let wait: u64 = limited.header("retry-after").and_then(|v| v.parse().ok()).expect("a Retry-After in seconds");
    assert!((1..=60).contains(&wait), "{wait}");
    let msg = limited.json()["error"].as_str().unwrap_or("").to_string();
    assert!(msg.contains("per minute") && !msg.contains("rival"), "{msg}");
    // Refused before its body is received.
    let head = format!(
        "POST /api/v1/tenants/acme/plugins?name=big&version=1.0.0 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {acme}\r\nContent-Length: 1000000\r\n\r\n"
    );
    assert_eq!(raw_status(port, &head), 429);
    // Another tenant is not held back by acme's quota.
    assert_eq!(upload(port, "rival", &rival, "fine", b"\0asm rival junk").status, 422);
}

#[test]
fn a_second_concurrent_compile_of_a_tenant_is_refused_with_429() {
    // Without the compiled-module cache: an earlier test (or run) compiled this very module, and
    // a cache hit ends the upload before any probe could overlap it.
    let api = ApiHost::start_with(&[scenario("acme", "home"), scenario("rival", "feed")], |host| host.flag("--no-plugin-cache"));
    let (acme, rival) = (api.token("tenant:acme"), api.token("tenant:rival"));
    let port = api.port;
    api.put_tenant(&json!({"tenant_id": "acme", "quotas": {"plugin_uploads_per_minute": 1000}}));
    // A real module takes a while to compile; while it does, every further upload of acme is
    // refused at once, whatever it carries.
    let wasm = plugins::module("gravity");
    let token = acme.clone();
    let compiles = || metric(port, "rtscore_plugin_compiles_total", &[]);
    let before = compiles();
    let slow = std::thread::spawn(move || upload(port, "acme", &token, "slow", &wasm));
    // Probe once the slow upload's compile has begun: a probe's own failing compile holds the
    // tenant's one slot for a moment, and could otherwise be what refuses the slow upload.
    let waited = std::time::Instant::now();
    while compiles() == before && !slow.is_finished() && waited.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut refused = None;
    for n in 0..200 {
        if slow.is_finished() {
            break;
        }
        // Different bytes each time: nothing comes from the failed-compile cache.
        let r = upload(port, "acme", &acme, "probe", format!("\0asm probe {n}").as_bytes());
        if r.status == 429 {
            refused = Some(r);
            break;
        }
        assert_eq!(r.status, 422, "{}", r.body);
        std::thread::sleep(Duration::from_millis(20));
    }
    let refused = refused.expect("a 429 while the first compile ran");
    assert!(refused.json()["error"].as_str().is_some_and(|e| e.contains("compile")), "{}", refused.body);
    assert!(refused.header("retry-after").is_some());
    // Another tenant compiles meanwhile.
    assert_eq!(upload(port, "rival", &rival, "probe", b"\0asm rival probe").status, 422);
    assert_eq!(slow.join().unwrap().status, 201, "the first upload completes");
}

#[test]
fn live_console_streams_are_capped_per_login_and_per_host_and_per_update() {
    let api = ApiHost::start_with(&[scenario("acme", "home"), scenario("rival", "feed")], |host| {
        host.arg("--console-max-streams", "2").arg("--console-max-streams-per-login", "1").arg("--console-max-event-bytes", "100")
    });
    let (acme, rival, admin) = (api.token("tenant:acme"), api.token("tenant:rival"), api.token("admin"));
    let port = api.port;
    let open = |token: &str| {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET /console/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: rtscore_token={token}\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // A refusal to its end; an open stream up to its first update.
        loop {
            let n = s.read(&mut buf).expect("an answer");
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).to_string();
            if n == 0 || text.starts_with("HTTP/1.1 200") && text.split_once("data:").is_some_and(|(_, rest)| rest.contains("\n\n")) {
                return (s, text);
            }
        }
    };
    let (first, text) = open(&acme);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // Above 100 bytes, an update is a note to reload instead of the fragments.
    assert!(text.contains("too large to update live") && !text.contains("<tr"), "{text}");
    let (_, text) = open(&acme);
    assert!(text.starts_with("HTTP/1.1 429") && text.contains("this login already has 1"), "{text}");
    let (_rival_stream, text) = open(&rival);
    assert!(text.starts_with("HTTP/1.1 200"), "another login has its own slot: {text}");
    let (_, text) = open(&admin);
    assert!(text.starts_with("HTTP/1.1 429") && text.contains("this host already serves 2"), "{text}");
    // A closed stream gives its slot back (noticed at its next update, within a second or so).
    drop(first);
    assert!(wait_until(Duration::from_secs(15), || open(&acme).1.starts_with("HTTP/1.1 200")), "acme's slot came back");
}

#[test]
fn status_without_a_tokens_file_answers_only_local_requests_naming_localhost() {
    let dir = tempfile::tempdir().unwrap();
    let scen = write_scenarios(dir.path(), &[scenario("acme", "home")]);
    let port = free_port();
    let host = Host::run().events_stdin().view_off().scenarios_dir(&scen).plugins_dir(dir.path().join("plugins")).http(port).start();
    assert!(wait_until(Duration::from_secs(30), || http_get(port, "/readyz").is_some()), "{}", host.log());
    let get = |host_header: &str| raw_status(port, &format!("GET /status HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n"));
    for local in [format!("127.0.0.1:{port}"), format!("localhost:{port}"), "localhost".to_string()] {
        assert_eq!(get(&local), 200, "{local}");
    }
    // DNS rebinding: a foreign name that resolves to 127.0.0.1 reaches the port with its own Host.
    for foreign in [format!("evil.example:{port}"), "127.0.0.1.nip.io".to_string()] {
        assert_eq!(get(&foreign), 403, "{foreign}");
    }
    let r = request_raw(port, "GET", "/status", &[], b"", None);
    assert_eq!(r.status, 200, "the helper's Host is 127.0.0.1:port: {}", r.body);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET /status HTTP/1.1\r\nHost: rebind.example\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.contains("tokens file"), "the 403 says what to do: {text}");
    // The API and console stay closed without tokens.
    assert_eq!(request(port, "GET", "/api/v1/whoami", Some("rts_x"), b"").status, 401);
}

#[test]
fn the_console_editor_writes_only_over_the_revision_it_loaded() {
    let api = ApiHost::start(&[scenario("acme", "home")]);
    let acme = api.token("tenant:acme");
    let port = api.port;
    let c = format!("rtscore_token={acme}");
    let page = request_raw(port, "GET", "/console/tenants/acme/scenarios/home", &[("Cookie", &c)], b"", None).body;
    let hidden = r#"name="if_revision" value="1""#;
    assert_eq!(page.matches(hidden).count(), 1, "the editor sends the revision it shows:\n{page}");
    // Someone else stores revision 2 through the API meanwhile.
    let r = request(port, "PATCH", "/api/v1/tenants/acme/scenarios/home", Some(&acme), br#"{"owner":"someone-else"}"#);
    assert_eq!(r.json()["revision"], 2, "{}", r.body);
    let doc = serde_json::to_string(&scenario("acme", "home")).unwrap();
    let form = |rev: &str| {
        let mut f = url_encode_form(&[("action", "apply"), ("document", &doc)]);
        f.push_str(&format!("&if_revision={rev}"));
        console_post(port, &c, "/console/tenants/acme/scenarios/home/config", f.as_bytes())
    };
    let stale = form("1");
    assert_eq!(stale.status, 409, "{}", stale.body);
    assert!(stale.body.contains("changed by someone else to revision 2") && stale.body.contains("reload"), "{}", stale.body);
    let stored = request(port, "GET", "/api/v1/tenants/acme/scenarios/home", Some(&acme), b"").json();
    assert_eq!((stored["revision"].as_i64(), stored["owner"].as_str()), (Some(2), Some("someone-else")), "nothing overwritten");
    // Rollback naming a stale revision (a script's form post): refused the same way.
    let rb = console_post(port, &c, "/console/tenants/acme/scenarios/home/rollback", b"to_revision=&if_revision=1");
    assert_eq!(rb.status, 409, "{}", rb.body);
    assert!(rb.body.contains("changed by someone else to revision 2"), "{}", rb.body);
    // Over the current revision, the write is stored and the page then carries the new one.
    let fresh = form("2");
    assert_eq!(fresh.status, 200, "{}", fresh.body);
    assert!(fresh.body.contains("stored revision 3") && fresh.body.contains(r#"name="if_revision" value="3""#), "{}", fresh.body);
}

fn url_encode_form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect::<String>()
    };
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

#[test]
fn a_tenant_sees_its_own_counters_not_the_hosts() {
    let mut api = ApiHost::start(&[scenario("acme", "home"), scenario("rival", "feed")]);
    let (acme, admin) = (api.token("tenant:acme"), api.token("admin"));
    let port = api.port;
    let t0 = 1_700_000_040_000_i64 / 60_000 * 60_000;
    let mut lines: Vec<_> = (0..2).map(|i| event_line("acme", "home", "a", "view", t0 + 1_000 + i)).collect();
    lines.extend((0..7).map(|i| event_line("rival", "feed", "r", "view", t0 + 1_000 + i)));
    lines.push(event_line("nobody", "ghost", "g", "view", t0 + 2_000));
    api.send(&lines);
    let host_events = || request(port, "GET", "/api/v1/tenants/acme/status", Some(&admin), b"").json()["host"]["events_in"].as_u64();
    assert!(wait_until(Duration::from_secs(15), || host_events() >= Some(10)), "{:?}\n{}", host_events(), api.host.log());
    let mine = || request(port, "GET", "/api/v1/tenants/acme/status", Some(&acme), b"").json();
    assert!(wait_until(Duration::from_secs(10), || mine()["host"]["events_in"] == 2), "{}", mine());
    assert_eq!(mine()["host"]["unknown_scenario"], 0, "host-wide counts are not the tenant's");
    let c = format!("rtscore_token={acme}");
    let page = request_raw(port, "GET", "/console", &[("Cookie", &c)], b"", None).body;
    assert!(page.contains("tenant acme on this host") && !page.contains("all tenants") && !page.contains("unknown scenario"), "{page}");
    assert!(!page.contains("rival") && !page.contains("nobody"), "{page}");
    let sse = request_raw(port, "GET", "/console/events", &[("Cookie", &c)], b"", Some("\n\n"));
    assert!(sse.body.contains("tenant acme on this host") && !sse.body.contains("all tenants"), "{}", sse.body);
    let admin_page = request_raw(port, "GET", "/console", &[("Cookie", &format!("rtscore_token={admin}"))], b"", None).body;
    assert!(admin_page.contains("this host, all tenants") && admin_page.contains("rival"), "{admin_page}");
}

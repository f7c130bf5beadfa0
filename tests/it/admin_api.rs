//! The admin API and the console on a real host (`rtscore run` with `--http-addr`): every route
//! refuses a missing, bad or other tenant's token and serves its own tenant and admin; edits
//! are validated, bump the revision and reach the running host; plugin uploads are checked
//! and scoped; tenant-supplied strings are escaped in the console.

use std::time::Duration;

use rtscore::admin::Access;
use rtscore::api::route_specs;
use rtscore_testkit::web::{ApiHost, Resp, console_post, request, request_raw, upload_plugin};
use rtscore_testkit::{Stack, cli, event_line, plugins, rtscore_command, unique, wait_until};
use serde_json::{Value, json};

const XSS_ITEM: &str = "<img src=x onerror=alert(1)>";

fn scenario(tenant: &str, id: &str) -> Value {
    json!({"tenant_id": tenant, "scenario_id": id, "status": "active", "revision": 1, "owner": "platform-team",
           "config": {"realtime_compute": {"hot_score": {"action_weights": {"view": 1.0, "purchase": 10.0},
                      "window_size_minutes": 1, "window_slide_minutes": 1, "top_n": 10}}}})
}

struct World {
    api: ApiHost,
    acme: String,
    rival: String,
    admin: String,
}

fn world() -> World {
    let api = ApiHost::start(&[scenario("acme", "home"), scenario("acme", "search"), scenario("rival", "feed")]);
    let (acme, rival, admin) = (api.token("tenant:acme"), api.token("tenant:rival"), api.token("admin"));
    World { api, acme, rival, admin }
}

fn applied_revision(w: &World, tenant: &str, scenario: &str) -> Option<i64> {
    let r = request(w.api.port, "GET", &format!("/api/v1/tenants/{tenant}/status"), Some(&w.admin), b"");
    r.json()["scenarios"].as_array()?.iter().find(|s| s["scenario_id"] == scenario)?["status"]["config_revision"].as_i64()
}

fn stored_revision(w: &World, tenant: &str, scenario: &str) -> i64 {
    let r = request(w.api.port, "GET", &format!("/api/v1/tenants/{tenant}/scenarios/{scenario}"), Some(&w.admin), b"");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["revision"].as_i64().unwrap()
}

/// A body that the route would accept from an authorised caller.
fn body_for(method: &str, path: &str) -> Vec<u8> {
    match (method, path.ends_with("/plugins")) {
        ("PUT", _) => serde_json::to_vec(&scenario("acme", "home")).unwrap(),
        ("PATCH", _) => br#"{"config":{"realtime_compute":{"hot_score":{"top_n":11}}}}"#.to_vec(),
        ("POST", true) => b"\0asm not a component".to_vec(),
        _ => Vec::new(),
    }
}

fn concrete(path: &str, tenant: &str, scenario: &str) -> String {
    let p = path.replace("{tenant}", tenant).replace("{scenario}", scenario).replace("{plugin}", "probe@1");
    if p.ends_with("/plugins") { format!("{p}?name=probe&version=1") } else { p }
}

fn refused(r: &Resp, want: u16, what: &str) {
    assert_eq!(r.status, want, "{what}: {}", r.body);
    let v = r.json();
    assert!(v["error"].is_string() && v["errors"].is_array(), "{what}: errors are JSON: {}", r.body);
}

#[test]
fn every_api_route_refuses_missing_bad_and_foreign_tokens() {
    let w = world();
    let port = w.api.port;
    // The scenario each route works on; DELETE works on one made for it.
    let put = request(
        port,
        "PUT",
        "/api/v1/tenants/acme/scenarios/disposable",
        Some(&w.acme),
        &serde_json::to_vec(&scenario("acme", "disposable")).unwrap(),
    );
    assert_eq!(put.status, 200, "{}", put.body);
    let before = stored_revision(&w, "acme", "home");
    let mut checked = 0;
    for (method, path, access) in route_specs() {
        let m = method.as_str();
        let target = if m == "DELETE" { "disposable" } else { "home" };
        let url = concrete(path, "acme", target);
        let body = body_for(m, path);
        let what = |who: &str| format!("{m} {url} with {who}");
        if access == Access::Public {
            assert_eq!(request(port, m, &url, None, &body).status, 200, "{}", what("no token"));
            continue;
        }
        checked += 1;
        refused(&request(port, m, &url, None, &body), 401, &what("no token"));
        refused(
            &request(port, m, &url, Some("rts_0000000000000000000000000000000000000000000000000000000000000000"), &body),
            401,
            &what("a bad token"),
        );
        let no_bearer = request_raw(port, m, &url, &[("Authorization", &w.acme)], &body, None);
        assert_eq!(no_bearer.status, 401, "{}", what("a token without `Bearer`"));
        assert!(no_bearer.header("www-authenticate").is_some_and(|h| h.starts_with("Bearer")));
        if access == Access::Tenant {
            refused(&request(port, m, &url, Some(&w.rival), &body), 403, &what("another tenant's token"));
        }
        if access == Access::Admin {
            refused(&request(port, m, &url, Some(&w.acme), &body), 403, &what("a tenant token"));
            let r = request(port, m, &url, Some(&w.admin), &body);
            assert!(![401, 403].contains(&r.status), "{} was refused: {} {}", what("admin"), r.status, r.body);
            continue;
        }
        for (who, token) in [("admin", &w.admin), ("its tenant", &w.acme)] {
            let r = request(port, m, &url, Some(token), &body);
            assert!(![401, 403].contains(&r.status), "{} was refused: {} {}", what(who), r.status, r.body);
        }
    }
    assert!(checked >= 10, "every secured route was exercised ({checked})");
    // The refused writes changed nothing the allowed ones did not: PUT, PATCH and rollback by
    // admin and acme bumped the revision six times (promote has no candidate: 422), the
    // refused attempts never.
    assert_eq!(stored_revision(&w, "acme", "home"), before + 6);
    // The rollout routes answer another tenant's token with 403 and change nothing.
    for suffix in ["promote", "rollback"] {
        refused(&request(port, "POST", &format!("/api/v1/tenants/acme/scenarios/home/{suffix}"), Some(&w.rival), b""), 403, suffix);
    }
    assert_eq!(stored_revision(&w, "acme", "home"), before + 6);
    // Reads of a tenant show nothing of another.
    let list = request(port, "GET", "/api/v1/tenants/acme/scenarios", Some(&w.acme), b"").json();
    let ids: Vec<_> = list["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["tenant_id"].as_str().unwrap().to_string(), d["scenario_id"].as_str().unwrap().to_string()))
        .collect();
    assert!(ids.iter().all(|(t, _)| t == "acme") && ids.len() == 2, "{ids:?}");
    assert_eq!(request(port, "GET", "/api/v1/whoami", Some(&w.rival), b"").json()["scope"], "tenant:rival");
    // The operations endpoint `/status` shows every tenant: with tokens configured, admin only.
    refused(&request(port, "GET", "/status", None, b""), 401, "/status without a token");
    refused(&request(port, "GET", "/status", Some(&w.acme), b""), 403, "/status with a tenant token");
    assert_eq!(request(port, "GET", "/status", Some(&w.admin), b"").status, 200);
}

#[test]
fn every_console_route_refuses_missing_bad_and_foreign_logins() {
    let w = world();
    let port = w.api.port;
    let cookie = |t: &str| format!("rtscore_token={t}");
    for &(m, path, needs_login) in rtscore::console::ROUTES {
        let url = concrete(path, "acme", "home");
        let body: &[u8] = if url.ends_with("/config") { b"action=validate&document=%7B%7D" } else { b"" };
        let form = ("Content-Type", "application/x-www-form-urlencoded");
        let send = |c: Option<&str>| {
            let mut h = vec![form];
            let c = c.map(cookie);
            if let Some(c) = &c {
                h.push(("Cookie", c.as_str()));
            }
            request_raw(port, m, &url, &h, body, if url.ends_with("/events") { Some("data:") } else { None })
        };
        if !needs_login {
            continue;
        }
        // Pages send a browser to the login form; everything else answers 401.
        let anonymous = if m == "GET" && !url.ends_with("/events") { 303 } else { 401 };
        assert_eq!(send(None).status, anonymous, "{m} {url} without a login");
        assert_eq!(send(Some("rts_bad")).status, anonymous, "{m} {url} with a bad token");
        if url.contains("/tenants/") {
            assert_eq!(send(Some(&w.rival)).status, 403, "{m} {url} with another tenant's login");
        }
        // Promote without a candidate (and rollback past the first revision) are refused by
        // the service, not by access control: the page says why.
        let allowed: &[u16] = if url.ends_with("/promote") || url.ends_with("/rollback") { &[200, 422] } else { &[200] };
        for t in [&w.acme, &w.admin] {
            let r = send(Some(t));
            assert!(allowed.contains(&r.status), "{m} {url} with an allowed login: {}", r.body);
            assert!(r.header("content-security-policy").is_some_and(|c| c.contains("script-src 'self'")));
        }
    }
    // Login sets an HttpOnly, SameSite=Strict cookie; a bad token gets none.
    let ok = request_raw(
        port,
        "POST",
        "/console/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        format!("token={}", w.acme).as_bytes(),
        None,
    );
    assert_eq!(ok.status, 303);
    let set = ok.header("set-cookie").expect("a cookie");
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    let bad =
        request_raw(port, "POST", "/console/login", &[("Content-Type", "application/x-www-form-urlencoded")], b"token=rts_nope", None);
    assert_eq!((bad.status, bad.header("set-cookie")), (401, None));
    // A write from a foreign page is refused even with the cookie.
    let c = cookie(&w.acme);
    let csrf = request_raw(
        port,
        "POST",
        "/console/tenants/acme/scenarios/home/config",
        &[("Content-Type", "application/x-www-form-urlencoded"), ("Cookie", &c), ("Origin", "http://evil.example")],
        b"action=apply&document=%7B%7D",
        None,
    );
    assert_eq!(csrf.status, 403);
    // The overview of a tenant lists only its scenarios.
    assert!(wait_until(Duration::from_secs(10), || applied_revision(&w, "acme", "home").is_some()));
    let page = request_raw(port, "GET", "/console", &[("Cookie", &c)], b"", None).body;
    assert!(page.contains("acme/home") && !page.contains("rival"), "{page}");

    // Revoking a token (deleting its line) ends the live stream it opened.
    use std::io::{Read, Write};
    let mut sse = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    sse.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(sse, "GET /console/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {c}\r\nConnection: close\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("data:") {
        let n = sse.read(&mut buf).expect("the first live update");
        assert!(n > 0, "stream closed early");
        got.extend_from_slice(&buf[..n]);
    }
    let tokens = w.api.dir.path().join("tokens");
    let kept: String =
        std::fs::read_to_string(&tokens).unwrap().lines().filter(|l| !l.starts_with("tenant:acme ")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&tokens, kept).unwrap();
    loop {
        match sse.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => panic!("the stream of a revoked token kept running: {e}"),
        }
    }
    assert_eq!(request(port, "GET", "/api/v1/tenants/acme/scenarios", Some(&w.acme), b"").status, 401, "revoked");
}

#[test]
fn edits_are_validated_versioned_and_reach_the_host() {
    let w = world();
    let port = w.api.port;
    let path = "/api/v1/tenants/acme/scenarios/home";
    // The seed's example: only `purchase` changes; the rest and platform fields are kept.
    let r =
        request(port, "PATCH", path, Some(&w.acme), br#"{"config":{"realtime_compute":{"hot_score":{"action_weights":{"purchase":15}}}}}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["revision"], 2);
    let doc = request(port, "GET", path, Some(&w.acme), b"").json();
    assert_eq!(doc["config"]["realtime_compute"]["hot_score"]["action_weights"], json!({"view": 1.0, "purchase": 15}));
    assert_eq!(doc["owner"], "platform-team");
    assert!(wait_until(Duration::from_secs(10), || applied_revision(&w, "acme", "home") == Some(2)), "the host applies revision 2");

    // Invalid: JSON errors with the field path and the rule; nothing stored.
    let r = request(port, "PATCH", path, Some(&w.acme), br#"{"config":{"realtime_compute":{"hot_score":{"top_n":0,"decay_lambda":-1}}}}"#);
    refused(&r, 422, "invalid patch");
    let paths: Vec<_> = r.json()["errors"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap().to_string()).collect();
    assert!(paths.contains(&"config.realtime_compute.hot_score.top_n".to_string()), "{paths:?}");
    assert!(r.json()["errors"][0]["rule"].as_str().is_some_and(|s| !s.is_empty()));
    let mut other = scenario("rival", "home");
    other["scenario_id"] = json!("home");
    let r = request(port, "PUT", path, Some(&w.acme), &serde_json::to_vec(&other).unwrap());
    refused(&r, 422, "a document naming another tenant");
    assert_eq!(r.json()["errors"][0]["path"], "tenant_id");
    refused(&request(port, "PUT", path, Some(&w.acme), b"{not json"), 400, "a body that is not JSON");
    refused(&request(port, "GET", "/api/v1/tenants/acme/scenarios/nope", Some(&w.acme), b""), 404, "a missing scenario");
    let dry = request(port, "PATCH", &format!("{path}?dry_run=true"), Some(&w.acme), br#"{"status":"inactive"}"#);
    assert_eq!((dry.status, dry.json()["revision"].as_i64()), (200, Some(3)));
    assert_eq!(stored_revision(&w, "acme", "home"), 2, "a dry run stores nothing");
    // If-Match: the ETag of what the editor read; a write over a newer revision is a 409 that
    // names it, and stores nothing.
    let read = request(port, "GET", path, Some(&w.acme), b"");
    assert_eq!(read.header("etag"), Some("\"2\""), "{:?}", read.headers);
    let bearer = format!("Bearer {}", w.acme);
    let with_if_match = |rev: &str, body: &[u8]| {
        request_raw(
            port,
            "PATCH",
            path,
            &[("Authorization", bearer.as_str()), ("If-Match", rev), ("Content-Type", "application/json")],
            body,
            None,
        )
    };
    let r = with_if_match("\"1\"", br#"{"config":{"realtime_compute":{"hot_score":{"top_n":7}}}}"#);
    refused(&r, 409, "an edit of revision 1 over revision 2");
    assert!(r.json()["error"].as_str().is_some_and(|e| e.contains("revision 2")), "{}", r.body);
    refused(&with_if_match("yesterday", b"{}"), 400, "an If-Match that is not a revision");
    assert_eq!(stored_revision(&w, "acme", "home"), 2);
    let r = with_if_match("\"2\"", br#"{"config":{"realtime_compute":{"hot_score":{"top_n":7}}}}"#);
    assert_eq!((r.status, r.json()["revision"].as_i64()), (200, Some(3)), "{}", r.body);
    // PATCH ?create=true makes a scenario from defaults; DELETE removes it from the host.
    let r = request(
        port,
        "PATCH",
        "/api/v1/tenants/acme/scenarios/fresh?create=true",
        Some(&w.acme),
        br#"{"config":{"realtime_compute":{"hot_score":{"top_n":3}}}}"#,
    );
    assert_eq!((r.status, r.json()["revision"].as_i64()), (200, Some(1)), "{}", r.body);
    assert!(wait_until(Duration::from_secs(10), || applied_revision(&w, "acme", "fresh") == Some(1)));
    assert_eq!(request(port, "DELETE", "/api/v1/tenants/acme/scenarios/fresh", Some(&w.acme), b"").status, 200);
    assert!(wait_until(Duration::from_secs(10), || applied_revision(&w, "acme", "fresh").is_none()));
    // OpenAPI is served as checked in.
    let spec = request(port, "GET", "/api/v1/openapi.json", None, b"").json();
    assert_eq!(spec, serde_json::from_str::<Value>(rtscore::api::OPENAPI_JSON).unwrap());
}

#[test]
fn the_seeds_post_route_is_the_patch_of_the_callers_tenant() {
    let w = world();
    let port = w.api.port;
    // The seed's exact call, with acme's token: only purchase changes, to 15.
    let seed_body = br#"{"config": {"realtime_compute": {"hot_score": {"action_weights": {"purchase": 15.0}}}}}"#;
    let r = request(port, "POST", "/api/v1/scenarios/home", Some(&w.acme), seed_body);
    assert_eq!((r.status, r.json()["revision"].as_i64(), r.json()["tenant_id"].as_str()), (200, Some(2), Some("acme")), "{}", r.body);
    let doc = request(port, "GET", "/api/v1/tenants/acme/scenarios/home", Some(&w.acme), b"").json();
    assert_eq!(doc["config"]["realtime_compute"]["hot_score"]["action_weights"], json!({"view": 1.0, "purchase": 15.0}));
    assert_eq!(
        (doc["owner"].as_str(), doc["config"]["realtime_compute"]["hot_score"]["top_n"].as_i64()),
        (Some("platform-team"), Some(10))
    );
    assert!(wait_until(Duration::from_secs(10), || applied_revision(&w, "acme", "home") == Some(2)), "the host applies revision 2");

    // The same rules as PATCH: validation, dry runs, If-Match, no implicit create.
    let r = request(port, "POST", "/api/v1/scenarios/home", Some(&w.acme), br#"{"config":{"realtime_compute":{"hot_score":{"top_n":0}}}}"#);
    refused(&r, 422, "an invalid merge result");
    assert_eq!(r.json()["errors"][0]["path"], "config.realtime_compute.hot_score.top_n");
    let dry = request(port, "POST", "/api/v1/scenarios/home?dry_run=true", Some(&w.acme), br#"{"status":"inactive"}"#);
    assert_eq!((dry.status, dry.json()["revision"].as_i64()), (200, Some(3)));
    refused(&request(port, "POST", "/api/v1/scenarios/nope", Some(&w.acme), seed_body), 404, "a missing scenario");
    let bearer = format!("Bearer {}", w.acme);
    let stale =
        request_raw(port, "POST", "/api/v1/scenarios/home", &[("Authorization", bearer.as_str()), ("If-Match", "\"1\"")], seed_body, None);
    refused(&stale, 409, "an edit of revision 1 over revision 2");
    assert_eq!(stored_revision(&w, "acme", "home"), 2);

    // A tenant token names only its own tenant; an admin token names exactly one.
    let rival_header = |token: &str, body: &[u8]| {
        let bearer = format!("Bearer {token}");
        request_raw(port, "POST", "/api/v1/scenarios/feed", &[("Authorization", bearer.as_str()), ("X-Tenant-Id", "rival")], body, None)
    };
    refused(&rival_header(&w.acme, seed_body), 403, "acme naming rival");
    refused(
        &request(port, "POST", "/api/v1/scenarios/feed", Some(&w.acme), br#"{"tenant_id":"rival","status":"inactive"}"#),
        403,
        "acme's body naming rival",
    );
    refused(&request(port, "POST", "/api/v1/scenarios/feed", Some(&w.admin), seed_body), 400, "admin without a tenant");
    let both = request_raw(
        port,
        "POST",
        "/api/v1/scenarios/feed",
        &[("Authorization", &format!("Bearer {}", w.admin)), ("X-Tenant-Id", "rival")],
        br#"{"tenant_id":"acme","status":"inactive"}"#,
        None,
    );
    refused(&both, 400, "two tenants named");
    assert!(both.json()["error"].as_str().is_some_and(|e| e.contains("rival") && e.contains("acme")), "{}", both.body);
    assert_eq!(stored_revision(&w, "rival", "feed"), 1, "nothing refused was stored");
    let r = rival_header(&w.admin, seed_body);
    assert_eq!((r.status, r.json()["tenant_id"].as_str(), r.json()["revision"].as_i64()), (200, Some("rival"), Some(2)), "{}", r.body);
    let r = request(
        port,
        "POST",
        "/api/v1/scenarios/feed",
        Some(&w.admin),
        br#"{"tenant_id":"rival","config":{"realtime_compute":{"hot_score":{"top_n":5}}}}"#,
    );
    assert_eq!((r.status, r.json()["revision"].as_i64()), (200, Some(3)), "{}", r.body);
    let feed = request(port, "GET", "/api/v1/tenants/rival/scenarios/feed", Some(&w.rival), b"").json();
    assert_eq!(feed["config"]["realtime_compute"]["hot_score"]["action_weights"]["purchase"], 15.0);
    assert_eq!(feed["config"]["realtime_compute"]["hot_score"]["top_n"], 5);
    assert_eq!(stored_revision(&w, "acme", "home"), 2, "acme's scenario of the same name is untouched");
}

/// Sends one tumbling minute of events for `home` from `t`: "bought" purchased once, "viewed"
/// viewed three times. Live weights (purchase 10, view 1) rank "bought" first, the candidate's
/// (view 100, purchase 1) "viewed".
fn window_of_events(w: &mut World, t: i64) {
    let mut lines = vec![event_line("acme", "home", "bought", "purchase", t + 1_000)];
    lines.extend((0..3).map(|n| event_line("acme", "home", "viewed", "view", t + 2_000 + n)));
    w.api.send(&lines);
}

#[test]
fn promote_rollback_and_history_through_the_api() {
    let mut w = world();
    let port = w.api.port;
    let path = "/api/v1/tenants/acme/scenarios/home";
    let live = |w: &World| request(w.api.port, "GET", &format!("{path}/live"), Some(&w.acme), b"").json();
    // Revision 2 adds a candidate; it runs in shadow beside the live weights.
    let cand = br#"{"candidate":{"hot_score":{"action_weights":{"view":100.0,"purchase":1.0}}}}"#;
    let r = request(port, "PATCH", &format!("{path}?immediately=true"), Some(&w.acme), cand);
    assert_eq!((r.status, r.json()["revision"].as_i64()), (200, Some(2)), "{}", r.body);
    assert!(wait_until(Duration::from_secs(10), || applied_revision(&w, "acme", "home") == Some(2)), "{}", w.api.host.log());
    let t0 = 1_700_000_040_000_i64 / 60_000 * 60_000;
    window_of_events(&mut w, t0);
    w.api.send(&[event_line("acme", "home", "later", "view", t0 + 60_000 + 11_000)]);
    assert!(
        wait_until(Duration::from_secs(15), || {
            let v = live(&w);
            v["hot"]["items"][0]["item_id"] == "bought" && v["shadow"]["list"]["items"][0]["item_id"] == "viewed"
        }),
        "live and shadow lists rank by their own weights: {}\n{}",
        live(&w),
        w.api.host.log()
    );

    // Another tenant's token is refused on all three routes.
    for (m, suffix) in [("GET", "history"), ("POST", "promote"), ("POST", "rollback")] {
        refused(&request(port, m, &format!("{path}/{suffix}"), Some(&w.rival), b""), 403, suffix);
    }

    // Promote: revision 3 carries the candidate's weights and no candidate.
    let r = request(port, "POST", &format!("{path}/promote?immediately=true"), Some(&w.acme), b"");
    assert_eq!((r.status, r.json()["revision"].as_i64()), (200, Some(3)), "{}", r.body);
    let doc = &r.json()["document"];
    assert!(doc.get("candidate").is_none(), "{doc}");
    assert_eq!(doc["config"]["realtime_compute"]["hot_score"]["action_weights"]["view"], 100.0);
    assert!(wait_until(Duration::from_secs(10), || applied_revision(&w, "acme", "home") == Some(3)), "{}", w.api.host.log());
    // The next window's live list ranks as the candidate did; the shadow has ended.
    window_of_events(&mut w, t0 + 60_000 + 12_000);
    w.api.send(&[event_line("acme", "home", "later", "view", t0 + 120_000 + 11_000)]);
    assert!(
        wait_until(Duration::from_secs(15), || {
            let v = live(&w);
            v["hot"]["config_revision"] == 3 && v["hot"]["items"][0]["item_id"] == "viewed" && v["shadow"].is_null()
        }),
        "the promoted weights are live: {}",
        live(&w)
    );
    let r = request(port, "POST", &format!("{path}/promote"), Some(&w.acme), b"");
    refused(&r, 422, "promote without a candidate");
    assert_eq!(r.json()["errors"][0]["path"], "candidate");

    // Rollback (default: the revision before the current, 2: live weights plus the candidate):
    // stored as revision 4 and applied. Revision 1 was written by the fixture, not stored
    // through the service, so the history starts at 2.
    let r = request(port, "POST", &format!("{path}/rollback?to_revision=99"), Some(&w.acme), b"");
    refused(&r, 422, "rollback to a revision that never existed");
    assert_eq!(r.json()["errors"][0]["path"], "revision");
    refused(&request(port, "POST", &format!("{path}/rollback?to_revision=x"), Some(&w.acme), b""), 400, "a revision that is no number");
    let r = request(port, "POST", &format!("{path}/rollback?immediately=true"), Some(&w.acme), b"");
    assert_eq!((r.status, r.json()["revision"].as_i64()), (200, Some(4)), "{}", r.body);
    assert_eq!(r.json()["document"]["config"]["realtime_compute"]["hot_score"]["action_weights"]["purchase"], 10.0);
    assert!(r.json()["document"].get("candidate").is_some(), "the candidate is back in shadow");
    assert!(wait_until(Duration::from_secs(10), || applied_revision(&w, "acme", "home") == Some(4)), "{}", w.api.host.log());

    // History lists every revision, oldest first.
    let h = request(port, "GET", &format!("{path}/history"), Some(&w.acme), b"");
    assert_eq!(h.status, 200, "{}", h.body);
    let revisions: Vec<_> = h.json()["revisions"].as_array().unwrap().iter().map(|d| d["revision"].as_i64().unwrap()).collect();
    assert_eq!(revisions, vec![2, 3, 4]);
    assert!(h.json()["revisions"][1].get("candidate").is_none(), "revision 3 is the promoted one");
    refused(&request(port, "GET", "/api/v1/tenants/acme/scenarios/nope/history", Some(&w.acme), b""), 404, "history of nothing");
}

#[test]
fn plugin_uploads_are_checked_stored_with_their_hash_and_scoped() {
    let w = world();
    let port = w.api.port;
    let wasm = plugins::module("gravity");
    let up = |token: &str, name: &str, body: &[u8]| upload_plugin(port, "acme", token, name, "1.0.0", body);
    let r = up(&w.acme, "acme-gravity", &wasm);
    assert_eq!(r.status, 201, "{}", r.body);
    let sha = rtscore::plugin::sha256_hex(&wasm);
    assert_eq!(r.json()["plugin"]["sha256"], sha.as_str());
    assert_eq!(r.json()["reference"]["sha256"], sha.as_str());
    assert!(w.api.dir.path().join("plugins/acme-gravity@1.0.0.wasm").is_file());
    refused(&up(&w.acme, "broken", b"\0asm\x0d\0\x01\0 junk"), 422, "a module that does not load");
    assert_eq!(up(&w.acme, "broken", b"x").json()["errors"][0]["path"], "module");
    refused(&up(&w.acme, "BadName", &wasm), 422, "an invalid plugin name");
    let quota = rtscore::config::plugin_limits::DEFAULT_MAX_MODULE_BYTES;
    let huge = vec![0u8; quota + 1];
    assert_eq!(up(&w.acme, "huge", &huge).status, 413, "above the per-module quota");
    assert_eq!(up(&w.acme, "huge", &vec![0u8; quota + 4096]).status, 413, "far above the quota");
    // Scoped: the owner lists it, another tenant neither sees nor replaces it.
    let mine = request(port, "GET", "/api/v1/tenants/acme/plugins", Some(&w.acme), b"").json();
    assert_eq!(mine["plugins"].as_array().unwrap().len(), 1, "{mine}");
    let theirs = request(port, "GET", "/api/v1/tenants/rival/plugins", Some(&w.rival), b"").json();
    assert!(theirs["plugins"].as_array().unwrap().is_empty(), "{theirs}");
    let steal = upload_plugin(port, "rival", &w.rival, "acme-gravity", "1.0.0", &wasm);
    refused(&steal, 403, "replacing another tenant's module");
    // Published versions are immutable: the same bytes again are accepted, other bytes are a
    // conflict (scenarios referencing acme-gravity@1.0.0 without a hash keep their module).
    assert_eq!(up(&w.acme, "acme-gravity", &wasm).status, 201, "the same module again");
    refused(&up(&w.acme, "acme-gravity", &plugins::module("decay-weighted")), 409, "other bytes under a published version");
    // The uploaded module is referenced and runs on the host.
    let patch = json!({"config": {"realtime_compute": {"hot_score": {"plugin": {"name": "acme-gravity", "version": "1.0.0", "sha256": sha, "params": {"gravity": 1.5}}}}}});
    assert_eq!(request(port, "PATCH", "/api/v1/tenants/acme/scenarios/home", Some(&w.acme), patch.to_string().as_bytes()).status, 200);
    let state = || {
        let r = request(port, "GET", "/api/v1/tenants/acme/status", Some(&w.acme), b"").json();
        r["scenarios"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["scenario_id"] == "home")
            .map(|s| s["status"]["plugin_state"].as_str().unwrap_or("").to_string())
    };
    assert!(
        wait_until(Duration::from_secs(20), || state().is_some_and(|s| s.starts_with("active"))),
        "plugin state: {:?}\n{}",
        state(),
        w.api.host.log()
    );
}

/// The rival's status row for `feed`: (plugin state, plugin error).
fn feed_plugin(w: &World) -> (String, String) {
    let r = request(w.api.port, "GET", "/api/v1/tenants/rival/status", Some(&w.rival), b"").json();
    let row = r["scenarios"].as_array().and_then(|a| a.iter().find(|s| s["scenario_id"] == "feed").cloned()).unwrap_or_default();
    let text = |k: &str| row["status"][k].as_str().unwrap_or("").to_string();
    (text("plugin_state"), text("plugin_error"))
}

#[test]
fn plugin_references_stay_in_the_tenant_namespace_unless_an_admin_shares() {
    let w = world();
    let port = w.api.port;
    let wasm = plugins::module("gravity");
    let sha = rtscore::plugin::sha256_hex(&wasm);
    let up = upload_plugin(port, "acme", &w.acme, "acme-gravity", "1.0.0", &wasm);
    assert_eq!(up.status, 201, "{}", up.body);
    let reference = |name: &str| json!({"config": {"realtime_compute": {"hot_score": {"plugin": {"name": name, "version": "1.0.0", "sha256": sha, "params": {"gravity": 1.5}}}}}});
    let patch_feed = |token: &str, name: &str| {
        request(port, "PATCH", "/api/v1/tenants/rival/scenarios/feed", Some(token), reference(name).to_string().as_bytes())
    };

    // API path: the rival may not reference acme's module, even with an admin token (the
    // namespace is the scenario's tenant's), and the answer equals that for a missing module.
    let foreign = patch_feed(&w.rival, "acme-gravity");
    refused(&foreign, 422, "another tenant's module");
    let rule = foreign.json()["errors"][0]["rule"].as_str().unwrap().to_string();
    assert!(rule.contains("no module `acme-gravity@1.0.0` owned by tenant `rival` or shared"), "{rule}");
    assert_eq!(foreign.json()["errors"][0]["path"], "config.realtime_compute.hot_score.plugin");
    let missing = patch_feed(&w.rival, "ghost");
    assert_eq!(missing.json()["errors"][0]["rule"].as_str().unwrap().replace("ghost", "acme-gravity"), rule, "indistinguishable");
    refused(&patch_feed(&w.admin, "acme-gravity"), 422, "an admin writing the rival's scenario");
    assert_eq!(stored_revision(&w, "rival", "feed"), 1, "nothing stored");
    assert!(request(port, "GET", "/api/v1/tenants/rival/plugins", Some(&w.rival), b"").json()["plugins"].as_array().unwrap().is_empty());

    // Store path: the document written straight into the scenarios directory is applied, but
    // the host refuses to run the module for the rival and says why in its status.
    let mut doc = scenario("rival", "feed");
    doc["revision"] = 2.into();
    doc["config"]["realtime_compute"]["hot_score"]["plugin"] =
        reference("acme-gravity")["config"]["realtime_compute"]["hot_score"]["plugin"].clone();
    std::fs::write(w.api.dir.path().join("scenarios/rival__feed.json"), serde_json::to_vec(&doc).unwrap()).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || feed_plugin(&w)
            .1
            .contains("no module `acme-gravity@1.0.0` owned by tenant `rival` or shared")),
        "{:?}\n{}",
        feed_plugin(&w),
        w.api.host.log()
    );
    assert!(feed_plugin(&w).0.starts_with("quarantined"), "{:?}", feed_plugin(&w));

    // Only an admin shares: tenant tokens, the owner's included, get 403.
    let share = |token: &str, method: &str| request(port, method, "/api/v1/plugins/acme-gravity@1.0.0/shared", Some(token), b"");
    refused(&share(&w.rival, "PUT"), 403, "a tenant sharing another's module");
    refused(&share(&w.acme, "PUT"), 403, "the owner sharing its module");
    refused(&request(port, "PUT", "/api/v1/plugins/ghost@1.0.0/shared", Some(&w.admin), b""), 404, "sharing nothing");
    let shared = share(&w.admin, "PUT");
    assert_eq!(shared.status, 200, "{}", shared.body);
    assert_eq!(shared.json()["plugin"]["shared"], true);
    // Shared: listed to the rival (without its owner) and usable by both, without a restart.
    let listed = request(port, "GET", "/api/v1/tenants/rival/plugins", Some(&w.rival), b"").json();
    assert_eq!(listed["plugins"][0]["name"], "acme-gravity", "{listed}");
    assert_eq!((listed["plugins"][0]["shared"].as_bool(), listed["plugins"][0]["owner"].is_null()), (Some(true), true), "{listed}");
    assert!(wait_until(Duration::from_secs(20), || feed_plugin(&w).0.starts_with("active")), "{:?}\n{}", feed_plugin(&w), w.api.host.log());
    assert_eq!(patch_feed(&w.rival, "acme-gravity").status, 200, "the rival may reference it now");
    assert_eq!(
        request(port, "PATCH", "/api/v1/tenants/acme/scenarios/home", Some(&w.acme), reference("acme-gravity").to_string().as_bytes())
            .status,
        200
    );
    // Hot deploy stays: the owner publishes a new version and switches to it, no restart.
    let up2 = upload_plugin(port, "acme", &w.acme, "acme-gravity", "1.0.1", &wasm);
    assert_eq!(up2.status, 201, "{}", up2.body);
    let v2 = json!({"config": {"realtime_compute": {"hot_score": {"plugin": {"version": "1.0.1"}}}}});
    assert_eq!(request(port, "PATCH", "/api/v1/tenants/acme/scenarios/home", Some(&w.acme), v2.to_string().as_bytes()).status, 200);
    let home_state = || {
        let r = request(port, "GET", "/api/v1/tenants/acme/status", Some(&w.acme), b"").json();
        r["scenarios"].as_array().and_then(|a| a.iter().find(|s| s["scenario_id"] == "home").cloned()).unwrap_or_default()["status"]
            ["plugin_state"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert!(wait_until(Duration::from_secs(20), || home_state() == "active acme-gravity@1.0.1"), "{}\n{}", home_state(), w.api.host.log());
    // A tenant still cannot replace a shared module it does not own.
    let replace = upload_plugin(port, "rival", &w.rival, "acme-gravity", "1.0.0", &wasm);
    refused(&replace, 403, "replacing a shared module");

    // Unsharing would take the module from the rival's running scenario: refused, with the
    // count; once the rival moved off it, the mark comes off and the rival may not use it again.
    refused(&share(&w.rival, "DELETE"), 403, "a tenant unsharing");
    let busy = share(&w.admin, "DELETE");
    refused(&busy, 409, "unsharing a module other tenants use");
    assert!(busy.json()["error"].as_str().unwrap().contains("1 scenario(s) of other tenants (rival/feed)"), "{}", busy.body);
    let off = json!({"config": {"realtime_compute": {"hot_score": {"plugin": null}}}});
    assert_eq!(request(port, "PATCH", "/api/v1/tenants/rival/scenarios/feed", Some(&w.rival), off.to_string().as_bytes()).status, 200);
    assert_eq!(share(&w.admin, "DELETE").status, 200, "acme's own scenario does not hold it");
    refused(&patch_feed(&w.rival, "acme-gravity"), 422, "unshared again");
    assert!(request(port, "GET", "/api/v1/tenants/rival/plugins", Some(&w.rival), b"").json()["plugins"].as_array().unwrap().is_empty());
}

#[test]
fn tenant_supplied_strings_are_escaped_in_the_console() {
    let mut w = world();
    let port = w.api.port;
    // A candidate in shadow, so the item id also reaches the shadow comparison.
    let cand = br#"{"candidate":{"hot_score":{"action_weights":{"view":5.0}}}}"#;
    let r = request(port, "PATCH", "/api/v1/tenants/acme/scenarios/home?immediately=true", Some(&w.acme), cand);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(wait_until(Duration::from_secs(10), || applied_revision(&w, "acme", "home") == Some(2)), "{}", w.api.host.log());
    let t0 = 1_700_000_040_000_i64 / 60_000 * 60_000;
    let mut lines = vec![event_line("acme", "home", "x", "view", t0 + 1_000)];
    // A JSON-escaped item id carrying markup, then an event that moves the watermark on.
    lines.push(
        format!(
            r#"{{"tenant_id":"acme","scenario_id":"home","user_id":"u","item_id":{},"action":"purchase","ts":{}}}"#,
            serde_json::to_string(XSS_ITEM).unwrap(),
            t0 + 2_000
        )
        .into_bytes(),
    );
    lines.push(event_line("acme", "home", "later", "view", t0 + 60_000 + 11_000));
    // A rejected event is counted against the scenario it names.
    lines.push(event_line("acme", "home", "y", "NOT-AN-ACTION", t0 + 3_000));
    w.api.send(&lines);
    let live = || request(port, "GET", "/api/v1/tenants/acme/scenarios/home/live", Some(&w.acme), b"");
    assert!(
        wait_until(Duration::from_secs(15), || live().status == 200 && live().json()["hot"]["items"][0]["item_id"] == XSS_ITEM),
        "hot list with the item\n{}",
        w.api.host.log()
    );
    assert!(wait_until(Duration::from_secs(5), || live().json()["rejected"] == 1), "{}", live().body);
    assert!(
        wait_until(Duration::from_secs(5), || live().json()["shadow"]["list"]["items"]
            .as_array()
            .is_some_and(|a| a.iter().any(|i| i["item_id"] == XSS_ITEM))),
        "the shadow list has the item: {}",
        live().body
    );
    let c = format!("rtscore_token={}", w.acme);
    for url in ["/console", "/console/tenants/acme/scenarios/home"] {
        let page = request_raw(port, "GET", url, &[("Cookie", &c)], b"", None).body;
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"), "{url} shows the item, escaped:\n{page}");
        assert!(!page.contains("<img"), "{url} must not contain markup from the item id:\n{page}");
    }
    let overview = request_raw(port, "GET", "/console", &[("Cookie", &c)], b"", None).body;
    assert!(overview.contains("candidate builtin"), "the overview names the running candidate:\n{overview}");
    let page = request_raw(port, "GET", "/console/tenants/acme/scenarios/home", &[("Cookie", &c)], b"", None).body;
    let shadow = page.split(r#"<div id="shadow">"#).nth(1).unwrap_or("");
    assert!(shadow.contains("&lt;img src=x onerror=alert(1)&gt;"), "the shadow comparison shows the item, escaped:\n{page}");
    let sse = request_raw(port, "GET", "/console/tenants/acme/scenarios/home/events", &[("Cookie", &c)], b"", Some("\n\n"));
    assert!(sse.body.contains("&lt;img src=x onerror=alert(1)&gt;") && !sse.body.contains("<img"), "{}", sse.body);
    // An editor error echoing tenant text is escaped too.
    let form = format!("action=validate&document={}", "%7B%22%3Cscript%3E%22%3A1%2C%22status%22%3A%22%3Cb%3Ebold%3C%2Fb%3E%22%7D");
    let r = console_post(port, &c, "/console/tenants/acme/scenarios/home/config", form.as_bytes());
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(!r.body.contains("<script>") && !r.body.contains("<b>bold") && r.body.contains("&lt;b&gt;bold"), "{}", r.body);
}

#[test]
fn on_the_fleet_store_the_api_cli_and_host_share_mongodb() {
    let stack = Stack::ensure();
    let db = unique("api");
    let api = ApiHost::start_mongo(&stack, &db, &[scenario("acme", "home"), scenario("rival", "feed")]);
    let (acme, rival) = (api.token("tenant:acme"), api.token("tenant:rival"));
    let port = api.port;
    let r = request(
        port,
        "PATCH",
        "/api/v1/tenants/acme/scenarios/home",
        Some(&acme),
        br#"{"config":{"realtime_compute":{"hot_score":{"decay_lambda":0.5}}}}"#,
    );
    assert_eq!((r.status, r.json()["revision"].as_i64()), (200, Some(2)), "{}", r.body);
    let applied = || {
        let v = request(port, "GET", "/api/v1/tenants/acme/status", Some(&acme), b"").json();
        v["scenarios"][0]["status"]["config_revision"].as_i64()
    };
    assert!(wait_until(Duration::from_secs(10), || applied() == Some(2)), "the host polls MongoDB and applies revision 2");
    // The CLI reads what the API wrote, through the same store.
    let got = cli(&[
        "scenario",
        "get",
        "--mongodb-url",
        &stack.mongodb_url,
        "--mongodb-database",
        &db,
        "--tenant-id",
        "acme",
        "--scenario-id",
        "home",
    ]);
    assert!(got.contains("\"revision\": 2") && got.contains("0.5"), "{got}");
    assert_eq!(request(port, "GET", "/api/v1/tenants/rival/scenarios/home", Some(&acme), b"").status, 403);
    let ids: Vec<_> = request(port, "GET", "/api/v1/tenants/rival/scenarios", Some(&rival), b"").json()["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["scenario_id"].clone())
        .collect();
    assert_eq!(ids, vec![json!("feed")]);

    // Uploads go to the fleet's `plugins` collection, owned by the tenant.
    let wasm = plugins::module("decay-weighted");
    let up = request_raw(
        port,
        "POST",
        "/api/v1/tenants/acme/plugins?name=acme-decay&version=2.0.0",
        &[("Authorization", &format!("Bearer {acme}"))],
        &wasm,
        None,
    );
    assert_eq!(up.status, 201, "{}", up.body);
    let listed = cli(&["plugin", "list", "--mongodb-url", &stack.mongodb_url, "--mongodb-database", &db]);
    let line = listed.lines().find(|l| l.starts_with("acme-decay@2.0.0")).unwrap_or_else(|| panic!("{listed}"));
    assert!(line.contains(&rtscore::plugin::sha256_hex(&wasm)) && line.trim_end().ends_with("acme"), "{line}");
    assert!(request(port, "GET", "/api/v1/tenants/rival/plugins", Some(&rival), b"").json()["plugins"].as_array().unwrap().is_empty());
    let steal = request_raw(
        port,
        "POST",
        "/api/v1/tenants/rival/plugins?name=acme-decay&version=2.0.0",
        &[("Authorization", &format!("Bearer {rival}"))],
        &wasm,
        None,
    );
    assert_eq!(steal.status, 403, "{}", steal.body);

    // The operator's CLI shares it on the fleet store; the rival's scenario may then use it.
    let mongo = ["--mongodb-url", stack.mongodb_url.as_str(), "--mongodb-database", db.as_str()];
    let reference =
        json!({"config": {"realtime_compute": {"hot_score": {"plugin": {"name": "acme-decay", "version": "2.0.0"}}}}}).to_string();
    let patch_feed = || request(port, "PATCH", "/api/v1/tenants/rival/scenarios/feed", Some(&rival), reference.as_bytes());
    assert_eq!(patch_feed().status, 422, "not shared yet");
    let out = cli(&[&["plugin", "share", "acme-decay@2.0.0"][..], &mongo].concat());
    assert!(out.contains("shared acme-decay@2.0.0 (owner acme)"), "{out}");
    assert!(cli(&[&["plugin", "list"][..], &mongo].concat()).lines().any(|l| l.starts_with("acme-decay@2.0.0") && l.contains(" yes ")));
    let listed = request(port, "GET", "/api/v1/tenants/rival/plugins", Some(&rival), b"").json();
    assert_eq!(listed["plugins"][0]["shared"], true, "{listed}");
    assert_eq!(patch_feed().status, 200);
    // While rival/feed references it, --unshare is refused and says why.
    let refused = rtscore_command().args([&["plugin", "share", "acme-decay@2.0.0", "--unshare"][..], &mongo].concat()).output().unwrap();
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && text.contains("referenced by 1 scenario(s) of other tenants (rival/feed)"), "{text}");
}

#[test]
fn strict_documents_answer_with_suggestions_warnings_and_refuse_dropped_weights_unless_asked() {
    let w = world();
    let port = w.api.port;
    let path = "/api/v1/tenants/acme/scenarios/search";
    let r = request(port, "PATCH", path, Some(&w.acme), br#"{"config":{"realtime_compute":{"hot_score":{"decay_lamda":0.5}}}}"#);
    refused(&r, 422, "a misspelt field");
    assert_eq!(r.json()["errors"][0]["path"], "config.realtime_compute.hot_score.decay_lamda");
    assert_eq!(r.json()["errors"][0]["rule"], "unknown field; did you mean \"decay_lambda\"?");

    // The platform's `owner` is kept and reported as a warning, not refused.
    let r = request(port, "PATCH", path, Some(&w.acme), br#"{"config":{"realtime_compute":{"hot_score":{"top_n":20}}}}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["warnings"].as_array().unwrap().iter().any(|w| w["path"] == "owner"), "{}", r.body);

    // Removing `view` from the weight map is refused with the list, unless asked for.
    let drop_view = br#"{"config":{"realtime_compute":{"hot_score":{"action_weights":{"view":null}}}}}"#;
    let r = request(port, "PATCH", path, Some(&w.acme), drop_view);
    refused(&r, 422, "a patch that drops a weighted action");
    assert_eq!(r.json()["errors"][0]["path"], "config.realtime_compute.hot_score.action_weights");
    assert!(r.json()["errors"][0]["rule"].as_str().unwrap().contains("revision 2: view"), "{}", r.body);
    assert_eq!(stored_revision(&w, "acme", "search"), 2);
    let r = request(port, "PATCH", &format!("{path}?drop_weights=true"), Some(&w.acme), drop_view);
    assert_eq!((r.status, r.json()["revision"].as_i64()), (200, Some(3)), "{}", r.body);
    assert_eq!(r.json()["document"]["replace_weights"], true);
    assert!(r.json()["warnings"].as_array().unwrap().iter().any(|w| w["rule"].as_str().unwrap().contains("no longer weights view")));
    // The host honours the marker (it checks every document against what it applies).
    assert!(wait_until(Duration::from_secs(10), || applied_revision(&w, "acme", "search") == Some(3)), "revision 3 not applied");
    // The next write does not carry the marker over.
    let r = request(port, "PATCH", path, Some(&w.acme), br#"{"config":{"realtime_compute":{"hot_score":{"top_n":30}}}}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["document"].get("replace_weights").is_none(), "{}", r.body);
}

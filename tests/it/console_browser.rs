//! The operator console in a real browser (headless Chromium through chromedriver): log in with
//! a tenant token, see only that tenant's scenarios, change a weight in the editor and watch
//! the hot list change; then a shadow candidate appears beside the live list and is promoted
//! from the page. The screenshots in `docs/screenshots/` come from this test: it writes them
//! under Cargo's target directory (`$CARGO_TARGET_DIR/tmp/screenshots/`, Cargo's
//! `CARGO_TARGET_TMPDIR`), so running the tests leaves the checkout clean; with
//! `RTSCORE_REFRESH_SCREENSHOTS=1` it refreshes `docs/screenshots/` instead.

use std::time::Duration;

use rtscore_testkit::browser::Browser;
use rtscore_testkit::web::{ApiHost, request};
use rtscore_testkit::{event_line, repo_root, wait_until};
use serde_json::{Value, json};

fn scenario(tenant: &str, id: &str) -> Value {
    json!({"tenant_id": tenant, "scenario_id": id, "scenario_type": "feed", "status": "active", "revision": 1,
           "config": {"realtime_compute": {"hot_score": {"action_weights": {"view": 1.0, "click": 2.0, "purchase": 10.0},
                      "decay_lambda": 0.1, "window_size_minutes": 1, "window_slide_minutes": 1, "top_n": 10}}}})
}

/// One minute of traffic starting at `start`: a much-viewed item, a bought one, some others.
fn minute(tenant: &str, scenario: &str, start: i64) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    for i in 0..20 {
        lines.push(event_line(tenant, scenario, "much-viewed", "view", start + 1_000 + i * 100));
    }
    for i in 0..3 {
        lines.push(event_line(tenant, scenario, "bought-once", "click", start + 2_000 + i * 100));
    }
    lines.push(event_line(tenant, scenario, "bought-once", "purchase", start + 3_000));
    for (n, item) in ["sneakers-42", "lamp-7", "mug-3"].iter().enumerate() {
        for i in 0..(n as i64 + 2) {
            lines.push(event_line(tenant, scenario, item, "view", start + 4_000 + i * 100));
        }
    }
    lines
}

fn shot(b: &Browser, name: &str) {
    let dir = match std::env::var("RTSCORE_REFRESH_SCREENSHOTS").as_deref() {
        Ok("1") => repo_root().join("docs/screenshots"),
        _ => std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots"),
    };
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    b.screenshot(&dir.join(name));
}

fn first_item(b: &Browser) -> String {
    b.text("#hot tbody tr td.item")
}

#[test]
fn a_tenant_logs_in_sees_its_scenarios_and_changes_a_weight() {
    let mut api = ApiHost::start(&[scenario("acme", "home"), scenario("acme", "search"), scenario("rival", "feed")]);
    let token = api.token("tenant:acme");
    let port = api.port;
    let base = format!("http://127.0.0.1:{port}");
    let t0 = 1_700_000_040_000_i64 / 60_000 * 60_000;
    let mut first = minute("acme", "home", t0);
    first.extend(minute("acme", "search", t0));
    first.extend(minute("rival", "feed", t0));
    first.push(event_line("acme", "home", "much-viewed", "view", t0 + 71_000));
    api.send(&first);

    let b = Browser::start();
    b.goto(&format!("{base}/console"));
    assert!(b.url().ends_with("/console/login"), "not logged in: sent to the login form ({})", b.url());
    shot(&b, "console-login.png");
    b.type_into("#token", &token);
    b.click("#login");
    b.wait_for(Duration::from_secs(15), "the overview with acme/home live", |b| {
        b.text(r#"tr[data-scenario="acme/home"]"#).contains("much-viewed")
    });
    let page = b.text("body");
    assert!(page.contains("Tenant acme") && page.contains("search"), "{page}");
    assert!(!page.contains("rival"), "another tenant's scenario is visible:\n{page}");
    shot(&b, "console-overview.png");

    b.click(r#"a[href="/console/tenants/acme/scenarios/home"]"#);
    b.wait_for(Duration::from_secs(15), "the hot list", |b| first_item(b) == "much-viewed");
    b.wait_for(Duration::from_secs(10), "the applied revision", |b| b.text("#applied-revision") == "1");
    b.wait_for(Duration::from_secs(10), "the status counters", |b| b.text("#status").contains("34"));
    shot(&b, "console-scenario.png");

    // The editor refuses an invalid document and says which field breaks which rule.
    let set = "const t = document.getElementById('document'); const d = JSON.parse(t.value); \
               const h = d.config.realtime_compute.hot_score; h.action_weights.purchase = arguments[0]; h.top_n = arguments[1]; \
               t.value = JSON.stringify(d, null, 2);";
    b.eval(set, json!([100.0, 0]));
    b.click("#validate");
    b.wait_for(Duration::from_secs(10), "the validation error", |b| {
        b.text("#editor-result").contains("config.realtime_compute.hot_score.top_n")
    });
    shot(&b, "console-editor-invalid.png");
    b.eval(set, json!([100.0, 10]));
    b.click("#apply");
    b.wait_for(Duration::from_secs(10), "the applied revision", |b| b.text("#editor-result").contains("stored revision 2"));
    let applied = || {
        let r = request(port, "GET", "/api/v1/tenants/acme/status", Some(&token), b"").json();
        r["scenarios"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["scenario_id"] == "home").cloned())
            .and_then(|s| s["status"]["config_revision"].as_i64())
    };
    assert!(wait_until(Duration::from_secs(10), || applied() == Some(2)), "the host applies revision 2");

    // The next window is scored with the new weight: the bought item overtakes the viewed one,
    // and the page shows it without a reload.
    let mut second = minute("acme", "home", t0 + 60_000);
    second.push(event_line("acme", "home", "much-viewed", "view", t0 + 131_000));
    api.send(&second);
    b.wait_for(Duration::from_secs(15), "the hot list under revision 2", |b| {
        first_item(b) == "bought-once" && b.text("#hot-revision") == "2"
    });
    assert!(b.text("#timeline").contains("much-viewed"), "the timeline keeps the earlier window");
    b.wait_for(Duration::from_secs(10), "the status counters of both minutes", |b| b.text("#status").contains("68"));
    b.eval("window.scrollTo(0, 0)", json!([]));
    shot(&b, "console-after-edit.png");

    // A shadow candidate (views weigh ten times more) runs beside the live list: the page shows
    // both lists of the same window with their agreement, live.
    let r = request(
        port,
        "PATCH",
        "/api/v1/tenants/acme/scenarios/home?immediately=true",
        Some(&token),
        br#"{"candidate":{"hot_score":{"action_weights":{"view":10.0}}}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(wait_until(Duration::from_secs(10), || applied() == Some(3)), "the host applies revision 3");
    let mut third = minute("acme", "home", t0 + 120_000);
    third.push(event_line("acme", "home", "much-viewed", "view", t0 + 191_000));
    api.send(&third);
    b.wait_for(Duration::from_secs(15), "the shadow comparison", |b| {
        b.text("#shadow-items tbody tr td.item") == "much-viewed" && first_item(b) == "bought-once"
    });
    assert!(b.text("#shadow").contains("overlap@10") && b.text("#shadow").contains("RBO"), "{}", b.text("#shadow"));
    assert!(b.text("#candidate").contains("builtin"), "the status names the candidate: {}", b.text("#status"));
    b.eval("document.getElementById('shadow').parentElement.scrollIntoView()", json!([]));
    shot(&b, "console-shadow.png");

    // The editor still holds revision 2: saving it would drop the candidate stored since. It is
    // refused, nothing is stored, and the page says why.
    b.click("#apply");
    b.wait_for(Duration::from_secs(10), "the editor's conflict", |b| {
        b.text("#editor-result").contains("changed by someone else to revision 3")
    });
    let stored = request(port, "GET", "/api/v1/tenants/acme/scenarios/home", Some(&token), b"").json();
    assert_eq!(stored["revision"], 3, "nothing was stored over revision 3");

    // Promote from the page: the same service as the API, a new revision without a candidate.
    b.click("#promote");
    b.wait_for(Duration::from_secs(10), "the promotion", |b| b.text("#rollout-result").contains("stored revision 4"));
    assert!(wait_until(Duration::from_secs(10), || applied() == Some(4)), "the host applies revision 4");
    b.wait_for(Duration::from_secs(10), "the promoted candidate leaving the status", |b| b.text("#candidate") == "none");
    // Roll back to revision 3 (the old weights with the candidate in shadow again).
    b.type_into("#to_revision", "3");
    b.click("#rollback");
    b.wait_for(Duration::from_secs(10), "the rollback", |b| b.text("#rollout-result").contains("stored revision 5"));
    assert!(wait_until(Duration::from_secs(10), || applied() == Some(5)), "the host applies revision 5");
}

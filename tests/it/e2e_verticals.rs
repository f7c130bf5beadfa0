//! The seed's verticals with their plugins, end to end on the real stack (issue 19): a video
//! tenant scores by watch completion (`watch-heat`), a shop tenant by GMV once per buyer
//! (`gmv-heat`) and then, swapped without a restart, with each user's share capped
//! (`fair-heat`). Scenario documents in MongoDB declare the features the plugins read, events
//! with `watch_time_ms` and `props` go through Kafka, hot lists reach Redis and a JSONL sink,
//! and every window equals a reference computed here from the raw events.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use redis::Commands;
use rtscore::plugin::sha256_hex;
use rtscore_testkit::*;

const T0: i64 = 1_767_225_600_000;
const MIN: i64 = 60_000;
const LAMBDA: f64 = 0.5;
const TOP_N: usize = 20;

#[derive(Debug, Clone)]
struct Ev {
    tenant: &'static str,
    user: String,
    item: String,
    action: &'static str,
    ts: i64,
    watch_ms: Option<f64>,
    props: serde_json::Value,
}

impl Ev {
    fn line(&self, tenant: &str) -> Vec<u8> {
        let mut v = serde_json::json!({"tenant_id": tenant, "scenario_id": "feed", "user_id": self.user, "item_id": self.item,
            "action": self.action, "ts": self.ts});
        if self.tenant == "shop" {
            v["scenario_id"] = "home".into();
        }
        if let Some(w) = self.watch_ms {
            v["watch_time_ms"] = w.into();
        }
        if !self.props.is_null() {
            v["props"] = self.props.clone();
        }
        serde_json::to_vec(&v).unwrap()
    }
}

/// A small deterministic generator (no dependency on the host's).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn video_events(rng: &mut Lcg, from: i64, to: i64) -> Vec<Ev> {
    let mut out = Vec::new();
    let mut ts = from;
    while ts < to {
        let item = rng.next(12);
        let duration = 20_000.0 + 5_000.0 * item as f64;
        let action = ["view", "view", "view", "like"][rng.next(4) as usize];
        let watch = (action == "view").then(|| duration * (rng.next(100) as f64 + 1.0) / 100.0 * (1.0 + (item % 3) as f64) / 3.0);
        out.push(Ev {
            tenant: "video",
            user: format!("v{}", rng.next(40)),
            item: format!("clip{item}"),
            action,
            ts,
            watch_ms: watch,
            props: serde_json::json!({"duration_ms": duration}),
        });
        ts += 1_000 + rng.next(4_000) as i64;
    }
    out
}

fn shop_events(rng: &mut Lcg, from: i64, to: i64) -> Vec<Ev> {
    let mut out = Vec::new();
    let mut ts = from;
    while ts < to {
        let item = rng.next(10);
        // Item 0 is carted again and again by one user (a bot); the rest by many users.
        let (user, action) = if item == 0 {
            ("bot".to_string(), "cart")
        } else {
            (format!("s{}", rng.next(30)), ["view", "view", "cart", "purchase"][rng.next(4) as usize])
        };
        let props = if action == "purchase" { serde_json::json!({"price": 5.0 + item as f64 * 3.5}) } else { serde_json::Value::Null };
        out.push(Ev { tenant: "shop", user, item: format!("sku{item}"), action, ts, watch_ms: None, props });
        ts += 1_000 + rng.next(4_000) as i64;
    }
    out
}

fn decay(age_ms: i64) -> f64 {
    (-LAMBDA * age_ms as f64 / 3_600_000.0).exp()
}

/// The window's events of one item, by item.
fn by_item(events: &[Ev], start: i64, end: i64) -> BTreeMap<String, Vec<&Ev>> {
    let mut m: BTreeMap<String, Vec<&Ev>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.ts >= start && e.ts < end) {
        m.entry(e.item.clone()).or_default().push(e);
    }
    m
}

fn builtin(evs: &[&Ev], weights: &BTreeMap<&str, f64>, end: i64) -> f64 {
    evs.iter().map(|e| weights.get(e.action).copied().unwrap_or(0.0) * decay(end - e.ts)).sum()
}

fn watch_heat(evs: &[&Ev], weights: &BTreeMap<&str, f64>, end: i64) -> f64 {
    let views: Vec<&&Ev> = evs.iter().filter(|e| e.action == "view").collect();
    let watch: f64 = views.iter().filter_map(|e| e.watch_ms).sum();
    let duration = evs.iter().filter_map(|e| e.props["duration_ms"].as_f64()).fold(0.0, f64::max);
    let completion = if views.is_empty() || duration <= 0.0 { 0.0 } else { (watch / (views.len() as f64 * duration)).clamp(0.0, 1.0) };
    builtin(evs, weights, end) * (1.0 + 1.0 * completion)
}

fn gmv_heat(evs: &[&Ev], weights: &BTreeMap<&str, f64>, end: i64, gmv_weight: f64) -> f64 {
    let purchases: Vec<&&Ev> = evs.iter().filter(|e| e.action == "purchase").collect();
    let mut gmv = 0.0;
    if !purchases.is_empty() {
        let buyers = purchases.iter().map(|e| e.user.as_str()).collect::<BTreeSet<_>>().len() as f64;
        let revenue: f64 = purchases.iter().filter_map(|e| e.props["price"].as_f64()).sum();
        let n = purchases.len() as f64;
        let d: f64 = purchases.iter().map(|e| decay(end - e.ts)).sum::<f64>() / n;
        gmv = buyers * (revenue / n) * d;
    }
    builtin(evs, weights, end) + gmv_weight * gmv
}

fn fair_heat(evs: &[&Ev], weights: &BTreeMap<&str, f64>, end: i64, cap: f64) -> f64 {
    let users = evs.iter().map(|e| e.user.as_str()).collect::<BTreeSet<_>>().len() as f64;
    let factor = (users.max(1.0) * cap / evs.len() as f64).min(1.0);
    builtin(evs, weights, end) * factor
}

/// Checks one emitted hot list against `score` of every item of its window.
fn check_window(row: &serde_json::Value, events: &[Ev], score: impl Fn(&[&Ev], i64) -> f64) {
    let (start, end) = (row["window_start"].as_i64().unwrap(), row["window_end"].as_i64().unwrap());
    let mut want: Vec<(String, f64)> =
        by_item(events, start, end).into_iter().map(|(item, evs)| (item, score(&evs, end))).filter(|(_, s)| *s > 0.0).collect();
    want.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    want.truncate(TOP_N);
    let got: Vec<(String, f64)> = row["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["item_id"].as_str().unwrap().to_string(), i["score"].as_f64().unwrap()))
        .collect();
    assert_eq!(got.len(), want.len(), "window {start}..{end} of {}: {got:?} vs {want:?}", row["scenario_id"]);
    for ((gi, gs), (wi, ws)) in got.iter().zip(&want) {
        assert_eq!(gi, wi, "window {start}..{end} of {}: order {got:?} vs {want:?}", row["scenario_id"]);
        assert!((gs - ws).abs() <= 1e-6 * ws.abs().max(1e-9), "window {start}..{end} {gi}: {gs} vs {ws}");
    }
}

#[test]
fn a_video_and_a_shop_tenant_score_with_their_vertical_plugins_and_swap_without_restart() {
    let stack = Stack::ensure();
    let (video, shop, topic, database) = (unique("video"), unique("shop"), unique("events-"), unique("db"));
    let dir = tempfile::tempdir().unwrap();
    let (plugins_dir, sink) = (dir.path().join("plugins"), dir.path().join("hot.jsonl"));
    std::fs::create_dir_all(&plugins_dir).unwrap();
    let mut sha = BTreeMap::new();
    for name in ["watch-heat", "gmv-heat", "fair-heat"] {
        let module = plugins::module(name);
        sha.insert(name, sha256_hex(&module));
        std::fs::write(plugins_dir.join(format!("{name}@0.1.0.wasm")), module).unwrap();
    }
    let video_weights = BTreeMap::from([("view", 1.0), ("like", 2.0)]);
    let shop_weights = BTreeMap::from([("view", 0.5), ("cart", 2.0)]);
    let hot = |weights: &BTreeMap<&str, f64>, features: serde_json::Value, plugin: serde_json::Value| {
        serde_json::json!({"action_weights": weights, "decay_lambda": LAMBDA, "window_size_minutes": 10, "window_slide_minutes": 5,
            "top_n": TOP_N, "features": features, "plugin": plugin})
    };
    let video_doc = serde_json::json!({"tenant_id": video, "scenario_id": "feed", "revision": 1, "config": {"realtime_compute": {"hot_score": hot(
        &video_weights,
        serde_json::json!([{"name": "watch_ms", "op": "sum", "field": "watch_time_ms", "actions": ["view"]},
                           {"name": "duration_ms", "op": "max", "field": "props.duration_ms"}]),
        serde_json::json!({"name": "watch-heat", "version": "0.1.0", "sha256": sha["watch-heat"], "params": {"completion_weight": 1.0}}))}}});
    let shop_features = serde_json::json!([{"name": "buyers", "op": "distinct", "field": "user_id", "actions": ["purchase"]},
                                           {"name": "revenue", "op": "sum", "field": "props.price", "actions": ["purchase"]},
                                           {"name": "users", "op": "distinct", "field": "user_id"}]);
    let shop_doc = serde_json::json!({"tenant_id": shop, "scenario_id": "home", "revision": 1, "config": {"realtime_compute": {"hot_score": hot(
        &shop_weights, shop_features,
        serde_json::json!({"name": "gmv-heat", "version": "0.1.0", "sha256": sha["gmv-heat"], "params": {"gmv_weight": 0.2}}))}}});
    stack.put_scenarios(&database, &[video_doc, shop_doc]);
    stack.create_topic(&topic, 2);

    let mut rng = Lcg(19);
    let mut events: Vec<Ev> = video_events(&mut rng, T0, T0 + 30 * MIN);
    events.extend(shop_events(&mut rng, T0, T0 + 30 * MIN));
    events.sort_by_key(|e| e.ts);
    let line = |e: &Ev| e.line(if e.tenant == "video" { &video } else { &shop });
    // Keyed by tenant: each tenant's events in order on one partition.
    let produce = |evs: &[Ev]| stack.produce_to(&topic, &evs.iter().map(|e| (i32::from(e.tenant == "shop"), line(e))).collect::<Vec<_>>());
    produce(&events);

    let mut host = Host::run()
        .kafka(&stack, &topic, &unique("g"))
        .mongo(&stack, &database)
        .redis(&stack)
        .plugins_dir(&plugins_dir)
        .jsonl_out(&sink)
        .view_off()
        .start();
    let windows_of = |scenario: &str, plugin: &str| -> Vec<serde_json::Value> {
        read_hot_sink(&sink).1.into_iter().filter(|r| r["scenario_id"] == scenario && r["plugin"] == plugin).collect()
    };
    assert!(
        wait_until(Duration::from_secs(60), || windows_of("feed", "watch-heat@0.1.0").len() >= 4
            && windows_of("home", "gmv-heat@0.1.0").len() >= 4),
        "the vertical plugins did not score\n{}",
        host.log()
    );

    // Swap the shop's module without a restart: same features, fair-heat instead of gmv-heat.
    // A patch deep-merges, so gmv-heat's parameter is removed (null), or fair-heat would
    // refuse it as unknown.
    stack.patch_scenario(
        &database,
        &shop,
        "home",
        &serde_json::json!({"config": {"realtime_compute": {"hot_score": {"plugin":
            {"name": "fair-heat", "version": "0.1.0", "sha256": sha["fair-heat"],
             "params": {"gmv_weight": null, "max_events_per_user": 2}}}}}})
        .to_string(),
    );
    let mut later = video_events(&mut rng, T0 + 30 * MIN, T0 + 60 * MIN);
    later.extend(shop_events(&mut rng, T0 + 30 * MIN, T0 + 60 * MIN));
    later.sort_by_key(|e| e.ts);
    let installed = |log: String| log.lines().any(|l| l.contains("plugin installed") && l.contains("fair-heat@0.1.0"));
    assert!(wait_until(Duration::from_secs(60), || installed(host.log())), "the swap did not reach the host\n{}", host.log());
    produce(&later);
    events.extend(later);
    assert!(
        wait_until(Duration::from_secs(60), || windows_of("home", "fair-heat@0.1.0").len() >= 3),
        "the swapped module did not score\n{}",
        host.log()
    );

    let video_events: Vec<Ev> = events.iter().filter(|e| e.tenant == "video").cloned().collect();
    let shop_events: Vec<Ev> = events.iter().filter(|e| e.tenant == "shop").cloned().collect();
    let all = read_hot_sink(&sink).1;
    for row in all.iter().filter(|r| r["scenario_id"] == "feed") {
        assert_eq!(row["plugin"], "watch-heat@0.1.0", "no video window falls back: {row}");
        check_window(row, &video_events, |evs, end| watch_heat(evs, &video_weights, end));
    }
    // The bot's item: on top under gmv-heat (its carts count in full), capped to two events'
    // worth (2 x weight 2) under fair-heat.
    let bot_score = |row: &serde_json::Value| {
        row["items"].as_array().unwrap().iter().find(|i| i["item_id"] == "sku0").map(|i| i["score"].as_f64().unwrap())
    };
    let (mut bot_gmv, mut bot_fair) = (0.0_f64, 0.0_f64);
    for row in all.iter().filter(|r| r["scenario_id"] == "home") {
        match row["plugin"].as_str() {
            Some("gmv-heat@0.1.0") => {
                check_window(row, &shop_events, |evs, end| gmv_heat(evs, &shop_weights, end, 0.2));
                bot_gmv = bot_gmv.max(bot_score(row).unwrap_or(0.0));
            }
            Some("fair-heat@0.1.0") => {
                check_window(row, &shop_events, |evs, end| fair_heat(evs, &shop_weights, end, 2.0));
                bot_fair = bot_fair.max(bot_score(row).unwrap_or(0.0));
            }
            other => panic!("a shop window scored by {other:?}: {row}"),
        }
    }
    assert!(bot_fair <= 4.0 && bot_gmv > 4.0 * bot_fair.max(1.0), "the bot's heat: {bot_gmv} under gmv-heat, {bot_fair} under fair-heat");

    // Redis holds the latest lists with the module that scored them.
    let mut redis = stack.redis();
    let meta: BTreeMap<String, String> = redis.hgetall(format!("rt:{shop}:home:hot:meta")).unwrap();
    assert_eq!(meta.get("plugin").map(String::as_str), Some("fair-heat@0.1.0"), "{meta:?}");
    let meta: BTreeMap<String, String> = redis.hgetall(format!("rt:{video}:feed:hot:meta")).unwrap();
    assert_eq!(meta.get("plugin").map(String::as_str), Some("watch-heat@0.1.0"), "{meta:?}");
    assert!(host.stop().success());
}

//! Server-rendered pages and fragments of the console. Every string that comes from a tenant or
//! from the data (ids, item ids, plugin names, error texts, documents) goes through [`esc`];
//! literal markup never does.

use std::fmt::Write;

use crate::admin::Scope;
use crate::config::{FieldError, ScenarioKey};
use crate::output::status::ScenarioStatusRow;
use crate::sinks::live::{HostLive, ScenarioLive};
use crate::text::cap_error;

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a path segment (ids are `[A-Za-z0-9_-]`, but links must never break out).
pub fn url_segment(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "–".to_string(), |v| v.to_string())
}

/// The page frame. `events` is the SSE URL the page's script subscribes to.
pub fn page(title: &str, scope: Option<&Scope>, events: Option<&str>, body: &str) -> String {
    let who = scope.map_or_else(String::new, |s| {
        format!(
            r#"<span class="who">{}</span><form method="post" action="/console/logout"><button>Log out</button></form>"#,
            esc(&s.to_string())
        )
    });
    let events = events.map_or_else(String::new, |e| format!(r#" data-events="{}""#, esc(e)));
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · rtscore console</title><link rel="stylesheet" href="/console/assets/console.css"></head>
<body{events}><header><a class="brand" href="/console">rtscore console</a>{who}</header>
<main>{body}</main><script src="/console/assets/console.js"></script></body></html>"#,
        title = esc(title)
    )
}

pub fn login(message: Option<&str>) -> String {
    let msg = message.map_or_else(String::new, |m| format!(r#"<p class="error">{}</p>"#, esc(m)));
    page(
        "Log in",
        None,
        None,
        &format!(
            r#"<h1>Log in</h1>{msg}<form method="post" action="/console/login" class="login">
<label for="token">API token (from <code>rtscore token create</code>)</label>
<input id="token" name="token" type="password" autocomplete="off" autofocus required>
<button id="login" type="submit">Log in</button></form>"#
        ),
    )
}

pub fn message(title: &str, text: &str) -> String {
    page(title, None, None, &format!(r#"<h1>{}</h1><p>{}</p><p><a href="/console">Back to the console</a></p>"#, esc(title), esc(text)))
}

/// CSS class of a plugin state (a fixed set, never tenant text).
fn state_class(state: &str) -> &'static str {
    match state.split_whitespace().next().unwrap_or("") {
        "active" => "ok",
        "builtin" => "ok",
        "fallback" => "warn",
        "loading" => "warn",
        "quarantined" => "bad",
        _ => "muted",
    }
}

/// Overview table body: one row per scenario.
pub fn overview_rows(scenarios: &[(ScenarioKey, ScenarioLive)]) -> String {
    if scenarios.is_empty() {
        return r#"<tr><td colspan="13" class="muted">No scenarios on this host yet.</td></tr>"#.to_string();
    }
    let mut out = String::new();
    for (k, s) in scenarios {
        let st = s.status.as_ref();
        let state = st.map_or("none", |r| r.plugin_state.as_str());
        let err = st.and_then(row_error);
        let _ = write!(
            out,
            r#"<tr data-scenario="{t}/{s_}"><td>{t}</td><td><a href="/console/tenants/{tu}/scenarios/{su}">{s_}</a></td><td class="num">{rev}</td><td>{plugin}</td><td><span class="state {cls}">{state}</span></td><td class="num">{eps:.1}</td><td class="num">{events}</td><td class="num">{rejected}</td><td class="num">{late}</td><td class="num">{over_quota}</td><td class="item">{top}</td><td class="{ecls}">{err}</td><td>{rollout}</td></tr>"#,
            t = esc(&k.tenant_id),
            s_ = esc(&k.scenario_id),
            tu = url_segment(&k.tenant_id),
            su = url_segment(&k.scenario_id),
            rev = opt(st.and_then(|r| r.config_revision)),
            plugin = esc(st.map_or("–", |r| r.plugin.as_str())),
            cls = state_class(state),
            state = esc(state),
            eps = s.events_per_s,
            events = opt(st.map(|r| r.events)),
            late = opt(st.map(|r| r.late)),
            over_quota = opt(st.map(|r| r.over_quota)),
            rejected = s.rejected,
            top = esc(s.hot.as_ref().and_then(|h| h.items.first()).map_or("–", |i| i.item_id.as_str())),
            ecls = if err.is_some() { "error" } else { "muted" },
            err = esc(err.as_deref().unwrap_or("none")),
            rollout = st.map_or_else(|| "–".to_string(), rollout_cell),
        );
    }
    out
}

/// The error cell: why a removed scenario was removed, else the last error.
fn row_error(r: &ScenarioStatusRow) -> Option<String> {
    r.removed_reason.as_ref().map(|why| format!("removed: {why}")).or_else(|| r.last_error.clone())
}

/// A revision waiting for its effective window, and the shadow candidate with its error.
fn rollout_cell(r: &ScenarioStatusRow) -> String {
    let mut parts = Vec::new();
    if let Some(p) = r.pending_revision {
        let from = r.effective_from_window_end.map_or_else(String::new, |e| format!(" from {}", time(e)));
        parts.push(format!("pending revision {p}{from}"));
    }
    if let Some(c) = &r.candidate {
        parts.push(format!("candidate {}", esc(c)));
    }
    if let Some(e) = &r.candidate_error {
        parts.push(format!(r#"<span class="error">candidate error: {}</span>"#, esc(e)));
    }
    if parts.is_empty() { "–".to_string() } else { parts.join("<br>") }
}

/// The counters above the overview: the host's for admin; for a tenant, its own scenarios'
/// sums (the caller computes them), without the host-wide `unknown scenario`.
pub fn host_counters(scope: &Scope, h: &HostLive) -> String {
    match scope.tenant() {
        None => format!(
            r#"<span class="muted">this host, all tenants:</span><span>events in <b>{}</b></span><span>rejected <b>{}</b></span><span>late <b>{}</b></span><span>unknown scenario <b>{}</b></span><span>over quota <b>{}</b></span><span>state <b>{}</b></span>{}"#,
            h.events_in,
            h.rejected,
            h.late,
            h.unknown_scenario,
            h.over_quota,
            mib(h.state_bytes),
            h.shuffle.as_ref().map_or(String::new(), |s| format!(r#"<span id="shuffle">shuffle: <b>{}</b></span>"#, esc(&s.summary())))
        ),
        Some(t) => format!(
            r#"<span class="muted">tenant {} on this host:</span><span>events <b>{}</b></span><span>rejected <b>{}</b></span><span>late <b>{}</b></span><span>over quota <b>{}</b></span><span>state <b>{}</b></span>"#,
            esc(t),
            h.events_in,
            h.rejected,
            h.late,
            h.over_quota,
            mib(h.state_bytes)
        ),
    }
}

/// Bytes as MiB with one decimal.
fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

pub fn overview(scope: &Scope, scenarios: &[(ScenarioKey, ScenarioLive)], host: &HostLive) -> String {
    let heading = match scope.tenant() {
        Some(t) => format!("Tenant {}", esc(t)),
        None => "All tenants".to_string(),
    };
    page(
        "Scenarios",
        Some(scope),
        Some("/console/events"),
        &format!(
            r#"<h1>{heading}</h1><p class="counters" id="host">{host}</p>
<table class="grid"><thead><tr><th>tenant</th><th>scenario</th><th>applied revision</th><th>plugin</th><th>state</th><th>events/s</th><th>events</th><th>rejected</th><th>late</th><th>over quota</th><th>top item</th><th>last error</th><th>rollout</th></tr></thead>
<tbody id="scenarios">{rows}</tbody></table>"#,
            host = host_counters(scope, host),
            rows = overview_rows(scenarios)
        ),
    )
}

pub fn status_card(s: &ScenarioLive) -> String {
    let Some(r) = &s.status else { return r#"<p class="muted">This host has not reported this scenario yet.</p>"#.to_string() };
    format!(
        r#"<dl class="card"><dt>applied revision</dt><dd id="applied-revision">{rev}</dd><dt>plugin</dt><dd>{plugin}</dd><dt>state</dt><dd><span class="state {cls}">{state}</span></dd>
<dt>events/s</dt><dd>{eps:.1}</dd><dt>events</dt><dd>{events}</dd><dt>rejected</dt><dd>{rejected}</dd><dt>late</dt><dd>{late}</dd><dt>duplicates</dt><dd>{dups}</dd><dt>over quota</dt><dd>{over_quota}</dd><dt>windows</dt><dd>{windows}</dd>
<dt>applied at</dt><dd>{applied}</dd><dt>last error</dt><dd class="{ecls}">{err}</dd>
<dt>pending revision</dt><dd id="pending-revision">{pending}</dd><dt>effective from window end</dt><dd>{effective}</dd>
<dt>candidate</dt><dd id="candidate">{cand}</dd><dt>candidate error</dt><dd class="{ccls}">{cerr}</dd></dl>"#,
        rev = opt(r.config_revision),
        plugin = esc(&r.plugin),
        cls = state_class(&r.plugin_state),
        state = esc(&r.plugin_state),
        eps = s.events_per_s,
        events = r.events,
        late = r.late,
        rejected = s.rejected,
        dups = r.duplicates,
        over_quota = r.over_quota,
        windows = r.windows_emitted,
        applied = r.applied_at.map_or_else(|| "–".into(), time),
        ecls = if row_error(r).is_some() { "error" } else { "muted" },
        err = esc(row_error(r).as_deref().unwrap_or("none")),
        pending = opt(r.pending_revision),
        effective = r.effective_from_window_end.map_or_else(|| "–".into(), time),
        cand = esc(&match (&r.candidate, &r.candidate_state) {
            (Some(c), Some(st)) => format!("{c} ({st})"),
            (Some(c), None) => c.clone(),
            _ => "none".into(),
        }),
        ccls = if r.candidate_error.is_some() { "error" } else { "muted" },
        cerr = esc(r.candidate_error.as_deref().unwrap_or("none")),
    )
}

/// The rows of one hot list (at most 20), scores as bars relative to its top.
fn item_rows(items: &[crate::output::ScoredItem]) -> String {
    let max = items.first().map_or(1.0, |i| i.score.abs().max(f64::MIN_POSITIVE));
    let mut rows = String::new();
    for (n, i) in items.iter().take(20).enumerate() {
        let _ = write!(
            rows,
            r#"<tr><td class="num">{}</td><td class="item">{}</td><td class="num">{:.3}</td><td class="barcell"><progress max="100" value="{:.0}"></progress></td></tr>"#,
            n + 1,
            esc(&i.item_id),
            i.score,
            (i.score / max * 100.0).clamp(0.0, 100.0)
        );
    }
    format!(r#"<table class="grid"><thead><tr><th>#</th><th>item</th><th>score</th><th></th></tr></thead><tbody>{rows}</tbody></table>"#)
}

/// The running candidate's latest list beside the live list of the same window, with how
/// much they agree (overlap@K, RBO) and how far the shared items' scores moved (drift).
pub fn shadow(s: &ScenarioLive) -> String {
    let Some(sh) = &s.shadow else { return r#"<p class="muted">No shadow candidate is running for this scenario.</p>"#.to_string() };
    let c = &sh.comparison;
    // The live list of the same window, if it is still the latest one.
    let live = s.hot.as_ref().filter(|h| h.window_end == sh.list.window_end);
    format!(
        r#"<p class="counters"><span>window end <b>{end}</b></span><span>overlap@{k} <b id="shadow-overlap">{overlap:.3}</b></span><span>RBO <b id="shadow-rbo">{rbo:.3}</b></span><span>drift p50 <b>{p50:.3}</b></span><span>p90 <b>{p90:.3}</b></span><span>max <b>{max:.3}</b></span></p>
<div class="cols"><div><h3>live</h3>{live}</div><div><h3>candidate · revision {rev} · {by}</h3><div id="shadow-items">{cand}</div></div></div>"#,
        end = time(sh.list.window_end),
        k = c.k,
        overlap = c.overlap_at_k,
        rbo = c.rbo,
        p50 = c.drift_p50,
        p90 = c.drift_p90,
        max = c.drift_max,
        live = live.map_or_else(
            || r#"<p class="muted">The live list of this window has been replaced by a newer one.</p>"#.to_string(),
            |h| item_rows(&h.items)
        ),
        rev = sh.list.config_revision,
        by = esc(sh.list.plugin.as_deref().unwrap_or("built-in formula")),
        cand = item_rows(&sh.list.items),
    )
}

pub fn hot_list(s: &ScenarioLive) -> String {
    let Some(h) = &s.hot else { return r#"<p class="muted">No window emitted yet.</p>"#.to_string() };
    format!(
        r#"<p class="muted">window {} – {} · revision <b id="hot-revision">{}</b> · {} · {} items</p>{}"#,
        time(h.window_start),
        time(h.window_end),
        h.config_revision,
        esc(h.plugin.as_deref().unwrap_or("built-in formula")),
        h.items.len(),
        item_rows(&h.items)
    )
}

pub fn timeline(s: &ScenarioLive) -> String {
    if s.timeline.is_empty() {
        return r#"<p class="muted">No windows yet.</p>"#.to_string();
    }
    let max = s.timeline.iter().filter_map(|w| w.top_score).fold(f64::MIN_POSITIVE, f64::max);
    let mut rows = String::new();
    for w in s.timeline.iter().rev() {
        let _ = write!(
            rows,
            r#"<tr><td>{}</td><td class="num">{}</td><td>{}</td><td class="num">{}</td><td class="item">{}</td><td class="num">{}</td><td class="barcell"><progress max="100" value="{:.0}"></progress></td></tr>"#,
            time(w.window_end),
            w.config_revision,
            esc(w.plugin.as_deref().unwrap_or("built-in")),
            w.items,
            esc(w.top_item.as_deref().unwrap_or("–")),
            w.top_score.map_or_else(|| "–".into(), |s| format!("{s:.3}")),
            (w.top_score.unwrap_or(0.0) / max * 100.0).clamp(0.0, 100.0)
        );
    }
    format!(
        r#"<table class="grid"><thead><tr><th>window end</th><th>revision</th><th>scored by</th><th>items</th><th>top item</th><th>top score</th><th></th></tr></thead><tbody>{rows}</tbody></table>"#
    )
}

/// The warnings of a valid document (platform fields, dropped weights), escaped and capped.
fn warning_list(warnings: &[FieldError]) -> String {
    if warnings.is_empty() {
        return String::new();
    }
    let items: String = warnings
        .iter()
        .take(100)
        .map(|w| format!("<li><code>{}</code>: {}</li>", esc(&cap_error(&w.path)), esc(&cap_error(&w.rule))))
        .collect();
    format!(r#"<p class="warn" id="editor-warnings">{} warning(s):</p><ul class="warn">{items}</ul>"#, warnings.len())
}

/// Result of validating or applying the editor's document.
pub enum EditorResult<'a> {
    None,
    Valid {
        revision: i64,
        warnings: &'a [FieldError],
    },
    Applied {
        revision: i64,
        warnings: &'a [FieldError],
    },
    Invalid {
        message: &'a str,
        errors: &'a [FieldError],
    },
    /// A promote or rollback stored `revision`.
    RolledOut {
        action: &'a str,
        revision: i64,
    },
    /// A promote or rollback was refused.
    RolloutRefused {
        message: &'a str,
    },
    /// The editor's document was based on an older revision than the stored one (`0`: the
    /// scenario was deleted meanwhile): nothing was stored.
    Conflict {
        current: i64,
    },
}

/// The scenario page. `revision`: the stored revision the editor's document is based on; the
/// editor sends it back (`if_revision`), so saving over a newer revision is refused. Promote and
/// Roll back do not: they act on what the live view shows, which updates while the page stays.
pub fn scenario_page(
    scope: &Scope,
    key: &ScenarioKey,
    live: &ScenarioLive,
    document: &str,
    revision: Option<i64>,
    result: EditorResult<'_>,
) -> String {
    let (t, s) = (esc(&key.tenant_id), esc(&key.scenario_id));
    let base_revision =
        format!(r#"<input type="hidden" name="if_revision" value="{}">"#, revision.map_or_else(String::new, |r| r.to_string()));
    let base = format!("/console/tenants/{}/scenarios/{}", url_segment(&key.tenant_id), url_segment(&key.scenario_id));
    let rollout = match &result {
        EditorResult::RolledOut { action, revision } => {
            format!(
                r#"<p class="ok" id="rollout-result">{}: stored revision {revision}; hosts switch at its effective window.</p>"#,
                esc(action)
            )
        }
        EditorResult::RolloutRefused { message } => format!(r#"<p class="error" id="rollout-result">Not done: {}</p>"#, esc(message)),
        _ => String::new(),
    };
    let reload = format!(r#"<a href="{base}">reload</a>"#);
    let result = match result {
        EditorResult::None | EditorResult::RolledOut { .. } | EditorResult::RolloutRefused { .. } => String::new(),
        EditorResult::Valid { revision, warnings } => {
            format!(
                r#"<div class="ok" id="editor-result"><p>Valid: applying it would store revision {revision}.</p>{}</div>"#,
                warning_list(warnings)
            )
        }
        EditorResult::Applied { revision, warnings } => {
            format!(
                r#"<div class="ok" id="editor-result"><p>Applied: stored revision {revision}; hosts pick it up within about a second.</p>{}</div>"#,
                warning_list(warnings)
            )
        }
        EditorResult::Invalid { message, errors } => {
            let items: String = errors
                .iter()
                .take(100)
                .map(|e| format!("<li><code>{}</code>: {}</li>", esc(&cap_error(&e.path)), esc(&cap_error(&e.rule))))
                .collect();
            let summary = if errors.is_empty() { esc(message) } else { format!("{} rule(s) broken", errors.len()) };
            format!(r#"<div class="error" id="editor-result"><p>Not applied: {summary}</p><ul>{items}</ul></div>"#)
        }
        EditorResult::Conflict { current: 0 } => {
            format!(
                r#"<p class="error" id="editor-result">Not applied: the scenario was deleted by someone else meanwhile; {reload} to see it.</p>"#
            )
        }
        EditorResult::Conflict { current } => format!(
            r#"<p class="error" id="editor-result">Not applied: changed by someone else to revision {current}; {reload} to edit the current version (your text is still below).</p>"#
        ),
    };
    page(
        &format!("{}/{}", key.tenant_id, key.scenario_id),
        Some(scope),
        Some(&format!("{base}/events")),
        &format!(
            r#"<p><a href="/console">← all scenarios</a></p><h1>{t} / {s}</h1>
<section><h2>Status</h2><div id="status">{status}</div></section>
<div class="cols"><section><h2>Hot list</h2><div id="hot">{hot}</div></section>
<section><h2>Window timeline</h2><div id="timeline">{timeline}</div></section></div>
<section><h2>Shadow comparison</h2><div id="shadow">{shadow}</div></section>
<section><h2>Rollout</h2>{rollout}<div class="buttons">
<form method="post" action="{base}/promote"><button id="promote">Promote the candidate</button></form>
<form method="post" action="{base}/rollback"><label for="to_revision">to revision</label> <input id="to_revision" name="to_revision" inputmode="numeric" size="6" placeholder="previous"> <button id="rollback">Roll back</button></form>
</div></section>
<section><h2>Configuration</h2>{result}
<form method="post" action="{base}/config" class="editor">{base_revision}<textarea id="document" name="document" rows="28" spellcheck="false">{doc}</textarea>
<p><label><input type="checkbox" id="drop_weights" name="drop_weights" value="true"> the weight maps may drop actions the stored revision weights (they then weigh 0)</label></p>
<div class="buttons"><button id="validate" name="action" value="validate">Validate</button><button id="apply" name="action" value="apply">Validate and apply</button></div></form></section>"#,
            status = status_card(live),
            hot = hot_list(live),
            timeline = timeline(live),
            shadow = shadow(live),
            doc = esc(document),
        ),
    )
}

/// The "Resolved configuration" section of a scenario page: each value of the config in force
/// and the layer it came from (`admin::ScenarioService::resolved`), or why it cannot be shown.
pub fn resolved_config(resolved: Result<&serde_json::Value, &str>) -> String {
    let body = match resolved {
        Err(why) => format!(r#"<p class="error">{}</p>"#, esc(&cap_error(why))),
        Ok(r) => {
            let layers: Vec<String> = r["layers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|l| format!("{} (revision {})", esc(l["source"].as_str().unwrap_or("?")), l["revision"].as_i64().unwrap_or(0)))
                .collect();
            let over = if layers.is_empty() { "no defaults layer".to_string() } else { layers.join(" → ") };
            let rc = &r["config"]["realtime_compute"];
            let rows: String = r["provenance"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(path, source)| {
                    let value = path.split('.').fold(rc, |v, k| &v[k]);
                    let source = source.as_str().unwrap_or("?");
                    let class = match source {
                        "scenario" => "layer-scenario",
                        crate::config::layers::BUILTIN => "layer-builtin",
                        _ => "layer-default",
                    };
                    format!(
                        r#"<tr><td><code>{}</code></td><td><code>{}</code></td><td class="{class}">{}</td></tr>"#,
                        esc(path),
                        esc(&cap_error(&value.to_string())),
                        esc(source)
                    )
                })
                .collect();
            format!(
                r#"<p>Over: {over}, then the scenario document.</p><table class="grid" id="resolved-table"><thead><tr><th>value</th><th>in force</th><th>from</th></tr></thead><tbody>{rows}</tbody></table>"#
            )
        }
    };
    format!(r#"<section><h2>Resolved configuration</h2><div id="resolved">{body}</div></section>"#)
}

/// `page` with `section` placed before its configuration editor (the scenario page).
pub fn with_section_before_editor(page: String, section: &str) -> String {
    match page.find("<section><h2>Configuration</h2>") {
        Some(at) => format!("{}{section}{}", &page[..at], &page[at..]),
        None => page,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{HotList, ScoredItem};

    const XSS: &str = "<img src=x onerror=alert(1)>";

    #[test]
    fn the_shuffle_line_is_for_admins_only() {
        let stats = crate::repartition::ShuffleStats::default();
        stats.committed(7, 2, 1_000, 500);
        let host = HostLive { shuffle: Some(stats.status(1_500)), ..HostLive::default() };
        let admin = host_counters(&Scope::Admin, &host);
        assert!(
            admin.contains(
                r#"<span id="shuffle">shuffle: <b>forwarded 7 events and 2 markers in 1 transactions (0 aborted); last commit 0.5 s ago"#
            ),
            "{admin}"
        );
        assert!(!host_counters(&Scope::Tenant("t".into()), &host).contains("shuffle"), "host-wide: not a tenant's to see");
        assert!(!host_counters(&Scope::Admin, &HostLive::default()).contains("shuffle"), "no line without --repartition");
    }

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(esc(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        assert_eq!(url_segment("a b/<c>"), "a%20b%2F%3Cc%3E");
    }

    #[test]
    fn tenant_strings_never_reach_the_page_as_markup() {
        let key = ScenarioKey::new("t", "s");
        let mut live = ScenarioLive::default();
        live.hot = Some(HotList {
            key: key.clone(),
            window_start: 0,
            window_end: 60_000,
            config_revision: 1,
            plugin: Some(XSS.into()),
            items: vec![ScoredItem { item_id: XSS.into(), score: 1.0 }],
        });
        let mut cand = live.hot.clone().unwrap();
        cand.items[0].item_id = format!("shadow {XSS}");
        let comparison =
            crate::output::ShadowComparison { k: 10, overlap_at_k: 1.0, rbo: 1.0, drift_p50: 0.0, drift_p90: 0.0, drift_max: 0.0 };
        live.shadow = Some(crate::output::ShadowList { list: cand, comparison });
        let shadow_html = shadow(&live);
        assert!(shadow_html.contains("shadow &lt;img") && !shadow_html.contains("<img"), "{shadow_html}");
        let errors = [FieldError { path: XSS.into(), rule: XSS.into() }];
        let html =
            scenario_page(&Scope::Tenant(XSS.into()), &key, &live, XSS, Some(3), EditorResult::Invalid { message: XSS, errors: &errors });
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(html.contains(r#"name="if_revision" value="3""#), "the editor names the revision it edits");
        let valid = scenario_page(&Scope::Admin, &key, &live, "{}", Some(3), EditorResult::Valid { revision: 4, warnings: &errors });
        assert!(valid.contains(r#"id="editor-warnings">1 warning(s)"#) && !valid.contains("<img"), "warnings shown, escaped: {valid}");
        assert!(valid.contains(r#"name="drop_weights""#), "the editor can say weights are dropped on purpose");
        let rows = overview_rows(&[(key, live)]);
        assert!(!rows.contains("<img") && rows.contains("&lt;img"), "{rows}");
        let resolved = serde_json::json!({"layers": [{"source": XSS, "revision": 2}],
            "config": {"realtime_compute": {"hot_score": {"plugin": {"params": {"x": XSS}}, "top_n": 7}}},
            "provenance": {"hot_score.plugin.params.x": "scenario", "hot_score.top_n": "type:<b>"}});
        let section = resolved_config(Ok(&resolved));
        assert!(!section.contains("<img") && !section.contains("<b>") && section.contains("type:&lt;b&gt;"), "{section}");
        assert!(with_section_before_editor(html, &section).contains("Resolved configuration"));
    }
}

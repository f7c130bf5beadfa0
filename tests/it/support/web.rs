//! HTTP helpers for the admin API and console tests: a tiny HTTP/1.1 client (the host speaks
//! plain HTTP on 127.0.0.1), a host fed events on stdin with the API enabled, and a minimal
//! WebDriver client for chromedriver (JSON over HTTP; no extra crate needed).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{HostProcess, Stack, free_port, rtscore_command, wait_until};

/// A response: status, lower-cased headers, body.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn dechunk(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(pos) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..pos]).unwrap_or("0").trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = pos + 2;
        out.extend_from_slice(&rest[start..(start + size).min(rest.len())]);
        rest = &rest[(start + size + 2).min(rest.len())..];
    }
    out
}

/// One request to `127.0.0.1:port`. `stream_until`: stop reading once the body contains it
/// (for server-sent events, which never end).
pub fn request_raw(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8], stream_until: Option<&str>) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the host");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // A server may answer before reading the whole body (a 413 decided by `Content-Length`) and
    // close: the answer is still there to read.
    let sent_all = s.write_all(body).is_ok();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) if !sent_all && !buf.is_empty() => break,
            Err(e) => panic!("reading {method} {path}: {e} (got {:?})", String::from_utf8_lossy(&buf)),
        }
        if let Some(marker) = stream_until
            && String::from_utf8_lossy(&buf).split_once("\r\n\r\n").is_some_and(|(_, b)| b.contains(marker))
        {
            break;
        }
        // Some servers (chromedriver) keep the connection open despite `Connection: close`.
        if let Some(split) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..split]).to_ascii_lowercase();
            let length = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_some_and(|n| buf.len() - split - 4 >= n) {
                break;
            }
        }
    }
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP response head");
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).expect("a status line");
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
    let raw = &buf[split + 4..];
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked && stream_until.is_none() { dechunk(raw) } else { raw.to_vec() };
    Resp { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
}

pub fn request(port: u16, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Resp {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    request_raw(port, method, path, &headers, body, None)
}

/// Uploads `wasm` as `name@version` for `tenant` through the admin API with `token`.
pub fn upload_plugin(port: u16, tenant: &str, token: &str, name: &str, version: &str, wasm: &[u8]) -> Resp {
    let path = format!("/api/v1/tenants/{tenant}/plugins?name={name}&version={version}");
    request_raw(port, "POST", &path, &[("Authorization", &format!("Bearer {token}")), ("Content-Type", "application/wasm")], wasm, None)
}

/// Posts a console form (`application/x-www-form-urlencoded`) with the session `cookie`.
pub fn console_post(port: u16, cookie: &str, path: &str, form: &[u8]) -> Resp {
    request_raw(port, "POST", path, &[("Cookie", cookie), ("Content-Type", "application/x-www-form-urlencoded")], form, None)
}

/// A host running `rtscore run` with the admin API on a free port, reading events from its
/// stdin, scenarios from a directory and tokens from a file the test fills.
pub struct ApiHost {
    pub host: HostProcess,
    pub port: u16,
    pub dir: tempfile::TempDir,
    stdin: Option<ChildStdin>,
}

impl ApiHost {
    /// Starts the host over `scenarios` (documents written to a fresh directory).
    pub fn start(scenarios: &[Value]) -> ApiHost {
        Self::start_prepared(scenarios, |_| {}, &[])
    }

    /// As [`ApiHost::start`], with more `rtscore run` flags (limits, for instance).
    pub fn start_args(scenarios: &[Value], extra: &[&str]) -> ApiHost {
        Self::start_prepared(scenarios, |_| {}, extra)
    }

    /// Like [`ApiHost::start`]; `prepare` fills the host's directory first (its `scenarios/`,
    /// `scenarios/tenants/` and `plugins/`), and `extra` goes to `rtscore run`.
    pub fn start_prepared(scenarios: &[Value], prepare: impl FnOnce(&Path), extra: &[&str]) -> ApiHost {
        let dir = tempfile::tempdir().unwrap();
        let scen = dir.path().join("scenarios");
        std::fs::create_dir_all(&scen).unwrap();
        std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
        for d in scenarios {
            let name = format!("{}__{}.json", d["tenant_id"].as_str().unwrap(), d["scenario_id"].as_str().unwrap());
            std::fs::write(scen.join(name), serde_json::to_vec_pretty(d).unwrap()).unwrap();
        }
        prepare(dir.path());
        let mut store = vec!["--scenarios-dir".to_string(), scen.to_string_lossy().into_owned()];
        store.extend(extra.iter().map(|a| a.to_string()));
        Self::start_with(dir, &store)
    }

    /// Starts the host on the fleet's store: scenario documents and plugins in MongoDB.
    pub fn start_mongo(stack: &Stack, database: &str, scenarios: &[Value]) -> ApiHost {
        stack.put_scenarios(database, scenarios);
        let store = ["--mongodb-url", &stack.mongodb_url, "--mongodb-database", database, "--config-poll-ms", "100"].map(String::from);
        Self::start_with(tempfile::tempdir().unwrap(), &store)
    }

    fn start_with(dir: tempfile::TempDir, store: &[String]) -> ApiHost {
        std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
        std::fs::write(dir.path().join("tokens"), "").unwrap();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let d = |p: &str| dir.path().join(p).to_string_lossy().into_owned();
        let (plug_s, tok_s) = (d("plugins"), d("tokens"));
        let mut args =
            vec!["run", "--events-file", "-", "--view", "off", "--plugins-dir", &plug_s, "--http-addr", &addr, "--api-tokens-file", &tok_s];
        args.extend(store.iter().map(String::as_str));
        let mut host = HostProcess::start_piped(&args);
        let stdin = host.take_stdin();
        assert!(wait_until(Duration::from_secs(30), || super::http_get(port, "/readyz").is_some()), "host not ready:\n{}", host.log());
        ApiHost { host, port, dir, stdin: Some(stdin) }
    }

    /// Writes a tenant document (quotas) where the host and the admin API read it.
    pub fn put_tenant(&self, doc: &Value) {
        let dir = self.dir.path().join("scenarios/tenants");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{}.json", doc["tenant_id"].as_str().unwrap())), doc.to_string()).unwrap();
    }

    /// A token made by the real CLI (`rtscore token create`).
    pub fn token(&self, scope: &str) -> String {
        let file = self.dir.path().join("tokens");
        let mut c = rtscore_command();
        c.arg("token").arg("create").arg("--tokens-file").arg(&file);
        match scope.strip_prefix("tenant:") {
            Some(t) => c.args(["--tenant", t]),
            None => c.arg("--admin"),
        };
        let out = c.output().expect("run rtscore token create");
        assert!(out.status.success(), "token create failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    pub fn send(&mut self, lines: &[Vec<u8>]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        for l in lines {
            stdin.write_all(l).unwrap();
            stdin.write_all(b"\n").unwrap();
        }
        stdin.flush().unwrap();
    }

    /// Ends the input and waits for the host to emit what it holds and exit by itself.
    pub fn end_of_input(&mut self) -> std::process::ExitStatus {
        self.stdin.take();
        self.host.wait_for_exit(Duration::from_secs(60)).unwrap_or_else(|| panic!("host did not exit:\n{}", self.host.log()))
    }
}

impl Drop for ApiHost {
    fn drop(&mut self) {
        // EOF first, so the host's blocking stdin reader ends and it exits promptly.
        self.stdin.take();
    }
}

/// The chromedriver process, killed when dropped (also when `Browser::start` panics).
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A chromedriver process and one headless Chromium session.
pub struct Browser {
    session: String,
    port: u16,
    _profile: tempfile::TempDir,
    // Declared last: dropped after the session is deleted.
    _driver: Driver,
}

fn find_binary(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    names.iter().flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n))).find(|p| p.is_file())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium. Panics with what to install when either
    /// is missing: the console's browser test never skips silently.
    pub fn start() -> Browser {
        let driver_bin = find_binary(&["chromedriver"]).unwrap_or_else(|| {
            panic!("chromedriver not found on PATH: run scripts/setup.sh (it installs Debian's chromium and chromium-driver)")
        });
        let chromium = find_binary(&["chromium", "chromium-browser", "google-chrome"]).unwrap_or_else(|| {
            panic!("chromium not found on PATH: run scripts/setup.sh (it installs Debian's chromium and chromium-driver)")
        });
        let port = free_port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Driver(driver);
        let ready = wait_until(Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok() && wd(port, "GET", "/status", None).1["value"]["ready"] == true
        });
        assert!(ready, "chromedriver did not become ready on port {port}");
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1400,1000",
        ];
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium.to_string_lossy(), "args": args}}}});
        let (status, v) = wd(port, "POST", "/session", Some(&caps));
        let session =
            v["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("chromedriver refused a session ({status}): {v}")).to_string();
        Browser { session, port, _profile: profile, _driver: driver }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (status, v) = wd(self.port, method, &format!("/session/{}{path}", self.session), body);
        assert_eq!(status, 200, "WebDriver {method} {path}: {v}");
        v["value"].clone()
    }

    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(&json!({"url": url})));
    }

    fn element(&self, css: &str) -> String {
        let v = self.cmd("POST", "/element", Some(&json!({"using": "css selector", "value": css})));
        v.as_object().and_then(|o| o.values().next()).and_then(Value::as_str).expect("element id").to_string()
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.cmd("POST", &format!("/element/{id}/value"), Some(&json!({"text": text})));
    }

    /// Clicks the element `css` selects. Live updates replace parts of the page, so an element
    /// found a moment ago may be gone ("stale"): it is looked up again, a few times.
    pub fn click(&self, css: &str) {
        for _ in 0..5 {
            let id = self.element(css);
            let (status, v) = wd(self.port, "POST", &format!("/session/{}/element/{id}/click", self.session), Some(&json!({})));
            if status == 200 {
                return;
            }
            assert_eq!(v["value"]["error"], "stale element reference", "WebDriver click {css}: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{css} went stale five times in a row");
    }

    /// Runs `script` in the page and returns its result.
    pub fn eval(&self, script: &str, args: Value) -> Value {
        self.cmd("POST", "/execute/sync", Some(&json!({"script": script, "args": args})))
    }

    pub fn text(&self, css: &str) -> String {
        self.eval("const e = document.querySelector(arguments[0]); return e ? e.innerText : null;", json!([css]))
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub fn url(&self) -> String {
        self.cmd("GET", "/url", None).as_str().unwrap_or("").to_string()
    }

    /// Saves a PNG of the viewport.
    pub fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let b64 = self.cmd("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD.decode(b64.as_str().expect("base64 screenshot")).expect("valid base64");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// Polls `cond` on the page until it holds or `deadline` passes.
    pub fn wait_for(&self, deadline: Duration, what: &str, mut cond: impl FnMut(&Browser) -> bool) {
        let end = Instant::now() + deadline;
        while !cond(self) {
            assert!(Instant::now() < end, "timed out waiting for {what}; page text:\n{}", self.text("body"));
            std::thread::sleep(Duration::from_millis(150));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = wd(self.port, "DELETE", &format!("/session/{}", self.session), None);
    }
}

fn wd(port: u16, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let r = request_raw(port, method, path, &[("Content-Type", "application/json")], body.as_bytes(), None);
    (r.status, serde_json::from_str(&r.body).unwrap_or(Value::Null))
}

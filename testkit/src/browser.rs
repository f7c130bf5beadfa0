//! The console in a real browser: a minimal WebDriver client (JSON over HTTP, no extra crate)
//! for chromedriver driving a headless Chromium.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::web::request_raw;
use crate::{free_port, wait_until};

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

/// One WebDriver command to chromedriver on `port`: its HTTP status and JSON answer.
fn wd(port: u16, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let r = request_raw(port, method, path, &[("Content-Type", "application/json")], body.as_bytes(), None);
    (r.status, serde_json::from_str(&r.body).unwrap_or(Value::Null))
}

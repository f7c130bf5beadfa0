//! HTTP for the admin API and console tests: a tiny HTTP/1.1 client (the host speaks plain HTTP
//! on 127.0.0.1) and a host fed events on stdin with the API enabled ([`ApiHost`]).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::ChildStdin;
use std::time::Duration;

use serde_json::Value;

use crate::host::{Host, HostProcess, rtscore_command};
use crate::stack::Stack;
use crate::{free_port, wait_until};

/// Body of `GET http://127.0.0.1:{port}{path}`, if the server answers 200.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

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
        Self::start_prepared(scenarios, |_| {}, |host| host)
    }

    /// As [`ApiHost::start`], with more `rtscore run` flags set by `configure` (limits, for
    /// instance).
    pub fn start_with(scenarios: &[Value], configure: impl FnOnce(Host) -> Host) -> ApiHost {
        Self::start_prepared(scenarios, |_| {}, configure)
    }

    /// Like [`ApiHost::start`]; `prepare` fills the host's directory first (its `scenarios/`,
    /// `scenarios/tenants/` and `plugins/`), and `configure` adds `rtscore run` flags.
    pub fn start_prepared(scenarios: &[Value], prepare: impl FnOnce(&Path), configure: impl FnOnce(Host) -> Host) -> ApiHost {
        let dir = tempfile::tempdir().unwrap();
        let scen = dir.path().join("scenarios");
        std::fs::create_dir_all(&scen).unwrap();
        std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
        for d in scenarios {
            let name = format!("{}__{}.json", d["tenant_id"].as_str().unwrap(), d["scenario_id"].as_str().unwrap());
            std::fs::write(scen.join(name), serde_json::to_vec_pretty(d).unwrap()).unwrap();
        }
        prepare(dir.path());
        Self::launch(dir, |host| configure(host.scenarios_dir(&scen)))
    }

    /// Starts the host on the fleet's store: scenario documents and plugins in MongoDB.
    pub fn start_mongo(stack: &Stack, database: &str, scenarios: &[Value]) -> ApiHost {
        stack.put_scenarios(database, scenarios);
        Self::launch(tempfile::tempdir().unwrap(), |host| host.mongo(stack, database).config_poll_ms(100))
    }

    /// Starts the host in `dir` (its `plugins/` and `tokens`), reading stdin, with the admin API
    /// on a free port; `store` adds where scenarios come from and any other flag.
    fn launch(dir: tempfile::TempDir, store: impl FnOnce(Host) -> Host) -> ApiHost {
        std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
        std::fs::write(dir.path().join("tokens"), "").unwrap();
        let port = free_port();
        let host = Host::run()
            .events_stdin()
            .view_off()
            .plugins_dir(dir.path().join("plugins"))
            .http(port)
            .api_tokens_file(dir.path().join("tokens"));
        let mut host = store(host).start();
        let stdin = host.take_stdin();
        assert!(wait_until(Duration::from_secs(30), || http_get(port, "/readyz").is_some()), "host not ready:\n{}", host.log());
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

//! A real `opml serve` process on a loopback port, and a small HTTP client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/digits_cnn")
}

pub fn model_bytes() -> Vec<u8> {
    std::fs::read(fixtures().join("model.onnx")).unwrap()
}

pub fn sample_npy() -> Vec<u8> {
    std::fs::read(fixtures().join("sample_input.npy")).unwrap()
}

/// A JSON input for the digits model whose values depend on `seed`.
pub fn json_input(seed: u32) -> Vec<u8> {
    let data: Vec<f32> = (0..64u32)
        .map(|i| ((i * 7 + seed * 13) % 17) as f32)
        .collect();
    serde_json::to_vec(&serde_json::json!({"input": {"shape": [1, 1, 8, 8], "data": data}}))
        .unwrap()
}

pub struct Server {
    pub child: Child,
    pub base: String,
    pub data: PathBuf,
}

impl Server {
    pub fn start(data: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_opml"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(extra)
            .env("RUST_LOG", "warn")
            .env_remove("OPML_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start opml serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Self {
            child,
            base,
            data: data.to_path_buf(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGKILL, no cleanup.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// Status, headers and body of a response.
pub struct Reply {
    pub status: u16,
    pub headers: ureq::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }

    /// The JSON error code (and checks the error shape).
    pub fn error_code(&self) -> String {
        let j = self.json();
        assert!(j["error"]["message"].is_string(), "{j}");
        j["error"]["code"].as_str().unwrap().to_string()
    }
}

fn reply(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut r = r.expect("request");
    Reply {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .unwrap(),
    }
}

pub fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = agent().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    reply(req.call())
}

pub fn post(url: &str, body: &[u8], headers: &[(&str, &str)]) -> Reply {
    let mut req = agent().post(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    reply(req.send(body))
}

/// Polls a task until it is done or failed.
pub fn wait_task(server: &Server, id: &str) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let r = get(&server.url(&format!("/v1/tasks/{id}")), &[]);
        assert_eq!(r.status, 200);
        let j = r.json();
        match j["status"].as_str().unwrap() {
            "done" | "failed" => return j,
            _ if start.elapsed() > Duration::from_secs(60) => {
                panic!("task {id} never finished: {j}")
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Posts the digits model; returns its id.
pub fn post_model(server: &Server, headers: &[(&str, &str)]) -> String {
    let r = post(&server.url("/v1/models"), &model_bytes(), headers);
    assert!(
        r.status == 201 || r.status == 200,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()["id"].as_str().unwrap().to_string()
}

/// Posts a task; returns its id.
pub fn post_task(server: &Server, model: &str, engine: &str, body: &[u8]) -> String {
    let r = post(
        &server.url(&format!("/v1/models/{model}/tasks?engine={engine}")),
        body,
        &[],
    );
    assert!(
        r.status == 202 || r.status == 200,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()["id"].as_str().unwrap().to_string()
}

//! A bounded load test of the service on loopback: a fixed number of
//! concurrent clients for a fixed time per scenario, reporting throughput,
//! p50/p99 latency and errors.
//!
//! ```text
//! cargo run --release -p opml-http --example load -- [CLIENTS] [SECONDS]
//! ```
//!
//! The server runs in this process (the same `app` as `opml serve`, on a
//! temporary data directory, 2 workers); the clients are threads with
//! blocking HTTP/1.1 connections (ureq keeps them alive).
//!
//! Scenarios: `GET /v1/health`; a small native task (POST a new input of the
//! digits CNN, then GET the task until done: one "request" is the whole
//! round trip); downloading a recorded trace (wasm task of the same model).

use opml_http::server::app::app;
use opml_http::server::state::{AppState, Config};
use opml_http::server::worker;
use opml_http::store::{Files, RedbStore};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_idle_connections_per_host(256)
        .build()
        .into()
}

fn input(seed: u32) -> Vec<u8> {
    let data: Vec<f32> = (0..64u32)
        .map(|i| ((i.wrapping_mul(31) ^ seed) % 16) as f32)
        .collect();
    serde_json::to_vec(&serde_json::json!({"input": data})).unwrap()
}

/// Runs `op` from `clients` threads for `secs`; prints one table row.
fn scenario(name: &str, clients: usize, secs: f64, op: impl Fn(&ureq::Agent, u32) -> bool + Sync) {
    let counter = AtomicU32::new(0);
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let results: Vec<(Vec<Duration>, u64)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..clients)
            .map(|_| {
                s.spawn(|| {
                    let a = agent();
                    let (mut lat, mut errors) = (Vec::new(), 0u64);
                    while Instant::now() < until {
                        let seed = counter.fetch_add(1, Ordering::Relaxed);
                        let t = Instant::now();
                        if op(&a, seed) {
                            lat.push(t.elapsed());
                        } else {
                            errors += 1;
                        }
                    }
                    (lat, errors)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut lat: Vec<Duration> = results.iter().flat_map(|r| r.0.iter().copied()).collect();
    let errors: u64 = results.iter().map(|r| r.1).sum();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "| {name:<28} | {clients:>7} | {:>9.0} | {:>8.2} | {:>8.2} | {errors:>6} |",
        lat.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let clients: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(16);
    let secs: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let dir = tempfile::tempdir().unwrap();
    let files = Files::open(dir.path()).unwrap();
    let store = RedbStore::open(&files.db()).unwrap();
    let config = Config {
        queue_depth: 1024,
        max_in_flight: 1024,
        ..Config::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (state, rx) = AppState::new(config, Arc::new(store), files);
    let base = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        worker::start(state.clone(), rx).unwrap();
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move { axum::serve(listener, app(state)).await });
        format!("http://{addr}")
    });
    let a = agent();
    let model_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/digits_cnn/model.onnx");
    let mut r = a
        .post(format!("{base}/v1/models"))
        .send(&std::fs::read(model_path).unwrap()[..])
        .unwrap();
    let model = r.body_mut().read_json::<serde_json::Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let tasks = format!("{base}/v1/models/{model}/tasks");
    let wait = |a: &ureq::Agent, id: &str| -> bool {
        loop {
            let Ok(mut r) = a.get(format!("{base}/v1/tasks/{id}")).call() else {
                return false;
            };
            let Ok(j) = r.body_mut().read_json::<serde_json::Value>() else {
                return false;
            };
            match j["status"].as_str() {
                Some("done") => return true,
                Some("failed") | None => return false,
                _ => std::thread::sleep(Duration::from_micros(200)),
            }
        }
    };
    let post = |a: &ureq::Agent, url: &str, seed: u32| -> Option<String> {
        let mut r = a.post(url).send(&input(seed)[..]).ok()?;
        if r.status() != 202 && r.status() != 200 {
            return None;
        }
        let j = r.body_mut().read_json::<serde_json::Value>().ok()?;
        j["id"].as_str().map(String::from)
    };
    let trace_task = post(&a, &format!("{tasks}?engine=wasm"), u32::MAX).unwrap();
    assert!(wait(&a, &trace_task));
    let trace_url = format!("{base}/v1/tasks/{trace_task}/trace");
    let trace_len = a
        .get(&trace_url)
        .call()
        .unwrap()
        .body_mut()
        .read_to_vec()
        .unwrap()
        .len();

    println!("{clients} clients, {secs} s per scenario, trace of {trace_len} bytes");
    println!(
        "| scenario                     | clients | req/s     | p50 ms   | p99 ms   | errors |"
    );
    println!(
        "|------------------------------|---------|-----------|----------|----------|--------|"
    );
    scenario("GET /v1/health", clients, secs, |a, _| {
        a.get(format!("{base}/v1/health"))
            .call()
            .is_ok_and(|mut r| r.status() == 200 && r.body_mut().read_to_vec().is_ok())
    });
    scenario("native task (post + poll)", clients, secs, |a, seed| {
        post(a, &format!("{tasks}?engine=native"), seed).is_some_and(|id| wait(a, &id))
    });
    scenario("GET trace (whole file)", clients, secs, |a, _| {
        a.get(&trace_url).call().is_ok_and(|mut r| {
            r.status() == 200
                && r.body_mut()
                    .read_to_vec()
                    .is_ok_and(|b| b.len() == trace_len)
        })
    });
}

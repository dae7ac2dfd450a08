//! Handlers through the router with tower's `oneshot` (no sockets).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use opml_http::server::app::app;
use opml_http::server::state::{AppState, Config, Shared};
use opml_http::server::worker;
use opml_http::store::{Files, RedbStore};
use std::sync::Arc;
use tokio::sync::mpsc;
use tower::ServiceExt;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/digits_cnn")
            .join(name),
    )
    .unwrap()
}

fn state(dir: &std::path::Path, config: Config) -> (Shared, mpsc::Receiver<String>) {
    let files = Files::open(dir).unwrap();
    let store = RedbStore::open(&files.db()).unwrap();
    AppState::new(config, Arc::new(store), files)
}

async fn send(
    s: &Shared,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
    let r = app(s.clone()).oneshot(req).await.unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, headers, json)
}

fn post(uri: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(uri).body(Body::from(body)).unwrap()
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn input(seed: u32) -> Vec<u8> {
    let data: Vec<u32> = (0..64).map(|i| (i + seed) % 5).collect();
    serde_json::to_vec(&serde_json::json!({"input": data})).unwrap()
}

#[tokio::test]
async fn health_and_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _rx) = state(dir.path(), Config::default());
    let (st, _, j) = send(&s, get("/v1/health")).await;
    assert_eq!((st, j["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (st, _, j) = send(&s, get("/v1/tasks/0123")).await;
    assert_eq!(
        (st, j["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_id"))
    );
    let (st, _, j) = send(&s, get(&format!("/v1/models/{}", "0".repeat(64)))).await;
    assert_eq!(
        (st, j["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (st, _, j) = send(&s, get("/nope")).await;
    assert_eq!(
        (st, j["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
}

#[tokio::test]
async fn token_guards_writes_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        token: Some("t".into()),
        ..Config::default()
    };
    let (s, _rx) = state(dir.path(), config);
    let (st, h, j) = send(&s, post("/v1/models", b"x".to_vec())).await;
    assert_eq!(
        (st, j["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    assert_eq!(h["www-authenticate"], "Bearer");
    let (st, _, _) = send(&s, get("/v1/health")).await;
    assert_eq!(st, StatusCode::OK);
    let authed = Request::post("/v1/models")
        .header("authorization", "Bearer t")
        .body(Body::from(b"x".to_vec()))
        .unwrap();
    let (st, _, j) = send(&s, authed).await;
    assert_eq!(
        (st, j["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_model"))
    );
}

#[tokio::test]
async fn body_limit_gives_413_json() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _rx) = state(
        dir.path(),
        Config {
            body_limit: 100,
            ..Config::default()
        },
    );
    // Declared length over the limit.
    let req = Request::post("/v1/models")
        .header("content-length", "101")
        .body(Body::from(vec![0u8; 101]))
        .unwrap();
    let (st, _, j) = send(&s, req).await;
    assert_eq!(
        (st, j["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large"))
    );
    // No declared length: cut while reading.
    let stream = futures_stream(vec![0u8; 1000]);
    let (st, _, j) = send(&s, Request::post("/v1/models").body(stream).unwrap()).await;
    assert_eq!(
        (st, j["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large"))
    );
}

fn futures_stream(bytes: Vec<u8>) -> Body {
    Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        std::io::Cursor::new(bytes),
        64,
    ))
}

#[tokio::test]
async fn full_queue_gives_503_with_retry_after_and_workers_drain_it() {
    let dir = tempfile::tempdir().unwrap();
    let (s, rx) = state(
        dir.path(),
        Config {
            queue_depth: 1,
            ..Config::default()
        },
    );
    let (st, _, model) = send(&s, post("/v1/models", fixture("model.onnx"))).await;
    assert_eq!(st, StatusCode::CREATED);
    let tasks = format!("/v1/models/{}/tasks", model["id"].as_str().unwrap());
    // No worker yet: the first task fills the queue, the second is refused.
    let (st, _, first) = send(&s, post(&tasks, input(1))).await;
    assert_eq!(
        (st, first["status"].as_str()),
        (StatusCode::ACCEPTED, Some("queued"))
    );
    let (st, h, j) = send(&s, post(&tasks, input(2))).await;
    assert_eq!(
        (st, j["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("overloaded"))
    );
    assert_eq!(h["retry-after"], "5");
    // The refused task was not stored.
    let (_, _, again) = send(&s, post(&tasks, input(1))).await;
    assert_eq!(again["id"], first["id"]);
    // Start the workers: the queued task runs.
    worker::start(s.clone(), rx).unwrap();
    let id = first["id"].as_str().unwrap();
    for _ in 0..500 {
        let (_, _, t) = send(&s, get(&format!("/v1/tasks/{id}"))).await;
        if t["status"] == "done" {
            assert_eq!(t["progress"]["steps_done"], t["progress"]["steps_total"]);
            assert_eq!(t["node_roots"].as_array().unwrap().len(), 5);
            let (st, _, _) = send(&s, post(&tasks, input(2))).await;
            assert_eq!(st, StatusCode::ACCEPTED);
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("task never finished");
}

#[tokio::test]
async fn npy_and_json_inputs_are_the_same_task() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _rx) = state(dir.path(), Config::default());
    let (_, _, model) = send(&s, post("/v1/models", fixture("model.onnx"))).await;
    let tasks = format!(
        "/v1/models/{}/tasks?engine=native",
        model["id"].as_str().unwrap()
    );
    let npy = fixture("sample_input.npy");
    // The .npy's f32 values, as JSON.
    let values: Vec<f32> = npy[128..]
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(values.len(), 64);
    let json =
        serde_json::to_vec(&serde_json::json!({"input": {"shape": [1, 1, 8, 8], "data": values}}))
            .unwrap();
    let (st, _, a) = send(&s, post(&tasks, npy)).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let (st, _, b) = send(&s, post(&tasks, json)).await;
    assert_eq!((st, &a["id"]), (StatusCode::OK, &b["id"]));
}

/// A `.npy` of f32 values of `shape`.
fn npy_f32(shape: &str, values: &[f32]) -> Vec<u8> {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    values
        .iter()
        .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    out
}

fn multipart(parts: &[(&str, &[u8])]) -> Request<Body> {
    let mut body = Vec::new();
    for (name, bytes) in parts {
        body.extend_from_slice(
            format!("--XBOUNDARYX\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--XBOUNDARYX--\r\n");
    Request::post("/v1/models")
        .header("content-type", "multipart/form-data; boundary=XBOUNDARYX")
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn multipart_upload_with_calibration() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _rx) = state(dir.path(), Config::default());
    let model = fixture("model.onnx");
    let values: Vec<f32> = (0..4 * 64).map(|i| (i % 17) as f32).collect();
    let calib = npy_f32("(4, 1, 1, 8, 8)", &values);
    let (st, _, j) = send(
        &s,
        multipart(&[
            ("model", &model),
            ("calibration", &calib),
            ("input_shape", b"input=1x1x8x8"),
        ]),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{j}");
    assert_eq!(j["report"]["import"]["calibration_samples"], 4);
    // The same upload again is the same model.
    let (st, _, again) = send(&s, multipart(&[("model", &model), ("calibration", &calib)])).await;
    assert_eq!((st, &again["id"]), (StatusCode::OK, &j["id"]));
    // Bad parts.
    let huge = npy_f32("(100000, 100000, 64)", &[]);
    for (parts, code) in [
        (
            vec![("model", &model[..]), ("calibration", &huge[..])],
            "bad_input",
        ),
        (
            vec![("model", &model[..]), ("calibration", &b"nope"[..])],
            "bad_input",
        ),
        (
            vec![("model", &model[..]), ("other", &b"x"[..])],
            "bad_body",
        ),
        (vec![("calibration", &calib[..])], "invalid_model"),
    ] {
        let (st, _, j) = send(&s, multipart(&parts)).await;
        assert_eq!(
            (st, j["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{j}"
        );
    }
}

#[tokio::test]
async fn request_timeout_gives_504_json() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        timeout: std::time::Duration::from_millis(1),
        ..Config::default()
    };
    let (s, _rx) = state(dir.path(), config);
    // Lowering takes far longer than a millisecond.
    let (st, _, j) = send(&s, post("/v1/models", fixture("model.onnx"))).await;
    assert_eq!(
        (st, j["error"]["code"].as_str()),
        (StatusCode::GATEWAY_TIMEOUT, Some("timeout"))
    );
}

#[tokio::test]
async fn concurrent_uploads_of_one_model_store_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _rx) = state(dir.path(), Config::default());
    let (a, b) = tokio::join!(
        send(&s, post("/v1/models", fixture("model.onnx"))),
        send(&s, post("/v1/models", fixture("model.onnx")))
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CREATED]);
    assert_eq!(a.2, b.2);
    let id = a.2["id"].as_str().unwrap();
    let (st, _, _) = send(&s, get(&format!("/v1/models/{id}/module.wasm"))).await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn requests_over_the_in_flight_limit_get_503() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _rx) = state(
        dir.path(),
        Config {
            max_in_flight: 1,
            ..Config::default()
        },
    );
    let router = app(s.clone());
    let call = |req: Request<Body>| {
        let r = router.clone();
        async move {
            let resp = r.oneshot(req).await.unwrap();
            let (status, h) = (resp.status(), resp.headers().clone());
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                h,
                serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            )
        }
    };
    // An upload whose body has not arrived holds the only slot; health is shed.
    let (mut writer, reader) = tokio::io::duplex(64);
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(reader));
    let upload = tokio::spawn(call(Request::post("/v1/models").body(body).unwrap()));
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (st, h, j) = call(get("/v1/health")).await;
    assert_eq!(
        (st, j["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("overloaded"))
    );
    assert_eq!(h["retry-after"], "1");
    tokio::io::AsyncWriteExt::write_all(&mut writer, b"not onnx")
        .await
        .unwrap();
    drop(writer);
    let (up, _, j) = upload.await.unwrap();
    assert_eq!(
        (up, j["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_model"))
    );
    // Once it is done, the slot is free again.
    assert_eq!(call(get("/v1/health")).await.0, StatusCode::OK);
}

//! Hostile input against the real server: every bad request gets the right
//! status and a JSON error, the server keeps serving and the store does not
//! change.

mod common;

use common::*;
use std::io::{Read, Write};
use std::path::Path;

const TOKEN: &str = "s3cret-token";
const AUTH: (&str, &str) = ("Authorization", "Bearer s3cret-token");

/// A `.npy` of `shape` with dtype `descr` and `bytes` of data.
fn npy(descr: &str, shape: &str, bytes: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(bytes);
    out
}

/// Every file under the data directory's blob folders, with its size, plus
/// the record counts the server reports.
fn snapshot(server: &Server) -> (Vec<(String, u64)>, String) {
    fn walk(dir: &Path, out: &mut Vec<(String, u64)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(&e.path(), out);
            } else {
                out.push((e.path().display().to_string(), e.metadata().unwrap().len()));
            }
        }
    }
    let mut files = Vec::new();
    for d in ["models", "runs", "tmp"] {
        walk(&server.data.join(d), &mut files);
    }
    files.sort();
    let m = String::from_utf8(get(&server.url("/v1/metrics"), &[]).body).unwrap();
    let counts = m
        .lines()
        .filter(|l| l.starts_with("opml_models_stored") || l.starts_with("opml_tasks_stored"))
        .collect::<Vec<_>>()
        .join(";");
    (files, counts)
}

/// Sends raw bytes on a fresh connection; returns the status and body.
fn raw(server: &Server, request: &[u8]) -> (u16, String) {
    let addr = server.base.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    // The server may answer and close before it has read everything.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the headers and the (small) JSON body are in.
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        if text.contains("\r\n\r\n") && text.trim_end().ends_with('}') {
            break;
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[test]
fn bad_requests_get_json_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--token", TOKEN, "--body-limit", "1000000"]);
    let model = post_model(&server, &[AUTH]);
    let task = post_task_auth(&server, &model);
    wait_task(&server, &task);
    let before = snapshot(&server);
    let onnx = model_bytes();
    let tasks = format!("/v1/models/{model}/tasks");
    let unknown = "ab".repeat(32);

    type Case<'a> = (&'a str, Box<dyn Fn() -> Reply + 'a>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "missing token",
            Box::new(|| post(&server.url("/v1/models"), &onnx, &[])),
            401,
            "unauthorized",
        ),
        (
            "wrong token",
            Box::new(|| {
                post(
                    &server.url("/v1/models"),
                    &onnx,
                    &[("Authorization", "Bearer nope")],
                )
            }),
            401,
            "unauthorized",
        ),
        (
            "task without token",
            Box::new(|| post(&server.url(&tasks), &sample_npy(), &[])),
            401,
            "unauthorized",
        ),
        (
            "garbage onnx",
            Box::new(|| {
                post(
                    &server.url("/v1/models"),
                    b"this is not a model at all",
                    &[AUTH],
                )
            }),
            400,
            "invalid_model",
        ),
        (
            "truncated onnx",
            Box::new(|| post(&server.url("/v1/models"), &onnx[..onnx.len() / 2], &[AUTH])),
            400,
            "invalid_model",
        ),
        (
            "empty onnx",
            Box::new(|| post(&server.url("/v1/models"), b"", &[AUTH])),
            400,
            "invalid_model",
        ),
        (
            "bad input_shape",
            Box::new(|| {
                post(
                    &server.url("/v1/models?input_shape=input=1xZ"),
                    &onnx,
                    &[AUTH],
                )
            }),
            400,
            "bad_query",
        ),
        (
            "wrong shape json",
            Box::new(|| {
                post(
                    &server.url(&tasks),
                    br#"{"input": {"shape": [1, 64], "data": [0]}}"#,
                    &[AUTH],
                )
            }),
            400,
            "bad_input",
        ),
        (
            "too few values",
            Box::new(|| post(&server.url(&tasks), br#"{"input": [1, 2, 3]}"#, &[AUTH])),
            400,
            "bad_input",
        ),
        (
            "string values",
            Box::new(|| post(&server.url(&tasks), br#"{"input": ["a"]}"#, &[AUTH])),
            400,
            "bad_input",
        ),
        (
            "wrong input name",
            Box::new(|| post(&server.url(&tasks), br#"{"x": [1]}"#, &[AUTH])),
            400,
            "bad_input",
        ),
        (
            "wrong shape npy",
            Box::new(|| {
                post(
                    &server.url(&tasks),
                    &npy("<f4", "(1, 64)", &[0; 256]),
                    &[AUTH],
                )
            }),
            400,
            "bad_input",
        ),
        (
            "complex npy",
            Box::new(|| {
                post(
                    &server.url(&tasks),
                    &npy("<c8", "(1, 1, 8, 8)", &[0; 512]),
                    &[AUTH],
                )
            }),
            400,
            "bad_input",
        ),
        (
            "short npy data",
            Box::new(|| {
                post(
                    &server.url(&tasks),
                    &npy("<f4", "(1, 1, 8, 8)", &[0; 10]),
                    &[AUTH],
                )
            }),
            400,
            "bad_input",
        ),
        (
            "garbage npz",
            Box::new(|| post(&server.url(&tasks), b"PK\x03\x04garbage", &[AUTH])),
            400,
            "bad_input",
        ),
        (
            "unknown media",
            Box::new(|| post(&server.url(&tasks), b"\x00\x01\x02", &[AUTH])),
            415,
            "unsupported_input",
        ),
        (
            "bad engine",
            Box::new(|| {
                post(
                    &server.url(&format!("{tasks}?engine=gpu")),
                    &sample_npy(),
                    &[AUTH],
                )
            }),
            400,
            "bad_query",
        ),
        (
            "unknown model",
            Box::new(|| {
                post(
                    &server.url(&format!("/v1/models/{unknown}/tasks")),
                    &sample_npy(),
                    &[AUTH],
                )
            }),
            404,
            "not_found",
        ),
        (
            "bad model id",
            Box::new(|| get(&server.url("/v1/models/xyz"), &[])),
            400,
            "bad_id",
        ),
        (
            "upper-case id",
            Box::new(|| {
                get(
                    &server.url(&format!("/v1/models/{}", model.to_uppercase())),
                    &[],
                )
            }),
            400,
            "bad_id",
        ),
        (
            "unknown task",
            Box::new(|| get(&server.url(&format!("/v1/tasks/{unknown}")), &[])),
            404,
            "not_found",
        ),
        (
            "unknown task trace",
            Box::new(|| get(&server.url(&format!("/v1/tasks/{unknown}/trace")), &[])),
            404,
            "not_found",
        ),
        (
            "bad step",
            Box::new(|| get(&server.url(&format!("/v1/tasks/{task}/proof/-1")), &[])),
            400,
            "bad_step",
        ),
        (
            "huge step",
            Box::new(|| {
                get(
                    &server.url(&format!("/v1/tasks/{task}/proof/99999999999999999999999")),
                    &[],
                )
            }),
            400,
            "bad_step",
        ),
        (
            "step past the end",
            Box::new(|| get(&server.url(&format!("/v1/tasks/{task}/state/7")), &[])),
            404,
            "not_found",
        ),
        (
            "malformed range",
            Box::new(|| {
                get(
                    &server.url(&format!("/v1/tasks/{task}/trace")),
                    &[("Range", "bytes=zz-1")],
                )
            }),
            416,
            "bad_range",
        ),
        (
            "two ranges",
            Box::new(|| {
                get(
                    &server.url(&format!("/v1/tasks/{task}/trace")),
                    &[("Range", "bytes=0-1,5-9")],
                )
            }),
            416,
            "bad_range",
        ),
        (
            "reversed range",
            Box::new(|| {
                get(
                    &server.url(&format!("/v1/tasks/{task}/trace")),
                    &[("Range", "bytes=9-1")],
                )
            }),
            416,
            "bad_range",
        ),
        (
            "bad slice",
            Box::new(|| {
                get(
                    &server.url(&format!("/v1/tasks/{task}/trace?from=5&to=2")),
                    &[],
                )
            }),
            400,
            "bad_slice",
        ),
        (
            "unknown route",
            Box::new(|| get(&server.url("/v1/nothing"), &[])),
            404,
            "not_found",
        ),
        (
            "wrong method",
            Box::new(|| post(&server.url("/v1/health"), b"", &[AUTH])),
            405,
            "method_not_allowed",
        ),
    ];
    for (name, send, status, code) in &cases {
        let r = send();
        assert_eq!(
            r.status,
            *status,
            "{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.error_code(), *code, "{name}");
        assert_eq!(
            get(&server.url("/v1/health"), &[]).status,
            200,
            "{name}: server stopped serving"
        );
    }

    // A declared 2 GiB body is refused before it is sent.
    let (status, body) = raw(
        &server,
        format!("POST /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 2147483648\r\n\r\nxx").as_bytes(),
    );
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("body_too_large"), "{body}");
    // A chunked body (no declared length) is cut at the limit.
    let mut chunked = format!("POST /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n", 1_000_100).into_bytes();
    chunked.extend(std::iter::repeat_n(b'a', 1_000_100));
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let (status, body) = raw(&server, &chunked);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("body_too_large"), "{body}");
    let (status, body) = raw(
        &server,
        b"POST /v1/models HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n\r\n",
    );
    assert_eq!(status, 400, "{body}");

    assert_eq!(snapshot(&server), before, "the store changed");
}

fn post_task_auth(server: &Server, model: &str) -> String {
    let r = post(
        &server.url(&format!("/v1/models/{model}/tasks?engine=wasm")),
        &sample_npy(),
        &[AUTH],
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    r.json()["id"].as_str().unwrap().to_string()
}

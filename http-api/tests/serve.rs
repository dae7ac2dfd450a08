//! The real `opml serve` over HTTP: upload the digits model, run it on both
//! engines, download the trace with and without Range, verify a proof with
//! the runtime's verifier, restart and find everything again.

mod common;

use common::*;
use opml_runtime::trace::{HEADER_LEN, RECORD_LEN};
use opml_runtime::{verify_one_step, OneStepProof};

fn root(hex_str: &str) -> [u8; 32] {
    hex::decode(hex_str).unwrap().try_into().unwrap()
}

#[test]
fn upload_run_trace_prove_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);

    // Upload, idempotently.
    let first = post(&server.url("/v1/models"), &model_bytes(), &[]);
    assert_eq!(
        first.status,
        201,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let again = post(&server.url("/v1/models"), &model_bytes(), &[]);
    assert_eq!(again.status, 200);
    assert_eq!(first.json(), again.json());
    let model = first.json();
    let id = model["id"].as_str().unwrap().to_string();
    let wasm = get(&server.url(&format!("/v1/models/{id}/module.wasm")), &[]);
    assert_eq!(wasm.status, 200);
    assert_eq!(hex::encode(opml_runtime::hash::code_hash(&wasm.body)), id);
    let meta = get(&server.url(&format!("/v1/models/{id}/meta.json")), &[]).json();
    assert_eq!(meta["code_hash"], id.as_str());
    assert_eq!(meta["steps"], model["steps"]);

    // Both engines, same input: same roots everywhere.
    let native = post_task(&server, &id, "native", &sample_npy());
    let wasm_task = post_task(&server, &id, "wasm", &sample_npy());
    assert_ne!(native, wasm_task);
    let n = wait_task(&server, &native);
    let w = wait_task(&server, &wasm_task);
    assert_eq!(n["status"], "done", "{n}");
    assert_eq!(w["status"], "done", "{w}");
    for k in [
        "final_root",
        "initial_root",
        "node_roots",
        "steps",
        "fuel",
        "outputs",
    ] {
        assert_eq!(n[k], w[k], "{k}");
    }
    let steps = w["steps"].as_u64().unwrap();
    assert_eq!(steps, model["steps"].as_u64().unwrap());
    assert_eq!(w["progress"]["steps_done"], steps);
    // Re-posting a task gives the same task.
    assert_eq!(post_task(&server, &id, "wasm", &sample_npy()), wasm_task);

    // The trace, whole and in parts.
    let trace_url = server.url(&format!("/v1/tasks/{wasm_task}/trace"));
    let full = get(&trace_url, &[]);
    assert_eq!(full.status, 200);
    assert_eq!(full.body.len(), HEADER_LEN + RECORD_LEN * steps as usize);
    assert_eq!(full.header("accept-ranges").as_deref(), Some("bytes"));
    let len = full.body.len();
    let tail = get(&trace_url, &[("Range", "bytes=100-")]);
    assert_eq!(tail.status, 206);
    assert_eq!(tail.body, full.body[100..]);
    assert_eq!(
        tail.header("content-range"),
        Some(format!("bytes 100-{}/{len}", len - 1))
    );
    let mid = get(&trace_url, &[("Range", "bytes=10-19")]);
    assert_eq!((mid.status, &mid.body[..]), (206, &full.body[10..20]));
    let last = get(&trace_url, &[("Range", "bytes=-48")]);
    assert_eq!(last.body, full.body[len - 48..]);
    let past = get(&trace_url, &[("Range", &format!("bytes={len}-"))]);
    assert_eq!(past.status, 416);
    assert_eq!(past.header("content-range"), Some(format!("bytes */{len}")));
    assert_eq!(past.error_code(), "bad_range");

    // The JSON slice agrees with the bytes; the last root is the final root.
    let slice = get(&format!("{trace_url}?from=1&to={steps}"), &[]).json();
    let records = slice["records"].as_array().unwrap();
    assert_eq!(records.len() as u64, steps);
    for (k, r) in records.iter().enumerate() {
        let off = HEADER_LEN + RECORD_LEN * k + 16;
        assert_eq!(
            r["state_root"].as_str().unwrap(),
            hex::encode(&full.body[off..off + 32])
        );
    }
    assert_eq!(records[steps as usize - 1]["state_root"], w["final_root"]);
    let root_at = |s: u64| -> [u8; 32] {
        if s == 0 {
            root(w["initial_root"].as_str().unwrap())
        } else {
            root(records[s as usize - 1]["state_root"].as_str().unwrap())
        }
    };

    // A proof of every step verifies against the trace's roots.
    for step in 0..steps {
        let p = get(
            &server.url(&format!("/v1/tasks/{wasm_task}/proof/{step}")),
            &[],
        );
        assert_eq!(p.status, 200);
        let proof = OneStepProof::decode_bounded(&p.body, 16 << 20).unwrap();
        let post_root = verify_one_step(&wasm.body, &root_at(step), &proof).unwrap();
        assert_eq!(post_root, root_at(step + 1), "step {step}");
    }
    let pj = get(
        &server.url(&format!("/v1/tasks/{wasm_task}/proof/2")),
        &[("Accept", "application/json")],
    )
    .json();
    assert_eq!(pj["pre_root"].as_str().unwrap(), hex::encode(root_at(2)));
    assert_eq!(pj["post_root"].as_str().unwrap(), hex::encode(root_at(3)));
    let no_step = get(
        &server.url(&format!("/v1/tasks/{wasm_task}/proof/{steps}")),
        &[],
    );
    assert_eq!(
        (no_step.status, no_step.error_code().as_str()),
        (404, "not_found")
    );
    let st = get(&server.url(&format!("/v1/tasks/{wasm_task}/state/3")), &[]).json();
    assert_eq!(st["root"].as_str().unwrap(), hex::encode(root_at(3)));
    assert_eq!(st["fields"]["step"], 3);

    // Native tasks have no trace.
    let nt = get(&server.url(&format!("/v1/tasks/{native}/trace")), &[]);
    assert_eq!((nt.status, nt.error_code().as_str()), (409, "conflict"));

    // Metrics and the OpenAPI document.
    let m = String::from_utf8(get(&server.url("/v1/metrics"), &[]).body).unwrap();
    assert!(
        m.contains("opml_models_stored 1\n") && m.contains("opml_tasks_stored 2\n"),
        "{m}"
    );
    let api = get(&server.url("/v1/openapi.json"), &[]).json();
    assert!(api["paths"]["/v1/tasks/{id}/proof/{step}"]["get"].is_object());

    // The command line downloads the trace (resuming a cut file) and audits it.
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("trace.bin");
    let opml = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_opml"))
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let out_s = out.to_str().unwrap();
    assert_eq!(
        opml(&["download", &trace_url, "--out", out_s, "--json"]).0,
        Some(0)
    );
    assert_eq!(std::fs::read(&out).unwrap(), full.body);
    std::fs::write(&out, &full.body[..100]).unwrap();
    let (code, report) = opml(&["download", &trace_url, "--out", out_s, "--resume", "--json"]);
    assert_eq!(code, Some(0));
    assert!(report.contains("\"resumed_from\": 100"), "{report}");
    assert_eq!(std::fs::read(&out).unwrap(), full.body);
    let (code, _) = opml(&["download", &trace_url, "--out", out_s, "--resume", "--json"]);
    assert_eq!(code, Some(0), "a complete file stays as it is");
    assert_eq!(std::fs::read(&out).unwrap(), full.body);
    let art = work.path().join("art");
    std::fs::create_dir(&art).unwrap();
    std::fs::write(art.join("module.wasm"), &wasm.body).unwrap();
    let meta_bytes = get(&server.url(&format!("/v1/models/{id}/meta.json")), &[]).body;
    std::fs::write(art.join("meta.json"), meta_bytes).unwrap();
    let input = fixtures().join("sample_input.npy");
    let (code, report) = opml(&[
        "audit",
        art.to_str().unwrap(),
        "--trace",
        out_s,
        "--input",
        input.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, Some(0), "{report}");
    let unknown = server.url(&format!("/v1/tasks/{}/trace", "ab".repeat(32)));
    assert_eq!(opml(&["download", &unknown, "--out", out_s]).0, Some(2));

    // Restart: everything is still there, byte for byte.
    let before_task = get(&server.url(&format!("/v1/tasks/{wasm_task}")), &[]).json();
    drop(server);
    let server = Server::start(dir.path(), &[]);
    assert_eq!(
        get(&server.url(&format!("/v1/models/{id}")), &[]).json(),
        model
    );
    assert_eq!(
        get(&server.url(&format!("/v1/tasks/{wasm_task}")), &[]).json(),
        before_task
    );
    assert_eq!(wait_task(&server, &native)["final_root"], n["final_root"]);
    let again = get(&server.url(&format!("/v1/tasks/{wasm_task}/trace")), &[]);
    assert_eq!(again.body, full.body);
    // A second server on the same data directory is refused (exit 1) and
    // leaves the first one's files alone.
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_opml"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert!(second.stdout.is_empty());
    let p = get(&server.url(&format!("/v1/tasks/{wasm_task}/proof/1")), &[]);
    let proof = OneStepProof::decode_bounded(&p.body, 16 << 20).unwrap();
    assert_eq!(
        verify_one_step(&wasm.body, &root_at(1), &proof).unwrap(),
        root_at(2)
    );
}

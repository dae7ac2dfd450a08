//! `kill -9` while the server writes: after a restart every accepted task is
//! found, unfinished ones are re-run, and every recorded run is complete
//! (its trace and proofs check out).

mod common;

use common::*;
use opml_http::store::{RedbStore, Store};
use opml_runtime::trace::{HEADER_LEN, RECORD_LEN};
use opml_runtime::{verify_one_step, OneStepProof};
use std::sync::{Arc, Mutex};

#[test]
fn sigkill_during_writes_leaves_a_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--workers", "1"]);
    let model = post_model(&server, &[]);
    let wasm = get(&server.url(&format!("/v1/models/{model}/module.wasm")), &[]).body;

    // Post tasks from another thread while the server is killed.
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let poster = {
        let (accepted, url) = (
            accepted.clone(),
            server.url(&format!("/v1/models/{model}/tasks")),
        );
        std::thread::spawn(move || {
            for seed in 0..400u32 {
                let engine = if seed % 2 == 0 { "wasm" } else { "native" };
                let r = agent()
                    .post(format!("{url}?engine={engine}"))
                    .send(&json_input(seed)[..]);
                match r {
                    Ok(mut r) if r.status() == 202 => {
                        let j: serde_json::Value = r.body_mut().read_json().unwrap();
                        accepted
                            .lock()
                            .unwrap()
                            .push(j["id"].as_str().unwrap().to_string());
                    }
                    Ok(r) if r.status() == 503 => {
                        std::thread::sleep(std::time::Duration::from_millis(5))
                    }
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    Err(_) => return, // the server is gone
                }
            }
        })
    };
    // Kill once a few tasks are in, while others are being written and run.
    while accepted.lock().unwrap().len() < 20 {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    server.kill();
    poster.join().unwrap();
    let accepted = accepted.lock().unwrap().clone();

    // The store as the killed process left it: every acknowledged task is
    // in it; those not finished are in the unfinished index.
    let (unfinished, found) = {
        let store = RedbStore::open(&dir.path().join("opml.redb")).unwrap();
        let found = accepted
            .iter()
            .filter(|id| store.task(id).unwrap().is_some())
            .count();
        (store.unfinished_tasks().unwrap().len(), found)
    };
    assert_eq!(found, accepted.len());
    eprintln!(
        "{} tasks acknowledged, {unfinished} unfinished at the kill",
        accepted.len()
    );

    let server = Server::start(dir.path(), &["--workers", "2"]);
    assert_eq!(post_model(&server, &[]), model);
    let mut wasm_checked = 0;
    for id in &accepted {
        let t = wait_task(&server, id);
        assert_eq!(t["status"], "done", "{t}");
        if t["engine"] == "wasm" {
            let steps = t["steps"].as_u64().unwrap() as usize;
            let trace = get(&server.url(&format!("/v1/tasks/{id}/trace")), &[]);
            assert_eq!(trace.body.len(), HEADER_LEN + RECORD_LEN * steps);
            let last = &trace.body[trace.body.len() - 32..];
            assert_eq!(hex::encode(last), t["final_root"].as_str().unwrap());
            let p = get(&server.url(&format!("/v1/tasks/{id}/proof/0")), &[]);
            let proof = OneStepProof::decode_bounded(&p.body, 16 << 20).unwrap();
            let pre: [u8; 32] = hex::decode(t["initial_root"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
            let post = verify_one_step(&wasm, &pre, &proof).unwrap();
            assert_eq!(&post[..], &trace.body[HEADER_LEN + 16..HEADER_LEN + 48]);
            wasm_checked += 1;
        }
    }
    assert!(wasm_checked > 0);
    // Every published run directory is complete (partial ones are hidden
    // names, removed on start).
    for e in std::fs::read_dir(dir.path().join("runs")).unwrap() {
        let e = e.unwrap();
        if !e.file_name().to_string_lossy().starts_with('.') {
            assert!(e.path().join("manifest.json").exists() && e.path().join("trace.bin").exists());
        }
    }
}

//! `opml trace`, `opml verify` on a module.wasm, `opml audit` (clean and
//! tampered runs) and `opml run --output Y.npz`.

mod opml_cli;

use opml_cli::fixtures;

/// `opml ARGS`: exit code, stdout as JSON (null if it is not), stderr.
fn opml(args: &[&str]) -> (i32, serde_json::Value, String) {
    let (code, out, err) = opml_cli::opml(args);
    (
        code,
        serde_json::from_str(&out).unwrap_or(serde_json::Value::Null),
        err,
    )
}

#[test]
fn trace_verify_audit_and_npz_output() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    let model = fixtures().join("model.onnx");
    let input = fixtures().join("sample_input.npy");
    let (code, _, err) = opml(&[
        "lower",
        model.to_str().unwrap(),
        "--out",
        &p("art"),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, run, err) = opml(&[
        "run",
        &p("art"),
        "--input",
        input.to_str().unwrap(),
        "--engine",
        "wasm",
        "--trace",
        &p("run"),
        "--output",
        &p("y.npz"),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let steps = run["steps"].as_u64().unwrap();

    // The outputs in the .npz are the reported ones.
    let mut npz = npyz::npz::NpzArchive::open(p("y.npz")).unwrap();
    let out = &run["outputs"][0];
    let arr = npz.by_name(out["name"].as_str().unwrap()).unwrap().unwrap();
    assert_eq!(arr.shape(), &[1, 10]);
    let values: Vec<f32> = arr.into_vec().unwrap();
    let want: Vec<f32> = serde_json::from_value(out["values"].clone()).unwrap();
    assert_eq!(values, want);

    // trace: summary and slice.
    let (code, t, err) = opml(&["trace", &p("run"), "--from", "2", "--to", "4", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(t["steps"], steps);
    assert_eq!(t["manifest"]["final_state_root"], run["final_root"]);
    let recs = t["records"].as_array().unwrap();
    assert_eq!(
        recs.iter()
            .map(|r| r["step"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    let (code, _, _) = opml(&["trace", &p("run"), "--from", "0", "--json"]);
    assert_eq!(code, 2);

    // prove, then verify against the bare module.wasm.
    let (code, pr, err) = opml(&[
        "prove",
        &p("art"),
        "--trace",
        &p("run"),
        "--step",
        "2",
        "--out",
        &p("s2.proof"),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let wasm = tmp.path().join("art/module.wasm");
    let (code, v, err) = opml(&[
        "verify",
        wasm.to_str().unwrap(),
        "--proof",
        &p("s2.proof"),
        "--pre-root",
        pr["pre_root"].as_str().unwrap(),
        "--post-root",
        pr["post_root"].as_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["post_root"], pr["post_root"]);
    let wrong = "00".repeat(32);
    let (code, _, _) = opml(&[
        "verify",
        wasm.to_str().unwrap(),
        "--proof",
        &p("s2.proof"),
        "--pre-root",
        pr["pre_root"].as_str().unwrap(),
        "--post-root",
        &wrong,
        "--json",
    ]);
    assert_eq!(code, 1);

    // audit: clean, then with step 3's root altered.
    let (code, a, err) = opml(&["audit", &p("art"), "--trace", &p("run"), "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        (a["ok"].as_bool(), a["native_nodes_ok"].as_u64()),
        (Some(true), Some(5))
    );
    // A bare trace.bin (as the service serves it) with the task's input.
    let bare = tmp.path().join("bare.bin");
    std::fs::copy(tmp.path().join("run/trace.bin"), &bare).unwrap();
    let bare = bare.to_str().unwrap();
    let (code, a, err) = opml(&[
        "audit",
        &p("art"),
        "--trace",
        bare,
        "--input",
        input.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        (a["ok"].as_bool(), a["steps"].as_u64()),
        (Some(true), Some(steps))
    );
    let (code, _, err) = opml(&["audit", &p("art"), "--trace", bare, "--json"]);
    assert_eq!(code, 2, "{err}");
    let trace = tmp.path().join("run/trace.bin");
    let mut bytes = std::fs::read(&trace).unwrap();
    bytes[80 + 48 * 2 + 20] ^= 1; // record of step 3
    std::fs::write(&trace, &bytes).unwrap();
    let (code, a, err) = opml(&["audit", &p("art"), "--trace", &p("run"), "--json"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(a["first_bad_step"], 3);
    assert_eq!(a["ok"], false);
    // Step 3 is inside a node: the boundaries still agree.
    assert_eq!(a["native_nodes_ok"], 5);
    assert_eq!(a["first_bad_node"], "conv2+relu2.low");
    // Step 2 ends the second node: the native check sees it too.
    bytes[80 + 48 * 2 + 20] ^= 1;
    bytes[80 + 48 + 20] ^= 1;
    std::fs::write(&trace, &bytes).unwrap();
    let (code, a, _) = opml(&["audit", &p("art"), "--trace", &p("run"), "--json"]);
    assert_eq!(code, 1);
    assert_eq!(
        (a["first_bad_step"].as_u64(), a["native_nodes_ok"].as_u64()),
        (Some(2), Some(1))
    );
    std::fs::write(bare, &bytes).unwrap();
    let (code, a, _) = opml(&[
        "audit",
        &p("art"),
        "--trace",
        bare,
        "--input",
        input.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 1);
    assert_eq!(
        (a["first_bad_step"].as_u64(), a["native_nodes_ok"].as_u64()),
        (Some(2), Some(1))
    );
    // A directory that holds no run is bad input.
    let (code, _, _) = opml(&[
        "audit",
        &p("art"),
        "--trace",
        tmp.path().to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 2);
}

//! The `opml` binary end to end on the digits CNN fixture: lower, run on both
//! engines (identical roots), record a trace, and reject bad input with the
//! bad-input exit code.

mod opml_cli;

use opml_cli::{fixtures, json, opml};

#[test]
fn lower_then_run_on_both_engines_gives_identical_roots() {
    let tmp = std::env::temp_dir().join(format!("opml-cli-{}", std::process::id()));
    let art = tmp.join("digits");
    let model = fixtures().join("model.onnx");
    let (code, out, err) = opml(&[
        "lower",
        model.to_str().unwrap(),
        "--out",
        art.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let report = json(&out);
    assert_eq!(report["nodes"].as_array().unwrap().len(), 5);
    assert!(art.join("module.wasm").exists() && art.join("meta.json").exists());

    let input = fixtures().join("sample_input.npy");
    let run = |engine: &str, extra: &[&str]| {
        let mut args = vec![
            "run",
            art.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--engine",
            engine,
            "--json",
        ];
        args.extend_from_slice(extra);
        let (code, out, err) = opml(&args);
        assert_eq!(code, 0, "{err}");
        json(&out)
    };
    let native = run("native", &[]);
    let trace = tmp.join("trace");
    let wasm = run("wasm", &["--trace", trace.to_str().unwrap()]);
    assert_eq!(native["final_root"], wasm["final_root"]);
    assert_eq!(native["node_roots"], wasm["node_roots"]);
    assert_eq!(native["outputs"], wasm["outputs"]);
    assert!(trace.join("manifest.json").exists());

    // Every step of the recorded run proves and verifies; a proof checked
    // against the wrong pre-state root is bad input.
    let steps = wasm["steps"].as_u64().unwrap();
    let proof = tmp.join("step.proof");
    for step in 0..steps {
        let (code, out, err) = opml(&[
            "prove",
            art.to_str().unwrap(),
            "--trace",
            trace.to_str().unwrap(),
            "--step",
            &step.to_string(),
            "--out",
            proof.to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(code, 0, "step {step}: {err}");
        let r = json(&out);
        assert_eq!(r["verified"], true);
        let pre = r["pre_root"].as_str().unwrap().to_string();
        let post = r["post_root"].as_str().unwrap().to_string();
        let (code, _, err) = opml(&[
            "verify",
            art.to_str().unwrap(),
            "--proof",
            proof.to_str().unwrap(),
            "--pre-root",
            &pre,
            "--post-root",
            &post,
        ]);
        assert_eq!(code, 0, "{err}");
        let (code, _, _) = opml(&[
            "verify",
            art.to_str().unwrap(),
            "--proof",
            proof.to_str().unwrap(),
            "--pre-root",
            &post,
        ]);
        assert_eq!(code, 2);
    }

    // The sample is a 0: the dequantized logits' arg-max says so.
    let logits: Vec<f64> = native["outputs"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let best = logits
        .iter()
        .enumerate()
        .fold(0, |b, (i, v)| if *v > logits[b] { i } else { b });
    assert_eq!(best, 0, "{logits:?}");
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn bad_input_exits_with_code_2_and_a_clear_message() {
    let tmp = std::env::temp_dir().join(format!("opml-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let garbage = tmp.join("garbage.onnx");
    std::fs::write(&garbage, b"definitely not protobuf").unwrap();
    let (code, _, err) = opml(&[
        "lower",
        garbage.to_str().unwrap(),
        "--out",
        tmp.join("x").to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("opml:"), "{err}");
    assert!(!tmp.join("x").exists(), "nothing is written half-way");

    let missing = tmp.join("missing.onnx");
    let (code, _, err) = opml(&[
        "lower",
        missing.to_str().unwrap(),
        "--out",
        tmp.join("x").to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("missing.onnx"), "names the file: {err}");
    assert_eq!(err.matches("bad input").count(), 1, "said once: {err}");

    let (code, _, err) = opml(&[
        "run",
        tmp.to_str().unwrap(),
        "--input",
        garbage.to_str().unwrap(),
    ]);
    assert_ne!(code, 0, "{err}");
    std::fs::remove_dir_all(&tmp).unwrap();
}

//! Reproducible lowering: the same ONNX file and options give byte-identical
//! `module.wasm` and `meta.json`, run after run, and calibration gives the
//! same bits on 1 and on several threads (the only place the import uses
//! threads).

use opml_lowering::codegen::CodegenOptions;
use opml_lowering::import::{self, calibrate, import, ImportOptions};
use opml_lowering::Artifact;
use std::path::{Path, PathBuf};

fn model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/digits_cnn/model.onnx")
}

/// 40 digits from the committed data set, as calibration samples.
fn samples() -> Vec<Vec<Vec<f32>>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/digits_cnn/digits.npz");
    let mut npz = npyz::npz::NpzArchive::open(path).unwrap();
    let images = npz
        .by_name("images")
        .unwrap()
        .unwrap()
        .into_vec::<f32>()
        .unwrap();
    images
        .chunks(64)
        .take(40)
        .map(|x| vec![x.to_vec()])
        .collect()
}

fn lower_and_save(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let opts = ImportOptions {
        calibration: Some(samples()),
        ..Default::default()
    };
    let imp = import(&model(), &opts).unwrap();
    let art = Artifact::build(imp.program, CodegenOptions::default()).unwrap();
    art.save(dir).unwrap();
    (
        std::fs::read(dir.join("module.wasm")).unwrap(),
        std::fs::read(dir.join("meta.json")).unwrap(),
    )
}

#[test]
fn two_lowerings_write_identical_artifacts() {
    let base = std::env::temp_dir().join(format!("opml-repro-{}", std::process::id()));
    // The second lowering runs on another thread, concurrently with nothing
    // shared: any hidden global state or address-dependent order would show.
    let a = lower_and_save(&base.join("a"));
    let dir_b = base.join("b");
    let b = std::thread::spawn(move || lower_and_save(&dir_b))
        .join()
        .unwrap();
    let _ = std::fs::remove_dir_all(&base);
    assert!(a.0 == b.0, "module.wasm differs");
    assert!(a.1 == b.1, "meta.json differs");
    assert!(!a.0.is_empty() && !a.1.is_empty());
}

#[test]
fn calibration_gives_the_same_bits_on_any_thread_count() {
    let loaded = import::load::load(&model(), &[]).unwrap();
    let plan = import::analyze::analyze(&loaded.model).unwrap();
    let s = samples();
    let one = calibrate::calibrate_with_threads(&plan, &s, 1).unwrap();
    assert!(one.iter().any(|r| *r > 0.0));
    for threads in [2, 3, 7] {
        let many = calibrate::calibrate_with_threads(&plan, &s, threads).unwrap();
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<u64>>();
        assert_eq!(bits(&one), bits(&many), "{threads} threads");
    }
}

/// A module carries exactly the kernels its nodes use (plus `step`), so
/// adding a kernel for another op family to the registry leaves every other
/// model's code, and its code hash, as it was.
#[test]
fn a_module_carries_only_the_kernels_its_nodes_use() {
    let imp = import(&model(), &ImportOptions::default()).unwrap();
    let (generated, scheduled) =
        opml_lowering::codegen::generate(&imp.program, &CodegenOptions::default()).unwrap();
    let mut used: Vec<&str> = scheduled.iter().map(|s| s.kernel).collect();
    used.sort_unstable();
    used.dedup();
    // The digits CNN: convolutions, max pooling, one matmul.
    assert_eq!(used, ["conv", "matmul", "maxpool"]);
    let mut bodies = 0;
    for payload in wasmparser::Parser::new(0).parse_all(&generated.wasm) {
        if let wasmparser::Payload::CodeSectionEntry(_) = payload.unwrap() {
            bodies += 1;
        }
    }
    assert_eq!(
        bodies,
        used.len() + 1,
        "one body per used kernel, plus step"
    );
    assert!(opml_lowering::ops::family::KERNELS.len() > used.len());
}

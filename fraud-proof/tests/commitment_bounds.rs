//! The real fixtures' commitments fit the core's bounds: the digits CNN and
//! the third-party PaddleOCR classifier (fixtures/third_party).

use opml_fraud_proof::build::commitment_from_artifact;
use opml_fraud_proof::core::ModelCommitment;
use opml_lowering::codegen::CodegenOptions;
use opml_lowering::import::api::{import, ImportOptions};
use opml_lowering::Artifact;
use parity_scale_codec::{Encode, MaxEncodedLen};
use std::path::{Path, PathBuf};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(rel)
}

fn npy_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).expect("read npy");
    npyz::NpyFile::new(&bytes[..])
        .expect("npy")
        .into_vec::<f32>()
        .expect("f32 npy")
}

fn report(name: &str, c: &ModelCommitment) -> usize {
    let size = c.encoded_size();
    println!(
        "{name}: {size} B encoded (max {} B); chunk 2^{}, {} input regions, {} edge chunks, {} lemmas, {} output regions, {} nodes",
        ModelCommitment::max_encoded_len(),
        c.chunk_log2,
        c.inputs.len(),
        c.input_edges.len(),
        c.input_lemmas.len(),
        c.outputs.len(),
        c.node_ends.len()
    );
    assert!(size <= ModelCommitment::max_encoded_len());
    size
}

#[test]
fn digits_commitment_fits_bounds() {
    let imp = import(&fixture("digits_cnn/model.onnx"), &ImportOptions::default()).unwrap();
    let a = Artifact::build(imp.program, CodegenOptions::default()).unwrap();
    report("digits", &commitment_from_artifact(&a).unwrap());
}

#[test]
fn paddleocr_commitment_fits_bounds() {
    let ocr: Vec<Vec<f32>> = (0..4)
        .map(|i| npy_f32(&fixture(&format!("third_party/input_{i}.npy"))))
        .collect();
    let opts = ImportOptions {
        input_shapes: vec![("x".into(), vec![1, 3, 48, 192])],
        calibration: Some(ocr.iter().map(|x| vec![x.clone()]).collect()),
    };
    let imp = import(
        &fixture("third_party/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
        &opts,
    )
    .unwrap();
    let a = Artifact::build(imp.program, CodegenOptions::default()).unwrap();
    report("paddleocr", &commitment_from_artifact(&a).unwrap());
}

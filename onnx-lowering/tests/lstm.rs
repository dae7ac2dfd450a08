//! ONNX LSTM (tract's `Scan` loop, unrolled): the committed sequence
//! classifier (`fixtures/lstm`) against onnxruntime, both engines node by
//! node, random LSTMs (native vs wasm, and the integer program against the
//! float plan), and the attributes that are refused.

use opml_lowering::codegen::CodegenOptions;
use opml_lowering::import::{dequantize_output, import, quantize_input, ImportOptions, Imported};
use opml_lowering::{Artifact, LowerError};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

mod common;
use common::onnx::*;
use common::Rng;

const SEQ: usize = 16;
const INP: usize = 8;
const HID: usize = 32;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/lstm")
        .join(name)
}

fn npy(name: &str) -> Vec<f32> {
    let file = std::fs::File::open(fixture(name)).unwrap();
    npyz::NpyFile::new(std::io::BufReader::new(file))
        .unwrap()
        .into_vec::<f32>()
        .unwrap()
}

/// The 16 committed inputs `[SEQ, 1, INP]`.
fn inputs() -> Vec<Vec<f32>> {
    let all = npy("inputs.npy");
    assert_eq!(all.len(), 16 * SEQ * INP);
    all.chunks(SEQ * INP).map(|c| c.to_vec()).collect()
}

/// Imports a fixture model calibrated on inputs 0..8.
fn import_fixture(model: &str) -> (Imported, Artifact) {
    let calibration = inputs()[..8].iter().map(|x| vec![x.clone()]).collect();
    let opts = ImportOptions {
        calibration: Some(calibration),
        ..Default::default()
    };
    let imp = import(&fixture(model), &opts).unwrap();
    let a = Artifact::build(imp.program.clone(), CodegenOptions::default()).unwrap();
    (imp, a)
}

/// Every output of one native run, dequantized.
fn run_all(a: &Artifact, imp: &Imported, x: &[f32]) -> Vec<Vec<f32>> {
    let run = a.run_native(&[quantize_input(imp, 0, x).unwrap()]).unwrap();
    (0..a.program.outputs.len())
        .map(|i| dequantize_output(imp, i, a.output(&run, a.program.outputs[i])).unwrap())
        .collect()
}

/// Max absolute error and relative RMS error (`|q - r|_2 / |r|_2`).
#[derive(Default, Clone, Copy, Debug)]
struct Err2 {
    max: f64,
    diff2: f64,
    ref2: f64,
}

impl Err2 {
    fn add(&mut self, q: &[f32], r: &[f32]) {
        assert_eq!(q.len(), r.len());
        for (a, b) in q.iter().zip(r) {
            let d = f64::from(a - b);
            self.max = self.max.max(d.abs());
            self.diff2 += d * d;
            self.ref2 += f64::from(*b) * f64::from(*b);
        }
    }
    fn rel_rms(&self) -> f64 {
        (self.diff2 / self.ref2).sqrt()
    }
}

/// Compares every output with onnxruntime's on the 8 held-out inputs
/// (8..16) and checks both engines on two of them.
fn check_fixture(model: &str, outputs: &[(&str, usize)], floors: &[(f64, f64)]) {
    let (imp, a) = import_fixture(model);
    let xs = inputs();
    let refs: Vec<Vec<f32>> = outputs
        .iter()
        .map(|(n, len)| {
            let r = npy(&format!("ref_{}_{n}.npy", model.trim_end_matches(".onnx")));
            assert_eq!(r.len(), 16 * len);
            r
        })
        .collect();
    let mut errs = vec![Err2::default(); outputs.len()];
    for (s, x) in xs.iter().enumerate().skip(8) {
        let q = run_all(&a, &imp, x);
        for (o, (_, len)) in outputs.iter().enumerate() {
            errs[o].add(&q[o], &refs[o][s * len..(s + 1) * len]);
        }
    }
    for ((name, _), e) in outputs.iter().zip(&errs) {
        println!(
            "{model} {name}: max |q - ort| = {:.4}, relative RMS = {:.4}",
            e.max,
            e.rel_rms()
        );
    }
    for (e, (max, rms)) in errs.iter().zip(floors) {
        assert!(e.max < *max && e.rel_rms() < *rms, "{e:?}");
    }
    for x in &xs[8..10] {
        let input = vec![quantize_input(&imp, 0, x).unwrap()];
        assert_eq!(
            a.run_wasm(&input).unwrap().roots(),
            a.run_native(&input).unwrap().roots()
        );
    }
    let fuel = a.nodes.last().map_or(0, |n| n.end_fuel);
    println!(
        "{model}: {} IR nodes, {} steps, {fuel} fuel, module {} B",
        a.program.nodes.len(),
        a.nodes.last().map_or(0, |n| n.end_step),
        a.generated.wasm.len()
    );
}

/// The sequence classifier: LSTM (no initial state) and a Gemm head on
/// `Y_h`; outputs logits, `Y`, `Y_c`.
#[test]
fn lstm_classifier_matches_onnxruntime_on_both_engines() {
    let (imp, _) = import_fixture("model.onnx");
    let count = |k: &str| imp.report.ir_nodes.iter().filter(|(_, o)| o == k).count();
    // Per timestep: 4 recurrent products (none at t = 0), 4 sums (none at
    // t = 0), 5 tables, 3 products (2 at t = 0), 1 cell sum (none at t = 0);
    // plus 4 input projections and the head.
    assert_eq!(count("matmul"), 4 + 4 * (SEQ - 1) + 1);
    assert_eq!(count("add"), 5 * (SEQ - 1));
    assert_eq!(count("lut"), 5 * SEQ);
    assert_eq!(count("channel_mul"), 3 * SEQ - 1);
    assert_eq!(imp.report.ir_nodes.len(), 5 + 17 * SEQ - 10);
    check_fixture(
        "model.onnx",
        &[("logits", 4), ("Y", SEQ * HID), ("Y_c", HID)],
        &[(0.02, 0.04), (0.1, 0.05), (0.1, 0.05)],
    );
}

/// Constant initial `h` and `c`; outputs `Y`, `Y_h`, `Y_c`.
#[test]
fn lstm_with_initial_state_matches_onnxruntime() {
    check_fixture(
        "model_init.onnx",
        &[("Y", SEQ * HID), ("Y_h", HID), ("Y_c", HID)],
        &[(0.15, 0.05), (0.06, 0.05), (0.1, 0.05)],
    );
}

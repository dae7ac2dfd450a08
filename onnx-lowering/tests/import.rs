//! ONNX import: the digits CNN end to end (accuracy against onnxruntime,
//! both engines, reproducibility), small hand-written ONNX models for the
//! MatMul, Add and table paths, and hostile or unsupported files.

use opml_lowering::codegen::CodegenOptions;
use opml_lowering::import::{dequantize_output, import, quantize_input, ImportOptions, Imported};
use opml_lowering::{Artifact, LowerError};
use std::path::{Path, PathBuf};

mod common;
use common::onnx::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/digits_cnn")
        .join(name)
}

fn digits() -> (Vec<f32>, Vec<f32>) {
    let mut npz = npyz::npz::NpzArchive::open(fixture("digits.npz")).unwrap();
    let images = npz
        .by_name("images")
        .unwrap()
        .unwrap()
        .into_vec::<f32>()
        .unwrap();
    let file = std::fs::File::open(fixture("reference_logits.npy")).unwrap();
    let logits = npyz::NpyFile::new(std::io::BufReader::new(file))
        .unwrap()
        .into_vec::<f32>()
        .unwrap();
    assert_eq!((images.len(), logits.len()), (1797 * 64, 1797 * 10));
    (images, logits)
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}

fn run(a: &Artifact, imp: &Imported, x: &[f32]) -> Vec<f32> {
    let run = a.run_native(&[quantize_input(imp, 0, x).unwrap()]).unwrap();
    dequantize_output(imp, 0, a.output(&run, a.program.outputs[0])).unwrap()
}

fn digits_import(calibration: Option<usize>) -> (Imported, Artifact) {
    let (images, _) = digits();
    let opts = ImportOptions {
        calibration: calibration.map(|n| {
            images
                .chunks(64)
                .take(n)
                .map(|x| vec![x.to_vec()])
                .collect()
        }),
        ..Default::default()
    };
    let imp = import(&fixture("model.onnx"), &opts).unwrap();
    let a = Artifact::build(imp.program.clone(), CodegenOptions::default()).unwrap();
    (imp, a)
}

/// Top-1 agreement with the onnxruntime logits over all 1797 images.
fn agreement(imp: &Imported, a: &Artifact) -> f64 {
    let (images, logits) = digits();
    let agree = images
        .chunks(64)
        .zip(logits.chunks(10))
        .filter(|(x, l)| argmax(&run(a, imp, x)) == argmax(l))
        .count();
    agree as f64 / 1797.0
}

#[test]
fn digits_cnn_matches_onnxruntime() {
    let (imp, a) = digits_import(Some(64));
    let kinds: Vec<&str> = imp
        .report
        .ir_nodes
        .iter()
        .map(|(_, k)| k.as_str())
        .collect();
    assert_eq!(
        kinds,
        ["conv", "maxpool", "conv", "maxpool", "matmul"],
        "{:?}",
        imp.report
    );
    assert_eq!(imp.report.parameters, 1898);
    assert_eq!(imp.report.onnx_ops.get("Conv"), Some(&2));
    assert_eq!(imp.report.onnx_ops.get("Gemm"), Some(&1));
    assert_eq!(imp.report.calibration_samples, 64);
    let agree = agreement(&imp, &a);
    println!(
        "digits: top-1 agreement with onnxruntime {:.2} % (64 calibration images)",
        100.0 * agree
    );
    println!("report: {}", serde_json::to_string(&imp.report).unwrap());
    assert!(agree >= 0.995, "agreement {agree}");

    // The float plan reproduces onnxruntime; both engines agree at every
    // node boundary.
    let (images, logits) = digits();
    for (x, l) in images.chunks(64).zip(logits.chunks(10)).step_by(97) {
        for (p, r) in plan_f64(&fixture("model.onnx"), x).iter().zip(l) {
            assert!((p - r).abs() < 1e-4, "float plan {p} vs onnxruntime {r}");
        }
    }
    for x in images.chunks(64).step_by(450) {
        let input = vec![quantize_input(&imp, 0, x).unwrap()];
        let (w, n) = (a.run_wasm(&input).unwrap(), a.run_native(&input).unwrap());
        assert_eq!(w.roots(), n.roots());
        assert_eq!(w.memory, n.memory);
    }
}

#[test]
fn digits_cnn_with_default_calibration() {
    let (imp, a) = digits_import(None);
    assert_eq!(imp.report.calibration_samples, 8);
    let agree = agreement(&imp, &a);
    println!(
        "digits: top-1 agreement {:.2} % with the default calibration",
        100.0 * agree
    );
    assert!(agree >= 0.95, "agreement {agree}");
}

#[test]
fn import_is_reproducible() {
    let (i1, a1) = digits_import(Some(8));
    let (i2, a2) = digits_import(Some(8));
    assert_eq!(i1.program, i2.program);
    assert_eq!(a1.wasm(), a2.wasm());
    let (_, d1) = digits_import(None);
    let (_, d2) = digits_import(None);
    assert_eq!(d1.wasm(), d2.wasm());
}

// ---- hand-written ONNX models (writer in tests/common/onnx.rs) ----------

/// Deterministic values in [-1, 1).
fn values(seed: u32, n: usize) -> Vec<f32> {
    (0..n as u32)
        .map(|i| {
            ((i.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)) % 2000) as f32 / 1000.0
                - 1.0
        })
        .collect()
}

fn gemm(x: &[f32], w: &[f32], b: &[f32], n: usize, transposed: bool) -> Vec<f32> {
    let k = x.len();
    (0..n)
        .map(|j| {
            b[j] + (0..k)
                .map(|i| {
                    x[i] * if transposed {
                        w[j * k + i]
                    } else {
                        w[i * n + j]
                    }
                })
                .sum::<f32>()
        })
        .collect()
}

/// `y = sigmoid(Gemm(relu(Gemm(x, W1^T) + x'), W2))` on `[1, 16]`, where
/// `x' = Gemm(x, W3^T)`: MatMul (both weight layouts), Add of two
/// activations with a fused ReLU, and a table.
#[test]
fn mlp_with_residual_and_sigmoid() {
    let (w1, b1, w3, w2, b2) = (
        values(1, 16 * 16),
        values(2, 16),
        values(3, 16 * 16),
        values(4, 16 * 4),
        values(5, 4),
    );
    let bytes = model(
        vec![
            node(
                "Gemm",
                "fc1",
                &["x", "w1", "b1"],
                &["h1"],
                &[("transB", I(1))],
            ),
            node(
                "Gemm",
                "fc3",
                &["x", "w3", "b1"],
                &["h3"],
                &[("transB", I(1))],
            ),
            node("Add", "res", &["h1", "h3"], &["s"], &[]),
            node("Relu", "relu", &["s"], &["r"], &[]),
            node("Gemm", "fc2", &["r", "w2", "b2"], &["z"], &[]),
            node("Sigmoid", "sig", &["z"], &["y"], &[]),
        ],
        vec![
            initializer("w1", &[16, 16], &w1),
            initializer("b1", &[16], &b1),
            initializer("w3", &[16, 16], &w3),
            initializer("w2", &[16, 4], &w2),
            initializer("b2", &[4], &b2),
        ],
        vec![value_info("x", &[1, 16])],
        vec![value_info("y", &[1, 4])],
    );
    let path = write_model("mlp.onnx", &bytes);
    let samples: Vec<Vec<Vec<f32>>> = (0..32).map(|s| vec![values(100 + s, 16)]).collect();
    let opts = ImportOptions {
        calibration: Some(samples),
        ..Default::default()
    };
    let imp = import(&path, &opts).unwrap();
    let kinds: Vec<&str> = imp
        .report
        .ir_nodes
        .iter()
        .map(|(_, k)| k.as_str())
        .collect();
    assert_eq!(
        kinds,
        ["matmul", "matmul", "add", "matmul", "lut"],
        "{:?}",
        imp.report.ir_nodes
    );
    assert_eq!(imp.report.parameters, 16 * 16 * 2 + 16 + 64 + 4);
    let a = Artifact::build(imp.program.clone(), CodegenOptions::default()).unwrap();
    let mut worst = 0.0f32;
    for s in 0..16 {
        let x = values(200 + s, 16);
        let h1 = gemm(&x, &w1, &b1, 16, true);
        let h3 = gemm(&x, &w3, &b1, 16, true);
        let r: Vec<f32> = h1.iter().zip(&h3).map(|(a, b)| (a + b).max(0.0)).collect();
        let y: Vec<f32> = gemm(&r, &w2, &b2, 4, false)
            .iter()
            .map(|z| 1.0 / (1.0 + (-z).exp()))
            .collect();
        let q = run(&a, &imp, &x);
        worst = y
            .iter()
            .zip(&q)
            .fold(worst, |m, (a, b)| m.max((a - b).abs()));
        let input = vec![quantize_input(&imp, 0, &x).unwrap()];
        assert_eq!(
            a.run_wasm(&input).unwrap().roots(),
            a.run_native(&input).unwrap().roots()
        );
    }
    println!("mlp: max |y - y_f32| = {worst}");
    assert!(worst < 0.05, "{worst}");
}

/// The f32 outputs of tract's own run of the model at `path`.
fn tract_f32(path: &Path, shape: &[usize], x: &[f32]) -> Vec<f32> {
    use tract_onnx::prelude::*;
    let model = tract_onnx::onnx().model_for_path(path).unwrap();
    let model = model.into_optimized().unwrap().into_runnable().unwrap();
    let input = Tensor::from_shape(shape, x).unwrap().into_tvalue();
    let out = model.run(tvec!(input)).unwrap();
    out[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

/// The float plan's outputs (the analysis without quantization).
fn plan_f64(path: &Path, x: &[f32]) -> Vec<f32> {
    use opml_lowering::import::{analyze, calibrate, load};
    let loaded = load::load(path, &[]).unwrap();
    let plan = analyze::analyze(&loaded.model).unwrap();
    let out = calibrate::evaluate(&plan, &[x.to_vec()]).unwrap();
    out[0].iter().map(|v| *v as f32).collect()
}

/// Grouped strided conv, BatchNormalization, ReLU, padded max pool, a
/// SAME-padded conv, a residual sum, tanh, global average pooling,
/// flatten and Gemm, against tract's f32 run.
#[test]
fn small_cnn_matches_tract() {
    let f = |seed, n| values(seed, n);
    let var: Vec<f32> = f(15, 6).iter().map(|v| v.abs() + 0.5).collect();
    let bytes = model(
        vec![
            node(
                "Conv",
                "c1",
                &["x", "w1", "b1"],
                &["c1"],
                &[
                    ("group", I(3)),
                    ("strides", Is(&[2, 2])),
                    ("pads", Is(&[1, 1, 1, 1])),
                ],
            ),
            node(
                "BatchNormalization",
                "bn",
                &["c1", "g", "b", "mu", "var"],
                &["bn"],
                &[],
            ),
            node("Relu", "r1", &["bn"], &["r1"], &[]),
            node(
                "MaxPool",
                "p1",
                &["r1"],
                &["p1"],
                &[
                    ("kernel_shape", Is(&[3, 3])),
                    ("strides", Is(&[2, 2])),
                    ("pads", Is(&[1, 1, 1, 1])),
                ],
            ),
            node(
                "Conv",
                "c2",
                &["p1", "w2", "b2"],
                &["c2"],
                &[("auto_pad", S("SAME_UPPER"))],
            ),
            node("Add", "res", &["c2", "p1"], &["s"], &[]),
            node("Tanh", "t", &["s"], &["t"], &[]),
            node("GlobalAveragePool", "gap", &["t"], &["gp"], &[]),
            node("Flatten", "flat", &["gp"], &["fl"], &[]),
            node(
                "Gemm",
                "fc",
                &["fl", "w3", "b3"],
                &["y"],
                &[("transB", I(1))],
            ),
        ],
        vec![
            initializer("w1", &[6, 1, 3, 3], &f(11, 54)),
            initializer("b1", &[6], &f(12, 6)),
            initializer("g", &[6], &f(13, 6)),
            initializer("b", &[6], &f(14, 6)),
            initializer("mu", &[6], &f(16, 6)),
            initializer("var", &[6], &var),
            initializer("w2", &[6, 6, 3, 3], &f(17, 324)),
            initializer("b2", &[6], &f(18, 6)),
            initializer("w3", &[4, 6], &f(19, 24)),
            initializer("b3", &[4], &f(20, 4)),
        ],
        vec![value_info("x", &[1, 3, 12, 12])],
        vec![value_info("y", &[1, 4])],
    );
    let path = write_model("cnn.onnx", &bytes);
    let image = |s: u32| {
        f(300 + s, 432)
            .iter()
            .map(|v| (v + 1.0) / 2.0)
            .collect::<Vec<f32>>()
    };
    let opts = ImportOptions {
        calibration: Some((0..16).map(|s| vec![image(s)]).collect()),
        ..Default::default()
    };
    let imp = import(&path, &opts).unwrap();
    let kinds: Vec<&str> = imp
        .report
        .ir_nodes
        .iter()
        .map(|(_, k)| k.as_str())
        .collect();
    assert_eq!(
        kinds,
        ["conv", "maxpool", "conv", "add", "lut", "matmul", "matmul"],
        "{:?}",
        imp.report
    );
    let a = Artifact::build(imp.program.clone(), CodegenOptions::default()).unwrap();
    let mut worst = 0.0f32;
    for s in 16..32 {
        let x = image(s);
        let want = tract_f32(&path, &[1, 3, 12, 12], &x);
        let got = run(&a, &imp, &x);
        let range = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (p, w) in plan_f64(&path, &x).iter().zip(&want) {
            assert!((p - w).abs() < 1e-5 * range, "float plan {p} vs tract {w}");
        }
        worst = want
            .iter()
            .zip(&got)
            .fold(worst, |m, (w, g)| m.max((w - g).abs() / range));
        let input = vec![quantize_input(&imp, 0, &x).unwrap()];
        assert_eq!(
            a.run_wasm(&input).unwrap().roots(),
            a.run_native(&input).unwrap().roots()
        );
    }
    println!("small cnn: max |y - y_tract| / max |y_tract| = {worst}");
    assert!(worst < 0.05, "{worst}");
}

/// A pointwise (1x1) conv, a squeeze-and-excitation gate (global average
/// pool, sigmoid, per-channel product), pooling, Gemm and Softmax over the
/// last axis, against tract's f32 run.
#[test]
fn pointwise_conv_gate_and_softmax_match_tract() {
    let f = |seed, n| values(seed, n);
    let bytes = model(
        vec![
            node("Conv", "c1", &["x", "w1", "b1"], &["c1"], &[]),
            node("GlobalAveragePool", "gap1", &["c1"], &["gp1"], &[]),
            node("Sigmoid", "gate", &["gp1"], &["g"], &[]),
            node("Mul", "se", &["c1", "g"], &["m"], &[]),
            node("GlobalAveragePool", "gap2", &["m"], &["gp2"], &[]),
            node("Flatten", "flat", &["gp2"], &["fl"], &[]),
            node(
                "Gemm",
                "fc",
                &["fl", "w2", "b2"],
                &["logits"],
                &[("transB", I(1))],
            ),
            node("Softmax", "sm", &["logits"], &["y"], &[("axis", I(-1))]),
        ],
        vec![
            initializer("w1", &[8, 4, 1, 1], &f(41, 32)),
            initializer("b1", &[8], &f(42, 8)),
            initializer(
                "w2",
                &[5, 8],
                &f(43, 40).iter().map(|v| 4.0 * v).collect::<Vec<_>>(),
            ),
            initializer("b2", &[5], &f(44, 5)),
        ],
        vec![value_info("x", &[1, 4, 6, 8])],
        vec![value_info("y", &[1, 5])],
    );
    let path = write_model("se_softmax.onnx", &bytes);
    let image = |s: u32| f(500 + s, 192);
    let opts = ImportOptions {
        calibration: Some((0..16).map(|s| vec![image(s)]).collect()),
        ..Default::default()
    };
    let imp = import(&path, &opts).unwrap();
    let kinds: Vec<&str> = imp
        .report
        .ir_nodes
        .iter()
        .map(|(_, k)| k.as_str())
        .collect();
    assert!(
        kinds.contains(&"channel_mul") && kinds.last() == Some(&"softmax"),
        "{kinds:?}"
    );
    assert!(
        !kinds.contains(&"conv"),
        "the 1x1 conv is a matmul: {kinds:?}"
    );
    let a = Artifact::build(imp.program.clone(), CodegenOptions::default()).unwrap();
    let mut worst = 0.0f32;
    for s in 16..32 {
        let x = image(s);
        let want = tract_f32(&path, &[1, 4, 6, 8], &x);
        for (p, w) in plan_f64(&path, &x).iter().zip(&want) {
            assert!((p - w).abs() < 1e-5, "float plan {p} vs tract {w}");
        }
        let got = run(&a, &imp, &x);
        worst = want
            .iter()
            .zip(&got)
            .fold(worst, |m, (w, g)| m.max((w - g).abs()));
        let input = vec![quantize_input(&imp, 0, &x).unwrap()];
        assert_eq!(
            a.run_wasm(&input).unwrap().roots(),
            a.run_native(&input).unwrap().roots()
        );
    }
    println!("gate + softmax: max |p - p_tract| = {worst}");
    assert!(worst < 0.05, "{worst}");
}

/// GlobalMaxPool (a max pool over a `[C, 1, H*W]` view) builds and runs:
/// the pooling view is given the batch axis the IR's max pool takes.
#[test]
fn global_max_pool_builds_and_runs() {
    {
        let bytes = model(
            vec![node("GlobalMaxPool", "gmp", &["x"], &["y"], &[])],
            vec![],
            vec![value_info("x", &[1, 3, 4, 5])],
            vec![value_info("y", &[1, 3, 1, 1])],
        );
        let path = write_model("gmp.onnx", &bytes);
        let imp = import(&path, &ImportOptions::default()).unwrap();
        let a = Artifact::build(imp.program.clone(), CodegenOptions::default()).unwrap();
        let x: Vec<f32> = (0..60).map(|i| ((i * 37) % 60) as f32 / 60.0).collect();
        let input = vec![quantize_input(&imp, 0, &x).unwrap()];
        assert_eq!(
            a.run_wasm(&input).unwrap().roots(),
            a.run_native(&input).unwrap().roots()
        );
        let got = run(&a, &imp, &x);
        for (c, g) in got.iter().enumerate() {
            let want = x[c * 20..(c + 1) * 20]
                .iter()
                .fold(0.0f32, |m, v| m.max(*v));
            assert!((g - want).abs() < 0.01, "channel {c}: {g} vs {want}");
        }
    }
}

/// GELU written out with Erf is one table; a transpose is unsupported.
#[test]
fn gelu_is_one_table() {
    let bytes = model(
        vec![
            node("Div", "d", &["x", "sqrt2"], &["t"], &[]),
            node("Erf", "erf", &["t"], &["e"], &[]),
            node("Add", "a", &["e", "one"], &["u"], &[]),
            node("Mul", "m", &["x", "u"], &["v"], &[]),
            node("Mul", "h", &["v", "half"], &["y"], &[]),
        ],
        vec![
            initializer("sqrt2", &[], &[std::f32::consts::SQRT_2]),
            initializer("one", &[], &[1.0]),
            initializer("half", &[], &[0.5]),
        ],
        vec![value_info("x", &[1, 64])],
        vec![value_info("y", &[1, 64])],
    );
    let path = write_model("gelu.onnx", &bytes);
    let x: Vec<f32> = (0..64).map(|i| i as f32 / 8.0 - 4.0).collect();
    let opts = ImportOptions {
        calibration: Some(vec![vec![x.clone()]]),
        ..Default::default()
    };
    let imp = import(&path, &opts).unwrap();
    assert_eq!(imp.report.ir_nodes.len(), 1, "{:?}", imp.report.ir_nodes);
    assert_eq!(imp.report.ir_nodes[0].1, "lut");
    let a = Artifact::build(imp.program.clone(), CodegenOptions::default()).unwrap();
    let y = run(&a, &imp, &x);
    let step = imp.program.tensors[imp.program.outputs[0]].scale().unwrap();
    for (x, y) in x.iter().zip(&y) {
        let exact =
            0.5 * f64::from(*x) * (1.0 + libm_free_erf(f64::from(*x) / std::f64::consts::SQRT_2));
        assert!(
            (f64::from(*y) - exact).abs() < 0.04 + f64::from(step),
            "gelu({x}) = {y}, want {exact}"
        );
    }
}

/// erf by its Taylor series, good to 1e-9 on |x| < 3.
fn libm_free_erf(x: f64) -> f64 {
    let (mut term, mut sum) = (x, x);
    for n in 1..200 {
        term *= -x * x / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    sum * std::f64::consts::FRAC_2_SQRT_PI
}

/// An `int64` initializer.
fn int64s(name: &str, shape: &[i64], data: &[i64]) -> Pb {
    let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let t = shape.iter().fold(Pb::new(), |t, d| t.int(1, *d));
    t.int(2, 7).str(8, name).bytes(9, &raw)
}

#[test]
fn unsupported_ops_are_named() {
    // A minimum reduction (no integer lowering).
    let softmax = model(
        vec![node(
            "ReduceMin",
            "probabilities",
            &["x"],
            &["y"],
            &[("axes", Is(&[2])), ("keepdims", I(1))],
        )],
        vec![],
        vec![value_info("x", &[1, 4, 6])],
        vec![value_info("y", &[1, 4, 1])],
    );
    match import(
        &write_model("softmax.onnx", &softmax),
        &ImportOptions::default(),
    ) {
        Err(LowerError::Unsupported { node, op, reason }) => {
            assert!(node.starts_with("probabilities"), "{node} {op} {reason}");
            println!("unsupported: {node} ({op}): {reason}");
        }
        other => panic!("expected Unsupported, got {:?}", other.map(|i| i.report)),
    }
    // A slice with a negative step over more than 1024 elements (one
    // piece per element; Transpose, Softmax over a middle axis and the
    // other general ops: tests/import_general.rs).
    let transpose = model(
        vec![
            node("Slice", "tr", &["x", "st", "en", "ax", "sp"], &["t"], &[]),
            node("Sigmoid", "s", &["t"], &["y"], &[]),
        ],
        vec![
            int64s("st", &[1], &[1099]),
            int64s("en", &[1], &[0]),
            int64s("ax", &[1], &[2]),
            int64s("sp", &[1], &[-1]),
        ],
        vec![value_info("x", &[1, 2, 1100])],
        vec![value_info("y", &[1, 2, 1099])],
    );
    match import(
        &write_model("transpose.onnx", &transpose),
        &ImportOptions::default(),
    ) {
        Err(LowerError::Unsupported { node, .. }) => assert!(node.starts_with("tr"), "{node}"),
        other => panic!("expected Unsupported, got {:?}", other.map(|i| i.report)),
    }
}

#[test]
fn hostile_files_are_errors() {
    let good = std::fs::read(fixture("model.onnx")).unwrap();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        (
            "garbage",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        ),
    ];
    for cut in [10, good.len() / 3, good.len() / 2, good.len() - 7] {
        cases.push(("truncated", good[..cut].to_vec()));
    }
    for (i, (what, bytes)) in cases.iter().enumerate() {
        let r = import(
            &write_model(&format!("bad{i}.onnx"), bytes),
            &ImportOptions::default(),
        );
        assert!(r.is_err(), "{what} file imported");
    }
    assert!(matches!(
        import(
            Path::new("/nonexistent/model.onnx"),
            &ImportOptions::default()
        ),
        Err(LowerError::Io(_))
    ));
    // Bad options: an unknown input name, a calibration sample of the wrong size.
    let opts = ImportOptions {
        input_shapes: vec![("nope".into(), vec![1, 1, 8, 8])],
        ..Default::default()
    };
    assert!(import(&fixture("model.onnx"), &opts).is_err());
    let opts = ImportOptions {
        calibration: Some(vec![vec![vec![0.5; 63]]]),
        ..Default::default()
    };
    assert!(matches!(
        import(&fixture("model.onnx"), &opts),
        Err(LowerError::BadInput(_))
    ));
}

/// Randomly corrupted copies of the digits model and of two of its
/// pre-quantized variants (QOperator and dynamic, rewritten on the protobuf
/// before tract reads them) import or fail, never crash (tract panics on
/// some of them: those are caught and reported).
#[test]
fn corrupted_files_never_panic() {
    let prequantized = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/prequantized");
    for model in [
        fixture("model.onnx"),
        prequantized.join("model_qop.onnx"),
        prequantized.join("model_dynamic.onnx"),
    ] {
        let good = std::fs::read(&model).unwrap();
        let mut state = 12345u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            state >> 20
        };
        let (mut ok, mut failed) = (0, 0);
        for i in 0..64 {
            let mut bytes = good.clone();
            for _ in 0..1 + i % 4 {
                let pos = next() as usize % bytes.len();
                bytes[pos] = next() as u8;
            }
            match import(
                &write_model(&format!("corrupt{}.onnx", i % 4), &bytes),
                &ImportOptions::default(),
            ) {
                Ok(_) => ok += 1,
                Err(_) => failed += 1,
            }
        }
        println!(
            "{}: corrupted files: {ok} imported, {failed} rejected",
            model.display()
        );
        assert!(failed > 0);
    }
}

fn ocr_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/third_party")
        .join(name)
}

fn npy_f32(path: &Path) -> Vec<f32> {
    let file = std::fs::File::open(path).unwrap();
    npyz::NpyFile::new(std::io::BufReader::new(file))
        .unwrap()
        .into_vec::<f32>()
        .unwrap()
}

/// The third-party PaddleOCR text-direction classifier (MobileNetV3-small:
/// 1x1 convs as strided matmuls, squeeze-and-excitation gates as
/// `channel_mul`, hard-swish as tables, the softmax head as `softmax`)
/// lowers completely; calibrated on its 4 committed inputs, both engines
/// agree node by node and the integer model predicts the expected label
/// of every input.
#[test]
fn third_party_ocr_model_lowers_and_predicts_the_expected_labels() {
    let cases: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ocr_fixture("cases.json")).unwrap()).unwrap();
    let labels: Vec<String> = cases["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    let inputs: Vec<Vec<f32>> = (0..4)
        .map(|i| npy_f32(&ocr_fixture(&format!("input_{i}.npy"))))
        .collect();
    let opts = ImportOptions {
        input_shapes: vec![("x".into(), vec![1, 3, 48, 192])],
        calibration: Some(inputs.iter().map(|x| vec![x.clone()]).collect()),
    };
    let imp = import(&ocr_fixture("ch_ppocr_mobile_v2.0_cls_infer.onnx"), &opts).unwrap();
    let kinds: Vec<&str> = imp.program.nodes.iter().map(|n| n.op.kind()).collect();
    for k in ["channel_mul", "softmax", "matmul", "conv"] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    let a = Artifact::build(imp.program.clone(), CodegenOptions::default()).unwrap();
    let x0 = quantize_input(&imp, 0, &inputs[0]).unwrap();
    let wasm = a.run_wasm(std::slice::from_ref(&x0)).unwrap();
    let native = a.run_native(std::slice::from_ref(&x0)).unwrap();
    assert_eq!(wasm.roots(), native.roots());
    assert_eq!(wasm.last(), native.last());
    // The claim's fast path: one tree update at the end, the same state.
    // After a run on another input, so that the recycled image is used.
    let x1 = quantize_input(&imp, 0, &inputs[1]).unwrap();
    let (_, other) = a.run_native_final(std::slice::from_ref(&x1)).unwrap();
    assert_eq!(other, a.run_native(&[x1]).unwrap().last());
    let (outputs, last) = a.run_native_final(&[x0]).unwrap();
    assert_eq!(last, native.last());
    assert_eq!(outputs[0], a.output(&native, a.program.outputs[0]));
    for (i, x) in inputs.iter().enumerate() {
        let case = &cases["cases"][i];
        let expected = case["expected_label"].as_str().unwrap();
        let reference = npy_f32(&ocr_fixture(&format!("output_{i}.npy")));
        let probs = run(&a, &imp, x);
        println!("input {i}: integer {probs:?}, onnxruntime {reference:?}, expected {expected}");
        assert_eq!(labels[argmax(&probs)], expected, "input {i}");
        assert_eq!(argmax(&probs), argmax(&reference), "input {i}");
        for (p, r) in probs.iter().zip(&reference) {
            assert!(
                (p - r).abs() <= 2.0 / 127.0,
                "input {i}: {probs:?} vs {reference:?}"
            );
        }
    }
}

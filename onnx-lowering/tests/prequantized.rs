//! Already-quantized ONNX models (`fixtures/prequantized`, made from the
//! digits CNN by onnxruntime's quantization tools): each variant lowers
//! with the model's own scales and int8 weights, agrees with onnxruntime's
//! output of the quantized model, and runs identically on both engines;
//! malformed quantization parameters are `Unsupported` naming the node.

use opml_lowering::codegen::CodegenOptions;
use opml_lowering::import::{dequantize_output, import, quantize_input, ImportOptions, Imported};
use opml_lowering::ir::{Program, TensorKind};
use opml_lowering::{Artifact, LowerError};
use std::path::{Path, PathBuf};
use tract_onnx::prelude::Framework;

mod common;
use common::onnx::*;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/prequantized")
}

fn images() -> Vec<f32> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/digits_cnn/digits.npz");
    let mut npz = npyz::npz::NpzArchive::open(p).unwrap();
    let v = npz.by_name("images").unwrap().unwrap();
    let images = v.into_vec::<f32>().unwrap();
    assert_eq!(images.len(), 1797 * 64);
    images
}

/// onnxruntime's top-1 class of every image for `variant`.
fn reference(variant: &str) -> Vec<u8> {
    let mut npz = npyz::npz::NpzArchive::open(dir().join("references.npz")).unwrap();
    let v = npz.by_name(variant).unwrap().unwrap();
    let top1 = v.into_vec::<u8>().unwrap();
    assert_eq!(top1.len(), 1797);
    top1
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}

/// Imports `model_{variant}.onnx`, calibrating on the first `calibration`
/// images (`None`: the default samples; the QDQ and QOperator models need
/// none for their quantized tensors).
fn lower(variant: &str, calibration: Option<usize>) -> (Imported, Artifact) {
    let opts = ImportOptions {
        calibration: calibration.map(|n| {
            images()
                .chunks(64)
                .take(n)
                .map(|x| vec![x.to_vec()])
                .collect()
        }),
        ..Default::default()
    };
    let path = dir().join(format!("model_{variant}.onnx"));
    let imp = import(&path, &opts).unwrap_or_else(|e| panic!("{variant}: {e}"));
    let a = Artifact::build(imp.program.clone(), CodegenOptions::default()).unwrap();
    (imp, a)
}

/// Top-1 agreement with onnxruntime's output of the quantized model over
/// all 1797 images (native engine).
fn agreement(variant: &str, imp: &Imported, a: &Artifact) -> f64 {
    let refs = reference(variant);
    let agree = images()
        .chunks(64)
        .zip(&refs)
        .filter(|(x, r)| {
            let run = a.run_native(&[quantize_input(imp, 0, x).unwrap()]).unwrap();
            let out = dequantize_output(imp, 0, a.output(&run, a.program.outputs[0])).unwrap();
            argmax(&out) == usize::from(**r)
        })
        .count();
    let pct = 100.0 * agree as f64 / 1797.0;
    println!("{variant}: top-1 agreement with onnxruntime {agree}/1797 = {pct:.2} %");
    pct
}

/// Both engines give the same root at every node boundary.
fn engines_agree(imp: &Imported, a: &Artifact) {
    let last = a.nodes.last().unwrap();
    println!(
        "{} IR nodes, {} steps, {} fuel, module {} B",
        a.nodes.len(),
        last.end_step,
        last.end_fuel,
        a.wasm().len()
    );
    for x in images().chunks(64).step_by(599) {
        let input = vec![quantize_input(imp, 0, x).unwrap()];
        let (w, n) = (a.run_wasm(&input).unwrap(), a.run_native(&input).unwrap());
        assert_eq!(w.roots().len(), a.nodes.len() + 1);
        assert_eq!(w.roots(), n.roots(), "node-boundary roots differ");
    }
}

/// The int8 values of initializer `name` of the ONNX file.
fn initializer_i8(path: &Path, name: &str) -> Vec<i8> {
    let proto = tract_onnx::onnx().proto_model_for_path(path).unwrap();
    let t = proto
        .graph
        .unwrap()
        .initializer
        .into_iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no initializer {name}"));
    assert_eq!(t.data_type, 3, "{name} is int8");
    if t.raw_data.is_empty() {
        t.int32_data.iter().map(|v| *v as i8).collect()
    } else {
        t.raw_data.iter().map(|b| *b as i8).collect()
    }
}

/// The bytes of the constant tensor `name` of the program, as `i8`.
fn constant_i8(p: &Program, name: &str) -> Vec<i8> {
    let id = p
        .tensors
        .iter()
        .position(|t| t.name == name && t.kind == TensorKind::Constant)
        .unwrap_or_else(|| panic!("no constant {name}"));
    let c = p.constants.iter().find(|c| c.tensor == id).unwrap();
    c.bytes.iter().map(|b| *b as i8).collect()
}

fn kinds(imp: &Imported) -> Vec<&str> {
    imp.report
        .ir_nodes
        .iter()
        .map(|(_, k)| k.as_str())
        .collect()
}

/// The activation scales of the QDQ model, as the file writes them.
const INPUT_SCALE: f32 = 0.007_874_016;
const CONV1_SCALE: f32 = 0.042_470_17;
const LOGITS_SCALE: f32 = 0.343_945_68;

#[test]
fn qdq_model_uses_its_own_scales_and_weights() {
    let (imp, a) = lower("qdq", None);
    println!("qdq: {:?}", imp.report.ir_nodes);
    // Each ReLU has its conv's scale: it is the conv's fused clamp.
    assert_eq!(
        kinds(&imp),
        ["conv", "maxpool", "conv", "maxpool", "matmul"]
    );
    let p = &imp.program;
    let scale = |t: usize| p.tensors[t].scale().unwrap();
    assert_eq!(scale(p.inputs[0]), INPUT_SCALE);
    assert_eq!(scale(p.outputs[0]), LOGITS_SCALE);
    let conv1 = p.tensors.iter().find(|t| t.name == "conv1").unwrap();
    assert_eq!(conv1.scale(), Some(CONV1_SCALE));
    let path = dir().join("model_qdq.onnx");
    for (ir, onnx) in [
        ("conv1.weight", "conv1_w_quantized"),
        ("conv2.weight", "conv2_w_quantized"),
        ("fc.ab+fc.weight", "fc_w_quantized"),
    ] {
        assert_eq!(constant_i8(p, ir), initializer_i8(&path, onnx), "{ir}");
    }
    let pct = agreement("qdq", &imp, &a);
    assert!(pct >= 99.0, "agreement {pct:.2} %");
    engines_agree(&imp, &a);
}

#[test]
fn qoperator_models_lower_through_qdq() {
    for variant in ["qop", "qop_mm"] {
        let (imp, a) = lower(variant, None);
        println!("{variant}: {:?}", imp.report.ir_nodes);
        let p = &imp.program;
        assert_eq!(p.tensors[p.inputs[0]].scale(), Some(INPUT_SCALE));
        let path = dir().join(format!("model_{variant}.onnx"));
        assert_eq!(
            constant_i8(p, "conv1_quant.weight"),
            initializer_i8(&path, "conv1_w_quantized")
        );
        let pct = agreement(variant, &imp, &a);
        assert!(pct >= 99.0, "{variant}: agreement {pct:.2} %");
        engines_agree(&imp, &a);
    }
}

/// The weight tensor of the IR node whose name starts with `prefix`.
fn weight_of(imp: &Imported, prefix: &str) -> Vec<i8> {
    let (name, _) = imp
        .report
        .ir_nodes
        .iter()
        .find(|(n, _)| n.starts_with(prefix))
        .unwrap_or_else(|| panic!("no IR node {prefix}"));
    constant_i8(&imp.program, &format!("{name}.weight"))
}

#[test]
fn dynamic_matmul_and_conv_integer_models_keep_their_int8_weights() {
    for (variant, convs) in [("dynamic", None), ("dynamic_conv", Some(2))] {
        let (imp, a) = lower(variant, Some(64));
        println!("{variant}: {:?}", imp.report.ir_nodes);
        assert_eq!(imp.report.onnx_ops.get("MatMulInteger"), Some(&1));
        assert_eq!(imp.report.onnx_ops.get("ConvInteger"), convs.as_ref());
        // The weight is stored [K, N] = [64, 10]; the IR keeps rows of N.
        let path = dir().join(format!("model_{variant}.onnx"));
        let w = initializer_i8(&path, "fc_w_Transposed_quantized");
        let transposed: Vec<i8> = (0..10)
            .flat_map(|n| (0..64).map(move |k| (n, k)))
            .map(|(n, k)| w[k * 10 + n])
            .collect();
        assert_eq!(weight_of(&imp, "fc_MatMul_quant"), transposed);
        if convs.is_some() {
            let w = initializer_i8(&path, "conv2_w_quantized");
            assert_eq!(weight_of(&imp, "conv2_quant"), w);
        }
        let pct = agreement(variant, &imp, &a);
        assert!(pct >= 99.0, "{variant}: agreement {pct:.2} %");
        engines_agree(&imp, &a);
    }
}

#[test]
fn cast_mul_weights_are_taken_as_they_are() {
    let (imp, a) = lower("castmul", Some(64));
    println!("castmul: {:?}", imp.report.ir_nodes);
    let path = dir().join("model_castmul.onnx");
    assert_eq!(
        constant_i8(&imp.program, "conv2+relu2.low.weight"),
        initializer_i8(&path, "conv2_w_q")
    );
    let pct = agreement("castmul", &imp, &a);
    assert!(pct >= 99.0, "agreement {pct:.2} %");
    engines_agree(&imp, &a);
}

#[test]
fn import_of_a_prequantized_model_is_reproducible() {
    let (i1, a1) = lower("qdq", None);
    let (i2, a2) = lower("qdq", None);
    assert_eq!(i1.program, i2.program);
    assert_eq!(a1.wasm(), a2.wasm());
}

// ---- malformed quantization parameters ---------------------------------

/// An initializer of ONNX type `dt` (3 int8, 2 uint8) with raw bytes.
fn int_initializer(name: &str, dt: i64, shape: &[i64], raw: &[u8]) -> Pb {
    let t = shape.iter().fold(Pb::new(), |t, d| t.int(1, *d));
    t.int(2, dt).str(8, name).bytes(9, raw)
}

/// `x [1, 4] -> QuantizeLinear(s, zp) -> DequantizeLinear(scale) -> Relu`,
/// with the zero point and the dequantize's scale input given.
fn qdq_model(zp: Pb, dq_scale: &str, extra_input: bool) -> PathBuf {
    let nodes = vec![
        node("QuantizeLinear", "q_x", &["x", "s", "zp"], &["xq"], &[]),
        node(
            "DequantizeLinear",
            "dq_x",
            &["xq", dq_scale, "zp"],
            &["xd"],
            &[],
        ),
        node("Relu", "relu", &["xd"], &["y"], &[]),
    ];
    let mut inputs = vec![value_info("x", &[1, 4])];
    if extra_input {
        inputs.push(value_info("t", &[1]));
    }
    let bytes = model(
        nodes,
        vec![initializer("s", &[], &[0.05]), zp],
        inputs,
        vec![value_info("y", &[1, 4])],
    );
    let name = format!("qdq_{}_{dq_scale}.onnx", extra_input as u8);
    write_model(&name, &bytes)
}

fn expect_unsupported(path: &Path, node: &str, why: &str) {
    match import(path, &ImportOptions::default()) {
        Err(LowerError::Unsupported {
            node: n, reason, ..
        }) => {
            assert_eq!(n, node, "{reason}");
            assert!(reason.contains(why), "{reason}");
        }
        other => panic!("expected Unsupported at {node}, got {other:?}"),
    }
}

#[test]
fn symmetric_qdq_pair_lowers() {
    let path = qdq_model(int_initializer("zp", 3, &[], &[0]), "s", false);
    let imp = import(&path, &ImportOptions::default()).unwrap();
    let p = &imp.program;
    assert_eq!(p.tensors[p.inputs[0]].scale(), Some(0.05));
    assert_eq!(kinds(&imp), ["lut"]);
    // uint8 with zero point 128 is the same integers shifted.
    let path = qdq_model(int_initializer("zp", 2, &[], &[128]), "s", false);
    let imp = import(&path, &ImportOptions::default()).unwrap();
    assert_eq!(
        imp.program.tensors[imp.program.inputs[0]].scale(),
        Some(0.05)
    );
}

#[test]
fn dequantize_with_a_non_constant_scale_is_unsupported() {
    let path = qdq_model(int_initializer("zp", 3, &[], &[0]), "t", true);
    expect_unsupported(&path, "dq_x", "scale that is not a constant");
}

#[test]
fn asymmetric_zero_points_are_unsupported() {
    let path = qdq_model(int_initializer("zp", 3, &[], &[5]), "s", false);
    expect_unsupported(&path, "q_x", "zero point 5");
    let path = qdq_model(int_initializer("zp", 2, &[], &[7]), "s", false);
    expect_unsupported(&path, "q_x", "zero point 7");
}

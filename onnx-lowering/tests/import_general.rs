//! Import of the general-purpose ops on small hand-built ONNX models:
//! Transpose, Slice (steps), Split, Concat (inputs of different scales),
//! Pad, Expand, Gather / GatherND of activations, Softmax over a middle
//! axis, broadcasting Add/Sub/Mul/Max/Min of two activations,
//! comparisons, Where, And/Or/Xor/Not, IsNaN and AveragePool (both
//! `count_include_pad`). Each model runs on both engines (identical
//! node-boundary roots) and agrees with tract's f32 run; the error is
//! reported in units of the output's scale. Ops that stay unsupported
//! are named.

use opml_lowering::codegen::CodegenOptions;
use opml_lowering::import::{dequantize_output, import, quantize_input, ImportOptions};
use opml_lowering::{Artifact, LowerError};
use std::path::Path;

mod common;
use common::onnx::*;
use common::Rng;

/// An `int64` initializer.
fn ints(name: &str, shape: &[i64], data: &[i64]) -> Pb {
    let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let t = shape.iter().fold(Pb::new(), |t, d| t.int(1, *d));
    t.int(2, 7).str(8, name).bytes(9, &raw)
}

/// Values `k / 16` with `k` in `-127..=127`, the first two `±127 / 16` (so
/// that every input's scale is exactly `1 / 16` and inputs are exact).
fn sixteenths(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| match i {
            0 => 127.0 / 16.0,
            1 => -127.0 / 16.0,
            _ => rng.range(-127, 127) as f32 / 16.0,
        })
        .collect()
}

/// tract's f32 outputs for the inputs `x`.
fn tract_f32(path: &Path, shapes: &[Vec<usize>], x: &[Vec<f32>]) -> Vec<Vec<f32>> {
    use tract_onnx::prelude::*;
    let model = tract_onnx::onnx().model_for_path(path).unwrap();
    let model = model.into_optimized().unwrap().into_runnable().unwrap();
    let inputs: TVec<TValue> = shapes
        .iter()
        .zip(x)
        .map(|(s, v)| Tensor::from_shape(s, v).unwrap().into_tvalue())
        .collect();
    model
        .run(inputs)
        .unwrap()
        .iter()
        .map(|t| {
            let t = t.cast_to::<f32>().unwrap();
            t.to_plain_array_view::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect()
        })
        .collect()
}

/// Imports the model calibrated on `samples`, builds it, runs every sample
/// on both engines (equal roots), and returns per output the largest
/// error against tract in units of the output's scale.
fn check(name: &str, bytes: &[u8], shapes: &[Vec<usize>], samples: &[Vec<Vec<f32>>]) -> Vec<f64> {
    let path = write_model(name, bytes);
    let opts = ImportOptions {
        calibration: Some(samples.to_vec()),
        ..Default::default()
    };
    let imp = import(&path, &opts).unwrap();
    let a = Artifact::build(imp.program.clone(), CodegenOptions::default()).unwrap();
    let mut worst = vec![0.0f64; imp.program.outputs.len()];
    for x in samples {
        let q: Vec<Vec<u8>> = x
            .iter()
            .enumerate()
            .map(|(i, v)| quantize_input(&imp, i, v).unwrap())
            .collect();
        let native = a.run_native(&q).unwrap();
        let wasm = a.run_wasm(&q).unwrap();
        assert_eq!(native.boundaries, wasm.boundaries, "{name}: engines differ");
        let want = tract_f32(&path, shapes, x);
        for (k, t) in imp.program.outputs.iter().enumerate() {
            let y = dequantize_output(&imp, k, a.output(&native, *t)).unwrap();
            let s = f64::from(imp.program.tensors[*t].scale().unwrap());
            assert_eq!(y.len(), want[k].len(), "{name}: output {k} size");
            for (y, w) in y.iter().zip(&want[k]) {
                worst[k] = worst[k].max(f64::from(y - w).abs() / s);
            }
        }
    }
    println!("{name}: max abs error per output in scale units: {worst:?}");
    println!("{name}: ir nodes {:?}", imp.report.ir_nodes);
    worst
}

fn kinds(bytes: &[u8], name: &str, shapes: &[Vec<usize>]) -> Vec<String> {
    let path = write_model(name, bytes);
    let samples = vec![shapes
        .iter()
        .map(|s| vec![0.5; s.iter().product()])
        .collect()];
    let opts = ImportOptions {
        calibration: Some(samples),
        ..Default::default()
    };
    let imp = import(&path, &opts).unwrap();
    imp.report.ir_nodes.iter().map(|(_, k)| k.clone()).collect()
}

fn random_samples(seed: u64, shapes: &[Vec<usize>], n: usize) -> Vec<Vec<Vec<f32>>> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            shapes
                .iter()
                .map(|s| sixteenths(&mut rng, s.iter().product()))
                .collect()
        })
        .collect()
}

#[test]
fn transpose_slice_pad_concat_match_tract() {
    // x [1,4,6,5] -> Transpose [1,5,4,6] -> Slice (axis 1: 1..4, axis 3:
    // 0..6 step 2) [1,3,4,3] -> Pad (constant 0.5) [1,3,5,5]; Concat with
    // its sigmoid (another scale) along axis 1 -> [1,6,5,5].
    let bytes = model(
        vec![
            node(
                "Transpose",
                "tr",
                &["x"],
                &["t"],
                &[("perm", Is(&[0, 3, 1, 2]))],
            ),
            node("Slice", "sl", &["t", "st", "en", "ax", "sp"], &["s"], &[]),
            node(
                "Pad",
                "pad",
                &["s", "pads", "pv"],
                &["p"],
                &[("mode", S("constant"))],
            ),
            node("Sigmoid", "sig", &["p"], &["q"], &[]),
            node("Concat", "cat", &["p", "q"], &["y"], &[("axis", I(1))]),
        ],
        vec![
            ints("st", &[2], &[1, 0]),
            ints("en", &[2], &[4, 6]),
            ints("ax", &[2], &[1, 3]),
            ints("sp", &[2], &[1, 2]),
            ints("pads", &[8], &[0, 0, 1, 0, 0, 0, 0, 2]),
            initializer("pv", &[], &[0.5]),
        ],
        vec![value_info("x", &[1, 4, 6, 5])],
        vec![value_info("y", &[1, 6, 5, 5])],
    );
    let shapes = vec![vec![1, 4, 6, 5]];
    let k = kinds(&bytes, "movement_kinds.onnx", &shapes);
    // Transpose, slices and pad fused into one copy; the concatenation.
    assert_eq!(k.iter().filter(|k| *k == "rearrange").count(), 2, "{k:?}");
    let err = check(
        "movement.onnx",
        &bytes,
        &shapes,
        &random_samples(1, &shapes, 4),
    );
    // Copies are exact; the sigmoid half is one table rounding, and the
    // requantization to the concatenation's scale one more.
    assert!(err[0] <= 1.0, "{err:?}");
}

#[test]
fn split_expand_gather_match_tract() {
    let bytes = model(
        vec![
            node(
                "Split",
                "split",
                &["x", "parts"],
                &["a", "b"],
                &[("axis", I(1))],
            ),
            node("Expand", "expand", &["a", "eshape"], &["e"], &[]),
            node("Gather", "gather", &["b", "gi"], &["g"], &[("axis", I(1))]),
            node("GatherND", "gathernd", &["x", "ndi"], &["n"], &[]),
            node("Tanh", "tanh", &["e"], &["y0"], &[]),
            node("Relu", "relu", &["g"], &["y1"], &[]),
            node("Neg", "neg", &["n"], &["y2"], &[]),
        ],
        vec![
            ints("parts", &[2], &[2, 4]),
            ints("eshape", &[3], &[3, 2, 4]),
            ints("gi", &[3], &[3, 0, -1]),
            ints("ndi", &[2, 2], &[0, 5, 0, 1]),
        ],
        vec![value_info("x", &[1, 6, 4])],
        vec![
            value_info("y0", &[3, 2, 4]),
            value_info("y1", &[1, 3, 4]),
            value_info("y2", &[2, 4]),
        ],
    );
    let shapes = vec![vec![1, 6, 4]];
    let err = check(
        "split.onnx",
        &bytes,
        &shapes,
        &random_samples(2, &shapes, 4),
    );
    assert!(err.iter().all(|e| *e <= 1.0), "{err:?}");
}

#[test]
fn broadcasting_arithmetic_of_two_activations_matches_tract() {
    let bytes = model(
        vec![
            node("Add", "add", &["x", "y"], &["o0"], &[]),
            node("Sub", "sub", &["y", "x"], &["o1"], &[]),
            node("Mul", "mul", &["x", "y"], &["o2"], &[]),
            node("Max", "max", &["x", "y"], &["o3"], &[]),
            node("Min", "min", &["y", "x"], &["o4"], &[]),
            node("Sigmoid", "sig", &["y"], &["z"], &[]),
            node("Mul", "mulz", &["x", "z"], &["o5"], &[]),
        ],
        vec![],
        vec![value_info("x", &[1, 3, 4, 5]), value_info("y", &[3, 1, 5])],
        (0..6)
            .map(|i| value_info(&format!("o{i}"), &[1, 3, 4, 5]))
            .collect(),
    );
    let shapes = vec![vec![1, 3, 4, 5], vec![3, 1, 5]];
    let k = kinds(&bytes, "binary_kinds.onnx", &shapes);
    assert!(k.iter().filter(|k| *k == "binary").count() == 6, "{k:?}");
    let err = check(
        "binary.onnx",
        &bytes,
        &shapes,
        &random_samples(3, &shapes, 6),
    );
    // One rounding each (the product's inputs are exact: one rounding;
    // the sigmoid's table adds up to half a step of its own scale).
    assert!(err[..5].iter().all(|e| *e <= 0.5 + 1e-3), "{err:?}");
    assert!(err[5] <= 1.5, "{err:?}");
}

#[test]
fn comparisons_where_and_logic_match_tract() {
    let cast = |n: &str, i: &str, o: &str| node("Cast", n, &[i], &[o], &[("to", I(1))]);
    let bytes = model(
        vec![
            node("Greater", "gt", &["x", "y"], &["g"], &[]),
            node("LessOrEqual", "le", &["x", "y"], &["l"], &[]),
            node("Equal", "eq", &["x", "y"], &["e"], &[]),
            node("Less", "lt", &["x", "y"], &["lt"], &[]),
            node("GreaterOrEqual", "ge", &["x", "y"], &["ge"], &[]),
            node("Not", "not", &["e"], &["ne"], &[]),
            node("And", "and", &["g", "ne"], &["a"], &[]),
            node("Or", "or", &["lt", "e"], &["o"], &[]),
            node("Xor", "xor", &["ge", "l"], &["xo"], &[]),
            node("Where", "where", &["g", "x", "y"], &["w"], &[]),
            node("Sigmoid", "sig", &["x"], &["s"], &[]),
            node("IsNaN", "isnan", &["s"], &["nan"], &[]),
            node("Where", "where_nan", &["nan", "y", "s"], &["w2"], &[]),
            cast("c0", "a", "y0"),
            cast("c1", "o", "y1"),
            cast("c2", "xo", "y2"),
            cast("c3", "e", "y3"),
        ],
        vec![],
        vec![value_info("x", &[2, 3, 4]), value_info("y", &[1, 3, 1])],
        vec![
            value_info("y0", &[2, 3, 4]),
            value_info("y1", &[2, 3, 4]),
            value_info("y2", &[2, 3, 4]),
            value_info("y3", &[2, 3, 4]),
            value_info("w", &[2, 3, 4]),
            value_info("w2", &[2, 3, 4]),
        ],
    );
    let shapes = vec![vec![2, 3, 4], vec![1, 3, 1]];
    // Inputs on a 1/16 grid with the same scale: comparisons are exact.
    let mut samples = random_samples(4, &shapes, 6);
    // Some equal pairs: x[.., c, ..] = y[c] in the first sample.
    for i in 0..24usize {
        if i.is_multiple_of(3) {
            samples[0][0][i] = samples[0][1][(i / 4) % 3];
        }
    }
    samples[0][1][0] = 127.0 / 16.0;
    let err = check("compare.onnx", &bytes, &shapes, &samples);
    assert!(err[..4].iter().all(|e| *e == 0.0), "{err:?}");
    assert!(err[4] <= 0.5 + 1e-3, "{err:?}");
    assert!(err[5] <= 0.5 + 1e-3, "{err:?}");
}

#[test]
fn average_pools_and_softmax_over_a_middle_axis_match_tract() {
    let avg = |name: &str, o: &str, include: i64| {
        node(
            "AveragePool",
            name,
            &["x"],
            &[o],
            &[
                ("kernel_shape", Is(&[3, 3])),
                ("strides", Is(&[2, 2])),
                ("pads", Is(&[1, 1, 1, 2])),
                ("count_include_pad", I(include)),
            ],
        )
    };
    let bytes = model(
        vec![
            avg("avg_ex", "y0", 0),
            avg("avg_in", "y1", 1),
            node("Softmax", "softmax", &["x"], &["y2"], &[("axis", I(1))]),
        ],
        vec![],
        vec![value_info("x", &[1, 3, 7, 9])],
        vec![
            value_info("y0", &[1, 3, 4, 5]),
            value_info("y1", &[1, 3, 4, 5]),
            value_info("y2", &[1, 3, 7, 9]),
        ],
    );
    let shapes = vec![vec![1, 3, 7, 9]];
    let k = kinds(&bytes, "pool_kinds.onnx", &shapes);
    assert_eq!(k.iter().filter(|k| *k == "avg_pool").count(), 2, "{k:?}");
    let err = check("pool.onnx", &bytes, &shapes, &random_samples(5, &shapes, 4));
    assert!(err[0] <= 0.5 + 1e-3 && err[1] <= 0.5 + 1e-3, "{err:?}");
    // softmax: within the bound of tests/softmax.rs (1/254 + (len+1)/2^21
    // of probability, i.e. about half a step of 1/127) plus the input's
    // quantization (exact here).
    assert!(err[2] <= 1.0, "{err:?}");
}

#[test]
fn pad_modes_and_reversed_slices_match_tract() {
    let bytes = model(
        vec![
            node(
                "Pad",
                "edge",
                &["x", "pads"],
                &["e"],
                &[("mode", S("edge"))],
            ),
            node(
                "Pad",
                "reflect",
                &["x", "pads"],
                &["r"],
                &[("mode", S("reflect"))],
            ),
            node(
                "Slice",
                "reverse",
                &["x", "st", "en", "ax", "sp"],
                &["v"],
                &[],
            ),
            node("Tanh", "t0", &["e"], &["y0"], &[]),
            node("Tanh", "t1", &["r"], &["y1"], &[]),
            node("Tanh", "t2", &["v"], &["y2"], &[]),
        ],
        vec![
            ints("pads", &[8], &[0, 0, 2, 1, 0, 1, 1, 3]),
            ints("st", &[2], &[-1, 4]),
            ints("en", &[2], &[-100, 0]),
            ints("ax", &[2], &[3, 2]),
            ints("sp", &[2], &[-2, -1]),
        ],
        vec![value_info("x", &[1, 2, 5, 6])],
        vec![
            value_info("y0", &[1, 3, 8, 10]),
            value_info("y1", &[1, 3, 8, 10]),
            value_info("y2", &[1, 2, 4, 3]),
        ],
    );
    let shapes = vec![vec![1, 2, 5, 6]];
    let err = check(
        "pad_modes.onnx",
        &bytes,
        &shapes,
        &random_samples(6, &shapes, 4),
    );
    assert!(err.iter().all(|e| *e <= 0.5 + 1e-3), "{err:?}");
}

/// `x / d` of two activations: `x` times a table of `1 / d`.
#[test]
fn division_of_two_activations_matches_tract() {
    let bytes = model(
        vec![
            node("Sigmoid", "sig", &["y"], &["d"], &[]),
            node("Div", "div", &["x", "d"], &["o"], &[]),
        ],
        vec![],
        vec![value_info("x", &[1, 3, 4, 5]), value_info("y", &[3, 1, 5])],
        vec![value_info("o", &[1, 3, 4, 5])],
    );
    let shapes = vec![vec![1, 3, 4, 5], vec![3, 1, 5]];
    let k = kinds(&bytes, "div_kinds.onnx", &shapes);
    assert_eq!(k.iter().filter(|k| *k == "binary").count(), 1, "{k:?}");
    let err = check("div.onnx", &bytes, &shapes, &random_samples(5, &shapes, 6));
    // The product's rounding plus the reciprocal table's half step, scaled
    // by |x| (at most the output's range over the reciprocal's).
    assert!(err[0] <= 1.0, "{err:?}");
}

fn refused(name: &str, bytes: &[u8], node_prefix: &str) {
    match import(&write_model(name, bytes), &ImportOptions::default()) {
        Err(LowerError::Unsupported { node, op, reason }) => {
            assert!(node.starts_with(node_prefix), "{node} {op} {reason}");
            println!("unsupported: {node} ({op}): {reason}");
        }
        other => panic!("expected Unsupported, got {:?}", other.map(|i| i.report)),
    }
}

#[test]
fn remaining_unsupported_ops_are_named() {
    // Gather of an activation by indices that are model inputs.
    let ids = Pb::new().str(1, "i").msg(
        2,
        Pb::new().msg(
            1,
            Pb::new()
                .int(1, 7)
                .msg(2, Pb::new().msg(1, Pb::new().int(1, 3))),
        ),
    );
    let gather = model(
        vec![
            node("Sigmoid", "sig", &["x"], &["s"], &[]),
            node("Gather", "gather", &["s", "i"], &["y"], &[("axis", I(0))]),
        ],
        vec![],
        vec![value_info("x", &[4, 6]), ids],
        vec![value_info("y", &[3, 6])],
    );
    refused("gather_by_input.onnx", &gather, "gather");
    // A reversed slice of more than 1024 elements (one piece each).
    let backwards = model(
        vec![
            node(
                "Slice",
                "slice",
                &["x", "st", "en", "ax", "sp"],
                &["s"],
                &[],
            ),
            node("Sigmoid", "sig", &["s"], &["y"], &[]),
        ],
        vec![
            ints("st", &[1], &[1099]),
            ints("en", &[1], &[0]),
            ints("ax", &[1], &[2]),
            ints("sp", &[1], &[-1]),
        ],
        vec![value_info("x", &[1, 2, 1100])],
        vec![value_info("y", &[1, 2, 1099])],
    );
    refused("slice_back.onnx", &backwards, "slice");
}

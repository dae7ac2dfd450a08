//! ONNX LSTM (tract's `Scan` loop, unrolled): the committed sequence
//! classifier (`fixtures/lstm`) against onnxruntime, both engines node by
//! node, random LSTMs (native vs wasm, and the integer program against the
//! float plan), and the attributes that are refused.

use opml_lowering::codegen::CodegenOptions;
use opml_lowering::import::{dequantize_output, import, quantize_input, ImportOptions, Imported};
use opml_lowering::ir::DType;
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
    // Per timestep: 4 recurrent products and 4 sums (none at t = 0), 4
    // gate tables, the `i16` cell update and `h` (two `product_sum`) and
    // `tanh(c)` on `i16` (`interp`); plus 4 input projections and the head.
    assert_eq!(count("matmul"), 4 + 4 * (SEQ - 1) + 1);
    assert_eq!(count("add"), 4 * (SEQ - 1));
    assert_eq!(count("lut"), 4 * SEQ);
    assert_eq!(count("interp"), SEQ);
    assert_eq!(count("product_sum"), 2 * SEQ);
    assert_eq!(imp.report.ir_nodes.len(), 5 + 15 * SEQ - 8);
    // The cell state is i16, h is i8 (it lies in Y).
    let dtype = |name: &str| {
        let t = imp.program.tensors.iter().find(|t| t.name == name).unwrap();
        t.dtype
    };
    assert_eq!(dtype("lstm.t5.c"), DType::I16);
    assert_eq!(dtype("lstm.t5.tanh_c"), DType::I16);
    assert_eq!(dtype("lstm.t5.h"), DType::I8);
    check_fixture(
        "model.onnx",
        &[("logits", 4), ("Y", SEQ * HID), ("Y_c", HID)],
        &[(0.008, 0.02), (0.03, 0.025), (0.04, 0.02)],
    );
}

/// Constant initial `h` and `c`; outputs `Y`, `Y_h`, `Y_c`.
#[test]
fn lstm_with_initial_state_matches_onnxruntime() {
    check_fixture(
        "model_init.onnx",
        &[("Y", SEQ * HID), ("Y_h", HID), ("Y_c", HID)],
        &[(0.04, 0.025), (0.02, 0.025), (0.03, 0.02)],
    );
}

/// Uniform floats in `[-bound, bound)`.
fn floats(rng: &mut Rng, n: usize, bound: f32) -> Vec<f32> {
    (0..n)
        .map(|_| ((rng.next() >> 40) as f32 / 16_777_216.0 * 2.0 - 1.0) * bound)
        .collect()
}

/// A random LSTM model.
#[derive(Clone, Debug)]
struct Case {
    seq: usize,
    inp: usize,
    hid: usize,
    bias: bool,
    /// 0: no initial state, 1: constant initial `h` and `c`, 2: both model
    /// inputs.
    init: u8,
    /// Which of `Y`, `Y_h`, `Y_c` are model outputs (at least one).
    outputs: [bool; 3],
    /// `layout = 1`: `x` is `[1, seq, input]`, `Y` `[1, seq, 1, hidden]`.
    batch_first: bool,
    seed: u64,
}

const NAME: &str = "lstm_node";

/// The model: one `LSTM` node named [`NAME`] with `attrs` (and peepholes
/// if asked); returns the file's bytes and the model's input shapes.
fn lstm_onnx(c: &Case, attrs: &[(&str, Attr)], peepholes: bool) -> (Vec<u8>, Vec<Vec<usize>>) {
    let mut rng = Rng(c.seed);
    let (s, i, h) = (c.seq as i64, c.inp as i64, c.hid as i64);
    let bound = 2.0 / (c.hid as f32).sqrt();
    let mut inits = vec![
        initializer(
            "W",
            &[1, 4 * h, i],
            &floats(&mut rng, 4 * c.hid * c.inp, bound),
        ),
        initializer(
            "R",
            &[1, 4 * h, h],
            &floats(&mut rng, 4 * c.hid * c.hid, bound),
        ),
    ];
    let mut ins = vec!["x", "W", "R", "", "", "", "", ""];
    if c.bias {
        inits.push(initializer(
            "B",
            &[1, 8 * h],
            &floats(&mut rng, 8 * c.hid, bound),
        ));
        ins[3] = "B";
    }
    let (x_shape, y_shape) = if c.batch_first {
        ([1, s, i], vec![1, s, 1, h])
    } else {
        ([s, 1, i], vec![s, 1, 1, h])
    };
    let mut inputs = vec![value_info("x", &x_shape)];
    let mut shapes = vec![x_shape.iter().map(|d| *d as usize).collect()];
    if c.init > 0 {
        (ins[5], ins[6]) = ("h0", "c0");
    }
    if c.init == 1 {
        inits.push(initializer("h0", &[1, 1, h], &floats(&mut rng, c.hid, 0.5)));
        inits.push(initializer("c0", &[1, 1, h], &floats(&mut rng, c.hid, 1.0)));
    } else if c.init == 2 {
        inputs.push(value_info("h0", &[1, 1, h]));
        inputs.push(value_info("c0", &[1, 1, h]));
        shapes.extend([vec![1, 1, c.hid], vec![1, 1, c.hid]]);
    }
    if peepholes {
        inits.push(initializer(
            "P",
            &[1, 3 * h],
            &floats(&mut rng, 3 * c.hid, 0.5),
        ));
        ins[7] = "P";
    }
    while ins.last() == Some(&"") {
        ins.pop();
    }
    let names = ["Y", "Y_h", "Y_c"];
    let shapes_out = [y_shape, vec![1, 1, h], vec![1, 1, h]];
    let outs: Vec<&str> = (0..3)
        .map(|k| if c.outputs[k] { names[k] } else { "" })
        .collect();
    let outputs = (0..3)
        .filter(|k| c.outputs[*k])
        .map(|k| value_info(names[k], &shapes_out[k]))
        .collect();
    let mut all_attrs: Vec<(&str, Attr)> = vec![("hidden_size", I(h))];
    if c.batch_first {
        all_attrs.push(("layout", I(1)));
    }
    for (k, v) in attrs {
        all_attrs.push((
            k,
            match v {
                I(x) => I(*x),
                Is(x) => Is(x),
                S(x) => S(x),
                F(x) => F(*x),
                Ss(x) => Ss(x),
            },
        ));
    }
    let n = node("LSTM", NAME, &ins, &outs, &all_attrs);
    (model(vec![n], inits, inputs, outputs), shapes)
}

/// tract's f32 run of every output.
fn tract_outputs(path: &Path, shapes: &[Vec<usize>], xs: &[Vec<f32>]) -> Vec<Vec<f32>> {
    use tract_onnx::prelude::*;
    let model = tract_onnx::onnx().model_for_path(path).unwrap();
    let model = model.into_optimized().unwrap().into_runnable().unwrap();
    let inputs: TVec<TValue> = shapes
        .iter()
        .zip(xs)
        .map(|(s, x)| Tensor::from_shape(s, x).unwrap().into_tvalue())
        .collect();
    model
        .run(inputs)
        .unwrap()
        .iter()
        .map(|o| {
            o.to_plain_array_view::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect()
        })
        .collect()
}

/// Imports `c` (calibrated on 4 random samples), checks the float plan
/// against tract and the integer program against the plan on every
/// sample, and both engines node by node on the first.
fn check_case(c: &Case) {
    let (bytes, shapes) = lstm_onnx(c, &[], false);
    let path = write_model(&format!("lstm_{}.onnx", c.seed), &bytes);
    println!("{c:?}");
    let mut rng = Rng(c.seed ^ 0x5eed);
    let samples: Vec<Vec<Vec<f32>>> = (0..4)
        .map(|_| {
            shapes
                .iter()
                .map(|s| floats(&mut rng, s.iter().product(), 1.0))
                .collect()
        })
        .collect();
    let opts = ImportOptions {
        calibration: Some(samples.clone()),
        ..Default::default()
    };
    let imp = import(&path, &opts).unwrap();
    let a = Artifact::build(imp.program.clone(), CodegenOptions::default()).unwrap();
    let reference = imp.reference.clone().unwrap();
    let mut worst = 0.0f64;
    for (x, plan) in samples.iter().zip(&reference) {
        // The unrolled float plan computes what tract's loop computes.
        for (p, t) in plan.iter().zip(tract_outputs(&path, &shapes, x)) {
            assert_eq!(p.len(), t.len());
            for (p, t) in p.iter().zip(&t) {
                assert!(
                    (p - f64::from(*t)).abs() < 1e-4,
                    "{c:?}: plan {p} tract {t}"
                );
            }
        }
        let input: Vec<Vec<u8>> = x
            .iter()
            .enumerate()
            .map(|(k, v)| quantize_input(&imp, k, v).unwrap())
            .collect();
        let run = a.run_native(&input).unwrap();
        for (k, p) in plan.iter().enumerate() {
            let q = dequantize_output(&imp, k, a.output(&run, a.program.outputs[k])).unwrap();
            for (q, p) in q.iter().zip(p) {
                worst = worst.max((f64::from(*q) - p).abs());
            }
        }
    }
    assert!(worst < 0.3, "{c:?}: max |int - plan| = {worst}");
    let input: Vec<Vec<u8>> = samples[0]
        .iter()
        .enumerate()
        .map(|(k, v)| quantize_input(&imp, k, v).unwrap())
        .collect();
    assert_eq!(
        a.run_wasm(&input).unwrap().roots(),
        a.run_native(&input).unwrap().roots(),
        "{c:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// Random LSTMs: sequence length, sizes, bias, initial state (none,
    /// constant, model inputs), outputs and layout.
    #[test]
    fn random_lstms_agree_on_both_engines(
        seq in 2usize..=5,
        inp in 1usize..=9,
        hid in prop_oneof![Just(8usize), Just(16)],
        bias in any::<bool>(),
        init in 0u8..=2,
        outputs in prop_oneof![
            Just([true, false, false]),
            Just([false, true, false]),
            Just([false, false, true]),
            Just([true, true, true]),
            Just([true, false, true]),
        ],
        batch_first in any::<bool>(),
        seed in any::<u64>(),
    ) {
        check_case(&Case { seq, inp, hid, bias, init, outputs, batch_first, seed });
    }
}

/// `layout = 1` with model-input initial states and all three outputs.
#[test]
fn batch_first_lstm_agrees_with_tract_and_on_both_engines() {
    check_case(&Case {
        seq: 4,
        inp: 5,
        hid: 8,
        bias: true,
        init: 2,
        outputs: [true, true, true],
        batch_first: true,
        seed: 11,
    });
}

/// `Unsupported` naming the LSTM node.
fn expect_unsupported(what: &str, bytes: &[u8], op_is: &str) {
    let path = write_model(&format!("lstm_bad_{what}.onnx"), bytes);
    match import(&path, &ImportOptions::default()) {
        Err(LowerError::Unsupported { node, op, reason }) => {
            println!("{what}: {node} ({op}): {reason}");
            assert!(node.starts_with(NAME), "{what}: {node} {op} {reason}");
            assert_eq!(op, op_is, "{what}: {reason}");
        }
        other => panic!(
            "{what}: expected Unsupported, got {:?}",
            other.map(|i| i.report)
        ),
    }
}

#[test]
fn unsupported_lstm_attributes_are_named() {
    let c = Case {
        seq: 3,
        inp: 4,
        hid: 8,
        bias: true,
        init: 0,
        outputs: [true, true, true],
        batch_first: false,
        seed: 7,
    };
    let bad: Vec<(&str, Vec<(&str, Attr)>)> = vec![
        ("reverse", vec![("direction", S("reverse"))]),
        ("bidirectional", vec![("direction", S("bidirectional"))]),
        (
            "activations",
            vec![("activations", Ss(&["Relu", "Tanh", "Tanh"]))],
        ),
        ("clip", vec![("clip", F(3.0))]),
        ("input_forget", vec![("input_forget", I(1))]),
    ];
    for (what, attrs) in bad {
        expect_unsupported(what, &lstm_onnx(&c, &attrs, false).0, "LSTM");
    }
    expect_unsupported("peepholes", &lstm_onnx(&c, &[], true).0, "LSTM");
    // The default attributes spelled out are accepted.
    let fine = lstm_onnx(
        &c,
        &[
            ("direction", S("forward")),
            ("activations", Ss(&["Sigmoid", "Tanh", "Tanh"])),
            ("input_forget", I(0)),
        ],
        false,
    );
    let path = write_model("lstm_defaults.onnx", &fine.0);
    import(&path, &ImportOptions::default()).unwrap();
    // A hidden size that is not a multiple of 8: the per-timestep views
    // would not be 8-byte aligned.
    let odd = Case {
        hid: 12,
        ..c.clone()
    };
    expect_unsupported("hidden12", &lstm_onnx(&odd, &[], false).0, "Scan");
}

/// One random `ir::ProductSum` (operand and output types, multipliers,
/// shift, clamp) on random values: the Wasm kernel, split into small
/// units, against the native executor (every boundary and the memory) and
/// the formula.
fn check_product_sum(n: u32, wide: [bool; 5], seed: u64) {
    use opml_lowering::builder::ProgramBuilder;
    use opml_lowering::ir::{Op, ProductSum, TensorKind};
    let mut rng = Rng(seed);
    let mut b = ProgramBuilder::new();
    let dt = |w: bool| if w { DType::I16 } else { DType::I8 };
    let ids: Vec<usize> = (0..4)
        .map(|k| b.tensor(&format!("x{k}"), dt(wide[k]), &[n], TensorKind::Input))
        .collect();
    let out = b.tensor("y", dt(wide[4]), &[n], TensorKind::Output);
    let top: i64 = if wide[4] { 32767 } else { 127 };
    let lo = -(rng.range(0, top) as i32);
    let hi = rng.range(0, top) as i32;
    let (ma, mc) = (
        rng.range(-(1 << 31) + 1, (1 << 31) - 1) as i32,
        rng.range(-(1 << 31) + 1, (1 << 31) - 1) as i32,
    );
    let shift = rng.range(1, 62) as i32;
    let op = ProductSum {
        a: ids[0],
        b: ids[1],
        c: ids[2],
        d: ids[3],
        output: out,
        n,
        a_multiplier: ma,
        c_multiplier: mc,
        shift,
        lo,
        hi,
    };
    b.node("ps", Op::ProductSum(op));
    let a = Artifact::build(b.finish(), common::small_budget()).unwrap();
    let vals: Vec<Vec<i64>> = (0..4)
        .map(|k| {
            (0..n)
                .map(|_| {
                    if wide[k] {
                        i64::from(rng.next() as i16)
                    } else {
                        i64::from(rng.next() as i8)
                    }
                })
                .collect()
        })
        .collect();
    let inputs: Vec<Vec<u8>> = (0..4)
        .map(|k| {
            vals[k]
                .iter()
                .flat_map(|v| {
                    if wide[k] {
                        (*v as i16).to_le_bytes().to_vec()
                    } else {
                        vec![*v as i8 as u8]
                    }
                })
                .collect()
        })
        .collect();
    let wasm = a.run_wasm(&inputs).unwrap();
    let native = a.run_native(&inputs).unwrap();
    assert_eq!(wasm.boundaries, native.boundaries);
    assert!(wasm.memory == native.memory, "memory images differ");
    let bytes = a.output(&wasm, a.program.outputs[0]);
    for j in 0..n as usize {
        let x = vals[0][j] * vals[1][j] * i64::from(ma) + vals[2][j] * vals[3][j] * i64::from(mc);
        let want = ((x + (1i64 << (shift - 1))) >> shift).clamp(i64::from(lo), i64::from(hi));
        let got = if wide[4] {
            i64::from(i16::from_le_bytes([bytes[2 * j], bytes[2 * j + 1]]))
        } else {
            i64::from(bytes[j] as i8)
        };
        assert_eq!(got, want, "element {j}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn product_sum_kernel_matches_native_and_the_formula(
        n in 1u32..300,
        wide in any::<[bool; 5]>(),
        seed in any::<u64>(),
    ) {
        check_product_sum(n, wide, seed);
    }
}

/// One timestep: tract inlines the loop's body (a lone `LstmEpilogue`),
/// which is refused by name, not lowered.
#[test]
fn single_timestep_lstm_is_refused_by_name() {
    for batch_first in [false, true] {
        let c = Case {
            seq: 1,
            inp: 3,
            hid: 8,
            bias: true,
            init: 1,
            outputs: [true, true, true],
            batch_first,
            seed: 3,
        };
        let (bytes, _) = lstm_onnx(&c, &[], false);
        let path = write_model(&format!("lstm_seq1_{batch_first}.onnx"), &bytes);
        match import(&path, &ImportOptions::default()) {
            Err(LowerError::Unsupported { node, op, reason }) => {
                assert!(node.starts_with(NAME), "{node}");
                assert_eq!(op, "LstmEpilogue");
                assert!(reason.contains("single timestep"), "{reason}");
            }
            other => panic!("expected Unsupported, got {:?}", other.map(|i| i.report)),
        }
    }
}

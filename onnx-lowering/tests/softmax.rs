//! Softmax: Wasm kernel against the native executor, a straightforward
//! integer reference, and the exact softmax in `f64` (error bound).

use opml_lowering::builder::ProgramBuilder;
use opml_lowering::ir::{DType, Op, Softmax, TensorKind};
use opml_lowering::Artifact;
use proptest::prelude::*;

mod common;
use common::{small_budget, Rng};

fn bytes(v: &[i8]) -> Vec<u8> {
    v.iter().map(|x| *x as u8).collect()
}

/// The import's table: `round(2^20 exp(-d s))`.
fn table(s: f64) -> Vec<i32> {
    (0..256)
        .map(|d| ((-(d as f64) * s).exp() * f64::from(1 << 20)).round() as i32)
        .collect()
}

fn artifact(rows: u32, len: u32, s: f64) -> Artifact {
    let mut b = ProgramBuilder::new();
    let x = b.tensor("x", DType::I8, &[rows, len], TensorKind::Input);
    let t = b.const_i32("exp", &[256], &table(s));
    let y = b.tensor("y", DType::I8, &[rows, len], TensorKind::Output);
    b.node(
        "softmax",
        Op::Softmax(Softmax {
            input: x,
            table: t,
            output: y,
            rows,
            len,
        }),
    );
    Artifact::build(b.finish(), small_budget()).unwrap()
}

/// The IR's integer semantics, written out.
fn reference(x: &[i8], len: usize, t: &[i32]) -> Vec<i8> {
    let mut out = Vec::new();
    for row in x.chunks(len) {
        let mx = *row.iter().max().unwrap();
        let e: Vec<i64> = row
            .iter()
            .map(|v| i64::from(t[(i32::from(mx) - i32::from(*v)) as usize]))
            .collect();
        let sum: i64 = e.iter().sum();
        out.extend(e.iter().map(|e| ((254 * e + sum) / (2 * sum)) as i8));
    }
    out
}

/// Runs both engines, checks them against each other and the reference,
/// and returns the largest error against the exact softmax.
fn check(rows: u32, len: u32, s: f64, x: &[i8]) -> f64 {
    let a = artifact(rows, len, s);
    let inputs = vec![bytes(x)];
    let wasm = a.run_wasm(&inputs).unwrap();
    let native = a.run_native(&inputs).unwrap();
    assert_eq!(wasm.boundaries, native.boundaries);
    assert!(wasm.memory == native.memory, "memory images differ");
    let y: Vec<i8> = a
        .output(&wasm, a.program.outputs[0])
        .iter()
        .map(|v| *v as i8)
        .collect();
    assert_eq!(y, reference(x, len as usize, &table(s)));
    let mut worst = 0.0f64;
    for (row, out) in x.chunks(len as usize).zip(y.chunks(len as usize)) {
        let mx = row
            .iter()
            .map(|v| f64::from(*v) * s)
            .fold(f64::MIN, f64::max);
        let e: Vec<f64> = row.iter().map(|v| (f64::from(*v) * s - mx).exp()).collect();
        let sum: f64 = e.iter().sum();
        for (e, q) in e.iter().zip(out) {
            assert!((0..=127).contains(q));
            worst = worst.max((f64::from(*q) / 127.0 - e / sum).abs());
        }
    }
    let bound = 1.0 / 254.0 + f64::from(len + 1) / f64::from(1 << 21);
    assert!(worst <= bound + 1e-12, "error {worst} above bound {bound}");
    worst
}

#[test]
fn softmax_native_equals_wasm_reference_and_error_bound() {
    let mut rng = Rng(11);
    let mut worst = 0.0f64;
    for (rows, len, s) in [
        (1, 2, 0.1),
        (3, 10, 0.05),
        (40, 17, 0.02),
        (2, 300, 0.01),
        (5, 1, 0.3),
        (4, 64, 0.25),
    ] {
        let x = rng.i8s((rows * len) as usize);
        worst = worst.max(check(rows, len, s, &x));
        // Constant rows and rows with one extreme value.
        let mut x = vec![-128i8; (rows * len) as usize];
        x[0] = 127;
        worst = worst.max(check(rows, len, s, &x));
        worst = worst.max(check(rows, len, s, &vec![5; (rows * len) as usize]));
    }
    eprintln!(
        "largest error against the f64 softmax: {worst:.6} (1/254 = {:.6})",
        1.0 / 254.0
    );
}

#[test]
fn softmax_splits_into_units_and_fuel_does_not_depend_on_the_input() {
    let (rows, len) = (30, 40);
    let a = artifact(rows, len, 0.05);
    assert!(a.nodes[0].units > 1);
    let recorded: Vec<u64> = a.nodes.iter().map(|n| n.end_fuel).collect();
    let n = (rows * len) as usize;
    let random = bytes(&Rng(3).i8s(n));
    for input in [random, vec![0; n], vec![0x80; n]] {
        let run = a.run_wasm(&[input]).unwrap();
        let fuel: Vec<u64> = run.boundaries[1..].iter().map(|s| s.fuel).collect();
        assert_eq!(fuel, recorded);
    }
}

#[test]
fn softmax_with_a_bad_table_is_refused() {
    let a = artifact(2, 3, 0.1);
    let p = &a.program;
    let Op::Softmax(o) = &p.nodes[0].op else {
        unreachable!()
    };
    let at = p.tensors[o.table].offset as usize;
    let mut image = a.initial_image();
    image[at..at + 4].copy_from_slice(&0i32.to_le_bytes());
    assert!(p.validate(&image).is_err());
    let mut image = a.initial_image();
    image[at + 8..at + 12].copy_from_slice(&(-1i32).to_le_bytes());
    assert!(p.validate(&image).is_err());
    assert!(p.validate(&a.initial_image()).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn random_softmaxes_agree(
        rows in 1u32..12, len in 1u32..80, s in 0.001f64..0.5, seed in any::<u64>(),
    ) {
        let x = Rng(seed).i8s((rows * len) as usize);
        check(rows, len, s, &x);
    }
}

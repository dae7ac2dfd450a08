//! Helpers shared by the lowering tests.
#![allow(dead_code)]

pub mod onnx;

use opml_lowering::builder::ProgramBuilder;
use opml_lowering::codegen::CodegenOptions;
use opml_lowering::ir::{ColAdd, DType, Op, TensorKind};
use opml_lowering::ops::family::Budget;
use opml_lowering::Artifact;

/// A deterministic byte stream from a seed (splitmix64).
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn i8s(&mut self, n: usize) -> Vec<i8> {
        (0..n).map(|_| self.next() as i8).collect()
    }
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
}

/// A small unit budget, so that even small nodes split into several steps.
pub fn small_budget() -> CodegenOptions {
    CodegenOptions {
        budget: Budget {
            unit_fuel: 3_000,
            unit_bytes: 2_048,
        },
        ..Default::default()
    }
}

/// Requantization parameters that keep outputs in range for typical sums.
pub fn random_requant(rng: &mut Rng, n: usize) -> (Vec<i32>, Vec<i32>) {
    let mul = (0..n)
        .map(|_| rng.range(1 << 20, (1 << 31) - 1) as i32)
        .collect();
    let sh = (0..n).map(|_| rng.range(30, 40) as i32).collect();
    (mul, sh)
}

/// Runs both engines, checks that their node-boundary states and memory
/// images agree, and returns the bytes of output 0.
pub fn run_both(a: &Artifact, inputs: &[Vec<u8>]) -> Vec<u8> {
    let wasm = a.run_wasm(inputs).unwrap();
    let native = a.run_native(inputs).unwrap();
    assert_eq!(wasm.boundaries, native.boundaries);
    assert!(wasm.memory == native.memory, "memory images differ");
    a.output(&wasm, a.program.outputs[0]).to_vec()
}

/// `ir::ColAdd` of two random `i8` tensors `[rows, len]` with random
/// per-column multipliers and shifts, output `out` (`I8` or `I16`) clamped
/// to `lo..=hi`: both engines agree, and every element equals the spec's
/// `floor(x / 2^s + 1/2)` computed in `i128`.
pub fn check_col_add(rows: u32, len: u32, out: DType, (lo, hi): (i32, i32), seed: u64) {
    let mut rng = Rng(seed);
    let mut b = ProgramBuilder::new();
    let n = (rows * len) as usize;
    let xa = b.tensor("a", DType::I8, &[rows, len], TensorKind::Input);
    let xb = b.tensor("b", DType::I8, &[rows, len], TensorKind::Input);
    let col = |rng: &mut Rng| -> Vec<i32> {
        (0..len)
            .map(|_| rng.range(-(1 << 31) + 1, (1 << 31) - 1) as i32)
            .collect()
    };
    let (ma, mb) = (col(&mut rng), col(&mut rng));
    let sh: Vec<i32> = (0..len).map(|_| rng.range(1, 62) as i32).collect();
    let (tma, tmb, tsh) = (
        b.const_i32("ma", &[len], &ma),
        b.const_i32("mb", &[len], &mb),
        b.const_i32("sh", &[len], &sh),
    );
    let output = b.tensor("out", out, &[rows, len], TensorKind::Output);
    b.node(
        "add",
        Op::ColAdd(ColAdd {
            a: xa,
            b: xb,
            output,
            a_multiplier: tma,
            b_multiplier: tmb,
            shift: tsh,
            rows,
            len,
            lo,
            hi,
        }),
    );
    let art = Artifact::build(b.finish(), small_budget()).unwrap();
    let (va, vb) = (rng.i8s(n), rng.i8s(n));
    let byte = |v: &[i8]| v.iter().map(|x| *x as u8).collect::<Vec<u8>>();
    let raw = run_both(&art, &[byte(&va), byte(&vb)]);
    let got: Vec<i128> = match out {
        DType::I16 => raw
            .chunks_exact(2)
            .map(|c| i128::from(i16::from_le_bytes([c[0], c[1]])))
            .collect(),
        _ => raw.iter().map(|v| i128::from(*v as i8)).collect(),
    };
    for i in 0..n {
        let l = i % len as usize;
        let x = i128::from(va[i]) * i128::from(ma[l]) + i128::from(vb[i]) * i128::from(mb[l]);
        // floor(x / 2^s + 1/2)
        let want = (2 * x + (1i128 << sh[l])).div_euclid(1i128 << (sh[l] + 1));
        assert_eq!(got[i], want.clamp(i128::from(lo), i128::from(hi)), "{i}");
    }
}

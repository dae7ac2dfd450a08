//! Helpers shared by the lowering tests.
#![allow(dead_code)]

pub mod onnx;

use opml_lowering::codegen::CodegenOptions;
use opml_lowering::ops::family::Budget;

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

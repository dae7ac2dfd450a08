//! Add and Lut, element by element.
//!
//! A unit is the contiguous element range `[u * per, min(n, (u + 1) * per))`
//! with `per` a multiple of 8: the kernels process 8 elements per loop
//! iteration (byte loads and stores with constant offsets from one pointer
//! per tensor) and the tail of the last unit one by one. Loop bounds depend
//! only on `n`, `per` and the unit index, so the fuel is the same for every
//! input.

use crate::ir::{Add, Lut, Program};
use crate::ops::family::{Budget, Kernel, Scheduled};

/// Descriptor words: a, b, out, n, per, ma, mb, s, zp, lo, hi.
///
/// Per element: `q = ((a * ma + b * mb + 2^(s-1)) >> s) + zp` in `i64`, then
/// `q = q < lo ? lo : q`, `q = q > hi ? hi : q` (both with `select`), stored
/// as its low byte. About 30 fuel per element, 32 with the loop.
pub const ADD_KERNEL: Kernel = Kernel {
    name: "add",
    wat: r#"
  (func $add (param $d i32) (param $u i32)
    (local $pa i32) (local $pb i32) (local $po i32) (local $e8 i32) (local $end i32) (local $t i32)
    (local $ma i64) (local $mb i64) (local $s i64) (local $r i64) (local $zp i64) (local $lo i64)
    (local $hi i64) (local $q i64)
    ;; elements [t, end), end = min(n, t + per); full groups of 8 up to e8
    (local.set $t (i32.mul (local.get $u) (i32.load offset=16 (local.get $d))))
    (local.set $end (i32.add (local.get $t) (i32.load offset=16 (local.get $d))))
    (local.set $end (select (i32.load offset=12 (local.get $d)) (local.get $end)
      (i32.gt_u (local.get $end) (i32.load offset=12 (local.get $d)))))
    (local.set $pa (i32.add (i32.load offset=0 (local.get $d)) (local.get $t)))
    (local.set $pb (i32.add (i32.load offset=4 (local.get $d)) (local.get $t)))
    (local.set $po (i32.add (i32.load offset=8 (local.get $d)) (local.get $t)))
    (local.set $e8 (i32.add (local.get $po) (i32.and (i32.sub (local.get $end) (local.get $t)) (i32.const -8))))
    (local.set $end (i32.add (i32.load offset=8 (local.get $d)) (local.get $end)))
    (local.set $ma (i64.load32_s offset=20 (local.get $d)))
    (local.set $mb (i64.load32_s offset=24 (local.get $d)))
    (local.set $s (i64.load32_s offset=28 (local.get $d)))
    (local.set $r (i64.shl (i64.const 1) (i64.sub (local.get $s) (i64.const 1))))
    (local.set $zp (i64.load32_s offset=32 (local.get $d)))
    (local.set $lo (i64.load32_s offset=36 (local.get $d)))
    (local.set $hi (i64.load32_s offset=40 (local.get $d)))
    (block $b8
      (br_if $b8 (i32.ge_u (local.get $po) (local.get $e8)))
      (loop $l8
        (local.set $q (select (local.get $lo) (local.tee $q (i64.add (i64.shr_s (i64.add (i64.add (i64.mul (i64.load8_s offset=0 (local.get $pa)) (local.get $ma)) (i64.mul (i64.load8_s offset=0 (local.get $pb)) (local.get $mb))) (local.get $r)) (local.get $s)) (local.get $zp))) (i64.lt_s (local.get $q) (local.get $lo))))
        (i64.store8 offset=0 (local.get $po) (select (local.get $hi) (local.get $q) (i64.gt_s (local.get $q) (local.get $hi))))
        (local.set $q (select (local.get $lo) (local.tee $q (i64.add (i64.shr_s (i64.add (i64.add (i64.mul (i64.load8_s offset=1 (local.get $pa)) (local.get $ma)) (i64.mul (i64.load8_s offset=1 (local.get $pb)) (local.get $mb))) (local.get $r)) (local.get $s)) (local.get $zp))) (i64.lt_s (local.get $q) (local.get $lo))))
        (i64.store8 offset=1 (local.get $po) (select (local.get $hi) (local.get $q) (i64.gt_s (local.get $q) (local.get $hi))))
        (local.set $q (select (local.get $lo) (local.tee $q (i64.add (i64.shr_s (i64.add (i64.add (i64.mul (i64.load8_s offset=2 (local.get $pa)) (local.get $ma)) (i64.mul (i64.load8_s offset=2 (local.get $pb)) (local.get $mb))) (local.get $r)) (local.get $s)) (local.get $zp))) (i64.lt_s (local.get $q) (local.get $lo))))
        (i64.store8 offset=2 (local.get $po) (select (local.get $hi) (local.get $q) (i64.gt_s (local.get $q) (local.get $hi))))
        (local.set $q (select (local.get $lo) (local.tee $q (i64.add (i64.shr_s (i64.add (i64.add (i64.mul (i64.load8_s offset=3 (local.get $pa)) (local.get $ma)) (i64.mul (i64.load8_s offset=3 (local.get $pb)) (local.get $mb))) (local.get $r)) (local.get $s)) (local.get $zp))) (i64.lt_s (local.get $q) (local.get $lo))))
        (i64.store8 offset=3 (local.get $po) (select (local.get $hi) (local.get $q) (i64.gt_s (local.get $q) (local.get $hi))))
        (local.set $q (select (local.get $lo) (local.tee $q (i64.add (i64.shr_s (i64.add (i64.add (i64.mul (i64.load8_s offset=4 (local.get $pa)) (local.get $ma)) (i64.mul (i64.load8_s offset=4 (local.get $pb)) (local.get $mb))) (local.get $r)) (local.get $s)) (local.get $zp))) (i64.lt_s (local.get $q) (local.get $lo))))
        (i64.store8 offset=4 (local.get $po) (select (local.get $hi) (local.get $q) (i64.gt_s (local.get $q) (local.get $hi))))
        (local.set $q (select (local.get $lo) (local.tee $q (i64.add (i64.shr_s (i64.add (i64.add (i64.mul (i64.load8_s offset=5 (local.get $pa)) (local.get $ma)) (i64.mul (i64.load8_s offset=5 (local.get $pb)) (local.get $mb))) (local.get $r)) (local.get $s)) (local.get $zp))) (i64.lt_s (local.get $q) (local.get $lo))))
        (i64.store8 offset=5 (local.get $po) (select (local.get $hi) (local.get $q) (i64.gt_s (local.get $q) (local.get $hi))))
        (local.set $q (select (local.get $lo) (local.tee $q (i64.add (i64.shr_s (i64.add (i64.add (i64.mul (i64.load8_s offset=6 (local.get $pa)) (local.get $ma)) (i64.mul (i64.load8_s offset=6 (local.get $pb)) (local.get $mb))) (local.get $r)) (local.get $s)) (local.get $zp))) (i64.lt_s (local.get $q) (local.get $lo))))
        (i64.store8 offset=6 (local.get $po) (select (local.get $hi) (local.get $q) (i64.gt_s (local.get $q) (local.get $hi))))
        (local.set $q (select (local.get $lo) (local.tee $q (i64.add (i64.shr_s (i64.add (i64.add (i64.mul (i64.load8_s offset=7 (local.get $pa)) (local.get $ma)) (i64.mul (i64.load8_s offset=7 (local.get $pb)) (local.get $mb))) (local.get $r)) (local.get $s)) (local.get $zp))) (i64.lt_s (local.get $q) (local.get $lo))))
        (i64.store8 offset=7 (local.get $po) (select (local.get $hi) (local.get $q) (i64.gt_s (local.get $q) (local.get $hi))))
        (local.set $pa (i32.add (local.get $pa) (i32.const 8)))
        (local.set $pb (i32.add (local.get $pb) (i32.const 8)))
        (local.set $po (i32.add (local.get $po) (i32.const 8)))
        (br_if $l8 (i32.lt_u (local.get $po) (local.get $e8)))))
    (block $b1
      (br_if $b1 (i32.ge_u (local.get $po) (local.get $end)))
      (loop $l1
        (local.set $q (select (local.get $lo) (local.tee $q (i64.add (i64.shr_s (i64.add (i64.add (i64.mul (i64.load8_s (local.get $pa)) (local.get $ma)) (i64.mul (i64.load8_s (local.get $pb)) (local.get $mb))) (local.get $r)) (local.get $s)) (local.get $zp))) (i64.lt_s (local.get $q) (local.get $lo))))
        (i64.store8 (local.get $po) (select (local.get $hi) (local.get $q) (i64.gt_s (local.get $q) (local.get $hi))))
        (local.set $pa (i32.add (local.get $pa) (i32.const 1)))
        (local.set $pb (i32.add (local.get $pb) (i32.const 1)))
        (local.set $po (i32.add (local.get $po) (i32.const 1)))
        (br_if $l1 (i32.lt_u (local.get $po) (local.get $end))))))
"#,
};

/// Elements per unit: the most that fit both budgets, a multiple of 8, at
/// least 8 and no more than `n` rounded up to 8.
fn per_unit(
    n: u64,
    budget: &Budget,
    overhead: u64,
    fuel_x2: u64,
    bytes: u64,
    fixed_bytes: u64,
) -> u64 {
    let by_fuel = budget.unit_fuel.saturating_sub(overhead) * 2 / fuel_x2;
    let by_bytes = budget.unit_bytes.saturating_sub(fixed_bytes) / bytes;
    (by_fuel.min(by_bytes) & !7)
        .max(8)
        .min(n.div_ceil(8).max(1) * 8)
}

/// Splits the sum into element ranges (about 32 fuel and 3 bytes each).
pub fn schedule_add(op: &Add, p: &Program, budget: &Budget) -> Scheduled {
    let n = p.tensors[op.output].len();
    let per = per_unit(u64::from(n), budget, 100, 64, 3, 0);
    let t = |id: usize| p.tensors[id].offset;
    Scheduled {
        kernel: ADD_KERNEL.name,
        units: u64::from(n).div_ceil(per) as u32,
        descriptor: vec![
            t(op.a),
            t(op.b),
            t(op.output),
            n,
            per as u32,
            op.a_multiplier as u32,
            op.b_multiplier as u32,
            op.shift as u32,
            op.zero_point as u32,
            op.lo as u32,
            op.hi as u32,
        ],
    }
}

/// The whole sum on the memory image (the kernel's arithmetic: wrapping
/// shifts by `s mod 64`, clamp to `lo` then to `hi`).
pub fn run_add(op: &Add, p: &Program, mem: &mut [u8]) {
    let n = p.tensors[op.output].len() as usize;
    let (a, b) = (
        p.tensors[op.a].offset as usize,
        p.tensors[op.b].offset as usize,
    );
    let out = p.tensors[op.output].offset as usize;
    let (ma, mb) = (i64::from(op.a_multiplier), i64::from(op.b_multiplier));
    let s = op.shift as u32;
    let r = 1i64.wrapping_shl(s.wrapping_sub(1));
    let (zp, lo, hi) = (i64::from(op.zero_point), i64::from(op.lo), i64::from(op.hi));
    for i in 0..n {
        let x = i64::from(mem[a + i] as i8) * ma + i64::from(mem[b + i] as i8) * mb;
        let q = x.wrapping_add(r).wrapping_shr(s).wrapping_add(zp);
        mem[out + i] = q.max(lo).min(hi) as u8;
    }
}

/// Descriptor words: in, table, out, n, per. About 7 fuel per element,
/// 8.5 with the loop.
pub const LUT_KERNEL: Kernel = Kernel {
    name: "lut",
    wat: r#"
  (func $lut (param $d i32) (param $u i32)
    (local $pi i32) (local $po i32) (local $tb i32) (local $e8 i32) (local $end i32) (local $t i32)
    (local.set $t (i32.mul (local.get $u) (i32.load offset=16 (local.get $d))))
    (local.set $end (i32.add (local.get $t) (i32.load offset=16 (local.get $d))))
    (local.set $end (select (i32.load offset=12 (local.get $d)) (local.get $end)
      (i32.gt_u (local.get $end) (i32.load offset=12 (local.get $d)))))
    (local.set $pi (i32.add (i32.load offset=0 (local.get $d)) (local.get $t)))
    (local.set $tb (i32.load offset=4 (local.get $d)))
    (local.set $po (i32.add (i32.load offset=8 (local.get $d)) (local.get $t)))
    (local.set $e8 (i32.add (local.get $po) (i32.and (i32.sub (local.get $end) (local.get $t)) (i32.const -8))))
    (local.set $end (i32.add (i32.load offset=8 (local.get $d)) (local.get $end)))
    (block $b8
      (br_if $b8 (i32.ge_u (local.get $po) (local.get $e8)))
      (loop $l8
        (i32.store8 offset=0 (local.get $po) (i32.load8_u (i32.add (local.get $tb) (i32.load8_u offset=0 (local.get $pi)))))
        (i32.store8 offset=1 (local.get $po) (i32.load8_u (i32.add (local.get $tb) (i32.load8_u offset=1 (local.get $pi)))))
        (i32.store8 offset=2 (local.get $po) (i32.load8_u (i32.add (local.get $tb) (i32.load8_u offset=2 (local.get $pi)))))
        (i32.store8 offset=3 (local.get $po) (i32.load8_u (i32.add (local.get $tb) (i32.load8_u offset=3 (local.get $pi)))))
        (i32.store8 offset=4 (local.get $po) (i32.load8_u (i32.add (local.get $tb) (i32.load8_u offset=4 (local.get $pi)))))
        (i32.store8 offset=5 (local.get $po) (i32.load8_u (i32.add (local.get $tb) (i32.load8_u offset=5 (local.get $pi)))))
        (i32.store8 offset=6 (local.get $po) (i32.load8_u (i32.add (local.get $tb) (i32.load8_u offset=6 (local.get $pi)))))
        (i32.store8 offset=7 (local.get $po) (i32.load8_u (i32.add (local.get $tb) (i32.load8_u offset=7 (local.get $pi)))))
        (local.set $pi (i32.add (local.get $pi) (i32.const 8)))
        (local.set $po (i32.add (local.get $po) (i32.const 8)))
        (br_if $l8 (i32.lt_u (local.get $po) (local.get $e8)))))
    (block $b1
      (br_if $b1 (i32.ge_u (local.get $po) (local.get $end)))
      (loop $l1
        (i32.store8 (local.get $po) (i32.load8_u (i32.add (local.get $tb) (i32.load8_u (local.get $pi)))))
        (local.set $pi (i32.add (local.get $pi) (i32.const 1)))
        (local.set $po (i32.add (local.get $po) (i32.const 1)))
        (br_if $l1 (i32.lt_u (local.get $po) (local.get $end))))))
"#,
};

/// Splits the lookup into element ranges (about 8.5 fuel and 2 bytes each,
/// plus the 256-byte table).
pub fn schedule_lut(op: &Lut, p: &Program, budget: &Budget) -> Scheduled {
    let n = p.tensors[op.output].len();
    let per = per_unit(u64::from(n), budget, 60, 17, 2, 256);
    let t = |id: usize| p.tensors[id].offset;
    Scheduled {
        kernel: LUT_KERNEL.name,
        units: u64::from(n).div_ceil(per) as u32,
        descriptor: vec![t(op.input), t(op.table), t(op.output), n, per as u32],
    }
}

/// The whole lookup on the memory image.
pub fn run_lut(op: &Lut, p: &Program, mem: &mut [u8]) {
    let n = p.tensors[op.output].len() as usize;
    let inp = p.tensors[op.input].offset as usize;
    let table = p.tensors[op.table].offset as usize;
    let out = p.tensors[op.output].offset as usize;
    for i in 0..n {
        mem[out + i] = mem[table + mem[inp + i] as usize];
    }
}

//! A function of an `i16` by linear interpolation between 1025 `i32` knots
//! (see [`crate::ir::Interp`]): GELU and other smooth functions on 16-bit
//! activations, with a 4 KiB table instead of a 64 Ki-entry one (so a step
//! touches few memory chunks).
//!
//! A unit is a range of `per` elements; the loop has a static bound and the
//! clamp uses `select`, so the fuel is the same for every input.

use crate::ir::{Interp, Program};
use crate::ops::family::{Budget, Kernel, Scheduled};
use crate::ops::mem::read_i32;

/// Descriptor words: in, table, out, n, per, lo, hi. About 40 fuel per
/// element.
pub const KERNEL: Kernel = Kernel {
    name: "interp",
    wat: r#"
  (func $interp (param $d i32) (param $u i32)
    (local $i i32) (local $end i32) (local $v i32) (local $pt i32)
    (local $t0 i64) (local $q i64) (local $lo i64) (local $hi i64)
    (local.set $lo (i64.load32_s offset=20 (local.get $d)))
    (local.set $hi (i64.load32_s offset=24 (local.get $d)))
    (local.set $i (i32.mul (local.get $u) (i32.load offset=16 (local.get $d))))
    (local.set $end (i32.add (local.get $i) (i32.load offset=16 (local.get $d))))
    (local.set $end (select (i32.load offset=12 (local.get $d)) (local.get $end)
      (i32.gt_u (local.get $end) (i32.load offset=12 (local.get $d)))))
    (block $done
      (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
      (loop $el
        ;; u = in + 32768; knot h = u >> 6 at table + 4 h; f = u & 63
        (local.set $v (i32.add (i32.load16_s (i32.add (i32.load offset=0 (local.get $d))
          (i32.shl (local.get $i) (i32.const 1)))) (i32.const 32768)))
        (local.set $pt (i32.add (i32.load offset=4 (local.get $d))
          (i32.shl (i32.shr_u (local.get $v) (i32.const 6)) (i32.const 2))))
        (local.set $t0 (i64.load32_s (local.get $pt)))
        (local.set $q (i64.add (local.get $t0) (i64.shr_s
          (i64.add (i64.mul (i64.sub (i64.load32_s offset=4 (local.get $pt)) (local.get $t0))
                            (i64.extend_i32_u (i32.and (local.get $v) (i32.const 63))))
                   (i64.const 32))
          (i64.const 6))))
        (local.set $q (select (local.get $lo) (local.get $q) (i64.lt_s (local.get $q) (local.get $lo))))
        (local.set $q (select (local.get $hi) (local.get $q) (i64.gt_s (local.get $q) (local.get $hi))))
        (i64.store16 (i32.add (i32.load offset=8 (local.get $d)) (i32.shl (local.get $i) (i32.const 1)))
          (local.get $q))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $el (i32.lt_u (local.get $i) (local.get $end))))))
"#,
};

/// Splits the op into element ranges (about 40 fuel and 4 bytes each, plus
/// the 4100-byte table).
pub fn schedule(op: &Interp, p: &Program, budget: &Budget) -> Scheduled {
    let n = u64::from(p.tensors[op.output].len());
    let by_fuel = budget.unit_fuel.saturating_sub(60) / 40;
    let by_bytes = budget.unit_bytes.saturating_sub(4100) / 4;
    let per = by_fuel.min(by_bytes).clamp(8, n.max(8));
    let t = |id: usize| p.tensors[id].offset;
    Scheduled {
        kernel: KERNEL.name,
        units: n.div_ceil(per) as u32,
        descriptor: vec![
            t(op.input),
            t(op.table),
            t(op.output),
            n as u32,
            per as u32,
            op.lo as u32,
            op.hi as u32,
        ],
    }
}

/// `out` of [`Interp`] for one input.
pub fn interp(table: impl Fn(usize) -> i32, x: i16, lo: i32, hi: i32) -> i16 {
    let u = (i32::from(x) + 32768) as usize;
    let (h, f) = (u >> 6, (u & 63) as i64);
    let t0 = i64::from(table(h));
    let t1 = i64::from(table(h + 1));
    let q = t0 + (((t1 - t0) * f + 32) >> 6);
    q.clamp(i64::from(lo), i64::from(hi)) as i16
}

/// The whole op on the memory image.
pub fn run_native(op: &Interp, p: &Program, mem: &mut [u8]) {
    let n = p.tensors[op.output].len() as usize;
    let inp = p.tensors[op.input].offset as usize;
    let tb = p.tensors[op.table].offset as usize;
    let out = p.tensors[op.output].offset as usize;
    for i in 0..n {
        let x = i16::from_le_bytes([mem[inp + 2 * i], mem[inp + 2 * i + 1]]);
        let q = interp(|h| read_i32(mem, tb + 4 * h), x, op.lo, op.hi);
        mem[out + 2 * i..out + 2 * i + 2].copy_from_slice(&q.to_le_bytes());
    }
}

//! ChannelMul: `out[c, p] = clamp(((a[c, p] * s[c]) * m + 2^(sh-1)) >> sh
//! + zp, lo, hi)` (see [`crate::ir::ChannelMul`]).
//!
//! A unit is the contiguous element range `[u * per, min(n, (u + 1) * per))`
//! of the flattened `[C, P]` tensor (`n = C * P`). The kernel starts at
//! channel `t / P`, position `t % P`, and walks the range one element at a
//! time, stepping to the next channel with integer arithmetic (`ps +=
//! (pos == P)`, `pos = select(0, pos, pos == P)`): no branch depends on the
//! data, and the loop bound depends only on `n`, `per` and the unit.

use crate::ir::{ChannelMul, Program};
use crate::ops::family::{Budget, Kernel, Scheduled};

/// Descriptor words: a, s, out, n, per, P, m, sh, zp, lo, hi. About 40
/// fuel per element.
pub const KERNEL: Kernel = Kernel {
    name: "channel_mul",
    wat: r#"
  (func $channel_mul (param $d i32) (param $u i32)
    (local $t i32) (local $end i32) (local $pa i32) (local $po i32) (local $ps i32)
    (local $pos i32) (local $p i32)
    (local $m i64) (local $s i64) (local $r i64) (local $zp i64) (local $lo i64) (local $hi i64)
    (local $q i64)
    (local.set $t (i32.mul (local.get $u) (i32.load offset=16 (local.get $d))))
    (local.set $end (i32.add (local.get $t) (i32.load offset=16 (local.get $d))))
    (local.set $end (select (i32.load offset=12 (local.get $d)) (local.get $end)
      (i32.gt_u (local.get $end) (i32.load offset=12 (local.get $d)))))
    (local.set $p (i32.load offset=20 (local.get $d)))
    (local.set $ps (i32.add (i32.load offset=4 (local.get $d)) (i32.div_u (local.get $t) (local.get $p))))
    (local.set $pos (i32.rem_u (local.get $t) (local.get $p)))
    (local.set $pa (i32.add (i32.load offset=0 (local.get $d)) (local.get $t)))
    (local.set $po (i32.add (i32.load offset=8 (local.get $d)) (local.get $t)))
    (local.set $end (i32.add (i32.load offset=8 (local.get $d)) (local.get $end)))
    (local.set $m (i64.load32_s offset=24 (local.get $d)))
    (local.set $s (i64.load32_s offset=28 (local.get $d)))
    (local.set $r (i64.shl (i64.const 1) (i64.sub (local.get $s) (i64.const 1))))
    (local.set $zp (i64.load32_s offset=32 (local.get $d)))
    (local.set $lo (i64.load32_s offset=36 (local.get $d)))
    (local.set $hi (i64.load32_s offset=40 (local.get $d)))
    (block $b1
      (br_if $b1 (i32.ge_u (local.get $po) (local.get $end)))
      (loop $l1
        (local.set $q (i64.add (i64.shr_s (i64.add (i64.mul
          (i64.mul (i64.load8_s (local.get $pa)) (i64.load8_s (local.get $ps)))
          (local.get $m)) (local.get $r)) (local.get $s)) (local.get $zp)))
        (local.set $q (select (local.get $lo) (local.get $q) (i64.lt_s (local.get $q) (local.get $lo))))
        (i64.store8 (local.get $po) (select (local.get $hi) (local.get $q) (i64.gt_s (local.get $q) (local.get $hi))))
        (local.set $pa (i32.add (local.get $pa) (i32.const 1)))
        (local.set $po (i32.add (local.get $po) (i32.const 1)))
        (local.set $pos (i32.add (local.get $pos) (i32.const 1)))
        (local.set $ps (i32.add (local.get $ps) (i32.eq (local.get $pos) (local.get $p))))
        (local.set $pos (select (i32.const 0) (local.get $pos) (i32.eq (local.get $pos) (local.get $p))))
        (br_if $l1 (i32.lt_u (local.get $po) (local.get $end))))))
"#,
};

/// Splits the product into element ranges (about 40 fuel and 2 bytes each,
/// plus the scales).
pub fn schedule(op: &ChannelMul, p: &Program, budget: &Budget) -> Scheduled {
    let n = u64::from(op.channels) * u64::from(op.inner);
    let by_fuel = budget.unit_fuel.saturating_sub(100) / 40;
    let by_bytes = budget.unit_bytes.saturating_sub(u64::from(op.channels)) / 2;
    let per = by_fuel.min(by_bytes).clamp(1, n.max(1));
    let t = |id: usize| p.tensors[id].offset;
    Scheduled {
        kernel: KERNEL.name,
        units: n.div_ceil(per) as u32,
        descriptor: vec![
            t(op.a),
            t(op.scale),
            t(op.output),
            n as u32,
            per as u32,
            op.inner,
            op.multiplier as u32,
            op.shift as u32,
            op.zero_point as u32,
            op.lo as u32,
            op.hi as u32,
        ],
    }
}

/// The whole product on the memory image (the kernel's arithmetic).
pub fn run_native(op: &ChannelMul, p: &Program, mem: &mut [u8]) {
    let t = |id: usize| p.tensors[id].offset as usize;
    let (a, s, out) = (t(op.a), t(op.scale), t(op.output));
    let (c, inner) = (op.channels as usize, op.inner as usize);
    let m = i64::from(op.multiplier);
    let sh = op.shift as u32;
    let r = 1i64.wrapping_shl(sh.wrapping_sub(1));
    let (zp, lo, hi) = (i64::from(op.zero_point), i64::from(op.lo), i64::from(op.hi));
    for ch in 0..c {
        let sc = i64::from(mem[s + ch] as i8);
        for i in ch * inner..(ch + 1) * inner {
            let x = i64::from(mem[a + i] as i8) * sc * m;
            let q = x.wrapping_add(r).wrapping_shr(sh).wrapping_add(zp);
            mem[out + i] = q.max(lo).min(hi) as u8;
        }
    }
}

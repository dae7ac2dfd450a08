//! AveragePool (see [`crate::ir::AvgPool`]): the sum of each window's
//! positions inside the input, requantized with the multiplier and shift
//! of the window's count (`1 / n` folded into an exact multiplier per
//! distinct count).
//!
//! A unit is a block of `cb` channels by `rb` output rows, as for max
//! pooling (`cb > 1` only when `rb = OH`). The window is clipped to the
//! input, and its count to the input or the padded input, with `select`;
//! loop bounds depend only on the output position, so the fuel is the same
//! for every input.

use crate::error::LowerError;
use crate::ir::{AvgPool, DType, Program};
use crate::ops::family::{Budget, Kernel, Scheduled};
use crate::ops::mem::read_i32;
use crate::validate::window_out;

/// Descriptor words: in, out, C, H, W, OH, OW, KH, KW, sh, sw, pt, pl, cb,
/// rb, multipliers, shifts, lo, hi, and the counted area: ylo, yhi, xlo,
/// xhi (the input, or the padded input). About 100 fuel per output, 25
/// per window row and 14 per window position.
pub const KERNEL: Kernel = Kernel {
    name: "avg_pool",
    wat: r#"
  (func $avg_pool (param $d i32) (param $u i32)
    (local $c i32) (local $c1 i32) (local $h i32) (local $w i32) (local $oh i32) (local $ow i32)
    (local $kh i32) (local $kw i32) (local $nrb i32) (local $y0 i32) (local $y1 i32) (local $y i32)
    (local $x i32) (local $chan i32) (local $po i32) (local $t i32) (local $ty i32) (local $tx i32)
    (local $a0 i32) (local $a1 i32) (local $b0 i32) (local $b1 i32) (local $n i32) (local $iy i32)
    (local $p i32) (local $pe i32) (local $sum i32) (local $cy i32) (local $s i64) (local $q i64)
    (local.set $h (i32.load offset=12 (local.get $d)))
    (local.set $w (i32.load offset=16 (local.get $d)))
    (local.set $oh (i32.load offset=20 (local.get $d)))
    (local.set $ow (i32.load offset=24 (local.get $d)))
    (local.set $kh (i32.load offset=28 (local.get $d)))
    (local.set $kw (i32.load offset=32 (local.get $d)))
    ;; rows [y0, y1) of channels [c, c1)
    (local.set $t (i32.load offset=56 (local.get $d)))
    (local.set $nrb (i32.div_u (i32.sub (i32.add (local.get $oh) (local.get $t)) (i32.const 1)) (local.get $t)))
    (local.set $y0 (i32.mul (i32.rem_u (local.get $u) (local.get $nrb)) (local.get $t)))
    (local.set $y1 (i32.add (local.get $y0) (local.get $t)))
    (local.set $y1 (select (local.get $oh) (local.get $y1) (i32.gt_u (local.get $y1) (local.get $oh))))
    (local.set $t (i32.load offset=52 (local.get $d)))
    (local.set $c (i32.mul (i32.div_u (local.get $u) (local.get $nrb)) (local.get $t)))
    (local.set $c1 (i32.add (local.get $c) (local.get $t)))
    (local.set $t (i32.load offset=8 (local.get $d)))
    (local.set $c1 (select (local.get $t) (local.get $c1) (i32.gt_u (local.get $c1) (local.get $t))))
    (loop $chans
      (local.set $chan (i32.add (i32.load offset=0 (local.get $d))
        (i32.mul (local.get $c) (i32.mul (local.get $h) (local.get $w)))))
      (local.set $po (i32.add (i32.load offset=4 (local.get $d))
        (i32.mul (i32.add (i32.mul (local.get $c) (local.get $oh)) (local.get $y0)) (local.get $ow))))
      (local.set $y (local.get $y0))
      (loop $rows
        ;; window rows: summed [a0, a1) (inside the input), counted cy
        (local.set $ty (i32.sub (i32.mul (local.get $y) (i32.load offset=36 (local.get $d)))
          (i32.load offset=44 (local.get $d))))
        (local.set $a0 (select (local.get $ty) (i32.const 0) (i32.gt_s (local.get $ty) (i32.const 0))))
        (local.set $a1 (i32.add (local.get $ty) (local.get $kh)))
        (local.set $a1 (select (local.get $h) (local.get $a1) (i32.gt_s (local.get $a1) (local.get $h))))
        (local.set $a1 (select (local.get $a1) (local.get $a0) (i32.gt_s (local.get $a1) (local.get $a0))))
        (local.set $t (i32.load offset=76 (local.get $d)))
        (local.set $cy (select (local.get $ty) (local.get $t) (i32.gt_s (local.get $ty) (local.get $t))))
        (local.set $t (i32.add (local.get $ty) (local.get $kh)))
        (local.set $n (i32.load offset=80 (local.get $d)))
        (local.set $t (select (local.get $n) (local.get $t) (i32.gt_s (local.get $t) (local.get $n))))
        (local.set $cy (i32.sub (local.get $t) (local.get $cy)))
        (local.set $cy (select (local.get $cy) (i32.const 0) (i32.gt_s (local.get $cy) (i32.const 0))))
        (local.set $tx (i32.sub (i32.const 0) (i32.load offset=48 (local.get $d))))
        (local.set $x (i32.const 0))
        (loop $cols
          ;; window columns: summed [b0, b1), counted n
          (local.set $b0 (select (local.get $tx) (i32.const 0) (i32.gt_s (local.get $tx) (i32.const 0))))
          (local.set $b1 (i32.add (local.get $tx) (local.get $kw)))
          (local.set $b1 (select (local.get $w) (local.get $b1) (i32.gt_s (local.get $b1) (local.get $w))))
          (local.set $b1 (select (local.get $b1) (local.get $b0) (i32.gt_s (local.get $b1) (local.get $b0))))
          (local.set $t (i32.load offset=84 (local.get $d)))
          (local.set $n (select (local.get $tx) (local.get $t) (i32.gt_s (local.get $tx) (local.get $t))))
          (local.set $t (i32.add (local.get $tx) (local.get $kw)))
          (local.set $iy (i32.load offset=88 (local.get $d)))
          (local.set $t (select (local.get $iy) (local.get $t) (i32.gt_s (local.get $t) (local.get $iy))))
          (local.set $n (i32.sub (local.get $t) (local.get $n)))
          (local.set $n (select (local.get $n) (i32.const 0) (i32.gt_s (local.get $n) (i32.const 0))))
          (local.set $n (i32.mul (local.get $n) (local.get $cy)))
          (local.set $sum (i32.const 0))
          (local.set $iy (local.get $a0))
          (block $wdone
            (br_if $wdone (i32.ge_s (local.get $iy) (local.get $a1)))
            (br_if $wdone (i32.ge_s (local.get $b0) (local.get $b1)))
            (loop $wrows
              (local.set $p (i32.add (local.get $chan) (i32.add (i32.mul (local.get $iy) (local.get $w)) (local.get $b0))))
              (local.set $pe (i32.add (local.get $p) (i32.sub (local.get $b1) (local.get $b0))))
              (loop $wcols
                (local.set $sum (i32.add (local.get $sum) (i32.load8_s (local.get $p))))
                (local.set $p (i32.add (local.get $p) (i32.const 1)))
                (br_if $wcols (i32.lt_u (local.get $p) (local.get $pe))))
              (local.set $iy (i32.add (local.get $iy) (i32.const 1)))
              (br_if $wrows (i32.lt_s (local.get $iy) (local.get $a1)))))
          ;; q = clamp((sum * m[n] + 2^(s[n]-1)) >> s[n], lo, hi)
          (local.set $s (i64.load32_s (i32.add (i32.load offset=64 (local.get $d)) (i32.shl (local.get $n) (i32.const 2)))))
          (local.set $q (i64.shr_s
            (i64.add
              (i64.mul (i64.extend_i32_s (local.get $sum))
                (i64.load32_s (i32.add (i32.load offset=60 (local.get $d)) (i32.shl (local.get $n) (i32.const 2)))))
              (i64.shl (i64.const 1) (i64.sub (local.get $s) (i64.const 1))))
            (local.get $s)))
          (local.set $q (select (i64.load32_s offset=68 (local.get $d)) (local.get $q)
            (i64.lt_s (local.get $q) (i64.load32_s offset=68 (local.get $d)))))
          (local.set $q (select (i64.load32_s offset=72 (local.get $d)) (local.get $q)
            (i64.gt_s (local.get $q) (i64.load32_s offset=72 (local.get $d)))))
          (i64.store8 (local.get $po) (local.get $q))
          (local.set $po (i32.add (local.get $po) (i32.const 1)))
          (local.set $tx (i32.add (local.get $tx) (i32.load offset=40 (local.get $d))))
          (local.set $x (i32.add (local.get $x) (i32.const 1)))
          (br_if $cols (i32.lt_u (local.get $x) (local.get $ow))))
        (local.set $y (i32.add (local.get $y) (i32.const 1)))
        (br_if $rows (i32.lt_u (local.get $y) (local.get $y1))))
      (local.set $c (i32.add (local.get $c) (i32.const 1)))
      (br_if $chans (i32.lt_u (local.get $c) (local.get $c1)))))
"#,
};

/// The last three dimensions of a shape, missing leading ones taken as 1.
fn chw(shape: &[u32]) -> [u32; 3] {
    let mut d = [1u32; 3];
    for (slot, v) in d.iter_mut().rev().zip(shape.iter().rev()) {
        *slot = *v;
    }
    d
}

/// The counted area `[ylo, yhi, xlo, xhi]` of the op.
fn counted(op: &AvgPool, h: u32, w: u32) -> [i32; 4] {
    if op.count_include_pad {
        let p = op.pad.map(|v| v as i32);
        [-p[0], h as i32 + p[2], -p[1], w as i32 + p[3]]
    } else {
        [0, h as i32, 0, w as i32]
    }
}

/// Splits the pooling into blocks of channels by output rows.
pub fn schedule(op: &AvgPool, p: &Program, budget: &Budget) -> Scheduled {
    let [c, h, w] = chw(&p.tensors[op.input].shape);
    let [_, oh, ow] = chw(&p.tensors[op.output].shape);
    let (kh, kw) = (u64::from(op.kernel[0]), u64::from(op.kernel[1]));
    let (c64, h64, w64, oh64, ow64) = (c as u64, h as u64, w as u64, oh as u64, ow as u64);
    let sh = u64::from(op.stride[0]).max(1);
    let fuel = budget.unit_fuel.saturating_sub(100);
    let tables = 8 * (kh * kw + 1);
    let row_fuel = 40 + ow64 * (100 + kh * (25 + 14 * kw));
    let rb_bytes = budget.unit_bytes.saturating_sub(kh * w64 + tables)
        / (ow64 + sh.min(kh.max(1)) * w64).max(1);
    let rb = (fuel / row_fuel).min(rb_bytes).max(1).min(oh64.max(1));
    let cb = if rb == oh64 {
        let chan_fuel = 30 + oh64 * row_fuel;
        let chan_bytes = (oh64 * ow64 + h64 * w64).max(1);
        (fuel / chan_fuel)
            .min(budget.unit_bytes.saturating_sub(tables) / chan_bytes)
            .max(1)
            .min(c64.max(1))
    } else {
        1
    };
    let t = |id: usize| p.tensors[id].offset;
    let mut desc = vec![
        t(op.input),
        t(op.output),
        c,
        h,
        w,
        oh,
        ow,
        op.kernel[0],
        op.kernel[1],
        op.stride[0],
        op.stride[1],
        op.pad[0],
        op.pad[1],
        cb as u32,
        rb as u32,
        t(op.multiplier),
        t(op.shift),
        op.lo as u32,
        op.hi as u32,
    ];
    desc.extend(counted(op, h, w).map(|v| v as u32));
    Scheduled {
        kernel: KERNEL.name,
        units: (c64.div_ceil(cb) * oh64.div_ceil(rb)) as u32,
        descriptor: desc,
    }
}

/// The whole pooling on the memory image.
pub fn run_native(op: &AvgPool, p: &Program, mem: &mut [u8]) {
    let [c, h, w] = chw(&p.tensors[op.input].shape).map(i64::from);
    let [_, oh, ow] = chw(&p.tensors[op.output].shape).map(i64::from);
    let [kh, kw] = op.kernel.map(i64::from);
    let [sh, sw] = op.stride.map(i64::from);
    let (pt, pl) = (i64::from(op.pad[0]), i64::from(op.pad[1]));
    let [ylo, yhi, xlo, xhi] = counted(op, h as u32, w as u32).map(i64::from);
    let inp = p.tensors[op.input].offset as usize;
    let (mt, st) = (
        p.tensors[op.multiplier].offset as usize,
        p.tensors[op.shift].offset as usize,
    );
    let mut at = p.tensors[op.output].offset as usize;
    for ch in 0..c {
        for y in 0..oh {
            let ty = y * sh - pt;
            let cy = ((ty + kh).min(yhi) - ty.max(ylo)).max(0);
            for x in 0..ow {
                let tx = x * sw - pl;
                let n = (((tx + kw).min(xhi) - tx.max(xlo)).max(0) * cy) as usize;
                let mut sum = 0i64;
                for iy in ty.max(0)..(ty + kh).min(h) {
                    for ix in tx.max(0)..(tx + kw).min(w) {
                        sum += i64::from(mem[inp + ((ch * h + iy) * w + ix) as usize] as i8);
                    }
                }
                let (m, s) = (read_i32(mem, mt + 4 * n), read_i32(mem, st + 4 * n) as u32);
                let q = (sum * i64::from(m) + (1i64 << (s - 1))) >> s;
                mem[at] = q.clamp(i64::from(op.lo), i64::from(op.hi)) as u8;
                at += 1;
            }
        }
    }
}

/// Checks shapes, padding (smaller than the kernel), window counts and the
/// per-count requantization tables.
pub fn validate(p: &Program, node: &str, op: &AvgPool, image: &[u8]) -> Result<(), LowerError> {
    let bad = |m: &str| LowerError::InvalidProgram(format!("node {node}: {m}"));
    let get = |id: usize| {
        p.tensors
            .get(id)
            .ok_or_else(|| bad("tensor does not exist"))
    };
    let (i, o) = (get(op.input)?, get(op.output)?);
    let (is, os) = (&i.shape, &o.shape);
    if is.len() != 4 || os.len() != 4 || is[0] != 1 || os[0] != 1 || is[1] != os[1] {
        return Err(bad(
            "avg_pool tensors must be 4-D with batch 1 and equal channels",
        ));
    }
    if i.dtype != DType::I8 || o.dtype != DType::I8 {
        return Err(bad("avg_pool tensors must be i8"));
    }
    let [kh, kw] = op.kernel;
    if op.pad[0] >= kh || op.pad[2] >= kh || op.pad[1] >= kw || op.pad[3] >= kw {
        return Err(bad("avg_pool padding must be smaller than the kernel"));
    }
    let count = u64::from(kh) * u64::from(kw);
    if count == 0 || count > 1 << 20 {
        return Err(bad("avg_pool kernel size out of range"));
    }
    let oh = window_out(is[2], kh, op.stride[0], op.pad[0], op.pad[2], 1);
    let ow = window_out(is[3], kw, op.stride[1], op.pad[1], op.pad[3], 1);
    if oh != Some(os[2]) || ow != Some(os[3]) {
        return Err(bad(
            "avg_pool output shape does not follow from input and kernel",
        ));
    }
    for id in [op.multiplier, op.shift] {
        let t = get(id)?;
        if t.dtype != DType::I32 || u64::from(t.len()) != count + 1 {
            return Err(bad("avg_pool tables must be i32 [KH * KW + 1]"));
        }
    }
    let (m, s) = (
        p.tensors[op.multiplier].offset as usize,
        p.tensors[op.shift].offset as usize,
    );
    for n in 0..=count as usize {
        if read_i32(image, m + 4 * n) < 0 || !(1..=62).contains(&read_i32(image, s + 4 * n)) {
            return Err(bad("avg_pool requantization out of range"));
        }
    }
    if op.lo > op.hi || !(-128..=127).contains(&op.lo) || !(-128..=127).contains(&op.hi) {
        return Err(bad("avg_pool clamp is not an i8 range"));
    }
    Ok(())
}

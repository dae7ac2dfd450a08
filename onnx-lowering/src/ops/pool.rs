//! MaxPool: `out[c, y, x]` = max of `in[c, y*sh - pt + ky, x*sw - pl + kx]`
//! over the kernel positions inside the input (padding is ignored).
//!
//! A unit is a block of `cb` channels by `rb` output rows: unit `u` is
//! channel block `u / nrb`, row block `u % nrb` (`nrb = ceil(OH / rb)`).
//! `cb > 1` only when `rb = OH`, so a unit's outputs are contiguous.
//!
//! The kernel clips each window to the input with `select`, starts from
//! `-128` and takes the maximum with `select`, so its fuel depends only on
//! the output position, never on the data. A window row of `n` bytes is
//! read 8 bytes per iteration while 8 remain (only when `n >= 8`), and its
//! last `n % 8` bytes by jumping into an unrolled run of 7 loads through a
//! `br_table` whose index depends only on the window's position. An empty
//! window (impossible for a valid op) yields `-128` on both engines.

use crate::ir::{MaxPool, Program};
use crate::ops::family::{Budget, Kernel, Scheduled};

/// Descriptor words: in, out, C, H, W, OH, OW, KH, KW, sh, sw, pt, pl, cb, rb.
pub const KERNEL: Kernel = Kernel {
    name: "maxpool",
    wat: r#"
  (func $maxpool (param $d i32) (param $u i32)
    (local $c i32) (local $c1 i32) (local $h i32) (local $w i32) (local $oh i32) (local $ow i32)
    (local $kh i32) (local $kw i32) (local $sh i32) (local $sw i32) (local $pl i32) (local $nrb i32)
    (local $y0 i32) (local $y1 i32) (local $y i32) (local $x i32) (local $chan i32) (local $po i32)
    (local $ty i32) (local $tx i32) (local $base i32) (local $span i32) (local $ix0 i32) (local $n i32)
    (local $q i32) (local $qend i32) (local $p i32) (local $pe i32) (local $j i32) (local $m i32) (local $v i32)
    (local $t i32)
    (local.set $h (i32.load offset=12 (local.get $d)))
    (local.set $w (i32.load offset=16 (local.get $d)))
    (local.set $oh (i32.load offset=20 (local.get $d)))
    (local.set $ow (i32.load offset=24 (local.get $d)))
    (local.set $kh (i32.load offset=28 (local.get $d)))
    (local.set $kw (i32.load offset=32 (local.get $d)))
    (local.set $sh (i32.load offset=36 (local.get $d)))
    (local.set $sw (i32.load offset=40 (local.get $d)))
    (local.set $pl (i32.load offset=48 (local.get $d)))
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
        ;; window rows [ty, t): ty = max(0, y*sh - pt), t = max(ty, min(h, y*sh - pt + kh))
        (local.set $ty (i32.sub (i32.mul (local.get $y) (local.get $sh)) (i32.load offset=44 (local.get $d))))
        (local.set $t (i32.add (local.get $ty) (local.get $kh)))
        (local.set $t (select (local.get $h) (local.get $t) (i32.gt_s (local.get $t) (local.get $h))))
        (local.set $ty (select (local.get $ty) (i32.const 0) (i32.gt_s (local.get $ty) (i32.const 0))))
        (local.set $t (select (local.get $t) (local.get $ty) (i32.gt_s (local.get $t) (local.get $ty))))
        (local.set $base (i32.add (local.get $chan) (i32.mul (local.get $ty) (local.get $w))))
        (local.set $span (i32.mul (i32.sub (local.get $t) (local.get $ty)) (local.get $w)))
        (local.set $tx (i32.sub (i32.const 0) (local.get $pl)))
        (local.set $x (i32.const 0))
        (loop $cols
          ;; window columns [ix0, ix0 + n): ix0 = max(0, tx), n = max(0, min(w, tx + kw) - ix0)
          (local.set $t (i32.add (local.get $tx) (local.get $kw)))
          (local.set $t (select (local.get $w) (local.get $t) (i32.gt_s (local.get $t) (local.get $w))))
          (local.set $ix0 (select (local.get $tx) (i32.const 0) (i32.gt_s (local.get $tx) (i32.const 0))))
          (local.set $n (i32.sub (local.get $t) (local.get $ix0)))
          (local.set $n (select (local.get $n) (i32.const 0) (i32.gt_s (local.get $n) (i32.const 0))))
          ;; per window row: the last n % 8 bytes are offsets j+1..7 of q = row + ix0 + n - 8
          (local.set $q (i32.add (i32.add (local.get $base) (local.get $ix0)) (i32.sub (local.get $n) (i32.const 8))))
          (local.set $qend (i32.add (local.get $q) (local.get $span)))
          (local.set $j (i32.sub (i32.const 7) (i32.and (local.get $n) (i32.const 7))))
          (local.set $m (i32.const -128))
          (block $wdone
            (br_if $wdone (i32.ge_u (local.get $q) (local.get $qend)))
            (if (i32.lt_u (local.get $n) (i32.const 8))
              (then
                (loop $short
                  (block $a7 (block $a6 (block $a5 (block $a4 (block $a3 (block $a2 (block $a1 (block $a0
                    (br_table $a0 $a1 $a2 $a3 $a4 $a5 $a6 $a7 (local.get $j)))
                    (local.set $m (select (local.tee $v (i32.load8_s offset=1 (local.get $q))) (local.get $m) (i32.gt_s (local.get $v) (local.get $m)))))
                    (local.set $m (select (local.tee $v (i32.load8_s offset=2 (local.get $q))) (local.get $m) (i32.gt_s (local.get $v) (local.get $m)))))
                    (local.set $m (select (local.tee $v (i32.load8_s offset=3 (local.get $q))) (local.get $m) (i32.gt_s (local.get $v) (local.get $m)))))
                    (local.set $m (select (local.tee $v (i32.load8_s offset=4 (local.get $q))) (local.get $m) (i32.gt_s (local.get $v) (local.get $m)))))
                    (local.set $m (select (local.tee $v (i32.load8_s offset=5 (local.get $q))) (local.get $m) (i32.gt_s (local.get $v) (local.get $m)))))
                    (local.set $m (select (local.tee $v (i32.load8_s offset=6 (local.get $q))) (local.get $m) (i32.gt_s (local.get $v) (local.get $m)))))
                    (local.set $m (select (local.tee $v (i32.load8_s offset=7 (local.get $q))) (local.get $m) (i32.gt_s (local.get $v) (local.get $m)))))
                  (local.set $q (i32.add (local.get $q) (local.get $w)))
                  (br_if $short (i32.lt_u (local.get $q) (local.get $qend)))))
              (else
                (loop $long
                  ;; the first n & -8 bytes, 8 per iteration, from p = row + ix0
                  (local.set $p (i32.sub (local.get $q) (i32.sub (local.get $n) (i32.const 8))))
                  (local.set $pe (i32.add (local.get $p) (i32.and (local.get $n) (i32.const -8))))
                  (loop $big
                    (local.set $m (select (local.tee $v (i32.load8_s offset=0 (local.get $p))) (local.get $m) (i32.gt_s (local.get $v) (local.get $m))))
                    (local.set $m (select (local.tee $v (i32.load8_s offset=1 (local.get $p))) (local.get $m) (i32.gt_s (local.get $v) (local.get $m))))
                    (local.set $m (select (local.tee $v (i32.load8_s offset=2 (local.get $p))) (local.get $m) (i32.gt_s (local.get $v) (local.get $m))))
                    (local.set $m (select (local.tee $v (i32.load8_s offset=3 (local.get $p))) (local.get $m) (i32.gt_s (local.get $v) (local.get $m))))
                    (local.set $m (select (local.tee $v (i32.load8_s offset=4 (local.get $p))) (local.get $m) (i32.gt_s (local.get $v) (local.get $m))))
                    (local.set $m (select (local.tee $v (i32.load8_s offset=5 (local.get $p))) (local.get $m) (i32.gt_s (local.get $v) (local.get $m))))
                    (local.set $m (select (local.tee $v (i32.load8_s offset=6 (local.get $p))) (local.get $m) (i32.gt_s (local.get $v) (local.get $m))))
                    (local.set $m (select (local.tee $v (i32.load8_s offset=7 (local.get $p))) (local.get $m) (i32.gt_s (local.get $v) (local.get $m))))
                    (local.set $p (i32.add (local.get $p) (i32.const 8)))
                    (br_if $big (i32.lt_u (local.get $p) (local.get $pe))))
                  (block $b7 (block $b6 (block $b5 (block $b4 (block $b3 (block $b2 (block $b1 (block $b0
                    (br_table $b0 $b1 $b2 $b3 $b4 $b5 $b6 $b7 (local.get $j)))
                    (local.set $m (select (local.tee $v (i32.load8_s offset=1 (local.get $q))) (local.get $m) (i32.gt_s (local.get $v) (local.get $m)))))
                    (local.set $m (select (local.tee $v (i32.load8_s offset=2 (local.get $q))) (local.get $m) (i32.gt_s (local.get $v) (local.get $m)))))
                    (local.set $m (select (local.tee $v (i32.load8_s offset=3 (local.get $q))) (local.get $m) (i32.gt_s (local.get $v) (local.get $m)))))
                    (local.set $m (select (local.tee $v (i32.load8_s offset=4 (local.get $q))) (local.get $m) (i32.gt_s (local.get $v) (local.get $m)))))
                    (local.set $m (select (local.tee $v (i32.load8_s offset=5 (local.get $q))) (local.get $m) (i32.gt_s (local.get $v) (local.get $m)))))
                    (local.set $m (select (local.tee $v (i32.load8_s offset=6 (local.get $q))) (local.get $m) (i32.gt_s (local.get $v) (local.get $m)))))
                    (local.set $m (select (local.tee $v (i32.load8_s offset=7 (local.get $q))) (local.get $m) (i32.gt_s (local.get $v) (local.get $m)))))
                  (local.set $q (i32.add (local.get $q) (local.get $w)))
                  (br_if $long (i32.lt_u (local.get $q) (local.get $qend)))))))
          (i32.store8 (local.get $po) (local.get $m))
          (local.set $po (i32.add (local.get $po) (i32.const 1)))
          (local.set $tx (i32.add (local.get $tx) (local.get $sw)))
          (local.set $x (i32.add (local.get $x) (i32.const 1)))
          (br_if $cols (i32.lt_u (local.get $x) (local.get $ow))))
        (local.set $y (i32.add (local.get $y) (i32.const 1)))
        (br_if $rows (i32.lt_u (local.get $y) (local.get $y1))))
      (local.set $c (i32.add (local.get $c) (i32.const 1)))
      (br_if $chans (i32.lt_u (local.get $c) (local.get $c1)))))
"#,
};

/// The last three dimensions of a shape (`[C, H, W]` of `[1, C, H, W]`),
/// missing leading ones taken as 1.
fn chw(shape: &[u32]) -> [u32; 3] {
    let mut d = [1u32; 3];
    for (slot, v) in d.iter_mut().rev().zip(shape.iter().rev()) {
        *slot = *v;
    }
    d
}

/// Fuel of one output: bounds and store (about 76), then per window row
/// about 10 plus 9 per byte (a little more for rows of 8 bytes or more).
fn output_fuel(kh: u64, kw: u64) -> u64 {
    80 + kh * (12 + 10 * kw)
}

/// Splits the pooling into blocks of channels by output rows.
pub fn schedule(op: &MaxPool, p: &Program, budget: &Budget) -> Scheduled {
    let [c, h, w] = chw(&p.tensors[op.input].shape);
    let [_, oh, ow] = chw(&p.tensors[op.output].shape);
    let (kh, kw) = (u64::from(op.kernel[0]), u64::from(op.kernel[1]));
    let (c64, h64, w64, oh64, ow64) = (c as u64, h as u64, w as u64, oh as u64, ow as u64);
    let sh = u64::from(op.stride[0]).max(1);
    let fuel = budget.unit_fuel.saturating_sub(100);
    // Rows of one channel: outputs plus about `sh` new input rows each.
    let row_fuel = 40 + ow64 * output_fuel(kh, kw);
    let rb_fuel = fuel / row_fuel;
    let rb_bytes =
        budget.unit_bytes.saturating_sub(kh * w64) / (ow64 + sh.min(kh.max(1)) * w64).max(1);
    let rb = rb_fuel.min(rb_bytes).max(1).min(oh64.max(1));
    // Whole channels per unit when one fits.
    let cb = if rb == oh64 {
        let chan_fuel = 30 + oh64 * row_fuel;
        let chan_bytes = (oh64 * ow64 + h64 * w64).max(1);
        (fuel / chan_fuel)
            .min(budget.unit_bytes / chan_bytes)
            .max(1)
            .min(c64.max(1))
    } else {
        1
    };
    let units = c64.div_ceil(cb) * oh64.div_ceil(rb);
    let t = |id: usize| p.tensors[id].offset;
    Scheduled {
        kernel: KERNEL.name,
        units: units as u32,
        descriptor: vec![
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
        ],
    }
}

/// The whole pooling on the memory image.
pub fn run_native(op: &MaxPool, p: &Program, mem: &mut [u8]) {
    let [c, h, w] = chw(&p.tensors[op.input].shape).map(|v| v as i64);
    let [_, oh, ow] = chw(&p.tensors[op.output].shape).map(|v| v as i64);
    let [kh, kw] = op.kernel.map(i64::from);
    let [sh, sw] = op.stride.map(i64::from);
    let (pt, pl) = (i64::from(op.pad[0]), i64::from(op.pad[1]));
    let inp = p.tensors[op.input].offset as usize;
    let mut at = p.tensors[op.output].offset as usize;
    for ch in 0..c {
        let chan = inp + (ch * h * w) as usize;
        for y in 0..oh {
            let ty = y * sh - pt;
            let rows = ty.max(0)..(ty + kh).min(h);
            for x in 0..ow {
                let tx = x * sw - pl;
                let cols = tx.max(0)..(tx + kw).min(w);
                let mut m = i8::MIN;
                for iy in rows.clone() {
                    let row = chan + (iy * w) as usize;
                    for ix in cols.clone() {
                        m = m.max(mem[row + ix as usize] as i8);
                    }
                }
                mem[at] = m as u8;
                at += 1;
            }
        }
    }
}

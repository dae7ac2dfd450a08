//! Softmax over the last axis with a per-column mask (see
//! [`crate::ir::MaskedSoftmax`]): the attention softmax of transformer
//! encoders, whose padding columns are masked out.
//!
//! A unit is a block of `rb` whole rows. Every row takes three passes of
//! `len` elements (masked maximum, masked sum, divide), all with `select`:
//! no branch depends on the data or the mask.

use crate::ir::{MaskedSoftmax, Program};
use crate::ops::family::{Budget, Kernel, Scheduled};
use crate::ops::mem::read_i32;

/// Descriptor words: in, table, out, rows, len, rb, mask. About 70 fuel
/// per element.
pub const KERNEL: Kernel = Kernel {
    name: "masked_softmax",
    wat: r#"
  (func $masked_softmax (param $d i32) (param $u i32)
    (local $r i32) (local $r1 i32) (local $len i32) (local $tb i32) (local $pi i32)
    (local $po i32) (local $p i32) (local $pm i32) (local $end i32) (local $mx i32) (local $v i32)
    (local $mk i32) (local $sum i64) (local $e i64)
    (local.set $len (i32.load offset=16 (local.get $d)))
    (local.set $tb (i32.load offset=4 (local.get $d)))
    (local.set $r (i32.mul (local.get $u) (i32.load offset=20 (local.get $d))))
    (local.set $r1 (i32.add (local.get $r) (i32.load offset=20 (local.get $d))))
    (local.set $r1 (select (i32.load offset=12 (local.get $d)) (local.get $r1)
      (i32.gt_u (local.get $r1) (i32.load offset=12 (local.get $d)))))
    (loop $rows
      (local.set $pi (i32.add (i32.load offset=0 (local.get $d)) (i32.mul (local.get $r) (local.get $len))))
      (local.set $po (i32.add (i32.load offset=8 (local.get $d)) (i32.mul (local.get $r) (local.get $len))))
      (local.set $end (i32.add (local.get $pi) (local.get $len)))
      ;; maximum of the unmasked elements
      (local.set $mx (i32.const -128))
      (local.set $p (local.get $pi))
      (local.set $pm (i32.load offset=24 (local.get $d)))
      (loop $max
        (local.set $v (select (i32.load8_s (local.get $p)) (i32.const -128) (i32.load (local.get $pm))))
        (local.set $mx (select (local.get $v) (local.get $mx) (i32.gt_s (local.get $v) (local.get $mx))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (local.set $pm (i32.add (local.get $pm) (i32.const 4)))
        (br_if $max (i32.lt_u (local.get $p) (local.get $end))))
      ;; sum of the unmasked table[max - x] (masked: index 0, then 0)
      (local.set $sum (i64.const 0))
      (local.set $p (local.get $pi))
      (local.set $pm (i32.load offset=24 (local.get $d)))
      (loop $acc
        (local.set $mk (i32.ne (i32.load (local.get $pm)) (i32.const 0)))
        (local.set $e (i64.load32_u (i32.add (local.get $tb) (i32.shl
          (select (i32.sub (local.get $mx) (i32.load8_s (local.get $p))) (i32.const 0) (local.get $mk))
          (i32.const 2)))))
        (local.set $sum (i64.add (local.get $sum) (select (local.get $e) (i64.const 0) (local.get $mk))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (local.set $pm (i32.add (local.get $pm) (i32.const 4)))
        (br_if $acc (i32.lt_u (local.get $p) (local.get $end))))
      (local.set $sum (select (local.get $sum) (i64.const 1) (i64.gt_s (local.get $sum) (i64.const 0))))
      ;; out = (254 e + sum) / (2 sum)
      (local.set $p (local.get $pi))
      (local.set $pm (i32.load offset=24 (local.get $d)))
      (loop $div
        (local.set $mk (i32.ne (i32.load (local.get $pm)) (i32.const 0)))
        (local.set $e (i64.load32_u (i32.add (local.get $tb) (i32.shl
          (select (i32.sub (local.get $mx) (i32.load8_s (local.get $p))) (i32.const 0) (local.get $mk))
          (i32.const 2)))))
        (local.set $e (select (local.get $e) (i64.const 0) (local.get $mk)))
        (i64.store8 (local.get $po) (i64.div_u
          (i64.add (i64.mul (local.get $e) (i64.const 254)) (local.get $sum))
          (i64.shl (local.get $sum) (i64.const 1))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (local.set $pm (i32.add (local.get $pm) (i32.const 4)))
        (local.set $po (i32.add (local.get $po) (i32.const 1)))
        (br_if $div (i32.lt_u (local.get $p) (local.get $end))))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br_if $rows (i32.lt_u (local.get $r) (local.get $r1)))))
"#,
};

/// Splits the rows into blocks within the budget (about 70 fuel and 14
/// bytes per element, plus the 1 KiB table).
pub fn schedule(op: &MaskedSoftmax, p: &Program, budget: &Budget) -> Scheduled {
    let (rows, len) = (u64::from(op.rows), u64::from(op.len));
    let by_fuel = budget.unit_fuel / (70 * len + 60);
    let by_bytes = budget.unit_bytes.saturating_sub(1024 + 4 * len) / (2 * len);
    let rb = by_fuel.min(by_bytes).clamp(1, rows.max(1));
    let t = |id: usize| p.tensors[id].offset;
    Scheduled {
        kernel: KERNEL.name,
        units: rows.div_ceil(rb) as u32,
        descriptor: vec![
            t(op.input),
            t(op.table),
            t(op.output),
            op.rows,
            op.len,
            rb as u32,
            t(op.mask),
        ],
    }
}

/// The whole masked softmax on the memory image.
pub fn run_native(op: &MaskedSoftmax, p: &Program, mem: &mut [u8]) {
    let t = |id: usize| p.tensors[id].offset as usize;
    let (inp, table, out, mask) = (t(op.input), t(op.table), t(op.output), t(op.mask));
    let len = op.len as usize;
    let on: Vec<bool> = (0..len).map(|l| read_i32(mem, mask + 4 * l) != 0).collect();
    for r in 0..op.rows as usize {
        let row = inp + r * len;
        let mx = (0..len)
            .filter(|l| on[*l])
            .map(|l| i32::from(mem[row + l] as i8))
            .max()
            .unwrap_or(-128);
        let e = |mem: &[u8], l: usize| -> i64 {
            if on[l] {
                let d = (mx - i32::from(mem[row + l] as i8)) as usize;
                i64::from(read_i32(mem, table + 4 * d) as u32)
            } else {
                0
            }
        };
        let sum = (0..len).map(|l| e(mem, l)).sum::<i64>().max(1);
        for l in 0..len {
            let q = (e(mem, l) * 254 + sum) / (2 * sum);
            mem[out + r * len + l] = q as u8;
        }
    }
}

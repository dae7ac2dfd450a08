//! Softmax over the last axis, in integers (see [`crate::ir::Softmax`]):
//! per row the maximum, a table lookup of `exp` per element, an `i64` sum,
//! and one rounded division per element.
//!
//! A unit is a block of `rb` whole rows (rows `[u * rb, min(rows, (u + 1)
//! * rb))`). Every row takes three passes of `len` elements (maximum with
//! `select`, sum, divide); no branch depends on the data.

use crate::ir::{Program, Softmax};
use crate::ops::family::{Budget, Kernel, Scheduled};
use crate::ops::mem::read_i32;

/// Descriptor words: in, table, out, rows, len, rb. About 50 fuel per
/// element.
pub const KERNEL: Kernel = Kernel {
    name: "softmax",
    wat: r#"
  (func $softmax (param $d i32) (param $u i32)
    (local $r i32) (local $r1 i32) (local $len i32) (local $tb i32) (local $pi i32)
    (local $po i32) (local $p i32) (local $end i32) (local $mx i32) (local $v i32)
    (local $sum i64) (local $e i64)
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
      ;; maximum of the row
      (local.set $mx (i32.const -128))
      (local.set $p (local.get $pi))
      (loop $max
        (local.set $v (i32.load8_s (local.get $p)))
        (local.set $mx (select (local.get $v) (local.get $mx) (i32.gt_s (local.get $v) (local.get $mx))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br_if $max (i32.lt_u (local.get $p) (local.get $end))))
      ;; sum of table[max - x]
      (local.set $sum (i64.const 0))
      (local.set $p (local.get $pi))
      (loop $acc
        (local.set $sum (i64.add (local.get $sum) (i64.load32_u (i32.add (local.get $tb)
          (i32.shl (i32.sub (local.get $mx) (i32.load8_s (local.get $p))) (i32.const 2))))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br_if $acc (i32.lt_u (local.get $p) (local.get $end))))
      ;; out = (254 e + sum) / (2 sum)
      (local.set $p (local.get $pi))
      (loop $div
        (local.set $e (i64.load32_u (i32.add (local.get $tb)
          (i32.shl (i32.sub (local.get $mx) (i32.load8_s (local.get $p))) (i32.const 2)))))
        (i64.store8 (local.get $po) (i64.div_u
          (i64.add (i64.mul (local.get $e) (i64.const 254)) (local.get $sum))
          (i64.shl (local.get $sum) (i64.const 1))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (local.set $po (i32.add (local.get $po) (i32.const 1)))
        (br_if $div (i32.lt_u (local.get $p) (local.get $end))))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br_if $rows (i32.lt_u (local.get $r) (local.get $r1)))))
"#,
};

/// Splits the rows into blocks within the budget (about 50 fuel and 2
/// bytes per element, plus the 1 KiB table).
pub fn schedule(op: &Softmax, p: &Program, budget: &Budget) -> Scheduled {
    let (rows, len) = (u64::from(op.rows), u64::from(op.len));
    let rb = budget.rows_per_unit(rows, 50 * len + 40, 1024, 2 * len);
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
        ],
    }
}

/// The whole softmax on the memory image.
pub fn run_native(op: &Softmax, p: &Program, mem: &mut [u8]) {
    let t = |id: usize| p.tensors[id].offset as usize;
    let (inp, table, out) = (t(op.input), t(op.table), t(op.output));
    let len = op.len as usize;
    for r in 0..op.rows as usize {
        let row = inp + r * len;
        let mx = (0..len).map(|i| mem[row + i] as i8).max().unwrap_or(-128);
        let e = |mem: &[u8], i: usize| {
            let d = (i32::from(mx) - i32::from(mem[row + i] as i8)) as usize;
            i64::from(read_i32(mem, table + 4 * d) as u32)
        };
        let sum: i64 = (0..len).map(|i| e(mem, i)).sum();
        for i in 0..len {
            let q = (e(mem, i) * 254 + sum) / (2 * sum);
            mem[out + r * len + i] = q as u8;
        }
    }
}

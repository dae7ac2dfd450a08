//! Softmax over the last axis with a per-column mask (see
//! [`crate::ir::MaskedSoftmax`]): the attention softmax of transformer
//! encoders, whose padding columns are masked out.
//!
//! A unit is a block of `rb` whole rows. Every row takes three passes of
//! `len` elements (masked maximum, masked sum, divide), all with `select`:
//! no branch depends on the data or the mask.

use crate::ir::{DType, MaskedSoftmax, Program};
use crate::ops::family::{Budget, Kernel, Scheduled};
use crate::ops::mem::read_i32;
use std::sync::LazyLock;

/// Descriptor words: in, table, out, rows, len, rb, mask, i32 input (0 or
/// 1), multiplier, shift, dmax. About 150 fuel per element (three passes,
/// two helper calls each).
pub const KERNEL: Kernel = Kernel {
    name: "masked_softmax",
    wat: r#"
  (func $masked_softmax_x (param $d i32) (param $pi i32) (param $l i32) (result i64)
    ;; element l of the row at $pi: i8 or i32 (descriptor word 7)
    (if (result i64) (i32.load offset=28 (local.get $d))
      (then (i64.load32_s (i32.add (local.get $pi) (i32.shl (local.get $l) (i32.const 2)))))
      (else (i64.load8_s (i32.add (local.get $pi) (local.get $l))))))
  (func $masked_softmax_e (param $d i32) (param $mx i64) (param $x i64) (param $mk i32) (result i64)
    ;; table[min((min(mx - x, dmax) * m) >> s, 255)] if the mask is on, else 0
    (local $i i64)
    (local.set $i (select (i64.sub (local.get $mx) (local.get $x)) (i64.const 0) (local.get $mk)))
    (local.set $i (select (i64.load32_s offset=40 (local.get $d)) (local.get $i)
      (i64.gt_s (local.get $i) (i64.load32_s offset=40 (local.get $d)))))
    (local.set $i (i64.shr_s (i64.mul (local.get $i) (i64.load32_s offset=32 (local.get $d)))
      (i64.load32_s offset=36 (local.get $d))))
    (local.set $i (select (i64.const 255) (local.get $i) (i64.gt_s (local.get $i) (i64.const 255))))
    (select (i64.load32_u (i32.add (i32.load offset=4 (local.get $d)) (i32.shl (i32.wrap_i64 (local.get $i)) (i32.const 2))))
      (i64.const 0) (local.get $mk)))
  (func $masked_softmax (param $d i32) (param $u i32)
    (local $r i32) (local $r1 i32) (local $len i32) (local $pi i32) (local $po i32) (local $l i32)
    (local $pm i32) (local $mk i32) (local $mx i64) (local $v i64) (local $sum i64) (local $e i64)
    (local $w i32)
    (local.set $len (i32.load offset=16 (local.get $d)))
    ;; bytes per input element: 1 or 4
    (local.set $w (i32.add (i32.const 1) (i32.mul (i32.const 3) (i32.load offset=28 (local.get $d)))))
    (local.set $r (i32.mul (local.get $u) (i32.load offset=20 (local.get $d))))
    (local.set $r1 (i32.add (local.get $r) (i32.load offset=20 (local.get $d))))
    (local.set $r1 (select (i32.load offset=12 (local.get $d)) (local.get $r1)
      (i32.gt_u (local.get $r1) (i32.load offset=12 (local.get $d)))))
    (loop $rows
      (local.set $pi (i32.add (i32.load offset=0 (local.get $d))
        (i32.mul (i32.mul (local.get $r) (local.get $len)) (local.get $w))))
      (local.set $po (i32.add (i32.load offset=8 (local.get $d)) (i32.mul (local.get $r) (local.get $len))))
      ;; maximum of the unmasked elements (-2^31 if none)
      (local.set $mx (i64.const -2147483648))
      (local.set $pm (i32.load offset=24 (local.get $d)))
      (local.set $l (i32.const 0))
      (loop $max
        (local.set $v (select (call $masked_softmax_x (local.get $d) (local.get $pi) (local.get $l))
          (i64.const -2147483648) (i32.load (local.get $pm))))
        (local.set $mx (select (local.get $v) (local.get $mx) (i64.gt_s (local.get $v) (local.get $mx))))
        (local.set $pm (i32.add (local.get $pm) (i32.const 4)))
        (local.set $l (i32.add (local.get $l) (i32.const 1)))
        (br_if $max (i32.lt_u (local.get $l) (local.get $len))))
      ;; sum of the unmasked exponentials
      (local.set $sum (i64.const 0))
      (local.set $pm (i32.load offset=24 (local.get $d)))
      (local.set $l (i32.const 0))
      (loop $acc
        (local.set $mk (i32.ne (i32.load (local.get $pm)) (i32.const 0)))
        (local.set $sum (i64.add (local.get $sum) (call $masked_softmax_e (local.get $d) (local.get $mx)
          (call $masked_softmax_x (local.get $d) (local.get $pi) (local.get $l)) (local.get $mk))))
        (local.set $pm (i32.add (local.get $pm) (i32.const 4)))
        (local.set $l (i32.add (local.get $l) (i32.const 1)))
        (br_if $acc (i32.lt_u (local.get $l) (local.get $len))))
      (local.set $sum (select (local.get $sum) (i64.const 1) (i64.gt_s (local.get $sum) (i64.const 0))))
      ;; out = (254 e + sum) / (2 sum)
      (local.set $pm (i32.load offset=24 (local.get $d)))
      (local.set $l (i32.const 0))
      (loop $div
        (local.set $mk (i32.ne (i32.load (local.get $pm)) (i32.const 0)))
        (local.set $e (call $masked_softmax_e (local.get $d) (local.get $mx)
          (call $masked_softmax_x (local.get $d) (local.get $pi) (local.get $l)) (local.get $mk)))
        (i64.store8 (i32.add (local.get $po) (local.get $l)) (i64.div_u
          (i64.add (i64.mul (local.get $e) (i64.const 254)) (local.get $sum))
          (i64.shl (local.get $sum) (i64.const 1))))
        (local.set $pm (i32.add (local.get $pm) (i32.const 4)))
        (local.set $l (i32.add (local.get $l) (i32.const 1)))
        (br_if $div (i32.lt_u (local.get $l) (local.get $len))))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br_if $rows (i32.lt_u (local.get $r) (local.get $r1)))))
"#,
};

/// The variant with an `i16` output, probabilities in units of `1/32767`:
/// `out = (65534 e + sum) / (2 sum)`, stored as 16 bits.
pub static KERNEL_16: LazyLock<Kernel> = LazyLock::new(|| {
    let t = KERNEL
        .wat
        .replace("$masked_softmax", "$masked_softmax16")
        .replace(
            "(local.set $po (i32.add (i32.load offset=8 (local.get $d)) (i32.mul (local.get $r) (local.get $len))))",
            "(local.set $po (i32.add (i32.load offset=8 (local.get $d)) (i32.shl (i32.mul (local.get $r) (local.get $len)) (i32.const 1))))",
        )
        .replace(
            "(i64.store8 (i32.add (local.get $po) (local.get $l)) (i64.div_u",
            "(i64.store16 (i32.add (local.get $po) (i32.shl (local.get $l) (i32.const 1))) (i64.div_u",
        )
        .replace(
            "(i64.mul (local.get $e) (i64.const 254))",
            "(i64.mul (local.get $e) (i64.const 65534))",
        );
    Kernel {
        name: "masked_softmax16",
        wat: Box::leak(t.into_boxed_str()),
    }
});

/// The interpolated variant of [`KERNEL_16`] (a table of 257 knots, see
/// [`crate::ir::MaskedSoftmax`]): the index has 8 fractional bits,
/// `j = min((min(mx - x, dmax) m) >> shift, 255 * 256)`, and
/// `e = t[j >> 8] + (((t[(j >> 8) + 1] - t[j >> 8]) (j & 255) + 128) >> 8)`.
pub static KERNEL_16I: LazyLock<Kernel> = LazyLock::new(|| {
    let lookup = "    (local.set $i (select (i64.const 255) (local.get $i) (i64.gt_s (local.get $i) (i64.const 255))))
    (select (i64.load32_u (i32.add (i32.load offset=4 (local.get $d)) (i32.shl (i32.wrap_i64 (local.get $i)) (i32.const 2))))";
    let interp = "    (local.set $i (select (i64.const 65280) (local.get $i) (i64.gt_s (local.get $i) (i64.const 65280))))
    (local.set $p (i32.add (i32.load offset=4 (local.get $d))
      (i32.shl (i32.wrap_i64 (i64.shr_u (local.get $i) (i64.const 8))) (i32.const 2))))
    (local.set $t0 (i64.load32_u (local.get $p)))
    (select (i64.add (local.get $t0) (i64.shr_s (i64.add (i64.mul
        (i64.sub (i64.load32_u offset=4 (local.get $p)) (local.get $t0))
        (i64.and (local.get $i) (i64.const 255))) (i64.const 128)) (i64.const 8)))";
    let t = KERNEL_16.wat;
    assert!(t.contains(lookup) && t.contains("(local $i i64)"));
    let t = t
        .replace("$masked_softmax16", "$masked_softmax16i")
        .replace(lookup, interp)
        .replace(
            "(local $i i64)",
            "(local $i i64) (local $p i32) (local $t0 i64)",
        );
    Kernel {
        name: "masked_softmax16i",
        wat: Box::leak(t.into_boxed_str()),
    }
});

/// Splits the rows into blocks within the budget (about 70 fuel and 14
/// bytes per element, plus the 1 KiB table).
pub fn schedule(op: &MaskedSoftmax, p: &Program, budget: &Budget) -> Scheduled {
    let (rows, len) = (u64::from(op.rows), u64::from(op.len));
    let rb = budget.rows_per_unit(rows, 160 * len + 60, 1024 + 4 * len, 5 * len);
    let t = |id: usize| p.tensors[id].offset;
    let half = p.tensors[op.output].dtype == DType::I16;
    let interp = p.tensors[op.table].len() == 257;
    Scheduled {
        kernel: match (half, interp) {
            (true, true) => KERNEL_16I.name,
            (true, false) => KERNEL_16.name,
            _ => KERNEL.name,
        },
        units: rows.div_ceil(rb) as u32,
        descriptor: vec![
            t(op.input),
            t(op.table),
            t(op.output),
            op.rows,
            op.len,
            rb as u32,
            t(op.mask),
            u32::from(p.tensors[op.input].dtype == DType::I32),
            op.multiplier as u32,
            op.shift as u32,
            op.dmax as u32,
        ],
    }
}

/// The whole masked softmax on the memory image.
pub fn run_native(op: &MaskedSoftmax, p: &Program, mem: &mut [u8]) {
    let t = |id: usize| p.tensors[id].offset as usize;
    let (inp, table, out, mask) = (t(op.input), t(op.table), t(op.output), t(op.mask));
    let wide = p.tensors[op.input].dtype == DType::I32;
    let half = p.tensors[op.output].dtype == DType::I16;
    let interp = p.tensors[op.table].len() == 257;
    let len = op.len as usize;
    let (m, s, dmax) = (
        i64::from(op.multiplier),
        op.shift as u32,
        i64::from(op.dmax),
    );
    let on: Vec<bool> = (0..len).map(|l| read_i32(mem, mask + 4 * l) != 0).collect();
    for r in 0..op.rows as usize {
        let x = |mem: &[u8], l: usize| -> i64 {
            if wide {
                i64::from(read_i32(mem, inp + 4 * (r * len + l)))
            } else {
                i64::from(mem[inp + r * len + l] as i8)
            }
        };
        let mx = (0..len)
            .filter(|l| on[*l])
            .map(|l| x(mem, l))
            .max()
            .unwrap_or(-(1 << 31));
        let e = |mem: &[u8], l: usize| -> i64 {
            if on[l] && interp {
                let j = (((mx - x(mem, l)).min(dmax) * m) >> s).min(255 * 256);
                let at = table + 4 * (j >> 8) as usize;
                let t0 = i64::from(read_i32(mem, at) as u32);
                let t1 = i64::from(read_i32(mem, at + 4) as u32);
                t0 + (((t1 - t0) * (j & 255) + 128) >> 8)
            } else if on[l] {
                let i = (((mx - x(mem, l)).min(dmax) * m) >> s).min(255);
                i64::from(read_i32(mem, table + 4 * i as usize) as u32)
            } else {
                0
            }
        };
        let sum = (0..len).map(|l| e(mem, l)).sum::<i64>().max(1);
        for l in 0..len {
            if half {
                let q = (e(mem, l) * 65534 + sum) / (2 * sum);
                let at = out + 2 * (r * len + l);
                mem[at..at + 2].copy_from_slice(&(q as i16).to_le_bytes());
            } else {
                let q = (e(mem, l) * 254 + sum) / (2 * sum);
                mem[out + r * len + l] = q as u8;
            }
        }
    }
}

//! Sum of two `i8` tensors with per-column rescaling (see
//! [`crate::ir::ColAdd`]): a transformer's embedding sum with per-column
//! scales. An `i16` output uses [`KERNEL_16`].
//!
//! A unit is a block of `rb` whole rows; the loops have static bounds and
//! the clamp uses `select`, so the fuel is the same for every input.

use crate::ir::{ColAdd, DType, Program};
use crate::ops::family::{Budget, Kernel, Scheduled};
use crate::ops::mem::read_i32;
use std::sync::LazyLock;

/// Descriptor words: a, b, out, ma, mb, shift, rows, len, rb, lo, hi.
/// About 40 fuel per element.
pub const KERNEL: Kernel = Kernel {
    name: "col_add",
    wat: r#"
  (func $col_add (param $d i32) (param $u i32)
    (local $r i32) (local $r1 i32) (local $len i32) (local $l i32) (local $e i32) (local $o i32)
    (local $s i64) (local $q i64) (local $lo i64) (local $hi i64)
    (local.set $len (i32.load offset=28 (local.get $d)))
    (local.set $lo (i64.load32_s offset=36 (local.get $d)))
    (local.set $hi (i64.load32_s offset=40 (local.get $d)))
    (local.set $r (i32.mul (local.get $u) (i32.load offset=32 (local.get $d))))
    (local.set $r1 (i32.add (local.get $r) (i32.load offset=32 (local.get $d))))
    (local.set $r1 (select (i32.load offset=24 (local.get $d)) (local.get $r1)
      (i32.gt_u (local.get $r1) (i32.load offset=24 (local.get $d)))))
    (loop $rows
      (local.set $l (i32.const 0))
      (loop $cols
        (local.set $e (i32.add (i32.mul (local.get $r) (local.get $len)) (local.get $l)))
        (local.set $o (i32.shl (local.get $l) (i32.const 2)))
        (local.set $s (i64.load32_s (i32.add (i32.load offset=20 (local.get $d)) (local.get $o))))
        (local.set $q (i64.shr_s
          (i64.add
            (i64.add
              (i64.mul (i64.load8_s (i32.add (i32.load offset=0 (local.get $d)) (local.get $e)))
                       (i64.load32_s (i32.add (i32.load offset=12 (local.get $d)) (local.get $o))))
              (i64.mul (i64.load8_s (i32.add (i32.load offset=4 (local.get $d)) (local.get $e)))
                       (i64.load32_s (i32.add (i32.load offset=16 (local.get $d)) (local.get $o)))))
            (i64.shl (i64.const 1) (i64.sub (local.get $s) (i64.const 1))))
          (local.get $s)))
        (local.set $q (select (local.get $lo) (local.get $q) (i64.lt_s (local.get $q) (local.get $lo))))
        (local.set $q (select (local.get $hi) (local.get $q) (i64.gt_s (local.get $q) (local.get $hi))))
        (i64.store8 (i32.add (i32.load offset=8 (local.get $d)) (local.get $e)) (local.get $q))
        (local.set $l (i32.add (local.get $l) (i32.const 1)))
        (br_if $cols (i32.lt_u (local.get $l) (local.get $len))))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br_if $rows (i32.lt_u (local.get $r) (local.get $r1)))))
"#,
};

/// The variant with an `i16` output (clamp bounds in `i16`): the same
/// text with a 16-bit store.
pub static KERNEL_16: LazyLock<Kernel> = LazyLock::new(|| {
    let store =
        "(i64.store8 (i32.add (i32.load offset=8 (local.get $d)) (local.get $e)) (local.get $q))";
    assert!(KERNEL.wat.contains(store));
    let t = KERNEL.wat.replace("$col_add", "$col_add16").replace(
        store,
        "(i64.store16 (i32.add (i32.load offset=8 (local.get $d)) (i32.shl (local.get $e) (i32.const 1))) (local.get $q))",
    );
    Kernel {
        name: "col_add16",
        wat: Box::leak(t.into_boxed_str()),
    }
});

/// Splits the rows into blocks within the budget (about 40 fuel and 3
/// or 4 bytes per element, plus the 12-byte-per-column parameters).
pub fn schedule(op: &ColAdd, p: &Program, budget: &Budget) -> Scheduled {
    let (rows, len) = (u64::from(op.rows), u64::from(op.len));
    let wide = p.tensors[op.output].dtype == DType::I16;
    let per_elem = if wide { 4 } else { 3 };
    let rb = budget.rows_per_unit(rows, 40 * len + 20, 12 * len, per_elem * len);
    let t = |id: usize| p.tensors[id].offset;
    Scheduled {
        kernel: if wide { KERNEL_16.name } else { KERNEL.name },
        units: rows.div_ceil(rb) as u32,
        descriptor: vec![
            t(op.a),
            t(op.b),
            t(op.output),
            t(op.a_multiplier),
            t(op.b_multiplier),
            t(op.shift),
            op.rows,
            op.len,
            rb as u32,
            op.lo as u32,
            op.hi as u32,
        ],
    }
}

/// The whole sum on the memory image.
pub fn run_native(op: &ColAdd, p: &Program, mem: &mut [u8]) {
    let t = |id: usize| p.tensors[id].offset as usize;
    let (a, b, out) = (t(op.a), t(op.b), t(op.output));
    let (ma, mb, sh) = (t(op.a_multiplier), t(op.b_multiplier), t(op.shift));
    let len = op.len as usize;
    let wide = p.tensors[op.output].dtype == DType::I16;
    for r in 0..op.rows as usize {
        for l in 0..len {
            let e = r * len + l;
            let s = read_i32(mem, sh + 4 * l) as u32;
            let x = i64::from(mem[a + e] as i8) * i64::from(read_i32(mem, ma + 4 * l))
                + i64::from(mem[b + e] as i8) * i64::from(read_i32(mem, mb + 4 * l));
            let q = x
                .wrapping_add(1i64.wrapping_shl(s.wrapping_sub(1)))
                .wrapping_shr(s);
            let q = q.clamp(i64::from(op.lo), i64::from(op.hi));
            if wide {
                mem[out + 2 * e..out + 2 * e + 2].copy_from_slice(&(q as i16).to_le_bytes());
            } else {
                mem[out + e] = q as u8;
            }
        }
    }
}

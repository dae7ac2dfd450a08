//! Gather (embedding lookup): `out[i, :] = table[clamp(idx[i], 0, rows -
//! 1), :]` (see [`crate::ir::Gather`]).
//!
//! A unit is a block of `per` indices (`[u * per, min(n, (u + 1) * per))`).
//! Each row is copied 8 bytes at a time, then byte by byte; the copy length
//! is the static `width`, and the clamp uses `select`, so the fuel does not
//! depend on the indices (the addresses read do, which the touched-memory
//! cap bounds by `per * width` bytes).

use crate::ir::{Gather, Program};
use crate::ops::family::{Budget, Kernel, Scheduled};
use crate::ops::mem::read_i32;

/// Descriptor words: table, indices, out, n, width, rows, per. About
/// `width + 40` fuel per index.
pub const KERNEL: Kernel = Kernel {
    name: "gather",
    wat: r#"
  (func $gather (param $d i32) (param $u i32)
    (local $i i32) (local $i1 i32) (local $w i32) (local $rows i32) (local $v i32)
    (local $src i32) (local $dst i32) (local $e8 i32) (local $end i32)
    (local.set $w (i32.load offset=16 (local.get $d)))
    (local.set $rows (i32.load offset=20 (local.get $d)))
    (local.set $i (i32.mul (local.get $u) (i32.load offset=24 (local.get $d))))
    (local.set $i1 (i32.add (local.get $i) (i32.load offset=24 (local.get $d))))
    (local.set $i1 (select (i32.load offset=12 (local.get $d)) (local.get $i1)
      (i32.gt_u (local.get $i1) (i32.load offset=12 (local.get $d)))))
    (loop $idx
      (local.set $v (i32.load (i32.add (i32.load offset=4 (local.get $d)) (i32.shl (local.get $i) (i32.const 2)))))
      (local.set $v (select (i32.const 0) (local.get $v) (i32.lt_s (local.get $v) (i32.const 0))))
      (local.set $v (select (i32.sub (local.get $rows) (i32.const 1)) (local.get $v)
        (i32.ge_s (local.get $v) (local.get $rows))))
      (local.set $src (i32.add (i32.load offset=0 (local.get $d)) (i32.mul (local.get $v) (local.get $w))))
      (local.set $dst (i32.add (i32.load offset=8 (local.get $d)) (i32.mul (local.get $i) (local.get $w))))
      (local.set $end (i32.add (local.get $dst) (local.get $w)))
      (local.set $e8 (i32.add (local.get $dst) (i32.and (local.get $w) (i32.const -8))))
      (block $b8
        (br_if $b8 (i32.ge_u (local.get $dst) (local.get $e8)))
        (loop $l8
          (i64.store (local.get $dst) (i64.load (local.get $src)))
          (local.set $src (i32.add (local.get $src) (i32.const 8)))
          (local.set $dst (i32.add (local.get $dst) (i32.const 8)))
          (br_if $l8 (i32.lt_u (local.get $dst) (local.get $e8)))))
      (block $b1
        (br_if $b1 (i32.ge_u (local.get $dst) (local.get $end)))
        (loop $l1
          (i32.store8 (local.get $dst) (i32.load8_u (local.get $src)))
          (local.set $src (i32.add (local.get $src) (i32.const 1)))
          (local.set $dst (i32.add (local.get $dst) (i32.const 1)))
          (br_if $l1 (i32.lt_u (local.get $dst) (local.get $end)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $idx (i32.lt_u (local.get $i) (local.get $i1)))))
"#,
};

/// Splits the indices into blocks within the budget.
pub fn schedule(op: &Gather, p: &Program, budget: &Budget) -> Scheduled {
    let (n, w) = (u64::from(op.n), u64::from(op.width));
    let by_fuel = budget.unit_fuel / (2 * w + 60);
    let by_bytes = budget.unit_bytes / (2 * w + 4);
    let per = by_fuel.min(by_bytes).clamp(1, n.max(1));
    let t = |id: usize| p.tensors[id].offset;
    Scheduled {
        kernel: KERNEL.name,
        units: n.div_ceil(per) as u32,
        descriptor: vec![
            t(op.table),
            t(op.indices),
            t(op.output),
            op.n,
            op.width,
            op.rows,
            per as u32,
        ],
    }
}

/// The whole lookup on the memory image.
pub fn run_native(op: &Gather, p: &Program, mem: &mut [u8]) {
    let t = |id: usize| p.tensors[id].offset as usize;
    let (table, idx, out) = (t(op.table), t(op.indices), t(op.output));
    let w = op.width as usize;
    for i in 0..op.n as usize {
        let v = read_i32(mem, idx + 4 * i).clamp(0, op.rows as i32 - 1) as usize;
        mem.copy_within(table + v * w..table + (v + 1) * w, out + i * w);
    }
}

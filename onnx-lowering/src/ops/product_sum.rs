//! ProductSum: `out[j] = clamp((a[j] b[j] ma + c[j] d[j] mc + 2^(s-1)) >> s,
//! lo, hi)` with `i8` or `i16` operands and output (see
//! [`crate::ir::ProductSum`]): an LSTM's `i16` cell update `c_t = f c_{t-1}
//! + i g` and its hidden state `h_t = o tanh(c_t)`.
//!
//! A unit is the element range `[u * per, min(n, (u + 1) * per))`. Whether
//! an operand is `i16` is a flag of the descriptor, the same for every
//! element and every input, so the branch on it does not depend on the
//! data and neither does the fuel.

use crate::ir::{DType, ProductSum, Program};
use crate::ops::family::{Budget, Kernel, Scheduled};

/// Descriptor words: a, b, c, d, out, n, per, flags (bit k: operand k of
/// a, b, c, d is `i16`; bit 4: the output is), ma, mc, s, lo, hi. About 80
/// fuel per element.
pub const KERNEL: Kernel = Kernel {
    name: "product_sum",
    wat: r#"
  (func $product_sum (param $d i32) (param $u i32)
    (local $i i32) (local $end i32) (local $fl i32)
    (local $ma i64) (local $mc i64) (local $s i64) (local $r i64) (local $lo i64) (local $hi i64)
    (local $q i64)
    (local.set $fl (i32.load offset=28 (local.get $d)))
    (local.set $ma (i64.load32_s offset=32 (local.get $d)))
    (local.set $mc (i64.load32_s offset=36 (local.get $d)))
    (local.set $s (i64.load32_s offset=40 (local.get $d)))
    (local.set $r (i64.shl (i64.const 1) (i64.sub (local.get $s) (i64.const 1))))
    (local.set $lo (i64.load32_s offset=44 (local.get $d)))
    (local.set $hi (i64.load32_s offset=48 (local.get $d)))
    (local.set $i (i32.mul (local.get $u) (i32.load offset=24 (local.get $d))))
    (local.set $end (i32.add (local.get $i) (i32.load offset=24 (local.get $d))))
    (local.set $end (select (i32.load offset=20 (local.get $d)) (local.get $end)
      (i32.gt_u (local.get $end) (i32.load offset=20 (local.get $d)))))
    (block $done
      (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
      (loop $el
        (local.set $q (i64.add (i64.add
          (i64.mul (i64.mul
            (call $ps_load (i32.load offset=0 (local.get $d)) (local.get $i) (i32.and (local.get $fl) (i32.const 1)))
            (call $ps_load (i32.load offset=4 (local.get $d)) (local.get $i) (i32.and (local.get $fl) (i32.const 2))))
            (local.get $ma))
          (i64.mul (i64.mul
            (call $ps_load (i32.load offset=8 (local.get $d)) (local.get $i) (i32.and (local.get $fl) (i32.const 4)))
            (call $ps_load (i32.load offset=12 (local.get $d)) (local.get $i) (i32.and (local.get $fl) (i32.const 8))))
            (local.get $mc)))
          (local.get $r)))
        (local.set $q (i64.shr_s (local.get $q) (local.get $s)))
        (local.set $q (select (local.get $lo) (local.get $q) (i64.lt_s (local.get $q) (local.get $lo))))
        (local.set $q (select (local.get $hi) (local.get $q) (i64.gt_s (local.get $q) (local.get $hi))))
        (if (i32.and (local.get $fl) (i32.const 16))
          (then (i64.store16 (i32.add (i32.load offset=16 (local.get $d))
            (i32.shl (local.get $i) (i32.const 1))) (local.get $q)))
          (else (i64.store8 (i32.add (i32.load offset=16 (local.get $d)) (local.get $i))
            (local.get $q))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $el (i32.lt_u (local.get $i) (local.get $end))))))
  (func $ps_load (param $base i32) (param $i i32) (param $wide i32) (result i64)
    (if (result i64) (local.get $wide)
      (then (i64.load16_s (i32.add (local.get $base) (i32.shl (local.get $i) (i32.const 1)))))
      (else (i64.load8_s (i32.add (local.get $base) (local.get $i))))))
"#,
};

/// The descriptor's flags: bit k for an `i16` operand k (a, b, c, d), bit 4
/// for an `i16` output.
fn flags(op: &ProductSum, p: &Program) -> u32 {
    let wide = |id: usize| u32::from(p.tensors[id].dtype == DType::I16);
    wide(op.a) | wide(op.b) << 1 | wide(op.c) << 2 | wide(op.d) << 3 | wide(op.output) << 4
}

/// Splits the op into element ranges (about 80 fuel and 10 bytes each).
pub fn schedule(op: &ProductSum, p: &Program, budget: &Budget) -> Scheduled {
    let n = u64::from(op.n);
    let per = budget.rows_per_unit(n, 80, 100, 10);
    let t = |id: usize| p.tensors[id].offset;
    Scheduled {
        kernel: KERNEL.name,
        units: n.div_ceil(per) as u32,
        descriptor: vec![
            t(op.a),
            t(op.b),
            t(op.c),
            t(op.d),
            t(op.output),
            op.n,
            per as u32,
            flags(op, p),
            op.a_multiplier as u32,
            op.c_multiplier as u32,
            op.shift as u32,
            op.lo as u32,
            op.hi as u32,
        ],
    }
}

/// Element `i` of an `i8` or `i16` tensor.
fn load(p: &Program, mem: &[u8], id: usize, i: usize) -> i64 {
    let t = &p.tensors[id];
    let at = t.offset as usize;
    match t.dtype {
        DType::I16 => i64::from(i16::from_le_bytes([mem[at + 2 * i], mem[at + 2 * i + 1]])),
        _ => i64::from(mem[at + i] as i8),
    }
}

/// The whole op on the memory image (the kernel's arithmetic).
pub fn run_native(op: &ProductSum, p: &Program, mem: &mut [u8]) {
    let (ma, mc) = (i64::from(op.a_multiplier), i64::from(op.c_multiplier));
    let sh = op.shift as u32;
    let r = 1i64.wrapping_shl(sh.wrapping_sub(1));
    let out = &p.tensors[op.output];
    let (at, wide) = (out.offset as usize, out.dtype == DType::I16);
    for i in 0..op.n as usize {
        let x = load(p, mem, op.a, i) * load(p, mem, op.b, i) * ma
            + load(p, mem, op.c, i) * load(p, mem, op.d, i) * mc;
        let q = x
            .wrapping_add(r)
            .wrapping_shr(sh)
            .clamp(i64::from(op.lo), i64::from(op.hi));
        if wide {
            mem[at + 2 * i..at + 2 * i + 2].copy_from_slice(&(q as i16).to_le_bytes());
        } else {
            mem[at + i] = q as i8 as u8;
        }
    }
}

//! MatMul / Gemm: `out[i, j] = requant_j(bias[j] + sum_k a[i, k] * w[j, k])`,
//! with `a[i, k]` at element `i * a_row + k * a_col` and `out[i, j]` at
//! element `i * o_row + j * o_col` (see [`crate::ir::MatMul`]).
//!
//! A unit is a block of `rb` rows by `cb` output columns; unit `u` is row
//! block `u / ncb`, column block `u % ncb` (`ncb = ceil(n / cb)`).
//!
//! `i16` inputs or outputs use the variants [`KERNEL_A16`], [`KERNEL_O16`]
//! and [`KERNEL_A16O16`]: the same text with 16-bit loads or stores, and
//! byte strides in the descriptor.
//!
//! Natively, the product runs on the packed GEMM of
//! [`crate::ops::native_gemm`] ([`run_native`], or [`run_packed`] with
//! weights packed once per artifact); [`run_reference`] is the scalar loop
//! of the definition.

use crate::ir::{requantize_wide, DType, MatMul, Program};
use crate::ops::family::{Budget, Kernel, Scheduled};
use crate::ops::mem::{read_i32, read_i8};
use crate::ops::native_gemm::{gemm, threads_for, Panel, MR, NR};
use std::sync::LazyLock;

/// Descriptor words: a, w, bias, out, multiplier, shift, m, k, n, rb, cb,
/// zero point, lo, hi, a_row, a_col, o_row, o_col.
pub const KERNEL: Kernel = Kernel {
    name: "matmul",
    wat: r#"
  (func $matmul (param $d i32) (param $u i32)
    (local $a i32) (local $w i32) (local $bias i32) (local $out i32) (local $mul i32) (local $sh i32)
    (local $k i32) (local $n i32) (local $ncb i32)
    (local $r1 i32) (local $c0 i32) (local $c1 i32)
    (local $i i32) (local $j i32) (local $pa i32) (local $pw i32) (local $acc i32)
    (local $q i64) (local $s i64) (local $t i32) (local $ew i32)
    (local $ar i32) (local $ac i32) (local $or i32) (local $oc i32)
    (local.set $ar (i32.load offset=56 (local.get $d)))
    (local.set $ac (i32.load offset=60 (local.get $d)))
    (local.set $or (i32.load offset=64 (local.get $d)))
    (local.set $oc (i32.load offset=68 (local.get $d)))
    (local.set $a (i32.load offset=0 (local.get $d)))
    (local.set $w (i32.load offset=4 (local.get $d)))
    (local.set $bias (i32.load offset=8 (local.get $d)))
    (local.set $out (i32.load offset=12 (local.get $d)))
    (local.set $mul (i32.load offset=16 (local.get $d)))
    (local.set $sh (i32.load offset=20 (local.get $d)))
    (local.set $k (i32.load offset=28 (local.get $d)))
    (local.set $n (i32.load offset=32 (local.get $d)))
    (local.set $ncb (i32.div_u (i32.sub (i32.add (local.get $n) (i32.load offset=40 (local.get $d))) (i32.const 1))
                               (i32.load offset=40 (local.get $d))))
    ;; rows [i, r1), columns [c0, c1), clipped without data-dependent branches
    (local.set $i (i32.mul (i32.div_u (local.get $u) (local.get $ncb)) (i32.load offset=36 (local.get $d))))
    (local.set $r1 (i32.add (local.get $i) (i32.load offset=36 (local.get $d))))
    (local.set $t (i32.load offset=24 (local.get $d)))
    (local.set $r1 (select (local.get $t) (local.get $r1) (i32.gt_u (local.get $r1) (local.get $t))))
    (local.set $c0 (i32.mul (i32.rem_u (local.get $u) (local.get $ncb)) (i32.load offset=40 (local.get $d))))
    (local.set $c1 (i32.add (local.get $c0) (i32.load offset=40 (local.get $d))))
    (local.set $c1 (select (local.get $n) (local.get $c1) (i32.gt_u (local.get $c1) (local.get $n))))
    (loop $rows
      (local.set $j (local.get $c0))
      (loop $cols
        (local.set $acc (i32.load (i32.add (local.get $bias) (i32.shl (local.get $j) (i32.const 2)))))
        (local.set $pa (i32.add (local.get $a) (i32.mul (local.get $i) (local.get $ar))))
        (local.set $pw (i32.add (local.get $w) (i32.mul (local.get $j) (local.get $k))))
        (local.set $ew (i32.add (local.get $pw) (local.get $k)))
        (loop $dot
          (local.set $acc (i32.add (local.get $acc)
            (i32.mul (i32.load8_s (local.get $pa)) (i32.load8_s (local.get $pw)))))
          (local.set $pa (i32.add (local.get $pa) (local.get $ac)))
          (local.set $pw (i32.add (local.get $pw) (i32.const 1)))
          (br_if $dot (i32.lt_u (local.get $pw) (local.get $ew))))
        ;; requantize: ((acc * m + 2^(s-1)) >> s) + zp, clamped
        (local.set $s (i64.load32_s (i32.add (local.get $sh) (i32.shl (local.get $j) (i32.const 2)))))
        (local.set $q (i64.add
          (i64.shr_s
            (i64.add
              (i64.mul (i64.extend_i32_s (local.get $acc))
                       (i64.load32_s (i32.add (local.get $mul) (i32.shl (local.get $j) (i32.const 2)))))
              (i64.shl (i64.const 1) (i64.sub (local.get $s) (i64.const 1))))
            (local.get $s))
          (i64.load32_s offset=44 (local.get $d))))
        (local.set $q (select (i64.load32_s offset=48 (local.get $d)) (local.get $q)
          (i64.lt_s (local.get $q) (i64.load32_s offset=48 (local.get $d)))))
        (local.set $q (select (i64.load32_s offset=52 (local.get $d)) (local.get $q)
          (i64.gt_s (local.get $q) (i64.load32_s offset=52 (local.get $d)))))
        (i64.store8 (i32.add (local.get $out) (i32.add (i32.mul (local.get $i) (local.get $or))
                                                       (i32.mul (local.get $j) (local.get $oc))))
          (local.get $q))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br_if $cols (i32.lt_u (local.get $j) (local.get $c1))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $rows (i32.lt_u (local.get $i) (local.get $r1)))))
"#,
};

/// The kernel text with an `i16` input (`a16`) and/or output (`o16`).
fn variant(a16: bool, o16: bool) -> Kernel {
    let name: &'static str = match (a16, o16) {
        (true, false) => "matmul_a16",
        (false, true) => "matmul_o16",
        _ => "matmul_a16o16",
    };
    let mut t = KERNEL
        .wat
        .replace("(func $matmul ", &format!("(func ${name} "));
    if a16 {
        t = t.replace(
            "(i32.load8_s (local.get $pa))",
            "(i32.load16_s (local.get $pa))",
        );
    }
    if o16 {
        t = t.replace(
            "(i64.store8 (i32.add (local.get $out)",
            "(i64.store16 (i32.add (local.get $out)",
        );
    }
    Kernel {
        name,
        wat: Box::leak(t.into_boxed_str()),
    }
}

/// `i16` input, `i8` output.
pub static KERNEL_A16: LazyLock<Kernel> = LazyLock::new(|| variant(true, false));
/// `i8` input, `i16` output.
pub static KERNEL_O16: LazyLock<Kernel> = LazyLock::new(|| variant(false, true));
/// `i16` input and output.
pub static KERNEL_A16O16: LazyLock<Kernel> = LazyLock::new(|| variant(true, true));

/// Splits the product into blocks that stay within the budget.
pub fn schedule(op: &MatMul, p: &Program, budget: &Budget) -> Scheduled {
    let a16 = p.tensors[op.a].dtype == DType::I16;
    let o16 = p.tensors[op.output].dtype == DType::I16;
    let (ea, eo) = (1 + u32::from(a16), 1 + u32::from(o16));
    let kernel = match (a16, o16) {
        (false, false) => KERNEL.name,
        (true, false) => KERNEL_A16.name,
        (false, true) => KERNEL_O16.name,
        (true, true) => KERNEL_A16O16.name,
    };
    let (m, k, n) = (op.m as u64, op.k as u64, op.n as u64);
    // Columns: the weights of a block (cb * k bytes) take half the bytes.
    // (A strided `a`, `[K, M]`, is read as `k` strips of `rb` bytes, so a
    // unit touches at least about `k` chunks.)
    let cb = (budget.unit_bytes / (2 * k)).clamp(1, n);
    // Rows: about 10 fuel per product plus 40 per output element.
    let per_row = (10 * k + 40) * cb;
    let rb = (budget.unit_fuel / per_row)
        .clamp(1, m)
        .min((budget.unit_bytes / (2 * k * u64::from(ea))).max(1));
    let units = m.div_ceil(rb) * n.div_ceil(cb);
    let t = |id: usize| p.tensors[id].offset;
    let r = &op.requant;
    Scheduled {
        kernel,
        units: units as u32,
        descriptor: vec![
            t(op.a),
            t(op.w),
            t(op.bias),
            t(op.output),
            t(r.multiplier),
            t(r.shift),
            op.m,
            op.k,
            op.n,
            rb as u32,
            cb as u32,
            r.zero_point as u32,
            r.lo as u32,
            r.hi as u32,
            op.a_row * ea,
            op.a_col * ea,
            op.o_row * eo,
            op.o_col * eo,
        ],
    }
}

/// The whole product on the memory image.
pub fn run_native(op: &MatMul, p: &Program, mem: &mut [u8]) {
    let w = pack_weights(op, p, mem);
    run_packed(op, p, mem, &w);
}

/// The weights `w [N, K]` as the `b` panel of [`gemm`] (derivable once per
/// artifact when no node writes them).
pub fn pack_weights(op: &MatMul, p: &Program, mem: &[u8]) -> Panel {
    let (k, n) = (op.k as usize, op.n as usize);
    Panel::from_i8(mem, p.tensors[op.w].offset as usize, n, k, k, 1, NR)
}

/// The whole product with the weights already packed by [`pack_weights`].
pub fn run_packed(op: &MatMul, p: &Program, mem: &mut [u8], w: &Panel) {
    let t = |id: usize| p.tensors[id].offset as usize;
    let (a, bias, out) = (t(op.a), t(op.bias), t(op.output));
    let (mul, sh) = (t(op.requant.multiplier), t(op.requant.shift));
    let (m, k, n) = (op.m as usize, op.k as usize, op.n as usize);
    let (ar, ac) = (op.a_row as usize, op.a_col as usize);
    let (or, oc) = (op.o_row as usize, op.o_col as usize);
    let r = &op.requant;
    let o16 = p.tensors[op.output].dtype == DType::I16;
    let pa = if p.tensors[op.a].dtype == DType::I16 {
        Panel::from_i16(mem, a, m, k, ar, ac, MR)
    } else {
        Panel::from_i8(mem, a, m, k, ar, ac, MR)
    };
    let threads = threads_for((m * n * k) as u64, n.div_ceil(NR));
    let sums = gemm(&pa, w, threads);
    for j in 0..n {
        let (b, mj, sj) = (
            read_i32(mem, bias + 4 * j),
            read_i32(mem, mul + 4 * j),
            read_i32(mem, sh + 4 * j),
        );
        for (i, s) in sums.column(j)[..m].iter().enumerate() {
            let q = requantize_wide(b.wrapping_add(*s), mj, sj, r.zero_point, r.lo, r.hi);
            let e = i * or + j * oc;
            if o16 {
                mem[out + 2 * e..out + 2 * e + 2].copy_from_slice(&(q as i16).to_le_bytes());
            } else {
                mem[out + e] = q as u8;
            }
        }
    }
}

/// The straightforward scalar loop of the IR's definition: the reference
/// of the fast path in tests and benchmarks.
pub fn run_reference(op: &MatMul, p: &Program, mem: &mut [u8]) {
    let t = |id: usize| p.tensors[id].offset as usize;
    let (a, w, bias, out) = (t(op.a), t(op.w), t(op.bias), t(op.output));
    let (mul, sh) = (t(op.requant.multiplier), t(op.requant.shift));
    let (m, k, n) = (op.m as usize, op.k as usize, op.n as usize);
    let (ar, ac) = (op.a_row as usize, op.a_col as usize);
    let (or, oc) = (op.o_row as usize, op.o_col as usize);
    let r = &op.requant;
    let a16 = p.tensors[op.a].dtype == DType::I16;
    let o16 = p.tensors[op.output].dtype == DType::I16;
    let read_a = |mem: &[u8], e: usize| -> i32 {
        if a16 {
            i32::from(i16::from_le_bytes([mem[a + 2 * e], mem[a + 2 * e + 1]]))
        } else {
            i32::from(read_i8(mem, a + e))
        }
    };
    for i in 0..m {
        for j in 0..n {
            let mut acc = read_i32(mem, bias + 4 * j);
            for kk in 0..k {
                let x = read_a(mem, i * ar + kk * ac);
                let y = read_i8(mem, w + j * k + kk) as i32;
                acc = acc.wrapping_add(x.wrapping_mul(y));
            }
            let q = requantize_wide(
                acc,
                read_i32(mem, mul + 4 * j),
                read_i32(mem, sh + 4 * j),
                r.zero_point,
                r.lo,
                r.hi,
            );
            let e = i * or + j * oc;
            if o16 {
                mem[out + 2 * e..out + 2 * e + 2].copy_from_slice(&(q as i16).to_le_bytes());
            } else {
                mem[out + e] = q as u8;
            }
        }
    }
}

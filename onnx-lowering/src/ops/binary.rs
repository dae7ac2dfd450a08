//! Broadcasting element-wise ops of two `i8` tensors (see
//! [`crate::ir::Binary`]): sums, products, maxima, minima and selects
//! with their own requantization, and comparisons and logic giving raw
//! `0`/`1`.
//!
//! The output is `rows` rows (its first five axes) of `inner` elements
//! (its last axis), written in order. A unit takes `rpu` whole rows, or,
//! when one row is too long for a unit, a range of `ipu` elements of one
//! row (`chunks` units per row). Each row index is decoded into the five
//! outer axes with `div`/`rem` to find the operands' addresses; the kind
//! is chosen per element by a `br_table` on a descriptor word. Loop
//! bounds and branches depend only on the shapes and the kind, so the fuel
//! is the same for every input.

use crate::error::LowerError;
use crate::ir::{Binary, BinaryKind, DType, Program};
use crate::ops::family::{Budget, Kernel, Scheduled};
use crate::ops::rearrange::{dims6, strides6};

/// Kind codes of the kernel's `br_table`.
fn code(kind: BinaryKind) -> u32 {
    match kind {
        BinaryKind::Add => 0,
        BinaryKind::Mul => 1,
        BinaryKind::Max => 2,
        BinaryKind::Min => 3,
        BinaryKind::Select => 4,
        BinaryKind::Equal => 5,
        BinaryKind::Less => 6,
        BinaryKind::LessOrEqual => 7,
        BinaryKind::And => 8,
        BinaryKind::Or => 9,
        BinaryKind::Xor => 10,
    }
}

/// Descriptor words: a, b, c, out, kind, ma, mb, s, lo, hi, rows, rpu,
/// chunks, ipu, inner, the inner strides of a, b, c, dims[0..5], then the
/// strides of a, b and c along axes 0..5 (all in elements = bytes). About
/// 50 (predicates) to 70 (rescaling kinds) fuel per element plus 110 per
/// row.
pub const KERNEL: Kernel = Kernel {
    name: "binary",
    wat: r#"
  (func $binary (param $d i32) (param $u i32)
    (local $r i32) (local $r1 i32) (local $j0 i32) (local $j1 i32) (local $q i32) (local $x i32)
    (local $t i32) (local $pa i32) (local $pb i32) (local $pc i32) (local $po i32) (local $end i32)
    (local $kind i32) (local $sa i32) (local $sb i32) (local $sc i32)
    (local $ma i64) (local $mb i64) (local $s i64) (local $rd i64) (local $lo i64) (local $hi i64)
    (local $xv i64) (local $yv i64) (local $xa i64) (local $yb i64) (local $v i64) (local $o i64)
    (local.set $kind (i32.load offset=16 (local.get $d)))
    (local.set $ma (i64.load32_s offset=20 (local.get $d)))
    (local.set $mb (i64.load32_s offset=24 (local.get $d)))
    (local.set $s (i64.load32_s offset=28 (local.get $d)))
    (local.set $rd (i64.shl (i64.const 1) (i64.sub (local.get $s) (i64.const 1))))
    (local.set $lo (i64.load32_s offset=32 (local.get $d)))
    (local.set $hi (i64.load32_s offset=36 (local.get $d)))
    (local.set $sa (i32.load offset=60 (local.get $d)))
    (local.set $sb (i32.load offset=64 (local.get $d)))
    (local.set $sc (i32.load offset=68 (local.get $d)))
    ;; rows [r, r1), elements [j0, j1) of each
    (local.set $t (i32.load offset=48 (local.get $d)))
    (local.set $r (i32.mul (i32.div_u (local.get $u) (local.get $t)) (i32.load offset=44 (local.get $d))))
    (local.set $r1 (i32.add (local.get $r) (i32.load offset=44 (local.get $d))))
    (local.set $r1 (select (i32.load offset=40 (local.get $d)) (local.get $r1)
      (i32.gt_u (local.get $r1) (i32.load offset=40 (local.get $d)))))
    (local.set $j0 (i32.mul (i32.rem_u (local.get $u) (local.get $t)) (i32.load offset=52 (local.get $d))))
    (local.set $j1 (i32.add (local.get $j0) (i32.load offset=52 (local.get $d))))
    (local.set $j1 (select (i32.load offset=56 (local.get $d)) (local.get $j1)
      (i32.gt_u (local.get $j1) (i32.load offset=56 (local.get $d)))))
    (loop $rows
      (local.set $pa (i32.add (i32.load offset=0 (local.get $d)) (i32.mul (local.get $j0) (local.get $sa))))
      (local.set $pb (i32.add (i32.load offset=4 (local.get $d)) (i32.mul (local.get $j0) (local.get $sb))))
      (local.set $pc (i32.add (i32.load offset=8 (local.get $d)) (i32.mul (local.get $j0) (local.get $sc))))
      (local.set $po (i32.add (i32.load offset=12 (local.get $d))
        (i32.add (i32.mul (local.get $r) (i32.load offset=56 (local.get $d))) (local.get $j0))))
      (local.set $q (local.get $r))
      (local.set $x (i32.rem_u (local.get $q) (i32.load offset=88 (local.get $d))))
      (local.set $q (i32.div_u (local.get $q) (i32.load offset=88 (local.get $d))))
      (local.set $pa (i32.add (local.get $pa) (i32.mul (local.get $x) (i32.load offset=108 (local.get $d)))))
      (local.set $pb (i32.add (local.get $pb) (i32.mul (local.get $x) (i32.load offset=128 (local.get $d)))))
      (local.set $pc (i32.add (local.get $pc) (i32.mul (local.get $x) (i32.load offset=148 (local.get $d)))))
      (local.set $x (i32.rem_u (local.get $q) (i32.load offset=84 (local.get $d))))
      (local.set $q (i32.div_u (local.get $q) (i32.load offset=84 (local.get $d))))
      (local.set $pa (i32.add (local.get $pa) (i32.mul (local.get $x) (i32.load offset=104 (local.get $d)))))
      (local.set $pb (i32.add (local.get $pb) (i32.mul (local.get $x) (i32.load offset=124 (local.get $d)))))
      (local.set $pc (i32.add (local.get $pc) (i32.mul (local.get $x) (i32.load offset=144 (local.get $d)))))
      (local.set $x (i32.rem_u (local.get $q) (i32.load offset=80 (local.get $d))))
      (local.set $q (i32.div_u (local.get $q) (i32.load offset=80 (local.get $d))))
      (local.set $pa (i32.add (local.get $pa) (i32.mul (local.get $x) (i32.load offset=100 (local.get $d)))))
      (local.set $pb (i32.add (local.get $pb) (i32.mul (local.get $x) (i32.load offset=120 (local.get $d)))))
      (local.set $pc (i32.add (local.get $pc) (i32.mul (local.get $x) (i32.load offset=140 (local.get $d)))))
      (local.set $x (i32.rem_u (local.get $q) (i32.load offset=76 (local.get $d))))
      (local.set $q (i32.div_u (local.get $q) (i32.load offset=76 (local.get $d))))
      (local.set $pa (i32.add (local.get $pa) (i32.mul (local.get $x) (i32.load offset=96 (local.get $d)))))
      (local.set $pb (i32.add (local.get $pb) (i32.mul (local.get $x) (i32.load offset=116 (local.get $d)))))
      (local.set $pc (i32.add (local.get $pc) (i32.mul (local.get $x) (i32.load offset=136 (local.get $d)))))
      (local.set $x (i32.rem_u (local.get $q) (i32.load offset=72 (local.get $d))))
      (local.set $pa (i32.add (local.get $pa) (i32.mul (local.get $x) (i32.load offset=92 (local.get $d)))))
      (local.set $pb (i32.add (local.get $pb) (i32.mul (local.get $x) (i32.load offset=112 (local.get $d)))))
      (local.set $pc (i32.add (local.get $pc) (i32.mul (local.get $x) (i32.load offset=132 (local.get $d)))))
      (local.set $end (i32.add (local.get $po) (i32.sub (local.get $j1) (local.get $j0))))
      (loop $elems
        (local.set $xv (i64.load8_s (local.get $pa)))
        (local.set $yv (i64.load8_s (local.get $pb)))
        (local.set $xa (i64.mul (local.get $xv) (local.get $ma)))
        (local.set $yb (i64.mul (local.get $yv) (local.get $mb)))
        (block $store
          (block $req
            (block $k10 (block $k9 (block $k8 (block $k7 (block $k6 (block $k5
            (block $k4 (block $k3 (block $k2 (block $k1 (block $k0
              (br_table $k0 $k1 $k2 $k3 $k4 $k5 $k6 $k7 $k8 $k9 $k10 (local.get $kind)))
              (local.set $v (i64.add (local.get $xa) (local.get $yb)))
              (br $req))
              (local.set $v (i64.mul (i64.mul (local.get $xv) (local.get $yv)) (local.get $ma)))
              (br $req))
              (local.set $v (select (local.get $xa) (local.get $yb) (i64.gt_s (local.get $xa) (local.get $yb))))
              (br $req))
              (local.set $v (select (local.get $xa) (local.get $yb) (i64.lt_s (local.get $xa) (local.get $yb))))
              (br $req))
              (local.set $v (select (local.get $xa) (local.get $yb) (i32.load8_u (local.get $pc))))
              (br $req))
              (local.set $o (i64.extend_i32_u (i64.eq (local.get $xa) (local.get $yb))))
              (br $store))
              (local.set $o (i64.extend_i32_u (i64.lt_s (local.get $xa) (local.get $yb))))
              (br $store))
              (local.set $o (i64.extend_i32_u (i64.le_s (local.get $xa) (local.get $yb))))
              (br $store))
              (local.set $o (i64.extend_i32_u (i32.and (i64.ne (local.get $xv) (i64.const 0))
                (i64.ne (local.get $yv) (i64.const 0)))))
              (br $store))
              (local.set $o (i64.extend_i32_u (i32.or (i64.ne (local.get $xv) (i64.const 0))
                (i64.ne (local.get $yv) (i64.const 0)))))
              (br $store))
            (local.set $o (i64.extend_i32_u (i32.xor (i64.ne (local.get $xv) (i64.const 0))
              (i64.ne (local.get $yv) (i64.const 0)))))
            (br $store))
          (local.set $o (i64.shr_s (i64.add (local.get $v) (local.get $rd)) (local.get $s)))
          (local.set $o (select (local.get $lo) (local.get $o) (i64.lt_s (local.get $o) (local.get $lo))))
          (local.set $o (select (local.get $hi) (local.get $o) (i64.gt_s (local.get $o) (local.get $hi)))))
        (i64.store8 (local.get $po) (local.get $o))
        (local.set $pa (i32.add (local.get $pa) (local.get $sa)))
        (local.set $pb (i32.add (local.get $pb) (local.get $sb)))
        (local.set $pc (i32.add (local.get $pc) (local.get $sc)))
        (local.set $po (i32.add (local.get $po) (i32.const 1)))
        (br_if $elems (i32.lt_u (local.get $po) (local.get $end))))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br_if $rows (i32.lt_u (local.get $r) (local.get $r1)))))
"#,
};

/// Splits the output into row blocks (or pieces of rows) within the budget.
pub fn schedule(op: &Binary, p: &Program, budget: &Budget) -> Scheduled {
    let out = &p.tensors[op.output];
    let dims = dims6(&out.shape);
    let rows: u64 = dims[..5].iter().map(|e| u64::from(*e)).product();
    let inner = u64::from(dims[5]);
    // A strided read may touch its own chunk: up to 64 bytes each.
    let reads = if op.kind == BinaryKind::Select { 3 } else { 2 };
    let strided = [op.a_stride[5], op.b_stride[5], op.c_stride[5]]
        .iter()
        .take(reads)
        .map(|s| u64::from(*s).clamp(1, 64))
        .sum::<u64>();
    let (ef, eb) = (70u64, 1 + strided);
    let (rpu, chunks, ipu) =
        if 120 + inner * ef > budget.unit_fuel || 64 * 3 + inner * eb > budget.unit_bytes {
            let ipu = (budget.unit_fuel.saturating_sub(120) / ef)
                .min(budget.unit_bytes.saturating_sub(64 * 3) / eb)
                .clamp(1, inner);
            (1, inner.div_ceil(ipu), ipu)
        } else {
            (
                budget.rows_per_unit(rows, 120 + inner * ef, 0, 64 * 3 + inner * eb),
                1,
                inner,
            )
        };
    let t = |id: usize| p.tensors[id].offset;
    let mut desc = vec![
        t(op.a),
        t(op.b),
        t(op.c),
        out.offset,
        code(op.kind),
        op.a_multiplier as u32,
        op.b_multiplier as u32,
        op.shift as u32,
        op.lo as u32,
        op.hi as u32,
        rows as u32,
        rpu as u32,
        chunks as u32,
        ipu as u32,
        inner as u32,
        op.a_stride[5],
        op.b_stride[5],
        op.c_stride[5],
    ];
    desc.extend(&dims[..5]);
    desc.extend(&op.a_stride[..5]);
    desc.extend(&op.b_stride[..5]);
    desc.extend(&op.c_stride[..5]);
    Scheduled {
        kernel: KERNEL.name,
        units: (rows.div_ceil(rpu) * chunks) as u32,
        descriptor: desc,
    }
}

/// One output element of the spec from `x`, `y` and the condition `c`.
pub fn apply(op: &Binary, x: i8, y: i8, c: i8) -> i8 {
    let (x, y) = (i64::from(x), i64::from(y));
    let (xa, yb) = (
        x * i64::from(op.a_multiplier),
        y * i64::from(op.b_multiplier),
    );
    let v = match op.kind {
        BinaryKind::Add => xa + yb,
        BinaryKind::Mul => x * y * i64::from(op.a_multiplier),
        BinaryKind::Max => xa.max(yb),
        BinaryKind::Min => xa.min(yb),
        BinaryKind::Select => {
            if c != 0 {
                xa
            } else {
                yb
            }
        }
        BinaryKind::Equal => return i8::from(xa == yb),
        BinaryKind::Less => return i8::from(xa < yb),
        BinaryKind::LessOrEqual => return i8::from(xa <= yb),
        BinaryKind::And => return i8::from(x != 0 && y != 0),
        BinaryKind::Or => return i8::from(x != 0 || y != 0),
        BinaryKind::Xor => return i8::from((x != 0) != (y != 0)),
    };
    let s = op.shift as u32;
    let q = (v + (1i64 << (s - 1))) >> s;
    q.clamp(i64::from(op.lo), i64::from(op.hi)) as i8
}

/// The whole op on the memory image, element by element in output order.
pub fn run_native(op: &Binary, p: &Program, mem: &mut [u8]) {
    let t = |id: usize| p.tensors[id].offset as usize;
    let (a, b, c, out) = (t(op.a), t(op.b), t(op.c), t(op.output));
    let dims = dims6(&p.tensors[op.output].shape);
    let select = op.kind == BinaryKind::Select;
    for i in 0..p.tensors[op.output].len() as usize {
        let (mut rest, mut ia, mut ib, mut ic) = (i, 0usize, 0usize, 0usize);
        for d in (0..6).rev() {
            let k = rest % dims[d] as usize;
            rest /= dims[d] as usize;
            ia += k * op.a_stride[d] as usize;
            ib += k * op.b_stride[d] as usize;
            ic += k * op.c_stride[d] as usize;
        }
        let cond = if select { mem[c + ic] as i8 } else { 0 };
        mem[out + i] = apply(op, mem[a + ia] as i8, mem[b + ib] as i8, cond) as u8;
    }
}

/// Checks the op against the IR's rules: `i8` operands and output of at
/// most 6 axes, strides inside the operands, shift and clamp in range.
pub fn validate(p: &Program, node: &str, op: &Binary) -> Result<(), LowerError> {
    let bad = |m: &str| LowerError::InvalidProgram(format!("node {node}: {m}"));
    let get = |id: usize| {
        p.tensors
            .get(id)
            .ok_or_else(|| bad("tensor does not exist"))
    };
    let out = get(op.output)?;
    if out.shape.len() > 6 || out.is_empty() || out.dtype != DType::I8 {
        return Err(bad(
            "binary output must be i8 with 1 to 6 axes and elements",
        ));
    }
    let dims = dims6(&out.shape);
    for (id, st) in [
        (op.a, op.a_stride),
        (op.b, op.b_stride),
        (op.c, op.c_stride),
    ] {
        let t = get(id)?;
        let reach: u64 = (0..6)
            .map(|d| u64::from(dims[d] - 1) * u64::from(st[d]))
            .sum();
        if t.dtype != DType::I8 || reach >= u64::from(t.len()) {
            return Err(bad("binary operand not i8 or strides leave it"));
        }
    }
    if !(1..=62).contains(&op.shift)
        || op.lo > op.hi
        || !(-128..=127).contains(&op.lo)
        || !(-128..=127).contains(&op.hi)
    {
        return Err(bad("binary shift or clamp out of range"));
    }
    // The kernel's output offsets are row-major by construction.
    debug_assert_eq!(strides6(&dims)[5], 1);
    Ok(())
}

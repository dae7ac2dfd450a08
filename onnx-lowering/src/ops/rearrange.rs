//! Data movement (see [`crate::ir::Rearrange`]): strided copies of windows
//! of the output from up to many inputs, and a fill value elsewhere.
//! Transpose, Slice, Split, Expand, Pad, Concat and Gather with constant
//! indices are all this op.
//!
//! Units: first, when the windows do not cover the output, `fill_units`
//! units store `fill` into consecutive element ranges of the whole output;
//! then each part's units. A part's window is `rows` rows (its first five
//! axes) of `inner` elements (its last axis); a unit copies `rpu` whole
//! rows, or, when one row is too long for a unit, a range of `ipu`
//! elements of one row (`chunks` units per row). The kernel finds a unit's
//! part by comparing the unit index with each part's first unit, decodes
//! each row index into the window's axes with `div`/`rem`, and copies with
//! loops whose bounds depend only on the shapes: the fuel is the same for
//! every input. Parts are written after the fill, so the result is the
//! op's (the windows are disjoint).

use crate::error::LowerError;
use crate::ir::{DType, Program, Rearrange};
use crate::ops::family::{Budget, Kernel, Scheduled};

/// Bytes of one part record of the descriptor.
const PART_BYTES: usize = 96;
/// Largest number of parts (the validation compares every pair).
pub const MAX_PARTS: usize = 1024;

/// Descriptor words: out, size, fill, fill_units, fill_per, out_len,
/// nparts, then per part (96 bytes): first_unit, rows, rpu, chunks, ipu,
/// inner, src, dst, inner src stride (bytes), extent[0..5], src
/// stride[0..5] (bytes), dst stride[0..5] (bytes). About 19 fuel per
/// element copied plus 80 per row.
pub const KERNEL: Kernel = Kernel {
    name: "rearrange",
    wat: r#"
  (func $rearrange (param $d i32) (param $u i32)
    (local $size i32) (local $p i32) (local $k i32) (local $i i32) (local $e i32) (local $t i32)
    (local $r i32) (local $r1 i32) (local $j0 i32) (local $j1 i32) (local $q i32) (local $x i32)
    (local $src i32) (local $dst i32) (local $end i32) (local $ss i32) (local $v i32)
    (local.set $size (i32.load offset=4 (local.get $d)))
    (if (i32.lt_u (local.get $u) (i32.load offset=12 (local.get $d)))
      (then
        ;; fill elements [u * per, min(len, (u + 1) * per))
        (local.set $i (i32.mul (local.get $u) (i32.load offset=16 (local.get $d))))
        (local.set $e (i32.add (local.get $i) (i32.load offset=16 (local.get $d))))
        (local.set $e (select (i32.load offset=20 (local.get $d)) (local.get $e)
          (i32.gt_u (local.get $e) (i32.load offset=20 (local.get $d)))))
        (local.set $dst (i32.add (i32.load (local.get $d)) (i32.mul (local.get $i) (local.get $size))))
        (local.set $end (i32.add (i32.load (local.get $d)) (i32.mul (local.get $e) (local.get $size))))
        (local.set $v (i32.load offset=8 (local.get $d)))
        (loop $fill
          (if (i32.eq (local.get $size) (i32.const 1))
            (then (i32.store8 (local.get $dst) (local.get $v)))
            (else (if (i32.eq (local.get $size) (i32.const 2))
              (then (i32.store16 (local.get $dst) (local.get $v)))
              (else (i32.store (local.get $dst) (local.get $v))))))
          (local.set $dst (i32.add (local.get $dst) (local.get $size)))
          (br_if $fill (i32.lt_u (local.get $dst) (local.get $end))))
        (return)))
    ;; the part of unit u: the last one whose first unit is <= u
    (local.set $p (i32.add (local.get $d) (i32.const 28)))
    (local.set $k (i32.const 1))
    (block $found
      (loop $find
        (br_if $found (i32.ge_u (local.get $k) (i32.load offset=24 (local.get $d))))
        (br_if $found (i32.lt_u (local.get $u) (i32.load offset=96 (local.get $p))))
        (local.set $p (i32.add (local.get $p) (i32.const 96)))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br $find)))
    ;; rows [r, r1), elements [j0, j1) of each
    (local.set $k (i32.sub (local.get $u) (i32.load (local.get $p))))
    (local.set $t (i32.load offset=12 (local.get $p)))
    (local.set $r (i32.mul (i32.div_u (local.get $k) (local.get $t)) (i32.load offset=8 (local.get $p))))
    (local.set $r1 (i32.add (local.get $r) (i32.load offset=8 (local.get $p))))
    (local.set $r1 (select (i32.load offset=4 (local.get $p)) (local.get $r1)
      (i32.gt_u (local.get $r1) (i32.load offset=4 (local.get $p)))))
    (local.set $j0 (i32.mul (i32.rem_u (local.get $k) (local.get $t)) (i32.load offset=16 (local.get $p))))
    (local.set $j1 (i32.add (local.get $j0) (i32.load offset=16 (local.get $p))))
    (local.set $j1 (select (i32.load offset=20 (local.get $p)) (local.get $j1)
      (i32.gt_u (local.get $j1) (i32.load offset=20 (local.get $p)))))
    (local.set $ss (i32.load offset=32 (local.get $p)))
    (loop $rows
      (local.set $src (i32.add (i32.load offset=24 (local.get $p)) (i32.mul (local.get $j0) (local.get $ss))))
      (local.set $dst (i32.add (i32.load offset=28 (local.get $p)) (i32.mul (local.get $j0) (local.get $size))))
      (local.set $q (local.get $r))
      (local.set $x (i32.rem_u (local.get $q) (i32.load offset=52 (local.get $p))))
      (local.set $q (i32.div_u (local.get $q) (i32.load offset=52 (local.get $p))))
      (local.set $src (i32.add (local.get $src) (i32.mul (local.get $x) (i32.load offset=72 (local.get $p)))))
      (local.set $dst (i32.add (local.get $dst) (i32.mul (local.get $x) (i32.load offset=92 (local.get $p)))))
      (local.set $x (i32.rem_u (local.get $q) (i32.load offset=48 (local.get $p))))
      (local.set $q (i32.div_u (local.get $q) (i32.load offset=48 (local.get $p))))
      (local.set $src (i32.add (local.get $src) (i32.mul (local.get $x) (i32.load offset=68 (local.get $p)))))
      (local.set $dst (i32.add (local.get $dst) (i32.mul (local.get $x) (i32.load offset=88 (local.get $p)))))
      (local.set $x (i32.rem_u (local.get $q) (i32.load offset=44 (local.get $p))))
      (local.set $q (i32.div_u (local.get $q) (i32.load offset=44 (local.get $p))))
      (local.set $src (i32.add (local.get $src) (i32.mul (local.get $x) (i32.load offset=64 (local.get $p)))))
      (local.set $dst (i32.add (local.get $dst) (i32.mul (local.get $x) (i32.load offset=84 (local.get $p)))))
      (local.set $x (i32.rem_u (local.get $q) (i32.load offset=40 (local.get $p))))
      (local.set $q (i32.div_u (local.get $q) (i32.load offset=40 (local.get $p))))
      (local.set $src (i32.add (local.get $src) (i32.mul (local.get $x) (i32.load offset=60 (local.get $p)))))
      (local.set $dst (i32.add (local.get $dst) (i32.mul (local.get $x) (i32.load offset=80 (local.get $p)))))
      (local.set $x (i32.rem_u (local.get $q) (i32.load offset=36 (local.get $p))))
      (local.set $src (i32.add (local.get $src) (i32.mul (local.get $x) (i32.load offset=56 (local.get $p)))))
      (local.set $dst (i32.add (local.get $dst) (i32.mul (local.get $x) (i32.load offset=76 (local.get $p)))))
      (local.set $end (i32.add (local.get $dst) (i32.mul (i32.sub (local.get $j1) (local.get $j0)) (local.get $size))))
      (if (i32.eq (local.get $size) (i32.const 1))
        (then
          (loop $c1
            (i32.store8 (local.get $dst) (i32.load8_u (local.get $src)))
            (local.set $src (i32.add (local.get $src) (local.get $ss)))
            (local.set $dst (i32.add (local.get $dst) (i32.const 1)))
            (br_if $c1 (i32.lt_u (local.get $dst) (local.get $end)))))
        (else (if (i32.eq (local.get $size) (i32.const 2))
          (then
            (loop $c2
              (i32.store16 (local.get $dst) (i32.load16_u (local.get $src)))
              (local.set $src (i32.add (local.get $src) (local.get $ss)))
              (local.set $dst (i32.add (local.get $dst) (i32.const 2)))
              (br_if $c2 (i32.lt_u (local.get $dst) (local.get $end)))))
          (else
            (loop $c4
              (i32.store (local.get $dst) (i32.load (local.get $src)))
              (local.set $src (i32.add (local.get $src) (local.get $ss)))
              (local.set $dst (i32.add (local.get $dst) (i32.const 4)))
              (br_if $c4 (i32.lt_u (local.get $dst) (local.get $end))))))))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br_if $rows (i32.lt_u (local.get $r) (local.get $r1)))))
"#,
};

/// A shape right-aligned to 6 axes (missing leading axes 1).
pub fn dims6(shape: &[u32]) -> [u32; 6] {
    let mut d = [1u32; 6];
    for (slot, v) in d.iter_mut().rev().zip(shape.iter().rev()) {
        *slot = *v;
    }
    d
}

/// Row-major element strides of 6 axes.
pub fn strides6(dims: &[u32; 6]) -> [u32; 6] {
    let mut s = [1u32; 6];
    for i in (0..5).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

fn volume(extent: &[u32; 6]) -> u64 {
    extent.iter().map(|e| u64::from(*e)).product()
}

/// Whether the windows leave some output element to the fill.
fn needs_fill(op: &Rearrange, len: u64) -> bool {
    op.parts.iter().map(|p| volume(&p.extent)).sum::<u64>() < len
}

/// Splits the fill and each part into units within the budget.
pub fn schedule(op: &Rearrange, p: &Program, budget: &Budget) -> Scheduled {
    let out = &p.tensors[op.output];
    let size = out.dtype.size();
    let dims = dims6(&out.shape);
    let ost = strides6(&dims);
    let len = u64::from(out.len());
    let (fill_units, fill_per) = if needs_fill(op, len) {
        let per = budget.rows_per_unit(len, 14, 0, u64::from(size));
        (len.div_ceil(per), per)
    } else {
        (0, 1)
    };
    let mut desc = vec![
        out.offset,
        size,
        op.fill as u32,
        fill_units as u32,
        fill_per as u32,
        out.len(),
        op.parts.len() as u32,
    ];
    let mut first = fill_units;
    for part in &op.parts {
        let inp = &p.tensors[part.input];
        let rows: u64 = part.extent[..5].iter().map(|e| u64::from(*e)).product();
        let inner = u64::from(part.extent[5]);
        let ss = u64::from(part.stride[5]) * u64::from(size);
        // Fuel and bytes of one element (a strided read may touch its own
        // chunk: up to 64 bytes are counted for it).
        let (ef, eb) = (19u64, u64::from(size) + ss.clamp(u64::from(size), 64));
        let (rpu, chunks, ipu) =
            if 80 + inner * ef > budget.unit_fuel || 64 + inner * eb > budget.unit_bytes {
                let ipu = (budget.unit_fuel.saturating_sub(80) / ef)
                    .min(budget.unit_bytes.saturating_sub(64) / eb)
                    .clamp(1, inner);
                (1, inner.div_ceil(ipu), ipu)
            } else {
                (
                    budget.rows_per_unit(rows, 80 + inner * ef, 0, 64 + inner * eb),
                    1,
                    inner,
                )
            };
        let src = inp.offset + part.base * size;
        let dst = out.offset + part.start.iter().zip(ost).map(|(s, o)| s * o).sum::<u32>() * size;
        desc.extend([
            first as u32,
            rows as u32,
            rpu as u32,
            chunks as u32,
            ipu as u32,
            inner as u32,
            src,
            dst,
            ss as u32,
        ]);
        desc.extend(&part.extent[..5]);
        desc.extend(part.stride[..5].iter().map(|s| s * size));
        desc.extend(ost[..5].iter().map(|s| s * size));
        first += rows.div_ceil(rpu) * chunks;
    }
    debug_assert_eq!(desc.len(), 7 + op.parts.len() * PART_BYTES / 4);
    Scheduled {
        kernel: KERNEL.name,
        units: first as u32,
        descriptor: desc,
    }
}

/// The whole op on the memory image: the fill where needed, then each
/// part's window element by element.
pub fn run_native(op: &Rearrange, p: &Program, mem: &mut [u8]) {
    let out = &p.tensors[op.output];
    let size = out.dtype.size() as usize;
    let dims = dims6(&out.shape);
    let ost = strides6(&dims);
    let at = out.offset as usize;
    if needs_fill(op, u64::from(out.len())) {
        let bytes = op.fill.to_le_bytes();
        for i in 0..out.len() as usize {
            mem[at + i * size..at + (i + 1) * size].copy_from_slice(&bytes[..size]);
        }
    }
    for part in &op.parts {
        let src0 = p.tensors[part.input].offset as usize;
        let total = volume(&part.extent) as usize;
        for w in 0..total {
            let (mut rest, mut s, mut o) = (w, part.base as usize, 0usize);
            for d in (0..6).rev() {
                let e = part.extent[d] as usize;
                let i = rest % e;
                rest /= e;
                s += i * part.stride[d] as usize;
                o += (i + part.start[d] as usize) * ost[d] as usize;
            }
            let (from, to) = (src0 + s * size, at + o * size);
            mem.copy_within(from..from + size, to);
        }
    }
}

/// Checks the op against the IR's rules: shapes of at most 6 axes, one
/// element type, windows non-empty, inside the output and disjoint, reads
/// inside their inputs, `fill` in the element type.
pub fn validate(p: &Program, node: &str, op: &Rearrange) -> Result<(), LowerError> {
    let bad = |m: &str| LowerError::InvalidProgram(format!("node {node}: {m}"));
    let out = p.tensors.get(op.output).ok_or_else(|| bad("no output"))?;
    if out.shape.len() > 6 || out.is_empty() {
        return Err(bad("rearrange output must have 1 to 6 axes and elements"));
    }
    let range = match out.dtype {
        DType::I8 => -128..=127,
        DType::I16 => -32768..=32767,
        DType::I32 => i32::MIN..=i32::MAX,
    };
    if !range.contains(&op.fill) {
        return Err(bad("fill value outside the element type"));
    }
    if op.parts.len() > MAX_PARTS {
        return Err(bad("too many parts"));
    }
    let dims = dims6(&out.shape);
    for part in &op.parts {
        let inp = p.tensors.get(part.input).ok_or_else(|| bad("no input"))?;
        if inp.dtype != out.dtype {
            return Err(bad("rearrange input and output types differ"));
        }
        for (d, dim) in dims.iter().enumerate() {
            let end = u64::from(part.start[d]) + u64::from(part.extent[d]);
            if part.extent[d] == 0 || end > u64::from(*dim) {
                return Err(bad("window empty or outside the output"));
            }
        }
        let reach: u64 = u64::from(part.base)
            + (0..6)
                .map(|d| u64::from(part.extent[d] - 1) * u64::from(part.stride[d]))
                .sum::<u64>();
        if reach >= u64::from(inp.len()) {
            return Err(bad("rearrange reads outside its input"));
        }
    }
    for (i, a) in op.parts.iter().enumerate() {
        for b in &op.parts[i + 1..] {
            let overlap = (0..6).all(|d| {
                a.start[d] < b.start[d] + b.extent[d] && b.start[d] < a.start[d] + a.extent[d]
            });
            if overlap {
                return Err(bad("rearrange windows overlap"));
            }
        }
    }
    Ok(())
}

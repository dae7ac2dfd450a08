//! Product of two activations, batched (attention's `Q K^T` and `P V`):
//! `out[t, i, j] = rescale(sum_k a[t, i, k] * b[t, j, k])` with strided
//! operands (see [`crate::ir::ActMatMul`]).
//!
//! A unit is one batch index and a block of `rb` rows: unit `u` is batch
//! `u / nrb`, rows `[(u % nrb) * rb, min(m, ..+ rb))`.
//!
//! Natively, each batch's operands are packed and multiplied by
//! [`crate::ops::native_gemm`] (batches over threads when large);
//! [`run_reference`] is the scalar loop of the definition.

use crate::ir::{ActMatMul, DType, Program};
use crate::ops::family::{Budget, Kernel, Scheduled};
use crate::ops::mem::{read_i8, write_i32};
use crate::ops::native_gemm::{gemm, threads_for, Panel, Sums, MR, NR};
use std::sync::LazyLock;

/// Descriptor words: a, b, out, batch, m, n, k, a strides (3), b strides
/// (3), out strides (3), multiplier, shift, rb, i32 output (0 or 1). About
/// 9 fuel per product and 50 per output. `$o0` is the batch's element
/// offset in the output.
pub const KERNEL: Kernel = Kernel {
    name: "act_matmul",
    wat: r#"
  (func $act_matmul (param $d i32) (param $u i32)
    (local $nrb i32) (local $t i32) (local $i i32) (local $i1 i32) (local $j i32) (local $n i32)
    (local $a0 i32) (local $b0 i32) (local $o0 i32) (local $pa i32) (local $pb i32) (local $kk i32)
    (local $k i32) (local $ak i32) (local $bk i32) (local $acc i32) (local $q i64) (local $s i64)
    (local $e i32)
    (local.set $nrb (i32.div_u (i32.sub (i32.add (i32.load offset=16 (local.get $d)) (i32.load offset=72 (local.get $d)))
      (i32.const 1)) (i32.load offset=72 (local.get $d))))
    (local.set $t (i32.div_u (local.get $u) (local.get $nrb)))
    (local.set $i (i32.mul (i32.rem_u (local.get $u) (local.get $nrb)) (i32.load offset=72 (local.get $d))))
    (local.set $i1 (i32.add (local.get $i) (i32.load offset=72 (local.get $d))))
    (local.set $i1 (select (i32.load offset=16 (local.get $d)) (local.get $i1)
      (i32.gt_u (local.get $i1) (i32.load offset=16 (local.get $d)))))
    (local.set $n (i32.load offset=20 (local.get $d)))
    (local.set $k (i32.load offset=24 (local.get $d)))
    (local.set $ak (i32.load offset=36 (local.get $d)))
    (local.set $bk (i32.load offset=48 (local.get $d)))
    (local.set $s (i64.load32_s offset=68 (local.get $d)))
    (local.set $a0 (i32.add (i32.load offset=0 (local.get $d)) (i32.mul (local.get $t) (i32.load offset=28 (local.get $d)))))
    (local.set $b0 (i32.add (i32.load offset=4 (local.get $d)) (i32.mul (local.get $t) (i32.load offset=40 (local.get $d)))))
    (local.set $o0 (i32.mul (local.get $t) (i32.load offset=52 (local.get $d))))
    (loop $rows
      (local.set $j (i32.const 0))
      (loop $cols
        (local.set $acc (i32.const 0))
        (local.set $pa (i32.add (local.get $a0) (i32.mul (local.get $i) (i32.load offset=32 (local.get $d)))))
        (local.set $pb (i32.add (local.get $b0) (i32.mul (local.get $j) (i32.load offset=44 (local.get $d)))))
        (local.set $kk (i32.const 0))
        (loop $dot
          (local.set $acc (i32.add (local.get $acc)
            (i32.mul (i32.load8_s (local.get $pa)) (i32.load8_s (local.get $pb)))))
          (local.set $pa (i32.add (local.get $pa) (local.get $ak)))
          (local.set $pb (i32.add (local.get $pb) (local.get $bk)))
          (local.set $kk (i32.add (local.get $kk) (i32.const 1)))
          (br_if $dot (i32.lt_u (local.get $kk) (local.get $k))))
        (local.set $q (i64.shr_s (i64.add (i64.mul (i64.extend_i32_s (local.get $acc))
            (i64.load32_s offset=64 (local.get $d)))
          (i64.shl (i64.const 1) (i64.sub (local.get $s) (i64.const 1)))) (local.get $s)))
        (local.set $q (select (i64.const -128) (local.get $q) (i64.lt_s (local.get $q) (i64.const -128))))
        (local.set $q (select (i64.const 127) (local.get $q) (i64.gt_s (local.get $q) (i64.const 127))))
        (local.set $e (i32.add (local.get $o0) (i32.add
          (i32.mul (local.get $i) (i32.load offset=56 (local.get $d)))
          (i32.mul (local.get $j) (i32.load offset=60 (local.get $d))))))
        (if (i32.load offset=76 (local.get $d))
          (then (i32.store (i32.add (i32.load offset=8 (local.get $d))
            (i32.shl (local.get $e) (i32.const 2))) (local.get $acc)))
          (else (i64.store8 (i32.add (i32.load offset=8 (local.get $d)) (local.get $e)) (local.get $q))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br_if $cols (i32.lt_u (local.get $j) (local.get $n))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $rows (i32.lt_u (local.get $i) (local.get $i1)))))
"#,
};

/// The variant with `i16` operands and output (attention's `P V` with
/// probabilities in units of `1/32767`): 16-bit loads with byte strides
/// for `a` and `b`, a 16-bit store clamped to `-32767..=32767`.
pub static KERNEL_16: LazyLock<Kernel> = LazyLock::new(|| {
    let t = KERNEL
        .wat
        .replace("(func $act_matmul ", "(func $act_matmul16 ")
        .replace(
            "(i32.mul (i32.load8_s (local.get $pa)) (i32.load8_s (local.get $pb)))",
            "(i32.mul (i32.load16_s (local.get $pa)) (i32.load16_s (local.get $pb)))",
        )
        .replace("(i64.const -128)", "(i64.const -32767)")
        .replace("(i64.const 127)", "(i64.const 32767)")
        .replace(
            "(i64.store8 (i32.add (i32.load offset=8 (local.get $d)) (local.get $e)) (local.get $q))",
            "(i64.store16 (i32.add (i32.load offset=8 (local.get $d)) (i32.shl (local.get $e) (i32.const 1))) (local.get $q))",
        );
    Kernel {
        name: "act_matmul16",
        wat: Box::leak(t.into_boxed_str()),
    }
});

/// Splits each batch's rows into blocks within the budget.
pub fn schedule(op: &ActMatMul, p: &Program, budget: &Budget) -> Scheduled {
    let half = p.tensors[op.a].dtype == DType::I16;
    let eb = 1 + u32::from(half);
    let (m, n, k) = (u64::from(op.m), u64::from(op.n), u64::from(op.k));
    let per_row_fuel = n * (9 * k + 55) + 10;
    let per_row_bytes = (k + n * (k + 4)) * u64::from(eb);
    let rb = budget.rows_per_unit(m, per_row_fuel, 0, per_row_bytes);
    let t = |id: usize| p.tensors[id].offset;
    let mut descriptor = vec![t(op.a), t(op.b), t(op.output), op.batch, op.m, op.n, op.k];
    descriptor.extend(op.a_stride.map(|s| s * eb));
    descriptor.extend(op.b_stride.map(|s| s * eb));
    descriptor.extend(op.o_stride);
    let wide = p.tensors[op.output].dtype == DType::I32;
    descriptor.extend([
        op.multiplier as u32,
        op.shift as u32,
        rb as u32,
        wide as u32,
    ]);
    Scheduled {
        kernel: if half { KERNEL_16.name } else { KERNEL.name },
        units: (u64::from(op.batch) * m.div_ceil(rb)) as u32,
        descriptor,
    }
}

/// The sums of batch `bt`: both operands packed, then [`gemm`].
fn batch_sums(op: &ActMatMul, p: &Program, mem: &[u8], bt: usize) -> Sums {
    let t = |id: usize| p.tensors[id].offset as usize;
    let [sab, sai, sak] = op.a_stride.map(|v| v as usize);
    let [sbb, sbj, sbk] = op.b_stride.map(|v| v as usize);
    let (m, n, k) = (op.m as usize, op.n as usize, op.k as usize);
    let (pa, pb) = if p.tensors[op.a].dtype == DType::I16 {
        (
            Panel::from_i16(mem, t(op.a) + 2 * bt * sab, m, k, sai, sak, MR),
            Panel::from_i16(mem, t(op.b) + 2 * bt * sbb, n, k, sbj, sbk, NR),
        )
    } else {
        (
            Panel::from_i8(mem, t(op.a) + bt * sab, m, k, sai, sak, MR),
            Panel::from_i8(mem, t(op.b) + bt * sbb, n, k, sbj, sbk, NR),
        )
    };
    gemm(&pa, &pb, 1)
}

/// The whole product on the memory image (batches split over threads when
/// the node is large).
pub fn run_native(op: &ActMatMul, p: &Program, mem: &mut [u8]) {
    let batch = op.batch as usize;
    let macs = u64::from(op.batch) * u64::from(op.m) * u64::from(op.n) * u64::from(op.k);
    let threads = threads_for(macs, batch);
    let src: &[u8] = mem;
    let sums: Vec<Sums> = if threads <= 1 {
        (0..batch).map(|bt| batch_sums(op, p, src, bt)).collect()
    } else {
        let per = batch.div_ceil(threads);
        std::thread::scope(|s| {
            let parts: Vec<_> = (0..batch)
                .step_by(per)
                .map(|b0| {
                    s.spawn(move || {
                        (b0..(b0 + per).min(batch))
                            .map(|bt| batch_sums(op, p, src, bt))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            parts
                .into_iter()
                .flat_map(|h| h.join().expect("a product thread panicked"))
                .collect()
        })
    };
    let out = p.tensors[op.output].offset as usize;
    let [sob, soi, soj] = op.o_stride.map(|v| v as usize);
    let (mul, s) = (i64::from(op.multiplier), op.shift as u32);
    let wide = p.tensors[op.output].dtype == DType::I32;
    let half = p.tensors[op.a].dtype == DType::I16;
    for (bt, sums) in sums.iter().enumerate() {
        for j in 0..op.n as usize {
            for (i, acc) in sums.column(j)[..op.m as usize].iter().enumerate() {
                let e = bt * sob + i * soi + j * soj;
                if wide {
                    write_i32(mem, out + 4 * e, *acc);
                } else if half {
                    let q = (i64::from(*acc) * mul + (1i64 << (s - 1))) >> s;
                    let q = q.clamp(-32767, 32767) as i16;
                    mem[out + 2 * e..out + 2 * e + 2].copy_from_slice(&q.to_le_bytes());
                } else {
                    let q = (i64::from(*acc) * mul + (1i64 << (s - 1))) >> s;
                    mem[out + e] = q.clamp(-128, 127) as u8;
                }
            }
        }
    }
}

/// The straightforward scalar loop of the IR's definition: the reference
/// of the fast path in tests and benchmarks.
pub fn run_reference(op: &ActMatMul, p: &Program, mem: &mut [u8]) {
    let t = |id: usize| p.tensors[id].offset as usize;
    let (a, b, out) = (t(op.a), t(op.b), t(op.output));
    let [sab, sai, sak] = op.a_stride.map(|v| v as usize);
    let [sbb, sbj, sbk] = op.b_stride.map(|v| v as usize);
    let [sob, soi, soj] = op.o_stride.map(|v| v as usize);
    let (mul, s) = (i64::from(op.multiplier), op.shift as u32);
    let wide = p.tensors[op.output].dtype == DType::I32;
    let half = p.tensors[op.a].dtype == DType::I16;
    let rd = |mem: &[u8], at: usize, e: usize| -> i32 {
        if half {
            i32::from(i16::from_le_bytes([mem[at + 2 * e], mem[at + 2 * e + 1]]))
        } else {
            i32::from(read_i8(mem, at + e))
        }
    };
    for bt in 0..op.batch as usize {
        for i in 0..op.m as usize {
            for j in 0..op.n as usize {
                let mut acc = 0i32;
                for kk in 0..op.k as usize {
                    let x = rd(mem, a, bt * sab + i * sai + kk * sak);
                    let y = rd(mem, b, bt * sbb + j * sbj + kk * sbk);
                    acc = acc.wrapping_add(x.wrapping_mul(y));
                }
                let e = bt * sob + i * soi + j * soj;
                if wide {
                    write_i32(mem, out + 4 * e, acc);
                } else if half {
                    let q = (i64::from(acc) * mul + (1i64 << (s - 1))) >> s;
                    let q = q.clamp(-32767, 32767) as i16;
                    mem[out + 2 * e..out + 2 * e + 2].copy_from_slice(&q.to_le_bytes());
                } else {
                    let q = (i64::from(acc) * mul + (1i64 << (s - 1))) >> s;
                    mem[out + e] = q.clamp(-128, 127) as u8;
                }
            }
        }
    }
}

//! Native executor vs. Wasm sandbox on random programs of the transformer
//! op families (gather, layer norm, activation product, masked softmax,
//! per-column sum),
//! and both against reference implementations of the IR spec written here
//! independently (i128 arithmetic, Newton square root).
//!
//! Every Wasm run also checks the per-node fuel recorded at build time, so
//! random data also tests that the fuel does not depend on the data.

use opml_lowering::builder::ProgramBuilder;
use opml_lowering::ir::{ActMatMul, DType, Gather, LayerNorm, MaskedSoftmax, Op, TensorKind};
use opml_lowering::Artifact;
use proptest::prelude::*;

mod common;
use common::{small_budget, Rng};

fn bytes(v: &[i8]) -> Vec<u8> {
    v.iter().map(|x| *x as u8).collect()
}

fn i32_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Runs both engines ([`common::run_both`]); returns the `i8` output.
fn both(a: &Artifact, inputs: &[Vec<u8>]) -> Vec<i8> {
    common::run_both(a, inputs)
        .iter()
        .map(|v| *v as i8)
        .collect()
}

fn check_gather(rows: u32, width: u32, n: u32, seed: u64) {
    let mut rng = Rng(seed);
    let mut b = ProgramBuilder::new();
    let table = rng.i8s((rows * width) as usize);
    let t = b.const_i8("table", &[rows, width], &table);
    let idx = b.tensor("idx", DType::I32, &[n], TensorKind::Input);
    let out = b.tensor("out", DType::I8, &[n, width], TensorKind::Output);
    b.node(
        "gather",
        Op::Gather(Gather {
            table: t,
            indices: idx,
            output: out,
            rows,
            width,
            n,
        }),
    );
    let a = Artifact::build(b.finish(), small_budget()).unwrap();
    // Indices in range and out of it on both sides.
    let ids: Vec<i32> = (0..n)
        .map(|_| rng.range(-3, i64::from(rows) + 3) as i32)
        .collect();
    let y = both(&a, &[i32_bytes(&ids)]);
    for (i, id) in ids.iter().enumerate() {
        let r = (*id).max(0).min(rows as i32 - 1) as usize;
        let w = width as usize;
        assert_eq!(y[i * w..(i + 1) * w], table[r * w..(r + 1) * w]);
    }
}

/// `floor(sqrt(v))` by Newton's method.
fn sqrt_floor(v: i128) -> i128 {
    if v < 2 {
        return v;
    }
    let mut x = v;
    let mut y = (x + 1) / 2;
    while y < x {
        x = y;
        y = (x + v / x) / 2;
    }
    x
}

#[allow(clippy::too_many_arguments)]
fn ln_reference(
    a: &[i8],
    b: &[i8],
    (wa, wb, eps, k): (&[i32], &[i32], i32, i32),
    gamma: &[i32],
    beta: &[i32],
    len: usize,
) -> Vec<i8> {
    let mut out = Vec::new();
    for (ra, rb) in a.chunks(len).zip(b.chunks(len)) {
        let x: Vec<i128> = (0..len)
            .map(|l| i128::from(ra[l]) * i128::from(wa[l]) + i128::from(rb[l]) * i128::from(wb[l]))
            .collect();
        let sum: i128 = x.iter().sum();
        let d: Vec<i128> = x.iter().map(|v| len as i128 * v - sum).collect();
        let var: i128 = d.iter().map(|v| v * v).sum::<i128>() + i128::from(eps);
        let s = sqrt_floor(var).max(1);
        let den = s << k;
        for l in 0..len {
            let n = d[l] * i128::from(gamma[l]) + i128::from(beta[l]) * s + (s << (k - 1));
            out.push(n.div_euclid(den).clamp(-128, 127) as i8);
        }
    }
    out
}

fn check_layer_norm(rows: u32, len: u32, seed: u64) {
    let mut rng = Rng(seed);
    let mut b = ProgramBuilder::new();
    let n = (rows * len) as usize;
    let xa = b.tensor("a", DType::I8, &[rows, len], TensorKind::Input);
    let xb = b.tensor("b", DType::I8, &[rows, len], TensorKind::Input);
    let gamma: Vec<i32> = (0..len)
        .map(|_| rng.range(-(1 << 20), 1 << 20) as i32)
        .collect();
    let beta: Vec<i32> = (0..len)
        .map(|_| rng.range(-(1 << 22), 1 << 22) as i32)
        .collect();
    let wa: Vec<i32> = (0..len).map(|_| rng.range(-300, 300) as i32).collect();
    let wb: Vec<i32> = (0..len).map(|_| rng.range(-300, 300) as i32).collect();
    let (twa, twb) = (
        b.const_i32("wa", &[len], &wa),
        b.const_i32("wb", &[len], &wb),
    );
    let (eps, k) = (rng.range(0, 1000) as i32, rng.range(12, 24) as i32);
    let g = b.const_i32("gamma", &[len], &gamma);
    let bt = b.const_i32("beta", &[len], &beta);
    let out = b.tensor("out", DType::I8, &[rows, len], TensorKind::Output);
    b.node(
        "ln",
        Op::LayerNorm(LayerNorm {
            a: xa,
            b: xb,
            output: out,
            gamma: g,
            beta: bt,
            rows,
            len,
            wa: twa,
            wb: twb,
            eps,
            k,
        }),
    );
    let a = Artifact::build(b.finish(), small_budget()).unwrap();
    let (va, vb) = (rng.i8s(n), rng.i8s(n));
    let y = both(&a, &[bytes(&va), bytes(&vb)]);
    let want = ln_reference(&va, &vb, (&wa, &wb, eps, k), &gamma, &beta, len as usize);
    assert_eq!(y, want);
}

/// Strides of a row-major tensor whose axes are `dims` permuted by `perm`
/// (`perm[i]` is the memory position of logical axis `i`).
fn permuted_strides(dims: [u32; 3], perm: [usize; 3]) -> [u32; 3] {
    let mut order = [0usize; 3];
    for (axis, pos) in perm.iter().enumerate() {
        order[*pos] = axis;
    }
    let mut st = [0u32; 3];
    let mut acc = 1;
    for pos in (0..3).rev() {
        st[order[pos]] = acc;
        acc *= dims[order[pos]];
    }
    st
}

const PERMS: [[usize; 3]; 6] = [
    [0, 1, 2],
    [0, 2, 1],
    [1, 0, 2],
    [1, 2, 0],
    [2, 0, 1],
    [2, 1, 0],
];

fn check_act_matmul(dims: [u32; 4], perms: [usize; 3], wide: bool, seed: u64) {
    let [bt, m, n, k] = dims;
    let mut rng = Rng(seed);
    let mut b = ProgramBuilder::new();
    let xa = b.tensor("a", DType::I8, &[bt * m * k], TensorKind::Input);
    let xb = b.tensor("b", DType::I8, &[bt * n * k], TensorKind::Input);
    let dt = if wide { DType::I32 } else { DType::I8 };
    let out = b.tensor("out", dt, &[bt * m * n], TensorKind::Output);
    let op = ActMatMul {
        a: xa,
        b: xb,
        output: out,
        batch: bt,
        m,
        n,
        k,
        a_stride: permuted_strides([bt, m, k], PERMS[perms[0]]),
        b_stride: permuted_strides([bt, n, k], PERMS[perms[1]]),
        o_stride: permuted_strides([bt, m, n], PERMS[perms[2]]),
        multiplier: rng.range(1 << 29, (1 << 31) - 1) as i32,
        shift: rng.range(36, 44) as i32,
    };
    b.node("mm", Op::ActMatMul(op.clone()));
    let a = Artifact::build(b.finish(), small_budget()).unwrap();
    let (va, vb) = (
        rng.i8s((bt * m * k) as usize),
        rng.i8s((bt * n * k) as usize),
    );
    let wasm = a.run_wasm(&[bytes(&va), bytes(&vb)]).unwrap();
    let native = a.run_native(&[bytes(&va), bytes(&vb)]).unwrap();
    assert_eq!(wasm.boundaries, native.boundaries);
    assert!(wasm.memory == native.memory, "memory images differ");
    let raw = a.output(&wasm, a.program.outputs[0]);
    let y: Vec<i64> = if wide {
        raw.chunks(4)
            .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect()
    } else {
        raw.iter().map(|v| i64::from(*v as i8)).collect()
    };
    let at = |st: [u32; 3], i: [u32; 3]| (0..3).map(|d| (st[d] * i[d]) as usize).sum::<usize>();
    for t in 0..bt {
        for i in 0..m {
            for j in 0..n {
                let acc: i64 = (0..k)
                    .map(|kk| {
                        i64::from(va[at(op.a_stride, [t, i, kk])])
                            * i64::from(vb[at(op.b_stride, [t, j, kk])])
                    })
                    .sum();
                let q = (i128::from(acc) * i128::from(op.multiplier) + (1i128 << (op.shift - 1)))
                    >> op.shift;
                let want = if wide {
                    i128::from(acc)
                } else {
                    q.clamp(-128, 127)
                };
                assert_eq!(i128::from(y[at(op.o_stride, [t, i, j])]), want);
            }
        }
    }
}

fn check_masked_softmax(rows: u32, len: u32, wide: bool, seed: u64) {
    let mut rng = Rng(seed);
    let mut b = ProgramBuilder::new();
    let dt = if wide { DType::I32 } else { DType::I8 };
    let x = b.tensor("x", dt, &[rows, len], TensorKind::Input);
    // Wide scores: index = min((min(d, dmax) * m) >> s, 255).
    let (mul, shift, dmax) = if wide {
        (
            rng.range(1 << 30, (1 << 31) - 1) as i32,
            rng.range(30, 50) as i32,
            rng.range(0, (1 << 23) - 1) as i32,
        )
    } else {
        (1, 0, 255)
    };
    let mask = b.tensor("mask", DType::I32, &[len], TensorKind::Input);
    let s_in = 0.01 + (rng.next() % 100) as f64 / 400.0;
    let table: Vec<i32> = (0..256)
        .map(|d| ((-(d as f64) * s_in).exp() * f64::from(1 << 20)).round() as i32)
        .collect();
    let tb = b.const_i32("exp", &[256], &table);
    let out = b.tensor("out", DType::I8, &[rows, len], TensorKind::Output);
    b.node(
        "softmax",
        Op::MaskedSoftmax(MaskedSoftmax {
            input: x,
            mask,
            table: tb,
            output: out,
            rows,
            len,
            multiplier: mul,
            shift,
            dmax,
        }),
    );
    let a = Artifact::build(b.finish(), small_budget()).unwrap();
    let n = (rows * len) as usize;
    let vx: Vec<i64> = if wide {
        let spread = 1i64 << rng.range(4, 31);
        (0..n)
            .map(|_| {
                rng.range(-spread, spread - 1)
                    .clamp(-(1 << 31), (1 << 31) - 1)
            })
            .collect()
    } else {
        rng.i8s(n).into_iter().map(i64::from).collect()
    };
    let xb: Vec<u8> = if wide {
        vx.iter().flat_map(|v| (*v as i32).to_le_bytes()).collect()
    } else {
        vx.iter().map(|v| *v as i8 as u8).collect()
    };
    // Masks with few or many flags set, sometimes none, values other than 1.
    let dens = rng.range(0, 4);
    let vm: Vec<i32> = (0..len)
        .map(|_| {
            if rng.range(0, 3) < dens {
                rng.range(-5, 5) as i32 | 1
            } else {
                0
            }
        })
        .collect();
    let y = both(&a, &[xb, i32_bytes(&vm)]);
    let len = len as usize;
    for (r, row) in vx.chunks(len).enumerate() {
        let on: Vec<usize> = (0..len).filter(|l| vm[*l] != 0).collect();
        let mx = on.iter().map(|l| row[*l]).max().unwrap_or(i64::MIN);
        let e = |l: usize| -> i64 {
            if vm[l] != 0 {
                let d = i128::from((mx - row[l]).min(i64::from(dmax)));
                let i = ((d * i128::from(mul)) >> shift).min(255);
                i64::from(table[i as usize])
            } else {
                0
            }
        };
        let sum = (0..len).map(e).sum::<i64>().max(1);
        for l in 0..len {
            assert_eq!(i64::from(y[r * len + l]), (254 * e(l) + sum) / (2 * sum));
        }
        if on.is_empty() {
            assert!(y[r * len..(r + 1) * len].iter().all(|v| *v == 0));
        }
    }
}

fn check_col_add(rows: u32, len: u32, relu: bool, seed: u64) {
    common::check_col_add(
        rows,
        len,
        DType::I8,
        (if relu { 0 } else { -128 }, 127),
        seed,
    );
}

#[test]
fn fixed_cases_agree_with_the_reference() {
    check_col_add(32, 384, false, 7);
    check_col_add(3, 5, true, 8);
    check_gather(50, 37, 20, 1);
    check_layer_norm(5, 64, 2);
    check_act_matmul([3, 5, 7, 33], [1, 3, 5], false, 3);
    check_act_matmul([3, 5, 7, 33], [2, 0, 4], true, 6);
    check_masked_softmax(6, 40, false, 4);
    check_masked_softmax(6, 40, true, 5);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn random_gathers_agree(rows in 1u32..40, width in 1u32..40, n in 1u32..24, seed in any::<u64>()) {
        check_gather(rows, width, n, seed);
    }

    #[test]
    fn random_column_sums_agree(rows in 1u32..8, len in 1u32..70, relu in any::<bool>(), seed in any::<u64>()) {
        check_col_add(rows, len, relu, seed);
    }

    #[test]
    fn random_layer_norms_agree(rows in 1u32..6, len in 1u32..80, seed in any::<u64>()) {
        check_layer_norm(rows, len, seed);
    }

    #[test]
    fn random_activation_products_agree(
        bt in 1u32..4, m in 1u32..7, n in 1u32..7, k in 1u32..24,
        pa in 0usize..6, pb in 0usize..6, po in 0usize..6, wide in any::<bool>(), seed in any::<u64>(),
    ) {
        check_act_matmul([bt, m, n, k], [pa, pb, po], wide, seed);
    }

    #[test]
    fn random_masked_softmaxes_agree(
        rows in 1u32..6, len in 1u32..48, wide in any::<bool>(), seed in any::<u64>(),
    ) {
        check_masked_softmax(rows, len, wide, seed);
    }
}

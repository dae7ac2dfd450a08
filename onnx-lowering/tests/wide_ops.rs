//! Native executor vs. Wasm sandbox on random programs of the `i16`
//! kernel variants (matmul with an `i16` input and/or output, the
//! interpolated function table, the all-`i16` activation product, the
//! masked softmax with `i16` probabilities, the all-`i16` layer norm and
//! the per-column sum with an `i16` output), and both against reference
//! implementations of the IR spec written here independently (`i128`
//! arithmetic, explicit rounding).
//!
//! Every Wasm run also checks the per-node fuel recorded at build time, so
//! random data also tests that the fuel does not depend on the data.

use opml_lowering::builder::ProgramBuilder;
use opml_lowering::ir::{
    ActMatMul, DType, Interp, LayerNorm, MaskedSoftmax, MatMul, Op, TensorKind,
};
use opml_lowering::Artifact;
use proptest::prelude::*;

mod common;
use common::{run_both as both, small_budget, Rng};

fn i16_bytes(v: &[i16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn from_i16_bytes(b: &[u8]) -> Vec<i16> {
    b.chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// `round_half_up(acc * m / 2^s)` clamped, in `i128`.
fn requant_ref(acc: i128, m: i32, s: i32, lo: i32, hi: i32) -> i128 {
    let num = acc * i128::from(m) + (1i128 << (s - 1));
    num.div_euclid(1i128 << s)
        .clamp(i128::from(lo), i128::from(hi))
}

/// A `[m, k] x [n, k]^T` product with `i16` input and/or output; `col`
/// reads `a` column-major (`a_row = 1, a_col = m`) and writes `out`
/// column-major.
fn check_matmul(dims: [u32; 3], a16: bool, o16: bool, col: bool, seed: u64) {
    let [m, k, n] = dims;
    let mut rng = Rng(seed);
    let mut b = ProgramBuilder::new();
    let (da, dout) = (
        if a16 { DType::I16 } else { DType::I8 },
        if o16 { DType::I16 } else { DType::I8 },
    );
    let xa = b.tensor("a", da, &[m * k], TensorKind::Input);
    let w: Vec<i8> = (0..n * k).map(|_| rng.range(-127, 127) as i8).collect();
    // Input bound R with R * k * 127 + |bias| < 2^31.
    let r: i64 = if a16 {
        ((1i64 << 30) / (i64::from(k) * 127)).min(32767)
    } else {
        128
    };
    let bias: Vec<i32> = (0..n)
        .map(|_| rng.range(-(1 << 20), 1 << 20) as i32)
        .collect();
    let tw = b.const_i8("w", &[n, k], &w);
    let tb = b.const_i32("bias", &[n], &bias);
    let mul: Vec<i32> = (0..n)
        .map(|_| rng.range(1 << 29, (1 << 31) - 1) as i32)
        .collect();
    let sh: Vec<i32> = (0..n)
        .map(|_| {
            if o16 {
                rng.range(26, 36) as i32
            } else {
                rng.range(30, 44) as i32
            }
        })
        .collect();
    let (lo, hi) = if o16 {
        let h = rng.range(1000, 32767) as i32;
        (-h, h)
    } else {
        (-128, 127)
    };
    let rq = b.requant("mm", &mul, &sh, 0, lo, hi);
    let out = b.tensor("out", dout, &[m * n], TensorKind::Output);
    let (a_row, a_col, o_row, o_col) = if col { (1, m, 1, m) } else { (k, 1, n, 1) };
    b.node(
        "mm",
        Op::MatMul(MatMul {
            a: xa,
            w: tw,
            bias: tb,
            output: out,
            m,
            k,
            n,
            a_row,
            a_col,
            o_row,
            o_col,
            requant: rq,
        }),
    );
    let art = Artifact::build(b.finish(), small_budget()).unwrap();
    let va: Vec<i64> = (0..m * k)
        .map(|_| rng.range(-r, if a16 { r } else { 127 }))
        .collect();
    let input = if a16 {
        i16_bytes(&va.iter().map(|v| *v as i16).collect::<Vec<_>>())
    } else {
        va.iter().map(|v| *v as i8 as u8).collect()
    };
    let y = both(&art, &[input]);
    let got: Vec<i64> = if o16 {
        from_i16_bytes(&y).iter().map(|v| i64::from(*v)).collect()
    } else {
        y.iter().map(|v| i64::from(*v as i8)).collect()
    };
    let (m, k, n) = (m as usize, k as usize, n as usize);
    for i in 0..m {
        for j in 0..n {
            let mut acc = i128::from(bias[j]);
            for kk in 0..k {
                let av = va[i * a_row as usize + kk * a_col as usize];
                acc += i128::from(av) * i128::from(w[j * k + kk]);
            }
            let want = requant_ref(acc, mul[j], sh[j], lo, hi);
            assert_eq!(
                i128::from(got[i * o_row as usize + j * o_col as usize]),
                want,
                "({i}, {j})"
            );
        }
    }
}

fn check_interp(n: u32, seed: u64) {
    let mut rng = Rng(seed);
    let mut b = ProgramBuilder::new();
    let x = b.tensor("x", DType::I16, &[n], TensorKind::Input);
    // A random table, knots within 2^24.
    let table: Vec<i32> = (0..1025)
        .map(|_| rng.range(-(1 << 24), 1 << 24) as i32)
        .collect();
    let t = b.const_i32("knots", &[1025], &table);
    let lo = rng.range(-32768, 0) as i32;
    let hi = rng.range(0, 32767) as i32;
    let out = b.tensor("out", DType::I16, &[n], TensorKind::Output);
    b.node(
        "f",
        Op::Interp(Interp {
            input: x,
            table: t,
            output: out,
            lo,
            hi,
        }),
    );
    let art = Artifact::build(b.finish(), small_budget()).unwrap();
    // Random values plus both ends of the domain.
    let mut vx: Vec<i16> = (0..n).map(|_| rng.next() as i16).collect();
    vx[0] = i16::MIN;
    if n > 1 {
        vx[1] = i16::MAX;
    }
    let got = from_i16_bytes(&both(&art, &[i16_bytes(&vx)]));
    for (i, v) in vx.iter().enumerate() {
        let u = i64::from(*v) + 32768;
        let (h, f) = ((u / 64) as usize, u % 64);
        let (t0, t1) = (i64::from(table[h]), i64::from(table[h + 1]));
        // floor((t1 - t0) f / 64 + 1/2)
        let step = ((t1 - t0) * f * 2 + 64).div_euclid(128);
        let want = (t0 + step).clamp(i64::from(lo), i64::from(hi));
        assert_eq!(i64::from(got[i]), want, "x = {v}");
    }
}

/// A batched product of `i16` operands (attention's `P V`, or with `wide`
/// the exact `i32` scores `Q K^T`): `a [bt, m, k]` row-major, `b` as
/// `[bt, n, k]` or (`bt_` true) `[bt, k, n]`, `out` as `[bt, m, n]` or
/// `[m, bt, n]` (`ot` true), `i16` or (`wide`) `i32`.
fn check_act_matmul16(dims: [u32; 4], bt_: bool, ot: bool, wide: bool, seed: u64) {
    let [bt, m, n, k] = dims;
    let mut rng = Rng(seed);
    let mut b = ProgramBuilder::new();
    let xa = b.tensor("a", DType::I16, &[bt * m * k], TensorKind::Input);
    let xb = b.tensor("b", DType::I16, &[bt * n * k], TensorKind::Input);
    let dout = if wide { DType::I32 } else { DType::I16 };
    let out = b.tensor("out", dout, &[bt * m * n], TensorKind::Output);
    let b_stride = if bt_ { [k * n, 1, n] } else { [n * k, k, 1] };
    let o_stride = if ot { [n, bt * n, 1] } else { [m * n, n, 1] };
    let op = ActMatMul {
        a: xa,
        b: xb,
        output: out,
        batch: bt,
        m,
        n,
        k,
        a_stride: [m * k, k, 1],
        b_stride,
        o_stride,
        multiplier: rng.range(1 << 29, (1 << 31) - 1) as i32,
        shift: rng.range(28, 40) as i32,
    };
    b.node("pv", Op::ActMatMul(op.clone()));
    let art = Artifact::build(b.finish(), small_budget()).unwrap();
    // Rows of `a` sum to at most 32767 in magnitude (probabilities), so
    // the i32 sums cannot wrap.
    let va: Vec<i16> = (0..bt * m * k)
        .map(|_| rng.range(-(32767 / i64::from(k)), 32767 / i64::from(k)) as i16)
        .collect();
    let vb: Vec<i16> = (0..bt * n * k).map(|_| rng.next() as i16).collect();
    let raw = both(&art, &[i16_bytes(&va), i16_bytes(&vb)]);
    let got: Vec<i64> = if wide {
        raw.chunks_exact(4)
            .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect()
    } else {
        from_i16_bytes(&raw).iter().map(|v| i64::from(*v)).collect()
    };
    let at = |st: [u32; 3], i: [u32; 3]| (0..3).map(|d| (st[d] * i[d]) as usize).sum::<usize>();
    for t in 0..bt {
        for i in 0..m {
            for j in 0..n {
                let acc: i128 = (0..k)
                    .map(|kk| {
                        i128::from(va[at(op.a_stride, [t, i, kk])])
                            * i128::from(vb[at(op.b_stride, [t, j, kk])])
                    })
                    .sum();
                let want = if wide {
                    acc
                } else {
                    requant_ref(acc, op.multiplier, op.shift, -32767, 32767)
                };
                assert_eq!(i128::from(got[at(op.o_stride, [t, i, j])]), want);
            }
        }
    }
}

/// Masked softmax of `i32` scores with an `i16` output (units of
/// `1/32767`); `interp`: the table of 257 interpolated knots.
fn check_masked_softmax16(rows: u32, len: u32, interp: bool, seed: u64) {
    let mut rng = Rng(seed);
    let mut b = ProgramBuilder::new();
    let x = b.tensor("x", DType::I32, &[rows, len], TensorKind::Input);
    let (mul, shift, dmax) = (
        rng.range(1 << 30, (1 << 31) - 1) as i32,
        rng.range(30, 50) as i32,
        rng.range(0, i64::from(i32::MAX)) as i32,
    );
    let mask = b.tensor("mask", DType::I32, &[len], TensorKind::Input);
    let knots = if interp { 257 } else { 256 };
    let table: Vec<i32> = (0..knots)
        .map(|d| ((-(d as f64) / 16.0).exp() * f64::from(1 << 20)).round() as i32)
        .collect();
    let tb = b.const_i32("exp", &[knots], &table);
    let out = b.tensor("out", DType::I16, &[rows, len], TensorKind::Output);
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
    let art = Artifact::build(b.finish(), small_budget()).unwrap();
    let spread = 1i64 << rng.range(4, 31);
    let vx: Vec<i64> = (0..rows * len)
        .map(|_| {
            rng.range(-spread, spread - 1)
                .clamp(-(1 << 31), (1 << 31) - 1)
        })
        .collect();
    let dens = rng.range(0, 4);
    let vm: Vec<i32> = (0..len)
        .map(|_| i32::from(rng.range(0, 3) < dens) * (rng.range(1, 9) as i32))
        .collect();
    let xb: Vec<u8> = vx.iter().flat_map(|v| (*v as i32).to_le_bytes()).collect();
    let mb: Vec<u8> = vm.iter().flat_map(|v| v.to_le_bytes()).collect();
    let got = from_i16_bytes(&both(&art, &[xb, mb]));
    let len = len as usize;
    for (r, row) in vx.chunks(len).enumerate() {
        let on: Vec<usize> = (0..len).filter(|l| vm[*l] != 0).collect();
        let mx = on.iter().map(|l| row[*l]).max().unwrap_or(i64::MIN);
        let e = |l: usize| -> i128 {
            if vm[l] == 0 {
                return 0;
            }
            let d = i128::from((mx - row[l]).min(i64::from(dmax)));
            if interp {
                let j = ((d * i128::from(mul)) >> shift).min(255 * 256);
                let (h, f) = ((j / 256) as usize, j % 256);
                let (t0, t1) = (i128::from(table[h]), i128::from(table[h + 1]));
                return t0 + ((t1 - t0) * f + 128).div_euclid(256);
            }
            let i = ((d * i128::from(mul)) >> shift).min(255);
            i128::from(table[i as usize])
        };
        let sum = (0..len).map(e).sum::<i128>().max(1);
        for l in 0..len {
            // round_half_up(32767 e / sum)
            let want = (2 * 32767 * e(l) + sum).div_euclid(2 * sum);
            assert_eq!(i128::from(got[r * len + l]), want);
        }
    }
}

/// `floor(sqrt(v))` by Newton's method.
fn sqrt_floor(v: i128) -> i128 {
    if v < 2 {
        return v;
    }
    let (mut x, mut y) = (v, (v + 1) / 2);
    while y < x {
        x = y;
        y = (x + v / x) / 2;
    }
    x
}

/// Bits of a non-negative `v` (0 for 0).
fn bit_length(v: i128) -> i128 {
    i128::from(128 - v.leading_zeros())
}

/// The all-`i16` layer norm of the IR spec, in `i128`.
fn ln16_reference(
    (a, b): (&[i16], &[i16]),
    (wa, wb, eps, k): (&[i32], &[i32], i32, i32),
    (gamma, beta): (&[i32], &[i32]),
    len: usize,
) -> Vec<i16> {
    let t = (61 - bit_length(len as i128)) / 2;
    let mut out = Vec::new();
    for (ra, rb) in a.chunks(len).zip(b.chunks(len)) {
        let x: Vec<i128> = (0..len)
            .map(|l| i128::from(ra[l]) * i128::from(wa[l]) + i128::from(rb[l]) * i128::from(wb[l]))
            .collect();
        let sum: i128 = x.iter().sum();
        let d: Vec<i128> = x.iter().map(|v| len as i128 * v - sum).collect();
        let m = d.iter().map(|v| v.abs()).max().unwrap_or(0);
        let sh = (bit_length(m) - t).max(0) as u32;
        let dv: Vec<i128> = d
            .iter()
            .map(|v| (v + (1i128 << sh) / 2).div_euclid(1i128 << sh))
            .collect();
        let var: i128 =
            dv.iter().map(|v| v * v).sum::<i128>() + (i128::from(eps) >> (2 * sh).min(63));
        let s = sqrt_floor(var).max(1);
        for l in 0..len {
            let n = dv[l] * i128::from(gamma[l]) + i128::from(beta[l]) * s + (s << (k - 1));
            out.push(n.div_euclid(s << k).clamp(-32768, 32767) as i16);
        }
    }
    out
}

/// An all-`i16` layer norm with weights, `gamma` and `beta` inside the
/// bounds the lowering keeps (`|wa|, |wb| < 2^24`, `|gamma|, |beta| <
/// 2^30`), small weights too (no shift); `flat` makes every row constant.
fn check_layer_norm16(rows: u32, len: u32, flat: bool, seed: u64) {
    let mut rng = Rng(seed);
    let mut b = ProgramBuilder::new();
    let n = (rows * len) as usize;
    let xa = b.tensor("a", DType::I16, &[rows, len], TensorKind::Input);
    let xb = b.tensor("b", DType::I16, &[rows, len], TensorKind::Input);
    let big = |rng: &mut Rng, bits: i64| -> i32 {
        let top = 1i64 << rng.range(0, bits);
        rng.range(-top, top) as i32
    };
    let wbits = rng.range(0, 24);
    let wa: Vec<i32> = (0..len).map(|_| big(&mut rng, wbits)).collect();
    let wb: Vec<i32> = (0..len).map(|_| big(&mut rng, wbits)).collect();
    let gamma: Vec<i32> = (0..len).map(|_| big(&mut rng, 29)).collect();
    let beta: Vec<i32> = (0..len).map(|_| big(&mut rng, 29)).collect();
    let (eps, k) = (
        rng.range(0, i64::from(i32::MAX)) as i32,
        rng.range(1, 30) as i32,
    );
    let consts = [
        b.const_i32("wa", &[len], &wa),
        b.const_i32("wb", &[len], &wb),
        b.const_i32("gamma", &[len], &gamma),
        b.const_i32("beta", &[len], &beta),
    ];
    let out = b.tensor("out", DType::I16, &[rows, len], TensorKind::Output);
    b.node(
        "ln",
        Op::LayerNorm(LayerNorm {
            a: xa,
            b: xb,
            output: out,
            gamma: consts[2],
            beta: consts[3],
            rows,
            len,
            wa: consts[0],
            wb: consts[1],
            eps,
            k,
        }),
    );
    let art = Artifact::build(b.finish(), small_budget()).unwrap();
    let vbits = rng.range(0, 15);
    let values = |rng: &mut Rng| -> Vec<i16> {
        (0..n)
            .map(|_| big(rng, vbits).clamp(-32768, 32767) as i16)
            .collect()
    };
    let (mut va, mut vb) = (values(&mut rng), values(&mut rng));
    if flat {
        // x[l] = wa[l] a + wb[l] b is constant along a row when a, b are
        // 0 except in columns with equal weights: simplest, all zero.
        va.iter_mut().for_each(|v| *v = 0);
        vb.iter_mut().for_each(|v| *v = 0);
    }
    let got = from_i16_bytes(&both(&art, &[i16_bytes(&va), i16_bytes(&vb)]));
    let want = ln16_reference(
        (&va, &vb),
        (&wa, &wb, eps, k),
        (&gamma, &beta),
        len as usize,
    );
    assert_eq!(got, want);
}

/// The per-column sum of two `i8` tensors with an `i16` output, clamped
/// to random bounds.
fn check_col_add16(rows: u32, len: u32, seed: u64) {
    let mut rng = Rng(seed ^ 0x16);
    let (lo, hi) = (rng.range(-32768, 0) as i32, rng.range(0, 32767) as i32);
    common::check_col_add(rows, len, DType::I16, (lo, hi), seed);
}

#[test]
fn fixed_cases_agree_with_the_reference() {
    check_act_matmul16([12, 5, 32, 32], true, true, false, 7);
    check_act_matmul16([2, 3, 4, 5], false, false, false, 8);
    check_act_matmul16([12, 4, 4, 32], false, true, true, 10);
    check_masked_softmax16(6, 32, false, 9);
    check_masked_softmax16(6, 32, true, 15);
    check_matmul([5, 40, 7], true, false, false, 1);
    check_matmul([5, 40, 7], false, true, false, 2);
    check_matmul([5, 40, 7], true, true, true, 3);
    check_matmul([4, 1536, 3], true, false, false, 4);
    check_interp(300, 5);
    check_interp(1, 6);
    check_layer_norm16(32, 384, false, 11);
    check_layer_norm16(3, 5, true, 12);
    check_layer_norm16(2, 1, false, 13);
    check_col_add16(32, 384, 14);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn random_wide_matmuls_agree(
        m in 1u32..9, k in 1u32..70, n in 1u32..9,
        a16 in any::<bool>(), o16 in any::<bool>(), col in any::<bool>(), seed in any::<u64>(),
    ) {
        check_matmul([m, k, n], a16, o16, col, seed);
    }

    #[test]
    fn random_i16_activation_products_agree(
        bt in 1u32..4, m in 1u32..6, n in 1u32..6, k in 1u32..40,
        bt_ in any::<bool>(), ot in any::<bool>(), wide in any::<bool>(), seed in any::<u64>(),
    ) {
        check_act_matmul16([bt, m, n, k], bt_, ot, wide, seed);
    }

    #[test]
    fn random_i16_masked_softmaxes_agree(
        rows in 1u32..6, len in 1u32..48, interp in any::<bool>(), seed in any::<u64>(),
    ) {
        check_masked_softmax16(rows, len, interp, seed);
    }

    #[test]
    fn random_interpolations_agree(n in 1u32..200, seed in any::<u64>()) {
        check_interp(n, seed);
    }

    #[test]
    fn random_i16_layer_norms_agree(
        rows in 1u32..6, len in 1u32..80, flat in proptest::bool::weighted(0.1), seed in any::<u64>(),
    ) {
        check_layer_norm16(rows, len, flat, seed);
    }

    #[test]
    fn random_i16_column_sums_agree(rows in 1u32..8, len in 1u32..70, seed in any::<u64>()) {
        check_col_add16(rows, len, seed);
    }
}

//! The fast native paths (packed integer products, im2col convolution,
//! threads) against the straightforward scalar loops they replaced
//! (`run_reference` of each family), on random shapes, strides and values
//! with extremes (`-128`/`127`, `i16::MIN`/`i16::MAX`, `i32` biases at the
//! ends of the range: sums and biases that wrap). The whole memory image
//! must be identical after the node. Native vs. Wasm agreement is tested
//! by the differential tests; this file is about the native rewrite alone.

use opml_lowering::builder::ProgramBuilder;
use opml_lowering::ir::{ActMatMul, Conv, DType, MatMul, Op, Program, Requant, TensorKind};
use opml_lowering::ops::native_gemm::set_native_threads;
use opml_lowering::ops::{act_matmul, conv, matmul};
use opml_lowering::validate::window_out;
use proptest::prelude::*;

mod common;
use common::Rng;

/// An `i8` value, extremes often.
fn v8(rng: &mut Rng) -> i8 {
    match rng.next() % 4 {
        0 => -128,
        1 => 127,
        _ => rng.next() as i8,
    }
}

fn v16(rng: &mut Rng) -> i16 {
    match rng.next() % 4 {
        0 => i16::MIN,
        1 => i16::MAX,
        _ => rng.next() as i16,
    }
}

fn bias(rng: &mut Rng) -> i32 {
    match rng.next() % 5 {
        0 => i32::MIN,
        1 => i32::MAX,
        _ => rng.range(-(1 << 24), 1 << 24) as i32,
    }
}

/// Per-channel requantization with the IR's ranges (`0 <= m < 2^31`,
/// `1 <= s <= 62`).
fn requant(b: &mut ProgramBuilder, rng: &mut Rng, name: &str, n: u32, o16: bool) -> Requant {
    let mul: Vec<i32> = (0..n).map(|_| rng.range(0, (1 << 31) - 1) as i32).collect();
    let sh: Vec<i32> = (0..n).map(|_| rng.range(1, 62) as i32).collect();
    let (lo, hi) = if o16 { (-32768, 32767) } else { (-128, 127) };
    let zp = rng.range(-5, 5) as i32;
    let lo = if rng.next().is_multiple_of(2) {
        lo
    } else {
        zp.max(lo)
    };
    b.requant(name, &mul, &sh, zp, lo, hi)
}

/// The initial image of `p` (constants written) with random inputs.
fn image(p: &Program, end: u32, rng: &mut Rng) -> Vec<u8> {
    let mut mem = vec![0u8; end as usize + 64];
    for c in &p.constants {
        let at = p.tensors[c.tensor].offset as usize;
        mem[at..at + c.bytes.len()].copy_from_slice(&c.bytes);
    }
    for t in &p.inputs {
        let t = &p.tensors[*t];
        let bytes: Vec<u8> = match t.dtype {
            DType::I8 => (0..t.len()).map(|_| v8(rng) as u8).collect(),
            DType::I16 => (0..t.len()).flat_map(|_| v16(rng).to_le_bytes()).collect(),
            DType::I32 => (0..t.len()).flat_map(|_| bias(rng).to_le_bytes()).collect(),
        };
        mem[t.offset as usize..t.end() as usize].copy_from_slice(&bytes);
    }
    mem
}

/// Runs `fast` and `reference` on copies of the image, on 1 and 3
/// threads; every image must equal the reference's.
fn same(
    mem: &[u8],
    fast: impl Fn(&mut [u8]),
    reference: impl Fn(&mut [u8]),
) -> Result<(), TestCaseError> {
    let mut want = mem.to_vec();
    reference(&mut want);
    for threads in [1, 3] {
        set_native_threads(threads);
        let mut got = mem.to_vec();
        fast(&mut got);
        prop_assert!(
            got == want,
            "fast path differs from the reference on {threads} threads"
        );
    }
    set_native_threads(0);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn check_matmul(
    m: u32,
    k: u32,
    n: u32,
    a16: bool,
    o16: bool,
    col_a: bool,
    col_o: bool,
    seed: u64,
) -> Result<(), TestCaseError> {
    let mut rng = Rng(seed);
    let mut b = ProgramBuilder::new();
    let da = if a16 { DType::I16 } else { DType::I8 };
    let dout = if o16 { DType::I16 } else { DType::I8 };
    let a = b.tensor("a", da, &[m * k], TensorKind::Input);
    let w: Vec<i8> = (0..n * k).map(|_| v8(&mut rng)).collect();
    let w = b.const_i8("w", &[n, k], &w);
    let bs: Vec<i32> = (0..n).map(|_| bias(&mut rng)).collect();
    let bias_t = b.const_i32("bias", &[n], &bs);
    let requant = requant(&mut b, &mut rng, "rq", n, o16);
    let output = b.tensor("out", dout, &[m * n], TensorKind::Output);
    let (a_row, a_col) = if col_a { (1, m) } else { (k, 1) };
    let (o_row, o_col) = if col_o { (1, m) } else { (n, 1) };
    let op = MatMul {
        a,
        w,
        bias: bias_t,
        output,
        m,
        k,
        n,
        a_row,
        a_col,
        o_row,
        o_col,
        requant,
    };
    let end = b.end();
    let p = b.finish();
    let mem = image(&p, end, &mut rng);
    same(
        &mem,
        |x| matmul::run_native(&op, &p, x),
        |x| matmul::run_reference(&op, &p, x),
    )?;
    let packed = matmul::pack_weights(&op, &p, &mem);
    same(
        &mem,
        |x| matmul::run_packed(&op, &p, x, &packed),
        |x| matmul::run_reference(&op, &p, x),
    )
}

/// `a [batch, m, k]` (or `[batch, k, m]` when `ta`), `b [batch, n, k]`
/// (or `[batch, k, n]` when `tb`), output `[batch, m, n]` (or `[m, batch,
/// n]` when `to`, attention's head-interleaved layout).
#[allow(clippy::too_many_arguments)]
fn check_act_matmul(
    dims: [u32; 4],
    half: bool,
    wide: bool,
    ta: bool,
    tb: bool,
    to: bool,
    seed: u64,
) -> Result<(), TestCaseError> {
    let [batch, m, n, k] = dims;
    let mut rng = Rng(seed);
    let mut bld = ProgramBuilder::new();
    let d = if half { DType::I16 } else { DType::I8 };
    let a = bld.tensor("a", d, &[batch * m * k], TensorKind::Input);
    let b = bld.tensor("b", d, &[batch * n * k], TensorKind::Input);
    let dout = if wide { DType::I32 } else { d };
    let output = bld.tensor("out", dout, &[batch * m * n], TensorKind::Output);
    let a_stride = if ta { [m * k, 1, m] } else { [m * k, k, 1] };
    let b_stride = if tb { [n * k, 1, n] } else { [n * k, k, 1] };
    let o_stride = if to { [n, batch * n, 1] } else { [m * n, n, 1] };
    let op = ActMatMul {
        a,
        b,
        output,
        batch,
        m,
        n,
        k,
        a_stride,
        b_stride,
        o_stride,
        multiplier: rng.range(0, (1 << 31) - 1) as i32,
        shift: rng.range(1, 62) as i32,
    };
    let end = bld.end();
    let p = bld.finish();
    let mem = image(&p, end, &mut rng);
    same(
        &mem,
        |x| act_matmul::run_native(&op, &p, x),
        |x| act_matmul::run_reference(&op, &p, x),
    )
}

#[allow(clippy::too_many_arguments)]
fn check_conv(
    c: u32,
    hw: [u32; 2],
    ocpg: u32,
    group: u32,
    kernel: [u32; 2],
    stride: [u32; 2],
    pad: [u32; 4],
    dil: [u32; 2],
    seed: u64,
) -> Result<(), TestCaseError> {
    let (Some(oh), Some(ow)) = (
        window_out(hw[0], kernel[0], stride[0], pad[0], pad[2], dil[0]),
        window_out(hw[1], kernel[1], stride[1], pad[1], pad[3], dil[1]),
    ) else {
        return Ok(());
    };
    let mut rng = Rng(seed);
    let mut b = ProgramBuilder::new();
    let (cin, oc) = (c * group, ocpg * group);
    let input = b.tensor("x", DType::I8, &[1, cin, hw[0], hw[1]], TensorKind::Input);
    let w: Vec<i8> = (0..oc * c * kernel[0] * kernel[1])
        .map(|_| v8(&mut rng))
        .collect();
    let weight = b.const_i8("w", &[oc, c, kernel[0], kernel[1]], &w);
    let bs: Vec<i32> = (0..oc).map(|_| bias(&mut rng)).collect();
    let bias_t = b.const_i32("bias", &[oc], &bs);
    let requant = requant(&mut b, &mut rng, "rq", oc, false);
    let output = b.tensor("y", DType::I8, &[1, oc, oh, ow], TensorKind::Output);
    let op = Conv {
        input,
        weight,
        bias: bias_t,
        output,
        stride,
        pad,
        dilation: dil,
        group,
        requant,
    };
    let end = b.end();
    let p = b.finish();
    let mem = image(&p, end, &mut rng);
    same(
        &mem,
        |x| conv::run_native(&op, &p, x),
        |x| conv::run_reference(&op, &p, x),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn matmul_fast_path_equals_the_reference(
        m in 1u32..24, k in 1u32..90, n in 1u32..24,
        a16: bool, o16: bool, col_a: bool, col_o: bool, seed: u64,
    ) {
        check_matmul(m, k, n, a16, o16, col_a, col_o, seed)?;
    }

    /// Long `i16` rows of extreme values: the sums wrap in `i32`.
    #[test]
    fn matmul_wrapping_sums_equal_the_reference(
        m in 1u32..5, k in 600u32..700, n in 1u32..9, col_a: bool, seed: u64,
    ) {
        check_matmul(m, k, n, true, false, col_a, false, seed)?;
    }

    #[test]
    fn act_matmul_fast_path_equals_the_reference(
        batch in 1u32..5, m in 1u32..13, n in 1u32..13, k in 1u32..40,
        half: bool, wide: bool, ta: bool, tb: bool, to: bool, seed: u64,
    ) {
        check_act_matmul([batch, m, n, k], half, wide, ta, tb, to, seed)?;
    }

    #[test]
    fn conv_fast_path_equals_the_reference(
        c in 1u32..4, h in 1u32..11, w in 1u32..11, ocpg in 1u32..7, group in 1u32..3,
        kh in 1u32..4, kw in 1u32..4, sh in 1u32..3, sw in 1u32..4,
        pad in prop::array::uniform4(0u32..3), dh in 1u32..3, dw in 1u32..3, seed: u64,
    ) {
        check_conv(c, [h, w], ocpg, group, [kh, kw], [sh, sw], pad, [dh, dw], seed)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Depthwise convolutions (one input channel per group, up to 3 output
    /// channels per group): the padded-plane path.
    #[test]
    fn depthwise_conv_equals_the_reference(
        h in 1u32..13, w in 1u32..13, ocpg in 1u32..4, group in 1u32..17,
        kh in 1u32..6, kw in 1u32..6, sh in 1u32..3, sw in 1u32..3,
        pad in prop::array::uniform4(0u32..3), dh in 1u32..3, dw in 1u32..3, seed: u64,
    ) {
        check_conv(1, [h, w], ocpg, group, [kh, kw], [sh, sw], pad, [dh, dw], seed)?;
    }
}

/// Products large enough to take the threaded paths (at least 2^21
/// multiply-accumulates).
#[test]
fn large_products_on_threads_equal_the_reference() {
    check_matmul(64, 384, 100, false, false, false, false, 1).unwrap();
    check_matmul(32, 400, 200, true, true, true, false, 2).unwrap();
    check_act_matmul([12, 32, 32, 200], false, true, false, true, true, 3).unwrap();
    check_act_matmul([12, 32, 40, 160], true, false, false, false, true, 4).unwrap();
    check_conv(16, [32, 32], 64, 1, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 5).unwrap();
}

/// A matmul whose weights an earlier node overwrites must read the new
/// weights: the artifact caches packed weights only for weight bytes that
/// no input and no node writes. Both engines and the node-by-node
/// reference agree.
#[test]
fn weights_written_by_an_earlier_node_are_not_taken_from_the_cache() {
    let mut rng = Rng(9);
    let mut b = ProgramBuilder::new();
    let (m, k) = (4u32, 8u32);
    let x = b.tensor("x", DType::I8, &[m * k], TensorKind::Input);
    let w0: Vec<i8> = (0..k * k).map(|_| rng.range(-20, 20) as i8).collect();
    let w0 = b.const_i8("w0", &[k, k], &w0);
    let w1: Vec<i8> = (0..m * k).map(|_| rng.range(-20, 20) as i8).collect();
    let w1 = b.const_i8("w1", &[m, k], &w1);
    let zero = b.const_i32("bias", &[k], &[0; 8]);
    let zero4 = b.const_i32("bias4", &[m], &[0; 4]);
    let rq0 = b.requant("rq0", &[1 << 30; 8], &[34; 8], 0, -128, 127);
    let rq1 = b.requant("rq1", &[1 << 30; 4], &[34; 4], 0, -128, 127);
    let y = b.tensor("y", DType::I8, &[m * m], TensorKind::Output);
    let (a_row, a_col, o_row, o_col) = MatMul::row_major(k, k);
    // Node 0: x [4, 8] x w0^T -> w1's bytes ([4, 8]).
    let w1_out = b.alias(w1, "w1.written", &[m * k]);
    b.node(
        "overwrite",
        Op::MatMul(MatMul {
            a: x,
            w: w0,
            bias: zero,
            output: w1_out,
            m,
            k,
            n: k,
            a_row,
            a_col,
            o_row,
            o_col,
            requant: rq0,
        }),
    );
    let (a_row, a_col, o_row, o_col) = MatMul::row_major(k, m);
    b.node(
        "use",
        Op::MatMul(MatMul {
            a: x,
            w: w1,
            bias: zero4,
            output: y,
            m,
            k,
            n: m,
            a_row,
            a_col,
            o_row,
            o_col,
            requant: rq1,
        }),
    );
    let end = b.end();
    let p = b.finish();
    let mem = image(&p, end, &mut rng);
    let input = mem[p.tensors[x].offset as usize..p.tensors[x].end() as usize].to_vec();
    let art = opml_lowering::Artifact::build(p.clone(), Default::default()).unwrap();
    let native = art.run_native(std::slice::from_ref(&input)).unwrap();
    let wasm = art.run_wasm(std::slice::from_ref(&input)).unwrap();
    assert_eq!(native.boundaries, wasm.boundaries);
    assert!(native.memory == wasm.memory);
    let mut want = art.initial_image();
    let at = p.tensors[x].offset as usize;
    want[at..at + input.len()].copy_from_slice(&input);
    for n in &p.nodes {
        let Op::MatMul(o) = &n.op else { unreachable!() };
        matmul::run_reference(o, &p, &mut want);
    }
    let out = p.tensors[y].offset as usize..p.tensors[y].end() as usize;
    assert_eq!(native.memory[out.clone()], want[out]);
}

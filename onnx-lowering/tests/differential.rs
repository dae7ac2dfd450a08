//! Native executor vs. Wasm sandbox, node boundary by node boundary, on
//! random programs of every op family.

use opml_lowering::builder::ProgramBuilder;
use opml_lowering::ir::{DType, MatMul, Op, TensorKind};
use opml_lowering::Artifact;
use proptest::prelude::*;

mod common;
use common::{small_budget, Rng};

/// Two chained matmuls: x[m,k] -> h[m,n] (ReLU) -> y[m,n2].
fn matmul_chain(m: u32, k: u32, n: u32, n2: u32, seed: u64) -> (Artifact, Vec<u8>) {
    let mut rng = Rng(seed);
    let mut b = ProgramBuilder::new();
    let x = b.tensor("x", DType::I8, &[m, k], TensorKind::Input);
    let w1 = b.const_i8("w1", &[n, k], &rng.i8s((n * k) as usize));
    let bias1: Vec<i32> = (0..n).map(|_| rng.range(-5000, 5000) as i32).collect();
    let bias1 = b.const_i32("b1", &[n], &bias1);
    let mul: Vec<i32> = (0..n)
        .map(|_| rng.range(1 << 20, (1 << 31) - 1) as i32)
        .collect();
    let sh: Vec<i32> = (0..n).map(|_| rng.range(30, 40) as i32).collect();
    let rq1 = b.requant("rq1", &mul, &sh, 0, 0, 127);
    let h = b.tensor("h", DType::I8, &[m, n], TensorKind::Activation);
    b.node(
        "mm1",
        Op::MatMul(MatMul {
            a: x,
            w: w1,
            bias: bias1,
            output: h,
            m,
            k,
            n,
            a_row: k,
            a_col: 1,
            o_row: n,
            o_col: 1,
            requant: rq1,
        }),
    );
    let w2 = b.const_i8("w2", &[n2, n], &rng.i8s((n2 * n) as usize));
    let bias2 = b.const_i32("b2", &[n2], &vec![7; n2 as usize]);
    let rq2 = b.requant(
        "rq2",
        &vec![1 << 30; n2 as usize],
        &vec![36; n2 as usize],
        -3,
        -128,
        127,
    );
    let y = b.tensor("y", DType::I8, &[m, n2], TensorKind::Output);
    b.node(
        "mm2",
        Op::MatMul(MatMul {
            a: h,
            w: w2,
            bias: bias2,
            output: y,
            m,
            k: n,
            n: n2,
            a_row: n,
            a_col: 1,
            o_row: n2,
            o_col: 1,
            requant: rq2,
        }),
    );
    let artifact = Artifact::build(b.finish(), small_budget()).unwrap();
    let input = rng
        .i8s((m * k) as usize)
        .into_iter()
        .map(|v| v as u8)
        .collect();
    (artifact, input)
}

#[test]
fn matmul_chain_native_equals_wasm_at_every_boundary() {
    let (a, x) = matmul_chain(5, 33, 17, 9, 1);
    assert!(
        a.nodes.iter().all(|n| n.units > 1),
        "budget splits nodes: {:?}",
        a.nodes
    );
    let wasm = a.run_wasm(std::slice::from_ref(&x)).unwrap();
    let native = a.run_native(&[x]).unwrap();
    assert_eq!(wasm.boundaries, native.boundaries);
    assert_eq!(wasm.memory, native.memory);
    // The output is not trivially constant.
    let y = a.output(&native, a.program.outputs[0]);
    assert!(y.iter().any(|v| *v != y[0]));
}

#[test]
fn fuel_per_node_does_not_depend_on_the_input() {
    let (a, x) = matmul_chain(4, 16, 8, 8, 2);
    let zeros = vec![0u8; x.len()];
    let ones = vec![0x7f; x.len()];
    for input in [x, zeros, ones] {
        let run = a.run_wasm(&[input]).unwrap();
        let fuel: Vec<u64> = run.boundaries[1..].iter().map(|s| s.fuel).collect();
        let recorded: Vec<u64> = a.nodes.iter().map(|n| n.end_fuel).collect();
        assert_eq!(fuel, recorded);
    }
}

#[test]
fn cannot_run_with_wrong_input_sizes() {
    let (a, x) = matmul_chain(2, 4, 4, 4, 3);
    assert!(a.run_native(&[x[..3].to_vec()]).is_err());
    assert!(a.run_wasm(&[]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn random_matmuls_agree(m in 1u32..6, k in 1u32..40, n in 1u32..20, n2 in 1u32..10, seed in any::<u64>()) {
        let (a, x) = matmul_chain(m, k, n, n2, seed);
        let wasm = a.run_wasm(std::slice::from_ref(&x)).unwrap();
        let native = a.run_native(std::slice::from_ref(&x)).unwrap();
        // Twice: the second run reuses the first one's restored image.
        for _ in 0..2 {
            let (outputs, last) = a.run_native_final(std::slice::from_ref(&x)).unwrap();
            prop_assert_eq!(last, native.last());
            prop_assert_eq!(&outputs[0], a.output(&native, a.program.outputs[0]));
        }
        prop_assert_eq!(wasm.boundaries, native.boundaries);
    }
}

#[test]
fn saved_artifact_loads_and_runs_identically() {
    let (a, x) = matmul_chain(3, 20, 10, 4, 9);
    let dir = std::env::temp_dir().join(format!("opml-artifact-{}", std::process::id()));
    a.save(&dir).unwrap();
    let loaded = Artifact::load(&dir).unwrap();
    assert_eq!(loaded.wasm(), a.wasm());
    assert_eq!(loaded.initial_image(), a.initial_image());
    assert_eq!(
        loaded.run_native(std::slice::from_ref(&x)).unwrap(),
        a.run_native(std::slice::from_ref(&x)).unwrap()
    );
    assert_eq!(
        loaded.run_wasm(std::slice::from_ref(&x)).unwrap(),
        a.run_native(&[x]).unwrap()
    );

    // A module that does not match its metadata is refused.
    let mut wasm = std::fs::read(dir.join("module.wasm")).unwrap();
    let last = wasm.len() - 1;
    wasm[last] ^= 1;
    std::fs::write(dir.join("module.wasm"), wasm).unwrap();
    assert!(Artifact::load(&dir).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// One matmul with `a` stored `[M, K]` (`a_t = false`) or `[K, M]`
/// (`a_t = true`) and the output `[M, N]` or `[N, M]` (`o_t`).
fn strided_matmul(m: u32, k: u32, n: u32, a_t: bool, o_t: bool, seed: u64) -> (Artifact, Vec<i8>) {
    let mut rng = Rng(seed);
    let mut b = ProgramBuilder::new();
    let a_shape = if a_t { [k, m] } else { [m, k] };
    let o_shape = if o_t { [n, m] } else { [m, n] };
    let x = b.tensor("x", DType::I8, &a_shape, TensorKind::Input);
    let w = b.const_i8("w", &[n, k], &rng.i8s((n * k) as usize));
    let bias: Vec<i32> = (0..n).map(|_| rng.range(-5000, 5000) as i32).collect();
    let bias = b.const_i32("b", &[n], &bias);
    let (mul, sh) = common::random_requant(&mut rng, n as usize);
    let rq = b.requant("rq", &mul, &sh, 1, -128, 127);
    let y = b.tensor("y", DType::I8, &o_shape, TensorKind::Output);
    let (a_row, a_col) = if a_t { (1, m) } else { (k, 1) };
    let (o_row, o_col) = if o_t { (1, m) } else { (n, 1) };
    b.node(
        "mm",
        Op::MatMul(MatMul {
            a: x,
            w,
            bias,
            output: y,
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
    let artifact = Artifact::build(b.finish(), small_budget()).unwrap();
    (artifact, rng.i8s((m * k) as usize))
}

/// Straightforward reference of a strided matmul.
fn strided_reference(a: &Artifact, x: &[i8], a_t: bool, o_t: bool) -> Vec<i8> {
    let Op::MatMul(o) = &a.program.nodes[0].op else {
        unreachable!()
    };
    let image = a.initial_image();
    let p = &a.program;
    let w = p.tensors[o.w].offset as usize;
    let i32_at = |t: usize, i: usize| {
        let at = p.tensors[t].offset as usize + 4 * i;
        i32::from_le_bytes(image[at..at + 4].try_into().unwrap())
    };
    let (m, k, n) = (o.m as usize, o.k as usize, o.n as usize);
    let mut out = vec![0i8; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = i32_at(o.bias, j);
            for kk in 0..k {
                let xa = if a_t { x[kk * m + i] } else { x[i * k + kk] };
                acc += i32::from(xa) * i32::from(image[w + j * k + kk] as i8);
            }
            let r = &o.requant;
            let q = opml_lowering::ir::requantize(
                acc,
                i32_at(r.multiplier, j),
                i32_at(r.shift, j),
                r.zero_point,
                r.lo,
                r.hi,
            );
            out[if o_t { j * m + i } else { i * n + j }] = q;
        }
    }
    out
}

fn check_strided(m: u32, k: u32, n: u32, a_t: bool, o_t: bool, seed: u64) {
    let (a, x) = strided_matmul(m, k, n, a_t, o_t, seed);
    let input = vec![x.iter().map(|v| *v as u8).collect::<Vec<u8>>()];
    let wasm = a.run_wasm(&input).unwrap();
    let native = a.run_native(&input).unwrap();
    assert_eq!(wasm.boundaries, native.boundaries);
    assert!(wasm.memory == native.memory, "memory images differ");
    let y: Vec<i8> = a
        .output(&wasm, a.program.outputs[0])
        .iter()
        .map(|v| *v as i8)
        .collect();
    assert_eq!(y, strided_reference(&a, &x, a_t, o_t));
}

#[test]
fn transposed_matmul_layouts_native_equals_wasm_and_reference() {
    for (a_t, o_t) in [(false, false), (true, false), (false, true), (true, true)] {
        check_strided(37, 16, 24, a_t, o_t, 5);
        check_strided(1, 7, 3, a_t, o_t, 6);
        check_strided(9, 1, 1, a_t, o_t, 7);
    }
}

#[test]
fn transposed_matmul_fuel_does_not_depend_on_the_input() {
    let (a, x) = strided_matmul(40, 12, 20, true, true, 8);
    assert!(a.nodes[0].units > 1);
    let recorded: Vec<u64> = a.nodes.iter().map(|n| n.end_fuel).collect();
    let x: Vec<u8> = x.iter().map(|v| *v as u8).collect();
    for input in [x.clone(), vec![0; x.len()], vec![0x80; x.len()]] {
        let run = a.run_wasm(&[input]).unwrap();
        let fuel: Vec<u64> = run.boundaries[1..].iter().map(|s| s.fuel).collect();
        assert_eq!(fuel, recorded);
    }
}

#[test]
fn matmul_strides_outside_the_tensors_are_refused() {
    let (a, _) = strided_matmul(4, 3, 2, true, true, 9);
    let mut p = a.program.clone();
    let Op::MatMul(o) = &mut p.nodes[0].op else {
        unreachable!()
    };
    o.a_col = 5; // (m-1)*1 + (k-1)*5 = 13 >= 12
    assert!(p.validate(&a.initial_image()).is_err());
    let mut p = a.program.clone();
    let Op::MatMul(o) = &mut p.nodes[0].op else {
        unreachable!()
    };
    o.o_col = 2; // not a dense layout of the output
    assert!(p.validate(&a.initial_image()).is_err());
    assert!(a.program.validate(&a.initial_image()).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn random_transposed_matmuls_agree(
        m in 1u32..50, k in 1u32..40, n in 1u32..20, a_t in any::<bool>(), o_t in any::<bool>(),
        seed in any::<u64>(),
    ) {
        check_strided(m, k, n, a_t, o_t, seed);
    }
}

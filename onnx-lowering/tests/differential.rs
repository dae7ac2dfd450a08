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
    let wasm = a.run_wasm(&[x.clone()]).unwrap();
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
        let wasm = a.run_wasm(&[x.clone()]).unwrap();
        let native = a.run_native(&[x]).unwrap();
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
        loaded.run_native(&[x.clone()]).unwrap(),
        a.run_native(&[x.clone()]).unwrap()
    );
    assert_eq!(
        loaded.run_wasm(&[x.clone()]).unwrap(),
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

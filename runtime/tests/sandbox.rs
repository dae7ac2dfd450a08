//! End-to-end tests of the sandbox, the prover and the verifier on the
//! hand-written programs in `tests/programs/`.

use opml_runtime::merkle::MerkleTree;
use opml_runtime::proof::OneStepProof;
use opml_runtime::verifier::verify_one_step_fields;
use opml_runtime::{
    verify_one_step, Fault, Sandbox, SandboxError, StateFields, Status, VerifyError,
};
use proptest::prelude::*;

fn program(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/programs/{name}.wat", env!("CARGO_MANIFEST_DIR"));
    wat::parse_file(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The faults program set to fault with `kind` at step `at`.
fn faulting(kind: u32, at: u32) -> Sandbox {
    let mut sb = Sandbox::new(&program("faults")).unwrap();
    sb.write_input(4, &at.to_le_bytes()).unwrap();
    sb.write_input(8, &kind.to_le_bytes()).unwrap();
    sb
}

/// Runs to the end, checking at every step that the recording prover and
/// the verifier agree with the fast path on every field.
fn run_checked(mut sb: Sandbox, code: &[u8]) -> Vec<StateFields> {
    let mut states = vec![sb.state()];
    while !sb.state().status.is_terminal() {
        let pre_root = sb.state_root();
        let (proof, recorded) = sb.prove_and_run_next_step().unwrap();
        let post = sb.step().unwrap();
        assert_eq!(
            recorded, post,
            "recording prover disagrees at step {}",
            post.step
        );
        let verified = verify_one_step_fields(code, &pre_root, &proof)
            .unwrap_or_else(|e| panic!("step {} rejected: {e}", post.step));
        assert_eq!(verified, post, "verifier disagrees at step {}", post.step);
        states.push(post);
        assert!(states.len() < 10_000, "runaway program");
    }
    states
}

fn run_plain(mut sb: Sandbox) -> Vec<StateFields> {
    let mut states = vec![sb.state()];
    while !sb.state().status.is_terminal() {
        states.push(sb.step().unwrap());
    }
    states
}

#[test]
fn counter_runs_fifty_steps_and_halts() {
    let code = program("counter");
    let states = run_checked(Sandbox::new(&code).unwrap(), &code);
    let last = states.last().unwrap();
    assert_eq!(last.step, 50);
    assert_eq!(last.status, Status::Halted);
    assert!(states.windows(2).all(|w| w[1].fuel > w[0].fuel));
    // Every step runs the same straight-line code, so costs the same.
    let per_step: Vec<u64> = states.windows(2).map(|w| w[1].fuel - w[0].fuel).collect();
    assert!(per_step.iter().all(|f| *f == per_step[0]));
}

#[test]
fn matmul_computes_the_product_and_every_step_verifies() {
    let code = program("matmul");
    let mut sb = Sandbox::new(&code).unwrap();
    let states = {
        let mut states = vec![sb.state()];
        while !sb.state().status.is_terminal() {
            let pre_root = sb.state_root();
            let proof = sb.prove_next_step().unwrap();
            let post = sb.step().unwrap();
            assert_eq!(
                verify_one_step(&code, &pre_root, &proof).unwrap(),
                post.hash()
            );
            states.push(post);
        }
        states
    };
    assert_eq!(states.last().unwrap().status, Status::Halted);
    assert_eq!(states.len(), 1 + 1 + 24);
    let n = 24usize;
    let word = |base: usize, i: usize| {
        let m = sb.memory();
        i32::from_le_bytes(m[base + 4 * i..base + 4 * i + 4].try_into().unwrap())
    };
    for r in 0..n {
        for j in 0..n {
            let want: i32 = (0..n)
                .map(|k| word(0x1000, r * n + k) * word(0x2000, k * n + j))
                .sum();
            assert_eq!(word(0x3000, r * n + j), want, "C[{r}][{j}]");
        }
    }
}

#[test]
fn memory_grow_after_hashing_is_committed_and_proven() {
    let code = program("grow");
    let states = run_checked(Sandbox::new(&code).unwrap(), &code);
    let pages: Vec<u32> = states.iter().map(|s| s.memory_pages).collect();
    assert_eq!(pages, vec![1, 2, 3, 4, 5, 5]);
    assert_eq!(states.last().unwrap().status, Status::Halted);

    // The incremental tree equals one built from scratch over final memory.
    let mut sb = Sandbox::new(&code).unwrap();
    while !sb.state().status.is_terminal() {
        sb.step().unwrap();
    }
    let limits = sb.program().info().limits;
    assert_eq!(limits.tree_depth(), 11); // 5 pages of 256-byte chunks
    let fresh = MerkleTree::new(limits.tree_depth(), 256, sb.memory()).unwrap();
    assert_eq!(fresh.root(), sb.state().memory_root);
}

#[test]
fn faults_are_committed_terminal_states_that_verify() {
    let cases = [
        (0, Fault::Unreachable),
        (1, Fault::IntegerDivisionByZero),
        (2, Fault::MemoryOutOfBounds),
        (3, Fault::OutOfFuel),
        (4, Fault::TouchLimit),
        (5, Fault::BadStepResult),
        (6, Fault::IntegerOverflow),
    ];
    let code = program("faults");
    for (kind, fault) in cases {
        let states = run_checked(faulting(kind, 3), &code);
        let last = *states.last().unwrap();
        assert_eq!(last.status, Status::Faulted(fault), "kind {kind}");
        assert_eq!(last.step, 3, "kind {kind}");
        if fault == Fault::TouchLimit {
            let before = states[states.len() - 2];
            assert_eq!(
                (last.fuel, last.memory_root),
                (before.fuel, before.memory_root)
            );
        }
    }
    let last = run_checked(faulting(7, 3), &code).pop().unwrap();
    assert_eq!(last.status, Status::Halted);
}

#[test]
fn out_of_fuel_uses_almost_the_whole_cap() {
    let mut sb = faulting(3, 1);
    let s = sb.step().unwrap();
    assert_eq!(s.status, Status::Faulted(Fault::OutOfFuel));
    // The region whose charge did not fit is not charged: the step used
    // less than the cap, by less than one loop iteration's region.
    assert!(s.fuel <= 5000 && s.fuel > 4990, "fuel {}", s.fuel);
}

#[test]
fn cannot_step_or_prove_a_terminal_machine() {
    let mut sb = faulting(0, 1);
    sb.step().unwrap();
    assert!(matches!(
        sb.step(),
        Err(SandboxError::Terminal(Status::Faulted(Fault::Unreachable)))
    ));
    assert!(matches!(
        sb.prove_next_step(),
        Err(SandboxError::Terminal(_))
    ));
}

#[test]
fn same_run_twice_gives_identical_states() {
    for name in ["counter", "grow", "matmul"] {
        let code = program(name);
        let a = run_plain(Sandbox::new(&code).unwrap());
        let b = run_plain(Sandbox::new(&code).unwrap());
        assert_eq!(a, b, "{name}");
    }
}

#[test]
fn snapshot_restores_the_same_future() {
    let code = program("matmul");
    let mut sb = Sandbox::new(&code).unwrap();
    for _ in 0..5 {
        sb.step().unwrap();
    }
    let snap = sb.snapshot();
    let mut restored = Sandbox::restore(sb.program().clone(), &snap).unwrap();
    assert_eq!(restored.state_root(), sb.state_root());
    for _ in 0..5 {
        assert_eq!(restored.step().unwrap(), sb.step().unwrap());
    }
    let mut bad = snap.clone();
    bad.memory[0x1000] ^= 1;
    assert!(matches!(
        Sandbox::restore(sb.program().clone(), &bad),
        Err(SandboxError::BadSnapshot(_))
    ));
}

#[test]
fn input_changes_the_initial_root_and_only_at_step_zero() {
    let code = program("faults");
    let plain = Sandbox::new(&code).unwrap();
    let mut with_input = Sandbox::new(&code).unwrap();
    with_input.write_input(4, &9u32.to_le_bytes()).unwrap();
    assert_ne!(plain.state_root(), with_input.state_root());
    assert!(matches!(
        with_input.write_input(65535, &[1, 2]),
        Err(SandboxError::BadInput(_))
    ));
    with_input.step().unwrap();
    assert!(matches!(
        with_input.write_input(0, &[1]),
        Err(SandboxError::BadInput(_))
    ));
}

#[test]
fn proof_missing_a_touched_chunk_is_rejected() {
    let code = program("matmul");
    let mut sb = Sandbox::new(&code).unwrap();
    sb.step().unwrap();
    let pre_root = sb.state_root();
    let mut proof = sb.prove_next_step().unwrap();
    assert!(proof.chunks.len() > 2);
    proof.chunks.pop();
    let idx: Vec<u32> = proof.chunks.iter().map(|c| c.index).collect();
    let tree = MerkleTree::new(8, 256, sb.memory()).unwrap();
    proof.lemmas = tree.multiproof(&idx).unwrap();
    assert!(matches!(
        verify_one_step(&code, &pre_root, &proof),
        Err(VerifyError::MissingChunk(_))
    ));
}

#[test]
fn touch_limit_proof_cannot_be_faked_by_dropping_chunks() {
    // A normal step proven with fewer chunks than the limit is incomplete,
    // not a touch-limit fault.
    let code = program("faults");
    let mut sb = faulting(4, 2);
    let pre_root = sb.state_root();
    let mut proof = sb.prove_next_step().unwrap();
    let tree = MerkleTree::new(6, 1024, sb.memory()).unwrap();
    proof.chunks.truncate(1);
    proof.lemmas = tree.multiproof(&[proof.chunks[0].index]).unwrap();
    assert!(matches!(
        verify_one_step(&code, &pre_root, &proof),
        Err(VerifyError::MissingChunk(_))
    ));
    sb.step().unwrap();
}

#[test]
fn flipping_any_byte_of_a_proof_fails_verification() {
    let code = program("counter");
    let mut sb = Sandbox::new(&code).unwrap();
    sb.step().unwrap();
    let pre_root = sb.state_root();
    let proof = sb.prove_next_step().unwrap();
    let post = sb.step().unwrap().hash();
    let bytes = proof.to_bytes();
    assert_eq!(
        opml_runtime::verify_one_step_bytes(&code, &pre_root, &bytes, 1 << 20).unwrap(),
        post
    );
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x01;
        let r = opml_runtime::verify_one_step_bytes(&code, &pre_root, &b, 1 << 20);
        assert!(
            r.is_err(),
            "flipping byte {i} of {} still verifies: {r:?}",
            bytes.len()
        );
    }
}

fn run_to(code: &[u8], steps: u64) -> Sandbox {
    let mut sb = Sandbox::new(code).unwrap();
    for _ in 0..steps {
        sb.step().unwrap();
    }
    sb
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn random_step_proofs_verify_and_tampering_fails(
        which in 0usize..3,
        step in 0u64..20,
        flip_chunk in any::<prop::sample::Index>(),
        flip_byte in any::<prop::sample::Index>(),
        flip_lemma in any::<prop::sample::Index>(),
    ) {
        let name = ["counter", "grow", "matmul"][which];
        let code = program(name);
        let max = match name { "grow" => 4, "matmul" => 24, _ => 49 };
        let mut sb = run_to(&code, step % max);
        let pre_root = sb.state_root();
        let proof = sb.prove_next_step().unwrap();
        let post = sb.step().unwrap();
        prop_assert_eq!(verify_one_step(&code, &pre_root, &proof).unwrap(), post.hash());

        let mut bad: OneStepProof = proof.clone();
        let c = flip_chunk.index(bad.chunks.len());
        let b = flip_byte.index(bad.chunks[c].data.len());
        bad.chunks[c].data[b] ^= 0x80;
        prop_assert!(verify_one_step(&code, &pre_root, &bad).is_err());

        if !proof.lemmas.is_empty() {
            let mut bad = proof.clone();
            let l = flip_lemma.index(bad.lemmas.len());
            bad.lemmas[l][0] ^= 1;
            prop_assert!(verify_one_step(&code, &pre_root, &bad).is_err());
        }
        let mut bad = proof.clone();
        bad.pre.fuel += 1;
        prop_assert_eq!(verify_one_step(&code, &pre_root, &bad), Err(VerifyError::PreStateMismatch));
    }
}

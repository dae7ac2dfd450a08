//! Cases found by the fuzz targets (fuzz/README.md), kept as tests.

use opml_runtime::checkpoint::Snapshot;
use opml_runtime::verifier::verify_one_step_fields;
use opml_runtime::{Sandbox, SandboxError, StateFields};

fn check_step(code: &[u8]) -> StateFields {
    let mut sb = Sandbox::new(code).unwrap();
    let pre = sb.state_root();
    let (proof, recorded) = sb.prove_and_run_next_step().unwrap();
    let post = sb.step().unwrap();
    assert_eq!(recorded, post);
    assert_eq!(verify_one_step_fields(code, &pre, &proof).unwrap(), post);
    post
}

#[test]
fn a_step_that_touches_no_memory_can_be_proven() {
    let code = wat::parse_str(
        r#"(module (memory (export "memory") 1 1)
             (global (export "opml_step_fuel") i64 (i64.const 10))
             (func (export "step") (result i32) (i32.const 1)))"#,
    )
    .unwrap();
    check_step(&code);
}

#[test]
fn a_store_straddling_two_chunks_counts_once_and_verifies() {
    let code = wat::parse_str(
        r#"(module (memory (export "memory") 1 1)
             (global (export "opml_step_fuel") i64 (i64.const 100))
             (global (export "opml_max_touched") i32 (i32.const 1))
             (func (export "step") (result i32)
               (i32.store (i32.const 1022) (i32.const 0x07070707)) (i32.const 0)))"#,
    )
    .unwrap();
    let post = check_step(&code);
    assert_eq!(post.status, opml_runtime::Status::Halted);
}

#[test]
fn proving_from_a_state_whose_counters_would_overflow_is_an_error_not_a_panic() {
    let code = wat::parse_str(
        r#"(module (memory (export "memory") 1 1)
             (global (export "opml_step_fuel") i64 (i64.const 10))
             (func (export "step") (result i32) (i32.const 1)))"#,
    )
    .unwrap();
    let fresh = Sandbox::new(&code).unwrap();
    for (step, fuel) in [(0, u64::MAX), (u64::MAX, 0)] {
        let snap = Snapshot {
            fields: StateFields {
                step,
                fuel,
                ..fresh.state()
            },
            ..fresh.snapshot()
        };
        let mut sb = Sandbox::restore(fresh.program().clone(), &snap).unwrap();
        assert!(matches!(
            sb.prove_and_run_next_step(),
            Err(SandboxError::CounterOverflow)
        ));
        assert!(matches!(sb.step(), Err(SandboxError::CounterOverflow)));
    }
}

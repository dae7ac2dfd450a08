//! A long step must not grow the native stack: wasmi's dispatch has to stay
//! a loop (or true tail calls) in every build profile, or a big step would
//! abort the prover instead of being metered.

use opml_runtime::{Sandbox, Status};

#[test]
fn a_step_of_millions_of_instructions_runs_on_a_small_stack() {
    let code = wat::parse_str(
        r#"(module
          (memory (export "memory") 1 1)
          (global (export "opml_step_fuel") i64 (i64.const 100000000))
          (func (export "step") (result i32)
            (local $i i32)
            (loop $l
              (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (local.get $i)))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $l (i32.lt_u (local.get $i) (i32.const 1000000))))
            (i32.const 0)))"#,
    )
    .unwrap();
    let worker = std::thread::Builder::new()
        .stack_size(512 << 10)
        .spawn(move || {
            let mut sb = Sandbox::new(&code).unwrap();
            sb.step().unwrap()
        })
        .unwrap();
    let s = worker.join().expect("the step overflowed a 512 KiB stack");
    assert_eq!(s.status, Status::Halted);
    assert!(s.fuel > 10_000_000, "fuel {}", s.fuel);
}

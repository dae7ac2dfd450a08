//! A tour of the sandbox on a hand-written module
//! (`cargo run -p opml-runtime --example demo`): admits the matmul test
//! program, runs it, prints steps, fuel and the final state root, and proves
//! and verifies one step (the verifier sees only the proof's chunks).
//! `make run` does the same on a real lowered model through the `opml` CLI.

use opml_runtime::{verify_one_step, Sandbox, Status};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/programs/matmul.wat");
    let code = wat::parse_file(path)?;
    println!("module      {path} ({} bytes of Wasm)", code.len());
    let mut sandbox = Sandbox::new(&code)?;
    let limits = sandbox.program().info().limits;
    println!(
        "admitted    step fuel cap {}, chunk {} B, at most {} chunks touched per step, {}..={} pages",
        limits.step_fuel,
        limits.chunk_size(),
        limits.max_touched,
        limits.min_pages,
        limits.max_pages
    );
    println!("initial     root {}", hex(&sandbox.state_root()));

    let prove_at = 7;
    let mut proof = None;
    let started = Instant::now();
    while sandbox.state().status == Status::Running {
        if sandbox.state().step == prove_at {
            proof = Some((sandbox.state_root(), sandbox.prove_next_step()?));
        }
        let s = sandbox.step()?;
        if s.step == prove_at + 1 {
            let (pre, p) = proof.as_ref().expect("proved before the step");
            let verified = verify_one_step(&code, pre, p)?;
            let bytes = p.to_bytes().len();
            println!(
                "proof       step {prove_at} -> {}: {} chunks, {} lemmas, {bytes} bytes; verified post root {} {}",
                s.step,
                p.chunks.len(),
                p.lemmas.len(),
                hex(&verified),
                if verified == s.hash() { "== committed root" } else { "!= COMMITTED ROOT" }
            );
            if verified != s.hash() {
                return Err("one-step proof does not reproduce the committed root".into());
            }
        }
    }
    let s = sandbox.state();
    println!(
        "finished    {:?} after {} steps, {} fuel, {} pages, in {:.2?}",
        s.status,
        s.step,
        s.fuel,
        s.memory_pages,
        started.elapsed()
    );
    println!("final       root {}", hex(&s.hash()));
    Ok(())
}

fn hex(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

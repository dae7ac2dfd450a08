//! Measures the calls for `weights.rs` (the method is documented there):
//! `cargo test -p pallet-opml --features runtime-benchmarks -- --ignored --nocapture measure_weights`
//!
//! `frame_benchmarking`'s own runner needs a node's benchmarking backend
//! (database commit and wipe), which `TestExternalities` lacks; so each call
//! is set up by the same functions as in `benchmarking.rs`, in fresh
//! externalities, and only the dispatch is timed.

use crate::benchmarking::{challenged, claimed, funded, last_proof, moves, signed, task};
use crate::game::Move;
use crate::mock::{new_test_ext, Test};
use crate::{BenchmarkHelper, Config, Pallet};
use frame_support::traits::{Get, StorageInfoTrait};
use std::time::Instant;

type T = Test;
const REPEATS: usize = 15;

/// Median and minimum nanoseconds of `call` over fresh setups.
fn time(setup: impl Fn() -> Box<dyn FnOnce()>) -> (u128, u128) {
    let mut ns: Vec<u128> = (0..REPEATS)
        .map(|_| {
            new_test_ext().execute_with(|| {
                let call = setup();
                let t = Instant::now();
                call();
                t.elapsed().as_nanos()
            })
        })
        .collect();
    ns.sort_unstable();
    (ns[ns.len() / 2], ns[0])
}

fn ok(r: frame_support::dispatch::DispatchResult) {
    r.expect("the measured call succeeds")
}

#[test]
#[ignore = "a measurement, not a check: run it to regenerate weights.rs"]
fn measure_weights() {
    let s = <T as Config>::BenchmarkHelper::scenario();
    let code_len = s.code.len();
    let proof_len = last_proof(&s).unwrap().len();
    println!(
        "digits: code {code_len} B, one-step proof {proof_len} B, {} moves",
        s.moves.len()
    );
    let w = <crate::weights::SubstrateWeight as crate::WeightInfo>::submit_one_step_proof(
        code_len as u32,
        proof_len as u32,
    );
    println!(
        "one-step proof weight: ref_time {} ps, proof_size {} B",
        w.ref_time(),
        w.proof_size()
    );
    let big = <T as Config>::BenchmarkHelper::largest_proof_scenario();
    println!(
        "largest: code {} B, one-step proof {} B",
        big.code.len(),
        last_proof(&big).unwrap().len()
    );
    let rows: Vec<(&str, (u128, u128))> = vec![
        (
            "register_model",
            time(|| {
                let s = <T as Config>::BenchmarkHelper::scenario();
                let owner = funded::<T>("owner", 0);
                Box::new(move || {
                    let code = s.code.clone().try_into().unwrap();
                    ok(Pallet::<T>::register_model(
                        signed::<T>(&owner).into(),
                        code,
                        s.commitment,
                    ))
                })
            }),
        ),
        (
            "request_task",
            time(|| {
                let s = <T as Config>::BenchmarkHelper::scenario();
                let owner = funded::<T>("owner", 0);
                let code = s.code.clone().try_into().unwrap();
                ok(Pallet::<T>::register_model(
                    signed::<T>(&owner).into(),
                    code,
                    s.commitment.clone(),
                ));
                let req = funded::<T>("requester", 0);
                Box::new(move || {
                    let input = s.input.try_into().unwrap();
                    let fee = <T as Config>::MinTaskFee::get();
                    ok(Pallet::<T>::request_task(
                        signed::<T>(&req).into(),
                        0,
                        input,
                        fee,
                    ))
                })
            }),
        ),
        (
            "submit_result",
            time(|| {
                let s = <T as Config>::BenchmarkHelper::scenario();
                task::<T>(&s).unwrap();
                let server = funded::<T>("server", 0);
                Box::new(move || {
                    let out = s.output.try_into().unwrap();
                    let o = signed::<T>(&server).into();
                    let (fuel, root, proof) = (s.final_fuel, s.final_memory_root, s.output_proof);
                    ok(Pallet::<T>::submit_result(o, 0, out, fuel, root, proof))
                })
            }),
        ),
        (
            "challenge",
            time(|| {
                let s = <T as Config>::BenchmarkHelper::scenario();
                claimed::<T>(&s).unwrap();
                let c = funded::<T>("challenger", 0);
                Box::new(move || ok(Pallet::<T>::challenge(signed::<T>(&c).into(), 0)))
            }),
        ),
        (
            "post_roots",
            time(|| {
                let s = <T as Config>::BenchmarkHelper::scenario();
                let (server, c) = challenged::<T>(&s).unwrap();
                let Some(Move::Dissect(roots)) = s.moves.first().cloned() else {
                    panic!()
                };
                Box::new(move || {
                    ok(Pallet::<T>::post_roots(
                        signed::<T>(&server).into(),
                        0,
                        c,
                        roots,
                    ))
                })
            }),
        ),
        (
            "pick_interval",
            time(|| {
                let s = <T as Config>::BenchmarkHelper::scenario();
                let (server, c) = challenged::<T>(&s).unwrap();
                moves::<T>(&s, &server, &c, 1).unwrap();
                let Some(Move::Pick(i)) = s.moves.get(1).cloned() else {
                    panic!()
                };
                Box::new(move || ok(Pallet::<T>::pick_interval(signed::<T>(&c).into(), 0, i)))
            }),
        ),
        (
            "submit_one_step_proof",
            time(|| {
                let s = <T as Config>::BenchmarkHelper::scenario();
                let (server, c) = challenged::<T>(&s).unwrap();
                moves::<T>(&s, &server, &c, s.moves.len() - 1).unwrap();
                let proof = last_proof(&s).unwrap().try_into().unwrap();
                Box::new(move || {
                    let o = signed::<T>(&c).into();
                    Pallet::<T>::submit_one_step_proof(o, 0, c, proof).expect("proof verifies");
                })
            }),
        ),
        (
            "one_step_largest_proof",
            time(|| {
                let s = <T as Config>::BenchmarkHelper::largest_proof_scenario();
                let (server, c) = challenged::<T>(&s).unwrap();
                moves::<T>(&s, &server, &c, s.moves.len() - 1).unwrap();
                let proof = last_proof(&s).unwrap().try_into().unwrap();
                Box::new(move || {
                    let o = signed::<T>(&c).into();
                    Pallet::<T>::submit_one_step_proof(o, 0, c, proof).expect("proof verifies");
                })
            }),
        ),
        (
            "timeout",
            time(|| {
                let s = <T as Config>::BenchmarkHelper::scenario();
                let (_, c) = challenged::<T>(&s).unwrap();
                let deadline = crate::Games::<T>::get(0, c).unwrap().game.deadline;
                frame_system::Pallet::<T>::set_block_number(deadline + 1);
                let caller = funded::<T>("caller", 0);
                Box::new(move || ok(Pallet::<T>::timeout(signed::<T>(&caller).into(), 0, c)))
            }),
        ),
        (
            "cancel_task",
            time(|| {
                let s = <T as Config>::BenchmarkHelper::scenario();
                task::<T>(&s).unwrap();
                let req = funded::<T>("requester", 0);
                Box::new(move || ok(Pallet::<T>::cancel_task(signed::<T>(&req).into(), 0)))
            }),
        ),
        (
            "finalize",
            time(|| {
                let s = <T as Config>::BenchmarkHelper::scenario();
                claimed::<T>(&s).unwrap();
                let end = crate::Claims::<T>::get(0).unwrap().challenge_end;
                frame_system::Pallet::<T>::set_block_number(end + 1);
                let caller = funded::<T>("caller", 0);
                Box::new(move || ok(Pallet::<T>::finalize(signed::<T>(&caller).into(), 0)))
            }),
        ),
    ];
    println!("{:<24} {:>12} {:>12}", "call", "median_ns", "min_ns");
    for (name, (med, min)) in rows {
        println!("{name:<24} {med:>12} {min:>12}");
    }
    println!("\n{:<16} {:>12}", "storage item", "max_size");
    for s in Pallet::<T>::storage_info() {
        println!(
            "{:<16} {:>12?}",
            String::from_utf8_lossy(&s.storage_name),
            s.max_size
        );
    }
}

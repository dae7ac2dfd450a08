//! The whole optimistic story on-chain, in a FRAME test runtime (System +
//! Balances + Opml, blocks advanced with their hooks), on the committed
//! digits CNN fixture:
//!
//! register the model, request a task, a cheating server posts a wrong
//! result, an honest challenger disputes it, the bisection moves computed by
//! the `opml-fraud-proof` agents are played on-chain, the final one-step
//! proof is re-executed by the pallet in wasmi, and the cheater's bond goes
//! to the challenger (part burned). Then an honest server completes the task.
//!
//! `cargo run -p pallet-opml --example onchain_demo`
#![allow(dead_code)]

#[path = "../src/fixture.rs"]
mod fixture;
#[path = "../src/mock.rs"]
mod mock;

use fixture::digits;
use frame_support::traits::fungible::{Inspect, InspectHold};
use frame_support::traits::Get;
use mock::*;
use opml_fraud_proof::agents::{Agent, Cheat};
use opml_fraud_proof::core::{Move, Party, Phase};
use pallet_opml::{Event, Games, HoldReason, TotalBurned};
use std::time::Instant;

const TASK: u64 = 0;
const FEE: Balance = 100;

fn name(who: AccountId) -> &'static str {
    match who {
        OWNER => "owner",
        REQUESTER => "requester",
        SERVER => "cheater",
        ALICE => "alice",
        BOB => "bob",
        CAROL => "carol",
        _ => "?",
    }
}

fn short(h: &[u8; 32]) -> String {
    h[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// Prints the pallet's events since the last call.
fn events(seen: &mut usize) {
    let all: Vec<Event<Test>> = System::events()
        .into_iter()
        .filter_map(|r| match r.event {
            RuntimeEvent::Opml(e) => Some(e),
            _ => None,
        })
        .collect();
    for e in &all[*seen..] {
        let line = match e {
            Event::ModelRegistered { model, owner, model_hash, code_hash, deposit } => format!(
                "ModelRegistered model={model} owner={} model_hash={}.. code_hash={}.. deposit={deposit}",
                name(*owner),
                short(model_hash),
                short(code_hash)
            ),
            Event::ResultSubmitted { task, server, output_hash, final_root, challenge_end } => format!(
                "ResultSubmitted task={task} server={} output_hash={}.. final_root={}.. challenge_end=#{challenge_end}",
                name(*server),
                short(output_hash),
                short(final_root)
            ),
            Event::BondSlashed { loser, winner, to_winner, burned } => format!(
                "BondSlashed loser={} winner={} to_winner={to_winner} burned={burned}",
                name(*loser),
                name(*winner)
            ),
            Event::TaskRequested { task, model, requester, fee } => {
                format!("TaskRequested task={task} model={model} requester={} fee={fee}", name(*requester))
            }
            Event::Challenged { task, challenger } => {
                format!("Challenged task={task} challenger={}", name(*challenger))
            }
            Event::RootsPosted { task, challenger, lo, hi, roots } => format!(
                "RootsPosted task={task} game={} interval={lo}..{hi} roots={roots}",
                name(*challenger)
            ),
            Event::IntervalPicked { task, challenger, index, lo, hi } => format!(
                "IntervalPicked task={task} game={} index={index} disputed={lo}..{hi}",
                name(*challenger)
            ),
            Event::OneStepVerified { task, challenger, step, winner } => format!(
                "OneStepVerified task={task} game={} step={step} winner={}",
                name(*challenger),
                name(*winner)
            ),
            Event::ClaimRefuted { task, server } => format!("ClaimRefuted task={task} server={}", name(*server)),
            Event::TaskFinalized { task, server, fee, output_hash, .. } => format!(
                "TaskFinalized task={task} server={} fee={fee} output_hash={}..",
                name(*server),
                short(output_hash)
            ),
            other => format!("{other:?}"),
        };
        println!("  #{:<3} event {line}", System::block_number());
    }
    *seen = all.len();
}

fn balances() {
    let held = |who| -> Balance {
        [
            HoldReason::ModelDeposit,
            HoldReason::TaskFee,
            HoldReason::ServerBond,
            HoldReason::ChallengerBond,
        ]
        .into_iter()
        .map(|r| Balances::balance_on_hold(&RuntimeHoldReason::Opml(r), &who))
        .sum()
    };
    print!("  balances (free/held):");
    for who in [REQUESTER, SERVER, ALICE, BOB] {
        print!(" {}={}/{}", name(who), Balances::balance(&who), held(who));
    }
    println!(
        "\n  total issuance {} = genesis {} - burned {}",
        Balances::total_issuance(),
        genesis_issuance(),
        TotalBurned::<Test>::get()
    );
}

/// Plays ALICE's game with the agents, one move per block.
fn play(server: &mut Agent, alice: &mut Agent, seen: &mut usize) {
    while let Some(rec) = Games::<Test>::get(TASK, ALICE) {
        let g = rec.game;
        let party = g.to_move().expect("stored games are live");
        let agent = if party == Party::Defender {
            &mut *server
        } else {
            &mut *alice
        };
        let mv = agent
            .act(&g)
            .expect("agent")
            .expect("both parties are live here");
        let stage = match (&g.phase, g.dissection(&digits().model.node_ends)) {
            (Phase::AwaitingDissection, Ok(opml_fraud_proof::core::Dissection::Stage1(_))) => {
                "stage 1 (node boundaries)"
            }
            (Phase::AwaitingDissection, _) => "stage 2 (steps inside one node)",
            _ => "",
        };
        match mv {
            Move::Dissect(roots) => {
                println!(
                    "  cheater posts {} roots inside steps {}..{} {stage}",
                    roots.len(),
                    g.lo,
                    g.hi
                );
                Opml::post_roots(RuntimeOrigin::signed(SERVER), TASK, ALICE, roots)
                    .expect("post_roots");
            }
            Move::Pick(i) => {
                println!("  alice disputes sub-interval {i}");
                Opml::pick_interval(RuntimeOrigin::signed(ALICE), TASK, i).expect("pick_interval");
            }
            Move::OneStep(_) => {
                // The cheater owes a proof it cannot make; the honest
                // challenger posts the real one (anyone may).
                let proof = alice.know.prove(g.lo).expect("proof").to_bytes();
                println!(
                    "  one step left: step {} -> {}; alice posts its one-step proof ({} bytes)",
                    g.lo,
                    g.hi,
                    proof.len()
                );
                let t = Instant::now();
                Opml::submit_one_step_proof(
                    RuntimeOrigin::signed(ALICE),
                    TASK,
                    ALICE,
                    proof.try_into().unwrap(),
                )
                .expect("the proof verifies");
                println!(
                    "  the pallet re-executed step {} in wasmi and checked the proof in {:.1} ms",
                    g.lo,
                    t.elapsed().as_secs_f64() * 1e3
                );
            }
        }
        events(seen);
        next_block();
    }
}

fn main() {
    println!(
        "opml on-chain demo: digits CNN fixture, FRAME test runtime (System + Balances + Opml)"
    );
    let t = Instant::now();
    let d = digits();
    println!(
        "lowered fixtures/digits_cnn/model.onnx: {} B of Wasm, {} steps in {} nodes (node ends {:?}); run and proven in {:.1} s",
        d.code.len(),
        d.steps(),
        d.model.node_ends.len(),
        d.model.node_ends.to_vec(),
        t.elapsed().as_secs_f64()
    );
    new_test_ext().execute_with(|| {
        let mut seen = 0;
        println!(
            "\nparameters: challenge period {CHALLENGE_PERIOD} blocks, move deadline {MOVE_DEADLINE}, server bond {SERVER_BOND}, challenger bond {CHALLENGER_BOND}, burn {:?}, k = {}",
            BurnShare::get(),
            <<Test as pallet_opml::Config>::Arity as Get<u32>>::get()
        );
        balances();

        println!("\n1. the owner registers the model (code + commitment; deposit held)");
        Opml::register_model(RuntimeOrigin::signed(OWNER), d.code.clone().try_into().unwrap(), d.model.clone())
            .expect("register");
        events(&mut seen);
        next_block();

        println!("\n2. the requester asks for the sample digit (fee held)");
        Opml::request_task(RuntimeOrigin::signed(REQUESTER), 0, d.input.clone().try_into().unwrap(), FEE)
            .expect("request");
        events(&mut seen);
        next_block();

        println!("\n3. a cheating server posts a wrong output (bond held); the pallet derives the initial root and checks the output proof");
        let mut server = d.agent(Party::Defender, Cheat::WrongOutput);
        let (output, fin, proof) = server.submit(&d.model).expect("submission");
        let honest_output = d.agent(Party::Defender, Cheat::None).submit(&d.model).expect("honest").0;
        let logits = |o: &[u8]| o.iter().map(|b| *b as i8).collect::<Vec<_>>();
        println!("  claimed logits (i8) {:?}\n  honest  logits (i8) {:?}", logits(&output), logits(&honest_output));
        Opml::submit_result(
            RuntimeOrigin::signed(SERVER),
            TASK,
            output.try_into().unwrap(),
            fin.fuel,
            fin.memory_root,
            proof,
        )
        .expect("submit");
        events(&mut seen);
        balances();
        next_block();

        println!("\n4. alice re-runs the model natively, disagrees with the final root, and challenges (bond held)");
        let mut alice = d.agent(Party::Challenger, Cheat::None);
        assert!(alice.disputes(&fin.hash()).expect("native run"));
        Opml::challenge(RuntimeOrigin::signed(ALICE), TASK).expect("challenge");
        events(&mut seen);
        next_block();

        println!("\n5. the bisection, one move per block, moves computed by the fraud-proof agents");
        play(&mut server, &mut alice, &mut seen);
        balances();

        println!("\n6. the task is open again: bob, an honest server, completes it");
        let (output, fin, proof) = d.agent(Party::Defender, Cheat::None).submit(&d.model).expect("honest");
        Opml::submit_result(RuntimeOrigin::signed(BOB), TASK, output.try_into().unwrap(), fin.fuel, fin.memory_root, proof)
            .expect("submit");
        events(&mut seen);
        run_to_block(System::block_number() + CHALLENGE_PERIOD + 1);
        println!("  ... no challenge for {CHALLENGE_PERIOD} blocks");
        Opml::finalize(RuntimeOrigin::signed(CAROL), TASK).expect("finalize");
        events(&mut seen);
        balances();
        pallet_opml::Pallet::<Test>::do_try_state().expect("holds match the records");
        assert_eq!(Balances::total_issuance(), genesis_issuance() - TotalBurned::<Test>::get());
        println!("\ndone: the cheater lost its bond, the honest result stands, issuance fell only by the burn");
    });
}

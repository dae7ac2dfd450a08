//! Tests on the mock runtime with the real digits fixture (see `fixture.rs`).

use crate::fixture::{digits, Submission};
use crate::game::Arg;
use crate::mock::*;
use crate::{
    Claims, Code, Error, Event, Games, Models, NextTaskId, TaskStatus, Tasks, TotalBurned,
};
use frame_support::{
    assert_noop, assert_ok,
    pallet_prelude::DispatchError,
    traits::fungible::{Inspect, InspectHold},
    BoundedVec,
};
use opml_fraud_proof::agents::{Agent, Cheat};
use opml_fraud_proof::core::{Move, Party};

const FEE: Balance = 100;
const TASK: u64 = 0;

fn hold_of(reason: crate::HoldReason, who: AccountId) -> Balance {
    Balances::balance_on_hold(&RuntimeHoldReason::Opml(reason), &who)
}

fn free(who: AccountId) -> Balance {
    Balances::balance(&who)
}

/// Total issuance moved only by the pallet's burns, and every hold matches
/// a record.
fn check_books() {
    assert_eq!(
        Balances::total_issuance(),
        genesis_issuance() - TotalBurned::<Test>::get()
    );
    crate::Pallet::<Test>::do_try_state().expect("try_state");
}

fn last_events(n: usize) -> Vec<Event<Test>> {
    let mut evs: Vec<Event<Test>> = System::events()
        .into_iter()
        .filter_map(|r| match r.event {
            RuntimeEvent::Opml(e) => Some(e),
            _ => None,
        })
        .collect();
    evs.split_off(evs.len().saturating_sub(n))
}

fn register() {
    let d = digits();
    assert_ok!(Opml::register_model(
        RuntimeOrigin::signed(OWNER),
        d.code.clone().try_into().unwrap(),
        Arg(d.model.clone()),
    ));
}

fn request() {
    let input: BoundedVec<u8, _> = digits().input.clone().try_into().unwrap();
    assert_ok!(Opml::request_task(
        RuntimeOrigin::signed(REQUESTER),
        0,
        input,
        FEE
    ));
}

fn submit(server: AccountId, s: &Submission) -> frame_support::dispatch::DispatchResult {
    let (output, final_state, proof) = s;
    Opml::submit_result(
        RuntimeOrigin::signed(server),
        TASK,
        output.clone().try_into().unwrap(),
        final_state.fuel,
        final_state.memory_root,
        Arg(proof.clone()),
    )
}

/// Registered model, requested task, and a result submitted by SERVER
/// playing `cheat`; returns the server's agent.
fn claimed(cheat: Cheat) -> Agent {
    register();
    request();
    let mut server = digits().agent(Party::Defender, cheat);
    let s = server.submit(&digits().model).unwrap();
    assert_ok!(submit(SERVER, &s));
    server
}

fn game_of(challenger: AccountId) -> opml_fraud_proof::core::Game {
    Games::<Test>::get(TASK, challenger).expect("game").game
}

/// Plays the game of `challenger` on-chain, one block per move, with the
/// agents computing the moves, until it ends or the party to move stays
/// silent (returned). Moves the chain rejects must change nothing; they are
/// returned too.
fn play(
    challenger: AccountId,
    def: &mut Agent,
    chal: &mut Agent,
) -> (Option<Party>, Vec<DispatchError>) {
    let mut rejected = Vec::new();
    loop {
        let Some(rec) = Games::<Test>::get(TASK, challenger) else {
            return (None, rejected);
        };
        let g = rec.game;
        let party = g.to_move().expect("stored games are live");
        let agent = if party == Party::Defender {
            &mut *def
        } else {
            &mut *chal
        };
        let Some(mv) = agent.act(&g).unwrap() else {
            return (Some(party), rejected);
        };
        let origin = RuntimeOrigin::signed(if party == Party::Defender {
            SERVER
        } else {
            challenger
        });
        let before = sp_io::storage::root(sp_runtime::StateVersion::V1);
        let r = match mv {
            Move::Dissect(roots) => Opml::post_roots(origin, TASK, challenger, roots),
            Move::Pick(i) => Opml::pick_interval(origin, TASK, i),
            Move::OneStep(bytes) => {
                let proof = bytes.into_inner().try_into().unwrap();
                Opml::submit_one_step_proof(origin, TASK, challenger, proof)
                    .map(|_| ())
                    .map_err(|e| e.error)
            }
        };
        if let Err(e) = r {
            assert_eq!(before, sp_io::storage::root(sp_runtime::StateVersion::V1));
            rejected.push(e);
        }
        next_block();
    }
}

/// Plays honestly as the challenger against `def` to the end.
fn play_honest(challenger: AccountId, def: &mut Agent) {
    let mut chal = digits().agent(Party::Challenger, Cheat::None);
    assert_eq!(play(challenger, def, &mut chal), (None, vec![]));
}

#[test]
fn register_model_works() {
    new_test_ext().execute_with(|| {
        register();
        let info = Models::<Test>::get(0).unwrap();
        assert_eq!(info.steps, digits().steps());
        assert_eq!(info.model_hash, digits().model.hash());
        assert_eq!(Code::<Test>::get(0).unwrap().to_vec(), digits().code);
        assert_eq!(
            hold_of(crate::HoldReason::ModelDeposit, OWNER),
            MODEL_DEPOSIT_BASE
        );
        System::assert_last_event(
            Event::ModelRegistered {
                model: 0,
                owner: OWNER,
                model_hash: info.model_hash,
                code_hash: info.code_hash,
                deposit: MODEL_DEPOSIT_BASE,
            }
            .into(),
        );
        check_books();
    });
}

#[test]
fn cannot_register_model_if_code_mismatches() {
    new_test_ext().execute_with(|| {
        let d = digits();
        let mut code = d.code.clone();
        let last = code.len() - 1;
        code[last] ^= 1;
        assert_noop!(
            Opml::register_model(
                RuntimeOrigin::signed(OWNER),
                code.try_into().unwrap(),
                Arg(d.model.clone())
            ),
            Error::<Test>::CodeMismatch
        );
    });
}

#[test]
fn cannot_register_model_if_commitment_invalid() {
    new_test_ext().execute_with(|| {
        let d = digits();
        let mut model = d.model.clone();
        model.node_ends = vec![3, 2].try_into().unwrap();
        assert_noop!(
            Opml::register_model(
                RuntimeOrigin::signed(OWNER),
                d.code.clone().try_into().unwrap(),
                Arg(model)
            ),
            Error::<Test>::CommitmentInvalid
        );
        // A forged input proof: no task could ever be claimed.
        let mut model = d.model.clone();
        model.input_lemmas[0][0] ^= 1;
        assert_noop!(
            Opml::register_model(
                RuntimeOrigin::signed(OWNER),
                d.code.clone().try_into().unwrap(),
                Arg(model)
            ),
            Error::<Test>::CommitmentInvalid
        );
        let mut model = d.model.clone();
        model.memory_pages += 1;
        assert_noop!(
            Opml::register_model(
                RuntimeOrigin::signed(OWNER),
                d.code.clone().try_into().unwrap(),
                Arg(model)
            ),
            Error::<Test>::CommitmentInvalid
        );
    });
}

#[test]
fn cannot_register_model_if_step_fuel_too_high() {
    new_test_ext().execute_with(|| {
        // The digits module declares a step fuel cap of 4 000 000: refuse it
        // under a lower MaxStepFuel.
        let d = digits();
        let cap = opml_runtime::admission::admit(&d.code)
            .unwrap()
            .limits
            .step_fuel;
        assert_eq!(cap, 4_000_000);
        MaxStepFuelCap::set(cap - 1);
        assert_noop!(
            Opml::register_model(
                RuntimeOrigin::signed(OWNER),
                d.code.clone().try_into().unwrap(),
                Arg(d.model.clone())
            ),
            Error::<Test>::StepFuelTooHigh
        );
    });
}

#[test]
fn cannot_register_model_if_balance_insufficient() {
    new_test_ext().execute_with(|| {
        let d = digits();
        assert_noop!(
            Opml::register_model(
                RuntimeOrigin::signed(POOR),
                d.code.clone().try_into().unwrap(),
                Arg(d.model.clone())
            ),
            Error::<Test>::InsufficientBalance
        );
    });
}

#[test]
fn request_task_works() {
    new_test_ext().execute_with(|| {
        register();
        request();
        let t = Tasks::<Test>::get(TASK).unwrap();
        assert_eq!(t.status, TaskStatus::Open);
        assert_eq!(hold_of(crate::HoldReason::TaskFee, REQUESTER), FEE);
        assert_eq!(NextTaskId::<Test>::get(), 1);
        System::assert_last_event(
            Event::TaskRequested {
                task: TASK,
                model: 0,
                requester: REQUESTER,
                fee: FEE,
            }
            .into(),
        );
        check_books();
    });
}

#[test]
fn cannot_request_task_if_input_or_fee_or_model_invalid() {
    new_test_ext().execute_with(|| {
        register();
        let input: BoundedVec<u8, _> = digits().input.clone().try_into().unwrap();
        let short: BoundedVec<u8, _> = digits().input[1..].to_vec().try_into().unwrap();
        let o = || RuntimeOrigin::signed(REQUESTER);
        assert_noop!(
            Opml::request_task(o(), 0, short, FEE),
            Error::<Test>::InputInvalid
        );
        assert_noop!(
            Opml::request_task(o(), 0, input.clone(), MIN_FEE - 1),
            Error::<Test>::FeeTooLow
        );
        assert_noop!(
            Opml::request_task(o(), 9, input.clone(), FEE),
            Error::<Test>::ModelNotFound
        );
        assert_noop!(
            Opml::request_task(RuntimeOrigin::signed(POOR), 0, input, FEE),
            Error::<Test>::InsufficientBalance
        );
    });
}

#[test]
fn cancel_task_works() {
    new_test_ext().execute_with(|| {
        register();
        request();
        let req0 = free(REQUESTER);
        assert_noop!(
            Opml::cancel_task(RuntimeOrigin::signed(ALICE), TASK),
            Error::<Test>::NotRequester
        );
        assert_ok!(Opml::cancel_task(RuntimeOrigin::signed(REQUESTER), TASK));
        assert_eq!(free(REQUESTER), req0 + FEE);
        assert!(Tasks::<Test>::get(TASK).is_none());
        System::assert_last_event(
            Event::TaskCancelled {
                task: TASK,
                requester: REQUESTER,
                fee: FEE,
            }
            .into(),
        );
        check_books();
    });
}

#[test]
fn cannot_cancel_task_if_claimed() {
    new_test_ext().execute_with(|| {
        claimed(Cheat::None);
        assert_noop!(
            Opml::cancel_task(RuntimeOrigin::signed(REQUESTER), TASK),
            Error::<Test>::TaskNotOpen
        );
    });
}

#[test]
fn submit_result_works() {
    new_test_ext().execute_with(|| {
        let d = digits();
        claimed(Cheat::None);
        let rec = Claims::<Test>::get(TASK).unwrap();
        assert_eq!(
            rec.claim.initial_root,
            d.initial.hash(),
            "initial root derived on-chain"
        );
        assert_eq!(rec.claim.final_root, d.know.final_state().hash());
        assert_eq!(
            Tasks::<Test>::get(TASK).unwrap().status,
            TaskStatus::Claimed
        );
        assert_eq!(hold_of(crate::HoldReason::ServerBond, SERVER), SERVER_BOND);
        System::assert_last_event(
            Event::ResultSubmitted {
                task: TASK,
                server: SERVER,
                output_hash: rec.claim.output_hash,
                final_root: rec.claim.final_root,
                challenge_end: 1 + CHALLENGE_PERIOD,
            }
            .into(),
        );
        check_books();
    });
}

#[test]
fn cannot_submit_result_if_output_not_proven_or_task_claimed() {
    new_test_ext().execute_with(|| {
        let d = digits();
        register();
        request();
        let honest = d.submission(Cheat::None);
        let cheat = d.submission(Cheat::WrongOutput);
        // The cheat's output with the honest final root: not what it holds.
        let mixed = (cheat.0.clone(), honest.1, honest.2.clone());
        assert_noop!(submit(SERVER, &mixed), Error::<Test>::OutputNotProven);
        assert_noop!(
            Opml::submit_result(
                RuntimeOrigin::signed(SERVER),
                7,
                honest.0.clone().try_into().unwrap(),
                0,
                [0; 32],
                Arg(honest.2.clone())
            ),
            Error::<Test>::TaskNotFound
        );
        assert_noop!(submit(POOR, &honest), Error::<Test>::InsufficientBalance);
        assert_ok!(submit(SERVER, &honest));
        assert_noop!(submit(ALICE, &honest), Error::<Test>::TaskNotOpen);
    });
}

#[test]
fn finalize_works() {
    new_test_ext().execute_with(|| {
        claimed(Cheat::None);
        let (server0, req0) = (free(SERVER), free(REQUESTER));
        run_to_block(2 + CHALLENGE_PERIOD);
        assert_ok!(Opml::finalize(RuntimeOrigin::signed(CAROL), TASK));
        assert_eq!(free(SERVER), server0 + FEE + SERVER_BOND);
        assert_eq!(free(REQUESTER), req0);
        assert_eq!(hold_of(crate::HoldReason::TaskFee, REQUESTER), 0);
        assert_eq!(
            Tasks::<Test>::get(TASK).unwrap().status,
            TaskStatus::Finalized
        );
        let output_hash = Claims::<Test>::get(TASK).unwrap().claim.output_hash;
        System::assert_last_event(
            Event::TaskFinalized {
                task: TASK,
                server: SERVER,
                fee: FEE,
                output_hash,
            }
            .into(),
        );
        assert_noop!(
            Opml::finalize(RuntimeOrigin::signed(CAROL), TASK),
            Error::<Test>::ClaimNotFound
        );
        check_books();
    });
}

#[test]
fn cannot_finalize_if_period_running_or_disputes_open() {
    new_test_ext().execute_with(|| {
        claimed(Cheat::None);
        assert_noop!(
            Opml::finalize(RuntimeOrigin::signed(CAROL), TASK),
            Error::<Test>::ChallengePeriodRunning
        );
        assert_ok!(Opml::challenge(RuntimeOrigin::signed(ALICE), TASK));
        run_to_block(2 + CHALLENGE_PERIOD);
        assert_noop!(
            Opml::finalize(RuntimeOrigin::signed(CAROL), TASK),
            Error::<Test>::DisputesOpen
        );
    });
}

#[test]
fn cannot_challenge_if_late_own_repeated_or_full() {
    new_test_ext().execute_with(|| {
        claimed(Cheat::None);
        assert_noop!(
            Opml::challenge(RuntimeOrigin::signed(SERVER), TASK),
            Error::<Test>::SelfChallenge
        );
        assert_noop!(
            Opml::challenge(RuntimeOrigin::signed(ALICE), 5),
            Error::<Test>::TaskNotFound
        );
        assert_ok!(Opml::challenge(RuntimeOrigin::signed(ALICE), TASK));
        assert_noop!(
            Opml::challenge(RuntimeOrigin::signed(ALICE), TASK),
            Error::<Test>::AlreadyChallenged
        );
        assert_noop!(
            Opml::challenge(RuntimeOrigin::signed(POOR), TASK),
            Error::<Test>::InsufficientBalance
        );
        for who in [BOB, CAROL, OWNER] {
            assert_ok!(Opml::challenge(RuntimeOrigin::signed(who), TASK));
        }
        assert_noop!(
            Opml::challenge(RuntimeOrigin::signed(REQUESTER), TASK),
            Error::<Test>::TooManyDisputes
        );
        run_to_block(2 + CHALLENGE_PERIOD);
        assert_noop!(
            Opml::challenge(RuntimeOrigin::signed(REQUESTER), TASK),
            Error::<Test>::ChallengePeriodOver
        );
        check_books();
    });
}

/// A full game against a lying server: it loses its bond to the challenger
/// by a one-step proof, and an honest server then completes the task.
fn liar_loses(cheat: Cheat) {
    new_test_ext().execute_with(|| {
        let mut server = claimed(cheat);
        let alice0 = free(ALICE);
        assert_ok!(Opml::challenge(RuntimeOrigin::signed(ALICE), TASK));
        next_block();
        play_honest(ALICE, &mut server);
        let burned = BurnShare::get().mul_floor(SERVER_BOND);
        assert_eq!(free(ALICE), alice0 + SERVER_BOND - burned);
        assert_eq!(hold_of(crate::HoldReason::ServerBond, SERVER), 0);
        assert_eq!(TotalBurned::<Test>::get(), burned);
        assert_eq!(Tasks::<Test>::get(TASK).unwrap().status, TaskStatus::Open);
        assert!(Claims::<Test>::get(TASK).is_none());
        let evs = last_events(3);
        assert_eq!(
            evs[..2],
            [
                Event::BondSlashed {
                    loser: SERVER,
                    winner: ALICE,
                    to_winner: SERVER_BOND - burned,
                    burned
                },
                Event::ClaimRefuted {
                    task: TASK,
                    server: SERVER
                },
            ]
        );
        assert!(matches!(
            evs[2],
            Event::OneStepVerified {
                task: TASK,
                challenger: ALICE,
                winner: ALICE,
                ..
            }
        ));
        check_books();
        // The task is open again: an honest server completes it.
        assert_ok!(submit(BOB, &digits().submission(Cheat::None)));
        run_to_block(System::block_number() + CHALLENGE_PERIOD + 1);
        assert_ok!(Opml::finalize(RuntimeOrigin::signed(CAROL), TASK));
        check_books();
    });
}

#[test]
fn cheating_server_loses_bond_to_challenger() {
    liar_loses(Cheat::WrongOutput);
}

#[test]
fn server_lying_from_any_step_loses() {
    for at in 1..=digits().steps() {
        liar_loses(Cheat::WrongRoot { at });
    }
}

#[test]
fn server_lying_in_stage_one_only_loses() {
    liar_loses(Cheat::Stage1Lie { at: 2 });
}

#[test]
fn server_lying_in_stage_two_only_loses() {
    // Step 3 is inside conv2 (steps 2..4): only a stage-2 dissection sees it.
    let d = digits();
    assert!(!d.model.node_ends.contains(&3) && d.model.node_ends.contains(&4));
    liar_loses(Cheat::Stage2Lie { at: 3 });
}

#[test]
fn equivocating_server_loses() {
    liar_loses(Cheat::Equivocate { at: 1 });
    liar_loses(Cheat::WrongIntermediate { at: 2 });
}

#[test]
fn honest_server_beats_false_challenge() {
    new_test_ext().execute_with(|| {
        let d = digits();
        let mut server = claimed(Cheat::None);
        let server0 = free(SERVER);
        assert_ok!(Opml::challenge(RuntimeOrigin::signed(ALICE), TASK));
        let mut alice = d.agent(Party::Challenger, Cheat::FalseChallenge { at: 1 });
        assert_eq!(play(ALICE, &mut server, &mut alice), (None, vec![]));
        let burned = BurnShare::get().mul_floor(CHALLENGER_BOND);
        assert_eq!(free(SERVER), server0 + CHALLENGER_BOND - burned);
        assert_eq!(hold_of(crate::HoldReason::ChallengerBond, ALICE), 0);
        assert_eq!(Claims::<Test>::get(TASK).unwrap().open_games, 0);
        assert_eq!(
            last_events(2)[0],
            Event::BondSlashed {
                loser: ALICE,
                winner: SERVER,
                to_winner: CHALLENGER_BOND - burned,
                burned
            }
        );
        check_books();
        run_to_block(System::block_number().max(2 + CHALLENGE_PERIOD));
        assert_ok!(Opml::finalize(RuntimeOrigin::signed(CAROL), TASK));
        assert_eq!(
            free(SERVER),
            server0 + CHALLENGER_BOND - burned + FEE + SERVER_BOND
        );
        check_books();
    });
}

#[test]
fn silent_server_loses_by_timeout() {
    new_test_ext().execute_with(|| {
        let d = digits();
        let mut server = claimed(Cheat::Silent { after: 1 });
        assert_ok!(Opml::challenge(RuntimeOrigin::signed(ALICE), TASK));
        let mut alice = d.agent(Party::Challenger, Cheat::None);
        assert_eq!(
            play(ALICE, &mut server, &mut alice),
            (Some(Party::Defender), vec![])
        );
        let deadline = game_of(ALICE).deadline;
        run_to_block(deadline);
        assert_noop!(
            Opml::timeout(RuntimeOrigin::signed(CAROL), TASK, ALICE),
            Error::<Test>::DeadlineNotReached
        );
        next_block();
        let g = game_of(ALICE);
        let roots = d.dissection_roots(&g);
        assert_noop!(
            Opml::post_roots(RuntimeOrigin::signed(SERVER), TASK, ALICE, roots),
            Error::<Test>::DeadlinePassed
        );
        assert_ok!(Opml::timeout(RuntimeOrigin::signed(CAROL), TASK, ALICE));
        System::assert_has_event(
            Event::GameTimedOut {
                task: TASK,
                challenger: ALICE,
                winner: ALICE,
            }
            .into(),
        );
        assert_eq!(Tasks::<Test>::get(TASK).unwrap().status, TaskStatus::Open);
        check_books();
    });
}

#[test]
fn silent_challenger_loses_by_timeout() {
    new_test_ext().execute_with(|| {
        let d = digits();
        let mut server = claimed(Cheat::None);
        assert_ok!(Opml::challenge(RuntimeOrigin::signed(ALICE), TASK));
        let mut alice = d.agent(Party::Challenger, Cheat::SilentChallenger { after: 0 });
        assert_eq!(
            play(ALICE, &mut server, &mut alice),
            (Some(Party::Challenger), vec![])
        );
        run_to_block(game_of(ALICE).deadline + 1);
        assert_noop!(
            Opml::pick_interval(RuntimeOrigin::signed(ALICE), TASK, 0),
            Error::<Test>::DeadlinePassed
        );
        assert_ok!(Opml::timeout(RuntimeOrigin::signed(BOB), TASK, ALICE));
        System::assert_has_event(
            Event::GameTimedOut {
                task: TASK,
                challenger: ALICE,
                winner: SERVER,
            }
            .into(),
        );
        assert!(Games::<Test>::get(TASK, ALICE).is_none());
        assert_eq!(Claims::<Test>::get(TASK).unwrap().open_games, 0);
        check_books();
    });
}

#[test]
fn several_challengers_each_play_their_own_game() {
    new_test_ext().execute_with(|| {
        let d = digits();
        let mut server = claimed(Cheat::WrongOutput);
        let (bob0, carol0) = (free(BOB), free(CAROL));
        for who in [ALICE, BOB, CAROL] {
            assert_ok!(Opml::challenge(RuntimeOrigin::signed(who), TASK));
        }
        // ALICE's game is one move in when BOB's ends.
        let g = game_of(ALICE);
        assert_ok!(Opml::post_roots(
            RuntimeOrigin::signed(SERVER),
            TASK,
            ALICE,
            d.dissection_roots(&g)
        ));
        play_honest(BOB, &mut server);
        // BOB took the server's bond; ALICE's and CAROL's games closed with
        // their bonds returned.
        let burned = BurnShare::get().mul_floor(SERVER_BOND);
        assert_eq!(free(BOB), bob0 + SERVER_BOND - burned);
        assert_eq!(free(CAROL), carol0);
        assert_eq!(Games::<Test>::iter_prefix(TASK).count(), 0);
        assert_eq!(hold_of(crate::HoldReason::ChallengerBond, ALICE), 0);
        check_books();
    });
}

#[test]
fn several_false_challengers_all_lose() {
    new_test_ext().execute_with(|| {
        let d = digits();
        let mut server = claimed(Cheat::None);
        let server0 = free(SERVER);
        for who in [ALICE, BOB] {
            assert_ok!(Opml::challenge(RuntimeOrigin::signed(who), TASK));
        }
        let mut alice = d.agent(Party::Challenger, Cheat::FalseChallenge { at: d.steps() });
        let mut bob = d.agent(Party::Challenger, Cheat::FalseChallenge { at: 2 });
        assert_eq!(play(ALICE, &mut server, &mut alice), (None, vec![]));
        assert_eq!(play(BOB, &mut server, &mut bob), (None, vec![]));
        let burned = BurnShare::get().mul_floor(CHALLENGER_BOND);
        assert_eq!(free(SERVER), server0 + 2 * (CHALLENGER_BOND - burned));
        assert_eq!(TotalBurned::<Test>::get(), 2 * burned);
        check_books();
    });
}

#[test]
fn wrong_or_malformed_one_step_proof_is_rejected_and_changes_nothing() {
    new_test_ext().execute_with(|| {
        let d = digits();
        // The server posts a tampered proof, then one of another step, then
        // stays silent; each is rejected without a trace (checked in `play`).
        let mut server = claimed(Cheat::InvalidProof);
        assert_ok!(Opml::challenge(RuntimeOrigin::signed(ALICE), TASK));
        let mut alice = d.agent(Party::Challenger, Cheat::None);
        let (silent, rejected) = play(ALICE, &mut server, &mut alice);
        assert_eq!(silent, Some(Party::Defender));
        assert_eq!(
            rejected,
            vec![
                Error::<Test>::ProofRejected.into(),
                Error::<Test>::ProofRejected.into()
            ]
        );
        let g = game_of(ALICE);
        let garbage: BoundedVec<u8, _> = vec![7u8; 100].try_into().unwrap();
        assert_noop!(
            Opml::submit_one_step_proof(RuntimeOrigin::signed(ALICE), TASK, ALICE, garbage),
            Error::<Test>::ProofMalformed
        );
        assert_eq!(game_of(ALICE), g);
        // The challenger posts the real proof itself and wins.
        let proof = d.proof(&g).try_into().unwrap();
        assert_ok!(Opml::submit_one_step_proof(
            RuntimeOrigin::signed(ALICE),
            TASK,
            ALICE,
            proof
        ));
        System::assert_has_event(
            Event::ClaimRefuted {
                task: TASK,
                server: SERVER,
            }
            .into(),
        );
        check_books();
    });
}

#[test]
fn cannot_move_out_of_turn() {
    new_test_ext().execute_with(|| {
        let d = digits();
        claimed(Cheat::None);
        assert_ok!(Opml::challenge(RuntimeOrigin::signed(ALICE), TASK));
        let g = game_of(ALICE);
        let roots = d.dissection_roots(&g);
        assert_noop!(
            Opml::post_roots(RuntimeOrigin::signed(ALICE), TASK, ALICE, roots.clone()),
            Error::<Test>::NotDefender
        );
        assert_noop!(
            Opml::pick_interval(RuntimeOrigin::signed(ALICE), TASK, 0),
            Error::<Test>::NotYourTurn
        );
        assert_noop!(
            Opml::pick_interval(RuntimeOrigin::signed(BOB), TASK, 0),
            Error::<Test>::GameNotFound
        );
        let proof: BoundedVec<u8, _> = d.proofs[0].clone().try_into().unwrap();
        assert_noop!(
            Opml::submit_one_step_proof(RuntimeOrigin::signed(ALICE), TASK, ALICE, proof),
            Error::<Test>::NotAtOneStep
        );
        let too_many: BoundedVec<_, _> = vec![[0u8; 32]; roots.len() + 1].try_into().unwrap();
        assert_noop!(
            Opml::post_roots(RuntimeOrigin::signed(SERVER), TASK, ALICE, too_many),
            Error::<Test>::MoveInvalid
        );
        assert_ok!(Opml::post_roots(
            RuntimeOrigin::signed(SERVER),
            TASK,
            ALICE,
            roots.clone()
        ));
        assert_noop!(
            Opml::post_roots(RuntimeOrigin::signed(SERVER), TASK, ALICE, roots.clone()),
            Error::<Test>::NotYourTurn
        );
        let count = roots.len() as u32 + 1;
        assert_noop!(
            Opml::pick_interval(RuntimeOrigin::signed(ALICE), TASK, count),
            Error::<Test>::MoveInvalid
        );
        check_books();
    });
}

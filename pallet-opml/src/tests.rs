//! Tests on the mock runtime with the real digits fixture (see `fixture.rs`).

use crate::fixture::{digits, Submission, View};
use crate::game::Arg;
use crate::mock::*;
use crate::{
    Claims, Code, Error, Event, Games, Models, NextTaskId, TaskStatus, Tasks, TotalBurned,
};
use frame_support::{
    assert_noop, assert_ok,
    traits::fungible::{Inspect, InspectHold},
    BoundedVec,
};
use opml_fraud_proof::core::Phase;

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
    Opml::submit_result(
        RuntimeOrigin::signed(server),
        TASK,
        s.output.clone().try_into().unwrap(),
        s.final_state.fuel,
        s.final_state.memory_root,
        Arg(s.proof.clone()),
    )
}

/// Registered model, requested task, `s` submitted by SERVER.
fn claimed(s: &Submission) {
    register();
    request();
    assert_ok!(submit(SERVER, s));
}

fn game_of(challenger: AccountId) -> opml_fraud_proof::core::Game {
    Games::<Test>::get(TASK, challenger).expect("game").game
}

/// Plays bisection moves (one block per move) until a one-step proof is due.
fn bisect(challenger: AccountId, defender: View, chall: View) {
    let d = digits();
    loop {
        let g = game_of(challenger);
        match g.phase {
            Phase::AwaitingDissection => {
                let roots = d.dissection_roots(defender, &g);
                assert_ok!(Opml::post_roots(
                    RuntimeOrigin::signed(SERVER),
                    TASK,
                    challenger,
                    roots.try_into().unwrap()
                ));
            }
            Phase::AwaitingPick { .. } => {
                let index = d.pick(chall, &g);
                assert_ok!(Opml::pick_interval(
                    RuntimeOrigin::signed(challenger),
                    TASK,
                    index
                ));
            }
            Phase::AwaitingOneStep => return,
            Phase::Ended(_) => panic!("game ended during bisection"),
        }
        next_block();
    }
}

fn prove(who: AccountId, challenger: AccountId) {
    let proof = digits().proof(&game_of(challenger));
    assert_ok!(Opml::submit_one_step_proof(
        RuntimeOrigin::signed(who),
        TASK,
        challenger,
        proof.try_into().unwrap()
    ));
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
fn submit_result_works() {
    new_test_ext().execute_with(|| {
        let d = digits();
        claimed(&d.honest);
        let rec = Claims::<Test>::get(TASK).unwrap();
        assert_eq!(
            rec.claim.initial_root,
            d.states[0].hash(),
            "initial root derived on-chain"
        );
        assert_eq!(rec.claim.final_root, d.honest.final_state.hash());
        assert_eq!(rec.output.to_vec(), d.honest.output);
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
        // The cheat's output with the honest final root: not what it holds.
        let mixed = Submission {
            output: d.cheat.output.clone(),
            ..d.honest.clone()
        };
        assert_noop!(submit(SERVER, &mixed), Error::<Test>::OutputNotProven);
        assert_noop!(
            Opml::submit_result(
                RuntimeOrigin::signed(SERVER),
                7,
                d.honest.output.clone().try_into().unwrap(),
                0,
                [0; 32],
                Arg(d.honest.proof.clone())
            ),
            Error::<Test>::TaskNotFound
        );
        assert_ok!(submit(SERVER, &d.honest));
        assert_noop!(submit(ALICE, &d.honest), Error::<Test>::TaskNotOpen);
    });
}

#[test]
fn finalize_works() {
    new_test_ext().execute_with(|| {
        claimed(&digits().honest);
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
        claimed(&digits().honest);
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
        claimed(&digits().honest);
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

/// A full game against a liar: the liar loses its bond to the challenger.
fn liar_loses(lie: View) {
    new_test_ext().execute_with(|| {
        let d = digits();
        claimed(&d.cheat);
        let alice0 = free(ALICE);
        assert_ok!(Opml::challenge(RuntimeOrigin::signed(ALICE), TASK));
        next_block();
        bisect(ALICE, lie, View::Honest);
        let g = game_of(ALICE);
        assert_eq!(g.hi, g.lo + 1);
        prove(ALICE, ALICE);
        let burned = BurnShare::get().mul_floor(SERVER_BOND);
        assert_eq!(free(ALICE), alice0 + SERVER_BOND - burned);
        assert_eq!(hold_of(crate::HoldReason::ServerBond, SERVER), 0);
        assert_eq!(TotalBurned::<Test>::get(), burned);
        assert_eq!(Tasks::<Test>::get(TASK).unwrap().status, TaskStatus::Open);
        assert!(Claims::<Test>::get(TASK).is_none());
        let evs = last_events(3);
        assert_eq!(
            evs,
            vec![
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
                Event::OneStepVerified {
                    task: TASK,
                    challenger: ALICE,
                    step: g.lo,
                    winner: ALICE
                },
            ]
        );
        check_books();
        // The task is open again: an honest server completes it.
        assert_ok!(submit(BOB, &d.honest));
        run_to_block(System::block_number() + CHALLENGE_PERIOD + 1);
        assert_ok!(Opml::finalize(RuntimeOrigin::signed(CAROL), TASK));
        check_books();
    });
}

#[test]
fn cheating_server_loses_bond_to_challenger() {
    liar_loses(View::LieFrom(digits().steps()));
}

#[test]
fn server_lying_in_stage_one_loses() {
    // Step 2 is a node boundary (pool1 ends there).
    liar_loses(View::LieFrom(2));
}

#[test]
fn server_lying_in_stage_two_loses() {
    // Step 3 is inside conv2 (steps 2..4): only a stage-2 dissection sees it.
    let d = digits();
    assert!(!d.model.node_ends.contains(&3) && d.model.node_ends.contains(&4));
    liar_loses(View::LieFrom(3));
}

#[test]
fn honest_server_beats_false_challenge() {
    new_test_ext().execute_with(|| {
        let d = digits();
        claimed(&d.honest);
        let server0 = free(SERVER);
        assert_ok!(Opml::challenge(RuntimeOrigin::signed(ALICE), TASK));
        // The challenger believes the output is wrong.
        bisect(ALICE, View::Honest, View::LieFrom(d.steps()));
        prove(SERVER, ALICE);
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
        run_to_block(2 + CHALLENGE_PERIOD);
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
        claimed(&digits().cheat);
        assert_ok!(Opml::challenge(RuntimeOrigin::signed(ALICE), TASK));
        run_to_block(1 + MOVE_DEADLINE);
        assert_noop!(
            Opml::timeout(RuntimeOrigin::signed(CAROL), TASK, ALICE),
            Error::<Test>::DeadlineNotReached
        );
        next_block();
        let roots = digits().dissection_roots(View::Honest, &game_of(ALICE));
        assert_noop!(
            Opml::post_roots(
                RuntimeOrigin::signed(SERVER),
                TASK,
                ALICE,
                roots.try_into().unwrap()
            ),
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
        claimed(&d.honest);
        assert_ok!(Opml::challenge(RuntimeOrigin::signed(ALICE), TASK));
        let roots = d.dissection_roots(View::Honest, &game_of(ALICE));
        assert_ok!(Opml::post_roots(
            RuntimeOrigin::signed(SERVER),
            TASK,
            ALICE,
            roots.try_into().unwrap()
        ));
        run_to_block(2 + MOVE_DEADLINE);
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
        claimed(&d.cheat);
        let (bob0, carol0) = (free(BOB), free(CAROL));
        for who in [ALICE, BOB, CAROL] {
            assert_ok!(Opml::challenge(RuntimeOrigin::signed(who), TASK));
        }
        // BOB's game reaches its one-step proof first; ALICE's is mid-way.
        bisect(BOB, View::LieFrom(d.steps()), View::Honest);
        let roots = d.dissection_roots(View::LieFrom(d.steps()), &game_of(ALICE));
        assert_ok!(Opml::post_roots(
            RuntimeOrigin::signed(SERVER),
            TASK,
            ALICE,
            roots.try_into().unwrap()
        ));
        assert_eq!(Claims::<Test>::get(TASK).unwrap().open_games, 3);
        prove(CAROL, BOB);
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
        claimed(&d.honest);
        let server0 = free(SERVER);
        for who in [ALICE, BOB] {
            assert_ok!(Opml::challenge(RuntimeOrigin::signed(who), TASK));
        }
        bisect(ALICE, View::Honest, View::LieFrom(d.steps()));
        bisect(BOB, View::Honest, View::LieFrom(2));
        prove(SERVER, ALICE);
        prove(SERVER, BOB);
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
        claimed(&d.cheat);
        assert_ok!(Opml::challenge(RuntimeOrigin::signed(ALICE), TASK));
        bisect(ALICE, View::LieFrom(d.steps()), View::Honest);
        let g = game_of(ALICE);
        let o = || RuntimeOrigin::signed(ALICE);
        let garbage: BoundedVec<u8, _> = vec![7u8; 100].try_into().unwrap();
        assert_noop!(
            Opml::submit_one_step_proof(o(), TASK, ALICE, garbage),
            Error::<Test>::ProofMalformed
        );
        // A valid proof, of another step: its pre-state is not the agreed root.
        let other = (g.lo as usize + 1) % d.proofs.len();
        let wrong: BoundedVec<u8, _> = d.proofs[other].clone().try_into().unwrap();
        assert_noop!(
            Opml::submit_one_step_proof(o(), TASK, ALICE, wrong),
            Error::<Test>::ProofRejected
        );
        // A proof whose chunk was tampered with.
        let mut bytes = d.proof(&g);
        let n = bytes.len();
        bytes[n - 40] ^= 1;
        let tampered: BoundedVec<u8, _> = bytes.try_into().unwrap();
        assert!(Opml::submit_one_step_proof(o(), TASK, ALICE, tampered).is_err());
        assert_eq!(game_of(ALICE), g);
        prove(ALICE, ALICE);
        check_books();
    });
}

#[test]
fn cannot_move_out_of_turn() {
    new_test_ext().execute_with(|| {
        let d = digits();
        claimed(&d.honest);
        assert_ok!(Opml::challenge(RuntimeOrigin::signed(ALICE), TASK));
        let g = game_of(ALICE);
        let roots: BoundedVec<_, _> = d.dissection_roots(View::Honest, &g).try_into().unwrap();
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

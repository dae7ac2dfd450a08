//! Tests on the mock runtime with the real digits fixture (see `fixture.rs`).

use crate::fixture::{digits, Submission};
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
        d.model.clone(),
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
        proof.clone(),
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
                d.model.clone()
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
                model
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
                model
            ),
            Error::<Test>::CommitmentInvalid
        );
        let mut model = d.model.clone();
        model.memory_pages += 1;
        assert_noop!(
            Opml::register_model(
                RuntimeOrigin::signed(OWNER),
                d.code.clone().try_into().unwrap(),
                model
            ),
            Error::<Test>::CommitmentInvalid
        );
        // Outputs partly covering 10 chunks (> MAX_EDGE_CHUNKS): no output
        // proof could carry them, so no claim could ever be made.
        let mut model = d.model.clone();
        let regions: Vec<opml_fraud_proof::core::Region> = (0..5)
            .map(|i| opml_fraud_proof::core::Region {
                offset: 1024 * i + 507,
                len: 10,
            })
            .collect();
        model.outputs = regions.try_into().unwrap();
        assert_noop!(
            Opml::register_model(
                RuntimeOrigin::signed(OWNER),
                d.code.clone().try_into().unwrap(),
                model
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
                d.model.clone()
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
                d.model.clone()
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
                honest.2.clone()
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
        let rec = Claims::<Test>::get(TASK).unwrap();
        assert_ok!(Opml::finalize(RuntimeOrigin::signed(CAROL), TASK));
        assert_eq!(free(SERVER), server0 + FEE + SERVER_BOND);
        assert_eq!(free(REQUESTER), req0);
        assert_eq!(hold_of(crate::HoldReason::TaskFee, REQUESTER), 0);
        // The finished task leaves no storage behind; the result is in the
        // event.
        assert!(Tasks::<Test>::get(TASK).is_none());
        assert!(Claims::<Test>::get(TASK).is_none());
        assert_eq!(Games::<Test>::iter_prefix(TASK).count(), 0);
        System::assert_last_event(
            Event::TaskFinalized {
                task: TASK,
                server: SERVER,
                fee: FEE,
                output_hash: rec.claim.output_hash,
                output: rec.output,
            }
            .into(),
        );
        assert_noop!(
            Opml::finalize(RuntimeOrigin::signed(CAROL), TASK),
            Error::<Test>::TaskNotFound
        );
        check_books();
    });
}

#[test]
fn cannot_submit_or_challenge_if_task_finalized() {
    new_test_ext().execute_with(|| {
        claimed(Cheat::None);
        run_to_block(2 + CHALLENGE_PERIOD);
        assert_ok!(Opml::finalize(RuntimeOrigin::signed(CAROL), TASK));
        assert_noop!(
            submit(BOB, &digits().submission(Cheat::None)),
            Error::<Test>::TaskNotFound
        );
        assert_noop!(
            Opml::challenge(RuntimeOrigin::signed(ALICE), TASK),
            Error::<Test>::TaskNotFound
        );
        assert_noop!(
            Opml::cancel_task(RuntimeOrigin::signed(REQUESTER), TASK),
            Error::<Test>::TaskNotFound
        );
        check_books();
    });
}

#[test]
fn cannot_finalize_if_period_running_or_disputes_open() {
    new_test_ext().execute_with(|| {
        // The games stay open past their deadlines (no `on_initialize`
        // settling).
        MaxSettle::set(0);
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
        // The games stay open past their deadlines (no `on_initialize`
        // settling).
        MaxSettle::set(0);
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

mod games;
mod hooks;

#[test]
fn submit_result_proof_size_covers_commitment_works() {
    use frame_support::traits::StorageInfoTrait;
    use parity_scale_codec::MaxEncodedLen;
    let info = crate::Commitments::<Test>::storage_info();
    assert_eq!(
        u64::from(info[0].max_size.unwrap()),
        crate::weights::COMMITMENT
    );
    assert_eq!(
        crate::weights::COMMITMENT,
        20 + crate::game::ModelCommitment::max_encoded_len() as u64
    );
    let due = crate::DueGames::<Test>::storage_info();
    assert_eq!(u64::from(due[0].max_size.unwrap()), crate::weights::DUE);
    let settle = <() as crate::WeightInfo>::settle_due(4);
    let timeout = <() as crate::WeightInfo>::timeout();
    assert!(settle.all_gte(timeout.saturating_mul(4)));
    let w = <() as crate::WeightInfo>::submit_result(0);
    assert!(w.proof_size() >= crate::weights::COMMITMENT);
    assert!(w.proof_size() < 70 * 1024);
}

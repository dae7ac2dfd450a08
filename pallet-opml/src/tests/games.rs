//! Whole games on-chain, the moves computed by the fraud-proof agents.

use super::*;

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
        // Settled by the `timeout` call, not by `on_initialize`.
        MaxSettle::set(0);
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
        // Settled by the `timeout` call, not by `on_initialize`.
        MaxSettle::set(0);
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

#[test]
fn sybils_filling_every_slot_cannot_run_out_the_period() {
    new_test_ext().execute_with(|| {
        // Settled by the `timeout` call, not by `on_initialize`.
        MaxSettle::set(0);
        let d = digits();
        let mut server = claimed(Cheat::WrongOutput);
        // The cheater's sybils take every slot and stall until the period
        // is over.
        for who in [BOB, CAROL, OWNER, REQUESTER] {
            assert_ok!(Opml::challenge(RuntimeOrigin::signed(who), TASK));
        }
        assert_noop!(
            Opml::challenge(RuntimeOrigin::signed(ALICE), TASK),
            Error::<Test>::TooManyDisputes
        );
        let roots = d.dissection_roots(&game_of(BOB));
        assert_ok!(Opml::post_roots(
            RuntimeOrigin::signed(SERVER),
            TASK,
            BOB,
            roots
        ));
        let end = Claims::<Test>::get(TASK).unwrap().challenge_end;
        run_to_block(end + 1);
        // A sybil loses by timeout after the period: its slot opens for a
        // move deadline.
        assert_ok!(Opml::timeout(RuntimeOrigin::signed(ALICE), TASK, BOB));
        let now = System::block_number();
        assert_eq!(
            Claims::<Test>::get(TASK).unwrap().challenge_end,
            now + MOVE_DEADLINE
        );
        run_to_block(now + MOVE_DEADLINE);
        assert_ok!(Opml::challenge(RuntimeOrigin::signed(ALICE), TASK));
        play_honest(ALICE, &mut server);
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

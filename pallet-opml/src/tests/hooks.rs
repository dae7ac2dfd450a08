//! `on_initialize` settles games whose deadline passed, nobody calling
//! `timeout`.

use super::*;
use crate::DueGames;

#[test]
fn on_initialize_settles_silent_server_works() {
    new_test_ext().execute_with(|| {
        claimed(Cheat::None);
        let alice0 = free(ALICE);
        assert_ok!(Opml::challenge(RuntimeOrigin::signed(ALICE), TASK));
        let deadline = game_of(ALICE).deadline;
        assert_eq!(DueGames::<Test>::get(deadline + 1).len(), 1);
        run_to_block(deadline);
        assert!(Games::<Test>::contains_key(TASK, ALICE));
        // The server never moved and nobody calls `timeout`.
        next_block();
        assert!(!Games::<Test>::contains_key(TASK, ALICE));
        assert!(DueGames::<Test>::get(deadline + 1).is_empty());
        System::assert_has_event(
            Event::GameTimedOut {
                task: TASK,
                challenger: ALICE,
                winner: ALICE,
            }
            .into(),
        );
        let burned = BurnShare::get().mul_floor(SERVER_BOND);
        assert_eq!(free(ALICE), alice0 + SERVER_BOND - burned);
        assert_eq!(Tasks::<Test>::get(TASK).unwrap().status, TaskStatus::Open);
        assert!(Claims::<Test>::get(TASK).is_none());
        check_books();
    });
}

#[test]
fn on_initialize_settles_silent_challenger_works() {
    new_test_ext().execute_with(|| {
        let d = digits();
        claimed(Cheat::None);
        let server0 = free(SERVER);
        assert_ok!(Opml::challenge(RuntimeOrigin::signed(ALICE), TASK));
        next_block();
        let roots = d.dissection_roots(&game_of(ALICE));
        assert_ok!(Opml::post_roots(
            RuntimeOrigin::signed(SERVER),
            TASK,
            ALICE,
            roots
        ));
        // The challenger never picks.
        run_to_block(game_of(ALICE).deadline + 1);
        assert!(!Games::<Test>::contains_key(TASK, ALICE));
        System::assert_has_event(
            Event::GameTimedOut {
                task: TASK,
                challenger: ALICE,
                winner: SERVER,
            }
            .into(),
        );
        let burned = BurnShare::get().mul_floor(CHALLENGER_BOND);
        assert_eq!(free(SERVER), server0 + CHALLENGER_BOND - burned);
        assert_eq!(
            Tasks::<Test>::get(TASK).unwrap().status,
            TaskStatus::Claimed
        );
        assert_eq!(Claims::<Test>::get(TASK).unwrap().open_games, 0);
        check_books();
    });
}

#[test]
fn cannot_settle_on_initialize_if_game_moved_on() {
    new_test_ext().execute_with(|| {
        let d = digits();
        claimed(Cheat::None);
        assert_ok!(Opml::challenge(RuntimeOrigin::signed(ALICE), TASK));
        let first = game_of(ALICE).deadline;
        run_to_block(first);
        let roots = d.dissection_roots(&game_of(ALICE));
        assert_ok!(Opml::post_roots(
            RuntimeOrigin::signed(SERVER),
            TASK,
            ALICE,
            roots
        ));
        // The entry of the first deadline is stale: the game goes on.
        next_block();
        assert!(DueGames::<Test>::get(first + 1).is_empty());
        assert!(Games::<Test>::contains_key(TASK, ALICE));
        check_books();
        // The challenger's own deadline then passes.
        run_to_block(game_of(ALICE).deadline + 1);
        assert!(!Games::<Test>::contains_key(TASK, ALICE));
        check_books();
    });
}

#[test]
fn cannot_settle_on_initialize_beyond_max_per_block() {
    new_test_ext().execute_with(|| {
        let d = digits();
        MaxSettle::set(2);
        claimed(Cheat::None);
        for who in [ALICE, BOB, CAROL] {
            assert_ok!(Opml::challenge(RuntimeOrigin::signed(who), TASK));
        }
        next_block();
        for who in [ALICE, BOB, CAROL] {
            let roots = d.dissection_roots(&game_of(who));
            assert_ok!(Opml::post_roots(
                RuntimeOrigin::signed(SERVER),
                TASK,
                who,
                roots
            ));
        }
        let deadline = game_of(ALICE).deadline;
        assert_eq!(DueGames::<Test>::get(deadline + 1).len(), 2);
        // Every challenger stays silent: the hook settles two games, the
        // third is left to the `timeout` call.
        run_to_block(deadline + 1);
        assert!(!Games::<Test>::contains_key(TASK, ALICE));
        assert!(!Games::<Test>::contains_key(TASK, BOB));
        assert!(Games::<Test>::contains_key(TASK, CAROL));
        check_books();
        assert_ok!(Opml::timeout(RuntimeOrigin::signed(OWNER), TASK, CAROL));
        assert_eq!(Claims::<Test>::get(TASK).unwrap().open_games, 0);
        check_books();
    });
}

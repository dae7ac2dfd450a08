//! Benchmarks of every call (frame-benchmarking v2), on the real scenario
//! the runtime's [`BenchmarkHelper`] provides: a model, a task input, a wrong
//! result and the moves of the game that refutes it, ending in the one-step
//! proof of the step whose proof is the largest of the run.
//!
//! Run as tests: `cargo test -p pallet-opml --features runtime-benchmarks`.
//! `weights.rs` says how its figures were derived from these.

use super::*;
use crate::game::{Move, Party};
use crate::pallet::{BalanceOf, Code, Games, Tasks};
use alloc::vec::Vec;
use frame_benchmarking::v2::*;
use frame_support::traits::fungible::Mutate;
use frame_support::{pallet_prelude::Get, BoundedVec};
use frame_system::RawOrigin;
use sp_runtime::traits::{Bounded, Saturating};

pub(crate) fn funded<T: Config>(name: &'static str, i: u32) -> T::AccountId {
    let who: T::AccountId = account(name, i, 0);
    let _ = T::Currency::set_balance(&who, BalanceOf::<T>::max_value() / 1024u32.into());
    who
}

pub(crate) fn signed<T: Config>(who: &T::AccountId) -> RawOrigin<T::AccountId> {
    RawOrigin::Signed(who.clone())
}

/// The model registered (id 0) and the task requested (id 0).
pub(crate) fn task<T: Config>(s: &BenchScenario) -> Result<(), BenchmarkError> {
    let owner = funded::<T>("owner", 0);
    let code = s
        .code
        .clone()
        .try_into()
        .map_err(|_| BenchmarkError::Stop("code too large"))?;
    Pallet::<T>::register_model(signed::<T>(&owner).into(), code, s.commitment.clone())?;
    let requester = funded::<T>("requester", 0);
    let input = s
        .input
        .clone()
        .try_into()
        .map_err(|_| BenchmarkError::Stop("input too large"))?;
    Pallet::<T>::request_task(
        signed::<T>(&requester).into(),
        0,
        input,
        T::MinTaskFee::get(),
    )?;
    Ok(())
}

/// ... and the wrong result submitted by the returned server.
pub(crate) fn claimed<T: Config>(s: &BenchScenario) -> Result<T::AccountId, BenchmarkError> {
    task::<T>(s)?;
    let server = funded::<T>("server", 0);
    let output = s
        .output
        .clone()
        .try_into()
        .map_err(|_| BenchmarkError::Stop("output too large"))?;
    Pallet::<T>::submit_result(
        signed::<T>(&server).into(),
        0,
        output,
        s.final_fuel,
        s.final_memory_root,
        s.output_proof.clone(),
    )?;
    Ok(server)
}

/// ... challenged by `MaxOpenDisputes` challengers (the worst case of
/// settling); returns the server and the first challenger.
pub(crate) fn challenged<T: Config>(
    s: &BenchScenario,
) -> Result<(T::AccountId, T::AccountId), BenchmarkError> {
    let server = claimed::<T>(s)?;
    for i in (0..T::MaxOpenDisputes::get()).rev() {
        let c = funded::<T>("challenger", i);
        Pallet::<T>::challenge(signed::<T>(&c).into(), 0)?;
    }
    Ok((server, funded::<T>("challenger", 0)))
}

/// Plays the first `n` moves of the scenario's game of `challenger`.
pub(crate) fn moves<T: Config>(
    s: &BenchScenario,
    server: &T::AccountId,
    challenger: &T::AccountId,
    n: usize,
) -> Result<(), BenchmarkError> {
    for mv in s.moves.iter().take(n) {
        match mv {
            Move::Dissect(roots) => Pallet::<T>::post_roots(
                signed::<T>(server).into(),
                0,
                challenger.clone(),
                roots.clone(),
            )?,
            Move::Pick(i) => Pallet::<T>::pick_interval(signed::<T>(challenger).into(), 0, *i)?,
            Move::OneStep(_) => return Err(BenchmarkError::Stop("one-step proof before the end")),
        }
    }
    Ok(())
}

pub(crate) fn last_proof(s: &BenchScenario) -> Result<Vec<u8>, BenchmarkError> {
    match s.moves.last() {
        Some(Move::OneStep(p)) => Ok(p.to_vec()),
        _ => Err(BenchmarkError::Stop(
            "the scenario does not end in a one-step proof",
        )),
    }
}

#[benchmarks]
mod benchmarks {
    use super::*;

    #[benchmark]
    fn register_model() -> Result<(), BenchmarkError> {
        let s = T::BenchmarkHelper::scenario();
        let owner = funded::<T>("owner", 0);
        let c = s.code.len() as u32;
        let code: BoundedVec<u8, T::MaxCodeLen> = s
            .code
            .clone()
            .try_into()
            .map_err(|_| BenchmarkError::Stop("code too large"))?;
        #[extrinsic_call]
        _(signed::<T>(&owner), code, s.commitment.clone());
        assert_eq!(Code::<T>::get(0).map(|c| c.len() as u32), Some(c));
        Ok(())
    }

    #[benchmark]
    fn request_task() -> Result<(), BenchmarkError> {
        let s = T::BenchmarkHelper::scenario();
        let owner = funded::<T>("owner", 0);
        let code = s
            .code
            .clone()
            .try_into()
            .map_err(|_| BenchmarkError::Stop("code too large"))?;
        Pallet::<T>::register_model(signed::<T>(&owner).into(), code, s.commitment.clone())?;
        let requester = funded::<T>("requester", 0);
        let input: BoundedVec<u8, T::MaxInputLen> = s
            .input
            .clone()
            .try_into()
            .map_err(|_| BenchmarkError::Stop("input too large"))?;
        #[extrinsic_call]
        _(signed::<T>(&requester), 0, input, T::MinTaskFee::get());
        assert!(Tasks::<T>::contains_key(0));
        Ok(())
    }

    #[benchmark]
    fn submit_result() -> Result<(), BenchmarkError> {
        let s = T::BenchmarkHelper::scenario();
        task::<T>(&s)?;
        let server = funded::<T>("server", 0);
        let output: BoundedVec<u8, T::MaxOutputLen> = s
            .output
            .clone()
            .try_into()
            .map_err(|_| BenchmarkError::Stop("output too large"))?;
        #[extrinsic_call]
        _(
            signed::<T>(&server),
            0,
            output,
            s.final_fuel,
            s.final_memory_root,
            s.output_proof.clone(),
        );
        assert!(Claims::<T>::contains_key(0));
        Ok(())
    }

    #[benchmark]
    fn challenge() -> Result<(), BenchmarkError> {
        let s = T::BenchmarkHelper::scenario();
        claimed::<T>(&s)?;
        let challenger = funded::<T>("challenger", 0);
        #[extrinsic_call]
        _(signed::<T>(&challenger), 0);
        assert!(Games::<T>::contains_key(0, &challenger));
        Ok(())
    }

    #[benchmark]
    fn post_roots() -> Result<(), BenchmarkError> {
        let s = T::BenchmarkHelper::scenario();
        let (server, challenger) = challenged::<T>(&s)?;
        let Some(Move::Dissect(roots)) = s.moves.first().cloned() else {
            return Err(BenchmarkError::Stop(
                "the scenario does not start with a dissection",
            ));
        };
        #[extrinsic_call]
        _(signed::<T>(&server), 0, challenger.clone(), roots);
        assert!(Games::<T>::get(0, &challenger)
            .is_some_and(|g| g.game.to_move() == Some(Party::Challenger)));
        Ok(())
    }

    #[benchmark]
    fn pick_interval() -> Result<(), BenchmarkError> {
        let s = T::BenchmarkHelper::scenario();
        let (server, challenger) = challenged::<T>(&s)?;
        moves::<T>(&s, &server, &challenger, 1)?;
        let Some(Move::Pick(index)) = s.moves.get(1).cloned() else {
            return Err(BenchmarkError::Stop(
                "the scenario's second move is not a pick",
            ));
        };
        #[extrinsic_call]
        _(signed::<T>(&challenger), 0, index);
        assert!(Games::<T>::get(0, &challenger).is_some_and(|g| g.game.rounds == 1));
        Ok(())
    }

    #[benchmark]
    fn submit_one_step_proof() -> Result<(), BenchmarkError> {
        let s = T::BenchmarkHelper::scenario();
        let (server, challenger) = challenged::<T>(&s)?;
        moves::<T>(&s, &server, &challenger, s.moves.len() - 1)?;
        let proof: BoundedVec<u8, T::MaxProofLen> = last_proof(&s)?
            .try_into()
            .map_err(|_| BenchmarkError::Stop("proof too large"))?;
        #[extrinsic_call]
        _(signed::<T>(&challenger), 0, challenger.clone(), proof);
        // The claim is refuted and every game closed.
        assert!(!Claims::<T>::contains_key(0));
        assert_eq!(Games::<T>::iter_prefix(0).count(), 0);
        Ok(())
    }

    /// The same call at the largest proof `MaxProofLen` allows.
    #[benchmark]
    fn submit_one_step_proof_largest() -> Result<(), BenchmarkError> {
        let s = T::BenchmarkHelper::largest_proof_scenario();
        let (server, challenger) = challenged::<T>(&s)?;
        moves::<T>(&s, &server, &challenger, s.moves.len() - 1)?;
        let proof: BoundedVec<u8, T::MaxProofLen> = last_proof(&s)?
            .try_into()
            .map_err(|_| BenchmarkError::Stop("proof too large"))?;
        #[extrinsic_call]
        submit_one_step_proof(signed::<T>(&challenger), 0, challenger.clone(), proof);
        assert!(!Claims::<T>::contains_key(0));
        assert_eq!(Games::<T>::iter_prefix(0).count(), 0);
        Ok(())
    }

    #[benchmark]
    fn timeout() -> Result<(), BenchmarkError> {
        let s = T::BenchmarkHelper::scenario();
        let (_, challenger) = challenged::<T>(&s)?;
        let now = frame_system::Pallet::<T>::block_number();
        frame_system::Pallet::<T>::set_block_number(
            now.saturating_add(T::MoveDeadline::get()) + 1u32.into(),
        );
        let caller = funded::<T>("caller", 0);
        #[extrinsic_call]
        _(signed::<T>(&caller), 0, challenger);
        // The silent server lost: the claim is refuted and every game closed.
        assert!(!Claims::<T>::contains_key(0));
        assert_eq!(Games::<T>::iter_prefix(0).count(), 0);
        Ok(())
    }

    /// `on_initialize` with the `MaxOpenDisputes` games of one claim due
    /// (the first settles and closes the others, whose entries are then
    /// skipped). `settle_due(n)` charges every entry as a `timeout`.
    #[benchmark]
    fn settle_due() -> Result<(), BenchmarkError> {
        let s = T::BenchmarkHelper::scenario();
        challenged::<T>(&s)?;
        let now = frame_system::Pallet::<T>::block_number();
        let at = now.saturating_add(T::MoveDeadline::get()) + 1u32.into();
        frame_system::Pallet::<T>::set_block_number(at);
        assert!(!DueGames::<T>::get(at).is_empty());
        #[block]
        {
            Pallet::<T>::settle_due(at);
        }
        assert!(!Claims::<T>::contains_key(0));
        assert_eq!(Games::<T>::iter_prefix(0).count(), 0);
        assert!(DueGames::<T>::get(at).is_empty());
        Ok(())
    }

    #[benchmark]
    fn cancel_task() -> Result<(), BenchmarkError> {
        let s = T::BenchmarkHelper::scenario();
        task::<T>(&s)?;
        let requester = funded::<T>("requester", 0);
        #[extrinsic_call]
        _(signed::<T>(&requester), 0);
        assert!(!Tasks::<T>::contains_key(0));
        Ok(())
    }

    #[benchmark]
    fn finalize() -> Result<(), BenchmarkError> {
        let s = T::BenchmarkHelper::scenario();
        claimed::<T>(&s)?;
        let now = frame_system::Pallet::<T>::block_number();
        frame_system::Pallet::<T>::set_block_number(
            now.saturating_add(T::ChallengePeriod::get()) + 1u32.into(),
        );
        let caller = funded::<T>("caller", 0);
        #[extrinsic_call]
        _(signed::<T>(&caller), 0);
        assert!(!Tasks::<T>::contains_key(0));
        assert!(!Claims::<T>::contains_key(0));
        Ok(())
    }

    impl_benchmark_test_suite!(Pallet, crate::mock::new_test_ext(), crate::mock::Test);
}

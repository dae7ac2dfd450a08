//! The pallet's internals: time, holds, forfeits, settling a game, and the
//! bookkeeping check of `try_state`.

use crate::game::{CommitmentError, GameError, ModelCommitment, Party};
use crate::pallet::*;
use crate::types::*;
use crate::weights::WeightInfo;
use frame_support::{
    pallet_prelude::*,
    traits::{
        fungible::MutateHold,
        tokens::{Fortitude, Precision, Restriction},
    },
};
use frame_system::pallet_prelude::*;
use sp_runtime::traits::{One, Saturating, UniqueSaturatedFrom, UniqueSaturatedInto};

impl<T: Config> Pallet<T> {
    /// Block numbers are the core's time.
    pub(crate) fn time(b: BlockNumberFor<T>) -> u64 {
        b.unique_saturated_into()
    }

    pub(crate) fn now() -> u64 {
        Self::time(frame_system::Pallet::<T>::block_number())
    }

    /// A task with a standing claim.
    pub(crate) fn claimed(task: TaskId) -> Result<(TaskOf<T>, ClaimRecordOf<T>), DispatchError> {
        let t = Tasks::<T>::get(task).ok_or(Error::<T>::TaskNotFound)?;
        ensure!(t.status == TaskStatus::Claimed, Error::<T>::ClaimNotFound);
        let rec = Claims::<T>::get(task).ok_or(Error::<T>::ClaimNotFound)?;
        Ok((t, rec))
    }

    pub(crate) fn move_error(e: GameError) -> DispatchError {
        match e {
            GameError::DeadlinePassed { .. } => Error::<T>::DeadlinePassed,
            GameError::NotYourTurn | GameError::GameOver => Error::<T>::NotYourTurn,
            _ => Error::<T>::MoveInvalid,
        }
        .into()
    }

    pub(crate) fn hold(
        reason: HoldReason,
        who: &T::AccountId,
        amount: BalanceOf<T>,
    ) -> DispatchResult {
        T::Currency::hold(&reason.into(), who, amount)
            .map_err(|_| Error::<T>::InsufficientBalance.into())
    }

    /// Moves `amount` held from `loser` under `reason`: `BurnShare` of it
    /// burned, the rest to `winner`'s free balance.
    fn slash(
        reason: HoldReason,
        loser: &T::AccountId,
        winner: &T::AccountId,
        amount: BalanceOf<T>,
    ) -> DispatchResult {
        let reason: T::RuntimeHoldReason = reason.into();
        let burn = T::BurnShare::get().mul_floor(amount);
        let to_winner = amount.saturating_sub(burn);
        let burned =
            T::Currency::burn_held(&reason, loser, burn, Precision::Exact, Fortitude::Force)?;
        T::Currency::transfer_on_hold(
            &reason,
            loser,
            winner,
            to_winner,
            Precision::Exact,
            Restriction::Free,
            Fortitude::Force,
        )?;
        TotalBurned::<T>::mutate(|b| *b = b.saturating_add(burned));
        Self::deposit_event(Event::BondSlashed {
            loser: loser.clone(),
            winner: winner.clone(),
            to_winner,
            burned,
        });
        Ok(())
    }

    /// Ends the game of `challenger` on `task` with `winner`; returns the
    /// winner's account.
    ///
    /// Challenger wins: the claim is refuted. The server's bond goes to
    /// this challenger (minus the burn), every other game on the claim is
    /// closed with its bond returned (they were right too), and the task
    /// is open for another server. Defender wins: the challenger's bond
    /// goes to the server (minus the burn) and the claim stands.
    pub(crate) fn settle(
        task: TaskId,
        challenger: &T::AccountId,
        winner: Party,
    ) -> Result<T::AccountId, DispatchError> {
        let mut rec = Claims::<T>::get(task).ok_or(Error::<T>::ClaimNotFound)?;
        let g = Games::<T>::take(task, challenger).ok_or(Error::<T>::GameNotFound)?;
        match winner {
            Party::Defender => {
                Self::slash(HoldReason::ChallengerBond, challenger, &rec.server, g.bond)?;
                // A slot freed on a full claim stays open for at least one
                // move deadline, so sybil challengers who fill every slot
                // and lose late cannot run out the period on an honest one
                // (each such round burns their bonds' BurnShare).
                if rec.open_games >= T::MaxOpenDisputes::get() {
                    let now = frame_system::Pallet::<T>::block_number();
                    let until = now.saturating_add(T::MoveDeadline::get());
                    if until > rec.challenge_end {
                        rec.challenge_end = until;
                    }
                }
                rec.open_games = rec.open_games.saturating_sub(1);
                let server = rec.server.clone();
                Claims::<T>::insert(task, rec);
                Ok(server)
            }
            Party::Challenger => {
                T::Currency::release(
                    &HoldReason::ChallengerBond.into(),
                    challenger,
                    g.bond,
                    Precision::Exact,
                )?;
                Self::slash(HoldReason::ServerBond, &rec.server, challenger, rec.bond)?;
                // At most MaxOpenDisputes - 1 other games.
                for (other, og) in Games::<T>::drain_prefix(task) {
                    T::Currency::release(
                        &HoldReason::ChallengerBond.into(),
                        &other,
                        og.bond,
                        Precision::Exact,
                    )?;
                }
                Claims::<T>::remove(task);
                Tasks::<T>::mutate(task, |t| {
                    if let Some(t) = t {
                        t.status = TaskStatus::Open;
                    }
                });
                Self::deposit_event(Event::ClaimRefuted {
                    task,
                    server: rec.server,
                });
                Ok(challenger.clone())
            }
        }
    }

    /// `register_model`'s checks of the code and its commitment; returns
    /// the node ends bounded by `MaxNodes`.
    pub(crate) fn check_model(
        code: &[u8],
        commitment: &ModelCommitment,
    ) -> Result<BoundedVec<u64, T::MaxNodes>, DispatchError> {
        commitment.check_code(code).map_err(|e| match e {
            CommitmentError::CodeHashMismatch => Error::<T>::CodeMismatch,
            CommitmentError::Inadmissible => Error::<T>::CodeInadmissible,
            _ => Error::<T>::CommitmentInvalid,
        })?;
        let limits = opml_runtime::admission::admit(code)
            .map_err(|_| Error::<T>::CodeInadmissible)?
            .limits;
        ensure!(
            limits.step_fuel <= T::MaxStepFuel::get(),
            Error::<T>::StepFuelTooHigh
        );
        // The input proof must hold, or no task on the model could ever
        // be claimed.
        ensure!(
            commitment.input_len() <= u64::from(T::MaxInputLen::get())
                && commitment.output_len() <= u64::from(T::MaxOutputLen::get()),
            Error::<T>::CommitmentInvalid
        );
        let zeros = alloc::vec![0u8; commitment.input_len() as usize];
        opml_fraud_proof::core::initial_state(commitment, &zeros)
            .map_err(|_| Error::<T>::CommitmentInvalid)?;
        commitment
            .node_ends
            .to_vec()
            .try_into()
            .map_err(|_| Error::<T>::TooManyNodes.into())
    }

    /// Queues the game of `challenger` on `task`, whose move is due by
    /// block `deadline`, for `on_initialize` of the block after. A full block
    /// leaves it to the `timeout` call.
    pub(crate) fn schedule(task: TaskId, challenger: &T::AccountId, deadline: u64) {
        let at = BlockNumberFor::<T>::unique_saturated_from(deadline).saturating_add(One::one());
        let _ = DueGames::<T>::try_mutate(at, |due| due.try_push((task, challenger.clone())));
    }

    /// Ends the game of `challenger` on `task` against the party that let
    /// its deadline pass (the `timeout` call and `on_initialize`).
    pub(crate) fn do_timeout(task: TaskId, challenger: &T::AccountId) -> DispatchResult {
        let mut g = Games::<T>::get(task, challenger).ok_or(Error::<T>::GameNotFound)?;
        let outcome = g.game.timeout(Self::now()).map_err(|e| match e {
            GameError::DeadlineNotReached { .. } => Error::<T>::DeadlineNotReached,
            _ => Error::<T>::MoveInvalid,
        })?;
        let winner = Self::settle(task, challenger, outcome.winner)?;
        Self::deposit_event(Event::GameTimedOut {
            task,
            challenger: challenger.clone(),
            winner,
        });
        Ok(())
    }

    /// `on_initialize`: settles the games queued for block `n` whose
    /// deadline passed (skipping those that moved on or ended), each in its
    /// own storage layer so a failure changes nothing.
    pub(crate) fn settle_due(n: BlockNumberFor<T>) -> Weight {
        let due = DueGames::<T>::take(n);
        for (task, challenger) in due.iter() {
            let _ =
                frame_support::storage::with_storage_layer(|| Self::do_timeout(*task, challenger));
        }
        T::WeightInfo::settle_due(due.len() as u32)
    }

    /// Every hold is explained by a record, and every record by a hold.
    #[cfg(any(feature = "try-runtime", feature = "std", test))]
    pub fn do_try_state() -> Result<(), sp_runtime::TryRuntimeError> {
        use alloc::collections::BTreeMap;
        use frame_support::traits::fungible::InspectHold;
        use sp_runtime::traits::Zero;
        let mut expected: BTreeMap<(T::AccountId, u8), BalanceOf<T>> = BTreeMap::new();
        let mut add = |who: &T::AccountId, r: u8, a: BalanceOf<T>| {
            let e = expected.entry((who.clone(), r)).or_insert_with(Zero::zero);
            *e = e.saturating_add(a);
        };
        for (_, m) in Models::<T>::iter() {
            add(&m.owner, 0, m.deposit);
        }
        for (id, t) in Tasks::<T>::iter() {
            // Only tasks still open or claimed are stored.
            add(&t.requester, 1, t.fee);
            if t.status == TaskStatus::Claimed {
                let c = Claims::<T>::get(id).ok_or("claimed task without a claim")?;
                add(&c.server, 2, c.bond);
                let games = Games::<T>::iter_prefix(id).count() as u32;
                ensure!(games == c.open_games, "open_games out of step with Games");
            }
        }
        // A claim or a game outlives neither its task nor the claim.
        for (id, _) in Claims::<T>::iter() {
            let t = Tasks::<T>::get(id).ok_or("claim without a task")?;
            ensure!(t.status == TaskStatus::Claimed, "claim on an open task");
        }
        for (id, who, g) in Games::<T>::iter() {
            ensure!(Claims::<T>::contains_key(id), "game without a claim");
            add(&who, 3, g.bond);
        }
        let reasons = [
            HoldReason::ModelDeposit,
            HoldReason::TaskFee,
            HoldReason::ServerBond,
            HoldReason::ChallengerBond,
        ];
        for ((who, r), amount) in expected.iter() {
            let held = T::Currency::balance_on_hold(&reasons[*r as usize].into(), who);
            ensure!(
                held == *amount,
                "held balance differs from the pallet's records"
            );
        }
        Ok(())
    }
}

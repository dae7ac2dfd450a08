//! # pallet-opml
//!
//! Optimistic ML inference on a Substrate chain. A model (integer-only Wasm
//! lowered from ONNX, see `opml-lowering`) is registered with its
//! commitment; requesters post tasks (model + input) with a fee; a server
//! posts a bonded claim; during the challenge period anyone may post a bonded
//! challenge, which opens a bisection game (the rules are the no_std core of
//! `opml-fraud-proof`; the pallet only stores its state, feeds it the block
//! number as time and moves the money). A game ends by a one-step proof,
//! re-executed here with `opml_runtime`'s verifier in wasmi, or by a timeout.
//!
//! Money: every deposit, fee and bond is a `fungible` hold with its own
//! [`HoldReason`]. A game's loser forfeits its bond: [`Config::BurnShare`] of
//! it is burned (so a server cannot challenge itself for free to stall its
//! own task) and the rest goes to the winner. Nothing else is minted or
//! burned: total issuance changes only by the burns reported in
//! [`Event::BondSlashed`], which `try_state` and the tests check.
//!
//! See `README.md` for the lifecycle, the `Config` and how to choose the
//! parameters.
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod game;
mod internal;
pub mod types;
pub mod weights;

#[cfg(feature = "runtime-benchmarks")]
pub(crate) mod benchmarking;
#[cfg(test)]
extern crate self as pallet_opml;
#[cfg(test)]
mod fixture;
#[cfg(all(test, feature = "runtime-benchmarks"))]
mod measure;
#[cfg(test)]
mod mock;
#[cfg(test)]
mod tests;

pub use pallet::*;
pub use types::*;
pub use weights::WeightInfo;

#[frame_support::pallet]
pub mod pallet {
    use super::*;
    use crate::game::{
        Claim, ClaimError, CommitmentError, Game, GameError, ModelCommitment, OutputProof, Party,
    };
    use crate::types::Task;
    use frame_support::{
        pallet_prelude::*,
        traits::{
            fungible::{Inspect, InspectHold, Mutate, MutateHold},
            tokens::{Fortitude, Precision, Restriction},
        },
    };
    use frame_system::pallet_prelude::*;
    use opml_fraud_proof::core::{MAX_K, MAX_POINTS};
    use opml_runtime::{Hash, StateFields, Status, VerifyError};
    use sp_runtime::{
        traits::{Saturating, Zero},
        Perbill,
    };

    pub(crate) type BalanceOf<T> =
        <<T as Config>::Currency as Inspect<<T as frame_system::Config>::AccountId>>::Balance;
    pub(crate) type TaskOf<T> = Task<
        <T as frame_system::Config>::AccountId,
        BalanceOf<T>,
        BlockNumberFor<T>,
        <T as Config>::MaxInputLen,
    >;
    pub(crate) type ClaimRecordOf<T> = ClaimRecord<
        <T as frame_system::Config>::AccountId,
        BalanceOf<T>,
        BlockNumberFor<T>,
        <T as Config>::MaxOutputLen,
    >;
    pub(crate) type ModelInfoOf<T> =
        ModelInfo<<T as frame_system::Config>::AccountId, BalanceOf<T>>;

    #[pallet::pallet]
    pub struct Pallet<T>(_);

    /// Why the pallet holds funds.
    #[pallet::composite_enum]
    pub enum HoldReason {
        /// Storage deposit of a registered model's code.
        ModelDeposit,
        /// A task's fee, paid to the server when the task is finalized.
        TaskFee,
        /// A server's bond on its claim.
        ServerBond,
        /// A challenger's bond on its game.
        ChallengerBond,
    }

    #[pallet::config]
    pub trait Config: frame_system::Config {
        /// The overarching event type.
        #[allow(deprecated)]
        type RuntimeEvent: From<Event<Self>> + IsType<<Self as frame_system::Config>::RuntimeEvent>;
        /// The overarching hold reason.
        type RuntimeHoldReason: From<HoldReason>;
        /// The currency of fees, deposits and bonds.
        type Currency: Mutate<Self::AccountId>
            + MutateHold<Self::AccountId, Reason = Self::RuntimeHoldReason>
            + InspectHold<Self::AccountId>;
        /// Weights of the calls (see `weights.rs`).
        type WeightInfo: WeightInfo;
        /// The real model and game the benchmarks run.
        #[cfg(feature = "runtime-benchmarks")]
        type BenchmarkHelper: crate::BenchmarkHelper;

        /// Blocks after a claim during which challenges are accepted.
        #[pallet::constant]
        type ChallengePeriod: Get<BlockNumberFor<Self>>;
        /// Blocks each party has for each move of a game.
        #[pallet::constant]
        type MoveDeadline: Get<BlockNumberFor<Self>>;
        /// Deposit for registering a model, plus `ModelDepositPerByte` per
        /// byte of code.
        #[pallet::constant]
        type ModelDepositBase: Get<BalanceOf<Self>>;
        #[pallet::constant]
        type ModelDepositPerByte: Get<BalanceOf<Self>>;
        /// Smallest fee a task may offer.
        #[pallet::constant]
        type MinTaskFee: Get<BalanceOf<Self>>;
        /// Bond of a server on a claim.
        #[pallet::constant]
        type ServerBond: Get<BalanceOf<Self>>;
        /// Bond of a challenger on a game.
        #[pallet::constant]
        type ChallengerBond: Get<BalanceOf<Self>>;
        /// Part of a loser's bond that is burned; the rest goes to the winner.
        #[pallet::constant]
        type BurnShare: Get<Perbill>;
        /// Arity k of the bisection, `2..=16` (the defender posts up to k-1
        /// roots a move).
        #[pallet::constant]
        type Arity: Get<u32>;
        /// Largest model code in bytes.
        #[pallet::constant]
        type MaxCodeLen: Get<u32>;
        /// Largest task input in bytes.
        #[pallet::constant]
        type MaxInputLen: Get<u32>;
        /// Largest task output in bytes.
        #[pallet::constant]
        type MaxOutputLen: Get<u32>;
        /// Largest one-step proof in bytes.
        #[pallet::constant]
        type MaxProofLen: Get<u32>;
        /// Largest per-step fuel cap a model may declare: one-step proofs run
        /// one step on-chain, so this bounds their execution time.
        #[pallet::constant]
        type MaxStepFuel: Get<u64>;
        /// Most graph nodes of a model (bounds the node ends every move
        /// reads).
        #[pallet::constant]
        type MaxNodes: Get<u32>;
        /// Most games open at once against one claim.
        #[pallet::constant]
        type MaxOpenDisputes: Get<u32>;
        /// Most games `on_initialize` settles in one block (those whose move
        /// deadline passed in the block before). A game that does not fit
        /// its block is left to the `timeout` call.
        #[pallet::constant]
        type MaxSettlePerBlock: Get<u32>;
    }

    /// The next model index.
    #[pallet::storage]
    pub type NextModelId<T> = StorageValue<_, ModelId, ValueQuery>;

    /// Registered models.
    #[pallet::storage]
    pub type Models<T: Config> = StorageMap<_, Blake2_128Concat, ModelId, ModelInfoOf<T>>;

    /// The commitment of each registered model (read to derive initial
    /// roots, check outputs, and by every bisection move for the node ends).
    #[pallet::storage]
    pub type Commitments<T: Config> = StorageMap<_, Blake2_128Concat, ModelId, ModelCommitment>;

    /// The node ends of each registered model (a copy of the commitment's,
    /// bounded by `MaxNodes`, so bisection moves read only these).
    #[pallet::storage]
    pub type NodeEnds<T: Config> =
        StorageMap<_, Blake2_128Concat, ModelId, BoundedVec<u64, T::MaxNodes>>;

    /// The Wasm code of each registered model (read only by one-step proofs).
    #[pallet::storage]
    pub type Code<T: Config> =
        StorageMap<_, Blake2_128Concat, ModelId, BoundedVec<u8, T::MaxCodeLen>>;

    /// The next task index.
    #[pallet::storage]
    pub type NextTaskId<T> = StorageValue<_, TaskId, ValueQuery>;

    /// Tasks.
    #[pallet::storage]
    pub type Tasks<T: Config> = StorageMap<_, Blake2_128Concat, TaskId, TaskOf<T>>;

    /// The claim standing on each claimed task.
    #[pallet::storage]
    pub type Claims<T: Config> = StorageMap<_, Blake2_128Concat, TaskId, ClaimRecordOf<T>>;

    /// Open games: (task, challenger) -> game.
    #[pallet::storage]
    pub type Games<T: Config> = StorageDoubleMap<
        _,
        Blake2_128Concat,
        TaskId,
        Blake2_128Concat,
        T::AccountId,
        GameRecord<BalanceOf<T>>,
    >;

    /// Games whose move deadline passes at the end of the block before:
    /// block -> (task, challenger), taken and settled by `on_initialize` of
    /// that block (entries of games that moved on or ended are skipped).
    #[pallet::storage]
    pub type DueGames<T: Config> = StorageMap<
        _,
        Twox64Concat,
        BlockNumberFor<T>,
        BoundedVec<(TaskId, T::AccountId), T::MaxSettlePerBlock>,
        ValueQuery,
    >;

    /// Everything burned so far (total issuance fell by exactly this much
    /// because of the pallet).
    #[pallet::storage]
    pub type TotalBurned<T: Config> = StorageValue<_, BalanceOf<T>, ValueQuery>;

    #[pallet::event]
    #[pallet::generate_deposit(pub(crate) fn deposit_event)]
    pub enum Event<T: Config> {
        /// A model was registered.
        ModelRegistered {
            model: ModelId,
            owner: T::AccountId,
            model_hash: Hash,
            code_hash: Hash,
            deposit: BalanceOf<T>,
        },
        /// A task was requested.
        TaskRequested {
            task: TaskId,
            model: ModelId,
            requester: T::AccountId,
            fee: BalanceOf<T>,
        },
        /// A server posted a result on a task.
        ResultSubmitted {
            task: TaskId,
            server: T::AccountId,
            output_hash: Hash,
            final_root: Hash,
            challenge_end: BlockNumberFor<T>,
        },
        /// A challenger opened a game against a claim.
        Challenged {
            task: TaskId,
            challenger: T::AccountId,
        },
        /// The server posted `roots` dissection roots of the interval
        /// `lo..hi` it defends.
        RootsPosted {
            task: TaskId,
            challenger: T::AccountId,
            lo: u64,
            hi: u64,
            roots: u32,
        },
        /// The challenger chose sub-interval `index`; `lo..hi` is disputed now.
        IntervalPicked {
            task: TaskId,
            challenger: T::AccountId,
            index: u32,
            lo: u64,
            hi: u64,
        },
        /// A one-step proof of step `step` was verified on-chain.
        OneStepVerified {
            task: TaskId,
            challenger: T::AccountId,
            step: u64,
            winner: T::AccountId,
        },
        /// A game ended because a party let its deadline pass.
        GameTimedOut {
            task: TaskId,
            challenger: T::AccountId,
            winner: T::AccountId,
        },
        /// A loser's bond was forfeited: part to the winner, part burned.
        BondSlashed {
            loser: T::AccountId,
            winner: T::AccountId,
            to_winner: BalanceOf<T>,
            burned: BalanceOf<T>,
        },
        /// A claim was refuted: the task is open again and the other games on
        /// it closed with their bonds returned.
        ClaimRefuted { task: TaskId, server: T::AccountId },
        /// An unclaimed task was withdrawn and its fee released.
        TaskCancelled {
            task: TaskId,
            requester: T::AccountId,
            fee: BalanceOf<T>,
        },
        /// A task was finalized: fee paid to the server, bond returned, and
        /// the task and its claim removed from storage; `output` is the
        /// result.
        TaskFinalized {
            task: TaskId,
            server: T::AccountId,
            fee: BalanceOf<T>,
            output_hash: Hash,
            output: BoundedVec<u8, T::MaxOutputLen>,
        },
    }

    #[pallet::error]
    pub enum Error<T> {
        /// The code does not hash to the commitment's code hash.
        CodeMismatch,
        /// The code is not an admissible opml module.
        CodeInadmissible,
        /// The commitment is malformed or disagrees with the code's limits.
        CommitmentInvalid,
        /// The model's per-step fuel cap exceeds `MaxStepFuel`.
        StepFuelTooHigh,
        /// The model has more graph nodes than `MaxNodes`.
        TooManyNodes,
        /// The model index is not registered.
        ModelNotFound,
        /// All model or task indices are used.
        IdsExhausted,
        /// The offered fee is below `MinTaskFee`.
        FeeTooLow,
        /// The task index is unknown.
        TaskNotFound,
        /// Only the requester may cancel its task.
        NotRequester,
        /// The task already has a claim.
        TaskNotOpen,
        /// The input does not fit the model's input region.
        InputInvalid,
        /// The claim does not fit the task's model.
        ClaimInvalid,
        /// The output does not verify against the final memory root.
        OutputNotProven,
        /// The task has no standing claim.
        ClaimNotFound,
        /// The challenge period is over.
        ChallengePeriodOver,
        /// The challenge period is still running.
        ChallengePeriodRunning,
        /// Games are still open against the claim.
        DisputesOpen,
        /// `MaxOpenDisputes` games are open against the claim.
        TooManyDisputes,
        /// The server cannot challenge its own claim.
        SelfChallenge,
        /// This challenger already has a game on this claim.
        AlreadyChallenged,
        /// No such game.
        GameNotFound,
        /// Only the server of the claim may post roots.
        NotDefender,
        /// It is the other party's move, or another kind of move is due.
        NotYourTurn,
        /// The move is malformed (wrong number of roots, pick out of range).
        MoveInvalid,
        /// The move's deadline has passed.
        DeadlinePassed,
        /// No deadline has passed yet.
        DeadlineNotReached,
        /// The proof is larger than `MaxProofLen`, or does not decode.
        ProofMalformed,
        /// The game is not waiting for a one-step proof.
        NotAtOneStep,
        /// The proof does not prove the disputed step (rejected; nothing
        /// changes).
        ProofRejected,
        /// Not enough free balance for the hold.
        InsufficientBalance,
    }

    #[pallet::hooks]
    impl<T: Config> Hooks<BlockNumberFor<T>> for Pallet<T> {
        /// Settles the games whose deadline passed in the block before, at
        /// most `MaxSettlePerBlock`.
        fn on_initialize(n: BlockNumberFor<T>) -> Weight {
            Self::settle_due(n)
        }

        #[cfg(feature = "try-runtime")]
        fn try_state(_n: BlockNumberFor<T>) -> Result<(), sp_runtime::TryRuntimeError> {
            Self::do_try_state()
        }

        fn integrity_test() {
            assert!(T::Arity::get() >= 2, "Arity must be at least 2");
            assert!(T::Arity::get() <= MAX_K, "Arity above the core's MAX_K");
            assert!(
                !T::MoveDeadline::get().is_zero(),
                "MoveDeadline must be positive"
            );
            assert!(
                T::MaxOpenDisputes::get() >= 1,
                "MaxOpenDisputes must be positive"
            );
        }
    }

    #[pallet::call]
    impl<T: Config> Pallet<T> {
        /// Registers a model: its Wasm `code` and the core's commitment to it
        /// (initial memory root, input proof, node ends, I/O regions), checked
        /// against the code (hash, admission, limits). Holds
        /// `ModelDepositBase + ModelDepositPerByte * code.len()`.
        #[pallet::call_index(0)]
        #[pallet::weight(T::WeightInfo::register_model(code.len() as u32))]
        pub fn register_model(
            origin: OriginFor<T>,
            code: BoundedVec<u8, T::MaxCodeLen>,
            commitment: ModelCommitment,
        ) -> DispatchResult {
            let owner = ensure_signed(origin)?;
            let node_ends = Self::check_model(&code, &commitment)?;
            let id = NextModelId::<T>::get();
            let next = id.checked_add(1).ok_or(Error::<T>::IdsExhausted)?;
            let bytes: BalanceOf<T> = (code.len() as u32).into();
            let deposit = T::ModelDepositBase::get()
                .saturating_add(T::ModelDepositPerByte::get().saturating_mul(bytes));
            Self::hold(HoldReason::ModelDeposit, &owner, deposit)?;
            let info = ModelInfo {
                owner: owner.clone(),
                deposit,
                model_hash: commitment.hash(),
                code_hash: commitment.code_hash,
                steps: commitment.steps(),
                input_len: commitment.input_len(),
            };
            Models::<T>::insert(id, &info);
            Commitments::<T>::insert(id, commitment);
            NodeEnds::<T>::insert(id, node_ends);
            Code::<T>::insert(id, code);
            NextModelId::<T>::put(next);
            Self::deposit_event(Event::ModelRegistered {
                model: id,
                owner,
                model_hash: info.model_hash,
                code_hash: info.code_hash,
                deposit,
            });
            Ok(())
        }

        /// Requests `model` on `input` (the model's input regions' bytes,
        /// concatenated), holding `fee` until the task is finalized.
        #[pallet::call_index(1)]
        #[pallet::weight(T::WeightInfo::request_task(input.len() as u32))]
        pub fn request_task(
            origin: OriginFor<T>,
            model: ModelId,
            input: BoundedVec<u8, T::MaxInputLen>,
            fee: BalanceOf<T>,
        ) -> DispatchResult {
            let requester = ensure_signed(origin)?;
            let info = Models::<T>::get(model).ok_or(Error::<T>::ModelNotFound)?;
            ensure!(fee >= T::MinTaskFee::get(), Error::<T>::FeeTooLow);
            // Refuse inputs no claim could use (the commitment's input proof
            // was checked at registration).
            ensure!(
                input.len() as u64 == info.input_len,
                Error::<T>::InputInvalid
            );
            let id = NextTaskId::<T>::get();
            let next = id.checked_add(1).ok_or(Error::<T>::IdsExhausted)?;
            Self::hold(HoldReason::TaskFee, &requester, fee)?;
            let created = frame_system::Pallet::<T>::block_number();
            let status = TaskStatus::Open;
            let task = Task {
                requester: requester.clone(),
                model,
                input,
                fee,
                status,
                created,
            };
            Tasks::<T>::insert(id, task);
            NextTaskId::<T>::put(next);
            Self::deposit_event(Event::TaskRequested {
                task: id,
                model,
                requester,
                fee,
            });
            Ok(())
        }

        /// Posts a result on an open task, holding `ServerBond`: the output
        /// and the final state's fuel and memory root (the state is halted at
        /// step N by definition), with a proof of the output against that
        /// root. The initial state root is derived here from model and input.
        #[pallet::call_index(2)]
        #[pallet::weight(T::WeightInfo::submit_result(output.len() as u32))]
        pub fn submit_result(
            origin: OriginFor<T>,
            task: TaskId,
            output: BoundedVec<u8, T::MaxOutputLen>,
            final_fuel: u64,
            final_memory_root: Hash,
            output_proof: OutputProof,
        ) -> DispatchResult {
            let server = ensure_signed(origin)?;
            let mut t = Tasks::<T>::get(task).ok_or(Error::<T>::TaskNotFound)?;
            ensure!(t.status == TaskStatus::Open, Error::<T>::TaskNotOpen);
            let commitment = Commitments::<T>::get(t.model).ok_or(Error::<T>::ModelNotFound)?;
            let final_state = StateFields {
                status: Status::Halted,
                step: commitment.steps(),
                fuel: final_fuel,
                memory_pages: commitment.memory_pages,
                memory_root: final_memory_root,
            };
            let claim = Claim::new(
                task,
                &commitment,
                &t.input,
                &output,
                &final_state,
                &output_proof,
            )
            .map_err(|e| match e {
                ClaimError::Commitment(CommitmentError::OutputMismatch)
                | ClaimError::Commitment(CommitmentError::Merkle(_))
                | ClaimError::Commitment(CommitmentError::WrongLength { .. }) => {
                    Error::<T>::OutputNotProven
                }
                _ => Error::<T>::ClaimInvalid,
            })?;
            let bond = T::ServerBond::get();
            Self::hold(HoldReason::ServerBond, &server, bond)?;
            let challenge_end =
                frame_system::Pallet::<T>::block_number().saturating_add(T::ChallengePeriod::get());
            let record = ClaimRecord {
                server: server.clone(),
                claim,
                output,
                bond,
                challenge_end,
                open_games: 0,
            };
            Claims::<T>::insert(task, record);
            t.status = TaskStatus::Claimed;
            Tasks::<T>::insert(task, t);
            Self::deposit_event(Event::ResultSubmitted {
                task,
                server,
                output_hash: claim.output_hash,
                final_root: claim.final_root,
                challenge_end,
            });
            Ok(())
        }

        /// Challenges the claim on `task` within its challenge period,
        /// holding `ChallengerBond`. Each challenger plays its own game; the
        /// server owes the first move within `MoveDeadline`.
        #[pallet::call_index(3)]
        #[pallet::weight(T::WeightInfo::challenge())]
        pub fn challenge(origin: OriginFor<T>, task: TaskId) -> DispatchResult {
            let challenger = ensure_signed(origin)?;
            let (t, mut rec) = Self::claimed(task)?;
            let now = frame_system::Pallet::<T>::block_number();
            ensure!(now <= rec.challenge_end, Error::<T>::ChallengePeriodOver);
            ensure!(challenger != rec.server, Error::<T>::SelfChallenge);
            ensure!(
                !Games::<T>::contains_key(task, &challenger),
                Error::<T>::AlreadyChallenged
            );
            ensure!(
                rec.open_games < T::MaxOpenDisputes::get(),
                Error::<T>::TooManyDisputes
            );
            let node_ends = NodeEnds::<T>::get(t.model).ok_or(Error::<T>::ModelNotFound)?;
            let window = Self::time(T::MoveDeadline::get());
            let game = Game::new(
                &rec.claim,
                &node_ends,
                T::Arity::get(),
                window,
                Self::time(now),
            )
            .map_err(|_| Error::<T>::ClaimInvalid)?;
            let bond = T::ChallengerBond::get();
            Self::hold(HoldReason::ChallengerBond, &challenger, bond)?;
            rec.open_games = rec.open_games.saturating_add(1);
            Claims::<T>::insert(task, rec);
            Self::schedule(task, &challenger, game.deadline);
            Games::<T>::insert(task, &challenger, GameRecord { bond, game });
            Self::deposit_event(Event::Challenged { task, challenger });
            Ok(())
        }

        /// The server's move in the game of `challenger`: the state roots at
        /// the dissection points of the disputed interval (node boundaries
        /// while it spans several nodes, steps inside one).
        #[pallet::call_index(4)]
        #[pallet::weight(T::WeightInfo::post_roots(roots.len() as u32))]
        pub fn post_roots(
            origin: OriginFor<T>,
            task: TaskId,
            challenger: T::AccountId,
            roots: BoundedVec<Hash, ConstU32<MAX_POINTS>>,
        ) -> DispatchResult {
            let who = ensure_signed(origin)?;
            let (t, rec) = Self::claimed(task)?;
            ensure!(who == rec.server, Error::<T>::NotDefender);
            let mut g = Games::<T>::get(task, &challenger).ok_or(Error::<T>::GameNotFound)?;
            let node_ends = NodeEnds::<T>::get(t.model).ok_or(Error::<T>::ModelNotFound)?;
            g.game
                .dissect(Party::Defender, &node_ends, &roots, Self::now())
                .map_err(Self::move_error)?;
            let (lo, hi) = (g.game.lo, g.game.hi);
            Self::schedule(task, &challenger, g.game.deadline);
            Games::<T>::insert(task, &challenger, g);
            Self::deposit_event(Event::RootsPosted {
                task,
                challenger,
                lo,
                hi,
                roots: roots.len() as u32,
            });
            Ok(())
        }

        /// The challenger's move: the index of the first sub-interval it
        /// disputes (0 = from the agreed root to the first posted root).
        #[pallet::call_index(5)]
        #[pallet::weight(T::WeightInfo::pick_interval())]
        pub fn pick_interval(origin: OriginFor<T>, task: TaskId, index: u32) -> DispatchResult {
            let challenger = ensure_signed(origin)?;
            let mut g = Games::<T>::get(task, &challenger).ok_or(Error::<T>::GameNotFound)?;
            g.game
                .pick(Party::Challenger, index, Self::now())
                .map_err(Self::move_error)?;
            let (lo, hi) = (g.game.lo, g.game.hi);
            Self::schedule(task, &challenger, g.game.deadline);
            Games::<T>::insert(task, &challenger, g);
            Self::deposit_event(Event::IntervalPicked {
                task,
                challenger,
                index,
                lo,
                hi,
            });
            Ok(())
        }

        /// Settles the game of `challenger` with a one-step proof of the
        /// disputed step, re-executed here in wasmi. Anyone may submit it:
        /// the verdict depends only on the proof (post-state equal to the
        /// server's root: the server wins; any other: the challenger wins).
        /// A proof that does not verify is rejected and changes nothing.
        #[pallet::call_index(6)]
        #[pallet::weight(T::WeightInfo::submit_one_step_proof(T::MaxCodeLen::get(), proof.len() as u32))]
        pub fn submit_one_step_proof(
            origin: OriginFor<T>,
            task: TaskId,
            challenger: T::AccountId,
            proof: BoundedVec<u8, T::MaxProofLen>,
        ) -> DispatchResultWithPostInfo {
            let who = ensure_signed(origin)?;
            let (t, _) = Self::claimed(task)?;
            let mut g = Games::<T>::get(task, &challenger).ok_or(Error::<T>::GameNotFound)?;
            let code = Code::<T>::get(t.model).ok_or(Error::<T>::ModelNotFound)?;
            let party = if who == challenger {
                Party::Challenger
            } else {
                Party::Defender
            };
            let outcome =
                g.game
                    .one_step(party, &code, &proof, Self::now())
                    .map_err(|e| match e {
                        GameError::NotYourTurn | GameError::GameOver => Error::<T>::NotAtOneStep,
                        GameError::DeadlinePassed { .. } => Error::<T>::DeadlinePassed,
                        GameError::ProofRejected(VerifyError::Decode(_)) => {
                            Error::<T>::ProofMalformed
                        }
                        _ => Error::<T>::ProofRejected,
                    })?;
            let winner = Self::settle(task, &challenger, outcome.winner)?;
            Self::deposit_event(Event::OneStepVerified {
                task,
                challenger,
                step: g.game.lo,
                winner,
            });
            Ok(Some(T::WeightInfo::submit_one_step_proof(
                code.len() as u32,
                proof.len() as u32,
            ))
            .into())
        }

        /// Ends the game of `challenger` against the party that let its move
        /// deadline pass. Anyone may call it (`on_initialize` does it too, for
        /// up to `MaxSettlePerBlock` games a block).
        #[pallet::call_index(7)]
        #[pallet::weight(T::WeightInfo::timeout())]
        pub fn timeout(
            origin: OriginFor<T>,
            task: TaskId,
            challenger: T::AccountId,
        ) -> DispatchResult {
            ensure_signed(origin)?;
            Self::do_timeout(task, &challenger)
        }

        /// Withdraws a task no server has claimed (or whose claim was
        /// refuted): the fee is released to the requester.
        #[pallet::call_index(9)]
        #[pallet::weight(T::WeightInfo::cancel_task())]
        pub fn cancel_task(origin: OriginFor<T>, task: TaskId) -> DispatchResult {
            let who = ensure_signed(origin)?;
            let t = Tasks::<T>::get(task).ok_or(Error::<T>::TaskNotFound)?;
            ensure!(who == t.requester, Error::<T>::NotRequester);
            ensure!(t.status == TaskStatus::Open, Error::<T>::TaskNotOpen);
            T::Currency::release(&HoldReason::TaskFee.into(), &who, t.fee, Precision::Exact)?;
            Tasks::<T>::remove(task);
            Self::deposit_event(Event::TaskCancelled {
                task,
                requester: who,
                fee: t.fee,
            });
            Ok(())
        }

        /// After the challenge period, with no game open, pays the fee to the
        /// server and returns its bond. Anyone may call it. The task and its
        /// claim leave storage; the result is in the `TaskFinalized` event.
        #[pallet::call_index(8)]
        #[pallet::weight(T::WeightInfo::finalize())]
        pub fn finalize(origin: OriginFor<T>, task: TaskId) -> DispatchResult {
            ensure_signed(origin)?;
            let (t, rec) = Self::claimed(task)?;
            ensure!(
                frame_system::Pallet::<T>::block_number() > rec.challenge_end,
                Error::<T>::ChallengePeriodRunning
            );
            ensure!(rec.open_games == 0, Error::<T>::DisputesOpen);
            T::Currency::transfer_on_hold(
                &HoldReason::TaskFee.into(),
                &t.requester,
                &rec.server,
                t.fee,
                Precision::Exact,
                Restriction::Free,
                Fortitude::Force,
            )?;
            T::Currency::release(
                &HoldReason::ServerBond.into(),
                &rec.server,
                rec.bond,
                Precision::Exact,
            )?;
            // No game is open: nothing else refers to the task.
            Tasks::<T>::remove(task);
            Claims::<T>::remove(task);
            Self::deposit_event(Event::TaskFinalized {
                task,
                server: rec.server,
                fee: t.fee,
                output_hash: rec.claim.output_hash,
                output: rec.output,
            });
            Ok(())
        }
    }
}

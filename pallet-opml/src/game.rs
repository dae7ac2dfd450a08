//! The pallet's view of the dispute-game core (`opml-fraud-proof`, no_std).
//!
//! The rules (commitments, claims, the two-stage k-ary bisection, one-step
//! arbitration, timeouts) are the core's; this module only re-exports its
//! types (the call-argument ones, `ModelCommitment` and `OutputProof`, derive
//! `DecodeWithMemTracking` in the core).

pub use opml_fraud_proof::core::{
    claim::output_hash, Claim, ClaimError, CommitmentError, EndReason, Game, GameError,
    ModelCommitment, Move, Outcome, OutputProof, Party,
};

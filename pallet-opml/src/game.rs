//! The pallet's view of the dispute-game core (`opml-fraud-proof`, no_std).
//!
//! The rules (commitments, claims, the two-stage k-ary bisection, one-step
//! arbitration, timeouts) are the core's; this module only re-exports its
//! types and adapts two things FRAME needs of call arguments.

use frame_support::pallet_prelude::*;
pub use opml_fraud_proof::core::{
    claim::output_hash, Claim, ClaimError, CommitmentError, EndReason, Game, GameError,
    ModelCommitment, Move, Outcome, OutputProof, Party,
};
use parity_scale_codec::DecodeWithMemTracking;

/// A call argument of a core type.
///
/// FRAME requires `DecodeWithMemTracking` of call arguments; the core's
/// types derive `Decode` only. Their decoding allocates only through
/// `BoundedVec`s (which account for it), so the marker holds for them.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, TypeInfo)]
pub struct Arg<T>(pub T);

impl DecodeWithMemTracking for Arg<ModelCommitment> {}
impl DecodeWithMemTracking for Arg<OutputProof> {}

impl<T> From<T> for Arg<T> {
    fn from(t: T) -> Self {
        Arg(t)
    }
}

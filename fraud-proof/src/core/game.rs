//! The bisection game between a claim's defender and one challenger: a pure
//! state machine. Every move takes `now` (a block number) and is checked
//! against the deadline of the party that owes it; a refused move returns an
//! error and changes nothing.

use super::bisection::{dissection, Dissection};
use super::claim::Claim;
use super::{Hash, GAME_TAG, MAX_K, MAX_POINTS, MAX_PROOF_BYTES, MOVE_TAG};
use bounded_collections::{BoundedVec, ConstU32};
use opml_runtime::hash::tagged;
use opml_runtime::{verify_one_step_bytes, VerifyError};
use parity_scale_codec::{Decode, Encode, MaxEncodedLen};
use scale_info::TypeInfo;

/// The two sides of a game.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Encode, Decode, MaxEncodedLen, TypeInfo)]
pub enum Party {
    /// The server that made the claim.
    Defender,
    /// The party disputing it.
    Challenger,
}

impl Party {
    /// The other side.
    pub fn other(self) -> Self {
        match self {
            Self::Defender => Self::Challenger,
            Self::Challenger => Self::Defender,
        }
    }
}

/// How a game ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Encode, Decode, MaxEncodedLen, TypeInfo)]
pub enum EndReason {
    /// A valid one-step proof reached the disputed root (defender wins) or
    /// another root (challenger wins).
    OneStepProof,
    /// The party owing a move let its deadline pass.
    Timeout,
}

/// The result of a game.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Encode, Decode, MaxEncodedLen, TypeInfo)]
pub struct Outcome {
    pub winner: Party,
    pub reason: EndReason,
}

/// Points of a dissection, as stored.
pub type Points = BoundedVec<u64, ConstU32<MAX_POINTS>>;
/// Roots at those points, as stored.
pub type Roots = BoundedVec<Hash, ConstU32<MAX_POINTS>>;

/// Whose move it is and what it is.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, MaxEncodedLen, TypeInfo)]
pub enum Phase {
    /// The defender owes the roots at the dissection points of `(lo, hi)`.
    AwaitingDissection,
    /// The challenger owes the index of the first sub-interval it disputes.
    AwaitingPick { points: Points, roots: Roots },
    /// `hi = lo + 1`: the defender owes a one-step proof from `lo_root`.
    AwaitingOneStep,
    /// Over.
    Ended(Outcome),
}

/// A move, as submitted.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, MaxEncodedLen, TypeInfo)]
pub enum Move {
    /// Roots at the dissection points, ascending by step.
    Dissect(Roots),
    /// Index of the first disputed sub-interval (0 = `(lo, first point)`).
    Pick(u32),
    /// SCALE bytes of an `opml_runtime::OneStepProof` from `lo_root`.
    OneStep(BoundedVec<u8, ConstU32<MAX_PROOF_BYTES>>),
}

impl Move {
    /// Domain-separated hash of the encoding.
    pub fn hash(&self) -> Hash {
        tagged(MOVE_TAG, &[&self.encode()])
    }
}

/// Why a move (or a game) was refused.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum GameError {
    /// k outside `2..=MAX_K`.
    BadArity(u32),
    /// The claim's step count is not the model's, or N = 0.
    StepsMismatch,
    /// The game is over.
    GameOver,
    /// The move is not the one the phase awaits, or not from that party.
    NotYourTurn,
    /// The move came after its deadline.
    DeadlinePassed { deadline: u64, now: u64 },
    /// A timeout was claimed before the deadline passed.
    DeadlineNotReached { deadline: u64, now: u64 },
    /// A dissection with the wrong number of roots.
    WrongRootCount { expected: u32, got: u32 },
    /// A pick outside the sub-intervals.
    BadPick { index: u32, count: u32 },
    /// The one-step proof was rejected (bad bytes, wrong pre-state, ...).
    ProofRejected(VerifyError),
    /// The node ends given do not fit the game (the wrong model).
    BadNodeEnds,
}

/// One game: the defender claims `hi_root` at `hi` and both agree on
/// `lo_root` at `lo` (at the start: the derived initial root at 0 against
/// the claimed final root at N).
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, MaxEncodedLen, TypeInfo)]
pub struct Game {
    /// Arity of the bisection.
    pub k: u32,
    /// Blocks each party has for a move.
    pub window: u64,
    pub lo: u64,
    pub lo_root: Hash,
    pub hi: u64,
    pub hi_root: Hash,
    pub phase: Phase,
    /// Last block at which the move owed may be made.
    pub deadline: u64,
    /// Completed rounds (one dissection + one pick each).
    pub rounds: u32,
}

impl Game {
    /// Opens a game on `claim` at block `now`.
    pub fn new(
        claim: &Claim,
        node_ends: &[u64],
        k: u32,
        window: u64,
        now: u64,
    ) -> Result<Self, GameError> {
        if !(2..=MAX_K).contains(&k) {
            return Err(GameError::BadArity(k));
        }
        if claim.steps == 0 || node_ends.last() != Some(&claim.steps) {
            return Err(GameError::StepsMismatch);
        }
        let phase = if claim.steps == 1 {
            Phase::AwaitingOneStep
        } else {
            Phase::AwaitingDissection
        };
        Ok(Game {
            k,
            window,
            lo: 0,
            lo_root: claim.initial_root,
            hi: claim.steps,
            hi_root: claim.final_root,
            phase,
            deadline: now.saturating_add(window),
            rounds: 0,
        })
    }

    /// Domain-separated hash of the encoding.
    pub fn hash(&self) -> Hash {
        tagged(GAME_TAG, &[&self.encode()])
    }

    /// The outcome, once over.
    pub fn outcome(&self) -> Option<Outcome> {
        match self.phase {
            Phase::Ended(o) => Some(o),
            _ => None,
        }
    }

    /// The party owing the next move (`None` once over).
    pub fn to_move(&self) -> Option<Party> {
        match self.phase {
            Phase::AwaitingDissection | Phase::AwaitingOneStep => Some(Party::Defender),
            Phase::AwaitingPick { .. } => Some(Party::Challenger),
            Phase::Ended(_) => None,
        }
    }

    /// What the defender owes for the current interval.
    pub fn dissection(&self, node_ends: &[u64]) -> Result<Dissection, GameError> {
        if node_ends.last() < Some(&self.hi) {
            return Err(GameError::BadNodeEnds);
        }
        dissection(self.lo, self.hi, node_ends, self.k).ok_or(GameError::BadNodeEnds)
    }

    fn check_turn(&self, who: Party, now: u64) -> Result<(), GameError> {
        let owner = self.to_move().ok_or(GameError::GameOver)?;
        if owner != who {
            return Err(GameError::NotYourTurn);
        }
        if now > self.deadline {
            return Err(GameError::DeadlinePassed {
                deadline: self.deadline,
                now,
            });
        }
        Ok(())
    }

    /// The defender posts the roots at the dissection points.
    pub fn dissect(
        &mut self,
        who: Party,
        node_ends: &[u64],
        roots: &[Hash],
        now: u64,
    ) -> Result<(), GameError> {
        self.check_turn(who, now)?;
        if self.phase != Phase::AwaitingDissection {
            return Err(GameError::NotYourTurn);
        }
        let d = self.dissection(node_ends)?;
        let points = d.points();
        if points.len() != roots.len() {
            return Err(GameError::WrongRootCount {
                expected: points.len() as u32,
                got: roots.len() as u32,
            });
        }
        let points = Points::try_from(points.to_vec()).map_err(|_| GameError::BadNodeEnds)?;
        let roots = Roots::try_from(roots.to_vec()).map_err(|_| GameError::BadNodeEnds)?;
        self.phase = Phase::AwaitingPick { points, roots };
        self.deadline = now.saturating_add(self.window);
        Ok(())
    }

    /// The challenger names the first sub-interval it disputes: `index` 0 is
    /// `(lo, points[0])`, the last is `(points[last], hi)`.
    pub fn pick(&mut self, who: Party, index: u32, now: u64) -> Result<(), GameError> {
        self.check_turn(who, now)?;
        let Phase::AwaitingPick { points, roots } = &self.phase else {
            return Err(GameError::NotYourTurn);
        };
        let count = points.len() as u32 + 1;
        if index >= count {
            return Err(GameError::BadPick { index, count });
        }
        let i = index as usize;
        let (lo, lo_root) = match i {
            0 => (self.lo, self.lo_root),
            _ => (points[i - 1], roots[i - 1]),
        };
        let (hi, hi_root) = match points.get(i) {
            Some(&p) => (p, roots[i]),
            None => (self.hi, self.hi_root),
        };
        (self.lo, self.lo_root, self.hi, self.hi_root) = (lo, lo_root, hi, hi_root);
        self.rounds += 1;
        self.phase = if hi == lo + 1 {
            Phase::AwaitingOneStep
        } else {
            Phase::AwaitingDissection
        };
        self.deadline = now.saturating_add(self.window);
        Ok(())
    }

    /// A one-step proof from `lo_root` (SCALE bytes). The defender owes it,
    /// but the outcome depends only on the proof, so either party may post
    /// it. A valid proof ending at `hi_root` wins for the defender, at any
    /// other root for the challenger; an invalid one changes nothing.
    pub fn one_step(
        &mut self,
        who: Party,
        code: &[u8],
        proof: &[u8],
        now: u64,
    ) -> Result<Outcome, GameError> {
        let owner = self.to_move().ok_or(GameError::GameOver)?;
        if self.phase != Phase::AwaitingOneStep {
            return Err(GameError::NotYourTurn);
        }
        self.check_turn(owner, now)?;
        let _ = who;
        let post = verify_one_step_bytes(code, &self.lo_root, proof, MAX_PROOF_BYTES as usize)
            .map_err(GameError::ProofRejected)?;
        let winner = if post == self.hi_root {
            Party::Defender
        } else {
            Party::Challenger
        };
        let o = Outcome {
            winner,
            reason: EndReason::OneStepProof,
        };
        self.phase = Phase::Ended(o);
        Ok(o)
    }

    /// Ends the game against the party owing the move once its deadline
    /// passed (anyone may call it).
    pub fn timeout(&mut self, now: u64) -> Result<Outcome, GameError> {
        let owner = self.to_move().ok_or(GameError::GameOver)?;
        if now <= self.deadline {
            return Err(GameError::DeadlineNotReached {
                deadline: self.deadline,
                now,
            });
        }
        let o = Outcome {
            winner: owner.other(),
            reason: EndReason::Timeout,
        };
        self.phase = Phase::Ended(o);
        Ok(o)
    }

    /// Applies a submitted move. Returns the outcome if the game ended.
    pub fn apply(
        &mut self,
        who: Party,
        mv: &Move,
        node_ends: &[u64],
        code: &[u8],
        now: u64,
    ) -> Result<Option<Outcome>, GameError> {
        match mv {
            Move::Dissect(roots) => self.dissect(who, node_ends, roots, now).map(|_| None),
            Move::Pick(i) => self.pick(who, *i, now).map(|_| None),
            Move::OneStep(bytes) => self.one_step(who, code, bytes, now).map(Some),
        }
    }
}

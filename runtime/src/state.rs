//! The committed machine state and its root.
//!
//! Between steps the Wasm value and call stacks are empty, so the whole state
//! of a machine is its linear memory plus a few counters:
//!
//! ```text
//! state_root = H(STATE_TAG || status u8 || fault u8 || step u64le
//!                || fuel u64le || memory_pages u32le || memory_root)
//! ```
//!
//! `status` is 0 running, 1 halted, 2 faulted; `fault` is the [`Fault`] code
//! (0 unless faulted). `fuel` is cumulative over all steps so far.

use crate::hash::{tagged, Hash, STATE_TAG};
use parity_scale_codec::{Decode, Encode, MaxEncodedLen};

/// Why a machine stopped abnormally. Every fault is a deterministic,
/// committed, terminal transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode, MaxEncodedLen)]
#[cfg_attr(feature = "std", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "std", serde(rename_all = "snake_case"))]
pub enum Fault {
    /// `unreachable` executed.
    Unreachable,
    /// A load or store outside linear memory.
    MemoryOutOfBounds,
    /// `i32.div_s(MIN, -1)` and friends.
    IntegerOverflow,
    /// Integer division or remainder by zero.
    IntegerDivisionByZero,
    /// The Wasm call stack ran out.
    StackOverflow,
    /// The step used more than the module's per-step fuel cap.
    OutOfFuel,
    /// The step touched more distinct memory chunks than the module's cap,
    /// so its one-step proof would exceed the bound. Memory and fuel stay as
    /// they were before the step.
    TouchLimit,
    /// `step()` returned something other than 0 or 1.
    BadStepResult,
    /// Any other Wasm trap.
    OtherTrap,
}

impl Fault {
    /// Every fault, in code order.
    pub const ALL: [Fault; 9] = [
        Fault::Unreachable,
        Fault::MemoryOutOfBounds,
        Fault::IntegerOverflow,
        Fault::IntegerDivisionByZero,
        Fault::StackOverflow,
        Fault::OutOfFuel,
        Fault::TouchLimit,
        Fault::BadStepResult,
        Fault::OtherTrap,
    ];

    /// The fault with committed code `code` (inverse of [`Fault::code`]).
    pub fn from_code(code: u8) -> Option<Fault> {
        Self::ALL.into_iter().find(|f| f.code() == code)
    }

    /// The code committed in the state root (never 0).
    pub fn code(self) -> u8 {
        match self {
            Fault::Unreachable => 1,
            Fault::MemoryOutOfBounds => 2,
            Fault::IntegerOverflow => 3,
            Fault::IntegerDivisionByZero => 4,
            Fault::StackOverflow => 5,
            Fault::OutOfFuel => 6,
            Fault::TouchLimit => 7,
            Fault::BadStepResult => 8,
            Fault::OtherTrap => 9,
        }
    }
}

/// Where a machine is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode, MaxEncodedLen)]
#[cfg_attr(feature = "std", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "std", serde(rename_all = "snake_case"))]
pub enum Status {
    /// `step()` returned 1: there is more to do.
    Running,
    /// `step()` returned 0: the computation is complete.
    Halted,
    /// A fault ended the computation.
    Faulted(Fault),
}

impl Status {
    /// `(status byte, fault byte)` as committed.
    pub fn code(self) -> (u8, u8) {
        match self {
            Status::Running => (0, 0),
            Status::Halted => (1, 0),
            Status::Faulted(f) => (2, f.code()),
        }
    }

    /// The status with committed bytes `(status, fault)` (inverse of
    /// [`Status::code`]); `None` for pairs that name no status.
    pub fn from_code(status: u8, fault: u8) -> Option<Status> {
        match (status, fault) {
            (0, 0) => Some(Status::Running),
            (1, 0) => Some(Status::Halted),
            (2, f) => Fault::from_code(f).map(Status::Faulted),
            _ => None,
        }
    }

    /// Halted and faulted machines take no more steps.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Status::Running)
    }
}

/// Every committed field of a machine state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode, MaxEncodedLen)]
#[cfg_attr(feature = "std", derive(serde::Serialize, serde::Deserialize))]
pub struct StateFields {
    pub status: Status,
    /// Number of steps taken so far.
    pub step: u64,
    /// Fuel used by all steps so far.
    pub fuel: u64,
    /// Linear memory size in 64 KiB pages.
    pub memory_pages: u32,
    /// Root of the Merkle tree over memory chunks.
    #[cfg_attr(feature = "std", serde(with = "crate::hash::hex32"))]
    pub memory_root: Hash,
}

impl StateFields {
    /// The state root.
    pub fn hash(&self) -> Hash {
        let (s, f) = self.status.code();
        tagged(
            STATE_TAG,
            &[
                &[s, f],
                &self.step.to_le_bytes(),
                &self.fuel.to_le_bytes(),
                &self.memory_pages.to_le_bytes(),
                &self.memory_root,
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> StateFields {
        StateFields {
            status: Status::Running,
            step: 3,
            fuel: 1000,
            memory_pages: 1,
            memory_root: [9; 32],
        }
    }

    #[test]
    fn every_field_changes_the_root() {
        let b = base();
        let variants = [
            StateFields {
                status: Status::Halted,
                ..b
            },
            StateFields {
                status: Status::Faulted(Fault::OutOfFuel),
                ..b
            },
            StateFields {
                status: Status::Faulted(Fault::TouchLimit),
                ..b
            },
            StateFields { step: 4, ..b },
            StateFields { fuel: 1001, ..b },
            StateFields {
                memory_pages: 2,
                ..b
            },
            StateFields {
                memory_root: [8; 32],
                ..b
            },
        ];
        let mut roots = std::vec![b.hash()];
        for v in variants {
            let r = v.hash();
            assert!(!roots.contains(&r), "{v:?} collides");
            roots.push(r);
        }
    }

    #[test]
    fn scale_round_trip() {
        let b = StateFields {
            status: Status::Faulted(Fault::IntegerOverflow),
            ..base()
        };
        let bytes = b.encode();
        assert_eq!(StateFields::decode(&mut &bytes[..]).unwrap(), b);
    }
}

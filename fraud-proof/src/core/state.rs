//! A `StateFields` a chain can take as a call argument: the runtime's type
//! has no `TypeInfo`, this mirror has, and converts both ways.

use opml_runtime::{Hash, StateFields, Status};
use parity_scale_codec::{Decode, Encode, MaxEncodedLen};
use scale_info::TypeInfo;

/// The committed fields of a machine state, with status and fault as their
/// committed codes (see `opml_runtime::state`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Encode, Decode, MaxEncodedLen, TypeInfo)]
pub struct CommittedState {
    /// 0 running, 1 halted, 2 faulted.
    pub status: u8,
    /// The fault code (0 unless faulted).
    pub fault: u8,
    pub step: u64,
    pub fuel: u64,
    pub memory_pages: u32,
    pub memory_root: Hash,
}

impl From<StateFields> for CommittedState {
    fn from(s: StateFields) -> Self {
        let (status, fault) = s.status.code();
        CommittedState {
            status,
            fault,
            step: s.step,
            fuel: s.fuel,
            memory_pages: s.memory_pages,
            memory_root: s.memory_root,
        }
    }
}

impl CommittedState {
    /// The runtime's fields; `None` for codes that name no status.
    pub fn fields(&self) -> Option<StateFields> {
        let status = Status::from_code(self.status, self.fault)?;
        Some(StateFields {
            status,
            step: self.step,
            fuel: self.fuel,
            memory_pages: self.memory_pages,
            memory_root: self.memory_root,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opml_runtime::Fault;

    #[test]
    fn round_trips_every_status_and_refuses_unknown_codes() {
        let mut statuses = alloc::vec![Status::Running, Status::Halted];
        statuses.extend(Fault::ALL.iter().map(|f| Status::Faulted(*f)));
        for status in statuses {
            let s = StateFields {
                status,
                step: 9,
                fuel: 99,
                memory_pages: 2,
                memory_root: [3; 32],
            };
            assert_eq!(CommittedState::from(s).fields(), Some(s));
        }
        let bad = CommittedState {
            status: 2,
            fault: 0,
            step: 0,
            fuel: 0,
            memory_pages: 1,
            memory_root: [0; 32],
        };
        assert_eq!(bad.fields(), None);
        assert_eq!(CommittedState { status: 3, ..bad }.fields(), None);
        assert_eq!(
            CommittedState {
                status: 1,
                fault: 1,
                ..bad
            }
            .fields(),
            None
        );
    }
}

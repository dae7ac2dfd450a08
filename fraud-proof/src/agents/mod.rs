//! Off-chain parties (std): what an honest party computes, and the
//! strategies that play the game with it, honestly or not.

pub mod adversary;
pub mod agent;
pub mod honest;

pub use adversary::Cheat;
pub use agent::Agent;
pub use honest::{AgentError, Knowledge, Timings};

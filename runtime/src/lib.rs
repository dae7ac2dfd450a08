//! # opml-runtime
//!
//! The deterministic, metered, integer-only WebAssembly sandbox of opml.
//!
//! A module is admitted ([`admission`]), rewritten into two executable
//! variants ([`instrument`]) and run one `step()` call at a time by a
//! [`Sandbox`]. After every step the sandbox commits
//! `state_root = H(status, step, fuel, memory pages, memory_root)`
//! ([`state`]), where `memory_root` is a Merkle root over fixed-size chunks of
//! linear memory ([`merkle`]). Any step can be proven
//! ([`Sandbox::prove_next_step`]) and checked by [`verify_one_step`], which
//! builds without `std` so a chain can run it.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use opml_runtime::{Sandbox, Status};
//! let code = wat::parse_str(r#"(module
//!   (memory (export "memory") 1 1)
//!   (global (export "opml_step_fuel") i64 (i64.const 1000))
//!   (func (export "step") (result i32)
//!     (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
//!     (i32.lt_u (i32.load (i32.const 0)) (i32.const 3))))"#)?;
//! let mut sandbox = Sandbox::new(&code)?;
//! while sandbox.state().status == Status::Running {
//!     sandbox.step()?;
//! }
//! assert_eq!(sandbox.state().step, 3);
//! assert_eq!(&sandbox.memory()[..4], &3u32.to_le_bytes());
//! # Ok(()) }
//! ```
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod admission;
pub mod engine;
pub mod hash;
pub mod instrument;
pub mod limits;
pub mod merkle;
pub mod proof;
pub mod state;
pub mod verifier;
pub mod vmem;

#[cfg(feature = "std")]
pub mod checkpoint;
#[cfg(feature = "std")]
pub mod recorder;
#[cfg(feature = "std")]
pub mod sandbox;
#[cfg(feature = "std")]
pub mod trace;

pub use hash::Hash;
pub use proof::OneStepProof;
#[cfg(feature = "std")]
pub use sandbox::{Program, Sandbox, SandboxError};
pub use state::{Fault, StateFields, Status};
pub use verifier::{verify_one_step, verify_one_step_bytes, VerifyError};

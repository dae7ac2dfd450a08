//! # opml-fraud-proof
//!
//! The dispute game of opml. [`core`] is the pure, no_std state machine a
//! chain runs: model commitments, claims (initial root derived from the
//! input, output proven against the final root), and the k-ary two-stage
//! bisection ending in a one-step proof checked by
//! `opml_runtime::verify_one_step`. Feature `std` builds the core with std;
//! feature `agents` (the default; implies `std`) adds the agents that play it
//! over a lowered model (honest and adversarial), `play` and `build`.
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

#[cfg(feature = "agents")]
pub mod build;
pub mod core;

pub use crate::core::*;
#[cfg(feature = "agents")]
pub mod agents;
#[cfg(feature = "agents")]
pub mod play;

//! # opml-fraud-proof
//!
//! The dispute game of opml. [`core`] is the pure, no_std state machine a
//! chain runs: model commitments, claims (initial root derived from the
//! input, output proven against the final root), and the k-ary two-stage
//! bisection ending in a one-step proof checked by
//! `opml_runtime::verify_one_step`. With `std`, the agents that play it over
//! a lowered model (honest and adversarial) and [`play`](crate::play).
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

#[cfg(feature = "std")]
pub mod build;
pub mod core;

pub use crate::core::*;
#[cfg(feature = "std")]
pub mod agents;
#[cfg(feature = "std")]
pub mod play;

//! # opml-runtime
//!
//! The deterministic, metered, integer-only WebAssembly sandbox of opml.
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod hash;
pub mod limits;
pub mod state;
pub mod admission;
pub mod merkle;
#[cfg(feature = "std")]
pub mod checkpoint;
#[cfg(feature = "std")]
pub mod trace;

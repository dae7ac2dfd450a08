//! The `opml` command line: one file per verb, plus tensor file I/O.

pub mod args;
pub mod dispute;
pub mod error;
pub mod lower;
pub mod prove;
pub mod run;
pub mod tensors;

//! The `opml` command line: one file per verb, plus tensor file I/O.

pub mod args;
pub mod audit;
pub mod dispute;
pub mod download;
pub mod error;
pub mod lower;
pub mod prove;
pub mod run;
pub mod serve;
pub mod tensors;
pub mod trace;

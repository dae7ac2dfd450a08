//! # opml-http
//!
//! The `opml` command line (this crate's binary) and the HTTP service it
//! starts with `opml serve` ([`server`], storage in [`store`]).

pub mod cli;
pub mod server;
pub mod store;

//! # opml-http
//!
//! The `opml` command line (this crate's binary, [`cli`]) and the HTTP
//! service it starts with `opml serve` ([`server`]: `server::app::app`
//! builds the router; storage in [`store`]).
//!
//! ## Storage
//!
//! Records (models, tasks, the index of unfinished tasks) live in
//! [redb](https://docs.rs/redb), behind the [`store::Store`] trait so a
//! server database can replace it when one machine is not enough. redb was
//! chosen because it is pure Rust (no C toolchain, quick to build), ACID with
//! copy-on-write B-trees and a checksummed two-phase commit, so a `kill -9`
//! during a write leaves the last committed transaction intact, and it is
//! one file with no server process. SQLite (rusqlite) would be as safe but
//! brings C code and a query language the service does not need: every
//! lookup is by id. Artifacts and recorded runs are content-addressed
//! directories, written aside and renamed into place ([`store::Files`]).
//!
//! ## Crash recovery
//!
//! A task is stored (`queued`) before its id is returned, and its result is
//! stored only after its run directory is complete. On start, tasks still
//! `queued` or `running` are re-queued (their inputs are stored), and
//! half-written directories are deleted.
//!
//! ## Native tasks
//!
//! Native tasks give node-boundary roots but record no trace: their trace,
//! proof and state endpoints answer 409 (post the input with
//! `?engine=wasm`).

pub mod cli;
pub mod server;
pub mod store;

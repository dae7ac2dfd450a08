//! # opml-http
//!
//! The `opml` command line (this crate's binary) and, later, the HTTP
//! service. The command line offers, locally: `lower` (ONNX to an artifact
//! directory) and `run` (a task on the wasm or native engine).

pub mod cli;

//! Step traces: the state root after every step of a run.
//!
//! A trace file is a fixed 80-byte header followed by one fixed-size 48-byte
//! record per step taken. All integers are little-endian.
//!
//! | offset              | size | field                                             |
//! |---------------------|------|---------------------------------------------------|
//! | 0                   | 8    | magic `b"OPMLTRCE"`                               |
//! | 8                   | 4    | format version, u32 (= [`VERSION`] = 1)           |
//! | 12                  | 4    | `chunk_log2`, u32 (Merkle chunk size, log2 bytes) |
//! | 16                  | 32   | code hash ([`crate::hash::code_hash`])            |
//! | 48                  | 32   | initial state root (step 0, fuel 0)               |
//! | 80 + (k-1)*48       | 8    | record k: step, u64 (= k)                         |
//! | 80 + (k-1)*48 + 8   | 8    | record k: cumulative fuel, u64 (non-decreasing)   |
//! | 80 + (k-1)*48 + 16  | 32   | record k: state root after k steps                |
//!
//! Record k (k = 1..=N) is the state after k steps, so any step is found by
//! seeking, and a file cut anywhere (a partial download; HTTP Range resumes
//! it) is usable up to its last complete record: readers ignore a trailing
//! partial record and report it. The file carries no checksum: every root in
//! it is checked against the chain by the dispute game, never trusted.
//!
//! A JSON [`TraceManifest`] (`"format": "opml-trace"`) accompanies a trace and
//! names the final state and the checkpoint files ([`crate::checkpoint`]).

mod error;
mod format;
mod manifest;
mod reader;
mod writer;

#[cfg(test)]
mod tests;

pub use error::TraceError;
pub use format::{
    complete_records, record_offset, TraceHeader, TraceRecord, HEADER_LEN, MAGIC, MANIFEST_FORMAT,
    RECORD_LEN, VERSION,
};
pub use manifest::{CheckpointEntry, TraceManifest};
pub use reader::{Records, StreamingTraceReader, TraceReader};
pub use writer::TraceWriter;

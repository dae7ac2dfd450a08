//! [`TraceError`].

use super::MANIFEST_FORMAT;
use crate::limits::{MAX_CHUNK_LOG2, MIN_CHUNK_LOG2};
use std::fmt;
use std::io;

/// Everything that can go wrong with a trace or its manifest.
#[derive(Debug)]
pub enum TraceError {
    /// The file does not start with [`MAGIC`](super::MAGIC).
    BadMagic([u8; 8]),
    /// A format version this code does not know.
    UnsupportedVersion(u32),
    /// `chunk_log2` outside `MIN_CHUNK_LOG2..=MAX_CHUNK_LOG2`.
    BadChunkLog2(u32),
    /// The data ended at `offset` after `got` of the `needed` bytes.
    Truncated { offset: u64, needed: u64, got: u64 },
    /// A record's step is not the one after its predecessor (or, when read
    /// by position, not its position).
    StepOutOfOrder { expected: u64, got: u64 },
    /// The cumulative fuel went down at `step`.
    FuelDecreased { step: u64, previous: u64, got: u64 },
    /// Step `step` is not in a trace of `len` records.
    NoSuchStep { step: u64, len: u64 },
    /// A manifest whose `format` is not [`MANIFEST_FORMAT`].
    BadManifestFormat(String),
    /// A manifest inconsistent with itself or with its trace.
    InvalidManifest(String),
    /// Malformed manifest JSON.
    Json(serde_json::Error),
    /// An I/O error of the underlying reader or writer.
    Io(io::Error),
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic(m) => write!(f, "not an opml trace (magic {})", hex::encode(m)),
            Self::UnsupportedVersion(v) => write!(f, "unsupported trace format version {v}"),
            Self::BadChunkLog2(c) => write!(
                f,
                "chunk_log2 {c} outside {MIN_CHUNK_LOG2}..={MAX_CHUNK_LOG2}"
            ),
            Self::Truncated {
                offset,
                needed,
                got,
            } => write!(
                f,
                "trace truncated at byte {offset}: needed {needed} bytes, got {got}"
            ),
            Self::StepOutOfOrder { expected, got } => {
                write!(f, "expected step {expected}, got step {got}")
            }
            Self::FuelDecreased {
                step,
                previous,
                got,
            } => write!(f, "fuel decreased at step {step}: {previous} -> {got}"),
            Self::NoSuchStep { step, len } => {
                write!(f, "no step {step} in a trace of {len} records")
            }
            Self::BadManifestFormat(s) => {
                write!(f, "manifest format {s:?}, expected {MANIFEST_FORMAT:?}")
            }
            Self::InvalidManifest(s) => write!(f, "invalid manifest: {s}"),
            Self::Json(e) => write!(f, "manifest JSON: {e}"),
            Self::Io(e) => write!(f, "trace I/O: {e}"),
        }
    }
}

impl std::error::Error for TraceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Json(e) => Some(e),
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for TraceError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

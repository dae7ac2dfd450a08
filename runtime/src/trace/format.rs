//! The byte layout: constants, the header and the record, and the rule
//! linking each record to the one before it.

use super::TraceError;
use crate::hash::{hex32, Hash};
use crate::limits::{MAX_CHUNK_LOG2, MIN_CHUNK_LOG2};
use serde::{Deserialize, Serialize};

/// First 8 bytes of every trace file.
pub const MAGIC: [u8; 8] = *b"OPMLTRCE";
/// The format version this module reads and writes.
pub const VERSION: u32 = 1;
/// Bytes in the header.
pub const HEADER_LEN: usize = 80;
/// Bytes in one record.
pub const RECORD_LEN: usize = 48;
/// The `format` field of a [`TraceManifest`](super::TraceManifest).
pub const MANIFEST_FORMAT: &str = "opml-trace";

/// Byte offset of record `step` (`None` for step 0, which has no record).
pub fn record_offset(step: u64) -> Option<u64> {
    let k = step.checked_sub(1)?;
    k.checked_mul(RECORD_LEN as u64)?
        .checked_add(HEADER_LEN as u64)
}

/// Complete records in a trace file of `file_len` bytes.
pub fn complete_records(file_len: u64) -> u64 {
    file_len.saturating_sub(HEADER_LEN as u64) / RECORD_LEN as u64
}

/// The header of a trace file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceHeader {
    pub version: u32,
    pub chunk_log2: u32,
    #[serde(with = "hex32")]
    pub code_hash: Hash,
    /// State root at step 0 (fuel 0).
    #[serde(with = "hex32")]
    pub initial_root: Hash,
}

impl TraceHeader {
    /// A header of the current [`VERSION`].
    pub fn new(chunk_log2: u32, code_hash: Hash, initial_root: Hash) -> Self {
        Self {
            version: VERSION,
            chunk_log2,
            code_hash,
            initial_root,
        }
    }

    /// Checks the version and `chunk_log2`.
    pub fn validate(&self) -> Result<(), TraceError> {
        if self.version != VERSION {
            return Err(TraceError::UnsupportedVersion(self.version));
        }
        if !(MIN_CHUNK_LOG2..=MAX_CHUNK_LOG2).contains(&self.chunk_log2) {
            return Err(TraceError::BadChunkLog2(self.chunk_log2));
        }
        Ok(())
    }

    /// The 80 header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&self.chunk_log2.to_le_bytes());
        b[16..48].copy_from_slice(&self.code_hash);
        b[48..80].copy_from_slice(&self.initial_root);
        b
    }

    /// Parses and validates 80 header bytes.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Self, TraceError> {
        let magic: [u8; 8] = arr(&b[0..8]);
        if magic != MAGIC {
            return Err(TraceError::BadMagic(magic));
        }
        let h = Self {
            version: u32::from_le_bytes(arr(&b[8..12])),
            chunk_log2: u32::from_le_bytes(arr(&b[12..16])),
            code_hash: arr(&b[16..48]),
            initial_root: arr(&b[48..80]),
        };
        h.validate()?;
        Ok(h)
    }
}

/// The state after one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceRecord {
    /// Steps taken (1-based: record k has step k).
    pub step: u64,
    /// Cumulative fuel after this step.
    pub fuel: u64,
    #[serde(with = "hex32")]
    pub state_root: Hash,
}

impl TraceRecord {
    /// The 48 record bytes.
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut b = [0u8; RECORD_LEN];
        b[0..8].copy_from_slice(&self.step.to_le_bytes());
        b[8..16].copy_from_slice(&self.fuel.to_le_bytes());
        b[16..48].copy_from_slice(&self.state_root);
        b
    }

    /// Parses 48 record bytes (any bytes are a record; order is checked by
    /// the readers).
    pub fn decode(b: &[u8; RECORD_LEN]) -> Self {
        Self {
            step: u64::from_le_bytes(arr(&b[0..8])),
            fuel: u64::from_le_bytes(arr(&b[8..16])),
            state_root: arr(&b[16..48]),
        }
    }
}

pub(super) fn arr<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(s);
    a
}

/// Checks that `rec` may follow a record of `prev_step` steps and `prev_fuel`.
pub(super) fn check_next(
    prev_step: u64,
    prev_fuel: u64,
    rec: &TraceRecord,
) -> Result<(), TraceError> {
    if prev_step == u64::MAX || rec.step != prev_step + 1 {
        return Err(TraceError::StepOutOfOrder {
            expected: prev_step.saturating_add(1),
            got: rec.step,
        });
    }
    if rec.fuel < prev_fuel {
        return Err(TraceError::FuelDecreased {
            step: rec.step,
            previous: prev_fuel,
            got: rec.fuel,
        });
    }
    Ok(())
}

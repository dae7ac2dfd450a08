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

use crate::hash::{hex32, Hash};
use crate::limits::{MAX_CHUNK_LOG2, MIN_CHUNK_LOG2};
use crate::state::StateFields;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};

/// First 8 bytes of every trace file.
pub const MAGIC: [u8; 8] = *b"OPMLTRCE";
/// The format version this module reads and writes.
pub const VERSION: u32 = 1;
/// Bytes in the header.
pub const HEADER_LEN: usize = 80;
/// Bytes in one record.
pub const RECORD_LEN: usize = 48;
/// The `format` field of a [`TraceManifest`].
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

/// Everything that can go wrong with a trace or its manifest.
#[derive(Debug)]
pub enum TraceError {
    /// The file does not start with [`MAGIC`].
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

fn arr<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(s);
    a
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn read_header<R: Read + ?Sized>(r: &mut R) -> Result<TraceHeader, TraceError> {
    let mut b = [0u8; HEADER_LEN];
    let n = read_full(r, &mut b)?;
    if n >= 8 && b[..8] != MAGIC {
        return Err(TraceError::BadMagic(arr(&b[..8])));
    }
    if n < HEADER_LEN {
        return Err(TraceError::Truncated {
            offset: 0,
            needed: HEADER_LEN as u64,
            got: n as u64,
        });
    }
    TraceHeader::decode(&b)
}

/// Checks that `rec` may follow a record of `prev_step` steps and `prev_fuel`.
fn check_next(prev_step: u64, prev_fuel: u64, rec: &TraceRecord) -> Result<(), TraceError> {
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

/// Reads the record after `prev_step` (checking its step, and its fuel
/// against `prev_fuel` if known). `Ok(None)` at a clean end of input; a
/// partial record is `Truncated`.
fn read_record<R: Read + ?Sized>(
    r: &mut R,
    prev_step: u64,
    prev_fuel: Option<u64>,
) -> Result<Option<TraceRecord>, TraceError> {
    let mut b = [0u8; RECORD_LEN];
    let got = read_full(r, &mut b)?;
    if got == 0 {
        return Ok(None);
    }
    if got < RECORD_LEN {
        return Err(missing(prev_step, got));
    }
    let rec = TraceRecord::decode(&b);
    check_next(prev_step, prev_fuel.unwrap_or(0), &rec)?;
    Ok(Some(rec))
}

/// The record after `prev_step` ends after `got` bytes.
fn missing(prev_step: u64, got: usize) -> TraceError {
    TraceError::Truncated {
        offset: record_offset(prev_step.saturating_add(1)).unwrap_or(u64::MAX),
        needed: RECORD_LEN as u64,
        got: got as u64,
    }
}

/// Writes a trace as it is produced; buffers nothing beyond a `BufWriter`.
pub struct TraceWriter<W: Write> {
    out: BufWriter<W>,
    header: TraceHeader,
    last_step: u64,
    last_fuel: u64,
}

impl<W: Write> TraceWriter<W> {
    /// Writes the header. Fails with `InvalidInput` on an invalid header.
    pub fn new(w: W, header: &TraceHeader) -> io::Result<Self> {
        header
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let mut out = BufWriter::new(w);
        out.write_all(&header.encode())?;
        Ok(Self {
            out,
            header: *header,
            last_step: 0,
            last_fuel: 0,
        })
    }

    /// Appends the record of the next step: `step` must be one more than the
    /// previous (1 first) and `fuel` must not decrease. A rejected record
    /// changes nothing.
    pub fn push(&mut self, rec: &TraceRecord) -> Result<(), TraceError> {
        check_next(self.last_step, self.last_fuel, rec)?;
        self.out.write_all(&rec.encode())?;
        self.last_step = rec.step;
        self.last_fuel = rec.fuel;
        Ok(())
    }

    /// The header written.
    pub fn header(&self) -> &TraceHeader {
        &self.header
    }

    /// Records written so far (= the last step).
    pub fn steps(&self) -> u64 {
        self.last_step
    }

    /// Flushes everything and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        let mut w = self.out.into_inner().map_err(|e| e.into_error())?;
        w.flush()?;
        Ok(w)
    }
}

/// Random access to a trace in a seekable file or buffer.
///
/// Wrap an unbuffered file in a `BufReader` for fast sequential scans.
pub struct TraceReader<R> {
    inner: R,
    header: TraceHeader,
    len: u64,
    partial: bool,
}

impl<R: Read + Seek> TraceReader<R> {
    /// Reads and validates the header (at offset 0) and measures the file.
    pub fn open(mut r: R) -> Result<Self, TraceError> {
        r.seek(SeekFrom::Start(0))?;
        let header = read_header(&mut r)?;
        let mut me = Self {
            inner: r,
            header,
            len: 0,
            partial: false,
        };
        me.refresh()?;
        Ok(me)
    }

    /// Re-measures the file (e.g. while it is still being downloaded) and
    /// returns the new number of complete records.
    pub fn refresh(&mut self) -> Result<u64, TraceError> {
        let end = self.inner.seek(SeekFrom::End(0))?;
        let body = end.saturating_sub(HEADER_LEN as u64);
        self.len = body / RECORD_LEN as u64;
        self.partial = body % RECORD_LEN as u64 != 0;
        Ok(self.len)
    }

    /// The header.
    pub fn header(&self) -> &TraceHeader {
        &self.header
    }

    /// Number of complete records (= last step available).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// No complete record.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The file ends in an incomplete record (ignored by `len`).
    pub fn has_partial_tail(&self) -> bool {
        self.partial
    }

    /// The record of `step` (1..=len), checked to carry that step.
    pub fn record(&mut self, step: u64) -> Result<TraceRecord, TraceError> {
        let len = self.len;
        let offset = match record_offset(step) {
            Some(o) if step <= len => o,
            _ => return Err(TraceError::NoSuchStep { step, len }),
        };
        self.inner.seek(SeekFrom::Start(offset))?;
        read_record(&mut self.inner, step - 1, None)?.ok_or_else(|| missing(step - 1, 0))
    }

    /// The state root after `step` steps: the header's initial root for 0.
    pub fn root_at(&mut self, step: u64) -> Result<Hash, TraceError> {
        if step == 0 {
            return Ok(self.header.initial_root);
        }
        Ok(self.record(step)?.state_root)
    }

    /// The records of steps `from..=to` (inclusive), in order, each checked
    /// to carry its step and fuel not to decrease within the slice. Empty if
    /// `from > to`; otherwise both must be in `1..=len`. Reads sequentially
    /// after one seek.
    pub fn records(&mut self, from: u64, to: u64) -> Result<Records<'_, R>, TraceError> {
        let len = self.len;
        if from <= to {
            if let Some(step) = [from, to].into_iter().find(|&s| s == 0 || s > len) {
                return Err(TraceError::NoSuchStep { step, len });
            }
            self.inner
                .seek(SeekFrom::Start(record_offset(from).unwrap_or(0)))?;
        }
        let (prev_step, prev_fuel) = (from.saturating_sub(1), None);
        Ok(Records {
            inner: &mut self.inner,
            prev_step,
            prev_fuel,
            to,
        })
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// Iterator over a slice of a [`TraceReader`]; stops after the first error.
pub struct Records<'a, R> {
    inner: &'a mut R,
    prev_step: u64,
    prev_fuel: Option<u64>,
    to: u64,
}

impl<R: Read> Iterator for Records<'_, R> {
    type Item = Result<TraceRecord, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.prev_step >= self.to {
            return None;
        }
        let r = match read_record(self.inner, self.prev_step, self.prev_fuel) {
            Ok(Some(rec)) => {
                (self.prev_step, self.prev_fuel) = (rec.step, Some(rec.fuel));
                return Some(Ok(rec));
            }
            Ok(None) => missing(self.prev_step, 0),
            Err(e) => e,
        };
        self.to = 0;
        Some(Err(r))
    }
}

/// Reads a trace from a non-seekable stream, records in order, checking
/// step order and fuel monotonicity. Stops after the first error.
pub struct StreamingTraceReader<R: Read> {
    inner: BufReader<R>,
    header: TraceHeader,
    prev_step: u64,
    prev_fuel: u64,
    strict: bool,
    partial: bool,
    done: bool,
}

impl<R: Read> StreamingTraceReader<R> {
    /// Reads and validates the header. Lenient: a partial tail ends the
    /// iteration silently (see [`strict`](Self::strict)).
    pub fn new(r: R) -> Result<Self, TraceError> {
        let mut inner = BufReader::new(r);
        let header = read_header(&mut inner)?;
        Ok(Self {
            inner,
            header,
            prev_step: 0,
            prev_fuel: 0,
            strict: false,
            partial: false,
            done: false,
        })
    }

    /// With `strict`, a trailing partial record yields `Truncated`.
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// The header.
    pub fn header(&self) -> &TraceHeader {
        &self.header
    }

    /// Records read so far (= the last step read).
    pub fn records_read(&self) -> u64 {
        self.prev_step
    }

    /// The stream ended in an incomplete record.
    pub fn has_partial_tail(&self) -> bool {
        self.partial
    }

    fn read_next(&mut self) -> Result<Option<TraceRecord>, TraceError> {
        match read_record(&mut self.inner, self.prev_step, Some(self.prev_fuel)) {
            Ok(Some(rec)) => {
                (self.prev_step, self.prev_fuel) = (rec.step, rec.fuel);
                Ok(Some(rec))
            }
            Err(TraceError::Truncated { .. }) if !self.strict => {
                self.partial = true;
                Ok(None)
            }
            Err(e @ TraceError::Truncated { .. }) => {
                self.partial = true;
                Err(e)
            }
            other => other,
        }
    }
}

impl<R: Read> Iterator for StreamingTraceReader<R> {
    type Item = Result<TraceRecord, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.read_next();
        self.done = !matches!(r, Ok(Some(_)));
        r.transpose()
    }
}

/// A checkpoint named in a manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointEntry {
    pub step: u64,
    #[serde(with = "hex32")]
    pub state_root: Hash,
    /// File name, relative to the manifest.
    pub file: String,
}

/// The JSON description of a trace and its checkpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceManifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// Always [`VERSION`].
    pub version: u32,
    #[serde(with = "hex32")]
    pub code_hash: Hash,
    pub chunk_log2: u32,
    #[serde(with = "hex32")]
    pub initial_root: Hash,
    /// Steps taken (records in the trace).
    pub steps: u64,
    pub final_state: StateFields,
    #[serde(with = "hex32")]
    pub final_state_root: Hash,
    /// Trace file name, relative to the manifest.
    pub trace_file: String,
    /// Steps between checkpoints (0: none).
    pub checkpoint_interval: u64,
    /// In increasing step order.
    pub checkpoints: Vec<CheckpointEntry>,
}

impl TraceManifest {
    /// A manifest for a run that ended in `final_state`.
    pub fn new(
        header: &TraceHeader,
        final_state: StateFields,
        trace_file: impl Into<String>,
        checkpoint_interval: u64,
        checkpoints: Vec<CheckpointEntry>,
    ) -> Self {
        Self {
            format: MANIFEST_FORMAT.into(),
            version: VERSION,
            code_hash: header.code_hash,
            chunk_log2: header.chunk_log2,
            initial_root: header.initial_root,
            steps: final_state.step,
            final_state,
            final_state_root: final_state.hash(),
            trace_file: trace_file.into(),
            checkpoint_interval,
            checkpoints,
        }
    }

    /// The header of the trace this manifest describes.
    pub fn header(&self) -> TraceHeader {
        TraceHeader::new(self.chunk_log2, self.code_hash, self.initial_root)
    }

    /// Checks format, version and internal consistency.
    pub fn validate(&self) -> Result<(), TraceError> {
        if self.format != MANIFEST_FORMAT {
            return Err(TraceError::BadManifestFormat(self.format.clone()));
        }
        TraceHeader {
            version: self.version,
            ..self.header()
        }
        .validate()?;
        let bad = |s: String| Err(TraceError::InvalidManifest(s));
        if self.final_state.step != self.steps {
            return bad(format!(
                "final state at step {}, steps {}",
                self.final_state.step, self.steps
            ));
        }
        if self.final_state.hash() != self.final_state_root {
            return bad("final_state_root is not the root of final_state".into());
        }
        if self.steps == 0 && self.final_state_root != self.initial_root {
            return bad("zero steps but final root differs from initial root".into());
        }
        let mut prev = None;
        for c in &self.checkpoints {
            if prev.is_some_and(|p| c.step <= p) || c.step > self.steps {
                return bad(format!(
                    "checkpoint at step {} out of order or range",
                    c.step
                ));
            }
            let want = match c.step {
                0 => Some(self.initial_root),
                s if s == self.steps => Some(self.final_state_root),
                _ => None,
            };
            if want.is_some_and(|w| w != c.state_root) {
                return bad(format!("checkpoint at step {} has the wrong root", c.step));
            }
            prev = Some(c.step);
        }
        Ok(())
    }

    /// Pretty-printed JSON.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("a manifest always serializes")
    }

    /// Parses and [`validate`](Self::validate)s a manifest; the format and
    /// version are checked before the other fields are parsed.
    pub fn from_json(s: &str) -> Result<Self, TraceError> {
        let v: serde_json::Value = serde_json::from_str(s).map_err(TraceError::Json)?;
        match v.get("format").and_then(|f| f.as_str()) {
            Some(MANIFEST_FORMAT) => {}
            other => return Err(TraceError::BadManifestFormat(other.unwrap_or("").into())),
        }
        match v.get("version").and_then(|f| f.as_u64()) {
            Some(1) => {}
            other => {
                let v = other.map_or(0, |v| u32::try_from(v).unwrap_or(u32::MAX));
                return Err(TraceError::UnsupportedVersion(v));
            }
        }
        let m: Self = serde_json::from_value(v).map_err(TraceError::Json)?;
        m.validate()?;
        Ok(m)
    }

    /// Checks that `trace` is complete and agrees with this manifest.
    pub fn check_trace<R: Read + Seek>(
        &self,
        trace: &mut TraceReader<R>,
    ) -> Result<(), TraceError> {
        let bad = |s: &str| Err(TraceError::InvalidManifest(s.into()));
        if *trace.header() != self.header() {
            return bad("trace header differs from manifest");
        }
        if trace.len() != self.steps || trace.has_partial_tail() {
            return bad("trace length differs from manifest steps");
        }
        if trace.root_at(self.steps)? != self.final_state_root {
            return bad("trace final root differs from manifest");
        }
        if self.steps > 0 && trace.record(self.steps)?.fuel != self.final_state.fuel {
            return bad("trace final fuel differs from manifest");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Status;
    use proptest::prelude::*;
    use std::io::Cursor;

    fn header() -> TraceHeader {
        TraceHeader::new(10, [0xc0; 32], [0xa0; 32])
    }

    fn rec(step: u64) -> TraceRecord {
        let state_root = crate::hash::tagged(b"test.trace\0\0\0\0\0\0", &[&step.to_le_bytes()]);
        let fuel = step * 7 / 2;
        TraceRecord {
            step,
            fuel,
            state_root,
        }
    }

    fn trace(n: u64) -> Vec<u8> {
        let mut w = TraceWriter::new(Vec::new(), &header()).unwrap();
        (1..=n).for_each(|k| w.push(&rec(k)).unwrap());
        assert_eq!(w.steps(), n);
        w.finish().unwrap()
    }

    fn open(b: &[u8]) -> Result<TraceReader<Cursor<&[u8]>>, TraceError> {
        TraceReader::open(Cursor::new(b))
    }

    fn stream(b: &[u8], strict: bool) -> Result<Vec<TraceRecord>, TraceError> {
        StreamingTraceReader::new(b)?.strict(strict).collect()
    }

    /// The error, as `Debug` text.
    fn err<T>(r: Result<T, TraceError>) -> String {
        r.err().map(|e| format!("{e:?}")).unwrap_or_default()
    }

    #[test]
    fn round_trip_in_memory() {
        let bytes = trace(100);
        assert_eq!(bytes.len(), HEADER_LEN + 100 * RECORD_LEN);
        assert_eq!(TraceHeader::decode(&arr(&bytes[..80])).unwrap(), header());
        let mut r = open(&bytes).unwrap();
        assert_eq!((*r.header(), r.len()), (header(), 100));
        assert!(!r.has_partial_tail());
        assert_eq!(r.root_at(0).unwrap(), header().initial_root);
        for k in [1, 2, 50, 99, 100] {
            assert_eq!(r.record(k).unwrap(), rec(k));
            assert_eq!(r.root_at(k).unwrap(), rec(k).state_root);
            let off = record_offset(k).unwrap() as usize;
            assert_eq!(TraceRecord::decode(&arr(&bytes[off..off + 48])), rec(k));
        }
        for k in [0, 101, u64::MAX] {
            let want = format!("NoSuchStep {{ step: {k}, len: 100 }}");
            assert_eq!(err(r.record(k)), want);
        }
        let empty = trace(0);
        assert!(open(&empty).unwrap().is_empty());
        assert_eq!(stream(&empty, true).unwrap(), vec![]);
    }

    #[test]
    fn round_trip_on_disk() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        let name = format!(
            "opml-trace-{}-{}",
            std::process::id(),
            t.unwrap().as_nanos()
        );
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.trace");
        let mut w = TraceWriter::new(std::fs::File::create(&path).unwrap(), &header()).unwrap();
        (1..=3000).for_each(|k| w.push(&rec(k)).unwrap());
        w.finish().unwrap().sync_all().unwrap();
        let f = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
        let mut r = TraceReader::open(f).unwrap();
        assert_eq!(r.len(), 3000);
        assert_eq!(r.record(1234).unwrap(), rec(1234));
        let all: Vec<_> = r.records(1, 3000).unwrap().map(Result::unwrap).collect();
        assert_eq!(all, (1..=3000).map(rec).collect::<Vec<_>>());
        let streamed = stream(&std::fs::read(&path).unwrap(), true).unwrap();
        assert_eq!(streamed, all);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn random_access_equals_streaming_order() {
        let bytes = trace(300);
        let mut r = open(&bytes).unwrap();
        let streamed = stream(&bytes, true).unwrap();
        let ranged: Vec<_> = r.records(1, 300).unwrap().map(Result::unwrap).collect();
        assert_eq!(ranged, streamed);
        for (i, s) in streamed.iter().enumerate() {
            assert_eq!(r.record(i as u64 + 1).unwrap(), *s);
        }
        let slice: Vec<_> = r.records(40, 60).unwrap().map(Result::unwrap).collect();
        assert_eq!(slice, streamed[39..60]);
        assert_eq!(r.records(7, 7).unwrap().count(), 1);
        assert_eq!(r.records(8, 7).unwrap().count(), 0);
        assert_eq!(err(r.records(0, 3)), "NoSuchStep { step: 0, len: 300 }");
        assert_eq!(err(r.records(3, 301)), "NoSuchStep { step: 301, len: 300 }");
    }

    #[test]
    fn partial_tail_is_ignored_and_reported() {
        let bytes = trace(5);
        for cut in HEADER_LEN..=bytes.len() {
            let part = &bytes[..cut];
            let n = complete_records(cut as u64);
            let partial = !(cut - HEADER_LEN).is_multiple_of(RECORD_LEN);
            let mut r = open(part).unwrap();
            assert_eq!((r.len(), r.has_partial_tail()), (n, partial));
            assert_eq!(r.records(1, n).unwrap().count() as u64, n);
            let mut s = StreamingTraceReader::new(part).unwrap();
            assert_eq!(s.by_ref().map(Result::unwrap).count() as u64, n);
            assert_eq!(s.has_partial_tail(), partial);
            let offset = record_offset(n + 1).unwrap();
            let want = match partial {
                true => format!(
                    "Truncated {{ offset: {offset}, needed: 48, got: {} }}",
                    cut as u64 - offset
                ),
                false => String::new(),
            };
            assert_eq!(err(stream(part, true)), want);
        }
    }

    #[test]
    fn corrupted_header_fields_are_named() {
        let good = trace(3);
        let check = |b: &[u8], want: &str| {
            assert!(err(open(b)).starts_with(want), "{} !~ {want}", err(open(b)));
            assert!(err(stream(b, false)).starts_with(want));
        };
        for i in 0..8 {
            let mut b = good.clone();
            b[i] ^= 0x20;
            check(&b, "BadMagic");
        }
        for (at, v, want) in [
            (8, 0, "UnsupportedVersion(0)"),
            (8, 2, "UnsupportedVersion(2)"),
        ]
        .into_iter()
        .chain([(12, 5, "BadChunkLog2(5)"), (12, 17, "BadChunkLog2(17)")])
        {
            let mut b = good.clone();
            b[at..at + 4].copy_from_slice(&u32::to_le_bytes(v));
            check(&b, want);
        }
        for cut in 0..HEADER_LEN {
            check(
                &good[..cut],
                &format!("Truncated {{ offset: 0, needed: 80, got: {cut} }}"),
            );
        }
    }

    #[test]
    fn corrupted_records_are_detected() {
        let mut b = trace(10);
        let off = record_offset(5).unwrap() as usize;
        b[off] ^= 1;
        let mut r = open(&b).unwrap();
        assert_eq!(err(r.record(5)), "StepOutOfOrder { expected: 5, got: 4 }");
        assert_eq!(
            err(stream(&b, false)),
            "StepOutOfOrder { expected: 5, got: 4 }"
        );
        let mut b = trace(10);
        b[off + 8..off + 16].copy_from_slice(&0u64.to_le_bytes());
        let mut r = open(&b).unwrap();
        assert_eq!(r.record(5).unwrap().fuel, 0);
        let e = r.records(1, 10).unwrap().find_map(Result::err);
        let want = "FuelDecreased { step: 5, previous: 14, got: 0 }";
        assert_eq!(format!("{e:?}"), format!("Some({want})"));
        assert_eq!(err(stream(&b, false)), want);
    }

    #[test]
    fn writer_rejects_gaps_repeats_and_fuel_decrease() {
        let mut w = TraceWriter::new(Vec::new(), &header()).unwrap();
        let at = |step, fuel| TraceRecord {
            step,
            fuel,
            state_root: [1; 32],
        };
        assert_eq!(
            err(w.push(&at(0, 0))),
            "StepOutOfOrder { expected: 1, got: 0 }"
        );
        assert_eq!(
            err(w.push(&at(2, 0))),
            "StepOutOfOrder { expected: 1, got: 2 }"
        );
        w.push(&at(1, 10)).unwrap();
        assert_eq!(
            err(w.push(&at(1, 10))),
            "StepOutOfOrder { expected: 2, got: 1 }"
        );
        assert_eq!(
            err(w.push(&at(3, 10))),
            "StepOutOfOrder { expected: 2, got: 3 }"
        );
        let want = "FuelDecreased { step: 2, previous: 10, got: 9 }";
        assert_eq!(err(w.push(&at(2, 9))), want);
        assert_eq!(
            w.push(&at(2, 9)).unwrap_err().to_string(),
            "fuel decreased at step 2: 10 -> 9"
        );
        w.push(&at(2, 10)).unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(stream(&bytes, true).unwrap(), vec![at(1, 10), at(2, 10)]);
        for (v, c) in [(2, 10), (1, 5), (1, 17)] {
            let bad = TraceHeader {
                version: v,
                chunk_log2: c,
                ..header()
            };
            assert!(TraceWriter::new(Vec::new(), &bad).is_err());
        }
    }

    #[test]
    fn json_uses_hex_hashes() {
        let j = serde_json::to_string(&rec(1)).unwrap();
        assert!(j.contains(&hex::encode(rec(1).state_root)), "{j}");
        assert_eq!(serde_json::from_str::<TraceRecord>(&j).unwrap(), rec(1));
        let j = serde_json::to_string(&header()).unwrap();
        assert_eq!(serde_json::from_str::<TraceHeader>(&j).unwrap(), header());
    }

    /// A 6-step run whose last record is the final state.
    fn run() -> (TraceManifest, Vec<u8>) {
        let (step, fuel) = (6, rec(6).fuel);
        let (status, memory_root) = (Status::Halted, [3; 32]);
        let fin = StateFields {
            status,
            step,
            fuel,
            memory_pages: 1,
            memory_root,
        };
        let mut w = TraceWriter::new(Vec::new(), &header()).unwrap();
        (1..6).for_each(|k| w.push(&rec(k)).unwrap());
        w.push(&TraceRecord {
            state_root: fin.hash(),
            ..rec(6)
        })
        .unwrap();
        let ckpt = |step, state_root| CheckpointEntry {
            step,
            state_root,
            file: format!("{step}.ckpt"),
        };
        let cps = vec![ckpt(0, header().initial_root), ckpt(4, rec(4).state_root)];
        (
            TraceManifest::new(&header(), fin, "run.trace", 4, cps),
            w.finish().unwrap(),
        )
    }

    #[test]
    fn manifest_round_trips_and_validates() {
        let m = run().0;
        let json = m.to_json_pretty();
        assert!(json.contains("\"format\": \"opml-trace\""), "{json}");
        assert_eq!(TraceManifest::from_json(&json).unwrap(), m);
        let edit = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
            f(&mut v);
            err(TraceManifest::from_json(&v.to_string()))
        };
        assert_eq!(
            edit(&|v| v["format"] = "x".into()),
            "BadManifestFormat(\"x\")"
        );
        assert_eq!(edit(&|v| v["version"] = 2.into()), "UnsupportedVersion(2)");
        assert_eq!(edit(&|v| v["chunk_log2"] = 99.into()), "BadChunkLog2(99)");
        assert!(edit(&|v| v["steps"] = 7.into()).starts_with("InvalidManifest"));
        assert!(edit(&|v| v["final_state"]["fuel"] = 1.into()).starts_with("InvalidManifest"));
        assert!(edit(&|v| v["checkpoints"][1]["step"] = 0.into()).starts_with("InvalidManifest"));
        assert!(edit(&|v| v["checkpoints"][1]["step"] = 7.into()).starts_with("InvalidManifest"));
        let root = hex::encode([1; 32]);
        assert!(
            edit(&|v| v["checkpoints"][0]["state_root"] = root.clone().into())
                .starts_with("InvalidManifest")
        );
        assert!(edit(&|v| v["code_hash"] = "zz".into()).starts_with("Json"));
        assert!(err(TraceManifest::from_json("{")).starts_with("Json"));
    }

    #[test]
    fn manifest_checks_its_trace() {
        let (mut m, bytes) = run();
        m.check_trace(&mut open(&bytes).unwrap()).unwrap();
        assert!(m
            .check_trace(&mut open(&bytes[..bytes.len() - 1]).unwrap())
            .is_err());
        assert!(m.check_trace(&mut open(&trace(6)).unwrap()).is_err());
        m.code_hash = [0; 32];
        assert!(m.check_trace(&mut open(&bytes).unwrap()).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(tail in prop::collection::vec(any::<u8>(), 0..600), raw: bool) {
            let bytes = if raw { tail } else { [&header().encode()[..], &tail].concat() };
            if let Ok(mut r) = open(&bytes) {
                let n = r.len();
                let _ = r.records(1, n).map(|it| it.count());
                for k in 0..=n + 1 { let _ = r.root_at(k); }
            }
            for strict in [false, true] {
                let _ = stream(&bytes, strict);
            }
        }
    }
}

//! Reading traces: random access ([`TraceReader`]) and streaming
//! ([`StreamingTraceReader`]).

use super::format::{arr, check_next};
use super::{record_offset, TraceError, TraceHeader, TraceRecord, HEADER_LEN, MAGIC, RECORD_LEN};
use crate::hash::Hash;
use std::io::{self, BufReader, Read, Seek, SeekFrom};

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

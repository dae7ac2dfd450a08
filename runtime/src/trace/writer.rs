//! [`TraceWriter`].

use super::format::check_next;
use super::{TraceError, TraceHeader, TraceRecord};
use std::io::{self, BufWriter, Write};

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

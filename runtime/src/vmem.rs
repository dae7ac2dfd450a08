//! Host-side linear memory of the virtual variant.
//!
//! Every load, store, `memory.size` and `memory.grow` of the virtual variant
//! lands here (see [`crate::instrument::HOST_FUNCS`]). The memory checks bounds
//! exactly as Wasm does, then touches the chunks of the access's first and
//! last byte, in that order. Only the chunk of the *first* byte counts
//! against the limit (exactly what the fast variant marks, see
//! [`crate::instrument`]): a step may touch at most `max_touched` distinct
//! first-byte chunks, and touching one more stops it with
//! [`HostStop::TouchLimit`]. So a proof holds at most `2 * max_touched`
//! chunks (each counted chunk can bring its successor). A chunk the backing
//! does not hold stops the step with [`HostStop::MissingChunk`]: in the
//! verifier that means the proof is incomplete.
//!
//! Two backings: [`SparseChunks`] (the chunks of a proof, for the verifier;
//! memory use proportional to the proof) and, in the prover, a full memory
//! that records the pre-step contents of every chunk it hands out.

use crate::instrument::{HostOp, Width, HOST_FUNCS, HOST_MODULE};
use crate::limits::PAGE_SIZE;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use wasmi::{Caller, Engine, Linker, TrapCode};

/// Why a host memory function stopped a step (not a Wasm trap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostStop {
    /// The step touched one chunk more than the module allows.
    TouchLimit,
    /// The backing does not hold this chunk.
    MissingChunk(u32),
}

impl core::fmt::Display for HostStop {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HostStop::TouchLimit => write!(f, "step touched more chunks than allowed"),
            HostStop::MissingChunk(c) => write!(f, "chunk {c} is not available"),
        }
    }
}

impl wasmi::errors::HostError for HostStop {}

/// Where the chunks come from.
pub trait Backing {
    /// The chunk's bytes, if held.
    fn chunk(&mut self, index: u32) -> Option<&mut [u8]>;
    /// Memory grew to `pages` pages.
    fn grown(&mut self, pages: u32);
}

/// The chunks of a one-step proof.
pub struct SparseChunks(pub BTreeMap<u32, Vec<u8>>);

impl Backing for SparseChunks {
    fn chunk(&mut self, index: u32) -> Option<&mut [u8]> {
        self.0.get_mut(&index).map(|v| v.as_mut_slice())
    }
    fn grown(&mut self, _pages: u32) {}
}

/// Linear memory served to the virtual variant.
pub struct HostMemory<B> {
    pub backing: B,
    chunk_log2: u32,
    /// Current size in pages.
    pub pages: u32,
    max_pages: u32,
    max_touched: usize,
    /// Distinct first-byte chunks touched so far in this step (the ones
    /// counted against the limit).
    pub touched: BTreeSet<u32>,
}

impl<B: Backing> HostMemory<B> {
    pub fn new(backing: B, chunk_log2: u32, pages: u32, max_pages: u32, max_touched: u32) -> Self {
        Self {
            backing,
            chunk_log2,
            pages,
            max_pages,
            max_touched: max_touched as usize,
            touched: BTreeSet::new(),
        }
    }

    fn touch(&mut self, c: u32, counted: bool) -> Result<&mut [u8], HostStop> {
        if counted && !self.touched.contains(&c) {
            if self.touched.len() >= self.max_touched {
                return Err(HostStop::TouchLimit);
            }
            if self.backing.chunk(c).is_none() {
                return Err(HostStop::MissingChunk(c));
            }
            self.touched.insert(c);
        }
        self.backing.chunk(c).ok_or(HostStop::MissingChunk(c))
    }

    /// Bounds-checks an access of `n` bytes and returns its effective address.
    fn effective(&self, addr: i32, offset: i32, n: u64) -> Result<u64, wasmi::Error> {
        let ea = u64::from(addr as u32) + u64::from(offset as u32);
        if ea + n > u64::from(self.pages) * PAGE_SIZE {
            return Err(TrapCode::MemoryOutOfBounds.into());
        }
        Ok(ea)
    }

    /// Applies `f(chunk, range_in_chunk, range_in_value)` to the one or two
    /// chunks an access spans, first chunk first.
    fn each_part(
        &mut self,
        ea: u64,
        n: usize,
        mut f: impl FnMut(&mut [u8], core::ops::Range<usize>, core::ops::Range<usize>),
    ) -> Result<(), wasmi::Error> {
        let size = 1u64 << self.chunk_log2;
        let mut done = 0usize;
        while done < n {
            let at = ea + done as u64;
            let c = (at >> self.chunk_log2) as u32;
            let within = (at & (size - 1)) as usize;
            let take = core::cmp::min(n - done, size as usize - within);
            let chunk = self.touch(c, done == 0).map_err(wasmi::Error::host)?;
            f(chunk, within..within + take, done..done + take);
            done += take;
        }
        Ok(())
    }

    /// Little-endian load of `n` bytes.
    pub fn load(&mut self, addr: i32, offset: i32, n: u8) -> Result<u64, wasmi::Error> {
        let ea = self.effective(addr, offset, u64::from(n))?;
        let mut buf = [0u8; 8];
        self.each_part(ea, usize::from(n), |chunk, c, v| {
            buf[v].copy_from_slice(&chunk[c]);
        })?;
        Ok(u64::from_le_bytes(buf))
    }

    /// Little-endian store of the low `n` bytes of `value`.
    pub fn store(&mut self, addr: i32, offset: i32, n: u8, value: u64) -> Result<(), wasmi::Error> {
        let ea = self.effective(addr, offset, u64::from(n))?;
        let bytes = value.to_le_bytes();
        self.each_part(ea, usize::from(n), |chunk, c, v| {
            chunk[c].copy_from_slice(&bytes[v]);
        })
    }

    /// `memory.grow`: the old size, or -1 if the maximum would be exceeded.
    pub fn grow(&mut self, delta: i32) -> i32 {
        let delta = delta as u32;
        match self.pages.checked_add(delta) {
            Some(new) if new <= self.max_pages => {
                let old = self.pages;
                self.pages = new;
                self.backing.grown(new);
                old as i32
            }
            _ => -1,
        }
    }
}

fn extend(raw: u64, bytes: u8, signed: bool) -> u64 {
    let bits = u32::from(bytes) * 8;
    if bits >= 64 {
        return raw;
    }
    if signed {
        let shift = 64 - bits;
        (((raw << shift) as i64) >> shift) as u64
    } else {
        raw & ((1u64 << bits) - 1)
    }
}

/// A linker that provides [`HOST_FUNCS`] over a [`HostMemory`].
pub fn linker<B: Backing + 'static>(
    engine: &Engine,
) -> Result<Linker<HostMemory<B>>, wasmi::errors::LinkerError> {
    let mut l = Linker::<HostMemory<B>>::new(engine);
    // One closure shape per access kind: `$t` is the Wasm value type; a load
    // sign- or zero-extends the raw little-endian bits into it, a store takes
    // its raw bits with `$bits`.
    macro_rules! load {
        ($t:ty, $bytes:expr, $signed:expr, $name:expr) => {{
            let (bytes, signed) = ($bytes, $signed);
            l.func_wrap(
                HOST_MODULE,
                $name,
                move |mut c: Caller<'_, HostMemory<B>>,
                      a: i32,
                      o: i32|
                      -> Result<$t, wasmi::Error> {
                    let raw = c.data_mut().load(a, o, bytes)?;
                    Ok(extend(raw, bytes, signed) as $t)
                },
            )?;
        }};
    }
    macro_rules! store {
        ($t:ty, $bits:expr, $bytes:expr, $name:expr) => {{
            let bytes = $bytes;
            l.func_wrap(
                HOST_MODULE,
                $name,
                move |mut c: Caller<'_, HostMemory<B>>,
                      a: i32,
                      v: $t,
                      o: i32|
                      -> Result<(), wasmi::Error> {
                    c.data_mut().store(a, o, bytes, $bits(v))
                },
            )?;
        }};
    }
    for (name, op) in HOST_FUNCS {
        match op {
            HostOp::Load {
                ty: Width::I32,
                bytes,
                signed,
            } => load!(i32, bytes, signed, name),
            HostOp::Load {
                ty: Width::I64,
                bytes,
                signed,
            } => load!(i64, bytes, signed, name),
            HostOp::Store {
                ty: Width::I32,
                bytes,
            } => store!(i32, |v: i32| u64::from(v as u32), bytes, name),
            HostOp::Store {
                ty: Width::I64,
                bytes,
            } => store!(i64, |v: i64| v as u64, bytes, name),
            HostOp::Size => {
                l.func_wrap(HOST_MODULE, name, |c: Caller<'_, HostMemory<B>>| -> i32 {
                    c.data().pages as i32
                })?;
            }
            HostOp::Grow => {
                l.func_wrap(
                    HOST_MODULE,
                    name,
                    |mut c: Caller<'_, HostMemory<B>>, d: i32| -> i32 { c.data_mut().grow(d) },
                )?;
            }
        }
    }
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_signs_and_zero_extends() {
        assert_eq!(extend(0xff, 1, true), u64::MAX);
        assert_eq!(extend(0xff, 1, false), 0xff);
        assert_eq!(extend(0x8000, 2, true) as i64, -32768);
        assert_eq!(extend(0xffff_ffff, 4, false), 0xffff_ffff);
        assert_eq!(extend(u64::MAX, 8, false), u64::MAX);
    }

    #[test]
    fn straddling_access_touches_both_chunks_in_order() {
        let mut chunks = BTreeMap::new();
        chunks.insert(0u32, alloc::vec![0u8; 64]);
        chunks.insert(1u32, alloc::vec![0u8; 64]);
        let mut m = HostMemory::new(SparseChunks(chunks), 6, 1, 1, 2);
        m.store(60, 0, 8, 0x0807_0605_0403_0201).unwrap();
        assert_eq!(m.load(0, 60, 8).unwrap(), 0x0807_0605_0403_0201);
        // Only the first byte's chunk counts.
        assert_eq!(m.touched.len(), 1);
        assert_eq!(m.backing.0[&1][0..4], [5, 6, 7, 8]);
    }

    #[test]
    fn touch_limit_and_missing_chunks_stop_the_step() {
        let mut chunks = BTreeMap::new();
        chunks.insert(0u32, alloc::vec![0u8; 64]);
        chunks.insert(1u32, alloc::vec![0u8; 64]);
        let mut m = HostMemory::new(SparseChunks(chunks), 6, 1, 1, 1);
        m.load(0, 0, 4).unwrap();
        // The second chunk of a straddling access is not counted ...
        m.load(62, 0, 4).unwrap();
        // ... but a first byte in it is.
        let e = m.load(64, 0, 4).unwrap_err();
        assert_eq!(e.downcast_ref::<HostStop>(), Some(&HostStop::TouchLimit));
        let mut m = HostMemory::new(SparseChunks(BTreeMap::new()), 6, 1, 1, 4);
        let e = m.load(128, 0, 1).unwrap_err();
        assert_eq!(
            e.downcast_ref::<HostStop>(),
            Some(&HostStop::MissingChunk(2))
        );
    }

    #[test]
    fn out_of_bounds_is_a_wasm_trap_checked_before_touching() {
        let mut m = HostMemory::new(SparseChunks(BTreeMap::new()), 6, 1, 2, 4);
        let e = m.load(65533, 0, 4).unwrap_err();
        assert_eq!(e.as_trap_code(), Some(TrapCode::MemoryOutOfBounds));
        let e = m.store(-1, 2, 1, 0).unwrap_err();
        assert_eq!(e.as_trap_code(), Some(TrapCode::MemoryOutOfBounds));
        assert!(m.touched.is_empty());
        assert_eq!(m.grow(1), 1);
        assert_eq!(m.grow(1), -1);
        assert_eq!(m.pages, 2);
    }
}

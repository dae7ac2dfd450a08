//! Byte regions of linear memory and the chunks that cover them.

use super::{MAX_EDGE_CHUNK_BYTES, MAX_REGIONS};
use alloc::vec;
use alloc::vec::Vec;
use bounded_collections::{BoundedVec, ConstU32};
use parity_scale_codec::{Decode, DecodeWithMemTracking, Encode, MaxEncodedLen};
use scale_info::TypeInfo;

/// `len` bytes at `offset` of linear memory.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Debug,
    Encode,
    Decode,
    DecodeWithMemTracking,
    MaxEncodedLen,
    TypeInfo,
)]
pub struct Region {
    pub offset: u32,
    pub len: u32,
}

impl Region {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        u64::from(self.offset) + u64::from(self.len)
    }
}

/// The full contents of one partially covered memory chunk (at most
/// `MAX_EDGE_CHUNK_BYTES`).
#[derive(
    Clone, PartialEq, Eq, Debug, Encode, Decode, DecodeWithMemTracking, MaxEncodedLen, TypeInfo,
)]
pub struct ChunkBytes {
    pub index: u32,
    pub data: BoundedVec<u8, ConstU32<MAX_EDGE_CHUNK_BYTES>>,
}

/// Regions of a model, as stored.
pub type Regions = BoundedVec<Region, ConstU32<MAX_REGIONS>>;

/// Sorted, unique indices of the chunks covering `regions` (empty regions
/// cover nothing).
pub fn covered_chunks(regions: &[Region], chunk_log2: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for r in regions.iter().filter(|r| r.len > 0) {
        let first = (u64::from(r.offset) >> chunk_log2) as u32;
        let last = ((r.end() - 1) >> chunk_log2) as u32;
        out.extend(first..=last);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Whether chunk `index` is entirely covered by `regions`.
pub fn fully_covered(regions: &[Region], chunk_log2: u32, index: u32) -> bool {
    let lo = u64::from(index) << chunk_log2;
    let hi = lo + (1u64 << chunk_log2);
    // Regions are sorted and disjoint (checked by the commitment), so the
    // covered bytes of the chunk are a sum of disjoint overlaps.
    let covered: u64 = regions
        .iter()
        .map(|r| r.end().min(hi).saturating_sub(u64::from(r.offset).max(lo)))
        .sum();
    covered == hi - lo
}

/// Sorted, unique indices of the chunks `regions` cover only partly (only a
/// region's first and last chunk can be). `regions` must be well formed.
pub fn edge_chunks(regions: &[Region], chunk_log2: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for r in regions.iter().filter(|r| r.len > 0) {
        let first = (u64::from(r.offset) >> chunk_log2) as u32;
        let last = ((r.end() - 1) >> chunk_log2) as u32;
        out.push(first);
        out.push(last);
    }
    out.sort_unstable();
    out.dedup();
    out.retain(|&c| !fully_covered(regions, chunk_log2, c));
    out
}

/// Whether `regions` are ascending and disjoint, all inside `memory_len`.
pub fn well_formed(regions: &[Region], memory_len: u64) -> bool {
    let mut prev_end = 0u64;
    for r in regions {
        if u64::from(r.offset) < prev_end || r.end() > memory_len {
            return false;
        }
        prev_end = r.end();
    }
    true
}

/// Chunk contents for `chunks`: the given `edges` for partially covered
/// chunks, zeros for fully covered ones (their bytes are all overwritten or,
/// for initial images, zero). `None` if an edge is missing, unexpected, or
/// of the wrong size.
pub fn chunk_contents(
    regions: &[Region],
    chunk_log2: u32,
    chunks: &[u32],
    edges: &[ChunkBytes],
) -> Result<Vec<Vec<u8>>, EdgeError> {
    let size = 1usize << chunk_log2;
    let mut out = Vec::with_capacity(chunks.len());
    for &c in chunks {
        if fully_covered(regions, chunk_log2, c) {
            out.push(vec![0u8; size]);
        } else {
            let e = edges
                .iter()
                .find(|e| e.index == c)
                .ok_or(EdgeError::Missing(c))?;
            if e.data.len() != size {
                return Err(EdgeError::WrongSize(c));
            }
            out.push(e.data.to_vec());
        }
    }
    for e in edges {
        if chunks.binary_search(&e.index).is_err() || fully_covered(regions, chunk_log2, e.index) {
            return Err(EdgeError::Unexpected(e.index));
        }
    }
    Ok(out)
}

/// Why edge chunks do not fit the regions.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum EdgeError {
    /// A partially covered chunk has no contents given.
    Missing(u32),
    /// Contents given for a chunk that is not partially covered.
    Unexpected(u32),
    /// Contents of a chunk are not one chunk long.
    WrongSize(u32),
}

/// Writes `bytes` (the regions' bytes, concatenated in order) into the chunk
/// contents of `chunks`. `bytes` must be as long as the regions together.
pub fn write_regions(
    regions: &[Region],
    chunk_log2: u32,
    chunks: &[u32],
    contents: &mut [Vec<u8>],
    bytes: &[u8],
) {
    let mut cursor = 0usize;
    let mask = (1u64 << chunk_log2) - 1;
    for r in regions {
        let mut addr = u64::from(r.offset);
        while addr < r.end() {
            let chunk = (addr >> chunk_log2) as u32;
            let within = (addr & mask) as usize;
            let n = ((mask + 1 - (addr & mask)).min(r.end() - addr)) as usize;
            if let (Ok(i), Some(src)) =
                (chunks.binary_search(&chunk), bytes.get(cursor..cursor + n))
            {
                contents[i][within..within + n].copy_from_slice(src);
            }
            cursor += n;
            addr += n as u64;
        }
    }
}

/// Sum of the region lengths.
pub fn total_len(regions: &[Region]) -> u64 {
    regions.iter().map(|r| u64::from(r.len)).sum()
}

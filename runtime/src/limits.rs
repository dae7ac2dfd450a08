//! Limits a module declares, and the sandbox-wide bounds on them.
//!
//! A module declares its limits as exported immutable globals:
//!
//! | export              | type | required | meaning                                   |
//! |---------------------|------|----------|-------------------------------------------|
//! | `opml_step_fuel`    | i64  | yes      | fuel cap of one step                      |
//! | `opml_chunk_log2`   | i32  | no (10)  | log2 of the Merkle chunk size in bytes    |
//! | `opml_max_touched`  | i32  | no       | distinct chunks one step may read or write (default: 32 KiB worth) |
//!
//! The memory's declared maximum (required) bounds its growth and fixes the
//! depth of the Merkle tree. `max_touched` counts the chunks holding the
//! first byte of the step's accesses; a proof also carries the chunk after
//! each of them when an access straddles a boundary, so it holds at most
//! `2 * max_touched` chunks: at most `2 * max_touched * (chunk size + 8) +
//! 2 * max_touched * depth * 32` bytes plus a fixed header. Admission
//! rejects values outside the bounds below.

/// Largest memory a module may declare, in 64 KiB pages (1 GiB).
pub const MAX_PAGES: u32 = 16_384;
/// Bytes in a Wasm page.
pub const PAGE_SIZE: u64 = 65_536;
/// Smallest and largest chunk size (log2 bytes).
pub const MIN_CHUNK_LOG2: u32 = 6;
pub const MAX_CHUNK_LOG2: u32 = 16;
/// Default chunk size (log2 bytes), chosen by `make bench` (see BENCHMARKS.md).
pub const DEFAULT_CHUNK_LOG2: u32 = 10;
/// Largest per-step fuel cap.
pub const MAX_STEP_FUEL: u64 = 1 << 34;
/// Largest amount of chunk data one proof may carry (touched chunks times
/// chunk size).
pub const MAX_PROOF_CHUNK_BYTES: u64 = 1 << 20;
/// Default chunk data per step when the module does not say.
pub const DEFAULT_TOUCHED_BYTES: u64 = 32 << 10;
/// Deepest static call chain (recursion is rejected, so this is exact).
pub const MAX_CALL_DEPTH: u32 = 64;
/// Bound on the sum of frame sizes (params + locals + operators) along any
/// call chain; keeps wasmi's value stack far from its limit in every
/// instrumented variant, so stack overflow can never differ between them.
pub const MAX_STACK_WEIGHT: u64 = 1 << 20;
/// Largest number of locals in one function.
pub const MAX_LOCALS: u32 = 4096;

/// The limits of one admitted module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleLimits {
    /// Fuel cap of one step.
    pub step_fuel: u64,
    /// log2 of the chunk size.
    pub chunk_log2: u32,
    /// Most distinct chunks one step may touch.
    pub max_touched: u32,
    /// Initial memory size in pages.
    pub min_pages: u32,
    /// Maximum memory size in pages.
    pub max_pages: u32,
}

impl ModuleLimits {
    /// Chunk size in bytes.
    pub fn chunk_size(&self) -> usize {
        1usize << self.chunk_log2
    }

    /// Number of chunks in the largest memory (a power of two times pages).
    pub fn max_chunks(&self) -> u64 {
        (u64::from(self.max_pages) * PAGE_SIZE) >> self.chunk_log2
    }

    /// Depth of the Merkle tree: `2^depth >= max_chunks`.
    pub fn tree_depth(&self) -> u32 {
        let n = self.max_chunks().max(1);
        64 - (n - 1).leading_zeros()
    }

    /// Chunks in a memory of `pages` pages.
    pub fn chunks_in(&self, pages: u32) -> u64 {
        (u64::from(pages) * PAGE_SIZE) >> self.chunk_log2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_depth_covers_all_chunks() {
        let mut l = ModuleLimits {
            step_fuel: 1,
            chunk_log2: 10,
            max_touched: 1,
            min_pages: 1,
            max_pages: 1,
        };
        assert_eq!(l.max_chunks(), 64);
        assert_eq!(l.tree_depth(), 6);
        l.max_pages = 3;
        assert_eq!(l.max_chunks(), 192);
        assert_eq!(l.tree_depth(), 8);
        l.chunk_log2 = 16;
        l.max_pages = 1;
        assert_eq!(l.tree_depth(), 0);
    }
}

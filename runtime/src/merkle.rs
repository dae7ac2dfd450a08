//! Merkle commitment over the linear memory of the opml sandbox.
//!
//! # Layout
//!
//! Memory is cut into fixed-size chunks (`chunk_size` bytes). The tree is a
//! binary tree of fixed depth `depth` (at most [`MAX_TREE_DEPTH`]) over
//! `2^depth` leaves; leaf `i` is [`leaf_hash`] of the bytes
//! `[i * chunk_size, (i + 1) * chunk_size)`, and node `(l + 1, j)` is
//! [`node_hash`]`(node(l, 2j), node(l, 2j + 1))`. The root is the single node
//! at level `depth`.
//!
//! Memory is a prefix of the leaves: only the first `populated` leaves are
//! backed by memory, every leaf at index `>= populated` is the hash of an
//! all-zero chunk. Since Wasm memory grows with zeros, growing memory never
//! changes the root.
//!
//! `zeros[l]` is the hash of an all-zero subtree of height `l`:
//! `zeros[0] = leaf_hash(&[0; chunk_size])`,
//! `zeros[l + 1] = node_hash(&zeros[l], &zeros[l])`.
//!
//! Storage is one vector per level: level `l` holds `ceil(populated / 2^l)`
//! nodes, and a node beyond a level's length is implicitly `zeros[l]`. So the
//! tree costs about `2 * populated` hashes of memory, whatever the depth.
//!
//! # Multiproof format
//!
//! A multiproof for a sorted, duplicate-free set of leaf indices is a flat
//! list of sibling hashes ("lemmas"), in this canonical order: for each level
//! `l = 0..depth`, hold the sorted set `S` of known node indices (at level 0,
//! the leaf indices). For each `i` in `S` in ascending order, if the sibling
//! `i ^ 1` is also in `S` no lemma is needed; otherwise the next lemma is the
//! hash of node `(l, i ^ 1)`. Then `S` becomes the sorted set `{i >> 1}`. At
//! level `depth` the single remaining node is the root.
//!
//! [`MerkleTree::multiproof`] emits lemmas in exactly that order and
//! [`root_from_multiproof`] consumes them in exactly that order, rejecting
//! proofs with too few or too many lemmas. Recomputing the root from modified
//! leaf hashes and the *same* lemmas gives the root after those leaves
//! changed: this is how a verifier derives a post-state root.
//!
//! This is deliberately not `merkle-cbt`'s complete-binary-tree layout: there
//! the shape depends on the leaf count, so growing memory would move every
//! leaf and change the root. The lemma order is the same idea (siblings not
//! derivable from the proven set, level by level, ascending).

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::hash::{leaf_hash, node_hash, Hash};

/// Largest depth of a [`MerkleTree`] (`2^26` chunks).
pub const MAX_TREE_DEPTH: u32 = 26;
/// Largest depth [`root_from_multiproof`] accepts (leaf indices are `u32`).
pub const MAX_PROOF_DEPTH: u32 = 32;

/// Errors of tree construction, updates and multiproofs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MerkleError {
    /// The requested depth is larger than allowed.
    DepthTooLarge { depth: u32, max: u32 },
    /// A chunk size of zero bytes.
    ZeroChunkSize,
    /// The memory length is not a multiple of the chunk size.
    NotChunkAligned { len: usize, chunk_size: usize },
    /// More chunks than the tree has leaves.
    TooManyChunks { chunks: u64, capacity: u64 },
    /// `grow` was asked to make memory smaller.
    Shrink { from: u64, to: u64 },
    /// The memory passed to `update` does not have `populated` chunks.
    MemoryLength {
        len: usize,
        chunks: u64,
        chunk_size: usize,
    },
    /// Indices are not in ascending order (`position` is the first offender).
    Unsorted { position: usize },
    /// An index appears twice.
    Duplicate { index: u64 },
    /// An index is not below `bound`.
    IndexOutOfRange { index: u64, bound: u64 },
    /// The proof ran out of lemmas.
    MissingLemmas { supplied: usize },
    /// The proof has lemmas left over after reaching the root.
    ExtraLemmas { used: usize, supplied: usize },
    /// No leaves were given.
    Empty,
}

impl fmt::Display for MerkleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use MerkleError::*;
        match self {
            DepthTooLarge { depth, max } => {
                write!(f, "merkle depth {depth} is larger than the maximum {max}")
            }
            ZeroChunkSize => write!(f, "merkle chunk size must not be zero"),
            NotChunkAligned { len, chunk_size } => write!(
                f,
                "memory length {len} is not a multiple of the chunk size {chunk_size}"
            ),
            TooManyChunks { chunks, capacity } => write!(
                f,
                "{chunks} chunks do not fit in a merkle tree of {capacity} leaves"
            ),
            Shrink { from, to } => {
                write!(f, "memory cannot shrink from {from} to {to} chunks")
            }
            MemoryLength {
                len,
                chunks,
                chunk_size,
            } => {
                write!(
                    f,
                    "memory of {len} bytes is not {chunks} chunks of {chunk_size}"
                )
            }
            Unsorted { position } => write!(f, "index at position {position} is not ascending"),
            Duplicate { index } => write!(f, "index {index} appears more than once"),
            IndexOutOfRange { index, bound } => {
                write!(f, "index {index} is out of range (must be below {bound})")
            }
            MissingLemmas { supplied } => {
                write!(f, "multiproof has too few lemmas ({supplied} supplied)")
            }
            ExtraLemmas { used, supplied } => write!(
                f,
                "multiproof has too many lemmas ({supplied} supplied, {used} used)"
            ),
            Empty => write!(f, "no leaves given"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for MerkleError {}

/// A fixed-depth Merkle tree over a prefix of memory chunks (see the module
/// documentation for the layout).
#[derive(Clone, PartialEq, Eq)]
pub struct MerkleTree {
    chunk_size: usize,
    depth: u32,
    /// `zeros[l]`: root of an all-zero subtree of height `l`; `depth + 1` entries.
    zeros: Vec<Hash>,
    /// `levels[l]`: the first `ceil(populated / 2^l)` nodes of level `l`;
    /// `depth + 1` levels.
    levels: Vec<Vec<Hash>>,
}

impl fmt::Debug for MerkleTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MerkleTree")
            .field("depth", &self.depth)
            .field("chunk_size", &self.chunk_size)
            .field("populated", &self.populated())
            .field("root", &self.root())
            .finish()
    }
}

/// `ceil(n / 2^shift)`.
fn ceil_shr(n: u64, shift: usize) -> u64 {
    if n == 0 {
        0
    } else {
        ((n - 1) >> shift) + 1
    }
}

/// Checks that `indices` are strictly ascending and below `bound`.
fn check_indices(indices: impl Iterator<Item = u64>, bound: u64) -> Result<(), MerkleError> {
    let mut prev: Option<u64> = None;
    for (position, index) in indices.enumerate() {
        if index >= bound {
            return Err(MerkleError::IndexOutOfRange { index, bound });
        }
        match prev {
            Some(p) if p == index => return Err(MerkleError::Duplicate { index }),
            Some(p) if p > index => return Err(MerkleError::Unsorted { position }),
            _ => {}
        }
        prev = Some(index);
    }
    Ok(())
}

impl MerkleTree {
    /// Builds the tree over `memory`.
    ///
    /// `memory.len()` must be a multiple of `chunk_size` (which must not be
    /// zero), `memory.len() / chunk_size <= 2^depth`, and
    /// `depth <= MAX_TREE_DEPTH`; returns `Err(MerkleError)` otherwise.
    pub fn new(depth: u32, chunk_size: usize, memory: &[u8]) -> Result<Self, MerkleError> {
        let (len, max) = (memory.len(), MAX_TREE_DEPTH);
        if depth > max {
            return Err(MerkleError::DepthTooLarge { depth, max });
        }
        if chunk_size == 0 {
            return Err(MerkleError::ZeroChunkSize);
        }
        if len % chunk_size != 0 {
            return Err(MerkleError::NotChunkAligned { len, chunk_size });
        }
        let chunks = (len / chunk_size) as u64;
        let capacity = 1u64 << depth;
        if chunks > capacity {
            return Err(MerkleError::TooManyChunks { chunks, capacity });
        }

        let mut zeros = Vec::with_capacity(depth as usize + 1);
        let mut zero = leaf_hash(&vec![0u8; chunk_size]);
        zeros.push(zero);
        for _ in 0..depth {
            zero = node_hash(&zero, &zero);
            zeros.push(zero);
        }

        let mut levels: Vec<Vec<Hash>> = Vec::with_capacity(depth as usize + 1);
        levels.push(memory.chunks_exact(chunk_size).map(leaf_hash).collect());
        for (l, zero) in zeros.iter().enumerate().take(depth as usize) {
            let next: Vec<Hash> = levels[l]
                .chunks(2)
                .map(|pair| node_hash(&pair[0], pair.get(1).unwrap_or(zero)))
                .collect();
            levels.push(next);
        }

        Ok(MerkleTree {
            chunk_size,
            depth,
            zeros,
            levels,
        })
    }

    /// The root: `levels[depth][0]`, or `zeros[depth]` if no chunk is populated.
    pub fn root(&self) -> Hash {
        self.node(self.depth as usize, 0)
    }

    /// Depth of the tree (it has `2^depth` leaves).
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// Bytes per chunk (leaf).
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Number of leaves backed by memory.
    pub fn populated(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// `zeros[l]` for `l = 0..=depth`: the root of an all-zero subtree of height `l`.
    pub fn zeros(&self) -> &[Hash] {
        &self.zeros
    }

    /// Number of leaves, `2^depth`.
    fn capacity(&self) -> u64 {
        1u64 << self.depth
    }

    /// Node `index` of level `level` (`zeros[level]` beyond the stored nodes).
    fn node(&self, level: usize, index: u64) -> Hash {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.levels.get(level)?.get(i))
            .or_else(|| self.zeros.get(level))
            .copied()
            .unwrap_or([0; 32])
    }

    /// Memory grew to `populated` chunks (never shrinks; `Err` if more than
    /// `2^depth` or fewer than now). New chunks are zero, so the root does not
    /// change: O(new chunks) pushes of precomputed zero hashes, no hashing.
    pub fn grow(&mut self, populated: u64) -> Result<(), MerkleError> {
        let (chunks, capacity, from) = (populated, self.capacity(), self.populated());
        if chunks > capacity {
            return Err(MerkleError::TooManyChunks { chunks, capacity });
        }
        if chunks < from {
            return Err(MerkleError::Shrink { from, to: chunks });
        }
        for (l, (level, zero)) in self.levels.iter_mut().zip(&self.zeros).enumerate() {
            // `populated <= 2^26`, so this fits in usize on every target we build for.
            level.resize(ceil_shr(populated, l) as usize, *zero);
        }
        Ok(())
    }

    /// Rehashes the leaves `dirty` (sorted ascending, unique, each below
    /// `populated`, else `Err`) from `memory` (the full memory, whose length
    /// must be `populated * chunk_size`) and recomputes only their ancestors,
    /// level by level, each ancestor once. On error the tree is unchanged.
    pub fn update(&mut self, memory: &[u8], dirty: &[u32]) -> Result<(), MerkleError> {
        let (populated, cs, len) = (self.populated(), self.chunk_size, memory.len());
        if len % cs != 0 || (len / cs) as u64 != populated {
            let (chunks, chunk_size) = (populated, cs);
            return Err(MerkleError::MemoryLength {
                len,
                chunks,
                chunk_size,
            });
        }
        check_indices(dirty.iter().map(|&i| u64::from(i)), populated)?;

        let mut cur: Vec<u64> = Vec::with_capacity(dirty.len());
        for &i in dirty {
            let i = i as usize; // < populated <= memory.len() / cs: no overflow below
            if let (Some(chunk), Some(slot)) =
                (memory.get(i * cs..(i + 1) * cs), self.levels[0].get_mut(i))
            {
                *slot = leaf_hash(chunk);
            }
            cur.push(i as u64);
        }
        for l in 0..self.depth as usize {
            for i in cur.iter_mut() {
                *i >>= 1;
            }
            cur.dedup();
            for &p in &cur {
                let h = node_hash(&self.node(l, 2 * p), &self.node(l, 2 * p + 1));
                if let Some(slot) = self.levels[l + 1].get_mut(p as usize) {
                    *slot = h;
                }
            }
        }
        Ok(())
    }

    /// Leaf hash at index `i` (`zeros[0]` at and beyond `populated`, including
    /// indices beyond `2^depth`).
    pub fn leaf(&self, i: u64) -> Hash {
        self.node(0, i)
    }

    /// Multiproof lemmas for the leaves `indices` (sorted ascending, unique,
    /// each below `2^depth`, non-empty), in the canonical order of the module
    /// documentation.
    pub fn multiproof(&self, indices: &[u32]) -> Result<Vec<Hash>, MerkleError> {
        if indices.is_empty() {
            return Err(MerkleError::Empty);
        }
        check_indices(indices.iter().map(|&i| u64::from(i)), self.capacity())?;
        let mut cur: Vec<u64> = indices.iter().map(|&i| u64::from(i)).collect();
        let mut lemmas = Vec::new();
        for l in 0..self.depth as usize {
            let mut k = 0;
            while let Some(&i) = cur.get(k) {
                if i & 1 == 0 && cur.get(k + 1) == Some(&(i + 1)) {
                    k += 2;
                } else {
                    lemmas.push(self.node(l, i ^ 1));
                    k += 1;
                }
            }
            for i in cur.iter_mut() {
                *i >>= 1;
            }
            cur.dedup();
        }
        Ok(lemmas)
    }
}

/// Recomputes the root from leaves and lemmas; pure, no_std, no tree needed.
///
/// `leaves`: `(index, leaf hash)` sorted ascending by index, unique,
/// `index < 2^depth`, non-empty. `lemmas` in the canonical order of the
/// module documentation. `Err` if `depth > MAX_PROOF_DEPTH`, if the lemmas
/// are too few or too many (all must be consumed), or if the indices are
/// unsorted, duplicate or out of range. Allocates `O(leaves.len())` and does
/// at most `leaves.len() * depth` hashes, whatever the input.
pub fn root_from_multiproof(
    depth: u32,
    leaves: &[(u32, Hash)],
    lemmas: &[Hash],
) -> Result<Hash, MerkleError> {
    let (max, supplied) = (MAX_PROOF_DEPTH, lemmas.len());
    if depth > max {
        return Err(MerkleError::DepthTooLarge { depth, max });
    }
    if leaves.is_empty() {
        return Err(MerkleError::Empty);
    }
    check_indices(leaves.iter().map(|&(i, _)| u64::from(i)), 1u64 << depth)?;

    let mut nodes: Vec<(u64, Hash)> = leaves.iter().map(|&(i, h)| (u64::from(i), h)).collect();
    let mut next_lemma = lemmas.iter();
    for _ in 0..depth {
        let (mut r, mut w) = (0, 0);
        while let Some(&(i, h)) = nodes.get(r) {
            let parent = match nodes.get(r + 1) {
                Some(&(j, right)) if i & 1 == 0 && j == i + 1 => {
                    r += 2;
                    node_hash(&h, &right)
                }
                _ => {
                    let missing = MerkleError::MissingLemmas { supplied };
                    let sibling = next_lemma.next().ok_or(missing)?;
                    r += 1;
                    if i & 1 == 0 {
                        node_hash(&h, sibling)
                    } else {
                        node_hash(sibling, &h)
                    }
                }
            };
            // w < r: writes never overtake reads.
            nodes[w] = (i >> 1, parent);
            w += 1;
        }
        nodes.truncate(w);
    }
    let used = supplied - next_lemma.len();
    if used < supplied {
        return Err(MerkleError::ExtraLemmas { used, supplied });
    }
    nodes.first().map(|&(_, h)| h).ok_or(MerkleError::Empty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use MerkleError::*;

    const CS: usize = 64;

    /// xorshift64*: deterministic randomness from a proptest-chosen seed.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next() as u8).collect()
        }
        /// Memory of a random number of chunks, at most `max_chunks`.
        fn memory(&mut self, max_chunks: u64, cs: usize) -> Vec<u8> {
            let chunks = self.below(max_chunks + 1) as usize;
            self.bytes(chunks * cs)
        }
        /// Random sorted unique subset of `0..n`, non-empty if `n > 0`.
        fn subset(&mut self, n: u64) -> Vec<u32> {
            let density = self.below(4) + 1;
            let mut s: Vec<u32> = (0..n)
                .filter(|_| self.below(8) < density)
                .map(|i| i as u32)
                .collect();
            if s.is_empty() && n > 0 {
                s.push(self.below(n) as u32);
            }
            s
        }
    }

    fn root_of_leaves(mut level: Vec<Hash>) -> Hash {
        while level.len() > 1 {
            level = level.chunks(2).map(|p| node_hash(&p[0], &p[1])).collect();
        }
        level[0]
    }

    /// Root over all `2^depth` leaves, hashing every one.
    fn naive_root(depth: u32, cs: usize, memory: &[u8]) -> Hash {
        let zero = vec![0u8; cs];
        let leaves = (0..1usize << depth)
            .map(|i| leaf_hash(memory.get(i * cs..(i + 1) * cs).unwrap_or(&zero)))
            .collect();
        root_of_leaves(leaves)
    }

    fn leaves_at(tree: &MerkleTree, idx: &[u32]) -> Vec<(u32, Hash)> {
        idx.iter().map(|&i| (i, tree.leaf(u64::from(i)))).collect()
    }

    /// Writes random bytes into random chunks; returns the sorted dirty set.
    fn random_writes(rng: &mut Rng, memory: &mut [u8], cs: usize) -> Vec<u32> {
        let dirty = rng.subset((memory.len() / cs) as u64);
        for &d in &dirty {
            let offset = rng.below(cs as u64) as usize;
            let len = rng.below((cs - offset) as u64) as usize + 1; // stays in chunk d
            let at = d as usize * cs + offset;
            memory[at..at + len].copy_from_slice(&rng.bytes(len));
        }
        dirty
    }

    /// A tree of depth 4 over 11 random chunks, a proof for 4 leaves of it.
    fn sample_proof() -> (Vec<(u32, Hash)>, Vec<Hash>, Hash) {
        let tree = MerkleTree::new(4, CS, &Rng(23).bytes(11 * CS)).unwrap();
        let idx = [1u32, 6, 7, 12];
        let lemmas = tree.multiproof(&idx).unwrap();
        (leaves_at(&tree, &idx), lemmas, tree.root())
    }

    #[test]
    fn empty_tree_root_is_zeros_at_depth() {
        for depth in [0, 1, 5, 26] {
            let tree = MerkleTree::new(depth, CS, &[]).unwrap();
            let z = tree.zeros();
            assert_eq!((tree.populated(), z.len()), (0, depth as usize + 1));
            assert_eq!(tree.root(), z[depth as usize]);
            assert_eq!(z[0], leaf_hash(&[0u8; CS]));
            for l in 0..depth as usize {
                assert_eq!(z[l + 1], node_hash(&z[l], &z[l]));
            }
        }
        let root = MerkleTree::new(5, CS, &[]).unwrap().root();
        assert_eq!(root, naive_root(5, CS, &[]));
    }

    #[test]
    fn depth_zero_root_is_the_single_leaf() {
        let tree = MerkleTree::new(0, CS, &[3u8; CS]).unwrap();
        assert_eq!(tree.root(), leaf_hash(&[3u8; CS]));
        assert!(tree.multiproof(&[0]).unwrap().is_empty());
        let got = root_from_multiproof(0, &leaves_at(&tree, &[0]), &[]);
        assert_eq!(got, Ok(tree.root()));
    }

    #[test]
    fn new_rejects_bad_geometry() {
        let e = DepthTooLarge { depth: 27, max: 26 };
        assert_eq!(MerkleTree::new(27, CS, &[]), Err(e));
        assert_eq!(MerkleTree::new(3, 0, &[]), Err(ZeroChunkSize));
        let (len, chunk_size) = (CS + 1, CS);
        let e = NotChunkAligned { len, chunk_size };
        assert_eq!(MerkleTree::new(3, CS, &[0; CS + 1]), Err(e));
        let (chunks, capacity) = (5, 4);
        let e = TooManyChunks { chunks, capacity };
        assert_eq!(MerkleTree::new(2, CS, &[0; 5 * CS]), Err(e));
        assert!(MerkleTree::new(2, CS, &[0; 4 * CS]).is_ok());
    }

    #[test]
    fn leaf_is_zero_hash_beyond_populated() {
        let tree = MerkleTree::new(3, CS, &[1u8; 3 * CS]).unwrap();
        assert_eq!(tree.leaf(2), leaf_hash(&[1u8; CS]));
        assert_eq!(tree.leaf(3), tree.zeros()[0]);
        assert_eq!(tree.leaf(u64::MAX), tree.zeros()[0]);
    }

    #[test]
    fn update_rejects_bad_input_and_leaves_tree_unchanged() {
        let mut memory = vec![5u8; 4 * CS];
        let mut tree = MerkleTree::new(3, CS, &memory).unwrap();
        let before = tree.clone();
        memory[0] = 9;
        assert_eq!(tree.update(&memory, &[2, 1]), Err(Unsorted { position: 1 }));
        assert_eq!(tree.update(&memory, &[0, 0]), Err(Duplicate { index: 0 }));
        let e = IndexOutOfRange { index: 4, bound: 4 };
        assert_eq!(tree.update(&memory, &[0, 4]), Err(e));
        let (len, chunks, chunk_size) = (3 * CS, 4, CS);
        let e = MemoryLength {
            len,
            chunks,
            chunk_size,
        };
        assert_eq!(tree.update(&memory[..len], &[0]), Err(e));
        let e = MemoryLength {
            len: len + CS - 1,
            chunks,
            chunk_size,
        };
        assert_eq!(tree.update(&memory[1..], &[0]), Err(e));
        assert_eq!(tree, before);
        tree.update(&memory, &[]).unwrap();
        assert_eq!(tree, before);
    }

    #[test]
    fn grow_rejects_shrink_and_overflow() {
        let mut tree = MerkleTree::new(3, CS, &[0; 4 * CS]).unwrap();
        assert_eq!(tree.grow(3), Err(Shrink { from: 4, to: 3 }));
        let (chunks, capacity) = (9, 8);
        assert_eq!(tree.grow(9), Err(TooManyChunks { chunks, capacity }));
        assert_eq!(tree.grow(4), Ok(()));
        assert_eq!(tree.grow(8), Ok(()));
    }

    #[test]
    fn multiproof_lemmas_follow_canonical_order() {
        let memory: Vec<u8> = (0..4 * CS).map(|i| (i / CS) as u8).collect();
        let tree = MerkleTree::new(2, CS, &memory).unwrap();
        let leaf = |i| tree.leaf(i);
        // {0, 3}: level 0 needs leaf 1 then leaf 2; level 1 is then complete.
        assert_eq!(tree.multiproof(&[0, 3]).unwrap(), vec![leaf(1), leaf(2)]);
        // {1}: leaf 0, then node (1, 1).
        let n11 = node_hash(&leaf(2), &leaf(3));
        assert_eq!(tree.multiproof(&[1]).unwrap(), vec![leaf(0), n11]);
        assert_eq!(tree.multiproof(&[1, 2]).unwrap(), vec![leaf(0), leaf(3)]);
        assert!(tree.multiproof(&[0, 1, 2, 3]).unwrap().is_empty());
    }

    #[test]
    fn flipping_any_bit_of_any_lemma_or_leaf_changes_root() {
        let (leaves, lemmas, root) = sample_proof();
        assert_eq!(root_from_multiproof(4, &leaves, &lemmas), Ok(root));
        for bit in 0..256 {
            for k in 0..lemmas.len() {
                let mut bad = lemmas.clone();
                bad[k][bit / 8] ^= 1 << (bit % 8);
                assert_ne!(root_from_multiproof(4, &leaves, &bad), Ok(root));
            }
            for k in 0..leaves.len() {
                let mut bad = leaves.clone();
                bad[k].1[bit / 8] ^= 1 << (bit % 8);
                assert_ne!(root_from_multiproof(4, &bad, &lemmas), Ok(root));
            }
        }
    }

    #[test]
    fn dropping_or_adding_a_lemma_is_an_error() {
        let (leaves, lemmas, _) = sample_proof();
        let n = lemmas.len();
        for k in 0..n {
            let mut fewer = lemmas.clone();
            fewer.remove(k);
            let got = root_from_multiproof(4, &leaves, &fewer);
            assert_eq!(got, Err(MissingLemmas { supplied: n - 1 }));
        }
        let mut more = lemmas.clone();
        more.push([0; 32]);
        let (used, supplied) = (n, n + 1);
        let got = root_from_multiproof(4, &leaves, &more);
        assert_eq!(got, Err(ExtraLemmas { used, supplied }));
        let supplied = 100_000;
        let got = root_from_multiproof(4, &leaves, &vec![[0; 32]; supplied]);
        assert_eq!(got, Err(ExtraLemmas { used, supplied }));
    }

    #[test]
    fn unsorted_duplicate_or_out_of_range_indices_are_errors() {
        let tree = MerkleTree::new(3, CS, &[0; 8 * CS]).unwrap();
        assert_eq!(tree.multiproof(&[]), Err(Empty));
        assert_eq!(tree.multiproof(&[3, 2]), Err(Unsorted { position: 1 }));
        assert_eq!(tree.multiproof(&[2, 2]), Err(Duplicate { index: 2 }));
        let out_of_range = IndexOutOfRange { index: 8, bound: 8 };
        assert_eq!(tree.multiproof(&[8]), Err(out_of_range.clone()));
        let (h, lemmas) = (tree.leaf(0), vec![tree.leaf(0); 6]);
        let verify = |depth, leaves: &[(u32, Hash)]| root_from_multiproof(depth, leaves, &lemmas);
        assert_eq!(verify(3, &[]), Err(Empty));
        assert_eq!(verify(3, &[(3, h), (2, h)]), Err(Unsorted { position: 1 }));
        assert_eq!(verify(3, &[(2, h), (2, h)]), Err(Duplicate { index: 2 }));
        assert_eq!(verify(3, &[(8, h)]), Err(out_of_range));
        let e = DepthTooLarge { depth: 33, max: 32 };
        assert_eq!(verify(33, &[(0, h)]), Err(e));
    }

    #[test]
    fn depth_32_proof_of_last_leaf_is_accepted() {
        // Leaf u32::MAX in an otherwise all-zero tree of depth 32.
        let mut z = vec![leaf_hash(&[0u8; CS])];
        for l in 0..31 {
            z.push(node_hash(&z[l], &z[l]));
        }
        let leaf = leaf_hash(&[1u8; CS]);
        let want = z.iter().fold(leaf, |acc, zl| node_hash(zl, &acc));
        assert_eq!(root_from_multiproof(32, &[(u32::MAX, leaf)], &z), Ok(want));
    }

    #[test]
    fn errors_display_clear_messages() {
        let (used, supplied) = (3, 5);
        let msg = "multiproof has too many lemmas (5 supplied, 3 used)";
        assert_eq!(ExtraLemmas { used, supplied }.to_string(), msg);
        let e = IndexOutOfRange { index: 9, bound: 8 };
        assert_eq!(e.to_string(), "index 9 is out of range (must be below 8)");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn root_equals_naive_full_recomputation(
            depth in 0u32..=8, cs in prop::sample::select(vec![64usize, 256]), seed in 1u64..,
        ) {
            let mut rng = Rng(seed);
            let memory = rng.memory(1 << depth, cs);
            let tree = MerkleTree::new(depth, cs, &memory).unwrap();
            prop_assert_eq!(tree.populated() as usize * cs, memory.len());
            prop_assert_eq!(tree.root(), naive_root(depth, cs, &memory));
        }

        /// Random grows (the root must not change) and random writes; after
        /// each round the tree equals a fresh build on the new memory.
        #[test]
        fn grow_keeps_root_and_update_after_writes_equals_fresh_build(
            depth in 0u32..=8,
            cs in prop::sample::select(vec![64usize, 256]),
            seed in 1u64..,
            rounds in 1usize..4,
        ) {
            let mut rng = Rng(seed);
            let cap = 1u64 << depth;
            let mut memory = rng.memory(cap, cs);
            let mut tree = MerkleTree::new(depth, cs, &memory).unwrap();
            for _ in 0..rounds {
                let (root, chunks) = (tree.root(), tree.populated());
                let to = chunks + rng.below(cap - chunks + 1);
                tree.grow(to).unwrap();
                prop_assert_eq!(tree.root(), root);
                memory.resize(to as usize * cs, 0);
                prop_assert_eq!(&tree, &MerkleTree::new(depth, cs, &memory).unwrap());
                let dirty = random_writes(&mut rng, &mut memory, cs);
                tree.update(&memory, &dirty).unwrap();
                prop_assert_eq!(&tree, &MerkleTree::new(depth, cs, &memory).unwrap());
            }
            prop_assert_eq!(tree.root(), naive_root(depth, cs, &memory));
        }

        /// Round trip of random multiproofs, and post-state roots: the same
        /// lemmas with new leaf hashes give the root of the changed tree,
        /// whether the leaves are arbitrary hashes (also beyond `populated`)
        /// or the result of real writes followed by `update`.
        #[test]
        fn multiproof_roundtrip_and_post_state_roots(
            depth in 0u32..=8, cs in prop::sample::select(vec![64usize, 256]), seed in 1u64..,
        ) {
            let mut rng = Rng(seed);
            let cap = 1u64 << depth;
            let mut memory = rng.memory(cap, cs);
            let mut tree = MerkleTree::new(depth, cs, &memory).unwrap();

            let idx = rng.subset(cap);
            let lemmas = tree.multiproof(&idx).unwrap();
            prop_assert!(lemmas.len() <= idx.len() * depth as usize);
            let mut leaves = leaves_at(&tree, &idx);
            prop_assert_eq!(root_from_multiproof(depth, &leaves, &lemmas), Ok(tree.root()));
            let mut all: Vec<Hash> = (0..cap).map(|i| tree.leaf(i)).collect();
            for (i, h) in leaves.iter_mut() {
                *h = leaf_hash(&rng.bytes(cs));
                all[*i as usize] = *h;
            }
            let post = root_from_multiproof(depth, &leaves, &lemmas);
            prop_assert_eq!(post, Ok(root_of_leaves(all)));

            let dirty = random_writes(&mut rng, &mut memory, cs);
            if !dirty.is_empty() {
                let lemmas = tree.multiproof(&dirty).unwrap();
                tree.update(&memory, &dirty).unwrap();
                let post = root_from_multiproof(depth, &leaves_at(&tree, &dirty), &lemmas);
                prop_assert_eq!(post, Ok(tree.root()));
            }
        }

        #[test]
        fn root_from_multiproof_never_panics_on_hostile_input(
            depth in 0u32..=40,
            leaves in prop::collection::vec((any::<u32>(), any::<[u8; 32]>()), 0..6),
            make_valid in any::<bool>(),
            lemmas in prop::collection::vec(any::<[u8; 32]>(), 0..64),
        ) {
            let mut leaves = leaves;
            if make_valid {
                let mask = if depth >= 32 { u64::MAX } else { (1u64 << depth) - 1 };
                for (i, _) in leaves.iter_mut() {
                    *i = (u64::from(*i) & mask) as u32;
                }
                leaves.sort_by_key(|&(i, _)| i);
                leaves.dedup_by_key(|&mut (i, _)| i);
            }
            let _ = root_from_multiproof(depth, &leaves, &lemmas);
        }
    }
}

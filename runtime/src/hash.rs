//! Domain-separated SHA-256 hashing.
//!
//! Every hash in opml starts with a 16-byte tag naming what is hashed, so a
//! leaf can never be confused with an inner node or a state, and no value of
//! one kind can be replayed as another.

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// Tag of a memory-chunk leaf: `H(LEAF_TAG || chunk bytes)`.
pub const LEAF_TAG: &[u8; 16] = b"opml.leaf.v1\0\0\0\0";
/// Tag of an inner Merkle node: `H(NODE_TAG || left || right)`.
pub const NODE_TAG: &[u8; 16] = b"opml.node.v1\0\0\0\0";
/// Tag of a machine state: `H(STATE_TAG || fields)`.
pub const STATE_TAG: &[u8; 16] = b"opml.state.v1\0\0\0";
/// Tag of a code hash: `H(CODE_TAG || wasm bytes)`.
pub const CODE_TAG: &[u8; 16] = b"opml.code.v1\0\0\0\0";

/// Hash of one memory chunk (a Merkle leaf).
pub fn leaf_hash(chunk: &[u8]) -> Hash {
    tagged(LEAF_TAG, &[chunk])
}

/// Hash of an inner Merkle node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    tagged(NODE_TAG, &[left, right])
}

/// Hash of a Wasm module's bytes, as committed on-chain and in traces.
pub fn code_hash(code: &[u8]) -> Hash {
    tagged(CODE_TAG, &[code])
}

/// `H(tag || parts...)`.
pub fn tagged(tag: &[u8; 16], parts: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    h.update(tag);
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_separate_domains() {
        let x = [7u8; 64];
        let (l, r) = x.split_at(32);
        let node = node_hash(l.try_into().unwrap(), r.try_into().unwrap());
        assert_ne!(node, leaf_hash(&x));
        assert_ne!(code_hash(&x), leaf_hash(&x));
    }

    #[test]
    fn leaf_hash_matches_plain_sha256_of_tag_and_data() {
        let mut h = Sha256::new();
        h.update(b"opml.leaf.v1\0\0\0\0");
        h.update(b"abc");
        let want: Hash = h.finalize().into();
        assert_eq!(leaf_hash(b"abc"), want);
    }
}

/// Serde helper: a 32-byte hash as a hex string.
#[cfg(feature = "std")]
pub mod hex32 {
    use super::Hash;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(&s).map_err(serde::de::Error::custom)?;
        v.try_into()
            .map_err(|_| serde::de::Error::custom("expected 32 bytes of hex"))
    }
}

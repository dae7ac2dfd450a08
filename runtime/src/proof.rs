//! One-step proofs: everything a verifier needs to re-execute one step.
//!
//! A proof holds the pre-state's fields, every memory chunk the step reads or
//! writes (with its pre-step contents), and a Merkle multiproof of those
//! chunks against the pre-state's memory root (format in [`crate::merkle`]).
//! It is SCALE-encoded on the wire; [`OneStepProof::decode_bounded`] refuses
//! oversized or trailing input before it allocates.

use crate::hash::{tagged, Hash};
use crate::state::StateFields;
use alloc::vec::Vec;
use parity_scale_codec::{Decode, DecodeAll, Encode};

/// Tag of a proof hash.
pub const PROOF_TAG: &[u8; 16] = b"opml.proof.v1\0\0\0";
/// Wire format version.
pub const PROOF_VERSION: u8 = 1;

/// One memory chunk with its pre-step contents.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ProvenChunk {
    pub index: u32,
    pub data: Vec<u8>,
}

/// The proof of one step.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct OneStepProof {
    /// Always [`PROOF_VERSION`].
    pub version: u8,
    /// The committed fields of the state before the step.
    pub pre: StateFields,
    /// The chunks the step touches, ascending by index.
    pub chunks: Vec<ProvenChunk>,
    /// Multiproof siblings of `chunks` against `pre.memory_root`.
    pub lemmas: Vec<Hash>,
}

/// A proof's bytes could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProofDecodeError {
    /// More bytes than the caller allows.
    TooLarge { len: usize, max: usize },
    /// Not a SCALE encoding of a proof (or trailing bytes).
    Malformed,
    /// A version this build does not know.
    UnsupportedVersion(u8),
}

impl core::fmt::Display for ProofDecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooLarge { len, max } => {
                write!(f, "proof of {len} bytes exceeds the limit of {max}")
            }
            Self::Malformed => write!(
                f,
                "proof bytes are not a valid SCALE-encoded one-step proof"
            ),
            Self::UnsupportedVersion(v) => write!(f, "unsupported proof version {v}"),
        }
    }
}

impl OneStepProof {
    /// SCALE bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode()
    }

    /// Decodes at most `max_len` bytes, all of which must be used.
    pub fn decode_bounded(bytes: &[u8], max_len: usize) -> Result<Self, ProofDecodeError> {
        if bytes.len() > max_len {
            return Err(ProofDecodeError::TooLarge {
                len: bytes.len(),
                max: max_len,
            });
        }
        let p = Self::decode_all(&mut &bytes[..]).map_err(|_| ProofDecodeError::Malformed)?;
        if p.version != PROOF_VERSION {
            return Err(ProofDecodeError::UnsupportedVersion(p.version));
        }
        Ok(p)
    }

    /// Domain-separated hash of the encoding.
    pub fn hash(&self) -> Hash {
        tagged(PROOF_TAG, &[&self.encode()])
    }
}

//! The JSON [`TraceManifest`] that accompanies a trace.

use super::{TraceError, TraceHeader, TraceReader, MANIFEST_FORMAT, VERSION};
use crate::hash::{hex32, Hash};
use crate::state::StateFields;
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek};

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

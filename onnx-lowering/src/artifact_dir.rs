//! The artifact directory: what `opml lower` writes and `opml run` reads.
//!
//! ```text
//! module.wasm   the generated module (code, weights and schedule as data)
//! meta.json     ArtifactMeta: format, versions, code hash, memory size,
//!               codegen options, tensors and nodes of the integer program,
//!               per-node step and fuel boundaries, input/output quantization
//! ```
//!
//! The directory is written to a temporary sibling and renamed into place,
//! so a failed or interrupted lowering never leaves half an artifact. On
//! load, the code hash in `meta.json` must match `module.wasm`, and the
//! constants are read back from the module's data segments.

use crate::artifact::{Artifact, NodeBoundary};
use crate::codegen::{CodegenOptions, Generated};
use crate::error::LowerError;
use crate::ir::Program;
use opml_runtime::hash::code_hash;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// `meta.json` format name.
pub const META_FORMAT: &str = "opml-model";
/// `meta.json` format version.
pub const META_VERSION: u32 = 1;
/// Version of the lowering that made an artifact (part of reproducibility).
pub const LOWERING_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Everything about an artifact except its code.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArtifactMeta {
    pub format: String,
    pub version: u32,
    pub lowering_version: String,
    /// `opml_runtime::hash::code_hash` of `module.wasm`, hex: the model id.
    pub code_hash: String,
    pub memory_pages: u32,
    pub options: CodegenOptions,
    /// Tensors and nodes (constant bytes live in `module.wasm`).
    pub program: Program,
    pub nodes: Vec<NodeBoundary>,
    /// Total steps and fuel of one run.
    pub steps: u64,
    pub fuel: u64,
}

impl Artifact {
    /// The metadata of this artifact.
    pub fn meta(&self) -> ArtifactMeta {
        let last = self.nodes.last();
        ArtifactMeta {
            format: META_FORMAT.into(),
            version: META_VERSION,
            lowering_version: LOWERING_VERSION.into(),
            code_hash: hex::encode(code_hash(&self.generated.wasm)),
            memory_pages: self.generated.memory_pages,
            options: self.options,
            program: self.program.clone(),
            nodes: self.nodes.clone(),
            steps: last.map_or(0, |n| n.end_step),
            fuel: last.map_or(0, |n| n.end_fuel),
        }
    }

    /// Writes `module.wasm` and `meta.json` into `dir`, atomically: the
    /// directory appears complete or not at all (an existing one is replaced).
    pub fn save(&self, dir: &Path) -> Result<(), LowerError> {
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)?;
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("artifact");
        let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        let meta = serde_json::to_vec_pretty(&self.meta())
            .map_err(|e| LowerError::Codegen(e.to_string()))?;
        for (file, bytes) in [
            ("module.wasm", &self.generated.wasm[..]),
            ("meta.json", &meta[..]),
        ] {
            use std::io::Write;
            let mut f = std::fs::File::create(tmp.join(file))?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::rename(&tmp, dir)?;
        Ok(())
    }

    /// Reads an artifact directory written by [`Artifact::save`].
    pub fn load(dir: &Path) -> Result<Self, LowerError> {
        let bad = |what: String| LowerError::InvalidProgram(format!("{}: {what}", dir.display()));
        let wasm = std::fs::read(dir.join("module.wasm"))?;
        let meta: ArtifactMeta = serde_json::from_slice(&std::fs::read(dir.join("meta.json"))?)
            .map_err(|e| bad(format!("meta.json: {e}")))?;
        if meta.format != META_FORMAT || meta.version != META_VERSION {
            return Err(bad(format!(
                "unsupported meta format {} v{}",
                meta.format, meta.version
            )));
        }
        if meta.code_hash != hex::encode(code_hash(&wasm)) {
            return Err(bad(
                "module.wasm does not match the code hash in meta.json".into()
            ));
        }
        let segments = data_segments(&wasm).map_err(|e| bad(format!("module.wasm: {e}")))?;
        let pages_bytes = u64::from(meta.memory_pages) * 65536;
        for (off, bytes) in &segments {
            if u64::from(*off) + bytes.len() as u64 > pages_bytes {
                return Err(bad("data segment outside memory".into()));
            }
        }
        for t in &meta.program.tensors {
            if u64::from(t.end()) > pages_bytes {
                return Err(bad(format!("tensor {} outside memory", t.name)));
            }
        }
        if meta.nodes.len() != meta.program.nodes.len() || meta.program.nodes.is_empty() {
            return Err(bad("node boundaries do not match the program".into()));
        }
        let artifact = Self {
            program: meta.program,
            generated: Generated {
                wasm,
                segments,
                memory_pages: meta.memory_pages,
            },
            options: meta.options,
            nodes: meta.nodes,
            cache: Default::default(),
        };
        artifact.program.validate(&artifact.initial_image())?;
        Ok(artifact)
    }
}

/// Active data segments `(offset, bytes)` of a module.
fn data_segments(wasm: &[u8]) -> Result<Vec<(u32, Vec<u8>)>, String> {
    let mut out = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        if let wasmparser::Payload::DataSection(reader) = payload.map_err(|e| e.to_string())? {
            for d in reader {
                let d = d.map_err(|e| e.to_string())?;
                let wasmparser::DataKind::Active { offset_expr, .. } = d.kind else {
                    return Err("passive data segment".into());
                };
                match offset_expr
                    .get_operators_reader()
                    .read()
                    .map_err(|e| e.to_string())?
                {
                    wasmparser::Operator::I32Const { value } => {
                        out.push((value as u32, d.data.to_vec()))
                    }
                    other => return Err(format!("data offset {other:?}")),
                }
            }
        }
    }
    Ok(out)
}

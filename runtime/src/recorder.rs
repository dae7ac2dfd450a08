//! Recording a run to disk, and rebuilding any of its states from there.
//!
//! A recorded run is a directory:
//!
//! ```text
//! manifest.json              TraceManifest (written last, atomically: a run
//!                            without it is incomplete)
//! trace.bin                  the step trace (crate::trace format)
//! checkpoint-000000000000.bin  full snapshots (crate::checkpoint format) at
//! checkpoint-000000001024.bin  step 0, every K steps, and the final step
//! ...
//! ```
//!
//! [`RecordedRun::rebuild`] restores the nearest checkpoint at or before the
//! wanted step and replays the rest, checking every replayed root against
//! the trace, so a state is never more than K steps of work away.

use crate::checkpoint::{CheckpointError, Snapshot};
use crate::hash::Hash;
use crate::limits::PAGE_SIZE;
use crate::proof::OneStepProof;
use crate::sandbox::{Program, Sandbox, SandboxError};
use crate::state::StateFields;
use crate::trace::{
    CheckpointEntry, TraceError, TraceHeader, TraceManifest, TraceReader, TraceRecord, TraceWriter,
};
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Name of the manifest in a run directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Name of the trace in a run directory.
pub const TRACE_FILE: &str = "trace.bin";
/// Steps between checkpoints unless told otherwise (see BENCHMARKS.md).
pub const DEFAULT_CHECKPOINT_INTERVAL: u64 = 256;

/// File name of the checkpoint at `step`.
pub fn checkpoint_file(step: u64) -> String {
    format!("checkpoint-{step:012}.bin")
}

/// How to record.
#[derive(Clone, Copy, Debug)]
pub struct RecordOptions {
    /// Steps between checkpoints; 0 keeps only the first and last state.
    pub checkpoint_interval: u64,
    /// Stop after this many steps even if the machine still runs.
    pub max_steps: u64,
}

impl Default for RecordOptions {
    fn default() -> Self {
        Self {
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            max_steps: u64::MAX,
        }
    }
}

/// Recording or reading a run failed.
#[derive(Debug)]
pub enum RecordError {
    Sandbox(SandboxError),
    Trace(TraceError),
    Checkpoint(CheckpointError),
    Io(std::io::Error),
    /// The run directory does not belong to this program, or disagrees with
    /// itself (a checkpoint or replayed root differs from the trace).
    Mismatch(String),
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sandbox(e) => write!(f, "{e}"),
            Self::Trace(e) => write!(f, "trace: {e}"),
            Self::Checkpoint(e) => write!(f, "checkpoint: {e}"),
            Self::Io(e) => write!(f, "i/o: {e}"),
            Self::Mismatch(e) => write!(f, "recorded run is inconsistent: {e}"),
        }
    }
}

impl std::error::Error for RecordError {}

impl From<SandboxError> for RecordError {
    fn from(e: SandboxError) -> Self {
        Self::Sandbox(e)
    }
}
impl From<TraceError> for RecordError {
    fn from(e: TraceError) -> Self {
        Self::Trace(e)
    }
}
impl From<CheckpointError> for RecordError {
    fn from(e: CheckpointError) -> Self {
        Self::Checkpoint(e)
    }
}
impl From<std::io::Error> for RecordError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// Runs `sandbox` (which must be at step 0) to its end or `max_steps`,
/// writing the trace, checkpoints and manifest into `dir`. `progress` sees
/// every new state.
pub fn record(
    sandbox: &mut Sandbox,
    dir: &Path,
    opts: &RecordOptions,
    mut progress: impl FnMut(&StateFields),
) -> Result<TraceManifest, RecordError> {
    if sandbox.state().step != 0 {
        return Err(RecordError::Mismatch(
            "recording must start at step 0".into(),
        ));
    }
    std::fs::create_dir_all(dir)?;
    let limits = sandbox.program().info().limits;
    let header = TraceHeader::new(
        limits.chunk_log2,
        sandbox.program().code_hash(),
        sandbox.state_root(),
    );
    let trace = File::create(dir.join(TRACE_FILE))?;
    let mut writer = TraceWriter::new(BufWriter::new(trace), &header)?;
    let mut checkpoints = vec![save_checkpoint(sandbox, dir)?];
    while !sandbox.state().status.is_terminal() && sandbox.state().step < opts.max_steps {
        let s = sandbox.step()?;
        writer.push(&TraceRecord {
            step: s.step,
            fuel: s.fuel,
            state_root: s.hash(),
        })?;
        progress(&s);
        if opts.checkpoint_interval > 0 && s.step % opts.checkpoint_interval == 0 {
            checkpoints.push(save_checkpoint(sandbox, dir)?);
        }
    }
    let last = sandbox.state();
    if checkpoints.last().map(|c| c.step) != Some(last.step) {
        checkpoints.push(save_checkpoint(sandbox, dir)?);
    }
    let file = writer.finish()?.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    let manifest = TraceManifest::new(
        &header,
        last,
        TRACE_FILE,
        opts.checkpoint_interval,
        checkpoints,
    );
    write_atomic(
        &dir.join(MANIFEST_FILE),
        manifest.to_json_pretty().as_bytes(),
    )?;
    Ok(manifest)
}

fn save_checkpoint(sandbox: &Sandbox, dir: &Path) -> Result<CheckpointEntry, RecordError> {
    let snap = sandbox.snapshot();
    let file = checkpoint_file(snap.fields.step);
    snap.save_atomic(&dir.join(&file))?;
    Ok(CheckpointEntry {
        step: snap.fields.step,
        state_root: snap.fields.hash(),
        file,
    })
}

/// Writes `bytes` to `path` via a temporary file, fsync and rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        if let Ok(d) = File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// A recorded run opened for reading.
pub struct RecordedRun {
    dir: PathBuf,
    program: Arc<Program>,
    manifest: TraceManifest,
    trace: TraceReader<BufReader<File>>,
}

impl RecordedRun {
    /// Opens the run in `dir`, checking it belongs to `program` and that the
    /// trace agrees with the manifest.
    pub fn open(dir: &Path, program: Arc<Program>) -> Result<Self, RecordError> {
        let manifest =
            TraceManifest::from_json(&std::fs::read_to_string(dir.join(MANIFEST_FILE))?)?;
        if manifest.code_hash != program.code_hash() {
            return Err(RecordError::Mismatch(
                "run was recorded for another module".into(),
            ));
        }
        let mut trace =
            TraceReader::open(BufReader::new(File::open(dir.join(&manifest.trace_file))?))?;
        manifest.check_trace(&mut trace)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            program,
            manifest,
            trace,
        })
    }

    pub fn manifest(&self) -> &TraceManifest {
        &self.manifest
    }

    /// The state root after `step` steps.
    pub fn root_at(&mut self, step: u64) -> Result<Hash, RecordError> {
        Ok(self.trace.root_at(step)?)
    }

    /// The machine as it was after `step` steps: the nearest checkpoint at or
    /// before it, replayed forward with every root checked against the trace.
    pub fn rebuild(&mut self, step: u64) -> Result<Sandbox, RecordError> {
        if step > self.manifest.steps {
            return Err(RecordError::Mismatch(format!(
                "step {step} is beyond the run's {} steps",
                self.manifest.steps
            )));
        }
        let at = self
            .manifest
            .checkpoints
            .partition_point(|c| c.step <= step);
        let entry = at
            .checked_sub(1)
            .and_then(|i| self.manifest.checkpoints.get(i))
            .ok_or_else(|| RecordError::Mismatch("no checkpoint at or before the step".into()))?
            .clone();
        let max_memory = u64::from(self.program.info().limits.max_pages) * PAGE_SIZE;
        let file = File::open(self.dir.join(&entry.file))?;
        let snap = Snapshot::read_from(BufReader::new(file), max_memory)?;
        if snap.fields.step != entry.step || snap.fields.hash() != entry.state_root {
            return Err(RecordError::Mismatch(format!(
                "checkpoint {} is not the state it names",
                entry.file
            )));
        }
        let mut sandbox = Sandbox::restore(self.program.clone(), &snap)?;
        if self.trace.root_at(entry.step)? != sandbox.state_root() {
            return Err(RecordError::Mismatch(format!(
                "checkpoint {} disagrees with the trace",
                entry.file
            )));
        }
        while sandbox.state().step < step {
            let s = sandbox.step()?;
            if self.trace.root_at(s.step)? != s.hash() {
                return Err(RecordError::Mismatch(format!(
                    "replayed step {} differs from the trace",
                    s.step
                )));
            }
        }
        Ok(sandbox)
    }

    /// The one-step proof of the step from `step` to `step + 1`.
    pub fn prove(&mut self, step: u64) -> Result<OneStepProof, RecordError> {
        if step >= self.manifest.steps {
            return Err(RecordError::Mismatch(format!(
                "no step after {step}: the run has {} steps",
                self.manifest.steps
            )));
        }
        Ok(self.rebuild(step)?.prove_next_step()?)
    }
}

//! Command-line arguments (clap).

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// opml: verifiable ML inference, the optimistic way.
#[derive(Debug, Parser)]
#[command(name = "opml", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Lower an ONNX model to an artifact directory (module.wasm, meta.json).
    Lower(LowerArgs),
    /// Run a lowered model on an input.
    Run(RunArgs),
    /// Prove one step of a recorded run (and check the proof).
    Prove(ProveArgs),
    /// Check a one-step proof against a pre-state root.
    Verify(VerifyArgs),
    /// Play a dispute game between an honest party and an adversary.
    Dispute(super::dispute::DisputeArgs),
    /// Start the HTTP service.
    Serve(ServeArgs),
    /// Inspect a trace (file or run directory), or print a slice of it.
    Trace(TraceArgs),
    /// Re-execute a recorded run against an artifact; report the first bad step.
    Audit(AuditArgs),
    /// Download a file from the service (a trace, module.wasm, a proof),
    /// resuming a partial one with HTTP Range.
    Download(DownloadArgs),
}

#[derive(Debug, clap::Args)]
pub struct DownloadArgs {
    /// The URL, e.g. http://127.0.0.1:8080/v1/tasks/ID/trace.
    pub url: String,
    /// The file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue a partial file instead of starting over.
    #[arg(long)]
    pub resume: bool,
    /// Bearer token.
    #[arg(long, env = "OPML_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct TraceArgs {
    /// A trace file (trace.bin) or a run directory (with manifest.json).
    pub path: PathBuf,
    /// First step of a slice to print.
    #[arg(long)]
    pub from: Option<u64>,
    /// Last step of a slice to print (inclusive).
    #[arg(long)]
    pub to: Option<u64>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Artifact directory (module.wasm, meta.json).
    pub dir: PathBuf,
    /// Run directory (manifest.json, trace.bin, checkpoints), or a bare
    /// trace.bin as downloaded from the service (then --input is needed).
    #[arg(long)]
    pub trace: PathBuf,
    /// The task's input (.npy, .npz or .json), for a bare trace.bin: the
    /// run is then re-executed from step 0 in one thread.
    #[arg(long)]
    pub input: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Data directory (database, artifacts, traces); default: the user's data dir.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Bearer token required on write endpoints.
    #[arg(long, env = "OPML_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Largest request body, bytes.
    #[arg(long, default_value_t = 64 << 20)]
    pub body_limit: usize,
    /// Tasks executed at once.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Tasks waiting for a worker before new ones get 503.
    #[arg(long, default_value_t = 64)]
    pub queue_depth: usize,
    /// Requests handled at once before new ones get 503.
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,
    /// Seconds a request may take.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Logs as JSON lines (to stderr).
    #[arg(long)]
    pub log_json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ProveArgs {
    /// Artifact directory.
    pub dir: PathBuf,
    /// Run directory recorded by `opml run --engine wasm --trace`.
    #[arg(long)]
    pub trace: PathBuf,
    /// Prove the step from this state to the next.
    #[arg(long)]
    pub step: u64,
    /// Write the proof's SCALE bytes here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Artifact directory, or the module.wasm file, the proof is about.
    pub dir: PathBuf,
    /// Proof file (SCALE bytes from `opml prove --out`).
    #[arg(long)]
    pub proof: PathBuf,
    /// The pre-state root (hex) the proof must start from.
    #[arg(long)]
    pub pre_root: String,
    /// The expected post-state root (hex); exit code 1 if it differs.
    #[arg(long)]
    pub post_root: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct LowerArgs {
    /// The ONNX model.
    pub model: PathBuf,
    /// Artifact directory to write (replaced atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Fix an input's shape: NAME=1x3x32x32 (repeatable).
    #[arg(long)]
    pub input_shape: Vec<String>,
    /// Calibration data (.npz or .npy; first axis = samples): the only array
    /// of a one-input model, or one array per input named after it.
    #[arg(long)]
    pub calibrate: Option<PathBuf>,
    /// The array of the calibration .npz to use, if it holds several.
    #[arg(long)]
    pub calibrate_array: Option<String>,
    /// Print a machine-readable report.
    #[arg(long)]
    pub json: bool,
}

/// Which engine executes a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// Every step in the metered Wasm sandbox.
    Wasm,
    /// The native executor of the same integer program.
    Native,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Artifact directory written by `opml lower`.
    pub dir: PathBuf,
    /// Input tensors: .npy (one input), .npz or .json (named after the model's inputs).
    #[arg(long)]
    pub input: PathBuf,
    #[arg(long, value_enum, default_value_t = Engine::Native)]
    pub engine: Engine,
    /// Record the run (trace, checkpoints, manifest) into this directory (wasm engine only).
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Write the outputs here (.npy for one output, .npz or .json).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Print a machine-readable report.
    #[arg(long)]
    pub json: bool,
}

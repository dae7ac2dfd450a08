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
    /// Artifact directory (the module the proof is about).
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
    /// Calibration data (.npz or .npy; first axis = samples) for a one-input model.
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
    /// Write the outputs here (.npy for one output, or .json).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Print a machine-readable report.
    #[arg(long)]
    pub json: bool,
}

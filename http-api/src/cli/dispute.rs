//! `opml dispute`: a whole dispute game between an honest party and a
//! chosen adversary on a lowered model.

use super::error::CliError;
use super::tensors::read_model_inputs;
use opml_fraud_proof::agents::Cheat;
use opml_fraud_proof::core::{Party, MAX_K};
use opml_fraud_proof::play::{play, GameReport, PlayConfig};
use opml_lowering::Artifact;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub struct DisputeArgs {
    /// Artifact directory written by `opml lower`.
    pub dir: PathBuf,
    /// Input tensors: .npy (one input), .npz or .json.
    #[arg(long)]
    pub input: PathBuf,
    /// The adversary: none, wrong-output, wrong-root, stage1-lie, stage2-lie,
    /// wrong-intermediate, equivocate, silent, invalid-proof (a cheating
    /// server), false-challenge, silent-challenger (a cheating challenger).
    #[arg(long)]
    pub cheat: String,
    /// Where the cheat starts: a step (default N/2), or for silence the
    /// number of moves made first (default 1).
    #[arg(long)]
    pub at: Option<u64>,
    /// Arity of the bisection (2..=16).
    #[arg(long, default_value_t = 2)]
    pub k: u32,
    #[arg(long)]
    pub json: bool,
}

/// Trace bytes kept by one side.
#[derive(Debug, Serialize)]
pub struct SideReport {
    pub strategy: String,
    pub stage1_trace_bytes: u64,
    pub stage2_trace_bytes: u64,
    pub stage1_ms: f64,
    pub stage2_ms: f64,
    pub prove_ms: f64,
}

/// What `opml dispute --json` prints.
#[derive(Debug, Serialize)]
pub struct DisputeReport {
    /// "defender", "challenger", or "none" (the claim was not disputed).
    pub winner: String,
    pub reason: Option<String>,
    pub rounds: u32,
    pub round_bound: u32,
    pub k: u32,
    pub steps: u64,
    pub disputed_node: Option<String>,
    pub disputed_node_index: Option<usize>,
    pub disputed_step: u64,
    pub one_step_proof_bytes: Option<usize>,
    pub rejected_moves: Vec<String>,
    pub defender: SideReport,
    pub challenger: SideReport,
    pub single_stage_trace_bytes: u64,
    pub verify_ms: f64,
    pub total_ms: f64,
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn dispute(args: &DisputeArgs) -> Result<DisputeReport, CliError> {
    if !(2..=MAX_K).contains(&args.k) {
        return Err(CliError::BadInput(format!("--k must be in 2..={MAX_K}")));
    }
    let artifact = Arc::new(Artifact::load(&args.dir)?);
    let inputs = read_model_inputs(&artifact, &args.input)?;
    let n = artifact.nodes.last().map_or(0, |x| x.end_step);
    let silent = args.cheat.starts_with("silent");
    let at = args.at.unwrap_or(if silent { 1 } else { n / 2 });
    if !silent && args.at.is_some() && (at == 0 || at > n) {
        return Err(CliError::BadInput(format!(
            "--at must be a step in 1..={n}"
        )));
    }
    let cheat = Cheat::parse(&args.cheat, at).ok_or_else(|| {
        CliError::BadInput(format!(
            "unknown --cheat {}; one of: {}",
            args.cheat,
            Cheat::NAMES.join(", ")
        ))
    })?;
    let (d, c) = match cheat.role() {
        Some(Party::Challenger) => (Cheat::None, cheat),
        _ => (cheat, Cheat::None),
    };
    let cfg = PlayConfig {
        k: args.k,
        window: 10,
    };
    let r =
        play(artifact.clone(), &inputs, d, c, cfg).map_err(|e| CliError::Failed(e.to_string()))?;
    Ok(report(&r))
}

fn side(
    strategy: Cheat,
    t: &opml_fraud_proof::play::TraceBytes,
    time: &opml_fraud_proof::agents::Timings,
) -> SideReport {
    SideReport {
        strategy: format!("{strategy:?}"),
        stage1_trace_bytes: t.stage1,
        stage2_trace_bytes: t.stage2,
        stage1_ms: ms(time.stage1),
        stage2_ms: ms(time.stage2),
        prove_ms: ms(time.prove),
    }
}

fn report(r: &GameReport) -> DisputeReport {
    DisputeReport {
        winner: match r.winner {
            Some(Party::Defender) => "defender".into(),
            Some(Party::Challenger) => "challenger".into(),
            None => "none".into(),
        },
        reason: r.reason.map(|x| format!("{x:?}")),
        rounds: r.rounds,
        round_bound: r.round_bound,
        k: r.k,
        steps: r.steps,
        disputed_node: r.disputed_node.as_ref().map(|x| x.1.clone()),
        disputed_node_index: r.disputed_node.as_ref().map(|x| x.0),
        disputed_step: r.lo,
        one_step_proof_bytes: r.proof_bytes,
        rejected_moves: r.rejected.clone(),
        defender: side(r.defender, &r.defender_trace, &r.defender_time),
        challenger: side(r.challenger, &r.challenger_trace, &r.challenger_time),
        single_stage_trace_bytes: r.single_stage_bytes,
        verify_ms: ms(r.verify_time),
        total_ms: ms(r.total_time),
    }
}

pub fn print(r: &DisputeReport) {
    println!(
        "winner: {} ({})",
        r.winner,
        r.reason
            .as_deref()
            .unwrap_or("the challenger agreed with the claim")
    );
    println!(
        "rounds: {} (k = {}, N = {} steps, bound {})",
        r.rounds, r.k, r.steps, r.round_bound
    );
    if let Some(node) = &r.disputed_node {
        println!(
            "disputed: node {} ({}), step {}",
            r.disputed_node_index.unwrap_or(0),
            node,
            r.disputed_step
        );
    }
    match r.one_step_proof_bytes {
        Some(b) => println!(
            "one-step proof: {b} bytes, verified in {:.2} ms",
            r.verify_ms
        ),
        None => println!("one-step proof: none accepted"),
    }
    for m in &r.rejected_moves {
        println!("rejected move: {m}");
    }
    for (name, s) in [("defender", &r.defender), ("challenger", &r.challenger)] {
        println!(
            "{name} ({}): trace {} B stage 1 + {} B stage 2 (single-stage: {} B); {:.1} ms native, {:.1} ms one node in the VM, {:.1} ms proving",
            s.strategy,
            s.stage1_trace_bytes,
            s.stage2_trace_bytes,
            r.single_stage_trace_bytes,
            s.stage1_ms,
            s.stage2_ms,
            s.prove_ms
        );
    }
    println!("total: {:.1} ms", r.total_ms);
}

//! `opml audit`: re-execute a downloaded run against an artifact.
//!
//! 1. The step-0 checkpoint must be the trace's initial state; the task's
//!    inputs are read from its memory.
//! 2. The integer program runs natively; its node-boundary roots are checked
//!    against the trace (cheap, and it pins down the first bad node).
//! 3. Every node is re-executed in the sandbox, one thread per node
//!    (`std::thread::scope`), from the nearest checkpoint, checking the root
//!    of every step against the trace. The first differing step is the one
//!    to dispute.

use super::args::AuditArgs;
use super::error::CliError;
use indicatif::{ProgressBar, ProgressStyle};
use opml_lowering::Artifact;
use opml_runtime::checkpoint::Snapshot;
use opml_runtime::limits::PAGE_SIZE;
use opml_runtime::recorder::MANIFEST_FILE;
use opml_runtime::trace::{TraceManifest, TraceReader};
use opml_runtime::{Hash, Sandbox};
use serde::Serialize;
use std::io::BufReader;
use std::path::Path;

/// What `opml audit --json` prints.
#[derive(Debug, Serialize)]
pub struct AuditReport {
    pub steps: u64,
    pub nodes: usize,
    /// Nodes whose end roots agree with the native executor.
    pub native_nodes_ok: usize,
    /// The first step whose root in the trace differs from re-execution.
    pub first_bad_step: Option<u64>,
    /// The node that step belongs to.
    pub first_bad_node: Option<String>,
    pub ok: bool,
}

fn bad(e: impl std::fmt::Display) -> CliError {
    CliError::BadInput(e.to_string())
}

/// The trace's roots, loaded once (48 bytes per step).
fn trace_roots(dir: &Path, m: &TraceManifest) -> Result<Vec<Hash>, CliError> {
    let f = std::fs::File::open(dir.join(&m.trace_file)).map_err(bad)?;
    let mut r = TraceReader::open(BufReader::new(f)).map_err(bad)?;
    m.check_trace(&mut r).map_err(bad)?;
    let mut roots = vec![r.header().initial_root];
    if m.steps > 0 {
        for rec in r.records(1, m.steps).map_err(bad)? {
            roots.push(rec.map_err(bad)?.state_root);
        }
    }
    Ok(roots)
}

/// A bare trace file and the task's input: the sandbox replays the run
/// from step 0, comparing every root (no checkpoints, so one thread).
fn audit_bare(
    args: &AuditArgs,
    artifact: &Artifact,
    input: &Path,
) -> Result<AuditReport, CliError> {
    let inputs = super::tensors::read_model_inputs(artifact, input)?;
    let f = std::fs::File::open(&args.trace).map_err(bad)?;
    let mut trace = TraceReader::open(BufReader::new(f)).map_err(bad)?;
    let mut sb = artifact.sandbox(&inputs)?;
    if trace.header().code_hash != sb.program().code_hash() {
        return Err(bad("the trace was recorded for another module"));
    }
    let steps = trace.len();
    let native = artifact.run_native(&inputs)?;
    let mut roots = vec![trace.header().initial_root];
    if steps > 0 {
        for rec in trace.records(1, steps).map_err(bad)? {
            roots.push(rec.map_err(bad)?.state_root);
        }
    }
    let native_nodes_ok = artifact
        .nodes
        .iter()
        .zip(&native.boundaries[1..])
        .take_while(|(n, s)| roots.get(n.end_step as usize) == Some(&s.hash()))
        .count();
    let bar = progress(args.json, steps, "steps");
    let mut first_bad_step = (sb.state_root() != roots[0]).then_some(0);
    while first_bad_step.is_none() && !sb.state().status.is_terminal() && sb.state().step < steps {
        let s = sb.step().map_err(bad)?;
        bar.inc(1);
        if roots[s.step as usize] != s.hash() {
            first_bad_step = Some(s.step);
        }
    }
    bar.finish_and_clear();
    if first_bad_step.is_none() && sb.state().step != steps {
        first_bad_step = Some(sb.state().step + 1);
    }
    Ok(report(artifact, steps, native_nodes_ok, first_bad_step))
}

fn progress(json: bool, len: u64, what: &str) -> ProgressBar {
    let bar = if json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(len)
    };
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {what} {{elapsed_precise}}"
        ))
        .unwrap_or(ProgressStyle::default_bar()),
    );
    bar
}

fn report(
    artifact: &Artifact,
    steps: u64,
    native_nodes_ok: usize,
    first_bad_step: Option<u64>,
) -> AuditReport {
    let first_bad_node = first_bad_step.and_then(|s| {
        artifact
            .nodes
            .iter()
            .find(|n| s <= n.end_step)
            .map(|n| n.name.clone())
    });
    AuditReport {
        steps,
        nodes: artifact.nodes.len(),
        native_nodes_ok,
        ok: first_bad_step.is_none(),
        first_bad_step,
        first_bad_node,
    }
}

pub fn audit(args: &AuditArgs) -> Result<AuditReport, CliError> {
    let artifact = Artifact::load(&args.dir)?;
    if !args.trace.join(MANIFEST_FILE).exists() {
        let input = args.input.as_deref().ok_or_else(|| {
            bad(format!(
                "{} has no manifest.json: pass the task's input with --input",
                args.trace.display()
            ))
        })?;
        return audit_bare(args, &artifact, input);
    }
    let program = artifact.compiled()?;
    let manifest = TraceManifest::from_json(
        &std::fs::read_to_string(args.trace.join(MANIFEST_FILE)).map_err(bad)?,
    )
    .map_err(bad)?;
    if manifest.code_hash != program.code_hash() {
        return Err(bad("the run was recorded for another module"));
    }
    let roots = trace_roots(&args.trace, &manifest)?;
    let max_memory = u64::from(program.info().limits.max_pages) * PAGE_SIZE;
    let load = |step: u64| -> Result<Sandbox, CliError> {
        let entry = manifest
            .checkpoints
            .iter()
            .rev()
            .find(|c| c.step <= step)
            .ok_or_else(|| bad(format!("no checkpoint at or before step {step}")))?;
        let snap = Snapshot::load(&args.trace.join(&entry.file), max_memory).map_err(bad)?;
        let sb = Sandbox::restore(program.clone(), &snap).map_err(bad)?;
        if sb.state().step != entry.step || sb.state_root() != entry.state_root {
            return Err(bad(format!(
                "checkpoint {} is not the state it names",
                entry.file
            )));
        }
        Ok(sb)
    };
    // 1. Inputs from the initial state.
    let start = load(0)?;
    if start.state_root() != roots[0] {
        return Err(bad(
            "the step-0 checkpoint is not the trace's initial state",
        ));
    }
    let p = &artifact.program;
    let inputs: Vec<Vec<u8>> = p
        .inputs
        .iter()
        .map(|t| {
            let t = &p.tensors[*t];
            let (a, n) = (t.offset as usize, t.bytes() as usize);
            start
                .memory()
                .get(a..a + n)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| bad("input outside memory"))
        })
        .collect::<Result<_, _>>()?;
    // 2. Natively, at node boundaries.
    let native = artifact.run_native(&inputs)?;
    let steps = manifest.steps;
    let native_nodes_ok = artifact
        .nodes
        .iter()
        .zip(&native.boundaries[1..])
        .take_while(|(n, s)| roots.get(n.end_step as usize) == Some(&s.hash()))
        .count();
    // 3. In the sandbox, nodes in parallel.
    let bar = progress(args.json, artifact.nodes.len() as u64, "nodes");
    let mut starts = vec![0u64];
    starts.extend(artifact.nodes.iter().map(|n| n.end_step));
    let results: Vec<Result<Option<u64>, CliError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = artifact
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let (from, to, native_start) = (starts[i], n.end_step, native.boundaries[i].hash());
                let (load, roots, bar) = (&load, &roots, &bar);
                scope.spawn(move || -> Result<Option<u64>, CliError> {
                    let mut sb = load(from)?;
                    while sb.state().step < from {
                        sb.step().map_err(bad)?;
                    }
                    // The node starts from the state the native run reached.
                    if sb.state_root() != native_start {
                        return Ok(Some(from));
                    }
                    while sb.state().step < to.min(steps) {
                        let s = sb.step().map_err(bad)?;
                        if roots.get(s.step as usize) != Some(&s.hash()) {
                            return Ok(Some(s.step));
                        }
                    }
                    bar.inc(1);
                    Ok(None)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(CliError::Failed("an audit thread panicked".into())))
            })
            .collect()
    });
    bar.finish_and_clear();
    let mut first_bad_step = None;
    for r in results {
        if let Some(s) = r? {
            first_bad_step = Some(first_bad_step.map_or(s, |f: u64| f.min(s)));
        }
    }
    let total = artifact.nodes.last().map_or(0, |n| n.end_step);
    if first_bad_step.is_none() && steps != total {
        first_bad_step = Some(steps.min(total) + u64::from(steps > total));
    }
    Ok(report(&artifact, steps, native_nodes_ok, first_bad_step))
}

/// Human-readable report.
pub fn print(r: &AuditReport) {
    println!("steps       {} in {} nodes", r.steps, r.nodes);
    println!(
        "native      {} of {} node boundaries agree",
        r.native_nodes_ok, r.nodes
    );
    match (&r.first_bad_step, &r.first_bad_node) {
        (Some(s), node) => println!(
            "FIRST BAD   step {s} (node {})",
            node.as_deref().unwrap_or("past the last node")
        ),
        (None, _) => println!("OK          every step re-executes to the trace's root"),
    }
}

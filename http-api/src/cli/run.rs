//! `opml run`: a task on the wasm or native engine.

use super::args::{Engine, RunArgs};
use super::error::CliError;
use super::tensors::{read_model_inputs, write_outputs, NamedTensor};
use indicatif::{ProgressBar, ProgressStyle};
use opml_lowering::quant::dequantize;
use opml_lowering::{Artifact, Run};
use opml_runtime::recorder::{record, RecordOptions, RecordedRun};
use serde::Serialize;

/// State at the end of one node.
#[derive(Debug, Serialize)]
pub struct NodeRoot {
    pub node: String,
    pub step: u64,
    pub fuel: u64,
    pub root: String,
}

/// What `opml run --json` prints.
#[derive(Debug, Serialize)]
pub struct RunReport {
    pub engine: String,
    pub outputs: Vec<OutputReport>,
    pub initial_root: String,
    pub final_root: String,
    pub status: opml_runtime::Status,
    pub steps: u64,
    pub fuel: u64,
    pub node_roots: Vec<NodeRoot>,
}

#[derive(Debug, Serialize)]
pub struct OutputReport {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

pub fn run(args: &RunArgs) -> Result<RunReport, CliError> {
    let artifact = Artifact::load(&args.dir)?;
    let p = &artifact.program;
    let inputs = read_model_inputs(&artifact, &args.input)?;
    let run = match (args.engine, &args.trace) {
        (Engine::Native, Some(_)) => {
            return Err(CliError::BadInput(
                "--trace records the sandbox: use --engine wasm".into(),
            ))
        }
        (Engine::Native, None) => artifact.run_native(&inputs)?,
        (Engine::Wasm, None) => artifact.run_wasm(&inputs)?,
        (Engine::Wasm, Some(dir)) => run_recorded(&artifact, &inputs, dir, args.json)?,
    };
    let outputs: Vec<NamedTensor> = p
        .outputs
        .iter()
        .map(|id| {
            let t = &p.tensors[*id];
            NamedTensor {
                name: t.name.clone(),
                shape: t.shape.iter().map(|d| *d as usize).collect(),
                data: dequantize(t, artifact.output(&run, *id)),
            }
        })
        .collect();
    if let Some(path) = &args.output {
        write_outputs(path, &outputs)?;
    }
    Ok(report(&artifact, args.engine, &run, outputs))
}

fn run_recorded(
    artifact: &Artifact,
    inputs: &[Vec<u8>],
    dir: &std::path::Path,
    json: bool,
) -> Result<Run, CliError> {
    let failed = |e: &dyn std::fmt::Display| CliError::Failed(e.to_string());
    let mut sb = artifact.sandbox(inputs)?;
    let total = artifact.nodes.last().map_or(0, |n| n.end_step);
    // Drawn on a terminal only, and never with --json.
    let bar = if json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    let bar = bar.with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} steps {elapsed_precise}")
            .unwrap_or(ProgressStyle::default_bar()),
    );
    // The node-boundary states come from the recording itself, not from
    // replaying checkpoints afterwards.
    let ends: Vec<u64> = artifact.nodes.iter().map(|n| n.end_step).collect();
    let mut boundaries = vec![sb.state()];
    record(&mut sb, dir, &RecordOptions::default(), |s| {
        bar.set_position(s.step);
        if ends.contains(&s.step) {
            boundaries.push(*s);
        }
    })
    .map_err(|e| failed(&e))?;
    bar.finish_and_clear();
    let mut recorded = RecordedRun::open(dir, sb.program().clone()).map_err(|e| failed(&e))?;
    for (n, state) in artifact.nodes.iter().zip(&boundaries[1..]) {
        if recorded.root_at(n.end_step).map_err(|e| failed(&e))? != state.hash() {
            return Err(CliError::Failed(format!(
                "trace disagrees at the end of node {}",
                n.name
            )));
        }
    }
    if boundaries.len() != artifact.nodes.len() + 1 {
        return Err(CliError::Failed(
            "the run ended before its last node".into(),
        ));
    }
    Ok(Run {
        boundaries,
        memory: sb.memory().to_vec(),
    })
}

fn report(artifact: &Artifact, engine: Engine, run: &Run, outputs: Vec<NamedTensor>) -> RunReport {
    let last = run.last();
    RunReport {
        engine: format!("{engine:?}").to_lowercase(),
        outputs: outputs
            .into_iter()
            .map(|o| OutputReport {
                name: o.name,
                shape: o.shape,
                values: o.data,
            })
            .collect(),
        initial_root: hex::encode(run.boundaries[0].hash()),
        final_root: hex::encode(last.hash()),
        status: last.status,
        steps: last.step,
        fuel: last.fuel,
        node_roots: node_roots(artifact, run),
    }
}

/// The state root after every node of `run`.
pub fn node_roots(artifact: &Artifact, run: &Run) -> Vec<NodeRoot> {
    artifact
        .nodes
        .iter()
        .zip(&run.boundaries[1..])
        .map(|(n, s)| NodeRoot {
            node: n.name.clone(),
            step: s.step,
            fuel: s.fuel,
            root: hex::encode(s.hash()),
        })
        .collect()
}

/// Human-readable report.
pub fn print(r: &RunReport) {
    println!("engine      {}", r.engine);
    for o in &r.outputs {
        println!("output      {} {:?} = {:?}", o.name, o.shape, o.values);
    }
    println!(
        "status      {:?} after {} steps, {} fuel",
        r.status, r.steps, r.fuel
    );
    println!("initial     {}", r.initial_root);
    for n in &r.node_roots {
        println!(
            "node        {:<24} step {:>8} fuel {:>12} root {}",
            n.node, n.step, n.fuel, n.root
        );
    }
    println!("final root  {}", r.final_root);
}

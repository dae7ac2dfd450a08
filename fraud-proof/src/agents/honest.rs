//! What an honest party knows about a task: the node-boundary states from
//! the native executor (stage 1), and, only for the one node a game narrows
//! to, every step root from the sandbox restored at the node's start
//! (stage 2), plus one-step proofs from there.

use opml_lowering::Artifact;
use opml_runtime::checkpoint::Snapshot;
use opml_runtime::{Hash, OneStepProof, Sandbox, StateFields};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes per step of the runtime's full trace format (a single-stage game
/// keeps one such record per step).
pub const FULL_TRACE_BYTES_PER_STEP: u64 = 48;

/// Why an agent could not compute something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentError(pub String);

impl std::fmt::Display for AgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::error::Error for AgentError {}

pub(crate) fn fail(e: impl std::fmt::Display) -> AgentError {
    AgentError(e.to_string())
}

/// Wall time an agent spent, by stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timings {
    /// Native run: node-boundary states.
    pub stage1: Duration,
    /// Node-start image, sandbox restore and stepping through one node.
    pub stage2: Duration,
    /// One-step proof generation.
    pub prove: Duration,
}

/// The stage-2 trace of one node.
#[derive(Clone, Debug)]
struct NodeTrace {
    node: usize,
    start: u64,
    snapshot: Snapshot,
    /// Roots at steps `start + 1 ..= end`.
    roots: Vec<Hash>,
}

/// An honest party's computation of one task.
#[derive(Clone, Debug)]
pub struct Knowledge {
    pub artifact: Arc<Artifact>,
    pub inputs: Vec<Vec<u8>>,
    /// States at step 0 and at the end of every node.
    pub boundaries: Vec<StateFields>,
    /// Memory at the end of the run.
    pub final_memory: Vec<u8>,
    pub node_ends: Vec<u64>,
    node: Option<NodeTrace>,
    pub timings: Timings,
}

impl Knowledge {
    /// Runs the task natively (stage 1).
    pub fn new(artifact: Arc<Artifact>, inputs: Vec<Vec<u8>>) -> Result<Self, AgentError> {
        let t = Instant::now();
        let run = artifact.run_native(&inputs).map_err(fail)?;
        let node_ends = artifact.nodes.iter().map(|n| n.end_step).collect();
        Ok(Knowledge {
            artifact,
            inputs,
            boundaries: run.boundaries,
            final_memory: run.memory,
            node_ends,
            node: None,
            timings: Timings {
                stage1: t.elapsed(),
                ..Timings::default()
            },
        })
    }

    /// N.
    pub fn steps(&self) -> u64 {
        self.node_ends.last().copied().unwrap_or(0)
    }

    /// The final state.
    pub fn final_state(&self) -> StateFields {
        *self.boundaries.last().expect("a run has an initial state")
    }

    /// Whether `step` is 0 or a node end (a stage-1 root).
    pub fn is_boundary(&self, step: u64) -> bool {
        step == 0 || self.node_ends.binary_search(&step).is_ok()
    }

    /// The node executing the step from `step` to `step + 1`.
    pub fn node_of_step(&self, step: u64) -> usize {
        self.node_ends.partition_point(|&e| e <= step)
    }

    /// The node whose stage-2 trace has been computed, if any.
    pub fn traced_node(&self) -> Option<usize> {
        self.node.as_ref().map(|n| n.node)
    }

    /// The honest state root at `step`.
    pub fn root(&mut self, step: u64) -> Result<Hash, AgentError> {
        if step > self.steps() {
            return Err(AgentError(format!("step {step} is past the end")));
        }
        if step == 0 {
            return Ok(self.boundaries[0].hash());
        }
        if let Ok(i) = self.node_ends.binary_search(&step) {
            return Ok(self.boundaries[i + 1].hash());
        }
        let t = self.trace_node(self.node_of_step(step))?;
        Ok(t.roots[(step - t.start - 1) as usize])
    }

    /// The sandbox at the start of `node`, rebuilt from the native image.
    fn node_start(&self, node: usize) -> Result<Snapshot, AgentError> {
        let memory = self
            .artifact
            .native_image_at(&self.inputs, node)
            .map_err(fail)?;
        Ok(Snapshot {
            code_hash: self.artifact.compiled().map_err(fail)?.code_hash(),
            fields: self.boundaries[node],
            memory,
        })
    }

    /// Computes (once) the stage-2 trace of `node` in the sandbox.
    fn trace_node(&mut self, node: usize) -> Result<&NodeTrace, AgentError> {
        if self.node.as_ref().map(|n| n.node) != Some(node) {
            let t = Instant::now();
            let snapshot = self.node_start(node)?;
            let program = self.artifact.compiled().map_err(fail)?;
            let mut sb = Sandbox::restore(program, &snapshot).map_err(fail)?;
            let start = snapshot.fields.step;
            let end = self.node_ends[node];
            let mut roots = Vec::with_capacity((end - start) as usize);
            while sb.state().step < end {
                roots.push(sb.step().map_err(fail)?.hash());
            }
            if roots.last() != Some(&self.boundaries[node + 1].hash()) {
                return Err(AgentError(format!(
                    "the sandbox and the native executor disagree at the end of node {node}"
                )));
            }
            self.node = Some(NodeTrace {
                node,
                start,
                snapshot,
                roots,
            });
            self.timings.stage2 += t.elapsed();
        }
        Ok(self.node.as_ref().expect("just computed"))
    }

    /// The one-step proof of the step from `step`.
    pub fn prove(&mut self, step: u64) -> Result<OneStepProof, AgentError> {
        if step >= self.steps() {
            return Err(AgentError(format!("no step after {step}")));
        }
        let node = self.node_of_step(step);
        let trace = self.trace_node(node)?.clone();
        let t = Instant::now();
        let program = self.artifact.compiled().map_err(fail)?;
        let mut sb = Sandbox::restore(program, &trace.snapshot).map_err(fail)?;
        while sb.state().step < step {
            sb.step().map_err(fail)?;
        }
        let proof = sb.prove_next_step().map_err(fail)?;
        self.timings.prove += t.elapsed();
        Ok(proof)
    }

    /// Bytes of roots kept: (stage 1, stage 2).
    pub fn trace_bytes(&self) -> (u64, u64) {
        let s1 = self.boundaries.len() as u64 * 32;
        let s2 = self.node.as_ref().map_or(0, |n| n.roots.len() as u64 * 32);
        (s1, s2)
    }

    /// Bytes of a full single-stage trace of the run.
    pub fn single_stage_bytes(&self) -> u64 {
        self.steps() * FULL_TRACE_BYTES_PER_STEP
    }
}

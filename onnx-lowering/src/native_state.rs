//! Native memory images at node boundaries, for dispute agents: the state a
//! party rebuilds a sandbox from to run one disputed node in the VM.

use crate::artifact::Artifact;
use crate::error::LowerError;
use crate::layout::{NODE_COUNTER, UNIT_COUNTER};
use crate::ops::family::run_native;

impl Artifact {
    /// The memory image after nodes `0..node` ran natively on `inputs`
    /// (`node = 0`: the initial image with the inputs written). Together with
    /// `run_native(inputs)?.boundaries[node]` it is a full machine state at
    /// step `nodes[node - 1].end_step`, identical to the sandbox's.
    pub fn native_image_at(&self, inputs: &[Vec<u8>], node: usize) -> Result<Vec<u8>, LowerError> {
        if node > self.program.nodes.len() {
            return Err(LowerError::BadInput(format!(
                "node {node} is past the last of {}",
                self.program.nodes.len()
            )));
        }
        if inputs.len() != self.program.inputs.len() {
            return Err(LowerError::BadInput(format!(
                "{} inputs given, the model takes {}",
                inputs.len(),
                self.program.inputs.len()
            )));
        }
        let mut mem = self.initial_image();
        for (bytes, t) in inputs.iter().zip(&self.program.inputs) {
            let t = &self.program.tensors[*t];
            if bytes.len() != t.bytes() as usize {
                return Err(LowerError::BadInput(format!(
                    "input {} takes {} bytes, got {}",
                    t.name,
                    t.bytes(),
                    bytes.len()
                )));
            }
            let off = t.offset as usize;
            mem[off..off + bytes.len()].copy_from_slice(bytes);
        }
        for (k, n) in self.program.nodes.iter().take(node).enumerate() {
            run_native(&n.op, &self.program, &mut mem)?;
            mem[NODE_COUNTER as usize..NODE_COUNTER as usize + 4]
                .copy_from_slice(&(k as u32 + 1).to_le_bytes());
            mem[UNIT_COUNTER as usize..UNIT_COUNTER as usize + 4]
                .copy_from_slice(&0u32.to_le_bytes());
        }
        Ok(mem)
    }
}

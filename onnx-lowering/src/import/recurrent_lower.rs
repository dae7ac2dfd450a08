//! Lowering of the views an unrolled loop uses (see [`super::super::recurrent`]):
//! [`Step::Slice`] is a view of part of its input's bytes, [`Step::Stack`]
//! makes its inputs views of its output's bytes. Neither is an IR node.
//! Views share the scale of the tensor they lie in; the plan's
//! [`Plan::shared_scales`] groups share one scale.

use super::{err, Lowering};
use crate::error::LowerError;
use crate::import::plan::{Plan, Step, ValueId};
use crate::ir::{TensorId, TensorKind};

/// For each value that is an input of a [`Step::Stack`]: the stacked value
/// and the element offset in it.
pub(super) fn stack_views(plan: &Plan) -> Vec<Option<(ValueId, usize)>> {
    let mut views = vec![None; plan.values.len()];
    for step in &plan.steps {
        if let Step::Stack { inputs, output } = step {
            let mut at = 0;
            for v in inputs {
                views[*v] = Some((*output, at));
                at += plan.values[*v].len();
            }
        }
    }
    views
}

/// Shared scales first (each group takes its largest scale, i.e. the scale
/// of its largest range), then views take the scale of the tensor they lie
/// in.
pub(super) fn view_scales(plan: &Plan, scales: &mut [f32]) {
    for group in &plan.shared_scales {
        let top = group.iter().fold(0.0f32, |m, v| m.max(scales[*v]));
        for v in group {
            scales[*v] = top;
        }
    }
    for step in &plan.steps {
        match step {
            Step::Slice { input, output, .. } => scales[*output] = scales[*input],
            Step::Stack { inputs, output } => {
                for v in inputs {
                    scales[*v] = scales[*output];
                }
            }
            _ => {}
        }
    }
}

impl Lowering<'_> {
    fn view_of(
        &mut self,
        base: TensorId,
        v: ValueId,
        offset: usize,
        op: &str,
    ) -> Result<TensorId, LowerError> {
        let value = &self.plan.values[v];
        let tensor = &self.b.program().tensors[base];
        let bytes = offset as u64 * u64::from(tensor.dtype.size());
        let inside = (offset + value.len()) as u64 <= u64::from(tensor.len());
        if !bytes.is_multiple_of(8) || !inside {
            return Err(err(
                &value.name,
                op,
                "a per-timestep view must lie 8-byte aligned inside its tensor",
            ));
        }
        let shape = self.shape(v);
        let name = value.name.clone();
        let t = self.b.view(base, &name, &shape, bytes as u32);
        self.b.set_quant(t, self.scales[v], 0);
        self.tensors[v] = Some(t);
        Ok(t)
    }

    /// The tensor of `v` if it is a view into a stacked value (defining
    /// the stacked value on first use).
    pub(super) fn stacked_view(&mut self, v: ValueId) -> Result<Option<TensorId>, LowerError> {
        let Some((base, offset)) = self.views[v] else {
            return Ok(None);
        };
        let bt = match self.tensors[base] {
            Some(t) => t,
            None => self.define(base, TensorKind::Activation)?,
        };
        self.view_of(bt, v, offset, "Stack").map(Some)
    }

    /// Lowers a [`Step::Slice`] or [`Step::Stack`] (no IR node).
    pub(super) fn view_step(&mut self, step: &Step) -> Result<(), LowerError> {
        match step {
            Step::Slice {
                input,
                output,
                offset,
            } => {
                let base = self.tensor(*input);
                self.view_of(base, *output, *offset, "Slice")?;
            }
            Step::Stack { output, .. } => {
                if self.tensors[*output].is_none() {
                    self.define(*output, TensorKind::Activation)?;
                }
            }
            _ => unreachable!("only views"),
        }
        Ok(())
    }
}

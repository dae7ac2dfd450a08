//! Lowering of the steps of an unrolled loop (see
//! [`super::super::recurrent`]): [`Step::Slice`] is a view of part of its
//! input's bytes, [`Step::Stack`] makes its inputs views of its output's
//! bytes (neither is an IR node), and [`Step::Products`] is an
//! [`ir::ProductSum`]. Views share the scale of the tensor they lie in; the
//! plan's [`Plan::shared_scales`] groups share one scale. A wide product
//! (the cell state) is `i16` at range 32767, and so is a function of it
//! (`tanh(c)`, an `ir::Interp`) and every alias of either.

use super::{alias_family, err, Lowering};
use crate::error::LowerError;
use crate::import::plan::{Plan, Step, ValueId};
use crate::import::quantize::{add_multipliers, multiplier};
use crate::ir::{self, Op, TensorId, TensorKind};

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

/// The `i16` values: wide products, the element-wise functions reading
/// them, and their aliases (range 32767).
pub(super) fn cell_values(plan: &Plan, half: &mut [Option<i32>]) {
    for step in &plan.steps {
        if let Step::Products {
            output, wide: true, ..
        } = step
        {
            let mut vals = alias_family(plan, *output);
            for s in &plan.steps {
                if let Step::Pointwise { input, output, .. } = s {
                    if vals.contains(input) {
                        vals.extend(alias_family(plan, *output));
                    }
                }
            }
            for v in vals {
                half[v] = Some(32767);
            }
        }
    }
}

/// Shared scales first (each group takes its largest scale, i.e. the scale
/// of its largest range), then views take the scale of the tensor they lie
/// in, then the aliases of all of these their input's.
pub(super) fn view_scales(plan: &Plan, scales: &mut [f32]) {
    let mut touched = vec![false; plan.values.len()];
    for group in &plan.shared_scales {
        let top = group.iter().fold(0.0f32, |m, v| m.max(scales[*v]));
        for v in group {
            scales[*v] = top;
            touched[*v] = true;
        }
    }
    for step in &plan.steps {
        match step {
            Step::Slice { input, output, .. } => {
                scales[*output] = scales[*input];
                touched[*output] = true;
            }
            Step::Stack { inputs, output } => {
                for v in inputs {
                    scales[*v] = scales[*output];
                    touched[*v] = true;
                }
            }
            _ => {}
        }
    }
    for step in &plan.steps {
        if let Step::Alias { input, output } = step {
            if touched[*input] {
                scales[*output] = scales[*input];
                touched[*output] = true;
            }
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

    /// Lowers a [`Step::Slice`] or [`Step::Stack`] (no IR node) or a
    /// [`Step::Products`].
    pub(super) fn recurrent_step(&mut self, step: &Step) -> Result<(), LowerError> {
        match step {
            Step::Products {
                name,
                terms,
                output,
                ..
            } => {
                let so = f64::from(self.scales[*output]);
                let real = |w: &Self, (a, b): (ValueId, ValueId)| {
                    f64::from(w.scales[a]) * f64::from(w.scales[b]) / so
                };
                let (first, second) = match terms[..] {
                    [t] => (t, None),
                    [t, u] => (t, Some(u)),
                    _ => return Err(err(name, "Mul", "only one or two products")),
                };
                let (ma, mc, shift) = match second {
                    Some(u) => add_multipliers(real(self, first), real(self, u)),
                    None => multiplier(real(self, first)).map(|(m, s)| (m, 0, s)),
                }
                .map_err(|e| err(name, "Mul", e))?;
                let (c, d) = second.unwrap_or(first);
                let top = self.half[*output].unwrap_or(127);
                let op = Op::ProductSum(ir::ProductSum {
                    a: self.tensor(first.0),
                    b: self.tensor(first.1),
                    c: self.tensor(c),
                    d: self.tensor(d),
                    output: self.define(*output, TensorKind::Activation)?,
                    n: self.plan.values[*output].len() as u32,
                    a_multiplier: ma,
                    c_multiplier: mc,
                    shift,
                    lo: -top,
                    hi: top,
                });
                self.b.node(name, op);
            }
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

//! Already-quantized models: the model's own activation scales and int8
//! weights instead of calibrated ones.
//!
//! [`super::qcanon`] brings every pre-quantized form to activation
//! `QuantizeLinear` / `DequantizeLinear` pairs around float ops with
//! constant `f32` weights (`f32((q - zp) s)`, folded from the model's int8
//! initializers), and records the weights' scales. Here:
//!
//! * in the analysis ([`Walker::prequant_node`]), tract's `QuantizeLinearI8`
//!   / `QuantizeLinearU8` fixes the scale of the value it quantizes (the
//!   plan's `fixed_scales`; the producer then requantizes straight to it),
//!   and `DequantizeLinearF32` reads that value back: both are the same
//!   bytes. When the value's scale is already fixed otherwise (a max pool
//!   or reshape keeps its input's, a softmax has `1/127`), a different
//!   `QuantizeLinear` becomes an identity table (`ir::Lut`) to the new
//!   scale. An element-wise op between a `DequantizeLinear` and a
//!   `QuantizeLinear` (the ReLU of a QDQ graph) is the usual table, from
//!   the input's scale to the output's: exact for a function of one `i8`
//!   (a ReLU with equal scales after a conv or matmul is that op's fused
//!   clamp instead, [`fuse_relu_tables`]).
//!   Reshapes of the `int8` tensors are aliases, identity lookup tables
//!   (tract's rewrite of a `DequantizeLinear` -> reshape ->
//!   `QuantizeLinear` with equal parameters) read the same bytes.
//! * after the analysis ([`attach_int_weights`]), every conv / matmul whose
//!   `f32` weights are, row by row, exactly `f32(q s_j)` for integers `|q|
//!   <= 127` and one of the recorded scale vectors keeps those `q` and
//!   `s_j` (the plan's `int_weights`), instead of requantizing
//!   `max |w| / 127` per row; the lowering uses them unless the input has
//!   per-column scales (which go into the weights).
//!
//! Activation zero points are `0` (`int8`) or `128` (`uint8`, the same
//! integers shifted by 128), checked in [`super::qcanon`] and again here,
//! so every IR tensor keeps zero point 0.

use super::analyze::{out0, Walker};
use super::linear::unsupported;
use super::plan::{Expr, Plan, Step, ValueId};
use super::qcanon::WeightScales;
use super::quantize::quantize_rows;
use crate::error::LowerError;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::quant::{DequantizeLinearF32, QuantizeLinearI8, QuantizeLinearU8};

/// The concrete shape of an outlet of any type.
fn shape_any(model: &TypedModel, node: &TypedNode, o: OutletId) -> Result<Vec<usize>, LowerError> {
    let fact = model
        .outlet_fact(o)
        .map_err(|e| LowerError::Onnx(format!("{e:#}")))?;
    fact.shape
        .as_concrete()
        .map(|s| s.to_vec())
        .ok_or_else(|| unsupported(node, "symbolic shape"))
}

fn datum(model: &TypedModel, o: OutletId) -> Option<DatumType> {
    model.outlet_fact(o).ok().map(|f| f.datum_type)
}

/// The value `v` stands on: through aliases and max pools, which keep
/// their input's scale.
pub fn scale_root(plan: &Plan, mut v: ValueId) -> ValueId {
    loop {
        match plan.steps.iter().find(|s| s.output() == v) {
            Some(Step::Alias { input, .. }) | Some(Step::MaxPool { input, .. }) => v = *input,
            _ => return v,
        }
    }
}

/// Whether the lowering decides the scale of `v` by itself.
fn scale_is_decided(plan: &Plan, v: ValueId) -> bool {
    plan.values[v].integer
        || plan.steps.iter().any(|s| {
            s.output() == v
                && matches!(
                    s,
                    Step::Softmax { .. }
                        | Step::MaskedSoftmax { .. }
                        | Step::Gather { .. }
                        | Step::Const { .. }
                )
        })
}

/// `|a - b| <= 1e-6 |a|`: the same scale, up to `1 / (1 / s)` rounding.
fn same_scale(a: f32, b: f32) -> bool {
    (f64::from(a) - f64::from(b)).abs() <= 1e-6 * f64::from(a).abs()
}

impl Walker<'_> {
    /// Handles the quantization ops of a pre-quantized model; `false` for
    /// any other node.
    pub(super) fn prequant_node(&mut self, node: &TypedNode) -> Result<bool, LowerError> {
        let in_dt = node.inputs.first().and_then(|i| datum(self.model, *i));
        if let Some(ew) = node.op_as::<ElementWiseOp>() {
            if let Some(q) = ew.0.downcast_ref::<QuantizeLinearI8>() {
                self.quantize(node, q.scale, i32::from(q.zero_point), 0)?;
                return Ok(true);
            }
            if let Some(q) = ew.0.downcast_ref::<QuantizeLinearU8>() {
                self.quantize(node, q.scale, i32::from(q.zero_point), 128)?;
                return Ok(true);
            }
            if in_dt.is_some_and(|d| d == i8::datum_type() || d == u8::datum_type()) {
                self.integer_table(node, in_dt == Some(u8::datum_type()))?;
                return Ok(true);
            }
            return Ok(false);
        }
        if let Some(dq) = node.op_as::<DequantizeLinearF32>() {
            self.dequantize(node, dq)?;
            return Ok(true);
        }
        if let Some(ax) = node.op_as::<AxisOp>() {
            if in_dt.is_some_and(|d| d != f32::datum_type())
                && self.values.contains_key(&node.inputs[0])
            {
                if matches!(ax, AxisOp::Move(..)) {
                    return Err(unsupported(node, "transpose of a quantized tensor"));
                }
                let input = self.values[&node.inputs[0]];
                let output = self
                    .plan
                    .value(&node.name, &shape_any(self.model, node, out0(node))?);
                self.plan.steps.push(Step::Alias { input, output });
                self.values.insert(out0(node), output);
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `QuantizeLinear` with tract's inverse scale `inv` and zero point
    /// `zp` (required: `want`).
    fn quantize(
        &mut self,
        node: &TypedNode,
        inv: f32,
        zp: i32,
        want: i32,
    ) -> Result<(), LowerError> {
        if zp != want {
            return Err(unsupported(
                node,
                format!("activation zero point {zp}: only symmetric activations (int8 zero point 0, uint8 128)"),
            ));
        }
        // The scale as the model writes it: the next DequantizeLinear's,
        // else the inverse of tract's inverse.
        let scale = self
            .model
            .outlet_successors(out0(node))
            .iter()
            .find_map(|s| self.model.node(s.node).op_as::<DequantizeLinearF32>())
            .map_or(1.0 / inv, |d| d.scale);
        if !(scale.is_finite() && scale > 0.0) {
            return Err(unsupported(node, "a scale that is not finite and positive"));
        }
        let v = self.need(node.inputs[0])?;
        let r = scale_root(&self.plan, v);
        let out = match self.plan.fixed_scales.get(&r) {
            Some(s) if same_scale(*s, scale) => v,
            None if !scale_is_decided(&self.plan, r) => {
                self.plan.fixed_scales.insert(r, scale);
                v
            }
            _ => {
                // Requantize to the new scale: an identity table.
                let output = self
                    .plan
                    .value(&node.name, &self.plan.values[v].shape.clone());
                self.plan.steps.push(Step::Pointwise {
                    name: node.name.clone(),
                    input: v,
                    output,
                    expr: Expr::Var,
                });
                self.plan.fixed_scales.insert(output, scale);
                output
            }
        };
        self.values.insert(out0(node), out);
        Ok(())
    }

    fn dequantize(&mut self, node: &TypedNode, dq: &DequantizeLinearF32) -> Result<(), LowerError> {
        let i = node.inputs[0];
        let Some(&v) = self.values.get(&i) else {
            return Err(unsupported(
                node,
                "dequantizes a tensor that is not a quantized activation of the model",
            ));
        };
        let want = if datum(self.model, i) == Some(u8::datum_type()) {
            128
        } else {
            0
        };
        if dq.zero_point != want {
            return Err(unsupported(
                node,
                format!(
                    "activation zero point {}: only symmetric activations (int8 zero point 0, uint8 128)",
                    dq.zero_point
                ),
            ));
        }
        let r = scale_root(&self.plan, v);
        match self.plan.fixed_scales.get(&r) {
            Some(s) if same_scale(*s, dq.scale) => {}
            Some(s) => {
                return Err(unsupported(
                    node,
                    format!(
                        "dequantizes with scale {} a tensor quantized with scale {s}",
                        dq.scale
                    ),
                ))
            }
            None => {
                return Err(unsupported(
                    node,
                    "dequantizes a tensor without a quantization scale",
                ))
            }
        }
        self.values.insert(out0(node), v);
        Ok(())
    }

    /// An element-wise op on an `int8` / `uint8` tensor: only the identity
    /// (tract's table for a dequantize-requantize with equal parameters).
    fn integer_table(&mut self, node: &TypedNode, unsigned: bool) -> Result<(), LowerError> {
        let Some(&v) = self.values.get(&node.inputs[0]) else {
            return Err(unsupported(
                node,
                "integer op on a tensor that is not a quantized activation",
            ));
        };
        let all: Tensor = if unsigned {
            tensor1(&(0..=255u8).collect::<Vec<_>>())
        } else {
            tensor1(&(-128..=127i8).collect::<Vec<_>>())
        };
        let out = node
            .op
            .eval_out_of_plan(tvec![all.clone().into_tvalue()])
            .ok()
            .flatten()
            .and_then(|o| o.into_iter().next());
        if out.is_none_or(|o| *o != all) {
            return Err(unsupported(
                node,
                "integer op other than the identity on a quantized tensor",
            ));
        }
        self.values.insert(out0(node), v);
        Ok(())
    }
}

/// Row `j`'s integers if every `w` of it is `f32(q s)` with `|q| <= 127`.
fn exact_row(row: &[f64], s: f32) -> Option<Vec<i8>> {
    row.iter()
        .map(|w| {
            let q = (*w / f64::from(s)).round();
            ((-127.0..=127.0).contains(&q)
                && (q as f32) * s == *w as f32
                && f64::from(*w as f32) == *w)
                .then_some(q as i8)
        })
        .collect()
}

/// The model's int8 weights of a linear step, if one of `candidates`
/// reproduces its `f32` weights exactly (see the module docs).
fn match_weights(
    weight: &[f64],
    channels: usize,
    candidates: &[WeightScales],
) -> Option<(Vec<i8>, Vec<f64>)> {
    let k = weight.len().checked_div(channels)?;
    candidates
        .iter()
        .filter(|c| c.len == weight.len() && (c.scales.len() == 1 || c.scales.len() == channels))
        .find_map(|c| {
            let mut q = Vec::with_capacity(weight.len());
            let mut sw = Vec::with_capacity(channels);
            for (j, row) in weight.chunks(k.max(1)).enumerate() {
                let s = c.scales[if c.scales.len() == 1 { 0 } else { j }];
                q.extend(exact_row(row, s)?);
                sw.push(f64::from(s));
            }
            Some((q, sw))
        })
}

/// Records the model's own int8 weights of every conv and matmul step that
/// has them.
pub fn attach_int_weights(plan: &mut Plan, candidates: &[WeightScales]) {
    if candidates.is_empty() {
        return;
    }
    for step in &plan.steps {
        let (name, weight, channels) = match step {
            Step::Conv {
                name, weight, bias, ..
            }
            | Step::MatMul {
                name, weight, bias, ..
            } => (name, weight, bias.len()),
            _ => continue,
        };
        if let Some(w) = match_weights(weight, channels, candidates) {
            plan.int_weights.insert(name.clone(), w);
        }
    }
}

/// The int8 weights and per-row scales of linear step `name`: the model's
/// own if recorded, else `max |w| / 127` per row.
pub fn weights(plan: &Plan, name: &str, weight: &[f64], rows: usize) -> (Vec<i8>, Vec<f64>) {
    match plan.int_weights.get(name) {
        Some(w) => w.clone(),
        None => quantize_rows(weight, rows),
    }
}

/// `Max(x, 0)`, either way round.
fn is_relu(e: &Expr) -> bool {
    use super::plan::BinFn;
    match e {
        Expr::Bin(BinFn::Max, a, b) => matches!(
            (&**a, &**b),
            (Expr::Var, Expr::Const(c)) | (Expr::Const(c), Expr::Var) if *c == 0.0
        ),
        _ => false,
    }
}

/// A ReLU table between a `DequantizeLinear` and a `QuantizeLinear` with
/// the same scale, on the output of a conv or matmul read by nothing
/// else, is the clamp `max(q, 0)`: it becomes the linear step's fused
/// ReLU and an alias (the same integers, one node less).
pub fn fuse_relu_tables(plan: &mut Plan) {
    for i in 0..plan.steps.len() {
        let Step::Pointwise {
            input,
            output,
            expr,
            ..
        } = &plan.steps[i]
        else {
            continue;
        };
        let (input, output) = (*input, *output);
        let same = matches!(
            (plan.fixed_scales.get(&input), plan.fixed_scales.get(&output)),
            (Some(a), Some(b)) if a == b
        );
        let readers = plan
            .steps
            .iter()
            .filter(|s| s.inputs().contains(&input))
            .count();
        let is_output = plan.outputs.contains(&input);
        if !is_relu(expr) || !same || readers != 1 || is_output {
            continue;
        }
        let Some(j) = plan.steps.iter().position(|s| s.output() == input) else {
            continue;
        };
        match &mut plan.steps[j] {
            Step::Conv { relu, .. } | Step::MatMul { relu, .. } => *relu = true,
            _ => continue,
        }
        plan.steps[i] = Step::Alias { input, output };
    }
}

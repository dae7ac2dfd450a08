//! Folding what follows a linear op into it: per-channel (or scalar)
//! constant `Add`/`Sub`/`Mul`/`Div` into the weight rows and the bias, and
//! `Max(x, 0)` (ReLU) into the requantization's clamp.

use super::linear::{konst, shape, strides, Linear};
use crate::error::LowerError;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;

/// The per-channel values of a constant broadcast against `out`, if it
/// varies only along `chan_axes`.
fn per_channel(cs: &[usize], c: &[f64], out: &[usize], chan_axes: &[usize]) -> Option<Vec<f64>> {
    let off = out.len().checked_sub(cs.len())?;
    if cs
        .iter()
        .enumerate()
        .any(|(i, d)| *d != 1 && (*d != out[off + i] || !chan_axes.contains(&(off + i))))
    {
        return None;
    }
    let cst = strides(cs);
    let mut offs = vec![0usize];
    for a in chan_axes {
        let st = if *a >= off && cs[*a - off] != 1 {
            cst[*a - off]
        } else {
            0
        };
        offs = offs
            .iter()
            .flat_map(|o| (0..out[*a]).map(move |i| o + i * st))
            .collect();
    }
    Some(offs.iter().map(|o| c[*o]).collect())
}

/// If the only consumer of `o` is `Max(o, 0)` and `o` is not a model
/// output, that consumer.
pub fn relu_after(model: &TypedModel, o: OutletId, outputs: &[OutletId]) -> Option<usize> {
    let succ = model.outlet_successors(o);
    if outputs.contains(&o) || succ.len() != 1 {
        return None;
    }
    let next = model.node(succ[0].node);
    let bin = next.op_as::<TypedBinOp>()?;
    let (_, c) = konst(model, *next.inputs.get(1 - succ[0].slot.min(1))?)?;
    let same_shape = shape(model, OutletId::new(next.id, 0)).ok()? == shape(model, o).ok()?;
    (bin.0.name() == "Max" && next.inputs.len() == 2 && same_shape && c.iter().all(|v| *v == 0.0))
        .then_some(next.id)
}

/// Folds the per-channel constants and the ReLU following `o` into `lin`.
/// Returns the last outlet folded, whether it ends with a ReLU, and the
/// folded nodes.
pub fn absorb(
    model: &TypedModel,
    lin: &mut Linear,
    mut o: OutletId,
    outputs: &[OutletId],
) -> Result<(OutletId, bool, Vec<usize>), LowerError> {
    let mut folded = Vec::new();
    let out_shape = shape(model, o)?;
    loop {
        if let Some(r) = relu_after(model, o, outputs) {
            folded.push(r);
            return Ok((OutletId::new(r, 0), true, folded));
        }
        let succ = model.outlet_successors(o);
        if outputs.contains(&o) || succ.len() != 1 {
            break;
        }
        let next = model.node(succ[0].node);
        let Some(bin) = next.op_as::<TypedBinOp>() else {
            break;
        };
        if next.inputs.len() != 2 || shape(model, OutletId::new(next.id, 0))? != out_shape {
            break;
        }
        let Some((cs, c)) = konst(model, next.inputs[1 - succ[0].slot]) else {
            break;
        };
        let Some(c) = per_channel(&cs, &c, &out_shape, &lin.chan_axes) else {
            break;
        };
        let (rows, left) = (lin.weight.len() / lin.channels(), succ[0].slot == 1);
        let mut scale = |j: usize, f: f64| {
            lin.weight[j * rows..(j + 1) * rows]
                .iter_mut()
                .for_each(|w| *w *= f);
            lin.bias[j] *= f;
        };
        match (bin.0.name(), left) {
            ("Add", _) | ("Sub", false) | ("SubF", true) => {
                let sign = if bin.0.name() == "Add" { 1.0 } else { -1.0 };
                lin.bias
                    .iter_mut()
                    .zip(&c)
                    .for_each(|(b, c)| *b += sign * c);
            }
            ("Sub", true) | ("SubF", false) => {
                (0..c.len()).for_each(|j| scale(j, -1.0));
                lin.bias.iter_mut().zip(&c).for_each(|(b, c)| *b += c);
            }
            ("Mul", _) => (0..c.len()).for_each(|j| scale(j, c[j])),
            ("Div", false) if c.iter().all(|v| *v != 0.0) => {
                (0..c.len()).for_each(|j| scale(j, 1.0 / c[j]))
            }
            _ => break,
        }
        folded.push(next.id);
        o = OutletId::new(next.id, 0);
    }
    Ok((o, false, folded))
}

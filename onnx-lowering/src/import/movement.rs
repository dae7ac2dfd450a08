//! Data movement of activations as [`Step::Move`] (lowered to
//! `ir::Rearrange`): Transpose (tract's `AxisOp::Move` that reorders axes
//! of size > 1), Slice, strided Slice (`Downsample`; a negative step as
//! one part per output index along the axis, at most 1024), Split (tract's one `Slice` per output), Concat, Pad (constant,
//! edge and reflect modes), Expand (`MultiBroadcastTo`), Gather and GatherND of an
//! activation by constant indices, and Softmax over a non-trailing axis
//! (moved last, softmax, moved back).
//!
//! Every step is built as windows of the output with strides into the
//! inputs (see [`MovePart`]); the values are copied, so a single-input
//! move keeps its input's scale (see `lower::general_ops`).

use super::analyze::{out0, Walker};
use super::linear::{konst, shape, strides, unsupported};
use super::plan::{MovePart, Plan, Step, ValueId};
use crate::error::LowerError;
use crate::ops::rearrange::MAX_PARTS;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::DimLike;
use tract_onnx::tract_core::ops::array::{
    Gather, GatherNd, MultiBroadcastTo, Pad, PadMode, Slice, TypedConcat,
};
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::downsample::Downsample;
use tract_onnx::tract_core::ops::nn::Softmax;

/// Largest rank of a moved tensor (`ir::Rearrange` has 6 axes).
const MAX_RANK: usize = 6;

/// A part reading the whole window `extent` from `base` with `stride`.
fn part(input: usize, base: usize, stride: Vec<usize>, extent: Vec<usize>) -> MovePart {
    let start = vec![0; extent.len()];
    MovePart {
        input,
        base,
        stride,
        start,
        extent,
    }
}

fn usize_dim(node: &TypedNode, d: &TDim) -> Result<usize, LowerError> {
    d.to_usize()
        .map_err(|_| unsupported(node, "symbolic slice bounds"))
}

impl Walker<'_> {
    /// The value of an operand: an activation, or a constant tensor made
    /// into one.
    pub(super) fn value_or_const(&mut self, o: OutletId) -> Result<ValueId, LowerError> {
        if let Some((sh, data)) = konst(self.model, o) {
            let name = format!("{}.const", self.model.node(o.node).name);
            let output = self.plan.value(&name, &sh);
            self.plan.steps.push(Step::Const { name, output, data });
            return Ok(output);
        }
        self.need(o)
    }

    /// Pushes a move step for `node`'s output. The output is a raw
    /// integer value when the inputs are.
    pub(super) fn push_move(
        &mut self,
        node: &TypedNode,
        inputs: Vec<ValueId>,
        parts: Vec<MovePart>,
        fill: f64,
    ) -> Result<(), LowerError> {
        let out_shape = shape(self.model, out0(node))?;
        if out_shape.contains(&0) {
            return Err(unsupported(node, "empty result"));
        }
        if out_shape.len() > MAX_RANK || parts.len() > MAX_PARTS {
            return Err(unsupported(
                node,
                "data movement of more than 6 axes or 1024 pieces",
            ));
        }
        let int: Vec<bool> = inputs
            .iter()
            .map(|v| self.plan.values[*v].integer)
            .collect();
        if int.iter().any(|i| *i != int[0]) {
            return Err(unsupported(
                node,
                "moves raw integers together with activations",
            ));
        }
        let output = if int.first() == Some(&true) {
            let v = self.plan.int_value(&node.name, &out_shape);
            self.values.insert(out0(node), v);
            v
        } else {
            self.define(out0(node), &node.name)?
        };
        // Empty windows copy nothing.
        let parts = parts
            .into_iter()
            .filter(|p| p.extent.iter().all(|e| *e > 0))
            .collect();
        self.plan.steps.push(Step::Move {
            name: node.name.clone(),
            inputs,
            output,
            parts,
            fill,
        });
        Ok(())
    }

    /// A transpose: output axis `j` is input axis `perm[j]`.
    fn permute(&mut self, node: &TypedNode, perm: &[usize]) -> Result<(), LowerError> {
        let in_shape = shape(self.model, node.inputs[0])?;
        let st = strides(&in_shape);
        let input = self.need(node.inputs[0])?;
        let stride = perm.iter().map(|p| st[*p]).collect();
        let extent = perm.iter().map(|p| in_shape[*p]).collect();
        self.push_move(node, vec![input], vec![part(0, 0, stride, extent)], 0.0)
    }

    /// Data-movement ops; `true` if `node` is one.
    pub(super) fn movement_node(&mut self, node: &TypedNode) -> Result<bool, LowerError> {
        let m = self.model;
        if let Some(AxisOp::Move(from, to)) = node.op_as::<AxisOp>() {
            let rank = shape(m, node.inputs[0])?.len();
            if *from >= rank || *to >= rank {
                return Err(unsupported(node, "axis out of range"));
            }
            let mut perm: Vec<usize> = (0..rank).collect();
            let a = perm.remove(*from);
            perm.insert(*to, a);
            self.permute(node, &perm)?;
        } else if let Some(s) = node.op_as::<Slice>() {
            let in_shape = shape(m, node.inputs[0])?;
            let (start, end) = (usize_dim(node, &s.start)?, usize_dim(node, &s.end)?);
            if s.axis >= in_shape.len() || start > end || end > in_shape[s.axis] {
                return Err(unsupported(node, "slice bounds outside the input"));
            }
            let st = strides(&in_shape);
            let mut extent = in_shape.clone();
            extent[s.axis] = end - start;
            let input = self.need(node.inputs[0])?;
            let p = part(0, start * st[s.axis], st, extent);
            self.push_move(node, vec![input], vec![p], 0.0)?;
        } else if let Some(d) = node.op_as::<Downsample>() {
            let in_shape = shape(m, node.inputs[0])?;
            let out_shape = shape(m, out0(node))?;
            let mut st = strides(&in_shape);
            if d.axis >= in_shape.len() || d.stride == 0 {
                return Err(unsupported(node, "axis out of range"));
            }
            let input = self.need(node.inputs[0])?;
            if d.stride > 0 {
                let base = d.modulo * st[d.axis];
                st[d.axis] *= d.stride as usize;
                let p = part(0, base, st, out_shape);
                self.push_move(node, vec![input], vec![p], 0.0)?;
            } else {
                // A negative step: out[i] = in[len - 1 - i |step|] along
                // the axis, one part per output index (strides are >= 0).
                let (len, step) = (in_shape[d.axis], d.stride.unsigned_abs());
                let parts = (0..out_shape[d.axis])
                    .map(|i| {
                        let mut extent = out_shape.clone();
                        extent[d.axis] = 1;
                        let mut p = part(0, (len - 1 - i * step) * st[d.axis], st.clone(), extent);
                        p.start[d.axis] = i;
                        p
                    })
                    .collect();
                self.push_move(node, vec![input], parts, 0.0)?;
            }
        } else if let Some(c) = node.op_as::<TypedConcat>() {
            let mut inputs = Vec::new();
            let mut parts = Vec::new();
            let mut at = 0;
            for (k, i) in node.inputs.iter().enumerate() {
                let sh = shape(m, *i)?;
                if c.axis >= sh.len() {
                    return Err(unsupported(node, "axis out of range"));
                }
                inputs.push(self.value_or_const(*i)?);
                let mut p = part(k, 0, strides(&sh), sh.clone());
                p.start[c.axis] = at;
                at += sh[c.axis];
                parts.push(p);
            }
            self.push_move(node, inputs, parts, 0.0)?;
        } else if let Some(p) = node.op_as::<Pad>() {
            self.pad(node, p)?;
        } else if node.op_is::<MultiBroadcastTo>() {
            let in_shape = shape(m, node.inputs[0])?;
            let out_shape = shape(m, out0(node))?;
            let off = out_shape.len().checked_sub(in_shape.len());
            let Some(off) = off else {
                return Err(unsupported(node, "broadcast to a lower rank"));
            };
            let st = strides(&in_shape);
            let stride = (0..out_shape.len())
                .map(|d| match d.checked_sub(off) {
                    Some(i) if in_shape[i] != 1 => st[i],
                    _ => 0,
                })
                .collect();
            let input = self.need(node.inputs[0])?;
            self.push_move(node, vec![input], vec![part(0, 0, stride, out_shape)], 0.0)?;
        } else if let Some(g) = node.op_as::<Gather>() {
            self.gather(node, g.axis)?;
        } else if let Some(g) = node.op_as::<GatherNd>() {
            self.gather_nd(node, g.batch_dims)?;
        } else if let Some(sm) = node.op_as::<Softmax>() {
            return self.softmax_other_axis(node, sm);
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    /// `Pad`: the input as one window and the constant around it, or
    /// (edge and reflect modes) one part per combination of per-axis
    /// segments: the input's extent, and before and after it the edge
    /// element repeated (stride 0) or each mirrored slice on its own.
    fn pad(&mut self, node: &TypedNode, p: &Pad) -> Result<(), LowerError> {
        let in_shape = shape(self.model, node.inputs[0])?;
        if p.pads.len() != in_shape.len() {
            return Err(unsupported(node, "pads do not match the rank"));
        }
        let st = strides(&in_shape);
        let input = self.need(node.inputs[0])?;
        let fill = match &p.mode {
            PadMode::Constant(v) => f64::from(
                v.cast_to_scalar::<f32>()
                    .map_err(|_| unsupported(node, "non-numeric pad value"))?,
            ),
            _ => 0.0,
        };
        // Per axis: (start, extent, stride, input index of the first one).
        let mut axes: Vec<Vec<(usize, usize, usize, usize)>> = Vec::new();
        for (d, (&(before, after), &n)) in p.pads.iter().zip(&in_shape).enumerate() {
            let mut seg = vec![(before, n, st[d], 0)];
            match &p.mode {
                PadMode::Constant(_) => {}
                PadMode::Edge => {
                    if before > 0 {
                        seg.push((0, before, 0, 0));
                    }
                    if after > 0 {
                        seg.push((before + n, after, 0, n - 1));
                    }
                }
                PadMode::Reflect => {
                    if before >= n || after >= n {
                        return Err(unsupported(node, "reflection wider than the input"));
                    }
                    seg.extend((0..before).map(|j| (j, 1, 0, before - j)));
                    seg.extend((0..after).map(|j| (before + n + j, 1, 0, n - 2 - j)));
                }
            }
            axes.push(seg);
        }
        let count = axes.iter().map(Vec::len).product::<usize>();
        if count > MAX_PARTS {
            return Err(unsupported(node, "padding of more than 1024 pieces"));
        }
        let mut parts = Vec::with_capacity(count);
        for mut k in 0..count {
            let mut q = part(0, 0, vec![0; st.len()], vec![0; st.len()]);
            for (d, seg) in axes.iter().enumerate().rev() {
                let (start, extent, stride, first) = seg[k % seg.len()];
                k /= seg.len();
                q.start[d] = start;
                q.extent[d] = extent;
                q.stride[d] = stride;
                q.base += first * st[d];
            }
            parts.push(q);
        }
        self.push_move(node, vec![input], parts, fill)
    }

    /// `Gather(data, indices)` along `axis` with constant indices: one
    /// part per index (negative indices count from the end).
    fn gather(&mut self, node: &TypedNode, axis: usize) -> Result<(), LowerError> {
        let m = self.model;
        let Some((_, idx)) = konst(m, node.inputs[1]) else {
            return Err(unsupported(
                node,
                "Gather of an activation by non-constant indices",
            ));
        };
        if konst(m, node.inputs[0]).is_some() {
            return Err(unsupported(
                node,
                "Gather of a constant table by constant indices",
            ));
        }
        let data = shape(m, node.inputs[0])?;
        if axis >= data.len() {
            return Err(unsupported(node, "axis out of range"));
        }
        let st = strides(&data);
        let out_shape = shape(m, out0(node))?;
        // The output as [outer, n, inner] with n = the number of indices.
        let outer: usize = data[..axis].iter().product();
        let inner: usize = data[axis + 1..].iter().product();
        let n = idx.len();
        if outer * n * inner != out_shape.iter().product::<usize>() {
            return Err(unsupported(node, "unexpected Gather output shape"));
        }
        let input = self.need(node.inputs[0])?;
        let mut parts = Vec::with_capacity(n);
        for (i, x) in idx.iter().enumerate() {
            let len = data[axis] as f64;
            let x = if *x < 0.0 { x + len } else { *x };
            if !(0.0..len).contains(&x) || x.fract() != 0.0 {
                return Err(unsupported(node, "Gather index out of range"));
            }
            let outer_stride = if axis == 0 { 0 } else { st[axis - 1] };
            parts.push(MovePart {
                input: 0,
                base: x as usize * st[axis],
                stride: vec![outer_stride, 0, 1],
                start: vec![0, i, 0],
                extent: vec![outer, 1, inner],
            });
        }
        self.push_move_viewed(node, vec![input], parts, &[outer, n, inner])
    }

    /// `GatherND(data, indices)` (batch_dims 0) with constant indices: one
    /// part per index tuple, copying the block it selects.
    fn gather_nd(&mut self, node: &TypedNode, batch_dims: usize) -> Result<(), LowerError> {
        let m = self.model;
        let Some((is, iv)) = konst(m, node.inputs[1]) else {
            return Err(unsupported(node, "GatherND by non-constant indices"));
        };
        let data = shape(m, node.inputs[0])?;
        let r = is.last().copied().unwrap_or(0);
        if batch_dims != 0 || r == 0 || r > data.len() {
            return Err(unsupported(node, "GatherND with batch dimensions"));
        }
        let st = strides(&data);
        let inner: usize = data[r..].iter().product();
        let n = iv.len() / r;
        let input = self.need(node.inputs[0])?;
        let mut parts = Vec::with_capacity(n);
        for (i, t) in iv.chunks(r).enumerate() {
            let mut base = 0;
            for (d, x) in t.iter().enumerate() {
                let len = data[d] as f64;
                let x = if *x < 0.0 { x + len } else { *x };
                if !(0.0..len).contains(&x) || x.fract() != 0.0 {
                    return Err(unsupported(node, "GatherND index out of range"));
                }
                base += x as usize * st[d];
            }
            parts.push(MovePart {
                input: 0,
                base,
                stride: vec![0, 1],
                start: vec![i, 0],
                extent: vec![1, inner],
            });
        }
        self.push_move_viewed(node, vec![input], parts, &[n, inner])
    }

    /// A move into a view of `node`'s output with shape `view` (the same
    /// elements), aliased back to the output's shape.
    fn push_move_viewed(
        &mut self,
        node: &TypedNode,
        inputs: Vec<ValueId>,
        parts: Vec<MovePart>,
        view: &[usize],
    ) -> Result<(), LowerError> {
        if parts.len() > MAX_PARTS || view.contains(&0) {
            return Err(unsupported(node, "gathers more than 1024 pieces, or none"));
        }
        let int = inputs.iter().any(|v| self.plan.values[*v].integer);
        let name = format!("{}.rows", node.name);
        let moved = if int {
            self.plan.int_value(&name, view)
        } else {
            self.plan.value(&name, view)
        };
        self.plan.steps.push(Step::Move {
            name: node.name.clone(),
            inputs,
            output: moved,
            parts,
            fill: 0.0,
        });
        let out_shape = shape(self.model, out0(node))?;
        let output = if int {
            let v = self.plan.int_value(&node.name, &out_shape);
            self.values.insert(out0(node), v);
            v
        } else {
            self.define(out0(node), &node.name)?
        };
        self.plan.steps.push(Step::Alias {
            input: moved,
            output,
        });
        Ok(())
    }

    /// Softmax over one non-trailing axis: the axis moved last, the
    /// integer softmax, and moved back (two moves).
    fn softmax_other_axis(&mut self, node: &TypedNode, sm: &Softmax) -> Result<bool, LowerError> {
        let in_shape = shape(self.model, node.inputs[0])?;
        let axes: Vec<usize> = sm
            .axes
            .iter()
            .copied()
            .filter(|a| in_shape.get(*a).is_some_and(|d| *d > 1))
            .collect();
        let [axis] = axes[..] else {
            return Ok(false);
        };
        let rank = in_shape.len();
        if rank > MAX_RANK {
            return Err(unsupported(node, "softmax of more than 6 axes"));
        }
        let input = self.need(node.inputs[0])?;
        let st = strides(&in_shape);
        // to: axes in order with `axis` last
        let perm: Vec<usize> = (0..rank).filter(|a| *a != axis).chain([axis]).collect();
        let moved_shape: Vec<usize> = perm.iter().map(|p| in_shape[*p]).collect();
        let moved = self
            .plan
            .value(&format!("{}.moved", node.name), &moved_shape);
        self.plan.steps.push(Step::Move {
            name: format!("{}.move", node.name),
            inputs: vec![input],
            output: moved,
            parts: vec![part(
                0,
                0,
                perm.iter().map(|p| st[*p]).collect(),
                moved_shape.clone(),
            )],
            fill: 0.0,
        });
        let len = in_shape[axis];
        let rows = in_shape.iter().product::<usize>() / len;
        let soft = self
            .plan
            .value(&format!("{}.softmax", node.name), &moved_shape);
        self.plan.steps.push(Step::Softmax {
            name: format!("{}.softmax", node.name),
            input: moved,
            output: soft,
            rows,
            len,
        });
        // back: output axis a is moved axis inv[a]
        let mst = strides(&moved_shape);
        let mut stride = vec![0; rank];
        for (j, p) in perm.iter().enumerate() {
            stride[*p] = mst[j];
        }
        let output = self.define(out0(node), &node.name)?;
        self.plan.steps.push(Step::Move {
            name: node.name.clone(),
            inputs: vec![soft],
            output,
            parts: vec![part(0, 0, stride, in_shape)],
            fill: 0.0,
        });
        Ok(true)
    }
}

/// [`Step::Move`] on `f64` values: the fill, then each part's window.
pub fn eval_move(
    out_len: usize,
    out_shape: &[usize],
    inputs: &[&[f64]],
    parts: &[MovePart],
    fill: f64,
) -> Vec<f64> {
    let mut out = vec![fill; out_len];
    let ost = strides(out_shape);
    for p in parts {
        let total: usize = p.extent.iter().product();
        for w in 0..total {
            let (mut rest, mut s, mut o) = (w, p.base, 0);
            for d in (0..p.extent.len()).rev() {
                let i = rest % p.extent[d];
                rest /= p.extent[d];
                s += i * p.stride[d];
                o += (i + p.start[d]) * ost[d];
            }
            out[o] = inputs[p.input][s];
        }
    }
    out
}

/// Folds moves into the moves that read them: a move with one part and
/// no fill that covers its whole output (a transpose, slice, expand, ..)
/// whose output only one other move reads (and that is no model output)
/// is composed into that reader's parts when every part's reads map onto
/// its axes without carries, and dropped. Chains like Transpose, Slice,
/// strided Slice then copy once.
pub fn fuse_moves(plan: &mut Plan) {
    loop {
        let mut fused = false;
        for j in 0..plan.steps.len() {
            let Step::Move { inputs, .. } = &plan.steps[j] else {
                continue;
            };
            for (k, mid) in inputs.clone().into_iter().enumerate() {
                if let Some(i) = simple_producer(plan, mid, j) {
                    if compose(plan, i, j, k) {
                        plan.steps.remove(i);
                        fused = true;
                        break;
                    }
                }
            }
            if fused {
                break;
            }
        }
        if !fused {
            return;
        }
    }
}

/// The index of the step writing `mid` if it is a one-part, no-fill move
/// covering `mid`, read by step `reader` only and not a model output.
fn simple_producer(plan: &Plan, mid: ValueId, reader: usize) -> Option<usize> {
    if plan.outputs.contains(&mid) {
        return None;
    }
    let readers = plan
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.inputs().contains(&mid))
        .count();
    let (i, step) = plan
        .steps
        .iter()
        .enumerate()
        .find(|(_, s)| s.output() == mid)?;
    let Step::Move { parts, .. } = step else {
        return None;
    };
    let shape = &plan.values[mid].shape;
    let covers =
        parts.len() == 1 && parts[0].start.iter().all(|s| *s == 0) && parts[0].extent == *shape;
    let reads_once = plan.steps[reader]
        .inputs()
        .iter()
        .filter(|v| **v == mid)
        .count()
        == 1;
    (readers == 1 && covers && reads_once && i < reader).then_some(i)
}

/// Composes step `i` (a simple move into input `k` of move `j`) into
/// `j`'s parts; `false` (nothing changed) if some part does not map.
fn compose(plan: &mut Plan, i: usize, j: usize, k: usize) -> bool {
    let Step::Move {
        inputs: src_inputs,
        parts: src_parts,
        output: mid,
        ..
    } = &plan.steps[i]
    else {
        return false;
    };
    let (src, first) = (src_inputs[0], src_parts[0].clone());
    let mid_shape = plan.values[*mid].shape.clone();
    let mst = strides(&mid_shape);
    let Step::Move { inputs, parts, .. } = &plan.steps[j] else {
        return false;
    };
    let mut new_parts = parts.clone();
    for p in new_parts.iter_mut().filter(|p| p.input == k) {
        // base as mid digits; each output axis moves one mid axis.
        let mut digit: Vec<usize> = mid_shape.iter().map(|_| 0).collect();
        let mut rest = p.base;
        for a in (0..mid_shape.len()).rev() {
            digit[a] = rest % mid_shape[a];
            rest /= mid_shape[a];
        }
        let mut reach = digit.clone();
        let mut stride = vec![0; p.stride.len()];
        for (d, s) in p.stride.iter().enumerate() {
            if *s == 0 || p.extent[d] == 1 {
                continue;
            }
            let Some(a) = (0..mid_shape.len())
                .find(|a| mid_shape[*a] > 1 && s % mst[*a] == 0 && s / mst[*a] < mid_shape[*a])
            else {
                return false;
            };
            let c = s / mst[a];
            reach[a] += (p.extent[d] - 1) * c;
            stride[d] = c * first.stride[a];
        }
        if reach.iter().zip(&mid_shape).any(|(r, n)| r >= n) {
            return false;
        }
        p.base = first.base
            + digit
                .iter()
                .zip(&first.stride)
                .map(|(x, s)| x * s)
                .sum::<usize>();
        p.stride = stride;
    }
    let mut new_inputs = inputs.clone();
    new_inputs[k] = src;
    if let Step::Move { inputs, parts, .. } = &mut plan.steps[j] {
        *inputs = new_inputs;
        *parts = new_parts;
    }
    true
}

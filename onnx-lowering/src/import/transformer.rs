//! Import rules for transformer encoders (BERT / MiniLM as the PyTorch
//! exporters write them and tract declutters them):
//!
//! - integer model inputs (token ids, attention masks) are raw `i32`
//!   values;
//! - `Gather` of a constant table by token ids is an embedding lookup;
//! - `Add` of an activation and a constant of the output's full shape (the
//!   position embeddings) reads the constant as an `i8` tensor;
//! - layer normalization as tract writes it (`Reduce<Sum>`, `Mul` by
//!   `1/len`, `Sub`, `RmsNorm`, then an optional per-column `Mul` and
//!   `Add`) is one integer layer normalization; when its input is the sum
//!   of two tensors (the residual connection) the sum is fused into it, so
//!   that it is never rounded to `i8`;
//! - `EinSum` of two activations (attention's `Q K^T` and `P V`, batched
//!   over heads) is a strided activation product;
//! - the attention mask chain (`Cast` of the mask input to bool, `GatherNd`
//!   with constant indices, `And` with constant true, `Where(mask, 0,
//!   -big)`, `Add` to the scores) feeding a `Softmax` is a masked softmax,
//!   and `Where(IsNaN(softmax), 0, softmax)` is the softmax itself (a fully
//!   masked row is already 0).

use super::analyze::{out0, Walker};
use super::linear::{konst, shape, strides, trailing_reduction, unsupported};
use super::plan::{Step, ValueId};
use crate::error::LowerError;
use std::collections::{HashMap, HashSet};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::array::{Gather, GatherNd};
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cast::Cast;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::logic::Iff;
use tract_onnx::tract_core::ops::nn::{Reduce, Reducer, RmsNorm};

/// A boolean (or additive) mask derived from an integer input: element `e`
/// of the outlet is `source[index[e]] != 0`.
#[derive(Clone, Debug)]
pub struct Mask {
    pub source: ValueId,
    pub index: Vec<usize>,
    pub shape: Vec<usize>,
}

/// The transformer rules' state.
#[derive(Default)]
pub struct State {
    masks: HashMap<OutletId, Mask>,
    /// `Where(mask, 0, -big)`: additive masks.
    additive: HashSet<OutletId>,
    /// Scores plus an additive mask: (scores, mask over the scores' shape).
    masked: HashMap<OutletId, (OutletId, Mask)>,
    /// Outlets that are always false (`IsNaN` of a softmax).
    never: HashSet<OutletId>,
    /// Sums deferred into the layer normalization that reads them.
    sums: HashMap<OutletId, (OutletId, OutletId)>,
    softmax_outputs: HashSet<OutletId>,
}

fn fact_shape(model: &TypedModel, o: OutletId) -> Result<Vec<usize>, LowerError> {
    let fact = model
        .outlet_fact(o)
        .map_err(|e| LowerError::Onnx(format!("{e:#}")))?;
    fact.shape
        .as_concrete()
        .map(|s| s.to_vec())
        .ok_or_else(|| unsupported(model.node(o.node), "symbolic shape"))
}

fn is_int(dt: DatumType) -> bool {
    dt == i64::datum_type() || dt == i32::datum_type()
}

/// `index` of a mask of shape `from` broadcast to `to` (numpy rules).
fn broadcast(m: &Mask, to: &[usize]) -> Option<Mask> {
    if m.shape.len() > to.len() {
        return None;
    }
    let off = to.len() - m.shape.len();
    let from: Vec<usize> = (0..to.len())
        .map(|i| if i < off { 1 } else { m.shape[i - off] })
        .collect();
    if (0..to.len()).any(|i| from[i] != 1 && from[i] != to[i]) {
        return None;
    }
    let (st_from, n) = (strides(&from), to.iter().product::<usize>());
    let st_to = strides(to);
    let index = (0..n)
        .map(|e| {
            let src: usize = (0..to.len())
                .map(|i| {
                    let c = (e / st_to[i]) % to[i];
                    if from[i] == 1 {
                        0
                    } else {
                        c * st_from[i]
                    }
                })
                .sum();
            m.index[src]
        })
        .collect();
    Some(Mask {
        source: m.source,
        index,
        shape: to.to_vec(),
    })
}

/// A layer normalization found after outlet `x`.
struct LnMatch {
    nodes: Vec<usize>,
    gamma: Vec<f64>,
    beta: Vec<f64>,
    eps: f64,
    last: OutletId,
    rows: usize,
    len: usize,
}

impl Walker<'_> {
    /// The single consumer of `o` (if `o` is not a model output).
    fn only_succ(&self, o: OutletId) -> Option<&TypedNode> {
        let succ = self.model.outlet_successors(o);
        (succ.len() == 1 && !self.outputs.contains(&o)).then(|| self.model.node(succ[0].node))
    }

    /// A binary node with a constant operand: (the constant, the other input).
    fn bin_const(&self, n: &TypedNode, name: &str) -> Option<(Vec<f64>, OutletId)> {
        let bin = n.op_as::<TypedBinOp>()?;
        if bin.0.name() != name || n.inputs.len() != 2 {
            return None;
        }
        for i in 0..2 {
            if let Some((_, c)) = konst(self.model, n.inputs[i]) {
                return Some((c, n.inputs[1 - i]));
            }
        }
        None
    }

    fn ln_pattern(&self, x: OutletId) -> Option<LnMatch> {
        let m = self.model;
        let xs = shape(m, x).ok()?;
        let len = *xs.last()?;
        let rows = xs.iter().product::<usize>() / len.max(1);
        let succ = m.outlet_successors(x);
        if succ.len() != 2 || self.outputs.contains(&x) || len < 2 {
            return None;
        }
        let r = succ
            .iter()
            .map(|s| m.node(s.node))
            .find(|n| n.op_as::<Reduce>().is_some())?;
        let red = r.op_as::<Reduce>()?;
        if red.reducer != Reducer::Sum || red.axes.as_slice() != [xs.len() - 1] {
            return None;
        }
        let mul = self.only_succ(out0(r))?;
        let (c, _) = self.bin_const(mul, "Mul")?;
        if c.len() != 1 || (c[0] * len as f64 - 1.0).abs() > 1e-5 {
            return None;
        }
        let sub = self.only_succ(out0(mul))?;
        let bin = sub.op_as::<TypedBinOp>()?;
        let ok_sub = (bin.0.name() == "Sub" && sub.inputs == [x, out0(mul)])
            || (bin.0.name() == "SubF" && sub.inputs == [out0(mul), x]);
        if !ok_sub || !succ.iter().any(|s| s.node == sub.id) {
            return None;
        }
        let rms = self.only_succ(out0(sub))?;
        let op = rms.op_as::<RmsNorm>()?;
        if op.axis != xs.len() - 1 {
            return None;
        }
        let eps = f64::from(op.eps.cast_to_scalar::<f32>().ok()?);
        let mut nodes = vec![r.id, mul.id, sub.id, rms.id];
        let mut last = out0(rms);
        let (mut gamma, mut beta) = (vec![1.0; len], vec![0.0; len]);
        let per_col = |c: Vec<f64>| -> Option<Vec<f64>> {
            match c.len() {
                1 => Some(vec![c[0]; len]),
                l if l == len => Some(c),
                _ => None,
            }
        };
        if let Some(g) = self.only_succ(last) {
            if let Some((c, _)) = self.bin_const(g, "Mul") {
                if shape(m, out0(g)).ok()? == xs {
                    gamma = per_col(c)?;
                    nodes.push(g.id);
                    last = out0(g);
                }
            }
        }
        if let Some(b) = self.only_succ(last) {
            if let Some((c, _)) = self.bin_const(b, "Add") {
                if shape(m, out0(b)).ok()? == xs {
                    beta = per_col(c)?;
                    nodes.push(b.id);
                    last = out0(b);
                }
            }
        }
        Some(LnMatch {
            nodes,
            gamma,
            beta,
            eps,
            last,
            rows,
            len,
        })
    }

    /// A model input: integer inputs are raw `i32` values.
    pub(super) fn define_input(&mut self, o: OutletId) -> Result<ValueId, LowerError> {
        let dt = self
            .model
            .outlet_fact(o)
            .map_err(|e| LowerError::Onnx(format!("{e:#}")))?
            .datum_type;
        let name = self.model.node(o.node).name.clone();
        if is_int(dt) {
            let v = self.plan.int_value(&name, &fact_shape(self.model, o)?);
            self.values.insert(o, v);
            Ok(v)
        } else {
            self.define(o, &name)
        }
    }

    /// The value of an operand that may be a constant of `full` elements.
    fn operand(&mut self, o: OutletId, full: usize) -> Result<ValueId, LowerError> {
        if let Some((_, c)) = konst(self.model, o) {
            if c.len() != full {
                return Err(unsupported(
                    self.model.node(o.node),
                    "constant operand that does not cover the whole output",
                ));
            }
            let name = format!("{}.const", self.model.node(o.node).name);
            let shape = shape(self.model, o)?;
            let output = self.plan.value(&name, &shape);
            self.plan.steps.push(Step::Const {
                name,
                output,
                data: c,
            });
            return Ok(output);
        }
        self.need(o)
    }

    /// Binary ops of the transformer rules; `true` if handled.
    pub(super) fn transformer_binary(
        &mut self,
        node: &TypedNode,
        name: &str,
    ) -> Result<bool, LowerError> {
        let (i0, i1) = (node.inputs[0], node.inputs[1]);
        let o = out0(node);
        if name == "And" {
            let (m, c) = match (self.tf.masks.get(&i0), self.tf.masks.get(&i1)) {
                (Some(m), None) => (m.clone(), i1),
                (None, Some(m)) => (m.clone(), i0),
                _ => return Err(unsupported(node, "And of two non-mask tensors")),
            };
            let all_true = konst(self.model, c).is_some_and(|(_, v)| v.iter().all(|x| *x != 0.0));
            let to = fact_shape(self.model, o)?;
            let Some(b) = broadcast(&m, &to).filter(|_| all_true) else {
                return Err(unsupported(node, "And of a mask with a non-true constant"));
            };
            self.tf.masks.insert(o, b);
            return Ok(true);
        }
        if name != "Add" {
            return Ok(false);
        }
        let (scores, mask) = match (
            self.tf.additive.contains(&i0),
            self.tf.additive.contains(&i1),
        ) {
            (false, true) => (i0, i1),
            (true, false) => (i1, i0),
            (true, true) => return Err(unsupported(node, "sum of two masks")),
            (false, false) => {
                let full = shape(self.model, o)?;
                let n = full.iter().product::<usize>();
                let ok = |w: &Self, x: OutletId| {
                    konst(w.model, x).map_or(
                        w.values.contains_key(&x) || w.pointwise.contains_key(&x),
                        |(_, c)| c.len() == n,
                    )
                };
                let both_full = shape(self.model, i0)? == full && shape(self.model, i1)? == full;
                let one_const = konst(self.model, i0).is_some() || konst(self.model, i1).is_some();
                if both_full && ok(self, i0) && ok(self, i1) {
                    if self.ln_pattern(o).is_some() {
                        self.tf.sums.insert(o, (i0, i1));
                        return Ok(true);
                    }
                    if one_const
                        && !(konst(self.model, i0).is_some() && konst(self.model, i1).is_some())
                    {
                        let (a, b) = (self.operand(i0, n)?, self.operand(i1, n)?);
                        let output = self.define(o, &node.name)?;
                        self.plan.steps.push(Step::Add {
                            name: node.name.clone(),
                            a,
                            b,
                            output,
                            negate_b: false,
                            relu: false,
                        });
                        return Ok(true);
                    }
                }
                return Ok(false);
            }
        };
        let to = shape(self.model, o)?;
        let m = self.tf.masks[&mask].clone();
        let Some(b) = broadcast(&m, &to) else {
            return Err(unsupported(node, "mask does not broadcast to the scores"));
        };
        if shape(self.model, scores)? != to {
            return Err(unsupported(node, "scores broadcast by the mask"));
        }
        self.tf.masked.insert(o, (scores, b));
        Ok(true)
    }

    /// Non-binary nodes of the transformer rules; `true` if handled.
    pub(super) fn transformer_node(&mut self, node: &TypedNode) -> Result<bool, LowerError> {
        let m = self.model;
        let o = out0(node);
        if let Some(g) = node.op_as::<Gather>() {
            let (Some((ts, tv)), None) = (konst(m, node.inputs[0]), konst(m, node.inputs[1]))
            else {
                return Err(unsupported(
                    node,
                    "only a constant table gathered by an activation",
                ));
            };
            let idx = self.need(node.inputs[1])?;
            if g.axis != 0 || ts.len() != 2 || ts.contains(&0) || !self.plan.values[idx].integer {
                return Err(unsupported(
                    node,
                    "only rows of a 2-D constant table by integer indices",
                ));
            }
            let output = self.define(o, &node.name)?;
            self.plan.steps.push(Step::Gather {
                name: node.name.clone(),
                indices: idx,
                output,
                table: tv,
                rows: ts[0],
                width: ts[1],
            });
            return Ok(true);
        }
        if let Some(c) = node.op_as::<Cast>() {
            if c.to != bool::datum_type() {
                return Ok(false);
            }
            let src = node.inputs[0];
            let v = self.values.get(&src).copied();
            let Some(v) = v.filter(|v| self.plan.values[*v].integer) else {
                return Err(unsupported(node, "cast to bool of a non-integer tensor"));
            };
            let sh = self.plan.values[v].shape.clone();
            let n = sh.iter().product();
            self.tf.masks.insert(
                o,
                Mask {
                    source: v,
                    index: (0..n).collect(),
                    shape: sh,
                },
            );
            return Ok(true);
        }
        if let Some(g) = node.op_as::<GatherNd>() {
            let Some(mk) = self.tf.masks.get(&node.inputs[0]).cloned() else {
                return Err(unsupported(node, "GatherNd of a non-mask tensor"));
            };
            let Some((is, iv)) = konst(m, node.inputs[1]) else {
                return Err(unsupported(node, "GatherNd with non-constant indices"));
            };
            let r = *is.last().unwrap_or(&0);
            if g.batch_dims != 0 || r == 0 || r > mk.shape.len() {
                return Err(unsupported(node, "GatherNd other than full-index lookups"));
            }
            let st = strides(&mk.shape);
            let inner: usize = mk.shape[r..].iter().product();
            let mut index = Vec::new();
            for t in iv.chunks(r) {
                let mut base = 0;
                for (i, x) in t.iter().enumerate() {
                    if *x < 0.0 || *x as usize >= mk.shape[i] {
                        return Err(unsupported(node, "GatherNd index out of range"));
                    }
                    base += *x as usize * st[i];
                }
                index.extend((0..inner).map(|q| mk.index[base + q]));
            }
            self.tf.masks.insert(
                o,
                Mask {
                    source: mk.source,
                    index,
                    shape: fact_shape(m, o)?,
                },
            );
            return Ok(true);
        }
        if node.op_is::<Iff>() {
            let (c, t, f) = (node.inputs[0], node.inputs[1], node.inputs[2]);
            if self.tf.never.contains(&c) {
                let v = self.need(f)?;
                self.values.insert(o, v);
                return Ok(true);
            }
            let zero = konst(m, t).is_some_and(|(_, v)| v.iter().all(|x| *x == 0.0));
            let big = konst(m, f).is_some_and(|(_, v)| v.iter().all(|x| *x <= -1e4));
            match self.tf.masks.get(&c).cloned() {
                Some(mk) if zero && big => {
                    self.tf.masks.insert(o, mk);
                    self.tf.additive.insert(o);
                    return Ok(true);
                }
                _ => return Err(unsupported(node, "Where other than an attention mask")),
            }
        }
        if let Some(ew) = node.op_as::<ElementWiseOp>() {
            if ew.0.name() == "IsNan" {
                if !self.tf.softmax_outputs.contains(&node.inputs[0]) {
                    return Err(unsupported(node, "IsNaN of a tensor other than a softmax"));
                }
                self.tf.never.insert(o);
                return Ok(true);
            }
            return Ok(false);
        }
        if let Some(r) = node.op_as::<Reduce>() {
            if r.reducer != Reducer::Sum {
                return Ok(false);
            }
            let x = node.inputs[0];
            let Some(ln) = self.ln_pattern(x).filter(|ln| ln.nodes[0] == node.id) else {
                return Ok(false);
            };
            let (a, b) = match self.tf.sums.get(&x).copied() {
                Some((i0, i1)) => {
                    let n = ln.rows * ln.len;
                    (self.operand(i0, n)?, Some(self.operand(i1, n)?))
                }
                None => (self.need(x)?, None),
            };
            self.folded.extend(ln.nodes.iter().copied());
            let name = format!("{}.layer_norm", node.name);
            let output = self.define(ln.last, &name)?;
            self.plan.steps.push(Step::LayerNorm {
                name,
                a,
                b,
                output,
                gamma: ln.gamma,
                beta: ln.beta,
                eps: ln.eps,
                rows: ln.rows,
                len: ln.len,
            });
            return Ok(true);
        }
        if let Some(es) = node.op_as::<EinSum>() {
            if konst(m, node.inputs[0]).is_some() || konst(m, node.inputs[1]).is_some() {
                return Ok(false);
            }
            self.act_matmul(node, es)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// `EinSum` of two activations: one batch, row, column and contracted
    /// axis at most (size-1 axes ignored).
    fn act_matmul(&mut self, node: &TypedNode, op: &EinSum) -> Result<(), LowerError> {
        if op.q_params.is_some() || node.inputs.len() != 2 || op.operating_dt != f32::datum_type() {
            return Err(unsupported(node, "only f32 products of two tensors"));
        }
        let sa = shape(self.model, node.inputs[0])?;
        let sb = shape(self.model, node.inputs[1])?;
        let so = shape(self.model, out0(node))?;
        let (sta, stb, sto) = (strides(&sa), strides(&sb), strides(&so));
        // Per role (batch, m, n, k): size and strides in a, b, out.
        let mut roles: [Option<(usize, [usize; 3])>; 4] = [None; 4];
        for ax in op.axes.iter_all_axes() {
            let (pa, pb, po) = (&ax.inputs[0], &ax.inputs[1], &ax.outputs[0]);
            if pa.len() > 1 || pb.len() > 1 || po.len() > 1 {
                return Err(unsupported(node, "an axis repeats in one operand"));
            }
            let size = pa
                .first()
                .map(|p| sa[*p])
                .or(pb.first().map(|p| sb[*p]))
                .or(po.first().map(|p| so[*p]))
                .unwrap_or(1);
            if size == 1 {
                continue;
            }
            let role = match (pa.is_empty(), pb.is_empty(), po.is_empty()) {
                (false, false, false) => 0,
                (false, true, false) => 1,
                (true, false, false) => 2,
                (false, false, true) => 3,
                _ => return Err(unsupported(node, "axis in one operand only")),
            };
            if roles[role].is_some() {
                return Err(unsupported(
                    node,
                    "several batch, row, column or contracted axes",
                ));
            }
            let st = [
                pa.first().map_or(0, |p| sta[*p]),
                pb.first().map_or(0, |p| stb[*p]),
                po.first().map_or(0, |p| sto[*p]),
            ];
            roles[role] = Some((size, st));
        }
        let get = |r: usize| roles[r].unwrap_or((1, [0; 3]));
        let (bt, mm, nn, kk) = (get(0), get(1), get(2), get(3));
        let a = self.need(node.inputs[0])?;
        let b = self.need(node.inputs[1])?;
        let output = self.define(out0(node), &node.name)?;
        self.plan.steps.push(Step::ActMatMul {
            name: node.name.clone(),
            a,
            b,
            output,
            dims: [bt.0, mm.0, nn.0, kk.0],
            a_stride: [bt.1[0], mm.1[0], kk.1[0]],
            b_stride: [bt.1[1], nn.1[1], kk.1[1]],
            o_stride: [bt.1[2], mm.1[2], nn.1[2]],
        });
        Ok(())
    }

    /// A softmax of masked scores; `true` if handled.
    pub(super) fn masked_softmax(
        &mut self,
        node: &TypedNode,
        axes: &[usize],
    ) -> Result<bool, LowerError> {
        let o = out0(node);
        let Some((scores, mk)) = self.tf.masked.get(&node.inputs[0]).cloned() else {
            self.tf.softmax_outputs.insert(o);
            return Ok(false);
        };
        let sh = shape(self.model, scores)?;
        let len = *sh.last().unwrap_or(&1);
        if trailing_reduction(&sh, axes) != Some((sh.iter().product::<usize>() / len, len))
            || !axes.contains(&(sh.len() - 1))
        {
            return Err(unsupported(
                node,
                "masked softmax over other than the last axis",
            ));
        }
        let src_len = self.plan.values[mk.source].len();
        let per_column = mk.index.iter().enumerate().all(|(e, i)| *i == e % len);
        if !per_column || src_len != len {
            return Err(unsupported(
                node,
                "attention mask that is not one flag per key position",
            ));
        }
        let input = self.need(scores)?;
        let output = self.define(o, &node.name)?;
        self.tf.softmax_outputs.insert(o);
        self.plan.steps.push(Step::MaskedSoftmax {
            name: node.name.clone(),
            input,
            mask: mk.source,
            output,
            rows: sh.iter().product::<usize>() / len,
            len,
        });
        Ok(true)
    }
}

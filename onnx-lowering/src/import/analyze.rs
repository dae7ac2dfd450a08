//! From tract's decluttered model to the float [`Plan`].
//!
//! Nodes are visited in tract's evaluation order:
//! - `Conv`, `EinSum` (MatMul / Gemm) and `Reduce<Sum>` with constant
//!   weights become linear steps, folding the per-channel constant
//!   `Add`/`Sub`/`Mul`/`Div` and the `Max(x, 0)` (ReLU) that follow them;
//! - `MaxPool` and `Reduce<Max>` over trailing axes become max pooling;
//! - `AxisOp` (reshape, flatten, squeeze, unsqueeze, and moves of size-1
//!   axes), `Identity` and `Cast` to f32 become aliases of the same bytes;
//! - an `Add`/`Sub` of two activations becomes a rescaled sum (with a
//!   following ReLU folded);
//! - a `Mul` of an activation by one broadcast along its trailing axes
//!   (`[1, C, H, W] * [1, C, 1, 1]`, a squeeze-and-excitation gate) becomes
//!   a per-channel product;
//! - `Softmax` over the trailing axes becomes the integer softmax;
//! - element-wise ops (`ElementWiseOp`, and binary ops of an activation
//!   with a scalar constant or of two functions of the same tensor) are
//!   collected into one expression of one source tensor, materialized as a
//!   lookup table where some other op (or a model output) reads it: GELU
//!   spelled out as `x * 0.5 * (1 + erf(x / sqrt 2))` is one table;
//! - an LSTM (tract's `Scan` loop) is unrolled over its fixed sequence
//!   length (see [`super::recurrent`]).
//!
//! A node these rules refuse goes to the general-purpose lowering of
//! [`super::general`] (data movement, broadcasting binary ops,
//! comparisons, logic, Where, average pooling). Everything else is
//! [`LowerError::Unsupported`], naming the tract node (which carries the
//! ONNX node's name).

use super::fold::{absorb, relu_after};
use super::linear::{self, konst, shape, unsupported};
use super::plan::{BinFn, Expr, Plan, Step, UnFn, ValueId};
use crate::error::LowerError;
use std::collections::{HashMap, HashSet};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cast::Cast;
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::cnn::{Conv, MaxPool};
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::identity::Identity;
use tract_onnx::tract_core::ops::konst::Const;
use tract_onnx::tract_core::ops::math::PowConst;
use tract_onnx::tract_core::ops::nn::{
    GeluApproximate, LeakyRelu, Reduce, Reducer, Softmax, SoftmaxKind,
};
use tract_onnx::tract_core::ops::source::TypedSource;

/// Largest element-wise expression (in tree nodes) folded into one table.
const MAX_EXPR: usize = 256;

pub(super) struct Walker<'a> {
    pub(super) model: &'a TypedModel,
    pub(super) plan: Plan,
    pub(super) values: HashMap<OutletId, ValueId>,
    /// Element-wise outlets not yet materialized: (source, expression, name).
    pub(super) pointwise: HashMap<OutletId, (OutletId, Expr, String)>,
    pub(super) folded: HashSet<usize>,
    pub(super) outputs: Vec<OutletId>,
    /// Transformer patterns (see [`super::transformer`]).
    pub(super) tf: super::transformer::State,
}

pub(super) fn out0(node: &TypedNode) -> OutletId {
    OutletId::new(node.id, 0)
}

/// The function of a tract element-wise op.
fn unary(node: &TypedNode, op: &ElementWiseOp) -> Result<UnFn, LowerError> {
    if op.1.is_some_and(|dt| dt != f32::datum_type()) {
        return Err(unsupported(node, "element-wise op with a non-f32 output"));
    }
    let mini = &op.0;
    Ok(match mini.name().as_str() {
        "Sigmoid" => UnFn::Sigmoid,
        "Tanh" => UnFn::Tanh,
        "Exp" => UnFn::Exp,
        "Ln" => UnFn::Ln,
        "Erf" => UnFn::Erf,
        "GeluExact" => UnFn::Gelu,
        "Silu" => UnFn::Silu,
        "HardSwish" => UnFn::HardSwish,
        "Abs" => UnFn::Abs,
        "Neg" => UnFn::Neg,
        "Square" => UnFn::Square,
        "Sqrt" => UnFn::Sqrt,
        "Recip" => UnFn::Recip,
        "Rsqrt" => UnFn::Rsqrt,
        "Floor" => UnFn::Floor,
        "Ceil" => UnFn::Ceil,
        "Round" => UnFn::Round,
        "RoundHalfToEven" => UnFn::RoundEven,
        "Sign" => UnFn::Sign,
        _ => {
            if let Some(g) = mini.downcast_ref::<GeluApproximate>() {
                UnFn::GeluTanh(if g.fast_impl { 2 } else { 3 })
            } else if let Some(l) = mini.downcast_ref::<LeakyRelu>() {
                UnFn::LeakyRelu(f64::from(l.alpha))
            } else if let Some(p) = mini.downcast_ref::<PowConst>() {
                UnFn::Pow(f64::from(p.exponent))
            } else {
                return Err(unsupported(
                    node,
                    "no integer lowering for this element-wise function",
                ));
            }
        }
    })
}

impl Walker<'_> {
    /// The plan value of an outlet, materializing a pending element-wise
    /// expression as a table step.
    pub(super) fn need(&mut self, o: OutletId) -> Result<ValueId, LowerError> {
        if let Some(v) = self.values.get(&o) {
            return Ok(*v);
        }
        let Some((src, expr, name)) = self.pointwise.get(&o).cloned() else {
            return Err(unsupported(
                self.model.node(o.node),
                "its output is read as an activation, but it is a constant or was not lowered",
            ));
        };
        let input = self.need(src)?;
        let output = self.plan.value(&name, &shape(self.model, o)?);
        self.plan.steps.push(Step::Pointwise {
            name,
            input,
            output,
            expr,
        });
        self.values.insert(o, output);
        Ok(output)
    }

    /// A new value for outlet `o`.
    pub(super) fn define(&mut self, o: OutletId, name: &str) -> Result<ValueId, LowerError> {
        let v = self.plan.value(name, &shape(self.model, o)?);
        self.values.insert(o, v);
        Ok(v)
    }

    /// The source and expression of an outlet as an element-wise function.
    fn source(&self, o: OutletId) -> (OutletId, Expr) {
        match self.pointwise.get(&o) {
            Some((src, e, _)) => (*src, e.clone()),
            None => (o, Expr::Var),
        }
    }

    fn pointwise(&mut self, node: &TypedNode, src: OutletId, expr: Expr) -> Result<(), LowerError> {
        if expr.size() > MAX_EXPR {
            return Err(unsupported(
                node,
                "element-wise expression too large for one table",
            ));
        }
        if shape(self.model, src)? != shape(self.model, out0(node))? {
            return Err(unsupported(
                node,
                "element-wise op that broadcasts its input",
            ));
        }
        self.pointwise
            .insert(out0(node), (src, expr, node.name.clone()));
        Ok(())
    }

    fn linear(&mut self, node: &TypedNode, mut lin: linear::Linear) -> Result<(), LowerError> {
        let (last, relu, folded) = absorb(self.model, &mut lin, out0(node), &self.outputs)?;
        let mut name = node.name.clone();
        for f in &folded {
            name = format!("{name}+{}", self.model.node(*f).name);
        }
        self.folded.extend(folded);
        let input = self.need(lin.input)?;
        let output = self.define(last, &name)?;
        self.plan.steps.push(lin.step(name, input, output, relu));
        Ok(())
    }

    fn binary(&mut self, node: &TypedNode, bin: &TypedBinOp) -> Result<(), LowerError> {
        if node.inputs.len() == 2 && self.transformer_binary(node, bin.0.name())? {
            return Ok(());
        }
        if node.inputs.len() != 2 || bin.1.is_some_and(|dt| dt != f32::datum_type()) {
            return Err(unsupported(node, "binary op with a non-f32 output"));
        }
        let (f, swap) = match bin.0.name() {
            "Add" => (BinFn::Add, false),
            "Sub" => (BinFn::Sub, false),
            "SubF" => (BinFn::Sub, true),
            "Mul" => (BinFn::Mul, false),
            "Div" => (BinFn::Div, false),
            "Max" => (BinFn::Max, false),
            "Min" => (BinFn::Min, false),
            "Pow" => (BinFn::Pow, false),
            _ => return Err(unsupported(node, "no integer lowering for this binary op")),
        };
        let (i0, i1) = (node.inputs[0], node.inputs[1]);
        let operand = |w: &Self, o: OutletId| -> Result<(Option<OutletId>, Expr), LowerError> {
            match konst(w.model, o) {
                Some((_, c)) if c.iter().all(|v| *v == c[0]) && !c.is_empty() => {
                    Ok((None, Expr::Const(c[0])))
                }
                Some(_) => Err(unsupported(
                    node,
                    "constant operand that is neither a scalar nor per-channel after a Conv/MatMul",
                )),
                None => {
                    let (s, e) = w.source(o);
                    Ok((Some(s), e))
                }
            }
        };
        let ((s0, e0), (s1, e1)) = (operand(self, i0)?, operand(self, i1)?);
        let (a, b) = if swap { (e1, e0) } else { (e0, e1) };
        let expr = Expr::Bin(f, Box::new(a), Box::new(b));
        match (s0, s1) {
            (Some(s), None) | (None, Some(s)) => self.pointwise(node, s, expr),
            (Some(s), Some(t)) if s == t => self.pointwise(node, s, expr),
            (Some(_), Some(_)) if matches!(f, BinFn::Add | BinFn::Sub) => {
                let out_shape = shape(self.model, out0(node))?;
                if shape(self.model, i0)? != out_shape || shape(self.model, i1)? != out_shape {
                    return Err(unsupported(
                        node,
                        "sum of tensors of different shapes (broadcasting)",
                    ));
                }
                let (a, b) = if swap { (i1, i0) } else { (i0, i1) };
                let (a, b) = (self.need(a)?, self.need(b)?);
                let relu = relu_after(self.model, out0(node), &self.outputs);
                let (last, name) = match relu {
                    Some(r) => (
                        out0(self.model.node(r)),
                        format!("{}+{}", node.name, self.model.node(r).name),
                    ),
                    None => (out0(node), node.name.clone()),
                };
                self.folded.extend(relu);
                let output = self.define(last, &name)?;
                self.plan.steps.push(Step::Add {
                    name,
                    a,
                    b,
                    output,
                    negate_b: f == BinFn::Sub,
                    relu: relu.is_some(),
                });
                Ok(())
            }
            (Some(_), Some(_)) if f == BinFn::Mul => self.channel_mul(node, i0, i1),
            (Some(_), Some(_)) => Err(unsupported(
                node,
                "element-wise op of two different activations (only sums and per-channel products are lowered)",
            )),
            (None, None) => Err(unsupported(node, "op on constants only")),
        }
    }

    /// `a * s` with `s` broadcast along the trailing axes of `a` (e.g.
    /// `[1, C, H, W] * [1, C, 1, 1]`, a squeeze-and-excitation gate).
    fn channel_mul(
        &mut self,
        node: &TypedNode,
        i0: OutletId,
        i1: OutletId,
    ) -> Result<(), LowerError> {
        let out_shape = shape(self.model, out0(node))?;
        let (s0, s1) = (shape(self.model, i0)?, shape(self.model, i1)?);
        let (a, s, ss) = if s0 == out_shape {
            (i0, i1, s1)
        } else if s1 == out_shape {
            (i1, i0, s0)
        } else {
            return Err(unsupported(node, "product that broadcasts both operands"));
        };
        // `ss` aligned to the right of `out_shape`: equal on a prefix of
        // the axes, 1 on the rest.
        let off = out_shape.len().checked_sub(ss.len());
        let full: Option<Vec<usize>> = off.map(|off| {
            (0..out_shape.len())
                .map(|i| if i < off { 1 } else { ss[i - off] })
                .collect()
        });
        let Some(full) = full else {
            return Err(unsupported(node, "product that broadcasts both operands"));
        };
        let split = (0..=out_shape.len())
            .find(|i| full[*i..].iter().all(|d| *d == 1))
            .unwrap_or(out_shape.len());
        if (0..split).any(|i| full[i] != out_shape[i]) {
            return Err(unsupported(
                node,
                "product of two activations that is not per-channel (only [.., C, 1, 1] gates)",
            ));
        }
        let channels: usize = out_shape[..split].iter().product();
        let inner: usize = out_shape[split..].iter().product();
        let (a, s) = (self.need(a)?, self.need(s)?);
        let output = self.define(out0(node), &node.name)?;
        self.plan.steps.push(Step::ChannelMul {
            name: node.name.clone(),
            a,
            s,
            output,
            channels,
            inner,
        });
        Ok(())
    }

    /// `Softmax` over the trailing axes (of size > 1).
    fn softmax(&mut self, node: &TypedNode, op: &Softmax) -> Result<(), LowerError> {
        if op.kind != SoftmaxKind::Softmax || op.quant_output_dt.is_some() {
            return Err(unsupported(node, "only the plain float softmax"));
        }
        if self.masked_softmax(node, &op.axes)? {
            return Ok(());
        }
        let in_shape = shape(self.model, node.inputs[0])?;
        let Some((rows, len)) = linear::trailing_reduction(&in_shape, &op.axes) else {
            return Err(unsupported(node, "softmax over axes that are not trailing"));
        };
        let input = self.need(node.inputs[0])?;
        let output = self.define(out0(node), &node.name)?;
        self.plan.steps.push(Step::Softmax {
            name: node.name.clone(),
            input,
            output,
            rows,
            len,
        });
        Ok(())
    }

    fn max_pool(&mut self, node: &TypedNode, op: &MaxPool) -> Result<(), LowerError> {
        if op.with_index_outputs.is_some() {
            return Err(unsupported(node, "max pooling with index outputs"));
        }
        let [_, h, w] = linear::chw(node, &shape(self.model, node.inputs[0])?)?;
        let [_, oh, ow] = linear::chw(node, &shape(self.model, out0(node))?)?;
        let (stride, pad, dil, out) = linear::geometry(node, &op.pool_spec, [h, w])?;
        let k = &op.pool_spec.kernel_shape;
        let (kh, kw) = (k[0], k[1]);
        let windows_ok = |oh: usize, ow: usize| {
            pad[0] < kh
                && pad[1] < kw
                && (oh - 1) * stride[0] < h + pad[0]
                && (ow - 1) * stride[1] < w + pad[1]
        };
        if dil != [1, 1]
            || out != [oh, ow]
            || stride.contains(&0)
            || oh == 0
            || ow == 0
            || !windows_ok(oh, ow)
        {
            return Err(unsupported(
                node,
                "dilated, empty or out-of-range pooling windows",
            ));
        }
        let input = self.need(node.inputs[0])?;
        let output = self.define(out0(node), &node.name)?;
        self.plan.steps.push(Step::MaxPool {
            name: node.name.clone(),
            input,
            output,
            kernel: [kh, kw],
            stride,
            pad,
        });
        Ok(())
    }

    /// `Reduce<Max>` over trailing axes: a max pool over `[outer, 1, k]`.
    fn reduce_max(&mut self, node: &TypedNode, axes: &[usize]) -> Result<(), LowerError> {
        let in_shape = shape(self.model, node.inputs[0])?;
        let Some((outer, k)) = linear::trailing_reduction(&in_shape, axes) else {
            return Err(unsupported(node, "only reductions over the trailing axes"));
        };
        let src = self.need(node.inputs[0])?;
        let input = self
            .plan
            .value(&format!("{}.in", node.name), &[outer, 1, k]);
        self.plan.steps.push(Step::Alias {
            input: src,
            output: input,
        });
        let output = self
            .plan
            .value(&format!("{}.out", node.name), &[outer, 1, 1]);
        self.plan.steps.push(Step::MaxPool {
            name: node.name.clone(),
            input,
            output,
            kernel: [1, k],
            stride: [1, 1],
            pad: [0; 4],
        });
        let last = self.define(out0(node), &node.name)?;
        self.plan.steps.push(Step::Alias {
            input: output,
            output: last,
        });
        Ok(())
    }

    fn alias(&mut self, node: &TypedNode) -> Result<(), LowerError> {
        let input = self.need(node.inputs[0])?;
        let output = self.define(out0(node), &node.name)?;
        if self.plan.values[input].len() != self.plan.values[output].len() {
            return Err(unsupported(node, "reshape that changes the element count"));
        }
        self.plan.steps.push(Step::Alias { input, output });
        Ok(())
    }

    fn node(&mut self, node: &TypedNode) -> Result<(), LowerError> {
        if self.recurrent_node(node)? {
            return Ok(()); // An LSTM loop (see `super::recurrent`).
        }
        if node.op_is::<tract_onnx::tract_core::ops::lstm_cell::LstmEpilogue>() {
            return Err(unsupported(
                node,
                "an LSTM over a single timestep (tract inlines its loop; lowered only as a Scan of 2 or more timesteps)",
            ));
        }
        if node.outputs.len() != 1 && !node.op_is::<Const>() {
            return Err(unsupported(node, "ops with several outputs"));
        }
        if node.op_is::<TypedSource>() || node.op_is::<Const>() {
            // Inputs are defined up front; constants are read by their consumers.
        } else if self.prequant_node(node)? {
            // A quantize / dequantize of a pre-quantized model.
        } else if let Some(conv) = node.op_as::<Conv>() {
            let lin = linear::conv(self.model, node, conv)?;
            self.linear(node, lin)?;
        } else if self.transformer_node(node)? {
            // Handled by a transformer rule.
        } else if let Some(es) = node.op_as::<EinSum>() {
            let lin = linear::einsum(self.model, node, es)?;
            self.linear(node, lin)?;
        } else if let Some(r) = node.op_as::<Reduce>() {
            match r.reducer {
                Reducer::Sum => {
                    let lin = linear::reduce_sum(self.model, node, &r.axes)?;
                    self.linear(node, lin)?;
                }
                Reducer::Max => self.reduce_max(node, &r.axes)?,
                _ => return Err(unsupported(node, format!("reduction {:?}", r.reducer))),
            }
        } else if let Some(sm) = node.op_as::<Softmax>() {
            self.softmax(node, sm)?;
        } else if let Some(mp) = node.op_as::<MaxPool>() {
            self.max_pool(node, mp)?;
        } else if let Some(bin) = node.op_as::<TypedBinOp>() {
            self.binary(node, bin)?;
        } else if let Some(ew) = node.op_as::<ElementWiseOp>() {
            let f = unary(node, ew)?;
            let (src, e) = self.source(node.inputs[0]);
            self.pointwise(node, src, Expr::Un(f, Box::new(e)))?;
        } else if let Some(ax) = node.op_as::<AxisOp>() {
            let in_shape = shape(self.model, node.inputs[0])?;
            if let AxisOp::Move(from, to) = ax {
                let mut ids: Vec<usize> = (0..in_shape.len()).collect();
                if *from >= ids.len() || *to >= ids.len() {
                    return Err(unsupported(node, "axis out of range"));
                }
                let a = ids.remove(*from);
                ids.insert(*to, a);
                let moved: Vec<usize> = ids.into_iter().filter(|a| in_shape[*a] > 1).collect();
                if moved.windows(2).any(|w| w[0] > w[1]) {
                    return Err(unsupported(node, "transpose (moves data in memory)"));
                }
            }
            self.alias(node)?;
        } else if node.op_is::<Identity>()
            || node
                .op_as::<Cast>()
                .is_some_and(|c| c.to == f32::datum_type())
        {
            self.alias(node)?;
        } else {
            return Err(unsupported(node, "no integer lowering for this op"));
        }
        Ok(())
    }
}

/// The plan of a decluttered model.
pub fn analyze(model: &TypedModel) -> Result<Plan, LowerError> {
    let onnx = |e: TractError| LowerError::Onnx(format!("{e:#}"));
    let mut w = Walker {
        model,
        plan: Plan::default(),
        values: HashMap::new(),
        pointwise: HashMap::new(),
        folded: HashSet::new(),
        outputs: model.output_outlets().map_err(onnx)?.to_vec(),
        tf: Default::default(),
    };
    for o in model.input_outlets().map_err(onnx)? {
        let v = w.define_input(*o)?;
        w.plan.inputs.push(v);
    }
    for id in model.eval_order().map_err(onnx)? {
        if !w.folded.contains(&id) {
            let node = model.node(id);
            w.node(node).or_else(|e| w.general_fallback(node, e))?;
        }
    }
    for o in w.outputs.clone() {
        let v = w.need(o)?;
        w.plan.outputs.push(v);
    }
    super::movement::fuse_moves(&mut w.plan);
    Ok(w.plan)
}

//! General-purpose ops the specific rules of [`super::analyze`] and
//! [`super::transformer`] refuse, tried after them: data movement (see
//! [`super::movement`]), broadcasting binary ops of two activations (or of
//! an activation and a constant tensor) as [`Step::Binary`]: Add, Sub,
//! Mul, Max, Min with their own requantization, comparisons (Equal, Less,
//! LessOrEqual, Greater, GreaterOrEqual) and logic (And, Or, Xor, Not,
//! Cast to bool) giving `0`/`1` with scale 1, `Where` as a select;
//! `IsNaN` of a quantized tensor (always false) folded to a constant; and
//! average pooling (tract's `SumPool`) as [`Step::AvgPool`].

use super::analyze::{out0, Walker};
use super::linear::{self, konst, shape, strides, unsupported};
use super::movement::eval_move;
use super::plan::{Expr, Plan, Step, UnFn, ValueId};
use crate::error::LowerError;
use crate::ir::BinaryKind;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cast::Cast;
use tract_onnx::tract_core::ops::cnn::SumPool;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::logic::Iff;

/// Strides of an operand of shape `sh` read at every element of an output
/// of shape `out` (numpy broadcasting: size-1 and missing axes stride 0).
fn broadcast_strides(sh: &[usize], out: &[usize]) -> Option<Vec<usize>> {
    let off = out.len().checked_sub(sh.len())?;
    let st = strides(sh);
    (0..out.len())
        .map(|d| match d.checked_sub(off) {
            None => Some(0),
            Some(i) if sh[i] == out[d] => Some(if sh[i] == 1 { 0 } else { st[i] }),
            Some(i) if sh[i] == 1 => Some(0),
            Some(_) => None,
        })
        .collect()
}

/// The concrete shape of an `f32` or `bool` outlet (a predicate's output
/// is an `i8` value of `0`/`1`).
fn shape_or_bool(model: &TypedModel, o: OutletId) -> Result<Vec<usize>, LowerError> {
    let fact = model
        .outlet_fact(o)
        .map_err(|e| LowerError::Onnx(format!("{e:#}")))?;
    if fact.datum_type != bool::datum_type() {
        return shape(model, o);
    }
    let s = fact
        .shape
        .as_concrete()
        .ok_or_else(|| unsupported(model.node(o.node), "symbolic shape"))?;
    let n = s.iter().try_fold(1u64, |a, d| a.checked_mul(*d as u64));
    if n.is_none_or(|n| n > super::lower::MAX_TENSOR_BYTES) {
        return Err(unsupported(model.node(o.node), "tensor too large"));
    }
    Ok(s.to_vec())
}

impl Walker<'_> {
    /// A new value for an `f32` or `bool` outlet.
    fn define_any(&mut self, o: OutletId, name: &str) -> Result<ValueId, LowerError> {
        let v = self.plan.value(name, &shape_or_bool(self.model, o)?);
        self.values.insert(o, v);
        Ok(v)
    }

    /// Called when the specific rules refused `node` with `refused`: the
    /// general lowering if there is one, else `refused`.
    pub(super) fn general_fallback(
        &mut self,
        node: &TypedNode,
        refused: LowerError,
    ) -> Result<(), LowerError> {
        if !matches!(refused, LowerError::Unsupported { .. }) {
            return Err(refused);
        }
        if self.general_node(node)? {
            Ok(())
        } else {
            Err(refused)
        }
    }

    fn general_node(&mut self, node: &TypedNode) -> Result<bool, LowerError> {
        if node.outputs.len() != 1 {
            return Ok(false);
        }
        if self.movement_node(node)? {
            return Ok(true);
        }
        let o = out0(node);
        if let Some(bin) = node.op_as::<TypedBinOp>() {
            if bin.0.name() == "Div" {
                self.divide(node)?;
                return Ok(true);
            }
            let (kind, negate, swap) = match bin.0.name() {
                "Add" => (BinaryKind::Add, false, false),
                "Sub" => (BinaryKind::Add, true, false),
                "SubF" => (BinaryKind::Add, true, true),
                "Mul" => (BinaryKind::Mul, false, false),
                "Max" => (BinaryKind::Max, false, false),
                "Min" => (BinaryKind::Min, false, false),
                "Eq" => (BinaryKind::Equal, false, false),
                "LT" => (BinaryKind::Less, false, false),
                "LTE" => (BinaryKind::LessOrEqual, false, false),
                "GT" => (BinaryKind::Less, false, true),
                "GTE" => (BinaryKind::LessOrEqual, false, true),
                "And" => (BinaryKind::And, false, false),
                "Or" => (BinaryKind::Or, false, false),
                "Xor" => (BinaryKind::Xor, false, false),
                _ => return Ok(false),
            };
            let (i0, i1) = (node.inputs[0], node.inputs[1]);
            let (a, b) = if swap { (i1, i0) } else { (i0, i1) };
            self.binary_step(node, kind, negate, [a, b], None)?;
        } else if node.op_is::<Iff>() {
            let (c, t, f) = (node.inputs[0], node.inputs[1], node.inputs[2]);
            if let Some(pick) = self.constant_condition(c)? {
                let v = self.value_or_const(if pick { t } else { f })?;
                let out_shape = shape(self.model, o)?;
                if self.plan.values[v].shape.iter().product::<usize>()
                    != out_shape.iter().product::<usize>()
                {
                    return Err(unsupported(
                        node,
                        "Where that broadcasts its chosen operand",
                    ));
                }
                let output = self.define(o, &node.name)?;
                self.plan.steps.push(Step::Alias { input: v, output });
                return Ok(true);
            }
            self.binary_step(node, BinaryKind::Select, false, [t, f], Some(c))?;
        } else if let Some(ew) = node.op_as::<ElementWiseOp>() {
            match ew.0.name().as_str() {
                // x xor 1
                "Not" => {
                    let one = self.constant(node, "one", vec![1.0])?;
                    let a = self.need(node.inputs[0])?;
                    self.push_binary(node, BinaryKind::Xor, false, [a, one, a], None)?;
                }
                // Quantized values are never NaN.
                "IsNan" => {
                    let n = shape_or_bool(self.model, o)?.iter().product();
                    let name = format!("{}.false", node.name);
                    let output = self.define_any(o, &name)?;
                    self.plan.steps.push(Step::Const {
                        name,
                        output,
                        data: vec![0.0; n],
                    });
                }
                _ => return Ok(false),
            }
        } else if let Some(c) = node.op_as::<Cast>() {
            if c.to != bool::datum_type() {
                return Ok(false);
            }
            // x != 0 as (x or x)
            let a = self.need(node.inputs[0])?;
            if self.plan.values[a].integer {
                return Err(unsupported(node, "cast to bool of raw integers"));
            }
            self.push_binary(node, BinaryKind::Or, false, [a, a, a], None)?;
        } else if let Some(sp) = node.op_as::<SumPool>() {
            self.avg_pool(node, sp)?;
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    /// A constant value of one element.
    fn constant(
        &mut self,
        node: &TypedNode,
        what: &str,
        data: Vec<f64>,
    ) -> Result<ValueId, LowerError> {
        let name = format!("{}.{what}", node.name);
        let output = self.plan.value(&name, &[data.len()]);
        self.plan.steps.push(Step::Const { name, output, data });
        Ok(output)
    }

    /// `Some(v)` if the condition is the same constant `v` everywhere (a
    /// model constant or a folded `IsNaN`).
    fn constant_condition(&mut self, c: OutletId) -> Result<Option<bool>, LowerError> {
        let data = match konst(self.model, c) {
            Some((_, d)) => d,
            None => {
                let v = self.need(c)?;
                match self.plan.steps.iter().find(|s| s.output() == v) {
                    Some(Step::Const { data, .. }) => data.clone(),
                    _ => return Ok(None),
                }
            }
        };
        let first = data.first().is_some_and(|x| *x != 0.0);
        Ok(data.iter().all(|x| (*x != 0.0) == first).then_some(first))
    }

    /// `a / b` of two activations: `a * r` with `r = 1 / b` a calibrated
    /// element-wise table of `b` (exact per `i8` level of `b`; a `b` level
    /// of 0 saturates `r`).
    fn divide(&mut self, node: &TypedNode) -> Result<(), LowerError> {
        let va = self.value_or_const(node.inputs[0])?;
        let vb = self.value_or_const(node.inputs[1])?;
        if self.plan.values[vb].integer {
            return Err(unsupported(node, "division by raw integers"));
        }
        let shape_b = self.plan.values[vb].shape.clone();
        let r = self.plan.value(&format!("{}.recip", node.name), &shape_b);
        self.plan.steps.push(Step::Pointwise {
            name: format!("{}.recip", node.name),
            input: vb,
            output: r,
            expr: Expr::Un(UnFn::Recip, Box::new(Expr::Var)),
        });
        self.push_binary(node, BinaryKind::Mul, false, [va, r, va], None)
    }

    /// A broadcasting binary step reading outlets `[a, b]` (and `c`).
    fn binary_step(
        &mut self,
        node: &TypedNode,
        kind: BinaryKind,
        negate_b: bool,
        [a, b]: [OutletId; 2],
        c: Option<OutletId>,
    ) -> Result<(), LowerError> {
        let va = self.value_or_const(a)?;
        let vb = self.value_or_const(b)?;
        let vc = match c {
            Some(c) => Some(self.value_or_const(c)?),
            None => None,
        };
        self.push_binary(node, kind, negate_b, [va, vb, vc.unwrap_or(va)], vc)
    }

    fn push_binary(
        &mut self,
        node: &TypedNode,
        kind: BinaryKind,
        negate_b: bool,
        ops: [ValueId; 3],
        c: Option<ValueId>,
    ) -> Result<(), LowerError> {
        let out_shape = shape_or_bool(self.model, out0(node))?;
        if out_shape.len() > 6 {
            return Err(unsupported(node, "element-wise op of more than 6 axes"));
        }
        if ops.iter().any(|v| self.plan.values[*v].integer) {
            return Err(unsupported(node, "element-wise op of raw integers"));
        }
        let mut st: [Vec<usize>; 3] = Default::default();
        for (k, v) in ops.iter().enumerate() {
            let sh = self.plan.values[*v].shape.clone();
            st[k] = broadcast_strides(&sh, &out_shape)
                .ok_or_else(|| unsupported(node, "operands that do not broadcast"))?;
        }
        let output = self.define_any(out0(node), &node.name)?;
        self.plan.steps.push(Step::Binary {
            name: node.name.clone(),
            kind,
            negate_b,
            a: ops[0],
            b: ops[1],
            c,
            output,
            strides: st,
        });
        Ok(())
    }

    fn avg_pool(&mut self, node: &TypedNode, op: &SumPool) -> Result<(), LowerError> {
        let [_, h, w] = linear::chw(node, &shape(self.model, node.inputs[0])?)?;
        let [_, oh, ow] = linear::chw(node, &shape(self.model, out0(node))?)?;
        let (stride, pad, dil, out) = linear::geometry(node, &op.pool_spec, [h, w])?;
        let k = &op.pool_spec.kernel_shape;
        let (kh, kw) = (k[0], k[1]);
        if dil != [1, 1]
            || out != [oh, ow]
            || stride.contains(&0)
            || oh == 0
            || ow == 0
            || pad[0] >= kh
            || pad[2] >= kh
            || pad[1] >= kw
            || pad[3] >= kw
        {
            return Err(unsupported(
                node,
                "dilated pooling, or padding not smaller than the kernel",
            ));
        }
        let input = self.need(node.inputs[0])?;
        let output = self.define(out0(node), &node.name)?;
        self.plan.steps.push(Step::AvgPool {
            name: node.name.clone(),
            input,
            output,
            kernel: [kh, kw],
            stride,
            pad,
            count_include_pad: op.count_include_pad,
            normalize: op.normalize,
        });
        Ok(())
    }
}

/// The `f64` value of a [`Step::Binary`] on real numbers.
fn binary_f64(kind: BinaryKind, negate_b: bool, x: f64, y: f64, c: f64) -> f64 {
    let b = |p: bool| if p { 1.0 } else { 0.0 };
    match kind {
        BinaryKind::Add if negate_b => x - y,
        BinaryKind::Add => x + y,
        BinaryKind::Mul => x * y,
        BinaryKind::Max => x.max(y),
        BinaryKind::Min => x.min(y),
        BinaryKind::Select => {
            if c != 0.0 {
                x
            } else {
                y
            }
        }
        BinaryKind::Equal => b(x == y),
        BinaryKind::Less => b(x < y),
        BinaryKind::LessOrEqual => b(x <= y),
        BinaryKind::And => b(x != 0.0 && y != 0.0),
        BinaryKind::Or => b(x != 0.0 || y != 0.0),
        BinaryKind::Xor => b((x != 0.0) != (y != 0.0)),
    }
}

/// Calibration: the step on `f64` values (`get` gives a value's data).
pub fn eval<'a>(plan: &Plan, step: &Step, get: &dyn Fn(ValueId) -> &'a [f64]) -> Vec<f64> {
    let out_shape = &plan.values[step.output()].shape;
    let out_len = plan.values[step.output()].len();
    match step {
        Step::Move {
            inputs,
            parts,
            fill,
            ..
        } => {
            let ins: Vec<&[f64]> = inputs.iter().map(|v| get(*v)).collect();
            eval_move(out_len, out_shape, &ins, parts, *fill)
        }
        Step::Binary {
            kind,
            negate_b,
            a,
            b,
            c,
            strides: st,
            ..
        } => {
            let (a, b) = (get(*a), get(*b));
            let c = c.map(get);
            (0..out_len)
                .map(|i| {
                    let mut rest = i;
                    let mut at = [0usize; 3];
                    for d in (0..out_shape.len()).rev() {
                        let k = rest % out_shape[d];
                        rest /= out_shape[d];
                        for (slot, s) in at.iter_mut().zip(st) {
                            *slot += k * s[d];
                        }
                    }
                    let cv = c.map_or(0.0, |c| c[at[2]]);
                    binary_f64(*kind, *negate_b, a[at[0]], b[at[1]], cv)
                })
                .collect()
        }
        Step::AvgPool {
            input,
            kernel,
            stride,
            pad,
            count_include_pad,
            normalize,
            ..
        } => {
            let x = get(*input);
            let in_shape = &plan.values[*input].shape;
            let r = in_shape.len();
            let (h, w) = (in_shape[r - 2] as i64, in_shape[r - 1] as i64);
            let (oh, ow) = (out_shape[r - 2], out_shape[r - 1]);
            let c = out_len / (oh * ow).max(1);
            let [kh, kw] = kernel.map(|k| k as i64);
            let p = pad.map(|v| v as i64);
            let mut out = Vec::with_capacity(out_len);
            for ch in 0..c as i64 {
                for y in 0..oh as i64 {
                    for xx in 0..ow as i64 {
                        let ty = y * stride[0] as i64 - p[0];
                        let tx = xx * stride[1] as i64 - p[1];
                        let (mut sum, mut n) = (0.0, 0.0);
                        for iy in ty..ty + kh {
                            for ix in tx..tx + kw {
                                let inside = (0..h).contains(&iy) && (0..w).contains(&ix);
                                let padded = (-p[0]..h + p[2]).contains(&iy)
                                    && (-p[1]..w + p[3]).contains(&ix);
                                if inside {
                                    sum += x[((ch * h + iy) * w + ix) as usize];
                                }
                                if inside || (*count_include_pad && padded) {
                                    n += 1.0;
                                }
                            }
                        }
                        out.push(if *normalize {
                            sum / f64::max(n, 1.0)
                        } else {
                            sum
                        });
                    }
                }
            }
            out
        }
        _ => unreachable!("only the general steps"),
    }
}

//! Lowering of the general steps: [`Step::Move`] to `ir::Rearrange`,
//! [`Step::Binary`] to `ir::Binary`, [`Step::AvgPool`] to `ir::AvgPool`.
//!
//! Scales: a move copies values, so its output keeps the scale its inputs
//! share (when the fill fits in it); inputs of a concatenation with
//! different scales are first requantized to the output's calibrated scale
//! by an exact 256-entry `ir::Lut` each. Comparisons and logic give `0`/`1`
//! with scale 1. Sums, products, maxima, minima, selects and averages
//! have their calibrated scale and requantize to it: `a s_a / s_o` and `b
//! s_b / s_o` with one common shift (`add_multipliers`), `a b s_a s_b /
//! s_o` (one multiplier), `sum s_in / (n s_o)` per window count `n`.

use super::{err, Lowering};
use crate::error::LowerError;
use crate::import::plan::{Plan, Step, ValueId};
use crate::import::quantize::{add_multipliers, multiplier, round_clamp};
use crate::ir::{self, BinaryKind, DType, Op, TensorId, TensorKind};

/// The scale a general step gives its output instead of the calibrated
/// one, if any (applied in step order with the other fixed scales).
pub(super) fn output_scale(plan: &Plan, step: &Step, scales: &[f32]) -> Option<f32> {
    match step {
        Step::Move { inputs, fill, .. } => {
            let s = *scales.get(*inputs.first()?)?;
            let shared = inputs.iter().all(|v| scales[*v].to_bits() == s.to_bits());
            let fits = (fill / f64::from(s)).abs() <= 127.0;
            let raw = inputs.iter().any(|v| plan.values[*v].integer);
            (shared && fits && !raw).then_some(s)
        }
        Step::Binary { kind, .. } if kind.is_predicate() => Some(1.0),
        _ => None,
    }
}

/// `[u32; 6]` of per-axis values right-aligned (leading axes `pad`).
fn six(v: &[usize], pad: u32) -> [u32; 6] {
    let mut out = [pad; 6];
    for (slot, x) in out.iter_mut().rev().zip(v.iter().rev()) {
        *slot = *x as u32;
    }
    out
}

impl Lowering<'_> {
    /// The general steps; `None` for every other step.
    pub(super) fn general_step(&mut self, step: &Step) -> Option<Result<(), LowerError>> {
        match step {
            Step::Move { .. } => Some(self.lower_move(step)),
            Step::Binary { .. } => Some(self.lower_binary(step)),
            Step::AvgPool { .. } => Some(self.lower_avg_pool(step)),
            _ => None,
        }
    }

    /// Refuses values with per-column scales or in `i16`/`i32` layouts
    /// the general kernels do not read.
    fn plain(&self, name: &str, op: &str, v: ValueId) -> Result<(), LowerError> {
        if self.cols[v].is_some() || self.half[v].is_some() || self.wide[v] {
            return Err(err(
                name,
                op,
                "an operand with per-column scales or a widened (i16/i32) layout",
            ));
        }
        Ok(())
    }

    fn lower_move(&mut self, step: &Step) -> Result<(), LowerError> {
        let Step::Move {
            name,
            inputs,
            output,
            parts,
            fill,
        } = step
        else {
            unreachable!("a move")
        };
        let out_v = *output;
        let int = self.plan.values[out_v].integer;
        let s_out = self.scales[out_v];
        let mut tensors: Vec<TensorId> = Vec::with_capacity(inputs.len());
        for (k, v) in inputs.iter().enumerate() {
            self.plain(name, "Move", *v)?;
            let t = self.tensor(*v);
            let s_in = self.scales[*v];
            if int || s_in.to_bits() == s_out.to_bits() {
                tensors.push(t);
                continue;
            }
            // Requantize to the output's scale: exact for every i8 value.
            let table: Vec<i8> = (0..=255u8)
                .map(|q| {
                    let x = f64::from(q as i8) * f64::from(s_in) / f64::from(s_out);
                    round_clamp(x, -128, 127) as i8
                })
                .collect();
            let rname = format!("{name}.rescale{k}");
            let tb = self.const_i8(&format!("{rname}.table"), &[256], &table)?;
            let value = &self.plan.values[*v];
            self.room(&rname, value.len(), 1)?;
            let shape = self.shape(*v);
            let r = self
                .b
                .tensor(&rname, DType::I8, &shape, TensorKind::Activation);
            self.b.set_quant(r, s_out, 0);
            self.b.node(
                &rname,
                Op::Lut(ir::Lut {
                    input: t,
                    table: tb,
                    output: r,
                }),
            );
            tensors.push(r);
        }
        self.plain(name, "Move", out_v)?;
        let output = self.define(out_v, TensorKind::Activation)?;
        let fill = if int {
            fill.round().clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
        } else {
            round_clamp(fill / f64::from(s_out), -128, 127)
        };
        let parts = parts
            .iter()
            .map(|p| ir::CopyPart {
                input: tensors[p.input],
                base: p.base as u32,
                stride: six(&p.stride, 0),
                start: six(&p.start, 0),
                extent: six(&p.extent, 1),
            })
            .collect();
        self.b.node(
            name,
            Op::Rearrange(ir::Rearrange {
                output,
                parts,
                fill,
            }),
        );
        Ok(())
    }

    fn lower_binary(&mut self, step: &Step) -> Result<(), LowerError> {
        let Step::Binary {
            name,
            kind,
            negate_b,
            a,
            b,
            c,
            output,
            strides,
        } = step
        else {
            unreachable!("a binary step")
        };
        let out_v = *output;
        for v in [*a, *b, out_v].into_iter().chain(*c) {
            self.plain(name, "Binary", v)?;
        }
        let (sa, sb, so) = (
            f64::from(self.scales[*a]),
            f64::from(self.scales[*b]),
            f64::from(self.scales[out_v]),
        );
        let sign = if *negate_b { -1.0 } else { 1.0 };
        let (ma, mb, shift) = match kind {
            BinaryKind::Add => add_multipliers(sa / so, sign * sb / so),
            BinaryKind::Mul => multiplier(sa * sb / so).map(|(m, s)| (m, 0, s)),
            BinaryKind::Max | BinaryKind::Min | BinaryKind::Select => {
                add_multipliers(sa / so, sb / so)
            }
            // Compared in a common unit (exactly 1:1 when the scales match).
            BinaryKind::Equal | BinaryKind::Less | BinaryKind::LessOrEqual => {
                if sa.to_bits() == sb.to_bits() {
                    Ok((1, 1, 1))
                } else {
                    let big = sa.max(sb);
                    add_multipliers(sa / big, sb / big)
                }
            }
            BinaryKind::And | BinaryKind::Or | BinaryKind::Xor => Ok((1, 1, 1)),
        }
        .map_err(|e| err(name, "Binary", e))?;
        let (ta, tb) = (self.tensor(*a), self.tensor(*b));
        let tc = c.map_or(ta, |c| self.tensor(c));
        let op = ir::Binary {
            kind: *kind,
            a: ta,
            b: tb,
            c: tc,
            output: self.define(out_v, TensorKind::Activation)?,
            a_stride: six(&strides[0], 0),
            b_stride: six(&strides[1], 0),
            c_stride: six(&strides[if c.is_some() { 2 } else { 0 }], 0),
            a_multiplier: ma,
            b_multiplier: mb,
            shift,
            lo: -128,
            hi: 127,
        };
        self.b.node(name, Op::Binary(op));
        Ok(())
    }

    fn lower_avg_pool(&mut self, step: &Step) -> Result<(), LowerError> {
        let Step::AvgPool {
            name,
            input,
            output,
            kernel,
            stride,
            pad,
            count_include_pad,
            normalize,
        } = step
        else {
            unreachable!("an average pool")
        };
        self.plain(name, "AveragePool", *input)?;
        self.plain(name, "AveragePool", *output)?;
        let ratio = f64::from(self.scales[*input]) / f64::from(self.scales[*output]);
        let (mut mul, mut sh) = (vec![0], vec![1]);
        for n in 1..=kernel[0] * kernel[1] {
            let div = if *normalize { n as f64 } else { 1.0 };
            let (m, s) = multiplier(ratio / div).map_err(|e| err(name, "AveragePool", e))?;
            mul.push(m);
            sh.push(s);
        }
        let multiplier = self.const_i32(&format!("{name}.multiplier"), &mul)?;
        let shift = self.const_i32(&format!("{name}.shift"), &sh)?;
        let input = self.nchw(self.tensor(*input));
        let output = self.define(*output, TensorKind::Activation)?;
        let op = ir::AvgPool {
            input,
            output: self.nchw(output),
            kernel: kernel.map(|v| v as u32),
            stride: stride.map(|v| v as u32),
            pad: pad.map(|v| v as u32),
            count_include_pad: *count_include_pad,
            multiplier,
            shift,
            lo: -128,
            hi: 127,
        };
        self.b.node(name, Op::AvgPool(op));
        Ok(())
    }
}

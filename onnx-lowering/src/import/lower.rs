//! From the float plan and its calibrated ranges to the integer program.
//!
//! Scales: every input and every output of a conv, matmul, sum or table is
//! symmetric `i8` with `scale = max |x| / 127` (zero point 0); max pooling
//! and aliases keep their input's scale (the maximum commutes with a
//! monotone quantization, an alias is the same bytes); a softmax's output
//! has scale `1/127` (probabilities). Weights are
//! per-output-channel symmetric `i8`, biases `i32` in the accumulator's
//! scale, and requantization multiplies by `s_in * s_w[oc] / s_out`.

use super::calibrate::Calibration;
use super::mathfn;
use super::plan::{Plan, Step, ValueId};
use super::quantize::{
    act_scale, act_scale_range, add_multipliers, multiplier, quantize_bias_reach, quantize_rows,
    round_clamp,
};
use crate::builder::ProgramBuilder;
use crate::error::LowerError;
use crate::ir::{self, DType, Op, Program, TensorId, TensorKind};
use opml_runtime::limits::{MAX_PAGES, PAGE_SIZE};

mod encoder16;
mod general_ops;
mod norm;
mod unrolled;
mod widths;

use widths::{
    alias_family, attention_values, column_scales, i16_values, max_row_sum, score_values,
};

/// The integer program with the quantization of its inputs and outputs.
pub struct Lowered {
    /// Every tensor carries its scale (`Tensor::scale`), inputs and outputs
    /// included.
    pub program: Program,
}

/// Bytes the tensors may take: the sandbox's memory, less room for the
/// schedule.
pub const MAX_TENSOR_BYTES: u64 = MAX_PAGES as u64 * PAGE_SIZE - (1 << 20);

fn err(name: &str, op: &str, reason: impl Into<String>) -> LowerError {
    LowerError::Unsupported {
        node: name.into(),
        op: op.into(),
        reason: reason.into(),
    }
}

struct Lowering<'a> {
    plan: &'a Plan,
    b: ProgramBuilder,
    scales: Vec<f32>,
    tensors: Vec<Option<TensorId>>,
    /// Values that are (through aliases) model outputs.
    output_roots: Vec<bool>,
    /// Per-column scales (see [`column_scales`]).
    cols: Vec<Option<Vec<f32>>>,
    /// Activation products kept as exact `i32` sums (read only by a masked
    /// softmax), with scale `s_a * s_b`.
    wide: Vec<bool>,
    /// `i16` activations quantized to `-R..=R` (see [`i16_values`]).
    half: Vec<Option<i32>>,
    /// Values that are views into a stacked value (see [`unrolled`]).
    views: Vec<Option<(ValueId, usize)>>,
}

impl Lowering<'_> {
    fn room(&self, name: &str, elements: usize, size: u64) -> Result<(), LowerError> {
        let bytes = (elements as u64).saturating_mul(size);
        if u64::from(self.b.end()) + bytes + 8 > MAX_TENSOR_BYTES {
            return Err(err(
                name,
                "memory",
                "the model's tensors do not fit in the sandbox's memory",
            ));
        }
        Ok(())
    }

    fn shape(&self, v: ValueId) -> Vec<u32> {
        self.plan.values[v]
            .shape
            .iter()
            .map(|d| *d as u32)
            .collect()
    }

    fn tensor(&self, v: ValueId) -> TensorId {
        self.tensors[v].expect("values are defined before they are read")
    }

    /// `t` as the `[1, C, H, W]` the conv and pool ops take: itself if it
    /// is 4-D, else a view with its last three axes (tract may drop the
    /// batch axis; the analysis checked that it is 1).
    fn nchw(&mut self, t: TensorId) -> TensorId {
        let tensor = &self.b.program().tensors[t];
        if tensor.shape.len() == 4 {
            return t;
        }
        let mut d = [1u32; 3];
        for (slot, v) in d.iter_mut().rev().zip(tensor.shape.iter().rev()) {
            *slot = *v;
        }
        let name = format!("{}.nchw", tensor.name);
        self.b.alias(t, &name, &[1, d[0], d[1], d[2]])
    }

    /// A new `i8` tensor for value `v`, with its scale.
    fn define(&mut self, v: ValueId, kind: TensorKind) -> Result<TensorId, LowerError> {
        if let Some(t) = self.stacked_view(v)? {
            return Ok(t);
        }
        let value = &self.plan.values[v];
        self.room(&value.name, value.len(), 1)?;
        let kind = if self.output_roots[v] {
            TensorKind::Output
        } else {
            kind
        };
        let t = if value.integer {
            self.room(&value.name, value.len(), 4)?;
            self.b.tensor(&value.name, DType::I32, &self.shape(v), kind)
        } else if self.wide[v] {
            self.room(&value.name, value.len(), 4)?;
            let t = self.b.tensor(&value.name, DType::I32, &self.shape(v), kind);
            self.b.set_quant(t, self.scales[v], 0);
            t
        } else if self.half[v].is_some() {
            self.room(&value.name, value.len(), 2)?;
            let t = self.b.tensor(&value.name, DType::I16, &self.shape(v), kind);
            self.b.set_quant(t, self.scales[v], 0);
            t
        } else {
            let t = self.b.tensor(&value.name, DType::I8, &self.shape(v), kind);
            self.b.set_quant(t, self.scales[v], 0);
            t
        };
        self.tensors[v] = Some(t);
        Ok(t)
    }

    fn const_i8(
        &mut self,
        name: &str,
        shape: &[usize],
        data: &[i8],
    ) -> Result<TensorId, LowerError> {
        self.room(name, data.len(), 1)?;
        Ok(self.b.const_i8(
            name,
            &shape.iter().map(|d| *d as u32).collect::<Vec<_>>(),
            data,
        ))
    }

    fn const_i32(&mut self, name: &str, data: &[i32]) -> Result<TensorId, LowerError> {
        self.room(name, data.len(), 4)?;
        Ok(self.b.const_i32(name, &[data.len() as u32], data))
    }

    /// Weights, biases and requantization of a linear step.
    #[allow(clippy::too_many_arguments)]
    fn linear(
        &mut self,
        name: &str,
        op: &str,
        (input, output): (ValueId, ValueId),
        weight: &[f64],
        wshape: &[usize],
        bias: &[f64],
        relu: bool,
    ) -> Result<(TensorId, TensorId, ir::Requant), LowerError> {
        let (mut s_in, s_out) = (self.scales[input], self.scales[output]);
        let channels = bias.len();
        // A per-column input scale goes into the weights: column `kk` of
        // the input is `q * sc[kk]`.
        let scaled: Vec<f64>;
        let weight = match &self.cols[input] {
            Some(sc) => {
                s_in = 1.0;
                scaled = weight
                    .iter()
                    .enumerate()
                    .map(|(i, w)| w * f64::from(sc[i % sc.len()]))
                    .collect();
                &scaled[..]
            }
            None => weight,
        };
        let (wq, sw) = match self.cols[input] {
            Some(_) => quantize_rows(weight, channels),
            None => super::prequant::weights(self.plan, name, weight, channels),
        };
        let k = weight.len() / channels.max(1);
        let reach = match self.half[input] {
            Some(r) => i64::from(r) * max_row_sum(&wq, k),
            None => (k as i64).saturating_mul(128 * 127),
        };
        let bq = quantize_bias_reach(bias, s_in, &sw, reach).map_err(|e| err(name, op, e))?;
        let (mut mul, mut sh) = (Vec::with_capacity(channels), Vec::with_capacity(channels));
        let out_cols = self.cols[output].clone().filter(|c| c.len() == channels);
        for (j, s_w) in sw.iter().enumerate() {
            let s_out = out_cols.as_ref().map_or(s_out, |c| c[j]);
            let (m, s) = multiplier(f64::from(s_in) * s_w / f64::from(s_out))
                .map_err(|e| err(name, op, e))?;
            mul.push(m);
            sh.push(s);
        }
        let w = self.const_i8(&format!("{name}.weight"), wshape, &wq)?;
        let bias = self.const_i32(&format!("{name}.bias"), &bq)?;
        self.room(name, 2 * channels, 4)?;
        let top = self.half[output].unwrap_or(127);
        let (lo, hi) = match (relu, self.half[output]) {
            (true, _) => (0, top),
            (false, Some(r)) => (-r, r),
            (false, None) => (-128, 127),
        };
        let rq = self.b.requant(name, &mul, &sh, 0, lo, hi);
        Ok((w, bias, rq))
    }

    fn step(&mut self, step: &Step) -> Result<(), LowerError> {
        if matches!(
            step,
            Step::Slice { .. } | Step::Stack { .. } | Step::Products { .. }
        ) {
            return self.recurrent_step(step);
        }
        if let Some(done) = self.general_step(step) {
            return done;
        }
        if let Step::Alias { input, output } = step {
            let t = self.tensor(*input);
            let shape = self.shape(*output);
            let a = self.b.alias(t, &self.plan.values[*output].name, &shape);
            self.tensors[*output] = Some(a);
            return Ok(());
        }
        if let Step::Const { name, output, data } = step {
            if self.half[*output].is_some() {
                let t = self.const_i16(name, *output, data)?;
                self.b.set_quant(t, self.scales[*output], 0);
                self.tensors[*output] = Some(t);
                return Ok(());
            }
            let s = f64::from(self.scales[*output]);
            let c = self.cols[*output].clone();
            let q: Vec<i8> = data
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    let s = c.as_ref().map_or(s, |c| f64::from(c[i % c.len()]));
                    round_clamp(x / s, -128, 127) as i8
                })
                .collect();
            let shape = self.plan.values[*output].shape.clone();
            let t = self.const_i8(name, &shape, &q)?;
            self.b.set_quant(t, self.scales[*output], 0);
            self.tensors[*output] = Some(t);
            return Ok(());
        }
        let out_v = step.output();
        let op = match step {
            Step::Conv {
                name,
                input,
                weight,
                wshape,
                bias,
                stride,
                pad,
                dilation,
                group,
                relu,
                ..
            } => {
                let (w, b, rq) =
                    self.linear(name, "Conv", (*input, out_v), weight, wshape, bias, *relu)?;
                let input = self.nchw(self.tensor(*input));
                let output = self.define(out_v, TensorKind::Activation)?;
                Op::Conv(ir::Conv {
                    input,
                    weight: w,
                    bias: b,
                    output: self.nchw(output),
                    stride: stride.map(|v| v as u32),
                    pad: pad.map(|v| v as u32),
                    dilation: dilation.map(|v| v as u32),
                    group: *group as u32,
                    requant: rq,
                })
            }
            Step::MatMul {
                name,
                input,
                weight,
                bias,
                m,
                k,
                n,
                a_stride,
                o_stride,
                relu,
                ..
            } => {
                let (w, b, rq) = self.linear(
                    name,
                    "MatMul",
                    (*input, out_v),
                    weight,
                    &[*n, *k],
                    bias,
                    *relu,
                )?;
                Op::MatMul(ir::MatMul {
                    a: self.tensor(*input),
                    w,
                    bias: b,
                    output: self.define(out_v, TensorKind::Activation)?,
                    m: *m as u32,
                    k: *k as u32,
                    n: *n as u32,
                    a_row: a_stride[0] as u32,
                    a_col: a_stride[1] as u32,
                    o_row: o_stride[0] as u32,
                    o_col: o_stride[1] as u32,
                    requant: rq,
                })
            }
            Step::MaxPool {
                input,
                kernel,
                stride,
                pad,
                ..
            } => {
                let input = self.nchw(self.tensor(*input));
                let output = self.define(out_v, TensorKind::Activation)?;
                Op::MaxPool(ir::MaxPool {
                    input,
                    output: self.nchw(output),
                    kernel: kernel.map(|v| v as u32),
                    stride: stride.map(|v| v as u32),
                    pad: pad.map(|v| v as u32),
                })
            }
            Step::Add {
                name,
                a,
                b,
                negate_b,
                relu,
                ..
            } if self.cols[out_v].is_some() => {
                let so = self.cols[out_v].clone().unwrap_or_default();
                let len = so.len();
                let col = |w: &Self, v: ValueId| -> Vec<f64> {
                    match &w.cols[v] {
                        Some(c) => c.iter().map(|s| f64::from(*s)).collect(),
                        None => vec![f64::from(w.scales[v]); len],
                    }
                };
                let (sa, sb) = (col(self, *a), col(self, *b));
                let sign = if *negate_b { -1.0 } else { 1.0 };
                let (mut ma, mut mb, mut sh) = (vec![], vec![], vec![]);
                for l in 0..len {
                    let o = f64::from(so[l]);
                    let (x, y, z) = add_multipliers(sa[l] / o, sign * sb[l] / o)
                        .map_err(|e| err(name, "Add", e))?;
                    ma.push(x);
                    mb.push(y);
                    sh.push(z);
                }
                let rows = self.plan.values[out_v].len() / len.max(1);
                Op::ColAdd(ir::ColAdd {
                    a: self.tensor(*a),
                    b: self.tensor(*b),
                    output: self.define(out_v, TensorKind::Activation)?,
                    a_multiplier: self.const_i32(&format!("{name}.ma"), &ma)?,
                    b_multiplier: self.const_i32(&format!("{name}.mb"), &mb)?,
                    shift: self.const_i32(&format!("{name}.shift"), &sh)?,
                    rows: rows as u32,
                    len: len as u32,
                    lo: if *relu {
                        0
                    } else {
                        -self.half[out_v].unwrap_or(128)
                    },
                    hi: self.half[out_v].unwrap_or(127),
                })
            }
            Step::Add {
                name,
                a,
                b,
                negate_b,
                relu,
                ..
            } => {
                let s_out = f64::from(self.scales[out_v]);
                let sign = if *negate_b { -1.0 } else { 1.0 };
                let (ra, rb) = (
                    f64::from(self.scales[*a]) / s_out,
                    sign * f64::from(self.scales[*b]) / s_out,
                );
                let (ma, mb, s) = add_multipliers(ra, rb).map_err(|e| err(name, "Add", e))?;
                Op::Add(ir::Add {
                    a: self.tensor(*a),
                    b: self.tensor(*b),
                    output: self.define(out_v, TensorKind::Activation)?,
                    a_multiplier: ma,
                    b_multiplier: mb,
                    shift: s,
                    zero_point: 0,
                    lo: if *relu { 0 } else { -128 },
                    hi: 127,
                })
            }
            Step::ChannelMul {
                name,
                a,
                s,
                channels,
                inner,
                ..
            } => {
                let real = f64::from(self.scales[*a]) * f64::from(self.scales[*s])
                    / f64::from(self.scales[out_v]);
                let (m, sh) = multiplier(real).map_err(|e| err(name, "Mul", e))?;
                Op::ChannelMul(ir::ChannelMul {
                    a: self.tensor(*a),
                    scale: self.tensor(*s),
                    output: self.define(out_v, TensorKind::Activation)?,
                    channels: *channels as u32,
                    inner: *inner as u32,
                    multiplier: m,
                    shift: sh,
                    zero_point: 0,
                    lo: -128,
                    hi: 127,
                })
            }
            Step::Softmax {
                name,
                input,
                rows,
                len,
                ..
            } => {
                // table[d] = round(2^20 exp(-d s_in)); the output's scale is
                // 1/127 (set in `lower`).
                let table = self.exp_table(name, *input)?;
                Op::Softmax(ir::Softmax {
                    input: self.tensor(*input),
                    table,
                    output: self.define(out_v, TensorKind::Activation)?,
                    rows: *rows as u32,
                    len: *len as u32,
                })
            }
            Step::Pointwise {
                name, input, expr, ..
            } if self.half[*input].is_some() => {
                // t[h] = f((64 h - 32768) s_in) / s_out, see `ir::Interp`.
                let (s_in, s_out) = (
                    f64::from(self.scales[*input]),
                    f64::from(self.scales[out_v]),
                );
                let r = self.half[out_v].unwrap_or(32767);
                let table: Vec<i32> = (0..1025)
                    .map(|h| {
                        let x = f64::from(64 * h - 32768) * s_in;
                        round_clamp(expr.eval(x) / s_out, -(1 << 24), 1 << 24)
                    })
                    .collect();
                self.room(name, 1025, 4)?;
                let table = self.b.const_i32(&format!("{name}.knots"), &[1025], &table);
                Op::Interp(ir::Interp {
                    input: self.tensor(*input),
                    table,
                    output: self.define(out_v, TensorKind::Activation)?,
                    lo: -r,
                    hi: r,
                })
            }
            Step::Pointwise {
                name, input, expr, ..
            } => {
                let (s_in, s_out) = (
                    f64::from(self.scales[*input]),
                    f64::from(self.scales[out_v]),
                );
                let table: Vec<i8> = (0..=255u8)
                    .map(|i| {
                        round_clamp(expr.eval(f64::from(i as i8) * s_in) / s_out, -128, 127) as i8
                    })
                    .collect();
                Op::Lut(ir::Lut {
                    input: self.tensor(*input),
                    table: self.const_i8(&format!("{name}.table"), &[256], &table)?,
                    output: self.define(out_v, TensorKind::Activation)?,
                })
            }
            Step::Gather {
                name,
                indices,
                table,
                rows,
                width,
                ..
            } => {
                let s = f64::from(self.scales[out_v]);
                let c = self.cols[out_v].clone();
                let q: Vec<i8> = table
                    .iter()
                    .enumerate()
                    .map(|(i, x)| {
                        let s = c.as_ref().map_or(s, |c| f64::from(c[i % c.len()]));
                        round_clamp(x / s, -128, 127) as i8
                    })
                    .collect();
                let table = self.const_i8(&format!("{name}.table"), &[*rows, *width], &q)?;
                let n = self.plan.values[*indices].len();
                Op::Gather(ir::Gather {
                    table,
                    indices: self.tensor(*indices),
                    output: self.define(out_v, TensorKind::Activation)?,
                    rows: *rows as u32,
                    width: *width as u32,
                    n: n as u32,
                })
            }
            Step::LayerNorm {
                name,
                a,
                b,
                gamma,
                beta,
                eps,
                rows,
                len,
                ..
            } => {
                let (io, params) = ((*a, *b, out_v), (&gamma[..], &beta[..], *eps));
                if self.half[out_v].is_some() {
                    self.layer_norm16(name, io, params, *rows, *len)?
                } else {
                    self.layer_norm(name, io, params, *rows, *len)?
                }
            }
            Step::ActMatMul {
                name,
                a,
                b,
                dims,
                a_stride,
                b_stride,
                o_stride,
                ..
            } => {
                let real = f64::from(self.scales[*a]) * f64::from(self.scales[*b])
                    / f64::from(self.scales[out_v]);
                let (m, sh) = if self.wide[out_v] {
                    (0, 1)
                } else {
                    multiplier(real).map_err(|e| err(name, "EinSum", e))?
                };
                let [batch, mm, n, k] = dims.map(|v| v as u32);
                Op::ActMatMul(ir::ActMatMul {
                    a: self.tensor(*a),
                    b: self.tensor(*b),
                    output: self.define(out_v, TensorKind::Activation)?,
                    batch,
                    m: mm,
                    n,
                    k,
                    a_stride: a_stride.map(|v| v as u32),
                    b_stride: b_stride.map(|v| v as u32),
                    o_stride: o_stride.map(|v| v as u32),
                    multiplier: m,
                    shift: sh,
                })
            }
            Step::MaskedSoftmax {
                name,
                input,
                mask,
                rows,
                len,
                ..
            } => {
                let (table, multiplier, shift, dmax) =
                    if self.wide[*input] && self.half[out_v].is_some() {
                        self.exp_knots(name, *input)?
                    } else if self.wide[*input] {
                        // Exact i32 scores: the table steps by 1/16 (exp(-16)
                        // ~ 1e-7 at its end), the index is the score difference
                        // times s_in * 16, saturated.
                        let ratio = f64::from(self.scales[*input]) * 16.0;
                        let (m, sh) = multiplier(ratio).map_err(|e| err(name, "Softmax", e))?;
                        if sh > 54 {
                            return Err(err(name, "Softmax", "score scale too small"));
                        }
                        let dmax = (256.0 / ratio).ceil().min(f64::from(i32::MAX)) as i32;
                        // The index is floored, so entry `d` stands for the
                        // differences in `[d, d + 1) / 16`: its value is taken
                        // at the middle (a common factor cancels in the sum).
                        (self.exp_table_step(name, 1.0 / 16.0, 0.5)?, m, sh, dmax)
                    } else {
                        (self.exp_table(name, *input)?, 1, 0, 255)
                    };
                Op::MaskedSoftmax(ir::MaskedSoftmax {
                    input: self.tensor(*input),
                    mask: self.tensor(*mask),
                    table,
                    output: self.define(out_v, TensorKind::Activation)?,
                    rows: *rows as u32,
                    len: *len as u32,
                    multiplier,
                    shift,
                    dmax,
                })
            }
            Step::Alias { .. }
            | Step::Const { .. }
            | Step::Slice { .. }
            | Step::Stack { .. }
            | Step::Products { .. } => unreachable!("handled above"),
            Step::Move { .. } | Step::Binary { .. } | Step::AvgPool { .. } => {
                unreachable!("handled above")
            }
        };
        let name = match step {
            Step::Conv { name, .. }
            | Step::MatMul { name, .. }
            | Step::MaxPool { name, .. }
            | Step::Add { name, .. }
            | Step::ChannelMul { name, .. }
            | Step::Softmax { name, .. }
            | Step::Pointwise { name, .. }
            | Step::Gather { name, .. }
            | Step::LayerNorm { name, .. }
            | Step::ActMatMul { name, .. }
            | Step::MaskedSoftmax { name, .. } => name,
            Step::Alias { .. }
            | Step::Const { .. }
            | Step::Slice { .. }
            | Step::Stack { .. }
            | Step::Products { .. } => unreachable!("handled above"),
            Step::Move { .. } | Step::Binary { .. } | Step::AvgPool { .. } => {
                unreachable!("handled above")
            }
        };
        self.b.node(name, op);
        Ok(())
    }
}

/// Rejects a plan whose tensors cannot fit in the sandbox's memory, before
/// calibration allocates anything for them.
pub fn check_size(plan: &Plan) -> Result<(), LowerError> {
    let len = |v: ValueId| plan.values[v].len() as u64;
    let mut bytes: u64 = plan.inputs.iter().map(|v| len(*v)).sum();
    for step in &plan.steps {
        bytes = bytes.saturating_add(match step {
            Step::Alias { .. } => 0,
            Step::Conv { weight, bias, .. } | Step::MatMul { weight, bias, .. } => {
                len(step.output()) + weight.len() as u64 + 12 * bias.len() as u64
            }
            Step::Pointwise { .. } => len(step.output()) + 256,
            Step::Softmax { .. } | Step::MaskedSoftmax { .. } => len(step.output()) + 1024,
            Step::Gather { table, .. } => len(step.output()) + table.len() as u64,
            Step::Const { data, .. } => data.len() as u64,
            Step::LayerNorm { len: l, .. } => len(step.output()) + 8 * *l as u64,
            _ => len(step.output()),
        });
    }
    if bytes > MAX_TENSOR_BYTES {
        return Err(err(
            "model",
            "memory",
            format!("{bytes} bytes of tensors do not fit in the sandbox's {MAX_TENSOR_BYTES}"),
        ));
    }
    Ok(())
}

/// Lowers `plan` with the calibrated `max |x|` of every value.
pub fn lower(plan: &Plan, ranges: &Calibration) -> Result<Lowered, LowerError> {
    let n = plan.values.len();
    let mut alias_of: Vec<Option<ValueId>> = vec![None; n];
    let mut scales: Vec<f32> = ranges.max.iter().map(|r| act_scale(*r)).collect();
    for (v, s) in &plan.fixed_scales {
        scales[*v] = *s;
    }
    // Before the aliases take their inputs' scales: an alias of a view.
    unrolled::view_scales(plan, &mut scales);
    for step in &plan.steps {
        match step {
            Step::MaxPool { input, output, .. } | Step::Alias { input, output } => {
                scales[*output] = scales[*input];
                if let Step::Alias { .. } = step {
                    alias_of[*output] = Some(*input);
                }
            }
            // Probabilities in units of 1/127 (see `ir::Softmax`).
            Step::Softmax { output, .. } | Step::MaskedSoftmax { output, .. } => {
                scales[*output] = 1.0 / 127.0
            }
            // A lookup copies bytes: the output has the table's scale.
            Step::Gather { output, table, .. } => {
                scales[*output] = act_scale(table.iter().fold(0.0, |m, x| m.max(x.abs())))
            }
            _ => {
                if let Some(s) = general_ops::output_scale(plan, step, &scales) {
                    scales[step.output()] = s;
                }
            }
        }
    }
    let root = |mut v: ValueId| {
        while let Some(u) = alias_of[v] {
            v = u;
        }
        v
    };
    let mut output_roots = vec![false; n];
    for o in &plan.outputs {
        let r = root(*o);
        if plan.inputs.contains(&r) {
            return Err(err(
                &plan.values[*o].name,
                "Output",
                "a model output is a model input",
            ));
        }
        output_roots[r] = true;
    }
    for v in &plan.values {
        if v.shape.iter().any(|d| *d > u32::MAX as usize) || v.len() as u64 > MAX_TENSOR_BYTES {
            return Err(err(&v.name, "memory", "tensor too large"));
        }
    }
    let mut cols = column_scales(plan, ranges, &output_roots);
    let mut wide = vec![false; n];
    for step in &plan.steps {
        if let Step::ActMatMul { output, .. } = step {
            let v = *output;
            let only_softmax = plan.steps.iter().all(|s| {
                !s.inputs().contains(&v)
                    || matches!(s, Step::MaskedSoftmax { input, mask, .. } if *input == v && *mask != v)
            });
            if !output_roots[v] && only_softmax {
                wide[v] = true;
            }
        }
    }
    let mut half = i16_values(plan, &output_roots);
    attention_values(plan, &output_roots, &mut half);
    score_values(plan, &output_roots, &wide, &mut half);
    unrolled::cell_values(plan, &mut half);
    encoder16::mark(plan, ranges, &output_roots, &mut half, &mut cols);
    for (v, r) in half.iter().enumerate() {
        if let Some(r) = r {
            scales[v] = act_scale_range(ranges.max[root(v)], *r);
        }
    }
    unrolled::view_scales(plan, &mut scales);
    for step in &plan.steps {
        if let Step::ActMatMul { a, b, output, .. } = step {
            if wide[*output] {
                scales[*output] = scales[*a] * scales[*b];
            }
        }
    }
    // Probabilities in units of 1/32767.
    for step in &plan.steps {
        if let Step::MaskedSoftmax { output, .. } = step {
            if half[*output].is_some() {
                for u in alias_family(plan, *output) {
                    scales[u] = 1.0 / 32767.0;
                }
            }
        }
    }
    let mut l = Lowering {
        plan,
        b: ProgramBuilder::new(),
        scales,
        tensors: vec![None; n],
        output_roots,
        cols,
        wide,
        half,
        views: unrolled::stack_views(plan),
    };
    for v in &plan.inputs {
        l.define(*v, TensorKind::Input)?;
    }
    for step in &plan.steps {
        l.step(step)?;
    }
    let tensors = l.tensors;
    let mut program = l.b.finish();
    program.outputs = plan
        .outputs
        .iter()
        .map(|v| tensors[*v].expect("outputs are defined"))
        .collect();
    for t in &program.outputs {
        program.tensors[*t].kind = TensorKind::Output;
    }
    Ok(Lowered { program })
}

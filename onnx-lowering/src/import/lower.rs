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

#[path = "encoder16.rs"]
mod encoder16;
mod general_ops;
#[path = "recurrent_lower.rs"]
mod recurrent_lower;

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
    /// Values that are views into a stacked value (see [`recurrent_lower`]).
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

    /// The softmax's `exp` table: `table[d] = round(2^20 exp(-d s_in))`.
    fn exp_table(&mut self, name: &str, input: ValueId) -> Result<TensorId, LowerError> {
        self.exp_table_step(name, f64::from(self.scales[input]), 0.0)
    }

    /// `table[d] = round(2^20 exp(-(d + offset) s_in))`.
    fn exp_table_step(
        &mut self,
        name: &str,
        s_in: f64,
        offset: f64,
    ) -> Result<TensorId, LowerError> {
        let table: Vec<i32> = (0..256)
            .map(|d| {
                round_clamp(
                    mathfn::exp(-(f64::from(d) + offset) * s_in) * f64::from(1 << 20),
                    0,
                    1 << 20,
                )
            })
            .collect();
        self.room(name, 256, 4)?;
        Ok(self.b.const_i32(&format!("{name}.exp"), &[256], &table))
    }

    /// The integer layer normalization (see [`ir::LayerNorm`]). With `u`
    /// the real value of one unit of `x = a wa + b wb`: `wa[l]`, `wb[l]`
    /// are the columns' scales in units of `u`, with `u` as small as the
    /// bound `sum_l (128 (len c[l] + sum_m c[m]))^2 < 0.98 * 2^62` on the
    /// variance sum allows (`c = wa + wb`; with per-column scales the
    /// small columns leave room for larger weights, so their rounding
    /// error shrinks), `eps` is `eps len^3 / u^2`, and `k` the
    /// largest shift (<= 30) that keeps `|gamma|, |beta| < 2^30`.
    fn layer_norm(
        &mut self,
        name: &str,
        (a, b, out_v): (ValueId, Option<ValueId>, ValueId),
        (gamma, beta, eps): (&[f64], &[f64], f64),
        rows: usize,
        len: usize,
    ) -> Result<Op, LowerError> {
        let e = |m: &str| err(name, "LayerNormalization", m);
        let lf = len as f64;
        let col = |w: &Self, v: ValueId| -> Vec<f64> {
            match &w.cols[v] {
                Some(c) => c.iter().map(|s| f64::from(*s)).collect(),
                None => vec![f64::from(w.scales[v]); len],
            }
        };
        let sa = col(self, a);
        let sb = b.map_or(vec![0.0; len], |b| col(self, b));
        let so = col(self, out_v);
        let top = sa.iter().chain(&sb).fold(0.0f64, |m, s| m.max(*s));
        if top.is_nan() || top <= 0.0 || !top.is_finite() {
            return Err(e("row too long for the integer layer normalization"));
        }
        // Integer weights `round(s / top * w)` with the largest `w` for
        // which the bound `|d[l]| <= 128 (len c[l] + sum_m c[m])` (with
        // `c = wa + wb`) keeps `sum_l d[l]^2 + eps` below `0.98 * 2^62`.
        let weights = |w: f64| -> (Vec<i32>, Vec<i32>) {
            let q = |v: &[f64]| v.iter().map(|s| (s / top * w).round() as i32).collect();
            (q(&sa), q(&sb))
        };
        let bound = |wa: &[i32], wb: &[i32]| -> f64 {
            let c: Vec<f64> = wa
                .iter()
                .zip(wb)
                .map(|(x, y)| f64::from(*x) + f64::from(*y))
                .collect();
            let total: f64 = c.iter().sum();
            c.iter().map(|c| (128.0 * (lf * c + total)).powi(2)).sum()
        };
        let limit = 0.98 * 2f64.powi(62) - f64::from(i32::MAX);
        let unit_bound: f64 = {
            let c: Vec<f64> = sa.iter().zip(&sb).map(|(x, y)| (x + y) / top).collect();
            let total: f64 = c.iter().sum();
            c.iter().map(|c| (128.0 * (lf * c + total)).powi(2)).sum()
        };
        let mut w = (limit / unit_bound).sqrt().min(f64::from(1 << 24)).floor();
        let (wa, wb) = loop {
            let (wa, wb) = weights(w);
            if w < 1.0 || bound(&wa, &wb) < limit {
                break (wa, wb);
            }
            w = (w * 0.99).floor();
        };
        if w < 1.0 {
            return Err(e("row too long for the integer layer normalization"));
        }
        let unit = top / w;
        let eps_i = round_clamp(eps * lf * lf * lf / (unit * unit), 0, i32::MAX);
        let (g, bt): (Vec<f64>, Vec<f64>) = (
            gamma
                .iter()
                .zip(&so)
                .map(|(g, s)| g * lf.sqrt() / s)
                .collect(),
            beta.iter().zip(&so).map(|(b, s)| b / s).collect(),
        );
        let big = g.iter().chain(&bt).fold(0.0f64, |m, v| m.max(v.abs()));
        let mut k = 30;
        while k > 1 && big * 2f64.powi(k) >= 2f64.powi(30) {
            k -= 1;
        }
        if big * 2f64.powi(k) >= 2f64.powi(30) || !big.is_finite() {
            return Err(e("scale or offset too large for the output scale"));
        }
        let q = |v: &[f64]| -> Vec<i32> {
            v.iter()
                .map(|x| round_clamp(x * 2f64.powi(k), -(1 << 30), 1 << 30))
                .collect()
        };
        let (gq, bq) = (q(&g), q(&bt));
        let wa = self.const_i32(&format!("{name}.wa"), &wa)?;
        let wb = self.const_i32(&format!("{name}.wb"), &wb)?;
        let gamma = self.const_i32(&format!("{name}.gamma"), &gq)?;
        let beta = self.const_i32(&format!("{name}.beta"), &bq)?;
        let ta = self.tensor(a);
        Ok(Op::LayerNorm(ir::LayerNorm {
            a: ta,
            b: b.map_or(ta, |b| self.tensor(b)),
            output: self.define(out_v, TensorKind::Activation)?,
            gamma,
            beta,
            rows: rows as u32,
            len: len as u32,
            wa,
            wb,
            eps: eps_i,
            k,
        }))
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

/// Per-column scales (`max |x[.., l]| / 127`) of the layer-norm outputs
/// that only row-major matmuls over their last axis (which absorb the
/// scale of input column `l` into their weights) and layer norms (per-column
/// `wa`, `wb`) read; `None` for every other value. BERT-like models have a
/// few layer-norm output columns far larger than the rest, which a single
/// scale would leave with a few levels.
fn column_scales(
    plan: &Plan,
    ranges: &Calibration,
    output_roots: &[bool],
) -> Vec<Option<Vec<f32>>> {
    let mut cols: Vec<Option<Vec<f32>>> = vec![None; plan.values.len()];
    for step in &plan.steps {
        let Step::LayerNorm { output, len, .. } = step else {
            continue;
        };
        let v = *output;
        let ok = !output_roots[v]
            && plan.steps.iter().all(|s| {
                !s.inputs().contains(&v)
                    || match s {
                        Step::MatMul {
                            input, a_stride, k, ..
                        } => *input == v && *a_stride == [*len, 1] && k == len,
                        Step::LayerNorm { .. } => true,
                        _ => false,
                    }
            });
        if let (true, Some(c)) = (ok, ranges.columns[v].as_ref()) {
            cols[v] = Some(c.iter().map(|m| act_scale(*m)).collect());
        }
    }
    // Row-major matmul outputs read only by layer norms (the residual
    // branches): per-output-channel requantization gives every column its
    // own scale, and the layer norm's per-column `wa`, `wb` absorb it.
    // BERT-like feed-forward outputs have a few columns hundreds of times
    // larger than the rest.
    for step in &plan.steps {
        let Step::MatMul {
            output,
            n,
            o_stride,
            ..
        } = step
        else {
            continue;
        };
        let v = *output;
        let mut readers = plan.steps.iter().filter(|s| s.inputs().contains(&v));
        let ok = !output_roots[v]
            && *o_stride == [*n, 1]
            && readers.clone().next().is_some()
            && readers.all(|s| matches!(s, Step::LayerNorm { len, .. } if len == n));
        if let (true, Some(c)) = (ok, ranges.columns[v].as_ref()) {
            if c.len() == *n {
                cols[v] = Some(c.iter().map(|m| act_scale(*m)).collect());
            }
        }
    }
    // The embedding sum: adds read only by layer norms get per-column
    // scales (`ir::ColAdd`), and so do the embedding tables and constants
    // read only by them (or by layer norms), from their own columns.
    let last = |v: ValueId| plan.values[v].shape.last().copied().unwrap_or(0);
    for step in &plan.steps {
        let Step::Add { output, .. } = step else {
            continue;
        };
        let v = *output;
        let mut readers = plan.steps.iter().filter(|s| s.inputs().contains(&v));
        let ok = !output_roots[v]
            && readers.clone().next().is_some()
            && readers.all(|s| matches!(s, Step::LayerNorm { len, .. } if *len == last(v)));
        if let (true, Some(c)) = (ok, ranges.columns[v].as_ref()) {
            if c.len() == last(v) && !c.is_empty() {
                cols[v] = Some(c.iter().map(|m| act_scale(*m)).collect());
            }
        }
    }
    for step in &plan.steps {
        let (v, data) = match step {
            Step::Gather { output, table, .. } => (*output, table),
            Step::Const { output, data, .. } => (*output, data),
            _ => continue,
        };
        let len = last(v);
        let mut readers = plan.steps.iter().filter(|s| s.inputs().contains(&v));
        let ok = !output_roots[v]
            && len > 0
            && data.len() % len == 0
            && readers.clone().next().is_some()
            && readers.all(|s| match s {
                Step::Add { output, .. } => cols[*output].as_ref().is_some_and(|c| c.len() == len),
                Step::LayerNorm { len: l, .. } => *l == len,
                _ => false,
            });
        if ok {
            let mut mx = vec![0.0f64; len];
            for (i, x) in data.iter().enumerate() {
                mx[i % len] = mx[i % len].max(x.abs());
            }
            cols[v] = Some(mx.iter().map(|m| act_scale(*m)).collect());
        }
    }
    cols
}

/// `max_j sum_k |w[j, k]|` of `i8` weights with rows of `k`.
fn max_row_sum(w: &[i8], k: usize) -> i64 {
    w.chunks(k.max(1))
        .map(|row| row.iter().map(|x| i64::from(x.unsigned_abs())).sum::<i64>())
        .max()
        .unwrap_or(0)
}

/// Values kept as `i16`, with their range `R` (quantized to `-R..=R`):
/// an element-wise function (GELU) between two matmuls, its input (read
/// only by it, range `32767`) and its output (read only by matmuls, range
/// as large as `R max_j sum_k |w[j, k]| <= 2^30` allows for every reader,
/// so that the readers' `i32` sums cannot wrap whatever their bias). An
/// `i8` GELU output costs most of the error of an encoder layer: most of
/// its values are near 0 while a few reach the maximum.
fn i16_values(plan: &Plan, output_roots: &[bool]) -> Vec<Option<i32>> {
    let mut half = vec![None; plan.values.len()];
    let readers = |v: ValueId| plan.steps.iter().filter(move |s| s.inputs().contains(&v));
    for step in &plan.steps {
        let Step::Pointwise { input, output, .. } = step else {
            continue;
        };
        let (i, o) = (*input, *output);
        let from_matmul = plan
            .steps
            .iter()
            .any(|s| matches!(s, Step::MatMul { output, .. } if *output == i));
        let only_this = readers(i).count() == 1;
        let mut reach = 0i64;
        let mut to_matmuls = readers(o).next().is_some();
        for s in readers(o) {
            match s {
                Step::MatMul {
                    name,
                    input,
                    weight,
                    n,
                    ..
                } if *input == o => {
                    let (wq, _) = super::prequant::weights(plan, name, weight, *n);
                    reach = reach.max(max_row_sum(&wq, weight.len() / (*n).max(1)));
                }
                _ => to_matmuls = false,
            }
        }
        if from_matmul && only_this && to_matmuls && !output_roots[i] && !output_roots[o] {
            let r = ((1i64 << 30) / reach.max(1)).clamp(127, 32767) as i32;
            half[i] = Some(32767);
            half[o] = Some(r);
        }
    }
    half
}

/// The `i16` operands of exact attention scores `Q K^T` (an `i32` output
/// read only by a masked softmax): each operand an element-wise function
/// (the `Mul` that scales `Q` or `K`) of a matmul output (or an alias of
/// one) read only by it,
/// the function's input `i16` at range `32767` (so it becomes an
/// `ir::Interp`), its output at range `R = floor(sqrt((2^31 - 1) / k))`
/// so that the `i32` score sums cannot wrap; both operands or neither.
fn score_values(plan: &Plan, output_roots: &[bool], wide: &[bool], half: &mut [Option<i32>]) {
    let root = |mut v: ValueId| loop {
        match plan.steps.iter().find(|s| s.output() == v) {
            Some(Step::Alias { input, .. }) => v = *input,
            _ => break v,
        }
    };
    let is_out = |v: ValueId| alias_family(plan, v).iter().any(|u| output_roots[*u]);
    // The pointwise step's input if `v` qualifies.
    let operand = |v: ValueId| -> Option<ValueId> {
        let Some(Step::Pointwise { input, .. }) = plan.steps.iter().find(|s| s.output() == v)
        else {
            return None;
        };
        let i = root(*input);
        let from_matmul = plan
            .steps
            .iter()
            .any(|s| matches!(s, Step::MatMul { output, .. } if *output == i));
        let only_pointwise = readers_through_aliases(plan, i).len() == 1;
        let only_scores = readers_through_aliases(plan, v)
            .iter()
            .all(|s| matches!(s, Step::ActMatMul { output, .. } if wide[*output]));
        (from_matmul && only_pointwise && only_scores && !is_out(i) && !is_out(v)).then_some(i)
    };
    for step in &plan.steps {
        let Step::ActMatMul {
            a, b, output, dims, ..
        } = step
        else {
            continue;
        };
        if !wide[*output] || half[root(*a)].is_some() || half[root(*b)].is_some() {
            continue;
        }
        let (qa, qb) = (root(*a), root(*b));
        let (Some(ia), Some(ib)) = (operand(qa), operand(qb)) else {
            continue;
        };
        let k = dims[3].max(1) as f64;
        let r = (f64::from(i32::MAX) / k).sqrt().floor().min(32767.0) as i32;
        // Every score product reading these operands must see both as i16.
        let consistent = [qa, qb].iter().all(|v| {
            readers_through_aliases(plan, *v).iter().all(|s| match s {
                Step::ActMatMul { a, b, .. } => {
                    operand(root(*a)).is_some() && operand(root(*b)).is_some()
                }
                _ => false,
            })
        });
        if !consistent || r < 127 {
            continue;
        }
        for (i, v) in [(ia, qa), (ib, qb)] {
            for u in alias_family(plan, i) {
                half[u] = Some(32767);
            }
            for u in alias_family(plan, v) {
                half[u] = Some(r);
            }
        }
    }
}

/// `v` and every alias of it (transitively).
fn alias_family(plan: &Plan, v: ValueId) -> Vec<ValueId> {
    let mut fam = vec![v];
    let mut i = 0;
    while i < fam.len() {
        for s in &plan.steps {
            if let Step::Alias { input, output } = s {
                if *input == fam[i] && !fam.contains(output) {
                    fam.push(*output);
                }
            }
        }
        i += 1;
    }
    fam
}

/// The steps other than aliases that read `v` or an alias of it.
fn readers_through_aliases(plan: &Plan, v: ValueId) -> Vec<&Step> {
    let fam = alias_family(plan, v);
    plan.steps
        .iter()
        .filter(|s| !matches!(s, Step::Alias { .. }))
        .filter(|s| s.inputs().iter().any(|i| fam.contains(i)))
        .collect()
}

/// The `i16` values of attention's `P V` (range `32767`, so that the sum
/// `sum_j P[i, j] V[j, c]` with `sum_j P[i, j] <= 32767 + len / 2` cannot
/// wrap `i32`): the probabilities (units of `1/32767`), `V` (a matmul
/// output read only by such products) and the context (read only by
/// matmuls whose sums stay below `2^31 - 2^27` at range `32767`), each
/// with its aliases.
fn attention_values(plan: &Plan, output_roots: &[bool], half: &mut [Option<i32>]) {
    let is_root_out = |v: ValueId| alias_family(plan, v).iter().any(|u| output_roots[*u]);
    for step in &plan.steps {
        let Step::ActMatMul { a, b, output, .. } = step else {
            continue;
        };
        let root = |mut v: ValueId| loop {
            match plan.steps.iter().find(|s| s.output() == v) {
                Some(Step::Alias { input, .. }) => v = *input,
                _ => break v,
            }
        };
        let (p, vv, ctx) = (root(*a), root(*b), *output);
        let is_softmax = plan
            .steps
            .iter()
            .any(|s| matches!(s, Step::MaskedSoftmax { output, .. } if *output == p));
        let v_matmul = plan
            .steps
            .iter()
            .any(|s| matches!(s, Step::MatMul { output, .. } if *output == vv));
        let products_only = |v: ValueId| {
            readers_through_aliases(plan, v).iter().all(
                |s| matches!(s, Step::ActMatMul { a, b, .. } if root(*a) == p && root(*b) == vv),
            )
        };
        let ctx_readers = readers_through_aliases(plan, ctx);
        let mut reach = 0i64;
        let mut ok = !ctx_readers.is_empty();
        for s in &ctx_readers {
            match s {
                Step::MatMul {
                    name, weight, n, ..
                } => {
                    let (wq, _) = super::prequant::weights(plan, name, weight, *n);
                    reach = reach.max(max_row_sum(&wq, weight.len() / (*n).max(1)));
                }
                _ => ok = false,
            }
        }
        ok &= 32767 * reach < (1i64 << 31) - (1i64 << 27);
        if ok
            && is_softmax
            && v_matmul
            && products_only(p)
            && products_only(vv)
            && !is_root_out(p)
            && !is_root_out(vv)
            && !is_root_out(ctx)
        {
            for v in [p, vv, ctx] {
                for u in alias_family(plan, v) {
                    half[u] = Some(32767);
                }
            }
        }
    }
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
    recurrent_lower::view_scales(plan, &mut scales);
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
    recurrent_lower::cell_values(plan, &mut half);
    encoder16::mark(plan, ranges, &output_roots, &mut half, &mut cols);
    for (v, r) in half.iter().enumerate() {
        if let Some(r) = r {
            scales[v] = act_scale_range(ranges.max[root(v)], *r);
        }
    }
    recurrent_lower::view_scales(plan, &mut scales);
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
        views: recurrent_lower::stack_views(plan),
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

//! The `i16` paths of transformer encoders (a child module of
//! [`super::lower`]): the residual stream and the interpolated `exp` table
//! of the attention softmax.
//!
//! Every layer normalization whose inputs can all be `i16` becomes the
//! all-`i16` variant of [`ir::LayerNorm`]: its output (the residual stream
//! and the input of every matmul of the next block) is `i16` with one
//! scale for the whole tensor (so the matmuls that read it keep clean
//! per-row weights), and its inputs are `i16` with per-column scales:
//! residual-branch matmul outputs (per-output-channel requantization),
//! the embedding sum (`ir::ColAdd` with an `i16` output) and constants
//! (the position embeddings). An `i8` residual stream with per-column
//! scales rounds each of the 13 layer norms of MiniLM to about 1 % RMS.
//!
//! The range `R` of a layer-norm output is `32767`, or less when a matmul
//! reads it: `R max_j sum_k |w[j, k]| <= 2^30` for every reader, so that
//! its `i32` sums cannot wrap whatever its bias.
//!
//! The softmax of exact `i32` scores with `i16` probabilities reads a
//! table of 257 knots, `round(2^20 exp(-h / 16))`, interpolated linearly
//! with 8 fractional bits of the index (relative error below `1/2048`;
//! a plain table with a step of `1/16` in the exponent errs by up to 3 %).

use super::{alias_family, err, max_row_sum, Lowering};
use crate::error::LowerError;
use crate::import::calibrate::Calibration;
use crate::import::mathfn;
use crate::import::plan::{Plan, Step, ValueId};
use crate::import::quantize::{act_scale_range, multiplier, quantize_rows, round_clamp};
use crate::ir::{self, Op};

/// The producer of `v`, if a step writes it.
fn producer(plan: &Plan, v: ValueId) -> Option<&Step> {
    plan.steps.iter().find(|s| s.output() == v)
}

/// The steps other than aliases that read `v` (directly).
fn readers(plan: &Plan, v: ValueId) -> impl Iterator<Item = &Step> {
    plan.steps.iter().filter(move |s| s.inputs().contains(&v))
}

/// Whether `v` can be an `i16` layer-norm input with per-column scales:
/// a residual-branch matmul output, an embedding sum or a constant, read
/// only by layer norms over its last axis of `len`, not a model output.
fn column_input(plan: &Plan, v: ValueId, len: usize, is_out: &dyn Fn(ValueId) -> bool) -> bool {
    let only_ln =
        readers(plan, v).all(|s| matches!(s, Step::LayerNorm { len: l, .. } if *l == len));
    let last = plan.values[v].shape.last().copied();
    if is_out(v) || !only_ln || last != Some(len) {
        return false;
    }
    match producer(plan, v) {
        Some(Step::MatMul { n, o_stride, .. }) => *n == len && *o_stride == [len, 1],
        Some(Step::Add { a, b, .. }) => {
            // The sum reads `i8` tensors (`ir::ColAdd`): gathers or constants.
            [a, b].iter().all(|x| {
                matches!(
                    producer(plan, **x),
                    Some(Step::Gather { .. } | Step::Const { .. })
                )
            })
        }
        Some(Step::Const { data, .. }) => data.len().is_multiple_of(len.max(1)),
        _ => false,
    }
}

/// Marks the `i16` residual stream: sets `half` (the range) of the wide
/// layer norms' outputs and inputs and `cols` (per-column scales at range
/// `32767`) of their inputs; layer-norm outputs lose their per-column
/// scales.
pub(super) fn mark(
    plan: &Plan,
    ranges: &Calibration,
    output_roots: &[bool],
    half: &mut [Option<i32>],
    cols: &mut [Option<Vec<f32>>],
) {
    let is_out = |v: ValueId| alias_family(plan, v).iter().any(|u| output_roots[*u]);
    let n = plan.values.len();
    let mut wide = vec![false; n];
    for s in &plan.steps {
        if let Step::LayerNorm { output, .. } = s {
            wide[*output] = half[*output].is_none();
        }
    }
    // Drop candidates until every input and reader of a candidate fits.
    loop {
        let mut changed = false;
        for s in &plan.steps {
            let Step::LayerNorm {
                a, b, output, len, ..
            } = s
            else {
                continue;
            };
            if !wide[*output] {
                continue;
            }
            let inputs_ok = std::iter::once(*a)
                .chain(*b)
                .all(|v| wide[v] || column_input(plan, v, *len, &is_out));
            let readers_ok = readers(plan, *output).all(|r| match r {
                Step::MatMul { input, .. } => *input == *output,
                Step::LayerNorm { output: o, .. } => wide[*o],
                _ => false,
            });
            let own = alias_family(plan, *output).len() == 1;
            if !(inputs_ok && readers_ok && own) {
                wide[*output] = false;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    for s in &plan.steps {
        let Step::LayerNorm {
            a, b, output, len, ..
        } = s
        else {
            continue;
        };
        if !wide[*output] {
            continue;
        }
        let mut reach = 1i64;
        for r in readers(plan, *output) {
            if let Step::MatMul { weight, n, .. } = r {
                let (wq, _) = quantize_rows(weight, *n);
                reach = reach.max(max_row_sum(&wq, weight.len() / (*n).max(1)));
            }
        }
        half[*output] = Some(((1i64 << 30) / reach).clamp(127, 32767) as i32);
        cols[*output] = None;
        for v in std::iter::once(*a).chain(*b) {
            if wide[v] {
                continue;
            }
            half[v] = Some(32767);
            let maxes: Vec<f64> = match producer(plan, v) {
                Some(Step::Const { data, .. }) => {
                    let mut mx = vec![0.0f64; *len];
                    for (i, x) in data.iter().enumerate() {
                        mx[i % len] = mx[i % len].max(x.abs());
                    }
                    mx
                }
                _ => ranges.columns[v]
                    .clone()
                    .unwrap_or_else(|| vec![ranges.max[v]; *len]),
            };
            cols[v] = Some(maxes.iter().map(|m| act_scale_range(*m, 32767)).collect());
        }
    }
}

impl Lowering<'_> {
    /// The interpolated `exp` knots of a masked softmax of exact `i32`
    /// scores (see [`ir::MaskedSoftmax`]): `(table, multiplier, shift,
    /// dmax)` with the index `(d * s_in * 16) * 256`, saturated at `255 *
    /// 256` (`exp(-16) ~ 1e-7`).
    pub(super) fn exp_knots(
        &mut self,
        name: &str,
        input: ValueId,
    ) -> Result<(ir::TensorId, i32, i32, i32), LowerError> {
        let ratio = f64::from(self.scales[input]) * 16.0 * 256.0;
        let (m, sh) = multiplier(ratio).map_err(|e| err(name, "Softmax", e))?;
        if sh > 54 {
            return Err(err(name, "Softmax", "score scale too small"));
        }
        let dmax = (65280.0 / ratio).ceil().min(f64::from(i32::MAX)) as i32;
        let knots: Vec<i32> = (0..257)
            .map(|h| {
                let e = mathfn::exp(-f64::from(h) / 16.0) * f64::from(1 << 20);
                round_clamp(e, 0, 1 << 20)
            })
            .collect();
        self.room(name, 257, 4)?;
        let t = self.b.const_i32(&format!("{name}.exp"), &[257], &knots);
        Ok((t, m, sh, dmax))
    }

    /// A constant read as an `i16` activation with per-column scales.
    pub(super) fn const_i16(
        &mut self,
        name: &str,
        output: ValueId,
        data: &[f64],
    ) -> Result<ir::TensorId, LowerError> {
        let c = self.cols[output].clone().unwrap_or_default();
        let s = f64::from(self.scales[output]);
        let q: Vec<i16> = data
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let s = if c.is_empty() {
                    s
                } else {
                    f64::from(c[i % c.len()])
                };
                round_clamp(x / s, -32767, 32767) as i16
            })
            .collect();
        self.room(name, q.len(), 2)?;
        let shape = self.shape(output);
        Ok(self.b.const_i16(name, &shape, &q))
    }

    /// The all-`i16` layer normalization (see [`ir::LayerNorm`]). With `u`
    /// the real value of one unit of `x = a wa + b wb`, `wa[l]`, `wb[l]`
    /// are the input columns' scales in units of `u`, the largest `2^24`
    /// (the kernel rounds the deviations before squaring them, so the
    /// weights are bounded only by `|d| < 2^61`: `32768 (len c[l] + sum_m
    /// c[m])` with `c = wa + wb`); `eps` is `eps len^3 / u^2`, saturated
    /// at `2^31 - 1` (a variance far below one input step); `k` the
    /// largest shift (<= 30) that keeps `|gamma|, |beta| < 2^30`.
    pub(super) fn layer_norm16(
        &mut self,
        name: &str,
        (a, b, out_v): (ValueId, Option<ValueId>, ValueId),
        (gamma, beta, eps): (&[f64], &[f64], f64),
        rows: usize,
        len: usize,
    ) -> Result<Op, LowerError> {
        let e = |m: &str| err(name, "LayerNormalization", m);
        let lf = len as f64;
        let (sa, sb, top) = self
            .norm_input_scales(a, b, len)
            .ok_or_else(|| e("input scale out of range"))?;
        let s_out = f64::from(self.scales[out_v]);
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
            let cmax = c.iter().fold(0.0f64, |m, c| m.max(*c));
            32768.0 * (lf * cmax + total)
        };
        let limit = 2f64.powi(61);
        let mut w = f64::from(1 << 24);
        let (wa, wb) = loop {
            let (wa, wb) = weights(w);
            if w < 1.0 || bound(&wa, &wb) < limit {
                break (wa, wb);
            }
            w = (w * 0.5).floor();
        };
        if w < 1.0 {
            return Err(e("row too long for the integer layer normalization"));
        }
        let unit = top / w;
        let eps_i = round_clamp(eps * lf * lf * lf / (unit * unit), 0, i32::MAX);
        let (g, bt): (Vec<f64>, Vec<f64>) = (
            gamma.iter().map(|g| g * lf.sqrt() / s_out).collect(),
            beta.iter().map(|b| b / s_out).collect(),
        );
        self.layer_norm_op(
            name,
            (a, b, out_v),
            (&wa, &wb, eps_i),
            (&g, &bt),
            (rows, len),
        )
    }
}

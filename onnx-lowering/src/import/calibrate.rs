//! Calibration: the float plan run on sample inputs, recording `max |x|`
//! of every value.
//!
//! The plan is evaluated by this module in `f64` with fixed, sequential
//! loop orders (never by tract, whose kernels depend on the CPU's vector
//! extensions), so the ranges, and so the artifact, are the same bits on
//! every machine. Samples run on several threads, each keeping its own
//! maxima; the maxima are then merged with `max`, which is exact and
//! order-independent, so the thread count does not matter either.

use super::plan::{Plan, Step, ValueId};
use crate::error::LowerError;
use std::rc::Rc;

/// Number of default calibration samples.
pub const DEFAULT_SAMPLES: usize = 8;
/// Seed of the default samples ("opmlcali").
pub const DEFAULT_SEED: u64 = 0x6f70_6d6c_6361_6c69;

/// The default calibration set: [`DEFAULT_SAMPLES`] samples whose every
/// input value is `(splitmix64() >> 40) / 2^24`, uniform in `[0, 1)` (1
/// for raw-integer inputs: token id 1, mask on), from
/// one splitmix64 stream seeded with [`DEFAULT_SEED`], sample by sample and
/// input by input. Suits image models fed pixels scaled to `[0, 1]`.
pub fn default_samples(plan: &Plan) -> Vec<Vec<Vec<f32>>> {
    let mut state = DEFAULT_SEED;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..DEFAULT_SAMPLES)
        .map(|_| {
            plan.inputs
                .iter()
                .map(|v| {
                    let integer = plan.values[*v].integer;
                    (0..plan.values[*v].len())
                        .map(|_| {
                            let x = (next() >> 40) as f32 / 16_777_216.0;
                            if integer {
                                1.0
                            } else {
                                x
                            }
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}

/// Checks that `samples` fit the plan's inputs.
pub fn check_samples(plan: &Plan, samples: &[Vec<Vec<f32>>]) -> Result<(), LowerError> {
    if samples.is_empty() {
        return Err(LowerError::BadInput("no calibration samples".into()));
    }
    for (s, sample) in samples.iter().enumerate() {
        if sample.len() != plan.inputs.len() {
            return Err(LowerError::BadInput(format!(
                "calibration sample {s} has {} inputs, the model takes {}",
                sample.len(),
                plan.inputs.len()
            )));
        }
        for (x, v) in sample.iter().zip(&plan.inputs) {
            let value = &plan.values[*v];
            if x.len() != value.len() || x.iter().any(|f| !f.is_finite()) {
                return Err(LowerError::BadInput(format!(
                    "calibration sample {s}: input {} takes {} finite values, got {}",
                    value.name,
                    value.len(),
                    x.len()
                )));
            }
        }
    }
    Ok(())
}

fn last3(s: &[usize]) -> [usize; 3] {
    let mut d = [1; 3];
    for (slot, v) in d.iter_mut().rev().zip(s.iter().rev()) {
        *slot = *v;
    }
    d
}

/// Runs one step on `f64` values.
fn run_step(plan: &Plan, step: &Step, vals: &[Option<Rc<Vec<f64>>>]) -> Rc<Vec<f64>> {
    let get = |v: ValueId| {
        vals[v]
            .as_ref()
            .expect("inputs of a step are computed before it")
    };
    let relu_if = |r: bool, x: f64| if r { x.max(0.0) } else { x };
    match step {
        Step::Conv {
            input,
            output,
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
            let x = get(*input);
            let [_, h, w] = last3(&plan.values[*input].shape);
            let [oc, oh, ow] = last3(&plan.values[*output].shape);
            let [_, cg, kh, kw] = *wshape;
            let ocg = oc / group;
            let mut out = Vec::with_capacity(oc * oh * ow);
            for o in 0..oc {
                let c0 = (o / ocg) * cg;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = bias[o];
                        for ic in 0..cg {
                            for ky in 0..kh {
                                let iy = (oy * stride[0] + ky * dilation[0]).wrapping_sub(pad[0]);
                                if iy >= h {
                                    continue;
                                }
                                for kx in 0..kw {
                                    let ix =
                                        (ox * stride[1] + kx * dilation[1]).wrapping_sub(pad[1]);
                                    if ix < w {
                                        acc += x[((c0 + ic) * h + iy) * w + ix]
                                            * weight[((o * cg + ic) * kh + ky) * kw + kx];
                                    }
                                }
                            }
                        }
                        out.push(relu_if(*relu, acc));
                    }
                }
            }
            Rc::new(out)
        }
        Step::MatMul {
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
            let a = get(*input);
            let mut out = vec![0.0; m * n];
            for i in 0..*m {
                for j in 0..*n {
                    let mut acc = bias[j];
                    for kk in 0..*k {
                        acc += a[i * a_stride[0] + kk * a_stride[1]] * weight[j * k + kk];
                    }
                    out[i * o_stride[0] + j * o_stride[1]] = relu_if(*relu, acc);
                }
            }
            Rc::new(out)
        }
        Step::MaxPool {
            input,
            output,
            kernel,
            stride,
            pad,
            ..
        } => {
            let x = get(*input);
            let [c, h, w] = last3(&plan.values[*input].shape);
            let [_, oh, ow] = last3(&plan.values[*output].shape);
            let mut out = Vec::with_capacity(c * oh * ow);
            for ch in 0..c {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut m = f64::NEG_INFINITY;
                        for ky in 0..kernel[0] {
                            let iy = (oy * stride[0] + ky).wrapping_sub(pad[0]);
                            for kx in 0..kernel[1] {
                                let ix = (ox * stride[1] + kx).wrapping_sub(pad[1]);
                                if iy < h && ix < w {
                                    m = m.max(x[(ch * h + iy) * w + ix]);
                                }
                            }
                        }
                        out.push(m);
                    }
                }
            }
            Rc::new(out)
        }
        Step::Add {
            a,
            b,
            negate_b,
            relu,
            ..
        } => {
            let sign = if *negate_b { -1.0 } else { 1.0 };
            Rc::new(
                get(*a)
                    .iter()
                    .zip(get(*b).iter())
                    .map(|(x, y)| relu_if(*relu, x + sign * y))
                    .collect(),
            )
        }
        Step::ChannelMul { a, s, inner, .. } => {
            let s = get(*s);
            Rc::new(
                get(*a)
                    .iter()
                    .enumerate()
                    .map(|(i, x)| x * s[i / inner])
                    .collect(),
            )
        }
        Step::Softmax { input, len, .. } => {
            let mut out = Vec::new();
            for row in get(*input).chunks(*len) {
                let mx = row.iter().fold(f64::NEG_INFINITY, |m, x| m.max(*x));
                let e: Vec<f64> = row.iter().map(|x| super::mathfn::exp(x - mx)).collect();
                let sum: f64 = e.iter().sum();
                out.extend(e.iter().map(|e| e / sum));
            }
            Rc::new(out)
        }
        Step::Pointwise { input, expr, .. } => {
            Rc::new(get(*input).iter().map(|x| expr.eval(*x)).collect())
        }
        Step::Alias { input, .. } => get(*input).clone(),
        Step::Slice {
            input,
            output,
            offset,
        } => Rc::new(get(*input)[*offset..*offset + plan.values[*output].len()].to_vec()),
        Step::Products { terms, output, .. } => {
            let mut out = vec![0.0; plan.values[*output].len()];
            for (a, b) in terms {
                for (o, (x, y)) in out.iter_mut().zip(get(*a).iter().zip(get(*b).iter())) {
                    *o += x * y;
                }
            }
            Rc::new(out)
        }
        Step::Stack { inputs, .. } => Rc::new(
            inputs
                .iter()
                .flat_map(|v| get(*v).iter().copied())
                .collect(),
        ),
        Step::Gather {
            indices,
            table,
            rows,
            width,
            ..
        } => Rc::new(
            get(*indices)
                .iter()
                .flat_map(|x| {
                    let r = (x.max(0.0) as usize).min(rows - 1);
                    table[r * width..(r + 1) * width].iter().copied()
                })
                .collect(),
        ),
        Step::Const { data, .. } => Rc::new(data.clone()),
        Step::LayerNorm {
            a,
            b,
            gamma,
            beta,
            eps,
            len,
            ..
        } => {
            let a = get(*a);
            let x: Vec<f64> = match b {
                Some(b) => a.iter().zip(get(*b).iter()).map(|(x, y)| x + y).collect(),
                None => a.to_vec(),
            };
            let mut out = Vec::with_capacity(x.len());
            for row in x.chunks(*len) {
                let mean = row.iter().sum::<f64>() / *len as f64;
                let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / *len as f64;
                let inv = 1.0 / (var + eps).sqrt();
                out.extend(
                    row.iter()
                        .enumerate()
                        .map(|(l, v)| (v - mean) * inv * gamma[l] + beta[l]),
                );
            }
            Rc::new(out)
        }
        Step::ActMatMul {
            a,
            b,
            dims,
            a_stride,
            b_stride,
            o_stride,
            ..
        } => {
            let (a, b) = (get(*a), get(*b));
            let [batch, m, n, k] = *dims;
            let mut out = vec![0.0; batch * m * n];
            for t in 0..batch {
                for i in 0..m {
                    for j in 0..n {
                        let mut acc = 0.0;
                        for kk in 0..k {
                            acc += a[t * a_stride[0] + i * a_stride[1] + kk * a_stride[2]]
                                * b[t * b_stride[0] + j * b_stride[1] + kk * b_stride[2]];
                        }
                        out[t * o_stride[0] + i * o_stride[1] + j * o_stride[2]] = acc;
                    }
                }
            }
            Rc::new(out)
        }
        Step::MaskedSoftmax {
            input, mask, len, ..
        } => {
            let mask = get(*mask);
            let mut out = Vec::new();
            for row in get(*input).chunks(*len) {
                let on = |l: usize| mask[l] != 0.0;
                let mx = (0..*len)
                    .filter(|l| on(*l))
                    .fold(f64::NEG_INFINITY, |m, l| m.max(row[l]));
                let e: Vec<f64> = (0..*len)
                    .map(|l| {
                        if on(l) {
                            super::mathfn::exp(row[l] - mx)
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let sum: f64 = e.iter().sum();
                out.extend(e.iter().map(|e| if sum > 0.0 { e / sum } else { 0.0 }));
            }
            Rc::new(out)
        }
        Step::Move { .. } | Step::Binary { .. } | Step::AvgPool { .. } => {
            Rc::new(super::general::eval(plan, step, &|v| get(v).as_slice()))
        }
    }
}

/// Per value: `max |x|` and whether a non-finite value occurred; per
/// layer-norm input and output: `max |x|` of every column (last axis).
#[derive(Clone)]
struct Ranges {
    max: Vec<(f64, bool)>,
    cols: Vec<Option<Vec<f64>>>,
}

impl Ranges {
    fn new(plan: &Plan) -> Self {
        let mut cols = vec![None; plan.values.len()];
        for step in &plan.steps {
            if let Step::LayerNorm {
                a, b, output, len, ..
            } = step
            {
                for v in std::iter::once(*a).chain(*b).chain([*output]) {
                    if plan.values[v].len().is_multiple_of((*len).max(1)) {
                        cols[v] = Some(vec![0.0; *len]);
                    }
                }
            }
        }
        Self {
            max: vec![(0.0, false); plan.values.len()],
            cols,
        }
    }
}

/// Calibrated ranges: `max |x|` of every value, and of every column of
/// every layer-norm input and output (`None` for other values).
pub struct Calibration {
    pub max: Vec<f64>,
    pub columns: Vec<Option<Vec<f64>>>,
}

/// Runs one sample, recording ranges; returns the plan's outputs.
fn run_sample(
    plan: &Plan,
    sample: &[Vec<f32>],
    last_use: &[usize],
    ranges: &mut Ranges,
) -> Vec<Vec<f64>> {
    let mut vals: Vec<Option<Rc<Vec<f64>>>> = vec![None; plan.values.len()];
    let mut record = |v: ValueId, data: &[f64]| {
        for x in data {
            if !x.is_finite() {
                ranges.max[v].1 = true;
            } else if x.abs() > ranges.max[v].0 {
                ranges.max[v].0 = x.abs();
            }
        }
        if let Some(c) = ranges.cols[v].as_mut() {
            let len = c.len();
            for (i, x) in data.iter().enumerate() {
                c[i % len] = c[i % len].max(x.abs());
            }
        }
    };
    for (x, v) in sample.iter().zip(&plan.inputs) {
        let data: Vec<f64> = x.iter().map(|f| f64::from(*f)).collect();
        record(*v, &data);
        vals[*v] = Some(Rc::new(data));
    }
    for (i, step) in plan.steps.iter().enumerate() {
        let out = run_step(plan, step, &vals);
        record(step.output(), &out);
        vals[step.output()] = Some(out);
        for v in step.inputs() {
            if last_use[v] == i {
                vals[v] = None;
            }
        }
    }
    plan.outputs
        .iter()
        .map(|v| vals[*v].as_ref().map_or(vec![], |x| x.to_vec()))
        .collect()
}

/// Step index after which each value is dropped (never for outputs).
fn last_uses(plan: &Plan) -> Vec<usize> {
    let mut last_use = vec![usize::MAX; plan.values.len()];
    for (i, step) in plan.steps.iter().enumerate() {
        for v in step.inputs() {
            last_use[v] = i;
        }
    }
    for v in &plan.outputs {
        last_use[*v] = usize::MAX;
    }
    last_use
}

/// The plan's outputs on one sample, in `f64` (the float reference the
/// integer program approximates).
pub fn evaluate(plan: &Plan, sample: &[Vec<f32>]) -> Result<Vec<Vec<f64>>, LowerError> {
    check_samples(plan, &[sample.to_vec()])?;
    let mut ranges = Ranges::new(plan);
    Ok(run_sample(plan, sample, &last_uses(plan), &mut ranges))
}

/// `max |x|` of every value over the samples (0 for values never
/// computed). Fails if some value is not finite.
pub fn calibrate(plan: &Plan, samples: &[Vec<Vec<f32>>]) -> Result<Vec<f64>, LowerError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    calibrate_with_threads(plan, samples, threads)
}

/// [`calibrate`] on `threads` threads (the result does not depend on it).
pub fn calibrate_with_threads(
    plan: &Plan,
    samples: &[Vec<Vec<f32>>],
    threads: usize,
) -> Result<Vec<f64>, LowerError> {
    Ok(calibrate_full(plan, samples, threads)?.max)
}

/// [`calibrate`] with the per-column ranges of layer-norm inputs and outputs.
pub fn calibrate_full(
    plan: &Plan,
    samples: &[Vec<Vec<f32>>],
    threads: usize,
) -> Result<Calibration, LowerError> {
    check_samples(plan, samples)?;
    let last_use = last_uses(plan);
    let threads = threads.clamp(1, samples.len());
    let partial: Vec<Ranges> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let last_use = &last_use;
                s.spawn(move || {
                    let mut ranges = Ranges::new(plan);
                    for sample in samples.iter().skip(t).step_by(threads) {
                        run_sample(plan, sample, last_use, &mut ranges);
                    }
                    ranges
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("calibration thread"))
            .collect()
    });
    let mut out = vec![0.0f64; plan.values.len()];
    let mut columns = Ranges::new(plan).cols;
    for (v, o) in out.iter_mut().enumerate() {
        for r in &partial {
            if let (Some(c), Some(rc)) = (columns[v].as_mut(), r.cols[v].as_ref()) {
                c.iter_mut().zip(rc).for_each(|(a, b)| *a = a.max(*b));
            }
            if r.max[v].1 {
                return Err(LowerError::Unsupported {
                    node: plan.values[v].name.clone(),
                    op: "calibration".into(),
                    reason:
                        "the float model computes a non-finite value on the calibration samples"
                            .into(),
                });
            }
            *o = o.max(r.max[v].0);
        }
    }
    Ok(Calibration { max: out, columns })
}

/// Every value of the plan on one sample, in `f64` (`None` for values the
/// plan never computes), for per-tensor error reports of the integer
/// program.
pub fn evaluate_all(plan: &Plan, sample: &[Vec<f32>]) -> Result<Vec<Option<Vec<f64>>>, LowerError> {
    check_samples(plan, &[sample.to_vec()])?;
    let mut vals: Vec<Option<Rc<Vec<f64>>>> = vec![None; plan.values.len()];
    for (x, v) in sample.iter().zip(&plan.inputs) {
        vals[*v] = Some(Rc::new(x.iter().map(|f| f64::from(*f)).collect()));
    }
    for step in &plan.steps {
        let out = run_step(plan, step, &vals);
        vals[step.output()] = Some(out);
    }
    Ok(vals.into_iter().map(|v| v.map(|x| x.to_vec())).collect())
}

//! Which values get wider or finer quantization than per-tensor `i8` (a
//! child module of [`super`]): per-column scales of layer-norm outputs,
//! `i16` values around functions between two matmuls, in attention and
//! for the attention scores, and the alias families they extend over.

use super::*;

/// Per-column scales (`max |x[.., l]| / 127`) of the layer-norm outputs
/// that only row-major matmuls over their last axis (which absorb the
/// scale of input column `l` into their weights) and layer norms (per-column
/// `wa`, `wb`) read; `None` for every other value. BERT-like models have a
/// few layer-norm output columns far larger than the rest, which a single
/// scale would leave with a few levels.
pub(super) fn column_scales(
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
pub(super) fn max_row_sum(w: &[i8], k: usize) -> i64 {
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
pub(super) fn i16_values(plan: &Plan, output_roots: &[bool]) -> Vec<Option<i32>> {
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
                    let (wq, _) = super::super::prequant::weights(plan, name, weight, *n);
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
pub(super) fn score_values(
    plan: &Plan,
    output_roots: &[bool],
    wide: &[bool],
    half: &mut [Option<i32>],
) {
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
pub(super) fn alias_family(plan: &Plan, v: ValueId) -> Vec<ValueId> {
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
pub(super) fn readers_through_aliases(plan: &Plan, v: ValueId) -> Vec<&Step> {
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
pub(super) fn attention_values(plan: &Plan, output_roots: &[bool], half: &mut [Option<i32>]) {
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
                    let (wq, _) = super::super::prequant::weights(plan, name, weight, *n);
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

//! The layer normalization and the softmax's `exp` tables of the lowering
//! (a child module of [`super`]): integer weights and shifts chosen from
//! the calibrated scales, tables from the crate's own `exp`.

use super::*;

impl Lowering<'_> {
    /// The softmax's `exp` table: `table[d] = round(2^20 exp(-d s_in))`.
    pub(super) fn exp_table(&mut self, name: &str, input: ValueId) -> Result<TensorId, LowerError> {
        self.exp_table_step(name, f64::from(self.scales[input]), 0.0)
    }

    /// `table[d] = round(2^20 exp(-(d + offset) s_in))`.
    pub(super) fn exp_table_step(
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
    pub(super) fn layer_norm(
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
            .ok_or_else(|| e("row too long for the integer layer normalization"))?;
        let so = self.column_scales_of(out_v, len);
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
        self.layer_norm_op(
            name,
            (a, b, out_v),
            (&wa, &wb, eps_i),
            (&g, &bt),
            (rows, len),
        )
    }

    /// The scale of every column of value `v` (`len` columns): its
    /// per-column scales, or its one scale repeated.
    pub(super) fn column_scales_of(&self, v: ValueId, len: usize) -> Vec<f64> {
        match &self.cols[v] {
            Some(c) => c.iter().map(|s| f64::from(*s)).collect(),
            None => vec![f64::from(self.scales[v]); len],
        }
    }

    /// A layer norm's input column scales `(sa, sb)` (`sb` zero without a
    /// second input) and their largest, `None` if that is not a positive
    /// finite number.
    pub(super) fn norm_input_scales(
        &self,
        a: ValueId,
        b: Option<ValueId>,
        len: usize,
    ) -> Option<(Vec<f64>, Vec<f64>, f64)> {
        let sa = self.column_scales_of(a, len);
        let sb = b.map_or(vec![0.0; len], |b| self.column_scales_of(b, len));
        let top = sa.iter().chain(&sb).fold(0.0f64, |m, s| m.max(*s));
        (top > 0.0 && top.is_finite()).then_some((sa, sb, top))
    }

    /// The layer norm op from its integer column weights `wa`, `wb` and
    /// `eps`, and `gamma`, `beta` in units of the output: `k` is the
    /// largest shift (<= 30) that keeps their integers below `2^30`.
    pub(super) fn layer_norm_op(
        &mut self,
        name: &str,
        (a, b, out_v): (ValueId, Option<ValueId>, ValueId),
        (wa, wb, eps_i): (&[i32], &[i32], i32),
        (g, bt): (&[f64], &[f64]),
        (rows, len): (usize, usize),
    ) -> Result<Op, LowerError> {
        let big = g.iter().chain(bt).fold(0.0f64, |m, v| m.max(v.abs()));
        let mut k = 30;
        while k > 1 && big * 2f64.powi(k) >= 2f64.powi(30) {
            k -= 1;
        }
        if big * 2f64.powi(k) >= 2f64.powi(30) || !big.is_finite() {
            return Err(err(
                name,
                "LayerNormalization",
                "scale or offset too large for the output scale",
            ));
        }
        let q = |v: &[f64]| -> Vec<i32> {
            v.iter()
                .map(|x| round_clamp(x * 2f64.powi(k), -(1 << 30), 1 << 30))
                .collect()
        };
        let (gq, bq) = (q(g), q(bt));
        let wa = self.const_i32(&format!("{name}.wa"), wa)?;
        let wb = self.const_i32(&format!("{name}.wb"), wb)?;
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
}

//! Quantization arithmetic: symmetric `i8` scales, per-channel weights,
//! `i32` biases and integer requantization multipliers.
//!
//! Every rule here uses `f64` basic operations on `f32`/`f64` inputs and
//! rounds with `f64::round` (half away from zero), so it is reproducible
//! bit for bit.

/// Activation scale: `max |x| / 127` in `f32` (`1/127` for a tensor that
/// was always zero, so that every scale is positive).
pub fn act_scale(max_abs: f64) -> f32 {
    act_scale_range(max_abs, 127)
}

/// Scale of an activation quantized to `-range..=range`: `max |x| / range`
/// in `f32` (`1/range` for a tensor that was always zero).
pub fn act_scale_range(max_abs: f64, range: i32) -> f32 {
    let m = max_abs as f32;
    let r = range as f32;
    if m > 0.0 && m.is_finite() {
        (m / r).max(f32::MIN_POSITIVE)
    } else {
        1.0 / r
    }
}

/// `round(x)` (half away from zero) clamped to `lo..=hi`; NaN gives 0.
pub fn round_clamp(x: f64, lo: i32, hi: i32) -> i32 {
    if x.is_nan() {
        return 0;
    }
    x.round().clamp(f64::from(lo), f64::from(hi)) as i32
}

/// `2^e` as an `f64`, for `|e| <= 1000`.
fn pow2(e: i32) -> f64 {
    f64::from_bits(((e + 1023) as u64) << 52)
}

/// The exponent `e` with `x = f 2^e`, `f` in `[1, 2)` (`x` positive, normal).
fn exponent(x: f64) -> i32 {
    ((x.to_bits() >> 52) & 0x7ff) as i32 - 1023
}

/// `real` as `m 2^-s` with `m` in `[2^30, 2^31)` and `1 <= s <= 62`; below
/// `2^-32`, `s = 62` and `m < 2^30` (possibly 0: the product then always
/// rounds to 0 or -0.5 and up). Errors when `real >= 2^30` or is not finite.
pub fn multiplier(real: f64) -> Result<(i32, i32), String> {
    if !(real >= 0.0 && real < pow2(30)) {
        return Err(format!("requantization factor {real} out of range"));
    }
    if real < f64::MIN_POSITIVE {
        return Ok((0, 1));
    }
    // m = real 2^s in [2^30, 2^31): s = 30 - exponent.
    let mut s = (30 - exponent(real)).min(62);
    let mut m = (real * pow2(s)).round();
    if m >= pow2(31) {
        m /= 2.0;
        s -= 1;
    }
    if s < 1 {
        return Err(format!("requantization factor {real} out of range"));
    }
    Ok((m as i32, s))
}

/// Multipliers of a two-input sum: `ra = ma 2^-s`, `rb = mb 2^-s` with a
/// common shift chosen for the larger of `|ra|`, `|rb|`.
pub fn add_multipliers(ra: f64, rb: f64) -> Result<(i32, i32, i32), String> {
    let big = ra.abs().max(rb.abs());
    let (_, s) = multiplier(big)?;
    let (ma, mb) = ((ra * pow2(s)).round(), (rb * pow2(s)).round());
    if ma.abs() >= pow2(31) || mb.abs() >= pow2(31) {
        // Only when big rounds up to 2^31: one bit less.
        let (ma, mb) = ((ra * pow2(s - 1)).round(), (rb * pow2(s - 1)).round());
        if s < 2 {
            return Err(format!("sum rescaling factors {ra}, {rb} out of range"));
        }
        return Ok((ma as i32, mb as i32, s - 1));
    }
    Ok((ma as i32, mb as i32, s))
}

/// Per-row symmetric `i8` weights: `scale[j] = max |w[j, ..]| / 127`
/// (`1` for an all-zero row), `q = round(w / scale)` in `-127..=127`.
pub fn quantize_rows(w: &[f64], rows: usize) -> (Vec<i8>, Vec<f64>) {
    let len = w.len() / rows.max(1);
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(rows);
    for row in w.chunks(len.max(1)) {
        let max = row.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let s = if max > 0.0 { max / 127.0 } else { 1.0 };
        q.extend(row.iter().map(|x| round_clamp(x / s, -127, 127) as i8));
        scales.push(s);
    }
    (q, scales)
}

/// Biases in the accumulator's scale `s_in * s_w[j]`, checked so that no
/// accumulation of `k` products can wrap: `k * 128 * 127 + |bias| < 2^31`
/// (activations reach -128, weights stay in `-127..=127`; this implies the
/// IR's `k * 127 * 127 + |bias| < 2^31`).
pub fn quantize_bias(bias: &[f64], s_in: f32, s_w: &[f64], k: usize) -> Result<Vec<i32>, String> {
    quantize_bias_reach(bias, s_in, s_w, (k as i64).saturating_mul(128 * 127))
}

/// [`quantize_bias`] for sums of products whose magnitude is at most
/// `reach` (for `i16` inputs bounded by `R`: `R max_j sum_k |w[j, k]|`):
/// `reach + |bias| < 2^31`.
pub fn quantize_bias_reach(
    bias: &[f64],
    s_in: f32,
    s_w: &[f64],
    reach: i64,
) -> Result<Vec<i32>, String> {
    let room = (1i64 << 31) - 1 - reach;
    if room <= 0 {
        return Err(format!(
            "sums of products up to {reach} can overflow the i32 accumulator"
        ));
    }
    bias.iter()
        .zip(s_w)
        .map(|(b, s)| {
            let q = (b / (f64::from(s_in) * s)).round();
            if q.abs() < room as f64 {
                Ok(q as i32)
            } else {
                Err(format!(
                    "bias {b} is too large for the accumulator ({q} units)"
                ))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipliers_are_normalized() {
        for real in [
            1e-9,
            3.7e-5,
            0.001,
            0.25,
            0.5,
            0.999_999_999_9,
            1.0,
            3.0,
            1000.5,
        ] {
            let (m, s) = multiplier(real).unwrap();
            assert!(
                (1 << 30..=i32::MAX).contains(&m) && (1..=62).contains(&s),
                "{real}: {m} {s}"
            );
            let back = f64::from(m) / pow2(s);
            assert!((back - real).abs() <= real * 1e-9, "{real} vs {back}");
        }
        assert_eq!(multiplier(0.0).unwrap(), (0, 1));
        assert!(multiplier(1e-30).unwrap().0 < 1 << 30);
        assert!(multiplier(f64::NAN).is_err() && multiplier(2e9).is_err());
    }

    #[test]
    fn add_multipliers_share_a_shift() {
        let (ma, mb, s) = add_multipliers(0.75, -0.1).unwrap();
        assert!((f64::from(ma) / pow2(s) - 0.75).abs() < 1e-9);
        assert!((f64::from(mb) / pow2(s) + 0.1).abs() < 1e-9);
    }

    #[test]
    fn weights_and_biases() {
        let (q, s) = quantize_rows(&[0.5, -1.0, 0.0, 0.0], 2);
        assert_eq!(q, vec![64, -127, 0, 0]);
        assert_eq!(s, vec![1.0 / 127.0, 1.0]);
        assert_eq!(quantize_bias(&[0.5], 0.5, &[0.25], 9).unwrap(), vec![4]);
        assert!(quantize_bias(&[1e12], 1.0, &[1.0], 9).is_err());
        assert_eq!(round_clamp(2.5, -128, 127), 3);
        assert_eq!(round_clamp(-2.5, -128, 127), -3);
        assert_eq!(round_clamp(1e9, -128, 127), 127);
    }
}

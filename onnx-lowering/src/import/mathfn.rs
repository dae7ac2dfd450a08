//! Deterministic elementary functions in `f64`, for lookup tables and
//! calibration.
//!
//! Only IEEE-754 basic operations (`+ - * /`, `sqrt`, `round`, comparisons)
//! and integer operations are used, in a fixed order, so every platform,
//! thread count and build profile computes the same bits. (Rust never
//! contracts `a * b + c` into a fused multiply-add on its own.) The
//! accuracy is a few ulps, far below the `i8` resolution of the tables
//! built from these values; what matters is that it is reproducible.

use std::f64::consts::{FRAC_1_SQRT_2, FRAC_2_SQRT_PI, LN_2, LOG2_E, SQRT_2};

/// `x * 2^k` for any `k`, exact unless the result over- or underflows.
fn ldexp(mut x: f64, mut k: i64) -> f64 {
    let step = |e: i64| f64::from_bits(((e + 1023) as u64) << 52);
    while k > 1000 {
        x *= step(1000);
        k -= 1000;
    }
    while k < -1000 {
        x *= step(-1000);
        k += 1000;
    }
    x * step(k)
}

/// `e^x`: `x = k ln 2 + r` with `|r| <= ln 2 / 2`, a degree-16 Taylor
/// polynomial of `e^r` (Horner), then `2^k` exactly.
pub fn exp(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x > 709.8 {
        return f64::INFINITY;
    }
    if x < -745.2 {
        return 0.0;
    }
    // ln 2 split (fdlibm's) so that k * ln2_hi is exact for |k| < 2^20.
    let ln2_hi = f64::from_bits(0x3fe6_2e42_fee0_0000);
    let ln2_lo = f64::from_bits(0x3dea_39ef_3579_3c76);
    let k = (x * LOG2_E).round();
    let r = (x - k * ln2_hi) - k * ln2_lo;
    let mut p = 1.0;
    for i in (1..=16).rev() {
        p = 1.0 + p * r / f64::from(i);
    }
    ldexp(p, k as i64)
}

/// Natural logarithm: `x = m 2^e` with `m` in `[sqrt(1/2), sqrt(2))`, then
/// `ln m = 2 atanh((m - 1) / (m + 1))` by its series.
pub fn ln(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return x;
    }
    let (mut x, mut e) = (x, 0i64);
    if x < f64::MIN_POSITIVE {
        x *= ldexp(1.0, 54);
        e -= 54;
    }
    let bits = x.to_bits();
    e += ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52));
    if m > SQRT_2 {
        m /= 2.0;
        e += 1;
    }
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let mut s = 0.0;
    for i in (0..24).rev() {
        s = 1.0 / f64::from(2 * i + 1) + t2 * s;
    }
    e as f64 * LN_2 + 2.0 * t * s
}

/// `x^y`: by repeated squaring for integer `y` (`|y| <= 2^20`), else
/// `exp(y ln x)` for `x > 0`.
pub fn pow(x: f64, y: f64) -> f64 {
    if y == y.round() && y.abs() <= 1_048_576.0 {
        let (mut base, mut n, mut acc) = (x, y.abs() as u64, 1.0);
        while n > 0 {
            if n & 1 == 1 {
                acc *= base;
            }
            base *= base;
            n >>= 1;
        }
        return if y < 0.0 { 1.0 / acc } else { acc };
    }
    if x == 0.0 {
        return if y > 0.0 { 0.0 } else { f64::INFINITY };
    }
    exp(y * ln(x))
}

/// `tanh x = (e^2x - 1) / (e^2x + 1)`, `+-1` beyond `|x| = 20`.
pub fn tanh(x: f64) -> f64 {
    if x > 20.0 {
        return 1.0;
    }
    if x < -20.0 {
        return -1.0;
    }
    let e = exp(2.0 * x);
    (e - 1.0) / (e + 1.0)
}

/// `1 / (1 + e^-x)`.
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + exp(-x))
}

/// `erf x = 2/sqrt(pi) e^(-x^2) sum_n 2^n x^(2n+1) / (1 3 5 ... (2n+1))`
/// (all terms of one sign, so no cancellation), `+-1` beyond `|x| = 6`.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x >= 6.0 {
        return 1.0;
    }
    if x <= -6.0 {
        return -1.0;
    }
    let x2 = x * x;
    let (mut term, mut sum) = (x, x);
    for n in 1..400 {
        term = term * 2.0 * x2 / f64::from(2 * n + 1);
        sum += term;
        if term.abs() <= sum.abs() * 1e-17 {
            break;
        }
    }
    FRAC_2_SQRT_PI * exp(-x2) * sum
}

/// GELU, exact form: `x/2 (1 + erf(x / sqrt 2))`.
pub fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2))
}

/// GELU, tanh form: `x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^p)))`,
/// `p = 3` (or 2 for tract's fast variant).
pub fn gelu_tanh(x: f64, p: i32) -> f64 {
    let c = FRAC_2_SQRT_PI * FRAC_1_SQRT_2;
    let xp = if p == 2 { x * x } else { x * x * x };
    0.5 * x * (1.0 + tanh(c * (x + 0.044715 * xp)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_to_std() {
        for i in -400..=400 {
            let x = f64::from(i) / 37.0;
            assert!(
                (exp(x) - x.exp()).abs() <= 4.0 * f64::EPSILON * x.exp(),
                "exp {x}"
            );
            assert!((tanh(x) - x.tanh()).abs() < 1e-14, "tanh {x}");
            assert!(
                (sigmoid(x) - 1.0 / (1.0 + (-x).exp())).abs() < 1e-14,
                "sigmoid {x}"
            );
            let y = x.abs() + 1e-3;
            assert!(
                (ln(y) - y.ln()).abs() < 1e-14 * (1.0 + y.ln().abs()),
                "ln {y}"
            );
            assert!((pow(y, 0.5) - y.sqrt()).abs() < 1e-13 * y.sqrt(), "pow {y}");
        }
        // erf against a few reference values (Abramowitz & Stegun).
        for (x, e) in [
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.5, 0.999_593_047_982_555),
        ] {
            assert!(
                (erf(x) - e).abs() < 1e-14 && (erf(-x) + e).abs() < 1e-14,
                "erf {x}"
            );
        }
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(ln(1.0), 0.0);
        assert_eq!(pow(3.0, 4.0), 81.0);
    }
}

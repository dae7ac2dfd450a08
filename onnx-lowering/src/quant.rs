//! Host-side conversion between real values and the `i8` tensors of a
//! program. Runs outside the sandbox: the task input committed on-chain is
//! the quantized bytes, so this float code never affects consensus.
//!
//! `q = clamp(round(x / scale) + zero_point, -128, 127)`, computed in `f64`
//! with `round` rounding half away from zero (the rule the import uses for
//! weights and biases too); `x = scale * (q - zero_point)`.

use crate::error::LowerError;
use crate::ir::{DType, Tensor};

/// Quantizes `values` for `t`.
///
/// A raw-integer tensor (`i32` without a scale: token ids, masks) takes
/// integral values, written as little-endian `i32`.
pub fn quantize(t: &Tensor, values: &[f32]) -> Result<Vec<u8>, LowerError> {
    if t.dtype == DType::I32 && t.scale_bits.is_none() {
        if values.len() != t.len() as usize {
            return Err(LowerError::BadInput(format!(
                "tensor {} takes {} values (shape {:?}), got {}",
                t.name,
                t.len(),
                t.shape,
                values.len()
            )));
        }
        let mut out = Vec::with_capacity(4 * values.len());
        for x in values {
            if x.fract() != 0.0 || !(-2.0e9..=2.0e9).contains(x) {
                return Err(LowerError::BadInput(format!(
                    "tensor {}: {x} is not an integer in range",
                    t.name
                )));
            }
            out.extend((*x as i32).to_le_bytes());
        }
        return Ok(out);
    }
    let scale = t
        .scale()
        .filter(|s| s.is_finite() && *s > 0.0)
        .ok_or_else(|| {
            LowerError::BadInput(format!("tensor {} has no quantization scale", t.name))
        })?;
    if t.dtype != DType::I8 {
        return Err(LowerError::BadInput(format!("tensor {} is not i8", t.name)));
    }
    if values.len() != t.len() as usize {
        return Err(LowerError::BadInput(format!(
            "tensor {} takes {} values (shape {:?}), got {}",
            t.name,
            t.len(),
            t.shape,
            values.len()
        )));
    }
    values
        .iter()
        .map(|x| {
            if !x.is_finite() {
                return Err(LowerError::BadInput(format!(
                    "tensor {}: non-finite value {x}",
                    t.name
                )));
            }
            let q = (f64::from(*x) / f64::from(scale)).round() as i64 + i64::from(t.zero_point);
            Ok(q.clamp(-128, 127) as i8 as u8)
        })
        .collect()
}

/// Real values of the bytes of `t` (raw integers if `t` has no scale).
pub fn dequantize(t: &Tensor, bytes: &[u8]) -> Vec<f32> {
    let scale = t.scale().unwrap_or(1.0);
    match t.dtype {
        DType::I8 => bytes
            .iter()
            .map(|b| scale * (i32::from(*b as i8) - t.zero_point) as f32)
            .collect(),
        DType::I16 => bytes
            .chunks_exact(2)
            .map(|c| scale * (i32::from(i16::from_le_bytes([c[0], c[1]])) - t.zero_point) as f32)
            .collect(),
        DType::I32 => bytes
            .chunks_exact(4)
            .map(|c| scale * (i32::from_le_bytes([c[0], c[1], c[2], c[3]]) - t.zero_point) as f32)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::TensorKind;

    fn t(scale: f32, zp: i32) -> Tensor {
        Tensor {
            name: "x".into(),
            dtype: DType::I8,
            shape: vec![4],
            offset: 64,
            kind: TensorKind::Input,
            scale_bits: Some(scale.to_bits()),
            zero_point: zp,
        }
    }

    #[test]
    fn quantize_rounds_half_away_from_zero_and_saturates() {
        let q = quantize(&t(0.5, 0), &[0.25, -0.25, 100.0, -100.0]).unwrap();
        assert_eq!(q, vec![1u8, (-1i8) as u8, 127, (-128i8) as u8]);
        assert_eq!(dequantize(&t(0.5, 0), &q), vec![0.5, -0.5, 63.5, -64.0]);
    }

    #[test]
    fn cannot_quantize_wrong_lengths_or_non_finite_values() {
        assert!(quantize(&t(1.0, 0), &[1.0]).is_err());
        assert!(quantize(&t(1.0, 0), &[1.0, f32::NAN, 0.0, 0.0]).is_err());
        let mut raw = t(1.0, 0);
        raw.scale_bits = None;
        assert!(quantize(&raw, &[0.0; 4]).is_err());
        raw.dtype = DType::I32;
        assert_eq!(
            quantize(&raw, &[1.0, -2.0, 0.0, 7.0]).unwrap(),
            [1i32, -2, 0, 7]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>()
        );
        assert!(quantize(&raw, &[0.5, 0.0, 0.0, 0.0]).is_err());
        assert!(quantize(&raw, &[f32::NAN, 0.0, 0.0, 0.0]).is_err());
    }
}

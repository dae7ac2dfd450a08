//! Task inputs from a request body: JSON tensors, `.npz` or `.npy` bytes.
//!
//! Parsing is bounded by the model: an array's declared shape is checked
//! against the input it feeds before its data is read, so a small body
//! cannot make the server allocate more than the model's inputs take
//! (a compressed `.npz` entry is never inflated beyond that).

use super::error::ApiError;
use crate::cli::tensors::{flatten, npy_to_f32};
use std::io::Cursor;

/// A model input: name and shape.
pub type InputSpec = (String, Vec<u32>);

fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("bad_input", e.to_string())
}

fn check_shape(name: &str, got: &[u64], want: &[u32]) -> Result<(), ApiError> {
    let want64: Vec<u64> = want.iter().map(|d| u64::from(*d)).collect();
    if got != want64.as_slice() {
        return Err(bad(format!(
            "input {name:?} has shape {want:?}, got {got:?}"
        )));
    }
    Ok(())
}

fn from_npy<R: std::io::Read>(
    npy: npyz::NpyFile<R>,
    (name, shape): &InputSpec,
) -> Result<Vec<f32>, ApiError> {
    check_shape(name, npy.shape(), shape)?;
    npy_to_f32(npy).map(|(_, d)| d).map_err(bad)
}

/// Most JSON bytes accepted per input value (a number with its separator
/// and indentation; the shape and names fit in a fixed allowance).
pub const MAX_JSON_BYTES_PER_VALUE: u64 = 64;

/// Parses the values of every model input (in order) from `body`.
pub fn parse_inputs(body: &[u8], specs: &[InputSpec]) -> Result<Vec<Vec<f32>>, ApiError> {
    if body.starts_with(b"\x93NUMPY") {
        let [spec] = specs else {
            return Err(bad(format!(
                "the model takes {} inputs: send .npz or JSON",
                specs.len()
            )));
        };
        let npy = npyz::NpyFile::new(body).map_err(bad)?;
        return Ok(vec![from_npy(npy, spec)?]);
    }
    if body.starts_with(b"PK") {
        let mut npz = npyz::npz::NpzArchive::new(Cursor::new(body)).map_err(bad)?;
        return specs
            .iter()
            .map(|spec| {
                let npy = npz
                    .by_name(&spec.0)
                    .map_err(bad)?
                    .ok_or_else(|| bad(format!("the .npz has no array {:?}", spec.0)))?;
                from_npy(npy, spec)
            })
            .collect();
    }
    if body
        .first()
        .is_some_and(|b| b.is_ascii_whitespace() || *b == b'{')
    {
        // A parsed JSON value takes several times its text: refuse bodies far
        // larger than the model's inputs could need before parsing.
        let values: u64 = specs
            .iter()
            .map(|(_, s)| s.iter().map(|d| u64::from(*d)).product::<u64>())
            .sum();
        let max = values
            .saturating_mul(MAX_JSON_BYTES_PER_VALUE)
            .saturating_add(64 << 10);
        if body.len() as u64 > max {
            return Err(ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "JSON input of {} bytes exceeds {max} for this model's inputs",
                    body.len()
                ),
            ));
        }
        let v: serde_json::Value = serde_json::from_slice(body).map_err(bad)?;
        let obj = v
            .as_object()
            .ok_or_else(|| bad("JSON input must be an object of named tensors"))?;
        return specs
            .iter()
            .map(|(name, shape)| {
                let t = obj
                    .get(name)
                    .ok_or_else(|| bad(format!("JSON input has no tensor {name:?}")))?;
                let mut data = Vec::new();
                flatten(t.get("data").unwrap_or(t), &mut data, 0).map_err(bad)?;
                if let Some(s) = t.get("shape") {
                    let s: Vec<u64> = serde_json::from_value(s.clone()).map_err(bad)?;
                    check_shape(name, &s, shape)?;
                }
                let want: u64 = shape.iter().map(|d| u64::from(*d)).product();
                if data.len() as u64 != want {
                    return Err(bad(format!(
                        "input {name:?} takes {want} values, got {}",
                        data.len()
                    )));
                }
                Ok(data)
            })
            .collect();
    }
    Err(ApiError::new(
        axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_input",
        "input must be JSON tensors, .npz or .npy bytes",
    ))
}

/// Most values of calibration data read (16 Mi f32, 64 MiB).
pub const MAX_CALIBRATION_VALUES: u64 = 1 << 24;

fn calibration_array<R: std::io::Read>(
    npy: npyz::NpyFile<R>,
) -> Result<Vec<Vec<Vec<f32>>>, ApiError> {
    let shape = npy.shape().to_vec();
    let total = shape.iter().try_fold(1u64, |a, d| a.checked_mul(*d));
    if total.is_none_or(|t| t > MAX_CALIBRATION_VALUES) {
        return Err(bad(format!(
            "calibration data of shape {shape:?} exceeds {MAX_CALIBRATION_VALUES} values"
        )));
    }
    let (_, data) = npy_to_f32(npy).map_err(bad)?;
    let n = shape.first().copied().unwrap_or(0) as usize;
    if n == 0 || data.len() % n != 0 || data.is_empty() {
        return Err(bad("calibration data has no samples along its first axis"));
    }
    Ok(data
        .chunks(data.len() / n)
        .map(|c| vec![c.to_vec()])
        .collect())
}

/// Calibration samples of a one-input model from `.npz` or `.npy` bytes
/// (first axis = samples), bounded before the data is read.
pub fn parse_calibration(body: &[u8], array: Option<&str>) -> Result<Vec<Vec<Vec<f32>>>, ApiError> {
    if body.starts_with(b"\x93NUMPY") {
        return calibration_array(npyz::NpyFile::new(body).map_err(bad)?);
    }
    if body.starts_with(b"PK") {
        let mut npz = npyz::npz::NpzArchive::new(Cursor::new(body)).map_err(bad)?;
        let names: Vec<String> = npz.array_names().map(String::from).collect();
        let name = match (array, names.as_slice()) {
            (Some(a), _) => a.to_string(),
            (None, [only]) => only.clone(),
            (None, _) => {
                return Err(bad(format!(
                    "calibration .npz holds {names:?}: choose one with calibration_array"
                )))
            }
        };
        let npy = npz
            .by_name(&name)
            .map_err(bad)?
            .ok_or_else(|| bad(format!("calibration .npz has no array {name:?}")))?;
        return calibration_array(npy);
    }
    Err(bad("calibration data must be .npz or .npy bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec() -> Vec<InputSpec> {
        vec![("input".into(), vec![1, 4])]
    }

    #[test]
    fn oversized_json_is_refused_before_parsing() {
        let mut body = br#"{"input": [1, 2, 3, 4], "pad": ""#.to_vec();
        body.extend(std::iter::repeat_n(b' ', 70 << 10));
        body.extend_from_slice(br#""}"#);
        let e = parse_inputs(&body, &spec()).unwrap_err();
        assert_eq!(e.code, "body_too_large");
        body.truncate(60 << 10);
        body.extend_from_slice(br#""}"#);
        assert!(parse_inputs(&body, &spec()).is_ok());
    }

    #[test]
    fn json_with_and_without_shape() {
        let ok = parse_inputs(br#"{"input": [[1, 2, 3, 4]]}"#, &spec()).unwrap();
        assert_eq!(ok, vec![vec![1.0, 2.0, 3.0, 4.0]]);
        let ok = parse_inputs(
            br#"{"input": {"shape": [1, 4], "data": [1, 2, 3, 4]}}"#,
            &spec(),
        );
        assert!(ok.is_ok());
        for bad in [
            &br#"{"input": {"shape": [4, 1], "data": [1, 2, 3, 4]}}"#[..],
            br#"{"input": [1, 2, 3]}"#,
            br#"{"input": ["a", 2, 3, 4]}"#,
            br#"{"other": [1, 2, 3, 4]}"#,
            br#"[1, 2, 3, 4]"#,
            b"garbage",
        ] {
            assert!(
                parse_inputs(bad, &spec()).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn arbitrary_bodies_never_panic(
            prefix in 0usize..4,
            tail in proptest::collection::vec(any::<u8>(), 0..1024),
        ) {
            let mut body = [&b""[..], b"\x93NUMPY", b"PK\x03\x04", b"{"][prefix].to_vec();
            body.extend_from_slice(&tail);
            if let Ok(v) = parse_inputs(&body, &spec()) {
                prop_assert_eq!(v.len(), 1);
                prop_assert_eq!(v[0].len(), 4);
            }
            if let Ok(samples) = parse_calibration(&body, None) {
                prop_assert!(!samples.is_empty());
            }
        }
    }
}

//! Reading input tensors (`.npy`, `.npz`, `.json`) and writing outputs.
//!
//! * `.npy`: the single input of a one-input model.
//! * `.npz`: one array per model input, named after it.
//! * `.json`: `{"<input name>": [numbers, ...]}` (flat or nested arrays), or
//!   `{"<input name>": {"shape": [...], "data": [...]}}`.
//!
//! Values are read as `f32` (npy dtypes f4, f8, i1..i8, u1..u8 are converted).
//! Sizes are bounded by the model: a file must hold exactly the elements the
//! input takes.

use super::error::CliError;
use std::collections::BTreeMap;
use std::path::Path;

/// Most bytes of an input file read.
pub const MAX_INPUT_FILE: u64 = 1 << 30;

/// Reads the inputs of `artifact`'s model from `path` and quantizes them:
/// the bytes each input tensor takes in the model's memory.
pub fn read_model_inputs(
    artifact: &opml_lowering::Artifact,
    path: &Path,
) -> Result<Vec<Vec<u8>>, CliError> {
    let p = &artifact.program;
    let names: Vec<String> = p
        .inputs
        .iter()
        .map(|t| p.tensors[*t].name.clone())
        .collect();
    let tensors = read_inputs(path, &names)?;
    let inputs = tensors
        .iter()
        .zip(&p.inputs)
        .map(|(t, id)| opml_lowering::quant::quantize(&p.tensors[*id], &t.data))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(inputs)
}

/// A named f32 tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

fn bad(e: impl std::fmt::Display) -> CliError {
    CliError::BadInput(e.to_string())
}

fn cast<T: npyz::Deserialize, R: std::io::Read>(
    npy: npyz::NpyFile<R>,
    f: impl Fn(T) -> f32,
) -> Result<Vec<f32>, CliError> {
    Ok(npy
        .into_vec::<T>()
        .map_err(bad)?
        .into_iter()
        .map(f)
        .collect())
}

pub(crate) fn npy_to_f32<R: std::io::Read>(
    npy: npyz::NpyFile<R>,
) -> Result<(Vec<usize>, Vec<f32>), CliError> {
    use npyz::{DType, TypeChar};
    let shape: Vec<usize> = npy.shape().iter().map(|d| *d as usize).collect();
    let dtype = npy.dtype();
    let data = match &dtype {
        DType::Plain(t) => match (t.type_char(), t.size_field()) {
            (TypeChar::Float, 4) => cast(npy, |v: f32| v)?,
            (TypeChar::Float, 8) => cast(npy, |v: f64| v as f32)?,
            (TypeChar::Int, 1) => cast(npy, |v: i8| f32::from(v))?,
            (TypeChar::Int, 2) => cast(npy, |v: i16| f32::from(v))?,
            (TypeChar::Int, 4) => cast(npy, |v: i32| v as f32)?,
            (TypeChar::Int, 8) => cast(npy, |v: i64| v as f32)?,
            (TypeChar::Uint, 1) => cast(npy, |v: u8| f32::from(v))?,
            (TypeChar::Uint, 2) => cast(npy, |v: u16| f32::from(v))?,
            _ => return Err(bad(format!("unsupported npy dtype {dtype:?}"))),
        },
        other => return Err(bad(format!("unsupported npy dtype {other:?}"))),
    };
    Ok((shape, data))
}

fn check_size(path: &Path) -> Result<(), CliError> {
    let len = std::fs::metadata(path)
        .map_err(|e| bad(format!("{}: {e}", path.display())))?
        .len();
    if len > MAX_INPUT_FILE {
        return Err(bad(format!(
            "{}: {len} bytes exceeds the limit of {MAX_INPUT_FILE}",
            path.display()
        )));
    }
    Ok(())
}

/// Reads the tensors named `names` (the model's inputs, in order) from `path`.
pub fn read_inputs(path: &Path, names: &[String]) -> Result<Vec<NamedTensor>, CliError> {
    check_size(path)?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "npy" => {
            if names.len() != 1 {
                return Err(bad(format!(
                    "the model takes {} inputs: use .npz or .json",
                    names.len()
                )));
            }
            let bytes = std::fs::read(path).map_err(bad)?;
            let (shape, data) = npy_to_f32(npyz::NpyFile::new(&bytes[..]).map_err(bad)?)?;
            Ok(vec![NamedTensor {
                name: names[0].clone(),
                shape,
                data,
            }])
        }
        "npz" => {
            let mut npz = npyz::npz::NpzArchive::open(path).map_err(bad)?;
            names
                .iter()
                .map(|n| {
                    let npy = npz.by_name(n).map_err(bad)?.ok_or_else(|| {
                        bad(format!("{} has no array named {n:?}", path.display()))
                    })?;
                    let (shape, data) = npy_to_f32(npy)?;
                    Ok(NamedTensor {
                        name: n.clone(),
                        shape,
                        data,
                    })
                })
                .collect()
        }
        "json" => {
            let text = std::fs::read_to_string(path).map_err(bad)?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(bad)?;
            let obj = v
                .as_object()
                .ok_or_else(|| bad("JSON input must be an object of named tensors"))?;
            names
                .iter()
                .map(|n| {
                    let t = obj
                        .get(n)
                        .ok_or_else(|| bad(format!("JSON input has no tensor {n:?}")))?;
                    let data_v = t.get("data").unwrap_or(t);
                    let mut data = Vec::new();
                    flatten(data_v, &mut data, 0)?;
                    let shape = match t.get("shape") {
                        Some(s) => serde_json::from_value(s.clone()).map_err(bad)?,
                        None => vec![data.len()],
                    };
                    Ok(NamedTensor {
                        name: n.clone(),
                        shape,
                        data,
                    })
                })
                .collect()
        }
        _ => Err(bad(format!(
            "{}: input must be .npy, .npz or .json",
            path.display()
        ))),
    }
}

pub(crate) fn flatten(
    v: &serde_json::Value,
    out: &mut Vec<f32>,
    depth: usize,
) -> Result<(), CliError> {
    if depth > 16 {
        return Err(bad("JSON tensor nested deeper than 16"));
    }
    match v {
        serde_json::Value::Number(n) => {
            out.push(n.as_f64().ok_or_else(|| bad("bad number"))? as f32);
            Ok(())
        }
        serde_json::Value::Array(a) => a.iter().try_for_each(|x| flatten(x, out, depth + 1)),
        other => Err(bad(format!("tensor values must be numbers, got {other}"))),
    }
}

/// Every array of an `.npz` (sorted by name), or the one of an `.npy`.
pub fn read_all(path: &Path) -> Result<Vec<NamedTensor>, CliError> {
    check_size(path)?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "npy" => read_inputs(path, &["data".to_string()]),
        "npz" => {
            let npz = npyz::npz::NpzArchive::open(path).map_err(bad)?;
            let mut names: Vec<String> = npz.array_names().map(String::from).collect();
            names.sort();
            read_inputs(path, &names)
        }
        _ => Err(bad(format!("{}: expected .npy or .npz", path.display()))),
    }
}

/// Writes outputs: `.npy` for one output, `.json` for any number.
pub fn write_outputs(path: &Path, outputs: &[NamedTensor]) -> Result<(), CliError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "npy" if outputs.len() == 1 => {
            let o = &outputs[0];
            let shape: Vec<u64> = o.shape.iter().map(|d| *d as u64).collect();
            let file = std::fs::File::create(path).map_err(|e| CliError::Failed(e.to_string()))?;
            use npyz::WriterBuilder;
            let mut w = npyz::WriteOptions::<f32>::new()
                .default_dtype()
                .shape(&shape)
                .writer(std::io::BufWriter::new(file))
                .begin_nd()
                .map_err(|e| CliError::Failed(e.to_string()))?;
            w.extend(o.data.iter().copied())
                .map_err(|e| CliError::Failed(e.to_string()))?;
            w.finish().map_err(|e| CliError::Failed(e.to_string()))
        }
        "npz" => write_npz(path, outputs).map_err(|e| CliError::Failed(e.to_string())),
        "json" => {
            let map: BTreeMap<&str, serde_json::Value> = outputs
                .iter()
                .map(|o| {
                    (
                        o.name.as_str(),
                        serde_json::json!({"shape": o.shape, "data": o.data}),
                    )
                })
                .collect();
            std::fs::write(path, serde_json::to_vec_pretty(&map).unwrap_or_default())
                .map_err(|e| CliError::Failed(e.to_string()))
        }
        _ => Err(bad(format!(
            "{}: output must be .npy (one output), .npz or .json",
            path.display()
        ))),
    }
}

/// One array per output, named after it.
fn write_npz(path: &Path, outputs: &[NamedTensor]) -> std::io::Result<()> {
    use npyz::WriterBuilder;
    let mut npz = npyz::npz::NpzWriter::create(path)?;
    for o in outputs {
        let shape: Vec<u64> = o.shape.iter().map(|d| *d as u64).collect();
        let mut w = npz
            .array::<f32>(&o.name, Default::default())?
            .default_dtype()
            .shape(&shape)
            .begin_nd()?;
        w.extend(o.data.iter().copied())?;
        w.finish()?;
    }
    npz.zip_writer().finish().map_err(std::io::Error::other)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn temp(ext: &str, bytes: &[u8]) -> std::path::PathBuf {
        let n = std::sync::atomic::AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "opml-tensors-{}-{}-{:?}.{ext}",
            std::process::id(),
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            std::thread::current().id()
        ));
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn json_inputs_flat_nested_and_with_shape() {
        let p = temp(
            "json",
            br#"{"x": [[1, 2], [3, 4.5]], "y": {"shape": [1, 2], "data": [5, 6]}}"#,
        );
        let t = read_inputs(&p, &["x".into(), "y".into()]).unwrap();
        assert_eq!(t[0].data, vec![1.0, 2.0, 3.0, 4.5]);
        assert_eq!(
            (t[1].shape.clone(), t[1].data.clone()),
            (vec![1, 2], vec![5.0, 6.0])
        );
        assert!(matches!(
            read_inputs(&p, &["z".into()]),
            Err(CliError::BadInput(_))
        ));
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn npz_outputs_read_back() {
        let p = temp("npz", b"");
        let outs = vec![
            NamedTensor {
                name: "a".into(),
                shape: vec![1, 3],
                data: vec![1.0, -2.5, 3.0],
            },
            NamedTensor {
                name: "b+c".into(),
                shape: vec![2],
                data: vec![4.0, 5.0],
            },
        ];
        write_outputs(&p, &outs).unwrap();
        let back = read_all(&p).unwrap();
        std::fs::remove_file(p).unwrap();
        assert_eq!(back, outs);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), ext in 0usize..3) {
            let ext = ["npy", "npz", "json"][ext];
            let p = temp(ext, &bytes);
            // A panic fails the case; what is read must be self-consistent.
            let r = read_inputs(&p, &["input".into()]);
            std::fs::remove_file(&p).unwrap();
            if let Ok(t) = r {
                prop_assert_eq!(t.len(), 1);
                if ext != "json" {
                    prop_assert_eq!(t[0].shape.iter().product::<usize>(), t[0].data.len());
                }
            }
        }
    }
}

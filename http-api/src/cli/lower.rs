//! `opml lower`: ONNX model to an artifact directory, with a report.

use super::args::LowerArgs;
use super::error::CliError;
use super::tensors::NamedTensor;
use indicatif::ProgressBar;
use opml_lowering::codegen::CodegenOptions;
use opml_lowering::import::{import, ImportOptions, ImportReport};
use opml_lowering::quant::{dequantize, quantize};
use opml_lowering::Artifact;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// One node of the integer program in the report.
#[derive(Debug, Serialize)]
pub struct NodeReport {
    pub name: String,
    pub kind: String,
    pub steps: u32,
    pub fuel: u64,
}

/// Agreement of the integer model with f32 on the calibration data.
#[derive(Debug, Serialize)]
pub struct Agreement {
    pub samples: usize,
    /// Share of samples whose arg-max of the first output matches.
    pub top1: f64,
    /// Cosine similarity of the first output with f32: mean and minimum.
    pub cosine_mean: f64,
    pub cosine_min: f64,
}

/// What `opml lower --json` prints.
#[derive(Debug, Serialize)]
pub struct LowerReport {
    pub model_id: String,
    pub out: String,
    pub import: ImportReport,
    pub nodes: Vec<NodeReport>,
    pub steps: u64,
    pub fuel: u64,
    pub memory_bytes: u64,
    pub wasm_bytes: usize,
    pub code_bytes: usize,
    pub lowering_seconds: f64,
    pub agreement: Option<Agreement>,
}

fn parse_shape(s: &str) -> Result<(String, Vec<usize>), CliError> {
    let bad = || CliError::BadInput(format!("--input-shape {s:?}: expected NAME=1x3x32x32"));
    let (name, dims) = s.split_once('=').ok_or_else(bad)?;
    let dims = dims
        .split('x')
        .map(|d| d.trim().parse::<usize>().map_err(|_| bad()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((name.to_string(), dims))
}

/// The first axis of `t` indexes samples: the flat values of each sample.
fn samples_of<'a>(path: &Path, t: &'a NamedTensor) -> Result<Vec<&'a [f32]>, CliError> {
    let n = *t.shape.first().unwrap_or(&0);
    if n == 0 || !t.data.len().is_multiple_of(n) {
        return Err(CliError::BadInput(format!(
            "{}: array {:?} has no samples along the first axis",
            path.display(),
            t.name
        )));
    }
    Ok(t.data.chunks(t.data.len() / n).collect())
}

/// Calibration samples from an `.npz`/`.npy`; the first axis indexes
/// samples. A multi-input model takes an `.npz` with one array per input,
/// named after it (`inputs`: the model's input names, in order), all with
/// the same number of samples; a one-input model takes the only array or
/// the one `array` names.
fn calibration(
    path: &Path,
    array: Option<&str>,
    inputs: &[String],
) -> Result<Vec<Vec<Vec<f32>>>, CliError> {
    let arrays = super::tensors::read_all(path)?;
    let names: Vec<&str> = arrays.iter().map(|a| a.name.as_str()).collect();
    if array.is_none() && inputs.len() > 1 {
        let per_input = inputs
            .iter()
            .map(|name| {
                let t = arrays.iter().find(|a| &a.name == name).ok_or_else(|| {
                    CliError::BadInput(format!(
                        "{}: no array for model input {name:?} (has {names:?})",
                        path.display()
                    ))
                })?;
                samples_of(path, t)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let n = per_input[0].len();
        if per_input.iter().any(|s| s.len() != n) {
            return Err(CliError::BadInput(format!(
                "{}: the inputs' arrays hold different numbers of samples",
                path.display()
            )));
        }
        return Ok((0..n)
            .map(|i| per_input.iter().map(|s| s[i].to_vec()).collect())
            .collect());
    }
    let t = match (array, arrays.as_slice()) {
        (Some(name), _) => arrays.iter().find(|a| a.name == name).ok_or_else(|| {
            CliError::BadInput(format!(
                "{}: no array {name:?} (has {names:?})",
                path.display()
            ))
        })?,
        (None, [only]) => only,
        (None, _) => {
            return Err(CliError::BadInput(format!(
                "{}: holds arrays {names:?}: choose one with --calibrate-array",
                path.display()
            )))
        }
    };
    Ok(samples_of(path, t)?
        .into_iter()
        .map(|c| vec![c.to_vec()])
        .collect())
}

/// The model's input names, in order.
fn input_names(model: &Path, shapes: &[(String, Vec<usize>)]) -> Result<Vec<String>, CliError> {
    let loaded = opml_lowering::import::load::load(model, shapes)?;
    let m = &loaded.model;
    Ok(m.inputs
        .iter()
        .map(|o| m.nodes[o.node].name.clone())
        .collect())
}

pub fn lower(args: &LowerArgs) -> Result<LowerReport, CliError> {
    let started = Instant::now();
    // A missing or unreadable model is the user's mistake: name the file.
    std::fs::File::open(&args.model)
        .map_err(|e| CliError::BadInput(format!("{}: {e}", args.model.display())))?;
    let input_shapes = args
        .input_shape
        .iter()
        .map(|s| parse_shape(s))
        .collect::<Result<Vec<_>, _>>()?;
    let calibration = args
        .calibrate
        .as_deref()
        .map(|p| {
            let inputs = input_names(&args.model, &input_shapes)?;
            calibration(p, args.calibrate_array.as_deref(), &inputs)
        })
        .transpose()?;
    // Drawn on a terminal only, and never with --json.
    let spinner = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    }
    .with_message("lowering");
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let imported = import(
        &args.model,
        &ImportOptions {
            input_shapes,
            calibration: calibration.clone(),
        },
    )?;
    spinner.set_message("generating and measuring the module");
    let artifact = Artifact::build(imported.program.clone(), CodegenOptions::default())?;
    artifact.save(&args.out)?;
    let seconds = started.elapsed().as_secs_f64();
    spinner.set_message("checking agreement with f32");
    let agreement = match (&calibration, &imported.reference) {
        (Some(samples), Some(reference)) => Some(agreement(&artifact, samples, reference)?),
        _ => None,
    };
    spinner.finish_and_clear();
    let meta = artifact.meta();
    let data: usize = artifact
        .generated
        .segments
        .iter()
        .map(|(_, b)| b.len())
        .sum();
    Ok(LowerReport {
        model_id: meta.code_hash.clone(),
        out: args.out.display().to_string(),
        import: imported.report,
        nodes: artifact
            .nodes
            .iter()
            .scan(0u64, |fuel, n| {
                let f = n.end_fuel - *fuel;
                *fuel = n.end_fuel;
                Some(NodeReport {
                    name: n.name.clone(),
                    kind: n.kind.clone(),
                    steps: n.units,
                    fuel: f,
                })
            })
            .collect(),
        steps: meta.steps,
        fuel: meta.fuel,
        memory_bytes: u64::from(meta.memory_pages) * 65536,
        wasm_bytes: artifact.wasm().len(),
        code_bytes: artifact.wasm().len().saturating_sub(data),
        lowering_seconds: seconds,
        agreement,
    })
}

fn agreement(
    artifact: &Artifact,
    samples: &[Vec<Vec<f32>>],
    reference: &[Vec<Vec<f64>>],
) -> Result<Agreement, CliError> {
    let p = &artifact.program;
    let output = &p.tensors[p.outputs[0]];
    let (mut top1, mut cos_sum, mut cos_min) = (0usize, 0f64, f64::INFINITY);
    for (sample, want) in samples.iter().zip(reference) {
        let inputs = sample
            .iter()
            .zip(&p.inputs)
            .map(|(values, id)| quantize(&p.tensors[*id], values))
            .collect::<Result<Vec<_>, _>>()?;
        let run = artifact.run_native(&inputs)?;
        let got = dequantize(output, artifact.output(&run, p.outputs[0]));
        let want = &want[0];
        let argmax = |v: &mut dyn Iterator<Item = f64>| {
            v.enumerate()
                .fold(
                    (0, f64::NEG_INFINITY),
                    |b, (i, x)| if x > b.1 { (i, x) } else { b },
                )
                .0
        };
        top1 += usize::from(
            argmax(&mut got.iter().map(|x| f64::from(*x))) == argmax(&mut want.iter().copied()),
        );
        let dot: f64 = got.iter().zip(want).map(|(a, b)| f64::from(*a) * b).sum();
        let na: f64 = got
            .iter()
            .map(|a| f64::from(*a).powi(2))
            .sum::<f64>()
            .sqrt();
        let nb: f64 = want.iter().map(|b| b * b).sum::<f64>().sqrt();
        let cos = if na == 0.0 || nb == 0.0 {
            0.0
        } else {
            dot / (na * nb)
        };
        cos_sum += cos;
        cos_min = cos_min.min(cos);
    }
    let n = samples.len().max(1) as f64;
    Ok(Agreement {
        samples: samples.len(),
        top1: top1 as f64 / n,
        cosine_mean: cos_sum / n,
        cosine_min: cos_min,
    })
}

/// Human-readable report.
pub fn print(r: &LowerReport) {
    println!("model id    {}", r.model_id);
    println!("artifact    {}", r.out);
    let ops: BTreeMap<_, _> = r.import.onnx_ops.iter().collect();
    println!("onnx ops    {ops:?}");
    println!("parameters  {}", r.import.parameters);
    for n in &r.nodes {
        println!(
            "node        {:<28} {:<8} {:>6} steps {:>12} fuel",
            n.name, n.kind, n.steps, n.fuel
        );
    }
    println!("total       {} steps, {} fuel", r.steps, r.fuel);
    println!(
        "memory      {} bytes; module {} bytes ({} of code)",
        r.memory_bytes, r.wasm_bytes, r.code_bytes
    );
    println!("lowered in  {:.2} s", r.lowering_seconds);
    if let Some(a) = &r.agreement {
        println!(
            "vs f32      {} samples: top-1 agreement {:.2} %, cosine mean {:.5}, min {:.5}",
            a.samples,
            a.top1 * 100.0,
            a.cosine_mean,
            a.cosine_min
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::tensors::write_outputs;

    fn tensor(name: &str, shape: &[usize], data: &[f32]) -> NamedTensor {
        NamedTensor {
            name: name.into(),
            shape: shape.to_vec(),
            data: data.to_vec(),
        }
    }

    #[test]
    fn a_multi_input_model_takes_one_array_per_input() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cal.npz");
        write_outputs(
            &p,
            &[
                tensor("mask", &[2, 3], &[1., 1., 0., 1., 0., 0.]),
                tensor("ids", &[2, 3], &[5., 6., 7., 8., 9., 10.]),
            ],
        )
        .unwrap();
        let names = ["ids".to_string(), "mask".to_string()];
        let s = calibration(&p, None, &names).unwrap();
        assert_eq!(
            s,
            vec![
                vec![vec![5., 6., 7.], vec![1., 1., 0.]],
                vec![vec![8., 9., 10.], vec![1., 0., 0.]],
            ]
        );
        let missing = ["ids".to_string(), "types".to_string()];
        let e = calibration(&p, None, &missing).unwrap_err().to_string();
        assert!(e.contains("\"types\""), "{e}");
    }

    #[test]
    fn cannot_calibrate_inputs_with_different_sample_counts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cal.npz");
        write_outputs(
            &p,
            &[
                tensor("a", &[2, 1], &[1., 2.]),
                tensor("b", &[3, 1], &[1., 2., 3.]),
            ],
        )
        .unwrap();
        let e = calibration(&p, None, &["a".into(), "b".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("different numbers of samples"), "{e}");
        // One input: the array is named, or the only one.
        let one = calibration(&p, Some("b"), &["x".into()]).unwrap();
        assert_eq!(one, vec![vec![vec![1.]], vec![vec![2.]], vec![vec![3.]]]);
    }
}

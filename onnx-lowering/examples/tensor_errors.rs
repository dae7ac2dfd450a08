//! Per-tensor error of the integer program against the float plan, on one
//! sample: for every IR tensor with a scale, `1 - cosine` and the relative
//! RMS error of its dequantized values against the plan's `f64` values
//! (with the tensor's one scale, meaningless for tensors with per-column
//! scales), and the relative RMS error after a least-squares scale per
//! column (last axis), which is meaningful for those too.
//!
//! `cargo run --release --example tensor_errors -- MODEL.onnx INPUTS.npz
//! [ROW]` where `INPUTS.npz` holds one array per model input (named as the
//! inputs, first axis the sample) used both to calibrate and to compare.

use opml_lowering::codegen::CodegenOptions;
use opml_lowering::import::{self, calibrate, ImportOptions};
use opml_lowering::Artifact;
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (model, npz) = (Path::new(&args[1]), &args[2]);
    let row: usize = args.get(3).map_or(Ok(0), |s| s.parse())?;
    let mut archive = npyz::npz::NpzArchive::open(npz)?;
    let names: Vec<String> = archive.array_names().map(String::from).collect();
    let mut overrides = Vec::new();
    for name in names {
        let arr = archive.by_name(&name)?.ok_or("unreadable array")?;
        let mut shape: Vec<usize> = arr.shape().iter().map(|d| *d as usize).collect();
        shape[0] = 1;
        overrides.push((name, shape));
    }
    let loaded = import::load::load(model, &overrides)?;
    let plan = import::analyze::analyze(&loaded.model)?;
    let mut per_input = Vec::new();
    let mut shapes = Vec::new();
    for v in &plan.inputs {
        let name = &plan.values[*v].name;
        let arr = archive.by_name(name)?.ok_or(format!("no array {name}"))?;
        shapes.push((name.clone(), plan.values[*v].shape.clone()));
        let data: Vec<f32> = match arr.dtype() {
            npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Int => {
                arr.into_vec::<i64>()?.iter().map(|x| *x as f32).collect()
            }
            _ => arr.into_vec::<f32>()?,
        };
        per_input.push(data);
    }
    let n = plan.values[plan.inputs[0]].len();
    let samples: Vec<Vec<Vec<f32>>> = (0..per_input[0].len() / n)
        .map(|s| {
            per_input
                .iter()
                .map(|d| {
                    let m = d.len() / (per_input[0].len() / n);
                    d[s * m..(s + 1) * m].to_vec()
                })
                .collect()
        })
        .collect();
    let imp = import::import(
        model,
        &ImportOptions {
            input_shapes: shapes,
            calibration: Some(samples.clone()),
        },
    )?;
    let art = Artifact::build(imp.program.clone(), CodegenOptions::default())?;
    let inputs: Vec<Vec<u8>> = samples[row]
        .iter()
        .enumerate()
        .map(|(i, x)| import::quantize_input(&imp, i, x))
        .collect::<Result<_, _>>()?;
    let run = art.run_native(&inputs)?;
    let vals = calibrate::evaluate_all(&plan, &samples[row])?;
    let p = &art.program;
    println!("{} nodes, {} plan values", p.nodes.len(), plan.values.len());
    for node in &p.nodes {
        let t = &p.tensors[node.op.output()];
        let Some(v) = plan.values.iter().position(|v| v.name == t.name) else {
            continue;
        };
        let Some(want) = &vals[v] else { continue };
        let got = opml_lowering::quant::dequantize(t, art.output(&run, node.op.output()));
        let (mut dot, mut na, mut nb, mut err) = (0.0, 0.0, 0.0, 0.0);
        for (g, w) in got.iter().zip(want) {
            let g = f64::from(*g);
            dot += g * w;
            na += g * g;
            nb += w * w;
            err += (g - w) * (g - w);
        }
        // Per-column least-squares scale: meaningful for tensors with
        // per-column scales too (slightly optimistic for the others).
        let len = t.shape.last().copied().unwrap_or(1).max(1) as usize;
        let (mut gw, mut gg) = (vec![0.0f64; len], vec![0.0f64; len]);
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            gw[i % len] += f64::from(*g) * w;
            gg[i % len] += f64::from(*g) * f64::from(*g);
        }
        let fit = |i: usize| if gg[i] > 0.0 { gw[i] / gg[i] } else { 0.0 };
        let col_err: f64 = got
            .iter()
            .zip(want)
            .enumerate()
            .map(|(i, (g, w))| (fit(i % len) * f64::from(*g) - w).powi(2))
            .sum();
        println!(
            "{:<60} {:<14} {:<4} 1-cos {:.2e}  rel.rms {:.4}  per-col fit {:.4}  scale {:.3e}",
            t.name,
            node.op.kind(),
            format!("{:?}", t.dtype).to_lowercase(),
            1.0 - dot / (na.sqrt() * nb.sqrt()).max(1e-30),
            (err / nb.max(1e-30)).sqrt(),
            (col_err / nb.max(1e-30)).sqrt(),
            t.scale().unwrap_or(0.0)
        );
    }
    Ok(())
}

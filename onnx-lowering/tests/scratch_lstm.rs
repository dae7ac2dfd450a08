use opml_lowering::codegen::CodegenOptions;
use opml_lowering::import::{self, calibrate, ImportOptions};
use opml_lowering::Artifact;
use std::path::Path;

#[test]
fn per_tensor() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/lstm");
    let file = std::fs::File::open(dir.join("inputs.npy")).unwrap();
    let all = npyz::NpyFile::new(std::io::BufReader::new(file))
        .unwrap()
        .into_vec::<f32>()
        .unwrap();
    let xs: Vec<Vec<f32>> = all.chunks(128).map(|c| c.to_vec()).collect();
    let model = dir.join("model.onnx");
    let cal: Vec<Vec<Vec<f32>>> = xs[..8].iter().map(|x| vec![x.clone()]).collect();
    let imp = import::import(
        &model,
        &ImportOptions {
            calibration: Some(cal),
            ..Default::default()
        },
    )
    .unwrap();
    let loaded = import::load::load(&model, &[]).unwrap();
    let plan = import::analyze::analyze(&loaded.model).unwrap();
    let art = Artifact::build(imp.program.clone(), CodegenOptions::default()).unwrap();
    let row = 9;
    let run = art
        .run_native(&[import::quantize_input(&imp, 0, &xs[row]).unwrap()])
        .unwrap();
    let vals = calibrate::evaluate_all(&plan, &[xs[row].clone()]).unwrap();
    let p = &art.program;
    for node in &p.nodes {
        let t = &p.tensors[node.op.output()];
        let Some(v) = plan.values.iter().position(|v| v.name == t.name) else {
            continue;
        };
        let Some(want) = &vals[v] else { continue };
        let got = opml_lowering::quant::dequantize(t, art.output(&run, node.op.output()));
        let (mut nb, mut err, mut mx) = (0.0, 0.0, 0.0f64);
        for (g, w) in got.iter().zip(want) {
            let g = f64::from(*g);
            nb += w * w;
            err += (g - w) * (g - w);
            mx = mx.max((g - w).abs());
        }
        println!(
            "{:<30} {:<12} rel.rms {:.4} max {:.4} scale {:.5}",
            t.name,
            node.op.kind(),
            (err / nb.max(1e-30)).sqrt(),
            mx,
            t.scale().unwrap_or(0.0)
        );
    }
}

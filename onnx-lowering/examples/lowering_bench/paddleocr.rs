//! Section 5 of the lowering benchmark: the third-party fixture, PaddleOCR's
//! text-direction classifier (`fixtures/third_party`, MobileNetV3-small,
//! `x = 1x3x48x192`), as it is: lowering time and peak memory, labels and
//! probabilities against onnxruntime, native (one and all threads) and wasm
//! against tract f32, all measured in this run.

use super::{argmax, print_kinds, print_ms_table, vm_hwm_kib};
use opml_lowering::codegen::CodegenOptions;
use opml_lowering::import::{dequantize_output, import, quantize_input, ImportOptions};
use opml_lowering::ops::native_gemm::{native_threads, set_native_threads};
use opml_lowering::Artifact;
use std::path::Path;
use std::time::Instant;
use tract_onnx::prelude::tract_data::internal::ensure;
use tract_onnx::prelude::*;

const CASES: usize = 4;
const SHAPE: [usize; 4] = [1, 3, 48, 192];

fn npy_f32(path: &Path) -> TractResult<Vec<f32>> {
    Ok(npyz::NpyFile::new(std::fs::File::open(path)?)?.into_vec::<f32>()?)
}

/// Resets the process's peak RSS (Linux `clear_refs` 5), so that the next
/// `VmHWM` is this section's peak; false where that is not possible.
fn reset_hwm() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Runs section 5.
pub fn section(reps: usize) -> TractResult<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/third_party");
    let model = dir.join("ch_ppocr_mobile_v2.0_cls_infer.onnx");
    println!("== 5. PaddleOCR text-direction classifier (third-party, as it is), {reps} reps over its {CASES} inputs, ms per inference ==");
    let inputs: Vec<Vec<f32>> = (0..CASES)
        .map(|i| npy_f32(&dir.join(format!("input_{i}.npy"))))
        .collect::<TractResult<_>>()?;
    let reference: Vec<Vec<f32>> = (0..CASES)
        .map(|i| npy_f32(&dir.join(format!("output_{i}.npy"))))
        .collect::<TractResult<_>>()?;

    // Lowering, as in tests/import.rs: calibrated on the committed inputs.
    let reset = reset_hwm();
    let opts = ImportOptions {
        input_shapes: vec![("x".into(), SHAPE.to_vec())],
        calibration: Some(inputs.iter().map(|x| vec![x.clone()]).collect()),
    };
    let t = Instant::now();
    let imp = import(&model, &opts)?;
    let t_import = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let art = Artifact::build(imp.program.clone(), CodegenOptions::default())?;
    let t_build = t.elapsed().as_secs_f64();
    let last = art.nodes.last().expect("nodes");
    println!(
        "import {:.0} ms + build {:.0} ms; peak memory {:.1} MiB ({}); {} nodes, {} steps, {} fuel, memory {} B, module {} B",
        t_import * 1e3,
        t_build * 1e3,
        vm_hwm_kib() as f64 / 1024.0,
        if reset { "VmHWM of this section" } else { "VmHWM of the whole process" },
        art.nodes.len(),
        last.end_step,
        last.end_fuel,
        art.generated.memory_pages as usize * 65536,
        art.wasm().len()
    );
    let q: Vec<Vec<Vec<u8>>> = inputs
        .iter()
        .map(|x| Ok(vec![quantize_input(&imp, 0, x)?]))
        .collect::<TractResult<_>>()?;

    // Accuracy: labels and probabilities against onnxruntime.
    let mut max_err = 0f32;
    let mut same = 0;
    for (x, r) in q.iter().zip(&reference) {
        let run = art.run_native(x)?;
        let out = imp.program.outputs[0];
        let p = dequantize_output(&imp, 0, art.output(&run, out))?;
        same += usize::from(argmax(&p) == argmax(r));
        for (a, b) in p.iter().zip(r) {
            max_err = max_err.max((a - b).abs());
        }
    }
    println!(
        "labels equal to onnxruntime's: {same}/{CASES}; largest probability error {max_err:.4}"
    );

    // tract f32, optimized.
    let plan = tract_onnx::onnx()
        .model_for_path(&model)?
        .with_input_fact(0, f32::fact(SHAPE).into())?
        .into_optimized()?
        .into_runnable()?;
    let tin: Vec<TVec<TValue>> = inputs
        .iter()
        .map(|x| {
            Ok(tvec![tract_ndarray::Array4::from_shape_vec(
                SHAPE,
                x.clone()
            )?
            .into_tvalue()])
        })
        .collect::<TractResult<_>>()?;

    // The thread count changes no byte.
    let all = native_threads();
    set_native_threads(1);
    let one = art.run_native(&q[0])?;
    set_native_threads(0);
    ensure!(one == art.run_native(&q[0])?, "1 and {all} threads differ");
    let wasm = art.run_wasm(&q[0])?;
    ensure!(wasm.roots() == one.roots(), "wasm and native roots differ");

    let names = [
        "(a)  tract f32 optimized".to_string(),
        "(b1) native run_native, 1 thread".to_string(),
        format!("(bN) native run_native, {all} threads"),
        "(c)  wasm run_wasm (1 rep)".to_string(),
        format!("(bF) native, final root only, {all} threads"),
    ];
    let mut t: Vec<Vec<f64>> = vec![vec![]; names.len()];
    let per = |s: Instant| s.elapsed().as_secs_f64() * 1e3 / CASES as f64;
    for rep in 0..reps {
        let s = Instant::now();
        for x in &tin {
            std::hint::black_box(plan.run(x.clone())?);
        }
        t[0].push(per(s));
        for (k, threads) in [(1, 1), (2, 0)] {
            set_native_threads(threads);
            let s = Instant::now();
            for x in &q {
                std::hint::black_box(art.run_native(x)?);
            }
            t[k].push(per(s));
        }
        let s = Instant::now();
        for x in &q {
            std::hint::black_box(art.run_native_final(x)?);
        }
        t[4].push(per(s));
        if rep == 0 {
            let s = Instant::now();
            for x in &q {
                std::hint::black_box(art.run_wasm(x)?);
            }
            t[3].push(per(s));
        }
    }
    set_native_threads(0);
    let goal = "   goal <= 1.0";
    let med = print_ms_table(
        &names,
        &t,
        "inference",
        &[
            ("(b1)/(a) native 1 thread / tract".into(), 1, goal),
            (format!("(bN)/(a) native {all} threads / tract"), 2, goal),
            ("(bF)/(a) native final root / tract".into(), 4, goal),
        ],
    );
    println!(
        "  (c)/(bN) wasm / native                 {:.2}   goal <= 10",
        med[3] / med[2]
    );
    // Native time per op kind: every node alone on a running image.
    let mut image = art.initial_image();
    let mut kinds: Vec<(String, usize, f64)> = vec![];
    for _ in 0..reps {
        for x in &q {
            let off = art.program.tensors[art.program.inputs[0]].offset as usize;
            image[off..off + x[0].len()].copy_from_slice(&x[0]);
            for (j, b) in art.nodes.iter().enumerate() {
                let s = Instant::now();
                art.run_node_native(j, &mut image)?;
                let ms = s.elapsed().as_secs_f64() * 1e3 / (reps * CASES) as f64;
                match kinds.iter_mut().find(|(k, _, _)| *k == b.kind) {
                    Some(e) => e.2 += ms,
                    None => kinds.push((b.kind.clone(), 0, ms)),
                }
            }
        }
    }
    for (kind, n, _) in kinds.iter_mut() {
        *n = art.nodes.iter().filter(|b| b.kind == *kind).count();
    }
    print_kinds(
        kinds,
        &format!(
            "native kernels by op kind ({all} threads, mean): kind, nodes, ms/inference, share"
        ),
    );
    Ok(())
}

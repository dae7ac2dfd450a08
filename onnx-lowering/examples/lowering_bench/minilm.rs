//! Section 6 of the lowering benchmark: the MiniLM encoder
//! (`fixtures/minilm`, opt-in cache), native executor on one and on all
//! threads vs. tract f32, one sentence per inference.

use super::{median, print_kinds, print_ms_table, reference_kernels};
use opml_lowering::codegen::CodegenOptions;
use opml_lowering::import::{import, quantize_input, ImportOptions};
use opml_lowering::ops::native_gemm::{native_threads, set_native_threads};
use opml_lowering::Artifact;
use std::path::Path;
use std::time::Instant;
use tract_onnx::prelude::tract_data::internal::{anyhow, ensure};
use tract_onnx::prelude::*;

const SEQ: usize = 32;
const SENTENCES: usize = 10;
const NAMES: [&str; 3] = ["input_ids", "attention_mask", "token_type_ids"];

/// Runs section 6, or says why it is skipped.
pub fn section(reps: usize) -> TractResult<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    let model = dir.join("cache/minilm/model_f32.onnx");
    println!("== 6. MiniLM (all-MiniLM-L6-v2, [1, {SEQ}] tokens), {reps} reps over {SENTENCES} sentences, ms per sentence ==");
    if !model.exists() {
        println!(
            "SKIPPED: {} is missing (run fixtures/minilm/fetch.py)",
            model.display()
        );
        return Ok(());
    }
    let mut npz = npyz::npz::NpzArchive::open(dir.join("minilm/tokens.npz"))?;
    let tok: Vec<Vec<i64>> = NAMES
        .iter()
        .map(|n| {
            Ok(npz
                .by_name(n)?
                .ok_or_else(|| anyhow!("tokens.npz lacks {n}"))?
                .into_vec::<i64>()?)
        })
        .collect::<TractResult<_>>()?;
    let row = |i: usize, s: usize| &tok[i][s * SEQ..(s + 1) * SEQ];
    let sample = |s: usize| -> Vec<Vec<f32>> {
        (0..NAMES.len())
            .map(|i| row(i, s).iter().map(|v| *v as f32).collect())
            .collect()
    };

    // Lowering, as in tests/minilm.rs.
    let opts = ImportOptions {
        calibration: Some((0..SENTENCES).map(sample).collect()),
        input_shapes: NAMES
            .iter()
            .map(|n| (n.to_string(), vec![1, SEQ]))
            .collect(),
    };
    let t = Instant::now();
    let imp = import(&model, &opts)?;
    let t_import = t.elapsed().as_secs_f64();
    let names: Vec<&str> = imp
        .program
        .inputs
        .iter()
        .map(|t| imp.program.tensors[*t].name.as_str())
        .collect();
    ensure!(names == NAMES, "unexpected input order {names:?}");
    let t = Instant::now();
    let art = Artifact::build(imp.program.clone(), CodegenOptions::default())?;
    println!(
        "import {t_import:.1} s, build {:.1} s: {} nodes, memory {} B",
        t.elapsed().as_secs_f64(),
        art.nodes.len(),
        art.generated.memory_pages as usize * 65536
    );
    let q: Vec<Vec<Vec<u8>>> = (0..SENTENCES)
        .map(|s| {
            sample(s)
                .iter()
                .enumerate()
                .map(|(i, x)| -> TractResult<Vec<u8>> { Ok(quantize_input(&imp, i, x)?) })
                .collect::<TractResult<Vec<_>>>()
        })
        .collect::<TractResult<_>>()?;

    // tract f32, as in examples/dump_graph.rs.
    let mut tm = tract_onnx::onnx()
        .with_ignore_value_info(true)
        .model_for_path(&model)?;
    for i in 0..tm.inputs.len() {
        tm.set_input_fact(i, InferenceFact::dt_shape(i64::datum_type(), [1usize, SEQ]))?;
    }
    let typed = tm.into_typed()?.into_decluttered()?;
    let mut tin: Vec<TVec<TValue>> = vec![TVec::new(); SENTENCES];
    for o in typed.input_outlets()? {
        let i = NAMES
            .iter()
            .position(|n| *n == typed.node(o.node).name)
            .ok_or_else(|| anyhow!("unexpected tract input"))?;
        for (s, v) in tin.iter_mut().enumerate() {
            v.push(
                tract_ndarray::Array2::from_shape_vec((1, SEQ), row(i, s).to_vec())?.into_tvalue(),
            );
        }
    }
    let plan = typed.into_optimized()?.into_runnable()?;

    // The thread count changes no byte: same roots and memory.
    let all = native_threads();
    set_native_threads(1);
    let one = art.run_native(&q[0])?;
    set_native_threads(0);
    let many = art.run_native(&q[0])?;
    ensure!(one == many, "native runs on 1 and {all} threads differ");
    let names = [
        "(a)  tract f32 optimized".to_string(),
        "(b1) native run_native, 1 thread".to_string(),
        format!("(bN) native run_native, {all} threads"),
        format!("(b') native kernels only, {all} threads"),
        format!("(bF) native, final root only, {all} threads"),
    ];
    let mut t: Vec<Vec<f64>> = vec![vec![]; names.len()];
    let per = |s: Instant| s.elapsed().as_secs_f64() * 1e3 / SENTENCES as f64;
    let nn = art.nodes.len();
    let mut by_node = vec![vec![]; nn];
    let mut image = art.initial_image();
    for _ in 0..reps {
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
        let mut node_ms = vec![0.0; nn];
        let s = Instant::now();
        for x in &q {
            for (bytes, id) in x.iter().zip(&art.program.inputs) {
                let off = art.program.tensors[*id].offset as usize;
                image[off..off + bytes.len()].copy_from_slice(bytes);
            }
            for (j, v) in node_ms.iter_mut().enumerate() {
                let s = Instant::now();
                art.run_node_native(j, &mut image)?;
                *v += s.elapsed().as_secs_f64() * 1e3 / SENTENCES as f64;
            }
        }
        t[3].push(per(s));
        let s = Instant::now();
        for x in &q {
            std::hint::black_box(art.run_native_final(x)?);
        }
        t[4].push(per(s));
        for (v, ms) in by_node.iter_mut().zip(node_ms) {
            v.push(ms);
        }
    }
    set_native_threads(0);
    // The scalar reference kernels (the executor before tuning), once: they
    // take about a third of a second per sentence.
    let s = Instant::now();
    let mut before = image.clone();
    for x in &q {
        for (bytes, id) in x.iter().zip(&art.program.inputs) {
            let off = art.program.tensors[*id].offset as usize;
            before[off..off + bytes.len()].copy_from_slice(bytes);
        }
        reference_kernels(&art, &mut before)?;
    }
    let reference = per(s);
    ensure!(before == image, "fast and reference kernels differ");
    let goal = "   goal <= 1.0";
    let med = print_ms_table(
        &names,
        &t,
        "sentence",
        &[
            ("(b1)/(a) native 1 thread / tract".into(), 1, goal),
            (format!("(bN)/(a) native {all} threads / tract"), 2, goal),
            ("(b')/(a) native kernels / tract".into(), 3, ""),
            ("(bF)/(a) native final root / tract".into(), 4, goal),
        ],
    );
    println!(
        "(r)  scalar reference kernels (before), 1 rep: {reference:.1} ms/sentence, {:.2}x tract, {:.1}x the fast kernels",
        reference / med[0],
        reference / med[3]
    );
    // Native time per op kind (kernels only, all threads).
    let mut kinds: Vec<(String, usize, f64)> = vec![];
    for (b, v) in art.nodes.iter().zip(&by_node) {
        let ms = median(v.clone());
        match kinds.iter_mut().find(|(k, _, _)| *k == b.kind) {
            Some(e) => (e.1, e.2) = (e.1 + 1, e.2 + ms),
            None => kinds.push((b.kind.clone(), 1, ms)),
        }
    }
    print_kinds(
        kinds,
        &format!("native kernels by op kind ({all} threads): kind, nodes, ms/sentence, share"),
    );
    Ok(())
}

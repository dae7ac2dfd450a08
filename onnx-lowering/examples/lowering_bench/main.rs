//! Lowering benchmark on the digits CNN (`fixtures/digits_cnn`): lowering
//! time and peak memory, speed per inference of tract (f32), the native
//! executor and the metered Wasm sandbox, and top-1 agreement of the integer
//! model with the f32 reference.
//!
//! Section 5 does the same for the third-party PaddleOCR classifier, and
//! section 6 for the MiniLM encoder when its opt-in cache
//! (`fixtures/cache/minilm`) exists (it says it is skipped otherwise).
//! Native figures are given on one thread and on all
//! ([`native_threads`]): results are identical, only small products stay
//! on one thread.
//!
//! `cargo run --locked --release -p opml-lowering --example lowering_bench [-- --quick]`
//!
//! Each repetition runs every variant once over the same inputs, back to
//! back; times are medians over repetitions, ratios medians of the
//! per-repetition ratios with their [min, max].

use opml_lowering::codegen::CodegenOptions;
use opml_lowering::import::{dequantize_output, import, quantize_input, ImportOptions, Imported};
use opml_lowering::ir::{Op, Program};
use opml_lowering::ops::native_gemm::{native_threads, set_native_threads};
use opml_lowering::ops::{act_matmul, conv, family, matmul};
use opml_lowering::Artifact;
use opml_runtime::{Program as Module, Sandbox, Status};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tract_onnx::prelude::tract_data::internal::{anyhow, ensure};
use tract_onnx::prelude::*;

mod minilm;
mod paddleocr;

const N_IMAGES: usize = 1797;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/digits_cnn")
        .join(name)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn spread(v: &[f64]) -> String {
    let (lo, hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(*x), b.max(*x))
        });
    format!("{:.3}  [{lo:.3}, {hi:.3}]", median(v.to_vec()))
}

/// Prints the medians of `t` (ms per `unit`) against row 0, then each
/// `(label, row, goal)` of `ratios` as the median of per-repetition ratios
/// to row 0; returns the medians.
fn print_ms_table(
    names: &[String],
    t: &[Vec<f64>],
    unit: &str,
    ratios: &[(String, usize, &str)],
) -> Vec<f64> {
    let med: Vec<f64> = t.iter().map(|v| median(v.clone())).collect();
    println!("variant                                  ms/{unit:<9}   vs (a)");
    for (k, name) in names.iter().enumerate() {
        println!("{name:<40}{:>10.2}  {:>6.2}x", med[k], med[k] / med[0]);
    }
    println!("ratios (median of per-repetition ratios, [min, max])");
    for (label, row, goal) in ratios {
        let r: Vec<f64> = t[*row].iter().zip(&t[0]).map(|(x, y)| x / y).collect();
        println!("  {label:<39}{}{goal}", spread(&r));
    }
    med
}

/// Prints native time per op kind (`(kind, nodes, ms)`), largest first.
fn print_kinds(mut kinds: Vec<(String, usize, f64)>, header: &str) {
    kinds.sort_by(|a, b| b.2.total_cmp(&a.2));
    let total: f64 = kinds.iter().map(|k| k.2).sum();
    println!("{header}");
    for (kind, n, ms) in &kinds {
        println!("  {kind:<16}{n:>4} {ms:>9.3} {:>6.1}%", 100.0 * ms / total);
    }
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
}

/// `images` [1797*64] f32, `labels` [1797], reference logits [1797*10].
fn data() -> TractResult<(Vec<f32>, Vec<i64>, Vec<f32>)> {
    let mut npz = npyz::npz::NpzArchive::open(fixture("digits.npz"))?;
    let missing = || anyhow!("digits.npz lacks an array");
    let images = npz.by_name("images")?.ok_or_else(missing)?.into_vec()?;
    let labels = npz.by_name("labels")?.ok_or_else(missing)?.into_vec()?;
    let bytes = std::fs::read(fixture("reference_logits.npy"))?;
    let logits = npyz::NpyFile::new(&bytes[..])?.into_vec::<f32>()?;
    ensure!(images.len() == N_IMAGES * 64 && logits.len() == N_IMAGES * 10);
    Ok((images, labels, logits))
}

fn lower(calibration: Option<&[f32]>) -> TractResult<(Imported, Artifact, f64, f64)> {
    let opts = ImportOptions {
        calibration: calibration.map(|c| c.chunks(64).map(|x| vec![x.to_vec()]).collect()),
        ..Default::default()
    };
    let t = Instant::now();
    let imp = import(&fixture("model.onnx"), &opts)?;
    let t_import = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let art = Artifact::build(imp.program.clone(), CodegenOptions::default())?;
    Ok((imp, art, t_import, t.elapsed().as_secs_f64()))
}

/// Multiply-accumulates (conv, matmul) or comparisons (pool) of an op.
fn work(op: &Op, p: &Program) -> u64 {
    let out = u64::from(p.tensors[op.output()].len());
    match op {
        Op::Conv(c) => {
            let w = &p.tensors[c.weight];
            out * u64::from(w.len() / w.shape[0])
        }
        Op::MatMul(m) => u64::from(m.m) * u64::from(m.k) * u64::from(m.n),
        Op::MaxPool(m) => out * u64::from(m.kernel[0] * m.kernel[1]),
        Op::AvgPool(m) => out * u64::from(m.kernel[0] * m.kernel[1]),
        Op::Rearrange(_) | Op::Binary(_) => out,
        Op::Add(_) | Op::Lut(_) | Op::ChannelMul(_) | Op::Interp(_) | Op::ColAdd(_) => out,
        Op::ProductSum(_) => 2 * out,
        Op::Softmax(_) | Op::MaskedSoftmax(_) => 3 * out,
        Op::Gather(_) => out,
        Op::LayerNorm(_) => 3 * out,
        Op::ActMatMul(m) => u64::from(m.batch) * u64::from(m.m) * u64::from(m.n) * u64::from(m.k),
    }
}

/// Runs the kernels of every node on `mem` (input already written): the
/// native executor without node-boundary roots.
fn kernels(a: &Artifact, mem: &mut [u8]) -> TractResult<()> {
    for k in 0..a.program.nodes.len() {
        a.run_node_native(k, mem)?;
    }
    Ok(())
}

/// The kernels with the scalar reference loops of the products (matmul,
/// activation product, conv): the native executor before it was tuned.
fn reference_kernels(a: &Artifact, mem: &mut [u8]) -> TractResult<()> {
    let p = &a.program;
    for n in &p.nodes {
        match &n.op {
            Op::MatMul(o) => matmul::run_reference(o, p, mem),
            Op::ActMatMul(o) => act_matmul::run_reference(o, p, mem),
            Op::Conv(o) => conv::run_reference(o, p, mem),
            op => family::run_native(op, p, mem)?,
        }
    }
    Ok(())
}

/// Steps a fresh sandbox to the end; with `per_node`, adds each node's
/// stepping time (s) to it.
fn wasm_steps(a: &Artifact, sb: &mut Sandbox, per_node: Option<&mut [f64]>) -> TractResult<()> {
    let mut times = per_node;
    for (k, n) in a.nodes.iter().enumerate() {
        let t = Instant::now();
        while sb.state().step < n.end_step {
            sb.step()?;
        }
        if let Some(v) = times.as_deref_mut() {
            v[k] += t.elapsed().as_secs_f64();
        }
    }
    ensure!(sb.state().status == Status::Halted, "not halted");
    Ok(())
}

fn vm_hwm_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("");
    line.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() -> TractResult<()> {
    // The sandbox's interpreter recurses deeply within one step.
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(body)?
        .join()
        .map_err(|_| anyhow!("bench thread panicked"))?
}

fn body() -> TractResult<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let (lower_reps, reps, n_speed) = if quick { (1, 3, 32) } else { (7, 7, N_IMAGES) };
    let (images, labels, ref_logits) = data()?;
    let calib64 = &images[..64 * 64];

    // ---- 1. lowering ----------------------------------------------------
    println!("== 1. lowering (import + Artifact::build), {lower_reps} reps ==");
    let (mut ti, mut tb, mut td) = (vec![], vec![], vec![]);
    let mut lowered = None;
    for _ in 0..lower_reps {
        let (imp, art, i, b) = lower(Some(calib64))?;
        ti.push(i * 1e3);
        tb.push(b * 1e3);
        let (imp_def, art_def, di, db) = lower(None)?;
        td.push((di + db) * 1e3);
        lowered = Some((imp, art, imp_def, art_def));
    }
    let (imp, art, imp_def, art_def) = lowered.expect("at least one rep");
    let hwm_lowering = vm_hwm_kib();
    let (ti, tb) = (median(ti), median(tb));
    println!(
        "calibration 64 images: import {ti:.1} ms + build {tb:.1} ms = {:.1} ms",
        ti + tb
    );
    println!(
        "default calibration (8 random samples): import + build {:.1} ms",
        median(td)
    );
    let fuel = art.nodes.last().map_or(0, |n| n.end_fuel);
    let steps = art.nodes.last().map_or(0, |n| n.end_step);
    let mem_bytes = art.generated.memory_pages as usize * 65536;
    println!(
        "artifact: {} nodes, {steps} steps, {fuel} fuel, memory {mem_bytes} B, module {} B",
        art.nodes.len(),
        art.wasm().len()
    );

    // ---- 2. accuracy ----------------------------------------------------
    println!("== 2. accuracy over all {N_IMAGES} images (native executor) ==");
    let tract = tract_onnx::onnx()
        .model_for_path(fixture("model.onnx"))?
        .with_input_fact(0, f32::fact([1, 1, 8, 8]).into())?
        .into_optimized()?
        .into_runnable()?;
    let mut state = tract.spawn()?;
    let inputs: Vec<TValue> = images
        .chunks(64)
        .map(|x| Ok(tensor1(x).into_shape(&[1, 1, 8, 8])?.into_tvalue()))
        .collect::<TractResult<_>>()?;
    let ref_top: Vec<usize> = ref_logits.chunks(10).map(argmax).collect();
    let acc = |name: &str, top: &[usize]| {
        let g = top.iter().zip(&ref_top).filter(|(a, b)| a == b).count();
        let r = top.iter().zip(&labels).filter(|(a, l)| **a as i64 == **l);
        let (r, pct) = (r.count(), |x: usize| 100.0 * x as f64 / N_IMAGES as f64);
        println!(
            "{name:<26}{g:>5}/{N_IMAGES} {:>7.2} %   {r:>5} {:>7.2} %",
            pct(g),
            pct(r)
        );
    };
    let mut tract_top = vec![];
    for x in &inputs {
        let out = state.run(tvec![x.clone()])?;
        let logits = out[0].to_plain_array_view::<f32>()?;
        tract_top.push(argmax(logits.as_slice().unwrap_or_default()));
    }
    println!("model                     top-1 vs f32 (onnxruntime)   accuracy vs labels");
    acc("onnxruntime f32", &ref_top);
    acc("tract f32", &tract_top);
    for (name, imp, art) in [
        ("int8, default calibration", &imp_def, &art_def),
        ("int8, 64-image calibration", &imp, &art),
    ] {
        let mut top = vec![];
        for x in images.chunks(64) {
            let run = art.run_native(&[quantize_input(imp, 0, x)?])?;
            let out = art.output(&run, art.program.outputs[0]);
            top.push(argmax(&dequantize_output(imp, 0, out)?));
        }
        acc(name, &top);
    }

    // ---- 3. speed -------------------------------------------------------
    let n = n_speed;
    println!(
        "== 3. speed: first {n} images, {reps} reps, us per inference; native on up to {} threads (products under 2^21 multiply-accumulates run on one) ==",
        native_threads()
    );
    let q: Vec<Vec<Vec<u8>>> = images[..n * 64]
        .chunks(64)
        .map(|x| Ok(vec![quantize_input(&imp, 0, x)?]))
        .collect::<TractResult<_>>()?;
    let in_off = art.program.tensors[art.program.inputs[0]].offset as usize;
    let out_t = &art.program.tensors[art.program.outputs[0]];
    let out_rng = out_t.offset as usize..out_t.end() as usize;
    let module = Module::new(art.wasm())?;
    let mut image = art.initial_image();
    // Sanity: kernels alone (fast and reference), run_native and run_wasm
    // give the same outputs and the engines the same roots.
    for x in q.iter().step_by(n / 4) {
        image[in_off..in_off + x[0].len()].copy_from_slice(&x[0]);
        let mut before = image.clone();
        kernels(&art, &mut image)?;
        reference_kernels(&art, &mut before)?;
        ensure!(image == before, "fast and reference kernels differ");
        let (nat, w) = (art.run_native(x)?, art.run_wasm(x)?);
        ensure!(
            nat.roots() == w.roots() && nat.memory == w.memory,
            "engines differ"
        );
        ensure!(
            image[out_rng.clone()] == nat.memory[out_rng.clone()],
            "kernels differ"
        );
    }
    let names = [
        "(a)  tract f32 optimized",
        "(b)  native run_native (with roots)",
        "(b1) native run_native, 1 thread",
        "(b') native kernels only",
        "(r)  scalar reference kernels (before)",
        "(c)  wasm run_wasm (cached module)",
        "(c') wasm sandbox from compiled",
        "     of which instantiate+input",
        "     of which steps",
        "(bF) native, final root only (a claim)",
    ];
    let mut t: Vec<Vec<f64>> = vec![vec![]; names.len()];
    let per = |s: Instant| s.elapsed().as_secs_f64() * 1e6 / n as f64;
    for _ in 0..reps {
        let s = Instant::now();
        for x in &inputs[..n] {
            std::hint::black_box(state.run(tvec![x.clone()])?);
        }
        t[0].push(per(s));
        let s = Instant::now();
        for x in &q {
            std::hint::black_box(art.run_native(x)?);
        }
        t[1].push(per(s));
        set_native_threads(1);
        let s = Instant::now();
        for x in &q {
            std::hint::black_box(art.run_native(x)?);
        }
        t[2].push(per(s));
        set_native_threads(0);
        let s = Instant::now();
        for x in &q {
            image[in_off..in_off + x[0].len()].copy_from_slice(&x[0]);
            kernels(&art, &mut image)?;
            std::hint::black_box(&image[out_rng.clone()]);
        }
        t[3].push(per(s));
        let s = Instant::now();
        for x in &q {
            image[in_off..in_off + x[0].len()].copy_from_slice(&x[0]);
            reference_kernels(&art, &mut image)?;
            std::hint::black_box(&image[out_rng.clone()]);
        }
        t[4].push(per(s));
        let s = Instant::now();
        for x in &q {
            std::hint::black_box(art.run_wasm(x)?);
        }
        t[5].push(per(s));
        let (mut inst, s) = (0.0, Instant::now());
        for x in &q {
            let s = Instant::now();
            let mut sb = Sandbox::from_program(Arc::clone(&module))?;
            sb.write_input(in_off as u64, &x[0])?;
            inst += s.elapsed().as_secs_f64();
            wasm_steps(&art, &mut sb, None)?;
        }
        let (all, inst) = (per(s), inst * 1e6 / n as f64);
        t[6].push(all);
        t[7].push(inst);
        t[8].push(all - inst);
        let s = Instant::now();
        for x in &q {
            std::hint::black_box(art.run_native_final(x)?);
        }
        t[9].push(per(s));
    }
    let s = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(Module::new(art.wasm())?);
    }
    let compile = s.elapsed().as_secs_f64() * 1e6 / reps as f64;
    let med: Vec<f64> = t.iter().map(|v| median(v.clone())).collect();
    println!("variant                                 us/inf  inf/s    Mfuel/s   vs (a)");
    for (k, name) in names.iter().enumerate() {
        let mfuel = if (5..=8).contains(&k) && k != 7 {
            format!("{:8.1}", fuel as f64 / med[k])
        } else {
            " ".repeat(8)
        };
        println!(
            "{name:<38}{:>8.1} {:>7.0}  {mfuel}  {:>6.2}x",
            med[k],
            1e6 / med[k],
            med[k] / med[0]
        );
    }
    println!("module admission + instrumentation + compile alone (opml_runtime::Program::new): {compile:.0} us");
    println!("fuel per inference {fuel}, steps {steps}");
    let ratio =
        |a: usize, b: usize| -> Vec<f64> { t[a].iter().zip(&t[b]).map(|(x, y)| x / y).collect() };
    println!("ratios (median of per-repetition ratios, [min, max])");
    for (what, a, b, goal) in [
        ("(b)/(a)   native / tract", 1, 0, "   goal <= 1.0"),
        (
            "(bF)/(a)  native final root / tract",
            9,
            0,
            "   goal <= 1.0",
        ),
        ("(b1)/(a)  native 1 thread / tract", 2, 0, "   goal <= 1.0"),
        ("(b')/(a)  native kernels / tract", 3, 0, ""),
        ("(r)/(a)   reference kernels / tract", 4, 0, ""),
        ("(r)/(b')  reference / fast kernels", 4, 3, ""),
        ("(c)/(b)   wasm run_wasm / native", 5, 1, "   goal <= 10"),
        ("(c')/(b)  wasm precompiled / native", 6, 1, ""),
        ("steps/(b') wasm steps / native kernels", 8, 3, ""),
    ] {
        println!("  {what:<39}{}{goal}", spread(&ratio(a, b)));
    }

    // ---- 4. where the wasm time goes -------------------------------------
    println!("== 4. per node: fuel (from artifact.nodes) and time, {reps} reps over {n} images ==");
    let nn = art.nodes.len();
    let (mut wn, mut kn) = (vec![vec![]; nn], vec![vec![]; nn]);
    for _ in 0..reps {
        let (mut w, mut k) = (vec![0.0; nn], vec![0.0; nn]);
        for x in &q {
            let mut sb = Sandbox::from_program(Arc::clone(&module))?;
            sb.write_input(in_off as u64, &x[0])?;
            wasm_steps(&art, &mut sb, Some(&mut w))?;
            image[in_off..in_off + x[0].len()].copy_from_slice(&x[0]);
            for (j, kj) in k.iter_mut().enumerate() {
                let s = Instant::now();
                art.run_node_native(j, &mut image)?;
                *kj += s.elapsed().as_secs_f64();
            }
        }
        for j in 0..nn {
            wn[j].push(w[j] * 1e6 / n as f64);
            kn[j].push(k[j] * 1e6 / n as f64);
        }
    }
    println!("node                 kind     steps      fuel  share   work  fuel/work  wasm us  native us  wasm/nat  Mfuel/s");
    let row = |name: &str, kind: &str, units: u64, f: u64, wk: u64, w: f64, k: f64| {
        let (ff, share) = (f as f64, 100.0 * f as f64 / fuel as f64);
        let fw = ff / wk as f64;
        println!(
            "{name:<20} {kind:<8} {units:>5} {f:>9} {share:>5.1}% {wk:>6} {fw:>9.1} {w:>8.1} {k:>10.2} {:>9.1} {:>8.1}",
            w / k,
            ff / w
        );
    };
    let mut prev = 0;
    let (mut tw, mut tk, mut twork) = (0.0, 0.0, 0);
    for (j, (b, node)) in art.nodes.iter().zip(&art.program.nodes).enumerate() {
        let wk = work(&node.op, &art.program);
        let (w, k) = (median(wn[j].clone()), median(kn[j].clone()));
        (tw, tk, twork) = (tw + w, tk + k, twork + wk);
        row(
            &b.name,
            &b.kind,
            b.units.into(),
            b.end_fuel - prev,
            wk,
            w,
            k,
        );
        prev = b.end_fuel;
    }
    row("total", "", steps, fuel, twork, tw, tk);
    let fpw = fuel as f64 / twork as f64;
    let ns_fuel = tw * 1e3 / fuel as f64;
    println!("wasm steps run at {ns_fuel:.2} ns/fuel; fuel/work allowed for wasm steps <= 10x, now {fpw:.1}:");
    for (what, us) in [
        ("(b)  run_native with roots", med[1]),
        ("(b') native kernels only", med[3]),
        ("(a)  tract, i.e. native at its goal", med[0]),
    ] {
        let need = 10.0 * us * 1e3 / ns_fuel / twork as f64;
        println!("  vs {what:<36} {us:>7.1} us -> <= {need:.1} fuel/work");
    }
    println!(
        "fixed wasm costs: compile {compile:.0} us (once per artifact), instantiate+input per inference {:.1} us",
        med[7]
    );
    println!(
        "peak memory (VmHWM, whole process): {:.1} MiB after section 1, {:.1} MiB at the end",
        hwm_lowering as f64 / 1024.0,
        vm_hwm_kib() as f64 / 1024.0
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average (1, 5, 15 min): {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    // ---- 5. PaddleOCR (third-party), before MiniLM's large allocations ---
    paddleocr::section(if quick { 1 } else { 7 })?;

    // ---- 6. MiniLM -------------------------------------------------------
    minilm::section(if quick { 1 } else { 5 })
}

//! The MiniLM sentence encoder (all-MiniLM-L6-v2, `fixtures/minilm`):
//! lowering, accuracy of the native integer program against the f32
//! reference embeddings, and native vs. Wasm node-boundary roots; the
//! same for the int8-weight model (`model_int8w.onnx`, weights stored as
//! `Cast(int8) * scale`) against its own onnxruntime reference.
//!
//! Opt-in: the 90 MB model lives in the gitignored `fixtures/cache/minilm`
//! (made by `fixtures/minilm/fetch.py`); without it these tests print a
//! message and pass.

use opml_lowering::codegen::CodegenOptions;
use opml_lowering::import::{dequantize_output, import, quantize_input, ImportOptions, Imported};
use opml_lowering::Artifact;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

const SEQ: usize = 32;
const SENTENCES: usize = 10;
const DIM: usize = 384;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/minilm")
}

fn model() -> Option<PathBuf> {
    model_file("model_f32.onnx")
}

fn model_file(file: &str) -> Option<PathBuf> {
    let p = dir().join("../cache/minilm").join(file);
    if p.exists() {
        Some(p)
    } else {
        println!(
            "SKIPPED: {} is missing (run fixtures/minilm/fetch.py)",
            p.display()
        );
        None
    }
}

/// `input_ids`, `attention_mask`, `token_type_ids`, each `[10, 32]`.
fn tokens() -> Vec<Vec<i64>> {
    let mut npz = npyz::npz::NpzArchive::open(dir().join("tokens.npz")).unwrap();
    ["input_ids", "attention_mask", "token_type_ids"]
        .iter()
        .map(|n| npz.by_name(n).unwrap().unwrap().into_vec::<i64>().unwrap())
        .collect()
}

fn reference() -> Vec<f32> {
    reference_file("reference_embeddings.npy")
}

fn reference_file(file: &str) -> Vec<f32> {
    let f = std::fs::File::open(dir().join(file)).unwrap();
    npyz::NpyFile::new(std::io::BufReader::new(f))
        .unwrap()
        .into_vec::<f32>()
        .unwrap()
}

/// Sentence `s` as the model's three inputs, in the model's input order.
fn sample(imp_names: &[String], tok: &[Vec<i64>], s: usize) -> Vec<Vec<f32>> {
    imp_names
        .iter()
        .map(|n| {
            let i = ["input_ids", "attention_mask", "token_type_ids"]
                .iter()
                .position(|k| n == k)
                .unwrap_or_else(|| panic!("unexpected input {n}"));
            tok[i][s * SEQ..(s + 1) * SEQ]
                .iter()
                .map(|v| *v as f32)
                .collect()
        })
        .collect()
}

fn input_names(imp: &Imported) -> Vec<String> {
    imp.program
        .inputs
        .iter()
        .map(|t| imp.program.tensors[*t].name.clone())
        .collect()
}

/// Mean over the masked tokens, L2-normalised (in f64).
fn pool(hidden: &[f32], mask: &[i64]) -> Vec<f64> {
    let mut e = vec![0.0f64; DIM];
    let n = mask.iter().filter(|m| **m != 0).count() as f64;
    for (t, m) in mask.iter().enumerate() {
        if *m != 0 {
            for d in 0..DIM {
                e[d] += f64::from(hidden[t * DIM + d]) / n;
            }
        }
    }
    let norm = e.iter().map(|x| x * x).sum::<f64>().sqrt();
    e.iter().map(|x| x / norm).collect()
}

fn cosine(a: &[f64], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * f64::from(*y)).sum();
    let nb = b.iter().map(|y| f64::from(*y).powi(2)).sum::<f64>().sqrt();
    let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

const NAMES: [&str; 3] = ["input_ids", "attention_mask", "token_type_ids"];

fn lower(path: &Path, tok: &[Vec<i64>]) -> (Imported, Artifact) {
    let names: Vec<String> = NAMES.iter().map(|n| n.to_string()).collect();
    let opts = ImportOptions {
        calibration: Some((0..SENTENCES).map(|s| sample(&names, tok, s)).collect()),
        input_shapes: names.iter().map(|n| (n.clone(), vec![1, SEQ])).collect(),
    };
    let t0 = Instant::now();
    let imp = import(path, &opts).expect("MiniLM lowers");
    println!("import: {:?}", t0.elapsed());
    assert_eq!(
        input_names(&imp),
        names,
        "the calibration assumed this input order"
    );
    let t0 = Instant::now();
    let art = Artifact::build(imp.program.clone(), CodegenOptions::default()).unwrap();
    println!(
        "build: {:?}, {} nodes, {} steps, {} fuel",
        t0.elapsed(),
        art.nodes.len(),
        art.nodes.last().unwrap().end_step,
        art.nodes.last().unwrap().end_fuel
    );
    (imp, art)
}

fn inputs(imp: &Imported, tok: &[Vec<i64>], s: usize) -> Vec<Vec<u8>> {
    sample(&input_names(imp), tok, s)
        .iter()
        .enumerate()
        .map(|(i, x)| quantize_input(imp, i, x).unwrap())
        .collect()
}

/// The lowered model, shared by the tests of this file (importing takes
/// minutes in a debug build).
fn lowered() -> Option<&'static (Imported, Artifact)> {
    static CELL: OnceLock<(Imported, Artifact)> = OnceLock::new();
    let path = model()?;
    Some(CELL.get_or_init(|| lower(&path, &tokens())))
}

/// Cosine similarity with the f32 reference of every sentence (native
/// engine).
fn cosines(imp: &Imported, art: &Artifact) -> Vec<f64> {
    cosines_with(imp, art, &reference())
}

fn cosines_with(imp: &Imported, art: &Artifact, refs: &[f32]) -> Vec<f64> {
    let tok = tokens();
    let t0 = Instant::now();
    let cos: Vec<f64> = (0..SENTENCES)
        .map(|s| {
            let run = art.run_native(&inputs(imp, &tok, s)).unwrap();
            let out = art.output(&run, art.program.outputs[0]);
            let hidden = dequantize_output(imp, 0, out).unwrap();
            let e = pool(&hidden, &tok[1][s * SEQ..(s + 1) * SEQ]);
            cosine(&e, &refs[s * DIM..(s + 1) * DIM])
        })
        .collect();
    let min = cos.iter().copied().fold(f64::INFINITY, f64::min);
    let mean = cos.iter().sum::<f64>() / cos.len() as f64;
    println!("cosine per sentence: {cos:.5?}");
    println!(
        "cosine min {min:.5} mean {mean:.5}; native {:?} per sentence",
        t0.elapsed() / SENTENCES as u32
    );
    cos
}

/// The measured accuracy must not regress below what the current numeric
/// scheme reaches (min 0.99948, mean 0.99958 over the 10 sentences when
/// this was written, with the `i16` residual stream and layer norms and
/// the interpolated softmax table; the int8-weight model in f32 reaches
/// 0.9995-0.9997, so `i8` weights alone cost about this much).
#[test]
fn minilm_lowers_and_native_embeddings_stay_above_the_measured_floor() {
    let Some((imp, art)) = lowered() else { return };
    let cos = cosines(imp, art);
    assert!(
        cos.iter().all(|c| *c >= 0.9994),
        "accuracy regressed: {cos:.5?}"
    );
}

/// The target: cosine >= 0.999 with the f32 embeddings on every
/// test sentence.
#[test]
fn minilm_native_embeddings_meet_the_cosine_target() {
    let Some((imp, art)) = lowered() else { return };
    let cos = cosines(imp, art);
    assert!(
        cos.iter().all(|c| *c >= 0.999),
        "cosine target missed: {cos:.5?}"
    );
}

#[test]
fn minilm_wasm_and_native_node_boundary_roots_agree() {
    let Some((imp, art)) = lowered() else { return };
    let x = inputs(imp, &tokens(), 0);
    let t0 = Instant::now();
    let wasm = art.run_wasm(&x).unwrap();
    println!("wasm run: {:?}", t0.elapsed());
    let native = art.run_native(&x).unwrap();
    assert_eq!(wasm.roots().len(), art.nodes.len() + 1);
    assert_eq!(wasm.roots(), native.roots(), "node-boundary roots differ");
}

/// The int8-weight model, lowered once for the tests below.
fn lowered_int8w() -> Option<&'static (Imported, Artifact)> {
    static CELL: OnceLock<(Imported, Artifact)> = OnceLock::new();
    let path = model_file("model_int8w.onnx")?;
    Some(CELL.get_or_init(|| lower(&path, &tokens())))
}

/// The int8-weight model lowers (its `Cast(int8) * scale` weights folded
/// before tract reads the graph, the matmuls keeping the int8 values where
/// their input has one scale), and its embeddings stay close to
/// onnxruntime's output of that model (floor just under the measured
/// minimum, 0.99997: its weights are taken as they are, so what is left is
/// the activations' rounding).
#[test]
fn minilm_int8w_lowers_and_native_embeddings_stay_above_the_measured_floor() {
    let Some((imp, art)) = lowered_int8w() else {
        return;
    };
    let own = imp
        .program
        .tensors
        .iter()
        .filter(|t| t.name.ends_with(".weight"))
        .count();
    println!(
        "int8w: {} IR nodes, {own} weight tensors",
        imp.program.nodes.len()
    );
    let cos = cosines_with(imp, art, &reference_file("reference_embeddings_int8w.npy"));
    assert!(
        cos.iter().all(|c| *c >= 0.9999),
        "int8w accuracy regressed: {cos:.5?}"
    );
}

#[test]
fn minilm_int8w_wasm_and_native_node_boundary_roots_agree() {
    let Some((imp, art)) = lowered_int8w() else {
        return;
    };
    let x = inputs(imp, &tokens(), 0);
    let wasm = art.run_wasm(&x).unwrap();
    let native = art.run_native(&x).unwrap();
    assert_eq!(wasm.roots().len(), art.nodes.len() + 1);
    assert_eq!(wasm.roots(), native.roots(), "node-boundary roots differ");
}

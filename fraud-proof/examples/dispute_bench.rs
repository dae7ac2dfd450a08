//! Whole dispute games on the fixtures (release build):
//! `cargo run --release -p opml-fraud-proof --example dispute_bench`.
//!
//! For each fixture: the wall time of a whole game (commitment, both
//! parties' native runs, claim checks, every round, the one node in the VM,
//! proof generation and on-chain-style verification) against cheating
//! servers lying from several steps j and for several k; rounds against the
//! bound; the largest one-step proof over every step of the run; trace bytes
//! each side keeps against a single-stage trace.

use opml_fraud_proof::agents::Cheat;
use opml_fraud_proof::core::bisection::ceil_log;
use opml_fraud_proof::core::Party;
use opml_fraud_proof::play::{play, PlayConfig};
use opml_lowering::codegen::CodegenOptions;
use opml_lowering::import::api::{import, quantize_input, ImportOptions};
use opml_lowering::Artifact;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(rel)
}

fn npy_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).expect("read npy");
    npyz::NpyFile::new(&bytes[..])
        .expect("npy")
        .into_vec::<f32>()
        .expect("f32 npy")
}

/// Most rounds any disputed position can take on this layout.
fn worst(lo: u64, hi: u64, ends: &[u64], k: u32) -> u32 {
    use opml_fraud_proof::core::bisection::{dissection, Dissection};
    match dissection(lo, hi, ends, k).unwrap() {
        Dissection::OneStep => 0,
        Dissection::Stage2(_) => ceil_log(hi - lo, k),
        d => {
            let mut e = vec![lo];
            e.extend_from_slice(d.points());
            e.push(hi);
            1 + e
                .windows(2)
                .map(|w| worst(w[0], w[1], ends, k))
                .max()
                .unwrap()
        }
    }
}

fn bench(name: &str, artifact: Arc<Artifact>, inputs: Vec<Vec<u8>>) {
    let n = artifact.nodes.last().unwrap().end_step;
    let ends: Vec<u64> = artifact.nodes.iter().map(|x| x.end_step).collect();
    let longest = ends
        .iter()
        .scan(0, |prev, &e| {
            let w = e - *prev;
            *prev = e;
            Some(w)
        })
        .max()
        .unwrap();
    println!(
        "\n## {name}: {} nodes, N = {n} steps, longest node {longest} steps",
        ends.len()
    );
    // Worst case over the disputed position, for every k, from the layout.
    let over: Vec<String> = (2..=16)
        .filter_map(|k| {
            let w = worst(0, n, &ends, k);
            (w > ceil_log(n, k) + 1).then(|| format!("k={k}: {w}"))
        })
        .collect();
    println!(
        "worst-case rounds over every disputed position, k = 2..=16: {}",
        if over.is_empty() {
            "all <= ceil(log_k N) + 1".to_string()
        } else {
            format!("above ceil(log_k N) + 1 for {over:?}")
        }
    );
    // Warm-up (module compilation is cached per artifact).
    play(
        artifact.clone(),
        &inputs,
        Cheat::WrongOutput,
        Cheat::None,
        PlayConfig::default(),
    )
    .unwrap();
    let mut js: Vec<u64> = (1..=8).map(|i| 1 + (n - 1) * i / 8).collect();
    js.dedup();
    println!("| k | games | whole dispute: mean / max | mean per stage: native / VM node / prove / verify | rounds max (bound, ceil(log_k N)+1) | proof bytes max | trace bytes per side (stage 1 + stage 2) | single-stage |");
    println!("|---|---|---|---|---|---|---|---|");
    for k in [2u32, 4, 16] {
        let (mut total, mut max_t, mut games) = (Duration::ZERO, Duration::ZERO, 0u32);
        let (mut rounds, mut proof, mut s1, mut s2, mut single) = (0u32, 0usize, 0u64, 0u64, 0u64);
        // Per-stage time summed over both parties: native, one node in the
        // VM, proving, verifying.
        let mut stages = [Duration::ZERO; 4];
        let mut cheats = vec![Cheat::WrongOutput];
        for &j in &js {
            cheats.extend([
                Cheat::WrongRoot { at: j },
                Cheat::Stage1Lie { at: j },
                Cheat::Stage2Lie { at: j },
            ]);
        }
        for c in cheats {
            let t = Instant::now();
            let r = play(
                artifact.clone(),
                &inputs,
                c,
                Cheat::None,
                PlayConfig { k, window: 10 },
            )
            .unwrap();
            let el = t.elapsed();
            assert_eq!(r.winner, Some(Party::Challenger), "{c:?}");
            assert!(r.rounds <= r.round_bound);
            total += el;
            max_t = max_t.max(el);
            games += 1;
            rounds = rounds.max(r.rounds);
            proof = proof.max(r.proof_bytes.unwrap_or(0));
            s1 = s1.max(r.defender_trace.stage1.max(r.challenger_trace.stage1));
            s2 = s2.max(r.defender_trace.stage2.max(r.challenger_trace.stage2));
            single = r.single_stage_bytes;
            stages[0] += r.defender_time.stage1 + r.challenger_time.stage1;
            stages[1] += r.defender_time.stage2 + r.challenger_time.stage2;
            stages[2] += r.defender_time.prove + r.challenger_time.prove;
            stages[3] += r.verify_time;
        }
        println!(
            "| {k} | {games} | {:.1} ms / {:.1} ms | {} | {rounds} ({}, {}) | {proof} | {s1} + {s2} | {single} |",
            total.as_secs_f64() * 1e3 / f64::from(games),
            max_t.as_secs_f64() * 1e3,
            stages
                .iter()
                .map(|d| format!("{:.1}", d.as_secs_f64() * 1e3 / f64::from(games)))
                .collect::<Vec<_>>()
                .join(" / "),
            opml_fraud_proof::core::round_bound(n, k),
            ceil_log(n, k) + 1,
        );
    }
    // The largest one-step proof over every step of the run.
    let t = Instant::now();
    let mut sb = artifact.sandbox(&inputs).unwrap();
    let (mut largest, mut at) = (0usize, 0u64);
    while sb.state().step < n {
        let len = sb.prove_next_step().unwrap().to_bytes().len();
        if len > largest {
            (largest, at) = (len, sb.state().step);
        }
        sb.step().unwrap();
    }
    println!(
        "largest one-step proof over all {n} steps: {largest} bytes (step {at}; target <= 65536), found in {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

fn main() {
    let imp = import(&fixture("digits_cnn/model.onnx"), &ImportOptions::default()).unwrap();
    let digits = Arc::new(Artifact::build(imp.program.clone(), CodegenOptions::default()).unwrap());
    let x = npy_f32(&fixture("digits_cnn/sample_input.npy"));
    let input = quantize_input(&imp, 0, &x).unwrap();
    bench("digits CNN (fixtures/digits_cnn)", digits, vec![input]);

    let ocr: Vec<Vec<f32>> = (0..4)
        .map(|i| npy_f32(&fixture(&format!("third_party/input_{i}.npy"))))
        .collect();
    let opts = ImportOptions {
        input_shapes: vec![("x".into(), vec![1, 3, 48, 192])],
        calibration: Some(ocr.iter().map(|x| vec![x.clone()]).collect()),
    };
    let imp = import(
        &fixture("third_party/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
        &opts,
    )
    .unwrap();
    let a = Arc::new(Artifact::build(imp.program.clone(), CodegenOptions::default()).unwrap());
    let input = quantize_input(&imp, 0, &ocr[0]).unwrap();
    bench(
        "PaddleOCR text-direction classifier (fixtures/third_party)",
        a,
        vec![input],
    );
}

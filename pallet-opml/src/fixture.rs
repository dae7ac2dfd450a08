//! Real data for the tests, the benchmarks and the demo: the committed digits
//! CNN fixture (`fixtures/digits_cnn/model.onnx`, `sample_input.npy`)
//! lowered by `opml-lowering`, committed by `opml-fraud-proof::build`, run
//! step by step in the `opml-runtime` sandbox with a one-step proof of every
//! step, plus a cheating server's result (one output byte changed, proven
//! against its own forged final memory).
//!
//! The parties' moves are computed by the agents of `opml-fraud-proof`
//! (honest knowledge from a native run, one node traced in the sandbox when
//! stage 2 is reached; adversaries as `Cheat` strategies).

use opml_fraud_proof::agents::{Agent, Cheat, Knowledge};
use opml_fraud_proof::build::{commitment_from_artifact, input_bytes};
use opml_fraud_proof::core::{Game, ModelCommitment, OutputProof, Party};
use opml_lowering::codegen::CodegenOptions;
use opml_lowering::import::{import, quantize_input, ImportOptions};
use opml_lowering::Artifact;
use opml_runtime::StateFields;
use std::sync::Arc;
use std::sync::OnceLock;

/// A result as a server submits it: output, final state, output proof.
pub type Submission = (Vec<u8>, StateFields, OutputProof);

/// The digits model, one task on it, and what an honest party knows of it.
pub struct Digits {
    pub code: Vec<u8>,
    pub model: ModelCommitment,
    pub input: Vec<u8>,
    /// The honest party's knowledge (cloned into every agent).
    pub know: Knowledge,
    /// SCALE bytes of the one-step proof of every step `i` (from the
    /// sandbox run; for the benchmarks and the proof-rejection tests).
    pub proofs: Vec<Vec<u8>>,
    /// The honest initial state.
    pub initial: StateFields,
}

fn fixture_path(file: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/digits_cnn")
        .join(file)
}

fn read_npy_f32(path: &std::path::Path) -> Vec<f32> {
    let bytes = std::fs::read(path).expect("sample input is readable");
    let npy = npyz::NpyFile::new(&bytes[..]).expect("sample input is a .npy file");
    npy.into_vec::<f32>()
        .expect("sample input holds f32 values")
}

fn build() -> Digits {
    let imported = import(&fixture_path("model.onnx"), &ImportOptions::default())
        .expect("the digits fixture imports");
    let values = read_npy_f32(&fixture_path("sample_input.npy"));
    let input0 = quantize_input(&imported, 0, &values).expect("sample input quantizes");
    let artifact = Arc::new(
        Artifact::build(imported.program, CodegenOptions::default())
            .expect("the digits fixture lowers"),
    );
    let model = commitment_from_artifact(&artifact).expect("commitment");
    let inputs = vec![input0];
    let input = input_bytes(&artifact, &inputs);
    let mut sb = artifact.sandbox(&inputs).expect("sandbox");
    let initial = sb.state();
    let mut proofs = Vec::new();
    while !sb.state().status.is_terminal() {
        proofs.push(sb.prove_next_step().expect("proof").to_bytes());
        sb.step().expect("step");
    }
    assert_eq!(
        proofs.len() as u64,
        model.steps(),
        "run length is the committed N"
    );
    let know = Knowledge::new(artifact.clone(), inputs).expect("native run");
    Digits {
        code: artifact.wasm().to_vec(),
        model,
        input,
        know,
        proofs,
        initial,
    }
}

/// The fixture, built once per process.
pub fn digits() -> &'static Digits {
    static D: OnceLock<Digits> = OnceLock::new();
    D.get_or_init(build)
}

impl Digits {
    /// N.
    pub fn steps(&self) -> u64 {
        self.model.steps()
    }

    /// A party playing `cheat` (`Cheat::None`: honest).
    pub fn agent(&self, role: Party, cheat: Cheat) -> Agent {
        Agent::new(role, cheat, self.know.clone())
    }

    /// A defender's submission under `cheat`.
    pub fn submission(&self, cheat: Cheat) -> Submission {
        self.agent(Party::Defender, cheat)
            .submit(&self.model)
            .expect("submission")
    }

    /// The honest defender's roots for the dissection `game` awaits.
    pub fn dissection_roots(&self, game: &Game) -> opml_fraud_proof::core::game::Roots {
        let mut honest = self.agent(Party::Defender, Cheat::None);
        match honest.act(game).expect("honest move") {
            Some(opml_fraud_proof::core::Move::Dissect(roots)) => roots,
            other => panic!("expected a dissection, got {other:?}"),
        }
    }

    /// The honest one-step proof of the disputed step of `game`.
    pub fn proof(&self, game: &Game) -> Vec<u8> {
        self.proofs[game.lo as usize].clone()
    }
}

/// The benchmarks' scenario: a server lying from the step after the one
/// with the largest one-step proof, refuted by an honest challenger with
/// arity `k`, so the game ends in the largest proof of the run.
#[cfg(feature = "runtime-benchmarks")]
pub fn bench_scenario(k: u32) -> pallet_opml::BenchScenario {
    use opml_fraud_proof::core::{Claim, Game};
    let d = digits();
    let (step, _) = d
        .proofs
        .iter()
        .enumerate()
        .max_by_key(|(_, p)| p.len())
        .expect("a run has steps");
    let mut def = d.agent(
        Party::Defender,
        Cheat::WrongRoot {
            at: step as u64 + 1,
        },
    );
    let mut chal = d.agent(Party::Challenger, Cheat::None);
    let (output, final_state, output_proof) = def.submit(&d.model).expect("submission");
    let claim =
        Claim::new(0, &d.model, &d.input, &output, &final_state, &output_proof).expect("claim");
    let mut game = Game::new(&claim, &d.model.node_ends, k, 1_000, 0).expect("game");
    let mut moves = Vec::new();
    while let Some(party) = game.to_move() {
        let agent = if party == Party::Defender {
            &mut def
        } else {
            &mut chal
        };
        let mv = agent.act(&game).expect("move").expect("agents are live");
        game.apply(party, &mv, &d.model.node_ends, &d.code, 0)
            .expect("legal move");
        moves.push(mv);
    }
    assert_eq!(game.outcome().map(|o| o.winner), Some(Party::Challenger));
    pallet_opml::BenchScenario {
        code: d.code.clone(),
        commitment: d.model.clone(),
        input: d.input.clone(),
        output,
        final_fuel: final_state.fuel,
        final_memory_root: final_state.memory_root,
        output_proof,
        moves,
    }
}

/// A scenario whose one-step proof is as large as `max_proof_len` allows: a
/// synthetic module (1 page, 512-byte chunks) whose every step adds the
/// input byte to the first byte of `t` chunks, `t` chosen so the proof of a
/// step fits. Two steps, two nodes; the server lies about the final state
/// only, so the game ends in the proof of step 1.
#[cfg(feature = "runtime-benchmarks")]
pub fn largest_proof_scenario(k: u32, max_proof_len: u32) -> pallet_opml::BenchScenario {
    use opml_fraud_proof::build::{commitment_from_image, output_proof};
    use opml_fraud_proof::core::{Claim, Dissection, Game, Move, Phase, Region};
    use opml_runtime::merkle::MerkleTree;
    use opml_runtime::Sandbox;
    // Chunk 0 holds the step counter (output, 0..4) and the input (8..12);
    // each step touches chunks 0..=t; a chunk costs 518 bytes of proof.
    let t = ((max_proof_len as usize).saturating_sub(512) / 518).clamp(2, 127) - 1;
    let code = wat::parse_str(format!(
        r#"(module
  (memory (export "memory") 1 1)
  (global (export "opml_step_fuel") i64 (i64.const 1000000))
  (global (export "opml_chunk_log2") i32 (i32.const 9))
  (global (export "opml_max_touched") i32 (i32.const 128))
  (func (export "step") (result i32)
    (local $i i32) (local $a i32)
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (i32.const {t})))
      (local.set $a (i32.shl (i32.add (local.get $i) (i32.const 1)) (i32.const 9)))
      (i32.store8 (local.get $a) (i32.add (i32.load8_u (local.get $a)) (i32.load8_u (i32.const 8))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
    (i32.lt_u (i32.load (i32.const 0)) (i32.const 2))))"#
    ))
    .expect("the synthetic module assembles");
    let mut sb = Sandbox::new(&code).expect("admitted");
    let limits = sb.program().info().limits;
    let image = sb.memory().to_vec();
    let inputs = vec![Region { offset: 8, len: 4 }];
    let outputs = vec![Region { offset: 0, len: 4 }];
    let model = commitment_from_image(&code, &image, &limits, inputs, outputs, vec![1, 2])
        .expect("commitment");
    let input = vec![3u8, 0, 0, 0];
    sb.write_input(8, &input).expect("input");
    let mut roots = vec![sb.state().hash()];
    let mut proofs = Vec::new();
    while !sb.state().status.is_terminal() {
        proofs.push(sb.prove_next_step().expect("proof").to_bytes());
        roots.push(sb.step().expect("step").hash());
    }
    assert!(
        proofs.iter().all(|p| p.len() <= max_proof_len as usize),
        "proof over the limit"
    );
    let mut forged = sb.memory().to_vec();
    forged[1] ^= 1;
    let tree = MerkleTree::new(model.tree_depth, 1 << model.chunk_log2, &forged).expect("tree");
    let final_state = StateFields {
        memory_root: tree.root(),
        ..sb.state()
    };
    let (output, output_proof) = output_proof(&model, &forged).expect("output proof");
    let claim = Claim::new(0, &model, &input, &output, &final_state, &output_proof).expect("claim");
    let mut game = Game::new(&claim, &model.node_ends, k, 1_000, 0).expect("game");
    // The server's roots: the real ones but at the final step.
    let n = model.steps();
    let claimed = |p: u64| {
        if p == n {
            final_state.hash()
        } else {
            roots[p as usize]
        }
    };
    let mut moves = Vec::new();
    while let Some(party) = game.to_move() {
        let mv = match &game.phase {
            Phase::AwaitingDissection => {
                let d: Dissection = game.dissection(&model.node_ends).expect("dissection");
                Move::Dissect(
                    d.points()
                        .iter()
                        .map(|p| claimed(*p))
                        .collect::<Vec<_>>()
                        .try_into()
                        .expect("roots"),
                )
            }
            Phase::AwaitingPick {
                points,
                roots: posted,
            } => Move::Pick(
                points
                    .iter()
                    .zip(posted.iter())
                    .position(|(p, r)| roots[*p as usize] != *r)
                    .unwrap_or(points.len()) as u32,
            ),
            Phase::AwaitingOneStep => {
                Move::OneStep(proofs[game.lo as usize].clone().try_into().expect("proof"))
            }
            Phase::Ended(_) => unreachable!(),
        };
        game.apply(party, &mv, &model.node_ends, &code, 0)
            .expect("legal move");
        moves.push(mv);
    }
    assert_eq!(game.outcome().map(|o| o.winner), Some(Party::Challenger));
    pallet_opml::BenchScenario {
        code,
        commitment: model,
        input,
        output,
        final_fuel: final_state.fuel,
        final_memory_root: final_state.memory_root,
        output_proof,
        moves,
    }
}

//! Real data for the tests, the benchmarks and the demo: the committed digits
//! CNN fixture (`fixtures/digits_cnn/model.onnx`, `sample_input.npy`)
//! lowered by `opml-lowering`, committed by `opml-fraud-proof::build`, run
//! step by step in the `opml-runtime` sandbox with a one-step proof of every
//! step, plus a cheating server's result (one output byte changed, proven
//! against its own forged final memory).
//!
//! The parties' moves are computed from these states with the core's
//! `Game::dissection`: a party with view `v` posts `root(v, p)` at every
//! point `p`, and a challenger picks the first sub-interval whose end root it
//! disagrees with.

use opml_fraud_proof::build::{commitment_from_artifact, input_bytes, output_proof};
use opml_fraud_proof::core::{Game, ModelCommitment, OutputProof, Phase};
use opml_lowering::codegen::CodegenOptions;
use opml_lowering::import::{import, quantize_input, ImportOptions};
use opml_lowering::Artifact;
use opml_runtime::merkle::MerkleTree;
use opml_runtime::{Hash, StateFields};
use std::sync::OnceLock;

/// A result as a server submits it.
#[derive(Clone, Debug)]
pub struct Submission {
    pub output: Vec<u8>,
    pub final_state: StateFields,
    pub proof: OutputProof,
}

/// The digits model, one task on it, and every step of its run.
pub struct Digits {
    pub code: Vec<u8>,
    pub model: ModelCommitment,
    pub input: Vec<u8>,
    /// Honest states at steps `0..=N`.
    pub states: Vec<StateFields>,
    /// SCALE bytes of the one-step proof of step `i` (from `states[i]`).
    pub proofs: Vec<Vec<u8>>,
    pub honest: Submission,
    /// The output with its first byte flipped, proven against the forged
    /// final memory.
    pub cheat: Submission,
}

/// What a party holds to be the state root at each step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// The real run.
    Honest,
    /// Real up to step `j - 1`, forged from step `j` on (the final state is
    /// the cheating submission's). `LieFrom(N)` is the wrong-output liar.
    LieFrom(u64),
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
    let artifact = Artifact::build(imported.program, CodegenOptions::default())
        .expect("the digits fixture lowers");
    let model = commitment_from_artifact(&artifact).expect("commitment");
    let inputs = vec![input0];
    let input = input_bytes(&artifact, &inputs);
    let mut sb = artifact.sandbox(&inputs).expect("sandbox");
    let mut states = vec![sb.state()];
    let mut proofs = Vec::new();
    while !sb.state().status.is_terminal() {
        proofs.push(sb.prove_next_step().expect("proof").to_bytes());
        states.push(sb.step().expect("step"));
    }
    assert_eq!(
        states.len() as u64 - 1,
        model.steps(),
        "run length is the committed N"
    );
    let memory = sb.memory().to_vec();
    let final_state = *states.last().expect("final state");
    let (output, proof) = output_proof(&model, &memory).expect("output proof");
    let honest = Submission {
        output,
        final_state,
        proof,
    };

    let mut forged = memory;
    forged[model.outputs[0].offset as usize] ^= 1;
    let tree = MerkleTree::new(model.tree_depth, 1 << model.chunk_log2, &forged).expect("tree");
    let (output, proof) = output_proof(&model, &forged).expect("forged output proof");
    let cheat = Submission {
        output,
        final_state: StateFields {
            memory_root: tree.root(),
            ..final_state
        },
        proof,
    };
    Digits {
        code: artifact.wasm().to_vec(),
        model,
        input,
        states,
        proofs,
        honest,
        cheat,
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

    /// The root at `step` in `view`.
    pub fn root(&self, view: View, step: u64) -> Hash {
        match view {
            View::LieFrom(j) if step >= j => {
                if step == self.steps() {
                    self.cheat.final_state.hash()
                } else {
                    // Any root but the real one.
                    let mut r = self.states[step as usize].hash();
                    r[0] ^= 0xff;
                    r
                }
            }
            _ => self.states[step as usize].hash(),
        }
    }

    /// The defender's roots for the interval `game` awaits a dissection of.
    pub fn dissection_roots(&self, view: View, game: &Game) -> Vec<Hash> {
        let d = game
            .dissection(&self.model.node_ends)
            .expect("dissection of a live game");
        d.points().iter().map(|p| self.root(view, *p)).collect()
    }

    /// The challenger's pick: the first sub-interval whose end root it
    /// disagrees with (the last one if it agrees with every posted root).
    pub fn pick(&self, view: View, game: &Game) -> u32 {
        let Phase::AwaitingPick { points, roots } = &game.phase else {
            panic!("no pick is due: {:?}", game.phase);
        };
        points
            .iter()
            .zip(roots.iter())
            .position(|(p, r)| self.root(view, *p) != *r)
            .unwrap_or(points.len()) as u32
    }

    /// The one-step proof of the disputed step of `game`.
    pub fn proof(&self, game: &Game) -> Vec<u8> {
        self.proofs[game.lo as usize].clone()
    }
}

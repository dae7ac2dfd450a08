//! The game core on a tiny counter module: commitments, claims, and every
//! move and error state of the bisection, with real one-step proofs.

use opml_fraud_proof::build::{commitment_from_image, output_proof};
use opml_fraud_proof::core::claim::input_hash;
use opml_fraud_proof::core::regions::ChunkBytes;
use opml_fraud_proof::*;
use opml_runtime::{Sandbox, StateFields};

const N: u64 = 12;
const ENDS: [u64; 3] = [3, 7, 12];

/// Adds the input byte at 100 to the counter at 0 each step, N steps.
fn code() -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
  (memory (export "memory") 1 1)
  (global (export "opml_step_fuel") i64 (i64.const 1000))
  (global (export "opml_chunk_log2") i32 (i32.const 6))
  (data (i32.const 96) "\07\07\07\07\07\07\07\07")
  (func (export "step") (result i32)
    (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.load8_u (i32.const 100))))
    (i32.store (i32.const 4) (i32.add (i32.load (i32.const 4)) (i32.const 1)))
    (i32.lt_u (i32.load (i32.const 4)) (i32.const {N}))))"#
    ))
    .unwrap()
}

struct Fixture {
    code: Vec<u8>,
    model: ModelCommitment,
    input: Vec<u8>,
    states: Vec<StateFields>,
    sandboxes: Vec<Sandbox>,
}

fn fixture() -> Fixture {
    let code = code();
    let mut sb = Sandbox::new(&code).unwrap();
    let limits = sb.program().info().limits;
    let image = sb.memory().to_vec();
    let inputs = vec![Region {
        offset: 100,
        len: 3,
    }];
    let outputs = vec![Region { offset: 0, len: 8 }];
    let model =
        commitment_from_image(&code, &image, &limits, inputs, outputs, ENDS.to_vec()).unwrap();
    let input = vec![5u8, 1, 2];
    sb.write_input(100, &input).unwrap();
    let mut states = vec![sb.state()];
    let mut sandboxes = Vec::new();
    for _ in 0..N {
        let mut again = Sandbox::new(&code).unwrap();
        again.write_input(100, &input).unwrap();
        while again.state().step < sb.state().step {
            again.step().unwrap();
        }
        sandboxes.push(again);
        states.push(sb.step().unwrap());
    }
    Fixture {
        code,
        model,
        input,
        states,
        sandboxes,
    }
}

impl Fixture {
    fn claim(&self) -> Claim {
        let last = self.sandboxes.len() - 1;
        let mut sb = Sandbox::new(&self.code).unwrap();
        sb.write_input(100, &self.input).unwrap();
        while sb.state().step < N {
            sb.step().unwrap();
        }
        let _ = last;
        let (out, proof) = output_proof(&self.model, sb.memory()).unwrap();
        Claim::new(1, &self.model, &self.input, &out, &sb.state(), &proof).unwrap()
    }
    fn proof(&self, step: u64) -> Vec<u8> {
        self.sandboxes[step as usize]
            .prove_next_step()
            .unwrap()
            .to_bytes()
    }
    fn root(&self, step: u64) -> opml_runtime::Hash {
        self.states[step as usize].hash()
    }
}

#[test]
fn initial_state_matches_the_sandbox() {
    let f = fixture();
    assert_eq!(initial_state(&f.model, &f.input).unwrap(), f.states[0]);
    assert_eq!(f.model.steps(), N);
    let other = initial_state(&f.model, &[5, 1, 3]).unwrap();
    assert_ne!(other, f.states[0]);
}

#[test]
fn bad_inputs_and_commitments_are_refused() {
    let f = fixture();
    assert_eq!(
        initial_state(&f.model, &[1, 2]),
        Err(CommitmentError::WrongLength {
            expected: 3,
            got: 2
        })
    );
    let mut m = f.model.clone();
    m.input_lemmas[0][0] ^= 1;
    assert_eq!(
        initial_state(&m, &f.input),
        Err(CommitmentError::InitialRootMismatch)
    );
    let mut m = f.model.clone();
    m.input_lemmas.try_push([0; 32]).unwrap();
    assert!(matches!(
        initial_state(&m, &f.input),
        Err(CommitmentError::Merkle(_))
    ));
    let mut m = f.model.clone();
    m.input_edges[0].data[0] ^= 1;
    assert_eq!(
        initial_state(&m, &f.input),
        Err(CommitmentError::InitialRootMismatch)
    );
    let mut m = f.model.clone();
    m.input_edges.clear();
    assert!(matches!(
        initial_state(&m, &f.input),
        Err(CommitmentError::MissingEdgeChunk(1))
    ));
    let mut m = f.model.clone();
    let extra = ChunkBytes {
        index: 9,
        data: vec![0u8; 64].try_into().unwrap(),
    };
    m.input_edges.try_push(extra).unwrap();
    assert!(matches!(
        initial_state(&m, &f.input),
        Err(CommitmentError::UnexpectedEdgeChunk(9))
    ));
    let mut m = f.model.clone();
    m.node_ends = vec![3, 3, 12].try_into().unwrap();
    assert_eq!(m.validate(), Err(CommitmentError::BadNodeEnds));
    let mut m = f.model.clone();
    m.inputs = vec![Region {
        offset: 65530,
        len: 10,
    }]
    .try_into()
    .unwrap();
    assert_eq!(m.validate(), Err(CommitmentError::BadRegions));
    assert_eq!(f.model.check_code(&f.code), Ok(()));
    assert_eq!(
        f.model.check_code(b"\0asm"),
        Err(CommitmentError::CodeHashMismatch)
    );
}

#[test]
fn output_is_proven_against_the_final_root() {
    let f = fixture();
    let mut sb = Sandbox::new(&f.code).unwrap();
    sb.write_input(100, &f.input).unwrap();
    while sb.state().step < N {
        sb.step().unwrap();
    }
    let (out, proof) = output_proof(&f.model, sb.memory()).unwrap();
    assert_eq!(&out[..4], &(5 * N as u32).to_le_bytes());
    let fin = sb.state();
    assert_eq!(verify_output(&f.model, &fin, &out, &proof), Ok(()));
    let mut bad = out.clone();
    bad[0] ^= 1;
    assert_eq!(
        verify_output(&f.model, &fin, &bad, &proof),
        Err(CommitmentError::OutputMismatch)
    );
    let claim = Claim::new(7, &f.model, &f.input, &out, &fin, &proof).unwrap();
    assert_eq!(claim.initial_root, f.root(0));
    assert_eq!(claim.final_root, f.root(N));
    assert_eq!(claim.input_hash, input_hash(&f.input));
    assert_ne!(claim.hash(), Claim { task: 8, ..claim }.hash());
    assert_eq!(
        Claim::new(7, &f.model, &f.input, &bad, &fin, &proof),
        Err(ClaimError::Commitment(CommitmentError::OutputMismatch))
    );
    let running = f.states[5];
    assert_eq!(
        Claim::new(7, &f.model, &f.input, &out, &running, &proof),
        Err(ClaimError::NotHalted)
    );
    let early = StateFields { step: 11, ..fin };
    assert_eq!(
        Claim::new(7, &f.model, &f.input, &out, &early, &proof),
        Err(ClaimError::WrongStepCount {
            expected: 12,
            got: 11
        })
    );
}

/// Plays a game where the defender's roots are `droot` and the challenger
/// disputes the first sub-interval whose end differs from the honest root.
fn play(f: &Fixture, claim: &Claim, k: u32, droot: &dyn Fn(u64) -> opml_runtime::Hash) -> Game {
    let mut g = Game::new(claim, &ENDS, k, 10, 0).unwrap();
    let mut now = 0;
    while g.outcome().is_none() {
        now += 1;
        match g.phase.clone() {
            Phase::AwaitingDissection => {
                let pts = g.dissection(&ENDS).unwrap().points().to_vec();
                let roots: Vec<_> = pts.iter().map(|&p| droot(p)).collect();
                g.dissect(Party::Defender, &ENDS, &roots, now).unwrap();
            }
            Phase::AwaitingPick { points, roots } => {
                let i = points
                    .iter()
                    .zip(roots.iter())
                    .position(|(&p, r)| *r != f.root(p))
                    .unwrap_or(points.len());
                g.pick(Party::Challenger, i as u32, now).unwrap();
            }
            Phase::AwaitingOneStep => {
                g.one_step(Party::Defender, &f.code, &f.proof(g.lo), now)
                    .unwrap();
            }
            Phase::Ended(_) => unreachable!(),
        }
    }
    g
}

#[test]
fn honest_claims_win_and_lies_lose_for_every_k_and_step() {
    let f = fixture();
    let claim = f.claim();
    for k in 2..=MAX_K {
        let g = play(&f, &claim, k, &|s| f.root(s));
        assert_eq!(g.outcome().unwrap().winner, Party::Defender, "k={k}");
        assert!(g.rounds <= round_bound(N, k), "k={k}: {}", g.rounds);
        for j in 1..=N {
            let lie = |s: u64| if s >= j { [s as u8; 32] } else { f.root(s) };
            let lying = Claim {
                final_root: lie(N),
                ..claim
            };
            let g = play(&f, &lying, k, &lie);
            let o = g.outcome().unwrap();
            assert_eq!(
                (o.winner, o.reason),
                (Party::Challenger, EndReason::OneStepProof),
                "k={k} j={j}"
            );
            assert_eq!(g.hi, j, "the dispute ends at the first wrong root");
            assert!(g.rounds <= round_bound(N, k));
        }
    }
}

#[test]
fn every_error_state_is_reported_and_changes_nothing() {
    let f = fixture();
    let claim = f.claim();
    assert_eq!(
        Game::new(&claim, &ENDS, 1, 10, 0),
        Err(GameError::BadArity(1))
    );
    assert_eq!(
        Game::new(&claim, &ENDS, 17, 10, 0),
        Err(GameError::BadArity(17))
    );
    assert_eq!(
        Game::new(&claim, &[3, 11], 2, 10, 0),
        Err(GameError::StepsMismatch)
    );
    let mut g = Game::new(&claim, &ENDS, 2, 10, 100).unwrap();
    let before = g.clone();
    assert_eq!(
        g.pick(Party::Challenger, 0, 101),
        Err(GameError::NotYourTurn)
    );
    assert_eq!(
        g.dissect(Party::Challenger, &ENDS, &[f.root(7)], 101),
        Err(GameError::NotYourTurn)
    );
    assert_eq!(
        g.dissect(Party::Defender, &ENDS, &[], 101),
        Err(GameError::WrongRootCount {
            expected: 1,
            got: 0
        })
    );
    assert_eq!(
        g.dissect(Party::Defender, &ENDS, &[f.root(7)], 111),
        Err(GameError::DeadlinePassed {
            deadline: 110,
            now: 111
        })
    );
    assert_eq!(
        g.timeout(110),
        Err(GameError::DeadlineNotReached {
            deadline: 110,
            now: 110
        })
    );
    assert_eq!(
        g.one_step(Party::Defender, &f.code, &f.proof(0), 101),
        Err(GameError::NotYourTurn)
    );
    assert_eq!(g, before);
    let pts = g.dissection(&ENDS).unwrap().points().to_vec();
    let roots: Vec<_> = pts.iter().map(|&p| f.root(p)).collect();
    g.dissect(Party::Defender, &ENDS, &roots, 105).unwrap();
    assert_eq!(g.deadline, 115);
    // Equivocation: a second dissection in the same round is refused.
    assert_eq!(
        g.dissect(Party::Defender, &ENDS, &roots, 106),
        Err(GameError::NotYourTurn)
    );
    let count = pts.len() as u32 + 1;
    assert_eq!(
        g.pick(Party::Challenger, count, 106),
        Err(GameError::BadPick {
            index: count,
            count
        })
    );
    assert_eq!(g.pick(Party::Defender, 0, 106), Err(GameError::NotYourTurn));
    // Challenger silent: the defender wins by timeout.
    let mut t = g.clone();
    assert_eq!(
        t.timeout(116).unwrap(),
        Outcome {
            winner: Party::Defender,
            reason: EndReason::Timeout
        }
    );
    assert_eq!(t.timeout(117), Err(GameError::GameOver));
    assert_eq!(t.pick(Party::Challenger, 0, 117), Err(GameError::GameOver));
    // Walk down to a one-step phase with honest roots, then test proofs.
    let mut now = 106;
    while g.phase != Phase::AwaitingOneStep {
        now += 1;
        match g.phase.clone() {
            Phase::AwaitingPick { .. } => g.pick(Party::Challenger, 0, now).unwrap(),
            _ => {
                let pts = g.dissection(&ENDS).unwrap().points().to_vec();
                let roots: Vec<_> = pts.iter().map(|&p| f.root(p)).collect();
                g.dissect(Party::Defender, &ENDS, &roots, now).unwrap();
            }
        }
    }
    assert_eq!((g.lo, g.hi), (0, 1));
    let before = g.clone();
    assert!(matches!(
        g.one_step(Party::Defender, &f.code, b"garbage", now),
        Err(GameError::ProofRejected(opml_runtime::VerifyError::Decode(
            _
        )))
    ));
    assert_eq!(
        g.one_step(Party::Defender, &f.code, &f.proof(1), now),
        Err(GameError::ProofRejected(
            opml_runtime::VerifyError::PreStateMismatch
        ))
    );
    let mut p = opml_runtime::OneStepProof::decode_bounded(&f.proof(0), 1 << 20).unwrap();
    p.chunks[0].data[0] ^= 1;
    assert!(matches!(
        g.one_step(Party::Defender, &f.code, &p.to_bytes(), now),
        Err(GameError::ProofRejected(_))
    ));
    assert_eq!(g, before);
    // Defender silent at the one-step phase: it loses.
    let mut t = g.clone();
    assert_eq!(t.timeout(now + 11).unwrap().winner, Party::Challenger);
    let o = g
        .one_step(Party::Challenger, &f.code, &f.proof(0), now)
        .unwrap();
    assert_eq!(
        o,
        Outcome {
            winner: Party::Defender,
            reason: EndReason::OneStepProof
        }
    );
}

#[test]
fn types_round_trip_and_hashes_are_domain_separated() {
    use parity_scale_codec::{Decode, Encode};
    let f = fixture();
    let claim = f.claim();
    let g = Game::new(&claim, &ENDS, 4, 10, 0).unwrap();
    assert_eq!(Game::decode(&mut &g.encode()[..]).unwrap(), g);
    assert_eq!(Claim::decode(&mut &claim.encode()[..]).unwrap(), claim);
    assert_eq!(
        ModelCommitment::decode(&mut &f.model.encode()[..]).unwrap(),
        f.model
    );
    let mv = Move::Pick(3);
    assert_eq!(Move::decode(&mut &mv.encode()[..]).unwrap(), mv);
    let hs = [g.hash(), claim.hash(), f.model.hash(), mv.hash()];
    for (i, a) in hs.iter().enumerate() {
        for b in &hs[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn moves_apply_like_the_calls_and_a_wrong_model_is_refused() {
    let f = fixture();
    let claim = f.claim();
    let mut g = Game::new(&claim, &ENDS, 2, 10, 0).unwrap();
    assert_eq!(g.dissection(&[3, 7]), Err(GameError::BadNodeEnds));
    let before = g.clone();
    assert_eq!(
        g.dissect(Party::Defender, &[3, 7], &[f.root(3)], 1),
        Err(GameError::BadNodeEnds)
    );
    assert_eq!(g, before);
    let mut now = 0;
    while g.outcome().is_none() {
        now += 1;
        let mv = match g.phase.clone() {
            Phase::AwaitingDissection => {
                let pts = g.dissection(&ENDS).unwrap().points().to_vec();
                Move::Dissect(
                    pts.iter()
                        .map(|&p| f.root(p))
                        .collect::<Vec<_>>()
                        .try_into()
                        .unwrap(),
                )
            }
            Phase::AwaitingPick { points, .. } => Move::Pick(points.len() as u32),
            Phase::AwaitingOneStep => Move::OneStep(f.proof(g.lo).try_into().unwrap()),
            Phase::Ended(_) => unreachable!(),
        };
        let who = g.to_move().unwrap();
        let r = g.apply(who, &mv, &ENDS, &f.code, now).unwrap();
        assert_eq!(r.is_some(), g.outcome().is_some());
    }
    assert_eq!((g.lo, g.hi), (N - 1, N));
    assert_eq!(g.outcome().unwrap().winner, Party::Defender);
    assert!(g.rounds <= round_bound(N, 2));
}

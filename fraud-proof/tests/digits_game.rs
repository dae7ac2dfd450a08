//! Whole games on the digits CNN fixture, lowered here: every adversary
//! loses to the honest party, within the round bound.

use opml_fraud_proof::agents::Cheat;
use opml_fraud_proof::core::bisection::{ceil_log, dissection, Dissection};
use opml_fraud_proof::core::{EndReason, Party};
use opml_fraud_proof::play::{claim, play, play_many, PlayConfig};
use opml_lowering::codegen::CodegenOptions;
use opml_lowering::import::api::{import, ImportOptions};
use opml_lowering::Artifact;
use proptest::prelude::*;
use std::path::Path;
use std::sync::{Arc, OnceLock};

fn artifact() -> Arc<Artifact> {
    static A: OnceLock<Arc<Artifact>> = OnceLock::new();
    A.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/digits_cnn/model.onnx");
        let imported = import(&path, &ImportOptions::default()).expect("import");
        Arc::new(Artifact::build(imported.program, CodegenOptions::default()).expect("build"))
    })
    .clone()
}

/// Deterministic input bytes (a splitmix64 stream).
fn inputs(a: &Artifact, seed: u64) -> Vec<Vec<u8>> {
    let mut x = seed;
    a.program
        .inputs
        .iter()
        .map(|t| {
            (0..a.program.tensors[*t].bytes())
                .map(|_| {
                    x = x.wrapping_add(0x9e3779b97f4a7c15);
                    let mut z = x;
                    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
                    (z >> 56) as u8
                })
                .collect()
        })
        .collect()
}

fn steps() -> u64 {
    artifact().nodes.last().unwrap().end_step
}

fn worst(lo: u64, hi: u64, ends: &[u64], k: u32) -> u32 {
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

#[test]
fn the_fixture_layout_meets_log_k_n_plus_one() {
    let a = artifact();
    let ends: Vec<u64> = a.nodes.iter().map(|n| n.end_step).collect();
    let n = steps();
    for k in 2..=16 {
        let w = worst(0, n, &ends, k);
        assert!(
            w <= ceil_log(n, k) + 1,
            "k={k}: worst case {w} rounds, N={n}"
        );
    }
}

#[test]
fn every_defender_cheat_loses_to_an_honest_challenger() {
    let a = artifact();
    let n = steps();
    let input = inputs(&a, 1);
    let mid = n / 2 + 1;
    let cheats = [
        Cheat::WrongOutput,
        Cheat::WrongRoot { at: mid },
        Cheat::Stage1Lie { at: mid },
        Cheat::Stage2Lie { at: mid },
        Cheat::WrongIntermediate { at: 1 },
        Cheat::Equivocate { at: 2 },
        Cheat::Silent { after: 1 },
        Cheat::InvalidProof,
    ];
    for cheat in cheats {
        let r = play(
            a.clone(),
            &input,
            cheat,
            Cheat::None,
            PlayConfig { k: 3, window: 5 },
        )
        .unwrap();
        assert_eq!(r.winner, Some(Party::Challenger), "{cheat:?}: {r:?}");
        assert!(r.rounds <= r.round_bound, "{cheat:?}: {r:?}");
        match cheat {
            Cheat::Silent { .. } => assert_eq!(r.reason, Some(EndReason::Timeout)),
            Cheat::InvalidProof => {
                assert_eq!(r.reason, Some(EndReason::Timeout));
                assert_eq!(r.rejected.len(), 2, "{:?}", r.rejected);
                assert_eq!(r.hi, r.lo + 1);
            }
            _ => {
                assert_eq!(r.reason, Some(EndReason::OneStepProof), "{cheat:?}");
                assert!(r.proof_bytes.unwrap() <= 64 << 10);
                assert!(r.rejected.is_empty(), "{:?}", r.rejected);
            }
        }
        // Each side ran at most one node in the VM.
        assert!(r.defender_trace.stage2 + r.challenger_trace.stage2 < r.single_stage_bytes);
    }
}

#[test]
fn false_challenges_and_silent_challengers_lose_to_an_honest_defender() {
    let a = artifact();
    let input = inputs(&a, 2);
    let claimed = claim(a.clone(), &input, Cheat::None).unwrap();
    let cheats = [
        Cheat::FalseChallenge { at: 1 },
        Cheat::FalseChallenge { at: steps() - 1 },
        Cheat::SilentChallenger { after: 2 },
        Cheat::None,
    ];
    let reports = play_many(&claimed, &cheats, PlayConfig { k: 4, window: 5 });
    for (c, r) in cheats.iter().zip(reports) {
        let r = r.unwrap();
        if *c == Cheat::None {
            assert_eq!(
                r.winner, None,
                "an honest challenger does not dispute a correct claim"
            );
        } else {
            assert_eq!(r.winner, Some(Party::Defender), "{c:?}: {r:?}");
        }
    }
    assert!(play(
        a,
        &input,
        Cheat::None,
        Cheat::WrongOutput,
        PlayConfig::default()
    )
    .is_err());
}

#[test]
fn several_challengers_in_parallel_all_win_against_a_lie() {
    let a = artifact();
    let input = inputs(&a, 3);
    let claimed = claim(a, &input, Cheat::WrongRoot { at: 3 }).unwrap();
    let cs = [Cheat::None, Cheat::None, Cheat::None];
    for (i, r) in play_many(&claimed, &cs, PlayConfig { k: 3, window: 3 })
        .into_iter()
        .enumerate()
    {
        let r = r.unwrap();
        assert_eq!(r.winner, Some(Party::Challenger), "game {i}");
        assert_eq!(r.hi, 3);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn honest_party_wins_at_random_j_and_k(
        j in 1u64..10_000,
        k in 2u32..=16,
        which in 0usize..6,
        seed in 0u64..1000,
    ) {
        let a = artifact();
        let j = 1 + j % steps();
        let input = inputs(&a, seed);
        let (d, c) = match which {
            0 => (Cheat::WrongRoot { at: j }, Cheat::None),
            1 => (Cheat::Stage1Lie { at: j }, Cheat::None),
            2 => (Cheat::Stage2Lie { at: j }, Cheat::None),
            3 => (Cheat::Equivocate { at: j }, Cheat::None),
            4 => (Cheat::WrongIntermediate { at: j }, Cheat::None),
            _ => (Cheat::None, Cheat::FalseChallenge { at: j }),
        };
        let r = play(a, &input, d, c, PlayConfig { k, window: 2 }).unwrap();
        let honest = if c == Cheat::None { Party::Challenger } else { Party::Defender };
        prop_assert_eq!(r.winner, Some(honest));
        prop_assert!(r.rounds <= r.round_bound);
        prop_assert!(r.rounds <= ceil_log(r.steps, k) + 1, "fixture layout: {} rounds", r.rounds);
    }
}

//! The strategies a party may play.

use crate::core::Party;

/// A strategy. Honest play is [`Cheat::None`]; every other one is a way to
/// cheat as the defender (the server) or as a challenger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cheat {
    /// Plays honestly.
    None,
    /// Defender: claims a wrong output; every intermediate root is honest.
    WrongOutput,
    /// Defender: wrong output, and every root from step `at` on is wrong.
    WrongRoot { at: u64 },
    /// Defender: wrong output, wrong node-boundary roots from `at` on, but
    /// honest roots inside nodes (lies in stage 1 only).
    Stage1Lie { at: u64 },
    /// Defender: wrong output, honest node-boundary roots except the final
    /// one, wrong roots inside nodes from `at` on (lies in stage 2 only).
    Stage2Lie { at: u64 },
    /// Defender: the correct output bytes in a wrong final state (another
    /// chunk of memory differs), and wrong roots from `at` on.
    WrongIntermediate { at: u64 },
    /// Defender: wrong output; from `at` on its roots change from round to
    /// round (honest in even rounds, salted garbage in odd ones), so they are
    /// inconsistent with its own earlier moves.
    Equivocate { at: u64 },
    /// Defender: wrong output, then silent after `after` moves.
    Silent { after: u32 },
    /// Defender: wrong output, then invalid one-step proofs (tampered
    /// bytes, then a proof from the wrong pre-state), then silence.
    InvalidProof,
    /// Challenger: disputes a correct claim, believing every root from `at`
    /// on is wrong.
    FalseChallenge { at: u64 },
    /// Challenger: disputes a correct claim, then goes silent after `after`
    /// moves.
    SilentChallenger { after: u32 },
}

impl Cheat {
    /// The role this strategy plays (honest play fits both).
    pub fn role(&self) -> Option<Party> {
        match self {
            Cheat::None => None,
            Cheat::FalseChallenge { .. } | Cheat::SilentChallenger { .. } => {
                Some(Party::Challenger)
            }
            _ => Some(Party::Defender),
        }
    }

    /// Every strategy name, as the CLI spells it.
    pub const NAMES: [&'static str; 11] = [
        "none",
        "wrong-output",
        "wrong-root",
        "stage1-lie",
        "stage2-lie",
        "wrong-intermediate",
        "equivocate",
        "silent",
        "invalid-proof",
        "false-challenge",
        "silent-challenger",
    ];

    /// Parses a CLI name; `at` is the step (or, for silence, the move count)
    /// where the cheat starts.
    pub fn parse(name: &str, at: u64) -> Option<Self> {
        let after = u32::try_from(at).unwrap_or(u32::MAX);
        Some(match name {
            "none" => Cheat::None,
            "wrong-output" => Cheat::WrongOutput,
            "wrong-root" => Cheat::WrongRoot { at },
            "stage1-lie" => Cheat::Stage1Lie { at },
            "stage2-lie" => Cheat::Stage2Lie { at },
            "wrong-intermediate" => Cheat::WrongIntermediate { at },
            "equivocate" => Cheat::Equivocate { at },
            "silent" => Cheat::Silent { after },
            "invalid-proof" => Cheat::InvalidProof,
            "false-challenge" => Cheat::FalseChallenge { at },
            "silent-challenger" => Cheat::SilentChallenger { after },
            _ => return None,
        })
    }
}

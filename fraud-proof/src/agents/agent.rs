//! A party playing one strategy over its [`Knowledge`].

use super::adversary::Cheat;
use super::honest::{fail, AgentError, Knowledge};
use crate::build::output_proof;
use crate::core::{Game, ModelCommitment, Move, OutputProof, Party, Phase};
use opml_runtime::hash::tagged;
use opml_runtime::merkle::MerkleTree;
use opml_runtime::{Hash, StateFields};

/// Tag of the made-up roots adversaries post.
const FAKE_TAG: &[u8; 16] = b"opml.fake.v1\0\0\0\0";

/// What a defender submits: output bytes, final state, output proof.
pub type Submission = (Vec<u8>, StateFields, OutputProof);

/// One party of a game.
#[derive(Clone, Debug)]
pub struct Agent {
    pub role: Party,
    pub cheat: Cheat,
    pub know: Knowledge,
    /// Moves made so far.
    pub moves: u32,
    /// One-step proofs posted so far.
    pub proofs_posted: u32,
    /// The (possibly false) final state this defender claimed.
    claimed: Option<StateFields>,
}

impl Agent {
    pub fn new(role: Party, cheat: Cheat, know: Knowledge) -> Self {
        Agent {
            role,
            cheat,
            know,
            moves: 0,
            proofs_posted: 0,
            claimed: None,
        }
    }

    fn fake(step: u64, salt: u32) -> Hash {
        tagged(FAKE_TAG, &[&step.to_le_bytes(), &salt.to_le_bytes()])
    }

    /// Defender: the submission, false for lying strategies.
    pub fn submit(&mut self, model: &ModelCommitment) -> Result<Submission, AgentError> {
        let mut memory = self.know.final_memory.clone();
        let out_chunk = |addr: u64| {
            model.outputs.iter().any(|r| {
                let c = |a: u64| a >> model.chunk_log2;
                c(addr) >= c(u64::from(r.offset)) && c(addr) <= c(r.end().saturating_sub(1))
            })
        };
        match self.cheat {
            Cheat::None | Cheat::FalseChallenge { .. } | Cheat::SilentChallenger { .. } => {}
            Cheat::WrongIntermediate { .. } => {
                let last = memory.len() as u64 - 1;
                let addr = if out_chunk(last) { 0 } else { last };
                if out_chunk(addr) {
                    return Err(AgentError("no memory outside the output chunks".into()));
                }
                memory[addr as usize] ^= 0x5a;
            }
            _ => {
                let first = model.outputs[0].offset as usize;
                memory[first] = memory[first].wrapping_add(1);
            }
        }
        let honest = self.know.final_state();
        let state = if memory == self.know.final_memory {
            honest
        } else {
            let tree =
                MerkleTree::new(model.tree_depth, 1 << model.chunk_log2, &memory).map_err(fail)?;
            StateFields {
                memory_root: tree.root(),
                ..honest
            }
        };
        let (out, proof) = output_proof(model, &memory).map_err(fail)?;
        self.claimed = Some(state);
        Ok((out, state, proof))
    }

    /// The root this party asserts (defender) or believes (challenger) at
    /// `step`, in round `round`.
    pub fn view(&mut self, step: u64, round: u32) -> Result<Hash, AgentError> {
        let n = self.know.steps();
        if step == n {
            if let Some(c) = self.claimed {
                return Ok(c.hash());
            }
        }
        let boundary = self.know.is_boundary(step);
        let lie = match self.cheat {
            Cheat::None | Cheat::WrongOutput | Cheat::Silent { .. } | Cheat::InvalidProof => false,
            Cheat::WrongRoot { at } | Cheat::WrongIntermediate { at } => step >= at,
            Cheat::Stage1Lie { at } => boundary && step >= at,
            Cheat::Stage2Lie { at } => !boundary && step >= at,
            Cheat::Equivocate { at } => step >= at && round % 2 == 1,
            Cheat::FalseChallenge { at } => step >= at.max(1),
            Cheat::SilentChallenger { .. } => step >= 1,
        };
        if lie {
            Ok(Self::fake(step, round))
        } else {
            self.know.root(step)
        }
    }

    /// Challenger: whether it disputes `final_root`.
    pub fn disputes(&mut self, final_root: &Hash) -> Result<bool, AgentError> {
        Ok(self.view(self.know.steps(), 0)? != *final_root)
    }

    fn silent(&self) -> bool {
        match self.cheat {
            Cheat::Silent { after } | Cheat::SilentChallenger { after } => self.moves >= after,
            _ => false,
        }
    }

    /// The next move when it is this party's turn (`None`: it stays silent).
    pub fn act(&mut self, game: &Game) -> Result<Option<Move>, AgentError> {
        if game.to_move() != Some(self.role) || self.silent() {
            return Ok(None);
        }
        let mv = match &game.phase {
            Phase::AwaitingDissection => {
                let d = game
                    .dissection(&self.know.node_ends)
                    .map_err(|e| AgentError(format!("{e:?}")))?;
                let roots = d
                    .points()
                    .iter()
                    .map(|&p| self.view(p, game.rounds))
                    .collect::<Result<Vec<_>, _>>()?;
                Move::Dissect(
                    roots
                        .try_into()
                        .map_err(|_| AgentError("too many roots".into()))?,
                )
            }
            Phase::AwaitingPick { points, roots } => {
                let mut pick = points.len();
                for (i, (&p, r)) in points.iter().zip(roots.iter()).enumerate() {
                    if self.view(p, 0)? != *r {
                        pick = i;
                        break;
                    }
                }
                Move::Pick(pick as u32)
            }
            Phase::AwaitingOneStep => {
                let proof = self.know.prove(game.lo)?;
                let bytes = match (self.cheat, self.proofs_posted) {
                    (Cheat::InvalidProof, 0) => {
                        let mut p = proof;
                        p.chunks[0].data[0] ^= 0xff;
                        p.to_bytes()
                    }
                    (Cheat::InvalidProof, 1) => {
                        // A valid proof, but of another step (wrong pre-state).
                        let other = if game.lo + 1 < self.know.steps() {
                            game.lo + 1
                        } else {
                            game.lo.saturating_sub(1)
                        };
                        self.know.prove(other)?.to_bytes()
                    }
                    (Cheat::InvalidProof, _) => return Ok(None),
                    _ => proof.to_bytes(),
                };
                self.proofs_posted += 1;
                Move::OneStep(
                    bytes
                        .try_into()
                        .map_err(|_| AgentError("proof too large".into()))?,
                )
            }
            Phase::Ended(_) => return Ok(None),
        };
        self.moves += 1;
        Ok(Some(mv))
    }
}

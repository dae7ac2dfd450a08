//! Playing whole games between agents over a lowered model (std).

use crate::agents::{Agent, AgentError, Cheat, Knowledge, Timings};
use crate::build::{commitment_from_artifact, input_bytes};
use crate::core::{round_bound, Claim, EndReason, Game, ModelCommitment, Move, Party};
use opml_lowering::Artifact;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Parameters of a game.
#[derive(Clone, Copy, Debug)]
pub struct PlayConfig {
    /// Arity of the bisection.
    pub k: u32,
    /// Blocks per move.
    pub window: u64,
}

impl Default for PlayConfig {
    fn default() -> Self {
        PlayConfig { k: 2, window: 10 }
    }
}

/// Bytes of trace one side kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceBytes {
    /// Node-boundary roots.
    pub stage1: u64,
    /// Step roots of the one disputed node.
    pub stage2: u64,
}

/// Everything about one played game.
#[derive(Clone, Debug)]
pub struct GameReport {
    pub defender: Cheat,
    pub challenger: Cheat,
    /// `None` if the challenger agreed with the claim (no game).
    pub winner: Option<Party>,
    pub reason: Option<EndReason>,
    pub rounds: u32,
    /// The proven bound for this N and k.
    pub round_bound: u32,
    pub steps: u64,
    pub k: u32,
    /// The final interval (`hi = lo + 1` if it reached a one-step proof).
    pub lo: u64,
    pub hi: u64,
    /// Index and name of the node of the step from `lo`.
    pub disputed_node: Option<(usize, String)>,
    /// Bytes of the accepted one-step proof, if any.
    pub proof_bytes: Option<usize>,
    /// Moves the game refused, with why.
    pub rejected: Vec<String>,
    pub defender_trace: TraceBytes,
    pub challenger_trace: TraceBytes,
    /// What a single-stage game keeps (48 bytes per step).
    pub single_stage_bytes: u64,
    pub defender_time: Timings,
    pub challenger_time: Timings,
    /// One-step verification.
    pub verify_time: Duration,
    /// The whole game, both parties' computation included.
    pub total_time: Duration,
}

/// Why a game could not be played.
#[derive(Debug)]
pub enum PlayError {
    Agent(AgentError),
    /// The defender's submission failed the chain's checks.
    ClaimRefused(String),
    /// A strategy in the wrong role.
    WrongRole(Cheat),
}

impl std::fmt::Display for PlayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Agent(e) => write!(f, "agent failed: {e}"),
            Self::ClaimRefused(e) => write!(f, "the claim was refused: {e}"),
            Self::WrongRole(c) => write!(f, "{c:?} is not a strategy for that role"),
        }
    }
}

impl std::error::Error for PlayError {}

impl From<AgentError> for PlayError {
    fn from(e: AgentError) -> Self {
        Self::Agent(e)
    }
}

/// A defender's claim, ready for games.
pub struct Claimed {
    pub model: ModelCommitment,
    pub claim: Claim,
    /// What was submitted: the task input (commitment order), the output,
    /// the final state and the output proof.
    pub input: Vec<u8>,
    pub output: Vec<u8>,
    pub final_state: opml_runtime::StateFields,
    pub output_proof: crate::core::OutputProof,
    pub defender: Agent,
    pub setup: Duration,
}

/// The defender computes and submits its claim; the chain's checks run.
pub fn claim(
    artifact: Arc<Artifact>,
    inputs: &[Vec<u8>],
    cheat: Cheat,
) -> Result<Claimed, PlayError> {
    if cheat.role() == Some(Party::Challenger) {
        return Err(PlayError::WrongRole(cheat));
    }
    let t = Instant::now();
    let model =
        commitment_from_artifact(&artifact).map_err(|e| PlayError::ClaimRefused(e.to_string()))?;
    let input = input_bytes(&artifact, inputs);
    let mut defender = Agent::new(
        Party::Defender,
        cheat,
        Knowledge::new(artifact, inputs.to_vec())?,
    );
    let (out, state, proof) = defender.submit(&model)?;
    let claim = Claim::new(1, &model, &input, &out, &state, &proof)
        .map_err(|e| PlayError::ClaimRefused(format!("{e:?}")))?;
    Ok(Claimed {
        model,
        claim,
        input,
        output: out,
        final_state: state,
        output_proof: proof,
        defender,
        setup: t.elapsed(),
    })
}

/// Most refused moves of one party before it counts as silent.
const MAX_REFUSED: u32 = 3;

/// One game against `claimed` by a challenger playing `cheat`.
pub fn challenge(
    claimed: &Claimed,
    cheat: Cheat,
    cfg: PlayConfig,
) -> Result<GameReport, PlayError> {
    if cheat.role() == Some(Party::Defender) {
        return Err(PlayError::WrongRole(cheat));
    }
    let t = Instant::now();
    let know = &claimed.defender.know;
    let mut defender = claimed.defender.clone();
    let mut challenger = Agent::new(
        Party::Challenger,
        cheat,
        Knowledge::new(know.artifact.clone(), know.inputs.clone())?,
    );
    let ends = know.node_ends.clone();
    let code = know.artifact.wasm().to_vec();
    let n = know.steps();
    let mut report = GameReport {
        defender: defender.cheat,
        challenger: cheat,
        winner: None,
        reason: None,
        rounds: 0,
        round_bound: round_bound(n, cfg.k),
        steps: n,
        k: cfg.k,
        lo: 0,
        hi: n,
        disputed_node: None,
        proof_bytes: None,
        rejected: Vec::new(),
        defender_trace: TraceBytes::default(),
        challenger_trace: TraceBytes::default(),
        single_stage_bytes: know.single_stage_bytes(),
        defender_time: Timings::default(),
        challenger_time: Timings::default(),
        verify_time: Duration::ZERO,
        total_time: Duration::ZERO,
    };
    if challenger.disputes(&claimed.claim.final_root)? {
        let mut game = Game::new(&claimed.claim, &ends, cfg.k, cfg.window, 0)
            .map_err(|e| PlayError::ClaimRefused(format!("{e:?}")))?;
        let mut now = 0u64;
        let mut refused = [0u32; 2];
        while game.outcome().is_none() {
            now += 1;
            let who = game.to_move().expect("game not over");
            let agent = match who {
                Party::Defender => &mut defender,
                Party::Challenger => &mut challenger,
            };
            let r = &mut refused[who as usize];
            let mv = if *r >= MAX_REFUSED {
                None
            } else {
                agent.act(&game)?
            };
            let Some(mv) = mv else {
                now = game.deadline + 1;
                game.timeout(now)
                    .map_err(|e| PlayError::Agent(AgentError(format!("{e:?}"))))?;
                break;
            };
            let v = Instant::now();
            let res = game.apply(who, &mv, &ends, &code, now);
            if let Move::OneStep(b) = &mv {
                report.verify_time += v.elapsed();
                if res.is_ok() {
                    report.proof_bytes = Some(b.len());
                }
            }
            if let Err(e) = res {
                *r += 1;
                report.rejected.push(format!("{who:?}: {e:?}"));
            }
        }
        let o = game.outcome().expect("loop ends when the game does");
        report.winner = Some(o.winner);
        report.reason = Some(o.reason);
        report.rounds = game.rounds;
        (report.lo, report.hi) = (game.lo, game.hi);
        if !ends.iter().any(|&e| e > game.lo && e < game.hi) {
            let node = know.node_of_step(game.lo);
            if let Some(nb) = know.artifact.nodes.get(node) {
                report.disputed_node = Some((node, nb.name.clone()));
            }
        }
    }
    let tb = |a: &Agent| {
        let (stage1, stage2) = a.know.trace_bytes();
        TraceBytes { stage1, stage2 }
    };
    report.defender_trace = tb(&defender);
    report.challenger_trace = tb(&challenger);
    report.defender_time = defender.know.timings;
    report.challenger_time = challenger.know.timings;
    report.total_time = t.elapsed() + claimed.setup;
    Ok(report)
}

/// A whole game: the defender claims, one challenger plays.
pub fn play(
    artifact: Arc<Artifact>,
    inputs: &[Vec<u8>],
    defender: Cheat,
    challenger: Cheat,
    cfg: PlayConfig,
) -> Result<GameReport, PlayError> {
    let claimed = claim(artifact, inputs, defender)?;
    challenge(&claimed, challenger, cfg)
}

/// Several challengers against one claim, each in its own game, in parallel.
pub fn play_many(
    claimed: &Claimed,
    challengers: &[Cheat],
    cfg: PlayConfig,
) -> Vec<Result<GameReport, PlayError>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = challengers
            .iter()
            .map(|&c| s.spawn(move || challenge(claimed, c, cfg)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(PlayError::Agent(AgentError("game thread panicked".into())))
                })
            })
            .collect()
    })
}

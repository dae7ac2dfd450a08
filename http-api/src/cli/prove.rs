//! `opml prove` and `opml verify`: one-step proofs from a recorded trace.

use super::args::{ProveArgs, VerifyArgs};
use super::error::CliError;
use opml_lowering::Artifact;
use opml_runtime::proof::OneStepProof;
use opml_runtime::recorder::RecordedRun;
use opml_runtime::verifier::verify_one_step_fields;
use serde::Serialize;

/// Largest proof file `verify` reads.
pub const MAX_PROOF_FILE: usize = 16 << 20;

/// What `prove --json` and `verify --json` print.
#[derive(Debug, Serialize)]
pub struct ProofReport {
    pub step: u64,
    pub pre_root: String,
    pub post_root: String,
    pub chunks: usize,
    pub lemmas: usize,
    pub bytes: usize,
    /// The verifier's post-state root equals the trace's root of step + 1.
    pub verified: bool,
}

fn failed(e: impl std::fmt::Display) -> CliError {
    CliError::Failed(e.to_string())
}

fn hex32(s: &str) -> Result<[u8; 32], CliError> {
    let v = hex::decode(s).map_err(|e| CliError::BadInput(format!("root {s:?}: {e}")))?;
    v.try_into()
        .map_err(|_| CliError::BadInput(format!("root {s:?} is not 32 bytes")))
}

/// Proves step `step -> step + 1` of a recorded run, checks the proof with the
/// verifier against the trace, and optionally writes its SCALE bytes.
pub fn prove(args: &ProveArgs) -> Result<ProofReport, CliError> {
    let artifact = Artifact::load(&args.dir)?;
    let program = artifact.compiled()?;
    let mut run =
        RecordedRun::open(&args.trace, program).map_err(|e| CliError::BadInput(e.to_string()))?;
    let proof = run
        .prove(args.step)
        .map_err(|e| CliError::BadInput(e.to_string()))?;
    let pre = run.root_at(args.step).map_err(failed)?;
    let want = run.root_at(args.step + 1).map_err(failed)?;
    let post = verify_one_step_fields(artifact.wasm(), &pre, &proof)
        .map_err(failed)?
        .hash();
    let bytes = proof.to_bytes();
    if let Some(out) = &args.out {
        std::fs::write(out, &bytes).map_err(failed)?;
    }
    Ok(ProofReport {
        step: args.step,
        pre_root: hex::encode(pre),
        post_root: hex::encode(post),
        chunks: proof.chunks.len(),
        lemmas: proof.lemmas.len(),
        bytes: bytes.len(),
        verified: post == want,
    })
}

/// Checks a proof file against a pre-state root; prints the post-state root.
pub fn verify(args: &VerifyArgs) -> Result<ProofReport, CliError> {
    let wasm = if args.dir.is_file() {
        std::fs::read(&args.dir).map_err(|e| CliError::BadInput(e.to_string()))?
    } else {
        Artifact::load(&args.dir)?.wasm().to_vec()
    };
    let len = std::fs::metadata(&args.proof)
        .map_err(|e| CliError::BadInput(e.to_string()))?
        .len();
    if len > MAX_PROOF_FILE as u64 {
        return Err(CliError::BadInput(format!(
            "proof of {len} bytes exceeds {MAX_PROOF_FILE}"
        )));
    }
    let bytes = std::fs::read(&args.proof).map_err(|e| CliError::BadInput(e.to_string()))?;
    let proof = OneStepProof::decode_bounded(&bytes, MAX_PROOF_FILE)
        .map_err(|e| CliError::BadInput(e.to_string()))?;
    let pre = hex32(&args.pre_root)?;
    let post = verify_one_step_fields(&wasm, &pre, &proof)
        .map_err(|e| CliError::BadInput(e.to_string()))?;
    let expected = args.post_root.as_deref().map(hex32).transpose()?;
    Ok(ProofReport {
        step: proof.pre.step,
        pre_root: hex::encode(pre),
        post_root: hex::encode(post.hash()),
        chunks: proof.chunks.len(),
        lemmas: proof.lemmas.len(),
        bytes: bytes.len(),
        verified: expected.is_none_or(|e| e == post.hash()),
    })
}

/// Human-readable report.
pub fn print(r: &ProofReport) {
    println!(
        "proof       step {} -> {}: {} chunks, {} lemmas, {} bytes",
        r.step,
        r.step + 1,
        r.chunks,
        r.lemmas,
        r.bytes
    );
    println!("pre root    {}", r.pre_root);
    println!(
        "post root   {} ({})",
        r.post_root,
        if r.verified { "verified" } else { "MISMATCH" }
    );
}

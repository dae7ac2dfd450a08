//! Recording runs to disk and rebuilding states from checkpoints.

use opml_runtime::recorder::{
    checkpoint_file, record, RecordError, RecordOptions, RecordedRun, MANIFEST_FILE, TRACE_FILE,
};
use opml_runtime::trace::{HEADER_LEN, RECORD_LEN};
use opml_runtime::{verify_one_step, Program, Sandbox, Status};
use std::path::PathBuf;

fn program(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/programs/{name}.wat", env!("CARGO_MANIFEST_DIR"));
    wat::parse_file(path).unwrap()
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("opml-recorder-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn recorded(tag: &str, interval: u64) -> (Vec<u8>, PathBuf, Vec<[u8; 32]>) {
    let code = program("matmul");
    let dir = temp_dir(tag);
    let mut sb = Sandbox::new(&code).unwrap();
    let mut roots = vec![sb.state_root()];
    let opts = RecordOptions {
        checkpoint_interval: interval,
        ..Default::default()
    };
    let manifest = record(&mut sb, &dir, &opts, |s| roots.push(s.hash())).unwrap();
    assert_eq!(manifest.steps, 25);
    assert_eq!(manifest.final_state.status, Status::Halted);
    (code, dir, roots)
}

#[test]
fn record_writes_trace_checkpoints_and_manifest() {
    let (_, dir, _) = recorded("files", 4);
    let trace_len = std::fs::metadata(dir.join(TRACE_FILE)).unwrap().len();
    assert_eq!(trace_len, (HEADER_LEN + 25 * RECORD_LEN) as u64);
    for step in [0, 4, 8, 12, 16, 20, 24, 25] {
        assert!(
            dir.join(checkpoint_file(step)).exists(),
            "checkpoint {step}"
        );
    }
    assert!(!dir.join(checkpoint_file(1)).exists());
    assert!(dir.join(MANIFEST_FILE).exists());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn rebuild_reaches_every_state_and_proofs_verify() {
    let (code, dir, roots) = recorded("rebuild", 4);
    let mut run = RecordedRun::open(&dir, Program::new(&code).unwrap()).unwrap();
    for (step, root) in roots.iter().enumerate() {
        let step = step as u64;
        assert_eq!(run.root_at(step).unwrap(), *root);
        assert_eq!(
            run.rebuild(step).unwrap().state_root(),
            *root,
            "step {step}"
        );
    }
    for step in [0u64, 3, 4, 17, 24] {
        let proof = run.prove(step).unwrap();
        let post = verify_one_step(&code, &roots[step as usize], &proof).unwrap();
        assert_eq!(post, roots[step as usize + 1]);
    }
    assert!(matches!(run.prove(25), Err(RecordError::Mismatch(_))));
    assert!(matches!(run.rebuild(26), Err(RecordError::Mismatch(_))));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn cannot_rebuild_from_a_tampered_checkpoint_or_trace() {
    let (code, dir, _) = recorded("tamper", 4);
    let ckpt = dir.join(checkpoint_file(8));
    let mut bytes = std::fs::read(&ckpt).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&ckpt, &bytes).unwrap();
    let program = Program::new(&code).unwrap();
    let mut run = RecordedRun::open(&dir, program.clone()).unwrap();
    assert!(matches!(run.rebuild(9), Err(RecordError::Checkpoint(_))));
    assert!(run.rebuild(7).is_ok());

    // A wrong root in the trace is caught while replaying.
    let trace = dir.join(TRACE_FILE);
    let mut bytes = std::fs::read(&trace).unwrap();
    let at = HEADER_LEN + 5 * RECORD_LEN + 16; // root of step 6
    bytes[at] ^= 1;
    std::fs::write(&trace, &bytes).unwrap();
    let mut run = RecordedRun::open(&dir, program).unwrap();
    assert!(matches!(run.rebuild(6), Err(RecordError::Mismatch(_))));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn cannot_open_a_run_of_another_module_or_without_manifest() {
    let (_, dir, _) = recorded("other", 0);
    let other = Program::new(&program("counter")).unwrap();
    assert!(matches!(
        RecordedRun::open(&dir, other.clone()),
        Err(RecordError::Mismatch(_))
    ));
    std::fs::remove_file(dir.join(MANIFEST_FILE)).unwrap();
    assert!(matches!(
        RecordedRun::open(&dir, other),
        Err(RecordError::Io(_))
    ));
    std::fs::remove_dir_all(dir).unwrap();
}

//! What the tests that run the `opml` binary share.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The digits CNN fixture directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/digits_cnn")
}

/// Runs `opml ARGS`: exit code, stdout, stderr.
pub fn opml(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_opml"))
        .args(args)
        .output()
        .expect("run opml");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Parses stdout as JSON, or fails the test showing it.
#[allow(dead_code)]
pub fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

//! Command-line failures and their exit codes.

/// A failed command: bad input (exit 2) or a failure while working (exit 1).
#[derive(Debug)]
pub enum CliError {
    /// The user's files or arguments are wrong.
    BadInput(String),
    /// Something failed while doing valid work.
    Failed(String),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::BadInput(_) => 2,
            CliError::Failed(_) => 1,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::BadInput(e) => write!(f, "bad input: {e}"),
            CliError::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

impl From<opml_lowering::LowerError> for CliError {
    fn from(e: opml_lowering::LowerError) -> Self {
        use opml_lowering::LowerError::*;
        match e {
            // Displayed once as "bad input: ...", not twice.
            BadInput(msg) => CliError::BadInput(msg),
            Unsupported { .. } | Onnx(_) => CliError::BadInput(e.to_string()),
            InvalidProgram(_) | Codegen(_) | Io(_) => CliError::Failed(e.to_string()),
        }
    }
}

//! Lowering errors: every failure names what it is about.

/// Why a model could not be lowered or run.
#[derive(Debug)]
pub enum LowerError {
    /// An ONNX node whose op type or attributes the lowering does not cover.
    Unsupported {
        node: String,
        op: String,
        reason: String,
    },
    /// The ONNX file could not be read or analysed.
    Onnx(String),
    /// The IR program is inconsistent (a bug in the import, or a bad hand-built program).
    InvalidProgram(String),
    /// The generated module was rejected or failed (a bug in code generation).
    Codegen(String),
    /// Bad input tensors for a run.
    BadInput(String),
    /// File-system failure.
    Io(std::io::Error),
}

impl std::fmt::Display for LowerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unsupported { node, op, reason } => {
                write!(f, "node {node:?} ({op}) is not supported: {reason}")
            }
            Self::Onnx(e) => write!(f, "cannot read ONNX model: {e}"),
            Self::InvalidProgram(e) => write!(f, "invalid integer program: {e}"),
            Self::Codegen(e) => write!(f, "code generation failed: {e}"),
            Self::BadInput(e) => write!(f, "bad input: {e}"),
            Self::Io(e) => write!(f, "i/o: {e}"),
        }
    }
}

impl std::error::Error for LowerError {}

impl From<std::io::Error> for LowerError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

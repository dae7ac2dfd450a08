//! What an import did, for people and for tooling (serializable).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The summary of one import.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// ONNX op type -> number of nodes, from the file's main graph (ops
    /// outside the default domain as `domain.op`).
    pub onnx_ops: BTreeMap<String, usize>,
    /// Elements of the main graph's initializers and `Constant` tensors.
    pub parameters: u64,
    /// The integer program's nodes: (name, kind). A name joins the tract
    /// nodes folded into the node with `+`.
    pub ir_nodes: Vec<(String, String)>,
    /// Number of calibration samples used (the default set when none were
    /// given).
    pub calibration_samples: usize,
}

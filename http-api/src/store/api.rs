//! The storage trait and the records it keeps.
//!
//! Records are small (ids, reports, quantized inputs, results); the large
//! artifacts and traces live in [`super::Files`] and are named by id. A
//! server database (e.g. PostgreSQL) can replace the embedded one by
//! implementing [`Store`].

use serde::{Deserialize, Serialize};

/// A storage failure (never shown to clients in detail).
#[derive(Debug)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// A lowered model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// Hex code hash of `module.wasm` (weights are data in it): the id.
    pub id: String,
    /// The same hash, under the name the runtime gives it.
    pub code_hash: String,
    /// State root of the module before any input is written.
    pub initial_root: String,
    pub steps: u64,
    pub fuel: u64,
    pub memory_bytes: u64,
    pub wasm_bytes: u64,
    /// Input names and shapes, in order.
    pub inputs: Vec<(String, Vec<u32>)>,
    pub outputs: Vec<(String, Vec<u32>)>,
    /// The lowering report (ONNX ops, parameters, nodes).
    pub report: serde_json::Value,
    /// Seconds since the Unix epoch.
    pub created: u64,
}

/// Where a task is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Queued,
    Running,
    Done,
    Failed,
}

/// What a finished task produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// `name -> {shape, data}` (dequantized).
    pub outputs: serde_json::Value,
    pub initial_root: String,
    pub final_root: String,
    /// The machine's final status (`halted`, or a fault).
    #[serde(rename = "machine_status")]
    pub status: opml_runtime::Status,
    pub steps: u64,
    pub fuel: u64,
    /// `{node, step, fuel, root}` at the end of every node.
    pub node_roots: serde_json::Value,
}

/// A task: one model on one input, on one engine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Hash of (model id, engine, quantized inputs): the same task posted
    /// twice is the same task.
    pub id: String,
    pub model_id: String,
    /// `native` or `wasm`.
    pub engine: String,
    pub status: TaskStatus,
    /// Quantized input bytes, one entry per model input.
    pub inputs: Vec<Vec<u8>>,
    pub total_steps: u64,
    pub error: Option<String>,
    pub result: Option<TaskResult>,
    pub created: u64,
    /// The run directory holds a complete recording (wasm engine).
    pub has_trace: bool,
}

/// Records of models and tasks.
pub trait Store: Send + Sync + 'static {
    /// Inserts a model; `false` if it was already there (unchanged).
    fn insert_model(&self, m: &ModelRecord) -> Result<bool, StoreError>;
    fn model(&self, id: &str) -> Result<Option<ModelRecord>, StoreError>;
    /// Inserts a task if absent; returns the stored one (new or existing).
    fn insert_task(&self, t: &TaskRecord) -> Result<(TaskRecord, bool), StoreError>;
    /// Replaces a task record.
    fn update_task(&self, t: &TaskRecord) -> Result<(), StoreError>;
    fn task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError>;
    /// Tasks not yet done or failed (to re-queue on start).
    fn unfinished_tasks(&self) -> Result<Vec<TaskRecord>, StoreError>;
    /// `(models, tasks)` stored.
    fn counts(&self) -> Result<(u64, u64), StoreError>;
}

//! `/v1/models/{id}/tasks` and `/v1/tasks/{id}`: queue a task, watch it.

use super::error::{check_id, ApiError};
use super::inputs::parse_inputs;
use super::models::find;
use super::state::{now, Shared};
use crate::store::{TaskRecord, TaskResult, TaskStatus};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use opml_lowering::quant::quantize;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/models/{id}/tasks", post(create))
        .route("/tasks/{id}", get(show))
}

/// Where a task runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EngineParam {
    /// The native executor: node-boundary roots, no trace.
    #[default]
    Native,
    /// The metered sandbox, recording a trace with checkpoints.
    Wasm,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct TaskQuery {
    /// `native` (default) or `wasm`.
    pub engine: Option<EngineParam>,
}

/// What `GET /v1/tasks/{id}` answers.
#[derive(Debug, Serialize)]
pub struct TaskView {
    pub id: String,
    pub model_id: String,
    pub engine: String,
    pub status: TaskStatus,
    pub progress: Progress,
    pub error: Option<String>,
    pub has_trace: bool,
    #[serde(flatten)]
    pub result: Option<TaskResult>,
}

#[derive(Debug, Serialize)]
pub struct Progress {
    pub steps_done: u64,
    pub steps_total: u64,
}

/// The id of a task: a hash of everything that decides its result.
pub fn task_id(model: &str, engine: &str, inputs: &[Vec<u8>]) -> String {
    let mut h = Sha256::new();
    h.update(b"opml.task.v1\0");
    h.update(model.as_bytes());
    h.update([0]);
    h.update(engine.as_bytes());
    for i in inputs {
        h.update((i.len() as u64).to_le_bytes());
        h.update(i);
    }
    hex::encode(h.finalize())
}

/// Queues a task; answers 202 with its id at once. The same model, engine
/// and input give the same task (answered 200 with its current state).
#[utoipa::path(post, path = "/v1/models/{id}/tasks", params(("id" = String, Path, description = "Model id"), TaskQuery),
    request_body(content = Vec<u8>, description = "JSON tensors ({\"input\": {\"shape\": [...], \"data\": [...]}}), .npz or .npy bytes"),
    responses((status = 202, description = "Queued"), (status = 200, description = "Known task"),
        (status = 400, description = "Bad input"), (status = 404, description = "No such model"),
        (status = 503, description = "Queue full (Retry-After)")))]
pub async fn create(
    State(state): State<Shared>,
    Path(id): Path<String>,
    query: Result<Query<TaskQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let body = body?;
    let model = find(&state, &id).await?;
    let engine = match q.engine.unwrap_or_default() {
        EngineParam::Native => "native",
        EngineParam::Wasm => "wasm",
    };
    let s = state.clone();
    let model_id = model.id.clone();
    let total_steps = model.steps;
    let inputs = tokio::task::spawn_blocking(move || -> Result<Vec<Vec<u8>>, ApiError> {
        let values = parse_inputs(&body, &model.inputs)?;
        let artifact = s.artifact(&model_id)?;
        let p = &artifact.program;
        values
            .iter()
            .zip(&p.inputs)
            .map(|(v, t)| quantize(&p.tensors[*t], v).map_err(ApiError::from))
            .collect()
    })
    .await??;
    let task = TaskRecord {
        id: task_id(&id, engine, &inputs),
        model_id: id,
        engine: engine.into(),
        status: TaskStatus::Queued,
        inputs,
        total_steps,
        error: None,
        result: None,
        created: now(),
        has_trace: false,
    };
    if let Some(existing) = lookup(&state, &task.id).await? {
        return Ok((StatusCode::OK, Json(view(&state, existing))).into_response());
    }
    let permit = state
        .queue
        .try_reserve()
        .map_err(|_| ApiError::unavailable("the task queue is full; retry later", 5))?;
    let s = state.clone();
    let t = task.clone();
    let (stored, new) = tokio::task::spawn_blocking(move || s.store.insert_task(&t)).await??;
    if new {
        permit.send(stored.id.clone());
        tracing::info!(task = %stored.id, engine, "task queued");
        Ok((StatusCode::ACCEPTED, Json(view(&state, stored))).into_response())
    } else {
        Ok((StatusCode::OK, Json(view(&state, stored))).into_response())
    }
}

pub(crate) async fn lookup(state: &Shared, id: &str) -> Result<Option<TaskRecord>, ApiError> {
    let (s, i) = (state.clone(), id.to_string());
    Ok(tokio::task::spawn_blocking(move || s.store.task(&i)).await??)
}

pub(crate) async fn find_task(state: &Shared, id: &str) -> Result<TaskRecord, ApiError> {
    check_id("task", id)?;
    lookup(state, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format_args!("task {id}")))
}

fn view(state: &Shared, t: TaskRecord) -> TaskView {
    let done = match t.status {
        TaskStatus::Done => t.result.as_ref().map_or(0, |r| r.steps),
        _ => state.progress_of(&t.id).unwrap_or(0),
    };
    TaskView {
        progress: Progress {
            steps_done: done,
            steps_total: t.total_steps,
        },
        id: t.id,
        model_id: t.model_id,
        engine: t.engine,
        status: t.status,
        error: t.error,
        has_trace: t.has_trace,
        result: t.result,
    }
}

/// Status and progress of a task; its outputs, final root, steps, fuel and
/// node roots once done.
#[utoipa::path(get, path = "/v1/tasks/{id}", params(("id" = String, Path, description = "Task id (64 hex digits)")),
    responses((status = 200, description = "The task"), (status = 404, description = "No such task")))]
pub async fn show(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<TaskView>, ApiError> {
    let t = find_task(&state, &id).await?;
    Ok(Json(view(&state, t)))
}

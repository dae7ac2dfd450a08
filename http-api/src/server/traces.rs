//! A wasm task's recording: the trace (streamed, with `Range`), JSON slices
//! of it, one-step proofs and states.
//!
//! Native tasks have no recording: these endpoints answer them 409 (post
//! the same input with `?engine=wasm` to get one).

use super::error::{check_id, parse_step, ApiError};
use super::range::{parse_range, RangeError};
use super::state::Shared;
use super::tasks::find_task;
use crate::store::{TaskRecord, TaskStatus};
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use opml_runtime::recorder::{RecordedRun, TRACE_FILE};
use opml_runtime::trace::{TraceReader, TraceRecord};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Most records in one JSON slice.
pub const MAX_SLICE: u64 = 10_000;

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/tasks/{id}/trace", get(trace))
        .route("/tasks/{id}/proof/{step}", get(proof))
        .route("/tasks/{id}/state/{step}", get(state_at))
}

/// A task that has a complete recording.
async fn recorded(state: &Shared, id: &str) -> Result<TaskRecord, ApiError> {
    check_id("task", id)?;
    let t = find_task(state, id).await?;
    if t.engine != "wasm" {
        return Err(ApiError::conflict(
            "native tasks have no trace: post the input with ?engine=wasm",
        ));
    }
    if t.status != TaskStatus::Done || !t.has_trace {
        return Err(ApiError::conflict(format!(
            "the task is {:?}: its trace is not complete",
            t.status
        )));
    }
    Ok(t)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SliceQuery {
    /// First step of a JSON slice (1-based).
    pub from: Option<u64>,
    /// Last step of a JSON slice (inclusive).
    pub to: Option<u64>,
}

/// The binary trace (80-byte header, 48 bytes per step), streamed; a single
/// `Range: bytes=...` gives 206 (416 if unsatisfiable or malformed). With
/// `?from=A&to=B`, the records of steps A..=B as JSON.
#[utoipa::path(get, path = "/v1/tasks/{id}/trace", params(("id" = String, Path, description = "Task id"), SliceQuery),
    responses((status = 200, description = "trace.bin, or a JSON slice"), (status = 206, description = "Part of trace.bin"),
        (status = 409, description = "No trace (native task, or not done)"), (status = 416, description = "Bad range")))]
pub async fn trace(
    State(state): State<Shared>,
    Path(id): Path<String>,
    query: Result<Query<SliceQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    recorded(&state, &id).await?;
    let path = state.files.run_dir(&id).join(TRACE_FILE);
    if q.from.is_some() || q.to.is_some() {
        return slice(path, q).await;
    }
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(ApiError::internal)?;
    let len = file.metadata().await.map_err(ApiError::internal)?.len();
    let range = headers.get(header::RANGE).map(|v| v.to_str().unwrap_or(""));
    let (status, first, last) = match range.map(|r| parse_range(r, len)) {
        None => (StatusCode::OK, 0, len.saturating_sub(1)),
        Some(Ok((a, b))) => (StatusCode::PARTIAL_CONTENT, a, b),
        Some(Err(e)) => {
            let msg = match e {
                RangeError::Malformed => "Range must be one range: bytes=A-B, bytes=A- or bytes=-N",
                RangeError::Unsatisfiable => "Range starts past the end of the trace",
            };
            return Err(
                ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, "bad_range", msg)
                    .with_header(header::CONTENT_RANGE, format!("bytes */{len}")),
            );
        }
    };
    let count = if len == 0 { 0 } else { last - first + 1 };
    file.seek(std::io::SeekFrom::Start(first))
        .await
        .map_err(ApiError::internal)?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file.take(count)));
    let mut r = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, count);
    if status == StatusCode::PARTIAL_CONTENT {
        r = r.header(header::CONTENT_RANGE, format!("bytes {first}-{last}/{len}"));
    }
    r.body(body).map_err(ApiError::internal)
}

async fn slice(path: std::path::PathBuf, q: SliceQuery) -> Result<Response, ApiError> {
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path).map_err(ApiError::internal)?;
        let mut reader =
            TraceReader::open(std::io::BufReader::new(file)).map_err(ApiError::internal)?;
        let len = reader.len();
        let from = q.from.unwrap_or(1);
        let to = q.to.unwrap_or(len).min(len);
        if from == 0 || from > to || to - from >= MAX_SLICE {
            return Err(ApiError::bad_request(
                "bad_slice",
                format!("need 1 <= from <= to <= {len}, at most {MAX_SLICE} steps"),
            ));
        }
        let records: Vec<TraceRecord> = reader
            .records(from, to)
            .map_err(|e| ApiError::bad_request("bad_slice", e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(ApiError::internal)?;
        Ok(Json(serde_json::json!({
            "header": reader.header(),
            "steps": len,
            "from": from,
            "to": to,
            "records": records,
        }))
        .into_response())
    })
    .await?
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

fn open_run(state: &Shared, t: &TaskRecord) -> Result<RecordedRun, ApiError> {
    let artifact = state.artifact(&t.model_id)?;
    RecordedRun::open(&state.files.run_dir(&t.id), artifact.compiled()?).map_err(ApiError::internal)
}

fn step_in(step: u64, steps: u64) -> Result<(), ApiError> {
    if step > steps {
        return Err(ApiError::not_found(format_args!(
            "step {step} (the run has {steps} steps)"
        )));
    }
    Ok(())
}

/// The one-step proof of step `step -> step + 1`: SCALE bytes, or JSON with
/// `Accept: application/json`.
#[utoipa::path(get, path = "/v1/tasks/{id}/proof/{step}",
    params(("id" = String, Path, description = "Task id"), ("step" = u64, Path, description = "Pre-state step")),
    responses((status = 200, description = "The proof (SCALE bytes or JSON)"), (status = 404, description = "No such step"),
        (status = 409, description = "No trace")))]
pub async fn proof(
    State(state): State<Shared>,
    Path((id, step)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let step = parse_step(&step)?;
    let t = recorded(&state, &id).await?;
    let s = state.clone();
    let json = wants_json(&headers);
    tokio::task::spawn_blocking(move || {
        let mut run = open_run(&s, &t)?;
        let steps = run.manifest().steps;
        if step >= steps {
            return Err(ApiError::not_found(format_args!(
                "a step after step {step} (the run has {steps} steps)"
            )));
        }
        let proof = run.prove(step).map_err(ApiError::internal)?;
        let bytes = proof.to_bytes();
        if !json {
            return Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response());
        }
        let pre = run.root_at(step).map_err(ApiError::internal)?;
        let post = run.root_at(step + 1).map_err(ApiError::internal)?;
        Ok(Json(serde_json::json!({
            "step": step,
            "pre_root": hex::encode(pre),
            "post_root": hex::encode(post),
            "pre": proof.pre,
            "chunks": proof.chunks.iter().map(|c| serde_json::json!({"index": c.index, "data": hex::encode(&c.data)})).collect::<Vec<_>>(),
            "lemmas": proof.lemmas.iter().map(hex::encode).collect::<Vec<_>>(),
            "scale": hex::encode(&bytes),
        }))
        .into_response())
    })
    .await?
}

/// The state after `step` steps: its root and every committed field.
#[utoipa::path(get, path = "/v1/tasks/{id}/state/{step}",
    params(("id" = String, Path, description = "Task id"), ("step" = u64, Path, description = "Step")),
    responses((status = 200, description = "State root and fields"), (status = 404, description = "No such step"),
        (status = 409, description = "No trace")))]
pub async fn state_at(
    State(state): State<Shared>,
    Path((id, step)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let step = parse_step(&step)?;
    let t = recorded(&state, &id).await?;
    let s = state.clone();
    tokio::task::spawn_blocking(move || {
        let mut run = open_run(&s, &t)?;
        let steps = run.manifest().steps;
        step_in(step, steps)?;
        let fields = run.rebuild(step).map_err(ApiError::internal)?.state();
        Ok(Json(serde_json::json!({
            "step": step,
            "root": hex::encode(fields.hash()),
            "fields": fields,
        })))
    })
    .await?
}

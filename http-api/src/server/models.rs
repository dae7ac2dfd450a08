//! `/v1/models`: upload (lowering), records and artifact files.

use super::error::{check_id, ApiError};
use super::inputs::parse_calibration;
use super::state::{now, Shared};
use crate::store::ModelRecord;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use opml_lowering::codegen::CodegenOptions;
use opml_lowering::import::{import, ImportOptions};
use opml_lowering::Artifact;
use opml_runtime::Sandbox;
use serde::Deserialize;
use std::io::Write;

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/models", post(create))
        .route("/models/{id}", get(show))
        .route("/models/{id}/module.wasm", get(module_wasm))
        .route("/models/{id}/meta.json", get(meta_json))
}

/// Options of an upload.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct LowerQuery {
    /// Input shapes, comma-separated: `input=1x1x8x8,other=1x3`.
    pub input_shape: Option<String>,
}

fn parse_shapes(s: &str) -> Result<Vec<(String, Vec<usize>)>, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "bad_query",
            format!("input_shape {s:?}: expected NAME=1x3x32x32[,NAME=...]"),
        )
    };
    s.split(',')
        .map(|one| {
            let (name, dims) = one.split_once('=').ok_or_else(bad)?;
            let dims = dims
                .split('x')
                .map(|d| {
                    d.trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|d| *d > 0 && *d <= 1 << 20)
                        .ok_or_else(bad)
                })
                .collect::<Result<Vec<_>, _>>()?;
            if dims.len() > 8 {
                return Err(bad());
            }
            Ok((name.to_string(), dims))
        })
        .collect()
}

/// Lowers an ONNX model and stores it; its id is the code hash of the
/// generated module, so posting the same model again is idempotent (200
/// instead of 201). The body is the raw ONNX bytes, or `multipart/form-data`
/// with the parts `model` (the ONNX bytes), optionally `input_shape` (as the
/// query parameter), `calibration` (`.npz` or `.npy` bytes, first axis =
/// samples) and `calibration_array` (the array of the `.npz` to use).
#[utoipa::path(post, path = "/v1/models", params(LowerQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "ONNX model bytes (or multipart/form-data: model, input_shape, calibration, calibration_array)"),
    responses((status = 201, description = "Lowered and stored"), (status = 200, description = "Already stored"),
        (status = 400, description = "Not a valid ONNX model"), (status = 413, description = "Body too large"),
        (status = 422, description = "Unsupported model")))]
pub async fn create(
    State(state): State<Shared>,
    query: Result<Query<LowerQuery>, QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let mut upload = Upload {
        input_shape: q.input_shape,
        ..Upload::default()
    };
    if multipart {
        let mut form = Multipart::from_request(req, &state)
            .await
            .map_err(|e| ApiError::bad_request("bad_body", e.body_text()))?;
        while let Some(field) = form.next_field().await.map_err(multipart_error)? {
            let name = field.name().unwrap_or("").to_string();
            let bytes = field.bytes().await.map_err(multipart_error)?;
            let text = || {
                String::from_utf8(bytes.to_vec()).map_err(|_| {
                    ApiError::bad_request("bad_body", format!("part {name:?} must be text"))
                })
            };
            match name.as_str() {
                "model" => upload.model = bytes,
                "input_shape" => upload.input_shape = Some(text()?),
                "calibration" => upload.calibration = Some(bytes),
                "calibration_array" => upload.calibration_array = Some(text()?),
                other => {
                    return Err(ApiError::bad_request(
                        "bad_body",
                        format!("unknown part {other:?}"),
                    ))
                }
            }
        }
    } else {
        upload.model = Bytes::from_request(req, &state).await?;
    }
    if upload.model.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_model",
            "empty model: send the ONNX bytes",
        ));
    }
    let s = state.clone();
    let (record, new) = tokio::task::spawn_blocking(move || lower_and_store(&s, upload)).await??;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(record)).into_response())
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(e.status(), "body_too_large", "request body is too large")
    } else {
        ApiError::bad_request("bad_body", e.body_text())
    }
}

/// What an upload carries.
#[derive(Default)]
struct Upload {
    model: Bytes,
    input_shape: Option<String>,
    calibration: Option<Bytes>,
    calibration_array: Option<String>,
}

fn lower_and_store(state: &Shared, upload: Upload) -> Result<(ModelRecord, bool), ApiError> {
    let input_shapes = upload
        .input_shape
        .as_deref()
        .map(parse_shapes)
        .transpose()?
        .unwrap_or_default();
    let calibration = upload
        .calibration
        .as_deref()
        .map(|b| parse_calibration(b, upload.calibration_array.as_deref()))
        .transpose()?;
    let onnx = &upload.model[..];
    let mut file = tempfile::Builder::new()
        .suffix(".onnx")
        .tempfile_in(state.files.tmp())
        .map_err(ApiError::internal)?;
    file.write_all(onnx).map_err(ApiError::internal)?;
    let imported = import(
        file.path(),
        &ImportOptions {
            input_shapes,
            calibration,
        },
    )?;
    let artifact = Artifact::build(imported.program.clone(), CodegenOptions::default())?;
    let meta = artifact.meta();
    let id = meta.code_hash.clone();
    let _saving = state.save_lock.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(existing) = state.store.model(&id)? {
        return Ok((existing, false));
    }
    // Files first, then the record: a record always names complete files.
    artifact
        .save(&state.files.model_dir(&id))
        .map_err(ApiError::internal)?;
    let initial_root = Sandbox::from_program(artifact.compiled()?)
        .map_err(ApiError::internal)?
        .state_root();
    let p = &artifact.program;
    let spec = |ids: &[usize]| -> Vec<(String, Vec<u32>)> {
        ids.iter()
            .map(|t| (p.tensors[*t].name.clone(), p.tensors[*t].shape.clone()))
            .collect()
    };
    let record = ModelRecord {
        code_hash: id.clone(),
        id,
        initial_root: hex::encode(initial_root),
        steps: meta.steps,
        fuel: meta.fuel,
        memory_bytes: u64::from(meta.memory_pages) * 65536,
        wasm_bytes: artifact.wasm().len() as u64,
        inputs: spec(&p.inputs),
        outputs: spec(&p.outputs),
        report: serde_json::json!({
            "import": imported.report,
            "nodes": artifact.nodes,
        }),
        created: now(),
    };
    let new = state.store.insert_model(&record)?;
    if new {
        state
            .metrics
            .models_lowered
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(model = %record.id, steps = record.steps, "model lowered");
    }
    Ok((record, new))
}

pub(crate) async fn find(state: &Shared, id: &str) -> Result<ModelRecord, ApiError> {
    check_id("model", id)?;
    let (s, i) = (state.clone(), id.to_string());
    tokio::task::spawn_blocking(move || s.store.model(&i))
        .await??
        .ok_or_else(|| ApiError::not_found(format_args!("model {id}")))
}

/// The stored model: id, code hash, initial root, steps, fuel, the report.
#[utoipa::path(get, path = "/v1/models/{id}", params(("id" = String, Path, description = "Model id (64 hex digits)")),
    responses((status = 200, description = "The model"), (status = 404, description = "No such model")))]
pub async fn show(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<ModelRecord>, ApiError> {
    Ok(Json(find(&state, &id).await?))
}

async fn file(
    state: &Shared,
    id: &str,
    name: &str,
    mime: &'static str,
) -> Result<Response, ApiError> {
    find(state, id).await?;
    let bytes = tokio::fs::read(state.files.model_dir(id).join(name))
        .await
        .map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, mime)], bytes).into_response())
}

/// The generated module.
#[utoipa::path(get, path = "/v1/models/{id}/module.wasm", params(("id" = String, Path, description = "Model id")),
    responses((status = 200, description = "module.wasm", content_type = "application/wasm"), (status = 404, description = "No such model")))]
pub async fn module_wasm(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    file(&state, &id, "module.wasm", "application/wasm").await
}

/// The artifact's metadata (program, node boundaries, options).
#[utoipa::path(get, path = "/v1/models/{id}/meta.json", params(("id" = String, Path, description = "Model id")),
    responses((status = 200, description = "meta.json", content_type = "application/json"), (status = 404, description = "No such model")))]
pub async fn meta_json(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    file(&state, &id, "meta.json", "application/json").await
}

//! `GET /v1/openapi.json`, generated from the handlers' annotations.

use super::state::Shared;
use super::{health, metrics, models, tasks, traces};
use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "opml",
        description = "Verifiable ML inference: lower ONNX models, run tasks, download traces and one-step proofs."
    ),
    paths(
        health::health,
        metrics::metrics,
        models::create,
        models::show,
        models::module_wasm,
        models::meta_json,
        tasks::create,
        tasks::show,
        traces::trace,
        traces::proof,
        traces::state_at,
        openapi,
    )
)]
pub struct ApiDoc;

pub fn router() -> Router<Shared> {
    Router::new().route("/openapi.json", get(openapi))
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

//! `GET /v1/health`.

use super::state::Shared;
use axum::routing::get;
use axum::{Json, Router};

pub fn router() -> Router<Shared> {
    Router::new().route("/health", get(health))
}

/// Liveness: answers while the server accepts requests.
#[utoipa::path(get, path = "/v1/health", responses((status = 200, description = "The server is up")))]
pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

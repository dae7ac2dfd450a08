//! `GET /v1/metrics`: counters in the Prometheus text format.

use super::error::ApiError;
use super::state::Shared;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters of the service.
#[derive(Default)]
pub struct Metrics {
    /// Responses by status class 1xx..5xx (index 0..4).
    pub responses: [AtomicU64; 5],
    pub in_flight: AtomicU64,
    pub models_lowered: AtomicU64,
    pub tasks_done: AtomicU64,
    pub tasks_failed: AtomicU64,
    pub steps_executed: AtomicU64,
}

/// Middleware counting requests and responses.
pub async fn track(State(state): State<Shared>, req: Request, next: Next) -> Response {
    state.metrics.in_flight.fetch_add(1, Relaxed);
    let r = next.run(req).await;
    state.metrics.in_flight.fetch_sub(1, Relaxed);
    let class = (r.status().as_u16() / 100).clamp(1, 5) as usize - 1;
    state.metrics.responses[class].fetch_add(1, Relaxed);
    r
}

pub fn router() -> Router<Shared> {
    Router::new().route("/metrics", get(metrics))
}

/// Prometheus text exposition format.
#[utoipa::path(get, path = "/v1/metrics", responses((status = 200, description = "Prometheus text", content_type = "text/plain")))]
pub async fn metrics(State(state): State<Shared>) -> Result<Response, ApiError> {
    let m = &state.metrics;
    let s = state.clone();
    let (models, tasks) = tokio::task::spawn_blocking(move || s.store.counts()).await??;
    let queued = state
        .config
        .queue_depth
        .saturating_sub(state.queue.capacity());
    let mut out = String::new();
    let mut put = |name: &str, kind: &str, help: &str, lines: &[(String, u64)]| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, v) in lines {
            out.push_str(&format!("{name}{labels} {v}\n"));
        }
    };
    let responses: Vec<(String, u64)> = (0..5)
        .map(|i| {
            (
                format!("{{class=\"{}xx\"}}", i + 1),
                m.responses[i].load(Relaxed),
            )
        })
        .collect();
    put(
        "opml_http_responses_total",
        "counter",
        "HTTP responses by status class.",
        &responses,
    );
    put(
        "opml_http_requests_in_flight",
        "gauge",
        "Requests being handled.",
        &[(String::new(), m.in_flight.load(Relaxed))],
    );
    put(
        "opml_models_lowered_total",
        "counter",
        "Models lowered by this process.",
        &[(String::new(), m.models_lowered.load(Relaxed))],
    );
    put(
        "opml_tasks_total",
        "counter",
        "Tasks finished by this process.",
        &[
            ("{outcome=\"done\"}".into(), m.tasks_done.load(Relaxed)),
            ("{outcome=\"failed\"}".into(), m.tasks_failed.load(Relaxed)),
        ],
    );
    put(
        "opml_steps_executed_total",
        "counter",
        "Sandbox steps executed by wasm tasks.",
        &[(String::new(), m.steps_executed.load(Relaxed))],
    );
    put(
        "opml_task_queue_length",
        "gauge",
        "Tasks waiting for a worker.",
        &[(String::new(), queued as u64)],
    );
    put(
        "opml_models_stored",
        "gauge",
        "Models in the store.",
        &[(String::new(), models)],
    );
    put(
        "opml_tasks_stored",
        "gauge",
        "Tasks in the store.",
        &[(String::new(), tasks)],
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

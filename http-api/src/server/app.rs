//! The router: every resource under `/v1`, with limits, auth, metrics and
//! request logs around it.

use super::error::ApiError;
use super::state::Shared;
use super::{health, limits, metrics, models, openapi, tasks, traces};
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::Router;
use tower::ServiceBuilder;
use tower_http::trace::TraceLayer;

async fn no_route() -> ApiError {
    ApiError::not_found("route")
}

async fn no_method() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

/// The whole service.
pub fn app(state: Shared) -> Router {
    let c = &state.config;
    let v1 = Router::new()
        .merge(health::router())
        .merge(metrics::router())
        .merge(openapi::router())
        .merge(models::router())
        .merge(tasks::router())
        .merge(traces::router());
    Router::new()
        .nest("/v1", v1)
        .fallback(no_route)
        .method_not_allowed_fallback(no_method)
        .layer(DefaultBodyLimit::max(c.body_limit))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(limits::handle_overload))
                .load_shed()
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                    c.max_in_flight,
                ))
                .timeout(c.timeout),
        )
        .layer(from_fn_with_state(
            state.clone(),
            limits::check_content_length,
        ))
        .layer(from_fn_with_state(state.clone(), limits::require_token))
        .layer(from_fn_with_state(state.clone(), metrics::track))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

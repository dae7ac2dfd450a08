//! Limits and access control: bearer token on write endpoints, a declared
//! body size checked before any byte is read, and the answers to tower's
//! load shedding and timeouts.

use super::error::ApiError;
use super::state::Shared;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::BoxError;

/// Requires `Authorization: Bearer <token>` on every write (non-GET)
/// request when a token is configured.
pub async fn require_token(State(state): State<Shared>, req: Request, next: Next) -> Response {
    if let Some(token) = &state.config.token {
        let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        if write {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
                return ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "this endpoint needs a bearer token",
                )
                .with_header(header::WWW_AUTHENTICATE, "Bearer".into())
                .into_response();
            }
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Answers 413 at once when the declared `Content-Length` exceeds the limit
/// (the body is not read). Bodies without a length are cut by axum's
/// `DefaultBodyLimit` as they stream in.
pub async fn check_content_length(
    State(state): State<Shared>,
    req: Request,
    next: Next,
) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.parse::<u64>());
    match declared {
        Some(Ok(n)) if n > state.config.body_limit as u64 => {
            ApiError::too_large(state.config.body_limit).into_response()
        }
        Some(Err(_)) => {
            ApiError::bad_request("bad_header", "Content-Length is not a number").into_response()
        }
        _ => next.run(req).await,
    }
}

/// Turns tower's overload and timeout errors into JSON answers.
pub async fn handle_overload(e: BoxError) -> ApiError {
    if e.is::<tower::load_shed::error::Overloaded>() {
        ApiError::unavailable("too many requests in flight; retry later", 1)
    } else if e.is::<tower::timeout::error::Elapsed>() {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            "the request took longer than the server allows",
        )
    } else {
        ApiError::internal(e)
    }
}

//! The manager's rate limit, applied once per request, and the
//! `X-RateLimit-*` headers that report it.

use axum::{
    http::{HeaderMap, HeaderValue},
    response::{IntoResponse, Response},
};

use crate::{domain::ManagerId, error::AppError, http::AppState, rate_limit::Decision};

/// Counts the request against `manager` (if it names one): the decision for
/// the headers, and the 429 when the manager's window is full.
pub async fn check(state: &AppState, manager: Option<&ManagerId>) -> (Option<Decision>, Option<Response>) {
    let Some(manager) = manager else {
        return (None, None);
    };
    let decision = state.limiter.check(manager).await;
    let refused = (!decision.allowed).then(|| {
        AppError::rate_limited(
            decision.limit,
            state.settings.rate_limit_window_secs,
            decision.reset_secs,
        )
        .into_response()
    });
    (Some(decision), refused)
}

/// Adds `X-RateLimit-Limit`, `-Remaining` and `-Reset`.
pub fn set_headers(headers: &mut HeaderMap, decision: &Decision) {
    headers.insert("x-ratelimit-limit", HeaderValue::from(decision.limit));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(decision.remaining));
    headers.insert("x-ratelimit-reset", HeaderValue::from(decision.reset_secs));
}

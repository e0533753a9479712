//! The manager's rate limit, applied once per request, and the
//! `X-RateLimit-*` headers that report it.

use axum::{
    http::{HeaderMap, HeaderValue},
    response::{IntoResponse, Response},
};

use std::net::IpAddr;

use crate::{domain::ManagerId, error::AppError, http::AppState, rate_limit::Decision};

/// Counts the request against `manager`: the decision for the headers, and
/// the 429 when the manager's window is full.
pub async fn check(state: &AppState, manager: &ManagerId) -> (Option<Decision>, Option<Response>) {
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

/// Counts a request that names no valid manager against its client address
/// (`ANON_RATE_LIMIT_MAX` per window, in this instance): the 429 once the
/// address's window is full.
pub fn anonymous(state: &AppState, client: Option<IpAddr>) -> Option<Response> {
    let decision = state.anonymous.check(&client?);
    (!decision.allowed).then(|| {
        let mut response = AppError::rate_limited(
            decision.limit,
            state.settings.rate_limit_window_secs,
            decision.reset_secs,
        )
        .into_response();
        response
            .headers_mut()
            .insert(axum::http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    })
}

/// Adds `X-RateLimit-Limit`, `-Remaining` and `-Reset`.
pub fn set_headers(headers: &mut HeaderMap, decision: &Decision) {
    headers.insert("x-ratelimit-limit", HeaderValue::from(decision.limit));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(decision.remaining));
    headers.insert("x-ratelimit-reset", HeaderValue::from(decision.reset_secs));
}

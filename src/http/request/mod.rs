//! The pipeline every `/api/` request goes through, one concern per module:
//! [`context`] (who, what, when), [`identity`] (the bearer token, with
//! `AUTH_MODE=jwt`), [`body`] (the JSON body, read once), [`manager`] (the
//! one place that decides the manager; [`identity`] then holds it to the
//! token's), [`limit`] (that
//! manager's rate limit), the handler under the request timeout, [`write`]
//! (what follows a write attempt, whatever became of it) and [`record`]
//! (exactly one audit record).

mod body;
mod client;
mod context;
mod identity;
mod limit;
mod manager;
mod record;
pub mod size;
mod write;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderValue, Method, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde_json::Value;
use tokio::sync::oneshot;

pub use self::{
    body::JsonBody,
    context::RequestContext,
    record::AuditWritten,
    write::{SETTLE_BUDGET, written},
};
use super::{AppState, query::Query};
use crate::{db, error::AppError};

/// The middleware for `/api/` routes; any other path passes straight through.
///
/// The request runs in a task of its own, so a client that hangs up does not
/// cancel it half-way: once counted it gets its audit record, and what must
/// follow a write attempt (settling it, invalidating the cached lists) runs
/// whatever the client does. At the request timeout the handler is given up
/// and its write settled (see [`write`]).
pub async fn api_pipeline(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with("/api/") {
        if let Some(refused) = size::refusal(request.uri(), request.headers()) {
            return refused.into_response();
        }
        return next.run(request).await;
    }
    let (reply, answer) = oneshot::channel();
    tokio::spawn(serve(state, request, next, reply));
    answer
        .await
        .unwrap_or_else(|_| AppError::internal(anyhow::anyhow!("request task failed")).into_response())
}

async fn serve(state: AppState, request: Request, next: Next, reply: oneshot::Sender<Response>) {
    let (mut parts, body) = request.into_parts();
    let mut context = RequestContext::arrived(&parts, &state.settings.trusted_proxies);
    let timeout = Duration::from_secs(state.settings.request_timeout_secs);
    // A request too large to read is answered as it is, for no manager.
    let oversize = size::refusal(&parts.uri, &parts.headers);
    // Before the body: a request without a valid token is not read further.
    let identity = identity::authenticate(&state, &parts.headers);
    let parsed = if parts.method == Method::POST && oversize.is_none() && identity.admitted() {
        body::read_json(&parts.headers, body, state.settings.body_limit_bytes, timeout).await
    } else {
        Ok(Value::Null)
    };
    let query = match oversize {
        None => Query::parse(parts.uri.query()),
        Some(_) => Query::default(),
    };
    let named = manager::decide(&parts.method, &query, &parsed);
    // Without a valid token the request is anonymous (counted against and
    // audited for no manager); with one it acts for the token's manager.
    let (manager, denied) = identity::authorize(identity, named.manager);
    context.manager = manager;
    let parsed = if named.conflict {
        Err(body::BodyError::ManagerConflict)
    } else {
        parsed
    };

    let (decision, refused) = match &context.manager {
        Some(manager) => limit::check(&state, manager).await,
        None => match limit::anonymous(&state, context.client_ip()) {
            // Past its address's limit, an anonymous request costs no
            // audit record either: its cost stays bounded.
            Some(refused) => {
                crate::metrics::anonymous_refused();
                let _ = reply.send(refused);
                return;
            }
            None => (None, None),
        },
    };
    let refused = refused.or(denied).or(oversize.map(IntoResponse::into_response));
    // A place for this request's audit record, or a prompt 503 when the
    // audit log is not keeping up (the database is away).
    let slot = state.audit.reserve().await;
    let mut response = match (refused, slot.is_some()) {
        (Some(refused), _) => refused,
        (None, false) => AppError::unavailable(anyhow::anyhow!("the audit queue is full")).into_response(),
        (None, true) => {
            parts.extensions.insert(body::ParsedBody(parsed));
            if let Some(generation) = decision.and_then(|d| d.generation) {
                parts.extensions.insert(PrefetchedGeneration(generation));
            }
            parts.extensions.insert(query);
            parts.extensions.insert(context.clone());
            let abandoned = Arc::new(AtomicBool::new(false));
            let mut handler = Box::pin(db::abandonable(
                abandoned.clone(),
                next.run(Request::from_parts(parts, Body::empty())),
            ));
            match tokio::time::timeout(timeout, &mut handler).await {
                Ok(response) => write::settle(&state, &context, response).await,
                Err(_) => {
                    // Give the handler up at its deadline: the connections
                    // it holds are closed, not handed back with a statement
                    // still queued on them.
                    abandoned.store(true, Ordering::Release);
                    drop(handler);
                    write::settle(&state, &context, write::deadline_passed()).await
                }
            }
        }
    };
    finish_headers(&mut response, decision.as_ref());
    record::finish(&state, &context, &mut response, slot).await;
    let _ = reply.send(response);
}

/// The manager's cache generation as the rate limiter read it on the way in
/// (one Redis round trip for both); a list read uses it rather than asking
/// Redis again.
#[derive(Debug, Clone, Copy)]
pub struct PrefetchedGeneration(pub crate::cache::Generation);

/// The headers every `/api/` response carries besides the global ones.
fn finish_headers(response: &mut Response, decision: Option<&crate::rate_limit::Decision>) {
    let headers = response.headers_mut();
    if let Some(decision) = decision {
        limit::set_headers(headers, decision);
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

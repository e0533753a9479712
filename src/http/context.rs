//! The per-request work shared by every `/api/` route, done once, in one
//! place: read and parse the JSON body (once; handlers take the parsed value),
//! find the manager the request names, apply that manager's rate limit, and
//! leave exactly one audit record when the response is decided.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::{ConnectInfo, FromRequestParts, Request, State},
    http::{HeaderMap, HeaderValue, Method, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value;

use super::{AppState, query::Query};
use crate::{
    audit::AuditEntry,
    domain::ManagerId,
    error::{AppError, ErrorCode},
    rate_limit::Decision,
};

/// What the service knows about the request being served.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The request's `X-Request-ID`.
    pub request_id: String,
    /// The valid manager id the query or body names, if any.
    pub manager: Option<ManagerId>,
    method: Method,
    path: String,
    query: Option<String>,
    client: Option<SocketAddr>,
    occurred_at: DateTime<Utc>,
    started: Instant,
}

impl RequestContext {
    /// Milliseconds since the request arrived.
    pub fn elapsed_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    /// The audit record of this request with the given outcome. For a write,
    /// `duration_ms` is the time until the write's statement was sent; the
    /// statement adds the time it took itself.
    pub fn entry(&self, status: u16, error_code: Option<&'static str>) -> AuditEntry {
        AuditEntry {
            occurred_at: self.occurred_at,
            request_id: self.request_id.clone(),
            manager_id: self.manager.as_ref().map(|m| m.as_str().to_owned()).unwrap_or_default(),
            method: self.method.to_string(),
            path: self.path.clone(),
            query: self.query.clone(),
            status,
            error_code,
            duration_ms: self.elapsed_ms(),
            client_addr: self.client.map(|addr| addr.ip().to_string()),
            product_ids: Vec::new(),
            order_id: None,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("request context missing")))
    }
}

/// Set by a handler whose write inserted its own audit record in its
/// transaction; carries that record so it is logged, not written twice.
#[derive(Debug, Clone)]
pub struct AuditWritten(pub Box<AuditEntry>);

/// Why a request body could not be used; becomes the handler's error.
#[derive(Debug, Clone)]
enum BodyError {
    UnsupportedMediaType,
    TooLarge(usize),
    TooSlow,
    Malformed(String),
    Unreadable,
}

impl From<BodyError> for AppError {
    fn from(err: BodyError) -> Self {
        match err {
            BodyError::UnsupportedMediaType => AppError::UnsupportedMediaType,
            BodyError::TooLarge(limit) => AppError::PayloadTooLarge { limit },
            BodyError::TooSlow => AppError::RequestTimeout,
            BodyError::Malformed(why) => AppError::invalid("body", format!("is not valid JSON: {why}")),
            BodyError::Unreadable => AppError::invalid("body", "could not be read"),
        }
    }
}

/// The request's JSON body, parsed once by the middleware.
#[derive(Debug, Clone)]
struct ParsedBody(Result<Value, BodyError>);

/// Extracts the JSON body the middleware parsed (or its error).
#[derive(Debug)]
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequestParts<S> for JsonBody {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        match parts.extensions.remove::<ParsedBody>() {
            Some(ParsedBody(Ok(value))) => Ok(Self(value)),
            Some(ParsedBody(Err(err))) => Err(err.into()),
            None => Err(AppError::Internal(anyhow::anyhow!("request body was not parsed"))),
        }
    }
}

/// The middleware for `/api/` routes; any other path passes straight through.
pub async fn api_context(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with("/api/") {
        return next.run(request).await;
    }
    // In a task of its own, so a client that hangs up does not cancel the
    // request half-way: it has been counted, so it still gets its audit
    // record, and a write that committed still invalidates the cache.
    match tokio::spawn(serve_api(state, request, next)).await {
        Ok(response) => response,
        Err(err) => AppError::Internal(anyhow::anyhow!("request task failed: {err}")).into_response(),
    }
}

async fn serve_api(state: AppState, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let occurred_at = Utc::now();
    let (mut parts, body) = request.into_parts();
    let parsed = if parts.method == Method::POST {
        let patience = Duration::from_secs(state.settings.request_timeout_secs);
        read_json(&parts.headers, body, state.settings.body_limit_bytes, patience).await
    } else {
        Ok(Value::Null)
    };
    let query = Query::parse(parts.uri.query());
    let manager = manager_named(&query, &parsed);
    let context = RequestContext {
        request_id: parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        manager: manager.clone(),
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        client: parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0),
        occurred_at,
        started,
    };

    let decision = match &manager {
        Some(manager) => Some(state.limiter.check(manager).await),
        None => None,
    };
    let mut response = match &decision {
        Some(Ok(decision)) if !decision.allowed => AppError::RateLimited {
            limit: decision.limit,
            window_secs: state.settings.rate_limit_window_secs,
            retry_after_secs: decision.reset_secs,
        }
        .into_response(),
        Some(Err(err)) => AppError::Unavailable(anyhow::anyhow!("rate limiter: {err}")).into_response(),
        _ => {
            parts.extensions.insert(ParsedBody(parsed));
            parts.extensions.insert(query);
            parts.extensions.insert(context.clone());
            next.run(Request::from_parts(parts, Body::empty())).await
        }
    };
    if let Some(Ok(decision)) = &decision {
        set_rate_limit_headers(response.headers_mut(), decision);
    }

    match response.extensions_mut().remove::<AuditWritten>() {
        Some(AuditWritten(entry)) => entry.log(),
        None => {
            let code = response.extensions().get::<ErrorCode>().map(|c| c.0);
            let entry = context.entry(response.status().as_u16(), code);
            entry.log();
            state.audit.record(entry).await;
        }
    }
    response
}

fn set_rate_limit_headers(headers: &mut HeaderMap, decision: &Decision) {
    headers.insert("x-ratelimit-limit", HeaderValue::from(decision.limit));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(decision.remaining));
    headers.insert("x-ratelimit-reset", HeaderValue::from(decision.reset_secs));
}

/// The valid manager id in the query string, else in the JSON body.
fn manager_named(query: &Query, body: &Result<Value, BodyError>) -> Option<ManagerId> {
    let from_query = query.get("manager_id").map(str::to_owned);
    let from_body = || match body {
        Ok(Value::Object(fields)) => fields.get("manager_id").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    };
    from_query
        .or_else(from_body)
        .and_then(|text| ManagerId::parse(&text).ok())
}

/// True for `application/json` and `application/*+json`, any parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Reads and parses a JSON body of at most `limit` bytes that arrives within
/// `patience` (a client trickling its body does not hold a task forever).
async fn read_json(headers: &HeaderMap, body: Body, limit: usize, patience: Duration) -> Result<Value, BodyError> {
    if !is_json(headers) {
        return Err(BodyError::UnsupportedMediaType);
    }
    let bytes = match tokio::time::timeout(patience, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => return Err(BodyError::TooLarge(limit)),
        Ok(Err(_)) => return Err(BodyError::Unreadable),
        Err(_) => return Err(BodyError::TooSlow),
    };
    serde_json::from_slice(&bytes).map_err(|err| BodyError::Malformed(err.to_string()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_content_types_are_recognised() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
            is_json(&headers)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/merge-patch+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/jsonx"));
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn the_manager_comes_from_the_query_first_then_the_body() {
        let body = Ok(json!({"manager_id": "from_body"}));
        assert_eq!(
            manager_named(&Query::parse(Some("manager_id=from_query")), &body)
                .unwrap()
                .as_str(),
            "from_query"
        );
        assert_eq!(
            manager_named(&Query::parse(Some("status=in_stock")), &body)
                .unwrap()
                .as_str(),
            "from_body"
        );
        assert_eq!(
            manager_named(&Query::parse(None), &Ok(json!({"manager_id": "bad id"}))),
            None
        );
        assert_eq!(manager_named(&Query::parse(None), &Ok(json!({"manager_id": 5}))), None);
        assert_eq!(manager_named(&Query::parse(None), &Err(BodyError::Unreadable)), None);
        assert_eq!(
            manager_named(&Query::parse(Some("manager_id=%ZZ")), &Ok(Value::Null)),
            None
        );
    }
}

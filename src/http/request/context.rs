//! What the service knows about the request being served: its id, method,
//! path, query, client, arrival time and the manager it acts for.

use ipnet::IpNet;
use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, OnceLock},
    time::Instant,
};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{Method, request::Parts},
};
use chrono::{DateTime, SubsecRound, Utc};
use uuid::Uuid;

use crate::{audit::AuditEntry, domain::ManagerId, error::AppError};

/// What the service knows about the request being served.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The request's `X-Request-ID`.
    pub request_id: String,
    /// The manager the request acts for (see [`super::manager`]), if any.
    pub manager: Option<ManagerId>,
    method: Method,
    path: String,
    query: Option<String>,
    client: Option<IpAddr>,
    occurred_at: DateTime<Utc>,
    started: Instant,
    /// The write this request attempts, once its handler starts one; shared
    /// by every copy of the context, so the pipeline sees it whatever
    /// becomes of the handler.
    attempt: Arc<OnceLock<Uuid>>,
}

impl RequestContext {
    /// The most query text an audit record keeps.
    pub const MAX_QUERY_AUDITED: usize = 2048;

    /// The context of a request that has just arrived, from a peer that may
    /// be one of the `trusted` proxies.
    pub fn arrived(parts: &Parts, trusted: &[IpNet]) -> Self {
        Self {
            request_id: parts
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
            manager: None,
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(|query| {
                let mut end = query.len().min(Self::MAX_QUERY_AUDITED);
                while !query.is_char_boundary(end) {
                    end -= 1;
                }
                query[..end].to_owned()
            }),
            client: super::client::address(
                parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()),
                &parts.headers,
                trusted,
            ),
            // Microseconds, as PostgreSQL keeps it: a record's time and
            // attempt identify it (see `crate::audit::sql::fence`).
            occurred_at: Utc::now().trunc_subsecs(6),
            started: Instant::now(),
            attempt: Arc::default(),
        }
    }

    /// The client's address (through trusted proxies, the one they name).
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.client
    }

    /// Milliseconds since the request arrived.
    pub fn elapsed_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    /// The write attempt this request has started, if any.
    pub fn attempt(&self) -> Option<Uuid> {
        self.attempt.get().copied()
    }

    /// The audit record a write commits with, answered `status`. Taking it
    /// starts the request's write attempt: from here on, whatever becomes of
    /// the handler, the pipeline settles the attempt (one record, the
    /// manager's lists invalidated).
    pub fn write_entry(&self, status: u16) -> AuditEntry {
        self.attempt.get_or_init(Uuid::now_v7);
        self.entry(status, None)
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
            error_code: error_code.map(Into::into),
            duration_ms: self.elapsed_ms(),
            client_addr: self.client.map(|addr| addr.to_string()),
            product_ids: Vec::new(),
            order_id: None,
            attempt: self.attempt(),
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
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("request context missing")))
    }
}

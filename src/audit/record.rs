//! One audit record: what the service keeps of one `/api/` request.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One audit record, named as the `audit_log` columns are: a write hands it
/// to PostgreSQL as JSON (read with `jsonb_populate_record(set)`), the
/// background writer as a line of `COPY` text ([`write_batch`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When the request arrived.
    pub occurred_at: DateTime<Utc>,
    /// The request's `X-Request-ID`.
    pub request_id: String,
    /// The manager the request named, or `""` when it named no valid one.
    pub manager_id: String,
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// Response status.
    pub status: u16,
    /// Error code of an error response.
    pub error_code: Option<Cow<'static, str>>,
    /// Time from arrival to the response (for writes: to the write).
    pub duration_ms: f64,
    /// The client's address.
    pub client_addr: Option<String>,
    /// Products the request changed (filled in by the write's statement).
    pub product_ids: Vec<i64>,
    /// The order the request created (filled in by the write's statement).
    pub order_id: Option<i64>,
    /// The write attempt this request made, if it made one: the record is
    /// then unique per attempt (see [`fence`]).
    pub attempt: Option<Uuid>,
}

impl AuditEntry {
    /// Writes the record to the process log as one structured line.
    pub fn log(&self) {
        tracing::info!(
            target: "audit",
            request_id = %self.request_id,
            manager_id = %self.manager_id,
            method = %self.method,
            path = %self.path,
            query = self.query.as_deref().unwrap_or(""),
            status = self.status,
            error_code = self.error_code.as_deref().unwrap_or(""),
            duration_ms = self.duration_ms,
            client_addr = self.client_addr.as_deref().unwrap_or(""),
            product_ids = ?self.product_ids,
            order_id = self.order_id,
            "request"
        );
    }
}

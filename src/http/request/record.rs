//! Exactly one audit record per `/api/` request: a write's record is in the
//! write's own transaction (its handler says so with [`AuditWritten`]);
//! every other request's is queued for the background writer.

use axum::response::Response;

use super::context::RequestContext;
use crate::{
    audit::{AuditEntry, Slot},
    error::ErrorCode,
    http::AppState,
};

/// Set by a handler whose write inserted its own audit record in its
/// transaction; carries that record so it is logged, not written twice.
#[derive(Debug, Clone)]
pub struct AuditWritten(pub Box<AuditEntry>);

/// Leaves the request's one record. `sent` is the status the client got,
/// which differs from `response`'s when the client was answered 504 before
/// the handler finished.
pub async fn finish(
    state: &AppState,
    context: &RequestContext,
    response: &mut Response,
    sent: Option<u16>,
    slot: Option<Slot>,
) {
    match response.extensions_mut().remove::<AuditWritten>() {
        Some(AuditWritten(entry)) => {
            if let Some(status) = sent {
                tracing::warn!(request_id = %entry.request_id, status,
                    "the client was answered before this write committed; the write stands");
            }
            entry.log();
        }
        None => {
            let code = response.extensions().get::<ErrorCode>().map(|c| c.0);
            let entry = match sent {
                Some(status) => context.entry(status, Some("TIMEOUT")),
                None => context.entry(response.status().as_u16(), code),
            };
            entry.log();
            state.audit.record(slot, entry).await;
        }
    }
}

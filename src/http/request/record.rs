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

/// Set on a response whose request's record is already in the database (a
/// committed write's, or the fence that settled it); carries that record so
/// it is logged, not written twice.
#[derive(Debug, Clone)]
pub struct AuditWritten(pub Box<AuditEntry>);

/// Leaves the request's one record: the one its write committed with (or a
/// fence that stands for it), which is only logged, or a new one for the
/// queue. A write attempt's record carries its attempt, so the queue writes
/// it only if no other record of the attempt exists.
pub async fn finish(state: &AppState, context: &RequestContext, response: &mut Response, slot: Option<Slot>) {
    match response.extensions_mut().remove::<AuditWritten>() {
        Some(AuditWritten(entry)) => entry.log(),
        None => {
            let code = response.extensions().get::<ErrorCode>().map(|c| c.0);
            let entry = context.entry(response.status().as_u16(), code);
            entry.log();
            state.audit.record(slot, entry).await;
        }
    }
}

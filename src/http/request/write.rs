//! What follows a write attempt, whatever became of it. A handler starts one
//! by taking its request's write record ([`RequestContext::write_entry`]);
//! from then on the pipeline, not the handler, keeps the two promises every
//! write makes:
//!
//! - exactly one audit record: a committed write's is in its transaction
//!   (answered through [`written`], the only way from a [`Committed`] write
//!   to a response); when the service lost sight of the write (the
//!   connection broke after it was sent, or the request reached its
//!   deadline) it settles the attempt with a fence ([`settle`]);
//! - no list older than the write: the manager's cached lists are
//!   invalidated after every attempt, before the answer is sent, whether the
//!   write committed, was refused, or its outcome is unknown.

use std::time::Duration;

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};

use super::{AuditWritten, RequestContext};
use crate::{
    audit::AuditEntry,
    error::{AppError, Code, ConnectionLost},
    http::AppState,
    store::Committed,
};

/// The longest the pipeline waits for a connection to settle a write it
/// lost sight of: a client whose request reached its deadline is answered
/// about this long after it, unless the database takes the fence itself.
pub const SETTLE_BUDGET: Duration = Duration::from_secs(1);

/// The longest a fence, once sent, is waited for. Until its answer comes,
/// the service cannot tell the client what it recorded, so it waits longer
/// than for the connection; past this the connection is closed.
const FENCE_WAIT: Duration = Duration::from_secs(5);

/// The answer to a committed write: `status` with the body `render` makes
/// of what the write returned. Its audit record is already in the database,
/// with the write.
pub fn written<T, B: IntoResponse>(
    committed: Committed<T>,
    status: StatusCode,
    context: &RequestContext,
    render: impl FnOnce(T) -> B,
) -> Response {
    let (value, mut record) = committed.into_parts();
    // The copy kept for the process log gets the full duration.
    record.duration_ms = context.elapsed_ms();
    let mut response = (status, render(value)).into_response();
    response.extensions_mut().insert(AuditWritten(record));
    response
}

/// The stand-in for the answer of a handler given up at its deadline.
pub fn deadline_passed() -> Response {
    let mut response = AppError::timeout().into_response();
    response.extensions_mut().insert(Abandoned);
    response
}

/// Marks the response of a handler given up at its deadline.
#[derive(Debug, Clone, Copy)]
struct Abandoned;

/// Settles the request's write attempt, if it made one: a write the service
/// lost sight of is fenced (see [`crate::audit::sql::fence`]), and the manager's
/// lists are invalidated. Returns the answer to send.
pub async fn settle(state: &AppState, context: &RequestContext, response: Response) -> Response {
    if context.attempt().is_none() {
        return response;
    }
    let lost =
        response.extensions().get::<Abandoned>().is_some() || response.extensions().get::<ConnectionLost>().is_some();
    let response = if lost {
        fence(state, context, response).await
    } else {
        response
    };
    if let Some(manager) = &context.manager {
        super::super::invalidate(state, manager).await;
    }
    response
}

/// What stands for an attempt the service lost sight of, once it is settled.
enum Settled {
    /// The record this request wrote, now or on an earlier try whose reply
    /// was lost: nothing was applied.
    Ours,
    /// The write's own record: it committed.
    Committed,
    /// A record another settlement wrote first (a retry with the same key),
    /// with its code.
    Earlier(Option<String>),
}

/// One try at settling: the fence, and if it did not go in, what stands.
async fn settle_once(conn: &mut crate::db::Conn, record: &AuditEntry) -> Result<Settled, sqlx::Error> {
    if crate::audit::sql::fence(&mut **conn, record).await? {
        return Ok(Settled::Ours);
    }
    Ok(match crate::audit::sql::standing(&mut **conn, record).await? {
        Some((status, code)) if status as u16 == record.status && code.as_deref() == record.error_code.as_deref() => {
            Settled::Ours
        }
        Some((status, _)) if (200..300).contains(&status) => Settled::Committed,
        Some((_, code)) => Settled::Earlier(code),
        None => Settled::Earlier(None),
    })
}

/// Writes the request's record before its write can commit, if it has not
/// yet: then nothing changed and `known` (504 at the deadline, 503 after a
/// lost connection) is the answer, recorded as such. If the write committed
/// first, the answer is 503 `OUTCOME_UNKNOWN`. Each try waits at most
/// [`SETTLE_BUDGET`] for a connection and, once the fence is sent,
/// [`FENCE_WAIT`] for its answer (closing the connection past it); a try
/// whose connection broke is made once more, and reads what stands, so a
/// fence whose reply was lost is recognised as this request's. If no try
/// tells, the answer is 503 `OUTCOME_UNKNOWN`, and a record saying so is
/// queued, written only if the attempt has none by then.
async fn fence(state: &AppState, context: &RequestContext, known: Response) -> Response {
    let code = known.extensions().get::<crate::error::ErrorCode>().map(|c| c.0);
    let record = context.entry(known.status().as_u16(), code);
    let mut settled = None;
    for _ in 0..2 {
        let conn = match tokio::time::timeout(SETTLE_BUDGET, state.db.acquire()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(err)) => {
                tracing::warn!(error = %err, request_id = %record.request_id, "no connection to settle a write");
                break;
            }
            Err(_) => break,
        };
        let mut conn = conn;
        match tokio::time::timeout(FENCE_WAIT, settle_once(&mut conn, &record)).await {
            Ok(Ok(found)) => {
                conn.settled();
                settled = Some(found);
                break;
            }
            Ok(Err(err)) => {
                tracing::warn!(error = %err, request_id = %record.request_id, "settling a write failed; trying again");
            }
            Err(_) => {
                conn.close();
                break;
            }
        }
    }
    let mut response = match settled {
        Some(Settled::Ours) => {
            tracing::warn!(request_id = %record.request_id, status = record.status,
                "a write the service lost sight of was settled: it did not commit");
            let mut response = known;
            response.extensions_mut().insert(AuditWritten(Box::new(record)));
            response
        }
        Some(Settled::Committed) => {
            tracing::warn!(request_id = %record.request_id,
                "a write the service lost sight of had committed; its client is told the outcome is unknown");
            logged(AppError::outcome_unknown().into_response(), record)
        }
        Some(Settled::Earlier(code)) => {
            let code = code
                .and_then(|text| Code::ALL.iter().copied().find(|c| c.as_str() == text))
                .unwrap_or(Code::OutcomeUnknown);
            logged(AppError::new(code).into_response(), record)
        }
        None => {
            tracing::warn!(request_id = %record.request_id, "could not settle a write; its record is queued");
            AppError::outcome_unknown().into_response()
        }
    };
    response.extensions_mut().remove::<ConnectionLost>();
    response
}

/// `response`, whose record already stands (written by another), with the
/// copy of it logged saying what this client got.
fn logged(mut response: Response, mut record: AuditEntry) -> Response {
    record.status = response.status().as_u16();
    record.error_code = response
        .extensions()
        .get::<crate::error::ErrorCode>()
        .map(|c| c.0.into());
    response.extensions_mut().insert(AuditWritten(Box::new(record)));
    response
}

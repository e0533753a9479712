//! `GET /api/audit`: a manager's audit trail.

use axum::{
    Json,
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use super::{
    AppState, docs,
    query::{Query, next_link},
};
use crate::{
    domain::Problems,
    error::AppError,
    store::{self, audit::AuditRecord},
};

/// A page of audit records, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditResponse {
    /// The records.
    pub records: Vec<AuditRecord>,
}

/// A manager's audit trail, newest first.
///
/// One record per request under `/api/` that named this manager, whatever
/// its outcome (this request included, once it completes). `after` is a
/// record id: the page starts with the next older record. The `Link` header
/// gives the next page when more remain.
#[utoipa::path(get, path = "/api/audit", tag = "audit",
    params(docs::ListAuditParams),
    responses(
        (status = 200, description = "The records", body = AuditResponse,
            headers(("Link" = String, description = "`<...>; rel=\"next\"` when more remain"))),
    ))]
pub async fn list_audit(State(state): State<AppState>, query: Query) -> Result<Response, AppError> {
    let mut bad = Problems::default();
    let manager = query.manager(&mut bad);
    let limit = query.limit(&mut bad);
    let after = query.optional(&mut bad, "after", |text| {
        text.parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| "must be a record id".into())
    });
    let (manager, limit, after) = bad.into_result(|| Some((manager?, limit?, after?)))?;

    let mut records = store::audit::list(&state.db, manager.as_str(), after, i64::from(limit) + 1).await?;
    let next = (records.len() > limit as usize)
        .then(|| {
            records.truncate(limit as usize);
            let last = records.last().map_or(0, |r| r.id);
            let params = [
                ("manager_id", manager.to_string()),
                ("limit", limit.to_string()),
                ("after", last.to_string()),
            ];
            next_link("/api/audit", &params)
        })
        .flatten();
    let mut response = Json(AuditResponse { records }).into_response();
    if let Some(link) = next {
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

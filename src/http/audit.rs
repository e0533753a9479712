//! `GET /api/audit`: a manager's audit trail.

use axum::{
    Json,
    extract::{RawQuery, State},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use super::{AppState, docs};
use crate::{
    domain::{ManagerId, Problems},
    error::{AppError, ErrorEnvelope},
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
        (status = 400, description = "Missing `manager_id`, bad `limit` or `after`", body = ErrorEnvelope),
        (status = 429, description = "Rate limit exceeded", body = ErrorEnvelope, example = json!(docs::example_rate_limited())),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
        (status = 500, description = "Internal error", body = ErrorEnvelope),
    ))]
pub async fn list_audit(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Response, AppError> {
    let (manager, limit, after) = parse(query.as_deref())?;
    let mut records = store::audit::list(&state.db, manager.as_str(), after, i64::from(limit) + 1).await?;
    let next = (records.len() > limit as usize).then(|| {
        records.truncate(limit as usize);
        let last = records.last().map_or(0, |r| r.id);
        let query = serde_urlencoded::to_string([
            ("manager_id", manager.to_string()),
            ("limit", limit.to_string()),
            ("after", last.to_string()),
        ])
        .unwrap_or_default();
        format!("</api/audit?{query}>; rel=\"next\"")
    });
    let mut response = Json(AuditResponse { records }).into_response();
    if let Some(link) = next.and_then(|n| HeaderValue::from_str(&n).ok()) {
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

fn parse(query: Option<&str>) -> Result<(ManagerId, u32, Option<i64>), Problems> {
    let mut bad = Problems::default();
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or_default()).unwrap_or_default();
    let param = |name: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let manager = bad.check(
        "manager_id",
        param("manager_id")
            .ok_or_else(|| "is required".to_owned())
            .and_then(ManagerId::parse),
    );
    let limit = match param("limit") {
        None => Some(100),
        Some(text) => bad.check(
            "limit",
            text.parse()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| "must be an integer from 1 to 1000".into()),
        ),
    };
    let after = match param("after") {
        None => Some(None),
        Some(text) => bad
            .check(
                "after",
                text.parse::<i64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| "must be a record id".into()),
            )
            .map(Some),
    };
    bad.into_result(|| Some((manager?, limit?, after?)))
}

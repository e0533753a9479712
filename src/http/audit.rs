//! `GET /api/audit`: a manager's audit trail.

use axum::{extract::State, response::Response};
use serde::Serialize;
use utoipa::{
    IntoParams, ToSchema,
    openapi::{
        KnownFormat, ObjectBuilder, SchemaFormat, Type,
        path::{Parameter, ParameterIn},
    },
};

use super::{
    AppState, docs,
    query::{self, Page, Query},
};
use crate::{
    audit::sql::AuditRecord,
    domain::{ManagerId, Problems},
    error::AppError,
};

/// A page of audit records, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditResponse {
    /// The records.
    pub records: Vec<AuditRecord>,
}

/// The query of `GET /api/audit`, validated.
struct ListAuditParams {
    manager: ManagerId,
    limit: u32,
    after: Option<i64>,
}

impl ListAuditParams {
    /// The smallest record id.
    const FIRST_ID: i64 = 1;

    /// Parses the query, reporting every bad parameter.
    fn parse(query: &Query) -> Result<Self, Problems> {
        let mut bad = Problems::default();
        let manager = query.manager(&mut bad);
        let limit = query.limit(&mut bad);
        let after = query.optional(&mut bad, "after", |text| {
            text.parse::<i64>()
                .ok()
                .filter(|n| *n >= Self::FIRST_ID)
                .ok_or_else(|| "must be a record id".into())
        });
        bad.into_result(|| {
            Some(Self {
                manager: manager?,
                limit: limit?,
                after: after?,
            })
        })
    }
}

/// The query of `GET /api/audit` as the OpenAPI document states what
/// [`ListAuditParams::parse`] accepts.
impl IntoParams for ListAuditParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let record_id = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(Self::FIRST_ID));
        vec![
            ManagerId::query_parameter(),
            Query::limit_parameter(),
            query::parameter(
                "after",
                "A record id: the page starts with the next older record.",
                record_id,
                None,
            ),
        ]
    }
}

docs::errors!(
    /// The errors of `GET /api/audit`.
    ListAuditErrors: Read []
);

/// A manager's audit trail, newest first.
///
/// One record per request under `/api/` that named this manager, whatever
/// its outcome (this request included, once it completes). `after` is a
/// record id: the page starts with the next older record. The `Link` header
/// gives the next page when more remain.
#[utoipa::path(get, path = "/api/audit", tag = "audit",
    params(ListAuditParams),
    responses(
        (status = 200, description = "The records", body = AuditResponse,
            headers(("Link" = String, description = "`<...>; rel=\"next\"` when more remain"))),
        ListAuditErrors,
    ))]
pub async fn list_audit(State(state): State<AppState>, query: Query) -> Result<Response, AppError> {
    let ListAuditParams { manager, limit, after } = ListAuditParams::parse(&query)?;

    let fetched =
        crate::audit::sql::list(&state.db, manager.as_str(), after, Page::<AuditRecord>::fetch(limit)).await?;
    let params = vec![("manager_id", manager.to_string()), ("limit", limit.to_string())];
    let page = Page::of(fetched, limit, "/api/audit", params, |last| last.id.to_string());
    Ok(page.respond(|records| AuditResponse { records }))
}

//! `/api/webhooks`: a manager's webhook endpoints, their secrets, their
//! deliveries log and replays.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
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
    request::{JsonBody, RequestContext, written},
};
use crate::{
    domain::{
        ManagerId, Problems, WebhookId,
        webhook::{NewWebhook, ReplayWebhook, RotateSecret},
    },
    error::{AppError, Code},
    store::{
        self,
        webhooks::{DeliveryRow, WebhookView},
    },
};

/// A manager's endpoints.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"webhooks": [{"id": "wh_001", "url": "https://erp.example.com/hooks/inventory",
    "event_types": [], "description": null, "status": "enabled", "created_at": "2026-12-04T10:00:00.123456Z"}]}))]
pub struct WebhooksResponse {
    /// The endpoints, oldest first, without secrets.
    pub webhooks: Vec<WebhookView>,
}

/// A page of an endpoint's deliveries log.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveriesResponse {
    /// The attempts, newest first.
    pub deliveries: Vec<DeliveryRow>,
}

/// The endpoint named in the path, or 404.
fn webhook_id(text: &str) -> Result<WebhookId, AppError> {
    WebhookId::parse(text).ok_or_else(|| AppError::new(Code::WebhookNotFound))
}

fn not_found() -> AppError {
    AppError::new(Code::WebhookNotFound)
}

/// Register a webhook endpoint.
///
/// Events of the manager's feed after this moment (of the types listed;
/// absent or empty: all) are sent to `url` as Standard Webhooks signed with
/// the endpoint's secret. The secret (`whsec_` and base64) is in this answer
/// and in the answer of a rotation only: keep it. A URL whose host is an
/// address literal of a loopback, private, link-local, CGNAT, multicast,
/// unspecified or metadata address (in any spelling: IPv6, IPv4-mapped,
/// NAT64, `http://2130706433/`) is a 400. At most 20 endpoints per manager
/// (409 `WEBHOOK_LIMIT_REACHED`).
#[utoipa::path(post, path = "/api/webhooks", tag = "webhooks",
    request_body(content = NewWebhook, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered; the only answer with the secret besides a rotation's",
            body = WebhookView, example = json!({"id": "wh_001", "url": "https://erp.example.com/hooks/inventory",
                "event_types": ["inventory.changed"], "description": "Stock sync to the ERP", "status": "enabled",
                "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "created_at": "2026-12-04T10:00:00.123456Z"})),
        RegisterWebhookErrors,
    ))]
pub async fn register_webhook(
    State(state): State<AppState>,
    context: RequestContext,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let hook = NewWebhook::parse(&body, &state.settings.webhook_allowed_networks)?;
    let entry = context.write_entry(StatusCode::CREATED.as_u16());
    let done = store::webhooks::register(&state.db, &hook, &entry).await?;
    Ok(written(done, StatusCode::CREATED, &context, Json))
}

docs::errors!(
    /// The errors of `POST /api/webhooks`.
    RegisterWebhookErrors: Write [WebhookLimitReached]
);

docs::errors!(
    /// The errors of `GET /api/webhooks`.
    ListWebhooksErrors: Read []
);

/// A manager's webhook endpoints, without their secrets.
#[utoipa::path(get, path = "/api/webhooks", tag = "webhooks",
    params(ManagerId),
    responses((status = 200, description = "The endpoints", body = WebhooksResponse), ListWebhooksErrors))]
pub async fn list_webhooks(State(state): State<AppState>, query: Query) -> Result<Response, AppError> {
    let manager = query.required_manager()?;
    let webhooks = store::webhooks::list(&state.db, &manager).await?;
    Ok(Json(WebhooksResponse { webhooks }).into_response())
}

/// One webhook endpoint, without its secret.
#[utoipa::path(get, path = "/api/webhooks/{webhook_id}", tag = "webhooks",
    params(("webhook_id" = String, Path, description = "The endpoint, e.g. `wh_001`", example = "wh_001"), ManagerId),
    responses((status = 200, description = "The endpoint", body = WebhookView), GetWebhookErrors))]
pub async fn get_webhook(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Query,
) -> Result<Response, AppError> {
    let manager = query.required_manager()?;
    let id = webhook_id(&id)?;
    let hook = store::webhooks::get(&state.db, &manager, id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(hook).into_response())
}

docs::errors!(
    /// The errors of `GET /api/webhooks/{webhook_id}`.
    GetWebhookErrors: Read [WebhookNotFound]
);

/// Delete a webhook endpoint: its deliveries stop.
///
/// Like a read, a DELETE names its manager in the query string.
#[utoipa::path(delete, path = "/api/webhooks/{webhook_id}", tag = "webhooks",
    params(("webhook_id" = String, Path, description = "The endpoint, e.g. `wh_001`", example = "wh_001"), ManagerId),
    responses((status = 204, description = "Deleted"), DeleteWebhookErrors))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    context: RequestContext,
    Path(id): Path<String>,
    query: Query,
) -> Result<Response, AppError> {
    let manager = query.required_manager()?;
    let id = webhook_id(&id)?;
    let entry = context.write_entry(StatusCode::NO_CONTENT.as_u16());
    let done = store::webhooks::delete(&state.db, &manager, id, &entry)
        .await?
        .ok_or_else(not_found)?;
    Ok(written(done, StatusCode::NO_CONTENT, &context, |()| ()))
}

docs::errors!(
    /// The errors of `DELETE /api/webhooks/{webhook_id}`.
    DeleteWebhookErrors: Read [WebhookNotFound, OutcomeUnknown]
);

/// Rotate an endpoint's signing secret.
///
/// Answers the endpoint with its new secret. For 24 hours deliveries carry
/// two signatures, one with each secret, so the receiver can switch at its
/// own pace.
#[utoipa::path(post, path = "/api/webhooks/{webhook_id}/rotate-secret", tag = "webhooks",
    params(("webhook_id" = String, Path, description = "The endpoint, e.g. `wh_001`", example = "wh_001")),
    request_body(content = RotateSecret, content_type = "application/json"),
    responses((status = 200, description = "The endpoint with its new secret", body = WebhookView), RotateSecretErrors))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    context: RequestContext,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let request = RotateSecret::parse(&body)?;
    let id = webhook_id(&id)?;
    let entry = context.write_entry(StatusCode::OK.as_u16());
    let done = store::webhooks::rotate(&state.db, &request.manager, id, &entry)
        .await?
        .ok_or_else(not_found)?;
    Ok(written(done, StatusCode::OK, &context, Json))
}

docs::errors!(
    /// The errors of `POST /api/webhooks/{webhook_id}/rotate-secret`.
    RotateSecretErrors: Write [WebhookNotFound]
);

/// The query of the deliveries log, as the document states what
/// [`deliveries_query`] accepts.
struct DeliveriesParams;

impl IntoParams for DeliveriesParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let position = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(1));
        vec![
            ManagerId::query_parameter(),
            Query::limit_parameter(),
            query::parameter(
                "after",
                "A position from the previous page's `Link`: the page starts with the next older attempt.",
                position,
                None,
            ),
        ]
    }
}

fn deliveries_query(query: &Query) -> Result<(ManagerId, u32, Option<i64>), Problems> {
    let mut bad = Problems::default();
    let manager = query.manager(&mut bad);
    let limit = query.limit(&mut bad);
    let after = query.optional(&mut bad, "after", |text| {
        text.parse::<i64>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| "must be a position from a Link header".into())
    });
    bad.into_result(|| Some((manager?, limit?, after?)))
}

/// An endpoint's delivery attempts, newest first.
///
/// Each attempt: the event, its number (1, 2, …), the receiver's status
/// code (null when there was no answer), a short error (e.g. "address not
/// allowed", "timed out"), when, how long it took, and when the next attempt
/// is due (null once delivered or given up). Pages follow `Link`.
#[utoipa::path(get, path = "/api/webhooks/{webhook_id}/deliveries", tag = "webhooks",
    params(("webhook_id" = String, Path, description = "The endpoint, e.g. `wh_001`", example = "wh_001"),
        DeliveriesParams),
    responses(
        (status = 200, description = "The attempts", body = DeliveriesResponse,
            headers(("Link" = String, description = "`<...>; rel=\"next\"` when more remain"))),
        ListDeliveriesErrors,
    ))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Query,
) -> Result<Response, AppError> {
    let (manager, limit, after) = deliveries_query(&query)?;
    let id = webhook_id(&id)?;
    let fetched = store::webhooks::deliveries(&state.db, &manager, id, after, Page::<DeliveryRow>::fetch(limit))
        .await?
        .ok_or_else(not_found)?;
    let params = vec![("manager_id", manager.to_string()), ("limit", limit.to_string())];
    let path = format!("/api/webhooks/{id}/deliveries");
    let page = Page::of(fetched, limit, &path, params, |last| last.seq.to_string());
    Ok(page.respond(|deliveries| DeliveriesResponse { deliveries }))
}

docs::errors!(
    /// The errors of `GET /api/webhooks/{webhook_id}/deliveries`.
    ListDeliveriesErrors: Read [WebhookNotFound]
);

/// Deliver again every event after a point of the feed.
///
/// Every event of the manager's feed after `after` (absent: every kept
/// event), of the endpoint's types, is delivered again in feed order, each
/// with its original `webhook-id` (the event id), so a receiver that keeps
/// the ids it has processed ignores those it has. An `after` that is not an
/// event of this manager's feed is a 400.
#[utoipa::path(post, path = "/api/webhooks/{webhook_id}/replay", tag = "webhooks",
    params(("webhook_id" = String, Path, description = "The endpoint, e.g. `wh_001`", example = "wh_001")),
    request_body(content = ReplayWebhook, content_type = "application/json"),
    responses((status = 202, description = "The events will be delivered again"), ReplayErrors))]
pub async fn replay_webhook(
    State(state): State<AppState>,
    context: RequestContext,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let request = ReplayWebhook::parse(&body)?;
    let id = webhook_id(&id)?;
    let entry = context.write_entry(StatusCode::ACCEPTED.as_u16());
    let done = store::webhooks::replay(&state.db, &request.manager, id, request.after, &entry).await?;
    Ok(written(done, StatusCode::ACCEPTED, &context, |()| ()))
}

docs::errors!(
    /// The errors of `POST /api/webhooks/{webhook_id}/replay`.
    ReplayErrors: Write [WebhookNotFound]
);

//! `POST /api/orders/process`.

use std::time::Duration;

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    AppState, docs, invalidate,
    request::{JsonBody, RequestContext},
    written,
};
use crate::{
    domain::{ManagerId, Money, OrderId, order::NewOrder},
    error::{AppError, ErrorEnvelope},
    store::{self, idempotency::Claim},
};

/// A processed order.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"order_id": "ord_789", "status": "processed", "total_amount": 44.97}))]
pub struct ProcessOrderResponse {
    /// The new order's id.
    #[schema(value_type = String, example = "ord_789")]
    pub order_id: OrderId,
    /// Always `processed`.
    #[schema(example = "processed")]
    pub status: &'static str,
    /// Σ price × quantity at the moment of processing, at most 2 decimals.
    #[schema(value_type = f64, example = 44.97)]
    pub total_amount: Money,
}

/// Process a customer order: every line is sold, or none is.
///
/// The order is sold if every product is the manager's, none is
/// discontinued, and each has at least the quantity asked. Stock is taken
/// atomically: concurrent orders never oversell. When the order cannot be
/// sold, nothing changes and the error lists every line with the problem
/// that decides the status, in this order of precedence: a product not found
/// (404 `PRODUCT_NOT_FOUND`), then discontinued (409 `PRODUCT_DISCONTINUED`),
/// then short of stock (409 `INSUFFICIENT_STOCK`, quantity 0 included).
///
/// With an `Idempotency-Key` header, a retry with the same key and body gets
/// the first request's answer again (the same `order_id`, or the same
/// refusal) with `Idempotent-Replayed: true`, and sells nothing twice; the
/// same key with another body is a 422, and a retry while the first request
/// still runs is a 409. Keys belong to a manager and are kept at least 24
/// hours. A first request that fails for a passing reason (5xx) frees its key.
#[utoipa::path(post, path = "/api/orders/process", tag = "orders",
    request_body(content = docs::ProcessOrderRequest, content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header, max_length = 255, min_length = 1,
        description = "Makes retries safe: 1–255 visible ASCII characters chosen by the client")),
    responses(
        (status = 200, description = "Order processed", body = ProcessOrderResponse),
        (status = 400, description = "Invalid fields (every one listed), or a product listed twice", body = ErrorEnvelope,
            example = json!({"error": {"code": "INVALID_REQUEST", "message": "the request has invalid fields",
                "details": {"customer.email": "must be a valid email address", "products[1].quantity": "must be an integer from 1 to 1000000"}}})),
        (status = 404, description = "Products that are not the manager's", body = ErrorEnvelope,
            example = json!({"error": {"code": "PRODUCT_NOT_FOUND", "message": "no such product for this manager",
                "details": {"products[1].product_id": "not a product of this manager"}}})),
        (status = 409, description = "Discontinued products, or not enough stock", body = ErrorEnvelope,
            examples(
                ("INSUFFICIENT_STOCK" = (value = json!({"error": {"code": "INSUFFICIENT_STOCK",
                    "message": "not enough stock for some products",
                    "details": {"products[0].quantity": "requested 5, available 2"}}}))),
                ("PRODUCT_DISCONTINUED" = (value = json!({"error": {"code": "PRODUCT_DISCONTINUED",
                    "message": "some products are discontinued",
                    "details": {"products[0].product_id": "is discontinued"}}}))),
                ("IDEMPOTENCY_KEY_IN_USE" = (value = json!({"error": {"code": "IDEMPOTENCY_KEY_IN_USE",
                    "message": "a request with this Idempotency-Key is still being processed",
                    "details": {"Idempotency-Key": "the first request with this key has not finished"}}})))
            )),
        (status = 422, description = "The Idempotency-Key was first used with a different body", body = ErrorEnvelope,
            example = json!({"error": {"code": "IDEMPOTENCY_KEY_REUSED",
                "message": "this Idempotency-Key was used with a different request body",
                "details": {"Idempotency-Key": "was first used with a different body"}}})),
        (status = 408, description = "The body did not arrive within the request timeout", body = ErrorEnvelope),
        (status = 413, description = "Body over the size limit", body = ErrorEnvelope),
        (status = 415, description = "Content-Type is not JSON", body = ErrorEnvelope),
        (status = 429, description = "Rate limit exceeded", body = ErrorEnvelope, example = json!(docs::example_rate_limited())),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
        (status = 500, description = "Internal error", body = ErrorEnvelope),
    ))]
pub async fn process_order(
    State(state): State<AppState>,
    context: RequestContext,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let order = NewOrder::parse(&body)?;
    let key = idempotency_key(&headers)?;
    let mut claim = None;
    if let Some(key) = &key {
        // serde_json's maps are sorted, so this text is the same for any
        // spelling of the same body (key order, white space).
        let request = serde_json::to_string(&body).map_err(|e| AppError::Internal(e.into()))?;
        let stale_after = Duration::from_secs(state.settings.request_timeout_secs + 60);
        match store::idempotency::claim(&state.db, &order.manager, key, &request, stale_after).await? {
            Claim::Owned(token) => claim = Some((key.as_str(), token)),
            Claim::Sold { order_id, total } => return Ok(replayed(Json(processed(order_id, total)).into_response())),
            Claim::Refused { body, .. } => {
                let refusal = AppError::refusal_from(&body)
                    .ok_or_else(|| AppError::Internal(anyhow::anyhow!("unreadable stored refusal")))?;
                return Ok(replayed(refusal.into_response()));
            }
            Claim::Reused => return Err(AppError::IdempotencyKeyReused),
            Claim::InUse => return Err(AppError::IdempotencyKeyInUse),
        }
    }

    let mut entry = context.entry(StatusCode::OK.as_u16(), None);
    let done = match store::orders::process(&state.db, &order, &entry, claim).await {
        Ok(done) => done,
        Err(failure) => {
            let err = AppError::from(failure);
            if let Some((key, token)) = claim {
                settle_key(&state, &order.manager, key, token, &err).await;
            }
            return Err(err);
        }
    };
    entry.order_id = Some(done.order_id.get());
    entry.product_ids = order.lines.iter().filter_map(|l| l.product.map(|p| p.get())).collect();
    entry.product_ids.sort_unstable();
    invalidate(&state, &order.manager).await;
    Ok(written(
        StatusCode::OK,
        Json(processed(done.order_id, done.total)),
        entry,
        &context,
    ))
}

fn processed(order_id: OrderId, total_amount: Money) -> ProcessOrderResponse {
    ProcessOrderResponse {
        order_id,
        status: "processed",
        total_amount,
    }
}

/// The `Idempotency-Key` header: absent, or 1–255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, AppError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    if (1..=255).contains(&bytes.len()) && bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
    } else {
        Err(AppError::invalid(
            "Idempotency-Key",
            "must be 1 to 255 visible ASCII characters",
        ))
    }
}

/// A stored answer, marked as such.
fn replayed(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

/// After a first request with a key failed: remember a refusal (a retry gets
/// the same answer), or free the key after a passing failure (a retry runs).
async fn settle_key(state: &AppState, manager: &ManagerId, key: &str, token: Uuid, err: &AppError) {
    let settled = if err.is_refusal() {
        let body = serde_json::to_value(err.envelope()).unwrap_or_default();
        store::idempotency::refused(&state.db, manager, key, token, err.parts().0.as_u16(), &body).await
    } else {
        store::idempotency::release(&state.db, manager, key, token).await
    };
    if let Err(cause) = settled {
        tracing::error!(error = %cause, %manager, "could not settle an idempotency key; it frees itself later");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_short_visible_text() {
        let with = |value: &[u8]| {
            let mut headers = HeaderMap::new();
            headers.insert("idempotency-key", HeaderValue::from_bytes(value).unwrap());
            idempotency_key(&headers)
        };
        assert_eq!(idempotency_key(&HeaderMap::new()).unwrap(), None);
        assert_eq!(with(b"order 42 retry").unwrap().as_deref(), Some("order 42 retry"));
        assert!(with(&[b'k'; 255]).is_ok());
        assert!(with(&[b'k'; 256]).is_err());
        assert!(with(b"").is_err());
        assert!(with(b"tab\there").is_err());
        assert!(with("caf\u{e9}".as_bytes()).is_err());
    }
}

//! `POST /api/orders/process` and `POST /api/orders/{order_id}/cancel`.

use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use super::{
    AppState, docs,
    idempotency::{self, Begun, IdempotencyKey},
    request::{JsonBody, RequestContext, written},
};
use crate::{
    domain::{
        Money, OrderId,
        order::{CancelOrder, NewOrder},
    },
    error::AppError,
    store::{
        self,
        order_history::{Cancel, OrderView},
    },
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
/// then short of stock (409 `INSUFFICIENT_STOCK`, quantity 0 included). A
/// product may appear on one line only (400).
///
/// With an `Idempotency-Key` header, a retry with the same key and body gets
/// the first request's answer again (the same `order_id`, or the same
/// refusal) with `Idempotent-Replayed: true`, and sells nothing twice; the
/// same key with another body, or first used for a stock adjustment, is a
/// 422, and a retry while the first request still runs is a 409. Keys belong
/// to a manager and are kept at least 24 hours. A first request known to have
/// applied nothing (a 503 `SERVICE_UNAVAILABLE`, a 504) frees its key at
/// once; one answered 503 `OUTCOME_UNKNOWN` is settled by the next request
/// with its key, by what the database holds (its sale replayed, or a fresh
/// run), at the latest once the first request's deadline has passed.
///
/// A 503 `OUTCOME_UNKNOWN` means the order may have been sold: the
/// connection to the database broke after it was sent, or the request's
/// deadline passed while it ran. Retry with the same key to learn which.
#[utoipa::path(post, path = "/api/orders/process", tag = "orders",
    request_body(content = NewOrder, content_type = "application/json"),
    params(IdempotencyKey),
    responses((status = 200, description = "Order processed", body = ProcessOrderResponse), ProcessOrderErrors))]
pub async fn process_order(
    State(state): State<AppState>,
    context: RequestContext,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let order = NewOrder::parse(&body)?;
    let entry = context.write_entry(StatusCode::OK.as_u16());
    let sold = |order_id, total| Json(processed(order_id, total)).into_response();
    // Orders keep the plain body as their key's request text (as before
    // adjustments shared the key space), so earlier keys still match.
    let key = match idempotency::begin(&state, &entry, &headers, "", &body, sold).await? {
        Begun::Run(key) => key,
        Begun::Replay(response) => return Ok(response),
    };
    match store::orders::process(&state.db, &order, &entry, key.as_deref()).await {
        Ok(done) => Ok(written(done, StatusCode::OK, &context, |sold| {
            Json(processed(sold.order_id, sold.total))
        })),
        Err(failure) => {
            let err = AppError::from(failure);
            idempotency::settle(&state, &order.manager, &entry, key.as_ref(), &err).await;
            Err(err)
        }
    }
}

docs::errors!(
    /// The errors of `POST /api/orders/process`.
    ProcessOrderErrors: Write [
        ProductNotFound,
        ProductDiscontinued,
        InsufficientStock,
        IdempotencyKeyReused,
        IdempotencyKeyInUse,
    ]
);

fn processed(order_id: OrderId, total_amount: Money) -> ProcessOrderResponse {
    ProcessOrderResponse {
        order_id,
        status: "processed",
        total_amount,
    }
}

/// Cancel an order: every line's units go back to stock.
///
/// In one transaction with the status change and the audit record, every
/// line's quantity returns to its product's stock, whatever the product's
/// status (a discontinued product stays discontinued). The answer is the
/// order as `GET /api/orders/{order_id}` shows it. Cancelling a cancelled
/// order changes nothing and answers the order again (`cancelled_at` stays
/// the first cancellation's): concurrent cancels return the stock once. If
/// returning a line would take a product above 1,000,000,000 units, nothing
/// changes (409 `QUANTITY_OUT_OF_RANGE`).
#[utoipa::path(post, path = "/api/orders/{order_id}/cancel", tag = "orders",
    params(("order_id" = String, Path, description = "The order, e.g. `ord_001`", example = "ord_001")),
    request_body(content = CancelOrder, content_type = "application/json"),
    responses((status = 200, description = "The order, cancelled", body = OrderView), CancelOrderErrors))]
pub async fn cancel_order(
    State(state): State<AppState>,
    context: RequestContext,
    Path(order_id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let request = CancelOrder::parse(&body)?;
    let id = OrderId::parse(&order_id).ok_or_else(AppError::order_not_found)?;
    let entry = context.write_entry(StatusCode::OK.as_u16());
    Ok(
        match store::order_history::cancel(&state.db, &request.manager, id, &entry).await? {
            Cancel::Done(done) => written(done, StatusCode::OK, &context, Json),
            Cancel::Already(order) => Json(order).into_response(),
        },
    )
}

docs::errors!(
    /// The errors of `POST /api/orders/{order_id}/cancel`.
    CancelOrderErrors: Write [OrderNotFound, QuantityOutOfRange]
);

//! `POST /api/orders/process`.

use axum::{Json, extract::State, http::StatusCode, response::Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::{
    AppState,
    context::{JsonBody, RequestContext},
    docs, invalidate, written,
};
use crate::{
    domain::{Money, OrderId, order::NewOrder},
    error::{AppError, ErrorEnvelope},
    store,
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
#[utoipa::path(post, path = "/api/orders/process", tag = "orders",
    request_body(content = docs::ProcessOrderRequest, content_type = "application/json"),
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
                    "details": {"products[0].product_id": "is discontinued"}}})))
            )),
        (status = 413, description = "Body over the size limit", body = ErrorEnvelope),
        (status = 415, description = "Content-Type is not JSON", body = ErrorEnvelope),
        (status = 429, description = "Rate limit exceeded", body = ErrorEnvelope, example = json!(docs::example_rate_limited())),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
        (status = 500, description = "Internal error", body = ErrorEnvelope),
    ))]
pub async fn process_order(
    State(state): State<AppState>,
    context: RequestContext,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let order = NewOrder::parse(&body)?;
    let mut entry = context.entry(StatusCode::OK.as_u16(), None);
    let done = store::orders::process(&state.db, &order, &entry).await?;
    entry.order_id = Some(done.order_id.get());
    entry.product_ids = order.lines.iter().filter_map(|l| l.product.map(|p| p.get())).collect();
    entry.product_ids.sort_unstable();
    invalidate(&state, &order.manager).await;
    let response = ProcessOrderResponse {
        order_id: done.order_id,
        status: "processed",
        total_amount: done.total,
    };
    Ok(written(StatusCode::OK, Json(response), entry, &context))
}

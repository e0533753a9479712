//! `POST /api/inventory/adjustments`: stock changed by differences.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};

use super::{
    AppState, docs,
    idempotency::{self, Begun, IdempotencyKey},
    inventory::ProductsResponse,
    request::{JsonBody, RequestContext, written},
};
use crate::{domain::adjustment::StockAdjustments, error::AppError, store};

/// Change stock by differences, all or none.
///
/// Each item adds `delta` units to a product's stock (or takes them, when
/// negative), so a restock never erases a sale made between a read and this
/// write. Every difference is applied, in one transaction with its audit
/// record, or none is. A product may appear once (400). Products that are
/// not the manager's are 404 `PRODUCT_NOT_FOUND`; a result below 0 is 409
/// `INSUFFICIENT_STOCK` (`would leave -3 (available 2)`); above
/// 1,000,000,000 is 409 `QUANTITY_OUT_OF_RANGE`; in that order of precedence,
/// with every failing item listed. Discontinued products can be adjusted and
/// stay discontinued. The answer lists the products after the change, in
/// request order.
///
/// `Idempotency-Key` works as for orders, in the same key space: a retry gets
/// the first answer again and applies nothing twice; a key first used for
/// an order (or another body) is a 422.
#[utoipa::path(post, path = "/api/inventory/adjustments", tag = "inventory",
    request_body(content = StockAdjustments, content_type = "application/json"),
    params(IdempotencyKey),
    responses(
        (status = 200, description = "The products after the change, in request order", body = ProductsResponse),
        AdjustStockErrors,
    ))]
pub async fn adjust_stock(
    State(state): State<AppState>,
    context: RequestContext,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let request = StockAdjustments::parse(&body)?;
    let entry = context.write_entry(StatusCode::OK.as_u16());
    let no_orders_here = |_, _| AppError::internal(anyhow::anyhow!("an adjustment key names an order")).into_response();
    let key = match idempotency::begin(&state, &entry, &headers, "adjustments", &body, no_orders_here).await? {
        Begun::Run(key) => key,
        Begun::Replay(response) => return Ok(response),
    };
    match store::adjustments::apply(&state.db, &request, &entry, key.as_deref()).await {
        Ok(done) => Ok(written(done, StatusCode::OK, &context, |products| {
            Json(ProductsResponse { products })
        })),
        Err(failure) => {
            let err = AppError::from(failure);
            idempotency::settle(&state, &request.manager, &entry, key.as_ref(), &err).await;
            Err(err)
        }
    }
}

docs::errors!(
    /// The errors of `POST /api/inventory/adjustments`.
    AdjustStockErrors: Write [
        ProductNotFound,
        InsufficientStock,
        QuantityOutOfRange,
        IdempotencyKeyReused,
        IdempotencyKeyInUse,
    ]
);

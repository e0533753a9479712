//! `GET /api/orders/{order_id}` and `GET /api/orders`: what was sold.

use axum::{
    Json,
    extract::{Path, State},
    response::Response,
};
use serde::Serialize;
use utoipa::{
    IntoParams, ToSchema,
    openapi::path::{Parameter, ParameterIn},
};

use super::{
    AppState, docs,
    query::{self, Page, Query},
};
use crate::{
    domain::{CustomerId, ManagerId, OrderId, Problems, ids::CLIENT_ID_PATTERN, order::OrderStatus},
    error::AppError,
    store::{
        self,
        order_history::{OrderQuery, OrderSummary, OrderView},
    },
};

/// A page of orders, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"orders": [{"order_id": "ord_002", "status": "cancelled",
    "customer": {"id": "cust_456", "email": "customer@example.com"}, "total_amount": 12.99,
    "created_at": "2026-12-02T10:15:00.000000Z", "cancelled_at": "2026-12-02T10:20:00.000000Z"}]}))]
pub struct OrdersResponse {
    /// The orders.
    pub orders: Vec<OrderSummary>,
}

/// One order with its lines as they were sold.
///
/// Lines come in the order they were sent, with the product's name and unit
/// price as they were at the moment of sale. `status` is `processed` or
/// `cancelled`; `cancelled_at` is null until the order is cancelled. Money
/// has at most 2 decimals. An id that is not one of the manager's orders
/// (or not an order id at all) is 404 `ORDER_NOT_FOUND`.
#[utoipa::path(get, path = "/api/orders/{order_id}", tag = "orders",
    params(("order_id" = String, Path, description = "The order, e.g. `ord_001`", example = "ord_001"),
        ManagerId),
    responses((status = 200, description = "The order", body = OrderView), GetOrderErrors))]
pub async fn get_order(
    State(state): State<AppState>,
    Path(order_id): Path<String>,
    query: Query,
) -> Result<Json<OrderView>, AppError> {
    let manager = query.required_manager()?;
    let id = OrderId::parse(&order_id).ok_or_else(AppError::order_not_found)?;
    // One snapshot for the order and its lines.
    let mut tx = state.db.begin().await?;
    let order = store::order_history::get(&mut tx, &manager, id).await?;
    tx.commit().await?;
    order.map(Json).ok_or_else(AppError::order_not_found)
}

docs::errors!(
    /// The errors of `GET /api/orders/{order_id}`.
    GetOrderErrors: Read [OrderNotFound]
);

/// The query of `GET /api/orders`, validated into the store's query.
struct ListOrdersParams;

impl ListOrdersParams {
    /// Parses the query, reporting every bad parameter.
    fn parse(query: &Query) -> Result<OrderQuery, Problems> {
        let mut bad = Problems::default();
        let manager = query.manager(&mut bad);
        let customer = query.optional(&mut bad, "customer_id", |text| {
            CustomerId::parse(text).map(|c| c.as_str().to_owned())
        });
        let status = query.optional(&mut bad, "status", str::parse::<OrderStatus>);
        let limit = query.limit(&mut bad);
        let after = query.optional(&mut bad, "after", |text| {
            OrderId::parse(text).ok_or_else(|| "must be an order id such as ord_001".into())
        });
        bad.into_result(|| {
            Some(OrderQuery {
                manager: manager?,
                customer: customer?,
                status: status?,
                after: after?,
                limit: i64::from(limit?),
            })
        })
    }
}

/// The query of `GET /api/orders` as the OpenAPI document states what
/// [`ListOrdersParams::parse`] accepts.
impl IntoParams for ListOrdersParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ManagerId::query_parameter(),
            query::parameter(
                "customer_id",
                "Only this customer's orders.",
                query::pattern(CLIENT_ID_PATTERN),
                Some("cust_456"),
            ),
            query::parameter(
                "status",
                "`processed` or `cancelled`; absent means both.",
                query::pattern(OrderStatus::pattern()),
                Some("processed"),
            ),
            Query::limit_parameter(),
            query::parameter(
                "after",
                "An order id: the page starts with the next older order.",
                query::pattern(OrderId::PATTERN),
                Some("ord_042"),
            ),
        ]
    }
}

docs::errors!(
    /// The errors of `GET /api/orders`.
    ListOrdersErrors: Read []
);

/// A manager's orders, newest first.
///
/// Filters: `customer_id`, `status` (`processed` or `cancelled`). Pages of
/// `limit` orders (1–1000, default 100) by id descending; `after` (an order
/// id) starts the page after, that is older than, that order. While more
/// remain, the `Link` header (`rel="next"`) gives the next page with the same
/// filters. Every bad parameter is listed in one 400.
#[utoipa::path(get, path = "/api/orders", tag = "orders",
    params(ListOrdersParams),
    responses((status = 200, description = "The orders", body = OrdersResponse,
        headers(("Link" = String, description = "`<...>; rel=\"next\"` when more orders remain"))),
        ListOrdersErrors))]
pub async fn list_orders(State(state): State<AppState>, query: Query) -> Result<Response, AppError> {
    let request = ListOrdersParams::parse(&query)?;
    let limit = request.limit as u32;
    let fetched = store::order_history::list(
        &state.db,
        &OrderQuery {
            limit: Page::<OrderSummary>::fetch(limit),
            ..request.clone()
        },
    )
    .await?;
    let mut params = vec![("manager_id", request.manager.to_string())];
    params.extend(request.customer.clone().map(|c| ("customer_id", c)));
    params.extend(request.status.map(|s| ("status", s.as_str().to_owned())));
    params.push(("limit", limit.to_string()));
    let page = Page::of(fetched, limit, "/api/orders", params, |last| last.order_id.to_string());
    Ok(page.respond(|orders| OrdersResponse { orders }))
}

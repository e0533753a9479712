//! `GET /api/events`: a manager's feed of every change, oldest first.

use axum::{extract::State, response::Response};
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
    domain::{
        EventId, ManagerId, Problems,
        event::{EventType, FeedQuery, parse_after, parse_types},
    },
    error::AppError,
    metrics,
    store::{self, events::EventRow},
};

/// A page of the feed, oldest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"events": [
    {"id": "evt_041", "type": "order.processed", "occurred_at": "2026-12-04T10:15:30.123456Z",
     "data": {"order_id": "ord_789", "status": "processed",
              "customer": {"id": "cust_456", "email": "customer@example.com"}, "total_amount": 31.98,
              "created_at": "2026-12-04T10:15:30.120001Z", "cancelled_at": null,
              "products": [{"product_id": "prod_001", "name": "Premium Coffee Beans", "quantity": 2,
                            "unit_price": 15.99, "line_total": 31.98}]}},
    {"id": "evt_042", "type": "inventory.changed", "occurred_at": "2026-12-04T10:15:30.123456Z",
     "data": {"product_id": "prod_001", "quantity": 98, "previous_quantity": 100, "delta": -2,
              "version": 7, "reason": "order", "reference": "ord_789"}}
]}))]
pub struct EventsResponse {
    /// The events, in feed order.
    pub events: Vec<EventRow>,
}

/// The query of `GET /api/events`, as the OpenAPI document states what
/// [`parse`] accepts.
struct FeedParams;

impl IntoParams for FeedParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ManagerId::query_parameter(),
            query::parameter(
                "after",
                "An event id of this manager's feed: the page starts after it. Absent: from the oldest kept.",
                query::pattern(EventId::PATTERN),
                Some("evt_042"),
            ),
            query::parameter(
                "types",
                "Only these types, comma-separated (e.g. `inventory.changed,order.processed`).",
                query::pattern(EventType::list_pattern()),
                Some("inventory.changed,inventory.low_stock"),
            ),
            Query::limit_parameter(),
        ]
    }
}

/// Parses the query, reporting every bad parameter.
fn parse(query: &Query) -> Result<FeedQuery, Problems> {
    let mut bad = Problems::default();
    let manager = query.manager(&mut bad);
    let after = query.optional(&mut bad, "after", parse_after);
    let types = query.optional(&mut bad, "types", parse_types);
    let limit = query.limit(&mut bad);
    FeedQuery::new(bad, manager, after, types, limit)
}

docs::errors!(
    /// The errors of `GET /api/events`.
    FeedErrors: Read []
);

/// A manager's feed of every change, oldest first.
///
/// Every write that changes a product or an order records its events in
/// its own transaction: a committed change always has them, a refused or
/// rolled-back one never does. Types and their `data`:
/// `product.created` / `product.updated` (the product as
/// `GET /api/inventory/products/{id}` shows it, with `version`),
/// `product.discontinued` (`product_id`, `version`), `inventory.changed`
/// (`product_id`, `quantity`, `previous_quantity`, `delta`, `version`,
/// `reason`: `order`, `cancel`, `adjustment` or `upsert`, `reference`: the
/// order for orders and cancels), `inventory.low_stock` (`product_id`,
/// `quantity`, `threshold`, `version`), `order.processed` /
/// `order.cancelled` (the order as `GET /api/orders/{id}` shows it),
/// `webhook.disabled` (`webhook_id`, `reason`).
///
/// The cursor is exact: following `after` from any event gives every later
/// committed event of the manager exactly once, and each product's events
/// in increasing `version` order, whatever the number of writers and
/// instances. `Link` (`rel="next"`) gives the next page while more remain,
/// keeping the filters; at the end, poll with the last event's id. An
/// `after` that is not an event of this manager's is a 400 (`after`).
#[utoipa::path(get, path = "/api/events", tag = "events",
    params(FeedParams),
    responses(
        (status = 200, description = "The events after the cursor", body = EventsResponse,
            headers(("Link" = String, description = "`<...>; rel=\"next\"` when more remain"))),
        FeedErrors,
    ))]
pub async fn list_events(State(state): State<AppState>, query: Query) -> Result<Response, AppError> {
    let feed = parse(&query)?;
    let fetched = store::events::feed(&state.db, &feed, Page::<EventRow>::fetch(feed.limit))
        .await?
        .ok_or_else(|| AppError::invalid("after", "is not an event of this manager's feed"))?;
    let mut params = vec![("manager_id", feed.manager.to_string())];
    if let Some(types) = feed.types.as_ref() {
        let names: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
        params.push(("types", names.join(",")));
    }
    params.push(("limit", feed.limit.to_string()));
    let page = Page::of(fetched, feed.limit, "/api/events", params, |last| last.id.to_string());
    if page.next.is_none() {
        // A reader at the end of the feed: how old the events it is only
        // now given are (its own polling interval included).
        let now = chrono::Utc::now();
        for event in &page.items {
            metrics::event_feed_lag((now - event.occurred_at).to_std().unwrap_or_default());
        }
    }
    Ok(page.respond(|events| EventsResponse { events }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_parameter_is_listed() {
        let details = parse(&Query::parse(Some("after=evt_1&types=nope&limit=0")))
            .unwrap_err()
            .into_details();
        assert_eq!(
            details.keys().collect::<Vec<_>>(),
            ["after", "limit", "manager_id", "types"]
        );
        let ok = parse(&Query::parse(Some(
            "manager_id=m&after=evt_007&types=order.processed,inventory.changed",
        )))
        .unwrap();
        assert_eq!(ok.after.map(EventId::get), Some(7));
        assert_eq!(
            ok.types,
            Some(vec![EventType::OrderProcessed, EventType::InventoryChanged])
        );
        assert_eq!(ok.limit, 100);
    }
}

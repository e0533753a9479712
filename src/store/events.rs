//! The event outbox and its feed. Writes add their events with [`append`]
//! (or, in a single statement, the SQL function `event_append` that it
//! calls) as the last step of their transaction; `event_append` takes the
//! manager's event lock first, so within a manager event ids grow in commit
//! order and the feed ([`feed`]) can page by id exactly.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{
    db::{Db, Tx},
    domain::{
        EventId, ManagerId, OrderId, ProductId,
        event::{EventType, FeedQuery},
    },
};

/// An event as the feed shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = Event, example = json!({"id": "evt_042", "type": "inventory.changed",
    "occurred_at": "2026-12-04T10:15:30.123456Z",
    "data": {"product_id": "prod_001", "quantity": 98, "previous_quantity": 100, "delta": -2,
        "version": 7, "reason": "order", "reference": "ord_789"}}))]
pub struct EventRow {
    /// Public id, `evt_001` onwards; feed order is id order.
    #[schema(value_type = String, example = "evt_042")]
    pub id: EventId,
    /// One of the event types.
    #[serde(rename = "type")]
    #[schema(example = "inventory.changed")]
    pub kind: String,
    /// When it was recorded, just before its change committed (RFC 3339, UTC).
    pub occurred_at: DateTime<Utc>,
    /// What happened; its shape depends on `type`.
    #[schema(value_type = Object)]
    pub data: Value,
}

/// A page of the manager's feed after `query.after`, `fetch` events at most;
/// `None` when `after` is not one of the manager's events.
pub async fn feed(db: &Db, query: &FeedQuery, fetch: i64) -> Result<Option<Vec<EventRow>>, sqlx::Error> {
    let after = query.after.map_or(0, EventId::get);
    if after > 0 {
        let known = sqlx::query_scalar!(
            r#"select exists(select 1 from event where manager_id = $1 and id = $2) as "known!""#,
            query.manager.as_str(),
            after
        )
        .fetch_one(db)
        .await?;
        if !known {
            return Ok(None);
        }
    }
    let types = query.type_names();
    let rows = sqlx::query_as!(
        EventRow,
        r#"select e.id as "id: EventId", e.type as kind, e.occurred_at, event_data(e) as "data!"
             from event e
            where e.manager_id = $1 and e.id > $2 and ($3::text[] is null or e.type = any($3))
            order by e.id
            limit $4"#,
        query.manager.as_str(),
        after,
        types.as_deref(),
        fetch,
    )
    .fetch_all(db)
    .await?;
    Ok(Some(rows))
}

/// An event about to be recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewEvent {
    /// Its type.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The product it is about, if any.
    #[serde(serialize_with = "row_number")]
    pub product_id: Option<ProductId>,
    /// Its data.
    pub data: Value,
}

fn row_number<S: serde::Serializer>(id: &Option<ProductId>, s: S) -> Result<S::Ok, S::Error> {
    id.map(ProductId::get).serialize(s)
}

/// Why a product's stock changed, for the events the service makes (orders
/// and upserts write theirs as columns, in SQL: see `event_append_rows`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A cancelled order returned it.
    Cancel,
    /// A stock adjustment.
    Adjustment,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Cancel => "cancel",
            Self::Adjustment => "adjustment",
        }
    }
}

/// A product's stock change, as its events tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockChange {
    /// The product.
    pub product: ProductId,
    /// Stock before.
    pub previous: i32,
    /// Stock after.
    pub quantity: i32,
    /// The product's version after the change.
    pub version: i64,
    /// The product's low-stock threshold after the change.
    pub threshold: Option<i32>,
    /// Why.
    pub reason: Reason,
    /// The order, for orders and cancels.
    pub reference: Option<OrderId>,
}

impl StockChange {
    /// `inventory.changed` when the stock changed, and `inventory.low_stock`
    /// when it went from at or above the threshold to below it.
    pub fn events(&self) -> Vec<NewEvent> {
        let mut events = Vec::new();
        if self.quantity == self.previous {
            return events;
        }
        events.push(NewEvent {
            kind: EventType::InventoryChanged,
            product_id: Some(self.product),
            data: json!({
                "product_id": self.product,
                "quantity": self.quantity,
                "previous_quantity": self.previous,
                "delta": i64::from(self.quantity) - i64::from(self.previous),
                "version": self.version,
                "reason": self.reason.as_str(),
                "reference": self.reference,
            }),
        });
        if let Some(threshold) = self.threshold
            && self.previous >= threshold
            && self.quantity < threshold
        {
            events.push(NewEvent {
                kind: EventType::InventoryLowStock,
                product_id: Some(self.product),
                data: json!({
                    "product_id": self.product,
                    "quantity": self.quantity,
                    "threshold": threshold,
                    "version": self.version,
                }),
            });
        }
        events
    }
}

/// Records `events` of `manager` in the transaction `tx`, in this order,
/// as its last step (see the module's note); nothing when there are none.
pub async fn append(tx: &mut Tx, manager: &ManagerId, events: &[NewEvent]) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let events = crate::db::json_param(&events)?;
    sqlx::query_scalar!("select event_append($1, $2)", manager.as_str(), events)
        .fetch_one(tx)
        .await?;
    Ok(())
}

/// Most rows one retention statement deletes.
pub const RETENTION_BATCH: i64 = 1000;

/// Deletes events, and webhook delivery records, older than `days` days, in
/// statements of at most [`RETENTION_BATCH`] rows each (short transactions,
/// row locks only), until none is left. Returns how many were deleted.
pub async fn forget_older_than(db: &Db, days: u32) -> Result<u64, sqlx::Error> {
    let days = i32::try_from(days).unwrap_or(i32::MAX);
    let mut forgotten = 0;
    loop {
        let deleted = sqlx::query!(
            r#"with doomed as (
                   select manager_id, id from event
                    where occurred_at < now() - make_interval(days => $1)
                    limit $2
               ), unqueued as (
                   -- Deliveries still queued for these events go with them
                   -- (they could never be sent, and would hold back later
                   -- events of their product).
                   delete from webhook_queue q using doomed d
                    where q.manager_id = d.manager_id and q.event_id = d.id
               )
               delete from event e using doomed d where e.manager_id = d.manager_id and e.id = d.id"#,
            days,
            RETENTION_BATCH
        )
        .execute(db)
        .await?
        .rows_affected();
        let logged = sqlx::query!(
            r#"with doomed as (
                   select manager_id, id from webhook_delivery
                    where at < now() - make_interval(days => $1)
                    limit $2
               )
               delete from webhook_delivery w using doomed d where w.manager_id = d.manager_id and w.id = d.id"#,
            days,
            RETENTION_BATCH
        )
        .execute(db)
        .await?
        .rows_affected();
        forgotten += deleted + logged;
        if deleted < RETENTION_BATCH as u64 && logged < RETENTION_BATCH as u64 {
            return Ok(forgotten);
        }
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(previous: i32, quantity: i32, threshold: Option<i32>) -> Vec<NewEvent> {
        StockChange {
            product: ProductId::from_db(1),
            previous,
            quantity,
            version: 3,
            threshold,
            reason: Reason::Cancel,
            reference: Some(OrderId::from_db(9)),
        }
        .events()
    }

    #[test]
    fn a_change_says_before_after_delta_version_reason_and_reference() {
        let events = change(10, 7, None);
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].data,
            json!({"product_id": "prod_001", "quantity": 7, "previous_quantity": 10, "delta": -3,
                   "version": 3, "reason": "cancel", "reference": "ord_009"})
        );
        assert!(change(5, 5, Some(10)).is_empty(), "no change, no event");
    }

    #[test]
    fn low_stock_only_when_crossing_the_threshold_downwards() {
        assert_eq!(change(10, 9, Some(10)).len(), 2);
        assert_eq!(change(9, 8, Some(10)).len(), 1, "already below");
        assert_eq!(change(12, 10, Some(10)).len(), 1, "at the threshold is not below");
        assert_eq!(change(8, 12, Some(10)).len(), 1, "going up");
        let low = &change(10, 0, Some(10))[1];
        assert_eq!(low.kind, EventType::InventoryLowStock);
        assert_eq!(
            low.data,
            json!({"product_id": "prod_001", "quantity": 0, "threshold": 10, "version": 3})
        );
        assert_eq!(
            serde_json::to_value(low).unwrap()["product_id"],
            1,
            "the row number, for the column"
        );
    }
}

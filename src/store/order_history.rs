//! Orders after the sale: one order with its lines, a manager's orders page
//! by page, and cancelling an order (its stock back, once).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{
    Committed, Failure,
    events::{self, NewEvent, Reason, StockChange},
    is_transient, retrying,
};
use crate::domain::{
    ManagerId, Money, OrderId, ProductId, adjustment::MAX_STOCK, event::EventType, order::OrderStatus,
    problems::Details,
};
use crate::error::{AppError, Code};
use crate::{audit::AuditEntry, db::Db};

/// The customer an order is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = OrderCustomer)]
pub struct Customer {
    /// The customer's id, as the client named them.
    #[schema(example = "cust_456")]
    pub id: String,
    /// Their email address.
    #[schema(example = "customer@example.com")]
    pub email: String,
}

/// One line of an order, as it was sold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SoldLine {
    /// The product.
    #[schema(value_type = String, example = "prod_001")]
    pub product_id: ProductId,
    /// Its name when it was sold.
    #[schema(example = "Premium Coffee Beans")]
    pub name: String,
    /// Units sold.
    #[schema(example = 2)]
    pub quantity: i32,
    /// Its price when it was sold.
    #[schema(value_type = f64, example = 15.99)]
    pub unit_price: Money,
    /// `unit_price × quantity`.
    #[schema(value_type = f64, example = 31.98)]
    pub line_total: Money,
}

/// An order without its lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OrderSummary {
    /// The order's id.
    #[schema(value_type = String, example = "ord_001")]
    pub order_id: OrderId,
    /// `processed`, or `cancelled` once cancelled.
    #[schema(value_type = String, pattern = "^(processed|cancelled)$", example = "processed")]
    pub status: OrderStatus,
    /// Who bought.
    pub customer: Customer,
    /// Σ line totals.
    #[schema(value_type = f64, example = 44.97)]
    pub total_amount: Money,
    /// When it was sold (RFC 3339, UTC).
    pub created_at: DateTime<Utc>,
    /// When it was cancelled, or null.
    pub cancelled_at: Option<DateTime<Utc>>,
}

/// An order with its lines, in the order they were sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"order_id": "ord_001", "status": "processed",
    "customer": {"id": "cust_456", "email": "customer@example.com"}, "total_amount": 44.97,
    "created_at": "2026-12-02T09:31:02.654321Z", "cancelled_at": null,
    "products": [
        {"product_id": "prod_001", "name": "Premium Coffee Beans", "quantity": 2, "unit_price": 15.99, "line_total": 31.98},
        {"product_id": "prod_002", "name": "Ceramic Coffee Mug", "quantity": 1, "unit_price": 12.99, "line_total": 12.99}
    ]}))]
pub struct OrderView {
    /// The order.
    #[serde(flatten)]
    pub order: OrderSummary,
    /// Its lines.
    pub products: Vec<SoldLine>,
}

struct Head {
    id: i64,
    customer_id: String,
    customer_email: String,
    total_amount: Money,
    created_at: DateTime<Utc>,
    cancelled_at: Option<DateTime<Utc>>,
}

impl From<Head> for OrderSummary {
    fn from(h: Head) -> Self {
        Self {
            order_id: OrderId::from_db(h.id),
            status: OrderStatus::of(h.cancelled_at.is_some()),
            customer: Customer {
                id: h.customer_id,
                email: h.customer_email,
            },
            total_amount: h.total_amount,
            created_at: h.created_at,
            cancelled_at: h.cancelled_at,
        }
    }
}

/// The manager's order `id` with its lines, if it is theirs.
pub async fn get(db: &mut crate::db::Tx, manager: &ManagerId, id: OrderId) -> Result<Option<OrderView>, sqlx::Error> {
    let head = sqlx::query_as!(
        Head,
        r#"select id, customer_id, customer_email, total_amount as "total_amount: Money", created_at, cancelled_at
             from customer_order where manager_id = $1 and id = $2"#,
        manager.as_str(),
        id.get()
    )
    .fetch_optional(&mut *db)
    .await?;
    let Some(head) = head else { return Ok(None) };
    let products = sqlx::query_as!(
        SoldLine,
        r#"select product_id as "product_id: ProductId", name, quantity, unit_price as "unit_price: Money",
                  (unit_price * quantity)::numeric(18, 2) as "line_total!: Money"
             from order_line where manager_id = $1 and order_id = $2
            order by line_no"#,
        manager.as_str(),
        id.get()
    )
    .fetch_all(&mut *db)
    .await?;
    Ok(Some(OrderView {
        order: head.into(),
        products,
    }))
}

/// Which of a manager's orders to list.
#[derive(Debug, Clone)]
pub struct OrderQuery {
    /// Whose orders.
    pub manager: ManagerId,
    /// Only this customer's, if given.
    pub customer: Option<String>,
    /// Only orders with this status, if given.
    pub status: Option<OrderStatus>,
    /// Orders older than this one (ids below it).
    pub after: Option<OrderId>,
    /// At most this many.
    pub limit: i64,
}

/// A page of a manager's orders, newest first.
pub async fn list(db: &Db, query: &OrderQuery) -> Result<Vec<OrderSummary>, sqlx::Error> {
    let heads = sqlx::query_as!(
        Head,
        r#"select id, customer_id, customer_email, total_amount as "total_amount: Money", created_at, cancelled_at
             from customer_order
            where manager_id = $1
              and id < coalesce($2, 9223372036854775807)
              and ($3::text is null or customer_id = $3)
              and case $4::text
                    when 'processed' then cancelled_at is null
                    when 'cancelled' then cancelled_at is not null
                    else true
                  end
            order by id desc
            limit $5"#,
        query.manager.as_str(),
        query.after.map(OrderId::get),
        query.customer.as_deref(),
        query.status.map(OrderStatus::as_str),
        query.limit,
    )
    .fetch_all(db)
    .await?;
    Ok(heads.into_iter().map(Into::into).collect())
}

/// Why an order was not cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelRefusal {
    /// Not one of the manager's orders.
    NotFound,
    /// Returning these lines (JSON path → reason) would pass the most a
    /// product may hold.
    OutOfRange(Details),
}

impl From<CancelRefusal> for AppError {
    fn from(refusal: CancelRefusal) -> Self {
        match refusal {
            CancelRefusal::NotFound => Self::order_not_found(),
            CancelRefusal::OutOfRange(d) => Self::new(Code::QuantityOutOfRange).with_details(d),
        }
    }
}

/// Cancels the manager's order `id`: in one transaction, locks the order,
/// then its products in id order, returns every line's units to stock
/// (whatever the product's status), marks the order cancelled and inserts
/// the audit record. An order already cancelled is returned unchanged:
/// concurrent cancels return its stock once.
pub async fn cancel(
    db: &Db,
    manager: &ManagerId,
    id: OrderId,
    audit: &AuditEntry,
) -> Result<Cancel, Failure<CancelRefusal>> {
    retrying(|| cancel_once(db, manager, id, audit), is_transient).await
}

/// What a cancel did.
#[derive(Debug)]
pub enum Cancel {
    /// Cancelled now.
    Done(Committed<OrderView>),
    /// It had been cancelled before; nothing changed.
    Already(OrderView),
}

async fn cancel_once(
    db: &Db,
    manager: &ManagerId,
    id: OrderId,
    audit: &AuditEntry,
) -> Result<Cancel, Failure<CancelRefusal>> {
    let mut tx = db.begin().await?;
    let cancelled = sqlx::query_scalar!(
        "select cancelled_at is not null from customer_order where manager_id = $1 and id = $2 for update",
        manager.as_str(),
        id.get()
    )
    .fetch_optional(&mut tx)
    .await?;
    let record = match cancelled {
        None => return Err(Failure::Refused(CancelRefusal::NotFound)),
        Some(Some(true)) => None,
        Some(_) => {
            let lines = sqlx::query!(
                r#"with lines as (
                       select line_no, product_id, quantity from order_line where manager_id = $1 and order_id = $2
                   ), locked as materialized (
                       select id, quantity, version, low_stock_threshold from product
                        where manager_id = $1 and id in (select product_id from lines)
                        order by id
                          for update
                   ), judged as materialized (
                       select l.line_no, l.product_id, l.quantity as returned, k.quantity::bigint + l.quantity as after,
                              k.version + 1 as version, k.low_stock_threshold
                         from lines l join locked k on k.id = l.product_id
                   ), passes as materialized (
                       select coalesce(bool_and(after <= $3), true) as ok from judged
                   ), restocked as (
                       update product p set quantity = j.after, version = j.version, updated_at = now()
                         from judged j, passes
                        where passes.ok and p.manager_id = $1 and p.id = j.product_id
                   ), marked as (
                       update customer_order set cancelled_at = now()
                        where manager_id = $1 and id = $2 and (select ok from passes)
                   )
                   select line_no as "line_no!", product_id as "product_id!", returned as "returned!",
                          after as "after!", version as "version!", low_stock_threshold,
                          (select ok from passes) as "ok!"
                     from judged order by line_no"#,
                manager.as_str(),
                id.get(),
                MAX_STOCK,
            )
            .fetch_all(&mut tx)
            .await?;
            if lines.first().is_some_and(|l| !l.ok) {
                let details = lines
                    .iter()
                    .filter(|l| l.after > MAX_STOCK)
                    .map(|l| {
                        (
                            format!("products[{}].quantity", l.line_no - 1),
                            format!("returning {} would make {} (at most {MAX_STOCK})", l.returned, l.after),
                        )
                    })
                    .collect();
                return Err(Failure::Refused(CancelRefusal::OutOfRange(details)));
            }
            let mut record = audit.clone();
            record.order_id = Some(id.get());
            record.product_ids = lines.iter().map(|l| l.product_id).collect();
            record.product_ids.sort_unstable();
            crate::audit::sql::append(&mut tx, &record).await?;
            let changes = lines.iter().map(|l| StockChange {
                product: ProductId::from_db(l.product_id),
                previous: l.after as i32 - l.returned,
                quantity: l.after as i32,
                version: l.version,
                threshold: l.low_stock_threshold,
                reason: Reason::Cancel,
                reference: Some(id),
            });
            Some((record, changes.flat_map(|c| c.events()).collect::<Vec<_>>()))
        }
    };
    let view = get(&mut tx, manager, id)
        .await?
        .ok_or(Failure::Refused(CancelRefusal::NotFound))?;
    let record = match record {
        Some((record, mut events)) => {
            events.push(NewEvent {
                kind: EventType::OrderCancelled,
                product_id: None,
                data: crate::db::json_param(&view)?,
            });
            events::append(&mut tx, manager, &events).await?;
            Some(record)
        }
        None => None,
    };
    tx.commit().await?;
    Ok(match record {
        Some(record) => Cancel::Done(Committed::new(view, record)),
        None => Cancel::Already(view),
    })
}

//! Orders: check and sell every line in one SQL statement, or none.

use rust_decimal::Decimal;

use uuid::Uuid;

use super::{Committed, Failure, is_transient, retrying};
use crate::domain::{Money, OrderId, ProductId, order::NewOrder, problems::Details};
use crate::error::{AppError, Code};
use crate::{audit::AuditEntry, db::Db};

/// An order that was sold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Processed {
    /// The new order's id.
    pub order_id: OrderId,
    /// Σ unit price × quantity at the moment of sale.
    pub total: Money,
}

/// How one line looked under lock when the order was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineCheck {
    /// 1-based position in the request.
    pub line_no: i64,
    /// Units asked for.
    pub requested: i32,
    /// Units in stock; `None` when the product is not the manager's.
    pub available: Option<i32>,
    /// Whether it is discontinued; `None` when not the manager's.
    pub discontinued: Option<bool>,
}

/// What is wrong with the products of a refused order, most serious first
/// (the derived order is the contract's precedence: not found, then
/// discontinued, then stock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refusal {
    NotFound,
    Discontinued,
    InsufficientStock,
}

impl LineCheck {
    fn refusal(&self) -> Option<Refusal> {
        match (self.available, self.discontinued) {
            (None, _) | (_, None) => Some(Refusal::NotFound),
            (_, Some(true)) => Some(Refusal::Discontinued),
            (Some(available), _) if available < self.requested => Some(Refusal::InsufficientStock),
            _ => None,
        }
    }
}

/// Why an order was not sold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderRefusal {
    /// Its products: the most serious kind of problem, with every line
    /// (JSON path → reason) that has it.
    Products(Refusal, Details),
    /// Its idempotency key was taken over by a retry after this request
    /// outlived its claim; the retry decides.
    ClaimLost,
}

impl From<OrderRefusal> for AppError {
    fn from(refusal: OrderRefusal) -> Self {
        match refusal {
            OrderRefusal::Products(Refusal::NotFound, d) => Self::new(Code::ProductNotFound).with_details(d),
            OrderRefusal::Products(Refusal::Discontinued, d) => Self::new(Code::ProductDiscontinued).with_details(d),
            OrderRefusal::Products(Refusal::InsufficientStock, d) => Self::new(Code::InsufficientStock).with_details(d),
            OrderRefusal::ClaimLost => Self::new(Code::IdempotencyKeyInUse),
        }
    }
}

/// The refusal of an order that was not sold: the most serious kind of
/// problem, with every line that has it; `None` if no line fails.
pub fn refusal(lines: &[LineCheck]) -> Option<OrderRefusal> {
    let worst = lines.iter().filter_map(LineCheck::refusal).min()?;
    let mut details = Details::new();
    for line in lines.iter().filter(|line| line.refusal() == Some(worst)) {
        let i = line.line_no - 1;
        let (key, why) = match worst {
            Refusal::NotFound => (
                format!("products[{i}].product_id"),
                "not a product of this manager".to_owned(),
            ),
            Refusal::Discontinued => (format!("products[{i}].product_id"), "is discontinued".to_owned()),
            Refusal::InsufficientStock => (
                format!("products[{i}].quantity"),
                format!(
                    "requested {}, available {}",
                    line.requested,
                    line.available.unwrap_or(0)
                ),
            ),
        };
        details.insert(key, why);
    }
    Some(OrderRefusal::Products(worst, details))
}

/// Sells `order` if every line can be sold, in one statement (one round trip,
/// atomic on its own): lock the products in id order (the order every writer
/// uses, so orders cannot deadlock), decrement only when every line passes,
/// insert the order, its lines and its audit record. When nothing was sold,
/// the same statement returns each line as judged under lock, so the error
/// cannot be contradicted by a concurrent restock. With an idempotency key
/// (claimed under the record's attempt), the same statement completes the
/// key with the order it sold.
pub async fn process(
    db: &Db,
    order: &NewOrder,
    audit: &AuditEntry,
    key: Option<&str>,
) -> Result<Committed<Processed>, Failure<OrderRefusal>> {
    // Deadlocks cannot happen between writers that all lock products in id
    // order, but a retry costs nothing when one does (a bug elsewhere, an
    // operator's transaction).
    let claim = key.zip(audit.attempt);
    let sold = retrying(|| process_once(db, order, audit, claim), is_transient).await?;
    let mut record = audit.clone();
    record.order_id = Some(sold.order_id.get());
    record.product_ids = order
        .lines
        .iter()
        .filter_map(|l| l.product.map(ProductId::get))
        .collect();
    record.product_ids.sort_unstable();
    Ok(Committed::new(sold, record))
}

async fn process_once(
    db: &Db,
    order: &NewOrder,
    audit: &AuditEntry,
    claim: Option<(&str, Uuid)>,
) -> Result<Processed, Failure<OrderRefusal>> {
    // Texts that cannot be ids become NULL: found by nothing, reported as not found.
    let ids: Vec<Option<i64>> = order
        .lines
        .iter()
        .map(|line| line.product.map(ProductId::get))
        .collect();
    let quantities: Vec<i32> = order.lines.iter().map(|line| line.quantity).collect();
    let entry = crate::db::json_param(audit)?;
    let rows = sqlx::query!(
        r#"with req as (
               select * from unnest($2::bigint[], $3::int[]) with ordinality as r(id, qty, line_no)
           ), locked as materialized (
               select id, name, price, quantity, discontinued_at is not null as discontinued, version,
                      low_stock_threshold
                 from product
                where manager_id = $1 and id in (select id from req)
                order by id
                  for update
           ), claim as materialized (
               -- With an idempotency key, sell only while the key's claim is
               -- still this request's (locked: a takeover waits for us).
               select idempotency_claim_held($1, $7, $8) as held
           ), sellable as materialized (
               select count(*) = cardinality($3::int[]) and (select held from claim) as ok
                 from req join locked l using (id)
                where not l.discontinued and l.quantity >= req.qty
           ), sold as (
               -- The new stock comes from the locked (latest) row, not from
               -- p: PostgreSQL checks constraints on a row computed from the
               -- statement's snapshot before it notices a concurrent update,
               -- so p.quantity - r.qty could fail quantity >= 0 (a 500) after
               -- a restock that committed while this statement waited.
               update product p
                  set quantity = l.quantity - r.qty, version = l.version + 1, updated_at = now()
                 from req r join locked l using (id), sellable s
                where s.ok and p.manager_id = $1 and p.id = r.id
            returning p.id, p.name, p.price, r.qty, r.line_no, l.quantity as before, p.quantity as after,
                      p.version, l.low_stock_threshold as threshold
           ), placed as (
               insert into customer_order (manager_id, customer_id, customer_email, total_amount)
               select $1, $4, $5, sum(price * qty) from sold having count(*) > 0
            returning id, total_amount, created_at
           ), order_lines as (
               insert into order_line (manager_id, order_id, line_no, product_id, name, quantity, unit_price)
               select $1, o.id, s.line_no, s.id, s.name, s.qty, s.price from placed o, sold s
           ), remembered as (
               update idempotency_key k
                  set status = 200, order_id = o.id, completed_at = now()
                 from placed o
                where k.manager_id = $1 and k.key = $7 and k.claim_token = $8
           ), audited as materialized (
               select audit_append($6, (select array_agg(id order by id) from sold), o.id, false) as done
                 from placed o
           ), evented as materialized (
               -- Last, after every product lock: the manager's event lock
               -- (see event_append). The events, as columns (event_data
               -- builds their JSON when they are read): each product's
               -- stock change (and low stock), then the order. None when
               -- nothing was sold.
               select event_append_rows($1, array_agg(e.event order by e.kind, (e.event).product_id)) as done
                 from (
                   select 1 as kind, event_row('inventory.changed', product_id => s.id, quantity => s.after,
                                               previous_quantity => s.before, version => s.version,
                                               reason => 'order', order_id => o.id)
                     from sold s, placed o
                   union all
                   select 2, event_row('inventory.low_stock', product_id => s.id, quantity => s.after,
                                       threshold => s.threshold, version => s.version)
                     from sold s
                    where s.before >= s.threshold and s.after < s.threshold
                   union all
                   select 3, event_row('order.processed', order_id => o.id)
                     from placed o
                 ) e (kind, event)
           )
           select r.line_no as "line_no!", r.qty as "requested!", l.quantity as "available?",
                  l.discontinued as "discontinued?", o.id as "order_id?", o.total_amount as "total?",
                  not (select held from claim) as "claim_lost!"
             from req r
             left join locked l using (id)
             left join placed o on true
             left join audited on true
             left join evented on true
            order by r.line_no"#,
        order.manager.as_str(),
        &ids as _,
        &quantities,
        order.customer_id.as_str(),
        order.customer_email,
        entry,
        claim.map(|(key, _)| key),
        claim.map(|(_, token)| token),
    )
    .fetch_all(db)
    .await?;
    match rows.first() {
        Some(first) if first.order_id.is_some() => Ok(Processed {
            order_id: OrderId::from_db(first.order_id.unwrap_or_default()),
            total: Money::from_decimal(first.total.unwrap_or(Decimal::ZERO)),
        }),
        Some(first) if first.claim_lost => Err(Failure::Refused(OrderRefusal::ClaimLost)),
        _ => {
            let lines: Vec<LineCheck> = rows
                .iter()
                .map(|r| LineCheck {
                    line_no: r.line_no,
                    requested: r.requested,
                    available: r.available,
                    discontinued: r.discontinued,
                })
                .collect();
            refusal(&lines).map(Failure::Refused).map_or_else(
                || {
                    Err(Failure::Database(sqlx::Error::InvalidArgument(
                        "order refused with no failing line".into(),
                    )))
                },
                Err,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(line_no: i64, requested: i32, available: Option<i32>, discontinued: Option<bool>) -> LineCheck {
        LineCheck {
            line_no,
            requested,
            available,
            discontinued,
        }
    }

    #[test]
    fn not_found_wins_and_lists_every_missing_line() {
        let err = refusal(&[
            line(1, 5, Some(1), Some(false)),
            line(2, 1, None, None),
            line(3, 1, Some(0), Some(true)),
            line(4, 1, None, None),
        ]);
        let Some(OrderRefusal::Products(Refusal::NotFound, details)) = err else {
            panic!("expected 404")
        };
        assert_eq!(
            details.keys().collect::<Vec<_>>(),
            ["products[1].product_id", "products[3].product_id"]
        );
    }

    #[test]
    fn discontinued_comes_before_stock() {
        let err = refusal(&[line(1, 5, Some(1), Some(false)), line(2, 1, Some(9), Some(true))]);
        let Some(OrderRefusal::Products(Refusal::Discontinued, details)) = err else {
            panic!("expected 409 discontinued")
        };
        assert_eq!(details["products[1].product_id"], "is discontinued");
    }

    #[test]
    fn stock_shortfalls_say_what_was_asked_and_what_is_there() {
        let err = refusal(&[line(1, 5, Some(2), Some(false)), line(2, 1, Some(0), Some(false))]);
        let Some(OrderRefusal::Products(Refusal::InsufficientStock, details)) = err else {
            panic!("expected 409 stock")
        };
        assert_eq!(details["products[0].quantity"], "requested 5, available 2");
        assert_eq!(details["products[1].quantity"], "requested 1, available 0");
    }

    #[test]
    fn a_refusal_with_no_failing_line_is_none() {
        assert_eq!(refusal(&[line(1, 1, Some(5), Some(false))]), None);
    }
}

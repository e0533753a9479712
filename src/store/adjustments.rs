//! Stock changed by differences: every difference applied, with its record
//! and the audit record, in one transaction, or none.

use uuid::Uuid;

use super::{
    Committed, Failure,
    events::{self, NewEvent, Reason, StockChange},
    is_transient,
    products::ProductRow,
    retrying,
};
use crate::domain::{
    Money, ProductId,
    adjustment::{MAX_STOCK, StockAdjustments},
    problems::Details,
};
use crate::error::{AppError, Code};
use crate::{audit::AuditEntry, db::Db};

/// What is wrong with refused differences, most serious first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Problem {
    /// Not one of the manager's products.
    NotFound,
    /// Would leave less than nothing.
    InsufficientStock,
    /// Would pass the most a product may hold.
    OutOfRange,
}

/// Why differences were not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdjustRefusal {
    /// The most serious kind of problem, with every item (JSON path →
    /// reason) that has it.
    Products(Problem, Details),
    /// The idempotency key was taken over by a retry.
    ClaimLost,
}

impl From<AdjustRefusal> for AppError {
    fn from(refusal: AdjustRefusal) -> Self {
        match refusal {
            AdjustRefusal::Products(Problem::NotFound, d) => Self::new(Code::ProductNotFound).with_details(d),
            AdjustRefusal::Products(Problem::InsufficientStock, d) => {
                Self::new(Code::InsufficientStock).with_details(d)
            }
            AdjustRefusal::Products(Problem::OutOfRange, d) => Self::new(Code::QuantityOutOfRange).with_details(d),
            AdjustRefusal::ClaimLost => Self::new(Code::IdempotencyKeyInUse),
        }
    }
}

/// One difference as judged under lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    /// 0-based position in the request.
    pub index: usize,
    /// The difference.
    pub delta: i32,
    /// Stock before, `None` when the product is not the manager's.
    pub available: Option<i32>,
}

impl Judged {
    fn problem(&self) -> Option<(Problem, String, String)> {
        let i = self.index;
        let Some(available) = self.available else {
            return Some((
                Problem::NotFound,
                format!("adjustments[{i}].product_id"),
                "not a product of this manager".into(),
            ));
        };
        let after = i64::from(available) + i64::from(self.delta);
        if after < 0 {
            Some((
                Problem::InsufficientStock,
                format!("adjustments[{i}].delta"),
                format!("would leave {after} (available {available})"),
            ))
        } else if after > MAX_STOCK {
            Some((
                Problem::OutOfRange,
                format!("adjustments[{i}].delta"),
                format!("would make {after} (at most {MAX_STOCK})"),
            ))
        } else {
            None
        }
    }
}

/// The refusal for differences judged under lock: the most serious kind,
/// with every item that has it; `None` when every item passes.
pub fn refusal(judged: &[Judged]) -> Option<AdjustRefusal> {
    let problems: Vec<_> = judged.iter().filter_map(Judged::problem).collect();
    let worst = problems.iter().map(|p| p.0).min()?;
    let details = problems
        .into_iter()
        .filter(|p| p.0 == worst)
        .map(|(_, key, why)| (key, why))
        .collect();
    Some(AdjustRefusal::Products(worst, details))
}

/// Applies every difference or none, locking the products in id order (as
/// orders do, so the two cannot deadlock), with a `stock_adjustment` row per
/// difference and the audit record; with an idempotency key, only while this
/// request owns the key (claimed under the record's attempt), whose outcome
/// (`answer`, the response body) is kept in the same transaction. Returns
/// the products after the change, in request order.
pub async fn apply(
    db: &Db,
    request: &StockAdjustments,
    audit: &AuditEntry,
    key: Option<&str>,
) -> Result<Committed<Vec<ProductRow>>, Failure<AdjustRefusal>> {
    let claim = key.zip(audit.attempt);
    retrying(|| apply_once(db, request, audit, claim), is_transient).await
}

async fn apply_once(
    db: &Db,
    request: &StockAdjustments,
    audit: &AuditEntry,
    claim: Option<(&str, Uuid)>,
) -> Result<Committed<Vec<ProductRow>>, Failure<AdjustRefusal>> {
    let ids: Vec<Option<i64>> = request.items.iter().map(|a| a.product.map(ProductId::get)).collect();
    let deltas: Vec<i32> = request.items.iter().map(|a| a.delta).collect();
    let mut tx = db.begin().await?;
    let rows = sqlx::query!(
        r#"with req as (
               select * from unnest($2::bigint[], $3::int[]) with ordinality as r(id, delta, line_no)
           ), locked as materialized (
               select id, name, price, quantity, version, low_stock_threshold
                 from product
                where manager_id = $1 and id in (select id from req)
                order by id
                  for update
           ), claim as materialized (
               select idempotency_claim_held($1, $4, $5) as held
           ), judged as materialized (
               select r.line_no, r.id, r.delta, l.name, l.price, l.quantity as available,
                      l.quantity::bigint + r.delta as after, l.version + 1 as version, l.low_stock_threshold
                 from req r left join locked l using (id)
           ), passes as materialized (
               select count(*) = cardinality($3::int[]) and (select held from claim) as ok
                 from judged
                where available is not null and after between 0 and 1000000000
           ), changed as (
               update product p
                  set quantity = j.after, version = j.version, updated_at = now()
                 from judged j, passes
                where passes.ok and p.manager_id = $1 and p.id = j.id
           ), recorded as (
               insert into stock_adjustment (manager_id, product_id, delta)
               select $1, j.id, j.delta from judged j, passes where passes.ok order by j.id
           )
           select j.line_no as "line_no!", j.id as "id?: ProductId", j.delta as "delta!",
                  j.available as "available?", j.name as "name?", j.price as "price?: Money",
                  j.after::int as "after?", j.version as "version?", j.low_stock_threshold as "threshold?",
                  (select ok from passes) as "applied!",
                  not (select held from claim) as "claim_lost!"
             from judged j
            order by j.line_no"#,
        request.manager.as_str(),
        &ids as _,
        &deltas,
        claim.map(|(key, _)| key),
        claim.map(|(_, token)| token),
    )
    .fetch_all(&mut tx)
    .await?;
    if rows.first().is_some_and(|r| r.claim_lost) {
        return Err(Failure::Refused(AdjustRefusal::ClaimLost));
    }
    if !rows.first().is_some_and(|r| r.applied) {
        let judged: Vec<Judged> = rows
            .iter()
            .map(|r| Judged {
                index: (r.line_no - 1) as usize,
                delta: r.delta,
                available: r.available,
            })
            .collect();
        return Err(refusal(&judged).map_or_else(
            || {
                Failure::Database(sqlx::Error::InvalidArgument(
                    "adjustments refused with no failing item".into(),
                ))
            },
            Failure::Refused,
        ));
    }
    let events: Vec<NewEvent> = rows
        .iter()
        .filter_map(|r| {
            Some(StockChange {
                product: r.id?,
                previous: r.available?,
                quantity: r.after?,
                version: r.version?,
                threshold: r.threshold,
                reason: Reason::Adjustment,
                reference: None,
            })
        })
        .flat_map(|change| change.events())
        .collect();
    let products: Vec<ProductRow> = rows
        .into_iter()
        .filter_map(|r| {
            Some(ProductRow {
                id: r.id?,
                name: r.name?,
                price: r.price?,
                quantity: r.after?,
            })
        })
        .collect();
    let mut record = audit.clone();
    record.product_ids = products.iter().map(|p| p.id.get()).collect();
    record.product_ids.sort_unstable();
    crate::audit::sql::append(&mut tx, &record).await?;
    if let Some((key, token)) = claim {
        let answer = crate::db::json_param(&serde_json::json!({ "products": &products }))?;
        super::idempotency::answered(&mut tx, &request.manager, key, token, 200, &answer).await?;
    }
    events::append(&mut tx, &request.manager, &events).await?;
    tx.commit().await?;
    Ok(Committed::new(products, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(index: usize, delta: i32, available: Option<i32>) -> Judged {
        Judged {
            index,
            delta,
            available,
        }
    }

    #[test]
    fn not_found_comes_first_then_shortfalls_then_overflows() {
        let all = [
            judged(0, -5, Some(2)),
            judged(1, 5, None),
            judged(2, 1_000_000_000, Some(1)),
        ];
        let Some(AdjustRefusal::Products(Problem::NotFound, details)) = refusal(&all) else {
            panic!("expected not found")
        };
        assert_eq!(details.keys().collect::<Vec<_>>(), ["adjustments[1].product_id"]);
        let Some(AdjustRefusal::Products(Problem::InsufficientStock, details)) =
            refusal(&[all[0].clone(), all[2].clone()])
        else {
            panic!("expected a shortfall")
        };
        assert_eq!(details["adjustments[0].delta"], "would leave -3 (available 2)");
        let Some(AdjustRefusal::Products(Problem::OutOfRange, details)) = refusal(&[all[2].clone()]) else {
            panic!("expected an overflow")
        };
        assert_eq!(
            details["adjustments[2].delta"],
            "would make 1000000001 (at most 1000000000)"
        );
        assert_eq!(refusal(&[judged(0, -2, Some(2))]), None);
    }
}

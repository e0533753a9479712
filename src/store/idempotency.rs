//! Idempotency keys of orders and stock adjustments (one key space per
//! manager): claim a key, answer a retry from the stored outcome, record an
//! answer, release a key whose request failed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::domain::{ManagerId, Money, OrderId};
use crate::{audit::AuditEntry, db::Db};

/// What a request carrying a key may do.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The key is this request's, claimed under its write attempt: process
    /// it, then record the outcome (only while the key is still claimed so).
    Owned,
    /// The key's first request sold this order: answer the same.
    Sold {
        /// The order sold.
        order_id: OrderId,
        /// Its total.
        total: Money,
    },
    /// The key's first request got this answer: give the same.
    Answered {
        /// 200, 404 or 409.
        status: u16,
        /// The body it got (a result, or an error envelope).
        body: Value,
    },
    /// The key was first used with another body.
    Reused,
    /// The key's first request has not settled it: it is still running, or
    /// it ended without learning its outcome (then `attempt`, which arrived
    /// at `since`, can be fenced to settle it).
    InUse {
        /// The claiming request's write attempt, if the claim is visible.
        attempt: Option<Uuid>,
        /// When that request arrived.
        since: Option<DateTime<Utc>>,
        /// That request's id.
        request_id: Option<String>,
    },
}

/// Claims `key` for a request with this (canonical) body, under its write
/// attempt (the attempt, arrival time and request id of `record`).
pub async fn claim(
    db: &Db,
    manager: &ManagerId,
    key: &str,
    request: &str,
    record: &AuditEntry,
) -> Result<Claim, sqlx::Error> {
    let row = sqlx::query!(
        r#"with claimed as (
               insert into idempotency_key (manager_id, key, request, claim_token, claimed_at, claim_request_id)
               values ($1, $2, $3, $4, $5, $6)
               on conflict (manager_id, key) do nothing
            returning 1
           )
           select exists (select 1 from claimed) as "owned!",
                  k.request = $3 as "same_request?",
                  k.status as "status?",
                  k.response as "response?",
                  k.claim_token as "attempt?",
                  k.claimed_at as "since?",
                  k.claim_request_id as "request_id?",
                  o.id as "order_id?",
                  o.total_amount as "total?"
             from (values (1)) as one (x)
             left join idempotency_key k on k.manager_id = $1 and k.key = $2
             left join customer_order o on o.manager_id = k.manager_id and o.id = k.order_id"#,
        manager.as_str(),
        key,
        request,
        record.attempt,
        record.occurred_at,
        record.request_id,
    )
    .fetch_one(db)
    .await?;
    Ok(match row {
        r if r.owned => Claim::Owned,
        // Claimed by a request that committed after this statement began.
        r if r.same_request.is_none() => Claim::InUse {
            attempt: None,
            since: None,
            request_id: None,
        },
        r if r.same_request == Some(false) => Claim::Reused,
        r => match (r.status, r.order_id, r.total, r.response) {
            (Some(200), Some(order_id), Some(total), _) => Claim::Sold {
                order_id: OrderId::from_db(order_id),
                total: Money::from_decimal(total),
            },
            (Some(status), _, _, Some(body)) => Claim::Answered {
                status: status as u16,
                body,
            },
            _ => Claim::InUse {
                attempt: r.attempt,
                since: r.since,
                request_id: r.request_id,
            },
        },
    })
}

/// Records the answer the key's request got (a refusal, or a result kept
/// whole), if the key is still claimed with `token`.
pub async fn answered<'e>(
    db: impl sqlx::PgExecutor<'e>,
    manager: &ManagerId,
    key: &str,
    token: Uuid,
    status: u16,
    body: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update idempotency_key set status = $3, response = $4, completed_at = now()
          where manager_id = $1 and key = $2 and claim_token = $5 and status is null",
        manager.as_str(),
        key,
        status as i16,
        body,
        token,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Frees the key of a request known to have applied nothing (a statement
/// refused or timed out, no connection), so a retry runs again, if the key
/// is still claimed with `token`.
pub async fn release(db: &Db, manager: &ManagerId, key: &str, token: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "delete from idempotency_key where manager_id = $1 and key = $2 and claim_token = $3 and status is null",
        manager.as_str(),
        key,
        token
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Forgets keys claimed longer ago than `age`.
pub async fn forget_older_than(db: &Db, age: Duration) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "delete from idempotency_key where claimed_at < now() - make_interval(secs => $1)",
        age.as_secs_f64()
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

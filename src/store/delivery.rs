//! The SQL of webhook delivery: moving endpoints' cursors along the feed
//! (queueing deliveries), claiming due deliveries with a lease and a fencing
//! token, renewing the lease, and completing a claim. Each is one short
//! transaction; no connection is held while a receiver is being called.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use super::events::{self, NewEvent};
use crate::{
    db::Db,
    domain::{ManagerId, WebhookId, event::EventType},
};

/// Most events one endpoint's cursor moves over in one step.
pub const QUEUE_BATCH: i64 = 500;

/// Moves the cursor of every enabled endpoint that is behind its manager's
/// feed (skipping endpoints another instance is moving), queueing a
/// delivery for each event whose type it subscribes to, in feed order, in
/// the same transaction. Returns how many deliveries were queued.
pub async fn queue_new_events(db: &Db) -> Result<i64, sqlx::Error> {
    let queued = sqlx::query_scalar!(
        r#"with hooks as (
               select w.manager_id, w.id, w.cursor, w.event_types
                 from webhook w
                where w.disabled_at is null
                  and exists (select 1 from event e where e.manager_id = w.manager_id and e.id > w.cursor)
                  for update of w skip locked
           ), batch as (
               select h.manager_id, h.id as webhook_id, e.id as event_id, e.product_id,
                      cardinality(h.event_types) = 0 or e.type = any(h.event_types) as wanted
                 from hooks h
                cross join lateral (
                    select id, product_id, type from event
                     where manager_id = h.manager_id and id > h.cursor
                     order by id limit $1) e
           ), queued as (
               insert into webhook_queue (manager_id, webhook_id, event_id, product_id)
               select manager_id, webhook_id, event_id, product_id from batch
                where wanted
                order by manager_id, webhook_id, event_id
               returning 1
           ), moved as (
               update webhook w set cursor = m.top
                 from (select manager_id, webhook_id, max(event_id) as top from batch group by 1, 2) m
                where w.manager_id = m.manager_id and w.id = m.webhook_id
               returning 1
           )
           select (select count(*) from queued) + 0 * (select count(*) from moved) as "queued!""#,
        QUEUE_BATCH,
    )
    .fetch_one(db)
    .await?;
    Ok(queued)
}

/// A delivery claimed for one attempt.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The endpoint's manager.
    pub manager: String,
    /// The queued delivery.
    pub queue_id: i64,
    /// The fencing token of this claim.
    pub token: Uuid,
    /// The endpoint.
    pub webhook_id: i64,
    /// The event.
    pub event_id: i64,
    /// This attempt's number (1 for the first).
    pub attempt: i32,
    /// Where to send it.
    pub url: String,
    /// The signing secrets (base64 of the bytes): the current one, then the
    /// previous one while a rotation's overlap lasts.
    pub secrets: Vec<String>,
    /// The event's type.
    pub kind: String,
    /// When the event was recorded.
    pub occurred_at: DateTime<Utc>,
    /// The event's data.
    pub data: Value,
}

/// How many due deliveries of one endpoint a claim looks at.
const PER_ENDPOINT: i64 = 16;

/// Claims at most `max` due deliveries of enabled endpoints (skipping rows
/// other instances hold), each with a lease of `lease_secs` and a fresh
/// fencing token. Endpoints take turns: every endpoint's earliest due
/// delivery comes before any endpoint's second, so one endpoint's backlog
/// (a slow or failing receiver) cannot hold back the others'. A delivery
/// is not due while an earlier queued delivery of the same product to the
/// same endpoint is still there (being tried or waiting for a retry).
pub async fn claim(db: &Db, max: i64, lease_secs: i32) -> Result<Vec<Claim>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"with due as (
               select q.manager_id, q.id
                 from webhook w
                cross join lateral (
                    select r.id, r.due_at, row_number() over (order by r.due_at, r.id) as turn
                      from webhook_queue r
                     where r.manager_id = w.manager_id and r.webhook_id = w.id
                       and r.due_at <= now()
                       and (r.lease_until is null or r.lease_until < now())
                       and (r.product_id is null or not exists (
                             select 1 from webhook_queue p
                              where p.manager_id = r.manager_id and p.webhook_id = r.webhook_id
                                and p.product_id = r.product_id and p.id < r.id))
                     order by r.due_at, r.id
                     limit $3
                ) c
                 join webhook_queue q on q.manager_id = w.manager_id and q.id = c.id
                where w.disabled_at is null
                  -- Again on q, the row locked: a row another instance
                  -- claimed and committed after this statement's snapshot
                  -- is locked in its new version and checked again on q's
                  -- conditions only (not on c's), so without these it
                  -- would be claimed twice.
                  and q.due_at <= now() and (q.lease_until is null or q.lease_until < now())
                order by c.turn, c.due_at, c.id
                limit $1
                  for update of q skip locked
           )
           update webhook_queue q
              set token = gen_random_uuid(), lease_until = now() + make_interval(secs => $2),
                  attempts = q.attempts + 1
             from due, webhook w, event e
            where q.manager_id = due.manager_id and q.id = due.id
              and w.manager_id = q.manager_id and w.id = q.webhook_id
              and e.manager_id = q.manager_id and e.id = q.event_id
        returning q.manager_id, q.id, q.token as "token!", q.webhook_id, q.event_id, q.attempts,
                  w.url, w.secret,
                  case when w.previous_secret_expires_at > now() then w.previous_secret end as previous_secret,
                  e.type as kind, e.occurred_at, event_data(e) as "data!""#,
        max,
        f64::from(lease_secs),
        PER_ENDPOINT,
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Claim {
            manager: r.manager_id,
            queue_id: r.id,
            token: r.token,
            webhook_id: r.webhook_id,
            event_id: r.event_id,
            attempt: r.attempts,
            url: r.url,
            secrets: std::iter::once(r.secret).chain(r.previous_secret).collect(),
            kind: r.kind,
            occurred_at: r.occurred_at,
            data: r.data,
        })
        .collect())
}

/// Extends the claim's lease to `lease_secs` from now, if it is still this
/// claim's; whether it was.
pub async fn renew(db: &Db, claim: &Claim, lease_secs: i32) -> Result<bool, sqlx::Error> {
    let renewed = sqlx::query!(
        "update webhook_queue set lease_until = now() + make_interval(secs => $4)
          where manager_id = $1 and id = $2 and token = $3 and lease_until > now()",
        claim.manager,
        claim.queue_id,
        claim.token,
        f64::from(lease_secs),
    )
    .execute(db)
    .await?;
    Ok(renewed.rows_affected() == 1)
}

/// What becomes of a claimed delivery after its attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Delivered: it leaves the queue.
    Delivered,
    /// Failed: tried again at this time.
    Retry(DateTime<Utc>),
    /// Failed for the last time: it leaves the queue.
    GiveUp,
    /// Answered 410: it leaves the queue and the endpoint is disabled.
    Disable(String),
}

/// An attempt's result, as the deliveries log records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// The receiver's status code, if it answered.
    pub status_code: Option<i16>,
    /// Why it failed without an answer, or a note.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: i32,
    /// What follows.
    pub next: Next,
}

/// Records the attempt of `claim` and applies its outcome, only if the
/// claim still holds: its token is the delivery's and its lease has not
/// run out. A stale claim changes nothing and gets `false`. A success
/// clears the endpoint's failing streak; a failure starts it, and disables
/// the endpoint once it has lasted `disable_after`.
pub async fn complete(
    db: &Db,
    claim: &Claim,
    attempt: &Attempt,
    disable_after: std::time::Duration,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let retry_at = match attempt.next {
        Next::Retry(at) => Some(at),
        _ => None,
    };
    let held = sqlx::query_scalar!(
        r#"with kept as (
               update webhook_queue set token = null, lease_until = null, due_at = $4
                where manager_id = $1 and id = $2 and token = $3 and lease_until > now() and $4::timestamptz is not null
               returning id
           ), gone as (
               delete from webhook_queue
                where manager_id = $1 and id = $2 and token = $3 and lease_until > now() and $4::timestamptz is null
               returning id
           )
           select (select count(*) from kept) + (select count(*) from gone) as "held!""#,
        claim.manager,
        claim.queue_id,
        claim.token,
        retry_at,
    )
    .fetch_one(&mut tx)
    .await?;
    if held == 0 {
        return Ok(false);
    }
    let error = attempt.error.as_ref().map(|e| e.chars().take(200).collect::<String>());
    sqlx::query!(
        "insert into webhook_delivery
             (manager_id, webhook_id, event_id, attempt, status_code, error, duration_ms, next_attempt_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
        claim.manager,
        claim.webhook_id,
        claim.event_id,
        claim.attempt,
        attempt.status_code,
        error,
        attempt.duration_ms,
        retry_at,
    )
    .execute(&mut tx)
    .await?;
    match &attempt.next {
        Next::Disable(reason) => disable(&mut tx, &claim.manager, claim.webhook_id, reason).await?,
        Next::Delivered => {
            sqlx::query!(
                "update webhook set failing_since = null
                  where manager_id = $1 and id = $2 and failing_since is not null",
                claim.manager,
                claim.webhook_id,
            )
            .execute(&mut tx)
            .await?;
        }
        Next::Retry(_) | Next::GiveUp => {
            let overdue = sqlx::query_scalar!(
                r#"update webhook set failing_since = coalesce(failing_since, now())
                    where manager_id = $1 and id = $2
                returning disabled_at is null
                          and failing_since <= now() - make_interval(secs => $3) as "overdue!""#,
                claim.manager,
                claim.webhook_id,
                disable_after.as_secs_f64(),
            )
            .fetch_optional(&mut tx)
            .await?;
            if overdue == Some(true) {
                let hours = disable_after.as_secs_f64() / 3600.0;
                let unit = if hours == 1.0 { "hour" } else { "hours" };
                let reason = format!("every delivery failed for {hours} {unit}");
                disable(&mut tx, &claim.manager, claim.webhook_id, &reason).await?;
            }
        }
    }
    tx.commit().await?;
    Ok(true)
}

/// Completes delivered attempts in one statement: each whose claim still
/// holds leaves the queue, gets its log row, and ends its endpoint's
/// failing streak; a stale claim changes nothing. Returns how many held.
pub async fn complete_delivered(db: &Db, done: &[(Claim, Attempt)]) -> Result<usize, sqlx::Error> {
    let mut managers = Vec::with_capacity(done.len());
    let mut ids = Vec::with_capacity(done.len());
    let mut tokens = Vec::with_capacity(done.len());
    let mut status_codes = Vec::with_capacity(done.len());
    let mut durations = Vec::with_capacity(done.len());
    for (claim, attempt) in done {
        managers.push(claim.manager.clone());
        ids.push(claim.queue_id);
        tokens.push(claim.token);
        status_codes.push(attempt.status_code.unwrap_or(200));
        durations.push(attempt.duration_ms);
    }
    let held = sqlx::query_scalar!(
        r#"with done as (
               select * from unnest($1::text[], $2::bigint[], $3::uuid[], $4::smallint[], $5::int[])
                   as d(manager_id, id, token, status_code, duration_ms)
           ), held as materialized (
               -- Locked in (manager_id, id) order, as an endpoint's delete
               -- locks its queued rows, so the two cannot deadlock.
               select q.manager_id, q.id
                 from webhook_queue q join done d using (manager_id, id)
                where q.token = d.token and q.lease_until > now()
                order by q.manager_id, q.id
                  for update of q
           ), gone as (
               delete from webhook_queue q using held h
                where q.manager_id = h.manager_id and q.id = h.id
               returning q.manager_id, q.id, q.webhook_id, q.event_id, q.attempts
           ), logged as (
               insert into webhook_delivery (manager_id, webhook_id, event_id, attempt, status_code, duration_ms)
               select g.manager_id, g.webhook_id, g.event_id, g.attempts, d.status_code, d.duration_ms
                 from gone g join done d using (manager_id, id)
                order by g.manager_id, g.id
           ), failing as materialized (
               -- Endpoints' rows, too, in key order.
               select w.manager_id, w.id from webhook w
                where (w.manager_id, w.id) in (select manager_id, webhook_id from gone)
                  and w.failing_since is not null
                order by w.manager_id, w.id
                  for update of w
           ), cleared as (
               update webhook w set failing_since = null
                 from failing f
                where w.manager_id = f.manager_id and w.id = f.id
           )
           select count(*) as "held!" from gone"#,
        &managers,
        &ids,
        &tokens,
        &status_codes,
        &durations,
    )
    .fetch_one(db)
    .await?;
    Ok(usize::try_from(held).unwrap_or(0))
}

/// Disables the endpoint (if it is enabled) and adds `webhook.disabled` to
/// its manager's feed, through the function every write adds events with.
async fn disable(tx: &mut crate::db::Tx, manager: &str, webhook_id: i64, reason: &str) -> Result<(), sqlx::Error> {
    let disabled = sqlx::query_scalar!(
        "update webhook set disabled_at = now(), disabled_reason = $3
          where manager_id = $1 and id = $2 and disabled_at is null
         returning id",
        manager,
        webhook_id,
        reason,
    )
    .fetch_optional(&mut *tx)
    .await?;
    if disabled.is_some() {
        let manager = ManagerId::parse(manager).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        let event = NewEvent {
            kind: EventType::WebhookDisabled,
            product_id: None,
            data: json!({"webhook_id": WebhookId::from_db(webhook_id), "reason": reason}),
        };
        events::append(tx, &manager, &[event]).await?;
    }
    Ok(())
}

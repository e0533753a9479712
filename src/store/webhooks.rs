//! Webhook endpoints: register, list, read, delete, rotate the secret,
//! the deliveries log, and replay. Writes commit with their audit record.

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Committed, Failure};
use crate::{
    audit::AuditEntry,
    db::Db,
    domain::{
        EventId, ManagerId, WebhookId,
        webhook::{MAX_PER_MANAGER, NewWebhook},
    },
    error::{AppError, Code},
};

/// The prefix of a secret as it is shown.
pub const SECRET_PREFIX: &str = "whsec_";

/// A new secret: 32 random bytes (two version-4 UUIDs' worth, from the
/// operating system's generator), base64 as stored.
fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// An endpoint as the API shows it; `secret` only when registered or rotated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = Webhook, example = json!({"id": "wh_001", "url": "https://erp.example.com/hooks/inventory",
    "event_types": ["inventory.changed"], "description": "Stock sync to the ERP", "status": "enabled",
    "created_at": "2026-12-04T10:00:00.123456Z"}))]
pub struct WebhookView {
    /// Public id, `wh_001` onwards.
    #[schema(value_type = String, example = "wh_001")]
    pub id: WebhookId,
    /// Where events are sent.
    pub url: String,
    /// The types sent; empty: every type.
    pub event_types: Vec<String>,
    /// The manager's note, or null.
    pub description: Option<String>,
    /// `enabled`, or `disabled` (after a 410, or failing too long).
    #[schema(pattern = "^(enabled|disabled)$")]
    pub status: String,
    /// The signing secret (`whsec_` and base64): only in the answers of
    /// registration and rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: Option<String>,
    /// When it was registered (RFC 3339, UTC).
    pub created_at: DateTime<Utc>,
}

struct Row {
    id: i64,
    url: String,
    event_types: Vec<String>,
    description: Option<String>,
    disabled: bool,
    created_at: DateTime<Utc>,
}

impl Row {
    fn view(self, secret: Option<&str>) -> WebhookView {
        WebhookView {
            id: WebhookId::from_db(self.id),
            url: self.url,
            event_types: self.event_types,
            description: self.description,
            status: if self.disabled { "disabled" } else { "enabled" }.to_owned(),
            secret: secret.map(|s| format!("{SECRET_PREFIX}{s}")),
            created_at: self.created_at,
        }
    }
}

/// Why an endpoint was not registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterRefusal {
    /// The manager has [`MAX_PER_MANAGER`] endpoints.
    LimitReached,
}

impl From<RegisterRefusal> for AppError {
    fn from(_: RegisterRefusal) -> Self {
        Self::new(Code::WebhookLimitReached)
    }
}

/// Registers `hook` with a new secret, at most [`MAX_PER_MANAGER`] per
/// manager (counted under a lock of the manager's endpoints), starting after
/// the newest event of the manager's feed.
pub async fn register(
    db: &Db,
    hook: &NewWebhook,
    audit: &AuditEntry,
) -> Result<Committed<WebhookView>, Failure<RegisterRefusal>> {
    let secret = new_secret();
    let types: Vec<&str> = hook.event_types.iter().map(|t| t.as_str()).collect();
    let mut tx = db.begin().await?;
    let count = sqlx::query_scalar!(
        r#"select (select count(*) from webhook where manager_id = $1) as "count!"
             from (select pg_advisory_xact_lock(1703, hashtext($1))) locked"#,
        hook.manager.as_str()
    )
    .fetch_one(&mut tx)
    .await?;
    if count >= MAX_PER_MANAGER {
        return Err(Failure::Refused(RegisterRefusal::LimitReached));
    }
    // Every event this snapshot shows has an id below every event it does
    // not (see event_append), so the newest shown is an exact start.
    let row = sqlx::query_as!(
        Row,
        r#"insert into webhook (manager_id, url, event_types, description, secret, cursor)
           values ($1, $2, $3, $4, $5, (select coalesce(max(id), 0) from event where manager_id = $1))
           returning id, url, event_types, description, disabled_at is not null as "disabled!", created_at"#,
        hook.manager.as_str(),
        hook.url.as_str(),
        &types as _,
        hook.description.as_deref(),
        secret,
    )
    .fetch_one(&mut tx)
    .await?;
    let record = audit.clone();
    crate::audit::sql::append(&mut tx, &record).await?;
    tx.commit().await?;
    Ok(Committed::new(row.view(Some(&secret)), record))
}

/// The manager's endpoints, oldest first, without secrets.
pub async fn list(db: &Db, manager: &ManagerId) -> Result<Vec<WebhookView>, sqlx::Error> {
    let rows = sqlx::query_as!(
        Row,
        r#"select id, url, event_types, description, disabled_at is not null as "disabled!", created_at
             from webhook where manager_id = $1 order by id"#,
        manager.as_str()
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| r.view(None)).collect())
}

/// The manager's endpoint `id`, without its secret.
pub async fn get(db: &Db, manager: &ManagerId, id: WebhookId) -> Result<Option<WebhookView>, sqlx::Error> {
    let row = sqlx::query_as!(
        Row,
        r#"select id, url, event_types, description, disabled_at is not null as "disabled!", created_at
             from webhook where manager_id = $1 and id = $2"#,
        manager.as_str(),
        id.get()
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| r.view(None)))
}

/// Deletes the manager's endpoint `id` and its deliveries log; `None` when
/// it is not theirs.
pub async fn delete(
    db: &Db,
    manager: &ManagerId,
    id: WebhookId,
    audit: &AuditEntry,
) -> Result<Option<Committed<()>>, sqlx::Error> {
    let mut tx = db.begin().await?;
    // Its queued deliveries first, in key order, then the endpoint: the
    // order in which the delivery worker's completions lock them (queue
    // rows by key, then endpoints' rows), so the two cannot deadlock.
    sqlx::query!(
        "with held as (
             select id from webhook_queue where manager_id = $1 and webhook_id = $2
              order by id
                for update
         )
         delete from webhook_queue q using held h where q.manager_id = $1 and q.id = h.id",
        manager.as_str(),
        id.get()
    )
    .execute(&mut tx)
    .await?;
    let deleted = sqlx::query_scalar!(
        "delete from webhook where manager_id = $1 and id = $2 returning id",
        manager.as_str(),
        id.get()
    )
    .fetch_optional(&mut tx)
    .await?;
    if deleted.is_none() {
        return Ok(None);
    }
    let record = audit.clone();
    crate::audit::sql::append(&mut tx, &record).await?;
    tx.commit().await?;
    Ok(Some(Committed::new((), record)))
}

/// How long a rotated-out secret still signs deliveries.
pub const ROTATION_OVERLAP_HOURS: i32 = 24;

/// Gives the manager's endpoint `id` a new secret; the previous one keeps
/// signing (beside it) for [`ROTATION_OVERLAP_HOURS`]. `None` when not theirs.
pub async fn rotate(
    db: &Db,
    manager: &ManagerId,
    id: WebhookId,
    audit: &AuditEntry,
) -> Result<Option<Committed<WebhookView>>, sqlx::Error> {
    let secret = new_secret();
    let mut tx = db.begin().await?;
    let row = sqlx::query_as!(
        Row,
        r#"update webhook
              set previous_secret = secret, secret = $3,
                  previous_secret_expires_at = now() + make_interval(hours => $4)
            where manager_id = $1 and id = $2
        returning id, url, event_types, description, disabled_at is not null as "disabled!", created_at"#,
        manager.as_str(),
        id.get(),
        secret,
        ROTATION_OVERLAP_HOURS,
    )
    .fetch_optional(&mut tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let record = audit.clone();
    crate::audit::sql::append(&mut tx, &record).await?;
    tx.commit().await?;
    Ok(Some(Committed::new(row.view(Some(&secret)), record)))
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"event_id": "evt_042", "attempt": 2, "status_code": 503, "error": null,
    "at": "2026-12-04T10:15:36.000000Z", "duration_ms": 120, "next_attempt_at": "2026-12-04T10:20:36.000000Z"}))]
pub struct DeliveryRow {
    /// Position in the log (the `after` of the next page).
    #[serde(skip)]
    pub seq: i64,
    /// The event delivered.
    #[schema(value_type = String, example = "evt_042")]
    pub event_id: EventId,
    /// 1 for the first attempt, then 2, …
    pub attempt: i32,
    /// The receiver's answer, or null when there was none.
    pub status_code: Option<i16>,
    /// Why the attempt failed without an answer (e.g. "address not allowed", "timed out"), or null.
    pub error: Option<String>,
    /// When it was made (RFC 3339, UTC).
    pub at: DateTime<Utc>,
    /// How long it took.
    pub duration_ms: i32,
    /// When the next attempt is due, or null (delivered, or given up).
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// A page of the endpoint's deliveries log, newest first, before `after`;
/// `None` when the endpoint is not the manager's.
pub async fn deliveries(
    db: &Db,
    manager: &ManagerId,
    id: WebhookId,
    after: Option<i64>,
    fetch: i64,
) -> Result<Option<Vec<DeliveryRow>>, sqlx::Error> {
    if get(db, manager, id).await?.is_none() {
        return Ok(None);
    }
    let rows = sqlx::query_as!(
        DeliveryRow,
        r#"select id as seq, event_id as "event_id: EventId", attempt, status_code, error, at, duration_ms,
                  next_attempt_at
             from webhook_delivery
            where manager_id = $1 and webhook_id = $2 and id < coalesce($3, 9223372036854775807)
            order by id desc
            limit $4"#,
        manager.as_str(),
        id.get(),
        after,
        fetch,
    )
    .fetch_all(db)
    .await?;
    Ok(Some(rows))
}

/// Why a replay was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayRefusal {
    /// Not one of the manager's endpoints.
    NotFound,
    /// `after` is not an event of the manager's feed.
    UnknownEvent,
}

impl From<ReplayRefusal> for AppError {
    fn from(refusal: ReplayRefusal) -> Self {
        match refusal {
            ReplayRefusal::NotFound => Self::new(Code::WebhookNotFound),
            ReplayRefusal::UnknownEvent => Self::invalid("after", "is not an event of this manager's feed"),
        }
    }
}

/// Moves the endpoint's feed position back to `after` (absent: before every
/// kept event): every event after it is delivered again, with its own id.
pub async fn replay(
    db: &Db,
    manager: &ManagerId,
    id: WebhookId,
    after: Option<EventId>,
    audit: &AuditEntry,
) -> Result<Committed<()>, Failure<ReplayRefusal>> {
    let mut tx = db.begin().await?;
    let outcome = sqlx::query!(
        r#"with known as (
               select $3::bigint = 0 or exists(select 1 from event where manager_id = $1 and id = $3) as ok
           ), moved as (
               update webhook set cursor = $3
                where manager_id = $1 and id = $2 and (select ok from known)
            returning id
           )
           select (select ok from known) as "known!",
                  exists(select 1 from webhook where manager_id = $1 and id = $2) as "found!""#,
        manager.as_str(),
        id.get(),
        after.map_or(0, EventId::get),
    )
    .fetch_one(&mut tx)
    .await?;
    if !outcome.found {
        return Err(Failure::Refused(ReplayRefusal::NotFound));
    }
    if !outcome.known {
        return Err(Failure::Refused(ReplayRefusal::UnknownEvent));
    }
    let record = audit.clone();
    crate::audit::sql::append(&mut tx, &record).await?;
    tx.commit().await?;
    Ok(Committed::new((), record))
}

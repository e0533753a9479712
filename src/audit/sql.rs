//! The audit trail's SQL: a write's own record inside its transaction
//! ([`append`]), fences for writes the service lost sight of ([`fence`]),
//! queued records in batches ([`write_batch`]), partitions, and a
//! manager's trail read back ([`list`]). The columns of a record written by
//! SQL are named once, in the database function `audit_append`; those of a
//! `COPY`, once, in [`COPY`].

use std::{ops::Range, time::Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::AuditEntry;
use crate::db::{Db, json_param};

/// Writes a batch of queued records, once: in one transaction that also
/// remembers `batch` (a retry of a batch whose commit reply was lost finds it
/// and writes nothing). Records of write attempts go in one statement, each
/// only if its attempt has no record yet; the others with one `COPY`.
pub async fn write_batch(db: &Db, batch: Uuid, entries: &[AuditEntry]) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    let first = sqlx::query_scalar!(
        r#"insert into audit_batch (id) values ($1) on conflict do nothing returning true as "first!""#,
        batch
    )
    .fetch_optional(&mut tx)
    .await?;
    if first.is_none() {
        return tx.commit().await;
    }
    let attempts: Vec<&AuditEntry> = entries.iter().filter(|e| e.attempt.is_some()).collect();
    if !attempts.is_empty() {
        insert_attempts(&mut tx, &attempts).await?;
    }
    let mut data = String::with_capacity(entries.len() * 192);
    for entry in entries.iter().filter(|e| e.attempt.is_none()) {
        copy_row(&mut data, entry);
    }
    if !data.is_empty() {
        tx.copy_in(COPY, data.into_bytes()).await?;
    }
    tx.commit().await
}

/// Writes `entries` by the batches in `work` (a stack: the last is written
/// first), each under its id, idempotently. A batch the database refuses
/// for what it holds (a data exception or a constraint violation) is split
/// in halves until the refused records stand alone; those are added to
/// `refused` with the reason. Any other error (a lost connection, a table
/// away, a timeout) stops here and leaves the batch on `work` for a retry.
pub(super) async fn write_settling(
    db: &Db,
    entries: &[AuditEntry],
    work: &mut Vec<(Range<usize>, Uuid)>,
    refused: &mut Vec<(usize, String)>,
) -> Result<(), sqlx::Error> {
    while let Some((range, id)) = work.pop() {
        let started = Instant::now();
        match write_batch(db, id, &entries[range.clone()]).await {
            Ok(()) => crate::metrics::audit_flushed(range.len(), started.elapsed()),
            Err(err) if is_refusal(&err) => {
                if range.len() == 1 {
                    refused.push((range.start, err.to_string()));
                } else {
                    let middle = range.start + range.len() / 2;
                    work.push((middle..range.end, half(id, 2)));
                    work.push((range.start..middle, half(id, 1)));
                }
            }
            Err(err) => {
                work.push((range, id));
                return Err(err);
            }
        }
    }
    Ok(())
}

/// Whether the database refused what a batch holds rather than failed to
/// take it: SQLSTATE classes 22 (data exception) and 23 (integrity
/// constraint violation). Writing the same records again would fail again.
fn is_refusal(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code.starts_with("22") || code.starts_with("23"))
}

/// The id of one half of a batch, derived from the whole's.
fn half(id: Uuid, which: u8) -> Uuid {
    let mut bytes = id.as_bytes().to_vec();
    bytes.push(which);
    Uuid::from_u128(xxhash_rust::xxh3::xxh3_128(&bytes))
}

/// Forgets written batches older than `age`.
pub async fn forget_batches_older_than(db: &Db, age: std::time::Duration) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "delete from audit_batch where written_at < now() - make_interval(secs => $1)",
        age.as_secs_f64()
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Writes the records of write attempts in one statement, each only if its
/// attempt has no record yet. A record that goes in proves its attempt's
/// write never committed (a committed write has its own) and now never will
/// (its record would collide). Either way the attempt has a record
/// afterwards, so an idempotency key it still holds unsettled is freed: a
/// committed write would have settled it. Returns how many went in.
async fn insert_attempts<'e>(db: impl sqlx::PgExecutor<'e>, entries: &[&AuditEntry]) -> Result<u64, sqlx::Error> {
    let rows = json_param(&entries)?;
    let written = sqlx::query_scalar!(
        r#"with entries as materialized (
               select e, e ->> 'manager_id' as manager_id, (e ->> 'attempt')::uuid as attempt
                 from jsonb_array_elements($1) e
           ), written as materialized (
               select attempt from entries where audit_append(e, null, null, true)
           ), freed as (
               -- Every attempt given has a record now, this one or one
               -- before it: a key it still holds unsettled is free (a write
               -- that committed settled its key in its own transaction).
               delete from idempotency_key k
                using entries x
                where k.manager_id = x.manager_id and k.claim_token = x.attempt and k.status is null
           )
           select count(*) as "written!" from written"#,
        rows
    )
    .fetch_one(db)
    .await?;
    Ok(written as u64)
}

/// Inserts a write's own record inside its transaction. It fails
/// (unique_violation, rolling the write back) when the request was settled
/// by a fence first.
pub async fn append(tx: &mut crate::db::Tx, record: &AuditEntry) -> Result<(), sqlx::Error> {
    let entry = json_param(record)?;
    sqlx::query_scalar!(r#"select audit_append($1, null, null, false) as "written!""#, entry)
        .fetch_one(tx)
        .await?;
    Ok(())
}

/// Settles a write attempt the service lost sight of (its reply was lost, or
/// its request reached its deadline) by writing the request's record first.
/// `true`: the record went in, so the write had not committed and now never
/// will (its own record would collide with this one), and the idempotency
/// key it claimed, if any, is freed. `false`: the write had committed; its
/// own record stands.
pub async fn fence<'e>(db: impl sqlx::PgExecutor<'e>, entry: &AuditEntry) -> Result<bool, sqlx::Error> {
    Ok(insert_attempts(db, &[entry]).await? == 1)
}

/// The status and error code of the record that stands for `entry`'s
/// attempt, if it has one: the write's own, or a fence.
pub async fn standing<'e>(
    db: impl sqlx::PgExecutor<'e>,
    entry: &AuditEntry,
) -> Result<Option<(i16, Option<String>)>, sqlx::Error> {
    let row = sqlx::query!(
        "select status, error_code from audit_log where attempt = $1 and occurred_at = $2",
        entry.attempt,
        entry.occurred_at
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.status, r.error_code)))
}

/// The statement queued records are appended with, in `COPY`'s text
/// format: PostgreSQL parses plain text columns instead of a JSON document,
/// and the service formats them straight into one buffer; under load this
/// halves what an audit record costs both of them.
const COPY: &str = "copy audit_log (manager_id, occurred_at, request_id, method, path, query, status, \
                    error_code, duration_ms, client_addr, product_ids, order_id, attempt) from stdin";

/// One line of `COPY`'s text format: columns separated by tabs, `\N` for
/// NULL, and backslash escapes for the characters that would break a line
/// or a column (PostgreSQL's `COPY` documentation, "Text Format").
fn copy_row(out: &mut String, entry: &AuditEntry) {
    use std::fmt::Write;

    fn text(out: &mut String, value: Option<&str>) {
        let Some(value) = value else {
            out.push_str("\\N");
            return;
        };
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c => out.push(c),
            }
        }
    }

    text(out, Some(&entry.manager_id));
    out.push('\t');
    out.push_str(&entry.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
    out.push('\t');
    text(out, Some(&entry.request_id));
    out.push('\t');
    text(out, Some(&entry.method));
    out.push('\t');
    text(out, Some(&entry.path));
    out.push('\t');
    text(out, entry.query.as_deref());
    // Writing to a String cannot fail.
    let _ = write!(out, "\t{}\t", entry.status);
    text(out, entry.error_code.as_deref());
    let _ = write!(out, "\t{:?}\t", entry.duration_ms);
    text(out, entry.client_addr.as_deref());
    out.push_str("\t{");
    for (i, id) in entry.product_ids.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{id}");
    }
    out.push_str("}\t");
    match entry.order_id {
        Some(id) => {
            let _ = write!(out, "{id}");
        }
        None => out.push_str("\\N"),
    }
    out.push('\t');
    match entry.attempt {
        Some(attempt) => {
            let _ = write!(out, "{attempt}");
        }
        None => out.push_str("\\N"),
    }
    out.push('\n');
}

/// Drops, whole, the monthly partitions of the audit trail that end on or
/// before `before` (midnight UTC); returns their names. Rows are never
/// deleted one by one: the append-only rule holds for every month kept.
pub async fn prune_before(db: &Db, before: chrono::NaiveDate) -> Result<Vec<String>, sqlx::Error> {
    let before = before.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    sqlx::query_scalar!(r#"select audit_log_prune($1) as "partition!""#, before)
        .fetch_all(db)
        .await
}

/// Creates this month's and next month's partitions of `audit_log` if missing.
pub async fn ensure_partitions(db: &Db) -> Result<(), sqlx::Error> {
    sqlx::query!("select audit_log_ensure_partitions(1)")
        .execute(db)
        .await?;
    Ok(())
}

/// One audit record as the API returns it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditRecord {
    /// The record's id; pass it as `after` to get the next (older) page.
    #[schema(example = 42)]
    pub id: i64,
    /// When the request arrived.
    pub occurred_at: DateTime<Utc>,
    /// The request's `X-Request-ID`.
    pub request_id: String,
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Raw query string.
    pub query: Option<String>,
    /// Response status.
    pub status: i16,
    /// Error code of an error response.
    pub error_code: Option<String>,
    /// Milliseconds from arrival to response.
    pub duration_ms: f64,
    /// The client's address.
    pub client_addr: Option<String>,
    /// Public ids of the products the request changed.
    pub product_ids: Vec<String>,
    /// Public id of the order the request created.
    pub order_id: Option<String>,
}

/// A manager's records, newest first, starting after the record `after`.
pub async fn list(db: &Db, manager: &str, after: Option<i64>, limit: i64) -> Result<Vec<AuditRecord>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select id, occurred_at, request_id, method, path, query, status, error_code,
                  duration_ms, client_addr, product_ids, order_id
             from audit_log
            where manager_id = $1 and id < coalesce($2, 9223372036854775807)
            order by id desc
            limit $3"#,
        manager,
        after,
        limit
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| AuditRecord {
            id: r.id,
            occurred_at: r.occurred_at,
            request_id: r.request_id,
            method: r.method,
            path: r.path,
            query: r.query,
            status: r.status,
            error_code: r.error_code,
            duration_ms: r.duration_ms,
            client_addr: r.client_addr,
            product_ids: r
                .product_ids
                .into_iter()
                .map(|id| crate::domain::ProductId::from_db(id).to_string())
                .collect(),
            order_id: r.order_id.map(|id| crate::domain::OrderId::from_db(id).to_string()),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_row_escapes_what_would_break_it_and_marks_nulls() {
        let entry = AuditEntry {
            occurred_at: DateTime::parse_from_rfc3339("2026-12-02T10:11:12.345678Z")
                .unwrap()
                .into(),
            request_id: "a\tb\nc\rd\\e".into(),
            manager_id: "m".into(),
            method: "GET".into(),
            path: "/api/x".into(),
            query: None,
            status: 404,
            error_code: Some("NOT_FOUND".into()),
            duration_ms: 1.5,
            client_addr: Some("127.0.0.1".into()),
            product_ids: vec![3, 4],
            order_id: None,
            attempt: None,
        };
        let mut line = String::new();
        copy_row(&mut line, &entry);
        assert_eq!(
            line,
            "m\t2026-12-02T10:11:12.345678Z\ta\\tb\\nc\\rd\\\\e\tGET\t/api/x\t\\N\t404\tNOT_FOUND\t1.5\t127.0.0.1\t{3,4}\t\\N\t\\N\n"
        );
        assert_eq!(line.matches('\t').count(), 12, "thirteen columns");
    }
}

//! The SQL of products, orders and idempotency keys (the audit trail's is in
//! `audit::sql`). Each public function is one operation of the API; writes
//! insert their audit record in the same transaction and return it in their
//! [`Committed`] result. Functions speak
//! the domain: a write the rules refuse comes back as [`Failure::Refused`]
//! with the reason, never as an HTTP status; each reason says its error code
//! beside its own definition (`impl From<...> for AppError`).

pub mod adjustments;
pub mod delivery;
pub mod events;
pub mod idempotency;
pub mod order_history;
pub mod orders;
pub mod products;
pub mod webhooks;

use std::{future::Future, time::Duration};

use sqlx::postgres::PgDatabaseError;

use crate::{audit::AuditEntry, error::AppError};

/// Why a write did not happen: the rules refused it (`R` says why), or the
/// database failed.
#[derive(Debug)]
pub enum Failure<R> {
    /// Refused by the rules; nothing changed.
    Refused(R),
    /// The database failed; nothing changed.
    Database(sqlx::Error),
}

impl<R> From<sqlx::Error> for Failure<R> {
    fn from(err: sqlx::Error) -> Self {
        Self::Database(err)
    }
}

/// A write that committed, with the audit record it committed with (which
/// names what it changed). Only the store makes one, once the write's
/// transaction has committed: the HTTP layer's one path from a write to a
/// success response takes nothing else.
#[derive(Debug)]
#[must_use = "a committed write must be answered"]
pub struct Committed<T> {
    value: T,
    record: Box<AuditEntry>,
}

impl<T> Committed<T> {
    /// The result of a write that has committed with `record`.
    fn new(value: T, record: AuditEntry) -> Self {
        Self {
            value,
            record: Box::new(record),
        }
    }

    /// What the write returned, and the record it committed with.
    pub fn into_parts(self) -> (T, Box<AuditEntry>) {
        (self.value, self.record)
    }
}

/// A refusal becomes the error its own module says; a database failure, the
/// error its kind says (503 or 500).
impl<R: Into<AppError>> From<Failure<R>> for AppError {
    fn from(failure: Failure<R>) -> Self {
        match failure {
            Failure::Refused(reason) => reason.into(),
            Failure::Database(err) => err.into(),
        }
    }
}

/// The SQLSTATE of a database error, if `err` is one.
fn sqlstate(err: &sqlx::Error) -> Option<String> {
    err.as_database_error()
        .and_then(|db| db.try_downcast_ref::<PgDatabaseError>())
        .map(|pg| pg.code().to_owned())
}

/// True when `err` is a unique violation of the named constraint or index.
pub(crate) fn violates(err: &sqlx::Error, constraint: &str) -> bool {
    err.as_database_error()
        .and_then(|db| db.try_downcast_ref::<PgDatabaseError>())
        .is_some_and(|pg| pg.code() == "23505" && pg.constraint() == Some(constraint))
}

/// True for the failures PostgreSQL asks applications to retry: a deadlock
/// (40P01) or a serialization failure (40001). The whole transaction was
/// rolled back, so running it again is safe.
pub(crate) fn is_transient(err: &sqlx::Error) -> bool {
    matches!(sqlstate(err).as_deref(), Some("40P01" | "40001"))
}

/// Most runs of one transaction in [`retrying`].
pub(crate) const ATTEMPTS: u32 = 5;

/// Runs the transaction `run` until it succeeds, is refused, or fails with
/// an error that is not `retry`-able, at most [`ATTEMPTS`] times, with a
/// short growing pause between runs. `retry` sees each database error.
pub(crate) async fn retrying<T, R, F, Fut>(mut run: F, retry: impl Fn(&sqlx::Error) -> bool) -> Result<T, Failure<R>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure<R>>>,
{
    let mut attempt = 1;
    loop {
        match run().await {
            Err(Failure::Database(err)) if attempt < ATTEMPTS && retry(&err) => {
                tracing::debug!(error = %err, attempt, "transaction retried");
                tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
                attempt += 1;
            }
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn retries_only_what_it_is_told_and_at_most_the_limit() {
        let runs = AtomicU32::new(0);
        let done: Result<(), Failure<()>> = retrying(
            || async {
                runs.fetch_add(1, Ordering::SeqCst);
                Err(Failure::Database(sqlx::Error::PoolTimedOut))
            },
            |_| true,
        )
        .await;
        assert!(matches!(done, Err(Failure::Database(sqlx::Error::PoolTimedOut))));
        assert_eq!(runs.load(Ordering::SeqCst), ATTEMPTS);

        runs.store(0, Ordering::SeqCst);
        let refused: Result<(), Failure<&str>> = retrying(
            || async {
                runs.fetch_add(1, Ordering::SeqCst);
                Err(Failure::Refused("no"))
            },
            |_| true,
        )
        .await;
        assert!(matches!(refused, Err(Failure::Refused("no"))));
        assert_eq!(runs.load(Ordering::SeqCst), 1, "refusals are final");
        assert!(!is_transient(&sqlx::Error::PoolTimedOut));
    }
}

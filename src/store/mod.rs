//! The only place with SQL. Each public function is one operation of the API;
//! writes insert their audit record in the same transaction.

pub mod audit;
pub mod idempotency;
pub mod orders;
pub mod products;

use sqlx::postgres::PgDatabaseError;

/// A value as the JSON parameter a statement reads rows from
/// (`jsonb_populate_record(set)`).
pub(crate) fn json_param(value: &impl serde::Serialize) -> Result<serde_json::Value, sqlx::Error> {
    serde_json::to_value(value).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// True when `err` is a unique violation of the named constraint or index.
pub(crate) fn violates(err: &sqlx::Error, constraint: &str) -> bool {
    err.as_database_error()
        .and_then(|db| db.try_downcast_ref::<PgDatabaseError>())
        .is_some_and(|pg| pg.code() == "23505" && pg.constraint() == Some(constraint))
}

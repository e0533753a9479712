//! Connecting to PostgreSQL (the configured one, or an embedded one) and
//! applying the migrations embedded in the binary.

pub mod embedded;

use std::time::Duration;

use anyhow::Context;
use sqlx::{PgPool, postgres::PgPoolOptions};

use crate::config::DbArgs;
use embedded::EmbeddedPostgres;

/// A pool on `url` with at most `max_connections`. Waiting longer than
/// 5 seconds for a connection is an error (answered 503).
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .context("could not connect to the database (check DATABASE_URL)")
}

/// Applies every migration not yet applied.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::migrate!()
        .run(pool)
        .await
        .context("could not apply database migrations")
}

/// The database in use, and the embedded server behind it if there is one
/// (stop it when done).
pub async fn open(args: &DbArgs) -> anyhow::Result<(PgPool, Option<EmbeddedPostgres>)> {
    match &args.database_url {
        Some(url) => Ok((connect(url, args.db_max_connections).await?, None)),
        None => {
            let server = EmbeddedPostgres::start(&args.data_dir).await?;
            match connect(server.url(), args.db_max_connections).await {
                Ok(pool) => Ok((pool, Some(server))),
                Err(err) => {
                    server.stop().await.ok();
                    Err(err)
                }
            }
        }
    }
}

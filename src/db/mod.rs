//! Connecting to PostgreSQL (the configured one, or an embedded one) and
//! applying the migrations embedded in the binary.

pub mod embedded;

use std::time::Duration;

use anyhow::Context;
use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::config::DbArgs;
use embedded::EmbeddedPostgres;

/// A pool on `url` as `args` configure it. Waiting longer than 3 seconds
/// for a connection is an error (answered 503). Every connection bounds its
/// statements on the server (`statement_timeout`, `lock_timeout`), so no
/// statement outlives its request for long.
pub async fn connect(url: &str, args: &DbArgs) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = url.parse().context("DATABASE_URL is not a valid PostgreSQL URL")?;
    let options = options.options([
        ("statement_timeout", format!("{}s", args.db_statement_timeout_secs)),
        ("lock_timeout", format!("{}s", args.db_lock_timeout_secs)),
    ]);
    PgPoolOptions::new()
        .max_connections(args.db_max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect_with(options)
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
        Some(url) => Ok((connect(url, args).await?, None)),
        None => {
            let server = EmbeddedPostgres::start(&args.data_dir).await?;
            match connect(server.url(), args).await {
                Ok(pool) => Ok((pool, Some(server))),
                Err(err) => {
                    server.stop().await.ok();
                    Err(err)
                }
            }
        }
    }
}

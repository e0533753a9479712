//! Connecting to PostgreSQL (the configured one, or an embedded one) and
//! applying the migrations embedded in the binary.

pub mod embedded;
mod handle;

pub use handle::{Db, Tx};

use std::time::Duration;

use anyhow::Context;
use sqlx::{
    Connection,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::config::{DbArgs, Pooler};
use embedded::EmbeddedPostgres;

/// How long a connection may sit idle in the pool before it is pinged on
/// its way out.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// A pool on `url` as `args` configure it. Waiting longer than 3 seconds
/// for a connection is an error (answered 503). Every statement is bounded
/// on the server (`statement_timeout`, `lock_timeout`), so none outlives its
/// request for long: through the connection's start-up options, or with a
/// pooler (which does not pass those on) by each transaction's `BEGIN`.
pub async fn connect(url: &str, args: &DbArgs) -> anyhow::Result<Db> {
    let options: PgConnectOptions = url.parse().context("DATABASE_URL is not a valid PostgreSQL URL")?;
    let statement_timeout = format!("{}s", args.db_statement_timeout_secs);
    let lock_timeout = format!("{}s", args.db_lock_timeout_secs);
    let options = match args.db_pooler {
        Pooler::None => options.options([
            ("statement_timeout", &statement_timeout),
            ("lock_timeout", &lock_timeout),
        ]),
        // PgBouncer refuses start-up parameters it does not know, and this
        // one only matters to text-format floats, which no statement reads.
        Pooler::Transaction => options.statement_cache_capacity(0).extra_float_digits(None),
    };
    let pool = PgPoolOptions::new()
        .max_connections(args.db_max_connections)
        .acquire_timeout(Duration::from_secs(3))
        // A connection that has just been used is alive: pinging it on
        // every acquire (the pool's default) costs a round trip per
        // statement. One idle for a while is pinged, so a database that
        // restarted meanwhile costs no request an error.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_AFTER_IDLE {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(options)
        .await
        .context("could not connect to the database (check DATABASE_URL)")?;
    Ok(match args.db_pooler {
        Pooler::None => Db::from(pool),
        Pooler::Transaction => Db::through_pooler(
            pool,
            format!(
                "begin; set local statement_timeout = '{statement_timeout}'; set local lock_timeout = '{lock_timeout}'"
            ),
        ),
    })
}

/// Applies every migration not yet applied. Through a pooler it only checks
/// that they all are: the migrator holds a session lock across several
/// transactions, which a transaction-mode pooler cannot keep on one server
/// connection, so migrations are applied with `migrate` on the server itself.
pub async fn migrate(db: &Db) -> anyhow::Result<()> {
    let migrator = sqlx::migrate!();
    if !db.is_pooled() {
        return migrator
            .run(db.pool())
            .await
            .context("could not apply database migrations");
    }
    let applied: Vec<i64> = sqlx::query_scalar("select version from _sqlx_migrations where success")
        .fetch_all(db)
        .await
        .unwrap_or_default();
    let missing: Vec<String> = migrator
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .map(|m| format!("{} {}", m.version, m.description))
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "the database lacks migrations ({}); apply them with `ecommerce-api migrate` \
         and DATABASE_URL naming PostgreSQL itself, not the pooler",
        missing.join(", ")
    );
    Ok(())
}

/// The database in use, and the embedded server behind it if there is one
/// (stop it when done).
pub async fn open(args: &DbArgs) -> anyhow::Result<(Db, Option<EmbeddedPostgres>)> {
    match &args.database_url {
        Some(url) => Ok((connect(url, args).await?, None)),
        None => {
            let server = EmbeddedPostgres::start(&args.data_dir).await?;
            match connect(server.url(), args).await {
                Ok(db) => Ok((db, Some(server))),
                Err(err) => {
                    server.stop().await.ok();
                    Err(err)
                }
            }
        }
    }
}

//! Connecting to PostgreSQL (the configured one, or an embedded one) and
//! applying the migrations embedded in the binary.

pub mod embedded;
mod handle;

pub use handle::{Conn, Db, Tx, abandonable};

use anyhow::Context;
use sqlx::postgres::PgConnectOptions;

use crate::config::{DbArgs, Pooler};
use embedded::EmbeddedPostgres;

/// A value as the JSON parameter a statement reads rows from
/// (`jsonb_populate_record(set)`).
pub fn json_param(value: &impl serde::Serialize) -> Result<serde_json::Value, sqlx::Error> {
    serde_json::to_value(value).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// A pool on `url` as `args` configure it, checked by opening its first
/// connection. Waiting longer than 3 seconds for a connection is an error
/// (answered 503). Every statement is bounded on the server
/// (`statement_timeout`, `lock_timeout`), so none outlives its request for
/// long: through the connection's start-up options, or with a pooler (which
/// does not pass those on) by each transaction's `BEGIN`.
pub async fn connect(url: &str, args: &DbArgs) -> anyhow::Result<Db> {
    let options: PgConnectOptions = url.parse().context("DATABASE_URL is not a valid PostgreSQL URL")?;
    let statement_timeout = format!("{}s", args.db_statement_timeout_secs);
    let lock_timeout = format!("{}s", args.db_lock_timeout_secs);
    let size = args.db_max_connections as usize;
    let db = match args.db_pooler {
        // A server that finds its client gone (a request abandoned at its
        // deadline closes its connection) stops the statement it was
        // running, waiting on a lock included, within a second.
        Pooler::None => Db::new(
            options.options([
                ("statement_timeout", &statement_timeout),
                ("lock_timeout", &lock_timeout),
                ("client_connection_check_interval", &"1s".to_owned()),
            ]),
            size,
            None,
        ),
        // PgBouncer refuses start-up parameters it does not know, and this
        // one only matters to text-format floats, which no statement reads.
        Pooler::Transaction => Db::new(
            options.statement_cache_capacity(0).extra_float_digits(None),
            size,
            Some(format!(
                "begin; set local statement_timeout = '{statement_timeout}'; set local lock_timeout = '{lock_timeout}'"
            )),
        ),
    };
    db.acquire()
        .await
        .context("could not connect to the database (check DATABASE_URL)")?
        .settled();
    Ok(db)
}

/// Applies every migration not yet applied. Through a pooler it only checks
/// that they all are: the migrator holds a session lock across several
/// transactions, which a transaction-mode pooler cannot keep on one server
/// connection, so migrations are applied with `migrate` on the server itself.
pub async fn migrate(db: &Db) -> anyhow::Result<()> {
    let migrator = sqlx::migrate!();
    if !db.is_pooled() {
        let mut conn = db.acquire().await.context("could not connect to the database")?;
        migrator
            .run(&mut *conn)
            .await
            .context("could not apply database migrations")?;
        conn.settled();
        return Ok(());
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

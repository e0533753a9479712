//! `ecommerce-api`: an inventory and order API for store managers.
//!
//! - [`domain`]: validated types and rules, no I/O.
//! - [`store`]: the SQL of products, orders and idempotency keys.
//! - [`audit`]: the audit trail: its record, SQL, queue and spill.
//! - [`http`]: routes, middleware, OpenAPI.
//! - [`rate_limit`], [`cache`]: the per-request services.
//! - [`delivery`]: the webhook delivery worker.
//! - [`auth`]: optional identity, bearer JWTs (`AUTH_MODE=jwt`).
//! - [`shared`]: the Redis instances share, and its health.
//! - [`app`], [`server`], [`config`], [`db`], [`telemetry`]: wiring.

pub mod app;
pub mod audit;
pub mod auth;
pub mod cache;
pub mod config;
pub mod db;
pub mod delivery;
pub mod domain;
pub mod error;
pub mod http;
pub mod metrics;
pub mod rate_limit;
pub mod server;
pub mod shared;
pub mod store;
pub mod telemetry;

use config::{Cli, Command};

/// Runs the command line: `serve` or `migrate`.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    telemetry::init(cli.log_format)?;
    match cli.command {
        Command::Serve(args) => {
            args.check()?;
            if args.redis_url.is_none() {
                tracing::warn!(
                    "REDIS_URL is unset: this instance keeps its own rate limit and cache; \
                     several instances would each let a manager make the full limit of requests"
                );
            }
            let (db, embedded) = db::open(&args.db).await?;
            let served = async {
                db::migrate(&db).await?;
                let app = app::Application::build(
                    args.settings,
                    db.clone(),
                    args.redis_url.as_deref(),
                    &args.host,
                    args.port,
                )
                .await?;
                tracing::info!(address = %app.local_addr(), "listening");
                app.run_until(app::shutdown_signal()).await
            }
            .await;
            db.close().await;
            if let Some(server) = embedded {
                server.stop().await?;
            }
            served
        }
        Command::Migrate(args) => {
            anyhow::ensure!(
                args.db_pooler == config::Pooler::None,
                "migrations need PostgreSQL itself: run `migrate` without DB_POOLER, with DATABASE_URL naming the server"
            );
            let (db, embedded) = db::open(&args).await?;
            let migrated = db::migrate(&db).await;
            db.close().await;
            if let Some(server) = embedded {
                server.stop().await?;
            }
            migrated?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Audit {
            command: config::AuditCommand::Prune { before, db: args },
        } => {
            let (db, embedded) = db::open(&args).await?;
            let pruned = async {
                db::migrate(&db).await?;
                audit::sql::prune_before(&db, before).await.map_err(anyhow::Error::from)
            }
            .await;
            db.close().await;
            if let Some(server) = embedded {
                server.stop().await?;
            }
            let dropped = pruned?;
            for partition in &dropped {
                println!("{partition}");
            }
            tracing::info!(partitions = dropped.len(), %before, "audit trail pruned");
            Ok(())
        }
    }
}

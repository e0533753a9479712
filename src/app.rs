//! Building and running the application: state, background tasks, the
//! listener, graceful shutdown.

use std::{future::Future, net::SocketAddr, time::Duration};

use anyhow::Context;
use axum::Router;
use tokio::{net::TcpListener, task::JoinHandle};

use crate::{
    audit::{AuditSink, AuditWriter, QueueConfig},
    cache::ListCache,
    config::Settings,
    db::Db,
    http::{self, AppState, Shared},
    rate_limit::{Limiter, MemoryLimiter, RedisLimiter},
    server::{self, Limits},
    shared::SharedRedis,
    store,
};

/// A bound, not yet serving, application.
pub struct Application {
    listener: TcpListener,
    router: Router,
    limits: Limits,
    audit_writer: AuditWriter,
    maintenance: JoinHandle<()>,
    /// The webhook delivery worker.
    delivery: JoinHandle<()>,
    /// The admin listener (`ADMIN_PORT`) and its routes, if configured.
    admin: Option<(TcpListener, Router)>,
}

impl Application {
    /// Builds the state (Redis-backed when `redis_url` is set) and binds
    /// `host:port` (port 0 picks a free one).
    pub async fn build(
        settings: Settings,
        db: impl Into<Db>,
        redis_url: Option<&str>,
        host: &str,
        port: u16,
    ) -> anyhow::Result<Self> {
        let state = state(settings, db, redis_url).await?;
        Self::bind(state, host, port, http::router).await
    }

    /// Like [`Application::build`] with the state and router made by the caller (tests).
    pub async fn bind(
        (state, audit_writer): (AppState, AuditWriter),
        host: &str,
        port: u16,
        router: fn(AppState) -> Router,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((host, port))
            .await
            .with_context(|| format!("could not listen on {host}:{port}"))?;
        let admin = match state.settings.admin_port {
            Some(admin_port) => Some((
                TcpListener::bind((host, admin_port))
                    .await
                    .with_context(|| format!("could not listen on {host}:{admin_port} (ADMIN_PORT)"))?,
                http::admin(state.clone()),
            )),
            None => None,
        };
        let maintenance = tokio::spawn(maintain(state.db.clone(), state.settings.event_retention_days));
        let delivery = if state.settings.webhook_delivery {
            tokio::spawn(crate::delivery::run(
                state.db.clone(),
                crate::delivery::DeliverySettings::from(&state.settings),
            ))
        } else {
            tokio::spawn(async {})
        };
        let limits = Limits {
            header_timeout: Duration::from_secs(state.settings.header_timeout_secs),
            idle_timeout: Duration::from_secs(state.settings.idle_timeout_secs),
            max_connections: state.settings.max_connections,
        };
        Ok(Self {
            listener,
            limits,
            router: router(state),
            audit_writer,
            maintenance,
            delivery,
            admin,
        })
    }

    /// The address of the admin listener, if there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|(listener, _)| listener.local_addr().ok())
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then lets requests in flight
    /// finish and writes every queued audit record before returning.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin = self.admin.map(|(listener, router)| {
            tokio::spawn(server::serve(listener, router, self.limits, async {
                admin_stopped.await.ok();
            }))
        });
        let served = server::serve(self.listener, self.router, self.limits, shutdown).await;
        let _ = stop_admin.send(());
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        self.maintenance.abort();
        self.delivery.abort();
        self.audit_writer.finish().await;
        served.context("server error")
    }
}

/// The shared state and the audit writer behind it.
pub async fn state(
    settings: Settings,
    db: impl Into<Db>,
    redis_url: Option<&str>,
) -> anyhow::Result<(AppState, AuditWriter)> {
    let verifier = crate::auth::Verifier::from_settings(&settings.auth)?;
    let db = db.into();
    let window = Duration::from_secs(settings.rate_limit_window_secs);
    let ttl = Duration::from_secs(settings.cache_ttl_secs);
    let local = MemoryLimiter::new(settings.rate_limit_max, window, settings.rate_limit_max_managers);
    let (limiter, cache, redis) = match redis_url {
        Some(url) => {
            let redis = SharedRedis::connect(url, &settings.redis_key_prefix).await?;
            (
                Limiter::shared(
                    RedisLimiter::new(
                        redis.clone(),
                        settings.rate_limit_max,
                        window,
                        crate::cache::generation_ttl(ttl),
                    ),
                    local,
                ),
                ListCache::shared(redis.clone(), settings.cache_max_bytes, ttl),
                Some(redis),
            )
        }
        None => (
            Limiter::local(local),
            ListCache::in_memory(settings.cache_max_bytes, ttl),
            None,
        ),
    };
    let (audit, writer) = AuditSink::spawn(
        db.clone(),
        QueueConfig {
            capacity: settings.audit_queue_capacity,
            batch_size: settings.audit_batch_size,
            wait: Duration::from_millis(settings.audit_queue_wait_ms),
            spill_dir: settings.audit_spill_dir.clone(),
            spill_max_bytes: settings.audit_spill_max_bytes,
        },
    );
    let anonymous = MemoryLimiter::new(settings.anon_rate_limit_max, window, settings.rate_limit_max_managers);
    let state = AppState::new(Shared {
        db,
        settings,
        limiter,
        cache,
        redis,
        audit,
        anonymous,
        metrics: crate::metrics::install(),
        readiness: Default::default(),
        verifier,
    });
    Ok((state, writer))
}

/// Daily upkeep, from start-up on: creates the audit log's monthly
/// partitions ahead of time, forgets idempotency keys and written audit
/// batches older than a day, and events older than `retention_days`.
async fn maintain(db: Db, retention_days: u32) {
    let mut every_day = tokio::time::interval(Duration::from_secs(24 * 3600));
    loop {
        every_day.tick().await;
        if let Err(err) = crate::audit::sql::ensure_partitions(&db).await {
            tracing::warn!(error = %err, "could not create audit_log partitions");
        }
        match store::idempotency::forget_older_than(&db, Duration::from_secs(24 * 3600)).await {
            Ok(forgotten) => tracing::info!(forgotten, "old idempotency keys forgotten"),
            Err(err) => tracing::warn!(error = %err, "could not forget old idempotency keys"),
        }
        if let Err(err) = crate::audit::sql::forget_batches_older_than(&db, Duration::from_secs(24 * 3600)).await {
            tracing::warn!(error = %err, "could not forget written audit batches");
        }
        match store::events::forget_older_than(&db, retention_days).await {
            Ok(forgotten) => tracing::info!(forgotten, retention_days, "old events forgotten"),
            Err(err) => tracing::warn!(error = %err, "could not forget old events"),
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        tokio::signal::ctrl_c().await.ok();
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

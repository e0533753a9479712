//! The Redis that instances share (the rate limit and cache generations),
//! and whether it can be reached right now.
//!
//! Redis accelerates and coordinates; it is not a single point of failure.
//! After a failed command the connection is marked down: the limiter falls
//! back to this process's own sliding log and product lists are read from
//! PostgreSQL (no cache), so nothing waits on Redis again until a background
//! probe sees it answer. If this instance changed a manager's products while
//! Redis was down, the generations in Redis missed those changes: on
//! recovery it bumps the shared epoch first, which makes every instance's
//! cached lists unreachable, and only then uses Redis again.

use std::{
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use redis::aio::ConnectionManager;

/// A Redis connection shared by the limiter and the cache, with its health.
#[derive(Clone)]
pub struct SharedRedis {
    /// The connection (cheap to clone).
    pub conn: ConnectionManager,
    /// Prefix of every key this service writes.
    pub prefix: String,
    health: Arc<Health>,
}

#[derive(Debug)]
struct Health {
    up: AtomicBool,
    missed_writes: AtomicBool,
}

impl std::fmt::Debug for SharedRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRedis").field("up", &self.is_up()).finish()
    }
}

/// How often a Redis marked down is probed.
const PROBE_EVERY: Duration = Duration::from_millis(250);

impl SharedRedis {
    /// Connects to `url` (it must answer now) and starts the probe that
    /// brings the connection back after an outage.
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).context("REDIS_URL is not a valid Redis URL")?;
        // Bounded waits: a Redis that stops answering costs one request at
        // most about a second before the connection is marked down.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500))
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)));
        let conn = redis::aio::ConnectionManager::new_with_config(client, config)
            .await
            .context("could not connect to Redis (check REDIS_URL)")?;
        let shared = Self {
            conn,
            prefix: prefix.to_owned(),
            health: Arc::new(Health {
                up: AtomicBool::new(true),
                missed_writes: AtomicBool::new(false),
            }),
        };
        tokio::spawn(probe(
            Arc::downgrade(&shared.health),
            shared.conn.clone(),
            shared.epoch_key(),
        ));
        Ok(shared)
    }

    /// False from a failed command until the probe sees Redis answer again.
    pub fn is_up(&self) -> bool {
        self.health.up.load(Ordering::Acquire)
    }

    /// Records that a command failed: Redis is not used until it answers.
    pub fn failed(&self, err: &redis::RedisError) {
        if self.health.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(error = %err, "Redis unreachable: per-instance rate limit, uncached lists");
        }
    }

    /// Records that a manager's products changed while the shared
    /// generations could not be bumped.
    pub fn missed_write(&self) {
        self.health.missed_writes.store(true, Ordering::Release);
    }

    /// The key of the epoch every cached list is also keyed by.
    pub fn epoch_key(&self) -> String {
        format!("{}epoch", self.prefix)
    }
}

/// While the connection is marked down, pings Redis every [`PROBE_EVERY`];
/// when it answers, bumps the epoch if writes were missed, then marks it up.
/// Ends when the application that owns `health` is gone.
async fn probe(health: Weak<Health>, mut conn: ConnectionManager, epoch_key: String) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let Some(health) = health.upgrade() else { return };
        if health.up.load(Ordering::Acquire) {
            continue;
        }
        let answered: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut conn).await;
        if answered.is_err() {
            continue;
        }
        if health.missed_writes.load(Ordering::Acquire) {
            let bumped: redis::RedisResult<i64> = redis::cmd("INCR").arg(&epoch_key).query_async(&mut conn).await;
            if bumped.is_err() {
                continue;
            }
            health.missed_writes.store(false, Ordering::Release);
        }
        health.up.store(true, Ordering::Release);
        tracing::info!("Redis reachable again: shared rate limit and cache resumed");
    }
}

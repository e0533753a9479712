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
//!
//! `REDIS_URL` may name Redis Sentinels instead of a Redis:
//! `redis+sentinel://host:port[,host:port...]/<master name>[/<db>]`. The
//! master is then asked of the sentinels at start-up and again each time the
//! connection is found down (the master died, or was demoted and refuses
//! writes): the probe connects to whichever master the sentinels name now.

use std::{
    sync::{
        Arc, RwLock, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use redis::{
    aio::ConnectionManager,
    sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType},
};
use tokio::sync::Mutex;

/// A Redis connection shared by the limiter and the cache, with its health.
#[derive(Clone)]
pub struct SharedRedis {
    /// The connection, replaced when the sentinels name a new master.
    conn: Arc<RwLock<ConnectionManager>>,
    /// Prefix of every key this service writes.
    pub prefix: String,
    health: Arc<Health>,
}

/// Where the Redis master is found.
enum Source {
    /// At the URL's address, always.
    Direct(redis::Client),
    /// Wherever the sentinels say.
    Sentinel(Mutex<SentinelClient>),
}

impl Source {
    fn parse(url: &str) -> anyhow::Result<Self> {
        let Some(rest) = url.strip_prefix("redis+sentinel://") else {
            return Ok(Self::Direct(
                redis::Client::open(url).context("REDIS_URL is not a valid Redis URL")?,
            ));
        };
        let mut parts = rest.split('/');
        let hosts = parts.next().unwrap_or_default();
        let master = parts.next().filter(|m| !m.is_empty()).context(
            "REDIS_URL names sentinels but no master: redis+sentinel://host:port[,host:port...]/<master name>[/<db>]",
        )?;
        let db = match parts.next().filter(|d| !d.is_empty()) {
            Some(db) => db
                .parse::<i64>()
                .context("REDIS_URL: the database after the master name is a number")?,
            None => 0,
        };
        let sentinels: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| format!("redis://{h}"))
            .collect();
        anyhow::ensure!(!sentinels.is_empty(), "REDIS_URL names no sentinel");
        let node = SentinelNodeConnectionInfo::default()
            .set_redis_connection_info(redis::RedisConnectionInfo::default().set_db(db));
        let client = SentinelClient::build(sentinels, master.to_owned(), Some(node), SentinelServerType::Master)
            .context("REDIS_URL is not a valid list of sentinels")?;
        Ok(Self::Sentinel(Mutex::new(client)))
    }

    /// A client for the master as it is now.
    async fn master(&self) -> redis::RedisResult<redis::Client> {
        match self {
            Self::Direct(client) => Ok(client.clone()),
            Self::Sentinel(sentinels) => sentinels.lock().await.async_get_client().await,
        }
    }
}

/// A connection to `client` with bounded waits: a Redis that stops
/// answering costs one request at most about a second before the
/// connection is marked down.
async fn manager(client: redis::Client) -> redis::RedisResult<ConnectionManager> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500))
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(1)));
    ConnectionManager::new_with_config(client, config).await
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
        let source = Source::parse(url)?;
        let reached = async { manager(source.master().await?).await };
        let conn = reached.await.context("could not connect to Redis (check REDIS_URL)")?;
        let shared = Self {
            conn: Arc::new(RwLock::new(conn)),
            prefix: prefix.to_owned(),
            health: Arc::new(Health {
                up: AtomicBool::new(true),
                missed_writes: AtomicBool::new(false),
            }),
        };
        tokio::spawn(probe(
            Arc::downgrade(&shared.health),
            Arc::downgrade(&shared.conn),
            source,
            shared.epoch_key(),
        ));
        Ok(shared)
    }

    /// The connection to the master (cheap to clone).
    pub fn conn(&self) -> ConnectionManager {
        self.conn
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
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

/// While the connection is marked down, pings Redis every [`PROBE_EVERY`]
/// (behind sentinels, a fresh connection to the master they name now);
/// when it answers, bumps the epoch if writes were missed, then marks it up.
/// Ends when the application that owns `health` is gone.
async fn probe(health: Weak<Health>, shared: Weak<RwLock<ConnectionManager>>, source: Source, epoch_key: String) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let (Some(health), Some(shared)) = (health.upgrade(), shared.upgrade()) else {
            return;
        };
        if health.up.load(Ordering::Acquire) {
            continue;
        }
        let mut conn = match &source {
            Source::Direct(_) => shared.read().unwrap_or_else(|p| p.into_inner()).clone(),
            Source::Sentinel(_) => match async { manager(source.master().await?).await }.await {
                Ok(conn) => conn,
                Err(_) => continue,
            },
        };
        // A master answers PING and takes writes; a demoted one refuses them.
        let answered: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut conn).await;
        let role: redis::RedisResult<redis::Value> = redis::cmd("ROLE").query_async(&mut conn).await;
        let is_master = matches!(&role, Ok(redis::Value::Array(items))
            if matches!(items.first(), Some(redis::Value::BulkString(kind)) if kind.as_slice() == b"master"));
        if answered.is_err() || !is_master {
            continue;
        }
        *shared.write().unwrap_or_else(|p| p.into_inner()) = conn.clone();
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

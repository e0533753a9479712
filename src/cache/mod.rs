//! The product-list cache. Entries are keyed by manager, the manager's
//! current *generation* and the query; every write bumps the manager's
//! generation before its response is sent, so no later read can find an
//! entry made before the write. Entries hold the finished response body and
//! its ETag, so a hit costs no serialisation. The generation lives in this
//! process, or in Redis when several instances share one database; while
//! that Redis cannot be reached, lists are read from PostgreSQL (see
//! [`crate::shared`]).
//!
//! Bounded: entries by their size in bytes (`CACHE_MAX_BYTES`) and their age
//! (`CACHE_TTL_SECS`); generations kept in this process by count, those in
//! Redis expire a minute after the entries that could use them.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{body::Bytes, http::HeaderValue};
use moka::future::Cache;
use redis::Script;

use crate::{domain::ManagerId, shared::SharedRedis};

/// A cached product-list response.
#[derive(Debug, Clone)]
pub struct CachedList {
    /// The JSON body.
    pub body: Bytes,
    /// Its strong ETag, quoted.
    pub etag: String,
    /// The `Link` header of the next page, if any.
    pub next: Option<HeaderValue>,
}

/// A manager's generation: the shared epoch and the manager's own counter.
pub type Generation = (u64, u64);

/// What a list read is keyed by: manager, generation, normalised query.
type Key = (ManagerId, Generation, String);

/// The Redis key of a manager's generation.
pub fn generation_key(prefix: &str, manager: &ManagerId) -> String {
    format!("{prefix}gen:{manager}")
}

/// The time to live of a generation in Redis: entries live at most `ttl`,
/// a generation outlives them by a minute.
pub fn generation_ttl(ttl: Duration) -> Duration {
    ttl + Duration::from_secs(60)
}

/// Generations of this many managers are kept in this process.
const LOCAL_GENERATIONS: u64 = 100_000;

/// The cache and the store of generations.
#[derive(Clone)]
pub struct ListCache {
    lists: Cache<Key, CachedList>,
    generations: Generations,
}

#[derive(Clone)]
enum Generations {
    Memory {
        current: Cache<ManagerId, u64>,
        next: Arc<AtomicU64>,
    },
    Redis {
        redis: SharedRedis,
        read: Script,
        bump: Script,
        ttl_ms: u64,
    },
}

impl std::fmt::Debug for ListCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListCache")
            .field("entries", &self.lists.entry_count())
            .finish()
    }
}

/// Lua: `generation(key, ttl)` reads a manager's generation, creating it
/// from the server clock (in microseconds) if missing, so a generation lost
/// with a Redis restart or by expiry comes back larger than any before it
/// and never matches an old entry; its time to live (ms) is renewed on every
/// use. Every script that reads generations starts with it (see
/// [`with_generation`]), so they all read them alike.
const GENERATION_FN: &str = r"
local function generation(key, ttl)
  local g = redis.call('GET', key)
  if not g then
    local t = redis.call('TIME')
    redis.call('SET', key, t[1] * 1000000 + t[2], 'NX')
    g = redis.call('GET', key)
  end
  redis.call('PEXPIRE', key, ttl)
  return tonumber(g)
end
";

/// A script whose `body` may call `generation(key, ttl)`.
pub fn with_generation(body: &str) -> Script {
    Script::new(&format!("{GENERATION_FN}{body}"))
}

/// Reads the epoch (KEYS[2]) and a manager's generation (KEYS[1]); ARGV[1]:
/// the generation's time to live in ms.
const READ_GENERATION: &str = r"
return {tonumber(redis.call('GET', KEYS[2]) or '0'), generation(KEYS[1], ARGV[1])}
";

/// Bumps a manager's generation (creating it as above first).
const BUMP_GENERATION: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  local t = redis.call('TIME')
  redis.call('SET', KEYS[1], t[1] * 1000000 + t[2], 'NX')
end
local g = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return g
";

impl ListCache {
    /// Lists of at most `max_bytes` in all (bodies and keys), each at most `ttl` old.
    fn lists(max_bytes: u64, ttl: Duration) -> Cache<Key, CachedList> {
        Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &Key, list: &CachedList| {
                let bytes = 96 + key.0.as_str().len() + key.2.len() + list.body.len() + list.etag.len();
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .time_to_live(ttl)
            .build()
    }

    /// A cache of at most `max_bytes` whose generations live in this process.
    pub fn in_memory(max_bytes: u64, ttl: Duration) -> Self {
        // An evicted generation restarts from a counter shared by all
        // managers, which only grows: it never repeats an earlier value.
        let current = Cache::builder().max_capacity(LOCAL_GENERATIONS).build();
        Self {
            lists: Self::lists(max_bytes, ttl),
            generations: Generations::Memory {
                current,
                next: Arc::default(),
            },
        }
    }

    /// A cache of at most `max_bytes` whose generations live in Redis,
    /// shared by every instance.
    pub fn shared(redis: SharedRedis, max_bytes: u64, ttl: Duration) -> Self {
        Self {
            lists: Self::lists(max_bytes, ttl),
            generations: Generations::Redis {
                redis,
                read: with_generation(READ_GENERATION),
                bump: Script::new(BUMP_GENERATION),
                ttl_ms: generation_ttl(ttl).as_millis() as u64,
            },
        }
    }

    /// The manager's current generation; an error when it cannot be known
    /// (Redis down): then the cache must be bypassed.
    pub async fn generation(&self, manager: &ManagerId) -> anyhow::Result<Generation> {
        match &self.generations {
            Generations::Memory { current, next } => Ok((
                0,
                current
                    .get_with_by_ref(manager, async { next.fetch_add(1, Ordering::SeqCst) + 1 })
                    .await,
            )),
            Generations::Redis {
                redis, read, ttl_ms, ..
            } => {
                anyhow::ensure!(redis.is_up(), "Redis is unreachable");
                let read: redis::RedisResult<(u64, u64)> = read
                    .key(generation_key(&redis.prefix, manager))
                    .key(redis.epoch_key())
                    .arg(*ttl_ms)
                    .invoke_async(&mut redis.conn())
                    .await;
                read.inspect_err(|err| redis.failed(err)).map_err(Into::into)
            }
        }
    }

    /// Makes every cached list of `manager` unreachable. Call after a write
    /// commits and before its response is sent. If Redis cannot be reached,
    /// this instance drops its whole cache and the error is returned.
    pub async fn invalidate(&self, manager: &ManagerId) -> anyhow::Result<()> {
        match &self.generations {
            Generations::Memory { current, next } => {
                current
                    .insert(manager.clone(), next.fetch_add(1, Ordering::SeqCst) + 1)
                    .await;
                Ok(())
            }
            Generations::Redis {
                redis, bump, ttl_ms, ..
            } => {
                let bumped: redis::RedisResult<u64> = if redis.is_up() {
                    bump.key(generation_key(&redis.prefix, manager))
                        .arg(*ttl_ms)
                        .invoke_async(&mut redis.conn())
                        .await
                } else {
                    Err((redis::ErrorKind::Io, "Redis is unreachable").into())
                };
                if let Err(err) = &bumped {
                    // This instance serves nothing older than the write; the
                    // epoch bump on recovery reaches the other instances.
                    redis.failed(err);
                    redis.missed_write();
                    self.lists.invalidate_all();
                }
                bumped.map(drop).map_err(Into::into)
            }
        }
    }

    /// The list stored for this manager, generation and query.
    pub async fn get(&self, manager: &ManagerId, generation: Generation, query: &str) -> Option<CachedList> {
        self.lists.get(&(manager.clone(), generation, query.to_owned())).await
    }

    /// Stores a list for this manager, generation and query.
    pub async fn put(&self, manager: &ManagerId, generation: Generation, query: String, list: CachedList) {
        self.lists.insert((manager.clone(), generation, query), list).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(body: &'static str) -> CachedList {
        CachedList {
            body: Bytes::from_static(body.as_bytes()),
            etag: "\"x\"".into(),
            next: None,
        }
    }

    #[tokio::test]
    async fn a_write_makes_earlier_entries_unreachable() {
        let cache = ListCache::in_memory(1 << 20, Duration::from_secs(60));
        let m = ManagerId::parse("m").unwrap();
        let g1 = cache.generation(&m).await.unwrap();
        assert_eq!(cache.generation(&m).await.unwrap(), g1, "stable until a write");
        cache.put(&m, g1, "q".into(), list("old")).await;
        assert_eq!(cache.get(&m, g1, "q").await.unwrap().body, "old");
        cache.invalidate(&m).await.unwrap();
        let g2 = cache.generation(&m).await.unwrap();
        assert_ne!(g1, g2);
        assert!(cache.get(&m, g2, "q").await.is_none());
    }

    #[tokio::test]
    async fn the_cache_holds_at_most_its_bytes() {
        let cache = ListCache::in_memory(64 * 1024, Duration::from_secs(60));
        let m = ManagerId::parse("m").unwrap();
        let generation = cache.generation(&m).await.unwrap();
        let body: &'static str = Box::leak("x".repeat(4096).into_boxed_str());
        for i in 0..100 {
            cache.put(&m, generation, format!("q{i}"), list(body)).await;
        }
        cache.lists.run_pending_tasks().await;
        assert!(
            cache.lists.weighted_size() <= 64 * 1024,
            "{}",
            cache.lists.weighted_size()
        );
        assert!(cache.lists.entry_count() < 100);
    }

    #[tokio::test]
    async fn managers_do_not_share_generations() {
        let cache = ListCache::in_memory(1 << 20, Duration::from_secs(60));
        let (a, b) = (ManagerId::parse("a").unwrap(), ManagerId::parse("b").unwrap());
        let gb = cache.generation(&b).await.unwrap();
        cache.invalidate(&a).await.unwrap();
        assert_eq!(cache.generation(&b).await.unwrap(), gb);
    }
}

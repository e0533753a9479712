//! The product-list cache. Entries are keyed by manager, the manager's
//! current *generation* and the query; every write bumps the manager's
//! generation before its response is sent, so no later read can find an
//! entry made before the write. Entries hold the finished response body and
//! its ETag, so a hit costs no serialisation. The generation lives in this
//! process, or in Redis when several instances share one database.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{body::Bytes, http::HeaderValue};
use moka::future::Cache;
use redis::{Script, aio::ConnectionManager};

use crate::domain::ManagerId;

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

/// What a list read is keyed by: manager, generation, normalised query.
type Key = (ManagerId, u64, String);

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
        conn: ConnectionManager,
        read: Script,
        bump: Script,
        prefix: String,
    },
}

impl std::fmt::Debug for ListCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListCache")
            .field("entries", &self.lists.entry_count())
            .finish()
    }
}

/// Reads a manager's generation, creating it from the server clock (in
/// microseconds) if missing, so a generation lost with a Redis restart comes
/// back larger than any before it and never matches an old entry.
const READ_GENERATION: &str = r"
local g = redis.call('GET', KEYS[1])
if not g then
  local t = redis.call('TIME')
  redis.call('SET', KEYS[1], t[1] * 1000000 + t[2], 'NX')
  g = redis.call('GET', KEYS[1])
end
return tonumber(g)
";

/// Bumps a manager's generation (creating it as above first).
const BUMP_GENERATION: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  local t = redis.call('TIME')
  redis.call('SET', KEYS[1], t[1] * 1000000 + t[2], 'NX')
end
return redis.call('INCR', KEYS[1])
";

impl ListCache {
    fn lists(capacity: u64, ttl: Duration) -> Cache<Key, CachedList> {
        Cache::builder().max_capacity(capacity).time_to_live(ttl).build()
    }

    /// A cache whose generations live in this process.
    pub fn in_memory(capacity: u64, ttl: Duration) -> Self {
        // An evicted generation restarts from a counter shared by all
        // managers, which only grows: it never repeats an earlier value.
        let current = Cache::builder().max_capacity(capacity.max(1) * 4).build();
        Self {
            lists: Self::lists(capacity, ttl),
            generations: Generations::Memory {
                current,
                next: Arc::default(),
            },
        }
    }

    /// A cache whose generations live in Redis, shared by every instance.
    pub fn shared(conn: ConnectionManager, capacity: u64, ttl: Duration, prefix: &str) -> Self {
        Self {
            lists: Self::lists(capacity, ttl),
            generations: Generations::Redis {
                conn,
                read: Script::new(READ_GENERATION),
                bump: Script::new(BUMP_GENERATION),
                prefix: prefix.to_owned(),
            },
        }
    }

    /// The manager's current generation.
    pub async fn generation(&self, manager: &ManagerId) -> anyhow::Result<u64> {
        match &self.generations {
            Generations::Memory { current, next } => Ok(current
                .get_with_by_ref(manager, async { next.fetch_add(1, Ordering::SeqCst) + 1 })
                .await),
            Generations::Redis { conn, read, prefix, .. } => Ok(read
                .key(format!("{prefix}gen:{manager}"))
                .invoke_async(&mut conn.clone())
                .await?),
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
            Generations::Redis { conn, bump, prefix, .. } => {
                let bumped: Result<u64, _> = bump
                    .key(format!("{prefix}gen:{manager}"))
                    .invoke_async(&mut conn.clone())
                    .await;
                if bumped.is_err() {
                    // This instance at least serves nothing older than the
                    // write; other instances' entries expire with their TTL.
                    self.lists.invalidate_all();
                }
                bumped.map(drop).map_err(Into::into)
            }
        }
    }

    /// The list stored for this manager, generation and query.
    pub async fn get(&self, manager: &ManagerId, generation: u64, query: &str) -> Option<CachedList> {
        self.lists.get(&(manager.clone(), generation, query.to_owned())).await
    }

    /// Stores a list for this manager, generation and query.
    pub async fn put(&self, manager: &ManagerId, generation: u64, query: String, list: CachedList) {
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
        let cache = ListCache::in_memory(100, Duration::from_secs(60));
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
    async fn managers_do_not_share_generations() {
        let cache = ListCache::in_memory(100, Duration::from_secs(60));
        let (a, b) = (ManagerId::parse("a").unwrap(), ManagerId::parse("b").unwrap());
        let gb = cache.generation(&b).await.unwrap();
        cache.invalidate(&a).await.unwrap();
        assert_eq!(cache.generation(&b).await.unwrap(), gb);
    }
}

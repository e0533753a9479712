//! The shared sliding log: one Redis sorted set per manager, scored by the
//! time each request was admitted, checked and updated by one Lua script
//! (atomic, one round trip). Time comes from the Redis server, so instances
//! whose clocks differ still agree. The same round trip also reads the
//! manager's cache generation (see [`crate::cache`]), so a list read costs
//! one Redis round trip, not two.

use std::time::Duration;

use redis::Script;

use super::Decision;
use crate::{domain::ManagerId, shared::SharedRedis};

/// KEYS[1] the manager's log, KEYS[2] their cache generation, KEYS[3] the
/// shared cache epoch; ARGV limit, window (ms), a unique member, the
/// generation's time to live (ms). Returns {allowed, count after, oldest
/// admitted time (ms), now (ms), epoch, generation}; the generation is read
/// as `cache::READ_GENERATION` reads it.
const SLIDING_LOG: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local allowed = 0
if count < limit then
  redis.call('ZADD', KEYS[1], now, now .. ':' .. ARGV[3])
  count = count + 1
  allowed = 1
end
redis.call('PEXPIRE', KEYS[1], window)
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local first = now
if oldest[2] then first = tonumber(oldest[2]) end
local g = redis.call('GET', KEYS[2])
if not g then
  redis.call('SET', KEYS[2], t[1] * 1000000 + t[2], 'NX')
  g = redis.call('GET', KEYS[2])
end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
local epoch = tonumber(redis.call('GET', KEYS[3]) or '0')
return {allowed, count, first, now, epoch, tonumber(g)}
";

/// A limiter shared through Redis.
#[derive(Clone)]
pub struct RedisLimiter {
    pub(super) redis: SharedRedis,
    script: Script,
    limit: u32,
    window: Duration,
    generation_ttl: Duration,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("limit", &self.limit)
            .field("window", &self.window)
            .finish()
    }
}

impl RedisLimiter {
    /// `limit` requests per `window` per manager, keys under the prefix of
    /// `redis`; cache generations it reads live `generation_ttl`.
    pub fn new(redis: SharedRedis, limit: u32, window: Duration, generation_ttl: Duration) -> Self {
        Self {
            redis,
            script: Script::new(SLIDING_LOG),
            limit,
            window,
            generation_ttl,
        }
    }

    /// Counts a request of `manager` if its window has room.
    pub async fn check(&self, manager: &ManagerId) -> redis::RedisResult<Decision> {
        let window_ms = self.window.as_millis() as u64;
        let member = uuid::Uuid::new_v4().simple().to_string();
        let (allowed, count, oldest, now, epoch, generation): (u8, u32, u64, u64, u64, u64) = self
            .script
            .key(format!("{}rl:{}", self.redis.prefix, manager))
            .key(crate::cache::generation_key(&self.redis.prefix, manager))
            .key(self.redis.epoch_key())
            .arg(self.limit)
            .arg(window_ms)
            .arg(member)
            .arg(self.generation_ttl.as_millis() as u64)
            .invoke_async(&mut self.redis.conn.clone())
            .await?;
        Ok(Decision {
            allowed: allowed == 1,
            limit: self.limit,
            remaining: self.limit.saturating_sub(count),
            reset_secs: super::seconds_until(oldest + window_ms, now),
            generation: Some((epoch, generation)),
        })
    }
}

//! The shared sliding log: one Redis sorted set per manager, scored by the
//! time each request was admitted, checked and updated by one Lua script
//! (atomic, one round trip). Time comes from the Redis server, so instances
//! whose clocks differ still agree.

use std::time::Duration;

use redis::Script;

use super::Decision;
use crate::{domain::ManagerId, shared::SharedRedis};

/// KEYS[1] the manager's log; ARGV limit, window (ms), a unique member.
/// Returns {allowed, count after, oldest admitted time (ms), now (ms)}.
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
return {allowed, count, first, now}
";

/// A limiter shared through Redis.
#[derive(Clone)]
pub struct RedisLimiter {
    pub(super) redis: SharedRedis,
    script: Script,
    limit: u32,
    window: Duration,
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
    /// `limit` requests per `window` per manager, keys under the prefix of `redis`.
    pub fn new(redis: SharedRedis, limit: u32, window: Duration) -> Self {
        Self {
            redis,
            script: Script::new(SLIDING_LOG),
            limit,
            window,
        }
    }

    /// Counts a request of `manager` if its window has room.
    pub async fn check(&self, manager: &ManagerId) -> redis::RedisResult<Decision> {
        let window_ms = self.window.as_millis() as u64;
        let member = uuid::Uuid::new_v4().simple().to_string();
        let (allowed, count, oldest, now): (u8, u32, u64, u64) = self
            .script
            .key(format!("{}rl:{}", self.redis.prefix, manager))
            .arg(self.limit)
            .arg(window_ms)
            .arg(member)
            .invoke_async(&mut self.redis.conn.clone())
            .await?;
        Ok(Decision {
            allowed: allowed == 1,
            limit: self.limit,
            remaining: self.limit.saturating_sub(count),
            reset_secs: super::seconds_until(oldest + window_ms, now),
        })
    }
}

//! Per-manager rate limiting: at most `limit` requests in ANY rolling window.
//!
//! A sliding log (the admitted timestamps, at most `limit` per manager) is the
//! one scheme that meets "any rolling window" exactly: a fixed window admits
//! up to twice the limit across a boundary, and a token bucket or GCRA with a
//! burst of `limit` admits about twice the limit in the first window. The
//! crates we know of (governor, tower's RateLimit) implement those, so this
//! small module implements the log: in memory for one instance, or in Redis
//! (one sorted set per manager, one Lua script per batch of checks) when
//! several instances must share the limit.

mod memory;
mod redis;

use std::{collections::VecDeque, time::Duration};

pub use self::{memory::MemoryLimiter, redis::RedisLimiter};
use crate::domain::ManagerId;

/// The outcome of one check, with what the `X-RateLimit-*` headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is admitted (and was counted).
    pub allowed: bool,
    /// Requests allowed per window.
    pub limit: u32,
    /// Requests still allowed now.
    pub remaining: u32,
    /// Seconds until the oldest counted request leaves the window (a slot frees).
    pub reset_secs: u64,
    /// The manager's cache generation, when the shared limiter read it in
    /// the same round trip.
    pub generation: Option<crate::cache::Generation>,
}

/// The limiter in use: shared through Redis when there is one and it can be
/// reached, else this process's own.
#[derive(Debug, Clone)]
pub struct Limiter {
    local: MemoryLimiter,
    shared: Option<RedisLimiter>,
}

impl Limiter {
    /// A limiter of this process only.
    pub fn local(local: MemoryLimiter) -> Self {
        Self { local, shared: None }
    }

    /// A limiter shared through Redis, falling back to `local` while Redis
    /// cannot be reached (the limit then holds per instance).
    pub fn shared(shared: RedisLimiter, local: MemoryLimiter) -> Self {
        Self {
            local,
            shared: Some(shared),
        }
    }

    /// Counts a request of `manager` if the window has room. Never fails and
    /// never waits on a Redis known to be down.
    pub async fn check(&self, manager: &ManagerId) -> Decision {
        if let Some(shared) = self.shared.as_ref().filter(|s| s.redis.is_up())
            && let Some(decision) = shared.check(manager).await
        {
            return decision;
        }
        self.local.check(manager)
    }
}

/// The sliding-log rule on one manager's log of admitted times (milliseconds,
/// oldest first): forget times that left the window; admit and record `now`
/// if fewer than `limit` remain.
pub fn admit(log: &mut VecDeque<u64>, now_ms: u64, limit: u32, window: Duration) -> Decision {
    let window_ms = window.as_millis() as u64;
    while log.front().is_some_and(|&t| t + window_ms <= now_ms) {
        log.pop_front();
    }
    let allowed = log.len() < limit as usize;
    if allowed {
        log.push_back(now_ms);
    }
    let oldest = log.front().copied().unwrap_or(now_ms);
    Decision {
        allowed,
        limit,
        remaining: limit.saturating_sub(log.len() as u32),
        reset_secs: seconds_until(oldest + window_ms, now_ms),
        generation: None,
    }
}

/// Whole seconds from `now_ms` until `at_ms`, rounded up, at least 1.
fn seconds_until(at_ms: u64, now_ms: u64) -> u64 {
    at_ms.saturating_sub(now_ms).div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn admits_the_limit_then_refuses_with_the_wait() {
        let mut log = VecDeque::new();
        for i in 0..100 {
            let d = admit(&mut log, 1_000 + i, 100, HOUR);
            assert!(d.allowed);
            assert_eq!(d.remaining, 99 - i as u32);
        }
        let refused = admit(&mut log, 2_000, 100, HOUR);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        // The first request (t = 1000 ms) leaves the window at 3,601,000 ms.
        assert_eq!(refused.reset_secs, 3599);
        assert_eq!(log.len(), 100, "refused requests are not counted");
    }

    #[test]
    fn any_rolling_window_holds_at_most_the_limit() {
        // 100 requests at the end of one hour and 100 more at the start of
        // the next: a fixed window would admit all 200.
        let mut log = VecDeque::new();
        let admitted_late = (0..100)
            .filter(|i| admit(&mut log, 3_599_000 + i, 100, HOUR).allowed)
            .count();
        let admitted_next = (0..100)
            .filter(|i| admit(&mut log, 3_601_000 + i, 100, HOUR).allowed)
            .count();
        assert_eq!((admitted_late, admitted_next), (100, 0));
        // One hour after the first of them, exactly one slot frees.
        assert!(admit(&mut log, 3_599_000 + 3_600_000, 100, HOUR).allowed);
        assert!(!admit(&mut log, 3_599_000 + 3_600_000, 100, HOUR).allowed);
    }

    #[test]
    fn reset_is_rounded_up_and_never_zero() {
        assert_eq!(seconds_until(1_500, 1_000), 1);
        assert_eq!(seconds_until(2_001, 1_000), 2);
        assert_eq!(seconds_until(1_000, 1_000), 1);
        let mut log = VecDeque::new();
        assert_eq!(admit(&mut log, 0, 5, Duration::from_secs(10)).reset_secs, 10);
    }
}

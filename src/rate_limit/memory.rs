//! The in-process sliding log.

use std::{
    collections::VecDeque,
    hash::Hash,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use moka::sync::Cache;

use super::{Decision, admit};
use crate::domain::ManagerId;

/// Sliding logs of the active managers (or, for anonymous requests, client
/// addresses: any key `K`) of this process, each behind its own lock (no
/// lock is shared by all requests). Bounded: a log idle for a whole window is
/// empty and is forgotten, and beyond `max_managers` the least recently used
/// logs are forgotten first (such a key starts a fresh window on this
/// instance).
#[derive(Debug, Clone)]
pub struct MemoryLimiter<K = ManagerId>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    logs: Cache<K, Arc<Mutex<VecDeque<u64>>>>,
    limit: u32,
    window: Duration,
    epoch: Instant,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> MemoryLimiter<K> {
    /// `limit` requests per `window` per manager, logs of at most
    /// `max_managers` managers.
    pub fn new(limit: u32, window: Duration, max_managers: u64) -> Self {
        Self {
            logs: Cache::builder().max_capacity(max_managers).time_to_idle(window).build(),
            limit,
            window,
            epoch: Instant::now(),
        }
    }

    /// Counts a request of `key` if its window has room.
    pub fn check(&self, key: &K) -> Decision {
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        let log = self.logs.get_with_by_ref(key, Arc::default);
        let mut log = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        admit(&mut log, now_ms, self.limit, self.window)
    }

    /// Managers currently holding a log (for tests and metrics).
    pub fn tracked(&self) -> u64 {
        self.logs.run_pending_tasks();
        self.logs.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_each_manager_separately() {
        let limiter = MemoryLimiter::new(2, Duration::from_secs(60), 100);
        let (a, b) = (ManagerId::parse("a").unwrap(), ManagerId::parse("b").unwrap());
        assert!(limiter.check(&a).allowed);
        assert!(limiter.check(&a).allowed);
        assert!(!limiter.check(&a).allowed);
        assert!(limiter.check(&b).allowed);
        assert_eq!(limiter.tracked(), 2);
    }

    #[test]
    fn idle_managers_are_forgotten() {
        let limiter = MemoryLimiter::new(2, Duration::from_millis(20), 100);
        let a = ManagerId::parse("a").unwrap();
        limiter.check(&a);
        std::thread::sleep(Duration::from_millis(50));
        limiter.check(&ManagerId::parse("b").unwrap());
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn the_number_of_managers_tracked_is_bounded() {
        let limiter = MemoryLimiter::new(2, Duration::from_secs(60), 50);
        for i in 0..1000 {
            limiter.check(&ManagerId::parse(&format!("m{i}")).unwrap());
        }
        assert!(limiter.tracked() <= 50, "{}", limiter.tracked());
    }
}

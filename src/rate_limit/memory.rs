//! The in-process sliding log.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::{Decision, admit};
use crate::domain::ManagerId;

/// Sliding logs of every active manager in this process. Logs whose every
/// entry has left the window are swept at most once per window, so memory
/// for idle managers is reclaimed.
#[derive(Debug, Clone)]
pub struct MemoryLimiter {
    inner: Arc<Mutex<State>>,
    limit: u32,
    window: Duration,
    epoch: Instant,
}

#[derive(Debug, Default)]
struct State {
    logs: HashMap<ManagerId, VecDeque<u64>>,
    last_sweep_ms: u64,
}

impl MemoryLimiter {
    /// `limit` requests per `window` per manager.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            inner: Arc::default(),
            limit,
            window,
            epoch: Instant::now(),
        }
    }

    /// Counts a request of `manager` if its window has room.
    pub fn check(&self, manager: &ManagerId) -> Decision {
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        let window_ms = self.window.as_millis() as u64;
        let mut state = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if now_ms >= state.last_sweep_ms + window_ms {
            state
                .logs
                .retain(|_, log| log.back().is_some_and(|&t| t + window_ms > now_ms));
            state.last_sweep_ms = now_ms;
        }
        let log = state.logs.entry(manager.clone()).or_default();
        admit(log, now_ms, self.limit, self.window)
    }

    /// Managers currently holding a log (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.inner.lock().map(|s| s.logs.len()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_each_manager_separately() {
        let limiter = MemoryLimiter::new(2, Duration::from_secs(60));
        let (a, b) = (ManagerId::parse("a").unwrap(), ManagerId::parse("b").unwrap());
        assert!(limiter.check(&a).allowed);
        assert!(limiter.check(&a).allowed);
        assert!(!limiter.check(&a).allowed);
        assert!(limiter.check(&b).allowed);
        assert_eq!(limiter.tracked(), 2);
    }

    #[test]
    fn idle_managers_are_forgotten() {
        let limiter = MemoryLimiter::new(2, Duration::from_millis(20));
        let a = ManagerId::parse("a").unwrap();
        limiter.check(&a);
        std::thread::sleep(Duration::from_millis(50));
        limiter.check(&ManagerId::parse("b").unwrap());
        assert_eq!(limiter.tracked(), 1);
    }
}

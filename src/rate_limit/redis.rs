//! The shared sliding log: one Redis sorted set per manager, scored by the
//! time each request was admitted, checked and updated by one Lua script
//! (atomic). Time comes from the Redis server, so instances whose clocks
//! differ still agree. The same script also reads the manager's cache
//! generation (see [`crate::cache`]), so a list read costs no second trip.
//!
//! Checks are batched: while a script call is in flight, the checks that
//! arrive meanwhile queue, and the next call takes all of them at once, for
//! every manager among them (group commit, as a database does with its log).
//! Each admitted request is still its own member of its manager's log, so
//! the limit stays exact across instances; what the batch saves is a round
//! trip and a script call per request, which under load is most of what the
//! limit costs. With one request at a time a batch is that one request.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use redis::Script;
use tokio::sync::oneshot;

use super::Decision;
use crate::{domain::ManagerId, shared::SharedRedis};

/// KEYS[1] the shared cache epoch, then for each manager of the batch its
/// log and its cache generation; ARGV limit, window (ms), the generations'
/// time to live (ms), a member prefix unique to the batch, then for each
/// manager how many requests ask to be admitted. Returns {now (ms), epoch}
/// followed, for each manager, by {count before, admitted, oldest admitted
/// time (ms), generation}; the generation is read by the cache's own
/// `generation` function ([`crate::cache::with_generation`]).
const SLIDING_LOG: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local out = {now, tonumber(redis.call('GET', KEYS[1]) or '0')}
for m = 1, (#KEYS - 1) / 2 do
  local log, gen = KEYS[2 * m], KEYS[2 * m + 1]
  local wanted = tonumber(ARGV[4 + m])
  redis.call('ZREMRANGEBYSCORE', log, '-inf', now - window)
  local before = redis.call('ZCARD', log)
  local admitted = math.max(0, math.min(wanted, limit - before))
  if admitted > 0 then
    local members = {}
    for i = 1, admitted do
      members[2 * i - 1] = now
      members[2 * i] = now .. ':' .. ARGV[4] .. ':' .. m .. ':' .. i
    end
    redis.call('ZADD', log, unpack(members))
  end
  redis.call('PEXPIRE', log, window)
  local oldest = redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')
  local first = now
  if oldest[2] then first = tonumber(oldest[2]) end
  out[#out + 1] = before
  out[#out + 1] = admitted
  out[#out + 1] = first
  out[#out + 1] = generation(gen, ARGV[3])
end
return out
";

/// Most checks one script call takes.
const MAX_BATCH: usize = 128;
/// Script calls in flight at once: one being run by Redis while the next
/// travels, without letting batches shrink to one request each.
const MAX_IN_FLIGHT: usize = 2;

/// A limiter shared through Redis. Cheap to clone.
#[derive(Clone)]
pub struct RedisLimiter {
    pub(super) redis: SharedRedis,
    batcher: Arc<Batcher>,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter").field("redis", &self.redis).finish()
    }
}

/// A check waiting for its batch: `None` is sent back when Redis failed.
struct Waiting {
    manager: ManagerId,
    reply: oneshot::Sender<Option<Decision>>,
}

/// What every batch shares, and the checks queued for the next one.
struct Batcher {
    redis: SharedRedis,
    script: Script,
    limit: u32,
    window: Duration,
    generation_ttl: Duration,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiting>,
    /// Script calls running now.
    running: usize,
}

impl RedisLimiter {
    /// `limit` requests per `window` per manager, keys under the prefix of
    /// `redis`; cache generations it reads live `generation_ttl`.
    pub fn new(redis: SharedRedis, limit: u32, window: Duration, generation_ttl: Duration) -> Self {
        let batcher = Arc::new(Batcher {
            redis: redis.clone(),
            script: crate::cache::with_generation(SLIDING_LOG),
            limit,
            window,
            generation_ttl,
            queue: Mutex::new(Queue::default()),
        });
        Self { redis, batcher }
    }

    /// Counts a request of `manager` if its window has room; `None` when
    /// Redis could not be asked (it is then marked down).
    ///
    /// When fewer than [`MAX_IN_FLIGHT`] calls are running, the caller runs
    /// the next one itself, with whatever has queued (at least its own
    /// check): a lone request costs no hand-over to another task. Otherwise
    /// it waits for a running call to finish, which runs the queue next.
    pub async fn check(&self, manager: &ManagerId) -> Option<Decision> {
        let (reply, answer) = oneshot::channel();
        let waiting = Waiting {
            manager: manager.clone(),
            reply,
        };
        if let Some(batch) = self.batcher.enqueue(waiting) {
            let turn = Turn(self.batcher.clone());
            turn.0.answer(batch).await;
            drop(turn);
        }
        answer.await.ok().flatten()
    }
}

/// A running script call's place; giving it up runs what queued meanwhile
/// (in a task of its own, so the caller that ran the call is not held up),
/// also when the caller was cancelled half-way.
struct Turn(Arc<Batcher>);

impl Drop for Turn {
    fn drop(&mut self) {
        let batcher = &self.0;
        let next = {
            let mut queue = batcher.lock();
            if queue.waiting.is_empty() {
                queue.running -= 1;
                return;
            }
            queue.take()
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let batcher = batcher.clone();
                runtime.spawn(async move {
                    let turn = Turn(batcher);
                    turn.0.answer(next).await;
                });
            }
            // No runtime (the process is stopping): those checks get no
            // answer, and fall back to the local limiter.
            Err(_) => batcher.lock().running -= 1,
        }
    }
}

impl Queue {
    /// The oldest checks, up to a batch.
    fn take(&mut self) -> Vec<Waiting> {
        let n = self.waiting.len().min(MAX_BATCH);
        self.waiting.drain(..n).collect()
    }
}

impl Batcher {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // Nothing panics while holding the lock; a poisoned one is still sound.
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a check; a batch to run now if a call may start.
    fn enqueue(&self, waiting: Waiting) -> Option<Vec<Waiting>> {
        let mut queue = self.lock();
        queue.waiting.push(waiting);
        (queue.running < MAX_IN_FLIGHT).then(|| {
            queue.running += 1;
            queue.take()
        })
    }

    /// One script call for `batch`, then each check's own decision.
    async fn answer(&self, batch: Vec<Waiting>) {
        // Managers in order of first appearance, with their requests, and
        // each check's place among them.
        let mut index: HashMap<&ManagerId, usize> = HashMap::with_capacity(batch.len());
        let mut managers: Vec<(&ManagerId, u32)> = Vec::with_capacity(batch.len());
        let mut positions = Vec::with_capacity(batch.len());
        for waiting in &batch {
            let at = *index.entry(&waiting.manager).or_insert_with(|| {
                managers.push((&waiting.manager, 0));
                managers.len() - 1
            });
            managers[at].1 += 1;
            positions.push(at);
        }
        let mut call = self.script.key(self.redis.epoch_key());
        for (manager, _) in &managers {
            call.key(format!("{}rl:{}", self.redis.prefix, manager))
                .key(crate::cache::generation_key(&self.redis.prefix, manager));
        }
        call.arg(self.limit)
            .arg(self.window.as_millis() as u64)
            .arg(self.generation_ttl.as_millis() as u64)
            .arg(uuid::Uuid::new_v4().simple().to_string());
        for (_, wanted) in &managers {
            call.arg(*wanted);
        }
        let answered: redis::RedisResult<Vec<u64>> = call.invoke_async(&mut self.redis.conn()).await;
        let counts = match answered {
            Ok(counts) if counts.len() == 2 + 4 * managers.len() => counts,
            Ok(counts) => {
                tracing::error!(values = counts.len(), "unexpected rate-limit script answer");
                Vec::new()
            }
            Err(err) => {
                self.redis.failed(&err);
                Vec::new()
            }
        };
        let mut logs: Vec<Log> = counts
            .get(2..)
            .unwrap_or_default()
            .chunks_exact(4)
            .map(|c| Log {
                count: c[0] as u32,
                admitted: c[1] as u32,
                oldest: c[2],
                generation: c[3],
            })
            .collect();
        for (waiting, at) in batch.into_iter().zip(positions) {
            let decision = logs.get_mut(at).map(|log| {
                let (now, epoch) = (counts[0], counts[1]);
                self.decide(log, now, epoch)
            });
            let _ = waiting.reply.send(decision);
        }
    }

    /// The decision for the next request of a manager whose log the script
    /// answered for; requests are admitted in the order they queued.
    fn decide(&self, log: &mut Log, now: u64, epoch: u64) -> Decision {
        let allowed = log.admitted > 0;
        if allowed {
            log.admitted -= 1;
            log.count += 1;
        }
        let window_ms = self.window.as_millis() as u64;
        Decision {
            allowed,
            limit: self.limit,
            // Requests admitted later in this batch are not yet counted
            // against this one, as if each had been checked on its own.
            remaining: self.limit.saturating_sub(log.count),
            reset_secs: super::seconds_until(log.oldest + window_ms, now),
            generation: Some((epoch, log.generation)),
        }
    }
}

/// One manager's log as the script left it, consumed request by request.
struct Log {
    /// Requests counted before the next one of this batch.
    count: u32,
    /// Requests of this batch still to be admitted.
    admitted: u32,
    oldest: u64,
    generation: u64,
}

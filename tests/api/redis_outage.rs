//! A Redis that goes away while the service runs: nothing answers 5xx, the
//! limiter falls back to the instance's own, lists are read from PostgreSQL
//! (never from a stale cache, on any instance), `/readyz` says `degraded`,
//! and the shared state is used again by itself when Redis is back.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use ecommerce_api::{
    cache::{CachedList, ListCache},
    domain::ManagerId,
    shared::SharedRedis,
};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{TestApp, free_port, settings, spawn_app_with};

/// A private redis-server on `port`, killed when dropped.
struct Redis(Child);

impl Redis {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (Debian package redis-server)");
        let redis = Self(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }
}

impl Redis {
    /// Freezes (`STOP`) or thaws (`CONT`) the server: it keeps its data but
    /// answers nothing while frozen.
    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &self.0.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn readiness(app: &TestApp) -> Value {
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 200, "Redis is not needed to be ready");
    response.json().await.unwrap()
}

async fn wait_until_ready_says(app: &TestApp, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while readiness(app).await["status"] != status {
        assert!(Instant::now() < deadline, "/readyz never said {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn quantity_listed(app: &TestApp) -> Value {
    let response = app.get("/api/inventory/products?manager_id=m").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["products"][0]["quantity"].clone()
}

#[sqlx::test]
async fn a_stopped_redis_costs_no_request_a_5xx_and_service_resumes_by_itself(db: PgPool) {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let redis = Redis::start(port);
    let app = spawn_app_with(db, settings(), Some(&url)).await;
    app.seed("m", "Tea", 2.0, 5).await;
    assert_eq!(readiness(&app).await, json!({"status": "ok"}));

    drop(redis);
    let mut statuses = Vec::new();
    let started = Instant::now();
    for i in 0..20 {
        let write = app
            .post(
                "/api/inventory/products",
                json!({"manager_id": "m", "products": [{"name": "Tea", "price": 2.0, "quantity": 100 + i}]}),
            )
            .await;
        statuses.push(write.status().as_u16());
        assert!(
            write.headers().contains_key("x-ratelimit-remaining"),
            "the local limiter answers"
        );
        let read = app.get("/api/inventory/products?manager_id=m").await;
        statuses.push(read.status().as_u16());
        let body: Value = read.json().await.unwrap();
        assert_eq!(
            body["products"][0]["quantity"],
            100 + i,
            "a read after a write is exact"
        );
    }
    assert!(
        statuses.iter().all(|s| *s < 500),
        "no 5xx while Redis is down: {statuses:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "40 requests without waiting on Redis: {:?}",
        started.elapsed()
    );
    assert_eq!(
        readiness(&app).await,
        json!({"status": "degraded", "redis": "unreachable"})
    );

    let _redis = Redis::start(port);
    wait_until_ready_says(&app, "ok").await;
    assert_eq!(quantity_listed(&app).await, 119);
    app.stop().await;
}

#[sqlx::test]
async fn writes_made_while_redis_was_away_reach_the_other_instances_caches(db: PgPool) {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let redis = Redis::start(port);
    let shared = settings();
    let (a, b) = (
        spawn_app_with(db.clone(), shared.clone(), Some(&url)).await,
        spawn_app_with(db, shared, Some(&url)).await,
    );
    a.seed("m", "Tea", 2.0, 5).await;
    assert_eq!(quantity_listed(&b).await, 5, "b caches the list");
    assert_eq!(quantity_listed(&b).await, 5);

    // Frozen, Redis keeps its data: b's cached generation is still current
    // there when it returns, unless a's missed write is made known.
    redis.signal("STOP");
    let write = a
        .post(
            "/api/inventory/products",
            json!({"manager_id": "m", "products": [{"name": "Tea", "price": 2.0, "quantity": 7}]}),
        )
        .await;
    assert_eq!(write.status(), 201);
    assert_eq!(readiness(&a).await["status"], "degraded");
    redis.signal("CONT");
    wait_until_ready_says(&a, "ok").await;

    assert_eq!(quantity_listed(&b).await, 7, "b serves nothing older than a's write");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn shared_keys_expire() {
    let port = free_port();
    let _redis = Redis::start(port);
    let url = format!("redis://127.0.0.1:{port}");
    let shared = SharedRedis::connect(&url, "ttl:").await.unwrap();
    let cache = ListCache::shared(shared.clone(), 1 << 20, Duration::from_secs(60));
    let manager = ManagerId::parse("m").unwrap();
    cache.generation(&manager).await.unwrap();
    cache.invalidate(&manager).await.unwrap();
    let limiter =
        ecommerce_api::rate_limit::RedisLimiter::new(shared, 5, Duration::from_secs(30), Duration::from_secs(90));
    limiter.check(&manager).await.expect("Redis answered");
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let generation: i64 = redis::cmd("PTTL")
        .arg("ttl:gen:m")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        (1..=120_000).contains(&generation),
        "generation keys live the cache TTL + 60 s: {generation}"
    );
    let log: i64 = redis::cmd("PTTL").arg("ttl:rl:m").query_async(&mut conn).await.unwrap();
    assert!((1..=30_000).contains(&log), "rate-limit logs live their window: {log}");
}

#[tokio::test]
async fn a_failed_shared_invalidation_empties_the_local_cache() {
    let port = free_port();
    let redis = Redis::start(port);
    let shared = SharedRedis::connect(&format!("redis://127.0.0.1:{port}"), "outage:")
        .await
        .unwrap();
    let cache = ListCache::shared(shared.clone(), 1 << 20, Duration::from_secs(60));
    let manager = ManagerId::parse("m").unwrap();
    let generation = cache.generation(&manager).await.unwrap();
    let list = CachedList {
        body: "[]".into(),
        etag: "\"e\"".into(),
        next: None,
    };
    cache.put(&manager, generation, "q".into(), list).await;
    assert!(cache.get(&manager, generation, "q").await.is_some());

    drop(redis);
    let invalidated = cache.invalidate(&manager).await;

    assert!(invalidated.is_err(), "the bump could not reach Redis");
    assert!(!shared.is_up());
    assert!(cache.generation(&manager).await.is_err(), "lists bypass the cache");
    assert!(
        cache.get(&manager, generation, "q").await.is_none(),
        "nothing older than the write is served here"
    );
}

/// Calls of the script commands a Redis server has answered.
async fn script_calls(url: &str) -> u64 {
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| l.split("calls=").nth(1)?.split(',').next()?.parse::<u64>().ok())
        .sum()
}

#[sqlx::test]
async fn a_cached_list_read_costs_one_redis_round_trip(db: PgPool) {
    let port = free_port();
    let _redis = Redis::start(port);
    let url = format!("redis://127.0.0.1:{port}");
    let app = spawn_app_with(db, settings(), Some(&url)).await;
    app.seed("m", "Tea", 2.0, 5).await;
    assert_eq!(quantity_listed(&app).await, 5);
    let before = script_calls(&url).await;
    assert_eq!(quantity_listed(&app).await, 5);
    assert_eq!(
        script_calls(&url).await - before,
        1,
        "the limit and the generation in one script call"
    );
    app.stop().await;
}

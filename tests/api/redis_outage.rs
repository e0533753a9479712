//! A Redis that goes away while the service runs: requests that need it are
//! answered 503 (never hang, never served from a stale cache), the rest keep
//! working, and service resumes when Redis is back.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use ecommerce_api::{
    cache::{CachedList, ListCache},
    domain::ManagerId,
};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{error_of, free_port, settings, spawn_app_with};

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

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[sqlx::test]
async fn when_redis_goes_away_limited_requests_get_503_and_recover_when_it_returns(db: PgPool) {
    let port = free_port();
    let redis = Redis::start(port);
    let app = spawn_app_with(db, settings(), Some(&format!("redis://127.0.0.1:{port}"))).await;
    let list = "/api/inventory/products?manager_id=m";
    app.seed("m", "Tea", 2.0, 5).await;
    assert_eq!(app.get(list).await.status(), 200);

    drop(redis);
    let started = Instant::now();
    let response = app.get(list).await;
    let waited = started.elapsed();

    let (status, error) = error_of(response).await;
    assert_eq!(status, 503);
    assert_eq!(error["code"], "SERVICE_UNAVAILABLE");
    assert!(waited < Duration::from_secs(10), "answered without hanging: {waited:?}");
    assert_eq!(
        app.get("/healthz").await.status(),
        200,
        "liveness does not depend on Redis"
    );

    let _redis = Redis::start(port);
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let response = app.get(list).await;
        if response.status() == 200 {
            break response.json::<Value>().await.unwrap();
        }
        assert!(Instant::now() < deadline, "service did not resume after Redis returned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        body,
        json!({"products": [{"id": "prod_001", "name": "Tea", "price": 2, "quantity": 5}]})
    );
    app.stop().await;
}

#[tokio::test]
async fn a_failed_shared_invalidation_empties_the_local_cache() {
    let port = free_port();
    let redis = Redis::start(port);
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_number_of_retries(1)
        .set_response_timeout(Some(Duration::from_secs(1)));
    let conn = redis::aio::ConnectionManager::new_with_config(client, config)
        .await
        .unwrap();
    let cache = ListCache::shared(conn, 100, Duration::from_secs(60), "outage:");
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
    assert!(
        cache.get(&manager, generation, "q").await.is_none(),
        "nothing older than the write is served here"
    );
}

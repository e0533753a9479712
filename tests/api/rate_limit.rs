//! Per-manager rate limiting: at most `rate_limit_max` requests in any rolling
//! window, every outcome counted, `X-RateLimit-*` headers on every response
//! naming a manager, requests naming none never limited. Every scenario runs
//! on the in-process limiter and on the Redis one.

use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{TestApp, error_of, header_u64, on_both_backends, settings, spawn_app_with};

const LIST: &str = "/api/inventory/products";
const DISCONTINUE: &str = "/api/inventory/discontinue";

async fn app_limited_to(db: PgPool, redis: Option<&str>, max: u32, window_secs: u64) -> TestApp {
    let settings = ecommerce_api::config::Settings {
        rate_limit_max: max,
        rate_limit_window_secs: window_secs,
        ..settings()
    };
    spawn_app_with(db, settings, redis).await
}

/// Asserts the three `X-RateLimit-*` headers and returns `Remaining`.
fn rate_limit_headers(response: &reqwest::Response, limit: u64, window_secs: u64) -> u64 {
    assert_eq!(header_u64(response, "x-ratelimit-limit"), limit);
    let reset = header_u64(response, "x-ratelimit-reset");
    assert!(
        (1..=window_secs).contains(&reset),
        "X-RateLimit-Reset {reset} is not within 1..={window_secs}"
    );
    header_u64(response, "x-ratelimit-remaining")
}

fn has_no_rate_limit_headers(response: &reqwest::Response) -> bool {
    ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"]
        .iter()
        .all(|name| response.headers().get(*name).is_none())
}

on_both_backends!(
    the_101st_request_of_a_manager_is_refused_whatever_the_outcomes_of_the_first_100,
    every_response_naming_a_manager_counts_down_the_rate_limit_headers,
    requests_naming_no_manager_are_never_limited,
    a_manager_named_only_in_a_post_body_is_counted,
    the_window_rolls_and_a_refused_request_is_not_counted,
);

async fn the_101st_request_of_a_manager_is_refused_whatever_the_outcomes_of_the_first_100(
    db: PgPool,
    redis: Option<&str>,
) {
    // Arrange: the default limit of 100 per hour.
    let app = app_limited_to(db, redis, 100, 3600).await;

    // Act: 100 requests of one manager, a mix of 200s, 400s and 404s.
    for i in 0..100u64 {
        let response = match i % 3 {
            0 => app.get(&format!("{LIST}?manager_id=busy")).await,
            1 => app.get(&format!("{LIST}?manager_id=busy&status=bogus")).await,
            _ => {
                app.post(DISCONTINUE, json!({"manager_id": "busy", "product_id": "prod_999"}))
                    .await
            }
        };
        let expected = [200, 400, 404][(i % 3) as usize];
        assert_eq!(response.status(), expected, "request {}", i + 1);
        assert_eq!(rate_limit_headers(&response, 100, 3600), 99 - i);
    }
    let refused = app.get(&format!("{LIST}?manager_id=busy")).await;
    let other = app.get(&format!("{LIST}?manager_id=calm")).await;

    // Assert: the 101st is a 429 in the envelope, with the wait in seconds.
    assert_eq!(refused.status(), 429);
    let retry_after = header_u64(&refused, "retry-after");
    assert!((1..=3600).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(rate_limit_headers(&refused, 100, 3600), 0);
    assert_eq!(
        header_u64(&refused, "x-ratelimit-reset"),
        retry_after,
        "X-RateLimit-Reset and Retry-After name the same wait"
    );
    let (_, error) = error_of(refused).await;
    assert_eq!(error["code"], "RATE_LIMIT_EXCEEDED");
    // Another manager has its own budget.
    assert_eq!(other.status(), 200);
    assert_eq!(rate_limit_headers(&other, 100, 3600), 99);
    app.stop().await;
}

async fn every_response_naming_a_manager_counts_down_the_rate_limit_headers(db: PgPool, redis: Option<&str>) {
    // Arrange
    let app = app_limited_to(db, redis, 10, 3600).await;

    // Act: the manager named in the query, in a body, with success and failure.
    let mut seen = Vec::new();
    let listed = app.get(&format!("{LIST}?manager_id=m1")).await;
    seen.push((listed.status().as_u16(), rate_limit_headers(&listed, 10, 3600)));
    let added = app
        .post(
            LIST,
            json!({"manager_id": "m1", "products": [{"name": "Mug", "price": 3.5, "quantity": 4}]}),
        )
        .await;
    seen.push((added.status().as_u16(), rate_limit_headers(&added, 10, 3600)));
    let body: serde_json::Value = added.json().await.unwrap();
    let mug = body["products"][0]["id"].as_str().unwrap().to_owned();
    let missing = app
        .post(DISCONTINUE, json!({"manager_id": "m1", "product_id": "prod_404"}))
        .await;
    seen.push((missing.status().as_u16(), rate_limit_headers(&missing, 10, 3600)));
    let invalid = app.get(&format!("{LIST}?manager_id=m1&limit=0")).await;
    seen.push((invalid.status().as_u16(), rate_limit_headers(&invalid, 10, 3600)));
    let discontinued = app
        .post(DISCONTINUE, json!({"manager_id": "m1", "product_id": mug}))
        .await;
    seen.push((
        discontinued.status().as_u16(),
        rate_limit_headers(&discontinued, 10, 3600),
    ));
    let health = app.get("/healthz").await;

    // Assert
    assert_eq!(seen, [(200, 9), (201, 8), (404, 7), (400, 6), (204, 5)]);
    assert_eq!(health.status(), 200);
    assert!(
        has_no_rate_limit_headers(&health),
        "/healthz names no manager: {:?}",
        health.headers()
    );
    app.stop().await;
}

async fn requests_naming_no_manager_are_never_limited(db: PgPool, redis: Option<&str>) {
    // Arrange: a limit of one request per hour.
    let app = app_limited_to(db, redis, 1, 3600).await;

    // Act: many requests that name no manager, then two that name one.
    let mut anonymous = Vec::new();
    for _ in 0..5 {
        anonymous.push(app.get("/healthz").await);
        anonymous.push(app.get("/openapi.json").await);
        anonymous.push(app.get(LIST).await);
        anonymous.push(app.get(&format!("{LIST}?manager_id=bad%20id")).await);
    }
    let first = app.get(&format!("{LIST}?manager_id=m1")).await;
    let second = app.get(&format!("{LIST}?manager_id=m1")).await;

    // Assert: none of the anonymous ones was limited or carries the headers;
    // the limiter itself is in force.
    for response in &anonymous {
        assert_ne!(response.status(), 429, "{}", response.url());
        assert!(
            has_no_rate_limit_headers(response),
            "{} names no manager",
            response.url()
        );
    }
    let statuses: Vec<u16> = anonymous.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses[..4], [200, 200, 400, 400]);
    assert_eq!(first.status(), 200);
    assert_eq!(second.status(), 429);
    app.stop().await;
}

async fn a_manager_named_only_in_a_post_body_is_counted(db: PgPool, redis: Option<&str>) {
    // Arrange
    let app = app_limited_to(db, redis, 2, 3600).await;
    let discontinue = json!({"manager_id": "poster", "product_id": "prod_999"});

    // Act
    let first = app.post(DISCONTINUE, discontinue.clone()).await;
    let second = app.post(DISCONTINUE, discontinue.clone()).await;
    let third = app.post(DISCONTINUE, discontinue).await;
    let by_query = app.get(&format!("{LIST}?manager_id=poster")).await;

    // Assert: the body's manager is counted, and shares its budget with
    // requests naming it in the query.
    assert_eq!(first.status(), 404);
    assert_eq!(rate_limit_headers(&first, 2, 3600), 1);
    assert_eq!(second.status(), 404);
    assert_eq!(rate_limit_headers(&second, 2, 3600), 0);
    assert_eq!(third.status(), 429);
    assert!(header_u64(&third, "retry-after") >= 1);
    assert_eq!(by_query.status(), 429);
    let (_, error) = error_of(third).await;
    assert_eq!(error["code"], "RATE_LIMIT_EXCEEDED");
    app.stop().await;
}

async fn the_window_rolls_and_a_refused_request_is_not_counted(db: PgPool, redis: Option<&str>) {
    // Arrange: 3 requests per second; one admitted at t0, two at t0 + 0.5 s.
    let app = app_limited_to(db, redis, 3, 1).await;
    let list = format!("{LIST}?manager_id=roller");
    let first = app.get(&list).await;
    let t0 = Instant::now(); // the first was admitted before this
    assert_eq!(first.status(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = Instant::now(); // the next two are admitted after this
    let second = app.get(&list).await;
    let third = app.get(&list).await;
    let refused = app.get(&list).await;
    assert_eq!((second.status().as_u16(), third.status().as_u16()), (200, 200));
    assert_eq!(refused.status(), 429);
    assert_eq!(header_u64(&refused, "retry-after"), 1);

    // Act: once the first has left the window (and the other two have not).
    tokio::time::sleep((t0 + Duration::from_millis(1100)).saturating_duration_since(Instant::now())).await;
    let freed = app.get(&list).await;
    let over = app.get(&list).await;
    let checked_by = later.elapsed();

    // Assert: exactly one slot freed. Had the refused request been counted,
    // the window would still hold three and `freed` would be refused too.
    assert!(
        checked_by < Duration::from_millis(1000),
        "the machine was too slow for this timing ({checked_by:?}); the second and third left the window"
    );
    assert_eq!(freed.status(), 200, "one slot freed after the window rolled");
    assert_eq!(rate_limit_headers(&freed, 3, 1), 0);
    assert_eq!(over.status(), 429, "only one slot freed");
    app.stop().await;
}

#[tokio::test]
async fn concurrent_checks_batched_together_are_each_counted_once_in_order() {
    use ecommerce_api::{domain::ManagerId, rate_limit::RedisLimiter, shared::SharedRedis};

    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let redis = SharedRedis::connect(&crate::helpers::redis_url(), &prefix)
        .await
        .unwrap();
    let limit = 50;
    let (one, other) = (
        RedisLimiter::new(redis.clone(), limit, Duration::from_secs(60), Duration::from_secs(120)),
        RedisLimiter::new(redis.clone(), limit, Duration::from_secs(60), Duration::from_secs(120)),
    );
    let managers: Vec<ManagerId> = ["a", "b", "c"].iter().map(|m| ManagerId::parse(m).unwrap()).collect();
    // 80 checks per manager at once, interleaved, half through each limiter
    // (two instances): far more than one script call takes at a time.
    let checks = (0..240).map(|i| {
        let limiter = if i % 2 == 0 { &one } else { &other };
        let manager = &managers[i % 3];
        async move { (manager.as_str(), limiter.check(manager).await.expect("Redis answered")) }
    });
    let decisions = futures::future::join_all(checks).await;
    for manager in ["a", "b", "c"] {
        let mine: Vec<_> = decisions
            .iter()
            .filter(|(m, _)| *m == manager)
            .map(|(_, d)| *d)
            .collect();
        let admitted: Vec<_> = mine.iter().filter(|d| d.allowed).collect();
        assert_eq!(
            admitted.len(),
            limit as usize,
            "exactly the limit is admitted for {manager}"
        );
        let mut remaining: Vec<u32> = admitted.iter().map(|d| d.remaining).collect();
        remaining.sort_unstable();
        assert_eq!(
            remaining,
            (0..limit).collect::<Vec<_>>(),
            "each admitted check saw its own count"
        );
        assert!(mine.iter().filter(|d| !d.allowed).all(|d| d.remaining == 0));
    }
    let after = one.check(&managers[0]).await.unwrap();
    assert!(!after.allowed, "the log in Redis holds every admitted check");
}

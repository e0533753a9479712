//! What a service reachable by anyone must bound or get right: made-up
//! methods never grow the metrics, oversized request lines and headers are
//! refused in the envelope, anonymous requests are limited per client
//! address (and stop costing audit rows past it), audit records keep at most
//! 2 KiB of query, the client address is read through trusted proxies only,
//! browsers get CORS from allowed origins only, a flood of `/readyz` checks
//! the database at most once a second, and money in scientific notation is
//! read exactly.

use std::time::{Duration, Instant};

use ecommerce_api::config::Settings;
use futures::future::join_all;
use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::{TestApp, error_of, header, metric, settings, spawn_app, spawn_app_with};

async fn metrics(app: &TestApp) -> String {
    app.get("/metrics").await.text().await.unwrap()
}

/// The status a raw request got, if the server answered before closing.
async fn raw_status(app: &TestApp, request: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    // The server may refuse before reading it all: a failed write is fine.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

async fn audit_rows(db: &PgPool, manager: &str) -> i64 {
    sqlx::query_scalar("select count(*) from audit_log where manager_id = $1")
        .bind(manager)
        .fetch_one(db)
        .await
        .unwrap()
}

#[sqlx::test]
async fn made_up_methods_never_create_metric_series(db: PgPool) {
    let app = spawn_app(db).await;
    // Every route and status the flood will touch, once, before measuring.
    for path in ["/api/inventory/products", "/nowhere"] {
        let method = reqwest::Method::from_bytes(b"WARMUP").unwrap();
        app.client.request(method, app.url(path)).send().await.unwrap();
    }
    // The audit writer's own series appear once it has written.
    tokio::time::sleep(Duration::from_millis(300)).await;
    metrics(&app).await;
    let before = metrics(&app).await;
    for i in 0..300 {
        let method = reqwest::Method::from_bytes(format!("FAKE{i}").as_bytes()).unwrap();
        let path = if i % 2 == 0 {
            "/api/inventory/products"
        } else {
            "/nowhere"
        };
        let response = app.client.request(method, app.url(path)).send().await.unwrap();
        assert!([404, 405].contains(&response.status().as_u16()));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = metrics(&app).await;
    assert!(!after.contains("FAKE"), "no series per made-up method");
    assert_eq!(
        before.lines().filter(|l| !l.starts_with('#')).count(),
        after.lines().filter(|l| !l.starts_with('#')).count(),
        "the same series before and after the flood"
    );
    assert!(
        metric(
            &after,
            "http_requests_total{route=\"unmatched\",method=\"other\",status=\"404\"}"
        )
        .unwrap()
            >= 150.0
    );
    app.stop().await;
}

#[sqlx::test]
async fn oversized_request_lines_and_headers_are_refused_in_the_envelope(db: PgPool) {
    let app = spawn_app(db.clone()).await;
    for (path, length) in [
        ("/api/inventory/products", 9_000),
        ("/api/inventory/products", 60_000),
        ("/docs", 9_000),
    ] {
        let url = app.url(&format!("{path}?manager_id=m&pad={}", "x".repeat(length)));
        let (status, error) = error_of(app.client.get(url).send().await.unwrap()).await;
        assert_eq!(
            (status, error["code"].as_str()),
            (414, Some("URI_TOO_LONG")),
            "{path} {length}"
        );
    }
    for size in [40_000, 64_000] {
        let response = app
            .client
            .get(app.url("/api/inventory/products?manager_id=m"))
            .header("x-padding", "h".repeat(size))
            .send()
            .await
            .unwrap();
        let (status, error) = error_of(response).await;
        assert_eq!(
            (status, error["code"].as_str()),
            (431, Some("HEADERS_TOO_LARGE")),
            "{size}"
        );
    }
    // Beyond what a URI may hold (64 KiB), or beyond the read buffer, the
    // HTTP server itself refuses, before reading it all.
    for length in [100_000, 300_000] {
        let line = format!(
            "GET /api/inventory/products?pad={} HTTP/1.1\r\nHost: x\r\n\r\n",
            "x".repeat(length)
        );
        let status = raw_status(&app, &line).await;
        assert!(matches!(status, Some(414 | 431) | None), "{length}: {status:?}");
    }

    // Within the bounds, an audit record keeps at most 2 KiB of the query.
    let long = format!("manager_id=m&pad={}", "é".repeat(1_000));
    assert_eq!(app.get(&format!("/api/inventory/products?{long}")).await.status(), 200);
    app.stop().await;
    let kept: Vec<i32> = sqlx::query_scalar("select octet_length(query) from audit_log where manager_id = 'm'")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(kept.len(), 1);
    assert!(kept[0] <= 2048 && kept[0] >= 2040, "{kept:?}");
    // The oversized requests were audited too, for no manager.
    assert_eq!(audit_rows(&db, "").await, 4);
}

#[sqlx::test]
async fn anonymous_requests_are_limited_per_client_address_and_stop_costing_audit_rows(db: PgPool) {
    let app = spawn_app_with(
        db.clone(),
        Settings {
            anon_rate_limit_max: 5,
            trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
            ..settings()
        },
        None,
    )
    .await;
    let from = |client: &'static str| {
        app.client
            .get(app.url("/api/inventory/products"))
            .header("x-forwarded-for", client)
            .send()
    };
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(from("203.0.113.1").await.unwrap().status().as_u16());
    }
    assert_eq!(
        statuses[..5],
        [400; 5],
        "no manager named: 400 while the address has room"
    );
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    let refused = from("203.0.113.1").await.unwrap();
    assert!(header(&refused, "retry-after").parse::<u64>().unwrap() > 0);
    // Another address has its own budget; a named manager is unaffected.
    assert_eq!(from("203.0.113.2").await.unwrap().status(), 400);
    assert_eq!(app.get("/api/inventory/products?manager_id=m").await.status(), 200);
    app.stop().await;
    assert_eq!(audit_rows(&db, "").await, 6, "audit rows stop at each address's limit");
    let clients: Vec<String> =
        sqlx::query_scalar("select distinct client_addr from audit_log where manager_id = '' order by 1")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(clients, ["203.0.113.1", "203.0.113.2"]);
}

#[sqlx::test]
async fn forwarded_addresses_are_believed_only_from_trusted_proxies(db: PgPool) {
    let spoofed = |app: &TestApp, request_id: &'static str| {
        app.client
            .get(app.url("/api/inventory/products?manager_id=m"))
            .header("x-request-id", request_id)
            .header("x-forwarded-for", "198.51.100.23")
            .header("forwarded", "for=\"[2001:db8::23]:443\"")
            .send()
    };
    let direct = spawn_app(db.clone()).await;
    assert_eq!(spoofed(&direct, "untrusted").await.unwrap().status(), 200);
    direct.stop().await;
    let behind = spawn_app_with(
        db.clone(),
        Settings {
            trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
            ..settings()
        },
        None,
    )
    .await;
    assert_eq!(spoofed(&behind, "trusted").await.unwrap().status(), 200);
    behind.stop().await;
    let client = |request_id: &'static str| {
        sqlx::query_scalar::<_, String>("select client_addr from audit_log where request_id = $1")
            .bind(request_id)
            .fetch_one(&db)
    };
    assert_eq!(client("untrusted").await.unwrap(), "127.0.0.1");
    assert_eq!(
        client("trusted").await.unwrap(),
        "2001:db8::23",
        "Forwarded, through a trusted peer"
    );
}

#[sqlx::test]
async fn browsers_get_cors_from_allowed_origins_only(db: PgPool) {
    let app = spawn_app_with(
        db.clone(),
        Settings {
            cors_allowed_origins: vec!["https://shop.example".into()],
            ..settings()
        },
        None,
    )
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/api/orders/process"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type, idempotency-key")
            .send()
    };
    let allowed = preflight("https://shop.example").await.unwrap();
    assert_eq!(allowed.status(), 204);
    assert_eq!(header(&allowed, "access-control-allow-origin"), "https://shop.example");
    let methods = header(&allowed, "access-control-allow-methods").to_ascii_uppercase();
    assert!(methods.contains("POST") && methods.contains("GET"), "{methods}");
    assert!(header(&allowed, "access-control-allow-headers").contains("idempotency-key"));
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    let read = app
        .client
        .get(app.url("/api/inventory/products?manager_id=m"))
        .header("origin", "https://shop.example")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&read, "access-control-allow-origin"), "https://shop.example");
    let exposed = header(&read, "access-control-expose-headers").to_ascii_lowercase();
    for name in ["x-ratelimit-remaining", "retry-after", "link", "etag", "x-request-id"] {
        assert!(exposed.contains(name), "{name} in {exposed}");
    }
    app.stop().await;
    assert_eq!(
        audit_rows(&db, "").await,
        0,
        "preflights are neither counted nor audited"
    );
}

#[sqlx::test]
async fn a_flood_of_readiness_probes_checks_the_database_at_most_once_a_second(db: PgPool) {
    let app = spawn_app(db).await;
    let checks = |text: &str| metric(text, "readiness_checks_total").unwrap_or(0.0);
    let before = checks(&metrics(&app).await);
    let started = Instant::now();
    let mut answered = 0;
    while started.elapsed() < Duration::from_secs(2) {
        let flood = join_all((0..100).map(|_| app.get("/readyz"))).await;
        answered += flood.iter().filter(|r| r.status() == 200).count();
        // Reads keep being served beside the flood.
        assert_eq!(app.get("/api/inventory/products?manager_id=m").await.status(), 200);
    }
    let made = checks(&metrics(&app).await) - before;
    let seconds = started.elapsed().as_secs_f64();
    assert!(answered >= 200, "{answered}");
    assert!(
        made <= seconds.ceil() + 1.0,
        "{made} checks in {seconds:.1} s for {answered} probes"
    );
    app.stop().await;
}

#[sqlx::test]
async fn money_in_scientific_notation_is_read_exactly_or_refused(db: PgPool) {
    let app = spawn_app(db.clone()).await;
    let post = |price: &str| {
        app.client
            .post(app.url("/api/inventory/products"))
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"manager_id": "m", "products": [{{"name": "Beans", "price": {price}, "quantity": 1}}]}}"#
            ))
            .send()
    };
    let (status, error) = error_of(post("15.990000000000000000000000000001e0").await.unwrap()).await;
    assert_eq!(status, 400);
    assert_eq!(
        error["details"]["products[0].price"],
        "must have at most 2 decimal places"
    );
    let count: i64 = sqlx::query_scalar("select count(*) from product")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(count, 0, "nothing was created");
    let created = post("1599e-2").await.unwrap();
    assert_eq!(created.status(), 201);
    let body: Value = created.json().await.unwrap();
    assert_eq!(body["products"][0]["price"], serde_json::json!(15.99));
    app.stop().await;
}

#[sqlx::test]
async fn metrics_can_live_on_an_admin_port_of_their_own(db: PgPool) {
    let admin = crate::helpers::free_port();
    let app = spawn_app_with(
        db,
        Settings {
            admin_port: Some(admin),
            ..settings()
        },
        None,
    )
    .await;
    let (status, error) = error_of(app.get("/metrics").await).await;
    assert_eq!((status, error["code"].as_str()), (404, Some("NOT_FOUND")));
    assert_eq!(app.get("/api/inventory/products?manager_id=m").await.status(), 200);
    let scraped = app
        .client
        .get(format!("http://127.0.0.1:{admin}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(scraped.text().await.unwrap().contains("http_requests_total"));
    app.stop().await;
}

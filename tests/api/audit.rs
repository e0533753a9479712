//! The audit trail: one row per `/api/` request whatever its outcome, written
//! with the change for writes, flushed on graceful shutdown, readable per
//! manager through `GET /api/audit`, append-only. Also `/metrics`.

use std::collections::HashSet;

use ecommerce_api::config::Settings;
use futures::future::join_all;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{TestApp, error_of, header, metric, settings, spawn_app, spawn_app_with};

const LIST: &str = "/api/inventory/products";
const DISCONTINUE: &str = "/api/inventory/discontinue";
const ORDER: &str = "/api/orders/process";

/// What the client saw of one request.
#[derive(Debug)]
struct Sent {
    status: u16,
    request_id: String,
    body: Value,
}

async fn send(request: reqwest::RequestBuilder) -> Sent {
    let response = request.send().await.expect("request failed");
    let status = response.status().as_u16();
    let request_id = header(&response, "x-request-id").to_owned();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Sent {
        status,
        request_id,
        body,
    }
}

/// The numeric part of `prod_001` / `ord_001`, as the audit log stores it.
fn number(public_id: &Value) -> i64 {
    let text = public_id.as_str().expect("an id string");
    text.split_once('_').unwrap().1.parse().unwrap()
}

/// An audit row's columns, as stored.
#[derive(Debug, PartialEq)]
struct Row {
    manager_id: String,
    method: String,
    path: String,
    query: Option<String>,
    status: i16,
    error_code: Option<String>,
    client_addr: Option<String>,
    product_ids: Vec<i64>,
    order_id: Option<i64>,
}

type RawRow = (
    String,
    String,
    String,
    Option<String>,
    i16,
    Option<String>,
    f64,
    Option<String>,
    Vec<i64>,
    Option<i64>,
    bool,
);

/// The one row of `request_id`; also checks its duration and time.
async fn row_of(db: &PgPool, request_id: &str) -> Row {
    let rows: Vec<RawRow> = sqlx::query_as(
        "select manager_id, method, path, query, status, error_code, duration_ms, client_addr,
                product_ids, order_id, occurred_at between now() - interval '5 minutes' and now()
           from audit_log where request_id = $1",
    )
    .bind(request_id)
    .fetch_all(db)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1, "exactly one audit row for {request_id}");
    let (m, method, path, query, status, code, duration, client, products, order, recent) =
        rows.into_iter().next().unwrap();
    assert!(duration >= 0.0, "duration_ms {duration}");
    assert!(recent, "occurred_at is the time of the request");
    Row {
        manager_id: m,
        method,
        path,
        query,
        status,
        error_code: code,
        client_addr: client,
        product_ids: products,
        order_id: order,
    }
}

#[allow(clippy::too_many_arguments)]
fn expected(
    manager: &str,
    method: &str,
    path: &str,
    query: Option<&str>,
    status: i16,
    error_code: Option<&str>,
    product_ids: Vec<i64>,
    order_id: Option<i64>,
) -> Row {
    Row {
        manager_id: manager.into(),
        method: method.into(),
        path: path.into(),
        query: query.map(Into::into),
        status,
        error_code: error_code.map(Into::into),
        client_addr: Some("127.0.0.1".into()),
        product_ids,
        order_id,
    }
}

async fn count_rows(db: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from audit_log")
        .fetch_one(db)
        .await
        .unwrap()
}

#[sqlx::test]
async fn every_api_request_leaves_one_audit_row_describing_it(db: PgPool) {
    // Arrange: a limit of 8 so one manager can be refused.
    let app = spawn_app_with(
        db.clone(),
        Settings {
            rate_limit_max: 8,
            ..settings()
        },
        None,
    )
    .await;
    let c = &app.client;

    // Act: one request per outcome.
    let created = send(c.post(app.url(LIST)).json(&json!({"manager_id": "aud", "products": [
        {"name": "Beans", "price": 15.99, "quantity": 10},
        {"name": "Mug", "price": 4.5, "quantity": 3}]})))
    .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let beans = number(&created.body["products"][0]["id"]);
    let mug = number(&created.body["products"][1]["id"]);
    let discontinued = send(
        c.post(app.url(DISCONTINUE))
            .json(&json!({"manager_id": "aud", "product_id": created.body["products"][1]["id"]})),
    )
    .await;
    let ordered = send(c.post(app.url(ORDER)).json(&json!({"manager_id": "aud",
        "customer": {"id": "c1", "email": "c1@example.com"},
        "products": [{"product_id": created.body["products"][0]["id"], "quantity": 2}]})))
    .await;
    let invalid = send(c.get(app.url(&format!("{LIST}?manager_id=aud&status=bogus")))).await;
    let not_found = send(
        c.post(app.url(DISCONTINUE))
            .json(&json!({"manager_id": "aud", "product_id": "prod_999"})),
    )
    .await;
    let conflict = send(c.post(app.url(ORDER)).json(&json!({"manager_id": "aud",
        "customer": {"id": "c1", "email": "c1@example.com"},
        "products": [{"product_id": created.body["products"][0]["id"], "quantity": 500}]})))
    .await;
    let unsupported = send(
        c.post(app.url(LIST))
            .header("content-type", "text/plain")
            .body(r#"{"manager_id": "aud"}"#),
    )
    .await;
    let no_route = send(c.get(app.url("/api/nope?manager_id=aud"))).await;
    let mine = send(
        c.get(app.url(&format!("{LIST}?manager_id=aud")))
            .header("x-request-id", "client-chosen-id-1"),
    )
    .await;
    for _ in 0..8 {
        assert_eq!(app.get(&format!("{LIST}?manager_id=spent")).await.status(), 200);
    }
    let limited = send(c.get(app.url(&format!("{LIST}?manager_id=spent&limit=5")))).await;

    // Assert
    let statuses = [
        discontinued.status,
        ordered.status,
        invalid.status,
        not_found.status,
        conflict.status,
        unsupported.status,
        no_route.status,
        limited.status,
    ];
    assert_eq!(statuses, [204, 200, 400, 404, 409, 415, 404, 429]);
    assert_eq!(mine.request_id, "client-chosen-id-1");
    let order_id = number(&ordered.body["order_id"]);
    let q = Some("manager_id=aud");
    let cases = [
        (
            &created,
            expected("aud", "POST", LIST, None, 201, None, vec![beans, mug], None),
        ),
        (
            &discontinued,
            expected("aud", "POST", DISCONTINUE, None, 204, None, vec![mug], None),
        ),
        (
            &ordered,
            expected("aud", "POST", ORDER, None, 200, None, vec![beans], Some(order_id)),
        ),
        (
            &invalid,
            expected(
                "aud",
                "GET",
                LIST,
                Some("manager_id=aud&status=bogus"),
                400,
                Some("INVALID_REQUEST"),
                vec![],
                None,
            ),
        ),
        (
            &not_found,
            expected(
                "aud",
                "POST",
                DISCONTINUE,
                None,
                404,
                Some("PRODUCT_NOT_FOUND"),
                vec![],
                None,
            ),
        ),
        (
            &conflict,
            expected(
                "aud",
                "POST",
                ORDER,
                None,
                409,
                Some("INSUFFICIENT_STOCK"),
                vec![],
                None,
            ),
        ),
        (
            &unsupported,
            expected(
                "",
                "POST",
                LIST,
                None,
                415,
                Some("UNSUPPORTED_MEDIA_TYPE"),
                vec![],
                None,
            ),
        ),
        (
            &no_route,
            expected("aud", "GET", "/api/nope", q, 404, Some("NOT_FOUND"), vec![], None),
        ),
        (&mine, expected("aud", "GET", LIST, q, 200, None, vec![], None)),
        (
            &limited,
            expected(
                "spent",
                "GET",
                LIST,
                Some("manager_id=spent&limit=5"),
                429,
                Some("RATE_LIMIT_EXCEEDED"),
                vec![],
                None,
            ),
        ),
    ];
    assert_eq!(app.audit_rows(10 + 8).await, 10 + 8);
    for (sent, want) in cases {
        assert_eq!(row_of(&db, &sent.request_id).await, want, "{sent:?}");
    }
    app.stop().await;
    assert_eq!(count_rows(&db).await, 18, "one row per request, no more");
}

#[sqlx::test]
async fn a_writes_audit_row_commits_in_the_same_transaction_as_the_change(db: PgPool) {
    // Arrange
    let app = spawn_app(db.clone()).await;
    let c = &app.client;
    let same_transaction = |table: &'static str, id: i64, request_id: String| {
        let db = db.clone();
        async move {
            // No waiting: the row must exist the moment the response is in.
            let sql = match table {
                "product" => {
                    "select (select xmin::text from product where id = $1),
                            (select xmin::text from audit_log where request_id = $2)"
                }
                _ => {
                    "select (select xmin::text from customer_order where id = $1),
                            (select xmin::text from audit_log where request_id = $2)"
                }
            };
            let (change, audit): (Option<String>, Option<String>) = sqlx::query_as(sql)
                .bind(id)
                .bind(&request_id)
                .fetch_one(&db)
                .await
                .unwrap();
            assert!(audit.is_some(), "no audit row for {request_id} at response time");
            assert_eq!(change, audit, "{table} {id} and its audit row: one transaction");
        }
    };

    // Act / Assert: an addition, a discontinuation and an order.
    let added = send(c.post(app.url(LIST)).json(&json!({"manager_id": "w",
        "products": [{"name": "Tea", "price": 2.0, "quantity": 9}]})))
    .await;
    assert_eq!(added.status, 201);
    let tea = number(&added.body["products"][0]["id"]);
    same_transaction("product", tea, added.request_id).await;

    let ordered = send(c.post(app.url(ORDER)).json(&json!({"manager_id": "w",
        "customer": {"id": "c", "email": "c@example.com"},
        "products": [{"product_id": added.body["products"][0]["id"], "quantity": 1}]})))
    .await;
    assert_eq!(ordered.status, 200);
    same_transaction("customer_order", number(&ordered.body["order_id"]), ordered.request_id).await;

    let discontinued = send(
        c.post(app.url(DISCONTINUE))
            .json(&json!({"manager_id": "w", "product_id": added.body["products"][0]["id"]})),
    )
    .await;
    assert_eq!(discontinued.status, 204);
    same_transaction("product", tea, discontinued.request_id).await;
    app.stop().await;
}

#[sqlx::test]
async fn requests_outside_api_leave_no_audit_row(db: PgPool) {
    // Arrange
    let app = spawn_app(db.clone()).await;

    // Act
    for path in ["/healthz", "/readyz", "/docs/", "/openapi.json", "/metrics", "/nope"] {
        let response = app.get(path).await;
        assert!(
            [200, 404].contains(&response.status().as_u16()),
            "{path}: {}",
            response.status()
        );
    }
    let marker = send(app.client.get(app.url(&format!("{LIST}?manager_id=marker")))).await;
    app.stop().await; // writes every queued record

    // Assert
    let request_ids: Vec<String> = sqlx::query_scalar("select request_id from audit_log")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(request_ids, [marker.request_id]);
}

#[sqlx::test]
async fn a_burst_of_500_concurrent_requests_leaves_exactly_500_rows_once_stopped(db: PgPool) {
    // Arrange: five managers with plenty of stock, and no practical limit.
    let app = spawn_app_with(
        db.clone(),
        Settings {
            rate_limit_max: 100_000,
            ..settings()
        },
        None,
    )
    .await;
    let managers: Vec<String> = (0..5).map(|i| format!("burst{i}")).collect();
    let mut products = Vec::new();
    for manager in &managers {
        products.push(app.seed(manager, "Stock", 1.25, 999_999).await);
    }
    let before = app.audit_rows(5).await;
    assert_eq!(before, 5);

    // Act: 500 requests at once, successes and failures of every kind.
    let requests = (0..500).map(|i| {
        let manager = &managers[i % managers.len()];
        let product = &products[i % managers.len()];
        let c = &app.client;
        let request = match i % 7 {
            0 => c.get(app.url(&format!("{LIST}?manager_id={manager}"))),
            1 => c.get(app.url(&format!("{LIST}?manager_id={manager}&status=nope"))),
            2 => c
                .post(app.url(DISCONTINUE))
                .json(&json!({"manager_id": manager, "product_id": "prod_999"})),
            3 => c.post(app.url(ORDER)).json(&json!({"manager_id": manager,
                "customer": {"id": "c", "email": "c@example.com"},
                "products": [{"product_id": product, "quantity": 1}]})),
            4 => c.post(app.url(ORDER)).json(&json!({"manager_id": manager,
                "customer": {"id": "c", "email": "c@example.com"},
                "products": [{"product_id": product, "quantity": 1_000_000}]})),
            5 => c.post(app.url(LIST)).json(&json!({"manager_id": manager,
                "products": [{"name": format!("Item {i}"), "price": 1.5, "quantity": 1}]})),
            _ => c.post(app.url(LIST)).body("{}"),
        };
        async move { request.send().await.expect("request failed").status().as_u16() }
    });
    let statuses = join_all(requests).await;
    app.stop().await;

    // Assert
    let seen: HashSet<u16> = statuses.iter().copied().collect();
    assert_eq!(
        seen,
        HashSet::from([200, 201, 400, 404, 409, 415]),
        "every kind of outcome, and no other"
    );
    assert_eq!(count_rows(&db).await, before + 500);
    let distinct: i64 = sqlx::query_scalar("select count(distinct request_id) from audit_log")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(distinct, before + 500, "one row per request");
}

#[sqlx::test]
async fn records_still_queued_at_shutdown_are_written_before_stop_returns(db: PgPool) {
    // Arrange: the audit table locked against inserts, so records queue up.
    let app = spawn_app_with(
        db.clone(),
        Settings {
            rate_limit_max: 20,
            ..settings()
        },
        None,
    )
    .await;
    let mut lock = db.begin().await.unwrap();
    sqlx::query("lock table audit_log in share mode")
        .execute(&mut *lock)
        .await
        .unwrap();
    let mut statuses = HashSet::new();
    for i in 0..50 {
        let response = match i % 5 {
            0 => app.get("/api/nope").await,
            1 => app.get(&format!("{LIST}?manager_id=queued&status=nope")).await,
            2 => app.client.post(app.url(LIST)).body("{}").send().await.unwrap(),
            _ => app.get(&format!("{LIST}?manager_id=queued")).await,
        };
        statuses.insert(response.status().as_u16());
    }
    assert_eq!(statuses, HashSet::from([200, 400, 404, 415, 429]));
    assert_eq!(count_rows(&db).await, 0, "all 50 records are still queued");

    // Act: stop while the records cannot be written yet, then let them through.
    let stopping = tokio::spawn(app.stop());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let stopped_early = stopping.is_finished();
    lock.rollback().await.unwrap();
    stopping.await.unwrap();

    // Assert: stop waited for the queue, and nothing was lost.
    assert!(!stopped_early, "stop returned with records still queued");
    assert_eq!(count_rows(&db).await, 50);
}

/// The records of one page of `GET /api/audit`, and its next link.
async fn audit_page(app: &TestApp, query: &str) -> (Vec<Value>, Option<String>) {
    let response = app.get(&format!("/api/audit?{query}")).await;
    assert_eq!(response.status(), 200, "{query}");
    let link = response.headers().get("link").map(|v| v.to_str().unwrap().to_owned());
    let body: Value = response.json().await.unwrap();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["records"]);
    (body["records"].as_array().unwrap().clone(), link)
}

#[sqlx::test]
async fn get_audit_pages_through_one_managers_records_newest_first(db: PgPool) {
    // Arrange: five requests of one manager, interleaved with another's.
    let app = spawn_app(db.clone()).await;
    let mut mine = Vec::new();
    for i in 0..5 {
        let path = format!("{LIST}?manager_id=reader&limit={}", i + 1);
        mine.push(header(&app.get(&path).await, "x-request-id").to_owned());
        app.get(&format!("{LIST}?manager_id=stranger")).await;
    }
    app.audit_rows(10).await;

    // Act: pages of two, following the Link header.
    let (first, link1) = audit_page(&app, "manager_id=reader&limit=2").await;
    let link1 = link1.expect("a next link after the first page");
    let next1 = link1
        .strip_prefix('<')
        .and_then(|l| l.strip_suffix(">; rel=\"next\""))
        .unwrap_or_else(|| panic!("Link {link1:?}"));
    let (second, link2) = audit_page(&app, next1.strip_prefix("/api/audit?").unwrap()).await;
    let next2 = link2.expect("a next link after the second page");
    let next2 = next2
        .trim_start_matches("</api/audit?")
        .trim_end_matches(">; rel=\"next\"");
    let (third, link3) = audit_page(&app, next2).await;

    // Assert: the five records, newest first, each once, none of the stranger's.
    let ids: Vec<&str> = [&first, &second, &third]
        .into_iter()
        .flatten()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    let newest_first: Vec<&str> = mine.iter().rev().map(String::as_str).collect();
    assert_eq!(ids, newest_first);
    assert_eq!((first.len(), second.len(), third.len()), (2, 2, 1));
    assert_eq!(link3, None, "no next link after the last page");
    let record_ids: Vec<i64> = [&first, &second, &third]
        .into_iter()
        .flatten()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert!(record_ids.windows(2).all(|w| w[0] > w[1]), "{record_ids:?}");
    assert_eq!(first[0]["path"], LIST);
    assert_eq!(first[0]["query"], "manager_id=reader&limit=5");
    assert_eq!(first[0]["status"], 200);
    assert_eq!(
        next1,
        format!("/api/audit?manager_id=reader&limit=2&after={}", record_ids[1])
    );

    // A manager with no records of its own sees none of the others'.
    let (nobody, link) = audit_page(&app, "manager_id=nobody").await;
    assert!(nobody.is_empty() && link.is_none(), "{nobody:?}");
    app.stop().await;
}

#[sqlx::test]
async fn get_audit_rejects_a_bad_limit_or_after(db: PgPool) {
    // Arrange
    let app = spawn_app(db).await;

    for (query, field) in [
        ("", "manager_id"),
        ("manager_id=m&limit=0", "limit"),
        ("manager_id=m&limit=1001", "limit"),
        ("manager_id=m&limit=ten", "limit"),
        ("manager_id=m&after=0", "after"),
        ("manager_id=m&after=-3", "after"),
        ("manager_id=m&after=prod_001", "after"),
    ] {
        // Act
        let response = app.get(&format!("/api/audit?{query}")).await;

        // Assert
        let (status, error) = error_of(response).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(error["code"], "INVALID_REQUEST", "{query}");
        assert!(error["details"].get(field).is_some(), "{query}: {error}");
    }
    app.stop().await;
}

#[sqlx::test]
async fn the_audit_log_refuses_update_delete_and_truncate(db: PgPool) {
    // Arrange: a few rows to change.
    let app = spawn_app(db.clone()).await;
    app.seed("m", "Cup", 1.0, 1).await;
    app.get(&format!("{LIST}?manager_id=m")).await;
    app.stop().await;
    assert_eq!(count_rows(&db).await, 2);

    let partitions: Vec<String> =
        sqlx::query_scalar("select inhrelid::regclass::text from pg_inherits where inhparent = 'audit_log'::regclass")
            .fetch_all(&db)
            .await
            .unwrap();
    assert!(
        partitions.len() >= 3,
        "default, this month and next month: {partitions:?}"
    );
    let truncate_partitions = partitions.iter().map(|p| format!("truncate {p}"));
    let statements = [
        "update audit_log set status = 500",
        "delete from audit_log",
        "delete from audit_log where manager_id = 'm'",
        "truncate audit_log",
    ];
    for statement in statements.into_iter().map(str::to_owned).chain(truncate_partitions) {
        // Act
        let err = sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
            .execute(&db)
            .await
            .unwrap_err();

        // Assert
        let db_err = err.as_database_error().unwrap_or_else(|| panic!("{statement}: {err}"));
        assert_eq!(db_err.code().as_deref(), Some("42501"), "{statement}: {db_err}");
        assert!(db_err.message().contains("append-only"), "{statement}: {db_err}");
    }
    let statuses: Vec<i16> = sqlx::query_scalar("select status from audit_log order by id")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(statuses, [201, 200], "nothing changed");
}

#[sqlx::test]
async fn metrics_report_requests_cache_audit_queue_and_pool_and_are_never_limited(db: PgPool) {
    // Arrange: some traffic, and a limit of one request per manager.
    let app = spawn_app_with(
        db,
        Settings {
            rate_limit_max: 1,
            ..settings()
        },
        None,
    )
    .await;
    assert_eq!(app.get(&format!("{LIST}?manager_id=m")).await.status(), 200);
    assert_eq!(app.get(&format!("{LIST}?manager_id=m")).await.status(), 429);

    // Act
    let mut scrapes = Vec::new();
    for _ in 0..3 {
        scrapes.push(app.get("/metrics").await);
    }

    // Assert
    for response in &scrapes {
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("x-ratelimit-limit").is_none());
    }
    let text = scrapes.pop().unwrap().text().await.unwrap();
    for name in [
        "http_requests_total",
        "product_cache_lookups_total",
        "audit_queue_depth",
        "db_pool_connections",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "no {name} sample in:\n{text}"
        );
    }
    let ok = metric(
        &text,
        r#"http_requests_total{route="/api/inventory/products",method="GET",status="200"}"#,
    );
    assert!(ok.is_some_and(|n| n >= 1.0), "{text}");
    let refused = metric(
        &text,
        r#"http_requests_total{route="/api/inventory/products",method="GET",status="429"}"#,
    );
    assert!(refused.is_some_and(|n| n >= 1.0), "{text}");
    app.stop().await;
}

#[sqlx::test]
async fn a_request_that_panics_times_out_or_is_abandoned_still_leaves_its_audit_row(db: PgPool) {
    // Arrange: a one-second request timeout.
    let app = crate::helpers::spawn_app_with_test_routes(
        db.clone(),
        Settings {
            request_timeout_secs: 1,
            ..settings()
        },
    )
    .await;

    // Act: a crash, a timeout, and a client that gives up before the timeout.
    let crashed = send(app.client.get(app.url("/api/panic?manager_id=crash"))).await;
    let timed_out = send(app.client.get(app.url("/api/slow?manager_id=slow"))).await;
    let abandoned = app
        .client
        .get(app.url("/api/slow?manager_id=gone"))
        .header("x-request-id", "abandoned-1")
        .timeout(std::time::Duration::from_millis(500))
        .send()
        .await;
    app.stop().await;

    // Assert
    assert_eq!((crashed.status, timed_out.status), (500, 504));
    assert!(abandoned.is_err(), "the client gave up");
    let crash_row = row_of(&db, &crashed.request_id).await;
    assert_eq!(
        (crash_row.status, crash_row.error_code.as_deref()),
        (500, Some("INTERNAL_ERROR"))
    );
    let timeout_row = row_of(&db, &timed_out.request_id).await;
    assert_eq!(
        (timeout_row.status, timeout_row.error_code.as_deref()),
        (504, Some("TIMEOUT"))
    );
    let abandoned_row = row_of(&db, "abandoned-1").await;
    assert_eq!(
        (abandoned_row.manager_id.as_str(), abandoned_row.path.as_str()),
        ("gone", "/api/slow"),
        "the request was counted against its manager, so it is audited too"
    );
    assert_eq!(count_rows(&db).await, 3);
}

#[sqlx::test]
async fn queued_records_survive_a_database_hiccup(db: PgPool) {
    let app = spawn_app(db.clone()).await;
    sqlx::query("alter table audit_log rename to audit_log_away")
        .execute(&db)
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(
            app.get(&format!("{LIST}?manager_id=hiccup&limit=0")).await.status(),
            400
        );
    }
    // Let the writer fail at least once.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    sqlx::query("alter table audit_log_away rename to audit_log")
        .execute(&db)
        .await
        .unwrap();

    assert_eq!(
        app.audit_rows(3).await,
        3,
        "every record written once the table is back"
    );
    app.stop().await;
    assert_eq!(count_rows(&db).await, 3);
}

#[sqlx::test]
async fn a_stop_with_the_audit_table_gone_gives_up_after_a_few_attempts(db: PgPool) {
    let app = spawn_app(db.clone()).await;
    sqlx::query("alter table audit_log rename to audit_log_away")
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(app.get(&format!("{LIST}?manager_id=gone")).await.status(), 200);

    let stopped = tokio::time::timeout(std::time::Duration::from_secs(30), app.stop()).await;

    assert!(stopped.is_ok(), "stop returned although the record could not be stored");
    sqlx::query("alter table audit_log_away rename to audit_log")
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(count_rows(&db).await, 0);
}

#[sqlx::test]
async fn copied_records_keep_every_character_they_were_given(db: PgPool) {
    use ecommerce_api::{
        audit::{self, sql},
        db::Db,
        domain::{OrderId, ProductId},
    };

    let hostile = "tab\there, newline\nthere, cr\r, backslash \\ and \\N, quote \" ' and ünïcödé ✓";
    let entry = |n: i64, text: Option<&str>| audit::AuditEntry {
        occurred_at: chrono::Utc::now(),
        request_id: format!("r{n} {hostile}"),
        manager_id: "m\\t".into(),
        method: "GET".into(),
        path: format!("/api/{hostile}"),
        query: text.map(str::to_owned),
        status: 200,
        error_code: text.map(|t| t.to_owned().into()),
        duration_ms: 0.000_123_456_789,
        client_addr: text.map(str::to_owned),
        product_ids: if text.is_some() {
            vec![1, 20, 123_456_789]
        } else {
            vec![]
        },
        order_id: text.map(|_| n),
        attempt: None,
    };
    let entries = vec![
        entry(1, Some(hostile)),
        entry(2, None),
        entry(3, Some("\\N")),
        entry(4, Some("")),
    ];
    let service = Db::from(db.clone());
    let batch = uuid::Uuid::now_v7();
    sql::write_batch(&service, batch, &entries).await.unwrap();
    sql::write_batch(&service, batch, &entries).await.unwrap();
    let rows: i64 = sqlx::query_scalar("select count(*) from audit_log")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(rows, 4, "a batch is written once, however often it is sent");

    let mut read = sql::list(&Db::from(db), "m\\t", None, 10).await.unwrap();
    read.reverse();
    assert_eq!(read.len(), 4);
    for (record, entry) in read.iter().zip(&entries) {
        assert_eq!(record.request_id, entry.request_id);
        assert_eq!(record.path, entry.path);
        assert_eq!(
            record.query, entry.query,
            "NULL stays NULL, and the text \\N stays text"
        );
        assert_eq!(record.error_code.as_deref(), entry.error_code.as_deref());
        assert_eq!(record.client_addr, entry.client_addr);
        let ids: Vec<String> = entry
            .product_ids
            .iter()
            .map(|id| ProductId::from_db(*id).to_string())
            .collect();
        assert_eq!(record.product_ids, ids);
        assert_eq!(record.order_id, entry.order_id.map(|o| OrderId::from_db(o).to_string()));
        assert_eq!(record.duration_ms, entry.duration_ms, "floats round-trip exactly");
        assert_eq!(
            record.occurred_at.timestamp_micros(),
            entry.occurred_at.timestamp_micros()
        );
    }
}

#[sqlx::test]
async fn hostile_characters_a_client_sends_reach_the_audit_row_unchanged(db: PgPool) {
    let app = spawn_app(db.clone()).await;
    // Backslashes and COPY's NULL marker in the request id, and in the query
    // string as the client sent it (percent-escapes kept). A list read's
    // record goes through the background writer's COPY.
    let request_id = r"evil\N\\t\n'";
    let query = r"manager_id=m&status=in_stock&x=%09%0A\N";
    let response = app
        .client
        .get(app.url(&format!("/api/inventory/products?{query}")))
        .header("x-request-id", request_id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "an unknown parameter is ignored");
    assert_eq!(header(&response, "x-request-id"), request_id);
    app.stop().await;

    let row = row_of(&db, request_id).await;
    assert_eq!(row.query.as_deref(), Some(query));
    assert_eq!(row.manager_id, "m");
}

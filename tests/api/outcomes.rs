//! Writes the service loses sight of: a request given up at its deadline
//! while its statement waits on a lock, a reply lost after the database
//! committed, a request lost before the database saw it, and a database that
//! cannot be reached to settle the outcome. In every case the request has
//! exactly one audit record, the manager's list is never older than the
//! database, nothing is sold twice, and a retry with the same
//! `Idempotency-Key` gets the true outcome.

use std::time::Duration;

use ecommerce_api::{
    config::{DbArgs, Pooler, Settings},
    db::{self, Db},
};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::{
    helpers::{TestApp, database_url_for, error_of, header, settings, spawn_on},
    proxy::{Lose, Proxy},
};

const ORDERS: &str = "/api/orders/process";

/// The service's own pool on `url`, bounded as `serve` bounds it, but with
/// statement and lock timeouts far beyond the request's: the deadline, not
/// the server, ends the wait.
async fn service_db(url: &str, connections: u32) -> Db {
    let args = DbArgs {
        database_url: Some(url.to_owned()),
        data_dir: ".data/unused".into(),
        db_max_connections: connections,
        db_statement_timeout_secs: 30,
        db_lock_timeout_secs: 30,
        db_pooler: Pooler::None,
    };
    db::connect(url, &args).await.unwrap()
}

/// `url` with its host and port replaced by the proxy's.
fn through(url: &str, proxy: &Proxy) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, path) = rest.split_once('/').unwrap();
    let user = authority
        .rsplit_once('@')
        .map_or(String::new(), |(user, _)| format!("{user}@"));
    format!("{scheme}://{user}127.0.0.1:{}/{path}", proxy.port)
}

/// The `host:port` of `url`.
fn upstream(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    let authority = rest.split_once('/').unwrap().0;
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
        .to_owned()
}

async fn app_on(db: &PgPool, service: Db, settings: Settings) -> TestApp {
    spawn_on(db.clone(), service, settings, None, ecommerce_api::http::router).await
}

fn order(product: &str) -> Value {
    json!({"manager_id": "m", "customer": {"id": "c", "email": "c@example.com"},
        "products": [{"product_id": product, "quantity": 1}]})
}

async fn send(app: &TestApp, path: &str, body: &Value, request_id: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(path))
        .header("x-request-id", request_id)
        .json(body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.send().await.unwrap()
}

/// The (status, error code, order id) of every audit record of a request,
/// once at least `expected` are there (the queue writes some later).
async fn records(db: &PgPool, request_id: &str, expected: usize) -> Vec<(i16, Option<String>, Option<i64>)> {
    let mut found = Vec::new();
    for _ in 0..500 {
        found = sqlx::query_as("select status, error_code, order_id from audit_log where request_id = $1 order by id")
            .bind(request_id)
            .fetch_all(db)
            .await
            .unwrap();
        if found.len() >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    found
}

async fn listed_quantity(app: &TestApp) -> Value {
    let body: Value = app
        .get("/api/inventory/products?manager_id=m")
        .await
        .json()
        .await
        .unwrap();
    body["products"][0]["quantity"].clone()
}

#[sqlx::test]
async fn a_write_given_up_at_its_deadline_never_commits_behind_its_504(db: PgPool) {
    let url = database_url_for(&db);
    let app = app_on(
        &db,
        service_db(&url, 4).await,
        Settings {
            request_timeout_secs: 2,
            ..settings()
        },
    )
    .await;
    let tea = app.seed("m", "Tea", 1.0, 10).await;
    assert_eq!(listed_quantity(&app).await, 10, "the list is cached");

    // Another session holds the product's row: the order and the upsert
    // wait on it past their deadline.
    let mut blocker = db.begin().await.unwrap();
    sqlx::query("select 1 from product where manager_id = 'm' for update")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let upsert = json!({"manager_id": "m", "products": [{"id": tea, "name": "Tea", "price": 1.0, "quantity": 50}]});
    let one = order(&tea);
    let (sold, set) = tokio::join!(
        send(&app, ORDERS, &one, "given-up-order", Some("k1")),
        send(&app, "/api/inventory/products", &upsert, "given-up-upsert", None),
    );
    for response in [sold, set] {
        let (status, error) = error_of(response).await;
        assert_eq!((status, error["code"].as_str()), (504, Some("TIMEOUT")));
    }

    // The lock goes away; the abandoned statements find their client gone,
    // or their record already written: neither commits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    blocker.commit().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(app.stock(&tea).await, 10, "nothing was sold or set behind the 504s");
    assert_eq!(listed_quantity(&app).await, 10);
    for request in ["given-up-order", "given-up-upsert"] {
        assert_eq!(
            records(&db, request, 1).await,
            [(504, Some("TIMEOUT".to_owned()), None)],
            "{request}: one record, saying what the client got"
        );
    }

    // The key was freed with the fence: a retry runs, once.
    let retried = send(&app, ORDERS, &order(&tea), "retry-1", Some("k1")).await;
    assert_eq!(retried.status(), 200);
    let first: Value = retried.json().await.unwrap();
    let again = send(&app, ORDERS, &order(&tea), "retry-2", Some("k1")).await;
    assert_eq!(header(&again, "idempotent-replayed"), "true");
    let replayed: Value = again.json().await.unwrap();
    assert_eq!(first["order_id"], replayed["order_id"]);
    assert_eq!(app.stock(&tea).await, 9);
    assert_eq!(listed_quantity(&app).await, 9);
    app.stop().await;
}

#[sqlx::test]
async fn a_write_whose_commit_reply_was_lost_is_answered_outcome_unknown_and_its_retry_learns_the_sale(db: PgPool) {
    let url = database_url_for(&db);
    let proxy = Proxy::start(upstream(&url)).await;
    let app = app_on(&db, service_db(&through(&url, &proxy), 2).await, settings()).await;
    let tea = app.seed("m", "Tea", 1.0, 10).await;
    assert_eq!(listed_quantity(&app).await, 10, "the list is cached");

    // The order's statement (the one carrying its audit record) commits; its
    // reply never reaches the service.
    proxy.arm(Lose::Reply(br#""request_id":"lost-reply""#.to_vec()));
    let lost = send(&app, ORDERS, &order(&tea), "lost-reply", Some("k2")).await;
    assert_eq!(proxy.sprung(), 1);
    assert_eq!(header(&lost, "retry-after"), "1");
    let (status, error) = error_of(lost).await;
    assert_eq!((status, error["code"].as_str()), (503, Some("OUTCOME_UNKNOWN")));

    // It had committed: the list shows it, and its one record is the sale's.
    assert_eq!(app.stock(&tea).await, 9);
    assert_eq!(listed_quantity(&app).await, 9, "the lists were invalidated");
    let sold: Vec<(i16, Option<String>, Option<i64>)> = records(&db, "lost-reply", 1).await;
    assert_eq!(sold.len(), 1, "{sold:?}");
    assert_eq!((sold[0].0, sold[0].2.is_some()), (200, true));

    // The retry learns the truth: that sale, not a second one.
    let retried = send(&app, ORDERS, &order(&tea), "lost-reply-retry", Some("k2")).await;
    assert_eq!(retried.status(), 200);
    assert_eq!(header(&retried, "idempotent-replayed"), "true");
    let body: Value = retried.json().await.unwrap();
    assert_eq!(body["order_id"], format!("ord_{:03}", sold[0].2.unwrap()));
    assert_eq!(app.stock(&tea).await, 9);
    app.stop().await;
}

#[sqlx::test]
async fn a_write_lost_on_its_way_is_answered_503_and_its_key_runs_again(db: PgPool) {
    let url = database_url_for(&db);
    let proxy = Proxy::start(upstream(&url)).await;
    let app = app_on(&db, service_db(&through(&url, &proxy), 2).await, settings()).await;
    let tea = app.seed("m", "Tea", 1.0, 10).await;

    proxy.arm(Lose::Request(br#""request_id":"lost-request""#.to_vec()));
    let lost = send(&app, ORDERS, &order(&tea), "lost-request", Some("k3")).await;
    assert_eq!(proxy.sprung(), 1);
    assert_eq!(header(&lost, "retry-after"), "1");
    let (status, error) = error_of(lost).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (503, Some("SERVICE_UNAVAILABLE")),
        "the fence shows nothing was applied"
    );
    assert_eq!(app.stock(&tea).await, 10);
    assert_eq!(
        records(&db, "lost-request", 1).await,
        [(503, Some("SERVICE_UNAVAILABLE".to_owned()), None)]
    );

    let retried = send(&app, ORDERS, &order(&tea), "lost-request-retry", Some("k3")).await;
    assert_eq!(retried.status(), 200);
    assert!(retried.headers().get("idempotent-replayed").is_none(), "a fresh run");
    assert_eq!(app.stock(&tea).await, 9);
    app.stop().await;
}

#[sqlx::test]
async fn an_outcome_the_database_could_not_be_asked_about_is_settled_once_it_returns(db: PgPool) {
    let url = database_url_for(&db);
    let proxy = Proxy::start(upstream(&url)).await;
    // One connection: once it breaks, settling the write needs a new one.
    let app = app_on(&db, service_db(&through(&url, &proxy), 1).await, settings()).await;
    let tea = app.seed("m", "Tea", 1.0, 10).await;

    proxy.refuse(true);
    proxy.arm(Lose::Request(br#""request_id":"unreachable""#.to_vec()));
    let lost = send(&app, ORDERS, &order(&tea), "unreachable", Some("k4")).await;
    assert_eq!(header(&lost, "retry-after"), "1");
    let (status, error) = error_of(lost).await;
    assert_eq!((status, error["code"].as_str()), (503, Some("OUTCOME_UNKNOWN")));

    // The database comes back: the queued record settles the attempt (its
    // write never arrived), once, and frees the key.
    proxy.refuse(false);
    assert_eq!(
        records(&db, "unreachable", 1).await,
        [(503, Some("OUTCOME_UNKNOWN".to_owned()), None)]
    );
    let retried = send(&app, ORDERS, &order(&tea), "unreachable-retry", Some("k4")).await;
    assert_eq!(retried.status(), 200);
    assert_eq!(app.stock(&tea).await, 9);
    app.stop().await;
    assert_eq!(records(&db, "unreachable", 1).await.len(), 1);
}

#[sqlx::test]
async fn an_audit_batch_whose_commit_reply_was_lost_is_written_once(db: PgPool) {
    let url = database_url_for(&db);
    let proxy = Proxy::start(upstream(&url)).await;
    let app = app_on(&db, service_db(&through(&url, &proxy), 1).await, settings()).await;

    // The queue writes this request's record; the reply to that batch's
    // COMMIT is lost, and the writer tries the batch again.
    proxy.arm(Lose::ReplyToNext(b"lost-batch-reply".to_vec(), b"commit".to_vec()));
    let read = app
        .client
        .get(app.url("/api/inventory/products?manager_id=m"))
        .header("x-request-id", "lost-batch-reply")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(records(&db, "lost-batch-reply", 1).await.len(), 1);
    for _ in 0..100 {
        if proxy.sprung() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(proxy.sprung(), 1, "the commit's reply was dropped");
    app.stop().await;
    assert_eq!(records(&db, "lost-batch-reply", 1).await.len(), 1, "written once");
}

#[sqlx::test]
async fn a_keyed_write_whose_claim_reply_was_lost_is_settled_and_its_key_freed(db: PgPool) {
    let url = database_url_for(&db);
    let proxy = Proxy::start(upstream(&url)).await;
    let app = app_on(&db, service_db(&through(&url, &proxy), 2).await, settings()).await;
    let tea = app.seed("m", "Tea", 1.0, 10).await;

    // The key's claim commits, its reply is lost: the order never runs.
    proxy.arm(Lose::Reply(b"claim-lost".to_vec()));
    let lost = send(&app, ORDERS, &order(&tea), "claim-lost", Some("k5")).await;
    assert_eq!(proxy.sprung(), 1);
    let (status, error) = error_of(lost).await;
    assert_eq!((status, error["code"].as_str()), (503, Some("SERVICE_UNAVAILABLE")));
    assert_eq!(app.stock(&tea).await, 10);
    assert_eq!(records(&db, "claim-lost", 1).await.len(), 1);

    // The settlement freed the key: the retry runs, once.
    let retried = send(&app, ORDERS, &order(&tea), "claim-lost-retry", Some("k5")).await;
    assert_eq!(retried.status(), 200);
    assert!(retried.headers().get("idempotent-replayed").is_none());
    assert_eq!(app.stock(&tea).await, 9);
    app.stop().await;
}

//! `Idempotency-Key` on `POST /api/orders/process`: retries are answered
//! from the first request's outcome and never sell twice.

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{TestApp, error_of, settings, spawn_app, spawn_app_with};

const ORDERS: &str = "/api/orders/process";

fn order(product: &str, quantity: i64) -> Value {
    json!({"manager_id": "mgr_123", "customer": {"id": "cust_456", "email": "customer@example.com"},
           "products": [{"product_id": product, "quantity": quantity}]})
}

async fn post_with_key(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url(ORDERS))
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn orders(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from customer_order")
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[sqlx::test]
async fn a_retry_with_the_same_key_and_body_gets_the_same_order_and_sells_once(db: PgPool) {
    let app = spawn_app(db).await;
    let beans = app.seed("mgr_123", "Beans", 15.99, 10).await;

    let first = post_with_key(&app, "retry-1", &order(&beans, 2)).await;
    let first_replayed = first.headers().get("idempotent-replayed").is_some();
    let first_body = first.text().await.unwrap();
    // The same body spelled differently (key order, spacing) is the same body.
    let respelled = r#"{"products":[{"quantity":2,"product_id":"prod_001"}],"customer":{"email":"customer@example.com","id":"cust_456"},   "manager_id":"mgr_123"}"#;
    let retry = app
        .client
        .post(app.url(ORDERS))
        .header("Idempotency-Key", "retry-1")
        .header("Content-Type", "application/json")
        .body(respelled)
        .send()
        .await
        .unwrap();

    assert!(!first_replayed);
    assert_eq!(
        first_body,
        r#"{"order_id":"ord_001","status":"processed","total_amount":31.98}"#
    );
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.text().await.unwrap(), first_body);
    assert_eq!(app.stock(&beans).await, 8, "sold once");
    assert_eq!(orders(&app).await, 1);
}

#[sqlx::test]
async fn the_same_key_with_another_body_is_refused_and_changes_nothing(db: PgPool) {
    let app = spawn_app(db).await;
    let beans = app.seed("mgr_123", "Beans", 1.0, 10).await;
    assert_eq!(post_with_key(&app, "k", &order(&beans, 1)).await.status(), 200);
    let before = app.snapshot().await;

    let (status, error) = error_of(post_with_key(&app, "k", &order(&beans, 3)).await).await;

    assert_eq!(status, 422);
    assert_eq!(error["code"], "IDEMPOTENCY_KEY_REUSED");
    assert!(error["details"].get("Idempotency-Key").is_some());
    assert_eq!(app.snapshot().await, before);
}

#[sqlx::test]
async fn a_retry_while_the_first_request_runs_is_in_use_until_its_deadline_then_settles_it(db: PgPool) {
    let app = spawn_app_with(
        db,
        ecommerce_api::config::Settings {
            request_timeout_secs: 1,
            ..settings()
        },
        None,
    )
    .await;
    let beans = app.seed("mgr_123", "Beans", 1.0, 10).await;
    let body = order(&beans, 1);
    // A first request that is still running holds a fresh claim.
    let attempt = uuid::Uuid::now_v7();
    sqlx::query(
        "insert into idempotency_key (manager_id, key, request, claim_token, claimed_at)
         values ('mgr_123', 'busy', $1, $2, date_trunc('milliseconds', now()))",
    )
    .bind(serde_json::to_string(&body).unwrap())
    .bind(attempt)
    .execute(&app.db)
    .await
    .unwrap();

    let (status, error) = error_of(post_with_key(&app, "busy", &body).await).await;
    assert_eq!((status, error["code"].as_str()), (409, Some("IDEMPOTENCY_KEY_IN_USE")));
    assert_eq!(app.stock(&beans).await, 10);

    // Once the first request's deadline has passed, a retry settles the key
    // by what the database holds: the first attempt is fenced (its write
    // had not committed), and the retry is processed.
    sqlx::query("update idempotency_key set claimed_at = claimed_at - interval '3 seconds' where key = 'busy'")
        .execute(&app.db)
        .await
        .unwrap();
    let response = post_with_key(&app, "busy", &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.stock(&beans).await, 9);
    let fence: (i16, String) = sqlx::query_as("select status, error_code from audit_log where attempt = $1")
        .bind(attempt)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(
        fence,
        (503, "OUTCOME_UNKNOWN".to_owned()),
        "one record stands for the first request"
    );
    app.stop().await;
}

#[sqlx::test]
async fn a_refused_first_request_is_answered_the_same_on_retry_even_after_a_restock(db: PgPool) {
    let app = spawn_app(db).await;
    let beans = app.seed("mgr_123", "Beans", 1.0, 1).await;
    let first = post_with_key(&app, "short", &order(&beans, 5)).await;
    let (first_status, first_error) = error_of(first).await;
    app.seed("mgr_123", "Beans", 1.0, 100).await;

    let retry = post_with_key(&app, "short", &order(&beans, 5)).await;

    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let (status, error) = error_of(retry).await;
    assert_eq!((first_status, status), (409, 409));
    assert_eq!(error, first_error);
    assert_eq!(
        error["details"],
        json!({"products[0].quantity": "requested 5, available 1"})
    );
    assert_eq!(app.stock(&beans).await, 100, "the retry sold nothing");
    let fresh = post_with_key(&app, "another", &order(&beans, 5)).await;
    assert_eq!(fresh.status(), 200, "a new key is a new attempt");
}

#[sqlx::test]
async fn keys_belong_to_their_manager(db: PgPool) {
    let app = spawn_app(db).await;
    let mine = app.seed("mgr_123", "Beans", 1.0, 5).await;
    let theirs = app.seed("mgr_other", "Beans", 1.0, 5).await;
    let mut other_order = order(&theirs, 1);
    other_order["manager_id"] = json!("mgr_other");

    let a = post_with_key(&app, "same-key", &order(&mine, 1)).await;
    let b = post_with_key(&app, "same-key", &other_order).await;

    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    assert_eq!((app.stock(&mine).await, app.stock(&theirs).await), (4, 4));
}

#[sqlx::test]
async fn a_malformed_key_is_a_bad_request_and_claims_nothing(db: PgPool) {
    let app = spawn_app(db).await;
    let beans = app.seed("mgr_123", "Beans", 1.0, 5).await;

    let (status, error) = error_of(post_with_key(&app, &"k".repeat(256), &order(&beans, 1)).await).await;

    assert_eq!(status, 400);
    assert_eq!(
        error["details"],
        json!({"Idempotency-Key": "must be 1 to 255 visible ASCII characters"})
    );
    let keys: i64 = sqlx::query_scalar("select count(*) from idempotency_key")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!((keys, app.stock(&beans).await), (0, 5));
}

#[sqlx::test]
async fn simultaneous_requests_with_one_key_sell_once(db: PgPool) {
    let app = spawn_app(db).await;
    let beans = app.seed("mgr_123", "Beans", 1.0, 50).await;
    let body = order(&beans, 1);

    let responses =
        futures::future::join_all((0..12).map(|_| async { post_with_key(&app, "burst", &body).await })).await;

    let mut order_ids = std::collections::HashSet::new();
    for response in responses {
        match response.status().as_u16() {
            200 => {
                let body: Value = response.json().await.unwrap();
                order_ids.insert(body["order_id"].as_str().unwrap().to_owned());
            }
            409 => assert_eq!(error_of(response).await.1["code"], "IDEMPOTENCY_KEY_IN_USE"),
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(order_ids.len(), 1, "every success names the one order: {order_ids:?}");
    assert_eq!(app.stock(&beans).await, 49);
    assert_eq!(orders(&app).await, 1);
}

#[sqlx::test]
async fn a_first_request_that_fails_for_a_passing_reason_frees_its_key(db: PgPool) {
    let app = spawn_app(db).await;
    let beans = app.seed("mgr_123", "Beans", 1.0, 5).await;
    // Make the order statement fail after the key is claimed: a 500.
    sqlx::query("alter table order_line rename to order_line_away")
        .execute(&app.db)
        .await
        .unwrap();
    let (status, _) = error_of(post_with_key(&app, "flaky", &order(&beans, 1)).await).await;
    assert_eq!(status, 500);
    sqlx::query("alter table order_line_away rename to order_line")
        .execute(&app.db)
        .await
        .unwrap();

    let retry = post_with_key(&app, "flaky", &order(&beans, 1)).await;

    assert_eq!(retry.status(), 200);
    assert!(
        retry.headers().get("idempotent-replayed").is_none(),
        "the retry really ran"
    );
    assert_eq!(app.stock(&beans).await, 4);
}

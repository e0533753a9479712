//! Defects an outside client found, each attacked the way it was found:
//! a rate limit escaped through the query string, deadlocks between batches
//! creating the same names, missing headers, a bare 404 turned into a 400,
//! and an idempotency key held by a request that is gone.

use ecommerce_api::config::Settings;
use futures::future::join_all;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{error_of, header, settings, spawn_app, spawn_app_with};

const PRODUCTS: &str = "/api/inventory/products";

async fn audit_count(db: &PgPool, manager: &str) -> i64 {
    sqlx::query_scalar("select count(*) from audit_log where manager_id = $1")
        .bind(manager)
        .fetch_one(db)
        .await
        .unwrap()
}

#[sqlx::test]
async fn a_post_is_counted_and_audited_for_the_manager_in_its_body_whatever_the_query_says(db: PgPool) {
    let app = spawn_app_with(
        db.clone(),
        Settings {
            rate_limit_max: 5,
            ..settings()
        },
        None,
    )
    .await;
    let body = json!({"manager_id": "owner", "products": [{"name": "Tea", "price": 1.5, "quantity": 1}]});

    let mut statuses = Vec::new();
    for query in [
        "manager_id=!",
        "manager_id=victim",
        "manager_id=owner",
        "",
        "manager_id=x",
        "manager_id=y",
    ] {
        let response = app
            .client
            .post(app.url(&format!("{PRODUCTS}?{query}")))
            .json(&body)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == 400 {
            let (_, error) = error_of(response).await;
            assert!(error["details"]["manager_id"].is_string(), "{error}");
        }
    }

    assert_eq!(
        statuses,
        [400, 400, 201, 201, 400, 429],
        "one budget: the body's manager's"
    );
    app.stop().await;
    assert_eq!(audit_count(&db, "owner").await, 6);
    assert_eq!(audit_count(&db, "victim").await, 0);
    assert_eq!(audit_count(&db, "!").await, 0);
    let products: i64 = sqlx::query_scalar("select count(*) from product where manager_id <> 'owner'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(products, 0, "nothing is written for the query's manager");
}

#[sqlx::test]
async fn concurrent_batches_creating_the_same_names_in_any_order_never_fail(db: PgPool) {
    let app = spawn_app(db.clone()).await;
    let names: Vec<String> = (0..30).map(|i| format!("Item {i:02}")).collect();
    for round in 0..4 {
        let batches = (0..8).map(|i| {
            let mut items: Vec<Value> = names
                .iter()
                .map(|name| json!({"name": name, "price": 1.0, "quantity": round * 10 + i}))
                .collect();
            if i % 2 == 1 {
                items.reverse();
            }
            app.post(PRODUCTS, json!({"manager_id": "racer", "products": items}))
        });
        let statuses: Vec<u16> = join_all(batches).await.iter().map(|r| r.status().as_u16()).collect();
        assert!(statuses.iter().all(|s| *s == 201), "round {round}: {statuses:?}");
    }
    let count: i64 = sqlx::query_scalar("select count(*) from product where manager_id = 'racer'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(count, 30, "each name created once");
    app.stop().await;
}

#[sqlx::test]
async fn every_response_says_nosniff_and_how_it_may_be_cached(db: PgPool) {
    let app = spawn_app(db).await;
    app.seed("m", "Tea", 1.0, 1).await;
    for (path, cache_control) in [
        ("/api/inventory/products?manager_id=m", Some("private, no-cache")),
        ("/api/inventory/products?status=bad", Some("no-store")),
        ("/api/audit?manager_id=m", Some("no-store")),
        ("/api/nothing-here", Some("no-store")),
        ("/healthz", Some("no-store")),
        ("/openapi.json", Some("no-store")),
        ("/docs/", None),
    ] {
        let response = app.get(path).await;
        assert_eq!(header(&response, "x-content-type-options"), "nosniff", "{path}");
        assert!(response.headers().get("server").is_none(), "{path}: no Server banner");
        if let Some(expected) = cache_control {
            assert_eq!(header(&response, "cache-control"), expected, "{path}");
        }
    }
    let discontinued = app
        .post(
            "/api/inventory/discontinue",
            json!({"manager_id": "m", "product_id": "prod_001"}),
        )
        .await;
    assert_eq!(discontinued.status(), 204);
    assert_eq!(header(&discontinued, "cache-control"), "no-store");
    app.stop().await;
}

#[sqlx::test]
async fn a_missing_asset_is_a_404_in_the_envelope(db: PgPool) {
    let app = spawn_app(db).await;
    let (status, error) = error_of(app.get("/docs/missing.js").await).await;
    assert_eq!((status, error["code"].as_str()), (404, Some("NOT_FOUND")));
    app.stop().await;
}

#[sqlx::test]
async fn a_request_whose_idempotency_claim_was_taken_over_sells_nothing(db: PgPool) {
    use chrono::SubsecRound;
    use ecommerce_api::{
        audit::AuditEntry,
        domain::{ManagerId, order::NewOrder},
        store::{
            Failure, idempotency,
            idempotency::Claim,
            orders::{self, OrderRefusal},
        },
    };
    let app = spawn_app(db.clone()).await;
    let tea = app.seed("m", "Tea", 1.0, 5).await;
    let manager = ManagerId::parse("m").unwrap();
    let body = json!({"manager_id": "m", "customer": {"id": "c", "email": "c@example.com"},
        "products": [{"product_id": tea, "quantity": 1}]});
    let order = NewOrder::parse(&body).unwrap();
    let request = body.to_string();
    let db = ecommerce_api::db::Db::from(db);

    let attempt = |at: chrono::DateTime<chrono::Utc>| AuditEntry {
        occurred_at: at.trunc_subsecs(6),
        request_id: "r".into(),
        manager_id: "m".into(),
        method: "POST".into(),
        path: "/api/orders/process".into(),
        query: None,
        status: 200,
        error_code: None,
        duration_ms: 0.0,
        client_addr: None,
        product_ids: vec![],
        order_id: None,
        attempt: Some(uuid::Uuid::now_v7()),
    };
    let first = attempt(chrono::Utc::now() - chrono::Duration::minutes(5));
    let retry = attempt(chrono::Utc::now());
    let claim = async |entry: &AuditEntry| idempotency::claim(&db, &manager, "k", &request, entry).await;

    // The first request claims the key, then stalls past its deadline; a
    // retry finds the key unsettled, with the attempt that holds it.
    assert_eq!(claim(&first).await.unwrap(), Claim::Owned);
    let Claim::InUse {
        attempt: Some(holder),
        since: Some(since),
        ..
    } = claim(&retry).await.unwrap()
    else {
        panic!("the key is in use")
    };
    assert_eq!((Some(holder), since), (first.attempt, first.occurred_at));

    // Fencing that attempt settles the key: its write had not committed.
    let mut fence = retry.clone();
    fence.attempt = Some(holder);
    fence.occurred_at = since;
    fence.status = 503;
    assert!(ecommerce_api::audit::sql::fence(&db, &fence).await.unwrap());
    assert!(
        !ecommerce_api::audit::sql::fence(&db, &fence).await.unwrap(),
        "an attempt is fenced once"
    );
    assert_eq!(claim(&retry).await.unwrap(), Claim::Owned);

    // The first request wakes up: it no longer owns the key and sells nothing.
    let late = orders::process(&db, &order, &first, Some("k")).await;
    assert!(
        matches!(late, Err(Failure::Refused(OrderRefusal::ClaimLost))),
        "{late:?}"
    );
    // Without a key, its own record collides with the fence: it sells nothing either.
    let unkeyed = orders::process(&db, &order, &first, None).await;
    assert!(matches!(unkeyed, Err(Failure::Database(_))), "{unkeyed:?}");
    assert_eq!(app.stock(&tea).await, 5);

    // The retry sells once, and completes the key.
    let sold = orders::process(&db, &order, &retry, Some("k")).await;
    assert!(sold.is_ok(), "{sold:?}");
    assert_eq!(app.stock(&tea).await, 4);
    let Claim::Sold { .. } = claim(&attempt(chrono::Utc::now())).await.unwrap() else {
        panic!("the key remembers the sale")
    };
    app.stop().await;
}

#[sqlx::test]
async fn the_services_connections_bound_their_statements_on_the_server(db: PgPool) {
    use ecommerce_api::{config::DbArgs, db};
    let url = crate::helpers::database_url_for(&db);
    let args = DbArgs {
        database_url: Some(url.clone()),
        data_dir: ".data/unused".into(),
        db_max_connections: 2,
        db_statement_timeout_secs: 1,
        db_lock_timeout_secs: 1,
        db_pooler: ecommerce_api::config::Pooler::None,
    };
    let pool = db::connect(&url, &args).await.unwrap();
    let (statement, lock): (String, String) =
        sqlx::query_as("select current_setting('statement_timeout'), current_setting('lock_timeout')")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((statement.as_str(), lock.as_str()), ("1s", "1s"));
    let slow = sqlx::query("select pg_sleep(5)").execute(&pool).await.unwrap_err();
    let code = slow.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("57014"), "cancelled by statement_timeout");
    let as_http = ecommerce_api::error::AppError::from(slow);
    assert_eq!(as_http.parts().0, 503);
}

#[sqlx::test]
async fn a_claim_that_became_visible_after_its_attempt_was_settled_is_freed_by_the_next_settlement(db: PgPool) {
    use chrono::SubsecRound;
    use ecommerce_api::{
        audit::{AuditEntry, sql::fence},
        domain::ManagerId,
        store::idempotency::{self, Claim},
    };
    let manager = ManagerId::parse("m").unwrap();
    let attempt = |at: chrono::DateTime<chrono::Utc>, request_id: &str| AuditEntry {
        occurred_at: at.trunc_subsecs(6),
        request_id: request_id.into(),
        manager_id: "m".into(),
        method: "POST".into(),
        path: "/api/orders/process".into(),
        query: None,
        status: 504,
        error_code: Some("TIMEOUT".into()),
        duration_ms: 0.0,
        client_addr: None,
        product_ids: vec![],
        order_id: None,
        attempt: Some(uuid::Uuid::now_v7()),
    };
    let db = ecommerce_api::db::Db::from(db);
    let first = attempt(chrono::Utc::now() - chrono::Duration::minutes(5), "first");
    // The first request was settled at its deadline (its record is in)
    // while its claim was still on its way (a commit waiting for a standby):
    // the claim shows up afterwards, unsettled.
    assert!(fence(&db, &first).await.unwrap());
    assert_eq!(
        idempotency::claim(&db, &manager, "k", "{}", &first).await.unwrap(),
        Claim::Owned
    );
    let retry = attempt(chrono::Utc::now(), "retry");
    let Claim::InUse { request_id, .. } = idempotency::claim(&db, &manager, "k", "{}", &retry).await.unwrap() else {
        panic!("the key is held")
    };
    assert_eq!(
        request_id.as_deref(),
        Some("first"),
        "the holder's request id, for its record"
    );
    // Settling it again writes nothing, and frees the key.
    assert!(!fence(&db, &first).await.unwrap());
    assert_eq!(
        idempotency::claim(&db, &manager, "k", "{}", &retry).await.unwrap(),
        Claim::Owned
    );
}

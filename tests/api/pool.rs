//! The connection pool, on a real PostgreSQL: a connection goes back as it
//! is after a statement that finished, and in a known state after anything
//! else (a cancelled statement, an error, a transaction never committed, a
//! server session that died).

use std::time::Duration;

use ecommerce_api::{db::Db, http};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{settings, spawn_on};

/// A handle with a single connection to the test's database, so every
/// statement reuses whatever the previous one left behind.
fn one_connection(db: &PgPool) -> Db {
    Db::new((*db.connect_options()).clone(), 1, None)
}

async fn backend_pid(handle: &Db) -> i32 {
    sqlx::query_scalar("select pg_backend_pid()")
        .fetch_one(handle)
        .await
        .unwrap()
}

#[sqlx::test]
async fn a_transaction_dropped_uncommitted_is_rolled_back_and_releases_its_locks_at_once(db: PgPool) {
    sqlx::query("create table probe (id int primary key, n int not null)")
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("insert into probe values (1, 0)")
        .execute(&db)
        .await
        .unwrap();
    let handle = one_connection(&db);
    {
        let mut tx = handle.begin().await.unwrap();
        sqlx::query("update probe set n = n + 1 where id = 1")
            .execute(&mut tx)
            .await
            .unwrap();
        // Dropped here, as a request cancelled mid-transaction drops it.
    }
    // Another session takes the row's lock without waiting out the
    // connection's next use, and the update is gone.
    let mut other = db.acquire().await.unwrap();
    sqlx::query("set lock_timeout = '5s'")
        .execute(&mut *other)
        .await
        .unwrap();
    let n: i32 = sqlx::query_scalar("update probe set n = n + 10 where id = 1 returning n")
        .fetch_one(&mut *other)
        .await
        .unwrap();
    assert_eq!(n, 10, "the uncommitted update was rolled back");
    // The one connection serves the next transaction, outside any other.
    let mut tx = handle.begin().await.unwrap();
    sqlx::query("update probe set n = n + 100 where id = 1")
        .execute(&mut tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let n: i32 = sqlx::query_scalar("select n from probe where id = 1")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(n, 110);
}

#[sqlx::test]
async fn a_cancelled_or_failed_statement_leaves_nothing_for_the_next_one(db: PgPool) {
    let handle = one_connection(&db);
    let pid = backend_pid(&handle).await;
    // Cancelled while the server is still working on it: its late result is
    // not the next statement's.
    let slow = sqlx::query_scalar::<_, i32>("select 1 from pg_sleep(0.3)").fetch_one(&handle);
    assert!(tokio::time::timeout(Duration::from_millis(50), slow).await.is_err());
    let answer: i32 = sqlx::query_scalar("select 2").fetch_one(&handle).await.unwrap();
    assert_eq!(answer, 2);
    // A statement the server refuses: the next one still runs.
    sqlx::query("select 1 / 0").execute(&handle).await.unwrap_err();
    let answer: i32 = sqlx::query_scalar("select 3").fetch_one(&handle).await.unwrap();
    assert_eq!(answer, 3);
    assert_eq!(backend_pid(&handle).await, pid, "the same connection throughout");
    assert_eq!(handle.connections(), (1, 1));
}

#[sqlx::test]
async fn a_connection_whose_session_died_is_replaced(db: PgPool) {
    let handle = one_connection(&db);
    let terminate = |pid: i32| {
        let db = db.clone();
        async move {
            let gone: bool = sqlx::query_scalar("select pg_terminate_backend($1, 5000)")
                .bind(pid)
                .fetch_one(&db)
                .await
                .unwrap();
            assert!(gone);
        }
    };

    // In use a moment ago: not pinged, so the first statement fails, and
    // the connection is closed rather than handed out again.
    let first = backend_pid(&handle).await;
    terminate(first).await;
    sqlx::query("select 1").execute(&handle).await.unwrap_err();
    let mut second = None;
    for _ in 0..50 {
        match sqlx::query_scalar::<_, i32>("select pg_backend_pid()")
            .fetch_one(&handle)
            .await
        {
            Ok(pid) => {
                second = Some(pid);
                break;
            }
            // The broken connection may still be on its way out.
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let second = second.expect("a new connection");
    assert_ne!(second, first);

    // Idle for a while: pinged on its way out, so the dead session costs
    // no statement an error.
    terminate(second).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let third = backend_pid(&handle).await;
    assert_ne!(third, second);
}

#[sqlx::test]
async fn waiting_for_a_connection_ends_in_an_error_not_a_hang(db: PgPool) {
    let handle = one_connection(&db);
    let held = handle.begin().await.unwrap();
    // The only connection is taken: the next statement gives up (its
    // request is answered 503) instead of waiting for as long as it is held.
    let waited = tokio::time::timeout(Duration::from_secs(20), sqlx::query("select 1").execute(&handle))
        .await
        .expect("the pool's own bound ends the wait");
    assert!(matches!(waited, Err(sqlx::Error::PoolTimedOut)), "{waited:?}");
    held.commit().await.unwrap();
    sqlx::query("select 1").execute(&handle).await.unwrap();
}

/// The service on a pool of one connection whose statements wait at most
/// 20 s for a lock.
async fn service_on_one_connection(db: &PgPool) -> crate::helpers::TestApp {
    let options = (*db.connect_options()).clone().options([("lock_timeout", "20s")]);
    spawn_on(db.clone(), Db::new(options, 1, None), settings(), None, http::router).await
}

/// A session of the test's own that tries to lock `product` for at most `wait`.
async fn lock_from_outside(db: &PgPool, product: &str, wait: &str) -> Result<(), sqlx::Error> {
    let id: i64 = product.trim_start_matches("prod_").parse().unwrap();
    let mut tx = db.begin().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("set local lock_timeout = '{wait}'")))
        .execute(&mut *tx)
        .await?;
    sqlx::query("select 1 from product where id = $1 for update")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.rollback().await
}

#[sqlx::test]
async fn a_refused_write_leaves_no_lock_behind_for_anyone(db: PgPool) {
    let app = service_on_one_connection(&db).await;
    let tea = app.seed("m", "Tea", 1.0, 5).await;
    for _ in 0..5 {
        // Locks the row in a transaction, finds too little stock, refuses.
        let refused = app
            .post(
                "/api/inventory/adjustments",
                json!({"manager_id": "m", "adjustments": [{"product_id": tea, "delta": -6}]}),
            )
            .await;
        assert_eq!(refused.status(), 409);
        // Another client's session gets the row at once, before the
        // service's connection serves anything else.
        lock_from_outside(&db, &tea, "2s")
            .await
            .expect("the refused transaction's lock is gone");
        let order = app
            .post(
                "/api/orders/process",
                json!({"manager_id": "m", "customer": {"id": "c", "email": "c@example.com"},
                       "products": [{"product_id": tea, "quantity": 1}]}),
            )
            .await;
        assert_eq!(order.status(), 200);
    }
    let stock: i32 = sqlx::query_scalar("select quantity from product where name = 'Tea'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(stock, 0, "five orders of one, no adjustment applied");
    app.stop().await;
}

#[sqlx::test]
async fn a_request_that_cannot_get_a_connection_is_answered_503_and_the_busy_one_finishes(db: PgPool) {
    let app = service_on_one_connection(&db).await;
    let tea = app.seed("m", "Tea", 1.0, 5).await;
    // Hold the product's row from outside: an order for it takes the
    // service's only connection and waits on the lock.
    let id: i64 = tea.trim_start_matches("prod_").parse().unwrap();
    let mut held = db.begin().await.unwrap();
    sqlx::query("select 1 from product where id = $1 for update")
        .bind(id)
        .execute(&mut *held)
        .await
        .unwrap();
    let order = {
        let (client, url) = (app.client.clone(), app.url("/api/orders/process"));
        let body = json!({"manager_id": "m", "customer": {"id": "c", "email": "c@example.com"},
                          "products": [{"product_id": tea, "quantity": 1}]});
        tokio::spawn(async move { client.post(url).json(&body).send().await.unwrap() })
    };
    // Until the order waits on the lock.
    for _ in 0..200 {
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Meanwhile another request needs a connection: a 503 in the envelope,
    // not a wait for as long as the row is held.
    let detail = app.get(&format!("/api/inventory/products/{tea}?manager_id=m")).await;
    assert_eq!(detail.status(), 503);
    let body: Value = detail.json().await.unwrap();
    assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE");
    held.rollback().await.unwrap();
    let order = order.await.unwrap();
    assert_eq!(order.status(), 200, "the order that held the connection completes");
    let detail = app.get(&format!("/api/inventory/products/{tea}?manager_id=m")).await;
    assert_eq!(detail.status(), 200);
    app.stop().await;
}

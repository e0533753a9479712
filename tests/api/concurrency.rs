//! Many simultaneous requests through the HTTP API, on a pool with enough
//! connections for them to really overlap in the database.

use std::collections::HashSet;

use ecommerce_api::config::Settings;
use futures::future::join_all;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{self, TestApp, spawn_app_with};

const ORDERS: &str = "/api/orders/process";

/// The app on a pool of 30 connections, with a rate limit that is no obstacle.
///
/// The options `#[sqlx::test]` hands over borrow their connections from a
/// shared parent pool of 20 (sqlx asserts a child never exceeds its parent),
/// so the pool is built from fresh options on the test's own database.
async fn busy_app(connect: PgConnectOptions) -> TestApp {
    let db = PgPoolOptions::new()
        .max_connections(30)
        .connect_with(connect)
        .await
        .expect("pool");
    spawn_app_with(
        db,
        Settings {
            rate_limit_max: 10_000,
            ..helpers::settings()
        },
        None,
    )
    .await
}

fn order(customer: usize, lines: Value) -> Value {
    json!({
        "manager_id": "mgr_123",
        "customer": {"id": format!("cust_{customer}"), "email": format!("c{customer}@example.com")},
        "products": lines,
    })
}

/// POSTs and returns the status and JSON body.
async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let response = app.post(path, body).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn units_sold(app: &TestApp) -> i64 {
    sqlx::query_scalar("select coalesce(sum(quantity), 0)::bigint from order_line")
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[sqlx::test]
async fn forty_simultaneous_orders_for_ten_units_sell_exactly_ten(_shared: PgPoolOptions, connect: PgConnectOptions) {
    let app = busy_app(connect).await;
    let beans = app.seed("mgr_123", "Beans", 2.5, 10).await;

    let results =
        join_all((0..40).map(|i| post(&app, ORDERS, order(i, json!([{"product_id": beans, "quantity": 1}]))))).await;

    let sold: Vec<&Value> = results
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body)
        .collect();
    let refused: Vec<&Value> = results
        .iter()
        .filter(|(status, _)| *status == 409)
        .map(|(_, body)| body)
        .collect();
    assert_eq!((sold.len(), refused.len()), (10, 30), "{results:?}");
    for body in &sold {
        assert_eq!(body["status"], "processed");
        assert_eq!(body["total_amount"], json!(2.5));
    }
    for body in &refused {
        assert_eq!(
            body["error"],
            json!({"code": "INSUFFICIENT_STOCK", "message": "not enough stock for some products",
                   "details": {"products[0].quantity": "requested 1, available 0"}})
        );
    }
    let ids: HashSet<&str> = sold.iter().map(|body| body["order_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 10);
    assert_eq!(app.stock(&beans).await, 0);
    assert_eq!(units_sold(&app).await, 10);
    let orders: i64 = sqlx::query_scalar("select count(*) from customer_order")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(orders, 10);
}

#[sqlx::test]
async fn simultaneous_orders_locking_two_products_in_opposite_orders_all_succeed(
    _shared: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = busy_app(connect).await;
    let a = app.seed("mgr_123", "A", 1.0, 1000).await;
    let b = app.seed("mgr_123", "B", 2.0, 1000).await;

    let results = join_all((0..40).map(|i| {
        let lines = if i % 2 == 0 {
            json!([{"product_id": a, "quantity": 1}, {"product_id": b, "quantity": 2}])
        } else {
            json!([{"product_id": b, "quantity": 2}, {"product_id": a, "quantity": 1}])
        };
        post(&app, ORDERS, order(i, lines))
    }))
    .await;

    for (status, body) in &results {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["total_amount"], json!(5));
    }
    let ids: HashSet<&str> = results
        .iter()
        .map(|(_, body)| body["order_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 40);
    assert_eq!(app.stock(&a).await, 1000 - 40);
    assert_eq!(app.stock(&b).await, 1000 - 80);
    assert_eq!(units_sold(&app).await, 40 * 3);
}

#[sqlx::test]
async fn restocks_racing_orders_never_leave_negative_stock_nor_oversell(
    _shared: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = busy_app(connect).await;
    let a = app.seed("mgr_123", "A", 1.0, 5).await;
    let b = app.seed("mgr_123", "B", 1.0, 5).await;
    let restock = json!({"manager_id": "mgr_123", "products": [
        {"name": "B", "price": 1, "quantity": 4},
        {"name": "A", "price": 1, "quantity": 4}]});

    let orders = (0..30).map(|i| {
        let lines = if i % 2 == 0 {
            json!([{"product_id": a, "quantity": 3}, {"product_id": b, "quantity": 3}])
        } else {
            json!([{"product_id": b, "quantity": 3}, {"product_id": a, "quantity": 3}])
        };
        post(&app, ORDERS, order(i, lines))
    });
    let restocks = (0..10).map(|_| post(&app, "/api/inventory/products", restock.clone()));
    let (orders, restocks) = futures::join!(join_all(orders), join_all(restocks));

    for (status, body) in &restocks {
        assert_eq!(*status, 201, "{body}");
    }
    let mut sold = 0;
    for (status, body) in &orders {
        match status {
            200 => sold += 1,
            409 => {
                assert_eq!(body["error"]["code"], "INSUFFICIENT_STOCK", "{body}");
                for why in body["error"]["details"].as_object().unwrap().values() {
                    let available: i64 = why
                        .as_str()
                        .unwrap()
                        .strip_prefix("requested 3, available ")
                        .unwrap()
                        .parse()
                        .unwrap();
                    assert!((1..=2).contains(&available), "{body}");
                }
            }
            _ => panic!("unexpected {status}: {body}"),
        }
    }
    assert!(sold >= 1, "the first order always finds 5 or 4 in stock");
    // Both products always move together: restocks set both to 4, orders
    // take 3 of each or nothing. After the last restock at most one order fits.
    let (stock_a, stock_b) = (app.stock(&a).await, app.stock(&b).await);
    assert_eq!(stock_a, stock_b);
    assert!([1, 4].contains(&stock_a), "{stock_a}");
    assert_eq!(units_sold(&app).await, sold * 6);
    let orders_stored: i64 = sqlx::query_scalar("select count(*) from customer_order")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(orders_stored, sold);
}

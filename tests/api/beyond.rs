//! The operations beyond the brief: product detail, stock adjustments, and
//! orders that can be looked up, listed and cancelled; every rule of the
//! contract, success shapes and errors, through the real router.

use futures::future::join_all;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{TestApp, error_of, header, spawn_app};

const ADJUST: &str = "/api/inventory/adjustments";
const ORDERS: &str = "/api/orders/process";

async fn order(app: &TestApp, manager: &str, customer: &str, lines: Value) -> reqwest::Response {
    app.post(
        ORDERS,
        json!({"manager_id": manager, "customer": {"id": customer, "email": format!("{customer}@example.com")},
               "products": lines}),
    )
    .await
}

async fn order_id(app: &TestApp, manager: &str, customer: &str, lines: Value) -> String {
    let response = order(app, manager, customer, lines).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["order_id"].as_str().unwrap().to_owned()
}

async fn cancel(app: &TestApp, manager: &str, id: &str) -> reqwest::Response {
    app.post(&format!("/api/orders/{id}/cancel"), json!({"manager_id": manager}))
        .await
}

#[sqlx::test]
async fn a_product_shows_its_status_and_times_and_revalidates_by_etag(db: PgPool) {
    let app = spawn_app(db).await;
    let tea = app.seed("m", "Tea", 4.5, 0).await;
    let url = format!("/api/inventory/products/{tea}?manager_id=m");

    let response = app.get(&url).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "cache-control"), "private, no-cache");
    let etag = header(&response, "etag").to_owned();
    let body: Value = response.json().await.unwrap();
    let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "created_at",
            "id",
            "low_stock_threshold",
            "name",
            "price",
            "quantity",
            "status",
            "updated_at",
            "version"
        ]
    );
    assert_eq!(
        (
            &body["id"],
            &body["name"],
            &body["price"],
            &body["quantity"],
            &body["status"]
        ),
        (
            &json!(tea),
            &json!("Tea"),
            &json!(4.5),
            &json!(0),
            &json!("out_of_stock")
        )
    );
    let created = chrono::DateTime::parse_from_rfc3339(body["created_at"].as_str().unwrap()).unwrap();
    assert_eq!(created.offset().local_minus_utc(), 0, "UTC");

    let unchanged = app
        .client
        .get(app.url(&url))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(unchanged.status(), 304);
    app.discontinue("m", &tea).await;
    let changed = app
        .client
        .get(app.url(&url))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    let body: Value = changed.json().await.unwrap();
    assert_eq!(body["status"], "discontinued");

    let (status, error) = error_of(
        app.get(&format!("/api/inventory/products/{tea}?manager_id=other"))
            .await,
    )
    .await;
    assert_eq!((status, error["code"].as_str()), (404, Some("PRODUCT_NOT_FOUND")));
    app.stop().await;
}

#[sqlx::test]
async fn adjustments_change_stock_by_differences_all_or_nothing(db: PgPool) {
    let app = spawn_app(db.clone()).await;
    let tea = app.seed("m", "Tea", 2.0, 10).await;
    let mug = app.seed("m", "Mug", 5.0, 2).await;
    app.discontinue("m", &mug).await;
    let list = "/api/inventory/products?manager_id=m";
    assert_eq!(app.get(list).await.status(), 200, "cached");

    let response = app
        .post(
            ADJUST,
            json!({"manager_id": "m", "adjustments": [
            {"product_id": mug, "delta": 3}, {"product_id": tea, "delta": -4}]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"products": [
            {"id": mug, "name": "Mug", "price": 5, "quantity": 5},
            {"id": tea, "name": "Tea", "price": 2, "quantity": 6}]})
    );
    let listed: Value = app.get(list).await.json().await.unwrap();
    assert_eq!(listed["products"][0]["quantity"], 6, "the cached list was invalidated");
    let detail: Value = app
        .get(&format!("/api/inventory/products/{mug}?manager_id=m"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(detail["status"], "discontinued", "adjusting keeps it discontinued");
    let recorded: Vec<(i64, i32)> =
        sqlx::query_as("select product_id, delta from stock_adjustment order by product_id")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(recorded, [(1, -4), (2, 3)]);
    let audited: Vec<i64> =
        sqlx::query_scalar("select unnest(product_ids) from audit_log where path = '/api/inventory/adjustments'")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(audited, [1, 2], "the audit record names the products changed");

    // Every failing item is reported; nothing changes.
    let before = app.snapshot().await;
    let (status, error) = error_of(
        app.post(
            ADJUST,
            json!({"manager_id": "m", "adjustments": [
            {"product_id": tea, "delta": -9}, {"product_id": mug, "delta": -8}]}),
        )
        .await,
    )
    .await;
    assert_eq!((status, error["code"].as_str()), (409, Some("INSUFFICIENT_STOCK")));
    assert_eq!(
        error["details"],
        json!({"adjustments[0].delta": "would leave -3 (available 6)",
               "adjustments[1].delta": "would leave -3 (available 5)"})
    );
    let (status, error) = error_of(
        app.post(
            ADJUST,
            json!({"manager_id": "m", "adjustments": [
            {"product_id": tea, "delta": 999_999_999}, {"product_id": "prod_404", "delta": 1}]}),
        )
        .await,
    )
    .await;
    assert_eq!((status, error["code"].as_str()), (404, Some("PRODUCT_NOT_FOUND")));
    assert_eq!(
        error["details"],
        json!({"adjustments[1].product_id": "not a product of this manager"})
    );
    let (status, error) = error_of(
        app.post(
            ADJUST,
            json!({"manager_id": "m", "adjustments": [{"product_id": tea, "delta": 999_999_999}]}),
        )
        .await,
    )
    .await;
    assert_eq!((status, error["code"].as_str()), (409, Some("QUANTITY_OUT_OF_RANGE")));
    assert_eq!(
        error["details"],
        json!({"adjustments[0].delta": "would make 1000000005 (at most 1000000000)"})
    );
    let (status, _) = error_of(
        app.post(
            ADJUST,
            json!({"manager_id": "other", "adjustments": [{"product_id": tea, "delta": 1}]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 404, "another manager's product is not found");
    assert_eq!(app.snapshot().await, before);
    app.stop().await;
}

#[sqlx::test]
async fn an_adjustment_retried_with_its_key_applies_once_and_keys_are_shared_with_orders(db: PgPool) {
    let app = spawn_app(db).await;
    let tea = app.seed("m", "Tea", 2.0, 10).await;
    let body = json!({"manager_id": "m", "adjustments": [{"product_id": tea, "delta": 5}]});
    let send = |key: &'static str, body: Value| {
        app.client
            .post(app.url(ADJUST))
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };

    let first = send("restock-1", body.clone()).await.unwrap();
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    let again = send("restock-1", body.clone()).await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(header(&again, "idempotent-replayed"), "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(app.stock(&tea).await, 15, "applied once");

    let other = send(
        "restock-1",
        json!({"manager_id": "m", "adjustments": [{"product_id": tea, "delta": 6}]}),
    )
    .await
    .unwrap();
    assert_eq!(error_of(other).await.1["code"], "IDEMPOTENCY_KEY_REUSED");

    // A key first used for an order is another request for an adjustment.
    let sold = app
        .client
        .post(app.url(ORDERS))
        .header("idempotency-key", "shared")
        .json(
            &json!({"manager_id": "m", "customer": {"id": "c", "email": "c@example.com"},
                      "products": [{"product_id": tea, "quantity": 1}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(sold.status(), 200);
    let reused = send("shared", body).await.unwrap();
    assert_eq!(error_of(reused).await.1["code"], "IDEMPOTENCY_KEY_REUSED");

    // A refusal is remembered too.
    let short = json!({"manager_id": "m", "adjustments": [{"product_id": tea, "delta": -100}]});
    let refused = send("short-1", short.clone()).await.unwrap();
    assert_eq!(refused.status(), 409);
    let replayed = send("short-1", short).await.unwrap();
    assert_eq!(replayed.status(), 409);
    assert_eq!(header(&replayed, "idempotent-replayed"), "true");
    assert_eq!(app.stock(&tea).await, 14);
    app.stop().await;
}

#[sqlx::test]
async fn an_order_shows_its_lines_as_sold_and_orders_list_newest_first(db: PgPool) {
    let app = spawn_app(db).await;
    let beans = app.seed("m", "Premium Coffee Beans", 15.99, 100).await;
    let mug = app.seed("m", "Ceramic Coffee Mug", 12.99, 50).await;
    let first = order_id(
        &app,
        "m",
        "cust_456",
        json!([
        {"product_id": beans, "quantity": 2}, {"product_id": mug, "quantity": 1}]),
    )
    .await;
    // Rename and reprice after the sale: the order keeps what was sold.
    let renamed = app
        .post(
            "/api/inventory/products",
            json!({"manager_id": "m", "products": [
            {"id": beans, "name": "House Beans", "price": 20, "quantity": 98}]}),
        )
        .await;
    assert_eq!(renamed.status(), 201);
    let second = order_id(&app, "m", "cust_789", json!([{"product_id": mug, "quantity": 3}])).await;
    let third = order_id(&app, "m", "cust_456", json!([{"product_id": beans, "quantity": 1}])).await;

    let shown: Value = app
        .get(&format!("/api/orders/{first}?manager_id=m"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["order_id"], first);
    assert_eq!(shown["status"], "processed");
    assert_eq!(
        shown["customer"],
        json!({"id": "cust_456", "email": "cust_456@example.com"})
    );
    assert_eq!(shown["total_amount"], json!(44.97));
    assert_eq!(shown["cancelled_at"], Value::Null);
    assert_eq!(
        shown["products"],
        json!([
            {"product_id": beans, "name": "Premium Coffee Beans", "quantity": 2, "unit_price": 15.99, "line_total": 31.98},
            {"product_id": mug, "name": "Ceramic Coffee Mug", "quantity": 1, "unit_price": 12.99, "line_total": 12.99}
        ])
    );
    let (status, error) = error_of(app.get(&format!("/api/orders/{first}?manager_id=other")).await).await;
    assert_eq!((status, error["code"].as_str()), (404, Some("ORDER_NOT_FOUND")));

    let ids = |body: &Value| -> Vec<String> {
        body["orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["order_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let all: Value = app.get("/api/orders?manager_id=m").await.json().await.unwrap();
    assert_eq!(ids(&all), [third.clone(), second.clone(), first.clone()]);
    assert!(all["orders"][0].get("products").is_none(), "lists leave the lines out");
    let theirs: Value = app
        .get("/api/orders?manager_id=m&customer_id=cust_456")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&theirs), [third.clone(), first.clone()]);

    let page = app.get("/api/orders?manager_id=m&customer_id=cust_456&limit=1").await;
    let link = header(&page, "link").to_owned();
    assert_eq!(
        link,
        format!("</api/orders?manager_id=m&customer_id=cust_456&limit=1&after={third}>; rel=\"next\"")
    );
    let body: Value = page.json().await.unwrap();
    assert_eq!(ids(&body), std::slice::from_ref(&third));
    let next = link.trim_start_matches('<').split('>').next().unwrap().to_owned();
    let last = app.get(&next).await;
    assert!(last.headers().get("link").is_none(), "no next page after the last");
    assert_eq!(ids(&last.json::<Value>().await.unwrap()), std::slice::from_ref(&first));

    assert_eq!(cancel(&app, "m", &second).await.status(), 200);
    let cancelled: Value = app
        .get("/api/orders?manager_id=m&status=cancelled")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&cancelled), std::slice::from_ref(&second));
    let processed: Value = app
        .get("/api/orders?manager_id=m&status=processed")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&processed), [third, first]);
    app.stop().await;
}

#[sqlx::test]
async fn cancelling_returns_the_stock_once_and_is_idempotent(db: PgPool) {
    let app = spawn_app(db.clone()).await;
    let tea = app.seed("m", "Tea", 2.0, 10).await;
    let mug = app.seed("m", "Mug", 3.0, 5).await;
    let id = order_id(
        &app,
        "m",
        "c",
        json!([{"product_id": tea, "quantity": 4}, {"product_id": mug, "quantity": 5}]),
    )
    .await;
    app.discontinue("m", &mug).await;
    assert_eq!(
        app.get("/api/inventory/products?manager_id=m").await.status(),
        200,
        "cached"
    );

    let response = cancel(&app, "m", &id).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "cancelled");
    let cancelled_at = body["cancelled_at"].as_str().unwrap().to_owned();
    assert_eq!(body["products"].as_array().unwrap().len(), 2);
    assert_eq!(
        (app.stock(&tea).await, app.stock(&mug).await),
        (10, 5),
        "stock back, discontinued too"
    );
    let listed: Value = app
        .get("/api/inventory/products?manager_id=m")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["products"][0]["quantity"], 10, "the cached list was invalidated");

    let again = cancel(&app, "m", &id).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(
        again["cancelled_at"],
        cancelled_at.as_str(),
        "the first cancellation's time"
    );
    assert_eq!((app.stock(&tea).await, app.stock(&mug).await), (10, 5), "returned once");

    let (status, error) = error_of(cancel(&app, "other", &id).await).await;
    assert_eq!((status, error["code"].as_str()), (404, Some("ORDER_NOT_FOUND")));
    app.stop().await;
    let audited: Vec<(String, Option<i64>)> =
        sqlx::query_as("select path, order_id from audit_log where path like '%/cancel' order by id")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(audited.len(), 3, "every cancel request is audited");
    assert_eq!(audited[0].1, Some(1), "the change names its order");
}

#[sqlx::test]
async fn a_cancel_that_would_overflow_stock_changes_nothing(db: PgPool) {
    let app = spawn_app(db).await;
    let tea = app.seed("m", "Tea", 2.0, 10).await;
    let id = order_id(&app, "m", "c", json!([{"product_id": tea, "quantity": 5}])).await;
    let restock = app
        .post(
            ADJUST,
            json!({"manager_id": "m", "adjustments": [{"product_id": tea, "delta": 999_999_995}]}),
        )
        .await;
    assert_eq!(restock.status(), 200, "{:?}", restock.text().await);
    let before = app.snapshot().await;
    let (status, error) = error_of(cancel(&app, "m", &id).await).await;
    assert_eq!((status, error["code"].as_str()), (409, Some("QUANTITY_OUT_OF_RANGE")));
    assert_eq!(
        error["details"],
        json!({"products[0].quantity": "returning 5 would make 1000000005 (at most 1000000000)"})
    );
    assert_eq!(app.snapshot().await, before);
    let shown: Value = app
        .get(&format!("/api/orders/{id}?manager_id=m"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["status"], "processed");
    app.stop().await;
}

#[sqlx::test]
async fn concurrent_cancels_of_one_order_return_its_stock_once(db: PgPool) {
    let app = spawn_app(db).await;
    let tea = app.seed("m", "Tea", 2.0, 100).await;
    let mug = app.seed("m", "Mug", 2.0, 100).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            order_id(
                &app,
                "m",
                "c",
                json!([{"product_id": tea, "quantity": 3}, {"product_id": mug, "quantity": 2}]),
            )
            .await,
        );
    }
    let cancels = ids
        .iter()
        .flat_map(|id| (0..4).map(move |_| id))
        .map(|id| cancel(&app, "m", id));
    let statuses: Vec<u16> = join_all(cancels).await.iter().map(|r| r.status().as_u16()).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!((app.stock(&tea).await, app.stock(&mug).await), (100, 100));
    app.stop().await;
}

#[sqlx::test]
async fn adjustments_orders_and_cancels_racing_on_the_same_products_add_up(db: PgPool) {
    let app = spawn_app(db.clone()).await;
    let a = app.seed("m", "A", 1.0, 50).await;
    let b = app.seed("m", "B", 1.0, 50).await;
    let placed: Vec<String> = join_all((0..6).map(|_| {
        order_id(
            &app,
            "m",
            "c",
            json!([{"product_id": a, "quantity": 1}, {"product_id": b, "quantity": 1}]),
        )
    }))
    .await;

    // In both lock orders: adjustments a,b and b,a; orders; cancels.
    let mut work = Vec::new();
    for i in 0..30 {
        let app = &app;
        let (a, b) = (a.clone(), b.clone());
        let placed = placed.clone();
        work.push(async move {
            match i % 3 {
                0 => {
                    let (first, second) = if i % 2 == 0 { (a, b) } else { (b, a) };
                    app.post(
                        ADJUST,
                        json!({"manager_id": "m", "adjustments": [
                        {"product_id": first, "delta": 7}, {"product_id": second, "delta": -2}]}),
                    )
                    .await
                    .status()
                    .as_u16()
                }
                1 => order(
                    app,
                    "m",
                    "c",
                    json!([{"product_id": b, "quantity": 2}, {"product_id": a, "quantity": 1}]),
                )
                .await
                .status()
                .as_u16(),
                _ => cancel(app, "m", &placed[i % placed.len()]).await.status().as_u16(),
            }
        });
    }
    let statuses = join_all(work).await;
    assert!(statuses.iter().all(|s| matches!(s, 200 | 409)), "{statuses:?}");

    // stock = start + Σ adjustments − Σ sold in orders not cancelled.
    for (product, start) in [(&a, 50i64), (&b, 50i64)] {
        let id: i64 = product.trim_start_matches("prod_").parse().unwrap();
        let adjusted: i64 =
            sqlx::query_scalar("select coalesce(sum(delta), 0)::bigint from stock_adjustment where product_id = $1")
                .bind(id)
                .fetch_one(&db)
                .await
                .unwrap();
        let sold: i64 = sqlx::query_scalar(
            "select coalesce(sum(l.quantity), 0)::bigint from order_line l join customer_order o
               on o.manager_id = l.manager_id and o.id = l.order_id
             where l.product_id = $1 and o.cancelled_at is null",
        )
        .bind(id)
        .fetch_one(&db)
        .await
        .unwrap();
        assert_eq!(
            i64::from(app.stock(product).await),
            start + adjusted - sold,
            "{product}"
        );
    }
    app.stop().await;
}

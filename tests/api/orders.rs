//! `POST /api/orders/process`: totals, stock, refusals and their precedence,
//! and the rows an order leaves.

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{TestApp, error_of, spawn_app};

const ORDERS: &str = "/api/orders/process";

/// An order body for `mgr_123`'s customer `cust_456` with these lines.
fn order(lines: Value) -> Value {
    json!({
        "manager_id": "mgr_123",
        "customer": {"id": "cust_456", "email": "customer@example.com"},
        "products": lines,
    })
}

/// POSTs an order and returns its status and body text.
async fn place(app: &TestApp, body: Value) -> (u16, String) {
    let response = app.post(ORDERS, body).await;
    (response.status().as_u16(), response.text().await.unwrap())
}

#[sqlx::test]
async fn the_briefs_order_is_processed_with_the_exact_total_and_takes_the_stock(db: PgPool) {
    let app = spawn_app(db).await;
    let beans = app.seed("mgr_123", "Premium Coffee Beans", 15.99, 100).await;
    let mug = app.seed("mgr_123", "Ceramic Coffee Mug", 12.99, 50).await;

    let (status, body) = place(
        &app,
        order(json!([{"product_id": beans, "quantity": 2}, {"product_id": mug, "quantity": 1}])),
    )
    .await;

    assert_eq!(status, 200);
    assert_eq!(
        body,
        r#"{"order_id":"ord_001","status":"processed","total_amount":44.97}"#
    );
    assert_eq!(app.stock(&beans).await, 98);
    assert_eq!(app.stock(&mug).await, 49);
}

#[sqlx::test]
async fn totals_are_exact_decimals_never_float_sums(db: PgPool) {
    let app = spawn_app(db).await;
    let dime = app.seed("mgr_123", "Dime Candy", 0.10, 100).await;
    let book = app.seed("mgr_123", "Book", 19.99, 100).await;
    let round = app.seed("mgr_123", "Round", 0.5, 100).await;

    let dimes = place(&app, order(json!([{"product_id": dime, "quantity": 3}]))).await;
    let books = place(&app, order(json!([{"product_id": book, "quantity": 3}]))).await;
    let whole = place(&app, order(json!([{"product_id": round, "quantity": 4}]))).await;

    assert_eq!(
        dimes,
        (
            200,
            r#"{"order_id":"ord_001","status":"processed","total_amount":0.3}"#.into()
        )
    );
    assert_eq!(
        books,
        (
            200,
            r#"{"order_id":"ord_002","status":"processed","total_amount":59.97}"#.into()
        )
    );
    assert_eq!(
        whole,
        (
            200,
            r#"{"order_id":"ord_003","status":"processed","total_amount":2}"#.into()
        )
    );
    let totals: Vec<String> = sqlx::query_scalar("select total_amount::text from customer_order order by id")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(totals, ["0.30", "59.97", "2.00"]);
}

#[sqlx::test]
async fn a_large_order_total_is_exact(db: PgPool) {
    let app = spawn_app(db).await;
    let dear = app.seed("mgr_123", "Dear", 999_999.99, 1_000_000_000).await;

    let (status, body) = place(&app, order(json!([{"product_id": dear, "quantity": 1_000_000}]))).await;

    assert_eq!(status, 200);
    assert_eq!(
        body,
        r#"{"order_id":"ord_001","status":"processed","total_amount":999999990000}"#
    );
}

#[sqlx::test]
async fn ordering_exactly_the_stock_leaves_zero_and_the_product_is_then_out_of_stock(db: PgPool) {
    let app = spawn_app(db).await;
    let mug = app.seed("mgr_123", "Mug", 12.99, 3).await;

    let (status, body) = place(&app, order(json!([{"product_id": mug, "quantity": 3}]))).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(app.stock(&mug).await, 0);
    let out: Value = app
        .get("/api/inventory/products?manager_id=mgr_123&status=out_of_stock")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        out,
        json!({"products": [{"id": mug, "name": "Mug", "price": 12.99, "quantity": 0}]})
    );
    let in_stock: Value = app
        .get("/api/inventory/products?manager_id=mgr_123&status=in_stock")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(in_stock, json!({"products": []}));
}

#[sqlx::test]
async fn ordering_more_than_in_stock_is_a_conflict_and_changes_nothing(db: PgPool) {
    let app = spawn_app(db).await;
    let beans = app.seed("mgr_123", "Premium Coffee Beans", 15.99, 2).await;
    let before = app.snapshot().await;

    let response = app
        .post(ORDERS, order(json!([{"product_id": beans, "quantity": 5}])))
        .await;

    let (status, error) = error_of(response).await;
    assert_eq!(status, 409);
    assert_eq!(error["code"], "INSUFFICIENT_STOCK");
    assert_eq!(
        error["details"],
        json!({"products[0].quantity": "requested 5, available 2"})
    );
    assert_eq!(app.stock(&beans).await, 2);
    assert_eq!(app.snapshot().await, before);
}

#[sqlx::test]
async fn every_short_line_is_listed_and_the_lines_with_enough_stock_are_not_sold(db: PgPool) {
    let app = spawn_app(db).await;
    let a = app.seed("mgr_123", "A", 1.0, 2).await;
    let b = app.seed("mgr_123", "B", 1.0, 100).await;
    let c = app.seed("mgr_123", "C", 1.0, 0).await;
    let before = app.snapshot().await;

    let response = app
        .post(
            ORDERS,
            order(json!([
                {"product_id": a, "quantity": 5},
                {"product_id": b, "quantity": 10},
                {"product_id": c, "quantity": 1}])),
        )
        .await;

    let (status, error) = error_of(response).await;
    assert_eq!(status, 409);
    assert_eq!(error["code"], "INSUFFICIENT_STOCK");
    assert_eq!(
        error["details"],
        json!({
            "products[0].quantity": "requested 5, available 2",
            "products[2].quantity": "requested 1, available 0"})
    );
    assert_eq!(app.snapshot().await, before);
}

#[sqlx::test]
async fn ordering_a_product_with_no_stock_is_insufficient_stock(db: PgPool) {
    let app = spawn_app(db).await;
    let empty = app.seed("mgr_123", "Empty", 3.0, 0).await;
    let before = app.snapshot().await;

    let response = app
        .post(ORDERS, order(json!([{"product_id": empty, "quantity": 1}])))
        .await;

    let (status, error) = error_of(response).await;
    assert_eq!(status, 409);
    assert_eq!(error["code"], "INSUFFICIENT_STOCK");
    assert_eq!(
        error["details"],
        json!({"products[0].quantity": "requested 1, available 0"})
    );
    assert_eq!(app.snapshot().await, before);
}

#[sqlx::test]
async fn ordering_a_discontinued_product_is_a_conflict_even_with_stock(db: PgPool) {
    let app = spawn_app(db).await;
    let old = app.seed("mgr_123", "Old", 3.0, 50).await;
    let fine = app.seed("mgr_123", "Fine", 3.0, 50).await;
    app.discontinue("mgr_123", &old).await;
    let before = app.snapshot().await;

    let response = app
        .post(
            ORDERS,
            order(json!([{"product_id": fine, "quantity": 1}, {"product_id": old, "quantity": 1}])),
        )
        .await;

    let (status, error) = error_of(response).await;
    assert_eq!(status, 409);
    assert_eq!(error["code"], "PRODUCT_DISCONTINUED");
    assert_eq!(error["details"], json!({"products[1].product_id": "is discontinued"}));
    assert_eq!(app.snapshot().await, before);
}

#[sqlx::test]
async fn not_found_beats_discontinued_which_beats_short_stock_and_every_such_line_is_listed(db: PgPool) {
    let app = spawn_app(db).await;
    let short = app.seed("mgr_123", "Short", 1.0, 1).await;
    let old = app.seed("mgr_123", "Old", 1.0, 10).await;
    let older = app.seed("mgr_123", "Older", 1.0, 0).await;
    let plenty = app.seed("mgr_123", "Plenty", 1.0, 10).await;
    app.discontinue("mgr_123", &old).await;
    app.discontinue("mgr_123", &older).await;
    let before = app.snapshot().await;

    let all_problems = app
        .post(
            ORDERS,
            order(json!([
                {"product_id": short, "quantity": 2},
                {"product_id": old, "quantity": 1},
                {"product_id": "prod_999", "quantity": 1},
                {"product_id": older, "quantity": 1},
                {"product_id": "banana", "quantity": 1},
                {"product_id": plenty, "quantity": 1}])),
        )
        .await;
    let without_missing = app
        .post(
            ORDERS,
            order(json!([
                {"product_id": short, "quantity": 2},
                {"product_id": old, "quantity": 1},
                {"product_id": older, "quantity": 1},
                {"product_id": plenty, "quantity": 1}])),
        )
        .await;
    let only_short = app
        .post(
            ORDERS,
            order(json!([
                {"product_id": plenty, "quantity": 11},
                {"product_id": short, "quantity": 2}])),
        )
        .await;

    let (status, error) = error_of(all_problems).await;
    assert_eq!((status, error["code"].as_str()), (404, Some("PRODUCT_NOT_FOUND")));
    assert_eq!(
        error["details"],
        json!({
            "products[2].product_id": "not a product of this manager",
            "products[4].product_id": "not a product of this manager"})
    );
    let (status, error) = error_of(without_missing).await;
    assert_eq!((status, error["code"].as_str()), (409, Some("PRODUCT_DISCONTINUED")));
    assert_eq!(
        error["details"],
        json!({
            "products[1].product_id": "is discontinued",
            "products[2].product_id": "is discontinued"})
    );
    let (status, error) = error_of(only_short).await;
    assert_eq!((status, error["code"].as_str()), (409, Some("INSUFFICIENT_STOCK")));
    assert_eq!(
        error["details"],
        json!({
            "products[0].quantity": "requested 11, available 10",
            "products[1].quantity": "requested 2, available 1"})
    );
    assert_eq!(app.snapshot().await, before);
}

#[sqlx::test]
async fn another_managers_product_is_not_found_and_keeps_its_stock(db: PgPool) {
    let app = spawn_app(db).await;
    let mine = app.seed("mgr_123", "Mine", 1.0, 10).await;
    let theirs = app.seed("mgr_other", "Theirs", 1.0, 10).await;
    let before = app.snapshot().await;

    let response = app
        .post(
            ORDERS,
            order(json!([{"product_id": mine, "quantity": 1}, {"product_id": theirs, "quantity": 1}])),
        )
        .await;

    let (status, error) = error_of(response).await;
    assert_eq!(status, 404);
    assert_eq!(error["code"], "PRODUCT_NOT_FOUND");
    assert_eq!(
        error["details"],
        json!({"products[1].product_id": "not a product of this manager"})
    );
    assert_eq!(app.stock(&theirs).await, 10);
    assert_eq!(app.snapshot().await, before);
}

#[sqlx::test]
async fn an_order_stores_its_lines_at_the_prices_of_the_moment(db: PgPool) {
    let app = spawn_app(db).await;
    let beans = app.seed("mgr_123", "Premium Coffee Beans", 15.99, 100).await;
    let mug = app.seed("mgr_123", "Ceramic Coffee Mug", 12.99, 50).await;
    let (status, _) = place(
        &app,
        order(json!([{"product_id": mug, "quantity": 1}, {"product_id": beans, "quantity": 2}])),
    )
    .await;
    assert_eq!(status, 200);

    let repriced = app
        .post(
            "/api/inventory/products",
            json!({"manager_id": "mgr_123", "products": [
                {"name": "Premium Coffee Beans", "price": 20, "quantity": 98}]}),
        )
        .await;
    assert_eq!(repriced.status(), 201);
    let (status, second) = place(&app, order(json!([{"product_id": beans, "quantity": 1}]))).await;

    assert_eq!(status, 200);
    assert_eq!(
        second,
        r#"{"order_id":"ord_002","status":"processed","total_amount":20}"#
    );
    let orders: Vec<(String, i64, String, String, String)> = sqlx::query_as(
        "select manager_id, id, customer_id, customer_email, total_amount::text from customer_order order by id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        orders,
        [
            (
                "mgr_123".into(),
                1,
                "cust_456".into(),
                "customer@example.com".into(),
                "44.97".into()
            ),
            (
                "mgr_123".into(),
                2,
                "cust_456".into(),
                "customer@example.com".into(),
                "20.00".into()
            ),
        ]
    );
    let lines: Vec<(i64, i32, i64, i32, String)> = sqlx::query_as(
        "select order_id, line_no, product_id, quantity, unit_price::text from order_line order by order_id, line_no",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        lines,
        [
            (1, 1, 2, 1, "12.99".into()),
            (1, 2, 1, 2, "15.99".into()),
            (2, 1, 1, 1, "20.00".into()),
        ]
    );
}

#[sqlx::test]
async fn a_product_listed_twice_is_a_bad_request_and_changes_nothing(db: PgPool) {
    let app = spawn_app(db).await;
    let mug = app.seed("mgr_123", "Mug", 1.0, 10).await;
    let before = app.snapshot().await;

    let response = app
        .post(
            ORDERS,
            order(json!([{"product_id": mug, "quantity": 1}, {"product_id": mug, "quantity": 2}])),
        )
        .await;

    let (status, error) = error_of(response).await;
    assert_eq!(status, 400);
    assert_eq!(error["code"], "INVALID_REQUEST");
    assert_eq!(
        error["details"],
        json!({"products[1].product_id": format!("{mug} is also in products[0]")})
    );
    assert_eq!(app.snapshot().await, before);
}

#[sqlx::test]
async fn an_invalid_customer_email_is_a_bad_request_and_changes_nothing(db: PgPool) {
    let app = spawn_app(db).await;
    let mug = app.seed("mgr_123", "Mug", 1.0, 10).await;
    let before = app.snapshot().await;
    let long = format!("{}@example.com", "a".repeat(250));

    for email in [
        "not-an-email",
        "a@",
        "@example.com",
        "",
        "a b@example.com",
        long.as_str(),
    ] {
        let response = app
            .post(
                ORDERS,
                json!({"manager_id": "mgr_123", "customer": {"id": "cust_456", "email": email},
                       "products": [{"product_id": mug, "quantity": 1}]}),
            )
            .await;

        let (status, error) = error_of(response).await;
        assert_eq!(status, 400, "{email}");
        assert_eq!(error["code"], "INVALID_REQUEST", "{email}");
        assert_eq!(
            error["details"],
            json!({"customer.email": "must be a valid email address"}),
            "{email}"
        );
    }
    assert_eq!(app.snapshot().await, before);
}

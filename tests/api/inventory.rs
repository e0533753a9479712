//! `/api/inventory/...`: adding and updating products, listing them by
//! status and page, and discontinuing them.

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{TestApp, error_of, spawn_app};

const PRODUCTS: &str = "/api/inventory/products";
const DISCONTINUE: &str = "/api/inventory/discontinue";

/// A product as the API shows it.
fn product(id: &str, name: &str, price: Value, quantity: i64) -> Value {
    json!({"id": id, "name": name, "price": price, "quantity": quantity})
}

/// A product row as stored: name, price as text, quantity, discontinued.
async fn stored(app: &TestApp, id: &str) -> (String, String, i32, bool) {
    let number: i64 = id.trim_start_matches("prod_").parse().unwrap();
    sqlx::query_as("select name, price::text, quantity, discontinued_at is not null from product where id = $1")
        .bind(number)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

async fn product_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from product")
        .fetch_one(&app.db)
        .await
        .unwrap()
}

/// GETs a list and returns its status, `Link` header and JSON body.
async fn list(app: &TestApp, path_and_query: &str) -> (u16, Option<String>, Value) {
    let response = app.get(path_and_query).await;
    let status = response.status().as_u16();
    let link = response.headers().get("link").map(|v| v.to_str().unwrap().to_owned());
    (status, link, response.json().await.unwrap())
}

/// The URL path of a `Link: <...>; rel="next"` header.
fn next_page(link: &str) -> &str {
    link.strip_prefix('<')
        .and_then(|rest| rest.strip_suffix(">; rel=\"next\""))
        .unwrap_or_else(|| panic!("not a next link: {link}"))
}

#[sqlx::test]
async fn adding_products_returns_201_and_the_exact_products_in_request_order(db: PgPool) {
    let app = spawn_app(db).await;

    let response = app
        .post(
            PRODUCTS,
            json!({"manager_id": "mgr_123", "products": [
                {"name": "Premium Coffee Beans", "price": 15.99, "quantity": 100},
                {"name": "Ceramic Coffee Mug", "price": 12.99, "quantity": 50}]}),
        )
        .await;

    assert_eq!(response.status(), 201);
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"products":[{"id":"prod_001","name":"Premium Coffee Beans","price":15.99,"quantity":100},{"id":"prod_002","name":"Ceramic Coffee Mug","price":12.99,"quantity":50}]}"#
    );
    assert_eq!(
        stored(&app, "prod_001").await,
        ("Premium Coffee Beans".into(), "15.99".into(), 100, false)
    );
    assert_eq!(
        stored(&app, "prod_002").await,
        ("Ceramic Coffee Mug".into(), "12.99".into(), 50, false)
    );
}

#[sqlx::test]
async fn a_mixed_batch_answers_in_request_order_not_id_order(db: PgPool) {
    let app = spawn_app(db).await;
    app.seed("mgr_123", "Tea", 3.5, 10).await;
    app.seed("mgr_123", "Mug", 7.0, 5).await;

    let response = app
        .post(
            PRODUCTS,
            json!({"manager_id": "mgr_123", "products": [
                {"name": "mug", "price": 8, "quantity": 6},
                {"name": "Kettle", "price": 30.1, "quantity": 2},
                {"id": "prod_001", "name": "Green Tea", "price": 4.25, "quantity": 11}]}),
        )
        .await;

    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"products": [
            product("prod_002", "mug", json!(8), 6),
            product("prod_003", "Kettle", json!(30.1), 2),
            product("prod_001", "Green Tea", json!(4.25), 11)]})
    );
    assert_eq!(product_count(&app).await, 3);
}

#[sqlx::test]
async fn an_item_named_like_an_existing_product_updates_it_and_sets_its_quantity(db: PgPool) {
    let app = spawn_app(db).await;
    let beans = app.seed("mgr_123", "Premium Coffee Beans", 15.99, 100).await;

    let response = app
        .post(
            PRODUCTS,
            json!({"manager_id": "mgr_123", "products": [
                {"name": "  premium COFFEE beans \t", "price": 14.5, "quantity": 7}]}),
        )
        .await;

    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"products": [product(&beans, "premium COFFEE beans", json!(14.5), 7)]})
    );
    assert_eq!(product_count(&app).await, 1);
    assert_eq!(
        stored(&app, &beans).await,
        ("premium COFFEE beans".into(), "14.50".into(), 7, false)
    );
}

#[sqlx::test]
async fn names_match_case_insensitively_beyond_ascii(db: PgPool) {
    let app = spawn_app(db).await;
    let eclair = app.seed("mgr_123", "Éclair au Café", 4.5, 10).await;

    let response = app
        .post(
            PRODUCTS,
            json!({"manager_id": "mgr_123", "products": [{"name": "ÉCLAIR AU CAFÉ", "price": 5, "quantity": 3}]}),
        )
        .await;

    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"products": [product(&eclair, "ÉCLAIR AU CAFÉ", json!(5), 3)]})
    );
    assert_eq!(product_count(&app).await, 1);
}

#[sqlx::test]
async fn the_same_name_for_another_manager_is_another_product(db: PgPool) {
    let app = spawn_app(db).await;
    let mine = app.seed("mgr_123", "Mug", 5.0, 1).await;

    let theirs = app.seed("mgr_other", "Mug", 6.0, 2).await;

    assert_ne!(mine, theirs);
    assert_eq!(stored(&app, &mine).await, ("Mug".into(), "5.00".into(), 1, false));
    assert_eq!(stored(&app, &theirs).await, ("Mug".into(), "6.00".into(), 2, false));
}

#[sqlx::test]
async fn an_item_with_an_id_renames_that_product(db: PgPool) {
    let app = spawn_app(db).await;
    let mug = app.seed("mgr_123", "Ceramic Coffee Mug", 12.99, 50).await;

    let response = app
        .post(
            PRODUCTS,
            json!({"manager_id": "mgr_123", "products": [
                {"id": mug, "name": "Porcelain Mug", "price": 13.99, "quantity": 40}]}),
        )
        .await;

    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"products": [product(&mug, "Porcelain Mug", json!(13.99), 40)]})
    );
    assert_eq!(product_count(&app).await, 1);
    assert_eq!(
        stored(&app, &mug).await,
        ("Porcelain Mug".into(), "13.99".into(), 40, false)
    );
}

#[sqlx::test]
async fn updating_a_discontinued_product_keeps_it_discontinued(db: PgPool) {
    let app = spawn_app(db).await;
    let beans = app.seed("mgr_123", "Premium Coffee Beans", 15.99, 100).await;
    app.discontinue("mgr_123", &beans).await;

    let response = app
        .post(
            PRODUCTS,
            json!({"manager_id": "mgr_123", "products": [
                {"name": "Premium Coffee Beans", "price": 16.99, "quantity": 5}]}),
        )
        .await;

    assert_eq!(response.status(), 201);
    assert_eq!(
        stored(&app, &beans).await,
        ("Premium Coffee Beans".into(), "16.99".into(), 5, true)
    );
    let (_, _, discontinued) = list(&app, "/api/inventory/products?manager_id=mgr_123&status=discontinued").await;
    assert_eq!(
        discontinued,
        json!({"products": [product(&beans, "Premium Coffee Beans", json!(16.99), 5)]})
    );
    let (_, _, in_stock) = list(&app, "/api/inventory/products?manager_id=mgr_123&status=in_stock").await;
    assert_eq!(in_stock, json!({"products": []}));
}

#[sqlx::test]
async fn an_id_that_is_not_the_managers_product_is_not_found_and_the_batch_changes_nothing(db: PgPool) {
    let app = spawn_app(db).await;
    let mine = app.seed("mgr_123", "Mug", 5.0, 1).await;
    let theirs = app.seed("mgr_other", "Tea", 6.0, 2).await;
    let before = app.snapshot().await;

    let response = app
        .post(
            PRODUCTS,
            json!({"manager_id": "mgr_123", "products": [
                {"name": "Brand New", "price": 1, "quantity": 1},
                {"name": "Mug", "price": 9, "quantity": 9},
                {"id": theirs, "name": "Stolen", "price": 1, "quantity": 1},
                {"id": "prod_999", "name": "Ghost", "price": 1, "quantity": 1},
                {"id": "banana", "name": "Fruit", "price": 1, "quantity": 1}]}),
        )
        .await;

    let (status, error) = error_of(response).await;
    assert_eq!(status, 404);
    assert_eq!(error["code"], "PRODUCT_NOT_FOUND");
    assert_eq!(
        error["details"],
        json!({
            "products[2].id": format!("{theirs} is not a product of this manager"),
            "products[3].id": "prod_999 is not a product of this manager",
            "products[4].id": "this id is not a product of this manager"})
    );
    assert_eq!(app.snapshot().await, before);
    assert_eq!(stored(&app, &mine).await, ("Mug".into(), "5.00".into(), 1, false));
}

#[sqlx::test]
async fn two_items_resolving_to_one_product_are_a_bad_request_and_change_nothing(db: PgPool) {
    let app = spawn_app(db).await;
    let mug = app.seed("mgr_123", "Mug", 5.0, 1).await;
    let before = app.snapshot().await;

    let response = app
        .post(
            PRODUCTS,
            json!({"manager_id": "mgr_123", "products": [
                {"id": mug, "name": "Big Mug", "price": 6, "quantity": 2},
                {"name": "MUG", "price": 7, "quantity": 3}]}),
        )
        .await;

    let (status, error) = error_of(response).await;
    assert_eq!(status, 400);
    assert_eq!(error["code"], "INVALID_REQUEST");
    assert_eq!(
        error["details"],
        json!({"products[1]": format!("{mug} is also updated by products[0]")})
    );
    assert_eq!(app.snapshot().await, before);
}

#[sqlx::test]
async fn two_items_with_the_same_name_are_a_bad_request_and_change_nothing(db: PgPool) {
    let app = spawn_app(db).await;
    app.seed("mgr_123", "Tea", 5.0, 1).await;
    let before = app.snapshot().await;

    let response = app
        .post(
            PRODUCTS,
            json!({"manager_id": "mgr_123", "products": [
                {"name": "Kettle", "price": 6, "quantity": 2},
                {"name": " kettle ", "price": 7, "quantity": 3}]}),
        )
        .await;

    let (status, error) = error_of(response).await;
    assert_eq!(status, 400);
    assert_eq!(error["code"], "INVALID_REQUEST");
    assert_eq!(
        error["details"],
        json!({"products[1].name": "products[0] has the same name"})
    );
    assert_eq!(app.snapshot().await, before);
}

#[sqlx::test]
async fn renaming_onto_another_products_name_is_a_conflict_and_changes_nothing(db: PgPool) {
    let app = spawn_app(db).await;
    let mug = app.seed("mgr_123", "Mug", 5.0, 1).await;
    let tea = app.seed("mgr_123", "Tea", 6.0, 2).await;
    let before = app.snapshot().await;

    let response = app
        .post(
            PRODUCTS,
            json!({"manager_id": "mgr_123", "products": [
                {"name": "Kettle", "price": 30, "quantity": 1},
                {"id": mug, "name": "TEA", "price": 5, "quantity": 1}]}),
        )
        .await;

    let (status, error) = error_of(response).await;
    assert_eq!(status, 409);
    assert_eq!(error["code"], "PRODUCT_NAME_TAKEN");
    assert_eq!(
        error["details"],
        json!({"products[1].name": format!("{tea} already has this name")})
    );
    assert_eq!(app.snapshot().await, before);
}

#[sqlx::test]
async fn products_are_listed_by_status_in_id_order_with_nothing_else_in_the_body(db: PgPool) {
    let app = spawn_app(db).await;
    let response = app
        .post(
            PRODUCTS,
            json!({"manager_id": "mgr_123", "products": [
                {"name": "Beans", "price": 15.99, "quantity": 100},
                {"name": "Empty Jar", "price": 2.5, "quantity": 0},
                {"name": "Old Mug", "price": 12.99, "quantity": 3},
                {"name": "Old Jar", "price": 1, "quantity": 0},
                {"name": "Filter", "price": 0.1, "quantity": 1}]}),
        )
        .await;
    assert_eq!(response.status(), 201);
    app.discontinue("mgr_123", "prod_003").await;
    app.discontinue("mgr_123", "prod_004").await;
    let beans = product("prod_001", "Beans", json!(15.99), 100);
    let empty_jar = product("prod_002", "Empty Jar", json!(2.5), 0);
    let old_mug = product("prod_003", "Old Mug", json!(12.99), 3);
    let old_jar = product("prod_004", "Old Jar", json!(1), 0);
    let filter = product("prod_005", "Filter", json!(0.1), 1);

    let in_stock = list(&app, "/api/inventory/products?status=in_stock&manager_id=mgr_123").await;
    let out_of_stock = list(&app, "/api/inventory/products?status=out_of_stock&manager_id=mgr_123").await;
    let discontinued = list(&app, "/api/inventory/products?status=discontinued&manager_id=mgr_123").await;
    let all = list(&app, "/api/inventory/products?manager_id=mgr_123").await;

    assert_eq!(
        in_stock,
        (200, None, json!({"products": [beans.clone(), filter.clone()]}))
    );
    assert_eq!(out_of_stock, (200, None, json!({"products": [empty_jar.clone()]})));
    assert_eq!(
        discontinued,
        (200, None, json!({"products": [old_mug.clone(), old_jar.clone()]}))
    );
    assert_eq!(
        all,
        (
            200,
            None,
            json!({"products": [beans, empty_jar, old_mug, old_jar, filter]})
        )
    );
}

#[sqlx::test]
async fn the_briefs_list_is_returned_as_exact_json_text(db: PgPool) {
    let app = spawn_app(db).await;
    app.seed("mgr_123", "Premium Coffee Beans", 15.99, 100).await;
    app.seed("mgr_123", "Ceramic Coffee Mug", 12.99, 50).await;

    let response = app
        .get("/api/inventory/products?status=in_stock&manager_id=mgr_123")
        .await;

    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"products":[{"id":"prod_001","name":"Premium Coffee Beans","price":15.99,"quantity":100},{"id":"prod_002","name":"Ceramic Coffee Mug","price":12.99,"quantity":50}]}"#
    );
}

#[sqlx::test]
async fn a_list_reflects_a_write_made_after_it_was_read(db: PgPool) {
    let app = spawn_app(db).await;
    let mug = app.seed("mgr_123", "Mug", 5.0, 1).await;
    let (_, _, first) = list(&app, "/api/inventory/products?manager_id=mgr_123&status=in_stock").await;
    assert_eq!(first, json!({"products": [product(&mug, "Mug", json!(5), 1)]}));

    app.discontinue("mgr_123", &mug).await;

    let (_, _, second) = list(&app, "/api/inventory/products?manager_id=mgr_123&status=in_stock").await;
    assert_eq!(second, json!({"products": []}));
}

#[sqlx::test]
async fn pages_follow_the_next_link_until_nothing_remains(db: PgPool) {
    let app = spawn_app(db).await;
    for i in 1..=5 {
        app.seed("mgr_123", &format!("Mine {i}"), 1.0, i).await;
        app.seed("mgr_other", &format!("Theirs {i}"), 1.0, i).await;
    }
    // Mine are the odd ids: prod_001, prod_003, ..., prod_009.

    let (status, link, first) = list(&app, "/api/inventory/products?manager_id=mgr_123&limit=2").await;

    assert_eq!(status, 200);
    let ids = |body: &Value| -> Vec<String> {
        body["products"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&first), ["prod_001", "prod_003"]);
    let link = link.expect("a next link while more remain");
    assert_eq!(
        link,
        r#"</api/inventory/products?manager_id=mgr_123&limit=2&after=prod_003>; rel="next""#
    );
    let (status, link, second) = list(&app, next_page(&link)).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&second), ["prod_005", "prod_007"]);
    let link = link.expect("a next link while more remain");
    let (status, link, third) = list(&app, next_page(&link)).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&third), ["prod_009"]);
    assert_eq!(link, None);
}

#[sqlx::test]
async fn a_page_that_ends_exactly_at_the_last_product_has_no_next_link(db: PgPool) {
    let app = spawn_app(db).await;
    for i in 1..=4 {
        app.seed("mgr_123", &format!("P{i}"), 1.0, i).await;
    }

    let (_, full_link, full) = list(&app, "/api/inventory/products?manager_id=mgr_123&limit=4").await;
    let (_, after_link, after) = list(
        &app,
        "/api/inventory/products?manager_id=mgr_123&limit=3&after=prod_001",
    )
    .await;

    assert_eq!(full["products"].as_array().unwrap().len(), 4);
    assert_eq!(full_link, None);
    assert_eq!(
        after,
        json!({"products": [
            product("prod_002", "P2", json!(1), 2),
            product("prod_003", "P3", json!(1), 3),
            product("prod_004", "P4", json!(1), 4)]})
    );
    assert_eq!(after_link, None);
}

#[sqlx::test]
async fn the_next_link_keeps_the_status_filter(db: PgPool) {
    let app = spawn_app(db).await;
    for i in 1..=4 {
        app.seed("mgr_123", &format!("In {i}"), 1.0, 1).await;
        app.seed("mgr_123", &format!("Out {i}"), 1.0, 0).await;
    }

    let (_, link, first) = list(
        &app,
        "/api/inventory/products?manager_id=mgr_123&status=out_of_stock&limit=3",
    )
    .await;

    assert_eq!(
        first["products"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["prod_002", "prod_004", "prod_006"]
    );
    let link = link.expect("a next link");
    assert!(link.contains("status=out_of_stock"), "{link}");
    let (_, link, rest) = list(&app, next_page(&link)).await;
    assert_eq!(rest, json!({"products": [product("prod_008", "Out 4", json!(1), 0)]}));
    assert_eq!(link, None);
}

#[sqlx::test]
async fn another_managers_products_are_never_listed(db: PgPool) {
    let app = spawn_app(db).await;
    app.seed("mgr_other", "Theirs", 2.0, 5).await;
    let mine = app.seed("mgr_123", "Mine", 3.0, 0).await;

    let all = list(&app, "/api/inventory/products?manager_id=mgr_123").await;
    let in_stock = list(&app, "/api/inventory/products?manager_id=mgr_123&status=in_stock").await;

    assert_eq!(
        all,
        (200, None, json!({"products": [product(&mine, "Mine", json!(3), 0)]}))
    );
    assert_eq!(in_stock, (200, None, json!({"products": []})));
}

#[sqlx::test]
async fn an_unknown_manager_gets_an_empty_list(db: PgPool) {
    let app = spawn_app(db).await;
    app.seed("mgr_123", "Mug", 5.0, 1).await;

    let response = app.get("/api/inventory/products?manager_id=nobody").await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), r#"{"products":[]}"#);
}

#[sqlx::test]
async fn bad_list_queries_are_bad_requests_naming_each_bad_parameter(db: PgPool) {
    let app = spawn_app(db).await;
    app.seed("mgr_123", "Mug", 5.0, 1).await;
    let cases: [(&str, &[&str]); 11] = [
        ("manager_id=mgr_123&limit=0", &["limit"]),
        ("manager_id=mgr_123&limit=1001", &["limit"]),
        ("manager_id=mgr_123&limit=x", &["limit"]),
        ("manager_id=mgr_123&limit=-1", &["limit"]),
        ("manager_id=mgr_123&status=gone", &["status"]),
        ("manager_id=mgr_123&status=IN_STOCK", &["status"]),
        ("manager_id=mgr_123&after=banana", &["after"]),
        ("manager_id=mgr_123&after=prod_1", &["after"]),
        ("status=in_stock", &["manager_id"]),
        ("manager_id=bad%20id", &["manager_id"]),
        (
            "status=gone&limit=0&after=x",
            &["after", "limit", "manager_id", "status"],
        ),
    ];

    for (query, keys) in cases {
        let response = app.get(&format!("{PRODUCTS}?{query}")).await;

        let (status, error) = error_of(response).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(error["code"], "INVALID_REQUEST", "{query}");
        let got: Vec<&str> = error["details"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(got, keys, "{query}");
    }
    let response = app.get(PRODUCTS).await;
    let (status, error) = error_of(response).await;
    assert_eq!((status, &error["details"]["manager_id"]), (400, &json!("is required")));
}

#[sqlx::test]
async fn the_largest_limit_is_accepted(db: PgPool) {
    let app = spawn_app(db).await;
    let mug = app.seed("mgr_123", "Mug", 5.0, 1).await;

    let (status, link, body) = list(&app, "/api/inventory/products?manager_id=mgr_123&limit=1000").await;

    assert_eq!(status, 200);
    assert_eq!(link, None);
    assert_eq!(body, json!({"products": [product(&mug, "Mug", json!(5), 1)]}));
}

#[sqlx::test]
async fn discontinuing_answers_204_with_an_empty_body_and_again_204(db: PgPool) {
    let app = spawn_app(db).await;
    let beans = app.seed("mgr_123", "Premium Coffee Beans", 15.99, 100).await;

    let first = app
        .post(DISCONTINUE, json!({"manager_id": "mgr_123", "product_id": beans}))
        .await;
    assert_eq!(first.status(), 204);
    assert_eq!(first.text().await.unwrap(), "");
    let discontinued_at: Option<String> = sqlx::query_scalar("select discontinued_at::text from product where id = 1")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(discontinued_at.is_some());

    let again = app
        .post(DISCONTINUE, json!({"manager_id": "mgr_123", "product_id": beans}))
        .await;

    assert_eq!(again.status(), 204);
    assert_eq!(again.text().await.unwrap(), "");
    let still: Option<String> = sqlx::query_scalar("select discontinued_at::text from product where id = 1")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(still, discontinued_at, "the first discontinuation time is kept");
    assert_eq!(
        stored(&app, &beans).await,
        ("Premium Coffee Beans".into(), "15.99".into(), 100, true)
    );
}

#[sqlx::test]
async fn discontinuing_what_is_not_the_managers_product_is_not_found_and_changes_nothing(db: PgPool) {
    let app = spawn_app(db).await;
    let theirs = app.seed("mgr_other", "Tea", 6.0, 2).await;
    app.seed("mgr_123", "Mug", 5.0, 1).await;
    let before = app.snapshot().await;
    let cases = [
        (theirs.clone(), format!("{theirs} is not a product of this manager")),
        (
            "prod_999".to_owned(),
            "prod_999 is not a product of this manager".to_owned(),
        ),
        (
            "banana".to_owned(),
            "this id is not a product of this manager".to_owned(),
        ),
        (
            "prod_1".to_owned(),
            "this id is not a product of this manager".to_owned(),
        ),
    ];

    for (product_id, why) in cases {
        let response = app
            .post(DISCONTINUE, json!({"manager_id": "mgr_123", "product_id": product_id}))
            .await;

        let (status, error) = error_of(response).await;
        assert_eq!(status, 404, "{product_id}");
        assert_eq!(error["code"], "PRODUCT_NOT_FOUND", "{product_id}");
        assert_eq!(error["details"], json!({"product_id": why}), "{product_id}");
    }
    assert_eq!(app.snapshot().await, before);
}

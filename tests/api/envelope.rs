//! The error envelope on every 4xx and 5xx, request ids, and the middleware
//! failures: panics, timeouts and a database that is gone.

use std::collections::HashSet;

use ecommerce_api::config::Settings;
use reqwest::{
    Method,
    header::{CONTENT_TYPE, HeaderValue},
};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{self, TestApp, error_of, spawn_app, spawn_app_with, spawn_app_with_test_routes};

const PRODUCTS: &str = "/api/inventory/products";
const DISCONTINUE: &str = "/api/inventory/discontinue";
const ORDERS: &str = "/api/orders/process";
const ADJUST: &str = "/api/inventory/adjustments";
const JSON: Option<&str> = Some("application/json");

/// One bad request and the error it must get.
struct Case {
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    body: String,
    status: u16,
    code: &'static str,
    /// Exactly the keys of `error.details`.
    details: &'static [&'static str],
}

fn case(
    method: Method,
    path: &str,
    content_type: Option<&'static str>,
    body: impl Into<String>,
    status: u16,
    code: &'static str,
    details: &'static [&'static str],
) -> Case {
    Case {
        method,
        path: path.to_owned(),
        content_type,
        body: body.into(),
        status,
        code,
        details,
    }
}

/// A 400 for a JSON POST to `path` naming exactly these fields.
fn invalid(path: &str, body: impl Into<String>, details: &'static [&'static str]) -> Case {
    case(Method::POST, path, JSON, body, 400, "INVALID_REQUEST", details)
}

/// A 400 for a GET of the product list with this query.
fn invalid_query(query: &str, details: &'static [&'static str]) -> Case {
    case(
        Method::GET,
        &format!("{PRODUCTS}?{query}"),
        None,
        "",
        400,
        "INVALID_REQUEST",
        details,
    )
}

/// An add-products body with one item whose fields are these JSON texts.
fn product_item(name: &str, price: &str, quantity: &str) -> String {
    format!(r#"{{"manager_id":"mgr_123","products":[{{"name":{name},"price":{price},"quantity":{quantity}}}]}}"#)
}

/// An order body with this customer and these lines (JSON texts).
fn order_body(customer: &str, products: &str) -> String {
    format!(r#"{{"manager_id":"mgr_123","customer":{customer},"products":{products}}}"#)
}

const CUSTOMER: &str = r#"{"id":"cust_456","email":"customer@example.com"}"#;
const ONE_LINE: &str = r#"[{"product_id":"prod_001","quantity":1}]"#;

/// A valid JSON body of exactly `size` bytes.
fn padded_body(size: usize) -> String {
    let head = r#"{"manager_id":"mgr_123","products":[{"name":"Pad","price":1,"quantity":1}],"pad":""#;
    let tail = r#""}"#;
    format!("{head}{}{tail}", "x".repeat(size - head.len() - tail.len()))
}

fn cases() -> Vec<Case> {
    let many_products = format!(
        r#"{{"manager_id":"mgr_123","products":[{}]}}"#,
        (0..1001)
            .map(|i| format!(r#"{{"name":"p{i}","price":1,"quantity":1}}"#))
            .collect::<Vec<_>>()
            .join(",")
    );
    let many_lines = format!(
        "[{}]",
        (1..=101)
            .map(|i| format!(r#"{{"product_id":"prod_{i:03}","quantity":1}}"#))
            .collect::<Vec<_>>()
            .join(",")
    );
    let long_name = format!("\"{}\"", "n".repeat(201));
    let long_manager = format!(
        r#"{{"manager_id":"{}","products":[{{"name":"A","price":1,"quantity":1}}]}}"#,
        "m".repeat(65)
    );
    let one_mib = helpers::settings().body_limit_bytes;
    let q = "\"Beans\"";
    vec![
        // POST /api/inventory/products: the body as a whole.
        invalid(PRODUCTS, r#"{"manager_id": "mgr_123", "products": ["#, &["body"]),
        invalid(PRODUCTS, r#"{"manager_id":"mgr_123"} trailing"#, &["body"]),
        invalid(PRODUCTS, "", &["body"]),
        invalid(PRODUCTS, "[1, 2]", &["body"]),
        invalid(PRODUCTS, r#""mgr_123""#, &["body"]),
        invalid(PRODUCTS, "null", &["body"]),
        invalid(PRODUCTS, "{}", &["manager_id", "products"]),
        invalid(PRODUCTS, r#"{"manager_id":"mgr_123"}"#, &["products"]),
        invalid(
            PRODUCTS,
            r#"{"manager_id":"mgr_123","products":{"name":"A"}}"#,
            &["products"],
        ),
        invalid(PRODUCTS, r#"{"manager_id":"mgr_123","products":[]}"#, &["products"]),
        invalid(PRODUCTS, many_products, &["products"]),
        invalid(
            PRODUCTS,
            r#"{"manager_id":"mgr_123","products":["Beans"]}"#,
            &["products[0]"],
        ),
        // manager_id.
        invalid(
            PRODUCTS,
            r#"{"manager_id":123,"products":[{"name":"A","price":1,"quantity":1}]}"#,
            &["manager_id"],
        ),
        invalid(PRODUCTS, long_manager, &["manager_id"]),
        invalid(
            PRODUCTS,
            r#"{"manager_id":"mgr 123","products":[{"name":"A","price":1,"quantity":1}]}"#,
            &["manager_id"],
        ),
        invalid(
            PRODUCTS,
            r#"{"manager_id":"mgr/123","products":[{"name":"A","price":1,"quantity":1}]}"#,
            &["manager_id"],
        ),
        // Missing item fields.
        invalid(
            PRODUCTS,
            r#"{"manager_id":"mgr_123","products":[{"price":1,"quantity":1}]}"#,
            &["products[0].name"],
        ),
        invalid(
            PRODUCTS,
            r#"{"manager_id":"mgr_123","products":[{"name":"A","quantity":1}]}"#,
            &["products[0].price"],
        ),
        invalid(
            PRODUCTS,
            r#"{"manager_id":"mgr_123","products":[{"name":"A","price":1}]}"#,
            &["products[0].quantity"],
        ),
        // Wrong types.
        invalid(PRODUCTS, product_item(q, "\"15.99\"", "1"), &["products[0].price"]),
        invalid(PRODUCTS, product_item(q, "1", "true"), &["products[0].quantity"]),
        invalid(PRODUCTS, product_item(q, "1", "1.5"), &["products[0].quantity"]),
        invalid(PRODUCTS, product_item(q, "1", "1.25"), &["products[0].quantity"]),
        invalid(PRODUCTS, product_item(q, "1", "\"5\""), &["products[0].quantity"]),
        invalid(PRODUCTS, product_item("42", "1", "1"), &["products[0].name"]),
        // Out of range.
        invalid(PRODUCTS, product_item(q, "0", "1"), &["products[0].price"]),
        invalid(PRODUCTS, product_item(q, "-1", "1"), &["products[0].price"]),
        invalid(PRODUCTS, product_item(q, "1000000.01", "1"), &["products[0].price"]),
        invalid(PRODUCTS, product_item(q, "15.999", "1"), &["products[0].price"]),
        invalid(PRODUCTS, product_item(q, "1", "-1"), &["products[0].quantity"]),
        invalid(PRODUCTS, product_item(q, "1", "1000000001"), &["products[0].quantity"]),
        // Names.
        invalid(PRODUCTS, product_item("\"   \"", "1", "1"), &["products[0].name"]),
        invalid(PRODUCTS, product_item(&long_name, "1", "1"), &["products[0].name"]),
        invalid(
            PRODUCTS,
            product_item(r#""Bad\u0007Name""#, "1", "1"),
            &["products[0].name"],
        ),
        // Several bad fields at once: all listed.
        invalid(
            PRODUCTS,
            r#"{"manager_id":"bad id!","products":[{"name":" ","price":"15.99","quantity":1.5},
                {"name":"Mug","price":15.999,"quantity":-1,"id":7},"x"]}"#,
            &[
                "manager_id",
                "products[0].name",
                "products[0].price",
                "products[0].quantity",
                "products[1].id",
                "products[1].price",
                "products[1].quantity",
                "products[2]",
            ],
        ),
        // Media type and size.
        case(
            Method::POST,
            PRODUCTS,
            Some("text/plain"),
            product_item(q, "1", "1"),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            &["Content-Type"],
        ),
        case(
            Method::POST,
            PRODUCTS,
            None,
            product_item(q, "1", "1"),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            &["Content-Type"],
        ),
        case(
            Method::POST,
            PRODUCTS,
            Some("application/x-www-form-urlencoded"),
            "manager_id=mgr_123",
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            &["Content-Type"],
        ),
        case(
            Method::POST,
            PRODUCTS,
            JSON,
            padded_body(one_mib + 1),
            413,
            "PAYLOAD_TOO_LARGE",
            &["body"],
        ),
        // GET /api/inventory/products.
        invalid_query("status=in_stock", &["manager_id"]),
        invalid_query("manager_id=mgr_123&limit=0", &["limit"]),
        invalid_query("manager_id=mgr_123&limit=1001", &["limit"]),
        invalid_query("manager_id=mgr_123&limit=x", &["limit"]),
        invalid_query("manager_id=mgr_123&status=sold_out", &["status"]),
        invalid_query("manager_id=mgr_123&after=banana", &["after"]),
        invalid_query("limit=0&status=x", &["limit", "manager_id", "status"]),
        // POST /api/inventory/discontinue.
        invalid(DISCONTINUE, "{", &["body"]),
        invalid(DISCONTINUE, "[]", &["body"]),
        invalid(DISCONTINUE, "{}", &["manager_id", "product_id"]),
        invalid(DISCONTINUE, r#"{"manager_id":"mgr_123"}"#, &["product_id"]),
        invalid(
            DISCONTINUE,
            r#"{"manager_id":"mgr_123","product_id":1}"#,
            &["product_id"],
        ),
        invalid(
            DISCONTINUE,
            r#"{"manager_id":["mgr_123"],"product_id":"prod_001"}"#,
            &["manager_id"],
        ),
        case(
            Method::POST,
            DISCONTINUE,
            Some("text/plain"),
            r#"{"manager_id":"mgr_123","product_id":"prod_001"}"#,
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            &["Content-Type"],
        ),
        // POST /api/orders/process.
        invalid(ORDERS, "{\"manager_id\":", &["body"]),
        invalid(ORDERS, "42", &["body"]),
        invalid(
            ORDERS,
            format!(r#"{{"manager_id":"mgr_123","products":{ONE_LINE}}}"#),
            &["customer"],
        ),
        invalid(ORDERS, order_body("\"cust_456\"", ONE_LINE), &["customer"]),
        invalid(
            ORDERS,
            order_body(r#"{"id":"cust_456"}"#, ONE_LINE),
            &["customer.email"],
        ),
        invalid(
            ORDERS,
            order_body(r#"{"id":"cust_456","email":"not-an-email"}"#, ONE_LINE),
            &["customer.email"],
        ),
        invalid(
            ORDERS,
            order_body(r#"{"id":"cust 456","email":"customer@example.com"}"#, ONE_LINE),
            &["customer.id"],
        ),
        invalid(ORDERS, order_body(CUSTOMER, "[]"), &["products"]),
        invalid(ORDERS, order_body(CUSTOMER, &many_lines), &["products"]),
        invalid(
            ORDERS,
            order_body(CUSTOMER, r#"[{"product_id":"prod_001","quantity":0}]"#),
            &["products[0].quantity"],
        ),
        invalid(
            ORDERS,
            order_body(CUSTOMER, r#"[{"product_id":"prod_001","quantity":1000001}]"#),
            &["products[0].quantity"],
        ),
        invalid(
            ORDERS,
            order_body(CUSTOMER, r#"[{"product_id":"prod_001","quantity":"2"}]"#),
            &["products[0].quantity"],
        ),
        invalid(
            ORDERS,
            order_body(CUSTOMER, r#"[{"product_id":"prod_001","quantity":1.01}]"#),
            &["products[0].quantity"],
        ),
        invalid(
            ORDERS,
            order_body(CUSTOMER, r#"[{"quantity":1}]"#),
            &["products[0].product_id"],
        ),
        invalid(
            ORDERS,
            order_body(CUSTOMER, r#"[{"product_id":1,"quantity":1}]"#),
            &["products[0].product_id"],
        ),
        invalid(
            ORDERS,
            r#"{"manager_id":"","customer":{"id":"c d","email":"x"},
                "products":[{"product_id":1,"quantity":0},{"quantity":true}]}"#,
            &[
                "customer.email",
                "customer.id",
                "manager_id",
                "products[0].product_id",
                "products[0].quantity",
                "products[1].product_id",
                "products[1].quantity",
            ],
        ),
        case(
            Method::POST,
            ORDERS,
            None,
            order_body(CUSTOMER, ONE_LINE),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            &["Content-Type"],
        ),
        case(
            Method::POST,
            ORDERS,
            JSON,
            padded_body(one_mib + 100),
            413,
            "PAYLOAD_TOO_LARGE",
            &["body"],
        ),
        // Routes and methods.
        case(Method::GET, "/api/nope", None, "", 404, "NOT_FOUND", &[]),
        case(Method::POST, "/api/nope", JSON, "{}", 404, "NOT_FOUND", &[]),
        case(Method::GET, "/nope", None, "", 404, "NOT_FOUND", &[]),
        case(
            Method::GET,
            "/api/inventory/products/prod_001/more",
            None,
            "",
            404,
            "NOT_FOUND",
            &[],
        ),
        // Beyond the brief: product detail, adjustments, order history, cancel.
        case(
            Method::GET,
            "/api/inventory/products/prod_001",
            None,
            "",
            400,
            "INVALID_REQUEST",
            &["manager_id"],
        ),
        case(
            Method::GET,
            "/api/inventory/products/banana?manager_id=mgr_123",
            None,
            "",
            404,
            "PRODUCT_NOT_FOUND",
            &["product_id"],
        ),
        case(
            Method::GET,
            "/api/inventory/products/prod_999?manager_id=mgr_123",
            None,
            "",
            404,
            "PRODUCT_NOT_FOUND",
            &["product_id"],
        ),
        case(
            Method::POST,
            ADJUST,
            JSON,
            "{}",
            400,
            "INVALID_REQUEST",
            &["adjustments", "manager_id"],
        ),
        case(
            Method::POST,
            ADJUST,
            Some("text/plain"),
            "{}",
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            &["Content-Type"],
        ),
        case(
            Method::POST,
            ADJUST,
            JSON,
            r#"{"manager_id":"mgr_123","adjustments":[{"product_id":"prod_001","delta":0},
                {"product_id":"prod_002","delta":1.5},{"product_id":"prod_003","delta":"3"},
                {"product_id":"prod_004","delta":1000000001},{"product_id":5,"delta":1},
                {"product_id":"prod_001","delta":1}]}"#,
            400,
            "INVALID_REQUEST",
            &[
                "adjustments[0].delta",
                "adjustments[1].delta",
                "adjustments[2].delta",
                "adjustments[3].delta",
                "adjustments[4].product_id",
                "adjustments[5].product_id",
            ],
        ),
        case(
            Method::POST,
            ADJUST,
            JSON,
            r#"{"manager_id":"mgr_123","adjustments":[{"product_id":"prod_999","delta":5}]}"#,
            404,
            "PRODUCT_NOT_FOUND",
            &["adjustments[0].product_id"],
        ),
        case(
            Method::GET,
            "/api/orders",
            None,
            "",
            400,
            "INVALID_REQUEST",
            &["manager_id"],
        ),
        case(
            Method::GET,
            "/api/orders?manager_id=mgr_123&customer_id=no%20way&status=shipped&limit=0&after=ord_1",
            None,
            "",
            400,
            "INVALID_REQUEST",
            &["after", "customer_id", "limit", "status"],
        ),
        case(
            Method::GET,
            "/api/orders/ord_001?manager_id=mgr_123",
            None,
            "",
            404,
            "ORDER_NOT_FOUND",
            &["order_id"],
        ),
        case(
            Method::GET,
            "/api/orders/nope?manager_id=mgr_123",
            None,
            "",
            404,
            "ORDER_NOT_FOUND",
            &["order_id"],
        ),
        case(
            Method::GET,
            "/api/orders/ord_001",
            None,
            "",
            400,
            "INVALID_REQUEST",
            &["manager_id"],
        ),
        case(
            Method::POST,
            "/api/orders/ord_001/cancel",
            JSON,
            "{}",
            400,
            "INVALID_REQUEST",
            &["manager_id"],
        ),
        case(
            Method::POST,
            "/api/orders/ord_001/cancel",
            JSON,
            r#"{"manager_id":"mgr_123"}"#,
            404,
            "ORDER_NOT_FOUND",
            &["order_id"],
        ),
        case(
            Method::POST,
            "/api/orders/ord_001/cancel?manager_id=other",
            JSON,
            r#"{"manager_id":"mgr_123"}"#,
            400,
            "INVALID_REQUEST",
            &["manager_id"],
        ),
        case(
            Method::GET,
            "/api/orders/ord_001/cancel",
            None,
            "",
            405,
            "METHOD_NOT_ALLOWED",
            &[],
        ),
        case(Method::DELETE, PRODUCTS, None, "", 405, "METHOD_NOT_ALLOWED", &[]),
        case(
            Method::PUT,
            PRODUCTS,
            JSON,
            product_item(q, "1", "1"),
            405,
            "METHOD_NOT_ALLOWED",
            &[],
        ),
        case(Method::GET, ORDERS, None, "", 405, "METHOD_NOT_ALLOWED", &[]),
        case(
            Method::PATCH,
            ORDERS,
            JSON,
            order_body(CUSTOMER, ONE_LINE),
            405,
            "METHOD_NOT_ALLOWED",
            &[],
        ),
        case(Method::GET, DISCONTINUE, None, "", 405, "METHOD_NOT_ALLOWED", &[]),
        case(Method::POST, "/healthz", JSON, "{}", 405, "METHOD_NOT_ALLOWED", &[]),
    ]
}

#[sqlx::test]
async fn every_bad_request_gets_the_envelope_with_its_status_code_and_fields_and_changes_nothing(db: PgPool) {
    let app = spawn_app_with(
        db,
        Settings {
            rate_limit_max: 10_000,
            ..helpers::settings()
        },
        None,
    )
    .await;
    app.seed("mgr_123", "Beans", 15.99, 10).await;
    let before = app.snapshot().await;
    let cases = cases();
    assert!(cases.len() >= 40);

    for (i, case) in cases.into_iter().enumerate() {
        let what = format!("case {i}: {} {}", case.method, case.path);
        let mut request = app.client.request(case.method, app.url(&case.path));
        if let Some(content_type) = case.content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        if !case.body.is_empty() || case.content_type.is_some() {
            request = request.body(case.body);
        }

        let response = request.send().await.expect("request failed");

        assert!(
            response.headers().get("x-request-id").is_some_and(|v| !v.is_empty()),
            "{what}: no X-Request-ID"
        );
        let (status, error) = error_of(response).await;
        assert_eq!(status, case.status, "{what}: {error}");
        assert_eq!(error["code"], case.code, "{what}: {error}");
        let keys: Vec<&str> = error["details"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = case.details.to_vec();
        expected.sort_unstable();
        assert_eq!(keys, expected, "{what}: {error}");
        for why in error["details"].as_object().unwrap().values() {
            assert!(why.as_str().is_some_and(|s| !s.is_empty()), "{what}: {error}");
        }
        assert_eq!(app.snapshot().await, before, "{what}: something changed");
    }
}

#[sqlx::test]
async fn messages_of_bad_json_and_wrong_values_are_human_readable(db: PgPool) {
    let app = spawn_app(db).await;

    let response = app
        .post(
            PRODUCTS,
            json!({"manager_id": "mgr_123", "products": [{"name": "A", "price": 15.999, "quantity": 1}]}),
        )
        .await;

    let (status, error) = error_of(response).await;
    assert_eq!(status, 400);
    assert_eq!(
        error,
        json!({"code": "INVALID_REQUEST", "message": "the request has invalid fields",
               "details": {"products[0].price": "must have at most 2 decimal places"}})
    );
}

/// Every kind of response the service gives, with the request id it carried.
async fn request_ids_of_each_kind(app: &TestApp) -> Vec<(String, Option<String>)> {
    let mut seen = Vec::new();
    let mut note = |what: &str, response: &reqwest::Response| {
        seen.push((
            format!("{what} {}", response.status()),
            response
                .headers()
                .get("x-request-id")
                .map(|v| v.to_str().unwrap().to_owned()),
        ));
    };
    let add = json!({"manager_id": "mgr_123", "products": [{"name": "Beans", "price": 15.99, "quantity": 10}]});
    note("add", &app.post(PRODUCTS, add).await);
    note("list", &app.get(&format!("{PRODUCTS}?manager_id=mgr_123")).await);
    let order = json!({"manager_id": "mgr_123",
        "customer": {"id": "cust_456", "email": "customer@example.com"},
        "products": [{"product_id": "prod_001", "quantity": 1}]});
    note("order", &app.post(ORDERS, order).await);
    let discontinue = json!({"manager_id": "mgr_123", "product_id": "prod_001"});
    note("discontinue", &app.post(DISCONTINUE, discontinue).await);
    note("bad list", &app.get(PRODUCTS).await);
    note("not found", &app.get("/api/nope").await);
    note("healthz", &app.get("/healthz").await);
    note("readyz", &app.get("/readyz").await);
    note("openapi", &app.get("/openapi.json").await);
    seen
}

#[sqlx::test]
async fn every_response_carries_its_own_request_id(db: PgPool) {
    let app = spawn_app(db).await;

    let seen = request_ids_of_each_kind(&app).await;

    let statuses: Vec<&str> = seen.iter().map(|(what, _)| what.as_str()).collect();
    assert_eq!(
        statuses,
        [
            "add 201 Created",
            "list 200 OK",
            "order 200 OK",
            "discontinue 204 No Content",
            "bad list 400 Bad Request",
            "not found 404 Not Found",
            "healthz 200 OK",
            "readyz 200 OK",
            "openapi 200 OK"
        ]
    );
    for (what, id) in &seen {
        let id = id.as_deref().unwrap_or_else(|| panic!("{what}: no X-Request-ID"));
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{what}: {id}");
    }
    let distinct: HashSet<_> = seen.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(distinct.len(), seen.len());
}

#[sqlx::test]
async fn a_sane_client_request_id_is_echoed_back(db: PgPool) {
    let app = spawn_app(db).await;
    let longest = "r".repeat(128);

    for id in [
        "client-req_42.a:b",
        "0f8fad5b-d9cb-469f-a165-70867728950e",
        longest.as_str(),
    ] {
        let ok = app
            .client
            .get(app.url("/api/inventory/products?manager_id=mgr_123"))
            .header("x-request-id", id)
            .send()
            .await
            .unwrap();
        let error = app
            .client
            .post(app.url(PRODUCTS))
            .header("x-request-id", id)
            .json(&json!({"manager_id": "mgr_123"}))
            .send()
            .await
            .unwrap();

        assert_eq!(ok.status(), 200);
        assert_eq!(ok.headers()["x-request-id"], id);
        assert_eq!(error.status(), 400);
        assert_eq!(error.headers()["x-request-id"], id);
    }
}

#[sqlx::test]
async fn an_insane_client_request_id_is_replaced_by_a_generated_one(db: PgPool) {
    let app = spawn_app(db).await;
    let too_long = "a".repeat(200);
    let insane: [HeaderValue; 4] = [
        HeaderValue::from_str(&too_long).unwrap(),
        HeaderValue::from_static("has a space"),
        HeaderValue::from_bytes("réq".as_bytes()).unwrap(),
        HeaderValue::from_static(""),
    ];

    for id in insane {
        let response = app
            .client
            .get(app.url("/api/inventory/products?manager_id=mgr_123"))
            .header("x-request-id", id.clone())
            .send()
            .await
            .unwrap();

        assert_eq!(response.status(), 200);
        let echoed = response.headers()["x-request-id"].to_str().unwrap();
        assert_ne!(echoed.as_bytes(), id.as_bytes());
        assert!(uuid::Uuid::parse_str(echoed).is_ok(), "{id:?} → {echoed}");
    }
}

#[sqlx::test]
async fn a_panicking_handler_gets_a_500_envelope_that_discloses_nothing(db: PgPool) {
    let app = spawn_app_with_test_routes(
        db,
        Settings {
            request_timeout_secs: 1,
            ..helpers::settings()
        },
    )
    .await;

    let response = app.get("/api/panic").await;

    assert_eq!(response.status(), 500);
    assert!(response.headers().contains_key("x-request-id"));
    let text = response.text().await.unwrap();
    assert!(!text.contains("boom"), "{text}");
    assert!(!text.to_lowercase().contains("panic"), "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        body,
        json!({"error": {"code": "INTERNAL_ERROR", "message": "internal error", "details": {}}})
    );
    assert_eq!(app.get("/healthz").await.status(), 200, "still serving");
}

#[sqlx::test]
async fn a_request_that_outlasts_the_timeout_gets_a_504_envelope(db: PgPool) {
    let app = spawn_app_with_test_routes(
        db,
        Settings {
            request_timeout_secs: 1,
            ..helpers::settings()
        },
    )
    .await;

    let response = app.get("/api/slow").await;

    assert!(response.headers().contains_key("x-request-id"));
    let (status, error) = error_of(response).await;
    assert_eq!(status, 504);
    assert_eq!(error["code"], "TIMEOUT");
    assert_eq!(error["details"], json!({}));
}

#[sqlx::test]
async fn without_a_database_requests_get_503_and_readiness_fails_but_liveness_holds(db: PgPool) {
    let app = spawn_app(db).await;
    app.seed("mgr_123", "Beans", 15.99, 10).await;

    app.service_db.close().await;

    let add = app
        .post(
            PRODUCTS,
            json!({"manager_id": "mgr_123", "products": [{"name": "Mug", "price": 1, "quantity": 1}]}),
        )
        .await;
    let list = app.get(&format!("{PRODUCTS}?manager_id=mgr_123")).await;
    let order = app
        .post(
            ORDERS,
            json!({"manager_id": "mgr_123", "customer": {"id": "cust_456", "email": "customer@example.com"},
                   "products": [{"product_id": "prod_001", "quantity": 1}]}),
        )
        .await;
    let discontinue = app
        .post(DISCONTINUE, json!({"manager_id": "mgr_123", "product_id": "prod_001"}))
        .await;
    let ready = app.get("/readyz").await;
    let live = app.get("/healthz").await;

    for (what, response) in [
        ("add", add),
        ("list", list),
        ("order", order),
        ("discontinue", discontinue),
        ("readyz", ready),
    ] {
        let text_check = response.headers().contains_key("x-request-id");
        assert!(text_check, "{what}: no X-Request-ID");
        let (status, error) = error_of(response).await;
        assert_eq!(status, 503, "{what}: {error}");
        assert_eq!(error["code"], "SERVICE_UNAVAILABLE", "{what}");
        assert_eq!(error["details"], json!({}), "{what}");
        let message = error["message"].as_str().unwrap().to_lowercase();
        assert!(
            !message.contains("pool") && !message.contains("sqlx"),
            "{what}: {message}"
        );
    }
    assert_eq!(live.status(), 200);
    let live: Value = live.json().await.unwrap();
    assert_eq!(live, json!({"status": "ok"}));
}

#[sqlx::test]
async fn a_body_that_never_finishes_arriving_gets_a_408_envelope(db: PgPool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = spawn_app_with(
        db,
        Settings {
            request_timeout_secs: 1,
            ..helpers::settings()
        },
        None,
    )
    .await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = "POST /api/inventory/products HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 100\r\nConnection: close\r\n\r\n{\"manager_id\": ";
    socket.write_all(head.as_bytes()).await.unwrap();

    let mut reply = String::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), socket.read_to_string(&mut reply)).await;

    assert!(read.is_ok(), "answered without waiting for the rest of the body");
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains(r#""code":"REQUEST_TIMEOUT""#), "{reply}");
    assert_eq!(app.audit_rows(1).await, 1, "the request is audited");
}

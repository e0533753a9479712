//! The documentation: `/openapi.json` documents every endpoint, error and the
//! brief's examples; `/docs` is Swagger UI from assets inside the binary,
//! checked over HTTP and rendered by a real headless Chromium that can reach
//! no other host.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::spawn_app;

/// Every operation the service documents, as `(METHOD, path)`.
const OPERATIONS: [(&str, &str); 20] = [
    ("DELETE", "/api/webhooks/{webhook_id}"),
    ("GET", "/api/audit"),
    ("GET", "/api/events"),
    ("GET", "/api/webhooks"),
    ("GET", "/api/webhooks/{webhook_id}"),
    ("GET", "/api/webhooks/{webhook_id}/deliveries"),
    ("GET", "/api/inventory/products"),
    ("GET", "/api/inventory/products/{product_id}"),
    ("GET", "/api/orders"),
    ("GET", "/api/orders/{order_id}"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("POST", "/api/inventory/adjustments"),
    ("POST", "/api/inventory/discontinue"),
    ("POST", "/api/inventory/products"),
    ("POST", "/api/orders/process"),
    ("POST", "/api/orders/{order_id}/cancel"),
    ("POST", "/api/webhooks"),
    ("POST", "/api/webhooks/{webhook_id}/replay"),
    ("POST", "/api/webhooks/{webhook_id}/rotate-secret"),
];

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

const ERROR_ENVELOPE: &str = "#/components/schemas/ErrorEnvelope";

/// `(METHOD, path, operation)` for every operation in the document.
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let paths = doc["paths"].as_object().expect("`paths` is an object");
    let mut found = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                found.push((method.to_uppercase(), path.clone(), operation));
            }
        }
    }
    found
}

fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    let operation = &doc["paths"][path][method];
    assert!(operation.is_object(), "{method} {path} is not documented");
    operation
}

/// Follows a local `$ref` (`#/components/...`) if `value` is one.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("non-local $ref {reference}"));
            let target = doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling $ref {reference}"));
            resolve(doc, target)
        }
        None => value,
    }
}

/// The example of a media type object, wherever utoipa put it: on the media
/// type (`example`, or the first of `examples`) or on its schema.
fn example_of<'a>(doc: &'a Value, media: &'a Value) -> &'a Value {
    if let Some(example) = media.get("example") {
        return example;
    }
    if let Some(first) = media
        .get("examples")
        .and_then(Value::as_object)
        .and_then(|e| e.values().next())
    {
        return &resolve(doc, first)["value"];
    }
    let schema = resolve(doc, &media["schema"]);
    schema
        .get("example")
        .or_else(|| schema.get("examples").and_then(|e| e.get(0)))
        .unwrap_or_else(|| panic!("no example in {media}"))
}

/// Every example value of a media type object (for error bodies).
fn examples_of(doc: &Value, media: &Value) -> Vec<Value> {
    let mut all: Vec<Value> = media.get("example").cloned().into_iter().collect();
    if let Some(named) = media.get("examples").and_then(Value::as_object) {
        all.extend(named.values().map(|e| resolve(doc, e)["value"].clone()));
    }
    all
}

fn json_content<'a>(what: &str, owner: &'a Value) -> &'a Value {
    let media = &owner["content"]["application/json"];
    assert!(media.is_object(), "{what} has no application/json content: {owner}");
    media
}

async fn fetch_document(app: &crate::helpers::TestApp) -> Value {
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "/openapi.json is served as {content_type}"
    );
    response.json().await.expect("/openapi.json is JSON")
}

#[sqlx::test]
async fn the_openapi_document_lists_every_endpoint_with_its_success_status(db: PgPool) {
    let app = spawn_app(db).await;
    let doc = fetch_document(&app).await;

    let version = doc["openapi"].as_str().expect("`openapi` version string");
    assert!(version.starts_with("3."), "OpenAPI 3.x, got {version}");

    let found: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let expected: BTreeSet<(String, String)> = OPERATIONS
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(found, expected);

    for (method, path, status, body) in [
        ("post", "/api/inventory/products", "201", Some("ProductsResponse")),
        ("get", "/api/inventory/products", "200", Some("ProductsResponse")),
        ("post", "/api/inventory/discontinue", "204", None),
        ("post", "/api/orders/process", "200", Some("ProcessOrderResponse")),
        ("get", "/api/events", "200", Some("EventsResponse")),
    ] {
        let responses = &operation(&doc, method, path)["responses"];
        let success = &responses[status];
        assert!(success.is_object(), "{method} {path} documents no {status}");
        let other_2xx: Vec<&String> = responses
            .as_object()
            .unwrap()
            .keys()
            .filter(|s| s.starts_with('2') && *s != status)
            .collect();
        assert!(other_2xx.is_empty(), "{method} {path}: other successes {other_2xx:?}");
        match body {
            Some(schema) => assert_eq!(
                json_content(path, success)["schema"]["$ref"],
                format!("#/components/schemas/{schema}"),
                "{method} {path} {status}"
            ),
            None => assert!(
                success.get("content").is_none(),
                "{method} {path} {status} has an empty body: {success}"
            ),
        }
    }
    app.stop().await;
}

#[sqlx::test]
async fn every_documented_error_response_uses_the_error_envelope_schema(db: PgPool) {
    let app = spawn_app(db).await;
    let doc = fetch_document(&app).await;

    let envelope = &doc["components"]["schemas"]["ErrorEnvelope"];
    assert!(envelope.is_object(), "no ErrorEnvelope schema");
    assert_eq!(envelope["type"], "object");
    assert_eq!(envelope["required"], json!(["error"]));
    let body = resolve(&doc, &envelope["properties"]["error"]);
    assert_eq!(body["type"], "object", "{body}");
    let required: BTreeSet<&str> = body["required"]
        .as_array()
        .expect("`error` has required fields")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, BTreeSet::from(["code", "message", "details"]));
    assert_eq!(body["properties"]["code"]["type"], "string");
    assert_eq!(body["properties"]["message"]["type"], "string");
    assert_eq!(body["properties"]["details"]["type"], "object");
    assert_eq!(
        body["properties"]["details"]["additionalProperties"]["type"], "string",
        "details map field paths to strings"
    );

    // The statuses the contract names for each endpoint.
    let common = ["400", "429", "500", "503"];
    let writes = ["400", "404", "413", "415", "429", "500", "503"];
    let required_errors: [(&str, &str, &[&str]); 7] = [
        ("get", "/api/inventory/products", &common),
        ("post", "/api/inventory/products", &writes),
        ("post", "/api/inventory/discontinue", &writes),
        ("post", "/api/orders/process", &writes),
        ("get", "/api/audit", &common),
        ("get", "/readyz", &["503"]),
        ("get", "/healthz", &[]),
    ];
    for (method, path, statuses) in required_errors {
        let responses = operation(&doc, method, path)["responses"].as_object().unwrap();
        for status in statuses {
            assert!(
                responses.contains_key(*status),
                "{method} {path} does not document {status}"
            );
        }
    }
    let order_errors = operation(&doc, "post", "/api/orders/process")["responses"]
        .as_object()
        .unwrap();
    assert!(order_errors.contains_key("409"), "orders document 409");
    assert!(
        order_errors.contains_key("422"),
        "orders document 422 (Idempotency-Key reused)"
    );
    let order_parameters = operation(&doc, "post", "/api/orders/process")["parameters"].clone();
    assert!(
        order_parameters.as_array().is_some_and(|params| params
            .iter()
            .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header")),
        "orders document the Idempotency-Key header: {order_parameters}"
    );

    let mut checked = 0;
    for (method, path, operation) in operations(&doc) {
        for (status, response) in operation["responses"].as_object().unwrap() {
            if !(status.starts_with('4') || status.starts_with('5')) {
                continue;
            }
            let what = format!("{method} {path} {status}");
            let response = resolve(&doc, response);
            let media = json_content(&what, response);
            assert_eq!(media["schema"]["$ref"], ERROR_ENVELOPE, "{what}");
            assert_eq!(response["content"].as_object().unwrap().len(), 1, "{what}: JSON only");
            for example in examples_of(&doc, media) {
                let top: Vec<&String> = example.as_object().expect("object").keys().collect();
                assert_eq!(top, ["error"], "{what}: example {example}");
                let error = &example["error"];
                assert!(error["code"].is_string(), "{what}: {example}");
                assert!(error["message"].is_string(), "{what}: {example}");
                assert!(error["details"].is_object(), "{what}: {example}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 32, "only {checked} error responses documented");
    app.stop().await;
}

#[sqlx::test]
async fn the_openapi_document_carries_the_briefs_examples(db: PgPool) {
    let app = spawn_app(db).await;
    let doc = fetch_document(&app).await;

    let request_example = |method: &str, path: &str| {
        let body = resolve(&doc, &operation(&doc, method, path)["requestBody"]);
        assert_eq!(body["required"], true, "{method} {path} body is required");
        example_of(&doc, json_content(path, body)).clone()
    };
    let response_example = |method: &str, path: &str, status: &str| {
        let response = resolve(&doc, &operation(&doc, method, path)["responses"][status]);
        example_of(&doc, json_content(path, response)).clone()
    };

    assert_eq!(
        request_example("post", "/api/inventory/products"),
        json!({
            "manager_id": "mgr_123",
            "products": [
                {"name": "Premium Coffee Beans", "price": 15.99, "quantity": 100},
                {"name": "Ceramic Coffee Mug", "price": 12.99, "quantity": 50}
            ]
        })
    );
    assert_eq!(
        request_example("post", "/api/inventory/discontinue"),
        json!({"manager_id": "mgr_123", "product_id": "prod_001"})
    );
    assert_eq!(
        request_example("post", "/api/orders/process"),
        json!({
            "manager_id": "mgr_123",
            "customer": {"id": "cust_456", "email": "customer@example.com"},
            "products": [
                {"product_id": "prod_001", "quantity": 2},
                {"product_id": "prod_002", "quantity": 1}
            ]
        })
    );
    assert_eq!(
        response_example("post", "/api/orders/process", "200"),
        json!({"order_id": "ord_789", "status": "processed", "total_amount": 44.97})
    );
    assert_eq!(
        response_example("get", "/api/inventory/products", "200"),
        json!({"products": [
            {"id": "prod_001", "name": "Premium Coffee Beans", "price": 15.99, "quantity": 100},
            {"id": "prod_002", "name": "Ceramic Coffee Mug", "price": 12.99, "quantity": 50}
        ]})
    );

    // GET /api/inventory/products?status=in_stock&manager_id=mgr_123
    let parameters = operation(&doc, "get", "/api/inventory/products")["parameters"]
        .as_array()
        .expect("query parameters");
    let parameter = |name: &str| {
        parameters
            .iter()
            .map(|p| resolve(&doc, p))
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no parameter {name}"))
    };
    assert_eq!(parameter("manager_id")["in"], "query");
    assert_eq!(parameter("manager_id")["required"], true);
    assert_eq!(parameter("manager_id")["example"], "mgr_123");
    assert_eq!(parameter("status")["in"], "query");
    assert_eq!(parameter("status")["required"], false);
    assert_eq!(parameter("status")["example"], "in_stock");
    app.stop().await;
}

#[sqlx::test]
async fn the_openapi_document_documents_the_rate_limit_headers(db: PgPool) {
    let app = spawn_app(db).await;
    let doc = fetch_document(&app).await;

    let mut rate_limited = 0;
    for (method, path, operation) in operations(&doc) {
        for (status, response) in operation["responses"].as_object().unwrap() {
            let what = format!("{method} {path} {status}");
            let headers = &resolve(&doc, response)["headers"];
            assert!(headers["X-Request-ID"].is_object(), "{what}: X-Request-ID");
            if path.starts_with("/api/") {
                for name in ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"] {
                    assert_eq!(
                        resolve(&doc, &headers[name])["schema"]["type"],
                        "integer",
                        "{what}: {name}"
                    );
                }
            } else {
                assert!(headers.get("X-RateLimit-Limit").is_none(), "{what}: not rate limited");
            }
            if status == "429" {
                assert_eq!(
                    resolve(&doc, &headers["Retry-After"])["schema"]["type"],
                    "integer",
                    "{what}: Retry-After in seconds"
                );
                rate_limited += 1;
            }
        }
        if path.starts_with("/api/") {
            assert!(
                operation["responses"].get("429").is_some(),
                "{method} {path} documents 429"
            );
        }
    }
    let api_operations = OPERATIONS.iter().filter(|(_, path)| path.starts_with("/api/")).count();
    assert_eq!(rate_limited, api_operations, "one 429 per /api/ operation");
    app.stop().await;
}

#[sqlx::test]
async fn the_served_document_is_the_one_the_library_builds(db: PgPool) {
    let app = spawn_app(db).await;
    let served = fetch_document(&app).await;
    let built = serde_json::to_value(ecommerce_api::http::openapi()).unwrap();
    assert_eq!(served, built);
    app.stop().await;
}

/// The local path of a relative asset URL on the `/docs/` page.
fn docs_asset(reference: &str) -> String {
    if reference.starts_with('/') {
        reference.to_owned()
    } else {
        format!("/docs/{}", reference.trim_start_matches("./"))
    }
}

/// The values of every `name="..."` attribute in `html`.
fn attribute_values<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let needle = format!(" {name}=\"");
    html.match_indices(&needle)
        .filter_map(|(at, _)| {
            let rest = &html[at + needle.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
        .collect()
}

/// Whether a URL names a host (absolute or protocol-relative).
fn names_a_host(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("//")
}

#[sqlx::test]
async fn the_docs_page_is_swagger_ui_served_from_the_binary(db: PgPool) {
    let app = spawn_app(db).await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = no_redirects.get(app.url("/docs")).send().await.unwrap();
    if response.status().is_redirection() {
        assert_eq!(response.headers()["location"], "/docs/");
    } else {
        assert_eq!(response.status(), 200, "/docs redirects or serves the page");
    }

    let response = app.get("/docs/").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = response.text().await.unwrap();
    assert!(html.contains("<div id=\"swagger-ui\">"), "{html}");

    let scripts = attribute_values(&html, "src");
    let links = attribute_values(&html, "href");
    assert!(
        scripts.contains(&"./swagger-initializer.js"),
        "the page loads the initializer: {scripts:?}"
    );
    assert!(
        scripts.iter().any(|s| s.contains("swagger-ui-bundle")),
        "the page loads the bundle: {scripts:?}"
    );
    assert!(!links.is_empty(), "the page loads its styles");
    for reference in scripts.iter().chain(&links) {
        assert!(!names_a_host(reference), "/docs/ loads {reference} from another host");
        let response = app.get(&docs_asset(reference)).await;
        assert_eq!(response.status(), 200, "{reference} is served");
        assert!(!response.bytes().await.unwrap().is_empty(), "{reference} is not empty");
    }

    let initializer = app.get("/docs/swagger-initializer.js").await.text().await.unwrap();
    assert!(
        initializer.contains("\"url\": \"/openapi.json\""),
        "the UI loads the local document: {initializer}"
    );
    assert!(
        !initializer.contains("://"),
        "the initializer names no host: {initializer}"
    );
    app.stop().await;
}

/// Debian's Chromium.
const CHROMIUM: &str = "/usr/bin/chromium";

/// A host name for the app that is not `localhost`/`127.0.0.1`, so Swagger
/// UI behaves as it would on a real server.
const DOCS_HOST: &str = "shop.docs.test";

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("create a temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs headless Chromium on `url` with `extra` flags, reaching only
/// `DOCS_HOST` (every other host fails to resolve: the page must work
/// offline), and returns its stdout.
async fn chromium(extra: &[String], url: &str) -> String {
    let profile = TempDir::new("docs-chromium-profile");
    let mut command = tokio::process::Command::new(CHROMIUM);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-proxy-server",
            "--virtual-time-budget=15000",
        ])
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .arg(format!(
            "--host-resolver-rules=MAP {DOCS_HOST} 127.0.0.1, MAP * ~NOTFOUND"
        ))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("Chromium finished within 60 s")
        .expect("Chromium starts");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "Chromium failed ({}): {stderr}", output.status);
    String::from_utf8(output.stdout).expect("Chromium prints UTF-8")
}

/// `(METHOD, path)` of every operation block Swagger UI rendered.
fn rendered_operations(dom: &str) -> BTreeSet<(String, String)> {
    let marker = "class=\"opblock-summary-method\">";
    dom.match_indices(marker)
        .map(|(at, _)| {
            let rest = &dom[at + marker.len()..];
            let method = &rest[..rest.find('<').expect("method text ends")];
            let path = attribute_values(rest, "data-path")
                .first()
                .copied()
                .expect("an operation block names its path");
            (method.to_owned(), path.to_owned())
        })
        .collect()
}

fn screenshot_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("docs-screenshot.png")
}

#[sqlx::test]
async fn a_headless_browser_renders_every_operation_on_the_docs_page_offline(db: PgPool) {
    if !Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{CHROMIUM} is missing: install Debian's `chromium` package (apt-get install chromium)"
        );
        eprintln!(
            "SKIPPED: {CHROMIUM} is not installed (apt-get install chromium); the Swagger UI browser test did not run"
        );
        return;
    }
    let app = spawn_app(db).await;
    let port: u16 = app
        .address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the app's port");
    let url = format!("http://{DOCS_HOST}:{port}/docs/");

    // Written to a directory of this test's own, then copied to
    // target/docs-screenshot.png for people to look at.
    let shots = TempDir::new("docs-chromium-screenshot");
    let screenshot = shots.0.join("docs.png");
    let dom = chromium(
        &[
            "--window-size=1280,2000".to_owned(),
            format!("--screenshot={}", screenshot.display()),
            "--dump-dom".to_owned(),
        ],
        &url,
    )
    .await;

    assert!(
        !dom.contains("Failed to load API definition"),
        "Swagger UI could not load /openapi.json"
    );
    assert!(
        dom.contains("E-commerce inventory and order API"),
        "the document's title is rendered"
    );
    let expected: BTreeSet<(String, String)> = OPERATIONS
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(
        rendered_operations(&dom),
        expected,
        "Swagger UI renders every operation"
    );
    for path in [
        "/api/inventory/products",
        "/api/inventory/discontinue",
        "/api/orders/process",
    ] {
        assert!(dom.contains(&format!("data-path=\"{path}\"")), "{path} is rendered");
    }
    // Nothing on the rendered page points at another host (the validator
    // badge of validator.swagger.io would, and would show "Error" offline).
    for reference in attribute_values(&dom, "src")
        .into_iter()
        .chain(attribute_values(&dom, "href"))
    {
        assert!(!names_a_host(reference), "the rendered page references {reference}");
    }
    assert!(!dom.contains("validator.swagger.io"));
    assert!(screenshot.exists(), "Chromium wrote {}", screenshot.display());
    let kept = screenshot_path();
    std::fs::copy(&screenshot, &kept).unwrap_or_else(|e| panic!("copy the screenshot to {}: {e}", kept.display()));
    app.stop().await;
}

/// The patterns the document states, exactly the rules the service applies:
/// generated strings either match the pattern and are accepted, or do
/// neither.
#[test]
fn the_documents_patterns_are_exactly_the_services_rules() {
    use ecommerce_api::domain::{ManagerId, ProductId, order::parse_email, product::ProductName};
    use proptest::{prelude::*, test_runner::TestRunner};

    let doc = serde_json::to_value(ecommerce_api::http::openapi()).unwrap();
    let schemas = &doc["components"]["schemas"];
    let pattern = |value: &Value| regex::Regex::new(value["pattern"].as_str().expect("a pattern")).unwrap();
    let email = pattern(&schemas["Customer"]["properties"]["email"]);
    let name = pattern(&schemas["ProductInput"]["properties"]["name"]);
    let manager = pattern(&schemas["AddProductsRequest"]["properties"]["manager_id"]);
    let list_params = operation(&doc, "get", "/api/inventory/products")["parameters"]
        .as_array()
        .unwrap();
    let after = pattern(&list_params.iter().find(|p| p["name"] == "after").unwrap()["schema"]);
    assert_eq!(
        schemas["Customer"]["properties"]["email"]["pattern"],
        ecommerce_api::domain::order::EMAIL_PATTERN
    );

    let mut runner = TestRunner::new(ProptestConfig::with_cases(3000));
    let text = "[a-zA-Z0-9@. _:!'\"`{}()\\-\\[\\]\t\u{7f}\u{85}\u{a0}é]{0,30}|prod_[0-9]{0,20}|[a-z]{1,8}@[a-z0-9-]{0,8}(\\.[a-z0-9-]{0,6}){0,3}";
    runner
        .run(&text, |s| {
            prop_assert_eq!(
                email.is_match(&s) && s.len() <= 254,
                parse_email(&s).is_ok(),
                "email {:?}",
                s
            );
            prop_assert_eq!(manager.is_match(&s), ManagerId::parse(&s).is_ok(), "manager {:?}", s);
            prop_assert_eq!(after.is_match(&s), ProductId::parse(&s).is_some(), "after {:?}", s);
            if s == s.trim() {
                let documented = name.is_match(&s) && (1..=200).contains(&s.chars().count());
                prop_assert_eq!(documented, ProductName::parse(&s).is_ok(), "name {:?}", s);
            }
            Ok(())
        })
        .unwrap();
}

/// The string literals of route registrations (`.route("...")`,
/// `.route_service("...")`, `.nest("...")`) in the HTTP sources, with the
/// file each is in: a route added beside the documented ones.
fn registered_paths() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let registration = regex::Regex::new(r#"\.(route|route_service|nest|nest_service)\(\s*"([^"]*)""#).unwrap();
    let mut found = Vec::new();
    let mut files = vec![dir];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|entry| entry.unwrap().path()));
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        for captures in registration.captures_iter(&source) {
            found.push((path.display().to_string(), captures[2].to_owned()));
        }
    }
    found
}

/// The guard: every route the service serves under `/api/` (and the health
/// routes) is in the document, and every documented operation carries its
/// error declaration. Routes of the API are added with `routes!`, which
/// needs each handler's `#[utoipa::path]`; a plain `.route("/api/...")`
/// beside them would be served undocumented, so none may exist outside the
/// two routes that exist only to test the middleware. The errors every
/// `/api/` route can answer come only from an operation's declaration
/// (`docs::errors!`), so an operation documented without one lacks them.
#[sqlx::test]
async fn every_served_route_is_documented_with_its_declared_errors(db: PgPool) {
    let only_for_tests = ["/api/panic", "/api/slow"];
    for (file, path) in registered_paths() {
        let api = path.starts_with("/api") || path == "/healthz" || path == "/readyz";
        assert!(
            !api || only_for_tests.contains(&path.as_str()),
            "{file} serves {path} outside the documented routes (add it with `routes!` and `#[utoipa::path]`)"
        );
    }

    let app = spawn_app(db).await;
    let doc = fetch_document(&app).await;
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    for (method, path) in &documented {
        assert!(
            path.starts_with("/api/") || path == "/healthz" || path == "/readyz",
            "{method} {path} is documented but is neither under /api/ nor a health route"
        );
        // The router serves every documented operation: no fallback answers it.
        let concrete = path
            .replace("{product_id}", "prod_001")
            .replace("{order_id}", "ord_001")
            .replace("{webhook_id}", "wh_001");
        let response = match method.as_str() {
            "GET" => app.get(&format!("{concrete}?manager_id=m")).await,
            "POST" => app.post(&concrete, json!({})).await,
            "DELETE" => app
                .client
                .delete(app.url(&format!("{concrete}?manager_id=m")))
                .send()
                .await
                .unwrap(),
            other => panic!("{other} {path}: only GET, POST and DELETE are served"),
        };
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let code = body["error"]["code"].as_str().unwrap_or_default().to_owned();
        assert!(
            code != "NOT_FOUND" && code != "METHOD_NOT_ALLOWED",
            "{method} {path} is documented but not served ({status} {code})"
        );
    }

    for (method, path, operation) in operations(&doc) {
        if !path.starts_with("/api/") {
            continue;
        }
        let responses = operation["responses"].as_object().unwrap();
        let mut required = vec!["400", "429", "500", "503", "504"];
        if method == "POST" {
            required.extend(["408", "413", "415"]);
        }
        for status in required {
            assert!(
                responses.contains_key(status),
                "{method} {path} documents no {status}: does its handler list its `docs::errors!` declaration?"
            );
        }
        for status in ["429", "503"] {
            assert!(
                responses[status]["headers"]["Retry-After"].is_object(),
                "{method} {path} {status} documents Retry-After"
            );
        }
        let codes: BTreeSet<&str> = responses["503"]["content"]["application/json"]["examples"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert!(codes.contains("SERVICE_UNAVAILABLE"), "{method} {path}: {codes:?}");
        assert_eq!(
            codes.contains("OUTCOME_UNKNOWN"),
            method != "GET",
            "{method} {path}: a write (and only a write) may end with its outcome unknown"
        );
    }
    app.stop().await;
}

/// The bearer token is a security scheme of its own, optional in the
/// document (the default `AUTH_MODE=none` needs none, so clients and schema
/// fuzzing work without it), and every `/api/` operation documents the 401
/// and 403 of `AUTH_MODE=jwt`; health routes never answer them.
#[sqlx::test]
async fn the_document_declares_the_bearer_token_of_auth_mode_jwt_as_optional(db: PgPool) {
    let app = spawn_app(db).await;
    let doc = fetch_document(&app).await;
    let scheme = &doc["components"]["securitySchemes"]["bearerAuth"];
    assert_eq!(scheme["type"], "http", "{scheme}");
    assert_eq!(scheme["scheme"], "bearer");
    assert_eq!(scheme["bearerFormat"], "JWT");
    assert!(
        scheme["description"].as_str().unwrap().contains("AUTH_MODE=jwt"),
        "{scheme}"
    );
    assert_eq!(doc["security"], json!([{}, {"bearerAuth": []}]));

    let mut checked = 0;
    for (method, path, operation) in operations(&doc) {
        let responses = operation["responses"].as_object().unwrap();
        if !path.starts_with("/api/") {
            assert!(
                !responses.contains_key("401") && !responses.contains_key("403"),
                "{method} {path}"
            );
            continue;
        }
        assert!(
            operation.get("security").is_none(),
            "{method} {path}: the global requirement applies"
        );
        for (status, code) in [("401", "UNAUTHENTICATED"), ("403", "FORBIDDEN")] {
            let response = &responses[status];
            let examples = response["content"]["application/json"]["examples"].as_object();
            assert!(
                examples.is_some_and(|e| e.contains_key(code)),
                "{method} {path} documents {status} {code}"
            );
            assert!(response["description"].as_str().unwrap().contains("AUTH_MODE=jwt"));
        }
        assert!(
            responses["401"]["headers"]["WWW-Authenticate"].is_object(),
            "{method} {path} 401 documents WWW-Authenticate"
        );
        checked += 1;
    }
    assert!(checked >= 9, "only {checked} /api/ operations");
    app.stop().await;
}

//! Spawns the real application on a free port against the test's own
//! database (made fresh and migrated by `#[sqlx::test]`), and talks to it
//! over HTTP.

use std::time::Duration;

use ecommerce_api::{
    app::{self, Application},
    config::Settings,
    db::Db,
    http::{self, AppState},
};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::{sync::oneshot, task::JoinHandle};

/// A running application and a client for it.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    /// The test's database.
    pub db: PgPool,
    /// The service's own handle on it (close it to take the database away).
    pub service_db: Db,
    /// A client with no connection reuse surprises.
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// The Redis the shared-state tests use: `REDIS_URL`, else the local one.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Settings for tests: the defaults, with a Redis key prefix of their own.
pub fn settings() -> Settings {
    let id = uuid::Uuid::new_v4().simple();
    Settings {
        redis_key_prefix: format!("test:{id}:"),
        audit_spill_dir: std::env::temp_dir().join(format!("ecommerce-api-spill-{id}")),
        ..Settings::default()
    }
}

/// The application with default settings and in-process state.
pub async fn spawn_app(db: PgPool) -> TestApp {
    spawn_app_with(db, settings(), None).await
}

/// The application with these settings, backed by Redis when `redis` is set.
pub async fn spawn_app_with(db: PgPool, settings: Settings, redis: Option<&str>) -> TestApp {
    spawn(db, settings, redis, http::router).await
}

/// The application plus `/api/panic` and `/api/slow`, for middleware tests.
pub async fn spawn_app_with_test_routes(db: PgPool, settings: Settings) -> TestApp {
    spawn(db, settings, None, http::router_with_test_routes).await
}

async fn spawn(db: PgPool, settings: Settings, redis: Option<&str>, router: fn(AppState) -> axum::Router) -> TestApp {
    spawn_on(db.clone(), db.into(), settings, redis, router).await
}

/// The application reaching PostgreSQL through `service_db` (a pooler, say)
/// while the test reads the database straight through `db`.
pub async fn spawn_on(
    db: PgPool,
    service_db: Db,
    settings: Settings,
    redis: Option<&str>,
    router: fn(AppState) -> axum::Router,
) -> TestApp {
    let state = app::state(settings, service_db.clone(), redis)
        .await
        .unwrap_or_else(|e| panic!("cannot build the app state (is Redis at {redis:?} running?): {e:#}"));
    let application = Application::bind(state, "127.0.0.1", 0, router).await.expect("bind");
    let address = format!("http://{}", application.local_addr());
    let (tx, rx) = oneshot::channel();
    let server = tokio::spawn(application.run_until(async {
        rx.await.ok();
    }));
    TestApp {
        address,
        db,
        service_db,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        shutdown: Some(tx),
        server: Some(server),
    }
}

impl TestApp {
    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// POSTs `body` as JSON.
    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request failed")
    }

    /// GETs `path` (with its query).
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request failed")
    }

    /// Adds one product for `manager` and returns its id.
    pub async fn seed(&self, manager: &str, name: &str, price: f64, quantity: i64) -> String {
        let response = self
            .post(
                "/api/inventory/products",
                json!({"manager_id": manager, "products": [{"name": name, "price": price, "quantity": quantity}]}),
            )
            .await;
        assert_eq!(response.status(), 201, "seeding {name}");
        let body: Value = response.json().await.unwrap();
        body["products"][0]["id"].as_str().unwrap().to_owned()
    }

    /// Discontinues a product.
    pub async fn discontinue(&self, manager: &str, product: &str) {
        let response = self
            .post(
                "/api/inventory/discontinue",
                json!({"manager_id": manager, "product_id": product}),
            )
            .await;
        assert_eq!(response.status(), 204);
    }

    /// The stock of a product, read from the database.
    pub async fn stock(&self, product: &str) -> i32 {
        let id: i64 = product.trim_start_matches("prod_").parse().unwrap();
        sqlx::query_scalar("select quantity from product where id = $1")
            .bind(id)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    /// Every product row, orders and lines counted: what "nothing changed" compares.
    pub async fn snapshot(&self) -> String {
        let products: Vec<(String, i64, String, String, i32, bool)> = sqlx::query_as(
            "select manager_id, id, name, price::text, quantity, discontinued_at is not null from product order by id",
        )
        .fetch_all(&self.db)
        .await
        .unwrap();
        let orders: i64 = sqlx::query_scalar("select count(*) from customer_order")
            .fetch_one(&self.db)
            .await
            .unwrap();
        let lines: i64 = sqlx::query_scalar("select count(*) from order_line")
            .fetch_one(&self.db)
            .await
            .unwrap();
        format!("{products:?} orders={orders} lines={lines}")
    }

    /// Audit rows stored so far (waits briefly for the write-behind queue).
    pub async fn audit_rows(&self, expected_at_least: i64) -> i64 {
        let mut count = 0;
        for _ in 0..100 {
            count = sqlx::query_scalar("select count(*) from audit_log")
                .fetch_one(&self.db)
                .await
                .unwrap();
            if count >= expected_at_least {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        count
    }

    /// Stops the server gracefully and waits until every audit record is written.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server");
        }
    }
}

/// The error envelope of a response, checked to have exactly that shape.
pub async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("error body is JSON");
    let top: Vec<_> = body.as_object().expect("object").keys().cloned().collect();
    assert_eq!(top, ["error"], "only `error` at the top level: {body}");
    let error = &body["error"];
    assert!(error["code"].is_string(), "{body}");
    assert!(error["message"].is_string(), "{body}");
    assert!(error["details"].is_object(), "{body}");
    (status, error.clone())
}

/// Runs one scenario `async fn name(db: PgPool, redis: Option<&str>)` on both
/// backends: `name::in_process` (no Redis) and `name::with_redis`.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[::sqlx::test]
            async fn in_process(db: ::sqlx::PgPool) {
                super::$scenario(db, None).await;
            }

            #[::sqlx::test]
            async fn with_redis(db: ::sqlx::PgPool) {
                super::$scenario(db, Some(&$crate::helpers::redis_url())).await;
            }
        }
    )*};
}
pub(crate) use on_both_backends;

/// A response header as text (panics when it is missing).
pub fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header on a {} response", response.status()))
        .to_str()
        .expect("header is text")
}

/// A response header as a whole number (panics when missing or not a number).
pub fn header_u64(response: &reqwest::Response, name: &str) -> u64 {
    let text = header(response, name);
    text.parse()
        .unwrap_or_else(|_| panic!("{name} is not a whole number: {text:?}"))
}

/// The value of the sample `name_and_labels` (labels exactly as rendered) in
/// Prometheus text, if present.
pub fn metric(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(name_and_labels)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// `DATABASE_URL`'s server with the test's own database.
pub fn database_url_for(db: &PgPool) -> String {
    let server = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for sqlx::test");
    let name = db
        .connect_options()
        .get_database()
        .expect("the test pool names its database")
        .to_owned();
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (server.as_str(), String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    format!("{}/{name}{query}", &base[..authority_end])
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

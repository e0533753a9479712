//! Through PgBouncer in transaction mode (Debian's 1.18, which keeps no
//! prepared statement between transactions), with far fewer server
//! connections than the service has clients, so consecutive transactions of
//! one client land on different server connections and several clients
//! share each one. A named prepared statement, or a statement prepared in
//! one transaction and run in the next, fails there at once.

use std::{
    path::PathBuf,
    process::{Child, Command},
    time::{Duration, Instant},
};

use ecommerce_api::{
    config::{DbArgs, Pooler},
    db::{self, Db},
    http,
};
use futures::future::join_all;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{TestApp, database_url_for, free_port, settings, spawn_on};

const PGBOUNCER: &str = "/usr/sbin/pgbouncer";

/// A private PgBouncer in front of the test's PostgreSQL server; stopped
/// when dropped.
struct PgBouncer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl PgBouncer {
    /// Starts PgBouncer (switching to `postgres` when the tests run as root,
    /// which it refuses to run as) with `server_connections` per database, or `None` when the
    /// binary is missing outside CI.
    fn start(server_connections: u32) -> Option<Self> {
        if !std::path::Path::new(PGBOUNCER).exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "{PGBOUNCER} is missing: install Debian's `pgbouncer` package (apt-get install pgbouncer)"
            );
            eprintln!("SKIPPED: {PGBOUNCER} is not installed (apt-get install pgbouncer); the pooler test did not run");
            return None;
        }
        let server = reqwest::Url::parse(&std::env::var("DATABASE_URL").expect("DATABASE_URL is set")).unwrap();
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("pgbouncer-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let ini = dir.join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n* = host={} port={}\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
                 unix_socket_dir =\nauth_type = trust\nauth_file = {}\npool_mode = transaction\n\
                 default_pool_size = {server_connections}\nmax_client_conn = 200\nlogfile = {}\n",
                server.host_str().unwrap(),
                server.port().unwrap_or(5432),
                dir.join("users.txt").display(),
                dir.join("pgbouncer.log").display(),
            ),
        )
        .unwrap();
        std::fs::write(dir.join("users.txt"), format!("\"{}\" \"\"\n", server.username())).unwrap();
        if as_root() {
            let owned = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(owned.success());
        }
        let child = Self::spawn(&dir, port);
        Some(Self { child, port, dir })
    }

    /// Runs PgBouncer on the configuration in `dir` and waits until it
    /// listens on `port`.
    fn spawn(dir: &std::path::Path, port: u16) -> Child {
        let ini = dir.join("pgbouncer.ini");
        let child = if as_root() {
            Command::new(PGBOUNCER).args(["-u", "postgres"]).arg(&ini).spawn()
        } else {
            Command::new(PGBOUNCER).arg(&ini).spawn()
        }
        .expect("start pgbouncer");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "pgbouncer did not listen within 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }

    /// Stops PgBouncer at once (its clients' connections break).
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port.
    fn restart(&mut self) {
        self.child = Self::spawn(&self.dir, self.port);
    }

    /// The URL of `database` through the pooler.
    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}?sslmode=disable", self.port)
    }
}

/// Whether the tests run as root (PgBouncer must then switch user).
fn as_root() -> bool {
    Command::new("id").arg("-u").output().unwrap().stdout == b"0\n"
}

fn args(url: &str) -> DbArgs {
    DbArgs {
        database_url: Some(url.to_owned()),
        data_dir: ".data/unused".into(),
        db_max_connections: 8,
        db_statement_timeout_secs: 1,
        db_lock_timeout_secs: 1,
        db_pooler: Pooler::Transaction,
    }
}

fn database_name(db: &PgPool) -> String {
    let url = database_url_for(db);
    reqwest::Url::parse(&url)
        .unwrap()
        .path()
        .trim_start_matches('/')
        .to_owned()
}

#[sqlx::test]
async fn every_operation_works_through_pgbouncer_in_transaction_mode(db: PgPool) {
    let Some(bouncer) = PgBouncer::start(2) else { return };
    let url = bouncer.url(&database_name(&db));
    let pooled = db::connect(&url, &args(&url)).await;
    let pooled = pooled.unwrap_or_else(|e| panic!("connect through pgbouncer: {e:#}"));
    db::migrate(&pooled)
        .await
        .expect("a migrated database passes the check");
    let settings = ecommerce_api::config::Settings {
        rate_limit_max: 100_000,
        ..settings()
    };
    let app = spawn_on(db.clone(), pooled.clone(), settings, None, http::router).await;

    let managers = ["m1", "m2"];
    let mut products = Vec::new();
    for manager in managers {
        let batch: Vec<Value> = (0..4)
            .map(|n| json!({"name": format!("Item {n}"), "price": 2.5, "quantity": 1000}))
            .collect();
        let response = app
            .post(
                "/api/inventory/products",
                json!({"manager_id": manager, "products": batch}),
            )
            .await;
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        for product in body["products"].as_array().unwrap() {
            products.push((manager, product["id"].as_str().unwrap().to_owned()));
        }
    }

    // Eight clients, each going through every operation a manager has, on
    // eight service connections sharing two server connections.
    let rounds = join_all((0..8).map(|client| {
        let (app, products) = (&app, &products);
        async move {
            let mut requests = 0;
            for round in 0..6 {
                let (manager, product) = &products[(client + round) % products.len()];
                requests += one_of_everything(app, client, round, manager, product).await;
            }
            requests
        }
    }))
    .await;
    let requests: usize = rounds.iter().sum();

    // Stock is conserved: what is left plus what the standing orders hold
    // equals what was stocked plus what was adjusted.
    let (stocked, adjusted): (i64, i64) = (8 * 1000, 8 * 6);
    let left: i64 = sqlx::query_scalar("select sum(quantity)::bigint from product")
        .fetch_one(&db)
        .await
        .unwrap();
    let sold: i64 = sqlx::query_scalar(
        "select coalesce(sum(l.quantity), 0)::bigint from order_line l \
           join customer_order o on o.id = l.order_id where o.cancelled_at is null",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(left + sold, stocked + adjusted, "left {left}, sold {sold}");
    let orders: i64 = sqlx::query_scalar("select count(*) from customer_order")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(
        orders,
        8 * 6 * 2,
        "one order per plain order and one per idempotency key"
    );

    // Statements are bounded through the pooler too (BEGIN sets them).
    let slow = sqlx::query("select pg_sleep(3)").execute(&pooled).await;
    let code = slow
        .unwrap_err()
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("57014"), "statement_timeout cancels it");

    app.stop().await;
    let audited: i64 = sqlx::query_scalar("select count(*) from audit_log")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(
        audited as usize,
        requests + 2,
        "one audit row per request, the seeding included"
    );
}

/// Every operation once for `manager`'s `product`; returns how many
/// requests it sent. Each must succeed.
async fn one_of_everything(app: &TestApp, client: usize, round: usize, manager: &str, product: &str) -> usize {
    let ok = |response: &reqwest::Response, what: &str| {
        assert!(response.status().is_success(), "{what}: {}", response.status());
    };
    let list = app
        .get(&format!("/api/inventory/products?manager_id={manager}&status=in_stock"))
        .await;
    ok(&list, "list");
    let detail = app
        .get(&format!("/api/inventory/products/{product}?manager_id={manager}"))
        .await;
    ok(&detail, "product");
    let adjusted = app
        .post(
            "/api/inventory/adjustments",
            json!({"manager_id": manager, "adjustments": [{"product_id": product, "delta": 1}]}),
        )
        .await;
    ok(&adjusted, "adjustment");
    let order = json!({"manager_id": manager, "customer": {"id": format!("c{client}"), "email": "c@example.com"},
        "products": [{"product_id": product, "quantity": 2}]});
    let placed = app.post("/api/orders/process", order.clone()).await;
    ok(&placed, "order");
    let placed: Value = placed.json().await.unwrap();
    let order_id = placed["order_id"].as_str().unwrap();
    let key = format!("k-{client}-{round}");
    for _ in 0..2 {
        let keyed = app
            .client
            .post(app.url("/api/orders/process"))
            .header("Idempotency-Key", &key)
            .json(&order)
            .send()
            .await
            .unwrap();
        ok(&keyed, "keyed order");
    }
    let fetched = app.get(&format!("/api/orders/{order_id}?manager_id={manager}")).await;
    ok(&fetched, "order detail");
    let listed = app.get(&format!("/api/orders?manager_id={manager}")).await;
    ok(&listed, "orders");
    let cancelled = app
        .post(
            &format!("/api/orders/{order_id}/cancel"),
            json!({"manager_id": manager}),
        )
        .await;
    ok(&cancelled, "cancel");
    let audit = app.get(&format!("/api/audit?manager_id={manager}")).await;
    ok(&audit, "audit");
    10
}

#[sqlx::test]
async fn through_a_pooler_serve_refuses_a_database_without_the_migrations(db: PgPool) {
    let Some(bouncer) = PgBouncer::start(1) else { return };
    let fresh = format!("unmigrated_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("create database {fresh}")))
        .execute(&db)
        .await
        .unwrap();
    let url = bouncer.url(&fresh);
    let pooled: Db = db::connect(&url, &args(&url)).await.unwrap();
    let refused = db::migrate(&pooled).await.expect_err("nothing is migrated");
    let message = format!("{refused:#}");
    pooled.close().await;
    drop(bouncer);
    sqlx::query(sqlx::AssertSqlSafe(format!("drop database {fresh} with (force)")))
        .execute(&db)
        .await
        .unwrap();
    assert!(message.contains("ecommerce-api migrate"), "{message}");
}

#[sqlx::test]
async fn a_pgbouncer_that_stops_costs_prompt_503s_and_service_resumes_when_it_returns(db: PgPool) {
    let Some(mut bouncer) = PgBouncer::start(2) else { return };
    let url = bouncer.url(&database_name(&db));
    let pooled = db::connect(&url, &args(&url)).await.unwrap();
    let settings = ecommerce_api::config::Settings {
        rate_limit_max: 100_000,
        ..settings()
    };
    let app = spawn_on(db.clone(), pooled, settings, None, http::router).await;
    let tea = app.seed("m", "Tea", 1.0, 100).await;
    let order = json!({"manager_id": "m", "customer": {"id": "c", "email": "c@example.com"},
        "products": [{"product_id": tea, "quantity": 1}]});
    assert_eq!(app.post("/api/orders/process", order.clone()).await.status(), 200);

    bouncer.stop();
    for _ in 0..3 {
        let asked = Instant::now();
        let refused = app.post("/api/orders/process", order.clone()).await;
        assert_eq!(refused.status(), 503, "the database is out of reach");
        assert!(
            asked.elapsed() < Duration::from_secs(8),
            "answered promptly: {:?}",
            asked.elapsed()
        );
    }

    bouncer.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = app.post("/api/orders/process", order.clone()).await.status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(Instant::now() < deadline, "no recovery within 15 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await;
    let stock: i32 = sqlx::query_scalar("select quantity from product")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(stock, 98, "exactly the two orders that were answered 200 took stock");
}

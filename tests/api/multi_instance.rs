//! Two instances of the real binary on one database and one Redis: the rate
//! limit is shared, a write through one is never read stale through the
//! other, and both stop cleanly on SIGTERM.

use std::{
    process::{Child, Command, ExitStatus},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{database_url_for, free_port, header_u64, redis_url};

const LIST: &str = "/api/inventory/products";

/// Two running instances; killed outright if the test ends without stopping them.
struct Instances {
    children: Vec<Child>,
    /// `http://127.0.0.1:PORT` of each.
    urls: Vec<String>,
    client: reqwest::Client,
}

impl Drop for Instances {
    fn drop(&mut self) {
        for child in &mut self.children {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Instances {
    /// Starts two `ecommerce-api serve` sharing the test's database and a
    /// fresh Redis prefix, and waits until both answer `/healthz`.
    async fn start(db: &PgPool) -> Self {
        let database_url = database_url_for(db);
        let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
        let mut instances = Self {
            children: Vec::new(),
            urls: Vec::new(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        };
        for _ in 0..2 {
            let port = free_port();
            let child = Command::new(env!("CARGO_BIN_EXE_ecommerce-api"))
                .arg("serve")
                .env("DATABASE_URL", &database_url)
                .env("REDIS_URL", redis_url())
                .env("REDIS_KEY_PREFIX", &prefix)
                .env("RATE_LIMIT_MAX", "100")
                .env("LOG_FORMAT", "json")
                .env("HOST", "127.0.0.1")
                .env("PORT", port.to_string())
                .env("DB_MAX_CONNECTIONS", "4")
                .env_remove("RATE_LIMIT_WINDOW_SECS")
                .spawn()
                .expect("start ecommerce-api serve");
            instances.children.push(child);
            instances.urls.push(format!("http://127.0.0.1:{port}"));
        }
        for i in 0..2 {
            instances.wait_healthy(i).await;
        }
        instances
    }

    async fn wait_healthy(&mut self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("{}/healthz", self.urls[i]);
        loop {
            if let Ok(response) = self.client.get(&url).send().await
                && response.status() == 200
            {
                return;
            }
            if let Ok(Some(status)) = self.children[i].try_wait() {
                panic!("instance {i} exited before it was healthy: {status}");
            }
            assert!(Instant::now() < deadline, "instance {i} not healthy within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn get(&self, i: usize, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.urls[i]))
            .send()
            .await
            .expect("request failed")
    }

    async fn post(&self, i: usize, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.urls[i]))
            .json(&body)
            .send()
            .await
            .expect("request failed")
    }

    /// The products of `manager` as instance `i` lists them: (id, name, quantity).
    async fn list(&self, i: usize, manager: &str, status: &str) -> Vec<(String, String, i64)> {
        let response = self.get(i, &format!("{LIST}?manager_id={manager}{status}")).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        body["products"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["id"].as_str().unwrap().to_owned(),
                    p["name"].as_str().unwrap().to_owned(),
                    p["quantity"].as_i64().unwrap(),
                )
            })
            .collect()
    }

    /// Sends SIGTERM to both and returns how each exited (within 10 s).
    async fn terminate(mut self) -> Vec<ExitStatus> {
        for child in &self.children {
            let sent = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .expect("run kill");
            assert!(sent.success(), "kill -TERM {}", child.id());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut statuses = Vec::new();
        for (i, child) in self.children.iter_mut().enumerate() {
            loop {
                if let Some(status) = child.try_wait().expect("wait for the instance") {
                    statuses.push(status);
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "instance {i} still running 10 s after SIGTERM"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        statuses
    }
}

#[sqlx::test]
async fn two_instances_share_one_rate_limit_and_stop_cleanly_on_sigterm(db: PgPool) {
    // Arrange
    let instances = Instances::start(&db).await;
    let path = format!("{LIST}?manager_id=shared");

    // Act: 100 requests alternating between the instances, then one more on each.
    for i in 0..100u64 {
        let response = instances.get((i % 2) as usize, &path).await;
        assert_eq!(response.status(), 200, "request {} (instance {})", i + 1, i % 2);
        assert_eq!(
            header_u64(&response, "x-ratelimit-remaining"),
            99 - i,
            "one count across both instances"
        );
    }
    let on_first = instances.get(0, &path).await;
    let on_second = instances.get(1, &path).await;
    let someone_else = instances.get(1, &format!("{LIST}?manager_id=another")).await;

    // Assert
    assert_eq!(on_first.status(), 429);
    assert_eq!(on_second.status(), 429);
    assert!(header_u64(&on_second, "retry-after") >= 1);
    let body: Value = on_second.json().await.unwrap();
    assert_eq!(body["error"]["code"], "RATE_LIMIT_EXCEEDED");
    assert_eq!(someone_else.status(), 200);
    let statuses = instances.terminate().await;
    assert!(
        statuses.iter().all(ExitStatus::success),
        "both exit with status 0 after SIGTERM: {statuses:?}"
    );
    // Both used the test's database, and flushed their audit queues on the way out.
    let rows: i64 = sqlx::query_scalar("select count(*) from audit_log")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(rows, 103, "one audit row per /api/ request");
}

#[sqlx::test]
async fn a_write_through_one_instance_is_never_read_stale_through_the_other(db: PgPool) {
    // Arrange: B's cache warmed for the manager.
    let instances = Instances::start(&db).await;
    let (a, b, m) = (0, 1, "two_sides");
    assert!(instances.list(b, m, "").await.is_empty());
    assert!(instances.list(b, m, "").await.is_empty());

    // Act / Assert: each kind of write through A, then a read through B.
    let added = instances
        .post(
            a,
            LIST,
            json!({"manager_id": m, "products": [{"name": "Tea", "price": 2.5, "quantity": 10}]}),
        )
        .await;
    assert_eq!(added.status(), 201);
    let tea = added.json::<Value>().await.unwrap()["products"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(instances.list(b, m, "").await, [(tea.clone(), "Tea".into(), 10)]);

    let updated = instances
        .post(
            a,
            LIST,
            json!({"manager_id": m, "products": [{"name": "TEA", "price": 2.5, "quantity": 4}]}),
        )
        .await;
    assert_eq!(updated.status(), 201);
    assert_eq!(instances.list(b, m, "").await, [(tea.clone(), "TEA".into(), 4)]);

    assert!(instances.list(b, m, "&status=out_of_stock").await.is_empty());
    let ordered = instances
        .post(
            a,
            "/api/orders/process",
            json!({"manager_id": m, "customer": {"id": "c", "email": "c@example.com"},
                   "products": [{"product_id": tea, "quantity": 4}]}),
        )
        .await;
    assert_eq!(ordered.status(), 200);
    assert_eq!(instances.list(b, m, "").await, [(tea.clone(), "TEA".into(), 0)]);
    assert_eq!(
        instances.list(b, m, "&status=out_of_stock").await,
        [(tea.clone(), "TEA".into(), 0)]
    );

    assert!(instances.list(b, m, "&status=discontinued").await.is_empty());
    let discontinued = instances
        .post(
            a,
            "/api/inventory/discontinue",
            json!({"manager_id": m, "product_id": tea}),
        )
        .await;
    assert_eq!(discontinued.status(), 204);
    assert_eq!(
        instances.list(b, m, "&status=discontinued").await,
        [(tea.clone(), "TEA".into(), 0)]
    );
    assert!(instances.list(b, m, "&status=out_of_stock").await.is_empty());

    // Both instances agree on the list's ETag, so a validator from one works on the other.
    let path = format!("{LIST}?manager_id={m}");
    let from_b = instances.get(b, &path).await;
    let etag = from_b.headers()["etag"].to_str().unwrap().to_owned();
    let on_a = instances
        .client
        .get(format!("{}{path}", instances.urls[a]))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(on_a.status(), 304);

    let statuses = instances.terminate().await;
    assert!(
        statuses.iter().all(ExitStatus::success),
        "both exit with status 0 after SIGTERM: {statuses:?}"
    );
}

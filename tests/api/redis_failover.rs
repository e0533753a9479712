//! Redis behind Sentinel, as real deployments run it: a master, a replica and
//! three sentinels, with `REDIS_URL` naming the sentinels. The master is
//! killed under two instances: nothing answers 5xx while the sentinels
//! promote the replica (each instance limits on its own meanwhile), and the
//! limit is shared again, exactly, on the promoted replica.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use sqlx::PgPool;

use crate::helpers::{TestApp, free_port, settings, spawn_app_with};

/// A redis-server (or sentinel) of the test's own, killed when dropped.
struct Server {
    child: Child,
    port: u16,
    _dir: Option<PathBuf>,
}

impl Server {
    fn redis(replica_of: Option<u16>) -> Self {
        let port = free_port();
        let mut args = vec![
            "--port".to_owned(),
            port.to_string(),
            "--bind".to_owned(),
            "127.0.0.1".to_owned(),
            "--save".to_owned(),
            String::new(),
            "--appendonly".to_owned(),
            "no".to_owned(),
        ];
        if let Some(master) = replica_of {
            args.extend(["--replicaof".to_owned(), "127.0.0.1".to_owned(), master.to_string()]);
        }
        let child = Command::new("redis-server")
            .args(&args)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (Debian package redis-server)");
        Self::ready(child, port, None)
    }

    fn sentinel(master: u16) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("sentinel-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor shop 127.0.0.1 {master} 2\n\
                 sentinel down-after-milliseconds shop 1000\nsentinel failover-timeout shop 5000\n",
                dir.display()
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs as a sentinel");
        Self::ready(child, port, Some(dir))
    }

    fn ready(child: Child, port: u16, dir: Option<PathBuf>) -> Self {
        let server = Self { child, port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis did not start on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self._dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

async fn info(port: u16, section: &str) -> String {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("INFO").arg(section).query_async(&mut conn).await.unwrap()
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "{what} never happened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn readiness(app: &TestApp) -> String {
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    body["status"].as_str().unwrap_or_default().to_owned()
}

/// Sends six list reads for `manager` to each instance, alternating; returns
/// how many were admitted. Every answer is 200 or 429, never a 5xx.
async fn admitted(apps: [&TestApp; 2], manager: &str) -> usize {
    let mut admitted = 0;
    for i in 0..12 {
        let status = apps[i % 2]
            .get(&format!("/api/inventory/products?manager_id={manager}"))
            .await
            .status()
            .as_u16();
        assert!(status == 200 || status == 429, "{manager}: {status}");
        admitted += usize::from(status == 200);
    }
    admitted
}

#[sqlx::test]
async fn a_dead_redis_master_behind_sentinels_costs_no_5xx_and_the_limit_is_shared_again_on_its_replica(db: PgPool) {
    let mut master = Server::redis(None);
    let replica = Server::redis(Some(master.port));
    let sentinels: Vec<Server> = (0..3).map(|_| Server::sentinel(master.port)).collect();
    eventually("the replica syncing", async || {
        info(master.port, "replication").await.contains("connected_slaves:1")
    })
    .await;
    eventually("the sentinels seeing each other", async || {
        info(sentinels[0].port, "sentinel").await.contains("sentinels=3")
    })
    .await;

    let url = format!(
        "redis+sentinel://{}/shop",
        sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",")
    );
    let shared = ecommerce_api::config::Settings {
        rate_limit_max: 10,
        ..settings()
    };
    let a = spawn_app_with(db.clone(), shared.clone(), Some(&url)).await;
    let b = spawn_app_with(db, shared, Some(&url)).await;
    assert_eq!(admitted([&a, &b], "before").await, 10, "one limit for both instances");

    // The master dies. Requests keep being answered, never with a 5xx.
    let _ = master.child.kill();
    let _ = master.child.wait();
    for (n, app) in [&a, &b, &a, &b].into_iter().enumerate() {
        admitted([app, app], &format!("during-{n}")).await;
    }

    // The sentinels promote the replica; each instance finds it by itself.
    eventually("the replica's promotion", async || {
        info(replica.port, "replication").await.contains("role:master")
    })
    .await;
    eventually("both instances using the promoted replica", async || {
        readiness(&a).await == "ok" && readiness(&b).await == "ok"
    })
    .await;
    assert_eq!(
        admitted([&a, &b], "after").await,
        10,
        "one limit again, on the new master"
    );
    a.stop().await;
    b.stop().await;
}

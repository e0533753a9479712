//! Faults injected from outside: a PostgreSQL of the test's own stopped for
//! several seconds under mixed load and started again, and slow clients that
//! hold connections open.

use std::{
    collections::HashMap,
    path::PathBuf,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use ecommerce_api::{
    config::{DbArgs, Settings},
    db,
};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::{free_port, settings, spawn_app_with, spawn_on};

/// A PostgreSQL cluster of the test's own, from the machine's binaries, on a
/// free loopback port; stopped and removed when dropped.
struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
}

fn pg_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return dir.into();
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's binaries are installed (/usr/lib/postgresql/*/bin)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    found.sort();
    found.pop().expect("a PostgreSQL bin folder with pg_ctl")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

impl PrivatePostgres {
    fn run(&self, program: &str, args: &[&str]) {
        let tool = self.bin.join(program);
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&tool);
            c
        } else {
            Command::new(&tool)
        };
        let done = command.args(args).output().expect("PostgreSQL tool runs");
        assert!(
            done.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&done.stderr)
        );
    }

    fn init() -> Self {
        let data = std::env::temp_dir().join(format!("ecommerce-api-fault-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&data).unwrap();
        if is_root() {
            assert!(
                Command::new("chown")
                    .arg("postgres:")
                    .arg(&data)
                    .status()
                    .unwrap()
                    .success()
            );
        }
        let pg = Self {
            bin: pg_bin(),
            data,
            port: free_port(),
        };
        let data = pg.data.to_str().unwrap().to_owned();
        pg.run("initdb", &["-D", &data, "-U", "postgres", "--auth=trust", "--no-sync"]);
        pg.start();
        pg
    }

    fn start(&self) {
        let (data, log) = (self.data.to_str().unwrap(), self.data.join("server.log"));
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off",
            self.port
        );
        self.run(
            "pg_ctl",
            &["-D", data, "-l", log.to_str().unwrap(), "-w", "-o", &options, "start"],
        );
    }

    fn stop(&self) {
        self.run(
            "pg_ctl",
            &["-D", self.data.to_str().unwrap(), "-m", "immediate", "-w", "stop"],
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Command::new(self.bin.join("pg_ctl"))
            .args(["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"])
            .output();
        if is_root() {
            let _ = Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"))
                .args(["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// What one request of the load got.
struct Outcome {
    request_id: String,
    status: u16,
    took: Duration,
    during_outage: bool,
}

/// One request of the mixed load: cached lists (of a manager nobody writes
/// to), uncached lists, orders, upserts.
fn one_request(
    client: &reqwest::Client,
    base: &str,
    i: usize,
    products: &[String],
) -> (String, reqwest::RequestBuilder) {
    let manager = format!("m{}", i % 3);
    let request_id = format!("load-{i}");
    let builder = match i % 4 {
        0 => client.get(format!("{base}/api/inventory/products?manager_id=quiet")),
        1 => client.get(format!(
            "{base}/api/inventory/products?manager_id={manager}&limit={}",
            1 + i % 50
        )),
        2 => client.post(format!("{base}/api/orders/process")).json(&json!({
            "manager_id": "m0", "customer": {"id": "c", "email": "c@example.com"},
            "products": [{"product_id": products[i % products.len()], "quantity": 1}]})),
        _ => client.post(format!("{base}/api/inventory/products")).json(&json!({
            "manager_id": manager, "products": [{"name": format!("Extra {}", i % 5), "price": 2.5, "quantity": i}]})),
    };
    (request_id.clone(), builder.header("x-request-id", request_id))
}

#[tokio::test]
async fn a_database_outage_gives_prompt_503s_loses_no_audit_record_and_heals_itself() {
    let pg = PrivatePostgres::init();
    let url = pg.url();
    let args = DbArgs {
        database_url: Some(url.clone()),
        data_dir: ".data/unused".into(),
        db_max_connections: 8,
        db_statement_timeout_secs: 5,
        db_lock_timeout_secs: 5,
        db_pooler: ecommerce_api::config::Pooler::None,
    };
    let pool = db::connect(&url, &args).await.unwrap();
    db::migrate(&pool).await.unwrap();
    let settings = Settings {
        rate_limit_max: 100_000,
        audit_queue_capacity: 16,
        audit_queue_wait_ms: 200,
        ..settings()
    };
    let spill_dir = settings.audit_spill_dir.clone();
    let reads = sqlx::PgPool::connect(&url).await.unwrap();
    let app = spawn_on(reads, pool.clone(), settings, None, ecommerce_api::http::router).await;
    let mut products = Vec::new();
    for n in 0..4 {
        products.push(app.seed("m0", &format!("Stock {n}"), 1.0, 1_000_000).await);
    }
    for m in 0..3 {
        assert_eq!(
            app.get(&format!("/api/inventory/products?manager_id=m{m}"))
                .await
                .status(),
            200
        );
    }

    let outage = Arc::new(AtomicBool::new(false));
    // Four clients, each sending one request after another for 9 seconds.
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let (base, outage, client) = (app.address.clone(), outage.clone(), app.client.clone());
            let products = products.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                let started = Instant::now();
                let mut i = worker;
                while started.elapsed() < Duration::from_secs(9) {
                    let (request_id, builder) = one_request(&client, &base, i, &products);
                    let during_outage = outage.load(Ordering::SeqCst);
                    let sent = Instant::now();
                    let status = builder.send().await.map(|r| r.status().as_u16()).unwrap_or(0);
                    outcomes.push(Outcome {
                        request_id,
                        status,
                        took: sent.elapsed(),
                        during_outage: during_outage || outage.load(Ordering::SeqCst),
                    });
                    i += 4;
                }
                outcomes
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(2)).await;
    outage.store(true, Ordering::SeqCst);
    pg.stop();
    tokio::time::sleep(Duration::from_secs(4)).await;
    pg.start();
    outage.store(false, Ordering::SeqCst);
    let mut outcomes = Vec::new();
    for worker in futures::future::join_all(workers).await {
        outcomes.extend(worker.unwrap());
    }

    // Every request got an answer, in bounded time, and only a 503 failed.
    let mut by_status: HashMap<u16, usize> = HashMap::new();
    for o in &outcomes {
        *by_status.entry(o.status).or_default() += 1;
        assert!(o.status != 0, "{} got no answer", o.request_id);
        assert!(
            o.status < 500 || o.status == 503,
            "{} got {} (outage: {})",
            o.request_id,
            o.status,
            o.during_outage
        );
        assert!(o.took < Duration::from_secs(8), "{} took {:?}", o.request_id, o.took);
    }
    assert!(
        by_status.get(&503).is_some_and(|n| *n > 0),
        "the outage was felt: {by_status:?}"
    );
    let last = outcomes.iter().rev().take(4).collect::<Vec<_>>();
    assert!(
        last.iter().all(|o| o.status < 500),
        "the service healed by itself: {:?}",
        last.iter().map(|o| o.status).collect::<Vec<_>>()
    );

    // After a clean stop, exactly one audit record per request sent.
    app.stop().await;
    let spilled_left = std::fs::read_dir(&spill_dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(spilled_left, 0);
    let counts: Vec<(String, i64)> =
        sqlx::query_as("select request_id, count(*) from audit_log where request_id like 'load-%' group by request_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let counts: HashMap<String, i64> = counts.into_iter().collect();
    for o in &outcomes {
        assert_eq!(
            counts.get(&o.request_id),
            Some(&1),
            "{} (status {})",
            o.request_id,
            o.status
        );
    }
    assert_eq!(counts.len(), outcomes.len());
    let in_outage: Vec<u16> = outcomes.iter().filter(|o| o.during_outage).map(|o| o.status).collect();
    println!(
        "requests: {}, by status: {by_status:?}; {} sent during the outage",
        outcomes.len(),
        in_outage.len()
    );
}

/// Reads until the server closes the connection; how long that took.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

#[sqlx::test]
async fn slow_clients_are_cut_off_and_others_keep_being_served(db: sqlx::PgPool) {
    let app = spawn_app_with(
        db,
        Settings {
            header_timeout_secs: 1,
            idle_timeout_secs: 3,
            max_connections: 10,
            ..settings()
        },
        None,
    )
    .await;
    let address = app.address.trim_start_matches("http://").to_owned();

    // Thirty clients each send half a request head and stop: more than the cap.
    let mut slow = Vec::new();
    for _ in 0..30 {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        slow.push(stream);
    }
    // A well-behaved client is still served once the slow ones are cut off.
    let started = Instant::now();
    let served = app.get("/healthz").await;
    assert_eq!(served.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());
    for stream in &mut slow {
        assert!(
            closed_within(stream, Duration::from_secs(8)).await.is_some(),
            "a connection with half a header was left open"
        );
    }

    // An idle keep-alive connection lives past the header timeout, up to the idle timeout.
    let mut stream = TcpStream::connect(&address).await.unwrap();
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    stream.write_all(request).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stream.write_all(request).await.unwrap();
    let n = stream.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "still open after 1.5 s idle");
    let closed = closed_within(&mut stream, Duration::from_secs(10)).await;
    assert!(
        closed.is_some_and(|after| after >= Duration::from_secs(2)),
        "closed by the idle timeout, not the header timeout: {closed:?}"
    );
    app.stop().await;
}

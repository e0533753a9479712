//! The real binary: `migrate` and `serve` on an embedded PostgreSQL, clean
//! shutdown on SIGTERM, and start-up refusing bad configuration.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::helpers::{database_url_for, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_ecommerce-api");

/// A data folder under /tmp (the `postgres` user must be able to reach it
/// when the tests run as root), removed afterwards.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("ecommerce-cli-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The binary with a clean environment: no database, no Redis.
fn command(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn postgres_running_in(dir: &std::path::Path) -> bool {
    let out = Command::new("pgrep")
        .args(["-f", &dir.display().to_string()])
        .output()
        .unwrap();
    out.status.success()
}

#[test]
fn migrate_without_a_database_url_uses_an_embedded_postgres_and_stops_it() {
    let dir = TempDir::new();
    let data = dir.0.join("pg");

    let out = command(&["migrate"]).env("DATA_DIR", &data).output().unwrap();

    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("migrations applied"));
    assert!(data.join("PG_VERSION").exists(), "the cluster is kept in DATA_DIR");
    assert!(!postgres_running_in(&data), "the embedded server was stopped");
}

#[tokio::test]
async fn serve_on_an_embedded_postgres_answers_and_stops_cleanly_on_sigterm() {
    let dir = TempDir::new();
    let data = dir.0.join("pg");
    let port = free_port();
    let mut child = command(&["serve"])
        .env("DATA_DIR", &data)
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = loop {
        match client.get(format!("{url}/readyz")).send().await {
            Ok(response) if response.status() == 200 => break true,
            _ if Instant::now() > deadline => break false,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };

    let created = client
        .post(format!("{url}/api/inventory/products"))
        .json(&serde_json::json!({"manager_id": "m", "products": [{"name": "Tea", "price": 2.5, "quantity": 3}]}))
        .send()
        .await
        .map(|r| r.status().as_u16());
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline + Duration::from_secs(15) {
            child.kill().ok();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    assert!(ready, "the service became ready");
    assert_eq!(created.ok(), Some(201));
    assert!(
        status.is_some_and(|s| s.success()),
        "clean exit after SIGTERM: {status:?}"
    );
    assert!(!postgres_running_in(&data), "the embedded server was stopped");
}

#[test]
fn a_bad_setting_stops_start_up_naming_it() {
    for (variable, value, named) in [
        ("PORT", "http", "--port"),
        ("RATE_LIMIT_MAX", "0", "--rate-limit-max"),
        ("LOG_FORMAT", "xml", "--log-format"),
        ("RATE_LIMIT_WINDOW_SECS", "soon", "--rate-limit-window-secs"),
        ("DB_STATEMENT_TIMEOUT_SECS", "0", "--db-statement-timeout-secs"),
        ("RUST_LOG", "info,sqlx=loud", "RUST_LOG"),
    ] {
        let out = command(&["serve"]).env(variable, value).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{variable}={value} must not start");
        assert!(stderr.contains(named) && stderr.contains(value), "{variable}: {stderr}");
    }
}

#[test]
fn a_statement_timeout_not_below_the_request_timeout_stops_start_up_naming_both() {
    for (statement, request) in [("30", "30"), ("40", "30"), ("5", "2")] {
        let out = command(&["serve"])
            .env("DB_STATEMENT_TIMEOUT_SECS", statement)
            .env("REQUEST_TIMEOUT_SECS", request)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{statement} against {request} must not start");
        assert!(
            stderr.contains(&format!("DB_STATEMENT_TIMEOUT_SECS ({statement})"))
                && stderr.contains(&format!("REQUEST_TIMEOUT_SECS ({request})")),
            "{stderr}"
        );
    }
}

#[test]
fn an_unreachable_database_stops_start_up_with_a_clear_message() {
    let url = format!("postgres://postgres@127.0.0.1:{}/none", free_port());

    let out = command(&["serve"]).env("DATABASE_URL", url).output().unwrap();

    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("could not connect to the database"));
}

#[sqlx::test]
async fn an_unreachable_redis_stops_start_up_with_a_clear_message(db: sqlx::PgPool) {
    let database = database_url_for(&db);
    let redis = format!("redis://127.0.0.1:{}", free_port());

    let out = command(&["serve", "--port", "0"])
        .env("DATABASE_URL", database)
        .env("REDIS_URL", redis)
        .output()
        .unwrap();

    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("could not connect to Redis"),
        "{out:?}"
    );
}

#[sqlx::test]
async fn audit_prune_drops_whole_months_that_ended_before_the_date_and_nothing_else(db: sqlx::PgPool) {
    let database = database_url_for(&db);
    for statement in [
        "create table audit_log_2020_01 partition of audit_log for values from ('2020-01-01') to ('2020-02-01')",
        "create table audit_log_2020_02 partition of audit_log for values from ('2020-02-01') to ('2020-03-01')",
        "insert into audit_log (occurred_at, request_id, method, path, status, duration_ms) values
            ('2020-01-15', 'old', 'GET', '/api/x', 200, 1), ('2020-02-15', 'kept', 'GET', '/api/x', 200, 1),
            (now(), 'now', 'GET', '/api/x', 200, 1)",
    ] {
        sqlx::query(statement).execute(&db).await.unwrap();
    }

    let out = command(&["audit", "prune", "--before", "2020-02-15"])
        .env("DATABASE_URL", &database)
        .output()
        .unwrap();

    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dropped: Vec<&str> = stdout.lines().filter(|l| !l.starts_with('{')).collect();
    assert_eq!(
        dropped,
        ["audit_log_2020_01"],
        "the partitions dropped, one a line (logs are JSON lines)"
    );
    let left: Vec<String> = sqlx::query_scalar("select request_id from audit_log order by occurred_at")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(left, ["kept", "now"], "a month that had not ended, and this one, stay");
    let deleted = sqlx::query("delete from audit_log where request_id = 'kept'")
        .execute(&db)
        .await;
    assert!(deleted.is_err(), "rows stay append-only");

    let bad = command(&["audit", "prune", "--before", "soon"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--before"));
}

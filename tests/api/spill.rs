//! The audit spill folder: records refused a place in the queue wait there
//! for the database, and every one of them lands exactly once, whatever the
//! folder holds besides (torn or corrupt lines, a record the database
//! refuses, another instance's files), without a 503 ever waiting on the
//! database.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use ecommerce_api::config::Settings;
use sqlx::PgPool;

use crate::helpers::{TestApp, metric, settings, spawn_app_with};

/// A request that changes nothing and needs no database: its record goes
/// through the queue, or to the spill folder when the queue is full.
async fn send(app: &TestApp, request_id: &str) -> (u16, Duration) {
    let started = Instant::now();
    let status = app
        .client
        .get(app.url("/api/inventory/products?manager_id=spill&limit=0"))
        .header("x-request-id", request_id)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16());
    (status, started.elapsed())
}

/// Settings that spill at once: one slot in the queue, no wait for it.
fn spilling(dir: &Path) -> Settings {
    Settings {
        rate_limit_max: 100_000,
        audit_queue_capacity: 1,
        audit_queue_wait_ms: 0,
        audit_spill_dir: dir.to_owned(),
        ..settings()
    }
}

async fn take_the_table_away(db: &PgPool) {
    sqlx::query("alter table audit_log rename to audit_log_away")
        .execute(db)
        .await
        .unwrap();
}

async fn bring_the_table_back(db: &PgPool) {
    sqlx::query("alter table audit_log_away rename to audit_log")
        .execute(db)
        .await
        .unwrap();
}

/// How many rows each request id beginning with `prefix` has.
async fn rows_by_id(db: &PgPool, prefix: &str) -> HashMap<String, i64> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("select request_id, count(*) from audit_log where request_id like $1 || '%' group by 1")
            .bind(prefix)
            .fetch_all(db)
            .await
            .unwrap();
    rows.into_iter().collect()
}

/// Waits (up to 20 s) until at least `expected` rows of `prefix` are in,
/// then a little longer, so a duplicate written late is seen too.
async fn settled_rows(db: &PgPool, prefix: &str, expected: i64) -> HashMap<String, i64> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        if rows_by_id(db, prefix).await.values().sum::<i64>() >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    rows_by_id(db, prefix).await
}

/// The files of the folder, by name.
fn files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// Everything set aside in the folder's quarantine files.
fn quarantined(dir: &Path) -> String {
    files(dir)
        .into_iter()
        .filter(|(name, _)| name.starts_with("quarantine"))
        .map(|(_, path)| String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned())
        .collect()
}

/// The files that still hold records to load (anything but quarantine).
fn waiting(dir: &Path) -> Vec<String> {
    files(dir)
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| !name.starts_with("quarantine"))
        .collect()
}

/// Spills the records of `count` requests (ids `<prefix><n>`) into `dir`
/// while the table is away, then stops that instance.
async fn spill_while_away(db: &PgPool, dir: &Path, prefix: &str, count: usize) -> Vec<String> {
    take_the_table_away(db).await;
    let app = spawn_app_with(db.clone(), spilling(dir), None).await;
    let mut ids = Vec::new();
    for n in 0..count {
        let id = format!("{prefix}{n}");
        let (status, took) = send(&app, &id).await;
        assert!(status == 400 || status == 503, "{id}: {status}");
        assert!(took < Duration::from_secs(2), "{id} took {took:?}");
        ids.push(id);
    }
    app.stop().await;
    bring_the_table_back(db).await;
    ids
}

fn assert_once(rows: &HashMap<String, i64>, ids: &[String]) {
    for id in ids {
        assert_eq!(rows.get(id), Some(&1), "{id}: {rows:?}");
    }
    assert_eq!(rows.len(), ids.len(), "no stray rows: {rows:?}");
}

#[sqlx::test]
async fn leading_middle_and_trailing_corrupt_lines_are_set_aside_and_every_record_lands_once(db: PgPool) {
    let dir = settings().audit_spill_dir;
    let ids = spill_while_away(&db, &dir, "spill-torn-", 12).await;

    // What a crash or a full disk leaves: a line that is not a record at
    // the start, one in the middle, and a torn last line.
    let (_, path) = files(&dir)
        .into_iter()
        .filter(|(name, _)| !name.starts_with("quarantine") && !name.ends_with(".lock"))
        .max_by_key(|(_, path)| std::fs::metadata(path).unwrap().len())
        .expect("a spill file");
    let text = std::fs::read(&path).unwrap();
    let lines: Vec<&[u8]> = text.split_inclusive(|b| *b == b'\n').collect();
    assert!(lines.len() >= 6, "{} lines spilled", lines.len());
    let mut corrupt = b"\x00\xffnot a record\n".to_vec();
    for (i, line) in lines.iter().enumerate() {
        if i == lines.len() / 2 {
            corrupt.extend_from_slice(&line[..line.len() / 2]);
            corrupt.push(b'\n');
        }
        corrupt.extend_from_slice(line);
    }
    corrupt.extend_from_slice(&lines[0][..lines[0].len() / 3]);
    std::fs::write(&path, corrupt).unwrap();

    let app = spawn_app_with(db.clone(), spilling(&dir), None).await;
    let rows = settled_rows(&db, "spill-torn-", ids.len() as i64).await;
    assert_once(&rows, &ids);
    assert!(
        waiting(&dir).iter().all(|name| name.ends_with(".lock")),
        "nothing is left to load again: {:?}",
        waiting(&dir)
    );
    let aside = quarantined(&dir);
    assert_eq!(aside.lines().count(), 3, "the three bad lines are set aside: {aside:?}");
    assert!(aside.contains("not a record"));
    app.stop().await;
    assert!(waiting(&dir).is_empty(), "{:?}", waiting(&dir));
}

#[sqlx::test]
async fn a_record_the_database_refuses_is_set_aside_and_blocks_nothing_behind_it(db: PgPool) {
    let dir = settings().audit_spill_dir;
    sqlx::query("alter table audit_log add constraint refuses_some check (request_id not like '%-refused')")
        .execute(&db)
        .await
        .unwrap();
    let app = spawn_app_with(db.clone(), spilling(&dir), None).await;

    // Through the queue.
    let queued = ["spill-q-1", "spill-q-x-refused", "spill-q-2", "spill-q-3"];
    for id in queued {
        send(&app, id).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let good: Vec<String> = queued
        .iter()
        .filter(|id| !id.ends_with("refused"))
        .map(|id| id.to_string())
        .collect();
    assert_once(&settled_rows(&db, "spill-q-", good.len() as i64).await, &good);

    // Through the spill folder.
    take_the_table_away(&db).await;
    let mut spilled = Vec::new();
    for n in 0..8 {
        let id = if n == 4 {
            "spill-s-y-refused".to_owned()
        } else {
            format!("spill-s-{n}")
        };
        send(&app, &id).await;
        spilled.push(id);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    bring_the_table_back(&db).await;
    let good: Vec<String> = spilled.into_iter().filter(|id| !id.ends_with("refused")).collect();
    assert_once(&settled_rows(&db, "spill-s-", good.len() as i64).await, &good);

    app.stop().await;
    assert!(waiting(&dir).is_empty(), "{:?}", waiting(&dir));
    let aside = quarantined(&dir);
    assert_eq!(aside.matches("spill-q-x-refused").count(), 1, "{aside}");
    assert_eq!(aside.matches("spill-s-y-refused").count(), 1, "{aside}");
}

#[sqlx::test]
async fn beyond_the_size_cap_a_refusal_is_still_a_prompt_503_and_nothing_is_written_twice(db: PgPool) {
    let dir = settings().audit_spill_dir;
    let cap = 2_000;
    take_the_table_away(&db).await;
    let app = spawn_app_with(
        db.clone(),
        Settings {
            audit_spill_max_bytes: cap,
            ..spilling(&dir)
        },
        None,
    )
    .await;
    let mut ids = Vec::new();
    for n in 0..30 {
        let id = format!("spill-cap-{n}");
        let (status, took) = send(&app, &id).await;
        assert!(status == 400 || status == 503, "{id}: {status}");
        assert!(took < Duration::from_secs(2), "{id} took {took:?}");
        ids.push(id);
    }
    app.stop().await;
    let used: u64 = files(&dir)
        .iter()
        .map(|(_, p)| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(used <= cap, "the folder holds {used} bytes, over its cap of {cap}");
    bring_the_table_back(&db).await;

    let app = spawn_app_with(db.clone(), spilling(&dir), None).await;
    let rows = settled_rows(&db, "spill-cap-", 1).await;
    assert!(rows.values().all(|n| *n == 1), "{rows:?}");
    assert!(
        !rows.is_empty() && rows.len() < ids.len(),
        "{} of {} kept",
        rows.len(),
        ids.len()
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let dropped = metric(&metrics, "audit_records_not_spilled_total").unwrap_or(0.0) as usize;
    assert_eq!(
        rows.len() + dropped,
        ids.len(),
        "each record is either in the table or counted as kept in the log only"
    );
    app.stop().await;
    assert!(waiting(&dir).is_empty(), "{:?}", waiting(&dir));
}

#[sqlx::test]
async fn two_instances_sharing_a_folder_each_load_their_own_and_adopt_only_the_dead(db: PgPool) {
    let dir = settings().audit_spill_dir;
    take_the_table_away(&db).await;
    let a = spawn_app_with(db.clone(), spilling(&dir), None).await;
    let b = spawn_app_with(db.clone(), spilling(&dir), None).await;
    let mut ids = Vec::new();
    for n in 0..8 {
        for (app, name) in [(&a, "a"), (&b, "b")] {
            let id = format!("spill-two-{name}-{n}");
            send(app, &id).await;
            ids.push(id);
        }
    }
    // A stops while the database is away: its records stay in its files,
    // for an instance that outlives it.
    a.stop().await;
    bring_the_table_back(&db).await;

    // The table is back but held: every loader that starts now stalls on it.
    let mut lock = db.begin().await.unwrap();
    sqlx::query("lock table audit_log in access exclusive mode")
        .execute(&mut *lock)
        .await
        .unwrap();
    let c = spawn_app_with(db.clone(), spilling(&dir), None).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for n in 0..4 {
        let id = format!("spill-two-b2-{n}");
        let (_, took) = send(&b, &id).await;
        assert!(took < Duration::from_secs(2), "{id} took {took:?}");
        ids.push(id);
    }
    lock.commit().await.unwrap();

    let rows = settled_rows(&db, "spill-two-", ids.len() as i64).await;
    assert_once(&rows, &ids);
    b.stop().await;
    c.stop().await;
    assert!(waiting(&dir).is_empty(), "{:?}", waiting(&dir));
}

#[sqlx::test]
async fn a_refusal_for_a_full_queue_is_answered_while_the_reload_waits_on_the_database(db: PgPool) {
    let dir = settings().audit_spill_dir;
    let mut ids = spill_while_away(&db, &dir, "spill-stall-", 6).await;

    // The reload's statement waits on this lock for as long as the test
    // holds it.
    let mut lock = db.begin().await.unwrap();
    sqlx::query("lock table audit_log in access exclusive mode")
        .execute(&mut *lock)
        .await
        .unwrap();
    let app = spawn_app_with(db.clone(), spilling(&dir), None).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut statuses = Vec::new();
    for n in 0..4 {
        let id = format!("spill-stall-late-{n}");
        let (status, took) = send(&app, &id).await;
        assert!(took < Duration::from_secs(1), "{id} ({status}) took {took:?}");
        statuses.push(status);
        ids.push(id);
    }
    assert!(statuses.contains(&503), "the queue was full: {statuses:?}");
    lock.commit().await.unwrap();

    let rows = settled_rows(&db, "spill-stall-", ids.len() as i64).await;
    assert_once(&rows, &ids);
    app.stop().await;
    assert!(waiting(&dir).is_empty(), "{:?}", waiting(&dir));
}

#[sqlx::test]
async fn a_spill_file_of_an_earlier_version_is_adopted_and_loaded_once(db: PgPool) {
    let dir = settings().audit_spill_dir;
    std::fs::create_dir_all(&dir).unwrap();
    // Bare JSON lines, named by PID, as earlier versions wrote them.
    let mut text = String::new();
    for n in 0..3 {
        let record = serde_json::json!({
            "occurred_at": "2026-12-04T10:00:00.000001Z", "request_id": format!("spill-old-{n}"),
            "manager_id": "spill", "method": "GET", "path": "/api/inventory/products",
            "query": "manager_id=spill&limit=0", "status": 400, "error_code": "INVALID_REQUEST",
            "duration_ms": 0.5, "client_addr": "127.0.0.1", "product_ids": [], "order_id": null,
            "attempt": null,
        });
        text.push_str(&format!("{record}\n"));
    }
    text.push_str("{\"torn\n");
    std::fs::write(dir.join(format!("audit-{}.jsonl", std::process::id())), text).unwrap();

    let app = spawn_app_with(db.clone(), spilling(&dir), None).await;
    let ids: Vec<String> = (0..3).map(|n| format!("spill-old-{n}")).collect();
    assert_once(&settled_rows(&db, "spill-old-", 3).await, &ids);
    assert_eq!(quarantined(&dir).lines().count(), 1);
    app.stop().await;
    assert!(waiting(&dir).is_empty(), "{:?}", waiting(&dir));
}

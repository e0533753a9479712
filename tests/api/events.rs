//! The event feed: every write records its events with its change (and a
//! refused one none), in the shapes the reads show; the cursor is exact under
//! concurrent writers on two instances, slow and rolled-back transactions
//! included.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use ecommerce_api::config::Settings;
use futures::future::join_all;
use serde_json::{Value, json};
use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::helpers::{self, TestApp, error_of, spawn_app, spawn_app_with};

const PRODUCTS: &str = "/api/inventory/products";
const ORDERS: &str = "/api/orders/process";

/// Every event of `manager` after `after`, following `Link` headers.
async fn all_events(app: &TestApp, manager: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut url = format!("/api/events?manager_id={manager}&limit=7");
    loop {
        let response = app.get(&url).await;
        assert_eq!(response.status(), 200);
        let next = response.headers().get("link").map(|l| l.to_str().unwrap().to_owned());
        let body: Value = response.json().await.unwrap();
        events.extend(body["events"].as_array().unwrap().iter().cloned());
        match next {
            Some(link) => url = link.trim_start_matches('<').split('>').next().unwrap().to_owned(),
            None => return events,
        }
    }
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

async fn body(response: reqwest::Response) -> Value {
    response.json().await.unwrap()
}

#[sqlx::test]
async fn every_write_records_its_events_in_the_shapes_the_reads_show(db: PgPool) {
    let app = spawn_app(db).await;
    let m = "mgr_events";

    // Created, with a threshold: product.created and the stock from none.
    let created = app
        .post(
            PRODUCTS,
            json!({"manager_id": m, "products": [
                {"name": "Beans", "price": 15.99, "quantity": 10, "low_stock_threshold": 5}]}),
        )
        .await;
    assert_eq!(created.status(), 201);
    assert_eq!(
        body(created).await,
        json!({"products": [{"id": "prod_001", "name": "Beans", "price": 15.99, "quantity": 10}]}),
        "the write's answer keeps its exact shape"
    );
    let detail = body(app.get(&format!("{PRODUCTS}/prod_001?manager_id={m}")).await).await;
    assert_eq!(
        (detail["low_stock_threshold"].clone(), detail["version"].clone()),
        (json!(5), json!(1))
    );
    let list = body(app.get(&format!("{PRODUCTS}?manager_id={m}")).await).await;
    assert_eq!(
        list["products"][0].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["id", "name", "price", "quantity"]
    );
    let events = all_events(&app, m).await;
    assert_eq!(types(&events), ["product.created", "inventory.changed"]);
    assert_eq!(
        events[0]["data"], detail,
        "product.created is the product as its read shows it"
    );
    assert_eq!(
        events[1]["data"],
        json!({"product_id": "prod_001", "quantity": 10, "previous_quantity": 0, "delta": 10,
               "version": 1, "reason": "upsert", "reference": null})
    );
    let id = events[0]["id"].as_str().unwrap();
    assert!(id.starts_with("evt_") && id.len() >= 7, "{id}");
    assert!(events[0]["occurred_at"].as_str().unwrap().ends_with('Z'));

    // An order: the stock change, the threshold crossed, the order.
    let order = json!({"manager_id": m, "customer": {"id": "c1", "email": "c1@example.com"},
                       "products": [{"product_id": "prod_001", "quantity": 6}]});
    assert_eq!(app.post(ORDERS, order).await.status(), 200);
    // Refused: no events.
    let too_many = json!({"manager_id": m, "customer": {"id": "c1", "email": "c1@example.com"},
                          "products": [{"product_id": "prod_001", "quantity": 60}]});
    assert_eq!(app.post(ORDERS, too_many).await.status(), 409);
    let refused = json!({"manager_id": m, "adjustments": [{"product_id": "prod_001", "delta": -100}]});
    assert_eq!(app.post("/api/inventory/adjustments", refused).await.status(), 409);
    let events = all_events(&app, m).await;
    assert_eq!(
        types(&events[2..]),
        ["inventory.changed", "inventory.low_stock", "order.processed"]
    );
    assert_eq!(
        events[2]["data"],
        json!({"product_id": "prod_001", "quantity": 4, "previous_quantity": 10, "delta": -6,
               "version": 2, "reason": "order", "reference": "ord_001"})
    );
    assert_eq!(
        events[3]["data"],
        json!({"product_id": "prod_001", "quantity": 4, "threshold": 5, "version": 2})
    );
    let sold = body(app.get(&format!("/api/orders/ord_001?manager_id={m}")).await).await;
    assert_eq!(
        events[4]["data"], sold,
        "order.processed is the order as its read shows it"
    );

    // An adjustment, then the cancel (stock back, the order as cancelled).
    let adjust = json!({"manager_id": m, "adjustments": [{"product_id": "prod_001", "delta": 3}]});
    assert_eq!(app.post("/api/inventory/adjustments", adjust).await.status(), 200);
    let cancel = app.post("/api/orders/ord_001/cancel", json!({"manager_id": m})).await;
    assert_eq!(cancel.status(), 200);
    let cancelled = body(cancel).await;
    let again = app.post("/api/orders/ord_001/cancel", json!({"manager_id": m})).await;
    assert_eq!(again.status(), 200, "cancelling again changes nothing");
    let events = all_events(&app, m).await;
    assert_eq!(
        types(&events[5..]),
        ["inventory.changed", "inventory.changed", "order.cancelled"]
    );
    assert_eq!(
        (events[5]["data"]["delta"].clone(), events[5]["data"]["reason"].clone()),
        (json!(3), json!("adjustment"))
    );
    assert_eq!(
        events[6]["data"],
        json!({"product_id": "prod_001", "quantity": 13, "previous_quantity": 7, "delta": 6,
               "version": 4, "reason": "cancel", "reference": "ord_001"})
    );
    assert_eq!(events[7]["data"], cancelled);
    assert_eq!(
        events[4]["data"], sold,
        "order.processed still shows the order as it was processed after the cancel"
    );

    // The same quantity: updated, no stock event; the threshold is kept,
    // then removed with null.
    let same = json!({"manager_id": m, "products": [{"name": "beans", "price": 14.5, "quantity": 13}]});
    assert_eq!(app.post(PRODUCTS, same).await.status(), 201);
    let clear = json!({"manager_id": m, "products": [
        {"id": "prod_001", "name": "Beans", "price": 14.5, "quantity": 13, "low_stock_threshold": null}]});
    assert_eq!(app.post(PRODUCTS, clear).await.status(), 201);
    let events = all_events(&app, m).await;
    assert_eq!(types(&events[8..]), ["product.updated", "product.updated"]);
    assert_eq!(
        (
            events[8]["data"]["version"].clone(),
            events[8]["data"]["low_stock_threshold"].clone()
        ),
        (json!(5), json!(5))
    );
    assert_eq!(events[9]["data"]["low_stock_threshold"], Value::Null);
    let now = body(app.get(&format!("{PRODUCTS}/prod_001?manager_id={m}")).await).await;
    assert_eq!(
        events[9]["data"].to_string(),
        now.to_string(),
        "product.updated is the product as its read shows it, amounts printed alike (14.5)"
    );

    // Discontinued once; again changes nothing.
    app.discontinue(m, "prod_001").await;
    app.discontinue(m, "prod_001").await;
    let events = all_events(&app, m).await;
    assert_eq!(types(&events[10..]), ["product.discontinued"]);
    assert_eq!(events[10]["data"], json!({"product_id": "prod_001", "version": 7}));
    let detail = body(app.get(&format!("{PRODUCTS}/prod_001?manager_id={m}")).await).await;
    assert_eq!(detail["version"], 7);

    // Another manager's feed is its own.
    assert!(all_events(&app, "someone_else").await.is_empty());
}

/// An event's type is one of the contract's (the column's domain refuses
/// any other); one with data of its own shows that data.
#[sqlx::test]
async fn an_event_has_a_known_type_and_shows_its_own_data(db: PgPool) {
    let insert = |sql: &'static str| {
        let db = db.clone();
        async move { sqlx::query(sql).execute(&db).await }
    };
    for unknown in [
        "insert into event (manager_id, type, data) values ('m', 'order.shipped', '{}')",
        "insert into event (manager_id, type, data) values ('m', 'Order.Processed', '{}')",
    ] {
        let err = insert(unknown).await.expect_err(unknown);
        let constraint = err.as_database_error().and_then(|e| e.constraint().map(str::to_owned));
        assert_eq!(constraint.as_deref(), Some("event_type_known"), "{unknown}");
    }
    insert("insert into event (manager_id, type, data) values ('m', 'order.cancelled', '{}')")
        .await
        .unwrap();
    let data: Value =
        sqlx::query_scalar("select event_data(e) from event e where manager_id = 'm' and type = 'order.cancelled'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(data, json!({}));
}

#[sqlx::test]
async fn the_feed_checks_every_parameter_and_links_pages_keeping_its_filters(db: PgPool) {
    let app = spawn_app(db).await;
    let m = "mgr_feed";
    for i in 0..3 {
        app.seed(m, &format!("P{i}"), 1.0, 5).await;
    }
    let other = app.seed("other", "Theirs", 1.0, 5).await;
    assert_eq!(other, "prod_004");

    let (status, error) = error_of(
        app.get("/api/events?after=evt_1&types=order.processed,nope&limit=0")
            .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        error["details"].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["after", "limit", "manager_id", "types"]
    );

    // An event of another manager's feed, or none at all, is a bad cursor.
    let theirs = all_events(&app, "other").await;
    let their_id = theirs[0]["id"].as_str().unwrap();
    for after in [their_id, "evt_999"] {
        let (status, error) = error_of(app.get(&format!("/api/events?manager_id={m}&after={after}")).await).await;
        assert_eq!(status, 400, "{after}");
        assert_eq!(error["details"]["after"], "is not an event of this manager's feed");
    }

    let response = app
        .get(&format!("/api/events?manager_id={m}&types=inventory.changed&limit=2"))
        .await;
    assert_eq!(response.status(), 200);
    let link = helpers::header(&response, "link").to_owned();
    let page = body(response).await;
    let first: Vec<_> = page["events"].as_array().unwrap().iter().collect();
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|e| e["type"] == "inventory.changed"));
    let after = first[1]["id"].as_str().unwrap();
    assert_eq!(
        link,
        format!("</api/events?manager_id={m}&types=inventory.changed&limit=2&after={after}>; rel=\"next\"")
    );
    let last = app.get(link.trim_start_matches('<').split('>').next().unwrap()).await;
    assert!(last.headers().get("link").is_none(), "no link on the last page");
    let rest = body(last).await;
    assert_eq!(rest["events"].as_array().unwrap().len(), 1);
    assert_eq!(rest["events"][0]["data"]["product_id"], "prod_003");
}

/// A small deterministic generator (SplitMix64): reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const MANAGERS: usize = 2;
const PRODUCTS_PER_MANAGER: usize = 4;
const WRITERS: u64 = 8;
const STEPS: u64 = 30;
const SLOW_SESSIONS: u64 = 3;
const READERS_PER_MANAGER: u64 = 3;

fn manager(m: usize) -> String {
    format!("mgr_feed_{m}")
}

/// One client writing at random through both instances: orders (some
/// refused), adjustments (some refused), cancels, upserts (some setting the
/// same quantity).
async fn writer(apps: &[TestApp], seed: u64, id: u64, products: &[Vec<String>]) -> u64 {
    let mut rng = Rng(seed ^ (id + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut orders: Vec<(usize, String)> = Vec::new();
    let mut refused = 0;
    for step in 0..STEPS {
        let app = &apps[rng.below(apps.len() as u64) as usize];
        let m = rng.below(MANAGERS as u64) as usize;
        let pick = |rng: &mut Rng| products[m][rng.below(PRODUCTS_PER_MANAGER as u64) as usize].clone();
        let (path, body) = match rng.below(10) {
            0..=3 => {
                let (a, b) = (pick(&mut rng), pick(&mut rng));
                let mut lines = vec![json!({"product_id": a, "quantity": 1 + rng.below(30)})];
                if a != b {
                    lines.push(json!({"product_id": b, "quantity": 1 + rng.below(3)}));
                }
                let customer = format!("c{id}_{step}");
                (
                    ORDERS.to_owned(),
                    json!({"manager_id": manager(m), "customer": {"id": customer, "email": "c@example.com"},
                           "products": lines}),
                )
            }
            4..=5 => {
                let delta = rng.below(40) as i64 - 25;
                let delta = if delta == 0 { 1 } else { delta };
                (
                    "/api/inventory/adjustments".to_owned(),
                    json!({"manager_id": manager(m), "adjustments": [{"product_id": pick(&mut rng), "delta": delta}]}),
                )
            }
            6..=7 if !orders.is_empty() => {
                let (m, order) = orders.swap_remove(rng.below(orders.len() as u64) as usize);
                (format!("/api/orders/{order}/cancel"), json!({"manager_id": manager(m)}))
            }
            _ => {
                let product = pick(&mut rng);
                let quantity = [20, 40, 60][rng.below(3) as usize];
                let name = format!("P{}", product.trim_start_matches("prod_"));
                (
                    PRODUCTS.to_owned(),
                    json!({"manager_id": manager(m), "products": [
                        {"id": product, "name": name, "price": 2.5, "quantity": quantity}]}),
                )
            }
        };
        let response = app.post(&path, body).await;
        let status = response.status().as_u16();
        assert!(status < 500, "seed {seed}: {path} answered {status}");
        let answer: Value = response.json().await.unwrap_or_default();
        if path == ORDERS && status == 200 {
            orders.push((m, answer["order_id"].as_str().unwrap().to_owned()));
        }
        if status >= 400 {
            refused += 1;
        }
    }
    refused
}

/// A session of its own that changes a product's stock as a write does
/// (product lock, then its events, last) and then keeps its transaction open
/// for a random while before committing or, one time in three, rolling back.
async fn slow_session(db: &PgPool, seed: u64, id: u64, products: &[Vec<String>], stop: &AtomicBool) -> u64 {
    let mut rng = Rng(seed ^ (id + 101).wrapping_mul(0x9e37_79b9));
    let mut rolled_back = 0;
    while !stop.load(Ordering::Relaxed) {
        let m = rng.below(MANAGERS as u64) as usize;
        let product = &products[m][rng.below(PRODUCTS_PER_MANAGER as u64) as usize];
        let number: i64 = product.trim_start_matches("prod_").parse().unwrap();
        let mut tx = db.begin().await.unwrap();
        let (quantity, version): (i32, i64) = sqlx::query_as(
            "update product set quantity = quantity + 1, version = version + 1
              where manager_id = $1 and id = $2 returning quantity, version",
        )
        .bind(manager(m))
        .bind(number)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        let events = json!([{"type": "inventory.changed", "product_id": number, "data": {
            "product_id": product, "quantity": quantity, "previous_quantity": quantity - 1, "delta": 1,
            "version": version, "reason": "adjustment", "reference": null}}]);
        sqlx::query("select event_append($1, $2)")
            .bind(manager(m))
            .bind(events)
            .execute(&mut *tx)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(rng.below(120))).await;
        if rng.below(3) == 0 {
            tx.rollback().await.unwrap();
            rolled_back += 1;
        } else {
            tx.commit().await.unwrap();
        }
    }
    rolled_back
}

/// Pages a manager's feed with `after` as fast as it can, through both
/// instances by turns, until the writers are done and a last read is empty.
async fn reader(apps: &[TestApp], seed: u64, id: u64, m: usize, done: &AtomicBool) -> Vec<Value> {
    let mut rng = Rng(seed ^ (id + 1001).wrapping_mul(0x5851_f42d));
    let mut seen: Vec<Value> = Vec::new();
    loop {
        // Read `done` before the page: a page read after every write ended
        // that comes back empty is the end.
        let finished = done.load(Ordering::SeqCst);
        let app = &apps[rng.below(apps.len() as u64) as usize];
        let mut url = format!("/api/events?manager_id={}&limit={}", manager(m), 1 + rng.below(20));
        if let Some(last) = seen.last() {
            url.push_str(&format!("&after={}", last["id"].as_str().unwrap()));
        }
        let response = app.get(&url).await;
        assert_eq!(response.status(), 200, "seed {seed}: {url}");
        let page: Value = response.json().await.unwrap();
        let events = page["events"].as_array().unwrap();
        if events.is_empty() && finished {
            return seen;
        }
        seen.extend(events.iter().cloned());
    }
}

fn number(id: &Value) -> i64 {
    id.as_str().unwrap()[4..].parse().unwrap()
}

async fn busy_instance(connect: &PgConnectOptions) -> TestApp {
    let pool = PgPoolOptions::new()
        .max_connections(12)
        .connect_with(connect.clone())
        .await
        .expect("pool");
    spawn_app_with(
        pool,
        Settings {
            rate_limit_max: 1_000_000,
            ..helpers::settings()
        },
        None,
    )
    .await
}

#[sqlx::test]
async fn the_cursor_never_skips_or_repeats_under_concurrent_writers(_shared: PgPoolOptions, connect: PgConnectOptions) {
    let seed = std::env::var("EVENTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f00d_u64);
    println!("events seed: {seed} (rerun with EVENTS_SEED={seed})");
    let db = PgPoolOptions::new()
        .max_connections(8)
        .connect_with(connect.clone())
        .await
        .unwrap();
    let apps = vec![busy_instance(&connect).await, busy_instance(&connect).await];
    let mut products = Vec::new();
    for m in 0..MANAGERS {
        let mut ids = Vec::new();
        for p in 0..PRODUCTS_PER_MANAGER {
            let id = apps[0].seed(&manager(m), &format!("Start {m} {p}"), 2.5, 40).await;
            ids.push(id);
        }
        products.push(ids);
    }
    let products = Arc::new(products);
    let (stop_slow, writers_done) = (AtomicBool::new(false), AtomicBool::new(false));

    let writers = async {
        let refused: u64 = join_all((0..WRITERS).map(|id| writer(&apps, seed, id, &products)))
            .await
            .into_iter()
            .sum();
        stop_slow.store(true, Ordering::SeqCst);
        refused
    };
    let slow = async {
        join_all((0..SLOW_SESSIONS).map(|id| slow_session(&db, seed, id, &products, &stop_slow)))
            .await
            .into_iter()
            .sum::<u64>()
    };
    let work = async {
        let (refused, rolled_back) = tokio::join!(writers, slow);
        writers_done.store(true, Ordering::SeqCst);
        (refused, rolled_back)
    };
    let readers = join_all(
        (0..MANAGERS)
            .flat_map(|m| (0..READERS_PER_MANAGER).map(move |r| (m, r)))
            .map(|(m, r)| {
                let writers_done = &writers_done;
                let apps = &apps;
                async move { (m, reader(apps, seed, r + 10 * m as u64, m, writers_done).await) }
            }),
    );
    let ((refused, rolled_back), pages) = tokio::join!(work, readers);
    println!("seed {seed}: {refused} writes refused, {rolled_back} slow transactions rolled back");
    assert!(
        refused > 0 && rolled_back > 0,
        "seed {seed}: the run refused and rolled back something"
    );

    for m in 0..MANAGERS {
        let committed: Vec<(i64, String, Option<i64>, Value)> =
            sqlx::query_as("select id, type, product_id, event_data(e) from event e where manager_id = $1 order by id")
                .bind(manager(m))
                .fetch_all(&db)
                .await
                .unwrap();
        let ids: Vec<i64> = committed.iter().map(|e| e.0).collect();
        for (_, seen) in pages.iter().filter(|(rm, _)| *rm == m) {
            let read: Vec<i64> = seen.iter().map(|e| number(&e["id"])).collect();
            assert_eq!(
                read,
                ids,
                "seed {seed}: a reader of {} saw every committed event exactly once, in order",
                manager(m)
            );
        }

        // Along the feed: each product's versions never go back; each stock
        // change starts where the previous one ended; replaying the deltas
        // from zero gives the stock, and the last version is the product's.
        let mut stock: HashMap<i64, i64> = HashMap::new();
        let mut version: HashMap<i64, i64> = HashMap::new();
        for (id, kind, product, data) in &committed {
            if let (Some(product), Some(v)) = (product, data["version"].as_i64()) {
                let last = version.entry(*product).or_insert(0);
                assert!(
                    v >= *last,
                    "seed {seed}: evt_{id} of prod_{product:03}: version {v} after {last}"
                );
                *last = v;
            }
            if kind == "inventory.changed" {
                let product = product.unwrap();
                let held = stock.entry(product).or_insert(0);
                assert_eq!(
                    data["previous_quantity"].as_i64().unwrap(),
                    *held,
                    "seed {seed}: evt_{id}"
                );
                *held += data["delta"].as_i64().unwrap();
                assert_eq!(data["quantity"].as_i64().unwrap(), *held, "seed {seed}: evt_{id}");
            }
        }
        let rows: Vec<(i64, i32, i64)> =
            sqlx::query_as("select id, quantity, version from product where manager_id = $1")
                .bind(manager(m))
                .fetch_all(&db)
                .await
                .unwrap();
        for (product, quantity, v) in rows {
            assert_eq!(
                stock.get(&product),
                Some(&i64::from(quantity)),
                "seed {seed}: prod_{product:03}"
            );
            assert_eq!(version.get(&product), Some(&v), "seed {seed}: prod_{product:03}");
        }

        // Every order and cancel has its event; no refused write has one.
        let counts: BTreeMap<String, i64> = committed.iter().fold(BTreeMap::new(), |mut counts, e| {
            let key = match e.1.as_str() {
                "inventory.changed" => format!("inventory.changed/{}", e.3["reason"].as_str().unwrap()),
                other => other.to_owned(),
            };
            *counts.entry(key).or_insert(0) += 1;
            counts
        });
        let (orders, cancelled, lines, cancelled_lines, adjustments): (i64, i64, i64, i64, i64) = sqlx::query_as(
            "select (select count(*) from customer_order where manager_id = $1),
                    (select count(*) from customer_order where manager_id = $1 and cancelled_at is not null),
                    (select count(*) from order_line where manager_id = $1),
                    (select count(*) from order_line l join customer_order o on o.manager_id = l.manager_id
                                                       and o.id = l.order_id
                      where l.manager_id = $1 and o.cancelled_at is not null),
                    (select count(*) from stock_adjustment where manager_id = $1)",
        )
        .bind(manager(m))
        .fetch_one(&db)
        .await
        .unwrap();
        let count = |key: &str| counts.get(key).copied().unwrap_or(0);
        assert!(orders > 0 && cancelled > 0, "seed {seed}: {counts:?}");
        assert_eq!(count("order.processed"), orders, "seed {seed}");
        assert_eq!(count("order.cancelled"), cancelled, "seed {seed}");
        assert_eq!(count("inventory.changed/order"), lines, "seed {seed}");
        assert_eq!(count("inventory.changed/cancel"), cancelled_lines, "seed {seed}");
        // Adjustments through the API (one row each) plus the slow sessions'
        // committed changes.
        assert!(count("inventory.changed/adjustment") >= adjustments, "seed {seed}");
    }
    for app in apps {
        app.stop().await;
    }
}

#[sqlx::test]
async fn events_older_than_the_retention_are_deleted_in_bounded_batches(db: PgPool) {
    let app = spawn_app(db).await;
    // 1,250 events (more than one batch) made old, and a few recent ones.
    let items: Vec<Value> = (0..625)
        .map(|i| json!({"name": format!("P{i}"), "price": 1.0, "quantity": 1}))
        .collect();
    let old = app.post(PRODUCTS, json!({"manager_id": "m", "products": items})).await;
    assert_eq!(old.status(), 201);
    sqlx::query("update event set occurred_at = now() - interval '31 days'")
        .execute(&app.db)
        .await
        .unwrap();
    app.seed("m", "Fresh", 1.0, 1).await;
    let service_db: ecommerce_api::db::Db = app.db.clone().into();

    let forgotten = ecommerce_api::store::events::forget_older_than(&service_db, 30)
        .await
        .unwrap();
    assert_eq!(forgotten, 1250);
    let left = all_events(&app, "m").await;
    assert_eq!(types(&left), ["product.created", "inventory.changed"]);
    assert_eq!(left[0]["data"]["name"], "Fresh");
    assert_eq!(
        ecommerce_api::store::events::forget_older_than(&service_db, 30)
            .await
            .unwrap(),
        0
    );
    app.stop().await;
}

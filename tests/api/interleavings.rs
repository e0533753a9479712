//! Random interleavings, reproducible from a printed seed: many clients at
//! once upsert, discontinue, adjust, order and cancel (some orders and
//! adjustments with idempotency keys, retried) for a handful of managers;
//! then the database is checked against the rules, using a history of every
//! stock change that a test-only trigger records in lock order, and the
//! event feed against the database (deltas replay to the stock; one event
//! per order and per cancel).
//!
//! Each kind of change has sizes of its own, so every recorded change is
//! recognisably one kind: stock is only ever set to `1_000_000 * k + 500_000`
//! for a fresh `k` (a jump of about a million), order lines take 1 to 5 units
//! and cancels return them (+1 to 5), adjustments move 10 to 60 units.

use std::collections::{HashMap, HashSet};

use ecommerce_api::config::Settings;
use futures::future::join_all;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{TestApp, settings, spawn_app_with};

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

const MANAGERS: u64 = 3;
const PRODUCTS_PER_MANAGER: u64 = 4;
const CLIENTS: u64 = 8;
const STEPS: u64 = 40;
const SET_BASE: i64 = 500_000;

/// Installs the history of product changes (test database only).
async fn record_history(db: &PgPool) {
    for statement in [
        "create table stock_history (seq bigserial primary key, product_id bigint, old_q int, new_q int,
                                     old_discontinued bool, new_discontinued bool)",
        "create function stock_history_add() returns trigger language plpgsql as $$
         begin
           insert into stock_history (product_id, old_q, new_q, old_discontinued, new_discontinued)
           values (new.id, old.quantity, new.quantity, old.discontinued_at is not null, new.discontinued_at is not null);
           return null;
         end $$",
        "create trigger stock_history after update on product for each row execute function stock_history_add()",
    ] {
        sqlx::query(statement).execute(db).await.unwrap();
    }
}

/// What a client did and saw.
#[derive(Default)]
struct Seen {
    requests: Vec<String>,
    statuses: Vec<u16>,
    orders: HashSet<String>,
    /// Orders this client placed, by manager, to cancel later.
    placed: Vec<(usize, String)>,
}

async fn client(
    app: &TestApp,
    seed: u64,
    id: u64,
    products: &[Vec<String>],
    sets: &std::sync::atomic::AtomicI64,
) -> Seen {
    let mut rng = Rng(seed ^ (id + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut seen = Seen::default();
    for step in 0..STEPS {
        let m = rng.below(MANAGERS) as usize;
        let manager = format!("mgr{m}");
        let pick = |rng: &mut Rng| products[m][rng.below(PRODUCTS_PER_MANAGER) as usize].clone();
        let (body, path, key): (Value, String, Option<String>) = match rng.below(12) {
            0..=2 => {
                let k = sets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let product = pick(&mut rng);
                (
                    json!({"manager_id": manager, "products": [{"id": product, "name": format!("P {product}"),
                        "price": 1.25, "quantity": 1_000_000 * k + SET_BASE}]}),
                    "/api/inventory/products".into(),
                    None,
                )
            }
            3 if rng.below(4) == 0 => (
                json!({"manager_id": manager, "product_id": pick(&mut rng)}),
                "/api/inventory/discontinue".into(),
                None,
            ),
            4 | 5 => {
                let mut chosen: Vec<String> = (0..1 + rng.below(2)).map(|_| pick(&mut rng)).collect();
                chosen.sort();
                chosen.dedup();
                let items: Vec<Value> = chosen
                    .iter()
                    .map(|p| {
                        let size = 10 + rng.below(51) as i64;
                        json!({"product_id": p, "delta": if rng.below(2) == 0 { size } else { -size }})
                    })
                    .collect();
                let key = (rng.below(3) == 0).then(|| format!("adj-{id}-{step}"));
                (
                    json!({"manager_id": manager, "adjustments": items}),
                    "/api/inventory/adjustments".into(),
                    key,
                )
            }
            6 if !seen.placed.is_empty() => {
                let (m, order) = seen.placed[rng.below(seen.placed.len() as u64) as usize].clone();
                (
                    json!({"manager_id": format!("mgr{m}")}),
                    format!("/api/orders/{order}/cancel"),
                    None,
                )
            }
            _ => {
                let lines = 1 + rng.below(3);
                let mut chosen: Vec<String> = (0..lines).map(|_| pick(&mut rng)).collect();
                chosen.sort();
                chosen.dedup();
                let lines: Vec<Value> = chosen
                    .iter()
                    .map(|p| json!({"product_id": p, "quantity": 1 + rng.below(5)}))
                    .collect();
                let key = (rng.below(3) == 0).then(|| format!("key-{id}-{step}"));
                (
                    json!({"manager_id": manager, "customer": {"id": "c", "email": "c@example.com"}, "products": lines}),
                    "/api/orders/process".into(),
                    key,
                )
            }
        };
        let attempts = if key.is_some() { 1 + rng.below(3) } else { 1 };
        let mut order_ids = HashSet::new();
        for attempt in 0..attempts {
            let request_id = format!("il-c{id}-s{step}-a{attempt}");
            let mut request = app
                .client
                .post(app.url(&path))
                .header("x-request-id", &request_id)
                .json(&body);
            if let Some(key) = &key {
                request = request.header("idempotency-key", key);
            }
            let response = request.send().await.expect("an answer");
            seen.requests.push(request_id);
            seen.statuses.push(response.status().as_u16());
            if response.status() == 200 && path == "/api/orders/process" {
                let body: Value = response.json().await.unwrap();
                order_ids.insert(body["order_id"].as_str().unwrap().to_owned());
            }
        }
        assert!(
            order_ids.len() <= 1,
            "retries with one key got several orders: {order_ids:?}"
        );
        seen.placed.extend(order_ids.iter().map(|o| (m, o.clone())));
        seen.orders.extend(order_ids);
    }
    seen
}

#[sqlx::test]
async fn random_interleavings_keep_every_stock_rule(db: PgPool) {
    let seed = std::env::var("INTERLEAVING_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::from(std::process::id()) ^ chrono::Utc::now().timestamp_micros() as u64);
    println!("interleaving seed: {seed} (rerun with INTERLEAVING_SEED={seed})");
    record_history(&db).await;
    let app = spawn_app_with(
        db.clone(),
        Settings {
            rate_limit_max: 1_000_000,
            ..settings()
        },
        None,
    )
    .await;
    let sets = std::sync::atomic::AtomicI64::new(1);
    let mut products = Vec::new();
    for m in 0..MANAGERS {
        let mut ids = Vec::new();
        for p in 0..PRODUCTS_PER_MANAGER {
            let k = sets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let quantity = if p == 0 { 3 } else { 1_000_000 * k + SET_BASE };
            ids.push(
                app.seed(&format!("mgr{m}"), &format!("Start {p}"), 1.25, quantity)
                    .await,
            );
        }
        products.push(ids);
    }

    let seen: Vec<Seen> = join_all((0..CLIENTS).map(|id| client(&app, seed, id, &products, &sets))).await;
    app.stop().await;

    // No 5xx; one audit record per request.
    let statuses: Vec<u16> = seen.iter().flat_map(|s| s.statuses.clone()).collect();
    assert!(statuses.iter().all(|s| *s < 500), "seed {seed}: {statuses:?}");
    let audited: Vec<(String, i64)> =
        sqlx::query_as("select request_id, count(*) from audit_log where request_id like 'il-%' group by request_id")
            .fetch_all(&db)
            .await
            .unwrap();
    let audited: HashMap<String, i64> = audited.into_iter().collect();
    let requests: Vec<&String> = seen.iter().flat_map(|s| &s.requests).collect();
    assert_eq!(audited.len(), requests.len(), "seed {seed}");
    assert!(requests.iter().all(|r| audited.get(*r) == Some(&1)), "seed {seed}");

    // Every order in the database was answered to a client; totals add up.
    let answered: HashSet<String> = seen.iter().flat_map(|s| s.orders.clone()).collect();
    let orders: Vec<(i64, String, String)> = sqlx::query_as(
        "select o.id, o.total_amount::text, coalesce(sum(l.unit_price * l.quantity), 0)::text
           from customer_order o left join order_line l on l.manager_id = o.manager_id and l.order_id = o.id
          group by o.id, o.total_amount",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(
        orders.len(),
        answered.len(),
        "seed {seed}: no order nobody was told about"
    );
    for (id, total, lines) in &orders {
        assert!(answered.contains(&format!("ord_{id:03}")), "seed {seed}: ord_{id:03}");
        assert_eq!(total, lines, "seed {seed}: total of ord_{id:03}");
    }

    // Per product, in lock order: each change starts where the last ended;
    // sales never touch a discontinued product; units sold equal the order
    // lines, units returned the lines of cancelled orders, adjustments the
    // recorded differences.
    let history: Vec<(i64, i32, i32, bool)> =
        sqlx::query_as("select product_id, old_q, new_q, old_discontinued from stock_history order by product_id, seq")
            .fetch_all(&db)
            .await
            .unwrap();
    let per_product = |sql: &'static str| {
        let db = db.clone();
        async move {
            let rows: Vec<(i64, i64)> = sqlx::query_as(sql).fetch_all(&db).await.unwrap();
            rows.into_iter().collect::<HashMap<i64, i64>>()
        }
    };
    let sold = per_product("select product_id, sum(quantity)::bigint from order_line group by product_id").await;
    let returned = per_product(
        "select l.product_id, sum(l.quantity)::bigint from order_line l join customer_order o
           on o.manager_id = l.manager_id and o.id = l.order_id
         where o.cancelled_at is not null group by l.product_id",
    )
    .await;
    let adjusted = per_product("select product_id, sum(delta)::bigint from stock_adjustment group by product_id").await;
    let current: Vec<(i64, i32)> = sqlx::query_as("select id, quantity from product")
        .fetch_all(&db)
        .await
        .unwrap();
    for (product, quantity) in current {
        let changes: Vec<_> = history.iter().filter(|h| h.0 == product).collect();
        for pair in changes.windows(2) {
            assert_eq!(
                pair[0].2, pair[1].1,
                "seed {seed}: prod_{product:03} changed from a stale value"
            );
        }
        let (mut sold_here, mut returned_here, mut adjusted_here) = (0i64, 0i64, 0i64);
        for &&(_, old, new, was_discontinued) in &changes {
            assert!(new >= 0, "seed {seed}");
            let change = i64::from(new) - i64::from(old);
            match change {
                0 => {}
                -5..=-1 => {
                    assert!(
                        !was_discontinued,
                        "seed {seed}: prod_{product:03} sold after it was discontinued"
                    );
                    sold_here -= change;
                }
                1..=5 => returned_here += change,
                -60..=-10 | 10..=60 => adjusted_here += change,
                _ => assert!(
                    change.abs() > 100_000 && i64::from(new) % 1_000_000 == SET_BASE,
                    "seed {seed}: prod_{product:03} {old} -> {new} is no known kind of change"
                ),
            }
        }
        assert_eq!(
            sold_here,
            sold.get(&product).copied().unwrap_or(0),
            "seed {seed}: sold prod_{product:03}"
        );
        assert_eq!(
            returned_here,
            returned.get(&product).copied().unwrap_or(0),
            "seed {seed}: returned prod_{product:03}"
        );
        assert_eq!(
            adjusted_here,
            adjusted.get(&product).copied().unwrap_or(0),
            "seed {seed}: adjusted prod_{product:03}"
        );
        if let Some(last) = changes.last() {
            assert_eq!(last.2, quantity, "seed {seed}");
        }
    }
    // The feed: replaying each product's `inventory.changed` deltas in feed
    // order from zero gives its stock, each event starting where the one
    // before ended; every order has one `order.processed` and every
    // cancelled order one `order.cancelled`, and there are no others.
    let changed: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
        "select product_id, (event_data(e)->>'previous_quantity')::bigint, (event_data(e)->>'delta')::bigint,
                (event_data(e)->>'quantity')::bigint
           from event e where type = 'inventory.changed' order by manager_id, id",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let stock: Vec<(i64, i32)> = sqlx::query_as("select id, quantity from product")
        .fetch_all(&db)
        .await
        .unwrap();
    for (product, quantity) in stock {
        let mut replayed = 0i64;
        for &(_, previous, delta, after) in changed.iter().filter(|c| c.0 == product) {
            assert_eq!(
                previous, replayed,
                "seed {seed}: prod_{product:03}'s feed skips a change"
            );
            assert_eq!(previous + delta, after, "seed {seed}: prod_{product:03}'s delta");
            replayed = after;
        }
        assert_eq!(
            replayed,
            i64::from(quantity),
            "seed {seed}: prod_{product:03}'s deltas replay to its stock"
        );
    }
    let events_of = |kind: &'static str| {
        let db = db.clone();
        async move {
            let mut ids: Vec<String> =
                sqlx::query_scalar("select event_data(e)->>'order_id' from event e where type = $1")
                    .bind(kind)
                    .fetch_all(&db)
                    .await
                    .unwrap();
            ids.sort();
            ids
        }
    };
    let order_ids = |sql: &'static str| {
        let db = db.clone();
        async move {
            let ids: Vec<i64> = sqlx::query_scalar(sql).fetch_all(&db).await.unwrap();
            let mut ids: Vec<String> = ids.into_iter().map(|id| format!("ord_{id:03}")).collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(
        events_of("order.processed").await,
        order_ids("select id from customer_order").await,
        "seed {seed}: one order.processed per order"
    );
    assert_eq!(
        events_of("order.cancelled").await,
        order_ids("select id from customer_order where cancelled_at is not null").await,
        "seed {seed}: one order.cancelled per cancelled order"
    );

    println!(
        "interleaving seed {seed}: {} requests, {} orders, {} stock changes",
        requests.len(),
        orders.len(),
        history.len()
    );
}

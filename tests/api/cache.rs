//! The product-list cache: keyed by manager and query, invalidated by every
//! kind of write before it responds, validated with `ETag`/`If-None-Match`,
//! and shared through Redis by several instances.

use ecommerce_api::config::Settings;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{TestApp, header, metric, on_both_backends, redis_url, settings, spawn_app_with};

const LIST: &str = "/api/inventory/products";

/// A product as listed: id, name, price, quantity.
type Listed = (String, String, f64, i64);

fn listed(body: &Value) -> Vec<Listed> {
    let keys: Vec<&String> = body.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["products"], "{body}");
    body["products"]
        .as_array()
        .expect("products")
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_owned(),
                p["name"].as_str().unwrap().to_owned(),
                p["price"].to_string().parse().unwrap(),
                p["quantity"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// `GET` the list with `query` (after `manager_id=...&`), expecting 200.
async fn list(app: &TestApp, manager: &str, query: &str) -> Vec<Listed> {
    let response = app.get(&format!("{LIST}?manager_id={manager}{query}")).await;
    assert_eq!(response.status(), 200, "{query}");
    listed(&response.json().await.unwrap())
}

/// The list `query` must return, read from the database.
async fn truth(db: &PgPool, manager: &str, status: Option<&str>, after: i64, limit: i64) -> Vec<Listed> {
    let rows: Vec<(i64, String, String, i32)> = sqlx::query_as(
        "select id, name, price::text, quantity from product
          where manager_id = $1 and id > $2
            and case $3::text
                  when 'in_stock' then discontinued_at is null and quantity > 0
                  when 'out_of_stock' then discontinued_at is null and quantity = 0
                  when 'discontinued' then discontinued_at is not null
                  else true end
          order by id limit $4",
    )
    .bind(manager)
    .bind(after)
    .bind(status)
    .bind(limit)
    .fetch_all(db)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(id, name, price, quantity)| {
            (
                format!("prod_{id:03}"),
                name,
                price.parse().unwrap(),
                i64::from(quantity),
            )
        })
        .collect()
}

const STATUSES: [Option<&str>; 4] = [None, Some("in_stock"), Some("out_of_stock"), Some("discontinued")];

fn status_query(status: Option<&str>) -> String {
    status.map_or_else(String::new, |s| format!("&status={s}"))
}

/// Reads every status list of `manager` through `reader` (twice, so they
/// are cached) and checks each against the database.
async fn every_list_is_fresh(reader: &TestApp, db: &PgPool, manager: &str, after_what: &str) {
    for _ in 0..2 {
        for status in STATUSES {
            assert_eq!(
                list(reader, manager, &status_query(status)).await,
                truth(db, manager, status, 0, 1000).await,
                "status {status:?} after {after_what}"
            );
        }
    }
}

fn ids(list: &[Listed]) -> Vec<&str> {
    list.iter().map(|p| p.0.as_str()).collect()
}

/// Lists through `reader`, writes through `writer` (each kind of write), and
/// lists through `reader` again: never the old data.
async fn reads_after_each_kind_of_write_are_fresh(writer: &TestApp, reader: &TestApp) {
    let db = &writer.db;
    let m = "fresh";
    let item = |name: &str, price: f64, quantity: i64| json!({"name": name, "price": price, "quantity": quantity});
    every_list_is_fresh(reader, db, m, "nothing").await;
    assert!(list(reader, m, "").await.is_empty());

    // Add.
    let tea = writer.seed(m, "Tea", 2.5, 10).await;
    every_list_is_fresh(reader, db, m, "an addition").await;
    assert_eq!(ids(&list(reader, m, "&status=in_stock").await), [tea.as_str()]);

    // Update by name: quantity set to 0, price changed.
    let response = writer
        .post(LIST, json!({"manager_id": m, "products": [item(" tea ", 3.0, 0)]}))
        .await;
    assert_eq!(response.status(), 201);
    every_list_is_fresh(reader, db, m, "an update by name").await;
    assert_eq!(list(reader, m, "").await, [(tea.clone(), "tea".to_owned(), 3.0, 0)]);
    assert_eq!(ids(&list(reader, m, "&status=out_of_stock").await), [tea.as_str()]);
    assert!(list(reader, m, "&status=in_stock").await.is_empty());

    // Rename by id.
    let response = writer
        .post(
            LIST,
            json!({"manager_id": m, "products": [{"id": tea, "name": "Green Tea", "price": 3.0, "quantity": 7}]}),
        )
        .await;
    assert_eq!(response.status(), 201);
    every_list_is_fresh(reader, db, m, "a rename by id").await;
    assert_eq!(
        list(reader, m, "").await,
        [(tea.clone(), "Green Tea".to_owned(), 3.0, 7)]
    );

    // Order.
    let coffee = writer.seed(m, "Coffee", 9.99, 5).await;
    every_list_is_fresh(reader, db, m, "a second addition").await;
    let response = writer
        .post(
            "/api/orders/process",
            json!({"manager_id": m, "customer": {"id": "c1", "email": "c1@example.com"},
                   "products": [{"product_id": coffee, "quantity": 5}, {"product_id": tea, "quantity": 2}]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    every_list_is_fresh(reader, db, m, "an order").await;
    assert_eq!(ids(&list(reader, m, "&status=out_of_stock").await), [coffee.as_str()]);
    assert_eq!(list(reader, m, "&status=in_stock").await[0].3, 5);

    // Discontinue.
    writer.discontinue(m, &tea).await;
    every_list_is_fresh(reader, db, m, "a discontinuation").await;
    assert_eq!(ids(&list(reader, m, "&status=discontinued").await), [tea.as_str()]);
    assert!(list(reader, m, "&status=in_stock").await.is_empty());
}

on_both_backends!(
    a_list_read_after_each_kind_of_write_shows_the_write,
    if_none_match_gets_304_until_a_write_changes_the_list,
    different_queries_are_cached_separately_and_correctly,
    a_second_identical_list_is_served_from_the_cache,
);

async fn a_list_read_after_each_kind_of_write_shows_the_write(db: PgPool, redis: Option<&str>) {
    // Arrange
    let app = spawn_app_with(db, settings(), redis).await;

    // Act / Assert: read, write, read again, for each kind of write.
    reads_after_each_kind_of_write_are_fresh(&app, &app).await;
    app.stop().await;
}

async fn if_none_match_gets_304_until_a_write_changes_the_list(db: PgPool, redis: Option<&str>) {
    // Arrange: one product, its list and ETag.
    let app = spawn_app_with(db, settings(), redis).await;
    app.seed("tagged", "Cup", 4.0, 3).await;
    let url = app.url(&format!("{LIST}?manager_id=tagged"));
    let first = app.client.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let etag = header(&first, "etag").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "a strong ETag: {etag}");
    let first_body = first.text().await.unwrap();

    // Act
    let unchanged = app
        .client
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    let other_tag = app
        .client
        .get(&url)
        .header("if-none-match", "\"something-else\"")
        .send()
        .await
        .unwrap();
    app.seed("tagged", "Saucer", 2.0, 1).await;
    let changed = app
        .client
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(unchanged.status(), 304);
    assert_eq!(header(&unchanged, "etag"), etag);
    assert_eq!(unchanged.text().await.unwrap(), "", "a 304 has no body");
    assert_eq!(other_tag.status(), 200);
    assert_eq!(other_tag.text().await.unwrap(), first_body);
    assert_eq!(changed.status(), 200, "the old ETag no longer matches");
    let new_etag = header(&changed, "etag").to_owned();
    assert_ne!(new_etag, etag);
    let names: Vec<String> = listed(&changed.json().await.unwrap())
        .into_iter()
        .map(|p| p.1)
        .collect();
    assert_eq!(names, ["Cup", "Saucer"]);
    let again = app
        .client
        .get(&url)
        .header("if-none-match", &new_etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    app.stop().await;
}

async fn different_queries_are_cached_separately_and_correctly(db: PgPool, redis: Option<&str>) {
    // Arrange: two managers; one with products in every status.
    let app = spawn_app_with(db.clone(), settings(), redis).await;
    let a = "many";
    let mut products = Vec::new();
    for (i, quantity) in [5, 0, 7, 0, 9].into_iter().enumerate() {
        products.push(app.seed(a, &format!("P{i}"), 1.0 + i as f64, quantity).await);
    }
    app.discontinue(a, &products[2]).await;
    app.seed("other", "Elsewhere", 1.0, 1).await;
    let number = |id: &String| id.trim_start_matches("prod_").parse::<i64>().unwrap();
    let queries: Vec<(&str, String, Option<&str>, i64, i64)> = vec![
        (a, String::new(), None, 0, 1000),
        (a, "&status=in_stock".into(), Some("in_stock"), 0, 1000),
        (a, "&status=out_of_stock".into(), Some("out_of_stock"), 0, 1000),
        (a, "&status=discontinued".into(), Some("discontinued"), 0, 1000),
        (a, "&limit=2".into(), None, 0, 2),
        (
            a,
            format!("&limit=2&after={}", products[1]),
            None,
            number(&products[1]),
            2,
        ),
        (a, format!("&after={}", products[3]), None, number(&products[3]), 1000),
        (a, "&status=out_of_stock&limit=1".into(), Some("out_of_stock"), 0, 1),
        ("other", String::new(), None, 0, 1000),
        ("other", "&limit=2".into(), None, 0, 2),
    ];

    // Act / Assert: each query, then each again in reverse order (now cached).
    let mut order: Vec<_> = queries.iter().collect();
    for round in 0..2 {
        for (manager, query, status, after, limit) in &order {
            assert_eq!(
                list(&app, manager, query).await,
                truth(&db, manager, *status, *after, *limit).await,
                "{manager} {query} (round {round})"
            );
        }
        order.reverse();
    }
    // The first page of two links to the next; the last page does not.
    let first_page = app.get(&format!("{LIST}?manager_id={a}&limit=2")).await;
    assert_eq!(
        header(&first_page, "link"),
        format!(
            "</api/inventory/products?manager_id={a}&limit=2&after={}>; rel=\"next\"",
            products[1]
        )
    );
    let last_page = app
        .get(&format!("{LIST}?manager_id={a}&limit=2&after={}", products[3]))
        .await;
    assert!(last_page.headers().get("link").is_none());
    app.stop().await;
}

async fn hits(app: &TestApp) -> f64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    metric(&text, r#"product_cache_lookups_total{result="hit"}"#).unwrap_or(0.0)
}

async fn a_second_identical_list_is_served_from_the_cache(db: PgPool, redis: Option<&str>) {
    // Arrange: a cached list.
    let app = spawn_app_with(db.clone(), settings(), redis).await;
    let id = app.seed("hit", "Kettle", 30.0, 4).await;
    let url = format!("{LIST}?manager_id=hit");
    let first = app.get(&url).await;
    let etag = header(&first, "etag").to_owned();
    assert_eq!(listed(&first.json().await.unwrap())[0].3, 4);
    let hits_before = hits(&app).await;
    // A change behind the service's back, which only a cache would hide.
    sqlx::query("update product set quantity = 99 where manager_id = 'hit'")
        .execute(&db)
        .await
        .unwrap();

    // Act
    let second = app.get(&url).await;

    // Assert: the cached body, same ETag, counted as a hit.
    assert_eq!(header(&second, "etag"), etag);
    assert_eq!(listed(&second.json().await.unwrap())[0].3, 4, "served from the cache");
    assert!(hits(&app).await >= hits_before + 1.0, "a cache hit was counted");
    // A write through the service makes the next read fresh again.
    let response = app
        .post(
            LIST,
            json!({"manager_id": "hit", "products": [{"id": id, "name": "Kettle", "price": 31.0, "quantity": 5}]}),
        )
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(list(&app, "hit", "").await[0], (id, "Kettle".to_owned(), 31.0, 5));
    app.stop().await;
}

#[sqlx::test]
async fn two_instances_sharing_redis_never_serve_a_list_older_than_a_write(db: PgPool) {
    // Arrange: two apps, one database, one Redis prefix.
    let shared = Settings {
        rate_limit_max: 10_000,
        ..settings()
    };
    let redis = redis_url();
    let writer = spawn_app_with(db.clone(), shared.clone(), Some(&redis)).await;
    let reader = spawn_app_with(db, shared, Some(&redis)).await;

    // Act / Assert: read through one, write through the other, read again.
    reads_after_each_kind_of_write_are_fresh(&writer, &reader).await;
    writer.stop().await;
    reader.stop().await;
}

//! Products: list, add or update in one transaction, discontinue.

use std::collections::HashMap;

use serde::Serialize;

use super::{Committed, Failure, is_transient, retrying, violates};
use crate::domain::{
    ManagerId, Money, ProductId,
    problems::Details,
    product::{ProductStatus, UpsertProducts},
};
use crate::error::{AppError, Code};
use crate::{audit::AuditEntry, db::Db};

/// The unique index on (manager, name key): the arbiter of concurrent creations.
const NAME_INDEX: &str = "product_manager_name_key";

/// Why a batch was refused; every offending item is listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpsertRefusal {
    /// Items whose `id` is not one of the manager's products.
    NotFound(Details),
    /// Items that resolve to a product another item already updates.
    Twice(Details),
    /// Items whose new name another of the manager's products has.
    NameTaken(Details),
}

impl From<UpsertRefusal> for AppError {
    fn from(refusal: UpsertRefusal) -> Self {
        match refusal {
            UpsertRefusal::NotFound(d) => Self::new(Code::ProductNotFound).with_details(d),
            UpsertRefusal::Twice(d) => Self::new(Code::InvalidRequest).with_details(d),
            UpsertRefusal::NameTaken(d) => Self::new(Code::ProductNameTaken).with_details(d),
        }
    }
}

/// A product as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = Product, example = json!({"id": "prod_001", "name": "Premium Coffee Beans", "price": 15.99, "quantity": 100}))]
pub struct ProductRow {
    /// Public id, `prod_001` onwards.
    #[schema(value_type = String, example = "prod_001")]
    pub id: ProductId,
    /// Name, trimmed, unique per manager (case-insensitive).
    pub name: String,
    /// Price, a number with at most 2 decimals.
    #[schema(value_type = f64, example = 15.99)]
    pub price: Money,
    /// Units in stock.
    pub quantity: i32,
}

/// A product with its status and times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"id": "prod_001", "name": "Premium Coffee Beans", "price": 15.99, "quantity": 100,
    "status": "in_stock", "created_at": "2026-12-01T09:30:00.000000Z", "updated_at": "2026-12-02T14:05:12.345678Z",
    "low_stock_threshold": 10, "version": 4}))]
pub struct ProductDetail {
    /// Public id.
    #[schema(value_type = String, example = "prod_001")]
    pub id: ProductId,
    /// Name, trimmed, unique per manager (case-insensitive).
    pub name: String,
    /// Price, a number with at most 2 decimals.
    #[schema(value_type = f64, example = 15.99)]
    pub price: Money,
    /// Units in stock.
    pub quantity: i32,
    /// `in_stock`, `out_of_stock` or `discontinued` (derived).
    #[schema(value_type = String, pattern = "^(in_stock|out_of_stock|discontinued)$")]
    pub status: ProductStatus,
    /// When it was created (RFC 3339, UTC).
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it last changed (RFC 3339, UTC).
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// Below this many units a change records `inventory.low_stock`; null
    /// for none.
    #[schema(example = 10)]
    pub low_stock_threshold: Option<i32>,
    /// Raised by one with every change of the product (its events carry it).
    #[schema(example = 4)]
    pub version: i64,
}

/// The manager's product `id`, if it is theirs.
pub async fn get(db: &Db, manager: &ManagerId, id: ProductId) -> Result<Option<ProductDetail>, sqlx::Error> {
    let row = sqlx::query!(
        r#"select id as "id: ProductId", name, price as "price: Money", quantity,
                  discontinued_at is not null as "discontinued!", created_at, updated_at,
                  low_stock_threshold, version
             from product where manager_id = $1 and id = $2"#,
        manager.as_str(),
        id.get()
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| ProductDetail {
        id: r.id,
        name: r.name,
        price: r.price,
        quantity: r.quantity,
        status: ProductStatus::of(r.quantity, r.discontinued),
        created_at: r.created_at,
        updated_at: r.updated_at,
        low_stock_threshold: r.low_stock_threshold,
        version: r.version,
    }))
}

/// One page of a manager's products.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// Whose products.
    pub manager: ManagerId,
    /// Only products with this status, if given.
    pub status: Option<ProductStatus>,
    /// Products with ids above this one.
    pub after: Option<ProductId>,
    /// At most this many.
    pub limit: i64,
}

/// The page `query` asks for, ordered by id.
pub async fn list(db: &Db, query: &ListQuery) -> Result<Vec<ProductRow>, sqlx::Error> {
    // The status is derived here exactly as `ProductStatus::of` derives it.
    sqlx::query_as!(
        ProductRow,
        r#"select id as "id: ProductId", name, price as "price: Money", quantity
             from product
            where manager_id = $1
              and id > $2
              and case $3::text
                    when 'in_stock' then discontinued_at is null and quantity > 0
                    when 'out_of_stock' then discontinued_at is null and quantity = 0
                    when 'discontinued' then discontinued_at is not null
                    else true
                  end
            order by id
            limit $4"#,
        query.manager.as_str(),
        query.after.map_or(0, ProductId::get),
        query.status.map(ProductStatus::as_str),
        query.limit,
    )
    .fetch_all(db)
    .await
}

/// A product the batch touches, as it was before the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    /// Its id.
    pub id: ProductId,
    /// Its name's comparison key (`ProductName::key`).
    pub key: String,
    /// What its events need of it: the values before this change.
    pub before: Before,
}

/// The values of an existing product that its events need, read when the
/// batch locks it (so nothing changes them before the batch commits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Before {
    /// Units in stock.
    pub quantity: i32,
    /// Its version (the change makes it one more).
    pub version: i64,
    /// Its low-stock threshold.
    pub threshold: Option<i32>,
    /// Whether it is discontinued (an upsert keeps that).
    pub discontinued: bool,
    /// When it was created.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// One event of an upsert, as the statement passes it to
/// `event_append_columns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpsertEvent {
    /// The item it is about (1 for the first item).
    pub item: i32,
    /// Its type.
    pub kind: &'static str,
    /// The quantity after the change (every event carries it).
    pub quantity: i32,
    /// The product's version after the change.
    pub version: i64,
    /// `inventory.changed`: the quantity before.
    pub previous: Option<i32>,
    /// The threshold after the change (`product.*` and `inventory.low_stock`).
    pub threshold: Option<i32>,
    /// `product.*`: the name, price and whether it is discontinued.
    pub product: Option<(String, rust_decimal::Decimal, bool)>,
    /// `product.updated`: when it was created (none for a product the
    /// statement creates: the transaction's time).
    pub created: Option<chrono::DateTime<chrono::Utc>>,
}

/// The events of `batch` applied with `targets` (from `plan`) to the
/// products `before` describes, in feed order: item by item, the product
/// as its read shows it (`product.created` or `product.updated`), then its
/// stock change (none when the quantity is the same; a new product's is
/// from none) and the threshold crossed (a new product crosses none: it had
/// no stock to be at or above it).
pub fn upsert_events(
    batch: &UpsertProducts,
    targets: &[Option<ProductId>],
    before: &HashMap<ProductId, Before>,
) -> Vec<UpsertEvent> {
    let mut events = Vec::with_capacity(batch.items.len() * 2);
    for (i, (item, target)) in batch.items.iter().zip(targets).enumerate() {
        let was = target.and_then(|id| before.get(&id));
        let version = was.map_or(1, |b| b.version + 1);
        let threshold = item
            .low_stock_threshold
            .unwrap_or_else(|| was.and_then(|b| b.threshold));
        let previous = was.map(|b| b.quantity);
        let event = |kind| UpsertEvent {
            item: i32::try_from(i + 1).expect("a batch holds at most 1,000 items"),
            kind,
            quantity: item.quantity,
            version,
            previous: None,
            threshold: None,
            product: None,
            created: None,
        };
        events.push(UpsertEvent {
            threshold,
            product: Some((
                item.name.as_str().to_owned(),
                item.price.amount(),
                was.is_some_and(|b| b.discontinued),
            )),
            created: was.map(|b| b.created_at),
            ..event(if was.is_some() {
                "product.updated"
            } else {
                "product.created"
            })
        });
        if item.quantity != previous.unwrap_or(0) {
            events.push(UpsertEvent {
                previous: Some(previous.unwrap_or(0)),
                ..event("inventory.changed")
            });
        }
        if let (Some(p), Some(t)) = (previous, threshold)
            && p >= t
            && item.quantity < t
        {
            events.push(UpsertEvent {
                threshold: Some(t),
                ..event("inventory.low_stock")
            });
        }
    }
    events
}

/// Decides, for each item of `batch`, which existing product it updates
/// (`Some`) or that it creates one (`None`), given the manager's products
/// that match the batch's ids and names. Refuses ids that are not the
/// manager's (404), two items that resolve to one product (400), and new
/// names that another product already has (409).
pub fn plan(batch: &UpsertProducts, existing: &[Existing]) -> Result<Vec<Option<ProductId>>, UpsertRefusal> {
    let by_id: HashMap<_, _> = existing.iter().map(|e| (e.id, e)).collect();
    let by_key: HashMap<_, _> = existing.iter().map(|e| (e.key.as_str(), e.id)).collect();
    let (mut missing, mut twice, mut taken) = (Details::new(), Details::new(), Details::new());
    let mut claimed: HashMap<ProductId, usize> = HashMap::new();
    let mut targets = Vec::with_capacity(batch.items.len());
    for (i, item) in batch.items.iter().enumerate() {
        let key = item.name.key();
        let target = match item.id {
            Some(Some(id)) if by_id.contains_key(&id) => Some(id),
            Some(id) => {
                let shown = id.map_or_else(|| "this id".to_owned(), |id| id.to_string());
                missing.insert(
                    format!("products[{i}].id"),
                    format!("{shown} is not a product of this manager"),
                );
                continue;
            }
            None => by_key.get(key.as_str()).copied(),
        };
        if let Some(id) = target {
            if let Some(first) = claimed.insert(id, i) {
                twice.insert(
                    format!("products[{i}]"),
                    format!("{id} is also updated by products[{first}]"),
                );
            }
            if let Some(&holder) = by_key.get(key.as_str())
                && holder != id
            {
                taken.insert(format!("products[{i}].name"), format!("{holder} already has this name"));
            }
        }
        targets.push(target);
    }
    if !missing.is_empty() {
        Err(UpsertRefusal::NotFound(missing))
    } else if !twice.is_empty() {
        Err(UpsertRefusal::Twice(twice))
    } else if !taken.is_empty() {
        Err(UpsertRefusal::NameTaken(taken))
    } else {
        Ok(targets)
    }
}

/// Adds or updates every item of `batch` in one transaction, with its audit
/// record, and returns the products in request order. The transaction runs
/// again (a bounded number of times) after a deadlock or serialization
/// failure, or when a concurrent request created one of its new names first
/// (the next run finds that product and updates it).
pub async fn upsert(
    db: &Db,
    batch: &UpsertProducts,
    audit: &AuditEntry,
) -> Result<Committed<Vec<ProductRow>>, Failure<UpsertRefusal>> {
    let done = retrying(
        || upsert_once(db, batch, audit),
        |err| is_transient(err) || violates(err, NAME_INDEX),
    )
    .await;
    match done {
        Err(Failure::Database(err)) if violates(&err, NAME_INDEX) => {
            Err(Failure::Refused(UpsertRefusal::NameTaken(Details::from([(
                "products".to_owned(),
                "other requests keep changing these names; try again".to_owned(),
            )]))))
        }
        done => done.map(|products| {
            let mut record = audit.clone();
            record.product_ids = products.iter().map(|p| p.id.get()).collect();
            Committed::new(products, record)
        }),
    }
}

async fn upsert_once(
    db: &Db,
    batch: &UpsertProducts,
    audit: &AuditEntry,
) -> Result<Vec<ProductRow>, Failure<UpsertRefusal>> {
    let ids: Vec<i64> = batch
        .items
        .iter()
        .filter_map(|item| item.id.flatten().map(ProductId::get))
        .collect();
    let keys: Vec<String> = batch.items.iter().map(|item| item.name.key()).collect();
    let mut tx = db.begin().await?;
    // Lock in id order, as every writer does, so two writers cannot deadlock.
    let existing: Vec<Existing> = sqlx::query!(
        r#"select id as "id: ProductId", name_key as "key!", quantity as "quantity!", version as "version!",
                  low_stock_threshold, discontinued_at is not null as "discontinued!", created_at
             from product
            where manager_id = $1 and (id = any($2) or name_key = any($3))
            order by id
              for update"#,
        batch.manager.as_str(),
        &ids,
        &keys,
    )
    .fetch_all(&mut tx)
    .await?
    .into_iter()
    .map(|r| Existing {
        id: r.id,
        key: r.key,
        before: Before {
            quantity: r.quantity,
            version: r.version,
            threshold: r.low_stock_threshold,
            discontinued: r.discontinued,
            created_at: r.created_at,
        },
    })
    .collect();
    let targets = plan(batch, &existing).map_err(Failure::Refused)?;
    let before: HashMap<ProductId, Before> = existing.iter().map(|e| (e.id, e.before)).collect();
    let events = upsert_events(batch, &targets, &before);

    let target_ids: Vec<Option<i64>> = targets.iter().map(|t| t.map(ProductId::get)).collect();
    let names: Vec<&str> = batch.items.iter().map(|item| item.name.as_str()).collect();
    let prices: Vec<_> = batch.items.iter().map(|item| item.price.amount()).collect();
    let quantities: Vec<i32> = batch.items.iter().map(|item| item.quantity).collect();
    let thresholds: Vec<Option<i32>> = batch.items.iter().map(|i| i.low_stock_threshold.flatten()).collect();
    let thresholds_given: Vec<bool> = batch.items.iter().map(|i| i.low_stock_threshold.is_some()).collect();
    let entry = crate::db::json_param(audit)?;
    let column = |f: fn(&UpsertEvent) -> Option<i32>| events.iter().map(f).collect::<Vec<_>>();
    let event_items: Vec<i32> = events.iter().map(|e| e.item).collect();
    let event_types: Vec<&str> = events.iter().map(|e| e.kind).collect();
    let event_quantities: Vec<i32> = events.iter().map(|e| e.quantity).collect();
    let event_versions: Vec<i64> = events.iter().map(|e| e.version).collect();
    let event_reasons: Vec<Option<&str>> = events.iter().map(|e| e.previous.map(|_| "upsert")).collect();
    let event_names: Vec<Option<&str>> = events
        .iter()
        .map(|e| e.product.as_ref().map(|p| p.0.as_str()))
        .collect();
    let event_prices: Vec<Option<rust_decimal::Decimal>> =
        events.iter().map(|e| e.product.as_ref().map(|p| p.1)).collect();
    let event_discontinued: Vec<Option<bool>> = events.iter().map(|e| e.product.as_ref().map(|p| p.2)).collect();
    let event_created: Vec<_> = events.iter().map(|e| e.created).collect();
    let products = sqlx::query_as!(
        ProductRow,
        r#"with input as materialized (
               select t.ord, coalesce(t.id, nextval('product_id_seq')) as id, t.id is null as is_new,
                      t.name, t.name_key, t.price, t.quantity, t.threshold, t.threshold_given
                 from unnest($2::bigint[], $3::text[], $7::text[], $4::numeric[], $5::int[], $8::int[], $9::bool[])
                      with ordinality as t(id, name, name_key, price, quantity, threshold, threshold_given, ord)
           ), updated as (
               update product p
                  set name = i.name, name_key = i.name_key, price = i.price, quantity = i.quantity,
                      low_stock_threshold = case when i.threshold_given then i.threshold
                                                 else p.low_stock_threshold end,
                      version = p.version + 1, updated_at = now()
                 from input i
                where not i.is_new and p.manager_id = $1 and p.id = i.id
           ), inserted as (
               -- New names are inserted in name-key order, the same order in
               -- every transaction: two batches creating the same names then
               -- wait on each other's first shared name instead of each
               -- holding a name the other needs (a deadlock).
               insert into product (manager_id, id, name, name_key, price, quantity, low_stock_threshold)
               select $1, id, name, name_key, price, quantity, threshold from input where is_new order by name_key
           ), item_ids as materialized (
               select array_agg(id order by ord) as ids from input
           ), audited as materialized (
               select audit_append($6, (select ids from item_ids), null, false) as done
           ), evented as materialized (
               -- Last, after every product lock: the manager's event lock
               -- (see event_append). The service computed the events from
               -- the rows it locked (upsert_events).
               select event_append_columns($1, (select ids from item_ids), $10, $11, $12, $13, $14, $15, $16, $17,
                                           $18, $19, $20) as done
           )
           select i.id as "id!: ProductId", i.name as "name!", i.price as "price!: Money",
                  i.quantity as "quantity!"
             from input i
             left join audited on true
             left join evented on true
            order by i.ord"#,
        batch.manager.as_str(),
        &target_ids as _,
        &names as _,
        &prices,
        &quantities,
        entry,
        &keys,
        &thresholds as _,
        &thresholds_given,
        &event_items,
        &event_types as _,
        &event_quantities,
        &column(|e| e.previous) as _,
        &event_versions,
        &column(|e| e.threshold) as _,
        &event_reasons as _,
        &event_names as _,
        &event_prices as _,
        &event_discontinued as _,
        &event_created as _,
    )
    .fetch_all(&mut tx)
    .await?;
    tx.commit().await?;
    Ok(products)
}

/// Marks a product discontinued (again is fine) with its audit record.
/// `None` when the product is not the manager's.
pub async fn discontinue(
    db: &Db,
    manager: &ManagerId,
    product: ProductId,
    audit: &AuditEntry,
) -> Result<Option<Committed<ProductId>>, sqlx::Error> {
    let entry = crate::db::json_param(audit)?;
    // Discontinuing again changes nothing: no new version, no event.
    let found = sqlx::query_scalar!(
        r#"with before as materialized (
               select id, discontinued_at is null as fresh from product
                where manager_id = $1 and id = $2
                  for update
           ), done as (
               update product p
                  set discontinued_at = now(), updated_at = now(), version = p.version + 1
                 from before b
                where b.fresh and p.manager_id = $1 and p.id = b.id
            returning p.id, p.version
           ), audited as materialized (
               select audit_append($3, array[b.id], null, false) as done from before b
           ), evented as materialized (
               select event_append_rows($1, array_agg(event_row('product.discontinued', product_id => d.id,
                                                                version => d.version)))
                 from done d
           )
           select b.id as "id!: ProductId" from before b left join audited on true left join evented on true"#,
        manager.as_str(),
        product.get(),
        entry,
    )
    .fetch_optional(db)
    .await?;
    Ok(found.map(|id| {
        let mut record = audit.clone();
        record.product_ids = vec![id.get()];
        Committed::new(id, record)
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn batch(items: serde_json::Value) -> UpsertProducts {
        UpsertProducts::parse(&json!({"manager_id": "m", "products": items})).unwrap()
    }

    fn existing(id: i64, key: &str) -> Existing {
        Existing {
            id: ProductId::from_db(id),
            key: key.into(),
            before: Before {
                quantity: 10,
                version: 3,
                threshold: Some(5),
                discontinued: false,
                created_at: chrono::DateTime::UNIX_EPOCH,
            },
        }
    }

    fn kinds(events: &[UpsertEvent]) -> Vec<(i32, &str)> {
        events.iter().map(|e| (e.item, e.kind)).collect()
    }

    #[test]
    fn upsert_events_follow_each_item_in_feed_order() {
        let b = batch(json!([
            {"name": "New", "price": 2.5, "quantity": 4},
            {"name": "Same", "price": 1, "quantity": 10},
            {"name": "Low", "price": 1, "quantity": 4},
            {"name": "Empty", "price": 1, "quantity": 0}
        ]));
        let same = existing(1, "same");
        let low = existing(2, "low");
        let targets = [None, Some(same.id), Some(low.id), None];
        let before = HashMap::from([(same.id, same.before), (low.id, low.before)]);
        let events = upsert_events(&b, &targets, &before);
        assert_eq!(
            kinds(&events),
            [
                (1, "product.created"),
                (1, "inventory.changed"),
                (2, "product.updated"),
                (3, "product.updated"),
                (3, "inventory.changed"),
                (3, "inventory.low_stock"),
                (4, "product.created")
            ]
        );
        // A new product: version 1, created by this transaction, its stock from none.
        let created = &events[0];
        assert_eq!((created.version, created.created, created.threshold), (1, None, None));
        assert_eq!(
            created.product,
            Some(("New".to_owned(), rust_decimal::Decimal::new(25, 1), false))
        );
        assert_eq!((events[1].previous, events[1].quantity), (Some(0), 4));
        // An update: one version more, its creation time kept, its threshold kept.
        let updated = &events[2];
        assert_eq!((updated.version, updated.threshold), (4, Some(5)));
        assert_eq!(updated.created, Some(chrono::DateTime::UNIX_EPOCH));
        assert_eq!(
            (events[4].previous, events[4].quantity, events[4].version),
            (Some(10), 4, 4)
        );
        assert_eq!((events[5].threshold, events[5].quantity), (Some(5), 4));
    }

    #[test]
    fn upsert_events_use_the_threshold_the_item_sets() {
        let b = batch(json!([
            {"name": "A", "price": 1, "quantity": 4, "low_stock_threshold": null},
            {"name": "B", "price": 1, "quantity": 9, "low_stock_threshold": 9},
            {"name": "C", "price": 1, "quantity": 9, "low_stock_threshold": 10}
        ]));
        let (a, bb, c) = (existing(1, "a"), existing(2, "b"), existing(3, "c"));
        let targets = [Some(a.id), Some(bb.id), Some(c.id)];
        let before = HashMap::from([(a.id, a.before), (bb.id, bb.before), (c.id, c.before)]);
        let events = upsert_events(&b, &targets, &before);
        // A: no threshold any more, so none crossed; B: 9 is not below 9;
        // C: from 10 (at the new threshold) to 9 crosses it.
        assert_eq!(
            kinds(&events),
            [
                (1, "product.updated"),
                (1, "inventory.changed"),
                (2, "product.updated"),
                (2, "inventory.changed"),
                (3, "product.updated"),
                (3, "inventory.changed"),
                (3, "inventory.low_stock")
            ]
        );
        assert_eq!(events[0].threshold, None);
        assert_eq!(events[2].threshold, Some(9));
        assert_eq!(events[6].threshold, Some(10));
    }

    #[test]
    fn upsert_events_keep_a_discontinued_product_discontinued() {
        let b = batch(json!([{"name": "Gone", "price": 1, "quantity": 10}]));
        let mut gone = existing(7, "gone");
        gone.before.discontinued = true;
        let events = upsert_events(&b, &[Some(gone.id)], &HashMap::from([(gone.id, gone.before)]));
        assert_eq!(kinds(&events), [(1, "product.updated")]);
        assert_eq!(events[0].product.as_ref().map(|p| p.2), Some(true));
    }

    #[test]
    fn matches_by_name_or_id_and_creates_the_rest() {
        let b = batch(json!([
            {"name": "MUG", "price": 1, "quantity": 1},
            {"id": "prod_002", "name": "Renamed", "price": 1, "quantity": 1},
            {"name": "New", "price": 1, "quantity": 1}
        ]));
        let plan = plan(&b, &[existing(1, "mug"), existing(2, "old")]).unwrap();
        assert_eq!(plan, [Some(ProductId::from_db(1)), Some(ProductId::from_db(2)), None]);
    }

    #[test]
    fn unknown_ids_are_not_found() {
        let b = batch(json!([
            {"id": "prod_009", "name": "A", "price": 1, "quantity": 1},
            {"id": "nope", "name": "B", "price": 1, "quantity": 1}
        ]));
        let Err(UpsertRefusal::NotFound(details)) = plan(&b, &[]) else {
            panic!("expected 404")
        };
        assert_eq!(details["products[0].id"], "prod_009 is not a product of this manager");
        assert_eq!(details["products[1].id"], "this id is not a product of this manager");
    }

    #[test]
    fn two_items_for_one_product_are_invalid() {
        let b = batch(json!([
            {"id": "prod_001", "name": "Other", "price": 1, "quantity": 1},
            {"name": "mug", "price": 1, "quantity": 1}
        ]));
        let Err(UpsertRefusal::Twice(details)) = plan(&b, &[existing(1, "mug")]) else {
            panic!("expected 400")
        };
        assert_eq!(details["products[1]"], "prod_001 is also updated by products[0]");
    }

    #[test]
    fn renaming_onto_another_products_name_is_a_conflict() {
        let b = batch(json!([{"id": "prod_001", "name": "Tea", "price": 1, "quantity": 1}]));
        let Err(UpsertRefusal::NameTaken(details)) = plan(&b, &[existing(1, "mug"), existing(2, "tea")]) else {
            panic!("expected 409")
        };
        assert_eq!(details["products[0].name"], "prod_002 already has this name");
    }
}

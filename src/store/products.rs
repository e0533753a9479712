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
    let existing = sqlx::query_as!(
        Existing,
        r#"select id as "id: ProductId", name_key as key
             from product
            where manager_id = $1 and (id = any($2) or name_key = any($3))
            order by id
              for update"#,
        batch.manager.as_str(),
        &ids,
        &keys,
    )
    .fetch_all(&mut tx)
    .await?;
    let targets = plan(batch, &existing).map_err(Failure::Refused)?;

    let target_ids: Vec<Option<i64>> = targets.iter().map(|t| t.map(ProductId::get)).collect();
    let names: Vec<&str> = batch.items.iter().map(|item| item.name.as_str()).collect();
    let prices: Vec<_> = batch.items.iter().map(|item| item.price.amount()).collect();
    let quantities: Vec<i32> = batch.items.iter().map(|item| item.quantity).collect();
    let thresholds: Vec<Option<i32>> = batch.items.iter().map(|i| i.low_stock_threshold.flatten()).collect();
    let thresholds_given: Vec<bool> = batch.items.iter().map(|i| i.low_stock_threshold.is_some()).collect();
    let entry = crate::db::json_param(audit)?;
    // `before` reads the rows the first statement locked: their values
    // before this statement's update (a data-modifying CTE's changes are
    // not visible to its siblings).
    let rows = sqlx::query!(
        r#"with input as materialized (
               select t.ord, coalesce(t.id, nextval('product_id_seq')) as id, t.id is null as is_new,
                      t.name, t.name_key, t.price, t.quantity, t.threshold, t.threshold_given
                 from unnest($2::bigint[], $3::text[], $7::text[], $4::numeric[], $5::int[], $8::int[], $9::bool[])
                      with ordinality as t(id, name, name_key, price, quantity, threshold, threshold_given, ord)
           ), before as materialized (
               select p.id, p.quantity from product p
                where p.manager_id = $1 and p.id in (select id from input where not is_new)
           ), updated as (
               update product p
                  set name = i.name, name_key = i.name_key, price = i.price, quantity = i.quantity,
                      low_stock_threshold = case when i.threshold_given then i.threshold
                                                 else p.low_stock_threshold end,
                      version = p.version + 1, updated_at = now()
                 from input i
                where not i.is_new and p.manager_id = $1 and p.id = i.id
            returning p.id, p.version, p.low_stock_threshold, p.discontinued_at is not null as discontinued,
                      p.created_at, p.updated_at
           ), inserted as (
               -- New names are inserted in name-key order, the same order in
               -- every transaction: two batches creating the same names then
               -- wait on each other's first shared name instead of each
               -- holding a name the other needs (a deadlock).
               insert into product (manager_id, id, name, name_key, price, quantity, low_stock_threshold)
               select $1, id, name, name_key, price, quantity, threshold from input where is_new order by name_key
            returning id, version, low_stock_threshold, false as discontinued, created_at, updated_at
           ), written as (
               select * from updated union all select * from inserted
           ), audited as materialized (
               select audit_append($6, (select array_agg(id order by ord) from input), null, false) as done
           ), evented as materialized (
               -- Last, after every product lock: the manager's event lock
               -- (see event_append). The events, as columns (event_data
               -- builds their JSON when they are read), item by item: the
               -- product as its read shows it, then its stock change (none
               -- when the quantity is the same; a new product's is from
               -- none) and the threshold crossed (a new product crosses
               -- none: it had no stock to be at or above it).
               select event_append_rows($1, array_agg(e.event order by e.ord, e.kind)) as done
                 from (
                   select i.ord, 1 as kind,
                          event_row(case when i.is_new then 'product.created' else 'product.updated' end,
                                    product_id => w.id, name => i.name, price => i.price, quantity => i.quantity,
                                    discontinued => w.discontinued, created_at => w.created_at,
                                    updated_at => w.updated_at, threshold => w.low_stock_threshold,
                                    version => w.version)
                     from input i join written w using (id)
                   union all
                   select i.ord, 2,
                          event_row('inventory.changed', product_id => w.id, quantity => i.quantity,
                                    previous_quantity => coalesce(b.quantity, 0), version => w.version,
                                    reason => 'upsert')
                     from input i join written w using (id) left join before b using (id)
                    where i.quantity <> coalesce(b.quantity, 0)
                   union all
                   select i.ord, 3,
                          event_row('inventory.low_stock', product_id => w.id, quantity => i.quantity,
                                    threshold => w.low_stock_threshold, version => w.version)
                     from input i join written w using (id) join before b using (id)
                    where b.quantity >= w.low_stock_threshold and i.quantity < w.low_stock_threshold
                 ) e (ord, kind, event)
           )
           select i.id as "id!: ProductId", i.name as "name!", i.price as "price!: Money",
                  i.quantity as "quantity!"
             from input i
             join written w using (id)
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
    )
    .fetch_all(&mut tx)
    .await?;
    let products = rows
        .into_iter()
        .map(|r| ProductRow {
            id: r.id,
            name: r.name,
            price: r.price,
            quantity: r.quantity,
        })
        .collect();
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
        }
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

//! Products: names, stock, status and the add-or-update batch.

use std::{borrow::Cow, collections::HashMap, fmt, ops::RangeInclusive, str::FromStr};

use serde::Serialize;
use serde_json::{Value, json};
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{ObjectBuilder, RefOr, Schema, Type, schema::SchemaType},
};

use super::{
    ManagerId, Money, Problems, ProductId,
    ids::client_id_property,
    problems::{integer, list, object, text},
    schema,
};

/// The largest stock a product may hold.
pub const MAX_STOCK: i64 = 1_000_000_000;

/// The stock a product may hold: 0 to [`MAX_STOCK`] units.
pub const STOCK: RangeInclusive<i64> = 0..=MAX_STOCK;

/// Where a product stands. Derived from the row, never stored: discontinued
/// wins over any quantity, then no stock means out of stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProductStatus {
    /// Not discontinued, quantity above zero.
    InStock,
    /// Not discontinued, quantity zero.
    OutOfStock,
    /// Discontinued, whatever its quantity.
    Discontinued,
}

impl ProductStatus {
    /// Every status, in the order the API documents them.
    pub const ALL: [Self; 3] = [Self::InStock, Self::OutOfStock, Self::Discontinued];

    /// The statuses as a pattern: `^(in_stock|out_of_stock|discontinued)$`.
    pub fn pattern() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|s| s.as_str()).collect();
        format!("^({})$", names.join("|"))
    }

    /// The status of a product with this stock and discontinued flag.
    pub fn of(quantity: i32, discontinued: bool) -> Self {
        match (discontinued, quantity) {
            (true, _) => Self::Discontinued,
            (false, 0) => Self::OutOfStock,
            (false, _) => Self::InStock,
        }
    }

    /// The status as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InStock => "in_stock",
            Self::OutOfStock => "out_of_stock",
            Self::Discontinued => "discontinued",
        }
    }
}

impl FromStr for ProductStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| "must be one of in_stock, out_of_stock, discontinued".into())
    }
}

impl fmt::Display for ProductStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A product name: trimmed, 1–200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductName(String);

impl ProductName {
    /// How many characters (Unicode scalar values) a name has after trimming.
    pub const CHARS: RangeInclusive<usize> = 1..=200;

    /// A name as the OpenAPI document states it (with [`Self::CHARS`] as
    /// its length): not only white space, no control characters.
    pub const PATTERN: &str =
        r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$";

    /// Trims `value` and checks it.
    pub fn parse(value: &str) -> Result<Self, String> {
        let name = value.trim();
        let chars = name.chars().count();
        if !Self::CHARS.contains(&chars) {
            Err(format!(
                "must be {} to {} characters after trimming",
                Self::CHARS.start(),
                Self::CHARS.end()
            ))
        } else if name.chars().any(char::is_control) {
            Err("must not contain control characters".into())
        } else {
            Ok(Self(name.to_owned()))
        }
    }

    /// The name as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key two names are compared by: Unicode lower case. Stored as
    /// `product.name_key`, under the unique index that keeps names unique per
    /// manager, so the service and the database agree whatever the
    /// database's locale.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

/// How many units of a product are in stock: [`STOCK`].
pub fn parse_stock(value: &Value) -> Result<i32, String> {
    integer(value, STOCK).map(|n| n as i32)
}

/// The low-stock threshold of an item, if it has the field: an integer in
/// [`STOCK`], or `null` for none. Absent is `None` (the product keeps its
/// own).
pub fn parse_threshold(item: &Value) -> Option<Result<Option<i32>, String>> {
    match item.get("low_stock_threshold")? {
        Value::Null => Some(Ok(None)),
        value => Some(integer(value, STOCK).map(|n| Some(n as i32))),
    }
}

/// One item of an add-or-update batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductInput {
    /// `Some` when the item names the product to update by id; the inner
    /// `None` is an id that cannot exist (not found, never a 400).
    pub id: Option<Option<ProductId>>,
    /// The new name.
    pub name: ProductName,
    /// The new price.
    pub price: Money,
    /// The new stock (set, not added).
    pub quantity: i32,
    /// The new low-stock threshold: `None` when the item does not carry
    /// one (a product keeps its own), `Some(None)` to remove it.
    pub low_stock_threshold: Option<Option<i32>>,
}

/// `POST /api/inventory/products`: products to add or update, all or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpsertProducts {
    /// Whose products.
    pub manager: ManagerId,
    /// The items in request order.
    pub items: Vec<ProductInput>,
}

impl UpsertProducts {
    /// How many items one request may carry.
    pub const ITEMS: RangeInclusive<usize> = 1..=1000;

    /// Parses the body, reporting every invalid field. Two items naming the
    /// same product (the same id, or the same name without an id) are a 400.
    pub fn parse(body: &Value) -> Result<Self, Problems> {
        let (mut bad, manager) = super::begin(body)?;
        let items = bad
            .check("products", list(&body["products"], Self::ITEMS))
            .unwrap_or_default();
        let mut inputs = Vec::with_capacity(items.len());
        let mut ids_seen = HashMap::new();
        let mut names_seen = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let at = |field: &str| format!("products[{i}].{field}");
            if let Err(why) = object(item) {
                bad.add(format!("products[{i}]"), why);
                continue;
            }
            let id = match &item["id"] {
                Value::Null => Some(None),
                value => bad.check(at("id"), text(value)).map(|t| Some(ProductId::parse(t))),
            };
            let name = bad.check(at("name"), text(&item["name"]).and_then(ProductName::parse));
            let price = bad.check(at("price"), Money::parse_price(&item["price"]));
            let quantity = bad.check(at("quantity"), parse_stock(&item["quantity"]));
            let threshold = match parse_threshold(item) {
                None => Some(None),
                Some(parsed) => bad.check(at("low_stock_threshold"), parsed).map(Some),
            };
            // Two items may not name the same product, nor leave two
            // products with one name.
            if let Some(Some(Some(id))) = &id
                && let Some(first) = ids_seen.insert(*id, i)
            {
                bad.add(at("id"), format!("{id} is also in products[{first}]"));
            }
            if let Some(name) = &name
                && let Some(first) = names_seen.insert(name.key(), i)
            {
                bad.add(at("name"), format!("products[{first}] has the same name"));
            }
            if let (Some(id), Some(name), Some(price), Some(quantity), Some(low_stock_threshold)) =
                (id, name, price, quantity, threshold)
            {
                inputs.push(ProductInput {
                    id,
                    name,
                    price,
                    quantity,
                    low_stock_threshold,
                });
            }
        }
        bad.into_result(|| manager.map(|manager| Self { manager, items: inputs }))
    }
}

/// `POST /api/inventory/discontinue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discontinue {
    /// Whose product.
    pub manager: ManagerId,
    /// Which product; `None` when the text cannot be an id (not found).
    pub product: Option<ProductId>,
}

impl Discontinue {
    /// Parses the body, reporting every invalid field.
    pub fn parse(body: &Value) -> Result<Self, Problems> {
        let (mut bad, manager) = super::begin(body)?;
        let product = bad.check("product_id", text(&body["product_id"]).map(ProductId::parse));
        bad.into_result(|| {
            Some(Self {
                manager: manager?,
                product: product?,
            })
        })
    }
}

/// An item of the batch, as the OpenAPI document states what
/// [`UpsertProducts::parse`] accepts of it.
impl PartialSchema for ProductInput {
    fn schema() -> RefOr<Schema> {
        let id = schema::example_of(
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                .description(Some(
                    "Update this product (and rename it) instead of matching by name. Any\n\
text that is not one of the manager's product ids is a 404.",
                )),
            "prod_001",
        );
        let name = schema::string(
            "1–200 characters after trimming, not only white space, no control\n\
characters. Without `id`, a name matching one of the manager's\n\
products (trimmed, case-insensitive) updates it.",
            "Premium Coffee Beans",
        )
        .min_length(Some(*ProductName::CHARS.start()))
        .max_length(Some(*ProductName::CHARS.end()))
        .pattern(Some(ProductName::PATTERN));
        schema::object("A product to add or update.")
            .property("id", id)
            .property("name", name)
            .required("name")
            .property("price", Money::price_schema())
            .required("price")
            .property(
                "quantity",
                schema::integer(
                    &STOCK,
                    "Units in stock (set, not added): an integer 0 … 1,000,000,000.",
                    100,
                ),
            )
            .required("quantity")
            .property(
                "low_stock_threshold",
                schema::integer(
                    &STOCK,
                    "Below this many units a change records an `inventory.low_stock` event: an\n\
integer 0 … 1,000,000,000, or null for none. Absent keeps the product's own.",
                    10,
                )
                .schema_type(SchemaType::from_iter([Type::Integer, Type::Null])),
            )
            .into()
    }
}

impl ToSchema for ProductInput {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ProductInput")
    }
}

/// The body of `POST /api/inventory/products`, as the OpenAPI document
/// states what [`UpsertProducts::parse`] accepts.
impl PartialSchema for UpsertProducts {
    fn schema() -> RefOr<Schema> {
        let example = json!({
            "manager_id": "mgr_123",
            "products": [
                {"name": "Premium Coffee Beans", "price": 15.99, "quantity": 100},
                {"name": "Ceramic Coffee Mug", "price": 12.99, "quantity": 50}
            ]
        });
        let object = schema::object("Body of `POST /api/inventory/products`.")
            .property(
                "manager_id",
                client_id_property("1–64 characters of `A-Z a-z 0-9 _ - . :`.", "mgr_123"),
            )
            .required("manager_id")
            .property(
                "products",
                schema::array_of(
                    &ProductInput::name(),
                    &Self::ITEMS,
                    "1–1000 products; no two may name the same product or end with the same name.",
                ),
            )
            .required("products");
        schema::example_of(object, example).into()
    }
}

impl ToSchema for UpsertProducts {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("AddProductsRequest")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((ProductInput::name().into_owned(), ProductInput::schema()));
    }
}

/// The body of `POST /api/inventory/discontinue`, as the OpenAPI document
/// states what [`Discontinue::parse`] accepts.
impl PartialSchema for Discontinue {
    fn schema() -> RefOr<Schema> {
        let object = schema::object("Body of `POST /api/inventory/discontinue`.")
            .property("manager_id", client_id_property("The store manager.", "mgr_123"))
            .required("manager_id")
            .property("product_id", schema::string("The product to discontinue.", "prod_001"))
            .required("product_id");
        schema::example_of(object, json!({"manager_id": "mgr_123", "product_id": "prod_001"})).into()
    }
}

impl ToSchema for Discontinue {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("DiscontinueRequest")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn status_is_derived_discontinued_first() {
        assert_eq!(ProductStatus::of(5, false), ProductStatus::InStock);
        assert_eq!(ProductStatus::of(0, false), ProductStatus::OutOfStock);
        assert_eq!(ProductStatus::of(0, true), ProductStatus::Discontinued);
        assert_eq!(ProductStatus::of(9, true), ProductStatus::Discontinued);
    }

    #[test]
    fn status_round_trips_through_its_spelling() {
        for status in ProductStatus::ALL {
            assert_eq!(status.to_string().parse::<ProductStatus>(), Ok(status));
        }
        assert!("IN_STOCK".parse::<ProductStatus>().is_err());
        assert!("".parse::<ProductStatus>().is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(ProductName::parse("  Mug ").unwrap().as_str(), "Mug");
        assert_eq!(ProductName::parse("Mug").unwrap().key(), "mug");
        assert_eq!(
            ProductName::parse("ÉCLAIR").unwrap().key(),
            ProductName::parse("éclair").unwrap().key()
        );
        assert!(ProductName::parse("   ").is_err());
        assert!(ProductName::parse(&"é".repeat(200)).is_ok());
        assert!(ProductName::parse(&"x".repeat(201)).is_err());
        assert!(ProductName::parse("a\u{0}b").is_err());
        assert!(ProductName::parse("a\nb").is_err());
    }

    #[test]
    fn parses_the_briefs_example() {
        let batch = UpsertProducts::parse(&json!({
            "manager_id": "mgr_123",
            "products": [
                { "name": "Premium Coffee Beans", "price": 15.99, "quantity": 100 },
                { "name": "Ceramic Coffee Mug", "price": 12.99, "quantity": 50 }
            ]
        }))
        .unwrap();
        assert_eq!(batch.manager.as_str(), "mgr_123");
        assert_eq!(batch.items.len(), 2);
        assert_eq!(batch.items[1].quantity, 50);
        assert_eq!(batch.items[0].id, None);
    }

    #[test]
    fn reports_every_invalid_field_at_once() {
        let problems = UpsertProducts::parse(&json!({
            "manager_id": "bad id!",
            "products": [
                { "name": " ", "price": "15.99", "quantity": 1.5 },
                { "name": "Mug", "price": 15.999, "quantity": -1, "id": 7 },
                "not an object"
            ]
        }))
        .unwrap_err()
        .into_details();
        let keys: Vec<_> = problems.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "manager_id",
                "products[0].name",
                "products[0].price",
                "products[0].quantity",
                "products[1].id",
                "products[1].price",
                "products[1].quantity",
                "products[2]"
            ]
        );
    }

    #[test]
    fn the_same_product_twice_is_rejected() {
        let problems = UpsertProducts::parse(&json!({
            "manager_id": "m",
            "products": [
                { "name": "Mug", "price": 1, "quantity": 1 },
                { "name": " mug ", "price": 1, "quantity": 1 },
                { "id": "prod_001", "name": "A", "price": 1, "quantity": 1 },
                { "id": "prod_001", "name": "B", "price": 1, "quantity": 1 }
            ]
        }))
        .unwrap_err()
        .into_details();
        assert_eq!(problems["products[1].name"], "products[0] has the same name");
        assert_eq!(problems["products[3].id"], "prod_001 is also in products[2]");
    }

    #[test]
    fn thresholds_are_strict_integers_or_null_and_absent_keeps_the_current_one() {
        let batch = UpsertProducts::parse(&json!({
            "manager_id": "m",
            "products": [
                { "name": "A", "price": 1, "quantity": 1 },
                { "name": "B", "price": 1, "quantity": 1, "low_stock_threshold": null },
                { "name": "C", "price": 1, "quantity": 1, "low_stock_threshold": 1000000000 }
            ]
        }))
        .unwrap();
        let thresholds: Vec<_> = batch.items.iter().map(|i| i.low_stock_threshold).collect();
        assert_eq!(thresholds, [None, Some(None), Some(Some(1_000_000_000))]);
        let problems = UpsertProducts::parse(&json!({
            "manager_id": "m",
            "products": [
                { "name": "A", "price": 1, "quantity": 1, "low_stock_threshold": "5" },
                { "name": "B", "price": 1, "quantity": 1, "low_stock_threshold": 1.5 },
                { "name": "C", "price": 1, "quantity": 1, "low_stock_threshold": -1 },
                { "name": "D", "price": 1, "quantity": 1, "low_stock_threshold": 1000000001 },
                { "name": "E", "price": 1, "quantity": 1, "low_stock_threshold": true }
            ]
        }))
        .unwrap_err()
        .into_details();
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(problems.keys().all(|k| k.ends_with(".low_stock_threshold")));
    }

    #[test]
    fn ids_that_cannot_exist_parse_as_not_found() {
        let batch = UpsertProducts::parse(&json!({
            "manager_id": "m",
            "products": [{ "id": "banana", "name": "A", "price": 1, "quantity": 0 }]
        }))
        .unwrap();
        assert_eq!(batch.items[0].id, Some(None));
    }

    #[test]
    fn batch_size_and_body_shape_are_checked() {
        let too_many: Vec<_> = (0..1001)
            .map(|i| json!({"name": format!("p{i}"), "price": 1, "quantity": 1}))
            .collect();
        let problems = UpsertProducts::parse(&json!({"manager_id": "m", "products": too_many})).unwrap_err();
        assert!(problems.into_details().contains_key("products"));
        let problems = UpsertProducts::parse(&json!([1])).unwrap_err().into_details();
        assert_eq!(problems["body"], "must be a JSON object");
        let problems = UpsertProducts::parse(&json!({})).unwrap_err().into_details();
        assert_eq!(problems["manager_id"], "is required");
        assert_eq!(problems["products"], "is required");
    }

    #[test]
    fn discontinue_needs_a_manager_and_a_product_text() {
        let ok = Discontinue::parse(&json!({"manager_id": "m", "product_id": "prod_002"})).unwrap();
        assert_eq!(ok.product, ProductId::parse("prod_002"));
        let unknown = Discontinue::parse(&json!({"manager_id": "m", "product_id": "x"})).unwrap();
        assert_eq!(unknown.product, None);
        let problems = Discontinue::parse(&json!({"product_id": 3}))
            .unwrap_err()
            .into_details();
        assert_eq!(problems.len(), 2);
        assert!(Discontinue::parse(&json!("x")).is_err());
    }
}

//! Stock changed by differences: a restock never erases a sale that happened
//! between a manager's read and write.

use std::{borrow::Cow, collections::HashMap, ops::RangeInclusive};

use serde_json::{Value, json};
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{ObjectBuilder, OneOfBuilder, RefOr, Schema, Type},
};

pub use super::product::MAX_STOCK;
use super::{
    ManagerId, Problems, ProductId,
    ids::client_id_property,
    problems::{integer, list, object, text},
    schema,
};

/// A difference: within ±[`MAX_STOCK`], and never 0.
pub const DELTA: RangeInclusive<i64> = -MAX_STOCK..=MAX_STOCK;

/// One difference to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adjustment {
    /// The product; `None` when the text cannot be an id (not found).
    pub product: Option<ProductId>,
    /// Units to add (positive) or take (negative); never zero.
    pub delta: i32,
}

/// `POST /api/inventory/adjustments`: differences applied all or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockAdjustments {
    /// Whose products.
    pub manager: ManagerId,
    /// The differences in request order (1–1000, no product twice).
    pub items: Vec<Adjustment>,
}

impl StockAdjustments {
    /// How many differences one request may carry.
    pub const ITEMS: RangeInclusive<usize> = 1..=1000;

    /// Parses the body, reporting every invalid field.
    pub fn parse(body: &Value) -> Result<Self, Problems> {
        let (mut bad, manager) = super::begin(body)?;
        let items = bad
            .check("adjustments", list(&body["adjustments"], Self::ITEMS))
            .unwrap_or_default();
        let mut adjustments = Vec::with_capacity(items.len());
        let mut seen = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let at = |field: &str| format!("adjustments[{i}].{field}");
            if let Err(why) = object(item) {
                bad.add(format!("adjustments[{i}]"), why);
                continue;
            }
            let product = bad.check(at("product_id"), text(&item["product_id"]).map(ProductId::parse));
            let delta = bad.check(at("delta"), parse_delta(&item["delta"]));
            if let Some(Some(id)) = product
                && let Some(first) = seen.insert(id, i)
            {
                bad.add(at("product_id"), format!("{id} is also in adjustments[{first}]"));
            }
            if let (Some(product), Some(delta)) = (product, delta) {
                adjustments.push(Adjustment { product, delta });
            }
        }
        bad.into_result(|| {
            manager.map(|manager| Self {
                manager,
                items: adjustments,
            })
        })
    }
}

/// A difference: a non-zero integer in [`DELTA`].
fn parse_delta(value: &Value) -> Result<i32, String> {
    match integer(value, DELTA)? {
        0 => Err("must not be 0".into()),
        delta => Ok(delta as i32),
    }
}

/// A difference as JSON Schema says it: a non-zero integer in [`DELTA`].
fn delta_schema() -> Schema {
    let side = |min: i64, max: i64| {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(min))
            .maximum(Some(max))
            .build()
    };
    Schema::OneOf(
        OneOfBuilder::new()
            .item(side(1, *DELTA.end()))
            .item(side(*DELTA.start(), -1))
            .description(Some("Units to add (positive) or take (negative), never 0"))
            .examples([json!(-3)])
            .build(),
    )
}

/// One difference, as the OpenAPI document states what
/// [`StockAdjustments::parse`] accepts of it.
impl PartialSchema for Adjustment {
    fn schema() -> RefOr<Schema> {
        schema::object("One difference of stock.")
            .property(
                "product_id",
                schema::string(
                    "The product; any text that is not one of the manager's product ids is a 404.",
                    "prod_001",
                ),
            )
            .required("product_id")
            .property("delta", delta_schema())
            .required("delta")
            .into()
    }
}

impl ToSchema for Adjustment {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("AdjustmentInput")
    }
}

/// The body of `POST /api/inventory/adjustments`, as the OpenAPI document
/// states what [`StockAdjustments::parse`] accepts.
impl PartialSchema for StockAdjustments {
    fn schema() -> RefOr<Schema> {
        let object = schema::object("Body of `POST /api/inventory/adjustments`.")
            .property("manager_id", client_id_property("The store manager.", "mgr_123"))
            .required("manager_id")
            .property(
                "adjustments",
                schema::array_of(
                    &Adjustment::name(),
                    &Self::ITEMS,
                    "1–1000 differences, no product twice.",
                ),
            )
            .required("adjustments");
        let example = json!({"manager_id": "mgr_123", "adjustments": [
            {"product_id": "prod_001", "delta": 24}, {"product_id": "prod_002", "delta": -3}]});
        schema::example_of(object, example).into()
    }
}

impl ToSchema for StockAdjustments {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("AdjustmentsRequest")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((Adjustment::name().into_owned(), Adjustment::schema()));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parses_differences_in_request_order() {
        let parsed = StockAdjustments::parse(&json!({"manager_id": "m", "adjustments": [
            {"product_id": "prod_002", "delta": -3}, {"product_id": "nope", "delta": 1000000000}]}))
        .unwrap();
        assert_eq!(
            parsed.items,
            [
                Adjustment {
                    product: ProductId::parse("prod_002"),
                    delta: -3
                },
                Adjustment {
                    product: None,
                    delta: 1_000_000_000
                }
            ]
        );
    }

    #[test]
    fn reports_every_bad_difference() {
        let details = StockAdjustments::parse(&json!({"manager_id": "m", "adjustments": [
            {"product_id": "prod_001", "delta": 0},
            {"product_id": "prod_001", "delta": 1.5},
            {"product_id": 7, "delta": 1000000001},
            "x"]}))
        .unwrap_err()
        .into_details();
        assert_eq!(
            details.keys().collect::<Vec<_>>(),
            [
                "adjustments[0].delta",
                "adjustments[1].delta",
                "adjustments[1].product_id",
                "adjustments[2].delta",
                "adjustments[2].product_id",
                "adjustments[3]"
            ]
        );
        assert_eq!(details["adjustments[0].delta"], "must not be 0");
        let twice = StockAdjustments::parse(&json!({"manager_id": "m", "adjustments": [
            {"product_id": "prod_001", "delta": 1}, {"product_id": "prod_001", "delta": 2}]}))
        .unwrap_err()
        .into_details();
        assert_eq!(twice["adjustments[1].product_id"], "prod_001 is also in adjustments[0]");
        assert!(StockAdjustments::parse(&json!({"manager_id": "m", "adjustments": []})).is_err());
    }
}

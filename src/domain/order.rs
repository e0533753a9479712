//! Customer orders: what a client asks to buy.

use std::{borrow::Cow, collections::HashMap, ops::RangeInclusive};

use serde_json::{Value, json};
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{KnownFormat, RefOr, Schema, SchemaFormat, schema::RefBuilder},
};

use super::{
    CustomerId, ManagerId, Problems, ProductId,
    ids::client_id_property,
    problems::{integer, list, object, text},
    schema,
};

/// Where an order stands: derived from whether it was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Sold, stock taken.
    Processed,
    /// Cancelled, stock returned.
    Cancelled,
}

impl OrderStatus {
    /// Every status, in the order the API documents them.
    pub const ALL: [Self; 2] = [Self::Processed, Self::Cancelled];

    /// The statuses as a pattern: `^(processed|cancelled)$`.
    pub fn pattern() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|s| s.as_str()).collect();
        format!("^({})$", names.join("|"))
    }

    /// The status of an order cancelled or not.
    pub fn of(cancelled: bool) -> Self {
        if cancelled { Self::Cancelled } else { Self::Processed }
    }

    /// The status as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processed => "processed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl std::str::FromStr for OrderStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| "must be one of processed, cancelled".into())
    }
}

/// `POST /api/orders/{order_id}/cancel`: the body names the manager only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelOrder {
    /// Whose order.
    pub manager: ManagerId,
}

impl CancelOrder {
    /// Parses the body, reporting every invalid field.
    pub fn parse(body: &Value) -> Result<Self, Problems> {
        let (bad, manager) = super::begin(body)?;
        bad.into_result(|| manager.map(|manager| Self { manager }))
    }
}

/// One line of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderLine {
    /// The product; `None` when the text cannot be an id (not found).
    pub product: Option<ProductId>,
    /// Units wanted: [`OrderLine::QUANTITY`].
    pub quantity: i32,
}

impl OrderLine {
    /// How many units one line may ask for.
    pub const QUANTITY: RangeInclusive<i64> = 1..=1_000_000;
}

/// `POST /api/orders/process`: an order to sell in full or not at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    /// The store.
    pub manager: ManagerId,
    /// The customer's id.
    pub customer_id: CustomerId,
    /// The customer's email address.
    pub customer_email: String,
    /// The lines in request order (1–100, no product twice).
    pub lines: Vec<OrderLine>,
}

impl NewOrder {
    /// How many lines one order may have.
    pub const LINES: RangeInclusive<usize> = 1..=100;

    /// Parses the body, reporting every invalid field.
    pub fn parse(body: &Value) -> Result<Self, Problems> {
        let (mut bad, manager) = super::begin(body)?;
        let customer = &body["customer"];
        let (customer_id, customer_email) = match object(customer) {
            Ok(()) => (
                bad.check("customer.id", text(&customer["id"]).and_then(CustomerId::parse)),
                bad.check("customer.email", text(&customer["email"]).and_then(parse_email)),
            ),
            Err(_) if customer.is_null() => {
                bad.add("customer", "is required");
                (None, None)
            }
            Err(why) => {
                bad.add("customer", why);
                (None, None)
            }
        };
        let items = bad
            .check("products", list(&body["products"], Self::LINES))
            .unwrap_or_default();
        let mut lines = Vec::with_capacity(items.len());
        let mut seen = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let at = |field: &str| format!("products[{i}].{field}");
            if let Err(why) = object(item) {
                bad.add(format!("products[{i}]"), why);
                continue;
            }
            let product = bad.check(at("product_id"), text(&item["product_id"]).map(ProductId::parse));
            let quantity = bad.check(at("quantity"), integer(&item["quantity"], OrderLine::QUANTITY));
            if let Some(Some(id)) = product
                && let Some(first) = seen.insert(id, i)
            {
                bad.add(at("product_id"), format!("{id} is also in products[{first}]"));
            }
            if let (Some(product), Some(quantity)) = (product, quantity) {
                lines.push(OrderLine {
                    product,
                    quantity: quantity as i32,
                });
            }
        }
        bad.into_result(|| {
            Some(Self {
                manager: manager?,
                customer_id: customer_id?,
                customer_email: customer_email?,
                lines,
            })
        })
    }
}

/// The regular expression of an email address, as the OpenAPI document
/// states it: an RFC 5322 dot-atom local part, `@`, and a domain of
/// letter-digit-hyphen labels (none starting or ending with a hyphen), at
/// most [`EMAIL_MAX`] characters in all. Quoted local parts and address
/// literals are refused: no customer needs them, and every JSON Schema
/// validator checks this pattern the same way the service does.
pub const EMAIL_PATTERN: &str = "^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\
@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$";

/// The longest email address (RFC 5321's path limit less the brackets).
pub const EMAIL_MAX: usize = 254;

/// An email address matching [`EMAIL_PATTERN`]. Checked by hand, not by a
/// regular expression engine: the pattern is small and this keeps the two
/// exactly equivalent without a dependency.
pub fn parse_email(value: &str) -> Result<String, String> {
    let atom = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~-".contains(&b))
    };
    let label = |part: &str| {
        let bytes = part.as_bytes();
        !bytes.is_empty()
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && bytes[0] != b'-'
            && bytes[bytes.len() - 1] != b'-'
    };
    let valid = value.len() <= EMAIL_MAX
        && value
            .split_once('@')
            .is_some_and(|(local, domain)| local.split('.').all(atom) && domain.split('.').all(label));
    if valid {
        Ok(value.to_owned())
    } else {
        Err("must be a valid email address".into())
    }
}

/// The customer an order is for, as the OpenAPI document states what
/// [`NewOrder::parse`] accepts of it.
fn customer_schema() -> RefOr<Schema> {
    let email = schema::string(
        "An email address: a dot-atom local part, `@`, and a domain of\n\
letter-digit-hyphen labels; at most 254 characters.",
        "customer@example.com",
    )
    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Email)))
    .max_length(Some(EMAIL_MAX))
    .pattern(Some(EMAIL_PATTERN));
    schema::object("The customer an order is for.")
        .property(
            "id",
            client_id_property("1–64 characters of `A-Z a-z 0-9 _ - . :`.", "cust_456"),
        )
        .required("id")
        .property("email", email)
        .required("email")
        .into()
}

/// The name of the customer's schema in the document.
const CUSTOMER: &str = "Customer";

/// One line, as the OpenAPI document states what [`NewOrder::parse`]
/// accepts of it.
impl PartialSchema for OrderLine {
    fn schema() -> RefOr<Schema> {
        schema::object("One line of an order.")
            .property("product_id", schema::string("The product.", "prod_001"))
            .required("product_id")
            .property(
                "quantity",
                schema::integer(&Self::QUANTITY, "Units: an integer 1 … 1,000,000.", 2),
            )
            .required("quantity")
            .into()
    }
}

impl ToSchema for OrderLine {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("OrderLineInput")
    }
}

/// The body of `POST /api/orders/process`, as the OpenAPI document states
/// what [`NewOrder::parse`] accepts.
impl PartialSchema for NewOrder {
    fn schema() -> RefOr<Schema> {
        let object = schema::object("Body of `POST /api/orders/process`.")
            .property("manager_id", client_id_property("The store manager.", "mgr_123"))
            .required("manager_id")
            .property(
                "customer",
                RefBuilder::new()
                    .ref_location_from_schema_name(CUSTOMER)
                    .description(Some("Who is buying.")),
            )
            .required("customer")
            .property(
                "products",
                schema::array_of(&OrderLine::name(), &Self::LINES, "1–100 lines, no product twice."),
            )
            .required("products");
        let example = json!({
            "manager_id": "mgr_123",
            "customer": {"id": "cust_456", "email": "customer@example.com"},
            "products": [{"product_id": "prod_001", "quantity": 2}, {"product_id": "prod_002", "quantity": 1}]
        });
        schema::example_of(object, example).into()
    }
}

impl ToSchema for NewOrder {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ProcessOrderRequest")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((CUSTOMER.to_owned(), customer_schema()));
        schemas.push((OrderLine::name().into_owned(), OrderLine::schema()));
    }
}

/// The body of `POST /api/orders/{order_id}/cancel`, as the OpenAPI
/// document states what [`CancelOrder::parse`] accepts.
impl PartialSchema for CancelOrder {
    fn schema() -> RefOr<Schema> {
        let object = schema::object("Body of `POST /api/orders/{order_id}/cancel`.")
            .property("manager_id", client_id_property("The store manager.", "mgr_123"))
            .required("manager_id");
        schema::example_of(object, json!({"manager_id": "mgr_123"})).into()
    }
}

impl ToSchema for CancelOrder {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("CancelOrderRequest")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn order(products: Value) -> Value {
        json!({
            "manager_id": "mgr_123",
            "customer": { "id": "cust_456", "email": "customer@example.com" },
            "products": products
        })
    }

    #[test]
    fn parses_the_briefs_example() {
        let order = NewOrder::parse(&order(json!([
            { "product_id": "prod_001", "quantity": 2 },
            { "product_id": "prod_002", "quantity": 1 }
        ])))
        .unwrap();
        assert_eq!(order.customer_id.as_str(), "cust_456");
        assert_eq!(order.customer_email, "customer@example.com");
        assert_eq!(
            order.lines,
            [
                OrderLine {
                    product: ProductId::parse("prod_001"),
                    quantity: 2
                },
                OrderLine {
                    product: ProductId::parse("prod_002"),
                    quantity: 1
                }
            ]
        );
    }

    #[test]
    fn reports_every_invalid_field_at_once() {
        let problems = NewOrder::parse(&json!({
            "manager_id": 5,
            "customer": { "id": "", "email": "not-an-email" },
            "products": [
                { "product_id": "prod_001", "quantity": 0 },
                { "product_id": 1, "quantity": "2" },
                { "product_id": "prod_001", "quantity": 1 },
                7
            ]
        }))
        .unwrap_err()
        .into_details();
        let keys: Vec<_> = problems.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "customer.email",
                "customer.id",
                "manager_id",
                "products[0].quantity",
                "products[1].product_id",
                "products[1].quantity",
                "products[2].product_id",
                "products[3]"
            ]
        );
        assert_eq!(problems["products[2].product_id"], "prod_001 is also in products[0]");
    }

    #[test]
    fn customer_and_lines_are_required() {
        let problems = NewOrder::parse(&json!({"manager_id": "m", "products": []}))
            .unwrap_err()
            .into_details();
        assert_eq!(problems["customer"], "is required");
        assert!(problems["products"].contains("between 1 and 100"));
        let problems = NewOrder::parse(&json!({"manager_id": "m", "customer": "x", "products": [{}]}))
            .unwrap_err()
            .into_details();
        assert_eq!(problems["customer"], "must be a JSON object");
        assert_eq!(problems["products[0].product_id"], "is required");
        assert!(NewOrder::parse(&json!(null)).is_err());
    }

    #[test]
    fn unknown_product_texts_are_not_found_later_not_invalid() {
        let order = NewOrder::parse(&order(json!([{ "product_id": "banana", "quantity": 1 }]))).unwrap();
        assert_eq!(order.lines[0].product, None);
    }

    #[test]
    fn emails_must_look_like_addresses() {
        assert!(parse_email("customer@example.com").is_ok());
        assert!(parse_email("a.b+c@sub.example.co").is_ok());
        assert!(parse_email("o'neil!{x}@x-1.io").is_ok());
        assert!(parse_email("a@b").is_ok());
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a b@example.com",
            "a..b@example.com",
            ".a@example.com",
            "a@-x.com",
            "a@x-.com",
            "a@x..com",
            "a@b@c.com",
            "\"q\"@example.com",
            "a@[127.0.0.1]",
            &format!("{}@x.io", "a".repeat(250)),
        ] {
            assert!(parse_email(bad).is_err(), "{bad}");
        }
    }
}

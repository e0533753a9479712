//! The OpenAPI document: schemas of request bodies (with the brief's
//! examples), query parameters, and the headers every `/api/` response
//! carries. Served at `/openapi.json`; Swagger UI at `/docs` is compiled
//! into the binary, so both work with no internet access.

use std::collections::BTreeMap;

use serde_json::json;
use utoipa::{
    IntoParams, Modify, OpenApi, ToSchema,
    openapi::{
        ContentBuilder, Object, ObjectBuilder, OpenApi as Document, Ref, RefOr, ResponseBuilder, Schema, Type,
        example::ExampleBuilder,
        header::{Header, HeaderBuilder},
        security::SecurityRequirement,
        server::Server,
    },
};

use crate::error::{Code, ErrorBody, ErrorEnvelope};

/// The document's fixed parts; paths are added from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "E-commerce inventory and order API",
        description = "Store managers add and update products in bulk, list them by status, discontinue them, \
and process customer orders that take stock atomically.\n\n\
Every error has the body `{\"error\": {\"code\", \"message\", \"details\"}}`; `details` maps JSON paths \
(`products[1].price`) to reasons and lists every invalid field. Requests naming a `manager_id` are limited \
to 100 in any rolling hour per manager (configurable) and carry `X-RateLimit-*` headers. Every `/api/` request \
is audited. Every response carries `X-Request-ID`.",
        license(name = "MIT")
    ),
    tags(
        (name = "inventory", description = "Products of a store manager"),
        (name = "orders", description = "Customer orders"),
        (name = "audit", description = "The audit trail"),
        (name = "health", description = "Liveness and readiness")
    ),
    components(schemas(ErrorEnvelope, ErrorBody))
)]
pub struct ApiDoc;

/// A product to add or update.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ProductInput {
    /// Update this product (and rename it) instead of matching by name. Any
    /// text that is not one of the manager's product ids is a 404.
    #[schema(example = "prod_001")]
    id: Option<String>,
    /// 1–200 characters after trimming, not only white space, no control
    /// characters. Without `id`, a name matching one of the manager's
    /// products (trimmed, case-insensitive) updates it.
    #[schema(
        example = "Premium Coffee Beans",
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    name: String,
    /// A JSON number (not a string) > 0 and ≤ 1,000,000 with at most 2 decimals.
    #[schema(value_type = f64, example = 15.99, minimum = 0.01, maximum = 1000000)]
    price: f64,
    /// Units in stock (set, not added): an integer 0 … 1,000,000,000.
    #[schema(example = 100, minimum = 0, maximum = 1000000000)]
    quantity: i64,
}

/// Body of `POST /api/inventory/products`.
#[derive(ToSchema)]
#[schema(example = json!({
    "manager_id": "mgr_123",
    "products": [
        {"name": "Premium Coffee Beans", "price": 15.99, "quantity": 100},
        {"name": "Ceramic Coffee Mug", "price": 12.99, "quantity": 50}
    ]
}))]
#[allow(dead_code)]
pub struct AddProductsRequest {
    /// 1–64 characters of `A-Z a-z 0-9 _ - . :`.
    #[schema(example = "mgr_123", pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    manager_id: String,
    /// 1–1000 products; no two may name the same product or end with the same name.
    #[schema(min_items = 1, max_items = 1000)]
    products: Vec<ProductInput>,
}

/// Body of `POST /api/inventory/discontinue`.
#[derive(ToSchema)]
#[schema(example = json!({"manager_id": "mgr_123", "product_id": "prod_001"}))]
#[allow(dead_code)]
pub struct DiscontinueRequest {
    /// The store manager.
    #[schema(example = "mgr_123", pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    manager_id: String,
    /// The product to discontinue.
    #[schema(example = "prod_001")]
    product_id: String,
}

/// The customer an order is for.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Customer {
    /// 1–64 characters of `A-Z a-z 0-9 _ - . :`.
    #[schema(example = "cust_456", pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    id: String,
    /// An email address: a dot-atom local part, `@`, and a domain of
    /// letter-digit-hyphen labels; at most 254 characters.
    #[schema(
        example = "customer@example.com",
        format = "email",
        max_length = 254,
        pattern = "^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$"
    )]
    email: String,
}

/// One line of an order.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OrderLineInput {
    /// The product.
    #[schema(example = "prod_001")]
    product_id: String,
    /// Units: an integer 1 … 1,000,000.
    #[schema(example = 2, minimum = 1, maximum = 1000000)]
    quantity: i64,
}

/// Body of `POST /api/orders/process`.
#[derive(ToSchema)]
#[schema(example = json!({
    "manager_id": "mgr_123",
    "customer": {"id": "cust_456", "email": "customer@example.com"},
    "products": [{"product_id": "prod_001", "quantity": 2}, {"product_id": "prod_002", "quantity": 1}]
}))]
#[allow(dead_code)]
pub struct ProcessOrderRequest {
    /// The store manager.
    #[schema(example = "mgr_123", pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    manager_id: String,
    /// Who is buying.
    customer: Customer,
    /// 1–100 lines, no product twice.
    #[schema(min_items = 1, max_items = 100)]
    products: Vec<OrderLineInput>,
}

/// One difference of stock.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AdjustmentInput {
    /// The product; any text that is not one of the manager's product ids is a 404.
    #[schema(example = "prod_001")]
    product_id: String,
    /// Units to add (positive) or take (negative): a non-zero integer within ±1,000,000,000.
    #[schema(schema_with = delta_schema)]
    delta: i64,
}

/// A non-zero integer within ±1,000,000,000, as JSON Schema says it.
fn delta_schema() -> Schema {
    let side = |min: i64, max: i64| {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(min))
            .maximum(Some(max))
            .build()
    };
    Schema::OneOf(
        utoipa::openapi::OneOfBuilder::new()
            .item(side(1, 1_000_000_000))
            .item(side(-1_000_000_000, -1))
            .description(Some("Units to add (positive) or take (negative), never 0"))
            .examples([json!(-3)])
            .build(),
    )
}

/// Body of `POST /api/inventory/adjustments`.
#[derive(ToSchema)]
#[schema(example = json!({"manager_id": "mgr_123", "adjustments": [
    {"product_id": "prod_001", "delta": 24}, {"product_id": "prod_002", "delta": -3}]}))]
#[allow(dead_code)]
pub struct AdjustmentsRequest {
    /// The store manager.
    #[schema(example = "mgr_123", pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    manager_id: String,
    /// 1–1000 differences, no product twice.
    #[schema(min_items = 1, max_items = 1000)]
    adjustments: Vec<AdjustmentInput>,
}

/// Body of `POST /api/orders/{order_id}/cancel`.
#[derive(ToSchema)]
#[schema(example = json!({"manager_id": "mgr_123"}))]
#[allow(dead_code)]
pub struct CancelOrderRequest {
    /// The store manager.
    #[schema(example = "mgr_123", pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    manager_id: String,
}

/// The `Idempotency-Key` header of the writes that are not safe to repeat.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct IdempotencyKey {
    /// Makes retries safe: 1–255 visible ASCII characters (spaces allowed
    /// inside) chosen by the client, per manager, shared by orders and
    /// adjustments.
    #[param(
        rename = "Idempotency-Key",
        value_type = String,
        required = false,
        min_length = 1,
        max_length = 255,
        pattern = "^[\\x21-\\x7E]([\\x20-\\x7E]{0,253}[\\x21-\\x7E])?$"
    )]
    idempotency_key: Option<String>,
}

/// The manager a read is for.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ManagerParam {
    /// The store manager (required).
    #[param(example = "mgr_123", pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    manager_id: String,
}

/// Query of `GET /api/orders`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListOrdersParams {
    /// The store manager (required).
    #[param(example = "mgr_123", pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    manager_id: String,
    /// Only this customer's orders.
    #[param(example = "cust_456", pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    customer_id: Option<String>,
    /// `processed` or `cancelled`; absent means both.
    #[param(example = "processed", pattern = "^(processed|cancelled)$")]
    status: Option<String>,
    /// Page size, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// An order id: the page starts with the next older order.
    #[param(example = "ord_042", pattern = "^ord_(00[1-9]|0[1-9][0-9]|[1-9][0-9]{2,17})$")]
    after: Option<String>,
}

/// Query of `GET /api/inventory/products`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListProductsParams {
    /// The store manager (required).
    #[param(example = "mgr_123", pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    manager_id: String,
    /// `in_stock`, `out_of_stock` or `discontinued`; absent means all.
    #[param(example = "in_stock", pattern = "^(in_stock|out_of_stock|discontinued)$")]
    status: Option<String>,
    /// Page size, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// A product id: the page starts after it.
    #[param(example = "prod_002", pattern = "^prod_(00[1-9]|0[1-9][0-9]|[1-9][0-9]{2,17})$")]
    after: Option<String>,
}

/// Query of `GET /api/audit`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListAuditParams {
    /// The store manager (required).
    #[param(example = "mgr_123", pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    manager_id: String,
    /// Page size, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// A record id: the page starts with the next older record.
    #[param(minimum = 1)]
    after: Option<i64>,
}

/// Completes the document once the handlers' paths are in it: the error
/// responses of every operation (from `errors`, by operation id, plus those
/// every `/api/` route can answer), the headers every response carries, the
/// server, and the absence of authentication.
pub fn finish(mut document: Document, errors: &[(&str, &[Code])]) -> Document {
    ErrorResponses(errors).modify(&mut document);
    CommonHeaders.modify(&mut document);
    document.servers = Some(vec![Server::new("/")]);
    // No authentication: access control is outside this service.
    document.security = Some(vec![SecurityRequirement::default()]);
    document
}

/// The codes any `/api/` route may answer, by method.
fn common_codes(method: &str) -> Vec<Code> {
    let mut codes = vec![
        Code::InvalidRequest,
        Code::RateLimitExceeded,
        Code::ServiceUnavailable,
        Code::Timeout,
        Code::InternalError,
    ];
    if method == "post" {
        codes.extend([Code::UnsupportedMediaType, Code::PayloadTooLarge, Code::RequestTimeout]);
    }
    codes
}

/// Adds each operation's error responses, one per status, with an example
/// per code, all derived from the code catalogue ([`Code`]).
struct ErrorResponses<'a>(&'a [(&'a str, &'a [Code])]);

impl Modify for ErrorResponses<'_> {
    fn modify(&self, openapi: &mut Document) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let api = path.starts_with("/api/");
            for (method, operation) in [("get", &mut item.get), ("post", &mut item.post)] {
                let Some(operation) = operation else { continue };
                let own = operation
                    .operation_id
                    .as_deref()
                    .and_then(|id| self.0.iter().find(|(name, _)| *name == id))
                    .map_or(&[][..], |(_, codes)| *codes);
                let mut codes: Vec<Code> = own.to_vec();
                if api {
                    codes.extend(common_codes(method));
                }
                codes.sort();
                codes.dedup();
                let mut by_status: BTreeMap<u16, Vec<Code>> = BTreeMap::new();
                for code in codes {
                    by_status.entry(code.status().as_u16()).or_default().push(code);
                }
                for (status, codes) in by_status {
                    let description = codes
                        .iter()
                        .map(|c| format!("`{}`: {}", c.as_str(), c.when()))
                        .collect::<Vec<_>>()
                        .join(" ");
                    let examples = codes.iter().map(|c| {
                        let value = serde_json::to_value(c.example().envelope()).unwrap_or_default();
                        (c.as_str(), ExampleBuilder::new().value(Some(value)).build())
                    });
                    let content = ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
                        .examples_from_iter(examples)
                        .build();
                    let response = ResponseBuilder::new()
                        .description(description)
                        .content("application/json", content)
                        .build();
                    operation
                        .responses
                        .responses
                        .insert(status.to_string(), RefOr::T(response));
                }
            }
        }
    }
}

/// Adds the headers every response carries: `X-Request-ID` everywhere,
/// `X-RateLimit-*` on `/api/` responses, `Retry-After` on 429s.
struct CommonHeaders;

fn header(description: &str) -> RefOr<Header> {
    RefOr::T(
        HeaderBuilder::new()
            .schema(Some(ObjectBuilder::new().schema_type(Type::Integer).build()))
            .description(Some(description))
            .build(),
    )
}

impl Modify for CommonHeaders {
    fn modify(&self, openapi: &mut Document) {
        let request_id = RefOr::T(
            HeaderBuilder::new()
                .schema(Some(Object::with_type(Type::String)))
                .description(Some(
                    "The client's X-Request-ID if it sent a sane one, else a generated id",
                ))
                .build(),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [&mut item.get, &mut item.post].into_iter().flatten();
            for operation in operations {
                for (status, response) in operation.responses.responses.iter_mut() {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    response.headers.insert("X-Request-ID".into(), request_id.clone());
                    if path.starts_with("/api/") {
                        response
                            .headers
                            .insert("X-RateLimit-Limit".into(), header("Requests allowed per window"));
                        response
                            .headers
                            .insert("X-RateLimit-Remaining".into(), header("Requests still allowed now"));
                        response.headers.insert(
                            "X-RateLimit-Reset".into(),
                            header("Seconds until the oldest counted request leaves the window"),
                        );
                    }
                    if status == "429" {
                        response
                            .headers
                            .insert("Retry-After".into(), header("Seconds to wait before retrying"));
                    }
                }
            }
        }
    }
}

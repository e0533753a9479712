//! The OpenAPI document: schemas of request bodies (with the brief's
//! examples), query parameters, and the headers every `/api/` response
//! carries. Served at `/openapi.json`; Swagger UI at `/docs` is compiled
//! into the binary, so both work with no internet access.

use serde_json::{Value, json};
use utoipa::{
    IntoParams, Modify, OpenApi, ToSchema,
    openapi::{
        Object, ObjectBuilder, OpenApi as Document, RefOr, Type,
        header::{Header, HeaderBuilder},
    },
};

use crate::error::{ErrorBody, ErrorEnvelope};

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
    /// Update this product (and rename it) instead of matching by name.
    #[schema(example = "prod_001")]
    id: Option<String>,
    /// 1–200 characters after trimming, no control characters. Without `id`,
    /// a name matching one of the manager's products (case-insensitive) updates it.
    #[schema(example = "Premium Coffee Beans", min_length = 1, max_length = 200)]
    name: String,
    /// A JSON number (not a string) > 0 and ≤ 1,000,000 with at most 2 decimals.
    #[schema(value_type = f64, example = 15.99, exclusive_minimum = 0, maximum = 1000000)]
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
    /// A valid email address.
    #[schema(example = "customer@example.com", format = "email")]
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

/// Query of `GET /api/inventory/products`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListProductsParams {
    /// The store manager (required).
    #[param(example = "mgr_123")]
    manager_id: String,
    /// `in_stock`, `out_of_stock` or `discontinued`; absent means all.
    #[param(example = "in_stock", pattern = "^(in_stock|out_of_stock|discontinued)$")]
    status: Option<String>,
    /// Page size, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// A product id: the page starts after it.
    #[param(example = "prod_002")]
    after: Option<String>,
}

/// Query of `GET /api/audit`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListAuditParams {
    /// The store manager (required).
    #[param(example = "mgr_123")]
    manager_id: String,
    /// Page size, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// A record id: the page starts with the next older record.
    after: Option<i64>,
}

/// The 400 example shared by the write endpoints.
pub fn example_invalid() -> Value {
    json!({"error": {"code": "INVALID_REQUEST", "message": "the request has invalid fields", "details": {
        "products[0].price": "must have at most 2 decimal places",
        "products[1].quantity": "must be an integer from 0 to 1000000000"}}})
}

/// The 429 example.
pub fn example_rate_limited() -> Value {
    json!({"error": {"code": "RATE_LIMIT_EXCEEDED", "message": "over 100 requests in 3600 seconds for this manager",
        "details": {"manager_id": "over 100 requests in 3600 seconds for this manager; retry in 1712 seconds"}}})
}

/// Completes the document once the handlers' paths are in it.
pub fn finish(mut document: Document) -> Document {
    CommonHeaders.modify(&mut document);
    document
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

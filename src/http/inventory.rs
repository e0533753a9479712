//! `/api/inventory/...`: add or update products, list them, discontinue one.

use axum::{
    Extension, Json,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::{
    IntoParams, ToSchema,
    openapi::path::{Parameter, ParameterIn},
};

use super::{
    AppState, docs,
    query::{self, Page, Query},
    request::{JsonBody, PrefetchedGeneration, RequestContext, written},
};
use crate::{
    cache::CachedList,
    domain::{
        ManagerId, Problems, ProductId,
        product::{Discontinue, ProductStatus, UpsertProducts},
    },
    error::AppError,
    metrics,
    store::{
        self,
        products::{ListQuery, ProductDetail, ProductRow},
    },
};

/// A list of products, in request order (writes) or id order (reads).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"products": [
    {"id": "prod_001", "name": "Premium Coffee Beans", "price": 15.99, "quantity": 100},
    {"id": "prod_002", "name": "Ceramic Coffee Mug", "price": 12.99, "quantity": 50}
]}))]
pub struct ProductsResponse {
    /// The products.
    pub products: Vec<ProductRow>,
}

/// Add or update products, all or none.
///
/// Each item without `id` updates the manager's product of the same name
/// (trimmed, case-insensitive) or creates a new one; an item with `id`
/// updates (and may rename) that product. Name, price and quantity are
/// replaced (quantity is set, not added); a discontinued product stays
/// discontinued. The whole batch is one transaction. Responds with the
/// products in request order.
#[utoipa::path(post, path = "/api/inventory/products", tag = "inventory",
    request_body(content = UpsertProducts, content_type = "application/json"),
    responses(
        (status = 201, description = "Products added or updated, in request order", body = ProductsResponse),
        AddProductsErrors,
    ))]
pub async fn add_products(
    State(state): State<AppState>,
    context: RequestContext,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let batch = UpsertProducts::parse(&body)?;
    let entry = context.write_entry(StatusCode::CREATED.as_u16());
    let done = store::products::upsert(&state.db, &batch, &entry).await?;
    Ok(written(done, StatusCode::CREATED, &context, |products| {
        Json(ProductsResponse { products })
    }))
}

docs::errors!(
    /// The errors of `POST /api/inventory/products`.
    AddProductsErrors: Write [ProductNotFound, ProductNameTaken]
);

/// The query of a product list, validated.
#[derive(Debug, Clone)]
struct ListParams {
    manager: ManagerId,
    status: Option<ProductStatus>,
    limit: u32,
    after: Option<ProductId>,
}

impl ListParams {
    fn parse(query: &Query) -> Result<Self, Problems> {
        let mut bad = Problems::default();
        let manager = query.manager(&mut bad);
        let status = query.optional(&mut bad, "status", str::parse);
        let limit = query.limit(&mut bad);
        let after = query.optional(&mut bad, "after", |text| {
            ProductId::parse(text).ok_or_else(|| "must be a product id such as prod_001".into())
        });
        bad.into_result(|| {
            Some(Self {
                manager: manager?,
                status: status?,
                limit: limit?,
                after: after?,
            })
        })
    }

    /// The parameters of this query with `after` set.
    fn with_after(&self, after: Option<ProductId>) -> Vec<(&'static str, String)> {
        let mut params = vec![("manager_id", self.manager.to_string())];
        params.extend(self.status.map(|s| ("status", s.to_string())));
        params.push(("limit", self.limit.to_string()));
        params.extend(after.map(|id| ("after", id.to_string())));
        params
    }

    /// The cache key of this query: its parameters, normalised.
    fn cache_key(&self) -> String {
        serde_urlencoded::to_string(self.with_after(self.after)).unwrap_or_default()
    }
}

/// The query of a product list as the OpenAPI document states what
/// [`ListParams::parse`] accepts.
impl IntoParams for ListParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ManagerId::query_parameter(),
            query::parameter(
                "status",
                "`in_stock`, `out_of_stock` or `discontinued`; absent means all.",
                query::pattern(ProductStatus::pattern()),
                Some("in_stock"),
            ),
            Query::limit_parameter(),
            query::parameter(
                "after",
                "A product id: the page starts after it.",
                query::pattern(ProductId::PATTERN),
                Some("prod_002"),
            ),
        ]
    }
}

docs::errors!(
    /// The errors of `GET /api/inventory/products`.
    ListProductsErrors: Read []
);

/// List a manager's products, optionally by status.
///
/// `status` is derived: `discontinued` if the product was discontinued
/// (whatever its quantity), else `out_of_stock` at quantity 0, else
/// `in_stock`. Products come in id order, `limit` at a time; when more
/// remain, the `Link` header (`rel="next"`) gives the next page. Responses
/// carry an `ETag`; send it back in `If-None-Match` to get `304 Not Modified`.
/// Lists are cached, and every write to the manager's products invalidates
/// them before it responds, so a read never returns data older than a write
/// that has completed.
#[utoipa::path(get, path = "/api/inventory/products", tag = "inventory",
    params(ListParams),
    responses(
        (status = 200, description = "The products", body = ProductsResponse,
            headers(
                ("ETag" = String, description = "Strong validator of this body"),
                ("Link" = String, description = "`<...>; rel=\"next\"` when more products remain")
            )),
        (status = 304, description = "Unchanged since the ETag in If-None-Match"),
        ListProductsErrors,
    ))]
pub async fn list_products(
    State(state): State<AppState>,
    query: Query,
    headers: HeaderMap,
    prefetched: Option<Extension<PrefetchedGeneration>>,
) -> Result<Response, AppError> {
    let params = ListParams::parse(&query)?;
    let key = params.cache_key();
    // If the generation cannot be read (Redis down), bypass the cache
    // rather than risk serving a list older than a write.
    let generation = match prefetched {
        Some(Extension(PrefetchedGeneration(generation))) => Some(generation),
        None => match state.cache.generation(&params.manager).await {
            Ok(generation) => Some(generation),
            Err(err) => {
                tracing::warn!(error = %err, "cache generation unavailable; reading through");
                None
            }
        },
    };
    let cached = match generation {
        Some(generation) => state.cache.get(&params.manager, generation, &key).await,
        None => None,
    };
    metrics::cache_lookup(cached.is_some());
    let list = match cached {
        Some(list) => list,
        None => {
            let list = load_list(&state, &params).await?;
            if let Some(generation) = generation {
                state.cache.put(&params.manager, generation, key, list.clone()).await;
            }
            list
        }
    };
    Ok(list_response(&list, &headers))
}

async fn load_list(state: &AppState, params: &ListParams) -> Result<CachedList, AppError> {
    let query = ListQuery {
        manager: params.manager.clone(),
        status: params.status,
        after: params.after,
        limit: Page::<ProductRow>::fetch(params.limit),
    };
    let fetched = store::products::list(&state.db, &query).await?;
    let Page { items: products, next } = Page::of(
        fetched,
        params.limit,
        "/api/inventory/products",
        params.with_after(None),
        |last| last.id.to_string(),
    );
    let body = serde_json::to_vec(&ProductsResponse { products }).map_err(AppError::internal)?;
    Ok(CachedList {
        etag: etag_of(&body),
        body: body.into(),
        next,
    })
}

/// A strong ETag: the 128-bit XXH3 hash of the bytes sent, a function whose
/// output is fixed by its specification (the same body always gets the same
/// tag, across releases and instances).
pub(super) fn etag_of(body: &[u8]) -> String {
    format!("\"{:032x}\"", xxhash_rust::xxh3::xxh3_128(body))
}

fn list_response(list: &CachedList, request: &HeaderMap) -> Response {
    let etag = HeaderValue::from_str(&list.etag).unwrap_or(HeaderValue::from_static("\"\""));
    let unchanged = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| matches!(tag.trim(), "*") || tag.trim().trim_start_matches("W/") == list.etag);
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = Response::new(Body::from(list.body.clone()));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    if let Some(next) = list.next.clone() {
        headers.insert(header::LINK, next);
    }
    response
}

/// One product with its status and times.
///
/// `status` is derived as in the lists; times are RFC 3339 in UTC. A product
/// that is not the manager's (or an id that is not a product id) is 404
/// `PRODUCT_NOT_FOUND`. The response carries an `ETag`; send it back in
/// `If-None-Match` to get `304 Not Modified`.
#[utoipa::path(get, path = "/api/inventory/products/{product_id}", tag = "inventory",
    params(("product_id" = String, Path, description = "The product, e.g. `prod_001`", example = "prod_001"),
        ManagerId),
    responses(
        (status = 200, description = "The product", body = ProductDetail,
            headers(("ETag" = String, description = "Strong validator of this body"))),
        (status = 304, description = "Unchanged since the ETag in If-None-Match"),
        GetProductErrors,
    ))]
pub async fn get_product(
    State(state): State<AppState>,
    Path(product_id): Path<String>,
    query: Query,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let manager = query.required_manager()?;
    let not_found = || AppError::product_not_found("product_id", "not a product of this manager");
    let id = ProductId::parse(&product_id).ok_or_else(not_found)?;
    let product = store::products::get(&state.db, &manager, id)
        .await?
        .ok_or_else(not_found)?;
    let body = serde_json::to_vec(&product).map_err(AppError::internal)?;
    let found = CachedList {
        etag: etag_of(&body),
        body: body.into(),
        next: None,
    };
    Ok(list_response(&found, &headers))
}

docs::errors!(
    /// The errors of `GET /api/inventory/products/{product_id}`.
    GetProductErrors: Read [ProductNotFound]
);

/// Mark a product discontinued.
///
/// Discontinued products stay listed (status `discontinued`) and cannot be
/// ordered. Discontinuing one again is fine (204 again).
#[utoipa::path(post, path = "/api/inventory/discontinue", tag = "inventory",
    request_body(content = Discontinue, content_type = "application/json"),
    responses(
        (status = 204, description = "Discontinued (or already was)"),
        DiscontinueErrors,
    ))]
pub async fn discontinue_product(
    State(state): State<AppState>,
    context: RequestContext,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let request = Discontinue::parse(&body)?;
    let entry = context.write_entry(StatusCode::NO_CONTENT.as_u16());
    let found = match request.product {
        Some(id) => store::products::discontinue(&state.db, &request.manager, id, &entry).await?,
        None => None,
    };
    let Some(done) = found else {
        let shown = request
            .product
            .map_or_else(|| "this id".to_owned(), |id| id.to_string());
        return Err(AppError::product_not_found(
            "product_id",
            format!("{shown} is not a product of this manager"),
        ));
    };
    Ok(written(done, StatusCode::NO_CONTENT, &context, |_| ()))
}

docs::errors!(
    /// The errors of `POST /api/inventory/discontinue`.
    DiscontinueErrors: Write [ProductNotFound]
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_parameters_are_validated_together() {
        let details = ListParams::parse(&Query::parse(Some("status=gone&limit=0&after=x")))
            .unwrap_err()
            .into_details();
        assert_eq!(
            details.keys().collect::<Vec<_>>(),
            ["after", "limit", "manager_id", "status"]
        );
        assert!(ListParams::parse(&Query::parse(Some("manager_id=m&limit=1001"))).is_err());
        assert!(ListParams::parse(&Query::parse(Some("manager_id=m&status="))).is_err());
        let ok = ListParams::parse(&Query::parse(Some(
            "manager_id=m&status=in_stock&limit=5&after=prod_002",
        )))
        .unwrap();
        assert_eq!((ok.limit, ok.after.map(ProductId::get)), (5, Some(2)));
        assert_eq!(
            ListParams::parse(&Query::parse(Some("manager_id=m"))).unwrap().limit,
            100
        );
        assert!(ListParams::parse(&Query::parse(None)).is_err());
    }

    #[test]
    fn etags_are_a_fixed_function_of_the_body() {
        assert_eq!(etag_of(b"{\"products\":[]}"), etag_of(b"{\"products\":[]}"));
        assert_ne!(etag_of(b"{\"products\":[]}"), etag_of(b"{\"products\":[1]}"));
        // The XXH3-128 of the empty input, from the algorithm's specification.
        assert_eq!(etag_of(b""), "\"99aa06d3014798d86001c324468d497f\"");
    }

    #[test]
    fn next_page_links_keep_the_query() {
        let params = ListParams::parse(&Query::parse(Some("manager_id=m%3A1&status=in_stock&limit=2"))).unwrap();
        let next = query::next_link("/p", &params.with_after(ProductId::parse("prod_004"))).unwrap();
        assert_eq!(
            next,
            "</p?manager_id=m%3A1&status=in_stock&limit=2&after=prod_004>; rel=\"next\""
        );
        assert_eq!(params.cache_key(), "manager_id=m%3A1&status=in_stock&limit=2");
    }
}

//! The HTTP surface: routes, the middleware stack, and helpers the handlers
//! share. Handlers parse, call one store function, and shape the response.

mod adjustments;
mod audit;
pub mod docs;
mod events;
mod health;
mod idempotency;
mod inventory;
mod order_history;
mod orders;
mod query;
pub mod request;
mod webhooks;

use std::{
    any::Any,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::{MatchedPath, Request},
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};
use utoipa_swagger_ui::SwaggerUi;

use crate::{
    audit::AuditSink,
    cache::ListCache,
    config::Settings,
    domain::ManagerId,
    error::{AppError, Code, ErrorCode},
    rate_limit::Limiter,
};

/// What every handler can reach: one shared value, so handing it to a
/// handler costs one reference count, whatever it holds.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The parts of [`AppState`].
pub struct Shared {
    /// The database pool.
    pub db: crate::db::Db,
    /// Runtime settings.
    pub settings: Settings,
    /// The per-manager rate limiter.
    pub limiter: Limiter,
    /// The limiter of requests that name no valid manager, per client
    /// address, in this instance.
    pub anonymous: crate::rate_limit::MemoryLimiter<std::net::IpAddr>,
    /// The product-list cache.
    pub cache: ListCache,
    /// The Redis shared with other instances, if configured.
    pub redis: Option<crate::shared::SharedRedis>,
    /// The queue of audit records.
    pub audit: AuditSink,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// `/readyz`'s last check of the database.
    pub readiness: health::Readiness,
    /// Checks bearer tokens when `AUTH_MODE=jwt`; `None` otherwise.
    pub verifier: Option<crate::auth::Verifier>,
}

impl AppState {
    /// The state of one application.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The OpenAPI router of every documented route.
fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(docs::ApiDoc::openapi())
        .routes(routes!(inventory::add_products, inventory::list_products))
        .routes(routes!(inventory::get_product))
        .routes(routes!(inventory::discontinue_product))
        .routes(routes!(adjustments::adjust_stock))
        .routes(routes!(orders::process_order))
        .routes(routes!(order_history::list_orders))
        .routes(routes!(order_history::get_order))
        .routes(routes!(orders::cancel_order))
        .routes(routes!(audit::list_audit))
        .routes(routes!(events::list_events))
        .routes(routes!(webhooks::register_webhook, webhooks::list_webhooks))
        .routes(routes!(webhooks::get_webhook, webhooks::delete_webhook))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(webhooks::replay_webhook))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
}

/// The OpenAPI document as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    docs::finish(api().into_openapi())
}

/// The whole application: routes, docs, fallbacks and middleware.
pub fn router(state: AppState) -> Router {
    build(state, Router::new())
}

fn build(state: AppState, extra: Router<AppState>) -> Router {
    let (routes, document) = api().split_for_parts();
    // With an admin port, `/metrics` is served there only (see `admin`).
    let routes = match state.settings.admin_port {
        None => routes.route("/metrics", get(health::metrics)),
        Some(_) => routes,
    };
    // Router::layer wraps what is already there, so the last layer added is
    // the outermost: request ids, tracing, metrics, headers every response
    // carries, the /api/ pipeline (body, manager, rate limit, timeout,
    // audit), envelopes for bare errors, panics.
    routes
        .merge(extra)
        .merge(
            SwaggerUi::new("/docs")
                .url("/openapi.json", docs::finish(document))
                // No badge from validator.swagger.io: the page loads nothing
                // from other hosts and does not send them the document's URL.
                .config(utoipa_swagger_ui::Config::default().validator_url("none")),
        )
        .fallback(|| async { AppError::new(Code::NotFound) })
        .method_not_allowed_fallback(|| async { AppError::new(Code::MethodNotAllowed) })
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::map_response(envelope_bare_errors))
        .layer(middleware::from_fn_with_state(state.clone(), request::api_pipeline))
        .layer(middleware::map_response(common_headers))
        .layer(cors(&state.settings.cors_allowed_origins))
        .layer(middleware::from_fn(preflight_no_content))
        .layer(middleware::from_fn(track_metrics))
        .layer(TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(tower::util::MapRequestLayer::new(drop_insane_request_id))
        .with_state(state)
}

/// Makes the manager's cached lists unreachable; a failure is logged (the
/// write is over and its response must still be sent).
async fn invalidate(state: &AppState, manager: &ManagerId) {
    if let Err(err) = state.cache.invalidate(manager).await {
        tracing::error!(error = %err, %manager, "could not invalidate the product-list cache");
    }
}

/// The admin listener's routes (`ADMIN_PORT`): `/metrics`, kept off the
/// public port.
pub fn admin(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(health::metrics))
        .fallback(|| async { AppError::new(Code::NotFound) })
        .layer(middleware::map_response(common_headers))
        .with_state(state)
}

/// CORS for the configured origins (none by default: no CORS headers at
/// all). An allowed origin's preflight `OPTIONS` is answered 204 here,
/// before the API pipeline (it is neither counted nor audited), with the
/// methods and headers the API uses; its responses expose the headers a
/// browser client needs.
fn cors(origins: &[String]) -> tower::util::Either<tower_http::cors::CorsLayer, tower::layer::util::Identity> {
    use axum::http::{HeaderName, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return tower::util::Either::Right(tower::layer::util::Identity::new());
    }
    let allowed: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    let name = HeaderName::from_static;
    tower::util::Either::Left(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(allowed))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                header::IF_NONE_MATCH,
                name("idempotency-key"),
                name("x-request-id"),
            ])
            .expose_headers([
                name("x-ratelimit-limit"),
                name("x-ratelimit-remaining"),
                name("x-ratelimit-reset"),
                header::RETRY_AFTER,
                header::LINK,
                header::ETAG,
                name("x-request-id"),
                name("idempotent-replayed"),
            ])
            .max_age(Duration::from_secs(600)),
    )
}

/// A CORS preflight the CORS layer answered has no content: 204, as the
/// contract says (the layer answers 200).
async fn preflight_no_content(request: Request, next: Next) -> Response {
    let preflight = request.method() == axum::http::Method::OPTIONS;
    let mut response = next.run(request).await;
    if preflight
        && response.status() == StatusCode::OK
        && response.headers().contains_key(header::ACCESS_CONTROL_ALLOW_METHODS)
    {
        *response.status_mut() = StatusCode::NO_CONTENT;
    }
    response
}

/// A client's `X-Request-ID` is kept only if it is 1–128 visible ASCII
/// characters without spaces; otherwise the header is dropped and one is
/// generated.
fn drop_insane_request_id(mut request: Request) -> Request {
    let sane = |v: &HeaderValue| {
        let bytes = v.as_bytes();
        !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(|b| b.is_ascii_graphic())
    };
    if request.headers().get("x-request-id").is_some_and(|v| !sane(v)) {
        request.headers_mut().remove("x-request-id");
    }
    request
}

/// Wraps error responses made outside our handlers (a layer's or an asset
/// route's bare 404) in the envelope, keeping their status.
async fn envelope_bare_errors(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let status = response.status();
    if (status.is_client_error() || status.is_server_error())
        && !is_json
        && response.extensions().get::<ErrorCode>().is_none()
    {
        AppError::from_status(status).into_response()
    } else {
        response
    }
}

/// Headers on every response: no content sniffing, and no caching of JSON
/// unless the handler said otherwise (product lists revalidate by ETag).
async fn common_headers(mut response: Response) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if is_json {
        headers
            .entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
    }
    response
}

fn panic_response(cause: Box<dyn Any + Send + 'static>) -> Response {
    let message = cause
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| cause.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    AppError::internal(anyhow::anyhow!("handler panicked: {message}")).into_response()
}

async fn track_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = crate::metrics::method_label(request.method());
    let response = next.run(request).await;
    if response.status() == StatusCode::TOO_MANY_REQUESTS {
        crate::metrics::rate_limited();
    }
    crate::metrics::request(&route, method, response.status().as_u16(), started.elapsed());
    response
}

async fn panics() -> &'static str {
    panic!("boom")
}

/// The application plus two routes that exist only to test the middleware:
/// `/api/panic` panics and `/api/slow` outlasts any timeout.
#[doc(hidden)]
pub fn router_with_test_routes(state: AppState) -> Router {
    let extra = Router::new().route("/api/panic", get(panics)).route(
        "/api/slow",
        get(|| async { tokio::time::sleep(Duration::from_secs(3600)).await }),
    );
    build(state, extra)
}

//! The OpenAPI document: its fixed parts, the declaration of each
//! operation's error responses, and the headers every `/api/` response
//! carries. Request bodies and parameters are documented by the types that
//! parse them. Served at `/openapi.json`; Swagger UI at `/docs` is compiled
//! into the binary, so both work with no internet access.

use std::collections::BTreeMap;

use utoipa::{
    Modify, OpenApi,
    openapi::{
        ContentBuilder, Object, ObjectBuilder, OpenApi as Document, Ref, RefOr, ResponseBuilder, Type,
        example::ExampleBuilder,
        header::{Header, HeaderBuilder},
        response::Response,
        security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme},
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
is audited. Every response carries `X-Request-ID`.\n\n\
By default the service trusts the `manager_id` a request names (access control is upstream). Deployed with \
`AUTH_MODE=jwt`, every `/api/` request needs `Authorization: Bearer <JWT>` (the `bearerAuth` scheme) for the \
manager it names: 401 `UNAUTHENTICATED` without a valid token, 403 `FORBIDDEN` for another manager.",
        license(name = "MIT")
    ),
    tags(
        (name = "inventory", description = "Products of a store manager"),
        (name = "orders", description = "Customer orders"),
        (name = "events", description = "The feed of every change"),
        (name = "webhooks", description = "Endpoints that receive the feed, signed"),
        (name = "audit", description = "The audit trail"),
        (name = "health", description = "Liveness and readiness")
    ),
    components(schemas(ErrorEnvelope, ErrorBody))
)]
pub struct ApiDoc;

/// Declares the errors of one operation, checked by the compiler: a unit
/// type implementing `utoipa::IntoResponses`, listed in the handler's
/// `#[utoipa::path(responses(...))]`. `Read` adds the errors every `GET
/// /api/` route can answer, `Write` those of every `POST /api/` route (a
/// write, which may also end with its outcome unknown), `Health` none.
///
/// ```ignore
/// docs::errors!(AddProductsErrors: Write [ProductNotFound, ProductNameTaken]);
/// ```
macro_rules! errors {
    ($(#[$doc:meta])* $name:ident: $kind:ident [$($code:ident),* $(,)?]) => {
        $(#[$doc])*
        pub struct $name;

        impl $name {
            /// The codes of this operation's own errors.
            pub const CODES: &'static [$crate::error::Code] = &[$($crate::error::Code::$code),*];
        }

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                $crate::http::docs::error_responses($crate::http::docs::Kind::$kind, Self::CODES)
            }
        }
    };
}
pub(crate) use errors;

/// What kind of route an operation is: which errors it can answer besides
/// its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A `GET /api/` route: bad input, no valid token or another manager's
    /// (with `AUTH_MODE=jwt`), rate limit, outages, timeouts, bugs.
    Read,
    /// A `POST /api/` write: those of a read, a body that is not JSON, too
    /// large or too slow, and a write whose outcome could not be learnt.
    Write,
    /// A route outside `/api/` (health): only its own.
    Health,
}

/// The codes any `/api/` route may answer.
const API_CODES: &[Code] = &[
    Code::InvalidRequest,
    Code::UriTooLong,
    Code::HeadersTooLarge,
    Code::Unauthenticated,
    Code::Forbidden,
    Code::RateLimitExceeded,
    Code::ServiceUnavailable,
    Code::Timeout,
    Code::InternalError,
];

/// The codes a write may answer besides those of every `/api/` route.
const WRITE_CODES: &[Code] = &[
    Code::UnsupportedMediaType,
    Code::PayloadTooLarge,
    Code::RequestTimeout,
    Code::OutcomeUnknown,
];

impl Kind {
    /// The codes any route of this kind may answer.
    pub fn codes(self) -> impl Iterator<Item = &'static Code> {
        let (common, own): (&[Code], &[Code]) = match self {
            Self::Read => (API_CODES, &[]),
            Self::Write => (API_CODES, WRITE_CODES),
            Self::Health => (&[], &[]),
        };
        common.iter().chain(own)
    }
}

/// The error responses of an operation of this kind with these codes of its
/// own: one response per status, describing each code and when it is
/// answered, with a named example per code, all derived from the code
/// catalogue ([`Code`]). 429s and 503s document `Retry-After`.
pub fn error_responses(kind: Kind, own: &[Code]) -> BTreeMap<String, RefOr<Response>> {
    let mut codes: Vec<Code> = own.iter().copied().chain(kind.codes().copied()).collect();
    codes.sort();
    codes.dedup();
    let mut by_status: BTreeMap<u16, Vec<Code>> = BTreeMap::new();
    for code in codes {
        by_status.entry(code.status().as_u16()).or_default().push(code);
    }
    by_status
        .into_iter()
        .map(|(status, codes)| {
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
            let mut response = ResponseBuilder::new()
                .description(description)
                .content("application/json", content);
            if matches!(status, 429 | 503) {
                response = response.header("Retry-After", retry_after());
            }
            if status == 401 {
                response = response.header("WWW-Authenticate", www_authenticate());
            }
            (status.to_string(), RefOr::T(response.build()))
        })
        .collect()
}

/// The `Retry-After` header of a 429 or 503.
fn retry_after() -> Header {
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::Integer).build()))
        .description(Some("Seconds to wait before retrying"))
        .build()
}

/// The `WWW-Authenticate` header of a 401.
fn www_authenticate() -> Header {
    HeaderBuilder::new()
        .schema(Some(Object::with_type(Type::String)))
        .description(Some(
            "`Bearer`, or `Bearer error=\"invalid_token\"` when the request carried a token",
        ))
        .build()
}

/// The name of the bearer token security scheme.
pub const BEARER_AUTH: &str = "bearerAuth";

/// Completes the document once the handlers' paths (with their declared
/// errors) are in it: the headers every response carries, the server, and
/// the optional bearer token.
pub fn finish(mut document: Document) -> Document {
    CommonHeaders.modify(&mut document);
    document.servers = Some(vec![Server::new("/")]);
    document
        .components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            BEARER_AUTH,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "Only when the service runs with `AUTH_MODE=jwt`: a JWT for the manager the request names \
(its manager claim, `sub` by default), signed with a configured key (RS256, ES256, EdDSA or HS256), with \
`exp`. Without it (the default, `AUTH_MODE=none`) no token is needed and one sent is ignored.",
                    ))
                    .build(),
            ),
        );
    // Either no authentication (the default: access control is upstream)
    // or the bearer token (`AUTH_MODE=jwt`).
    document.security = Some(vec![
        SecurityRequirement::default(),
        SecurityRequirement::new(BEARER_AUTH, Vec::<String>::new()),
    ]);
    document
}

/// Adds the headers every response carries: `X-Request-ID` everywhere,
/// `X-RateLimit-*` on `/api/` responses.
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
            let operations = [&mut item.get, &mut item.post, &mut item.delete].into_iter().flatten();
            for operation in operations {
                for response in operation.responses.responses.values_mut() {
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
                }
            }
        }
    }
}

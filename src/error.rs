//! One error type for every failure a client can see, and the envelope it is
//! sent in: `{"error": {"code", "message", "details"}}`. Causes of 5xx errors
//! are logged here and never sent.

use std::{borrow::Cow, collections::BTreeMap, fmt};

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{Problems, problems::Details};

/// Declares every error code once: its status, its text, the message it is
/// sent with, when it is answered (the text the OpenAPI document gives it),
/// and its details: either `details` every such error carries, or an
/// `example` of the details the code's errors are given where they are made.
/// An `example_message` replaces the message in the example when the real
/// one is made from numbers. Responses, the document's error responses and
/// their examples are all derived from this list.
macro_rules! codes {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $status:ident, $text:literal {
            message: $message:literal,
            $(example_message: $example_message:literal,)?
            when: $when:literal,
            $kind:ident: {$($key:literal: $why:literal),* $(,)?} $(,)?
        }
    )*) => {
        /// An error code of the API.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $($(#[$doc])* #[doc = $when] $variant),*
        }

        impl Code {
            /// Every code.
            pub const ALL: &[Code] = &[$(Code::$variant),*];

            /// The HTTP status answered with this code.
            pub fn status(self) -> StatusCode {
                match self { $(Code::$variant => StatusCode::$status),* }
            }

            /// The code as the envelope spells it.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $text),* }
            }

            /// When the code is answered.
            pub fn when(self) -> &'static str {
                match self { $(Code::$variant => $when),* }
            }

            /// The message an error with this code is sent with, unless it
            /// was given its own.
            pub fn message(self) -> &'static str {
                match self { $(Code::$variant => $message),* }
            }

            /// The details every error with this code carries (empty for
            /// codes whose details are given where the error is made).
            fn default_details(self) -> Details {
                match self { $(Code::$variant => codes!(@details $kind {$($key: $why),*})),* }
            }

            /// A typical error with this code: the example the OpenAPI
            /// document shows.
            pub fn example(self) -> AppError {
                match self {
                    $(Code::$variant => AppError::new(self)
                        .with_message(codes!(@first $($example_message,)? $message))
                        .with_details(Details::from([$(($key.to_owned(), $why.to_owned())),*]))),*
                }
            }
        }
    };
    (@details details {$($key:literal: $why:literal),*}) => {
        Details::from([$(($key.to_owned(), $why.to_owned())),*])
    };
    (@details example {$($key:literal: $why:literal),*}) => {
        Details::new()
    };
    (@first $first:literal $(, $rest:literal)*) => { $first };
}

codes! {
    InvalidRequest = BAD_REQUEST, "INVALID_REQUEST" {
        message: "the request has invalid fields",
        when: "Malformed JSON or invalid fields; `details` lists every one by JSON path.",
        example: {
            "products[0].price": "must have at most 2 decimal places",
            "products[1].quantity": "must be an integer from 0 to 1000000000",
        },
    }
    UnsupportedMediaType = UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE" {
        message: "the request body must be JSON (Content-Type: application/json)",
        when: "The body's Content-Type is not JSON.",
        details: {"Content-Type": "must be application/json"},
    }
    PayloadTooLarge = PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE" {
        message: "the request body is too large",
        when: "The body is larger than the configured limit.",
        example: {"body": "must be at most 1048576 bytes"},
    }
    ProductNotFound = NOT_FOUND, "PRODUCT_NOT_FOUND" {
        message: "no such product for this manager",
        when: "A product that is not the manager's (or no product at all); every such item is listed.",
        example: {"products[1].product_id": "not a product of this manager"},
    }
    OrderNotFound = NOT_FOUND, "ORDER_NOT_FOUND" {
        message: "no such order for this manager",
        when: "An order that is not the manager's (or no order at all).",
        details: {"order_id": "not an order of this manager"},
    }
    WebhookNotFound = NOT_FOUND, "WEBHOOK_NOT_FOUND" {
        message: "no such webhook endpoint for this manager",
        when: "A webhook endpoint that is not the manager's (or no endpoint at all).",
        details: {"webhook_id": "not a webhook endpoint of this manager"},
    }
    ProductDiscontinued = CONFLICT, "PRODUCT_DISCONTINUED" {
        message: "some products are discontinued",
        when: "Discontinued products; every such line is listed.",
        example: {"products[0].product_id": "is discontinued"},
    }
    InsufficientStock = CONFLICT, "INSUFFICIENT_STOCK" {
        message: "not enough stock for some products",
        when: "Less stock than asked (or a difference leaving less than none); every such item is listed.",
        example: {"products[0].quantity": "requested 5, available 2"},
    }
    QuantityOutOfRange = CONFLICT, "QUANTITY_OUT_OF_RANGE" {
        message: "the stock would exceed 1000000000",
        when: "The change would take a product's stock above 1,000,000,000; every such item is listed.",
        example: {"adjustments[0].delta": "would make 1000000005 (at most 1000000000)"},
    }
    ProductNameTaken = CONFLICT, "PRODUCT_NAME_TAKEN" {
        message: "another product already has this name",
        when: "A new name that another of the manager's products has.",
        example: {"products[0].name": "prod_002 already has this name"},
    }
    Unauthenticated = UNAUTHORIZED, "UNAUTHENTICATED" {
        message: "a valid bearer token is required",
        when: "Only with `AUTH_MODE=jwt`: no `Authorization: Bearer` token, or one that is malformed, expired, not yet valid, for another issuer or audience, without the manager claim, or not signed by a configured key. Answered with `WWW-Authenticate: Bearer`.",
        example: {"Authorization": "the token has expired"},
    }
    Forbidden = FORBIDDEN, "FORBIDDEN" {
        message: "the token is for another manager",
        when: "Only with `AUTH_MODE=jwt`: the request's `manager_id` is not the manager its token is for.",
        details: {"manager_id": "is not the manager the token is for"},
    }
    WebhookLimitReached = CONFLICT, "WEBHOOK_LIMIT_REACHED" {
        message: "this manager has as many webhook endpoints as allowed",
        when: "The manager already has 20 webhook endpoints; delete one first.",
        details: {"manager_id": "at most 20 webhook endpoints per manager"},
    }
    RateLimitExceeded = TOO_MANY_REQUESTS, "RATE_LIMIT_EXCEEDED" {
        message: "too many requests for this manager",
        example_message: "over 100 requests in 3600 seconds for this manager",
        when: "The manager's requests in the rolling window are spent; `Retry-After` says when a slot frees.",
        example: {"manager_id": "over 100 requests in 3600 seconds for this manager; retry in 1712 seconds"},
    }
    IdempotencyKeyReused = UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED" {
        message: "this Idempotency-Key was used with a different request body",
        when: "The Idempotency-Key was first used with another body or another operation.",
        details: {"Idempotency-Key": "was first used with a different body"},
    }
    IdempotencyKeyInUse = CONFLICT, "IDEMPOTENCY_KEY_IN_USE" {
        message: "a request with this Idempotency-Key is still being processed",
        when: "The first request with this Idempotency-Key has not finished.",
        details: {"Idempotency-Key": "the first request with this key has not finished"},
    }
    NotFound = NOT_FOUND, "NOT_FOUND" {
        message: "no such route",
        when: "No route has this path.",
        details: {},
    }
    UriTooLong = URI_TOO_LONG, "URI_TOO_LONG" {
        message: "the request line is too long",
        when: "The request's path and query are over 8 KiB.",
        details: {"uri": "must be at most 8192 bytes"},
    }
    HeadersTooLarge = REQUEST_HEADER_FIELDS_TOO_LARGE, "HEADERS_TOO_LARGE" {
        message: "the request's headers are too large",
        when: "The request's headers are over 32 KiB together.",
        details: {"headers": "must be at most 32768 bytes together"},
    }
    MethodNotAllowed = METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED" {
        message: "method not allowed on this route",
        when: "The path exists, the method does not.",
        details: {},
    }
    ServiceUnavailable = SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE" {
        message: "the service is temporarily unavailable, try again shortly",
        when: "The database is unavailable or the audit log is not keeping up; nothing changed; retry after `Retry-After` seconds.",
        details: {},
    }
    OutcomeUnknown = SERVICE_UNAVAILABLE, "OUTCOME_UNKNOWN" {
        message: "the write may or may not have been applied; retry with the same Idempotency-Key to learn its outcome",
        when: "The write was sent but its outcome could not be learnt (the connection to the database was lost, or the request's deadline passed while it ran): it may have been applied. Retry with the same `Idempotency-Key` to get its true answer, or read the resource.",
        details: {},
    }
    RequestTimeout = REQUEST_TIMEOUT, "REQUEST_TIMEOUT" {
        message: "the request body did not arrive in time",
        when: "The body did not arrive within the request timeout.",
        details: {},
    }
    Timeout = GATEWAY_TIMEOUT, "TIMEOUT" {
        message: "the request took too long",
        when: "The request took longer than the request timeout; nothing changed.",
        details: {},
    }
    InternalError = INTERNAL_SERVER_ERROR, "INTERNAL_ERROR" {
        message: "internal error",
        when: "A bug; nothing about it is disclosed.",
        details: {},
    }
}

/// Everything that can go wrong with a request: a code (which fixes the
/// status), the message and details sent, and what is kept back: the cause
/// (logged, never sent) and, for a 429, when to retry.
#[derive(Debug)]
pub struct AppError {
    code: Code,
    message: Cow<'static, str>,
    details: Details,
    retry_after_secs: Option<u64>,
    cause: Option<anyhow::Error>,
}

/// The error code a response carried, left in its extensions for the audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub &'static str);

/// Left in the extensions of a 503 whose cause was a lost connection to the
/// database (reset, closed, the server shutting down): a write that failed so
/// may have been applied before the reply was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLost;

/// Seconds a client is asked to wait before retrying a 503.
pub const RETRY_UNAVAILABLE_SECS: u64 = 1;

impl AppError {
    /// An error with this code, its message and its details as the catalogue
    /// declares them.
    pub fn new(code: Code) -> Self {
        Self {
            code,
            message: Cow::Borrowed(code.message()),
            details: code.default_details(),
            retry_after_secs: None,
            cause: None,
        }
    }

    /// The same error with these details.
    #[must_use]
    pub fn with_details(mut self, details: Details) -> Self {
        self.details = details;
        self
    }

    /// The same error naming one field (JSON path) and what is wrong with it.
    #[must_use]
    pub fn with_detail(self, field: &str, why: impl Into<String>) -> Self {
        self.with_details(Details::from([(field.to_owned(), why.into())]))
    }

    /// The same error with another message.
    #[must_use]
    pub fn with_message(mut self, message: impl Into<Cow<'static, str>>) -> Self {
        self.message = message.into();
        self
    }

    /// The same error with a cause: logged, never sent.
    #[must_use]
    pub fn with_cause(mut self, cause: impl Into<anyhow::Error>) -> Self {
        self.cause = Some(cause.into());
        self
    }

    /// 400 naming one field.
    pub fn invalid(field: &str, why: impl Into<String>) -> Self {
        Self::new(Code::InvalidRequest).with_detail(field, why)
    }

    /// 404 for an order that is not the manager's.
    pub fn order_not_found() -> Self {
        Self::new(Code::OrderNotFound)
    }

    /// 404 for a product that is not the manager's, named by `field`.
    pub fn product_not_found(field: &str, why: impl Into<String>) -> Self {
        Self::new(Code::ProductNotFound).with_detail(field, why)
    }

    /// 413 for a body over `limit` bytes (0 when the limit is not known).
    pub fn payload_too_large(limit: usize) -> Self {
        let why = match limit {
            0 => "is too large".to_owned(),
            limit => format!("must be at most {limit} bytes"),
        };
        Self::new(Code::PayloadTooLarge).with_detail("body", why)
    }

    /// 429: over `limit` requests in `window_secs`; the next would be
    /// admitted in `retry_after_secs` (sent as `Retry-After`).
    pub fn rate_limited(limit: u32, window_secs: u64, retry_after_secs: u64) -> Self {
        let message = format!("over {limit} requests in {window_secs} seconds for this manager");
        let why = format!("{message}; retry in {retry_after_secs} seconds");
        let mut err = Self::new(Code::RateLimitExceeded)
            .with_message(message)
            .with_detail("manager_id", why);
        err.retry_after_secs = Some(retry_after_secs);
        err
    }

    /// 503: the database (or another dependency) is unavailable; `cause`
    /// is logged.
    pub fn unavailable(cause: impl Into<anyhow::Error>) -> Self {
        Self::new(Code::ServiceUnavailable).with_cause(cause)
    }

    /// 503: a write whose outcome could not be learnt; it may have been
    /// applied.
    pub fn outcome_unknown() -> Self {
        Self::new(Code::OutcomeUnknown)
    }

    /// 504: the request took longer than the configured timeout.
    pub fn timeout() -> Self {
        Self::new(Code::Timeout)
    }

    /// 500: anything else; `cause` goes to the log only.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self::new(Code::InternalError).with_cause(cause)
    }

    /// The code of this error (which fixes its status).
    pub fn code(&self) -> Code {
        self.code
    }

    /// The message sent.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The details sent: JSON path → reason.
    pub fn details(&self) -> &Details {
        &self.details
    }

    /// The cause, if any: logged, never sent.
    pub fn cause(&self) -> Option<&anyhow::Error> {
        self.cause.as_ref()
    }

    /// True for a 503 whose cause was a lost database connection: a write
    /// that failed so may have been applied.
    pub fn is_connection_lost(&self) -> bool {
        self.code == Code::ServiceUnavailable && self.cause.as_ref().is_some_and(is_connection_lost)
    }

    /// Seconds a client should wait before retrying, sent as `Retry-After`:
    /// the rate limit's own, or [`RETRY_UNAVAILABLE_SECS`] for any 503.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after_secs
            .or_else(|| (self.code.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(RETRY_UNAVAILABLE_SECS))
    }

    /// Status, code and details.
    pub fn parts(&self) -> (StatusCode, &'static str, Details) {
        (self.code.status(), self.code.as_str(), self.details.clone())
    }

    /// The error for a bare error status made outside the handlers (a
    /// rejection by a layer): the same status, with its own code.
    pub fn from_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => Self::new(Code::NotFound),
            StatusCode::METHOD_NOT_ALLOWED => Self::new(Code::MethodNotAllowed),
            StatusCode::URI_TOO_LONG => Self::new(Code::UriTooLong),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Self::new(Code::HeadersTooLarge),
            StatusCode::PAYLOAD_TOO_LARGE => Self::payload_too_large(0),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::new(Code::UnsupportedMediaType),
            StatusCode::REQUEST_TIMEOUT => Self::new(Code::RequestTimeout),
            StatusCode::GATEWAY_TIMEOUT => Self::timeout(),
            StatusCode::SERVICE_UNAVAILABLE => Self::unavailable(anyhow::anyhow!("bare 503 response")),
            status if status.is_server_error() => Self::internal(anyhow::anyhow!("bare {status} response")),
            status => Self::invalid("request", status.canonical_reason().unwrap_or("rejected")),
        }
    }

    /// The body of this error's response.
    pub fn envelope(&self) -> ErrorEnvelope {
        ErrorEnvelope {
            error: ErrorBody {
                code: self.code.as_str().to_owned(),
                message: self.message.clone().into_owned(),
                details: self.details.clone(),
            },
        }
    }

    /// True for an order refused for what the products are (not found,
    /// discontinued, short of stock): an outcome, not a failure.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self.code,
            Code::ProductNotFound | Code::ProductDiscontinued | Code::InsufficientStock | Code::QuantityOutOfRange
        )
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AppError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_ref()
            .map(|cause| cause.as_ref() as &(dyn std::error::Error + 'static))
    }
}

impl From<Problems> for AppError {
    fn from(problems: Problems) -> Self {
        Self::new(Code::InvalidRequest).with_details(problems.into_details())
    }
}

impl From<sqlx::Error> for AppError {
    /// Connection trouble is a 503 the client may retry; anything else is a
    /// bug or a broken invariant, a 500. A protocol error is connection
    /// trouble: it is what the driver reports when the other end is not the
    /// server it expects mid-exchange (a proxy that closed the connection
    /// while the server failed over answers the TLS request with nothing).
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_) => Self::unavailable(err),
            sqlx::Error::Database(ref db) if is_unavailable_state(db.code().as_deref()) => Self::unavailable(err),
            // statement_timeout (57014) or lock_timeout (55P03): the database
            // is too busy to answer in time; the client may retry.
            sqlx::Error::Database(ref db) if matches!(db.code().as_deref(), Some("57014" | "55P03")) => {
                Self::unavailable(err)
            }
            other => Self::internal(anyhow::Error::new(other).context("database query failed")),
        }
    }
}

/// True when `cause` is a database connection that broke mid-exchange (reset,
/// closed, the server shutting down or refusing writes): what was sent on it
/// may or may not have been applied.
pub fn is_connection_lost(cause: &anyhow::Error) -> bool {
    match cause.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_)) => true,
        Some(sqlx::Error::Database(db)) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

/// SQLSTATE classes that mean "the database cannot serve right now":
/// 08 connection exception, 53 insufficient resources, 57P01..57P03 shutdown,
/// and 25006 (a read-only transaction: the server is a standby now, or not
/// yet promoted, after a failover).
fn is_unavailable_state(code: Option<&str>) -> bool {
    code.is_some_and(|c| {
        c.starts_with("08") || c.starts_with("53") || matches!(c, "57P01" | "57P02" | "57P03" | "25006")
    })
}

/// The error body, as the brief shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "INVALID_REQUEST", "message": "the request has invalid fields",
    "details": {"products[1].price": "must have at most 2 decimal places"}}}))]
pub struct ErrorEnvelope {
    /// What went wrong.
    pub error: ErrorBody,
}

/// The error inside the envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable machine-readable code, e.g. `INVALID_REQUEST`, `PRODUCT_NOT_FOUND`,
    /// `INSUFFICIENT_STOCK`, `RATE_LIMIT_EXCEEDED`.
    #[schema(example = "INVALID_REQUEST")]
    pub code: String,
    /// A human-readable sentence.
    pub message: String,
    /// Offending fields by JSON path (`products[1].price`), each with a
    /// human-readable reason. Always an object, possibly empty.
    pub details: BTreeMap<String, String>,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match (&self.cause, self.code) {
            (Some(cause), Code::InternalError) => tracing::error!(error = ?cause, "internal error"),
            (None, Code::InternalError) => tracing::error!("internal error"),
            (Some(cause), _) => tracing::warn!(error = ?cause, "dependency unavailable"),
            (None, _) => {}
        }
        let lost = self.code == Code::ServiceUnavailable && self.cause.as_ref().is_some_and(is_connection_lost);
        let retry_after = self.retry_after_secs();
        let mut response = (self.code.status(), Json(self.envelope())).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if lost {
            response.extensions_mut().insert(ConnectionLost);
        }
        response.extensions_mut().insert(ErrorCode(self.code.as_str()));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_states_are_connection_resource_and_shutdown_classes() {
        assert!(is_unavailable_state(Some("08006")));
        assert!(is_unavailable_state(Some("53300")));
        assert!(is_unavailable_state(Some("57P01")));
        assert!(!is_unavailable_state(Some("23505")));
        assert!(!is_unavailable_state(None));
    }

    #[test]
    fn pool_timeouts_are_503_and_other_errors_500() {
        assert_eq!(
            AppError::from(sqlx::Error::PoolTimedOut).parts().0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            AppError::from(sqlx::Error::RowNotFound).parts().0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn every_code_has_its_own_text_and_an_example_of_its_own() {
        let texts: std::collections::HashSet<_> = Code::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(texts.len(), Code::ALL.len());
        for &code in Code::ALL {
            let example = code.example();
            assert_eq!(example.code(), code);
            assert_eq!(example.parts().0, code.status());
            assert!(!code.when().is_empty());
        }
    }

    #[test]
    fn refusals_are_the_answers_an_idempotency_key_keeps() {
        for code in [
            Code::ProductNotFound,
            Code::ProductDiscontinued,
            Code::InsufficientStock,
            Code::QuantityOutOfRange,
        ] {
            assert!(code.example().is_refusal(), "{code:?}");
        }
        assert!(!AppError::timeout().is_refusal());
        assert!(!Code::IdempotencyKeyInUse.example().is_refusal());
    }

    #[tokio::test]
    async fn internal_errors_never_leak_their_cause() {
        let response = AppError::internal(anyhow::anyhow!("secret SQL text")).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.extensions().get::<ErrorCode>(),
            Some(&ErrorCode("INTERNAL_ERROR"))
        );
        let body = axum::body::to_bytes(response.into_body(), 10_000).await.unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("secret"));
    }
}

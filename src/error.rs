//! One error type for every failure a client can see, and the envelope it is
//! sent in: `{"error": {"code", "message", "details"}}`. Causes of 5xx errors
//! are logged here and never sent.

use std::collections::BTreeMap;

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    domain::{Problems, problems::Details},
    store::{
        Failure,
        adjustments::{AdjustRefusal, Problem},
        order_history::CancelRefusal,
        orders::{OrderRefusal, Refusal},
        products::UpsertRefusal,
    },
};

/// Declares every error code once: its status, and when it is answered (the
/// text the OpenAPI document gives it). Responses, the document's error
/// responses and their examples are all derived from this list.
macro_rules! codes {
    ($($variant:ident = $status:ident, $text:literal, $when:literal;)*) => {
        /// An error code of the API.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $(#[doc = $when] $variant),*
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
        }
    };
}

codes! {
    InvalidRequest = BAD_REQUEST, "INVALID_REQUEST",
        "Malformed JSON or invalid fields; `details` lists every one by JSON path.";
    UnsupportedMediaType = UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE", "The body's Content-Type is not JSON.";
    PayloadTooLarge = PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", "The body is larger than the configured limit.";
    ProductNotFound = NOT_FOUND, "PRODUCT_NOT_FOUND",
        "A product that is not the manager's (or no product at all); every such item is listed.";
    OrderNotFound = NOT_FOUND, "ORDER_NOT_FOUND", "An order that is not the manager's (or no order at all).";
    ProductDiscontinued = CONFLICT, "PRODUCT_DISCONTINUED", "Discontinued products; every such line is listed.";
    InsufficientStock = CONFLICT, "INSUFFICIENT_STOCK",
        "Less stock than asked (or a difference leaving less than none); every such item is listed.";
    QuantityOutOfRange = CONFLICT, "QUANTITY_OUT_OF_RANGE",
        "The change would take a product's stock above 1,000,000,000; every such item is listed.";
    ProductNameTaken = CONFLICT, "PRODUCT_NAME_TAKEN", "A new name that another of the manager's products has.";
    RateLimitExceeded = TOO_MANY_REQUESTS, "RATE_LIMIT_EXCEEDED",
        "The manager's requests in the rolling window are spent; `Retry-After` says when a slot frees.";
    IdempotencyKeyReused = UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED",
        "The Idempotency-Key was first used with another body or another operation.";
    IdempotencyKeyInUse = CONFLICT, "IDEMPOTENCY_KEY_IN_USE",
        "The first request with this Idempotency-Key has not finished.";
    NotFound = NOT_FOUND, "NOT_FOUND", "No route has this path.";
    MethodNotAllowed = METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", "The path exists, the method does not.";
    ServiceUnavailable = SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE",
        "The database is unavailable or the audit log is not keeping up; nothing changed; retry after `Retry-After` seconds.";
    OutcomeUnknown = SERVICE_UNAVAILABLE, "OUTCOME_UNKNOWN",
        "The write was sent but its outcome could not be learnt (the connection to the database was lost, or the request's deadline passed while it ran): it may have been applied. Retry with the same `Idempotency-Key` to get its true answer, or read the resource.";
    RequestTimeout = REQUEST_TIMEOUT, "REQUEST_TIMEOUT", "The body did not arrive within the request timeout.";
    Timeout = GATEWAY_TIMEOUT, "TIMEOUT", "The request took longer than the request timeout; nothing changed.";
    InternalError = INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", "A bug; nothing about it is disclosed.";
}

/// Everything that can go wrong with a request, one variant per error code.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: fields that failed validation, or a body that is not JSON.
    #[error("the request has invalid fields")]
    InvalidRequest(Details),
    /// 415: a POST whose Content-Type is not JSON.
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    /// 413: a body over the configured limit.
    #[error("the request body is too large")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// 404: products that are not this manager's (or do not exist).
    #[error("no such product for this manager")]
    ProductNotFound(Details),
    /// 409: products that are discontinued.
    #[error("some products are discontinued")]
    ProductDiscontinued(Details),
    /// 409: lines asking for more than is in stock.
    #[error("not enough stock for some products")]
    InsufficientStock(Details),
    /// 404: an order that is not this manager's (or does not exist).
    #[error("no such order for this manager")]
    OrderNotFound(Details),
    /// 409: changes that would take stock past the most a product may hold.
    #[error("the stock would exceed 1000000000")]
    QuantityOutOfRange(Details),
    /// 409: a new name another product of the manager already has.
    #[error("another product already has this name")]
    ProductNameTaken(Details),
    /// 429: the manager's request budget is spent.
    #[error("over {limit} requests in {window_secs} seconds for this manager")]
    RateLimited {
        /// Requests allowed per window.
        limit: u32,
        /// The window in seconds.
        window_secs: u64,
        /// Seconds until the next request would be admitted.
        retry_after_secs: u64,
    },
    /// 422: an Idempotency-Key reused with another body.
    #[error("this Idempotency-Key was used with a different request body")]
    IdempotencyKeyReused,
    /// 409: an Idempotency-Key whose first request is still running.
    #[error("a request with this Idempotency-Key is still being processed")]
    IdempotencyKeyInUse,
    /// 404: no route has this path.
    #[error("no such route")]
    NoRoute,
    /// 405: the path exists, the method does not.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// 503: the database (or another dependency) is unavailable.
    #[error("the service is temporarily unavailable, try again shortly")]
    Unavailable(#[source] anyhow::Error),
    /// 503: a write whose outcome could not be learnt; it may have been applied.
    #[error("the write may or may not have been applied; retry with the same Idempotency-Key to learn its outcome")]
    OutcomeUnknown,
    /// 408: the request body did not arrive within the configured timeout.
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    /// 504: the request took longer than the configured timeout.
    #[error("the request took too long")]
    Timeout,
    /// 500: anything else; the cause goes to the log only.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl Code {
    /// A typical error with this code: the example the OpenAPI document shows.
    pub fn example(self) -> AppError {
        let one = |key: &str, why: &str| Details::from([(key.to_owned(), why.to_owned())]);
        match self {
            Code::InvalidRequest => AppError::InvalidRequest(Details::from([
                (
                    "products[0].price".to_owned(),
                    "must have at most 2 decimal places".to_owned(),
                ),
                (
                    "products[1].quantity".to_owned(),
                    "must be an integer from 0 to 1000000000".to_owned(),
                ),
            ])),
            Code::UnsupportedMediaType => AppError::UnsupportedMediaType,
            Code::PayloadTooLarge => AppError::PayloadTooLarge { limit: 1_048_576 },
            Code::ProductNotFound => {
                AppError::ProductNotFound(one("products[1].product_id", "not a product of this manager"))
            }
            Code::OrderNotFound => AppError::order_not_found(),
            Code::ProductDiscontinued => {
                AppError::ProductDiscontinued(one("products[0].product_id", "is discontinued"))
            }
            Code::InsufficientStock => {
                AppError::InsufficientStock(one("products[0].quantity", "requested 5, available 2"))
            }
            Code::QuantityOutOfRange => AppError::QuantityOutOfRange(one(
                "adjustments[0].delta",
                "would make 1000000005 (at most 1000000000)",
            )),
            Code::ProductNameTaken => {
                AppError::ProductNameTaken(one("products[0].name", "prod_002 already has this name"))
            }
            Code::RateLimitExceeded => AppError::RateLimited {
                limit: 100,
                window_secs: 3600,
                retry_after_secs: 1712,
            },
            Code::IdempotencyKeyReused => AppError::IdempotencyKeyReused,
            Code::IdempotencyKeyInUse => AppError::IdempotencyKeyInUse,
            Code::NotFound => AppError::NoRoute,
            Code::MethodNotAllowed => AppError::MethodNotAllowed,
            Code::ServiceUnavailable => AppError::Unavailable(anyhow::anyhow!("example")),
            Code::OutcomeUnknown => AppError::OutcomeUnknown,
            Code::RequestTimeout => AppError::RequestTimeout,
            Code::Timeout => AppError::Timeout,
            Code::InternalError => AppError::Internal(anyhow::anyhow!("example")),
        }
    }
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
    /// The code of this error (which fixes its status).
    pub fn code(&self) -> Code {
        use AppError::*;
        match self {
            InvalidRequest(_) => Code::InvalidRequest,
            UnsupportedMediaType => Code::UnsupportedMediaType,
            PayloadTooLarge { .. } => Code::PayloadTooLarge,
            ProductNotFound(_) => Code::ProductNotFound,
            OrderNotFound(_) => Code::OrderNotFound,
            ProductDiscontinued(_) => Code::ProductDiscontinued,
            InsufficientStock(_) => Code::InsufficientStock,
            QuantityOutOfRange(_) => Code::QuantityOutOfRange,
            ProductNameTaken(_) => Code::ProductNameTaken,
            RateLimited { .. } => Code::RateLimitExceeded,
            IdempotencyKeyReused => Code::IdempotencyKeyReused,
            IdempotencyKeyInUse => Code::IdempotencyKeyInUse,
            NoRoute => Code::NotFound,
            MethodNotAllowed => Code::MethodNotAllowed,
            Unavailable(_) => Code::ServiceUnavailable,
            OutcomeUnknown => Code::OutcomeUnknown,
            RequestTimeout => Code::RequestTimeout,
            Timeout => Code::Timeout,
            Internal(_) => Code::InternalError,
        }
    }

    /// Status, code and details.
    pub fn parts(&self) -> (StatusCode, &'static str, Details) {
        use AppError::*;
        let field = |key: &str, why: String| Details::from([(key.to_owned(), why)]);
        let details = match self {
            InvalidRequest(d)
            | ProductNotFound(d)
            | OrderNotFound(d)
            | ProductDiscontinued(d)
            | InsufficientStock(d)
            | QuantityOutOfRange(d)
            | ProductNameTaken(d) => d.clone(),
            UnsupportedMediaType => field("Content-Type", "must be application/json".into()),
            PayloadTooLarge { limit } => field(
                "body",
                match limit {
                    0 => "is too large".to_owned(),
                    limit => format!("must be at most {limit} bytes"),
                },
            ),
            RateLimited { retry_after_secs, .. } => {
                field("manager_id", format!("{self}; retry in {retry_after_secs} seconds"))
            }
            IdempotencyKeyReused => field("Idempotency-Key", "was first used with a different body".into()),
            IdempotencyKeyInUse => field(
                "Idempotency-Key",
                "the first request with this key has not finished".into(),
            ),
            NoRoute | MethodNotAllowed | Unavailable(_) | OutcomeUnknown | RequestTimeout | Timeout | Internal(_) => {
                Details::new()
            }
        };
        let code = self.code();
        (code.status(), code.as_str(), details)
    }

    /// The error for a bare error status made outside the handlers (a
    /// rejection by a layer): the same status, with its own code.
    pub fn from_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => Self::NoRoute,
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge { limit: 0 },
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType,
            StatusCode::REQUEST_TIMEOUT => Self::RequestTimeout,
            StatusCode::GATEWAY_TIMEOUT => Self::Timeout,
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable(anyhow::anyhow!("bare 503 response")),
            status if status.is_server_error() => Self::Internal(anyhow::anyhow!("bare {status} response")),
            status => Self::invalid("request", status.canonical_reason().unwrap_or("rejected")),
        }
    }

    /// The 404 for an order that is not the manager's.
    pub fn order_not_found() -> Self {
        Self::OrderNotFound(Details::from([(
            "order_id".to_owned(),
            "not an order of this manager".to_owned(),
        )]))
    }

    /// A 400 naming one field.
    pub fn invalid(field: &str, why: impl Into<String>) -> Self {
        Self::InvalidRequest(Details::from([(field.to_owned(), why.into())]))
    }

    /// The body of this error's response.
    pub fn envelope(&self) -> ErrorEnvelope {
        let (_, code, details) = self.parts();
        ErrorEnvelope {
            error: ErrorBody {
                code: code.to_owned(),
                message: self.to_string(),
                details,
            },
        }
    }

    /// True for a 503 whose cause was a lost database connection: a write
    /// that failed so may have been applied.
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, Self::Unavailable(cause) if is_connection_lost(cause))
    }

    /// True for an order refused for what the products are (not found,
    /// discontinued, short of stock): an outcome, not a failure.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::ProductNotFound(_)
                | Self::ProductDiscontinued(_)
                | Self::InsufficientStock(_)
                | Self::QuantityOutOfRange(_)
        )
    }
}

impl From<Problems> for AppError {
    fn from(problems: Problems) -> Self {
        Self::InvalidRequest(problems.into_details())
    }
}

impl<R: Into<AppError>> From<Failure<R>> for AppError {
    fn from(failure: Failure<R>) -> Self {
        match failure {
            Failure::Refused(reason) => reason.into(),
            Failure::Database(err) => err.into(),
        }
    }
}

impl From<UpsertRefusal> for AppError {
    fn from(refusal: UpsertRefusal) -> Self {
        match refusal {
            UpsertRefusal::NotFound(d) => Self::ProductNotFound(d),
            UpsertRefusal::Twice(d) => Self::InvalidRequest(d),
            UpsertRefusal::NameTaken(d) => Self::ProductNameTaken(d),
        }
    }
}

impl From<OrderRefusal> for AppError {
    fn from(refusal: OrderRefusal) -> Self {
        match refusal {
            OrderRefusal::Products(Refusal::NotFound, d) => Self::ProductNotFound(d),
            OrderRefusal::Products(Refusal::Discontinued, d) => Self::ProductDiscontinued(d),
            OrderRefusal::Products(Refusal::InsufficientStock, d) => Self::InsufficientStock(d),
            OrderRefusal::ClaimLost => Self::IdempotencyKeyInUse,
        }
    }
}

impl From<AdjustRefusal> for AppError {
    fn from(refusal: AdjustRefusal) -> Self {
        match refusal {
            AdjustRefusal::Products(Problem::NotFound, d) => Self::ProductNotFound(d),
            AdjustRefusal::Products(Problem::InsufficientStock, d) => Self::InsufficientStock(d),
            AdjustRefusal::Products(Problem::OutOfRange, d) => Self::QuantityOutOfRange(d),
            AdjustRefusal::ClaimLost => Self::IdempotencyKeyInUse,
        }
    }
}

impl From<CancelRefusal> for AppError {
    fn from(refusal: CancelRefusal) -> Self {
        match refusal {
            CancelRefusal::NotFound => Self::order_not_found(),
            CancelRefusal::OutOfRange(d) => Self::QuantityOutOfRange(d),
        }
    }
}

impl From<sqlx::Error> for AppError {
    /// Connection trouble is a 503 the client may retry; anything else is a
    /// bug or a broken invariant, a 500.
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
                Self::Unavailable(err.into())
            }
            sqlx::Error::Database(ref db) if is_unavailable_state(db.code().as_deref()) => {
                Self::Unavailable(err.into())
            }
            // statement_timeout (57014) or lock_timeout (55P03): the database
            // is too busy to answer in time; the client may retry.
            sqlx::Error::Database(ref db) if matches!(db.code().as_deref(), Some("57014" | "55P03")) => {
                Self::Unavailable(err.into())
            }
            other => Self::Internal(anyhow::Error::new(other).context("database query failed")),
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
        match &self {
            Self::Internal(cause) => tracing::error!(error = ?cause, "internal error"),
            Self::Unavailable(cause) => tracing::warn!(error = ?cause, "dependency unavailable"),
            _ => {}
        }
        let (status, code, _) = self.parts();
        let lost = matches!(&self, Self::Unavailable(cause) if is_connection_lost(cause));
        let mut response = (status, Json(self.envelope())).into_response();
        let retry_after = match self {
            Self::RateLimited { retry_after_secs, .. } => Some(retry_after_secs),
            _ if status == StatusCode::SERVICE_UNAVAILABLE => Some(RETRY_UNAVAILABLE_SECS),
            _ => None,
        };
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if lost {
            response.extensions_mut().insert(ConnectionLost);
        }
        response.extensions_mut().insert(ErrorCode(code));
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
        assert!(!AppError::Timeout.is_refusal());
        assert!(!Code::IdempotencyKeyInUse.example().is_refusal());
    }

    #[tokio::test]
    async fn internal_errors_never_leak_their_cause() {
        let response = AppError::Internal(anyhow::anyhow!("secret SQL text")).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.extensions().get::<ErrorCode>(),
            Some(&ErrorCode("INTERNAL_ERROR"))
        );
        let body = axum::body::to_bytes(response.into_body(), 10_000).await.unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("secret"));
    }
}

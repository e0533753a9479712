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
        orders::{OrderRefusal, Refusal},
        products::UpsertRefusal,
    },
};

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

/// The error code a response carried, left in its extensions for the audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub &'static str);

impl AppError {
    /// Status, code and details: the only place that knows them.
    pub fn parts(&self) -> (StatusCode, &'static str, Details) {
        use AppError::*;
        let field = |key: &str, why: String| Details::from([(key.to_owned(), why)]);
        match self {
            InvalidRequest(d) => (StatusCode::BAD_REQUEST, "INVALID_REQUEST", d.clone()),
            UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                field("Content-Type", "must be application/json".into()),
            ),
            PayloadTooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                field(
                    "body",
                    match limit {
                        0 => "is too large".to_owned(),
                        limit => format!("must be at most {limit} bytes"),
                    },
                ),
            ),
            ProductNotFound(d) => (StatusCode::NOT_FOUND, "PRODUCT_NOT_FOUND", d.clone()),
            ProductDiscontinued(d) => (StatusCode::CONFLICT, "PRODUCT_DISCONTINUED", d.clone()),
            InsufficientStock(d) => (StatusCode::CONFLICT, "INSUFFICIENT_STOCK", d.clone()),
            ProductNameTaken(d) => (StatusCode::CONFLICT, "PRODUCT_NAME_TAKEN", d.clone()),
            RateLimited { retry_after_secs, .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMIT_EXCEEDED",
                field("manager_id", format!("{self}; retry in {retry_after_secs} seconds")),
            ),
            IdempotencyKeyReused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "IDEMPOTENCY_KEY_REUSED",
                field("Idempotency-Key", "was first used with a different body".into()),
            ),
            IdempotencyKeyInUse => (
                StatusCode::CONFLICT,
                "IDEMPOTENCY_KEY_IN_USE",
                field(
                    "Idempotency-Key",
                    "the first request with this key has not finished".into(),
                ),
            ),
            NoRoute => (StatusCode::NOT_FOUND, "NOT_FOUND", Details::new()),
            MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", Details::new()),
            Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE", Details::new()),
            RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "REQUEST_TIMEOUT", Details::new()),
            Timeout => (StatusCode::GATEWAY_TIMEOUT, "TIMEOUT", Details::new()),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", Details::new()),
        }
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

    /// True for an order refused for what the products are (not found,
    /// discontinued, short of stock): an outcome, not a failure.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::ProductNotFound(_) | Self::ProductDiscontinued(_) | Self::InsufficientStock(_)
        )
    }

    /// The refusal an envelope stored by [`AppError::envelope`] describes.
    pub fn refusal_from(envelope: &serde_json::Value) -> Option<Self> {
        let details: Details = serde_json::from_value(envelope["error"]["details"].clone()).ok()?;
        match envelope["error"]["code"].as_str()? {
            "PRODUCT_NOT_FOUND" => Some(Self::ProductNotFound(details)),
            "PRODUCT_DISCONTINUED" => Some(Self::ProductDiscontinued(details)),
            "INSUFFICIENT_STOCK" => Some(Self::InsufficientStock(details)),
            _ => None,
        }
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

/// SQLSTATE classes that mean "the database cannot serve right now":
/// 08 connection exception, 53 insufficient resources, 57P01..57P03 shutdown.
fn is_unavailable_state(code: Option<&str>) -> bool {
    code.is_some_and(|c| c.starts_with("08") || c.starts_with("53") || matches!(c, "57P01" | "57P02" | "57P03"))
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
        let mut response = (status, Json(self.envelope())).into_response();
        if let Self::RateLimited { retry_after_secs, .. } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
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
    fn every_variant_has_its_own_code() {
        let all = [
            AppError::invalid("a", "b"),
            AppError::UnsupportedMediaType,
            AppError::PayloadTooLarge { limit: 1 },
            AppError::ProductNotFound(Details::new()),
            AppError::ProductDiscontinued(Details::new()),
            AppError::InsufficientStock(Details::new()),
            AppError::ProductNameTaken(Details::new()),
            AppError::RateLimited {
                limit: 1,
                window_secs: 1,
                retry_after_secs: 1,
            },
            AppError::IdempotencyKeyReused,
            AppError::IdempotencyKeyInUse,
            AppError::NoRoute,
            AppError::MethodNotAllowed,
            AppError::Unavailable(anyhow::anyhow!("x")),
            AppError::RequestTimeout,
            AppError::Timeout,
            AppError::Internal(anyhow::anyhow!("x")),
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(|e| e.parts().1).collect();
        assert_eq!(codes.len(), all.len());
    }

    #[test]
    fn refusals_round_trip_through_their_envelope() {
        let details = Details::from([("products[0].quantity".to_owned(), "requested 5, available 2".to_owned())]);
        for refusal in [
            AppError::ProductNotFound(details.clone()),
            AppError::ProductDiscontinued(details.clone()),
            AppError::InsufficientStock(details.clone()),
        ] {
            assert!(refusal.is_refusal());
            let stored = serde_json::to_value(refusal.envelope()).unwrap();
            let back = AppError::refusal_from(&stored).unwrap();
            assert_eq!(serde_json::to_value(back.envelope()).unwrap(), stored);
        }
        let other = serde_json::to_value(AppError::NoRoute.envelope()).unwrap();
        assert!(AppError::refusal_from(&other).is_none());
        assert!(!AppError::Timeout.is_refusal());
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

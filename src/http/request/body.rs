//! The JSON body of a POST: its content type checked, read within the size
//! and time limits, parsed once; handlers take the parsed value.

use std::time::Duration;

use axum::{
    body::Body,
    extract::FromRequestParts,
    http::{HeaderMap, header, request::Parts},
};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value;

use crate::error::{AppError, Code};

/// Why a request body could not be used; becomes the handler's error.
#[derive(Debug, Clone)]
pub enum BodyError {
    /// Content-Type is not JSON.
    UnsupportedMediaType,
    /// Over this many bytes.
    TooLarge(usize),
    /// Still arriving after the request timeout.
    TooSlow,
    /// Not JSON; why.
    Malformed(String),
    /// The connection failed while reading.
    Unreadable,
    /// The query string names another manager than the body.
    ManagerConflict,
}

impl From<BodyError> for AppError {
    fn from(err: BodyError) -> Self {
        match err {
            BodyError::UnsupportedMediaType => AppError::new(Code::UnsupportedMediaType),
            BodyError::TooLarge(limit) => AppError::payload_too_large(limit),
            BodyError::TooSlow => AppError::new(Code::RequestTimeout),
            BodyError::Malformed(why) => AppError::invalid("body", format!("is not valid JSON: {why}")),
            BodyError::Unreadable => AppError::invalid("body", "could not be read"),
            BodyError::ManagerConflict => AppError::invalid(
                "manager_id",
                "the query string names a different manager than the body; a POST names its manager in the body",
            ),
        }
    }
}

/// The request's JSON body as the pipeline parsed it (or its error).
#[derive(Debug, Clone)]
pub(super) struct ParsedBody(pub(super) Result<Value, BodyError>);

/// Extracts the JSON body the pipeline parsed (or its error).
#[derive(Debug)]
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequestParts<S> for JsonBody {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        match parts.extensions.remove::<ParsedBody>() {
            Some(ParsedBody(Ok(value))) => Ok(Self(value)),
            Some(ParsedBody(Err(err))) => Err(err.into()),
            None => Err(AppError::internal(anyhow::anyhow!("request body was not parsed"))),
        }
    }
}

/// True for `application/json` and `application/*+json`, any parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Reads and parses a JSON body of at most `limit` bytes that arrives within
/// `patience` (a client trickling its body does not hold a task forever).
pub(super) async fn read_json(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    patience: Duration,
) -> Result<Value, BodyError> {
    if !is_json(headers) {
        return Err(BodyError::UnsupportedMediaType);
    }
    let bytes = match tokio::time::timeout(patience, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => return Err(BodyError::TooLarge(limit)),
        Ok(Err(_)) => return Err(BodyError::Unreadable),
        Err(_) => return Err(BodyError::TooSlow),
    };
    serde_json::from_slice(&bytes).map_err(|err| BodyError::Malformed(err.to_string()))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn json_content_types_are_recognised() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
            is_json(&headers)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/merge-patch+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/jsonx"));
        assert!(!is_json(&HeaderMap::new()));
    }
}

//! Bounds on what a request may make the service read before anything else:
//! a request line of at most [`MAX_URI_BYTES`] (414 beyond) and headers of at
//! most [`MAX_HEADER_BYTES`] together (431 beyond), in the error envelope.
//! The HTTP server's own read buffer stops anything far larger first.

use axum::http::{HeaderMap, Uri};

use crate::error::{AppError, Code};

/// The longest path and query accepted.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// The most header bytes accepted, names and values together.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// The refusal of a request whose line or headers are too large, if it is.
pub fn refusal(uri: &Uri, headers: &HeaderMap) -> Option<AppError> {
    let line = uri.path_and_query().map_or(0, |p| p.as_str().len());
    if line > MAX_URI_BYTES {
        return Some(AppError::new(Code::UriTooLong));
    }
    // Each header line also carries ": " and CRLF.
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    (header_bytes > MAX_HEADER_BYTES).then(|| AppError::new(Code::HeadersTooLarge))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn lines_and_headers_are_bounded_where_the_contract_says() {
        let uri = |len: usize| format!("/api/x?q={}", "a".repeat(len - 9)).parse::<Uri>().unwrap();
        assert!(refusal(&uri(MAX_URI_BYTES), &HeaderMap::new()).is_none());
        assert_eq!(
            refusal(&uri(MAX_URI_BYTES + 1), &HeaderMap::new()).map(|e| e.code()),
            Some(Code::UriTooLong)
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-big",
            HeaderValue::from_str(&"v".repeat(MAX_HEADER_BYTES - 9)).unwrap(),
        );
        assert!(refusal(&uri(10), &headers).is_none());
        headers.insert("x-more", HeaderValue::from_static("v"));
        assert_eq!(
            refusal(&uri(10), &headers).map(|e| e.code()),
            Some(Code::HeadersTooLarge)
        );
    }
}

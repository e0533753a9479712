//! Query strings of the list endpoints: parsed once, every bad parameter
//! reported, and the `Link` header that points at the next page.

use std::convert::Infallible;

use axum::{
    extract::FromRequestParts,
    http::{HeaderValue, request::Parts},
};

use utoipa::openapi::{
    KnownFormat, ObjectBuilder, SchemaFormat, Type,
    path::{Parameter, ParameterBuilder, ParameterIn},
};

use crate::domain::{ManagerId, Problems};

/// A parsed query string. Unknown parameters are ignored; of a repeated
/// parameter the first wins.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Page size when `limit` is absent.
    pub const DEFAULT_LIMIT: u32 = 100;
    /// Smallest page size.
    pub const MIN_LIMIT: u32 = 1;
    /// Largest page size.
    pub const MAX_LIMIT: u32 = 1000;

    /// Parses the raw query string. Decoding never fails: invalid
    /// percent-encoded UTF-8 becomes U+FFFD, which no parameter accepts.
    pub fn parse(raw: Option<&str>) -> Self {
        Self {
            pairs: serde_urlencoded::from_str(raw.unwrap_or_default()).unwrap_or_default(),
        }
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// `manager_id`, which is required.
    pub fn manager(&self, bad: &mut Problems) -> Option<ManagerId> {
        bad.check(
            "manager_id",
            self.get("manager_id")
                .ok_or_else(|| "is required".to_owned())
                .and_then(ManagerId::parse),
        )
    }

    /// `manager_id` when it is the only parameter a request needs: the
    /// manager, or the 400's problems.
    pub fn required_manager(&self) -> Result<ManagerId, Problems> {
        let mut bad = Problems::default();
        let manager = self.manager(&mut bad);
        bad.into_result(|| manager)
    }

    /// `limit`: [`Self::MIN_LIMIT`] to [`Self::MAX_LIMIT`], default
    /// [`Self::DEFAULT_LIMIT`].
    pub fn limit(&self, bad: &mut Problems) -> Option<u32> {
        self.optional(bad, "limit", |text| {
            text.parse()
                .ok()
                .filter(|n| (Self::MIN_LIMIT..=Self::MAX_LIMIT).contains(n))
                .ok_or_else(|| format!("must be an integer from {} to {}", Self::MIN_LIMIT, Self::MAX_LIMIT))
        })
        .map(|limit| limit.unwrap_or(Self::DEFAULT_LIMIT))
    }

    /// The `limit` parameter as the OpenAPI document states it.
    pub fn limit_parameter() -> Parameter {
        let schema = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
            .minimum(Some(Self::MIN_LIMIT))
            .maximum(Some(Self::MAX_LIMIT));
        let description = format!(
            "Page size, {}–{} (default {}).",
            Self::MIN_LIMIT,
            Self::MAX_LIMIT,
            Self::DEFAULT_LIMIT
        );
        parameter("limit", &description, schema, None)
    }

    /// An optional parameter: `Some(None)` when absent, `Some(Some(value))`
    /// when valid, `None` (recorded in `bad`) when invalid.
    pub fn optional<T>(
        &self,
        bad: &mut Problems,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<Option<T>> {
        match self.get(name) {
            None => Some(None),
            Some(text) => bad.check(name, parse(text)).map(Some),
        }
    }
}

/// An optional query parameter as the OpenAPI document states it.
pub fn parameter(name: &str, description: &str, schema: ObjectBuilder, example: Option<&str>) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .description(Some(description))
        .required(utoipa::openapi::Required::False)
        .schema(Some(schema))
        .example(example.map(Into::into))
        .build()
}

/// A string whose texts match `pattern`.
pub fn pattern(pattern: impl Into<String>) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).pattern(Some(pattern))
}

/// The query the `/api/` middleware already parsed (or, elsewhere, the
/// request's own): handlers never parse it a second time.
impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(parts
            .extensions
            .remove::<Self>()
            .unwrap_or_else(|| Self::parse(parts.uri.query())))
    }
}

/// One page of a list, paged by a cursor (`after`): the store is asked for
/// [`Page::fetch`] items, one more than the page holds, and the extra one,
/// if it came, says that more remain. Products, orders and the audit trail
/// all page this way.
#[derive(Debug)]
pub struct Page<T> {
    /// The page's items.
    pub items: Vec<T>,
    /// The `Link` header to the next page, while more remain.
    pub next: Option<HeaderValue>,
}

impl<T> Page<T> {
    /// How many items to fetch for a page of `limit`.
    pub fn fetch(limit: u32) -> i64 {
        i64::from(limit) + 1
    }

    /// The page of `limit` items of `fetched` (as asked with [`Page::fetch`]).
    /// The next page's link is `path` with `params` (the query, `limit`
    /// included, without `after`) and `after` set to the `cursor` of the
    /// page's last item.
    pub fn of(
        mut fetched: Vec<T>,
        limit: u32,
        path: &str,
        mut params: Vec<(&'static str, String)>,
        cursor: impl FnOnce(&T) -> String,
    ) -> Self {
        let next = if fetched.len() > limit as usize {
            fetched.truncate(limit as usize);
            fetched.last().map(cursor).and_then(|after| {
                params.push(("after", after));
                next_link(path, &params)
            })
        } else {
            None
        };
        Self { items: fetched, next }
    }

    /// The page as a JSON response, `wrap` making the body of its items.
    pub fn respond<B: serde::Serialize>(self, wrap: impl FnOnce(Vec<T>) -> B) -> axum::response::Response {
        use axum::response::IntoResponse;
        let mut response = axum::Json(wrap(self.items)).into_response();
        if let Some(link) = self.next {
            response.headers_mut().insert(axum::http::header::LINK, link);
        }
        response
    }
}

/// The `Link` header value `<path?query>; rel="next"` for these parameters.
pub fn next_link(path: &str, params: &[(&str, String)]) -> Option<HeaderValue> {
    let query = serde_urlencoded::to_string(params).ok()?;
    HeaderValue::from_str(&format!("<{path}?{query}>; rel=\"next\"")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_first_of_repeated_parameters_and_ignores_unknown_ones() {
        let query = Query::parse(Some("a=1&a=2&b=x%20y"));
        assert_eq!(
            (query.get("a"), query.get("b"), query.get("c")),
            (Some("1"), Some("x y"), None)
        );
    }

    #[test]
    fn invalid_percent_encoding_becomes_a_value_no_parameter_accepts() {
        let query = Query::parse(Some("manager_id=%FF%FE"));
        let mut bad = Problems::default();
        assert_eq!(query.manager(&mut bad), None);
        assert!(bad.into_details().contains_key("manager_id"));
    }

    #[test]
    fn limit_defaults_and_is_bounded() {
        let mut bad = Problems::default();
        assert_eq!(Query::default().limit(&mut bad), Some(100));
        assert_eq!(Query::parse(Some("limit=1000")).limit(&mut bad), Some(1000));
        assert!(bad.is_empty());
        for text in ["0", "1001", "-1", "x", ""] {
            let mut bad = Problems::default();
            assert_eq!(
                Query::parse(Some(&format!("limit={text}"))).limit(&mut bad),
                None,
                "{text}"
            );
            assert!(bad.into_details().contains_key("limit"));
        }
    }

    #[test]
    fn a_page_keeps_its_limit_and_links_past_its_last_item_only_while_more_remain() {
        let params = || vec![("manager_id", "m".to_owned()), ("limit", "2".to_owned())];
        let full = Page::of(vec![1, 2, 3], 2, "/x", params(), |n| format!("n{n}"));
        assert_eq!(full.items, [1, 2]);
        assert_eq!(full.next.unwrap(), "</x?manager_id=m&limit=2&after=n2>; rel=\"next\"");
        let last = Page::of(vec![1, 2], 2, "/x", params(), |n| format!("n{n}"));
        assert_eq!((last.items, last.next), (vec![1, 2], None));
        assert_eq!(Page::<()>::fetch(100), 101);
    }

    #[test]
    fn next_links_encode_their_parameters() {
        let link = next_link("/x", &[("manager_id", "m:1".into()), ("after", "prod_002".into())]).unwrap();
        assert_eq!(link, "</x?manager_id=m%3A1&after=prod_002>; rel=\"next\"");
    }
}

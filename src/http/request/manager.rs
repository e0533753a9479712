//! The one place that decides which manager a request acts for. The rate
//! limiter counts that manager, the audit record names it, and the handlers
//! write to it (they read it from the same field with the same parser).

use axum::http::Method;
use serde_json::Value;

use super::body::BodyError;
use crate::{domain::ManagerId, http::query::Query};

/// The manager a request acts for.
#[derive(Debug, Default)]
pub struct Named {
    /// The valid manager id the request names in its one place, if any.
    pub manager: Option<ManagerId>,
    /// True when a POST's query string names another manager than its body
    /// (a 400 from the handler's body, still counted against and audited for
    /// the body's manager; a route without a POST answers 405 as usual).
    pub conflict: bool,
}

/// A GET names its manager in the query string; a POST in its JSON body,
/// and a `manager_id` in a POST's query string must be the same text.
pub fn decide(method: &Method, query: &Query, body: &Result<Value, BodyError>) -> Named {
    if method != Method::POST {
        return Named {
            manager: query.get("manager_id").and_then(|text| ManagerId::parse(text).ok()),
            conflict: false,
        };
    }
    let in_body = match body {
        Ok(Value::Object(fields)) => fields.get("manager_id").and_then(Value::as_str),
        _ => None,
    };
    let conflict = query
        .get("manager_id")
        .is_some_and(|in_query| Some(in_query) != in_body);
    Named {
        manager: in_body.and_then(|text| ManagerId::parse(text).ok()),
        conflict,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn named(method: Method, query: &str, body: Result<Value, BodyError>) -> (Option<String>, bool) {
        let named = decide(&method, &Query::parse(Some(query)), &body);
        (named.manager.map(|m| m.as_str().to_owned()), named.conflict)
    }

    #[test]
    fn a_get_names_its_manager_in_the_query() {
        assert_eq!(
            named(Method::GET, "manager_id=q", Ok(Value::Null)),
            (Some("q".into()), false)
        );
        assert_eq!(
            named(Method::GET, "manager_id=bad%20id", Ok(Value::Null)),
            (None, false)
        );
        assert_eq!(named(Method::GET, "", Ok(Value::Null)), (None, false));
    }

    #[test]
    fn a_post_names_its_manager_in_the_body_only() {
        let body = || Ok(json!({"manager_id": "b"}));
        assert_eq!(named(Method::POST, "", body()), (Some("b".into()), false));
        assert_eq!(named(Method::POST, "manager_id=b", body()), (Some("b".into()), false));
        // Another manager, an invalid one, or one the body lacks: a conflict,
        // still counted against the body's manager.
        assert_eq!(named(Method::POST, "manager_id=q", body()), (Some("b".into()), true));
        assert_eq!(named(Method::POST, "manager_id=!", body()), (Some("b".into()), true));
        assert_eq!(named(Method::POST, "manager_id=q", Ok(json!({}))), (None, true));
        assert_eq!(
            named(Method::POST, "manager_id=q", Err(BodyError::Unreadable)),
            (None, true)
        );
        assert_eq!(
            named(Method::POST, "", Ok(json!({"manager_id": "bad id"}))),
            (None, false)
        );
        assert_eq!(named(Method::POST, "", Ok(json!({"manager_id": 5}))), (None, false));
    }
}

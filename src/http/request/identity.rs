//! Who is calling, when `AUTH_MODE=jwt` asks: the bearer token is checked
//! before anything else is read (a request without a valid one is answered
//! 401 without its body being read), and once the manager the request names
//! is known ([`super::manager`]), it must be the token's (else 403).
//!
//! A request without a valid token is anonymous: it acts for no manager, so
//! it is never counted against the manager it names, and its audit record
//! names none. A request with a valid token acts for the token's manager:
//! counted against it and audited under it, a 403 included. The token
//! itself is never logged or recorded.

use axum::{
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};

use crate::{
    domain::ManagerId,
    error::{AppError, Code},
    http::AppState,
};

/// The caller, as its bearer token proves it.
#[derive(Debug)]
pub enum Identity {
    /// `AUTH_MODE=none`: a request acts for the manager it names.
    NotRequired,
    /// A valid token for this manager.
    Manager(ManagerId),
    /// No valid token: the 401 to answer.
    Unauthenticated(Response),
}

impl Identity {
    /// False when the request is to be answered 401 (its body is not read).
    pub fn admitted(&self) -> bool {
        !matches!(self, Self::Unauthenticated(_))
    }
}

/// Checks the request's `Authorization` header when `AUTH_MODE=jwt`.
pub fn authenticate(state: &AppState, headers: &HeaderMap) -> Identity {
    let Some(verifier) = &state.verifier else {
        return Identity::NotRequired;
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Identity::Unauthenticated(unauthenticated(None));
    };
    // `Bearer` is case-insensitive (RFC 7235); one token, nothing after it.
    let token = value
        .to_str()
        .ok()
        .and_then(|text| text.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty() && !token.contains(' '));
    let Some(token) = token else {
        return Identity::Unauthenticated(unauthenticated(Some("is not `Bearer <token>`".into())));
    };
    match verifier.verify(token) {
        Ok(manager) => Identity::Manager(manager),
        Err(refusal) => Identity::Unauthenticated(unauthenticated(Some(refusal.to_string()))),
    }
}

/// The manager the request acts for, and the refusal to answer instead of
/// serving it, given the manager it `named` (see [`super::manager`]).
pub fn authorize(identity: Identity, named: Option<ManagerId>) -> (Option<ManagerId>, Option<Response>) {
    match identity {
        Identity::NotRequired => (named, None),
        Identity::Unauthenticated(response) => (None, Some(response)),
        Identity::Manager(caller) => {
            let refused = named
                .is_some_and(|named| named != caller)
                .then(|| AppError::new(Code::Forbidden).into_response());
            (Some(caller), refused)
        }
    }
}

/// 401 in the envelope, with `WWW-Authenticate: Bearer` (and
/// `error="invalid_token"` when a token was given, RFC 6750).
fn unauthenticated(why: Option<String>) -> Response {
    let (challenge, why) = match why {
        None => ("Bearer", "a bearer token is required".to_owned()),
        Some(why) => (r#"Bearer error="invalid_token""#, why),
    };
    let mut response = AppError::new(Code::Unauthenticated)
        .with_detail("Authorization", why)
        .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Refusal;

    #[test]
    fn a_valid_token_for_another_manager_is_forbidden_and_acts_for_its_own() {
        let mine = ManagerId::parse("mgr_a").unwrap();
        let other = ManagerId::parse("mgr_b").unwrap();
        let (acting, refused) = authorize(Identity::Manager(mine.clone()), Some(other));
        assert_eq!(acting, Some(mine.clone()));
        assert_eq!(refused.unwrap().status(), 403);
        let (acting, refused) = authorize(Identity::Manager(mine.clone()), Some(mine.clone()));
        assert_eq!((acting, refused.is_none()), (Some(mine.clone()), true));
        // Naming no manager is the handler's 400, for the token's manager.
        let (acting, refused) = authorize(Identity::Manager(mine.clone()), None);
        assert_eq!((acting, refused.is_none()), (Some(mine), true));
    }

    #[test]
    fn without_a_valid_token_a_request_acts_for_no_manager() {
        let named = ManagerId::parse("mgr_a").unwrap();
        let (acting, refused) = authorize(Identity::Unauthenticated(unauthenticated(None)), Some(named.clone()));
        assert_eq!(acting, None);
        let refused = refused.unwrap();
        assert_eq!(refused.status(), 401);
        assert_eq!(refused.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let (acting, refused) = authorize(Identity::NotRequired, Some(named.clone()));
        assert_eq!((acting, refused.is_none()), (Some(named), true));
        let given = unauthenticated(Some(Refusal::Expired.to_string()));
        assert_eq!(
            given.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer error="invalid_token""#
        );
    }
}

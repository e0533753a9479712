//! `Idempotency-Key` on the writes that are not safe to repeat (orders,
//! stock adjustments): one key space per manager, shared by both.

use std::time::Duration;

use axum::{
    Json,
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::Value;
use utoipa::{
    IntoParams,
    openapi::{
        ObjectBuilder, Required, Type,
        path::{Parameter, ParameterBuilder, ParameterIn},
    },
};

use super::{AppState, request::SETTLE_BUDGET};
use crate::{
    audit::AuditEntry,
    domain::{ManagerId, Money, OrderId},
    error::{AppError, Code, ErrorCode},
    store::{self, idempotency::Claim},
};

/// The `Idempotency-Key` header of the writes that are not safe to repeat.
pub struct IdempotencyKey;

impl IdempotencyKey {
    /// The header's name.
    pub const HEADER: &str = "Idempotency-Key";

    /// How many characters a key has.
    pub const LEN: std::ops::RangeInclusive<usize> = 1..=255;

    /// A key as the OpenAPI document states it: [`Self::LEN`] visible ASCII
    /// characters, spaces allowed inside (HTTP trims them at the ends).
    pub const PATTERN: &str = "^[\\x21-\\x7E]([\\x20-\\x7E]{0,253}[\\x21-\\x7E])?$";
}

/// The `Idempotency-Key` header as the OpenAPI document states what
/// [`key_of`] accepts.
impl IntoParams for IdempotencyKey {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let schema = ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(*Self::LEN.start()))
            .max_length(Some(*Self::LEN.end()))
            .pattern(Some(Self::PATTERN));
        vec![
            ParameterBuilder::new()
                .name(Self::HEADER)
                .parameter_in(ParameterIn::Header)
                .description(Some(
                    "Makes retries safe: 1–255 visible ASCII characters (spaces allowed\n\
inside) chosen by the client, per manager, shared by orders and\n\
adjustments.",
                ))
                .required(Required::False)
                .schema(Some(schema))
                .build(),
        ]
    }
}

/// The `Idempotency-Key` header: absent, or [`IdempotencyKey::LEN`] visible
/// ASCII characters (spaces allowed).
pub fn key_of(headers: &HeaderMap) -> Result<Option<String>, AppError> {
    let Some(value) = headers.get(IdempotencyKey::HEADER) else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    if IdempotencyKey::LEN.contains(&bytes.len()) && bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
    } else {
        Err(AppError::invalid(
            IdempotencyKey::HEADER,
            format!(
                "must be {} to {} visible ASCII characters",
                IdempotencyKey::LEN.start(),
                IdempotencyKey::LEN.end()
            ),
        ))
    }
}

/// How a request with (or without) a key goes on.
pub enum Begun {
    /// Run it; with a key (then claimed under the request's attempt).
    Run(Option<String>),
    /// Answer this: the key's first request already got it.
    Replay(Response),
}

/// Claims the request's key, if it has one, under the write attempt of
/// `record` (the request's audit record). `operation` separates the
/// operations sharing the key space (a key first used for another operation
/// is a reuse, 422); `sold` renders the answer of a sold order.
///
/// A key still claimed by a request whose deadline has passed is settled
/// here, by what the database holds: that request's attempt is fenced (see
/// [`crate::audit::sql::fence`]); if the fence goes in, its write never
/// committed and the key is this request's; if not, the write committed and
/// its answer is replayed.
pub async fn begin(
    state: &AppState,
    record: &AuditEntry,
    headers: &HeaderMap,
    operation: &str,
    body: &Value,
    sold: impl FnOnce(OrderId, Money) -> Response,
) -> Result<Begun, AppError> {
    let Some(key) = key_of(headers)? else {
        return Ok(Begun::Run(None));
    };
    let manager = ManagerId::parse(&record.manager_id).map_err(|why| AppError::invalid("manager_id", why))?;
    if record.attempt.is_none() {
        return Err(AppError::internal(anyhow::anyhow!("a keyed write without an attempt")));
    }
    // serde_json's maps are sorted, so this text is the same for any
    // spelling of the same body (key order, white space).
    let body = serde_json::to_string(body).map_err(AppError::internal)?;
    let request = if operation.is_empty() {
        body
    } else {
        format!("{operation} {body}")
    };
    let deadline = chrono::Duration::from_std(Duration::from_secs(state.settings.request_timeout_secs) + SETTLE_BUDGET)
        .unwrap_or(chrono::Duration::MAX);
    let mut settled_one = false;
    loop {
        let claim = store::idempotency::claim(&state.db, &manager, &key, &request, record).await?;
        return Ok(match claim {
            Claim::Owned => Begun::Run(Some(key)),
            Claim::Sold { order_id, total } => Begun::Replay(replayed(sold(order_id, total))),
            Claim::Answered { status, body } => Begun::Replay(replayed(answer(status, body))),
            Claim::Reused => return Err(AppError::new(Code::IdempotencyKeyReused)),
            Claim::InUse {
                attempt: Some(earlier),
                since: Some(since),
                request_id,
            } if !settled_one && chrono::Utc::now() - since > deadline => {
                let mut fence = record.clone();
                fence.attempt = Some(earlier);
                fence.occurred_at = since;
                fence.request_id = request_id.unwrap_or_default();
                fence.status = StatusCode::SERVICE_UNAVAILABLE.as_u16();
                fence.error_code = Some(Code::OutcomeUnknown.as_str().into());
                fence.duration_ms = deadline.num_milliseconds() as f64;
                crate::audit::sql::fence(&state.db, &fence).await?;
                settled_one = true;
                continue;
            }
            Claim::InUse { .. } => return Err(AppError::new(Code::IdempotencyKeyInUse)),
        });
    }
}

/// After the first request with a key failed: remember a refusal (a retry
/// gets the same answer), or free the key after a failure known to have
/// applied nothing (a retry runs again). A lost connection leaves the key
/// to the request's settlement (see `request::settle`).
pub async fn settle(state: &AppState, manager: &ManagerId, record: &AuditEntry, key: Option<&String>, err: &AppError) {
    let (Some(key), Some(token)) = (key, record.attempt) else {
        return;
    };
    let settled = if err.is_refusal() {
        let body = serde_json::to_value(err.envelope()).unwrap_or_default();
        store::idempotency::answered(&state.db, manager, key, token, err.parts().0.as_u16(), &body).await
    } else if err.is_connection_lost() {
        return;
    } else {
        store::idempotency::release(&state.db, manager, key, token).await
    };
    if let Err(cause) = settled {
        tracing::error!(error = %cause, %manager, "could not settle an idempotency key; its next request will");
    }
}

/// A stored answer as a response; an error keeps its code for the audit.
fn answer(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let code = body["error"]["code"]
        .as_str()
        .and_then(|text| Code::ALL.iter().find(|c| c.as_str() == text));
    let mut response = (status, Json(body)).into_response();
    if let Some(code) = code {
        response.extensions_mut().insert(ErrorCode(code.as_str()));
    }
    response
}

/// A stored answer, marked as such.
fn replayed(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn idempotency_keys_are_short_visible_text() {
        let with = |value: &[u8]| {
            let mut headers = HeaderMap::new();
            headers.insert("idempotency-key", HeaderValue::from_bytes(value).unwrap());
            key_of(&headers)
        };
        assert_eq!(key_of(&HeaderMap::new()).unwrap(), None);
        assert_eq!(with(b"order 42 retry").unwrap().as_deref(), Some("order 42 retry"));
        assert!(with(&[b'k'; 255]).is_ok());
        assert!(with(&[b'k'; 256]).is_err());
        assert!(with(b"").is_err());
        assert!(with(b"tab\there").is_err());
        assert!(with("caf\u{e9}".as_bytes()).is_err());
    }

    #[test]
    fn stored_refusals_are_replayed_with_their_status_and_code() {
        let stored = serde_json::to_value(Code::InsufficientStock.example().envelope()).unwrap();
        let response = answer(409, stored);
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(
            response.extensions().get::<ErrorCode>(),
            Some(&ErrorCode("INSUFFICIENT_STOCK"))
        );
        assert_eq!(answer(200, json!({"products": []})).status(), StatusCode::OK);
    }
}

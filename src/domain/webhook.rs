//! Webhook endpoints: the bodies that register one, rotate its secret and
//! replay its events, parsed with every problem listed.

use std::{borrow::Cow, ops::RangeInclusive};

use serde_json::{Value, json};
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{ArrayBuilder, ObjectBuilder, RefOr, Schema, Type, schema::SchemaType},
};

use super::{
    EventId, ManagerId, Problems,
    address::{self, Network},
    event::EventType,
    ids::client_id_property,
    problems::text,
    schema,
};

/// The longest URL an endpoint may have, in characters.
pub const URL_CHARS: RangeInclusive<usize> = 1..=2000;
/// The longest description, in characters.
pub const DESCRIPTION_CHARS: RangeInclusive<usize> = 0..=500;
/// The most endpoints one manager may have.
pub const MAX_PER_MANAGER: i64 = 20;

/// Checks an endpoint URL: `http` or `https`, a host, at most
/// [`URL_CHARS`] characters, and a host that is not an address literal of a
/// refused range (unless `allowed`). Names are checked when they are
/// resolved, at every delivery.
pub fn parse_url(value: &Value, allowed: &[Network]) -> Result<url::Url, String> {
    let raw = text(value)?;
    if !URL_CHARS.contains(&raw.chars().count()) {
        return Err(format!("must be 1 to {} characters", URL_CHARS.end()));
    }
    let url = url::Url::parse(raw).map_err(|e| format!("is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http or https URL".into());
    }
    let host = url.host().ok_or_else(|| "must name a host".to_owned())?;
    if let Some(ip) = address::literal(&host)
        && let Some(why) = address::refused_unless(ip, allowed)
    {
        return Err(format!("address not allowed: {ip} is {why}"));
    }
    Ok(url)
}

/// `POST /api/webhooks`: an endpoint to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWebhook {
    /// Whose events it receives.
    pub manager: ManagerId,
    /// Where they are sent.
    pub url: url::Url,
    /// Only these types (empty: all).
    pub event_types: Vec<EventType>,
    /// A note for the manager.
    pub description: Option<String>,
}

impl NewWebhook {
    /// Parses the body, reporting every invalid field; literal addresses
    /// outside `allowed` are refused.
    pub fn parse(body: &Value, allowed: &[Network]) -> Result<Self, Problems> {
        let (mut bad, manager) = super::begin(body)?;
        let url = bad.check("url", parse_url(&body["url"], allowed));
        let mut event_types = Vec::new();
        // Absent: every type. Present, it must be an array (null is not one).
        match body.get("event_types") {
            None => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let parsed = text(item).and_then(str::parse::<EventType>);
                    if let Some(t) = bad.check(format!("event_types[{i}]"), parsed)
                        && !event_types.contains(&t)
                    {
                        event_types.push(t);
                    }
                }
            }
            _ => bad.add("event_types", "must be an array of event types"),
        }
        let description = match &body["description"] {
            Value::Null => Some(None),
            value => bad.check(
                "description",
                text(value).and_then(|d| {
                    if d.chars().count() > *DESCRIPTION_CHARS.end() {
                        Err(format!("must be at most {} characters", DESCRIPTION_CHARS.end()))
                    } else if d.chars().any(char::is_control) {
                        Err("must not contain control characters".into())
                    } else {
                        Ok(Some(d.to_owned()))
                    }
                }),
            ),
        };
        bad.into_result(|| {
            Some(Self {
                manager: manager?,
                url: url?,
                event_types,
                description: description?,
            })
        })
    }
}

/// `POST /api/webhooks/{id}/replay`: deliver again every event after a
/// point of the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayWebhook {
    /// Whose endpoint.
    pub manager: ManagerId,
    /// After this event (absent: every kept event).
    pub after: Option<EventId>,
}

impl ReplayWebhook {
    /// Parses the body, reporting every invalid field.
    pub fn parse(body: &Value) -> Result<Self, Problems> {
        let (mut bad, manager) = super::begin(body)?;
        // Absent: from the oldest kept event. Present, it must be an event id.
        let after = match body.get("after") {
            None => Some(None),
            Some(Value::Null) => bad.check(
                "after",
                Err("must be an event id such as evt_001, or absent".to_owned()),
            ),
            Some(value) => bad.check("after", text(value).and_then(super::event::parse_after).map(Some)),
        };
        bad.into_result(|| {
            Some(Self {
                manager: manager?,
                after: after?,
            })
        })
    }
}

/// `POST /api/webhooks/{id}/rotate-secret`: the body names the manager only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotateSecret {
    /// Whose endpoint.
    pub manager: ManagerId,
}

impl RotateSecret {
    /// Parses the body, reporting every invalid field.
    pub fn parse(body: &Value) -> Result<Self, Problems> {
        let (bad, manager) = super::begin(body)?;
        bad.into_result(|| manager.map(|manager| Self { manager }))
    }
}

fn event_type_schema() -> ObjectBuilder {
    let names: Vec<Value> = EventType::ALL.iter().map(|t| json!(t.as_str())).collect();
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(names))
}

/// The body of `POST /api/webhooks`, as [`NewWebhook::parse`] reads it.
impl PartialSchema for NewWebhook {
    fn schema() -> RefOr<Schema> {
        let url = schema::string(
            "`http` or `https`, at most 2,000 characters. A host that is an address\n\
literal of a loopback, private, link-local, CGNAT, multicast, unspecified or\n\
metadata address (in any spelling) is refused; a name that resolves to one\n\
fails at delivery (\"address not allowed\").",
            "https://erp.example.com/hooks/inventory",
        )
        .min_length(Some(*URL_CHARS.start()))
        .max_length(Some(*URL_CHARS.end()));
        let types = ArrayBuilder::new()
            .items(event_type_schema())
            .description(Some("Only these event types; absent or empty: every type."));
        let description = schema::string(
            "A note for the manager, at most 500 characters.",
            "Stock sync to the ERP",
        )
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .max_length(Some(*DESCRIPTION_CHARS.end()));
        let object = schema::object("Body of `POST /api/webhooks`.")
            .property("manager_id", client_id_property("The store manager.", "mgr_123"))
            .required("manager_id")
            .property("url", url)
            .required("url")
            .property("event_types", types)
            .property("description", description);
        let example = json!({"manager_id": "mgr_123", "url": "https://erp.example.com/hooks/inventory",
            "event_types": ["inventory.changed", "inventory.low_stock"], "description": "Stock sync to the ERP"});
        schema::example_of(object, example).into()
    }
}

impl ToSchema for NewWebhook {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("RegisterWebhookRequest")
    }
}

/// The body of `POST /api/webhooks/{id}/replay`.
impl PartialSchema for ReplayWebhook {
    fn schema() -> RefOr<Schema> {
        let object = schema::object("Body of `POST /api/webhooks/{webhook_id}/replay`.")
            .property("manager_id", client_id_property("The store manager.", "mgr_123"))
            .required("manager_id")
            .property(
                "after",
                schema::string(
                    "An event id of this manager's feed: events after it are delivered again.\n\
Absent: every kept event.",
                    "evt_042",
                )
                .pattern(Some(EventId::PATTERN)),
            );
        schema::example_of(object, json!({"manager_id": "mgr_123", "after": "evt_042"})).into()
    }
}

impl ToSchema for ReplayWebhook {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ReplayWebhookRequest")
    }
}

/// The body of `POST /api/webhooks/{id}/rotate-secret`.
impl PartialSchema for RotateSecret {
    fn schema() -> RefOr<Schema> {
        let object = schema::object("Body of `POST /api/webhooks/{webhook_id}/rotate-secret`.")
            .property("manager_id", client_id_property("The store manager.", "mgr_123"))
            .required("manager_id");
        schema::example_of(object, json!({"manager_id": "mgr_123"})).into()
    }
}

impl ToSchema for RotateSecret {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("RotateWebhookSecretRequest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_lists_every_bad_field() {
        let problems = NewWebhook::parse(
            &json!({"manager_id": "bad id", "url": "ftp://x.example/", "event_types": ["order.processed", "nope", 3],
                    "description": "a\u{7}b"}),
            &[],
        )
        .unwrap_err()
        .into_details();
        assert_eq!(
            problems.keys().collect::<Vec<_>>(),
            ["description", "event_types[1]", "event_types[2]", "manager_id", "url"]
        );
        let ok = NewWebhook::parse(
            &json!({"manager_id": "m", "url": "https://example.com/h", "event_types": ["order.processed"]}),
            &[],
        )
        .unwrap();
        assert_eq!(ok.event_types, [EventType::OrderProcessed]);
        assert_eq!(ok.description, None);
    }

    #[test]
    fn literal_internal_addresses_are_refused_unless_allowed() {
        let body = json!({"manager_id": "m", "url": "http://2130706433:8080/hook"});
        let problems = NewWebhook::parse(&body, &[]).unwrap_err().into_details();
        assert!(problems["url"].starts_with("address not allowed"), "{problems:?}");
        let allowed = [Network::parse("127.0.0.0/8").unwrap()];
        assert_eq!(
            NewWebhook::parse(&body, &allowed).unwrap().url.as_str(),
            "http://127.0.0.1:8080/hook"
        );
        let long = format!("https://example.com/{}", "a".repeat(2000));
        assert!(parse_url(&json!(long), &[]).is_err());
    }

    #[test]
    fn a_replay_may_name_an_event_to_start_after() {
        assert_eq!(ReplayWebhook::parse(&json!({"manager_id": "m"})).unwrap().after, None);
        let after = ReplayWebhook::parse(&json!({"manager_id": "m", "after": "evt_042"})).unwrap();
        assert_eq!(after.after.map(EventId::get), Some(42));
        let problems = ReplayWebhook::parse(&json!({"manager_id": "m", "after": "42"}))
            .unwrap_err()
            .into_details();
        assert!(problems.contains_key("after"));
    }
}

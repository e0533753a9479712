//! Events: what the feed and the webhooks tell of every change, and the
//! query of the feed.

use std::{fmt, str::FromStr};

use serde::Serialize;

use super::{EventId, ManagerId, Problems};

/// The kinds of event, as the API spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum EventType {
    /// A product was added.
    #[serde(rename = "product.created")]
    ProductCreated,
    /// A product's name, price, stock or threshold was written.
    #[serde(rename = "product.updated")]
    ProductUpdated,
    /// A product was discontinued.
    #[serde(rename = "product.discontinued")]
    ProductDiscontinued,
    /// A product's stock changed.
    #[serde(rename = "inventory.changed")]
    InventoryChanged,
    /// A change took a product's stock below its threshold.
    #[serde(rename = "inventory.low_stock")]
    InventoryLowStock,
    /// An order was sold.
    #[serde(rename = "order.processed")]
    OrderProcessed,
    /// An order was cancelled.
    #[serde(rename = "order.cancelled")]
    OrderCancelled,
    /// A webhook endpoint was disabled.
    #[serde(rename = "webhook.disabled")]
    WebhookDisabled,
}

impl EventType {
    /// Every type, in the order the API documents them.
    pub const ALL: [Self; 8] = [
        Self::ProductCreated,
        Self::ProductUpdated,
        Self::ProductDiscontinued,
        Self::InventoryChanged,
        Self::InventoryLowStock,
        Self::OrderProcessed,
        Self::OrderCancelled,
        Self::WebhookDisabled,
    ];

    /// The type as the API spells it (and the `event.type` column holds it).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProductCreated => "product.created",
            Self::ProductUpdated => "product.updated",
            Self::ProductDiscontinued => "product.discontinued",
            Self::InventoryChanged => "inventory.changed",
            Self::InventoryLowStock => "inventory.low_stock",
            Self::OrderProcessed => "order.processed",
            Self::OrderCancelled => "order.cancelled",
            Self::WebhookDisabled => "webhook.disabled",
        }
    }

    /// A comma-separated list of types as a pattern (what
    /// [`parse_types`] accepts).
    pub fn list_pattern() -> String {
        let names: Vec<String> = Self::ALL.iter().map(|t| t.as_str().replace('.', "\\.")).collect();
        let one = format!("({})", names.join("|"));
        format!("^{one}(,{one})*$")
    }
}

impl FromStr for EventType {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == text)
            .ok_or_else(|| format!("{text:?} is not an event type"))
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A comma-separated list of event types, each once at most; every unknown
/// one is named.
pub fn parse_types(text: &str) -> Result<Vec<EventType>, String> {
    let mut types = Vec::new();
    let mut unknown = Vec::new();
    for part in text.split(',') {
        match part.parse::<EventType>() {
            Ok(t) if !types.contains(&t) => types.push(t),
            Ok(_) => {}
            Err(_) => unknown.push(format!("{part:?}")),
        }
    }
    if unknown.is_empty() {
        Ok(types)
    } else {
        Err(format!(
            "must be a comma-separated list of event types; not types: {}",
            unknown.join(", ")
        ))
    }
}

/// An `after` cursor: an event id.
pub fn parse_after(text: &str) -> Result<EventId, String> {
    EventId::parse(text).ok_or_else(|| "must be an event id such as evt_001".into())
}

/// The query of `GET /api/events`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedQuery {
    /// Whose events.
    pub manager: ManagerId,
    /// Events after this one (absent: from the oldest kept).
    pub after: Option<EventId>,
    /// Only these types (absent: all).
    pub types: Option<Vec<EventType>>,
    /// At most this many.
    pub limit: u32,
}

impl FeedQuery {
    /// The query with its parts checked; `bad` has every problem.
    pub fn new(
        bad: Problems,
        manager: Option<ManagerId>,
        after: Option<Option<EventId>>,
        types: Option<Option<Vec<EventType>>>,
        limit: Option<u32>,
    ) -> Result<Self, Problems> {
        bad.into_result(|| {
            Some(Self {
                manager: manager?,
                after: after?,
                types: types?,
                limit: limit?,
            })
        })
    }

    /// The type names to filter by, if any.
    pub fn type_names(&self) -> Option<Vec<String>> {
        self.types
            .as_ref()
            .map(|types| types.iter().map(|t| t.as_str().to_owned()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_round_trip_and_the_pattern_is_the_parser() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>(), Ok(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        let pattern = regex::Regex::new(&EventType::list_pattern()).unwrap();
        for text in [
            "order.processed",
            "order.processed,inventory.changed",
            "",
            "order.processed,",
            "orderXprocessed",
            "Order.processed",
            "order.processed,order.processed",
        ] {
            assert_eq!(pattern.is_match(text), parse_types(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn unknown_types_are_all_named() {
        let why = parse_types("order.processed,nope,also").unwrap_err();
        assert!(why.contains("\"nope\"") && why.contains("\"also\""), "{why}");
        assert_eq!(
            parse_types("inventory.changed,inventory.changed").unwrap(),
            [EventType::InventoryChanged]
        );
    }
}

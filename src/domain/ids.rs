//! Identifiers. Managers and customers are named by the client; products and
//! orders get public ids (`prod_001`, `ord_001`) from database sequences.

use std::{fmt, ops::RangeInclusive};

use serde::Serialize;
use utoipa::{
    IntoParams,
    openapi::{
        ObjectBuilder, Type,
        path::{Parameter, ParameterIn},
    },
};

/// Declares the shape shared by manager and customer ids once: its length
/// and the pattern the OpenAPI document states.
macro_rules! client_id_rule {
    ($min:literal, $max:literal) => {
        /// The length of a manager or customer id (its characters are ASCII).
        pub const CLIENT_ID_LEN: RangeInclusive<usize> = $min..=$max;
        /// Manager and customer ids as the OpenAPI document states them:
        /// 1–64 characters of `A-Z a-z 0-9 _ - . :`.
        pub const CLIENT_ID_PATTERN: &str = concat!("^[A-Za-z0-9_.:-]{", $min, ",", $max, "}$");
    };
}

client_id_rule!(1, 64);

/// Checks the shape shared by manager and customer ids: [`CLIENT_ID_LEN`]
/// characters of `A-Z a-z 0-9 _ - . :` ([`CLIENT_ID_PATTERN`]).
fn client_id(value: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':');
    if !CLIENT_ID_LEN.contains(&value.len()) {
        Err(format!(
            "must be {} to {} characters",
            CLIENT_ID_LEN.start(),
            CLIENT_ID_LEN.end()
        ))
    } else if !value.chars().all(allowed) {
        Err("may contain only letters, digits and _ - . :".into())
    } else {
        Ok(())
    }
}

/// The schema of a manager or customer id.
pub(crate) fn client_id_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(CLIENT_ID_PATTERN))
}

/// A manager or customer id in a request body, with its description and
/// example.
pub(crate) fn client_id_property(description: &str, example: &str) -> ObjectBuilder {
    super::schema::example_of(client_id_schema().description(Some(description)), example)
}

macro_rules! client_id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Accepts 1–64 characters of `A-Z a-z 0-9 _ - . :`.
            pub fn parse(value: &str) -> Result<Self, String> {
                client_id(value).map(|()| Self(value.to_owned()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

client_id_type!(
    /// The store manager a request acts for; every row belongs to one.
    ManagerId
);
client_id_type!(
    /// The customer an order is for, as the client names them.
    CustomerId
);

impl ManagerId {
    /// The `manager_id` query parameter of a read, which is required.
    pub fn query_parameter() -> Parameter {
        super::schema::parameter(
            ParameterIn::Query,
            "manager_id",
            true,
            "The store manager (required).",
            client_id_schema(),
            Some("mgr_123".into()),
        )
    }
}

/// The manager a read is for: `manager_id`, the only query parameter of a
/// read of one product or order (parsed by `Query::required_manager`).
impl IntoParams for ManagerId {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![Self::query_parameter()]
    }
}

/// The number of a public id as a regular expression: what
/// [`parse_public`] accepts after the prefix (at most [`PUBLIC_DIGITS`]
/// digits, zero-padded to three, not zero).
macro_rules! public_number_pattern {
    () => {
        "(00[1-9]|0[1-9][0-9]|[1-9][0-9]{2,17})"
    };
}

/// The most digits of a public id's number (as [`public_number_pattern`]
/// says: `[1-9][0-9]{2,17}`).
const PUBLIC_DIGITS: usize = 18;

/// The number of a public id such as `prod_007`: the prefix, then a positive
/// number zero-padded to at least three digits. Only the exact text the
/// service would print is accepted (`prod_7`, `prod_0007` and `PROD_007` are
/// not ids), so each id has exactly one spelling.
fn parse_public(prefix: &str, text: &str) -> Option<i64> {
    let digits = text.strip_prefix(prefix)?;
    // At most 18 digits: every such number fits an i64, and the documented
    // pattern can say it.
    if digits.len() > PUBLIC_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number: i64 = digits.parse().ok()?;
    (number > 0 && format!("{number:03}") == digits).then_some(number)
}

macro_rules! public_id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, sqlx::Type)]
        #[sqlx(transparent)]
        pub struct $name(i64);

        impl $name {
            /// The id's text prefix.
            pub const PREFIX: &'static str = $prefix;

            /// The ids as the OpenAPI document states them: exactly the
            /// texts [`Self::parse`] accepts.
            pub const PATTERN: &'static str = concat!("^", $prefix, public_number_pattern!(), "$");

            /// The id spelled exactly as the service prints it, or `None`.
            pub fn parse(text: &str) -> Option<Self> {
                parse_public(Self::PREFIX, text).map(Self)
            }

            /// The id of database row number `n`.
            pub fn from_db(n: i64) -> Self {
                Self(n)
            }

            /// The database row number.
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{:03}", Self::PREFIX, self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}

public_id_type!(
    /// A product's public id, `prod_001` onwards.
    ProductId,
    "prod_"
);
public_id_type!(
    /// An order's public id, `ord_001` onwards.
    OrderId,
    "ord_"
);
public_id_type!(
    /// An event's public id, `evt_001` onwards.
    EventId,
    "evt_"
);
public_id_type!(
    /// A webhook endpoint's public id, `wh_001` onwards.
    WebhookId,
    "wh_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_ids_print_zero_padded_to_three_digits() {
        assert_eq!(ProductId::from_db(1).to_string(), "prod_001");
        assert_eq!(ProductId::from_db(999).to_string(), "prod_999");
        assert_eq!(ProductId::from_db(1000).to_string(), "prod_1000");
        assert_eq!(OrderId::from_db(789).to_string(), "ord_789");
        assert_eq!(serde_json::to_string(&OrderId::from_db(5)).unwrap(), "\"ord_005\"");
    }

    #[test]
    fn public_ids_parse_only_their_own_spelling() {
        assert_eq!(ProductId::parse("prod_001"), Some(ProductId::from_db(1)));
        assert_eq!(ProductId::parse("prod_1000").map(ProductId::get), Some(1000));
        for bad in [
            "prod_1",
            "prod_01",
            "prod_0001",
            "prod_000",
            "PROD_001",
            "prod_",
            "prod_-01",
            "prod_+01",
            "ord_001",
            "banana",
            "",
            "prod_99999999999999999999",
            " prod_001",
        ] {
            assert_eq!(ProductId::parse(bad), None, "{bad}");
        }
        assert_eq!(OrderId::parse("ord_042").map(OrderId::get), Some(42));
        assert_eq!(EventId::parse("evt_1000").map(EventId::get), Some(1000));
        assert_eq!(EventId::from_db(7).to_string(), "evt_007");
    }

    #[test]
    fn the_id_patterns_are_exactly_the_parsers() {
        let product = regex::Regex::new(ProductId::PATTERN).unwrap();
        let order = regex::Regex::new(OrderId::PATTERN).unwrap();
        let client = regex::Regex::new(CLIENT_ID_PATTERN).unwrap();
        let mut texts: Vec<String> = ["prod_", "ord_", "x"]
            .iter()
            .flat_map(|prefix| {
                ["0", "1", "01", "001", "010", "100", "0001", "1000", "999", "12a", "-01"]
                    .iter()
                    .map(move |n| format!("{prefix}{n}"))
            })
            .collect();
        texts.extend((15..=21).map(|n| format!("prod_{}", "9".repeat(n))));
        texts.extend((0..=66).map(|n| "m".repeat(n)));
        texts.extend(["a b", "a/b", "é", "a.b-c:d_E9", "", "prod_\n"].map(String::from));
        for text in &texts {
            assert_eq!(product.is_match(text), ProductId::parse(text).is_some(), "{text}");
            assert_eq!(order.is_match(text), OrderId::parse(text).is_some(), "{text}");
            assert_eq!(client.is_match(text), ManagerId::parse(text).is_ok(), "{text}");
        }
        assert_eq!(CLIENT_ID_PATTERN, "^[A-Za-z0-9_.:-]{1,64}$");
    }

    #[test]
    fn client_ids_allow_a_small_alphabet_and_length() {
        assert!(ManagerId::parse("mgr_123").is_ok());
        assert!(ManagerId::parse("a.b-c:d_E9").is_ok());
        assert!(ManagerId::parse(&"m".repeat(64)).is_ok());
        assert!(ManagerId::parse(&"m".repeat(65)).is_err());
        assert!(ManagerId::parse("").is_err());
        assert!(ManagerId::parse("mgr 123").is_err());
        assert!(CustomerId::parse("cust/456").is_err());
        assert!(CustomerId::parse("é").is_err());
        assert_eq!(CustomerId::parse("cust_456").unwrap().as_str(), "cust_456");
        assert_eq!(ManagerId::parse("mgr_1").unwrap().to_string(), "mgr_1");
    }
}

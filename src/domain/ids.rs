//! Identifiers. Managers and customers are named by the client; products and
//! orders get public ids (`prod_001`, `ord_001`) from database sequences.

use std::fmt;

use serde::Serialize;

/// Checks the shape shared by manager and customer ids: 1–64 characters of
/// `A-Z a-z 0-9 _ - . :`.
fn client_id(value: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':');
    if value.is_empty() || value.len() > 64 {
        Err("must be 1 to 64 characters".into())
    } else if !value.chars().all(allowed) {
        Err("may contain only letters, digits and _ - . :".into())
    } else {
        Ok(())
    }
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

/// The number of a public id such as `prod_007`: the prefix, then a positive
/// number zero-padded to at least three digits. Only the exact text the
/// service would print is accepted (`prod_7`, `prod_0007` and `PROD_007` are
/// not ids), so each id has exactly one spelling.
fn parse_public(prefix: &str, text: &str) -> Option<i64> {
    let digits = text.strip_prefix(prefix)?;
    // At most 18 digits: every such number fits an i64, and the documented
    // pattern can say it.
    if digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
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

//! Money: exact decimals from the JSON text to the database and back. A price
//! is never a float anywhere on the way.

use std::str::FromStr;

use rust_decimal::{Decimal, prelude::ToPrimitive};
use serde::{Serialize, Serializer};
use serde_json::Value;
use utoipa::openapi::{KnownFormat, ObjectBuilder, SchemaFormat, Type};

/// An amount of money with at most two decimal places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, sqlx::Type)]
#[sqlx(transparent)]
pub struct Money(Decimal);

impl Money {
    /// The highest price a product may have.
    pub const MAX_PRICE: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);

    /// The most decimal places a price may have.
    pub const DECIMALS: u32 = 2;

    /// The lowest price a product may have: one unit of the last decimal.
    pub const MIN_PRICE: Decimal = Decimal::from_parts(1, 0, 0, false, Self::DECIMALS);

    /// Parses a product price: a JSON number (never a string such as
    /// `"15.99"`), more than 0, at most 1,000,000, with at most two decimal
    /// places (`15.999` is rejected, `15.990` is fine). The JSON text is read
    /// exactly as written (serde_json's arbitrary precision), so no float
    /// rounding can turn a bad price into a good one.
    pub fn parse_price(value: &Value) -> Result<Self, String> {
        let Value::Number(number) = value else {
            return Err(match value {
                Value::Null => "is required".into(),
                _ => "must be a number".into(),
            });
        };
        let out_of_range = || format!("must be more than 0 and at most {}", Self::MAX_PRICE);
        let too_precise = || format!("must have at most {} decimal places", Self::DECIMALS);
        // Written out exactly first: a digit beyond the decimal type's
        // precision is refused, never rounded away.
        let text = number.as_str();
        let amount = match Decimal::from_str_exact(text) {
            Ok(amount) => amount,
            Err(_) => {
                let plain = super::problems::plain(text).ok_or_else(out_of_range)?;
                Decimal::from_str_exact(&plain).map_err(|_| {
                    if plain
                        .split_once('.')
                        .is_some_and(|(_, f)| f.len() > Self::DECIMALS as usize)
                    {
                        too_precise()
                    } else {
                        out_of_range()
                    }
                })?
            }
        };
        if amount <= Decimal::ZERO || amount > Self::MAX_PRICE {
            Err(out_of_range())
        } else if amount.normalize().scale() > Self::DECIMALS {
            Err(too_precise())
        } else {
            Ok(Self(amount.round_dp(Self::DECIMALS)))
        }
    }

    /// The schema of a price in a request body: a JSON number from
    /// [`Self::MIN_PRICE`] to [`Self::MAX_PRICE`] (a price has at most
    /// [`Self::DECIMALS`] decimals, so more than 0 is at least the minimum).
    pub(crate) fn price_schema() -> ObjectBuilder {
        let builder = ObjectBuilder::new()
            .schema_type(Type::Number)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Double)))
            .description(Some(
                "A JSON number (not a string) > 0 and ≤ 1,000,000 with at most 2 decimals.",
            ));
        super::schema::example_of(builder, serde_json::json!(15.99))
            .maximum(Self::MAX_PRICE.to_i64())
            .minimum(Self::MIN_PRICE.to_f64())
    }

    /// Wraps an amount read from the database (already NUMERIC(_, 2)).
    pub fn from_decimal(amount: Decimal) -> Self {
        Self(amount)
    }

    /// The exact amount.
    pub fn amount(self) -> Decimal {
        self.0
    }
}

impl FromStr for Money {
    type Err = String;

    /// Parses the same rules as a price from its JSON text (`"15.99"`).
    fn from_str(text: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        Self::parse_price(&value)
    }
}

/// Serialises as a JSON number with at most two decimals and no trailing
/// zeros: `44.97`, `16`, `15.9`; never `"44.97"` or `44.970000000000006`.
impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = self.0.round_dp(2).normalize().to_string();
        serde_json::Number::from_str(&text)
            .map_err(serde::ser::Error::custom)?
            .serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn price(json_text: &str) -> Result<Money, String> {
        json_text.parse()
    }

    #[test]
    fn accepts_prices_with_up_to_two_decimals() {
        for ok in ["15.99", "0.01", "1000000", "1000000.00", "12.5", "15.990", "1e2", "7"] {
            assert!(price(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_prices_out_of_range_or_too_precise() {
        assert_eq!(price("15.999"), Err("must have at most 2 decimal places".into()));
        assert_eq!(price("0"), Err("must be more than 0 and at most 1000000".into()));
        assert!(price("-1").is_err());
        assert!(price("1000000.01").is_err());
        assert!(price("1e300").is_err());
        assert_eq!(
            price("15.990000000000000000000000000001e0"),
            Err("must have at most 2 decimal places".into()),
            "a digit beyond the decimal type's precision is refused, not rounded away"
        );
        assert_eq!(price("1599e-2").unwrap(), price("15.99").unwrap());
        assert!(price("1e-400").is_err());
        assert_eq!(Money::parse_price(&json!("15.99")), Err("must be a number".into()));
        assert_eq!(Money::parse_price(&json!(true)), Err("must be a number".into()));
        assert_eq!(Money::parse_price(&Value::Null), Err("is required".into()));
    }

    #[test]
    fn serialises_as_a_short_json_number() {
        let emit = |text: &str| serde_json::to_string(&price(text).unwrap()).unwrap();
        assert_eq!(emit("15.99"), "15.99");
        assert_eq!(emit("15.90"), "15.9");
        assert_eq!(emit("16.00"), "16");
        assert_eq!(emit("100"), "100");
        let total = Money::from_decimal(Decimal::new(4497, 2));
        assert_eq!(serde_json::to_string(&total).unwrap(), "44.97");
        assert_eq!(total.amount(), Decimal::new(4497, 2));
    }
}

//! Collects every invalid field of a request, keyed by JSON path, so a client
//! learns about all of them at once rather than one per round trip.

use std::{collections::BTreeMap, ops::RangeInclusive};

use serde_json::Value;

/// JSON path (`products[1].price`) → human-readable reason.
pub type Details = BTreeMap<String, String>;

/// The invalid fields found while parsing one request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Problems(Details);

impl Problems {
    /// Records the error of `result` under `path` and returns its value, if any.
    pub fn check<T>(&mut self, path: impl Into<String>, result: Result<T, String>) -> Option<T> {
        result.map_err(|why| self.add(path, why)).ok()
    }

    /// Records a problem with the field at `path`; the first reason for a path wins.
    pub fn add(&mut self, path: impl Into<String>, why: impl Into<String>) {
        self.0.entry(path.into()).or_insert_with(|| why.into());
    }

    /// True when nothing was wrong.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Ok(value) when nothing was recorded, else the problems.
    pub fn into_result<T>(self, value: impl FnOnce() -> Option<T>) -> Result<T, Self> {
        match (self.is_empty(), value()) {
            (true, Some(value)) => Ok(value),
            _ => Err(self),
        }
    }

    /// The collected details.
    pub fn into_details(self) -> Details {
        self.0
    }
}

/// The string at `value`, or why it is not one.
pub fn text(value: &Value) -> Result<&str, String> {
    match value {
        Value::String(s) => Ok(s),
        Value::Null => Err("is required".into()),
        _ => Err("must be a string".into()),
    }
}

/// The array at `value` with a length in `len`, or why it is not one.
pub fn list(value: &Value, len: RangeInclusive<usize>) -> Result<&[Value], String> {
    match value {
        Value::Array(items) if len.contains(&items.len()) => Ok(items),
        Value::Array(_) => Err(format!("must have between {} and {} items", len.start(), len.end())),
        Value::Null => Err("is required".into()),
        _ => Err("must be an array".into()),
    }
}

/// The integer at `value` within `range`: a JSON number whose value is
/// whole, as JSON Schema's `integer` is (`2`, `2.0` and `2e0` are the same
/// integer); `true`, `"5"` and `1.5` are not integers. The number's text is
/// read exactly (no float rounding).
pub fn integer(value: &Value, range: RangeInclusive<i64>) -> Result<i64, String> {
    let out_of_range = || format!("must be an integer from {} to {}", range.start(), range.end());
    match value {
        Value::Number(n) => match whole(n.as_str()) {
            Some(Some(i)) if range.contains(&i) => Ok(i),
            Some(_) => Err(out_of_range()),
            None => Err("must be a whole number".into()),
        },
        Value::Null => Err("is required".into()),
        _ => Err(out_of_range()),
    }
}

/// `Some(Some(i))` for a whole number that fits an `i64`, `Some(None)` for a
/// whole number that does not, `None` for a number with a fraction.
fn whole(literal: &str) -> Option<Option<i64>> {
    match plain(literal) {
        Some(plain) if plain.contains('.') => None,
        Some(plain) => Some(plain.parse().ok()),
        // Too long to write out: a whole number only if huge.
        None => literal.parse::<f64>().ok().filter(|f| f.abs() >= 1.0).map(|_| None),
    }
}

/// The longest plain decimal [`plain`] writes out.
const PLAIN_MAX: usize = 64;

/// A JSON number literal (`-1.5e2`, `15.990e0`, `2`) written out as a plain
/// decimal with no exponent, exactly (`-150`, `15.99`, `2`): no digit
/// dropped, trailing fractional zeros and leading zeros removed. `None` when
/// it is not a number or would be longer than [`PLAIN_MAX`] characters.
///
/// Written by hand because the decimal crate's scientific parser rounds to
/// its 28 significant digits, which would turn
/// `15.990000000000000000000000000001e0` into a valid price.
pub fn plain(literal: &str) -> Option<String> {
    let (negative, unsigned) = match literal.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, literal),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], unsigned[at + 1..].parse::<i64>().ok()?),
        None => (unsigned, 0),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((_, "")) => return None,
        Some(parts) => parts,
        None => (mantissa, ""),
    };
    if int.is_empty() || !(int.bytes().chain(frac.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = [int, frac].concat();
    // Where the decimal point falls in `digits` once the exponent moved it.
    let point = i64::try_from(int.len()).ok()?.checked_add(exponent)?;
    let len = i64::try_from(digits.len()).ok()?;
    if point.abs() > PLAIN_MAX as i64 + len {
        return None;
    }
    let (whole, fraction) = if point <= 0 {
        (
            String::new(),
            format!("{}{digits}", "0".repeat(point.unsigned_abs() as usize)),
        )
    } else if point >= len {
        (format!("{digits}{}", "0".repeat((point - len) as usize)), String::new())
    } else {
        let (w, f) = digits.split_at(point as usize);
        (w.to_owned(), f.to_owned())
    };
    let whole = whole.trim_start_matches('0');
    let fraction = fraction.trim_end_matches('0');
    let mut out = String::with_capacity(whole.len() + fraction.len() + 3);
    if negative && !(whole.is_empty() && fraction.is_empty()) {
        out.push('-');
    }
    out.push_str(if whole.is_empty() { "0" } else { whole });
    if !fraction.is_empty() {
        out.push('.');
        out.push_str(fraction);
    }
    (out.len() <= PLAIN_MAX).then_some(out)
}

/// Why `body` is not a JSON object, if it is not.
pub fn object(body: &Value) -> Result<(), String> {
    match body {
        Value::Object(_) => Ok(()),
        _ => Err("must be a JSON object".into()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn numbers_are_written_out_exactly_whatever_their_exponent() {
        for (literal, written) in [
            ("2", "2"),
            ("-0", "0"),
            ("002.500", "2.5"),
            ("1e2", "100"),
            ("1.5E-2", "0.015"),
            ("-15.990e1", "-159.9"),
            (
                "15.990000000000000000000000000001e0",
                "15.990000000000000000000000000001",
            ),
            ("1234e-2", "12.34"),
        ] {
            assert_eq!(plain(literal).as_deref(), Some(written), "{literal}");
        }
        for refused in [
            "1e400",
            "1e-400",
            "x",
            "",
            "1.",
            ".5",
            "1e",
            "--1",
            "1e99999999999999999999",
        ] {
            assert_eq!(plain(refused), None, "{refused}");
        }
        assert_eq!(
            integer(
                &serde_json::from_str("1.0000000000000000000000000001e0").unwrap(),
                0..=10
            ),
            Err("must be a whole number".into())
        );
    }

    #[test]
    fn keeps_the_first_reason_for_each_path_and_every_path() {
        let mut problems = Problems::default();
        problems.add("a", "first");
        problems.add("a", "second");
        problems.add("b", "other");
        assert_eq!(
            problems.into_details(),
            Details::from([("a".into(), "first".into()), ("b".into(), "other".into())])
        );
    }

    #[test]
    fn check_returns_the_value_or_records_the_error() {
        let mut problems = Problems::default();
        assert_eq!(problems.check("x", Ok::<_, String>(3)), Some(3));
        assert!(problems.is_empty());
        assert_eq!(problems.check::<i32>("y", Err("bad".into())), None);
        assert!(!problems.is_empty());
        assert_eq!(
            problems.into_result(|| Some(1)),
            Err(Problems(Details::from([("y".into(), "bad".into())])))
        );
    }

    #[test]
    fn integers_are_strict() {
        assert_eq!(integer(&json!(5), 0..=10), Ok(5));
        assert!(integer(&json!(1.5), 0..=10).is_err());
        assert_eq!(integer(&serde_json::from_str("1.0").unwrap(), 0..=10), Ok(1));
        assert_eq!(integer(&serde_json::from_str("-0.0").unwrap(), -1..=10), Ok(0));
        assert!(integer(&serde_json::from_str("1.000001").unwrap(), 0..=10).is_err());
        assert!(integer(&serde_json::from_str("1e-7").unwrap(), 0..=10).is_err());
        assert!(integer(&json!("5"), 0..=10).is_err());
        assert!(integer(&json!(true), 0..=10).is_err());
        assert!(integer(&json!(11), 0..=10).is_err());
        assert!(integer(&json!(-1), 0..=10).is_err());
        assert_eq!(integer(&json!(null), 0..=10), Err("is required".into()));
        assert_eq!(integer(&serde_json::from_str("1e2").unwrap(), 0..=1000), Ok(100));
        assert!(integer(&serde_json::from_str("1e400").unwrap(), 0..=1000).is_err());
        assert!(integer(&serde_json::from_str("99999999999999999999").unwrap(), 0..=10).is_err());
    }

    #[test]
    fn texts_lists_and_objects_name_what_is_wrong() {
        assert_eq!(text(&json!("a")), Ok("a"));
        assert_eq!(text(&json!(null)), Err("is required".into()));
        assert_eq!(text(&json!(1)), Err("must be a string".into()));
        assert_eq!(list(&json!([1]), 1..=2).map(<[Value]>::len), Ok(1));
        assert!(list(&json!([]), 1..=2).unwrap_err().contains("between 1 and 2"));
        assert_eq!(list(&json!({}), 1..=2), Err("must be an array".into()));
        assert_eq!(list(&json!(null), 1..=2), Err("is required".into()));
        assert!(object(&json!({})).is_ok());
        assert!(object(&json!([])).is_err());
    }
}

//! Properties of the parsers, over generated input: ids round-trip and have
//! one spelling; prices are exact; and any JSON body gets either a value or
//! a list of problems keyed by JSON path, never a panic.

use proptest::prelude::*;
use serde_json::{Map, Number, Value, json};

use super::{
    ManagerId, Money, OrderId, ProductId,
    order::NewOrder,
    product::{Discontinue, UpsertProducts},
};

/// Any JSON value, numbers of every spelling included.
fn any_json() -> impl Strategy<Value = Value> {
    let number = prop_oneof![
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "-?[0-9]{1,12}(\\.[0-9]{1,6})?([eE][-+]?[0-9]{1,3})?"
            .prop_filter_map("a JSON number", |t| serde_json::from_str::<Value>(&t).ok()),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number,
        ".{0,12}".prop_map(Value::String),
        prop_oneof![Just("prod_001"), Just("mgr_1"), Just("a@b.co"), Just("in_stock")].prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let keys = prop_oneof![
            Just("manager_id".to_owned()),
            Just("products".to_owned()),
            Just("customer".to_owned()),
            Just("product_id".to_owned()),
            Just("name".to_owned()),
            Just("price".to_owned()),
            Just("quantity".to_owned()),
            Just("id".to_owned()),
            Just("email".to_owned()),
            "[a-z]{1,6}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((keys, inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A key of `details`: a field name, possibly indexed and nested.
fn is_json_path(key: &str) -> bool {
    let re_ok = |segment: &str| {
        let name = segment.split('[').next().unwrap_or_default();
        !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            && segment[name.len()..]
                .split_terminator(']')
                .all(|index| index.strip_prefix('[').is_some_and(|n| n.parse::<usize>().is_ok()))
    };
    key.split('.').all(re_ok)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn public_ids_round_trip(n in 1..=999_999_999_999_999_999i64) {
        let id = ProductId::from_db(n);
        prop_assert_eq!(ProductId::parse(&id.to_string()), Some(id));
        let order = OrderId::from_db(n);
        prop_assert_eq!(OrderId::parse(&order.to_string()), Some(order));
    }

    #[test]
    fn an_id_has_exactly_one_spelling(text in "(prod|ord)_[0-9]{0,22}|.{0,12}") {
        if let Some(id) = ProductId::parse(&text) {
            prop_assert_eq!(id.to_string(), text.clone());
        }
        if let Some(id) = OrderId::parse(&text) {
            prop_assert_eq!(id.to_string(), text);
        }
    }

    #[test]
    fn manager_ids_are_exactly_the_documented_pattern(text in "[A-Za-z0-9_.:\\- !é]{0,70}") {
        let documented = (1..=64).contains(&text.len())
            && text.chars().all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c));
        prop_assert_eq!(ManagerId::parse(&text).is_ok(), documented);
    }

    #[test]
    fn prices_with_two_decimals_are_exact(cents in 1..=100_000_000u64) {
        let text = format!("{}.{:02}", cents / 100, cents % 100);
        let value: Value = serde_json::from_str(&text).unwrap();
        let price = Money::parse_price(&value).unwrap();
        prop_assert_eq!(price.amount().to_string(), text);
    }

    #[test]
    fn prices_with_a_third_decimal_are_refused(mills in 1..=1_000_000_000u64) {
        prop_assume!(mills % 10 != 0);
        let value: Value = serde_json::from_str(&format!("{}.{:03}", mills / 1000, mills % 1000)).unwrap();
        prop_assert!(Money::parse_price(&value).is_err());
    }

    #[test]
    fn any_body_gets_a_value_or_every_problem_by_path(body in any_json()) {
        for outcome in [
            UpsertProducts::parse(&body).map(drop),
            NewOrder::parse(&body).map(drop),
            Discontinue::parse(&body).map(drop),
        ] {
            if let Err(problems) = outcome {
                let details = problems.into_details();
                prop_assert!(!details.is_empty());
                for (key, why) in &details {
                    prop_assert!(is_json_path(key), "{key}");
                    prop_assert!(!why.is_empty());
                }
            }
        }
    }

    #[test]
    fn every_bad_item_of_a_batch_is_reported(prices in prop::collection::vec(any_json(), 1..20)) {
        let items: Vec<Value> = prices.iter().map(|p| json!({"name": "x", "price": p, "quantity": 1})).collect();
        let body = json!({"manager_id": "m", "products": items});
        let bad: Vec<usize> = prices.iter().enumerate().filter(|(_, p)| Money::parse_price(p).is_err()).map(|(i, _)| i).collect();
        match UpsertProducts::parse(&body) {
            Ok(_) => prop_assert!(bad.is_empty()),
            Err(problems) => {
                let details = problems.into_details();
                for i in bad {
                    let key = format!("products[{i}].price");
                    prop_assert!(details.contains_key(&key), "{key} missing from {details:?}");
                }
            }
        }
    }
}

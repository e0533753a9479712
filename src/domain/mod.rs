//! Validated domain types and the rules that produce them. No I/O, no HTTP:
//! every value here was parsed from client input and is known to be valid.

pub mod address;
pub mod adjustment;
pub mod event;
pub mod ids;
pub mod money;
pub mod order;
pub mod problems;
pub mod product;
#[cfg(test)]
mod properties;
mod schema;
pub mod webhook;

pub use ids::{CustomerId, EventId, ManagerId, OrderId, ProductId, WebhookId};
pub use money::Money;
pub use problems::Problems;

/// Starts parsing a request body: it must be a JSON object, and its
/// `manager_id` is checked. Returns the problems found so far and the
/// manager, or, for a body that is not an object, the one problem.
fn begin(body: &serde_json::Value) -> Result<(Problems, Option<ManagerId>), Problems> {
    let mut bad = Problems::default();
    if let Err(why) = problems::object(body) {
        bad.add("body", why);
        return Err(bad);
    }
    let manager = bad.check(
        "manager_id",
        problems::text(&body["manager_id"]).and_then(ManagerId::parse),
    );
    Ok((bad, manager))
}

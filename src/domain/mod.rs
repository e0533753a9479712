//! Validated domain types and the rules that produce them. No I/O, no HTTP:
//! every value here was parsed from client input and is known to be valid.

pub mod ids;
pub mod money;
pub mod order;
pub mod problems;
pub mod product;

pub use ids::{CustomerId, ManagerId, OrderId, ProductId};
pub use money::Money;
pub use problems::Problems;

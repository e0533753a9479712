//! HTTP-level tests of the whole service against a real PostgreSQL: one test
//! binary, one module per area.

mod helpers;
mod smoke;

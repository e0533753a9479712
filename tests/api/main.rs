//! HTTP-level tests of the whole service against a real PostgreSQL: one test
//! binary, one module per area.

mod audit;
mod auth;
mod beyond;
mod cache;
mod cli;
mod concurrency;
mod delivery;
mod docs;
mod envelope;
mod events;
mod exposure;
mod faults;
mod hardening;
mod helpers;
mod idempotency;
mod interleavings;
mod inventory;
mod multi_instance;
mod orders;
mod outcomes;
mod pool;
mod pooler;
mod proxy;
mod rate_limit;
mod redis_failover;
mod redis_outage;
mod schema;
mod smoke;
mod spill;
mod webhooks;

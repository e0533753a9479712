//! The audit trail: one record per request under `/api/`, all of it here:
//! the record ([`record`]), its SQL ([`sql`]), and the bounded queue that a
//! background task drains into PostgreSQL in batches, spilling to local
//! disk while the database is away ([`AuditSink`], `spill`). A write's record is
//! inserted by the write's own statement, so a change never commits without
//! it; every other record goes through the queue. `GET /api/audit` reads the
//! trail back (`http::audit`).

pub mod record;
mod sink;
mod spill;
pub mod sql;

pub use record::AuditEntry;
pub use sink::{AuditSink, AuditWriter, QueueConfig, Slot};

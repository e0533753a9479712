//! The audit trail: one record per request under `/api/`. A write's record is
//! inserted by the write's own statement, so a change never commits without
//! it; every other record goes through [`AuditSink`], a bounded queue that a
//! background task drains into PostgreSQL in batches.

mod sink;

pub use sink::{AuditSink, AuditWriter, QueueConfig, Slot};

pub use crate::store::audit::AuditEntry;

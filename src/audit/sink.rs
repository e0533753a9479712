//! The write-behind queue for audit records of requests that changed nothing.
//! Bounded: when it is full, requests wait for room (back-pressure) rather
//! than records being dropped. A background task drains it in batches of up
//! to `batch_size`, one multi-row insert each, and on shutdown drains it to
//! the end before the process exits.

use std::time::Duration;

use sqlx::PgPool;
use tokio::{sync::mpsc, task::JoinHandle};

use super::AuditEntry;
use crate::store;

/// Sends records to the background writer. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<AuditEntry>,
}

/// The background task that writes queued records.
#[derive(Debug)]
pub struct AuditWriter {
    handle: JoinHandle<()>,
}

impl AuditSink {
    /// Starts the writer: a queue of `capacity` records written to `db` in
    /// batches of at most `batch_size`.
    pub fn spawn(db: PgPool, capacity: usize, batch_size: usize) -> (Self, AuditWriter) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let handle = tokio::spawn(drain(db, rx, batch_size.max(1)));
        (Self { tx }, AuditWriter { handle })
    }

    /// Queues a record, waiting while the queue is full.
    pub async fn record(&self, entry: AuditEntry) {
        if let Err(mpsc::error::SendError(entry)) = self.tx.send(entry).await {
            tracing::error!(request_id = %entry.request_id, "audit writer has stopped; record kept in the log only");
        }
    }

    /// Records waiting to be written.
    pub fn depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

impl AuditWriter {
    /// Waits until every queued record is written. Call after the last
    /// [`AuditSink`] clone is dropped (the server has stopped).
    pub async fn finish(self) {
        if let Err(err) = self.handle.await {
            tracing::error!(error = %err, "audit writer failed");
        }
    }
}

async fn drain(db: PgPool, mut rx: mpsc::Receiver<AuditEntry>, batch_size: usize) {
    let mut batch = Vec::with_capacity(batch_size);
    while rx.recv_many(&mut batch, batch_size).await > 0 {
        write_with_retry(&db, &batch).await;
        batch.clear();
    }
}

/// Retries a failed batch with growing pauses (about a minute in all) while
/// the queue fills behind it and slows requests down; records that still
/// cannot be written are in the process log, and the loss is logged.
async fn write_with_retry(db: &PgPool, batch: &[AuditEntry]) {
    let mut pause = Duration::from_millis(50);
    for attempt in 1..=12 {
        let started = std::time::Instant::now();
        match store::audit::insert_batch(db, batch).await {
            Ok(_) => {
                crate::metrics::audit_flushed(batch.len(), started.elapsed());
                return;
            }
            Err(err) => {
                tracing::warn!(error = %err, attempt, records = batch.len(), "audit batch failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(10));
            }
        }
    }
    for entry in batch {
        tracing::error!(request_id = %entry.request_id, "audit record could not be stored");
    }
}

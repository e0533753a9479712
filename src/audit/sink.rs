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
        write_with_retry(&db, &batch, || rx.is_closed()).await;
        batch.clear();
    }
}

/// Writes a batch, retrying with growing pauses (up to 5 s) for as long as
/// the service runs: meanwhile the queue fills behind it and slows requests
/// down, and nothing is dropped. Once the service is stopping (`closing`), a
/// few more attempts are made, so a stop is not held up forever by a
/// database that is gone; records still unwritten then are logged as lost
/// (each is also in the process log already).
async fn write_with_retry(db: &PgPool, batch: &[AuditEntry], closing: impl Fn() -> bool) {
    const ATTEMPTS_WHILE_CLOSING: u32 = 5;
    let mut pause = Duration::from_millis(50);
    let mut attempts_while_closing = 0;
    loop {
        let started = std::time::Instant::now();
        match store::audit::insert_batch(db, batch).await {
            Ok(_) => {
                crate::metrics::audit_flushed(batch.len(), started.elapsed());
                return;
            }
            Err(err) => {
                if closing() {
                    attempts_while_closing += 1;
                    if attempts_while_closing > ATTEMPTS_WHILE_CLOSING {
                        for entry in batch {
                            tracing::error!(request_id = %entry.request_id, "audit record could not be stored");
                        }
                        return;
                    }
                }
                tracing::warn!(error = %err, records = batch.len(), "audit batch failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

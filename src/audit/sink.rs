//! The write-behind queue for audit records of requests that changed nothing.
//!
//! Every `/api/` request takes a slot in the bounded queue when it arrives
//! ([`AuditSink::reserve`]), so its record never waits for room once the
//! request has been served. When the queue is full (the database is down
//! and records pile up), a request waits at most `AUDIT_QUEUE_WAIT_MS` for a
//! slot; failing that it is answered 503 at once and its record is appended
//! to a spill file on local disk ([`super::spill`]). A background task
//! drains the queue in batches of up to `batch_size`, one `COPY` each,
//! retrying for as long as the service runs; once the database takes
//! records again it also loads the spill files. A record the database
//! refuses (bad data, not a lost connection) is set aside in the spill
//! folder's quarantine file rather than retried before the others. No
//! request waits without bound, and no record is dropped while the spill
//! folder is under its cap (`AUDIT_SPILL_MAX_BYTES`) and the disk has room.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{sync::mpsc, task::JoinHandle};
use uuid::Uuid;

use super::{
    AuditEntry,
    spill::{SetAside, Spill, frame},
};
use crate::db::Db;

/// Sends records to the background writer. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<AuditEntry>,
    wait: Duration,
    spill: Arc<Spill>,
}

/// A reserved place in the queue for one request's record.
#[derive(Debug)]
pub struct Slot(mpsc::OwnedPermit<AuditEntry>);

/// The background task that writes queued records.
#[derive(Debug)]
pub struct AuditWriter {
    handle: JoinHandle<()>,
}

/// How the queue is sized and where it spills.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Records in flight or waiting to be written.
    pub capacity: usize,
    /// Most records per insert.
    pub batch_size: usize,
    /// Longest wait for a slot.
    pub wait: Duration,
    /// Folder of the spill files.
    pub spill_dir: PathBuf,
    /// Most bytes the spill folder may hold.
    pub spill_max_bytes: u64,
}

impl AuditSink {
    /// Starts the writer.
    pub fn spawn(db: Db, config: QueueConfig) -> (Self, AuditWriter) {
        let (tx, rx) = mpsc::channel(config.capacity.max(1));
        let spill = Arc::new(Spill::new(config.spill_dir, config.spill_max_bytes));
        let handle = tokio::spawn(drain(db, rx, config.batch_size.max(1), spill.clone()));
        (
            Self {
                tx,
                wait: config.wait,
                spill,
            },
            AuditWriter { handle },
        )
    }

    /// A slot for one record, waiting at most the configured time; `None`
    /// when the queue stayed full (answer 503 and [`AuditSink::record`] the
    /// refusal without a slot).
    pub async fn reserve(&self) -> Option<Slot> {
        match tokio::time::timeout(self.wait, self.tx.clone().reserve_owned()).await {
            Ok(Ok(permit)) => Some(Slot(permit)),
            _ => None,
        }
    }

    /// Queues a record in its slot (no wait), or spills it to disk when it
    /// has none.
    pub async fn record(&self, slot: Option<Slot>, entry: AuditEntry) {
        match slot {
            Some(Slot(permit)) => {
                permit.send(entry);
            }
            None => self.spill.append(&entry).await,
        }
    }

    /// Records waiting to be written (or in flight).
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

async fn drain(db: Db, mut rx: mpsc::Receiver<AuditEntry>, batch_size: usize, spill: Arc<Spill>) {
    // Files of processes that stopped are looked for at start and now and
    // then, for an instance that outlives another sharing its folder.
    const ADOPT_EVERY: Duration = Duration::from_secs(10);
    spill.adopt_orphans().await;
    let mut adopted_at = Instant::now();
    let mut batch = Vec::with_capacity(batch_size);
    loop {
        let received = tokio::select! {
            received = rx.recv_many(&mut batch, batch_size) => received,
            // Spilled records are loaded even when no new record arrives.
            () = tokio::time::sleep(Duration::from_secs(1)) => 0,
        };
        if received == 0 && rx.is_closed() && batch.is_empty() {
            spill.load(&db, batch_size).await;
            spill.close();
            return;
        }
        if !batch.is_empty() {
            for entry in write_with_retry(&db, &batch, || rx.is_closed(), &spill).await {
                spill.append(&entry).await;
            }
            batch.clear();
        }
        if adopted_at.elapsed() >= ADOPT_EVERY {
            spill.adopt_orphans().await;
            adopted_at = Instant::now();
        }
        if spill.pending() {
            spill.load(&db, batch_size).await;
        }
    }
}

/// Writes a batch, retrying with growing pauses (up to 5 s) for as long as
/// the service runs: meanwhile the queue fills behind it and new requests
/// spill. Once the service is stopping (`closing`), a few more attempts are
/// made, so a stop is not held up forever by a database that is gone; the
/// records still unwritten are returned then, for the spill file and the
/// next start. Records the database refuses are set aside.
async fn write_with_retry(db: &Db, batch: &[AuditEntry], closing: impl Fn() -> bool, spill: &Spill) -> Vec<AuditEntry> {
    const ATTEMPTS_WHILE_CLOSING: u32 = 5;
    let mut pause = Duration::from_millis(50);
    let mut attempts_while_closing = 0;
    // One id for every attempt: an attempt whose commit reply was lost is
    // not written again by the next.
    let mut work = vec![(0..batch.len(), Uuid::now_v7())];
    let mut refused = Vec::new();
    let unwritten = loop {
        match crate::audit::sql::write_settling(db, batch, &mut work, &mut refused).await {
            Ok(()) => break Vec::new(),
            Err(err) => {
                if closing() {
                    attempts_while_closing += 1;
                    if attempts_while_closing > ATTEMPTS_WHILE_CLOSING {
                        let left: Vec<AuditEntry> = work
                            .iter()
                            .flat_map(|(range, _)| batch[range.clone()].iter().cloned())
                            .collect();
                        tracing::error!(records = left.len(), "audit records left for the next start");
                        break left;
                    }
                }
                tracing::warn!(error = %err, records = batch.len(), "audit batch failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    };
    if !refused.is_empty() {
        let aside = refused
            .iter()
            .map(|(i, why)| SetAside {
                line: frame(&batch[*i]),
                reason: "refused",
                why: why.clone(),
            })
            .collect();
        if !spill.set_aside(aside).await {
            tracing::error!(
                records = refused.len(),
                "refused audit records are in the process log only"
            );
        }
    }
    unwritten
}

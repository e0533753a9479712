//! The write-behind queue for audit records of requests that changed nothing.
//!
//! Every `/api/` request takes a slot in the bounded queue when it arrives
//! ([`AuditSink::reserve`]), so its record never waits for room once the
//! request has been served. When the queue is full (the database is down
//! and records pile up), a request waits at most `AUDIT_QUEUE_WAIT_MS` for a
//! slot; failing that it is answered 503 at once and its record is appended
//! to a spill file on local disk. A background task drains the queue in
//! batches of up to `batch_size`, one `COPY` each, retrying for as
//! long as the service runs; once the database takes records again it also
//! loads the spill files. No request waits without bound and no record is
//! dropped while the disk has room.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::AsyncWriteExt,
    sync::{Mutex, mpsc},
    task::JoinHandle,
};

use super::AuditEntry;
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
}

impl AuditSink {
    /// Starts the writer.
    pub fn spawn(db: Db, config: QueueConfig) -> (Self, AuditWriter) {
        let (tx, rx) = mpsc::channel(config.capacity.max(1));
        let spill = Arc::new(Spill::new(config.spill_dir));
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
    spill.adopt_orphans().await;
    let mut batch = Vec::with_capacity(batch_size);
    loop {
        let received = tokio::select! {
            received = rx.recv_many(&mut batch, batch_size) => received,
            // Spilled records are loaded even when no new record arrives.
            () = tokio::time::sleep(Duration::from_secs(1)), if spill.pending() => 0,
        };
        if received == 0 && rx.is_closed() && batch.is_empty() {
            spill.load(&db, batch_size).await;
            return;
        }
        if !batch.is_empty() {
            if !write_with_retry(&db, &batch, || rx.is_closed()).await {
                for entry in &batch {
                    spill.append(entry).await;
                }
            }
            batch.clear();
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
/// records still unwritten then go to the spill file, for the next start.
async fn write_with_retry(db: &Db, batch: &[AuditEntry], closing: impl Fn() -> bool) -> bool {
    const ATTEMPTS_WHILE_CLOSING: u32 = 5;
    let mut pause = Duration::from_millis(50);
    let mut attempts_while_closing = 0;
    // One id for every attempt: an attempt whose commit reply was lost is
    // not written again by the next.
    let id = uuid::Uuid::now_v7();
    loop {
        let started = std::time::Instant::now();
        match crate::audit::sql::write_batch(db, id, batch).await {
            Ok(_) => {
                crate::metrics::audit_flushed(batch.len(), started.elapsed());
                return true;
            }
            Err(err) => {
                if closing() {
                    attempts_while_closing += 1;
                    if attempts_while_closing > ATTEMPTS_WHILE_CLOSING {
                        tracing::error!(records = batch.len(), "audit records left for the next start");
                        return false;
                    }
                }
                tracing::warn!(error = %err, records = batch.len(), "audit batch failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Audit records kept on local disk, one JSON line each, in a file of this
/// process's own (`audit-<pid>.jsonl`) until the database takes them.
#[derive(Debug)]
struct Spill {
    dir: PathBuf,
    file: PathBuf,
    lock: Mutex<()>,
    pending: AtomicBool,
}

impl Spill {
    fn new(dir: PathBuf) -> Self {
        let file = dir.join(format!("audit-{}.jsonl", std::process::id()));
        Self {
            dir,
            pending: AtomicBool::new(file.exists()),
            file,
            lock: Mutex::new(()),
        }
    }

    fn pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    async fn append(&self, entry: &AuditEntry) {
        let mut line = serde_json::to_vec(entry).unwrap_or_default();
        line.push(b'\n');
        let _guard = self.lock.lock().await;
        let appended = async {
            tokio::fs::create_dir_all(&self.dir).await?;
            let mut file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.file)
                .await?;
            file.write_all(&line).await?;
            file.flush().await
        }
        .await;
        match appended {
            Ok(()) => self.pending.store(true, Ordering::Release),
            Err(err) => tracing::error!(error = %err, request_id = %entry.request_id,
                "audit record could not be spilled; it is in the process log only"),
        }
    }

    /// Takes over the spill files of processes that are gone.
    async fn adopt_orphans(&self) {
        let Ok(mut dir) = tokio::fs::read_dir(&self.dir).await else {
            return;
        };
        while let Ok(Some(item)) = dir.next_entry().await {
            let path = item.path();
            let Some(pid) = spill_pid(&path) else { continue };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _guard = self.lock.lock().await;
                if let Ok(text) = tokio::fs::read(&path).await {
                    let appended = async {
                        let mut file = tokio::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(&self.file)
                            .await?;
                        file.write_all(&text).await
                    }
                    .await;
                    if appended.is_ok() {
                        let _ = tokio::fs::remove_file(&path).await;
                        self.pending.store(true, Ordering::Release);
                    }
                }
            }
        }
    }

    /// Moves the spilled records into the database, in batches; what cannot
    /// be written stays in the file for the next attempt.
    async fn load(&self, db: &Db, batch_size: usize) {
        let _guard = self.lock.lock().await;
        let Ok(text) = tokio::fs::read_to_string(&self.file).await else {
            self.pending.store(false, Ordering::Release);
            return;
        };
        let entries: Vec<AuditEntry> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let mut written = 0;
        for batch in entries.chunks(batch_size) {
            if crate::audit::sql::write_batch(db, uuid::Uuid::now_v7(), batch)
                .await
                .is_err()
            {
                break;
            }
            written += batch.len();
        }
        let rest: String = text.lines().skip(written).flat_map(|l| [l, "\n"]).collect();
        let kept = if rest.is_empty() {
            tokio::fs::remove_file(&self.file).await
        } else {
            tokio::fs::write(&self.file, rest.as_bytes()).await
        };
        if let Err(err) = kept {
            tracing::error!(error = %err, "could not update the audit spill file");
        }
        if written > 0 {
            tracing::info!(records = written, "spilled audit records written");
        }
        self.pending.store(!rest.is_empty(), Ordering::Release);
    }
}

/// The process id in a spill file's name `audit-<pid>.jsonl`.
fn spill_pid(path: &Path) -> Option<u32> {
    path.file_name()?
        .to_str()?
        .strip_prefix("audit-")?
        .strip_suffix(".jsonl")?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spill_files_are_named_by_process() {
        assert_eq!(spill_pid(Path::new("/x/audit-42.jsonl")), Some(42));
        assert_eq!(spill_pid(Path::new("/x/audit-x.jsonl")), None);
        assert_eq!(spill_pid(Path::new("/x/other.jsonl")), None);
    }
}

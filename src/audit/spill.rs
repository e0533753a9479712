//! The spill folder: audit records that found the queue full wait here, on
//! local disk, until the database takes them.
//!
//! Every line is one framed record, `<length> <hash> <json>\n`: the JSON's
//! length in bytes (decimal), its XXH3-64 hash (16 hex digits), then the
//! JSON itself. A line whose length or hash does not match, that does not
//! parse, or that has no newline (a torn write) is corrupt: it is set aside
//! in this process's quarantine file, with an error line and a metric, and
//! never counts as a record, so it shifts nothing.
//!
//! Files of the process whose id is `<id>` (a UUID v7, new at every start:
//! the PID is 1 in every container):
//!
//! - `spill-<id>.lock`: created first, held with an exclusive `flock` for as
//!   long as the process runs, removed on a clean stop;
//! - `spill-<id>.log`: the live file, appended by requests refused a slot;
//! - `spill-<id>.<n>.taken`: files the loader took away (the live file,
//!   renamed under the append lock, or an adopted one), loaded without any
//!   lock a request could wait on, and rewritten atomically (temporary
//!   file, fsync, rename, fsync of the folder) with what is left;
//! - `quarantine-<id>.log`: what was set aside, never loaded again.
//!
//! Another process's files are adopted (renamed to this one's) only when
//! its lock file can be locked or is gone: its owner has stopped, whatever
//! PIDs say. `audit-<pid>.jsonl` files of earlier versions (one bare JSON
//! record per line) are adopted by the rule those versions had (the PID is
//! this process's own, or no process has it), as `spill-<id>.<n>.legacy`;
//! while an earlier version still runs in a shared folder that rule cannot
//! tell its files apart, so stop such instances before starting this one.
//!
//! The folder has a cap (`AUDIT_SPILL_MAX_BYTES`): every file in it counts,
//! as counted at the last load plus what this process appended since (so
//! with several instances in one folder the cap may be passed by what the
//! others appended since). A record that would go over it is not written:
//! its request is still answered 503, and the record is in the process log
//! only (an error line and `audit_records_not_spilled_total`).

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    ops::Range,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use tokio::{io::AsyncWriteExt, sync::Mutex};
use uuid::Uuid;
use xxhash_rust::xxh3::{xxh3_64, xxh3_128};

use super::AuditEntry;
use crate::db::Db;

/// One process's spill files, and the folder's size cap.
#[derive(Debug)]
pub(super) struct Spill {
    dir: PathBuf,
    id: Uuid,
    live: PathBuf,
    /// Held to append to the live file and to take it away; never across a
    /// database call.
    append: Mutex<()>,
    /// This process's `flock` on its lock file, while it runs.
    owner: std::sync::Mutex<Option<File>>,
    pending: AtomicBool,
    /// Bytes in the folder: as last counted, plus what was appended since.
    used: AtomicU64,
    max_bytes: u64,
    taken: AtomicU64,
}

/// A line that is not a record, or a record the database refused.
#[derive(Debug, Clone)]
pub(super) struct SetAside {
    pub line: Vec<u8>,
    pub reason: &'static str,
    pub why: String,
}

impl Spill {
    /// Takes this process's place in the folder: its lock file, locked.
    pub(super) fn new(dir: PathBuf, max_bytes: u64) -> Self {
        let id = Uuid::now_v7();
        let owner = fs::create_dir_all(&dir)
            .and_then(|()| {
                let file = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(dir.join(format!("spill-{id}.lock")))?;
                file.try_lock().map_err(io::Error::other)?;
                Ok(file)
            })
            .inspect_err(|err| {
                tracing::error!(error = %err, dir = %dir.display(), "cannot take a place in the audit spill folder");
            })
            .ok();
        Self {
            live: dir.join(format!("spill-{id}.log")),
            used: AtomicU64::new(folder_bytes(&dir)),
            dir,
            id,
            append: Mutex::new(()),
            owner: std::sync::Mutex::new(owner),
            pending: AtomicBool::new(false),
            max_bytes,
            taken: AtomicU64::new(0),
        }
    }

    pub(super) fn pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Appends a record to the live file, unless the folder would then be
    /// over its cap (the record is then in the process log only). Waits for
    /// other appends and for the loader's rename, never for the database.
    pub(super) async fn append(&self, entry: &AuditEntry) {
        let line = frame(entry);
        let size = line.len() as u64;
        let _guard = self.append.lock().await;
        let over = |used: u64| used + size > self.max_bytes;
        // Counted again before refusing: others may have loaded and
        // removed their files meanwhile.
        if over(self.used.load(Ordering::Acquire)) && over(self.recount()) {
            crate::metrics::audit_not_spilled();
            tracing::error!(request_id = %entry.request_id, max_bytes = self.max_bytes,
                "the audit spill folder is full; the record is in the process log only");
            return;
        }
        let mut start = None;
        let appended = async {
            let mut file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.live)
                .await?;
            start = Some(file.metadata().await?.len());
            file.write_all(&line).await?;
            file.flush().await?;
            Ok::<_, io::Error>(file)
        }
        .await;
        match appended {
            Ok(_) => {
                self.used.fetch_add(size, Ordering::AcqRel);
                self.pending.store(true, Ordering::Release);
            }
            Err(err) => {
                // Cut a partly written line off, so the next append does
                // not run into it.
                if let Some(start) = start {
                    let _ = fs::OpenOptions::new()
                        .write(true)
                        .open(&self.live)
                        .and_then(|f| f.set_len(start));
                }
                crate::metrics::audit_not_spilled();
                tracing::error!(error = %err, request_id = %entry.request_id,
                    "audit record could not be spilled; it is in the process log only");
            }
        }
    }

    /// Takes over the files of processes that are gone.
    pub(super) async fn adopt_orphans(self: &Arc<Self>) {
        let me = self.clone();
        let adopted = tokio::task::spawn_blocking(move || me.adopt_orphans_now())
            .await
            .unwrap_or(0);
        if adopted > 0 {
            tracing::info!(files = adopted, "audit spill files of stopped processes adopted");
            self.pending.store(true, Ordering::Release);
        }
    }

    fn adopt_orphans_now(&self) -> usize {
        if self.owner.lock().map(|o| o.is_none()).unwrap_or(true) {
            // Without a lock of its own, what it adopted could be adopted
            // again by another process while it loads.
            return 0;
        }
        let mut owners: Vec<String> = Vec::new();
        let mut legacy = Vec::new();
        for (name, path) in list(&self.dir) {
            if let Some(owner) = spill_owner(&name) {
                if owner != self.id.to_string() && !owners.iter().any(|o| o == owner) {
                    owners.push(owner.to_owned());
                }
            } else if let Some(pid) = legacy_pid(&name)
                // Earlier versions' rule: this process's PID (a file of a
                // container's earlier life: PID 1 again), or no such process.
                && (pid == std::process::id() || !Path::new(&format!("/proc/{pid}")).exists())
            {
                legacy.push(path);
            }
        }
        let mut adopted = 0;
        for owner in owners {
            let lock_path = self.dir.join(format!("spill-{owner}.lock"));
            let lock = match File::open(&lock_path) {
                Ok(lock) => match lock.try_lock() {
                    Ok(()) => Some(lock),
                    // Its owner runs.
                    Err(_) => continue,
                },
                Err(err) if err.kind() == io::ErrorKind::NotFound => None,
                Err(_) => continue,
            };
            for (name, path) in list(&self.dir) {
                if spill_owner(&name) != Some(owner.as_str()) || name.ends_with(".lock") {
                    continue;
                }
                if name.ends_with(".tmp") {
                    // An unfinished rewrite: the file it was to replace is
                    // still there.
                    let _ = fs::remove_file(&path);
                } else if fs::rename(&path, self.next_taken("taken")).is_ok() {
                    adopted += 1;
                }
            }
            if lock.is_some() {
                let _ = fs::remove_file(&lock_path);
            }
        }
        for path in legacy {
            if fs::rename(&path, self.next_taken("legacy")).is_ok() {
                adopted += 1;
            }
        }
        if adopted > 0 {
            let _ = sync_dir(&self.dir);
        }
        adopted
    }

    fn next_taken(&self, kind: &str) -> PathBuf {
        let n = self.taken.fetch_add(1, Ordering::AcqRel);
        self.dir.join(format!("spill-{}.{n:06}.{kind}", self.id))
    }

    /// Moves spilled records into the database: first the files already
    /// taken, then (once they are all in) the live file, taken away under
    /// the append lock and loaded without it. What the database refuses is
    /// set aside; what cannot be written yet stays for the next pass.
    pub(super) async fn load(self: &Arc<Self>, db: &Db, batch_size: usize) {
        let mut done = true;
        for path in self.taken_files() {
            if !self.load_file(db, batch_size, path).await {
                done = false;
                break;
            }
        }
        if done {
            let taken = {
                let _guard = self.append.lock().await;
                let to = self.next_taken("taken");
                match fs::rename(&self.live, &to) {
                    Ok(()) => Some(to),
                    Err(err) if err.kind() == io::ErrorKind::NotFound => None,
                    Err(err) => {
                        tracing::error!(error = %err, "could not take the audit spill file away");
                        None
                    }
                }
            };
            if let Some(path) = taken {
                let _ = sync_dir(&self.dir);
                self.load_file(db, batch_size, path).await;
            }
        }
        self.recount();
        let left = self.live.exists() || !self.taken_files().is_empty();
        self.pending.store(left, Ordering::Release);
    }

    /// Loads one taken file; `true` once nothing of it is left.
    async fn load_file(self: &Arc<Self>, db: &Db, batch_size: usize, path: PathBuf) -> bool {
        let legacy = path.extension().is_some_and(|e| e == "legacy");
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(err) => {
                tracing::error!(error = %err, file = %path.display(), "could not read an audit spill file");
                return false;
            }
        };
        let (records, corrupt) = read_lines(&bytes, legacy);
        let mut kept_corrupt = Vec::new();
        if !corrupt.is_empty() && !self.set_aside(corrupt.clone()).await {
            // Kept for the next pass, each ending its line, so that no
            // record is glued to a torn one.
            kept_corrupt = corrupt
                .into_iter()
                .map(|s| {
                    let mut line = s.line;
                    if line.last() != Some(&b'\n') {
                        line.push(b'\n');
                    }
                    line
                })
                .collect();
        }

        let entries: Vec<AuditEntry> = records.iter().map(|(e, _)| e.clone()).collect();
        // One id per batch, from the lines it holds: a load that wrote a
        // batch and stopped before rewriting the file (a crash) sends the
        // same batch under the same id the next time, and it is skipped.
        let mut work: Vec<(Range<usize>, Uuid)> = (0..entries.len())
            .step_by(batch_size.max(1))
            .map(|start| {
                let range = start..(start + batch_size.max(1)).min(entries.len());
                let lines: Vec<u8> = records[range.clone()]
                    .iter()
                    .flat_map(|(_, l)| l.iter().copied())
                    .collect();
                (range, Uuid::from_u128(xxh3_128(&lines)))
            })
            .rev()
            .collect();
        let mut refused = Vec::new();
        let failed = super::sql::write_settling(db, &entries, &mut work, &mut refused)
            .await
            .err();
        let mut unwritten: Vec<usize> = work.iter().flat_map(|(range, _)| range.clone()).collect();
        if !refused.is_empty() {
            let aside: Vec<SetAside> = refused
                .iter()
                .map(|(i, why)| SetAside {
                    line: records[*i].1.clone(),
                    reason: "refused",
                    why: why.clone(),
                })
                .collect();
            if !self.set_aside(aside).await {
                unwritten.extend(refused.iter().map(|(i, _)| *i));
                refused.clear();
            }
        }
        unwritten.sort_unstable();
        let written = entries.len() - unwritten.len() - refused.len();
        if written > 0 {
            tracing::info!(records = written, "spilled audit records written");
        }
        if let Some(err) = failed {
            tracing::warn!(error = %err, records = unwritten.len(), "spilled audit records wait for the database");
        }

        let mut rest: Vec<u8> = kept_corrupt.into_iter().flatten().collect();
        for i in &unwritten {
            rest.extend_from_slice(&records[*i].1);
        }
        let unchanged = rest.len() == bytes.len();
        let dir = self.dir.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            if rest.is_empty() {
                fs::remove_file(&path).and_then(|()| sync_dir(&dir)).map(|()| true)
            } else if unchanged {
                Ok(false)
            } else {
                replace(&path, &rest).map(|()| false)
            }
        })
        .await
        .unwrap_or_else(|err| Err(io::Error::other(err)));
        match outcome {
            Ok(done) => done,
            Err(err) => {
                tracing::error!(error = %err, "could not update an audit spill file");
                false
            }
        }
    }

    /// Appends lines to this process's quarantine file, durably, with an
    /// error line and a metric for each; `false` if they could not be kept.
    pub(super) async fn set_aside(&self, items: Vec<SetAside>) -> bool {
        let path = self.dir.join(format!("quarantine-{}.log", self.id));
        let lines: Vec<u8> = items
            .iter()
            .flat_map(|item| {
                let mut line = item.line.clone();
                if line.last() != Some(&b'\n') {
                    line.push(b'\n');
                }
                line
            })
            .collect();
        let kept = tokio::task::spawn_blocking(move || {
            let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
            file.write_all(&lines)?;
            file.sync_data()
        })
        .await
        .unwrap_or_else(|err| Err(io::Error::other(err)));
        for item in &items {
            crate::metrics::audit_quarantined(item.reason);
            tracing::error!(reason = item.reason, why = %item.why,
                line = %String::from_utf8_lossy(&item.line).trim_end(),
                "audit record set aside in the spill folder's quarantine file");
        }
        if let Err(err) = &kept {
            tracing::error!(error = %err, "could not write the audit quarantine file");
        }
        kept.is_ok()
    }

    /// Counts the bytes in the folder again.
    fn recount(&self) -> u64 {
        let used = folder_bytes(&self.dir);
        self.used.store(used, Ordering::Release);
        used
    }

    /// This process's files waiting to be loaded, oldest first.
    fn taken_files(&self) -> Vec<PathBuf> {
        let prefix = format!("spill-{}.", self.id);
        list(&self.dir)
            .into_iter()
            .filter(|(name, _)| name.starts_with(&prefix) && (name.ends_with(".taken") || name.ends_with(".legacy")))
            .map(|(_, path)| path)
            .collect()
    }

    /// Gives the folder up on a clean stop: the lock file goes (files still
    /// waiting are then anyone's to adopt).
    pub(super) fn close(&self) {
        if let Ok(mut owner) = self.owner.lock()
            && let Some(lock) = owner.take()
        {
            let _ = fs::remove_file(self.dir.join(format!("spill-{}.lock", self.id)));
            drop(lock);
        }
    }
}

/// A record as one line of a spill file.
pub(super) fn frame(entry: &AuditEntry) -> Vec<u8> {
    let json = serde_json::to_vec(entry).unwrap_or_default();
    let mut line = format!("{} {:016x} ", json.len(), xxh3_64(&json)).into_bytes();
    line.extend_from_slice(&json);
    line.push(b'\n');
    line
}

/// The record of a line (without its newline), if it is one.
fn unframe(line: &[u8], legacy: bool) -> Option<AuditEntry> {
    if legacy {
        return serde_json::from_slice(line).ok();
    }
    let space = line.iter().position(|b| *b == b' ')?;
    let length: usize = std::str::from_utf8(&line[..space]).ok()?.parse().ok()?;
    let rest = &line[space + 1..];
    let (hash, json) = (rest.get(..16)?, rest.get(17..)?);
    if rest[16] != b' ' || json.len() != length {
        return None;
    }
    let hash = u64::from_str_radix(std::str::from_utf8(hash).ok()?, 16).ok()?;
    if hash != xxh3_64(json) {
        return None;
    }
    serde_json::from_slice(json).ok()
}

/// The records of a file, each with its line, and the lines that are none.
fn read_lines(bytes: &[u8], legacy: bool) -> (Vec<(AuditEntry, Vec<u8>)>, Vec<SetAside>) {
    let (mut records, mut corrupt) = (Vec::new(), Vec::new());
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        let Some(body) = line.strip_suffix(b"\n") else {
            corrupt.push(SetAside {
                line: line.to_vec(),
                reason: "corrupt",
                why: "torn line (no newline)".into(),
            });
            continue;
        };
        if body.is_empty() {
            continue;
        }
        match unframe(body, legacy) {
            Some(entry) => records.push((entry, line.to_vec())),
            None => corrupt.push(SetAside {
                line: line.to_vec(),
                reason: "corrupt",
                why: "length, hash or JSON does not match".into(),
            }),
        }
    }
    (records, corrupt)
}

/// Replaces a file's content atomically: a temporary file beside it,
/// fsynced, renamed over it, then the folder fsynced.
fn replace(path: &Path, content: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(content)?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The folder's files, by name.
fn list(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut found: Vec<_> = fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

fn folder_bytes(dir: &Path) -> u64 {
    list(dir)
        .iter()
        .filter_map(|(_, path)| fs::metadata(path).ok())
        .map(|m| m.len())
        .sum()
}

/// The owner id in a spill file's name `spill-<id>.<...>`.
fn spill_owner(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("spill-")?;
    let owner = &rest[..rest.find('.')?];
    Uuid::parse_str(owner).ok().map(|_| owner)
}

/// The process id in an earlier version's file name `audit-<pid>.jsonl`.
fn legacy_pid(name: &str) -> Option<u32> {
    name.strip_prefix("audit-")?.strip_suffix(".jsonl")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(request_id: &str) -> AuditEntry {
        AuditEntry {
            occurred_at: chrono::Utc::now(),
            request_id: request_id.into(),
            manager_id: "m".into(),
            method: "GET".into(),
            path: "/api/x".into(),
            query: Some("a=1\nb".into()),
            status: 400,
            error_code: None,
            duration_ms: 1.0,
            client_addr: None,
            product_ids: vec![],
            order_id: None,
            attempt: None,
        }
    }

    #[test]
    fn a_framed_line_reads_back_and_any_damage_is_detected() {
        let line = frame(&entry("r1"));
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        let body = &line[..line.len() - 1];
        assert_eq!(unframe(body, false).unwrap().request_id, "r1");
        for cut in [1, body.len() / 2, body.len() - 1] {
            assert!(unframe(&body[..cut], false).is_none(), "cut at {cut}");
        }
        let mut flipped = body.to_vec();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x01;
        assert!(unframe(&flipped, false).is_none());
    }

    #[test]
    fn corrupt_lines_are_set_aside_without_shifting_the_records() {
        let (a, b) = (frame(&entry("a")), frame(&entry("b")));
        let mut file = b"junk\n".to_vec();
        file.extend_from_slice(&a);
        file.extend_from_slice(&a[..10]);
        file.push(b'\n');
        file.extend_from_slice(&b);
        file.extend_from_slice(&b[..7]);
        let (records, corrupt) = read_lines(&file, false);
        let ids: Vec<_> = records.iter().map(|(e, _)| e.request_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(records[1].1, b);
        assert_eq!(corrupt.len(), 3);
    }

    #[test]
    fn spill_files_are_named_by_a_process_id_of_their_own() {
        let id = Uuid::now_v7();
        assert_eq!(spill_owner(&format!("spill-{id}.log")), Some(id.to_string().as_str()));
        assert_eq!(
            spill_owner(&format!("spill-{id}.000001.taken")),
            Some(id.to_string().as_str())
        );
        assert_eq!(spill_owner("spill-1.log"), None);
        assert_eq!(spill_owner("quarantine-x.log"), None);
        assert_eq!(legacy_pid("audit-42.jsonl"), Some(42));
        assert_eq!(legacy_pid("audit-x.jsonl"), None);
    }
}

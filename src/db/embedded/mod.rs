//! A private PostgreSQL cluster for running without `DATABASE_URL`.
//!
//! [`EmbeddedPostgres::start`] runs the PostgreSQL binaries already installed on the
//! machine: `initdb` on first use of the data folder (kept between runs), then
//! `pg_ctl start` on a free loopback port picked anew each run, listening on 127.0.0.1
//! only (no unix socket). [`EmbeddedPostgres::stop`], or `Drop`, stops it again.
//!
//! We do not use the `postgresql_embedded` crate: it cannot switch to another user, and
//! `initdb` refuses to run as root, which is how CI and most containers run the service.
//! So this module runs the PostgreSQL programs itself, as the `postgres` system user when
//! the service runs as root (handing it the data folder, mode 0700), else as our own user.
//!
//! Safety nets:
//! - a watchdog child (`sh`, polling this process with `kill -0` once a second) sends the
//!   postmaster a fast-shutdown signal when this process dies, even by SIGKILL;
//! - a cluster left running by an earlier run that crashed is stopped before starting, and
//!   a stale `postmaster.pid` is removed, while a folder whose cluster a live process
//!   still runs (per `embedded-postgres.owner`) is refused;
//! - the server writes to `<data_dir>/server.log`, whose tail is quoted in start errors.

mod binaries;
mod cluster;
#[cfg(test)]
mod tests;
mod user;
mod watchdog;

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tracing::{info, warn};

use self::{binaries::*, cluster::*, user::*, watchdog::*};

/// The database superuser created by `initdb`, and the user in the URL.
const SUPERUSER: &str = "postgres";
/// The database in the URL.
const DATABASE: &str = "postgres";
/// How long the server may take to accept connections once started.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How many ports are tried when the chosen one gets taken before the server binds it.
const PORT_ATTEMPTS: u32 = 5;
/// A PostgreSQL cluster started by this process; stopped by [`EmbeddedPostgres::stop`]
/// or, failing that, when dropped.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    /// Folder holding `initdb`, `pg_ctl`, `postgres` and `pg_isready`.
    bin_dir: PathBuf,
    /// The cluster's data folder (absolute, symlinks resolved).
    data_dir: PathBuf,
    /// The TCP port the server listens on at 127.0.0.1.
    port: u16,
    /// The connection URL.
    url: String,
    /// The user the server runs as, if not ours.
    run_as: Option<RunAs>,
    /// The watchdog child, until stopped.
    watchdog: Option<Child>,
    /// Set once the cluster was stopped (or a stop was attempted).
    stopped: bool,
}

/// Why a start attempt failed.
enum StartFailure {
    /// The port was taken before the server could bind it: worth another try.
    PortTaken(anyhow::Error),
    /// Anything else.
    Other(anyhow::Error),
}

impl EmbeddedPostgres {
    /// Starts the cluster in `data_dir` (running initdb first if the folder holds no cluster), on a free loopback port.
    ///
    /// The binaries are found by [`locate_bin_dir`], honouring `PG_BIN`. Waits until the
    /// server accepts connections (30 s at most).
    pub async fn start(data_dir: &Path) -> Result<Self> {
        let explicit = std::env::var_os("PG_BIN")
            .filter(|value| !value.is_empty())
            .map(PathBuf::from);
        let bin_dir = locate_bin_dir(explicit)?;
        Self::start_with(data_dir, bin_dir, free_port).await
    }

    /// Starts the cluster in `data_dir` with the binaries in `bin_dir`, taking each port
    /// to try from `next_port`.
    async fn start_with(data_dir: &Path, bin_dir: PathBuf, mut next_port: impl FnMut() -> Result<u16>) -> Result<Self> {
        let began = Instant::now();
        let euid = current_euid()?;
        let run_as = run_as_for(euid)?;
        let data_dir = prepare_data_dir(data_dir, euid, run_as)?;
        let fresh = !data_dir.join("PG_VERSION").exists();
        if fresh {
            info!(data_dir = %data_dir.display(), bin_dir = %bin_dir.display(), "creating a new PostgreSQL cluster");
            initdb(&bin_dir, &data_dir, run_as).await?;
        } else {
            check_cluster_version(&bin_dir, &data_dir, run_as).await?;
            clear_leftover(&bin_dir, &data_dir, run_as).await?;
        }
        rotate_log(&data_dir);
        // Left by a run that died; the watchdog takes it for a server that was up.
        remove_owner_file(&data_dir);

        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = next_port()?;
            let watchdog = spawn_watchdog(&data_dir)?;
            match pg_ctl_start(&bin_dir, &data_dir, run_as, port).await {
                Ok(()) => {
                    let pg = Self {
                        url: format!("postgres://{SUPERUSER}@127.0.0.1:{port}/{DATABASE}"),
                        bin_dir,
                        data_dir,
                        port,
                        run_as,
                        watchdog: Some(watchdog),
                        stopped: false,
                    };
                    write_owner_file(&pg.data_dir);
                    // On failure, dropping `pg` stops the server again.
                    pg.wait_until_ready().await?;
                    info!(
                        data_dir = %pg.data_dir.display(),
                        port,
                        fresh,
                        elapsed_ms = began.elapsed().as_millis() as u64,
                        "embedded PostgreSQL started"
                    );
                    return Ok(pg);
                }
                Err(failure) => {
                    stop_watchdog(watchdog);
                    match failure {
                        StartFailure::PortTaken(err) if attempt < PORT_ATTEMPTS => {
                            warn!(port, error = %err, "port taken before PostgreSQL could bind it; trying another");
                        }
                        StartFailure::PortTaken(err) | StartFailure::Other(err) => return Err(err),
                    }
                }
            }
        }
    }

    /// Connection URL, e.g. postgres://postgres@127.0.0.1:54873/postgres
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The TCP port the server listens on at 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the cluster (fast shutdown) and waits for it to exit.
    pub async fn stop(mut self) -> Result<()> {
        self.stopped = true;
        let postmaster = postmaster_running(&self.data_dir);
        let result = shutdown(&self.bin_dir, &self.data_dir, self.run_as).await;
        if let Some(watchdog) = self.watchdog.take() {
            stop_watchdog(watchdog);
        }
        result?;
        if let Some(pid) = postmaster {
            let deadline = Instant::now() + Duration::from_secs(10);
            while works_in(pid, &self.data_dir) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        remove_owner_file(&self.data_dir);
        info!(data_dir = %self.data_dir.display(), "embedded PostgreSQL stopped");
        Ok(())
    }

    /// Polls `pg_isready` until the server accepts connections, or fails after
    /// [`START_TIMEOUT`] with the tail of the server log.
    async fn wait_until_ready(&self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let port = self.port.to_string();
        loop {
            let mut cmd = pg_command(&self.bin_dir, "pg_isready", None);
            cmd.args(["-q", "-h", "127.0.0.1", "-p", &port])
                .args(["-U", SUPERUSER, "-d", DATABASE, "-t", "2"]);
            if run(cmd).await?.status.success() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let log = self.data_dir.join(LOG_FILE);
                bail!(
                    "PostgreSQL in {} did not accept connections on 127.0.0.1:{} within {} s\n--- end of {} ---\n{}",
                    self.data_dir.display(),
                    self.port,
                    START_TIMEOUT.as_secs(),
                    log.display(),
                    log_tail(&log, 0)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for EmbeddedPostgres {
    /// Best-effort synchronous fast stop if [`EmbeddedPostgres::stop`] was not called.
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let postmaster = postmaster_running(&self.data_dir);
        let result = shutdown_blocking(&self.bin_dir, &self.data_dir, self.run_as);
        if let Some(watchdog) = self.watchdog.take() {
            stop_watchdog(watchdog);
        }
        match result {
            Ok(()) => {
                if let Some(pid) = postmaster {
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while works_in(pid, &self.data_dir) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                remove_owner_file(&self.data_dir);
                info!(data_dir = %self.data_dir.display(), "embedded PostgreSQL stopped on drop");
            }
            Err(err) => warn!(error = %err, "could not stop embedded PostgreSQL on drop"),
        }
    }
}

//! A private PostgreSQL cluster for running without `DATABASE_URL`.
//!
//! [`EmbeddedPostgres::start`] runs the PostgreSQL binaries already installed on the
//! machine: `initdb` on first use of the data folder (kept between runs), then
//! `pg_ctl start`. The server listens on no TCP port at all, only on a unix socket in
//! `<data_dir>/socket`, a folder of mode 0700 owned by the user the server runs as. The
//! cluster trusts every connection it gets (superuser `postgres`, no password), so that
//! folder is what keeps other local users out: only that user and root can connect.
//! [`EmbeddedPostgres::stop`], or `Drop`, stops it again.
//!
//! We do not use the `postgresql_embedded` crate: it cannot switch to another user, and
//! `initdb` refuses to run as root, which is how CI and most containers run the service.
//! So this module runs the PostgreSQL programs itself, as the `postgres` system user when
//! the service runs as root (handing it the data folder, mode 0700), else as our own user.
//!
//! The listening settings are given on the `pg_ctl` command line at every start, so a
//! data folder made by an earlier version, which listened on 127.0.0.1, starts socket-only too.
//!
//! Safety nets:
//! - a watchdog child (`sh`, polling this process with `kill -0` once a second) sends the
//!   postmaster a fast-shutdown signal when this process dies, even by SIGKILL;
//! - a cluster left running by an earlier run that crashed is stopped before starting, and
//!   a stale `postmaster.pid` (and socket lock file) is removed, while a folder whose
//!   cluster a live process still runs (per `embedded-postgres.owner`) is refused;
//! - the server writes to `<data_dir>/server.log`, whose tail is quoted in start errors.

mod binaries;
mod cluster;
#[cfg(test)]
mod tests;
mod user;
mod watchdog;

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use sqlx::{Connection, PgConnection};
use tracing::{info, warn};

use self::{binaries::*, cluster::*, user::*, watchdog::*};

/// The database superuser created by `initdb`, and the user in the URL.
const SUPERUSER: &str = "postgres";
/// The database in the URL.
const DATABASE: &str = "postgres";
/// How long the server may take to accept connections once started.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The server's port number. With no TCP listener it only names the socket file
/// (`.s.PGSQL.<port>`), in a folder of its own, so the default never clashes.
const PORT: u16 = 5432;
/// The server's private socket folder, inside the data folder.
const SOCKET_DIR: &str = "socket";
/// A PostgreSQL cluster started by this process; stopped by [`EmbeddedPostgres::stop`]
/// or, failing that, when dropped.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    /// Folder holding `initdb`, `pg_ctl` and `postgres`.
    bin_dir: PathBuf,
    /// The cluster's data folder (absolute, symlinks resolved).
    data_dir: PathBuf,
    /// The folder holding the server's unix socket (`<data_dir>/socket`).
    socket_dir: PathBuf,
    /// The port number, which names the socket file.
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

impl EmbeddedPostgres {
    /// Starts the cluster in `data_dir` (running initdb first if the folder holds no cluster).
    ///
    /// The binaries are found by [`locate_bin_dir`], honouring `PG_BIN`. Waits until the
    /// server accepts connections (30 s at most).
    pub async fn start(data_dir: &Path) -> Result<Self> {
        let began = Instant::now();
        let explicit = std::env::var_os("PG_BIN")
            .filter(|value| !value.is_empty())
            .map(PathBuf::from);
        let bin_dir = locate_bin_dir(explicit)?;
        let euid = current_euid()?;
        let run_as = run_as_for(euid)?;
        let data_dir = prepare_data_dir(data_dir, euid, run_as)?;
        let socket_dir = data_dir.join(SOCKET_DIR);
        let url = socket_url(&socket_dir, PORT)?;
        let fresh = !data_dir.join("PG_VERSION").exists();
        if fresh {
            info!(data_dir = %data_dir.display(), bin_dir = %bin_dir.display(), "creating a new PostgreSQL cluster");
            initdb(&bin_dir, &data_dir, run_as).await?;
        } else {
            check_cluster_version(&bin_dir, &data_dir, run_as).await?;
            clear_leftover(&bin_dir, &data_dir, run_as).await?;
        }
        prepare_socket_dir(&socket_dir, PORT, euid, run_as)?;
        rotate_log(&data_dir);
        // Left by a run that died; the watchdog takes it for a server that was up.
        remove_owner_file(&data_dir);

        let watchdog = spawn_watchdog(&data_dir)?;
        if let Err(err) = pg_ctl_start(&bin_dir, &data_dir, &socket_dir, run_as, PORT).await {
            stop_watchdog(watchdog);
            return Err(err);
        }
        let pg = Self {
            bin_dir,
            data_dir,
            socket_dir,
            port: PORT,
            url,
            run_as,
            watchdog: Some(watchdog),
            stopped: false,
        };
        write_owner_file(&pg.data_dir);
        // On failure, dropping `pg` stops the server again.
        pg.wait_until_ready().await?;
        info!(
            data_dir = %pg.data_dir.display(),
            fresh,
            elapsed_ms = began.elapsed().as_millis() as u64,
            "embedded PostgreSQL started"
        );
        Ok(pg)
    }

    /// Connection URL through the unix socket (see [`socket_url`]), e.g.
    /// `postgres://postgres@localhost/postgres?host=/srv/data/socket&port=5432&sslmode=disable`
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The port number, which names the socket file (`.s.PGSQL.<port>`); no TCP port is open.
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

    /// Connects through [`Self::url`], as the service will, until that works, or fails
    /// after [`START_TIMEOUT`] with the last error and the tail of the server log.
    ///
    /// Not `pg_isready`: libpq takes a comma in a socket folder's path for a list of hosts.
    async fn wait_until_ready(&self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let error = match tokio::time::timeout(Duration::from_secs(2), PgConnection::connect(&self.url)).await {
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                    return Ok(());
                }
                Ok(Err(err)) => err.to_string(),
                Err(_) => "timed out".to_owned(),
            };
            if Instant::now() >= deadline {
                let log = self.data_dir.join(LOG_FILE);
                bail!(
                    "PostgreSQL in {} did not accept connections on its socket in {} within {} s ({error})\n\
                     --- end of {} ---\n{}",
                    self.data_dir.display(),
                    self.socket_dir.display(),
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

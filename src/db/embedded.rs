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

/// The system user the server runs as when this process runs as root.
const OS_USER: &str = "postgres";
/// The database superuser created by `initdb`, and the user in the URL.
const SUPERUSER: &str = "postgres";
/// The database in the URL.
const DATABASE: &str = "postgres";
/// The server log, inside the data folder.
const LOG_FILE: &str = "server.log";
/// Where a server log grown past [`MAX_LOG_BYTES`] is moved at start.
const OLD_LOG_FILE: &str = "server.log.old";
/// Size past which the server log is rotated at start.
const MAX_LOG_BYTES: u64 = 10 * 1024 * 1024;
/// Lines of the server log quoted in errors.
const LOG_TAIL_LINES: usize = 25;
/// The postmaster's lock file, inside the data folder.
const PID_FILE: &str = "postmaster.pid";
/// Names the process (pid and start time) that started the running cluster.
const OWNER_FILE: &str = "embedded-postgres.owner";
/// How long the server may take to accept connections once started.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `pg_ctl` waits for a start or a stop, in seconds.
const PG_CTL_WAIT_SECS: &str = "30";
/// How many ports are tried when the chosen one gets taken before the server binds it.
const PORT_ATTEMPTS: u32 = 5;
/// Programs the binary folder must hold.
const REQUIRED_TOOLS: [&str; 4] = ["initdb", "pg_ctl", "postgres", "pg_isready"];
/// Debian's and Ubuntu's home of the versioned PostgreSQL binary folders.
const DEBIAN_PG_ROOT: &str = "/usr/lib/postgresql";

/// The watchdog, run by `sh -c` with `$1` = our pid, `$2` = the data folder and `$3` =
/// the owner file (written once the server is up).
///
/// While we live (and are still its parent) it polls once a second, and exits once the
/// cluster is gone after it was seen running or the owner file was written (stopped
/// normally, by us or by someone else). When we are gone, it sends SIGINT
/// (fast shutdown) to the postmaster named in `postmaster.pid`, if that process really
/// works in our data folder, waiting up to 10 s for a server that is still starting.
const WATCHDOG_SCRIPT: &str = r#"
trap '' HUP INT TERM
parent=$1
data=$2
pidfile=$data/postmaster.pid
owner=$3
armed=0
while kill -0 "$parent" 2>/dev/null; do
  ppid=
  read -r _ _ _ ppid _ < "/proc/$$/stat"
  if [ -n "$ppid" ] && [ "$ppid" != "$parent" ]; then break; fi
  if [ -f "$pidfile" ]; then armed=1; elif [ "$armed" = 1 ] || [ -f "$owner" ]; then exit 0; fi
  sleep 1
done
tries=0
while [ "$tries" -lt 10 ]; do
  pm=
  if [ -f "$pidfile" ]; then
    read -r pm < "$pidfile"
  elif [ "$armed" = 1 ]; then
    exit 0
  fi
  if [ -n "$pm" ]; then
    if [ "$(readlink "/proc/$pm/cwd")" = "$data" ]; then kill -INT "$pm"; fi
    exit 0
  fi
  sleep 1
  tries=$((tries + 1))
done
"#;

/// The system user the PostgreSQL programs run as, when it is not this process's user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RunAs {
    /// User id.
    uid: u32,
    /// Primary group id.
    gid: u32,
}

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

/// Finds the folder holding the PostgreSQL server binaries.
///
/// `explicit` (the `PG_BIN` variable) wins and must hold them; otherwise tries
/// `pg_config --bindir`, the newest `/usr/lib/postgresql/<version>/bin`, then the folder
/// an `initdb` on `PATH` really lives in (symlinks resolved). Fails with a message telling
/// the user to install PostgreSQL or set `DATABASE_URL`.
pub(crate) fn locate_bin_dir(explicit: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(dir) = explicit {
        let missing: Vec<&str> = REQUIRED_TOOLS
            .into_iter()
            .filter(|tool| !is_executable(&dir.join(tool)))
            .collect();
        if !missing.is_empty() {
            bail!(
                "PG_BIN is set to {}, but that folder has no {}: install the PostgreSQL server \
                 (e.g. `apt-get install postgresql`) and point PG_BIN at its bin folder, \
                 or set DATABASE_URL to use an existing database",
                dir.display(),
                missing.join(", ")
            );
        }
        return Ok(fs::canonicalize(&dir).unwrap_or(dir));
    }
    pg_config_bin_dir()
        .or_else(|| newest_versioned_bin_dir(Path::new(DEBIAN_PG_ROOT)))
        .or_else(bin_dir_on_path)
        .ok_or_else(|| {
            anyhow!(
                "no PostgreSQL server binaries found (looked at PG_BIN, `pg_config --bindir`, \
                 {DEBIAN_PG_ROOT}/<version>/bin and PATH): install PostgreSQL \
                 (e.g. `apt-get install postgresql`), set PG_BIN to its bin folder, \
                 or set DATABASE_URL to use an existing database"
            )
        })
}

/// The folder `pg_config --bindir` names, if it holds the server binaries.
fn pg_config_bin_dir() -> Option<PathBuf> {
    let output = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let dir = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    usable_bin_dir(&dir)
}

/// The `<root>/<version>/bin` folder with the highest version (compared numerically)
/// that holds the server binaries.
fn newest_versioned_bin_dir(root: &Path) -> Option<PathBuf> {
    fs::read_dir(root)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version = parse_version(entry.file_name().to_str()?)?;
            Some((version, usable_bin_dir(&entry.path().join("bin"))?))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, dir)| dir)
}

/// The real folder of the first `initdb` on `PATH`, if it holds the server binaries.
fn bin_dir_on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find_map(|dir| {
        let initdb = dir.join("initdb");
        if !is_executable(&initdb) {
            return None;
        }
        usable_bin_dir(fs::canonicalize(initdb).ok()?.parent()?)
    })
}

/// `dir` with symlinks resolved, if it holds every program in [`REQUIRED_TOOLS`].
fn usable_bin_dir(dir: &Path) -> Option<PathBuf> {
    REQUIRED_TOOLS
        .iter()
        .all(|tool| is_executable(&dir.join(tool)))
        .then(|| fs::canonicalize(dir).ok())
        .flatten()
}

/// Parses a version folder name such as `15` or `9.6` into its numbers.
fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// The major version in `postgres --version` output (`15`, or `9.6` before 10).
fn major_version(version_output: &str) -> Option<String> {
    let version = version_output.split_once("(PostgreSQL)")?.1.split_whitespace().next()?;
    let mut numbers = version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|part| !part.is_empty());
    let major: u32 = numbers.next()?.parse().ok()?;
    if major >= 10 {
        Some(major.to_string())
    } else {
        Some(format!("{major}.{}", numbers.next()?))
    }
}

/// Whether `path` is a file with an execute bit set (symlinks followed).
fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.mode() & 0o111 != 0)
}

/// This process's effective user id.
fn current_euid() -> Result<u32> {
    if let Ok(status) = fs::read_to_string("/proc/self/status")
        && let Some(euid) = status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            .and_then(|id| id.parse().ok())
    {
        return Ok(euid);
    }
    id_number(&["-u"]).context("could not tell which user this process runs as")
}

/// Runs `id` with `args` and parses the number it prints.
fn id_number(args: &[&str]) -> Result<u32> {
    let output = Command::new("id")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("could not run `id`")?;
    if !output.status.success() {
        bail!("`id {}` failed: {}", args.join(" "), output_text(&output));
    }
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .with_context(|| format!("`id {}` printed no number", args.join(" ")))
}

/// The user the PostgreSQL programs must run as, given this process's effective uid:
/// the `postgres` system user for root (`initdb` and `postgres` refuse root), else ours.
fn run_as_for(euid: u32) -> Result<Option<RunAs>> {
    if euid != 0 {
        return Ok(None);
    }
    let lookup = || -> Result<RunAs> {
        Ok(RunAs {
            uid: id_number(&["-u", OS_USER])?,
            gid: id_number(&["-g", OS_USER])?,
        })
    };
    match lookup() {
        Ok(user) if user.uid != 0 => Ok(Some(user)),
        Ok(_) => bail!("the `{OS_USER}` system user has uid 0; PostgreSQL refuses to run as root"),
        Err(err) => Err(err.context(format!(
            "this process runs as root, and PostgreSQL refuses to, but there is no `{OS_USER}` \
             system user to run it as: create one (e.g. `useradd --system --user-group {OS_USER}`), \
             run the service as a non-root user, or set DATABASE_URL"
        ))),
    }
}

/// Creates the data folder if needed and returns its absolute path. For root, hands a
/// new folder to the `postgres` user (mode 0700) and checks that user can reach it;
/// otherwise checks the folder is ours.
fn prepare_data_dir(data_dir: &Path, euid: u32, run_as: Option<RunAs>) -> Result<PathBuf> {
    fs::create_dir_all(data_dir).with_context(|| format!("could not create the data folder {}", data_dir.display()))?;
    let dir = fs::canonicalize(data_dir)
        .with_context(|| format!("could not resolve the data folder {}", data_dir.display()))?;
    let meta = fs::metadata(&dir).with_context(|| format!("could not inspect {}", dir.display()))?;
    let has_cluster = dir.join("PG_VERSION").exists();
    let owner = run_as.map_or(euid, |user| user.uid);
    if has_cluster {
        if meta.uid() != owner {
            bail!(
                "the PostgreSQL cluster in {} belongs to uid {}, but the server must run as uid {owner}{}",
                dir.display(),
                meta.uid(),
                if run_as.is_some() {
                    format!(
                        " (the `{OS_USER}` system user): `chown -R {OS_USER}: {}`",
                        dir.display()
                    )
                } else {
                    ": run the service as that user, or use another data folder".to_owned()
                }
            );
        }
    } else {
        if let Some(user) = run_as {
            std::os::unix::fs::chown(&dir, Some(user.uid), Some(user.gid))
                .with_context(|| format!("could not hand {} to the `{OS_USER}` user", dir.display()))?;
        } else if meta.uid() != euid {
            bail!(
                "the data folder {} belongs to uid {}, not to this process's uid {euid}: \
                 use another data folder",
                dir.display(),
                meta.uid()
            );
        }
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("could not set mode 0700 on {}", dir.display()))?;
    }
    if let Some(user) = run_as {
        check_reachable(&dir, user)?;
    }
    Ok(dir)
}

/// Fails, naming the first folder on the way that blocks it, unless `user` can enter `dir`.
fn check_reachable(dir: &Path, user: RunAs) -> Result<()> {
    if can_enter(dir, user)? {
        return Ok(());
    }
    let ancestors: Vec<&Path> = dir.ancestors().collect();
    let blocker = ancestors
        .into_iter()
        .rev()
        .find(|folder| !can_enter(folder, user).unwrap_or(false))
        .unwrap_or(dir);
    bail!(
        "the `{OS_USER}` system user, which runs PostgreSQL, cannot reach the data folder {}: \
         it may not enter {} (let it, e.g. `chmod o+x {}`, or choose a data folder under /tmp or /var/lib)",
        dir.display(),
        blocker.display(),
        blocker.display()
    )
}

/// Whether `user` can `cd` into `dir`.
fn can_enter(dir: &Path, user: RunAs) -> Result<bool> {
    let status = Command::new("/bin/sh")
        .args(["-c", "cd \"$1\"", "sh"])
        .arg(dir)
        .uid(user.uid)
        .gid(user.gid)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("could not run /bin/sh")?;
    Ok(status.success())
}

/// A command for `bin_dir/tool`, run as `run_as` (or us) from `/`, with the libpq `PG*`
/// variables of our environment removed and `LC_ALL=C`.
fn pg_command(bin_dir: &Path, tool: &str, run_as: Option<RunAs>) -> Command {
    let mut cmd = Command::new(bin_dir.join(tool));
    for (name, _) in std::env::vars_os() {
        if name.as_encoded_bytes().starts_with(b"PG") {
            cmd.env_remove(name);
        }
    }
    cmd.env("LC_ALL", "C").current_dir("/").stdin(Stdio::null());
    if let Some(user) = run_as {
        cmd.uid(user.uid).gid(user.gid);
    }
    cmd
}

/// Runs `cmd` to completion without blocking the runtime, capturing its output.
async fn run(cmd: Command) -> Result<Output> {
    let program = PathBuf::from(cmd.get_program());
    tokio::process::Command::from(cmd)
        .output()
        .await
        .with_context(|| format!("could not run {}", program.display()))
}

/// A command's stdout and stderr, trimmed to their last 4000 characters.
fn output_text(output: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = text.trim();
    let skip = text.chars().count().saturating_sub(4000);
    text.chars().skip(skip).collect()
}

/// Creates a cluster in the empty `data_dir`: superuser `postgres`, trust auth, UTF8.
async fn initdb(bin_dir: &Path, data_dir: &Path, run_as: Option<RunAs>) -> Result<()> {
    let mut cmd = pg_command(bin_dir, "initdb", run_as);
    cmd.arg("-D").arg(data_dir).args([
        "--username",
        SUPERUSER,
        "--auth=trust",
        "--encoding=UTF8",
        "--no-locale",
        "--no-sync",
    ]);
    let output = run(cmd).await?;
    if !output.status.success() {
        bail!("initdb failed for {}:\n{}", data_dir.display(), output_text(&output));
    }
    Ok(())
}

/// Fails clearly if the cluster in `data_dir` was made by another major version than
/// the binaries in `bin_dir`.
async fn check_cluster_version(bin_dir: &Path, data_dir: &Path, run_as: Option<RunAs>) -> Result<()> {
    let cluster = fs::read_to_string(data_dir.join("PG_VERSION"))
        .with_context(|| format!("could not read {}/PG_VERSION", data_dir.display()))?;
    let cluster = cluster.trim();
    let mut cmd = pg_command(bin_dir, "postgres", run_as);
    cmd.arg("--version");
    let output = run(cmd).await?;
    let Some(binaries) = major_version(&String::from_utf8_lossy(&output.stdout)) else {
        return Ok(());
    };
    if binaries != cluster {
        let matching = Path::new(DEBIAN_PG_ROOT).join(cluster).join("bin");
        let hint = match usable_bin_dir(&matching) {
            Some(dir) => format!("set PG_BIN={} to use matching binaries, ", dir.display()),
            None => String::new(),
        };
        bail!(
            "the data folder {} holds a PostgreSQL {cluster} cluster, but the binaries in {} \
             are PostgreSQL {binaries}: {hint}or move the folder away to start afresh",
            data_dir.display(),
            bin_dir.display()
        );
    }
    Ok(())
}

/// Stops a cluster left running in `data_dir` by an earlier run that died, and removes
/// a stale `postmaster.pid`. Fails if a live process of ours still owns the cluster.
async fn clear_leftover(bin_dir: &Path, data_dir: &Path, run_as: Option<RunAs>) -> Result<()> {
    let pid_file = data_dir.join(PID_FILE);
    if !pid_file.exists() {
        return Ok(());
    }
    let Some(pid) = postmaster_running(data_dir) else {
        info!(path = %pid_file.display(), "removing a stale postmaster.pid");
        return match fs::remove_file(&pid_file) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(err).with_context(|| format!("could not remove {}", pid_file.display()))
            }
            _ => Ok(()),
        };
    };
    if let Some(owner) = live_owner(data_dir) {
        bail!(
            "the PostgreSQL cluster in {} is in use by another running process (pid {owner}): \
             stop that process, or use another data folder",
            data_dir.display()
        );
    }
    warn!(pid, data_dir = %data_dir.display(), "stopping a PostgreSQL cluster left running by an earlier run");
    shutdown(bin_dir, data_dir, run_as)
        .await
        .context("could not stop the PostgreSQL cluster left running by an earlier run")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while works_in(pid, data_dir) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A free TCP port on 127.0.0.1 (bound, then released).
fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("could not find a free TCP port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

/// Runs `pg_ctl start` on `port`, listening on 127.0.0.1 only, without a unix socket.
async fn pg_ctl_start(bin_dir: &Path, data_dir: &Path, run_as: Option<RunAs>, port: u16) -> Result<(), StartFailure> {
    let log = data_dir.join(LOG_FILE);
    let log_offset = fs::metadata(&log).map_or(0, |meta| meta.len());
    let mut cmd = pg_command(bin_dir, "pg_ctl", run_as);
    cmd.arg("start")
        .arg("-D")
        .arg(data_dir)
        .arg("-l")
        .arg(&log)
        .args(["-w", "-t", PG_CTL_WAIT_SECS, "-o"])
        .arg(format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
        ));
    let output = run(cmd).await.map_err(StartFailure::Other)?;
    if output.status.success() {
        return Ok(());
    }
    let tail = log_tail(&log, log_offset);
    if postmaster_running(data_dir).is_some() {
        // pg_ctl gave up waiting, but the server is still coming up: do not leave it behind.
        let mut stop = pg_ctl_stop_command(bin_dir, data_dir, run_as, "immediate");
        stop.stdout(Stdio::null()).stderr(Stdio::null());
        let _ = run(stop).await;
    }
    let err = anyhow!(
        "could not start PostgreSQL in {} on 127.0.0.1:{port}: {}\n--- end of {} ---\n{tail}",
        data_dir.display(),
        output_text(&output),
        log.display()
    );
    if tail.contains("Address already in use") || tail.contains("could not bind") {
        Err(StartFailure::PortTaken(err))
    } else {
        Err(StartFailure::Other(err))
    }
}

/// `pg_ctl stop` in `mode` (`fast` or `immediate`), waiting for the server to exit.
fn pg_ctl_stop_command(bin_dir: &Path, data_dir: &Path, run_as: Option<RunAs>, mode: &str) -> Command {
    let mut cmd = pg_command(bin_dir, "pg_ctl", run_as);
    cmd.arg("stop")
        .arg("-D")
        .arg(data_dir)
        .args(["-m", mode, "-w", "-t", PG_CTL_WAIT_SECS]);
    cmd
}

/// Judges a `pg_ctl stop`: fine if it succeeded or no server runs in `data_dir` anymore.
fn stop_outcome(data_dir: &Path, mode: &str, output: Result<Output>) -> Result<()> {
    match output {
        Ok(output) if output.status.success() => Ok(()),
        _ if postmaster_running(data_dir).is_none() => Ok(()),
        Ok(output) => bail!(
            "`pg_ctl stop -m {mode}` failed for {}: {}",
            data_dir.display(),
            output_text(&output)
        ),
        Err(err) => Err(err),
    }
}

/// Stops the server in `data_dir`: fast shutdown, or immediate if that fails.
async fn shutdown(bin_dir: &Path, data_dir: &Path, run_as: Option<RunAs>) -> Result<()> {
    let fast = run(pg_ctl_stop_command(bin_dir, data_dir, run_as, "fast")).await;
    let Err(err) = stop_outcome(data_dir, "fast", fast) else {
        return Ok(());
    };
    warn!(error = %err, "fast shutdown failed; trying an immediate shutdown");
    let immediate = run(pg_ctl_stop_command(bin_dir, data_dir, run_as, "immediate")).await;
    stop_outcome(data_dir, "immediate", immediate)
}

/// [`shutdown`], blocking the calling thread (for `Drop`).
fn shutdown_blocking(bin_dir: &Path, data_dir: &Path, run_as: Option<RunAs>) -> Result<()> {
    let fast = pg_ctl_stop_command(bin_dir, data_dir, run_as, "fast")
        .output()
        .context("could not run pg_ctl");
    let Err(err) = stop_outcome(data_dir, "fast", fast) else {
        return Ok(());
    };
    warn!(error = %err, "fast shutdown failed; trying an immediate shutdown");
    let immediate = pg_ctl_stop_command(bin_dir, data_dir, run_as, "immediate")
        .output()
        .context("could not run pg_ctl");
    stop_outcome(data_dir, "immediate", immediate)
}

/// Starts the watchdog (see [`WATCHDOG_SCRIPT`]) as our own user, in its own process
/// group so that a terminal's Ctrl-C does not reach it.
fn spawn_watchdog(data_dir: &Path) -> Result<Child> {
    Command::new("/bin/sh")
        .args(["-c", WATCHDOG_SCRIPT, "embedded-postgres-watchdog"])
        .arg(std::process::id().to_string())
        .arg(data_dir)
        .arg(data_dir.join(OWNER_FILE))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("could not start the embedded PostgreSQL watchdog (/bin/sh)")
}

/// Kills the watchdog and reaps it.
fn stop_watchdog(mut watchdog: Child) {
    let _ = watchdog.kill();
    let _ = watchdog.wait();
}

/// The pid of the postmaster running in `data_dir`, per its `postmaster.pid`, if that
/// process is alive and really works in `data_dir`.
fn postmaster_running(data_dir: &Path) -> Option<u32> {
    let text = fs::read_to_string(data_dir.join(PID_FILE)).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    works_in(pid, data_dir).then_some(pid)
}

/// Whether process `pid` is alive with `dir` as its working folder, as the postmaster
/// and every server process have their data folder.
fn works_in(pid: u32, dir: &Path) -> bool {
    fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir)
}

/// The start time (clock ticks since boot) of live process `pid`; `None` if it is gone
/// or a zombie.
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // After the state (field 3) comes ppid (4); the start time is field 22.
    fields.nth(18)?.parse().ok()
}

/// Records this process (pid and start time) as the one running the cluster.
fn write_owner_file(data_dir: &Path) {
    let pid = std::process::id();
    let start = process_start_time(pid).unwrap_or(0);
    if let Err(err) = fs::write(data_dir.join(OWNER_FILE), format!("{pid} {start}\n")) {
        warn!(error = %err, "could not write {OWNER_FILE} in {}", data_dir.display());
    }
}

/// Removes the owner record once the cluster is stopped.
fn remove_owner_file(data_dir: &Path) {
    let _ = fs::remove_file(data_dir.join(OWNER_FILE));
}

/// The pid of the process recorded as running the cluster, if it is still alive (same
/// pid and start time, so a reused pid does not count).
fn live_owner(data_dir: &Path) -> Option<u32> {
    let text = fs::read_to_string(data_dir.join(OWNER_FILE)).ok()?;
    let mut fields = text.split_whitespace();
    let pid: u32 = fields.next()?.parse().ok()?;
    let start: u64 = fields.next()?.parse().ok()?;
    (process_start_time(pid) == Some(start)).then_some(pid)
}

/// Moves a server log grown past [`MAX_LOG_BYTES`] to [`OLD_LOG_FILE`].
fn rotate_log(data_dir: &Path) {
    let log = data_dir.join(LOG_FILE);
    if fs::metadata(&log).is_ok_and(|meta| meta.len() > MAX_LOG_BYTES)
        && let Err(err) = fs::rename(&log, data_dir.join(OLD_LOG_FILE))
    {
        warn!(error = %err, "could not rotate {}", log.display());
    }
}

/// The last [`LOG_TAIL_LINES`] lines written to `log` after byte `offset`.
fn log_tail(log: &Path, offset: u64) -> String {
    let Ok(mut file) = fs::File::open(log) else {
        return format!("(no server log at {})", log.display());
    };
    let len = file.metadata().map_or(0, |meta| meta.len());
    let start = if offset <= len { offset } else { 0 };
    let start = start.max(len.saturating_sub(64 * 1024));
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return format!("(could not read {})", log.display());
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Environment variable naming the folder of the watchdog test's child process.
    const WATCHDOG_CHILD_ENV: &str = "EMBEDDED_PG_WATCHDOG_TEST_DIR";

    /// A fresh folder under /tmp (traversable by the `postgres` user), removed on drop.
    struct TestDir(PathBuf);

    impl TestDir {
        /// Creates `/tmp/embedded-pg-test-<label>-<pid>-<n>-<nanos>`, mode 0755.
        fn new(label: &str) -> Self {
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.subsec_nanos());
            let path = Path::new("/tmp").join(format!(
                "embedded-pg-test-{label}-{}-{}-{nanos}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&path).expect("create test folder");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod test folder");
            Self(path)
        }

        /// The folder.
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TestDir {
        /// Removes the folder and everything in it.
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Runs `sql` with the bin folder's psql over TCP; returns its unaligned output.
    fn psql(pg: &EmbeddedPostgres, sql: &str) -> Result<String> {
        let output = pg_command(&pg.bin_dir, "psql", None)
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args(["-p", &pg.port.to_string(), "-U", SUPERUSER, "-d", DATABASE, "-c", sql])
            .output()?;
        if !output.status.success() {
            bail!("psql failed: {}", output_text(&output));
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Whether `pg_isready -h 127.0.0.1 -p port` succeeds.
    fn pg_isready(bin_dir: &Path, port: u16) -> bool {
        pg_command(bin_dir, "pg_isready", None)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", "3"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// Live processes whose working folder is `dir` (the server's processes for a data folder).
    fn processes_in(dir: &Path) -> Vec<u32> {
        fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
            .filter(|pid| works_in(*pid, dir))
            .collect()
    }

    /// Waits up to `secs` seconds for no process to work in `dir`; returns those left.
    fn wait_for_no_processes(dir: &Path, secs: u64) -> Vec<u32> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = processes_in(dir);
            if left.is_empty() || Instant::now() >= deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The user the server runs as in these tests.
    fn test_run_as() -> Option<RunAs> {
        run_as_for(current_euid().unwrap()).unwrap()
    }

    /// A fresh folder gets a cluster whose URL accepts connections, on loopback only.
    #[tokio::test]
    async fn starts_fresh_cluster_that_accepts_connections() -> Result<()> {
        let tmp = TestDir::new("fresh");
        let data = tmp.path().join("data");
        let pg = EmbeddedPostgres::start(&data).await?;
        assert_eq!(
            pg.url(),
            format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port())
        );
        assert!(pg_isready(&pg.bin_dir, pg.port()), "pg_isready failed");
        assert_eq!(psql(&pg, "select 1")?, "1");
        assert_eq!(psql(&pg, "show listen_addresses")?, "127.0.0.1");
        assert_eq!(psql(&pg, "show unix_socket_directories")?, "");
        assert_eq!(psql(&pg, "show server_encoding")?, "UTF8");
        let meta = fs::metadata(&data)?;
        assert_eq!(meta.mode() & 0o777, 0o700);
        if let Some(user) = pg.run_as {
            assert_eq!(meta.uid(), user.uid);
        }
        assert!(data.join(LOG_FILE).exists());
        pg.stop().await?;
        Ok(())
    }

    /// A second start on the same, stopped, folder reuses the cluster without initdb.
    #[tokio::test]
    async fn restart_reuses_existing_cluster() -> Result<()> {
        let tmp = TestDir::new("restart");
        let data = tmp.path().join("data");
        let pg = EmbeddedPostgres::start(&data).await?;
        psql(
            &pg,
            "create table marker (note text); insert into marker values ('kept')",
        )?;
        let first_port = pg.port();
        pg.stop().await?;
        let version_mtime = fs::metadata(data.join("PG_VERSION"))?.modified()?;

        let pg = EmbeddedPostgres::start(&data).await?;
        assert_eq!(psql(&pg, "select note from marker")?, "kept");
        assert_eq!(fs::metadata(data.join("PG_VERSION"))?.modified()?, version_mtime);
        assert!(pg_isready(&pg.bin_dir, pg.port()));
        assert!(!pg_isready(&pg.bin_dir, first_port) || first_port == pg.port());
        pg.stop().await?;
        Ok(())
    }

    /// After stop(), no process works in the data folder and the watchdog is gone.
    #[tokio::test]
    async fn stop_leaves_no_process_behind() -> Result<()> {
        let tmp = TestDir::new("stop");
        let data = tmp.path().join("data");
        let pg = EmbeddedPostgres::start(&data).await?;
        let dir = pg.data_dir.clone();
        let port = pg.port();
        let watchdog = pg.watchdog.as_ref().map(Child::id).expect("watchdog");
        assert!(!processes_in(&dir).is_empty(), "no server process found");
        pg.stop().await?;
        assert_eq!(processes_in(&dir), Vec::<u32>::new());
        assert!(!dir.join(PID_FILE).exists());
        assert!(!dir.join(OWNER_FILE).exists());
        assert_eq!(process_start_time(watchdog), None, "watchdog still alive");
        assert!(!pg_isready(&locate_bin_dir(None)?, port));
        Ok(())
    }

    /// Dropping without stop() stops the cluster too.
    #[tokio::test]
    async fn drop_without_stop_stops_cluster() -> Result<()> {
        let tmp = TestDir::new("drop");
        let data = tmp.path().join("data");
        let pg = EmbeddedPostgres::start(&data).await?;
        let dir = pg.data_dir.clone();
        let bin_dir = pg.bin_dir.clone();
        let port = pg.port();
        drop(pg);
        assert_eq!(processes_in(&dir), Vec::<u32>::new());
        assert!(!dir.join(PID_FILE).exists());
        assert!(!pg_isready(&bin_dir, port));
        Ok(())
    }

    /// PG_BIN pointing to an empty folder gives a clear error.
    #[test]
    fn empty_pg_bin_gives_clear_error() {
        let tmp = TestDir::new("empty-bin");
        let err = locate_bin_dir(Some(tmp.path().to_owned())).unwrap_err().to_string();
        assert!(err.contains(&tmp.path().display().to_string()), "{err}");
        assert!(err.contains("initdb"), "{err}");
        assert!(err.contains("install"), "{err}");
        assert!(err.contains("DATABASE_URL"), "{err}");
    }

    /// Without PG_BIN, the real Debian binaries are found (not a /usr/local/bin symlink).
    #[test]
    fn locates_real_postgres_binaries() -> Result<()> {
        let dir = locate_bin_dir(None)?;
        assert!(dir.join("initdb").is_file() && !dir.join("initdb").is_symlink());
        for tool in REQUIRED_TOOLS {
            assert!(is_executable(&dir.join(tool)), "{tool} missing in {}", dir.display());
        }
        if Path::new("/usr/lib/postgresql/15/bin/initdb").exists() {
            assert!(dir.starts_with(DEBIAN_PG_ROOT), "{}", dir.display());
        }
        Ok(())
    }

    /// Version folders compare numerically (10 beats 9.6), and need the binaries.
    #[test]
    fn newest_versioned_bin_dir_compares_numerically() -> Result<()> {
        let tmp = TestDir::new("versions");
        for version in ["9.6", "10", "16", "notaversion"] {
            let bin = tmp.path().join(version).join("bin");
            fs::create_dir_all(&bin)?;
            let tools: &[&str] = if version == "16" { &["initdb"] } else { &REQUIRED_TOOLS };
            for tool in tools {
                fs::write(bin.join(tool), "#!/bin/sh\n")?;
                fs::set_permissions(bin.join(tool), fs::Permissions::from_mode(0o755))?;
            }
        }
        let found = newest_versioned_bin_dir(tmp.path()).expect("a version folder");
        assert_eq!(found, fs::canonicalize(tmp.path().join("10/bin"))?);
        assert_eq!(parse_version("9.6"), Some(vec![9, 6]));
        assert_eq!(parse_version("main"), None);
        assert_eq!(
            major_version("postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)").as_deref(),
            Some("15")
        );
        assert_eq!(major_version("postgres (PostgreSQL) 9.6.24").as_deref(), Some("9.6"));
        assert_eq!(major_version("postgres (PostgreSQL) 17beta1").as_deref(), Some("17"));
        Ok(())
    }

    /// A port taken before the server binds it is retried with another port.
    #[tokio::test]
    async fn retries_with_another_port_when_port_is_taken() -> Result<()> {
        let tmp = TestDir::new("port");
        let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let taken_port = taken.local_addr()?.port();
        let mut offered = Vec::new();
        let pg = EmbeddedPostgres::start_with(&tmp.path().join("data"), locate_bin_dir(None)?, || {
            let port = if offered.is_empty() { taken_port } else { free_port()? };
            offered.push(port);
            Ok(port)
        })
        .await?;
        assert_ne!(pg.port(), taken_port);
        assert_eq!(offered.len(), 2, "ports offered: {offered:?}");
        let log = fs::read_to_string(pg.data_dir.join(LOG_FILE))?;
        assert!(log.contains("Address already in use"), "{log}");
        assert_eq!(psql(&pg, "select 1")?, "1");
        pg.stop().await?;
        drop(taken);
        Ok(())
    }

    /// A cluster left running by a crashed run (no live owner) is stopped and replaced.
    #[tokio::test]
    async fn leftover_cluster_from_crashed_run_is_replaced() -> Result<()> {
        let tmp = TestDir::new("leftover");
        let data = tmp.path().join("data");
        let pg = EmbeddedPostgres::start(&data).await?;
        let (bin_dir, dir) = (pg.bin_dir.clone(), pg.data_dir.clone());
        pg.stop().await?;

        let old_port = free_port()?;
        let output = pg_command(&bin_dir, "pg_ctl", test_run_as())
            .arg("start")
            .arg("-D")
            .arg(&dir)
            .arg("-l")
            .arg(dir.join(LOG_FILE))
            .args(["-w", "-o"])
            .arg(format!(
                "-p {old_port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
            ))
            .output()?;
        assert!(output.status.success(), "{}", output_text(&output));
        let old_pid = postmaster_running(&dir).expect("leftover postmaster");

        let pg = EmbeddedPostgres::start(&data).await?;
        assert!(!works_in(old_pid, &dir), "the leftover postmaster still runs");
        assert!(!pg_isready(&bin_dir, old_port));
        assert_eq!(psql(&pg, "select 1")?, "1");
        pg.stop().await?;
        assert_eq!(processes_in(&dir), Vec::<u32>::new());
        Ok(())
    }

    /// A postmaster.pid naming a dead pid, or a live process that is not the server,
    /// does not block start.
    #[tokio::test]
    async fn stale_postmaster_pid_does_not_block_start() -> Result<()> {
        let tmp = TestDir::new("stale");
        let data = tmp.path().join("data");
        let pg = EmbeddedPostgres::start(&data).await?;
        let dir = pg.data_dir.clone();
        pg.stop().await?;

        // A pid that is gone.
        let mut gone = Command::new("true").spawn()?;
        let gone_pid = gone.id();
        gone.wait()?;
        fs::write(dir.join(PID_FILE), format!("{gone_pid}\n{}\n", dir.display()))?;
        let pg = EmbeddedPostgres::start(&data).await?;
        assert_eq!(psql(&pg, "select 1")?, "1");
        pg.stop().await?;

        // A reused pid: a live process of the server's user, which PostgreSQL alone
        // would take for a running server.
        let mut sleeper = Command::new("sleep");
        sleeper.arg("60").current_dir("/");
        if let Some(user) = test_run_as() {
            sleeper.uid(user.uid).gid(user.gid);
        }
        let mut sleeper = sleeper.spawn()?;
        fs::write(dir.join(PID_FILE), format!("{}\n{}\n", sleeper.id(), dir.display()))?;
        let started = EmbeddedPostgres::start(&data).await;
        sleeper.kill()?;
        sleeper.wait()?;
        let pg = started?;
        assert_eq!(psql(&pg, "select 1")?, "1");
        pg.stop().await?;
        Ok(())
    }

    /// The watchdog exits by itself when the cluster is stopped behind our back, and
    /// stop() then still succeeds.
    #[tokio::test]
    async fn watchdog_exits_when_cluster_is_stopped_elsewhere() -> Result<()> {
        let tmp = TestDir::new("external-stop");
        let pg = EmbeddedPostgres::start(&tmp.path().join("data")).await?;
        let watchdog = pg.watchdog.as_ref().map(Child::id).expect("watchdog");
        let output = pg_ctl_stop_command(&pg.bin_dir, &pg.data_dir, pg.run_as, "fast").output()?;
        assert!(output.status.success(), "{}", output_text(&output));
        let deadline = Instant::now() + Duration::from_secs(5);
        while process_start_time(watchdog).is_some() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(process_start_time(watchdog), None, "watchdog still alive");
        pg.stop().await?;
        Ok(())
    }

    /// A cluster made by another major version than the binaries is refused clearly.
    #[tokio::test]
    async fn cluster_of_another_major_version_is_refused() -> Result<()> {
        let tmp = TestDir::new("version");
        let data = tmp.path().join("data");
        EmbeddedPostgres::start(&data).await?.stop().await?;
        fs::write(data.join("PG_VERSION"), "9.6\n")?;
        let err = EmbeddedPostgres::start(&data).await.unwrap_err().to_string();
        assert!(err.contains("PostgreSQL 9.6 cluster"), "{err}");
        assert!(err.contains(&data.display().to_string()), "{err}");
        Ok(())
    }

    /// A second start on a folder whose cluster a live process still runs is refused.
    #[tokio::test]
    async fn data_dir_in_use_is_refused() -> Result<()> {
        let tmp = TestDir::new("in-use");
        let data = tmp.path().join("data");
        let pg = EmbeddedPostgres::start(&data).await?;
        let err = EmbeddedPostgres::start(&data).await.unwrap_err().to_string();
        assert!(err.contains("in use"), "{err}");
        assert_eq!(psql(&pg, "select 1")?, "1");
        pg.stop().await?;
        Ok(())
    }

    /// As root, a data folder the `postgres` user cannot reach is refused, naming the
    /// folder in the way.
    #[tokio::test]
    async fn unreachable_data_dir_names_the_blocking_folder() -> Result<()> {
        if current_euid()? != 0 {
            return Ok(());
        }
        let tmp = TestDir::new("unreachable");
        let private = tmp.path().join("private");
        fs::create_dir(&private)?;
        fs::set_permissions(&private, fs::Permissions::from_mode(0o700))?;
        let err = EmbeddedPostgres::start(&private.join("data"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("enter {} ", private.display())), "{err}");
        assert!(err.contains("postgres"), "{err}");
        Ok(())
    }

    /// When the process owning the cluster is killed with SIGKILL, the watchdog stops the
    /// cluster and exits. The test runs itself again as that process: with
    /// `WATCHDOG_CHILD_ENV` set, it plays the owner instead.
    #[tokio::test]
    async fn watchdog_stops_cluster_when_parent_is_killed() -> Result<()> {
        if let Some(dir) = std::env::var_os(WATCHDOG_CHILD_ENV) {
            return own_a_cluster_until_killed(&PathBuf::from(dir)).await;
        }
        let tmp = TestDir::new("watchdog");
        let path = module_path!();
        let test = format!(
            "{}::watchdog_stops_cluster_when_parent_is_killed",
            path.split_once("::").map_or(path, |(_, rest)| rest)
        );
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--exact", &test, "--nocapture"])
            .env(WATCHDOG_CHILD_ENV, tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let report = tmp.path().join("report");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !report.exists() {
            if Instant::now() >= deadline || child.try_wait()?.is_some() {
                let _ = child.kill();
                bail!("the child process did not start the cluster");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let text = fs::read_to_string(&report)?;
        let mut fields = text.split_whitespace().map(str::parse::<u32>);
        let (port, watchdog) = (fields.next().unwrap()?, fields.next().unwrap()?);
        let port = u16::try_from(port)?;
        let dir = fs::canonicalize(tmp.path().join("data"))?;
        let bin_dir = locate_bin_dir(None)?;
        assert!(pg_isready(&bin_dir, port));
        assert!(!processes_in(&dir).is_empty());
        // While the parent lives, the watchdog leaves the cluster alone.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(pg_isready(&bin_dir, port), "cluster stopped while its parent lives");
        assert!(process_start_time(watchdog).is_some(), "watchdog exited early");

        child.kill()?; // SIGKILL: no Drop, no stop()
        child.wait()?;
        assert_eq!(wait_for_no_processes(&dir, 15), Vec::<u32>::new());
        assert!(!dir.join(PID_FILE).exists());
        assert!(!pg_isready(&bin_dir, port));
        let deadline = Instant::now() + Duration::from_secs(5);
        while process_start_time(watchdog).is_some() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(process_start_time(watchdog), None, "watchdog still alive");
        Ok(())
    }

    /// The child's part in `watchdog_stops_cluster_when_parent_is_killed`:
    /// starts a cluster, reports its port and watchdog pid, then waits to be killed.
    async fn own_a_cluster_until_killed(dir: &Path) -> Result<()> {
        let pg = EmbeddedPostgres::start(&dir.join("data")).await?;
        let watchdog = pg.watchdog.as_ref().map_or(0, Child::id);
        fs::write(dir.join("report.tmp"), format!("{} {watchdog}", pg.port()))?;
        fs::rename(dir.join("report.tmp"), dir.join("report"))?;
        tokio::time::sleep(Duration::from_secs(120)).await;
        pg.stop().await
    }
}

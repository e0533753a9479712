//! The embedded cluster against the real PostgreSQL binaries.

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

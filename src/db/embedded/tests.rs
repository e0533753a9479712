//! The embedded cluster against the real PostgreSQL binaries.

use super::*;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::net::{Ipv4Addr, TcpListener};
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

/// Runs `sql` with the bin folder's psql on the cluster's URL; returns its unaligned output.
fn psql(pg: &EmbeddedPostgres, sql: &str) -> Result<String> {
    let output = pg_command(&pg.bin_dir, "psql", None)
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", pg.url(), "-c", sql])
        .output()?;
    if !output.status.success() {
        bail!("psql failed: {}", output_text(&output));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Whether `pg_isready -h host -p port` succeeds (`host` is a socket folder or an address).
fn pg_isready(bin_dir: &Path, host: impl AsRef<OsStr>, port: u16) -> bool {
    pg_command(bin_dir, "pg_isready", None)
        .arg("-h")
        .arg(host)
        .args(["-p", &port.to_string(), "-t", "3"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_tcp_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// The lines of `/proc/net/tcp` and `/proc/net/tcp6` (listening or connected TCP
/// sockets) that belong to the processes working in `dir`.
fn tcp_sockets_in(dir: &Path) -> Vec<String> {
    let inodes: HashSet<String> = processes_in(dir)
        .into_iter()
        .flat_map(|pid| fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().flatten())
        .filter_map(|fd| {
            let target = fs::read_link(fd.path()).ok()?;
            Some(target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .into_iter()
        .flat_map(|table| {
            fs::read_to_string(table)
                .unwrap_or_default()
                .lines()
                .skip(1)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|line| {
            line.split_whitespace()
                .nth(9)
                .is_some_and(|inode| inodes.contains(inode))
        })
        .collect()
}

/// For a test that cannot run here: fails with `why` when the `CI` variable is set (CI
/// must run every test), else prints why it is skipped.
fn skip(test: &str, why: &str) -> Result<()> {
    if std::env::var_os("CI").is_some_and(|value| !value.is_empty()) {
        bail!("{test} cannot run: {why} (CI is set, so this is a failure, not a skip)");
    }
    eprintln!("SKIPPED {test}: {why}");
    Ok(())
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

/// A fresh folder gets a cluster whose socket URL accepts connections (sqlx, as the
/// service connects, and psql), with no TCP port: only a socket in its private folder.
#[tokio::test]
async fn starts_fresh_cluster_that_accepts_connections_on_its_socket_only() -> Result<()> {
    let tmp = TestDir::new("fresh");
    let data = tmp.path().join("data");
    let pg = EmbeddedPostgres::start(&data).await?;
    let socket_dir = fs::canonicalize(&data)?.join("socket");
    assert_eq!(pg.socket_dir, socket_dir);
    assert_eq!(
        pg.url(),
        format!(
            "postgres://postgres@localhost/postgres?host={}&port={}&sslmode=disable",
            socket_dir.display(),
            pg.port()
        )
    );
    assert!(socket_dir.join(format!(".s.PGSQL.{}", pg.port())).exists());

    let mut conn = sqlx::PgConnection::connect(pg.url()).await?;
    let one: i32 = sqlx::query_scalar("select 1").fetch_one(&mut conn).await?;
    assert_eq!(one, 1);
    let listen: String = sqlx::query_scalar("show listen_addresses").fetch_one(&mut conn).await?;
    assert_eq!(listen, "", "the server listens on TCP");
    let sockets: String = sqlx::query_scalar("show unix_socket_directories")
        .fetch_one(&mut conn)
        .await?;
    assert_eq!(sockets, socket_dir.display().to_string());
    conn.close().await?;
    assert_eq!(
        tcp_sockets_in(&pg.data_dir),
        Vec::<String>::new(),
        "server processes hold TCP sockets"
    );

    assert!(pg_isready(&pg.bin_dir, &socket_dir, pg.port()), "pg_isready failed");
    assert_eq!(psql(&pg, "select 1")?, "1");
    assert_eq!(psql(&pg, "show server_encoding")?, "UTF8");
    for dir in [&data, &socket_dir] {
        let meta = fs::symlink_metadata(dir)?;
        assert!(meta.is_dir(), "{}", dir.display());
        assert_eq!(meta.mode() & 0o777, 0o700, "mode of {}", dir.display());
        assert_eq!(meta.uid(), pg.run_as.map_or(current_euid()?, |user| user.uid));
    }
    assert!(data.join(LOG_FILE).exists());
    pg.stop().await?;
    Ok(())
}

/// As root, the cluster trusts no other local user: `nobody` cannot connect with psql
/// through the URL root connects with, as the socket folder keeps it out.
#[tokio::test]
async fn other_local_users_cannot_connect() -> Result<()> {
    const TEST: &str = "other_local_users_cannot_connect";
    if current_euid()? != 0 {
        return skip(TEST, "it must run as root to switch to the `nobody` user");
    }
    let runuser = ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
        .into_iter()
        .map(Path::new)
        .find(|path| is_executable(path));
    let Some(runuser) = runuser else {
        return skip(TEST, "runuser (util-linux) is not installed");
    };
    if id_number(&["-u", "nobody"]).is_err() {
        return skip(TEST, "there is no `nobody` user");
    }
    let tmp = TestDir::new("nobody");
    let pg = EmbeddedPostgres::start(&tmp.path().join("data")).await?;
    let psql_path = pg.bin_dir.join("psql");
    if !is_executable(&psql_path) {
        pg.stop().await?;
        return skip(TEST, &format!("there is no {}", psql_path.display()));
    }
    assert_eq!(psql(&pg, "select 1")?, "1", "root connects");

    let mut cmd = Command::new(runuser);
    for (name, _) in std::env::vars_os().filter(|(name, _)| name.as_encoded_bytes().starts_with(b"PG")) {
        cmd.env_remove(name);
    }
    let output = cmd
        .args(["-u", "nobody", "--"])
        .arg(&psql_path)
        .args(["-X", "-A", "-t", "-d", pg.url(), "-c", "select 1"])
        .current_dir("/")
        .stdin(Stdio::null())
        .output()?;
    pg.stop().await?;
    let text = output_text(&output);
    assert!(!output.status.success(), "`nobody` connected: {text}");
    assert!(text.contains("Permission denied"), "{text}");
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
    let socket_dir = pg.socket_dir.clone();
    pg.stop().await?;
    let version_mtime = fs::metadata(data.join("PG_VERSION"))?.modified()?;
    // A socket folder loosened in between is made private again.
    fs::set_permissions(&socket_dir, fs::Permissions::from_mode(0o755))?;

    let pg = EmbeddedPostgres::start(&data).await?;
    assert_eq!(psql(&pg, "select note from marker")?, "kept");
    assert_eq!(fs::metadata(data.join("PG_VERSION"))?.modified()?, version_mtime);
    assert!(pg_isready(&pg.bin_dir, &socket_dir, pg.port()));
    assert_eq!(fs::metadata(&socket_dir)?.mode() & 0o777, 0o700);
    pg.stop().await?;
    Ok(())
}

/// After stop(), no process works in the data folder and the watchdog is gone.
#[tokio::test]
async fn stop_leaves_no_process_behind() -> Result<()> {
    let tmp = TestDir::new("stop");
    let data = tmp.path().join("data");
    let pg = EmbeddedPostgres::start(&data).await?;
    let (dir, socket_dir, port) = (pg.data_dir.clone(), pg.socket_dir.clone(), pg.port());
    let watchdog = pg.watchdog.as_ref().map(Child::id).expect("watchdog");
    assert!(!processes_in(&dir).is_empty(), "no server process found");
    pg.stop().await?;
    assert_eq!(processes_in(&dir), Vec::<u32>::new());
    assert!(!dir.join(PID_FILE).exists());
    assert!(!dir.join(OWNER_FILE).exists());
    assert_eq!(process_start_time(watchdog), None, "watchdog still alive");
    assert!(!pg_isready(&locate_bin_dir(None)?, &socket_dir, port));
    Ok(())
}

/// Dropping without stop() stops the cluster too.
#[tokio::test]
async fn drop_without_stop_stops_cluster() -> Result<()> {
    let tmp = TestDir::new("drop");
    let data = tmp.path().join("data");
    let pg = EmbeddedPostgres::start(&data).await?;
    let (dir, bin_dir, socket_dir, port) = (
        pg.data_dir.clone(),
        pg.bin_dir.clone(),
        pg.socket_dir.clone(),
        pg.port(),
    );
    drop(pg);
    assert_eq!(processes_in(&dir), Vec::<u32>::new());
    assert!(!dir.join(PID_FILE).exists());
    assert!(!pg_isready(&bin_dir, &socket_dir, port));
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

/// The URL names the socket folder percent-encoded, and sqlx reads it back as a unix
/// socket; a socket path too long for the kernel is refused up front.
#[test]
fn socket_url_selects_the_socket_and_refuses_overlong_paths() -> Result<()> {
    let url = socket_url(Path::new("/srv/a b&c%/socket"), 5432)?;
    assert_eq!(
        url,
        "postgres://postgres@localhost/postgres?host=/srv/a%20b%26c%25/socket&port=5432&sslmode=disable"
    );
    let options: sqlx::postgres::PgConnectOptions = url.parse()?;
    assert_eq!(options.get_socket(), Some(&PathBuf::from("/srv/a b&c%/socket")));
    assert_eq!(options.get_port(), 5432);
    assert_eq!(options.get_username(), SUPERUSER);
    assert_eq!(options.get_database(), Some(DATABASE));

    let long = PathBuf::from(format!("/{}/socket", "x".repeat(100)));
    let err = socket_url(&long, 5432).unwrap_err().to_string();
    assert!(err.contains("shorter path"), "{err}");
    assert_eq!(
        socket_dir_option(Path::new("/srv/data/socket")),
        "-c 'unix_socket_directories=/srv/data/socket'"
    );
    Ok(())
}

/// A data folder whose path holds characters special to the shell, to PostgreSQL's
/// list syntax and to URLs works all the same. (Only through sqlx: libpq's tools take
/// the comma for a separator of hosts.)
#[tokio::test]
async fn data_folder_with_odd_characters_works() -> Result<()> {
    let tmp = TestDir::new("odd");
    let data = tmp.path().join("it's, odd & 100%").join("data");
    fs::create_dir_all(data.parent().unwrap())?;
    fs::set_permissions(data.parent().unwrap(), fs::Permissions::from_mode(0o755))?;
    let pg = EmbeddedPostgres::start(&data).await?;
    let mut conn = sqlx::PgConnection::connect(pg.url()).await?;
    let sockets: String = sqlx::query_scalar("show unix_socket_directories")
        .fetch_one(&mut conn)
        .await?;
    assert_eq!(sockets, format!("\"{}\"", pg.socket_dir.display()));
    conn.close().await?;
    pg.stop().await?;
    Ok(())
}

/// A cluster left running by a crashed run (no live owner) is stopped and replaced. The
/// leftover is one of an earlier version: on TCP at 127.0.0.1, with no socket folder;
/// its replacement listens on the socket only.
#[tokio::test]
async fn leftover_cluster_from_crashed_run_is_replaced() -> Result<()> {
    let tmp = TestDir::new("leftover");
    let data = tmp.path().join("data");
    let pg = EmbeddedPostgres::start(&data).await?;
    let (bin_dir, dir, socket_dir) = (pg.bin_dir.clone(), pg.data_dir.clone(), pg.socket_dir.clone());
    pg.stop().await?;
    fs::remove_dir_all(&socket_dir)?;

    let old_port = free_tcp_port()?;
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
    assert!(pg_isready(&bin_dir, "127.0.0.1", old_port));
    assert!(
        !tcp_sockets_in(&dir).is_empty(),
        "the leftover's TCP socket is not seen"
    );

    let pg = EmbeddedPostgres::start(&data).await?;
    assert!(!works_in(old_pid, &dir), "the leftover postmaster still runs");
    assert!(!pg_isready(&bin_dir, "127.0.0.1", old_port));
    assert_eq!(psql(&pg, "select 1")?, "1");
    assert_eq!(psql(&pg, "show listen_addresses")?, "");
    assert_eq!(tcp_sockets_in(&dir), Vec::<String>::new());
    assert_eq!(fs::metadata(&socket_dir)?.mode() & 0o777, 0o700);
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
    let lock = dir.join(SOCKET_DIR).join(format!(".s.PGSQL.{PORT}.lock"));
    fs::write(&lock, format!("{}\n{}\n", sleeper.id(), dir.display()))?;
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
        return skip(
            "unreachable_data_dir_names_the_blocking_folder",
            "only root hands the data folder to another user",
        );
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
    let socket_dir = dir.join(SOCKET_DIR);
    let bin_dir = locate_bin_dir(None)?;
    assert!(pg_isready(&bin_dir, &socket_dir, port));
    assert!(!processes_in(&dir).is_empty());
    // While the parent lives, the watchdog leaves the cluster alone.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        pg_isready(&bin_dir, &socket_dir, port),
        "cluster stopped while its parent lives"
    );
    assert!(process_start_time(watchdog).is_some(), "watchdog exited early");

    child.kill()?; // SIGKILL: no Drop, no stop()
    child.wait()?;
    assert_eq!(wait_for_no_processes(&dir, 15), Vec::<u32>::new());
    assert!(!dir.join(PID_FILE).exists());
    assert!(!pg_isready(&bin_dir, &socket_dir, port));
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

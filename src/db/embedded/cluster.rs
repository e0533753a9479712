//! Running the PostgreSQL programs: initdb, pg_ctl start and stop, the socket URL,
//! leftovers of earlier runs, the owner file and the server log.

use super::*;

/// The server log, inside the data folder.
pub(super) const LOG_FILE: &str = "server.log";
/// Where a server log grown past [`MAX_LOG_BYTES`] is moved at start.
pub(super) const OLD_LOG_FILE: &str = "server.log.old";
/// Size past which the server log is rotated at start.
pub(super) const MAX_LOG_BYTES: u64 = 10 * 1024 * 1024;
/// Lines of the server log quoted in errors.
pub(super) const LOG_TAIL_LINES: usize = 25;
/// The postmaster's lock file, inside the data folder.
pub(super) const PID_FILE: &str = "postmaster.pid";
/// Names the process (pid and start time) that started the running cluster.
pub(super) const OWNER_FILE: &str = "embedded-postgres.owner";
/// How long `pg_ctl` waits for a start or a stop, in seconds.
pub(super) const PG_CTL_WAIT_SECS: &str = "30";
/// The longest unix socket path the kernel takes (`sun_path` holds 108 bytes with the NUL).
pub(super) const MAX_SOCKET_PATH: usize = 107;
/// A command for `bin_dir/tool`, run as `run_as` (or us) from `/`, with the libpq `PG*`
/// variables of our environment removed and `LC_ALL=C`.
pub(super) fn pg_command(bin_dir: &Path, tool: &str, run_as: Option<RunAs>) -> Command {
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
pub(super) async fn run(cmd: Command) -> Result<Output> {
    let program = PathBuf::from(cmd.get_program());
    tokio::process::Command::from(cmd)
        .output()
        .await
        .with_context(|| format!("could not run {}", program.display()))
}

/// A command's stdout and stderr, trimmed to their last 4000 characters.
pub(super) fn output_text(output: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = text.trim();
    let skip = text.chars().count().saturating_sub(4000);
    text.chars().skip(skip).collect()
}

/// Creates a cluster in the empty `data_dir`: superuser `postgres`, trust auth (only
/// users who can enter the private socket folder reach the server), UTF8.
pub(super) async fn initdb(bin_dir: &Path, data_dir: &Path, run_as: Option<RunAs>) -> Result<()> {
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
pub(super) async fn check_cluster_version(bin_dir: &Path, data_dir: &Path, run_as: Option<RunAs>) -> Result<()> {
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
pub(super) async fn clear_leftover(bin_dir: &Path, data_dir: &Path, run_as: Option<RunAs>) -> Result<()> {
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
    while works_in(pid, data_dir) {
        if Instant::now() >= deadline {
            bail!(
                "the PostgreSQL cluster left running in {} by an earlier run (pid {pid}) did not exit",
                data_dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The URL of the server listening on `<socket_dir>/.s.PGSQL.<port>`, in a form both
/// sqlx and libpq read as a unix socket: an absolute path in the `host` parameter.
/// TLS is off: it would add nothing on a local socket. Fails if the path is not UTF-8
/// or too long for a unix socket.
pub(super) fn socket_url(socket_dir: &Path, port: u16) -> Result<String> {
    let dir = socket_dir
        .to_str()
        .with_context(|| format!("the data folder path {} is not UTF-8", socket_dir.display()))?;
    let socket = format!("{dir}/.s.PGSQL.{port}");
    if socket.len() > MAX_SOCKET_PATH {
        bail!(
            "the PostgreSQL socket path {socket} is longer than the {MAX_SOCKET_PATH} bytes a unix \
             socket allows: choose a data folder with a shorter path"
        );
    }
    let mut host = String::new();
    for byte in dir.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'.' | b'_' | b'~' => host.push(byte as char),
            _ => host.push_str(&format!("%{byte:02X}")),
        }
    }
    Ok(format!(
        "postgres://{SUPERUSER}@localhost/{DATABASE}?host={host}&port={port}&sslmode=disable"
    ))
}

/// `-c unix_socket_directories=<socket_dir>` for `pg_ctl -o`, whose text a shell splits:
/// double-quoted for PostgreSQL's list syntax when needed, then single-quoted for the shell.
pub(super) fn socket_dir_option(socket_dir: &Path) -> String {
    let dir = socket_dir.display().to_string();
    let listed = if dir.contains(|c: char| c == ',' || c == '"' || c.is_whitespace()) {
        format!("\"{}\"", dir.replace('"', "\"\""))
    } else {
        dir
    };
    format!("-c 'unix_socket_directories={}'", listed.replace('\'', r"'\''"))
}

/// Runs `pg_ctl start` on `port`, listening on a unix socket in `socket_dir` only (no TCP).
pub(super) async fn pg_ctl_start(
    bin_dir: &Path,
    data_dir: &Path,
    socket_dir: &Path,
    run_as: Option<RunAs>,
    port: u16,
) -> Result<()> {
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
            "-p {port} -c listen_addresses='' {}",
            socket_dir_option(socket_dir)
        ));
    let output = run(cmd).await?;
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
    bail!(
        "could not start PostgreSQL in {} with its socket in {}: {}\n--- end of {} ---\n{tail}",
        data_dir.display(),
        socket_dir.display(),
        output_text(&output),
        log.display()
    )
}

/// `pg_ctl stop` in `mode` (`fast` or `immediate`), waiting for the server to exit.
pub(super) fn pg_ctl_stop_command(bin_dir: &Path, data_dir: &Path, run_as: Option<RunAs>, mode: &str) -> Command {
    let mut cmd = pg_command(bin_dir, "pg_ctl", run_as);
    cmd.arg("stop")
        .arg("-D")
        .arg(data_dir)
        .args(["-m", mode, "-w", "-t", PG_CTL_WAIT_SECS]);
    cmd
}

/// Judges a `pg_ctl stop`: fine if it succeeded or no server runs in `data_dir` anymore.
pub(super) fn stop_outcome(data_dir: &Path, mode: &str, output: Result<Output>) -> Result<()> {
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
pub(super) async fn shutdown(bin_dir: &Path, data_dir: &Path, run_as: Option<RunAs>) -> Result<()> {
    let fast = run(pg_ctl_stop_command(bin_dir, data_dir, run_as, "fast")).await;
    let Err(err) = stop_outcome(data_dir, "fast", fast) else {
        return Ok(());
    };
    warn!(error = %err, "fast shutdown failed; trying an immediate shutdown");
    let immediate = run(pg_ctl_stop_command(bin_dir, data_dir, run_as, "immediate")).await;
    stop_outcome(data_dir, "immediate", immediate)
}

/// [`shutdown`], blocking the calling thread (for `Drop`).
pub(super) fn shutdown_blocking(bin_dir: &Path, data_dir: &Path, run_as: Option<RunAs>) -> Result<()> {
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

/// The pid of the postmaster running in `data_dir`, per its `postmaster.pid`, if that
/// process is alive and really works in `data_dir`.
pub(super) fn postmaster_running(data_dir: &Path) -> Option<u32> {
    let text = fs::read_to_string(data_dir.join(PID_FILE)).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    works_in(pid, data_dir).then_some(pid)
}

/// Whether process `pid` is alive with `dir` as its working folder, as the postmaster
/// and every server process have their data folder.
pub(super) fn works_in(pid: u32, dir: &Path) -> bool {
    fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir)
}

/// The start time (clock ticks since boot) of live process `pid`; `None` if it is gone
/// or a zombie.
pub(super) fn process_start_time(pid: u32) -> Option<u64> {
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
pub(super) fn write_owner_file(data_dir: &Path) {
    let pid = std::process::id();
    let start = process_start_time(pid).unwrap_or(0);
    if let Err(err) = fs::write(data_dir.join(OWNER_FILE), format!("{pid} {start}\n")) {
        warn!(error = %err, "could not write {OWNER_FILE} in {}", data_dir.display());
    }
}

/// Removes the owner record once the cluster is stopped.
pub(super) fn remove_owner_file(data_dir: &Path) {
    let _ = fs::remove_file(data_dir.join(OWNER_FILE));
}

/// The pid of the process recorded as running the cluster, if it is still alive (same
/// pid and start time, so a reused pid does not count).
pub(super) fn live_owner(data_dir: &Path) -> Option<u32> {
    let text = fs::read_to_string(data_dir.join(OWNER_FILE)).ok()?;
    let mut fields = text.split_whitespace();
    let pid: u32 = fields.next()?.parse().ok()?;
    let start: u64 = fields.next()?.parse().ok()?;
    (process_start_time(pid) == Some(start)).then_some(pid)
}

/// Moves a server log grown past [`MAX_LOG_BYTES`] to [`OLD_LOG_FILE`].
pub(super) fn rotate_log(data_dir: &Path) {
    let log = data_dir.join(LOG_FILE);
    if fs::metadata(&log).is_ok_and(|meta| meta.len() > MAX_LOG_BYTES)
        && let Err(err) = fs::rename(&log, data_dir.join(OLD_LOG_FILE))
    {
        warn!(error = %err, "could not rotate {}", log.display());
    }
}

/// The last [`LOG_TAIL_LINES`] lines written to `log` after byte `offset`.
pub(super) fn log_tail(log: &Path, offset: u64) -> String {
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

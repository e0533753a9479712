//! The watchdog that stops the cluster when this process dies, even by SIGKILL.

use super::*;

/// The watchdog, run by `sh -c` with `$1` = our pid, `$2` = the data folder and `$3` =
/// the owner file (written once the server is up).
///
/// While we live (and are still its parent) it polls once a second, and exits once the
/// cluster is gone after it was seen running or the owner file was written (stopped
/// normally, by us or by someone else). When we are gone, it sends SIGINT
/// (fast shutdown) to the postmaster named in `postmaster.pid`, if that process really
/// works in our data folder, waiting up to 10 s for a server that is still starting.
pub(super) const WATCHDOG_SCRIPT: &str = r#"
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

/// Starts the watchdog (see [`WATCHDOG_SCRIPT`]) as our own user, in its own process
/// group so that a terminal's Ctrl-C does not reach it.
pub(super) fn spawn_watchdog(data_dir: &Path) -> Result<Child> {
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
pub(super) fn stop_watchdog(mut watchdog: Child) {
    let _ = watchdog.kill();
    let _ = watchdog.wait();
}

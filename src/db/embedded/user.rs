//! Which system user runs the cluster, and the folders it must own: the data folder
//! and the private socket folder in it.

use super::*;

/// The system user the server runs as when this process runs as root.
pub(super) const OS_USER: &str = "postgres";
/// The system user the PostgreSQL programs run as, when it is not this process's user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RunAs {
    /// User id.
    pub(super) uid: u32,
    /// Primary group id.
    pub(super) gid: u32,
}

/// This process's effective user id.
pub(super) fn current_euid() -> Result<u32> {
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
pub(super) fn id_number(args: &[&str]) -> Result<u32> {
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
pub(super) fn run_as_for(euid: u32) -> Result<Option<RunAs>> {
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
pub(super) fn prepare_data_dir(data_dir: &Path, euid: u32, run_as: Option<RunAs>) -> Result<PathBuf> {
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

/// Makes `socket_dir` a folder of mode 0700 owned by the server's user, with no socket
/// or lock file for `port` left by a server that died (call it once no server runs).
///
/// The work is done as that user, as the folder is inside its data folder: root must not
/// follow a link planted there. The result is then checked from here.
pub(super) fn prepare_socket_dir(socket_dir: &Path, port: u16, euid: u32, run_as: Option<RunAs>) -> Result<()> {
    let script = r#"umask 077 && mkdir -p "$1" && chmod 700 "$1" && rm -f "$1/.s.PGSQL.$2" "$1/.s.PGSQL.$2.lock""#;
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", script, "sh"])
        .arg(socket_dir)
        .arg(port.to_string())
        .current_dir("/")
        .stdin(Stdio::null());
    if let Some(user) = run_as {
        cmd.uid(user.uid).gid(user.gid);
    }
    let output = cmd.output().context("could not run /bin/sh")?;
    if !output.status.success() {
        bail!(
            "could not prepare the socket folder {}: {}",
            socket_dir.display(),
            output_text(&output)
        );
    }
    let meta =
        fs::symlink_metadata(socket_dir).with_context(|| format!("could not inspect {}", socket_dir.display()))?;
    let owner = run_as.map_or(euid, |user| user.uid);
    if !meta.is_dir() || meta.uid() != owner || meta.mode() & 0o777 != 0o700 {
        bail!(
            "{} must be a folder of mode 0700 owned by uid {owner} (the server's user): \
             remove it, and it is made again at the next start",
            socket_dir.display()
        );
    }
    Ok(())
}

/// Fails, naming the first folder on the way that blocks it, unless `user` can enter `dir`.
pub(super) fn check_reachable(dir: &Path, user: RunAs) -> Result<()> {
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
pub(super) fn can_enter(dir: &Path, user: RunAs) -> Result<bool> {
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

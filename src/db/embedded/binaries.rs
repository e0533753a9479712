//! Finding the PostgreSQL server binaries and their version.

use super::*;

/// Programs the binary folder must hold.
pub(super) const REQUIRED_TOOLS: [&str; 3] = ["initdb", "pg_ctl", "postgres"];
/// Debian's and Ubuntu's home of the versioned PostgreSQL binary folders.
pub(super) const DEBIAN_PG_ROOT: &str = "/usr/lib/postgresql";

/// Finds the folder holding the PostgreSQL server binaries.
///
/// `explicit` (the `PG_BIN` variable) wins and must hold them; otherwise tries
/// `pg_config --bindir`, the newest `/usr/lib/postgresql/<version>/bin`, then the folder
/// an `initdb` on `PATH` really lives in (symlinks resolved). Fails with a message telling
/// the user to install PostgreSQL or set `DATABASE_URL`.
pub(super) fn locate_bin_dir(explicit: Option<PathBuf>) -> Result<PathBuf> {
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
pub(super) fn pg_config_bin_dir() -> Option<PathBuf> {
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
pub(super) fn newest_versioned_bin_dir(root: &Path) -> Option<PathBuf> {
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
pub(super) fn bin_dir_on_path() -> Option<PathBuf> {
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
pub(super) fn usable_bin_dir(dir: &Path) -> Option<PathBuf> {
    REQUIRED_TOOLS
        .iter()
        .all(|tool| is_executable(&dir.join(tool)))
        .then(|| fs::canonicalize(dir).ok())
        .flatten()
}

/// Parses a version folder name such as `15` or `9.6` into its numbers.
pub(super) fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// The major version in `postgres --version` output (`15`, or `9.6` before 10).
pub(super) fn major_version(version_output: &str) -> Option<String> {
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
pub(super) fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.mode() & 0o111 != 0)
}

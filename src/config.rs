//! The command line and configuration. Every setting is a flag of `serve`
//! and an environment variable of the same name in capitals; a bad value
//! stops start-up with a message naming it.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum, builder::TypedValueParser};

/// `ecommerce-api`: the inventory and order API.
#[derive(Debug, Parser)]
#[command(name = "ecommerce-api", version, about)]
pub struct Cli {
    /// Log lines as JSON (one object per line) or human-readable text.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Json, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
// Parsed once at start-up: the size of the value does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Apply migrations, then serve the API until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate(DbArgs),
    /// Work on the audit trail.
    Audit {
        /// What to do with it.
        #[command(subcommand)]
        command: AuditCommand,
    },
}

/// `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Drop the audit trail's monthly partitions that end on or before a
    /// date, whole (the rows within a kept month stay append-only).
    Prune {
        /// The date (YYYY-MM-DD, UTC): months ending on or before it go.
        #[arg(long)]
        before: chrono::NaiveDate,
        /// The database.
        #[command(flatten)]
        db: DbArgs,
    },
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Pretty,
}

/// Where the database is.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// PostgreSQL URL. When absent, an embedded PostgreSQL is started from
    /// the binaries on this machine, with its data in DATA_DIR.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Data folder of the embedded PostgreSQL (kept between runs).
    #[arg(long, env = "DATA_DIR", default_value = ".data/postgres")]
    pub data_dir: PathBuf,
    /// Largest number of database connections this instance opens.
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_max_connections: u32,
    /// Longest a statement may run on the server (`statement_timeout`), in
    /// seconds: at least 1, and below REQUEST_TIMEOUT_SECS, so that a
    /// statement ends while its request can still learn how.
    #[arg(long, env = "DB_STATEMENT_TIMEOUT_SECS", default_value_t = 25,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub db_statement_timeout_secs: u64,
    /// Longest a statement may wait for a lock (`lock_timeout`), in seconds;
    /// 0 turns the bound off.
    #[arg(long, env = "DB_LOCK_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub db_lock_timeout_secs: u64,
    /// What DATABASE_URL names: PostgreSQL itself (`none`), or a pooler in
    /// transaction mode such as PgBouncer (`transaction`). Through a pooler
    /// no statement is prepared by name, every statement runs in an explicit
    /// transaction that sets the timeouts above, and `serve` checks that
    /// the migrations are applied instead of applying them (`migrate` needs
    /// PostgreSQL itself).
    #[arg(long, env = "DB_POOLER", value_enum, default_value_t = Pooler::None)]
    pub db_pooler: Pooler,
}

/// What is between the service and PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Pooler {
    /// Nothing: DATABASE_URL names PostgreSQL.
    None,
    /// A pooler in transaction mode (PgBouncer's `pool_mode = transaction`).
    Transaction,
}

/// `serve`'s options.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The database.
    #[command(flatten)]
    pub db: DbArgs,
    /// Redis URL. When set, the rate limit and cache invalidation are shared
    /// by every instance using this Redis; when absent they are per process.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// Runtime settings.
    #[command(flatten)]
    pub settings: Settings,
}

impl ServeArgs {
    /// Checks what no single setting can: a statement must end before its
    /// request's deadline, or a write could commit after its client was
    /// answered.
    pub fn check(&self) -> anyhow::Result<()> {
        let (statement, request) = (self.db.db_statement_timeout_secs, self.settings.request_timeout_secs);
        anyhow::ensure!(
            statement < request,
            "DB_STATEMENT_TIMEOUT_SECS ({statement}) must be below REQUEST_TIMEOUT_SECS ({request}): \
             a statement must end before its request's deadline"
        );
        Ok(())
    }
}

/// Settings the running service reads.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct Settings {
    /// Requests allowed per manager in any rolling window.
    #[arg(long, env = "RATE_LIMIT_MAX", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_max: u32,
    /// The rolling window, in seconds.
    #[arg(long, env = "RATE_LIMIT_WINDOW_SECS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub rate_limit_window_secs: u64,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "BODY_LIMIT_BYTES", default_value_t = 1_048_576,
          value_parser = clap::value_parser!(u64).range(1024..=67_108_864).map(|n| n as usize))]
    pub body_limit_bytes: usize,
    /// Proxies (CIDRs, comma-separated) whose `Forwarded` /
    /// `X-Forwarded-For` headers name the client: only a request from one of
    /// them is taken to come from the rightmost hop that is not itself one.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Origins (comma-separated, e.g. `https://shop.example`) allowed to call
    /// the API from a browser: they get CORS headers and preflights.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Vec<String>,
    /// A port of its own for `/metrics` (on HOST), so that it need not be
    /// public; absent, `/metrics` is served on PORT.
    #[arg(long, env = "ADMIN_PORT")]
    pub admin_port: Option<u16>,
    /// Requests naming no valid manager accepted per client address in each
    /// rate-limit window, per instance; beyond it they are answered 429 and
    /// not audited.
    #[arg(long, env = "ANON_RATE_LIMIT_MAX", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub anon_rate_limit_max: u32,
    /// Seconds a request may take before it is answered 504.
    #[arg(long, env = "REQUEST_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_timeout_secs: u64,
    /// Seconds a cached product list may live (writes invalidate it sooner).
    #[arg(long, env = "CACHE_TTL_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub cache_ttl_secs: u64,
    /// Most bytes of product lists kept in the cache (0: no cache).
    #[arg(long, env = "CACHE_MAX_BYTES", default_value_t = 67_108_864)]
    pub cache_max_bytes: u64,
    /// Most managers whose sliding logs this process keeps (least recently
    /// used forgotten first).
    #[arg(long, env = "RATE_LIMIT_MAX_MANAGERS", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub rate_limit_max_managers: u64,
    /// Seconds a client has to send its request headers.
    #[arg(long, env = "HEADER_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout_secs: u64,
    /// Seconds an idle keep-alive connection is kept open.
    #[arg(long, env = "IDLE_TIMEOUT_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub idle_timeout_secs: u64,
    /// Most connections served at once; more wait to be accepted.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 4096,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000).map(|n| n as usize))]
    pub max_connections: usize,
    /// Audit records of requests in flight or waiting to be written.
    #[arg(long, env = "AUDIT_QUEUE_CAPACITY", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000).map(|n| n as usize))]
    pub audit_queue_capacity: usize,
    /// Milliseconds a request waits for room in a full audit queue before it
    /// is answered 503 (its record then goes to the spill folder).
    #[arg(long, env = "AUDIT_QUEUE_WAIT_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub audit_queue_wait_ms: u64,
    /// Folder where audit records that found the queue full are kept until
    /// the database takes them.
    #[arg(long, env = "AUDIT_SPILL_DIR", default_value = ".data/audit-spill")]
    pub audit_spill_dir: PathBuf,
    /// Most bytes the spill folder may hold; beyond it a request refused for
    /// a full queue is still answered 503, and its record is in the process
    /// log only.
    #[arg(long, env = "AUDIT_SPILL_MAX_BYTES", default_value_t = 1_073_741_824)]
    pub audit_spill_max_bytes: u64,
    /// Most audit records written by one statement.
    #[arg(long, env = "AUDIT_BATCH_SIZE", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(1..=10_000).map(|n| n as usize))]
    pub audit_batch_size: usize,
    /// Prefix of every Redis key this service writes.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "ecommerce:")]
    pub redis_key_prefix: String,
    /// Who may call `/api/` (see [`crate::auth`]).
    #[command(flatten)]
    pub auth: AuthSettings,
    /// Days events (and webhook delivery records) are kept at least.
    #[arg(long, env = "EVENT_RETENTION_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub event_retention_days: u32,
    /// Address ranges (CIDRs, comma-separated) webhooks may be sent to even
    /// though they are loopback, private or otherwise internal (development
    /// and tests).
    #[arg(long, env = "WEBHOOK_ALLOWED_NETWORKS", value_delimiter = ',',
          value_parser = crate::domain::address::Network::parse)]
    pub webhook_allowed_networks: Vec<crate::domain::address::Network>,
    /// Seconds one webhook delivery attempt may take (resolving, connecting,
    /// sending and the answer) before it fails as timed out.
    #[arg(long, env = "WEBHOOK_TIMEOUT_SECS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub webhook_timeout_secs: u64,
    /// Seconds between a failed webhook delivery attempt and the next
    /// (comma-separated, one per retry, each ±20% jitter); after the last
    /// retry the delivery is given up.
    #[arg(long, env = "WEBHOOK_RETRY_SCHEDULE_SECS", value_delimiter = ',',
          default_value = "5,300,1800,7200,18000,36000,36000",
          value_parser = clap::value_parser!(u64).range(0..=604_800))]
    pub webhook_retry_schedule_secs: Vec<u64>,
    /// Whether this instance runs the webhook delivery worker (`false`: it
    /// serves the API and leaves delivering to other instances).
    #[arg(long, env = "WEBHOOK_DELIVERY", default_value_t = true, action = clap::ArgAction::Set)]
    pub webhook_delivery: bool,
    /// How long every delivery attempt to an endpoint may fail, with no
    /// success between, before the endpoint is disabled (hours, decimals
    /// allowed).
    #[arg(long = "webhook-disable-after-hours", env = "WEBHOOK_DISABLE_AFTER_HOURS",
          default_value = "120", value_parser = parse_hours)]
    pub webhook_disable_after: Duration,
    /// Seconds a claimed webhook delivery is held before another instance
    /// may take it (renewed every third of it while the attempt runs).
    #[arg(long, env = "WEBHOOK_LEASE_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(3..=3600))]
    pub webhook_lease_secs: u32,
}

/// Hours, decimals allowed, more than 0 and at most ten years, as a
/// duration (clap has no range check for decimals).
fn parse_hours(text: &str) -> Result<Duration, String> {
    let hours: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("not a number of hours: {text}"))?;
    if !(hours > 0.0 && hours <= 87_600.0) {
        return Err(format!("hours must be more than 0 and at most 87600: {text}"));
    }
    Ok(Duration::from_secs_f64(hours * 3600.0))
}

impl Default for Settings {
    /// The defaults `serve` has with no flags or variables (a test keeps the
    /// two in step).
    fn default() -> Self {
        Self {
            rate_limit_max: 100,
            rate_limit_window_secs: 3600,
            anon_rate_limit_max: 1000,
            trusted_proxies: Vec::new(),
            admin_port: None,
            cors_allowed_origins: Vec::new(),
            body_limit_bytes: 1_048_576,
            request_timeout_secs: 30,
            cache_ttl_secs: 60,
            cache_max_bytes: 67_108_864,
            rate_limit_max_managers: 100_000,
            header_timeout_secs: 10,
            idle_timeout_secs: 60,
            max_connections: 4096,
            audit_queue_capacity: 10_000,
            audit_queue_wait_ms: 1000,
            audit_spill_dir: PathBuf::from(".data/audit-spill"),
            audit_spill_max_bytes: 1_073_741_824,
            audit_batch_size: 500,
            redis_key_prefix: "ecommerce:".into(),
            auth: AuthSettings::default(),
            event_retention_days: 30,
            webhook_allowed_networks: Vec::new(),
            webhook_timeout_secs: 15,
            webhook_retry_schedule_secs: vec![5, 300, 1800, 7200, 18000, 36000, 36000],
            webhook_delivery: true,
            webhook_disable_after: Duration::from_secs(120 * 3600),
            webhook_lease_secs: 30,
        }
    }
}

/// Optional identity: with `AUTH_MODE=jwt` every `/api/` request needs a
/// bearer JWT for the manager it names (see [`crate::auth`]).
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct AuthSettings {
    /// `none`: the service trusts the `manager_id` a request names (access
    /// control is upstream); `jwt`: every `/api/` request needs
    /// `Authorization: Bearer <JWT>` for that manager.
    #[arg(long, env = "AUTH_MODE", value_enum, default_value_t = AuthMode::None)]
    pub auth_mode: AuthMode,
    /// With `AUTH_MODE=jwt`: a JWK Set file of the public keys tokens are
    /// signed with (RS256, ES256 or EdDSA keys).
    #[arg(long, env = "AUTH_JWKS_FILE")]
    pub auth_jwks_file: Option<PathBuf>,
    /// With `AUTH_MODE=jwt`: the HS256 secret tokens are signed with
    /// (at least 32 bytes), instead of AUTH_JWKS_FILE.
    #[arg(long, env = "AUTH_HS256_SECRET", hide_env_values = true)]
    pub auth_hs256_secret: Option<Secret>,
    /// A token's `iss` must be this, when set.
    #[arg(long, env = "AUTH_ISSUER")]
    pub auth_issuer: Option<String>,
    /// A token's `aud` must include this, when set.
    #[arg(long, env = "AUTH_AUDIENCE")]
    pub auth_audience: Option<String>,
    /// The claim that names the caller's manager.
    #[arg(long, env = "AUTH_MANAGER_CLAIM", default_value = "sub")]
    pub auth_manager_claim: String,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            auth_mode: AuthMode::None,
            auth_jwks_file: None,
            auth_hs256_secret: None,
            auth_issuer: None,
            auth_audience: None,
            auth_manager_claim: "sub".into(),
        }
    }
}

/// How callers are identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// Not at all: a request acts for the manager it names.
    None,
    /// By a bearer JWT.
    Jwt,
}

/// A setting that must not be printed: its `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_owned()))
    }
}

impl From<&str> for Secret {
    fn from(text: &str) -> Self {
        Self(text.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ecommerce-api").chain(args.iter().copied()))
    }

    #[test]
    fn the_readme_documents_every_setting_with_its_default() {
        use clap::CommandFactory;

        let readme = include_str!("../README.md");
        let cli = Cli::command();
        let serve = cli.find_subcommand("serve").expect("serve");
        let args = cli.get_arguments().chain(serve.get_arguments());
        let mut documented = 0;
        for arg in args {
            let Some(env) = arg.get_env().and_then(|e| e.to_str()) else {
                continue;
            };
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| `{env}` |")))
                .unwrap_or_else(|| panic!("README's configuration table lacks {env}"));
            if let Some(default) = arg.get_default_values().first().and_then(|d| d.to_str()) {
                assert!(
                    row.contains(&format!("| `{default}` |")),
                    "README's default for {env}: {row}"
                );
            }
            documented += 1;
        }
        assert!(documented >= 25, "only {documented} settings found");
    }

    #[test]
    fn defaults_match_the_declared_ones() {
        let Command::Serve(serve) = parse(&["serve"]).unwrap().command else {
            panic!("expected serve")
        };
        assert_eq!(serve.settings, Settings::default());
        assert_eq!((serve.host.as_str(), serve.port), ("127.0.0.1", 8080));
        assert_eq!(serve.db.data_dir, PathBuf::from(".data/postgres"));
    }

    #[test]
    fn flags_override_defaults() {
        let cli = parse(&[
            "--log-format",
            "pretty",
            "serve",
            "--port",
            "0",
            "--rate-limit-max",
            "5",
        ])
        .unwrap();
        assert_eq!(cli.log_format, LogFormat::Pretty);
        let Command::Serve(serve) = cli.command else {
            panic!("expected serve")
        };
        assert_eq!((serve.port, serve.settings.rate_limit_max), (0, 5));
        assert!(matches!(parse(&["migrate"]).unwrap().command, Command::Migrate(_)));
    }

    #[test]
    fn webhook_disable_after_takes_decimal_hours() {
        assert_eq!(parse_hours("0.5"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_hours("120"), Ok(Duration::from_secs(432_000)));
        for bad in ["-1", "0", "NaN", "inf", "87601", ""] {
            assert!(parse_hours(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_values_name_the_setting() {
        for (args, name) in [
            (&["serve", "--port", "http"][..], "--port"),
            (&["serve", "--rate-limit-max", "0"][..], "--rate-limit-max"),
            (
                &["serve", "--rate-limit-window-secs=-5"][..],
                "--rate-limit-window-secs",
            ),
            (&["--log-format", "xml", "serve"][..], "--log-format"),
            (
                &["serve", "--webhook-disable-after-hours", "0"][..],
                "--webhook-disable-after-hours",
            ),
            (
                &["serve", "--webhook-disable-after-hours", "soon"][..],
                "--webhook-disable-after-hours",
            ),
            (&["serve", "--webhook-lease-secs", "1"][..], "--webhook-lease-secs"),
        ] {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
        }
    }
}

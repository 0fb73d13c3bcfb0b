//! ferryd's settings: flags, then an optional TOML file, then defaults.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What `--config FILE` may hold; every field is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    /// The event log in PostgreSQL (`postgres://USER:PASSWORD@HOST/DB`), shared
    /// by a fleet of workers; none: the embedded log under the data directory.
    pub store: Option<String>,
    pub socket: Option<PathBuf>,
    /// Group allowed on the control socket (mode 0660 instead of 0600).
    pub admin_group: Option<String>,
    /// Key that encrypts the secret store; default `DATA_DIR/secret.key`.
    pub secret_key_file: Option<PathBuf>,
    /// `tracing` filter, e.g. `info,ferryd=debug`. Reloaded on SIGHUP.
    pub log: Option<String>,
    pub log_json: Option<bool>,
    /// Write a projection snapshot every this many events.
    pub snapshot_every: Option<u64>,
    /// Connections served at once on the control socket.
    pub max_connections: Option<usize>,
    /// Seconds a control connection has to send its request, header and
    /// body; idle or half-sent connections are closed after it.
    pub request_timeout_s: Option<u64>,
    #[serde(default)]
    pub engine: EngineConfig,
    #[serde(default)]
    pub notify: NotifyConfig,
    #[serde(default)]
    pub dns: DnsConfig,
    #[serde(default)]
    pub cutover: CutoverConfig,
    #[serde(default)]
    pub fleet: FleetConfig,
    pub metrics: Option<MetricsConfig>,
    #[serde(default)]
    pub endpoints: EndpointsConfig,
    #[serde(default)]
    pub graph: GraphConfig,
}

/// `[endpoints]`: what a user of the control socket may make ferryd read
/// or run. Reloaded on SIGHUP.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EndpointsConfig {
    /// Folders under which every path given over the socket (a Maildir
    /// `--host`, `--ca-file`, `--oauth-token-file`) must lie; none set, no
    /// such path is accepted.
    pub path_roots: Vec<PathBuf>,
    /// OAuth token commands by name (run with `sh -c`); an endpoint's
    /// `--oauth-token-command` names one. The only programs a socket user
    /// can have ferryd run, and they are the config file's.
    pub token_commands: std::collections::BTreeMap<String, String>,
}

impl EndpointsConfig {
    /// Whether `path`, given for `flag` over the socket, lies under one of
    /// [`path_roots`](Self::path_roots), as written and with its symlinks
    /// resolved; the refusal says what to change.
    pub fn check_path(&self, flag: &str, path: &str) -> Result<(), String> {
        use std::path::Component;
        let p = Path::new(path);
        if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
            return Err(format!(
                "{flag} {path:?} must be an absolute path without '..'"
            ));
        }
        let real = std::fs::canonicalize(p).ok();
        let under = |root: &PathBuf| {
            let real_root = std::fs::canonicalize(root).unwrap_or_else(|_| root.clone());
            p.starts_with(root) && real.as_ref().is_none_or(|r| r.starts_with(&real_root))
        };
        if self.path_roots.iter().any(under) {
            return Ok(());
        }
        let roots: Vec<String> = self
            .path_roots
            .iter()
            .map(|r| r.display().to_string())
            .collect();
        let roots = if roots.is_empty() {
            "none is set".to_string()
        } else {
            roots.join(", ")
        };
        Err(format!(
            "{flag} {path} is not under a folder named in the config file's \
             [endpoints] path_roots ({roots}); paths given over the control socket must be"
        ))
    }

    /// Checks what an endpoint makes ferryd read or run: its Maildir folder,
    /// CA file and token file lie under the roots, its token command is one
    /// of the config file's.
    pub fn check_spec(&self, spec: &ferry_events::EndpointSpec) -> Result<(), String> {
        use ferry_events::{EndpointKind, TokenSource};
        if spec.kind == EndpointKind::Maildir {
            self.check_path("--host", &spec.host)?;
        }
        if let Some(ca) = &spec.ca_file {
            self.check_path("--ca-file", ca)?;
        }
        match &spec.oauth {
            Some(TokenSource::File(path)) => self.check_path("--oauth-token-file", path),
            Some(TokenSource::Command(name)) => self.token_command(name).map(drop),
            None => Ok(()),
        }
    }

    /// The command an endpoint's `--oauth-token-command NAME` runs.
    pub fn token_command(&self, name: &str) -> Result<&str, String> {
        self.token_commands
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| {
                format!(
                    "--oauth-token-command {name:?} is not a command named in the config file's \
                     [endpoints] token_commands; programs are run only from the config file"
                )
            })
    }
}

/// What happens for each user cut over, after the final delta pass.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CutoverConfig {
    /// Run per user with a JSON payload: `{ command = "..." }` (sh -c) or
    /// `{ webhook = "https://..." }`.
    pub hook: Option<ferry_exchange::hooks::Hook>,
    pub hook_timeout_s: u64,
    /// Where the per-user PowerShell runbooks go; default `DATA_DIR/runbooks`.
    pub runbook_dir: Option<PathBuf>,
}

impl Default for CutoverConfig {
    fn default() -> Self {
        CutoverConfig {
            hook: None,
            hook_timeout_s: 120,
            runbook_dir: None,
        }
    }
}

/// `[fleet]`: this worker's part in a fleet sharing a PostgreSQL store.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// The worker's name, unique in the fleet; default `HOST:DATA_DIR`.
    pub worker: Option<String>,
    /// Seconds a mailbox lease lasts unless renewed (renewed four times
    /// within it): how long a dead worker's mailboxes wait for another.
    pub lease_s: u64,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            worker: None,
            lease_s: 30,
        }
    }
}

/// `[metrics]`: Prometheus text on a loopback HTTP port.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `127.0.0.1:9187` or `[::1]:9187`; other addresses are refused.
    pub listen: String,
}

/// Engine limits; reloaded on SIGHUP for passes that start afterwards.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Items fetched per round trip.
    pub fetch_batch: usize,
    /// Bytes of message bodies the whole daemon holds at once, across every
    /// mailbox in flight (read at start; not changed by a reload).
    pub max_bytes_in_flight: u64,
    /// Bytes of message bodies fetched per round trip (one item may exceed it).
    pub group_bytes: u64,
    /// At most this many attempts for a transient failure, if set; by
    /// default only `outage_window_s` bounds them.
    pub retries: Option<u32>,
    /// First backoff delay, doubled per attempt, with jitter.
    pub backoff_ms: u64,
    /// Longest backoff delay.
    pub max_backoff_ms: u64,
    /// How long a mailbox waits out a side that is unreachable or says
    /// `[UNAVAILABLE]` before it fails (progress starts the wait afresh).
    pub outage_window_s: u64,
    /// Timeout for any single network operation.
    pub io_timeout_s: u64,
    /// Scheduled fires missed (ferryd down) run once if this recent; older
    /// ones are recorded as missed.
    pub schedule_catch_up_s: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            fetch_batch: 64,
            max_bytes_in_flight: 32 << 20,
            group_bytes: 4 << 20,
            retries: None,
            backoff_ms: 200,
            max_backoff_ms: 120_000,
            outage_window_s: 1800,
            io_timeout_s: 60,
            schedule_catch_up_s: 6 * 3600,
        }
    }
}

/// How pass summaries are sent; reloaded on SIGHUP.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// SMTP server for email reports; none means no email can be set.
    pub smtp_host: Option<String>,
    pub smtp_port: u16,
    /// Sender address of the reports.
    pub from: String,
    pub tls: SmtpTls,
    /// SMTP login; its password is the first line of `password_file`.
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Attempts per report and target before it is given up.
    pub attempts: u32,
    /// First delay between attempts, doubled each time, with jitter.
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// Limit on one attempt (connect, send, answer).
    pub timeout_s: u64,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    None,
    StartTls,
    Tls,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            smtp_host: None,
            smtp_port: 25,
            from: "mailferry@localhost".into(),
            tls: SmtpTls::StartTls,
            user: None,
            password_file: None,
            attempts: 5,
            backoff_ms: 2_000,
            max_backoff_ms: 300_000,
            timeout_s: 30,
        }
    }
}

/// Where MX checks look and how MX switches are applied and verified.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Resolvers for `mx check` and the checklist, `IP` or `IP:PORT`;
    /// empty means the system's (`/etc/resolv.conf`).
    pub nameservers: Vec<String>,
    /// How long `mx switch` polls the authoritative servers for the new MX.
    pub verify_timeout_s: u64,
    pub verify_interval_ms: u64,
    /// Zones whose MX ferryd may change or verify.
    #[serde(rename = "zone")]
    pub zones: Vec<ZoneConfig>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            nameservers: Vec::new(),
            verify_timeout_s: 120,
            verify_interval_ms: 2_000,
            zones: Vec::new(),
        }
    }
}

/// One `[[dns.zone]]`: with `primary` and `key_file`, `mx switch` sends an
/// RFC 2136 update signed with that TSIG key; without, only `--manual`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    pub name: String,
    /// The primary server that takes updates, `IP` or `IP:PORT`.
    pub primary: Option<String>,
    /// A BIND key file (`key "NAME" { algorithm hmac-sha256; secret "..."; };`).
    pub key_file: Option<PathBuf>,
    /// TTL of the new MX record.
    #[serde(default = "default_mx_ttl")]
    pub ttl: u32,
    /// Preference of the new MX record.
    #[serde(default = "default_mx_preference")]
    pub preference: u16,
    /// Authoritative servers to poll after a switch; default: the zone's NS
    /// records resolved to addresses, port 53.
    #[serde(default)]
    pub servers: Vec<String>,
}

fn default_mx_ttl() -> u32 {
    3600
}

fn default_mx_preference() -> u16 {
    10
}

impl DnsConfig {
    /// Every address parses and `primary` comes with `key_file`.
    fn check(&self) -> Result<(), String> {
        for s in &self.nameservers {
            ferry_dns::parse_server(s).map_err(|e| format!("[dns] nameservers: {e}"))?;
        }
        for z in &self.zones {
            if z.name.trim().is_empty() {
                return Err("[[dns.zone]] has an empty name".into());
            }
            for s in z.primary.iter().chain(&z.servers) {
                ferry_dns::parse_server(s).map_err(|e| format!("[[dns.zone]] {}: {e}", z.name))?;
            }
            if z.primary.is_some() != z.key_file.is_some() {
                return Err(format!(
                    "[[dns.zone]] {}: primary and key_file go together",
                    z.name
                ));
            }
        }
        Ok(())
    }

    pub fn nameserver_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.nameservers
            .iter()
            .filter_map(|s| ferry_dns::parse_server(s).ok())
            .collect()
    }

    /// The most specific configured zone holding `domain`.
    pub fn zone_of(&self, domain: &str) -> Option<&ZoneConfig> {
        let d = domain.trim_end_matches('.').to_ascii_lowercase();
        self.zones
            .iter()
            .filter(|z| {
                let n = z.name.trim_end_matches('.').to_ascii_lowercase();
                d == n || d.ends_with(&format!(".{n}"))
            })
            .max_by_key(|z| z.name.len())
    }
}

/// The settings in force.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// A PostgreSQL URL (never logged whole: it may hold a password).
    pub store: Option<String>,
    pub socket: PathBuf,
    pub config_file: Option<PathBuf>,
    pub admin_group: Option<String>,
    pub secret_key_file: PathBuf,
    pub log: String,
    pub log_json: bool,
    pub snapshot_every: u64,
    pub max_connections: usize,
    pub request_timeout: std::time::Duration,
    pub engine: EngineConfig,
    pub notify: NotifyConfig,
    pub dns: DnsConfig,
    pub cutover: CutoverConfig,
    pub fleet: FleetConfig,
    /// Where `/metrics` is served (loopback only), if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub endpoints: EndpointsConfig,
    pub graph: GraphConfig,
}

/// `[graph]`: the throttling budget per mailbox and application, Exchange
/// Online's published limits unless set (a tenant with other limits, a
/// test service). Read at start.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GraphConfig {
    pub concurrent: Option<u32>,
    pub requests: Option<u32>,
    pub request_window_s: Option<u64>,
    pub upload_bytes: Option<u64>,
    pub upload_window_s: Option<u64>,
}

impl GraphConfig {
    pub fn limits(&self) -> ferry_graph::Limits {
        let d = ferry_graph::Limits::EXCHANGE_ONLINE;
        let secs = |s: Option<u64>, d: std::time::Duration| {
            s.map_or(d, |s| std::time::Duration::from_secs(s.max(1)))
        };
        ferry_graph::Limits {
            concurrent: self.concurrent.unwrap_or(d.concurrent).max(1),
            requests: self.requests.unwrap_or(d.requests).max(1),
            request_window: secs(self.request_window_s, d.request_window),
            upload_bytes: self.upload_bytes.unwrap_or(d.upload_bytes).max(1),
            upload_window: secs(self.upload_window_s, d.upload_window),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("no data directory: give --data-dir or data_dir in the config file")]
    NoDataDir,
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("[metrics] listen = {0:?}: {1}")]
    Metrics(String, &'static str),
}

/// A loopback socket address, or why not.
fn metrics_addr(listen: &str) -> Result<std::net::SocketAddr, ConfigError> {
    let addr: std::net::SocketAddr = listen.parse().map_err(|_| {
        ConfigError::Metrics(listen.into(), "not an address such as 127.0.0.1:9187")
    })?;
    if !addr.ip().is_loopback() {
        return Err(ConfigError::Metrics(
            listen.into(),
            "metrics are served on a loopback address only (127.0.0.1 or ::1)",
        ));
    }
    Ok(addr)
}

impl Config {
    /// Flags win over the file; the file wins over defaults.
    pub fn load(
        data_dir: Option<PathBuf>,
        socket: Option<PathBuf>,
        config_file: Option<PathBuf>,
        log_json: bool,
    ) -> Result<Config, ConfigError> {
        let file = match &config_file {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        let data_dir = data_dir
            .or(file.data_dir.clone())
            .ok_or(ConfigError::NoDataDir)?;
        let socket = socket
            .or(file.socket.clone())
            .unwrap_or_else(ferry_api::default_socket);
        let secret_key_file = file
            .secret_key_file
            .clone()
            .unwrap_or_else(|| data_dir.join("secret.key"));
        Ok(Config {
            store: file.store,
            socket,
            config_file,
            admin_group: file.admin_group,
            secret_key_file,
            log: file.log.unwrap_or_else(|| "info".into()),
            log_json: log_json || file.log_json.unwrap_or(false),
            snapshot_every: file.snapshot_every.unwrap_or(100_000).max(1),
            max_connections: file.max_connections.unwrap_or(64).max(1),
            request_timeout: std::time::Duration::from_secs(
                file.request_timeout_s.unwrap_or(10).max(1),
            ),
            engine: file.engine,
            notify: file.notify,
            dns: file.dns,
            cutover: file.cutover,
            fleet: file.fleet,
            endpoints: file.endpoints,
            graph: file.graph,
            metrics_listen: file
                .metrics
                .as_ref()
                .map(|m| metrics_addr(&m.listen))
                .transpose()?,
            data_dir,
        })
    }

    /// A config for tests and embedding: defaults under `data_dir`.
    pub fn for_dir(data_dir: &Path, socket: &Path) -> Config {
        Config::load(
            Some(data_dir.to_path_buf()),
            Some(socket.to_path_buf()),
            None,
            false,
        )
        .expect("a data dir is given")
    }

    /// Re-reads the file for SIGHUP; paths and the socket stay as started.
    pub fn reloaded(&self) -> Result<Config, ConfigError> {
        let Some(path) = &self.config_file else {
            return Ok(self.clone());
        };
        let file = read_file(path)?;
        let mut next = self.clone();
        next.admin_group = file.admin_group;
        next.log = file.log.unwrap_or_else(|| "info".into());
        next.snapshot_every = file.snapshot_every.unwrap_or(100_000).max(1);
        next.engine = file.engine;
        next.notify = file.notify;
        next.cutover = file.cutover;
        next.dns = file.dns;
        next.endpoints = file.endpoints;
        Ok(next)
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let file: FileConfig = toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    file.dns.check().map_err(|reason| ConfigError::Invalid {
        path: path.to_path_buf(),
        reason,
    })?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ferryd.toml");
        std::fs::write(
            &f,
            "data_dir = \"/nope\"\nsnapshot_every = 10\n[engine]\nfetch_batch = 8\n",
        )
        .unwrap();
        let c = Config::load(Some(dir.path().into()), None, Some(f.clone()), false).unwrap();
        assert_eq!(c.data_dir, dir.path());
        assert_eq!(c.snapshot_every, 10);
        assert_eq!(c.engine.fetch_batch, 8);
        assert_eq!(c.engine.retries, EngineConfig::default().retries);

        std::fs::write(&f, "[metrics]\nlisten = \"0.0.0.0:9187\"\n").unwrap();
        let err = Config::load(Some(dir.path().into()), None, Some(f.clone()), false).unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
        std::fs::write(&f, "[metrics]\nlisten = \"127.0.0.1:9187\"\n").unwrap();
        let c = Config::load(Some(dir.path().into()), None, Some(f.clone()), false).unwrap();
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9187".parse().unwrap()));

        std::fs::write(&f, "data_dirr = \"/x\"\n").unwrap();
        let err = Config::load(None, None, Some(f), false).unwrap_err();
        assert!(err.to_string().contains("data_dirr"), "{err}");
    }

    #[test]
    fn dns_section_loads_and_checks_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ferryd.toml");
        std::fs::write(
            &f,
            "[dns]\nnameservers = [\"127.0.0.1:5353\"]\n[[dns.zone]]\nname = \"example.test\"\nprimary = \"127.0.0.1:5353\"\nkey_file = \"/k\"\n",
        )
        .unwrap();
        let c = Config::load(Some(dir.path().into()), None, Some(f.clone()), false).unwrap();
        assert_eq!(c.dns.zones[0].ttl, 3600);
        assert_eq!(
            c.dns.verify_timeout_s,
            DnsConfig::default().verify_timeout_s
        );
        assert_eq!(
            c.dns.zone_of("sub.Example.test").map(|z| z.name.as_str()),
            Some("example.test")
        );
        assert!(c.dns.zone_of("notexample.test").is_none());

        std::fs::write(&f, "[dns]\nnameservers = [\"ns1.example\"]\n").unwrap();
        let err = Config::load(Some(dir.path().into()), None, Some(f.clone()), false).unwrap_err();
        assert!(err.to_string().contains("ns1.example"), "{err}");
        std::fs::write(
            &f,
            "[[dns.zone]]\nname = \"a.test\"\nprimary = \"127.0.0.1\"\n",
        )
        .unwrap();
        let err = Config::load(Some(dir.path().into()), None, Some(f), false).unwrap_err();
        assert!(err.to_string().contains("go together"), "{err}");
    }
}

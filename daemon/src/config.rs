//! ferryd's settings: flags, then an optional TOML file, then defaults.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What `--config FILE` may hold; every field is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
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
    #[serde(default)]
    pub engine: EngineConfig,
    #[serde(default)]
    pub notify: NotifyConfig,
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
    /// Attempts for a transient failure before the item (or mailbox) fails.
    pub retries: u32,
    /// First backoff delay, doubled per attempt, with jitter.
    pub backoff_ms: u64,
    /// Longest backoff delay.
    pub max_backoff_ms: u64,
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
            retries: 6,
            backoff_ms: 200,
            max_backoff_ms: 30_000,
            io_timeout_s: 60,
            schedule_catch_up_s: 6 * 3600,
        }
    }
}

/// How pass reports are sent; reloaded on SIGHUP.
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

/// The settings in force.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    pub config_file: Option<PathBuf>,
    pub admin_group: Option<String>,
    pub secret_key_file: PathBuf,
    pub log: String,
    pub log_json: bool,
    pub snapshot_every: u64,
    pub max_connections: usize,
    pub engine: EngineConfig,
    pub notify: NotifyConfig,
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
            .unwrap_or_else(ferry_ctl::default_socket);
        let secret_key_file = file
            .secret_key_file
            .clone()
            .unwrap_or_else(|| data_dir.join("secret.key"));
        Ok(Config {
            socket,
            config_file,
            admin_group: file.admin_group,
            secret_key_file,
            log: file.log.unwrap_or_else(|| "info".into()),
            log_json: log_json || file.log_json.unwrap_or(false),
            snapshot_every: file.snapshot_every.unwrap_or(100_000).max(1),
            max_connections: file.max_connections.unwrap_or(64).max(1),
            engine: file.engine,
            notify: file.notify,
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
        Ok(next)
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source,
    })
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

        std::fs::write(&f, "data_dirr = \"/x\"\n").unwrap();
        let err = Config::load(None, None, Some(f), false).unwrap_err();
        assert!(err.to_string().contains("data_dirr"), "{err}");
    }
}

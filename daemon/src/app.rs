//! The state every part of the daemon shares.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use ferry_events::{Actor, Envelope, Event, EventStore, ExpectedVersion, SegmentStore, StoreError};
use ferry_projections::{Projections, snapshot};

use crate::config::Config;
use crate::secrets::SecretStore;

pub struct App {
    pub config: RwLock<Config>,
    pub store: Arc<dyn EventStore>,
    /// The same store when it is the embedded segment log (not PostgreSQL),
    /// for what only it has: a close at shutdown and its recovery figures.
    pub segments: Option<Arc<SegmentStore>>,
    /// This worker's part in a fleet's lead (shared store only): only the
    /// leader runs the engine and the scheduler.
    pub leadership: Option<ferry_pgstore::Leadership>,
    /// This worker's share of a fleet's work (shared store only): every
    /// worker takes mailboxes of running passes by lease.
    pub leases: Option<Arc<ferry_pgstore::Leases>>,
    /// Endpoints' connection caps and back-offs counted across the fleet
    /// (shared store only); one daemon counts its own in the engine.
    pub fleet_caps: Option<ferry_pgstore::FleetCaps>,
    /// Folded up to `views.head`; always a prefix of the log, never ahead.
    pub views: RwLock<Projections>,
    pub secrets: SecretStore,
    pub started: Instant,
    /// Set on SIGTERM/SIGINT: no new passes, no new commands.
    pub draining: AtomicBool,
    /// Serialises control commands between their check and their append,
    /// so two admins cannot both pass a check that only one may pass.
    pub commands: tokio::sync::Mutex<()>,
    /// Head at the last snapshot written.
    snapshot_head: std::sync::Mutex<u64>,
    /// The views' head, changed after each fold: the engine wakes on it,
    /// not on the log's head, so it never looks at views not yet folded.
    pub views_head: tokio::sync::watch::Sender<u64>,
    /// `DATA_DIR/ferryd.pid`, locked while this ferryd runs.
    _pid_file: std::fs::File,
    /// When each mailbox waiting out an outage tries again (Unix µs): live
    /// engine state for answers; the outage itself is in the log.
    pub next_attempts: std::sync::Mutex<std::collections::HashMap<String, i64>>,
    /// Message bytes in flight across every fetch the daemon makes.
    pub budget: Arc<crate::budget::Budget>,
    /// Graph clients and the throttling budget per mailbox and application.
    pub graph: crate::graph::Graphs,
    /// In a fleet, by mailbox: whether this worker's lease on it still
    /// holds, asked before every write to its destination server.
    pub fences: std::sync::Mutex<HashMap<String, ferry_connectors::imap::WriteFence>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretError),
    #[error("creating data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("data directory {dir} is in use by pid {pid}")]
    InUse { dir: PathBuf, pid: String },
    #[error(
        "store = {0:?}: give a postgres:// or postgresql:// URL, or no store for the embedded log"
    )]
    StoreUrl(String),
    #[error(transparent)]
    Import(#[from] ferry_pgstore::ImportError),
    #[error(
        "import-log needs the PostgreSQL store to import into: --store URL or store in the config"
    )]
    NoStore,
}

/// Moves the data directory's event log into the empty PostgreSQL store the
/// config names, checking the hash chain record by record. ferryd must not
/// run on the data directory meanwhile (its lock is taken).
pub fn import_log(config: &Config) -> Result<ferry_pgstore::Imported, StartError> {
    let url = match config.store.as_deref() {
        Some(url) if is_postgres(url) => url,
        Some(other) => return Err(StartError::StoreUrl(ferry_pgstore::describe(other))),
        None => return Err(StartError::NoStore),
    };
    let _pid_file = lock_data_dir(&config.data_dir)?;
    let path = config.data_dir.join("log");
    if !path.exists() {
        return Err(StartError::DataDir {
            path,
            source: std::io::ErrorKind::NotFound.into(),
        });
    }
    let log = SegmentStore::open(&path)?;
    // Secrets first: they are copied again harmlessly if the log's import
    // fails, while an imported log refuses a second import.
    let secrets = SecretStore::open(&config.data_dir.join("secrets"), &config.secret_key_file)?;
    let store = ferry_pgstore::PgStore::open(url)?;
    let copied = secrets.copy_into(&store.secrets()?)?;
    tracing::info!(secrets = copied, "secrets copied into the shared store");
    let done = ferry_pgstore::import(url, log.read_raw(1))?;
    log.close();
    Ok(done)
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Locks `DATA_DIR/ferryd.pid` and writes this process's id in it; a
/// ferryd already running there is named by its pid. The lock goes with
/// the process, however it ends.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, StartError> {
    use std::io::{Read, Seek, Write};
    let path = dir.join("ferryd.pid");
    let io = |source| StartError::DataDir {
        path: path.clone(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    if let Err(e) = f.try_lock() {
        if let std::fs::TryLockError::Error(source) = e {
            return Err(io(source));
        }
        let mut pid = String::new();
        let _ = f.read_to_string(&mut pid);
        let pid = match pid.trim() {
            "" => "unknown (starting)".to_string(),
            p => p.to_string(),
        };
        return Err(StartError::InUse {
            dir: dir.to_path_buf(),
            pid,
        });
    }
    f.set_len(0).map_err(io)?;
    f.rewind().map_err(io)?;
    writeln!(f, "{}", std::process::id()).map_err(io)?;
    Ok(f)
}

impl App {
    /// Opens the log and the secret store and rebuilds the views.
    pub fn open(config: Config) -> Result<App, StartError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.data_dir)
            .map_err(|source| StartError::DataDir {
                path: config.data_dir.clone(),
                source,
            })?;
        let pid_file = lock_data_dir(&config.data_dir)?;
        let Opened {
            store,
            segments,
            leadership,
            leases,
            fleet_caps,
            secrets,
        } = open_store(&config)?;
        let mut views = load_views(&config, store.as_ref());
        let t = Instant::now();
        let folded = replay(store.as_ref(), &mut views)?;
        tracing::info!(
            events = folded,
            ms = t.elapsed().as_millis() as u64,
            "views rebuilt"
        );
        let head = views.head;
        let budget = Arc::new(crate::budget::Budget::new(
            config.engine.max_bytes_in_flight,
        ));
        let config_graph_limits = config.graph.limits();
        let app = App {
            config: RwLock::new(config),
            store,
            segments,
            leadership,
            leases,
            fleet_caps,
            views: RwLock::new(views),
            secrets,
            started: Instant::now(),
            draining: AtomicBool::new(false),
            commands: tokio::sync::Mutex::new(()),
            snapshot_head: std::sync::Mutex::new(head),
            views_head: tokio::sync::watch::channel(head).0,
            _pid_file: pid_file,
            graph: crate::graph::Graphs::new(config_graph_limits),
            next_attempts: Default::default(),
            budget,
            fences: Default::default(),
        };
        app.catch_up();
        Ok(app)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Appends and folds the result in, so the caller reads its own write.
    pub async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        actor: Actor,
        events: Vec<Event>,
    ) -> Result<Vec<Envelope>, StoreError> {
        let envs = self.store.append(stream, expected, actor, events).await?;
        self.catch_up();
        Ok(envs)
    }

    /// Folds every event past the views' head, in order.
    pub fn catch_up(&self) {
        let mut views = self.views.write().unwrap();
        for env in self.store.read_all(views.head + 1) {
            match env {
                Ok(env) => views.apply(&env),
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the log past {}", views.head);
                    break;
                }
            }
        }
        self.views_head.send_if_modified(|h| {
            let moved = *h != views.head;
            *h = views.head;
            moved
        });
        let every = self.config.read().unwrap().snapshot_every;
        let mut last = self.snapshot_head.lock().unwrap();
        if views.head >= *last + every {
            *last = views.head;
            let bytes = snapshot::encode(&views);
            drop(views);
            self.write_snapshot(bytes);
        }
    }

    /// Writes the views' snapshot now (at shutdown).
    pub fn snapshot_now(&self) {
        let views = self.views.read().unwrap();
        *self.snapshot_head.lock().unwrap() = views.head;
        let bytes = snapshot::encode(&views);
        drop(views);
        self.write_snapshot(bytes);
    }

    fn write_snapshot(&self, bytes: Result<Vec<u8>, snapshot::SnapshotError>) {
        let path = self.config.read().unwrap().data_dir.join("views.snapshot");
        let tmp = path.with_extension("tmp");
        let res = bytes
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = res {
            tracing::warn!(error = %e, path = %path.display(), "snapshot not written");
        }
    }
}

/// The log and what goes with it.
struct Opened {
    store: Arc<dyn EventStore>,
    /// The same log again when it is the segment store.
    segments: Option<Arc<SegmentStore>>,
    /// The worker's lead when the log is shared.
    leadership: Option<ferry_pgstore::Leadership>,
    /// The worker's leases when the log is shared.
    leases: Option<Arc<ferry_pgstore::Leases>>,
    /// The fleet-wide caps when the log is shared.
    fleet_caps: Option<ferry_pgstore::FleetCaps>,
    secrets: SecretStore,
}

/// The event log the config names: PostgreSQL for a fleet's shared log,
/// whose workers share their secrets through it too; else the segment log
/// and the secrets under the data directory.
fn open_store(config: &Config) -> Result<Opened, StartError> {
    match config.store.as_deref() {
        Some(url) if is_postgres(url) => {
            let store = ferry_pgstore::PgStore::open(url)?;
            tracing::info!(store = store.location(), "event log on PostgreSQL");
            let name = worker_name(config);
            let lease = std::time::Duration::from_secs(config.fleet.lease_s.max(1));
            // Secrets first: a worker with the wrong key never competes for the lead.
            Ok(Opened {
                secrets: SecretStore::open_shared(store.secrets()?, &config.secret_key_file)?,
                leadership: Some(store.lead(&name)?),
                leases: Some(Arc::new(store.leases(&name, lease)?)),
                fleet_caps: Some(store.caps(&name, lease)?),
                store: Arc::new(store),
                segments: None,
            })
        }
        Some(other) => Err(StartError::StoreUrl(ferry_pgstore::describe(other))),
        None => {
            let store = Arc::new(SegmentStore::open(&config.data_dir.join("log"))?);
            Ok(Opened {
                store: store.clone(),
                segments: Some(store),
                leadership: None,
                leases: None,
                fleet_caps: None,
                secrets: SecretStore::open(
                    &config.data_dir.join("secrets"),
                    &config.secret_key_file,
                )?,
            })
        }
    }
}

/// This worker's name in the fleet: the configured one, else the host's
/// name and the data directory, which no other worker has.
fn worker_name(config: &Config) -> String {
    config.fleet.worker.clone().unwrap_or_else(|| {
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".into());
        format!("{host}:{}", config.data_dir.display())
    })
}

/// The snapshot when it is readable and not ahead of the log, else nothing.
fn load_views(config: &Config, store: &dyn EventStore) -> Projections {
    let path = config.data_dir.join("views.snapshot");
    let Ok(bytes) = std::fs::read(&path) else {
        return Projections::default();
    };
    match snapshot::decode(&bytes) {
        Ok(p) if p.head <= store.head() => {
            tracing::info!(head = p.head, "views loaded from snapshot");
            p
        }
        Ok(p) => {
            tracing::warn!(
                snapshot = p.head,
                log = store.head(),
                "snapshot is ahead of the log; rebuilding from the start"
            );
            Projections::default()
        }
        Err(e) => {
            tracing::warn!(error = %e, "snapshot unreadable; rebuilding from the start");
            Projections::default()
        }
    }
}

/// Events handed from the reading thread to the folding one at a time.
const REPLAY_CHUNK: usize = 4096;

/// Folds the log past `views.head` into `views`: one thread reads and
/// decodes while this one folds, so a restart uses both cores.
/// Returns how many events were folded.
pub fn replay(store: &dyn EventStore, views: &mut Projections) -> Result<u64, StoreError> {
    let from = views.head + 1;
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Envelope>>(4);
        let reader = scope.spawn(move || -> Result<(), StoreError> {
            let mut chunk = Vec::with_capacity(REPLAY_CHUNK);
            for env in store.read_all(from) {
                chunk.push(env?);
                if chunk.len() == REPLAY_CHUNK {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(REPLAY_CHUNK));
                    if tx.send(full).is_err() {
                        return Ok(());
                    }
                }
            }
            if !chunk.is_empty() {
                let _ = tx.send(chunk);
            }
            Ok(())
        });
        let mut folded = 0u64;
        for chunk in rx {
            folded += chunk.len() as u64;
            for env in &chunk {
                views.apply(env);
            }
        }
        reader.join().expect("the replay reader does not panic")?;
        Ok(folded)
    })
}

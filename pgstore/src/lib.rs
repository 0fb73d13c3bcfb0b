//! The event log on PostgreSQL: one store shared by a fleet of ferryd workers.
//!
//! The same [`EventStore`] contract as the segment store, with the same
//! [`Sequencer`] assigning sequence, time and hash chain. What makes it one
//! log for many writers: every append transaction first locks the single row
//! of `ferry_head`, so the global sequence has no holes and the chain no
//! forks whoever writes. Each process commits its queued appends as a group
//! (one transaction, one round of locks and one fsync for many appends).
//!
//! PostgreSQL's client here is the blocking `postgres` crate, on threads of
//! the store's own: a writer (group commit), a reader serving the trait's
//! iterators page by page, and a listener that follows other workers'
//! appends with `LISTEN`/`NOTIFY` and a poll every second in case a
//! notification is lost. Reads block their caller as a file read would.
//!
//! A connection lost mid-append is reopened for up to [`RECONNECT_LIMIT`];
//! a group whose `COMMIT` went unanswered is looked up by its first record's
//! bytes before anything is written again, so a restart of PostgreSQL
//! neither loses nor doubles an append.

mod caps;
mod import;
mod leader;
mod lease;
mod secrets;
mod threads;

pub use caps::{FleetCaps, FleetSlot};
pub use import::{ImportError, Imported, import};
pub use leader::Leadership;
pub use lease::{FleetView, Lease, LeaseRow, Leases, WorkerRow};
pub use secrets::PgSecrets;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use async_trait::async_trait;
use ferry_events::store::{EnvelopeIter, RawIter, RawRecord};
use ferry_events::{Actor, Envelope, Event, EventStore, ExpectedVersion, StoreError, codec};
use tokio::sync::{oneshot, watch};

use threads::{Append, Reader};

/// How long a lost connection is retried before appends and reads fail.
pub const RECONNECT_LIMIT: Duration = Duration::from_secs(60);
/// How long a session may sit inside a transaction without a statement.
const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(3);
/// Records fetched per round trip by the iterators.
const PAGE: i64 = 1000;
/// The channel other workers' appends are announced on.
const CHANNEL: &str = "ferry_log";

/// The event log in a PostgreSQL database.
pub struct PgStore {
    appends: mpsc::Sender<Append>,
    reader: Reader,
    head: Arc<watch::Sender<u64>>,
    stop: Arc<AtomicBool>,
    at: String,
    config: postgres::Config,
    fence: Arc<AtomicU64>,
    /// The mailbox leases this worker holds (a fleet's shared work).
    held: lease::Held,
}

/// Where the store is, as errors and logs may show it: host, port and
/// database, never the user's password.
pub fn describe(url: &str) -> String {
    let Ok(config) = postgres::Config::from_str(url) else {
        return "PostgreSQL (unparsable URL)".to_string();
    };
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(h) => h.clone(),
            postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("postgres");
    format!("postgresql://{host}:{port}/{db}")
}

/// The client's config for `url`, and where it points for messages.
fn parse(url: &str) -> Result<(postgres::Config, String), StoreError> {
    let at = describe(url);
    match postgres::Config::from_str(url) {
        Ok(config) => Ok((config, at)),
        Err(e) => Err(StoreError::Database {
            at,
            what: format!("bad connection URL: {e}"),
        }),
    }
}

impl PgStore {
    /// Connects, creates the tables if this is a new store, and starts the
    /// store's threads.
    pub fn open(url: &str) -> Result<PgStore, StoreError> {
        let (mut config, at) = parse(url)?;
        // A worker paused inside a transaction (SIGSTOP, a frozen VM) would
        // hold the log's head lock, and with it every worker's appends: the
        // server ends such a session, and the worker finds out when it wakes.
        let options = config
            .get_options()
            .map(|o| format!("{o} "))
            .unwrap_or_default();
        config.options(&format!(
            "{options}-c idle_in_transaction_session_timeout={}",
            IDLE_IN_TRANSACTION.as_millis()
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let head = Arc::new(watch::channel(0).0);
        let fence = Arc::new(AtomicU64::new(threads::UNFENCED));
        let appends =
            threads::start_writer(config.clone(), at.clone(), head.clone(), fence.clone())?;
        let reader = threads::start_reader(config.clone(), at.clone())?;
        let now = reader.call(threads::head_seq)?;
        head.send_replace(now);
        let config_for_lead = config.clone();
        threads::start_listener(config, at.clone(), head.clone(), stop.clone())?;
        Ok(PgStore {
            appends,
            reader,
            head,
            stop,
            at,
            config: config_for_lead,
            fence,
            held: lease::Held::default(),
        })
    }

    /// Competes for the fleet's lead as `name` from now on: engine and
    /// scheduler appends are refused until this worker leads, and again as
    /// soon as another has taken the lead from it.
    pub fn lead(&self, name: &str) -> Result<Leadership, StoreError> {
        self.fence.store(0, Ordering::SeqCst);
        leader::start(
            self.config.clone(),
            self.at.clone(),
            name.to_string(),
            self.fence.clone(),
            self.stop.clone(),
        )
    }

    /// Takes part in the fleet's shared work as `worker`, whose leases last
    /// `ttl` unless renewed: from now on, this store refuses an engine
    /// append for a leased mailbox once its lease is lost.
    pub fn leases(&self, worker: &str, ttl: Duration) -> Result<Leases, StoreError> {
        let db = threads::start_reader(self.config.clone(), self.at.clone())?;
        lease::start(
            db,
            self.held.clone(),
            worker.to_string(),
            ttl,
            self.stop.clone(),
        )
    }

    /// The fleet-wide connection caps and back-offs of endpoints, as
    /// `worker`, whose slots last `ttl` unless renewed.
    pub fn caps(&self, worker: &str, ttl: Duration) -> Result<FleetCaps, StoreError> {
        let db = threads::start_reader(self.config.clone(), self.at.clone())?;
        caps::start(
            self.config.clone(),
            self.at.clone(),
            db,
            worker.to_string(),
            ttl,
            self.stop.clone(),
        )
    }

    /// The fleet's secrets table in this store's database.
    pub fn secrets(&self) -> Result<PgSecrets, StoreError> {
        PgSecrets::start(self.config.clone(), self.at.clone())
    }

    /// Where this store is (no credentials).
    pub fn location(&self) -> &str {
        &self.at
    }

    fn pages<T: Send + 'static>(
        &self,
        fetch: impl Fn(&mut postgres::Client, i64) -> Result<Vec<(i64, T)>, postgres::Error>
        + Send
        + Sync
        + 'static,
        from: i64,
    ) -> Box<dyn Iterator<Item = Result<T, StoreError>> + Send + '_> {
        let fetch = Arc::new(fetch);
        let mut next = from;
        let mut buf: std::vec::IntoIter<(i64, T)> = Vec::new().into_iter();
        let mut done = false;
        Box::new(std::iter::from_fn(move || {
            loop {
                if let Some((key, item)) = buf.next() {
                    next = key + 1;
                    return Some(Ok(item));
                }
                if done {
                    return None;
                }
                let f = fetch.clone();
                let at = next;
                match self.reader.call(move |c| f(c, at)) {
                    Ok(page) => {
                        done = (page.len() as i64) < PAGE;
                        buf = page.into_iter();
                    }
                    Err(e) => {
                        done = true;
                        return Some(Err(e));
                    }
                }
            }
        }))
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[async_trait]
impl EventStore for PgStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        actor: Actor,
        events: Vec<Event>,
    ) -> Result<Vec<Envelope>, StoreError> {
        let lease = match actor {
            Actor::Engine => lease::check_for(&self.held, stream),
            _ => None,
        };
        // A lease this worker already knows lapsed writes nothing more.
        if let Some(l) = &lease
            && !lease::still_holds(&self.held, stream, l)
        {
            return Err(StoreError::LeaseLost {
                mailbox: l.mailbox.clone(),
                lease: l.version,
            });
        }
        let (reply, answer) = oneshot::channel();
        self.appends
            .send(Append {
                stream: stream.to_string(),
                expected,
                actor,
                events,
                lease: lease.clone(),
                reply,
            })
            .map_err(|_| StoreError::Closed)?;
        let written = answer.await.map_err(|_| StoreError::Closed)??;
        match lease {
            // Written while the lease held, but it may have lapsed since
            // (the worker paused): the caller must not act on it.
            Some(l) if !lease::still_holds(&self.held, stream, &l) => Err(StoreError::LeaseLost {
                mailbox: l.mailbox,
                lease: l.version,
            }),
            _ => Ok(written),
        }
    }

    fn read_all(&self, from_seq: u64) -> EnvelopeIter<'_> {
        Box::new(self.read_raw(from_seq).map(|r| {
            let r = r?;
            codec::decode(&r.bytes).map_err(|source| StoreError::Codec { seq: r.seq, source })
        }))
    }

    fn read_raw(&self, from_seq: u64) -> RawIter<'_> {
        self.pages(
            |c, from| {
                let rows = c.query(
                    "SELECT seq, record FROM ferry_log WHERE seq >= $1 ORDER BY seq LIMIT $2",
                    &[&from, &PAGE],
                )?;
                Ok(rows
                    .iter()
                    .map(|r| {
                        let seq: i64 = r.get(0);
                        let bytes: Vec<u8> = r.get(1);
                        (
                            seq,
                            RawRecord {
                                seq: seq as u64,
                                bytes,
                            },
                        )
                    })
                    .collect())
            },
            from_seq.max(1) as i64,
        )
    }

    fn scan_stream(&self, stream: &str, from_version: u64) -> EnvelopeIter<'_> {
        if let Err(e) = ferry_events::store::check_stream(stream) {
            return Box::new(std::iter::once(Err(e)));
        }
        let name = stream.to_string();
        let records = self.pages(
            move |c, from| {
                let rows = c.query(
                    "SELECT stream_version, seq, record FROM ferry_log \
                     WHERE stream = $1 AND stream_version >= $2 \
                     ORDER BY stream_version LIMIT $3",
                    &[&name, &from, &PAGE],
                )?;
                Ok(rows
                    .iter()
                    .map(|r| {
                        let v: i64 = r.get(0);
                        let seq: i64 = r.get(1);
                        let bytes: Vec<u8> = r.get(2);
                        (v, (seq as u64, bytes))
                    })
                    .collect())
            },
            from_version.max(1) as i64,
        );
        Box::new(records.map(|r| {
            let (seq, bytes) = r?;
            codec::decode(&bytes).map_err(|source| StoreError::Codec { seq, source })
        }))
    }

    fn stream_version(&self, stream: &str) -> u64 {
        let name = stream.to_string();
        match self.reader.call(move |c| threads::stream_version(c, &name)) {
            Ok(v) => v,
            Err(e) => {
                // The trait has no error here; a wrong version is caught by
                // the append's own check, so 0 is safe.
                tracing::warn!("stream version of {stream}: {e}");
                0
            }
        }
    }

    fn head(&self) -> u64 {
        *self.head.borrow()
    }

    fn follow(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn the_location_shown_has_no_password() {
        let shown = describe("postgres://ferry:s3cret-pw@db.example:6543/mail");
        assert_eq!(shown, "postgresql://db.example:6543/mail");
        assert!(!describe("host=db user=ferry password=s3cret-pw").contains("s3cret"));
    }
}

//! The store's threads: the writer's group commit, the reader, the listener.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ferry_events::envelope::{Hash, ZERO_HASH};
use ferry_events::store::Sequenced;
use ferry_events::time::now_us;
use ferry_events::{Actor, Envelope, Event, ExpectedVersion, Sequencer, StoreError};
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Config, NoTls};
use tokio::sync::{oneshot, watch};

use crate::lease::{self, NOW_US};
use crate::{CHANNEL, RECONNECT_LIMIT};

/// The fence of a store that no leadership was asked of (one daemon alone).
pub(crate) const UNFENCED: u64 = u64::MAX;

/// Appends committed together at most.
const GROUP: usize = 256;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ferry_log (
    seq bigint PRIMARY KEY,
    stream text NOT NULL,
    stream_version bigint NOT NULL,
    record bytea NOT NULL,
    UNIQUE (stream, stream_version)
);
CREATE TABLE IF NOT EXISTS ferry_secrets (
    id text PRIMARY KEY,
    sealed bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS ferry_leader (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    epoch bigint NOT NULL,
    holder text NOT NULL,
    since_us bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS ferry_leases (
    batch text NOT NULL,
    pass_id bigint NOT NULL,
    mailbox text NOT NULL,
    holder text,
    version bigint NOT NULL DEFAULT 0,
    expires_us bigint NOT NULL DEFAULT 0,
    done boolean NOT NULL DEFAULT false,
    PRIMARY KEY (batch, pass_id, mailbox)
);
CREATE TABLE IF NOT EXISTS ferry_workers (
    name text PRIMARY KEY,
    started_us bigint NOT NULL,
    heartbeat_us bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS ferry_slots (
    endpoint text NOT NULL,
    n integer NOT NULL,
    holder text,
    token bigint NOT NULL DEFAULT 0,
    expires_us bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (endpoint, n)
);
CREATE SEQUENCE IF NOT EXISTS ferry_slot_tokens;
CREATE TABLE IF NOT EXISTS ferry_slot_waiters (
    endpoint text NOT NULL,
    holder text NOT NULL,
    token bigint NOT NULL,
    expires_us bigint NOT NULL,
    PRIMARY KEY (endpoint, holder, token)
);
-- A waiter's place in the fleet's queue for its endpoint, from its first
-- listing (a store made before the queue gains the column).
ALTER TABLE ferry_slot_waiters
    ADD COLUMN IF NOT EXISTS place bigint NOT NULL DEFAULT nextval('ferry_slot_tokens');
CREATE TABLE IF NOT EXISTS ferry_backoffs (
    endpoint text PRIMARY KEY,
    until_us bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS ferry_head (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    seq bigint NOT NULL,
    hash bytea NOT NULL,
    time_us bigint NOT NULL
);
-- An append's first step in one round trip: the head locked, then the
-- streams' versions read on a snapshot taken after the lock (a VOLATILE
-- function's statements each take a new one), so they count every
-- append committed before it.
CREATE OR REPLACE FUNCTION ferry_lock_head(streams text[], OUT head_seq bigint,
    OUT head_hash bytea, OUT head_time bigint, OUT names text[], OUT versions bigint[])
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    SELECT h.seq, h.hash, h.time_us INTO head_seq, head_hash, head_time
      FROM ferry_head h FOR UPDATE;
    SELECT coalesce(array_agg(v.stream), '{}'), coalesce(array_agg(v.version), '{}')
      INTO names, versions
      FROM (SELECT l.stream, max(l.stream_version) AS version FROM ferry_log l
            WHERE l.stream = ANY(streams) GROUP BY l.stream) v;
END $$;
";

/// Any number that other users of the database are unlikely to lock.
const SCHEMA_LOCK: i64 = 0x6665_7272_7973_6368;

pub(crate) struct Append {
    pub stream: String,
    pub expected: ExpectedVersion,
    pub actor: Actor,
    pub events: Vec<Event>,
    /// The lease this append is made under (a fleet worker's mailbox work).
    pub lease: Option<lease::Check>,
    pub reply: oneshot::Sender<Result<Vec<Envelope>, StoreError>>,
}

/// The error and its causes: the driver's own text is only "db error",
/// the server's words are its source.
pub(crate) fn db_error(at: &str, e: impl std::error::Error) -> StoreError {
    let mut what = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        what.push_str(": ");
        what.push_str(&c.to_string());
        cause = c.source();
    }
    StoreError::Database {
        at: at.to_string(),
        what,
    }
}

/// Connects, retrying for [`RECONNECT_LIMIT`] while the server is away.
fn connect(config: &Config, at: &str) -> Result<Client, StoreError> {
    let deadline = Instant::now() + RECONNECT_LIMIT;
    let mut wait = Duration::from_millis(100);
    loop {
        match config.connect(NoTls) {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() < deadline && retryable(&e) => {
                tracing::warn!("event store at {at} unreachable ({e}); retrying");
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(db_error(at, e)),
        }
    }
}

/// Whether an error is the server going away (or not yet back), which a
/// new connection may cure, rather than a refusal that would repeat.
fn retryable(e: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    let io = std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>());
    if e.is_closed() || io {
        return true;
    }
    matches!(
        e.code(),
        Some(c) if *c == SqlState::ADMIN_SHUTDOWN
            || *c == SqlState::CANNOT_CONNECT_NOW
            || *c == SqlState::CRASH_SHUTDOWN
            || *c == SqlState::CONNECTION_FAILURE
            || *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            // Ended by the server while this worker was paused mid-append
            // (nothing was committed): the retry meets the lease check.
            || *c == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT
    )
}

pub(crate) fn create_schema(c: &mut Client) -> Result<(), postgres::Error> {
    let mut tx = c.transaction()?;
    // Two workers starting at once would race on CREATE TABLE IF NOT EXISTS.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
    tx.batch_execute(SCHEMA)?;
    tx.execute(
        "INSERT INTO ferry_head (one, seq, hash, time_us) VALUES (true, 0, $1, 0) \
         ON CONFLICT DO NOTHING",
        &[&ZERO_HASH.as_slice()],
    )?;
    tx.execute(
        "INSERT INTO ferry_leader (one, epoch, holder, since_us) VALUES (true, 0, '', 0) \
         ON CONFLICT DO NOTHING",
        &[],
    )?;
    tx.commit()
}

pub(crate) fn head_seq(c: &mut Client) -> Result<u64, postgres::Error> {
    let row = c.query_one("SELECT seq FROM ferry_head", &[])?;
    Ok(row.get::<_, i64>(0) as u64)
}

pub(crate) fn stream_version(c: &mut Client, stream: &str) -> Result<u64, postgres::Error> {
    let row = c.query_one(
        "SELECT coalesce(max(stream_version), 0) FROM ferry_log WHERE stream = $1",
        &[&stream],
    )?;
    Ok(row.get::<_, i64>(0) as u64)
}

pub(crate) fn start_writer(
    config: Config,
    at: String,
    head: Arc<watch::Sender<u64>>,
    fence: Arc<AtomicU64>,
) -> Result<mpsc::Sender<Append>, StoreError> {
    let (tx, rx) = mpsc::channel::<Append>();
    let (ready, started) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("pgstore-writer".into())
        .spawn(move || {
            // Connected here: the blocking client cannot run on a runtime's thread.
            let opened = config.connect(NoTls).and_then(|mut c| {
                create_schema(&mut c)?;
                Ok(c)
            });
            let client = match opened {
                Ok(c) => {
                    let _ = ready.send(Ok(()));
                    c
                }
                Err(e) => {
                    let _ = ready.send(Err(db_error(&at, e)));
                    return;
                }
            };
            let mut writer = Writer {
                client: Some(client),
                config,
                at,
                head,
                fence,
            };
            while let Ok(first) = rx.recv() {
                let mut group = vec![first];
                while group.len() < GROUP {
                    match rx.try_recv() {
                        Ok(a) => group.push(a),
                        Err(_) => break,
                    }
                }
                writer.commit(group);
            }
        })
        .map_err(|e| db_error("thread", e))?;
    started.recv().map_err(|_| StoreError::Closed)??;
    Ok(tx)
}

struct Writer {
    client: Option<Client>,
    config: Config,
    at: String,
    head: Arc<watch::Sender<u64>>,
    /// The leader epoch this worker holds (0: none); engine and scheduler
    /// appends are written only while the store's epoch is still this one.
    fence: Arc<AtomicU64>,
}

/// What one transaction wrote, kept to answer the callers after `COMMIT`.
struct Planned {
    results: Vec<Result<Sequenced, StoreError>>,
    head: u64,
    /// Seq and bytes of the group's first record, to find out after a lost
    /// `COMMIT` whether it happened.
    first: Option<(i64, Vec<u8>)>,
}

impl Writer {
    fn commit(&mut self, group: Vec<Append>) {
        let deadline = Instant::now() + RECONNECT_LIMIT;
        let outcome = loop {
            let client = match self.client.take() {
                Some(c) if !c.is_closed() => c,
                _ => match connect(&self.config, &self.at) {
                    Ok(c) => c,
                    Err(e) => break Err(e),
                },
            };
            let mut client = client;
            let mut planned = None;
            let fence = self.fence.load(Ordering::SeqCst);
            let attempt = write_group(&mut client, &group, fence, &mut planned);
            match attempt {
                Ok(()) => {
                    self.client = Some(client);
                    break Ok(planned.expect("planned before commit"));
                }
                Err(e) if retryable(&e) && Instant::now() < deadline => {
                    tracing::warn!("event store at {}: {e}; reconnecting", self.at);
                    drop(client);
                    // The COMMIT may have happened before the answer was lost.
                    if let Some(p) = planned.filter(|p| p.first.is_some()) {
                        match self.committed(&p) {
                            Ok(true) => break Ok(p),
                            Ok(false) => {}
                            Err(e) => break Err(e),
                        }
                    }
                }
                Err(e) => {
                    if !client.is_closed() {
                        self.client = Some(client);
                    }
                    break Err(db_error(&self.at, e));
                }
            }
        };
        match outcome {
            Ok(p) => {
                self.head.send_if_modified(|h| {
                    let moved = p.head > *h;
                    *h = (*h).max(p.head);
                    moved
                });
                for (append, result) in group.into_iter().zip(p.results) {
                    let _ = append.reply.send(result.map(|s| s.envelopes));
                }
            }
            Err(e) => {
                for append in group {
                    let _ = append.reply.send(Err(clone_error(&e)));
                }
            }
        }
    }

    /// Whether the group's first record is in the log, byte for byte.
    fn committed(&mut self, p: &Planned) -> Result<bool, StoreError> {
        let (seq, bytes) = p.first.as_ref().expect("checked by the caller");
        let mut client = connect(&self.config, &self.at)?;
        let row = client
            .query_opt("SELECT record FROM ferry_log WHERE seq = $1", &[seq])
            .map_err(|e| db_error(&self.at, e))?;
        self.client = Some(client);
        Ok(row.is_some_and(|r| r.get::<_, Vec<u8>>(0) == *bytes))
    }
}

fn clone_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Database { at, what } => StoreError::Database {
            at: at.clone(),
            what: what.clone(),
        },
        other => StoreError::Database {
            at: String::new(),
            what: other.to_string(),
        },
    }
}

/// One transaction: lock the head, sequence every append, insert, move the
/// head, notify. `planned` is filled before `COMMIT` is sent.
fn write_group(
    client: &mut Client,
    group: &[Append],
    fence: u64,
    planned: &mut Option<Planned>,
) -> Result<(), postgres::Error> {
    let mut tx = client.transaction()?;
    // Read under a share lock: a worker taking the lead waits for this
    // transaction, and this one sees a lead taken before it.
    let check = fence != UNFENCED && group.iter().any(|a| a.lease.is_none() && fenced(&a.actor));
    let epoch = if check {
        let row = tx.query_one("SELECT epoch FROM ferry_leader FOR SHARE", &[])?;
        row.get::<_, i64>(0) as u64
    } else {
        0
    };
    let leases_held = held_leases(&mut tx, group)?;
    let mut names: Vec<&str> = group.iter().map(|a| a.stream.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    // The head lock is held from here to COMMIT: three round trips.
    let row = tx.query_one("SELECT * FROM ferry_lock_head($1)", &[&names])?;
    let head: i64 = row.get(0);
    let hash_bytes: Vec<u8> = row.get(1);
    let time_us: i64 = row.get(2);
    let mut hash: Hash = ZERO_HASH;
    if hash_bytes.len() == hash.len() {
        hash.copy_from_slice(&hash_bytes);
    }
    let versions: HashMap<String, u64> = row
        .get::<_, Vec<String>>(3)
        .into_iter()
        .zip(row.get::<_, Vec<i64>>(4).into_iter().map(|v| v as u64))
        .collect();
    let mut sequencer = Sequencer::resume(head as u64, hash, time_us, versions);
    let now = now_us();
    let results: Vec<_> = group
        .iter()
        .zip(&leases_held)
        .map(|(a, holds)| {
            if let Some(l) = &a.lease {
                if !holds {
                    return Err(StoreError::LeaseLost {
                        mailbox: l.mailbox.clone(),
                        lease: l.version,
                    });
                }
            } else if fence != UNFENCED && fenced(&a.actor) && (fence == 0 || fence != epoch) {
                return Err(StoreError::NotLeader { epoch });
            }
            sequencer.sequence(&a.stream, a.expected, &a.actor, a.events.clone(), now)
        })
        .collect();
    let (mut seqs, mut streams, mut stream_versions, mut records) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for s in results.iter().flatten() {
        for (env, bytes) in s.envelopes.iter().zip(&s.records) {
            seqs.push(env.seq as i64);
            streams.push(env.stream.as_str());
            stream_versions.push(env.stream_version as i64);
            records.push(bytes.as_slice());
        }
    }
    // A mailbox's end of the pass, recorded under its lease, finishes the
    // lease in the same transaction: nobody takes a finished mailbox over.
    let done: lease::Columns = group
        .iter()
        .zip(&results)
        .filter_map(|(a, r)| match (&a.lease, r) {
            (Some(c), Ok(_)) if a.events.iter().any(|e| finishes(e, c)) => Some(c),
            _ => None,
        })
        .collect();
    let first = seqs.first().map(|s| (*s, records[0].to_vec()));
    if first.is_some() {
        let last = results
            .iter()
            .flatten()
            .last()
            .expect("a record was written");
        let env = last.envelopes.last().expect("appends are not empty");
        let new_hash = ferry_events::envelope::hash_bytes(last.records.last().expect("same"));
        // Rows, head, finished leases and notes in one statement
        // (data-modifying CTEs run whether read or not).
        tx.execute(
            "WITH rows AS (INSERT INTO ferry_log (seq, stream, stream_version, record) \
               SELECT * FROM unnest($1::int8[], $2::text[], $3::int8[], $4::bytea[])), \
             head AS (UPDATE ferry_head SET seq = $5, hash = $6, time_us = $7), \
             done AS (UPDATE ferry_leases l SET done = true \
               FROM unnest($10::text[], $11::int8[], $12::text[], $13::int8[]) \
                 AS k(batch, pass_id, mailbox, version) \
               WHERE l.batch = k.batch AND l.pass_id = k.pass_id \
                 AND l.mailbox = k.mailbox AND l.version = k.version) \
             SELECT pg_notify($8, $9), \
               CASE WHEN cardinality($12::text[]) > 0 THEN pg_notify($8, $14) END",
            &[
                &seqs,
                &streams,
                &stream_versions,
                &records,
                &(env.seq as i64),
                &new_hash.as_slice(),
                &env.time_us,
                &CHANNEL,
                &env.seq.to_string(),
                &done.batches,
                &done.passes,
                &done.mailboxes,
                &done.versions,
                &crate::caps::LEASES_NOTE,
            ],
        )?;
    }
    let new_head = sequencer.head();
    *planned = Some(Planned {
        results,
        head: new_head,
        first,
    });
    tx.commit()
}

/// Whether `e` records the end of the leased mailbox's share of its pass.
fn finishes(e: &Event, c: &lease::Check) -> bool {
    matches!(e, Event::MailboxPassFinished { mailbox, pass_id, .. }
        if *mailbox == c.mailbox && *pass_id == c.pass_id)
}

/// For each append, whether the lease it is made under still holds (true
/// for appends under none). The rows stay share-locked until `COMMIT`, so
/// no worker takes a mailbox over while an append under its lease is made.
fn held_leases(
    tx: &mut postgres::Transaction<'_>,
    group: &[Append],
) -> Result<Vec<bool>, postgres::Error> {
    let checks: Vec<&lease::Check> = group.iter().filter_map(|a| a.lease.as_ref()).collect();
    if checks.is_empty() {
        return Ok(vec![true; group.len()]);
    }
    let keys: lease::Columns = checks.iter().copied().collect();
    let rows = tx.query(
        &format!(
            "SELECT l.batch, l.pass_id, l.mailbox, l.holder, l.version FROM ferry_leases l \
             JOIN unnest($1::text[], $2::int8[], $3::text[]) AS k(batch, pass_id, mailbox) \
               USING (batch, pass_id, mailbox) \
             WHERE NOT l.done AND l.expires_us > {NOW_US} FOR SHARE OF l"
        ),
        &[&keys.batches, &keys.passes, &keys.mailboxes],
    )?;
    Ok(group
        .iter()
        .map(|a| {
            a.lease.as_ref().is_none_or(|c| {
                rows.iter().any(|r| {
                    r.get::<_, String>(0) == c.batch
                        && r.get::<_, i64>(1) as u64 == c.pass_id
                        && r.get::<_, String>(2) == c.mailbox
                        && r.get::<_, Option<String>>(3).as_deref() == Some(c.worker.as_str())
                        && r.get::<_, i64>(4) as u64 == c.version
                })
            })
        })
        .collect())
}

/// A read to run on the reader's connection (reopened as needed).
type Job = Box<dyn FnOnce(&mut Option<Client>) + Send>;

/// Appends only the fleet's leader may make: its engine's and scheduler's.
/// Commands from any worker's socket are checked by stream versions alone.
fn fenced(actor: &Actor) -> bool {
    matches!(actor, Actor::Engine | Actor::Scheduler)
}

/// Runs closures on the reader's connection, one at a time.
pub(crate) struct Reader {
    jobs: mpsc::Sender<Job>,
    config: Config,
    at: String,
}

pub(crate) fn start_reader(config: Config, at: String) -> Result<Reader, StoreError> {
    let (tx, rx) = mpsc::channel::<Job>();
    let (ready, started) = mpsc::sync_channel(1);
    let (thread_config, thread_at) = (config.clone(), at.clone());
    std::thread::Builder::new()
        .name("pgstore-reader".into())
        .spawn(move || {
            let mut client = match thread_config.connect(NoTls) {
                Ok(c) => {
                    let _ = ready.send(Ok(()));
                    Some(c)
                }
                Err(e) => {
                    let _ = ready.send(Err(db_error(&thread_at, e)));
                    return;
                }
            };
            while let Ok(job) = rx.recv() {
                job(&mut client);
            }
        })
        .map_err(|e| db_error("thread", e))?;
    started.recv().map_err(|_| StoreError::Closed)??;
    Ok(Reader {
        jobs: tx,
        config,
        at,
    })
}

impl Reader {
    /// Runs `f` on the reader thread and waits for its answer; a lost
    /// connection is reopened and `f` run again (reads have no effect).
    pub(crate) fn call<T: Send + 'static>(
        &self,
        f: impl Fn(&mut Client) -> Result<T, postgres::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let config = self.config.clone();
        let at = self.at.clone();
        let job = move |slot: &mut Option<Client>| {
            let deadline = Instant::now() + RECONNECT_LIMIT;
            let result = loop {
                let mut client = match slot.take() {
                    Some(c) if !c.is_closed() => c,
                    _ => match connect(&config, &at) {
                        Ok(c) => c,
                        Err(e) => break Err(e),
                    },
                };
                match f(&mut client) {
                    Ok(v) => {
                        *slot = Some(client);
                        break Ok(v);
                    }
                    Err(e) if retryable(&e) && Instant::now() < deadline => {
                        tracing::warn!("event store at {at}: {e}; reconnecting");
                    }
                    Err(e) => {
                        if !client.is_closed() {
                            *slot = Some(client);
                        }
                        break Err(db_error(&at, e));
                    }
                }
            };
            let _ = reply.send(result);
        };
        self.jobs
            .send(Box::new(job))
            .map_err(|_| StoreError::Closed)?;
        answer.recv().map_err(|_| StoreError::Closed)?
    }
}

impl Reader {
    /// Runs `f` on the reader thread without waiting for it (a release
    /// that a `Drop` hands over); a lost connection is reopened once.
    pub(crate) fn cast(
        &self,
        f: impl Fn(&mut Client) -> Result<(), postgres::Error> + Send + 'static,
    ) {
        let (config, at) = (self.config.clone(), self.at.clone());
        let job = move |slot: &mut Option<Client>| {
            for _ in 0..2 {
                let mut client = match slot.take() {
                    Some(c) if !c.is_closed() => c,
                    _ => match connect(&config, &at) {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!("event store at {at}: {e}");
                            return;
                        }
                    },
                };
                let done = f(&mut client);
                if !client.is_closed() {
                    *slot = Some(client);
                }
                match done {
                    Ok(()) => return,
                    Err(e) if retryable(&e) => continue,
                    Err(e) => {
                        tracing::warn!("event store at {at}: {e}");
                        return;
                    }
                }
            }
        };
        let _ = self.jobs.send(Box::new(job));
    }
}

/// Follows other workers' appends: `LISTEN`, and a poll of the head each
/// second in case a notification was lost (as across a reconnect).
pub(crate) fn start_listener(
    config: Config,
    at: String,
    head: Arc<watch::Sender<u64>>,
    stop: Arc<AtomicBool>,
) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name("pgstore-listener".into())
        .spawn(move || {
            let mut client: Option<Client> = None;
            while !stop.load(Ordering::Relaxed) {
                if client.as_ref().is_none_or(Client::is_closed) {
                    let listening = config.connect(NoTls).and_then(|mut c| {
                        c.batch_execute(&format!("LISTEN {CHANNEL}"))?;
                        Ok(c)
                    });
                    match listening {
                        Ok(c) => client = Some(c),
                        Err(e) => {
                            tracing::debug!("event store at {at}: listener: {e}");
                            std::thread::sleep(Duration::from_secs(1));
                            continue;
                        }
                    }
                }
                let c = client.as_mut().expect("connected above");
                let advance = |seq: u64| {
                    head.send_if_modified(|h| {
                        let moved = seq > *h;
                        *h = (*h).max(seq);
                        moved
                    });
                };
                if let Ok(seq) = head_seq(c) {
                    advance(seq);
                }
                let mut notes = c.notifications();
                let mut iter = notes.timeout_iter(Duration::from_secs(1));
                while let Ok(Some(n)) = iter.next() {
                    if let Ok(seq) = n.payload().parse::<u64>() {
                        advance(seq);
                    }
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
            }
        })
        .map_err(|e| db_error("thread", e))?;
    Ok(())
}

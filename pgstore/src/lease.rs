//! A running pass's mailboxes shared among a fleet's workers by leases.
//!
//! The leader lists a pass's mailboxes in `ferry_leases`. Every worker
//! takes free ones with `FOR UPDATE SKIP LOCKED` (never waiting on a row
//! another worker is taking or writing under), each with a version that
//! grows at every taking and an expiry on the server's clock that a thread
//! renews. The store's writer checks holder, version and expiry in the
//! transaction of every append made under a lease, holding the row with
//! `FOR SHARE` until `COMMIT`: a worker whose lease expired (it paused, or
//! lost its connection) is refused, and a takeover waits for no append.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_events::StoreError;
use tokio::sync::watch;

use crate::threads::Reader;

/// The server's clock in Unix microseconds, so that expiries do not depend
/// on the workers' clocks agreeing.
pub(crate) const NOW_US: &str = "(extract(epoch from clock_timestamp()) * 1000000)::bigint";

/// What the writer checks for an append under a lease.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    pub batch: String,
    pub pass_id: u64,
    pub mailbox: String,
    pub version: u64,
    pub worker: String,
}

/// Leases as the columns a statement unnests: batch, pass, mailbox and
/// lease number, one row per lease.
#[derive(Default)]
pub(crate) struct Columns {
    pub batches: Vec<String>,
    pub passes: Vec<i64>,
    pub mailboxes: Vec<String>,
    pub versions: Vec<i64>,
}

impl<'a> FromIterator<&'a Check> for Columns {
    fn from_iter<I: IntoIterator<Item = &'a Check>>(checks: I) -> Columns {
        let mut out = Columns::default();
        for c in checks {
            out.batches.push(c.batch.clone());
            out.passes.push(c.pass_id as i64);
            out.mailboxes.push(c.mailbox.clone());
            out.versions.push(c.version as i64);
        }
        out
    }
}

/// A lease this worker holds, as the store's appends see it.
pub(crate) struct Token {
    check: Check,
    /// When it was taken: a renewal that started earlier says nothing of it.
    since: Instant,
    /// Past this instant the server may already count it expired.
    valid_until: Instant,
    lost: watch::Sender<bool>,
}

/// The leases this worker holds, by the mailbox's stream name.
pub(crate) type Held = Arc<Mutex<HashMap<String, Token>>>;

/// The check for an append to `stream`, if it is under a lease.
pub(crate) fn check_for(held: &Held, stream: &str) -> Option<Check> {
    held.lock().unwrap().get(stream).map(|t| t.check.clone())
}

/// Whether the lease an append was made under still holds now that its
/// answer is in: a worker paused after the `COMMIT` finds out here, before
/// it acts on the answer (such as writing to a mail server).
pub(crate) fn still_holds(held: &Held, stream: &str, check: &Check) -> bool {
    held.lock().unwrap().get(stream).is_some_and(|t| {
        if t.check.version != check.version || *t.lost.borrow() {
            return false;
        }
        // A lapse seen once is final: a renewal that lands later must not
        // revive a lease whose holder was already told to stop writing.
        let holds = Instant::now() < t.valid_until;
        if !holds && !t.lost.send_replace(true) {
            tracing::warn!(mailbox = %t.check.mailbox, lease = t.check.version, "lease expired");
        }
        holds
    })
}

/// Tells the fleet's workers that the lease table changed (see
/// [`crate::FleetCaps::lease_changes`]).
fn notify_leases(c: &mut postgres::Client) -> Result<(), postgres::Error> {
    c.execute(
        "SELECT pg_notify($1, $2)",
        &[&crate::caps::FLEET_CHANNEL, &crate::caps::LEASES_NOTE],
    )?;
    Ok(())
}

/// One mailbox of a pass, leased to this worker.
pub struct Lease {
    pub batch: String,
    pub pass_id: u64,
    pub mailbox: String,
    /// Grows with each taking of this mailbox in this pass.
    pub version: u64,
    /// The worker that held it before, if its lease had expired.
    pub previous: Option<String>,
    lost: watch::Receiver<bool>,
    held: Held,
    check: Check,
}

impl Lease {
    /// Resolves once the lease is lost: not renewed in time, or taken over.
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut lost = self.lost.clone();
        async move {
            let _ = lost.wait_for(|l| *l).await;
        }
    }

    /// Whether this worker may still write for the mailbox: asked before
    /// each write to a mail server, so a worker woken from a pause past its
    /// lease sends nothing more (its successor settles what it left).
    pub fn fence(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let (held, check) = (self.held.clone(), self.check.clone());
        let stream = ferry_events::stream::mailbox(&self.mailbox);
        move || still_holds(&held, &stream, &check)
    }
}

/// A worker of the fleet, as `ferry_workers` shows it.
#[derive(Debug, Clone)]
pub struct WorkerRow {
    pub name: String,
    pub started_us: i64,
    pub heartbeat_us: i64,
}

/// A lease held now, as `ferry_leases` shows it.
#[derive(Debug, Clone)]
pub struct LeaseRow {
    pub batch: String,
    pub pass_id: u64,
    pub mailbox: String,
    pub holder: String,
    pub version: u64,
    pub expires_us: i64,
}

/// What the fleet is doing, read in one go.
#[derive(Debug, Clone)]
pub struct FleetView {
    /// The server's clock when this was read (Unix µs).
    pub now_us: i64,
    pub workers: Vec<WorkerRow>,
    pub leases: Vec<LeaseRow>,
}

/// This worker's side of the fleet's leases.
pub struct Leases {
    worker: String,
    ttl: Duration,
    db: Arc<Reader>,
    held: Held,
}

pub(crate) fn start(
    db: Reader,
    held: Held,
    worker: String,
    ttl: Duration,
    stop: Arc<AtomicBool>,
) -> Result<Leases, StoreError> {
    let db = Arc::new(db);
    let name = worker.clone();
    db.call(move |c| {
        c.execute(
            &format!(
                "INSERT INTO ferry_workers (name, started_us, heartbeat_us) \
                 VALUES ($1, {NOW_US}, {NOW_US}) \
                 ON CONFLICT (name) DO UPDATE SET started_us = {NOW_US}, heartbeat_us = {NOW_US}"
            ),
            &[&name],
        )?;
        // Leases under this name are a dead process's (a restarted worker):
        // given back at once rather than at their expiry.
        c.execute(
            "UPDATE ferry_leases SET holder = NULL, expires_us = 0 WHERE holder = $1 AND NOT done",
            &[&name],
        )
    })?;
    let (renew_db, renew_held, renew_name) = (db.clone(), held.clone(), worker.clone());
    std::thread::Builder::new()
        .name("pgstore-leases".into())
        .spawn(move || {
            // Several renewals fit in one lease: one may be lost to a
            // restart of the server without losing the leases.
            let tick = (ttl / 4).max(Duration::from_millis(100));
            while !stop.load(Ordering::Relaxed) {
                renew(&renew_db, &renew_held, &renew_name, ttl);
                std::thread::sleep(tick);
            }
        })
        .map_err(|e| crate::threads::db_error("thread", e))?;
    Ok(Leases {
        worker,
        ttl,
        db,
        held,
    })
}

/// Beats the heart, extends every lease still this worker's, and marks the
/// others lost (and those not renewed in time).
fn renew(db: &Reader, held: &Held, worker: &str, ttl: Duration) {
    let started = Instant::now();
    let name = worker.to_string();
    let ttl_us = ttl.as_micros() as i64;
    let mine: Vec<Check> = held
        .lock()
        .unwrap()
        .values()
        .map(|t| t.check.clone())
        .collect();
    let keys: Columns = mine.iter().collect();
    let renewed = db.call(move |c| {
        c.execute(
            &format!("UPDATE ferry_workers SET heartbeat_us = {NOW_US} WHERE name = $1"),
            &[&name],
        )?;
        // Only the leases this process took: not an earlier process's
        // under the same name, nor one already lost. One finished by the
        // append of its end still holds until this worker lets it go.
        let rows = c.query(
            &format!(
                "UPDATE ferry_leases l SET expires_us = {NOW_US} + $2 \
                 FROM unnest($3::text[], $4::int8[], $5::text[], $6::int8[]) \
                   AS k(batch, pass_id, mailbox, version) \
                 WHERE l.batch = k.batch AND l.pass_id = k.pass_id AND l.mailbox = k.mailbox \
                   AND l.version = k.version AND l.holder = $1 \
                   AND l.expires_us > {NOW_US} \
                 RETURNING l.batch, l.pass_id, l.mailbox, l.version"
            ),
            &[
                &name,
                &ttl_us,
                &keys.batches,
                &keys.passes,
                &keys.mailboxes,
                &keys.versions,
            ],
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                let key = (r.get::<_, String>(0), r.get::<_, i64>(1) as u64);
                (key, r.get::<_, String>(2), r.get::<_, i64>(3) as u64)
            })
            .collect::<Vec<_>>())
    });
    let mut held = held.lock().unwrap();
    if let Ok(rows) = &renewed {
        for t in held.values_mut().filter(|t| t.since < started) {
            let c = &t.check;
            let still = rows.iter().any(|((b, p), m, v)| {
                *b == c.batch && *p == c.pass_id && *m == c.mailbox && *v == c.version
            });
            if still {
                t.valid_until = started + ttl;
            } else if !t.lost.send_replace(true) {
                tracing::warn!(mailbox = %c.mailbox, lease = c.version, "lease taken over");
            }
        }
    }
    let now = Instant::now();
    for t in held.values().filter(|t| now >= t.valid_until) {
        if !t.lost.send_replace(true) {
            tracing::warn!(mailbox = %t.check.mailbox, lease = t.check.version, "lease expired");
        }
    }
}

impl Leases {
    /// This worker's name in the fleet.
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// Lists a pass's mailboxes to be taken (the leader does, as the pass
    /// starts or resumes); mailboxes already listed are left as they are.
    pub fn open_pass(
        &self,
        batch: &str,
        pass_id: u64,
        mailboxes: &[String],
    ) -> Result<(), StoreError> {
        let (batch, mailboxes) = (batch.to_string(), mailboxes.to_vec());
        self.db.call(move |c| {
            let n = c.execute(
                "INSERT INTO ferry_leases (batch, pass_id, mailbox) \
                 SELECT $1, $2, m FROM unnest($3::text[]) AS m ON CONFLICT DO NOTHING",
                &[&batch, &(pass_id as i64), &mailboxes],
            )?;
            if n > 0 {
                notify_leases(c)?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// A pass's listed mailboxes, and whether each was finished.
    pub fn members(&self, batch: &str, pass_id: u64) -> Result<Vec<(String, bool)>, StoreError> {
        let batch = batch.to_string();
        self.db.call(move |c| {
            let rows = c.query(
                "SELECT mailbox, done FROM ferry_leases WHERE batch = $1 AND pass_id = $2",
                &[&batch, &(pass_id as i64)],
            )?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    /// Takes up to `n` of a pass's mailboxes that nobody holds (or whose
    /// holder let its lease expire).
    pub fn take(&self, batch: &str, pass_id: u64, n: usize) -> Result<Vec<Lease>, StoreError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let since = Instant::now();
        let (b, w, ttl_us) = (
            batch.to_string(),
            self.worker.clone(),
            self.ttl.as_micros() as i64,
        );
        let rows = self.db.call(move |c| {
            let rows = c.query(
                &format!(
                    "WITH free AS ( \
                       SELECT batch, pass_id, mailbox, holder AS was FROM ferry_leases \
                       WHERE batch = $1 AND pass_id = $2 AND NOT done \
                         AND (holder IS NULL OR expires_us <= {NOW_US}) \
                       ORDER BY mailbox LIMIT $3 FOR UPDATE SKIP LOCKED) \
                     UPDATE ferry_leases l SET holder = $4, version = l.version + 1, \
                       expires_us = {NOW_US} + $5 \
                     FROM free WHERE l.batch = free.batch AND l.pass_id = free.pass_id \
                       AND l.mailbox = free.mailbox \
                     RETURNING l.mailbox, l.version, free.was"
                ),
                &[&b, &(pass_id as i64), &(n as i64), &w, &ttl_us],
            )?;
            Ok(rows
                .iter()
                .map(|r| {
                    let was: Option<String> = r.get(2);
                    (r.get::<_, String>(0), r.get::<_, i64>(1) as u64, was)
                })
                .collect::<Vec<_>>())
        })?;
        let mut held = self.held.lock().unwrap();
        Ok(rows
            .into_iter()
            .map(|(mailbox, version, was)| {
                let (lost, watching) = watch::channel(false);
                let check = Check {
                    batch: batch.to_string(),
                    pass_id,
                    mailbox: mailbox.clone(),
                    version,
                    worker: self.worker.clone(),
                };
                held.insert(
                    ferry_events::stream::mailbox(&mailbox),
                    Token {
                        check: check.clone(),
                        since,
                        valid_until: since + self.ttl,
                        lost,
                    },
                );
                Lease {
                    batch: batch.to_string(),
                    pass_id,
                    mailbox,
                    version,
                    // This worker's own lease, lapsed and taken again, too.
                    previous: was,
                    lost: watching,
                    held: self.held.clone(),
                    check,
                }
            })
            .collect())
    }

    /// The mailbox's share of the pass is recorded: nobody takes it again.
    pub fn finish(&self, lease: &Lease) -> Result<(), StoreError> {
        self.end(lease, "done = true")
    }

    /// Gives the mailbox back unfinished (this worker stops): another
    /// worker may take it at once instead of after the expiry.
    pub fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        self.end(lease, "holder = NULL, expires_us = 0")
    }

    fn end(&self, lease: &Lease, set: &'static str) -> Result<(), StoreError> {
        self.held
            .lock()
            .unwrap()
            .remove(&ferry_events::stream::mailbox(&lease.mailbox));
        let (b, m, w) = (
            lease.batch.clone(),
            lease.mailbox.clone(),
            self.worker.clone(),
        );
        let (p, v) = (lease.pass_id as i64, lease.version as i64);
        self.db.call(move |c| {
            c.execute(
                &format!(
                    "UPDATE ferry_leases SET {set} WHERE batch = $1 AND pass_id = $2 \
                     AND mailbox = $3 AND version = $4 AND holder = $5"
                ),
                &[&b, &p, &m, &v, &w],
            )?;
            notify_leases(c)
        })?;
        Ok(())
    }

    /// The fleet's workers and the leases held now.
    pub fn view(&self) -> Result<FleetView, StoreError> {
        self.db.call(|c| {
            let now_us: i64 = c.query_one(&format!("SELECT {NOW_US}"), &[])?.get(0);
            let workers = c
                .query(
                    "SELECT name, started_us, heartbeat_us FROM ferry_workers ORDER BY name",
                    &[],
                )?
                .iter()
                .map(|r| WorkerRow {
                    name: r.get(0),
                    started_us: r.get(1),
                    heartbeat_us: r.get(2),
                })
                .collect();
            let leases = c
                .query(
                    "SELECT batch, pass_id, mailbox, holder, version, expires_us FROM ferry_leases \
                     WHERE NOT done AND holder IS NOT NULL AND expires_us > $1 \
                     ORDER BY batch, mailbox",
                    &[&now_us],
                )?
                .iter()
                .map(|r| LeaseRow {
                    batch: r.get(0),
                    pass_id: r.get::<_, i64>(1) as u64,
                    mailbox: r.get(2),
                    holder: r.get(3),
                    version: r.get::<_, i64>(4) as u64,
                    expires_us: r.get(5),
                })
                .collect();
            Ok(FleetView {
                now_us,
                workers,
                leases,
            })
        })
    }
}

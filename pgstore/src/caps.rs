//! What a fleet's workers share about each endpoint: its connection cap
//! and the back-offs it asked for.
//!
//! A connection to an endpoint is one row of `ferry_slots` (endpoint, n)
//! for n below the endpoint's cap, claimed with `FOR UPDATE SKIP LOCKED`
//! by one worker with a token and an expiry on the server's clock that a
//! thread renews, as leases are. So the sum over the fleet never exceeds
//! the cap. A closed connection gives its row back and notifies the
//! `ferry_fleet` channel, which wakes the waiting workers at once; a dead
//! worker's rows lapse at their expiry (at once when it restarts).
//!
//! A mailbox that finds no free row for its first session on an endpoint
//! is listed in `ferry_slot_waiters` until it gets one, in the order of
//! its first listing, fleet-wide: a mailbox takes a row only while more
//! are free than mailboxes wait ahead of it (a newcomer is behind every
//! listed one), so the waiters of every worker are served first come,
//! first served. A spare session (more folders of a mailbox at once) is
//! taken only while more rows are free than mailboxes wait. Takings of one
//! endpoint are serialised by an advisory lock, so no taking sees a count
//! that another is changing.
//!
//! A back-off an endpoint asked of one worker (`ErrorServerBusy`, 503) is
//! written to `ferry_backoffs` on the server's clock and announced on the
//! same channel with the time left, so every worker waits it out before
//! its next request without asking the database each time.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_events::StoreError;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Config, NoTls};
use tokio::sync::watch;

use crate::lease::NOW_US;
use crate::threads::{Reader, db_error};

/// The channel slot releases and back-offs are announced on.
const CHANNEL: &str = "ferry_fleet";
/// What `ferry_fleet` carries when the table of a pass's mailboxes changes.
pub(crate) const LEASES_NOTE: &str = "leases";
/// The channel's name, for the lease table's notes.
pub(crate) const FLEET_CHANNEL: &str = CHANNEL;
/// The longest a waiter sleeps without news: a lost notification (across a
/// reconnect) costs at most this.
const RECHECK: Duration = Duration::from_secs(2);
/// How long a waiter's row counts unless its next try renews it (each
/// try comes within [`RECHECK`]): a dead worker's waiters stop holding
/// back spares after this.
const WAITER_TTL: Duration = Duration::from_secs(6);
/// The advisory lock class under which one endpoint's slots are taken.
const TAKE_LOCK: i32 = 0x6665_7273;

/// What a taking is for.
#[derive(Clone, Copy)]
enum Take {
    /// A mailbox's first session: waits, listed as waiter `token` while it
    /// does (`listed`: a row of it may exist).
    First { token: i64, listed: bool },
    /// A spare: only while more rows are free than mailboxes wait.
    Spare,
}

/// A slot this worker holds: (endpoint, n) and the token of its taking.
type Key = (String, i32);

struct Shared {
    worker: String,
    ttl: Duration,
    db: Reader,
    held: Mutex<HashMap<Key, i64>>,
    /// Endpoints whose rows exist up to a cap already (saves an insert).
    listed: Mutex<HashSet<(String, u32)>>,
    /// Bumped at each release announced: waiters try again.
    released: watch::Sender<u64>,
    /// By endpoint: no request before this instant.
    backoffs: Mutex<HashMap<String, Instant>>,
    /// Bumped when a pass's mailboxes are listed, finished or given back.
    leases: watch::Sender<u64>,
    /// The last waiter token handed out.
    waiters: AtomicI64,
}

/// This worker's side of the fleet's endpoint caps and back-offs.
#[derive(Clone)]
pub struct FleetCaps(Arc<Shared>);

/// One connection's place under an endpoint's fleet-wide cap; given back
/// when dropped.
pub struct FleetSlot {
    caps: FleetCaps,
    key: Key,
    token: i64,
}

impl Drop for FleetSlot {
    fn drop(&mut self) {
        let s = &self.caps.0;
        s.held.lock().unwrap().remove(&self.key);
        let ((endpoint, n), token) = (self.key.clone(), self.token);
        s.db.cast(move |c| {
            c.execute(
                "UPDATE ferry_slots SET holder = NULL, expires_us = 0 \
                 WHERE endpoint = $1 AND n = $2 AND token = $3",
                &[&endpoint, &n, &token],
            )?;
            c.execute(
                "SELECT pg_notify($1, 'slot\t' || $2)",
                &[&CHANNEL, &endpoint],
            )?;
            Ok(())
        });
    }
}

/// A mailbox waiting for its first slot on an endpoint: its row in
/// `ferry_slot_waiters`, if written, is removed when it stops waiting.
struct Waiter {
    caps: FleetCaps,
    endpoint: String,
    token: i64,
    /// A row may exist.
    listed: bool,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if !self.listed {
            return;
        }
        let s = &self.caps.0;
        let (e, w, token) = (self.endpoint.clone(), s.worker.clone(), self.token);
        s.db.cast(move |c| {
            c.execute(
                "DELETE FROM ferry_slot_waiters WHERE endpoint = $1 AND holder = $2 AND token = $3",
                &[&e, &w, &token],
            )?;
            Ok(())
        });
    }
}

pub(crate) fn start(
    config: Config,
    at: String,
    db: Reader,
    worker: String,
    ttl: Duration,
    stop: Arc<AtomicBool>,
) -> Result<FleetCaps, StoreError> {
    let name = worker.clone();
    // Slots under this name are a dead process's (a restarted worker).
    db.call(move |c| {
        c.execute(
            "UPDATE ferry_slots SET holder = NULL, expires_us = 0 WHERE holder = $1",
            &[&name],
        )?;
        c.execute("DELETE FROM ferry_slot_waiters WHERE holder = $1", &[&name])?;
        c.execute("SELECT pg_notify($1, 'slot')", &[&CHANNEL])?;
        Ok(())
    })?;
    let caps = FleetCaps(Arc::new(Shared {
        worker,
        ttl,
        db,
        held: Mutex::default(),
        listed: Mutex::default(),
        released: watch::channel(0).0,
        backoffs: Mutex::default(),
        leases: watch::channel(0).0,
        waiters: AtomicI64::new(0),
    }));
    let renewing = caps.clone();
    let renew_stop = stop.clone();
    std::thread::Builder::new()
        .name("pgstore-slots".into())
        .spawn(move || {
            let tick = (ttl / 4).max(Duration::from_millis(100));
            while !renew_stop.load(Ordering::Relaxed) {
                renewing.renew();
                std::thread::sleep(tick);
            }
        })
        .map_err(|e| db_error("thread", e))?;
    let listening = caps.clone();
    std::thread::Builder::new()
        .name("pgstore-fleet-listener".into())
        .spawn(move || listening.listen(config, at, stop))
        .map_err(|e| db_error("thread", e))?;
    Ok(caps)
}

impl FleetCaps {
    /// Takes one of `endpoint`'s `cap` slots, waiting for a release (or a
    /// dead holder's expiry) while all are taken.
    /// Listed as a waiter meanwhile, which holds back spares fleet-wide.
    pub async fn acquire(&self, endpoint: &str, cap: u32) -> Result<FleetSlot, StoreError> {
        let mut waiter = Waiter {
            caps: self.clone(),
            endpoint: endpoint.to_string(),
            token: self.0.waiters.fetch_add(1, Ordering::Relaxed) + 1,
            listed: false,
        };
        loop {
            // Subscribed before trying: a release during the try wakes us.
            let mut released = self.0.released.subscribe();
            let (me, e) = (self.clone(), endpoint.to_string());
            let take = Take::First {
                token: waiter.token,
                listed: waiter.listed,
            };
            // Dropped during the try, the row it may have written goes too.
            waiter.listed = true;
            let tried = tokio::task::spawn_blocking(move || me.try_take(&e, cap, take))
                .await
                .map_err(|_| StoreError::Closed)??;
            let wait = match tried {
                Ok(slot) => {
                    waiter.listed = false;
                    return Ok(slot);
                }
                Err(expiry) => expiry.map_or(RECHECK, |d| d.min(RECHECK)),
            };
            tokio::select! {
                _ = released.changed() => {}
                () = tokio::time::sleep(wait + Duration::from_millis(5)) => {}
            }
        }
    }

    /// Takes a slot for a spare session only while more of the `cap` are
    /// free fleet-wide than mailboxes wait for their first (a spare must
    /// not hold one back); `None` when not.
    pub async fn try_acquire(
        &self,
        endpoint: &str,
        cap: u32,
    ) -> Result<Option<FleetSlot>, StoreError> {
        let (me, e) = (self.clone(), endpoint.to_string());
        let tried = tokio::task::spawn_blocking(move || me.try_take(&e, cap, Take::Spare))
            .await
            .map_err(|_| StoreError::Closed)??;
        Ok(tried.ok())
    }

    /// A slot, or when none may be taken, how long until the first held
    /// one lapses (if any is held).
    fn try_take(
        &self,
        endpoint: &str,
        cap: u32,
        take: Take,
    ) -> Result<Result<FleetSlot, Option<Duration>>, StoreError> {
        let s = &self.0;
        let cap = cap.max(1);
        let list = !s
            .listed
            .lock()
            .unwrap()
            .contains(&(endpoint.to_string(), cap));
        let (e, w, ttl_us) = (
            endpoint.to_string(),
            s.worker.clone(),
            s.ttl.as_micros() as i64,
        );
        let cap_i = cap as i32;
        // The waiter row whose place counts: none for a spare, which
        // yields to every waiter.
        let mine = match take {
            Take::First { token, .. } => token,
            Take::Spare => -1,
        };
        let waiter_us = WAITER_TTL.as_micros() as i64;
        let taken = s.db.call(move |c| {
            let mut c = c.transaction()?;
            c.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&TAKE_LOCK, &e],
            )?;
            if list {
                c.execute(
                    "INSERT INTO ferry_slots (endpoint, n) \
                     SELECT $1, g FROM generate_series(0, $2 - 1) AS g ON CONFLICT DO NOTHING",
                    &[&e, &cap_i],
                )?;
            }
            let free =
                format!("endpoint = $1 AND n < $2 AND (holder IS NULL OR expires_us <= {NOW_US})");
            let rows = c.query(
                &format!(
                    "WITH free AS ( \
                       SELECT endpoint, n FROM ferry_slots WHERE {free} \
                         AND (SELECT count(*) FROM ferry_slots WHERE {free}) > \
                           (SELECT count(*) FROM ferry_slot_waiters w \
                            WHERE w.endpoint = $1 AND w.expires_us > {NOW_US} \
                              AND w.place < coalesce((SELECT place FROM ferry_slot_waiters \
                                WHERE endpoint = $1 AND holder = $3 AND token = $5), \
                                9223372036854775807)) \
                       ORDER BY n LIMIT 1 FOR UPDATE SKIP LOCKED) \
                     UPDATE ferry_slots s SET holder = $3, \
                       token = nextval('ferry_slot_tokens'), expires_us = {NOW_US} + $4 \
                     FROM free WHERE s.endpoint = free.endpoint AND s.n = free.n \
                     RETURNING s.n, s.token"
                ),
                &[&e, &cap_i, &w, &ttl_us, &mine],
            )?;
            if let Some(r) = rows.first() {
                if let Take::First {
                    token,
                    listed: true,
                } = take
                {
                    c.execute(
                        "DELETE FROM ferry_slot_waiters \
                         WHERE endpoint = $1 AND holder = $2 AND token = $3",
                        &[&e, &w, &token],
                    )?;
                }
                let got = (r.get::<_, i32>(0), r.get::<_, i64>(1));
                c.commit()?;
                return Ok(Ok(got));
            }
            if let Take::First { token, .. } = take {
                c.execute(
                    &format!(
                        "INSERT INTO ferry_slot_waiters (endpoint, holder, token, expires_us) \
                         VALUES ($1, $2, $3, {NOW_US} + $4) \
                         ON CONFLICT (endpoint, holder, token) \
                         DO UPDATE SET expires_us = EXCLUDED.expires_us"
                    ),
                    &[&e, &w, &token, &waiter_us],
                )?;
            }
            let left: Option<i64> = c
                .query_one(
                    &format!(
                        "SELECT min(expires_us) - {NOW_US} FROM ferry_slots \
                         WHERE endpoint = $1 AND n < $2 AND holder IS NOT NULL"
                    ),
                    &[&e, &cap_i],
                )?
                .get(0);
            c.commit()?;
            Ok(Err(left.map(|us| Duration::from_micros(us.max(0) as u64))))
        })?;
        if list {
            s.listed.lock().unwrap().insert((endpoint.to_string(), cap));
        }
        Ok(taken.map(|(n, token)| {
            let key = (endpoint.to_string(), n);
            s.held.lock().unwrap().insert(key.clone(), token);
            FleetSlot {
                caps: self.clone(),
                key,
                token,
            }
        }))
    }

    /// Extends every slot this worker holds; one lost meanwhile (this
    /// worker paused past its expiry) is only reported: its connection
    /// is already open.
    fn renew(&self) {
        let s = &self.0;
        let mine: Vec<(Key, i64)> = s
            .held
            .lock()
            .unwrap()
            .iter()
            .map(|(k, t)| (k.clone(), *t))
            .collect();
        if mine.is_empty() {
            return;
        }
        let endpoints: Vec<String> = mine.iter().map(|((e, _), _)| e.clone()).collect();
        let ns: Vec<i32> = mine.iter().map(|((_, n), _)| *n).collect();
        let tokens: Vec<i64> = mine.iter().map(|(_, t)| *t).collect();
        let (w, ttl_us) = (s.worker.clone(), s.ttl.as_micros() as i64);
        let renewed = s.db.call(move |c| {
            let rows = c.query(
                &format!(
                    "UPDATE ferry_slots s SET expires_us = {NOW_US} + $2 \
                     FROM unnest($3::text[], $4::int4[], $5::int8[]) AS k(endpoint, n, token) \
                     WHERE s.endpoint = k.endpoint AND s.n = k.n AND s.token = k.token \
                       AND s.holder = $1 \
                     RETURNING s.token"
                ),
                &[&w, &ttl_us, &endpoints, &ns, &tokens],
            )?;
            Ok(rows.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>())
        });
        if let Ok(renewed) = renewed {
            for ((endpoint, n), token) in mine {
                let still_held = s.held.lock().unwrap().contains_key(&(endpoint.clone(), n));
                if still_held && !renewed.contains(&token) {
                    tracing::warn!(%endpoint, slot = n, "connection slot lapsed");
                }
            }
        }
    }

    /// Follows releases and back-offs on the channel; on each (re)connect
    /// reads the back-offs in force and wakes the waiters, since
    /// notifications sent meanwhile are lost.
    fn listen(&self, config: Config, at: String, stop: Arc<AtomicBool>) {
        let mut client: Option<Client> = None;
        while !stop.load(Ordering::Relaxed) {
            if client.as_ref().is_none_or(Client::is_closed) {
                let listening = config.connect(NoTls).and_then(|mut c| {
                    c.batch_execute(&format!("LISTEN {CHANNEL}"))?;
                    let rows = c.query(
                        &format!(
                            "SELECT endpoint, until_us - {NOW_US} FROM ferry_backoffs \
                             WHERE until_us > {NOW_US}"
                        ),
                        &[],
                    )?;
                    for r in rows {
                        self.note_backoff(&r.get::<_, String>(0), r.get(1));
                    }
                    Ok(c)
                });
                match listening {
                    Ok(c) => {
                        client = Some(c);
                        self.0.released.send_modify(|n| *n += 1);
                        self.0.leases.send_modify(|n| *n += 1);
                    }
                    Err(e) => {
                        tracing::debug!("event store at {at}: fleet listener: {e}");
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                }
            }
            let c = client.as_mut().expect("connected above");
            let mut notes = c.notifications();
            let mut iter = notes.timeout_iter(Duration::from_secs(1));
            while let Ok(Some(n)) = iter.next() {
                let mut parts = n.payload().splitn(3, '\t');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some("backoff"), Some(us), Some(endpoint)) => {
                        if let Ok(us) = us.parse::<i64>() {
                            self.note_backoff(endpoint, us);
                        }
                    }
                    (Some(LEASES_NOTE), ..) => {
                        self.0.leases.send_modify(|n| *n += 1);
                    }
                    _ => {
                        self.0.released.send_modify(|n| *n += 1);
                    }
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        }
    }

    fn note_backoff(&self, endpoint: &str, left_us: i64) {
        if left_us <= 0 {
            return;
        }
        let until = Instant::now() + Duration::from_micros(left_us as u64);
        let mut b = self.0.backoffs.lock().unwrap();
        let at = b.entry(endpoint.to_string()).or_insert(until);
        *at = (*at).max(until);
    }

    /// `endpoint` asked this worker to wait `d`: recorded for the fleet
    /// (the database's clock decides when it ends) and announced. Returns
    /// at once; the write happens on the store's thread.
    pub fn back_off(&self, endpoint: &str, d: Duration) {
        let us = d.as_micros().min(i64::MAX as u128) as i64;
        self.note_backoff(endpoint, us);
        let e = endpoint.to_string();
        self.0.db.cast(move |c| {
            c.execute(
                &format!(
                    "INSERT INTO ferry_backoffs (endpoint, until_us) VALUES ($1, {NOW_US} + $2) \
                     ON CONFLICT (endpoint) DO UPDATE \
                     SET until_us = greatest(ferry_backoffs.until_us, EXCLUDED.until_us)"
                ),
                &[&e, &us],
            )?;
            c.execute(
                "SELECT pg_notify($1, 'backoff\t' || $2::int8 || '\t' || $3)",
                &[&CHANNEL, &us, &e],
            )?;
            Ok(())
        });
    }

    /// How long this worker must still wait before its next request to
    /// `endpoint`, as the fleet was told.
    pub fn backoff_left(&self, endpoint: &str) -> Option<Duration> {
        let mut b = self.0.backoffs.lock().unwrap();
        let until = *b.get(endpoint)?;
        let left = until.checked_duration_since(Instant::now());
        if left.is_none() {
            b.remove(endpoint);
        }
        left
    }

    /// Changes when any worker lists, finishes or gives back a pass's
    /// mailbox: a worker looks for work (and the leader for the pass's
    /// end) at once instead of at its next poll.
    pub fn lease_changes(&self) -> watch::Receiver<u64> {
        self.0.leases.subscribe()
    }

    /// How many mailboxes wait for their first session on any of
    /// `endpoints` across the fleet now.
    pub async fn waiting(&self, endpoints: &[&str]) -> Result<u64, StoreError> {
        let me = self.clone();
        let e: Vec<String> = endpoints.iter().map(|e| e.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            me.0.db.call(move |c| {
                let n: i64 = c
                    .query_one(
                        &format!(
                            "SELECT count(*) FROM ferry_slot_waiters \
                             WHERE endpoint = ANY($1) AND expires_us > {NOW_US}"
                        ),
                        &[&e],
                    )?
                    .get(0);
                Ok(n as u64)
            })
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// The slots held now across the fleet, by endpoint and worker (for
    /// status and tests).
    pub fn held_now(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.0.db.call(|c| {
            let rows = c.query(
                &format!(
                    "SELECT endpoint, holder, count(*) FROM ferry_slots \
                     WHERE holder IS NOT NULL AND expires_us > {NOW_US} \
                     GROUP BY endpoint, holder ORDER BY endpoint, holder"
                ),
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect())
        })
    }
}

//! Which worker of a fleet runs the engine and the scheduler.
//!
//! The lead is a PostgreSQL session advisory lock: held while the leader's
//! connection lives, released by the server when it dies. Each new leader
//! bumps `ferry_leader.epoch`; the store's writer checks that epoch in the
//! transaction of every engine and scheduler append, so a worker that lost
//! the lead (its connection cut, a pause longer than the server waits)
//! cannot write once another has taken over.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ferry_events::StoreError;
use ferry_events::time::now_us;
use postgres::{Client, Config, NoTls};
use tokio::sync::watch;

/// The advisory lock's key: any number other users of the database are
/// unlikely to take.
const LEAD_LOCK: i64 = 0x6665_7272_796c_6561;
/// How often a follower asks for the lead and a leader checks it still has it.
const TICK: Duration = Duration::from_secs(1);

/// This worker's part in the fleet's lead.
pub struct Leadership {
    leads: watch::Receiver<bool>,
}

impl Leadership {
    /// Whether this worker leads now.
    pub fn leads(&self) -> bool {
        *self.leads.borrow()
    }

    /// Changes of [`Leadership::leads`].
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.leads.clone()
    }
}

pub(crate) fn start(
    config: Config,
    at: String,
    name: String,
    fence: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Result<Leadership, StoreError> {
    let (tx, rx) = watch::channel(false);
    std::thread::Builder::new()
        .name("pgstore-leader".into())
        .spawn(move || {
            let mut client: Option<Client> = None;
            while !stop.load(Ordering::Relaxed) {
                let held = client.as_mut().and_then(|c| still_held(c).ok());
                match held {
                    Some(true) => {}
                    _ => {
                        if fence.swap(0, Ordering::SeqCst) != 0 {
                            tracing::warn!("lead of the fleet lost (store at {at})");
                        }
                        tx.send_replace(false);
                        client = None;
                        match try_lead(&config, &name) {
                            Ok(Some((c, epoch))) => {
                                fence.store(epoch, Ordering::SeqCst);
                                tx.send_replace(true);
                                tracing::info!(epoch, "this worker leads the fleet");
                                client = Some(c);
                            }
                            Ok(None) => {}
                            Err(e) => tracing::debug!("lead of the fleet at {at}: {e}"),
                        }
                    }
                }
                std::thread::sleep(TICK);
            }
        })
        .map_err(|e| crate::threads::db_error("thread", e))?;
    Ok(Leadership { leads: rx })
}

/// The connection holding the lock and the new epoch, or none if another
/// worker leads. The connection is kept: closing it gives the lead away.
fn try_lead(config: &Config, name: &str) -> Result<Option<(Client, u64)>, postgres::Error> {
    let mut c = config.connect(NoTls)?;
    let got: bool = c
        .query_one("SELECT pg_try_advisory_lock($1)", &[&LEAD_LOCK])?
        .get(0);
    if !got {
        return Ok(None);
    }
    let row = c.query_one(
        "UPDATE ferry_leader SET epoch = epoch + 1, holder = $1, since_us = $2 RETURNING epoch",
        &[&name, &now_us()],
    )?;
    Ok(Some((c, row.get::<_, i64>(0) as u64)))
}

/// Whether the lead's connection is alive (and with it the lock).
fn still_held(c: &mut Client) -> Result<bool, postgres::Error> {
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
             AND pid = pg_backend_pid() AND granted AND objid = ($1::bigint & 4294967295)",
            &[&LEAD_LOCK],
        )?
        .get(0);
    Ok(n > 0)
}

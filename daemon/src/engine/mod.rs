//! The copy engine: passes over batches, one worker per mailbox.
//!
//! - `mod.rs`: the supervisor. It watches the log and starts a batch's
//!   pending pass when it is due, and resumes a pass the log shows started
//!   but not finished (the daemon was stopped or killed during it);
//! - [`pass`]: one pass over a batch, mailboxes in parallel up to the
//!   batch's `max_concurrent`;
//! - [`mailbox`]: one mailbox's share: folders and mapping, then per folder
//!   counting, exactly-once copying, settling in-doubt items and
//!   re-matching after a UIDVALIDITY change by content digest, flags;
//! - [`routing`]: after a cutover's final delta pass, each user's routing actions;
//! - [`connect`]: sessions within each endpoint's connection cap;
//! - [`retry`]: backoff with jitter.
//!
//! Exactly once: before a group of items is appended, their intents are
//! flushed to the log (source key, digest, size, the destination folder's
//! UIDNEXT). After the appends, `ItemCopied` records the destination UIDs.
//! An intent without an outcome is in doubt: before that folder is copied
//! again, the destination's items from that UIDNEXT on are fetched and
//! matched by digest, and only unmatched items are appended again.

pub mod connect;
pub mod keyed;
pub mod mailbox;
pub mod pass;
pub mod plan;
pub mod retry;
pub mod routing;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_events::time::now_us;
use ferry_events::{EndpointSpec, Event, ExpectedVersion, stream};
use ferry_projections::rules::pass_to_run;
use tokio::task::JoinHandle;

use crate::app::App;
use crate::shutdown::Shutdown;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Connector(#[from] ferry_connectors::ConnectorError),
    #[error(transparent)]
    Secret(crate::secrets::SecretError),
    #[error(
        "no credentials for {address} on endpoint {endpoint}: the CSV row has no password and the endpoint no admin login"
    )]
    NoCredentials { address: String, endpoint: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("OAuth token: {0}")]
    Token(String),
    #[error(
        "the endpoint has no admin login to verify with: give --admin-user and --password-file"
    )]
    NoAdmin,
    #[error("event log: {0}")]
    Store(#[from] ferry_events::StoreError),
}

/// Logs in as the endpoint's admin (or opens the Maildir) and lists capabilities.
pub async fn verify_endpoint(
    app: &App,
    name: &str,
    spec: &EndpointSpec,
    as_user: Option<&str>,
) -> Result<Vec<String>, EngineError> {
    connect::verify(app, name, spec, as_user).await
}

pub use crate::budget::Budget;

/// What every pass shares.
pub struct Engine {
    pub app: Arc<App>,
    pub caps: connect::Caps,
    /// Message bytes in flight across every mailbox worker.
    pub budget: Arc<Budget>,
    pub shutdown: Shutdown,
    running: Mutex<HashMap<String, JoinHandle<()>>>,
    /// Passes this worker listed for the fleet's workers while leading.
    opened: Mutex<std::collections::HashSet<(String, u64)>>,
}

impl Engine {
    pub fn draining(&self) -> bool {
        self.shutdown.is_shutdown()
    }

    /// Whether this engine starts and ends passes: always, unless it is a
    /// fleet's worker that does not lead.
    pub fn leads(&self) -> bool {
        self.app.leadership.as_ref().is_none_or(|l| l.leads())
    }

    /// Lists a fleet's pass's mailboxes for the workers to take, once per
    /// pass while this worker leads (again after a takeover of the lead:
    /// the listing keeps what is there).
    /// Whether the pass is listed.
    pub(super) async fn open_for_fleet(
        &self,
        leases: &Arc<ferry_pgstore::Leases>,
        batch: &str,
        id: u64,
    ) -> bool {
        let key = (batch.to_string(), id);
        if self.opened.lock().unwrap().contains(&key) {
            return true;
        }
        let Some((todo, _, _)) = pass::todo(&self.app, batch, id) else {
            return false;
        };
        let names: Vec<String> = todo.into_iter().map(|m| m.address).collect();
        let (l, b) = (leases.clone(), batch.to_string());
        let res = tokio::task::spawn_blocking(move || l.open_pass(&b, id, &names)).await;
        match res {
            Ok(Ok(())) => {
                self.opened.lock().unwrap().insert(key);
                true
            }
            Ok(Err(e)) => {
                tracing::warn!(%batch, error = %e, "pass not opened to the fleet");
                false
            }
            Err(e) => {
                tracing::warn!(%batch, error = %e, "pass not opened to the fleet");
                false
            }
        }
    }

    /// Starts what is due: resumed passes first, then pending ones.
    async fn scan(self: &Arc<Self>) {
        let now = now_us();
        let to_start: Vec<_> = {
            let mut running = self.running.lock().unwrap();
            running.retain(|_, h| !h.is_finished());
            let views = self.app.views.read().unwrap();
            views
                .batches
                .values()
                .filter(|b| !running.contains_key(&b.name))
                .filter_map(|b| {
                    let (p, resumed) = pass_to_run(b, now)?;
                    Some((b.name.clone(), p, resumed, b.version))
                })
                .collect()
        };
        for (batch, p, resumed, version) in to_start {
            // In a fleet only the leader starts passes; every worker shares them.
            if !resumed && !self.leads() {
                continue;
            }
            if !resumed {
                let res = self
                    .app
                    .append(
                        &stream::batch(&batch),
                        ExpectedVersion::Exact(version),
                        ferry_events::Actor::Engine,
                        vec![Event::PassStarted {
                            batch: batch.clone(),
                            pass_id: p.id,
                            pass: p.pass,
                        }],
                    )
                    .await;
                if let Err(e) = res {
                    // A command changed the batch meanwhile: look again next scan.
                    tracing::debug!(%batch, error = %e, "pass not started");
                    continue;
                }
            } else if self.app.leases.is_none() {
                tracing::info!(%batch, pass = p.pass.as_str(), "resuming interrupted pass");
            }
            let engine = self.clone();
            let name = batch.clone();
            let handle = match self.app.leases.clone() {
                None => tokio::spawn(async move {
                    pass::run(engine, name, p.id, p.pass, p.older_than_days).await;
                }),
                Some(leases) => tokio::spawn(async move {
                    pass::share(engine, leases, name, p.id, p.pass, p.older_than_days).await;
                }),
            };
            self.running.lock().unwrap().insert(batch, handle);
        }
    }
}

/// Starts the engine; it stops taking work when `shutdown` turns true and
/// returns once the passes in flight have reached a safe point.
pub fn spawn(app: Arc<App>, shutdown: Shutdown) -> JoinHandle<()> {
    tokio::spawn(async move {
        let engine = Arc::new(Engine {
            caps: connect::Caps::default(),
            budget: app.budget.clone(),
            shutdown: shutdown.clone(),
            running: Mutex::new(HashMap::new()),
            opened: Mutex::new(Default::default()),
            app: app.clone(),
        });
        let mut head = app.views_head.subscribe();
        let mut stop = shutdown;
        let mut led = false;
        loop {
            // Cutovers left mid-routing are the leader's to finish.
            let leads = engine.leads();
            if leads && !led {
                routing::resume(&engine).await;
            }
            if !leads {
                engine.opened.lock().unwrap().clear();
            }
            led = leads;
            engine.scan().await;
            tokio::select! {
                _ = head.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                () = stop.wait() => break,
            }
        }
        let handles: Vec<_> = engine.running.lock().unwrap().drain().collect();
        for (batch, h) in handles {
            if let Err(e) = h.await {
                tracing::error!(%batch, error = %e, "pass task failed");
            }
        }
    })
}

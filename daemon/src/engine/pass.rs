//! One pass over a batch: its mailboxes in parallel, up to `max_concurrent`.

use std::sync::Arc;

use ferry_connectors::imap::WriteFence;
use ferry_events::{Actor, Event, ExpectedVersion, MailboxSpec, Outcome, PassKind, stream};
use ferry_projections::batches::PassPurpose;
use ferry_projections::mailboxes::MailboxView;
use tokio::sync::Semaphore;

use super::Engine;
use super::mailbox::{self, Ended};
use crate::app::App;

/// A pass's mailboxes still to do, how many at once, and what it is for.
pub(super) fn todo(
    app: &App,
    batch: &str,
    pass_id: u64,
) -> Option<(Vec<MailboxSpec>, usize, PassPurpose)> {
    let views = app.views.read().unwrap();
    let b = views.batches.get(batch)?;
    let purpose = b
        .passes
        .iter()
        .rev()
        .find(|p| p.id == pass_id)
        .map(|p| p.purpose.clone())
        .unwrap_or_default();
    let only = match &purpose {
        PassPurpose::Cutover { mailboxes } => Some(mailboxes),
        _ => None,
    };
    // A resumed pass skips the mailboxes that already finished it.
    let todo: Vec<_> = b
        .mailboxes
        .iter()
        .filter(|m| only.is_none_or(|o| o.contains(m)))
        .filter_map(|m| views.mailboxes.get(m))
        .filter(|m| m.cut_over_us.is_none() && !finished(m, pass_id))
        .map(|m| m.spec.clone())
        .collect();
    Some((todo, b.options.max_concurrent.max(1) as usize, purpose))
}

/// Whether the mailbox's share of the pass is recorded.
fn finished(m: &MailboxView, pass_id: u64) -> bool {
    m.last_pass
        .as_ref()
        .is_some_and(|p| p.id == pass_id && p.outcome.is_some())
}

pub async fn run(
    engine: Arc<Engine>,
    batch: String,
    pass_id: u64,
    kind: PassKind,
    older_than_days: Option<u32>,
) {
    let Some((mailboxes, max, purpose)) = todo(&engine.app, &batch, pass_id) else {
        return;
    };
    tracing::info!(%batch, pass = kind.as_str(), mailboxes = mailboxes.len(), "pass running");
    let slots = Arc::new(Semaphore::new(max));
    let mut tasks = Vec::new();
    for mb in mailboxes {
        let engine = engine.clone();
        let batch = batch.clone();
        let slots = slots.clone();
        let address = mb.address.clone();
        tasks.push((
            address,
            tokio::spawn(async move {
                let _slot = slots.acquire_owned().await.expect("never closed");
                mailbox::run(&engine, &batch, pass_id, kind, older_than_days, mb).await
            }),
        ));
    }
    let mut ended = Vec::new();
    for (address, t) in tasks {
        match t.await {
            Ok(e) => ended.push(e),
            Err(e) => {
                // Recorded, or the pass would count only the mailboxes
                // that ended well and say it succeeded.
                tracing::error!(%batch, mailbox = %address, error = %e, "mailbox task panicked");
                let failed = Event::MailboxPassFinished {
                    mailbox: address.clone(),
                    pass_id,
                    outcome: Outcome::Failed,
                    detail: format!("internal error: {e}"),
                };
                let stream = stream::mailbox(&address);
                let app = &engine.app;
                let _ = app
                    .append(&stream, ExpectedVersion::Any, Actor::Engine, vec![failed])
                    .await;
                ended.push(Ended::Done(Outcome::Failed));
            }
        }
    }
    if ended.iter().any(|e| matches!(e, Ended::Drained)) {
        // The daemon is stopping: the pass resumes at the next start.
        tracing::info!(%batch, "pass interrupted by shutdown; it resumes at the next start");
        return;
    }
    finish(&engine, &batch, pass_id, kind, purpose).await;
}

/// Records the pass's end from its mailboxes' outcomes (and, after a
/// cutover's final pass, routes its users).
async fn finish(
    engine: &Arc<Engine>,
    batch: &str,
    pass_id: u64,
    kind: PassKind,
    purpose: PassPurpose,
) {
    let batch = batch.to_string();
    let outcome = aggregate(&engine.app, &batch, pass_id);
    let mut events = vec![Event::PassFinished {
        batch: batch.clone(),
        pass_id,
        outcome,
    }];
    if purpose == PassPurpose::Completion
        && matches!(outcome, Outcome::Succeeded | Outcome::SucceededWithErrors)
    {
        events.push(Event::BatchCompleted {
            batch: batch.clone(),
            with_errors: outcome == Outcome::SucceededWithErrors,
        });
    }
    let res = engine
        .app
        .append(
            &stream::batch(&batch),
            ExpectedVersion::Any,
            Actor::Engine,
            events,
        )
        .await;
    match res {
        Ok(_) => tracing::info!(%batch, pass = kind.as_str(), ?outcome, "pass finished"),
        Err(e) => {
            tracing::error!(%batch, error = %e, "pass outcome not recorded");
            return;
        }
    }
    if let PassPurpose::Cutover { mailboxes } = purpose {
        super::routing::route(engine, &batch, pass_id, &mailboxes).await;
    }
}

/// The batch's outcome from its mailboxes' outcomes for this pass.
fn aggregate(app: &App, batch: &str, pass_id: u64) -> Outcome {
    let views = app.views.read().unwrap();
    let Some(b) = views.batches.get(batch) else {
        return Outcome::Stopped;
    };
    let outcomes: Vec<Outcome> = b
        .mailboxes
        .iter()
        .filter_map(|m| views.mailboxes.get(m))
        .filter_map(|m| m.last_pass.as_ref())
        .filter(|p| p.id == pass_id)
        .filter_map(|p| p.outcome)
        .collect();
    if outcomes.contains(&Outcome::Stopped) {
        Outcome::Stopped
    } else if !outcomes.is_empty() && outcomes.iter().all(|o| *o == Outcome::Failed) {
        Outcome::Failed
    } else if outcomes.iter().any(|o| *o != Outcome::Succeeded) {
        Outcome::SucceededWithErrors
    } else {
        Outcome::Succeeded
    }
}

/// How often a fleet's worker looks for mailboxes to take and its leader
/// for the pass's end, without a note from the store (see `lease_note`).
const SHARE_TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// Resolves when the fleet's lease table changed; never without a fleet.
async fn lease_note(noted: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    let changed = match noted {
        Some(n) => n.changed().await.is_ok(),
        None => false,
    };
    if !changed {
        std::future::pending::<()>().await;
    }
}

/// This worker's share of a fleet's running pass: it takes the pass's free
/// mailboxes by lease, up to the batch's `max_concurrent` at a time, until
/// none is left; the leader records the pass's end once every mailbox's
/// share is recorded, whoever ran it.
pub async fn share(
    engine: Arc<Engine>,
    leases: Arc<ferry_pgstore::Leases>,
    batch: String,
    pass_id: u64,
    kind: PassKind,
    older_than_days: Option<u32>,
) {
    let mut running = tokio::task::JoinSet::new();
    let mut shutdown = engine.shutdown.clone();
    // Another worker's listing or finishing wakes this loop at once; the
    // tick stays for what no note announces (a lease lapsing).
    let mut noted = engine.app.fleet_caps.as_ref().map(|c| c.lease_changes());
    loop {
        let (runs, max) = {
            let views = engine.app.views.read().unwrap();
            let b = views.batches.get(&batch);
            let runs = b
                .and_then(|b| b.running_pass())
                .is_some_and(|p| p.id == pass_id);
            let max = b.map_or(1, |b| b.options.max_concurrent.max(1) as usize);
            (runs, max)
        };
        if !runs || engine.draining() {
            break;
        }
        // The leader lists the pass's mailboxes first (again after taking
        // the lead over: the dead leader may not have).
        let listed = engine.leads() && engine.open_for_fleet(&leases, &batch, pass_id).await;
        let free = max.saturating_sub(running.len());
        if free > 0 {
            let (l, b) = (leases.clone(), batch.clone());
            match blocking(move || l.take(&b, pass_id, free)).await {
                Ok(taken) => {
                    for lease in taken {
                        let (engine, leases) = (engine.clone(), leases.clone());
                        running.spawn(leased(engine, leases, lease, kind, older_than_days));
                    }
                }
                Err(e) => tracing::warn!(%batch, error = %e, "no mailboxes taken"),
            }
        }
        if running.is_empty() && listed && all_done(&engine, &leases, &batch, pass_id).await {
            let purpose = todo(&engine.app, &batch, pass_id).map(|t| t.2);
            finish(&engine, &batch, pass_id, kind, purpose.unwrap_or_default()).await;
            break;
        }
        tokio::select! {
            _ = running.join_next(), if !running.is_empty() => {}
            _ = tokio::time::sleep(SHARE_TICK) => {}
            () = lease_note(&mut noted) => {}
            () = shutdown.wait() => {}
        }
    }
    // Stopping (or the pass ended meanwhile): the mailboxes in flight stop
    // at a safe point and their leases are given back.
    while running.join_next().await.is_some() {}
}

/// Whether every mailbox the pass listed is finished; the views are then
/// brought up to date, so the pass's outcome counts every mailbox's.
async fn all_done(
    engine: &Arc<Engine>,
    leases: &Arc<ferry_pgstore::Leases>,
    batch: &str,
    pass_id: u64,
) -> bool {
    let (l, b) = (leases.clone(), batch.to_string());
    match blocking(move || l.members(&b, pass_id)).await {
        Ok(members) if members.iter().all(|(_, done)| *done) => {
            let app = engine.app.clone();
            let _ = tokio::task::spawn_blocking(move || app.catch_up()).await;
            true
        }
        Ok(_) => false,
        Err(e) => {
            tracing::warn!(%batch, error = %e, "the pass's mailboxes not read");
            false
        }
    }
}

/// One mailbox under this worker's lease: the pass's work for it, dropped
/// at once if the lease is lost (whoever takes the mailbox next settles
/// what was in doubt, as after a crash).
async fn leased(
    engine: Arc<Engine>,
    leases: Arc<ferry_pgstore::Leases>,
    lease: ferry_pgstore::Lease,
    kind: PassKind,
    older_than_days: Option<u32>,
) {
    let app = engine.app.clone();
    // Whoever held it before may have recorded its end and died before
    // saying so to the lease table.
    let _ = tokio::task::spawn_blocking({
        let app = app.clone();
        move || app.catch_up()
    })
    .await;
    let spec = {
        let views = app.views.read().unwrap();
        views
            .mailboxes
            .get(&lease.mailbox)
            .map(|m| (finished(m, lease.pass_id), m.spec.clone()))
    };
    let ended = match spec {
        None | Some((true, _)) => Some(Ended::Done(Outcome::Succeeded)),
        Some((false, spec)) => {
            let taken = Event::MailboxLeased {
                mailbox: lease.mailbox.clone(),
                batch: lease.batch.clone(),
                pass_id: lease.pass_id,
                worker: leases.worker().to_string(),
                lease: lease.version,
                previous: lease.previous.clone(),
            };
            let stream = stream::mailbox(&lease.mailbox);
            match app
                .append(&stream, ExpectedVersion::Any, Actor::Engine, vec![taken])
                .await
            {
                Err(e) => {
                    tracing::warn!(mailbox = %lease.mailbox, error = %e, "lease not recorded");
                    None
                }
                Ok(_) => {
                    tracing::info!(mailbox = %lease.mailbox, lease = lease.version,
                        previous = ?lease.previous, "mailbox taken");
                    let (batch, pass_id) = (lease.batch.clone(), lease.pass_id);
                    let fence: WriteFence = Arc::new(lease.fence());
                    app.fences
                        .lock()
                        .unwrap()
                        .insert(lease.mailbox.clone(), fence.clone());
                    let work = mailbox::run(&engine, &batch, pass_id, kind, older_than_days, spec);
                    let ended = tokio::select! {
                        e = work => Some(e),
                        () = lease.lost() => {
                            tracing::warn!(mailbox = %lease.mailbox, lease = lease.version,
                                "lease lost: this worker's work on the mailbox stops");
                            None
                        }
                    };
                    let mut fences = app.fences.lock().unwrap();
                    if fences
                        .get(&lease.mailbox)
                        .is_some_and(|f| Arc::ptr_eq(f, &fence))
                    {
                        fences.remove(&lease.mailbox);
                    }
                    ended
                }
            }
        }
    };
    let done = matches!(ended, Some(Ended::Done(_)));
    let res = blocking(move || {
        if done {
            leases.finish(&lease)
        } else {
            leases.release(&lease)
        }
    })
    .await;
    if let Err(e) = res {
        tracing::warn!(error = %e, "lease not ended; it expires by itself");
    }
}

/// Runs a call to the store's blocking client off the runtime's threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ferry_events::StoreError> + Send + 'static,
) -> Result<T, ferry_events::StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ferry_events::StoreError::Closed)?
}

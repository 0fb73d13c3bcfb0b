//! One pass over a batch: its mailboxes in parallel, up to `max_concurrent`.

use std::sync::Arc;

use ferry_events::{Actor, Event, ExpectedVersion, Outcome, PassKind, stream};
use ferry_projections::batches::PassPurpose;
use tokio::sync::Semaphore;

use super::Engine;
use super::mailbox::{self, Ended};
use crate::app::App;

pub async fn run(
    engine: Arc<Engine>,
    batch: String,
    pass_id: u64,
    kind: PassKind,
    older_than_days: Option<u32>,
) {
    let (mailboxes, max, purpose) = {
        let views = engine.app.views.read().unwrap();
        let Some(b) = views.batches.get(&batch) else {
            return;
        };
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
            .filter(|m| {
                m.cut_over_us.is_none()
                    && !m
                        .last_pass
                        .as_ref()
                        .is_some_and(|p| p.id == pass_id && p.outcome.is_some())
            })
            .map(|m| m.spec.clone())
            .collect();
        (todo, b.options.max_concurrent.max(1) as usize, purpose)
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
        super::routing::route(&engine, &batch, pass_id, &mailboxes).await;
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

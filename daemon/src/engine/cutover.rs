//! After a cutover's final delta pass: each user's routing actions, each
//! recorded with its outcome, then the user is cut over.
//!
//! The actions run at least once: a crash between an action and its event
//! runs it again at the next start, so runbooks are idempotent and hooks
//! should be too.

use std::sync::Arc;

use ferry_events::{Actor, Event, ExpectedVersion, Outcome, stream};
use ferry_projections::CutoverStage;
use ferry_projections::mailboxes::ABANDONED;

use super::Engine;

/// Routes every mailbox of `mailboxes` whose cutover pass `pass_id` ended.
pub async fn route(engine: &Arc<Engine>, batch: &str, pass_id: u64, mailboxes: &[String]) {
    for address in mailboxes {
        let stage = engine.app.views.read().unwrap().cutover_stage(address);
        match stage {
            CutoverStage::Routing {
                pass_id: id,
                forced,
            } if id == pass_id => {
                if let Err(e) = route_one(engine, batch, pass_id, address, forced).await {
                    tracing::error!(%batch, mailbox = %address, error = %e, "cutover not recorded");
                }
            }
            _ => {}
        }
    }
}

/// Routing owed from before a restart (the daemon stopped mid-cutover).
pub async fn resume(engine: &Arc<Engine>) {
    let owed: Vec<(String, u64, String)> = {
        let views = engine.app.views.read().unwrap();
        views
            .mailboxes
            .values()
            .filter_map(|m| match views.cutover_stage(&m.address) {
                CutoverStage::Routing { pass_id, .. } => {
                    Some((m.batch.clone(), pass_id, m.address.clone()))
                }
                _ => None,
            })
            .collect()
    };
    for (batch, pass_id, address) in owed {
        tracing::info!(%batch, mailbox = %address, "resuming an interrupted cutover");
        route(engine, &batch, pass_id, std::slice::from_ref(&address)).await;
    }
}

async fn route_one(
    engine: &Arc<Engine>,
    batch: &str,
    pass_id: u64,
    address: &str,
    forced: bool,
) -> Result<(), ferry_events::StoreError> {
    let final_pass = {
        let views = engine.app.views.read().unwrap();
        views
            .mailboxes
            .get(address)
            .and_then(|m| m.last_pass.clone())
            .filter(|p| p.id == pass_id)
    };
    let (outcome, detail) = match &final_pass {
        Some(p) => (p.outcome, p.detail.clone()),
        None => (
            None,
            "the final delta pass did not reach this mailbox".into(),
        ),
    };
    let synced = matches!(
        outcome,
        Some(Outcome::Succeeded | Outcome::SucceededWithErrors)
    );
    let app = &engine.app;
    let stream = stream::mailbox(address);
    if !synced && !forced {
        let why = match outcome {
            Some(o) => format!("final delta pass {o:?}"),
            None => "no final delta pass".into(),
        };
        let detail = if detail.is_empty() {
            format!("{why}; routing unchanged; run the cutover again")
        } else {
            format!("{why}: {detail}; routing unchanged; run the cutover again")
        };
        app.append(
            &stream,
            ExpectedVersion::Any,
            Actor::Engine,
            vec![Event::RoutingAction {
                mailbox: address.to_string(),
                batch: batch.to_string(),
                action: ABANDONED.into(),
                ok: false,
                detail,
            }],
        )
        .await?;
        return Ok(());
    }
    app.append(
        &stream,
        ExpectedVersion::Any,
        Actor::Engine,
        vec![Event::UserCutOver {
            mailbox: address.to_string(),
            batch: batch.to_string(),
            forced,
        }],
    )
    .await?;
    Ok(())
}

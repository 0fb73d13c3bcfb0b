//! After a cutover's final delta pass: each user's routing actions (the
//! PowerShell runbooks written, the configured hook run), each recorded
//! with its outcome; then the user is cut over, or, when an action failed,
//! the cutover is abandoned and can be run again.
//!
//! The actions run at least once: a crash between an action and its event
//! runs it again at the next start, so runbooks are idempotent and hooks
//! should be too.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ferry_events::{Actor, Event, ExpectedVersion, Outcome, stream};
use ferry_exchange::hooks::{self, Payload};
use ferry_exchange::runbook::{self, CutoverRunbook, User};
use ferry_projections::CutoverStage;
use ferry_projections::mailboxes::ABANDONED;

use super::Engine;
use crate::app::App;

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
    let destination = {
        let views = app.views.read().unwrap();
        views
            .mailboxes
            .get(address)
            .map(|m| m.spec.destination_address.clone())
            .unwrap_or_default()
    };
    let (cutover, runbook_dir, timeout) = {
        let c = app.config.read().unwrap();
        (
            c.cutover.clone(),
            c.cutover
                .runbook_dir
                .clone()
                .unwrap_or_else(|| c.data_dir.join("runbooks")),
            Duration::from_secs(c.cutover.hook_timeout_s.max(1)),
        )
    };
    let action = |action: &str, ok: bool, detail: String| Event::RoutingAction {
        mailbox: address.to_string(),
        batch: batch.to_string(),
        action: action.to_string(),
        ok,
        detail,
    };

    let tenant = destination_tenant(app, batch);
    let (ok, detail) = write_runbooks(&runbook_dir, batch, address, &destination, tenant);
    let mut all_ok = ok;
    app.append(
        &stream,
        ExpectedVersion::Any,
        Actor::Engine,
        vec![action("runbook", ok, detail)],
    )
    .await?;
    if let Some(hook) = &cutover.hook {
        let payload = Payload::cutover(address, batch, address, &destination, forced);
        let out = hooks::run(hook, &payload, timeout).await;
        all_ok &= out.ok;
        app.append(
            &stream,
            ExpectedVersion::Any,
            Actor::Engine,
            vec![action("hook", out.ok, out.detail)],
        )
        .await?;
    }
    let last = if all_ok {
        Event::UserCutOver {
            mailbox: address.to_string(),
            batch: batch.to_string(),
            forced,
        }
    } else {
        action(
            ABANDONED,
            false,
            "a routing action failed (see above); the user is not cut over; fix it and run the cutover again".into(),
        )
    };
    app.append(&stream, ExpectedVersion::Any, Actor::Engine, vec![last])
        .await?;
    Ok(())
}

/// The tenant the batch's destination endpoint signs in to, if any.
fn destination_tenant(app: &App, batch: &str) -> Option<String> {
    let views = app.views.read().unwrap();
    let b = views.batches.get(batch)?;
    let g = views.endpoints.get(&b.destination)?.graph.as_ref()?;
    Some(g.tenant.clone())
}

/// Writes the user's cutover runbooks under `dir/BATCH/`; returns the
/// outcome for the `RoutingAction` event.
fn write_runbooks(
    dir: &Path,
    batch: &str,
    source: &str,
    destination: &str,
    tenant: Option<String>,
) -> (bool, String) {
    let user = User {
        source: source.to_string(),
        destination: destination.to_string(),
    };
    let mut rb = CutoverRunbook::new(batch, user);
    rb.tenant = tenant;
    let books = runbook::cutover(&rb);
    let dir = dir.join(runbook::file_part(batch));
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        for b in &books {
            std::fs::write(dir.join(&b.file_name), &b.text)?;
        }
        Ok(())
    });
    match written {
        Ok(()) => (
            true,
            format!(
                "wrote {} in {}",
                books
                    .iter()
                    .map(|b| b.file_name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                dir.display()
            ),
        ),
        Err(e) => (false, format!("writing runbooks in {}: {e}", dir.display())),
    }
}

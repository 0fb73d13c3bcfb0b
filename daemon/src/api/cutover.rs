//! `cutover ADDRESS...`: a final delta pass for those mailboxes, then
//! their routing actions (the engine's [`crate::engine::routing`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use ferry_api::ApiError;
use ferry_api::wire::Response;
use ferry_events::{Actor, Event, ExpectedVersion, StoreError, stream};

use super::{conflict, done, invalid, store_error};
use crate::app::App;
use ferry_projections::rules::{Command, cutover_refusals};

pub async fn cutover(
    app: &Arc<App>,
    actor: Actor,
    addresses: Vec<String>,
    force: bool,
) -> Result<Response, ApiError> {
    if addresses.is_empty() {
        return Err(invalid("name at least one mailbox to cut over"));
    }
    let mut wanted: Vec<String> = addresses.iter().map(|a| a.trim().to_lowercase()).collect();
    wanted.sort();
    wanted.dedup();
    let _guard = app.commands.lock().await;
    let per_batch = decide(app, &wanted, force)?;
    let mut last = Vec::new();
    for (batch, (mut version, mailboxes, mut overridden)) in per_batch {
        let mut attempts = 0;
        loop {
            let res = app
                .append(
                    &stream::batch(&batch),
                    ExpectedVersion::Exact(version),
                    actor.clone(),
                    vec![Event::CutoverRequested {
                        batch: batch.clone(),
                        mailboxes: mailboxes.clone(),
                        forced: force,
                        overridden: overridden.clone(),
                    }],
                )
                .await;
            match res {
                Ok(envs) => {
                    last = envs;
                    break;
                }
                // The engine, the scheduler or another worker wrote to the
                // batch meanwhile: its mailboxes are decided again on the
                // views that include it.
                Err(StoreError::WrongVersion { .. }) if attempts < 5 => {
                    attempts += 1;
                    app.catch_up();
                    let again = decide(app, &mailboxes, force)?;
                    match again.into_iter().next() {
                        Some((b, (v, _, o))) if b == batch => (version, overridden) = (v, o),
                        _ => {
                            return Err(conflict(format!(
                                "the mailboxes of batch {batch} moved while the cutover was recorded; check and retry"
                            )));
                        }
                    }
                }
                Err(e) => return Err(store_error(e)),
            }
        }
    }
    Ok(done(
        format!(
            "cutover of {}: a final delta pass, then routing",
            wanted.join(", ")
        ),
        &last,
    ))
}

/// Per batch: its version, the mailboxes cut over, the refusals `--force`
/// overrode.
type PerBatch = BTreeMap<String, (u64, Vec<String>, Vec<String>)>;

/// The cutover of `wanted` per batch; refused as a whole when any mailbox
/// is.
fn decide(app: &App, wanted: &[String], force: bool) -> Result<PerBatch, ApiError> {
    let mut per_batch = PerBatch::new();
    let views = app.views.read().unwrap();
    let mut hard = Vec::new();
    let mut soft = Vec::new();
    for a in wanted {
        let (_, b) = super::mailbox_for(&views, a, &Command::Cutover)?;
        let entry = per_batch
            .entry(b.name.clone())
            .or_insert_with(|| (b.version, Vec::new(), Vec::new()));
        entry.1.push(a.clone());
        for (why, forceable) in cutover_refusals(&views, a) {
            if forceable {
                entry.2.push(why.clone());
                soft.push(why);
            } else {
                hard.push(why);
            }
        }
    }
    if !hard.is_empty() {
        return Err(conflict(hard.join("; ")));
    }
    if !soft.is_empty() && !force {
        return Err(conflict(format!(
            "{}; --force cuts over anyway (recorded)",
            soft.join("; ")
        )));
    }
    Ok(per_batch)
}

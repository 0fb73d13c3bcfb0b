//! `batch plan`: a dry run of a full pass. The one handler besides
//! `endpoint verify` and the MX commands that talks to mail servers; it
//! only reads from them and records nothing.

use std::sync::Arc;

use ferry_api::wire::{ApiError, BatchPlan, PlanView, Response};
use ferry_connectors::mapping::FolderPlan;

use super::{invalid, not_found};
use crate::app::App;

pub async fn plan(app: &Arc<App>, req: BatchPlan) -> Result<Response, ApiError> {
    let (mut options, source, destination, mailboxes) = {
        let views = app.views.read().unwrap();
        let b = views
            .batches
            .get(&req.name)
            .ok_or_else(|| not_found("batch", &req.name))?;
        let endpoint = |name: &str| {
            views
                .endpoints
                .get(name)
                .map(|e| (name.to_string(), e.spec.clone()))
                .ok_or_else(|| not_found("endpoint", name))
        };
        let mailboxes: Vec<_> = b
            .mailboxes
            .iter()
            .filter_map(|m| views.mailboxes.get(m).map(|v| v.spec.clone()))
            .collect();
        (
            b.options.clone(),
            endpoint(&b.source)?,
            endpoint(&b.destination)?,
            mailboxes,
        )
    };
    // Each list given replaces the batch's own, for this plan only.
    for (given, own) in [
        (req.folder_rules, &mut options.folder_rules),
        (req.include_folders, &mut options.include_folders),
        (req.exclude_folders, &mut options.exclude_folders),
    ] {
        if !given.is_empty() {
            *own = given;
        }
    }
    let map = FolderPlan::new(
        &options.folder_rules,
        &options.include_folders,
        &options.exclude_folders,
    )
    .map_err(|e| invalid(e.to_string()))?;
    let mailboxes =
        crate::engine::plan::plan(app, &options, &map, &source, &destination, &mailboxes).await;
    Ok(Response::Plan(PlanView {
        batch: req.name,
        mailboxes,
    }))
}

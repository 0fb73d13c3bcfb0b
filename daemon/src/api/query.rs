//! Read-only requests: status, show, list, events.

use std::sync::Arc;
use std::time::Duration;

use ferry_api::ApiError;
use ferry_api::audit::{self, ExportQuery, Format};
use ferry_api::wire::{
    BatchDetail, Events, FleetLease, FleetStatus, FleetWorker, Response, StatusView,
};
use ferry_projections::Projections;

use super::export::{Selection, Step};
use super::not_found;
use crate::app::App;
use crate::shutdown::Shutdown;

pub fn status(app: &Arc<App>) -> Response {
    let views = app.views.read().unwrap();
    Response::Status(StatusView {
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        data_dir: app.config.read().unwrap().data_dir.display().to_string(),
        head: app.store.head(),
        uptime_s: app.started.elapsed().as_secs(),
        endpoints: views.endpoints.len(),
        batches: views.batches.len(),
        mailboxes: views.mailboxes.len(),
        passes_running: views
            .batches
            .values()
            .filter(|b| b.running_pass().is_some())
            .count(),
        draining: app.is_draining(),
        destination_budgets: app.graph.budget_lines(),
        fleet: fleet_status(app),
    })
}

/// The fleet's workers and their leases, read from the shared store.
fn fleet_status(app: &App) -> Option<FleetStatus> {
    let leases = app.leases.as_ref()?;
    let view = match tokio::task::block_in_place(|| leases.view()) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "the fleet's workers not read");
            return None;
        }
    };
    let workers = view
        .workers
        .iter()
        .map(|w| FleetWorker {
            name: w.name.clone(),
            started_us: w.started_us,
            heartbeat_us: w.heartbeat_us,
            heartbeat_age_ms: (view.now_us - w.heartbeat_us) / 1000,
            leases: view
                .leases
                .iter()
                .filter(|l| l.holder == w.name)
                .map(|l| FleetLease {
                    batch: l.batch.clone(),
                    pass_id: l.pass_id,
                    mailbox: l.mailbox.clone(),
                    lease: l.version,
                    expires_in_ms: (l.expires_us - view.now_us) / 1000,
                })
                .collect(),
        })
        .collect();
    Some(FleetStatus {
        worker: leases.worker().to_string(),
        leads: app.leadership.as_ref().is_some_and(|l| l.leads()),
        workers,
    })
}

/// Who holds each mailbox of `batch` now, in a fleet.
fn holders(app: &App, batch: &str) -> std::collections::HashMap<String, String> {
    let Some(leases) = app.leases.as_ref() else {
        return Default::default();
    };
    match tokio::task::block_in_place(|| leases.view()) {
        Ok(v) => v
            .leases
            .into_iter()
            .filter(|l| l.batch == batch)
            .map(|l| (l.mailbox, l.holder))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "the fleet's leases not read");
            Default::default()
        }
    }
}

pub fn endpoints(app: &Arc<App>) -> Response {
    Response::Endpoints(
        app.views
            .read()
            .unwrap()
            .endpoints
            .values()
            .cloned()
            .collect(),
    )
}

pub fn batch(app: &Arc<App>, name: &str) -> Result<Response, ApiError> {
    let holders = holders(app, name);
    let views = app.views.read().unwrap();
    let mut detail =
        batch_detail(&views, name, super::now_us()).ok_or_else(|| not_found("batch", name))?;
    for m in &mut detail.mailbox_stats {
        m.worker = holders.get(&m.address).cloned();
    }
    Ok(Response::Batch(Box::new(detail)))
}

/// `batch show`: the batch with its mailboxes' standing, as of `now_us`.
pub fn batch_detail(views: &Projections, name: &str, now_us: i64) -> Option<BatchDetail> {
    let b = views.batches.get(name)?;
    let mailboxes: Vec<_> = b
        .mailboxes
        .iter()
        .filter_map(|m| views.mailboxes.get(m))
        .collect();
    let next = crate::cron::next_fire(b, now_us);
    Some(BatchDetail::of(b, &mailboxes, next))
}

pub fn batches(app: &Arc<App>) -> Response {
    Response::Batches(
        app.views
            .read()
            .unwrap()
            .batches
            .values()
            .cloned()
            .collect(),
    )
}

pub fn mailbox(app: &Arc<App>, address: &str) -> Result<Response, ApiError> {
    let address = address.to_lowercase();
    app.views
        .read()
        .unwrap()
        .mailboxes
        .get(&address)
        .map(|m| {
            let mut m = m.clone();
            if let Some(o) = m.outage.as_mut() {
                o.next_attempt_us = app.next_attempts.lock().unwrap().get(&address).copied();
            }
            Response::Mailbox(Box::new(m))
        })
        .ok_or_else(|| not_found("mailbox", &address))
}

/// Most events one answer carries.
const MAX_EVENTS: u32 = 10_000;

pub async fn events(
    app: &Arc<App>,
    req: Events,
    mut shutdown: Shutdown,
) -> Result<Response, ApiError> {
    let Events {
        since,
        limit,
        wait_ms,
        batch,
        mailbox,
        types,
    } = req;
    let since = since.max(1);
    let limit = limit.unwrap_or(1000).clamp(1, MAX_EVENTS) as usize;
    // The same selection as a filtered audit export.
    let mut selection = if batch.is_some() || mailbox.is_some() || !types.is_empty() {
        let query = ExportQuery {
            from_seq: Some(since),
            batch,
            mailbox,
            types,
            ..ExportQuery::new(Format::Jsonl)
        };
        Some(Selection::parse(app, &query)?)
    } else {
        None
    };
    // Only events the views have folded: a client that reads an event and
    // then asks the views (as `watch` does at a mailbox's end) sees it there.
    if let Some(ms) = wait_ms {
        let mut head = app.views_head.subscribe();
        let wait = head.wait_for(|h| *h >= since);
        tokio::select! {
            _ = tokio::time::timeout(Duration::from_millis(ms.min(60_000)), wait) => {}
            () = shutdown.wait() => {}
        }
    }
    let folded = *app.views_head.borrow();
    let start = selection.as_ref().map_or(since, Selection::start);
    let mut events = Vec::new();
    for env in app
        .store
        .read_all(start)
        .take_while(|e| e.as_ref().map_or(true, |e| e.seq <= folded))
    {
        let env = env.map_err(super::store_error)?;
        if let Some(sel) = selection.as_mut() {
            match sel.step(&env) {
                Step::Stop => break,
                Step::Skip => continue,
                Step::Keep => {}
            }
        }
        events.push(audit::record(&env));
        if events.len() == limit {
            break;
        }
    }
    Ok(Response::Events {
        events,
        head: folded,
    })
}

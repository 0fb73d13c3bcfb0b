//! Views of the past and of a whole batch: `--as-of`, `report`, `batch archive`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ferry_api::ApiError;
use ferry_api::audit::{self, Format};
use ferry_api::report::{Bucket, MailboxReport, ReportData};
use ferry_api::wire::Response;
use ferry_events::{Actor, Event, EventStore, ExpectedVersion, stream};
use ferry_projections::Projections;
use ferry_projections::rules::domain_of;
use sha2::Digest;

use super::export::{self, Selection};
use super::{conflict, done, not_found, parse_time, store_error};
use crate::app::App;

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ferry_api::ErrorCode::Internal, e.to_string())
}

/// The views as they stood at `time`: every event up to the last one
/// recorded at or before it, folded one at a time from the log.
async fn as_of(app: &Arc<App>, t: i64) -> Result<Projections, ApiError> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || {
        let mut p = Projections::default();
        for env in app.store.read_all(1) {
            let env = env.map_err(store_error)?;
            if env.time_us > t {
                break;
            }
            p.apply(&env);
        }
        Ok(p)
    })
    .await
    .map_err(internal)?
}

fn absent(what: &str, name: &str, time: &str) -> ApiError {
    ApiError::new(
        ferry_api::ErrorCode::NotFound,
        format!("no {what} named {name:?} as of {time}"),
    )
}

pub async fn batch_as_of(app: &Arc<App>, name: &str, time: &str) -> Result<Response, ApiError> {
    let at = parse_time("--as-of", time)?;
    let p = as_of(app, at).await?;
    super::query::batch_detail(&p, name, at)
        .map(|d| Response::Batch(Box::new(d)))
        .ok_or_else(|| absent("batch", name, time))
}

pub async fn mailbox_as_of(
    app: &Arc<App>,
    address: &str,
    time: &str,
) -> Result<Response, ApiError> {
    let address = address.to_lowercase();
    let mut p = as_of(app, parse_time("--as-of", time)?).await?;
    p.mailboxes
        .remove(&address)
        .map(|m| Response::Mailbox(Box::new(m)))
        .ok_or_else(|| absent("mailbox", &address, time))
}

/// Buckets in a report's time series.
const BUCKETS: i64 = 60;

const MILESTONES: [&str; 9] = [
    "CompletionRequested",
    "CutoverRequested",
    "UserCutOver",
    "RoutingAction",
    "MxChecked",
    "MxSwitched",
    "MxVerified",
    "BatchCompleted",
    "BatchStopped",
];

/// Gathers a batch's report: its views, and a time series and error
/// counts folded from its streams (read lazily, one event at a time).
pub async fn report(app: &Arc<App>, name: &str) -> Result<Response, ApiError> {
    let (batch, views, head) = {
        let v = app.views.read().unwrap();
        let b = v
            .batches
            .get(name)
            .cloned()
            .ok_or_else(|| not_found("batch", name))?;
        let ms: Vec<_> = b
            .mailboxes
            .iter()
            .filter_map(|a| v.mailboxes.get(a).cloned())
            .collect();
        (b, ms, v.head)
    };
    let app = app.clone();
    tokio::task::spawn_blocking(move || {
        let now = ferry_events::time::now_us();
        let start = batch
            .passes
            .first()
            .map_or(batch.created_us, |p| p.started_us);
        let end = match batch.passes.last() {
            Some(p) => p.finished_us.unwrap_or(now),
            None => now,
        }
        .max(start + 1);
        let bucket_us = ((end - start) / BUCKETS).max(100_000);
        let n = ((end - start) / bucket_us + 1) as usize;
        let mut series: Vec<Bucket> = (0..n)
            .map(|i| Bucket {
                start_us: start + i as i64 * bucket_us,
                ..Bucket::default()
            })
            .collect();
        let slot = |t: i64| ((t - start).max(0) / bucket_us).min(n as i64 - 1) as usize;
        let mut errors_by_class = BTreeMap::new();
        let mut milestones = Vec::new();
        let mut mailboxes = Vec::new();
        let mut domains = BTreeSet::new();
        for view in views {
            for a in [&view.address, &view.spec.destination_address] {
                domains.extend(domain_of(a));
            }
            let mut m = MailboxReport {
                view,
                skipped_by_reason: BTreeMap::new(),
                failures_by_class: BTreeMap::new(),
            };
            for env in app.store.scan_stream(&stream::mailbox(&m.view.address), 1) {
                let env = env.map_err(store_error)?;
                // A mailbox stream may hold an earlier, deleted batch's events.
                if env.time_us < batch.created_us {
                    continue;
                }
                match &env.event {
                    Event::ItemCopied { size, .. } => {
                        let b = &mut series[slot(env.time_us)];
                        b.items += 1;
                        b.bytes += size;
                    }
                    Event::ItemSkipped { reason, .. } => {
                        *m.skipped_by_reason.entry(reason.clone()).or_default() += 1;
                    }
                    Event::ItemFailed { class, .. } | Event::FolderFailed { class, .. } => {
                        series[slot(env.time_us)].failed += 1;
                        *m.failures_by_class.entry(class.clone()).or_default() += 1;
                        *errors_by_class.entry(class.clone()).or_default() += 1;
                    }
                    _ if MILESTONES.contains(&env.event_type.as_str()) => {
                        milestones.push(audit::record(&env));
                    }
                    _ => {}
                }
            }
            mailboxes.push(m);
        }
        let mut others: Vec<String> = domains.iter().map(|d| stream::domain(d)).collect();
        others.push(stream::batch(&batch.name));
        for s in others {
            for env in app.store.scan_stream(&s, 1) {
                let env = env.map_err(store_error)?;
                if env.time_us >= batch.created_us
                    && MILESTONES.contains(&env.event_type.as_str())
                    && (s.starts_with("domain/") || env.event.batch() == Some(batch.name.as_str()))
                {
                    milestones.push(audit::record(&env));
                }
            }
        }
        milestones.sort_by_key(|e| e.seq);
        Ok(Response::Report(Box::new(ReportData {
            generated: ferry_events::time::rfc3339(ferry_events::time::now_us()),
            head,
            batch,
            mailboxes,
            bucket_us,
            series,
            errors_by_class,
            milestones,
        })))
    })
    .await
    .map_err(internal)?
}

/// The sequences of a deleted batch's last life: (created, deleted).
/// Refused while the batch exists, or when it never did.
pub fn deleted_span(app: &App, name: &str) -> Result<(u64, u64), ApiError> {
    if app.views.read().unwrap().batches.contains_key(name) {
        return Err(conflict(format!(
            "batch {name} is not deleted; only a deleted batch is archived"
        )));
    }
    let (mut created, mut deleted) = (None, None);
    for env in app.store.scan_stream(&stream::batch(name), 1) {
        let env = env.map_err(store_error)?;
        match env.event {
            Event::BatchCreated { .. } => (created, deleted) = (Some(env.seq), None),
            Event::BatchDeleted { .. } => deleted = Some(env.seq),
            _ => {}
        }
    }
    match (created, deleted) {
        (Some(c), Some(d)) => Ok((c, d)),
        _ => Err(not_found("batch", name)),
    }
}

/// The archive's selection, for `audit export` with `archive`.
pub fn archive_selection(app: &App, name: &str) -> Result<Selection, ApiError> {
    let (from, to) = deleted_span(app, name)?;
    Ok(Selection::archive(name, from, to))
}

/// `batch archive`: ferryctl wrote the export; ferryd exports again, and
/// records `BatchArchived` only when count and SHA-256 agree.
pub async fn archive(
    app: &Arc<App>,
    actor: Actor,
    name: &str,
    file: &str,
    events: u64,
    sha256: &str,
) -> Result<Response, ApiError> {
    // No command lock while exporting (it may take long): the append below
    // expects the stream as it was here, so a change in between is refused.
    let version = app.store.stream_version(&stream::batch(name));
    let sel = archive_selection(app, name)?;
    let format = Format::Jsonl;
    let check = {
        let app = app.clone();
        tokio::task::spawn_blocking(move || {
            let mut sha = sha2::Sha256::new();
            let n = export::write(&app, sel, format, |b| {
                sha.update(&b);
                true
            })?;
            Ok::<_, std::io::Error>((n, hex::encode(sha.finalize())))
        })
    };
    let (n, sum) = check.await.map_err(internal)?.map_err(internal)?;
    if n != events || sum != sha256 {
        return Err(conflict(format!(
            "the archive of batch {name} does not match the log ({events} records, sha256 {sha256}; \
             the log gives {n}, {sum}); nothing was recorded"
        )));
    }
    let envs = app
        .append(
            &stream::batch(name),
            ExpectedVersion::Exact(version),
            actor,
            vec![Event::BatchArchived {
                batch: name.to_string(),
                file: file.to_string(),
                events,
                sha256: sha256.to_string(),
            }],
        )
        .await
        .map_err(store_error)?;
    Ok(done(
        format!("batch {name}: {events} events archived to {file}"),
        &envs,
    ))
}

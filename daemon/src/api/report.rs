//! `report`: a batch's report data: its views, plus a time series, error
//! classes and milestones read from its streams (the HTML is ferryctl's).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ferry_api::ApiError;
use ferry_api::audit;
use ferry_api::report::{Bucket, MailboxReport, ReportData, reason_class};
use ferry_api::wire::Response;
use ferry_events::{Event, stream};
use ferry_projections::rules::domain_of;

use super::{internal, not_found, store_error};
use crate::app::App;

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
                skipped: view.skipped.values().cloned().collect(),
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
                        *m.skipped_by_reason.entry(reason_class(reason)).or_default() += 1;
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

//! Cron delta schedules and timed completions.
//!
//! A schedule's fires are computed ([`crate::cron`]), never stored: the log
//! holds when the schedule was set and every fire handled (fired, skipped,
//! missed), so after a restart the scheduler knows exactly which fires are
//! owed.

use std::sync::Arc;
use std::time::Duration;

use ferry_events::time::{now_us, rfc3339};
use ferry_events::{Actor, Event, ExpectedVersion, PassKind, stream};
use ferry_projections::batches::ScheduleView;
use ferry_projections::rules::busy_reason;
use tokio::task::JoinHandle;

use crate::app::App;
use crate::cron::Cron;
use crate::shutdown::Shutdown;

/// Fires examined at most per planning round; older ones are summarised.
const MAX_LISTED_MISSES: usize = 100;

/// What to record for one fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run a delta pass now.
    Fire {
        due_us: i64,
    },
    Skip {
        due_us: i64,
        reason: String,
    },
    /// Too old to run (past the catch-up deadline).
    Miss {
        due_us: i64,
    },
}

/// The fires owed between `since_us` (exclusive) and `now_us`: those older
/// than the deadline are missed; of the rest only the latest runs, once,
/// and only when `busy` is `None`.
pub fn plan(
    cron: &Cron,
    since_us: i64,
    now_us: i64,
    deadline_us: i64,
    busy: Option<&str>,
) -> Vec<Decision> {
    let dues: Vec<i64> = cron.fires(since_us, now_us).collect();
    let Some(&latest) = dues.last() else {
        return Vec::new();
    };
    let (old, recent): (Vec<i64>, Vec<i64>) = dues.iter().partition(|t| now_us - **t > deadline_us);
    let mut out = Vec::new();
    if old.len() > MAX_LISTED_MISSES {
        let unlisted = old.len() - MAX_LISTED_MISSES;
        out.push(Decision::Skip {
            due_us: old[0],
            reason: format!(
                "{unlisted} fires from {} on were missed while ferryd was down (past the catch-up deadline; not listed one by one)",
                rfc3339(old[0])
            ),
        });
    }
    let listed = old.len().saturating_sub(MAX_LISTED_MISSES);
    out.extend(
        old[listed..]
            .iter()
            .map(|&due_us| Decision::Miss { due_us }),
    );
    for &due_us in &recent {
        if due_us != latest {
            out.push(Decision::Skip {
                due_us,
                reason: format!("caught up once by the fire due {}", rfc3339(latest)),
            });
        }
    }
    if recent.contains(&latest) {
        out.push(match busy {
            None => Decision::Fire { due_us: latest },
            Some(why) => Decision::Skip {
                due_us: latest,
                reason: why.to_string(),
            },
        });
    }
    out
}

/// The events recording `decisions` for `batch`.
pub fn events(batch: &str, decisions: &[Decision]) -> Vec<Event> {
    let mut out = Vec::new();
    for d in decisions {
        match d {
            Decision::Fire { due_us } => {
                out.push(Event::ScheduleFired {
                    batch: batch.to_string(),
                    due_us: *due_us,
                });
                out.push(Event::PassRequested {
                    batch: batch.to_string(),
                    pass: PassKind::Delta,
                    older_than_days: None,
                    not_before_us: None,
                });
            }
            Decision::Skip { due_us, reason } => out.push(Event::ScheduleSkipped {
                batch: batch.to_string(),
                due_us: *due_us,
                reason: reason.clone(),
            }),
            Decision::Miss { due_us } => out.push(Event::ScheduleMissed {
                batch: batch.to_string(),
                due_us: *due_us,
            }),
        }
    }
    out
}

/// Longest sleep between two looks at the schedules.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// Shortest interval between two looks prompted by the log moving.
const SETTLE: Duration = Duration::from_millis(200);

/// Fires schedules as they come due, until `shutdown`.
pub fn spawn(app: Arc<App>, shutdown: Shutdown) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut head = app.views_head.subscribe();
        let mut stop = shutdown;
        loop {
            let wake = round(&app).await;
            let sleep = wake
                .map(|t| {
                    let ms = (t - now_us()).max(0) / 1000 + 1;
                    Duration::from_millis(ms as u64).min(MAX_SLEEP)
                })
                .unwrap_or(MAX_SLEEP);
            tokio::select! {
                _ = head.changed() => {
                    // The log moves with every item copied: look again
                    // soon, not at each event.
                    tokio::time::sleep(SETTLE.min(sleep)).await;
                }
                _ = tokio::time::sleep(sleep) => {}
                () = stop.wait() => break,
            }
        }
    })
}

/// One look at every schedule; returns when the next one is due.
async fn round(app: &Arc<App>) -> Option<i64> {
    let now = now_us();
    let deadline_us = app.config.read().unwrap().engine.schedule_catch_up_s as i64 * 1_000_000;
    // The earliest fire after now across schedules (every fire up to now
    // is being handled, so it does not depend on what this round records).
    let mut next: Option<i64> = None;
    // Each schedule, read under the views' lock; the cron is walked after
    // it is released, so that folding events never waits.
    let schedules: Vec<(String, u64, ScheduleView, Option<String>)> = {
        let views = app.views.read().unwrap();
        views
            .batches
            .values()
            .filter_map(|b| {
                let s = b.schedule.clone()?;
                Some((b.name.clone(), b.version, s, busy_reason(b)))
            })
            .collect()
    };
    let mut work: Vec<(String, u64, Vec<Decision>)> = Vec::new();
    for (name, version, s, busy) in schedules {
        let cron = match Cron::parse(&s.cron, &s.tz) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(batch = %name, error = %e, "schedule unusable");
                continue;
            }
        };
        if let Some(t) = cron.next_after(now) {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        let since = s.last_due_us.unwrap_or(s.set_us);
        let d = plan(&cron, since, now, deadline_us, busy.as_deref());
        if !d.is_empty() {
            work.push((name, version, d));
        }
    }
    for (batch, version, decisions) in work {
        let res = app
            .append(
                &stream::batch(&batch),
                ExpectedVersion::Exact(version),
                Actor::Scheduler,
                events(&batch, &decisions),
            )
            .await;
        match res {
            Ok(_) => tracing::info!(%batch, ?decisions, "schedule handled"),
            // A command changed the batch meanwhile: the next round sees it.
            Err(e) => tracing::debug!(%batch, error = %e, "schedule round retried"),
        }
    }
    next
}

//! Cron delta schedules and timed completions.
//!
//! A schedule's fires are computed, never stored: the log holds when the
//! schedule was set and every fire handled (fired, skipped, missed), so
//! after a restart the scheduler knows exactly which fires are owed.
//!
//! Time zones: the cron fields are matched against local wall-clock time.
//! A local time that does not exist (spring forward) fires at the first
//! instant after the gap, once; a local time that happens twice (fall back)
//! fires at its first occurrence only, unless the expression runs every hour,
//! in which case both hours get their fires (as cronie does).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use cron::TimeUnitSpec;
use ferry_events::{Actor, Event, ExpectedVersion, PassKind, stream};
use ferry_projections::{BatchState, BatchView};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::App;

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "cron expression {expr:?} has {fields} fields; give 5 (minute hour day-of-month month day-of-week) or 6-7 (seconds first, optional year)"
    )]
    Fields { expr: String, fields: usize },
    #[error("cron expression {expr:?}: {reason}")]
    Cron { expr: String, reason: String },
    #[error("unknown time zone {0:?}: use an IANA name such as Europe/Paris or UTC")]
    Zone(String),
    #[error("cron expression {0:?} never fires")]
    Never(String),
}

/// A parsed schedule in its time zone.
#[derive(Debug, Clone)]
pub struct Cron {
    schedule: cron::Schedule,
    tz: Tz,
    every_hour: bool,
}

/// Fires examined at most per planning round; older ones are summarised.
const MAX_LISTED_MISSES: usize = 100;

/// How far before a query instant to look for wall-clock candidates, so
/// that times shifted by a DST transition are still seen.
const DST_LOOKBACK_H: i64 = 3;

impl Cron {
    /// Parses a crontab line (5 fields) or a `cron` crate line (6 or 7).
    pub fn parse(expr: &str, tz: &str) -> Result<Cron, ScheduleError> {
        let expr = expr.trim();
        let fields = expr.split_whitespace().count();
        let full = match fields {
            5 => format!("0 {expr}"),
            6 | 7 => expr.to_string(),
            _ => {
                return Err(ScheduleError::Fields {
                    expr: expr.to_string(),
                    fields,
                });
            }
        };
        let schedule = cron::Schedule::from_str(&full).map_err(|e| ScheduleError::Cron {
            expr: expr.to_string(),
            reason: e.to_string(),
        })?;
        let tz = Tz::from_str(tz).map_err(|_| ScheduleError::Zone(tz.to_string()))?;
        let every_hour = schedule.hours().is_all();
        let c = Cron {
            schedule,
            tz,
            every_hour,
        };
        if c.next_after(Utc::now().timestamp_micros()).is_none() {
            return Err(ScheduleError::Never(expr.to_string()));
        }
        Ok(c)
    }

    /// The instants a wall-clock time stands for, earliest first.
    fn instants(&self, local: NaiveDateTime) -> Vec<DateTime<Utc>> {
        match self.tz.from_local_datetime(&local) {
            LocalResult::Single(t) => vec![t.with_timezone(&Utc)],
            LocalResult::Ambiguous(first, second) if self.every_hour => {
                vec![first.with_timezone(&Utc), second.with_timezone(&Utc)]
            }
            LocalResult::Ambiguous(first, _) => vec![first.with_timezone(&Utc)],
            LocalResult::None => {
                // In a gap: the first whole minute that exists.
                let mut t = local
                    .with_second(0)
                    .and_then(|t| t.with_nanosecond(0))
                    .unwrap_or(local);
                for _ in 0..(24 * 60) {
                    t += chrono::Duration::minutes(1);
                    if let Some(x) = self.tz.from_local_datetime(&t).earliest() {
                        return vec![x.with_timezone(&Utc)];
                    }
                }
                Vec::new()
            }
        }
    }

    /// The first fire strictly after `after_us`.
    pub fn next_after(&self, after_us: i64) -> Option<i64> {
        let after = DateTime::from_timestamp_micros(after_us)?;
        let local = after.with_timezone(&self.tz).naive_local();
        let from = (local - chrono::Duration::hours(DST_LOOKBACK_H)).and_utc();
        // The schedule walks wall-clock times; UTC carries them unchanged.
        for candidate in self.schedule.after(&from).take(1_000_000) {
            for t in self.instants(candidate.naive_utc()) {
                if t > after {
                    return Some(t.timestamp_micros());
                }
            }
        }
        None
    }

    /// Every fire in `(after_us, until_us]`, oldest first.
    pub fn fires(&self, after_us: i64, until_us: i64) -> impl Iterator<Item = i64> + '_ {
        std::iter::successors(self.next_after(after_us), move |t| self.next_after(*t))
            .take_while(move |t| *t <= until_us)
    }
}

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

/// Why a batch cannot take a delta pass now, if it cannot.
pub fn busy_reason(b: &BatchView) -> Option<String> {
    if let Some(p) = b.running_pass() {
        return Some(format!("a {} pass is still running", p.pass.as_str()));
    }
    if let Some(p) = b.pending.first() {
        return Some(format!(
            "a {} pass is already waiting to start",
            p.pass.as_str()
        ));
    }
    match b.state {
        BatchState::Stopped
        | BatchState::Stopping
        | BatchState::Completing
        | BatchState::Completed
        | BatchState::CompletedWithErrors
        | BatchState::Removing => Some(format!("batch is {}", b.state)),
        _ if b.mailboxes.is_empty() => Some("batch has no mailboxes".into()),
        _ => None,
    }
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

/// The next fire of a batch's schedule after `now_us`, if it has one.
pub fn next_fire(b: &BatchView, now_us: i64) -> Option<i64> {
    let s = b.schedule.as_ref()?;
    let cron = Cron::parse(&s.cron, &s.tz).ok()?;
    cron.next_after(now_us.max(s.last_due_us.unwrap_or(s.set_us)))
}

/// Longest sleep between two looks at the schedules.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// Shortest interval between two looks prompted by the log moving.
const SETTLE: Duration = Duration::from_millis(200);

/// A time in µs as RFC 3339 to the second, as messages and reports show it.
pub fn rfc3339(us: i64) -> String {
    DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Fires schedules as they come due, until `shutdown`.
pub fn spawn(app: Arc<App>, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut head = app.views_head.subscribe();
        let mut stop = shutdown;
        loop {
            let wake = round(&app).await;
            let sleep = wake
                .map(|t| {
                    let ms = (t - Utc::now().timestamp_micros()).max(0) / 1000 + 1;
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
                () = crate::server::stopped(&mut stop) => break,
            }
        }
    })
}

/// One look at every schedule; returns when the next one is due.
async fn round(app: &Arc<App>) -> Option<i64> {
    let now = Utc::now().timestamp_micros();
    let deadline_us = app.config.read().unwrap().engine.schedule_catch_up_s as i64 * 1_000_000;
    // The earliest fire after now across schedules (every fire up to now
    // is being handled, so it does not depend on what this round records).
    let mut next: Option<i64> = None;
    let work: Vec<(String, u64, Vec<Decision>)> = {
        let views = app.views.read().unwrap();
        views
            .batches
            .values()
            .filter_map(|b| {
                let s = b.schedule.as_ref()?;
                let cron = match Cron::parse(&s.cron, &s.tz) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(batch = %b.name, error = %e, "schedule unusable");
                        return None;
                    }
                };
                if let Some(t) = cron.next_after(now) {
                    next = Some(next.map_or(t, |n| n.min(t)));
                }
                let since = s.last_due_us.unwrap_or(s.set_us);
                let busy = busy_reason(b);
                let d = plan(&cron, since, now, deadline_us, busy.as_deref());
                (!d.is_empty()).then(|| (b.name.clone(), b.version, d))
            })
            .collect()
    };
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

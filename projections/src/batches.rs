//! Batches and their state machine.

use std::collections::{BTreeMap, BTreeSet};

use ferry_events::{BatchOptions, Envelope, Event, Outcome, PassKind, SecretRef};
use serde::{Deserialize, Serialize};

use crate::mailboxes::Counts;

/// Batch states, named as Microsoft's migration service names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BatchState {
    Created,
    Syncing,
    Synced,
    SyncedWithErrors,
    Stopping,
    Stopped,
    Completing,
    Completed,
    CompletedWithErrors,
    Failed,
    Removing,
}

impl BatchState {
    /// Whether the batch still owns its mailboxes (not completed nor removed).
    pub fn is_active(self) -> bool {
        !matches!(
            self,
            BatchState::Completed | BatchState::CompletedWithErrors | BatchState::Removing
        )
    }

    pub fn is_running(self) -> bool {
        matches!(
            self,
            BatchState::Syncing | BatchState::Stopping | BatchState::Completing
        )
    }
}

impl std::fmt::Display for BatchState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Why a pass runs: an ordinary pass, the final delta pass of `batch
/// complete`, or the final delta pass of a cutover (those mailboxes only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PassPurpose {
    #[default]
    Sync,
    Completion,
    Cutover {
        mailboxes: Vec<String>,
    },
}

/// A pass asked for and not yet started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingPass {
    /// Sequence of the requesting event; becomes the pass id.
    pub id: u64,
    pub pass: PassKind,
    pub older_than_days: Option<u32>,
    pub not_before_us: Option<i64>,
    pub requested_us: i64,
    pub purpose: PassPurpose,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassRecord {
    pub id: u64,
    pub pass: PassKind,
    pub started_us: i64,
    pub finished_us: Option<i64>,
    pub outcome: Option<Outcome>,
    pub purpose: PassPurpose,
    /// A pre-stage pass's cut-off, from its request (kept for a resume).
    pub older_than_days: Option<u32>,
    /// Items copied, skipped and failed during this pass, with bytes copied.
    pub counts: Counts,
    /// Mailboxes that took part (counted once across a resume).
    pub mailboxes: u64,
    /// Who took part while the pass runs; emptied when it ends.
    pub taking_part: BTreeSet<String>,
    /// Mailboxes whose share failed items or did not succeed.
    pub troubled: BTreeMap<String, MailboxTrouble>,
}

/// One mailbox's trouble in one pass, as its report names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxTrouble {
    pub failed: u64,
    pub outcome: Option<Outcome>,
    pub detail: String,
}

impl PassRecord {
    /// Folds a mailbox's own pass events and failed items into the pass.
    pub(crate) fn apply_mailbox(&mut self, env: &Envelope) {
        match &env.event {
            Event::MailboxPassStarted {
                mailbox, pass_id, ..
            } if *pass_id == self.id => {
                self.taking_part.insert(mailbox.clone());
                self.mailboxes = self.taking_part.len() as u64;
            }
            Event::ItemFailed { mailbox, .. } if self.taking_part.contains(mailbox) => {
                self.troubled.entry(mailbox.clone()).or_default().failed += 1;
            }
            Event::MailboxPassFinished {
                mailbox,
                pass_id,
                outcome,
                detail,
            } if *pass_id == self.id && self.taking_part.contains(mailbox) => {
                let bad = matches!(outcome, Outcome::Failed | Outcome::SucceededWithErrors);
                if bad || self.troubled.contains_key(mailbox) {
                    let t = self.troubled.entry(mailbox.clone()).or_default();
                    t.outcome = Some(*outcome);
                    t.detail = detail.clone();
                }
            }
            _ => {}
        }
    }
}

impl PassRecord {
    /// Bytes per second over the pass so far (or its whole run).
    pub fn throughput(&self, now_us: i64) -> f64 {
        let end = self.finished_us.unwrap_or(now_us);
        let secs = (end - self.started_us).max(1) as f64 / 1e6;
        self.counts.bytes as f64 / secs
    }
}

/// A cron delta schedule and what became of its fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleView {
    pub cron: String,
    pub tz: String,
    /// When the schedule was set: fires before this are not owed.
    pub set_us: i64,
    /// The latest fire time handled (fired, skipped or missed).
    pub last_due_us: Option<i64>,
    pub fired: u64,
    pub skipped: u64,
    pub missed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchView {
    pub name: String,
    pub source: String,
    pub destination: String,
    pub options: BatchOptions,
    pub state: BatchState,
    /// Mailbox addresses in the order they were added.
    pub mailboxes: Vec<String>,
    pub pending: Vec<PendingPass>,
    /// Every pass started, oldest first; the last may be running.
    pub passes: Vec<PassRecord>,
    pub schedule: Option<ScheduleView>,
    pub created_us: i64,
    /// Stream version of the batch stream, for expected-version checks.
    pub version: u64,
    /// Where pass reports go (`batch notify`).
    pub notify: NotifyTargets,
    /// Items vanished at the source are removed at the destination.
    pub propagate_deletions: bool,
}

/// A batch's notification targets; the webhook URL itself is a secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyTargets {
    pub emails: Vec<String>,
    pub webhook: Option<SecretRef>,
    /// Scheme, host and path of the webhook, safe to show.
    pub webhook_shown: Option<String>,
}

impl NotifyTargets {
    pub fn is_empty(&self) -> bool {
        self.emails.is_empty() && self.webhook.is_none()
    }
}

impl BatchView {
    pub fn running_pass(&self) -> Option<&PassRecord> {
        self.passes.last().filter(|p| p.outcome.is_none())
    }

    /// Whether a pass runs or waits to run.
    pub fn has_pass_in_flight(&self) -> bool {
        self.running_pass().is_some() || !self.pending.is_empty()
    }

    /// Whether `batch complete` was asked for and has not yet finished.
    pub fn completion_pending(&self) -> bool {
        self.pending
            .iter()
            .any(|p| p.purpose == PassPurpose::Completion)
            || self
                .running_pass()
                .is_some_and(|p| p.purpose == PassPurpose::Completion)
    }

    /// When the last delta pass over the whole batch finished.
    pub fn last_delta_us(&self) -> Option<i64> {
        self.passes
            .iter()
            .rev()
            .filter(|p| {
                p.pass == PassKind::Delta && !matches!(p.purpose, PassPurpose::Cutover { .. })
            })
            .find_map(|p| p.finished_us)
    }
}

pub fn apply(batches: &mut BTreeMap<String, BatchView>, env: &Envelope) {
    let name = match &env.event {
        Event::BatchCreated {
            name,
            source,
            destination,
            options,
        } => {
            batches.insert(
                name.clone(),
                BatchView {
                    name: name.clone(),
                    source: source.clone(),
                    destination: destination.clone(),
                    options: options.clone(),
                    state: BatchState::Created,
                    mailboxes: Vec::new(),
                    pending: Vec::new(),
                    passes: Vec::new(),
                    schedule: None,
                    created_us: env.time_us,
                    version: 0,
                    notify: NotifyTargets::default(),
                    propagate_deletions: false,
                },
            );
            name
        }
        other => match other.batch() {
            Some(batch) => batch,
            None => return,
        },
    };
    let Some(b) = batches.get_mut(name) else {
        return;
    };
    if env.stream.starts_with("batch/") {
        b.version = env.stream_version;
    }
    match &env.event {
        Event::MailboxAdded { mailbox, .. } if !b.mailboxes.contains(&mailbox.address) => {
            b.mailboxes.push(mailbox.address.clone());
        }
        Event::MailboxRemoved { address, .. } => b.mailboxes.retain(|a| a != address),
        Event::PassRequested {
            pass,
            older_than_days,
            not_before_us,
            ..
        } => b.pending.push(PendingPass {
            id: env.seq,
            pass: *pass,
            older_than_days: *older_than_days,
            not_before_us: *not_before_us,
            requested_us: env.time_us,
            purpose: PassPurpose::Sync,
        }),
        Event::DeletionsPropagated { on, .. } => b.propagate_deletions = *on,
        Event::CompletionRequested { not_before_us, .. } => b.pending.push(PendingPass {
            id: env.seq,
            pass: PassKind::Delta,
            older_than_days: None,
            not_before_us: *not_before_us,
            requested_us: env.time_us,
            purpose: PassPurpose::Completion,
        }),
        Event::CutoverRequested { mailboxes, .. } => b.pending.push(PendingPass {
            id: env.seq,
            pass: PassKind::Delta,
            older_than_days: None,
            not_before_us: None,
            requested_us: env.time_us,
            purpose: PassPurpose::Cutover {
                mailboxes: mailboxes.clone(),
            },
        }),
        Event::PassStarted { pass_id, pass, .. } => {
            let (purpose, older_than_days) = match b.pending.iter().position(|p| p.id == *pass_id) {
                Some(i) => {
                    let p = b.pending.remove(i);
                    (p.purpose, p.older_than_days)
                }
                None => (PassPurpose::Sync, None),
            };
            b.state = if purpose == PassPurpose::Completion {
                BatchState::Completing
            } else {
                BatchState::Syncing
            };
            b.passes.push(PassRecord {
                id: *pass_id,
                pass: *pass,
                started_us: env.time_us,
                finished_us: None,
                outcome: None,
                purpose,
                older_than_days,
                counts: Counts::default(),
                mailboxes: 0,
                taking_part: BTreeSet::new(),
                troubled: BTreeMap::new(),
            });
        }
        Event::PassFinished {
            pass_id, outcome, ..
        } => {
            if let Some(p) = b.passes.iter_mut().rev().find(|p| p.id == *pass_id) {
                p.finished_us = Some(env.time_us);
                p.outcome = Some(*outcome);
                p.taking_part.clear();
            }
            b.state = match (b.state, outcome) {
                (BatchState::Stopping, _) | (_, Outcome::Stopped) => BatchState::Stopped,
                (BatchState::Completing, Outcome::Failed) => BatchState::Failed,
                (BatchState::Completing, Outcome::Succeeded) => BatchState::Completed,
                (BatchState::Completing, Outcome::SucceededWithErrors) => {
                    BatchState::CompletedWithErrors
                }
                (_, Outcome::Succeeded) => BatchState::Synced,
                (_, Outcome::SucceededWithErrors) => BatchState::SyncedWithErrors,
                (_, Outcome::Failed) => BatchState::Failed,
            };
        }
        Event::ScheduleSet { cron, tz, .. } => {
            b.schedule = (!cron.is_empty()).then(|| ScheduleView {
                cron: cron.clone(),
                tz: tz.clone(),
                set_us: env.time_us,
                last_due_us: None,
                fired: 0,
                skipped: 0,
                missed: 0,
            });
        }
        Event::ScheduleFired { due_us, .. }
        | Event::ScheduleSkipped { due_us, .. }
        | Event::ScheduleMissed { due_us, .. } => {
            if let Some(s) = b.schedule.as_mut() {
                s.last_due_us = Some(s.last_due_us.map_or(*due_us, |d| d.max(*due_us)));
                match &env.event {
                    Event::ScheduleFired { .. } => s.fired += 1,
                    Event::ScheduleSkipped { .. } => s.skipped += 1,
                    _ => s.missed += 1,
                }
            }
        }
        Event::BatchStopped { .. } => {
            b.pending.clear();
            b.state = if b.running_pass().is_some() {
                BatchState::Stopping
            } else {
                BatchState::Stopped
            };
        }
        Event::BatchCompleted { with_errors, .. } => {
            b.pending.clear();
            b.state = if *with_errors {
                BatchState::CompletedWithErrors
            } else {
                BatchState::Completed
            };
        }
        Event::BatchDeleted { .. } => {
            batches.remove(name);
        }
        Event::NotifySet {
            emails,
            webhook,
            webhook_shown,
            ..
        } => {
            b.notify = NotifyTargets {
                emails: emails.clone(),
                webhook: webhook.clone(),
                webhook_shown: webhook_shown.clone(),
            };
        }
        _ => {}
    }
}

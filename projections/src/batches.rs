//! Batches and their state machine.

use std::collections::BTreeMap;

use ferry_events::{BatchOptions, Envelope, Event, Outcome, PassKind, SecretRef};
use serde::{Deserialize, Serialize};

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

/// A pass asked for and not yet started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingPass {
    /// Sequence of the `PassRequested` event; becomes the pass id.
    pub id: u64,
    pub pass: PassKind,
    pub older_than_days: Option<u32>,
    pub not_before_us: Option<i64>,
    pub requested_us: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassRecord {
    pub id: u64,
    pub pass: PassKind,
    pub started_us: i64,
    pub finished_us: Option<i64>,
    pub outcome: Option<Outcome>,
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
    /// (cron, time zone) of the delta schedule.
    pub schedule: Option<(String, String)>,
    pub created_us: i64,
    /// Stream version of the batch stream, for expected-version checks.
    pub version: u64,
    /// Where pass reports go (`batch notify`).
    pub notify: NotifyTargets,
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
                },
            );
            name
        }
        Event::MailboxAdded { batch, .. }
        | Event::PassRequested { batch, .. }
        | Event::PassStarted { batch, .. }
        | Event::PassFinished { batch, .. }
        | Event::ScheduleSet { batch, .. }
        | Event::BatchStopped { batch }
        | Event::BatchCompleted { batch, .. }
        | Event::BatchDeleted { batch, .. }
        | Event::NotifySet { batch, .. } => batch,
        _ => return,
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
        }),
        Event::PassStarted { pass_id, pass, .. } => {
            b.pending.retain(|p| p.id != *pass_id);
            b.passes.push(PassRecord {
                id: *pass_id,
                pass: *pass,
                started_us: env.time_us,
                finished_us: None,
                outcome: None,
            });
            if b.state != BatchState::Completing {
                b.state = BatchState::Syncing;
            }
        }
        Event::PassFinished {
            pass_id, outcome, ..
        } => {
            if let Some(p) = b.passes.iter_mut().rev().find(|p| p.id == *pass_id) {
                p.finished_us = Some(env.time_us);
                p.outcome = Some(*outcome);
            }
            b.state = match (b.state, outcome) {
                (BatchState::Stopping, _) | (_, Outcome::Stopped) => BatchState::Stopped,
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
            b.schedule = if cron.is_empty() {
                None
            } else {
                Some((cron.clone(), tz.clone()))
            };
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

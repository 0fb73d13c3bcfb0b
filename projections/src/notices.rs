//! Pass notifications still owed: one per target of each finished pass of
//! a batch that had targets, until a `NotificationSent` or a final
//! `NotificationFailed` settles it. The notifier works from this list, so a
//! restart sends what is owed and nothing twice.

use std::collections::BTreeMap;

use ferry_events::{Envelope, Event, NotifyChannel, Outcome, SecretRef};
use serde::{Deserialize, Serialize};

use crate::BatchView;
use crate::batches::PassRecord;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwedNotice {
    pub batch: String,
    pub pass_id: u64,
    pub channel: NotifyChannel,
    /// The address, or the webhook as shown (never its secret URL).
    pub target: String,
    /// The webhook's secret URL reference, as it was when the pass finished.
    pub webhook: Option<SecretRef>,
    pub outcome: Outcome,
    /// Sequence of the `PassFinished` event.
    pub finished_seq: u64,
    pub finished_us: i64,
    /// Attempts already made (each recorded as a failure).
    pub attempts: u32,
    /// The pass as it ended, for the summary (absent if never started).
    pub pass: Option<PassRecord>,
    pub source: String,
    pub destination: String,
}

impl OwedNotice {
    pub fn same(&self, batch: &str, pass_id: u64, channel: NotifyChannel, target: &str) -> bool {
        self.batch == batch
            && self.pass_id == pass_id
            && self.channel == channel
            && self.target == target
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notices {
    /// Oldest first.
    pub owed: Vec<OwedNotice>,
    pub sent: u64,
    pub failed: u64,
}

impl Notices {
    /// Folds one event; `batches` is the batch view after the same event.
    pub fn apply(&mut self, batches: &BTreeMap<String, BatchView>, env: &Envelope) {
        match &env.event {
            Event::PassFinished {
                batch,
                pass_id,
                outcome,
            } => {
                let Some(b) = batches.get(batch) else {
                    return;
                };
                let pass = b.passes.iter().rev().find(|p| p.id == *pass_id);
                let owe = |channel, target: &str, webhook: Option<SecretRef>| OwedNotice {
                    batch: batch.clone(),
                    pass_id: *pass_id,
                    channel,
                    target: target.to_string(),
                    webhook,
                    outcome: *outcome,
                    finished_seq: env.seq,
                    finished_us: env.time_us,
                    attempts: 0,
                    pass: pass.cloned(),
                    source: b.source.clone(),
                    destination: b.destination.clone(),
                };
                if let (Some(url), Some(shown)) = (&b.notify.webhook, &b.notify.webhook_shown) {
                    self.owed
                        .push(owe(NotifyChannel::Webhook, shown, Some(url.clone())));
                }
                for e in &b.notify.emails {
                    self.owed.push(owe(NotifyChannel::Email, e, None));
                }
            }
            Event::NotificationSent {
                batch,
                pass_id,
                channel,
                target,
                ..
            } => {
                self.sent += 1;
                self.owed
                    .retain(|o| !o.same(batch, *pass_id, *channel, target));
            }
            Event::NotificationFailed {
                batch,
                pass_id,
                channel,
                target,
                attempt,
                retry,
                ..
            } => {
                if *retry {
                    for o in &mut self.owed {
                        if o.same(batch, *pass_id, *channel, target) {
                            o.attempts = o.attempts.max(*attempt);
                        }
                    }
                } else {
                    self.failed += 1;
                    self.owed
                        .retain(|o| !o.same(batch, *pass_id, *channel, target));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use ferry_events::{Actor, BatchOptions, Envelope, Event, NotifyChannel, Outcome, SecretRef};

    use crate::Projections;

    fn env(seq: u64, event: Event) -> Envelope {
        Envelope {
            seq,
            stream: "batch/b".into(),
            stream_version: seq,
            time_us: seq as i64 * 1_000_000,
            actor: Actor::Engine,
            event_type: event.event_type().into(),
            schema_version: 1,
            prev_hash: ferry_events::ZERO_HASH,
            event,
        }
    }

    fn outcome(
        seq: u64,
        channel: NotifyChannel,
        target: &str,
        attempt: u32,
        sent: bool,
        retry: bool,
    ) -> Envelope {
        let (batch, pass_id, target) = ("b".to_string(), 3, target.to_string());
        env(
            seq,
            if sent {
                Event::NotificationSent {
                    batch,
                    pass_id,
                    channel,
                    target,
                    attempt,
                }
            } else {
                Event::NotificationFailed {
                    batch,
                    pass_id,
                    channel,
                    target,
                    attempt,
                    reason: "refused".into(),
                    retry,
                }
            },
        )
    }

    #[test]
    fn a_finished_pass_owes_one_report_per_target_until_settled() {
        let mut p = Projections::default();
        let finished = |seq| {
            env(
                seq,
                Event::PassFinished {
                    batch: "b".into(),
                    pass_id: 3,
                    outcome: Outcome::Failed,
                },
            )
        };
        p.apply(&env(
            1,
            Event::BatchCreated {
                name: "b".into(),
                source: "s".into(),
                destination: "d".into(),
                options: BatchOptions::default(),
            },
        ));
        // No targets yet: nothing owed.
        p.apply(&finished(2));
        assert!(p.notices.owed.is_empty());
        p.apply(&env(
            4,
            Event::NotifySet {
                batch: "b".into(),
                emails: vec!["a@x.org".into(), "b@x.org".into()],
                webhook: Some(SecretRef("sec-1".into())),
                webhook_shown: Some("https://h/p".into()),
            },
        ));
        assert_eq!(p.batches["b"].notify.emails.len(), 2);
        assert_eq!(p.batches["b"].version, 4);
        p.apply(&finished(5));
        assert_eq!(p.notices.owed.len(), 3);
        assert_eq!(p.notices.owed[0].channel, NotifyChannel::Webhook);
        assert_eq!(p.notices.owed[0].webhook, Some(SecretRef("sec-1".into())));

        p.apply(&outcome(
            6,
            NotifyChannel::Webhook,
            "https://h/p",
            1,
            false,
            true,
        ));
        assert_eq!(p.notices.owed[0].attempts, 1);
        p.apply(&outcome(
            7,
            NotifyChannel::Webhook,
            "https://h/p",
            2,
            true,
            false,
        ));
        p.apply(&outcome(
            8,
            NotifyChannel::Email,
            "a@x.org",
            1,
            false,
            false,
        ));
        assert_eq!(p.notices.owed.len(), 1);
        assert_eq!(p.notices.owed[0].target, "b@x.org");
        assert_eq!((p.notices.sent, p.notices.failed), (1, 1));
        // Another pass's outcome settles nothing of this one.
        p.apply(&env(
            9,
            Event::NotificationSent {
                batch: "b".into(),
                pass_id: 99,
                channel: NotifyChannel::Email,
                target: "b@x.org".into(),
                attempt: 1,
            },
        ));
        assert_eq!(p.notices.owed.len(), 1);
    }
}

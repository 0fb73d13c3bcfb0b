//! What a pass summary says: the webhook's JSON body and the email's text,
//! taken from the pass as the views recorded it when it ended.

use ferry_events::Outcome;
use ferry_events::time::rfc3339;
use ferry_projections::OwedNotice;
use serde::Serialize;

/// The webhook's JSON body (its field names are the contract).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PassSummary {
    pub batch: String,
    pub pass_id: u64,
    pub pass: String,
    pub outcome: String,
    pub started: String,
    pub finished: String,
    pub source: String,
    pub destination: String,
    pub mailboxes: u64,
    pub copied: u64,
    /// Found already at the destination and not copied.
    pub adopted: u64,
    pub skipped: u64,
    pub failed: u64,
    pub bytes: u64,
    pub mailboxes_with_errors: Vec<MailboxErrors>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MailboxErrors {
    pub address: String,
    pub outcome: Option<String>,
    pub failed: u64,
    pub detail: String,
}

fn outcome_name(o: Outcome) -> String {
    format!("{o:?}")
}

impl PassSummary {
    pub fn of(n: &OwedNotice) -> PassSummary {
        let mut r = PassSummary {
            batch: n.batch.clone(),
            pass_id: n.pass_id,
            outcome: outcome_name(n.outcome),
            finished: rfc3339(n.finished_us),
            source: n.source.clone(),
            destination: n.destination.clone(),
            ..PassSummary::default()
        };
        if let Some(p) = &n.pass {
            r.pass = p.pass.as_str().to_string();
            r.started = rfc3339(p.started_us);
            r.mailboxes = p.mailboxes;
            r.copied = p.counts.copied;
            r.adopted = p.counts.adopted;
            r.skipped = p.counts.skipped;
            r.failed = p.counts.failed;
            r.bytes = p.counts.bytes;
            r.mailboxes_with_errors = p
                .troubled
                .iter()
                .map(|(address, t)| MailboxErrors {
                    address: address.clone(),
                    outcome: t.outcome.map(outcome_name),
                    failed: t.failed,
                    detail: t.detail.clone(),
                })
                .collect();
        }
        r
    }

    pub fn subject(&self) -> String {
        format!(
            "[mailferry] batch {}: {} pass {}",
            self.batch, self.pass, self.outcome
        )
    }

    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut t = String::new();
        let _ = writeln!(t, "Batch:       {}", self.batch);
        let _ = writeln!(t, "Pass:        {} (id {})", self.pass, self.pass_id);
        let _ = writeln!(t, "Outcome:     {}", self.outcome);
        let _ = writeln!(t, "Started:     {}", self.started);
        let _ = writeln!(t, "Finished:    {}", self.finished);
        if !self.source.is_empty() {
            let _ = writeln!(t, "From:        {} to {}", self.source, self.destination);
        }
        let _ = writeln!(t, "Mailboxes:   {}", self.mailboxes);
        let _ = writeln!(
            t,
            "Copied:      {} items, {} bytes",
            self.copied, self.bytes
        );
        if self.adopted > 0 {
            let _ = writeln!(
                t,
                "Adopted:     {} items found at the destination, not copied",
                self.adopted
            );
        }
        let _ = writeln!(t, "Skipped:     {}", self.skipped);
        let _ = writeln!(t, "Failed:      {}", self.failed);
        if !self.mailboxes_with_errors.is_empty() {
            let _ = writeln!(t, "\nMailboxes with errors:");
            for m in &self.mailboxes_with_errors {
                let _ = writeln!(
                    t,
                    "  {}: {} failed items, {} {}",
                    m.address,
                    m.failed,
                    m.outcome.as_deref().unwrap_or("unfinished"),
                    m.detail
                );
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ferry_events::{NotifyChannel, Outcome, PassKind};
    use ferry_projections::OwedNotice;
    use ferry_projections::batches::{MailboxTrouble, PassPurpose, PassRecord};
    use ferry_projections::mailboxes::Counts;

    use super::PassSummary;

    #[test]
    fn a_summary_says_what_the_pass_recorded() {
        let mut troubled = BTreeMap::new();
        troubled.insert(
            "c@x".to_string(),
            MailboxTrouble {
                failed: 1,
                outcome: Some(Outcome::SucceededWithErrors),
                detail: "1 item failed".into(),
            },
        );
        let n = OwedNotice {
            batch: "b".into(),
            pass_id: 7,
            channel: NotifyChannel::Email,
            target: "ops@x".into(),
            webhook: None,
            outcome: Outcome::SucceededWithErrors,
            finished_seq: 20,
            finished_us: 2_000_000,
            attempts: 0,
            pass: Some(PassRecord {
                id: 7,
                pass: PassKind::Full,
                started_us: 1_000_000,
                finished_us: Some(2_000_000),
                outcome: Some(Outcome::SucceededWithErrors),
                purpose: PassPurpose::Sync,
                older_than_days: None,
                counts: Counts {
                    copied: 2,
                    adopted: 3,
                    skipped: 1,
                    failed: 1,
                    bytes: 110,
                    ..Counts::default()
                },
                mailboxes: 2,
                taking_part: Default::default(),
                troubled,
            }),
            source: "s".into(),
            destination: "d".into(),
        };
        let r = PassSummary::of(&n);
        assert_eq!(r.pass, "full");
        assert_eq!((r.copied, r.bytes, r.skipped, r.failed), (2, 110, 1, 1));
        assert_eq!(r.mailboxes, 2);
        assert_eq!(r.adopted, 3);
        assert!(
            r.text()
                .contains("Adopted:     3 items found at the destination, not copied"),
            "{}",
            r.text()
        );
        assert_eq!(
            r.subject(),
            "[mailferry] batch b: full pass SucceededWithErrors"
        );
        assert!(
            r.text()
                .contains("c@x: 1 failed items, SucceededWithErrors 1 item failed")
        );
        assert!(r.text().contains("From:        s to d"));
        assert!(r.started < r.finished);
    }
}

//! A batch's report: the data ferryd gathers for `ferryctl report`, which
//! renders it as HTML.

use std::collections::BTreeMap;

use ferry_projections::{BatchView, MailboxView};
use serde::{Deserialize, Serialize};

use crate::audit::EventRecord;

/// Items and bytes copied, and items failed, in one time bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub start_us: i64,
    pub items: u64,
    pub bytes: u64,
    pub failed: u64,
}

/// One mailbox: its view and what its stream says beyond it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailboxReport {
    pub view: MailboxView,
    /// Items skipped, by the class of their reason (every skip of every pass).
    pub skipped_by_reason: BTreeMap<String, u64>,
    /// Failure events (every attempt) by class.
    pub failures_by_class: BTreeMap<String, u64>,
    /// Items skipped and not copied since, each with its latest reason.
    #[serde(default)]
    pub skipped: Vec<SkippedItem>,
}

pub use ferry_projections::mailboxes::SkippedItem;

/// A reason's class: its text with numbers (sizes, UIDs, limits) written
/// as `N`, so items left out for the same cause group together.
pub fn reason_class(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut in_number = false;
    for c in reason.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('N');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

impl MailboxReport {
    /// Items the source was last seen holding, when counted.
    pub fn source_items(&self) -> Option<u64> {
        let counted: Vec<u64> = self
            .view
            .folders
            .values()
            .filter(|f| !f.vanished)
            .filter_map(|f| f.source_items)
            .collect();
        (!counted.is_empty()).then(|| counted.iter().sum())
    }

    /// Copied, adopted or skipped for a reason, out of what the source holds (0..=1).
    pub fn completion(&self) -> f64 {
        let t = &self.view.totals;
        // Copies of items since deleted at the source are not the source's.
        let done = (t.copied + t.adopted + t.skipped).saturating_sub(t.vanished) as f64;
        match self.source_items() {
            Some(0) => 1.0,
            Some(n) => (done / n as f64).min(1.0),
            None => 0.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportData {
    /// RFC 3339, when ferryd gathered this.
    pub generated: String,
    /// The log head the report reflects.
    pub head: u64,
    pub batch: BatchView,
    pub mailboxes: Vec<MailboxReport>,
    /// Width of each bucket in `series`.
    pub bucket_us: i64,
    pub series: Vec<Bucket>,
    /// Failure events of the whole batch by class.
    pub errors_by_class: BTreeMap<String, u64>,
    /// Cutover, routing, completion and MX events, in log order.
    pub milestones: Vec<EventRecord>,
}

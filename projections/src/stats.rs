//! Counters over the whole log.

use std::collections::BTreeMap;

use ferry_events::{Envelope, Event};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub events: u64,
    pub items_copied: u64,
    pub bytes_copied: u64,
    pub items_skipped: u64,
    pub items_failed: u64,
    pub errors_by_class: BTreeMap<String, u64>,
    pub passes_started: u64,
    pub passes_finished: u64,
    pub events_by_type: BTreeMap<String, u64>,
}

impl Stats {
    pub fn apply(&mut self, env: &Envelope) {
        self.events += 1;
        // No allocation per event once a type has been seen.
        match self.events_by_type.get_mut(&env.event_type) {
            Some(n) => *n += 1,
            None => {
                self.events_by_type.insert(env.event_type.clone(), 1);
            }
        }
        match &env.event {
            Event::ItemCopied { size, .. } => {
                self.items_copied += 1;
                self.bytes_copied += size;
            }
            Event::ItemSkipped { .. } => self.items_skipped += 1,
            Event::ItemFailed { class, .. } => {
                self.items_failed += 1;
                *self.errors_by_class.entry(class.clone()).or_default() += 1;
            }
            Event::PassStarted { .. } => self.passes_started += 1,
            Event::PassFinished { .. } => self.passes_finished += 1,
            _ => {}
        }
    }
}

//! Views of the log, as pure folds: `(state, event) → state`.
//!
//! - [`batches`]: each batch, its state (as Microsoft's migration service
//!   names them), its pending and running passes, its schedule;
//! - [`mailboxes`]: each mailbox, its state, per-folder progress, its
//!   unresolved errors;
//! - [`watermarks`]: per mailbox and source folder, what is known copied;
//! - [`sources`]: per mailbox and folder of an EWS source, its items' keys
//!   and the cursor of its change feed;
//! - [`replicas`]: per mailbox and Graph destination folder, the copies its
//!   message delta showed and the link to continue it;
//! - [`stats`]: counters across the whole log;
//! - [`rules`]: what each batch state accepts, read by every caller.
//!
//! `apply` takes no clock, does no I/O and cannot fail: a rebuild from
//! sequence 0 always equals the live view. [`snapshot`] encodes the whole
//! state so the daemon can start from a checkpoint plus the tail.

pub mod batches;
pub mod mailboxes;
pub mod notices;
pub mod replicas;
pub mod rules;
pub mod snapshot;
pub mod sources;
pub mod stats;
pub mod watermarks;

use std::collections::BTreeMap;

use ferry_events::{EndpointSpec, Envelope, Event};
use serde::{Deserialize, Serialize};

pub use batches::{BatchState, BatchView};
pub use mailboxes::{MailboxState, MailboxView};
pub use notices::{Notices, OwedNotice};
pub use replicas::{Replica, ReplicaTable, Replicas};
pub use sources::{SourceTable, Sources};
pub use stats::Stats;
pub use watermarks::{FolderMark, Watermarks};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointView {
    pub name: String,
    pub spec: EndpointSpec,
    /// Outcome and detail of the last `endpoint verify`.
    pub verified: Option<(bool, String)>,
    pub capabilities: Vec<String>,
    /// An EWS endpoint's own settings.
    #[serde(default)]
    pub ews: Option<ferry_events::EwsSettings>,
    /// The app-only sign-in (Graph, or Exchange Online's IMAP).
    pub graph: Option<ferry_events::GraphSignIn>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainView {
    /// Target host and time (µs) of the last MX switch.
    pub mx_switched: Option<(String, i64)>,
    /// Outcome and detail of the last verification since that switch.
    pub mx_verified: Option<(bool, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutoverStage {
    None,
    /// Its final delta pass waits or runs.
    Waiting(u64),
    /// The final delta pass ended; the routing actions are owed.
    Routing {
        pass_id: u64,
        forced: bool,
    },
    Done,
}

/// Every view, as of `head`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Projections {
    /// Sequence of the last event folded in.
    pub head: u64,
    pub endpoints: BTreeMap<String, EndpointView>,
    pub batches: BTreeMap<String, BatchView>,
    pub mailboxes: BTreeMap<String, MailboxView>,
    pub watermarks: Watermarks,
    #[serde(default)]
    pub sources: Sources,
    #[serde(default)]
    pub replicas: Replicas,
    pub domains: BTreeMap<String, DomainView>,
    pub stats: Stats,
    /// Pass notifications not yet delivered.
    pub notices: Notices,
}

impl Projections {
    /// Folds one event in. Events at or below `head` are ignored, so folding
    /// a tail twice is harmless.
    pub fn apply(&mut self, env: &Envelope) {
        if env.seq <= self.head {
            return;
        }
        self.head = env.seq;
        match &env.event {
            Event::EndpointRegistered { name, spec } => {
                self.endpoints.insert(
                    name.clone(),
                    EndpointView {
                        name: name.clone(),
                        spec: spec.clone(),
                        verified: None,
                        capabilities: Vec::new(),
                        ews: None,
                        graph: None,
                    },
                );
            }
            Event::EwsEndpointSet { name, ews } => {
                if let Some(ep) = self.endpoints.get_mut(name) {
                    ep.ews = Some(ews.clone());
                    ep.verified = None;
                    ep.capabilities.clear();
                }
            }
            Event::GraphEndpointSet { name, sign_in } => {
                if let Some(ep) = self.endpoints.get_mut(name) {
                    ep.graph = sign_in.clone();
                    ep.verified = None;
                    ep.capabilities.clear();
                }
            }
            Event::EndpointVerified {
                name,
                ok,
                capabilities,
                detail,
            } => {
                if let Some(ep) = self.endpoints.get_mut(name) {
                    ep.verified = Some((*ok, detail.clone()));
                    ep.capabilities = capabilities.clone();
                }
            }
            Event::EndpointUpdated { name, spec } => {
                if let Some(ep) = self.endpoints.get_mut(name) {
                    ep.spec = spec.clone();
                    // What was verified was the old spec.
                    ep.verified = None;
                    ep.capabilities.clear();
                }
            }
            Event::EndpointRemoved { name } => {
                self.endpoints.remove(name);
            }
            Event::MxSwitched { domain, to, .. } => {
                let d = self.domains.entry(domain.clone()).or_default();
                d.mx_switched = Some((to.clone(), env.time_us));
                d.mx_verified = None;
            }
            Event::MxVerified {
                domain, ok, detail, ..
            } => {
                self.domains.entry(domain.clone()).or_default().mx_verified =
                    Some((*ok, detail.clone()));
            }
            _ => {}
        }
        batches::apply(&mut self.batches, env);
        mailboxes::apply(&mut self.mailboxes, env);
        self.count_in_pass(env);
        self.watermarks.apply(env);
        self.sources.apply(env);
        self.replicas.apply(env);
        self.stats.apply(env);
        self.notices.apply(&self.batches, env);
        match &env.event {
            Event::PassFinished { batch, .. }
            | Event::BatchCompleted { batch, .. }
            | Event::MailboxRemoved { batch, .. } => self.settle_batch_state(batch),
            _ => {}
        }
        if let Event::MailboxRemoved { address, .. } = &env.event {
            self.watermarks.forget_mailbox(address);
            self.sources.forget_mailbox(address);
            self.replicas.forget_mailbox(address);
        }
        if let Event::BatchDeleted { batch, .. } = &env.event {
            let gone: Vec<String> = self
                .mailboxes
                .values()
                .filter(|m| &m.batch == batch)
                .map(|m| m.address.clone())
                .collect();
            for m in gone {
                self.mailboxes.remove(&m);
                self.watermarks.forget_mailbox(&m);
                self.sources.forget_mailbox(&m);
                self.replicas.forget_mailbox(&m);
            }
        }
    }

    /// Item outcomes also count toward the running pass of the mailbox's
    /// batch, and a mailbox's share of a pass toward that pass's report.
    fn count_in_pass(&mut self, env: &Envelope) {
        let mailbox = match &env.event {
            Event::ItemCopied { mailbox, .. }
            | Event::ItemAdopted { mailbox, .. }
            | Event::ItemSkipped { mailbox, .. }
            | Event::ItemFailed { mailbox, .. }
            | Event::MailboxPassStarted { mailbox, .. }
            | Event::MailboxPassFinished { mailbox, .. } => mailbox,
            _ => return,
        };
        let Some(m) = self.mailboxes.get(mailbox) else {
            return;
        };
        let Some(p) = self
            .batches
            .get_mut(&m.batch)
            .and_then(|b| b.passes.last_mut())
            .filter(|p| p.outcome.is_none())
        else {
            return;
        };
        match &env.event {
            Event::ItemCopied { size, .. } => {
                p.counts.copied += 1;
                p.counts.bytes += size;
            }
            Event::ItemAdopted { .. } => p.counts.adopted += 1,
            Event::ItemSkipped { .. } => p.counts.skipped += 1,
            Event::ItemFailed { .. } => p.counts.failed += 1,
            _ => {}
        }
        p.apply_mailbox(env);
    }

    /// A settled batch's state says how all its mailboxes stand, not only
    /// how its last pass went (which may have run over a few of them).
    fn settle_batch_state(&mut self, name: &str) {
        use batches::BatchState::*;
        let Some(b) = self.batches.get_mut(name) else {
            return;
        };
        let members: Vec<&MailboxView> = b
            .mailboxes
            .iter()
            .filter_map(|a| self.mailboxes.get(a))
            .filter(|m| m.last_pass.is_some() && m.state != MailboxState::CutOver)
            .collect();
        let unhealthy = members.iter().any(|m| !m.is_healthy());
        let all_failed =
            !members.is_empty() && members.iter().all(|m| m.state == MailboxState::Failed);
        b.state = match b.state {
            Synced | SyncedWithErrors if all_failed => Failed,
            Synced | SyncedWithErrors if unhealthy => SyncedWithErrors,
            Synced | SyncedWithErrors => Synced,
            Completed if unhealthy => CompletedWithErrors,
            other => other,
        };
    }

    /// Whether nothing was copied from a source folder of `mailbox`, none
    /// is in doubt and no pass scanned it: before that first copy, the
    /// destination folder is indexed and what it already holds is adopted.
    /// Items in doubt are settled against their intents instead.
    pub fn first_copy(&self, mailbox: &str, folder: &str) -> bool {
        let copied = self
            .mailboxes
            .get(mailbox)
            .and_then(|m| m.folders.get(folder))
            .map_or(0, |p| p.counts.copied);
        let mark = self.watermarks.get(mailbox, folder);
        copied == 0 && mark.is_none_or(|m| m.scanned_to == 0 && m.in_doubt.is_empty())
    }

    /// Folds every envelope of `log` in order.
    pub fn rebuild<'a>(log: impl IntoIterator<Item = &'a Envelope>) -> Self {
        let mut p = Projections::default();
        for env in log {
            p.apply(env);
        }
        p
    }

    /// Where the cutover of `address` stands.
    pub fn cutover_stage(&self, address: &str) -> CutoverStage {
        let Some(m) = self.mailboxes.get(address) else {
            return CutoverStage::None;
        };
        if m.cut_over_us.is_some() {
            return CutoverStage::Done;
        }
        let Some((id, forced)) = m.cutover else {
            return CutoverStage::None;
        };
        let Some(b) = self.batches.get(&m.batch) else {
            return CutoverStage::None;
        };
        if b.pending.iter().any(|p| p.id == id) {
            return CutoverStage::Waiting(id);
        }
        match b.passes.iter().rev().find(|p| p.id == id) {
            Some(p) if p.outcome.is_none() => CutoverStage::Waiting(id),
            Some(_) => CutoverStage::Routing {
                pass_id: id,
                forced,
            },
            // Its pass was dropped (the batch was stopped before it ran).
            None => CutoverStage::None,
        }
    }

    /// The batch (if any) holding `address` that is not completed or deleted.
    pub fn active_batch_of(&self, address: &str) -> Option<&BatchView> {
        let m = self.mailboxes.get(address)?;
        self.batches.get(&m.batch).filter(|b| b.state.is_active())
    }
}

//! Mailboxes: state, counts per folder, unresolved errors.

use std::collections::BTreeMap;

use ferry_events::{
    DuplicateGroup, Envelope, Event, ItemDescription, ItemKey, MailboxSpec, Outcome, PassKind, Side,
};
use serde::{Deserialize, Serialize};

/// The `RoutingAction` that ends a cutover without cutting the user over.
pub const ABANDONED: &str = "abandoned";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MailboxState {
    Queued,
    Syncing,
    Synced,
    SyncedWithErrors,
    Stopped,
    Failed,
    CutOver,
}

impl std::fmt::Display for MailboxState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub copied: u64,
    /// Found already at the destination and not copied.
    #[serde(default)]
    pub adopted: u64,
    pub skipped: u64,
    pub failed: u64,
    pub bytes: u64,
    /// Items found gone from the source after they were copied or skipped.
    #[serde(default)]
    pub vanished: u64,
    /// Copies of vanished items removed at the destination.
    #[serde(default)]
    pub removed: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderProgress {
    pub destination: Option<String>,
    pub counts: Counts,
    /// Items and bytes last counted at the source (verify pass or scan).
    pub source_items: Option<u64>,
    pub source_bytes: Option<u64>,
    pub destination_items: Option<u64>,
    /// Why the folder could not be copied in the last pass that tried.
    pub error: Option<String>,
    /// The folder is no longer listed at the source.
    #[serde(default)]
    pub vanished: bool,
    /// The last verify pass's comparison with the destination folder.
    #[serde(default)]
    pub comparison: Option<Comparison>,
    /// Why the whole folder is left out (its class, then the reason).
    #[serde(default)]
    pub skipped: Option<String>,
    /// The folder's name at the source now, when renamed or moved there:
    /// its items are still copied under this folder's name.
    #[serde(default)]
    pub renamed: Option<String>,
}

/// A side of the mailbox's pass that does not answer; the pass waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outage {
    pub side: Side,
    pub host: String,
    pub since_us: i64,
    pub reason: String,
    /// When the next attempt is due: live engine state, never in the log,
    /// so the fold leaves it empty and ferryd's answers fill it in.
    #[serde(default)]
    pub next_attempt_us: Option<i64>,
}

/// What a verify pass found comparing a folder with its destination.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comparison {
    pub destination: String,
    pub source_items: u64,
    pub destination_items: u64,
    /// Destination items with no source counterpart.
    pub unmatched: u64,
    pub duplicates: Vec<DuplicateGroup>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemError {
    pub key: ItemKey,
    pub class: String,
    pub reason: String,
    pub time_us: i64,
    pub attempts: u32,
    /// Subject, Message-ID and date, when they could be read.
    #[serde(default)]
    pub about: Option<ItemDescription>,
}

/// An item skipped and not since copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedItem {
    pub key: ItemKey,
    pub size: u64,
    pub reason: String,
    pub time_us: i64,
    /// Subject, Message-ID and date, when they could be read.
    #[serde(default)]
    pub about: Option<ItemDescription>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastPass {
    pub id: u64,
    pub pass: PassKind,
    pub started_us: i64,
    pub finished_us: Option<i64>,
    pub outcome: Option<Outcome>,
    pub detail: String,
    /// What this pass did to items, with bytes copied.
    pub counts: Counts,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxView {
    pub address: String,
    pub batch: String,
    pub spec: MailboxSpec,
    pub state: MailboxState,
    pub totals: Counts,
    pub folders: BTreeMap<String, FolderProgress>,
    /// Failed items not since copied or skipped (a list on the wire: JSON
    /// map keys must be strings).
    #[serde(with = "by_key")]
    pub errors: BTreeMap<ItemKey, ItemError>,
    /// Items skipped and not since copied (a list on the wire).
    #[serde(default, with = "by_key")]
    pub skipped: BTreeMap<ItemKey, SkippedItem>,
    pub last_pass: Option<LastPass>,
    pub passes_run: u64,
    pub cut_over_us: Option<i64>,
    /// When the mailbox's last delta pass finished.
    pub last_delta_us: Option<i64>,
    /// The cutover asked for and not yet done: its pass id, and whether
    /// it was forced past refusals.
    pub cutover: Option<(u64, bool)>,
    /// The outcome of the last pass that copied (any kind but verify): a
    /// verify pass counts, it does not make a mailbox Synced.
    #[serde(default)]
    pub last_copy: Option<Outcome>,
    /// The outage the running pass is waiting out, if any.
    #[serde(default)]
    pub outage: Option<Outage>,
}

impl MailboxView {
    /// Cut over, or its last copying pass succeeded and no failed item is
    /// unresolved.
    pub fn is_healthy(&self) -> bool {
        matches!(self.state, MailboxState::Synced | MailboxState::CutOver)
    }

    /// Items the source was last seen holding that are neither copied nor
    /// skipped: the work a delta pass would still find (an estimate until a
    /// delta pass has found the items deleted at the source).
    pub fn lag(&self) -> u64 {
        self.folders
            .values()
            .filter_map(|f| {
                let seen = f.source_items?;
                let held = (f.counts.copied + f.counts.adopted + f.counts.skipped)
                    .saturating_sub(f.counts.vanished);
                Some(seen.saturating_sub(held))
            })
            .sum()
    }
}

/// The folder's progress, created on first sight; no allocation after that
/// (this runs for every item event of a rebuild).
fn progress<'a>(
    folders: &'a mut BTreeMap<String, FolderProgress>,
    name: &str,
) -> &'a mut FolderProgress {
    if !folders.contains_key(name) {
        folders.insert(name.to_string(), FolderProgress::default());
    }
    folders.get_mut(name).expect("just inserted")
}

pub fn apply(mailboxes: &mut BTreeMap<String, MailboxView>, env: &Envelope) {
    let address = match &env.event {
        Event::MailboxAdded { batch, mailbox } => {
            mailboxes.insert(
                mailbox.address.clone(),
                MailboxView {
                    address: mailbox.address.clone(),
                    batch: batch.clone(),
                    spec: mailbox.clone(),
                    state: MailboxState::Queued,
                    totals: Counts::default(),
                    folders: BTreeMap::new(),
                    errors: BTreeMap::new(),
                    skipped: BTreeMap::new(),
                    last_pass: None,
                    passes_run: 0,
                    cut_over_us: None,
                    last_delta_us: None,
                    cutover: None,
                    last_copy: None,
                    outage: None,
                },
            );
            return;
        }
        Event::MailboxUpdated { mailbox, .. } => {
            if let Some(m) = mailboxes.get_mut(&mailbox.address) {
                m.spec = mailbox.clone();
            }
            return;
        }
        Event::MailboxRemoved { address, .. } => {
            mailboxes.remove(address);
            return;
        }
        Event::MailboxPassStarted { mailbox, .. }
        | Event::MailboxPassFinished { mailbox, .. }
        | Event::FolderMapped { mailbox, .. }
        | Event::FolderCounted { mailbox, .. }
        | Event::FolderFailed { mailbox, .. }
        | Event::ItemCopied { mailbox, .. }
        | Event::ItemAdopted { mailbox, .. }
        | Event::FolderCompared { mailbox, .. }
        | Event::ItemSkipped { mailbox, .. }
        | Event::ItemFailed { mailbox, .. }
        | Event::UserCutOver { mailbox, .. }
        | Event::RoutingAction { mailbox, .. }
        | Event::ItemVanished { mailbox, .. }
        | Event::FolderVanished { mailbox, .. }
        | Event::ItemRemovedAtDestination { mailbox, .. }
        | Event::OutageStarted { mailbox, .. }
        | Event::OutageEnded { mailbox, .. }
        | Event::ItemDescribed { mailbox, .. }
        | Event::FolderSkipped { mailbox, .. }
        | Event::SourceFoldersSynced { mailbox, .. } => mailbox,
        Event::CutoverRequested {
            mailboxes: list,
            forced,
            ..
        } => {
            for a in list {
                if let Some(m) = mailboxes.get_mut(a) {
                    m.cutover = Some((env.seq, *forced));
                }
            }
            return;
        }
        _ => return,
    };
    let Some(m) = mailboxes.get_mut(address) else {
        return;
    };
    match &env.event {
        Event::MailboxPassStarted { pass_id, pass, .. } => {
            m.state = MailboxState::Syncing;
            m.outage = None;
            m.last_pass = Some(LastPass {
                id: *pass_id,
                pass: *pass,
                started_us: env.time_us,
                finished_us: None,
                outcome: None,
                detail: String::new(),
                counts: Counts::default(),
            });
        }
        Event::MailboxPassFinished {
            pass_id,
            outcome,
            detail,
            ..
        } => {
            m.passes_run += 1;
            let mut verify = false;
            m.outage = None;
            if let Some(lp) = m.last_pass.as_mut().filter(|lp| lp.id == *pass_id) {
                lp.finished_us = Some(env.time_us);
                lp.outcome = Some(*outcome);
                lp.detail = detail.clone();
                if lp.pass == PassKind::Delta {
                    m.last_delta_us = Some(env.time_us);
                }
                verify = lp.pass == PassKind::Verify;
            }
            // A verify pass copies nothing: unless it failed, the state is
            // what the last copying pass left.
            let basis = if verify && *outcome != Outcome::Failed {
                m.last_copy
            } else {
                Some(*outcome)
            };
            if !verify {
                m.last_copy = Some(*outcome);
            }
            if m.cut_over_us.is_none() {
                m.state = match basis {
                    None => MailboxState::Queued,
                    Some(Outcome::Succeeded) if m.errors.is_empty() => MailboxState::Synced,
                    Some(Outcome::Succeeded | Outcome::SucceededWithErrors) => {
                        MailboxState::SyncedWithErrors
                    }
                    Some(Outcome::Failed) => MailboxState::Failed,
                    Some(Outcome::Stopped) => MailboxState::Stopped,
                };
            }
        }
        Event::FolderMapped {
            source,
            destination,
            ..
        } => {
            let f = progress(&mut m.folders, source);
            f.destination = Some(destination.clone());
            f.error = None;
            f.vanished = false;
        }
        Event::FolderFailed { folder, reason, .. } => {
            progress(&mut m.folders, folder).error = Some(reason.clone());
        }
        Event::SourceFoldersSynced { folders, .. } => {
            // The whole tree is stated: a folder left out is renamed no more.
            m.folders.values_mut().for_each(|p| p.renamed = None);
            for f in folders.iter().filter(|f| f.now.is_some()) {
                progress(&mut m.folders, &f.folder).renamed = f.now.clone();
            }
        }
        Event::FolderSkipped {
            folder,
            class,
            reason,
            ..
        } => {
            progress(&mut m.folders, folder).skipped = Some(format!("{class}: {reason}"));
        }
        Event::FolderCounted { side, counts, .. } => {
            for c in counts {
                // A destination count belongs to the source folder mapped to it.
                let row = match side {
                    Side::Destination => m
                        .folders
                        .iter()
                        .find(|(_, f)| f.destination.as_deref() == Some(c.folder.as_str()))
                        .map(|(name, _)| name.clone()),
                    Side::Source => None,
                };
                let f = progress(&mut m.folders, row.as_deref().unwrap_or(&c.folder));
                match side {
                    Side::Source => {
                        f.source_items = Some(c.items);
                        // Copy passes count items only (from EXISTS): 0 bytes
                        // for items means "not measured", not "empty".
                        if c.bytes > 0 || c.items == 0 {
                            f.source_bytes = Some(c.bytes);
                        }
                    }
                    Side::Destination => f.destination_items = Some(c.items),
                }
            }
        }
        Event::ItemCopied { key, size, .. } => {
            let f = progress(&mut m.folders, &key.folder);
            f.counts.copied += 1;
            f.counts.bytes += size;
            m.totals.copied += 1;
            m.totals.bytes += size;
            if let Some(lp) = m.last_pass.as_mut() {
                lp.counts.copied += 1;
                lp.counts.bytes += size;
            }
            resolve(m, key);
        }
        Event::ItemAdopted { key, .. } => {
            progress(&mut m.folders, &key.folder).counts.adopted += 1;
            m.totals.adopted += 1;
            if let Some(lp) = m.last_pass.as_mut() {
                lp.counts.adopted += 1;
            }
            m.errors.remove(key);
            m.skipped.remove(key);
        }
        Event::FolderCompared {
            folder,
            destination,
            source_items,
            destination_items,
            unmatched,
            duplicates,
            ..
        } => {
            progress(&mut m.folders, folder).comparison = Some(Comparison {
                destination: destination.clone(),
                source_items: *source_items,
                destination_items: *destination_items,
                unmatched: *unmatched,
                duplicates: duplicates.clone(),
            });
        }
        Event::ItemSkipped {
            key, size, reason, ..
        } => {
            progress(&mut m.folders, &key.folder).counts.skipped += 1;
            m.totals.skipped += 1;
            if let Some(lp) = m.last_pass.as_mut() {
                lp.counts.skipped += 1;
            }
            resolve(m, key);
            m.skipped.insert(
                key.clone(),
                SkippedItem {
                    key: key.clone(),
                    size: *size,
                    reason: reason.clone(),
                    time_us: env.time_us,
                    about: None,
                },
            );
        }
        Event::ItemDescribed { key, about, .. } => {
            if let Some(e) = m.errors.get_mut(key) {
                e.about = Some(about.clone());
            }
            if let Some(s) = m.skipped.get_mut(key) {
                s.about = Some(about.clone());
            }
        }
        Event::ItemFailed {
            key, class, reason, ..
        } => {
            // `failed` counts unresolved items once; each pass's own
            // figures keep every failure.
            if !m.errors.contains_key(key) {
                progress(&mut m.folders, &key.folder).counts.failed += 1;
                m.totals.failed += 1;
            }
            if let Some(lp) = m.last_pass.as_mut() {
                lp.counts.failed += 1;
            }
            let (attempts, about) = m
                .errors
                .get(key)
                .map_or((0, None), |e| (e.attempts, e.about.clone()));
            m.errors.insert(
                key.clone(),
                ItemError {
                    key: key.clone(),
                    class: class.clone(),
                    reason: reason.clone(),
                    time_us: env.time_us,
                    attempts: attempts + 1,
                    about,
                },
            );
        }
        Event::ItemVanished { key, .. } => {
            progress(&mut m.folders, &key.folder).counts.vanished += 1;
            m.totals.vanished += 1;
            if let Some(lp) = m.last_pass.as_mut() {
                lp.counts.vanished += 1;
            }
        }
        Event::ItemRemovedAtDestination { key, .. } => {
            progress(&mut m.folders, &key.folder).counts.removed += 1;
            m.totals.removed += 1;
            if let Some(lp) = m.last_pass.as_mut() {
                lp.counts.removed += 1;
            }
        }
        Event::FolderVanished { folder, .. } => progress(&mut m.folders, folder).vanished = true,
        Event::OutageStarted {
            side, host, reason, ..
        } => {
            m.outage = Some(Outage {
                side: *side,
                host: host.clone(),
                since_us: env.time_us,
                reason: reason.clone(),
                next_attempt_us: None,
            });
        }
        Event::OutageEnded { .. } => m.outage = None,
        Event::UserCutOver { .. } => {
            m.state = MailboxState::CutOver;
            m.cut_over_us = Some(env.time_us);
            m.cutover = None;
        }
        Event::RoutingAction { action, .. } if action == ABANDONED => m.cutover = None,
        _ => {}
    }
}

/// A failed (or skipped) item since copied or skipped no longer counts as
/// failed (or skipped).
fn resolve(m: &mut MailboxView, key: &ItemKey) {
    m.skipped.remove(key);
    if m.errors.remove(key).is_some() {
        let f = progress(&mut m.folders, &key.folder);
        f.counts.failed = f.counts.failed.saturating_sub(1);
        m.totals.failed = m.totals.failed.saturating_sub(1);
    }
}

/// An item's record, found by its key.
pub trait Keyed {
    fn key(&self) -> &ItemKey;
}

impl Keyed for ItemError {
    fn key(&self) -> &ItemKey {
        &self.key
    }
}

impl Keyed for SkippedItem {
    fn key(&self) -> &ItemKey {
        &self.key
    }
}

/// A map by item key, as a list on the wire: JSON map keys must be strings.
mod by_key {
    use std::collections::BTreeMap;

    use ferry_events::ItemKey;
    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Keyed;

    pub fn serialize<S: Serializer, T: Serialize>(
        m: &BTreeMap<ItemKey, T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.values())
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Keyed + DeserializeOwned>(
        d: D,
    ) -> Result<BTreeMap<ItemKey, T>, D::Error> {
        let list = Vec::<T>::deserialize(d)?;
        Ok(list.into_iter().map(|e| (e.key().clone(), e)).collect())
    }
}

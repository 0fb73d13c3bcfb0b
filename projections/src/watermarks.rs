//! What is known copied, per mailbox and source folder.
//!
//! UIDs are kept as ranges, so a 100,000-item folder copied in order costs a
//! few bytes. In-doubt intents (an intent without its outcome) are kept
//! apart: the engine settles them against the destination before copying.

use std::collections::BTreeMap;

use ferry_events::{Envelope, Event, ItemKey};
use rangemap::RangeInclusiveSet;
use serde::{Deserialize, Serialize};

/// An intent whose append may or may not have reached the destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InDoubt {
    pub size: u64,
    pub digest: String,
    pub dest_folder: String,
    pub dest_uidnext: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderMark {
    pub uidvalidity: u32,
    /// UIDs copied (or matched or adopted) at the destination, or skipped for good.
    pub done: RangeInclusiveSet<u32>,
    pub in_doubt: BTreeMap<u32, InDoubt>,
    /// Last CONDSTORE position the flags were synced to.
    pub highest_modseq: Option<u64>,
    /// Every UID up to this was looked at by a full or delta pass (copied,
    /// skipped or failed): a delta only lists UIDs above it. Only
    /// checkpoints move it, never a single copy, so a pre-stage that copied
    /// a high UID cannot hide a lower one.
    pub scanned_to: u32,
}

impl FolderMark {
    pub fn is_done(&self, uid: u32) -> bool {
        self.done.contains(&uid)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermarks {
    /// mailbox → source folder → mark.
    pub marks: BTreeMap<String, BTreeMap<String, FolderMark>>,
}

impl Watermarks {
    pub fn get(&self, mailbox: &str, folder: &str) -> Option<&FolderMark> {
        self.marks.get(mailbox)?.get(folder)
    }

    pub fn forget_mailbox(&mut self, mailbox: &str) {
        self.marks.remove(mailbox);
    }

    fn mark(&mut self, mailbox: &str, key: &ItemKey) -> &mut FolderMark {
        // Lookups before inserts: no allocation per event once seen.
        if !self.marks.contains_key(mailbox) {
            self.marks.insert(mailbox.to_string(), BTreeMap::new());
        }
        let folders = self.marks.get_mut(mailbox).expect("just inserted");
        if !folders.contains_key(&key.folder) {
            folders.insert(key.folder.clone(), FolderMark::default());
        }
        let m = folders.get_mut(&key.folder).expect("just inserted");
        // A new UIDVALIDITY makes every old UID meaningless here; the engine
        // re-matches by content and records the result under the new one.
        if m.uidvalidity != key.uidvalidity {
            *m = FolderMark {
                uidvalidity: key.uidvalidity,
                ..FolderMark::default()
            };
        }
        m
    }

    pub fn apply(&mut self, env: &Envelope) {
        match &env.event {
            Event::ItemCopyIntent {
                mailbox,
                key,
                size,
                digest,
                dest_folder,
                dest_uidnext,
            } => {
                self.mark(mailbox, key).in_doubt.insert(
                    key.uid,
                    InDoubt {
                        size: *size,
                        digest: digest.clone(),
                        dest_folder: dest_folder.clone(),
                        dest_uidnext: *dest_uidnext,
                    },
                );
            }
            Event::ItemCopied { mailbox, key, .. }
            | Event::ItemAdopted { mailbox, key, .. }
            | Event::ItemSkipped { mailbox, key, .. } => {
                let m = self.mark(mailbox, key);
                m.in_doubt.remove(&key.uid);
                m.done.insert(key.uid..=key.uid);
            }
            // Gone from the source: the UID will never be listed again, and
            // leaving `done` lets the next delta's comparison skip it.
            Event::ItemVanished { mailbox, key, .. } => {
                if let Some(m) = self
                    .marks
                    .get_mut(mailbox)
                    .and_then(|f| f.get_mut(&key.folder))
                    .filter(|m| m.uidvalidity == key.uidvalidity)
                {
                    m.done.remove(key.uid..=key.uid);
                }
            }
            Event::ItemFailed { mailbox, key, .. } => {
                self.mark(mailbox, key).in_doubt.remove(&key.uid);
            }
            Event::Checkpoint {
                mailbox,
                folder,
                uidvalidity,
                highest_uid,
                highest_modseq,
            } => {
                let key = ItemKey {
                    folder: folder.clone(),
                    uidvalidity: *uidvalidity,
                    uid: 0,
                };
                let m = self.mark(mailbox, &key);
                m.scanned_to = m.scanned_to.max(*highest_uid);
                if highest_modseq.is_some() {
                    m.highest_modseq = *highest_modseq;
                }
            }
            Event::UidValidityChanged {
                mailbox,
                folder,
                new,
                ..
            } => {
                let key = ItemKey {
                    folder: folder.clone(),
                    uidvalidity: *new,
                    uid: 0,
                };
                self.mark(mailbox, &key);
            }
            _ => {}
        }
    }
}

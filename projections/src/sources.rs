//! Per mailbox and source folder, the item table of a source that names
//! items by opaque keys (EWS): each key under the number the log gave it,
//! the cursor to ask the source's changes from, and the generation of both.

use std::collections::BTreeMap;

use ferry_events::{Envelope, Event, SourceFolderId, SourceItem};
use serde::{Deserialize, Serialize};

/// One item as the source last described it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableItem {
    pub key: String,
    pub size: u64,
    pub flags: Vec<String>,
    pub received_us: Option<i64>,
    /// The round (see [`SourceTable::round`]) that last described it.
    pub changed: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceTable {
    /// Starts at 1; a refused cursor starts the next one, with new numbers.
    pub generation: u32,
    pub cursor: Option<String>,
    /// Answers recorded in this generation.
    pub round: u64,
    /// Ordinal → item, for the items present at the source.
    pub items: BTreeMap<u32, TableItem>,
    /// The ordinal the next new item gets.
    pub next: u32,
}

impl SourceTable {
    /// Folds a `SourceSynced` of this table's folder in; other events are
    /// ignored. A new generation starts the table afresh.
    pub fn apply(&mut self, event: &Event) {
        let Event::SourceSynced {
            generation,
            seen,
            gone,
            cursor,
            ..
        } = event
        else {
            return;
        };
        if self.generation != *generation {
            *self = SourceTable {
                generation: *generation,
                next: 1,
                ..SourceTable::default()
            };
        }
        self.round += 1;
        for o in gone {
            self.items.remove(o);
        }
        for SourceItem {
            ordinal,
            key,
            size,
            flags,
            received_us,
        } in seen
        {
            self.next = self.next.max(ordinal.saturating_add(1));
            self.items.insert(
                *ordinal,
                TableItem {
                    key: key.clone(),
                    size: *size,
                    flags: flags.clone(),
                    received_us: *received_us,
                    changed: self.round,
                },
            );
        }
        self.cursor = Some(cursor.clone());
    }

    /// The ordinal of the item with this key.
    pub fn ordinal_of(&self, key: &str) -> Option<u32> {
        self.items
            .iter()
            .find(|(_, i)| i.key == key)
            .map(|(o, _)| *o)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sources {
    /// mailbox → source folder → table.
    pub tables: BTreeMap<String, BTreeMap<String, SourceTable>>,
    /// mailbox → its folders by id, as last recorded.
    #[serde(default)]
    pub folders: BTreeMap<String, SourceFolders>,
}

/// A source's mail folders by id and the folder delta's link (see
/// `SourceFoldersSynced`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFolders {
    pub folders: Vec<SourceFolderId>,
    pub link: String,
}

impl Sources {
    pub fn get(&self, mailbox: &str, folder: &str) -> Option<&SourceTable> {
        self.tables.get(mailbox)?.get(folder)
    }

    pub fn forget_mailbox(&mut self, mailbox: &str) {
        self.tables.remove(mailbox);
        self.folders.remove(mailbox);
    }

    pub fn apply(&mut self, env: &Envelope) {
        if let Event::SourceFoldersSynced {
            mailbox,
            folders,
            link,
        } = &env.event
        {
            self.folders.insert(
                mailbox.clone(),
                SourceFolders {
                    folders: folders.clone(),
                    link: link.clone(),
                },
            );
        }
        if let Event::SourceSynced {
            mailbox, folder, ..
        } = &env.event
        {
            self.tables
                .entry(mailbox.clone())
                .or_default()
                .entry(folder.clone())
                .or_default()
                .apply(&env.event);
        }
    }
}

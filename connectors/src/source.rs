//! The source side of an endpoint that names items by opaque keys and
//! tells its changes per folder from a cursor (Exchange Web Services).
//!
//! IMAP and Maildir sources are read through [`crate::MailSession`]: UIDs
//! ascend, so "everything above the last UID" is the cursor. Here the
//! endpoint keeps the cursor (a sync state) and hands out ids that mean
//! nothing in order; [`ChangeSource::changes`] says what was created,
//! changed and deleted since a cursor, a page at a time.

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, FixedOffset};

use crate::{Flag, Folder, FolderName, Result};

/// An item's id as the endpoint gives it; opaque, and it may change when
/// the item moves to another folder.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKey(pub String);

/// Where a folder's change feed stands; opaque.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(pub String);

/// What a folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FolderClass {
    Mail,
    Calendar,
    Contacts,
    Tasks,
    Other,
}

impl FolderClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FolderClass::Mail => "mail",
            FolderClass::Calendar => "calendar",
            FolderClass::Contacts => "contacts",
            FolderClass::Tasks => "tasks",
            FolderClass::Other => "other",
        }
    }

    /// The folder class Exchange names it by (`PR_CONTAINER_CLASS`).
    pub fn container_class(self) -> &'static str {
        match self {
            FolderClass::Mail => "IPF.Note",
            FolderClass::Calendar => "IPF.Appointment",
            FolderClass::Contacts => "IPF.Contact",
            FolderClass::Tasks => "IPF.Task",
            FolderClass::Other => "IPF",
        }
    }

    /// The class of a folder named by its container class; a subclass
    /// (`IPF.Appointment.Birthday`) is its parent's.
    pub fn of_container(name: &str) -> FolderClass {
        let is = |c: &str| name == c || name.starts_with(&format!("{c}."));
        if name.is_empty() || is("IPF.Note") {
            FolderClass::Mail
        } else if is("IPF.Appointment") {
            FolderClass::Calendar
        } else if is("IPF.Contact") {
            FolderClass::Contacts
        } else if is("IPF.Task") {
            FolderClass::Tasks
        } else {
            FolderClass::Other
        }
    }
}

/// A folder with its class, as the endpoint names it (`IPF.Note`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFolder {
    pub folder: Folder,
    pub class: FolderClass,
    pub class_name: String,
}

/// What a copy needs to know of an item before reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMeta {
    pub key: SourceKey,
    pub size: u64,
    pub flags: Vec<Flag>,
    pub internal_date: Option<DateTime<FixedOffset>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Created(SourceMeta),
    /// The item's description changed (flags, keywords); `meta` is whole.
    Updated(SourceMeta),
    /// Only the read state changed.
    Read {
        key: SourceKey,
        seen: bool,
    },
    Deleted(SourceKey),
}

/// One page of a folder's change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    pub changes: Vec<Change>,
    /// Ask from here next.
    pub cursor: Cursor,
    /// Nothing more to ask after this page.
    pub last: bool,
}

/// An item's exact bytes and its description as read with them.
#[derive(Debug, Clone)]
pub struct SourceItem {
    pub meta: SourceMeta,
    pub body: Bytes,
}

/// A source's folders followed by their own ids across passes, and the
/// link of its folder feed to ask from next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderIds {
    pub folders: Vec<FolderId>,
    pub link: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderId {
    pub id: String,
    /// The raw name its items are copied under: the one it was first
    /// listed by.
    pub folder: String,
    /// Its raw name at the source now, when renamed or moved since.
    pub now: Option<String>,
    pub special_use: Option<crate::SpecialUse>,
    pub subscribed: bool,
}

/// One logged-in reader of one user's mailbox.
#[async_trait]
pub trait ChangeSource: Send {
    /// Every folder with its class, parents first.
    async fn folders(&mut self) -> Result<Vec<SourceFolder>>;

    /// The folders by id as the log recorded them, before a listing, for a
    /// source that follows its folders by id.
    fn known_folders(&mut self, known: FolderIds) {
        let _ = known;
    }

    /// The folders by id after a listing, to record; `None` when the
    /// source names folders by name only.
    fn folder_ids(&self) -> Option<FolderIds> {
        None
    }

    /// Up to `max` changes of `folder` since `cursor` (none: every item,
    /// as created). [`crate::ConnectorError::CursorInvalid`] when the
    /// endpoint no longer knows the cursor.
    async fn changes(
        &mut self,
        folder: &FolderName,
        cursor: Option<&Cursor>,
        max: usize,
    ) -> Result<Changes>;

    /// The items with these keys, in the order asked; an item gone since
    /// is left out.
    async fn fetch(&mut self, keys: &[SourceKey]) -> Result<Vec<SourceItem>>;

    /// Whether [`ChangeSource::export`] is served (EWS: Exchange 2010 SP1
    /// and later).
    fn exports(&self) -> bool {
        false
    }

    /// Whether [`ChangeSource::export`] serves mail too, as streams a
    /// destination of the same service imports whole (Graph's
    /// `exportItems`). Mail goes as MIME otherwise.
    fn exports_mail(&self) -> bool {
        false
    }

    /// The items with these keys as full-fidelity streams (EWS
    /// `ExportItems`), in the order asked; an item gone since is left out.
    /// The items of folders that hold no mail travel so: they have no MIME
    /// that keeps them whole.
    async fn export(&mut self, keys: &[SourceKey]) -> Result<Vec<SourceItem>> {
        let _ = keys;
        Err(crate::ConnectorError::Refused {
            endpoint: String::new(),
            op: "exporting items",
            class: crate::ErrorClass::Other,
            text: "the source exports no full-fidelity items".into(),
        })
    }
}

/// Flags and keywords as a copy carries them: `\\Seen` for read, `\\Flagged`
/// for a follow-up flag still open, a keyword per category.
pub fn item_flags(read: bool, flagged: bool, categories: &[String]) -> Vec<Flag> {
    let mut out = Vec::new();
    if read {
        out.push("\\Seen".to_string());
    }
    if flagged {
        out.push("\\Flagged".to_string());
    }
    for c in categories {
        let k = keyword_of(c);
        if !out.contains(&k) {
            out.push(k);
        }
    }
    out
}

/// An IMAP keyword for a category: atom characters kept, the others
/// (space, brackets, quotes, `%`, `*`, `\`) turned into `_`.
pub fn keyword_of(category: &str) -> Flag {
    let k: String = category
        .trim()
        .chars()
        .map(|c| {
            let special = c.is_control()
                || c.is_whitespace()
                || !c.is_ascii()
                || matches!(c, '(' | ')' | '{' | '%' | '*' | '"' | '\\' | ']' | '[');
            if special { '_' } else { c }
        })
        .collect();
    if k.is_empty() { "_".into() } else { k }
}

#[cfg(test)]
mod tests {
    use super::keyword_of;

    #[test]
    fn categories_become_atoms() {
        assert_eq!(keyword_of("Red Category"), "Red_Category");
        assert_eq!(keyword_of("Projekt (Q1)"), "Projekt__Q1_");
        assert_eq!(keyword_of("Überfällig"), "_berf_llig");
        assert_eq!(keyword_of("Project-X"), "Project-X");
        assert_eq!(keyword_of("  "), "_");
    }
}

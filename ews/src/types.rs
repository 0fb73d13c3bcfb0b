//! What EWS answers with: versions, folders, item ids, sync changes, items.

use std::fmt;

use chrono::{DateTime, Utc};

/// The EWS schema versions a request can name in `RequestServerVersion`,
/// oldest first (their order is the order of features).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ApiVersion {
    Exchange2010,
    Exchange2010Sp1,
    Exchange2010Sp2,
    Exchange2013,
    Exchange2013Sp1,
    /// Exchange 2016 and 2019 (2019 has no schema version of its own).
    Exchange2016,
}

impl ApiVersion {
    pub const ALL: [ApiVersion; 6] = [
        ApiVersion::Exchange2010,
        ApiVersion::Exchange2010Sp1,
        ApiVersion::Exchange2010Sp2,
        ApiVersion::Exchange2013,
        ApiVersion::Exchange2013Sp1,
        ApiVersion::Exchange2016,
    ];

    /// The value of `RequestServerVersion/@Version`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::Exchange2010 => "Exchange2010",
            ApiVersion::Exchange2010Sp1 => "Exchange2010_SP1",
            ApiVersion::Exchange2010Sp2 => "Exchange2010_SP2",
            ApiVersion::Exchange2013 => "Exchange2013",
            ApiVersion::Exchange2013Sp1 => "Exchange2013_SP1",
            ApiVersion::Exchange2016 => "Exchange2016",
        }
    }

    pub fn parse(s: &str) -> Option<ApiVersion> {
        ApiVersion::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The schema a server of this build speaks (major.minor.build, as in
    /// `ServerVersionInfo`): 14.0 is 2010, 14.1 SP1, 14.2 and 14.3 SP2;
    /// 15.0 is 2013 (SP1 from build 847), 15.1 is 2016, 15.2 is 2019.
    pub fn from_build(major: u32, minor: u32, build: u32) -> Option<ApiVersion> {
        Some(match (major, minor) {
            (14, 0) => ApiVersion::Exchange2010,
            (14, 1) => ApiVersion::Exchange2010Sp1,
            (14, _) => ApiVersion::Exchange2010Sp2,
            (15, 0) if build >= 847 => ApiVersion::Exchange2013Sp1,
            (15, 0) => ApiVersion::Exchange2013,
            (15, _) => ApiVersion::Exchange2016,
            _ => return None,
        })
    }

    /// Exchange's default `EWSMaxConcurrency`: 10 on 2010, 27 from 2013.
    pub fn default_max_connections(self) -> usize {
        if self >= ApiVersion::Exchange2013 {
            27
        } else {
            10
        }
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `ServerVersionInfo` from a response's SOAP header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVersion {
    pub major: u32,
    pub minor: u32,
    pub major_build: u32,
    pub minor_build: u32,
    /// The schema version requests carry from now on.
    pub api: ApiVersion,
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}.{} ({})",
            self.major, self.minor, self.major_build, self.minor_build, self.api
        )
    }
}

/// A folder's kind, from its `FolderClass`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FolderKind {
    Mail,
    Calendar,
    Contacts,
    Tasks,
    /// Notes, journal, anything else.
    Other,
}

impl FolderKind {
    /// `IPF.Note` and its subclasses are mail; a folder without a class is
    /// too, as Outlook shows it.
    pub fn of_class(class: &str) -> FolderKind {
        let is = |base: &str| class == base || class.starts_with(&format!("{base}."));
        if class.is_empty() || is("IPF.Note") || is("IPF.Imap") {
            FolderKind::Mail
        } else if is("IPF.Appointment") {
            FolderKind::Calendar
        } else if is("IPF.Contact") {
            FolderKind::Contacts
        } else if is("IPF.Task") {
            FolderKind::Tasks
        } else {
            FolderKind::Other
        }
    }
}

/// The distinguished folders a migration maps to the destination's
/// special-use folders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WellKnown {
    Inbox,
    SentItems,
    Drafts,
    DeletedItems,
    JunkEmail,
    Archive,
    Outbox,
    Calendar,
    Contacts,
    Tasks,
}

impl WellKnown {
    pub const ALL: [WellKnown; 10] = [
        WellKnown::Inbox,
        WellKnown::SentItems,
        WellKnown::Drafts,
        WellKnown::DeletedItems,
        WellKnown::JunkEmail,
        WellKnown::Archive,
        WellKnown::Outbox,
        WellKnown::Calendar,
        WellKnown::Contacts,
        WellKnown::Tasks,
    ];

    /// The `DistinguishedFolderId/@Id` value.
    pub fn distinguished_id(self) -> &'static str {
        match self {
            WellKnown::Inbox => "inbox",
            WellKnown::SentItems => "sentitems",
            WellKnown::Drafts => "drafts",
            WellKnown::DeletedItems => "deleteditems",
            WellKnown::JunkEmail => "junkemail",
            WellKnown::Archive => "archive",
            WellKnown::Outbox => "outbox",
            WellKnown::Calendar => "calendar",
            WellKnown::Contacts => "contacts",
            WellKnown::Tasks => "tasks",
        }
    }

    /// The first schema version that knows the id (`archive` came with
    /// Exchange 2016).
    pub fn since(self) -> ApiVersion {
        match self {
            WellKnown::Archive => ApiVersion::Exchange2016,
            _ => ApiVersion::Exchange2010,
        }
    }
}

/// One folder of the tree below the message-folder root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    pub id: String,
    pub parent_id: Option<String>,
    pub display_name: String,
    /// `FolderClass` as the server sent it (`IPF.Note`, `IPF.Appointment`…).
    pub class: String,
    pub kind: FolderKind,
    pub total_count: Option<u64>,
    pub child_folder_count: Option<u64>,
    pub well_known: Option<WellKnown>,
    /// Display names from the top of the tree down to this folder.
    pub path: Vec<String>,
}

/// An item's id and change key. Both are opaque; the id changes when the
/// item moves to another folder.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ItemId {
    pub id: String,
    pub change_key: Option<String>,
}

/// What `SyncFolderItems` reports of an item it creates or updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemInfo {
    pub id: ItemId,
    /// `Message`, `CalendarItem`, `Contact`, `Task`, … (the element name).
    pub element: String,
    pub item_class: Option<String>,
    pub is_read: Option<bool>,
    pub size: Option<u64>,
    pub received: Option<DateTime<Utc>>,
    /// The follow-up flag, when the server sent it.
    pub flag: Option<FlagStatus>,
    pub categories: Vec<String>,
}

/// One change of a `SyncFolderItems` page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Create(ItemInfo),
    Update(ItemInfo),
    Delete { id: String },
    ReadFlag { id: String, is_read: bool },
}

/// One page of a folder's changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPage {
    /// The state to send with the next call; opaque.
    pub sync_state: String,
    /// `IncludesLastItemInRange`: nothing more to fetch after this page.
    pub last: bool,
    pub changes: Vec<Change>,
}

/// A message's follow-up flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlagStatus {
    #[default]
    NotFlagged,
    Flagged,
    Complete,
}

impl FlagStatus {
    pub fn parse(s: &str) -> FlagStatus {
        match s {
            "Flagged" => FlagStatus::Flagged,
            "Complete" => FlagStatus::Complete,
            _ => FlagStatus::NotFlagged,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FlagStatus::NotFlagged => "NotFlagged",
            FlagStatus::Flagged => "Flagged",
            FlagStatus::Complete => "Complete",
        }
    }

    /// From MAPI's `PR_FLAG_STATUS` (0x1090): 1 complete, 2 flagged.
    pub fn from_mapi(v: i64) -> FlagStatus {
        match v {
            1 => FlagStatus::Complete,
            2 => FlagStatus::Flagged,
            _ => FlagStatus::NotFlagged,
        }
    }

    pub fn to_mapi(self) -> i64 {
        match self {
            FlagStatus::NotFlagged => 0,
            FlagStatus::Complete => 1,
            FlagStatus::Flagged => 2,
        }
    }
}

/// An item fetched by `GetItem` with its MIME content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: ItemId,
    pub element: String,
    pub item_class: Option<String>,
    /// The MIME content, decoded from base64.
    pub mime: Vec<u8>,
    pub is_read: Option<bool>,
    pub flag: FlagStatus,
    pub categories: Vec<String>,
    pub received: Option<DateTime<Utc>>,
    pub size: Option<u64>,
}

/// One answer of a `GetItem` batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    Item(Box<Item>),
    /// `ErrorItemNotFound`: deleted or moved since it was listed.
    Missing {
        id: String,
    },
}

/// One item of an `ExportItems` answer: a full-fidelity stream, opaque to
/// everything but `UploadItems`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    pub id: ItemId,
    pub data: Vec<u8>,
}

//! The wire shapes of the Graph resources this crate reads and writes.

use serde::{Deserialize, Serialize};

/// A mail folder as Graph lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MailFolder {
    pub id: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub parent_folder_id: Option<String>,
    #[serde(default)]
    pub child_folder_count: u32,
    #[serde(default)]
    pub total_item_count: u32,
    #[serde(default)]
    pub unread_item_count: u32,
    #[serde(default)]
    pub is_hidden: bool,
    /// Set on folders a delta reports as deleted.
    #[serde(rename = "@removed", default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<serde_json::Value>,
}

/// The folders Exchange creates in every mailbox, by their Graph names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WellKnown {
    Inbox,
    SentItems,
    Drafts,
    DeletedItems,
    JunkEmail,
    Archive,
}

impl WellKnown {
    pub const ALL: [WellKnown; 6] = [
        WellKnown::Inbox,
        WellKnown::SentItems,
        WellKnown::Drafts,
        WellKnown::DeletedItems,
        WellKnown::JunkEmail,
        WellKnown::Archive,
    ];

    /// The name Graph takes in place of a folder id.
    pub fn graph_name(self) -> &'static str {
        match self {
            WellKnown::Inbox => "inbox",
            WellKnown::SentItems => "sentitems",
            WellKnown::Drafts => "drafts",
            WellKnown::DeletedItems => "deleteditems",
            WellKnown::JunkEmail => "junkemail",
            WellKnown::Archive => "archive",
        }
    }

    /// The IMAP special-use attribute (RFC 6154) of the same folder;
    /// the inbox has none.
    pub fn special_use(self) -> Option<&'static str> {
        match self {
            WellKnown::Inbox => None,
            WellKnown::SentItems => Some("\\Sent"),
            WellKnown::Drafts => Some("\\Drafts"),
            WellKnown::DeletedItems => Some("\\Trash"),
            WellKnown::JunkEmail => Some("\\Junk"),
            WellKnown::Archive => Some("\\Archive"),
        }
    }
}

/// A folder of the tree, with its path of display names from the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderNode {
    pub folder: MailFolder,
    pub path: Vec<String>,
    pub well_known: Option<WellKnown>,
}

/// A message as Graph shows it (the properties this crate selects).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: String,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub is_read: Option<bool>,
    #[serde(default)]
    pub is_draft: Option<bool>,
    #[serde(default)]
    pub received_date_time: Option<String>,
    #[serde(default)]
    pub sent_date_time: Option<String>,
    #[serde(default)]
    pub categories: Vec<String>,
    #[serde(default)]
    pub flag: Option<Flag>,
    #[serde(default)]
    pub parent_folder_id: Option<String>,
    #[serde(default)]
    pub internet_message_id: Option<String>,
    #[serde(default)]
    pub has_attachments: Option<bool>,
    #[serde(default)]
    pub single_value_extended_properties: Vec<ExtendedProperty>,
    /// Set on messages a delta reports as deleted.
    #[serde(rename = "@removed", default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Flag {
    pub flag_status: String,
}

/// A single-value extended property: `id` names the MAPI property
/// (`Integer 0x0E07`, `String {guid} Name x`), `value` is its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtendedProperty {
    pub id: String,
    pub value: String,
}

/// An email address with its display name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Address {
    pub name: String,
    pub address: String,
}

/// Where an item came from: the source's key and the digest of its
/// content. Stamped on every created item, so an item in doubt is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub key: String,
    pub digest: String,
}

impl Origin {
    /// The property's value: the digest (no blanks), a blank, the key.
    pub fn value(&self) -> String {
        format!("{} {}", self.digest, self.key)
    }

    pub fn parse(value: &str) -> Option<Origin> {
        let (digest, key) = value.split_once(' ')?;
        Some(Origin {
            key: key.to_string(),
            digest: digest.to_string(),
        })
    }
}

/// A file attached to a new message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewAttachment {
    pub name: String,
    pub content_type: String,
    pub content: Vec<u8>,
    /// Set for an inline part (`cid:` in the HTML body).
    pub content_id: Option<String>,
}

/// A received message to create through the JSON path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewMessage {
    pub subject: String,
    pub body: String,
    pub body_is_html: bool,
    pub from: Option<Address>,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub bcc: Vec<Address>,
    pub reply_to: Vec<Address>,
    pub internet_message_id: Option<String>,
    /// `x-` headers only (Graph refuses others), at most five.
    pub headers: Vec<(String, String)>,
    pub received: chrono::DateTime<chrono::Utc>,
    pub sent: Option<chrono::DateTime<chrono::Utc>>,
    pub is_read: bool,
    pub flagged: bool,
    pub categories: Vec<String>,
    pub attachments: Vec<NewAttachment>,
    pub origin: Option<Origin>,
}

/// An item the mailbox import API created.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ImportedItem {
    #[serde(rename = "ItemId")]
    pub item_id: String,
    #[serde(rename = "ChangeKey", default)]
    pub change_key: String,
}

/// Changes since the last delta link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta<T> {
    /// Items added or changed (all items on a first or restarted round).
    pub changed: Vec<T>,
    /// Ids of items deleted or moved out.
    pub removed: Vec<String>,
    /// Where the next round starts.
    pub delta_link: String,
    /// The stored link was refused (`410 Gone`) and the round started over.
    pub restarted: bool,
}

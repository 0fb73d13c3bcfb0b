use bytes::Bytes;
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

/// A folder name as the endpoint spells it (IMAP: modified UTF-7 on the
/// wire, with the server's delimiter) plus its decoded path segments.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FolderName {
    /// Exactly the name the endpoint uses; never re-encoded.
    pub raw: String,
    /// Hierarchy delimiter, `None` for a flat namespace.
    pub delimiter: Option<char>,
    /// Decoded (Unicode) path segments, e.g. `["Archive", "2024", "Février"]`.
    pub segments: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SpecialUse {
    Inbox,
    Sent,
    Drafts,
    Trash,
    Junk,
    Archive,
    All,
    Flagged,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Folder {
    pub name: FolderName,
    pub special_use: Option<SpecialUse>,
    /// `\Noselect` / `\NonExistent`: a hierarchy node holding no items.
    pub selectable: bool,
    pub subscribed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderStatus {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub exists: u32,
    /// HIGHESTMODSEQ when the endpoint offers CONDSTORE.
    pub highest_modseq: Option<u64>,
}

/// A system flag (`\Seen`, ...) or a keyword (`$Forwarded`, `Project-X`),
/// spelled as on the wire. `\Recent` is never carried.
pub type Flag = String;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemMeta {
    pub uid: u32,
    pub size: u64,
    pub flags: Vec<Flag>,
    pub internal_date: Option<DateTime<FixedOffset>>,
    pub modseq: Option<u64>,
    /// Why the item cannot be copied (not a regular file, over the size
    /// limit, a name it cannot carry); the engine skips it with this reason.
    /// An item fetched with a reason has an empty body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Item {
    pub meta: ItemMeta,
    /// The message exactly as stored, RFC 5322 bytes.
    pub body: Bytes,
}

impl Item {
    /// SHA-256 of the exact bytes, hex: how items are matched across endpoints.
    pub fn digest(&self) -> String {
        digest(&self.body)
    }
}

pub fn digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendUid {
    pub uidvalidity: u32,
    pub uid: u32,
}

/// One message for [`crate::MailSession::append_many`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendItem {
    pub flags: Vec<Flag>,
    pub internal_date: Option<DateTime<FixedOffset>>,
    /// The message exactly as it should be stored, RFC 5322 bytes.
    pub body: Bytes,
}

/// The Message-ID of a message (or of its header alone), trimmed; `None`
/// when the header is absent or empty. Folded lines are unfolded.
pub fn message_id(message: &[u8]) -> Option<String> {
    let header_end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| message.windows(2).position(|w| w == b"\n\n"))
        .unwrap_or(message.len());
    let header = String::from_utf8_lossy(&message[..header_end]);
    let mut value: Option<String> = None;
    for line in header.lines() {
        match value.as_mut() {
            // A folded continuation of the Message-ID line.
            Some(v) if line.starts_with([' ', '\t']) => v.push_str(line.trim()),
            Some(_) => break,
            None => {
                if let Some((name, rest)) = line.split_once(':')
                    && name.trim().eq_ignore_ascii_case("message-id")
                {
                    value = Some(rest.trim().to_string());
                }
            }
        }
    }
    value.filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::message_id;

    #[test]
    fn message_id_is_read_unfolded_and_case_blind() {
        assert_eq!(
            message_id(b"From: a\r\nmessage-ID:\r\n <x@y>\r\nSubject: s\r\n\r\nMessage-ID: <no>"),
            Some("<x@y>".into())
        );
        assert_eq!(message_id(b"From: a\r\n\r\nMessage-ID: <body>\r\n"), None);
        assert_eq!(message_id(b"Message-Id: \r\n\r\n"), None);
    }
}

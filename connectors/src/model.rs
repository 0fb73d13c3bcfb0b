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
    header_value(message, "message-id")
}

/// The unfolded value of the first `name` header field, trimmed; `None`
/// when it is absent or empty.
fn header_value(message: &[u8], name: &str) -> Option<String> {
    let header = String::from_utf8_lossy(&message[..header_end(message)]);
    let mut value: Option<String> = None;
    for line in header.lines() {
        match value.as_mut() {
            // A folded continuation of the field's line.
            Some(v) if line.starts_with([' ', '\t']) => v.push_str(line.trim()),
            Some(_) => break,
            None => {
                if let Some((n, rest)) = line.split_once(':')
                    && n.trim().eq_ignore_ascii_case(name)
                {
                    value = Some(rest.trim().to_string());
                }
            }
        }
    }
    value.filter(|v| !v.is_empty())
}

fn header_end(message: &[u8]) -> usize {
    message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| message.windows(2).position(|w| w == b"\n\n"))
        .unwrap_or(message.len())
}

/// What names a message to people: its subject (RFC 2047 words decoded),
/// Message-ID and date (RFC 3339 when the Date header parses, else as
/// written).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headline {
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub date: Option<String>,
}

impl Headline {
    /// Read from a message or its header alone; never fails.
    pub fn of(message: &[u8]) -> Headline {
        let header = &message[..header_end(message)];
        let parsed = mail_parser::MessageParser::new().parse_headers(header);
        let subject = parsed
            .as_ref()
            .and_then(|m| m.subject())
            .map(str::to_string);
        let date = parsed
            .as_ref()
            .and_then(|m| m.date())
            .map(|d| d.to_rfc3339());
        Headline {
            subject,
            message_id: message_id(header),
            date: date.or_else(|| header_value(header, "date")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Headline, message_id};

    #[test]
    fn message_id_is_read_unfolded_and_case_blind() {
        assert_eq!(
            message_id(b"From: a\r\nmessage-ID:\r\n <x@y>\r\nSubject: s\r\n\r\nMessage-ID: <no>"),
            Some("<x@y>".into())
        );
        assert_eq!(message_id(b"From: a\r\n\r\nMessage-ID: <body>\r\n"), None);
        assert_eq!(message_id(b"Message-Id: \r\n\r\n"), None);
    }

    #[test]
    fn headlines_decode_encoded_words_and_dates() {
        let h = Headline::of(
            b"Subject: =?UTF-8?Q?R=C3=A9union_=C3=A0?=\r\n =?ISO-8859-1?Q?_Gen=E8ve?=\r\n\
              Message-ID: <m1@x>\r\nDate: Mon, 2 Mar 2026 10:00:00 +0100\r\n\r\nSubject: body",
        );
        assert_eq!(h.subject.as_deref(), Some("Réunion à Genève"));
        assert_eq!(h.message_id.as_deref(), Some("<m1@x>"));
        assert_eq!(h.date.as_deref(), Some("2026-03-02T10:00:00+01:00"));
        // A date that does not parse is kept as written; absent fields stay absent.
        let h = Headline::of(b"Date: sometime soon\r\n");
        assert_eq!(h.date.as_deref(), Some("sometime soon"));
        assert_eq!((h.subject, h.message_id), (None, None));
    }
}

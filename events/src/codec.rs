//! Bytes of an envelope: `[format][schema version: u16 LE][payload]`.
//!
//! The format byte names the payload encoding (1 = bincode 2 over serde,
//! standard config), so the encoding can change without rewriting the log;
//! the schema version names the shape of the payload, so every record ever
//! written decodes by its own rules:
//! - schema 1: the whole [`Envelope`] as bincode, `event_type` included;
//! - schema 2 (written today): the envelope's head without `event_type`
//!   (it follows from the event), then a tag and the event. The two records
//!   the engine writes per item, [`Event::ItemCopyIntent`] and
//!   [`Event::ItemCopied`], travel compact: the digest as 32 bytes, the
//!   mailbox left out when the stream names it, the destination folder left
//!   out when it is the source folder. Anything else is the event as is.
//!
//! A record's hash is over its bytes, so old records keep their schema when
//! re-encoded: [`encode`] writes the schema the envelope carries.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::envelope::{Actor, Envelope, Hash};
use crate::event::{Event, ItemKey};

/// bincode 2.0.1, serde, `config::standard()`.
pub const FORMAT_BINCODE_V1: u8 = 1;
/// The shape written today.
pub const SCHEMA_VERSION: u16 = 2;
/// The first shape: the envelope whole, `event_type` and hex digests included.
pub const SCHEMA_V1: u16 = 1;

const HEADER: usize = 3;
const MAILBOX_STREAM: &str = "mailbox/";

#[derive(Debug, Error)]
pub enum CodecError {
    #[error("record of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("unknown record format {0}")]
    UnknownFormat(u8),
    #[error("unknown schema version {0} (this build reads up to {SCHEMA_VERSION})")]
    UnknownSchema(u16),
    #[error("undecodable record: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("unencodable record: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("record has {0} trailing bytes")]
    Trailing(usize),
    #[error("unknown event tag {0}")]
    UnknownTag(u8),
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Most bytes a record may claim while it decodes (strings, lists). A
/// record's own length prefixes are not believed beyond it: a damaged or
/// hostile record fails to decode instead of asking for petabytes.
pub const DECODE_LIMIT: usize = 64 << 20;

fn decode_config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<DECODE_LIMIT>,
> {
    config().with_limit::<DECODE_LIMIT>()
}

/// Schema 2's envelope without its event.
#[derive(Serialize)]
struct HeadOut<'a> {
    seq: u64,
    stream: &'a str,
    stream_version: u64,
    time_us: i64,
    actor: &'a Actor,
    prev_hash: &'a Hash,
}

#[derive(Deserialize)]
struct HeadIn {
    seq: u64,
    stream: String,
    stream_version: u64,
    time_us: i64,
    actor: Actor,
    prev_hash: Hash,
}

const TAG_EVENT: u8 = 0;
const TAG_INTENT: u8 = 1;
const TAG_COPIED: u8 = 2;

/// An item event's fields, compact. `mailbox` is `None` when the stream is
/// `mailbox/<mailbox>`, `dest_folder` when it equals `folder`.
#[derive(Deserialize)]
struct CompactItem {
    mailbox: Option<String>,
    folder: String,
    uidvalidity: u32,
    uid: u32,
    size: u64,
    digest: [u8; 32],
    dest_folder: Option<String>,
}

/// The 32 bytes of a lower-case 64-digit hex digest; anything else stays text.
fn digest_bytes(hex_digest: &str) -> Option<[u8; 32]> {
    if hex_digest.len() != 64 || hex_digest.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut out).ok()?;
    Some(out)
}

/// [`CompactItem`] as written, borrowing from the event.
#[derive(Serialize)]
struct CompactItemOut<'a> {
    mailbox: Option<&'a str>,
    folder: &'a str,
    uidvalidity: u32,
    uid: u32,
    size: u64,
    digest: [u8; 32],
    dest_folder: Option<&'a str>,
}

fn compact_item<'a>(
    stream: &str,
    mailbox: &'a str,
    key: &'a ItemKey,
    size: u64,
    digest: &str,
    dest_folder: &'a str,
) -> Option<CompactItemOut<'a>> {
    let digest = digest_bytes(digest)?;
    let named = stream.strip_prefix(MAILBOX_STREAM) == Some(mailbox);
    Some(CompactItemOut {
        mailbox: (!named).then_some(mailbox),
        folder: &key.folder,
        uidvalidity: key.uidvalidity,
        uid: key.uid,
        size,
        digest,
        dest_folder: (dest_folder != key.folder).then_some(dest_folder),
    })
}

impl CompactItem {
    /// (mailbox, key, size, digest, dest_folder) as the event holds them.
    fn expand(self, stream: &str) -> (String, ItemKey, u64, String, String) {
        let mailbox = self.mailbox.unwrap_or_else(|| {
            stream
                .strip_prefix(MAILBOX_STREAM)
                .unwrap_or_default()
                .to_string()
        });
        let dest_folder = self.dest_folder.unwrap_or_else(|| self.folder.clone());
        let key = ItemKey {
            folder: self.folder,
            uidvalidity: self.uidvalidity,
            uid: self.uid,
        };
        // `encode_to_slice` is several times faster than `encode` on the replay path.
        let mut digest = [0u8; 64];
        hex::encode_to_slice(self.digest, &mut digest).expect("64 hex digits for 32 bytes");
        let digest = String::from_utf8(digest.to_vec()).expect("hex is ASCII");
        (mailbox, key, self.size, digest, dest_folder)
    }
}

pub fn encode(env: &Envelope) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(160);
    out.push(FORMAT_BINCODE_V1);
    out.extend_from_slice(&env.schema_version.to_le_bytes());
    match env.schema_version {
        SCHEMA_V1 => {
            bincode::serde::encode_into_std_write(env, &mut out, config())?;
        }
        SCHEMA_VERSION => encode_v2(env, &mut out)?,
        other => return Err(CodecError::UnknownSchema(other)),
    }
    Ok(out)
}

fn encode_v2(env: &Envelope, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let head = HeadOut {
        seq: env.seq,
        stream: &env.stream,
        stream_version: env.stream_version,
        time_us: env.time_us,
        actor: &env.actor,
        prev_hash: &env.prev_hash,
    };
    bincode::serde::encode_into_std_write(&head, out, config())?;
    let written = match &env.event {
        Event::ItemCopyIntent {
            mailbox,
            key,
            size,
            digest,
            dest_folder,
            dest_uidnext,
        } => match compact_item(&env.stream, mailbox, key, *size, digest, dest_folder) {
            Some(item) => {
                out.push(TAG_INTENT);
                bincode::serde::encode_into_std_write(&item, out, config())?;
                bincode::serde::encode_into_std_write(dest_uidnext, out, config())?;
                true
            }
            None => false,
        },
        Event::ItemCopied {
            mailbox,
            key,
            size,
            digest,
            dest_folder,
            dest_uid,
        } => match compact_item(&env.stream, mailbox, key, *size, digest, dest_folder) {
            Some(item) => {
                out.push(TAG_COPIED);
                bincode::serde::encode_into_std_write(&item, out, config())?;
                bincode::serde::encode_into_std_write(dest_uid, out, config())?;
                true
            }
            None => false,
        },
        _ => false,
    };
    if !written {
        out.push(TAG_EVENT);
        bincode::serde::encode_into_std_write(&env.event, out, config())?;
    }
    Ok(())
}

pub fn decode(bytes: &[u8]) -> Result<Envelope, CodecError> {
    if bytes.len() < HEADER {
        return Err(CodecError::Short(bytes.len()));
    }
    if bytes[0] != FORMAT_BINCODE_V1 {
        return Err(CodecError::UnknownFormat(bytes[0]));
    }
    let schema = u16::from_le_bytes([bytes[1], bytes[2]]);
    let mut r = Reader {
        bytes: &bytes[HEADER..],
    };
    let env = match schema {
        SCHEMA_V1 => r.take::<Envelope>()?,
        SCHEMA_VERSION => {
            let head: HeadIn = r.take()?;
            let tag = r.byte()?;
            let event = match tag {
                TAG_EVENT => r.take::<Event>()?,
                TAG_INTENT => {
                    let item: CompactItem = r.take()?;
                    let dest_uidnext = r.take()?;
                    let (mailbox, key, size, digest, dest_folder) = item.expand(&head.stream);
                    Event::ItemCopyIntent {
                        mailbox,
                        key,
                        size,
                        digest,
                        dest_folder,
                        dest_uidnext,
                    }
                }
                TAG_COPIED => {
                    let item: CompactItem = r.take()?;
                    let dest_uid = r.take()?;
                    let (mailbox, key, size, digest, dest_folder) = item.expand(&head.stream);
                    Event::ItemCopied {
                        mailbox,
                        key,
                        size,
                        digest,
                        dest_folder,
                        dest_uid,
                    }
                }
                other => return Err(CodecError::UnknownTag(other)),
            };
            Envelope {
                seq: head.seq,
                stream: head.stream,
                stream_version: head.stream_version,
                time_us: head.time_us,
                actor: head.actor,
                event_type: event.event_type().to_string(),
                schema_version: SCHEMA_VERSION,
                prev_hash: head.prev_hash,
                event,
            }
        }
        other => return Err(CodecError::UnknownSchema(other)),
    };
    if !r.bytes.is_empty() {
        return Err(CodecError::Trailing(r.bytes.len()));
    }
    Ok(env)
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, CodecError> {
        let (v, used) = bincode::serde::decode_from_slice(self.bytes, decode_config())?;
        self.bytes = &self.bytes[used..];
        Ok(v)
    }

    fn byte(&mut self) -> Result<u8, CodecError> {
        let (&b, rest) = self.bytes.split_first().ok_or(CodecError::Short(HEADER))?;
        self.bytes = rest;
        Ok(b)
    }
}

/// What a reader needs to find a record without decoding it: its sequence,
/// stream and stream version. Both schemas begin with these three.
pub struct Peek<'a> {
    pub seq: u64,
    pub stream: &'a str,
    pub stream_version: u64,
}

pub fn peek(bytes: &[u8]) -> Result<Peek<'_>, CodecError> {
    if bytes.len() < HEADER {
        return Err(CodecError::Short(bytes.len()));
    }
    if bytes[0] != FORMAT_BINCODE_V1 {
        return Err(CodecError::UnknownFormat(bytes[0]));
    }
    let schema = u16::from_le_bytes([bytes[1], bytes[2]]);
    if schema != SCHEMA_V1 && schema != SCHEMA_VERSION {
        return Err(CodecError::UnknownSchema(schema));
    }
    let mut at = HEADER;
    let seq = varint(bytes, &mut at)?;
    let len = varint(bytes, &mut at)? as usize;
    let end = at.checked_add(len).filter(|&e| e <= bytes.len());
    let end = end.ok_or(CodecError::Short(bytes.len()))?;
    let stream = std::str::from_utf8(&bytes[at..end]).map_err(|_| {
        CodecError::Decode(bincode::error::DecodeError::Other("stream is not UTF-8"))
    })?;
    at = end;
    let stream_version = varint(bytes, &mut at)?;
    Ok(Peek {
        seq,
        stream,
        stream_version,
    })
}

/// bincode's standard variable-length unsigned integer.
fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, CodecError> {
    let short = || CodecError::Short(bytes.len());
    let first = *bytes.get(*at).ok_or_else(short)?;
    *at += 1;
    let width = match first {
        0..=250 => return Ok(u64::from(first)),
        251 => 2,
        252 => 4,
        253 => 8,
        _ => {
            return Err(CodecError::Decode(bincode::error::DecodeError::Other(
                "integer wider than 64 bits",
            )));
        }
    };
    let raw = bytes.get(*at..*at + width).ok_or_else(short)?;
    *at += width;
    let mut b = [0u8; 8];
    b[..width].copy_from_slice(raw);
    Ok(u64::from_le_bytes(b))
}

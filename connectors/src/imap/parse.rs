//! Small pure helpers between our model and the IMAP wire: quoting,
//! UID sets, flags, INTERNALDATE, LIST attributes and the reading of a
//! server's refusal into an [`ErrorClass`].

use async_imap::imap_proto::rfc4315::UidSetMember;
use async_imap::imap_proto::{AttributeValue, NameAttribute};
use chrono::{DateTime, FixedOffset};

use crate::model::{Flag, FolderName, ItemMeta, SpecialUse};
use crate::{ErrorClass, utf7};

/// RFC 3501 `date-time`, e.g. `17-Jul-1996 02:44:25 -0700`.
const DATE_TIME: &str = "%d-%b-%Y %H:%M:%S %z";

/// A quoted string; `None` when the text cannot travel quoted (CR, LF, NUL).
pub(crate) fn quote(s: &str) -> Option<String> {
    if s.contains(['\r', '\n', '\0']) {
        return None;
    }
    Some(format!(
        "\"{}\"",
        s.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// The wire name of a folder: `raw` when the endpoint gave one, else the
/// segments in modified UTF-7 joined with the server's delimiter (the
/// folder's own when the server has none to offer).
pub(crate) fn wire_name(folder: &FolderName, server_delimiter: Option<char>) -> String {
    if !folder.raw.is_empty() {
        return folder.raw.clone();
    }
    let delimiter = server_delimiter.or(folder.delimiter).unwrap_or('/');
    let encoded: Vec<String> = folder.segments.iter().map(|s| utf7::encode(s)).collect();
    encoded.join(&delimiter.to_string())
}

/// Builds a [`FolderName`] from a LIST answer.
pub(crate) fn folder_name(raw: &str, delimiter: Option<char>) -> FolderName {
    let parts: Vec<&str> = match delimiter {
        Some(d) => raw.split(d).collect(),
        None => vec![raw],
    };
    // A name the server did not encode canonically is shown as sent.
    let segments = parts
        .into_iter()
        .map(|p| utf7::decode(p).unwrap_or_else(|| p.to_string()))
        .collect();
    FolderName {
        raw: raw.to_string(),
        delimiter,
        segments,
    }
}

/// Compresses UIDs into an IMAP sequence set: `1:3,7,9:10`.
pub(crate) fn uid_set(uids: &[u32]) -> String {
    let mut sorted: Vec<u32> = uids.iter().copied().filter(|&u| u > 0).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// The UIDs of an APPENDUID uid-set, ascending. `None` when the set names
/// more than `limit` UIDs or one twice: a set that cannot belong to our
/// messages, and a `1:4294967295` must not become a 16 GB vector.
pub(crate) fn expand_uid_set(members: &[UidSetMember], limit: usize) -> Option<Vec<u32>> {
    let mut uids = Vec::new();
    for member in members {
        let (lo, hi) = match member {
            UidSetMember::Uid(u) => (*u, *u),
            // RFC 4315: `4:2` equals `2:4` (imap-proto already orders them).
            UidSetMember::UidRange(r) => (*r.start().min(r.end()), *r.start().max(r.end())),
        };
        if u64::from(hi - lo) + 1 > (limit - uids.len()) as u64 {
            return None;
        }
        uids.extend(lo..=hi);
    }
    // UIDs grow in the order messages are added (RFC 3501 §2.3.1.1), so the
    // sorted set lines up with the items as sent.
    uids.sort_unstable();
    let len = uids.len();
    uids.dedup();
    (uids.len() == len && !uids.contains(&0)).then_some(uids)
}

/// Arguments of one message in an APPEND, up to its literal's header:
/// `(flags) "date" {len}` (`{len+}` for LITERAL+), without the CRLF.
pub(crate) fn append_args(
    flags: &[Flag],
    date: Option<&DateTime<FixedOffset>>,
    len: usize,
    literal_plus: bool,
) -> String {
    let date = date
        .map(|d| format!(" \"{}\"", format_date(d)))
        .unwrap_or_default();
    let plus = if literal_plus { "+" } else { "" };
    format!("{}{date} {{{len}{plus}}}", flag_list(flags))
}

/// Flags for APPEND/STORE: `\Recent` is the server's alone to set.
pub(crate) fn flag_list(flags: &[Flag]) -> String {
    let kept: Vec<&str> = flags
        .iter()
        .map(String::as_str)
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
        .collect();
    format!("({})", kept.join(" "))
}

pub(crate) fn format_date(date: &DateTime<FixedOffset>) -> String {
    date.format(DATE_TIME).to_string()
}

pub(crate) fn parse_date(s: &str) -> Option<DateTime<FixedOffset>> {
    // Days below 10 come space-padded (` 7-Jul-2024 ...`).
    DateTime::parse_from_str(s.trim(), DATE_TIME).ok()
}

/// Folds one FETCH response into item metadata; `None` without a UID
/// (an unsolicited flag update that is not about our request).
pub(crate) fn item_meta(attrs: &[AttributeValue<'_>]) -> Option<ItemMeta> {
    let mut meta = ItemMeta {
        uid: 0,
        size: 0,
        flags: Vec::new(),
        internal_date: None,
        modseq: None,
        refused: None,
    };
    for attr in attrs {
        match attr {
            AttributeValue::Uid(uid) => meta.uid = *uid,
            AttributeValue::Rfc822Size(size) => meta.size = u64::from(*size),
            AttributeValue::Flags(flags) => {
                meta.flags = flags
                    .iter()
                    .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
                    .map(|f| f.to_string())
                    .collect();
            }
            AttributeValue::InternalDate(d) => meta.internal_date = parse_date(d),
            AttributeValue::ModSeq(m) => meta.modseq = Some(*m),
            _ => {}
        }
    }
    (meta.uid != 0).then_some(meta)
}

/// The message bytes of a `BODY[]` answer.
pub(crate) fn body_bytes<'a>(attrs: &'a [AttributeValue<'_>]) -> Option<&'a [u8]> {
    attrs.iter().find_map(|a| match a {
        AttributeValue::BodySection {
            section: None,
            data: Some(data),
            ..
        } => Some(data.as_ref()),
        AttributeValue::Rfc822(Some(data)) => Some(data.as_ref()),
        _ => None,
    })
}

/// The bytes of a `BODY[HEADER.FIELDS (...)]` answer.
pub(crate) fn header_bytes<'a>(attrs: &'a [AttributeValue<'_>]) -> Option<&'a [u8]> {
    attrs.iter().find_map(|a| match a {
        AttributeValue::BodySection {
            section: Some(_),
            data: Some(data),
            ..
        } => Some(data.as_ref()),
        _ => None,
    })
}

/// Folds one parsed server answer as a session does: item metadata and
/// body, folder names and attributes, a tagged answer's APPENDUID set and
/// class. The fuzz target `imap_response` and its corpus test call it on
/// whatever imap-proto parses; nothing else needs it.
pub fn fold_answer(response: &async_imap::imap_proto::Response<'_>) {
    use async_imap::imap_proto::{MailboxDatum, Response};
    match response {
        Response::Fetch(_, attrs) => {
            let _ = (item_meta(attrs), body_bytes(attrs));
        }
        Response::MailboxData(MailboxDatum::List(l)) => {
            let delimiter = l.delimiter.as_deref().and_then(|d| d.chars().next());
            let _ = folder_name(&l.name, delimiter);
            let _ = (
                special_use(&l.name_attributes),
                selectable(&l.name_attributes),
            );
        }
        Response::Done {
            status, outcome, ..
        } => {
            let tagged = crate::imap::session::Tagged::new(status, outcome);
            let _ = classify(&tagged.text, ErrorClass::Other);
            if let Some((_, members)) = &tagged.append_uid_set {
                let _ = expand_uid_set(members, 1000);
            }
        }
        _ => {}
    }
}

pub(crate) fn special_use(attrs: &[NameAttribute<'_>]) -> Option<SpecialUse> {
    attrs.iter().find_map(|a| match a {
        NameAttribute::All => Some(SpecialUse::All),
        NameAttribute::Archive => Some(SpecialUse::Archive),
        NameAttribute::Drafts => Some(SpecialUse::Drafts),
        NameAttribute::Flagged => Some(SpecialUse::Flagged),
        NameAttribute::Junk => Some(SpecialUse::Junk),
        NameAttribute::Sent => Some(SpecialUse::Sent),
        NameAttribute::Trash => Some(SpecialUse::Trash),
        _ => None,
    })
}

/// `\Subscribed`, which LIST-EXTENDED's `RETURN (SUBSCRIBED)` adds.
pub(crate) fn subscribed(attrs: &[NameAttribute<'_>]) -> bool {
    attrs.iter().any(|a| match a {
        NameAttribute::Extension(e) => e.eq_ignore_ascii_case("\\Subscribed"),
        _ => false,
    })
}

pub(crate) fn selectable(attrs: &[NameAttribute<'_>]) -> bool {
    !attrs.iter().any(|a| match a {
        NameAttribute::NoSelect => true,
        NameAttribute::Extension(e) => e.eq_ignore_ascii_case("\\NonExistent"),
        _ => false,
    })
}

/// Whether a server's words mean "not now": RFC 5530 codes and the
/// phrases providers use for throttling (Exchange, Gmail, Microsoft 365).
pub(crate) fn is_throttle(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "[unavailable]",
        "[limit]",
        "[inuse]",
        "throttl",
        "too many",
        "try again later",
        "temporarily",
        "rate limit",
        "server busy",
        "bandwidth",
    ]
    .iter()
    .any(|w| t.contains(w))
}

/// The class of a NO/BAD: throttling wins, then the caller's default.
pub(crate) fn classify(text: &str, default: ErrorClass) -> ErrorClass {
    if is_throttle(text) {
        ErrorClass::Throttled
    } else {
        default
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_are_compressed() {
        assert_eq!(uid_set(&[5, 1, 2, 3, 9, 10, 3]), "1:3,5,9:10");
        assert_eq!(uid_set(&[42]), "42");
        assert_eq!(uid_set(&[]), "");
    }

    #[test]
    fn appenduid_sets_expand_in_uid_order() {
        use crate::imap::session::Tagged;
        use async_imap::imap_proto::Response;

        // Through imap-proto's own parser, as a server's answer arrives.
        let uids = |line: &str, limit: usize| {
            let (_, response) = Response::parse(line.as_bytes()).expect("parses");
            let Response::Done {
                status, outcome, ..
            } = response
            else {
                panic!("not tagged: {response:?}");
            };
            let (validity, members) = Tagged::new(&status, &outcome)
                .append_uid_set
                .expect("APPENDUID");
            assert_eq!(validity, 38505);
            expand_uid_set(&members, limit)
        };
        assert_eq!(
            uids("A1 OK [APPENDUID 38505 5:9] done\r\n", 5),
            Some(vec![5, 6, 7, 8, 9])
        );
        assert_eq!(
            uids("A1 OK [APPENDUID 38505 5,7:9] done\r\n", 4),
            Some(vec![5, 7, 8, 9])
        );
        assert_eq!(
            uids("A1 OK [APPENDUID 38505 9:7,3] done\r\n", 4),
            Some(vec![3, 7, 8, 9])
        );
        assert_eq!(
            uids("A1 OK [APPENDUID 38505 42] done\r\n", 1),
            Some(vec![42])
        );
        // More UIDs than messages, or one twice: not ours to guess about.
        assert_eq!(uids("A1 OK [APPENDUID 38505 5:9] done\r\n", 4), None);
        assert_eq!(uids("A1 OK [APPENDUID 38505 1:4294967295] x\r\n", 50), None);
        assert_eq!(uids("A1 OK [APPENDUID 38505 5,5:6] done\r\n", 3), None);
        // Fewer is left for the caller to notice.
        assert_eq!(
            uids("A1 OK [APPENDUID 38505 5:6] done\r\n", 3),
            Some(vec![5, 6])
        );
    }

    #[test]
    fn append_args_carry_flags_date_and_literal() {
        let d = parse_date("07-Jul-2024 09:05:01 +0200").unwrap();
        let flags = vec!["\\Seen".to_string(), "\\Recent".into()];
        assert_eq!(
            append_args(&flags, Some(&d), 12, true),
            "(\\Seen) \"07-Jul-2024 09:05:01 +0200\" {12+}"
        );
        assert_eq!(append_args(&[], None, 0, false), "() {0}");
    }

    #[test]
    fn quoting_escapes_and_refuses_newlines() {
        assert_eq!(quote(r#"a"b\c"#).unwrap(), r#""a\"b\\c""#);
        assert!(quote("a\r\nb").is_none());
    }

    #[test]
    fn dates_round_trip_with_space_padded_days() {
        let d = parse_date(" 7-Jul-2024 09:05:01 +0200").unwrap();
        assert_eq!(format_date(&d), "07-Jul-2024 09:05:01 +0200");
        assert_eq!(parse_date(&format_date(&d)), Some(d));
    }

    #[test]
    fn recent_is_never_sent() {
        let flags = vec!["\\Seen".to_string(), "\\Recent".into(), "$Forwarded".into()];
        assert_eq!(flag_list(&flags), "(\\Seen $Forwarded)");
    }

    #[test]
    fn names_decode_into_segments_and_encode_back() {
        let f = folder_name("Archive/2024/F&AOk-vrier", Some('/'));
        assert_eq!(f.segments, ["Archive", "2024", "Février"]);
        let fresh = FolderName {
            raw: String::new(),
            delimiter: Some('.'),
            segments: f.segments.clone(),
        };
        assert_eq!(wire_name(&fresh, Some('/')), f.raw);
        assert_eq!(wire_name(&f, Some('.')), f.raw);
    }

    #[test]
    fn throttling_words_are_recognised() {
        assert_eq!(
            classify("[UNAVAILABLE] Try later", ErrorClass::Item),
            ErrorClass::Throttled
        );
        assert_eq!(
            classify("[LIMIT] Too many", ErrorClass::Item),
            ErrorClass::Throttled
        );
        assert_eq!(
            classify("[TRYCREATE] no such folder", ErrorClass::Folder),
            ErrorClass::Folder
        );
    }
}

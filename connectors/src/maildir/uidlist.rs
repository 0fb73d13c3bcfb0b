//! `mailferry-uidlist`: our per-folder UID table, so a file keeps its UID
//! across sessions and a new file gets a UID above every earlier one.
//!
//! ```text
//! mailferry-uidlist 1 V1732000000 N1
//! 1 1732000000.M12P34Q0.host,S=120
//! 2 1732000001.M56P34Q1.host,S=98
//! ```
//!
//! The header (format version, UIDVALIDITY, first UID) is written once, when
//! the file is created; after that lines are only appended, each batch
//! fsynced before its UIDs are handed out. The next UID is one past the
//! highest listed. A torn last line (a crash mid-append, never acknowledged)
//! is cut off when the file is next loaded. Keys are file *bases*, the name
//! before `:2,`, which flag changes leave alone. We keep our own file rather
//! than Dovecot's `dovecot-uidlist`, whose rules (and locks) Dovecot owns.
//!
//! A base that starts with a space or holds a control character (a newline
//! would forge a line) is written as a space and its bytes in hex:
//! `3  0a41` is the base `"\nA"`. Where the list lives is the caller's
//! choice: beside the messages for a tree we write, elsewhere for a source.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use crate::error::{ConnectorError, Result};

use super::{io_err, open_append, read_meta, write_atomically};

pub const UIDLIST_FILE: &str = "mailferry-uidlist";
const MAGIC: &str = "mailferry-uidlist";

#[derive(Debug)]
pub struct UidList {
    path: PathBuf,
    uidvalidity: u32,
    next_uid: u32,
    by_base: HashMap<String, u32>,
}

impl UidList {
    /// Loads the list at `path` (`DIR/mailferry-uidlist` for a tree we
    /// write), creating it (UIDVALIDITY = now, in seconds) when absent.
    pub fn load_or_create(path: PathBuf, endpoint: &str) -> Result<UidList> {
        let Some(text) = read_meta(&path)? else {
            return Self::create(path, fresh_uidvalidity());
        };
        let corrupt = |text: String| ConnectorError::Protocol {
            endpoint: endpoint.to_string(),
            op: "read uidlist",
            text: format!("{}: {text}", path.display()),
        };
        // Everything after the last newline is a torn append: drop it.
        let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if complete < text.len() {
            let file = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(io_err("open", &path))?;
            file.set_len(complete as u64)
                .map_err(io_err("truncate", &path))?;
            file.sync_all().map_err(io_err("fsync", &path))?;
        }
        let text =
            std::str::from_utf8(&text[..complete]).map_err(|_| corrupt("not UTF-8".into()))?;
        let mut lines = text.lines();
        let header = lines.next().ok_or_else(|| corrupt("no header".into()))?;
        let (uidvalidity, mut next_uid) =
            parse_header(header).ok_or_else(|| corrupt(format!("bad header {header:?}")))?;
        let mut by_base = HashMap::new();
        for (n, line) in lines.enumerate() {
            let parsed = line.split_once(' ').and_then(|(uid, base)| {
                Some((
                    uid.parse::<u32>().ok().filter(|&u| u > 0)?,
                    decode_base(base)?,
                ))
            });
            let (uid, base) =
                parsed.ok_or_else(|| corrupt(format!("bad line {}: {line:?}", n + 2)))?;
            by_base.entry(base).or_insert(uid);
            next_uid = next_uid.max(uid.saturating_add(1));
        }
        Ok(UidList {
            path,
            uidvalidity,
            next_uid,
            by_base,
        })
    }

    fn create(path: PathBuf, uidvalidity: u32) -> Result<UidList> {
        write_atomically(&path, format!("{MAGIC} 1 V{uidvalidity} N1\n").as_bytes())?;
        Ok(UidList {
            path,
            uidvalidity,
            next_uid: 1,
            by_base: HashMap::new(),
        })
    }

    pub fn uidvalidity(&self) -> u32 {
        self.uidvalidity
    }

    pub fn next_uid(&self) -> u32 {
        self.next_uid
    }

    pub fn uid(&self, base: &str) -> Option<u32> {
        self.by_base.get(base).copied()
    }

    /// Gives each base (in the order given) the next UID, appends the lines
    /// and fsyncs them before returning the UIDs.
    pub fn assign(&mut self, bases: &[String]) -> Result<Vec<u32>> {
        if bases.is_empty() {
            return Ok(Vec::new());
        }
        let mut text = String::new();
        let mut uids = Vec::with_capacity(bases.len());
        let mut next = self.next_uid;
        for base in bases {
            text.push_str(&format!("{next} {}\n", encode_base(base)));
            uids.push(next);
            next += 1;
        }
        let mut file = open_append(&self.path).map_err(io_err("open", &self.path))?;
        file.write_all(text.as_bytes())
            .map_err(io_err("append", &self.path))?;
        file.sync_data().map_err(io_err("fsync", &self.path))?;
        for (base, &uid) in bases.iter().zip(&uids) {
            self.by_base.insert(base.clone(), uid);
        }
        self.next_uid = next;
        Ok(uids)
    }
}

/// A base as written on its line: as it is, unless a space at its start or
/// a control character would make the line mean something else.
fn encode_base(base: &str) -> String {
    if base.starts_with(' ') || base.chars().any(char::is_control) {
        format!(" {}", hex::encode(base))
    } else {
        base.to_string()
    }
}

fn decode_base(field: &str) -> Option<String> {
    match field.strip_prefix(' ') {
        Some(hex) => String::from_utf8(hex::decode(hex).ok()?).ok(),
        None => Some(field.to_string()),
    }
}

fn parse_header(line: &str) -> Option<(u32, u32)> {
    let mut words = line.split(' ');
    if words.next()? != MAGIC || words.next()? != "1" {
        return None;
    }
    let (mut validity, mut next) = (None, None);
    for word in words {
        if let Some(v) = word.strip_prefix('V') {
            validity = v.parse::<u32>().ok().filter(|&v| v > 0);
        } else if let Some(n) = word.strip_prefix('N') {
            next = n.parse::<u32>().ok().filter(|&n| n > 0);
        }
    }
    Some((validity?, next?))
}

/// UIDVALIDITY for a new folder: the time in seconds, never 0.
fn fresh_uidvalidity() -> u32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs());
    (secs as u32).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_persist_and_torn_lines_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(UIDLIST_FILE);
        let mut list = UidList::load_or_create(path.clone(), "t").unwrap();
        let validity = list.uidvalidity();
        assert_eq!(list.assign(&["a".into(), "b".into()]).unwrap(), vec![1, 2]);
        drop(list);

        // A crash mid-append leaves half a line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"3 c-half").unwrap();
        drop(f);

        let mut list = UidList::load_or_create(path.clone(), "t").unwrap();
        assert_eq!(list.uidvalidity(), validity);
        assert_eq!(
            (list.uid("a"), list.uid("b"), list.uid("c-half")),
            (Some(1), Some(2), None)
        );
        assert_eq!(list.next_uid(), 3);
        assert_eq!(list.assign(&["c".into()]).unwrap(), vec![3]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("2 b\n3 c\n"), "{text}");
    }

    #[test]
    fn corrupt_files_are_reported_with_their_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(UIDLIST_FILE), "something else\n").unwrap();
        let err = UidList::load_or_create(dir.path().join(UIDLIST_FILE), "t").unwrap_err();
        assert!(err.to_string().contains(UIDLIST_FILE), "{err}");
        std::fs::write(
            dir.path().join(UIDLIST_FILE),
            "mailferry-uidlist 1 V5 N1\nx y\n",
        )
        .unwrap();
        assert!(UidList::load_or_create(dir.path().join(UIDLIST_FILE), "t").is_err());
    }

    #[test]
    fn a_base_cannot_forge_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(UIDLIST_FILE);
        let mut list = UidList::load_or_create(path.clone(), "t").unwrap();
        let forged = "x\n9 y".to_string();
        let spaced = " z".to_string();
        list.assign(&[forged.clone(), spaced.clone(), "w".into()])
            .unwrap();
        let list = UidList::load_or_create(path, "t").unwrap();
        assert_eq!(
            (
                list.uid(&forged),
                list.uid(&spaced),
                list.uid("y"),
                list.next_uid()
            ),
            (Some(1), Some(2), None, 4)
        );
    }
}

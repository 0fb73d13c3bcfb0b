//! Folder names on disk (Maildir++, as Dovecot writes them) and the
//! `subscriptions` file.
//!
//! INBOX is the root directory. Any other folder `A/B/C` is the directory
//! `.A.B.C` under the root, each segment in modified UTF-7 (`Entwürfe` →
//! `.Entw&APw-rfe`); INBOX's children are `.INBOX.Child`. A segment cannot
//! hold `.` (the on-disk separator) or `/`: Dovecot refuses those too.

use std::path::{Path, PathBuf};

use crate::error::{ConnectorError, ErrorClass, Result};
use crate::model::FolderName;
use crate::utf7;

use super::{read_meta, write_atomically};

/// Hierarchy delimiter our folder names carry, as Dovecot's inbox namespace
/// with `separator = /` shows them over IMAP.
pub const DELIMITER: char = '/';

/// Longest directory name most file systems take.
const NAME_MAX: usize = 255;

pub fn is_inbox(segments: &[String]) -> bool {
    segments.len() == 1 && segments[0].eq_ignore_ascii_case("INBOX")
}

/// The decoded segments a caller means: `segments` when given, else `raw`
/// decoded and split on its delimiter.
pub fn segments_of(name: &FolderName) -> Option<Vec<String>> {
    if !name.segments.is_empty() {
        return Some(name.segments.clone());
    }
    let decoded = utf7::decode(&name.raw)?;
    Some(match name.delimiter {
        Some(d) => decoded.split(d).map(str::to_string).collect(),
        None => vec![decoded],
    })
}

/// The folder name we hand out for these segments.
pub fn folder_name(segments: Vec<String>) -> FolderName {
    if is_inbox(&segments) {
        return FolderName {
            raw: "INBOX".into(),
            delimiter: Some(DELIMITER),
            segments: vec!["INBOX".into()],
        };
    }
    FolderName {
        raw: utf7::encode(&segments.join(&DELIMITER.to_string())),
        delimiter: Some(DELIMITER),
        segments,
    }
}

/// The directory name under the root (`.A.B`) for a folder other than
/// INBOX, or `None` for INBOX itself.
pub fn dir_name(segments: &[String], endpoint: &str) -> Result<Option<String>> {
    if is_inbox(segments) {
        return Ok(None);
    }
    let refuse = |text: String| ConnectorError::Refused {
        endpoint: endpoint.to_string(),
        op: "folder name",
        class: ErrorClass::Folder,
        text,
    };
    if segments.is_empty() {
        return Err(refuse("empty folder name".into()));
    }
    let mut out = String::new();
    for segment in segments {
        if segment.is_empty() || segment.contains(['.', '/']) {
            return Err(refuse(format!(
                "segment {segment:?} is empty or holds '.' or '/', which a Maildir++ name cannot"
            )));
        }
        out.push('.');
        out.push_str(&utf7::encode(segment));
    }
    if out.len() > NAME_MAX {
        return Err(refuse(format!("{out:?} is longer than {NAME_MAX} bytes")));
    }
    Ok(Some(out))
}

/// The decoded segments of a `.A.B` directory name; `None` for names that
/// are not folders (no leading dot, `.`/`..`, empty or undecodable segments).
pub fn parse_dir_name(name: &str) -> Option<Vec<String>> {
    let rest = name.strip_prefix('.')?;
    if rest.is_empty() || rest == "." {
        return None;
    }
    rest.split('.')
        .map(|seg| utf7::decode(seg).filter(|s| !s.is_empty()))
        .collect()
}

/// The directory of a folder.
pub fn folder_dir(root: &Path, segments: &[String], endpoint: &str) -> Result<PathBuf> {
    Ok(match dir_name(segments, endpoint)? {
        None => root.to_path_buf(),
        Some(name) => root.join(name),
    })
}

/// Dovecot's v2 subscriptions header; entries follow one a line, segments
/// (modified UTF-7) separated by tabs.
const SUBSCRIPTIONS_V2: &str = "V\t2\n\n";

/// Subscribed folders, as decoded segments. Reads Dovecot's v2 format and
/// the older one-name-a-line format (`.`-separated).
pub fn read_subscriptions(root: &Path) -> Result<Vec<Vec<String>>> {
    let path = root.join("subscriptions");
    let Some(bytes) = read_meta(&path)? else {
        return Ok(Vec::new());
    };
    let text = String::from_utf8_lossy(&bytes);
    let (body, separator) = match text.strip_prefix(SUBSCRIPTIONS_V2) {
        Some(body) => (body, '\t'),
        None => (&*text, '.'),
    };
    Ok(body
        .lines()
        .filter(|line| !line.is_empty())
        .filter_map(|line| {
            line.split(separator)
                .map(utf7::decode)
                .collect::<Option<Vec<String>>>()
        })
        .collect())
}

/// Adds a folder to `subscriptions` (v2 format) unless it is there.
pub fn add_subscription(root: &Path, segments: &[String]) -> Result<()> {
    let mut all = read_subscriptions(root)?;
    let wanted: Vec<String> = if is_inbox(segments) {
        vec!["INBOX".into()]
    } else {
        segments.to_vec()
    };
    if all.contains(&wanted) {
        return Ok(());
    }
    all.push(wanted);
    let mut text = String::from(SUBSCRIPTIONS_V2);
    for entry in &all {
        let encoded: Vec<String> = entry.iter().map(|s| utf7::encode(s)).collect();
        text.push_str(&encoded.join("\t"));
        text.push('\n');
    }
    write_atomically(&root.join("subscriptions"), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_on_disk() {
        assert_eq!(dir_name(&segs(&["INBOX"]), "t").unwrap(), None);
        assert_eq!(dir_name(&segs(&["inbox"]), "t").unwrap(), None);
        assert_eq!(
            dir_name(&segs(&["Projects", "日本語"]), "t")
                .unwrap()
                .as_deref(),
            Some(".Projects.&ZeVnLIqe-")
        );
        assert_eq!(
            dir_name(&segs(&["INBOX", "Entwürfe"]), "t")
                .unwrap()
                .as_deref(),
            Some(".INBOX.Entw&APw-rfe")
        );
        assert_eq!(
            parse_dir_name(".Projects.&ZeVnLIqe-"),
            Some(segs(&["Projects", "日本語"]))
        );
        assert_eq!(parse_dir_name("."), None);
        assert_eq!(parse_dir_name(".."), None);
        assert_eq!(parse_dir_name("cur"), None);
        assert_eq!(parse_dir_name(".a..b"), None);
        assert_eq!(parse_dir_name(".bad&"), None);
    }

    #[test]
    fn unrepresentable_segments_are_refused() {
        for bad in [&["v1.2"][..], &["a/b"][..], &["ok", ""][..], &[][..]] {
            let err = dir_name(&segs(bad), "t").unwrap_err();
            assert_eq!(err.class(), ErrorClass::Folder, "{bad:?}");
        }
    }

    #[test]
    fn folder_names_use_slash() {
        let name = folder_name(segs(&["Archive", "Février"]));
        assert_eq!(name.raw, "Archive/F&AOk-vrier");
        assert_eq!(name.delimiter, Some('/'));
        assert_eq!(segments_of(&name).unwrap(), segs(&["Archive", "Février"]));
        let bare = FolderName {
            raw: name.raw.clone(),
            delimiter: Some('/'),
            segments: vec![],
        };
        assert_eq!(segments_of(&bare).unwrap(), segs(&["Archive", "Février"]));
    }

    #[test]
    fn subscriptions_round_trip_in_dovecot_format() {
        let dir = tempfile::tempdir().unwrap();
        add_subscription(dir.path(), &segs(&["Projects", "日本語"])).unwrap();
        add_subscription(dir.path(), &segs(&["inbox"])).unwrap();
        add_subscription(dir.path(), &segs(&["Projects", "日本語"])).unwrap();
        let text = std::fs::read_to_string(dir.path().join("subscriptions")).unwrap();
        assert_eq!(text, "V\t2\n\nProjects\t&ZeVnLIqe-\nINBOX\n");
        assert_eq!(
            read_subscriptions(dir.path()).unwrap(),
            vec![segs(&["Projects", "日本語"]), segs(&["INBOX"])]
        );
        // The old format: one name a line, '.'-separated.
        std::fs::write(dir.path().join("subscriptions"), "INBOX\nA.B\n").unwrap();
        assert_eq!(
            read_subscriptions(dir.path()).unwrap(),
            vec![segs(&["INBOX"]), segs(&["A", "B"])]
        );
    }
}

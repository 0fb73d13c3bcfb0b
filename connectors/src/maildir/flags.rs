//! Flags in Maildir file names and Dovecot's `dovecot-keywords` file.
//!
//! A file name is `BASE:2,INFO`; INFO holds one letter per flag, sorted by
//! ASCII code. Dovecot reads D F R S T as `\Draft \Flagged \Answered \Seen
//! \Deleted` and the letters a–z as keywords, letter `a` being entry 0 of
//! the folder's `dovecot-keywords` file (`0 $Forwarded` lines). Like
//! Dovecot, P (passed) is not read as any IMAP flag (a forwarded message
//! carries the `$Forwarded` keyword instead), and letters we do not know are
//! kept when flags are rewritten.

use std::path::{Path, PathBuf};

use crate::error::{ConnectorError, ErrorClass, Result};
use crate::model::Flag;

use super::{read_meta, write_atomically};

/// File name of a folder's keyword table.
pub const KEYWORDS_FILE: &str = "dovecot-keywords";

/// System flags and their letters, in letter order.
const SYSTEM: [(char, &str); 5] = [
    ('D', "\\Draft"),
    ('F', "\\Flagged"),
    ('R', "\\Answered"),
    ('S', "\\Seen"),
    ('T', "\\Deleted"),
];

/// Splits a file name into its base (what stays when flags change) and the
/// flag letters after `:2,` (empty when there is no info part).
pub fn split_file_name(name: &str) -> (&str, &str) {
    match name.rfind(':') {
        Some(i) => {
            let info = &name[i + 1..];
            (&name[..i], info.strip_prefix("2,").unwrap_or(""))
        }
        None => (name, ""),
    }
}

/// A folder's keyword table: letter `a` + i names entry i.
#[derive(Debug, Clone)]
pub struct Keywords {
    path: PathBuf,
    names: [Option<String>; 26],
}

impl Keywords {
    /// Reads `dir/dovecot-keywords`; a missing file is an empty table, and
    /// lines that do not parse are skipped, as Dovecot does.
    pub fn load(dir: &Path) -> Result<Keywords> {
        let path = dir.join(KEYWORDS_FILE);
        let mut names: [Option<String>; 26] = Default::default();
        if let Some(bytes) = read_meta(&path)? {
            for line in String::from_utf8_lossy(&bytes).lines() {
                let Some((idx, name)) = line.split_once(' ') else {
                    continue;
                };
                if let Ok(idx) = idx.parse::<usize>()
                    && idx < 26
                    && !name.is_empty()
                {
                    names[idx] = Some(name.to_string());
                }
            }
        }
        Ok(Keywords { path, names })
    }

    pub fn name(&self, letter: char) -> Option<&str> {
        let idx = (letter as u32).checked_sub('a' as u32)? as usize;
        self.names.get(idx)?.as_deref()
    }

    fn letter(&self, keyword: &str) -> Option<char> {
        // Keywords compare without regard to case (RFC 3501).
        self.names
            .iter()
            .position(|n| {
                n.as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(keyword))
            })
            .map(|i| (b'a' + i as u8) as char)
    }

    /// The letter of `keyword`, adding it to the table (unsaved) when new;
    /// `Ok(None)` is never returned: a full table is an error.
    fn letter_or_add(&mut self, keyword: &str, endpoint: &str) -> Result<(char, bool)> {
        if let Some(letter) = self.letter(keyword) {
            return Ok((letter, false));
        }
        let free = self.names.iter().position(Option::is_none).ok_or_else(|| {
            refuse(
                endpoint,
                format!("{keyword:?}: a Maildir folder holds at most 26 keywords"),
            )
        })?;
        self.names[free] = Some(keyword.to_string());
        Ok(((b'a' + free as u8) as char, true))
    }

    /// Writes the table back (atomically).
    pub fn save(&self) -> Result<()> {
        let mut text = String::new();
        for (i, name) in self.names.iter().enumerate() {
            if let Some(name) = name {
                text.push_str(&format!("{i} {name}\n"));
            }
        }
        write_atomically(&self.path, text.as_bytes())
    }
}

fn refuse(endpoint: &str, text: String) -> ConnectorError {
    ConnectorError::Refused {
        endpoint: endpoint.to_string(),
        op: "store flags",
        class: ErrorClass::Item,
        text,
    }
}

/// The IMAP flags of a file's info letters: system flags first, then
/// keywords in letter order. Unknown letters are left out.
pub fn flags_of(info: &str, keywords: &Keywords) -> Vec<Flag> {
    let mut flags: Vec<Flag> = SYSTEM
        .iter()
        .filter(|(letter, _)| info.contains(*letter))
        .map(|(_, name)| name.to_string())
        .collect();
    let mut letters: Vec<char> = info.chars().filter(char::is_ascii_lowercase).collect();
    letters.sort_unstable();
    letters.dedup();
    flags.extend(
        letters
            .into_iter()
            .filter_map(|l| keywords.name(l))
            .map(str::to_string),
    );
    flags
}

/// The info letters for `flags`, keeping letters of `old_info` we do not
/// manage (P, and anything else not D F R S T or a–z). The bool tells
/// whether `keywords` gained an entry and must be saved before the rename.
pub fn info_for(
    flags: &[Flag],
    old_info: &str,
    keywords: &mut Keywords,
    endpoint: &str,
) -> Result<(String, bool)> {
    let mut letters: Vec<char> = old_info
        .chars()
        .filter(|c| !matches!(c, 'D' | 'F' | 'R' | 'S' | 'T' | 'a'..='z'))
        .collect();
    let mut added = false;
    for flag in flags {
        if let Some(system) = flag.strip_prefix('\\') {
            if system.eq_ignore_ascii_case("Recent") {
                continue;
            }
            let letter = SYSTEM
                .iter()
                .find(|(_, name)| name[1..].eq_ignore_ascii_case(system))
                .map(|&(letter, _)| letter)
                .ok_or_else(|| refuse(endpoint, format!("unknown system flag {flag:?}")))?;
            letters.push(letter);
        } else {
            if flag.is_empty() || flag.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(refuse(
                    endpoint,
                    format!("keyword {flag:?} is not an IMAP atom"),
                ));
            }
            let (letter, new) = keywords.letter_or_add(flag, endpoint)?;
            added |= new;
            letters.push(letter);
        }
    }
    letters.sort_unstable();
    letters.dedup();
    Ok((letters.into_iter().collect(), added))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn split_names() {
        assert_eq!(
            split_file_name("123.M1P2.host,S=10:2,FS"),
            ("123.M1P2.host,S=10", "FS")
        );
        assert_eq!(split_file_name("123.M1P2.host"), ("123.M1P2.host", ""));
        assert_eq!(split_file_name("123.host:1,xyz"), ("123.host", ""));
    }

    #[test]
    fn letters_to_flags_and_back() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(KEYWORDS_FILE),
            "0 $Forwarded\n1 Project-X\nbroken line\n",
        )
        .unwrap();
        let mut kw = Keywords::load(dir.path()).unwrap();
        assert_eq!(
            flags_of("PRSab", &kw),
            strings(&["\\Answered", "\\Seen", "$Forwarded", "Project-X"])
        );
        // P is kept, old keywords replaced, new keyword gets letter c.
        let (info, added) = info_for(
            &strings(&["\\Seen", "\\draft", "\\Recent", "project-x", "Later"]),
            "PRSab",
            &mut kw,
            "t",
        )
        .unwrap();
        assert_eq!(info, "DPSbc");
        assert!(added);
        kw.save().unwrap();
        let text = std::fs::read_to_string(dir.path().join(KEYWORDS_FILE)).unwrap();
        assert_eq!(text, "0 $Forwarded\n1 Project-X\n2 Later\n");
        assert_eq!(flags_of("T", &kw), strings(&["\\Deleted"]));
    }

    #[test]
    fn refusals() {
        let dir = tempfile::tempdir().unwrap();
        let mut kw = Keywords::load(dir.path()).unwrap();
        assert!(info_for(&strings(&["\\Bogus"]), "", &mut kw, "t").is_err());
        assert!(info_for(&strings(&["two words"]), "", &mut kw, "t").is_err());
        let many: Vec<String> = (0..26).map(|i| format!("k{i}")).collect();
        info_for(&many, "", &mut kw, "t").unwrap();
        let err = info_for(&strings(&["one-more"]), "", &mut kw, "t").unwrap_err();
        assert_eq!(err.class(), ErrorClass::Item);
    }
}

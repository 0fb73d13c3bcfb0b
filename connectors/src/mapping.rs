//! Where a source folder lands on the destination.
//!
//! A [`FolderPlan`] decides, for each source [`Folder`], in this order:
//! 1. filters: a folder matching an exclude pattern, or matching no include
//!    pattern when includes exist, is not copied;
//! 2. regex rules, MigrationWiz's FolderMapping (`^INBOX/Old(.*)->Archive$1`):
//!    the first rule whose pattern matches the Unicode path joined with `/`
//!    rewrites it, and the result is split again on `/`;
//! 3. INBOX stays INBOX;
//! 4. special-use folders (Sent, Drafts, Trash, Junk, Archive), told by their
//!    SPECIAL-USE attribute or by a well-known name ("Sent Items", "Junk
//!    E-mail", ...), land in the destination folder of the same use;
//! 5. anything else keeps its segments.
//!
//! Patterns and filters all see the decoded path joined with `/`, whatever the
//! source's delimiter, so one rule set serves every endpoint.

use std::collections::HashMap;

use regex::Regex;

use crate::error::{ConnectorError, Result};
use crate::model::{Folder, FolderName, SpecialUse};
use crate::utf7;

/// One FolderMapping rule: `PATTERN->REPLACEMENT`.
#[derive(Debug, Clone)]
pub struct FolderRule {
    pattern: Regex,
    replacement: String,
}

impl FolderRule {
    /// Parses `PATTERN->REPLACEMENT`, split at the first `->`; nothing is
    /// trimmed, since spaces are legal in folder names. In the replacement,
    /// `$1` is group 1 even when letters follow (`$1_old`), as in
    /// MigrationWiz (.NET); `${name}` and `$$` work as in the `regex` crate.
    pub fn parse(rule: &str) -> Result<FolderRule> {
        let (pattern, replacement) =
            rule.split_once("->")
                .ok_or_else(|| ConnectorError::Mapping {
                    rule: rule.to_string(),
                    text: "expected PATTERN->REPLACEMENT".into(),
                })?;
        Ok(FolderRule {
            pattern: compile(rule, pattern)?,
            replacement: brace_group_numbers(replacement),
        })
    }

    /// The rewritten path when the pattern matches.
    fn apply(&self, path: &str) -> Option<String> {
        self.pattern.is_match(path).then(|| {
            self.pattern
                .replace(path, self.replacement.as_str())
                .into_owned()
        })
    }
}

fn compile(rule: &str, pattern: &str) -> Result<Regex> {
    Regex::new(pattern).map_err(|e| ConnectorError::Mapping {
        rule: rule.to_string(),
        text: e.to_string(),
    })
}

/// `$12abc` → `${12}abc`: the `regex` crate would otherwise read a group
/// named `12abc`.
fn brace_group_numbers(replacement: &str) -> String {
    let mut out = String::with_capacity(replacement.len() + 4);
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('$') => {
                chars.next();
                out.push_str("$$");
            }
            Some(d) if d.is_ascii_digit() => {
                out.push_str("${");
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    out.push(d);
                    chars.next();
                }
                out.push('}');
            }
            _ => out.push('$'),
        }
    }
    out
}

/// What mapping needs from the destination's listing: its special-use
/// folders and its hierarchy delimiter (`/` when it names none).
pub fn destination_context(dst: &[Folder]) -> (HashMap<SpecialUse, FolderName>, Option<char>) {
    let special = dst
        .iter()
        .filter_map(|f| f.special_use.map(|u| (u, f.name.clone())))
        .collect();
    let delimiter = dst.iter().find_map(|f| f.name.delimiter).or(Some('/'));
    (special, delimiter)
}

/// A batch's folder mapping and filters.
#[derive(Debug, Clone, Default)]
pub struct FolderPlan {
    pub rules: Vec<FolderRule>,
    pub include: Vec<Regex>,
    pub exclude: Vec<Regex>,
}

impl FolderPlan {
    /// Parses rules (`PATTERN->REPLACEMENT`) and include/exclude patterns;
    /// the first bad one is named in the error.
    pub fn new<S: AsRef<str>>(rules: &[S], include: &[S], exclude: &[S]) -> Result<FolderPlan> {
        let patterns = |list: &[S]| -> Result<Vec<Regex>> {
            list.iter()
                .map(|p| compile(p.as_ref(), p.as_ref()))
                .collect()
        };
        Ok(FolderPlan {
            rules: rules
                .iter()
                .map(|r| FolderRule::parse(r.as_ref()))
                .collect::<Result<_>>()?,
            include: patterns(include)?,
            exclude: patterns(exclude)?,
        })
    }

    /// The destination folder for `src`, or `None` when filters leave it out.
    ///
    /// `dest_special` holds the destination's special-use folders (from its
    /// listing); `dest_delimiter` its hierarchy delimiter. A segment that
    /// contains the destination's delimiter has it replaced by `_` (by `-`
    /// when the delimiter is `_`), so `a/b` under a `/` destination becomes
    /// one folder `a_b`, not two levels. With a flat destination (`None`)
    /// the segments are joined with `/` into one name.
    ///
    /// The answer's `raw` is the modified UTF-7 spelling (IMAP wire form);
    /// a Maildir session uses its `segments`.
    pub fn map(
        &self,
        src: &Folder,
        dest_special: &HashMap<SpecialUse, FolderName>,
        dest_delimiter: Option<char>,
    ) -> Option<FolderName> {
        let path = src.name.segments.join("/");
        if self.exclude.iter().any(|re| re.is_match(&path)) {
            return None;
        }
        if !self.include.is_empty() && !self.include.iter().any(|re| re.is_match(&path)) {
            return None;
        }
        if let Some(rewritten) = self.rules.iter().find_map(|rule| rule.apply(&path)) {
            let segments = rewritten
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            return Some(build(segments, dest_delimiter));
        }
        if is_inbox(src) {
            return Some(build(vec!["INBOX".into()], dest_delimiter));
        }
        if let Some(dest) = special_use_of(src).and_then(|use_| dest_special.get(&use_)) {
            return Some(dest.clone());
        }
        Some(build(src.name.segments.clone(), dest_delimiter))
    }
}

fn is_inbox(src: &Folder) -> bool {
    src.special_use == Some(SpecialUse::Inbox)
        || (src.name.segments.len() == 1 && src.name.segments[0].eq_ignore_ascii_case("INBOX"))
}

/// Names that mean a special use on servers that do not announce
/// SPECIAL-USE (Exchange, older Dovecot and Courier setups), compared
/// without regard to ASCII case.
const WELL_KNOWN: &[(&str, SpecialUse)] = &[
    ("Sent", SpecialUse::Sent),
    ("Sent Items", SpecialUse::Sent),
    ("Sent Messages", SpecialUse::Sent),
    ("Sent Mail", SpecialUse::Sent),
    ("Drafts", SpecialUse::Drafts),
    ("Draft", SpecialUse::Drafts),
    ("Trash", SpecialUse::Trash),
    ("Deleted Items", SpecialUse::Trash),
    ("Deleted Messages", SpecialUse::Trash),
    ("Bin", SpecialUse::Trash),
    ("Junk", SpecialUse::Junk),
    ("Junk E-mail", SpecialUse::Junk),
    ("Junk Email", SpecialUse::Junk),
    ("Spam", SpecialUse::Junk),
    ("Bulk Mail", SpecialUse::Junk),
    ("Archive", SpecialUse::Archive),
    ("Archives", SpecialUse::Archive),
];

/// The special use a folder name implies: a top-level folder, or a child
/// of INBOX (Courier-style `INBOX.Sent`).
pub fn well_known_use(segments: &[String]) -> Option<SpecialUse> {
    let name = match segments {
        [name] => name,
        [inbox, name] if inbox.eq_ignore_ascii_case("INBOX") => name,
        _ => return None,
    };
    WELL_KNOWN
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(name))
        .map(|&(_, use_)| use_)
}

/// The special use that steers mapping: only the five that have a natural
/// counterpart on every server.
fn special_use_of(src: &Folder) -> Option<SpecialUse> {
    let use_ = src
        .special_use
        .or_else(|| well_known_use(&src.name.segments))?;
    matches!(
        use_,
        SpecialUse::Sent
            | SpecialUse::Drafts
            | SpecialUse::Trash
            | SpecialUse::Junk
            | SpecialUse::Archive
    )
    .then_some(use_)
}

fn build(segments: Vec<String>, delimiter: Option<char>) -> FolderName {
    let segments: Vec<String> = match delimiter {
        Some(d) => {
            let substitute = if d == '_' { "-" } else { "_" };
            let mut buf = [0u8; 4];
            let d: &str = d.encode_utf8(&mut buf);
            segments
                .into_iter()
                .map(|s| s.replace(d, substitute))
                .collect()
        }
        None => vec![segments.join("/")],
    };
    let joined = match delimiter {
        Some(d) => segments.join(d.to_string().as_str()),
        None => segments.concat(),
    };
    FolderName {
        raw: utf7::encode(&joined),
        delimiter,
        segments,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(segments: &[&str], special_use: Option<SpecialUse>) -> Folder {
        let segments: Vec<String> = segments.iter().map(|s| s.to_string()).collect();
        Folder {
            name: FolderName {
                raw: utf7::encode(&segments.join(".")),
                delimiter: Some('.'),
                segments,
            },
            special_use,
            selectable: true,
            subscribed: true,
        }
    }

    fn dest(raw: &str) -> FolderName {
        FolderName {
            raw: raw.into(),
            delimiter: Some('/'),
            segments: raw.split('/').map(str::to_string).collect(),
        }
    }

    fn plan(rules: &[&str], include: &[&str], exclude: &[&str]) -> FolderPlan {
        FolderPlan::new(rules, include, exclude).unwrap()
    }

    fn no_special() -> HashMap<SpecialUse, FolderName> {
        HashMap::new()
    }

    #[test]
    fn plain_folders_keep_segments_and_take_the_destination_delimiter() {
        let got = plan(&[], &[], &[])
            .map(
                &folder(&["Projects", "2024", "Février"], None),
                &no_special(),
                Some('/'),
            )
            .unwrap();
        assert_eq!(got.segments, ["Projects", "2024", "Février"]);
        assert_eq!(got.delimiter, Some('/'));
        assert_eq!(got.raw, "Projects/2024/F&AOk-vrier");
    }

    #[test]
    fn destination_delimiter_inside_a_segment_is_replaced() {
        let p = plan(&[], &[], &[]);
        let got = p
            .map(&folder(&["a/b", "c"], None), &no_special(), Some('/'))
            .unwrap();
        assert_eq!(got.segments, ["a_b", "c"]);
        assert_eq!(got.raw, "a_b/c");
        let got = p
            .map(&folder(&["x_y"], None), &no_special(), Some('_'))
            .unwrap();
        assert_eq!(got.segments, ["x-y"]);
    }

    #[test]
    fn flat_destination_gets_one_segment() {
        let got = plan(&[], &[], &[])
            .map(&folder(&["a", "b"], None), &no_special(), None)
            .unwrap();
        assert_eq!(got.segments, ["a/b"]);
        assert_eq!(got.raw, "a/b");
        assert_eq!(got.delimiter, None);
    }

    #[test]
    fn inbox_stays_inbox() {
        let p = plan(&[], &[], &[]);
        let got = p
            .map(&folder(&["inbox"], None), &no_special(), Some('/'))
            .unwrap();
        assert_eq!(got.raw, "INBOX");
        assert_eq!(got.segments, ["INBOX"]);
        let got = p
            .map(
                &folder(&["Posteingang"], Some(SpecialUse::Inbox)),
                &no_special(),
                Some('.'),
            )
            .unwrap();
        assert_eq!(got.raw, "INBOX");
    }

    #[test]
    fn special_use_attribute_maps_to_destination_folder() {
        let mut special = HashMap::new();
        special.insert(SpecialUse::Sent, dest("Gesendet"));
        special.insert(SpecialUse::Trash, dest("Papierkorb"));
        let p = plan(&[], &[], &[]);
        let got = p
            .map(
                &folder(&["Elementos enviados"], Some(SpecialUse::Sent)),
                &special,
                Some('/'),
            )
            .unwrap();
        assert_eq!(got, dest("Gesendet"));
        // \All and \Flagged are not steered.
        let got = p
            .map(
                &folder(&["All Mail"], Some(SpecialUse::All)),
                &special,
                Some('/'),
            )
            .unwrap();
        assert_eq!(got.raw, "All Mail");
    }

    #[test]
    fn well_known_names_map_without_attributes() {
        let mut special = HashMap::new();
        special.insert(SpecialUse::Sent, dest("Sent"));
        special.insert(SpecialUse::Trash, dest("Trash"));
        special.insert(SpecialUse::Junk, dest("Junk"));
        special.insert(SpecialUse::Drafts, dest("Drafts"));
        let p = plan(&[], &[], &[]);
        for (src, want) in [
            (&["Sent Items"][..], "Sent"),
            (&["sent messages"][..], "Sent"),
            (&["Deleted Items"][..], "Trash"),
            (&["Junk E-mail"][..], "Junk"),
            (&["Spam"][..], "Junk"),
            (&["INBOX", "Drafts"][..], "Drafts"),
        ] {
            assert_eq!(
                p.map(&folder(src, None), &special, Some('/')).unwrap().raw,
                want,
                "{src:?}"
            );
        }
        // A deeper folder with the same name is just a folder.
        let got = p
            .map(&folder(&["Projects", "Sent"], None), &special, Some('/'))
            .unwrap();
        assert_eq!(got.raw, "Projects/Sent");
        // No counterpart on the destination: the name is kept.
        let got = p
            .map(&folder(&["Archive"], None), &special, Some('/'))
            .unwrap();
        assert_eq!(got.raw, "Archive");
    }

    #[test]
    fn rules_rewrite_the_slash_joined_path() {
        let p = plan(
            &["^INBOX/Old(.*)->Archive$1", "^Projects/(.*)$->Work/$1_old"],
            &[],
            &[],
        );
        let got = p
            .map(
                &folder(&["INBOX", "Old", "2019"], None),
                &no_special(),
                Some('.'),
            )
            .unwrap();
        assert_eq!(got.segments, ["Archive", "2019"]);
        assert_eq!(got.raw, "Archive.2019");
        let got = p
            .map(
                &folder(&["Projects", "Zürich"], None),
                &no_special(),
                Some('/'),
            )
            .unwrap();
        assert_eq!(got.segments, ["Work", "Zürich_old"]);
        assert_eq!(got.raw, "Work/Z&APw-rich_old");
        // No match: default mapping.
        let got = p
            .map(&folder(&["Other"], None), &no_special(), Some('/'))
            .unwrap();
        assert_eq!(got.raw, "Other");
    }

    #[test]
    fn first_matching_rule_wins_and_beats_special_use() {
        let mut special = HashMap::new();
        special.insert(SpecialUse::Sent, dest("Sent"));
        let p = plan(&["^Sent Items$->Old Sent", "^Sent.*->Never"], &[], &[]);
        let got = p
            .map(&folder(&["Sent Items"], None), &special, Some('/'))
            .unwrap();
        assert_eq!(got.raw, "Old Sent");
    }

    #[test]
    fn exclude_and_include_filters() {
        let p = plan(&[], &[], &["^Junk", "(?i)calendar"]);
        assert!(
            p.map(&folder(&["Junk E-mail"], None), &no_special(), Some('/'))
                .is_none()
        );
        assert!(
            p.map(&folder(&["Calendar", "x"], None), &no_special(), Some('/'))
                .is_none()
        );
        assert!(
            p.map(&folder(&["INBOX"], None), &no_special(), Some('/'))
                .is_some()
        );

        let p = plan(&[], &["^INBOX", "^Projects/"], &["^Projects/Secret"]);
        assert!(
            p.map(&folder(&["INBOX"], None), &no_special(), Some('/'))
                .is_some()
        );
        assert!(
            p.map(&folder(&["Projects", "A"], None), &no_special(), Some('/'))
                .is_some()
        );
        assert!(
            p.map(
                &folder(&["Projects", "Secret"], None),
                &no_special(),
                Some('/')
            )
            .is_none()
        );
        assert!(
            p.map(&folder(&["Sent"], None), &no_special(), Some('/'))
                .is_none()
        );
    }

    #[test]
    fn bad_rules_are_named() {
        let err = FolderPlan::new(&["^Good->Fine", "^(Bad->X"], &[], &[]).unwrap_err();
        match err {
            ConnectorError::Mapping { rule, .. } => assert_eq!(rule, "^(Bad->X"),
            other => panic!("unexpected {other:?}"),
        }
        let err = FolderPlan::new(&["no arrow"], &[], &[]).unwrap_err();
        assert!(err.to_string().contains("no arrow"), "{err}");
        let err = FolderPlan::new(&[], &[], &["[z-a]"]).unwrap_err();
        assert!(matches!(err, ConnectorError::Mapping { ref rule, .. } if rule == "[z-a]"));
    }

    #[test]
    fn group_numbers_are_braced() {
        assert_eq!(brace_group_numbers("Archive$1"), "Archive${1}");
        assert_eq!(brace_group_numbers("$12abc"), "${12}abc");
        assert_eq!(brace_group_numbers("$$1 ${name} $x"), "$$1 ${name} $x");
    }
}

//! Reading a whole mailbox back for item-by-item comparison.

use std::collections::BTreeMap;

use ferry_connectors::{MailSession, digest};

/// One item as compared: digest of the exact bytes, flags (sorted,
/// lower-cased, without `\Recent`), INTERNALDATE as Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seen {
    pub digest: String,
    pub size: usize,
    pub flags: Vec<String>,
    pub date: Option<i64>,
}

/// Folder path (segments joined by '/') → items sorted.
pub type Contents = BTreeMap<String, Vec<Seen>>;

pub async fn contents(s: &mut dyn MailSession) -> Contents {
    let mut out = Contents::new();
    let folders = s.list_folders().await.expect("list folders");
    for f in folders.iter().filter(|f| f.selectable) {
        s.examine(&f.name).await.expect("examine");
        let mut items = Vec::new();
        let mut next = 1;
        loop {
            let page = s.list_items(next, 500).await.expect("list items");
            let Some(last) = page.last() else { break };
            next = last.uid + 1;
            let uids: Vec<u32> = page.iter().map(|m| m.uid).collect();
            for it in s.fetch(&uids).await.expect("fetch") {
                let mut flags: Vec<String> = it
                    .meta
                    .flags
                    .iter()
                    .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
                    .map(|f| f.to_ascii_lowercase())
                    .collect();
                flags.sort();
                items.push(Seen {
                    digest: digest(&it.body),
                    size: it.body.len(),
                    flags,
                    date: it.meta.internal_date.map(|d| d.timestamp()),
                });
            }
        }
        items.sort();
        out.insert(f.name.segments.join("/"), items);
    }
    out
}

/// Differences between two mailboxes, as readable lines (empty = identical).
pub fn diff(a: &Contents, b: &Contents) -> Vec<String> {
    let mut out = Vec::new();
    for (folder, items) in a {
        match b.get(folder) {
            None => out.push(format!("folder {folder} missing ({} items)", items.len())),
            Some(other) if other != items => out.push(format!(
                "folder {folder}: {} items vs {}; first difference: {:?}",
                items.len(),
                other.len(),
                items
                    .iter()
                    .zip(other.iter())
                    .find(|(x, y)| x != y)
                    .map(|(x, y)| (x.clone(), y.clone()))
            )),
            _ => {}
        }
    }
    for folder in b.keys() {
        if !a.contains_key(folder) {
            out.push(format!("extra folder {folder}"));
        }
    }
    out
}

/// Subscribed folders, as path segments joined by '/'.
pub async fn subscriptions(s: &mut dyn MailSession) -> std::collections::BTreeSet<String> {
    s.list_folders()
        .await
        .expect("list folders")
        .into_iter()
        .filter(|f| f.subscribed)
        .map(|f| f.name.segments.join("/"))
        .collect()
}

//! Which items of a source folder a destination folder already holds.
//!
//! Items are paired by Message-ID, size and INTERNALDATE; where the
//! Message-ID is missing or repeated on either side, by the SHA-256 of the
//! exact bytes. Used before the first copy into a folder that holds mail,
//! by a verify pass and by a dry run; it only reads.

use std::collections::{HashMap, HashSet};

use crate::paging::{Pages, groups};
use crate::{ItemMeta, MailSession, Result};

/// Items whose bytes are fetched at a time to compute digests, and the
/// bytes such a fetch may hold (one larger item is fetched alone).
const DIGEST_CHUNK: usize = 20;
const DIGEST_BYTES: u64 = 32 << 20;

/// Bytes a caller lets one fetch hold in memory (ferryd's budget shared by
/// all its workers): held from before each group's FETCH until its digests
/// are taken. `()` allows anything.
pub trait Allowance: Sync {
    type Held<'a>: Send
    where
        Self: 'a;
    fn hold(&self, items: &[ItemMeta]) -> impl Future<Output = Self::Held<'_>> + Send;
}

impl Allowance for () {
    type Held<'a> = ();
    async fn hold(&self, _: &[ItemMeta]) {}
}

/// An item of the open folder with its Message-ID.
#[derive(Debug, Clone)]
pub struct Indexed {
    pub meta: ItemMeta,
    pub message_id: Option<String>,
}

/// Every item of the open folder, with its Message-ID.
pub async fn list(s: &mut dyn MailSession) -> Result<Vec<Indexed>> {
    let mut out = Vec::new();
    let mut pages = Pages::from(1);
    while let Some(page) = pages.next(s).await? {
        let uids: Vec<u32> = page.iter().map(|m| m.uid).collect();
        let mut ids = s.message_ids(&uids).await?;
        out.extend(page.into_iter().map(|meta| Indexed {
            message_id: ids.remove(&meta.uid),
            meta,
        }));
    }
    Ok(out)
}

/// A source item found at the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub source: u32,
    pub dest: u32,
    pub size: u64,
    pub message_id: Option<String>,
    /// Set when the bytes were compared.
    pub digest: Option<String>,
}

/// How a source folder's items and a destination folder's items pair up.
#[derive(Debug, Default)]
pub struct Pairing {
    pub pairs: Vec<Pair>,
    /// Destination UIDs no source item matched.
    pub unmatched: Vec<u32>,
    /// Messages the destination holds more often than the source: the
    /// Message-ID (or `sha256:` digest) and the destination UIDs.
    pub duplicates: Vec<(String, Vec<u32>)>,
}

fn counts(items: &[Indexed]) -> HashMap<&str, usize> {
    let mut out = HashMap::new();
    for i in items {
        if let Some(id) = &i.message_id {
            *out.entry(id.as_str()).or_default() += 1;
        }
    }
    out
}

/// Digests of the given items of the open folder, fetched in groups
/// bounded by count and bytes; items the session refuses (over the size
/// limit) get none.
async fn digests(
    s: &mut dyn MailSession,
    items: &[&Indexed],
    allowance: &impl Allowance,
) -> Result<HashMap<u32, String>> {
    let mut out = HashMap::new();
    let metas = items.iter().map(|i| i.meta.clone()).collect();
    for group in groups(metas, DIGEST_CHUNK, DIGEST_BYTES) {
        let _held = allowance.hold(&group).await;
        let uids: Vec<u32> = group.iter().map(|m| m.uid).collect();
        for it in s.fetch(&uids).await? {
            if it.meta.refused.is_none() {
                out.insert(it.meta.uid, it.digest());
            }
        }
    }
    Ok(out)
}

/// Pairs the items of `src`'s open folder with those of `dst`'s, each
/// destination item at most once. `source` and `dest` are the whole
/// folders, so a Message-ID repeated anywhere is never trusted alone; only
/// the items `open_src` and `open_dst` select take part.
pub async fn pair(
    src: &mut dyn MailSession,
    source: &[Indexed],
    open_src: impl Fn(u32) -> bool,
    dst: &mut dyn MailSession,
    dest: &[Indexed],
    open_dst: impl Fn(u32) -> bool,
    allowance: &impl Allowance,
) -> Result<Pairing> {
    let (src_ids, dst_ids) = (counts(source), counts(dest));
    let source: Vec<&Indexed> = source.iter().filter(|i| open_src(i.meta.uid)).collect();
    let dest: Vec<&Indexed> = dest.iter().filter(|i| open_dst(i.meta.uid)).collect();
    // An id identifies an item only when neither side repeats it.
    let unique = |id: &Option<String>| -> bool {
        id.as_deref().is_some_and(|id| {
            src_ids.get(id).copied().unwrap_or(0) <= 1 && dst_ids.get(id).copied().unwrap_or(0) <= 1
        })
    };
    let by_id: HashMap<&str, &Indexed> = dest
        .iter()
        .filter(|d| unique(&d.message_id))
        .filter_map(|d| Some((d.message_id.as_deref()?, *d)))
        .collect();
    let mut out = Pairing::default();
    let mut taken: HashSet<u32> = HashSet::new();
    let mut by_bytes: Vec<&Indexed> = Vec::new();
    for s in source.iter().copied() {
        match s.message_id.as_deref().filter(|_| unique(&s.message_id)) {
            Some(id) => {
                if let Some(d) = by_id.get(id)
                    && d.meta.size == s.meta.size
                    && same_instant(&d.meta, &s.meta)
                {
                    taken.insert(d.meta.uid);
                    out.pairs.push(Pair {
                        source: s.meta.uid,
                        dest: d.meta.uid,
                        size: s.meta.size,
                        message_id: s.message_id.clone(),
                        digest: None,
                    });
                }
            }
            None => by_bytes.push(s),
        }
    }
    // The rest is compared by bytes, only where sizes can match, plus
    // id-less destination items of a repeated size (duplicate candidates).
    let sizes: HashSet<u64> = by_bytes.iter().map(|s| s.meta.size).collect();
    let mut idless_sizes: HashMap<u64, usize> = HashMap::new();
    for d in dest.iter().filter(|d| d.message_id.is_none()) {
        *idless_sizes.entry(d.meta.size).or_default() += 1;
    }
    let to_digest: Vec<&Indexed> = dest
        .iter()
        .filter(|d| !unique(&d.message_id) && !taken.contains(&d.meta.uid))
        .filter(|d| {
            sizes.contains(&d.meta.size)
                || (d.message_id.is_none() && idless_sizes[&d.meta.size] > 1)
        })
        .copied()
        .collect();
    let dest_uids: Vec<u32> = to_digest.iter().map(|d| d.meta.uid).collect();
    let dest_digests = digests(dst, &to_digest, allowance).await?;
    let src_digests = if dest_digests.is_empty() {
        HashMap::new()
    } else {
        digests(src, &by_bytes, allowance).await?
    };
    let mut found: HashMap<&str, Vec<u32>> = HashMap::new();
    for uid in &dest_uids {
        if let Some(d) = dest_digests.get(uid) {
            found.entry(d.as_str()).or_default().push(*uid);
        }
    }
    for list in found.values_mut() {
        list.reverse();
    }
    for s in by_bytes {
        let Some(d) = src_digests.get(&s.meta.uid) else {
            continue;
        };
        if let Some(uid) = found.get_mut(d.as_str()).and_then(Vec::pop) {
            taken.insert(uid);
            out.pairs.push(Pair {
                source: s.meta.uid,
                dest: uid,
                size: s.meta.size,
                message_id: s.message_id.clone(),
                digest: Some(d.clone()),
            });
        }
    }
    out.unmatched = dest
        .iter()
        .map(|d| d.meta.uid)
        .filter(|u| !taken.contains(u))
        .collect();
    let unmatched: HashSet<u32> = out.unmatched.iter().copied().collect();
    out.duplicates = duplicates(&dest, &dest_digests)
        .into_iter()
        .filter(|(_, uids)| uids.iter().any(|u| unmatched.contains(u)))
        .collect();
    Ok(out)
}

/// Same Message-ID and size, or (without a Message-ID) same bytes, more
/// than once.
fn duplicates(dest: &[&Indexed], digests: &HashMap<u32, String>) -> Vec<(String, Vec<u32>)> {
    let mut groups: HashMap<(String, u64), Vec<u32>> = HashMap::new();
    for d in dest {
        let key = match (&d.message_id, digests.get(&d.meta.uid)) {
            (Some(id), _) => id.clone(),
            (None, Some(digest)) => format!("sha256:{digest}"),
            (None, None) => continue,
        };
        groups
            .entry((key, d.meta.size))
            .or_default()
            .push(d.meta.uid);
    }
    let mut out: Vec<(String, Vec<u32>)> = groups
        .into_iter()
        .filter(|(_, uids)| uids.len() > 1)
        .map(|((key, _), uids)| (key, uids))
        .collect();
    out.sort();
    out
}

/// INTERNALDATE equal as an instant; unknown on either side counts as equal.
fn same_instant(a: &ItemMeta, b: &ItemMeta) -> bool {
    match (a.internal_date, b.internal_date) {
        (Some(x), Some(y)) => x.timestamp() == y.timestamp(),
        _ => true,
    }
}

//! Settling what a crash or a dropped line left in doubt, and re-pairing
//! items after a UIDVALIDITY change: both match by the SHA-256 of the
//! exact bytes at the destination, never by copying again.

use std::collections::{HashMap, HashSet};

use ferry_connectors::paging::{Pages, groups};
use ferry_connectors::source::FolderClass;
use ferry_connectors::{ErrorClass, Folder, FolderName, FolderStatus, ItemMeta};
use ferry_events::{Event, ItemKey};
use ferry_projections::FolderMark;

use super::copy::{fetch, key, origin, src};
use super::{Work, WorkErr, copied_digests, copies, events_of, replica};

/// Destination items from `from_uid` on, by digest, excluding `claimed` UIDs
/// and sizes nobody is looking for.
async fn dest_digests(
    w: &mut Work<'_>,
    from_uid: u32,
    sizes: &HashSet<u64>,
    claimed: &HashSet<u32>,
) -> Result<HashMap<String, Vec<u32>>, WorkErr> {
    let mut out: HashMap<String, Vec<u32>> = HashMap::new();
    let per_group = w.cfg.group_bytes.max(1);
    let max_count = w.cfg.fetch_batch.max(1);
    let budget = w.app.budget.clone();
    let dst = w.dst.as_mut().expect("connected");
    let mut pages = Pages::from(from_uid);
    while let Some(page) = pages.next(dst.session.as_mut()).await? {
        let wanted: Vec<ItemMeta> = page
            .into_iter()
            .filter(|m| !claimed.contains(&m.uid) && sizes.contains(&m.size))
            .collect();
        for g in groups(wanted, max_count, per_group) {
            let held = budget.hold(&g).await;
            let fetched = fetch(dst.session.as_mut(), &g).await?;
            drop(held);
            for it in fetched.into_iter().filter(|it| it.meta.refused.is_none()) {
                out.entry(it.digest()).or_default().push(it.meta.uid);
            }
        }
    }
    Ok(out)
}

/// Destination UIDs already recorded as copies (or adopted) in `dest_folder`.
fn claimed_uids(w: &Work<'_>, dest_folder: &str, dest_uidvalidity: u32) -> HashSet<u32> {
    copies(w.app, &w.mailbox.address, |_, df, (v, _)| {
        df == dest_folder && v == dest_uidvalidity
    })
    .map(|(_, _, (_, u))| u)
    .collect()
}

/// Resolves in-doubt intents: an item whose bytes are at the destination
/// (from the intent's UIDNEXT on, not already claimed) is recorded copied;
/// the rest stay not done and are copied by the pass.
pub(super) async fn settle(
    w: &mut Work<'_>,
    f: &Folder,
    dname: &FolderName,
    st: &FolderStatus,
    dst_st: &FolderStatus,
    mark: &FolderMark,
) -> Result<(), WorkErr> {
    let doubts: Vec<(u32, &ferry_projections::watermarks::InDoubt)> = mark
        .in_doubt
        .iter()
        .filter(|(_, d)| d.dest_folder == dname.raw)
        .map(|(u, d)| (*u, d))
        .collect();
    if doubts.is_empty() {
        return Ok(());
    }
    if let Some(found) = by_origin(w, f, dname, st, &doubts).await? {
        tracing::info!(mailbox = %w.mailbox.address, folder = %f.name.raw,
            in_doubt = doubts.len(), found = found.len(), "settled in-doubt items by origin");
        return w.record(found).await;
    }
    let from = doubts
        .iter()
        .map(|(_, d)| d.dest_uidnext.unwrap_or(1))
        .min()
        .unwrap_or(1);
    let sizes: HashSet<u64> = doubts.iter().map(|(_, d)| d.size).collect();
    let claimed = claimed_uids(w, &dname.raw, dst_st.uidvalidity);
    let mut found = dest_digests(w, from, &sizes, &claimed).await?;
    let mut events = Vec::new();
    for (uid, d) in doubts {
        let floor = d.dest_uidnext.unwrap_or(1);
        let Some(cands) = found.get_mut(&d.digest) else {
            continue;
        };
        if let Some(pos) = cands.iter().position(|u| *u >= floor) {
            let dest = cands.remove(pos);
            events.push(Event::ItemCopied {
                mailbox: w.mailbox.address.clone(),
                key: key(f, st, uid),
                size: d.size,
                digest: d.digest.clone(),
                dest_folder: dname.raw.clone(),
                dest_uid: Some((dst_st.uidvalidity, dest)),
            });
        }
    }
    tracing::info!(mailbox = %w.mailbox.address, folder = %f.name.raw,
        in_doubt = mark.in_doubt.len(), found = events.len(), "settled in-doubt items");
    w.record(events).await
}

/// At a destination that keeps origins, the in-doubt items it holds,
/// asked one by one (a copy cut short half-way is removed by the asking,
/// so it is written again); `None` at any other destination.
async fn by_origin(
    w: &mut Work<'_>,
    f: &Folder,
    dname: &FolderName,
    st: &FolderStatus,
    doubts: &[(u32, &ferry_projections::watermarks::InDoubt)],
) -> Result<Option<Vec<Event>>, WorkErr> {
    let dst = w.dst.as_mut().expect("connected").session.as_mut();
    let Some(dst) = dst.by_origin() else {
        return Ok(None);
    };
    let mut events = Vec::new();
    for (uid, d) in doubts {
        let k = key(f, st, *uid);
        if dst.holds(dname, &origin(&k, &d.digest)).await? {
            events.push(Event::ItemCopied {
                mailbox: w.mailbox.address.clone(),
                key: k,
                size: d.size,
                digest: d.digest.clone(),
                dest_folder: dname.raw.clone(),
                dest_uid: None,
            });
        }
    }
    Ok(Some(events))
}

/// Digests of the copies of `f` into `dname` recorded under another
/// UIDVALIDITY, one entry per copy.
fn old_copies(
    w: &Work<'_>,
    f: &Folder,
    dname: &FolderName,
    st: &FolderStatus,
) -> HashMap<String, Vec<Option<u32>>> {
    let mut out: HashMap<String, Vec<Option<u32>>> = HashMap::new();
    let copied = copied_digests(w.app, &w.mailbox.address, |k, df| {
        k.folder == f.name.raw && k.uidvalidity != st.uidvalidity && df == dname.raw
    });
    for (_, d) in copied {
        out.entry(d).or_default().push(None);
    }
    out
}

/// A keyed source's mail copied as its streams into a destination that
/// keeps origins: the copies recorded under earlier generations, by the
/// source's own key (source key → digest, size, old number). A message's
/// stream holds its state, so one whose state changed since it was copied
/// no longer pairs by digest; its key, which the log numbered then, does.
fn streamed_copies(
    w: &Work<'_>,
    f: &Folder,
    dname: &FolderName,
    st: &FolderStatus,
) -> HashMap<String, (String, u64, ItemKey)> {
    let streamed = w
        .src
        .as_ref()
        .and_then(|c| c.keyed.as_ref())
        .is_some_and(|k| k.mail_streamed() && k.class_of(&f.name.raw) == Some(FolderClass::Mail));
    if !streamed {
        return HashMap::new();
    }
    let mut numbered: HashMap<(u32, u32), String> = HashMap::new();
    let mut copied = Vec::new();
    for e in events_of(w.app, &w.mailbox.address) {
        match e {
            Event::SourceSynced {
                folder,
                generation,
                seen,
                ..
            } if folder == f.name.raw && generation != st.uidvalidity => {
                numbered.extend(seen.into_iter().map(|s| ((generation, s.ordinal), s.key)));
            }
            Event::ItemCopied {
                key,
                size,
                digest,
                dest_folder,
                ..
            } if key.folder == f.name.raw
                && key.uidvalidity != st.uidvalidity
                && dest_folder == dname.raw =>
            {
                copied.push((key, digest, size));
            }
            _ => {}
        }
    }
    copied
        .into_iter()
        .filter_map(|(k, d, size)| {
            Some((numbered.get(&(k.uidvalidity, k.uid))?.clone(), (d, size, k)))
        })
        .collect()
}

/// After a UIDVALIDITY change: pairs source items with destination items of
/// the same bytes, so nothing already copied is copied again.
pub(super) async fn rematch(
    w: &mut Work<'_>,
    f: &Folder,
    dname: &FolderName,
    st: &FolderStatus,
    dst_st: &FolderStatus,
) -> Result<(), WorkErr> {
    // Every source size, so only plausible destination items are fetched.
    let mut sizes = HashSet::new();
    let mut pages = Pages::from(1);
    while let Some(page) = pages.next(src(w)).await? {
        sizes.extend(page.iter().map(|m| m.size));
    }
    // Destination UIDs by digest; at a destination that keeps origins, the
    // copies the log records under the old UIDVALIDITY (their stamps hold
    // the digest), with no UID.
    let mut found: HashMap<String, Vec<Option<u32>>> =
        match w.dst.as_mut().expect("connected").session.by_origin() {
            Some(_) => old_copies(w, f, dname, st),
            None => dest_digests(w, 1, &sizes, &HashSet::new())
                .await?
                .into_iter()
                .map(|(d, uids)| (d, uids.into_iter().map(Some).collect()))
                .collect(),
        };
    let mut by_key = streamed_copies(w, f, dname, st);
    // Each copy paired so is stamped with its new number, for flag sync and
    // deletions to find it: copy ids by the origin they carry.
    let stamped: HashMap<String, String> = match by_key.is_empty() {
        true => HashMap::new(),
        false => replica::refresh(w, dname)
            .await?
            .items
            .into_iter()
            .filter_map(|(id, r)| Some((r.origin?.0, id)))
            .collect(),
    };
    let keys_now: HashMap<u32, String> = match by_key.is_empty() {
        true => HashMap::new(),
        false => w
            .app
            .views
            .read()
            .unwrap()
            .sources
            .get(&w.mailbox.address, &f.name.raw)
            .map(|t| t.items.iter().map(|(o, i)| (*o, i.key.clone())).collect())
            .unwrap_or_default(),
    };
    let per_group = w.cfg.group_bytes.max(1);
    let max_count = w.cfg.fetch_batch.max(1);
    let mut matched = 0usize;
    let mut pages = Pages::from(1);
    while let Some(page) = pages.next(src(w)).await? {
        let mut events = Vec::new();
        let mut rest = Vec::with_capacity(page.len());
        for m in page {
            let Some((d, size, old)) = keys_now.get(&m.uid).and_then(|k| by_key.remove(k)) else {
                rest.push(m);
                continue;
            };
            if let Some(v) = found.get_mut(&d) {
                v.pop();
            }
            let now = key(f, st, m.uid);
            if let Some(id) = stamped.get(&origin(&old, &d).key) {
                let dst = w.dst.as_mut().expect("connected").session.as_mut();
                let dst = dst.by_origin().expect("a destination that keeps origins");
                match dst.stamp_id(id, &origin(&now, &d)).await {
                    // Gone or refused since: the pairing stands, unstamped.
                    Err(e) if e.class() == ErrorClass::Item => {
                        tracing::debug!(folder = %dname.raw, error = %e, "copy not stamped anew");
                    }
                    r => r?,
                }
            }
            events.push(Event::ItemCopied {
                mailbox: w.mailbox.address.clone(),
                key: now,
                size,
                digest: d,
                dest_folder: dname.raw.clone(),
                dest_uid: None,
            });
        }
        for g in groups(rest, max_count, per_group) {
            let items = fetch(src(w), &g).await?;
            for it in items.into_iter().filter(|it| it.meta.refused.is_none()) {
                let d = it.digest();
                if let Some(u) = found.get_mut(&d).and_then(|v| v.pop()) {
                    events.push(Event::ItemCopied {
                        mailbox: w.mailbox.address.clone(),
                        key: key(f, st, it.meta.uid),
                        size: it.body.len() as u64,
                        digest: d,
                        dest_folder: dname.raw.clone(),
                        dest_uid: u.map(|u| (dst_st.uidvalidity, u)),
                    });
                }
            }
        }
        matched += events.len();
        w.record(events).await?;
    }
    tracing::info!(mailbox = %w.mailbox.address, folder = %f.name.raw, matched,
        "re-matched items after a UIDVALIDITY change");
    Ok(())
}

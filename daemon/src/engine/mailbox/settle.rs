//! Settling what a crash or a dropped line left in doubt, and re-pairing
//! items after a UIDVALIDITY change: both match by the SHA-256 of the
//! exact bytes at the destination, never by copying again.

use std::collections::{HashMap, HashSet};

use ferry_connectors::paging::{Pages, groups};
use ferry_connectors::{Folder, FolderName, FolderStatus, ItemMeta};
use ferry_events::Event;
use ferry_projections::FolderMark;

use super::copy::{fetch, key, origin, src};
use super::{Work, WorkErr, copied_digests, copies};

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
    let per_group = w.cfg.group_bytes.max(1);
    let max_count = w.cfg.fetch_batch.max(1);
    let mut matched = 0usize;
    let mut pages = Pages::from(1);
    while let Some(page) = pages.next(src(w)).await? {
        let mut events = Vec::new();
        for g in groups(page, max_count, per_group) {
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

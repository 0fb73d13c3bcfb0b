//! Copying items exactly once.
//!
//! [`scan`] lists a source folder page by page and hands the items not yet
//! done to [`copy_items`], which fetches them in groups bounded by count and
//! bytes, fetching the next group while the current one is appended. Each
//! group's intents are flushed to the log before its first APPEND.
//! [`settle`] resolves intents left in doubt by a crash or a dropped line;
//! [`rematch`] re-pairs items after a UIDVALIDITY change; both match by the
//! SHA-256 of the exact bytes, never by copying again.

use std::collections::{HashMap, HashSet};

use ferry_connectors::{
    AppendItem, AppendUid, ErrorClass, Folder, FolderName, FolderStatus, Item, ItemMeta,
    MailSession,
};
use ferry_events::{Event, ItemKey};
use ferry_projections::FolderMark;

use super::worker::{PAGE, Work, WorkErr};

fn key(f: &Folder, st: &FolderStatus, uid: u32) -> ItemKey {
    ItemKey {
        folder: f.name.raw.clone(),
        uidvalidity: st.uidvalidity,
        uid,
    }
}

/// A cursor over the open folder's items, one page of metadata at a time,
/// so no folder is ever listed into memory whole.
pub struct Pages {
    next: Option<u32>,
}

impl Pages {
    pub fn from(uid: u32) -> Self {
        Pages {
            next: Some(uid.max(1)),
        }
    }

    /// The next page, or `None` past the last item.
    pub async fn next(
        &mut self,
        s: &mut dyn MailSession,
    ) -> Result<Option<Vec<ItemMeta>>, ferry_connectors::ConnectorError> {
        let Some(from) = self.next else {
            return Ok(None);
        };
        let page = s.list_items(from, PAGE).await?;
        self.next = page.last().and_then(|m| m.uid.checked_add(1));
        Ok(Some(page).filter(|p| !p.is_empty()))
    }
}

fn src<'a>(w: &'a mut Work<'_>) -> &'a mut dyn MailSession {
    w.src.as_mut().expect("connected").session.as_mut()
}

/// Copies every item with UID >= `from` that passes `wanted` and is not done.
pub async fn scan(
    w: &mut Work<'_>,
    f: &Folder,
    dname: &FolderName,
    st: &FolderStatus,
    from: u32,
    wanted: impl Fn(&ItemMeta) -> bool,
) -> Result<(), WorkErr> {
    let mut pages = Pages::from(from);
    while let Some(page) = {
        w.check_stop()?;
        pages.next(src(w)).await?
    } {
        let todo: Vec<ItemMeta> = {
            let views = w.app.views.read().unwrap();
            let mark = views.watermarks.get(&w.mailbox.address, &f.name.raw);
            page.into_iter()
                .filter(|m| {
                    !mark.is_some_and(|k| k.uidvalidity == st.uidvalidity && k.is_done(m.uid))
                })
                .filter(|m| wanted(m))
                .collect()
        };
        copy_items(w, f, dname, st, todo).await?;
    }
    Ok(())
}

/// Metadata of specific UIDs in the session's open folder.
pub async fn metas_in(s: &mut dyn MailSession, uids: &[u32]) -> Result<Vec<ItemMeta>, WorkErr> {
    let wanted: HashSet<u32> = uids.iter().copied().collect();
    let mut out = Vec::new();
    let (Some(min), Some(max)) = (uids.iter().min(), uids.iter().max()) else {
        return Ok(out);
    };
    let mut pages = Pages::from(*min);
    while let Some(page) = pages.next(s).await? {
        let past = page.last().is_some_and(|m| m.uid >= *max);
        out.extend(page.into_iter().filter(|m| wanted.contains(&m.uid)));
        if past {
            break;
        }
    }
    Ok(out)
}

/// Splits items into fetch groups bounded by count and bytes in flight.
fn groups(metas: Vec<ItemMeta>, max_count: usize, max_bytes: u64) -> Vec<Vec<ItemMeta>> {
    let mut out: Vec<Vec<ItemMeta>> = Vec::new();
    let mut bytes = 0u64;
    for m in metas {
        let start_new = match out.last() {
            None => true,
            Some(g) => g.len() >= max_count || bytes + m.size > max_bytes,
        };
        if start_new {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += m.size;
        out.last_mut().expect("just pushed").push(m);
    }
    out
}

/// The largest item a batch copies: its `--max-item-size`, else 150 MB.
pub fn item_limit(options: &ferry_events::BatchOptions) -> u64 {
    options
        .max_item_bytes
        .unwrap_or(ferry_connectors::DEFAULT_ITEM_LIMIT)
}

fn skip(mailbox: &str, f: &Folder, st: &FolderStatus, m: &ItemMeta, reason: String) -> Event {
    Event::ItemSkipped {
        mailbox: mailbox.to_string(),
        key: key(f, st, m.uid),
        size: m.size,
        reason,
    }
}

/// Copies the given items (already known not done), skipping oversize ones
/// and those the source refuses to give (see `ItemMeta::refused`).
pub async fn copy_items(
    w: &mut Work<'_>,
    f: &Folder,
    dname: &FolderName,
    st: &FolderStatus,
    metas: Vec<ItemMeta>,
) -> Result<(), WorkErr> {
    if metas.is_empty() {
        return Ok(());
    }
    let mut skipped = Vec::new();
    let mut todo = Vec::new();
    let max = item_limit(&w.options);
    for m in metas {
        let reason = match &m.refused {
            Some(why) => why.clone(),
            None if m.size > max => {
                format!("{} bytes is over the batch's limit of {max} bytes", m.size)
            }
            None => {
                todo.push(m);
                continue;
            }
        };
        skipped.push(skip(&w.mailbox.address, f, st, &m, reason));
    }
    w.record(skipped).await?;
    // Half the budget per group: one group is appended while the next is fetched.
    let per_group = w.cfg.group_bytes.max(1);
    let groups = groups(todo, w.cfg.fetch_batch.max(1), per_group);
    let budget = w.engine.budget.clone();
    let mut prefetched = None;
    for i in 0..groups.len() {
        w.check_stop()?;
        let (items, held) = match prefetched.take() {
            Some(x) => x,
            None => {
                let held = budget.hold(&groups[i]).await;
                (fetch(src(w), &groups[i]).await?, held)
            }
        };
        let next = groups.get(i + 1);
        let src = w.src.as_mut().expect("connected").session.as_mut();
        let dst = w.dst.as_mut().expect("connected").session.as_mut();
        // The next group is fetched while this one is appended.
        let (appended, fetched) = tokio::join!(
            async {
                let r = append_group(w.app, &w.mailbox.address, dst, f, dname, st, items).await;
                // Released as soon as this group is written, never held while
                // waiting for the next group's share: no worker can block another.
                drop(held);
                r
            },
            async {
                match next {
                    Some(g) => {
                        let held = budget.hold(g).await;
                        fetch(src, g).await.map(|items| Some((items, held)))
                    }
                    None => Ok(None),
                }
            }
        );
        let failed = appended?;
        for _ in 0..failed {
            w.charge()?;
        }
        prefetched = fetched?;
    }
    Ok(())
}

async fn fetch(src: &mut dyn MailSession, metas: &[ItemMeta]) -> Result<Vec<Item>, WorkErr> {
    let uids: Vec<u32> = metas.iter().map(|m| m.uid).collect();
    Ok(src.fetch(&uids).await?)
}

fn flags_to_copy(flags: &[String]) -> Vec<String> {
    flags
        .iter()
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
        .cloned()
        .collect()
}

/// Records intents, appends, records outcomes; returns how many items failed.
async fn append_group(
    app: &crate::app::App,
    mailbox: &str,
    dst: &mut dyn MailSession,
    f: &Folder,
    dname: &FolderName,
    st: &FolderStatus,
    items: Vec<Item>,
) -> Result<u32, WorkErr> {
    // Refused only once read (a file swapped for a symlink, a server that
    // sent more than it announced): skipped, never written.
    let (refused, items): (Vec<Item>, Vec<Item>) =
        items.into_iter().partition(|it| it.meta.refused.is_some());
    let stream = ferry_events::stream::mailbox(mailbox);
    let any = ferry_events::ExpectedVersion::Any;
    let engine = ferry_events::Actor::Engine;
    if !refused.is_empty() {
        let skipped = refused
            .into_iter()
            .map(|it| {
                let why = it.meta.refused.clone().unwrap_or_default();
                skip(mailbox, f, st, &it.meta, why)
            })
            .collect();
        app.append(&stream, any, engine.clone(), skipped).await?;
    }
    if items.is_empty() {
        return Ok(0);
    }
    // Where new items will land: settling looks from here after a crash.
    let uidnext = dst.select(dname).await?.uidnext;
    let digests: Vec<String> = items.iter().map(Item::digest).collect();
    let intents = items
        .iter()
        .zip(&digests)
        .map(|(it, d)| Event::ItemCopyIntent {
            mailbox: mailbox.to_string(),
            key: key(f, st, it.meta.uid),
            size: it.body.len() as u64,
            digest: d.clone(),
            dest_folder: dname.raw.clone(),
            dest_uidnext: Some(uidnext),
        })
        .collect();
    app.append(&stream, any, engine.clone(), intents).await?;

    let copied = |it: &Item, digest: String, uid: Option<AppendUid>| Event::ItemCopied {
        mailbox: mailbox.to_string(),
        key: key(f, st, it.meta.uid),
        size: it.body.len() as u64,
        digest,
        dest_folder: dname.raw.clone(),
        dest_uid: uid.map(|u| (u.uidvalidity, u.uid)),
    };
    // One MULTIAPPEND for the group where the server offers it: all or
    // nothing, and one commit at the destination instead of one per item.
    if items.len() > 1 && dst.can_append_many() {
        let batch: Vec<AppendItem> = items
            .iter()
            .map(|it| AppendItem {
                flags: flags_to_copy(&it.meta.flags),
                internal_date: it.meta.internal_date,
                body: it.body.clone(),
            })
            .collect();
        match dst.append_many(dname, &batch).await {
            Ok(uids) => {
                let outcomes = items
                    .iter()
                    .zip(digests)
                    .zip(uids)
                    .map(|((it, d), uid)| copied(it, d, uid))
                    .collect();
                app.append(&stream, any, engine, outcomes).await?;
                return Ok(0);
            }
            // Refused as a whole, nothing stored: one by one names the culprit.
            Err(e) if e.class() == ErrorClass::Item => {
                tracing::debug!(mailbox, error = %e, "MULTIAPPEND refused; appending one by one");
            }
            // Unknown what landed: the intents stay in doubt and are settled.
            Err(e) => return Err(e.into()),
        }
    }

    let mut outcomes = Vec::with_capacity(items.len());
    let mut failed = 0;
    let mut interrupted = None;
    for (it, digest) in items.into_iter().zip(digests) {
        let k = key(f, st, it.meta.uid);
        let flags = flags_to_copy(&it.meta.flags);
        match dst
            .append(dname, &flags, it.meta.internal_date, it.body.clone())
            .await
        {
            Ok(uid) => outcomes.push(copied(&it, digest, uid)),
            Err(e) if e.class() == ErrorClass::Item => {
                failed += 1;
                outcomes.push(Event::ItemFailed {
                    mailbox: mailbox.to_string(),
                    key: k,
                    class: format!("{:?}", e.class()),
                    reason: e.to_string(),
                });
            }
            Err(e) => {
                // The rest stays in doubt and is settled before any retry.
                interrupted = Some(e);
                break;
            }
        }
    }
    if !outcomes.is_empty() {
        app.append(&stream, any, engine, outcomes).await?;
    }
    match interrupted {
        Some(e) => Err(e.into()),
        None => Ok(failed),
    }
}

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
    let dst = w.dst.as_mut().expect("connected");
    let mut pages = Pages::from(from_uid);
    while let Some(page) = pages.next(dst.session.as_mut()).await? {
        let wanted: Vec<ItemMeta> = page
            .into_iter()
            .filter(|m| !claimed.contains(&m.uid) && sizes.contains(&m.size))
            .collect();
        for g in groups(wanted, max_count, per_group) {
            let fetched = fetch(dst.session.as_mut(), &g).await?;
            for it in fetched.into_iter().filter(|it| it.meta.refused.is_none()) {
                out.entry(it.digest()).or_default().push(it.meta.uid);
            }
        }
    }
    Ok(out)
}

/// Destination UIDs already recorded as copies in `dest_folder`.
fn claimed_uids(w: &Work<'_>, dest_folder: &str, dest_uidvalidity: u32) -> HashSet<u32> {
    copies(w, |_, df, (v, _)| {
        df == dest_folder && v == dest_uidvalidity
    })
    .map(|(_, _, (_, u))| u)
    .collect()
}

/// The recorded copies of this mailbox that `keep` selects: (source key,
/// destination folder, destination (UIDVALIDITY, UID)). The stream is read
/// lazily, so only the selected copies are held in memory.
fn copies<'a>(
    w: &'a Work<'_>,
    keep: impl Fn(&ItemKey, &str, (u32, u32)) -> bool + 'a,
) -> impl Iterator<Item = (ItemKey, String, (u32, u32))> + 'a {
    let stream = ferry_events::stream::mailbox(&w.mailbox.address);
    ferry_events::EventStore::scan_stream(w.app.store.as_ref(), &stream, 1)
        .filter_map(Result::ok)
        .filter_map(move |e| match e.event {
            Event::ItemCopied {
                key,
                dest_folder,
                dest_uid: Some(du),
                ..
            } if keep(&key, &dest_folder, du) => Some((key, dest_folder, du)),
            _ => None,
        })
}

/// Resolves in-doubt intents: an item whose bytes are at the destination
/// (from the intent's UIDNEXT on, not already claimed) is recorded copied;
/// the rest stay not done and are copied by the pass.
pub async fn settle(
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

/// After a UIDVALIDITY change: pairs source items with destination items of
/// the same bytes, so nothing already copied is copied again.
pub async fn rematch(
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
    let mut found = dest_digests(w, 1, &sizes, &HashSet::new()).await?;
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
                        dest_uid: Some((dst_st.uidvalidity, u)),
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

/// Propagates flag and keyword changes of copied items to their copies.
///
/// With CONDSTORE and a known MODSEQ only the items changed since are
/// looked at; otherwise every item's flags are compared with its copy's,
/// page by page, so a large folder is never listed whole.
pub async fn sync_flags(
    w: &mut Work<'_>,
    f: &Folder,
    dname: &FolderName,
    st: &FolderStatus,
    mark: &FolderMark,
) -> Result<(), WorkErr> {
    if mark.uidvalidity != st.uidvalidity {
        return Ok(());
    }
    let since = match (mark.highest_modseq, st.highest_modseq) {
        (Some(old), Some(now)) if old == now => return Ok(()),
        (Some(old), Some(_)) => Some(old),
        _ => None,
    };
    // Source UID → destination UID, from the log.
    let copies = copies_of(w, &f.name.raw, st.uidvalidity, &dname.raw);
    if copies.is_empty() {
        return Ok(());
    }
    let dst_uidvalidity = w
        .dst
        .as_mut()
        .expect("connected")
        .select(dname)
        .await?
        .uidvalidity;
    let changed = match since {
        Some(old) => {
            w.src
                .as_mut()
                .expect("connected")
                .changed_since(old)
                .await?
        }
        None => None,
    };
    if let Some(list) = changed {
        return sync_page(w, f, st, &copies, dst_uidvalidity, list).await;
    }
    let mut pages = Pages::from(1);
    while let Some(page) = {
        w.check_stop()?;
        pages.next(src(w)).await?
    } {
        sync_page(w, f, st, &copies, dst_uidvalidity, page).await?;
    }
    Ok(())
}

/// Brings the copies of `metas` to the source's flags.
async fn sync_page(
    w: &mut Work<'_>,
    f: &Folder,
    st: &FolderStatus,
    copies: &HashMap<u32, (u32, u32)>,
    dst_uidvalidity: u32,
    metas: Vec<ItemMeta>,
) -> Result<(), WorkErr> {
    let pairs: Vec<(ItemMeta, u32)> = metas
        .into_iter()
        .filter_map(|m| match copies.get(&m.uid) {
            Some((v, du)) if *v == dst_uidvalidity => Some((m, *du)),
            _ => None,
        })
        .collect();
    if pairs.is_empty() {
        return Ok(());
    }
    let dest_uids: Vec<u32> = pairs.iter().map(|(_, du)| *du).collect();
    let dst = w.dst.as_mut().expect("connected");
    let have: HashMap<u32, Vec<String>> = metas_in(dst.session.as_mut(), &dest_uids)
        .await?
        .into_iter()
        .map(|m| (m.uid, m.flags))
        .collect();
    let mut events = Vec::new();
    for (m, du) in pairs {
        let want = flags_to_copy(&m.flags);
        let Some(have) = have.get(&du) else {
            continue;
        };
        if same_flags(&want, &flags_to_copy(have)) {
            continue;
        }
        dst.store_flags(du, &want).await?;
        events.push(Event::FlagsSynced {
            mailbox: w.mailbox.address.clone(),
            key: key(f, st, m.uid),
            flags: want,
        });
    }
    w.record(events).await
}

fn same_flags(a: &[String], b: &[String]) -> bool {
    let norm =
        |v: &[String]| -> HashSet<String> { v.iter().map(|s| s.to_ascii_lowercase()).collect() };
    norm(a) == norm(b)
}

/// Source UID → (destination UIDVALIDITY, UID) of the copies in `dest_folder`.
fn copies_of(
    w: &Work<'_>,
    folder: &str,
    uidvalidity: u32,
    dest_folder: &str,
) -> HashMap<u32, (u32, u32)> {
    copies(w, |k, df, _| {
        k.folder == folder && k.uidvalidity == uidvalidity && df == dest_folder
    })
    .map(|(k, _, du)| (k.uid, du))
    .collect()
}

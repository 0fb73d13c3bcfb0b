//! Copying items exactly once.
//!
//! [`scan`] lists a source folder page by page and hands the items not yet
//! done to [`copy_items`], which fetches them in groups bounded by count and
//! bytes, fetching the next group while the current one is appended. Each
//! group's intents are flushed to the log before its first APPEND.

use ferry_connectors::origin::Origin;
use ferry_connectors::paging::{Pages, groups};
use ferry_connectors::{
    AppendItem, AppendUid, ErrorClass, Folder, FolderName, FolderStatus, Item, ItemMeta,
    MailSession,
};
use ferry_events::{Event, ItemKey};

use super::flags::flags_to_copy;
use super::{Work, WorkErr};

pub(super) fn key(f: &Folder, st: &FolderStatus, uid: u32) -> ItemKey {
    ItemKey {
        folder: f.name.raw.clone(),
        uidvalidity: st.uidvalidity,
        uid,
    }
}

pub(super) fn src<'a>(w: &'a mut Work<'_>) -> &'a mut dyn MailSession {
    w.src.as_mut().expect("connected").session.as_mut()
}

/// Copies every item with UID >= `from` that passes `wanted` and is not done.
pub(super) async fn scan(
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

/// The largest item a batch copies: its `--max-item-size`, else 150 MB.
pub(super) fn item_limit(options: &ferry_events::BatchOptions) -> u64 {
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
pub(super) async fn copy_items(
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
    // Where the next group lands at the earliest: known from the folder's
    // SELECT, then from each group's APPENDUID, so no group waits to ask.
    let mut next_uid = w
        .dst_next
        .take()
        .filter(|(d, _)| *d == dname.raw)
        .map(|(_, n)| n);
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
                let r = append_group(
                    w.app,
                    &w.mailbox.address,
                    dst,
                    (f, dname, st),
                    items,
                    &mut next_uid,
                )
                .await;
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
    w.dst_next = next_uid.map(|n| (dname.raw.clone(), n));
    Ok(())
}

pub(super) async fn fetch(
    src: &mut dyn MailSession,
    metas: &[ItemMeta],
) -> Result<Vec<Item>, WorkErr> {
    let uids: Vec<u32> = metas.iter().map(|m| m.uid).collect();
    Ok(src.fetch(&uids).await?)
}

/// Records intents, appends, records outcomes; returns how many items failed.
/// `next_uid`: a bound the destination's UIDNEXT is at or past, if known;
/// moved past what this group stored when the server says where.
async fn append_group(
    app: &crate::app::App,
    mailbox: &str,
    dst: &mut dyn MailSession,
    (f, dname, st): (&Folder, &FolderName, &FolderStatus),
    items: Vec<Item>,
    next_uid: &mut Option<u32>,
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
    // A bound learnt earlier serves as well: UIDs only grow. A destination
    // that keeps origins is asked by origin instead.
    let stamped = dst.by_origin().is_some();
    let uidnext = match next_uid.take() {
        _ if stamped => None,
        Some(n) => Some(n),
        None => Some(dst.select(dname).await?.uidnext),
    };
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
            dest_uidnext: uidnext,
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
    if let Some(uidnext) = uidnext.filter(|_| items.len() > 1 && dst.can_append_many()) {
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
                *next_uid = past(uidnext, &uids);
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
    let mut stored = Vec::with_capacity(items.len());
    for (it, digest) in items.into_iter().zip(digests) {
        let k = key(f, st, it.meta.uid);
        let flags = flags_to_copy(&it.meta.flags);
        let (date, body) = (it.meta.internal_date, it.body.clone());
        let written = match dst.by_origin() {
            Some(o) => {
                let origin = origin(&k, &digest);
                o.write_stamped(dname, &flags, date, body, &origin)
                    .await
                    .map(|()| None)
            }
            None => dst.append(dname, &flags, date, body).await,
        };
        match written {
            Ok(uid) => {
                stored.push(uid);
                outcomes.push(copied(&it, digest, uid));
            }
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
        None => {
            *next_uid = uidnext.and_then(|n| past(n, &stored));
            Ok(failed)
        }
    }
}

/// The stamp a copy carries at a destination that keeps origins (see
/// `ferry_connectors::origin`): the source key and the digest of its bytes.
pub(super) fn origin(k: &ItemKey, digest: &str) -> Origin {
    Origin {
        key: format!("{}/{}:{}", k.folder, k.uidvalidity, k.uid),
        digest: digest.to_string(),
    }
}

/// The destination's UIDNEXT after storing items whose keys are `uids`,
/// when the server told every one.
fn past(uidnext: u32, uids: &[Option<AppendUid>]) -> Option<u32> {
    uids.iter()
        .map(|u| u.map(|u| u.uid.saturating_add(1)))
        .try_fold(uidnext, |acc, u| Some(acc.max(u?)))
}

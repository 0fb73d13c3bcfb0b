//! Naming failed and skipped items to people: once a folder's work is done,
//! each of its failed or skipped items not yet described gets an
//! `ItemDescribed` with its subject, Message-ID and date, read from the
//! source's header (best effort: a failure to read them never fails the
//! folder).

use ferry_connectors::{Folder, FolderStatus};
use ferry_events::{Event, ItemDescription};

use super::{Work, WorkErr, copy};

/// Headers asked for in one request at most.
const CHUNK: usize = 500;

pub(super) async fn folder(w: &mut Work<'_>, f: &Folder, st: &FolderStatus) -> Result<(), WorkErr> {
    let mut uids: Vec<u32> = {
        let views = w.app.views.read().unwrap();
        let Some(m) = views.mailboxes.get(&w.mailbox.address) else {
            return Ok(());
        };
        let here =
            |k: &ferry_events::ItemKey| k.folder == f.name.raw && k.uidvalidity == st.uidvalidity;
        let failed = m
            .errors
            .values()
            .filter(|e| e.about.is_none() && here(&e.key));
        let skipped = m
            .skipped
            .values()
            .filter(|s| s.about.is_none() && here(&s.key));
        failed
            .map(|e| e.key.uid)
            .chain(skipped.map(|s| s.key.uid))
            .collect()
    };
    uids.sort_unstable();
    uids.dedup();
    for chunk in uids.chunks(CHUNK) {
        let Some(src) = w.src.as_mut() else {
            return Ok(());
        };
        let mut found = match src.headlines(chunk).await {
            Ok(found) => found,
            // The line is down: the next step meets it with its retries,
            // and a later pass describes these items.
            Err(e) if e.is_transient() => return Ok(()),
            // The source will not say: recorded as unknown, not asked again.
            Err(e) => {
                tracing::debug!(mailbox = %w.mailbox.address, error = %e, "item headers unreadable");
                Default::default()
            }
        };
        let events = chunk
            .iter()
            .map(|&uid| {
                let h = found.remove(&uid).unwrap_or_default();
                Event::ItemDescribed {
                    mailbox: w.mailbox.address.clone(),
                    key: copy::key(f, st, uid),
                    about: ItemDescription::new(
                        h.subject.as_deref(),
                        h.message_id.as_deref(),
                        h.date.as_deref(),
                    ),
                }
            })
            .collect();
        w.record(events).await?;
    }
    Ok(())
}

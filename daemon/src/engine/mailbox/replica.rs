//! A destination folder's copies as its change feed (Graph's message
//! delta) shows them. A pass that needs them asks the feed from the link
//! the log keeps, records the answer (`DestinationSynced`) before acting
//! on it, and reads the folder's table from the views: a folder where
//! nothing changed costs one request. A link the destination refused
//! (`410 Gone`) starts the feed over: the table is rebuilt from what the
//! folder holds and nothing is copied again, copies being known by origin.

use ferry_connectors::FolderName;
use ferry_connectors::origin::Held;
use ferry_events::{DestinationItem, Event};
use ferry_projections::ReplicaTable;

use super::{Work, WorkErr};

/// Items per recorded part of a long answer (a first round of a large
/// folder), so no single event grows with the folder.
const PART: usize = 1000;

/// Follows `dname`'s change feed from the stored link and answers the
/// folder's table as it now stands. Only for a destination that keeps
/// origins.
pub(super) async fn refresh(w: &mut Work<'_>, dname: &FolderName) -> Result<ReplicaTable, WorkErr> {
    let link = table(w, &dname.raw).link;
    let dst = w.dst.as_mut().expect("connected").session.as_mut();
    let store = dst.by_origin().expect("checked by the caller");
    let ch = store.changes(dname, link.as_deref()).await?;
    let item = |h: Held| DestinationItem {
        id: h.id,
        origin: h.origin.map(|o| (o.key, o.digest)),
        flags: h.flags,
    };
    let mut seen: Vec<DestinationItem> = ch.seen.into_iter().map(item).collect();
    let mut events = Vec::new();
    let mut restart = ch.restarted;
    let mut gone = if restart { Vec::new() } else { ch.gone };
    loop {
        let rest = seen.split_off(seen.len().min(PART));
        let last = rest.is_empty();
        events.push(Event::DestinationSynced {
            mailbox: w.mailbox.address.clone(),
            folder: dname.raw.clone(),
            restart,
            seen,
            gone: std::mem::take(&mut gone),
            // Only a round recorded whole moves the link on.
            link: last.then(|| ch.link.clone()),
        });
        if last {
            break;
        }
        restart = false;
        seen = rest;
    }
    w.record(events).await?;
    Ok(table(w, &dname.raw))
}

/// The folder's table as the views hold it.
fn table(w: &Work<'_>, dname: &str) -> ReplicaTable {
    w.app
        .views
        .read()
        .unwrap()
        .replicas
        .get(&w.mailbox.address, dname)
        .cloned()
        .unwrap_or_default()
}

//! `batch plan`: what a full pass would do, mailbox by mailbox and folder
//! by folder, from sessions that only read (EXAMINE, list, fetch): no
//! folder is created, nothing appended, nothing recorded.

use std::collections::HashSet;
use std::time::Duration;

use ferry_api::wire::{FolderPlanRow, MailboxPlan};
use ferry_connectors::mapping::{FolderPlan, destination_context};
use ferry_connectors::paging::Pages;
use ferry_connectors::{DEFAULT_ITEM_LIMIT, Folder, FolderName, MailSession};
use ferry_events::{BatchOptions, EndpointSpec, MailboxSpec, Side};

use super::EngineError;
use super::connect::{self, Caps};
use super::mailbox::adopt::adoptable;
use crate::app::App;

/// One side of the batch: endpoint name and spec.
pub type Endpoint = (String, EndpointSpec);

/// Plans every mailbox in turn, one session per side at a time.
pub async fn plan(
    app: &App,
    options: &BatchOptions,
    map: &FolderPlan,
    source: &Endpoint,
    destination: &Endpoint,
    mailboxes: &[MailboxSpec],
) -> Vec<MailboxPlan> {
    // Its own caps: a plan holds one connection per side at a time.
    let caps = Caps::default();
    let mut out = Vec::new();
    for mb in mailboxes {
        let (folders, error) =
            match plan_mailbox(app, &caps, options, map, source, destination, mb).await {
                Ok(f) => (f, None),
                Err(e) => (Vec::new(), Some(e.to_string())),
            };
        out.push(MailboxPlan {
            address: mb.address.clone(),
            folders,
            error,
        });
    }
    out
}

async fn plan_mailbox(
    app: &App,
    caps: &Caps,
    options: &BatchOptions,
    map: &FolderPlan,
    source: &Endpoint,
    destination: &Endpoint,
    mb: &MailboxSpec,
) -> Result<Vec<FolderPlanRow>, EngineError> {
    let timeout = Duration::from_secs(app.config.read().unwrap().engine.io_timeout_s.max(1));
    let limit = options.max_item_bytes.unwrap_or(DEFAULT_ITEM_LIMIT);
    let (sname, sspec) = source;
    let (dname, dspec) = destination;
    let mut src = connect::open(app, caps, sname, sspec, mb, Side::Source, timeout, false).await?;
    src.session.limit_items(limit);
    // A Maildir not made yet holds nothing: planned as empty, not made.
    let mut dst = match connect::maildir_absent(dspec, mb) {
        true => None,
        false => Some(
            connect::open(
                app,
                caps,
                dname,
                dspec,
                mb,
                Side::Destination,
                timeout,
                false,
            )
            .await?,
        ),
    };
    if let Some(d) = &dst {
        src.introduce(d);
    }
    let src_folders = src.list_folders().await?;
    // A keyed source's folders are read as a pass would, recording nothing.
    if let Some(k) = src.keyed.clone() {
        for f in &src_folders {
            super::keyed::preview(app, &mb.address, &k, &f.name).await?;
        }
    }
    let dst_folders = match dst.as_mut() {
        Some(d) => {
            d.session.limit_items(limit);
            d.list_folders().await?
        }
        None => Vec::new(),
    };
    let (special, delimiter) = destination_context(&dst_folders);
    let existing: HashSet<&str> = dst_folders.iter().map(|f| f.name.raw.as_str()).collect();
    let mut rows = Vec::new();
    for f in src_folders.iter().filter(|f| f.selectable) {
        let Some(target) = map.map(f, &special, delimiter) else {
            // Filtered out: counted, never listed.
            let st = src.examine(&f.name).await?;
            rows.push(FolderPlanRow {
                folder: f.name.raw.clone(),
                source_items: u64::from(st.exists),
                ..FolderPlanRow::default()
            });
            continue;
        };
        let exists = existing.contains(target.raw.as_str());
        let held: Option<(&mut dyn MailSession, &FolderName)> = match dst.as_mut() {
            Some(d) if exists => Some((d.session.as_mut(), &target)),
            _ => None,
        };
        let row = plan_folder(app, &mb.address, src.session.as_mut(), held, f, limit).await?;
        rows.push(FolderPlanRow {
            destination: Some(target.raw),
            destination_exists: exists,
            ..row
        });
    }
    let _ = src.logout().await;
    if let Some(d) = dst.as_mut() {
        let _ = d.logout().await;
    }
    Ok(rows)
}

/// Counts one source folder; `held` is the destination session and folder
/// when that folder exists.
async fn plan_folder(
    app: &App,
    mailbox: &str,
    src: &mut dyn MailSession,
    held: Option<(&mut dyn MailSession, &FolderName)>,
    f: &Folder,
    limit: u64,
) -> Result<FolderPlanRow, EngineError> {
    let st = src.examine(&f.name).await?;
    let (done, in_doubt) = app
        .views
        .read()
        .unwrap()
        .watermarks
        .get(mailbox, &f.name.raw)
        .filter(|m| m.uidvalidity == st.uidvalidity)
        .map(|m| (m.done.clone(), m.in_doubt.keys().copied().collect()))
        .unwrap_or_else(|| (Default::default(), HashSet::new()));
    let adopted: HashSet<u32> = match held {
        Some((dst, d)) => adoptable(app, mailbox, src, dst, f, d, &st)
            .await?
            .map(|found| found.pairing.pairs.iter().map(|p| p.source).collect())
            .unwrap_or_default(),
        None => HashSet::new(),
    };
    let mut row = FolderPlanRow {
        folder: f.name.raw.clone(),
        ..FolderPlanRow::default()
    };
    let mut pages = Pages::from(1);
    while let Some(page) = pages.next(src).await? {
        for m in page {
            row.source_items += 1;
            if done.contains(&m.uid) {
                row.done += 1;
            } else if in_doubt.contains(&m.uid) {
                row.in_doubt_items += 1;
            } else if adopted.contains(&m.uid) {
                row.adopt_items += 1;
            } else if m.refused.is_some() || m.size > limit {
                row.skip_items += 1;
            } else {
                row.copy_items += 1;
                row.copy_bytes += m.size;
            }
        }
    }
    Ok(row)
}

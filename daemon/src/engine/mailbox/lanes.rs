//! Several folders of one mailbox in flight at once.
//!
//! Over a long link a folder's work is mostly waiting: open, list, fetch,
//! append, each a round trip. So a mailbox works on its folders in lanes:
//! its own pair of sessions, and up to [`LANES`]` - 1` spare pairs, opened
//! only while the endpoints' caps have room (see [`connect::open_spare`])
//! and given back, before their next folder, when a mailbox waits for a
//! place.
//! Each lane takes the next folder from one queue, largest first.
//!
//! A folder is only ever worked on by one lane at a time, with every rule
//! of a single lane: intents before writes, what is in doubt settled when
//! the folder is opened again. Source folders that land in one destination
//! folder go to one lane together, so their in-doubt items are never
//! settled against another lane's writes. A spare does not retry and
//! records no outage: on a failure of the line it hands the folder back
//! and retires, and the mailbox's own lane counts that failure as one of
//! its own (backoff, outage window) before it takes the folder, settling
//! what the spare left in doubt.
//!
//! A folder that holds most of a full pass's items is split into UID
//! ranges, one unit each, so several lanes copy it at once. A range only
//! copies what a lane could copy without first settling, re-matching or
//! adopting: items neither done nor in doubt, under the UIDVALIDITY the log
//! knows (or none yet), into a destination folder with nothing to adopt.
//! So no range ever settles against another range's writes. Once every
//! range has ended, the folder gets its own whole turn on the mailbox's
//! lane, with no other writer in it: it settles what ranges left in doubt,
//! copies what they did not, and only then moves the checkpoint.

use std::collections::VecDeque;
use std::sync::Mutex;

use ferry_connectors::paging::Pages;
use ferry_connectors::{ErrorClass, Folder, FolderName, ItemMeta};
use ferry_events::{Event, PassKind, Side};

use super::{Work, WorkErr, copy, verify};
use crate::engine::{connect, retry};

/// Pairs of sessions per mailbox at most, its own included.
pub const LANES: usize = 3;
/// Lanes toward a Graph destination: Exchange Online serves a mailbox 4
/// requests at once, and each lane has one write in flight, so 3 lanes
/// left a quarter of the budget unused.
pub const GRAPH_LANES: usize = 4;

/// Items a folder holds at least before it is split into ranges.
const SPLIT_MIN_ITEMS: u32 = 200;

/// Work that stays on one lane.
#[derive(Debug, Clone)]
enum Unit {
    /// Whole folders (indexes into the jobs) landing in one destination folder.
    Folders(Vec<usize>),
    /// The items of one job's folder with UIDs in `lo..=hi`.
    Range { job: usize, lo: u32, hi: u32 },
}

type Queue = Mutex<VecDeque<Unit>>;

impl<'a> Work<'a> {
    /// Works on every job, in lanes where the pass copies and there is
    /// more than one unit of work.
    /// `spares`: lanes opened early (see [`Work::early_spares`]); those the
    /// work does not need are closed, and missing ones are opened here.
    pub(super) async fn run_jobs(
        &mut self,
        jobs: &[(&Folder, FolderName)],
        mut spares: Vec<Work<'a>>,
        tally: &mut verify::Tally,
    ) -> Result<(), WorkErr> {
        let mut units = self.units(jobs);
        let split = self.split(jobs, &mut units).await;
        let queue = Mutex::new(units);
        let want = match self.kind {
            PassKind::Verify => 0,
            _ => (self.lanes() - 1).min(queue.lock().unwrap().len().saturating_sub(1)),
        };
        while spares.len() > want {
            spares.pop().expect("more than wanted").logout();
        }
        for w in &mut spares {
            w.share(self);
        }
        while spares.len() < want {
            spares.push(self.spare());
        }
        if spares.is_empty() {
            self.lane(jobs, &queue, tally).await?;
            return self.finish_split(jobs, split, tally).await;
        }
        let mut lanes: Vec<(Work<'a>, verify::Tally)> = spares
            .into_iter()
            .map(|w| (w, verify::Tally::default()))
            .collect();
        let (own, others) = tokio::join!(
            self.lane(jobs, &queue, tally),
            futures::future::join_all(lanes.iter_mut().map(|(w, t)| w.lane(jobs, &queue, t)))
        );
        for (mut w, _) in lanes {
            w.logout();
            self.failed += w.failed;
            self.folder_errors.extend(w.folder_errors);
        }
        own?;
        let mut failed_line = None;
        for r in others {
            if let Some((e, unit)) = r? {
                queue.lock().unwrap().push_front(unit);
                failed_line.get_or_insert(e);
            }
        }
        // A spare's failed line is a failed attempt of the mailbox's own:
        // its backoff, its outage window, before it takes what was handed back.
        if let Some(e) = failed_line {
            let mut backoff = retry::Backoff::new(&self.cfg);
            self.recover(e, &mut backoff, "a spare session").await?;
        }
        self.lane(jobs, &queue, tally).await?;
        self.finish_split(jobs, split, tally).await
    }

    /// The split folder's own whole turn, once every range has ended.
    async fn finish_split(
        &mut self,
        jobs: &[(&Folder, FolderName)],
        split: Option<usize>,
        tally: &mut verify::Tally,
    ) -> Result<(), WorkErr> {
        let Some(i) = split else { return Ok(()) };
        let (f, dname) = &jobs[i];
        self.run_folder(f, dname, None, tally).await.map(|_| ())
    }

    /// Replaces the first unit by UID ranges when it is one folder holding
    /// most of a full pass's items and ranges may copy it (see the module
    /// notes); the job split, if any.
    async fn split(
        &mut self,
        jobs: &[(&Folder, FolderName)],
        units: &mut VecDeque<Unit>,
    ) -> Option<usize> {
        if self.kind != PassKind::Full {
            return None;
        }
        let Some(Unit::Folders(first)) = units.front() else {
            return None;
        };
        let &[i] = first.as_slice() else {
            return None;
        };
        let (f, dname) = &jobs[i];
        let st = *self.statuses.get(&f.name.raw)?;
        let total: u64 = jobs
            .iter()
            .filter_map(|(f, _)| self.statuses.get(&f.name.raw))
            .map(|s| u64::from(s.exists))
            .sum();
        if st.exists < SPLIT_MIN_ITEMS || u64::from(st.exists) * 2 <= total {
            return None;
        }
        if !self.dst_folders.contains(&dname.raw) {
            return None;
        }
        let first_copy = {
            let views = self.app.views.read().unwrap();
            let mark = views.watermarks.get(&self.mailbox.address, &f.name.raw);
            if mark.is_some_and(|m| m.uidvalidity != st.uidvalidity) {
                return None;
            }
            views.first_copy(&self.mailbox.address, &f.name.raw)
        };
        // Adoption comes before a folder's first copy: only an empty
        // destination folder has nothing to adopt.
        if first_copy && !self.made.contains(&dname.raw) {
            let dst = self.dst.as_mut()?;
            match dst.statuses(std::slice::from_ref(dname)).await {
                Ok(list)
                    if list
                        .first()
                        .is_some_and(|s| s.as_ref().is_ok_and(|s| s.exists == 0)) => {}
                Err(e) if e.is_transient() => {
                    self.dst = None;
                    return None;
                }
                _ => return None,
            }
        }
        let top = st.uidnext.saturating_sub(1);
        let step = top.div_ceil(self.lanes() as u32).max(1);
        units.pop_front();
        let mut hi = top;
        while hi > 0 {
            let lo = hi.saturating_sub(step) + 1;
            units.push_front(Unit::Range { job: i, lo, hi });
            hi = lo - 1;
        }
        tracing::info!(mailbox = %self.mailbox.address, folder = %f.name.raw, items = st.exists,
            ranges = units.iter().filter(|u| matches!(u, Unit::Range { .. })).count(),
            "a large folder is copied in UID ranges at once");
        Some(i)
    }

    /// Copies the items of `f` with UIDs in `lo..=hi` that are neither done
    /// nor in doubt, unless the folder needs its own turn first.
    async fn range(
        &mut self,
        f: &Folder,
        dname: &FolderName,
        (lo, hi): (u32, u32),
    ) -> Result<(), WorkErr> {
        let _logged = RangeLog::begin(&self.mailbox.address, &f.name.raw, lo, hi);
        if !self.dst_folders.contains(&dname.raw) {
            return Ok(());
        }
        self.read_keyed(&f.name).await?;
        let st = self.open_both(f, dname).await?;
        let other_validity = {
            let views = self.app.views.read().unwrap();
            let mark = views.watermarks.get(&self.mailbox.address, &f.name.raw);
            mark.is_some_and(|m| m.uidvalidity != st.uidvalidity)
        };
        if other_validity {
            return Ok(());
        }
        let mut pages = Pages::from(lo);
        while let Some(page) = {
            self.check_stop()?;
            pages.next(copy::src(self)).await?
        } {
            let past = page.last().is_some_and(|m| m.uid >= hi);
            let todo: Vec<ItemMeta> = {
                let views = self.app.views.read().unwrap();
                let mark = views.watermarks.get(&self.mailbox.address, &f.name.raw);
                let open = |uid: u32| {
                    !mark.is_some_and(|k| {
                        k.uidvalidity == st.uidvalidity
                            && (k.is_done(uid) || k.in_doubt.contains_key(&uid))
                    })
                };
                page.into_iter()
                    .filter(|m| m.uid <= hi && open(m.uid))
                    .collect()
            };
            copy::copy_items(self, f, dname, &st, todo).await?;
            if past {
                break;
            }
        }
        Ok(())
    }

    /// The jobs in units: those landing in one destination folder together,
    /// the units with the most items first. A delta leaves out the folders
    /// with nothing to do, so they open no spare.
    fn units(&self, jobs: &[(&Folder, FolderName)]) -> VecDeque<Unit> {
        let mut units: Vec<(String, Vec<usize>, u64)> = Vec::new();
        for (i, (f, dname)) in jobs.iter().enumerate() {
            if self.quiet(f, dname) {
                continue;
            }
            let items = self.statuses.get(&f.name.raw).map_or(0, |s| s.exists);
            match units.iter_mut().find(|(d, _, _)| *d == dname.raw) {
                Some((_, list, n)) => {
                    list.push(i);
                    *n += u64::from(items);
                }
                None => units.push((dname.raw.clone(), vec![i], u64::from(items))),
            }
        }
        // Stable: equal units keep the listing's order.
        units.sort_by_key(|u| std::cmp::Reverse(u.2));
        units
            .into_iter()
            .map(|(_, list, _)| Unit::Folders(list))
            .collect()
    }

    /// How many lanes work on the mailbox at once.
    fn lanes(&self) -> usize {
        match self.destination.1.kind {
            ferry_events::EndpointKind::Graph => GRAPH_LANES,
            _ => LANES,
        }
    }

    /// Spare lanes for a pass that copies whole folders, to open while the
    /// folders are listed (a pass that turns out to need fewer closes them).
    pub(super) fn early_spares(&self) -> Vec<Work<'a>> {
        match self.kind {
            PassKind::Full | PassKind::Prestage => {
                (1..self.lanes()).map(|_| self.spare()).collect()
            }
            _ => Vec::new(),
        }
    }

    /// Takes what `main` learnt since this spare was made.
    fn share(&mut self, main: &Work<'_>) {
        self.statuses = main.statuses.clone();
        self.dst_folders = main.dst_folders.clone();
        self.dst_subscribed = main.dst_subscribed.clone();
        self.made = main.made.clone();
    }

    /// A lane for more of this mailbox's folders, sharing what the pass
    /// knows so far, with no sessions yet.
    fn spare(&self) -> Work<'a> {
        Work {
            engine: self.engine,
            app: self.app,
            cfg: self.cfg.clone(),
            batch: self.batch.clone(),
            options: self.options.clone(),
            pass_id: self.pass_id,
            kind: self.kind,
            older_than_days: self.older_than_days,
            mailbox: self.mailbox.clone(),
            source: self.source.clone(),
            destination: self.destination.clone(),
            src: None,
            dst: None,
            failed: 0,
            folder_errors: Vec::new(),
            dst_folders: self.dst_folders.clone(),
            dst_subscribed: self.dst_subscribed.clone(),
            outage: None,
            blip: None,
            unanswered: None,
            resume: self.resume,
            propagate_deletions: self.propagate_deletions,
            statuses: self.statuses.clone(),
            made: self.made.clone(),
            dst_next: None,
            spare: true,
            lanes_failed: self.lanes_failed.clone(),
            keyed_read: self.keyed_read.clone(),
        }
    }

    /// Opens a spare's sessions, both sides at once; false when a cap has
    /// no room or a side fails (the spare then takes no work).
    async fn connect_spare(&mut self) -> bool {
        let timeout = std::time::Duration::from_secs(self.cfg.io_timeout_s.max(1));
        let caps = &self.engine.caps;
        let (s, d) = tokio::join!(
            connect::open_spare(
                self.app,
                caps,
                &self.source.0,
                &self.source.1,
                &self.mailbox,
                Side::Source,
                timeout,
            ),
            connect::open_spare(
                self.app,
                caps,
                &self.destination.0,
                &self.destination.1,
                &self.mailbox,
                Side::Destination,
                timeout,
            )
        );
        match (s, d) {
            (Some(Ok(mut s)), Some(Ok(mut d))) => {
                let limit = copy::item_limit(&self.options);
                s.session.limit_items(limit);
                d.session.limit_items(limit);
                s.introduce(&d);
                self.src = Some(s);
                self.dst = Some(d);
                true
            }
            _ => false,
        }
    }

    /// Borrows no `self` across the wait (`Work` is not `Sync`).
    fn someone_waits(&self) -> impl Future<Output = bool> + Send + 'a {
        let (app, engine) = (self.app, self.engine);
        let endpoints = [self.source.0.clone(), self.destination.0.clone()];
        async move {
            let endpoints = [endpoints[0].as_str(), endpoints[1].as_str()];
            connect::waiting(app, &engine.caps, &endpoints).await
        }
    }

    /// Ends the sessions, both sides at once, without waiting for the
    /// answers: nobody needs them, and each session's place under its
    /// endpoint's cap is held until its LOGOUT is answered.
    pub(super) fn logout(&mut self) {
        let (s, d) = (self.src.take(), self.dst.take());
        tokio::spawn(async move {
            tokio::join!(
                async {
                    if let Some(mut s) = s {
                        let _ = s.logout().await;
                    }
                },
                async {
                    if let Some(mut d) = d {
                        let _ = d.logout().await;
                    }
                }
            );
        });
    }

    /// Takes units from the queue until it is empty (or, for a spare,
    /// until the line fails: why, and the rest of its unit, kept apart
    /// from the queue until the failure is accounted for).
    async fn lane(
        &mut self,
        jobs: &[(&Folder, FolderName)],
        queue: &Queue,
        tally: &mut verify::Tally,
    ) -> Result<Option<(WorkErr, Unit)>, WorkErr> {
        if self.spare && self.src.is_none() {
            // Not worth waiting for once every folder is taken.
            let connected = tokio::select! {
                ok = self.connect_spare() => ok,
                () = drained(queue) => false,
            };
            if !connected {
                return Ok(None);
            }
        }
        loop {
            // A spare gives way to a mailbox still waiting for its first
            // session; the mailbox's own lane does the rest.
            let more = !queue.lock().unwrap().is_empty();
            if self.spare && more && self.someone_waits().await {
                tracing::info!(mailbox = %self.mailbox.address,
                    "a spare session gives its places to a mailbox waiting for one");
                self.logout();
                return Ok(None);
            }
            let next = { queue.lock().unwrap().pop_front() };
            let Some(unit) = next else {
                return Ok(None);
            };
            match &unit {
                Unit::Folders(list) => {
                    for (n, &i) in list.iter().enumerate() {
                        let (f, dname) = &jobs[i];
                        if let Some(e) = self.run_folder(f, dname, None, tally).await? {
                            return Ok(Some((e, Unit::Folders(list[n..].to_vec()))));
                        }
                    }
                }
                &Unit::Range { job, lo, hi } => {
                    let (f, dname) = &jobs[job];
                    if let Some(e) = self.run_folder(f, dname, Some((lo, hi)), tally).await? {
                        return Ok(Some((e, unit)));
                    }
                }
            }
        }
    }

    /// One folder's work (or one UID range's) with its retries; a folder's
    /// own failure is recorded and the pass goes on. Some: a spare's line
    /// failed, and the work is handed back.
    async fn run_folder(
        &mut self,
        f: &Folder,
        dname: &FolderName,
        range: Option<(u32, u32)>,
        tally: &mut verify::Tally,
    ) -> Result<Option<WorkErr>, WorkErr> {
        let mut backoff = retry::Backoff::new(&self.cfg);
        let res = loop {
            let before = self.progress();
            let attempt = match self.check_stop() {
                Ok(()) => match (self.connect().await, range) {
                    (Ok(()), None) => self.folder(f, dname, tally).await,
                    (Ok(()), Some(r)) => self.range(f, dname, r).await,
                    (Err(e), _) => Err(e),
                },
                Err(e) => Err(e),
            };
            match attempt {
                Ok(()) => break Ok(()),
                Err(e) if self.spare && e.is_transient() => {
                    tracing::info!(mailbox = %self.mailbox.address, folder = %f.name.raw, error = %e,
                        "a spare session failed; the folder goes back to the mailbox's own");
                    self.src = None;
                    self.dst = None;
                    return Ok(Some(e));
                }
                Err(e) => {
                    // Retries are for a line that stays down, not for a
                    // long folder over a flaky one: progress earns a fresh set.
                    if self.progress() > before {
                        backoff = retry::Backoff::new(&self.cfg);
                    }
                    if let Err(e) = self.recover(e, &mut backoff, &f.name.raw).await {
                        break Err(e);
                    }
                }
            }
        };
        match res {
            Ok(()) => Ok(None),
            // The folder's own turn, after every range, meets it again and says why.
            Err(WorkErr::Conn(e)) if matches!(e.class(), ErrorClass::Folder) && range.is_some() => {
                Ok(None)
            }
            Err(WorkErr::Conn(e)) if matches!(e.class(), ErrorClass::Folder) => {
                self.folder_errors
                    .push(format!("folder {}: {e}", f.name.raw));
                self.record(vec![Event::FolderFailed {
                    mailbox: self.mailbox.address.clone(),
                    folder: f.name.raw.clone(),
                    class: format!("{:?}", e.class()),
                    reason: e.to_string(),
                }])
                .await?;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// Logs a range's start, and its end however it ends, so the log shows
/// which ranges were in flight at once.
struct RangeLog {
    mailbox: String,
    folder: String,
    lo: u32,
    hi: u32,
}

impl RangeLog {
    fn begin(mailbox: &str, folder: &str, lo: u32, hi: u32) -> RangeLog {
        tracing::info!(%mailbox, %folder, lo, hi, "range of a large folder begun");
        RangeLog {
            mailbox: mailbox.to_string(),
            folder: folder.to_string(),
            lo,
            hi,
        }
    }
}

impl Drop for RangeLog {
    fn drop(&mut self) {
        let RangeLog {
            mailbox,
            folder,
            lo,
            hi,
        } = self;
        tracing::info!(%mailbox, %folder, lo, hi, "range of a large folder ended");
    }
}

/// Resolves once the queue is empty.
async fn drained(queue: &Queue) {
    loop {
        if queue.lock().unwrap().is_empty() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Opens the spares' sessions at once; those that cannot open are dropped.
pub(super) async fn connect(spares: &mut Vec<Work<'_>>) {
    let opened = futures::future::join_all(spares.iter_mut().map(Work::connect_spare)).await;
    let mut opened = opened.into_iter();
    spares.retain(|_| opened.next().unwrap_or(false));
}

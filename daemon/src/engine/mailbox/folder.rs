//! One folder's share of a pass: the destination folder made and
//! subscribed, what changed about the folder recorded, what a crash left in
//! doubt settled, then the pass's own work.

use ferry_connectors::mapping::{FolderPlan, destination_context};
use ferry_connectors::source::FolderClass;
use ferry_connectors::{Folder, FolderName, FolderStatus, ItemMeta};
use ferry_events::{Event, FolderCount, PassKind, Side};
use ferry_projections::FolderMark;

use super::{
    Work, WorkErr, adopt, copy, describe, flags, lanes, settle, supersede, vanish, verify,
};
use crate::engine::{keyed, retry};

/// What a copying pass does in each folder; a verify pass only counts.
enum Job {
    Full,
    /// Items received before the cut-off only.
    Prestage(chrono::DateTime<chrono::Utc>),
    /// New items past the checkpoint, then flag changes.
    Delta,
    /// The items whose failure is still unresolved.
    RetryErrors,
}

impl Job {
    fn of(kind: PassKind, older_than_days: Option<u32>) -> Option<Job> {
        Some(match kind {
            PassKind::Verify => return None,
            PassKind::Full => Job::Full,
            PassKind::Prestage => {
                let days = older_than_days.unwrap_or(ferry_events::DEFAULT_PRESTAGE_DAYS);
                Job::Prestage(chrono::Utc::now() - chrono::Duration::days(i64::from(days)))
            }
            PassKind::Delta => Job::Delta,
            PassKind::RetryErrors => Job::RetryErrors,
        })
    }
}

impl Work<'_> {
    pub(super) async fn work(&mut self) -> Result<(), WorkErr> {
        let plan = FolderPlan::new(
            &self.options.folder_rules,
            &self.options.include_folders,
            &self.options.exclude_folders,
        )
        .map_err(WorkErr::Conn)?;
        // Spare lanes log in while the folders are listed.
        let mut spares = self.early_spares();
        let listing = async {
            let mut backoff = retry::Backoff::new(&self.cfg);
            loop {
                match self.list_both().await {
                    Ok(x) => break Ok(x),
                    Err(e) => {
                        if let Err(e) = self.recover(e, &mut backoff, "listing folders").await {
                            break Err(e);
                        }
                    }
                }
            }
        };
        let (listed, ()) = tokio::join!(listing, lanes::connect(&mut spares));
        let (src_folders, dst_folders) = match listed {
            Ok(x) => x,
            Err(e) => {
                spares.iter_mut().for_each(Work::logout);
                return Err(e);
            }
        };
        let (special, delimiter) = destination_context(&dst_folders);
        if let Some(k) = self.src.as_ref().and_then(|c| c.keyed.clone()) {
            keyed::record_folders(self, &k).await?;
            keyed::skip_others(self, &k).await?;
        }
        self.dst_folders = dst_folders.iter().map(|f| f.name.raw.clone()).collect();
        self.dst_subscribed = dst_folders
            .iter()
            .filter(|f| f.subscribed)
            .map(|f| f.name.raw.clone())
            .collect();

        let jobs: Vec<(&Folder, FolderName)> = src_folders
            .iter()
            .filter(|f| f.selectable)
            .filter_map(|f| Some((f, plan.map(f, &special, delimiter)?)))
            .collect();
        if self.kind != PassKind::Verify {
            self.count_sources(&jobs).await?;
            self.prepare_destinations(&jobs).await;
        }

        if matches!(self.kind, PassKind::Full | PassKind::Delta) {
            let mut backoff = retry::Backoff::new(&self.cfg);
            loop {
                let attempt = match self.connect().await {
                    Ok(()) => vanish::folders(self, &src_folders, &dst_folders).await,
                    Err(e) => Err(e),
                };
                match attempt {
                    Ok(()) => break,
                    Err(e) => self.recover(e, &mut backoff, "deleted folders").await?,
                }
            }
        }
        let mut tally = verify::Tally::default();
        self.run_jobs(&jobs, spares, &mut tally).await?;
        if self.kind == PassKind::Verify {
            verify::record(self, tally).await?;
        }
        Ok(())
    }

    /// A keyed source's changes to `folder` are recorded before it is read.
    pub(super) async fn read_keyed(&mut self, folder: &FolderName) -> Result<(), WorkErr> {
        match self.src.as_ref().and_then(|c| c.keyed.clone()) {
            Some(k) => keyed::sync(self, &k, folder).await,
            None => Ok(()),
        }
    }

    /// Asks the status of every mapped source folder at once; a full or
    /// prestage pass records the item counts the views do not know yet,
    /// before anything is copied, so progress has its totals from the
    /// start. Best effort: a folder that cannot be asked here is met
    /// again, with its retries, when its turn comes.
    async fn count_sources(&mut self, jobs: &[(&Folder, FolderName)]) -> Result<(), WorkErr> {
        let Some(src) = self.src.as_mut() else {
            return Ok(());
        };
        let names: Vec<FolderName> = jobs.iter().map(|(f, _)| f.name.clone()).collect();
        // A keyed source knows a folder's status once it is read: all are
        // read now, so lanes can take the largest first and split it.
        if src.keyed.is_some() {
            for name in &names {
                match self.read_keyed(name).await {
                    Ok(()) => {}
                    Err(WorkErr::Conn(e)) if e.is_transient() => {
                        self.src = None;
                        return Ok(());
                    }
                    // Met again, with its retries, when its turn comes.
                    Err(WorkErr::Conn(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let Some(src) = self.src.as_mut() else {
            return Ok(());
        };
        match src.statuses(&names).await {
            Ok(list) => {
                for (name, st) in names.into_iter().zip(list) {
                    if let Ok(st) = st {
                        self.statuses.insert(name.raw, st);
                    }
                }
            }
            Err(e) if e.is_transient() => self.src = None,
            Err(_) => {}
        }
        if !matches!(self.kind, PassKind::Full | PassKind::Prestage) {
            return Ok(());
        }
        let counts: Vec<FolderCount> = {
            let views = self.app.views.read().unwrap();
            let m = views.mailboxes.get(&self.mailbox.address);
            jobs.iter()
                .filter_map(|(f, _)| {
                    let st = self.statuses.get(&f.name.raw)?;
                    let known = m.and_then(|m| m.folders.get(&f.name.raw)?.source_items);
                    (known != Some(u64::from(st.exists))).then(|| FolderCount {
                        folder: f.name.raw.clone(),
                        items: u64::from(st.exists),
                        bytes: 0,
                    })
                })
                .collect()
        };
        if !counts.is_empty() {
            let event = Event::FolderCounted {
                mailbox: self.mailbox.address.clone(),
                side: Side::Source,
                counts,
            };
            self.record(vec![event]).await?;
        }
        Ok(())
    }

    /// Makes and subscribes every destination folder the pass needs, all
    /// at once. Best effort: a folder that fails here is made again, one
    /// command at a time, when its turn comes, and its error told then.
    async fn prepare_destinations(&mut self, jobs: &[(&Folder, FolderName)]) {
        for (f, dname) in jobs {
            self.tell_class(f, dname).await;
        }
        let mut want: Vec<(FolderName, bool)> = Vec::new();
        for (f, dname) in jobs {
            let missing = !self.dst_folders.contains(&dname.raw);
            let subscribe = f.subscribed && !self.dst_subscribed.contains(&dname.raw);
            if (missing || subscribe) && !want.iter().any(|(d, _)| d.raw == dname.raw) {
                want.push((dname.clone(), subscribe));
            }
        }
        let Some(dst) = self.dst.as_mut().filter(|_| !want.is_empty()) else {
            return;
        };
        match dst.prepare_folders(&want).await {
            Ok(done) => {
                for ((dname, subscribed), r) in want.into_iter().zip(done) {
                    if r.is_err() {
                        continue;
                    }
                    if self.dst_folders.insert(dname.raw.clone()) {
                        self.made.insert(dname.raw.clone());
                    }
                    if subscribed {
                        self.dst_subscribed.insert(dname.raw);
                    }
                }
            }
            Err(e) if e.is_transient() => self.dst = None,
            Err(_) => {}
        }
    }

    /// Whether a delta pass has nothing at all to do in `f`, not even to
    /// make or subscribe its destination folder.
    pub(super) fn quiet(&self, f: &Folder, dname: &FolderName) -> bool {
        self.kind == PassKind::Delta
            && self.dst_folders.contains(&dname.raw)
            && (!f.subscribed || self.dst_subscribed.contains(&dname.raw))
            && self.unchanged(f, dname)
    }

    /// Whether a delta pass has nothing to do in `f`: its status, asked at
    /// the pass's start, is what its checkpoint recorded. With the same
    /// UIDNEXT nothing arrived; with the same count nothing was expunged;
    /// with the same HIGHESTMODSEQ no flag changed.
    fn unchanged(&self, f: &Folder, dname: &FolderName) -> bool {
        let Some(st) = self.statuses.get(&f.name.raw) else {
            return false;
        };
        let Some(mark) = self.mark(&f.name.raw) else {
            return false;
        };
        let (mapped, known_items) = self.known(f);
        !self.propagate_deletions
            && st.highest_modseq.is_some()
            && mark.highest_modseq == st.highest_modseq
            && mark.uidvalidity == st.uidvalidity
            && mark.scanned_to == st.uidnext.saturating_sub(1)
            && mark.in_doubt.is_empty()
            && known_items == Some(u64::from(st.exists))
            && mapped.as_deref() == Some(dname.raw.as_str())
    }

    /// What the views know of `f`: its destination and its item count.
    fn known(&self, f: &Folder) -> (Option<String>, Option<u64>) {
        self.app
            .views
            .read()
            .unwrap()
            .mailboxes
            .get(&self.mailbox.address)
            .and_then(|m| m.folders.get(&f.name.raw))
            .map(|p| (p.destination.clone(), p.source_items))
            .unwrap_or_default()
    }

    fn mark(&self, folder: &str) -> Option<FolderMark> {
        self.app
            .views
            .read()
            .unwrap()
            .watermarks
            .get(&self.mailbox.address, folder)
            .cloned()
    }

    /// The pass's work on one folder, from the log's current view.
    pub(super) async fn folder(
        &mut self,
        f: &Folder,
        dname: &FolderName,
        tally: &mut verify::Tally,
    ) -> Result<(), WorkErr> {
        self.read_keyed(&f.name).await?;
        let Some(job) = Job::of(self.kind, self.older_than_days) else {
            return verify::count(self, f, dname, tally).await;
        };
        // What a failed pass left undone is copied like a full pass would,
        // without copying anything already done.
        let job = match job {
            Job::RetryErrors if self.resume => Job::Full,
            job => job,
        };
        // A folder made just now holds nothing to adopt.
        let existed = self.dst_folders.contains(&dname.raw) && !self.made.contains(&dname.raw);
        self.ensure_destination(f, dname).await?;
        if matches!(job, Job::Delta) && self.unchanged(f, dname) {
            return Ok(());
        }
        let st = self.open_both(f, dname).await?;
        // Read before anything is recorded about the folder.
        let mark = self.mark(&f.name.raw);
        self.note_folder(f, dname, &st, mark.as_ref()).await?;
        let mark = self.reconcile(f, dname, &st, mark).await?;
        if existed && !matches!(job, Job::RetryErrors) {
            adopt::adopt(self, f, dname, &st).await?;
        }
        let worked = match job {
            Job::Full => copy::scan(self, f, dname, &st, 1, |_| true).await,
            Job::Prestage(cutoff) => {
                copy::scan(self, f, dname, &st, 1, move |m: &ItemMeta| {
                    m.internal_date.is_some_and(|d| d < cutoff)
                })
                .await
            }
            Job::Delta => {
                let from = mark.scanned_to.saturating_add(1).max(1);
                match copy::scan(self, f, dname, &st, from, |_| true).await {
                    Ok(()) => flags::sync_flags(self, f, dname, &st, &mark).await,
                    Err(e) => Err(e),
                }
            }
            Job::RetryErrors => self.retry_errors(f, dname, &st).await,
        };
        // A spent error budget ends the pass: its failures are named first.
        if matches!(worked, Ok(()) | Err(WorkErr::Budget(_))) {
            describe::folder(self, f, &st).await?;
        }
        worked?;
        if matches!(job, Job::Full | Job::Delta) {
            supersede::folder(self, f, dname, &st).await?;
            vanish::folder(self, f, dname, &st, mark.done.is_empty()).await?;
            self.checkpoint(f, &st, &mark).await?;
        }
        Ok(())
    }

    /// Opens the source folder, and the destination alongside: its UIDNEXT
    /// tells the first group's intents where their items will land.
    pub(super) async fn open_both(
        &mut self,
        f: &Folder,
        dname: &FolderName,
    ) -> Result<FolderStatus, WorkErr> {
        let (st, dst_st) = tokio::join!(
            self.src.as_mut().expect("connected").examine(&f.name),
            self.dst.as_mut().expect("connected").select(dname)
        );
        let st = st?;
        self.dst_next = match dst_st {
            Ok(d) => Some((dname.raw.clone(), d.uidnext)),
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(_) => None,
        };
        Ok(st)
    }

    /// Tells the destination the class of a keyed source's folder that
    /// holds no mail, or that its mail comes as streams, before it is made
    /// or written.
    async fn tell_class(&mut self, f: &Folder, dname: &FolderName) {
        let Some(k) = self.src.as_ref().and_then(|c| c.keyed.clone()) else {
            return;
        };
        let Some(dst) = self.dst.as_mut() else {
            return;
        };
        match k.class_of_listed(&f.name.raw).await {
            Some(FolderClass::Mail) if k.mail_streamed() => dst.mail_as_streams(dname),
            Some(class) if class != FolderClass::Mail => dst.set_folder_class(dname, class),
            _ => {}
        }
    }

    /// Creates the destination folder if missing and subscribes it like the
    /// source's; checked every pass, so a crash between the two heals.
    async fn ensure_destination(&mut self, f: &Folder, dname: &FolderName) -> Result<(), WorkErr> {
        self.tell_class(f, dname).await;
        if !self.dst_folders.contains(&dname.raw) {
            self.dst
                .as_mut()
                .expect("connected")
                .create_folder(dname)
                .await?;
            self.dst_folders.insert(dname.raw.clone());
            self.made.insert(dname.raw.clone());
        }
        if f.subscribed && !self.dst_subscribed.contains(&dname.raw) {
            self.dst
                .as_mut()
                .expect("connected")
                .subscribe(dname)
                .await?;
            self.dst_subscribed.insert(dname.raw.clone());
        }
        Ok(())
    }

    /// Records the folder's item count and its mapping when they changed,
    /// so a quiet delta writes nothing.
    async fn note_folder(
        &mut self,
        f: &Folder,
        dname: &FolderName,
        st: &FolderStatus,
        mark: Option<&FolderMark>,
    ) -> Result<(), WorkErr> {
        let (mapped, known_items) = self.known(f);
        // Totals for progress views (bytes only a verify pass measures).
        if known_items != Some(u64::from(st.exists)) {
            self.record(vec![Event::FolderCounted {
                mailbox: self.mailbox.address.clone(),
                side: Side::Source,
                counts: vec![FolderCount {
                    folder: f.name.raw.clone(),
                    items: u64::from(st.exists),
                    bytes: 0,
                }],
            }])
            .await?;
        }
        if mapped.as_deref() != Some(dname.raw.as_str())
            || mark.is_some_and(|m| m.uidvalidity != st.uidvalidity)
        {
            self.record(vec![Event::FolderMapped {
                mailbox: self.mailbox.address.clone(),
                source: f.name.raw.clone(),
                destination: dname.raw.clone(),
                uidvalidity: st.uidvalidity,
            }])
            .await?;
        }
        Ok(())
    }

    /// The folder's mark once a UIDVALIDITY change is re-matched and
    /// in-doubt intents are settled.
    async fn reconcile(
        &mut self,
        f: &Folder,
        dname: &FolderName,
        st: &FolderStatus,
        mark: Option<FolderMark>,
    ) -> Result<FolderMark, WorkErr> {
        match mark {
            Some(m) if m.uidvalidity != st.uidvalidity && m.uidvalidity != 0 => {
                self.record(vec![Event::UidValidityChanged {
                    mailbox: self.mailbox.address.clone(),
                    folder: f.name.raw.clone(),
                    old: m.uidvalidity,
                    new: st.uidvalidity,
                }])
                .await?;
                let dst_st = self.dst.as_mut().expect("connected").select(dname).await?;
                settle::rematch(self, f, dname, st, &dst_st).await?;
            }
            Some(m) if !m.in_doubt.is_empty() => {
                let dst_st = self.dst.as_mut().expect("connected").select(dname).await?;
                settle::settle(self, f, dname, st, &dst_st, &m).await?;
            }
            Some(_) => {}
            None => return Ok(FolderMark::default()),
        }
        Ok(self.mark(&f.name.raw).unwrap_or_default())
    }

    /// Copies again the items of this folder whose failure is unresolved.
    async fn retry_errors(
        &mut self,
        f: &Folder,
        dname: &FolderName,
        st: &FolderStatus,
    ) -> Result<(), WorkErr> {
        let uids: Vec<u32> = {
            let views = self.app.views.read().unwrap();
            views
                .mailboxes
                .get(&self.mailbox.address)
                .map(|m| {
                    m.errors
                        .keys()
                        .filter(|k| k.folder == f.name.raw && k.uidvalidity == st.uidvalidity)
                        .map(|k| k.uid)
                        .collect()
                })
                .unwrap_or_default()
        };
        if uids.is_empty() {
            return Ok(());
        }
        let src = self.src.as_mut().expect("connected");
        let metas = ferry_connectors::paging::metas_in(src.session.as_mut(), &uids).await?;
        copy::copy_items(self, f, dname, st, metas).await
    }

    /// Records how far the folder is scanned, when that moved.
    async fn checkpoint(
        &mut self,
        f: &Folder,
        st: &FolderStatus,
        mark: &FolderMark,
    ) -> Result<(), WorkErr> {
        let moved = mark.scanned_to != st.uidnext.saturating_sub(1)
            || mark.highest_modseq != st.highest_modseq
            || mark.uidvalidity != st.uidvalidity;
        if moved {
            self.record(vec![Event::Checkpoint {
                mailbox: self.mailbox.address.clone(),
                folder: f.name.raw.clone(),
                uidvalidity: st.uidvalidity,
                highest_uid: st.uidnext.saturating_sub(1),
                highest_modseq: st.highest_modseq,
            }])
            .await?;
        }
        Ok(())
    }
}

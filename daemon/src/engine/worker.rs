//! One mailbox's share of a pass.
//!
//! The worker connects to both sides, lists and maps folders, and runs the
//! pass's work folder by folder. A transient failure (dropped line,
//! throttling) drops both sessions, waits with backoff and redoes the
//! folder from the log's point of view: what is recorded copied is never
//! copied again, and what is in doubt is settled first.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ferry_connectors::mapping::FolderPlan;
use ferry_connectors::{ConnectorError, ErrorClass, Folder, FolderName, ItemMeta, SpecialUse};
use ferry_events::{
    BatchOptions, EndpointSpec, Event, ExpectedVersion, FolderCount, MailboxSpec, Outcome,
    PassKind, Side, stream,
};
use ferry_projections::{BatchState, FolderMark};

use super::connect::{self, Conn};
use super::copy;
use super::{Engine, EngineError, retry};
use crate::app::App;
use crate::config::EngineConfig;

/// Items listed per round trip when scanning a folder.
pub const PAGE: usize = 1000;

/// How a mailbox's part of a pass ended.
#[derive(Debug)]
pub enum Ended {
    /// Recorded with this outcome.
    Done(Outcome),
    /// Interrupted by shutdown; nothing recorded, the pass resumes later.
    Drained,
}

/// Why work stopped early.
#[derive(Debug, thiserror::Error)]
pub enum WorkErr {
    #[error(transparent)]
    Conn(#[from] ConnectorError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("error budget of {0} failed items spent")]
    Budget(u32),
    #[error("the daemon is shutting down")]
    Drain,
    #[error("the batch was stopped")]
    Stopped,
}

impl From<ferry_events::StoreError> for WorkErr {
    fn from(e: ferry_events::StoreError) -> Self {
        WorkErr::Engine(EngineError::Store(e))
    }
}

impl WorkErr {
    fn is_transient(&self) -> bool {
        match self {
            WorkErr::Conn(e) => e.is_transient(),
            WorkErr::Engine(EngineError::Connector(e)) => e.is_transient(),
            _ => false,
        }
    }
}

/// Everything a mailbox worker needs, fixed for the pass.
pub struct Work<'a> {
    pub engine: &'a Arc<Engine>,
    pub app: &'a App,
    pub cfg: EngineConfig,
    pub batch: String,
    pub options: BatchOptions,
    pub pass_id: u64,
    pub kind: PassKind,
    pub older_than_days: Option<u32>,
    pub mailbox: MailboxSpec,
    pub source: (String, EndpointSpec),
    pub destination: (String, EndpointSpec),
    pub src: Option<Conn>,
    pub dst: Option<Conn>,
    /// Items that failed in this pass, against the error budget.
    pub failed: u32,
    /// Folders that could not be opened or created, with the reason.
    pub folder_errors: Vec<String>,
    /// Destination folders known to exist.
    pub dst_folders: HashSet<String>,
    /// Destination folders known to be subscribed.
    pub dst_subscribed: HashSet<String>,
}

pub async fn run(
    engine: &Arc<Engine>,
    batch: &str,
    pass_id: u64,
    kind: PassKind,
    older_than_days: Option<u32>,
    mailbox: MailboxSpec,
) -> Ended {
    let app = engine.app.as_ref();
    let cfg = app.config.read().unwrap().engine.clone();
    let setup = {
        let views = app.views.read().unwrap();
        views.batches.get(batch).and_then(|b| {
            let s = views.endpoints.get(&b.source)?;
            let d = views.endpoints.get(&b.destination)?;
            Some((
                b.options.clone(),
                (b.source.clone(), s.spec.clone()),
                (b.destination.clone(), d.spec.clone()),
            ))
        })
    };
    let Some((options, source, destination)) = setup else {
        return Ended::Done(Outcome::Failed);
    };
    let address = mailbox.address.clone();
    let started = app
        .append(
            &stream::mailbox(&address),
            ExpectedVersion::Any,
            ferry_events::Actor::Engine,
            vec![Event::MailboxPassStarted {
                mailbox: address.clone(),
                batch: batch.to_string(),
                pass_id,
                pass: kind,
            }],
        )
        .await;
    if let Err(e) = started {
        tracing::error!(mailbox = %address, error = %e, "cannot record pass start");
        return Ended::Drained;
    }
    let mut w = Work {
        engine,
        app,
        cfg,
        batch: batch.to_string(),
        options,
        pass_id,
        kind,
        older_than_days,
        mailbox,
        source,
        destination,
        src: None,
        dst: None,
        failed: 0,
        folder_errors: Vec::new(),
        dst_folders: HashSet::new(),
        dst_subscribed: HashSet::new(),
    };
    let result = w.work().await;
    if let Some(s) = w.src.as_mut() {
        let _ = s.logout().await;
    }
    if let Some(d) = w.dst.as_mut() {
        let _ = d.logout().await;
    }
    let (outcome, detail) = match result {
        Ok(()) if w.failed == 0 && w.folder_errors.is_empty() => {
            (Outcome::Succeeded, String::new())
        }
        Ok(()) => (
            Outcome::SucceededWithErrors,
            summary(w.failed, &w.folder_errors),
        ),
        Err(WorkErr::Drain) => return Ended::Drained,
        Err(WorkErr::Stopped) => (Outcome::Stopped, "the batch was stopped".into()),
        Err(e) => (Outcome::Failed, e.to_string()),
    };
    tracing::info!(mailbox = %address, ?outcome, %detail, "mailbox pass ended");
    let res = app
        .append(
            &stream::mailbox(&address),
            ExpectedVersion::Any,
            ferry_events::Actor::Engine,
            vec![Event::MailboxPassFinished {
                mailbox: address.clone(),
                pass_id,
                outcome,
                detail,
            }],
        )
        .await;
    match res {
        Ok(_) => Ended::Done(outcome),
        Err(_) => Ended::Drained,
    }
}

fn summary(failed: u32, folders: &[String]) -> String {
    let mut parts = Vec::new();
    if failed > 0 {
        parts.push(format!("{failed} items failed"));
    }
    parts.extend(folders.iter().cloned());
    parts.join("; ")
}

impl Work<'_> {
    /// Stops at a safe point when the daemon drains or the batch is stopped.
    pub fn check_stop(&self) -> Result<(), WorkErr> {
        if self.engine.draining() {
            return Err(WorkErr::Drain);
        }
        let views = self.app.views.read().unwrap();
        match views.batches.get(&self.batch).map(|b| b.state) {
            None | Some(BatchState::Stopping | BatchState::Stopped) => Err(WorkErr::Stopped),
            _ => Ok(()),
        }
    }

    pub async fn record(&mut self, events: Vec<Event>) -> Result<(), WorkErr> {
        if events.is_empty() {
            return Ok(());
        }
        self.app
            .append(
                &stream::mailbox(&self.mailbox.address),
                ExpectedVersion::Any,
                ferry_events::Actor::Engine,
                events,
            )
            .await?;
        Ok(())
    }

    async fn connect(&mut self) -> Result<(), WorkErr> {
        let timeout = std::time::Duration::from_secs(self.cfg.io_timeout_s.max(1));
        for side in [Side::Source, Side::Destination] {
            let (conn, (name, spec)) = match side {
                Side::Source => (&mut self.src, &self.source),
                Side::Destination => (&mut self.dst, &self.destination),
            };
            if conn.is_none() {
                let caps = &self.engine.caps;
                let mut opened =
                    connect::open(self.app, caps, name, spec, &self.mailbox, side, timeout).await?;
                opened
                    .session
                    .limit_items(super::copy::item_limit(&self.options));
                *conn = Some(opened);
            }
        }
        Ok(())
    }

    /// After a failed attempt: for a transient failure, drops both sessions
    /// and waits the next backoff delay (Ok: try again); otherwise, or when
    /// the retries are spent, gives the failure back.
    async fn recover(
        &mut self,
        e: WorkErr,
        delays: &mut (impl Iterator<Item = std::time::Duration> + Send),
        what: &str,
    ) -> Result<(), WorkErr> {
        if !e.is_transient() {
            return Err(e);
        }
        self.src = None;
        self.dst = None;
        let Some(delay) = delays.next() else {
            return Err(e);
        };
        tracing::warn!(mailbox = %self.mailbox.address, %what, error = %e, ?delay,
            "transient failure; retrying");
        let mut stop = self.engine.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(delay) => Ok(()),
            () = stop.wait() => Err(WorkErr::Drain),
        }
    }

    async fn list_both(&mut self) -> Result<(Vec<Folder>, Vec<Folder>), WorkErr> {
        self.check_stop()?;
        self.connect().await?;
        let s = self.src.as_mut().expect("connected").list_folders().await?;
        let d = self.dst.as_mut().expect("connected").list_folders().await?;
        Ok((s, d))
    }

    async fn work(&mut self) -> Result<(), WorkErr> {
        let plan = FolderPlan::new(
            &self.options.folder_rules,
            &self.options.include_folders,
            &self.options.exclude_folders,
        )
        .map_err(WorkErr::Conn)?;
        let mut delays = retry::delays(&self.cfg);
        let (src_folders, dst_folders) = loop {
            match self.list_both().await {
                Ok(x) => break x,
                Err(e) => self.recover(e, &mut delays, "listing folders").await?,
            }
        };
        let special: HashMap<SpecialUse, FolderName> = dst_folders
            .iter()
            .filter_map(|f| f.special_use.map(|u| (u, f.name.clone())))
            .collect();
        let delimiter = dst_folders
            .iter()
            .find_map(|f| f.name.delimiter)
            .or(Some('/'));
        self.dst_folders = dst_folders.iter().map(|f| f.name.raw.clone()).collect();
        self.dst_subscribed = dst_folders
            .iter()
            .filter(|f| f.subscribed)
            .map(|f| f.name.raw.clone())
            .collect();

        let mut counts = (Vec::new(), Vec::new());
        for f in src_folders.iter().filter(|f| f.selectable) {
            let Some(dname) = plan.map(f, &special, delimiter) else {
                continue;
            };
            let mut delays = retry::delays(&self.cfg);
            let res = loop {
                let before = self.progress();
                let attempt = match self.check_stop() {
                    Ok(()) => match self.connect().await {
                        Ok(()) => self.folder(f, &dname, &mut counts).await,
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                };
                match attempt {
                    Ok(()) => break Ok(()),
                    Err(e) => {
                        // Retries are for a line that stays down, not for a
                        // long folder over a flaky one: progress earns a fresh set.
                        if self.progress() > before {
                            delays = retry::delays(&self.cfg);
                        }
                        if let Err(e) = self.recover(e, &mut delays, &f.name.raw).await {
                            break Err(e);
                        }
                    }
                }
            };
            match res {
                Ok(()) => {}
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
                }
                Err(e) => return Err(e),
            }
        }
        if self.kind == PassKind::Verify {
            let mailbox = self.mailbox.address.clone();
            self.record(vec![
                Event::FolderCounted {
                    mailbox: mailbox.clone(),
                    side: Side::Source,
                    counts: counts.0,
                },
                Event::FolderCounted {
                    mailbox,
                    side: Side::Destination,
                    counts: counts.1,
                },
            ])
            .await?;
        }
        Ok(())
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
    async fn folder(
        &mut self,
        f: &Folder,
        dname: &FolderName,
        counts: &mut (Vec<FolderCount>, Vec<FolderCount>),
    ) -> Result<(), WorkErr> {
        if self.kind == PassKind::Verify {
            let src = self.src.as_mut().expect("connected");
            src.examine(&f.name).await?;
            let (items, bytes) = count(src.session.as_mut()).await?;
            counts.0.push(FolderCount {
                folder: f.name.raw.clone(),
                items,
                bytes,
            });
            if self.dst_folders.contains(&dname.raw) {
                let dst = self.dst.as_mut().expect("connected");
                dst.examine(dname).await?;
                let (items, bytes) = count(dst.session.as_mut()).await?;
                counts.1.push(FolderCount {
                    folder: dname.raw.clone(),
                    items,
                    bytes,
                });
            }
            return Ok(());
        }

        if !self.dst_folders.contains(&dname.raw) {
            self.dst
                .as_mut()
                .expect("connected")
                .create_folder(dname)
                .await?;
            self.dst_folders.insert(dname.raw.clone());
        }
        // Checked every pass, so a crash between CREATE and SUBSCRIBE heals.
        if f.subscribed && !self.dst_subscribed.contains(&dname.raw) {
            self.dst
                .as_mut()
                .expect("connected")
                .subscribe(dname)
                .await?;
            self.dst_subscribed.insert(dname.raw.clone());
        }
        let st = self
            .src
            .as_mut()
            .expect("connected")
            .examine(&f.name)
            .await?;
        let mark = self.mark(&f.name.raw);
        let (mapped, known_items) = self
            .app
            .views
            .read()
            .unwrap()
            .mailboxes
            .get(&self.mailbox.address)
            .and_then(|m| m.folders.get(&f.name.raw))
            .map(|p| (p.destination.clone(), p.source_items))
            .unwrap_or_default();
        // Totals for progress views (bytes only a verify pass measures);
        // recorded when they change, so a quiet delta writes nothing.
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
            || mark
                .as_ref()
                .is_some_and(|m| m.uidvalidity != st.uidvalidity)
        {
            self.record(vec![Event::FolderMapped {
                mailbox: self.mailbox.address.clone(),
                source: f.name.raw.clone(),
                destination: dname.raw.clone(),
                uidvalidity: st.uidvalidity,
            }])
            .await?;
        }

        let mark = match mark {
            Some(m) if m.uidvalidity != st.uidvalidity && m.uidvalidity != 0 => {
                self.record(vec![Event::UidValidityChanged {
                    mailbox: self.mailbox.address.clone(),
                    folder: f.name.raw.clone(),
                    old: m.uidvalidity,
                    new: st.uidvalidity,
                }])
                .await?;
                let dst_st = self.dst.as_mut().expect("connected").select(dname).await?;
                copy::rematch(self, f, dname, &st, &dst_st).await?;
                self.mark(&f.name.raw).unwrap_or_default()
            }
            Some(m) => {
                if !m.in_doubt.is_empty() {
                    let dst_st = self.dst.as_mut().expect("connected").select(dname).await?;
                    copy::settle(self, f, dname, &st, &dst_st, &m).await?;
                }
                self.mark(&f.name.raw).unwrap_or_default()
            }
            None => FolderMark::default(),
        };

        match self.kind {
            PassKind::Verify => unreachable!("handled above"),
            PassKind::Full => {
                copy::scan(self, f, dname, &st, 1, |_| true).await?;
            }
            PassKind::Prestage => {
                let days = i64::from(self.older_than_days.unwrap_or(90));
                let cutoff = chrono::Utc::now() - chrono::Duration::days(days);
                copy::scan(self, f, dname, &st, 1, move |m: &ItemMeta| {
                    m.internal_date.is_some_and(|d| d < cutoff)
                })
                .await?;
            }
            PassKind::Delta => {
                let from = mark.scanned_to.saturating_add(1).max(1);
                copy::scan(self, f, dname, &st, from, |_| true).await?;
                copy::sync_flags(self, f, dname, &st, &mark).await?;
            }
            PassKind::RetryErrors => {
                let uids: Vec<u32> = {
                    let views = self.app.views.read().unwrap();
                    views
                        .mailboxes
                        .get(&self.mailbox.address)
                        .map(|m| {
                            m.errors
                                .keys()
                                .filter(|k| {
                                    k.folder == f.name.raw && k.uidvalidity == st.uidvalidity
                                })
                                .map(|k| k.uid)
                                .collect()
                        })
                        .unwrap_or_default()
                };
                if !uids.is_empty() {
                    let src = self.src.as_mut().expect("connected");
                    let metas = copy::metas_in(src.session.as_mut(), &uids).await?;
                    copy::copy_items(self, f, dname, &st, metas).await?;
                }
            }
        }
        let moved = mark.scanned_to != st.uidnext.saturating_sub(1)
            || mark.highest_modseq != st.highest_modseq
            || mark.uidvalidity != st.uidvalidity;
        if matches!(self.kind, PassKind::Full | PassKind::Delta) && moved {
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

    /// Items settled for this mailbox so far (copied, skipped or failed).
    fn progress(&self) -> u64 {
        self.app
            .views
            .read()
            .unwrap()
            .mailboxes
            .get(&self.mailbox.address)
            .map_or(0, |m| m.totals.copied + m.totals.skipped + m.totals.failed)
    }

    /// Counts one failed item against the budget.
    pub fn charge(&mut self) -> Result<(), WorkErr> {
        self.failed += 1;
        if self.failed > self.options.error_budget {
            return Err(WorkErr::Budget(self.options.error_budget));
        }
        Ok(())
    }
}

/// Items and bytes in the open folder, listed page by page.
async fn count(s: &mut dyn ferry_connectors::MailSession) -> Result<(u64, u64), ConnectorError> {
    let (mut items, mut bytes) = (0u64, 0u64);
    let mut pages = copy::Pages::from(1);
    while let Some(page) = pages.next(s).await? {
        items += page.len() as u64;
        bytes += page.iter().map(|m| m.size).sum::<u64>();
    }
    Ok((items, bytes))
}

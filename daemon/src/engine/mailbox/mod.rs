//! One mailbox's share of a pass.
//!
//! The worker connects to both sides, lists and maps folders, and runs the
//! pass's work folder by folder ([`folder`]): counting ([`verify`]),
//! adopting what the destination already holds ([`adopt`]),
//! copying exactly once ([`copy`]), settling what a crash left in doubt
//! ([`settle`]) and bringing flags along ([`flags`]). A transient failure (dropped line,
//! throttling) drops both sessions, waits with backoff and redoes the
//! folder from the log's point of view: what is recorded copied is never
//! copied again, and what is in doubt is settled first.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ferry_connectors::{ConnectorError, Folder, FolderStatus};
use ferry_events::{
    BatchOptions, EndpointSpec, Event, ExpectedVersion, ItemKey, MailboxSpec, Outcome, PassKind,
    Side, stream,
};
use ferry_projections::{BatchState, MailboxState};

use super::connect::{self, Conn};
use super::{Engine, EngineError, retry};
use crate::app::App;
use crate::config::EngineConfig;

pub mod adopt;
mod copy;
mod describe;
mod flags;
mod folder;
mod lanes;
mod replica;
mod settle;
mod supersede;
mod vanish;
mod verify;

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
    /// The outage being waited out, recorded when it started.
    pub outage: Option<Waiting>,
    /// A first transient failure mid-session, not yet an outage.
    pub blip: Option<Blip>,
    /// The side the last connection attempt could not open (or that
    /// failed its first command after an outage).
    pub unanswered: Option<Side>,
    /// The mailbox's last pass failed as a whole: a retry-errors pass
    /// resumes all of its work, not only its failed items.
    pub resume: bool,
    /// Copies of vanished items are removed at the destination.
    pub propagate_deletions: bool,
    /// Source folder statuses asked all at once at the pass's start.
    pub statuses: HashMap<String, FolderStatus>,
    /// Destination folders this pass made (they hold nothing to adopt).
    pub made: HashSet<String>,
    /// A destination folder and a bound its UIDNEXT is at or past, so a
    /// group's intents need no SELECT to say where its items will land.
    pub dst_next: Option<(String, u32)>,
    /// A spare lane (see [`lanes`]): no retries, no outages of its own.
    pub spare: bool,
    /// Items failed in this pass by all lanes of the mailbox, against the
    /// error budget.
    pub lanes_failed: Arc<std::sync::atomic::AtomicU32>,
    /// A keyed source's folders read into the log in this pass, by any
    /// lane: each is read once, and other lanes take its table from the log.
    pub keyed_read: Arc<std::sync::Mutex<HashSet<String>>>,
}

/// A side that does not answer, as recorded in `OutageStarted`.
pub struct Waiting {
    side: Side,
    host: String,
    since: std::time::Instant,
    attempts: u32,
}

/// A side that failed mid-session once: a dropped line or a throttled
/// command. Failing again with no progress in between makes it an
/// outage, dated from here.
pub struct Blip {
    side: Side,
    since: std::time::Instant,
    progress: u64,
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
            let resume = views
                .mailboxes
                .get(&mailbox.address)
                .is_some_and(|m| m.state == MailboxState::Failed);
            Some((
                b.options.clone(),
                (b.source.clone(), s.spec.clone()),
                (b.destination.clone(), d.spec.clone()),
                resume,
                b.propagate_deletions,
            ))
        })
    };
    let Some((options, source, destination, resume, propagate_deletions)) = setup else {
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
        outage: None,
        blip: None,
        unanswered: None,
        resume,
        propagate_deletions,
        statuses: HashMap::new(),
        made: HashSet::new(),
        dst_next: None,
        spare: false,
        lanes_failed: Arc::default(),
        keyed_read: Arc::default(),
    };
    let result = w.work().await;
    if result.is_err() && w.outage.is_some() {
        // Past the window: the outage ends with the mailbox's failure.
        let _ = w.outage_over().await;
    }
    w.next_attempt(None);
    w.logout();
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

/// Where an endpoint is, as an outage names it (never a credential).
fn host_of(spec: &EndpointSpec) -> String {
    match spec.kind {
        ferry_events::EndpointKind::Imap => format!("{}:{}", spec.host, spec.port),
        ferry_events::EndpointKind::Maildir | ferry_events::EndpointKind::Graph => {
            spec.host.clone()
        }
        ferry_events::EndpointKind::Ews => ferry_connectors::ews::endpoint_name(&spec.host),
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
        // Both sides log in at once: over a long link each login is
        // several round trips.
        // Places under both caps first, the source's before the
        // destination's: mailboxes that took them in opposite orders
        // could each hold one and wait for the other forever.
        let (app, caps) = (self.app, &self.engine.caps);
        let mut places = [None, None];
        for (i, (side, missing)) in [
            (Side::Source, self.src.is_none()),
            (Side::Destination, self.dst.is_none()),
        ]
        .into_iter()
        .enumerate()
        {
            if !missing {
                continue;
            }
            let (name, spec) = match side {
                Side::Source => &self.source,
                Side::Destination => &self.destination,
            };
            places[i] = Some(connect::slot(app, caps, name, spec).await?);
        }
        let [src_place, dst_place] = places;
        let open = |side: Side, place: Option<connect::Slot>| {
            let (name, spec) = match side {
                Side::Source => &self.source,
                Side::Destination => &self.destination,
            };
            let mailbox = &self.mailbox;
            async move {
                let place = place?;
                Some(connect::open_with(place, app, name, spec, mailbox, side, timeout).await)
            }
        };
        let (s, d) = tokio::join!(
            open(Side::Source, src_place),
            open(Side::Destination, dst_place)
        );
        for (side, opened) in [(Side::Source, s), (Side::Destination, d)] {
            let Some(opened) = opened else { continue };
            let mut opened = match opened {
                Ok(opened) => opened,
                Err(e) => {
                    self.unanswered = Some(side);
                    return Err(e.into());
                }
            };
            opened.session.limit_items(copy::item_limit(&self.options));
            let waited = self.outage.as_ref().is_some_and(|o| o.side == side);
            // A login is not enough to end an outage: the side must
            // answer a command too ([UNAVAILABLE] comes after login).
            if waited && let Err(e) = opened.session.list_folders().await {
                self.unanswered = Some(side);
                return Err(e.into());
            }
            match side {
                Side::Source => self.src = Some(opened),
                Side::Destination => self.dst = Some(opened),
            }
            if waited {
                self.outage_over().await?;
            }
        }
        if let (Some(src), Some(dst)) = (&self.src, &self.dst) {
            src.introduce(dst);
        }
        Ok(())
    }

    /// The side a transient failure came from: the one a connection
    /// attempt could not open, else the one whose endpoint the error names
    /// (the source when both sides are the same server).
    fn side_of(&mut self, e: &WorkErr) -> Option<(Side, bool)> {
        if let Some(side) = self.unanswered.take() {
            return Some((side, true));
        }
        let endpoint = match e {
            WorkErr::Conn(c) | WorkErr::Engine(EngineError::Connector(c)) => c.endpoint()?,
            _ => return None,
        };
        [Side::Source, Side::Destination]
            .into_iter()
            .find(|s| host_of(&self.endpoint(*s).1) == endpoint)
            .map(|s| (s, false))
    }

    fn endpoint(&self, side: Side) -> &(String, EndpointSpec) {
        match side {
            Side::Source => &self.source,
            Side::Destination => &self.destination,
        }
    }

    /// A transient failure: one more attempt of the outage being waited
    /// out, or the start of one when a side cannot be reached, or when it
    /// fails mid-session a second time with no progress in between.
    async fn outage_seen(&mut self, e: &WorkErr) -> Result<(), WorkErr> {
        let Some((side, at_connect)) = self.side_of(e) else {
            return Ok(());
        };
        if let Some(o) = self.outage.as_mut() {
            o.attempts += 1;
            return Ok(());
        }
        let progress = self.progress();
        let (since, attempts) = match self.blip.take() {
            Some(b) if b.side == side && b.progress == progress => (b.since, 2),
            _ if at_connect => (std::time::Instant::now(), 1),
            _ => {
                self.blip = Some(Blip {
                    side,
                    since: std::time::Instant::now(),
                    progress,
                });
                return Ok(());
            }
        };
        let host = host_of(&self.endpoint(side).1);
        tracing::warn!(mailbox = %self.mailbox.address, %host, error = %e, "waiting for the server");
        self.record(vec![Event::OutageStarted {
            mailbox: self.mailbox.address.clone(),
            side,
            host: host.clone(),
            reason: e.to_string(),
        }])
        .await?;
        self.outage = Some(Waiting {
            side,
            host,
            since,
            attempts,
        });
        Ok(())
    }

    /// Sets (or clears) when this mailbox tries again, for answers.
    fn next_attempt(&self, at: Option<i64>) {
        let mut map = self.app.next_attempts.lock().unwrap();
        match at {
            Some(at) => map.insert(self.mailbox.address.clone(), at),
            None => map.remove(&self.mailbox.address),
        };
    }

    /// Records the end of the outage being waited out.
    async fn outage_over(&mut self) -> Result<(), WorkErr> {
        let Some(o) = self.outage.take() else {
            return Ok(());
        };
        self.next_attempt(None);
        tracing::info!(mailbox = %self.mailbox.address, host = %o.host, attempts = o.attempts,
            "the server answers again");
        let duration_us = i64::try_from(o.since.elapsed().as_micros()).unwrap_or(i64::MAX);
        self.record(vec![Event::OutageEnded {
            mailbox: self.mailbox.address.clone(),
            side: o.side,
            host: o.host,
            attempts: o.attempts,
            duration_us,
        }])
        .await
    }

    /// After a failed attempt: for a transient failure, drops both sessions
    /// and waits the next backoff delay (Ok: try again); otherwise, or when
    /// the retries are spent, gives the failure back.
    async fn recover(
        &mut self,
        e: WorkErr,
        backoff: &mut retry::Backoff,
        what: &str,
    ) -> Result<(), WorkErr> {
        if !e.is_transient() {
            self.unanswered = None;
            return Err(e);
        }
        self.src = None;
        self.dst = None;
        self.outage_seen(&e).await?;
        let Some(delay) = backoff.next_delay() else {
            return Err(e);
        };
        tracing::warn!(mailbox = %self.mailbox.address, %what, error = %e, ?delay,
            "transient failure; retrying");
        if self.outage.is_some() {
            let at = ferry_events::time::now_us()
                + i64::try_from(delay.as_micros()).unwrap_or(i64::MAX / 2);
            self.next_attempt(Some(at));
        }
        let mut stop = self.engine.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(delay) => Ok(()),
            () = stop.wait() => Err(WorkErr::Drain),
        }
    }

    async fn list_both(&mut self) -> Result<(Vec<Folder>, Vec<Folder>), WorkErr> {
        self.check_stop()?;
        self.connect().await?;
        let (s, d) = tokio::join!(
            self.src.as_mut().expect("connected").list_folders(),
            self.dst.as_mut().expect("connected").list_folders()
        );
        Ok((s?, d?))
    }

    /// Items settled for this mailbox so far (copied, adopted, skipped or failed).
    fn progress(&self) -> u64 {
        self.app
            .views
            .read()
            .unwrap()
            .mailboxes
            .get(&self.mailbox.address)
            .map_or(0, |m| {
                m.totals.copied + m.totals.adopted + m.totals.skipped + m.totals.failed
            })
    }

    /// Counts one failed item against the budget.
    pub fn charge(&mut self) -> Result<(), WorkErr> {
        self.failed += 1;
        let all = 1 + self
            .lanes_failed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if all > self.options.error_budget {
            return Err(WorkErr::Budget(self.options.error_budget));
        }
        Ok(())
    }
}

/// The recorded copies (and adoptions) of this mailbox that `keep` selects: (source key,
/// destination folder, destination (UIDVALIDITY, UID)). The stream is read
/// lazily, so only the selected copies are held in memory.
pub(super) fn copies<'a>(
    app: &'a App,
    mailbox: &str,
    keep: impl Fn(&ItemKey, &str, (u32, u32)) -> bool + 'a,
) -> impl Iterator<Item = (ItemKey, String, (u32, u32))> + 'a {
    events_of(app, mailbox).filter_map(move |e| match e {
        Event::ItemCopied {
            key,
            dest_folder,
            dest_uid: Some(du),
            ..
        }
        | Event::ItemAdopted {
            key,
            dest_folder,
            dest_uid: du,
            ..
        } if keep(&key, &dest_folder, du) => Some((key, dest_folder, du)),
        _ => None,
    })
}

/// Every recorded copy of this mailbox that `keep` selects by source key
/// and destination folder, with the digest of its bytes, whether or not
/// the destination told a UID (a destination that keeps origins never does).
pub(super) fn copied_digests<'a>(
    app: &'a App,
    mailbox: &str,
    keep: impl Fn(&ItemKey, &str) -> bool + 'a,
) -> impl Iterator<Item = (ItemKey, String)> + 'a {
    events_of(app, mailbox).filter_map(move |e| match e {
        Event::ItemCopied {
            key,
            digest,
            dest_folder,
            ..
        } if keep(&key, &dest_folder) => Some((key, digest)),
        _ => None,
    })
}

/// Every recorded copy of this mailbox that `keep` selects by source key
/// and destination folder: where it went and the digest of its bytes.
pub(super) fn copied_places<'a>(
    app: &'a App,
    mailbox: &str,
    keep: impl Fn(&ItemKey, &str) -> bool + 'a,
) -> impl Iterator<Item = (ItemKey, String, String)> + 'a {
    events_of(app, mailbox).filter_map(move |e| match e {
        Event::ItemCopied {
            key,
            digest,
            dest_folder,
            ..
        } if keep(&key, &dest_folder) => Some((key, dest_folder, digest)),
        _ => None,
    })
}

/// This mailbox's stream, read lazily.
pub(super) fn events_of<'a>(app: &'a App, mailbox: &str) -> impl Iterator<Item = Event> + 'a {
    let stream = ferry_events::stream::mailbox(mailbox);
    ferry_events::EventStore::scan_stream(app.store.as_ref(), &stream, 1)
        .filter_map(Result::ok)
        .map(|e| e.event)
}

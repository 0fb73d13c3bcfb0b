//! `ferryctl watch [BATCH]`: live progress per mailbox, driven by the event
//! stream (long poll), until the pass ends. Bars on a terminal; plain lines
//! otherwise, so scripts and logs can follow it too.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::bail;
use ferry_api::wire::{BatchShow, Events, MailboxShow};
use ferry_api::{Client, ErrorCode, Request, Response};
use ferry_events::{Event, Side};
use ferry_projections::{BatchView, MailboxView};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::units::{Rate, duration, per_second, size, thousands};

/// One mailbox's progress as the events tell it.
struct Progress {
    batch: String,
    source: BTreeMap<String, u64>,
    done: u64,
    failed: u64,
    bytes: u64,
    state: String,
    /// The outage the pass waits out, as `mailbox show` says it.
    waiting: Option<String>,
    bar: Option<ProgressBar>,
    printed: Option<Instant>,
    /// The recent pace, for the rate and the ETA.
    rate: Rate,
    started: Instant,
}

/// How far back the rate and ETA look.
const RATE_WINDOW: Duration = Duration::from_secs(30);

impl Progress {
    fn from_view(m: &MailboxView) -> Progress {
        let mut p = Progress {
            batch: m.batch.clone(),
            source: BTreeMap::new(),
            done: 0,
            failed: 0,
            bytes: 0,
            state: String::new(),
            waiting: None,
            bar: None,
            printed: None,
            rate: Rate::new(RATE_WINDOW),
            started: Instant::now(),
        };
        p.reset(m);
        p
    }

    fn reset(&mut self, m: &MailboxView) {
        self.source = m
            .folders
            .iter()
            .filter_map(|(f, p)| p.source_items.map(|n| (f.clone(), n)))
            .collect();
        self.done = m.totals.copied + m.totals.adopted + m.totals.skipped + m.totals.failed;
        self.failed = m.totals.failed;
        self.bytes = m.totals.bytes;
        self.state = m.state.to_string();
        self.waiting = m.outage.as_ref().map(crate::output::waiting);
    }

    fn known(&self) -> u64 {
        self.source.values().sum::<u64>().max(self.done)
    }

    /// State, bytes, recent rate and ETA, rounded.
    fn message(&mut self) -> String {
        self.rate
            .note(self.started.elapsed(), self.done, self.bytes);
        let mut m = format!("{} {}", self.state, size(self.bytes));
        if let Some((items, bytes)) = self.rate.per_second() {
            m.push_str(&format!(
                ", {} items/s ({}/s)",
                per_second(items),
                size(bytes as u64)
            ));
        }
        let left = self.known().saturating_sub(self.done);
        if left > 0
            && let Some(eta) = self.rate.eta(left)
        {
            m.push_str(&format!(", ETA {}", duration(eta)));
        }
        if self.failed > 0 {
            m.push_str(&format!(", {} failed", thousands(self.failed)));
        }
        if let Some(w) = &self.waiting {
            m.push_str(&format!("; {w}"));
        }
        m
    }
}

struct Watch {
    tty: bool,
    multi: MultiProgress,
    style: ProgressStyle,
    mailboxes: BTreeMap<String, Progress>,
}

impl Watch {
    fn show(&mut self, address: &str, force: bool) {
        let tty = self.tty;
        let Some(p) = self.mailboxes.get_mut(address) else {
            return;
        };
        if tty {
            let (known, msg) = (p.known(), p.message());
            let bar = p.bar.get_or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new(0));
                bar.set_style(self.style.clone());
                bar.set_prefix(address.to_string());
                bar
            });
            bar.set_length(known);
            bar.set_position(p.done);
            bar.set_message(msg);
        } else if force
            || p.printed
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            p.printed = Some(Instant::now());
            let msg = p.message();
            println!(
                "{address} [{}] {}/{} items, {msg}",
                p.batch,
                thousands(p.done),
                thousands(p.known()),
            );
        }
    }
}

async fn batch(client: &Client, name: &str) -> anyhow::Result<BatchView> {
    match client
        .call(&Request::BatchShow(BatchShow {
            name: name.to_string(),
        }))
        .await?
    {
        Response::Batch(b) => Ok(b.batch),
        _ => bail!("ferryd answered batch show with something else"),
    }
}

async fn mailbox(client: &Client, address: &str) -> anyhow::Result<Option<MailboxView>> {
    match client
        .call(&Request::MailboxShow(MailboxShow {
            address: address.to_string(),
        }))
        .await
    {
        Ok(Response::Mailbox(m)) => Ok(Some(*m)),
        Ok(_) => bail!("ferryd answered mailbox show with something else"),
        Err(e) if e.code() == Some(ErrorCode::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub async fn watch(client: &Client, only: Option<&str>) -> anyhow::Result<i32> {
    let tty = std::io::stdout().is_terminal();
    let mut w = Watch {
        tty,
        multi: MultiProgress::with_draw_target(if tty {
            ProgressDrawTarget::stdout()
        } else {
            ProgressDrawTarget::hidden()
        }),
        style: ProgressStyle::with_template("{prefix:<28} [{bar:30}] {pos:>6}/{len:<6} {msg}")
            .expect("static template")
            .progress_chars("=> "),
        mailboxes: BTreeMap::new(),
    };
    let batches: Vec<BatchView> = match only {
        Some(name) => vec![batch(client, name).await?],
        None => match client.call(&Request::BatchList).await? {
            Response::Batches(bs) => bs
                .into_iter()
                .filter(BatchView::has_pass_in_flight)
                .collect(),
            _ => bail!("ferryd answered batch list with something else"),
        },
    };
    let mut watched: BTreeSet<String> = batches
        .iter()
        .filter(|b| b.has_pass_in_flight())
        .map(|b| b.name.clone())
        .collect();
    if watched.is_empty() {
        match only {
            Some(name) => println!("batch {name}: no pass running ({})", batches[0].state),
            None => println!("no pass running"),
        }
        return Ok(0);
    }
    for b in batches.iter().filter(|b| watched.contains(&b.name)) {
        for a in &b.mailboxes {
            if let Some(m) = mailbox(client, a).await? {
                w.mailboxes.insert(a.clone(), Progress::from_view(&m));
                w.show(a, true);
            }
        }
    }
    // Events up to here are counted in the views just read; one landing
    // between the two reads is missed until its mailbox's pass ends, when
    // the views are read again.
    let mut since = log_head(client).await? + 1;
    let mut budgets_shown = Vec::new();
    let mut budgets_asked = Instant::now();
    show_budgets(client, &mut budgets_shown).await?;
    while !watched.is_empty() {
        let Response::Events { events, .. } = client
            .call(&Request::Events(Events {
                since,
                limit: Some(5000),
                wait_ms: Some(2000),
                batch: None,
                mailbox: None,
                types: Vec::new(),
            }))
            .await?
        else {
            bail!("ferryd answered events with something else");
        };
        // The wait for a server counts down between events.
        let waiting: Vec<String> = w
            .mailboxes
            .iter()
            .filter(|(_, p)| p.waiting.is_some())
            .map(|(a, _)| a.clone())
            .collect();
        for a in waiting {
            if let Some(m) = mailbox(client, &a).await?
                && let Some(p) = w.mailboxes.get_mut(&a)
            {
                p.waiting = m.outage.as_ref().map(crate::output::waiting);
                w.show(&a, true);
            }
        }
        if budgets_asked.elapsed() >= BUDGET_EVERY {
            budgets_asked = Instant::now();
            show_budgets(client, &mut budgets_shown).await?;
        }
        if events.is_empty() {
            // A pass stopped or deleted without an event we saw: ask.
            for name in watched.clone() {
                if !batch(client, &name).await?.has_pass_in_flight() {
                    watched.remove(&name);
                }
            }
            continue;
        }
        for e in events {
            since = e.seq + 1;
            let Ok(event) = serde_json::from_value::<Event>(e.event) else {
                continue;
            };
            match &event {
                Event::MailboxPassStarted {
                    mailbox: a, batch, ..
                } if watched.contains(batch) && !w.mailboxes.contains_key(a) => {
                    if let Some(m) = mailbox(client, a).await? {
                        w.mailboxes.insert(a.clone(), Progress::from_view(&m));
                    }
                    w.show(a, true);
                }
                Event::FolderCounted {
                    mailbox: a,
                    side: Side::Source,
                    counts,
                } => {
                    if let Some(p) = w.mailboxes.get_mut(a) {
                        for c in counts {
                            p.source.insert(c.folder.clone(), c.items);
                        }
                        w.show(a, false);
                    }
                }
                Event::ItemCopied {
                    mailbox: a, size, ..
                } => {
                    if let Some(p) = w.mailboxes.get_mut(a) {
                        p.done += 1;
                        p.bytes += size;
                        w.show(a, false);
                    }
                }
                Event::ItemSkipped { mailbox: a, .. } | Event::ItemAdopted { mailbox: a, .. } => {
                    if let Some(p) = w.mailboxes.get_mut(a) {
                        p.done += 1;
                        w.show(a, false);
                    }
                }
                Event::ItemFailed { mailbox: a, .. } => {
                    if let Some(p) = w.mailboxes.get_mut(a) {
                        p.done += 1;
                        p.failed += 1;
                        w.show(a, false);
                    }
                }
                Event::OutageStarted { mailbox: a, .. } if w.mailboxes.contains_key(a) => {
                    if let Some(m) = mailbox(client, a).await?
                        && let Some(p) = w.mailboxes.get_mut(a)
                    {
                        p.waiting = m.outage.as_ref().map(crate::output::waiting);
                    }
                    w.show(a, true);
                }
                Event::OutageEnded { mailbox: a, .. } => {
                    if let Some(p) = w.mailboxes.get_mut(a) {
                        p.waiting = None;
                        w.show(a, true);
                    }
                }
                Event::MailboxPassFinished { mailbox: a, .. } if w.mailboxes.contains_key(a) => {
                    // The views are the truth at the end of a mailbox's pass.
                    if let Some(m) = mailbox(client, a).await?
                        && let Some(p) = w.mailboxes.get_mut(a)
                    {
                        p.reset(&m);
                    }
                    w.show(a, true);
                }
                Event::PassFinished { batch: b, .. }
                | Event::BatchStopped { batch: b }
                | Event::BatchDeleted { batch: b, .. }
                    if watched.contains(b) =>
                {
                    let still = match event {
                        Event::BatchDeleted { .. } => false,
                        _ => batch(client, b).await?.has_pass_in_flight(),
                    };
                    if !still {
                        watched.remove(b);
                    }
                }
                _ => {}
            }
        }
    }
    for p in w.mailboxes.values() {
        if let Some(bar) = &p.bar {
            bar.finish();
        }
    }
    for b in batches {
        let state = match batch(client, &b.name).await {
            Ok(now) => now.state.to_string(),
            Err(_) => "deleted".to_string(),
        };
        println!("batch {}: pass ended, {state}", b.name);
    }
    Ok(0)
}

/// How often the destination budgets are asked while watching.
const BUDGET_EVERY: Duration = Duration::from_secs(5);

/// Prints each Graph destination budget whose line changed since shown.
async fn show_budgets(client: &Client, shown: &mut Vec<String>) -> anyhow::Result<()> {
    let Response::Status(s) = client.call(&Request::Status).await? else {
        bail!("ferryd answered status with something else");
    };
    for line in &s.destination_budgets {
        if !shown.contains(line) {
            println!("{line}");
        }
    }
    *shown = s.destination_budgets;
    Ok(())
}

async fn log_head(client: &Client) -> anyhow::Result<u64> {
    match client.call(&Request::Status).await? {
        Response::Status(s) => Ok(s.head),
        _ => bail!("ferryd answered status with something else"),
    }
}

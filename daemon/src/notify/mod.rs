//! Pass summaries: when a pass of a batch with targets ends, a JSON POST
//! to its webhook and an email to each of its addresses.
//!
//! - `mod.rs`: what is owed and the delivery loop, with backoff;
//! - [`summary`]: what a summary says, from the pass's view;
//! - [`transport`]: the webhook and SMTP sends.
//!
//! What is owed comes from the views ([`ferry_projections::Notices`]), folded
//! from the log: a `PassFinished` owes one summary per target, settled by a
//! `NotificationSent` or a `NotificationFailed` with `retry: false`. So a
//! restart sends what was owed and never what was sent. Sending runs on its
//! own tasks, apart from the engine: a slow or dead target never holds up a
//! pass. A summary delivered just before a crash, whose `NotificationSent`
//! was not yet written, is sent again (at least once, never silently lost).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use ferry_events::{Event, ExpectedVersion, NotifyChannel};
use ferry_projections::OwedNotice;
use tokio::task::{JoinHandle, JoinSet};

use crate::app::App;
use crate::config::NotifyConfig;
use crate::shutdown::Shutdown;

mod summary;
mod transport;

pub use summary::{MailboxErrors, PassSummary};
pub use transport::webhook_shown;
use transport::{Failure, send};

/// The stream notification outcomes go on: apart from the batch's own, so
/// they never make a command's expected batch version stale.
pub fn stream(batch: &str) -> String {
    format!("notify/{batch}")
}

type Key = (String, u64, NotifyChannel, String);

/// A target as a log line may show it: a webhook set before its path was
/// kept out of the log still has it in its events, never in log lines.
fn logged(n: &OwedNotice) -> String {
    match n.channel {
        NotifyChannel::Webhook => webhook_shown(&n.target).unwrap_or_else(|_| "(webhook)".into()),
        NotifyChannel::Email => n.target.clone(),
    }
}

fn key(n: &OwedNotice) -> Key {
    (n.batch.clone(), n.pass_id, n.channel, n.target.clone())
}

/// Starts the notifier; it stops when `shutdown` turns true, abandoning
/// attempts in flight (they stay owed and are made after the restart).
pub fn spawn(app: Arc<App>, shutdown: Shutdown) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut head = app.views_head.subscribe();
        let mut stop = shutdown;
        let mut inflight: HashSet<Key> = HashSet::new();
        let mut tasks: JoinSet<Key> = JoinSet::new();
        loop {
            let owed: Vec<OwedNotice> = app
                .views
                .read()
                .unwrap()
                .notices
                .owed
                .iter()
                .filter(|n| !inflight.contains(&key(n)))
                .cloned()
                .collect();
            for n in owed {
                inflight.insert(key(&n));
                let app = app.clone();
                tasks.spawn(async move {
                    let k = key(&n);
                    deliver(&app, n).await;
                    k
                });
            }
            tokio::select! {
                _ = head.changed() => {}
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok(k) = done {
                        inflight.remove(&k);
                    }
                }
                () = stop.wait() => break,
            }
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    })
}

/// Attempts one summary until it is sent or given up, recording each attempt.
async fn deliver(app: &Arc<App>, n: OwedNotice) {
    let summary = PassSummary::of(&n);
    let mut attempt = n.attempts;
    loop {
        attempt += 1;
        let cfg = app.config.read().unwrap().notify.clone();
        let limit = Duration::from_secs(cfg.timeout_s.max(1));
        let result = match tokio::time::timeout(limit, send(app, &cfg, &n, &summary)).await {
            Ok(r) => r,
            Err(_) => Err(Failure::retry(format!(
                "no answer within {}s",
                limit.as_secs()
            ))),
        };
        let (event, wait) = match result {
            Ok(()) => {
                tracing::info!(batch = %n.batch, pass = n.pass_id, target = %logged(&n), attempt, "pass report sent");
                (
                    Event::NotificationSent {
                        batch: n.batch.clone(),
                        pass_id: n.pass_id,
                        channel: n.channel,
                        target: n.target.clone(),
                        attempt,
                    },
                    None,
                )
            }
            Err(f) => {
                let retry = f.retriable && attempt < cfg.attempts.max(1);
                tracing::warn!(batch = %n.batch, pass = n.pass_id, target = %logged(&n), attempt, retry, reason = %f.reason, "pass report not sent");
                (
                    Event::NotificationFailed {
                        batch: n.batch.clone(),
                        pass_id: n.pass_id,
                        channel: n.channel,
                        target: n.target.clone(),
                        attempt,
                        reason: f.reason,
                        retry,
                    },
                    retry.then(|| backoff(&cfg, attempt)),
                )
            }
        };
        if let Err(e) = app
            .append(
                &stream(&n.batch),
                ExpectedVersion::Any,
                ferry_events::Actor::Engine,
                vec![event],
            )
            .await
        {
            // Still owed in the views: the notifier tries again later.
            tracing::error!(error = %e, "notification outcome not recorded");
            tokio::time::sleep(Duration::from_secs(5)).await;
            return;
        }
        match wait {
            Some(d) => tokio::time::sleep(d).await,
            None => return,
        }
    }
}

/// The delay after failed attempt number `attempt` (1-based).
fn backoff(cfg: &NotifyConfig, attempt: u32) -> Duration {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(cfg.backoff_ms.max(1)))
        .with_max_delay(Duration::from_millis(
            cfg.max_backoff_ms.max(cfg.backoff_ms),
        ))
        .with_max_times(attempt as usize)
        .with_jitter()
        .build()
        .nth(attempt.saturating_sub(1) as usize)
        .unwrap_or(Duration::from_millis(cfg.backoff_ms))
}

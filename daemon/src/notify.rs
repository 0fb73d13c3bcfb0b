//! Pass reports: when a pass of a batch with targets ends, a JSON POST to
//! its webhook and an email to each of its addresses.
//!
//! What is owed comes from the views ([`ferry_projections::Notices`]), folded
//! from the log: a `PassFinished` owes one report per target, settled by a
//! `NotificationSent` or a `NotificationFailed` with `retry: false`. So a
//! restart sends what was owed and never what was sent. Sending runs on its
//! own tasks, apart from the engine: a slow or dead target never holds up a
//! pass. A report delivered just before a crash, whose `NotificationSent`
//! was not yet written, is sent again (at least once, never silently lost).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use ferry_events::{Event, EventStore, ExpectedVersion, NotifyChannel, Outcome};
use ferry_projections::OwedNotice;
use serde::Serialize;
use tokio::task::{JoinHandle, JoinSet};

use crate::app::App;
use crate::config::{NotifyConfig, SmtpTls};
use crate::shutdown::Shutdown;
use ferry_events::time::rfc3339;

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
        NotifyChannel::Webhook => {
            crate::api::notify::webhook_shown(&n.target).unwrap_or_else(|_| "(webhook)".into())
        }
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

/// Attempts one report until it is sent or given up, recording each attempt.
async fn deliver(app: &Arc<App>, n: OwedNotice) {
    let store = app.store.clone();
    let pass = n.clone();
    let facts = tokio::task::spawn_blocking(move || Report::from_log(store.as_ref(), &pass)).await;
    let mut report = match facts {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "pass report not built");
            return;
        }
    };
    {
        let views = app.views.read().unwrap();
        if let Some(b) = views.batches.get(&n.batch) {
            report.source = b.source.clone();
            report.destination = b.destination.clone();
        }
    }
    let mut attempt = n.attempts;
    loop {
        attempt += 1;
        let cfg = app.config.read().unwrap().notify.clone();
        let limit = Duration::from_secs(cfg.timeout_s.max(1));
        let result = match tokio::time::timeout(limit, send(app, &cfg, &n, &report)).await {
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

#[derive(Debug)]
struct Failure {
    reason: String,
    /// Whether another attempt could succeed (not a refused address).
    retriable: bool,
}

impl Failure {
    fn retry(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            retriable: true,
        }
    }
    fn fatal(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            retriable: false,
        }
    }
}

async fn send(
    app: &App,
    cfg: &NotifyConfig,
    n: &OwedNotice,
    report: &Report,
) -> Result<(), Failure> {
    match n.channel {
        NotifyChannel::Webhook => {
            let Some(secret) = &n.webhook else {
                return Err(Failure::fatal("no webhook URL recorded"));
            };
            let url = app
                .secrets
                .get(secret)
                .map_err(|e| Failure::fatal(format!("webhook URL: {e}")))?;
            post(cfg, &url, report).await
        }
        NotifyChannel::Email => email(cfg, &n.target, report).await,
    }
}

async fn post(cfg: &NotifyConfig, url: &str, report: &Report) -> Result<(), Failure> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(cfg.timeout_s.max(1)))
        .user_agent(concat!("mailferry/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Failure::fatal(format!("HTTP client: {e}")))?;
    let answer = client
        .post(url)
        .json(report)
        .send()
        .await
        // Without the URL: it may carry a token.
        .map_err(|e| Failure::retry(one_line(&e.without_url())))?;
    let status = answer.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(Failure::retry(format!("HTTP {status}")))
    }
}

async fn email(cfg: &NotifyConfig, to: &str, report: &Report) -> Result<(), Failure> {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let Some(host) = &cfg.smtp_host else {
        return Err(Failure::fatal(
            "no SMTP server configured ([notify] smtp_host)",
        ));
    };
    let message = Message::builder()
        .from(
            cfg.from
                .parse()
                .map_err(|e| Failure::fatal(format!("[notify] from {:?}: {e}", cfg.from)))?,
        )
        .to(to
            .parse()
            .map_err(|e| Failure::fatal(format!("address {to:?}: {e}")))?)
        .subject(report.subject())
        .header(ContentType::TEXT_PLAIN)
        .body(report.text())
        .map_err(|e| Failure::fatal(format!("message: {e}")))?;
    let builder = match cfg.tls {
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
            .map_err(|e| Failure::fatal(format!("SMTP TLS: {e}")))?,
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
            .map_err(|e| Failure::fatal(format!("SMTP TLS: {e}")))?,
    };
    let mut builder = builder
        .port(cfg.smtp_port)
        .timeout(Some(Duration::from_secs(cfg.timeout_s.max(1))));
    if let Some(user) = &cfg.user {
        let password = match &cfg.password_file {
            Some(f) => std::fs::read_to_string(f)
                .map_err(|e| Failure::fatal(format!("[notify] password_file: {e}")))?
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
            None => String::new(),
        };
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    match builder.build().send(message).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_permanent() => Err(Failure::fatal(format!("SMTP: {}", one_line(&e)))),
        Err(e) => Err(Failure::retry(format!("SMTP: {}", one_line(&e)))),
    }
}

/// An error and its causes on one line.
fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s.replace(['\n', '\r'], " ")
}

/// What a pass report says; the webhook's JSON body, and the email's facts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub batch: String,
    pub pass_id: u64,
    pub pass: String,
    pub outcome: String,
    pub started: String,
    pub finished: String,
    pub source: String,
    pub destination: String,
    pub mailboxes: u64,
    pub copied: u64,
    pub skipped: u64,
    pub failed: u64,
    pub bytes: u64,
    pub mailboxes_with_errors: Vec<MailboxErrors>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MailboxErrors {
    pub address: String,
    pub outcome: Option<String>,
    pub failed: u64,
    pub detail: String,
}

fn outcome_name(o: Outcome) -> String {
    format!("{o:?}")
}

impl Report {
    /// The pass's facts, from its events: those from its id (its request)
    /// up to its `PassFinished`.
    pub fn from_log(store: &impl EventStore, n: &OwedNotice) -> Report {
        use std::collections::BTreeMap;
        let mut r = Report {
            batch: n.batch.clone(),
            pass_id: n.pass_id,
            outcome: outcome_name(n.outcome),
            finished: rfc3339(n.finished_us),
            ..Report::default()
        };
        let mut boxes: BTreeMap<String, MailboxErrors> = BTreeMap::new();
        for env in store.read_all(n.pass_id) {
            let Ok(env) = env else { break };
            if env.seq > n.finished_seq {
                break;
            }
            match &env.event {
                Event::PassStarted { pass_id, pass, .. } if *pass_id == n.pass_id => {
                    if r.started.is_empty() {
                        r.started = rfc3339(env.time_us);
                    }
                    r.pass = pass.as_str().to_string();
                }
                Event::MailboxPassStarted {
                    mailbox, pass_id, ..
                } if *pass_id == n.pass_id => {
                    boxes
                        .entry(mailbox.clone())
                        .or_insert_with(|| MailboxErrors {
                            address: mailbox.clone(),
                            ..MailboxErrors::default()
                        });
                }
                Event::MailboxPassFinished {
                    mailbox,
                    pass_id,
                    outcome,
                    detail,
                } if *pass_id == n.pass_id => {
                    if let Some(m) = boxes.get_mut(mailbox) {
                        m.outcome = Some(outcome_name(*outcome));
                        m.detail = detail.clone();
                    }
                }
                Event::ItemCopied { mailbox, size, .. } if boxes.contains_key(mailbox) => {
                    r.copied += 1;
                    r.bytes += size;
                }
                Event::ItemSkipped { mailbox, .. } if boxes.contains_key(mailbox) => {
                    r.skipped += 1;
                }
                Event::ItemFailed { mailbox, .. } => {
                    if let Some(m) = boxes.get_mut(mailbox) {
                        r.failed += 1;
                        m.failed += 1;
                    }
                }
                _ => {}
            }
        }
        r.mailboxes = boxes.len() as u64;
        r.mailboxes_with_errors = boxes
            .into_values()
            .filter(|m| {
                m.failed > 0
                    || matches!(m.outcome.as_deref(), Some("Failed" | "SucceededWithErrors"))
            })
            .collect();
        r
    }

    pub fn subject(&self) -> String {
        format!(
            "[mailferry] batch {}: {} pass {}",
            self.batch, self.pass, self.outcome
        )
    }

    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut t = String::new();
        let _ = writeln!(t, "Batch:       {}", self.batch);
        let _ = writeln!(t, "Pass:        {} (id {})", self.pass, self.pass_id);
        let _ = writeln!(t, "Outcome:     {}", self.outcome);
        let _ = writeln!(t, "Started:     {}", self.started);
        let _ = writeln!(t, "Finished:    {}", self.finished);
        if !self.source.is_empty() {
            let _ = writeln!(t, "From:        {} to {}", self.source, self.destination);
        }
        let _ = writeln!(t, "Mailboxes:   {}", self.mailboxes);
        let _ = writeln!(
            t,
            "Copied:      {} items, {} bytes",
            self.copied, self.bytes
        );
        let _ = writeln!(t, "Skipped:     {}", self.skipped);
        let _ = writeln!(t, "Failed:      {}", self.failed);
        if !self.mailboxes_with_errors.is_empty() {
            let _ = writeln!(t, "\nMailboxes with errors:");
            for m in &self.mailboxes_with_errors {
                let _ = writeln!(
                    t,
                    "  {}: {} failed items, {} {}",
                    m.address,
                    m.failed,
                    m.outcome.as_deref().unwrap_or("unfinished"),
                    m.detail
                );
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use ferry_events::{
        Actor, Event, EventStore, ExpectedVersion, ItemKey, MemoryStore, NotifyChannel, Outcome,
        PassKind,
    };
    use ferry_projections::OwedNotice;

    use super::Report;

    fn key(uid: u32) -> ItemKey {
        ItemKey {
            folder: "INBOX".into(),
            uidvalidity: 1,
            uid,
        }
    }

    #[tokio::test]
    async fn the_report_counts_only_its_pass_and_names_mailboxes_with_errors() {
        let store = MemoryStore::new();
        let copied = |mailbox: &str, uid, size| Event::ItemCopied {
            mailbox: mailbox.into(),
            key: key(uid),
            size,
            digest: String::new(),
            dest_folder: "INBOX".into(),
            dest_uid: None,
        };
        let started = |mailbox: &str, batch: &str, pass_id| Event::MailboxPassStarted {
            mailbox: mailbox.into(),
            batch: batch.into(),
            pass_id,
            pass: PassKind::Full,
        };
        let events = vec![
            Event::PassRequested {
                batch: "b".into(),
                pass: PassKind::Full,
                older_than_days: None,
                not_before_us: None,
            },
            Event::PassStarted {
                batch: "b".into(),
                pass_id: 1,
                pass: PassKind::Full,
            },
            started("a@x", "b", 1),
            started("c@x", "b", 1),
            // Another batch's pass runs meanwhile.
            started("z@x", "other", 7),
            copied("a@x", 1, 100),
            copied("z@x", 1, 5_000),
            copied("c@x", 1, 10),
            Event::ItemSkipped {
                mailbox: "a@x".into(),
                key: key(2),
                size: 9,
                reason: "too large".into(),
            },
            Event::ItemFailed {
                mailbox: "c@x".into(),
                key: key(2),
                class: "permanent".into(),
                reason: "refused".into(),
            },
            Event::MailboxPassFinished {
                mailbox: "a@x".into(),
                pass_id: 1,
                outcome: Outcome::Succeeded,
                detail: String::new(),
            },
            Event::MailboxPassFinished {
                mailbox: "c@x".into(),
                pass_id: 1,
                outcome: Outcome::SucceededWithErrors,
                detail: "1 item failed".into(),
            },
            Event::PassFinished {
                batch: "b".into(),
                pass_id: 1,
                outcome: Outcome::SucceededWithErrors,
            },
            // After the pass: not counted.
            copied("a@x", 3, 1_000),
        ];
        let envs = store
            .append("x", ExpectedVersion::Any, Actor::Engine, events)
            .await
            .unwrap();
        let finished = &envs[12];
        let n = OwedNotice {
            batch: "b".into(),
            pass_id: 1,
            channel: NotifyChannel::Email,
            target: "ops@x".into(),
            webhook: None,
            outcome: Outcome::SucceededWithErrors,
            finished_seq: finished.seq,
            finished_us: finished.time_us,
            attempts: 0,
        };
        let r = Report::from_log(&store, &n);
        assert_eq!(r.pass, "full");
        assert_eq!(r.outcome, "SucceededWithErrors");
        assert_eq!(r.mailboxes, 2);
        assert_eq!((r.copied, r.bytes, r.skipped, r.failed), (2, 110, 1, 1));
        assert_eq!(r.mailboxes_with_errors.len(), 1);
        assert_eq!(r.mailboxes_with_errors[0].address, "c@x");
        assert_eq!(r.mailboxes_with_errors[0].failed, 1);
        assert_eq!(
            r.subject(),
            "[mailferry] batch b: full pass SucceededWithErrors"
        );
        assert!(
            r.text()
                .contains("c@x: 1 failed items, SucceededWithErrors 1 item failed")
        );
        assert!(!r.started.is_empty() && r.started <= r.finished);
    }
}

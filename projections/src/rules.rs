//! The batch rules, in one place: which command each state accepts, why
//! a batch cannot take a pass, what stands in the way of a cutover, and how
//! domains are written. Pure functions of the views, used by the daemon's
//! handlers, its scheduler and engine, and by ferryctl.

use std::collections::BTreeSet;

use ferry_events::{Outcome, PassKind};

pub use ferry_events::domain::{domain_name, domain_of, normal_domain};

use crate::batches::{BatchState, BatchView, PendingPass};
use crate::{CutoverStage, Projections};

/// Batch deletion is held this long after the domain's MX switch.
pub const MX_HOLD_US: i64 = 72 * 3600 * 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Start(PassKind),
    Stop,
    Complete,
    Delete {
        force: bool,
    },
    Schedule,
    AddUsers,
    /// Replace a mailbox's credentials or remove it.
    EditUsers,
    Cutover,
}

impl Command {
    fn verb(&self) -> String {
        match self {
            Command::Start(p) => format!("start a {} pass", p.as_str()),
            Command::Stop => "stop".into(),
            Command::Complete => "complete".into(),
            Command::Delete { .. } => "delete".into(),
            Command::Schedule => "schedule delta passes".into(),
            Command::AddUsers => "add users".into(),
            Command::EditUsers => "change or remove its users".into(),
            Command::Cutover => "cut users over".into(),
        }
    }
}

/// `Ok` when `cmd` fits the batch's state; otherwise why not, in a line.
pub fn check(views: &Projections, b: &BatchView, cmd: &Command, now_us: i64) -> Result<(), String> {
    use BatchState::*;
    let name = &b.name;
    let refuse = |why: &str| {
        Err(format!(
            "batch {name} is {}: cannot {}; {why}",
            b.state,
            cmd.verb()
        ))
    };
    let running = b.running_pass();
    match cmd {
        Command::Start(pass) => {
            match b.state {
                Completing | Completed | CompletedWithErrors | Removing => {
                    return refuse("a completed batch takes no more passes");
                }
                Stopping => return refuse("start it again once it is Stopped"),
                _ => {}
            }
            if let Some(p) = running {
                return refuse(&format!(
                    "a {} pass is running; wait for it (batch wait) or stop it",
                    p.pass.as_str()
                ));
            }
            if let Some(p) = b.pending.first() {
                return refuse(&format!(
                    "a {} pass is already waiting to start",
                    p.pass.as_str()
                ));
            }
            if b.mailboxes.is_empty() {
                return refuse("it has no mailboxes");
            }
            if *pass == PassKind::RetryErrors {
                // A mailbox that failed as a whole is resumed by the pass.
                let retriable = b.mailboxes.iter().any(|m| {
                    views.mailboxes.get(m).is_some_and(|m| {
                        m.state == crate::mailboxes::MailboxState::Failed
                            || (!m.errors.is_empty()
                                && m.last_pass.as_ref().is_some_and(|p| p.outcome.is_some()))
                    })
                });
                if !retriable {
                    return refuse("no mailbox has a finished pass with errors to retry");
                }
            }
            Ok(())
        }
        Command::Stop => match b.state {
            Stopping | Stopped => refuse("it is already stopping or stopped"),
            Completed | CompletedWithErrors | Removing => refuse("it is finished"),
            Created if b.pending.is_empty() => refuse("nothing runs or waits to run"),
            _ => Ok(()),
        },
        Command::Complete => match b.state {
            Created => refuse("run a full pass first"),
            Stopping => refuse("wait until it is Stopped"),
            Completing | Completed | CompletedWithErrors | Removing => {
                refuse("it is already completing or completed")
            }
            _ if b.completion_pending() => refuse("completion is already requested"),
            _ if b.mailboxes.is_empty() => refuse("it has no mailboxes"),
            _ => Ok(()),
        },
        Command::Delete { force } => {
            if b.state.is_running() || running.is_some() {
                return refuse("stop it and wait before deleting");
            }
            if let Some(why) = mx_hold(views, b, now_us)
                && !force
            {
                return refuse(&format!("{why}; --force deletes anyway (recorded)"));
            }
            Ok(())
        }
        Command::Schedule | Command::AddUsers => match b.state {
            Completing | Completed | CompletedWithErrors | Removing => {
                refuse("a completed batch takes no more work")
            }
            _ => Ok(()),
        },
        Command::EditUsers => {
            if let Some(p) = running {
                return refuse(&format!(
                    "a {} pass is running; wait for it (batch wait) or stop it",
                    p.pass.as_str()
                ));
            }
            match b.state {
                Stopping => refuse("wait until it is Stopped"),
                Removing => refuse("it is being removed"),
                _ => Ok(()),
            }
        }
        Command::Cutover => match b.state {
            Completing | Completed | CompletedWithErrors | Removing => {
                refuse("cut users over before completing the batch")
            }
            Stopping | Stopped => {
                refuse("start it again first; a cutover needs a final delta pass")
            }
            _ => Ok(()),
        },
    }
}

/// Why deleting `b` must wait: an MX switch of one of its mailboxes'
/// domains less than 72 hours ago.
pub fn mx_hold(views: &Projections, b: &BatchView, now_us: i64) -> Option<String> {
    let domains: BTreeSet<String> = b
        .mailboxes
        .iter()
        .filter_map(|a| views.mailboxes.get(a))
        .flat_map(|m| [&m.address, &m.spec.destination_address])
        .filter_map(|a| domain_of(a))
        .collect();
    domains.into_iter().find_map(|d| {
        let (to, at) = views.domains.get(&d)?.mx_switched.as_ref()?;
        let age = now_us - at;
        (age < MX_HOLD_US).then(|| {
            format!(
                "the MX of {d} moved to {to} {:.1} h ago; deletion waits 72 h after the switch ({:.1} h left)",
                age as f64 / 3.6e9,
                (MX_HOLD_US - age) as f64 / 3.6e9
            )
        })
    })
}

/// Why a batch cannot take a delta pass now, if it cannot.
pub fn busy_reason(b: &BatchView) -> Option<String> {
    if let Some(p) = b.running_pass() {
        return Some(format!("a {} pass is still running", p.pass.as_str()));
    }
    if let Some(p) = b.pending.first() {
        return Some(format!(
            "a {} pass is already waiting to start",
            p.pass.as_str()
        ));
    }
    match b.state {
        BatchState::Stopped
        | BatchState::Stopping
        | BatchState::Completing
        | BatchState::Completed
        | BatchState::CompletedWithErrors
        | BatchState::Removing => Some(format!("batch is {}", b.state)),
        _ if b.mailboxes.is_empty() => Some("batch has no mailboxes".into()),
        _ => None,
    }
}

/// The pass the engine should run for `b` now, if any: the interrupted one
/// (resumed, `true`), else the first pending pass that is due.
pub fn pass_to_run(b: &BatchView, now_us: i64) -> Option<(PendingPass, bool)> {
    if let Some(p) = b.running_pass() {
        let resumed = PendingPass {
            id: p.id,
            pass: p.pass,
            older_than_days: p.older_than_days,
            not_before_us: None,
            requested_us: p.started_us,
            purpose: p.purpose.clone(),
        };
        return Some((resumed, true));
    }
    let p = b.pending.first()?;
    (b.state.is_active() && p.not_before_us.is_none_or(|t| t <= now_us)).then(|| (p.clone(), false))
}

/// Why `address` may not be cut over: (refusal, whether `--force` overrides it).
pub fn cutover_refusals(views: &Projections, address: &str) -> Vec<(String, bool)> {
    let Some(m) = views.mailboxes.get(address) else {
        return vec![(format!("{address} is in no batch"), false)];
    };
    let mut out = Vec::new();
    match views.cutover_stage(address) {
        CutoverStage::Done => out.push((format!("{address} is already cut over"), false)),
        CutoverStage::Waiting(_) | CutoverStage::Routing { .. } => {
            out.push((format!("{address} has a cutover under way"), false))
        }
        CutoverStage::None => {}
    }
    match &m.last_pass {
        None => out.push((format!("{address} was never copied"), true)),
        Some(p) if p.outcome == Some(Outcome::Failed) => out.push((
            format!(
                "{address}: its last {} pass failed: {}",
                p.pass.as_str(),
                p.detail
            ),
            true,
        )),
        _ => {}
    }
    if !m.errors.is_empty() {
        out.push((
            format!("{address} has {} unresolved errors", m.errors.len()),
            true,
        ));
    }
    out
}

/// Why `b` should not be completed yet: one line per mailbox that is
/// neither cut over nor healthy (`batch complete --force` overrides them).
pub fn completion_refusals(views: &Projections, b: &BatchView) -> Vec<String> {
    b.mailboxes
        .iter()
        .filter_map(|a| views.mailboxes.get(a))
        .filter(|m| !m.is_healthy())
        .map(|m| {
            let why = match &m.last_pass {
                None => "was never copied".to_string(),
                Some(p) if p.outcome == Some(Outcome::Failed) => {
                    format!("its last {} pass failed: {}", p.pass.as_str(), p.detail)
                }
                _ if !m.errors.is_empty() => {
                    format!("has {} unresolved failed items", m.errors.len())
                }
                _ => format!("is {}", m.state),
            };
            format!("{} {why}", m.address)
        })
        .collect()
}

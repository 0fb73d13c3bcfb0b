//! `batch create`, `add-users`, `start`, `stop`, `delete`.

use std::sync::Arc;

use ferry_api::ApiError;
use ferry_api::wire::{BatchAddUsers, BatchCreate, BatchStart, Response};
use ferry_events::{
    Actor, BatchOptions, Envelope, Event, ExpectedVersion, MailboxSpec, PassKind, SecretRef, stream,
};
use ferry_projections::{BatchView, Projections};

use super::{
    check_name, conflict, done, internal, invalid, not_found, now_us, parse_time, store_error,
};
use crate::app::App;
use crate::cron::Cron;
use crate::csvimport::{self, MAX_ROWS};
use ferry_events::time::rfc3339;
use ferry_projections::rules::{self, Command};

/// The requests that import a CSV into a batch.
pub enum Import {
    Create(BatchCreate),
    AddUsers(BatchAddUsers),
}

/// `batch create` and `batch add-users`: both import a CSV into a batch.
pub async fn import(app: &Arc<App>, actor: Actor, req: Import) -> Result<Response, ApiError> {
    let (name, csv, create, expected_version, update) = match req {
        Import::Create(BatchCreate {
            name,
            source,
            destination,
            csv,
            max_concurrent,
            max_item_bytes,
            error_budget,
            folder_rules,
            include_folders,
            exclude_folders,
            propagate_deletions,
        }) => {
            let defaults = BatchOptions::default();
            let options = BatchOptions {
                max_concurrent: max_concurrent.unwrap_or(defaults.max_concurrent),
                max_item_bytes,
                error_budget: error_budget.unwrap_or(defaults.error_budget),
                folder_rules,
                include_folders,
                exclude_folders,
            };
            let create = (source, destination, options, propagate_deletions);
            (name, csv, Some(create), None, false)
        }
        Import::AddUsers(BatchAddUsers {
            name,
            csv,
            expected_version,
            update,
        }) => (name, csv, None, expected_version, update),
    };
    check_name("batch", &name)?;
    let rows = csvimport::parse(&csv).map_err(|e| invalid(format!("CSV {e}")))?;
    let _guard = app.commands.lock().await;

    let mut events = Vec::new();
    // Rows replacing a mailbox already in the batch, with the secrets they replace.
    let mut updated: Vec<String> = Vec::new();
    let mut replaced: Vec<SecretRef> = Vec::new();
    let expected = {
        let views = app.views.read().unwrap();
        let expected = match &create {
            Some((source, destination, options, propagate_deletions)) => {
                // Exchange's group, connector and rule names built from it
                // are case-insensitive, as are runbook files on Windows.
                if let Some(other) = views.batches.keys().find(|b| b.eq_ignore_ascii_case(&name)) {
                    return Err(conflict(format!("batch {other} already exists")));
                }
                for ep in [source, destination] {
                    if !views.endpoints.contains_key(ep) {
                        return Err(not_found("endpoint", ep));
                    }
                }
                if !(1..=100).contains(&options.max_concurrent) {
                    return Err(invalid("--max-concurrent must be between 1 and 100"));
                }
                if options.max_item_bytes == Some(0) {
                    return Err(invalid("--max-item-size must be above 0"));
                }
                // Bad rules are refused now, not at the first pass.
                ferry_connectors::mapping::FolderPlan::new(
                    &options.folder_rules,
                    &options.include_folders,
                    &options.exclude_folders,
                )
                .map_err(|e| invalid(e.to_string()))?;
                events.push(Event::BatchCreated {
                    name: name.clone(),
                    source: source.clone(),
                    destination: destination.clone(),
                    options: options.clone(),
                });
                if *propagate_deletions {
                    events.push(Event::DeletionsPropagated {
                        batch: name.clone(),
                        on: true,
                    });
                }
                // A deleted batch's name may be used again: its stream goes
                // on from where the deletion left it.
                ExpectedVersion::Exact(ferry_events::EventStore::stream_version(
                    app.store.as_ref(),
                    &stream::batch(&name),
                ))
            }
            None => {
                let b = views
                    .batches
                    .get(&name)
                    .ok_or_else(|| not_found("batch", &name))?;
                rules::check(&views, b, &Command::AddUsers, now_us()).map_err(conflict)?;
                if update {
                    updated = rows
                        .iter()
                        .filter(|r| b.mailboxes.contains(&r.address))
                        .map(|r| r.address.clone())
                        .collect();
                }
                if !updated.is_empty() {
                    rules::check(&views, b, &Command::EditUsers, now_us()).map_err(conflict)?;
                }
                let added = rows.len() - updated.len();
                if b.mailboxes.len() + added > MAX_ROWS {
                    return Err(invalid(format!(
                        "batch {name} would hold {} mailboxes; at most {MAX_ROWS}",
                        b.mailboxes.len() + added
                    )));
                }
                ExpectedVersion::Exact(expected_version.unwrap_or(b.version))
            }
        };
        for row in &rows {
            if updated.contains(&row.address) {
                let m = &views.mailboxes[&row.address];
                replaced.extend(
                    [&m.spec.source_secret, &m.spec.destination_secret]
                        .into_iter()
                        .flatten()
                        .cloned(),
                );
                continue;
            }
            if let Some(other) = views.active_batch_of(&row.address) {
                let hint = if other.name == name {
                    "; --update replaces its logins and passwords"
                } else {
                    ""
                };
                return Err(conflict(format!(
                    "CSV line {}: {} is already in batch {}{hint}",
                    row.line, row.address, other.name
                )));
            }
        }
        expected
    };

    let mut stored: Vec<SecretRef> = Vec::new();
    let mut keep = |secret: &Option<String>| -> Result<Option<SecretRef>, ApiError> {
        match secret {
            None => Ok(None),
            Some(s) => {
                let r = app.secrets.put(s).map_err(internal)?;
                stored.push(r.clone());
                Ok(Some(r))
            }
        }
    };
    for row in &rows {
        let source_secret = keep(&row.source_password)?;
        let destination_secret = keep(&row.destination_password)?;
        let mailbox = MailboxSpec {
            address: row.address.clone(),
            destination_address: row.destination_address.clone(),
            source_login: row.source_login.clone(),
            source_secret,
            destination_login: row.destination_login.clone(),
            destination_secret,
        };
        let batch = name.clone();
        events.push(if updated.contains(&row.address) {
            Event::MailboxUpdated { batch, mailbox }
        } else {
            Event::MailboxAdded { batch, mailbox }
        });
    }
    match app
        .append(&stream::batch(&name), expected, actor, events)
        .await
    {
        Ok(envs) => {
            super::forget_secrets(app, &replaced);
            let added = rows.len() - updated.len();
            let mut message = match create {
                Some(_) => format!("batch {name}: created with {added} mailboxes"),
                None => format!("batch {name}: added {added} mailboxes"),
            };
            if !updated.is_empty() {
                message.push_str(&format!(
                    ", replaced the logins and passwords of {}",
                    updated.len()
                ));
            }
            Ok(done(message, &envs))
        }
        Err(e) => {
            for r in &stored {
                app.secrets.remove(r);
            }
            Err(store_error(e))
        }
    }
}

pub async fn start(app: &Arc<App>, actor: Actor, req: BatchStart) -> Result<Response, ApiError> {
    let BatchStart {
        name,
        pass,
        older_than_days,
        at,
        expected_version,
    } = req;
    let not_before_us = at.as_deref().map(|t| parse_time("--at", t)).transpose()?;
    let older_than_days = match (pass, older_than_days) {
        (PassKind::Prestage, d) => Some(d.unwrap_or(ferry_events::DEFAULT_PRESTAGE_DAYS)),
        (_, Some(_)) => return Err(invalid("--older-than applies only to a prestage pass")),
        (_, None) => None,
    };
    let envs = command(
        app,
        actor,
        &name,
        Command::Start(pass),
        expected_version,
        |_, _| {
            Ok(vec![Event::PassRequested {
                batch: name.clone(),
                pass,
                older_than_days,
                not_before_us,
            }])
        },
    )
    .await?;
    let when = match not_before_us {
        Some(_) => " (scheduled)",
        None => "",
    };
    Ok(done(
        format!("batch {name}: {} pass requested{when}", pass.as_str()),
        &envs,
    ))
}

pub async fn stop(app: &Arc<App>, actor: Actor, name: &str) -> Result<Response, ApiError> {
    let envs = command(app, actor, name, Command::Stop, None, |_, _| {
        Ok(vec![Event::BatchStopped {
            batch: name.to_string(),
        }])
    })
    .await?;
    Ok(done(
        format!("batch {name}: stopping; items in flight finish first"),
        &envs,
    ))
}

pub async fn delete(
    app: &Arc<App>,
    actor: Actor,
    name: &str,
    force: bool,
) -> Result<Response, ApiError> {
    let mut force_noted = false;
    let mut owned = Vec::new();
    let envs = command(
        app,
        actor,
        name,
        Command::Delete { force },
        None,
        |views, b| {
            force_noted = force && rules::mx_hold(views, b, now_us()).is_some();
            owned = crate::secrets::of_batch(views, b);
            Ok(vec![Event::BatchDeleted {
                batch: name.to_string(),
                forced: force_noted,
            }])
        },
    )
    .await?;
    // Its passwords and webhook go with it, unless a report still owed
    // needs the webhook.
    super::forget_secrets(app, &owned);
    let how = if force_noted {
        " (forced within 72 h of the MX switch; recorded)"
    } else {
        ""
    };
    Ok(done(format!("batch {name} deleted{how}"), &envs))
}

/// `batch schedule NAME --delta CRON [--tz ZONE]`; `--delta off` removes it.
pub async fn schedule(
    app: &Arc<App>,
    actor: Actor,
    name: &str,
    delta: &str,
    tz: Option<&str>,
) -> Result<Response, ApiError> {
    let clear = matches!(delta.trim(), "" | "off" | "none");
    let tz = tz.unwrap_or("UTC");
    let next = if clear {
        None
    } else {
        let cron = Cron::parse(delta, tz).map_err(|e| invalid(e.to_string()))?;
        cron.next_after(now_us())
    };
    let (cron, tz) = if clear {
        (String::new(), String::new())
    } else {
        (delta.trim().to_string(), tz.to_string())
    };
    let envs = command(app, actor, name, Command::Schedule, None, |_, b| {
        if clear && b.schedule.is_none() {
            return Err(conflict(format!("batch {name} has no delta schedule")));
        }
        Ok(vec![Event::ScheduleSet {
            batch: name.to_string(),
            cron: cron.clone(),
            tz: tz.clone(),
        }])
    })
    .await?;
    let message = match next {
        None => format!("batch {name}: delta schedule removed"),
        Some(t) => format!(
            "batch {name}: delta passes on {cron:?} ({tz}); next at {}",
            rfc3339(t)
        ),
    };
    Ok(done(message, &envs))
}

/// `batch complete NAME [--at TIME] [--force]`: a final delta pass, then
/// Completed. Refused, naming them, while mailboxes are neither cut over
/// nor healthy, unless forced; the delta schedule goes with it.
pub async fn complete(
    app: &Arc<App>,
    actor: Actor,
    name: &str,
    at: Option<&str>,
    force: bool,
) -> Result<Response, ApiError> {
    let not_before_us = at.map(|t| parse_time("--at", t)).transpose()?;
    let mut overridden = Vec::new();
    let mut unscheduled = false;
    let envs = command(app, actor, name, Command::Complete, None, |views, b| {
        let refusals = rules::completion_refusals(views, b);
        if !refusals.is_empty() && !force {
            return Err(conflict(format!(
                "batch {name} cannot be completed: {}; cut them over or fix them first, or --force (recorded)",
                refusals.join("; ")
            )));
        }
        let mut events = Vec::new();
        if !refusals.is_empty() {
            overridden = refusals.clone();
            events.push(Event::CompletionForced {
                batch: name.to_string(),
                overridden: refusals,
            });
        }
        events.push(Event::CompletionRequested {
            batch: name.to_string(),
            not_before_us,
        });
        if b.schedule.is_some() {
            unscheduled = true;
            events.push(Event::ScheduleSet {
                batch: name.to_string(),
                cron: String::new(),
                tz: String::new(),
            });
        }
        Ok(events)
    })
    .await?;
    let when = match not_before_us {
        Some(t) => format!("at {}", rfc3339(t)),
        None => "now".into(),
    };
    let mut message =
        format!("batch {name}: completing {when}: a final delta pass, then Completed");
    if unscheduled {
        message.push_str("; its delta schedule is removed");
    }
    if !overridden.is_empty() {
        message.push_str(&format!(
            "; forced past (recorded): {}",
            overridden.join("; ")
        ));
    }
    Ok(done(message, &envs))
}

/// Under the command lock: checks `cmd` against the batch's state, builds
/// its event (which may refuse too), and appends it to the batch's stream
/// at the version checked (or `expected`, the version the caller saw).
async fn command(
    app: &Arc<App>,
    actor: Actor,
    name: &str,
    cmd: Command,
    expected: Option<u64>,
    mut events: impl FnMut(&Projections, &BatchView) -> Result<Vec<Event>, ApiError>,
) -> Result<Vec<Envelope>, ApiError> {
    let _guard = app.commands.lock().await;
    super::append_decided(app, &stream::batch(name), actor, expected, |views| {
        let b = views
            .batches
            .get(name)
            .ok_or_else(|| not_found("batch", name))?;
        rules::check(views, b, &cmd, now_us()).map_err(conflict)?;
        Ok((b.version, events(views, b)?))
    })
    .await
}

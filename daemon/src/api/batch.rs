//! `batch create`, `add-users`, `start`, `stop`, `delete`.

use std::sync::Arc;

use ferry_api::ApiError;
use ferry_api::wire::{BatchAddUsers, BatchCreate, BatchStart, Response};
use ferry_events::{
    Actor, BatchOptions, Envelope, Event, ExpectedVersion, MailboxSpec, PassKind, SecretRef, stream,
};
use ferry_projections::{BatchView, Projections};

use super::{check_name, conflict, done, invalid, not_found, now_us, parse_time, store_error};
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
    let (name, csv, create, expected_version) = match req {
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
            (name, csv, Some(create), None)
        }
        Import::AddUsers(BatchAddUsers {
            name,
            csv,
            expected_version,
        }) => (name, csv, None, expected_version),
    };
    check_name("batch", &name)?;
    let rows = csvimport::parse(&csv).map_err(|e| invalid(format!("CSV {e}")))?;
    let _guard = app.commands.lock().await;

    let mut events = Vec::new();
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
                ExpectedVersion::NoStream
            }
            None => {
                let b = views
                    .batches
                    .get(&name)
                    .ok_or_else(|| not_found("batch", &name))?;
                rules::check(&views, b, &Command::AddUsers, now_us()).map_err(conflict)?;
                if b.mailboxes.len() + rows.len() > MAX_ROWS {
                    return Err(invalid(format!(
                        "batch {name} would hold {} mailboxes; at most {MAX_ROWS}",
                        b.mailboxes.len() + rows.len()
                    )));
                }
                ExpectedVersion::Exact(expected_version.unwrap_or(b.version))
            }
        };
        for row in &rows {
            if let Some(other) = views.active_batch_of(&row.address) {
                return Err(conflict(format!(
                    "CSV line {}: {} is already in batch {}",
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
                let r = app
                    .secrets
                    .put(s)
                    .map_err(|e| ApiError::new(ferry_api::ErrorCode::Internal, e.to_string()))?;
                stored.push(r.clone());
                Ok(Some(r))
            }
        }
    };
    for row in &rows {
        let source_secret = keep(&row.source_password)?;
        let destination_secret = keep(&row.destination_password)?;
        events.push(Event::MailboxAdded {
            batch: name.clone(),
            mailbox: MailboxSpec {
                address: row.address.clone(),
                destination_address: row.destination_address.clone(),
                source_login: row.source_login.clone(),
                source_secret,
                destination_login: row.destination_login.clone(),
                destination_secret,
            },
        });
    }
    match app
        .append(&stream::batch(&name), expected, actor, events)
        .await
    {
        Ok(envs) => Ok(done(
            format!(
                "batch {name}: {} {} mailboxes",
                if create.is_some() {
                    "created with"
                } else {
                    "added"
                },
                rows.len()
            ),
            &envs,
        )),
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
            Ok(Event::PassRequested {
                batch: name.clone(),
                pass,
                older_than_days,
                not_before_us,
            })
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
        Ok(Event::BatchStopped {
            batch: name.to_string(),
        })
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
            Ok(Event::BatchDeleted {
                batch: name.to_string(),
                forced: force_noted,
            })
        },
    )
    .await?;
    // Its passwords and webhook go with it, unless a report still owed
    // needs the webhook.
    let keep = crate::secrets::referenced(&app.views.read().unwrap());
    for r in owned.iter().filter(|r| !keep.contains(&r.0)) {
        app.secrets.remove(r);
    }
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
        Ok(Event::ScheduleSet {
            batch: name.to_string(),
            cron: cron.clone(),
            tz: tz.clone(),
        })
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

/// `batch complete NAME [--at TIME]`: a final delta pass, then Completed.
pub async fn complete(
    app: &Arc<App>,
    actor: Actor,
    name: &str,
    at: Option<&str>,
) -> Result<Response, ApiError> {
    let not_before_us = at.map(|t| parse_time("--at", t)).transpose()?;
    let envs = command(app, actor, name, Command::Complete, None, |_, _| {
        Ok(Event::CompletionRequested {
            batch: name.to_string(),
            not_before_us,
        })
    })
    .await?;
    let when = match not_before_us {
        Some(t) => format!("at {}", rfc3339(t)),
        None => "now".into(),
    };
    Ok(done(
        format!("batch {name}: completing {when}: a final delta pass, then Completed"),
        &envs,
    ))
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
    event: impl FnOnce(&Projections, &BatchView) -> Result<Event, ApiError>,
) -> Result<Vec<Envelope>, ApiError> {
    let _guard = app.commands.lock().await;
    let (version, event) = {
        let views = app.views.read().unwrap();
        let b = views
            .batches
            .get(name)
            .ok_or_else(|| not_found("batch", name))?;
        rules::check(&views, b, &cmd, now_us()).map_err(conflict)?;
        (b.version, event(&views, b)?)
    };
    app.append(
        &stream::batch(name),
        ExpectedVersion::Exact(expected.unwrap_or(version)),
        actor,
        vec![event],
    )
    .await
    .map_err(store_error)
}

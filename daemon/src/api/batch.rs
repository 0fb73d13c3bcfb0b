//! `batch create`, `add-users`, `start`, `stop`, `delete`.

use std::sync::Arc;

use ferry_ctl::ApiError;
use ferry_ctl::wire::{Request, Response};
use ferry_events::{
    Actor, BatchOptions, Event, ExpectedVersion, MailboxSpec, PassKind, SecretRef, stream,
};
use ferry_projections::BatchState;

use super::{check_name, conflict, done, invalid, not_found, store_error};
use crate::app::App;
use crate::csvimport::{self, MAX_ROWS};

/// Pre-stage cut-off when `--older-than` is not given.
const DEFAULT_PRESTAGE_DAYS: u32 = 90;

/// `batch create` and `batch add-users`: both import a CSV into a batch.
pub async fn import(app: &Arc<App>, actor: Actor, req: Request) -> Result<Response, ApiError> {
    let (name, csv, create, expected_version) = match req {
        Request::BatchCreate {
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
        } => {
            let defaults = BatchOptions::default();
            let options = BatchOptions {
                max_concurrent: max_concurrent.unwrap_or(defaults.max_concurrent),
                max_item_bytes,
                error_budget: error_budget.unwrap_or(defaults.error_budget),
                folder_rules,
                include_folders,
                exclude_folders,
            };
            (name, csv, Some((source, destination, options)), None)
        }
        Request::BatchAddUsers {
            name,
            csv,
            expected_version,
        } => (name, csv, None, expected_version),
        _ => unreachable!("dispatched by op"),
    };
    check_name("batch", &name)?;
    let rows = csvimport::parse(&csv).map_err(|e| invalid(format!("CSV {e}")))?;
    let _guard = app.commands.lock().await;

    let mut events = Vec::new();
    let expected = {
        let views = app.views.read().unwrap();
        let expected = match &create {
            Some((source, destination, options)) => {
                if views.batches.contains_key(&name) {
                    return Err(conflict(format!("batch {name} already exists")));
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
                ExpectedVersion::NoStream
            }
            None => {
                let b = views
                    .batches
                    .get(&name)
                    .ok_or_else(|| not_found("batch", &name))?;
                if !b.state.is_active() {
                    return Err(conflict(format!(
                        "batch {name} is {}; users cannot be added",
                        b.state
                    )));
                }
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
                    .map_err(|e| ApiError::new(ferry_ctl::ErrorCode::Internal, e.to_string()))?;
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

pub async fn start(app: &Arc<App>, actor: Actor, req: Request) -> Result<Response, ApiError> {
    let Request::BatchStart {
        name,
        pass,
        older_than_days,
        at,
        expected_version,
    } = req
    else {
        unreachable!("dispatched by op")
    };
    let not_before_us = match at {
        Some(t) => Some(
            chrono::DateTime::parse_from_rfc3339(&t)
                .map_err(|e| invalid(format!("--at {t:?}: {e}")))?
                .timestamp_micros(),
        ),
        None => None,
    };
    let older_than_days = match (pass, older_than_days) {
        (PassKind::Prestage, d) => Some(d.unwrap_or(DEFAULT_PRESTAGE_DAYS)),
        (_, Some(_)) => return Err(invalid("--older-than applies only to a prestage pass")),
        (_, None) => None,
    };
    let _guard = app.commands.lock().await;
    let version = {
        let views = app.views.read().unwrap();
        let b = views
            .batches
            .get(&name)
            .ok_or_else(|| not_found("batch", &name))?;
        if !b.state.is_active() {
            return Err(conflict(format!("batch {name} is {}", b.state)));
        }
        if b.state == BatchState::Stopping {
            return Err(conflict(format!(
                "batch {name} is stopping; start it again once it is Stopped"
            )));
        }
        if let Some(p) = b.running_pass() {
            return Err(conflict(format!(
                "batch {name} is running a {} pass; wait for it (batch wait) or stop it",
                p.pass.as_str()
            )));
        }
        if let Some(p) = b.pending.first() {
            return Err(conflict(format!(
                "batch {name} already has a {} pass waiting to start",
                p.pass.as_str()
            )));
        }
        if b.mailboxes.is_empty() {
            return Err(conflict(format!("batch {name} has no mailboxes")));
        }
        if pass == PassKind::RetryErrors {
            let retriable = b.mailboxes.iter().any(|m| {
                views.mailboxes.get(m).is_some_and(|m| {
                    !m.errors.is_empty()
                        && m.last_pass.as_ref().is_some_and(|p| p.outcome.is_some())
                })
            });
            if !retriable {
                return Err(conflict(format!(
                    "batch {name}: no mailbox has a finished pass with errors to retry"
                )));
            }
        }
        b.version
    };
    let expected = ExpectedVersion::Exact(expected_version.unwrap_or(version));
    let envs = app
        .append(
            &stream::batch(&name),
            expected,
            actor,
            vec![Event::PassRequested {
                batch: name.clone(),
                pass,
                older_than_days,
                not_before_us,
            }],
        )
        .await
        .map_err(store_error)?;
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
    let _guard = app.commands.lock().await;
    let version = {
        let views = app.views.read().unwrap();
        let b = views
            .batches
            .get(name)
            .ok_or_else(|| not_found("batch", name))?;
        match b.state {
            BatchState::Stopped | BatchState::Stopping => {
                return Err(conflict(format!("batch {name} is already {}", b.state)));
            }
            s if !s.is_active() => return Err(conflict(format!("batch {name} is {s}"))),
            _ => {}
        }
        b.version
    };
    let envs = app
        .append(
            &stream::batch(name),
            ExpectedVersion::Exact(version),
            actor,
            vec![Event::BatchStopped {
                batch: name.to_string(),
            }],
        )
        .await
        .map_err(store_error)?;
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
    let _guard = app.commands.lock().await;
    let version = {
        let views = app.views.read().unwrap();
        let b = views
            .batches
            .get(name)
            .ok_or_else(|| not_found("batch", name))?;
        if b.state.is_running() || b.running_pass().is_some() {
            return Err(conflict(format!(
                "batch {name} is {}; stop it and wait before deleting",
                b.state
            )));
        }
        b.version
    };
    let envs = app
        .append(
            &stream::batch(name),
            ExpectedVersion::Exact(version),
            actor,
            vec![Event::BatchDeleted {
                batch: name.to_string(),
                forced: force,
            }],
        )
        .await
        .map_err(store_error)?;
    Ok(done(format!("batch {name} deleted"), &envs))
}

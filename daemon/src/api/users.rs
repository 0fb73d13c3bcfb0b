//! `mailbox set-credentials` and `batch remove-user`: editing a batch's
//! users in place, refused while a pass runs over them.

use std::sync::Arc;

use ferry_api::ApiError;
use ferry_api::wire::{MailboxSetCredentials, Response};
use ferry_events::{Actor, Event, SecretRef, stream};
use ferry_projections::rules::Command;
use ferry_projections::{CutoverStage, MailboxView, Projections};

use super::{conflict, done, forget_secrets, internal, invalid};
use crate::app::App;

/// The mailbox and the version of its batch's stream, once its batch
/// accepts an edit of its users.
fn editable(views: &Projections, address: &str) -> Result<(MailboxView, u64), ApiError> {
    let (m, b) = super::mailbox_for(views, address, &Command::EditUsers)?;
    Ok((m.clone(), b.version))
}

/// [`editable`], in batch `batch` still (a retry's views could say else).
fn editable_in(
    views: &Projections,
    address: &str,
    batch: &str,
) -> Result<(MailboxView, u64), ApiError> {
    let (m, version) = editable(views, address)?;
    if m.batch != batch {
        return Err(conflict(format!(
            "{address} is in batch {}, not {batch}",
            m.batch
        )));
    }
    Ok((m, version))
}

pub async fn set_credentials(
    app: &Arc<App>,
    actor: Actor,
    req: MailboxSetCredentials,
) -> Result<Response, ApiError> {
    let MailboxSetCredentials {
        address,
        source_login,
        source_password,
        destination_login,
        destination_password,
    } = req;
    let address = address.to_lowercase();
    let nothing = source_login.is_none()
        && source_password.is_none()
        && destination_login.is_none()
        && destination_password.is_none();
    if nothing {
        return Err(invalid(
            "give at least one of --source-login, --source-password-file, \
             --destination-login, --destination-password-file",
        ));
    }
    let _guard = app.commands.lock().await;
    let batch = editable(&app.views.read().unwrap(), &address)?.0.batch;
    let mut stored: Vec<SecretRef> = Vec::new();
    let mut keep = |secret: Option<String>| -> Result<Option<SecretRef>, ApiError> {
        let Some(secret) = secret else {
            return Ok(None);
        };
        let r = app.secrets.put(&secret).map_err(internal)?;
        stored.push(r.clone());
        Ok(Some(r))
    };
    let kept = (keep(source_password), keep(destination_password));
    let (source_secret, destination_secret) = match kept {
        (Ok(s), Ok(d)) => (s, d),
        (Err(e), _) | (_, Err(e)) => {
            forget_secrets(app, &stored);
            return Err(e);
        }
    };
    let changed: Vec<&str> = [
        (source_login.is_some(), "source login"),
        (source_secret.is_some(), "source password"),
        (destination_login.is_some(), "destination login"),
        (destination_secret.is_some(), "destination password"),
    ]
    .into_iter()
    .filter_map(|(given, what)| given.then_some(what))
    .collect();
    let mut replaced = Vec::new();
    let res = super::append_decided(app, &stream::batch(&batch), actor, None, |views| {
        let (m, version) = editable_in(views, &address, &batch)?;
        let mut spec = m.spec;
        replaced.clear();
        if let Some(l) = &source_login {
            spec.source_login = Some(l.clone());
        }
        if let Some(r) = &source_secret {
            replaced.extend(spec.source_secret.replace(r.clone()));
        }
        if let Some(l) = &destination_login {
            spec.destination_login = Some(l.clone());
        }
        if let Some(r) = &destination_secret {
            replaced.extend(spec.destination_secret.replace(r.clone()));
        }
        let event = Event::MailboxUpdated {
            batch: batch.clone(),
            mailbox: spec,
        };
        Ok((version, vec![event]))
    })
    .await;
    match res {
        Ok(envs) => {
            forget_secrets(app, &replaced);
            Ok(done(
                format!("mailbox {address}: {} replaced", changed.join(", ")),
                &envs,
            ))
        }
        Err(e) => {
            forget_secrets(app, &stored);
            Err(e)
        }
    }
}

/// `batch remove-user NAME ADDRESS`: the mailbox leaves the batch; what was
/// copied stays at the destination, and its events stay in the log.
pub async fn remove(
    app: &Arc<App>,
    actor: Actor,
    name: &str,
    address: &str,
) -> Result<Response, ApiError> {
    let address = address.to_lowercase();
    let _guard = app.commands.lock().await;
    let mut spec = None;
    let envs = super::append_decided(app, &stream::batch(name), actor, None, |views| {
        let (m, version) = editable_in(views, &address, name)?;
        if matches!(
            views.cutover_stage(&address),
            CutoverStage::Waiting(_) | CutoverStage::Routing { .. }
        ) {
            return Err(conflict(format!(
                "{address} has a cutover under way; wait for it to finish"
            )));
        }
        spec = Some(m.spec);
        let event = Event::MailboxRemoved {
            batch: name.to_string(),
            address: address.clone(),
        };
        Ok((version, vec![event]))
    })
    .await?;
    let m = spec.expect("decided before the append");
    let owned: Vec<SecretRef> = [m.source_secret, m.destination_secret]
        .into_iter()
        .flatten()
        .collect();
    forget_secrets(app, &owned);
    Ok(done(
        format!("batch {name}: {address} removed (what was copied stays at the destination)"),
        &envs,
    ))
}

//! `mailbox set-credentials` and `batch remove-user`: editing a batch's
//! users in place, refused while a pass runs over them.

use std::sync::Arc;

use ferry_api::ApiError;
use ferry_api::wire::{MailboxSetCredentials, Response};
use ferry_events::{Actor, Event, ExpectedVersion, SecretRef, stream};
use ferry_projections::rules::{self, Command};
use ferry_projections::{CutoverStage, MailboxView};

use super::{conflict, done, forget_secrets, internal, invalid, not_found, now_us, store_error};
use crate::app::App;

/// The mailbox and the version of its batch's stream, once its batch
/// accepts an edit of its users.
fn editable(app: &App, address: &str) -> Result<(MailboxView, u64), ApiError> {
    let views = app.views.read().unwrap();
    let m = views
        .mailboxes
        .get(address)
        .ok_or_else(|| not_found("mailbox", address))?;
    let b = views
        .batches
        .get(&m.batch)
        .ok_or_else(|| not_found("batch", &m.batch))?;
    rules::check(&views, b, &Command::EditUsers, now_us()).map_err(conflict)?;
    Ok((m.clone(), b.version))
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
    let (m, version) = editable(app, &address)?;
    let mut stored: Vec<SecretRef> = Vec::new();
    let mut keep = |secret: String| -> Result<SecretRef, ApiError> {
        let r = app.secrets.put(&secret).map_err(internal)?;
        stored.push(r.clone());
        Ok(r)
    };
    let mut spec = m.spec.clone();
    let mut replaced = Vec::new();
    let mut changed = Vec::new();
    if let Some(l) = source_login {
        spec.source_login = Some(l);
        changed.push("source login");
    }
    if let Some(p) = source_password {
        replaced.extend(spec.source_secret.replace(keep(p)?));
        changed.push("source password");
    }
    if let Some(l) = destination_login {
        spec.destination_login = Some(l);
        changed.push("destination login");
    }
    if let Some(p) = destination_password {
        replaced.extend(spec.destination_secret.replace(keep(p)?));
        changed.push("destination password");
    }
    let res = app
        .append(
            &stream::batch(&m.batch),
            ExpectedVersion::Exact(version),
            actor,
            vec![Event::MailboxUpdated {
                batch: m.batch.clone(),
                mailbox: spec,
            }],
        )
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
            for r in &stored {
                app.secrets.remove(r);
            }
            Err(store_error(e))
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
    let (m, version) = editable(app, &address)?;
    if m.batch != name {
        return Err(conflict(format!(
            "{address} is in batch {}, not {name}",
            m.batch
        )));
    }
    let stage = app.views.read().unwrap().cutover_stage(&address);
    if matches!(
        stage,
        CutoverStage::Waiting(_) | CutoverStage::Routing { .. }
    ) {
        return Err(conflict(format!(
            "{address} has a cutover under way; wait for it to finish"
        )));
    }
    let envs = app
        .append(
            &stream::batch(name),
            ExpectedVersion::Exact(version),
            actor,
            vec![Event::MailboxRemoved {
                batch: name.to_string(),
                address: address.clone(),
            }],
        )
        .await
        .map_err(store_error)?;
    let owned: Vec<SecretRef> = [m.spec.source_secret, m.spec.destination_secret]
        .into_iter()
        .flatten()
        .collect();
    forget_secrets(app, &owned);
    Ok(done(
        format!("batch {name}: {address} removed (what was copied stays at the destination)"),
        &envs,
    ))
}

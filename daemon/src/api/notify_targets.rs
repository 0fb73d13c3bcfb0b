//! `batch notify`: where a batch's pass summaries go.

use std::sync::Arc;

use ferry_api::ApiError;
use ferry_api::wire::{BatchNotify, Response};
use ferry_events::{Actor, Event, ExpectedVersion, stream};

use super::{done, internal, invalid, not_found, store_error};
use crate::app::App;
use crate::notify::webhook_shown;

/// Most addresses one batch reports to.
const MAX_EMAILS: usize = 50;

pub async fn set(app: &Arc<App>, actor: Actor, req: BatchNotify) -> Result<Response, ApiError> {
    let BatchNotify {
        name,
        emails,
        webhook,
        clear,
    } = req;
    if !clear && emails.is_empty() && webhook.is_none() {
        return Err(invalid(
            "give --email ADDR and/or --webhook URL, or --clear",
        ));
    }
    let mut checked: Vec<String> = Vec::new();
    for e in &emails {
        let a: lettre::Address = e
            .trim()
            .parse()
            .map_err(|err| invalid(format!("--email {e:?} is not a mail address: {err}")))?;
        let a = a.to_string();
        if !checked.contains(&a) {
            checked.push(a);
        }
    }
    if checked.len() > MAX_EMAILS {
        return Err(invalid(format!("at most {MAX_EMAILS} --email addresses")));
    }
    if !checked.is_empty() && app.config.read().unwrap().notify.smtp_host.is_none() {
        return Err(invalid(
            "ferryd has no SMTP server to send email with: set smtp_host in the [notify] section of its configuration",
        ));
    }
    let shown = match &webhook {
        Some(url) => Some(webhook_shown(url).map_err(invalid)?),
        None => None,
    };

    let _guard = app.commands.lock().await;
    let (version, mut targets) = {
        let views = app.views.read().unwrap();
        let b = views
            .batches
            .get(&name)
            .ok_or_else(|| not_found("batch", &name))?;
        (b.version, b.notify.clone())
    };
    if clear {
        targets = Default::default();
    }
    if !emails.is_empty() {
        targets.emails = checked;
    }
    let mut stored = None;
    if let (Some(url), Some(shown)) = (&webhook, shown) {
        let r = app.secrets.put(url).map_err(internal)?;
        stored = Some(r.clone());
        targets.webhook = Some(r);
        targets.webhook_shown = Some(shown);
    }
    let envs = match app
        .append(
            &stream::batch(&name),
            ExpectedVersion::Exact(version),
            actor,
            vec![Event::NotifySet {
                batch: name.clone(),
                emails: targets.emails.clone(),
                webhook: targets.webhook.clone(),
                webhook_shown: targets.webhook_shown.clone(),
            }],
        )
        .await
    {
        Ok(envs) => envs,
        Err(e) => {
            if let Some(r) = &stored {
                app.secrets.remove(r);
            }
            return Err(store_error(e));
        }
    };
    let mut to = targets.emails.clone();
    to.extend(targets.webhook_shown.clone());
    let message = if to.is_empty() {
        format!("batch {name}: no pass reports")
    } else {
        format!("batch {name}: pass reports go to {}", to.join(", "))
    };
    Ok(done(message, &envs))
}

//! `endpoint add`, `update`, `remove` and `verify`.

use std::sync::Arc;

use ferry_api::wire::{EndpointAdd, EndpointUpdate, Response};
use ferry_api::{ApiError, ErrorCode};
use ferry_connectors::ews;
use ferry_events::{
    Actor, EndpointKind, EndpointSpec, Event, EwsAuth, EwsSettings, ExpectedVersion, stream,
};

use super::{check_name, conflict, done, internal, invalid, not_found, store_error};
use crate::app::App;

/// What a spec must hold, added or updated; `has_password` says whether
/// an admin password comes with it, `ews` whether EWS settings do.
fn check_fields(spec: &EndpointSpec, has_password: bool, ews: bool) -> Result<(), ApiError> {
    let host = &spec.host;
    if host.trim().is_empty() {
        return Err(invalid("--host is empty"));
    }
    if spec.kind == EndpointKind::Ews {
        let lower = host.to_ascii_lowercase();
        if !(lower.starts_with("https://") || lower.starts_with("http://")) {
            return Err(invalid(format!(
                "an EWS endpoint's --host is its URL (https://mail.example.com/EWS/Exchange.asmx), not {host:?}"
            )));
        }
        if spec.oauth.is_some() {
            return Err(invalid(
                "an EWS endpoint logs in with Basic or NTLM, not OAuth",
            ));
        }
    } else if ews {
        return Err(invalid("--auth and --ews-version are for --kind ews"));
    }
    if spec.kind == EndpointKind::Imap && spec.port == 0 {
        return Err(invalid("--port 0 is not a port"));
    }
    if spec.kind == EndpointKind::Maildir && !std::path::Path::new(host).is_absolute() {
        return Err(invalid(format!(
            "a Maildir endpoint's --host is its root folder as an absolute path, not {host:?}"
        )));
    }
    if spec.admin_user.is_some() != has_password {
        return Err(invalid("--admin-user and --password-file go together"));
    }
    if spec.max_connections == 0 {
        return Err(invalid("--max-connections must be at least 1"));
    }
    Ok(())
}

/// An EWS schema version must be one the client speaks.
fn check_version(ews: Option<&EwsSettings>) -> Result<(), ApiError> {
    match ews.and_then(|e| e.version.as_deref()) {
        Some(v) if ews::ApiVersion::parse(v).is_none() => Err(invalid(format!(
            "--ews-version {v:?} is not one of {}",
            ews::ApiVersion::ALL
                .iter()
                .map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        _ => Ok(()),
    }
}

/// Stores the admin password (if any) into `spec`, checks the spec against
/// the config and appends `event(spec)`; a refused or failed append leaves
/// no new secret behind.
async fn record(
    app: &Arc<App>,
    actor: Actor,
    name: &str,
    mut spec: EndpointSpec,
    password: Option<String>,
    expected: ExpectedVersion,
    events: impl FnOnce(EndpointSpec) -> Vec<Event>,
) -> Result<Vec<ferry_events::Envelope>, ApiError> {
    let stored = match &password {
        Some(p) => Some(app.secrets.put(p).map_err(internal)?),
        None => None,
    };
    if stored.is_some() {
        spec.admin_secret = stored.clone();
    }
    let allowed = app.config.read().unwrap().endpoints.check_spec(&spec);
    let res = match allowed {
        Err(why) => Err(invalid(why)),
        Ok(()) => app
            .append(&stream::endpoint(name), expected, actor, events(spec))
            .await
            .map_err(store_error),
    };
    if res.is_err()
        && let Some(s) = &stored
    {
        app.secrets.remove(s);
    }
    res
}

pub async fn add(app: &Arc<App>, actor: Actor, req: EndpointAdd) -> Result<Response, ApiError> {
    let EndpointAdd {
        name,
        kind,
        host,
        port,
        tls,
        ca_file,
        admin_user,
        password,
        max_connections,
        oauth,
        ews,
    } = req;
    check_name("endpoint", &name)?;
    let ews = match kind {
        EndpointKind::Ews => Some(ews.unwrap_or(EwsSettings {
            auth: EwsAuth::Ntlm,
            version: None,
        })),
        _ => ews,
    };
    check_version(ews.as_ref())?;
    let spec = EndpointSpec {
        kind,
        host,
        port,
        tls,
        ca_file,
        admin_user,
        admin_secret: None,
        // EWSMaxConcurrency is 10 on Exchange 2010, 27 from 2013.
        max_connections: max_connections.unwrap_or(if kind == EndpointKind::Ews { 10 } else { 20 }),
        oauth,
    };
    check_fields(&spec, password.is_some(), ews.is_some())?;
    let _guard = app.commands.lock().await;
    if app.views.read().unwrap().endpoints.contains_key(&name) {
        return Err(conflict(format!("endpoint {name} already exists")));
    }
    // A removed endpoint's stream goes on: its name may be registered again.
    let expected = match app.store.stream_version(&stream::endpoint(&name)) {
        0 => ExpectedVersion::NoStream,
        v => ExpectedVersion::Exact(v),
    };
    let envs = record(app, actor, &name, spec, password, expected, |spec| {
        let mut events = vec![Event::EndpointRegistered {
            name: name.clone(),
            spec,
        }];
        events.extend(ews.map(|ews| Event::EwsEndpointSet {
            name: name.clone(),
            ews,
        }));
        events
    })
    .await?;
    Ok(done(format!("endpoint {name} registered"), &envs))
}

/// The batches naming `name` as source or destination.
fn users_of(views: &ferry_projections::Projections, name: &str) -> Vec<String> {
    views
        .batches
        .values()
        .filter(|b| b.source == name || b.destination == name)
        .map(|b| b.name.clone())
        .collect()
}

/// `endpoint update NAME [...]`: each option given replaces the current
/// one; refused while a pass runs over the endpoint.
pub async fn update(
    app: &Arc<App>,
    actor: Actor,
    req: EndpointUpdate,
) -> Result<Response, ApiError> {
    let EndpointUpdate {
        name,
        host,
        port,
        tls,
        ca_file,
        admin_user,
        password,
        max_connections,
        oauth,
        ews,
    } = req;
    check_version(ews.as_ref())?;
    let _guard = app.commands.lock().await;
    let old = {
        let views = app.views.read().unwrap();
        let ep = views
            .endpoints
            .get(&name)
            .ok_or_else(|| not_found("endpoint", &name))?;
        let running: Vec<String> = users_of(&views, &name)
            .into_iter()
            .filter(|b| views.batches[b].running_pass().is_some())
            .collect();
        if !running.is_empty() {
            return Err(conflict(format!(
                "endpoint {name}: a pass of batch {} is running over it; wait for it (batch wait) or stop it",
                running.join(", ")
            )));
        }
        ep.spec.clone()
    };
    let mut spec = old.clone();
    spec.host = host.unwrap_or(spec.host);
    spec.port = port.unwrap_or(spec.port);
    spec.tls = tls.unwrap_or(spec.tls);
    spec.ca_file = ca_file.or(spec.ca_file);
    spec.admin_user = admin_user.or(spec.admin_user);
    spec.max_connections = max_connections.unwrap_or(spec.max_connections);
    spec.oauth = oauth.or(spec.oauth);
    check_fields(
        &spec,
        password.is_some() || spec.admin_secret.is_some(),
        ews.is_some(),
    )?;
    let replaced: Vec<ferry_events::SecretRef> = match &password {
        Some(_) => old.admin_secret.iter().cloned().collect(),
        None => Vec::new(),
    };
    let version = app.store.stream_version(&stream::endpoint(&name));
    let envs = record(
        app,
        actor,
        &name,
        spec,
        password,
        ExpectedVersion::Exact(version),
        |spec| {
            let mut events = vec![Event::EndpointUpdated {
                name: name.clone(),
                spec,
            }];
            events.extend(ews.map(|ews| Event::EwsEndpointSet {
                name: name.clone(),
                ews,
            }));
            events
        },
    )
    .await?;
    super::forget_secrets(app, &replaced);
    Ok(done(format!("endpoint {name} updated"), &envs))
}

/// `endpoint remove NAME`: refused while any batch names it.
pub async fn remove(app: &Arc<App>, actor: Actor, name: &str) -> Result<Response, ApiError> {
    let _guard = app.commands.lock().await;
    let secret = {
        let views = app.views.read().unwrap();
        let ep = views
            .endpoints
            .get(name)
            .ok_or_else(|| not_found("endpoint", name))?;
        let users = users_of(&views, name);
        if !users.is_empty() {
            return Err(conflict(format!(
                "endpoint {name} is used by batch {}; delete those batches first",
                users.join(", ")
            )));
        }
        ep.spec.admin_secret.clone()
    };
    let version = app.store.stream_version(&stream::endpoint(name));
    let envs = app
        .append(
            &stream::endpoint(name),
            ExpectedVersion::Exact(version),
            actor,
            vec![Event::EndpointRemoved {
                name: name.to_string(),
            }],
        )
        .await
        .map_err(store_error)?;
    super::forget_secrets(app, &secret.into_iter().collect::<Vec<_>>());
    Ok(done(format!("endpoint {name} removed"), &envs))
}

pub async fn verify(
    app: &Arc<App>,
    actor: Actor,
    name: &str,
    as_user: Option<&str>,
) -> Result<Response, ApiError> {
    let spec = app
        .views
        .read()
        .unwrap()
        .endpoints
        .get(name)
        .map(|e| e.spec.clone())
        .ok_or_else(|| not_found("endpoint", name))?;
    let (ok, capabilities, detail) =
        match crate::engine::verify_endpoint(app, name, &spec, as_user).await {
            Ok(caps) => (true, caps, String::new()),
            // A missing feature says nothing about the endpoint: record nothing.
            Err(crate::engine::EngineError::Unsupported(what)) => {
                return Err(ApiError::new(
                    ErrorCode::NotImplemented,
                    format!("{what}; nothing was recorded"),
                ));
            }
            Err(e) => (false, Vec::new(), e.to_string()),
        };
    let envs = app
        .append(
            &stream::endpoint(name),
            ExpectedVersion::Any,
            actor,
            vec![Event::EndpointVerified {
                name: name.to_string(),
                ok,
                capabilities: capabilities.clone(),
                detail: detail.clone(),
            }],
        )
        .await
        .map_err(store_error)?;
    if ok {
        Ok(done(
            format!("endpoint {name} answers: {}", capabilities.join(" ")),
            &envs,
        ))
    } else {
        Err(ApiError::new(
            ErrorCode::Invalid,
            format!("endpoint {name} failed verification: {detail}"),
        ))
    }
}

//! `endpoint add` and `endpoint verify`.

use std::sync::Arc;

use ferry_api::wire::{EndpointAdd, Response};
use ferry_api::{ApiError, ErrorCode};
use ferry_events::{Actor, EndpointKind, EndpointSpec, Event, ExpectedVersion, stream};

use super::{check_name, conflict, done, invalid, not_found, store_error};
use crate::app::App;

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
    } = req;
    check_name("endpoint", &name)?;
    if host.trim().is_empty() {
        return Err(invalid("--host is empty"));
    }
    if kind == EndpointKind::Imap && port == 0 {
        return Err(invalid("--port 0 is not a port"));
    }
    if kind == EndpointKind::Maildir && !std::path::Path::new(&host).is_absolute() {
        return Err(invalid(format!(
            "a Maildir endpoint's --host is its root folder as an absolute path, not {host:?}"
        )));
    }
    if admin_user.is_some() != password.is_some() {
        return Err(invalid("--admin-user and --password-file go together"));
    }
    let max_connections = max_connections.unwrap_or(20);
    if max_connections == 0 {
        return Err(invalid("--max-connections must be at least 1"));
    }
    let _guard = app.commands.lock().await;
    if app.views.read().unwrap().endpoints.contains_key(&name) {
        return Err(conflict(format!("endpoint {name} already exists")));
    }
    let admin_secret = match &password {
        Some(p) => Some(
            app.secrets
                .put(p)
                .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?,
        ),
        None => None,
    };
    let spec = EndpointSpec {
        kind,
        host,
        port,
        tls,
        ca_file,
        admin_user,
        admin_secret: admin_secret.clone(),
        max_connections,
        oauth,
    };
    let allowed = app.config.read().unwrap().endpoints.check_spec(&spec);
    if let Err(why) = allowed {
        if let Some(s) = &admin_secret {
            app.secrets.remove(s);
        }
        return Err(invalid(why));
    }
    let res = app
        .append(
            &stream::endpoint(&name),
            ExpectedVersion::NoStream,
            actor,
            vec![Event::EndpointRegistered {
                name: name.clone(),
                spec,
            }],
        )
        .await;
    match res {
        Ok(envs) => Ok(done(format!("endpoint {name} registered"), &envs)),
        Err(e) => {
            if let Some(s) = &admin_secret {
                app.secrets.remove(s);
            }
            Err(store_error(e))
        }
    }
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
    let (ok, capabilities, detail) = match crate::engine::verify_endpoint(app, &spec, as_user).await
    {
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

//! `endpoint add`, `update`, `remove` and `verify`.

use std::sync::Arc;

use ferry_api::wire::{EndpointAdd, EndpointUpdate, GraphSignInChange, GraphSignInInput, Response};
use ferry_api::{ApiError, ErrorCode};
use ferry_connectors::ews;
use ferry_events::{
    Actor, EndpointKind, EndpointSpec, Event, EwsAuth, EwsSettings, ExpectedVersion,
    GraphCredential, GraphSignIn, SecretRef, stream,
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

/// The endpoint's stream version, with every event up to it folded into
/// the views the command then decides on: another worker's edit that the
/// views had not seen yet is built upon, not overwritten; one made after
/// this is a conflict at the append.
fn seen_version(app: &App, name: &str) -> u64 {
    let version = app.store.stream_version(&stream::endpoint(name));
    app.catch_up();
    version
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
        graph,
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
    let graph = graph.map(graph_sign_in).transpose()?;
    let host = match (&graph, kind) {
        // Where a graph endpoint is, as outages name it: Graph's host.
        (Some(g), EndpointKind::Graph) if host.trim().is_empty() => {
            graph_host(&g.sign_in.graph_url)
        }
        _ => host,
    };
    if kind == EndpointKind::Graph && graph.is_none() {
        return Err(invalid(
            "a graph endpoint needs --tenant, --client-id and --client-secret-file or --certificate-file with --key-file",
        ));
    }
    if graph.is_some() && matches!(kind, EndpointKind::Maildir | EndpointKind::Ews) {
        return Err(invalid(
            "only graph and IMAP endpoints take an application sign-in",
        ));
    }
    let (port, tls) = match kind {
        EndpointKind::Graph => (443, ferry_events::TlsMode::Tls),
        _ => (port, tls),
    };
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
    let version = seen_version(app, &name);
    if app.views.read().unwrap().endpoints.contains_key(&name) {
        return Err(conflict(format!("endpoint {name} already exists")));
    }
    // A removed endpoint's stream goes on: its name may be registered again.
    let expected = match version {
        0 => ExpectedVersion::NoStream,
        v => ExpectedVersion::Exact(v),
    };
    let stored = match graph {
        Some(g) => Some(store_sign_in(app, g)?),
        None => None,
    };
    let res = record(app, actor, &name, spec, password, expected, |spec| {
        let mut events = vec![Event::EndpointRegistered {
            name: name.clone(),
            spec,
        }];
        events.extend(ews.map(|ews| Event::EwsEndpointSet {
            name: name.clone(),
            ews,
        }));
        // In the same append: the endpoint is never seen without its sign-in.
        events.extend(stored.clone().map(|sign_in| Event::GraphEndpointSet {
            name: name.clone(),
            sign_in: Some(sign_in),
        }));
        events
    })
    .await;
    let envs = match res {
        Ok(envs) => envs,
        Err(e) => {
            if let Some(g) = &stored {
                super::forget_secrets(app, &g.credential.secrets());
            }
            return Err(e);
        }
    };
    Ok(done(format!("endpoint {name} registered"), &envs))
}

/// An application sign-in checked as given: a client secret, or a
/// certificate with its private key, never both.
struct GivenSignIn {
    sign_in: GraphSignIn,
    secret: String,
}

fn graph_sign_in(g: GraphSignInInput) -> Result<GivenSignIn, ApiError> {
    let GraphSignInInput {
        tenant,
        client_id,
        client_secret,
        certificate_pem,
        private_key_pem,
        authority,
        graph_url,
    } = g;
    let (credential, secret) = given_credential(client_secret, certificate_pem, private_key_pem)?;
    Ok(GivenSignIn {
        sign_in: sign_in_of(tenant, client_id, credential, authority, graph_url)?,
        secret,
    })
}

/// The sign-in's application and hosts, checked; hosts default to the
/// public cloud's.
fn sign_in_of(
    tenant: String,
    client_id: String,
    credential: GraphCredential,
    authority: Option<String>,
    graph_url: Option<String>,
) -> Result<GraphSignIn, ApiError> {
    if tenant.trim().is_empty() || client_id.trim().is_empty() {
        return Err(invalid("--tenant and --client-id must not be empty"));
    }
    if tenant.contains(['/', '?', '#', ' ']) {
        return Err(invalid(format!(
            "--tenant {tenant:?} is not a tenant name or id"
        )));
    }
    let authority = authority.unwrap_or_else(|| ferry_graph::auth::DEFAULT_AUTHORITY.into());
    let graph_url = graph_url.unwrap_or_else(|| ferry_graph::client::DEFAULT_GRAPH_URL.into());
    for (what, url) in [("--authority", &authority), ("--graph-url", &graph_url)] {
        if !(url.starts_with("https://") || url.starts_with("http://127.0.0.1")) {
            return Err(invalid(format!("{what} {url:?} is not an https URL")));
        }
    }
    Ok(GraphSignIn {
        tenant,
        client_id,
        credential,
        authority: authority.trim_end_matches('/').to_string(),
        graph_url: graph_url.trim_end_matches('/').to_string(),
    })
}

/// A client secret, or a certificate with its private key, never both;
/// the credential holds a placeholder for the secret's reference.
fn given_credential(
    client_secret: Option<String>,
    certificate_pem: Option<String>,
    private_key_pem: Option<String>,
) -> Result<(GraphCredential, String), ApiError> {
    let placeholder = SecretRef(String::new());
    match (client_secret, certificate_pem, private_key_pem) {
        (Some(s), None, None) if !s.trim().is_empty() => {
            Ok((GraphCredential::Secret(placeholder), s.trim().to_string()))
        }
        (None, Some(cert_pem), Some(key)) => {
            // Checked now, so a wrong file is told at once.
            ferry_graph::Credential::certificate_pem(key.as_bytes(), cert_pem.as_bytes())
                .map_err(|e| invalid(format!("the certificate credential: {e}")))?;
            Ok((
                GraphCredential::Certificate {
                    cert_pem,
                    key: placeholder,
                },
                key,
            ))
        }
        _ => Err(invalid(
            "give --client-secret-file, or --certificate-file with --key-file",
        )),
    }
}

/// `endpoint update`'s sign-in: the parts given over the current ones.
/// A new credential is stored (and returned, to forget should the append
/// fail); otherwise the current one is kept.
fn changed_sign_in(
    app: &Arc<App>,
    name: &str,
    current: Option<&GraphSignIn>,
    change: GraphSignInChange,
) -> Result<(GraphSignIn, Option<SecretRef>), ApiError> {
    let GraphSignInChange {
        tenant,
        client_id,
        client_secret,
        certificate_pem,
        private_key_pem,
        authority,
        graph_url,
    } = change;
    let no_sign_in = || {
        invalid(format!(
            "endpoint {name} has no application sign-in: give --tenant, --client-id and --client-secret-file or --certificate-file with --key-file"
        ))
    };
    if current.is_none() && (tenant.is_none() || client_id.is_none()) {
        return Err(no_sign_in());
    }
    let new_credential =
        client_secret.is_some() || certificate_pem.is_some() || private_key_pem.is_some();
    let (credential, secret) = match (new_credential, current) {
        (true, _) => {
            let (c, s) = given_credential(client_secret, certificate_pem, private_key_pem)?;
            (c, Some(s))
        }
        (false, Some(cur)) => (cur.credential.clone(), None),
        (false, None) => return Err(no_sign_in()),
    };
    let sign_in = sign_in_of(
        tenant
            .or_else(|| current.map(|c| c.tenant.clone()))
            .unwrap_or_default(),
        client_id
            .or_else(|| current.map(|c| c.client_id.clone()))
            .unwrap_or_default(),
        credential,
        authority.or_else(|| current.map(|c| c.authority.clone())),
        graph_url.or_else(|| current.map(|c| c.graph_url.clone())),
    )?;
    match secret {
        Some(secret) => {
            let stored = store_sign_in(app, GivenSignIn { sign_in, secret })?;
            let r = stored.credential.secrets().into_iter().next();
            Ok((stored, r))
        }
        None => Ok((sign_in, None)),
    }
}

/// Puts the secret into the store and its reference into the sign-in.
fn store_sign_in(app: &Arc<App>, g: GivenSignIn) -> Result<GraphSignIn, ApiError> {
    let r = app.secrets.put(&g.secret).map_err(internal)?;
    let mut sign_in = g.sign_in;
    match &mut sign_in.credential {
        GraphCredential::Secret(s) | GraphCredential::Certificate { key: s, .. } => *s = r,
    }
    Ok(sign_in)
}

/// The host of a Graph URL, or the URL when it has none.
fn graph_host(url: &str) -> String {
    url.split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or(url)
        .to_string()
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
        graph,
    } = req;
    check_version(ews.as_ref())?;
    let graph = graph.filter(|g| !g.is_empty());
    let _guard = app.commands.lock().await;
    let version = seen_version(app, &name);
    let (old, current_sign_in) = {
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
        (ep.spec.clone(), ep.graph.clone())
    };
    if graph.is_some() && !matches!(old.kind, EndpointKind::Graph | EndpointKind::Imap) {
        return Err(invalid(
            "only graph and IMAP endpoints take an application sign-in",
        ));
    }
    let mut spec = old.clone();
    let host_given = host.is_some();
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
    let mut replaced: Vec<ferry_events::SecretRef> = match &password {
        Some(_) => old.admin_secret.iter().cloned().collect(),
        None => Vec::new(),
    };
    let sign_in = match graph {
        Some(change) => {
            let graph_url_given = change.graph_url.is_some();
            let (sign_in, stored) = changed_sign_in(app, &name, current_sign_in.as_ref(), change)?;
            // A graph endpoint's host is its Graph URL's, as outages name it.
            if spec.kind == EndpointKind::Graph && graph_url_given && !host_given {
                spec.host = graph_host(&sign_in.graph_url);
            }
            if stored.is_some() {
                replaced.extend(current_sign_in.iter().flat_map(|c| c.credential.secrets()));
            }
            Some((sign_in, stored))
        }
        None => None,
    };
    let new_secret = sign_in.as_ref().and_then(|(_, s)| s.clone());
    let res = record(
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
            events.extend(sign_in.map(|(sign_in, _)| Event::GraphEndpointSet {
                name: name.clone(),
                sign_in: Some(sign_in),
            }));
            events
        },
    )
    .await;
    let envs = match res {
        Ok(envs) => envs,
        Err(e) => {
            super::forget_secrets(app, &new_secret.into_iter().collect::<Vec<_>>());
            return Err(e);
        }
    };
    super::forget_secrets(app, &replaced);
    Ok(done(format!("endpoint {name} updated"), &envs))
}

/// `endpoint remove NAME`: refused while any batch names it.
pub async fn remove(app: &Arc<App>, actor: Actor, name: &str) -> Result<Response, ApiError> {
    let _guard = app.commands.lock().await;
    let version = seen_version(app, name);
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
        let mut secrets: Vec<SecretRef> = ep.spec.admin_secret.iter().cloned().collect();
        secrets.extend(ep.graph.iter().flat_map(|g| g.credential.secrets()));
        secrets
    };
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
    super::forget_secrets(app, &secret);
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

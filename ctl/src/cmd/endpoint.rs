//! `ferryctl endpoint add|update|remove|verify|list`.

use std::path::PathBuf;

use ferry_api::wire::{
    EndpointAdd, EndpointRemove, EndpointUpdate, EndpointVerify, GraphSignInChange,
    GraphSignInInput,
};
use ferry_api::{Client, Request};
use ferry_events::{EndpointKind, EwsAuth, EwsSettings, TlsMode, TokenSource};

use crate::cli::{
    EndpointCmd, EwsAuthArg, GraphSignInArgs, GraphSignInUpdateArgs, KindArg, TlsArg,
};
use crate::files::read_secret;
use crate::send;

fn tls_mode(tls: TlsArg) -> TlsMode {
    match tls {
        TlsArg::None => TlsMode::None,
        TlsArg::Starttls => TlsMode::StartTls,
        TlsArg::Tls => TlsMode::Tls,
    }
}

/// A file given on the command line, as ferryd must read it: absolute.
fn absolute(f: Option<PathBuf>) -> anyhow::Result<Option<String>> {
    Ok(match f {
        Some(f) => Some(std::path::absolute(&f)?.display().to_string()),
        None => None,
    })
}

fn token_source(
    file: Option<PathBuf>,
    command: Option<String>,
) -> anyhow::Result<Option<TokenSource>> {
    Ok(match (absolute(file)?, command) {
        (Some(f), _) => Some(TokenSource::File(f)),
        (None, Some(c)) => Some(TokenSource::Command(c)),
        (None, None) => None,
    })
}

/// EWS settings when an authentication is named (or the kind is EWS).
fn ews_settings(auth: Option<EwsAuthArg>, version: Option<String>) -> Option<EwsSettings> {
    let auth = match auth? {
        EwsAuthArg::Ntlm => EwsAuth::Ntlm,
        EwsAuthArg::Basic => EwsAuth::Basic,
    };
    Some(EwsSettings { auth, version })
}

/// The application sign-in as ferryd takes it: the files read here.
fn graph_sign_in(g: GraphSignInArgs) -> anyhow::Result<Option<GraphSignInInput>> {
    let (Some(tenant), Some(client_id)) = (g.tenant, g.client_id) else {
        return Ok(None);
    };
    Ok(Some(GraphSignInInput {
        tenant,
        client_id,
        client_secret: password(g.client_secret_file)?,
        certificate_pem: read_pem(g.certificate_file)?,
        private_key_pem: read_pem(g.key_file)?,
        authority: g.authority,
        graph_url: g.graph_url,
    }))
}

/// The sign-in's parts to replace, the files read here.
fn graph_change(g: GraphSignInUpdateArgs) -> anyhow::Result<Option<GraphSignInChange>> {
    let change = GraphSignInChange {
        tenant: g.tenant,
        client_id: g.client_id,
        client_secret: password(g.client_secret_file)?,
        certificate_pem: read_pem(g.certificate_file)?,
        private_key_pem: read_pem(g.key_file)?,
        authority: g.authority,
        graph_url: g.graph_url,
    };
    Ok((!change.is_empty()).then_some(change))
}

fn read_pem(f: Option<PathBuf>) -> anyhow::Result<Option<String>> {
    f.map(|f| {
        std::fs::read_to_string(&f).map_err(|e| anyhow::anyhow!("reading {}: {e}", f.display()))
    })
    .transpose()
}

fn password(file: Option<PathBuf>) -> anyhow::Result<Option<String>> {
    file.map(|f| read_secret(&f)).transpose()
}

pub async fn run(client: &Client, cmd: EndpointCmd, json: bool) -> anyhow::Result<i32> {
    let req = match cmd {
        EndpointCmd::Add {
            name,
            kind,
            host,
            port,
            tls,
            ca_file,
            admin_user,
            password_file,
            max_connections,
            oauth_token_file,
            oauth_token_command,
            auth,
            ews_version,
            graph,
        } => Request::EndpointAdd(EndpointAdd {
            name,
            kind: match kind {
                KindArg::Imap => EndpointKind::Imap,
                KindArg::Maildir => EndpointKind::Maildir,
                KindArg::Graph => EndpointKind::Graph,
                KindArg::Ews => EndpointKind::Ews,
            },
            ews: match (kind, auth) {
                (KindArg::Ews, None) => ews_settings(Some(EwsAuthArg::Ntlm), ews_version),
                _ => ews_settings(auth, ews_version),
            },
            host,
            port,
            tls: tls_mode(tls),
            ca_file: absolute(ca_file)?,
            admin_user,
            password: password(password_file)?,
            max_connections,
            oauth: token_source(oauth_token_file, oauth_token_command)?,
            graph: graph_sign_in(graph)?,
        }),
        EndpointCmd::Update {
            name,
            host,
            port,
            tls,
            ca_file,
            admin_user,
            password_file,
            max_connections,
            oauth_token_file,
            oauth_token_command,
            auth,
            ews_version,
            graph,
        } => Request::EndpointUpdate(EndpointUpdate {
            graph: graph_change(graph)?,
            ews: ews_settings(auth, ews_version),
            name,
            host,
            port,
            tls: tls.map(tls_mode),
            ca_file: absolute(ca_file)?,
            admin_user,
            password: password(password_file)?,
            max_connections,
            oauth: token_source(oauth_token_file, oauth_token_command)?,
        }),
        EndpointCmd::Remove { name } => Request::EndpointRemove(EndpointRemove { name }),
        EndpointCmd::Verify { name, as_user } => {
            Request::EndpointVerify(EndpointVerify { name, as_user })
        }
        EndpointCmd::List => Request::EndpointList,
    };
    send::print(client, &req, json).await
}

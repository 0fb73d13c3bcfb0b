//! `ferryctl endpoint add|verify|list`.

use ferry_api::wire::{EndpointAdd, EndpointVerify};
use ferry_api::{Client, Request};
use ferry_events::{EndpointKind, TlsMode};

use crate::cli::{EndpointCmd, KindArg, TlsArg};
use crate::files::read_secret;
use crate::send;

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
        } => {
            let ca_file = match ca_file {
                Some(f) => Some(std::path::absolute(&f)?.display().to_string()),
                None => None,
            };
            let oauth = match (oauth_token_file, oauth_token_command) {
                (Some(f), _) => Some(ferry_events::TokenSource::File(
                    std::path::absolute(&f)?.display().to_string(),
                )),
                (None, Some(c)) => Some(ferry_events::TokenSource::Command(c)),
                (None, None) => None,
            };
            let password = match password_file {
                Some(f) => Some(read_secret(&f)?),
                None => None,
            };
            Request::EndpointAdd(EndpointAdd {
                name,
                kind: match kind {
                    KindArg::Imap => EndpointKind::Imap,
                    KindArg::Maildir => EndpointKind::Maildir,
                },
                host,
                port,
                tls: match tls {
                    TlsArg::None => TlsMode::None,
                    TlsArg::Starttls => TlsMode::StartTls,
                    TlsArg::Tls => TlsMode::Tls,
                },
                ca_file,
                admin_user,
                password,
                max_connections,
                oauth,
            })
        }
        EndpointCmd::Verify { name, as_user } => {
            Request::EndpointVerify(EndpointVerify { name, as_user })
        }
        EndpointCmd::List => Request::EndpointList,
    };
    send::print(client, &req, json).await
}

//! Reaching a logged-in state: TCP, optional TLS (implicit or STARTTLS),
//! the greeting, then LOGIN or SASL (PLAIN with an optional authorization
//! identity for admin impersonation, XOAUTH2 for Microsoft 365 / Gmail).

use std::io;
use std::time::Duration;

use async_imap::imap_proto::{Response, ResponseCode, Status};
use async_imap::{Authenticator, Client};
use tokio::net::TcpStream;

use super::session::Conn;
use super::tls::{self, Stream};
use super::{ImapAuth, ImapConfig, TlsMode};
use crate::{ConnectorError, ErrorClass, Result};

/// SASL PLAIN (RFC 4616): `authzid NUL authcid NUL password`.
struct Plain<'a> {
    authzid: &'a str,
    user: &'a str,
    password: &'a str,
}

impl Authenticator for Plain<'_> {
    type Response = Vec<u8>;
    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        format!("{}\0{}\0{}", self.authzid, self.user, self.password).into_bytes()
    }
}

/// XOAUTH2: the first answer carries the token; a failure comes back as a
/// JSON challenge that must be answered with an empty line before the NO.
struct XOAuth2<'a> {
    user: &'a str,
    token: &'a str,
    sent: bool,
}

impl Authenticator for XOAuth2<'_> {
    type Response = Vec<u8>;
    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        if std::mem::replace(&mut self.sent, true) {
            return Vec::new();
        }
        format!("user={}\x01auth=Bearer {}\x01\x01", self.user, self.token).into_bytes()
    }
}

fn io_err(endpoint: &str, op: &'static str, source: io::Error) -> ConnectorError {
    ConnectorError::Io {
        endpoint: endpoint.to_string(),
        op,
        source,
    }
}

fn timed_out(endpoint: &str, op: &'static str, t: Duration) -> ConnectorError {
    io_err(
        endpoint,
        op,
        io::Error::new(io::ErrorKind::TimedOut, format!("no answer within {t:?}")),
    )
}

async fn with_timeout<T, F>(endpoint: &str, op: &'static str, t: Duration, f: F) -> Result<T>
where
    F: Future<Output = io::Result<T>>,
{
    match tokio::time::timeout(t, f).await {
        Err(_) => Err(timed_out(endpoint, op, t)),
        Ok(r) => r.map_err(|e| io_err(endpoint, op, e)),
    }
}

/// What the greeting says of the server.
struct Greeting {
    /// It names SASL-IR among its capabilities.
    sasl_ir: bool,
    /// PREAUTH with a `[CAPABILITY ...]` code: the logged-in capabilities.
    preauth_caps: Option<Vec<String>>,
}

/// Reads the server greeting: OK or PREAUTH go on, BYE is a refusal.
async fn greeting(client: &mut Client<Stream>, endpoint: &str, t: Duration) -> Result<Greeting> {
    let response = with_timeout(endpoint, "greeting", t, async {
        client.read_response().await?.ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, "closed before the greeting")
        })
    })
    .await?;
    match response.parsed() {
        Response::Data {
            status: status @ (Status::Ok | Status::PreAuth),
            outcome,
        } => {
            let caps = match &outcome.code {
                Some(ResponseCode::Capabilities(caps)) => Some(super::capability_names(caps)),
                _ => None,
            };
            Ok(Greeting {
                sasl_ir: caps
                    .as_ref()
                    .is_some_and(|c| c.iter().any(|c| c.eq_ignore_ascii_case("SASL-IR"))),
                preauth_caps: caps.filter(|_| matches!(status, Status::PreAuth)),
            })
        }
        Response::Data { status, outcome } => {
            let text = format!(
                "{status:?} {}",
                outcome.information.as_deref().unwrap_or_default()
            );
            Err(ConnectorError::Server {
                endpoint: endpoint.to_string(),
                op: "greeting",
                class: super::parse::classify(&text, ErrorClass::Connection),
                text,
            })
        }
        other => Err(ConnectorError::Protocol {
            endpoint: endpoint.to_string(),
            op: "greeting",
            text: format!("unexpected greeting {other:?}"),
        }),
    }
}

/// Connects, secures and logs in; with the capabilities the login's answer
/// (or a PREAUTH greeting) carried, which spare a CAPABILITY round trip.
pub(crate) async fn open(cfg: &ImapConfig, auth: &ImapAuth) -> Result<(Conn, Option<Vec<String>>)> {
    let endpoint = format!("{}:{}", cfg.host, cfg.port);
    let t = cfg.timeout;
    let tcp = with_timeout(
        &endpoint,
        "connect",
        t,
        TcpStream::connect((cfg.host.as_str(), cfg.port)),
    )
    .await?;
    // Commands are small writes waiting for an answer: no Nagle delay.
    tcp.set_nodelay(true)
        .map_err(|e| io_err(&endpoint, "connect", e))?;

    let tls_config = || {
        tls::client_config(cfg.ca_file.as_deref()).map_err(|e| io_err(&endpoint, "tls setup", e))
    };
    // Whether the credentials may ride on the AUTHENTICATE command itself
    // (SASL-IR), saving a round trip; not trusted from before STARTTLS.
    let (client, greeted) = match cfg.tls {
        TlsMode::None => {
            let mut client = Client::new(Stream::plain(tcp));
            let greeted = greeting(&mut client, &endpoint, t).await?;
            (client, greeted)
        }
        TlsMode::Tls => {
            let config = tls_config()?;
            let stream = with_timeout(
                &endpoint,
                "tls handshake",
                t,
                tls::handshake(tcp, &cfg.host, config),
            )
            .await?;
            let mut client = Client::new(stream);
            let greeted = greeting(&mut client, &endpoint, t).await?;
            (client, greeted)
        }
        TlsMode::StartTls => {
            let config = tls_config()?;
            let mut plain = Client::new(Stream::plain(tcp));
            greeting(&mut plain, &endpoint, t).await?;
            match tokio::time::timeout(t, plain.run_command_and_check_ok("STARTTLS", None)).await {
                Err(_) => return Err(timed_out(&endpoint, "starttls", t)),
                Ok(Err(async_imap::error::Error::Io(e))) => {
                    return Err(io_err(&endpoint, "starttls", e));
                }
                Ok(Err(e)) => {
                    return Err(ConnectorError::Protocol {
                        endpoint: endpoint.clone(),
                        op: "starttls",
                        text: format!("server refused STARTTLS: {e}"),
                    });
                }
                Ok(Ok(())) => {}
            }
            // Nothing is buffered past the tagged OK: the server waits for
            // our handshake, so the raw socket can be taken back.
            let tcp = plain
                .into_inner()
                .into_tcp()
                .ok_or_else(|| ConnectorError::Protocol {
                    endpoint: endpoint.clone(),
                    op: "starttls",
                    text: "stream is not plain TCP".into(),
                })?;
            let stream = with_timeout(
                &endpoint,
                "tls handshake",
                t,
                tls::handshake(tcp, &cfg.host, config),
            )
            .await?;
            let greeted = Greeting {
                sasl_ir: false,
                preauth_caps: None,
            };
            (Client::new(stream), greeted)
        }
    };
    let sasl_ir = greeted.sasl_ir;

    let (user, result) = match auth {
        // Dovecot, among others, answers LOGIN with `OK [CAPABILITY ...]`.
        ImapAuth::Login { user, password } => (
            user.as_str(),
            match tokio::time::timeout(t, client.login_with_capabilities(user, password)).await {
                Ok(Ok((session, caps))) => {
                    let names = caps.map(|c| c.iter().map(super::capability_name).collect());
                    Ok(Ok((session, names)))
                }
                Ok(Err(e)) => Ok(Err(e)),
                Err(e) => Err(e),
            },
        ),
        ImapAuth::Plain {
            authzid,
            user,
            password,
        } => {
            let mut sasl = Plain {
                authzid: authzid.as_deref().unwrap_or(""),
                user,
                password,
            };
            let command = if sasl_ir {
                use base64::Engine;
                let initial = sasl.process(b"");
                format!(
                    "PLAIN {}",
                    base64::engine::general_purpose::STANDARD.encode(initial)
                )
            } else {
                "PLAIN".to_string()
            };
            (
                authzid.as_deref().unwrap_or(user),
                without_caps(tokio::time::timeout(t, client.authenticate(command, sasl)).await),
            )
        }
        ImapAuth::XOAuth2 { user, token } => {
            let sasl = XOAuth2 {
                user,
                token,
                sent: false,
            };
            (
                user.as_str(),
                without_caps(tokio::time::timeout(t, client.authenticate("XOAUTH2", sasl)).await),
            )
        }
    };
    match result {
        Err(_) => Err(timed_out(&endpoint, "login", t)),
        Ok(Ok((session, caps))) => Ok((
            Conn::new(session, endpoint, t),
            caps.or(greeted.preauth_caps),
        )),
        Ok(Err((e, _client))) => Err(login_error(&endpoint, user, e)),
    }
}

/// A login attempt as async-imap ends it, within the timeout.
type Timed<T> = std::result::Result<
    std::result::Result<T, (async_imap::error::Error, Client<Stream>)>,
    tokio::time::error::Elapsed,
>;
type Authenticated = Timed<(async_imap::Session<Stream>, Option<Vec<String>>)>;

/// async-imap keeps an AUTHENTICATE answer's capabilities to itself.
#[allow(clippy::result_large_err)]
fn without_caps(r: Timed<async_imap::Session<Stream>>) -> Authenticated {
    match r {
        Ok(Ok(session)) => Ok(Ok((session, None))),
        Ok(Err(e)) => Ok(Err(e)),
        Err(e) => Err(e),
    }
}

/// The server's words from async-imap's `code: .., info: Some("..")`.
fn server_words(text: String) -> String {
    match text.split_once("info: Some(\"") {
        Some((_, rest)) => rest.trim_end_matches("\")").replace("\\\"", "\""),
        None => text,
    }
}

fn login_error(endpoint: &str, user: &str, e: async_imap::error::Error) -> ConnectorError {
    use async_imap::error::Error;
    let e = match e {
        Error::No(text) => Error::No(server_words(text)),
        Error::Bad(text) => Error::Bad(server_words(text)),
        other => other,
    };
    match e {
        Error::Io(source) => io_err(endpoint, "login", source),
        Error::ConnectionLost => io_err(
            endpoint,
            "login",
            io::Error::new(io::ErrorKind::UnexpectedEof, "connection lost"),
        ),
        // "[UNAVAILABLE] Temporary authentication failure" is not a wrong
        // password: the same credentials will work later.
        Error::No(text) | Error::Bad(text) if super::parse::is_throttle(&text) => {
            ConnectorError::Server {
                endpoint: endpoint.to_string(),
                op: "login",
                class: ErrorClass::Throttled,
                text,
            }
        }
        Error::No(text) | Error::Bad(text) => ConnectorError::Auth {
            endpoint: endpoint.to_string(),
            user: user.to_string(),
            text,
        },
        other => ConnectorError::Protocol {
            endpoint: endpoint.to_string(),
            op: "login",
            text: other.to_string(),
        },
    }
}

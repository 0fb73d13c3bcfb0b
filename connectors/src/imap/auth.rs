//! Reaching a logged-in state: TCP, optional TLS (implicit or STARTTLS),
//! the greeting, then LOGIN or SASL (PLAIN with an optional authorization
//! identity for admin impersonation, XOAUTH2 for Microsoft 365 / Gmail).

use std::io;
use std::time::Duration;

use async_imap::Client;
use async_imap::imap_proto::{Response, ResponseCode, Status};
use base64::Engine;
use tokio::net::TcpStream;

use super::session::{Conn, Tagged};
use super::tls::{self, Stream};
use super::{ImapAuth, ImapConfig, TlsMode};
use crate::{ConnectorError, ErrorClass, Result};

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

    let mut conn = Conn::new(client, endpoint.clone(), t);
    // Whatever the server says of its capabilities on the way in.
    let mut caps = Vec::new();
    let (user, tagged) = match auth {
        ImapAuth::Login { user, password } => {
            let (Some(u), Some(p)) = (super::parse::quote(user), super::parse::quote(password))
            else {
                return Err(ConnectorError::Auth {
                    endpoint,
                    user: user.clone(),
                    text: "a user name or password with a line break cannot be sent".into(),
                });
            };
            let id = conn.send("login", &format!("LOGIN {u} {p}")).await?;
            let tagged = conn
                .finish("login", &id, |r| {
                    if let Response::Capabilities(list) = r {
                        caps.extend(super::capability_names(list));
                    }
                    Ok(())
                })
                .await?;
            (user.as_str(), tagged)
        }
        ImapAuth::Plain {
            authzid,
            user,
            password,
        } => {
            // SASL PLAIN (RFC 4616): `authzid NUL authcid NUL password`.
            let first = format!("{}\0{user}\0{password}", authzid.as_deref().unwrap_or(""));
            let tagged =
                authenticate(&mut conn, "PLAIN", first.as_bytes(), sasl_ir, &mut caps).await?;
            (authzid.as_deref().unwrap_or(user), tagged)
        }
        ImapAuth::XOAuth2 { user, token } => {
            let first = format!("user={user}\x01auth=Bearer {token}\x01\x01");
            let tagged =
                authenticate(&mut conn, "XOAUTH2", first.as_bytes(), sasl_ir, &mut caps).await?;
            (user.as_str(), tagged)
        }
    };
    if !tagged.is_ok() {
        let text = tagged.describe();
        // "[UNAVAILABLE] Temporary authentication failure" is not a wrong
        // password: the same credentials will work later.
        return Err(if super::parse::is_throttle(&text) {
            ConnectorError::Server {
                endpoint,
                op: "login",
                class: ErrorClass::Throttled,
                text,
            }
        } else {
            ConnectorError::Auth {
                endpoint,
                user: user.to_string(),
                text,
            }
        });
    }
    let caps = tagged
        .caps
        .or((!caps.is_empty()).then_some(caps))
        .or(greeted.preauth_caps);
    Ok((conn, caps))
}

/// AUTHENTICATE with `mechanism`: `first` is the client's first answer,
/// sent with the command where the server takes an initial response (one
/// round trip less), else at its first challenge; a later challenge
/// (XOAUTH2's error details) gets an empty answer. The tagged end, and
/// any untagged capabilities in `caps`.
async fn authenticate(
    conn: &mut Conn,
    mechanism: &str,
    first: &[u8],
    sasl_ir: bool,
    caps: &mut Vec<String>,
) -> Result<Tagged> {
    enum Step {
        Challenge,
        Done(Tagged),
        Other,
    }
    let first = base64::engine::general_purpose::STANDARD.encode(first);
    let command = if sasl_ir {
        format!("AUTHENTICATE {mechanism} {first}")
    } else {
        format!("AUTHENTICATE {mechanism}")
    };
    let id = conn.send("login", &command).await?;
    let mut answered = sasl_ir;
    loop {
        let step = conn
            .next("login", |r| match r {
                Response::Continue { .. } => Step::Challenge,
                Response::Done {
                    tag,
                    status,
                    outcome,
                } if *tag == id => Step::Done(Tagged::new(status, outcome)),
                Response::Capabilities(list) => {
                    caps.extend(super::capability_names(list));
                    Step::Other
                }
                _ => Step::Other,
            })
            .await?;
        match step {
            Step::Challenge => {
                let answer = if std::mem::replace(&mut answered, true) {
                    ""
                } else {
                    first.as_str()
                };
                conn.write_raw("login", format!("{answer}\r\n").as_bytes())
                    .await?;
            }
            Step::Done(tagged) => return Ok(tagged),
            Step::Other => {}
        }
    }
}

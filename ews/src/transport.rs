//! HTTP/1.1 over TLS, one hyper connection at a time. NTLM authenticates a
//! connection, not a request, so connections are kept per login and
//! reused; reqwest's pool could not promise the three NTLM legs share one.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::ntlm;

/// The largest answer read into memory (a `GetItem` batch of large
/// messages stays far below it).
pub const MAX_RESPONSE: usize = 512 << 20;

/// How a login proves itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    Basic,
    Ntlm,
}

impl AuthKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthKind::Basic => "Basic",
            AuthKind::Ntlm => "NTLM",
        }
    }
}

/// A login and its password. `Debug` never shows the password.
#[derive(Clone)]
pub struct Credentials {
    pub auth: AuthKind,
    /// `user@domain`, or `DOMAIN\user` for NTLM.
    pub login: String,
    password: String,
    /// Tells these credentials (and their clones) from any other with the
    /// same login: an NTLM connection is only reused by the password that
    /// authenticated it.
    key: u64,
}

impl Credentials {
    pub fn new(auth: AuthKind, login: impl Into<String>, password: impl Into<String>) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Credentials {
            auth,
            login: login.into(),
            password: password.into(),
            key: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// The key idle connections are kept under.
    pub fn pool_key(&self) -> u64 {
        self.key
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("auth", &self.auth)
            .field("login", &self.login)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// One answer, read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What went wrong on one connection.
#[derive(Debug)]
pub enum ConnError {
    Io(io::Error),
    /// The connection broke before an answer came (a reused connection the
    /// server had closed is the usual cause).
    Http(String),
    Timeout,
    Unauthorized,
}

/// One HTTP/1.1 connection and whether NTLM has authenticated it.
pub struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    authed: bool,
}

/// Opens a TLS connection to `host:port` and starts HTTP/1.1 on it.
pub async fn open(
    host: &str,
    port: u16,
    tls: Arc<ClientConfig>,
    timeout: Duration,
) -> Result<Conn, ConnError> {
    let work = async {
        let tcp = TcpStream::connect((host, port)).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let stream = TlsConnector::from(tls).connect(name, tcp).await?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the peer closes.
            let _ = conn.await;
        });
        Ok::<_, io::Error>(Conn {
            sender,
            authed: false,
        })
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r.map_err(ConnError::Io),
        Err(_) => Err(ConnError::Timeout),
    }
}

/// The parts of a request that do not change between its NTLM legs.
pub struct Target<'a> {
    pub host_header: &'a str,
    pub path: &'a str,
    pub anchor: Option<&'a str>,
    pub timeout: Duration,
}

impl Conn {
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    async fn send(
        &mut self,
        t: &Target<'_>,
        body: Bytes,
        auth: Option<HeaderValue>,
    ) -> Result<Answer, ConnError> {
        let mut req = Request::post(t.path)
            .header(header::HOST, t.host_header)
            .header(header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .header(header::ACCEPT, "text/xml")
            .header(header::USER_AGENT, "mailferry");
        if let Some(a) = t.anchor {
            req = req.header("X-AnchorMailbox", a);
        }
        if let Some(mut a) = auth {
            a.set_sensitive(true);
            req = req.header(header::AUTHORIZATION, a);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| ConnError::Http(e.to_string()))?;
        let work = async {
            self.sender
                .ready()
                .await
                .map_err(|e| ConnError::Http(e.to_string()))?;
            let resp = self
                .sender
                .send_request(req)
                .await
                .map_err(|e| ConnError::Http(e.to_string()))?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| ConnError::Http(e.to_string()))?
                .to_bytes();
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(t.timeout, work)
            .await
            .unwrap_or(Err(ConnError::Timeout))
    }

    /// Sends `body` as `creds`, first running the NTLM handshake if this
    /// connection has not been authenticated yet.
    pub async fn post(
        &mut self,
        t: &Target<'_>,
        creds: &Credentials,
        body: Bytes,
    ) -> Result<Answer, ConnError> {
        match creds.auth {
            AuthKind::Basic => {
                let token = B64.encode(format!("{}:{}", creds.login, creds.password));
                let value = HeaderValue::from_str(&format!("Basic {token}"))
                    .map_err(|_| ConnError::Unauthorized)?;
                let a = self.send(t, body, Some(value)).await?;
                if a.status == StatusCode::UNAUTHORIZED {
                    return Err(ConnError::Unauthorized);
                }
                Ok(a)
            }
            AuthKind::Ntlm if self.authed => {
                let a = self.send(t, body.clone(), None).await?;
                if a.status != StatusCode::UNAUTHORIZED {
                    return Ok(a);
                }
                // The server forgot this connection's login: once more.
                self.authed = false;
                self.ntlm(t, creds, body).await
            }
            AuthKind::Ntlm => self.ntlm(t, creds, body).await,
        }
    }

    /// NEGOTIATE with an empty body, CHALLENGE in the 401, then the request
    /// itself with AUTHENTICATE.
    async fn ntlm(
        &mut self,
        t: &Target<'_>,
        creds: &Credentials,
        body: Bytes,
    ) -> Result<Answer, ConnError> {
        let negotiate = format!("NTLM {}", B64.encode(ntlm::negotiate()));
        let first = self
            .send(
                t,
                Bytes::new(),
                Some(HeaderValue::from_str(&negotiate).expect("base64")),
            )
            .await?;
        if first.status != StatusCode::UNAUTHORIZED {
            return Err(ConnError::Http(format!(
                "HTTP {} to an NTLM NEGOTIATE (is NTLM enabled on this URL?)",
                first.status.as_u16()
            )));
        }
        let challenge = first
            .headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix("NTLM "))
            .ok_or_else(|| ConnError::Http("no NTLM challenge in the 401".into()))?;
        let challenge = B64
            .decode(challenge.trim())
            .map_err(|e| ConnError::Http(format!("NTLM challenge: {e}")))
            .and_then(|b| ntlm::Challenge::parse(&b).map_err(|e| ConnError::Http(e.to_string())))?;
        let msg = ntlm::authenticate(
            &challenge,
            &creds.login,
            &creds.password,
            "MAILFERRY",
            rand::random(),
        );
        let auth = format!("NTLM {}", B64.encode(msg));
        let a = self
            .send(t, body, Some(HeaderValue::from_str(&auth).expect("base64")))
            .await?;
        if a.status == StatusCode::UNAUTHORIZED {
            return Err(ConnError::Unauthorized);
        }
        self.authed = true;
        Ok(a)
    }
}

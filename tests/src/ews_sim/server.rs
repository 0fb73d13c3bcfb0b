//! HTTPS on 127.0.0.1 (rustls, a CA and certificate made by rcgen), HTTP/1.1
//! keep-alive, and IIS's authentication as Exchange sets it up on /EWS:
//! Basic on every request, or NTLM once per connection (NEGOTIATE →
//! 401 with CHALLENGE → AUTHENTICATE), the connection then staying
//! authenticated.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use ferry_ews::ntlm;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::soap::{self, Caller};
use super::store::Store;

/// Which schemes the server offers.
#[derive(Debug, Clone, Copy)]
pub struct AuthSchemes {
    pub basic: bool,
    pub ntlm: bool,
}

/// One connection's NTLM progress.
#[derive(Default)]
struct ConnAuth {
    challenge: Option<[u8; 8]>,
    login: Option<String>,
}

pub struct Shared {
    pub store: Mutex<Store>,
    pub schemes: AuthSchemes,
    pub latency: std::time::Duration,
}

/// Serves `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, tls: TlsAcceptor, shared: Arc<Shared>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        // As IIS does: an answer is not held back for the client's ACK.
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let Ok(stream) = tls.accept(tcp).await else {
                return;
            };
            let auth = Arc::new(Mutex::new(ConnAuth::default()));
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                let auth = auth.clone();
                async move { Ok::<_, Infallible>(request(&shared, &auth, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn reply(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        "text/xml; charset=utf-8".parse().unwrap(),
    );
    r
}

fn unauthorized(schemes: AuthSchemes, ntlm_token: Option<String>) -> Response<Full<Bytes>> {
    let mut r = reply(StatusCode::UNAUTHORIZED, Vec::new());
    let h = r.headers_mut();
    match ntlm_token {
        Some(t) => {
            h.append(
                hyper::header::WWW_AUTHENTICATE,
                format!("NTLM {t}").parse().unwrap(),
            );
        }
        None => {
            if schemes.ntlm {
                h.append(hyper::header::WWW_AUTHENTICATE, "NTLM".parse().unwrap());
            }
            if schemes.basic {
                h.append(
                    hyper::header::WWW_AUTHENTICATE,
                    "Basic realm=\"127.0.0.1\"".parse().unwrap(),
                );
            }
        }
    }
    r
}

/// Whose request this is, or the 401 to send.
fn authenticate(
    shared: &Shared,
    conn: &Mutex<ConnAuth>,
    header: Option<&str>,
) -> Result<String, Box<Response<Full<Bytes>>>> {
    let schemes = shared.schemes;
    let mut conn = conn.lock().unwrap();
    let mut store = shared.store.lock().unwrap();
    match header {
        Some(h) if schemes.basic && h.len() > 6 && h[..6].eq_ignore_ascii_case("basic ") => {
            let decoded = B64
                .decode(h[6..].trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            let ok = decoded
                .as_deref()
                .and_then(|d| d.split_once(':'))
                .and_then(|(l, p)| {
                    store
                        .user(l)
                        .filter(|u| u.password == p)
                        .map(|u| u.smtp.clone())
                });
            match ok {
                Some(login) => {
                    store.counters.basic_logins += 1;
                    Ok(login)
                }
                None => {
                    store.counters.refused_logins += 1;
                    Err(Box::new(unauthorized(schemes, None)))
                }
            }
        }
        Some(h) if schemes.ntlm && h.len() > 5 && h[..5].eq_ignore_ascii_case("ntlm ") => {
            let Ok(msg) = B64.decode(h[5..].trim()) else {
                return Err(Box::new(unauthorized(schemes, None)));
            };
            if msg.get(8) == Some(&1) {
                let challenge: [u8; 8] = rand::random();
                conn.challenge = Some(challenge);
                conn.login = None;
                let m = ntlm::challenge(challenge, "SIM", "EXCH01");
                return Err(Box::new(unauthorized(schemes, Some(B64.encode(m)))));
            }
            let (Some(challenge), Ok(a)) = (conn.challenge.take(), ntlm::Authenticate::parse(&msg))
            else {
                store.counters.refused_logins += 1;
                return Err(Box::new(unauthorized(schemes, None)));
            };
            let ok = store
                .user(&a.login())
                .filter(|u| a.verify(&u.password, &challenge))
                .map(|u| u.smtp.clone());
            match ok {
                Some(login) => {
                    store.counters.ntlm_handshakes += 1;
                    conn.login = Some(login.clone());
                    Ok(login)
                }
                None => {
                    store.counters.refused_logins += 1;
                    Err(Box::new(unauthorized(schemes, None)))
                }
            }
        }
        _ => match &conn.login {
            Some(l) if schemes.ntlm => Ok(l.clone()),
            _ => Err(Box::new(unauthorized(schemes, None))),
        },
    }
}

async fn request(
    shared: &Shared,
    conn: &Mutex<ConnAuth>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return reply(StatusCode::BAD_REQUEST, Vec::new());
    };
    shared.store.lock().unwrap().counters.http_requests += 1;
    if parts.method != hyper::Method::POST
        || !parts.uri.path().eq_ignore_ascii_case("/EWS/Exchange.asmx")
    {
        return reply(StatusCode::NOT_FOUND, Vec::new());
    }
    let auth = parts
        .headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let login = match authenticate(shared, conn, auth) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    let anchor = parts
        .headers
        .get("X-AnchorMailbox")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // EWSMaxConcurrency: requests in flight per login.
    {
        let mut store = shared.store.lock().unwrap();
        let n = store.in_flight.entry(login.clone()).or_default();
        *n += 1;
        let now = *n;
        store.counters.max_in_flight = store.counters.max_in_flight.max(now);
        if store.max_concurrency.is_some_and(|cap| now > cap) {
            *store.in_flight.get_mut(&login).unwrap() -= 1;
            store.counters.throttled += 1;
            let r = soap::fault(
                &store,
                "ErrorExceededConnectionCount",
                "You have exceeded the available concurrent connections for your account.",
                None,
            );
            return reply(StatusCode::INTERNAL_SERVER_ERROR, r.body);
        }
    }
    // Time spent "in the store", so concurrent requests overlap.
    if !shared.latency.is_zero() {
        tokio::time::sleep(shared.latency).await;
    }
    let r = {
        let mut store = shared.store.lock().unwrap();
        let caller = Caller {
            login: &login,
            anchor: anchor.as_deref(),
        };
        let r = soap::handle(&mut store, &caller, &body);
        *store.in_flight.get_mut(&login).unwrap() -= 1;
        r
    };
    reply(
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        r.body,
    )
}

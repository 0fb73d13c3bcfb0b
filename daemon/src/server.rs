//! The control socket: HTTP/1.1 + JSON on a Unix socket.
//!
//! The socket is created under a temporary name, given its mode (0600, or
//! 0660 with an admin group) and then renamed into place, so there is no
//! instant at which others could connect. A socket file left by a dead
//! daemon is removed; one that answers means another ferryd runs, and we
//! refuse to start. Each connection's peer uid becomes the actor of what it
//! appends. Request bodies are capped; a malformed request gets a 4xx and
//! nothing else happens. A request's header and body must arrive within
//! `request_timeout_s`, and a connection closes after its answer, so idle or
//! half-sent connections cannot hold the `max_connections` slots.

use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use ferry_api::wire::{ApiError, ErrorCode, MAX_REQUEST_BYTES};
use ferry_events::Actor;
use http::{Method, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use crate::api;
use crate::app::App;
use crate::shutdown::Shutdown;

pub type Body = BoxBody<Bytes, std::io::Error>;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("another ferryd is already answering on {0}")]
    InUse(PathBuf),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("admin group {0:?} does not exist")]
    NoGroup(String),
}

/// Refuses when another ferryd answers on `path`. Checked before the data
/// dir is opened, so a second ferryd says so instead of failing on the lock.
pub async fn refuse_if_in_use(path: &Path) -> Result<(), SocketError> {
    if path.exists() && UnixStream::connect(path).await.is_ok() {
        return Err(SocketError::InUse(path.to_path_buf()));
    }
    Ok(())
}

/// Binds the control socket at `path` with the right mode, replacing a stale one.
pub async fn bind(path: &Path, admin_group: Option<&str>) -> Result<UnixListener, SocketError> {
    let io = |op, source| SocketError::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    refuse_if_in_use(path).await?;
    if path.exists() {
        tracing::info!(path = %path.display(), "removing stale socket");
        std::fs::remove_file(path).map_err(|e| io("removing stale socket", e))?;
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| io("creating socket directory", e))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(|e| io("binding", e))?;
    let mode = match admin_group {
        Some(name) => {
            let group = nix::unistd::Group::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| SocketError::NoGroup(name.to_string()))?;
            nix::unistd::chown(&tmp, None, Some(group.gid))
                .map_err(|e| io("setting the socket's group", e.into()))?;
            0o660
        }
        None => 0o600,
    };
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io("setting the socket's mode", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("placing the socket", e))?;
    Ok(listener)
}

/// Serves connections until `shutdown` turns true, then waits for the
/// connections in flight to finish.
pub async fn serve(app: Arc<App>, listener: UnixListener, mut shutdown: Shutdown) {
    let (max, timeout) = {
        let cfg = app.config.read().unwrap();
        (cfg.max_connections, cfg.request_timeout)
    };
    let slots = Arc::new(Semaphore::new(max));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("semaphore never closes"),
            () = shutdown.wait() => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of descriptors and the like: wait, never die.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.wait() => break,
        };
        let actor = peer_actor(&stream);
        let app = app.clone();
        let done = done_tx.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let app = app.clone();
                let actor = actor.clone();
                let shutdown = shutdown.clone();
                async move { Ok::<_, Infallible>(handle(app, actor, req, shutdown, timeout).await) }
            });
            if let Err(e) = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(timeout)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(error = %e, "control connection ended with an error");
            }
            drop(permit);
            drop(done);
        });
    }
    drop(done_tx);
    // Every connection task holds a sender; all dropped means all finished.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(15), done_rx.recv()).await;
}

/// The peer's uid (and name) as the actor; uid 0 name "root".
fn peer_actor(stream: &UnixStream) -> Actor {
    match stream.peer_cred() {
        Ok(cred) => {
            let uid = cred.uid();
            let name = nix::unistd::User::from_uid(uid.into())
                .ok()
                .flatten()
                .map(|u| u.name)
                .unwrap_or_else(|| format!("uid{uid}"));
            Actor::User { uid, name }
        }
        Err(_) => Actor::User {
            uid: u32::MAX,
            name: "unknown".into(),
        },
    }
}

pub fn json_response(status: u16, value: &impl serde::Serialize) -> http::Response<Body> {
    let (status, body) = match serde_json::to_vec(value) {
        Ok(b) => (status, b),
        Err(e) => {
            tracing::error!(error = %e, "response not serializable");
            let err = ApiError::new(ErrorCode::Internal, format!("answer not serializable: {e}"));
            (500, serde_json::to_vec(&err).unwrap_or_default())
        }
    };
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed())
        .expect("valid response parts")
}

pub fn error_response(e: &ApiError) -> http::Response<Body> {
    json_response(e.code.http_status(), e)
}

/// An answer whose body is sent as the chunks arrive.
fn stream_response(
    content_type: &str,
    chunks: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> http::Response<Body> {
    let chunks =
        futures::stream::unfold(
            chunks,
            |mut rx| async move { rx.recv().await.map(|c| (c, rx)) },
        );
    let body = StreamBody::new(futures::StreamExt::map(chunks, |r| r.map(Frame::data)));
    http::Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(BodyExt::boxed(body))
        .expect("valid response parts")
}

async fn handle(
    app: Arc<App>,
    actor: Actor,
    req: http::Request<Incoming>,
    shutdown: Shutdown,
    timeout: std::time::Duration,
) -> http::Response<Body> {
    let path = req.uri().path().to_string();
    if req.method() != Method::POST {
        return error_response(&ApiError::new(
            ErrorCode::BadRequest,
            format!("{} {path}: only POST is served", req.method()),
        ));
    }
    let body = Limited::new(req.into_body(), MAX_REQUEST_BYTES).collect();
    let Ok(body) = tokio::time::timeout(timeout, body).await else {
        return error_response(&ApiError::new(
            ErrorCode::BadRequest,
            format!("request body not received within {}s", timeout.as_secs()),
        ));
    };
    let body = match body {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let msg = if e.is::<http_body_util::LengthLimitError>() {
                format!("request larger than {MAX_REQUEST_BYTES} bytes")
            } else {
                format!("request body unreadable: {e}")
            };
            return error_response(&ApiError::new(ErrorCode::BadRequest, msg));
        }
    };
    match path.as_str() {
        "/v1" => match serde_json::from_slice(&body) {
            Ok(request) => match api::dispatch(&app, actor, request, shutdown).await {
                Ok(resp) => json_response(200, &resp),
                Err(e) => error_response(&e),
            },
            Err(e) => error_response(&ApiError::new(
                ErrorCode::BadRequest,
                format!("not a ferryd request: {e}"),
            )),
        },
        "/v1/export" => match serde_json::from_slice(&body) {
            Ok(q) => match api::export::export(&app, q) {
                Ok(e) => stream_response(e.content_type, e.chunks),
                Err(e) => error_response(&e),
            },
            Err(e) => error_response(&ApiError::new(
                ErrorCode::BadRequest,
                format!("not an export request: {e}"),
            )),
        },
        _ => error_response(&ApiError::new(
            ErrorCode::NotFound,
            format!("no such path {path}"),
        )),
    }
}

//! A client of ferryd's control socket: HTTP/1.1, one connection per call.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use crate::wire::{ApiError, ErrorCode, Request, Response};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("ferryd is not running (no socket at {0})")]
    NotRunning(PathBuf),
    #[error("cannot reach ferryd at {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("connection to ferryd failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("ferryd answered something unreadable (HTTP {status}): {detail}")]
    Garbled { status: u16, detail: String },
    // Transparent: with `{0}` plus `#[from]`, `{:#}` printed the message twice.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl ClientError {
    /// The API's error code, when ferryd answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api(e) => Some(e.code),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

/// A raw HTTP exchange: status and body.
pub struct RawAnswer {
    pub status: u16,
    pub body: hyper::body::Incoming,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Client {
            socket: socket.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends `body` to `path` and hands back the streaming answer.
    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> Result<RawAnswer, ClientError> {
        let stream = UnixStream::connect(&self.socket).await.map_err(|e| {
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) {
                ClientError::NotRunning(self.socket.clone())
            } else {
                ClientError::Connect {
                    path: self.socket.clone(),
                    source: e,
                }
            }
        })?;
        let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = http::Request::post(path)
            .header(http::header::HOST, "ferryd")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("static request parts are valid");
        let resp = sender.send_request(req).await?;
        Ok(RawAnswer {
            status: resp.status().as_u16(),
            body: resp.into_body(),
        })
    }

    /// One request, one typed answer.
    pub async fn call(&self, req: &Request) -> Result<Response, ClientError> {
        let body = serde_json::to_vec(req).expect("requests always serialize");
        let answer = self.post_raw("/v1", body).await?;
        let bytes = answer.body.collect().await?.to_bytes();
        decode_answer(answer.status, &bytes)
    }
}

/// Reads a JSON answer: a [`Response`] on 200, an [`ApiError`] otherwise.
pub fn decode_answer(status: u16, bytes: &[u8]) -> Result<Response, ClientError> {
    let garbled = |detail: String| ClientError::Garbled { status, detail };
    if status == 200 {
        serde_json::from_slice(bytes).map_err(|e| garbled(e.to_string()))
    } else {
        let err: ApiError = serde_json::from_slice(bytes)
            .map_err(|_| garbled(String::from_utf8_lossy(bytes).chars().take(200).collect()))?;
        Err(ClientError::Api(err))
    }
}

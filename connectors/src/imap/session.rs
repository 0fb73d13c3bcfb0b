//! The command loop: send one tagged command, hand each untagged response to
//! the caller, and turn the tagged answer into a typed result.
//!
//! async-imap gives the framing and imap-proto parsing; its high-level calls
//! are not used, login included, because they fold response codes into
//! strings (APPENDUID, [UNAVAILABLE], [CAPABILITY ...]) and have no per-step
//! timeout. Commands are tagged here.
//! Every read and write here is bounded by the endpoint's timeout; after a
//! timeout or I/O failure the connection is out of step, so it is marked
//! broken and every later call fails fast with a Connection-class error.

use std::io;
use std::time::Duration;

use async_imap::Client;
use async_imap::imap_proto::rfc4315::UidSetMember;
use async_imap::imap_proto::{Outcome, RequestId, Response, ResponseCode, Status};
use futures::FutureExt;
use tokio::io::AsyncWriteExt;

use super::parse::classify;
use super::tls::Stream;
use crate::{ConnectorError, ErrorClass, Result};

/// The tagged end of a command, with what we use of its response code.
#[derive(Debug)]
pub(crate) struct Tagged {
    /// `OK`, `NO`, `BAD` (imap-proto's status is not `Clone`).
    pub status: &'static str,
    /// `[APPENDUID uidvalidity uid]` (UIDPLUS): the first UID of the set.
    pub append_uid: Option<(u32, u32)>,
    /// The whole APPENDUID set, which a MULTIAPPEND answer spreads over
    /// ranges and lists (`5:9`, `5,7:9`).
    pub append_uid_set: Option<(u32, Vec<UidSetMember>)>,
    /// `[TRYCREATE]`: the target folder does not exist.
    pub try_create: bool,
    /// `[CAPABILITY ...]`, as a login's answer carries it.
    pub caps: Option<Vec<String>>,
    /// The code as parsed, for messages; unknown codes stay in `text`.
    pub code: Option<String>,
    pub text: String,
}

impl Tagged {
    pub fn new(status: &Status, outcome: &Outcome<'_>) -> Tagged {
        let append_uid = match &outcome.code {
            Some(ResponseCode::AppendUid(validity, members)) => members.first().map(|m| match m {
                UidSetMember::Uid(u) => (*validity, *u),
                UidSetMember::UidRange(r) => (*validity, *r.start()),
            }),
            _ => None,
        };
        let append_uid_set = match &outcome.code {
            Some(ResponseCode::AppendUid(validity, members)) => Some((*validity, members.clone())),
            _ => None,
        };
        Tagged {
            status: match status {
                Status::Ok => "OK",
                Status::No => "NO",
                Status::Bad => "BAD",
                Status::PreAuth => "PREAUTH",
                Status::Bye => "BYE",
            },
            append_uid,
            append_uid_set,
            try_create: matches!(outcome.code, Some(ResponseCode::TryCreate)),
            caps: match &outcome.code {
                Some(ResponseCode::Capabilities(list)) => Some(super::capability_names(list)),
                _ => None,
            },
            code: outcome.code.as_ref().map(|c| format!("{c:?}")),
            text: outcome.information.as_deref().unwrap_or("").to_string(),
        }
    }

    /// The answer as the server wrote it after the tag, for error messages.
    pub fn is_ok(&self) -> bool {
        self.status == "OK"
    }

    pub fn describe(&self) -> String {
        let status = self.status;
        match &self.code {
            Some(code) => format!("{status} [{code}] {}", self.text),
            None => format!("{status} {}", self.text),
        }
    }
}

pub(crate) struct Conn {
    client: Client<Stream>,
    /// Tags sent so far.
    tags: u32,
    pub endpoint: String,
    timeout: Duration,
    broken: bool,
    /// Text of an untagged BYE, to explain the close that follows it.
    bye: Option<String>,
}

/// Why a connection was dropped when the server's answer broke the parser.
pub(crate) const UNPARSEABLE: &str = "the server sent an answer that could not be parsed";

impl Conn {
    pub fn new(client: Client<Stream>, endpoint: String, timeout: Duration) -> Conn {
        Conn {
            client,
            tags: 0,
            endpoint,
            timeout,
            broken: false,
            bye: None,
        }
    }

    pub fn io_error(&mut self, op: &'static str, source: io::Error) -> ConnectorError {
        self.broken = true;
        ConnectorError::Io {
            endpoint: self.endpoint.clone(),
            op,
            source,
        }
    }

    fn timed_out(&mut self, op: &'static str) -> ConnectorError {
        let t = self.timeout;
        self.io_error(
            op,
            io::Error::new(io::ErrorKind::TimedOut, format!("no answer within {t:?}")),
        )
    }

    pub fn server_error(
        &self,
        op: &'static str,
        class: ErrorClass,
        text: String,
    ) -> ConnectorError {
        ConnectorError::Server {
            endpoint: self.endpoint.clone(),
            op,
            class: classify(&text, class),
            text,
        }
    }

    pub fn protocol_error(&self, op: &'static str, text: impl Into<String>) -> ConnectorError {
        ConnectorError::Protocol {
            endpoint: self.endpoint.clone(),
            op,
            text: text.into(),
        }
    }

    /// Sends one tagged command line (no CRLF).
    pub async fn send(&mut self, op: &'static str, command: &str) -> Result<RequestId> {
        if self.broken {
            return Err(self.io_error(
                op,
                io::Error::new(
                    io::ErrorKind::NotConnected,
                    "connection broken by an earlier error",
                ),
            ));
        }
        self.tags += 1;
        let tag = format!("F{}", self.tags);
        self.write_raw(op, format!("{tag} {command}\r\n").as_bytes())
            .await?;
        Ok(RequestId(tag))
    }

    /// Writes raw bytes (a literal's content) and flushes.
    pub async fn write_raw(&mut self, op: &'static str, bytes: &[u8]) -> Result<()> {
        let stream = self.client.get_mut();
        let write = async {
            stream.write_all(bytes).await?;
            stream.flush().await
        };
        match tokio::time::timeout(self.timeout, write).await {
            Err(_) => Err(self.timed_out(op)),
            Ok(Err(e)) => Err(self.io_error(op, e)),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Reads the next response and hands it to `f`; the end of the stream
    /// is an error. (async-imap's response type cannot be named outside it.)
    pub async fn next<T>(
        &mut self,
        op: &'static str,
        f: impl FnOnce(&Response<'_>) -> T,
    ) -> Result<T> {
        // imap-proto panics on some malformed answers (a non-ASCII byte
        // right after a response code): that is the server's fault, so it
        // fails this connection, never the task that reads it.
        let read = std::panic::AssertUnwindSafe(self.client.read_response()).catch_unwind();
        match tokio::time::timeout(self.timeout, read).await {
            Err(_) => Err(self.timed_out(op)),
            Ok(Err(_)) => {
                self.broken = true;
                Err(self.protocol_error(op, UNPARSEABLE))
            }
            Ok(Ok(Err(e))) => Err(self.io_error(op, e)),
            Ok(Ok(Ok(Some(r)))) => {
                if let Response::Data {
                    status: Status::Bye,
                    outcome,
                } = r.parsed()
                {
                    self.bye = Some(outcome.information.as_deref().unwrap_or("").to_string());
                }
                Ok(f(r.parsed()))
            }
            Ok(Ok(Ok(None))) => {
                self.broken = true;
                match self.bye.take() {
                    // A server that hangs up saying "too many connections"
                    // wants a later retry, not a reconnect storm.
                    Some(text) if super::parse::is_throttle(&text) => {
                        Err(self.server_error(op, ErrorClass::Throttled, format!("BYE {text}")))
                    }
                    bye => {
                        let why = match bye {
                            Some(text) => format!("server closed the connection: BYE {text}"),
                            None => "server closed the connection".to_string(),
                        };
                        Err(self.io_error(op, io::Error::new(io::ErrorKind::UnexpectedEof, why)))
                    }
                }
            }
        }
    }

    /// Reads until the tagged answer for `id`, handing every other response
    /// to `on_untagged`.
    pub async fn finish<F>(
        &mut self,
        op: &'static str,
        id: &RequestId,
        mut on_untagged: F,
    ) -> Result<Tagged>
    where
        F: FnMut(&Response<'_>) -> Result<()>,
    {
        loop {
            let done = self
                .next(op, |response| match response {
                    Response::Done {
                        tag,
                        status,
                        outcome,
                    } if tag == id => Ok(Some(Tagged::new(status, outcome))),
                    other => on_untagged(other).map(|()| None),
                })
                .await??;
            if let Some(tagged) = done {
                return Ok(tagged);
            }
        }
    }

    /// Waits for the `+` that invites a synchronizing literal. A tagged
    /// answer instead means the server ended the command early (refused
    /// it); it is handed back and nothing more may be sent for `id`.
    pub async fn continuation(
        &mut self,
        op: &'static str,
        id: &RequestId,
    ) -> Result<Option<Tagged>> {
        loop {
            let step = self
                .next(op, |response| match response {
                    Response::Continue { .. } => Some(None),
                    Response::Done {
                        tag,
                        status,
                        outcome,
                    } if tag == id => Some(Some(Tagged::new(status, outcome))),
                    _ => None,
                })
                .await?;
            if let Some(early) = step {
                return Ok(early);
            }
        }
    }

    /// Runs one command; a NO or BAD becomes a `Server` error of class
    /// `on_refusal` (or Throttled when the server says so).
    pub async fn run<F>(
        &mut self,
        op: &'static str,
        command: &str,
        on_refusal: ErrorClass,
        on_untagged: F,
    ) -> Result<Tagged>
    where
        F: FnMut(&Response<'_>) -> Result<()>,
    {
        let id = self.send(op, command).await?;
        let tagged = self.finish(op, &id, on_untagged).await?;
        self.check(op, tagged, on_refusal)
    }

    pub fn check(
        &self,
        op: &'static str,
        tagged: Tagged,
        on_refusal: ErrorClass,
    ) -> Result<Tagged> {
        if tagged.is_ok() {
            Ok(tagged)
        } else {
            Err(self.server_error(op, on_refusal, tagged.describe()))
        }
    }

    /// Marks the connection as finished (after LOGOUT).
    pub fn close(&mut self) {
        self.broken = true;
    }
}

//! Microsoft Graph as Exchange Online's way in.
//!
//! - `auth`: app-only sign-in (client credentials, with a secret or a
//!   certificate assertion), one token cache per application, and the
//!   XOAUTH2 string Exchange Online's IMAP takes.
//! - `budget`: Exchange Online's limits per mailbox and application, one
//!   budget shared by every caller in the process.
//! - `client`: the HTTP core every request goes through (token, budget,
//!   `Retry-After`, 503/504 backoff), and `Mailbox`, acting for one user.
//! - `folders`, `messages`, `import`, `items`, `delta`, `batch`: the Graph
//!   resources, one file each; `model` holds their wire shapes.
//!
//! - `mime`: a MIME message read into that JSON create.
//! - `session`: a mailbox as the engine's copy destination, items found
//!   by their origin.
//! - `source`: a mailbox as a keyed source (tenant to tenant): deltas as
//!   cursors, mail as MIME, other items as `exportItems` streams.
//!
//! Which way an item goes in, and what it keeps:
//! - the import API (`import`): a full-fidelity item (`exportItems`, EWS
//!   `ExportItems`) kept whole, any item class, into a folder of its class
//!   made through the mailbox API (`items`); no origin can be stamped on
//!   it, so it is found by the digest of its stream exported back;
//! - the JSON create (`messages::create_message`): received mail with its
//!   times, read state, flag and categories, found by its origin; Exchange
//!   rebuilds the headers (only five `x-` headers pass), so the source's
//!   bytes are not kept;
//! - the MIME create (`create_mime_draft`): the bytes kept exactly, but
//!   Exchange Online makes every such item a draft.
//!
//! No token, secret or pre-authenticated URL appears in an error or a log
//! line: errors carry the operation, the status and Graph's error code.

pub mod auth;
pub mod batch;
pub mod budget;
pub mod client;
pub mod delta;
pub mod folders;
pub mod import;
pub mod items;
pub mod messages;
pub mod mime;
pub mod model;
pub mod session;
pub mod source;

pub use auth::{AccessToken, AppAuth, Credential, EXCHANGE_IMAP_SCOPE, GRAPH_SCOPE};
pub use budget::{Budget, BudgetState, Budgets, Limits};
pub use client::{Graph, GraphConfig, Mailbox};
pub use reqwest::Method;
pub use session::GraphSession;
pub use source::GraphSource;

/// What a Graph call can fail with. Messages name the operation and what
/// the service said, never a credential.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A credential file could not be read or understood.
    #[error("credential {path}: {reason}")]
    Credential { path: String, reason: String },
    /// The token endpoint refused the application.
    #[error("sign-in refused by {authority} (HTTP {status}): {code}: {description}")]
    SignIn {
        authority: String,
        status: u16,
        code: String,
        description: String,
    },
    /// Graph answered with an error.
    #[error("{op}: HTTP {status}: {code}: {message}")]
    Http {
        op: String,
        status: u16,
        code: String,
        message: String,
    },
    /// The request never got an answer.
    #[error("{op}: {reason}")]
    Transport { op: String, reason: String },
    /// Graph answered something this client cannot read.
    #[error("{op}: unexpected answer: {reason}")]
    Protocol { op: String, reason: String },
    /// The caller asked for something Graph cannot do.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// The HTTP status of a Graph error, if the service answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Http { status, .. } | Error::SignIn { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A transport error stripped of its URL (an import URL carries a token).
    pub(crate) fn transport(op: &str, e: reqwest::Error) -> Error {
        let e = e.without_url();
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            reason.push_str(": ");
            reason.push_str(&s.to_string());
            source = s.source();
        }
        Error::Transport {
            op: op.to_string(),
            reason,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

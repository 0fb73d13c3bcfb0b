//! The crate's one error type. Every variant names the endpoint; none ever
//! carries a password, a token or an `Authorization` header.

use std::time::Duration;

use crate::types::ApiVersion;

#[derive(Debug, thiserror::Error)]
pub enum EwsError {
    #[error("{endpoint}: bad configuration: {reason}")]
    Config { endpoint: String, reason: String },

    #[error("{endpoint}: cannot connect: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{endpoint}: {operation}: no answer within {timeout:?}")]
    Timeout {
        endpoint: String,
        operation: &'static str,
        timeout: Duration,
    },

    #[error("{endpoint}: {operation}: the connection failed: {reason}")]
    Http {
        endpoint: String,
        operation: &'static str,
        reason: String,
    },

    #[error("{endpoint}: login refused for {login} ({auth} authentication, HTTP 401)")]
    Unauthorized {
        endpoint: String,
        login: String,
        auth: &'static str,
    },

    #[error(
        "{endpoint}: {login} may not act for {mailbox} (ErrorImpersonateUserDenied): \
         the account needs the ApplicationImpersonation role over that mailbox"
    )]
    ImpersonationDenied {
        endpoint: String,
        login: String,
        mailbox: String,
    },

    #[error(
        "{endpoint}: the sync state of folder {folder} is no longer valid \
         (ErrorInvalidSyncStateData): the folder must be synced again from the start"
    )]
    InvalidSyncState { endpoint: String, folder: String },

    #[error("{endpoint}: {operation} needs {needs} or later; the server speaks {server}")]
    Unsupported {
        endpoint: String,
        operation: &'static str,
        needs: ApiVersion,
        server: ApiVersion,
    },

    #[error("{endpoint}: {operation}: still throttled after {attempts} tries ({last})")]
    Throttled {
        endpoint: String,
        operation: &'static str,
        attempts: u32,
        last: String,
    },

    #[error("{endpoint}: {operation}: {code}: {message}")]
    Response {
        endpoint: String,
        operation: &'static str,
        code: String,
        message: String,
    },

    #[error("{endpoint}: {operation}: HTTP {status}")]
    Status {
        endpoint: String,
        operation: &'static str,
        status: u16,
    },

    #[error("{endpoint}: {operation}: malformed answer: {reason}")]
    Malformed {
        endpoint: String,
        operation: &'static str,
        reason: String,
    },
}

impl EwsError {
    /// The EWS response code, where the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            EwsError::Response { code, .. } => Some(code),
            EwsError::ImpersonationDenied { .. } => Some("ErrorImpersonateUserDenied"),
            EwsError::InvalidSyncState { .. } => Some("ErrorInvalidSyncStateData"),
            _ => None,
        }
    }

    /// Whether the same call may succeed later (network trouble, throttling
    /// that outlasted the retries).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            EwsError::Connect { .. }
                | EwsError::Timeout { .. }
                | EwsError::Http { .. }
                | EwsError::Throttled { .. }
        ) || matches!(self, EwsError::Status { status, .. } if *status >= 500)
    }
}

pub type Result<T, E = EwsError> = std::result::Result<T, E>;

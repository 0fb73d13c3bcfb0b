use thiserror::Error;

pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;

/// How the engine should treat a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ErrorClass {
    /// Line dropped, reset, timed out: reconnect and retry.
    Connection,
    /// Server says try later ([UNAVAILABLE], [LIMIT], throttling): back off and retry.
    Throttled,
    /// Login refused: retrying will not help.
    Auth,
    /// The server refused this one item (NO/BAD on APPEND, too big, broken).
    Item,
    /// The folder cannot be opened or created.
    Folder,
    /// Anything else: a protocol violation or a local I/O failure.
    Other,
}

#[derive(Debug, Error)]
pub enum ConnectorError {
    #[error("{op} on {endpoint}: {source}")]
    Io {
        endpoint: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{op} on {endpoint}: server said {text}")]
    Server {
        endpoint: String,
        op: &'static str,
        class: ErrorClass,
        text: String,
    },
    #[error("login to {endpoint} as {user} refused: {text}")]
    Auth {
        endpoint: String,
        user: String,
        text: String,
    },
    #[error("{op} on {endpoint}: {text}")]
    Protocol {
        endpoint: String,
        op: &'static str,
        text: String,
    },
    #[error("no folder is open")]
    NoFolder,
    /// A local store (Maildir) failed on a file system call; names the file.
    #[error("{op} {}: {source}", path.display())]
    LocalIo {
        op: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The endpoint cannot represent what was asked (a folder name, a keyword),
    /// found without asking a server.
    #[error("{op} on {endpoint}: {text}")]
    Refused {
        endpoint: String,
        op: &'static str,
        class: ErrorClass,
        text: String,
    },
    /// A folder-mapping rule or filter that does not parse.
    #[error("folder rule {rule:?}: {text}")]
    Mapping { rule: String, text: String },
    /// The source no longer knows the cursor it gave for a folder (EWS
    /// `ErrorInvalidSyncStateData`): the folder is read again from none.
    #[error("{endpoint}: the change cursor of folder {folder} is no longer valid")]
    CursorInvalid { endpoint: String, folder: String },
}

impl ConnectorError {
    pub fn class(&self) -> ErrorClass {
        match self {
            ConnectorError::Io { .. } => ErrorClass::Connection,
            ConnectorError::Server { class, .. } => *class,
            ConnectorError::Auth { .. } => ErrorClass::Auth,
            ConnectorError::Protocol { .. } => ErrorClass::Other,
            ConnectorError::NoFolder => ErrorClass::Other,
            // A local disk error is not a dropped line: reconnecting will not fix it.
            ConnectorError::LocalIo { .. } => ErrorClass::Other,
            ConnectorError::Refused { class, .. } => *class,
            ConnectorError::Mapping { .. } => ErrorClass::Other,
            ConnectorError::CursorInvalid { .. } => ErrorClass::Folder,
        }
    }

    /// The endpoint that answered (or failed to), as `host:port` for IMAP.
    pub fn endpoint(&self) -> Option<&str> {
        match self {
            ConnectorError::Io { endpoint, .. }
            | ConnectorError::Server { endpoint, .. }
            | ConnectorError::Auth { endpoint, .. }
            | ConnectorError::Protocol { endpoint, .. }
            | ConnectorError::Refused { endpoint, .. }
            | ConnectorError::CursorInvalid { endpoint, .. } => Some(endpoint),
            _ => None,
        }
    }

    /// Whether a retry (after reconnecting, with backoff) may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self.class(), ErrorClass::Connection | ErrorClass::Throttled)
    }
}

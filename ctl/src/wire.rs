//! Requests and responses of the control API.
//!
//! Every request is `POST /v1` with a JSON [`Request`]; the answer is a JSON
//! [`Response`] with status 200, or an [`ApiError`] with a 4xx/5xx status.
//! Secrets (passwords, tokens) travel only in requests, over the local
//! socket, and are never echoed back.

use ferry_events::{EndpointKind, PassKind, TlsMode};
use ferry_projections::{BatchView, EndpointView, MailboxView};
use serde::{Deserialize, Serialize};

/// Largest request body ferryd reads (a 2,000-row CSV fits many times over).
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Status,
    EndpointAdd {
        name: String,
        kind: EndpointKind,
        host: String,
        port: u16,
        tls: TlsMode,
        #[serde(default)]
        ca_file: Option<String>,
        #[serde(default)]
        admin_user: Option<String>,
        /// Read by ferryctl from `--password-file`; stored in the secret store.
        #[serde(default)]
        password: Option<String>,
        #[serde(default)]
        max_connections: Option<u32>,
        /// Log users in with SASL XOAUTH2, tokens from here.
        #[serde(default)]
        oauth: Option<ferry_events::TokenSource>,
    },
    EndpointVerify {
        name: String,
        /// Log in as the admin acting for this user (proves impersonation).
        #[serde(default)]
        as_user: Option<String>,
    },
    EndpointList,
    BatchCreate {
        name: String,
        source: String,
        destination: String,
        /// The CSV file's contents.
        csv: String,
        #[serde(default)]
        max_concurrent: Option<u32>,
        /// Items larger than this many bytes are skipped, with the reason.
        #[serde(default)]
        max_item_bytes: Option<u64>,
        /// Failed items a mailbox may collect in a pass before it fails.
        #[serde(default)]
        error_budget: Option<u32>,
        /// `REGEX->REPLACEMENT` folder rules, first match wins.
        #[serde(default)]
        folder_rules: Vec<String>,
        #[serde(default)]
        include_folders: Vec<String>,
        #[serde(default)]
        exclude_folders: Vec<String>,
    },
    BatchAddUsers {
        name: String,
        csv: String,
        #[serde(default)]
        expected_version: Option<u64>,
    },
    BatchStart {
        name: String,
        pass: PassKind,
        #[serde(default)]
        older_than_days: Option<u32>,
        /// Not before this time (RFC 3339).
        #[serde(default)]
        at: Option<String>,
        /// The batch stream version the caller saw; refused when stale.
        #[serde(default)]
        expected_version: Option<u64>,
    },
    BatchSchedule {
        name: String,
        delta: String,
        #[serde(default)]
        tz: Option<String>,
    },
    BatchShow {
        name: String,
    },
    BatchList,
    BatchStop {
        name: String,
    },
    BatchComplete {
        name: String,
    },
    BatchDelete {
        name: String,
        #[serde(default)]
        force: bool,
    },
    MailboxShow {
        address: String,
    },
    Cutover {
        addresses: Vec<String>,
        #[serde(default)]
        force: bool,
    },
    MxCheck {
        domain: String,
    },
    MxSwitch {
        domain: String,
        to: String,
    },
    /// Events with `seq >= since`, at most `limit`; when none exist yet,
    /// waits up to `wait_ms` for one (long poll, for `--follow`).
    Events {
        since: u64,
        #[serde(default)]
        limit: Option<u32>,
        #[serde(default)]
        wait_ms: Option<u64>,
    },
    /// `batch show NAME --as-of TIME`: the views rebuilt up to `time` (RFC 3339).
    BatchShowAsOf {
        name: String,
        time: String,
    },
    /// `mailbox show ADDRESS --as-of TIME`.
    MailboxShowAsOf {
        address: String,
        time: String,
    },
    /// What `ferryctl report` renders.
    Report {
        batch: String,
    },
    /// Records that a deleted batch's export (`audit export` with
    /// `archive`) was written to `file`; ferryd exports again and checks
    /// `events` and `sha256` before recording.
    BatchArchive {
        name: String,
        file: String,
        events: u64,
        sha256: String,
    },
}

impl Request {
    /// The verb, for logs (never the secret-bearing fields).
    pub fn op(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::EndpointAdd { .. } => "endpoint_add",
            Request::EndpointVerify { .. } => "endpoint_verify",
            Request::EndpointList => "endpoint_list",
            Request::BatchCreate { .. } => "batch_create",
            Request::BatchAddUsers { .. } => "batch_add_users",
            Request::BatchStart { .. } => "batch_start",
            Request::BatchSchedule { .. } => "batch_schedule",
            Request::BatchShow { .. } => "batch_show",
            Request::BatchList => "batch_list",
            Request::BatchStop { .. } => "batch_stop",
            Request::BatchComplete { .. } => "batch_complete",
            Request::BatchDelete { .. } => "batch_delete",
            Request::MailboxShow { .. } => "mailbox_show",
            Request::Cutover { .. } => "cutover",
            Request::MxCheck { .. } => "mx_check",
            Request::MxSwitch { .. } => "mx_switch",
            Request::Events { .. } => "events",
            Request::BatchShowAsOf { .. } => "batch_show_as_of",
            Request::MailboxShowAsOf { .. } => "mailbox_show_as_of",
            Request::Report { .. } => "report",
            Request::BatchArchive { .. } => "batch_archive",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    pub version: String,
    pub pid: u32,
    pub data_dir: String,
    pub head: u64,
    pub uptime_s: u64,
    pub endpoints: usize,
    pub batches: usize,
    pub mailboxes: usize,
    pub passes_running: usize,
    pub draining: bool,
}

/// One event as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub seq: u64,
    pub time: String,
    pub stream: String,
    pub stream_version: u64,
    pub actor: String,
    pub event_type: String,
    pub event: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum Response {
    /// A command was recorded; `seq` is the last event it appended.
    Done {
        message: String,
        seq: u64,
    },
    Status(StatusView),
    Endpoint(Box<EndpointView>),
    Endpoints(Vec<EndpointView>),
    Batch(Box<BatchView>),
    Batches(Vec<BatchView>),
    Mailbox(Box<MailboxView>),
    Events {
        events: Vec<EventRecord>,
        head: u64,
    },
    Report(Box<crate::report::ReportData>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request could not be read (not JSON, unknown op, too large).
    BadRequest,
    /// The request was understood but its content is invalid (a bad CSV, cron, address).
    Invalid,
    NotFound,
    /// The state does not allow it (stale version, delete while syncing).
    Conflict,
    /// The daemon is draining for shutdown.
    Unavailable,
    /// The feature behind this command is not built yet.
    NotImplemented,
    Internal,
}

impl ErrorCode {
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Invalid => 422,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::Unavailable => 503,
            ErrorCode::NotImplemented => 501,
            ErrorCode::Internal => 500,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

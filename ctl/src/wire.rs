//! Requests and responses of the control API.
//!
//! Every request is `POST /v1` with a JSON [`Request`]; the answer is a JSON
//! [`Response`] with status 200, or an [`ApiError`] with a 4xx/5xx status.
//! Secrets (passwords, tokens) travel only in requests, over the local
//! socket, and are never echoed back.

use ferry_events::{EndpointKind, PassKind, TlsMode};
use ferry_projections::mailboxes::{Counts, LastPass};
use ferry_projections::{BatchView, EndpointView, MailboxState, MailboxView};
use serde::{Deserialize, Serialize};

/// `batch show`: the batch, how each of its mailboxes stands, and when
/// its schedule fires next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchDetail {
    #[serde(flatten)]
    pub batch: BatchView,
    pub mailbox_stats: Vec<MailboxStats>,
    /// Summed over the mailboxes.
    pub totals: Counts,
    /// Items seen at the sources and not yet copied (see [`MailboxView::lag`]).
    pub lag: u64,
    pub next_fire_us: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailboxStats {
    pub address: String,
    pub destination: String,
    pub state: MailboxState,
    pub totals: Counts,
    pub errors: usize,
    pub lag: u64,
    pub passes_run: u64,
    pub last_pass: Option<LastPass>,
    pub last_delta_us: Option<i64>,
    pub cut_over_us: Option<i64>,
}

impl MailboxStats {
    pub fn of(m: &MailboxView) -> MailboxStats {
        MailboxStats {
            address: m.address.clone(),
            destination: m.spec.destination_address.clone(),
            state: m.state,
            totals: m.totals,
            errors: m.errors.len(),
            lag: m.lag(),
            passes_run: m.passes_run,
            last_pass: m.last_pass.clone(),
            last_delta_us: m.last_delta_us,
            cut_over_us: m.cut_over_us,
        }
    }
}

impl BatchDetail {
    pub fn of(b: &BatchView, mailboxes: &[&MailboxView], next_fire_us: Option<i64>) -> Self {
        let mailbox_stats: Vec<MailboxStats> =
            mailboxes.iter().map(|m| MailboxStats::of(m)).collect();
        let mut totals = Counts::default();
        for m in &mailbox_stats {
            totals.copied += m.totals.copied;
            totals.skipped += m.totals.skipped;
            totals.failed += m.totals.failed;
            totals.bytes += m.totals.bytes;
        }
        BatchDetail {
            batch: b.clone(),
            lag: mailbox_stats.iter().map(|m| m.lag).sum(),
            mailbox_stats,
            totals,
            next_fire_us,
        }
    }
}

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
        /// CompleteAfter: not before this time (RFC 3339).
        #[serde(default)]
        at: Option<String>,
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
        /// The MX was changed by hand; record it and verify it.
        #[serde(default)]
        manual: bool,
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
    /// Where the batch's pass reports go. The webhook URL may carry a
    /// token: ferryd keeps it in its secret store.
    BatchNotify {
        name: String,
        #[serde(default)]
        emails: Vec<String>,
        #[serde(default)]
        webhook: Option<String>,
        /// Remove every target first (alone: no more reports).
        #[serde(default)]
        clear: bool,
    },
    /// What remains before and after the MX switch for a batch's domains.
    Checklist {
        batch: String,
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
            Request::BatchNotify { .. } => "batch_notify",
            Request::Checklist { .. } => "checklist",
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
    Batch(Box<BatchDetail>),
    Batches(Vec<BatchView>),
    Mailbox(Box<MailboxView>),
    Events {
        events: Vec<EventRecord>,
        head: u64,
    },
    MxCheck(MxCheckView),
    MxSwitch(MxSwitchView),
    Checklist(ChecklistView),
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

/// MX TTLs above this are a warning: lower them before the switch.
pub const MX_TTL_ADVICE_S: u32 = 3600;

/// `mx check`: what the domain's MX answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MxCheckView {
    pub domain: String,
    pub hosts: Vec<MxHostView>,
    pub ttl: u32,
    /// Set when the TTL is above [`MX_TTL_ADVICE_S`].
    pub warning: Option<String>,
    /// The servers asked.
    pub server: String,
    /// The `MxChecked` event.
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MxHostView {
    pub preference: u16,
    pub host: String,
    /// The registered endpoint(s) this host belongs to, or `unknown`.
    pub endpoint: String,
}

/// `mx switch`: how it was applied and what the authoritative servers answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MxSwitchView {
    pub domain: String,
    pub to: String,
    pub manual: bool,
    /// `RFC 2136 update to IP:PORT (key NAME)` or `recorded as a manual switch`.
    pub applied: String,
    /// Every authoritative server answered the new MX in time.
    pub verified: bool,
    pub servers: Vec<ServerAnswer>,
    /// The `MxVerified` event.
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerAnswer {
    pub server: String,
    pub ok: bool,
    pub detail: String,
}

/// `checklist`: per domain of the batch's mailboxes, each step and whether it is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecklistView {
    pub batch: String,
    pub domains: Vec<DomainChecklist>,
    pub all_done: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainChecklist {
    pub domain: String,
    pub items: Vec<ChecklistItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecklistItem {
    /// `before` or `after` the MX switch.
    pub phase: String,
    pub item: String,
    pub done: bool,
    pub detail: String,
}

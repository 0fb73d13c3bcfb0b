//! Requests and responses of the control API.
//!
//! Every request is `POST /v1` with a JSON [`Request`]; the answer is a JSON
//! [`Response`] with status 200, or an [`ApiError`] with a 4xx/5xx status.
//! Secrets (passwords, tokens) travel only in requests, over the local
//! socket, and are never echoed back.

use std::collections::BTreeMap;

use ferry_events::{EndpointKind, PassKind, TlsMode};
use ferry_projections::mailboxes::{Comparison, Counts, LastPass};
use ferry_projections::{BatchView, EndpointView, MailboxState, MailboxView};
use serde::{Deserialize, Serialize};

use crate::audit::EventRecord;
use crate::report::ReportData;

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
    /// The last verify pass's comparison, by source folder.
    #[serde(default)]
    pub verified: BTreeMap<String, Comparison>,
    /// The fleet's worker that holds the mailbox in the running pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
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
            worker: None,
            verified: m
                .folders
                .iter()
                .filter_map(|(n, f)| Some((n.clone(), f.comparison.clone()?)))
                .collect(),
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
            totals.adopted += m.totals.adopted;
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
    EndpointAdd(EndpointAdd),
    EndpointVerify(EndpointVerify),
    EndpointList,
    BatchCreate(BatchCreate),
    BatchAddUsers(BatchAddUsers),
    BatchStart(BatchStart),
    BatchSchedule(BatchSchedule),
    BatchShow(BatchShow),
    BatchList,
    BatchStop(BatchStop),
    BatchComplete(BatchComplete),
    BatchDelete(BatchDelete),
    MailboxShow(MailboxShow),
    Cutover(Cutover),
    MxCheck(MxCheck),
    MxSwitch(MxSwitch),
    /// Events with `seq >= since`, at most `limit`; when none exist yet,
    /// waits up to `wait_ms` for one (long poll, for `--follow`).
    Events(Events),
    /// Where the batch's pass reports go. The webhook URL may carry a
    /// token: ferryd keeps it in its secret store.
    BatchNotify(BatchNotify),
    /// What remains before and after the MX switch for a batch's domains.
    Checklist(Checklist),
    /// `batch show NAME --as-of TIME`: the views rebuilt up to `time` (RFC 3339).
    BatchShowAsOf(BatchShowAsOf),
    /// `mailbox show ADDRESS --as-of TIME`.
    MailboxShowAsOf(MailboxShowAsOf),
    /// What `ferryctl report` renders.
    Report(Report),
    /// Records that a deleted batch's export (`audit export` with
    /// `archive`) was written to `file`; ferryd exports again and checks
    /// `events` and `sha256` before recording.
    BatchArchive(BatchArchive),
    /// `mailbox set-credentials`: replace a mailbox's logins or passwords.
    MailboxSetCredentials(MailboxSetCredentials),
    /// `batch remove-user`: take a mailbox out of its batch.
    BatchRemoveUser(BatchRemoveUser),
    /// `endpoint update`: change how an endpoint is reached.
    EndpointUpdate(EndpointUpdate),
    /// `endpoint remove`: forget an endpoint no batch names.
    EndpointRemove(EndpointRemove),
    /// A dry run of a full pass: read-only sessions, nothing recorded.
    BatchPlan(BatchPlan),
}

impl Request {
    /// The verb, for logs (never the secret-bearing fields).
    pub fn op(&self) -> &'static str {
        self.kind().0
    }

    /// Whether it changes state: a draining ferryd refuses these.
    pub fn is_mutating(&self) -> bool {
        self.kind().1 == Access::Write
    }

    /// Verb and access of every request, in one table so they cannot drift.
    fn kind(&self) -> (&'static str, Access) {
        use Access::{Read, Write};
        match self {
            Request::Status => ("status", Read),
            Request::EndpointAdd(_) => ("endpoint_add", Write),
            Request::EndpointVerify(_) => ("endpoint_verify", Write),
            Request::EndpointList => ("endpoint_list", Read),
            Request::BatchCreate(_) => ("batch_create", Write),
            Request::BatchAddUsers(_) => ("batch_add_users", Write),
            Request::BatchStart(_) => ("batch_start", Write),
            Request::BatchSchedule(_) => ("batch_schedule", Write),
            Request::BatchShow(_) => ("batch_show", Read),
            Request::BatchList => ("batch_list", Read),
            Request::BatchStop(_) => ("batch_stop", Write),
            Request::BatchComplete(_) => ("batch_complete", Write),
            Request::BatchDelete(_) => ("batch_delete", Write),
            Request::MailboxShow(_) => ("mailbox_show", Read),
            Request::Cutover(_) => ("cutover", Write),
            Request::MxCheck(_) => ("mx_check", Write),
            Request::MxSwitch(_) => ("mx_switch", Write),
            Request::Events(_) => ("events", Read),
            Request::BatchNotify(_) => ("batch_notify", Write),
            Request::Checklist(_) => ("checklist", Read),
            Request::BatchShowAsOf(_) => ("batch_show_as_of", Read),
            Request::MailboxShowAsOf(_) => ("mailbox_show_as_of", Read),
            Request::Report(_) => ("report", Read),
            Request::BatchArchive(_) => ("batch_archive", Write),
            Request::MailboxSetCredentials(_) => ("mailbox_set_credentials", Write),
            Request::BatchRemoveUser(_) => ("batch_remove_user", Write),
            Request::EndpointUpdate(_) => ("endpoint_update", Write),
            Request::EndpointRemove(_) => ("endpoint_remove", Write),
            Request::BatchPlan(_) => ("batch_plan", Read),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointAdd {
    pub name: String,
    pub kind: EndpointKind,
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    #[serde(default)]
    pub ca_file: Option<String>,
    #[serde(default)]
    pub admin_user: Option<String>,
    /// Read by ferryctl from `--password-file`; stored in the secret store.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub max_connections: Option<u32>,
    /// Log users in with SASL XOAUTH2, tokens from here.
    #[serde(default)]
    pub oauth: Option<ferry_events::TokenSource>,
    /// An EWS endpoint's authentication and schema version (`--kind ews`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ews: Option<ferry_events::EwsSettings>,
    /// App-only sign-in: a `graph` endpoint's, or an IMAP endpoint's in
    /// Exchange Online (XOAUTH2 with the application's token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<GraphSignInInput>,
}

/// An Entra ID application as ferryctl read it; the secret and the
/// private key go to the secret store, never to the log.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphSignInInput {
    pub tenant: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub certificate_pem: Option<String>,
    #[serde(default)]
    pub private_key_pem: Option<String>,
    /// `https://login.microsoftonline.com` unless given.
    #[serde(default)]
    pub authority: Option<String>,
    /// `https://graph.microsoft.com/v1.0` unless given.
    #[serde(default)]
    pub graph_url: Option<String>,
}

impl std::fmt::Debug for GraphSignInInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphSignInInput")
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("authority", &self.authority)
            .field("graph_url", &self.graph_url)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointVerify {
    pub name: String,
    /// Log in as the admin acting for this user (proves impersonation).
    #[serde(default)]
    pub as_user: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchCreate {
    pub name: String,
    pub source: String,
    pub destination: String,
    /// The CSV file's contents.
    pub csv: String,
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    /// Items larger than this many bytes are skipped, with the reason.
    #[serde(default)]
    pub max_item_bytes: Option<u64>,
    /// Failed items a mailbox may collect in a pass before it fails.
    #[serde(default)]
    pub error_budget: Option<u32>,
    /// `REGEX->REPLACEMENT` folder rules, first match wins.
    #[serde(default)]
    pub folder_rules: Vec<String>,
    #[serde(default)]
    pub include_folders: Vec<String>,
    #[serde(default)]
    pub exclude_folders: Vec<String>,
    /// Items deleted at the source are removed at the destination by delta passes.
    #[serde(default)]
    pub propagate_deletions: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchAddUsers {
    pub name: String,
    pub csv: String,
    #[serde(default)]
    pub expected_version: Option<u64>,
    /// Rows naming mailboxes already in the batch replace their logins
    /// and passwords instead of being refused.
    #[serde(default)]
    pub update: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchStart {
    pub name: String,
    pub pass: PassKind,
    #[serde(default)]
    pub older_than_days: Option<u32>,
    /// Not before this time (RFC 3339).
    #[serde(default)]
    pub at: Option<String>,
    /// The batch stream version the caller saw; refused when stale.
    #[serde(default)]
    pub expected_version: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSchedule {
    pub name: String,
    pub delta: String,
    #[serde(default)]
    pub tz: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchShow {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchStop {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchComplete {
    pub name: String,
    /// CompleteAfter: not before this time (RFC 3339).
    #[serde(default)]
    pub at: Option<String>,
    /// Complete although some mailboxes are neither cut over nor healthy
    /// (recorded with what it overrode).
    #[serde(default)]
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchDelete {
    pub name: String,
    #[serde(default)]
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxShow {
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cutover {
    pub addresses: Vec<String>,
    #[serde(default)]
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MxCheck {
    pub domain: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MxSwitch {
    pub domain: String,
    pub to: String,
    /// The MX was changed by hand; record it and verify it.
    #[serde(default)]
    pub manual: bool,
}

/// Events with `seq >= since`, at most `limit`; when none exist yet,
/// waits up to `wait_ms` for one (long poll, for `--follow`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Events {
    pub since: u64,
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub wait_ms: Option<u64>,
    /// Only this batch's events (its mailboxes' too).
    #[serde(default)]
    pub batch: Option<String>,
    /// Only this mailbox's events.
    #[serde(default)]
    pub mailbox: Option<String>,
    /// Only events of these types.
    #[serde(default)]
    pub types: Vec<String>,
}

/// Where the batch's pass reports go. The webhook URL may carry a
/// token: ferryd keeps it in its secret store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchNotify {
    pub name: String,
    #[serde(default)]
    pub emails: Vec<String>,
    #[serde(default)]
    pub webhook: Option<String>,
    /// Remove every target first (alone: no more reports).
    #[serde(default)]
    pub clear: bool,
}

/// What remains before and after the MX switch for a batch's domains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checklist {
    pub batch: String,
}

/// `batch show NAME --as-of TIME`: the views rebuilt up to `time` (RFC 3339).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchShowAsOf {
    pub name: String,
    pub time: String,
}

/// `mailbox show ADDRESS --as-of TIME`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxShowAsOf {
    pub address: String,
    pub time: String,
}

/// `batch plan`: what a full pass would do. Each folder option given
/// replaces the batch's own list of that kind, for this plan only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchPlan {
    pub name: String,
    #[serde(default)]
    pub folder_rules: Vec<String>,
    #[serde(default)]
    pub include_folders: Vec<String>,
    #[serde(default)]
    pub exclude_folders: Vec<String>,
}

/// What a full pass would do, per mailbox and source folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanView {
    pub batch: String,
    pub mailboxes: Vec<MailboxPlan>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailboxPlan {
    pub address: String,
    pub folders: Vec<FolderPlanRow>,
    /// Why the mailbox could not be planned (a refused login, ...).
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FolderPlanRow {
    pub folder: String,
    /// `None`: filtered out by the folder options.
    pub destination: Option<String>,
    /// Whether the destination folder exists now.
    pub destination_exists: bool,
    /// Items at the source, and those already copied by this batch.
    pub source_items: u64,
    pub done: u64,
    pub copy_items: u64,
    pub copy_bytes: u64,
    /// Already at the destination: adopted, not copied.
    pub adopt_items: u64,
    /// Over the batch's size limit (or refused by the source): skipped.
    pub skip_items: u64,
    /// Appended by an earlier pass that never heard the outcome: settled
    /// (found at the destination or copied again) by the next pass.
    #[serde(default)]
    pub in_doubt_items: u64,
}

/// What `ferryctl report` renders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub batch: String,
}

/// Records that a deleted batch's export (`audit export` with
/// `archive`) was written to `file`; ferryd exports again and checks
/// `events` and `sha256` before recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchArchive {
    pub name: String,
    pub file: String,
    pub events: u64,
    pub sha256: String,
}

/// A mailbox's logins and passwords; each one given replaces the current one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxSetCredentials {
    pub address: String,
    #[serde(default)]
    pub source_login: Option<String>,
    /// Read by ferryctl from a file; stored in the secret store.
    #[serde(default)]
    pub source_password: Option<String>,
    #[serde(default)]
    pub destination_login: Option<String>,
    #[serde(default)]
    pub destination_password: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRemoveUser {
    pub name: String,
    pub address: String,
}

/// An endpoint's settings; each one given replaces the current one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointUpdate {
    pub name: String,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: Option<TlsMode>,
    #[serde(default)]
    pub ca_file: Option<String>,
    #[serde(default)]
    pub admin_user: Option<String>,
    /// Read by ferryctl from `--password-file`; stored in the secret store.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub max_connections: Option<u32>,
    #[serde(default)]
    pub oauth: Option<ferry_events::TokenSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ews: Option<ferry_events::EwsSettings>,
    /// The application sign-in's parts to replace (a rotated client
    /// secret or certificate, above all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<GraphSignInChange>,
}

/// An application sign-in's parts given to `endpoint update`: each one
/// given replaces the current one. A new secret or certificate replaces
/// the stored credential, which is then forgotten.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphSignInChange {
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub certificate_pem: Option<String>,
    #[serde(default)]
    pub private_key_pem: Option<String>,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default)]
    pub graph_url: Option<String>,
}

impl GraphSignInChange {
    pub fn is_empty(&self) -> bool {
        *self == GraphSignInChange::default()
    }
}

impl std::fmt::Debug for GraphSignInChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphSignInChange")
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("new_secret", &self.client_secret.is_some())
            .field("new_certificate", &self.certificate_pem.is_some())
            .field("authority", &self.authority)
            .field("graph_url", &self.graph_url)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointRemove {
    pub name: String,
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
    /// Each Graph destination mailbox's throttling budget, as
    /// `MAILBOX: throttled by the destination: N s in the last hour; …`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_budgets: Vec<String>,
    /// The fleet sharing this worker's store (PostgreSQL only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetStatus>,
}

/// A fleet's workers as one of them sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetStatus {
    /// The worker answering.
    pub worker: String,
    /// Whether it leads (fires schedules, starts and ends passes).
    pub leads: bool,
    pub workers: Vec<FleetWorker>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetWorker {
    pub name: String,
    pub started_us: i64,
    pub heartbeat_us: i64,
    /// Milliseconds since its last heartbeat, on the database's clock.
    pub heartbeat_age_ms: i64,
    /// The mailboxes it holds by lease now.
    pub leases: Vec<FleetLease>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetLease {
    pub batch: String,
    pub pass_id: u64,
    pub mailbox: String,
    pub lease: u64,
    /// Milliseconds until it expires unless renewed.
    pub expires_in_ms: i64,
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
    Report(Box<ReportData>),
    Plan(PlanView),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests serialize exactly as ferryctl has always sent them.
    #[test]
    fn requests_keep_their_json() {
        let cases = [
            (Request::Status, r#"{"op":"status"}"#),
            (
                Request::EndpointAdd(EndpointAdd {
                    name: "a".into(),
                    kind: EndpointKind::Imap,
                    host: "h".into(),
                    port: 143,
                    tls: TlsMode::StartTls,
                    ca_file: None,
                    admin_user: None,
                    password: None,
                    max_connections: None,
                    oauth: None,
                    ews: None,
                    graph: None,
                }),
                r#"{"op":"endpoint_add","name":"a","kind":"Imap","host":"h","port":143,"tls":"StartTls","ca_file":null,"admin_user":null,"password":null,"max_connections":null,"oauth":null}"#,
            ),
            (
                Request::BatchCreate(BatchCreate {
                    name: "b".into(),
                    source: "s".into(),
                    destination: "d".into(),
                    csv: "x,y\n".into(),
                    max_concurrent: None,
                    max_item_bytes: None,
                    error_budget: None,
                    folder_rules: vec![],
                    include_folders: vec![],
                    exclude_folders: vec![],
                    propagate_deletions: false,
                }),
                r#"{"op":"batch_create","name":"b","source":"s","destination":"d","csv":"x,y\n","max_concurrent":null,"max_item_bytes":null,"error_budget":null,"folder_rules":[],"include_folders":[],"exclude_folders":[],"propagate_deletions":false}"#,
            ),
            (
                Request::BatchStart(BatchStart {
                    name: "b".into(),
                    pass: PassKind::RetryErrors,
                    older_than_days: None,
                    at: None,
                    expected_version: None,
                }),
                r#"{"op":"batch_start","name":"b","pass":"RetryErrors","older_than_days":null,"at":null,"expected_version":null}"#,
            ),
            (
                Request::Cutover(Cutover {
                    addresses: vec![],
                    force: false,
                }),
                r#"{"op":"cutover","addresses":[],"force":false}"#,
            ),
            (
                Request::BatchArchive(BatchArchive {
                    name: "b".into(),
                    file: "/f".into(),
                    events: 3,
                    sha256: "ab".into(),
                }),
                r#"{"op":"batch_archive","name":"b","file":"/f","events":3,"sha256":"ab"}"#,
            ),
        ];
        for (req, json) in cases {
            assert_eq!(serde_json::to_string(&req).unwrap(), json);
            assert_eq!(serde_json::from_str::<Request>(json).unwrap(), req);
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err =
            serde_json::from_str::<Request>(r#"{"op":"batch_show","name":"b","x":1}"#).unwrap_err();
        assert_eq!(err.to_string(), "unknown field `x`, expected `name`");
    }

    #[test]
    fn reads_are_not_mutating() {
        let show = Request::BatchShow(BatchShow { name: "b".into() });
        assert_eq!((show.op(), show.is_mutating()), ("batch_show", false));
        let stop = Request::BatchStop(BatchStop { name: "b".into() });
        assert_eq!((stop.op(), stop.is_mutating()), ("batch_stop", true));
    }
}

//! ferryctl's command line: the clap tree and its value parsers.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::{Args, Parser, Subcommand, ValueEnum};
use ferry_events::PassKind;

#[derive(Parser)]
#[command(name = "ferryctl", version, about = "Drive the mailferry daemon")]
pub struct Cli {
    /// ferryd's control socket.
    #[arg(long, global = true, env = "FERRY_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// The daemon's state at a glance.
    Status,
    #[command(subcommand)]
    Endpoint(EndpointCmd),
    #[command(subcommand)]
    Batch(BatchCmd),
    #[command(subcommand)]
    Mailbox(MailboxCmd),
    /// Cut users over: a final delta pass, then the routing actions.
    Cutover {
        #[arg(required = true)]
        addresses: Vec<String>,
        #[arg(long)]
        force: bool,
    },
    #[command(subcommand)]
    Mx(MxCmd),
    /// Print the event log.
    Events {
        #[arg(long, default_value_t = 1)]
        since: u64,
        /// Keep printing new events as they are recorded.
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        filter: EventFilter,
    },
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Live progress bars per mailbox until the pass ends (every running
    /// batch when none is named).
    Watch { batch: Option<String> },
    /// A self-contained HTML report of a batch.
    Report {
        batch: String,
        #[arg(short = 'o', long)]
        output: PathBuf,
    },
    /// Checks on exported files before a migration; no daemon needed.
    #[command(subcommand)]
    Preflight(PreflightCmd),
    /// Write the batch's PowerShell routing runbooks: Exchange Online setup
    /// and, per user, the cutover steps.
    Runbook {
        batch: String,
        /// Folder to write them to.
        #[arg(short = 'o', long, default_value = ".")]
        dir: PathBuf,
        /// The source mail server that takes mail for users not yet migrated.
        #[arg(long)]
        smart_host: Option<String>,
    },
    /// What remains before and after the MX switch for the batch's domains.
    Checklist { batch: String },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum KindArg {
    Imap,
    Maildir,
    /// Exchange 2010 SP1 to 2019 over Exchange Web Services (a source).
    Ews,
    /// Microsoft Graph (Exchange Online), signed in as an application.
    Graph,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum EwsAuthArg {
    Ntlm,
    Basic,
}

/// An Entra ID application's app-only sign-in: a graph endpoint's, or an
/// IMAP endpoint's in Exchange Online (XOAUTH2 without a token command).
#[derive(clap::Args, Default)]
pub struct GraphSignInArgs {
    /// The tenant: its id or a domain such as contoso.onmicrosoft.com.
    #[arg(long, requires = "client_id")]
    pub tenant: Option<String>,
    /// The application (client) id.
    #[arg(long, requires = "tenant")]
    pub client_id: Option<String>,
    /// File holding the client secret (first line).
    #[arg(long, requires = "tenant", conflicts_with = "certificate_file")]
    pub client_secret_file: Option<PathBuf>,
    /// The application's certificate (PEM), for a signed client assertion.
    #[arg(long, requires_all = ["tenant", "key_file"])]
    pub certificate_file: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, requires = "certificate_file")]
    pub key_file: Option<PathBuf>,
    /// The sign-in host (national clouds): https://login.microsoftonline.com unless given.
    #[arg(long, requires = "tenant")]
    pub authority: Option<String>,
    /// Graph's root: https://graph.microsoft.com/v1.0 unless given.
    #[arg(long, requires = "tenant")]
    pub graph_url: Option<String>,
}

/// `endpoint update`'s sign-in options: each one given replaces the
/// current one, so a rotated secret needs only `--client-secret-file`.
#[derive(clap::Args, Default)]
pub struct GraphSignInUpdateArgs {
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long)]
    pub client_id: Option<String>,
    /// File holding the new client secret (first line).
    #[arg(long, conflicts_with = "certificate_file")]
    pub client_secret_file: Option<PathBuf>,
    /// The application's new certificate (PEM).
    #[arg(long, requires = "key_file")]
    pub certificate_file: Option<PathBuf>,
    /// The new certificate's private key (PEM).
    #[arg(long, requires = "certificate_file")]
    pub key_file: Option<PathBuf>,
    #[arg(long)]
    pub authority: Option<String>,
    #[arg(long)]
    pub graph_url: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum TlsArg {
    None,
    Starttls,
    Tls,
}

#[derive(Subcommand)]
pub enum EndpointCmd {
    /// Register a mail system.
    Add {
        name: String,
        #[arg(long, value_enum)]
        kind: KindArg,
        /// IMAP host, the root folder of a Maildir endpoint, or the EWS URL
        /// (https://mail.example.com/EWS/Exchange.asmx); a graph endpoint's
        /// is its Graph URL's.
        #[arg(long, required_unless_present = "tenant", default_value = "")]
        host: String,
        #[arg(long, default_value_t = 143)]
        port: u16,
        /// How the connection is secured: none, starttls (STARTTLS on the
        /// plain port) or tls (implicit TLS, usually port 993).
        #[arg(long, value_enum, default_value = "starttls")]
        tls: TlsArg,
        /// A CA certificate to trust besides the system's (under one of the
        /// config file's [endpoints] path_roots).
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// Admin (master) user that can open every mailbox.
        #[arg(long, requires = "password_file")]
        admin_user: Option<String>,
        /// File holding the admin password (first line).
        #[arg(long)]
        password_file: Option<PathBuf>,
        #[arg(long)]
        max_connections: Option<u32>,
        /// XOAUTH2: a file whose first line is the access token (under one
        /// of the config file's [endpoints] path_roots).
        #[arg(long, conflicts_with_all = ["admin_user", "oauth_token_command"])]
        oauth_token_file: Option<PathBuf>,
        /// XOAUTH2: the name of a command in ferryd's config file
        /// ([endpoints] token_commands) that prints an access token.
        #[arg(long, value_name = "NAME", conflicts_with = "admin_user")]
        oauth_token_command: Option<String>,
        /// EWS: how logins authenticate (NTLM is Exchange's default on /EWS).
        #[arg(long, value_enum)]
        auth: Option<EwsAuthArg>,
        /// EWS: the schema version to ask in before the server tells its
        /// own (Exchange2010, Exchange2010_SP1, Exchange2013, Exchange2016).
        #[arg(long)]
        ews_version: Option<String>,
        #[command(flatten)]
        graph: GraphSignInArgs,
    },
    /// Change how a registered endpoint is reached: each option given
    /// replaces the current one. Refused while a pass runs over it.
    Update {
        name: String,
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        port: Option<u16>,
        #[arg(long, value_enum)]
        tls: Option<TlsArg>,
        #[arg(long)]
        ca_file: Option<PathBuf>,
        #[arg(long)]
        admin_user: Option<String>,
        /// File holding the new admin password (first line).
        #[arg(long)]
        password_file: Option<PathBuf>,
        #[arg(long)]
        max_connections: Option<u32>,
        #[arg(long, conflicts_with = "oauth_token_command")]
        oauth_token_file: Option<PathBuf>,
        #[arg(long, value_name = "NAME")]
        oauth_token_command: Option<String>,
        /// EWS: how logins authenticate; with --ews-version, replaces both.
        #[arg(long, value_enum)]
        auth: Option<EwsAuthArg>,
        #[arg(long, requires = "auth")]
        ews_version: Option<String>,
        #[command(flatten)]
        graph: GraphSignInUpdateArgs,
    },
    /// Forget an endpoint; refused while any batch names it.
    Remove {
        name: String,
    },
    /// Log in and report capabilities.
    Verify {
        name: String,
        /// Log in as the admin acting for this user (impersonation check).
        #[arg(long = "as")]
        as_user: Option<String>,
    },
    List,
}

#[derive(Subcommand)]
pub enum BatchCmd {
    Create {
        name: String,
        #[arg(long)]
        source: String,
        #[arg(long)]
        destination: String,
        #[arg(long)]
        csv: PathBuf,
        #[arg(long)]
        max_concurrent: Option<u32>,
        /// Skip items larger than this (e.g. 50MB; 150MB when not given);
        /// each skip is recorded.
        #[arg(long, value_parser = parse_size)]
        max_item_size: Option<u64>,
        /// Failed items a mailbox may collect in a pass before it fails.
        #[arg(long)]
        error_budget: Option<u32>,
        #[command(flatten)]
        folders: FolderOptions,
        /// Remove at the destination the copies of items deleted at the
        /// source since they were copied (found by full and delta passes; off by default).
        #[arg(long)]
        propagate_deletions: bool,
    },
    /// Dry run of a full pass: per mailbox and folder, the destination
    /// folder, items and bytes to copy, items already at the destination
    /// (adopted), items over the size limit, folders filtered out. Reads
    /// both servers (EXAMINE only) and records nothing. Folder options
    /// given here replace the batch's own of the same kind, for this plan.
    Plan {
        name: String,
        #[command(flatten)]
        folders: FolderOptions,
    },
    /// Add the CSV's users to the batch.
    AddUsers {
        name: String,
        #[arg(long)]
        csv: PathBuf,
        /// Rows naming users already in the batch replace their logins
        /// and passwords (refused while a pass runs).
        #[arg(long)]
        update: bool,
        #[command(flatten)]
        expect: Expect,
    },
    /// Take a user out of the batch (refused while a pass runs); what was
    /// copied stays at the destination.
    RemoveUser {
        name: String,
        address: String,
    },
    Start {
        name: String,
        #[arg(long, value_parser = parse_pass)]
        pass: PassKind,
        /// Pre-stage cut-off, e.g. 90d: only items older than this
        /// (default 90d for a prestage pass).
        #[arg(long, value_parser = parse_days)]
        older_than: Option<u32>,
        /// Start later: an RFC 3339 time or a delay such as 10m.
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        expect: Expect,
    },
    /// Run delta passes by cron (5-field crontab or 6-7 fields with
    /// seconds); `--delta off` removes the schedule.
    Schedule {
        name: String,
        #[arg(long)]
        delta: String,
        /// IANA time zone the expression is read in (default UTC).
        #[arg(long)]
        tz: Option<String>,
    },
    Show {
        name: String,
        /// The batch as it stood at this RFC 3339 time, rebuilt from the log.
        #[arg(long)]
        as_of: Option<String>,
    },
    List,
    /// Return when no pass is running; non-zero if the last one failed.
    Wait {
        name: String,
        #[arg(long)]
        timeout: Option<u64>,
    },
    Stop {
        name: String,
    },
    /// A final delta pass, then the batch is Completed; its delta
    /// schedule is removed. Refused while a mailbox is neither cut over
    /// nor healthy.
    Complete {
        name: String,
        /// CompleteAfter: an RFC 3339 time or a delay such as 8h.
        #[arg(long)]
        at: Option<String>,
        /// Complete anyway; what it overrode is recorded.
        #[arg(long)]
        force: bool,
    },
    Delete {
        name: String,
        #[arg(long)]
        force: bool,
    },
    /// Where pass reports go: emails and a webhook. Each option given
    /// replaces that kind of target; the others stay.
    Notify {
        name: String,
        /// An address to email when a pass ends (repeatable).
        #[arg(long = "email")]
        emails: Vec<String>,
        /// An http(s) URL to POST a JSON report to; any token in it is kept secret.
        #[arg(long)]
        webhook: Option<String>,
        /// Drop the current targets first (alone: no more reports).
        #[arg(long)]
        clear: bool,
    },
    /// Export a deleted batch's events to a verifiable file and record it.
    Archive {
        name: String,
        #[arg(short = 'o', long)]
        output: PathBuf,
    },
}

/// Which events `events` and `audit export` select.
#[derive(Args)]
pub struct EventFilter {
    /// Only this batch's events (its mailboxes' too).
    #[arg(long)]
    pub batch: Option<String>,
    /// Only this mailbox's events.
    #[arg(long)]
    pub mailbox: Option<String>,
    /// Only events of this type (repeatable), e.g. ItemFailed.
    #[arg(long = "type")]
    pub types: Vec<String>,
}

#[derive(Args)]
pub struct FolderOptions {
    /// Folder mapping rule `REGEX->REPLACEMENT` (repeatable).
    #[arg(long = "folder-rule")]
    pub folder_rules: Vec<String>,
    /// Copy only folders matching this regex (repeatable).
    #[arg(long = "include-folder")]
    pub include_folders: Vec<String>,
    /// Leave out folders matching this regex (repeatable).
    #[arg(long = "exclude-folder")]
    pub exclude_folders: Vec<String>,
}

#[derive(Args)]
pub struct Expect {
    /// Refuse unless the batch is still at this version (from `batch show`).
    #[arg(long)]
    pub expect_version: Option<u64>,
}

#[derive(Subcommand)]
pub enum MailboxCmd {
    Show {
        address: String,
        /// The mailbox as it stood at this RFC 3339 time, rebuilt from the log.
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Replace a user's logins or passwords (refused while a pass runs
    /// over the user's batch); each option given replaces that one.
    SetCredentials {
        address: String,
        #[arg(long)]
        source_login: Option<String>,
        /// File holding the source password (first line).
        #[arg(long)]
        source_password_file: Option<PathBuf>,
        #[arg(long)]
        destination_login: Option<String>,
        /// File holding the destination password (first line).
        #[arg(long)]
        destination_password_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum MxCmd {
    Check {
        domain: String,
    },
    /// Replace the MX (RFC 2136 update with TSIG), then poll the
    /// authoritative servers until they answer it.
    Switch {
        domain: String,
        #[arg(long)]
        to: String,
        /// The MX was changed by hand: record the switch and verify it.
        #[arg(long)]
        manual: bool,
    },
}

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Export the log with its hash chain.
    Export {
        #[arg(long, value_enum, default_value = "jsonl")]
        format: FormatArg,
        /// RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        /// First sequence to export.
        #[arg(long)]
        from_seq: Option<u64>,
        /// Last sequence to export.
        #[arg(long)]
        to_seq: Option<u64>,
        #[command(flatten)]
        filter: EventFilter,
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Check an export's hash chain; names the first broken record.
    Verify { file: PathBuf },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Jsonl,
    Csv,
}

#[derive(Subcommand)]
pub enum PreflightCmd {
    /// Check exports of the source mailboxes and the target MailUsers
    /// (CSV or JSON) against the cross-tenant move rules. Exits 0 when all
    /// is well, 1 when there are findings, 2 when a file cannot be read.
    CrossTenant {
        /// Source mailboxes (Get-Mailbox | Export-Csv or ConvertTo-Json).
        #[arg(long)]
        source: PathBuf,
        /// Target MailUsers (Get-MailUser | Export-Csv or ConvertTo-Json).
        #[arg(long)]
        target: PathBuf,
        /// Accepted domains of the target tenant (default: from the target export).
        #[arg(long, value_delimiter = ',')]
        target_domains: Vec<String>,
    },
}

pub fn parse_pass(s: &str) -> Result<PassKind, String> {
    PassKind::parse(s)
        .ok_or_else(|| format!("unknown pass {s:?} (verify, prestage, full, delta, retry-errors)"))
}

pub fn parse_days(s: &str) -> Result<u32, String> {
    s.strip_suffix('d')
        .unwrap_or(s)
        .parse()
        .map_err(|_| format!("{s:?} is not a number of days such as 90d"))
}

/// A size such as 50MB, 512KiB or 1048576 (bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 50MB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} in {s:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// An RFC 3339 time, or a delay from now such as `10m`, as RFC 3339.
pub fn parse_at(s: &str) -> anyhow::Result<String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.to_rfc3339());
    }
    let d = humantime::parse_duration(s.trim_start_matches('+'))
        .map_err(|_| anyhow!("--at {s:?} is neither an RFC 3339 time nor a delay like 10m"))?;
    Ok((chrono::Utc::now() + chrono::Duration::from_std(d)?).to_rfc3339())
}

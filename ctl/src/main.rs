//! ferryctl: drive ferryd over its control socket.
//!
//! Every command prints a table for people or, with `--json`, the answer as
//! JSON for scripts; on failure it prints one line and exits non-zero.

/// `println!` that ends quietly (exit 0) when the reader has gone away,
/// as with `ferryctl ... | head` (the std one panics), and escapes control
/// characters (server answers and folder names reach every table).
macro_rules! println {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let text = format!($($t)*);
        if let Err(e) = writeln!(std::io::stdout(), "{}", ferry_ctl::printable(&text)) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            panic!("writing to stdout: {e}");
        }
    }};
}

/// `eprintln!` with control characters escaped, as `println!` above.
macro_rules! eprintln {
    ($($t:tt)*) => {{
        let text = format!($($t)*);
        std::eprintln!("{}", ferry_ctl::printable(&text));
    }};
}

mod output;
mod preflight;
mod runbook;
mod watch;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use ferry_ctl::audit::{self, Format};
use ferry_ctl::wire::ErrorCode;
use ferry_ctl::{Client, ClientError, Request, Response};
use ferry_events::{EndpointKind, Outcome, PassKind, TlsMode};
use http_body_util::BodyExt;

#[derive(Parser)]
#[command(name = "ferryctl", version, about = "Drive the mailferry daemon")]
struct Cli {
    /// ferryd's control socket.
    #[arg(long, global = true, env = "FERRY_SOCKET")]
    socket: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
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
    Preflight(preflight::PreflightCmd),
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
enum KindArg {
    Imap,
    Maildir,
}

#[derive(Clone, Copy, ValueEnum)]
enum TlsArg {
    None,
    Starttls,
    Tls,
}

#[derive(Subcommand)]
enum EndpointCmd {
    /// Register a mail system.
    Add {
        name: String,
        #[arg(long, value_enum)]
        kind: KindArg,
        /// IMAP host, or the root folder of a Maildir endpoint.
        #[arg(long)]
        host: String,
        #[arg(long, default_value_t = 143)]
        port: u16,
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
enum BatchCmd {
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
        /// Folder mapping rule `REGEX->REPLACEMENT` (repeatable).
        #[arg(long = "folder-rule")]
        folder_rules: Vec<String>,
        /// Copy only folders matching this regex (repeatable).
        #[arg(long = "include-folder")]
        include_folders: Vec<String>,
        /// Leave out folders matching this regex (repeatable).
        #[arg(long = "exclude-folder")]
        exclude_folders: Vec<String>,
    },
    AddUsers {
        name: String,
        #[arg(long)]
        csv: PathBuf,
        #[command(flatten)]
        expect: Expect,
    },
    Start {
        name: String,
        #[arg(long, value_parser = parse_pass)]
        pass: PassKind,
        /// Pre-stage cut-off, e.g. 90d.
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
    /// A final delta pass, then the batch is Completed.
    Complete {
        name: String,
        /// CompleteAfter: an RFC 3339 time or a delay such as 8h.
        #[arg(long)]
        at: Option<String>,
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

#[derive(Args)]
struct Expect {
    /// Refuse unless the batch is still at this version (from `batch show`).
    #[arg(long)]
    expect_version: Option<u64>,
}

#[derive(Subcommand)]
enum MailboxCmd {
    Show {
        address: String,
        /// The mailbox as it stood at this RFC 3339 time, rebuilt from the log.
        #[arg(long)]
        as_of: Option<String>,
    },
}

#[derive(Subcommand)]
enum MxCmd {
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
enum AuditCmd {
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
        /// Only this batch's events (its mailboxes' too).
        #[arg(long)]
        batch: Option<String>,
        /// Only this mailbox's events.
        #[arg(long)]
        mailbox: Option<String>,
        /// Only events of this type (repeatable), e.g. ItemFailed.
        #[arg(long = "type")]
        types: Vec<String>,
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Check an export's hash chain; names the first broken record.
    Verify { file: PathBuf },
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Jsonl,
    Csv,
}

fn parse_pass(s: &str) -> Result<PassKind, String> {
    PassKind::parse(s)
        .ok_or_else(|| format!("unknown pass {s:?} (verify, prestage, full, delta, retry-errors)"))
}

fn parse_days(s: &str) -> Result<u32, String> {
    s.strip_suffix('d')
        .unwrap_or(s)
        .parse()
        .map_err(|_| format!("{s:?} is not a number of days such as 90d"))
}

/// A size such as 50MB, 512KiB or 1048576 (bytes).
fn parse_size(s: &str) -> Result<u64, String> {
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
fn parse_at(s: &str) -> anyhow::Result<String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.to_rfc3339());
    }
    let d = humantime::parse_duration(s.trim_start_matches('+'))
        .map_err(|_| anyhow!("--at {s:?} is neither an RFC 3339 time nor a delay like 10m"))?;
    Ok((chrono::Utc::now() + chrono::Duration::from_std(d)?).to_rfc3339())
}

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                0
            } else {
                eprintln!("ferryctl: {}", one_line(&e));
                1
            }
        }
    };
    std::process::exit(code);
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn one_line(e: &anyhow::Error) -> String {
    ferry_ctl::one_line(e.chain())
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    let socket = cli.socket.clone().unwrap_or_else(ferry_ctl::default_socket);
    let client = Client::new(socket);
    let json = cli.json;
    let req = match cli.cmd {
        Cmd::Status => Request::Status,
        Cmd::Endpoint(EndpointCmd::Add {
            name,
            kind,
            host,
            port,
            tls,
            ca_file,
            admin_user,
            password_file,
            max_connections,
            oauth_token_file,
            oauth_token_command,
        }) => {
            let ca_file = match ca_file {
                Some(f) => Some(std::path::absolute(&f)?.display().to_string()),
                None => None,
            };
            let oauth = match (oauth_token_file, oauth_token_command) {
                (Some(f), _) => Some(ferry_events::TokenSource::File(
                    std::path::absolute(&f)?.display().to_string(),
                )),
                (None, Some(c)) => Some(ferry_events::TokenSource::Command(c)),
                (None, None) => None,
            };
            let password = match password_file {
                Some(f) => Some(read_secret(&f)?),
                None => None,
            };
            Request::EndpointAdd {
                name,
                kind: match kind {
                    KindArg::Imap => EndpointKind::Imap,
                    KindArg::Maildir => EndpointKind::Maildir,
                },
                host,
                port,
                tls: match tls {
                    TlsArg::None => TlsMode::None,
                    TlsArg::Starttls => TlsMode::StartTls,
                    TlsArg::Tls => TlsMode::Tls,
                },
                ca_file,
                admin_user,
                password,
                max_connections,
                oauth,
            }
        }
        Cmd::Endpoint(EndpointCmd::Verify { name, as_user }) => {
            Request::EndpointVerify { name, as_user }
        }
        Cmd::Endpoint(EndpointCmd::List) => Request::EndpointList,
        Cmd::Batch(BatchCmd::Create {
            name,
            source,
            destination,
            csv,
            max_concurrent,
            max_item_size,
            error_budget,
            folder_rules,
            include_folders,
            exclude_folders,
        }) => Request::BatchCreate {
            name,
            source,
            destination,
            csv: read_text(&csv)?,
            max_concurrent,
            max_item_bytes: max_item_size,
            error_budget,
            folder_rules,
            include_folders,
            exclude_folders,
        },
        Cmd::Batch(BatchCmd::AddUsers { name, csv, expect }) => Request::BatchAddUsers {
            name,
            csv: read_text(&csv)?,
            expected_version: expect.expect_version,
        },
        Cmd::Batch(BatchCmd::Start {
            name,
            pass,
            older_than,
            at,
            expect,
        }) => Request::BatchStart {
            name,
            pass,
            older_than_days: older_than,
            at: at.as_deref().map(parse_at).transpose()?,
            expected_version: expect.expect_version,
        },
        Cmd::Batch(BatchCmd::Schedule { name, delta, tz }) => {
            Request::BatchSchedule { name, delta, tz }
        }
        Cmd::Batch(BatchCmd::Show { name, as_of: None }) => Request::BatchShow { name },
        Cmd::Batch(BatchCmd::Show {
            name,
            as_of: Some(time),
        }) => Request::BatchShowAsOf { name, time },
        Cmd::Batch(BatchCmd::List) => Request::BatchList,
        Cmd::Batch(BatchCmd::Wait { name, timeout }) => {
            return wait(&client, &name, timeout.map(Duration::from_secs), json).await;
        }
        Cmd::Batch(BatchCmd::Stop { name }) => Request::BatchStop { name },
        Cmd::Batch(BatchCmd::Complete { name, at }) => Request::BatchComplete {
            name,
            at: at.as_deref().map(parse_at).transpose()?,
        },
        Cmd::Batch(BatchCmd::Delete { name, force }) => Request::BatchDelete { name, force },
        Cmd::Batch(BatchCmd::Notify {
            name,
            emails,
            webhook,
            clear,
        }) => {
            if !clear && emails.is_empty() && webhook.is_none() {
                bail!("give --email ADDR and/or --webhook URL, or --clear");
            }
            Request::BatchNotify {
                name,
                emails,
                webhook,
                clear,
            }
        }
        Cmd::Mailbox(MailboxCmd::Show {
            address,
            as_of: None,
        }) => Request::MailboxShow { address },
        Cmd::Mailbox(MailboxCmd::Show {
            address,
            as_of: Some(time),
        }) => Request::MailboxShowAsOf { address, time },
        Cmd::Cutover { addresses, force } => Request::Cutover { addresses, force },
        Cmd::Mx(MxCmd::Check { domain }) => Request::MxCheck { domain },
        Cmd::Mx(MxCmd::Switch { domain, to, manual }) => Request::MxSwitch { domain, to, manual },
        Cmd::Events { since, follow } => return events(&client, since, follow, json).await,
        Cmd::Watch { batch } => return watch::watch(&client, batch.as_deref()).await,
        Cmd::Report { batch, output } => return report(&client, &batch, &output, json).await,
        Cmd::Batch(BatchCmd::Archive { name, output }) => {
            let query = serde_json::json!({ "archive": name });
            let (events, sha256) =
                export(&client, FormatArg::Jsonl, query, Some(output.clone())).await?;
            let file = std::path::absolute(&output)?.display().to_string();
            Request::BatchArchive {
                name,
                file,
                events,
                sha256,
            }
        }
        Cmd::Audit(AuditCmd::Export {
            format,
            since,
            until,
            from_seq,
            to_seq,
            batch,
            mailbox,
            types,
            output,
        }) => {
            let query = serde_json::json!({
                "since": since, "until": until, "from_seq": from_seq, "to_seq": to_seq,
                "batch": batch, "mailbox": mailbox, "types": types,
            });
            return export(&client, format, query, output).await.map(|_| 0);
        }
        Cmd::Audit(AuditCmd::Verify { file }) => return verify(&file, json),
        Cmd::Preflight(cmd) => return preflight::run(cmd, json),
        Cmd::Runbook {
            batch,
            dir,
            smart_host,
        } => return runbook::run(&client, &batch, &dir, smart_host.as_deref(), json).await,
        Cmd::Checklist { batch } => Request::Checklist { batch },
    };
    let resp = client.call(&req).await?;
    output::print(&resp, json)?;
    if let Response::MxSwitch(v) = &resp
        && !v.verified
    {
        eprintln!(
            "ferryctl: the switch of {} is recorded, but not every authoritative server answers {} yet",
            v.domain, v.to
        );
        return Ok(2);
    }
    Ok(0)
}

fn read_text(path: &PathBuf) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        anyhow!(
            "{} is not UTF-8 (byte {}); save it as UTF-8",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

fn read_secret(path: &PathBuf) -> anyhow::Result<String> {
    let text = read_text(path)?;
    let first = text.lines().next().unwrap_or("").to_string();
    if first.is_empty() {
        bail!("{} holds no password", path.display());
    }
    Ok(first)
}

async fn wait(
    client: &Client,
    name: &str,
    timeout: Option<Duration>,
    json: bool,
) -> anyhow::Result<i32> {
    let start = Instant::now();
    loop {
        let resp = client
            .call(&Request::BatchShow {
                name: name.to_string(),
            })
            .await?;
        let Response::Batch(detail) = &resp else {
            bail!("ferryd answered batch show with something else");
        };
        let b = &detail.batch;
        if b.running_pass().is_none() && b.pending.is_empty() {
            output::print(&resp, json)?;
            let failed = b
                .passes
                .last()
                .is_some_and(|p| p.outcome == Some(Outcome::Failed));
            if failed {
                eprintln!("ferryctl: the last pass of batch {name} failed");
                return Ok(2);
            }
            return Ok(0);
        }
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            eprintln!("ferryctl: batch {name} still has a pass running or pending");
            return Ok(3);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn events(client: &Client, since: u64, follow: bool, json: bool) -> anyhow::Result<i32> {
    let mut next = since.max(1);
    let mut out = std::io::stdout().lock();
    loop {
        let resp = client
            .call(&Request::Events {
                since: next,
                limit: Some(1000),
                wait_ms: follow.then_some(10_000),
            })
            .await?;
        let Response::Events { events, .. } = resp else {
            bail!("ferryd answered events with something else");
        };
        for e in &events {
            if json {
                writeln!(out, "{}", serde_json::to_string(e)?)?;
            } else {
                writeln!(
                    out,
                    "{:>8} {} {:<14} {:<28} {:<22} {}",
                    e.seq, e.time, e.actor, e.stream, e.event_type, e.event
                )?;
            }
        }
        out.flush()?;
        if let Some(last) = events.last() {
            next = last.seq + 1;
        } else if !follow {
            return Ok(0);
        }
    }
}

/// Streams an export to `output` (or stdout); returns the records' count
/// and the SHA-256 of the bytes written.
async fn export(
    client: &Client,
    format: FormatArg,
    mut query: serde_json::Value,
    output: Option<PathBuf>,
) -> anyhow::Result<(u64, String)> {
    use sha2::Digest;
    let format = match format {
        FormatArg::Jsonl => Format::Jsonl,
        FormatArg::Csv => Format::Csv,
    };
    query["format"] = serde_json::to_value(format)?;
    let body = serde_json::to_vec(&query)?;
    let mut answer = client.post_raw("/v1/export", body).await?;
    if answer.status != 200 {
        let bytes = answer.body.collect().await?.to_bytes();
        ferry_ctl::client::decode_answer(answer.status, &bytes)?;
        bail!("export failed with HTTP {}", answer.status);
    }
    let mut sink: Box<dyn Write> = match &output {
        // Written beside the target and renamed, so a failed export leaves no half file.
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path.with_extension("partial"))
                .with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut sha = sha2::Sha256::new();
    let mut lines = 0u64;
    while let Some(frame) = answer.body.frame().await {
        if let Ok(data) = frame?.into_data() {
            sha.update(&data);
            lines += data.iter().filter(|b| **b == b'\n').count() as u64;
            sink.write_all(&data)?;
        }
    }
    sink.flush()?;
    drop(sink);
    if let Some(path) = &output {
        std::fs::rename(path.with_extension("partial"), path)?;
    }
    // Records: every line but the closing one (and the CSV header).
    let header = u64::from(format == Format::Csv);
    Ok((
        lines.saturating_sub(1 + header),
        hex::encode(sha.finalize()),
    ))
}

async fn report(client: &Client, batch: &str, output: &PathBuf, json: bool) -> anyhow::Result<i32> {
    let resp = client
        .call(&Request::Report {
            batch: batch.to_string(),
        })
        .await?;
    let Response::Report(data) = &resp else {
        bail!("ferryd answered report with something else");
    };
    let tmp = output.with_extension("partial");
    std::fs::write(&tmp, ferry_ctl::report::html(data))
        .with_context(|| format!("writing {}", output.display()))?;
    std::fs::rename(&tmp, output)?;
    if json {
        output::print(&resp, true)?;
    } else {
        println!(
            "report of batch {batch} written to {} ({} mailboxes)",
            output.display(),
            data.mailboxes.len()
        );
    }
    Ok(0)
}

fn verify(file: &PathBuf, json: bool) -> anyhow::Result<i32> {
    let f = std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
    match audit::verify_reader(std::io::BufReader::with_capacity(1 << 16, f)) {
        Ok(v) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": true, "count": v.count, "first_seq": v.first_seq,
                        "last_seq": v.last_seq, "last_hash": v.last_hash, "filter": v.filter})
                );
            } else {
                let what = match &v.filter {
                    Some(f) => format!("filtered export ({f}): every record intact and in order"),
                    None => "chain intact".to_string(),
                };
                println!(
                    "ok: {} records, seq {}..{}, {what}, last hash {}",
                    v.count,
                    v.first_seq.unwrap_or(0),
                    v.last_seq.unwrap_or(0),
                    v.last_hash
                );
            }
            Ok(0)
        }
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "error": e.to_string(), "exit": e.exit_code()})
                );
            }
            eprintln!("ferryctl: {}: {e}", file.display());
            Ok(e.exit_code())
        }
    }
}

#[allow(dead_code)]
fn not_running(e: &ClientError) -> bool {
    matches!(e, ClientError::NotRunning(_)) || e.code() == Some(ErrorCode::Unavailable)
}

//! Cross-tenant preflight: checks exports of the source mailboxes and of the
//! target MailUsers against the rules of Microsoft's cross-tenant mailbox
//! migration before a batch is submitted.
//!
//! # Input
//! CSV as `Export-Csv` writes it (a `#TYPE` first line is skipped, UTF-8 with
//! or without byte-order mark, or UTF-16LE with one) or JSON as
//! `ConvertTo-Json` writes it (an array of objects or a single object).
//! Column names are matched without regard to case. Multi-valued columns
//! (`EmailAddresses`, `GrantSendOnBehalfTo`, `Delegates`) hold their values
//! separated by `;`, as `@{n='EmailAddresses';e={$_.EmailAddresses -join ';'}}`
//! exports them; in JSON they may also be arrays.
//!
//! Source columns: `PrimarySmtpAddress`, `ExchangeGuid`, `LegacyExchangeDN`
//! (required); `Alias`, `Name`, `DisplayName`, `ArchiveGuid`, `ArchiveStatus`,
//! `EmailAddresses`, `GrantSendOnBehalfTo`, `Delegates`, `Batch`.
//! Target columns: `PrimarySmtpAddress` (required); `Alias`,
//! `ExternalEmailAddress`, `ExchangeGuid`, `ArchiveGuid`, `EmailAddresses`,
//! and the licence as `SKUAssigned`, `IsLicensed` or `Licenses`.
//!
//! # Join
//! A source mailbox's MailUser is the target whose `ExternalEmailAddress` is
//! one of the source's SMTP addresses; failing that, the one with the same
//! `Alias`; failing that, the one whose primary address has the same local
//! part. More than one candidate at a step is reported, not guessed.
//!
//! # Rules
//! See [`Rule`]. Delegates (`GrantSendOnBehalfTo`, `Delegates`) name other
//! mailboxes by address, alias or name; all mailboxes without a `Batch` are
//! one batch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use uuid::Uuid;

/// At most this many mailboxes per cross-tenant batch.
pub const MAX_BATCH: usize = 2000;

/// Where a record sits in its file, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// CSV line, 1-based, counting the header.
    Line(usize),
    /// JSON object, 1-based.
    Item(usize),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::Item(n) => write!(f, "object {n}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not UTF-8 or UTF-16 text; save it as UTF-8")]
    Encoding { path: PathBuf },
    #[error("{path}: holds no records")]
    Empty { path: PathBuf },
    #[error("{path}: {at}: {message}")]
    Format {
        path: PathBuf,
        at: Location,
        message: String,
    },
    #[error("{path}: no {column} column")]
    MissingColumn { path: PathBuf, column: &'static str },
    #[error("{path}: {at}: {field}: {message}")]
    Field {
        path: PathBuf,
        at: Location,
        field: &'static str,
        message: String,
    },
}

/// A mailbox of the source tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceMailbox {
    pub primary_smtp: String,
    pub alias: Option<String>,
    pub name: Option<String>,
    pub display_name: Option<String>,
    pub exchange_guid: Option<Uuid>,
    /// Set when the mailbox has an archive.
    pub archive_guid: Option<Uuid>,
    pub legacy_dn: String,
    /// Proxy addresses with their prefix, e.g. `smtp:a@x`, `X500:/o=…`.
    pub email_addresses: Vec<String>,
    /// Mailboxes that act for this one.
    pub delegates: Vec<String>,
    pub batch: Option<String>,
}

/// A MailUser of the target tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetMailUser {
    pub primary_smtp: String,
    pub alias: Option<String>,
    pub external_email_address: Option<String>,
    pub exchange_guid: Option<Uuid>,
    pub archive_guid: Option<Uuid>,
    pub email_addresses: Vec<String>,
    /// An Exchange Online licence is assigned.
    pub licensed: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Accepted domains of the target tenant; empty: the domains of the
    /// targets' primary addresses.
    pub target_domains: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// The rules checked, each named in its findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// Every source mailbox needs a MailUser in the target.
    NoTarget,
    /// The join found several MailUsers for one mailbox.
    AmbiguousTarget,
    /// The target's ExchangeGuid equals the source's.
    ExchangeGuid,
    /// When the source has an archive, the ArchiveGuids are equal.
    ArchiveGuid,
    /// The source LegacyExchangeDN is an x500 proxy of the target.
    LegacyDnX500,
    /// Every x500 proxy of the source is on the target.
    X500Proxies,
    /// No SMTP proxy of the target is in a domain the target does not own.
    ForeignSmtpProxy,
    /// No Exchange licence before the ExchangeGuid is stamped.
    LicenceBeforeGuid,
    /// At most 2,000 mailboxes per batch.
    BatchSize,
    /// A delegate moves in the same batch as its principal.
    DelegateBatch,
    /// A delegate is not among the mailboxes being moved.
    DelegateNotMigrated,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::NoTarget => "no-target",
            Rule::AmbiguousTarget => "ambiguous-target",
            Rule::ExchangeGuid => "exchange-guid",
            Rule::ArchiveGuid => "archive-guid",
            Rule::LegacyDnX500 => "legacy-dn-x500",
            Rule::X500Proxies => "x500-proxies",
            Rule::ForeignSmtpProxy => "foreign-smtp-proxy",
            Rule::LicenceBeforeGuid => "licence-before-guid",
            Rule::BatchSize => "batch-size",
            Rule::DelegateBatch => "delegate-batch",
            Rule::DelegateNotMigrated => "delegate-not-migrated",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem: what is wrong with which object, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// The source mailbox (or batch) concerned.
    pub object: String,
    pub rule: Rule,
    pub message: String,
    pub fix: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} [{}]: {}\n  fix: {}",
            self.severity, self.object, self.rule, self.message, self.fix
        )
    }
}

// ---------------------------------------------------------------- loading

/// A field's raw value: CSV text, or a JSON scalar/array.
enum Raw {
    Text(String),
    List(Vec<String>),
}

struct Record {
    at: Location,
    fields: HashMap<String, Raw>,
}

fn read_text(path: &Path) -> Result<String, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    // Windows PowerShell 5.1 writes UTF-16LE with Out-File and `>`.
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        let units: Vec<u16> = rest
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        return String::from_utf16(&units).map_err(|_| LoadError::Encoding {
            path: path.to_path_buf(),
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| LoadError::Encoding {
        path: path.to_path_buf(),
    })?;
    Ok(text.strip_prefix('\u{FEFF}').unwrap_or(&text).to_string())
}

fn parse_records(path: &Path) -> Result<Vec<Record>, LoadError> {
    let text = read_text(path)?;
    let trimmed = text.trim_start();
    let records = if trimmed.starts_with('[') || trimmed.starts_with('{') {
        parse_json(path, trimmed)?
    } else {
        parse_csv(path, &text)?
    };
    if records.is_empty() {
        return Err(LoadError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(records)
}

fn parse_csv(path: &Path, text: &str) -> Result<Vec<Record>, LoadError> {
    // Export-Csv without -NoTypeInformation starts with `#TYPE …`.
    let (skipped, body) = match text.strip_prefix("#TYPE") {
        Some(rest) => (1, rest.split_once('\n').map(|(_, b)| b).unwrap_or("")),
        None => (0, text),
    };
    let mut rd = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(body.as_bytes());
    let fmt_err = |e: csv::Error| {
        let line = e
            .position()
            .map(|p| p.line() as usize + skipped)
            .unwrap_or(0);
        let message = match e.kind() {
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => format!("{len} fields where the header has {expected_len}"),
            _ => e.to_string(),
        };
        LoadError::Format {
            path: path.to_path_buf(),
            at: Location::Line(line),
            message,
        }
    };
    let headers: Vec<String> = rd
        .headers()
        .map_err(fmt_err)?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    if headers.len() < 2 {
        return Err(LoadError::Format {
            path: path.to_path_buf(),
            at: Location::Line(1 + skipped),
            message: "not a comma-separated export (one column only)".into(),
        });
    }
    let mut out = Vec::new();
    for row in rd.records() {
        let row = row.map_err(fmt_err)?;
        let line = row.position().map(|p| p.line() as usize).unwrap_or(0) + skipped;
        let fields = headers
            .iter()
            .cloned()
            .zip(row.iter().map(|v| Raw::Text(v.to_string())))
            .collect();
        out.push(Record {
            at: Location::Line(line),
            fields,
        });
    }
    Ok(out)
}

fn parse_json(path: &Path, text: &str) -> Result<Vec<Record>, LoadError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| LoadError::Format {
        path: path.to_path_buf(),
        at: Location::Line(e.line()),
        message: format!("invalid JSON: {e}"),
    })?;
    let items = match value {
        serde_json::Value::Array(items) => items,
        one @ serde_json::Value::Object(_) => vec![one],
        _ => {
            return Err(LoadError::Format {
                path: path.to_path_buf(),
                at: Location::Item(1),
                message: "expected an array of objects or one object".into(),
            });
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let at = Location::Item(i + 1);
        let serde_json::Value::Object(map) = item else {
            return Err(LoadError::Format {
                path: path.to_path_buf(),
                at,
                message: "not an object".into(),
            });
        };
        let mut fields = HashMap::new();
        for (k, v) in map {
            let raw = match json_raw(v) {
                Some(raw) => raw,
                None => {
                    return Err(LoadError::Format {
                        path: path.to_path_buf(),
                        at,
                        message: format!("{k}: nested objects are not understood"),
                    });
                }
            };
            fields.insert(k.to_ascii_lowercase(), raw);
        }
        out.push(Record { at, fields });
    }
    Ok(out)
}

/// A JSON value as text or list. ConvertTo-Json writes a GUID either as a
/// string or as `{"Guid": "…"}` and a proxy address as a string or as an
/// object with `ProxyAddressString`.
fn json_raw(v: serde_json::Value) -> Option<Raw> {
    use serde_json::Value;
    fn scalar(v: Value) -> Option<String> {
        match v {
            Value::Null => Some(String::new()),
            Value::String(s) => Some(s),
            Value::Bool(b) => Some(if b { "True" } else { "False" }.into()),
            Value::Number(n) => Some(n.to_string()),
            Value::Object(mut m) => ["Guid", "ProxyAddressString", "Value"]
                .iter()
                .find_map(|k| m.remove(*k))
                .and_then(scalar),
            Value::Array(_) => None,
        }
    }
    match v {
        Value::Array(items) => items
            .into_iter()
            .map(scalar)
            .collect::<Option<Vec<_>>>()
            .map(Raw::List),
        other => scalar(other).map(Raw::Text),
    }
}

struct Reader<'a> {
    path: &'a Path,
    rec: &'a Record,
}

impl Reader<'_> {
    fn err(&self, field: &'static str, message: impl Into<String>) -> LoadError {
        LoadError::Field {
            path: self.path.to_path_buf(),
            at: self.rec.at,
            field,
            message: message.into(),
        }
    }

    fn text(&self, field: &'static str) -> Result<Option<String>, LoadError> {
        match self.rec.fields.get(&field.to_ascii_lowercase()) {
            None => Ok(None),
            Some(Raw::Text(s)) => {
                let s = s.trim();
                Ok((!s.is_empty()).then(|| s.to_string()))
            }
            Some(Raw::List(v)) if v.len() <= 1 => Ok(v
                .first()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())),
            Some(Raw::List(_)) => Err(self.err(field, "holds a list where one value belongs")),
        }
    }

    fn required(&self, field: &'static str) -> Result<String, LoadError> {
        self.text(field)?.ok_or_else(|| self.err(field, "empty"))
    }

    fn list(&self, field: &'static str) -> Result<Vec<String>, LoadError> {
        let values: Vec<String> = match self.rec.fields.get(&field.to_ascii_lowercase()) {
            None => return Ok(Vec::new()),
            Some(Raw::Text(s)) => s.split(';').map(|v| v.trim().to_string()).collect(),
            Some(Raw::List(v)) => v.iter().map(|v| v.trim().to_string()).collect(),
        };
        let values: Vec<String> = values.into_iter().filter(|v| !v.is_empty()).collect();
        // Export-Csv of an unexpanded collection writes its type name.
        if let [one] = values.as_slice()
            && (one.starts_with("System.") || one.starts_with("Microsoft."))
            && !one.contains(':')
            && !one.contains('@')
        {
            return Err(self.err(
                field,
                format!(
                    "holds the type name {one}, not the values; export it with \
                     @{{n='{field}';e={{$_.{field} -join ';'}}}}"
                ),
            ));
        }
        Ok(values)
    }

    fn guid(&self, field: &'static str) -> Result<Option<Uuid>, LoadError> {
        match self.text(field)? {
            None => Ok(None),
            Some(s) => {
                let g = Uuid::parse_str(&s)
                    .map_err(|_| self.err(field, format!("{s:?} is not a GUID")))?;
                // Exchange shows an unset GUID as all zeros.
                Ok((!g.is_nil()).then_some(g))
            }
        }
    }

    fn flag(&self, field: &'static str) -> Result<bool, LoadError> {
        match self.text(field)?.as_deref().map(str::to_ascii_lowercase) {
            None => Ok(false),
            Some(v) if v == "true" || v == "1" => Ok(true),
            Some(v) if v == "false" || v == "0" => Ok(false),
            Some(v) => Err(self.err(field, format!("{v:?} is neither True nor False"))),
        }
    }

    fn has(&self, field: &str) -> bool {
        self.rec.fields.contains_key(&field.to_ascii_lowercase())
    }
}

fn require_columns(
    path: &Path,
    recs: &[Record],
    columns: &[&'static str],
) -> Result<(), LoadError> {
    let first = &recs[0];
    for c in columns {
        if !first.fields.contains_key(&c.to_ascii_lowercase()) {
            return Err(LoadError::MissingColumn {
                path: path.to_path_buf(),
                column: c,
            });
        }
    }
    Ok(())
}

fn address(s: &str) -> String {
    s.strip_prefix("SMTP:")
        .or_else(|| s.strip_prefix("smtp:"))
        .unwrap_or(s)
        .to_string()
}

/// Loads the source tenant's mailboxes from a CSV or JSON export.
pub fn load_sources(path: &Path) -> Result<Vec<SourceMailbox>, LoadError> {
    let recs = parse_records(path)?;
    require_columns(
        path,
        &recs,
        &["PrimarySmtpAddress", "ExchangeGuid", "LegacyExchangeDN"],
    )?;
    recs.iter()
        .map(|rec| {
            let r = Reader { path, rec };
            let primary = address(&r.required("PrimarySmtpAddress")?);
            if !primary.contains('@') {
                return Err(r.err(
                    "PrimarySmtpAddress",
                    format!("{primary:?} is not an address"),
                ));
            }
            let mut archive_guid = r.guid("ArchiveGuid")?;
            // A disabled archive keeps its GUID; the status says if it exists.
            if r.has("ArchiveStatus")
                && let Some(status) = r.text("ArchiveStatus")?
                && !status.eq_ignore_ascii_case("Active")
            {
                archive_guid = None;
            }
            let mut delegates = r.list("GrantSendOnBehalfTo")?;
            delegates.extend(r.list("Delegates")?);
            Ok(SourceMailbox {
                primary_smtp: primary,
                alias: r.text("Alias")?,
                name: r.text("Name")?,
                display_name: r.text("DisplayName")?,
                exchange_guid: r.guid("ExchangeGuid")?,
                archive_guid,
                legacy_dn: r.required("LegacyExchangeDN")?,
                email_addresses: r.list("EmailAddresses")?,
                delegates,
                batch: match r.text("Batch")? {
                    Some(b) => Some(b),
                    None => r.text("BatchName")?,
                },
            })
        })
        .collect()
}

/// Loads the target tenant's MailUsers from a CSV or JSON export.
pub fn load_targets(path: &Path) -> Result<Vec<TargetMailUser>, LoadError> {
    let recs = parse_records(path)?;
    require_columns(path, &recs, &["PrimarySmtpAddress"])?;
    recs.iter()
        .map(|rec| {
            let r = Reader { path, rec };
            let primary = address(&r.required("PrimarySmtpAddress")?);
            if !primary.contains('@') {
                return Err(r.err(
                    "PrimarySmtpAddress",
                    format!("{primary:?} is not an address"),
                ));
            }
            let licensed =
                r.flag("SKUAssigned")? || r.flag("IsLicensed")? || !r.list("Licenses")?.is_empty();
            Ok(TargetMailUser {
                primary_smtp: primary,
                alias: r.text("Alias")?,
                external_email_address: r.text("ExternalEmailAddress")?.map(|a| address(&a)),
                exchange_guid: r.guid("ExchangeGuid")?,
                archive_guid: r.guid("ArchiveGuid")?,
                email_addresses: r.list("EmailAddresses")?,
                licensed,
            })
        })
        .collect()
}

// ---------------------------------------------------------------- checks

fn lower(s: &str) -> String {
    s.to_lowercase()
}

fn local_part(a: &str) -> &str {
    a.split('@').next().unwrap_or(a)
}

fn domain(a: &str) -> &str {
    a.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
}

fn is_smtp(proxy: &str) -> bool {
    proxy.len() > 5 && proxy[..5].eq_ignore_ascii_case("smtp:")
}

fn is_x500(proxy: &str) -> bool {
    proxy.len() > 5 && proxy[..5].eq_ignore_ascii_case("x500:")
}

impl SourceMailbox {
    /// Primary and proxy SMTP addresses, lower-cased.
    fn smtp_addresses(&self) -> Vec<String> {
        let mut v = vec![lower(&self.primary_smtp)];
        v.extend(
            self.email_addresses
                .iter()
                .filter(|p| is_smtp(p))
                .map(|p| lower(&p[5..])),
        );
        v
    }
}

enum Join {
    One(usize),
    None,
    Many(Vec<usize>),
}

fn join(src: &SourceMailbox, targets: &[TargetMailUser]) -> Join {
    let smtp = src.smtp_addresses();
    let steps: [&dyn Fn(&TargetMailUser) -> bool; 3] = [
        &|t| {
            t.external_email_address
                .as_deref()
                .is_some_and(|e| smtp.contains(&lower(e)))
        },
        &|t| matches!((&src.alias, &t.alias), (Some(a), Some(b)) if a.eq_ignore_ascii_case(b)),
        &|t| local_part(&t.primary_smtp).eq_ignore_ascii_case(local_part(&src.primary_smtp)),
    ];
    for step in steps {
        let hits: Vec<usize> = (0..targets.len()).filter(|&i| step(&targets[i])).collect();
        match hits.len() {
            0 => continue,
            1 => return Join::One(hits[0]),
            _ => return Join::Many(hits),
        }
    }
    Join::None
}

fn batch_of(s: &SourceMailbox) -> &str {
    s.batch.as_deref().unwrap_or("(unnamed)")
}

fn ps(s: &str) -> String {
    crate::runbook::ps_quote(s)
}

/// Checks every source mailbox against its target MailUser and the batch
/// rules. Findings come in source order, batch findings last.
pub fn check(
    sources: &[SourceMailbox],
    targets: &[TargetMailUser],
    opts: &Options,
) -> Vec<Finding> {
    let owned: HashSet<String> = owned_domains(targets, opts).into_iter().collect();
    // Delegates are named by address, alias or name.
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for (i, s) in sources.iter().enumerate() {
        let mut keys = s.smtp_addresses();
        keys.extend(
            [&s.alias, &s.name, &s.display_name]
                .into_iter()
                .flatten()
                .map(|k| lower(k)),
        );
        for k in keys {
            by_key.entry(k).or_insert(i);
        }
    }

    let mut out = Vec::new();
    for src in sources {
        let object = src.primary_smtp.clone();
        let mut find = |severity, rule, message: String, fix: String| {
            out.push(Finding {
                severity,
                object: object.clone(),
                rule,
                message,
                fix,
            })
        };
        match join(src, targets) {
            Join::None => find(
                Severity::Error,
                Rule::NoTarget,
                "no MailUser in the target export matches this mailbox".into(),
                format!(
                    "create one with New-MailUser -ExternalEmailAddress {}, then stamp its \
                     ExchangeGuid and x500 proxies",
                    ps(&src.primary_smtp)
                ),
            ),
            Join::Many(hits) => find(
                Severity::Error,
                Rule::AmbiguousTarget,
                format!(
                    "several MailUsers match: {}",
                    hits.iter()
                        .map(|&i| targets[i].primary_smtp.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "set ExternalEmailAddress of the right one to this mailbox's address".into(),
            ),
            Join::One(i) => {
                let t = &targets[i];
                let id = ps(&t.primary_smtp);
                match (src.exchange_guid, t.exchange_guid) {
                    (Some(want), None) if t.licensed => find(
                        Severity::Error,
                        Rule::LicenceBeforeGuid,
                        format!(
                            "target {} is licensed for Exchange but has no ExchangeGuid; \
                             a new, empty mailbox will be provisioned instead of the move",
                            t.primary_smtp
                        ),
                        format!(
                            "remove the Exchange licence, run Set-MailUser {id} -ExchangeGuid \
                             {want}, then license it again"
                        ),
                    ),
                    (Some(want), None) => find(
                        Severity::Error,
                        Rule::ExchangeGuid,
                        format!("target {} has no ExchangeGuid", t.primary_smtp),
                        format!("Set-MailUser {id} -ExchangeGuid {want}"),
                    ),
                    (Some(want), Some(have)) if want != have => find(
                        Severity::Error,
                        Rule::ExchangeGuid,
                        format!(
                            "target {} has ExchangeGuid {have}, the source {want}",
                            t.primary_smtp
                        ),
                        format!(
                            "clear the target's previous mailbox (Set-User {id} \
                             -PermanentlyClearPreviousMailboxInfo), then Set-MailUser {id} \
                             -ExchangeGuid {want}"
                        ),
                    ),
                    (None, _) => find(
                        Severity::Error,
                        Rule::ExchangeGuid,
                        "the source mailbox has no ExchangeGuid in the export".into(),
                        "export the source again with the ExchangeGuid column filled".into(),
                    ),
                    _ => {}
                }
                if let Some(want) = src.archive_guid
                    && t.archive_guid != Some(want)
                {
                    let have = t
                        .archive_guid
                        .map(|g| format!("ArchiveGuid {g}"))
                        .unwrap_or_else(|| "no ArchiveGuid".into());
                    find(
                        Severity::Error,
                        Rule::ArchiveGuid,
                        format!(
                            "the source has an archive {want}; target {} has {have}",
                            t.primary_smtp
                        ),
                        format!("Set-MailUser {id} -ArchiveGuid {want}"),
                    );
                }
                let target_proxies: HashSet<String> =
                    t.email_addresses.iter().map(|p| lower(p)).collect();
                let legacy = format!("x500:{}", src.legacy_dn);
                if !target_proxies.contains(&lower(&legacy)) {
                    find(
                        Severity::Error,
                        Rule::LegacyDnX500,
                        format!(
                            "target {} lacks the source LegacyExchangeDN as an x500 proxy; \
                             replies to old messages would bounce (5.1.1)",
                            t.primary_smtp
                        ),
                        format!("Set-MailUser {id} -EmailAddresses @{{add={}}}", ps(&legacy)),
                    );
                }
                let missing: Vec<&String> = src
                    .email_addresses
                    .iter()
                    .filter(|p| is_x500(p) && !target_proxies.contains(&lower(p)))
                    .filter(|p| !p[5..].eq_ignore_ascii_case(&src.legacy_dn))
                    .collect();
                if !missing.is_empty() {
                    find(
                        Severity::Error,
                        Rule::X500Proxies,
                        format!(
                            "target {} lacks x500 proxies of the source ({}): {}",
                            t.primary_smtp,
                            missing.len(),
                            missing
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join("; ")
                        ),
                        format!(
                            "Set-MailUser {id} -EmailAddresses @{{add={}}}",
                            missing.iter().map(|p| ps(p)).collect::<Vec<_>>().join(",")
                        ),
                    );
                }
                let foreign: Vec<&String> = t
                    .email_addresses
                    .iter()
                    .filter(|p| is_smtp(p) && !owned.contains(&lower(domain(&p[5..]))))
                    .collect();
                if !foreign.is_empty() {
                    find(
                        Severity::Error,
                        Rule::ForeignSmtpProxy,
                        format!(
                            "target {} has SMTP proxies in domains the target tenant does not \
                             own: {}; they block the MailUser's conversion to a mailbox",
                            t.primary_smtp,
                            foreign
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join("; ")
                        ),
                        format!(
                            "Set-MailUser {id} -EmailAddresses @{{remove={}}}",
                            foreign.iter().map(|p| ps(p)).collect::<Vec<_>>().join(",")
                        ),
                    );
                }
            }
        }
        for d in &src.delegates {
            match by_key.get(&lower(d)) {
                None => find(
                    Severity::Warning,
                    Rule::DelegateNotMigrated,
                    format!("delegate {d} is not among the mailboxes to move"),
                    format!(
                        "add {d} to the migration with {}, or plan for the lost permission: \
                         cross-tenant permissions are not supported",
                        src.primary_smtp
                    ),
                ),
                Some(&j) if batch_of(&sources[j]) != batch_of(src) => find(
                    Severity::Error,
                    Rule::DelegateBatch,
                    format!(
                        "delegate {} is in batch {}, this mailbox in batch {}",
                        sources[j].primary_smtp,
                        batch_of(&sources[j]),
                        batch_of(src)
                    ),
                    format!(
                        "move {} and {} in the same batch",
                        sources[j].primary_smtp, src.primary_smtp
                    ),
                ),
                Some(_) => {}
            }
        }
    }

    let mut sizes: BTreeMap<&str, usize> = BTreeMap::new();
    for s in sources {
        *sizes.entry(batch_of(s)).or_default() += 1;
    }
    for (batch, n) in sizes {
        if n > MAX_BATCH {
            out.push(Finding {
                severity: Severity::Error,
                object: format!("batch {batch}"),
                rule: Rule::BatchSize,
                message: format!("{n} mailboxes; a batch holds at most {MAX_BATCH}"),
                fix: format!(
                    "split it into {} batches, keeping delegates with their principals",
                    n.div_ceil(MAX_BATCH)
                ),
            });
        }
    }
    out
}

/// The domains [`check`] takes the target tenant to own: the given ones,
/// or else those of the targets' primary addresses plus any
/// `onmicrosoft.com` domain found on more than half of the targets (the
/// tenant's own; another tenant's would appear on a few at most).
pub fn owned_domains(targets: &[TargetMailUser], opts: &Options) -> Vec<String> {
    let mut v: Vec<String> = if opts.target_domains.is_empty() {
        let mut v: Vec<String> = targets
            .iter()
            .map(|t| lower(domain(&t.primary_smtp)))
            .collect();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for t in targets {
            let domains: HashSet<String> = t
                .email_addresses
                .iter()
                .filter(|p| is_smtp(p))
                .map(|p| lower(domain(&p[5..])))
                .filter(|d| d.ends_with(".onmicrosoft.com"))
                .collect();
            for d in domains {
                *seen.entry(d).or_default() += 1;
            }
        }
        v.extend(
            seen.into_iter()
                .filter(|(_, n)| n * 2 > targets.len())
                .map(|(d, _)| d),
        );
        v
    } else {
        opts.target_domains
            .iter()
            .map(|d| lower(d.trim()))
            .collect()
    };
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guid(n: u128) -> Option<Uuid> {
        Some(Uuid::from_u128(n))
    }

    fn pair(local: &str, n: u128) -> (SourceMailbox, TargetMailUser) {
        let dn = format!("/o=Org/cn={local}");
        (
            SourceMailbox {
                primary_smtp: format!("{local}@source.example"),
                exchange_guid: guid(n),
                legacy_dn: dn.clone(),
                ..Default::default()
            },
            TargetMailUser {
                primary_smtp: format!("{local}@target.example"),
                external_email_address: Some(format!("{local}@source.example")),
                exchange_guid: guid(n),
                email_addresses: vec![
                    format!("SMTP:{local}@target.example"),
                    format!("smtp:{local}@target.onmicrosoft.com"),
                    format!("X500:{dn}"),
                ],
                ..Default::default()
            },
        )
    }

    #[test]
    fn derived_domains_keep_the_tenant_onmicrosoft_domain_only() {
        let (mut sources, mut targets) = (Vec::new(), Vec::new());
        for (i, l) in ["a", "b", "c"].iter().enumerate() {
            let (s, t) = pair(l, i as u128 + 1);
            sources.push(s);
            targets.push(t);
        }
        targets[2]
            .email_addresses
            .push("smtp:c@source.onmicrosoft.com".into());
        let opts = Options::default();
        assert_eq!(
            owned_domains(&targets, &opts),
            ["target.example", "target.onmicrosoft.com"]
        );
        let f = check(&sources, &targets, &opts);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].rule, Rule::ForeignSmtpProxy);
        assert_eq!(f[0].object, "c@source.example");
    }

    #[test]
    fn disabled_archive_needs_no_archive_guid() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s.csv");
        std::fs::write(
            &path,
            "PrimarySmtpAddress,ExchangeGuid,LegacyExchangeDN,ArchiveGuid,ArchiveStatus\n\
             a@s.example,00000000-0000-4000-8000-000000000001,/o=O/cn=a,00000000-0000-4000-8000-000000000002,None\n\
             b@s.example,00000000-0000-4000-8000-000000000003,/o=O/cn=b,00000000-0000-4000-8000-000000000004,Active\n",
        )
        .unwrap();
        let s = load_sources(&path).unwrap();
        assert_eq!(s[0].archive_guid, None);
        assert_eq!(s[1].archive_guid, guid(0x4000_8000_0000_0000_0004));
    }

    #[test]
    fn licence_with_the_guid_stamped_is_fine() {
        let (s, mut t) = pair("a", 1);
        t.licensed = true;
        assert!(
            check(
                std::slice::from_ref(&s),
                std::slice::from_ref(&t),
                &Options::default()
            )
            .is_empty()
        );
        t.exchange_guid = None;
        let f = check(&[s], &[t], &Options::default());
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule, Rule::LicenceBeforeGuid);
    }
}

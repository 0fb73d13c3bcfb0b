//! IMAP4rev1 endpoint: [`connect`] returns an [`ImapSession`], the
//! [`MailSession`] for any IMAP host (Dovecot, Exchange, Microsoft 365,
//! Gmail).
//!
//! - `tls`: plain TCP, implicit TLS or STARTTLS with rustls (ring);
//! - `auth`: greeting, LOGIN, SASL PLAIN (with authzid for master-user
//!   impersonation) and XOAUTH2;
//! - `session`: the command loop with timeouts and error classes;
//! - `parse`: quoting, UID sets, flags, dates, LIST attributes.
//!
//! Extensions are used when the server offers them: CONDSTORE (MODSEQ,
//! HIGHESTMODSEQ, CHANGEDSINCE), UIDPLUS (APPENDUID), LITERAL+, MULTIAPPEND,
//! SPECIAL-USE with LIST-EXTENDED. Message bodies are fetched with
//! `BODY.PEEK[]` so a migration never marks the source's mail as read.

mod auth;
pub mod parse;

/// The parser async-imap reads answers with (for the fuzz target).
pub use async_imap::imap_proto;
mod session;
mod tls;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use async_imap::imap_proto::{Capability, MailboxDatum, RequestId, Response, ResponseCode, Status};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, FixedOffset};

use crate::model::{
    AppendItem, AppendUid, Flag, Folder, FolderName, FolderStatus, Item, ItemMeta, SpecialUse,
};
use crate::{ConnectorError, ErrorClass, MailSession, Result};
use parse::{quote, wire_name};
use session::Conn;

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain text (tests, trusted networks only).
    None,
    /// Plain connect, then STARTTLS before login (port 143).
    StartTls,
    /// TLS from the first byte (port 993).
    Tls,
}

/// Credentials for one mailbox.
#[derive(Clone)]
pub enum ImapAuth {
    /// The LOGIN command.
    Login { user: String, password: String },
    /// SASL PLAIN; with `authzid` the admin `user` acts as that mailbox
    /// (Dovecot master users, Exchange impersonation).
    Plain {
        authzid: Option<String>,
        user: String,
        password: String,
    },
    /// SASL XOAUTH2 with an OAuth 2.0 access token.
    XOAuth2 { user: String, token: String },
}

impl std::fmt::Debug for ImapAuth {
    // Secrets stay out of logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImapAuth::Login { user, .. } => write!(f, "Login({user})"),
            ImapAuth::Plain { authzid, user, .. } => write!(f, "Plain({authzid:?}, {user})"),
            ImapAuth::XOAuth2 { user, .. } => write!(f, "XOAuth2({user})"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ImapConfig {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    /// Extra trusted CA certificates (PEM), besides the webpki roots.
    pub ca_file: Option<PathBuf>,
    /// Bound on each network step (connect, handshake, every read/write).
    pub timeout: Duration,
}

/// Connects, secures the line as configured, logs in and reads the
/// capabilities.
pub async fn connect(cfg: &ImapConfig, auth: &ImapAuth) -> Result<ImapSession> {
    use futures::FutureExt;
    // As in `Conn::next`: a greeting or login answer that breaks the
    // parser fails this login, not the task.
    let opened = std::panic::AssertUnwindSafe(auth::open(cfg, auth))
        .catch_unwind()
        .await;
    let (conn, caps) = opened.map_err(|_| ConnectorError::Protocol {
        endpoint: format!("{}:{}", cfg.host, cfg.port),
        op: "login",
        text: session::UNPARSEABLE.into(),
    })??;
    let mut session = ImapSession {
        conn,
        caps: Vec::new(),
        delimiter: None,
        selected: None,
        item_limit: crate::DEFAULT_ITEM_LIMIT,
        qresync: None,
        listed: HashMap::new(),
    };
    // Asked only when the login's answer did not carry them.
    session.caps = match caps {
        Some(caps) => caps,
        None => session.fetch_capabilities().await?,
    };
    Ok(session)
}

/// The names in a `CAPABILITY` answer or response code.
fn capability_names(list: &[Capability<'_>]) -> Vec<String> {
    list.iter()
        .map(|c| match c {
            Capability::Imap4rev1 => "IMAP4rev1".to_string(),
            Capability::Auth(m) => format!("AUTH={m}"),
            Capability::Atom(a) => a.to_string(),
        })
        .collect()
}

#[derive(Debug, Clone)]
struct Selected {
    status: FolderStatus,
}

/// A logged-in IMAP connection; see [`MailSession`].
pub struct ImapSession {
    conn: Conn,
    caps: Vec<String>,
    /// The personal namespace's delimiter, once asked (`LIST "" ""`).
    delimiter: Option<Option<char>>,
    selected: Option<Selected>,
    /// Message bodies over this many bytes are refused, whatever
    /// RFC822.SIZE announced.
    item_limit: u64,
    /// `ENABLE QRESYNC` was answered: Some(whether it took).
    qresync: Option<bool>,
    /// Folder statuses the last LIST-STATUS gave, by wire name, until
    /// [`MailSession::statuses`] takes them.
    listed: HashMap<String, FolderStatus>,
}

/// Commands sent before their answers are read, at most: few enough that
/// the answers never fill the buffers while we are still writing.
const PIPELINE: usize = 64;

/// What a STATUS answer (or a LIST-STATUS one) says, laid over `st`.
fn status_from(st: &mut FolderStatus, attrs: &[async_imap::imap_proto::StatusAttribute]) {
    use async_imap::imap_proto::StatusAttribute as A;
    for a in attrs {
        match a {
            A::Messages(n) => st.exists = *n,
            A::UidNext(n) => st.uidnext = *n,
            A::UidValidity(v) => st.uidvalidity = *v,
            // Zero is a folder without MODSEQ (RFC 7162 NOMODSEQ).
            A::HighestModSeq(m) => st.highest_modseq = (*m > 0).then_some(*m),
            _ => {}
        }
    }
}

fn empty_status() -> FolderStatus {
    FolderStatus {
        uidvalidity: 0,
        uidnext: 0,
        exists: 0,
        highest_modseq: None,
    }
}

/// Most message bytes asked for in one FETCH: async-imap refuses an answer
/// over 512 MiB and the connection with it.
const LITERAL_MAX: u64 = 500 << 20;

/// UIDs per metadata window at most, however sparse the folder is; it keeps
/// one window's answer small even where the UIDs turn dense again.
const MAX_WINDOW: u32 = 1 << 16;

impl ImapSession {
    pub fn has_capability(&self, name: &str) -> bool {
        self.caps.iter().any(|c| c.eq_ignore_ascii_case(name))
    }

    /// The given header fields (space-separated names) of each given UID
    /// of the open folder, as the server sent them.
    async fn header_fields(&mut self, uids: &[u32], fields: &str) -> Result<HashMap<u32, Vec<u8>>> {
        self.status()?;
        let set = parse::uid_set(uids);
        let mut out = HashMap::new();
        if set.is_empty() {
            return Ok(out);
        }
        let wanted: HashSet<u32> = uids.iter().copied().collect();
        self.conn
            .run(
                "fetch",
                &format!("UID FETCH {set} (UID BODY.PEEK[HEADER.FIELDS ({fields})])"),
                ErrorClass::Other,
                |r| {
                    if let Response::Fetch(_, attrs) = r
                        && let Some(uid) = attrs.iter().find_map(|a| match a {
                            async_imap::imap_proto::AttributeValue::Uid(u) => Some(*u),
                            _ => None,
                        })
                        && wanted.contains(&uid)
                        && let Some(h) = parse::header_bytes(attrs)
                    {
                        out.insert(uid, h.to_vec());
                    }
                    Ok(())
                },
            )
            .await?;
        Ok(out)
    }

    fn condstore(&self) -> bool {
        self.has_capability("CONDSTORE")
    }

    /// Sends `commands` without waiting, then reads each one's tagged
    /// answer in turn, handing all untagged data to `on_untagged`: one
    /// round trip for a whole chunk instead of one per command.
    async fn pipeline<F>(
        &mut self,
        op: &'static str,
        commands: &[String],
        mut on_untagged: F,
    ) -> Result<Vec<session::Tagged>>
    where
        F: FnMut(&Response<'_>) -> Result<()>,
    {
        let mut out = Vec::with_capacity(commands.len());
        for chunk in commands.chunks(PIPELINE) {
            let mut ids = Vec::with_capacity(chunk.len());
            for c in chunk {
                ids.push(self.conn.send(op, c).await?);
            }
            for id in &ids {
                out.push(self.conn.finish(op, id, &mut on_untagged).await?);
            }
        }
        Ok(out)
    }

    /// The quoted names of `folders`, each or why not; a lost line fails all.
    async fn mailbox_args(
        &mut self,
        op: &'static str,
        folders: impl Iterator<Item = &FolderName>,
    ) -> Result<Vec<Result<String>>> {
        let mut out = Vec::new();
        for f in folders {
            match self.mailbox_arg(op, f).await {
                Err(e) if e.is_transient() => return Err(e),
                r => out.push(r),
            }
        }
        Ok(out)
    }

    /// The STATUS items that fill a [`FolderStatus`].
    fn status_items(&self) -> &'static str {
        if self.condstore() {
            "(MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)"
        } else {
            "(MESSAGES UIDNEXT UIDVALIDITY)"
        }
    }

    async fn fetch_capabilities(&mut self) -> Result<Vec<String>> {
        let mut caps = Vec::new();
        self.conn
            .run("capability", "CAPABILITY", ErrorClass::Other, |r| {
                if let Response::Capabilities(list) = r {
                    caps.extend(capability_names(list));
                }
                Ok(())
            })
            .await?;
        Ok(caps)
    }

    async fn server_delimiter(&mut self) -> Result<Option<char>> {
        if let Some(d) = self.delimiter {
            return Ok(d);
        }
        let mut found = None;
        self.conn
            .run("list", r#"LIST "" """#, ErrorClass::Other, |r| {
                if let Response::MailboxData(MailboxDatum::List(l)) = r {
                    found = l.delimiter.as_deref().and_then(|d| d.chars().next());
                }
                Ok(())
            })
            .await?;
        self.delimiter = Some(found);
        Ok(found)
    }

    /// The quoted wire name for a folder.
    async fn mailbox_arg(&mut self, op: &'static str, folder: &FolderName) -> Result<String> {
        // A name without `raw` is one to be made here: this server's
        // delimiter wins over whatever endpoint the segments came from.
        let delimiter = if folder.raw.is_empty() {
            self.server_delimiter().await?
        } else {
            None
        };
        let name = wire_name(folder, delimiter);
        quote(&name).ok_or_else(|| {
            self.conn
                .protocol_error(op, format!("folder name {name:?}"))
        })
    }

    fn status(&self) -> Result<FolderStatus> {
        self.selected
            .as_ref()
            .map(|s| s.status)
            .ok_or(ConnectorError::NoFolder)
    }

    async fn open(&mut self, verb: &'static str, folder: &FolderName) -> Result<FolderStatus> {
        let op = if verb == "SELECT" {
            "select"
        } else {
            "examine"
        };
        let mailbox = self.mailbox_arg(op, folder).await?;
        // A failed SELECT leaves no folder open (RFC 3501 §6.3.1).
        self.selected = None;
        let condstore = if self.condstore() { " (CONDSTORE)" } else { "" };
        let mut status = FolderStatus {
            uidvalidity: 0,
            uidnext: 0,
            exists: 0,
            highest_modseq: None,
        };
        let mut uidnext = None;
        self.conn
            .run(
                op,
                &format!("{verb} {mailbox}{condstore}"),
                ErrorClass::Folder,
                |r| {
                    match r {
                        Response::MailboxData(MailboxDatum::Exists(n)) => status.exists = *n,
                        Response::Data {
                            status: Status::Ok,
                            outcome,
                        } => match outcome.code {
                            Some(ResponseCode::UidValidity(v)) => status.uidvalidity = v,
                            Some(ResponseCode::UidNext(n)) => uidnext = Some(n),
                            Some(ResponseCode::HighestModSeq(m)) => status.highest_modseq = Some(m),
                            _ => {}
                        },
                        _ => {}
                    }
                    Ok(())
                },
            )
            .await?;
        status.uidnext = match uidnext {
            Some(n) => n,
            None => self.status_uidnext(&mailbox).await?,
        };
        self.selected = Some(Selected { status });
        Ok(status)
    }

    /// UIDNEXT from STATUS, for servers that leave it out of SELECT.
    async fn status_uidnext(&mut self, mailbox: &str) -> Result<u32> {
        use async_imap::imap_proto::StatusAttribute;
        let mut next = 0;
        self.conn
            .run(
                "status",
                &format!("STATUS {mailbox} (UIDNEXT)"),
                ErrorClass::Folder,
                |r| {
                    if let Response::MailboxData(MailboxDatum::Status { status, .. }) = r {
                        for a in status {
                            if let StatusAttribute::UidNext(n) = a {
                                next = *n;
                            }
                        }
                    }
                    Ok(())
                },
            )
            .await?;
        Ok(next)
    }

    /// Metadata for a UID range (`a:b`, `a:*`), optionally CHANGEDSINCE,
    /// sorted by UID; items outside `[lo, hi]` are dropped (`n:*` always
    /// matches the last message, even below `n`).
    async fn fetch_meta(
        &mut self,
        range: &str,
        lo: u32,
        hi: u32,
        changed_since: Option<u64>,
    ) -> Result<Vec<ItemMeta>> {
        let modseq = if self.condstore() { " MODSEQ" } else { "" };
        let since = changed_since
            .map(|m| format!(" (CHANGEDSINCE {m})"))
            .unwrap_or_default();
        let mut items = Vec::new();
        let mut seen = HashSet::new();
        self.conn
            .run(
                "fetch",
                &format!("UID FETCH {range} (UID FLAGS INTERNALDATE RFC822.SIZE{modseq}){since}"),
                ErrorClass::Other,
                |r| {
                    // One answer per UID is kept, as it arrives.
                    if let Response::Fetch(_, attrs) = r
                        && let Some(meta) = parse::item_meta(attrs)
                        && (lo..=hi).contains(&meta.uid)
                        && seen.insert(meta.uid)
                    {
                        items.push(meta);
                    }
                    Ok(())
                },
            )
            .await?;
        items.sort_by_key(|m| m.uid);
        items.dedup_by_key(|m| m.uid);
        Ok(items)
    }
}

#[async_trait]
impl MailSession for ImapSession {
    async fn capabilities(&mut self) -> Result<Vec<String>> {
        Ok(self.caps.clone())
    }

    async fn list_folders(&mut self) -> Result<Vec<Folder>> {
        // LIST-EXTENDED answers subscriptions (and LIST-STATUS statuses)
        // in the same round trip; otherwise LSUB follows LIST unawaited.
        let extended = self.has_capability("LIST-EXTENDED");
        let commands = if extended {
            let mut ret = vec!["SUBSCRIBED".to_string()];
            if self.has_capability("SPECIAL-USE") {
                ret.push("SPECIAL-USE".into());
            }
            if self.has_capability("LIST-STATUS") {
                ret.push(format!("STATUS {}", self.status_items()));
            }
            vec![format!(r#"LIST "" "*" RETURN ({})"#, ret.join(" "))]
        } else {
            vec![r#"LIST "" "*""#.to_string(), r#"LSUB "" "*""#.to_string()]
        };
        let mut folders = Vec::new();
        let mut subscribed = HashSet::new();
        let mut statuses: HashMap<String, FolderStatus> = HashMap::new();
        let mut ids = Vec::new();
        for c in &commands {
            ids.push(self.conn.send("list", c).await?);
        }
        for (n, id) in ids.iter().enumerate() {
            let is_lsub = n == 1;
            let tagged = self
                .conn
                .finish("list", id, |r| {
                    match r {
                        // imap-proto reads LSUB lines as List data.
                        Response::MailboxData(MailboxDatum::List(l)) if is_lsub => {
                            subscribed.insert(l.name.to_string());
                        }
                        Response::MailboxData(MailboxDatum::List(l)) => {
                            let delimiter = l.delimiter.as_deref().and_then(|d| d.chars().next());
                            let name = parse::folder_name(&l.name, delimiter);
                            let special_use = if l.name.eq_ignore_ascii_case("INBOX") {
                                Some(SpecialUse::Inbox)
                            } else {
                                parse::special_use(&l.name_attributes)
                            };
                            if extended && parse::subscribed(&l.name_attributes) {
                                subscribed.insert(l.name.to_string());
                            }
                            folders.push(Folder {
                                name,
                                special_use,
                                selectable: parse::selectable(&l.name_attributes),
                                subscribed: false,
                            });
                        }
                        Response::MailboxData(MailboxDatum::Status { mailbox, status }) => {
                            let st = statuses
                                .entry(mailbox.to_string())
                                .or_insert_with(empty_status);
                            status_from(st, status);
                        }
                        _ => {}
                    }
                    Ok(())
                })
                .await?;
            let op = if is_lsub { "lsub" } else { "list" };
            self.conn.check(op, tagged, ErrorClass::Other)?;
        }
        for f in &mut folders {
            f.subscribed = subscribed.contains(&f.name.raw);
        }
        self.listed = statuses;
        if let Some(d) = folders.iter().find_map(|f| f.name.delimiter) {
            self.delimiter.get_or_insert(Some(d));
        }
        Ok(folders)
    }

    async fn examine(&mut self, folder: &FolderName) -> Result<FolderStatus> {
        self.open("EXAMINE", folder).await
    }

    async fn select(&mut self, folder: &FolderName) -> Result<FolderStatus> {
        self.open("SELECT", folder).await
    }

    async fn list_items(&mut self, from_uid: u32, max: usize) -> Result<Vec<ItemMeta>> {
        let status = self.status()?;
        if max == 0 || status.exists == 0 {
            return Ok(Vec::new());
        }
        let want = u32::try_from(max).unwrap_or(u32::MAX);
        let mut span = want.clamp(1, MAX_WINDOW);
        let mut start = from_uid.max(1);
        let mut out: Vec<ItemMeta> = Vec::new();
        loop {
            let end = start.saturating_add(span - 1);
            // The window that reaches UIDNEXT asks for `start:*`, which also
            // catches mail that arrived after the folder was opened.
            let last = status.uidnext == 0 || end >= status.uidnext.saturating_sub(1);
            let (range, hi) = if last {
                (format!("{start}:*"), u32::MAX)
            } else {
                (format!("{start}:{end}"), end)
            };
            let batch = self.fetch_meta(&range, start, hi, None).await?;
            let found = batch.len();
            out.extend(batch.into_iter().take(max - out.len()));
            if last || out.len() >= max || end == u32::MAX {
                break;
            }
            start = end + 1;
            // Sparse UIDs (old mail long since deleted): widen the window so
            // a folder of scattered UIDs takes few round trips.
            if (found as u64) * 2 < u64::from(span) {
                span = span.saturating_mul(4).min(MAX_WINDOW.max(want));
            }
        }
        Ok(out)
    }

    async fn changed_since(&mut self, modseq: u64) -> Result<Option<Vec<ItemMeta>>> {
        let status = self.status()?;
        if !self.condstore() || status.highest_modseq.is_none() {
            return Ok(None);
        }
        if status.exists == 0 {
            return Ok(Some(Vec::new()));
        }
        let items = self.fetch_meta("1:*", 1, u32::MAX, Some(modseq)).await?;
        Ok(Some(items))
    }

    async fn fetch(&mut self, uids: &[u32]) -> Result<Vec<Item>> {
        self.status()?;
        let set = parse::uid_set(uids);
        if set.is_empty() {
            return Ok(Vec::new());
        }
        let mut wanted: HashSet<u32> = uids.iter().copied().collect();
        let mut items: Vec<Item> = Vec::new();
        let limit = self.item_limit;
        // A partial FETCH of one byte past the cap: a larger message costs
        // cap + 1 bytes and its own skip, never the connection.
        let cap = limit.min(LITERAL_MAX);
        self.conn
            .run(
                "fetch",
                &format!(
                    "UID FETCH {set} (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[]<0.{}>)",
                    cap + 1
                ),
                ErrorClass::Item,
                |r| {
                    // A UID is taken once: a server repeating its answer
                    // cannot make us hold the same bytes again.
                    if let Response::Fetch(_, attrs) = r
                        && let Some(mut meta) = parse::item_meta(attrs)
                        && let Some(body) = parse::body_bytes(attrs)
                        && wanted.remove(&meta.uid)
                    {
                        let received = body.len() as u64;
                        let body = if received > cap {
                            let why = if received > limit {
                                format!("over the limit of {limit} bytes")
                            } else {
                                format!("over the {LITERAL_MAX} bytes one IMAP answer may hold")
                            };
                            meta.refused = Some(format!(
                                "the server sent {received} bytes or more (announced {}), {why}",
                                meta.size
                            ));
                            Bytes::new()
                        } else {
                            meta.size = received;
                            Bytes::copy_from_slice(body)
                        };
                        items.push(Item { meta, body });
                    }
                    Ok(())
                },
            )
            .await?;
        items.sort_by_key(|i| i.meta.uid);
        items.dedup_by_key(|i| i.meta.uid);
        Ok(items)
    }

    async fn message_ids(&mut self, uids: &[u32]) -> Result<HashMap<u32, String>> {
        let headers = self.header_fields(uids, "MESSAGE-ID").await?;
        Ok(headers
            .into_iter()
            .filter_map(|(uid, h)| Some((uid, crate::message_id(&h)?)))
            .collect())
    }

    async fn headlines(&mut self, uids: &[u32]) -> Result<HashMap<u32, crate::Headline>> {
        let headers = self.header_fields(uids, "SUBJECT MESSAGE-ID DATE").await?;
        Ok(headers
            .into_iter()
            .map(|(uid, h)| (uid, crate::Headline::of(&h)))
            .collect())
    }

    async fn create_folder(&mut self, folder: &FolderName) -> Result<()> {
        let mailbox = self.mailbox_arg("create", folder).await?;
        let id = self
            .conn
            .send("create", &format!("CREATE {mailbox}"))
            .await?;
        let tagged = self.conn.finish("create", &id, |_| Ok(())).await?;
        if tagged.is_ok() || tagged.text.contains("[ALREADYEXISTS]") {
            return Ok(());
        }
        // Servers without RFC 5530 codes: an existing folder is success too.
        let mut exists = false;
        self.conn
            .run(
                "list",
                &format!(r#"LIST "" {mailbox}"#),
                ErrorClass::Folder,
                |r| {
                    if let Response::MailboxData(MailboxDatum::List(l)) = r {
                        exists |= parse::selectable(&l.name_attributes);
                    }
                    Ok(())
                },
            )
            .await?;
        if exists {
            return Ok(());
        }
        self.conn
            .check("create", tagged, ErrorClass::Folder)
            .map(|_| ())
    }

    async fn subscribe(&mut self, folder: &FolderName) -> Result<()> {
        let mailbox = self.mailbox_arg("subscribe", folder).await?;
        self.conn
            .run(
                "subscribe",
                &format!("SUBSCRIBE {mailbox}"),
                ErrorClass::Folder,
                |_| Ok(()),
            )
            .await?;
        Ok(())
    }

    async fn statuses(&mut self, folders: &[FolderName]) -> Result<Vec<Result<FolderStatus>>> {
        let listed = std::mem::take(&mut self.listed);
        if folders.iter().all(|f| listed.contains_key(&f.raw)) {
            return Ok(folders.iter().map(|f| Ok(listed[&f.raw])).collect());
        }
        let args = self.mailbox_args("status", folders.iter()).await?;
        let items = self.status_items();
        let commands: Vec<String> = args
            .iter()
            .flatten()
            .map(|a| format!("STATUS {a} {items}"))
            .collect();
        let mut found: HashMap<String, FolderStatus> = HashMap::new();
        let mut answers = self
            .pipeline("status", &commands, |r| {
                if let Response::MailboxData(MailboxDatum::Status { mailbox, status }) = r {
                    let st = found
                        .entry(mailbox.to_string())
                        .or_insert_with(empty_status);
                    status_from(st, status);
                }
                Ok(())
            })
            .await?
            .into_iter();
        let mut out = Vec::with_capacity(folders.len());
        for (f, arg) in folders.iter().zip(args) {
            let r = match arg {
                Err(e) => Err(e),
                Ok(_) => {
                    let tagged = answers.next().expect("one answer per command");
                    self.conn
                        .check("status", tagged, ErrorClass::Folder)
                        .and_then(|_| {
                            let name = wire_name(f, None);
                            found
                                .get(&name)
                                .or_else(|| {
                                    found
                                        .iter()
                                        .find(|(k, _)| {
                                            name.eq_ignore_ascii_case("INBOX")
                                                && k.eq_ignore_ascii_case("INBOX")
                                        })
                                        .map(|(_, v)| v)
                                })
                                .copied()
                                .ok_or_else(|| {
                                    self.conn.protocol_error(
                                        "status",
                                        format!("no STATUS answer for {name:?}"),
                                    )
                                })
                        })
                }
            };
            out.push(r);
        }
        Ok(out)
    }

    async fn prepare_folders(&mut self, folders: &[(FolderName, bool)]) -> Result<Vec<Result<()>>> {
        let args = self
            .mailbox_args("create", folders.iter().map(|(f, _)| f))
            .await?;
        let mut commands = Vec::new();
        for ((_, subscribe), arg) in folders.iter().zip(&args) {
            if let Ok(a) = arg {
                commands.push(format!("CREATE {a}"));
                if *subscribe {
                    commands.push(format!("SUBSCRIBE {a}"));
                }
            }
        }
        let mut answers = self
            .pipeline("create", &commands, |_| Ok(()))
            .await?
            .into_iter();
        let mut out = Vec::with_capacity(folders.len());
        for ((f, subscribe), arg) in folders.iter().zip(args) {
            if let Err(e) = arg {
                out.push(Err(e));
                continue;
            }
            let created = answers.next().expect("one answer per command");
            let subscribed = if *subscribe { answers.next() } else { None };
            let created_ok = created.is_ok() || created.text.contains("[ALREADYEXISTS]");
            let r = if !created_ok {
                // The careful way, one command at a time, says why.
                let mut r = self.create_folder(f).await;
                if r.is_ok() && *subscribe {
                    r = self.subscribe(f).await;
                }
                r
            } else {
                match subscribed {
                    Some(t) => self
                        .conn
                        .check("subscribe", t, ErrorClass::Folder)
                        .map(|_| ()),
                    None => Ok(()),
                }
            };
            match r {
                Err(e) if e.is_transient() => return Err(e),
                r => out.push(r),
            }
        }
        Ok(out)
    }

    async fn append(
        &mut self,
        folder: &FolderName,
        flags: &[Flag],
        internal_date: Option<DateTime<FixedOffset>>,
        body: Bytes,
    ) -> Result<Option<AppendUid>> {
        const OP: &str = "append";
        let mailbox = self.mailbox_arg(OP, folder).await?;
        // LITERAL+ saves a round trip per message.
        let plus = self.has_capability("LITERAL+");
        let args = parse::append_args(flags, internal_date.as_ref(), body.len(), plus);
        let id = self
            .conn
            .send(OP, &format!("APPEND {mailbox} {args}"))
            .await?;
        if !plus {
            // Wait for "+": the server may refuse at once (too big, no folder).
            self.literal_invited(OP, &id).await?;
        }
        self.conn.write_raw(OP, &body).await?;
        self.conn.write_raw(OP, b"\r\n").await?;
        let tagged = self.conn.finish(OP, &id, |_| Ok(())).await?;
        let class = append_refusal_class(&tagged);
        let tagged = self.conn.check(OP, tagged, class)?;
        Ok(tagged
            .append_uid
            .map(|(uidvalidity, uid)| AppendUid { uidvalidity, uid }))
    }

    fn can_append_many(&self) -> bool {
        self.has_capability("MULTIAPPEND")
    }

    async fn append_many(
        &mut self,
        folder: &FolderName,
        items: &[AppendItem],
    ) -> Result<Vec<Option<AppendUid>>> {
        const OP: &str = "multiappend";
        if items.is_empty() {
            return Ok(Vec::new());
        }
        if !self.can_append_many() {
            // A multi-message APPEND to a server without MULTIAPPEND would
            // store the first message and choke on the rest: go one by one.
            let mut uids = Vec::with_capacity(items.len());
            for item in items {
                let body = item.body.clone();
                uids.push(
                    self.append(folder, &item.flags, item.internal_date, body)
                        .await?,
                );
            }
            return Ok(uids);
        }
        let mailbox = self.mailbox_arg(OP, folder).await?;
        let plus = self.has_capability("LITERAL+");
        let args = |item: &AppendItem| {
            parse::append_args(
                &item.flags,
                item.internal_date.as_ref(),
                item.body.len(),
                plus,
            )
        };
        // RFC 3502: one command, each message's (flags) "date" {literal} after
        // the previous literal; the CRLF after the last one ends the command.
        let id = self
            .conn
            .send(OP, &format!("APPEND {mailbox} {}", args(&items[0])))
            .await?;
        for (n, item) in items.iter().enumerate() {
            if n > 0 {
                let next = format!(" {}\r\n", args(item));
                self.conn.write_raw(OP, next.as_bytes()).await?;
            }
            if !plus {
                // A refusal here ends the whole command: nothing is stored
                // and nothing more may be sent.
                self.literal_invited(OP, &id).await?;
            }
            self.conn.write_raw(OP, &item.body).await?;
        }
        self.conn.write_raw(OP, b"\r\n").await?;
        let tagged = self.conn.finish(OP, &id, |_| Ok(())).await?;
        let class = append_refusal_class(&tagged);
        let tagged = self.conn.check(OP, tagged, class)?;
        // A set that does not match the messages one to one cannot be
        // mapped safely; the caller can still find the items by digest.
        let uids = tagged.append_uid_set.and_then(|(uidvalidity, members)| {
            let uids = parse::expand_uid_set(&members, items.len())?;
            (uids.len() == items.len()).then(|| {
                uids.into_iter()
                    .map(|uid| Some(AppendUid { uidvalidity, uid }))
                    .collect()
            })
        });
        Ok(uids.unwrap_or_else(|| vec![None; items.len()]))
    }

    async fn store_flags(&mut self, uid: u32, flags: &[Flag]) -> Result<()> {
        self.status()?;
        self.conn
            .run(
                "store",
                &format!("UID STORE {uid} FLAGS.SILENT {}", parse::flag_list(flags)),
                ErrorClass::Item,
                |_| Ok(()),
            )
            .await?;
        Ok(())
    }

    async fn vanished_since(
        &mut self,
        modseq: u64,
    ) -> Result<Option<Vec<std::ops::RangeInclusive<u32>>>> {
        self.status()?;
        if !self.has_capability("QRESYNC") {
            return Ok(None);
        }
        if self.qresync.is_none() {
            // Refused (some servers take it only before a SELECT): compare instead.
            let enabled = self
                .conn
                .run("enable", "ENABLE QRESYNC", ErrorClass::Other, |_| Ok(()))
                .await;
            match enabled {
                Ok(_) => self.qresync = Some(true),
                Err(e) if e.is_transient() => return Err(e),
                Err(_) => self.qresync = Some(false),
            }
        }
        if self.qresync != Some(true) {
            return Ok(None);
        }
        let mut gone = Vec::new();
        self.conn
            .run(
                "fetch",
                &format!("UID FETCH 1:* (UID) (CHANGEDSINCE {modseq} VANISHED)"),
                ErrorClass::Folder,
                |r| {
                    if let Response::Vanished { uids, .. } = r {
                        gone.extend(uids.iter().cloned());
                    }
                    Ok(())
                },
            )
            .await?;
        Ok(Some(gone))
    }

    async fn remove(&mut self, uids: &[u32]) -> Result<()> {
        self.status()?;
        if uids.is_empty() {
            return Ok(());
        }
        // A plain EXPUNGE would also remove what someone else marked deleted.
        if !self.has_capability("UIDPLUS") {
            return Err(ConnectorError::Refused {
                endpoint: self.conn.endpoint.clone(),
                op: "remove",
                class: ErrorClass::Folder,
                text: "the server lacks UIDPLUS (UID EXPUNGE)".into(),
            });
        }
        let set = parse::uid_set(uids);
        for (op, cmd) in [
            (
                "store",
                format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)"),
            ),
            ("expunge", format!("UID EXPUNGE {set}")),
        ] {
            self.conn
                .run(op, &cmd, ErrorClass::Item, |_| Ok(()))
                .await?;
        }
        Ok(())
    }

    fn limit_items(&mut self, max_bytes: u64) {
        self.item_limit = max_bytes;
    }

    async fn logout(&mut self) -> Result<()> {
        self.selected = None;
        let result = self
            .conn
            .run("logout", "LOGOUT", ErrorClass::Other, |_| Ok(()))
            .await;
        self.conn.close();
        result.map(|_| ())
    }
}

impl ImapSession {
    /// Waits for the `+` before a synchronizing APPEND literal; a tagged
    /// answer instead is the server refusing the command before its data.
    async fn literal_invited(&mut self, op: &'static str, id: &RequestId) -> Result<()> {
        match self.conn.continuation(op, id).await? {
            None => Ok(()),
            Some(tagged) => {
                let class = append_refusal_class(&tagged);
                self.conn.check(op, tagged, class)?;
                Err(self.conn.protocol_error(op, "OK before the literal"))
            }
        }
    }
}

/// A refused APPEND is the item's fault unless the folder is missing.
fn append_refusal_class(tagged: &session::Tagged) -> ErrorClass {
    if tagged.try_create {
        ErrorClass::Folder
    } else {
        ErrorClass::Item
    }
}

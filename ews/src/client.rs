//! [`Endpoint`]: one EWS URL, its TLS trust, its connection cap and the
//! server version it reported. [`Mailbox`]: one mailbox read through it,
//! as its own user or through `ExchangeImpersonation`.
//!
//! Every call goes through [`Mailbox::call`], which carries the learned
//! `RequestServerVersion` and honours throttling the way Exchange asks:
//! `ErrorServerBusy` waits exactly `BackOffMilliseconds`, HTTP 503 and
//! `ErrorExceededConnectionCount` back off exponentially.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use roxmltree::Node;
use tokio::sync::Semaphore;
use tokio_rustls::rustls::ClientConfig;

use crate::error::{EwsError, Result};
use crate::ops::{self, Failure};
use crate::transport::{self, Answer, Conn, ConnError, Credentials, Target};
use crate::types::*;
use crate::xml::Xml;

/// The most changes one `SyncFolderItems` call may ask for (the schema's cap).
pub const MAX_SYNC_CHANGES: u32 = 512;

/// Folders one `FindFolder` page asks for.
const FOLDER_PAGE: usize = 500;

/// How throttled calls are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Tries of one call in all, the first included.
    pub attempts: u32,
    /// The first exponential back-off (503, connection count); doubled
    /// each time, up to `max_wait`.
    pub first_wait: Duration,
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 8,
            first_wait: Duration::from_secs(1),
            max_wait: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.first_wait.saturating_mul(factor).min(self.max_wait)
    }
}

/// Back-offs shared beyond this endpoint (the workers of a fleet): asked
/// before each request, told of each wait the server asks for.
pub trait SharedBackoff: Send + Sync {
    /// How long to wait still before the next request, if at all.
    fn wait_left(&self) -> Option<Duration>;
    /// The server asked for `wait` (`ErrorServerBusy`, 503).
    fn told(&self, wait: Duration);
}

/// A [`SharedBackoff`] to hand to an endpoint.
#[derive(Clone)]
pub struct SharedBackoffs(pub Arc<dyn SharedBackoff>);

impl std::fmt::Debug for SharedBackoffs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedBackoffs")
    }
}

/// An endpoint's settings.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// `https://mail.example.com/EWS/Exchange.asmx`.
    pub url: String,
    /// PEM certificates to trust beside the public roots.
    pub ca_file: Option<PathBuf>,
    /// For one HTTP exchange, or the connection's set-up.
    pub timeout: Duration,
    /// Connections at once; by default the server's `EWSMaxConcurrency`
    /// (10 until a 2013 or later server is seen, 27 from then on).
    pub max_connections: Option<usize>,
    pub retry: RetryPolicy,
    /// The schema version to ask in before the server has told its own.
    pub version: Option<ApiVersion>,
    /// Back-offs to honour and report beyond this endpoint.
    pub shared: Option<SharedBackoffs>,
}

impl EndpointConfig {
    pub fn new(url: impl Into<String>) -> EndpointConfig {
        EndpointConfig {
            url: url.into(),
            ca_file: None,
            timeout: Duration::from_secs(120),
            max_connections: None,
            retry: RetryPolicy::default(),
            version: None,
            shared: None,
        }
    }
}

/// Counters for benchmarks and tests.
#[derive(Debug, Default)]
pub struct Stats {
    /// HTTP exchanges begun (an NTLM handshake's three legs count as one).
    pub http_requests: AtomicU64,
    /// SOAP operations sent (a throttled one counts each try).
    pub operations: AtomicU64,
    pub connections_opened: AtomicU64,
    /// Waits imposed by throttling, and their total in milliseconds.
    pub throttle_waits: AtomicU64,
    pub throttle_wait_ms: AtomicU64,
}

struct Inner {
    /// `host:port`, for messages.
    name: String,
    host: String,
    port: u16,
    host_header: String,
    path: String,
    tls: Arc<ClientConfig>,
    timeout: Duration,
    retry: RetryPolicy,
    permits: Arc<Semaphore>,
    /// The current cap (it shrinks on `ErrorExceededConnectionCount`).
    cap: AtomicUsize,
    /// Permits to retire as requests finish.
    pending_shrink: AtomicUsize,
    cap_fixed: bool,
    version: Mutex<Option<ServerVersion>>,
    /// What requests carry until the server's version is known.
    first_version: ApiVersion,
    idle: Mutex<HashMap<u64, Vec<Conn>>>,
    stats: Stats,
    /// The waits of the last throttled calls, newest last (for tests).
    waits: Mutex<Vec<Duration>>,
    shared: Option<SharedBackoffs>,
}

/// One EWS URL, shared by every mailbox read through it.
#[derive(Clone)]
pub struct Endpoint(Arc<Inner>);

impl Endpoint {
    pub fn new(cfg: &EndpointConfig) -> Result<Endpoint> {
        let config_err = |reason: String| EwsError::Config {
            endpoint: cfg.url.clone(),
            reason,
        };
        let uri: http::Uri = cfg
            .url
            .parse()
            .map_err(|e| config_err(format!("not a URL: {e}")))?;
        if uri.scheme_str() != Some("https") {
            return Err(config_err("EWS is reached over https only".into()));
        }
        let host = uri
            .host()
            .ok_or_else(|| config_err("no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(443);
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .filter(|p| p != "/")
            .unwrap_or_else(|| "/EWS/Exchange.asmx".to_string());
        let tls = crate::tls::client_config(cfg.ca_file.as_deref())
            .map_err(|e| config_err(e.to_string()))?;
        let cap = cfg
            .max_connections
            .unwrap_or(ApiVersion::Exchange2010.default_max_connections())
            .max(1);
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or(&host);
        Ok(Endpoint(Arc::new(Inner {
            name: format!("{host}:{port}"),
            host_header: authority.to_string(),
            host,
            port,
            path,
            tls,
            timeout: cfg.timeout,
            retry: cfg.retry.clone(),
            permits: Arc::new(Semaphore::new(cap)),
            cap: AtomicUsize::new(cap),
            pending_shrink: AtomicUsize::new(0),
            cap_fixed: cfg.max_connections.is_some(),
            version: Mutex::new(None),
            first_version: cfg.version.unwrap_or(ApiVersion::Exchange2010),
            idle: Mutex::new(HashMap::new()),
            stats: Stats::default(),
            waits: Mutex::new(Vec::new()),
            shared: cfg.shared.clone(),
        })))
    }

    /// `host:port`, as messages name the endpoint.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The version the server reported, once it has answered.
    pub fn server_version(&self) -> Option<ServerVersion> {
        self.0.version.lock().unwrap().clone()
    }

    /// The schema version requests carry: the server's once known, the
    /// configured one (or the oldest supported) before.
    pub fn api_version(&self) -> ApiVersion {
        self.server_version()
            .map(|v| v.api)
            .unwrap_or(self.0.first_version)
    }

    /// Connections at once through this endpoint.
    pub fn max_connections(&self) -> usize {
        self.0.cap.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> &Stats {
        &self.0.stats
    }

    /// The waits throttling imposed, oldest first (the last 64).
    pub fn throttle_waits(&self) -> Vec<Duration> {
        self.0.waits.lock().unwrap().clone()
    }

    fn learn_version(&self, v: ServerVersion) {
        let mut known = self.0.version.lock().unwrap();
        if known.as_ref() == Some(&v) {
            return;
        }
        let first = known.is_none();
        tracing::debug!(endpoint = %self.0.name, version = %v, "server version");
        if first && !self.0.cap_fixed {
            let want = v.api.default_max_connections();
            let have = self.0.cap.load(Ordering::Relaxed);
            if want > have {
                self.0.permits.add_permits(want - have);
                self.0.cap.store(want, Ordering::Relaxed);
            }
        }
        *known = Some(v);
    }

    /// One fewer connection from now on (never below one), and no idle
    /// ones kept: the server counts them. The permit of the next request
    /// to finish is retired, since all may be held right now.
    fn shrink(&self) {
        let i = &self.0;
        let cap = i.cap.load(Ordering::Relaxed);
        let pending = i.pending_shrink.load(Ordering::Relaxed);
        if cap > pending + 1 {
            i.pending_shrink.fetch_add(1, Ordering::Relaxed);
        }
        i.idle.lock().unwrap().clear();
    }

    /// Retires `permit` if a shrink is pending.
    fn release(&self, permit: tokio::sync::OwnedSemaphorePermit) {
        let i = &self.0;
        let took = i
            .pending_shrink
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if took {
            permit.forget();
            i.cap.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn record_wait(&self, wait: Duration) {
        self.0.stats.throttle_waits.fetch_add(1, Ordering::Relaxed);
        self.0
            .stats
            .throttle_wait_ms
            .fetch_add(wait.as_millis() as u64, Ordering::Relaxed);
        let mut w = self.0.waits.lock().unwrap();
        if w.len() == 64 {
            w.remove(0);
        }
        w.push(wait);
    }

    fn take_idle(&self, creds: &Credentials) -> Option<Conn> {
        let mut idle = self.0.idle.lock().unwrap();
        let list = idle.get_mut(&creds.pool_key())?;
        while let Some(c) = list.pop() {
            if c.is_open() {
                return Some(c);
            }
        }
        None
    }

    fn put_idle(&self, creds: &Credentials, conn: Conn) {
        self.0
            .idle
            .lock()
            .unwrap()
            .entry(creds.pool_key())
            .or_default()
            .push(conn);
    }

    /// One HTTP exchange within the connection cap, on an idle connection
    /// of this login if there is one.
    async fn post(
        &self,
        op: &'static str,
        creds: &Credentials,
        anchor: Option<&str>,
        body: Bytes,
    ) -> Result<Answer> {
        let i = &self.0;
        let permit = i
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let target = Target {
            host_header: &i.host_header,
            path: &i.path,
            anchor,
            timeout: i.timeout,
        };
        let mut conn = self.take_idle(creds);
        loop {
            let reused = conn.is_some();
            let mut c = match conn.take() {
                Some(c) => c,
                None => {
                    i.stats.connections_opened.fetch_add(1, Ordering::Relaxed);
                    transport::open(&i.host, i.port, i.tls.clone(), i.timeout)
                        .await
                        .map_err(|e| self.conn_error(op, creds, e))?
                }
            };
            i.stats.http_requests.fetch_add(1, Ordering::Relaxed);
            match c.post(&target, creds, body.clone()).await {
                Ok(a) => {
                    let close = a
                        .headers
                        .get(http::header::CONNECTION)
                        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                    if c.is_open() && !close {
                        self.put_idle(creds, c);
                    }
                    self.release(permit);
                    return Ok(a);
                }
                // A kept connection the server had closed: a fresh one.
                Err(ConnError::Http(_)) if reused => continue,
                Err(e) => return Err(self.conn_error(op, creds, e)),
            }
        }
    }

    fn conn_error(&self, op: &'static str, creds: &Credentials, e: ConnError) -> EwsError {
        let endpoint = self.0.name.clone();
        match e {
            ConnError::Io(source) => EwsError::Connect { endpoint, source },
            ConnError::Http(reason) => EwsError::Http {
                endpoint,
                operation: op,
                reason,
            },
            ConnError::Timeout => EwsError::Timeout {
                endpoint,
                operation: op,
                timeout: self.0.timeout,
            },
            ConnError::Unauthorized => EwsError::Unauthorized {
                endpoint,
                login: creds.login.clone(),
                auth: creds.auth.as_str(),
            },
        }
    }
}

/// What one try of a call came to.
enum Outcome<T> {
    Done(T),
    Wait(Duration, String),
}

/// One mailbox on an endpoint: its own login, or an admin's acting for it.
#[derive(Clone)]
pub struct Mailbox {
    ep: Endpoint,
    creds: Arc<Credentials>,
    /// The impersonated mailbox's SMTP address.
    act_as: Option<String>,
}

impl Mailbox {
    /// Logs in (and, with `act_as`, proves the right to impersonate) by
    /// reading the message-folder root; learns the server version.
    pub async fn open(ep: &Endpoint, creds: Credentials, act_as: Option<&str>) -> Result<Mailbox> {
        let mb = Mailbox {
            ep: ep.clone(),
            creds: Arc::new(creds),
            act_as: act_as.map(str::to_string),
        };
        mb.get_distinguished(&["msgfolderroot"]).await?;
        Ok(mb)
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.ep
    }

    pub fn version(&self) -> ApiVersion {
        self.ep.api_version()
    }

    fn failure(&self, op: &'static str, f: Failure, folder: Option<&str>) -> EwsError {
        let endpoint = self.ep.0.name.clone();
        match f.code.as_str() {
            "ErrorImpersonateUserDenied" | "ErrorImpersonationDenied" => {
                EwsError::ImpersonationDenied {
                    endpoint,
                    login: self.creds.login.clone(),
                    mailbox: self.act_as.clone().unwrap_or_default(),
                }
            }
            "ErrorInvalidSyncStateData" => EwsError::InvalidSyncState {
                endpoint,
                folder: folder.unwrap_or("?").to_string(),
            },
            _ => EwsError::Response {
                endpoint,
                operation: op,
                code: f.code,
                message: f.message,
            },
        }
    }

    fn malformed(&self, op: &'static str, reason: impl Into<String>) -> EwsError {
        EwsError::Malformed {
            endpoint: self.ep.0.name.clone(),
            operation: op,
            reason: reason.into(),
        }
    }

    /// Sends operation `op` (its body from `write`) and hands the response
    /// messages to `read`, retrying while the server throttles.
    async fn call<T>(
        &self,
        op: &'static str,
        write: impl Fn(&mut Xml, ApiVersion),
        read: impl Fn(&[Node<'_, '_>]) -> Result<T>,
    ) -> Result<T> {
        let policy = &self.ep.0.retry;
        let mut last = String::new();
        for attempt in 1..=policy.attempts.max(1) {
            let version = self.ep.api_version();
            let body = ops::envelope(version, self.act_as.as_deref(), |x| write(x, version));
            self.ep.0.stats.operations.fetch_add(1, Ordering::Relaxed);
            let anchor = self.act_as.as_deref();
            // A back-off the server asked of another worker holds here too.
            if let Some(shared) = &self.ep.0.shared {
                while let Some(wait) = shared.0.wait_left() {
                    tracing::debug!(endpoint = %self.ep.0.name, op, wait_ms = wait.as_millis() as u64, "waiting out a shared back-off");
                    tokio::time::sleep(wait).await;
                }
            }
            let answer = self.ep.post(op, &self.creds, anchor, body.into()).await?;
            match self.answer(op, attempt, answer, &read)? {
                Outcome::Done(t) => return Ok(t),
                Outcome::Wait(wait, why) => {
                    if attempt == policy.attempts {
                        last = why;
                        break;
                    }
                    tracing::warn!(endpoint = %self.ep.0.name, op, wait_ms = wait.as_millis() as u64, reason = %why, "throttled");
                    self.ep.record_wait(wait);
                    if let Some(shared) = &self.ep.0.shared
                        && why != "ErrorExceededConnectionCount"
                    {
                        shared.0.told(wait);
                    }
                    tokio::time::sleep(wait).await;
                    last = why;
                }
            }
        }
        Err(EwsError::Throttled {
            endpoint: self.ep.0.name.clone(),
            operation: op,
            attempts: policy.attempts,
            last,
        })
    }

    fn answer<T>(
        &self,
        op: &'static str,
        attempt: u32,
        a: Answer,
        read: &impl Fn(&[Node<'_, '_>]) -> Result<T>,
    ) -> Result<Outcome<T>> {
        let policy = &self.ep.0.retry;
        if a.status == StatusCode::SERVICE_UNAVAILABLE {
            let wait = a
                .headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
                .map(Duration::from_secs)
                .unwrap_or_else(|| policy.backoff(attempt));
            return Ok(Outcome::Wait(wait.min(policy.max_wait), "HTTP 503".into()));
        }
        if a.status != StatusCode::OK && a.status != StatusCode::INTERNAL_SERVER_ERROR {
            return Err(EwsError::Status {
                endpoint: self.ep.0.name.clone(),
                operation: op,
                status: a.status.as_u16(),
            });
        }
        let text = std::str::from_utf8(&a.body).map_err(|_| self.malformed(op, "not UTF-8"))?;
        let doc = roxmltree::Document::parse(text)
            .map_err(|e| self.malformed(op, format!("not XML: {e}")))?;
        if let Some(v) = ops::server_version(&doc) {
            self.ep.learn_version(v);
        }
        let busy = |f: &Failure| -> Option<Outcome<T>> {
            match f.code.as_str() {
                "ErrorServerBusy" => Some(Outcome::Wait(
                    f.back_off.unwrap_or_else(|| policy.backoff(attempt)),
                    "ErrorServerBusy".into(),
                )),
                "ErrorExceededConnectionCount" => {
                    self.ep.shrink();
                    Some(Outcome::Wait(
                        policy.backoff(attempt),
                        "ErrorExceededConnectionCount".into(),
                    ))
                }
                _ => None,
            }
        };
        if let Some(f) = ops::fault(&doc) {
            if let Some(w) = busy(&f) {
                return Ok(w);
            }
            return Err(self.failure(op, f, None));
        }
        let msgs = ops::messages(&doc, op)
            .ok_or_else(|| self.malformed(op, format!("no {op}Response messages")))?;
        if let Some(w) = msgs
            .iter()
            .filter_map(|m| ops::message_failure(*m))
            .find_map(|f| busy(&f))
        {
            return Ok(w);
        }
        read(&msgs).map(Outcome::Done)
    }

    /// `GetFolder` of distinguished ids; a folder this server lacks is `None`.
    pub async fn get_distinguished(&self, ids: &[&str]) -> Result<Vec<Option<Folder>>> {
        self.call(
            "GetFolder",
            |x, _| ops::get_folders(x, ids),
            |msgs| {
                msgs.iter()
                    .map(|m| match ops::message_failure(*m) {
                        None => Ok(ops::folders_in(*m).into_iter().next()),
                        Some(f)
                            if matches!(
                                f.code.as_str(),
                                "ErrorFolderNotFound" | "ErrorInvalidOperation"
                            ) =>
                        {
                            Ok(None)
                        }
                        Some(f) => Err(self.failure("GetFolder", f, None)),
                    })
                    .collect()
            },
        )
        .await
    }

    /// The whole folder tree below the message-folder root, parents
    /// before children, each with its path and well-known role.
    pub async fn folders(&self) -> Result<Vec<Folder>> {
        let version = self.version();
        let known: Vec<WellKnown> = WellKnown::ALL
            .into_iter()
            .filter(|w| w.since() <= version)
            .collect();
        let mut ids: Vec<&str> = vec!["msgfolderroot"];
        ids.extend(known.iter().map(|w| w.distinguished_id()));
        let resolved = self.get_distinguished(&ids).await?;
        let root = resolved[0]
            .clone()
            .ok_or_else(|| self.malformed("GetFolder", "no msgfolderroot"))?;
        let roles: HashMap<String, WellKnown> = known
            .iter()
            .zip(&resolved[1..])
            .filter_map(|(w, f)| Some((f.as_ref()?.id.clone(), *w)))
            .collect();
        let mut all = Vec::new();
        let mut offset = 0;
        loop {
            let (page, last) = self
                .call(
                    "FindFolder",
                    |x, _| ops::find_folders(x, offset, FOLDER_PAGE),
                    |msgs| {
                        let m = msgs
                            .first()
                            .ok_or_else(|| self.malformed("FindFolder", "no message"))?;
                        if let Some(f) = ops::message_failure(*m) {
                            return Err(self.failure("FindFolder", f, None));
                        }
                        Ok((ops::folders_in(*m), ops::find_folder_last(*m)))
                    },
                )
                .await?;
            let n = page.len();
            all.extend(page);
            offset += n;
            if last || n == 0 {
                break;
            }
        }
        Ok(arrange(&root.id, all, &roles))
    }

    /// One page of `folder`'s changes since `state` (none: everything).
    pub async fn sync_items(
        &self,
        folder_id: &str,
        state: Option<&str>,
        max_changes: u32,
    ) -> Result<SyncPage> {
        let max = max_changes.clamp(1, MAX_SYNC_CHANGES);
        self.call(
            "SyncFolderItems",
            |x, v| ops::sync_folder_items(x, v, folder_id, state, max),
            |msgs| {
                let m = msgs
                    .first()
                    .ok_or_else(|| self.malformed("SyncFolderItems", "no message"))?;
                if let Some(f) = ops::message_failure(*m) {
                    return Err(self.failure("SyncFolderItems", f, Some(folder_id)));
                }
                ops::sync_page(*m).map_err(|e| self.malformed("SyncFolderItems", e))
            },
        )
        .await
    }

    /// Items with their MIME content, read state, flag, categories and
    /// received time, in the order asked; one gone since is `Missing`.
    pub async fn get_items(&self, ids: &[ItemId]) -> Result<Vec<Fetched>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.call(
            "GetItem",
            |x, v| ops::get_items(x, v, ids),
            |msgs| {
                if msgs.len() != ids.len() {
                    return Err(self.malformed(
                        "GetItem",
                        format!("{} answers to {} ids", msgs.len(), ids.len()),
                    ));
                }
                msgs.iter()
                    .zip(ids)
                    .map(|(m, id)| match ops::message_failure(*m) {
                        None => ops::fetched_item(*m)
                            .map(|i| Fetched::Item(Box::new(i)))
                            .map_err(|e| self.malformed("GetItem", e)),
                        Some(f) if f.code == "ErrorItemNotFound" => {
                            Ok(Fetched::Missing { id: id.id.clone() })
                        }
                        Some(f) => Err(self.failure("GetItem", f, None)),
                    })
                    .collect()
            },
        )
        .await
    }

    /// Full-fidelity streams of items (Exchange 2010 SP1 and later).
    pub async fn export_items(&self, ids: &[ItemId]) -> Result<Vec<Exported>> {
        let server = self.version();
        if server < ApiVersion::Exchange2010Sp1 {
            return Err(EwsError::Unsupported {
                endpoint: self.ep.0.name.clone(),
                operation: "ExportItems",
                needs: ApiVersion::Exchange2010Sp1,
                server,
            });
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.call(
            "ExportItems",
            |x, _| ops::export_items(x, ids),
            |msgs| {
                let mut out = Vec::with_capacity(msgs.len());
                for m in msgs {
                    match ops::message_failure(*m) {
                        None => out
                            .push(ops::exported(*m).map_err(|e| self.malformed("ExportItems", e))?),
                        // Deleted or moved since the sync listed it: left
                        // out, as GetItem leaves it, for the next sync to tell.
                        Some(f) if f.code == "ErrorItemNotFound" => {}
                        Some(f) => return Err(self.failure("ExportItems", f, None)),
                    }
                }
                Ok(out)
            },
        )
        .await
    }
}

/// Orders `folders` parents first below `root`, fills in each path and
/// well-known role; a folder whose parent is unknown is dropped.
fn arrange(root: &str, folders: Vec<Folder>, roles: &HashMap<String, WellKnown>) -> Vec<Folder> {
    let mut by_parent: HashMap<String, Vec<Folder>> = HashMap::new();
    for f in folders {
        by_parent
            .entry(f.parent_id.clone().unwrap_or_default())
            .or_default()
            .push(f);
    }
    let mut out = Vec::new();
    let mut stack: Vec<(String, Vec<String>)> = vec![(root.to_string(), Vec::new())];
    while let Some((parent, path)) = stack.pop() {
        let Some(mut kids) = by_parent.remove(&parent) else {
            continue;
        };
        kids.sort_by(|a, b| a.display_name.cmp(&b.display_name));
        for mut f in kids {
            f.path = path.clone();
            f.path.push(f.display_name.clone());
            f.well_known = roles.get(&f.id).copied();
            stack.push((f.id.clone(), f.path.clone()));
            out.push(f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(id: &str, parent: &str, name: &str) -> Folder {
        Folder {
            id: id.into(),
            parent_id: Some(parent.into()),
            display_name: name.into(),
            class: "IPF.Note".into(),
            kind: FolderKind::Mail,
            total_count: None,
            child_folder_count: None,
            well_known: None,
            path: Vec::new(),
        }
    }

    #[test]
    fn folders_are_arranged_parents_first_with_paths() {
        let roles = HashMap::from([("i".to_string(), WellKnown::Inbox)]);
        let out = arrange(
            "root",
            vec![
                folder("x", "i", "Sub"),
                folder("i", "root", "Inbox"),
                folder("orphan", "nowhere", "Lost"),
            ],
            &roles,
        );
        let paths: Vec<String> = out.iter().map(|f| f.path.join("/")).collect();
        assert_eq!(paths, ["Inbox", "Inbox/Sub"]);
        assert_eq!(out[0].well_known, Some(WellKnown::Inbox));
        assert_eq!(out[1].well_known, None);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            attempts: 5,
            first_wait: Duration::from_millis(100),
            max_wait: Duration::from_millis(350),
        };
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(3), Duration::from_millis(350));
    }

    #[test]
    fn an_endpoint_wants_https_and_fills_in_the_path() {
        let ep = Endpoint::new(&EndpointConfig::new("https://mail.example.com")).unwrap();
        assert_eq!(ep.0.path, "/EWS/Exchange.asmx");
        assert_eq!(ep.name(), "mail.example.com:443");
        assert_eq!(ep.max_connections(), 10);
        assert!(
            Endpoint::new(&EndpointConfig::new(
                "http://mail.example.com/EWS/Exchange.asmx"
            ))
            .is_err()
        );
    }

    #[test]
    fn the_cap_rises_to_27_when_a_2013_server_answers() {
        let ep = Endpoint::new(&EndpointConfig::new("https://h/EWS/Exchange.asmx")).unwrap();
        ep.learn_version(ServerVersion {
            major: 15,
            minor: 1,
            major_build: 2507,
            minor_build: 6,
            api: ApiVersion::Exchange2016,
        });
        assert_eq!(ep.max_connections(), 27);
        assert_eq!(ep.0.permits.available_permits(), 27);
        ep.shrink();
        let permit = ep.0.permits.clone().try_acquire_owned().unwrap();
        ep.release(permit);
        assert_eq!(ep.max_connections(), 26);
        assert_eq!(ep.0.permits.available_permits(), 26);
        let mut fixed = EndpointConfig::new("https://h/EWS/Exchange.asmx");
        fixed.max_connections = Some(4);
        let ep = Endpoint::new(&fixed).unwrap();
        ep.learn_version(ServerVersion {
            major: 15,
            minor: 0,
            major_build: 1497,
            minor_build: 2,
            api: ApiVersion::Exchange2013Sp1,
        });
        assert_eq!(ep.max_connections(), 4);
    }

    #[test]
    fn credentials_never_show_their_password() {
        let c = Credentials::new(transport::AuthKind::Ntlm, "D\\u", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}

//! A Microsoft Graph and Microsoft identity platform simulator for the
//! tests, written from Microsoft's public documentation: the v2.0 token
//! endpoint with the client-credentials grant (client secrets, and
//! certificate assertions whose signature, audience and lifetime are
//! checked), the OpenID metadata MSAL reads, and the mail part of Graph
//! (users, mail folders, messages with extended properties and `$filter`,
//! upload sessions, the mailbox import API, delta queries, `$batch`) with
//! Exchange Online's throttling. HTTPS on 127.0.0.1 with its own CA.
//!
//! `identity` answers sign-ins, `mail` the Graph resources, `filter` the
//! OData filters; this file holds the server, the throttle and the handle
//! the tests steer it by.

pub mod filter;
mod identity;
mod mail;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{Value, json};

pub use mail::SimMessage;

/// Throttling the simulator applies per (application, mailbox), as Exchange
/// Online does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimLimits {
    pub concurrent: u32,
    pub requests: u32,
    pub window: Duration,
    pub upload_bytes: u64,
    pub upload_window: Duration,
}

impl SimLimits {
    /// Exchange Online's published limits.
    pub const EXCHANGE_ONLINE: SimLimits = SimLimits {
        concurrent: 4,
        requests: 10_000,
        window: Duration::from_secs(600),
        upload_bytes: 150 * 1024 * 1024,
        upload_window: Duration::from_secs(300),
    };
}

/// How the simulator starts.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub tenant_id: String,
    pub tenant_domain: String,
    pub token_lifetime: Duration,
    /// Added to every Graph request, so concurrency shows.
    pub latency: Duration,
    pub limits: Option<SimLimits>,
    pub page_size: usize,
    pub import_session_lifetime: Duration,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            tenant_id: "9188040d-6c67-4c5b-b112-36a304b66dad".into(),
            tenant_domain: "contoso.onmicrosoft.com".into(),
            token_lifetime: Duration::from_secs(3599),
            latency: Duration::ZERO,
            limits: Some(SimLimits::EXCHANGE_ONLINE),
            page_size: 10,
            import_session_lifetime: Duration::from_secs(3600),
        }
    }
}

/// One request as the simulator saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// When the request arrived, since the simulator started.
    pub at: Duration,
    pub app: String,
    /// The mailbox's address, empty for sign-ins and outer `$batch` calls.
    pub mailbox: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub upload: u64,
    /// Requests of the same (application, mailbox) in flight, this one included.
    pub in_flight: u32,
    /// A part of a `$batch`.
    pub in_batch: bool,
}

impl Record {
    /// A request not (yet) known to act for a mailbox.
    fn anonymous(at: Duration, req: &Req, status: u16, in_batch: bool) -> Record {
        Record {
            at,
            app: String::new(),
            mailbox: String::new(),
            method: req.method.clone(),
            path: req.path.clone(),
            status,
            upload: 0,
            in_flight: 0,
            in_batch,
        }
    }
}

/// A running simulator; stops when dropped.
pub struct GraphSim {
    base: String,
    ca_pem: String,
    ca_path: PathBuf,
    state: Arc<Mutex<State>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

pub(crate) struct App {
    pub secret: Option<String>,
    pub certs: Vec<Vec<u8>>,
}

pub(crate) struct Token {
    pub app: String,
    pub audience: String,
    pub expires: Instant,
}

#[derive(Default)]
struct Throttle {
    in_flight: HashMap<(String, String), u32>,
    hits: HashMap<(String, String), VecDeque<Instant>>,
    uploads: HashMap<(String, String), VecDeque<(Instant, u64)>>,
    forced: VecDeque<u64>,
    /// Statuses to answer, each for the next request whose path starts with its prefix.
    failures: VecDeque<(String, u16)>,
}

pub(crate) struct State {
    pub cfg: SimConfig,
    pub base: String,
    pub started: Instant,
    pub apps: HashMap<String, App>,
    pub tokens: HashMap<String, Token>,
    pub grants: u64,
    pub users: BTreeMap<String, mail::User>,
    pub version: u64,
    pub next_id: u64,
    pub deltas: HashMap<String, mail::DeltaMark>,
    pub pages: HashMap<String, mail::DeltaPage>,
    pub uploads: HashMap<String, mail::UploadSession>,
    pub imports: HashMap<String, mail::ImportSession>,
    throttle: Throttle,
    log: Vec<Record>,
}

/// What a handler answers.
pub(crate) struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Answer {
    pub fn json(status: u16, v: Value) -> Answer {
        Answer {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from(v.to_string()),
        }
    }

    pub fn error(status: u16, code: &str, message: &str) -> Answer {
        Answer::json(
            status,
            json!({ "error": { "code": code, "message": message } }),
        )
    }

    pub fn empty(status: u16) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }
}

/// A request as the handlers take it.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub method: String,
    /// Percent-decoded path segments.
    pub segs: Vec<String>,
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HashMap<String, String>,
    pub body: Bytes,
}

impl Req {
    pub fn json(&self) -> Result<Value, Answer> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Answer::error(400, "BadRequest", &format!("invalid JSON: {e}")))
    }

    fn parse(
        method: &str,
        path_and_query: &str,
        headers: HashMap<String, String>,
        body: Bytes,
    ) -> Req {
        let (path, q) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let query = form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let segs = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            // A function without parameters may be called as `delta()`.
            .map(|s| s.strip_suffix("()").map(str::to_string).unwrap_or(s))
            .collect();
        Req {
            method: method.to_string(),
            segs,
            path: path.to_string(),
            query,
            headers,
            body,
        }
    }
}

impl GraphSim {
    pub fn start(cfg: SimConfig) -> GraphSim {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca_pem, cert_der, key_der) = certificates();
        let ca_path = dir.path().join("graph-sim-ca.pem");
        std::fs::write(&ca_path, &ca_pem).expect("write CA");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr: SocketAddr = listener.local_addr().expect("address");
        let base = format!("https://127.0.0.1:{}", addr.port());
        let state = Arc::new(Mutex::new(State {
            cfg,
            base: base.clone(),
            started: Instant::now(),
            apps: HashMap::new(),
            tokens: HashMap::new(),
            grants: 0,
            users: BTreeMap::new(),
            version: 0,
            next_id: 0,
            deltas: HashMap::new(),
            pages: HashMap::new(),
            uploads: HashMap::new(),
            imports: HashMap::new(),
            throttle: Throttle::default(),
            log: Vec::new(),
        }));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(serve(listener, cert_der, key_der, st, rx));
        });
        GraphSim {
            base,
            ca_pem,
            ca_path,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// The sign-in authority (scheme, host and port).
    pub fn authority(&self) -> &str {
        &self.base
    }

    /// Graph's root, with its version.
    pub fn graph_url(&self) -> String {
        format!("{}/v1.0", self.base)
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().expect("simulator lock"))
    }

    pub fn tenant_id(&self) -> String {
        self.with(|s| s.cfg.tenant_id.clone())
    }

    pub fn tenant_domain(&self) -> String {
        self.with(|s| s.cfg.tenant_domain.clone())
    }

    /// Registers an application that signs in with a client secret.
    pub fn add_app_secret(&self, client_id: &str, secret: &str) {
        self.with(|s| s.app(client_id).secret = Some(secret.into()));
    }

    /// Registers a certificate (DER) on an application.
    pub fn add_app_certificate(&self, client_id: &str, cert_der: &[u8]) {
        self.with(|s| s.app(client_id).certs.push(cert_der.to_vec()));
    }

    /// Adds a user with a mailbox holding Exchange's default folders;
    /// answers the user's object id.
    pub fn add_user(&self, address: &str) -> String {
        self.with(|s| s.add_user(address))
    }

    pub fn set_token_lifetime(&self, d: Duration) {
        self.with(|s| s.cfg.token_lifetime = d);
    }

    /// Every token issued so far stops being valid now.
    pub fn expire_tokens(&self) {
        self.with(|s| {
            s.tokens
                .values_mut()
                .for_each(|t| t.expires = Instant::now())
        });
    }

    /// Tokens issued (sign-ins that succeeded).
    pub fn grants(&self) -> u64 {
        self.with(|s| s.grants)
    }

    /// The next `n` mailbox requests are answered 429 with this `Retry-After`.
    pub fn throttle_next(&self, n: usize, retry_after_secs: u64) {
        self.with(|s| {
            s.throttle
                .forced
                .extend(std::iter::repeat_n(retry_after_secs, n))
        });
    }

    /// The next `n` mailbox requests are answered with `status` (503, 504).
    pub fn fail_next(&self, n: usize, status: u16) {
        self.fail_next_on("", n, status);
    }

    /// The next `n` mailbox requests whose path starts with `prefix` (such
    /// as `/upload/`) are answered with `status`.
    pub fn fail_next_on(&self, prefix: &str, n: usize, status: u16) {
        self.with(|s| {
            s.throttle
                .failures
                .extend(std::iter::repeat_n((prefix.to_string(), status), n))
        });
    }

    pub fn set_limits(&self, limits: Option<SimLimits>) {
        self.with(|s| s.cfg.limits = limits);
    }

    pub fn set_latency(&self, d: Duration) {
        self.with(|s| s.cfg.latency = d);
    }

    /// Every delta link and page link issued so far is forgotten (410).
    pub fn expire_delta_links(&self) {
        self.with(|s| {
            s.deltas.clear();
            s.pages.clear();
        });
    }

    /// Every import session's URL expires now.
    pub fn expire_import_sessions(&self) {
        self.with(|s| {
            s.imports
                .values_mut()
                .for_each(|i| i.expires = Instant::now())
        });
    }

    pub fn set_import_session_lifetime(&self, d: Duration) {
        self.with(|s| s.cfg.import_session_lifetime = d);
    }

    /// Every request seen so far.
    pub fn requests(&self) -> Vec<Record> {
        self.with(|s| s.log.clone())
    }

    pub fn clear_requests(&self) {
        self.with(|s| s.log.clear());
    }

    /// The messages of a user's mailbox, as the simulator holds them.
    pub fn messages(&self, address: &str) -> Vec<SimMessage> {
        self.with(|s| s.user_messages(address))
    }

    /// A user's folders as (id, path of display names, well-known name).
    pub fn folders(&self, address: &str) -> Vec<(String, String, Option<String>)> {
        self.with(|s| s.user_folders(address))
    }

    /// A user's folders as (path of display names, container class).
    pub fn folder_classes(&self, address: &str) -> Vec<(String, String)> {
        self.with(|s| s.user_folder_classes(address))
    }

    /// A mail folder under `parent` (an id or a well-known name), or below
    /// the root: its id.
    pub fn make_folder(&self, address: &str, parent: Option<&str>, name: &str) -> String {
        self.with(|s| s.make_folder(address, parent, name))
    }

    /// Renames a folder (by id), and moves it under `parent` (an id)
    /// when given, as its owner would in Outlook.
    pub fn rename_folder(&self, address: &str, id: &str, name: &str, parent: Option<&str>) {
        self.with(|s| s.rename_folder(address, id, name, parent));
    }

    /// Deletes a folder (by id) and its messages for good.
    pub fn delete_folder(&self, address: &str, id: &str) {
        self.with(|s| s.delete_folder(address, id));
    }

    /// A message created directly (as mail delivered to the mailbox).
    pub fn deliver(&self, address: &str, folder: &str, subject: &str) -> String {
        self.with(|s| s.deliver(address, folder, subject))
    }

    /// An item of a class besides mail with its full-fidelity stream (as
    /// the import API would keep it), in `folder` below the root, made of
    /// `folder_class` when missing.
    pub fn add_item(
        &self,
        address: &str,
        folder: &str,
        folder_class: &str,
        class: &str,
        data: &[u8],
    ) -> String {
        self.with(|s| s.add_item(address, folder, folder_class, class, data))
    }

    /// A received message whose MIME is kept as given (`$value` serves it).
    pub fn deliver_mime(&self, address: &str, folder: &str, mime: &[u8]) -> String {
        self.with(|s| s.deliver_mime(address, folder, mime))
    }

    /// Sets a message's read state, flag and categories, as a client would.
    pub fn set_state(
        &self,
        address: &str,
        id: &str,
        read: bool,
        flagged: bool,
        categories: &[&str],
    ) {
        let c = categories.iter().map(|c| c.to_string()).collect();
        self.with(|s| s.change_item(address, id, Some((read, flagged, c)), None));
    }

    /// Replaces an item's full-fidelity stream (an edited appointment).
    pub fn change_stream(&self, address: &str, id: &str, data: &[u8]) {
        self.with(|s| s.change_item(address, id, None, Some(data)));
    }

    /// The bytes `$value` serves for a message.
    pub fn value(&self, address: &str, id: &str) -> Option<Vec<u8>> {
        self.with(|s| s.value(address, id))
    }

    /// The stream `exportItems` serves for an item.
    pub fn exported(&self, address: &str, id: &str) -> Option<Vec<u8>> {
        self.with(|s| s.exported(address, id))
    }

    /// Deletes a message directly.
    pub fn delete(&self, address: &str, id: &str) {
        self.with(|s| s.delete_message(address, id));
    }
}

impl Drop for GraphSim {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it.
fn certificates() -> (String, Vec<u8>, Vec<u8>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "graph simulator CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("certificate");
    (ca.pem(), cert.der().to_vec(), key.serialize_der())
}

async fn serve(
    listener: std::net::TcpListener,
    cert: Vec<u8>,
    key: Vec<u8>,
    state: Arc<Mutex<State>>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.into()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
        )
        .expect("TLS config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
    loop {
        let (tcp, _) = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
        };
        let acceptor = acceptor.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(state, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .await;
        });
    }
}

/// Who a request acts as and for whom, for the throttle.
pub(crate) struct Key {
    app: String,
    mailbox: String,
}

async fn handle(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let headers: HashMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return respond(Answer::error(400, "BadRequest", "unreadable body")),
    };
    let req = Req::parse(&method, &pq, headers, body);
    let answer = dispatch(&state, req, false).await;
    respond(answer)
}

fn respond(a: Answer) -> Response<Full<Bytes>> {
    let mut r = Response::builder().status(a.status);
    for (k, v) in &a.headers {
        r = r.header(k.as_str(), v.as_str());
    }
    r.body(Full::new(a.body)).expect("response")
}

/// Routes one request (a `$batch` part when `in_batch`).
fn dispatch(
    state: &Arc<Mutex<State>>,
    req: Req,
    in_batch: bool,
) -> std::pin::Pin<Box<dyn Future<Output = Answer> + Send + '_>> {
    Box::pin(async move {
        let arrived = state.lock().expect("simulator lock").started.elapsed();
        let first = req.segs.first().cloned().unwrap_or_default();
        // Sign-in and metadata: not throttled as mailbox requests are.
        if first != "v1.0" && first != "beta" && first != "upload" && first != "import" {
            let mut s = state.lock().expect("simulator lock");
            let a = s.identity(&req);
            s.log
                .push(Record::anonymous(arrived, &req, a.status, in_batch));
            return a;
        }
        // Who is asking, and for which mailbox.
        let key = {
            let mut s = state.lock().expect("simulator lock");
            match s.authorize(&req) {
                Ok(k) => k,
                Err(a) => {
                    s.log
                        .push(Record::anonymous(arrived, &req, a.status, in_batch));
                    return a;
                }
            }
        };
        if req.segs.get(1).map(String::as_str) == Some("$batch") && !in_batch {
            return batch(state, req, key.app).await;
        }
        let upload = if matches!(req.method.as_str(), "POST" | "PUT" | "PATCH") {
            req.body.len() as u64
        } else {
            0
        };
        let k = (key.app.clone(), key.mailbox.clone());
        let (refused, latency, in_flight) = {
            let mut s = state.lock().expect("simulator lock");
            let refused = s.admit(&k, &req.path, upload);
            let n = if refused.is_none() {
                let n = s.throttle.in_flight.entry(k.clone()).or_default();
                *n += 1;
                *n
            } else {
                s.throttle.in_flight.get(&k).copied().unwrap_or(0) + 1
            };
            (refused, s.cfg.latency, n)
        };
        let answer = match refused {
            Some(a) => a,
            None => {
                // A request whose client went away mid-wait ends here too,
                // as it does at the service: it no longer counts in flight.
                let _done = InFlight {
                    state: state.clone(),
                    key: k.clone(),
                };
                if !latency.is_zero() {
                    tokio::time::sleep(latency).await;
                }
                let mut s = state.lock().expect("simulator lock");
                s.graph(&req, &key.mailbox, &key.app)
            }
        };
        let mut s = state.lock().expect("simulator lock");
        s.log.push(Record {
            at: arrived,
            app: key.app,
            mailbox: key.mailbox,
            method: req.method.clone(),
            path: req.path.clone(),
            status: answer.status,
            upload,
            in_flight,
            in_batch,
        });
        answer
    })
}

/// Counts a request out of the throttle's in-flight tally when dropped.
struct InFlight {
    state: Arc<Mutex<State>>,
    key: (String, String),
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // Poisoned only by a panicking handler; the tally no longer matters.
        if let Ok(mut s) = self.state.lock()
            && let Some(n) = s.throttle.in_flight.get_mut(&self.key)
        {
            *n = n.saturating_sub(1);
        }
    }
}

/// `$batch`: up to 20 parts, run in order; a part whose dependency failed
/// answers 424.
async fn batch(state: &Arc<Mutex<State>>, req: Req, app: String) -> Answer {
    let v = match req.json() {
        Ok(v) => v,
        Err(a) => return a,
    };
    let Some(parts) = v["requests"].as_array() else {
        return Answer::error(400, "BadRequest", "no requests");
    };
    if parts.len() > 20 {
        return Answer::error(400, "BadRequest", "a batch takes at most 20 requests");
    }
    let version = req.segs[0].clone();
    let mut statuses: HashMap<String, u16> = HashMap::new();
    let mut out = Vec::new();
    for p in parts {
        let id = p["id"].as_str().unwrap_or_default().to_string();
        let deps: Vec<String> = p["dependsOn"]
            .as_array()
            .map(|d| {
                d.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(missing) = deps.iter().find(|d| !statuses.contains_key(*d)) {
            return Answer::error(
                400,
                "BadRequest",
                &format!("dependsOn names {missing}, which is not before it"),
            );
        }
        let (status, headers, body) = if deps.iter().any(|d| !(200..300).contains(&statuses[d])) {
            (
                424,
                json!({}),
                json!({ "error": { "code": "FailedDependency", "message": "a request this one depends on failed" } }),
            )
        } else {
            let url = p["url"].as_str().unwrap_or("/");
            let url = if url.starts_with('/') {
                url.to_string()
            } else {
                format!("/{url}")
            };
            let mut headers: HashMap<String, String> = HashMap::new();
            headers.insert(
                "authorization".into(),
                req.headers
                    .get("authorization")
                    .cloned()
                    .unwrap_or_default(),
            );
            let body = if p["body"].is_null() {
                Bytes::new()
            } else {
                Bytes::from(p["body"].to_string())
            };
            let inner = Req::parse(
                p["method"].as_str().unwrap_or("GET"),
                &format!("/{version}{url}"),
                headers,
                body,
            );
            let a = dispatch(state, inner, true).await;
            let hv: serde_json::Map<String, Value> = a
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            let body = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
            (a.status, Value::Object(hv), body)
        };
        statuses.insert(id.clone(), status);
        out.push(json!({ "id": id, "status": status, "headers": headers, "body": body }));
    }
    let _ = app;
    Answer::json(200, json!({ "responses": out }))
}

impl State {
    fn app(&mut self, client_id: &str) -> &mut App {
        self.apps.entry(client_id.into()).or_insert(App {
            secret: None,
            certs: Vec::new(),
        })
    }

    pub(crate) fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        let r: [u8; 12] = rand::random();
        use base64::Engine;
        format!(
            "{prefix}{}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r),
            self.next_id
        )
    }

    pub(crate) fn bump(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    /// Whether a mailbox request may run now; the refusal if not.
    fn admit(&mut self, k: &(String, String), path: &str, upload: u64) -> Option<Answer> {
        if let Some(secs) = self.throttle.forced.pop_front() {
            return Some(too_many(secs));
        }
        let failure = self
            .throttle
            .failures
            .iter()
            .position(|(p, _)| path.starts_with(p.as_str()));
        if let Some((_, status)) = failure.and_then(|i| self.throttle.failures.remove(i)) {
            return Some(Answer::error(
                status,
                "ServiceUnavailable",
                "the service is busy",
            ));
        }
        let limits = self.cfg.limits?;
        let now = Instant::now();
        if self.throttle.in_flight.get(k).copied().unwrap_or(0) >= limits.concurrent {
            return Some(too_many(1));
        }
        let hits = self.throttle.hits.entry(k.clone()).or_default();
        while hits
            .front()
            .is_some_and(|t| now.duration_since(*t) >= limits.window)
        {
            hits.pop_front();
        }
        if hits.len() as u32 >= limits.requests {
            let wait = (hits[0] + limits.window).saturating_duration_since(now);
            return Some(too_many(wait.as_secs_f64().ceil().max(1.0) as u64));
        }
        let ups = self.throttle.uploads.entry(k.clone()).or_default();
        while ups
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= limits.upload_window)
        {
            ups.pop_front();
        }
        let used: u64 = ups.iter().map(|(_, n)| n).sum();
        if upload > 0 && used > 0 && used + upload > limits.upload_bytes {
            let wait = (ups[0].0 + limits.upload_window).saturating_duration_since(now);
            return Some(too_many(wait.as_secs_f64().ceil().max(1.0) as u64));
        }
        hits.push_back(now);
        if upload > 0 {
            ups.push_back((now, upload));
        }
        None
    }
}

fn too_many(secs: u64) -> Answer {
    let mut a = Answer::error(
        429,
        "ApplicationThrottled",
        "Application is over its MailboxConcurrency limit or request limit.",
    );
    a.headers.push(("retry-after".into(), secs.to_string()));
    a
}

/// Checks arrivals `(time, status)` of one mailbox against a client budget
/// of `requests` per `window` (less 50 ms of network jitter) and
/// `Retry-After: retry_after` on each 429: nothing starts within it (but
/// requests already on their way, 30 ms), and work resumes within 100 ms
/// of its end. Returns the times of the 429s.
pub fn assert_budget_kept(
    log: &[(Duration, u16)],
    requests: usize,
    window: Duration,
    retry_after: Duration,
) -> Vec<Duration> {
    let times: Vec<Duration> = log.iter().map(|(t, _)| *t).collect();
    let span = window.saturating_sub(Duration::from_millis(50));
    for (i, t) in times.iter().enumerate() {
        let within = times[i..].iter().take_while(|u| **u < *t + span).count();
        assert!(
            within <= requests,
            "{within} requests within {window:?} from {t:?}"
        );
    }
    let throttled: Vec<Duration> = log
        .iter()
        .filter(|(_, s)| *s == 429)
        .map(|(t, _)| *t)
        .collect();
    for t in &throttled {
        let early: Vec<&Duration> = times
            .iter()
            .filter(|u| **u > *t + Duration::from_millis(30) && **u < *t + retry_after)
            .collect();
        assert!(
            early.is_empty(),
            "requests at {early:?} within {retry_after:?} of a 429 at {t:?}"
        );
    }
    if let Some(last) = throttled.last() {
        let resumed = *times
            .iter()
            .find(|u| **u > *last + Duration::from_millis(30))
            .expect("work resumed after the last 429");
        assert!(
            resumed <= *last + retry_after + Duration::from_millis(100),
            "resumed at {resumed:?}, last 429 at {last:?}"
        );
    }
    throttled
}

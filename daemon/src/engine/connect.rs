//! Opening sessions for one mailbox on one endpoint, within the endpoint's
//! connection cap.
//!
//! Credentials: the row's own login and secret when the CSV gave them,
//! otherwise the endpoint's admin login acting for the user (SASL PLAIN
//! with an authorization identity). A Maildir endpoint's root holds one
//! Maildir per address.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_connectors::imap::{self, ImapAuth, ImapConfig};
use ferry_connectors::source::ChangeSource;
use ferry_connectors::{ConnectorError, MailSession, ews, maildir};
use ferry_events::{EndpointKind, EndpointSpec, EwsAuth, MailboxSpec, Side, TlsMode, TokenSource};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::EngineError;
use super::keyed::{Keyed, KeyedSession};
use crate::app::App;

/// A session plus its place under the endpoint's connection cap (dropped
/// after the session, so the place is given back once it is closed).
pub struct Conn {
    pub session: Box<dyn MailSession>,
    /// A keyed source's change feed, for the folder jobs to read first.
    pub keyed: Option<Keyed>,
    _slot: Slot,
}

/// A place under an endpoint's cap: this daemon's, and in a fleet the
/// fleet's as well (so the workers together stay within the cap).
pub struct Slot {
    _fleet: Option<ferry_pgstore::FleetSlot>,
    _local: OwnedSemaphorePermit,
}

/// Waits for a place under `endpoint`'s cap. Callers that need both sides
/// take the source's first, so two mailboxes never wait on each other.
pub async fn slot(
    app: &App,
    caps: &Caps,
    endpoint: &str,
    spec: &EndpointSpec,
) -> Result<Slot, EngineError> {
    let cap = caps.slot(endpoint, spec.max_connections);
    let local = match cap.sem.clone().try_acquire_owned() {
        Ok(p) => p,
        Err(_) => {
            let _waiting = Waiting::new(&cap.waiting);
            cap.sem
                .acquire_owned()
                .await
                .expect("semaphores are never closed")
        }
    };
    let fleet = match &app.fleet_caps {
        Some(f) => Some(f.acquire(endpoint, spec.max_connections).await?),
        None => None,
    };
    Ok(Slot {
        _fleet: fleet,
        _local: local,
    })
}

impl Conn {
    /// Tells a keyed source what `dst` takes (its classes besides mail,
    /// whether it imports mail as streams), before the source is listed
    /// or read; every new pair of sessions is introduced so.
    pub fn introduce(&self, dst: &Conn) {
        if let Some(k) = &self.keyed {
            k.accept(dst.session.as_ref());
        }
    }
}

impl std::ops::Deref for Conn {
    type Target = dyn MailSession;
    fn deref(&self) -> &Self::Target {
        self.session.as_ref()
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.session.as_mut()
    }
}

/// One semaphore per endpoint, sized by its `max_connections`.
#[derive(Default)]
pub struct Caps {
    slots: Mutex<HashMap<String, Cap>>,
}

/// An endpoint's places in this daemon, and how many mailboxes wait for one.
#[derive(Clone)]
struct Cap {
    sem: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
}

/// Counts one waiter while it lives.
struct Waiting(Arc<AtomicUsize>);

impl Waiting {
    fn new(n: &Arc<AtomicUsize>) -> Waiting {
        n.fetch_add(1, Ordering::Relaxed);
        Waiting(n.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Caps {
    fn slot(&self, endpoint: &str, max: u32) -> Cap {
        self.slots
            .lock()
            .unwrap()
            .entry(endpoint.to_string())
            .or_insert_with(|| Cap {
                sem: Arc::new(Semaphore::new(max.max(1) as usize)),
                waiting: Arc::default(),
            })
            .clone()
    }

    fn waiting(&self, endpoint: &str) -> bool {
        let slots = self.slots.lock().unwrap();
        slots
            .get(endpoint)
            .is_some_and(|c| c.waiting.load(Ordering::Relaxed) > 0)
    }
}

/// Whether a mailbox waits for a place under any of `endpoints`' caps (in
/// this daemon, or in a fleet anywhere in it): a spare then gives its
/// places back before its next folder.
pub async fn waiting(app: &App, caps: &Caps, endpoints: &[&str]) -> bool {
    if endpoints.iter().any(|e| caps.waiting(e)) {
        return true;
    }
    match &app.fleet_caps {
        Some(f) => f.waiting(endpoints).await.is_ok_and(|n| n > 0),
        None => false,
    }
}

fn tls(mode: TlsMode) -> imap::TlsMode {
    match mode {
        TlsMode::None => imap::TlsMode::None,
        TlsMode::StartTls => imap::TlsMode::StartTls,
        TlsMode::Tls => imap::TlsMode::Tls,
    }
}

fn imap_config(spec: &EndpointSpec, timeout: Duration) -> ImapConfig {
    ImapConfig {
        host: spec.host.clone(),
        port: spec.port,
        tls: tls(spec.tls),
        ca_file: spec.ca_file.clone().map(Into::into),
        timeout,
        fence: None,
    }
}

fn secret(app: &App, r: &Option<ferry_events::SecretRef>) -> Result<Option<String>, EngineError> {
    r.as_ref()
        .map(|r| app.secrets.get(r).map_err(EngineError::Secret))
        .transpose()
}

/// The session for `mailbox` on one side of its batch; without `write`, a
/// Maildir destination is opened read-only and never created (`batch plan`).
#[allow(clippy::too_many_arguments)]
pub async fn open(
    app: &App,
    caps: &Caps,
    endpoint: &str,
    spec: &EndpointSpec,
    mailbox: &MailboxSpec,
    side: Side,
    timeout: Duration,
    write: bool,
) -> Result<Conn, EngineError> {
    let slot = slot(app, caps, endpoint, spec).await?;
    open_in(slot, app, endpoint, spec, mailbox, side, timeout, write).await
}

/// The session for `mailbox` in a place already taken (see [`slot`]).
#[allow(clippy::too_many_arguments)]
pub async fn open_with(
    slot: Slot,
    app: &App,
    endpoint: &str,
    spec: &EndpointSpec,
    mailbox: &MailboxSpec,
    side: Side,
    timeout: Duration,
) -> Result<Conn, EngineError> {
    open_in(slot, app, endpoint, spec, mailbox, side, timeout, true).await
}

/// A further session for `mailbox`, to work on more folders at once: only
/// while more places are free than mailboxes wait for their first session
/// (this daemon's, and in a fleet the fleet's), so a spare never takes a
/// place a waiting mailbox asked for, yet uses the whole cap when nobody
/// waits. `None` when not.
pub async fn open_spare(
    app: &App,
    caps: &Caps,
    endpoint: &str,
    spec: &EndpointSpec,
    mailbox: &MailboxSpec,
    side: Side,
    timeout: Duration,
) -> Option<Result<Conn, EngineError>> {
    // The semaphore hands a released permit to a queued waiter before
    // anyone may try for it: a permit free here is nobody's.
    let local = caps
        .slot(endpoint, spec.max_connections)
        .sem
        .try_acquire_owned()
        .ok()?;
    let fleet = match &app.fleet_caps {
        Some(f) => match f.try_acquire(endpoint, spec.max_connections).await {
            Ok(Some(s)) => Some(s),
            Ok(None) => return None,
            Err(e) => return Some(Err(e.into())),
        },
        None => None,
    };
    let slot = Slot {
        _fleet: fleet,
        _local: local,
    };
    Some(open_in(slot, app, endpoint, spec, mailbox, side, timeout, true).await)
}

#[allow(clippy::too_many_arguments)]
async fn open_in(
    slot: Slot,
    app: &App,
    endpoint: &str,
    spec: &EndpointSpec,
    mailbox: &MailboxSpec,
    side: Side,
    timeout: Duration,
    write: bool,
) -> Result<Conn, EngineError> {
    let (address, login, secret_ref) = match side {
        Side::Source => (
            mailbox.address.clone(),
            mailbox.source_login.clone(),
            &mailbox.source_secret,
        ),
        Side::Destination => (
            mailbox.destination_address.to_lowercase(),
            mailbox.destination_login.clone(),
            &mailbox.destination_secret,
        ),
    };
    // Checked again at use: the roots may have narrowed since the endpoint
    // was registered.
    let allowed = app.config.read().unwrap().endpoints.check_spec(spec);
    allowed.map_err(EngineError::Unsupported)?;
    let mut keyed = None;
    let session: Box<dyn MailSession> = match spec.kind {
        EndpointKind::Maildir => {
            let root = maildir_root(&spec.host, &address)?;
            match side {
                Side::Source => {
                    let uid_dir = maildir_uid_dir(app, &root);
                    Box::new(maildir::open_source(&root, &uid_dir)?)
                }
                Side::Destination => Box::new(maildir::open(&root, write)?),
            }
        }
        EndpointKind::Graph => {
            let graph = graph_client(app, endpoint, spec)?;
            // Graph acts for a user by address; a CSV login names an IMAP user.
            let mailbox = graph
                .mailbox(&address)
                .map_err(|e| EngineError::Unsupported(e.to_string()))?;
            match side {
                // Read as a keyed source: deltas as cursors, exports whole.
                Side::Source => {
                    let mut source = ferry_graph::GraphSource::new(mailbox, &spec.host);
                    // Folders are followed by id from pass to pass.
                    source.known_folders(super::keyed::recorded_folders(app, &address));
                    let k = Keyed::new(Box::new(source));
                    keyed = Some(k.clone());
                    Box::new(KeyedSession::new(k, spec.host.clone(), "GRAPH"))
                }
                Side::Destination => Box::new(ferry_graph::GraphSession::new(mailbox, &spec.host)),
            }
        }
        EndpointKind::Imap => {
            let user_secret = secret(app, secret_ref)?;
            let sign_in = sign_in_of(app, endpoint);
            let auth = match (login, user_secret) {
                (login, Some(password)) => ImapAuth::Login {
                    user: login.unwrap_or(address.clone()),
                    password,
                },
                // Exchange Online's IMAP with the application's own token.
                (login, None) if sign_in.is_some() => ImapAuth::XOAuth2 {
                    user: login.unwrap_or(address.clone()),
                    token: imap_token(app, endpoint, spec).await?,
                },
                (login, None) if spec.oauth.is_some() => ImapAuth::XOAuth2 {
                    user: login.unwrap_or(address.clone()),
                    token: token(app, spec.oauth.as_ref().expect("checked"), timeout).await?,
                },
                (login, None) => match (&spec.admin_user, secret(app, &spec.admin_secret)?) {
                    (Some(admin), Some(password)) => ImapAuth::Plain {
                        authzid: Some(login.unwrap_or(address.clone())),
                        user: admin.clone(),
                        password,
                    },
                    _ => {
                        return Err(EngineError::NoCredentials {
                            address,
                            endpoint: endpoint.to_string(),
                        });
                    }
                },
            };
            let mut cfg = imap_config(spec, timeout);
            if side == Side::Destination {
                cfg.fence = app.fences.lock().unwrap().get(&mailbox.address).cloned();
            }
            Box::new(imap::connect(&cfg, &auth).await?)
        }
        EndpointKind::Ews => {
            if side == Side::Destination {
                return Err(EngineError::Unsupported(format!(
                    "endpoint {endpoint} is EWS, which is read as a source only"
                )));
            }
            let user_secret = secret(app, secret_ref)?;
            let (user, password, act_as) = match (login, user_secret) {
                (login, Some(password)) => (login.unwrap_or(address.clone()), password, None),
                (_, None) => match (&spec.admin_user, secret(app, &spec.admin_secret)?) {
                    (Some(admin), Some(password)) => (admin.clone(), password, Some(address)),
                    _ => {
                        return Err(EngineError::NoCredentials {
                            address,
                            endpoint: endpoint.to_string(),
                        });
                    }
                },
            };
            let source = ews_open(app, endpoint, spec, timeout, &user, &password, act_as).await?;
            let k = Keyed::new(Box::new(source));
            keyed = Some(k.clone());
            Box::new(KeyedSession::new(k, ews::endpoint_name(&spec.host), "EWS"))
        }
    };
    Ok(Conn {
        session,
        keyed,
        _slot: slot,
    })
}

/// Logs in to an EWS endpoint as `user`, acting for `act_as` when given.
async fn ews_open(
    app: &App,
    endpoint: &str,
    spec: &EndpointSpec,
    timeout: Duration,
    user: &str,
    password: &str,
    act_as: Option<String>,
) -> Result<ews::EwsSource, EngineError> {
    let settings = app
        .views
        .read()
        .unwrap()
        .endpoints
        .get(endpoint)
        .and_then(|e| e.ews.clone())
        .ok_or_else(|| {
            EngineError::Unsupported(format!("endpoint {endpoint} has no EWS settings"))
        })?;
    let cfg = ews::EwsConfig {
        url: spec.host.clone(),
        ca_file: spec.ca_file.clone().map(Into::into),
        timeout,
        max_connections: spec.max_connections as usize,
        version: settings.version.as_deref().and_then(ews::ApiVersion::parse),
        shared: app.fleet_caps.as_ref().map(|caps| {
            ews::SharedBackoffs(Arc::new(FleetBackoff {
                caps: caps.clone(),
                endpoint: endpoint.to_string(),
            }))
        }),
    };
    let auth = match settings.auth {
        EwsAuth::Basic => ews::AuthKind::Basic,
        EwsAuth::Ntlm => ews::AuthKind::Ntlm,
    };
    let ep = ews::endpoint(&cfg)?;
    Ok(ews::EwsSource::open(&ep, auth, user, password, act_as.as_deref()).await?)
}

/// An endpoint's back-offs as the fleet's workers share them.
struct FleetBackoff {
    caps: ferry_pgstore::FleetCaps,
    endpoint: String,
}

impl ews::SharedBackoff for FleetBackoff {
    fn wait_left(&self) -> Option<Duration> {
        self.caps.backoff_left(&self.endpoint)
    }

    fn told(&self, wait: Duration) {
        self.caps.back_off(&self.endpoint, wait);
    }
}

/// Whether `spec` is a Maildir endpoint where the destination Maildir of
/// `mailbox` does not exist yet (a first pass makes it).
pub fn maildir_absent(spec: &EndpointSpec, mailbox: &MailboxSpec) -> bool {
    spec.kind == EndpointKind::Maildir
        && maildir_root(&spec.host, &mailbox.destination_address.to_lowercase())
            .is_ok_and(|root| !root.exists())
}

/// A user's Maildir under the endpoint's folder: the address must be one
/// file name (see [`crate::csvimport::address_problem`]) and the joined path
/// one level below the folder.
fn maildir_root(host: &str, address: &str) -> Result<PathBuf, EngineError> {
    let refuse = |why: &str| {
        EngineError::Unsupported(format!(
            "address {address:?} cannot name a Maildir under {host}: {why}"
        ))
    };
    if let Some(why) = crate::csvimport::address_problem(address) {
        return Err(refuse(why));
    }
    let base = Path::new(host);
    let root = base.join(address);
    if root.parent() != Some(base) {
        return Err(refuse("it leaves the endpoint's folder"));
    }
    Ok(root)
}

/// Where a Maildir source's UIDs are kept: in ferryd's data directory, one
/// folder per source tree, never in the tree itself.
fn maildir_uid_dir(app: &App, root: &Path) -> PathBuf {
    use sha2::{Digest, Sha256};
    let id = hex::encode(Sha256::digest(root.as_os_str().as_encoded_bytes()));
    let data_dir = app.config.read().unwrap().data_dir.clone();
    data_dir.join("maildir-uids").join(&id[..32])
}

/// A fresh OAuth access token from the endpoint's source: a file, or a
/// command of the config file's named by the endpoint (messages name it by
/// that name, so the command line never reaches an event).
async fn token(app: &App, source: &TokenSource, timeout: Duration) -> Result<String, EngineError> {
    let text = match source {
        TokenSource::File(path) => std::fs::read_to_string(path)
            .map_err(|e| EngineError::Token(format!("reading {path}: {e}")))?,
        TokenSource::Command(name) => {
            let cmd = app
                .config
                .read()
                .unwrap()
                .endpoints
                .token_command(name)
                .map_err(EngineError::Token)?
                .to_string();
            let run = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&cmd)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output();
            let out = tokio::time::timeout(timeout, run)
                .await
                .map_err(|_| {
                    EngineError::Token(format!("token command {name} did not finish in time"))
                })?
                .map_err(|e| EngineError::Token(format!("running token command {name}: {e}")))?;
            if !out.status.success() {
                return Err(EngineError::Token(format!(
                    "token command {name} failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            String::from_utf8(out.stdout).map_err(|_| {
                EngineError::Token(format!("token command {name} printed no UTF-8 token"))
            })?
        }
    };
    let t = text.lines().next().unwrap_or("").trim().to_string();
    if t.is_empty() {
        return Err(EngineError::Token(
            "the token source gave an empty token".into(),
        ));
    }
    Ok(t)
}

/// The app-only sign-in recorded for endpoint `name`, if any.
fn sign_in_of(app: &App, name: &str) -> Option<ferry_events::GraphSignIn> {
    let views = app.views.read().unwrap();
    views.endpoints.get(name)?.graph.clone()
}

/// The Graph client of endpoint `name` (its token cache shared by every
/// session, its budgets by the whole daemon).
fn graph_client(
    app: &App,
    name: &str,
    spec: &EndpointSpec,
) -> Result<ferry_graph::Graph, EngineError> {
    let sign_in = sign_in_of(app, name).ok_or_else(|| {
        EngineError::Token(format!(
            "endpoint {name} has no application sign-in recorded"
        ))
    })?;
    app.graph
        .client(&app.secrets, name, &sign_in, spec.ca_file.as_deref())
        .map_err(EngineError::Token)
}

/// An app-only token for Exchange Online's IMAP (XOAUTH2).
async fn imap_token(app: &App, name: &str, spec: &EndpointSpec) -> Result<String, EngineError> {
    let graph = graph_client(app, name, spec)?;
    let token = graph.auth().token(ferry_graph::EXCHANGE_IMAP_SCOPE).await;
    Ok(token
        .map_err(|e| EngineError::Token(e.to_string()))?
        .secret()
        .to_string())
}

/// Signs in as the application and reads the folders of `as_user`'s
/// mailbox (Graph); without a user, only the sign-in is proven.
async fn verify_graph(
    app: &App,
    name: &str,
    spec: &EndpointSpec,
    as_user: Option<&str>,
) -> Result<Vec<String>, EngineError> {
    let graph = graph_client(app, name, spec)?;
    let mut caps = vec!["GRAPH".to_string()];
    graph
        .auth()
        .token(ferry_graph::GRAPH_SCOPE)
        .await
        .map_err(|e| EngineError::Token(e.to_string()))?;
    caps.push("SIGNED-IN".into());
    if let Some(user) = as_user {
        let mailbox = graph
            .mailbox(user)
            .map_err(|e| EngineError::Unsupported(e.to_string()))?;
        let mut s = ferry_graph::GraphSession::new(mailbox.clone(), &spec.host);
        let folders = s.list_folders().await?;
        caps.push(format!("FOLDERS={}", folders.len()));
        // As a source, every class is read through the mailbox API, which
        // needs its own permissions; a mail-only destination does without.
        let mut src = ferry_graph::GraphSource::new(mailbox, &spec.host);
        match ferry_connectors::source::ChangeSource::folders(&mut src).await {
            Ok(all) => {
                let mut classes: Vec<&str> = all.iter().map(|f| f.class.as_str()).collect();
                classes.sort_unstable();
                classes.dedup();
                caps.push(format!("SOURCE-FOLDERS={}", all.len()));
                caps.push(format!("SOURCE-CLASSES={}", classes.join(",")));
            }
            Err(e) => {
                tracing::info!(endpoint = name, error = %e, "the mailbox API is not readable");
                caps.push("NO-SOURCE".into());
            }
        }
    }
    Ok(caps)
}

/// Logs in as the endpoint's admin (IMAP, EWS), opens its root (Maildir),
/// or signs in as its application (Graph, or IMAP with an app sign-in);
/// with `as_user`, acting for that user.
pub async fn verify(
    app: &App,
    name: &str,
    spec: &EndpointSpec,
    as_user: Option<&str>,
) -> Result<Vec<String>, EngineError> {
    match spec.kind {
        EndpointKind::Ews => {
            let (Some(user), Some(password)) = (&spec.admin_user, secret(app, &spec.admin_secret)?)
            else {
                return Err(EngineError::NoAdmin);
            };
            let timeout = Duration::from_secs(30);
            let act_as = as_user.map(str::to_string);
            let s = ews_open(app, name, spec, timeout, user, &password, act_as).await?;
            let mut caps = vec![s.server()];
            if let Some(u) = as_user {
                caps.push(format!("impersonates {u}"));
            }
            Ok(caps)
        }
        EndpointKind::Graph => verify_graph(app, name, spec, as_user).await,
        EndpointKind::Maildir => {
            let root = Path::new(&spec.host);
            if !root.is_dir() {
                return Err(EngineError::Connector(ConnectorError::LocalIo {
                    op: "opening Maildir root",
                    path: root.to_path_buf(),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                }));
            }
            Ok(vec!["MAILDIR".into()])
        }
        EndpointKind::Imap => {
            let auth = match (&spec.admin_user, secret(app, &spec.admin_secret)?) {
                (Some(user), Some(password)) => match as_user {
                    Some(target) => ImapAuth::Plain {
                        authzid: Some(target.to_string()),
                        user: user.clone(),
                        password,
                    },
                    None => ImapAuth::Login {
                        user: user.clone(),
                        password,
                    },
                },
                // Exchange Online's IMAP, signed in as the application.
                _ if sign_in_of(app, name).is_some() => ImapAuth::XOAuth2 {
                    user: as_user
                        .ok_or(EngineError::Unsupported(
                            "an IMAP endpoint signed in as an application is verified with --as USER"
                                .into(),
                        ))?
                        .to_string(),
                    token: imap_token(app, name, spec).await?,
                },
                _ => return Err(EngineError::NoAdmin),
            };
            let cfg = imap_config(spec, Duration::from_secs(30));
            let mut s = imap::connect(&cfg, &auth).await?;
            let caps = s.capabilities().await?;
            let _ = s.logout().await;
            Ok(caps)
        }
    }
}

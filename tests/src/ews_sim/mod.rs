//! A stateful Exchange Web Services simulator for the tests, written from
//! Microsoft's public EWS reference (GetFolder, FindFolder,
//! SyncFolderItems, GetItem, ExportItems) and [MS-NLMP] for NTLM.
//!
//! - `server`: HTTPS on 127.0.0.1, Basic and NTLM, per-login concurrency.
//! - `soap`: the operations, answers shaped as the reference's examples.
//! - `store`: users, mailboxes, opaque ids and sync states, throttling.
//!
//! [`EwsSim`] runs it on its own thread and runtime, so both async and
//! plain tests (and the exchangelib test's Python child) can use it; its
//! methods change mailboxes between syncs, as a user would.

mod server;
mod soap;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use ferry_ews::FlagStatus;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{ServerConfig, crypto};

pub use server::AuthSchemes;
pub use soap::export_stream;
pub use store::{Counters, ItemKind, Served, SimVersion, Store, Throttle, User};

use crate::sample::{self, SampleSpec};

/// The NetBIOS domain of every simulated account.
pub const DOMAIN: &str = "SIM";

/// How to start a simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub version: SimVersion,
    pub schemes: AuthSchemes,
    /// Held between counting a request in flight and serving it, so
    /// concurrent requests overlap.
    pub latency: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            version: SimVersion::Exchange2016,
            schemes: AuthSchemes {
                basic: true,
                ntlm: true,
            },
            latency: Duration::ZERO,
        }
    }
}

/// A running simulator; stopped when dropped.
pub struct EwsSim {
    pub port: u16,
    shared: Arc<server::Shared>,
    dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EwsSim {
    pub fn start(cfg: SimConfig) -> EwsSim {
        let dir = tempfile::tempdir().expect("temp dir");
        let tls = tls_acceptor(dir.path());
        let shared = Arc::new(server::Shared {
            store: Mutex::new(Store::new(cfg.version)),
            schemes: cfg.schemes,
            latency: cfg.latency,
        });
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ews-sim".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind");
                    port_tx.send(listener.local_addr().unwrap().port()).unwrap();
                    tokio::select! {
                        _ = server::serve(listener, tls, s) => {}
                        _ = stop_rx => {}
                    }
                });
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .expect("spawn the simulator");
        let port = port_rx.recv().expect("the simulator's port");
        EwsSim {
            port,
            shared,
            dir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/EWS/Exchange.asmx", self.port)
    }

    /// The CA certificate (PEM) that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Runs `f` on the state, between requests.
    pub fn with<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        f(&mut self.shared.store.lock().unwrap())
    }

    /// A user `name@sim.example` (`SIM\name`) with a mailbox.
    pub fn add_user(&self, name: &str, password: &str) -> String {
        self.add_account(name, password, false, true)
    }

    /// An account; `impersonation` grants ApplicationImpersonation.
    pub fn add_account(
        &self,
        name: &str,
        password: &str,
        impersonation: bool,
        mailbox: bool,
    ) -> String {
        let smtp = format!("{name}@sim.example");
        self.with(|s| {
            s.add_user(User {
                smtp: smtp.clone(),
                domain: DOMAIN.into(),
                name: name.into(),
                password: password.into(),
                impersonation,
                has_mailbox: mailbox,
            })
        });
        smtp
    }

    /// The id of a distinguished folder (`inbox`, `calendar`, …).
    pub fn folder_id(&self, smtp: &str, distinguished: &str) -> String {
        self.with(|s| {
            s.mailbox(smtp)
                .and_then(|m| m.distinguished(distinguished))
                .map(|f| f.id.clone())
                .unwrap_or_else(|| panic!("no {distinguished} in {smtp}"))
        })
    }

    /// Fills a mailbox: `messages` generated messages across mail folders
    /// (nested, non-ASCII names), and `others` each of calendar items,
    /// contacts and tasks, one calendar being a subfolder.
    pub fn populate(&self, smtp: &str, messages: usize, others: usize, seed: u64) {
        let spec = SampleSpec {
            seed,
            messages,
            attachment_percent: 5,
            huge: 0,
        };
        self.populate_spec(smtp, &spec, others);
    }

    /// Like [`EwsSim::populate`], with the messages as `spec` says.
    pub fn populate_spec(&self, smtp: &str, spec: &SampleSpec, others: usize) {
        self.with(|s| {
            let mb = s.mailbox(smtp).expect("mailbox").clone();
            let id = |d: &str| mb.distinguished(d).unwrap().id.clone();
            let root = id("msgfolderroot");
            let archive = id("archive");
            let y2024 = s.add_folder(smtp, &archive, "2024", "IPF.Note");
            let fev = s.add_folder(smtp, &y2024, "Février", "IPF.Note");
            let projets = s.add_folder(smtp, &root, "Projets été", "IPF.Note");
            let jp = s.add_folder(smtp, &id("inbox"), "日本語", "IPF.Note");
            let holidays = s.add_folder(smtp, &id("calendar"), "Holidays", "IPF.Appointment");
            // In sample::folders() order: INBOX, Sent, Archive, Archive/2024,
            // Archive/2024/Février, Projets été, 日本語.
            let targets = [
                id("inbox"),
                id("sentitems"),
                archive,
                y2024,
                fev,
                projets,
                jp,
            ];
            for m in sample::messages(spec) {
                let read = m.flags.iter().any(|f| f == "\\Seen");
                let flag = if m.flags.iter().any(|f| f == "\\Flagged") {
                    FlagStatus::Flagged
                } else {
                    FlagStatus::NotFlagged
                };
                let categories = m
                    .flags
                    .iter()
                    .filter(|f| !f.starts_with(['\\', '$']))
                    .cloned()
                    .collect();
                s.add_item(
                    smtp,
                    &targets[m.folder.min(targets.len() - 1)],
                    ItemKind::Message,
                    m.body.to_vec(),
                    read,
                    flag,
                    categories,
                    m.date.with_timezone(&Utc),
                );
            }
            let at = |i: usize| {
                Utc.with_ymd_and_hms(2024, 3, 1, 9, 0, 0).unwrap()
                    + chrono::Duration::days(i as i64)
            };
            for i in 0..others {
                let cal = if i % 3 == 2 {
                    holidays.clone()
                } else {
                    id("calendar")
                };
                for (folder, kind, mime, categories) in [
                    (cal, ItemKind::CalendarItem, calendar_mime(i, at(i)), vec![]),
                    (id("contacts"), ItemKind::Contact, contact_mime(i), vec![]),
                    (
                        id("tasks"),
                        ItemKind::Task,
                        task_mime(i, at(i)),
                        vec!["Work".into()],
                    ),
                ] {
                    let none = FlagStatus::NotFlagged;
                    s.add_item(smtp, &folder, kind, mime, true, none, categories, at(i));
                }
            }
        });
    }

    /// A new message in `folder`; returns its id.
    pub fn add_message(&self, smtp: &str, folder: &str, mime: &[u8], read: bool) -> String {
        self.with(|s| {
            s.add_item(
                smtp,
                folder,
                ItemKind::Message,
                mime.to_vec(),
                read,
                FlagStatus::NotFlagged,
                vec![],
                Utc::now(),
            )
        })
    }

    /// Changes an item's content (a new change key, an Update in syncs).
    pub fn update_item(&self, smtp: &str, id: &str, categories: Vec<String>, flag: FlagStatus) {
        self.with(|s| {
            let item = s.mailbox_mut(smtp).items.get_mut(id).expect("item");
            item.categories = categories;
            item.flag = flag;
            item.version += 1;
        });
    }

    /// Replaces an item's content (a new change key, an Update in syncs).
    pub fn update_content(&self, smtp: &str, id: &str, mime: Vec<u8>) {
        self.with(|s| {
            let item = s.mailbox_mut(smtp).items.get_mut(id).expect("item");
            item.mime = mime;
            item.version += 1;
        });
    }

    /// Marks an item read or unread (a ReadFlagChange in syncs).
    pub fn set_read(&self, smtp: &str, id: &str, read: bool) {
        self.with(|s| {
            let item = s.mailbox_mut(smtp).items.get_mut(id).expect("item");
            item.is_read = read;
            item.read_version += 1;
        });
    }

    /// Moves an item; returns its new id.
    pub fn move_item(&self, smtp: &str, id: &str, folder: &str) -> String {
        self.with(|s| s.move_item(smtp, id, folder))
    }

    pub fn delete_item(&self, smtp: &str, id: &str) {
        self.with(|s| {
            s.mailbox_mut(smtp).items.remove(id).expect("item");
        });
    }

    /// Every sync state of `folder` becomes invalid.
    pub fn invalidate_sync_states(&self, smtp: &str, folder: &str) {
        self.with(|s| {
            let f = s
                .mailbox_mut(smtp)
                .folders
                .iter_mut()
                .find(|f| f.id == folder)
                .expect("folder");
            f.generation += 1;
        });
    }

    /// The next request of `op` (any, if `None`) meets `t`.
    pub fn throttle(&self, op: Option<&str>, t: Throttle) {
        self.with(|s| s.throttles.push_back((op.map(str::to_string), t)));
    }

    /// Caps each login's concurrent requests (EWSMaxConcurrency).
    pub fn set_max_concurrency(&self, cap: Option<u64>) {
        self.with(|s| s.max_concurrency = cap);
    }

    /// Serves one SOAP request in-process, without TLS, HTTP or a client:
    /// the simulator's own rate, a benchmark's baseline. Returns the
    /// status and the answer's length.
    pub fn serve_direct(&self, login: &str, body: &[u8]) -> (u16, usize) {
        let caller = soap::Caller {
            login,
            anchor: None,
        };
        let r = self.with(|s| soap::handle(s, &caller, body));
        (r.status, r.body.len())
    }

    /// Every request served so far, in arrival order.
    pub fn served(&self) -> Vec<Served> {
        self.with(|s| s.served.clone())
    }

    pub fn counters(&self) -> Counters {
        self.with(|s| s.counters.clone())
    }
}

impl Drop for EwsSim {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn calendar_mime(i: usize, at: chrono::DateTime<Utc>) -> Vec<u8> {
    let start = at.format("%Y%m%dT%H%M%SZ");
    let end = (at + chrono::Duration::hours(1)).format("%Y%m%dT%H%M%SZ");
    format!(
        "Content-Type: text/calendar; charset=\"utf-8\"; method=PUBLISH\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n\
         BEGIN:VCALENDAR\r\nPRODID:-//mailferry//ews-sim//EN\r\nVERSION:2.0\r\nMETHOD:PUBLISH\r\n\
         BEGIN:VEVENT\r\nUID:sim-event-{i}@sim.example\r\nDTSTAMP:{start}\r\nDTSTART:{start}\r\n\
         DTEND:{end}\r\nSUMMARY:Réunion {i}\r\nLOCATION:Salle {i}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    .into_bytes()
}

fn contact_mime(i: usize) -> Vec<u8> {
    format!(
        "Content-Type: text/directory; profile=\"vCard\"; charset=\"utf-8\"\r\n\r\n\
         BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Contact Nummer {i}\r\nN:Nummer;Contact;;;\r\n\
         EMAIL;TYPE=INTERNET:contact{i}@partner.example\r\nORG:Straße GmbH\r\nEND:VCARD\r\n"
    )
    .into_bytes()
}

fn task_mime(i: usize, at: chrono::DateTime<Utc>) -> Vec<u8> {
    let due = at.format("%Y%m%d");
    format!(
        "Content-Type: text/calendar; charset=\"utf-8\"\r\n\r\n\
         BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//mailferry//ews-sim//EN\r\nBEGIN:VTODO\r\n\
         UID:sim-task-{i}@sim.example\r\nSUMMARY:Task {i}\r\nDUE;VALUE=DATE:{due}\r\n\
         STATUS:NEEDS-ACTION\r\nEND:VTODO\r\nEND:VCALENDAR\r\n"
    )
    .into_bytes()
}

/// A CA and a certificate for 127.0.0.1 signed by it; the CA is written to
/// `dir/ca.pem`.
fn tls_acceptor(dir: &Path) -> TlsAcceptor {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mailferry EWS simulator CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let config = ServerConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

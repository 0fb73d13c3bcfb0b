//! The IMAP session against a real Dovecot 2.3 (see ferry-testservers).

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use chrono::DateTime;
use ferry_connectors::imap::{ImapAuth, ImapConfig, ImapSession, TlsMode, connect};
use ferry_connectors::{AppendItem, ErrorClass, FolderName, MailSession, SpecialUse};
use ferry_testservers::Dovecot;

const USER: &str = "alice";
const PASSWORD: &str = "alice-pw";

fn config(port: u16, tls: TlsMode, d: &Dovecot) -> ImapConfig {
    ImapConfig {
        host: d.host().to_string(),
        port,
        tls,
        ca_file: d.ca_pem_path().map(Into::into),
        timeout: Duration::from_secs(20),
    }
}

fn login_auth() -> ImapAuth {
    ImapAuth::Login {
        user: USER.into(),
        password: PASSWORD.into(),
    }
}

/// The master user acting as alice (SASL PLAIN with an authorization identity).
fn master_auth(d: &Dovecot) -> ImapAuth {
    let (master, master_pw) = d.master_user();
    ImapAuth::Plain {
        authzid: Some(USER.into()),
        user: master.into(),
        password: master_pw.into(),
    }
}

fn server() -> Dovecot {
    let d = Dovecot::start().expect("dovecot starts");
    d.add_user(USER, PASSWORD).unwrap();
    d
}

async fn session(d: &Dovecot) -> ImapSession {
    connect(&config(d.port(), TlsMode::None, d), &login_auth())
        .await
        .unwrap_or_else(|e| panic!("login: {e}\n{}", d.log()))
}

/// A folder known only by its Unicode path, as a mapping would produce it.
fn folder(path: &str) -> FolderName {
    FolderName {
        raw: String::new(),
        delimiter: None,
        segments: path.split('/').map(String::from).collect(),
    }
}

fn message(n: usize) -> Bytes {
    Bytes::from(format!(
        "From: a@example.org\r\nTo: b@example.org\r\nSubject: message {n}\r\n\r\nbody {n}\r\n"
    ))
}

/// A 3 MB message: 8-bit headers and a long base64 attachment.
fn big_message() -> Bytes {
    let mut raw = String::from(
        "From: Zoë <zoe@example.org>\r\nTo: b@example.org\r\nSubject: Grüße aus Köln\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         Häuser und Bäume\r\n--b1\r\nContent-Type: application/octet-stream\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n",
    );
    let line = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n";
    while raw.len() < 3 * 1024 * 1024 {
        raw.push_str(line);
    }
    raw.push_str("--b1--\r\n");
    Bytes::from(raw)
}

fn set(flags: &[String]) -> BTreeSet<String> {
    flags.iter().cloned().collect()
}

#[tokio::test]
async fn login_and_sasl_plain_reach_the_mailbox() {
    let d = server();
    let mut s = session(&d).await;
    let caps = s.capabilities().await.unwrap();
    assert!(caps.iter().any(|c| c == "IMAP4rev1"), "{caps:?}");
    assert!(caps.iter().any(|c| c == "UIDPLUS"), "{caps:?}");
    s.logout().await.unwrap();

    let plain = ImapAuth::Plain {
        authzid: None,
        user: USER.into(),
        password: PASSWORD.into(),
    };
    let mut s = connect(&config(d.port(), TlsMode::None, &d), &plain)
        .await
        .unwrap();
    let st = s.examine(&folder("INBOX")).await.unwrap();
    assert_eq!(st.exists, 0);
    s.logout().await.unwrap();
}

/// The command verbs a session sends to `d` from login to logout, and the
/// capabilities it learnt (through a pass-through proxy that keeps what the
/// client sends).
async fn verbs_of_a_login(d: &Dovecot, auth: &ImapAuth) -> (Vec<String>, Vec<String>) {
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = Arc::new(Mutex::new(Vec::<u8>::new()));
    let upstream = d.port();
    let kept = sent.clone();
    let proxy = tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let server = tokio::net::TcpStream::connect(("127.0.0.1", upstream))
            .await
            .unwrap();
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        let down = tokio::spawn(async move { tokio::io::copy(&mut sr, &mut cw).await });
        let mut buf = vec![0; 4096];
        loop {
            let n = cr.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            kept.lock().unwrap().extend_from_slice(&buf[..n]);
            if sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = sw.shutdown().await;
        let _ = down.await;
    });
    let mut s = connect(&config(port, TlsMode::None, d), auth)
        .await
        .unwrap_or_else(|e| panic!("login: {e}\n{}", d.log()));
    let caps = s.capabilities().await.unwrap();
    s.logout().await.unwrap();
    drop(s);
    proxy.await.unwrap();
    let sent = String::from_utf8_lossy(&sent.lock().unwrap()).to_string();
    let verbs = sent
        .lines()
        .filter_map(|l| Some(l.split(' ').nth(1)?.to_string()))
        .collect();
    (verbs, caps)
}

/// Dovecot's answer to LOGIN or AUTHENTICATE carries its capabilities: no
/// CAPABILITY command follows: one round trip less per session over a long
/// link.
#[tokio::test]
async fn capabilities_come_with_the_login_answer() {
    let d = server();
    let admin = master_auth(&d);
    for (auth, verb) in [(login_auth(), "LOGIN"), (admin, "AUTHENTICATE")] {
        let (verbs, caps) = verbs_of_a_login(&d, &auth).await;
        for want in ["IMAP4rev1", "UIDPLUS", "CONDSTORE", "LITERAL+"] {
            assert!(caps.iter().any(|c| c == want), "{want} in {caps:?}");
        }
        assert_eq!(verbs, [verb, "LOGOUT"]);
    }
}

#[tokio::test]
async fn master_user_impersonates_the_target_mailbox() {
    let d = server();
    let admin = master_auth(&d);
    let mut s = connect(&config(d.port(), TlsMode::None, &d), &admin)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    s.append(&folder("INBOX"), &[], None, message(1))
        .await
        .unwrap();
    s.logout().await.unwrap();

    // The message landed in alice's own mailbox.
    let mut s = session(&d).await;
    assert_eq!(s.examine(&folder("INBOX")).await.unwrap().exists, 1);
}

#[tokio::test]
async fn wrong_password_is_an_auth_error() {
    let d = server();
    let bad = ImapAuth::Login {
        user: USER.into(),
        password: "wrong".into(),
    };
    let err = connect(&config(d.port(), TlsMode::None, &d), &bad)
        .await
        .err()
        .expect("refused");
    assert_eq!(err.class(), ErrorClass::Auth, "{err}");
    assert!(!err.is_transient());

    let bad = ImapAuth::Plain {
        authzid: None,
        user: USER.into(),
        password: "wrong".into(),
    };
    let err = connect(&config(d.port(), TlsMode::None, &d), &bad)
        .await
        .err()
        .expect("refused");
    assert_eq!(err.class(), ErrorClass::Auth, "{err}");
}

#[tokio::test]
async fn xoauth2_logs_in_and_a_bad_token_is_an_auth_error() {
    let d = server();
    // Without an oauth2 passdb, Dovecot 2.3 checks the bearer token against
    // the passdb like a password: enough to prove the XOAUTH2 encoding.
    let good = ImapAuth::XOAuth2 {
        user: USER.into(),
        token: PASSWORD.into(),
    };
    let mut s = connect(&config(d.port(), TlsMode::None, &d), &good)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    s.examine(&folder("INBOX")).await.unwrap();
    s.logout().await.unwrap();

    let bad = ImapAuth::XOAuth2 {
        user: USER.into(),
        token: "not-a-token".into(),
    };
    let err = connect(&config(d.port(), TlsMode::None, &d), &bad)
        .await
        .err()
        .expect("refused");
    assert_eq!(err.class(), ErrorClass::Auth, "{err}");
    assert!(err.to_string().contains("AUTHENTICATIONFAILED"), "{err}");
}

#[tokio::test]
async fn starttls_and_implicit_tls_verify_the_server() {
    let d = Dovecot::start_tls().unwrap();
    d.add_user(USER, PASSWORD).unwrap();

    let mut s = connect(&config(d.port(), TlsMode::StartTls, &d), &login_auth())
        .await
        .unwrap_or_else(|e| panic!("starttls: {e}\n{}", d.log()));
    s.examine(&folder("INBOX")).await.unwrap();
    s.logout().await.unwrap();

    let imaps = d.imaps_port().unwrap();
    let mut s = connect(&config(imaps, TlsMode::Tls, &d), &login_auth())
        .await
        .unwrap_or_else(|e| panic!("imaps: {e}\n{}", d.log()));
    s.examine(&folder("INBOX")).await.unwrap();
    s.logout().await.unwrap();

    // Without the test CA the certificate is not trusted.
    let mut untrusted = config(imaps, TlsMode::Tls, &d);
    untrusted.ca_file = None;
    let err = connect(&untrusted, &login_auth()).await.err().unwrap();
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[tokio::test]
async fn folders_nested_and_non_ascii() {
    let d = server();
    let mut s = session(&d).await;
    for path in ["Archive/2024/Février", "日本語", "Sent"] {
        s.create_folder(&folder(path)).await.unwrap();
    }
    // Creating again is not an error.
    s.create_folder(&folder("日本語")).await.unwrap();
    s.subscribe(&folder("日本語")).await.unwrap();

    let folders = s.list_folders().await.unwrap();
    let find = |raw: &str| {
        folders
            .iter()
            .find(|f| f.name.raw == raw)
            .unwrap_or_else(|| panic!("{raw} missing from {folders:#?}"))
    };
    let fevrier = find("Archive/2024/F&AOk-vrier");
    assert_eq!(fevrier.name.segments, ["Archive", "2024", "Février"]);
    assert_eq!(fevrier.name.delimiter, Some('/'));
    assert!(fevrier.selectable);
    assert!(!fevrier.subscribed);

    let japanese = find("&ZeVnLIqe-");
    assert_eq!(japanese.name.segments, ["日本語"]);
    assert!(japanese.subscribed);

    assert_eq!(find("INBOX").special_use, Some(SpecialUse::Inbox));
    assert_eq!(find("Sent").special_use, Some(SpecialUse::Sent));
    assert_eq!(find("Archive/2024").special_use, None);

    // The listed name opens as is.
    let st = s.select(&fevrier.name).await.unwrap();
    assert_eq!(st.exists, 0);
    assert!(st.uidvalidity > 0);

    let err = s.select(&folder("Nope")).await.err().unwrap();
    assert_eq!(err.class(), ErrorClass::Folder, "{err}");
}

#[tokio::test]
async fn append_keeps_flags_keywords_and_date_and_returns_appenduid() {
    let d = server();
    let mut s = session(&d).await;
    let inbox = folder("INBOX");
    let st = s.select(&inbox).await.unwrap();
    let date = DateTime::parse_from_rfc3339("2021-03-04T05:06:07+02:00").unwrap();
    let flags: Vec<String> = ["\\Seen", "\\Flagged", "$Forwarded", "Project-X", "\\Recent"]
        .map(String::from)
        .to_vec();
    let uid = s
        .append(&inbox, &flags, Some(date), message(1))
        .await
        .unwrap()
        .expect("APPENDUID");
    assert_eq!(uid.uidvalidity, st.uidvalidity);
    assert_eq!(uid.uid, st.uidnext);

    let second = s
        .append(&inbox, &[], None, message(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.uid, uid.uid + 1);

    s.examine(&inbox).await.unwrap();
    let items = s.list_items(1, 10).await.unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].uid, uid.uid);
    assert_eq!(
        set(&items[0].flags),
        set(&flags[..4]),
        "\\Recent is never carried"
    );
    assert_eq!(items[0].internal_date, Some(date));
    assert_eq!(items[0].size, message(1).len() as u64);
    assert!(items[1].flags.is_empty(), "{:?}", items[1].flags);

    let err = s
        .append(&folder("Missing"), &[], None, message(3))
        .await
        .err()
        .unwrap();
    assert_eq!(err.class(), ErrorClass::Folder, "{err}");
}

/// 50 messages with assorted flags, keywords and dates; number 17 is 3 MB.
fn batch() -> Vec<AppendItem> {
    let pool = [
        "\\Seen",
        "\\Flagged",
        "\\Answered",
        "$Forwarded",
        "Project-X",
    ];
    (0..50)
        .map(|n| AppendItem {
            // Every subset of the pool in turn, the empty one included.
            flags: pool
                .iter()
                .enumerate()
                .filter(|(bit, _)| n & (1 << bit) != 0)
                .map(|(_, f)| f.to_string())
                .collect(),
            internal_date: (n % 7 != 3).then(|| {
                let offset = ["+02:00", "-07:00", "+00:00", "+05:30"][n % 4];
                let day = n % 28 + 1;
                DateTime::parse_from_rfc3339(&format!("2019-05-{day:02}T08:{n:02}:09{offset}"))
                    .unwrap()
            }),
            body: if n == 17 { big_message() } else { message(n) },
        })
        .collect()
}

#[tokio::test]
async fn multiappend_stores_a_batch_with_its_appenduids() {
    let d = server();
    let mut s = session(&d).await;
    assert!(s.can_append_many(), "Dovecot offers MULTIAPPEND");
    let inbox = folder("INBOX");
    let st = s.select(&inbox).await.unwrap();

    let items = batch();
    let uids = s.append_many(&inbox, &items).await.unwrap();
    let expected: Vec<_> = (st.uidnext..st.uidnext + 50)
        .map(|uid| Some((st.uidvalidity, uid)))
        .collect();
    let got: Vec<_> = uids
        .iter()
        .map(|u| u.map(|u| (u.uidvalidity, u.uid)))
        .collect();
    assert_eq!(got, expected);

    // Nothing to send is not a command at all.
    assert!(s.append_many(&inbox, &[]).await.unwrap().is_empty());

    let st = s.examine(&inbox).await.unwrap();
    assert_eq!(st.exists, 50);
    let wanted: Vec<u32> = uids.iter().map(|u| u.unwrap().uid).collect();
    let stored = s.fetch(&wanted).await.unwrap();
    assert_eq!(stored.len(), 50);
    for (n, (item, sent)) in stored.iter().zip(&items).enumerate() {
        assert_eq!(item.meta.uid, wanted[n]);
        assert!(item.body == sent.body, "message {n}: bytes differ");
        assert_eq!(set(&item.meta.flags), set(&sent.flags), "message {n}");
        if let Some(date) = sent.internal_date {
            assert_eq!(item.meta.internal_date, Some(date), "message {n}");
        }
    }
    assert_eq!(stored[17].body.len(), big_message().len());
}

#[tokio::test]
async fn multiappend_is_all_or_nothing() {
    let d = server();
    let mut s = session(&d).await;
    let inbox = folder("INBOX");
    s.append(&inbox, &[], None, message(0)).await.unwrap();
    let before = s.examine(&inbox).await.unwrap();
    let items = batch();

    // No such folder: refused as a whole, nothing created or stored.
    let err = s
        .append_many(&folder("Missing"), &items[..5])
        .await
        .expect_err("refused");
    assert_eq!(err.class(), ErrorClass::Folder, "{err}");
    let folders = s.list_folders().await.unwrap();
    assert!(
        folders.iter().all(|f| f.name.raw != "Missing"),
        "{folders:?}"
    );

    // Dovecot refuses a zero-byte message; the good ones around it (the
    // 3 MB one included) must not land either.
    let mut poisoned = items[10..20].to_vec();
    poisoned[4].body = Bytes::new();
    let err = s.append_many(&inbox, &poisoned).await.expect_err("refused");
    assert_eq!(err.class(), ErrorClass::Item, "{err}");
    assert!(err.to_string().contains("zero byte"), "{err}");

    let after = s.examine(&inbox).await.unwrap();
    assert_eq!(after.exists, before.exists, "nothing stored");
    assert_eq!(s.list_items(1, 100).await.unwrap().len(), 1);

    // The connection is still in step: the same batch without the bad item
    // goes through on it.
    poisoned.remove(4);
    let uids = s.append_many(&inbox, &poisoned).await.unwrap();
    assert_eq!(uids.len(), 9);
    assert!(uids.iter().all(Option::is_some), "{uids:?}");
    assert_eq!(s.examine(&inbox).await.unwrap().exists, before.exists + 9);
}

#[tokio::test]
async fn bytes_round_trip_exactly_without_setting_seen() {
    let d = server();
    let mut s = session(&d).await;
    let inbox = folder("INBOX");

    // 8-bit header, no Message-ID, a 3 MB attachment.
    let body = big_message();

    let appended = s
        .append(&inbox, &[], None, body.clone())
        .await
        .unwrap()
        .unwrap();
    s.append(&inbox, &[], None, message(2)).await.unwrap();

    s.examine(&inbox).await.unwrap();
    let items = s
        .fetch(&[appended.uid + 1, appended.uid, 999])
        .await
        .unwrap();
    assert_eq!(items.len(), 2, "unknown UIDs are left out");
    assert_eq!(items[0].meta.uid, appended.uid);
    assert_eq!(items[0].body.len(), body.len());
    assert!(items[0].body == body, "bytes differ");
    assert_eq!(
        items[0].digest(),
        ferry_connectors::digest(&body),
        "digest of the exact bytes"
    );
    assert_eq!(items[1].body, message(2));

    // BODY.PEEK[]: reading the source never marks it read.
    let metas = s.list_items(1, 10).await.unwrap();
    assert!(metas.iter().all(|m| !m.flags.iter().any(|f| f == "\\Seen")));
}

#[tokio::test]
async fn list_items_pages_through_dense_and_sparse_uids() {
    let d = server();
    let mut s = session(&d).await;
    let box_ = folder("Bulk");
    s.create_folder(&box_).await.unwrap();
    for n in 0..1500 {
        s.append(&box_, &[], None, message(n)).await.unwrap();
    }
    // Leave a long sparse stretch: only 1..=100 and 1401..=1500 remain.
    let out = d
        .doveadm(&["expunge", "-u", USER, "mailbox", "Bulk", "uid", "101:1400"])
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let st = s.examine(&box_).await.unwrap();
    assert_eq!(st.exists, 200);
    assert_eq!(st.uidnext, 1501);

    let mut seen = Vec::new();
    let mut from = 1;
    let mut pages = 0;
    loop {
        let page = s.list_items(from, 70).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 70);
        assert!(page.windows(2).all(|w| w[0].uid < w[1].uid));
        pages += 1;
        from = page.last().unwrap().uid + 1;
        seen.extend(page.into_iter().map(|m| m.uid));
    }
    let expected: Vec<u32> = (1..=100).chain(1401..=1500).collect();
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);

    // max=200 over the whole folder, starting mid-way.
    let page = s.list_items(50, 200).await.unwrap();
    assert_eq!(page.len(), 151);
    assert_eq!(page[0].uid, 50);
    assert_eq!(page.last().unwrap().uid, 1500);
    assert!(s.list_items(1501, 200).await.unwrap().is_empty());
}

#[tokio::test]
async fn list_items_pages_a_dense_folder() {
    let d = server();
    let mut s = session(&d).await;
    let box_ = folder("Dense");
    s.create_folder(&box_).await.unwrap();
    for n in 0..1500 {
        s.append(&box_, &[], None, message(n)).await.unwrap();
    }
    s.examine(&box_).await.unwrap();
    let mut from = 1;
    let mut total = 0;
    let mut pages = 0;
    loop {
        let page = s.list_items(from, 200).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 200);
        assert_eq!(page[0].uid, from);
        total += page.len();
        pages += 1;
        from = page.last().unwrap().uid + 1;
    }
    assert_eq!(total, 1500);
    assert_eq!(pages, 8);
}

#[tokio::test]
async fn store_flags_and_changed_since() {
    let d = server();
    let mut s = session(&d).await;
    let inbox = folder("INBOX");
    for n in 0..3 {
        s.append(&inbox, &["\\Seen".to_string()], None, message(n))
            .await
            .unwrap();
    }
    let st = s.select(&inbox).await.unwrap();
    let before = st.highest_modseq.expect("CONDSTORE");
    assert_eq!(s.changed_since(before).await.unwrap(), Some(vec![]));

    let new_flags = vec!["\\Flagged".to_string(), "Project-X".to_string()];
    s.store_flags(2, &new_flags).await.unwrap();

    let changed = s.changed_since(before).await.unwrap().expect("CONDSTORE");
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0].uid, 2);
    assert_eq!(set(&changed[0].flags), set(&new_flags), "FLAGS replaced");
    assert!(changed[0].modseq.unwrap() > before);

    let st = s.examine(&inbox).await.unwrap();
    assert!(st.highest_modseq.unwrap() > before);
    let items = s.list_items(1, 10).await.unwrap();
    assert_eq!(set(&items[0].flags), set(&["\\Seen".to_string()]));
    assert_eq!(set(&items[1].flags), set(&new_flags));
}

#[tokio::test]
async fn vanished_since_names_the_uids_expunged_after_a_modseq() {
    let d = server();
    let mut s = session(&d).await;
    let inbox = folder("INBOX");
    for n in 0..4 {
        s.append(&inbox, &[], None, message(n)).await.unwrap();
    }
    let before = s.examine(&inbox).await.unwrap().highest_modseq.unwrap();
    let out = d
        .doveadm(&["expunge", "-u", USER, "mailbox", "INBOX", "uid", "2:3"])
        .unwrap();
    assert!(out.status.success());
    s.examine(&inbox).await.unwrap();
    let gone = s.vanished_since(before).await.unwrap().expect("QRESYNC");
    let gone: Vec<u32> = gone.into_iter().flatten().collect();
    assert_eq!(gone, vec![2, 3]);
    // Still usable afterwards: QRESYNC stays enabled for the session, and
    // opening another folder answers `[CLOSED]` first.
    assert_eq!(s.list_items(1, 10).await.unwrap().len(), 2);
    let other = folder("Other");
    s.create_folder(&other).await.unwrap();
    s.append(&other, &[], None, message(9)).await.unwrap();
    assert_eq!(s.examine(&other).await.unwrap().exists, 1);
    assert_eq!(s.list_items(1, 10).await.unwrap().len(), 1);
    assert_eq!(s.vanished_since(1).await.unwrap(), Some(vec![]));
}

#[tokio::test]
async fn item_calls_need_an_open_folder() {
    let d = server();
    let mut s = session(&d).await;
    let err = s.list_items(1, 10).await.err().unwrap();
    assert!(matches!(err, ferry_connectors::ConnectorError::NoFolder));
}

#[tokio::test]
async fn silent_or_dropped_lines_are_connection_errors() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let cfg = ImapConfig {
        host: "127.0.0.1".into(),
        port,
        tls: TlsMode::None,
        ca_file: None,
        timeout: Duration::from_millis(300),
    };
    let server = tokio::spawn(async move {
        // First client: accepted, never greeted. Second: hung up on.
        let (silent, _) = listener.accept().await.unwrap();
        let (dropped, _) = listener.accept().await.unwrap();
        drop(dropped);
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(silent);
    });
    let err = connect(&cfg, &login_auth()).await.err().unwrap();
    assert_eq!(err.class(), ErrorClass::Connection, "{err}");
    assert!(err.to_string().contains("no answer within"), "{err}");
    let err = connect(&cfg, &login_auth()).await.err().unwrap();
    assert_eq!(err.class(), ErrorClass::Connection, "{err}");
    assert!(err.is_transient());
    server.await.unwrap();
}

/// A scripted server without LITERAL+ (Dovecot always offers it): each
/// literal of a MULTIAPPEND waits for its own "+", and a refusal between
/// two literals stops the client from sending the rest.
#[tokio::test]
async fn multiappend_without_literal_plus_waits_for_each_continuation() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        let (r, mut w) = sock.into_split();
        let mut r = BufReader::new(r);
        w.write_all(b"* OK fake ready\r\n").await.unwrap();
        // Every command verb seen, and the messages of each APPEND.
        let mut verbs = Vec::new();
        let mut appends: Vec<Vec<Vec<u8>>> = Vec::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).await.unwrap() == 0 {
                break;
            }
            let (tag, rest) = line.trim_end().split_once(' ').unwrap();
            let verb = rest.split(' ').next().unwrap().to_ascii_uppercase();
            verbs.push(verb.clone());
            let reply = match verb.as_str() {
                "LOGIN" => format!("{tag} OK logged in\r\n"),
                "CAPABILITY" => {
                    format!("* CAPABILITY IMAP4rev1 UIDPLUS MULTIAPPEND\r\n{tag} OK done\r\n")
                }
                "APPEND" => {
                    let refuse = rest.contains("\"Refuse\"");
                    let mut header = rest.to_string();
                    let mut bodies = Vec::new();
                    let reply = loop {
                        let size = header.rsplit_once('{').unwrap().1;
                        let size: usize = size.strip_suffix('}').unwrap().parse().unwrap();
                        if refuse && bodies.len() == 1 {
                            break format!("{tag} NO [TRYCREATE] no such folder\r\n");
                        }
                        w.write_all(b"+ go on\r\n").await.unwrap();
                        let mut body = vec![0; size];
                        r.read_exact(&mut body).await.unwrap();
                        bodies.push(body);
                        let mut next = String::new();
                        r.read_line(&mut next).await.unwrap();
                        if next.trim_end().is_empty() {
                            break format!("{tag} OK [APPENDUID 7 10:11] stored\r\n");
                        }
                        header = next.trim_end().to_string();
                    };
                    appends.push(bodies);
                    reply
                }
                "LOGOUT" => {
                    w.write_all(format!("* BYE bye\r\n{tag} OK done\r\n").as_bytes())
                        .await
                        .unwrap();
                    break;
                }
                _ => format!("{tag} BAD what\r\n"),
            };
            w.write_all(reply.as_bytes()).await.unwrap();
        }
        (verbs, appends)
    });

    let cfg = ImapConfig {
        host: "127.0.0.1".into(),
        port,
        tls: TlsMode::None,
        ca_file: None,
        timeout: Duration::from_secs(5),
    };
    let mut s = connect(&cfg, &login_auth()).await.unwrap();
    assert!(s.can_append_many());
    let item = |body: &'static str| AppendItem {
        flags: vec!["\\Seen".into()],
        internal_date: None,
        body: Bytes::from_static(body.as_bytes()),
    };
    let named = |raw: &str| FolderName {
        raw: raw.into(),
        delimiter: Some('/'),
        segments: vec![raw.into()],
    };
    let uids = s
        .append_many(&named("INBOX"), &[item("hello"), item("abc")])
        .await
        .unwrap();
    let uids: Vec<_> = uids
        .iter()
        .map(|u| u.map(|u| (u.uidvalidity, u.uid)))
        .collect();
    assert_eq!(uids, [Some((7, 10)), Some((7, 11))]);

    let err = s
        .append_many(&named("Refuse"), &[item("one"), item("two"), item("six")])
        .await
        .expect_err("refused");
    assert_eq!(err.class(), ErrorClass::Folder, "{err}");
    s.logout().await.unwrap();

    let (verbs, appends) = server.await.unwrap();
    // Nothing after the refusal was taken for a command.
    assert_eq!(verbs, ["LOGIN", "CAPABILITY", "APPEND", "APPEND", "LOGOUT"]);
    assert_eq!(appends[0], [b"hello".to_vec(), b"abc".to_vec()]);
    assert_eq!(appends[1], [b"one".to_vec()]);
}

//! ferry-graph against the Graph simulator: app-only sign-in (secret and
//! certificate), token renewal, folders, received (non-draft) messages,
//! upload and import sessions, the origin lookup, delta with 410 restarts,
//! `$batch` with 424, and the throttling budget under a 429 storm. The
//! last test has Microsoft's own Python SDK check the simulator.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_graph::batch::BatchPart;
use ferry_graph::messages::{Found, ORIGIN_PROPERTY, PR_MESSAGE_FLAGS};
use ferry_graph::model::{NewAttachment, NewMessage, Origin, WellKnown};
use ferry_graph::{Budgets, Credential, Error, Graph, GraphConfig, Limits};
use ferry_tests::graph_sim::{GraphSim, SimConfig, SimLimits, assert_budget_kept};

const APP: &str = "4a1c2e3f-0000-4000-8000-00000000a001";
const SECRET: &str = "Xq8~app.secret-never-in-logs_42";
const USER: &str = "ann@contoso.example";

fn sim_with(cfg: SimConfig) -> GraphSim {
    let sim = GraphSim::start(cfg);
    sim.add_app_secret(APP, SECRET);
    sim.add_user(USER);
    sim
}

fn sim() -> GraphSim {
    sim_with(SimConfig::default())
}

fn config(sim: &GraphSim, credential: Credential, limits: Limits) -> GraphConfig {
    GraphConfig {
        authority: sim.authority().to_string(),
        tenant: sim.tenant_domain(),
        client_id: APP.into(),
        credential,
        graph_url: sim.graph_url(),
        extra_root_pem: Some(sim.ca_pem().as_bytes().to_vec()),
        budgets: Some(Arc::new(Budgets::new(limits))),
        retries: 10,
    }
}

fn graph(sim: &GraphSim) -> Graph {
    graph_with(sim, Credential::Secret(SECRET.into()))
}

fn graph_with(sim: &GraphSim, credential: Credential) -> Graph {
    Graph::new(config(sim, credential, Limits::EXCHANGE_ONLINE)).unwrap()
}

/// An RSA key and a self-signed certificate, as an administrator makes
/// them for an Entra ID application (openssl, PEM files).
fn rsa_certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf, Vec<u8>) {
    let key = dir.join(format!("{name}.key"));
    let cert = dir.join(format!("{name}.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=mailferry-test",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_file(&cert).unwrap().to_vec();
    (key, cert, der)
}

/// The `field` of each object in a JSON array, sorted (the whole element
/// when `field` is empty).
fn sorted(list: &serde_json::Value, field: &str) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .expect("an array")
        .iter()
        .map(|x| if field.is_empty() { x } else { &x[field] })
        .map(|x| x.as_str().expect("a string").to_string())
        .collect();
    v.sort();
    v
}

/// The simulator's copy of a message.
fn sim_copy(sim: &GraphSim, id: &str) -> ferry_tests::graph_sim::SimMessage {
    sim.messages(USER)
        .into_iter()
        .find(|m| m.id == id)
        .expect("the simulator holds it")
}

fn received_message(subject: &str, key: &str) -> NewMessage {
    NewMessage {
        subject: subject.into(),
        body: "hello".into(),
        from: Some(ferry_graph::model::Address {
            name: "Bob".into(),
            address: "bob@fabrikam.example".into(),
        }),
        to: vec![ferry_graph::model::Address {
            name: String::new(),
            address: USER.into(),
        }],
        received: chrono::DateTime::parse_from_rfc3339("2023-03-04T05:06:07Z")
            .unwrap()
            .into(),
        sent: Some(
            chrono::DateTime::parse_from_rfc3339("2023-03-04T05:06:00Z")
                .unwrap()
                .into(),
        ),
        is_read: true,
        flagged: true,
        categories: vec!["Red".into(), "Project X".into()],
        headers: vec![("X-Mailferry-Test".into(), "1".into())],
        origin: Some(Origin {
            key: key.into(),
            digest: format!("d-{key}"),
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_with_a_secret_and_with_a_certificate() {
    let sim = sim();
    let g = graph(&sim);
    let inbox =
        g.mailbox(USER).unwrap().well_known_folders().await.unwrap()[&WellKnown::Inbox].clone();
    assert!(!inbox.is_empty());

    // A wrong secret is refused, and the error names neither secret.
    let bad = graph_with(&sim, Credential::Secret("wrong-secret-value".into()));
    let e = bad.mailbox(USER).unwrap().folders().await.unwrap_err();
    let text = format!("{e} {e:?}");
    assert!(matches!(e, Error::SignIn { status: 401, .. }), "{text}");
    assert!(text.contains("AADSTS7000215"), "{text}");
    assert!(
        !text.contains("wrong-secret-value") && !text.contains(SECRET),
        "{text}"
    );

    // A certificate registered on the application signs in; another is refused.
    let dir = tempfile::tempdir().unwrap();
    let (key, cert, der) = rsa_certificate(dir.path(), "app");
    let (other_key, other_cert, _) = rsa_certificate(dir.path(), "other");
    sim.add_app_certificate(APP, &der);
    let with_cert = graph_with(&sim, Credential::certificate_files(&key, &cert).unwrap());
    let folders = with_cert.mailbox(USER).unwrap().folders().await.unwrap();
    assert!(
        folders
            .iter()
            .any(|f| f.well_known == Some(WellKnown::Inbox))
    );
    let wrong = graph_with(
        &sim,
        Credential::certificate_files(&other_key, &other_cert).unwrap(),
    );
    let e = wrong.mailbox(USER).unwrap().folders().await.unwrap_err();
    assert!(matches!(e, Error::SignIn { status: 401, .. }), "{e}");
    assert!(e.to_string().contains("AADSTS700027"), "{e}");
    // The right thumbprint with another key's signature is refused too.
    let forged = graph_with(
        &sim,
        Credential::certificate_files(&other_key, &cert).unwrap(),
    );
    let e = forged.mailbox(USER).unwrap().folders().await.unwrap_err();
    assert!(e.to_string().contains("invalid signature"), "{e}");

    // The IMAP token is for Exchange Online, and Graph does not take it.
    let x = g.auth().imap_xoauth2(USER).await.unwrap();
    assert!(x.raw().starts_with(&format!("user={USER}\x01auth=Bearer ")));
    assert!(!format!("{x:?}").contains("Bearer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_renewed_before_expiry_and_after_a_refusal() {
    let sim = sim();
    sim.set_token_lifetime(Duration::from_secs(2));
    let g = graph(&sim);
    let mb = g.mailbox(USER).unwrap();
    mb.well_known_folders().await.unwrap();
    assert_eq!(g.auth().fetch_count(), 1);
    mb.well_known_folders().await.unwrap();
    assert_eq!(
        g.auth().fetch_count(),
        1,
        "the cached token serves while it has time left"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    mb.well_known_folders().await.unwrap();
    assert_eq!(g.auth().fetch_count(), 2, "renewed before it expired");
    assert!(
        sim.requests().iter().all(|r| r.status != 401),
        "no request went out with an expired token"
    );

    // The service revokes every token mid-way: one 401, a new token, done.
    sim.set_token_lifetime(Duration::from_secs(3600));
    sim.expire_tokens();
    let folders = mb.folders().await.unwrap();
    assert!(!folders.is_empty());
    assert_eq!(g.auth().fetch_count(), 3);
    assert_eq!(sim.requests().iter().filter(|r| r.status == 401).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_are_listed_with_well_known_names_and_created_once() {
    let sim = sim();
    let mb = graph(&sim).mailbox(USER).unwrap();
    let projects = mb.create_folder(None, "Projects").await.unwrap();
    let y2024 = mb
        .create_folder(Some(&projects.id), "2024 'Q1'")
        .await
        .unwrap();
    let again = mb
        .create_folder(Some(&projects.id), "2024 'Q1'")
        .await
        .unwrap();
    assert_eq!(
        again.id, y2024.id,
        "an existing folder is answered, not duplicated"
    );

    let folders = mb.folders().await.unwrap();
    let by_path = |p: &[&str]| {
        folders
            .iter()
            .find(|f| f.path == p)
            .unwrap_or_else(|| panic!("{p:?} in {folders:#?}"))
    };
    assert_eq!(by_path(&["Inbox"]).well_known, Some(WellKnown::Inbox));
    assert_eq!(
        by_path(&["Sent Items"])
            .well_known
            .and_then(|w| w.special_use()),
        Some("\\Sent")
    );
    assert_eq!(
        by_path(&["Deleted Items"]).well_known,
        Some(WellKnown::DeletedItems)
    );
    assert_eq!(
        by_path(&["Junk Email"]).well_known,
        Some(WellKnown::JunkEmail)
    );
    assert_eq!(by_path(&["Archive"]).well_known, Some(WellKnown::Archive));
    assert_eq!(by_path(&["Projects", "2024 'Q1'"]).folder.id, y2024.id);
    assert_eq!(by_path(&["Projects"]).well_known, None);
    let sim_paths: Vec<String> = sim.folders(USER).into_iter().map(|(_, p, _)| p).collect();
    assert!(sim_paths.contains(&"Projects/2024 'Q1'".to_string()));
    assert_eq!(folders.len(), sim_paths.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_created_as_received_mail_not_drafts() {
    let sim = sim();
    let mb = graph(&sim).mailbox(USER).unwrap();
    let inbox = mb.well_known_folders().await.unwrap()[&WellKnown::Inbox].clone();
    let created = mb
        .create_message(&inbox, &received_message("quarterly", "INBOX/1:7"))
        .await
        .unwrap();

    let held = sim_copy(&sim, &created.id);
    assert!(!held.is_draft);
    assert_eq!(held.folder_path, "Inbox");
    assert_eq!(held.received, "2023-03-04T05:06:07Z");
    assert_eq!(held.sent.as_deref(), Some("2023-03-04T05:06:00Z"));
    assert!(held.is_read);
    assert_eq!(held.flag, "flagged");
    assert_eq!(
        held.categories,
        vec!["Red".to_string(), "Project X".to_string()]
    );

    // Graph shows the same through the client.
    let read = mb
        .message(&created.id, &[ORIGIN_PROPERTY, PR_MESSAGE_FLAGS])
        .await
        .unwrap();
    assert_eq!(read.is_draft, Some(false));
    assert_eq!(
        read.received_date_time.as_deref(),
        Some("2023-03-04T05:06:07Z")
    );
    assert_eq!(read.categories, held.categories);
    assert_eq!(read.single_value_extended_properties.len(), 2);

    // Unread and unflagged go the same way; a later flag sync changes them.
    let mut unread = received_message("unread", "INBOX/1:8");
    unread.is_read = false;
    unread.flagged = false;
    let u = mb.create_message(&inbox, &unread).await.unwrap();
    let held = sim_copy(&sim, &u.id);
    assert!(!held.is_read && !held.is_draft && held.flag == "notFlagged");
    mb.update_state(&u.id, true, true, Some(&["Blue".into()]))
        .await
        .unwrap();
    let held = sim_copy(&sim, &u.id);
    assert!(held.is_read && held.flag == "flagged" && held.categories == vec!["Blue".to_string()]);

    // A MIME create keeps the bytes exactly, and Exchange makes it a draft.
    let mime = b"From: Bob <bob@fabrikam.example>\r\nTo: ann@contoso.example\r\nSubject: raw\r\nMessage-ID: <raw-1@fabrikam.example>\r\nDate: Sat, 4 Mar 2023 05:06:00 +0000\r\n\r\nbody line\r\n".to_vec();
    let draft = mb.create_mime_draft(&inbox, &mime).await.unwrap();
    assert_eq!(draft.is_draft, Some(true));
    assert_eq!(mb.mime(&draft.id).await.unwrap(), mime);
    // The same MIME read into a JSON create is received mail, its headers rebuilt.
    let received = chrono::DateTime::parse_from_rfc3339("2023-03-04T05:06:30Z")
        .unwrap()
        .into();
    let from_mime = NewMessage::from_mime(&mime, received)
        .unwrap()
        .with_imap_flags(&["\\Seen", "Later"]);
    let made = mb.create_message(&inbox, &from_mime).await.unwrap();
    let held = sim_copy(&sim, &made.id);
    assert!(!held.is_draft && held.is_read);
    assert_eq!(
        (held.subject.as_str(), held.received.as_str()),
        ("raw", "2023-03-04T05:06:30Z")
    );
    assert_eq!(held.sent.as_deref(), Some("2023-03-04T05:06:00Z"));
    assert_eq!(held.internet_message_id, "<raw-1@fabrikam.example>");
    assert_eq!(held.categories, vec!["Later".to_string()]);
    assert_eq!(held.from["emailAddress"]["address"], "bob@fabrikam.example");
    // The JSON path rebuilds the headers: the subject survives, the bytes are Exchange's.
    let rebuilt = String::from_utf8(mb.mime(&created.id).await.unwrap()).unwrap();
    assert!(
        rebuilt.contains("Subject: quarterly\r\n") && rebuilt.contains("X-Mailferry-Test: 1"),
        "{rebuilt}"
    );

    // Only x- headers may be set.
    let mut bad = received_message("bad", "INBOX/1:9");
    bad.headers = vec![("Received".into(), "from x".into())];
    assert!(matches!(
        mb.create_message(&inbox, &bad).await,
        Err(Error::Invalid(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_item_goes_through_an_upload_session() {
    let sim = sim();
    let mb = graph(&sim).mailbox(USER).unwrap();
    let inbox = mb.well_known_folders().await.unwrap()[&WellKnown::Inbox].clone();
    let big: Vec<u8> = (0..9_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut m = received_message("large", "INBOX/1:100");
    m.attachments = vec![
        NewAttachment {
            name: "small.txt".into(),
            content_type: "text/plain".into(),
            content: b"small".to_vec(),
            content_id: None,
        },
        NewAttachment {
            name: "big.bin".into(),
            content_type: "application/octet-stream".into(),
            content: big.clone(),
            content_id: None,
        },
    ];
    let created = mb.create_message(&inbox, &m).await.unwrap();
    let held = sim_copy(&sim, &created.id);
    assert!(!held.is_draft);
    let names: Vec<&str> = held.attachments.iter().map(|a| a.0.as_str()).collect();
    assert_eq!(names, ["small.txt", "big.bin"]);
    assert!(
        held.attachments[1].2 == big,
        "the large attachment arrived byte for byte"
    );
    let reqs = sim.requests();
    let puts: Vec<_> = reqs.iter().filter(|r| r.method == "PUT").collect();
    assert_eq!(puts.len(), 3, "9 MB in chunks under 4 MB");
    assert!(
        puts.iter()
            .all(|r| r.upload <= 4 * 1024 * 1024 && r.status < 300)
    );
    assert!(reqs.iter().all(|r| r.upload <= 4 * 1024 * 1024));
    // Once whole, the item is found complete by its origin.
    let origin = m.origin.clone().unwrap();
    assert!(
        matches!(mb.find_by_origin(None, &origin).await.unwrap(), Found::Complete(x) if x.id == created.id)
    );
}

/// A create whose answer is lost on the way leaves the item in doubt: its
/// origin finds it, so it is not written twice; a read is simply sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_leaves_the_item_findable_and_a_read_is_sent_again() {
    use ferry_tests::faultproxy::{Dir, Fault, FaultProxy};
    let sim = sim();
    let port: u16 = sim.authority().rsplit(':').next().unwrap().parse().unwrap();
    let proxy = FaultProxy::start(port);
    let mut cfg = config(
        &sim,
        Credential::Secret(SECRET.into()),
        Limits::EXCHANGE_ONLINE,
    );
    let via = format!("https://127.0.0.1:{}", proxy.port());
    cfg.authority = via.clone();
    cfg.graph_url = format!("{via}/v1.0");
    let mb = Graph::new(cfg).unwrap().mailbox(USER).unwrap();
    let inbox = mb.well_known_folders().await.unwrap()[&WellKnown::Inbox].clone();

    let m = received_message("in flight", "INBOX/1:300");
    proxy.arm(Fault::Drop, Dir::Down, 20);
    let e = mb.create_message(&inbox, &m).await.unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e}");
    assert_eq!(proxy.fired().drops, 1);
    assert_eq!(
        sim.messages(USER).len(),
        1,
        "the service stored it; the client never heard"
    );
    let origin = m.origin.clone().unwrap();
    assert!(matches!(
        mb.find_by_origin(Some(&inbox), &origin).await.unwrap(),
        Found::Complete(_)
    ));

    proxy.arm(Fault::Drop, Dir::Down, 20);
    let listed = mb.messages(&inbox).await.unwrap();
    assert_eq!(proxy.fired().drops, 2);
    assert_eq!(listed.len(), 1);
}

/// A large item whose upload broke off is found as partial by its origin,
/// removed, and created again whole: never a second copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_item_cut_off_half_way_is_found_partial_and_replaced() {
    let sim = sim();
    let mut cfg = config(
        &sim,
        Credential::Secret(SECRET.into()),
        Limits::EXCHANGE_ONLINE,
    );
    cfg.retries = 0;
    let mb = Graph::new(cfg).unwrap().mailbox(USER).unwrap();
    let inbox = mb.well_known_folders().await.unwrap()[&WellKnown::Inbox].clone();
    let mut m = received_message("large", "INBOX/1:200");
    m.attachments = vec![NewAttachment {
        name: "big.bin".into(),
        content_type: "application/octet-stream".into(),
        content: vec![7; 5_000_000],
        content_id: None,
    }];
    let origin = m.origin.clone().unwrap();
    sim.fail_next_on("/upload/", 1, 503);
    assert_eq!(
        mb.create_message(&inbox, &m).await.unwrap_err().status(),
        Some(503)
    );
    let Found::Partial(partial) = mb.find_by_origin(Some(&inbox), &origin).await.unwrap() else {
        panic!("the cut-off item is partial");
    };
    assert_eq!(partial.len(), 1);
    mb.delete_message(&partial[0].id).await.unwrap();
    let whole = mb.create_message(&inbox, &m).await.unwrap();
    assert!(
        matches!(mb.find_by_origin(Some(&inbox), &origin).await.unwrap(), Found::Complete(x) if x.id == whole.id)
    );
    let held = sim.messages(USER);
    assert_eq!(held.len(), 1, "one copy");
    assert_eq!(held[0].attachments[0].2.len(), 5_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_import_api_takes_full_fidelity_items_and_renews_an_expired_url() {
    let sim = sim();
    let mb = graph(&sim).mailbox(USER).unwrap();
    let inbox = mb.well_known_folders().await.unwrap()[&WellKnown::Inbox].clone();
    let mut importer = mb.importer().await.unwrap();
    let fts1: Vec<u8> = (0..5000u32).map(|i| (i % 256) as u8).collect();
    let a = importer.import(&inbox, &fts1).await.unwrap();
    assert_eq!(importer.sessions_created, 1);
    let fts2 = b"\x00\x01second item".to_vec();
    let b = importer.import(&inbox, &fts2).await.unwrap();
    assert_eq!(
        importer.sessions_created, 1,
        "one session serves many items"
    );

    // The session's URL expires: the next item renews it and goes in once.
    sim.expire_import_sessions();
    let fts3 = b"third".to_vec();
    let c = importer.import(&inbox, &fts3).await.unwrap();
    assert_eq!(importer.sessions_created, 2);
    let held = sim.messages(USER);
    for (item, data) in [(&a, &fts1), (&b, &fts2), (&c, &fts3)] {
        let m = held.iter().find(|m| m.id == item.item_id).unwrap();
        assert_eq!(m.fts.as_ref(), Some(data), "the stream is kept as sent");
        assert!(!m.is_draft);
    }
    assert_eq!(held.len(), 3);
    let refused: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/import/") && r.status == 401)
        .collect();
    assert_eq!(refused.len(), 1);

    // The origin is stamped after the import, so the item can be found.
    let origin = Origin {
        key: "EWS/AAMk=1".into(),
        digest: "abc".into(),
    };
    mb.stamp(&c.item_id, &origin).await.unwrap();
    assert!(
        matches!(mb.find_by_origin(Some(&inbox), &origin).await.unwrap(), Found::Complete(m) if m.id == c.item_id)
    );

    // Refusals say what failed and never show the import URL.
    let (tok_a, tok_b) = ("/import/", "https://");
    let e = importer.import("no-such-folder", b"x").await.unwrap_err();
    let text = format!("{e} {e:?}");
    assert!(text.contains("ErrorFolderNotFound"), "{text}");
    assert!(
        !text.contains(tok_a)
            && !text.contains(tok_b)
            && !format!("{importer:?}", importer = importer.session()).contains(tok_a)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_in_doubt_is_found_by_its_origin_before_it_is_written_again() {
    let sim = sim();
    let mb = graph(&sim).mailbox(USER).unwrap();
    let wk = mb.well_known_folders().await.unwrap();
    let (inbox, sent) = (
        wk[&WellKnown::Inbox].clone(),
        wk[&WellKnown::SentItems].clone(),
    );
    let tricky = Origin {
        key: "INBOX/O'Brien 1:2".into(),
        digest: "sha256:0f0e".into(),
    };
    assert_eq!(
        mb.find_by_origin(Some(&inbox), &tricky).await.unwrap(),
        Found::Nothing
    );
    let mut m = received_message("in doubt", "x");
    m.origin = Some(tricky.clone());
    let created = mb.create_message(&inbox, &m).await.unwrap();
    for _ in 0..12 {
        mb.create_message(
            &inbox,
            &received_message("other", &format!("k{}", rand::random::<u32>())),
        )
        .await
        .unwrap();
    }
    match mb.find_by_origin(Some(&inbox), &tricky).await.unwrap() {
        Found::Complete(found) => {
            assert_eq!(found.id, created.id);
            assert_eq!(
                found.single_value_extended_properties[0].value,
                tricky.value()
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        mb.find_by_origin(Some(&sent), &tricky).await.unwrap(),
        Found::Nothing
    );
    let same_key_other_digest = Origin {
        key: tricky.key.clone(),
        digest: "sha256:ffff".into(),
    };
    assert_eq!(
        mb.find_by_origin(None, &same_key_other_digest)
            .await
            .unwrap(),
        Found::Nothing
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_follows_changes_and_restarts_after_410() {
    let sim = sim_with(SimConfig {
        page_size: 3,
        ..SimConfig::default()
    });
    let mb = graph(&sim).mailbox(USER).unwrap();
    let ids: Vec<String> = (0..7)
        .map(|i| sim.deliver(USER, "inbox", &format!("m{i}")))
        .collect();
    let inbox = mb.well_known_folders().await.unwrap()[&WellKnown::Inbox].clone();
    let first = mb.message_delta(&inbox, None).await.unwrap();
    let mut seen: Vec<String> = first.changed.iter().map(|m| m.id.clone()).collect();
    seen.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(seen, want, "three pages joined");
    assert!(!first.restarted);

    let nothing = mb
        .message_delta(&inbox, Some(&first.delta_link))
        .await
        .unwrap();
    assert!(nothing.changed.is_empty() && nothing.removed.is_empty());
    let new = sim.deliver(USER, "inbox", "m7");
    sim.delete(USER, &ids[0]);
    let next = mb
        .message_delta(&inbox, Some(&nothing.delta_link))
        .await
        .unwrap();
    assert_eq!(
        next.changed
            .iter()
            .map(|m| m.id.clone())
            .collect::<Vec<_>>(),
        vec![new.clone()]
    );
    assert_eq!(next.removed, vec![ids[0].clone()]);

    // The service forgets the link: the round starts over, flagged.
    sim.expire_delta_links();
    let again = mb
        .message_delta(&inbox, Some(&next.delta_link))
        .await
        .unwrap();
    assert!(again.restarted);
    assert_eq!(again.changed.len(), 7);
    assert!(sim.requests().iter().any(|r| r.status == 410));

    let folders = mb.folder_delta(None).await.unwrap();
    let made = mb.create_folder(None, "Later").await.unwrap();
    let fd = mb.folder_delta(Some(&folders.delta_link)).await.unwrap();
    assert_eq!(
        fd.changed.iter().map(|f| f.id.clone()).collect::<Vec<_>>(),
        vec![made.id]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_parts_follow_their_dependencies_and_throttled_parts_are_sent_again() {
    let sim = sim();
    let mb = graph(&sim).mailbox(USER).unwrap();
    let user = format!("/users/{USER}");
    let parts = vec![
        BatchPart::get("1", format!("{user}/mailFolders/inbox")),
        BatchPart::with_body(
            "2",
            ferry_graph::Method::POST,
            format!("{user}/mailFolders/no-such-id/childFolders"),
            serde_json::json!({ "displayName": "x" }),
        ),
        BatchPart::with_body(
            "3",
            ferry_graph::Method::POST,
            format!("{user}/mailFolders"),
            serde_json::json!({ "displayName": "y" }),
        )
        .after("2"),
        BatchPart::with_body(
            "4",
            ferry_graph::Method::POST,
            format!("{user}/mailFolders"),
            serde_json::json!({ "displayName": "z" }),
        )
        .after("1"),
    ];
    let answers = mb.batch(parts.clone()).await.unwrap();
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, vec![200, 404, 424, 201]);
    assert!(
        !sim.folders(USER).iter().any(|(_, p, _)| p == "y"),
        "a part whose dependency failed did nothing"
    );

    // The service throttles the first part: it and its dependants go again after Retry-After.
    sim.throttle_next(1, 1);
    let parts = vec![
        BatchPart::get("a", format!("{user}/mailFolders/inbox")),
        BatchPart::with_body(
            "b",
            ferry_graph::Method::POST,
            format!("{user}/mailFolders"),
            serde_json::json!({ "displayName": "after a" }),
        )
        .after("a"),
    ];
    let start = Instant::now();
    let answers = mb.batch(parts).await.unwrap();
    assert!(start.elapsed() >= Duration::from_secs(1));
    assert_eq!(
        answers.iter().map(|a| a.status).collect::<Vec<_>>(),
        vec![200, 201]
    );
    assert_eq!(
        sim.folders(USER)
            .iter()
            .filter(|(_, p, _)| p == "after a")
            .count(),
        1
    );
    let too_many: Vec<BatchPart> = (0..21)
        .map(|i| BatchPart::get(&i.to_string(), user.clone()))
        .collect();
    assert!(matches!(mb.batch(too_many).await, Err(Error::Invalid(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_never_pushes_the_rate_over_the_budget() {
    let limits = Limits {
        concurrent: 4,
        requests: 40,
        request_window: Duration::from_secs(2),
        upload_bytes: 150 * 1024 * 1024,
        upload_window: Duration::from_secs(300),
    };
    let sim = sim_with(SimConfig {
        latency: Duration::from_millis(15),
        // The service's window has the slack of loopback jitter (a request's
        // trip varies by milliseconds on a loaded machine; the client counts
        // when it sends). The strict check is the one on arrivals below.
        limits: Some(SimLimits {
            concurrent: 4,
            requests: 44,
            window: Duration::from_secs(2),
            upload_bytes: 150 * 1024 * 1024,
            upload_window: Duration::from_secs(300),
        }),
        ..SimConfig::default()
    });
    let g = Graph::new(config(&sim, Credential::Secret(SECRET.into()), limits)).unwrap();
    let mb = g.mailbox(USER).unwrap();
    let inbox = mb.well_known_folders().await.unwrap()[&WellKnown::Inbox].clone();
    sim.clear_requests();

    // 8 workers, 120 requests; the service throttles three of them on the way.
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mb = g.mailbox(USER).unwrap();
        let inbox = inbox.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..15 {
                mb.messages(&inbox).await.unwrap();
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    sim.throttle_next(3, 1);
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed();
    let log: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.mailbox == USER)
        .collect();
    assert_eq!(log.iter().filter(|r| r.status == 200).count(), 120);
    assert!(log.iter().all(|r| r.in_flight <= 4), "at most 4 in flight");
    // The rate and Retry-After, as the service saw them.
    let arrivals: Vec<(Duration, u16)> = log.iter().map(|r| (r.at, r.status)).collect();
    let throttled = assert_budget_kept(
        &arrivals,
        40,
        Duration::from_secs(2),
        Duration::from_secs(1),
    );
    assert_eq!(
        throttled.len(),
        3,
        "only the injected 429s: the budget kept under the service's limit"
    );
    let state = mb.budget().state();
    assert_eq!(state.throttles_last_hour, 3);
    assert!(
        state.throttled_last_hour >= Duration::from_secs(1),
        "{state}"
    );
    assert!(
        state
            .to_string()
            .starts_with("throttled by the destination: "),
        "{state}"
    );
    // 120 requests at 40 per 2 s take at least 4 s.
    assert!(elapsed >= Duration::from_secs(4), "{elapsed:?}");

    // 503s without Retry-After are backed off, then the call goes through.
    sim.fail_next(2, 503);
    let t = Instant::now();
    mb.messages(&inbox).await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "backed off 0.5 s then 1 s: {:?}",
        t.elapsed()
    );
}

/// Microsoft's Python SDK (msgraph-sdk with azure-identity, installed by
/// scripts/test.sh into target/pyenv) and ferry-graph must see the same
/// mailbox in the simulator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microsofts_sdk_and_ferry_graph_agree_on_the_simulator() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let python = root.join("target/pyenv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test.sh, which installs msgraph-sdk",
        python.display()
    );
    let sim = sim_with(SimConfig {
        page_size: 2,
        ..SimConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let g = graph_with(&sim, Credential::secret_file(&secret_file).unwrap());
    let mb = g.mailbox(USER).unwrap();
    let inbox = mb.well_known_folders().await.unwrap()[&WellKnown::Inbox].clone();
    let ours = mb
        .create_message(&inbox, &received_message("from ferry", "INBOX/1:1"))
        .await
        .unwrap();
    mb.create_folder(None, "Projects").await.unwrap();

    let (key, cert, der) = rsa_certificate(dir.path(), "sdk");
    sim.add_app_certificate(APP, &der);
    let bundle = dir.path().join("bundle.pem");
    std::fs::write(
        &bundle,
        [std::fs::read(&key).unwrap(), std::fs::read(&cert).unwrap()].concat(),
    )
    .unwrap();

    let run = |use_cert: bool| {
        let mut c = Command::new(&python);
        c.arg(root.join("tests/py/graph_sdk.py"))
            .env(
                "GRAPH_SIM_AUTHORITY",
                sim.authority().trim_start_matches("https://"),
            )
            .env("GRAPH_SIM_TENANT", sim.tenant_id())
            .env("GRAPH_SIM_CLIENT_ID", APP)
            .env("GRAPH_SIM_GRAPH_URL", sim.graph_url())
            .env("GRAPH_SIM_CA", sim.ca_path())
            .env("REQUESTS_CA_BUNDLE", sim.ca_path())
            .env("GRAPH_SIM_USER", USER)
            .env("GRAPH_SIM_RECEIVED", "2022-01-02T03:04:05Z")
            .env("GRAPH_SIM_SECRET_FILE", &secret_file);
        if use_cert {
            c.env("GRAPH_SIM_CERT", &bundle);
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "the SDK failed:\n{}\n{:#?}",
            String::from_utf8_lossy(&out.stderr),
            sim.requests().iter().rev().take(8).collect::<Vec<_>>()
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v
    };
    let grants_before = sim.grants();
    let v = run(false);
    assert!(
        sim.grants() > grants_before,
        "the SDK signed in at the simulator"
    );

    // Folders: the same top-level set.
    let sdk_folders = sorted(&v["folders"], "displayName");
    let mut our_folders: Vec<String> = mb
        .folders()
        .await
        .unwrap()
        .into_iter()
        .filter(|f| f.path.len() == 1)
        .map(|f| f.folder.display_name)
        .collect();
    our_folders.sort();
    assert_eq!(sdk_folders, our_folders);
    assert_eq!(v["inbox"].as_str(), Some(inbox.as_str()));

    // What the SDK created: received mail with the MAPI properties, a draft without.
    assert_eq!(v["receivedIsDraft"], false);
    assert_eq!(v["plainIsDraft"], true);
    let theirs = mb
        .message(v["received"].as_str().unwrap(), &[])
        .await
        .unwrap();
    assert_eq!(theirs.is_draft, Some(false));
    assert_eq!(
        theirs.received_date_time.as_deref(),
        Some("2022-01-02T03:04:05Z")
    );
    assert_eq!(theirs.categories, vec!["SDK".to_string()]);
    assert_eq!(theirs.flag.unwrap().flag_status, "flagged");

    // The inbox as both see it.
    let sdk_ids = sorted(&v["messages"], "id");
    let mut our_ids: Vec<String> = mb
        .messages(&inbox)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    our_ids.sort();
    assert_eq!(sdk_ids, our_ids);
    assert_eq!(sdk_ids.len(), 3);
    let sdk_ours = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == ours.id.as_str())
        .unwrap();
    assert_eq!(sdk_ours["subject"], "from ferry");
    assert_eq!(sdk_ours["isDraft"], false);
    assert_eq!(sdk_ours["isRead"], true);
    assert_eq!(sdk_ours["flag"], "flagged");
    assert!(
        sdk_ours["received"]
            .as_str()
            .unwrap()
            .starts_with("2023-03-04T05:06:07")
    );

    // The SDK's delta (two pages) saw the three; its link serves ferry-graph's next round.
    assert_eq!(sorted(&v["deltaIds"], ""), sdk_ids);
    assert!(v["deltaPages"].as_u64().unwrap() >= 2);
    let later = sim.deliver(USER, "inbox", "after the sdk");
    let next = mb
        .message_delta(&inbox, v["deltaLink"].as_str())
        .await
        .unwrap();
    assert_eq!(
        next.changed
            .iter()
            .map(|m| m.id.clone())
            .collect::<Vec<_>>(),
        vec![later]
    );

    // The SDK signs in with the certificate too (MSAL's PS256 assertion).
    let v = run(true);
    assert_eq!(v["receivedIsDraft"], false);
}

//! ferry-ews against the EWS simulator: full and delta syncs of every
//! folder class, an invalidated sync state, throttling, impersonation,
//! Basic and NTLM; and exchangelib against the same simulator, agreeing
//! with ferry-ews on what is there.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use ferry_ews::{
    ApiVersion, AuthKind, Change, Credentials, Endpoint, EndpointConfig, EwsError, Fetched,
    FlagStatus, FolderKind, ItemId, Mailbox, RetryPolicy, WellKnown,
};
use ferry_tests::ews_sim::{
    AuthSchemes, EwsSim, ItemKind, SimConfig, SimVersion, Throttle, export_stream,
};

const PW: &str = "Winter-2024!pw";

fn sim(version: SimVersion) -> EwsSim {
    EwsSim::start(SimConfig {
        version,
        ..SimConfig::default()
    })
}

fn config(sim: &EwsSim) -> EndpointConfig {
    let mut c = EndpointConfig::new(sim.url());
    c.ca_file = Some(sim.ca_file());
    c.timeout = Duration::from_secs(30);
    c.retry = RetryPolicy {
        attempts: 6,
        first_wait: Duration::from_millis(50),
        max_wait: Duration::from_secs(2),
    };
    c
}

fn endpoint(sim: &EwsSim) -> Endpoint {
    Endpoint::new(&config(sim)).unwrap()
}

fn ntlm(user: &str, pw: &str) -> Credentials {
    Credentials::new(AuthKind::Ntlm, format!("SIM\\{user}"), pw)
}

fn basic(user: &str, pw: &str) -> Credentials {
    Credentials::new(AuthKind::Basic, format!("{user}@sim.example"), pw)
}

/// Every page of a folder's changes from `state`; the changes and the
/// final state.
async fn sync_all(
    mb: &Mailbox,
    folder: &str,
    mut state: Option<String>,
    page: u32,
) -> Result<(Vec<Change>, String), EwsError> {
    let mut all = Vec::new();
    loop {
        let p = mb.sync_items(folder, state.as_deref(), page).await?;
        assert!(p.changes.len() <= page as usize);
        all.extend(p.changes);
        state = Some(p.sync_state);
        if p.last {
            return Ok((all, state.unwrap()));
        }
    }
}

fn created_ids(changes: &[Change]) -> Vec<ItemId> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Create(i) => Some(i.id.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_full_sync_reads_every_folder_class_as_the_server_holds_it() {
    let sim = sim(SimVersion::Exchange2016);
    let alice = sim.add_user("alice", PW);
    sim.populate(&alice, 60, 6, 7);
    let ep = endpoint(&sim);
    let mb = Mailbox::open(&ep, ntlm("alice", PW), None).await.unwrap();
    assert_eq!(mb.version(), ApiVersion::Exchange2016);
    assert_eq!(
        ep.max_connections(),
        27,
        "EWSMaxConcurrency of 2013 and later"
    );

    let folders = mb.folders().await.unwrap();
    let by_path: HashMap<String, &ferry_ews::Folder> =
        folders.iter().map(|f| (f.path.join("/"), f)).collect();
    for (path, role) in [
        ("Inbox", WellKnown::Inbox),
        ("Sent Items", WellKnown::SentItems),
        ("Drafts", WellKnown::Drafts),
        ("Deleted Items", WellKnown::DeletedItems),
        ("Junk Email", WellKnown::JunkEmail),
        ("Archive", WellKnown::Archive),
        ("Calendar", WellKnown::Calendar),
        ("Contacts", WellKnown::Contacts),
        ("Tasks", WellKnown::Tasks),
    ] {
        assert_eq!(by_path[path].well_known, Some(role), "{path}");
    }
    assert_eq!(by_path["Archive/2024/Février"].kind, FolderKind::Mail);
    assert_eq!(by_path["Inbox/日本語"].kind, FolderKind::Mail);
    assert_eq!(by_path["Calendar/Holidays"].kind, FolderKind::Calendar);
    assert_eq!(by_path["Contacts"].kind, FolderKind::Contacts);
    assert_eq!(by_path["Tasks"].kind, FolderKind::Tasks);
    assert_eq!(by_path["Notes"].kind, FolderKind::Other);
    assert_eq!(by_path["Projets été"].well_known, None);

    let mut seen_kinds = BTreeSet::new();
    let mut total = 0;
    for f in &folders {
        let (changes, _) = sync_all(&mb, &f.id, None, 7).await.unwrap();
        let ids = created_ids(&changes);
        assert_eq!(changes.len(), ids.len(), "a first sync only creates");
        assert_eq!(Some(ids.len() as u64), f.total_count, "{}", f.display_name);
        let held = sim.with(|s| {
            s.mailbox(&alice)
                .unwrap()
                .items_in(&f.id)
                .into_iter()
                .cloned()
                .collect::<Vec<_>>()
        });
        let listed: BTreeSet<&str> = ids.iter().map(|i| i.id.as_str()).collect();
        let expected: BTreeSet<&str> = held.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(listed, expected, "{}", f.display_name);
        total += ids.len();
        for batch in ids.chunks(10) {
            let got = mb.get_items(batch).await.unwrap();
            assert_eq!(got.len(), batch.len());
            for (fetched, id) in got.iter().zip(batch) {
                let Fetched::Item(item) = fetched else {
                    panic!("{id:?} missing")
                };
                let orig = held.iter().find(|h| h.id == id.id).unwrap();
                seen_kinds.insert(item.element.clone());
                assert_eq!(item.mime, orig.mime, "MIME bytes of {}", id.id);
                assert_eq!(item.categories, orig.categories);
                assert_eq!(item.flag, orig.flag);
                assert_eq!(
                    item.received.unwrap().timestamp(),
                    orig.received.timestamp()
                );
                assert_eq!(item.size, Some(orig.mime.len() as u64));
                if orig.kind == ItemKind::Message {
                    assert_eq!(item.is_read, Some(orig.is_read));
                }
            }
            if f.kind != FolderKind::Mail {
                let streams = mb.export_items(batch).await.unwrap();
                for (s, id) in streams.iter().zip(batch) {
                    let orig = held.iter().find(|h| h.id == id.id).unwrap();
                    assert_eq!(s.id.id, id.id);
                    assert_eq!(s.data, export_stream(orig));
                }
            }
        }
    }
    assert_eq!(total, 60 + 18);
    let kinds: Vec<&str> = seen_kinds.iter().map(String::as_str).collect();
    assert_eq!(kinds, ["CalendarItem", "Contact", "Message", "Task"]);
    // Some messages were read, some flagged: the checks above meant something.
    let (read, flagged) = sim.with(|s| {
        let items = &s.mailbox(&alice).unwrap().items;
        (
            items.values().filter(|i| i.is_read).count(),
            items
                .values()
                .filter(|i| i.flag == FlagStatus::Flagged)
                .count(),
        )
    });
    assert!(read > 0 && flagged > 0);
}

#[tokio::test]
async fn deltas_report_creates_updates_read_states_moves_and_deletes() {
    let sim = sim(SimVersion::Exchange2013);
    let bob = sim.add_user("bob", PW);
    sim.populate(&bob, 30, 0, 3);
    let inbox = sim.folder_id(&bob, "inbox");
    let archive = sim.folder_id(&bob, "archive");
    let ep = endpoint(&sim);
    let mb = Mailbox::open(&ep, basic("bob", PW), None).await.unwrap();
    assert_eq!(mb.version(), ApiVersion::Exchange2013Sp1);
    let (first, inbox_state) = sync_all(&mb, &inbox, None, 512).await.unwrap();
    let (_, archive_state) = sync_all(&mb, &archive, None, 512).await.unwrap();
    let ids: Vec<String> = created_ids(&first).into_iter().map(|i| i.id).collect();
    assert!(ids.len() >= 5, "inbox holds {}", ids.len());

    // Nothing changed: an empty delta, and the state still works after it.
    let (none, inbox_state) = sync_all(&mb, &inbox, Some(inbox_state), 512).await.unwrap();
    assert!(none.is_empty(), "{none:?}");

    let new = sim.add_message(&bob, &inbox, b"Subject: new\r\n\r\nhello\r\n", false);
    sim.update_item(&bob, &ids[0], vec!["Urgent".into()], FlagStatus::Flagged);
    let was_read = sim.with(|s| s.mailbox(&bob).unwrap().items[&ids[1]].is_read);
    sim.set_read(&bob, &ids[1], !was_read);
    let moved = sim.move_item(&bob, &ids[2], &archive);
    sim.delete_item(&bob, &ids[3]);
    assert_ne!(moved, ids[2], "a moved item has a new id");

    let (delta, _) = sync_all(&mb, &inbox, Some(inbox_state), 2).await.unwrap();
    let mut kinds: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for c in &delta {
        let (k, id) = match c {
            Change::Create(i) => ("create", i.id.id.clone()),
            Change::Update(i) => ("update", i.id.id.clone()),
            Change::Delete { id } => ("delete", id.clone()),
            Change::ReadFlag { id, is_read } => {
                assert_eq!(*is_read, !was_read);
                ("read", id.clone())
            }
        };
        kinds.entry(k).or_default().push(id);
    }
    let mut deleted = vec![ids[2].clone(), ids[3].clone()];
    deleted.sort();
    if let Some(v) = kinds.get_mut("delete") {
        v.sort();
    }
    assert_eq!(kinds["create"], std::slice::from_ref(&new));
    assert_eq!(kinds["update"], [ids[0].clone()]);
    assert_eq!(kinds["read"], [ids[1].clone()]);
    assert_eq!(kinds["delete"], deleted);
    assert_eq!(delta.len(), 5);

    let (arch, _) = sync_all(&mb, &archive, Some(archive_state), 512)
        .await
        .unwrap();
    assert_eq!(
        created_ids(&arch)
            .into_iter()
            .map(|i| i.id)
            .collect::<Vec<_>>(),
        std::slice::from_ref(&moved)
    );

    // The old id is gone; the new one reads with the same bytes.
    let got = mb
        .get_items(&[
            ItemId {
                id: ids[2].clone(),
                change_key: None,
            },
            ItemId {
                id: moved.clone(),
                change_key: None,
            },
        ])
        .await
        .unwrap();
    assert_eq!(got[0], Fetched::Missing { id: ids[2].clone() });
    let Fetched::Item(item) = &got[1] else {
        panic!("moved item unreadable")
    };
    let orig = sim.with(|s| s.mailbox(&bob).unwrap().items[&moved].mime.clone());
    assert_eq!(item.mime, orig);
}

#[tokio::test]
async fn an_invalidated_sync_state_is_its_own_error_and_a_restart_reads_everything() {
    let sim = sim(SimVersion::Exchange2019);
    let carol = sim.add_user("carol", PW);
    sim.populate(&carol, 20, 0, 5);
    let inbox = sim.folder_id(&carol, "inbox");
    let ep = endpoint(&sim);
    let mb = Mailbox::open(&ep, ntlm("carol", PW), None).await.unwrap();
    // 2019 speaks the 2016 schema.
    assert_eq!(mb.version(), ApiVersion::Exchange2016);
    assert_eq!(ep.server_version().unwrap().minor, 2);
    let (first, state) = sync_all(&mb, &inbox, None, 3).await.unwrap();
    sim.invalidate_sync_states(&carol, &inbox);
    let err = mb.sync_items(&inbox, Some(&state), 3).await.unwrap_err();
    assert!(
        matches!(&err, EwsError::InvalidSyncState { folder, .. } if *folder == inbox),
        "{err}"
    );
    assert_eq!(err.code(), Some("ErrorInvalidSyncStateData"));
    let (again, _) = sync_all(&mb, &inbox, None, 3).await.unwrap();
    assert_eq!(created_ids(&again), created_ids(&first));
    // A state made up by the client is refused the same way.
    let err = mb
        .sync_items(&inbox, Some("AAAAbogus"), 3)
        .await
        .unwrap_err();
    assert!(matches!(err, EwsError::InvalidSyncState { .. }));
}

#[tokio::test]
async fn server_busy_waits_exactly_the_back_off_and_503s_and_connection_counts_back_off() {
    let sim = sim(SimVersion::Exchange2016);
    let dave = sim.add_user("dave", PW);
    sim.populate(&dave, 5, 0, 9);
    let inbox = sim.folder_id(&dave, "inbox");
    let ep = endpoint(&sim);
    let mb = Mailbox::open(&ep, ntlm("dave", PW), None).await.unwrap();
    let (changes, _) = sync_all(&mb, &inbox, None, 512).await.unwrap();
    let ids = created_ids(&changes);

    for back_off in [400u64, 900] {
        sim.throttle(
            Some("GetItem"),
            Throttle::Busy {
                back_off_ms: back_off,
            },
        );
        let t = Instant::now();
        let got = mb.get_items(&ids).await.unwrap();
        let took = t.elapsed();
        assert_eq!(got.len(), ids.len());
        assert_eq!(
            ep.throttle_waits().last(),
            Some(&Duration::from_millis(back_off))
        );
        let want = Duration::from_millis(back_off);
        assert!(
            took >= want && took < want + Duration::from_millis(800),
            "waited {took:?} for a back-off of {want:?}"
        );
    }

    sim.throttle(Some("SyncFolderItems"), Throttle::Unavailable);
    sim.throttle(Some("SyncFolderItems"), Throttle::Unavailable);
    let t = Instant::now();
    sync_all(&mb, &inbox, None, 512).await.unwrap();
    // Exponential: 50 ms, then 100 ms.
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
    let waits = ep.throttle_waits();
    assert_eq!(
        waits[waits.len() - 2..],
        [Duration::from_millis(50), Duration::from_millis(100)]
    );

    let cap = ep.max_connections();
    sim.throttle(Some("GetItem"), Throttle::ConnectionCount);
    mb.get_items(&ids[..1]).await.unwrap();
    assert_eq!(
        ep.max_connections(),
        cap - 1,
        "one connection fewer after ErrorExceededConnectionCount"
    );
    assert_eq!(sim.counters().throttled, 5);

    // Throttled for good: a clear error after the policy's tries.
    for _ in 0..6 {
        sim.throttle(Some("GetItem"), Throttle::Busy { back_off_ms: 10 });
    }
    let err = mb.get_items(&ids[..1]).await.unwrap_err();
    assert!(
        matches!(err, EwsError::Throttled { attempts: 6, .. }),
        "{err}"
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn the_connection_cap_holds_and_a_server_cap_is_learned() {
    let sim = EwsSim::start(SimConfig {
        version: SimVersion::Exchange2016,
        latency: Duration::from_millis(30),
        ..SimConfig::default()
    });
    let erin = sim.add_user("erin", PW);
    sim.populate(&erin, 12, 0, 11);
    let inbox = sim.folder_id(&erin, "inbox");
    let mut cfg = config(&sim);
    cfg.max_connections = Some(3);
    let ep = Endpoint::new(&cfg).unwrap();
    let mb = Mailbox::open(&ep, ntlm("erin", PW), None).await.unwrap();
    let (changes, _) = sync_all(&mb, &inbox, None, 512).await.unwrap();
    let ids = created_ids(&changes);
    concurrent_gets(&mb, &ids, 12).await;
    let c = sim.counters();
    assert!(c.max_in_flight <= 3, "{} in flight", c.max_in_flight);
    assert!(c.max_in_flight >= 2, "the calls overlapped");

    // The server allows 2; the client starts at 27 and learns. Enough
    // tries that no call runs out of them while the cap comes down.
    sim.set_max_concurrency(Some(2));
    let mut cfg = config(&sim);
    cfg.retry.attempts = 12;
    let ep = Endpoint::new(&cfg).unwrap();
    let mb = Mailbox::open(&ep, ntlm("erin", PW), None).await.unwrap();
    concurrent_gets(&mb, &ids, 16).await;
    assert!(sim.counters().throttled > 0);
    assert!(
        ep.max_connections() < 27,
        "cap now {}",
        ep.max_connections()
    );
}

/// Runs `n` one-item GetItem calls at once.
async fn concurrent_gets(mb: &Mailbox, ids: &[ItemId], n: usize) {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let mb = mb.clone();
        let id = ids[i % ids.len()].clone();
        set.spawn(async move { mb.get_items(&[id]).await });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap().unwrap();
    }
}

#[tokio::test]
async fn impersonation_reads_another_mailbox_and_a_refusal_is_named() {
    let sim = sim(SimVersion::Exchange2016);
    let frank = sim.add_user("frank", PW);
    sim.populate(&frank, 8, 2, 13);
    sim.add_account("migrator", "Admin-pw-77", true, false);
    sim.add_user("mallory", "Mallory-pw-1");
    let ep = endpoint(&sim);
    let mb = Mailbox::open(&ep, ntlm("migrator", "Admin-pw-77"), Some(&frank))
        .await
        .unwrap();
    let folders = mb.folders().await.unwrap();
    let inbox = folders
        .iter()
        .find(|f| f.well_known == Some(WellKnown::Inbox))
        .unwrap();
    assert_eq!(inbox.id, sim.folder_id(&frank, "inbox"));
    let (changes, _) = sync_all(&mb, &inbox.id, None, 512).await.unwrap();
    assert!(!changes.is_empty());
    assert_eq!(
        sim.counters().anchor_mismatches,
        0,
        "X-AnchorMailbox names the mailbox"
    );

    let err = Mailbox::open(&ep, ntlm("mallory", "Mallory-pw-1"), Some(&frank))
        .await
        .err()
        .expect("mallory may not impersonate");
    assert!(matches!(err, EwsError::ImpersonationDenied { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("ErrorImpersonateUserDenied") && text.contains(&frank),
        "{text}"
    );
    assert!(text.contains("SIM\\mallory"), "{text}");
    assert!(!text.contains("Mallory-pw-1"));
}

#[tokio::test]
async fn basic_and_ntlm_both_log_in_and_wrong_passwords_say_nothing_secret() {
    let sim = sim(SimVersion::Exchange2016);
    sim.add_user("gina", PW);
    let ep = endpoint(&sim);
    // NTLM authenticates the connection once; later calls reuse it.
    let mb = Mailbox::open(&ep, ntlm("gina", PW), None).await.unwrap();
    for _ in 0..4 {
        mb.folders().await.unwrap();
    }
    let c = sim.counters();
    assert_eq!(
        c.ntlm_handshakes, 1,
        "one handshake for one kept connection"
    );
    assert_eq!(c.basic_logins, 0);
    Mailbox::open(&ep, basic("gina", PW), None).await.unwrap();
    assert!(sim.counters().basic_logins >= 1);

    for creds in [
        ntlm("gina", "Wrong-Secret-9"),
        basic("gina", "Wrong-Secret-9"),
    ] {
        let auth = creds.auth;
        let err = Mailbox::open(&ep, creds, None)
            .await
            .err()
            .expect("refused");
        assert!(
            matches!(err, EwsError::Unauthorized { .. }),
            "{auth:?}: {err}"
        );
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains("Wrong-Secret-9"), "{text}");
            assert!(!text.contains(PW), "{text}");
        }
    }
    assert_eq!(sim.counters().refused_logins, 2);

    // A server offering NTLM only refuses Basic.
    let ntlm_only = EwsSim::start(SimConfig {
        schemes: AuthSchemes {
            basic: false,
            ntlm: true,
        },
        ..SimConfig::default()
    });
    ntlm_only.add_user("gina", PW);
    let ep = endpoint(&ntlm_only);
    assert!(Mailbox::open(&ep, basic("gina", PW), None).await.is_err());
    Mailbox::open(&ep, ntlm("gina", PW), None).await.unwrap();
}

#[tokio::test]
async fn exchange_2010_sp1_is_spoken_to_in_its_own_schema() {
    let sim = sim(SimVersion::Exchange2010Sp1);
    let hank = sim.add_user("hank", PW);
    sim.populate(&hank, 25, 2, 17);
    let ep = endpoint(&sim);
    let mb = Mailbox::open(&ep, ntlm("hank", PW), None).await.unwrap();
    assert_eq!(mb.version(), ApiVersion::Exchange2010Sp1);
    assert_eq!(ep.max_connections(), 10, "EWSMaxConcurrency of 2010");
    let folders = mb.folders().await.unwrap();
    // `archive` is no distinguished id before 2016: an ordinary folder here.
    let archive = folders
        .iter()
        .find(|f| f.display_name == "Archive")
        .unwrap();
    assert_eq!(archive.well_known, None);
    let inbox = folders
        .iter()
        .find(|f| f.well_known == Some(WellKnown::Inbox))
        .unwrap();
    let (changes, _) = sync_all(&mb, &inbox.id, None, 512).await.unwrap();
    let ids = created_ids(&changes);
    sim.update_item(&hank, &ids[0].id, vec![], FlagStatus::Flagged);
    sim.update_item(&hank, &ids[1].id, vec![], FlagStatus::Complete);
    // The flag comes from PR_FLAG_STATUS, item:Flag being 2013's.
    let got = mb.get_items(&ids).await.unwrap();
    let mut flagged = 0;
    for (f, id) in got.iter().zip(&ids) {
        let Fetched::Item(item) = f else { panic!() };
        let orig = sim.with(|s| s.mailbox(&hank).unwrap().items[&id.id].flag);
        assert_eq!(item.flag, orig);
        flagged += (orig == FlagStatus::Flagged) as usize;
    }
    assert!(flagged > 0, "some messages are flagged");
    assert!(matches!(&got[1], Fetched::Item(i) if i.flag == FlagStatus::Complete));
    let cal = folders
        .iter()
        .find(|f| f.well_known == Some(WellKnown::Calendar))
        .unwrap();
    let (changes, _) = sync_all(&mb, &cal.id, None, 512).await.unwrap();
    let ids = created_ids(&changes);
    assert_eq!(mb.export_items(&ids).await.unwrap().len(), changes.len());
    // An item gone since the sync is left out; the others still come.
    let mut with_gone = ids.clone();
    with_gone.insert(
        1,
        ItemId {
            id: "AAMkAGdvbmUtc2luY2UtdGhlLXN5bmM=".into(),
            change_key: None,
        },
    );
    let got = mb.export_items(&with_gone).await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.id.id.clone()).collect::<Vec<_>>(),
        ids.iter().map(|i| i.id.clone()).collect::<Vec<_>>()
    );
}

/// The Python of the venv `scripts/test.sh` makes, with exchangelib in it.
fn exchangelib_python() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let py = root.join("target/pyenv/bin/python");
    let ok = py.exists()
        && std::process::Command::new(&py)
            .args(["-c", "import exchangelib"])
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        ok,
        "exchangelib is missing: scripts/test.sh installs it into target/pyenv"
    );
    py
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// exchangelib reads the mailbox; its JSON report.
fn exchangelib_reads(
    sim: &EwsSim,
    login: &str,
    password: &str,
    smtp: &str,
    auth: &str,
    access: &str,
) -> serde_json::Value {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/exchangelib_probe.py");
    let out = std::process::Command::new(exchangelib_python())
        .arg(script)
        .env("EWS_URL", sim.url())
        .env("EWS_LOGIN", login)
        .env("EWS_PASSWORD", password)
        .env("EWS_ACCESS", access)
        .env("EWS_SMTP", smtp)
        .env("EWS_AUTH", auth)
        .env("REQUESTS_CA_BUNDLE", sim.ca_file())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "exchangelib failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the probe prints JSON")
}

/// ferry-ews reads the same mailbox; checks both saw the same thing.
async fn agree(sim: &EwsSim, creds: Credentials, smtp: &str, seen: &serde_json::Value) {
    let ep = endpoint(sim);
    let mb = Mailbox::open(&ep, creds, None).await.unwrap();
    assert_eq!(seen["api_version"], mb.version().as_str());
    let folders = mb.folders().await.unwrap();
    let theirs: BTreeMap<String, &serde_json::Value> = seen["folders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["id"].as_str().unwrap().to_string(), f))
        .collect();
    let ours: BTreeSet<String> = folders.iter().map(|f| f.id.clone()).collect();
    assert_eq!(ours, theirs.keys().cloned().collect(), "the same folders");
    let mut items = 0;
    for f in &folders {
        let t = theirs[&f.id];
        assert_eq!(t["name"], f.display_name.as_str());
        assert_eq!(t["class"], f.class.as_str());
        assert_eq!(t["total"].as_u64(), f.total_count);
        assert_eq!(t["sync_state"], true);
        let (changes, _) = sync_all(&mb, &f.id, None, 512).await.unwrap();
        let ids = created_ids(&changes);
        let fetched = mb.get_items(&ids).await.unwrap();
        let ours: BTreeMap<String, String> = fetched
            .iter()
            .map(|x| match x {
                Fetched::Item(i) => (i.id.id.clone(), sha256_hex(&i.mime)),
                Fetched::Missing { id } => panic!("{id} missing"),
            })
            .collect();
        let theirs: BTreeMap<String, String> = t["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["id"].as_str().unwrap().into(),
                    i["sha256"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(ours, theirs, "items and MIME bytes of {}", f.display_name);
        // And both match what the simulator holds.
        let held: BTreeMap<String, String> = sim.with(|s| {
            s.mailbox(smtp)
                .unwrap()
                .items_in(&f.id)
                .iter()
                .map(|i| (i.id.clone(), sha256_hex(&i.mime)))
                .collect()
        });
        assert_eq!(ours, held);
        items += ours.len();
        if let Some(exported) = t.get("export_sha256") {
            let streams = mb.export_items(&ids).await.unwrap();
            let ours: Vec<String> = streams.iter().map(|s| sha256_hex(&s.data)).collect();
            assert_eq!(exported.as_array().unwrap().len(), ours.len());
            for (a, b) in exported.as_array().unwrap().iter().zip(&ours) {
                assert_eq!(a, b.as_str());
            }
        }
    }
    assert!(items > 0);
}

#[tokio::test]
async fn exchangelib_and_ferry_ews_agree_on_what_the_simulator_holds() {
    // Exchange 2016 over NTLM.
    let sim16 = sim(SimVersion::Exchange2016);
    let alice = sim16.add_user("alice", PW);
    sim16.populate(&alice, 25, 3, 21);
    let seen = exchangelib_reads(&sim16, "SIM\\alice", PW, &alice, "NTLM", "delegate");
    assert!(
        seen["build"].as_str().unwrap().starts_with("15.1"),
        "{}",
        seen["build"]
    );
    agree(&sim16, ntlm("alice", PW), &alice, &seen).await;
    assert!(
        sim16.counters().ntlm_handshakes >= 2,
        "both clients used NTLM"
    );
    // exchangelib acting for alice through ExchangeImpersonation sees the same.
    sim16.add_account("migrator", "Admin-pw-77", true, false);
    let acting = exchangelib_reads(
        &sim16,
        "SIM\\migrator",
        "Admin-pw-77",
        &alice,
        "NTLM",
        "impersonation",
    );
    assert_eq!(acting["folders"], seen["folders"]);
    assert_eq!(
        sim16.counters().anchor_mismatches,
        0,
        "exchangelib sends X-AnchorMailbox too"
    );

    // Exchange 2010 SP1 over Basic: exchangelib finds the schema by trying.
    let sim10 = sim(SimVersion::Exchange2010Sp1);
    let bob = sim10.add_user("bob", PW);
    sim10.populate(&bob, 10, 2, 22);
    let seen = exchangelib_reads(&sim10, "bob@sim.example", PW, &bob, "basic", "delegate");
    assert_eq!(seen["api_version"], "Exchange2010_SP1");
    agree(&sim10, basic("bob", PW), &bob, &seen).await;
}

/// Collects what the client logs, at every level, on this thread.
#[derive(Clone, Default)]
struct LogBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_password_reaches_a_log_line_or_an_error() {
    let sim = sim(SimVersion::Exchange2016);
    let ivy = sim.add_user("ivy", PW);
    sim.populate(&ivy, 3, 0, 31);
    sim.add_account("svc", "Svc-Secret-31", false, false);
    let buf = LogBuf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let ep = endpoint(&sim);
    let mut errors = Vec::new();
    for creds in [basic("ivy", PW), ntlm("ivy", PW)] {
        let mb = Mailbox::open(&ep, creds, None).await.unwrap();
        sim.throttle(None, Throttle::Busy { back_off_ms: 20 });
        let inbox = sim.folder_id(&ivy, "inbox");
        sync_all(&mb, &inbox, None, 512).await.unwrap();
    }
    for creds in [basic("ivy", "Wrong-Pw-31"), ntlm("ivy", "Wrong-Pw-31")] {
        errors.push(Mailbox::open(&ep, creds, None).await.err().unwrap());
    }
    let denied = Mailbox::open(&ep, ntlm("svc", "Svc-Secret-31"), Some(&ivy)).await;
    errors.push(denied.err().unwrap());
    drop(_guard);
    let log = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("throttled"), "the log was captured: {log}");
    let texts: Vec<String> = errors
        .iter()
        .flat_map(|e| [e.to_string(), format!("{e:?}")])
        .chain([log])
        .collect();
    for t in &texts {
        for secret in [PW, "Wrong-Pw-31", "Svc-Secret-31"] {
            assert!(!t.contains(secret), "{secret} in {t}");
        }
        // Nor the Basic header's encoding of it.
        use base64::Engine;
        let header = base64::engine::general_purpose::STANDARD.encode(format!("{ivy}:{PW}"));
        assert!(!t.contains(&header), "{t}");
    }
}

#[tokio::test]
async fn export_items_is_refused_before_exchange_2010_sp1_without_asking_the_server() {
    let sim = sim(SimVersion::Exchange2010);
    let jo = sim.add_user("jo", PW);
    sim.populate(&jo, 2, 2, 41);
    let ep = endpoint(&sim);
    let mb = Mailbox::open(&ep, ntlm("jo", PW), None).await.unwrap();
    assert_eq!(mb.version(), ApiVersion::Exchange2010);
    let cal = sim.folder_id(&jo, "calendar");
    let (changes, _) = sync_all(&mb, &cal, None, 512).await.unwrap();
    let ids = created_ids(&changes);
    assert!(!ids.is_empty());
    // Mail still reads: GetItem is in every version.
    assert_eq!(mb.get_items(&ids).await.unwrap().len(), ids.len());
    let err = mb.export_items(&ids).await.unwrap_err();
    assert!(
        matches!(
            err,
            EwsError::Unsupported {
                needs: ApiVersion::Exchange2010Sp1,
                server: ApiVersion::Exchange2010,
                ..
            }
        ),
        "{err}"
    );
    assert!(!sim.counters().operations.contains_key("ExportItems"));
}

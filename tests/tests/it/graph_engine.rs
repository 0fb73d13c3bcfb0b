//! The engine with Microsoft Graph as the destination: a real ferryd copies
//! from a real Dovecot into the Graph simulator. Every item is checked at
//! the simulator (folder, received time, read state, flag, categories, not
//! a draft, its origin); deltas bring new items and flag changes; the
//! budget holds the rate under a 429 storm and obeys `Retry-After`; a token
//! that expires mid-pass is renewed; a SIGKILL mid-pass loses and
//! duplicates nothing.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use ferry_connectors::{FolderName, MailSession};
use ferry_graph::messages::ORIGIN_PROPERTY;
use ferry_tests::Ferryd;
use ferry_tests::graph_sim::{GraphSim, SimConfig, SimLimits, SimMessage, assert_budget_kept};
use ferry_tests::mailcmp::{self, Contents};
use ferry_tests::pair::{PW, add_mail, login};
use ferry_tests::sample::{self, SampleSpec};
use ferry_testservers::{Dovecot, DovecotOptions, OAuth2Check};

pub(crate) const APP: &str = "4a1c2e3f-0000-4000-8000-00000000e001";
pub(crate) const SECRET: &str = "Zr5~engine.secret-never-in-logs_77";

struct Rig {
    src: Dovecot,
    sim: GraphSim,
    ferry: Ferryd,
}

pub(crate) fn dest(user: &str) -> String {
    format!("{user}@new.example")
}

/// Dovecot with `users`, the simulator with their mailboxes, ferryd (with
/// `config`) with endpoints `old` (IMAP) and `m365` (Graph), and batch
/// `wave` between them.
fn rig(users: &[&str], sim_cfg: SimConfig, config: &str) -> Rig {
    let src = Dovecot::start().unwrap();
    src.add_users(users, PW).unwrap();
    let sim = GraphSim::start(sim_cfg);
    sim.add_app_secret(APP, SECRET);
    for u in users {
        sim.add_user(&dest(u));
    }
    let ferry = Ferryd::start_with_config(config);
    ferry.add_imap_endpoint("old", src.port(), src.master_user());
    add_graph_endpoint(&ferry, &sim);
    ferry.create_batch("wave", "old", "m365", users, &[]);
    Rig { src, sim, ferry }
}

/// `endpoint add m365 --kind graph`, signed in to the simulator.
pub(crate) fn add_graph_endpoint(ferry: &Ferryd, sim: &GraphSim) {
    let mut args = vec!["endpoint", "add", "m365", "--kind", "graph"];
    let sign_in = sign_in_args(ferry, sim);
    args.extend(sign_in.iter().map(String::as_str));
    let graph_url = sim.graph_url();
    args.extend(["--graph-url", &graph_url]);
    ferry.ctl_ok(&args);
}

/// The application's sign-in options at the simulator (its CA trusted).
pub(crate) fn sign_in_args(ferry: &Ferryd, sim: &GraphSim) -> Vec<String> {
    let secret = ferry.file("app.secret", &format!("{SECRET}\n"));
    [
        "--tenant",
        &sim.tenant_domain(),
        "--client-id",
        APP,
        "--client-secret-file",
        secret.to_str().unwrap(),
        "--authority",
        sim.authority(),
        "--ca-file",
        sim.ca_path().to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

async fn contents(d: &Dovecot, user: &str) -> Contents {
    let mut s = login(d, user).await;
    let c = mailcmp::contents(&mut s).await;
    let _ = s.logout().await;
    c
}

/// Where a source folder lands in Exchange.
fn graph_path(src: &str) -> String {
    match src {
        "INBOX" => "Inbox".into(),
        "Sent" => "Sent Items".into(),
        p => p
            .strip_prefix("INBOX/")
            .map_or(p.to_string(), |rest| format!("Inbox/{rest}")),
    }
}

/// The source digest in a written message's origin stamp.
pub(crate) fn origin_digest(m: &SimMessage) -> String {
    let v = m
        .ext
        .iter()
        .find(|(id, _)| id.eq_ignore_ascii_case(ORIGIN_PROPERTY))
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("message {:?} carries no origin", m.subject));
    v.split(' ').next().unwrap().to_string()
}

/// Every source item is at the simulator exactly once, as received mail
/// in its folder with its received time, read state, flag and categories.
fn check_all(src: &Contents, msgs: &[SimMessage]) {
    let mut by_digest: HashMap<String, Vec<&SimMessage>> = HashMap::new();
    for m in msgs {
        by_digest.entry(origin_digest(m)).or_default().push(m);
    }
    let total: usize = src.values().map(Vec::len).sum();
    assert_eq!(msgs.len(), total, "as many items as the source holds");
    for (folder, items) in src {
        for it in items {
            let found = by_digest
                .get(&it.digest)
                .unwrap_or_else(|| panic!("an item of {folder} is missing"));
            let m = found
                .iter()
                .find(|m| m.folder_path == graph_path(folder))
                .unwrap_or_else(|| {
                    panic!(
                        "an item of {folder} is not in {}: {found:?}",
                        graph_path(folder)
                    )
                });
            assert!(!m.is_draft, "{:?} is a draft", m.subject);
            let want_read = it.flags.iter().any(|f| f == "\\seen");
            assert_eq!(m.is_read, want_read, "read state of {:?}", m.subject);
            let want_flag = it.flags.iter().any(|f| f == "\\flagged");
            assert_eq!(m.flag == "flagged", want_flag, "flag of {:?}", m.subject);
            let mut want_cats: Vec<String> = it
                .flags
                .iter()
                .filter(|f| !f.starts_with('\\') && !f.starts_with('$'))
                .cloned()
                .collect();
            want_cats.sort();
            let mut cats: Vec<String> = m.categories.iter().map(|c| c.to_lowercase()).collect();
            cats.sort();
            assert_eq!(cats, want_cats, "categories of {:?}", m.subject);
            let received = chrono::DateTime::parse_from_rfc3339(&m.received)
                .unwrap()
                .timestamp();
            assert_eq!(Some(received), it.date, "received time of {:?}", m.subject);
        }
    }
}

fn inbox() -> FolderName {
    FolderName {
        raw: "INBOX".into(),
        delimiter: Some('/'),
        segments: vec!["INBOX".into()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_to_graph_full_pass_then_delta() {
    let r = rig(&["anna"], SimConfig::default(), "");
    {
        let mut a = login(&r.src, "anna").await;
        let spec = SampleSpec {
            seed: 31,
            messages: 60,
            attachment_percent: 10,
            huge: 0,
        };
        sample::fill(&mut a, &spec).await.unwrap();
        // Over Graph's 4 MB request limit: its attachment goes through an
        // upload session.
        let big = sample::messages(&SampleSpec {
            seed: 99,
            messages: 1,
            attachment_percent: 100,
            huge: 1,
        })
        .next()
        .unwrap();
        assert!(big.body.len() > 4 * 1024 * 1024, "{}", big.body.len());
        a.append(
            &inbox(),
            &["\\Seen".into(), "Project-X".into()],
            Some(big.date),
            big.body,
        )
        .await
        .unwrap();
    }
    // The application signs in and reads the mailbox.
    let ok = r
        .ferry
        .ctl_ok(&["endpoint", "verify", "m365", "--as", &dest("anna")]);
    assert!(ok.contains("GRAPH") && ok.contains("FOLDERS="), "{ok}");

    r.ferry.run_pass("wave", "full");
    assert!(r.ferry.events_of("ItemFailed").is_empty());
    assert!(r.ferry.events_of("FolderFailed").is_empty());
    let src = contents(&r.src, "anna").await;
    let msgs = r.sim.messages(&dest("anna"));
    check_all(&src, &msgs);
    let uploads = r
        .sim
        .requests()
        .iter()
        .filter(|q| q.path.contains("createUploadSession"))
        .count();
    assert!(
        uploads >= 1,
        "the large attachment went by an upload session"
    );

    // A second full pass writes nothing again.
    let before = r.sim.messages(&dest("anna")).len();
    r.ferry.run_pass("wave", "full");
    assert_eq!(r.sim.messages(&dest("anna")).len(), before);

    // New items and flag changes at the source, then a delta pass.
    add_mail(&r.src, "anna", 32, 7).await;
    {
        let mut a = login(&r.src, "anna").await;
        a.select(&inbox()).await.unwrap();
        let metas = a.list_items(1, 5).await.unwrap();
        for m in &metas {
            let mut flags: Vec<String> = m
                .flags
                .iter()
                .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
                .cloned()
                .collect();
            if flags.iter().any(|f| f == "\\Seen") {
                flags.retain(|f| f != "\\Seen");
            } else {
                flags.push("\\Seen".into());
            }
            flags.push("Urgent".into());
            flags.push("\\Flagged".into());
            flags.dedup();
            a.store_flags(m.uid, &flags).await.unwrap();
        }
    }
    r.ferry.run_pass("wave", "delta");
    let src = contents(&r.src, "anna").await;
    check_all(&src, &r.sim.messages(&dest("anna")));
    assert!(!r.ferry.events_of("FlagsSynced").is_empty());

    // The runbooks check they run against the destination's tenant.
    let out = r.ferry.dir().join("runbooks");
    r.ferry.ctl_ok(&[
        "runbook",
        "wave",
        "-o",
        out.to_str().unwrap(),
        "--smart-host",
        "mx.old.example",
    ]);
    let setup = std::fs::read_to_string(out.join("batch-setup-wave.ps1")).unwrap();
    assert!(
        setup.contains(&format!("$tenant = '{}'", r.sim.tenant_domain())),
        "{setup}"
    );

    // The secret never reaches the log.
    let log = serde_json::to_string(&r.ferry.events()).unwrap();
    assert!(!log.contains(SECRET), "the client secret is in the log");
    assert!(log.contains("GraphEndpointSet"));
}

/// Requests of the simulator's log for `mailbox`, with their times.
fn arrivals(sim: &GraphSim, mailbox: &str) -> Vec<(Duration, u16)> {
    sim.requests()
        .into_iter()
        .filter(|q| q.mailbox == mailbox && !q.in_batch)
        .map(|q| (q.at, q.status))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_mid_pass_keeps_the_budget_and_obeys_retry_after() {
    // The budget ferryd keeps: 40 requests per 2 s; the service's own limit
    // has the slack of loopback jitter (ferryd counts a request when it
    // sends it). The strict check is the one on arrivals below.
    let config = "[graph]\nrequests = 40\nrequest_window_s = 2\n";
    let sim_cfg = SimConfig {
        latency: Duration::from_millis(10),
        limits: Some(SimLimits {
            concurrent: 4,
            requests: 48,
            window: Duration::from_secs(2),
            upload_bytes: 150 * 1024 * 1024,
            upload_window: Duration::from_secs(300),
        }),
        ..SimConfig::default()
    };
    let r = rig(&["anna"], sim_cfg, config);
    add_mail(&r.src, "anna", 41, 90).await;
    r.sim.clear_requests();
    r.ferry
        .ctl_ok(&["batch", "start", "wave", "--pass", "full"]);
    // The storm: once copying is under way, the service throttles three
    // requests with Retry-After: 1.
    r.ferry
        .wait_for(60, "copying", |f| !f.events_of("ItemCopied").is_empty());
    r.sim.throttle_next(3, 1);
    r.ferry
        .ctl_ok(&["batch", "wait", "wave", "--timeout", "300"]);

    let src = contents(&r.src, "anna").await;
    check_all(&src, &r.sim.messages(&dest("anna")));
    let log = arrivals(&r.sim, &dest("anna"));
    let throttled = assert_budget_kept(&log, 40, Duration::from_secs(2), Duration::from_secs(1));
    assert_eq!(throttled.len(), 3, "only the injected 429s");
    // The budget's state is shown, with the throttling it met.
    let status = r.ferry.ctl_ok(&["status"]);
    let line = status
        .lines()
        .find(|l| l.starts_with(&dest("anna")))
        .unwrap_or_else(|| panic!("no budget line: {status}"));
    assert!(line.contains("throttled by the destination: "), "{line}");
    assert!(line.contains("(3 answers)"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_expires_mid_pass_is_renewed() {
    let sim_cfg = SimConfig {
        latency: Duration::from_millis(5),
        ..SimConfig::default()
    };
    let r = rig(&["anna"], sim_cfg, "");
    add_mail(&r.src, "anna", 51, 80).await;
    r.ferry
        .ctl_ok(&["batch", "start", "wave", "--pass", "full"]);
    r.ferry
        .wait_for(60, "copying", |f| !f.events_of("ItemCopied").is_empty());
    let grants = r.sim.grants();
    r.sim.expire_tokens();
    r.ferry
        .ctl_ok(&["batch", "wait", "wave", "--timeout", "300"]);
    let show = r.ferry.ctl_json(&["batch", "show", "wave"]);
    assert_eq!(show["data"]["state"], "Synced", "{show}");
    assert!(r.sim.grants() > grants, "a new token was fetched");
    let src = contents(&r.src, "anna").await;
    check_all(&src, &r.sim.messages(&dest("anna")));
    assert!(r.ferry.events_of("ItemFailed").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_pass_loses_and_duplicates_nothing() {
    let sim_cfg = SimConfig {
        latency: Duration::from_millis(5),
        ..SimConfig::default()
    };
    let mut r = rig(&["anna", "bert"], sim_cfg, "");
    add_mail(&r.src, "anna", 61, 120).await;
    add_mail(&r.src, "bert", 62, 60).await;
    r.ferry
        .ctl_ok(&["batch", "start", "wave", "--pass", "full"]);
    let mut kills = 0;
    for wanted in [5usize, 40, 90] {
        r.ferry.wait_for(120, "copies", |f| {
            f.events_of("ItemCopied").len() >= wanted || f.events_of("PassFinished").len() == 1
        });
        if !r.ferry.events_of("PassFinished").is_empty() {
            break;
        }
        r.ferry.kill();
        kills += 1;
        r.ferry.launch();
    }
    assert!(kills >= 1, "the pass ended before any kill");
    r.ferry
        .ctl_ok(&["batch", "wait", "wave", "--timeout", "300"]);
    let intents = r.ferry.events_of("ItemCopyIntent").len();
    let copied = r.ferry.events_of("ItemCopied").len();
    assert!(intents >= copied, "{intents} intents, {copied} copies");
    for u in ["anna", "bert"] {
        let src = contents(&r.src, u).await;
        check_all(&src, &r.sim.messages(&dest(u)));
    }
    let per_key: BTreeMap<String, usize> =
        r.ferry
            .events_of("ItemCopied")
            .iter()
            .fold(BTreeMap::new(), |mut m, e| {
                let c = &e["event"]["ItemCopied"];
                *m.entry(format!("{} {}", c["mailbox"], c["key"]))
                    .or_default() += 1;
                m
            });
    assert!(
        per_key.values().all(|n| *n == 1),
        "an item recorded copied twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maildir_to_graph_full_pass() {
    let root = tempfile::tempdir().unwrap();
    let anna = root.path().join("anna@old.example");
    {
        let mut m = ferry_connectors::maildir::open(&anna, true).unwrap();
        let spec = SampleSpec {
            seed: 71,
            messages: 30,
            attachment_percent: 10,
            huge: 0,
        };
        sample::fill(&mut m, &spec).await.unwrap();
    }
    let sim = GraphSim::start(SimConfig::default());
    sim.add_app_secret(APP, SECRET);
    sim.add_user(&dest("anna"));
    let ferry = Ferryd::start();
    ferry.add_maildir_endpoint("old", root.path());
    add_graph_endpoint(&ferry, &sim);
    ferry.create_batch("wave", "old", "m365", &["anna"], &[]);
    ferry.run_pass("wave", "full");
    let src = {
        let mut m = ferry_connectors::maildir::open(&anna, false).unwrap();
        mailcmp::contents(&mut m).await
    };
    assert_eq!(src.values().map(Vec::len).sum::<usize>(), 30);
    check_all(&src, &sim.messages(&dest("anna")));
    // A delta pass with nothing new writes nothing.
    ferry.run_pass("wave", "delta");
    assert_eq!(sim.messages(&dest("anna")).len(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_client_secret_is_replaced_by_endpoint_update() {
    let r = rig(&["anna"], SimConfig::default(), "");
    add_mail(&r.src, "anna", 81, 20).await;
    r.ferry.run_pass("wave", "full");
    assert_eq!(r.sim.messages(&dest("anna")).len(), 20);

    // The tenant's administrator rotates the secret: the old one is refused.
    const ROTATED: &str = "Qp8~rotated.secret-never-in-logs_91";
    r.sim.add_app_secret(APP, ROTATED);
    r.sim.expire_tokens();
    add_mail(&r.src, "anna", 82, 5).await;
    r.ferry
        .ctl_ok(&["batch", "start", "wave", "--pass", "delta"]);
    let _ = r.ferry.ctl(&["batch", "wait", "wave", "--timeout", "300"]);
    let show = r.ferry.ctl_ok(&["mailbox", "show", "anna@old.example"]);
    assert!(show.contains("AADSTS7000215"), "{show}");
    assert_eq!(r.sim.messages(&dest("anna")).len(), 20);

    // Only the new secret is given; tenant, application and hosts stay.
    let rotated = r.ferry.file("rotated.secret", &format!("{ROTATED}\n"));
    r.ferry.ctl_ok(&[
        "endpoint",
        "update",
        "m365",
        "--client-secret-file",
        rotated.to_str().unwrap(),
    ]);
    r.ferry.run_pass("wave", "delta");
    let src = contents(&r.src, "anna").await;
    check_all(&src, &r.sim.messages(&dest("anna")));

    let sets = r.ferry.events_of("GraphEndpointSet");
    assert_eq!(sets.len(), 2, "{sets:?}");
    let (first, second) = (
        &sets[0]["event"]["GraphEndpointSet"]["sign_in"],
        &sets[1]["event"]["GraphEndpointSet"]["sign_in"],
    );
    assert_eq!(first["tenant"], second["tenant"]);
    assert_eq!(first["client_id"], second["client_id"]);
    assert_ne!(first["credential"], second["credential"], "a new reference");
    let log = serde_json::to_string(&r.ferry.events()).unwrap();
    for s in [SECRET, ROTATED] {
        assert!(!log.contains(s), "a client secret is in the log");
    }
    // The replaced secret is forgotten: no sealed file holds it any more.
    let old_ref = first["credential"]["Secret"].as_str().unwrap().to_string();
    let new_ref = second["credential"]["Secret"].as_str().unwrap().to_string();
    let secrets: Vec<String> = std::fs::read_dir(r.ferry.data_dir.join("secrets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        secrets.contains(&new_ref),
        "{new_ref} not stored: {secrets:?}"
    );
    assert!(
        !secrets.contains(&old_ref),
        "{old_ref} still stored: {secrets:?}"
    );

    // A sign-in given to an endpoint that takes none is refused.
    let err = r.ferry.ctl_err(&[
        "endpoint",
        "update",
        "old",
        "--client-secret-file",
        rotated.to_str().unwrap(),
    ]);
    assert!(err.contains("has no application sign-in"), "{err}");
}

/// Exchange Online's IMAP through the built-in sign-in: Dovecot, standing
/// in for it, accepts a bearer token only when the simulator's token
/// service vouches for it as issued for `outlook.office365.com`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_in_exchange_online_logs_in_with_the_applications_token() {
    let sim = GraphSim::start(SimConfig::default());
    sim.add_app_secret(APP, SECRET);
    let src = Dovecot::start().unwrap();
    let dst = Dovecot::start_with(DovecotOptions {
        oauth2: Some(OAuth2Check {
            introspection_url: format!(
                "{}/{}/oauth2/v2.0/introspect",
                sim.authority(),
                sim.tenant_id()
            ),
            ca_file: sim.ca_path().to_path_buf(),
            audience: "https://outlook.office365.com".into(),
        }),
        ..DovecotOptions::default()
    })
    .unwrap();
    src.add_user("anna", PW).unwrap();
    // The mailbox exists; ferryd presents a token, never this password.
    dst.add_user("anna", PW).unwrap();
    add_mail(&src, "anna", 91, 12).await;

    // A token the service does not know is refused by the server.
    let refused = xoauth2_login(dst.port(), "anna", "eyJ0eXAiOiJKV1QifQ.forged").await;
    assert!(refused.starts_with("a NO"), "{refused}");

    let ferry = Ferryd::start();
    ferry.add_imap_endpoint("old", src.port(), src.master_user());
    let port = dst.port().to_string();
    let mut args = vec![
        "endpoint",
        "add",
        "exo",
        "--kind",
        "imap",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--tls",
        "none",
    ];
    let sign_in = sign_in_args(&ferry, &sim);
    args.extend(sign_in.iter().map(String::as_str));
    ferry.ctl_ok(&args);
    ferry.create_batch("wave", "old", "exo", &["anna"], &[]);
    ferry.run_pass("wave", "full");
    assert_eq!(
        mailcmp::diff(&contents(&src, "anna").await, &contents(&dst, "anna").await),
        Vec::<String>::new()
    );
    assert!(sim.grants() >= 1);
    assert!(
        dst.log().contains("oauth2"),
        "the server checked the token with its oauth2 passdb"
    );
    let log = serde_json::to_string(&ferry.events()).unwrap();
    assert!(!log.contains(SECRET), "the client secret is in the log");
}

/// `AUTHENTICATE XOAUTH2` by hand; the tagged answer.
async fn xoauth2_login(port: u16, user: &str, token: &str) -> String {
    use base64::Engine;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (r, mut w) = s.into_split();
    let mut lines = BufReader::new(r).lines();
    lines.next_line().await.unwrap();
    let ir = base64::engine::general_purpose::STANDARD
        .encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"));
    w.write_all(format!("a AUTHENTICATE XOAUTH2 {ir}\r\n").as_bytes())
        .await
        .unwrap();
    loop {
        let l = lines.next_line().await.unwrap().unwrap();
        if l.starts_with("+ ") {
            // The error challenge: an empty answer ends the exchange.
            w.write_all(b"\r\n").await.unwrap();
        } else if l.starts_with("a ") {
            return l;
        }
    }
}

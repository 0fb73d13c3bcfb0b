//! The copy engine against two real Dovecot servers on 127.0.0.1, driven
//! through ferryctl: every pass kind, compared item by item.

use ferry_connectors::imap;
use ferry_connectors::{FolderName, MailSession};
use ferry_tests::Ferryd;
use ferry_tests::mailcmp;
use ferry_tests::pair::{self, PW, Pair, contents, count};
use ferry_tests::sample::{self, SampleSpec};
use ferry_testservers::Dovecot;

async fn login(d: &Dovecot, user: &str) -> imap::ImapSession {
    pair::login(d, user).await
}

fn setup(users: &[&str]) -> Pair {
    Pair::start("wave1", users, None)
}

fn setup_with(users: &[&str], config: Option<&str>) -> Pair {
    Pair::start("wave1", users, config)
}

fn run_pass(f: &Ferryd, pass: &str) {
    f.run_pass("wave1", pass);
}

fn events_of(f: &Ferryd, kind: &str) -> usize {
    f.events_of(kind).len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_then_delta_copies_everything_exactly_once() {
    let s = setup(&["anna", "bert"]);
    let spec = SampleSpec {
        seed: 7,
        messages: 120,
        attachment_percent: 5,
        huge: 0,
    };
    {
        let mut a = login(&s.src, "anna").await;
        sample::fill(&mut a, &spec).await.unwrap();
        // A multi-megabyte attachment.
        let big = sample::messages(&SampleSpec {
            seed: 99,
            messages: 1,
            attachment_percent: 100,
            huge: 1,
        })
        .next()
        .unwrap();
        a.append(
            &FolderName {
                raw: "INBOX".into(),
                delimiter: Some('/'),
                segments: vec!["INBOX".into()],
            },
            &["\\Seen".to_string(), "$Important".to_string()],
            Some(big.date),
            big.body,
        )
        .await
        .unwrap();
        let mut b = login(&s.src, "bert").await;
        sample::fill(
            &mut b,
            &SampleSpec {
                seed: 8,
                messages: 40,
                ..spec.clone()
            },
        )
        .await
        .unwrap();
    }
    // The admin can act for a user: verify proves it and lists capabilities.
    let ok = s
        .ferry
        .ctl_ok(&["endpoint", "verify", "old", "--as", "anna"]);
    assert!(ok.contains("IMAP4rev1") && ok.contains("UIDPLUS"), "{ok}");
    // A Dovecot master user cannot log in as itself: a failed, recorded check.
    let err = s.ferry.ctl_err(&["endpoint", "verify", "new"]);
    assert!(err.contains("failed verification"), "{err}");
    let eps = s.ferry.ctl_json(&["endpoint", "list"]);
    let verified = |name: &str| {
        eps["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap()["verified"][0]
            .clone()
    };
    assert_eq!(verified("old"), true, "{eps}");
    assert_eq!(verified("new"), false, "{eps}");

    let src_anna = contents(&s.src, "anna").await;
    assert_eq!(count(&src_anna), 121);
    assert!(src_anna.contains_key("Archive/2024/Février"));
    assert!(src_anna["Empty"].is_empty());

    // Verify copies nothing but counts.
    run_pass(&s.ferry, "verify");
    assert_eq!(count(&contents(&s.dst, "anna").await), 0);
    let mb = s.ferry.ctl_json(&["mailbox", "show", "anna@old.example"]);
    let inbox_items = mb["data"]["folders"]["INBOX"]["source_items"].as_u64();
    assert_eq!(inbox_items, Some(src_anna["INBOX"].len() as u64));

    run_pass(&s.ferry, "full");
    let dst_anna = contents(&s.dst, "anna").await;
    assert_eq!(mailcmp::diff(&src_anna, &dst_anna), Vec::<String>::new());
    assert_eq!(
        mailcmp::diff(
            &contents(&s.src, "bert").await,
            &contents(&s.dst, "bert").await
        ),
        Vec::<String>::new()
    );
    let show = s.ferry.ctl_json(&["batch", "show", "wave1"]);
    assert_eq!(show["data"]["state"], "Synced", "{show}");
    // Subscriptions came across too.
    let subs = |d: &Dovecot| {
        let d = d.port();
        async move {
            let mut s = ferry_tests::imap_login(d, "anna", PW).await;
            mailcmp::subscriptions(&mut s).await
        }
    };
    let (src_subs, dst_subs) = (subs(&s.src).await, subs(&s.dst).await);
    assert!(src_subs.len() >= 6, "{src_subs:?}");
    assert!(
        dst_subs.is_superset(&src_subs),
        "{src_subs:?} vs {dst_subs:?}"
    );
    let copied = events_of(&s.ferry, "ItemCopied");
    assert_eq!(copied, 161);

    // New mail and changed flags at the source; a delta carries both.
    {
        let mut a = login(&s.src, "anna").await;
        let inbox = FolderName {
            raw: "INBOX".into(),
            delimiter: Some('/'),
            segments: vec!["INBOX".into()],
        };
        for m in sample::messages(&SampleSpec {
            seed: 11,
            messages: 5,
            ..spec.clone()
        }) {
            a.append(&inbox, &m.flags, Some(m.date), m.body)
                .await
                .unwrap();
        }
        a.select(&inbox).await.unwrap();
        a.store_flags(1, &["\\Flagged".to_string(), "Project-Y".to_string()])
            .await
            .unwrap();
    }
    run_pass(&s.ferry, "delta");
    let src_anna = contents(&s.src, "anna").await;
    let dst_anna = contents(&s.dst, "anna").await;
    assert_eq!(mailcmp::diff(&src_anna, &dst_anna), Vec::<String>::new());
    assert_eq!(events_of(&s.ferry, "ItemCopied"), 166);
    assert!(events_of(&s.ferry, "FlagsSynced") >= 1);

    // A delta with nothing new copies nothing.
    run_pass(&s.ferry, "delta");
    assert_eq!(events_of(&s.ferry, "ItemCopied"), 166);
    assert_eq!(count(&contents(&s.dst, "anna").await), count(&src_anna));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xoauth2_tokens_come_from_a_command_and_never_reach_the_log() {
    let src = Dovecot::start().unwrap();
    let dst = Dovecot::start().unwrap();
    src.add_user("anna", PW).unwrap();
    dst.add_user("anna", PW).unwrap();
    {
        let mut a = login(&src, "anna").await;
        sample::fill(
            &mut a,
            &SampleSpec {
                seed: 21,
                messages: 15,
                ..SampleSpec::default()
            },
        )
        .await
        .unwrap();
    }
    // Dovecot without an oauth2 passdb checks the bearer token as the
    // password, which lets a real server accept our XOAUTH2 exchange.
    let tokens = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tokens.path(), format!("{PW}\n")).unwrap();
    let cmd = format!("cat {}", tokens.path().display());
    let ferry = Ferryd::start_with_config(&ferry_tests::token_command_config(&cmd));
    oauth_endpoints(&ferry, &src, &dst, "tok");
    ferry.create_batch("wave1", "old", "new", &["anna"], &[]);
    run_pass(&ferry, "full");
    assert_eq!(
        mailcmp::diff(&contents(&src, "anna").await, &contents(&dst, "anna").await),
        Vec::<String>::new()
    );
    let log = ferry.ctl_ok(&["--json", "events"]);
    assert!(
        log.contains("\"Command\":\"tok\""),
        "the source is recorded by name"
    );
    assert!(
        !log.contains("cat ") && !log.contains(PW),
        "not its command line nor the token"
    );

    // A failing token command fails the mailbox with the command's words.
    let failing = ferry_tests::token_command_config("echo no token for you >&2; exit 3");
    let ferry2 = Ferryd::start_with_config(&failing);
    oauth_endpoints(&ferry2, &src, &dst, "tok");
    let csv = ferry2.file(
        "b.csv",
        "SourceEmail,DestinationEmail\nanna@old.example,anna@new.example\n",
    );
    ferry2.ctl_ok(&[
        "batch",
        "create",
        "wave1",
        "--source",
        "old",
        "--destination",
        "new",
        "--csv",
        csv.to_str().unwrap(),
    ]);
    ferry2.ctl_ok(&["batch", "start", "wave1", "--pass", "full"]);
    let out = ferry2.ctl(&["batch", "wait", "wave1", "--timeout", "60"]);
    assert!(!out.status.success(), "the pass failed");
    let mb = ferry2.ctl_ok(&["mailbox", "show", "anna@old.example"]);
    assert!(mb.contains("Failed"), "{mb}");
    let shown = ferry2.ctl_json(&["mailbox", "show", "anna@old.example"]);
    let detail = shown["data"]["last_pass"]["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(detail.contains("no token for you"), "{detail}");
}

/// A byte budget far smaller than the mail in flight: four mailboxes of
/// large items share 1 MB, and every item still gets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tight_byte_budget_slows_workers_but_never_blocks_them() {
    let users = ["u1", "u2", "u3", "u4"];
    let s = setup_with(
        &users,
        Some("[engine]\nmax_bytes_in_flight = 1048576\ngroup_bytes = 262144\nfetch_batch = 8\n"),
    );
    for (i, u) in users.iter().enumerate() {
        let mut a = login(&s.src, u).await;
        sample::fill(
            &mut a,
            &SampleSpec {
                seed: 40 + i as u64,
                messages: 40,
                attachment_percent: 30,
                huge: 0,
            },
        )
        .await
        .unwrap();
    }
    s.ferry
        .ctl_ok(&["batch", "start", "wave1", "--pass", "full"]);
    s.ferry
        .ctl_ok(&["batch", "wait", "wave1", "--timeout", "120"]);
    for u in users {
        assert_eq!(
            mailcmp::diff(&contents(&s.src, u).await, &contents(&s.dst, u).await),
            Vec::<String>::new()
        );
    }
}

/// Endpoints `old` and `new` on `src` and `dst` that log users in with
/// XOAUTH2, tokens printed by the config file's command named `cmd`.
fn oauth_endpoints(ferry: &Ferryd, src: &Dovecot, dst: &Dovecot, cmd: &str) {
    for (name, d) in [("old", src), ("new", dst)] {
        ferry.ctl_ok(&[
            "endpoint",
            "add",
            name,
            "--kind",
            "imap",
            "--host",
            "127.0.0.1",
            "--port",
            &d.port().to_string(),
            "--tls",
            "none",
            "--oauth-token-command",
            cmd,
        ]);
    }
}

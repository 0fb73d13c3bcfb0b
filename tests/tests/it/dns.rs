//! MX check, switch and verification against a real BIND 9 on 127.0.0.1:
//! first the DNS library alone, then through ferryd and ferryctl.

use std::net::SocketAddr;
use std::time::Duration;

use ferry_dns::TsigKey;
use ferry_testservers::Bind;

fn addr(bind: &Bind) -> SocketAddr {
    bind.addr().parse().unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn library_checks_updates_and_polls_a_real_server() {
    let bind = Bind::start().expect("named starts");
    let ns = [addr(&bind)];
    rt().block_on(async {
        let mx = ferry_dns::lookup_mx("example.test", &ns).await.unwrap();
        assert_eq!(mx.records, vec![(10, "mx1.example.test".to_string())]);
        assert_eq!(mx.ttl, 7200);
        assert_eq!(mx.server, bind.addr());

        assert_eq!(
            ferry_dns::lookup_cname("autodiscover.example.test", &ns)
                .await
                .unwrap()
                .as_deref(),
            Some("autodiscover.outlook.com")
        );
        assert_eq!(
            ferry_dns::lookup_cname("autodiscover.manual.test", &ns)
                .await
                .unwrap(),
            None
        );
        let err = ferry_dns::lookup_mx("nothing.example.test", &ns)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no MX"), "{err}");

        // NS of the zone → ns1.example.test → 127.0.0.1, on the given port.
        let auth = ferry_dns::authoritative_servers("example.test", &ns, bind.port())
            .await
            .unwrap();
        assert_eq!(auth, vec![addr(&bind)]);

        // Sets `zone`'s MX to mx.new.test with the key in `key_file`.
        let update = |zone: &'static str, key_file: std::path::PathBuf| {
            let server = addr(&bind);
            async move {
                let key = TsigKey::from_file(&key_file).unwrap();
                ferry_dns::update_mx(server, zone, zone, "mx.new.test", 10, 3600, &key)
                    .await
                    .map_err(|e| e.to_string())
            }
        };
        // A wrong secret and an unknown key are refused by name; nothing changes.
        let err = update("example.test", bind.wrong_secret_key_file())
            .await
            .unwrap_err();
        assert!(err.contains("NOTAUTH") && err.contains("BADSIG"), "{err}");
        let err = update("example.test", bind.unknown_key_file())
            .await
            .unwrap_err();
        assert!(err.contains("NOTAUTH") && err.contains("BADKEY"), "{err}");
        // The right key on a zone that takes no updates: REFUSED.
        let err = update("manual.test", bind.key_file()).await.unwrap_err();
        assert!(err.contains("REFUSED"), "{err}");
        // No server behind the address: a failure, said in one line.
        let silent: SocketAddr = format!("127.0.0.1:{}", ferry_testservers::free_port().unwrap())
            .parse()
            .unwrap();
        let key = TsigKey::from_file(&bind.key_file()).unwrap();
        let err = ferry_dns::update_mx(
            silent,
            "example.test",
            "example.test",
            "mx.x.test",
            10,
            60,
            &key,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(&format!("update of example.test MX sent to {silent}")),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        assert_eq!(
            ferry_dns::query_mx_at(addr(&bind), "example.test")
                .await
                .unwrap(),
            vec![(10, "mx1.example.test".to_string())]
        );

        update("example.test", bind.key_file()).await.unwrap();
        let polled = ferry_dns::poll_mx(
            "example.test",
            "mx.new.test",
            &ns,
            Duration::from_secs(5),
            Duration::from_millis(200),
        )
        .await;
        assert_eq!(polled.len(), 1);
        assert!(polled[0].ok, "{polled:?}");
        assert_eq!(polled[0].detail, "10 mx.new.test");
        let mx = ferry_dns::lookup_mx("example.test", &ns).await.unwrap();
        assert_eq!(mx.records, vec![(10, "mx.new.test".to_string())]);
        assert_eq!(mx.ttl, 3600);

        // A host the servers do not answer: not ok once the time is up.
        let polled = ferry_dns::poll_mx(
            "example.test",
            "mx.other.test",
            &ns,
            Duration::from_millis(600),
            Duration::from_millis(200),
        )
        .await;
        assert!(!polled[0].ok);
        assert_eq!(polled[0].detail, "10 mx.new.test");
    });
}

/// A ferryd whose `[dns]` points at `bind`: `example.test` takes updates
/// signed with `key_file`; `manual.test` is only polled.
fn ferryd_for(bind: &Bind, key_file: &std::path::Path) -> ferry_tests::Ferryd {
    let a = bind.addr();
    ferry_tests::Ferryd::start_with_config(&format!(
        r#"
[dns]
nameservers = ["{a}"]
verify_timeout_s = 2
verify_interval_ms = 200

[[dns.zone]]
name = "example.test"
primary = "{a}"
key_file = "{}"
ttl = 3600
servers = ["{a}"]

[[dns.zone]]
name = "manual.test"
servers = ["{a}"]
"#,
        key_file.display()
    ))
}

fn domain_events(ferry: &ferry_tests::Ferryd, domain: &str) -> Vec<serde_json::Value> {
    ferry
        .ctl_ok(&["--json", "events", "--since", "1"])
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("one JSON event a line"))
        .filter(|e| e["stream"] == format!("domain/{domain}"))
        .collect()
}

fn types(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn mx_check_warns_and_names_the_endpoint() {
    let bind = Bind::start().expect("named starts");
    let ferry = ferryd_for(&bind, &bind.key_file());
    for (name, host) in [("old", "imap.example.test"), ("new", "imap.new.test")] {
        ferry.ctl_ok(&[
            "endpoint", "add", name, "--kind", "imap", "--host", host, "--tls", "none",
        ]);
    }
    let v = ferry.ctl_json(&["mx", "check", "Example.Test."]);
    let d = &v["data"];
    assert_eq!(d["domain"], "example.test");
    assert_eq!(d["ttl"], 7200);
    assert_eq!(d["hosts"][0]["host"], "mx1.example.test");
    assert_eq!(d["hosts"][0]["preference"], 10);
    assert_eq!(d["hosts"][0]["endpoint"], "old");
    assert!(d["warning"].as_str().unwrap().contains("7200"), "{d}");
    let table = ferry.ctl_ok(&["mx", "check", "manual.test"]);
    assert!(
        table.contains("mx.manual.test") && table.contains("unknown"),
        "{table}"
    );
    assert!(
        !table.contains("warning"),
        "TTL 300 needs no warning: {table}"
    );

    let ev = domain_events(&ferry, "example.test");
    assert_eq!(types(&ev), ["MxChecked"]);
    assert_eq!(types(&domain_events(&ferry, "manual.test")), ["MxChecked"]);
    assert_eq!(ev[0]["event"]["MxChecked"]["ttl"], 7200);
    assert_eq!(
        ev[0]["event"]["MxChecked"]["hosts"][0],
        "10 mx1.example.test"
    );

    // A domain with no MX, and a malformed one: one line, nothing recorded.
    let head = ferry.head();
    let err = ferry.ctl_err(&["mx", "check", "nothing.example.test"]);
    assert!(err.contains("no MX record"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let err = ferry.ctl_err(&["mx", "check", "bad..name"]);
    assert!(err.contains("not a domain name"), "{err}");
    assert_eq!(ferry.head(), head);
}

#[test]
fn mx_switch_updates_with_tsig_and_verifies() {
    let bind = Bind::start().expect("named starts");
    let ferry = ferryd_for(&bind, &bind.key_file());
    let v = ferry.ctl_json(&["mx", "switch", "example.test", "--to", "mx.new.test"]);
    let d = &v["data"];
    assert_eq!(d["verified"], true, "{d}");
    assert_eq!(d["manual"], false);
    assert!(d["applied"].as_str().unwrap().contains("RFC 2136"), "{d}");
    assert_eq!(d["servers"][0]["server"], bind.addr());
    assert_eq!(d["servers"][0]["detail"], "10 mx.new.test");

    // The server itself now answers the new MX, with the zone's TTL.
    let check = ferry.ctl_json(&["mx", "check", "example.test"]);
    assert_eq!(check["data"]["hosts"][0]["host"], "mx.new.test");
    assert_eq!(check["data"]["ttl"], 3600);
    assert!(check["data"]["warning"].is_null());

    let ev = domain_events(&ferry, "example.test");
    assert_eq!(types(&ev), ["MxSwitched", "MxVerified", "MxChecked"]);
    assert_eq!(ev[0]["event"]["MxSwitched"]["to"], "mx.new.test");
    assert_eq!(ev[0]["event"]["MxSwitched"]["manual"], false);
    assert_eq!(ev[1]["event"]["MxVerified"]["ok"], true);

    // The TSIG secret is nowhere in the log's export.
    let key = std::fs::read_to_string(bind.key_file()).unwrap();
    let secret = key.split('"').nth(3).expect("secret in the key file");
    let export = ferry.ctl_ok(&["audit", "export"]);
    assert!(export.contains("MxSwitched"));
    assert!(!export.contains(secret));
}

#[test]
fn refused_update_records_nothing() {
    let bind = Bind::start().expect("named starts");
    let ferry = ferryd_for(&bind, &bind.wrong_secret_key_file());
    let head = ferry.head();
    let err = ferry.ctl_err(&["mx", "switch", "example.test", "--to", "mx.evil.test"]);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("refused") && err.contains("NOTAUTH"), "{err}");
    assert!(err.contains("BADSIG"), "{err}");
    assert_eq!(ferry.head(), head, "a refused update records nothing");
    assert!(domain_events(&ferry, "example.test").is_empty());
    let check = ferry.ctl_json(&["mx", "check", "example.test"]);
    assert_eq!(check["data"]["hosts"][0]["host"], "mx1.example.test");

    // No zone that takes updates: refused unless --manual.
    let err = ferry.ctl_err(&["mx", "switch", "manual.test", "--to", "mx.new.test"]);
    assert!(err.contains("--manual"), "{err}");
    assert!(domain_events(&ferry, "manual.test").is_empty());
}

#[test]
fn manual_switch_is_recorded_and_verified() {
    let bind = Bind::start().expect("named starts");
    let ferry = ferryd_for(&bind, &bind.key_file());
    // The MX already points there (changed by hand): verified.
    let v = ferry.ctl_json(&[
        "mx",
        "switch",
        "manual.test",
        "--to",
        "mx.manual.test",
        "--manual",
    ]);
    assert_eq!(v["data"]["verified"], true, "{v}");
    assert_eq!(v["data"]["manual"], true);
    // Not changed yet: recorded, not verified, exit code 2 with the reason.
    let out = ferry.ctl(&[
        "mx",
        "switch",
        "manual.test",
        "--to",
        "mx.other.test",
        "--manual",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not every authoritative server"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("NOT verified") && stdout.contains("10 mx.manual.test"),
        "{stdout}"
    );

    let ev = domain_events(&ferry, "manual.test");
    assert_eq!(
        types(&ev),
        ["MxSwitched", "MxVerified", "MxSwitched", "MxVerified"]
    );
    assert_eq!(ev[0]["event"]["MxSwitched"]["manual"], true);
    assert_eq!(ev[1]["event"]["MxVerified"]["ok"], true);
    assert_eq!(ev[3]["event"]["MxVerified"]["ok"], false);
    assert!(
        ev[3]["event"]["MxVerified"]["detail"]
            .as_str()
            .unwrap()
            .contains("10 mx.manual.test")
    );
}

fn item<'a>(v: &'a serde_json::Value, domain: &str, name: &str) -> &'a serde_json::Value {
    v["data"]["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["domain"] == domain)
        .and_then(|d| {
            d["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["item"] == name)
        })
        .unwrap_or_else(|| panic!("no {name} for {domain} in {v}"))
}

#[test]
fn checklist_before_and_after_the_switch() {
    let bind = Bind::start().expect("named starts");
    let mut ferry = ferryd_for(&bind, &bind.key_file());
    for (name, host) in [("old", "imap.example.test"), ("new", "imap.new.test")] {
        ferry.ctl_ok(&[
            "endpoint", "add", name, "--kind", "imap", "--host", host, "--tls", "none",
        ]);
    }
    let csv = ferry.file(
        "users.csv",
        "SourceEmail,DestinationEmail\nann@example.test,ann@example.test\nbob@example.test,bob@example.test\n",
    );
    ferry.ctl_ok(&[
        "batch",
        "create",
        "b1",
        "--source",
        "old",
        "--destination",
        "new",
        "--csv",
        csv.to_str().unwrap(),
    ]);
    let head = ferry.head();
    let before = ferry.ctl_json(&["checklist", "b1"]);
    assert_eq!(ferry.head(), head, "the checklist records nothing");
    assert_eq!(before["data"]["all_done"], false);
    assert_eq!(before["data"]["domains"].as_array().unwrap().len(), 1);
    let ttl = item(&before, "example.test", "MX TTL at most 3600 s");
    assert_eq!(ttl["done"], false);
    assert!(ttl["detail"].as_str().unwrap().contains("7200"), "{ttl}");
    let users = item(&before, "example.test", "every user cut over");
    assert_eq!(users["done"], false);
    assert!(
        users["detail"].as_str().unwrap().starts_with("0 of 2"),
        "{users}"
    );
    let cname = item(&before, "example.test", "Autodiscover CNAME present");
    assert_eq!(cname["done"], true);
    assert!(
        cname["detail"]
            .as_str()
            .unwrap()
            .contains("autodiscover.outlook.com")
    );
    assert_eq!(item(&before, "example.test", "MX switched")["done"], false);

    ferry.ctl_ok(&["mx", "switch", "example.test", "--to", "mx.new.test"]);

    // Both users cut over: the facts the cutover command records.
    ferry.stop();
    {
        let rt = rt();
        let store = ferry_events::SegmentStore::open(&ferry.data_dir.join("log")).unwrap();
        for m in ["ann@example.test", "bob@example.test"] {
            rt.block_on(ferry_events::EventStore::append(
                &store,
                &ferry_events::stream::mailbox(m),
                ferry_events::ExpectedVersion::Any,
                ferry_events::Actor::Engine,
                vec![ferry_events::Event::UserCutOver {
                    mailbox: m.into(),
                    batch: "b1".into(),
                    forced: false,
                }],
            ))
            .unwrap();
        }
    }
    ferry.launch();

    let after = ferry.ctl_json(&["checklist", "b1"]);
    assert_eq!(
        item(&after, "example.test", "MX TTL at most 3600 s")["done"],
        true
    );
    assert_eq!(
        item(&after, "example.test", "every user cut over")["done"],
        true
    );
    let switched = item(&after, "example.test", "MX switched");
    assert_eq!(switched["done"], true);
    assert!(
        switched["detail"].as_str().unwrap().contains("mx.new.test")
            && switched["detail"].as_str().unwrap().contains("verified"),
        "{switched}"
    );
    let hold = item(&after, "example.test", "72 hours since the switch");
    assert_eq!(hold["done"], false);
    assert!(
        hold["detail"]
            .as_str()
            .unwrap()
            .contains("keep the batches"),
        "{hold}"
    );
    assert_eq!(after["data"]["all_done"], false);

    let table = ferry.ctl_ok(&["checklist", "b1"]);
    assert!(
        table.contains("not done") && table.contains("items remain"),
        "{table}"
    );
    let err = ferry.ctl_err(&["checklist", "nope"]);
    assert!(err.contains("no batch named"), "{err}");

    // Within 72 hours of the switch the batch is kept, unless forced.
    let head = ferry.head();
    let err = ferry.ctl_err(&["batch", "delete", "b1"]);
    assert!(
        err.contains("the MX of example.test moved to mx.new.test") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(ferry.head(), head, "a refused delete records nothing");
    let out = ferry.ctl_ok(&["batch", "delete", "b1", "--force"]);
    assert!(out.contains("forced within 72 h"), "{out}");
    let deleted: Vec<_> = ferry
        .events_of("BatchDeleted")
        .into_iter()
        .map(|e| e["event"]["BatchDeleted"]["forced"].clone())
        .collect();
    assert_eq!(deleted, [serde_json::json!(true)]);
}

#[test]
fn unreadable_key_file_is_one_line_and_records_nothing() {
    let bind = Bind::start().expect("named starts");
    let missing = std::env::temp_dir().join("ferry-no-such-key-file.key");
    let ferry = ferryd_for(&bind, &missing);
    let head = ferry.head();
    let err = ferry.ctl_err(&["mx", "switch", "example.test", "--to", "mx.new.test"]);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("reading TSIG key") && err.contains("nothing was recorded"),
        "{err}"
    );
    assert_eq!(ferry.head(), head);
}

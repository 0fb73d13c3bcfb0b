//! ferryd and ferryctl as real processes: the operator contract end to end,
//! over the Unix socket only.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use ferry_tests::{Ferryd, signal, wait_timeout};
use serde_json::{Value, json};

/// Every secret the fixture hands to ferryd; none may show up anywhere readable.
const ADMIN_PW: &str = "Adm1n-Pw-q7Zx";
const IMAP_PW: &str = "Imap-Pw-4711-kR";
const STAGED_PW: &str = "Staged-Pw-0815-mT";
const BULK_SRC_PW: &str = "BulkSrc-Pw-93aQ";
const BULK_DST_PW: &str = "BulkDst-Pw-58wE";
const PASSWORDS: [&str; 5] = [ADMIN_PW, IMAP_PW, STAGED_PW, BULK_SRC_PW, BULK_DST_PW];

/// Passes are requested for then, so they stay pending and no engine
/// activity races the comparisons.
const LATER: &str = "2099-01-01T00:00:00Z";

const IMAP_CSV: &str = "EmailAddress,UserName,Password\n\
                        Anna@New.example,anna.old,Imap-Pw-4711-kR\n\
                        ben@new.example,ben.old,Imap-Pw-4711-kR\n";
const STAGED_CSV: &str = "EmailAddress,Password,ForceChangePassword\n\
                          cleo@corp.example,Staged-Pw-0815-mT,False\n";
const BULK_CSV: &str = "\u{feff}SourceEmail,DestinationEmail,SourceLogin,SourcePassword,\
                        DestinationLogin,DestinationPassword\n\
                        dora@old.example,Dora@new.example,dora,BulkSrc-Pw-93aQ,dora.new,BulkDst-Pw-58wE\n";

/// Two endpoints (IMAP with an admin password, Maildir) and one batch per CSV layout.
fn fixture(d: &Ferryd) {
    let maildir = d.dir().join("maildir");
    std::fs::create_dir_all(&maildir).unwrap();
    let pw = d.file("admin.pw", &format!("{ADMIN_PW}\n"));
    d.ctl_ok(&[
        "endpoint",
        "add",
        "src",
        "--kind",
        "imap",
        "--host",
        "127.0.0.1",
        "--port",
        "10143",
        "--tls",
        "none",
        "--admin-user",
        "master",
        "--password-file",
        pw.to_str().unwrap(),
    ]);
    d.ctl_ok(&[
        "endpoint",
        "add",
        "dst",
        "--kind",
        "maildir",
        "--host",
        maildir.to_str().unwrap(),
    ]);
    for (name, csv) in [
        ("b-imap", IMAP_CSV),
        ("b-staged", STAGED_CSV),
        ("b-bulk", BULK_CSV),
    ] {
        let f = d.file(&format!("{name}.csv"), csv);
        let out = d.ctl_ok(&[
            "batch",
            "create",
            name,
            "--source",
            "src",
            "--destination",
            "dst",
            "--csv",
            f.to_str().unwrap(),
        ]);
        assert!(out.contains(&format!("batch {name}: created")), "{out}");
    }
}

/// Everything an operator can see, table and JSON, except what changes by
/// itself (pid, uptime).
fn visible_state(d: &Ferryd) -> Value {
    let status = d.ctl_json(&["status"]);
    let s = &status["data"];
    let batches = d.ctl_json(&["batch", "list"]);
    let mut shows = Vec::new();
    let mut mailboxes = Vec::new();
    for b in batches["data"].as_array().unwrap() {
        let name = b["name"].as_str().unwrap();
        shows.push(json!([
            d.ctl_json(&["batch", "show", name]),
            d.ctl_ok(&["batch", "show", name])
        ]));
        for m in b["mailboxes"].as_array().unwrap() {
            let m = m.as_str().unwrap();
            mailboxes.push(json!([
                d.ctl_json(&["mailbox", "show", m]),
                d.ctl_ok(&["mailbox", "show", m])
            ]));
        }
    }
    json!({
        "status": [s["head"], s["endpoints"], s["batches"], s["mailboxes"]],
        "endpoints": [d.ctl_json(&["endpoint", "list"]), d.ctl_ok(&["endpoint", "list"])],
        "batches": [batches, d.ctl_ok(&["batch", "list"])],
        "shows": shows,
        "mailboxes": mailboxes,
        "events": d.ctl_ok(&["--json", "events"]),
    })
}

/// `events --json` parsed, one value per line.
fn events_json(d: &Ferryd, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["--json", "events"];
    args.extend_from_slice(extra);
    d.ctl_ok(&args)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect()
}

/// A failure message is exactly one non-empty line.
fn assert_one_line(err: &str) {
    let t = err.trim_end();
    assert!(!t.is_empty() && !t.contains('\n'), "not one line: {err:?}");
}

/// Runs a command that must fail with one line containing every `needles`
/// and leave the log as it was.
fn refused(d: &Ferryd, args: &[&str], needles: &[&str]) -> String {
    let head = d.head();
    let err = d.ctl_err(args);
    assert_one_line(&err);
    for n in needles {
        assert!(err.contains(n), "{args:?}: {err:?} should mention {n:?}");
    }
    assert_eq!(d.head(), head, "{args:?} recorded something");
    err
}

#[test]
fn endpoints_batches_and_the_three_csv_layouts_show_in_table_and_json() {
    let d = Ferryd::start();
    fixture(&d);

    let eps = d.ctl_json(&["endpoint", "list"]);
    let eps = eps["data"].as_array().unwrap();
    assert_eq!(eps.len(), 2);
    let src = eps.iter().find(|e| e["name"] == "src").unwrap();
    assert_eq!(src["spec"]["kind"], "Imap");
    assert_eq!(src["spec"]["host"], "127.0.0.1");
    assert_eq!(src["spec"]["port"], 10143);
    assert_eq!(src["spec"]["admin_user"], "master");
    // The password went to the secret store; the view holds only a reference.
    assert!(src["spec"]["admin_secret"].is_string(), "{src}");
    let table = d.ctl_ok(&["endpoint", "list"]);
    let maildir = d.dir().join("maildir");
    for want in [
        "src",
        "Imap",
        "127.0.0.1",
        "10143",
        "master",
        "dst",
        "Maildir",
    ] {
        assert!(table.contains(want), "endpoint list lacks {want}: {table}");
    }
    assert!(table.contains(maildir.to_str().unwrap()), "{table}");

    let list = d.ctl_json(&["batch", "list"]);
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["b-bulk", "b-imap", "b-staged"]);
    let table = d.ctl_ok(&["batch", "list"]);
    for want in ["b-bulk", "b-imap", "b-staged", "Created", "src", "dst"] {
        assert!(table.contains(want), "batch list lacks {want}: {table}");
    }

    // IMAP layout: destination address (case kept), source login and password.
    let b = d.ctl_json(&["batch", "show", "b-imap"]);
    assert_eq!(b["kind"], "batch");
    assert_eq!(b["data"]["source"], "src");
    assert_eq!(b["data"]["destination"], "dst");
    assert_eq!(
        b["data"]["mailboxes"],
        json!(["anna@new.example", "ben@new.example"])
    );
    let show = d.ctl_ok(&["batch", "show", "b-imap"]);
    assert!(show.contains("batch b-imap: Created (src → dst)"), "{show}");
    let version = b["data"]["version"].as_u64().unwrap();
    assert!(show.contains(&format!("version {version}")), "{show}");

    let m = d.ctl_json(&["mailbox", "show", "Anna@New.example"]);
    let spec = &m["data"]["spec"];
    assert_eq!(m["data"]["batch"], "b-imap");
    assert_eq!(spec["address"], "anna@new.example");
    assert_eq!(spec["destination_address"], "Anna@New.example");
    assert_eq!(spec["source_login"], "anna.old");
    assert!(spec["source_secret"].is_string(), "{spec}");
    assert!(spec["destination_secret"].is_null(), "{spec}");
    let table = d.ctl_ok(&["mailbox", "show", "anna@new.example"]);
    assert!(
        table.contains("mailbox anna@new.example → Anna@New.example (batch b-imap)"),
        "{table}"
    );

    // Staged layout: the password is the destination's.
    let m = d.ctl_json(&["mailbox", "show", "cleo@corp.example"]);
    let spec = &m["data"]["spec"];
    assert_eq!(m["data"]["batch"], "b-staged");
    assert!(spec["source_login"].is_null(), "{spec}");
    assert!(spec["source_secret"].is_null(), "{spec}");
    assert!(spec["destination_secret"].is_string(), "{spec}");

    // Bulk layout (with a BOM): all four optional columns.
    let m = d.ctl_json(&["mailbox", "show", "dora@old.example"]);
    let spec = &m["data"]["spec"];
    assert_eq!(m["data"]["batch"], "b-bulk");
    assert_eq!(spec["destination_address"], "Dora@new.example");
    assert_eq!(spec["source_login"], "dora");
    assert_eq!(spec["destination_login"], "dora.new");
    assert!(spec["source_secret"].is_string(), "{spec}");
    assert!(spec["destination_secret"].is_string(), "{spec}");

    let st = d.ctl_json(&["status"]);
    assert_eq!(
        (
            &st["data"]["endpoints"],
            &st["data"]["batches"],
            &st["data"]["mailboxes"]
        ),
        (&json!(2), &json!(3), &json!(4))
    );
    assert_eq!(st["data"]["pid"], d.pid());
}

#[test]
fn state_survives_sigterm_and_sigkill() {
    let mut d = Ferryd::start();
    fixture(&d);
    let before = visible_state(&d);

    let status = d.stop();
    assert_eq!(status.code(), Some(0), "SIGTERM exit: {status}");
    assert!(!d.socket.exists(), "a clean stop removes its socket");
    d.launch();
    assert_eq!(visible_state(&d), before, "state after SIGTERM + start");

    // Events after the shutdown snapshot: only the log has them.
    let more = d.file(
        "more.csv",
        "SourceEmail,DestinationEmail\nerik@old.example,erik@new.example\n",
    );
    d.ctl_ok(&[
        "batch",
        "add-users",
        "b-bulk",
        "--csv",
        more.to_str().unwrap(),
    ]);
    d.ctl_ok(&["batch", "start", "b-imap", "--pass", "full", "--at", LATER]);
    let before = visible_state(&d);
    assert_eq!(
        before["status"][0],
        json!(11),
        "the extra commands were recorded"
    );

    d.kill();
    // SIGKILL leaves the socket file behind; the next start must clear it.
    let meta = std::fs::symlink_metadata(&d.socket).expect("stale socket left by SIGKILL");
    assert!(meta.file_type().is_socket());
    d.launch();
    assert_eq!(visible_state(&d), before, "state after SIGKILL + start");
    let b = d.ctl_json(&["batch", "show", "b-bulk"]);
    assert_eq!(
        b["data"]["mailboxes"],
        json!(["dora@old.example", "erik@old.example"])
    );
    let b = d.ctl_json(&["batch", "show", "b-imap"]);
    assert_eq!(b["data"]["pending"].as_array().unwrap().len(), 1, "{b}");
}

#[test]
fn stale_expected_version_is_refused_and_the_current_one_works() {
    let d = Ferryd::start();
    fixture(&d);
    let old = d.ctl_json(&["batch", "show", "b-staged"])["data"]["version"]
        .as_u64()
        .unwrap();
    let more = d.file(
        "more.csv",
        "EmailAddress,Password,ForceChangePassword\nfred@corp.example,,False\n",
    );
    d.ctl_ok(&[
        "batch",
        "add-users",
        "b-staged",
        "--csv",
        more.to_str().unwrap(),
        "--expect-version",
        &old.to_string(),
    ]);
    let current = d.ctl_json(&["batch", "show", "b-staged"])["data"]["version"]
        .as_u64()
        .unwrap();
    assert!(current > old);

    let stale = old.to_string();
    let err = refused(
        &d,
        &[
            "batch",
            "start",
            "b-staged",
            "--pass",
            "full",
            "--at",
            LATER,
            "--expect-version",
            &stale,
        ],
        &["version"],
    );
    assert!(err.contains(&format!("version {current}")), "{err}");
    assert!(
        d.ctl_json(&["batch", "show", "b-staged"])["data"]["pending"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let out = d.ctl_ok(&[
        "batch",
        "start",
        "b-staged",
        "--pass",
        "full",
        "--at",
        LATER,
        "--expect-version",
        &current.to_string(),
    ]);
    assert!(out.contains("full pass requested (scheduled)"), "{out}");
    let b = d.ctl_json(&["batch", "show", "b-staged"]);
    let pending = b["data"]["pending"].as_array().unwrap();
    assert_eq!(pending.len(), 1, "{b}");
    assert_eq!(b["data"]["version"].as_u64().unwrap(), current + 1);
}

#[test]
fn duplicates_unknown_endpoints_and_taken_mailboxes_are_refused() {
    let d = Ferryd::start();
    fixture(&d);
    let maildir = d.dir().join("maildir");
    let err = refused(
        &d,
        &[
            "endpoint",
            "add",
            "dst",
            "--kind",
            "maildir",
            "--host",
            maildir.to_str().unwrap(),
        ],
        &["dst", "already exists"],
    );
    // The reason once, not "reason: reason".
    assert_eq!(err.matches("already exists").count(), 1, "{err}");
    let csv = d.file(
        "new.csv",
        "SourceEmail,DestinationEmail\nzed@old.example,zed@new.example\n",
    );
    let csv = csv.to_str().unwrap();
    refused(
        &d,
        &[
            "batch",
            "create",
            "b-new",
            "--source",
            "nosuch",
            "--destination",
            "dst",
            "--csv",
            csv,
        ],
        &["nosuch"],
    );
    refused(
        &d,
        &[
            "batch",
            "create",
            "b-new",
            "--source",
            "src",
            "--destination",
            "nowhere",
            "--csv",
            csv,
        ],
        &["nowhere"],
    );
    // cleo is in b-staged already (listed second, so the line counts too).
    let taken = d.file(
        "taken.csv",
        "EmailAddress,Password,ForceChangePassword\nzed@corp.example,,False\nCleo@corp.example,,False\n",
    );
    refused(
        &d,
        &[
            "batch",
            "create",
            "b-new",
            "--source",
            "src",
            "--destination",
            "dst",
            "--csv",
            taken.to_str().unwrap(),
        ],
        &["cleo@corp.example", "b-staged", "line 3"],
    );
    refused(
        &d,
        &[
            "batch",
            "add-users",
            "b-bulk",
            "--csv",
            taken.to_str().unwrap(),
        ],
        &["b-staged"],
    );
    assert!(!d.ctl(&["batch", "show", "b-new"]).status.success());
}

#[test]
fn malformed_csvs_are_refused_with_their_line() {
    let d = Ferryd::start();
    fixture(&d);
    let mut big = String::from("SourceEmail,DestinationEmail\n");
    for i in 0..2001 {
        big.push_str(&format!("u{i}@old.example,u{i}@new.example\n"));
    }
    let cases: [(&str, String, &[&str]); 6] = [
        ("empty", String::new(), &["line 1", "empty"]),
        (
            "semicolons",
            "EmailAddress;UserName;Password\nx@a.example;x;p\n".into(),
            &["line 1", "comma"],
        ),
        (
            "no-header",
            "x@a.example,x,p\ny@a.example,y,p\n".into(),
            &["line 1", "header"],
        ),
        (
            "columns",
            "EmailAddress,UserName,Password\nx@a.example,x,p\ny@a.example,y\n".into(),
            &["line 3", "2 columns"],
        ),
        ("too-many", big, &["line 2002", "2000"]),
        ("bom-only", "\u{feff}".into(), &["line 1", "empty"]),
    ];
    for (name, text, needles) in cases {
        let f = d.file(&format!("{name}.csv"), &text);
        refused(
            &d,
            &[
                "batch",
                "create",
                name,
                "--source",
                "src",
                "--destination",
                "dst",
                "--csv",
                f.to_str().unwrap(),
            ],
            needles,
        );
    }
    // 2,000 rows is the limit, not past it.
    let ok: String = {
        let mut s = String::from("SourceEmail,DestinationEmail\n");
        for i in 0..2000 {
            s.push_str(&format!("u{i}@old.example,u{i}@new.example\n"));
        }
        s
    };
    let f = d.file("exactly.csv", &ok);
    d.ctl_ok(&[
        "batch",
        "create",
        "b-2000",
        "--source",
        "src",
        "--destination",
        "dst",
        "--csv",
        f.to_str().unwrap(),
    ]);
    let b = d.ctl_json(&["batch", "show", "b-2000"]);
    assert_eq!(b["data"]["mailboxes"].as_array().unwrap().len(), 2000);
}

/// The status code of a raw HTTP answer, if it is one.
fn http_status(answer: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(answer);
    let rest = text.strip_prefix("HTTP/1.1 ")?;
    rest.get(..3)?.parse().ok()
}

#[test]
fn a_strangers_malformed_requests_get_4xx_and_change_nothing() {
    let d = Ferryd::start();
    fixture(&d);
    let head = d.head();

    // (a) Not HTTP at all: a 4xx or a closed connection, nothing else.
    let a = d.raw_exchange(b"\x00\x01\x02garbage that is not HTTP\r\n\r\n\xff\xfe");
    match http_status(&a) {
        None => assert!(a.is_empty(), "{:?}", String::from_utf8_lossy(&a)),
        Some(s) => assert!((400..500).contains(&s), "garbage got {s}"),
    }

    let post = |body: &[u8]| {
        let mut req = format!(
            "POST /v1 HTTP/1.1\r\nHost: ferryd\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        d.raw_exchange(&req)
    };
    // (b) Not JSON; (c) an op that does not exist; (d) over the size cap.
    let b = post(b"endpoint add x --kind imap");
    let c = post(br#"{"op":"format_disk","really":true}"#);
    let big = vec![b' '; ferry_api::wire::MAX_REQUEST_BYTES + 1];
    let dd = post(&big);
    // (e) A GET.
    let e = d.raw_exchange(b"GET /v1 HTTP/1.1\r\nHost: ferryd\r\nConnection: close\r\n\r\n");
    for (what, answer, needle) in [
        ("non-JSON body", &b, "bad_request"),
        ("unknown op", &c, "format_disk"),
        ("oversized body", &dd, "larger than"),
        ("GET", &e, "only POST"),
    ] {
        let text = String::from_utf8_lossy(answer);
        let status = http_status(answer).unwrap_or_else(|| panic!("{what}: no HTTP answer"));
        assert!((400..500).contains(&status), "{what} got {status}: {text}");
        assert!(text.contains(needle), "{what}: {text}");
    }

    // A well-formed request on the same path still works, and nothing was recorded.
    let ok = post(br#"{"op":"status"}"#);
    assert_eq!(http_status(&ok), Some(200));
    d.ctl_ok(&["status"]);
    assert_eq!(d.head(), head);
}

#[test]
fn the_socket_is_private_and_single_owner() {
    let d = Ferryd::start();
    let meta = std::fs::metadata(&d.socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // Same data dir and socket: the socket check must speak first.
    let second = d.command().spawn().expect("spawn a second ferryd");
    let out = {
        let mut second = second;
        let status = wait_timeout(&mut second, Duration::from_secs(20))
            .expect("a second ferryd exits by itself");
        let mut err = String::new();
        use std::io::Read;
        second
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status, err)
    };
    assert!(!out.0.success(), "a second ferryd must not start");
    assert!(
        out.1.contains("another ferryd is already answering")
            && out.1.contains(d.socket.to_str().unwrap()),
        "{}",
        out.1
    );
    assert_one_line(out.1.lines().last().unwrap_or(""));
    // The first keeps its socket and answers.
    let st = d.ctl_json(&["status"]);
    assert_eq!(st["data"]["pid"], d.pid());
}

#[test]
fn no_secret_reaches_events_exports_or_the_log_files() {
    let mut d = Ferryd::start();
    fixture(&d);
    // A stop writes the views snapshot too, which must be as clean as the log.
    assert!(d.stop().success());
    d.launch();

    let mut texts = vec![
        ("events", d.ctl_ok(&["events"])),
        ("events --json", d.ctl_ok(&["--json", "events"])),
        ("export jsonl", d.ctl_ok(&["audit", "export"])),
        (
            "export csv",
            d.ctl_ok(&["audit", "export", "--format", "csv"]),
        ),
    ];
    for cmd in [
        vec!["endpoint", "list"],
        vec!["batch", "list"],
        vec!["mailbox", "show", "dora@old.example"],
    ] {
        texts.push(("a view", d.ctl_ok(&cmd)));
        let mut j = vec!["--json"];
        j.extend(cmd);
        texts.push(("a JSON view", d.ctl_ok(&j)));
    }
    // The events do refer to stored secrets: the passwords were sent.
    assert!(
        texts[1].1.contains("\"admin_secret\":\"sec-"),
        "{}",
        texts[1].1
    );
    for (what, text) in &texts {
        for pw in PASSWORDS {
            assert!(!text.contains(pw), "{what} leaks {pw}");
        }
    }

    let mut files = Vec::new();
    walk(&d.data_dir.join("log"), &mut files);
    files.push(d.data_dir.join("views.snapshot"));
    assert!(files.len() > 1, "the log has files: {files:?}");
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for pw in PASSWORDS {
            assert!(
                !contains(&bytes, pw.as_bytes()),
                "{} holds {pw}",
                f.display()
            );
        }
    }
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn audit_exports_verify_and_tampering_names_the_line() {
    let d = Ferryd::start();
    fixture(&d);
    let dir = d.dir();
    for (format, ext) in [("jsonl", "jsonl"), ("csv", "csv")] {
        let path = dir.join(format!("audit.{ext}"));
        d.ctl_ok(&[
            "audit",
            "export",
            "--format",
            format,
            "-o",
            path.to_str().unwrap(),
        ]);
        let ok = d.ctl_ok(&["audit", "verify", path.to_str().unwrap()]);
        assert!(ok.starts_with("ok: 9 records"), "{format}: {ok}");
        let v = d.ctl_json(&["audit", "verify", path.to_str().unwrap()]);
        assert_eq!((&v["ok"], &v["count"]), (&json!(true), &json!(9)));

        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // Records sit on file lines 1..=8 (jsonl) or 2..=9 (csv, after its header).
        let first = if format == "csv" { 1 } else { 0 };
        let tampered = |name: &str, lines: Vec<String>, needles: &[String]| {
            let f = dir.join(format!("{name}.{ext}"));
            std::fs::write(&f, lines.join("\n") + "\n").unwrap();
            let out = d.ctl(&["audit", "verify", f.to_str().unwrap()]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{format} {name} passed verify");
            assert_one_line(&err);
            for n in needles {
                assert!(err.contains(n.as_str()), "{format} {name}: {err}");
            }
        };
        let owned = || lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();

        // One character of a readable field: the stream name of record 3.
        let mut edited = owned();
        let i = first + 2;
        let at = edited[i]
            .find("endpoint/")
            .or_else(|| edited[i].find("batch/"));
        let at = at.expect("a stream name to edit");
        edited[i].replace_range(at..at + 1, "X");
        tampered(
            "edited",
            edited,
            &[format!("line {}", i + 1), "edited".into()],
        );

        let mut deleted = owned();
        deleted.remove(first + 3);
        tampered("deleted", deleted, &[format!("line {}", first + 4)]);

        let mut swapped = owned();
        swapped.swap(first + 4, first + 5);
        tampered("swapped", swapped, &[format!("line {}", first + 5)]);

        // Cut in the middle of a record, and cut at a line end (closing line gone).
        let mut cut = owned();
        cut.truncate(first + 6);
        let half = cut[first + 5].len() / 2;
        cut[first + 5].truncate(half);
        tampered("cut-mid-line", cut, &[format!("line {}", first + 6)]);
        let mut cut = owned();
        cut.pop();
        tampered(
            "cut-closing-line",
            cut,
            &["truncated".into(), format!("line {}", lines.len())],
        );
    }
}

#[test]
fn schedule_complete_and_cutover_refuse_bad_input_and_record_nothing() {
    let d = Ferryd::start();
    fixture(&d);
    refused(
        &d,
        &["batch", "schedule", "b-imap", "--delta", "0 2 * *"],
        &["4 fields", "give 5"],
    );
    refused(
        &d,
        &["batch", "schedule", "b-imap", "--delta", "0 25 * * *"],
        &["0 25 * * *"],
    );
    refused(
        &d,
        &[
            "batch",
            "schedule",
            "b-imap",
            "--delta",
            "0 2 * * *",
            "--tz",
            "Mars/Olympus",
        ],
        &["unknown time zone", "Mars/Olympus"],
    );
    refused(
        &d,
        &["batch", "schedule", "b-imap", "--delta", "off"],
        &["has no delta schedule"],
    );
    refused(
        &d,
        &["batch", "schedule", "nope", "--delta", "0 2 * * *"],
        &["nope"],
    );
    refused(
        &d,
        &["batch", "complete", "b-imap"],
        &["batch b-imap is Created", "run a full pass first"],
    );
    refused(
        &d,
        &["batch", "complete", "b-imap", "--at", "tomorrow-ish"],
        &["--at", "tomorrow-ish"],
    );
    refused(
        &d,
        &["cutover", "anna@new.example"],
        &["anna@new.example was never copied", "--force"],
    );
    refused(
        &d,
        &["cutover", "nobody@new.example"],
        &["nobody@new.example"],
    );

    // A good schedule is recorded and shown, with its next fire.
    let out = d.ctl_ok(&[
        "batch",
        "schedule",
        "b-imap",
        "--delta",
        "30 2 * * *",
        "--tz",
        "Europe/Paris",
    ]);
    assert!(out.contains("next at"), "{out}");
    let b = d.ctl_json(&["batch", "show", "b-imap"]);
    assert_eq!(b["data"]["schedule"]["cron"], "30 2 * * *");
    assert_eq!(b["data"]["schedule"]["tz"], "Europe/Paris");
    assert!(b["data"]["next_fire_us"].as_i64().is_some(), "{b}");
    d.ctl_ok(&["batch", "schedule", "b-imap", "--delta", "off"]);
    let b = d.ctl_json(&["batch", "show", "b-imap"]);
    assert!(b["data"]["schedule"].is_null(), "{b}");
}

#[test]
fn ferryctl_without_a_daemon_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let nothing = tmp.path().join("none.sock");
    // Nothing at the path, then a dead socket file.
    let dead = tmp.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
    for sock in [&nothing, &dead] {
        let out = std::process::Command::new(ferry_tests::bin("ferryctl"))
            .arg("--socket")
            .arg(sock)
            .arg("status")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert_one_line(&err);
        assert!(err.contains("ferryd is not running"), "{err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn events_since_and_follow() {
    let d = Ferryd::start();
    fixture(&d);
    let all = events_json(&d, &[]);
    assert_eq!(all.len(), 9);
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=9).collect::<Vec<_>>());

    let from5 = events_json(&d, &["--since", "5"]);
    assert_eq!(from5, all[4..]);
    let table = d.ctl_ok(&["events", "--since", "5"]);
    let first: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(first[0], "5", "{table}");
    assert_eq!(table.lines().count(), 5);
    assert!(events_json(&d, &["--since", "10"]).is_empty());

    let mut follow = std::process::Command::new(ferry_tests::bin("ferryctl"))
        .arg("--socket")
        .arg(&d.socket)
        .args(["--json", "events", "--follow", "--since", "9"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    // Seeing event 9 means the follower is running before the append.
    let first = rx.recv_timeout(Duration::from_secs(10)).expect("event 9");
    assert!(first.contains("\"seq\":9"), "{first}");
    let maildir = d.dir().join("late");
    d.ctl_ok(&[
        "endpoint",
        "add",
        "late",
        "--kind",
        "maildir",
        "--host",
        maildir.to_str().unwrap(),
    ]);
    let next = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the followed event");
    let e: Value = serde_json::from_str(&next).unwrap();
    assert_eq!(e["seq"], 10);
    assert_eq!(e["stream"], "endpoint/late");
    // Still following, not exited.
    assert!(follow.try_wait().unwrap().is_none());
    follow.kill().unwrap();
    let _ = follow.wait();
}

#[test]
fn sighup_with_a_broken_config_keeps_ferryd_running() {
    let d = Ferryd::start_with_config("log = \"info\"\nsnapshot_every = 1000\n");
    let cfg = d.config.clone().unwrap();
    // A good reload first, then a broken file.
    let roots = std::env::temp_dir().display().to_string();
    let good = format!("log = \"debug\"\n[endpoints]\npath_roots = [{roots:?}]\n");
    std::fs::write(&cfg, good).unwrap();
    signal(d.pid(), libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    d.ctl_ok(&["status"]);
    std::fs::write(&cfg, "log = [unterminated\nthis is = = not toml\n").unwrap();
    signal(d.pid(), libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    let st = d.ctl_json(&["status"]);
    assert_eq!(st["data"]["pid"], d.pid(), "the same ferryd answers");
    assert_eq!(st["data"]["draining"], false);
    // And it still takes commands.
    let maildir = d.dir().join("md");
    d.ctl_ok(&[
        "endpoint",
        "add",
        "after-hup",
        "--kind",
        "maildir",
        "--host",
        maildir.to_str().unwrap(),
    ]);
    assert_eq!(d.head(), 1);
}

#[test]
fn the_actor_is_the_unix_user_of_the_caller() {
    let d = Ferryd::start();
    let maildir = d.dir().join("md");
    d.ctl_ok(&[
        "endpoint",
        "add",
        "mine",
        "--kind",
        "maildir",
        "--host",
        maildir.to_str().unwrap(),
    ]);
    // SAFETY: getuid cannot fail; getpwuid's result is read before any other
    // call that could overwrite it.
    let (uid, name) = unsafe {
        let uid = libc::getuid();
        let pw = libc::getpwuid(uid);
        let name = if pw.is_null() {
            format!("uid{uid}")
        } else {
            std::ffi::CStr::from_ptr((*pw).pw_name)
                .to_string_lossy()
                .into_owned()
        };
        (uid, name)
    };
    let events = events_json(&d, &[]);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event_type"], "EndpointRegistered");
    assert_eq!(events[0]["actor"], format!("{name}({uid})"));
}

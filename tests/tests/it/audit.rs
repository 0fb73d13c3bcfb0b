//! The audit trail and reports: filtered exports and their verification,
//! secrets kept out, views as of a time, the HTML report in a real headless
//! Chromium, the metrics port, `watch`, and archives of deleted batches.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ferry_connectors::{FolderName, MailSession, maildir};
use ferry_tests::sample::{self, SampleSpec};
use ferry_tests::{Ferryd, wait_timeout};
use ferry_testservers::Dovecot;
use serde_json::{Value, json};

const PW: &str = "Dst-Pw-7781-zQ";
const ADDR: &str = "anna@old.example";
/// Markup in a folder name: the report must show it as text.
const ODD_FOLDER: &str = "<b>Q1<b>";

fn folder(name: &str) -> FolderName {
    FolderName {
        raw: name.into(),
        delimiter: Some('/'),
        segments: vec![name.into()],
    }
}

fn events(d: &Ferryd) -> Vec<Value> {
    d.ctl_ok(&["--json", "events"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn of_type<'a>(evs: &'a [Value], t: &str) -> Vec<&'a Value> {
    evs.iter().filter(|e| e["event_type"] == t).collect()
}

fn assert_one_line(err: &str) {
    let t = err.trim_end();
    assert!(!t.is_empty() && !t.contains('\n'), "not one line: {err:?}");
}

/// `audit verify FILE`: (exit code, stderr).
fn verify(d: &Ferryd, f: &Path) -> (i32, String) {
    let out = d.ctl(&["audit", "verify", f.to_str().unwrap()]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Two endpoints, two batches (one per CSV) and passes left pending.
fn small_log(d: &Ferryd) {
    let maildir = d.dir().join("maildir");
    std::fs::create_dir_all(&maildir).unwrap();
    d.add_imap_endpoint("src", 10143, ("master", "Adm1n-Pw-q7Zx"));
    d.add_maildir_endpoint("dst", &maildir);
    d.create_batch("w1", "src", "dst", &["anna", "ben"], &[]);
    d.create_batch("w2", "src", "dst", &["cleo"], &[]);
    d.create_batch("w3", "src", "dst", &["dora"], &[]);
    for (b, pass) in [("w1", "full"), ("w2", "verify")] {
        d.ctl_ok(&[
            "batch",
            "start",
            b,
            "--pass",
            pass,
            "--at",
            "2099-01-01T00:00:00Z",
        ]);
    }
}

fn export(d: &Ferryd, name: &str, args: &[&str]) -> PathBuf {
    let path = d.dir().join(name);
    let mut a = vec!["audit", "export", "-o", path.to_str().unwrap()];
    a.extend_from_slice(args);
    d.ctl_ok(&a);
    path
}

fn record_seqs(path: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(path).unwrap();
    if text.starts_with("seq,") {
        text.lines()
            .skip(1)
            .filter_map(|l| l.split(',').next()?.parse().ok())
            .collect()
    } else {
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["seq"].as_u64())
            .collect()
    }
}

#[test]
fn exports_select_by_range_batch_mailbox_and_type() {
    let d = Ferryd::start();
    small_log(&d);
    let evs = events(&d);
    let head = evs.len() as u64;
    assert_eq!(head, d.head());

    let p = export(&d, "range.jsonl", &["--from-seq", "3", "--to-seq", "5"]);
    assert_eq!(record_seqs(&p), vec![3, 4, 5]);
    let ok = d.ctl_ok(&["audit", "verify", p.to_str().unwrap()]);
    assert!(ok.contains("chain intact"), "{ok}");

    // The batch's stream and the events naming it; w2's and w3's are left out.
    let p = export(&d, "w1.jsonl", &["--batch", "w1"]);
    let want: Vec<u64> = evs
        .iter()
        .filter(|e| e["stream"] == "batch/w1")
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(record_seqs(&p), want);
    let ok = d.ctl_ok(&["audit", "verify", p.to_str().unwrap()]);
    assert!(ok.contains("filtered export (batch=w1)"), "{ok}");

    // A mailbox: the MailboxAdded naming it.
    let p = export(
        &d,
        "cleo.csv",
        &["--format", "csv", "--mailbox", "cleo@old.example"],
    );
    let seqs = record_seqs(&p);
    assert_eq!(seqs.len(), 1, "{seqs:?}");
    assert_eq!(evs[seqs[0] as usize - 1]["event_type"], "MailboxAdded");
    let v = d.ctl_json(&["audit", "verify", p.to_str().unwrap()]);
    assert_eq!(v["ok"], true);
    assert_eq!(v["filter"], "mailbox=cleo@old.example");

    // Types, repeatable, within a sequence range.
    let p = export(
        &d,
        "types.jsonl",
        &[
            "--type",
            "PassRequested",
            "--type",
            "BatchCreated",
            "--from-seq",
            "4",
        ],
    );
    let want: Vec<u64> = evs
        .iter()
        .filter(|e| {
            e["seq"].as_u64().unwrap() >= 4
                && (e["event_type"] == "PassRequested" || e["event_type"] == "BatchCreated")
        })
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(record_seqs(&p), want);
    assert_eq!(want.len(), 4, "w2 and w3 created, two passes requested");

    // Bad selections are refused on one line, and no file is left.
    for (args, needle) in [
        (vec!["--type", "NoSuchEvent"], "NoSuchEvent"),
        (vec!["--batch", "nope"], "nope"),
        (vec!["--mailbox", "who@x.example"], "who@x.example"),
        (vec!["--from-seq", "5", "--to-seq", "2"], "--from-seq"),
        (vec!["--since", "yesterday"], "--since"),
    ] {
        let out = d.dir().join("refused.jsonl");
        let mut a = vec!["audit", "export", "-o", out.to_str().unwrap()];
        a.extend_from_slice(&args);
        let err = d.ctl_err(&a);
        assert_one_line(&err);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!out.exists());
    }
}

/// Tampers with `path` each way and checks verify names the record and
/// exits with the right status. `first` is the file line (0-based) of the
/// first record.
fn tamper_each_way(d: &Ferryd, path: &Path, first: usize) {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert!(lines.len() >= first + 6, "too few records to tamper with");
    let ext = path.extension().unwrap().to_str().unwrap().to_string();
    let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
    let check = |name: &str, lines: Vec<String>, code: i32, needles: &[String]| {
        let f = d.dir().join(format!("{stem}-{name}.{ext}"));
        std::fs::write(&f, lines.join("\n") + "\n").unwrap();
        let (got, err) = verify(d, &f);
        assert_one_line(&err);
        assert_eq!(got, code, "{stem} {name}: {err}");
        for n in needles {
            assert!(err.contains(n.as_str()), "{stem} {name}: {err} lacks {n}");
        }
    };
    let (ok, _) = verify(d, path);
    assert_eq!(ok, 0);

    // Edited: one digit of a readable field of record 3.
    let mut edited = lines.clone();
    let i = first + 2;
    let at = edited[i].find("\"time\":\"").map_or_else(
        || edited[i].find(",20").unwrap() + 3,
        |p| p + "\"time\":\"".len() + 2,
    );
    let c = if &edited[i][at..at + 1] == "9" {
        "8"
    } else {
        "9"
    };
    edited[i].replace_range(at..at + 1, c);
    check(
        "edited",
        edited,
        2,
        &[format!("line {}", i + 1), "edited".into()],
    );

    let mut deleted = lines.clone();
    deleted.remove(first + 3);
    check("deleted", deleted, 3, &[format!("line {}", first + 4)]);

    let mut swapped = lines.clone();
    swapped.swap(first + 4, first + 5);
    check("swapped", swapped, 3, &[format!("line {}", first + 5)]);

    let mut cut = lines.clone();
    cut.truncate(first + 6);
    let half = cut[first + 5].len() / 2;
    cut[first + 5].truncate(half);
    check(
        "cut-mid-record",
        cut,
        4,
        &[format!("line {}", first + 6), "truncated".into()],
    );

    let mut cut = lines.clone();
    cut.pop();
    check(
        "no-closing-line",
        cut,
        4,
        &[format!("line {}", lines.len()), "truncated".into()],
    );
}

#[test]
fn tampering_with_whole_and_filtered_exports_is_named_with_its_exit_status() {
    let d = Ferryd::start();
    small_log(&d);
    for fmt in ["jsonl", "csv"] {
        let first = usize::from(fmt == "csv");
        let whole = export(&d, &format!("whole.{fmt}"), &["--format", fmt]);
        tamper_each_way(&d, &whole, first);
        let filtered = export(
            &d,
            &format!("filtered.{fmt}"),
            &[
                "--format",
                fmt,
                "--type",
                "MailboxAdded",
                "--type",
                "PassRequested",
            ],
        );
        assert!(record_seqs(&filtered).windows(2).any(|w| w[1] > w[0] + 1));
        tamper_each_way(&d, &filtered, first);
    }

    // A filtered record passed off as a whole export breaks the chain.
    let f = export(&d, "f.jsonl", &["--type", "MailboxAdded"]);
    let text = std::fs::read_to_string(&f).unwrap();
    let stripped: String = text
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            if let Some(o) = v.as_object_mut() {
                o.remove("prev_in_export");
            }
            if let Some(o) = v.get_mut("end").and_then(Value::as_object_mut) {
                o.remove("filter");
            }
            v.to_string() + "\n"
        })
        .collect();
    let g = d.dir().join("stripped.jsonl");
    std::fs::write(&g, stripped).unwrap();
    let (code, err) = verify(&d, &g);
    assert_eq!(code, 3, "{err}");
}

#[test]
fn no_password_or_oauth_token_reaches_an_export_or_an_archive() {
    const ADMIN: &str = "Adm1n-Secret-55Tq";
    const TOKEN_FILE: &str = "ya29.TokenFromFile-8Hq2";
    const TOKEN_CMD: &str = "ya29.TokenFromCommand-3Zx9";
    const CSV_PW: &str = "CsvSrc-Pw-11aB";
    const CSV_DPW: &str = "CsvDst-Pw-22cD";
    // The command line itself holds a token: only its name is recorded.
    let config = ferry_tests::token_command_config(&format!("echo {TOKEN_CMD}"));
    let d = Ferryd::start_with_config(&config);
    let pw = d.file("admin.pw", &format!("{ADMIN}\n"));
    let tok = d.file("token", &format!("{TOKEN_FILE}\n"));
    let base = ["--kind", "imap", "--host", "127.0.0.1", "--port", "993"];
    let mut a = vec!["endpoint", "add", "onprem"];
    a.extend(base);
    a.extend([
        "--admin-user",
        "master",
        "--password-file",
        pw.to_str().unwrap(),
    ]);
    d.ctl_ok(&a);
    let mut a = vec!["endpoint", "add", "m365"];
    a.extend(base);
    a.extend(["--oauth-token-file", tok.to_str().unwrap()]);
    d.ctl_ok(&a);
    let mut a = vec!["endpoint", "add", "gmail"];
    a.extend(base);
    a.extend(["--oauth-token-command", "tok"]);
    d.ctl_ok(&a);
    let csv = d.file(
        "b.csv",
        &format!(
            "SourceEmail,DestinationEmail,SourceLogin,SourcePassword,DestinationLogin,DestinationPassword\n\
             eve@old.example,eve@new.example,eve,{CSV_PW},eve,{CSV_DPW}\n"
        ),
    );
    d.ctl_ok(&[
        "batch",
        "create",
        "b",
        "--source",
        "onprem",
        "--destination",
        "m365",
        "--csv",
        csv.to_str().unwrap(),
    ]);
    // The events do refer to the secrets: they were handed over.
    let log = d.ctl_ok(&["--json", "events"]);
    assert!(
        log.contains("admin_secret") && log.contains("source_secret"),
        "{log}"
    );

    // A mailbox of a deleted batch that never ran has no stream of its
    // own: export it while its batch lives.
    let mut files = vec![export(
        &d,
        "eve.csv",
        &["--format", "csv", "--mailbox", "eve@old.example"],
    )];
    d.ctl_ok(&["batch", "delete", "b"]);
    let archive = d.dir().join("b.archive.jsonl");
    d.ctl_ok(&["batch", "archive", "b", "-o", archive.to_str().unwrap()]);
    files.push(archive);
    for (name, args) in [
        ("all.jsonl", vec![]),
        ("all.csv", vec!["--format", "csv"]),
        ("b.jsonl", vec!["--batch", "b"]),
    ] {
        files.push(export(&d, name, &args));
    }
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.lines().count() > 1, "{} is empty", f.display());
        for secret in [ADMIN, TOKEN_FILE, TOKEN_CMD, CSV_PW, CSV_DPW] {
            assert!(!text.contains(secret), "{} leaks {secret}", f.display());
        }
        // Nor in the stored bytes each record carries (base64 in the file).
        for l in text.lines() {
            let Some(raw) = serde_json::from_str::<Value>(l)
                .ok()
                .and_then(|v| v["raw"].as_str().map(str::to_string))
            else {
                continue;
            };
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(raw)
                .unwrap();
            for secret in [ADMIN, TOKEN_FILE, TOKEN_CMD, CSV_PW, CSV_DPW] {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "a record of {} holds {secret}",
                    f.display()
                );
            }
        }
        assert_eq!(verify(&d, f).0, 0, "{}", f.display());
    }
}

// ---- with a real pass: Maildir source, Dovecot destination ----

struct Setup {
    root: PathBuf,
    _dst: Dovecot,
    ferry: Ferryd,
    metrics: u16,
    _tmp: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn setup(messages: usize, extra: &[&str]) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("old");
    let mut s = maildir::open(&root.join(ADDR), true).unwrap();
    sample::fill(
        &mut s,
        &SampleSpec {
            seed: 11,
            messages,
            attachment_percent: 5,
            huge: 0,
        },
    )
    .await
    .unwrap();
    drop(s);
    let dst = Dovecot::start().unwrap();
    dst.add_user("anna", PW).unwrap();
    let metrics = free_port();
    let ferry =
        Ferryd::start_with_config(&format!("[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n"));
    ferry.add_maildir_endpoint("old", &root);
    ferry.add_imap_endpoint("new", dst.port(), dst.master_user());
    ferry.create_batch("b", "old", "new", &["anna"], extra);
    Setup {
        root,
        _dst: dst,
        ferry,
        metrics,
        _tmp: tmp,
    }
}

fn run_pass(f: &Ferryd, pass: &str) {
    f.ctl_ok(&["batch", "start", "b", "--pass", pass]);
    f.ctl_ok(&["batch", "wait", "b", "--timeout", "300"]);
}

/// `GET /metrics` over plain TCP; the samples by name (with labels).
fn scrape(port: u16) -> (String, std::collections::BTreeMap<String, u64>) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body = text.split("\r\n\r\n").nth(1).unwrap().to_string();
    let samples = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect();
    (body, samples)
}

fn chromium(html: &Path) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("file://{}", html.display()))
        .stdin(Stdio::null())
        .output()
        .expect("chromium runs (scripts/test.sh installs Debian's chromium)");
    assert!(out.status.success(), "chromium failed: {:?}", out.status);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_migration_seen_as_of_its_points_in_a_report_in_metrics_and_archived() {
    let s = setup(30, &["--max-item-size", "300KB"]).await;
    let f = &s.ferry;
    {
        let mut m = maildir::open(&s.root.join(ADDR), false).unwrap();
        // One the destination refuses (Dovecot stores no empty message),
        // in a folder whose name is markup; one over the size limit.
        m.create_folder(&folder(ODD_FOLDER)).await.unwrap();
        m.append(&folder(ODD_FOLDER), &[], None, bytes::Bytes::new())
            .await
            .unwrap();
        let big = sample::messages(&SampleSpec {
            seed: 5,
            messages: 1,
            attachment_percent: 100,
            huge: 0,
        })
        .next()
        .unwrap();
        assert!(big.body.len() > 300_000);
        m.append(&folder("INBOX"), &[], Some(big.date), big.body)
            .await
            .unwrap();
    }
    run_pass(f, "full");
    let first = f.ctl_json(&["mailbox", "show", ADDR])["data"].clone();
    let first_batch = f.ctl_json(&["batch", "show", "b"])["data"].clone();
    assert_eq!(first["totals"]["copied"], 30, "{first}");
    assert_eq!(first["totals"]["skipped"], 1);
    assert_eq!(first["errors"].as_array().unwrap().len(), 1);
    {
        let mut m = maildir::open(&s.root.join(ADDR), false).unwrap();
        for msg in sample::messages(&SampleSpec {
            seed: 99,
            messages: 4,
            attachment_percent: 0,
            huge: 0,
        }) {
            m.append(&folder("INBOX"), &[], Some(msg.date), msg.body)
                .await
                .unwrap();
        }
    }
    run_pass(f, "delta");
    let evs = events(f);
    let created = of_type(&evs, "BatchCreated")[0]["time"]
        .as_str()
        .unwrap()
        .to_string();
    let finished: Vec<String> = of_type(&evs, "PassFinished")
        .iter()
        .map(|e| e["time"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(finished.len(), 2);

    // As of the batch's creation: created, nothing run, the mailbox queued.
    let b0 = f.ctl_json(&["batch", "show", "b", "--as-of", &created])["data"].clone();
    assert_eq!(b0["state"], "Created");
    assert_eq!(b0["passes"], json!([]));
    let m0 = f.ctl_json(&["mailbox", "show", ADDR, "--as-of", &created])["data"].clone();
    assert_eq!(m0["state"], "Queued");
    assert_eq!(m0["totals"]["copied"], 0);
    // As of the end of the first pass: exactly what was shown then.
    let b1 = f.ctl_json(&["batch", "show", "b", "--as-of", &finished[0]])["data"].clone();
    assert_eq!(b1, first_batch);
    let m1 = f.ctl_json(&["mailbox", "show", ADDR, "--as-of", &finished[0]])["data"].clone();
    assert_eq!(m1, first);
    // As of the end of the second: the live views.
    let live_b = f.ctl_json(&["batch", "show", "b"])["data"].clone();
    let live_m = f.ctl_json(&["mailbox", "show", ADDR])["data"].clone();
    assert_eq!(live_m["totals"]["copied"], 34);
    assert_eq!(
        f.ctl_json(&["batch", "show", "b", "--as-of", &finished[1]])["data"],
        live_b
    );
    assert_eq!(
        f.ctl_json(&["mailbox", "show", ADDR, "--as-of", &finished[1]])["data"],
        live_m
    );
    // Before the batch existed, and a time that is not one.
    let err = f.ctl_err(&["batch", "show", "b", "--as-of", "2001-01-01T00:00:00Z"]);
    assert_one_line(&err);
    assert!(err.contains("no batch"), "{err}");
    let err = f.ctl_err(&["mailbox", "show", ADDR, "--as-of", "last tuesday"]);
    assert_one_line(&err);
    assert!(err.contains("RFC 3339"), "{err}");

    // Metrics agree with the views and the log.
    let (body, m) = scrape(s.metrics);
    let status = f.ctl_json(&["status"])["data"].clone();
    assert_eq!(m["ferry_items_copied_total"], 34, "{body}");
    assert_eq!(
        m["ferry_items_copied_total"],
        of_type(&evs, "ItemCopied").len() as u64
    );
    let bytes: u64 = of_type(&evs, "ItemCopied")
        .iter()
        .map(|e| e["event"]["ItemCopied"]["size"].as_u64().unwrap())
        .sum();
    assert_eq!(m["ferry_bytes_copied_total"], bytes);
    assert_eq!(live_m["totals"]["bytes"], bytes);
    let failed = of_type(&evs, "ItemFailed");
    let class = failed[0]["event"]["ItemFailed"]["class"].as_str().unwrap();
    assert_eq!(
        m[&format!("ferry_errors_total{{class=\"{class}\"}}")],
        failed.len() as u64,
        "{body}"
    );
    assert_eq!(m["ferry_event_log_head"], status["head"].as_u64().unwrap());
    assert_eq!(m["ferry_projection_lag_events"], 0);
    assert_eq!(m["ferry_passes_running"], 0);
    // A scheduled batch shows its next fire.
    assert!(
        !body.contains("ferry_next_scheduled_fire_timestamp_seconds{"),
        "{body}"
    );
    f.ctl_ok(&["batch", "schedule", "b", "--delta", "0 3 * * *"]);
    let (body, m) = scrape(s.metrics);
    let now = chrono::Utc::now();
    let mut next = now.date_naive().and_hms_opt(3, 0, 0).unwrap().and_utc();
    if next <= now {
        next += chrono::Duration::days(1);
    }
    assert_eq!(
        m["ferry_next_scheduled_fire_timestamp_seconds{batch=\"b\"}"],
        next.timestamp() as u64,
        "{body}"
    );
    f.ctl_ok(&["batch", "schedule", "b", "--delta", "off"]);
    for name in ["ferry_items_copied_total", "ferry_errors_total"] {
        assert!(body.contains(&format!("# TYPE {name} counter")), "{body}");
        assert!(body.contains(&format!("# HELP {name} ")), "{body}");
    }

    // The report: self-contained, escaped, and it renders with its charts.
    let html = f.dir().join("report.html");
    f.ctl_ok(&["report", "b", "-o", html.to_str().unwrap()]);
    let page = std::fs::read_to_string(&html).unwrap();
    for banned in ["http://", "https://", "src=", "href=", "<script", "@import"] {
        assert!(!page.contains(banned), "the report holds {banned}");
    }
    assert!(
        !page.contains(ODD_FOLDER),
        "the folder name was not escaped"
    );
    assert!(
        page.contains("&lt;b&gt;Q1&lt;b&gt;"),
        "the failed item is listed"
    );
    assert!(
        page.contains(&format!(
            "{ADDR}: the source held 36 items when last counted; 34 were copied, \
             1 skipped for a recorded reason, 1 failed and are unresolved."
        )),
        "completeness statement"
    );
    let (dom, log) = chromium(&html);
    for id in ["completion", "items", "bytes", "throughput", "errors"] {
        assert!(
            dom.contains(&format!("<svg id=\"{id}\"")),
            "chart {id} missing"
        );
    }
    assert!(dom.contains("<polyline"), "line charts have their lines");
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:?}");

    // Archive: only once deleted; the archive verifies on its own and its
    // tampering is caught; the views drop the batch, the log keeps it.
    let arch = f.dir().join("b.archive.jsonl");
    let err = f.ctl_err(&["batch", "archive", "b", "-o", arch.to_str().unwrap()]);
    assert!(err.contains("not deleted"), "{err}");
    f.ctl_ok(&["batch", "delete", "b"]);
    f.ctl_ok(&["batch", "archive", "b", "-o", arch.to_str().unwrap()]);
    let seqs = record_seqs(&arch);
    let evs = events(f);
    let want: Vec<u64> = evs
        .iter()
        .filter(|e| e["stream"] == "batch/b" || e["stream"] == format!("mailbox/{ADDR}"))
        .filter(|e| e["event_type"] != "BatchArchived")
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, want);
    let archived = of_type(&evs, "BatchArchived");
    assert_eq!(archived.len(), 1);
    let a = &archived[0]["event"]["BatchArchived"];
    assert_eq!(a["events"], want.len() as u64);
    assert_eq!(a["file"], arch.to_str().unwrap());
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(&arch).unwrap()))
    };
    assert_eq!(a["sha256"], sha);
    let v = f.ctl_json(&["audit", "verify", arch.to_str().unwrap()]);
    assert_eq!((&v["ok"], &v["filter"]), (&json!(true), &json!("batch=b")));
    tamper_each_way(f, &arch, 0);
    assert!(f.ctl_err(&["batch", "show", "b"]).contains("no batch"));
    assert!(f.ctl_err(&["mailbox", "show", ADDR]).contains("no mailbox"));
    assert_eq!(f.ctl_json(&["batch", "list"])["data"], json!([]));
    // The batch is still there in the past, and the whole log still verifies.
    let past = f.ctl_json(&["batch", "show", "b", "--as-of", &finished[1]])["data"].clone();
    assert_eq!(past, live_b);
    let whole = export(f, "after.jsonl", &[]);
    assert_eq!(verify(f, &whole).0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_the_pass_from_the_event_stream_and_ends_with_it() {
    let s = setup(150, &[]).await;
    let f = &s.ferry;
    let out = f.ctl_ok(&["watch"]);
    assert!(out.contains("no pass running"), "{out}");
    // Due in two seconds, so watch starts before the pass does.
    f.ctl_ok(&["batch", "start", "b", "--pass", "full", "--at", "2s"]);
    for args in [vec!["watch", "b"], vec!["watch"]] {
        let mut child = Command::new(ferry_tests::bin("ferryctl"))
            .arg("--socket")
            .arg(&f.socket)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            stdout.read_to_string(&mut s).unwrap();
            s
        });
        let status = wait_timeout(&mut child, Duration::from_secs(300))
            .expect("watch ends when the pass ends");
        let text = reader.join().unwrap();
        assert!(status.success(), "{args:?}: {text}");
        assert!(
            text.contains("batch b: pass ended, Synced"),
            "{args:?}: {text}"
        );
        let last = text
            .lines()
            .rfind(|l| l.starts_with(ADDR))
            .unwrap_or_else(|| panic!("{args:?}: no line for {ADDR}: {text}"));
        assert!(last.contains("150/150 items"), "{args:?}: {last}");
        assert!(last.contains("Synced"), "{args:?}: {last}");
        // Progress was shown while it ran, not only at the end.
        assert!(
            text.lines().filter(|l| l.starts_with(ADDR)).count() >= 2,
            "{args:?}: {text}"
        );
        if args.len() == 2 {
            f.ctl_ok(&["batch", "start", "b", "--pass", "full", "--at", "2s"]);
        }
    }
}

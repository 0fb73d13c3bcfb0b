//! A data directory written by the release before the segment store (a
//! real migration of 60 messages: 181 events in sled, a views snapshot,
//! secrets) opens with this one and loses nothing.

use std::path::Path;

use ferry_tests::Ferryd;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/datadir-v1");

/// Just after the fixture's last record (its schedule, set at 18:09:32).
const FIXTURE_END: &str = "2026-12-06T18:09:33Z";

#[test]
fn a_data_directory_of_the_sled_only_release_opens_verifies_and_appends() {
    let mut d = Ferryd::start_on_copy(Path::new(FIXTURE));
    let log = d.data_dir.join("log");
    assert!(!log.join("db").exists(), "the old log was retired");
    assert!(log.join("retired-v1/db").is_file(), "and kept");
    // The fixture's nightly delta (02:00 UTC) may be owed by the time this
    // runs: the scheduler's records come after the 181 moved ones.
    d.ctl_ok(&["batch", "schedule", "wave1", "--delta", "off"]);
    let _ = d.ctl(&["batch", "wait", "wave1", "--timeout", "60"]);
    let head = d.head();
    assert!(head >= 182, "{head}");

    let b = d.ctl_json(&["batch", "show", "wave1", "--as-of", FIXTURE_END])["data"].clone();
    assert_eq!(b["state"], "Synced", "{b}");
    assert_eq!(b["totals"]["copied"], 60, "{b}");
    let m = d.ctl_json(&[
        "mailbox",
        "show",
        "bert@old.example",
        "--as-of",
        FIXTURE_END,
    ])["data"]
        .clone();
    assert_eq!(m["totals"]["copied"], 30, "{m}");

    // The moved records verify as they were, and the chain goes on through
    // what today's schema appended after them.
    let export = d.dir().join("audit.jsonl");
    d.ctl_ok(&[
        "audit",
        "export",
        "--to-seq",
        "181",
        "-o",
        export.to_str().unwrap(),
    ]);
    let v = d.ctl_json(&["audit", "verify", export.to_str().unwrap()]);
    assert_eq!((&v["count"], &v["ok"]), (&181.into(), &true.into()), "{v}");
    d.restart();
    assert_eq!(d.head(), head);
    d.ctl_ok(&["audit", "export", "-o", export.to_str().unwrap()]);
    let v = d.ctl_json(&["audit", "verify", export.to_str().unwrap()]);
    assert_eq!((&v["count"], &v["ok"]), (&head.into(), &true.into()), "{v}");
    let b = d.ctl_json(&["batch", "show", "wave1"])["data"].clone();
    assert_eq!(b["totals"]["copied"], 60, "{b}");
}

fn segments(data: &Path) -> Vec<std::path::PathBuf> {
    let mut s: Vec<_> = std::fs::read_dir(data.join("log/segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    s.sort();
    s
}

/// One sample of ferryd's metrics port.
fn metric(port: u16, name: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .to_string()
}

/// A write torn by a crash is cut at the next start, said in the log and
/// the metrics; damage elsewhere stops ferryd with where it is.
#[test]
fn a_torn_tail_is_cut_and_shown_and_damage_stops_the_start() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut d = Ferryd::start_with_config(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    let root = d.dir().join("maildirs");
    std::fs::create_dir_all(&root).unwrap();
    for name in ["one", "two", "three"] {
        d.add_maildir_endpoint(name, &root);
    }
    assert_eq!(metric(port, "ferry_event_log_truncated_bytes"), "0");
    let head = d.head();
    d.stop();

    // A last write that never finished: bytes after the last record.
    let last = segments(&d.data_dir).pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    let whole = bytes.len();
    bytes.extend_from_slice(&[0xab; 100]);
    std::fs::write(&last, &bytes).unwrap();
    let log = d.dir().join("ferryd.log");
    d.launch_logged(&log);
    assert_eq!(d.head(), head);
    assert_eq!(metric(port, "ferry_event_log_truncated_bytes"), "100");
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.lines()
            .any(|l| l.contains("torn last write") && l.contains("bytes=100")),
        "{said}"
    );
    assert_eq!(std::fs::metadata(&last).unwrap().len() as usize, whole);
    d.ctl_ok(&["endpoint", "verify", "one"]);
    assert_eq!(d.head(), head + 1);
    d.stop();

    // A flipped byte inside the first record is damage, not a torn write:
    // a start that reads the log from the first record refuses it.
    std::fs::remove_file(d.data_dir.join("views.snapshot")).unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    bytes[20] ^= 0x01;
    std::fs::write(&last, &bytes).unwrap();
    let mut child = d.command().spawn().unwrap();
    let status = ferry_tests::wait_timeout(&mut child, std::time::Duration::from_secs(30))
        .expect("ferryd stops at the damage");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let out = (status, err);
    assert!(!out.0.success());
    let err = out.1;
    assert!(
        err.contains("damaged") && err.contains("at offset 0") && err.contains("sequence 1"),
        "{err}"
    );
}

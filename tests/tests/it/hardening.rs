//! Hostile mailboxes, hostile servers and local users reach nothing they
//! should not: each test plants what an attacker could and runs the real
//! ferryd and ferryctl against a real Dovecot on 127.0.0.1.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ferry_connectors::{MailSession, digest, maildir};
use ferry_tests::Ferryd;
use ferry_tests::mailcmp;
use ferry_tests::sample::{self, SampleSpec};
use ferry_testservers::Dovecot;

const PW: &str = "pw";

/// Creates `dir` with the given Maildir subfolders.
fn make_dirs(dir: &Path, subs: &[&str]) {
    for sub in subs {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
}

/// Every entry under `root` (symlinks not followed): its kind and the
/// SHA-256 of its bytes (a file's contents, a symlink's target), by path.
fn tree(root: &Path) -> BTreeMap<PathBuf, (&'static str, String)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let kind = meta.file_type();
            let seen = if kind.is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                ("symlink", digest(target.as_os_str().as_encoded_bytes()))
            } else if kind.is_dir() {
                todo.push(path.clone());
                ("dir", String::new())
            } else {
                ("file", digest(&std::fs::read(&path).unwrap()))
            };
            out.insert(path.strip_prefix(root).unwrap().to_path_buf(), seen);
        }
    }
    out
}

/// A Maildir source for `anna@old.example` with `messages` sample items
/// (no uidlist of ours in it, as Dovecot would have left it), a Dovecot
/// destination with user anna, and ferryd with endpoints `old`, `new`.
struct Setup {
    root: PathBuf,
    dst: Dovecot,
    ferry: Ferryd,
    tmp: tempfile::TempDir,
}

async fn setup(messages: usize) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("old");
    let user = root.join("anna@old.example");
    let mut s = maildir::open(&user, true).unwrap();
    let spec = SampleSpec {
        seed: 11,
        messages,
        attachment_percent: 0,
        huge: 0,
    };
    sample::fill(&mut s, &spec).await.unwrap();
    drop(s);
    let folders = std::fs::read_dir(&user).unwrap().map(|d| d.unwrap().path());
    for dir in folders.chain([user.clone()]) {
        let _ = std::fs::remove_file(dir.join("mailferry-uidlist"));
    }
    let dst = Dovecot::start().unwrap();
    dst.add_user("anna", PW).unwrap();
    let ferry = Ferryd::start();
    ferry.add_maildir_endpoint("old", &root);
    ferry.add_imap_endpoint("new", dst.port(), dst.master_user());
    Setup {
        root,
        dst,
        ferry,
        tmp,
    }
}

fn skip_reasons(f: &Ferryd) -> Vec<String> {
    f.events_of("ItemSkipped")
        .iter()
        .map(|e| {
            e["event"]["ItemSkipped"]["reason"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Defect 1: a pass never writes into its source, follows no symlink and
/// skips, with the reason, what is not a plain message file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maildir_source_is_never_written_and_its_symlinks_are_not_followed() {
    let s = setup(12).await;
    let user = s.root.join("anna@old.example");
    let outside = s.tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    // A file only ferryd could read, linked in as a message.
    let secret = outside.join("shadow");
    std::fs::write(&secret, "Subject: root only\r\n\r\nTOP SECRET\r\n").unwrap();
    std::os::unix::fs::symlink(&secret, user.join("cur/1700000000.evil.host:2,S")).unwrap();
    // A file ferryd could be made to overwrite, linked at the temporary
    // name it used to write its UID table through.
    let victim = outside.join("victim");
    std::fs::write(&victim, "untouched").unwrap();
    let tmp_name = format!(".mailferry-uidlist.mailferry-tmp.{}", s.ferry.pid());
    std::os::unix::fs::symlink(&victim, user.join(tmp_name)).unwrap();
    // A name that would forge a line of a UID table.
    std::fs::write(
        user.join("cur/1700000001.a\n9 forged:2,S"),
        "Subject: newline\r\n\r\nx\r\n",
    )
    .unwrap();
    // Another user's Maildir, linked in as a folder and as `new/` of one.
    let other = outside.join("other");
    make_dirs(&other, &["cur", "new", "tmp"]);
    std::fs::write(
        other.join("cur/1700000002.o.host:2,S"),
        "Subject: other\r\n\r\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(&other, user.join(".Linked")).unwrap();
    let half = user.join(".Half");
    make_dirs(&half, &["cur", "tmp"]);
    std::os::unix::fs::symlink(other.join("cur"), half.join("new")).unwrap();
    let before = tree(&s.root);

    s.ferry.create_batch(
        "b",
        "old",
        "new",
        &["anna"],
        &["--max-item-size", "1000000"],
    );
    s.ferry.run_pass("b", "full");

    assert_eq!(tree(&s.root), before, "the source tree changed");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
    let reasons = skip_reasons(&s.ferry);
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("not a regular file but a symbolic link")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("control character")),
        "{reasons:?}"
    );
    let mut d = ferry_tests::imap_login(s.dst.port(), "anna", PW).await;
    let copied = mailcmp::contents(&mut d).await;
    let n: usize = copied.values().map(Vec::len).sum();
    assert_eq!(n, 12, "{copied:?}");
}

/// Defect 2: an address that is not one plain `local@domain` file name is
/// refused with its line, before it can name a folder outside the root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_addresses_cannot_name_a_maildir_outside_the_root() {
    let s = setup(2).await;
    let outside = s.tmp.path().join("outside");
    let dest = s.tmp.path().join("dest");
    s.ferry.add_maildir_endpoint("local", &dest);
    let create = |csv: &str| {
        let csv = s.ferry.file("bad.csv", csv);
        let args = ["--source", "old", "--destination", "local", "--csv"];
        let mut args: Vec<&str> = ["batch", "create", "b"].into_iter().chain(args).collect();
        args.push(csv.to_str().unwrap());
        s.ferry.ctl_err(&args)
    };
    for (bad, why) in [
        ("../outside/ceo@b.com", "holds a '/'"),
        (&*format!("{}/ceo@b.com", outside.display()), "holds a '/'"),
        ("..@b.com", "starts with '.'"),
        (".hidden@b.com", "starts with '.'"),
        ("\"a\u{7}b@b.com\"", "control character"),
        ("@b.com", "nothing before or after"),
    ] {
        let err = create(&format!(
            "SourceEmail,DestinationEmail\nanna@old.example,anna@b.com\n{bad},x@b.com\n"
        ));
        assert!(err.contains("line 3") && err.contains(why), "{bad}: {err}");
        // The destination side is checked the same way.
        let err = create(&format!(
            "SourceEmail,DestinationEmail\nanna@old.example,{bad}\n"
        ));
        assert!(err.contains("line 2") && err.contains(why), "{bad}: {err}");
    }
    assert!(!outside.exists() && !dest.exists());
    assert!(s.ferry.events_of("BatchCreated").is_empty());
}

/// A proxy to 127.0.0.1:`target` that rewrites, in what the server sends,
/// every `pattern` and the digits after it to `replacement`: a server that
/// announces less than it sends, or answers what a parser chokes on.
fn rewriting_proxy(target: u16, pattern: &'static [u8], replacement: &'static [u8]) -> u16 {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;
    let down = move |mut from: TcpStream, mut to: TcpStream| {
        from.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut held: Vec<u8> = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            let quiet = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    held.extend_from_slice(&buf[..n]);
                    false
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => true,
                Err(_) => break,
            };
            let mut out = Vec::with_capacity(held.len());
            let mut i = 0;
            while i < held.len() {
                if held[i..].starts_with(pattern) {
                    let digits = held[i + pattern.len()..]
                        .iter()
                        .take_while(|b| b.is_ascii_digit())
                        .count();
                    let end = i + pattern.len() + digits;
                    if end == held.len() && !quiet {
                        break; // the number may go on in the next read
                    }
                    out.extend_from_slice(replacement);
                    i = end;
                } else if !quiet && pattern.starts_with(&held[i..]) {
                    break; // a pattern cut by the read
                } else {
                    out.push(held[i]);
                    i += 1;
                }
            }
            held.drain(..i);
            if to.write_all(&out).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { break };
            let server = TcpStream::connect(("127.0.0.1", target)).unwrap();
            let (mut c, mut s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c, &mut s);
                let _ = s.shutdown(std::net::Shutdown::Both);
            });
            std::thread::spawn(move || down(server, client));
        }
    });
    port
}

/// Defect 3: the limit holds against the bytes received, not the size a
/// server announces; an item over it is skipped, the others are copied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_larger_than_announced_is_skipped_by_the_bytes_received() {
    let src = Dovecot::start().unwrap();
    src.add_user("anna", PW).unwrap();
    let mut imap = ferry_tests::imap_login(src.port(), "anna", PW).await;
    let inbox = ferry_connectors::FolderName {
        raw: "INBOX".into(),
        delimiter: Some('/'),
        segments: vec!["INBOX".into()],
    };
    let message = |subject: &str, lines: usize| {
        let mut m = format!("Subject: {subject}\r\n\r\n");
        for i in 0..lines {
            m.push_str(&format!(
                "line {i} of a message that is longer than it says\r\n"
            ));
        }
        bytes::Bytes::from(m)
    };
    for (subject, lines) in [("small", 10), ("large", 2000), ("small too", 20)] {
        let body = message(subject, lines);
        imap.append(&inbox, &[], None, body).await.unwrap();
    }
    let proxy = rewriting_proxy(src.port(), b"RFC822.SIZE ", b"RFC822.SIZE 1");
    let tmp = tempfile::tempdir().unwrap();
    let ferry = Ferryd::start();
    ferry.add_imap_endpoint("old", proxy, src.master_user());
    ferry.add_maildir_endpoint("new", tmp.path());
    ferry.create_batch("b", "old", "new", &["anna"], &["--max-item-size", "20000"]);
    ferry.run_pass("b", "full");

    let reasons = skip_reasons(&ferry);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    // Asked for one byte past the limit, never the whole message.
    assert!(
        reasons[0].contains("sent 20001 bytes or more (announced 1)")
            && reasons[0].contains("limit of 20000 bytes"),
        "{reasons:?}"
    );
    assert_eq!(ferry.events_of("ItemCopied").len(), 2);
}

/// Defect 4: a webhook's token in its path (as Slack, Teams and Discord
/// put it) reaches no event, answer, export or log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_token_in_the_path_is_never_shown() {
    const TOKEN: &str = "T0AAA/B0BBB/Xy7tokenZZ";
    let mut s = setup(2).await;
    let log = s.tmp.path().join("ferryd.log");
    s.ferry.stop();
    s.ferry.launch_logged(&log);
    s.ferry.create_batch("b", "old", "new", &["anna"], &[]);
    // Nothing listens there: every attempt fails, with its target.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/services/{TOKEN}");
    let answer = s.ferry.ctl_ok(&["batch", "notify", "b", "--webhook", &url]);
    assert!(
        answer.contains(&format!("http://127.0.0.1:{port}")) && !answer.contains("Xy7token"),
        "{answer}"
    );
    s.ferry.run_pass("b", "full");
    s.ferry.wait_for(30, "a failed report", |f| {
        !f.events_of("NotificationFailed").is_empty()
    });
    let export = s.ferry.ctl_ok(&["audit", "export"]);
    let shown = s.ferry.ctl_ok(&["--json", "batch", "show", "b"]);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("pass report not sent"), "{logged}");
    for (what, text) in [("export", export), ("batch show", shown), ("log", logged)] {
        assert!(!text.contains("Xy7token"), "{what} shows the token: {text}");
    }
}

/// Ids of the secrets ferryd holds in its data directory.
fn stored_secrets(f: &Ferryd) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(f.data_dir.join("secrets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    ids
}

/// Defect 5: secrets nothing refers to are removed, and a lost key file is
/// not silently replaced while secrets need it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_key_file_stops_ferryd_and_orphaned_secrets_are_removed() {
    let mut s = setup(1).await;
    let csv = s.ferry.file(
        "pw.csv",
        "SourceEmail,DestinationEmail,DestinationLogin,DestinationPassword\n\
         anna@old.example,anna@new.example,anna,pw\n",
    );
    let args = ["--source", "old", "--destination", "new", "--csv"];
    for batch in ["gone", "kept"] {
        let mut a: Vec<&str> = ["batch", "create", batch].into_iter().chain(args).collect();
        a.push(csv.to_str().unwrap());
        if batch == "kept" {
            s.ferry.ctl_ok(&["batch", "delete", "gone"]);
        }
        s.ferry.ctl_ok(&a);
    }
    // The deleted batch's password went with it; a secret that a crash
    // left behind without its event goes at the next start.
    let referenced = |f: &Ferryd| {
        let mut ids: Vec<String> = f
            .events()
            .iter()
            .filter(|e| e["stream"] != "batch/gone")
            .flat_map(|e| {
                let text = e["event"].to_string();
                text.split('"')
                    .filter(|w| w.starts_with("sec-"))
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        ids.sort();
        ids
    };
    let kept = referenced(&s.ferry);
    assert_eq!(kept.len(), 2, "the endpoint's and the kept batch's");
    assert_eq!(stored_secrets(&s.ferry), kept);
    let orphan = s
        .ferry
        .data_dir
        .join("secrets/sec-00000000000000000000000000000000");
    std::fs::copy(s.ferry.data_dir.join("secrets").join(&kept[0]), &orphan).unwrap();
    s.ferry.restart();
    assert_eq!(stored_secrets(&s.ferry), kept);
    s.ferry.stop();
    let key = s.ferry.data_dir.join("secret.key");
    std::fs::remove_file(&key).unwrap();
    let mut child = s.ferry.command().spawn().unwrap();
    let status = ferry_tests::wait_timeout(&mut child, std::time::Duration::from_secs(20));
    if status.is_none() {
        let _ = child.kill();
    }
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        status.is_some_and(|s| !s.success()),
        "ferryd started: {err}"
    );
    assert!(
        err.contains(&key.display().to_string()) && err.contains("2 stored secrets"),
        "{err}"
    );
    assert!(!key.exists(), "a new key was made");
}

/// Defect 6: over the socket, a user names only paths under the config
/// file's roots and only the config file's token commands.
#[test]
fn socket_users_reach_only_the_paths_and_programs_the_config_names() {
    let tmp = tempfile::tempdir().unwrap();
    let allowed = tmp.path().join("allowed");
    std::fs::create_dir(&allowed).unwrap();
    std::os::unix::fs::symlink("/etc", allowed.join("etc")).unwrap();
    let pwned = tmp.path().join("pwned");
    let config = format!(
        "[endpoints]\npath_roots = [{:?}]\ntoken_commands = {{ m365 = \"echo token\" }}\n",
        allowed.display().to_string()
    );
    let f = Ferryd::start_with_config(&config);
    let inside = allowed.join("mail").display().to_string();
    let dotted = format!("{}/../outside", allowed.display());
    let through_link = allowed.join("etc").display().to_string();
    let run = format!("touch {}", pwned.display());
    let imap = ["--kind", "imap", "--host", "127.0.0.1", "--port", "143"];
    let refused: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--kind", "maildir", "--host", "/etc"], "path_roots"),
        (vec!["--kind", "maildir", "--host", &dotted], "'..'"),
        (
            vec!["--kind", "maildir", "--host", &through_link],
            "path_roots",
        ),
        (
            [&imap[..], &["--ca-file", "/etc/shadow"]].concat(),
            "path_roots",
        ),
        (
            [&imap[..], &["--oauth-token-file", "/etc/passwd"]].concat(),
            "path_roots",
        ),
        (
            [&imap[..], &["--oauth-token-command", &run]].concat(),
            "only from the config file",
        ),
    ];
    for (args, why) in refused {
        let mut a = vec!["endpoint", "add", "e"];
        a.extend(&args);
        let err = f.ctl_err(&a);
        assert!(err.contains(why), "{args:?}: {err}");
    }
    assert!(f.events_of("EndpointRegistered").is_empty());
    f.ctl_ok(&[
        "endpoint", "add", "m", "--kind", "maildir", "--host", &inside,
    ]);
    let mut a = vec!["endpoint", "add", "o"];
    a.extend(imap);
    a.extend(["--oauth-token-command", "m365"]);
    f.ctl_ok(&a);
    assert_eq!(f.events_of("EndpointRegistered").len(), 2);
    assert!(!pwned.exists());
}

/// Defect 7: runbook files of two users never share a name, and batch
/// names are unique regardless of case and never `.` or `..`.
#[test]
fn runbook_files_cannot_collide_and_batch_names_are_unique_regardless_of_case() {
    let d = Ferryd::start();
    for name in ["src", "dst"] {
        let root = d.dir().join(name);
        std::fs::create_dir_all(&root).unwrap();
        d.add_maildir_endpoint(name, &root);
    }
    d.create_batch("b", "src", "dst", &["o'brien", "o+brien"], &[]);
    let out = d.dir().join("runbooks");
    d.ctl_ok(&["runbook", "b", "-o", out.to_str().unwrap()]);
    let mut texts: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    texts.sort();
    assert_eq!(texts.len(), 6);
    for user in ["o'brien", "o+brien"] {
        let own = texts
            .iter()
            .filter(|t| t.contains(&format!("{user}@old.example")));
        assert_eq!(own.count(), 3, "{user}");
    }

    let csv = d.file(
        "c.csv",
        "SourceEmail,DestinationEmail\nzoe@a.example,zoe@b.example\n",
    );
    for (name, why) in [
        ("B", "batch b already exists"),
        ("..", "not only dots"),
        (".", "not only dots"),
    ] {
        let args = ["--source", "src", "--destination", "dst", "--csv"];
        let mut a: Vec<&str> = ["batch", "create", name].into_iter().chain(args).collect();
        a.push(csv.to_str().unwrap());
        let err = d.ctl_err(&a);
        assert!(err.contains(why), "{name}: {err}");
    }
}

/// Defect 8: idle and half-sent control connections are closed after the
/// request timeout, so they cannot hold every connection slot.
#[test]
fn idle_and_half_sent_control_connections_time_out() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let f = Ferryd::start_with_config("max_connections = 2\nrequest_timeout_s = 1\n");
    let idle = UnixStream::connect(&f.socket).unwrap();
    let mut half = UnixStream::connect(&f.socket).unwrap();
    half.write_all(b"POST /v1 HTTP/1.1\r\nhost: ferryd\r\n")
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut ctl = std::process::Command::new(ferry_tests::bin("ferryctl"))
        .args(["--socket", f.socket.to_str().unwrap(), "status"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status = ferry_tests::wait_timeout(&mut ctl, std::time::Duration::from_secs(10));
    if status.is_none() {
        let _ = ctl.kill();
    }
    assert!(
        status.is_some_and(|s| s.success()),
        "status did not get a slot"
    );
    for mut held in [idle, half] {
        held.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut rest = Vec::new();
        held.read_to_end(&mut rest).expect("closed by ferryd");
    }
}

/// Defect 9: a folder name decoding to terminal escapes is printed escaped.
#[test]
fn folder_names_with_terminal_escapes_are_printed_escaped() {
    let f = Ferryd::start();
    let src = f.dir().join("src");
    let user = src.join("anna@old.example");
    // `&ABs-` is ESC in modified UTF-7: clear the screen, then red.
    let evil = user.join(".&ABs-[2J&ABs-[31mEvil");
    for dir in [&user, &evil] {
        make_dirs(dir, &["cur", "new", "tmp"]);
    }
    std::fs::write(
        evil.join("cur/1700000000.a.host:2,S"),
        "Subject: x\r\n\r\nx\r\n",
    )
    .unwrap();
    let dst = f.dir().join("dst");
    std::fs::create_dir_all(&dst).unwrap();
    f.add_maildir_endpoint("old", &src);
    f.add_maildir_endpoint("new", &dst);
    f.create_batch("b", "old", "new", &["anna"], &[]);
    f.run_pass("b", "full");
    let shown = f.ctl_ok(&["mailbox", "show", "anna@old.example"]);
    assert!(!shown.contains('\u{1b}'), "{shown:?}");
    assert!(shown.contains("\\u{1b}[31mEvil"), "{shown}");
}

/// An answer that breaks the IMAP parser (a non-ASCII byte right after a
/// response code) fails that mailbox with the reason, not its task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_breaks_the_imap_parser_fails_the_mailbox_with_a_reason() {
    let src = Dovecot::start().unwrap();
    src.add_user("anna", PW).unwrap();
    let proxy = rewriting_proxy(src.port(), b"[READ-ONLY] ", b"[READ-ONLY]\xbf\xbf ");
    let tmp = tempfile::tempdir().unwrap();
    let ferry = Ferryd::start_with_config("[engine]\nretries = 1\nbackoff_ms = 50\n");
    ferry.add_imap_endpoint("old", proxy, src.master_user());
    ferry.add_maildir_endpoint("new", tmp.path());
    ferry.create_batch("b", "old", "new", &["anna"], &[]);
    ferry.ctl_ok(&["batch", "start", "b", "--pass", "full"]);
    assert!(
        !ferry
            .ctl(&["batch", "wait", "b", "--timeout", "120"])
            .status
            .success()
    );
    let shown = ferry.ctl_json(&["mailbox", "show", "anna@old.example"]);
    let detail = shown["data"]["last_pass"]["detail"].to_string();
    assert!(detail.contains("could not be parsed"), "{shown}");
}

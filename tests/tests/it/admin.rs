//! Day two for an administrator: credentials replaced in place, users and
//! endpoints edited or removed only when nothing runs over them, a batch
//! completed only when its mailboxes are done (or by force, recorded).

use ferry_tests::Ferryd;
use ferry_tests::pair::{PW, Pair, add_mail, contents, count};
use ferry_tests::sample::{self, SampleSpec};
use ferry_testservers::Dovecot;

fn field<'a>(e: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    &e["event"][e["event_type"].as_str().unwrap()][name]
}

fn mailbox(f: &Ferryd, address: &str) -> serde_json::Value {
    f.ctl_json(&["mailbox", "show", address])["data"].clone()
}

fn batch(f: &Ferryd, name: &str) -> serde_json::Value {
    f.ctl_json(&["batch", "show", name])["data"].clone()
}

/// Runs a pass and waits; whether `batch wait` reported success.
fn pass(f: &Ferryd, name: &str, kind: &str) -> bool {
    f.ctl_ok(&["batch", "start", name, "--pass", kind]);
    f.ctl(&["batch", "wait", name, "--timeout", "300"])
        .status
        .success()
}

/// Waits until a pass of `name` is running.
fn wait_running(f: &Ferryd, name: &str) {
    f.wait_for(60, "a running pass", |f| {
        batch(f, name)["state"] == "Syncing"
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_are_replaced_in_place() {
    let p = Pair::start("first", &["anna"], None);
    for d in [&p.src, &p.dst] {
        d.add_user("carl", PW).unwrap();
    }
    add_mail(&p.src, "carl", 5, 12).await;
    let f = &p.ferry;
    let header = "SourceEmail,DestinationEmail,SourceLogin,SourcePassword,DestinationLogin,DestinationPassword\n";
    let wrong = f.file(
        "wrong.csv",
        &format!("{header}carl@old.example,carl@new.example,carl,not-it,carl,{PW}\n"),
    );
    f.ctl_ok(&[
        "batch",
        "create",
        "fix",
        "--source",
        "old",
        "--destination",
        "new",
        "--csv",
        wrong.to_str().unwrap(),
    ]);
    assert!(!pass(f, "fix", "full"), "the wrong password fails the pass");
    assert_eq!(mailbox(f, "carl@old.example")["state"], "Failed");

    // The CSV fixed: without --update it is refused, with it replaced.
    let fixed_source = f.file(
        "fixed.csv",
        &format!("{header}carl@old.example,carl@new.example,carl,{PW},carl,also-wrong\n"),
    );
    let csv = fixed_source.to_str().unwrap();
    let err = f.ctl_err(&["batch", "add-users", "fix", "--csv", csv]);
    assert!(
        err.contains("already in batch fix") && err.contains("--update"),
        "{err}"
    );
    let out = f.ctl_ok(&["batch", "add-users", "fix", "--csv", csv, "--update"]);
    assert!(
        out.contains("replaced the logins and passwords of 1"),
        "{out}"
    );
    assert!(
        !pass(f, "fix", "full"),
        "now the destination password is wrong"
    );
    let detail = mailbox(f, "carl@old.example")["last_pass"]["detail"].to_string();
    assert!(
        detail.contains(&format!(":{} as carl refused", p.dst.port())),
        "{detail}"
    );

    // One password replaced by a per-user command.
    let pw = f.file("carl.pw", &format!("{PW}\n"));
    let out = f.ctl_ok(&[
        "mailbox",
        "set-credentials",
        "carl@old.example",
        "--destination-password-file",
        pw.to_str().unwrap(),
    ]);
    assert!(out.contains("destination password replaced"), "{out}");
    assert!(pass(f, "fix", "full"));
    assert_eq!(mailbox(f, "carl@old.example")["state"], "Synced");
    assert_eq!(count(&contents(&p.dst, "carl").await), 12);

    // Each change is an event holding references, never a password.
    let updates = f.events_of("MailboxUpdated");
    assert_eq!(updates.len(), 2);
    let log = f.ctl_ok(&["--json", "events"]);
    assert!(!log.contains(PW) && !log.contains("also-wrong") && !log.contains("not-it"));
    let spec = field(&updates[1], "mailbox");
    assert!(
        spec["destination_secret"]
            .as_str()
            .unwrap()
            .starts_with("sec-")
    );
    // The replaced secrets are gone from the store: one per side remains.
    let stored = std::fs::read_dir(f.data_dir.join("secrets"))
        .unwrap()
        .count();
    assert_eq!(
        stored,
        2 + 2,
        "two endpoint admins and carl's two passwords"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_endpoints_change_only_when_nothing_runs_over_them() {
    let p = Pair::start("wave", &["anna", "bert"], None);
    add_mail(&p.src, "anna", 7, 300).await;
    let f = &p.ferry;
    f.ctl_ok(&["batch", "start", "wave", "--pass", "full"]);
    wait_running(f, "wave");
    let err = f.ctl_err(&["batch", "remove-user", "wave", "bert@old.example"]);
    assert!(err.contains("a full pass is running"), "{err}");
    let err = f.ctl_err(&["endpoint", "update", "new", "--max-connections", "4"]);
    assert!(err.contains("a pass of batch wave is running"), "{err}");
    f.ctl_ok(&["batch", "wait", "wave", "--timeout", "300"]);

    let out = f.ctl_ok(&["batch", "remove-user", "wave", "bert@old.example"]);
    assert!(out.contains("bert@old.example removed"), "{out}");
    assert_eq!(
        batch(f, "wave")["mailboxes"],
        serde_json::json!(["anna@old.example"])
    );
    f.ctl_err(&["mailbox", "show", "bert@old.example"]);
    assert_eq!(f.events_of("MailboxRemoved").len(), 1);
    // Removed, the user may join another batch.
    f.create_batch("later", "old", "new", &["bert"], &[]);
    let err = f.ctl_err(&["batch", "remove-user", "later", "anna@old.example"]);
    assert!(
        err.contains("anna@old.example is in batch wave, not later"),
        "{err}"
    );

    f.ctl_ok(&["endpoint", "update", "new", "--max-connections", "4"]);
    let eps = f.ctl_json(&["endpoint", "list"]);
    let new = eps["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "new")
        .unwrap()
        .clone();
    assert_eq!(new["spec"]["max_connections"], 4);
    assert_eq!(f.events_of("EndpointUpdated").len(), 1);
    // The updated endpoint still carries the pass.
    add_mail(&p.src, "anna", 8, 5).await;
    assert!(pass(f, "wave", "delta"));
    assert_eq!(count(&contents(&p.dst, "anna").await), 305);

    let err = f.ctl_err(&["endpoint", "remove", "old"]);
    assert!(err.contains("used by batch later, wave"), "{err}");
    for b in ["wave", "later"] {
        f.ctl_ok(&["batch", "delete", b]);
    }
    f.ctl_ok(&["endpoint", "remove", "old"]);
    let eps = f.ctl_json(&["endpoint", "list"]);
    assert_eq!(eps["data"].as_array().unwrap().len(), 1);
    assert_eq!(f.events_of("EndpointRemoved").len(), 1);
    // Its name may be registered again.
    f.add_imap_endpoint("old", p.src.port(), p.src.master_user());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_is_refused_until_mailboxes_are_done_or_forced() {
    let p = Pair::start("wave", &["anna", "bert"], None);
    add_mail(&p.src, "anna", 9, 6).await;
    add_mail(&p.src, "bert", 10, 6).await;
    let f = &p.ferry;
    let bad = f.file("bad.pw", "not-the-password\n");
    f.ctl_ok(&[
        "mailbox",
        "set-credentials",
        "bert@old.example",
        "--source-password-file",
        bad.to_str().unwrap(),
    ]);
    f.ctl_ok(&["batch", "schedule", "wave", "--delta", "0 3 * * *"]);
    pass(f, "wave", "full");
    assert_eq!(mailbox(f, "bert@old.example")["state"], "Failed");

    // anna's cutover pass succeeds, but the batch still holds a failed mailbox.
    f.ctl_ok(&["cutover", "anna@old.example"]);
    f.wait_for(120, "anna cut over", |f| {
        mailbox(f, "anna@old.example")["state"] == "CutOver"
    });
    assert_eq!(batch(f, "wave")["state"], "SyncedWithErrors");

    let err = f.ctl_err(&["batch", "complete", "wave"]);
    assert!(
        err.contains("bert@old.example its last full pass failed"),
        "{err}"
    );
    assert!(!err.contains("anna@"), "a cut-over mailbox is done: {err}");
    assert!(f.events_of("CompletionRequested").is_empty());

    let out = f.ctl_ok(&["batch", "complete", "wave", "--force"]);
    assert!(out.contains("forced past (recorded)"), "{out}");
    let forced = f.events_of("CompletionForced");
    assert_eq!(forced.len(), 1);
    let overridden = field(&forced[0], "overridden").to_string();
    assert!(overridden.contains("bert@old.example"), "{overridden}");
    // The schedule went with the request, as an event.
    let last_schedule = f.events_of("ScheduleSet").last().cloned().unwrap();
    assert_eq!(field(&last_schedule, "cron"), "");
    f.ctl(&["batch", "wait", "wave", "--timeout", "300"]);
    // Its final pass ran over bert alone, and failed.
    let b = batch(f, "wave");
    assert_eq!(b["state"], "Failed", "{b}");
    assert!(b["schedule"].is_null(), "{b}");
    assert!(!f.ctl_ok(&["batch", "show", "wave"]).contains("0 3 * * *"));

    // Mended, bert is healthy and completion needs no force.
    let good = f.file("good.pw", &format!("{PW}\n"));
    f.ctl_ok(&[
        "mailbox",
        "set-credentials",
        "bert@old.example",
        "--source-password-file",
        good.to_str().unwrap(),
    ]);
    assert!(pass(f, "wave", "full"));
    assert_eq!(batch(f, "wave")["state"], "Synced");
    f.ctl_ok(&["batch", "complete", "wave"]);
    f.ctl_ok(&["batch", "wait", "wave", "--timeout", "300"]);
    assert_eq!(batch(f, "wave")["state"], "Completed");
    assert_eq!(f.events_of("CompletionForced").len(), 1);
}

#[test]
fn csv_cron_events_and_exports_speak_plainly() {
    let f = Ferryd::start();
    let root = f.dir().join("maildirs");
    std::fs::create_dir_all(&root).unwrap();
    f.add_maildir_endpoint("old", &root);
    f.add_maildir_endpoint("new", &root);

    // Excel writes CRLF: the error names the file's own line.
    let csv = f.file(
        "excel.csv",
        "SourceEmail,DestinationEmail\r\na@old.example,a@new.example\r\n\r\nb@old.example\r\n",
    );
    let err = f.ctl_err(&[
        "batch",
        "create",
        "b",
        "--source",
        "old",
        "--destination",
        "new",
        "--csv",
        csv.to_str().unwrap(),
    ]);
    assert!(
        err.contains("CSV line 4: 1 columns where the header has 2"),
        "{err}"
    );
    f.create_batch("b", "old", "new", &["anna"], &[]);

    // Cron errors quote the expression as given, with its field's bounds.
    let err = f.ctl_err(&["batch", "schedule", "b", "--delta", "0 25 * * *"]);
    assert!(
        err.contains(r#"cron expression "0 25 * * *": hour 25 is out of range (0-23)"#),
        "{err}"
    );
    let out = f.ctl_ok(&["batch", "schedule", "b", "--delta", "@daily"]);
    assert!(out.contains("T00:00:00"), "{out}");
    let next = batch(&f, "b")["next_fire_us"].as_i64().unwrap();
    assert_eq!(next % (86_400 * 1_000_000), 0, "midnight UTC");

    // events selects by type, batch and mailbox.
    let lines = |args: &[&str]| -> Vec<serde_json::Value> {
        let mut a = vec!["--json", "events"];
        a.extend_from_slice(args);
        f.ctl_ok(&a)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let registered = lines(&["--type", "EndpointRegistered"]);
    assert_eq!(registered.len(), 2);
    assert!(
        registered
            .iter()
            .all(|e| e["event_type"] == "EndpointRegistered")
    );
    let of_batch = lines(&["--batch", "b"]);
    let types: Vec<&str> = of_batch
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["BatchCreated", "MailboxAdded", "ScheduleSet"]);
    assert_eq!(lines(&["--mailbox", "anna@old.example"]).len(), 1);
    let err = f.ctl_err(&["events", "--type", "NoSuchEvent"]);
    assert!(err.contains("no such event in the log"), "{err}");

    // audit export -o says what it wrote, on stderr.
    let file = f.dir().join("export.jsonl");
    let out = f.ctl(&["audit", "export", "-o", file.to_str().unwrap()]);
    assert!(out.status.success());
    let said = String::from_utf8(out.stderr).unwrap();
    let bytes = std::fs::metadata(&file).unwrap().len();
    assert!(
        said.contains(&format!(
            "wrote 5 records ({bytes} bytes) to {}",
            file.display()
        )),
        "{said}"
    );

    // --help gives the defaults.
    let help = String::from_utf8(f.ctl(&["batch", "start", "--help"]).stdout).unwrap();
    assert!(help.contains("default 90d"), "{help}");
    let help = String::from_utf8(f.ctl(&["endpoint", "add", "--help"]).stdout).unwrap();
    assert!(help.contains("[default: starttls]"), "{help}");
}

#[test]
fn a_second_ferryd_names_the_first_and_logs_carry_no_colour() {
    use std::process::{Command, Stdio};
    let mut f = Ferryd::start();
    f.stop();
    // Its log goes to a file, as under a service manager: no colour codes.
    let log = f.dir().join("ferryd.log");
    let mut first = f
        .command()
        .env_remove("NO_COLOR")
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    f.wait_for(30, "ferryd to answer", |f| {
        f.ctl(&["status"]).status.success()
    });

    let second = Command::new(ferry_tests::bin("ferryd"))
        .arg("--data-dir")
        .arg(&f.data_dir)
        .arg("--socket")
        .arg(f.dir().join("other.sock"))
        .arg("--config")
        .arg(f.config.as_ref().unwrap())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8(second.stderr).unwrap();
    let want = format!(
        "data directory {} is in use by pid {}",
        f.data_dir.display(),
        first.id()
    );
    assert!(err.contains(&want), "{err}");

    ferry_tests::signal(first.id(), libc::SIGTERM);
    first.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("ferryd ready"), "{text}");
    assert!(!text.contains('\u{1b}'), "{text}");
}

/// The report page of batch `name`.
fn report(f: &Ferryd, name: &str) -> String {
    let file = f.dir().join(format!("{name}.html"));
    f.ctl_ok(&["report", name, "-o", file.to_str().unwrap()]);
    std::fs::read_to_string(file).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_and_the_report_tell_what_is_unresolved() {
    use ferry_connectors::{MailSession, maildir};
    // A Maildir source: anna with 20 messages, one the destination refuses
    // (empty) and one over the size limit; bert has no mailbox at all.
    let root = tempfile::tempdir().unwrap();
    let anna = root.path().join("anna@old.example");
    let mut m = maildir::open(&anna, true).unwrap();
    let spec = SampleSpec {
        seed: 12,
        messages: 20,
        attachment_percent: 0,
        huge: 0,
    };
    sample::fill(&mut m, &spec).await.unwrap();
    let inbox = sample::folder_name(&["INBOX".into()], Some('/'));
    m.append(&inbox, &[], None, bytes::Bytes::new())
        .await
        .unwrap();
    let big = format!("Subject: big\r\n\r\n{}\r\n", "x".repeat(400_000));
    m.append(&inbox, &[], None, big.into()).await.unwrap();
    drop(m);
    let dst = Dovecot::start().unwrap();
    dst.add_users(&["anna", "bert"], PW).unwrap();
    let f = Ferryd::start();
    f.add_maildir_endpoint("old", root.path());
    f.add_imap_endpoint("new", dst.port(), dst.master_user());
    f.create_batch(
        "b",
        "old",
        "new",
        &["anna", "bert"],
        &["--max-item-size", "300KB"],
    );

    // A verify pass copies nothing and makes no mailbox Synced.
    pass(&f, "b", "verify");
    assert_eq!(mailbox(&f, "anna@old.example")["state"], "Queued");

    pass(&f, "b", "full");
    let a = mailbox(&f, "anna@old.example");
    assert_eq!(a["state"], "SyncedWithErrors");
    assert_eq!(
        (
            &a["totals"]["copied"],
            &a["totals"]["skipped"],
            &a["totals"]["failed"]
        ),
        (
            &serde_json::json!(20),
            &serde_json::json!(1),
            &serde_json::json!(1)
        )
    );
    assert_eq!(mailbox(&f, "bert@old.example")["state"], "Failed");

    // Verified again: still not Synced, and destination counts beside the source's.
    pass(&f, "b", "verify");
    let a = mailbox(&f, "anna@old.example");
    assert_eq!(a["state"], "SyncedWithErrors");
    let sum = |side: &str| -> u64 {
        let folders = a["folders"].as_object().unwrap();
        folders.values().map(|f| f[side].as_u64().unwrap()).sum()
    };
    assert_eq!((sum("source_items"), sum("destination_items")), (22, 20));
    let shown = f.ctl_ok(&["mailbox", "show", "anna@old.example"]);
    assert!(shown.contains("destination items"), "{shown}");

    // The report names the failed mailbox, and each failed and skipped item by class.
    let page = report(&f, "b");
    let bert_reason = mailbox(&f, "bert@old.example")["last_pass"]["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!bert_reason.is_empty());
    assert!(page.contains("<h3>Failed mailboxes</h3>"), "{page}");
    assert!(page.contains(&ferry_ctl_escape(&bert_reason)), "{page}");
    assert!(page.contains("not counted: the mailbox failed"), "{page}");
    let skipped = f.events_of("ItemSkipped");
    let reason = field(&skipped[0], "reason").as_str().unwrap();
    assert!(page.contains(&ferry_ctl_escape(reason)), "{page}");
    let failed = f.events_of("ItemFailed");
    let class = field(&failed[0], "class").as_str().unwrap();
    assert!(
        page.contains(&format!(
            "<tr class=\"class\"><th colspan=\"7\">{class} (1)"
        )),
        "{page}"
    );

    // Mended at the source, the item is copied by retry-errors: nothing is
    // failed any more, and the first pass's own figures keep the failure.
    ferry_tests::mend_empty_message(
        &anna.join("cur"),
        b"Subject: mended\r\nMessage-ID: <m@x>\r\n\r\nbody\r\n",
    );
    pass(&f, "b", "retry-errors");
    let a = mailbox(&f, "anna@old.example");
    assert_eq!(a["totals"]["failed"], 0, "{a}");
    let folders = a["folders"].as_object().unwrap();
    assert!(folders.values().all(|f| f["counts"]["failed"] == 0), "{a}");
    let b = batch(&f, "b");
    assert_eq!(b["totals"]["failed"], 0);
    let full = b["passes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pass"] == "Full")
        .unwrap();
    assert_eq!(full["counts"]["failed"], 1, "{full}");
    assert!(
        f.ctl_ok(&["mailbox", "show", "anna@old.example"])
            .contains("failed 0")
    );
    assert!(report(&f, "b").contains("No unresolved failed items."));
}

/// Text as the report writes it (the HTML escapes of `ferryctl report`).
fn ferry_ctl_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

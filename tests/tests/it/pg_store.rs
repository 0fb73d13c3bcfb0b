//! ferryd on the PostgreSQL event store: a real migration from a Maildir to
//! Dovecot whose every event lives in a PostgreSQL started for the test.

use ferry_connectors::maildir;
use ferry_tests::Ferryd;
use ferry_tests::mailcmp;
use ferry_tests::pair::{self, Pair};
use ferry_tests::sample::{self, SampleSpec};
use ferry_testservers::{Dovecot, Postgres};

const ADDR: &str = "anna@old.example";
const PW: &str = "pw-pg";

fn copied(f: &Ferryd) -> usize {
    f.events_of("ItemCopied").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_on_the_postgres_store_survives_a_kill_exactly_once() {
    let pg = Postgres::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("old");
    let mut s = maildir::open(&root.join(ADDR), true).unwrap();
    let spec = SampleSpec {
        seed: 11,
        messages: 300,
        attachment_percent: 5,
        huge: 0,
    };
    sample::fill(&mut s, &spec).await.unwrap();
    let dst = Dovecot::start().unwrap();
    dst.add_user("anna", PW).unwrap();

    let mut ferry = Ferryd::start_with_config(&format!("store = {:?}\n", pg.url()));
    ferry.add_maildir_endpoint("old", &root);
    let (master, master_pw) = dst.master_user();
    ferry.add_imap_endpoint("new", dst.port(), (master, master_pw));
    ferry.create_batch("b", "old", "new", &["anna"], &["--max-concurrent", "1"]);
    // The events are in PostgreSQL, not under the data directory.
    assert!(!ferry.data_dir.join("log").exists());
    let rows = |pg: &Postgres| -> u64 {
        let out = pg.psql("SELECT count(*) FROM ferry_log").unwrap();
        out.trim().parse().unwrap()
    };
    assert_eq!(rows(&pg), ferry.head());

    ferry.ctl_ok(&["batch", "start", "b", "--pass", "full"]);
    ferry.wait_for(60, "copying has begun", |f| copied(f) > 20);
    ferry.kill();
    ferry.launch();
    // The views are rebuilt from PostgreSQL after the crash.
    let show = ferry.ctl_json(&["batch", "show", "b"]);
    assert_eq!(show["data"]["name"], "b", "{show}");
    // The interrupted pass goes on by itself.
    assert!(
        ferry
            .ctl(&["batch", "wait", "b", "--timeout", "300"])
            .status
            .success()
    );

    let src = mailcmp::contents(&mut maildir::open(&root.join(ADDR), false).unwrap()).await;
    let mut d = ferry_tests::imap_login(dst.port(), "anna", PW).await;
    let dst_seen = mailcmp::contents(&mut d).await;
    assert_eq!(mailcmp::diff(&src, &dst_seen), Vec::<String>::new());
    assert_eq!(copied(&ferry), 300, "each message copied once");
    assert_eq!(rows(&pg), ferry.head());

    // The exported log verifies: one chain, no holes.
    let export = tmp.path().join("audit.jsonl");
    ferry.ctl_ok(&["audit", "export", "-o", export.to_str().unwrap()]);
    let verify = ferry.ctl(&["audit", "verify", export.to_str().unwrap()]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_share_the_log_and_the_secrets_and_a_wrong_key_is_refused() {
    let pg = Postgres::start().unwrap();
    let dst = Dovecot::start().unwrap();
    dst.add_user("anna", PW).unwrap();
    let a = Ferryd::start_with_config(&format!("store = {:?}\n", pg.url()));
    let key = a.data_dir.join("secret.key");
    let b = Ferryd::start_with_config(&format!(
        "store = {:?}\nsecret_key_file = {:?}\n",
        pg.url(),
        key.display().to_string()
    ));
    // A secret stored through one worker is used by the other.
    let (master, master_pw) = dst.master_user();
    a.add_imap_endpoint("new", dst.port(), (master, master_pw));
    b.wait_for(10, "worker b sees the endpoint", |f| {
        f.ctl_ok(&["endpoint", "list"]).contains("new")
    });
    b.ctl_ok(&["endpoint", "verify", "new", "--as", "anna"]);
    let stored = pg.psql("SELECT count(*) FROM ferry_secrets").unwrap();
    assert!(stored.trim().parse::<u64>().unwrap() >= 2, "{stored}");
    let sealed = pg
        .psql("SELECT encode(sealed, 'escape') FROM ferry_secrets")
        .unwrap();
    assert!(!sealed.contains(master_pw), "a secret in the clear");
    assert!(!a.data_dir.join("secrets").exists() || dir_is_empty(&a.data_dir.join("secrets")));

    // A worker with another key refuses to start, naming its key file.
    let tmp = tempfile::tempdir().unwrap();
    let other = tmp.path().join("other.key");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&other)
            .unwrap();
        std::io::Write::write_all(&mut f, &[7u8; 32]).unwrap();
    }
    let config = tmp.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "store = {:?}\nsecret_key_file = {:?}\n",
            pg.url(),
            other.display().to_string()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(ferry_tests::bin("ferryd"))
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .arg("--socket")
        .arg(tmp.path().join("c.sock"))
        .arg("--config")
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("does not open the fleet's secrets") && err.contains("other.key"),
        "{err}"
    );
}

fn dir_is_empty(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_leading_worker_dies_another_finishes_its_pass_exactly_once() {
    let pg = Postgres::start().unwrap();
    let config = format!("store = {:?}\n", pg.url());
    let Pair {
        src,
        dst,
        ferry: mut a,
        ..
    } = Pair::start("b", &["anna"], Some(&config));
    pair::add_mail(&src, "anna", 12, 300).await;
    let holder = || pg.psql("SELECT holder FROM ferry_leader").unwrap();
    let a_dir = a.data_dir.display().to_string();
    a.wait_for(10, "worker a leads", |_| holder().contains(&a_dir));
    let key = a.data_dir.join("secret.key");
    let b = Ferryd::start_with_config(&format!(
        "{config}secret_key_file = {:?}\n",
        key.display().to_string()
    ));
    // Asked of the standby: the leader's engine runs it.
    b.wait_for(10, "worker b sees the batch", |f| {
        f.ctl(&["batch", "show", "b"]).status.success()
    });
    b.ctl_ok(&["batch", "start", "b", "--pass", "full"]);
    a.wait_for(60, "copying has begun", |f| copied(f) > 20);
    a.kill();
    b.wait_for(20, "worker b leads", |f| {
        holder().contains(&f.data_dir.display().to_string())
    });
    assert!(
        b.ctl(&["batch", "wait", "b", "--timeout", "300"])
            .status
            .success()
    );
    let want = pair::contents(&src, "anna").await;
    assert_eq!(pair::count(&want), 300);
    assert_eq!(
        mailcmp::diff(&want, &pair::contents(&dst, "anna").await),
        Vec::<String>::new()
    );
    // The destination equals the source (no duplicate either), and the log
    // records each message copied once; items the dead leader left in doubt
    // and had not written got a second intent, as after any crash.
    assert_eq!(
        copied(&b),
        300,
        "each message copied once across the takeover"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_daemons_log_moves_into_postgres_with_its_chain() {
    let pg = Postgres::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // A single daemon on its own log copies the mailbox once.
    let Pair {
        src,
        dst,
        ferry: mut alone,
        ..
    } = Pair::start("b", &["anna"], None);
    pair::add_mail(&src, "anna", 21, 40).await;
    alone.run_pass("b", "full");
    let head = alone.head();
    alone.stop();

    let import = |data: &std::path::Path| {
        std::process::Command::new(ferry_tests::bin("ferryd"))
            .arg("import-log")
            .arg("--data-dir")
            .arg(data)
            .arg("--store")
            .arg(pg.url())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let out = import(&alone.data_dir);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains(&format!("imported {head} events")), "{said}");
    let rows = pg.psql("SELECT count(*) FROM ferry_log").unwrap();
    assert_eq!(rows.trim().parse::<u64>().unwrap(), head);
    // A second import would mix two logs: refused, nothing written.
    let again = import(&alone.data_dir);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        !again.status.success() && err.contains("already holds"),
        "{err}"
    );

    // A worker on PostgreSQL with the daemon's key goes on from there: its
    // views are the daemon's, and the secrets came along (it logs in).
    let key = alone.data_dir.join("secret.key");
    let mut worker = Ferryd::configured(&format!(
        "store = {:?}\nsecret_key_file = {:?}\n",
        pg.url(),
        key.display().to_string()
    ));
    let log = tmp.path().join("worker.log");
    worker.launch_logged(&log);
    assert_eq!(worker.head(), head);
    assert_eq!(copied(&worker), 40);
    // The delta logs in at the destination with the imported secret, and
    // finds nothing left to copy.
    worker.run_pass("b", "delta");
    assert_eq!(
        mailcmp::diff(
            &pair::contents(&src, "anna").await,
            &pair::contents(&dst, "anna").await
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        copied(&worker),
        40,
        "the delta copied nothing again: {}",
        std::fs::read_to_string(&log).unwrap()
    );
    let passes = worker.events_of("PassFinished");
    assert_eq!(passes.len(), 2);
    assert_eq!(
        passes[1]["event"]["PassFinished"]["outcome"], "Succeeded",
        "{}",
        passes[1]
    );
    // One chain from the daemon's first event to the worker's last.
    let export = tmp.path().join("audit.jsonl");
    worker.ctl_ok(&["audit", "export", "-o", export.to_str().unwrap()]);
    let verify = worker.ctl(&["audit", "verify", export.to_str().unwrap()]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

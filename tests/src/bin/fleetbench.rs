//! fleetbench: what more workers on one PostgreSQL store buy.
//!
//! ```text
//! cargo build --release -p ferryd -p ferry-ctl
//! cargo run --release -p ferry-tests --bin fleetbench -- [--rtt 40] [--mailboxes 16] [--messages 60] [--per-worker 2] [--cap 100] [--fsync 1]
//! ```
//!
//! A full pass of one batch of `--mailboxes` mailboxes, between two Dovecot
//! servers reached through a delay proxy of `--rtt` ms round trip (so the
//! link, not this machine's CPU, is what a worker waits on), by 1, 2 and 4
//! ferryd workers, each running up to `--per-worker` mailboxes at once; each
//! run on a fresh PostgreSQL and fresh destination users. Both endpoints
//! allow `--cap` connections across the fleet: by default more than 4
//! workers' mailboxes and spares ever ask for, so the figures show what
//! workers buy; `--cap 20` (ferryd's default) shows a cap-bound fleet. It prints the
//! throughput of each and its ratio to one worker, then the store's append
//! and replay rates beside the segment store's, measured in the same run.
//! `--fsync 0` runs the passes' PostgreSQL without fsync, to show what the
//! fleet's commits (one at a time, under the log's head lock) cost them; a
//! fleet must not run so.

use std::time::{Duration, Instant};

use ferry_tests::Ferryd;
use ferry_tests::delayproxy::{DelayProxy, Link};
use ferry_tests::pair::{self, PW};
use ferry_testservers::{Dovecot, Postgres};

/// What every run shares.
struct Rig {
    users: Vec<String>,
    src: Dovecot,
    dst: Dovecot,
    /// The delay proxies' ports, to the source and the destination.
    ports: (u16, u16),
    per_worker: u64,
    messages: u64,
    /// Each endpoint's `--max-connections`.
    cap: u64,
    /// Whether the passes' PostgreSQL syncs its commits.
    fsync: bool,
}

/// One timed pass by `workers` workers; returns its seconds.
fn run(rig: &Rig, workers: usize, run_no: usize) -> f64 {
    let Rig {
        users,
        src,
        dst,
        ports,
        per_worker,
        messages,
        cap,
        fsync,
    } = rig;
    let pg = Postgres::start_with(*fsync).expect("start PostgreSQL (apt-get install postgresql)");
    let mut csv = String::from("SourceEmail,DestinationEmail,SourceLogin,DestinationLogin\n");
    for u in users {
        let to = format!("{u}r{run_no}");
        dst.add_user(&to, PW).unwrap();
        csv.push_str(&format!("{u}@old.example,{to}@new.example,{u},{to}\n"));
    }
    let mut fleet: Vec<Ferryd> = Vec::new();
    for n in 0..workers {
        let key = fleet
            .first()
            .map(|w| {
                format!(
                    "secret_key_file = {:?}\n",
                    w.data_dir.join("secret.key").display().to_string()
                )
            })
            .unwrap_or_default();
        let w = Ferryd::start_with_config(&format!(
            "store = {:?}\n{key}[fleet]\nworker = \"w{n}\"\n",
            pg.url()
        ));
        if n == 0 {
            w.add_imap_endpoint("old", ports.0, src.master_user());
            w.add_imap_endpoint("new", ports.1, src.master_user());
            for endpoint in ["old", "new"] {
                let cap = cap.to_string();
                w.ctl_ok(&["endpoint", "update", endpoint, "--max-connections", &cap]);
            }
            let file = w.file("b.csv", &csv);
            let mc = per_worker.to_string();
            w.ctl_ok(&[
                "batch",
                "create",
                "b",
                "--source",
                "old",
                "--destination",
                "new",
                "--csv",
                file.to_str().unwrap(),
                "--max-concurrent",
                &mc,
            ]);
        }
        fleet.push(w);
    }
    for w in &fleet {
        w.wait_for(30, "every worker sees the batch", |f| {
            f.ctl(&["batch", "show", "b"]).status.success()
        });
    }
    let t = Instant::now();
    fleet[0].ctl_ok(&["batch", "start", "b", "--pass", "full"]);
    fleet[0].ctl_ok(&["batch", "wait", "b", "--timeout", "3600"]);
    let secs = t.elapsed().as_secs_f64();
    let copied = fleet[0].events_of("ItemCopied").len() as u64;
    assert_eq!(
        copied,
        users.len() as u64 * messages,
        "every message copied once"
    );
    let spread: std::collections::BTreeSet<String> = fleet[0]
        .events_of("MailboxLeased")
        .iter()
        .map(|e| e["event"]["MailboxLeased"]["worker"].to_string())
        .collect();
    println!(
        "  {workers} worker(s): {secs:.1} s, mailboxes taken by {} worker(s)",
        spread.len()
    );
    secs
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rtt = ferry_tests::bench::arg("--rtt", 40);
    let mailboxes = ferry_tests::bench::arg("--mailboxes", 16);
    let messages = ferry_tests::bench::arg("--messages", 60);
    let per_worker = ferry_tests::bench::arg("--per-worker", 2);
    let cap = ferry_tests::bench::arg("--cap", 100);
    let fsync = ferry_tests::bench::arg("--fsync", 1) != 0;
    let src = Dovecot::start().expect("start Dovecot");
    let dst = Dovecot::start().expect("start Dovecot");
    let users: Vec<String> = (0..mailboxes).map(|i| format!("u{i:02}")).collect();
    for (i, u) in users.iter().enumerate() {
        src.add_user(u, PW).unwrap();
        pair::add_mail(&src, u, 500 + i as u64, messages as usize).await;
    }
    let sp = DelayProxy::start(src.port(), Link::rtt_ms(rtt));
    let dp = DelayProxy::start(dst.port(), Link::rtt_ms(rtt));
    println!(
        "full pass of {mailboxes} mailboxes x {messages} messages over a {rtt} ms round trip, \
         {per_worker} mailboxes at once per worker, {cap} connections per endpoint{}",
        if fsync {
            ""
        } else {
            ", PostgreSQL without fsync"
        }
    );
    let rig = Rig {
        users,
        src,
        dst,
        ports: (sp.port(), dp.port()),
        per_worker,
        messages,
        cap,
        fsync,
    };
    let mut rows = Vec::new();
    for (i, workers) in [1usize, 2, 4].into_iter().enumerate() {
        let secs = tokio::task::block_in_place(|| run(&rig, workers, i));
        rows.push((workers, secs));
        std::thread::sleep(Duration::from_millis(500));
    }
    let total = (mailboxes * messages) as f64;
    let one = rows[0].1;
    println!();
    println!("| workers | seconds | messages/s | vs 1 worker |");
    println!("|---|---|---|---|");
    for (w, secs) in &rows {
        println!(
            "| {w} | {secs:.1} | {:.0} | {:.2}x |",
            total / secs,
            one / secs
        );
    }
    let four = one / rows[2].1;
    println!();
    println!(
        "goal: 4 workers at least 3.5x one worker: {:.2}x, {}",
        four,
        if four >= 3.5 { "met" } else { "not met" }
    );
    println!();
    let pg = Postgres::start_with(true).expect("start PostgreSQL");
    ferry_tests::storerates::compare(&pg.url(), 2_000, 50_000).await;
}

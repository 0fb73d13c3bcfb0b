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
    let stats = "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()) \
                 || ' ' || (SELECT wal_sync FROM pg_stat_wal) || ' ' || (SELECT wal_sync_time FROM pg_stat_wal)";
    pg.psql("ALTER SYSTEM SET track_wal_io_timing = on")
        .unwrap();
    if std::env::var_os("FLEETBENCH_PGLOG").is_some() {
        pg.psql("ALTER SYSTEM SET log_min_duration_statement = 0")
            .unwrap();
        pg.psql("ALTER SYSTEM SET log_line_prefix = '%m %p '")
            .unwrap();
    }
    pg.psql("SELECT pg_reload_conf()").unwrap();
    let stats_at = |pg: &Postgres| -> Vec<f64> {
        pg.psql(stats)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect()
    };
    let before = stats_at(&pg);
    let cpu = Cpu::now();
    let ferryd_cpu: f64 = fleet.iter().map(|w| cpu_s(w.pid())).sum();
    let began = now_s();
    let t = Instant::now();
    fleet[0].ctl_ok(&["batch", "start", "b", "--pass", "full"]);
    fleet[0].ctl_ok(&["batch", "wait", "b", "--timeout", "3600"]);
    let secs = t.elapsed().as_secs_f64();
    let (ended, busy) = (now_s(), cpu.busy_since());
    let ferryd_cpu = fleet.iter().map(|w| cpu_s(w.pid())).sum::<f64>() - ferryd_cpu;
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
    phases(
        &fleet[0].events(),
        began,
        ended,
        workers * *per_worker as usize,
        busy,
    );
    let after = stats_at(&pg);
    if std::env::var_os("FLEETBENCH_PGLOG").is_some() {
        let to = format!("/tmp/fleet-pg-{workers}.log");
        std::fs::copy(pg.dir().join("server.log"), &to).unwrap();
        println!("    PostgreSQL's log: {to}");
    }
    if let ([c0, s0, t0], [c1, s1, t1]) = (before.as_slice(), after.as_slice()) {
        println!(
            "    PostgreSQL: {:.0} commits ({:.2} a message), {:.0} WAL syncs taking {:.0} ms",
            c1 - c0,
            (c1 - c0) / copied as f64,
            s1 - s0,
            t1 - t0
        );
    }
    println!(
        "    ferryd CPU {:.2} s in all, {:.2} ms a message",
        ferryd_cpu,
        1000.0 * ferryd_cpu / copied as f64
    );
    secs
}

/// One mailbox's events in order, runs of one kind folded, with their
/// offsets from its lease.
fn trace(events: &[serde_json::Value], time: &dyn Fn(&serde_json::Value) -> f64) {
    let Some(first) = events.iter().find(|e| e["event_type"] == "MailboxLeased") else {
        return;
    };
    let mailbox = first["event"]["MailboxLeased"]["mailbox"].clone();
    let t0 = time(first);
    let mut run: Option<(String, usize, f64, f64)> = None;
    for e in events {
        let kind = e["event_type"].as_str().unwrap_or_default().to_string();
        let body = &e["event"][kind.as_str()];
        let mine = body["mailbox"] == mailbox
            || e["stream"]
                .as_str()
                .unwrap_or_default()
                .ends_with(mailbox.as_str().unwrap_or("-"));
        if !mine || time(e) < t0 {
            continue;
        }
        let t = time(e) - t0;
        match &mut run {
            Some((k, n, _, last)) if *k == kind => {
                *n += 1;
                *last = t;
            }
            _ => {
                if let Some((k, n, a, b)) = run.take() {
                    println!("      {a:6.3}..{b:6.3} {k} x{n}");
                }
                run = Some((kind, 1, t, t));
            }
        }
    }
    if let Some((k, n, a, b)) = run {
        println!("      {a:6.3}..{b:6.3} {k} x{n}");
    }
}

/// Seconds since the Unix epoch, as the log's times are.
fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A process's CPU time so far (user and system), in seconds.
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's closing parenthesis; utime and stime
    // are the 14th and 15th of the line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum::<f64>() / 100.0
}

/// The machine's CPU counters (`/proc/stat`): busy and total ticks.
struct Cpu(u64, u64);

impl Cpu {
    fn now() -> Cpu {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let ticks: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        // idle and iowait are the 4th and 5th counters.
        let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
        let total: u64 = ticks.iter().take(8).sum();
        Cpu(total - idle, total)
    }

    /// The share of the machine's CPU time spent busy since `self`.
    fn busy_since(&self) -> f64 {
        let now = Cpu::now();
        (now.0 - self.0) as f64 / (now.1 - self.1).max(1) as f64
    }
}

/// Where a run's seconds went, from its events' times: before the first
/// lease, mailboxes at work (and how full the workers' places were), and
/// after the last mailbox ended.
fn phases(events: &[serde_json::Value], began: f64, ended: f64, places: usize, cpu: f64) {
    let time = |e: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(e["time"].as_str().unwrap_or_default())
            .map(|t| t.timestamp_micros() as f64 / 1e6)
            .unwrap_or(f64::NAN)
    };
    let times = |kind: &str| -> Vec<f64> {
        events
            .iter()
            .filter(|e| e["event_type"] == kind)
            .map(time)
            .collect()
    };
    let first = |kind: &str| times(kind).into_iter().fold(f64::INFINITY, f64::min);
    let last = |kind: &str| times(kind).into_iter().fold(f64::NEG_INFINITY, f64::max);
    let mut open = std::collections::HashMap::new();
    let mut spans = Vec::new();
    for e in events {
        let (kind, body) = (e["event_type"].as_str().unwrap_or_default(), &e["event"]);
        match kind {
            "MailboxPassStarted" => {
                open.insert(body[kind]["mailbox"].to_string(), time(e));
            }
            "MailboxPassFinished" => {
                if let Some(s) = open.remove(&body[kind]["mailbox"].to_string()) {
                    spans.push(time(e) - s);
                }
            }
            _ => {}
        }
    }
    if std::env::var_os("FLEETBENCH_TRACE").is_some() {
        trace(events, &time);
    }
    let (lease, started, done) = (
        first("MailboxLeased"),
        first("MailboxPassStarted"),
        last("MailboxPassFinished"),
    );
    let work: f64 = spans.iter().sum();
    let mean = work / spans.len().max(1) as f64;
    let max = spans.iter().copied().fold(0.0, f64::max);
    println!(
        "    start to first lease {:.2} s, to first mailbox {:.2} s; mailboxes {:.2} s \
         (each {mean:.2} s on average, {max:.2} s at most; places busy {:.0}%); \
         last mailbox to pass end {:.2} s, to wait's return {:.2} s; machine CPU busy {:.0}%",
        lease - began,
        started - began,
        done - started,
        100.0 * work / ((done - started) * places as f64),
        last("PassFinished") - done,
        ended - done,
        100.0 * cpu,
    );
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

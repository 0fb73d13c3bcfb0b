//! A fleet: three ferryd workers on one PostgreSQL store share a pass's
//! mailboxes by leases, over two real Dovecot servers. Workers die, pause
//! past their leases and lose the database mid-pass; every mailbox ends
//! copied once, and the log shows who held each mailbox when. An
//! endpoint's connection cap and the back-offs it asks for hold across the
//! whole fleet.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use ferry_tests::delayproxy::{DelayProxy, Link};
use ferry_tests::ews_sim::{EwsSim, SimConfig, Throttle};
use ferry_tests::faultproxy::FaultProxy;
use ferry_tests::pair::{self, PW};
use ferry_tests::{Ferryd, mailcmp, signal};
use ferry_testservers::{Dovecot, Postgres};

/// Short leases, so that a dead worker's mailboxes move on quickly.
const LEASE_S: u64 = 3;
const USERS: [&str; 12] = [
    "u01", "u02", "u03", "u04", "u05", "u06", "u07", "u08", "u09", "u10", "u11", "u12",
];

struct Fleet {
    pg: Postgres,
    src: Dovecot,
    dst: Dovecot,
    workers: Vec<Ferryd>,
    logs: Vec<PathBuf>,
    /// Between the workers and the source, when its cap is under test.
    proxy: Option<FaultProxy>,
    /// Between the workers and the source, when the mailboxes must be slow.
    _link: Option<DelayProxy>,
    _tmp: tempfile::TempDir,
}

fn worker_config(url: &str, name: &str, key: Option<&std::path::Path>) -> String {
    let key = key
        .map(|k| format!("secret_key_file = {:?}\n", k.display().to_string()))
        .unwrap_or_default();
    format!("store = {url:?}\n{key}[fleet]\nworker = {name:?}\nlease_s = {LEASE_S}\n")
}

impl Fleet {
    /// PostgreSQL, two Dovecots with `users`, `messages` each at the
    /// source, and three workers w1..w3 with batch `b` (each worker runs up
    /// to `per_worker` mailboxes at once).
    async fn start(users: &[&str], messages: usize, per_worker: &str) -> Fleet {
        Fleet::start_capped(users, messages, per_worker, None).await
    }

    /// As [`Fleet::start`]; with `cap`, the workers reach the source through
    /// a proxy that counts connections, and its endpoint allows `cap`.
    async fn start_capped(
        users: &[&str],
        messages: usize,
        per_worker: &str,
        cap: Option<u32>,
    ) -> Fleet {
        Fleet::start_with(users, messages, per_worker, cap, None).await
    }

    /// As [`Fleet::start`], the workers reaching the source over `link`, so
    /// that each mailbox takes seconds.
    async fn start_slow(users: &[&str], messages: usize, per_worker: &str, link: Link) -> Fleet {
        Fleet::start_with(users, messages, per_worker, None, Some(link)).await
    }

    async fn start_with(
        users: &[&str],
        messages: usize,
        per_worker: &str,
        cap: Option<u32>,
        link: Option<Link>,
    ) -> Fleet {
        let pg = Postgres::start().unwrap();
        let src = Dovecot::start().unwrap();
        let dst = Dovecot::start().unwrap();
        src.add_users(users, PW).unwrap();
        dst.add_users(users, PW).unwrap();
        for (n, u) in users.iter().enumerate() {
            pair::add_mail(&src, u, 100 + n as u64, messages).await;
        }
        let proxy = cap.map(|_| FaultProxy::start(src.port()));
        let link = link.map(|l| DelayProxy::start(src.port(), l));
        let src_port = match (&proxy, &link) {
            (Some(p), _) => p.port(),
            (None, Some(l)) => l.port(),
            (None, None) => src.port(),
        };
        let tmp = tempfile::tempdir().unwrap();
        let mut workers = Vec::new();
        let mut logs = Vec::new();
        let mut key = None;
        for n in 1..=3 {
            let name = format!("w{n}");
            let mut w = Ferryd::configured(&worker_config(&pg.url(), &name, key.as_deref()));
            let log = tmp.path().join(format!("{name}.log"));
            w.launch_logged(&log);
            if key.is_none() {
                key = Some(w.data_dir.join("secret.key"));
                w.add_imap_endpoint("old", src_port, src.master_user());
                w.add_imap_endpoint("new", dst.port(), src.master_user());
                if let Some(cap) = cap {
                    let cap = cap.to_string();
                    w.ctl_ok(&["endpoint", "update", "old", "--max-connections", &cap]);
                }
                w.create_batch("b", "old", "new", users, &["--max-concurrent", per_worker]);
            }
            workers.push(w);
            logs.push(log);
        }
        for w in &workers {
            w.wait_for(10, "the worker sees the batch", |f| {
                f.ctl(&["batch", "show", "b"]).status.success()
            });
        }
        Fleet {
            pg,
            src,
            dst,
            workers,
            logs,
            proxy,
            _link: link,
            _tmp: tmp,
        }
    }

    /// Connection slots of endpoint `old` held now, by worker.
    fn slots(&self) -> BTreeMap<String, u64> {
        self.pg
            .psql(
                "SELECT holder, count(*) FROM ferry_slots WHERE endpoint = 'old' \
                 AND holder IS NOT NULL \
                 AND expires_us > (extract(epoch from clock_timestamp()) * 1000000)::bigint \
                 GROUP BY holder",
            )
            .unwrap()
            .lines()
            .filter_map(|l| {
                let (w, n) = l.split_once('|')?;
                Some((w.trim().to_string(), n.trim().parse().ok()?))
            })
            .collect()
    }

    /// The worker that leads (fires schedules, starts and ends passes).
    fn leader(&self) -> usize {
        let holder = self.pg.psql("SELECT holder FROM ferry_leader").unwrap();
        (0..3)
            .find(|i| holder.trim() == format!("w{}", i + 1))
            .expect("a worker leads")
    }

    /// `what` of the live, unfinished leases that match `and`.
    fn live_leases(&self, what: &str, and: &str) -> Vec<String> {
        self.pg
            .psql(&format!(
                "SELECT {what} FROM ferry_leases WHERE NOT done AND holder IS NOT NULL {and} \
                 AND expires_us > (extract(epoch from clock_timestamp()) * 1000000)::bigint"
            ))
            .unwrap()
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// The mailboxes `worker` holds a lease on now.
    fn held_by(&self, worker: &str) -> Vec<String> {
        self.live_leases("mailbox", &format!("AND holder = '{worker}'"))
    }

    /// Waits until `worker` holds a mailbox that has some of its `messages`
    /// copied and a good part still to copy (seen from worker `by`).
    fn mid_copy(&self, by: usize, worker: &str, messages: usize) -> String {
        let mut mid = None;
        self.workers[by].wait_for(120, "the worker holds a mailbox mid-copy", |w| {
            mid = self
                .held_by(worker)
                .into_iter()
                .find(|m| (5..messages - 40).contains(&copied_of(w, m)));
            mid.is_some()
        });
        mid.unwrap()
    }

    /// Workers holding a live mailbox lease now.
    fn holders(&self) -> BTreeSet<String> {
        self.live_leases("DISTINCT holder", "")
            .into_iter()
            .collect()
    }

    /// Every user's mailbox at the destination equals its source, item by
    /// item (a duplicate or a loss shows as a difference).
    async fn assert_copied(&self, users: &[&str], messages: usize) {
        for u in users {
            let want = pair::contents(&self.src, u).await;
            assert_eq!(pair::count(&want), messages, "{u} at the source");
            let got = pair::contents(&self.dst, u).await;
            assert_eq!(mailcmp::diff(&want, &got), Vec::<String>::new(), "{u}");
            assert_eq!(pair::count(&got), messages, "{u} at the destination");
        }
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.logs[i]).unwrap_or_default()
    }
}

fn field<'a>(e: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    &e["event"][e["event_type"].as_str().unwrap()][name]
}

/// One grant of a mailbox's lease, as the log records it.
#[derive(Debug, Clone)]
struct Grant {
    seq: u64,
    worker: String,
    lease: u64,
    previous: Option<String>,
}

/// The lease grants of each (mailbox, pass), in log order, checked: the
/// lease numbers grow, a grant names the worker before it as `previous`,
/// and no event of the mailbox follows a grant unless that grant is the
/// newest (so two workers never wrote the mailbox at once: everything after
/// a takeover was written under the new lease).
fn grants(events: &[serde_json::Value]) -> BTreeMap<(String, u64), Vec<Grant>> {
    let mut out: BTreeMap<(String, u64), Vec<Grant>> = BTreeMap::new();
    for e in events.iter().filter(|e| e["event_type"] == "MailboxLeased") {
        let key = (
            field(e, "mailbox").as_str().unwrap().to_string(),
            field(e, "pass_id").as_u64().unwrap(),
        );
        out.entry(key).or_default().push(Grant {
            seq: e["seq"].as_u64().unwrap(),
            worker: field(e, "worker").as_str().unwrap().to_string(),
            lease: field(e, "lease").as_u64().unwrap(),
            previous: field(e, "previous").as_str().map(str::to_string),
        });
    }
    for ((mailbox, pass), gs) in &out {
        for pair in gs.windows(2) {
            assert!(
                pair[1].lease > pair[0].lease,
                "{mailbox} pass {pass}: lease numbers do not grow: {gs:?}"
            );
            // None: the lease was given back (the work ended early) and
            // taken afresh; a takeover names the holder whose lease lapsed.
            if let Some(previous) = &pair[1].previous {
                assert_eq!(
                    previous, &pair[0].worker,
                    "{mailbox} pass {pass}: a takeover names someone else: {gs:?}"
                );
            }
        }
    }
    out
}

/// A link on which a mailbox of 120 test messages takes seconds.
fn slow_link() -> Link {
    Link {
        bytes_per_sec: Some(200_000),
        ..Link::rtt_ms(40)
    }
}

fn copied(f: &Ferryd) -> usize {
    f.events_of("ItemCopied").len()
}

fn copied_of(f: &Ferryd, mailbox: &str) -> usize {
    f.events_of("ItemCopied")
        .iter()
        .filter(|e| field(e, "mailbox") == mailbox)
        .count()
}

/// Waits for the batch's pass on `w` and checks it ended well.
fn wait_pass(w: &Ferryd) {
    let out = w.ctl(&["batch", "wait", "b", "--timeout", "300"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let finished = w.events_of("PassFinished");
    let last = finished.last().expect("the pass finished");
    assert_eq!(field(last, "outcome"), "Succeeded", "{last}");
    assert_eq!(finished.len(), 1, "one pass, finished once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_twelve_mailboxes_each_copied_once() {
    const MESSAGES: usize = 25;
    let f = Fleet::start(&USERS, MESSAGES, "2").await;
    f.workers[1].ctl_ok(&["batch", "start", "b", "--pass", "full"]);
    wait_pass(&f.workers[2]);
    f.assert_copied(&USERS, MESSAGES).await;
    let w = &f.workers[0];
    assert_eq!(
        copied(w),
        USERS.len() * MESSAGES,
        "each message copied once"
    );
    let events = w.events();
    let grants = grants(&events);
    assert_eq!(grants.len(), USERS.len(), "{grants:?}");
    // Nobody died: each mailbox was leased once, to one worker.
    for (key, gs) in &grants {
        assert_eq!(gs.len(), 1, "{key:?} leased more than once: {gs:?}");
    }
    let workers: BTreeSet<&str> = grants.values().map(|g| g[0].worker.as_str()).collect();
    assert!(workers.len() > 1, "the work was not spread: {workers:?}");
    // Every mailbox's work followed its grant in the log.
    for e in events
        .iter()
        .filter(|e| e["event_type"] == "MailboxPassStarted")
    {
        let m = field(e, "mailbox").as_str().unwrap();
        let g = &grants[&(m.to_string(), field(e, "pass_id").as_u64().unwrap())][0];
        assert!(
            e["seq"].as_u64().unwrap() > g.seq,
            "{m} started before its lease"
        );
    }
    // Each worker's status shows the fleet.
    let status = f.workers[1].ctl_json(&["status"]);
    let names: Vec<&str> = status["data"]["fleet"]["workers"]
        .as_array()
        .expect("workers in the status")
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["w1", "w2", "w3"], "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_mailboxes_are_finished_by_the_others() {
    const MESSAGES: usize = 120;
    // A worker that is not the leader, killed while it holds a mailbox
    // mid-copy (the slow link makes the copying last seconds; a mailbox
    // whose end was recorded is not taken over).
    let users = &USERS[..6];
    let mut f = Fleet::start_slow(users, MESSAGES, "1", slow_link()).await;
    f.workers[0].ctl_ok(&["batch", "start", "b", "--pass", "full"]);
    let leader = f.leader();
    let victim = (0..3).find(|i| *i != leader).unwrap();
    let name = format!("w{}", victim + 1);
    f.mid_copy(leader, &name, MESSAGES);
    f.workers[victim].kill();
    let killed_at = f.workers[leader].head();
    wait_pass(&f.workers[leader]);
    f.assert_copied(users, MESSAGES).await;
    let w = &f.workers[leader];
    assert_eq!(
        copied(w),
        users.len() * MESSAGES,
        "each message copied once"
    );
    let grants = grants(&w.events());
    let taken_over: Vec<_> = grants
        .values()
        .flat_map(|gs| gs.iter().filter(|g| g.previous.is_some()))
        .collect();
    assert!(!taken_over.is_empty(), "nothing was taken over: {grants:?}");
    for g in &taken_over {
        assert_eq!(g.previous.as_deref(), Some(name.as_str()), "{g:?}");
        assert_ne!(g.worker, name);
        assert!(g.seq > killed_at, "taken over before the kill: {g:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_paused_past_its_lease_cannot_write_when_it_wakes() {
    const MESSAGES: usize = 120;
    // Each mailbox takes seconds over a slow link, so that a pause can
    // land in the middle of its copying.
    let users = &USERS[..6];
    let f = Fleet::start_slow(users, MESSAGES, "1", slow_link()).await;
    f.workers[0].ctl_ok(&["batch", "start", "b", "--pass", "full"]);
    let leader = f.leader();
    let paused = (0..3).find(|i| *i != leader).unwrap();
    let name = format!("w{}", paused + 1);
    // Paused mid-copy of a mailbox: one whose end it had already recorded
    // is finished, and nobody takes it over. A pause that lands after the
    // end (the mailbox's last items go fast) is undone and tried again.
    let mut tries = 0;
    loop {
        let m = f.mid_copy(leader, &name, MESSAGES);
        signal(f.workers[paused].pid(), libc::SIGSTOP);
        std::thread::sleep(Duration::from_millis(300));
        let ended = f.workers[leader]
            .events_of("MailboxPassFinished")
            .iter()
            .any(|e| field(e, "mailbox") == m.as_str());
        if !ended {
            break;
        }
        signal(f.workers[paused].pid(), libc::SIGCONT);
        tries += 1;
        assert!(tries < 5, "never paused mid-copy");
    }
    // Another worker takes its mailbox once the lease has expired.
    f.workers[leader].wait_for(120, "its mailbox taken over", |w| {
        grants(&w.events())
            .values()
            .flatten()
            .any(|g| g.previous.as_deref() == Some(name.as_str()))
    });
    std::thread::sleep(Duration::from_millis(500));
    signal(f.workers[paused].pid(), libc::SIGCONT);
    wait_pass(&f.workers[leader]);
    f.assert_copied(users, MESSAGES).await;
    assert_eq!(
        copied(&f.workers[leader]),
        users.len() * MESSAGES,
        "each message copied once"
    );
    // The woken worker learnt that its lease was gone, and stopped: from
    // its work (a refused append), or from its lease thread.
    let log = f.log(paused);
    assert!(
        log.contains("lease lost")
            || log.contains("is no longer this worker's")
            || log.contains("lease taken over"),
        "{log}"
    );
    grants(&f.workers[leader].events());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_scheduling_worker_dies_the_next_fire_runs_once() {
    let mut f = Fleet::start(&USERS[..2], 5, "2").await;
    f.workers[0].ctl_ok(&["batch", "schedule", "b", "--delta", "*/4 * * * * *"]);
    let leader = f.leader();
    let other = (leader + 1) % 3;
    f.workers[other].wait_for(30, "a fire", |w| !w.events_of("ScheduleFired").is_empty());
    f.workers[leader].kill();
    let killed_at = f.workers[other].head();
    f.workers[other].wait_for(60, "a fire by the next leader", |w| {
        w.events_of("ScheduleFired")
            .iter()
            .any(|e| e["seq"].as_u64().unwrap() > killed_at)
    });
    f.workers[other].ctl_ok(&["batch", "schedule", "b", "--delta", "off"]);
    f.workers[other].ctl_ok(&["batch", "wait", "b", "--timeout", "120"]);
    let events = f.workers[other].events();
    let of = |kind: &str| -> Vec<&serde_json::Value> {
        events.iter().filter(|e| e["event_type"] == kind).collect()
    };
    let mut dues: Vec<i64> = [
        of("ScheduleFired"),
        of("ScheduleSkipped"),
        of("ScheduleMissed"),
    ]
    .concat()
    .iter()
    .map(|e| field(e, "due_us").as_i64().unwrap())
    .collect();
    let n = dues.len();
    dues.sort();
    dues.dedup();
    assert_eq!(dues.len(), n, "a fire was recorded twice");
    // Each fire's pass ran once.
    let started: Vec<u64> = of("PassStarted")
        .iter()
        .map(|e| field(e, "pass_id").as_u64().unwrap())
        .collect();
    let unique: BTreeSet<_> = started.iter().collect();
    assert_eq!(unique.len(), started.len(), "a pass started twice");
    assert_eq!(of("PassFinished").len(), started.len());
    f.assert_copied(&USERS[..2], 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_goes_on_across_a_restart_of_postgresql() {
    const MESSAGES: usize = 100;
    let mut f = Fleet::start(&USERS[..6], MESSAGES, "1").await;
    f.workers[0].ctl_ok(&["batch", "start", "b", "--pass", "full"]);
    f.workers[0].wait_for(120, "copying has begun", |w| copied(w) > 50);
    f.pg.restart().unwrap();
    wait_pass(&f.workers[1]);
    f.assert_copied(&USERS[..6], MESSAGES).await;
    assert_eq!(
        copied(&f.workers[2]),
        6 * MESSAGES,
        "each message copied once"
    );
    grants(&f.workers[2].events());
}

/// Connections to the source counted by the proxy between it and the
/// workers: never more than the endpoint's cap at once, whichever worker
/// opened them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_together_stay_within_the_sources_connection_cap() {
    const MESSAGES: usize = 40;
    let f = Fleet::start_capped(&USERS[..9], MESSAGES, "2", Some(2)).await;
    f.workers[0].ctl_ok(&["batch", "start", "b", "--pass", "full"]);
    // Every worker has work waiting while the cap is full.
    f.workers[0].wait_for(120, "every worker holds a mailbox", |_| {
        f.holders().len() == 3
    });
    let mut most_slots = 0;
    let proxy = f.proxy.as_ref().unwrap();
    while f.workers[0].events_of("PassFinished").is_empty() {
        let held: u64 = f.slots().values().sum();
        most_slots = most_slots.max(held);
        assert!(held <= 2, "slots held: {:?}", f.slots());
        assert!(
            proxy.peak_connections() <= 2,
            "peak {}",
            proxy.peak_connections()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_pass(&f.workers[1]);
    f.assert_copied(&USERS[..9], MESSAGES).await;
    assert_eq!(
        copied(&f.workers[2]),
        9 * MESSAGES,
        "each message copied once"
    );
    assert_eq!(proxy.peak_connections(), 2, "the cap was never reached");
    assert!(most_slots > 0, "no slot was seen taken");
    let workers: BTreeSet<String> = grants(&f.workers[0].events())
        .values()
        .map(|g| g[0].worker.clone())
        .collect();
    assert!(workers.len() > 1, "the work was not spread: {workers:?}");
    // Every slot was given back as its connection closed.
    f.workers[0].wait_for(10, "every slot given back", |_| f.slots().is_empty());
}

/// A worker killed while it holds connection slots does not keep them:
/// they lapse, and the others finish the pass within the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_connection_slots_are_taken_by_the_others() {
    const MESSAGES: usize = 80;
    let mut f = Fleet::start_capped(&USERS[..6], MESSAGES, "1", Some(2)).await;
    f.workers[0].ctl_ok(&["batch", "start", "b", "--pass", "full"]);
    let leader = f.leader();
    let victim = (0..3).find(|i| *i != leader).unwrap();
    let name = format!("w{}", victim + 1);
    f.workers[leader].wait_for(120, "the victim holds a slot mid-copy", |w| {
        f.slots().contains_key(&name) && copied(w) > 40
    });
    f.workers[victim].kill();
    let killed_at = f.workers[leader].head();
    wait_pass(&f.workers[leader]);
    f.assert_copied(&USERS[..6], MESSAGES).await;
    assert_eq!(
        copied(&f.workers[leader]),
        6 * MESSAGES,
        "each message copied once"
    );
    let proxy = f.proxy.as_ref().unwrap();
    assert!(
        proxy.peak_connections() <= 2,
        "peak {}",
        proxy.peak_connections()
    );
    // The others copied after the kill, some while the dead worker's slot
    // had not lapsed yet, the rest with both slots.
    let after = f.workers[leader]
        .events_of("ItemCopied")
        .iter()
        .filter(|e| e["seq"].as_u64().unwrap() > killed_at)
        .count();
    assert!(after > 0, "nothing copied after the kill");
    assert!(!f.slots().contains_key(&name), "{:?}", f.slots());
}

/// An `ErrorServerBusy` one worker meets holds every worker's requests to
/// that endpoint for its `BackOffMilliseconds`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_back_off_one_worker_is_told_holds_for_the_whole_fleet() {
    const BACK_OFF_MS: u64 = 2500;
    const MESSAGES: usize = 120;
    let users = &USERS[..6];
    let sim = EwsSim::start(SimConfig {
        latency: Duration::from_millis(20),
        ..SimConfig::default()
    });
    sim.add_account("migrator", "admin-pw", true, false);
    let pg = Postgres::start().unwrap();
    let dst = Dovecot::start().unwrap();
    for (n, u) in users.iter().enumerate() {
        let smtp = sim.add_user(u, PW);
        sim.populate(&smtp, MESSAGES, 1, 300 + n as u64);
    }
    dst.add_users(users, PW).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut workers = Vec::new();
    let mut key = None;
    for n in 1..=3 {
        let name = format!("w{n}");
        let mut w = Ferryd::configured(&worker_config(&pg.url(), &name, key.as_deref()));
        w.launch_logged(&tmp.path().join(format!("{name}.log")));
        if key.is_none() {
            key = Some(w.data_dir.join("secret.key"));
            w.add_ews_endpoint("ex", &sim, ("migrator", "admin-pw"), &[]);
            w.add_imap_endpoint("new", dst.port(), dst.master_user());
            w.create_ews_batch("b", ["ex", "new"], users, &["--max-concurrent", "2"]);
        }
        workers.push(w);
    }
    for w in &workers {
        w.wait_for(10, "the worker sees the batch", |f| {
            f.ctl(&["batch", "show", "b"]).status.success()
        });
    }
    workers[0].ctl_ok(&["batch", "start", "b", "--pass", "full"]);
    let live_holders = || -> usize {
        pg.psql(
            "SELECT count(DISTINCT holder) FROM ferry_leases WHERE NOT done \
             AND holder IS NOT NULL \
             AND expires_us > (extract(epoch from clock_timestamp()) * 1000000)::bigint",
        )
        .unwrap()
        .trim()
        .parse()
        .unwrap_or(0)
    };
    workers[0].wait_for(120, "every worker copying", |w| {
        live_holders() == 3 && copied(w) > 20
    });
    sim.throttle(
        None,
        Throttle::Busy {
            back_off_ms: BACK_OFF_MS,
        },
    );
    wait_pass(&workers[1]);
    let served = sim.served();
    let busy = served
        .iter()
        .find(|s| s.throttled.is_some())
        .expect("a request was throttled");
    // Requests already on their way when it was told may still arrive;
    // after that, nobody asks until the back-off ends.
    let (from, to) = (
        busy.at + Duration::from_millis(400),
        busy.at + Duration::from_millis(BACK_OFF_MS - 100),
    );
    let during: Vec<&str> = served
        .iter()
        .filter(|s| s.at > from && s.at < to)
        .map(|s| s.op.as_str())
        .collect();
    assert_eq!(during, Vec::<&str>::new(), "requests during the back-off");
    let after = served.iter().filter(|s| s.at >= to).count();
    assert!(after > 0, "the pass went on after the back-off");
    assert_eq!(
        copied(&workers[2]),
        users.len() * MESSAGES,
        "each message copied once"
    );
}

/// With nobody waiting, one mailbox's spare sessions use the places of a
/// fleet-wide cap that its own does not (more than half of it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_mailboxs_spares_use_more_than_half_of_the_cap() {
    const MESSAGES: usize = 60;
    let f = Fleet::start_capped(&USERS[..1], MESSAGES, "1", Some(4)).await;
    f.workers[0].ctl_ok(&["batch", "start", "b", "--pass", "full"]);
    wait_pass(&f.workers[0]);
    f.assert_copied(&USERS[..1], MESSAGES).await;
    let peak = f.proxy.as_ref().unwrap().peak_connections();
    // Its own session and two spares: more than half of 4, within it.
    assert_eq!(peak, 3, "sessions to the source at once");
}

/// A mailbox that finds the cap full of another mailbox's spares does not
/// wait for that mailbox to end: a spare gives its places back before its
/// next folder, and the cap is never exceeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spare_gives_its_places_to_a_mailbox_waiting_for_its_first() {
    const BIG: usize = 600;
    const SMALL: usize = 30;
    let f = Fleet::start_capped(&USERS[..1], BIG, "1", Some(4)).await;
    let late = &USERS[1..3];
    f.src.add_users(late, PW).unwrap();
    f.dst.add_users(late, PW).unwrap();
    for (n, u) in late.iter().enumerate() {
        pair::add_mail(&f.src, u, 200 + n as u64, SMALL).await;
    }
    f.workers[0].create_batch("c", "old", "new", late, &["--max-concurrent", "2"]);
    for w in &f.workers {
        w.wait_for(10, "the worker sees batch c", |w| {
            w.ctl(&["batch", "show", "c"]).status.success()
        });
    }
    let proxy = f.proxy.as_ref().unwrap();
    f.workers[0].ctl_ok(&["batch", "start", "b", "--pass", "full"]);
    f.workers[0].wait_for(60, "the big mailbox holds three sessions", |_| {
        proxy.peak_connections() >= 3
    });
    // One of these takes the last place, the other waits for one.
    f.workers[0].ctl_ok(&["batch", "start", "c", "--pass", "full"]);
    for batch in ["b", "c"] {
        f.workers[0].ctl_ok(&["batch", "wait", batch, "--timeout", "300"]);
    }
    let finished = f.workers[0].events_of("PassFinished");
    assert_eq!(finished.len(), 2);
    assert!(finished.iter().all(|e| field(e, "outcome") == "Succeeded"));
    f.assert_copied(&USERS[..1], BIG).await;
    f.assert_copied(late, SMALL).await;
    assert!(
        proxy.peak_connections() <= 4,
        "peak {}",
        proxy.peak_connections()
    );
    let gave = (0..3).any(|i| {
        f.log(i)
            .contains("a spare session gives its places to a mailbox waiting for one")
    });
    assert!(gave, "no spare gave way to the waiting mailbox");
}

//! Crash test of the copy engine: ferryd is SIGKILLed at random instants of
//! passes over two real Dovecot servers, restarted on the same data
//! directory, and left to resume the interrupted pass by itself. At the end
//! every source item must be at the destination exactly once.
//!
//! Each round adds mail at the source and starts a pass (full or delta),
//! then kills ferryd after a random delay between 50 ms and the measured
//! length of an uninterrupted pass, relaunches it, and repeats until a kill
//! lands after the pass finished. Two kill points are forced: right after
//! `batch start` returns, and shortly after a relaunch while items are
//! still in doubt (the settle phase). Between kills the log on disk is read
//! to classify where the kill landed.
//!
//! The default run makes at least 20 kills; `FERRY_ENGINE_CRASH_ROUNDS=1000`
//! makes 1000 (the long run), and `FERRY_ENGINE_CRASH_SEED=N` replays a
//! run's kill timings.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry_connectors::imap::{self, ImapAuth, ImapConfig, TlsMode};
use ferry_connectors::{FolderName, MailSession};
use ferry_events::{Event, EventStore, ItemKey, Outcome, SegmentStore};
use ferry_tests::mailcmp::{self, Contents};
use ferry_tests::sample::{self, SampleSpec};
use ferry_tests::{Ferryd, settled_in_log};
use ferry_testservers::Dovecot;
use rand::{Rng, SeedableRng};

const PW: &str = "crash-pw";
const USERS: [&str; 2] = ["anna", "bert"];
/// Messages per user in the first (full) pass and added per later round.
const FIRST: usize = 400;
const PER_ROUND: usize = 150;
/// Kills per pass before it is left to finish (bounds a round's length).
const MAX_KILLS_PER_PASS: usize = 8;

async fn login(d: &Dovecot, user: &str) -> imap::ImapSession {
    let cfg = ImapConfig {
        host: d.host().to_string(),
        port: d.port(),
        tls: TlsMode::None,
        ca_file: None,
        timeout: Duration::from_secs(30),
        fence: None,
    };
    let auth = ImapAuth::Login {
        user: user.into(),
        password: PW.into(),
    };
    imap::connect(&cfg, &auth).await.expect("login")
}

async fn contents(d: &Dovecot, user: &str) -> Contents {
    let mut s = login(d, user).await;
    let c = mailcmp::contents(&mut s).await;
    let _ = s.logout().await;
    c
}

fn folder_names() -> Vec<FolderName> {
    sample::folders()
        .iter()
        .map(|s| sample::folder_name(s, Some('/')))
        .collect()
}

/// Appends `n` generated messages (seed `seed`) to the sample folders.
async fn add_mail(d: &Dovecot, user: &str, seed: u64, n: usize) {
    let mut s = login(d, user).await;
    let names = folder_names();
    let spec = SampleSpec {
        seed,
        messages: n,
        attachment_percent: 0,
        huge: 0,
    };
    for m in sample::messages(&spec) {
        s.append(&names[m.folder], &m.flags, Some(m.date), m.body)
            .await
            .expect("append at the source");
    }
    let _ = s.logout().await;
}

/// The first fill: folders, messages, and byte-identical duplicates, so
/// settling must tell apart copies that share a digest.
async fn first_fill(d: &Dovecot, user: &str, seed: u64) {
    let mut s = login(d, user).await;
    let spec = SampleSpec {
        seed,
        messages: FIRST,
        attachment_percent: 0,
        huge: 0,
    };
    sample::fill(&mut s, &spec).await.expect("fill the source");
    let names = folder_names();
    for m in sample::messages(&spec).take(4) {
        s.append(&names[m.folder], &m.flags, Some(m.date), m.body)
            .await
            .expect("append a duplicate");
    }
    let _ = s.logout().await;
}

/// What the log on disk says, read incrementally while ferryd is down.
#[derive(Default)]
struct Tally {
    next: u64,
    /// Intents without an outcome yet: (mailbox, key) → seq of the intent.
    open: HashMap<(String, ItemKey), u64>,
    /// ItemCopied records per (mailbox, key).
    copied: HashMap<(String, ItemKey), usize>,
    intents: usize,
    requested: Vec<u64>,
    finished: HashMap<u64, Outcome>,
}

impl Tally {
    fn catch_up(&mut self, data_dir: &Path) {
        let store = SegmentStore::open(&data_dir.join("log")).expect("open the log after the kill");
        for env in store.read_all(self.next.max(1)) {
            let env = env.expect("read the log");
            self.next = env.seq + 1;
            match env.event {
                Event::PassRequested { .. } => self.requested.push(env.seq),
                Event::PassFinished {
                    pass_id, outcome, ..
                } => {
                    self.finished.insert(pass_id, outcome);
                }
                Event::ItemCopyIntent { mailbox, key, .. } => {
                    self.intents += 1;
                    self.open.insert((mailbox, key), env.seq);
                }
                Event::ItemCopied { mailbox, key, .. } => {
                    self.open.remove(&(mailbox.clone(), key.clone()));
                    *self.copied.entry((mailbox, key)).or_default() += 1;
                }
                Event::ItemFailed { mailbox, key, .. }
                | Event::ItemSkipped { mailbox, key, .. } => {
                    self.open.remove(&(mailbox, key));
                }
                _ => {}
            }
        }
    }

    /// Open intents written at or after `seq` (by the life just killed).
    fn open_since(&self, seq: u64) -> usize {
        self.open.values().filter(|s| **s >= seq).count()
    }

    fn open_before(&self, seq: u64) -> usize {
        self.open.values().filter(|s| **s < seq).count()
    }
}

#[derive(Default, Debug)]
struct Stats {
    kills: usize,
    before_finish: usize,
    after_finish: usize,
    /// The killed life had flushed intents whose appends had no outcome.
    during_appends: usize,
    right_after_start: usize,
    /// Killed while intents left by the previous kill were still unsettled.
    during_settle: usize,
    /// Kills aimed at the settle phase (short delay after a relaunch with doubts).
    settle_aimed: usize,
    passes: usize,
}

struct Rig {
    src: Dovecot,
    dst: Dovecot,
    ferry: Ferryd,
    /// ferryd's stderr over every relaunch.
    log: PathBuf,
}

fn setup() -> Rig {
    let src = Dovecot::start().unwrap();
    let dst = Dovecot::start().unwrap();
    src.add_users(&USERS, PW).unwrap();
    dst.add_users(&USERS, PW).unwrap();
    let ferry = Ferryd::start();
    for (name, d) in [("old", &src), ("new", &dst)] {
        ferry.add_imap_endpoint(name, d.port(), src.master_user());
    }
    ferry.create_batch("wave1", "old", "new", &USERS, &[]);
    let log = ferry.dir().join("ferryd.log");
    Rig {
        src,
        dst,
        ferry,
        log,
    }
}

fn kill_target() -> usize {
    std::env::var("FERRY_ENGINE_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// Runs one pass of `kind`, killing ferryd at random instants until a kill
/// lands after the pass finished (or the per-pass cap is reached, after
/// which the pass is left to finish).
fn crash_pass(
    rig: &mut Rig,
    tally: &mut Tally,
    stats: &mut Stats,
    rng: &mut rand::rngs::StdRng,
    kind: &str,
    typical: Duration,
    kill_at_start: bool,
) {
    rig.ferry
        .ctl_ok(&["batch", "start", "wave1", "--pass", kind]);
    stats.passes += 1;
    let mut life_start = tally.next.max(1);
    let mut first = true;
    let mut doubts_left = false;
    let max_ms = typical.as_millis().max(100) as u64;
    for _ in 0..MAX_KILLS_PER_PASS {
        let aim_settle = doubts_left && rng.random_bool(0.5);
        let delay = if first && kill_at_start {
            Duration::ZERO
        } else if aim_settle {
            Duration::from_millis(rng.random_range(0..250))
        } else {
            Duration::from_millis(rng.random_range(50..=max_ms))
        };
        std::thread::sleep(delay);
        rig.ferry.kill();
        stats.kills += 1;
        tally.catch_up(&rig.ferry.data_dir);
        let pass_id = *tally.requested.last().expect("the pass was requested");
        if first && kill_at_start {
            stats.right_after_start += 1;
        }
        if aim_settle {
            stats.settle_aimed += 1;
        }
        if tally.finished.contains_key(&pass_id) {
            stats.after_finish += 1;
            rig.ferry.launch_logged(&rig.log);
            return;
        }
        stats.before_finish += 1;
        if tally.open_since(life_start) > 0 {
            stats.during_appends += 1;
        }
        if doubts_left && tally.open_before(life_start) > 0 {
            stats.during_settle += 1;
        }
        doubts_left = !tally.open.is_empty();
        first = false;
        life_start = tally.next;
        rig.ferry.launch_logged(&rig.log);
    }
    wait(&rig.ferry);
}

fn wait(f: &Ferryd) {
    f.ctl_ok(&["batch", "wait", "wave1", "--timeout", "120"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_passes_resume_and_copy_every_item_exactly_once() {
    let began = Instant::now();
    let target = kill_target();
    let seed = std::env::var("FERRY_ENGINE_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("engine crash test: seed {seed}, at least {target} kills");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut rig = setup();
    tokio::join!(
        first_fill(&rig.src, USERS[0], 1),
        first_fill(&rig.src, USERS[1], 2)
    );
    let mut tally = Tally::default();
    let mut stats = Stats::default();

    // Round 0 measures an uninterrupted pass over one round's worth of
    // mail, which bounds the kill delays of later rounds.
    let t0 = Instant::now();
    rig.ferry
        .ctl_ok(&["batch", "start", "wave1", "--pass", "full"]);
    wait(&rig.ferry);
    let full = t0.elapsed();
    let typical = full.mul_f64(PER_ROUND as f64 / FIRST as f64);
    eprintln!(
        "uninterrupted full pass of {} items: {full:?}; kill delays up to {typical:?}",
        2 * (FIRST + 4)
    );

    let mut round = 1u64;
    while stats.kills < target {
        tokio::join!(
            add_mail(&rig.src, USERS[0], 1000 + 2 * round, PER_ROUND),
            add_mail(&rig.src, USERS[1], 1001 + 2 * round, PER_ROUND)
        );
        let kind = if round.is_multiple_of(2) {
            "full"
        } else {
            "delta"
        };
        let kill_at_start = round % 3 == 1;
        crash_pass(
            &mut rig,
            &mut tally,
            &mut stats,
            &mut rng,
            kind,
            typical,
            kill_at_start,
        );
        round += 1;
    }
    wait(&rig.ferry);
    eprintln!("kill points: {stats:?}");

    // Every source item at the destination, with flags and dates.
    let mut expected = 0;
    for u in USERS {
        let src = contents(&rig.src, u).await;
        let dst = contents(&rig.dst, u).await;
        let missing = mailcmp::diff(&src, &dst);
        if !missing.is_empty() {
            // Say why: failed items and pass outcomes, not only what is missing.
            for kind in ["ItemFailed", "MailboxPassFinished", "OutageStarted"] {
                for e in rig.ferry.events_of(kind) {
                    eprintln!("{kind}: {e}");
                }
            }
        }
        assert_eq!(missing, Vec::<String>::new(), "{u}");
        assert_no_duplicates(u, &src, &dst);
        expected += src.values().map(Vec::len).sum::<usize>();
    }

    // The log agrees: one ItemCopied per source item, nothing left in doubt,
    // every pass finished and succeeded.
    rig.ferry.stop();
    tally.catch_up(&rig.ferry.data_dir);
    let twice: Vec<_> = tally.copied.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "items recorded copied twice: {twice:?}");
    assert_eq!(tally.copied.len(), expected, "ItemCopied per source item");
    assert!(
        tally.open.is_empty(),
        "intents never settled: {:?}",
        tally.open
    );
    for id in &tally.requested {
        assert_eq!(
            tally.finished.get(id),
            Some(&Outcome::Succeeded),
            "pass {id}"
        );
    }
    // The kills must have hit the work, not only idle moments, and some
    // appends that reached the destination unrecorded were found by digest.
    assert!(stats.during_appends > 0, "no kill landed during appends");
    let settled = settled_in_log(&std::fs::read_to_string(&rig.log).unwrap());
    assert!(settled > 0, "no in-doubt item was settled by digest");
    eprintln!(
        "{} kills ({} before the pass finished, {} during appends, {} right after start, \
         {} during settle of {} aimed), {} passes, {} intents for {expected} items, \
         {settled} in-doubt items found at the destination, in {:?}",
        stats.kills,
        stats.before_finish,
        stats.during_appends,
        stats.right_after_start,
        stats.during_settle,
        stats.settle_aimed,
        stats.passes,
        tally.intents,
        began.elapsed()
    );
}

/// No digest appears more often in a destination folder than in its source.
fn assert_no_duplicates(user: &str, src: &Contents, dst: &Contents) {
    let counts = |items: &[mailcmp::Seen]| {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for s in items {
            *m.entry(s.digest.clone()).or_default() += 1;
        }
        m
    };
    for (folder, items) in dst {
        let have = counts(items);
        let want = src.get(folder).map(|v| counts(v)).unwrap_or_default();
        for (d, n) in have {
            let m = want.get(&d).copied().unwrap_or(0);
            assert!(
                n <= m,
                "{user} {folder}: digest {d} {n} times at the destination, {m} at the source"
            );
        }
    }
}

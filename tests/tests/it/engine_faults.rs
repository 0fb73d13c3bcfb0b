//! The copy engine over a faulty network: ferryd reaches both Dovecot
//! servers through [`FaultProxy`]s that drop, reset and stall connections
//! while a full pass runs. The pass must finish on its own (retries with
//! backoff, in-doubt appends settled by digest) with every source item at
//! the destination exactly once, and the log must record one `ItemCopied`
//! per source item.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use ferry_connectors::MailSession;
use ferry_connectors::imap::{self, ImapAuth, ImapConfig, TlsMode};
use ferry_events::{Event, EventStore, ItemKey, Outcome, SegmentStore};
use ferry_tests::faultproxy::{Dir, Fault, FaultProxy, Fired};
use ferry_tests::mailcmp::{self, Contents};
use ferry_tests::sample::{self, SampleSpec};
use ferry_tests::{Ferryd, settled_in_log};
use ferry_testservers::Dovecot;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const PW: &str = "faults-pw";
const USERS: [&str; 2] = ["anna", "bert"];
const MESSAGES: usize = 500;
/// Longer than ferryd's io_timeout_s below, so a stall always times out.
const STALL: Duration = Duration::from_millis(2600);

/// Small timeouts and backoff so faults cost seconds, not minutes; enough
/// retries that the burst of faults below cannot spend them; small groups,
/// so the pass makes many round trips and lasts long enough for every fault.
const CONFIG: &str = "[engine]\nio_timeout_s = 2\nbackoff_ms = 50\nmax_backoff_ms = 400\n\
                      retries = 20\nfetch_batch = 8\n";

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

async fn fill(d: &Dovecot, user: &str, seed: u64) {
    let mut s = login(d, user).await;
    // A few 0.1–2 MB attachments, so some faults cut long APPEND literals.
    let spec = SampleSpec {
        seed,
        messages: MESSAGES,
        attachment_percent: 2,
        huge: 0,
    };
    sample::fill(&mut s, &spec).await.expect("fill the source");
    let _ = s.logout().await;
}

/// The test's random source: `FERRY_ENGINE_FAULTS_SEED`, or a seed it
/// prints, so a failure can be replayed.
fn seeded(what: &str) -> rand::rngs::StdRng {
    let seed = std::env::var("FERRY_ENGINE_FAULTS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("{what}: seed {seed}");
    rand::rngs::StdRng::seed_from_u64(seed)
}

fn setup(src: &Dovecot, psrc: &FaultProxy, pdst: &FaultProxy) -> Ferryd {
    let ferry = Ferryd::start_with_config(CONFIG);
    // The endpoints are the proxies, not the servers.
    for (name, port) in [("old", psrc.port()), ("new", pdst.port())] {
        ferry.add_imap_endpoint(name, port, src.master_user());
    }
    ferry.create_batch("wave1", "old", "new", &USERS, &[]);
    ferry
}

fn pass_running(f: &Ferryd) -> bool {
    let show = f.ctl_json(&["batch", "show", "wave1"]);
    let passes = show["data"]["passes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    passes.last().is_none_or(|p| p["outcome"].is_null())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_resets_and_stalls_neither_lose_nor_duplicate_items() {
    let began = Instant::now();
    let mut rng = seeded("engine faults test");

    let src = Dovecot::start().unwrap();
    let dst = Dovecot::start().unwrap();
    src.add_users(&USERS, PW).unwrap();
    dst.add_users(&USERS, PW).unwrap();
    tokio::join!(fill(&src, USERS[0], 21), fill(&src, USERS[1], 22));
    let psrc = FaultProxy::start(src.port());
    let pdst = FaultProxy::start(dst.port());
    let mut ferry = setup(&src, &psrc, &pdst);

    // Mostly on the destination. Faults counting only its answers land
    // within a few responses, often cutting an APPEND's tagged OK: stored,
    // but unknown to ferryd. The others cut anywhere in either direction.
    let mut plan: Vec<(bool, Fault, Dir)> = Vec::new();
    for (to_dst, n, fault, dir) in [
        (true, 3, Fault::Drop, Dir::Down),
        (true, 3, Fault::Reset, Dir::Down),
        (true, 2, Fault::Stall(STALL), Dir::Down),
        (true, 2, Fault::Drop, Dir::Both),
        (true, 1, Fault::Reset, Dir::Both),
        (false, 2, Fault::Drop, Dir::Both),
        (false, 2, Fault::Reset, Dir::Both),
        (false, 1, Fault::Stall(STALL), Dir::Both),
    ] {
        plan.extend(std::iter::repeat_n((to_dst, fault, dir), n));
    }
    plan.shuffle(&mut rng);
    // First, answers to APPENDs cut off: stored at the server, unknown to
    // ferryd, so the in-doubt settling is exercised in every run.
    for _ in 0..3 {
        plan.insert(0, (true, Fault::Drop, Dir::AppendAnswer));
    }
    // Relaunched with its log kept, to count what settling found.
    let log = ferry.dir().join("ferryd.log");
    ferry.stop();
    ferry.launch_logged(&log);

    ferry.ctl_ok(&["batch", "start", "wave1", "--pass", "full"]);
    inject(&ferry, &plan, (&psrc, &pdst), &mut rng);
    ferry.ctl_ok(&["batch", "wait", "wave1", "--timeout", "120"]);
    let (fs, fd) = (psrc.fired(), pdst.fired());
    eprintln!(
        "faults fired: source {fs:?}, destination {fd:?}; connections: source {}, destination {}",
        psrc.connections(),
        pdst.connections()
    );

    // Without enough faults during the pass the test proves nothing.
    let all = Fired {
        drops: fs.drops + fd.drops,
        resets: fs.resets + fd.resets,
        stalls: fs.stalls + fd.stalls,
    };
    assert!(
        all.total() >= 10 && fd.drops > 0 && fd.resets > 0 && fd.stalls > 0,
        "too few faults fired during the pass: source {fs:?}, destination {fd:?}"
    );
    // Each fault costs a connection; ferryd must have reconnected.
    assert!(pdst.connections() > 2 + fd.total(), "no reconnects seen");

    let mut expected = 0;
    for u in USERS {
        let s = contents(&src, u).await;
        let d = contents(&dst, u).await;
        assert_eq!(mailcmp::diff(&s, &d), Vec::<String>::new(), "{u}");
        assert_no_duplicates(u, &s, &d);
        expected += s.values().map(Vec::len).sum::<usize>();
    }

    // The log: one ItemCopied per source item, none in doubt, success.
    ferry.stop();
    let intents = assert_exactly_once(&ferry, expected);
    // Some faults cut an APPEND's answer: those items were found by digest.
    let text = std::fs::read_to_string(&log).unwrap();
    let settled = settled_in_log(&text);
    assert!(settled > 0, "no in-doubt item was settled by digest");
    let retries = text.matches("transient failure; retrying").count();
    assert!(retries > 0, "ferryd logged no retry");
    eprintln!(
        "{expected} items, {intents} intents ({} re-attempted after a fault), \
         {retries} retries, {settled} in-doubt items found at the destination, in {:?}",
        intents - expected,
        began.elapsed()
    );
}

/// Arms each fault of `plan` (to the destination's proxy or the source's)
/// in turn while the pass runs, with some work between faults; stops early
/// when the pass has ended.
fn inject(
    ferry: &Ferryd,
    plan: &[(bool, Fault, Dir)],
    (psrc, pdst): (&FaultProxy, &FaultProxy),
    rng: &mut rand::rngs::StdRng,
) {
    let mut last_check = Instant::now();
    'plan: for (to_dst, fault, dir) in plan {
        let proxy = if *to_dst { pdst } else { psrc };
        let after = match dir {
            Dir::Down => rng.random_range(1..3_000),
            // Anywhere in the next 200 kB: a command, a literal, a FETCH answer.
            _ => rng.random_range(1..200_000),
        };
        proxy.arm(*fault, *dir, after);
        while proxy.armed() {
            std::thread::sleep(Duration::from_millis(10));
            if last_check.elapsed() > Duration::from_millis(500) {
                last_check = Instant::now();
                if !pass_running(ferry) {
                    proxy.disarm();
                    break 'plan;
                }
            }
        }
        // Let some work succeed between faults.
        std::thread::sleep(Duration::from_millis(rng.random_range(30..150)));
    }
    pdst.disarm();
    psrc.disarm();
}

/// The stopped daemon's log holds one ItemCopied per source item (of
/// `expected`), no intent left unsettled, and a successful pass; returns
/// how many intents were recorded.
fn assert_exactly_once(ferry: &Ferryd, expected: usize) -> usize {
    let store = SegmentStore::open(&ferry.data_dir.join("log")).expect("open the log");
    let mut copied: HashMap<(String, ItemKey), usize> = HashMap::new();
    let mut open: HashMap<(String, ItemKey), u64> = HashMap::new();
    let (mut intents, mut outcome, mut copied_events) = (0, None, 0);
    for env in store.read_all(1) {
        let env = env.expect("read the log");
        match env.event {
            Event::ItemCopyIntent { mailbox, key, .. } => {
                intents += 1;
                open.insert((mailbox, key), env.seq);
            }
            Event::ItemCopied { mailbox, key, .. } => {
                copied_events += 1;
                open.remove(&(mailbox.clone(), key.clone()));
                *copied.entry((mailbox, key)).or_default() += 1;
            }
            Event::ItemFailed { mailbox, key, .. } | Event::ItemSkipped { mailbox, key, .. } => {
                open.remove(&(mailbox, key));
            }
            Event::PassFinished { outcome: o, .. } => outcome = Some(o),
            _ => {}
        }
    }
    assert_eq!(outcome, Some(Outcome::Succeeded));
    assert_eq!(copied_events, expected, "ItemCopied events vs source items");
    assert_eq!(copied.len(), expected);
    assert!(open.is_empty(), "intents never settled: {open:?}");
    intents
}

/// One mailbox whose folders are copied several at once, over spare
/// sessions beside its own, while faults cut both sides: every item still
/// lands exactly once, and what a spare's failure left in doubt is settled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_copied_at_once_under_faults_neither_lose_nor_duplicate_items() {
    let mut rng = seeded("parallel folders under faults");
    let user = "carl";
    let m = OneMailbox::start(user, 31, false).await;
    let rest = vec![
        (true, Fault::Reset, Dir::Down),
        (true, Fault::Drop, Dir::Both),
        (true, Fault::Stall(STALL), Dir::Down),
        (false, Fault::Reset, Dir::Both),
        (false, Fault::Drop, Dir::Both),
    ];
    m.full_pass(rest, &mut rng);
    let (ps, pd) = (m.psrc.peak_connections(), m.pdst.peak_connections());
    eprintln!("at once at most: source {ps}, destination {pd} sessions");
    // One mailbox with more than one session a side: folders were in flight at once.
    assert!(
        ps >= 2 && pd >= 2,
        "one mailbox never had two sessions a side open at once"
    );
    let expected = m.src_items(user).await;
    m.check_exactly_once(user, expected).await;
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

/// One user on a source and a destination Dovecot, each behind a fault
/// proxy, and a ferryd logging to `log` with a batch of that user.
struct OneMailbox {
    src: Dovecot,
    dst: Dovecot,
    psrc: FaultProxy,
    pdst: FaultProxy,
    ferry: Ferryd,
    log: std::path::PathBuf,
}

impl OneMailbox {
    async fn start(user: &str, seed: u64, mostly_inbox: bool) -> OneMailbox {
        let src = Dovecot::start().unwrap();
        let dst = Dovecot::start().unwrap();
        src.add_user(user, PW).unwrap();
        dst.add_user(user, PW).unwrap();
        if mostly_inbox {
            fill_mostly_inbox(&src, user, seed).await;
        } else {
            fill(&src, user, seed).await;
        }
        let psrc = FaultProxy::start(src.port());
        let pdst = FaultProxy::start(dst.port());
        let mut ferry = Ferryd::start_with_config(CONFIG);
        for (name, port) in [("old", psrc.port()), ("new", pdst.port())] {
            ferry.add_imap_endpoint(name, port, src.master_user());
        }
        ferry.create_batch("wave1", "old", "new", &[user], &[]);
        let log = ferry.dir().join("ferryd.log");
        ferry.stop();
        ferry.launch_logged(&log);
        OneMailbox {
            src,
            dst,
            psrc,
            pdst,
            ferry,
            log,
        }
    }

    /// A full pass to its end while three APPEND answers are cut, then
    /// the faults of `rest` in a random order.
    fn full_pass(&self, mut rest: Vec<(bool, Fault, Dir)>, rng: &mut rand::rngs::StdRng) {
        let mut plan: Vec<(bool, Fault, Dir)> = vec![(true, Fault::Drop, Dir::AppendAnswer); 3];
        rest.shuffle(rng);
        plan.extend(rest);
        self.ferry
            .ctl_ok(&["batch", "start", "wave1", "--pass", "full"]);
        inject(&self.ferry, &plan, (&self.psrc, &self.pdst), rng);
        self.ferry
            .ctl_ok(&["batch", "wait", "wave1", "--timeout", "120"]);
    }

    /// Items in the source mailbox.
    async fn src_items(&self, user: &str) -> usize {
        contents(&self.src, user).await.values().map(Vec::len).sum()
    }

    /// After the pass: enough faults fired, the destination holds the
    /// source's `expected` items byte exact and once each, the log records
    /// each copied once, and settling found what a cut answer left in
    /// doubt; the daemon's log text.
    async fn check_exactly_once(mut self, user: &str, expected: usize) -> String {
        let (fs, fd) = (self.psrc.fired(), self.pdst.fired());
        eprintln!("faults fired: source {fs:?}, destination {fd:?}");
        assert!(
            fd.total() >= 3,
            "too few faults fired during the pass: {fd:?}"
        );
        let s = contents(&self.src, user).await;
        let d = contents(&self.dst, user).await;
        assert_eq!(mailcmp::diff(&s, &d), Vec::<String>::new());
        assert_no_duplicates(user, &s, &d);
        self.ferry.stop();
        assert_exactly_once(&self.ferry, expected);
        let text = std::fs::read_to_string(&self.log).unwrap();
        assert!(
            settled_in_log(&text) > 0,
            "no in-doubt item was settled by digest"
        );
        text
    }
}

/// Fills `user`'s mailbox with the sample's folders but most messages in
/// the INBOX.
async fn fill_mostly_inbox(d: &Dovecot, user: &str, seed: u64) {
    let mut s = login(d, user).await;
    let empty = SampleSpec {
        seed,
        messages: 0,
        attachment_percent: 0,
        huge: 0,
    };
    sample::fill(&mut s, &empty)
        .await
        .expect("make the folders");
    let delimiter = s
        .list_folders()
        .await
        .unwrap()
        .iter()
        .find_map(|f| f.name.delimiter);
    let names: Vec<_> = sample::folders()
        .iter()
        .map(|f| sample::folder_name(f, delimiter))
        .collect();
    let spec = SampleSpec {
        seed,
        messages: MESSAGES,
        attachment_percent: 2,
        huge: 0,
    };
    for (i, m) in sample::messages(&spec).enumerate() {
        let folder = if i % 4 == 0 { m.folder } else { 0 };
        s.append(&names[folder], &m.flags, Some(m.date), m.body)
            .await
            .expect("append");
    }
    let _ = s.logout().await;
}

/// A mailbox whose INBOX holds most of its items: several lanes copy UID
/// ranges of the INBOX at once while faults cut both sides; every item
/// still lands exactly once and byte exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_folder_copied_in_ranges_under_faults_neither_loses_nor_duplicates_items() {
    let mut rng = seeded("a large folder in ranges under faults");
    let user = "dora";
    let m = OneMailbox::start(user, 41, true).await;
    let s = contents(&m.src, user).await;
    let inbox = s.get("INBOX").map_or(0, Vec::len);
    let expected = s.values().map(Vec::len).sum::<usize>();
    assert!(
        inbox * 2 > expected,
        "the INBOX holds {inbox} of {expected}"
    );
    let rest = vec![
        (true, Fault::Reset, Dir::Down),
        (true, Fault::Drop, Dir::Both),
        (true, Fault::Drop, Dir::AppendAnswer),
        (false, Fault::Reset, Dir::Both),
        (false, Fault::Drop, Dir::Both),
    ];
    m.full_pass(rest, &mut rng);
    let text = m.check_exactly_once(user, expected).await;
    let at_once = ferry_tests::ranges_at_once(&text);
    eprintln!("{inbox} of {expected} items in the INBOX; at most {at_once} of its ranges at once");
    assert!(
        at_once >= 2,
        "no two ranges of the INBOX were in flight at once"
    );
}

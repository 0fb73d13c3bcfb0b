//! copybench: ferryd against the tools administrators use today, on the
//! same two Dovecot servers (127.0.0.1) and the same generated mail.
//!
//! One command builds what it needs and runs everything:
//!
//! ```text
//! cargo run --release -p ferry-tests --bin copybench -- [--quick] [--only LIST] [--skip-offlineimap]
//! ```
//!
//! (Run from `cargo run`, it first runs `$CARGO build --release -p ferryd
//! -p ferry-ctl` so the daemon and ferryctl next to it are current.)
//!
//! Timed, each against fresh destination users (a new user per run):
//! - ferryd, a full pass of a 4-mailbox batch with max-concurrent 1 and 4,
//!   then a no-change delta pass;
//! - `doveadm backup -R ... imapc:` (dsync pulling over IMAP), one mailbox
//!   after another and four in parallel, then a no-change re-run;
//! - mbsync (isync), one channel per mailbox, sequential and four in
//!   parallel, then a no-change re-run; offlineimap, sequential;
//! - a raw writer: the same bytes APPENDed with our IMAP client (one
//!   message per APPEND) and with hand-written MULTIAPPEND batches;
//! - ferryd with 20 mailboxes in flight, for its peak RSS.
//!
//! `--only` takes a comma-separated list of: ferryd, dsync, mbsync,
//! offlineimap, raw, rss20. Missing tools are reported and skipped.
//!
//! `--wan [--rtt 0,40,100] [--repeat N]` measures instead what a long link
//! costs: ferryd and dsync reach the source (and ferryd the destination)
//! through a delay proxy at each round trip, 4 mailboxes of 250 messages in
//! 5 folders (one at a time, 4 at once, a no-change delta) and a no-change
//! delta of a 20-folder mailbox; it prints the round trips paid per mailbox,
//! (time at RTT - time at 0) / RTT, and the ratios to dsync.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use ferry_connectors::imap::{self, ImapAuth, ImapConfig, TlsMode};
use ferry_connectors::{FolderName, MailSession};
use ferry_tests::Ferryd;
use ferry_tests::mailcmp::{self, Contents, Seen};
use ferry_tests::sample::{self, Sample, SampleSpec};
use ferry_testservers::Dovecot;

const PW: &str = "bench-pw-1";
const MB: f64 = 1_000_000.0;

struct Args {
    quick: bool,
    only: Option<HashSet<String>>,
    skip_offlineimap: bool,
    /// Round trips (ms) of the WAN mode, when asked for.
    wan: Option<Vec<u64>>,
    /// Runs of each WAN measurement; the least time is kept.
    repeat: usize,
}

impl Args {
    fn parse() -> Result<Args> {
        let mut a = Args {
            quick: false,
            only: None,
            skip_offlineimap: false,
            wan: None,
            repeat: 1,
        };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--quick" => a.quick = true,
                "--skip-offlineimap" => a.skip_offlineimap = true,
                "--wan" => a.wan = Some(vec![0, 40, 100]),
                "--repeat" => {
                    let n = it.next().ok_or_else(|| anyhow!("--repeat needs a count"))?;
                    a.repeat = n.parse::<usize>().context("--repeat takes a count")?.max(1);
                }
                "--rtt" => {
                    let list = it.next().ok_or_else(|| anyhow!("--rtt needs a list"))?;
                    let rtts = list
                        .split(',')
                        .map(|x| x.trim().parse::<u64>())
                        .collect::<Result<Vec<_>, _>>()
                        .context("--rtt takes milliseconds, as 0,40,100")?;
                    if rtts.first() != Some(&0) {
                        bail!(
                            "--rtt must start with 0 (the times at a round trip are measured from it)"
                        );
                    }
                    a.wan = Some(rtts);
                }
                "--only" => {
                    let list = it.next().ok_or_else(|| anyhow!("--only needs a list"))?;
                    a.only = Some(list.split(',').map(str::to_string).collect());
                }
                "-h" | "--help" => {
                    println!(
                        "copybench [--quick] [--only ferryd,dsync,mbsync,offlineimap,raw,rss20] [--skip-offlineimap]\n\
                         copybench --wan [--rtt 0,40,100] [--repeat N] [--only ferryd,dsync]"
                    );
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other}"),
            }
        }
        Ok(a)
    }

    fn wants(&self, what: &str) -> bool {
        self.only.as_ref().is_none_or(|s| s.contains(what))
    }
}

/// Where each external tool is, or why it is not there.
struct Tools {
    ferryd: Option<PathBuf>,
    ferryctl: Option<PathBuf>,
    doveadm: Option<PathBuf>,
    mbsync: Option<PathBuf>,
    offlineimap: Option<PathBuf>,
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn find_tools() -> Tools {
    // Keep the daemon current when run by `cargo run` (CARGO is set then).
    if let Some(cargo) = std::env::var_os("CARGO") {
        let release = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|p| p.ends_with("release")))
            .unwrap_or(false);
        let mut c = Command::new(cargo);
        c.args(["build", "-q", "-p", "ferryd", "-p", "ferry-ctl"]);
        if release {
            c.arg("--release");
        }
        println!(
            "building ferryd and ferryctl ({})",
            if release { "release" } else { "debug" }
        );
        match c.status() {
            Ok(s) if s.success() => {}
            other => println!("  cargo build of ferryd/ferryctl failed: {other:?}"),
        }
    }
    let here = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let local = |n: &str| Some(here.join(n)).filter(|p| p.is_file());
    let t = Tools {
        ferryd: local("ferryd"),
        ferryctl: local("ferryctl"),
        doveadm: which("doveadm"),
        mbsync: which("mbsync"),
        offlineimap: which("offlineimap"),
    };
    println!("tools:");
    let show = |name: &str, p: &Option<PathBuf>, fix: &str| match p {
        Some(p) => println!("  {name:<12} {}", p.display()),
        None => println!("  {name:<12} MISSING ({fix})"),
    };
    show("ferryd", &t.ferryd, "cargo build --release -p ferryd");
    show(
        "ferryctl",
        &t.ferryctl,
        "cargo build --release -p ferry-ctl",
    );
    show("doveadm", &t.doveadm, "apt-get install dovecot-core");
    show("mbsync", &t.mbsync, "apt-get install isync");
    show(
        "offlineimap",
        &t.offlineimap,
        "apt-get install offlineimap3",
    );
    if which("dovecot").is_none() {
        println!("  dovecot      MISSING (apt-get install dovecot-imapd): nothing can run");
    }
    t
}

// ---------------------------------------------------------------- results

struct Row {
    name: String,
    wall: Duration,
    msgs: usize,
    bytes: u64,
    rss_kb: Option<u64>,
    exact: String,
    note: String,
}

impl Row {
    fn print_header() {
        println!(
            "{:<34} {:>9} {:>9} {:>8} {:>10}  exact?",
            "run", "wall s", "msg/s", "MB/s", "peak RSS"
        );
    }
    fn print(&self) {
        let s = self.wall.as_secs_f64().max(1e-9);
        let rss = self
            .rss_kb
            .map(|k| format!("{:.1} MB", k as f64 / 1024.0))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<34} {:>9.2} {:>9.0} {:>8.1} {:>10}  {}{}",
            self.name,
            s,
            self.msgs as f64 / s,
            self.bytes as f64 / MB / s,
            rss,
            self.exact,
            if self.note.is_empty() {
                String::new()
            } else {
                format!("  [{}]", self.note)
            }
        );
    }
}

struct Report {
    rows: Vec<Row>,
}

impl Report {
    fn add(&mut self, r: Row) {
        r.print();
        self.rows.push(r);
    }
    fn get(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.name == name)
    }
}

// ---------------------------------------------------------------- data

struct Data {
    /// Per mailbox: its messages, generated once.
    boxes: Vec<Vec<Sample>>,
    msgs: usize,
    bytes: u64,
}

fn generate(n: usize, spec: impl Fn(usize) -> SampleSpec) -> Data {
    let boxes: Vec<Vec<Sample>> = (0..n)
        .map(|i| sample::messages(&spec(i)).collect())
        .collect();
    let msgs = boxes.iter().map(Vec::len).sum();
    let bytes = boxes.iter().flatten().map(|m| m.body.len() as u64).sum();
    Data { boxes, msgs, bytes }
}

fn folder_names() -> Vec<FolderName> {
    sample::folders()
        .iter()
        .map(|s| sample::folder_name(s, Some('/')))
        .collect()
}

fn imap_date(m: &Sample) -> String {
    m.date.format("%d-%b-%Y %H:%M:%S %z").to_string()
}

// ---------------------------------------------------------------- raw IMAP

/// A bare IMAP connection over a TcpStream: LOGIN, CREATE and
/// (MULTI)APPEND with LITERAL+ literals, as a fast writer would do it.
struct Raw {
    r: BufReader<TcpStream>,
    w: BufWriter<TcpStream>,
    tag: u32,
}

impl Raw {
    fn login(port: u16, user: &str) -> Result<Raw> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        let mut raw = Raw {
            r: BufReader::with_capacity(1 << 16, s.try_clone()?),
            w: BufWriter::with_capacity(1 << 20, s),
            tag: 0,
        };
        let mut greeting = String::new();
        raw.r.read_line(&mut greeting)?;
        if !greeting.starts_with("* OK") {
            bail!("greeting: {greeting}");
        }
        raw.cmd(&format!("LOGIN \"{user}\" \"{PW}\""))?;
        Ok(raw)
    }

    fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("c{}", self.tag)
    }

    fn wait(&mut self, tag: &str) -> Result<String> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.r.read_line(&mut line)? == 0 {
                bail!("connection closed");
            }
            if let Some(rest) = line.strip_prefix(tag).and_then(|l| l.strip_prefix(' ')) {
                if rest.starts_with("OK") {
                    return Ok(line);
                }
                bail!("{}", line.trim_end());
            }
        }
    }

    fn cmd(&mut self, line: &str) -> Result<String> {
        let tag = self.next_tag();
        write!(self.w, "{tag} {line}\r\n")?;
        self.w.flush()?;
        self.wait(&tag)
    }

    fn create_folders(&mut self, names: &[FolderName]) -> Result<()> {
        for n in names.iter().skip(1) {
            let _ = self.cmd(&format!("CREATE \"{}\"", n.raw));
            self.cmd(&format!("SUBSCRIBE \"{}\"", n.raw))?;
        }
        Ok(())
    }

    /// One APPEND command carrying every message of `msgs` (same folder).
    fn append(&mut self, folder: &str, msgs: &[&Sample]) -> Result<()> {
        let tag = self.next_tag();
        write!(self.w, "{tag} APPEND \"{folder}\"")?;
        for m in msgs {
            write!(
                self.w,
                " ({}) \"{}\" {{{}+}}\r\n",
                m.flags.join(" "),
                imap_date(m),
                m.body.len()
            )?;
            self.w.write_all(&m.body)?;
        }
        self.w.write_all(b"\r\n")?;
        self.w.flush()?;
        self.wait(&tag).map(|_| ())
    }

    fn logout(mut self) {
        let _ = self.cmd("LOGOUT");
    }
}

/// Writes `msgs` into `user` with MULTIAPPEND batches (per folder, up to
/// 32 MB or 500 messages each), folders created first.
fn multiappend(port: u16, user: &str, msgs: &[Sample]) -> Result<()> {
    multiappend_into(port, user, msgs, &folder_names())
}

/// [`multiappend`] into `names` (a message's folder indexes it; the first
/// is INBOX).
fn multiappend_into(port: u16, user: &str, msgs: &[Sample], names: &[FolderName]) -> Result<()> {
    let mut raw = Raw::login(port, user)?;
    raw.create_folders(names)?;
    let mut by_folder: BTreeMap<usize, Vec<&Sample>> = BTreeMap::new();
    for m in msgs {
        by_folder.entry(m.folder).or_default().push(m);
    }
    for (folder, list) in by_folder {
        let mut batch: Vec<&Sample> = Vec::new();
        let mut bytes = 0;
        for m in list {
            if !batch.is_empty() && (bytes + m.body.len() > 32 << 20 || batch.len() >= 500) {
                raw.append(&names[folder].raw, &batch)?;
                batch.clear();
                bytes = 0;
            }
            bytes += m.body.len();
            batch.push(m);
        }
        if !batch.is_empty() {
            raw.append(&names[folder].raw, &batch)?;
        }
    }
    raw.logout();
    Ok(())
}

/// The same with one APPEND per message, through our IMAP client.
async fn client_append(port: u16, user: String, data: Arc<Data>, i: usize) -> Result<()> {
    let mut s = login(port, &user).await?;
    let names = folder_names();
    for n in names.iter().skip(1) {
        s.create_folder(n).await?;
        s.subscribe(n).await?;
    }
    // Folder by folder, as a copier does (and as the MULTIAPPEND writer).
    let mut by_folder: BTreeMap<usize, Vec<&Sample>> = BTreeMap::new();
    for m in &data.boxes[i] {
        by_folder.entry(m.folder).or_default().push(m);
    }
    for (folder, list) in by_folder {
        for m in list {
            s.append(&names[folder], &m.flags, Some(m.date), m.body.clone())
                .await?;
        }
    }
    let _ = s.logout().await;
    Ok(())
}

async fn login(port: u16, user: &str) -> Result<imap::ImapSession> {
    let cfg = ImapConfig {
        host: "127.0.0.1".into(),
        port,
        tls: TlsMode::None,
        ca_file: None,
        timeout: Duration::from_secs(120),
        fence: None,
    };
    let auth = ImapAuth::Login {
        user: user.into(),
        password: PW.into(),
    };
    Ok(imap::connect(&cfg, &auth).await?)
}

// ---------------------------------------------------------------- checks

async fn contents_of(port: u16, users: &[String]) -> Result<Vec<Contents>> {
    let mut tasks = Vec::new();
    for u in users {
        let u = u.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = login(port, &u).await?;
            let c = mailcmp::contents(&mut s).await;
            let _ = s.logout().await;
            Ok::<_, anyhow::Error>(c)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}

/// Item-by-item comparison, summed over mailboxes: "exact" or what differs.
fn compare(src: &[Contents], dst: &[Contents]) -> String {
    let (mut missing, mut extra, mut flags, mut dates, mut nofolder, mut xfolder) =
        (0, 0, 0, 0, 0, 0);
    let mut flag_example = None;
    let (mut missing_bytes, mut extra_bytes) = (0i64, 0i64);
    for (s, d) in src.iter().zip(dst) {
        for (folder, items) in s {
            let Some(other) = d.get(folder) else {
                nofolder += 1;
                missing += items.len();
                continue;
            };
            let mut pool: HashMap<&str, Vec<&Seen>> = HashMap::new();
            for it in other {
                pool.entry(it.digest.as_str()).or_default().push(it);
            }
            for it in items {
                let Some(cands) = pool.get_mut(it.digest.as_str()).filter(|c| !c.is_empty()) else {
                    missing += 1;
                    missing_bytes += it.size as i64;
                    continue;
                };
                let pos = cands.iter().position(|c| *c == it).unwrap_or(0);
                let c = cands.swap_remove(pos);
                if c.flags != it.flags {
                    flags += 1;
                    flag_example.get_or_insert_with(|| (it.flags.clone(), c.flags.clone()));
                }
                if c.date != it.date {
                    dates += 1;
                }
            }
            let left: Vec<&&Seen> = pool.values().flatten().collect();
            extra += left.len();
            extra_bytes += left.iter().map(|x| x.size as i64).sum::<i64>();
        }
        for (folder, items) in d {
            if !s.contains_key(folder) {
                xfolder += 1;
                extra += items.len();
            }
        }
    }
    if missing + extra + flags + dates + nofolder + xfolder == 0 {
        return "exact".into();
    }
    let mut parts = vec![format!("NOT exact: {missing} missing/different bytes")];
    if missing == extra && missing > 0 {
        parts.push(format!(
            "the copies are {:+.1} bytes each on average",
            (extra_bytes - missing_bytes) as f64 / missing as f64
        ));
    }
    if extra > 0 {
        parts.push(format!("{extra} extra"));
    }
    if flags > 0 {
        let ex = flag_example
            .map(|(a, b)| format!(" e.g. {a:?} -> {b:?}"))
            .unwrap_or_default();
        parts.push(format!("{flags} flags/keywords{ex}"));
    }
    if dates > 0 {
        parts.push(format!("{dates} INTERNALDATE"));
    }
    if nofolder > 0 {
        parts.push(format!("{nofolder} folders missing"));
    }
    if xfolder > 0 {
        parts.push(format!("{xfolder} extra folders"));
    }
    parts.join(", ")
}

// ---------------------------------------------------------------- processes

fn descendants(roots: &[i32]) -> Vec<i32> {
    let mut parent: HashMap<i32, i32> = HashMap::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // pid (comm) state ppid ...
            if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r)
                && let Some(ppid) = rest.split_whitespace().nth(1)
                && let Ok(ppid) = ppid.parse()
            {
                parent.insert(pid, ppid);
            }
        }
    }
    let mut set: HashSet<i32> = roots.iter().copied().collect();
    loop {
        let before = set.len();
        for (pid, ppid) in &parent {
            if set.contains(ppid) {
                set.insert(*pid);
            }
        }
        if set.len() == before {
            break;
        }
    }
    set.into_iter().collect()
}

fn status_kb(pid: i32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples VmHWM of every process under `roots` until stopped; the
/// result is the sum of the per-process peaks (an upper bound on the
/// tree's peak when the processes run side by side).
struct Sampler {
    roots: Arc<Mutex<Vec<i32>>>,
    hwm: Arc<Mutex<HashMap<i32, u64>>>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start() -> Sampler {
        let roots: Arc<Mutex<Vec<i32>>> = Arc::default();
        let hwm: Arc<Mutex<HashMap<i32, u64>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (r, h, s) = (roots.clone(), hwm.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let roots = r.lock().unwrap().clone();
                for pid in descendants(&roots) {
                    if let Some(kb) = status_kb(pid, "VmHWM:") {
                        let mut h = h.lock().unwrap();
                        let e = h.entry(pid).or_default();
                        *e = (*e).max(kb);
                    }
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        });
        Sampler {
            roots,
            hwm,
            stop,
            handle: Some(handle),
        }
    }
    fn add_root(&self, pid: i32) {
        self.roots.lock().unwrap().push(pid);
    }
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.hwm.lock().unwrap().values().sum()
    }
}

struct ProcRun {
    wall: Duration,
    peak_kb: u64,
    failures: Vec<String>,
    timed_out: bool,
}

/// Runs `cmds` (all at once when `parallel`, else one after another),
/// each in its own process group, with stderr kept in `logdir`.
/// The peak is the largest over the groups run one at a time.
fn run_procs(
    cmds: Vec<(String, Command)>,
    parallel: bool,
    limit: Duration,
    logdir: &Path,
) -> ProcRun {
    let start = Instant::now();
    let deadline = start + limit;
    let mut peak = 0;
    let mut failures = Vec::new();
    let mut timed_out = false;
    let groups: Vec<Vec<(String, Command)>> = if parallel {
        vec![cmds]
    } else {
        cmds.into_iter().map(|c| vec![c]).collect()
    };
    for group in groups {
        let sampler = Sampler::start();
        let mut live: Vec<(String, i32, PathBuf)> = Vec::new();
        for (name, mut cmd) in group {
            let log = logdir.join(format!("{}.log", name.replace('/', "_")));
            let file = std::fs::File::create(&log).expect("log file");
            cmd.stdin(Stdio::null())
                .stdout(file.try_clone().expect("log file"))
                .stderr(file)
                .process_group(0);
            match cmd.spawn() {
                Ok(child) => {
                    let pid = child.id() as i32;
                    sampler.add_root(pid);
                    // Reaped below with waitpid, not by Child.
                    std::mem::forget(child);
                    live.push((name, pid, log));
                }
                Err(e) => failures.push(format!("{name}: cannot start: {e}")),
            }
        }
        while !live.is_empty() {
            let mut i = 0;
            while i < live.len() {
                let pid = live[i].1;
                let mut status = 0;
                // Reaped with waitpid, not wait4: Linux's ru_maxrss carries
                // the RSS of the forking parent (this bench) across exec.
                // SAFETY: plain waitpid on our own child, into local memory.
                let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
                if r == pid {
                    let (name, _, log) = live.swap_remove(i);
                    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                        let text = std::fs::read_to_string(&log).unwrap_or_default();
                        let tail: Vec<&str> = text.lines().rev().take(4).collect();
                        failures.push(format!(
                            "{name}: exit status {status:#x}: {}",
                            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                        ));
                    }
                } else {
                    i += 1;
                }
            }
            if Instant::now() > deadline && !live.is_empty() {
                timed_out = true;
                for (name, pid, _) in &live {
                    // SAFETY: signals our own child's process group.
                    unsafe { libc::kill(-pid, libc::SIGKILL) };
                    failures.push(format!("{name}: killed after {limit:?}"));
                }
                for (_, pid, _) in live.drain(..) {
                    let mut status = 0;
                    unsafe { libc::waitpid(pid, &mut status, 0) };
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        peak = peak.max(sampler.finish());
    }
    ProcRun {
        wall: start.elapsed(),
        peak_kb: peak,
        failures,
        timed_out,
    }
}

// ---------------------------------------------------------------- bench

struct Bench {
    rt: tokio::runtime::Runtime,
    tools: Tools,
    src: Dovecot,
    dst: Dovecot,
    /// Source users of the main data set.
    users: Vec<String>,
    data: Arc<Data>,
    /// Source contents, read back once.
    expected: Vec<Contents>,
    report: Report,
    work: tempfile::TempDir,
    run_no: usize,
    limit: Duration,
}

impl Bench {
    /// Fresh destination users for one run (added to the destination).
    fn fresh(&mut self, tag: &str, n: usize) -> Vec<String> {
        self.run_no += 1;
        let users: Vec<String> = (0..n)
            .map(|i| format!("{tag}{}u{}", self.run_no, i + 1))
            .collect();
        for u in &users {
            self.dst.add_user(u, PW).expect("add user");
        }
        // Dovecot notices a rewritten passwd-file by inode and mtime; a
        // rewrite within the second it last read can go unseen, so every
        // user must log in before the run starts.
        for u in &users {
            for attempt in 0.. {
                match Raw::login(self.dst.port(), u) {
                    Ok(r) => {
                        r.logout();
                        break;
                    }
                    Err(e) if attempt >= 20 => panic!("{u} cannot log in: {e:#}"),
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(300));
                        self.dst.add_user(u, PW).expect("add user");
                    }
                }
            }
        }
        users
    }

    /// The main data set's source users beside `dst_users`.
    fn pairs(&self, dst_users: &[String]) -> Vec<(String, String)> {
        self.users
            .iter()
            .cloned()
            .zip(dst_users.iter().cloned())
            .collect()
    }

    fn check(&self, src: &[Contents], dst_users: &[String]) -> String {
        match self.rt.block_on(contents_of(self.dst.port(), dst_users)) {
            Ok(d) => compare(src, &d),
            Err(e) => format!("check failed: {e:#}"),
        }
    }

    /// Deletes the destination users' mail (disk stays bounded).
    fn drop_users(&self, users: &[String]) {
        if std::env::var_os("COPYBENCH_KEEP").is_some() {
            println!("  (kept: {})", self.dst.dir().join("home").display());
            return;
        }
        for u in users {
            let _ = std::fs::remove_dir_all(self.dst.dir().join("home").join(u).join("Maildir"));
        }
    }

    fn row(
        &self,
        name: &str,
        wall: Duration,
        data: &Data,
        rss: Option<u64>,
        exact: String,
        note: String,
    ) -> Row {
        Row {
            name: name.into(),
            wall,
            msgs: data.msgs,
            bytes: data.bytes,
            rss_kb: rss,
            exact,
            note,
        }
    }
}

fn ferry_setup(
    src: &Dovecot,
    dst: &Dovecot,
    pairs: &[(String, String)],
    mc: usize,
) -> Result<Ferryd> {
    ferry_setup_ports(src, (src.port(), dst.port()), pairs, mc)
}

/// [`ferry_setup`] with the endpoints at these (source, destination)
/// ports of 127.0.0.1, where a proxy may stand in for a server.
fn ferry_setup_ports(
    src: &Dovecot,
    ports: (u16, u16),
    pairs: &[(String, String)],
    mc: usize,
) -> Result<Ferryd> {
    let ferry = Ferryd::start();
    let (master, master_pw) = src.master_user();
    let pwfile = ferry.file("master.pw", &format!("{master_pw}\n"));
    for (name, port) in [("old", ports.0), ("new", ports.1)] {
        ferry.ctl_ok(&[
            "endpoint",
            "add",
            name,
            "--kind",
            "imap",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--tls",
            "none",
            "--admin-user",
            master,
            "--password-file",
            pwfile.to_str().unwrap(),
            "--max-connections",
            "64",
        ]);
    }
    let mut csv = String::from("SourceEmail,DestinationEmail,SourceLogin,DestinationLogin\n");
    for (s, d) in pairs {
        csv.push_str(&format!("{s}@old.example,{d}@new.example,{s},{d}\n"));
    }
    let csv = ferry.file("batch.csv", &csv);
    ferry.ctl_ok(&[
        "batch",
        "create",
        "bench",
        "--source",
        "old",
        "--destination",
        "new",
        "--csv",
        csv.to_str().unwrap(),
        "--max-concurrent",
        &mc.to_string(),
    ]);
    Ok(ferry)
}

/// One pass; returns its wall time (start command to `batch wait`) and
/// the batch state after it.
fn ferry_pass(f: &Ferryd, pass: &str) -> Result<(Duration, String)> {
    let head = f.head();
    let t = Instant::now();
    f.ctl_ok(&["batch", "start", "bench", "--pass", pass]);
    let out = f.ctl(&["batch", "wait", "bench", "--timeout", "7200"]);
    let wall = t.elapsed();
    let show = f.ctl_json(&["batch", "show", "bench"]);
    let mut state = show["data"]["state"].as_str().unwrap_or("?").to_string();
    if !out.status.success() {
        state = format!(
            "{state}; wait: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // The daemon's own time, PassRequested to PassFinished, from the log:
    // `batch wait` polls every 300 ms, which would blur short passes.
    let events = f.ctl_ok(&["--json", "events", "--since", &(head + 1).to_string()]);
    let time_of = |kind: &str| {
        events
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["event_type"] == kind)
            .filter_map(|e| e["time"].as_str().and_then(seconds_of))
            .next_back()
    };
    match (time_of("PassRequested"), time_of("PassFinished")) {
        (Some(a), Some(b)) if b >= a => Ok((
            Duration::from_secs_f64(b - a),
            format!("{state}; start..wait {:.2}s", wall.as_secs_f64()),
        )),
        _ => Ok((wall, format!("{state}; log times not found"))),
    }
}

/// Seconds of an RFC 3339 time (`2025-01-02T03:04:05.123456Z`), counted
/// from an arbitrary origin, good for differences within a run.
fn seconds_of(t: &str) -> Option<f64> {
    let (date, time) = t.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<f64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let time = time.trim_end_matches('Z');
    let time = time.split(['+', '-']).next()?;
    let mut p = time.split(':').map(|x| x.parse::<f64>().ok());
    let (h, mi, s) = (p.next()??, p.next()??, p.next()??);
    let days = y * 372.0 + mo * 31.0 + da;
    Some(days * 86400.0 + h * 3600.0 + mi * 60.0 + s)
}

fn hwm_kb(pid: u32) -> Option<u64> {
    status_kb(pid as i32, "VmHWM:")
}

fn bench_ferryd(b: &mut Bench) {
    if b.tools.ferryd.is_none() || b.tools.ferryctl.is_none() {
        println!("ferryd: skipped (binaries missing)");
        return;
    }
    for mc in [1usize, 4] {
        let dst_users = b.fresh("f", b.users.len());
        let pairs = b.pairs(&dst_users);
        let mut f = match ferry_setup(&b.src, &b.dst, &pairs, mc) {
            Ok(f) => f,
            Err(e) => {
                println!("ferryd setup failed: {e:#}");
                return;
            }
        };
        let (wall, state) = ferry_pass(&f, "full").expect("full pass");
        let rss = hwm_kb(f.pid());
        let exact = b.check(&b.expected, &dst_users);
        let name = format!("ferryd full, max-concurrent {mc}");
        let r = b.row(&name, wall, &b.data, rss, exact, format!("batch {state}"));
        b.report.add(r);
        if mc == 4 {
            let (wall, state) = ferry_pass(&f, "delta").expect("delta pass");
            let rss = hwm_kb(f.pid());
            let exact = b.check(&b.expected, &dst_users);
            let r = b.row(
                "ferryd delta (no change), mc 4",
                wall,
                &b.data,
                rss,
                exact,
                format!("batch {state}; rates are of the mailbox size"),
            );
            b.report.add(r);
        }
        f.stop();
        b.drop_users(&dst_users);
    }
}

fn dsync_cmd(b: &Bench, src_user: &str, dst_user: &str) -> Command {
    dsync_cmd_via(b, b.src.port(), src_user, dst_user)
}

/// dsync pulling from the source at `port` (the server or a proxy).
fn dsync_cmd_via(b: &Bench, port: u16, src_user: &str, dst_user: &str) -> Command {
    let mut c = Command::new(b.tools.doveadm.as_ref().unwrap());
    c.arg("-c")
        .arg(b.dst.config_path())
        .args(["-o", "imapc_host=127.0.0.1"])
        .arg("-o")
        .arg(format!("imapc_port={port}"))
        .arg("-o")
        .arg(format!("imapc_user={src_user}"))
        .arg("-o")
        .arg(format!("imapc_password={PW}"))
        .args(["-o", "imapc_features=rfc822.size fetch-headers"])
        .args(["-o", "mail_prefetch_count=20"])
        .args(["backup", "-R", "-u", dst_user, "imapc:"]);
    c
}

fn bench_dsync(b: &mut Bench) {
    if b.tools.doveadm.is_none() {
        println!("dsync: skipped (doveadm missing)");
        return;
    }
    for parallel in [false, true] {
        let dst_users = b.fresh("d", b.users.len());
        let cmds: Vec<(String, Command)> = b
            .users
            .iter()
            .zip(&dst_users)
            .map(|(s, d)| (format!("dsync-{d}"), dsync_cmd(b, s, d)))
            .collect();
        let run = run_procs(cmds, parallel, b.limit, b.work.path());
        let exact = b.check(&b.expected, &dst_users);
        let name = if parallel {
            "dsync (doveadm backup), 4 parallel"
        } else {
            "dsync (doveadm backup), sequential"
        };
        let r = b.row(
            name,
            run.wall,
            &b.data,
            Some(run.peak_kb),
            exact,
            run.failures.join("; "),
        );
        b.report.add(r);
        if parallel {
            let cmds: Vec<(String, Command)> = b
                .users
                .iter()
                .zip(&dst_users)
                .map(|(s, d)| (format!("dsync2-{d}"), dsync_cmd(b, s, d)))
                .collect();
            let run = run_procs(cmds, true, b.limit, b.work.path());
            let r = b.row(
                "dsync no-change re-run, 4 parallel",
                run.wall,
                &b.data,
                Some(run.peak_kb),
                "-".into(),
                run.failures.join("; "),
            );
            b.report.add(r);
        }
        b.drop_users(&dst_users);
    }
}

fn mbsync_config(b: &Bench, pairs: &[(String, String)], dir: &Path) -> PathBuf {
    let mut cfg = String::new();
    for (s, d) in pairs {
        let state = dir.join(format!("state-{d}"));
        std::fs::create_dir_all(&state).unwrap();
        for (side, port, user) in [("far", b.src.port(), s), ("near", b.dst.port(), d)] {
            cfg.push_str(&format!(
                "IMAPAccount {side}-{d}\nHost 127.0.0.1\nPort {port}\nUser {user}\nPass {PW}\n\
                 SSLType None\nAuthMechs LOGIN\n\nIMAPStore {side}-{d}\nAccount {side}-{d}\n\n"
            ));
        }
        cfg.push_str(&format!(
            "Channel {d}\nFar :far-{d}:\nNear :near-{d}:\nPatterns *\nCreate Near\nSync Pull\n\
             Expunge None\nCopyArrivalDate yes\nSyncState {}/\n\n",
            state.display()
        ));
    }
    let path = dir.join("mbsyncrc");
    std::fs::write(&path, cfg).unwrap();
    path
}

fn bench_mbsync(b: &mut Bench) {
    let Some(mbsync) = b.tools.mbsync.clone() else {
        println!("mbsync: skipped (apt-get install isync)");
        return;
    };
    for parallel in [false, true] {
        let dst_users = b.fresh("m", b.users.len());
        let pairs = b.pairs(&dst_users);
        let dir = b.work.path().join(format!("mbsync{}", b.run_no));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = mbsync_config(b, &pairs, &dir);
        let cmds = |tag: &str| -> Vec<(String, Command)> {
            if parallel {
                dst_users
                    .iter()
                    .map(|d| {
                        let mut c = Command::new(&mbsync);
                        c.arg("-c").arg(&cfg).arg("-q").arg(d);
                        (format!("{tag}-{d}"), c)
                    })
                    .collect()
            } else {
                let mut c = Command::new(&mbsync);
                c.arg("-c").arg(&cfg).arg("-q").arg("-a");
                vec![(format!("{tag}-all-{}", dst_users[0]), c)]
            }
        };
        let run = run_procs(cmds("mbsync"), parallel, b.limit, b.work.path());
        let exact = b.check(&b.expected, &dst_users);
        let name = if parallel {
            "mbsync, 4 parallel"
        } else {
            "mbsync, sequential (one process)"
        };
        let r = b.row(
            name,
            run.wall,
            &b.data,
            Some(run.peak_kb),
            exact,
            run.failures.join("; "),
        );
        b.report.add(r);
        if parallel {
            let run = run_procs(cmds("mbsync2"), true, b.limit, b.work.path());
            let r = b.row(
                "mbsync no-change re-run, 4 parallel",
                run.wall,
                &b.data,
                Some(run.peak_kb),
                "-".into(),
                run.failures.join("; "),
            );
            b.report.add(r);
        }
        b.drop_users(&dst_users);
    }
}

fn bench_offlineimap(b: &mut Bench, limit: Duration) {
    let Some(oi) = b.tools.offlineimap.clone() else {
        println!("offlineimap: skipped (apt-get install offlineimap3)");
        return;
    };
    let dst_users = b.fresh("o", b.users.len());
    let dir = b.work.path().join(format!("offlineimap{}", b.run_no));
    std::fs::create_dir_all(&dir).unwrap();
    let accounts: Vec<String> = dst_users.iter().map(|d| format!("a-{d}")).collect();
    let mut cfg = format!(
        "[general]\naccounts = {}\nmetadata = {}\nmaxsyncaccounts = 1\nui = quiet\n\n",
        accounts.join(", "),
        dir.join("meta").display()
    );
    for ((s, d), a) in b.users.iter().zip(&dst_users).zip(&accounts) {
        cfg.push_str(&format!(
            "[Account {a}]\nlocalrepository = {a}-near\nremoterepository = {a}-far\n\n\
             [Repository {a}-far]\ntype = IMAP\nremotehost = 127.0.0.1\nremoteport = {}\n\
             remoteuser = {s}\nremotepass = {PW}\nssl = no\nstarttls = no\nreadonly = True\n\n\
             [Repository {a}-near]\ntype = IMAP\nremotehost = 127.0.0.1\nremoteport = {}\n\
             remoteuser = {d}\nremotepass = {PW}\nssl = no\nstarttls = no\n\n",
            b.src.port(),
            b.dst.port()
        ));
    }
    let path = dir.join("offlineimaprc");
    std::fs::write(&path, cfg).unwrap();
    let mut c = Command::new(oi);
    c.arg("-c").arg(&path).arg("-o").arg("-u").arg("quiet");
    let run = run_procs(vec![("offlineimap".into(), c)], false, limit, b.work.path());
    let exact = b.check(&b.expected, &dst_users);
    let mut note = run.failures.join("; ");
    if run.timed_out {
        note = format!("stopped at the {}s limit; {note}", limit.as_secs());
    }
    let r = b.row(
        "offlineimap, sequential",
        run.wall,
        &b.data,
        Some(run.peak_kb),
        exact,
        note,
    );
    b.report.add(r);
    b.drop_users(&dst_users);
}

fn bench_raw(b: &mut Bench) {
    for (multi, parallel) in [(false, false), (false, true), (true, false), (true, true)] {
        let dst_users = b.fresh("r", b.users.len());
        let port = b.dst.port();
        let t = Instant::now();
        let mut errors = Vec::new();
        if multi {
            let run = |i: usize, u: &str| multiappend(port, u, &b.data.boxes[i]);
            if parallel {
                std::thread::scope(|s| {
                    let hs: Vec<_> = dst_users
                        .iter()
                        .enumerate()
                        .map(|(i, u)| s.spawn(move || run(i, u)))
                        .collect();
                    for h in hs {
                        if let Err(e) = h.join().unwrap() {
                            errors.push(e.to_string());
                        }
                    }
                });
            } else {
                for (i, u) in dst_users.iter().enumerate() {
                    if let Err(e) = run(i, u) {
                        errors.push(e.to_string());
                    }
                }
            }
        } else {
            let data = b.data.clone();
            let users = dst_users.clone();
            let res: Vec<Result<()>> = b.rt.block_on(async move {
                if parallel {
                    let tasks: Vec<_> = users
                        .into_iter()
                        .enumerate()
                        .map(|(i, u)| tokio::spawn(client_append(port, u, data.clone(), i)))
                        .collect();
                    let mut out = Vec::new();
                    for t in tasks {
                        out.push(t.await.map_err(anyhow::Error::from).and_then(|r| r));
                    }
                    out
                } else {
                    let mut out = Vec::new();
                    for (i, u) in users.into_iter().enumerate() {
                        out.push(client_append(port, u, data.clone(), i).await);
                    }
                    out
                }
            });
            errors.extend(
                res.into_iter()
                    .filter_map(|r| r.err())
                    .map(|e| e.to_string()),
            );
        }
        let wall = t.elapsed();
        let exact = b.check(&b.expected, &dst_users);
        let name = format!(
            "raw {}, {}",
            if multi {
                "MULTIAPPEND"
            } else {
                "APPEND (our client)"
            },
            if parallel { "4 parallel" } else { "sequential" }
        );
        let r = b.row(&name, wall, &b.data, None, exact, errors.join("; "));
        b.report.add(r);
        b.drop_users(&dst_users);
    }
}

fn bench_rss20(b: &mut Bench, quick: bool) {
    if b.tools.ferryd.is_none() || b.tools.ferryctl.is_none() {
        println!("rss20: skipped (ferryd missing)");
        return;
    }
    let n = 20;
    let spec = |i: usize| SampleSpec {
        seed: 500 + i as u64,
        messages: if quick { 100 } else { 200 },
        attachment_percent: 10,
        huge: usize::from(!quick),
    };
    let data = generate(n, spec);
    let src_users: Vec<String> = (1..=n).map(|i| format!("w{i}")).collect();
    for u in &src_users {
        b.src.add_user(u, PW).unwrap();
    }
    // Past the second of the last passwd-file rewrite (see `fresh`).
    std::thread::sleep(Duration::from_millis(1100));
    fill(b.src.port(), &src_users, &data, &folder_names());
    let expected =
        b.rt.block_on(contents_of(b.src.port(), &src_users))
            .expect("read the 20 source mailboxes");
    let dst_users = b.fresh("t", n);
    let pairs: Vec<(String, String)> = src_users
        .iter()
        .cloned()
        .zip(dst_users.iter().cloned())
        .collect();
    let mut f = ferry_setup(&b.src, &b.dst, &pairs, n).expect("ferryd setup");
    // Sample ferryd's RSS while the pass runs too (VmHWM is the peak anyway).
    let (wall, state) = ferry_pass(&f, "full").expect("full pass");
    let rss = hwm_kb(f.pid());
    let exact = b.check(&expected, &dst_users);
    let r = Row {
        name: "ferryd full, 20 mailboxes in flight".into(),
        wall,
        msgs: data.msgs,
        bytes: data.bytes,
        rss_kb: rss,
        exact,
        note: format!(
            "batch {state}; 20 x {} msgs, {:.0} MB",
            data.msgs / n,
            data.bytes as f64 / MB
        ),
    };
    b.report.add(r);
    f.stop();
    b.drop_users(&dst_users);
}

/// Fills the source users with MULTIAPPEND, four at a time.
fn fill(port: u16, users: &[String], data: &Data, names: &[FolderName]) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= users.len() {
                        break;
                    }
                    multiappend_into(port, &users[i], &data.boxes[i], names)
                        .with_context(|| format!("filling {}", users[i]))
                        .unwrap();
                }
            });
        }
    });
}

fn ratio(b: &Report, num: &str, den: &str) -> Option<f64> {
    // Speed ratio: how many times faster `num` is than `den`.
    Some(b.get(den)?.wall.as_secs_f64() / b.get(num)?.wall.as_secs_f64())
}

fn summary(r: &Report) {
    println!();
    println!("ratios (speed of ferryd / speed of other; >1 = ferryd faster):");
    let f4 = "ferryd full, max-concurrent 4";
    let f1 = "ferryd full, max-concurrent 1";
    let others: Vec<String> = r
        .rows
        .iter()
        .map(|x| x.name.clone())
        .filter(|n| !n.starts_with("ferryd") && !n.contains("no-change"))
        .collect();
    for o in &others {
        let a = ratio(r, f1, o)
            .map(|x| format!("{x:.2}x"))
            .unwrap_or("-".into());
        let c = ratio(r, f4, o)
            .map(|x| format!("{x:.2}x"))
            .unwrap_or("-".into());
        println!("  vs {o:<36} mc1 {a:>7}   mc4 {c:>7}");
    }
    println!();
    println!("goals:");
    let goal = |text: &str, v: Option<f64>, want: f64| match v {
        Some(v) => println!(
            "  [{}] {text}: {v:.2} (goal >= {want})",
            if v >= want { "met " } else { "MISS" }
        ),
        None => println!("  [ -- ] {text}: not measured"),
    };
    goal(
        "full pass (mc 4) speed / dsync one mailbox at a time",
        ratio(r, f4, "dsync (doveadm backup), sequential"),
        1.0,
    );
    goal(
        "full pass (mc 1) speed / dsync one mailbox at a time",
        ratio(r, f1, "dsync (doveadm backup), sequential"),
        1.0,
    );
    goal(
        "full pass (mc 4) speed / mbsync 4 parallel",
        ratio(r, f4, "mbsync, 4 parallel"),
        1.5,
    );
    let ceiling = r
        .rows
        .iter()
        .filter(|x| x.name.starts_with("raw ") && x.exact == "exact")
        .min_by(|a, b| a.wall.cmp(&b.wall));
    if let Some(c) = ceiling {
        goal(
            &format!("full pass (mc 4) speed / raw ceiling ({})", c.name),
            ratio(r, f4, &c.name),
            0.85,
        );
    } else {
        goal("full pass (mc 4) speed / raw ingest ceiling", None, 0.85);
    }
    goal(
        "no-change delta speed / mbsync no-change re-run",
        ratio(
            r,
            "ferryd delta (no change), mc 4",
            "mbsync no-change re-run, 4 parallel",
        ),
        1.0,
    );
    match r
        .get("ferryd full, 20 mailboxes in flight")
        .and_then(|x| x.rss_kb)
    {
        Some(kb) => {
            let mb = kb as f64 / 1024.0;
            println!(
                "  [{}] ferryd peak RSS, 20 mailboxes in flight: {mb:.1} MB (goal < 150 MB)",
                if mb < 150.0 { "met " } else { "MISS" }
            );
        }
        None => println!("  [ -- ] ferryd peak RSS with 20 mailboxes in flight: not measured"),
    }
}

// ---------------------------------------------------------------- WAN

/// Folders of each mailbox in the WAN mode.
const WAN_FOLDERS: usize = 5;
/// Folders of the mailbox whose no-change delta the WAN mode times.
const WIDE_FOLDERS: usize = 20;

/// One line of the WAN table: a run's time at each round trip.
struct WanRow {
    name: &'static str,
    /// Mailboxes one after another in the run (round trips are per mailbox).
    serial: usize,
    times: Vec<Option<Duration>>,
}

impl WanRow {
    fn new(name: &'static str, serial: usize, n: usize) -> WanRow {
        WanRow {
            name,
            serial,
            times: vec![None; n],
        }
    }

    /// Keeps the time at `rtts[i]` (= `rtt`), the least of the runs, and
    /// shows it with what the destination holds.
    fn set(&mut self, i: usize, rtt: u64, wall: Duration, exact: String) {
        println!(
            "  {rtt:>3} ms  {:<40} {:>7.2}s  {exact}",
            self.name,
            wall.as_secs_f64()
        );
        self.times[i] = Some(self.times[i].map_or(wall, |t| t.min(wall)));
    }

    /// Round trips paid per mailbox at `rtts[i]`: (time − time at 0) / RTT.
    fn round_trips(&self, rtts: &[u64], i: usize) -> Option<f64> {
        let t0 = self.times[0]?.as_secs_f64();
        let t = self.times[i]?.as_secs_f64();
        (rtts[i] > 0).then(|| (t - t0) / (rtts[i] as f64 / 1000.0) / self.serial as f64)
    }
}

/// ferryd and dsync through a delay proxy on each side at each round trip
/// in `rtts` (the first is 0): a full pass one mailbox at a time and four
/// at once, then a no-change delta, and a no-change delta of a mailbox of
/// 20 folders.
fn bench_wan(b: &mut Bench, args: &Args, rtts: &[u64]) {
    use ferry_tests::delayproxy::{DelayProxy, Link};
    let n = rtts.len();
    let mut rows = vec![
        WanRow::new("ferryd full, one mailbox at a time", b.users.len(), n),
        WanRow::new("ferryd full, 4 mailboxes at once", 1, n),
        WanRow::new("ferryd delta (no change), 4 at once", 1, n),
        WanRow::new("ferryd delta (no change), 20 folders", 1, n),
        WanRow::new("dsync full, one mailbox at a time", b.users.len(), n),
        WanRow::new("dsync full, 4 mailboxes at once", 1, n),
        WanRow::new("dsync no-change re-run, 4 at once", 1, n),
    ];
    // The wide mailbox: INBOX and 19 folders, 10 small messages each.
    let wide_names: Vec<FolderName> = std::iter::once("INBOX".to_string())
        .chain((1..WIDE_FOLDERS).map(|i| format!("Folder {i:02}")))
        .map(|f| sample::folder_name(&[f], Some('/')))
        .collect();
    let mut wide: Vec<Sample> = sample::messages(&SampleSpec {
        seed: 77,
        messages: WIDE_FOLDERS * 10,
        attachment_percent: 0,
        huge: 0,
    })
    .collect();
    for (i, m) in wide.iter_mut().enumerate() {
        m.folder = i % WIDE_FOLDERS;
    }
    let wide_user = "wide1".to_string();
    b.src.add_user(&wide_user, PW).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    multiappend_into(b.src.port(), &wide_user, &wide, &wide_names).expect("fill the wide mailbox");
    let wide_expected =
        b.rt.block_on(contents_of(b.src.port(), std::slice::from_ref(&wide_user)))
            .expect("read the wide mailbox");

    println!(
        "WAN: a delay proxy before each server; each row's time at round trips {rtts:?} ms, the least of {} run(s)",
        args.repeat
    );
    for (i, &rtt) in rtts.iter().enumerate() {
        let sp = DelayProxy::start(b.src.port(), Link::rtt_ms(rtt));
        let dp = DelayProxy::start(b.dst.port(), Link::rtt_ms(rtt));
        let ports = (sp.port(), dp.port());
        // Other work on the machine only ever slows a run down: the least
        // of several runs is the nearest to the link's own cost.
        for _ in 0..args.repeat {
            if args.wants("ferryd") && b.tools.ferryd.is_some() {
                for (mc, row) in [(1usize, 0usize), (4, 1)] {
                    let dst_users = b.fresh("f", b.users.len());
                    let pairs = b.pairs(&dst_users);
                    let mut f = ferry_setup_ports(&b.src, ports, &pairs, mc).expect("ferryd setup");
                    let (wall, state) = ferry_pass(&f, "full").expect("full pass");
                    rows[row].set(
                        i,
                        rtt,
                        wall,
                        format!("{}; {state}", b.check(&b.expected, &dst_users)),
                    );
                    if mc == 4 {
                        let (wall, state) = ferry_pass(&f, "delta").expect("delta pass");
                        rows[2].set(
                            i,
                            rtt,
                            wall,
                            format!("{}; {state}", b.check(&b.expected, &dst_users)),
                        );
                    }
                    f.stop();
                    b.drop_users(&dst_users);
                }
                let dst_users = b.fresh("w", 1);
                let pairs = vec![(wide_user.clone(), dst_users[0].clone())];
                let mut f = ferry_setup_ports(&b.src, ports, &pairs, 1).expect("ferryd setup");
                ferry_pass(&f, "full").expect("full pass");
                let (wall, state) = ferry_pass(&f, "delta").expect("delta pass");
                rows[3].set(
                    i,
                    rtt,
                    wall,
                    format!("{}; {state}", b.check(&wide_expected, &dst_users)),
                );
                f.stop();
                b.drop_users(&dst_users);
            }
            if args.wants("dsync") && b.tools.doveadm.is_some() {
                for (parallel, row) in [(false, 4usize), (true, 5)] {
                    let dst_users = b.fresh("d", b.users.len());
                    let cmds = |tag: &str| -> Vec<(String, Command)> {
                        b.users
                            .iter()
                            .zip(&dst_users)
                            .map(|(s, d)| (format!("{tag}-{d}"), dsync_cmd_via(b, ports.0, s, d)))
                            .collect()
                    };
                    let run = run_procs(cmds("dsync"), parallel, b.limit, b.work.path());
                    rows[row].set(
                        i,
                        rtt,
                        run.wall,
                        format!(
                            "{} {}",
                            b.check(&b.expected, &dst_users),
                            run.failures.join("; ")
                        ),
                    );
                    if parallel {
                        let run = run_procs(cmds("dsync2"), true, b.limit, b.work.path());
                        rows[6].set(i, rtt, run.wall, run.failures.join("; "));
                    }
                    b.drop_users(&dst_users);
                }
            }
        }
    }
    wan_summary(&rows, rtts);
}

fn wan_summary(rows: &[WanRow], rtts: &[u64]) {
    println!();
    print!("{:<40}", "time (s) at round trip");
    for r in rtts {
        print!(" {:>8}", format!("{r} ms"));
    }
    for r in rtts.iter().skip(1) {
        print!(" {:>9}", format!("RT@{r}"));
    }
    println!();
    for row in rows {
        print!("{:<40}", row.name);
        for t in &row.times {
            match t {
                Some(t) => print!(" {:>8.2}", t.as_secs_f64()),
                None => print!(" {:>8}", "-"),
            }
        }
        for i in 1..rtts.len() {
            match row.round_trips(rtts, i) {
                Some(x) => print!(" {x:>9.1}"),
                None => print!(" {:>9}", "-"),
            }
        }
        println!();
    }
    println!(
        "(RT@x: round trips paid per mailbox, (time at x − time at 0) / x, per mailbox in sequence)"
    );
    println!();
    println!("ratios (speed of ferryd / speed of dsync in this run; >1 = ferryd faster):");
    let speed = |num: usize, den: usize, i: usize| -> Option<f64> {
        Some(rows[den].times[i]?.as_secs_f64() / rows[num].times[i]?.as_secs_f64())
    };
    for (i, r) in rtts.iter().enumerate() {
        let show = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.2}x"));
        println!(
            "  {r:>3} ms: one at a time {:>7}   4 at once {:>7}   no-change {:>7}",
            show(speed(0, 4, i)),
            show(speed(1, 5, i)),
            show(speed(2, 6, i)),
        );
    }
    println!();
    println!("goals:");
    let at = |ms: u64| rtts.iter().position(|r| *r == ms);
    let verdict = |ok: bool| if ok { "met " } else { "MISS" };
    match at(40).and_then(|i| speed(0, 4, i)) {
        Some(x) => println!(
            "  [{}] at 40 ms, one mailbox at a time, speed / dsync: {x:.2} (goal >= 1)",
            verdict(x >= 1.0)
        ),
        None => println!("  [ -- ] at 40 ms, one mailbox at a time / dsync: not measured"),
    }
    for (row, most, what) in [
        (0usize, 20.0, "full pass, per 5-folder mailbox"),
        (2, 5.0, "no-change delta, per 5-folder mailbox"),
        (3, 5.0, "no-change delta, 20-folder mailbox"),
    ] {
        for i in 1..rtts.len() {
            match rows[row].round_trips(rtts, i) {
                Some(x) => println!(
                    "  [{}] round trips at {} ms, {what}: {x:.1} (goal <= {most})",
                    verdict(x <= most),
                    rtts[i]
                ),
                None => println!(
                    "  [ -- ] round trips at {} ms, {what}: not measured",
                    rtts[i]
                ),
            }
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse()?;
    let tools = find_tools();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (per_box, percent, huge) = if args.quick || args.wan.is_some() {
        (250, 6, 1)
    } else {
        (2500, 6, 2)
    };
    let spec = |i: usize| SampleSpec {
        seed: 1000 + i as u64,
        messages: per_box,
        attachment_percent: percent,
        huge,
    };
    let t = Instant::now();
    let mut data = generate(4, spec);
    let mut names = folder_names();
    if args.wan.is_some() {
        // The mailbox the WAN figures speak of: five folders.
        names.truncate(WAN_FOLDERS);
        for m in data.boxes.iter_mut().flatten() {
            m.folder %= WAN_FOLDERS;
        }
    }
    println!(
        "data: 4 mailboxes x {per_box} messages ({percent}% with 0.1-2 MB attachments, {huge} of 10 MB each): {} messages, {:.1} MB, {} under 30 KB (generated in {:.1}s)",
        data.msgs,
        data.bytes as f64 / MB,
        data.boxes
            .iter()
            .flatten()
            .filter(|m| m.body.len() < 30_000)
            .count(),
        t.elapsed().as_secs_f64()
    );
    let src = Dovecot::start().context("source dovecot")?;
    let dst = Dovecot::start().context("destination dovecot")?;
    let users: Vec<String> = (1..=4).map(|i| format!("s{i}")).collect();
    for u in &users {
        src.add_user(u, PW)?;
    }
    std::thread::sleep(Duration::from_millis(1100));
    let t = Instant::now();
    fill(src.port(), &users, &data, &names);
    println!(
        "source filled (MULTIAPPEND, 4 parallel) in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let expected = rt.block_on(contents_of(src.port(), &users))?;
    println!(
        "source read back for comparison in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let mut b = Bench {
        rt,
        tools,
        src,
        dst,
        users,
        data: Arc::new(data),
        expected,
        report: Report { rows: Vec::new() },
        work: tempfile::Builder::new().prefix("copybench").tempdir()?,
        run_no: 0,
        limit: Duration::from_secs(3600),
    };
    println!();
    if let Some(rtts) = &args.wan {
        bench_wan(&mut b, &args, rtts);
        return Ok(());
    }
    Row::print_header();
    if args.wants("ferryd") {
        bench_ferryd(&mut b);
    }
    if args.wants("dsync") {
        bench_dsync(&mut b);
    }
    if args.wants("mbsync") {
        bench_mbsync(&mut b);
    }
    if args.wants("raw") {
        bench_raw(&mut b);
    }
    if args.wants("offlineimap") {
        if args.skip_offlineimap {
            println!("offlineimap: skipped (--skip-offlineimap)");
        } else {
            let limit = if args.quick { 300 } else { 900 };
            bench_offlineimap(&mut b, Duration::from_secs(limit));
        }
    }
    if args.wants("rss20") {
        bench_rss20(&mut b, args.quick);
    }
    summary(&b.report);
    println!();
    println!(
        "notes: wall time of ferryd runs is the daemon's own, PassRequested to PassFinished in its log (`batch wait` polls every 300 ms); \
         peak RSS is the tool's own process tree (VmHWM summed over its processes; for ferryd the daemon's VmHWM), \
         never the Dovecot servers; the raw writer runs inside copybench (no RSS). \
         dsync writes the destination Maildir directly (doveadm), the others go through the destination's IMAP."
    );
    Ok(())
}

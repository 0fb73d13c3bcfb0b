//! Harness for the integration tests: ferryd and ferryctl as real processes
//! on a temporary data directory, driven the way an administrator drives them.

pub mod bench;
pub mod ews_sim;
pub mod graph_sim;
pub mod loggen;
pub mod mailcmp;
pub mod pair;
pub mod sample;
pub mod storerates;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A workspace binary (ferryd, ferryctl), built by `cargo test --workspace`.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>; a bin of this
    // package (copybench) runs from target/<profile>/ itself.
    let mut dir = exe.parent().expect("target dir");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().expect("target dir");
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (it builds the binaries)",
        path.display()
    );
    path
}

/// A ferryd process on its own data directory and socket.
pub struct Ferryd {
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    pub config: Option<PathBuf>,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

impl Ferryd {
    /// Starts ferryd on a fresh temporary directory, with paths under the
    /// system's temporary folder allowed over the socket.
    pub fn start() -> Ferryd {
        Ferryd::start_with_config("")
    }

    /// Starts ferryd with a config file holding `toml`; unless it has an
    /// `[endpoints]` table, one allowing paths under the temporary folder
    /// is added.
    pub fn start_with_config(toml: &str) -> Ferryd {
        let mut d = Ferryd::configured(toml);
        d.launch();
        d
    }

    /// Like [`Ferryd::start_with_config`], but not launched yet.
    pub fn configured(toml: &str) -> Ferryd {
        let tmp = tempfile::tempdir().expect("temp dir");
        let config = tmp.path().join("ferryd.toml");
        let mut toml = toml.to_string();
        if !toml.contains("[endpoints") {
            let roots = format!("{:?}", std::env::temp_dir().display().to_string());
            toml.push_str(&format!("\n[endpoints]\npath_roots = [{roots}]\n"));
        }
        std::fs::write(&config, toml).unwrap();
        Ferryd {
            data_dir: tmp.path().join("data"),
            socket: tmp.path().join("ferryd.sock"),
            config: Some(config),
            child: None,
            _tmp: Some(tmp),
        }
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(bin("ferryd"));
        c.arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--socket")
            .arg(&self.socket)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(cfg) = &self.config {
            c.arg("--config").arg(cfg);
        }
        c
    }

    /// (Re)starts the process and waits until it answers.
    pub fn launch(&mut self) {
        assert!(self.child.is_none(), "ferryd already running");
        let mut child = self.command().spawn().expect("spawn ferryd");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.ctl(&["status"]).status.success() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                use std::io::Read;
                child.stderr.take().unwrap().read_to_string(&mut err).ok();
                panic!("ferryd exited at start ({status}): {err}");
            }
            assert!(Instant::now() < deadline, "ferryd did not answer in 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Drain stderr so the daemon never blocks on a full pipe.
        if let Some(mut err) = child.stderr.take() {
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut err, &mut std::io::sink());
            });
        }
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGTERM, then waits; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        signal(child.id(), libc::SIGTERM);
        wait_timeout(&mut child, Duration::from_secs(30)).expect("ferryd drains within 30 s")
    }

    /// SIGKILL: the crash at an arbitrary instant.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        signal(child.id(), libc::SIGKILL);
        let _ = child.wait();
    }

    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Runs ferryctl against this daemon.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(bin("ferryctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ferryctl")
    }

    /// Runs ferryctl and panics, with its output, unless it succeeds.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "ferryctl {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs ferryctl with `--json` and parses the answer.
    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ctl_ok(&a)).expect("ferryctl --json prints JSON")
    }

    /// Runs ferryctl expecting failure; returns its stderr.
    pub fn ctl_err(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            !out.status.success(),
            "ferryctl {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// The log head, from `ferryctl status --json`.
    pub fn head(&self) -> u64 {
        self.ctl_json(&["status"])["data"]["head"]
            .as_u64()
            .expect("status carries the head")
    }

    /// Sends `bytes` on the control socket as a stranger would (no ferryctl)
    /// and returns what comes back until ferryd closes or 10 s pass. HTTP
    /// requests should say `Connection: close`; the write side is not
    /// half-closed, since hyper drops a connection whose client half-closed
    /// before the answer is written.
    pub fn raw_exchange(&self, bytes: &[u8]) -> Vec<u8> {
        use std::io::{Read, Write};
        use std::os::unix::net::UnixStream;
        let mut stream = UnixStream::connect(&self.socket).expect("connect to the socket");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // Written on a thread: ferryd may answer (and close) before reading it all.
        let mut writer = stream.try_clone().unwrap();
        let bytes = bytes.to_vec();
        let w = std::thread::spawn(move || {
            let _ = writer.write_all(&bytes);
        });
        let mut answer = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
        drop(stream);
        let _ = w.join();
        answer
    }

    /// Every event of the log, as `ferryctl --json events` prints them.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.ctl_ok(&["--json", "events"])
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON event a line"))
            .collect()
    }

    /// The events of type `kind`, oldest first.
    pub fn events_of(&self, kind: &str) -> Vec<serde_json::Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event_type"] == kind)
            .collect()
    }

    /// `batch start NAME --pass PASS`, then waits for it to end.
    pub fn run_pass(&self, batch: &str, pass: &str) {
        self.ctl_ok(&["batch", "start", batch, "--pass", pass]);
        self.ctl_ok(&["batch", "wait", batch, "--timeout", "300"]);
    }

    /// Polls `cond` every 100 ms until it holds; panics after `secs`.
    pub fn wait_for(&self, secs: u64, what: &str, mut cond: impl FnMut(&Ferryd) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !cond(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The test's temporary directory (parent of the data dir).
    pub fn dir(&self) -> &Path {
        self.data_dir.parent().unwrap()
    }

    /// A file in the test's temporary directory.
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.data_dir.parent().unwrap().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for Ferryd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), libc::SIGKILL);
            let _ = child.wait();
        }
    }
}

pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid we spawned and still own.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

pub fn wait_timeout(child: &mut Child, t: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + t;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A config file's text that names `command` as the OAuth token command
/// `tok` and allows paths under the temporary folder.
pub fn token_command_config(command: &str) -> String {
    let roots = std::env::temp_dir().display().to_string();
    format!("[endpoints]\npath_roots = [{roots:?}]\ntoken_commands = {{ tok = {command:?} }}\n")
}

/// A TCP proxy that drops, resets and stalls connections on command.
pub mod faultproxy;

/// A TCP proxy that delays each direction, as a long link does.
pub mod delayproxy;

/// The fuzz targets' bodies, replayed on stable by `tests/it/fuzz_corpora.rs`.
pub mod fuzzing;

impl Ferryd {
    /// Like [`Ferryd::launch`], but the daemon's stderr (its log) is
    /// appended to `log`, so a test can look for what the engine did.
    pub fn launch_logged(&mut self, log: &Path) {
        assert!(self.child.is_none(), "ferryd already running");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open the ferryd log file");
        let mut child = self
            .command()
            .env("NO_COLOR", "1")
            .stderr(Stdio::from(file))
            .spawn()
            .expect("spawn ferryd");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.ctl(&["status"]).status.success() {
            if let Ok(Some(status)) = child.try_wait() {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                panic!("ferryd exited at start ({status}): {text}");
            }
            assert!(Instant::now() < deadline, "ferryd did not answer in 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }
}

/// The most ranges of a large folder the daemon's log shows in flight at once.
pub fn ranges_at_once(log: &str) -> usize {
    let (mut open, mut most) = (0usize, 0usize);
    for line in log.lines() {
        if line.contains("range of a large folder begun") {
            open += 1;
            most = most.max(open);
        } else if line.contains("range of a large folder ended") {
            open = open.saturating_sub(1);
        }
    }
    most
}

/// Sum of `found=N` over the engine's "settled in-doubt items" log lines:
/// in-doubt appends found at the destination by digest, not copied again.
pub fn settled_in_log(log: &str) -> u64 {
    log.lines()
        .map(strip_ansi)
        .filter(|l| l.contains("settled in-doubt items"))
        .filter_map(|l| {
            let v = l.split("found=").nth(1)?;
            v.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// `line` without terminal colour sequences (ESC [ ... m).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// An IMAP session on 127.0.0.1:`port` (no TLS) with LOGIN.
pub async fn imap_login(
    port: u16,
    user: &str,
    password: &str,
) -> ferry_connectors::imap::ImapSession {
    use ferry_connectors::imap::{self, ImapAuth, ImapConfig, TlsMode};
    let cfg = ImapConfig {
        host: "127.0.0.1".into(),
        port,
        tls: TlsMode::None,
        ca_file: None,
        timeout: Duration::from_secs(30),
        fence: None,
    };
    let auth = ImapAuth::Login {
        user: user.into(),
        password: password.into(),
    };
    imap::connect(&cfg, &auth).await.expect("IMAP login")
}

impl Ferryd {
    /// `endpoint add NAME --kind imap` on 127.0.0.1:`port`, plain text, with
    /// an admin (master) login that acts for every user.
    pub fn add_imap_endpoint(&self, name: &str, port: u16, admin: (&str, &str)) {
        let pw = self.file(&format!("{name}.admin.pw"), &format!("{}\n", admin.1));
        self.ctl_ok(&[
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
            admin.0,
            "--password-file",
            pw.to_str().unwrap(),
        ]);
    }

    /// `endpoint add NAME --kind ews` on the simulator, NTLM, acting
    /// through the simulator's account `admin`; `extra` options follow.
    pub fn add_ews_endpoint(
        &self,
        name: &str,
        sim: &ews_sim::EwsSim,
        admin: (&str, &str),
        extra: &[&str],
    ) {
        let pw = self.file(&format!("{name}.admin.pw"), &format!("{}\n", admin.1));
        let user = format!("SIM\\{}", admin.0);
        let mut args = vec!["endpoint", "add", name, "--kind", "ews", "--host"];
        let url = sim.url();
        let ca = sim.ca_file();
        args.extend_from_slice(&[&url, "--ca-file", ca.to_str().unwrap()]);
        args.extend_from_slice(&["--auth", "ntlm", "--admin-user", &user]);
        args.extend_from_slice(&["--password-file", pw.to_str().unwrap()]);
        args.extend_from_slice(extra);
        self.ctl_ok(&args);
    }

    /// `endpoint add NAME --kind maildir` with its root folder.
    pub fn add_maildir_endpoint(&self, name: &str, root: &Path) {
        self.ctl_ok(&[
            "endpoint",
            "add",
            name,
            "--kind",
            "maildir",
            "--host",
            root.to_str().unwrap(),
        ]);
    }

    /// `batch create NAME` from `source` to `destination` for `users`, each
    /// `USER@old.example` → `USER@new.example` with login USER on both sides;
    /// `extra` options follow.
    pub fn create_batch(
        &self,
        name: &str,
        source: &str,
        destination: &str,
        users: &[&str],
        extra: &[&str],
    ) {
        let rows = users
            .iter()
            .map(|u| format!("{u}@old.example,{u}@new.example,{u},{u}"));
        let header = "SourceEmail,DestinationEmail,SourceLogin,DestinationLogin";
        self.batch_of_rows(name, [source, destination], header, rows, extra);
    }

    /// `batch create NAME` from the EWS endpoint `ends[0]` to `ends[1]`
    /// for `users` (`U@sim.example` → `U@new.example`, destination login
    /// U; the endpoint acts for each user); `extra` options follow.
    pub fn create_ews_batch(&self, name: &str, ends: [&str; 2], users: &[&str], extra: &[&str]) {
        let rows = users
            .iter()
            .map(|u| format!("{u}@sim.example,{u}@new.example,{u}"));
        let header = "SourceEmail,DestinationEmail,DestinationLogin";
        self.batch_of_rows(name, ends, header, rows, extra);
    }

    fn batch_of_rows(
        &self,
        name: &str,
        [source, destination]: [&str; 2],
        header: &str,
        rows: impl Iterator<Item = String>,
        extra: &[&str],
    ) {
        let mut csv = format!("{header}\n");
        rows.for_each(|r| csv.push_str(&format!("{r}\n")));
        let csv = self.file(&format!("{name}.csv"), &csv);
        let mut args = vec!["batch", "create", name, "--source", source];
        args.extend_from_slice(&["--destination", destination, "--csv", csv.to_str().unwrap()]);
        args.extend_from_slice(extra);
        self.ctl_ok(&args);
    }
}

impl Ferryd {
    /// Starts ferryd on a copy of an existing data directory (a fixture).
    pub fn start_on_copy(data: &Path) -> Ferryd {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data_dir = tmp.path().join("data");
        let status = Command::new("cp")
            .arg("-a")
            .arg(data)
            .arg(&data_dir)
            .status()
            .expect("cp");
        assert!(status.success(), "copy {}", data.display());
        // Git keeps no modes; ferryd's own files are private.
        use std::os::unix::fs::PermissionsExt;
        for (p, mode) in [("", 0o700), ("secrets", 0o700), ("secret.key", 0o600)] {
            let p = data_dir.join(p);
            if p.exists() {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            }
        }
        let mut d = Ferryd {
            data_dir,
            socket: tmp.path().join("ferryd.sock"),
            config: None,
            child: None,
            _tmp: Some(tmp),
        };
        d.launch();
        d
    }
}

/// Writes `message` over the one empty message file in a Maildir `cur`
/// folder (same file, so the same UID), as an admin mends a broken item.
pub fn mend_empty_message(cur: &Path, message: &[u8]) -> PathBuf {
    let file = std::fs::read_dir(cur)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::metadata(p).unwrap().len() == 0)
        .expect("an empty message file");
    std::fs::write(&file, message).unwrap();
    file
}

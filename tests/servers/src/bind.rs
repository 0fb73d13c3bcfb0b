//! A throwaway BIND 9 (`named -g -c FILE`) authoritative for two zones, for
//! the DNS tests.
//!
//! - `example.test`: MX `10 mx1.example.test` with TTL 7200 (above the
//!   3,600 s advice), an `autodiscover` CNAME, dynamic updates allowed to
//!   the TSIG key in [`Bind::key_file`];
//! - `manual.test`: MX `10 mx.manual.test`, no CNAME, no updates.
//!
//! Keys come from BIND's own `tsig-keygen`. Everything lives in one temp
//! dir; named listens on 127.0.0.1 only, UDP and TCP on one free port, with
//! no control channel and no recursion. Dropping the handle sends SIGTERM by
//! pid, then SIGKILL after a grace period.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::free_port;

const NAMED: &str = "/usr/sbin/named";
const TSIG_KEYGEN: &str = "/usr/sbin/tsig-keygen";
/// The key named allows to update `example.test`.
pub const KEY_NAME: &str = "ferry-update";
const STARTUP_LIMIT: Duration = Duration::from_secs(15);
const STOP_GRACE: Duration = Duration::from_secs(3);

/// A running named; stopped by pid and deleted on drop.
#[derive(Debug)]
pub struct Bind {
    child: Child,
    dir: TempDir,
    port: u16,
}

impl Bind {
    pub fn start() -> io::Result<Bind> {
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start() {
                Ok(b) => return Ok(b),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("named did not start")))
    }

    fn try_start() -> io::Result<Bind> {
        for bin in [NAMED, TSIG_KEYGEN] {
            if !Path::new(bin).exists() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{bin} is missing: install Debian's bind9 (scripts/test.sh does)"),
                ));
            }
        }
        let dir = tempfile::Builder::new().prefix("ferry-bind").tempdir()?;
        let root = dir.path();
        fs::write(root.join("update.key"), keygen(KEY_NAME)?)?;
        // Same name, another secret: named answers BADSIG.
        fs::write(root.join("wrong-secret.key"), keygen(KEY_NAME)?)?;
        // A name named does not know: BADKEY.
        fs::write(root.join("unknown.key"), keygen("stranger")?)?;
        fs::write(root.join("example.test.zone"), EXAMPLE_ZONE)?;
        fs::write(root.join("manual.test.zone"), MANUAL_ZONE)?;

        let port = free_port()?;
        let conf = root.join("named.conf");
        fs::write(&conf, named_conf(root, port))?;
        let log = fs::File::create(root.join("named.log"))?;
        let child = Command::new(NAMED)
            .arg("-g")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let mut bind = Bind { child, dir, port };
        bind.wait_ready()?;
        Ok(bind)
    }

    /// named logs `running` once every zone is loaded and it listens.
    fn wait_ready(&mut self) -> io::Result<()> {
        let log = self.dir.path().join("named.log");
        let deadline = Instant::now() + STARTUP_LIMIT;
        loop {
            let text = fs::read_to_string(&log).unwrap_or_default();
            if text.lines().any(|l| l.ends_with(" running")) {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                let kind = if text.contains("address in use") {
                    io::ErrorKind::AddrInUse
                } else {
                    io::ErrorKind::Other
                };
                return Err(io::Error::new(
                    kind,
                    format!("named exited with {status}: {text}"),
                ));
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("named did not start within {STARTUP_LIMIT:?}: {text}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, for UDP and TCP.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The key allowed to update `example.test`, as `tsig-keygen` wrote it.
    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("update.key")
    }

    /// A key with the right name and a wrong secret.
    pub fn wrong_secret_key_file(&self) -> PathBuf {
        self.dir.path().join("wrong-secret.key")
    }

    /// A key named does not know.
    pub fn unknown_key_file(&self) -> PathBuf {
        self.dir.path().join("unknown.key")
    }

    /// What named logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        crate::stop_child(&mut self.child, STOP_GRACE);
    }
}

fn keygen(name: &str) -> io::Result<String> {
    let out = Command::new(TSIG_KEYGEN)
        .args(["-a", "hmac-sha256", name])
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "tsig-keygen failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    String::from_utf8(out.stdout).map_err(io::Error::other)
}

fn named_conf(root: &Path, port: u16) -> String {
    let d = root.display();
    format!(
        r#"include "{d}/update.key";
options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
}};
controls {{ }};
zone "example.test" {{
    type primary;
    file "{d}/example.test.zone";
    allow-update {{ key "{KEY_NAME}"; }};
}};
zone "manual.test" {{
    type primary;
    file "{d}/manual.test.zone";
}};
"#
    )
}

const EXAMPLE_ZONE: &str = "$TTL 3600
@ IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 300
@ IN NS ns1
@ 7200 IN MX 10 mx1.example.test.
ns1 IN A 127.0.0.1
mx1 IN A 127.0.0.1
autodiscover IN CNAME autodiscover.outlook.com.
";

const MANUAL_ZONE: &str = "$TTL 300
@ IN SOA ns1.manual.test. hostmaster.manual.test. 1 3600 600 86400 300
@ IN NS ns1
@ IN MX 10 mx.manual.test.
ns1 IN A 127.0.0.1
mx IN A 127.0.0.1
";

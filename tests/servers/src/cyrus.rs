//! A throwaway Cyrus IMAP 3.6 (Debian's build) for the IMAP tests.
//!
//! Debian's cyrus-imapd conflicts with dovecot-imapd, so it is not installed:
//! `scripts/cyrus.sh` unpacks its packages into `target/cyrus-root` (or
//! `$FERRY_CYRUS_ROOT`), and the master runs from there with
//! `LD_LIBRARY_PATH` on the unpacked libraries. Without that tree,
//! [`Cyrus::start`] fails with `NotFound` and says so.
//!
//! Everything else lives under one temp dir: `imapd.conf`, `cyrus.conf`, the
//! config directory (mailboxes.db, locks, proc, sockets), the mail partition
//! and a sasldb holding the passwords (SASL auxprop, written with the
//! unpacked `saslpasswd2`), so logins need no system daemon and a wrong
//! password is refused. The namespace is `altnamespace: yes` (Cyrus 3's own
//! default): a user's folders sit beside INBOX (`Archive/2024`), as on the
//! Dovecot harness, not below it (`INBOX/Archive/2024`). The delimiter is
//! '/' (`unixhierarchysep: yes`). The admin `cyrus` may also act for any
//! user with SASL PLAIN and an authorization identity (`proxyservers`).
//! `munge8bit: no` keeps appended messages byte for byte (see
//! [`CyrusOptions::munge8bit`]).
//!
//! Cyrus refuses to run as root: when the tests are root, the master drops
//! to `nobody` itself (`cyrus_user`) and the tree is chowned to it.
//! Dropping the handle sends SIGTERM to the master by pid, waits, kills its
//! process group if it lingers, and removes the dir. Cyrus logs to syslog
//! only, so there is no log file to show.

use std::ffi::{CStr, CString};
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{free_port, wait_for_port};

const ADMIN_USER: &str = "cyrus";
const ADMIN_PASSWORD: &str = "cyrus-admin-secret";
/// The unprivileged account the master switches to when started as root.
const ROOT_RUN_USER: &str = "nobody";
const STARTUP_LIMIT: Duration = Duration::from_secs(15);
const STOP_GRACE: Duration = Duration::from_millis(2000);
const LIB_DIR: &str = "usr/lib/x86_64-linux-gnu";

/// How to start a [`Cyrus`]; the default is the test setup described above.
#[derive(Debug, Clone)]
pub struct CyrusOptions {
    /// `altnamespace`: `true` puts a user's folders beside INBOX
    /// (`Archive`), `false` below it (`INBOX/Archive`, Debian's shipped
    /// imapd.conf).
    pub altnamespace: bool,
    /// `munge8bit`: Cyrus's default (`true`) replaces raw 8-bit bytes in
    /// appended headers with 'X', which keeps sizes but changes the bytes;
    /// `false` (the test default) stores messages as given.
    pub munge8bit: bool,
}

impl Default for CyrusOptions {
    fn default() -> Self {
        CyrusOptions {
            altnamespace: true,
            munge8bit: false,
        }
    }
}

/// A running Cyrus; stopped (SIGTERM by pid) and deleted on drop.
#[derive(Debug)]
pub struct Cyrus {
    child: Child,
    // Dropped after the child is stopped (see `Drop`), which removes the tree.
    dir: TempDir,
    root: PathBuf,
    port: u16,
    servername: String,
    owner: Option<(u32, u32)>,
}

impl Cyrus {
    /// Where `scripts/cyrus.sh` unpacks Cyrus: `$FERRY_CYRUS_ROOT`, else the
    /// workspace's `target/cyrus-root`.
    pub fn root() -> PathBuf {
        match std::env::var_os("FERRY_CYRUS_ROOT") {
            Some(p) => PathBuf::from(p),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/cyrus-root"),
        }
    }

    /// Whether the unpacked Cyrus is there (tests skip when it is not).
    pub fn available() -> bool {
        Self::root().join("usr/lib/cyrus/bin/master").exists()
    }

    /// Starts Cyrus on a free port of 127.0.0.1 with only the admin user.
    pub fn start() -> io::Result<Cyrus> {
        Self::start_with(CyrusOptions::default())
    }

    pub fn start_with(options: CyrusOptions) -> io::Result<Cyrus> {
        let root = Self::root();
        if !Self::available() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "Cyrus is not unpacked at {}: run scripts/cyrus.sh",
                    root.display()
                ),
            ));
        }
        // A port picked by binding :0 can be taken by someone else before
        // the master binds it; a fresh attempt with a new port settles that.
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start(&root, &options) {
                Ok(c) => return Ok(c),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("cyrus did not start")))
    }

    fn try_start(root: &Path, options: &CyrusOptions) -> io::Result<Cyrus> {
        let dir = tempfile::Builder::new().prefix("ferry-cyrus").tempdir()?;
        // The unprivileged server must reach its files below the temp dir.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        let base = dir.path();
        for sub in ["conf", "spool", "run"] {
            fs::create_dir(base.join(sub))?;
        }
        let (run_user, owner) = if unsafe { libc::geteuid() } == 0 {
            (ROOT_RUN_USER.to_string(), Some(user_ids(ROOT_RUN_USER)?))
        } else {
            (current_user_name()?, None)
        };
        let port = free_port()?;
        // Unique, so the greeting tells this server from whoever else may
        // hold the port; also the SASL realm of the sasldb entries.
        let servername = format!("ferry-cyrus-{port}-{}", std::process::id());
        let conf = base.join("imapd.conf");
        fs::write(&conf, imapd_conf(base, &servername, &run_user, options))?;
        fs::write(base.join("cyrus.conf"), cyrus_conf(root, base, port))?;

        let child = Command::new(root.join("usr/lib/cyrus/bin/master"))
            .arg("-C")
            .arg(&conf)
            .arg("-M")
            .arg(base.join("cyrus.conf"))
            .arg("-p")
            .arg(base.join("run/master.pid"))
            .current_dir(base)
            .env("LD_LIBRARY_PATH", root.join(LIB_DIR))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own group, so that Drop can also reach the imapd children.
            .process_group(0)
            .spawn()?;
        let mut cyrus = Cyrus {
            child,
            dir,
            root: root.to_path_buf(),
            port,
            servername,
            owner,
        };
        cyrus.set_password(ADMIN_USER, ADMIN_PASSWORD)?;
        cyrus.wait_ready()?;
        Ok(cyrus)
    }

    fn wait_ready(&mut self) -> io::Result<()> {
        let child = &mut self.child;
        wait_for_port(self.port, STARTUP_LIMIT, || match child.try_wait()? {
            None => Ok(()),
            Some(status) => {
                let mut text = String::new();
                if let Some(mut err) = child.stderr.take() {
                    let _ = io::Read::read_to_string(&mut err, &mut text);
                }
                Err(io::Error::other(format!(
                    "cyrus master exited with {status}: {text}"
                )))
            }
        })?;
        let mut conn = Conn::open(self.port)?;
        if !conn.greeting.contains(&self.servername) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "another server answers on port {}: {}",
                    self.port, conn.greeting
                ),
            ));
        }
        conn.command("LOGOUT")?;
        Ok(())
    }

    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The admin (`admins: cyrus`): SASL PLAIN with authzid = target user
    /// logs in as that user.
    pub fn admin_user(&self) -> (&'static str, &'static str) {
        (ADMIN_USER, ADMIN_PASSWORD)
    }

    /// Adds (or re-passwords) a user and creates its mailbox `user/NAME`
    /// as the admin; an existing mailbox is left as it is.
    pub fn add_user(&self, name: &str, password: &str) -> io::Result<()> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("user name {name:?} not fit for a Cyrus mailbox"),
            ));
        }
        self.set_password(name, password)?;
        let answer = self.admin_command(&format!("CREATE user/{name}"))?;
        // Cyrus 3.6 says "NO Mailbox already exists", without a response code.
        if answer.starts_with("OK") || answer.contains("already exists") {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "CREATE user/{name} refused: {answer}"
            )))
        }
    }

    /// Runs one command as the admin and returns the tagged answer without
    /// its tag (`OK ...`, `NO ...`, `BAD ...`).
    pub fn admin_command(&self, command: &str) -> io::Result<String> {
        let mut conn = Conn::open(self.port)?;
        let login = conn.command(&format!(
            "LOGIN {} {}",
            quoted(ADMIN_USER),
            quoted(ADMIN_PASSWORD)
        ))?;
        if !login.starts_with("OK") {
            return Err(io::Error::other(format!("admin login refused: {login}")));
        }
        let answer = conn.command(command)?;
        let _ = conn.command("LOGOUT");
        Ok(answer)
    }

    /// Writes `name`'s password into the sasldb (realm = servername, the
    /// realm imapd asks for).
    fn set_password(&self, name: &str, password: &str) -> io::Result<()> {
        let sasldb = self.dir.path().join("sasldb2");
        let mut child = Command::new(self.root.join("usr/sbin/saslpasswd2"))
            .arg("-f")
            .arg(&sasldb)
            .args(["-c", "-p", "-u", &self.servername, name])
            .env("LD_LIBRARY_PATH", self.root.join(LIB_DIR))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        // `-p`: the password is the whole of stdin, no newline.
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(password.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "saslpasswd2 failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        // Created by root, read by the server's own user.
        if let Some((uid, gid)) = self.owner {
            chown_tree(self.dir.path(), uid, gid)?;
        }
        Ok(())
    }
}

impl Drop for Cyrus {
    fn drop(&mut self) {
        let Ok(pid) = i32::try_from(self.child.id()) else {
            return;
        };
        // SIGTERM makes the master stop its children; whatever lingers past
        // the grace period is killed with the whole group (see
        // `process_group(0)`).
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Children still serving a connection outlive the master.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// A bare IMAP connection for the harness's own admin commands.
struct Conn {
    reader: BufReader<TcpStream>,
    greeting: String,
    tag: u32,
}

impl Conn {
    fn open(port: u16) -> io::Result<Conn> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut reader = BufReader::new(stream);
        let mut greeting = String::new();
        reader.read_line(&mut greeting)?;
        Ok(Conn {
            reader,
            greeting,
            tag: 0,
        })
    }

    /// Sends one command, skips untagged lines, returns the tagged answer.
    fn command(&mut self, command: &str) -> io::Result<String> {
        self.tag += 1;
        let tag = format!("h{}", self.tag);
        write!(self.reader.get_mut(), "{tag} {command}\r\n")?;
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection closed during {command:?}"),
                ));
            }
            if let Some(rest) = line.strip_prefix(&format!("{tag} ")) {
                return Ok(rest.trim_end().to_string());
            }
        }
    }
}

/// An IMAP quoted string (the harness only quotes its own ASCII names).
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn imapd_conf(base: &Path, servername: &str, run_user: &str, options: &CyrusOptions) -> String {
    let b = base.display();
    let yes_no = |on: bool| if on { "yes" } else { "no" };
    let (altnamespace, munge8bit) = (yes_no(options.altnamespace), yes_no(options.munge8bit));
    format!(
        r#"# Generated by ferry-testservers; nothing outside this dir is written.
configdirectory: {b}/conf
partition-default: {b}/spool
defaultpartition: default
proc_path: {b}/run/proc
mboxname_lockpath: {b}/run/lock
lmtpsocket: {b}/run/lmtp
idlesocket: {b}/run/idle
notifysocket: {b}/run/notify
servername: {servername}
syslog_prefix: ferry-cyrus
cyrus_user: {run_user}
admins: {ADMIN_USER}
proxyservers: {ADMIN_USER}
virtdomains: off
altnamespace: {altnamespace}
unixhierarchysep: yes
allowplaintext: yes
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: {b}/sasldb2
sasl_mech_list: PLAIN LOGIN
# Tests check refused logins; the default 3 s pause only slows them.
failedloginpause: 0
munge8bit: {munge8bit}
"#
    )
}

fn cyrus_conf(root: &Path, base: &Path, port: u16) -> String {
    let bin = root.join("usr/lib/cyrus/bin");
    let (bin, conf) = (bin.display(), base.join("imapd.conf"));
    let conf = conf.display();
    format!(
        r#"START {{
  recover cmd="{bin}/ctl_cyrusdb -C {conf} -r"
}}
SERVICES {{
  imap cmd="{bin}/imapd -C {conf}" listen="127.0.0.1:{port}" prefork=0
}}
EVENTS {{
}}
"#
    )
}

fn user_ids(name: &str) -> io::Result<(u32, u32)> {
    let c = CString::new(name).map_err(io::Error::other)?;
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    if pw.is_null() {
        return Err(io::Error::other(format!("no user {name} to run Cyrus as")));
    }
    Ok(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

fn current_user_name() -> io::Result<String> {
    let pw = unsafe { libc::getpwuid(libc::geteuid()) };
    if pw.is_null() {
        return Err(io::Error::other("current uid has no passwd entry"));
    }
    let name = unsafe { CStr::from_ptr((*pw).pw_name) };
    Ok(name.to_string_lossy().into_owned())
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    chown(path, Some(uid), Some(gid))?;
    if fs::symlink_metadata(path)?.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(port: u16, user: &str, password: &str) -> String {
        let mut c = Conn::open(port).unwrap();
        c.command(&format!("LOGIN {} {}", quoted(user), quoted(password)))
            .unwrap()
    }

    #[test]
    fn starts_logs_in_and_stops() {
        let c = match Cyrus::start() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                eprintln!("skipped: {e}");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        c.add_user("alice", "pw1").unwrap();
        // Adding twice keeps the mailbox and takes the new password.
        c.add_user("alice", "pw2").unwrap();
        assert!(login(c.port(), "alice", "pw2").starts_with("OK"));
        assert!(login(c.port(), "alice", "pw1").starts_with("NO"));
        // The admin holds the 'a' right on every mailbox, not 'r' (STATUS).
        let acl = c.admin_command("GETACL user/alice").unwrap();
        assert!(acl.starts_with("OK"), "{acl}");
        let acl = c.admin_command("GETACL user/nobody-here").unwrap();
        assert!(acl.starts_with("NO"), "{acl}");
        assert!(c.add_user("a b", "x").is_err());
        let pid = c.child.id() as i32;
        let dir = c.dir().to_path_buf();
        drop(c);
        assert!(!dir.exists());
        assert_eq!(unsafe { libc::kill(pid, 0) }, -1, "master is gone");
    }
}

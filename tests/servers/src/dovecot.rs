//! A throwaway Dovecot 2.3 (`dovecot -c FILE -F`) for the IMAP tests.
//!
//! Everything lives under one temp dir: config, sockets (`base_dir`),
//! `state_dir`, the log, the passwd-files (one a user) and the users'
//! Maildir homes. The server listens on 127.0.0.1 only, on ports picked by
//! binding :0 first.
//! When run as root (as the tests are), mail is owned by uid/gid 1000 since
//! Dovecot refuses to deliver mail as root; otherwise by the current user.
//! Dropping the handle sends SIGTERM to the master by pid, waits for it and
//! removes the dir.

use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

use crate::{free_port, wait_for_port};

const MASTER_USER: &str = "ferrymaster";
const MASTER_PASSWORD: &str = "master-secret";
/// Owner of the mail files when the tests run as root.
const ROOT_MAIL_UID: u32 = 1000;
const STARTUP_LIMIT: Duration = Duration::from_secs(10);
const STOP_GRACE: Duration = Duration::from_millis(1500);

/// How to start a [`Dovecot`].
#[derive(Debug, Clone, Default)]
pub struct DovecotOptions {
    /// Generate a CA and a server certificate, offer STARTTLS on the imap
    /// port and open an imaps port too.
    pub tls: bool,
    /// Also accept XOAUTH2 bearer tokens that this token service vouches
    /// for, as Exchange Online does an application's app-only token.
    pub oauth2: Option<OAuth2Check>,
}

/// An RFC 7662 introspection endpoint Dovecot asks about each bearer
/// token, and the audience a token must carry.
#[derive(Debug, Clone)]
pub struct OAuth2Check {
    pub introspection_url: String,
    pub ca_file: PathBuf,
    pub audience: String,
}

/// A running Dovecot; stopped (SIGTERM by pid) and deleted on drop.
#[derive(Debug)]
pub struct Dovecot {
    child: Child,
    // Dropped after the child is stopped (see `Drop`), which removes the tree.
    dir: TempDir,
    config: PathBuf,
    port: u16,
    imaps_port: Option<u16>,
    ca_pem: Option<PathBuf>,
    uid: u32,
    gid: u32,
}

impl Dovecot {
    /// Starts a plain-text Dovecot (no TLS at all).
    pub fn start() -> io::Result<Dovecot> {
        Self::start_with(DovecotOptions::default())
    }

    /// Starts a Dovecot with STARTTLS and implicit TLS, signed by a fresh CA.
    pub fn start_tls() -> io::Result<Dovecot> {
        Self::start_with(DovecotOptions {
            tls: true,
            ..DovecotOptions::default()
        })
    }

    pub fn start_with(options: DovecotOptions) -> io::Result<Dovecot> {
        // A port picked by binding :0 can be taken by someone else before
        // Dovecot binds it; a fresh attempt with new ports settles that.
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start(&options) {
                Ok(d) => return Ok(d),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("dovecot did not start")))
    }

    fn try_start(options: &DovecotOptions) -> io::Result<Dovecot> {
        let dir = tempfile::Builder::new().prefix("ferry-dovecot").tempdir()?;
        // The mail user must be able to reach its home below the temp dir.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        let root = dir.path();
        for sub in ["run", "state", "home", "users"] {
            fs::create_dir(root.join(sub))?;
        }
        let euid = unsafe { libc::geteuid() };
        let (uid, gid, login_user, internal_user) = if euid == 0 {
            (
                ROOT_MAIL_UID,
                ROOT_MAIL_UID,
                "dovenull".to_string(),
                "dovecot".to_string(),
            )
        } else {
            let name = current_user_name()?;
            (euid, unsafe { libc::getegid() }, name.clone(), name)
        };
        fs::write(
            root.join("masters"),
            format!("{MASTER_USER}:{{PLAIN}}{MASTER_PASSWORD}\n"),
        )?;

        let port = free_port()?;
        let (imaps_port, ca_pem, ssl) = if options.tls {
            let imaps = free_port()?;
            let ca = write_certificates(root)?;
            let ssl = format!(
                "ssl = yes\nssl_cert = <{}\nssl_key = <{}\n",
                root.join("server.pem").display(),
                root.join("server.key").display()
            );
            (Some(imaps), Some(ca), ssl)
        } else {
            (None, None, "ssl = no\n".to_string())
        };

        let config = root.join("dovecot.conf");
        let mut text = config_text(
            root,
            port,
            imaps_port.unwrap_or(0),
            &ssl,
            &login_user,
            &internal_user,
        );
        if let Some(o) = &options.oauth2 {
            text.push_str(&oauth2_passdb(root, o)?);
        }
        fs::write(&config, text)?;

        let child = Command::new("/usr/sbin/dovecot")
            .arg("-c")
            .arg(&config)
            .arg("-F")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own group, so that Drop can also reach the workers.
            .process_group(0)
            .spawn()?;
        let mut dovecot = Dovecot {
            child,
            dir,
            config,
            port,
            imaps_port,
            ca_pem,
            uid,
            gid,
        };
        dovecot.wait_ready()?;
        Ok(dovecot)
    }

    fn wait_ready(&mut self) -> io::Result<()> {
        let ports = [Some(self.port), self.imaps_port];
        for port in ports.into_iter().flatten() {
            let child = &mut self.child;
            let log = self.dir.path().join("dovecot.log");
            wait_for_port(port, STARTUP_LIMIT, || match child.try_wait()? {
                None => Ok(()),
                Some(status) => {
                    let mut text = fs::read_to_string(&log).unwrap_or_default();
                    if let Some(mut err) = child.stderr.take() {
                        let _ = io::Read::read_to_string(&mut err, &mut text);
                    }
                    let kind = if text.contains("Address already in use") {
                        io::ErrorKind::AddrInUse
                    } else {
                        io::ErrorKind::Other
                    };
                    Err(io::Error::new(
                        kind,
                        format!("dovecot exited with {status}: {text}"),
                    ))
                }
            })?;
        }
        Ok(())
    }

    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The imap port (STARTTLS offered there in TLS mode).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The implicit-TLS port, in TLS mode only.
    pub fn imaps_port(&self) -> Option<u16> {
        self.imaps_port
    }

    /// PEM of the CA that signed the server certificate, in TLS mode only.
    pub fn ca_pem_path(&self) -> Option<&Path> {
        self.ca_pem.as_deref()
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Master user credentials: SASL PLAIN with authzid = target user, or
    /// LOGIN `target*master`.
    pub fn master_user(&self) -> (&'static str, &'static str) {
        (MASTER_USER, MASTER_PASSWORD)
    }

    /// Adds (or replaces) a user; a new user can log in at once.
    pub fn add_user(&self, name: &str, password: &str) -> io::Result<()> {
        self.add_users(&[name], password)
    }

    /// Adds (or replaces) `names`, all with `password`. Each user has a
    /// passwd-file of its own (`users/%u`): Dovecot opens a new user's file
    /// at its first lookup, so nobody waits for it to notice a change.
    pub fn add_users(&self, names: &[&str], password: &str) -> io::Result<()> {
        if names
            .iter()
            .any(|n| n.is_empty() || n.starts_with('.') || n.contains([':', '\n', '/', '%']))
            || password.contains([':', '\n'])
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "user name or password not fit for a passwd-file",
            ));
        }
        let mut replaced = false;
        for name in names {
            let home = self.dir.path().join("home").join(name);
            if !home.exists() {
                fs::create_dir(&home)?;
                chown(&home, Some(self.uid), Some(self.gid))?;
            }
            let file = self.dir.path().join("users").join(name);
            replaced |= file.exists();
            let line = format!(
                "{name}:{{PLAIN}}{password}:{}:{}::{}::\n",
                self.uid,
                self.gid,
                home.display()
            );
            // Rename so the auth process never reads a half-written file.
            let tmp = self.dir.path().join("users").join(format!(".{name}.new"));
            fs::write(&tmp, line)?;
            fs::rename(tmp, file)?;
        }
        if replaced {
            // A file Dovecot holds is looked at again at most once a
            // second, and a lookup that misses makes the next one wait
            // seconds: ask only once the second has turned.
            let into_second = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_micros() as u64;
            std::thread::sleep(Duration::from_micros(1_000_000 - into_second + 20_000));
        }
        // Until it knows every user, so that a login cannot race.
        for name in names {
            let mut known = false;
            for _ in 0..100 {
                known = self
                    .doveadm(&["auth", "test", name, password])
                    .is_ok_and(|o| o.status.success());
                if known {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if !known {
                return Err(io::Error::other(format!(
                    "dovecot did not learn user {name} in 5 s"
                )));
            }
        }
        Ok(())
    }

    /// Runs `doveadm -c CONFIG args...` and returns its output.
    pub fn doveadm(&self, args: &[&str]) -> io::Result<Output> {
        Command::new("/usr/bin/doveadm")
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null())
            .output()
    }

    /// The server's log so far (for test failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let Ok(pid) = i32::try_from(self.child.id()) else {
            return;
        };
        // SIGTERM lets the master stop its workers. It can linger for seconds
        // over half-open login connections, so after a grace period the
        // whole group (the master made it, see `process_group(0)`) is killed.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

fn current_user_name() -> io::Result<String> {
    let pw = unsafe { libc::getpwuid(libc::geteuid()) };
    if pw.is_null() {
        return Err(io::Error::other("current uid has no passwd entry"));
    }
    let name = unsafe { std::ffi::CStr::from_ptr((*pw).pw_name) };
    Ok(name.to_string_lossy().into_owned())
}

/// Writes a CA and a server certificate for 127.0.0.1/localhost signed by
/// it; returns the CA PEM path.
fn write_certificates(root: &Path) -> io::Result<PathBuf> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let err = |e: rcgen::Error| io::Error::other(e.to_string());

    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mailferry test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).map_err(err)?;

    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .map_err(err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &ca, &ca_key).map_err(err)?;

    let ca_path = root.join("ca.pem");
    fs::write(&ca_path, ca.pem())?;
    fs::write(root.join("server.pem"), cert.pem())?;
    fs::write(root.join("server.key"), key.serialize_pem())?;
    Ok(ca_path)
}

/// A passdb after the others for XOAUTH2: a token the service says is
/// active and meant for `audience` opens any mailbox, as an app-only
/// token with full access does (the user is not the token's to name).
fn oauth2_passdb(root: &Path, o: &OAuth2Check) -> io::Result<String> {
    let args = root.join("oauth2.conf.ext");
    fs::write(
        &args,
        format!(
            "introspection_mode = post\nintrospection_url = {}\nusername_attribute = aud\nusername_format = application\nscope = {}\ntls_ca_cert_file = {}\ntimeout_msecs = 5000\n",
            o.introspection_url,
            o.audience,
            o.ca_file.display()
        ),
    )?;
    Ok(format!(
        "passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {}\n}}\n",
        args.display()
    ))
}

fn config_text(
    root: &Path,
    port: u16,
    imaps_port: u16,
    ssl: &str,
    login_user: &str,
    internal_user: &str,
) -> String {
    let r = root.display();
    format!(
        r#"# Generated by ferry-testservers; nothing outside this dir is read.
protocols = imap
listen = 127.0.0.1
base_dir = {r}/run
state_dir = {r}/state
log_path = {r}/dovecot.log
info_log_path = {r}/dovecot.log
default_login_user = {login_user}
default_internal_user = {internal_user}
first_valid_uid = 1
first_valid_gid = 1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2
# Tests check refused logins; the default 2 s penalty only slows them.
auth_failure_delay = 0
auth_verbose = yes
log_timestamp = "%H:%M:%S.%{{usecs}} "
auth_master_user_separator = *
mail_location = maildir:~/Maildir

passdb {{
  driver = passwd-file
  args = scheme=PLAIN {r}/masters
  master = yes
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {r}/users/%u
}}
userdb {{
  driver = passwd-file
  args = {r}/users/%u
}}

namespace inbox {{
  inbox = yes
  separator = /
  prefix =
  mailbox Sent {{
    special_use = \Sent
  }}
  mailbox Drafts {{
    special_use = \Drafts
  }}
  mailbox Trash {{
    special_use = \Trash
  }}
  mailbox Junk {{
    special_use = \Junk
  }}
  mailbox Archive {{
    special_use = \Archive
  }}
}}

service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
  }}
}}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpStream;

    fn login(port: u16, user: &str, password: &str) -> String {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.starts_with("* OK"), "{line}");
        write!(&stream, "a LOGIN {user} {password}\r\n").unwrap();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line.starts_with("a ") {
                return line;
            }
        }
    }

    #[test]
    fn starts_logs_in_and_stops() {
        let started = std::time::Instant::now();
        let d = Dovecot::start().unwrap();
        assert!(started.elapsed() < Duration::from_secs(1));
        d.add_user("alice", "pw1").unwrap();
        assert!(
            login(d.port(), "alice", "pw1").starts_with("a OK"),
            "{}",
            d.log()
        );
        let (m, mp) = d.master_user();
        let line = login(d.port(), &format!("alice*{m}"), mp);
        assert!(line.starts_with("a OK"), "{line} {}", d.log());
        let out = d.doveadm(&["mailbox", "list", "-u", "alice"]).unwrap();
        assert!(out.status.success(), "{out:?}");
        // Last: a refusal makes anvil delay this address's next logins.
        assert!(login(d.port(), "alice", "nope").starts_with("a NO"));
        let dir = d.dir().to_path_buf();
        drop(d);
        assert!(!dir.exists());
    }

    #[test]
    fn tls_mode_opens_imaps() {
        let d = Dovecot::start_tls().unwrap();
        assert!(d.imaps_port().is_some());
        assert!(d.ca_pem_path().unwrap().exists());
    }
}

//! A TCP proxy on 127.0.0.1 that injects network faults on command.
//!
//! It forwards every accepted connection to one target port. The test arms
//! one fault at a time, to fire once the proxy has forwarded a given number
//! of further bytes, counted over all connections in one direction or both;
//! the connection that crosses the mark takes it, mid-chunk if need be, so
//! a fault can cut a command, an APPEND literal or an answer anywhere.
//! Counting only server-to-client bytes aims at answers: an APPEND whose
//! tagged OK is cut off was stored, but the client cannot know it.
//!
//! Faults:
//! - [`Fault::Drop`]: both sides are closed in order (FIN);
//! - [`Fault::Reset`]: both sides are aborted (SO_LINGER 0, RST);
//! - [`Fault::Stall`]: nothing more is forwarded either way for the given
//!   time (longer than the client's I/O timeout), then both sides are
//!   aborted; what was in flight is lost, as on a black-holed path.
//!
//! Besides faults, the whole server can be taken down ([`FaultProxy::set_down`]):
//! open connections are reset and new ones are reset on accept, as when a
//! server is stopped, until it is brought up again. Or it can be made
//! unavailable ([`FaultProxy::set_unavailable`]): logins still work, but
//! the proxy answers every command that reads mail with `NO [UNAVAILABLE]`
//! itself, as a server whose mail store is down does (line commands only:
//! a source's, never an APPEND's literal).
//!
//! The proxy runs on its own thread and runtime ([`Listener`]), so tests may block.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Which bytes count towards an armed fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
    Both,
    /// The server's first bytes after the client sent an APPEND: the server
    /// has stored the message and the client never hears so.
    AppendAnswer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Drop,
    Reset,
    Stall(Duration),
}

/// Faults fired so far, by kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fired {
    pub drops: u64,
    pub resets: u64,
    pub stalls: u64,
}

impl Fired {
    pub fn total(&self) -> u64 {
        self.drops + self.resets + self.stalls
    }
}

struct Shared {
    /// Bytes forwarded over all connections: (up, down).
    total: Mutex<(u64, u64)>,
    /// The armed fault, the bytes it counts and the count it fires at.
    armed: Mutex<Option<(Fault, Dir, u64)>>,
    fired: Mutex<Fired>,
    connections: AtomicU64,
    /// Connections open now, and the most open at once.
    open: AtomicU64,
    peak: AtomicU64,
    /// Whether the server is down (see [`FaultProxy::set_down`]).
    down: tokio::sync::watch::Sender<bool>,
    /// See [`FaultProxy::set_unavailable`].
    unavailable: AtomicBool,
    refused: AtomicU64,
}

/// A listener on 127.0.0.1 (a free port) on its own thread and runtime,
/// serving each accepted connection with `serve` until dropped.
pub struct Listener {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    pub fn start<F, Fut>(serve: F) -> Listener
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        std_listener.set_nonblocking(true).unwrap();
        let port = std_listener.local_addr().unwrap().port();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("proxy runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("proxy listener");
                let accept = async {
                    loop {
                        let Ok((client, _)) = listener.accept().await else {
                            continue;
                        };
                        tokio::spawn(serve(client));
                    }
                };
                tokio::select! {
                    () = accept => {}
                    _ = stop_rx => {}
                }
            });
            // Dropping the runtime aborts the connections still open.
        });
        Listener {
            port,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub struct FaultProxy {
    listener: Listener,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to 127.0.0.1:`target`.
    pub fn start(target: u16) -> FaultProxy {
        let shared = Arc::new(Shared {
            total: Mutex::default(),
            armed: Mutex::default(),
            fired: Mutex::default(),
            connections: AtomicU64::default(),
            open: AtomicU64::default(),
            peak: AtomicU64::default(),
            down: tokio::sync::watch::Sender::new(false),
            unavailable: AtomicBool::new(false),
            refused: AtomicU64::default(),
        });
        let sh = shared.clone();
        let target = SocketAddr::from(([127, 0, 0, 1], target));
        let listener = Listener::start(move |client| {
            sh.connections.fetch_add(1, Ordering::Relaxed);
            serve(sh.clone(), client, target)
        });
        FaultProxy { listener, shared }
    }

    pub fn port(&self) -> u16 {
        self.listener.port()
    }

    /// Arms `fault` to fire after `after` more bytes going `dir`;
    /// replaces an armed one.
    pub fn arm(&self, fault: Fault, dir: Dir, after: u64) {
        let total = *self.shared.total.lock().unwrap();
        let at = counted(total, dir) + after;
        *self.shared.armed.lock().unwrap() = Some((fault, dir, at));
    }

    /// Whether a fault is armed and has not fired yet.
    pub fn armed(&self) -> bool {
        self.shared.armed.lock().unwrap().is_some()
    }

    pub fn disarm(&self) {
        *self.shared.armed.lock().unwrap() = None;
    }

    /// Takes the server down (every connection reset, new ones refused by
    /// a reset) or brings it up again.
    pub fn set_down(&self, down: bool) {
        self.shared.down.send_replace(down);
    }

    /// Makes every command but the session's own (CAPABILITY, LOGIN,
    /// AUTHENTICATE, ID, ENABLE, NOOP, LOGOUT) answered `NO [UNAVAILABLE]`
    /// by the proxy, on open connections and new ones, or ends that.
    pub fn set_unavailable(&self, on: bool) {
        self.shared.unavailable.store(on, Ordering::Relaxed);
    }

    /// Commands answered `NO [UNAVAILABLE]` so far.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }

    pub fn fired(&self) -> Fired {
        *self.shared.fired.lock().unwrap()
    }

    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// The most connections forwarded at the same time so far.
    pub fn peak_connections(&self) -> u64 {
        self.shared.peak.load(Ordering::Relaxed)
    }

    /// Bytes forwarded so far: (client to server, server to client).
    pub fn bytes(&self) -> (u64, u64) {
        *self.shared.total.lock().unwrap()
    }
}

/// Splits the whole lines of `partial` (the rest stays) into those to
/// forward and the `NO [UNAVAILABLE]` answers to the refused ones; once the
/// proxy is available again, everything is forwarded.
fn refuse_commands(sh: &Shared, partial: &mut Vec<u8>) -> (Vec<u8>, Vec<u8>) {
    const OWN: [&str; 8] = [
        "CAPABILITY",
        "LOGIN",
        "AUTHENTICATE",
        "ID",
        "ENABLE",
        "NOOP",
        "LOGOUT",
        "STARTTLS",
    ];
    if !sh.unavailable.load(Ordering::Relaxed) {
        return (std::mem::take(partial), Vec::new());
    }
    let (mut forward, mut answers) = (Vec::new(), Vec::new());
    while let Some(end) = partial.windows(2).position(|w| w == b"\r\n") {
        let line: Vec<u8> = partial.drain(..end + 2).collect();
        let text = String::from_utf8_lossy(&line);
        let mut words = text.split_ascii_whitespace();
        match (words.next(), words.next()) {
            (Some(tag), Some(verb)) if !OWN.iter().any(|o| o.eq_ignore_ascii_case(verb)) => {
                sh.refused.fetch_add(1, Ordering::Relaxed);
                answers.extend_from_slice(
                    format!("{tag} NO [UNAVAILABLE] Mail store temporarily unavailable\r\n")
                        .as_bytes(),
                );
            }
            // The session's own commands, and continuation lines (SASL).
            _ => forward.extend_from_slice(&line),
        }
    }
    (forward, answers)
}

fn counted((up, down): (u64, u64), dir: Dir) -> u64 {
    match dir {
        Dir::Up => up,
        Dir::Down => down,
        Dir::Both | Dir::AppendAnswer => up + down,
    }
}

/// Counts `n` bytes about to be forwarded (`up`: client to server); returns
/// how many may go before the armed fault fires, and the fault if it fires.
/// `append_sent`: this connection sent an APPEND that is not answered yet.
fn account(sh: &Shared, n: usize, up: bool, append_sent: bool) -> (usize, Option<Fault>) {
    let mut total = sh.total.lock().unwrap();
    let mut armed = sh.armed.lock().unwrap();
    let mut go = n;
    let mut fires = None;
    if let Some((fault, Dir::AppendAnswer, _)) = *armed {
        if !up && append_sent {
            go = 0;
            fires = Some(fault);
        }
    } else if let Some((fault, dir, at)) = *armed
        && (dir == Dir::Both || (dir == Dir::Up) == up)
    {
        let now = counted(*total, dir);
        if now + n as u64 >= at {
            go = at.saturating_sub(now) as usize;
            fires = Some(fault);
        }
    }
    if up {
        total.0 += go as u64;
    } else {
        total.1 += go as u64;
    }
    if let Some(fault) = fires {
        *armed = None;
        let mut fired = sh.fired.lock().unwrap();
        match fault {
            Fault::Drop => fired.drops += 1,
            Fault::Reset => fired.resets += 1,
            Fault::Stall(_) => fired.stalls += 1,
        }
    }
    (go, fires)
}

/// One forwarded connection, counted while it lives.
struct Open<'a>(&'a Shared);

impl Open<'_> {
    fn count(sh: &Shared) -> Open<'_> {
        let now = sh.open.fetch_add(1, Ordering::Relaxed) + 1;
        sh.peak.fetch_max(now, Ordering::Relaxed);
        Open(sh)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve(sh: Arc<Shared>, mut client: TcpStream, target: SocketAddr) {
    let mut down = sh.down.subscribe();
    if *down.borrow_and_update() {
        let _ = client.set_zero_linger();
        return;
    }
    let Ok(mut upstream) = TcpStream::connect(target).await else {
        return;
    };
    let _open = Open::count(&sh);
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let mut up = vec![0u8; 16 * 1024];
    let mut from_server = vec![0u8; 16 * 1024];
    let mut append_sent = false;
    // Client bytes held back while unavailable: a command line not yet whole.
    let mut partial: Vec<u8> = Vec::new();
    let fault = loop {
        // Reads are cancel-safe, so whichever side has data first is served.
        let (n, to_upstream) = tokio::select! {
            r = client.read(&mut up) => (r, true),
            r = upstream.read(&mut from_server) => (r, false),
            _ = down.changed() => {
                if *down.borrow_and_update() {
                    break Some(Fault::Reset);
                }
                continue;
            }
        };
        let mut n = match n {
            Ok(0) | Err(_) => break None,
            Ok(n) => n,
        };
        if to_upstream && (!partial.is_empty() || sh.unavailable.load(Ordering::Relaxed)) {
            partial.extend_from_slice(&up[..n]);
            let (forward, answers) = refuse_commands(&sh, &mut partial);
            if client.write_all(&answers).await.is_err() {
                break None;
            }
            if forward.len() > up.len() {
                up.resize(forward.len(), 0);
            }
            up[..forward.len()].copy_from_slice(&forward);
            n = forward.len();
            if n == 0 {
                continue;
            }
        }
        if to_upstream
            && up[..n]
                .windows(7)
                .any(|w| w.eq_ignore_ascii_case(b"APPEND "))
        {
            append_sent = true;
        }
        let (go, fault) = account(&sh, n, to_upstream, append_sent);
        if !to_upstream {
            append_sent = false;
        }
        let res = if to_upstream {
            upstream.write_all(&up[..go]).await
        } else {
            client.write_all(&from_server[..go]).await
        };
        if fault.is_some() || res.is_err() {
            break fault;
        }
    };
    match fault {
        None | Some(Fault::Drop) => {
            let _ = client.shutdown().await;
            let _ = upstream.shutdown().await;
        }
        Some(Fault::Reset) => {
            let _ = client.set_zero_linger();
            let _ = upstream.set_zero_linger();
        }
        Some(Fault::Stall(d)) => {
            tokio::time::sleep(d).await;
            let _ = client.set_zero_linger();
            let _ = upstream.set_zero_linger();
        }
    }
}

//! A TCP proxy on 127.0.0.1 that makes loopback look like a long link.
//!
//! Every chunk it reads is delivered a fixed one-way delay later, in each
//! direction on its own. Chunks are not serialised behind one another:
//! while one waits out its delay the next is already read, so many are in
//! flight at once, as on a real link where the delay is the distance and
//! not a queue. An optional bandwidth cap spaces the chunks by their size
//! before the delay, as the slowest hop of a path would.
//!
//! What is in flight per direction and connection is bounded (like a TCP
//! window): a sender that outruns the link waits for room.
//!
//! The proxy runs on its own thread and runtime, so benchmarks may block.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::faultproxy::Listener;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

/// What the link adds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Link {
    /// Added to every chunk, each way (half the round trip).
    pub one_way: Duration,
    /// Bytes per second each way, or unlimited.
    pub bytes_per_sec: Option<u64>,
}

impl Link {
    /// A link of `rtt_ms` round trip, no bandwidth cap.
    pub fn rtt_ms(rtt_ms: u64) -> Link {
        Link {
            one_way: Duration::from_micros(rtt_ms * 500),
            bytes_per_sec: None,
        }
    }
}

/// Bytes in flight per direction and connection at most (a generous TCP
/// window: enough for a 100 ms link at over 300 Mbit/s).
const IN_FLIGHT: usize = 4 << 20;
const CHUNK: usize = 64 * 1024;

pub struct DelayProxy {
    listener: Listener,
}

impl DelayProxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to 127.0.0.1:`target`
    /// over `link`.
    pub fn start(target: u16, link: Link) -> DelayProxy {
        let target = SocketAddr::from(([127, 0, 0, 1], target));
        DelayProxy {
            listener: Listener::start(move |client| serve(client, target, link)),
        }
    }

    pub fn port(&self) -> u16 {
        self.listener.port()
    }
}

async fn serve(client: TcpStream, target: SocketAddr, link: Link) {
    // The handshake crosses the link too: the server's greeting leaves it
    // after SYN, SYN-ACK and ACK.
    tokio::time::sleep(link.one_way * 3).await;
    let Ok(upstream) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    tokio::join!(pump(cr, uw, link), pump(ur, cw, link));
}

/// Moves bytes one way: the reader stamps each chunk with when it arrives
/// at the far end; the writer delivers it then.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: Link,
) {
    let window = Arc::new(Semaphore::new(IN_FLIGHT));
    let (tx, mut rx) =
        mpsc::unbounded_channel::<(Instant, Vec<u8>, tokio::sync::OwnedSemaphorePermit)>();
    let read = async move {
        // When the (capped) link is free to send the next byte.
        let mut free = Instant::now();
        loop {
            let room = window.clone().acquire_many_owned(CHUNK as u32).await;
            let Ok(mut permit) = room else { break };
            let mut buf = vec![0u8; CHUNK];
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buf.truncate(n);
            // Give back the room this chunk does not use.
            if n < CHUNK {
                drop(permit.split(CHUNK - n));
            }
            let now = Instant::now();
            let sent = match link.bytes_per_sec {
                Some(bps) if bps > 0 => {
                    free = free.max(now) + Duration::from_secs_f64(n as f64 / bps as f64);
                    free
                }
                _ => now,
            };
            if tx.send((sent + link.one_way, buf, permit)).is_err() {
                break;
            }
        }
        // The channel closes: the writer passes the end on once all is delivered.
    };
    let write = async move {
        while let Some((due, buf, permit)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&buf).await.is_err() {
                return;
            }
            drop(permit);
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

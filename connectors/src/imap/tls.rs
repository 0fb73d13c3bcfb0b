//! The byte stream under a session: plain TCP or rustls (ring provider),
//! trusting the webpki roots plus an optional CA file from the endpoint's
//! configuration (private CAs, test servers).

use std::fmt;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

/// Whether this process may still write to the server: asked before every
/// write, so a worker that lost its claim on a mailbox (a fleet's lease,
/// lapsed while it was paused) sends nothing more, not even the rest of an
/// APPEND it had begun.
pub type WriteFence = Arc<dyn Fn() -> bool + Send + Sync>;

/// Either transport behind one type, as async-imap wants one `T`.
pub struct Stream {
    io: Io,
    fence: Option<WriteFence>,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    pub(crate) fn plain(tcp: TcpStream) -> Stream {
        Stream {
            io: Io::Plain(tcp),
            fence: None,
        }
    }

    pub(crate) fn fenced(mut self, fence: Option<WriteFence>) -> Stream {
        self.fence = fence;
        self
    }

    /// The TCP socket back, for STARTTLS.
    pub(crate) fn into_tcp(self) -> Option<TcpStream> {
        match self.io {
            Io::Plain(tcp) => Some(tcp),
            Io::Tls(_) => None,
        }
    }
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.io {
            Io::Plain(_) => "Stream::Plain",
            Io::Tls(_) => "Stream::Tls",
        })
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.fence.as_ref().is_some_and(|may_write| !may_write()) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "this worker no longer holds the mailbox",
            )));
        }
        match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A rustls client configuration for one endpoint: the same trust as
/// every other endpoint kind (webpki roots plus its CA file).
pub(crate) fn client_config(ca_file: Option<&Path>) -> io::Result<Arc<ClientConfig>> {
    ferry_ews::tls::base_config(ca_file).map(Arc::new)
}

/// Runs the TLS handshake over `tcp`, checking the certificate against `host`
/// (a DNS name or an IP address).
pub(crate) async fn handshake(
    tcp: TcpStream,
    host: &str,
    config: Arc<ClientConfig>,
) -> io::Result<Stream> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let tls = TlsConnector::from(config).connect(name, tcp).await?;
    Ok(Stream {
        io: Io::Tls(Box::new(tls)),
        fence: None,
    })
}

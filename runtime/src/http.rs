//! A bounded HTTP/1.1 server for both binaries' endpoints.
//!
//! With `failurePolicy: Ignore` every review the webhook fails to answer is an
//! admission, and with `Fail` it is an outage, so what a client can hold is
//! bounded: connections (when all are taken, a new one evicts the one idle
//! the longest, so idle floods cannot lock the API server out; only when
//! every slot is serving a request is a connection refused), the TLS
//! handshake, the request head (slowloris) and idle time. Bodies are the
//! handlers' to bound (they know their limits).
//!
//! Hand-written on hyper rather than axum-server because that server has no
//! connection bound, handshake timeout or idle timeout. HTTP/1.1 only: the API
//! server speaks it to every webhook, and its header-read timeout is what
//! stops slowloris.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// Responses of the handlers served here.
pub type Body = Full<Bytes>;

/// Time bounds of a connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// TLS handshake.
    pub handshake_timeout: Duration,
    /// Reading a request's head.
    pub header_timeout: Duration,
    /// No byte moving on a connection.
    pub idle_timeout: Duration,
    /// Draining connections on shutdown.
    pub drain_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            handshake_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// What the server tells its owner about connections (for metrics).
pub trait ConnectionEvents: Send + Sync + 'static {
    /// A connection was admitted.
    fn opened(&self) {}
    /// An admitted connection closed.
    fn closed(&self) {}
    /// A connection was refused: every slot was serving a request.
    fn refused(&self) {}
}

/// No one listens.
pub struct Unobserved;

impl ConnectionEvents for Unobserved {}

/// Accepts connections up to `max`, serves each with the bounds, and on
/// `stop` closes the listener and waits (at most the drain timeout) for open
/// connections to finish their current request.
pub async fn accept_loop<H, F>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    max: usize,
    mut stop: watch::Receiver<bool>,
    events: Arc<dyn ConnectionEvents>,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let table = Arc::new(Connections::new(max));
    loop {
        let stopped = async {
            let _ = stop.wait_for(|s| *s).await.map(|_| ());
        };
        let accepted = tokio::select! {
            () = stopped => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, _peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(conn) = table.admit() else {
            // Every slot is serving a request: refuse this one.
            events.refused();
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        let handler = handler.clone();
        let stop = stop.clone();
        let events = events.clone();
        tokio::spawn(async move {
            let _open = OpenConnection::new(events);
            let evicted = conn.evicted.clone();
            let serve = async {
                match tls {
                    Some(acceptor) => {
                        let Ok(Ok(stream)) =
                            tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp))
                                .await
                        else {
                            return;
                        };
                        serve_connection(stream, limits, stop, &conn, handler).await;
                    }
                    None => serve_connection(tcp, limits, stop, &conn, handler).await,
                }
            };
            tokio::select! {
                () = serve => {}
                () = evicted.notified() => {}
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(limits.drain_timeout, table.drained()).await;
}

/// The open connections of one listener. When all `max` slots are taken, a
/// new connection evicts the one idle the longest (handshaking, or waiting
/// for a request head): an attacker's idle or slowloris connections make
/// room for the API server's instead of locking it out. Only when every
/// slot is serving a request is a new connection refused.
struct Connections {
    max: usize,
    table: std::sync::Mutex<ConnTable>,
    empty: tokio::sync::Notify,
}

#[derive(Default)]
struct ConnTable {
    next: u64,
    open: std::collections::HashMap<u64, ConnEntry>,
}

struct ConnEntry {
    busy: bool,
    idle_since: std::time::Instant,
    evict: Arc<tokio::sync::Notify>,
}

/// One connection's place in [`Connections`]; leaving frees it.
struct ConnSlot {
    id: u64,
    table: Arc<Connections>,
    evicted: Arc<tokio::sync::Notify>,
}

impl Connections {
    fn new(max: usize) -> Self {
        Connections {
            max: max.max(1),
            table: std::sync::Mutex::new(ConnTable::default()),
            empty: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ConnTable> {
        // A poisoned table still holds valid bookkeeping.
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn admit(self: &Arc<Self>) -> Option<ConnSlot> {
        let mut t = self.lock();
        if t.open.len() >= self.max {
            let oldest = t
                .open
                .iter()
                .filter(|(_, e)| !e.busy)
                .min_by_key(|(_, e)| e.idle_since)
                .map(|(id, _)| *id)?;
            if let Some(e) = t.open.remove(&oldest) {
                e.evict.notify_one();
            }
        }
        let id = t.next;
        t.next += 1;
        let evicted = Arc::new(tokio::sync::Notify::new());
        t.open.insert(
            id,
            ConnEntry {
                busy: false,
                idle_since: std::time::Instant::now(),
                evict: evicted.clone(),
            },
        );
        Some(ConnSlot {
            id,
            table: self.clone(),
            evicted,
        })
    }

    async fn drained(&self) {
        loop {
            let notified = self.empty.notified();
            if self.lock().open.is_empty() {
                return;
            }
            notified.await;
        }
    }
}

impl ConnSlot {
    fn set_busy(&self, busy: bool) {
        if let Some(e) = self.table.lock().open.get_mut(&self.id) {
            e.busy = busy;
            e.idle_since = std::time::Instant::now();
        }
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut t = self.table.lock();
        t.open.remove(&self.id);
        if t.open.is_empty() {
            self.table.empty.notify_waiters();
        }
    }
}

struct OpenConnection(Arc<dyn ConnectionEvents>);

impl OpenConnection {
    fn new(events: Arc<dyn ConnectionEvents>) -> Self {
        events.opened();
        OpenConnection(events)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.closed();
    }
}

async fn serve_connection<S, H, F>(
    stream: S,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
    slot: &ConnSlot,
    handler: H,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let io = TokioIo::new(IdleTimeout::new(stream, limits.idle_timeout));
    let service = hyper::service::service_fn(|req| {
        slot.set_busy(true);
        let f = handler(req);
        async move {
            let response = f.await;
            slot.set_busy(false);
            Ok::<_, Infallible>(response)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 * 1024)
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let stopped = async move {
        // The guard `wait_for` returns must not live across an await.
        let _ = stop.wait_for(|s| *s).await.map(|_| ());
    };
    tokio::select! {
        _ = conn.as_mut() => {}
        () = stopped => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(limits.drain_timeout, conn).await;
        }
    }
}

/// Closes a connection on which no byte moved for the idle timeout: idle
/// keep-alive connections and stalled uploads give their slot back.
struct IdleTimeout<S> {
    inner: S,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<S> IdleTimeout<S> {
    fn new(inner: S, idle: Duration) -> Self {
        IdleTimeout {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn progress(&mut self) {
        let at = tokio::time::Instant::now() + self.idle;
        self.timer.as_mut().reset(at);
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.timer.as_mut().poll(cx).is_ready()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.progress();
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                self.progress();
                Poll::Ready(Ok(n))
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client not reading",
            ))),
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

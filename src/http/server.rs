//! Serving [`super::routes`] (public) and [`super::admin_routes`] (admin) on real listeners:
//! our own accept loop over hyper's HTTP/1.1 connections, with a cap on open connections, a
//! header-read timeout, a keep-alive idle timeout, and a graceful, time-bounded stop.
//!
//! Why not `warp::serve`: warp 0.4 runs hyper without a timer, so no timeout applies and a
//! client that never finishes its request head holds a connection for ever. Why not hyper's own
//! `header_read_timeout`: its clock also runs while a keep-alive connection waits for the next
//! request, so a short header timeout would close idle connections under the load balancer's
//! feet. Each connection here has a [`ConnectionClock`] instead: the header timeout runs from the
//! first byte of a request head (from the accept for the first request), the idle timeout while
//! nothing is in progress, and neither while a request is being handled (the request deadline
//! bounds that).

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use warp::Filter;
use warp::http::{Request, Response};
use warp::hyper;
use warp::hyper::body::Incoming;

use super::config::ServerConfig;
use super::{AppState, admin_routes, routes};
use crate::metrics as m;
use crate::shutdown::{self, Drained};

/// Connections open at once on the admin listener (one scraper and a few probes need a handful).
const ADMIN_MAX_CONNECTIONS: usize = 64;

/// The per-connection limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// From the first byte of a request head (for the first request: from the accept) to its end.
    pub header_read_timeout: Duration,
    /// How long a connection may sit with no request in progress and no byte of the next one.
    pub keep_alive_timeout: Duration,
    /// Connections open at once; past it the accept loop stops accepting until one closes.
    pub max_connections: usize,
}

impl ConnectionLimits {
    /// The public listener's limits from `[server]`.
    pub fn from_config(server: &ServerConfig) -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: server.header_read_timeout(),
            keep_alive_timeout: server.keep_alive_timeout(),
            max_connections: server.max_connections,
        }
    }
}

/// Both listeners, accepting until [`RunningServer::shutdown`].
pub struct RunningServer {
    /// The public listener's address (the real port when asked for port 0).
    local_addr: SocketAddr,
    /// The admin listener's address.
    admin_addr: SocketAddr,
    /// Shared with the routes: flips `/readyz` to 503 when draining starts.
    state: Arc<AppState>,
    /// Set to `true` once: stop accepting, shut connections down gracefully.
    stop: watch::Sender<bool>,
    /// Both accept loops; ends when every connection has finished. Aborting it drops every
    /// connection (they live in its [`JoinSet`]s).
    task: JoinHandle<()>,
}

/// Binds `server.listen` (public routes) and `server.admin_listen` (admin routes) and starts serving.
pub async fn start(state: Arc<AppState>, server: &ServerConfig) -> io::Result<RunningServer> {
    let public = bind(server.listen, "server.listen").await?;
    let admin = bind(server.admin_listen, "server.admin_listen").await?;
    let local_addr = public.local_addr()?;
    let admin_addr = admin.local_addr()?;
    let limits = ConnectionLimits::from_config(server);
    let admin_limits = ConnectionLimits { max_connections: ADMIN_MAX_CONNECTIONS, ..limits };
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn({
        let (public_routes, admin_routes) = (routes(state.clone()), admin_routes(state.clone()));
        let admin_stopped = stopped.clone();
        async move {
            tokio::join!(
                serve(public, public_routes, limits, stopped, "public"),
                serve(admin, admin_routes, admin_limits, admin_stopped, "admin"),
            );
        }
    });
    Ok(RunningServer { local_addr, admin_addr, state, stop, task })
}

async fn bind(addr: SocketAddr, key: &str) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|err| io::Error::new(err.kind(), format!("cannot listen on {addr} ({key}): {err}")))
}

impl RunningServer {
    /// The public listener's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Stops accepting on both listeners, answers `/readyz` with 503, closes idle keep-alive
    /// connections at once and waits up to `drain` for in-flight requests to be answered.
    pub async fn shutdown(mut self, drain: Duration) -> Drained {
        self.state.start_draining();
        let _ = self.stop.send(true);
        let drained = shutdown::drain(&mut self.task, drain).await;
        if drained == Drained::TimedOut {
            self.task.abort();
        }
        drained
    }
}

/// The accept loop of one listener: at most `limits.max_connections` connections at once (the
/// rest wait in the kernel's backlog), each served by [`connection`]; on `stop`, drops the
/// listener (new connections are refused), asks every connection to finish, and waits for them.
async fn serve<F>(
    listener: TcpListener,
    filter: F,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
    name: &'static str,
) where
    F: Filter<Extract = (Response<Bytes>,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let open = metrics::gauge!(m::OPEN_CONNECTIONS, "listener" => name);
    let connection_stop = stop.clone();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = stopping(&mut stop) => break,
            Some(joined) = connections.join_next(), if !connections.is_empty() => log_panic(joined, name),
            accepted = listener.accept(), if connections.len() < limits.max_connections => {
                match accepted {
                    Ok((stream, _peer)) => {
                        let service = TowerToHyperService::new(warp::service(filter.clone()));
                        connections.spawn(connection(stream, service, limits, connection_stop.clone(), name));
                    }
                    Err(err) if is_connection_error(&err) => {}
                    Err(err) => {
                        // Out of file descriptors, most likely: let connections close, then retry.
                        tracing::error!(listener = name, error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
        open.set(connections.len() as f64);
    }
    drop(listener);
    while let Some(joined) = connections.join_next().await {
        log_panic(joined, name);
        open.set(connections.len() as f64);
    }
    open.set(0.0);
}

/// A connection task that panicked (a bug: hyper and the routes return errors, not panics) is
/// logged and counted; the listener goes on.
fn log_panic(joined: Result<(), tokio::task::JoinError>, listener: &'static str) {
    if let Err(err) = joined
        && err.is_panic()
    {
        tracing::error!(task = "connection", listener, error = %err, "task panicked");
        metrics::counter!(m::TASK_PANICS, "task" => "connection").increment(1);
    }
}

/// Resolves once the server is stopping (or its [`RunningServer`] is gone).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Errors about one incoming connection (it went away before we took it), not about the listener.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// Serves one connection until the client closes it, a timeout of its [`ConnectionClock`] passes
/// (the connection is dropped: nothing is in progress on it), or after `stop` hyper's graceful
/// shutdown completes (an idle connection closes at once, a busy one after its answer).
async fn connection<R>(
    stream: TcpStream,
    routes: R,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
    name: &'static str,
) where
    R: hyper::service::Service<Request<Incoming>, Response = warp::reply::Response, Error = Infallible>
        + Send
        + 'static,
    R::Future: Send + 'static,
{
    let _ = stream.set_nodelay(true);
    let clock = Arc::new(ConnectionClock::new());
    let io = TokioIo::new(ClockedStream { inner: stream, clock: Arc::clone(&clock) });
    let service = hyper::service::service_fn({
        let clock = Arc::clone(&clock);
        move |request: Request<Incoming>| {
            let in_progress = clock.request_started();
            let response = routes.call(request);
            async move {
                let response = response.await;
                drop(in_progress);
                response
            }
        }
    });
    let mut http1 = hyper::server::conn::http1::Builder::new();
    // Explicitly off: its clock would also run while a keep-alive connection is idle (see above).
    http1.header_read_timeout(None);
    let mut served = pin!(http1.serve_connection(io, service));
    let mut expired = pin!(clock.expired(limits));
    let mut draining = false;
    loop {
        tokio::select! {
            result = served.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(listener = name, error = %err, "connection ended with an error");
                }
                return;
            }
            () = stopping(&mut stop), if !draining => {
                draining = true;
                served.as_mut().graceful_shutdown();
            }
            reason = expired.as_mut() => {
                metrics::counter!(m::CONNECTIONS_TIMED_OUT, "listener" => name, "reason" => reason).increment(1);
                tracing::debug!(listener = name, reason, "closing connection");
                return;
            }
        }
    }
}

/// Milliseconds-since-accept value meaning "not set".
const UNSET: u64 = u64::MAX;

/// What one connection is doing, for its timeouts. Written by its stream (bytes read), its
/// service (requests started and answered); read by its watchdog ([`ConnectionClock::expired`]).
struct ConnectionClock {
    /// When the connection was accepted; the other times are milliseconds since then.
    accepted: Instant,
    /// Requests handed to the routes and not yet answered.
    in_progress: AtomicUsize,
    /// When the first byte of the request head being read arrived; [`UNSET`] between requests.
    /// Starts at 0: the first request's head is timed from the accept.
    head_started_ms: AtomicU64,
    /// When the connection last had nothing in progress (its last answer was handed to hyper).
    idle_since_ms: AtomicU64,
    /// Wakes the watchdog when one of the above changes (one waiter: `notify_one` keeps a permit).
    changed: Notify,
}

/// Marks one request in progress on its connection until dropped.
struct InProgress(Arc<ConnectionClock>);

impl Drop for InProgress {
    fn drop(&mut self) {
        let clock = &self.0;
        clock.idle_since_ms.store(clock.now_ms(), Ordering::Release);
        clock.in_progress.fetch_sub(1, Ordering::AcqRel);
        clock.changed.notify_one();
    }
}

impl ConnectionClock {
    fn new() -> ConnectionClock {
        ConnectionClock {
            accepted: Instant::now(),
            in_progress: AtomicUsize::new(0),
            head_started_ms: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(UNSET - 1)
    }

    fn at(&self, ms: u64) -> Instant {
        self.accepted + Duration::from_millis(ms)
    }

    /// Bytes arrived: when nothing is in progress and no head is being timed, a head starts now.
    fn bytes_read(&self) {
        if self.in_progress.load(Ordering::Acquire) == 0
            && self.head_started_ms.load(Ordering::Acquire) == UNSET
        {
            self.head_started_ms.store(self.now_ms(), Ordering::Release);
            self.changed.notify_one();
        }
    }

    /// A whole request head was read and handed to the routes.
    fn request_started(self: &Arc<Self>) -> InProgress {
        self.in_progress.fetch_add(1, Ordering::AcqRel);
        self.head_started_ms.store(UNSET, Ordering::Release);
        self.changed.notify_one();
        InProgress(Arc::clone(self))
    }

    /// Resolves with the reason once the connection has been reading one request head for longer
    /// than the header timeout, or idle for longer than the keep-alive timeout.
    async fn expired(&self, limits: ConnectionLimits) -> &'static str {
        loop {
            let deadline = if self.in_progress.load(Ordering::Acquire) > 0 {
                None
            } else {
                match self.head_started_ms.load(Ordering::Acquire) {
                    UNSET => Some((
                        self.at(self.idle_since_ms.load(Ordering::Acquire)) + limits.keep_alive_timeout,
                        "idle_timeout",
                    )),
                    started => Some((self.at(started) + limits.header_read_timeout, "header_timeout")),
                }
            };
            match deadline {
                Some((at, reason)) if at <= Instant::now() => return reason,
                Some((at, _)) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = self.changed.notified() => {}
                    }
                }
                None => self.changed.notified().await,
            }
        }
    }
}

/// The accepted socket, reporting every read to its connection's [`ConnectionClock`].
struct ClockedStream {
    inner: TcpStream,
    clock: Arc<ConnectionClock>,
}

impl AsyncRead for ClockedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.clock.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for ClockedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

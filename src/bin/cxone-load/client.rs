//! The driver's HTTP/1.1 client: one hyper keep-alive connection per worker, driven inside the worker's own task.
//!
//! Built on hyper's connection-level client (`hyper::client::conn::http1`) over a `TcpStream` with
//! Nagle off, not on a pooled client: each worker owns exactly one connection and sends one request at a
//! time on it. hyper's `Connection` future (the part that reads and writes the socket) is not spawned
//! as a task of its own; [`Connection::post`] polls it together with the exchange, so a request costs
//! one task wake-up per socket event, as the hand-written client did, instead of two tasks handing the
//! request and the response to each other. The driver shares 2 cores with the server it measures.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use futures::task::AtomicWaker;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Uri, Version};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Where requests go: parsed once from `--url`.
#[derive(Debug, Clone)]
pub struct Target {
    /// Resolved socket address (loopback unless the operator allowed otherwise).
    pub addr: SocketAddr,
    /// Value of the `Host` header (`host:port` as written in the URL).
    pub host: HeaderValue,
    /// Request target in origin form (path and query), as HTTP/1.1 sends it.
    pub path: Uri,
}

impl Target {
    /// Parses `http://host[:port]/path` and resolves the host. Only plain `http` is supported: the driver
    /// measures the service, not TLS.
    pub async fn parse(url: &str) -> anyhow::Result<Target> {
        let (authority, with_port, path) = split_url(url)?;
        let addr = tokio::net::lookup_host(&with_port)
            .await?
            .next()
            .ok_or_else(|| anyhow::anyhow!("{authority} did not resolve"))?;
        let host = HeaderValue::from_str(authority)
            .map_err(|_| anyhow::anyhow!("--url host is not a valid header: {url}"))?;
        let path = path.parse::<Uri>().map_err(|e| anyhow::anyhow!("--url path {path:?}: {e}"))?;
        Ok(Target { addr, host, path })
    }
}

/// Splits `http://authority/path` into the authority as written, the authority with a port (80 when
/// none is given) for resolving, and the path (`/` when none).
fn split_url(url: &str) -> anyhow::Result<(&str, String, &str)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("--url must start with http:// (got {url})"))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], &rest[i..]),
        Some(_) => anyhow::bail!("--url needs a path before its query: {url}"),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        anyhow::bail!("--url has no plain host: {url}");
    }
    let has_port = authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok());
    let with_port = if has_port { authority.to_string() } else { format!("{authority}:80") };
    Ok((authority, with_port, path))
}

/// What the driver keeps of one response.
#[derive(Debug)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The response body (small JSON for this service).
    pub body: Bytes,
    /// The server said it closes the connection after this response.
    pub close: bool,
}

/// Why a request got no HTTP answer.
#[derive(Debug)]
pub enum ClientError {
    /// The TCP connection (or hyper's handshake on it) could not be made.
    Connect(Box<dyn StdError + Send + Sync>),
    /// The connection failed while sending or receiving (reset, closed early, unparseable, body too big).
    Io(Box<dyn StdError + Send + Sync>),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // hyper's errors say what went wrong in their source chain ("connection closed" ← "reset by peer").
        let (what, e) = match self {
            ClientError::Connect(e) => ("connect", e),
            ClientError::Io(e) => ("io", e),
        };
        write!(f, "{what}: {e}")?;
        let mut source = e.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

type Body = Full<Bytes>;
type Driver = http1::Connection<TokioIo<TcpStream>, Body>;

/// Upper bound on a response body the driver will buffer.
const MAX_BODY: usize = 8 * 1024 * 1024;

/// One keep-alive connection: hyper's request handle and the connection future that does its IO.
pub struct Connection {
    sender: http1::SendRequest<Body>,
    /// `None` once hyper has finished with the connection (closed by either side, or failed).
    driver: Option<Driver>,
    /// What hyper's futures are polled with inside [`Connection::post`].
    wakes: Arc<LocalWakes>,
    waker: Waker,
}

/// The waker [`Connection::post`] hands to hyper. A wake while `post` itself is polling (hyper handing the
/// response from the connection half to the request half, or asking for the body) only marks that
/// there is more to do, and `post` polls again at once; a wake while it is not polling (the socket
/// became readable) wakes the task. One response then costs one poll of the task, not three.
struct LocalWakes {
    woken: AtomicBool,
    polling: AtomicBool,
    task: AtomicWaker,
}

impl Wake for LocalWakes {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if !self.polling.load(Ordering::SeqCst) {
            self.task.wake();
        }
    }
}

/// How many rounds `post` polls in a row while hyper keeps finding more to do, before it yields to the
/// scheduler (tokio's cooperative budget, once spent, wakes the task at once: that must not spin here).
const ROUNDS_PER_POLL: usize = 4;

impl Connection {
    /// Opens a TCP connection with Nagle disabled (small requests must not wait for ACKs).
    pub async fn connect(addr: SocketAddr) -> Result<Connection, ClientError> {
        let stream = TcpStream::connect(addr).await.map_err(|e| ClientError::Connect(e.into()))?;
        stream.set_nodelay(true).map_err(|e| ClientError::Connect(e.into()))?;
        let (sender, driver) =
            http1::handshake(TokioIo::new(stream)).await.map_err(|e| ClientError::Connect(e.into()))?;
        let wakes = Arc::new(LocalWakes {
            woken: AtomicBool::new(false),
            polling: AtomicBool::new(false),
            task: AtomicWaker::new(),
        });
        let waker = Waker::from(wakes.clone());
        Ok(Connection { sender, driver: Some(driver), wakes, waker })
    }

    /// Lets hyper catch up with what happened on the idle connection (the end of the previous exchange, a
    /// close by the server) and says whether a request can go out on it now. Costs one poll, no waiting:
    /// a server that closed an idle keep-alive connection is noticed here instead of failing the next request.
    pub fn reusable(&mut self) -> bool {
        let Some(driver) = self.driver.as_mut() else { return false };
        let mut cx = Context::from_waker(Waker::noop());
        if Pin::new(driver).poll(&mut cx).is_ready() {
            self.driver = None;
            return false;
        }
        !self.sender.is_closed()
    }

    /// Sends one request and reads its full response.
    pub async fn post(&mut self, request: Request<Body>) -> Result<Response, ClientError> {
        let sender = &mut self.sender;
        let exchange = async move {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let (head, body) = response.into_parts();
            let close = wants_close(head.version, &head.headers);
            let body = Limited::new(body, MAX_BODY).collect().await?.to_bytes();
            Ok::<_, Box<dyn StdError + Send + Sync>>(Response { status: head.status.as_u16(), body, close })
        };
        let mut exchange = std::pin::pin!(exchange);
        let (wakes, waker, driver) = (&self.wakes, &self.waker, &mut self.driver);
        std::future::poll_fn(|cx| {
            wakes.task.register(cx.waker());
            let mut inner = Context::from_waker(waker);
            for _ in 0..ROUNDS_PER_POLL {
                wakes.woken.store(false, Ordering::SeqCst);
                wakes.polling.store(true, Ordering::SeqCst);
                let round = poll_round(exchange.as_mut(), driver, &mut inner);
                wakes.polling.store(false, Ordering::SeqCst);
                if let Poll::Ready(result) = round {
                    return Poll::Ready(result.map_err(ClientError::Io));
                }
                if !wakes.woken.load(Ordering::SeqCst) {
                    return Poll::Pending;
                }
            }
            // Still more to do: let the scheduler run others first.
            cx.waker().wake_by_ref();
            Poll::Pending
        })
        .await
    }
}

/// Polls the request half, then the connection half; once the connection is over, drops it (which fails
/// whatever the request half still waits for and leaves it what had arrived) and polls the request again.
fn poll_round<T>(
    mut exchange: Pin<&mut impl Future<Output = T>>,
    driver: &mut Option<Driver>,
    cx: &mut Context<'_>,
) -> Poll<T> {
    if let Poll::Ready(result) = exchange.as_mut().poll(cx) {
        return Poll::Ready(result);
    }
    let Some(d) = driver.as_mut() else { return Poll::Pending };
    if Pin::new(d).poll(cx).is_pending() {
        return Poll::Pending;
    }
    *driver = None;
    exchange.poll(cx)
}

/// True when the response ends the connection: `Connection: close`, or HTTP/1.0 without `keep-alive`.
pub fn wants_close(version: Version, headers: &HeaderMap) -> bool {
    let has = |token: &str| {
        headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))))
    };
    if has("close") {
        return true;
    }
    version < Version::HTTP_11 && !has("keep-alive")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[test]
    fn close_comes_from_the_connection_header_or_http_1_0() {
        let mut h = HeaderMap::new();
        assert!(!wants_close(Version::HTTP_11, &h));
        assert!(wants_close(Version::HTTP_10, &h));
        h.insert(header::CONNECTION, HeaderValue::from_static("Keep-Alive"));
        assert!(!wants_close(Version::HTTP_10, &h));
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade, Close"));
        assert!(wants_close(Version::HTTP_11, &h));
    }

    #[test]
    fn urls_split_into_host_port_and_path() {
        let (a, p, path) = split_url("http://127.0.0.1:18080/webhooks/x?y=1").unwrap();
        assert_eq!((a, p.as_str(), path), ("127.0.0.1:18080", "127.0.0.1:18080", "/webhooks/x?y=1"));
        let (a, p, path) = split_url("http://localhost").unwrap();
        assert_eq!((a, p.as_str(), path), ("localhost", "localhost:80", "/"));
        let (_, p, _) = split_url("http://[::1]/a").unwrap();
        assert_eq!(p, "[::1]:80");
        for bad in ["https://127.0.0.1/", "http:///x", "http://u@127.0.0.1/", "http://h?q"] {
            assert!(split_url(bad).is_err(), "{bad}");
        }
    }

    /// A server on loopback that answers each request it reads with the next canned response, and closes
    /// the connection after a response marked `close`. Returns its address and the number of connections.
    async fn canned_server(
        responses: Vec<(&'static str, bool)>,
    ) -> (SocketAddr, tokio::task::JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut responses = responses.into_iter().peekable();
            let mut connections = 0;
            'accept: while responses.peek().is_some() {
                let Ok((mut socket, _)) = listener.accept().await else { break };
                connections += 1;
                let mut buf = Vec::new();
                loop {
                    // One request: head up to the blank line, then Content-Length bytes.
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => continue 'accept,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    while buf.len() < head_end + len {
                        let mut chunk = [0u8; 4096];
                        let n = socket.read(&mut chunk).await.unwrap();
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    buf.drain(..head_end + len);
                    let Some((response, close)) = responses.next() else { break 'accept };
                    socket.write_all(response.as_bytes()).await.unwrap();
                    if close {
                        continue 'accept;
                    }
                }
            }
            connections
        });
        (addr, task)
    }

    fn post(body: &'static str) -> Request<Body> {
        let mut r = Request::new(Full::new(Bytes::from_static(body.as_bytes())));
        *r.method_mut() = hyper::Method::POST;
        *r.uri_mut() = Uri::from_static("/webhooks/cxone-data-actions");
        r.headers_mut().insert(header::HOST, HeaderValue::from_static("127.0.0.1"));
        r
    }

    #[tokio::test(flavor = "current_thread")]
    async fn keeps_the_connection_alive_reads_chunked_bodies_and_notices_a_close() {
        let (addr, server) = canned_server(vec![
            ("HTTP/1.1 200 OK\r\ncontent-length: 22\r\n\r\n{\"status\":\"published\"}", false),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                false,
            ),
            ("HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n", true),
            ("HTTP/1.0 401 Unauthorized\r\ncontent-length: 2\r\n\r\n{}", true),
        ])
        .await;
        let mut conn = Connection::connect(addr).await.unwrap();
        let r = conn.post(post("{}")).await.unwrap();
        assert_eq!((r.status, &r.body[..], r.close), (200, &b"{\"status\":\"published\"}"[..], false));
        assert!(conn.reusable());
        let r = conn.post(post("{}")).await.unwrap();
        assert_eq!((r.status, &r.body[..], r.close), (200, &b"hello world"[..], false));
        assert!(conn.reusable());
        let r = conn.post(post("{}")).await.unwrap();
        assert_eq!((r.status, r.close), (503, true));
        // The server closed after its answer: the next request needs a new connection.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!conn.reusable());
        let mut conn = Connection::connect(addr).await.unwrap();
        let r = conn.post(post("{}")).await.unwrap();
        assert_eq!((r.status, &r.body[..], r.close), (401, &b"{}"[..], true));
        assert_eq!(server.await.unwrap(), 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_idle_connection_closed_by_the_server_is_not_reused() {
        let (addr, server) =
            canned_server(vec![("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}", true)]).await;
        let mut conn = Connection::connect(addr).await.unwrap();
        // Keep-alive as far as the client knows, but the server closes right after answering.
        assert!(!conn.post(post("{}")).await.unwrap().close);
        assert_eq!(server.await.unwrap(), 1);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!conn.reusable());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_closed_mid_answer_is_an_io_failure_and_a_refused_one_a_connect_failure() {
        let (addr, server) =
            canned_server(vec![("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{", true)]).await;
        let mut conn = Connection::connect(addr).await.unwrap();
        assert!(matches!(conn.post(post("{}")).await, Err(ClientError::Io(_))));
        server.await.unwrap();
        // Nothing listens there any more.
        let refused = Connection::connect(addr).await;
        assert!(matches!(refused, Err(ClientError::Connect(_))), "{:?}", refused.err());
    }
}

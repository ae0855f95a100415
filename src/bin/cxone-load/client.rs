//! A minimal HTTP/1.1 keep-alive client: one connection, one request at a time, no allocation per request beyond the response body.
//!
//! The load driver must cost far less CPU than the server it measures (both share 2 cores), so it speaks
//! HTTP/1.1 over a bare `TcpStream` instead of going through a general-purpose client: the request is
//! written with one `write_all`, the response parsed in place (status line, `Content-Length` or chunked
//! body, `Connection: close`).

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where requests go: parsed once from `--url`.
#[derive(Debug, Clone)]
pub struct Target {
    /// Resolved socket address (loopback unless the operator allowed otherwise).
    pub addr: SocketAddr,
    /// Value of the `Host` header (`host:port` as written in the URL).
    pub host_header: String,
    /// Request path, with query if any.
    pub path: String,
}

impl Target {
    /// Parses `http://host[:port]/path` and resolves the host. Only plain `http` is supported: the driver
    /// measures the service, not TLS.
    pub async fn parse(url: &str) -> anyhow::Result<Target> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow::anyhow!("--url must start with http:// (got {url})"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            anyhow::bail!("--url has no host: {url}");
        }
        let with_port = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = tokio::net::lookup_host(&with_port)
            .await?
            .next()
            .ok_or_else(|| anyhow::anyhow!("{authority} did not resolve"))?;
        Ok(Target { addr, host_header: authority.to_string(), path: path.to_string() })
    }
}

/// What the driver keeps of one response.
#[derive(Debug)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The response body (small JSON for this service).
    pub body: Vec<u8>,
    /// The server asked to close the connection after this response.
    pub close: bool,
}

/// One keep-alive connection with its reusable buffers.
pub struct Connection {
    stream: TcpStream,
    /// Bytes read from the socket and not yet consumed.
    read_buf: Vec<u8>,
    /// The request being written (head + body), reused across requests.
    write_buf: Vec<u8>,
}

/// Upper bound on a response head; a bigger one means we are not talking to the service.
const MAX_HEAD: usize = 64 * 1024;
/// Upper bound on a response body the driver will buffer.
const MAX_BODY: usize = 8 * 1024 * 1024;

impl Connection {
    /// Opens a TCP connection with Nagle disabled (small requests must not wait for ACKs).
    pub async fn connect(addr: SocketAddr) -> io::Result<Connection> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Connection { stream, read_buf: Vec::with_capacity(4096), write_buf: Vec::with_capacity(4096) })
    }

    /// True when the server has closed (or written unasked-for bytes on) an idle connection; checked
    /// before reusing a connection that sat idle, since servers close idle keep-alive connections.
    pub fn closed_by_peer(&self) -> bool {
        let mut probe = [0u8; 1];
        !matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Sends one POST and reads its full response. `headers` are extra `Name: value` pairs.
    pub async fn post(
        &mut self,
        target: &Target,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        use std::io::Write as _;
        self.write_buf.clear();
        write!(
            self.write_buf,
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            target.path,
            target.host_header,
            body.len()
        )?;
        for (name, value) in headers {
            write!(self.write_buf, "{name}: {value}\r\n")?;
        }
        self.write_buf.extend_from_slice(b"\r\n");
        self.write_buf.extend_from_slice(body);
        self.stream.write_all(&self.write_buf).await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> io::Result<Response> {
        self.read_buf.clear();
        let head_end = loop {
            if let Some(i) = find(&self.read_buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.read_buf.len() > MAX_HEAD {
                return Err(invalid("response head too large"));
            }
            self.fill().await?;
        };
        let head = parse_head(&self.read_buf[..head_end])?;
        let body = match head.framing {
            Framing::Length(n) => {
                if n > MAX_BODY {
                    return Err(invalid("response body too large"));
                }
                while self.read_buf.len() < head_end + n {
                    self.fill().await?;
                }
                self.read_buf[head_end..head_end + n].to_vec()
            }
            Framing::Chunked => loop {
                if let Some(body) = decode_chunked(&self.read_buf[head_end..])? {
                    break body;
                }
                if self.read_buf.len() > head_end + MAX_BODY {
                    return Err(invalid("response body too large"));
                }
                self.fill().await?;
            },
            Framing::UntilClose => {
                // No length: the body runs until the server closes the connection.
                loop {
                    match self.stream.read_buf(&mut self.read_buf).await? {
                        0 => break,
                        _ if self.read_buf.len() > head_end + MAX_BODY => {
                            return Err(invalid("response body too large"));
                        }
                        _ => {}
                    }
                }
                self.read_buf[head_end..].to_vec()
            }
        };
        let close = head.close || matches!(head.framing, Framing::UntilClose);
        Ok(Response { status: head.status, body, close })
    }

    /// Reads more bytes; end of stream before a complete response is an error.
    async fn fill(&mut self) -> io::Result<()> {
        if self.read_buf.capacity() - self.read_buf.len() < 1024 {
            self.read_buf.reserve(8192);
        }
        match self.stream.read_buf(&mut self.read_buf).await? {
            0 => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed the connection")),
            _ => Ok(()),
        }
    }
}

enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

struct Head {
    status: u16,
    framing: Framing,
    close: bool,
}

fn parse_head(head: &[u8]) -> io::Result<Head> {
    let text = std::str::from_utf8(head).map_err(|_| invalid("response head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(invalid("not an HTTP/1.x response"));
    }
    let status =
        parts.next().and_then(|s| s.parse::<u16>().ok()).ok_or_else(|| invalid("bad status line"))?;
    let mut framing = Framing::UntilClose;
    let mut close = version == "HTTP/1.0";
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            if !matches!(framing, Framing::Chunked) {
                framing = Framing::Length(value.parse().map_err(|_| invalid("bad Content-Length"))?);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if value.to_ascii_lowercase().contains("chunked") {
                framing = Framing::Chunked;
            }
        } else if name.eq_ignore_ascii_case("connection") {
            let v = value.to_ascii_lowercase();
            if v.contains("close") {
                close = true;
            } else if v.contains("keep-alive") {
                close = false;
            }
        }
    }
    // 204 and 304 never carry a body.
    if status == 204 || status == 304 {
        framing = Framing::Length(0);
    }
    Ok(Head { status, framing, close })
}

/// Decodes a complete chunked body, or returns `None` when more bytes are needed. Trailers are skipped.
fn decode_chunked(mut buf: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = find(buf, b"\r\n") else { return Ok(None) };
        let size_text = std::str::from_utf8(&buf[..line_end]).map_err(|_| invalid("bad chunk size"))?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| invalid("bad chunk size"))?;
        buf = &buf[line_end + 2..];
        if size == 0 {
            // Trailer section ends with an empty line.
            return Ok(find(buf, b"\r\n").map(|_| body));
        }
        if buf.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[..size]);
        buf = &buf[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_length_and_keep_alive() {
        let head = parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n").unwrap();
        assert_eq!(head.status, 200);
        assert!(matches!(head.framing, Framing::Length(12)));
        assert!(!head.close);
    }

    #[test]
    fn parses_chunked_and_close() {
        let head = parse_head(
            b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        assert_eq!(head.status, 503);
        assert!(matches!(head.framing, Framing::Chunked));
        assert!(head.close);
    }

    #[test]
    fn decodes_chunked_bodies_only_when_complete() {
        assert_eq!(
            decode_chunked(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").unwrap().unwrap(),
            b"hello world"
        );
        assert!(decode_chunked(b"5\r\nhello\r\n6\r\n wor").unwrap().is_none());
        assert!(decode_chunked(b"5\r\nhello\r\n0\r\n").unwrap().is_none());
    }
}

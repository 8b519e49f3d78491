//! HTTP-ish traffic on loopback: real servers that answer `GET` requests, keep-alive or not,
//! with their name in the body, and a client that sends such requests through a VIP and
//! says exactly how each one ended (answered by whom, refused, reset, cut short, timed out).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::net::connect_from;

/// How often the accept loop looks at its stop flag.
const POLL: Duration = Duration::from_millis(50);
/// How long a server keeps a quiet keep-alive connection.
const IDLE: Duration = Duration::from_secs(10);

/// An HTTP/1.1 real server: every request is answered `200` with body `NAME\n`; a request
/// with `Connection: close` is answered and the connection closed.
pub struct HttpServer {
    /// where it listens
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    accept: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Listen on `addr` as `name`.
    pub fn start(addr: SocketAddr, name: &str) -> HttpServer {
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .expect("socket");
        sock.set_reuse_address(true).unwrap();
        sock.bind(&addr.into())
            .unwrap_or_else(|e| panic!("http server bind {addr}: {e}"));
        sock.listen(256).unwrap();
        // accept(2) honours SO_RCVTIMEO: the loop wakes to look at its stop flag
        sock.set_read_timeout(Some(POLL)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let (st, rq, name) = (stop.clone(), requests.clone(), name.to_string());
        let accept = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                if let Ok((conn, _)) = sock.accept() {
                    let (name, rq) = (name.clone(), rq.clone());
                    std::thread::spawn(move || serve(conn.into(), &name, &rq));
                }
            }
        });
        HttpServer {
            addr,
            stop,
            requests,
            accept: Some(accept),
        }
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Answer the requests of one connection until the client closes, asks to close, or is idle
/// for [`IDLE`] (bounded: the thread always ends).
fn serve(s: TcpStream, name: &str, requests: &AtomicU64) {
    s.set_read_timeout(Some(IDLE)).unwrap();
    s.set_write_timeout(Some(IDLE)).unwrap();
    let _ = s.set_nodelay(true);
    let mut out = s.try_clone().expect("clone");
    let mut rd = BufReader::new(s);
    loop {
        let Ok(Some(close)) = read_request(&mut rd) else {
            return;
        };
        let body = format!("{name}\n");
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n{body}",
            body.len(),
            if close { "close" } else { "keep-alive" }
        );
        if out.write_all(reply.as_bytes()).is_err() {
            return;
        }
        requests.fetch_add(1, Ordering::SeqCst);
        if close {
            return;
        }
    }
}

/// One request's head: `Some(close)` (whether it asked to close), `None` at a clean end.
fn read_request(rd: &mut impl BufRead) -> io::Result<Option<bool>> {
    let mut close = false;
    let mut first = true;
    for _ in 0..64 {
        let mut line = String::new();
        if rd.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if line == "\r\n" && !first {
            return Ok(Some(close));
        }
        first = false;
        close |= line.to_ascii_lowercase().starts_with("connection: close");
    }
    Err(io::ErrorKind::InvalidData.into())
}

/// How one request failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fail {
    /// no connection: refused (nothing listening) or another error
    Connect(io::ErrorKind),
    /// the connection broke during the request: reset, end of stream, timeout, other
    Io(io::ErrorKind),
    /// an answer that is not `200` with a body
    Bad(String),
}

/// A client connection through a VIP (one source address).
pub struct HttpClient {
    stream: BufReader<TcpStream>,
}

impl HttpClient {
    /// Connect from `src` (any port) to `vip`.
    pub fn connect(src: IpAddr, vip: SocketAddr) -> Result<HttpClient, Fail> {
        let s = connect_from(src, 0, vip).map_err(|e| Fail::Connect(e.kind()))?;
        let _ = s.set_nodelay(true);
        Ok(HttpClient {
            stream: BufReader::new(s),
        })
    }

    /// The client's port.
    pub fn local_port(&self) -> u16 {
        self.stream.get_ref().local_addr().map_or(0, |a| a.port())
    }

    /// `GET /` (with `Connection: close` when `close`): the name of the real server that
    /// answered.
    pub fn get(&mut self, close: bool) -> Result<String, Fail> {
        let req = format!(
            "GET / HTTP/1.1\r\nHost: rvs\r\n{}\r\n",
            if close { "Connection: close\r\n" } else { "" }
        );
        let io = |e: io::Error| Fail::Io(e.kind());
        self.stream
            .get_mut()
            .write_all(req.as_bytes())
            .map_err(io)?;
        let mut status = String::new();
        if self.stream.read_line(&mut status).map_err(io)? == 0 {
            return Err(Fail::Io(io::ErrorKind::UnexpectedEof));
        }
        if !status.starts_with("HTTP/1.1 200 ") {
            return Err(Fail::Bad(status));
        }
        let mut len = None;
        for _ in 0..64 {
            let mut line = String::new();
            if self.stream.read_line(&mut line).map_err(io)? == 0 {
                return Err(Fail::Io(io::ErrorKind::UnexpectedEof));
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse::<usize>().ok();
            }
        }
        let len = len.ok_or_else(|| Fail::Bad("no Content-Length".into()))?;
        let mut body = vec![0u8; len.min(4096)];
        self.stream.read_exact(&mut body).map_err(io)?;
        Ok(String::from_utf8_lossy(&body).trim_end().to_string())
    }

    /// Close after a `Connection: close` answer: the server's end of stream must follow
    /// (no reset).
    pub fn expect_end(mut self) -> Result<(), Fail> {
        let mut rest = [0u8; 64];
        match self.stream.read(&mut rest) {
            Ok(0) => Ok(()),
            Ok(_) => Err(Fail::Bad("bytes after the answer".into())),
            Err(e) => Err(Fail::Io(e.kind())),
        }
    }
}

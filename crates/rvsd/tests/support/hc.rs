//! Helpers of the health-checking tests: HTTP(S) real servers whose answer the test changes
//! while rvsd checks them, small shell scripts (MISC_CHECK, notify), and bounded waits on
//! the real servers `rvsadm -Ln` lists for a service.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::director::Director;
use super::listing;

/// How often a server's accept loop looks at its stop flag.
const POLL: Duration = Duration::from_millis(50);

/// What an [`HttpServer`] answers: status code and body.
pub type Answer = (u16, String);

/// An HTTP/1.0 server (TLS with a self-signed certificate when asked) answering every
/// request with the current [`Answer`] and closing; counts the requests it answered.
pub struct HttpServer {
    /// where it listens
    pub addr: SocketAddr,
    answer: Arc<Mutex<Answer>>,
    served: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Listen on `addr`, answering `status` with `body`; over TLS when `tls`.
    pub fn start(addr: SocketAddr, status: u16, body: &str, tls: bool) -> HttpServer {
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .expect("socket");
        sock.set_reuse_address(true).unwrap();
        sock.bind(&addr.into())
            .unwrap_or_else(|e| panic!("http server bind {addr}: {e}"));
        sock.listen(64).unwrap();
        sock.set_read_timeout(Some(POLL)).unwrap();
        let answer = Arc::new(Mutex::new((status, body.to_string())));
        let served = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tls = tls.then(tls_config);
        let (a, s, st) = (answer.clone(), served.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let Ok((conn, _)) = sock.accept() else {
                    continue;
                };
                let stream: TcpStream = conn.into();
                let (a, s, tls) = (a.clone(), s.clone(), tls.clone());
                std::thread::spawn(move || serve(stream, &a, &s, tls));
            }
        });
        HttpServer {
            addr,
            answer,
            served,
            stop,
            thread: Some(thread),
        }
    }

    /// Answer `status` with `body` from now on.
    pub fn set(&self, status: u16, body: &str) {
        *self.answer.lock().unwrap() = (status, body.to_string());
    }

    /// How many requests it has answered.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn tls_config() -> Arc<rustls::ServerConfig> {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let pk = rustls::pki_types::PrivateKeyDer::try_from(key.key_pair.serialize_der()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![key.cert.der().clone()], pk)
    .unwrap();
    Arc::new(cfg)
}

fn serve(
    s: TcpStream,
    answer: &Mutex<Answer>,
    served: &AtomicUsize,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    match tls {
        Some(cfg) => {
            let Ok(conn) = rustls::ServerConnection::new(cfg) else {
                return;
            };
            let mut t = rustls::StreamOwned::new(conn, s);
            if exchange(&mut t, answer, served) {
                t.conn.send_close_notify();
                let _ = t.flush();
            }
        }
        None => {
            let mut s = s;
            exchange(&mut s, answer, served);
        }
    }
}

/// Read a request head, write the answer; whether it was answered.
fn exchange(s: &mut impl ReadWrite, answer: &Mutex<Answer>, served: &AtomicUsize) -> bool {
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16384 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let (status, body) = answer.lock().unwrap().clone();
    let reply = format!(
        "HTTP/1.0 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    served.fetch_add(1, Ordering::SeqCst);
    s.write_all(reply.as_bytes()).is_ok()
}

/// A byte stream both ways (plain TCP or TLS).
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// The MD5 of `body` in hex, as keepalived's `digest` is written.
pub fn md5_hex(body: &str) -> String {
    use md5::{Digest, Md5};
    Md5::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Write `text` to `dir/name` atomically (a reader never sees half of it).
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// The lines of `path` (none when it does not exist yet).
pub fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The real servers `-Ln` lists for `service` (`"TCP 127.B.0.1:80"`): address and weight,
/// sorted by address.
pub fn pool(d: &Director, service: &str) -> Vec<(String, i64)> {
    let mut rows: Vec<(String, i64)> = listing::dests(&d.text("-Ln"))
        .into_iter()
        .filter(|r| r.service == service)
        .map(|r| (r.addr, r.weight))
        .collect();
    rows.sort();
    rows
}

/// A wanted pool written as `[("127.B.10.1:8001", 3), …]`.
pub fn want(rows: &[(&str, i64)]) -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> = rows.iter().map(|(a, w)| (a.to_string(), *w)).collect();
    v.sort();
    v
}

/// Poll `-Ln` until `service`'s pool is `rows`, for at most `limit`; the time it took.
/// Panics with the last listing when the pool does not get there in time.
pub fn until_pool(
    d: &Director,
    service: &str,
    rows: &[(String, i64)],
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    let deadline = start + limit;
    loop {
        let got = pool(d, service);
        if got == rows {
            return start.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "{service}: after {limit:?} the pool is {got:?}, expected {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Log lines of `d` containing every one of `parts`.
pub fn log_lines(d: &Director, parts: &[&str]) -> Vec<String> {
    d.log()
        .lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .map(str::to_string)
        .collect()
}

/// Wait (at most `limit`) until the log has a line containing every one of `parts`.
pub fn until_logged(d: &Director, parts: &[&str], limit: Duration) {
    let deadline = Instant::now() + limit;
    while log_lines(d, parts).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no log line with {parts:?} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

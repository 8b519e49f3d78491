//! Real servers as threads of the test: TCP servers that greet with their name (and then
//! wait for the client's end, echo, answer after a half-close, reset, or read a PROXY
//! header first) and UDP servers that answer every datagram with their name. Each records
//! what it saw; all stop when dropped (their waits are bounded, so the threads end).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::proxyhdr::{read_header, ProxyHeader};

/// How often a server's loop looks at its stop flag.
const POLL: Duration = Duration::from_millis(50);
/// How long a real server waits for a quiet client before giving up on it.
const IDLE: Duration = Duration::from_secs(10);
/// Size of the reply a [`Behavior::Drain`] server sends after the client's half-close.
pub const BULK: usize = 256 * 1024;

/// What a TCP real server does with each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behavior {
    /// write `NAME PORT\n`, then read until the client closes, then close
    Greet,
    /// write `NAME PORT\n`, then echo everything until the client closes
    Echo,
    /// read until end of stream, then write `NAME got N SUM\n` and [`BULK`] bytes of
    /// [`bulk_byte`], then close
    Drain,
    /// close at once with a reset (SO_LINGER 0)
    Reset,
    /// read a PROXY protocol header, then as [`Behavior::Greet`]
    Proxy,
}

/// Byte `i` of the [`Behavior::Drain`] bulk reply.
pub fn bulk_byte(i: usize) -> u8 {
    (i % 251) as u8
}

/// One connection a TCP real server accepted.
#[derive(Clone, Debug)]
pub struct Seen {
    /// the peer (the director's side of the relayed connection)
    pub peer: SocketAddr,
    /// the PROXY header ([`Behavior::Proxy`] servers)
    pub proxy: Option<Result<ProxyHeader, String>>,
}

/// A TCP real server.
pub struct TcpServer {
    /// where it listens
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    accept: Option<JoinHandle<()>>,
}

impl TcpServer {
    /// Listen on `addr` (port 0: any) as `name`.
    pub fn start(addr: SocketAddr, name: &str, behavior: Behavior) -> TcpServer {
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .expect("socket");
        sock.set_reuse_address(true).unwrap();
        sock.bind(&addr.into())
            .unwrap_or_else(|e| panic!("real server bind {addr}: {e}"));
        sock.listen(128).unwrap();
        // accept(2) honours SO_RCVTIMEO: the loop wakes to look at its stop flag
        sock.set_read_timeout(Some(POLL)).unwrap();
        let addr = sock.local_addr().unwrap().as_socket().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (st, se, name) = (stop.clone(), seen.clone(), name.to_string());
        let accept = std::thread::spawn(move || accept_loop(sock, &name, behavior, &st, &se));
        TcpServer {
            addr,
            stop,
            seen,
            accept: Some(accept),
        }
    }

    /// The connections accepted so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(
    sock: Socket,
    name: &str,
    behavior: Behavior,
    stop: &AtomicBool,
    seen: &Arc<Mutex<Vec<Seen>>>,
) {
    while !stop.load(Ordering::SeqCst) {
        let Ok((conn, peer)) = sock.accept() else {
            continue;
        };
        let peer = peer.as_socket().expect("inet peer");
        let stream: TcpStream = conn.into();
        let (name, seen) = (name.to_string(), seen.clone());
        std::thread::spawn(move || serve(stream, peer, &name, behavior, &seen));
    }
}

fn serve(
    mut s: TcpStream,
    peer: SocketAddr,
    name: &str,
    behavior: Behavior,
    seen: &Mutex<Vec<Seen>>,
) {
    s.set_read_timeout(Some(IDLE)).unwrap();
    s.set_write_timeout(Some(IDLE)).unwrap();
    let port = s.local_addr().unwrap().port();
    let mut record = Seen { peer, proxy: None };
    if behavior == Behavior::Reset {
        seen.lock().unwrap().push(record);
        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
        return;
    }
    if behavior == Behavior::Proxy {
        record.proxy = Some(read_header(&mut s));
    }
    seen.lock().unwrap().push(record);
    match behavior {
        Behavior::Drain => drain_then_answer(&mut s, name),
        Behavior::Echo => {
            let _ = writeln!(s, "{name} {port}");
            let mut buf = [0u8; 16384];
            while let Ok(n @ 1..) = s.read(&mut buf) {
                if s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = s.shutdown(Shutdown::Write);
        }
        _ => {
            let _ = writeln!(s, "{name} {port}");
            let mut buf = [0u8; 4096];
            while let Ok(1..) = s.read(&mut buf) {}
        }
    }
}

fn drain_then_answer(s: &mut TcpStream, name: &str) {
    let (mut n, mut sum) = (0usize, 0u64);
    let mut buf = [0u8; 16384];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => {
                n += k;
                sum += buf[..k].iter().map(|&b| u64::from(b)).sum::<u64>();
            }
            Err(_) => return,
        }
    }
    let mut reply = format!("{name} got {n} {sum}\n").into_bytes();
    reply.extend((0..BULK).map(bulk_byte));
    let _ = s.write_all(&reply);
}

/// A datagram a UDP real server received: sender and payload.
pub type Datagram = (SocketAddr, Vec<u8>);

/// A UDP real server: every datagram is answered with `NAME PORT` from the address it was
/// sent to.
pub struct UdpServer {
    /// where it listens
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    peers: Arc<Mutex<Vec<Datagram>>>,
    thread: Option<JoinHandle<()>>,
}

impl UdpServer {
    /// Bind `addr` (port 0: any) as `name`.
    pub fn start(addr: SocketAddr, name: &str) -> UdpServer {
        let sock =
            UdpSocket::bind(addr).unwrap_or_else(|e| panic!("real server bind udp {addr}: {e}"));
        sock.set_read_timeout(Some(POLL)).unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let (st, pe) = (stop.clone(), peers.clone());
        let reply = format!("{name} {}\n", addr.port());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !st.load(Ordering::SeqCst) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    pe.lock().unwrap().push((from, buf[..n].to_vec()));
                    let _ = sock.send_to(reply.as_bytes(), from);
                }
            }
        });
        UdpServer {
            addr,
            stop,
            peers,
            thread: Some(thread),
        }
    }

    /// Every datagram received so far: sender and payload.
    pub fn received(&self) -> Vec<Datagram> {
        self.peers.lock().unwrap().clone()
    }
}

impl Drop for UdpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

//! Addresses and clients on loopback. Every test takes its own `127.B.0.0/16` (B from
//! [`subnet`]), so tests running in parallel never share a VIP, a real server or a client
//! address; loopback answers for all of 127/8, so nothing has to be configured.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// How long a client waits for a connection or an answer before calling it lost.
pub const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// A second octet no other test of this binary uses (201, 202, …).
pub fn subnet() -> u8 {
    static NEXT: AtomicU8 = AtomicU8::new(201);
    let b = NEXT.fetch_add(1, Ordering::SeqCst);
    assert!(b >= 201, "out of test subnets");
    b
}

/// `127.b.c.d`.
pub fn v4(b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, b, c, d))
}

/// `127.b.c.d:port`.
pub fn sa(b: u8, c: u8, d: u8, port: u16) -> SocketAddr {
    SocketAddr::new(v4(b, c, d), port)
}

/// A TCP connection from `src:sport` (0: any port) to `dst`, with [`IO_TIMEOUT`] on
/// connect, reads and writes.
pub fn connect_from(src: IpAddr, sport: u16, dst: SocketAddr) -> io::Result<TcpStream> {
    let sock = Socket::new(Domain::for_address(dst), Type::STREAM, Some(Protocol::TCP))?;
    if sport != 0 {
        sock.set_reuse_address(true)?;
    }
    sock.bind(&SocketAddr::new(src, sport).into())?;
    sock.connect_timeout(&dst.into(), IO_TIMEOUT)?;
    let stream: TcpStream = sock.into();
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// How a read ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    /// a line (without its newline)
    Line(String),
    /// end of stream before a whole line
    Eof,
    /// the connection was reset
    Reset,
    /// nothing within the timeout
    Timeout,
    /// another error
    Error(io::ErrorKind),
}

fn classify(e: &io::Error) -> Got {
    match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => Got::Reset,
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Got::Timeout,
        k => Got::Error(k),
    }
}

/// Read one line (at most 4 KiB).
pub fn read_line(s: &mut TcpStream) -> Got {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 4096 {
        match s.read(&mut byte) {
            Ok(0) => return Got::Eof,
            Ok(_) if byte[0] == b'\n' => {
                return Got::Line(String::from_utf8_lossy(&line).into_owned())
            }
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return classify(&e),
        }
    }
    Got::Error(io::ErrorKind::InvalidData)
}

/// Read until the stream ends (at most 64 MiB); returns the bytes and how it ended
/// ([`Got::Eof`] for a clean end).
pub fn read_all(s: &mut TcpStream) -> (Vec<u8>, Got) {
    let mut data = Vec::new();
    let mut chunk = [0u8; 16384];
    while data.len() < 64 << 20 {
        match s.read(&mut chunk) {
            Ok(0) => return (data, Got::Eof),
            Ok(n) => data.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (data, classify(&e)),
        }
    }
    (data, Got::Error(io::ErrorKind::InvalidData))
}

/// Connect from `src`, read the real server's greeting line and close: the name line of
/// the server that got the connection, or how it failed.
pub fn ask(src: IpAddr, dst: SocketAddr) -> Got {
    match connect_from(src, 0, dst) {
        Ok(mut s) => {
            let got = read_line(&mut s);
            let _ = s.shutdown(Shutdown::Both);
            got
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Got::Reset,
        Err(e) => classify(&e),
    }
}

/// The greeting line, which must arrive.
pub fn greeting(s: &mut TcpStream) -> String {
    match read_line(s) {
        Got::Line(l) => l,
        other => panic!("no greeting from a real server: {other:?}"),
    }
}

/// Write all of `data`.
pub fn send(s: &mut TcpStream, data: &[u8]) {
    s.write_all(data).expect("client write");
}

/// A UDP socket bound to `src:sport` (0: any port) with [`IO_TIMEOUT`] reads.
///
/// A fixed port the previous socket of the same test just released can still be taken for
/// a moment: a process that another test thread is starting (rvsd, rvsadm) holds copies of
/// this process's descriptors between its fork and its exec. So `EADDRINUSE` is retried
/// for up to a second.
pub fn udp_from(src: IpAddr, sport: u16) -> UdpSocket {
    let addr = SocketAddr::new(src, sport);
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    let sock = loop {
        match UdpSocket::bind(addr) {
            Ok(s) => break s,
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("bind udp client {addr}: {e}"),
        }
    };
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    sock
}

/// Send `payload` to `dst` and wait up to `wait` for one datagram: its text and sender.
pub fn udp_ask(
    sock: &UdpSocket,
    dst: SocketAddr,
    payload: &[u8],
    wait: Duration,
) -> Option<(String, SocketAddr)> {
    sock.set_read_timeout(Some(wait)).unwrap();
    sock.send_to(payload, dst).expect("udp send");
    let mut buf = [0u8; 2048];
    match sock.recv_from(&mut buf) {
        Ok((n, from)) => Some((
            String::from_utf8_lossy(&buf[..n]).trim_end().to_string(),
            from,
        )),
        Err(_) => None,
    }
}

//! Sockets for probes: a TCP connection from the configured source, and ICMP echo.

use std::io;
use std::net::{IpAddr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

use crate::Bind;

/// Words for a socket error as an operator reads them in the log.
pub fn why(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => "connection refused".into(),
        Some(libc::EHOSTUNREACH) => "host unreachable".into(),
        Some(libc::ENETUNREACH) => "network unreachable".into(),
        Some(libc::ECONNRESET) => "connection reset".into(),
        Some(libc::ETIMEDOUT) => "timed out".into(),
        _ => e.to_string(),
    }
}

fn apply(sock: &Socket, target: SocketAddr, bind: &Bind) -> io::Result<()> {
    if let Some(iface) = &bind.iface {
        sock.bind_device(Some(iface.as_bytes()))?;
    }
    if let Some(mark) = bind.mark {
        sock.set_mark(mark)?;
    }
    if bind.addr.is_some() || bind.port.is_some() {
        let ip = bind.addr.unwrap_or(match target {
            SocketAddr::V4(_) => IpAddr::from([0, 0, 0, 0]),
            SocketAddr::V6(_) => IpAddr::from([0u16; 8]),
        });
        if bind.port.is_some() {
            sock.set_reuse_address(true)?;
        }
        sock.bind(&SocketAddr::new(ip, bind.port.unwrap_or(0)).into())?;
    }
    Ok(())
}

/// A TCP connection to `target` (the caller bounds the time).
pub async fn tcp_connect(target: SocketAddr, bind: &Bind) -> Result<TcpStream, String> {
    let sock = Socket::new(
        Domain::for_address(target),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )
    .map_err(|e| why(&e))?;
    apply(&sock, target, bind).map_err(|e| format!("binding the checker's socket: {}", why(&e)))?;
    let sock = TcpSocket::from_std_stream(sock.into());
    sock.connect(target).await.map_err(|e| why(&e))
}

/// A UDP socket connected to `target` (so ICMP errors come back as errors).
pub async fn udp_connect(target: SocketAddr, bind: &Bind) -> Result<UdpSocket, String> {
    let sock = Socket::new(
        Domain::for_address(target),
        Type::DGRAM.nonblocking().cloexec(),
        Some(Protocol::UDP),
    )
    .map_err(|e| why(&e))?;
    apply(&sock, target, bind).map_err(|e| format!("binding the checker's socket: {}", why(&e)))?;
    let sock = UdpSocket::from_std(sock.into()).map_err(|e| why(&e))?;
    sock.connect(target).await.map_err(|e| why(&e))?;
    Ok(sock)
}

/// One ICMP echo to `ip`, answered. Uses an unprivileged ICMP socket (the kernel fills in
/// the identifier and checks the reply's), which needs `net.ipv4.ping_group_range` to
/// include the process's group, and falls back to a raw socket (root).
pub async fn ping(ip: IpAddr, bind: &Bind) -> Result<(), String> {
    let (domain, proto, echo) = match ip {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4, 8u8),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6, 128u8),
    };
    let target = SocketAddr::new(ip, 0);
    let (sock, raw) = match Socket::new(domain, Type::DGRAM.nonblocking().cloexec(), Some(proto)) {
        Ok(s) => (s, false),
        Err(_) => (
            Socket::new(domain, Type::RAW.nonblocking().cloexec(), Some(proto))
                .map_err(|e| format!("no ICMP socket: {}", why(&e)))?,
            true,
        ),
    };
    apply(&sock, target, bind).map_err(|e| format!("binding the checker's socket: {}", why(&e)))?;
    sock.connect(&target.into()).map_err(|e| why(&e))?;
    let sock = UdpSocket::from_std(std::net::UdpSocket::from(sock)).map_err(|e| why(&e))?;
    let ident = (std::process::id() & 0xffff) as u16;
    let seq: u16 = rand_u16();
    let mut pkt = vec![echo, 0, 0, 0];
    pkt.extend_from_slice(&ident.to_be_bytes());
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend_from_slice(b"rvs-health-echo!");
    if raw && ip.is_ipv4() {
        let c = checksum(&pkt);
        pkt[2..4].copy_from_slice(&c.to_be_bytes());
    }
    sock.send(&pkt).await.map_err(|e| why(&e))?;
    let mut buf = [0u8; 1500];
    loop {
        let n = sock.recv(&mut buf).await.map_err(|e| why(&e))?;
        // a raw IPv4 socket hands over the IP header too
        let icmp = if raw && ip.is_ipv4() {
            let hl = usize::from(buf[0] & 0x0f) * 4;
            if n < hl + 8 {
                continue;
            }
            &buf[hl..n]
        } else {
            &buf[..n]
        };
        let reply = if ip.is_ipv4() { 0 } else { 129 };
        if icmp.len() >= 8 && icmp[0] == reply && icmp[6..8] == seq.to_be_bytes() {
            return Ok(());
        }
    }
}

fn checksum(b: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in b.chunks(2) {
        let w = u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
        sum += w;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A query id / sequence number nobody can predict from outside (not cryptographic).
pub fn rand_u16() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u16
}

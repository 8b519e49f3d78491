//! Listening sockets: bound with IP_FREEBIND (a VIP may be configured before the address is
//! up on an interface) and SO_REUSEPORT (one socket per worker, the kernel spreads new
//! connections and datagrams over them by their addresses).

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Backlog of every TCP listener (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: i32 = 4096;

fn socket(addr: SocketAddr, ty: Type, proto: Protocol) -> io::Result<Socket> {
    let s = Socket::new(
        Domain::for_address(addr),
        ty.nonblocking().cloexec(),
        Some(proto),
    )?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        // an IPv6 service never receives IPv4 traffic: that is another service
        s.set_only_v6(true)?;
        s.set_freebind_ipv6(true)?;
    } else {
        s.set_freebind(true)?;
    }
    s.bind(&addr.into())?;
    Ok(s)
}

/// A TCP listener on `addr` for one worker.
pub fn tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let s = socket(addr, Type::STREAM, Protocol::TCP)?;
    // accepted connections inherit TCP_NODELAY: one setsockopt less per connection
    s.set_nodelay(true)?;
    s.listen(BACKLOG)?;
    Ok(s.into())
}

/// A UDP socket on `addr` for one worker.
pub fn udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    Ok(socket(addr, Type::DGRAM, Protocol::UDP)?.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_share_a_port_and_freebind_takes_a_foreign_address() {
        let a = tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = a.local_addr().unwrap();
        let b = tcp(addr).unwrap();
        assert_eq!(b.local_addr().unwrap(), addr);
        // TEST-NET-3 is on no interface here: binding still works
        let foreign = tcp("203.0.113.7:0".parse().unwrap()).unwrap();
        assert_eq!(
            foreign.local_addr().unwrap().ip().to_string(),
            "203.0.113.7"
        );
        // accepted connections come with TCP_NODELAY (the relay relies on it)
        let _c = std::net::TcpStream::connect(addr).unwrap();
        let (conn, _) = loop {
            match a.accept().or_else(|_| b.accept()) {
                Ok(c) => break c,
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        };
        assert!(conn.nodelay().unwrap());
        let u1 = udp("127.0.0.1:0".parse().unwrap()).unwrap();
        let u2 = udp(u1.local_addr().unwrap()).unwrap();
        assert_eq!(u1.local_addr().unwrap(), u2.local_addr().unwrap());
    }
}

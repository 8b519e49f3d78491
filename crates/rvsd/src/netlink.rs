//! A small rtnetlink client (`NETLINK_ROUTE` over libc, no crates): what the XDP data plane
//! and `rvsd realserver` ask the kernel about interfaces, addresses, routes, neighbours and
//! tc objects, and the addresses they add and remove.
//!
//! Each call opens its own socket, sends one request with a fresh sequence number and reads
//! the answers that carry that number (others are skipped): a dump until `NLMSG_DONE`
//! (retried when the kernel says a change interrupted it), a change until its
//! acknowledgement, a lookup until its one answer. An `NLMSG_ERROR` with a non-zero code
//! becomes [`Error::Kernel`] (its errno is [`Error::errno`], e.g. `EEXIST` for an address
//! already there). Decoding is in [`wire`], bounds-checked and unit-tested on byte fixtures.
//!
//! ```no_run
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! let hop = netlink::resolve("10.0.0.9".parse()?, Duration::from_secs(1))?;
//! println!("via ifindex {} to {:02x?}", hop.ifindex, hop.mac);
//! let lo = netlink::ifindex("lo")?;
//! netlink::addr_add(lo, "10.200.0.1".parse()?, 32)?;
//! # Ok(()) }
//! ```

#[cfg(test)]
mod tests;
mod wire;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use wire::TcFilter;
use wire::*;

/// An interface (`RTM_GETLINK`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub ifindex: u32,
    pub name: String,
    /// the hardware address (zero when the link has none of 6 bytes)
    pub mac: [u8; 6],
    /// administratively up (`IFF_UP`)
    pub up: bool,
    pub loopback: bool,
    pub mtu: u32,
}

/// The kernel's answer to a route lookup (`ip route get DST`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// the output interface
    pub oif: u32,
    /// the next hop, when it is not the destination itself
    pub gateway: Option<IpAddr>,
    /// the source address the kernel would use
    pub prefsrc: Option<IpAddr>,
    /// `rtm_type`: [`RTN_UNICAST`], [`RTN_LOCAL`], …
    pub rtype: u8,
}

/// `RTN_UNICAST`: a route through an interface.
pub const RTN_UNICAST: u8 = 1;
/// `RTN_LOCAL`: the destination is one of this host's addresses.
pub const RTN_LOCAL: u8 = 2;

/// A usable neighbour entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neigh {
    pub mac: [u8; 6],
    /// `NUD_*`
    pub state: u16,
}

/// `NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_NOARP | NUD_PERMANENT`: the
/// states whose link-layer address may be used (a stale one is still the best known, and the
/// kernel confirms it as soon as it sends through it).
pub const NUD_USABLE: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80;

/// Where to send a packet for a destination: the interface, the next hop's Ethernet address,
/// and the source address the kernel would choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop {
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub src: Option<IpAddr>,
}

/// A clsact hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Ingress,
    Egress,
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("netlink socket: {0}")]
    Io(#[from] io::Error),
    /// The kernel refused the request (`NLMSG_ERROR`).
    #[error("{op}: {source}")]
    Kernel {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("netlink: malformed {0}")]
    Malformed(Malformed),
    #[error("netlink: {op}: the dump kept being interrupted by changes")]
    Interrupted { op: &'static str },
    #[error("no interface {0}")]
    NoLink(String),
    /// `resolve` found no usable way to the destination (the text says why).
    #[error("{0}")]
    Unresolved(String),
}

impl From<Malformed> for Error {
    fn from(m: Malformed) -> Error {
        Error::Malformed(m)
    }
}

impl Error {
    /// The errno of a kernel refusal (or of a socket error).
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { source, .. } | Error::Io(source) => source.raw_os_error(),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Sequence numbers, unique in the process so no answer is taken for another's.
static SEQ: AtomicU32 = AtomicU32::new(1);

/// How a request's answers end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ends {
    /// `NLMSG_DONE`
    Dump,
    /// the acknowledgement (`NLMSG_ERROR` with code 0)
    Ack,
    /// the first answer
    Reply,
}

/// A bound `NETLINK_ROUTE` socket.
struct Socket {
    fd: OwnedFd,
    /// the port id the kernel gave it
    port: u32,
}

/// Fails with the last OS error when a libc call returned a negative value.
fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

impl Socket {
    fn open() -> io::Result<Socket> {
        // SAFETY: socket(2) takes only integers; the result is checked before use.
        let raw = check(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        })?;
        // SAFETY: `raw` is a descriptor socket(2) just returned; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is a C struct of integers, for which all zeroes is valid.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        let len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `sa` is a valid sockaddr_nl of `len` bytes that outlives the call.
        check(unsafe { libc::bind(fd.as_raw_fd(), std::ptr::addr_of!(sa).cast(), len) })?;
        let mut got = len;
        // SAFETY: getsockname writes at most `got` bytes into `sa`, which has that size.
        check(unsafe {
            libc::getsockname(fd.as_raw_fd(), std::ptr::addr_of_mut!(sa).cast(), &mut got)
        })?;
        let sock = Socket {
            fd,
            port: sa.nl_pid,
        };
        sock.set_timeout(Duration::from_secs(5))?;
        Ok(sock)
    }

    /// Bounds every receive, so a lost answer is an error instead of a hang.
    fn set_timeout(&self, d: Duration) -> io::Result<()> {
        let tv = libc::timeval {
            tv_sec: d.as_secs() as libc::time_t,
            tv_usec: d.subsec_micros() as libc::suseconds_t,
        };
        let len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
        // SAFETY: `tv` is a valid timeval of `len` bytes that outlives the call.
        check(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                std::ptr::addr_of!(tv).cast(),
                len,
            )
        })?;
        Ok(())
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: `msg` is valid for reads of its length for the whole call.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        match n {
            n if n < 0 => Err(io::Error::last_os_error()),
            n if n as usize != msg.len() => Err(io::Error::other("netlink: short send")),
            _ => Ok(()),
        }
    }

    /// One datagram into `buf` (its length); a datagram larger than `buf` is an error.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: `buf` is valid for writes of its length for the whole call; MSG_TRUNC
            // only changes the return value (the datagram's real length).
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_TRUNC,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n as usize > buf.len() {
                return Err(io::Error::other("netlink: answer larger than the buffer"));
            }
            return Ok(n as usize);
        }
    }

    /// Sends request `ty` and gathers the payloads of its answers (type, bytes).
    fn transact(
        &self,
        op: &'static str,
        ty: u16,
        flags: u16,
        payload: &[u8],
        ends: Ends,
    ) -> Result<Vec<(u16, Vec<u8>)>> {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        self.send(&request(ty, NLM_F_REQUEST | flags, seq, payload))?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut out = Vec::new();
        let mut interrupted = false;
        loop {
            let n = self.recv(&mut buf)?;
            for m in messages(&buf[..n])? {
                if m.seq != seq || m.port != self.port {
                    continue; // an answer to someone else, or a late one
                }
                interrupted |= m.flags & NLM_F_DUMP_INTR != 0;
                match m.ty {
                    NLMSG_ERROR => match error_code(m.payload)? {
                        0 if ends == Ends::Ack => return Ok(out),
                        0 => {}
                        code => return Err(kernel(op, code)),
                    },
                    NLMSG_DONE if ends == Ends::Dump => {
                        return match error_code(m.payload) {
                            Ok(code) if code < 0 => Err(kernel(op, code)),
                            _ if interrupted => Err(Error::Interrupted { op }),
                            _ => Ok(out),
                        };
                    }
                    _ => {
                        out.push((m.ty, m.payload.to_vec()));
                        if ends == Ends::Reply {
                            return Ok(out);
                        }
                    }
                }
            }
        }
    }
}

fn kernel(op: &'static str, code: i32) -> Error {
    Error::Kernel {
        op,
        source: io::Error::from_raw_os_error(code.saturating_neg()),
    }
}

/// A dump of `ty` (payloads of type `want`), again when a change interrupted it.
fn dump(op: &'static str, ty: u16, payload: &[u8], want: u16) -> Result<Vec<Vec<u8>>> {
    let mut tries = 0;
    loop {
        let sock = Socket::open()?;
        match sock.transact(op, ty, NLM_F_DUMP, payload, Ends::Dump) {
            Err(Error::Interrupted { .. }) if tries < 4 => tries += 1,
            r => {
                return Ok(r?
                    .into_iter()
                    .filter(|(t, _)| *t == want)
                    .map(|(_, p)| p)
                    .collect())
            }
        }
    }
}

/// A lookup of `ty`: its one answer's payload.
fn get(op: &'static str, ty: u16, payload: &[u8]) -> Result<Vec<u8>> {
    let sock = Socket::open()?;
    let mut out = sock.transact(op, ty, 0, payload, Ends::Reply)?;
    out.pop()
        .map(|(_, p)| p)
        .ok_or(Error::Malformed(Malformed("empty answer")))
}

/// A change (`flags`: `NLM_F_CREATE`, …), acknowledged.
fn change(op: &'static str, ty: u16, flags: u16, payload: &[u8]) -> Result<()> {
    let sock = Socket::open()?;
    sock.transact(op, ty, NLM_F_ACK | flags, payload, Ends::Ack)?;
    Ok(())
}

/// Every interface.
pub fn links() -> Result<Vec<Link>> {
    dump("RTM_GETLINK", RTM_GETLINK, &ifinfomsg(0), RTM_NEWLINK)?
        .iter()
        .map(|p| parse_link(p).map_err(Error::from))
        .collect()
}

/// The interface named `name` ([`Error::NoLink`] when there is none).
pub fn link_by_name(name: &str) -> Result<Link> {
    let mut req = ifinfomsg(0);
    let mut bytes = name.as_bytes().to_vec();
    bytes.push(0);
    push_attr(&mut req, IFLA_IFNAME, &bytes);
    match get("RTM_GETLINK", RTM_GETLINK, &req) {
        Err(e) if e.errno() == Some(libc::ENODEV) => Err(Error::NoLink(name.to_string())),
        r => Ok(parse_link(&r?)?),
    }
}

/// The index of interface `name`.
pub fn ifindex(name: &str) -> Result<u32> {
    Ok(link_by_name(name)?.ifindex)
}

/// Interface `ifindex`.
pub fn link(ifindex: u32) -> Result<Link> {
    match get("RTM_GETLINK", RTM_GETLINK, &ifinfomsg(ifindex)) {
        Err(e) if e.errno() == Some(libc::ENODEV) => Err(Error::NoLink(format!("#{ifindex}"))),
        r => Ok(parse_link(&r?)?),
    }
}

/// The name of interface `ifindex`, or `#N` when it cannot be read (for messages).
fn link_name(ifindex: u32) -> String {
    link(ifindex).map_or_else(|_| format!("#{ifindex}"), |l| l.name)
}

/// The addresses of interface `ifindex` (IPv4 and IPv6, in the kernel's order).
pub fn addrs(ifindex: u32) -> Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for p in dump(
        "RTM_GETADDR",
        RTM_GETADDR,
        &ifaddrmsg(AF_UNSPEC, 0, 0, 0),
        RTM_NEWADDR,
    )? {
        match parse_addr(&p)? {
            Some(a) if a.ifindex == ifindex => out.push(a.addr),
            _ => {}
        }
    }
    Ok(out)
}

/// The route the kernel would take to `dst` (`ip route get DST`: a lookup, not a dump).
pub fn route_get(dst: IpAddr) -> Result<Route> {
    let (family, bytes) = ip_bytes(dst);
    let mut req = rtmsg_get(family);
    push_attr(&mut req, RTA_DST, &bytes);
    Ok(parse_route(&get("RTM_GETROUTE", RTM_GETROUTE, &req)?)?)
}

/// Whether the kernel's routing is plain: only the rules a namespace starts with
/// ([`wire::is_default_rule`]), for IPv4 and IPv6, and no route that selects on TOS or source
/// or has several paths ([`wire::route_beyond_destination`]). Then where a packet goes depends
/// only on its destination and the interface it came in by, so a next hop looked up for one
/// packet holds for the next one the same way.
pub fn plain_routing() -> Result<bool> {
    for family in [AF_INET, AF_INET6] {
        for p in dump(
            "RTM_GETRULE",
            RTM_GETRULE,
            &fib_rule_hdr(family),
            RTM_NEWRULE,
        )? {
            if !is_default_rule(&p)? {
                return Ok(false);
            }
        }
    }
    for family in [AF_INET, AF_INET6] {
        let mut all = rtmsg_get(family);
        all[1] = 0;
        for p in dump("RTM_GETROUTE", RTM_GETROUTE, &all, RTM_NEWROUTE)? {
            if route_beyond_destination(&p)? {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// The rtnetlink groups whose messages can change where the kernel forwards a packet:
/// links, neighbours, addresses, routes, rules and forwarding settings (netconf); and
/// next-hop objects (group 32), where the kernel has them.
const WATCHED_GROUPS: [u32; 10] = [1, 3, 5, 7, 8, 9, 11, 19, 24, 25];
const RTNLGRP_NEXTHOP: u32 = 32;

/// `SOL_NETLINK` and its `NETLINK_ADD_MEMBERSHIP` option.
const SOL_NETLINK: libc::c_int = 270;
const NETLINK_ADD_MEMBERSHIP: libc::c_int = 1;

/// What a [`Changes::wait`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// a rule, a route that selects on more than its destination, or announcements lost
    /// (the socket overran): whether routing is plain ([`plain_routing`]) must be asked again
    pub policy: bool,
}

impl Change {
    /// Two looks' changes as one (None: no change).
    fn join(a: Option<Change>, b: Option<Change>) -> Option<Change> {
        match (a, b) {
            (Some(a), Some(b)) => Some(Change {
                policy: a.policy || b.policy,
            }),
            (a, b) => a.or(b),
        }
    }
}

/// A socket on the kernel's announcements of changes to its links, neighbours, addresses,
/// routes, rules and forwarding settings. Neighbours are followed: an announcement that
/// leaves a neighbour's usable Ethernet address as it was (REACHABLE to STALE and back, a
/// probe) is no change.
pub struct Changes {
    sock: Socket,
    buf: Vec<u8>,
    /// each neighbour's Ethernet address while usable (None: not usable), as last announced
    neighbours: HashMap<(u32, IpAddr), Option<[u8; 6]>>,
}

impl Changes {
    pub fn open() -> io::Result<Changes> {
        let sock = Socket::open()?;
        for group in WATCHED_GROUPS.into_iter().chain([RTNLGRP_NEXTHOP]) {
            let len = std::mem::size_of::<u32>() as libc::socklen_t;
            // SAFETY: `group` is a valid u32 of `len` bytes that outlives the call.
            let rc = check(unsafe {
                libc::setsockopt(
                    sock.fd.as_raw_fd(),
                    SOL_NETLINK,
                    NETLINK_ADD_MEMBERSHIP,
                    std::ptr::addr_of!(group).cast(),
                    len,
                )
            });
            match rc {
                // a kernel without next-hop objects has no such group (and no such objects)
                Err(_) if group == RTNLGRP_NEXTHOP => {}
                r => {
                    r?;
                }
            }
        }
        let mut c = Changes {
            sock,
            buf: vec![0u8; 64 * 1024],
            neighbours: Default::default(),
        };
        // subscribed first: an entry that changes from here on is announced
        for family in [AF_INET, AF_INET6] {
            let entries = dump("RTM_GETNEIGH", RTM_GETNEIGH, &ndmsg(family), RTM_NEWNEIGH)
                .map_err(|e| io::Error::other(e.to_string()))?;
            for p in entries {
                if let Ok(Some(n)) = parse_neigh(&p) {
                    c.neighbours.insert((n.ifindex, n.addr), usable(&n));
                }
            }
        }
        Ok(c)
    }

    /// Waits up to `timeout` for announcements; then takes all that are waiting, as one
    /// change (None: nothing came that changes where a packet goes).
    pub fn wait(&mut self, timeout: Duration) -> io::Result<Option<Change>> {
        self.sock
            .set_timeout(timeout.max(Duration::from_millis(1)))?;
        let mut change = match self.take(0) {
            Ok(c) => c,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        loop {
            match self.take(libc::MSG_DONTWAIT) {
                Ok(c) => change = Change::join(change, c),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(change),
                Err(e) => return Err(e),
            }
        }
    }

    /// One datagram's messages as a change (None: none of them changes anything); an overrun
    /// (ENOBUFS: announcements were lost) is a change of anything.
    fn take(&mut self, flags: libc::c_int) -> io::Result<Option<Change>> {
        // SAFETY: `buf` is valid for writes of its length for the whole call.
        let n = unsafe {
            libc::recv(
                self.sock.fd.as_raw_fd(),
                self.buf.as_mut_ptr().cast(),
                self.buf.len(),
                flags,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOBUFS) => {
                    // what was lost may have been a neighbour's change
                    self.neighbours.clear();
                    Ok(Some(Change { policy: true }))
                }
                Some(libc::EINTR) => Ok(None),
                _ => Err(e),
            };
        }
        let Ok(msgs) = messages(&self.buf[..n as usize]) else {
            // a datagram that does not decode still announced something
            return Ok(Some(Change { policy: true }));
        };
        let mut out: Option<Change> = None;
        for m in msgs {
            let policy = match m.ty {
                RTM_NEWNEIGH | RTM_DELNEIGH => {
                    let Ok(Some(n)) = parse_neigh(m.payload) else {
                        continue;
                    };
                    let key = (n.ifindex, n.addr);
                    let (before, now) = if m.ty == RTM_DELNEIGH {
                        (self.neighbours.remove(&key), None)
                    } else {
                        (self.neighbours.insert(key, usable(&n)), usable(&n))
                    };
                    // unknown before (None from the map), or another address: a change
                    if before == Some(now) {
                        continue;
                    }
                    false
                }
                RTM_NEWRULE | RTM_DELRULE => true,
                RTM_NEWROUTE | RTM_DELROUTE => route_beyond_destination(m.payload).unwrap_or(true),
                _ => false,
            };
            out = Change::join(out, Some(Change { policy }));
        }
        Ok(out)
    }
}

/// A neighbour's Ethernet address while the kernel would use it (`NUD_VALID`).
fn usable(n: &NeighEntry) -> Option<[u8; 6]> {
    n.mac.filter(|_| n.state & NUD_USABLE != 0)
}

/// The usable neighbour entries ([`NUD_USABLE`], with an Ethernet address) of one address
/// family (`AF_INET`, `AF_INET6`), by interface and address: one dump of the table.
pub fn neighbours(family: u8) -> Result<HashMap<(u32, IpAddr), Neigh>> {
    let mut out = HashMap::new();
    for p in dump("RTM_GETNEIGH", RTM_GETNEIGH, &ndmsg(family), RTM_NEWNEIGH)? {
        let Some(n) = parse_neigh(&p)? else { continue };
        if n.state & NUD_USABLE == 0 {
            continue;
        }
        if let Some(mac) = n.mac {
            out.insert(
                (n.ifindex, n.addr),
                Neigh {
                    mac,
                    state: n.state,
                },
            );
        }
    }
    Ok(out)
}

/// The neighbour entry of `addr` on interface `ifindex`, if there is one in a usable state
/// ([`NUD_USABLE`]) with an Ethernet address.
pub fn neighbour(ifindex: u32, addr: IpAddr) -> Result<Option<Neigh>> {
    let (family, _) = ip_bytes(addr);
    Ok(neighbours(family)?.remove(&(ifindex, addr)))
}

/// `SO_NETNS_COOKIE` (Linux 5.14).
const SO_NETNS_COOKIE: libc::c_int = 71;

/// This network namespace's cookie: unique for as long as the machine runs. The default state
/// file is named after the namespace's inode, which a namespace made after this one is gone
/// may get again; the cookie tells the two apart.
pub fn netns_cookie() -> Option<u64> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).ok()?;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: `cookie` has room for the `len` bytes the kernel may write.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            std::ptr::addr_of_mut!(cookie).cast(),
            &mut len,
        )
    };
    (rc == 0 && len as usize == std::mem::size_of::<u64>()).then_some(cookie)
}

/// Makes the kernel resolve neighbour `addr` on interface `ifindex` (the interface names a
/// link-local IPv6 address's scope). It sends one empty UDP datagram to port 9 (discard) of
/// `addr` from a connected socket: the kernel then creates the neighbour entry, sends the
/// ARP request or neighbour solicitation itself, retries it by its own rules, and keeps the
/// entry up to date, as for any of its own traffic. Writing ARP ourselves would bypass the
/// neighbour table (the kernel does not take unsolicited answers by default); the datagram
/// is the smallest traffic that makes the kernel do the work. Send errors (an earlier
/// failure reported on the socket) do not matter: the caller looks at the table.
pub fn solicit(addr: IpAddr, ifindex: u32) -> io::Result<()> {
    let (sock, to) = match addr {
        IpAddr::V4(a) => (UdpSocket::bind("0.0.0.0:0")?, SocketAddr::from((a, 9))),
        IpAddr::V6(a) => {
            let scope = if a.is_unicast_link_local() {
                ifindex
            } else {
                0
            };
            let to = SocketAddr::V6(SocketAddrV6::new(a, 9, 0, scope));
            (UdpSocket::bind("[::]:0")?, to)
        }
    };
    sock.connect(to)?;
    let _ = sock.send(&[]);
    Ok(())
}

/// How often `resolve` looks at the neighbour table, and asks again for an entry.
const POLL: Duration = Duration::from_millis(10);
const SOLICIT_AGAIN: Duration = Duration::from_secs(1);

/// Where packets for `dst` go: the route's interface and the Ethernet address of its next
/// hop (the gateway, or `dst` on a connected network), soliciting the neighbour and looking
/// every 10 ms until `timeout`.
pub fn resolve(dst: IpAddr, timeout: Duration) -> Result<NextHop> {
    let route = match route_get(dst) {
        Ok(r) => r,
        Err(e @ Error::Kernel { .. }) => {
            return Err(Error::Unresolved(format!(
                "{dst}: no route: {}",
                e.source_text()
            )))
        }
        Err(e) => return Err(e),
    };
    if route.rtype != RTN_UNICAST {
        let what = if route.rtype == RTN_LOCAL {
            "an address of this host"
        } else {
            "not a unicast destination"
        };
        return Err(Error::Unresolved(format!("{dst}: {what}")));
    }
    let hop = route.gateway.unwrap_or(dst);
    let start = Instant::now();
    let mut asked: Option<Instant> = None;
    loop {
        if let Some(n) = neighbour(route.oif, hop)? {
            return Ok(NextHop {
                ifindex: route.oif,
                mac: n.mac,
                src: route.prefsrc,
            });
        }
        if start.elapsed() >= timeout {
            return Err(unresolved(dst, hop, route.oif, timeout));
        }
        if asked.is_none_or(|t| t.elapsed() >= SOLICIT_AGAIN) {
            solicit(hop, route.oif)?;
            asked = Some(Instant::now());
        }
        std::thread::sleep(POLL.min(timeout.saturating_sub(start.elapsed())));
    }
}

/// "10.0.0.9: no neighbour entry on eth0 after 1s" (naming the gateway when there is one).
fn unresolved(dst: IpAddr, hop: IpAddr, oif: u32, timeout: Duration) -> Error {
    let via = if hop == dst {
        String::new()
    } else {
        format!(" for its gateway {hop}")
    };
    Error::Unresolved(format!(
        "{dst}: no neighbour entry{via} on {} after {timeout:?}",
        link_name(oif)
    ))
}

impl Error {
    /// The OS error's text alone (without the operation).
    fn source_text(&self) -> String {
        match self {
            Error::Kernel { source, .. } => source.to_string(),
            e => e.to_string(),
        }
    }
}

/// The scope `ip addr add` gives: host for IPv4 loopback addresses (127/8), else universe
/// (the kernel sets IPv6 scopes from the address itself).
fn default_scope(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(a) if a.is_loopback() => SCOPE_HOST,
        _ => SCOPE_UNIVERSE,
    }
}

fn addr_message(ifindex: u32, addr: IpAddr, prefix_len: u8) -> Vec<u8> {
    let (family, bytes) = ip_bytes(addr);
    let mut req = ifaddrmsg(family, prefix_len, default_scope(addr), ifindex);
    push_attr(&mut req, IFA_LOCAL, &bytes);
    push_attr(&mut req, IFA_ADDRESS, &bytes);
    req
}

/// Adds `addr/prefix_len` to interface `ifindex`, as `ip addr add` does (`VIP/32 dev lo`).
/// An address already there fails with errno `EEXIST`.
pub fn addr_add(ifindex: u32, addr: IpAddr, prefix_len: u8) -> Result<()> {
    let req = addr_message(ifindex, addr, prefix_len);
    change("RTM_NEWADDR", RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &req)
}

/// Removes `addr/prefix_len` from interface `ifindex`. An address not there fails with
/// errno `EADDRNOTAVAIL`.
pub fn addr_del(ifindex: u32, addr: IpAddr, prefix_len: u8) -> Result<()> {
    let req = addr_message(ifindex, addr, prefix_len);
    change("RTM_DELADDR", RTM_DELADDR, 0, &req)
}

/// The filters on a clsact hook of interface `ifindex` (`tc filter show dev X ingress`):
/// one entry per filter (a priority's own entry, handle 0, is left out).
pub fn tc_filters(ifindex: u32, hook: Hook) -> Result<Vec<TcFilter>> {
    let minor = match hook {
        Hook::Ingress => TC_H_MIN_INGRESS,
        Hook::Egress => TC_H_MIN_EGRESS,
    };
    let parent = (TC_H_CLSACT & 0xffff_0000) | minor;
    let req = tcmsg(ifindex, 0, parent);
    let mut out = Vec::new();
    for p in dump("RTM_GETTFILTER", RTM_GETTFILTER, &req, RTM_NEWTFILTER)? {
        let f = parse_tc(&p)?;
        if f.ifindex == ifindex && f.handle != 0 {
            out.push(f);
        }
    }
    Ok(out)
}

/// Whether interface `ifindex` has a clsact qdisc.
pub fn has_clsact(ifindex: u32) -> Result<bool> {
    let req = tcmsg(0, 0, 0);
    for p in dump("RTM_GETQDISC", RTM_GETQDISC, &req, RTM_NEWQDISC)? {
        let q = parse_tc(&p)?;
        if q.ifindex == ifindex && q.kind == "clsact" {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Removes interface `ifindex`'s clsact qdisc, and with it every filter on its hooks
/// (`tc qdisc del dev X clsact`).
pub fn clsact_del(ifindex: u32) -> Result<()> {
    let mut req = tcmsg(ifindex, CLSACT_HANDLE, TC_H_CLSACT);
    req.extend_from_slice(&tc_kind("clsact"));
    change("RTM_DELQDISC", RTM_DELQDISC, 0, &req)
}

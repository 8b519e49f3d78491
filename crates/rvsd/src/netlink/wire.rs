//! The rtnetlink wire format: message and attribute framing, the fixed headers of the
//! messages rvsd sends and reads, and the decoders that turn a reply's payload into
//! [`Link`], [`Addr`], [`Route`], [`NeighEntry`] and [`TcFilter`]. Pure functions on byte
//! slices, every length checked before it is used, so they are unit-tested on fixtures.
//!
//! Numbers in netlink headers and attributes are in the host's byte order; addresses are in
//! network order, as on the wire.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Link, Route};

/// `struct nlmsghdr`'s size.
pub const NLMSG_HDRLEN: usize = 16;
/// `struct rtattr`'s size.
const RTA_HDRLEN: usize = 4;
/// An attribute type's flag bits (`NLA_F_NESTED`, `NLA_F_NET_BYTEORDER`).
const NLA_TYPE_MASK: u16 = 0x3fff;

pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;

pub const NLM_F_REQUEST: u16 = 0x01;
pub const NLM_F_ACK: u16 = 0x04;
pub const NLM_F_DUMP_INTR: u16 = 0x10;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_DUMP: u16 = 0x300;

pub const RTM_NEWLINK: u16 = 16;
pub const RTM_GETLINK: u16 = 18;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_DELADDR: u16 = 21;
pub const RTM_GETADDR: u16 = 22;
pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_DELROUTE: u16 = 25;
pub const RTM_GETROUTE: u16 = 26;
pub const RTM_NEWRULE: u16 = 32;
pub const RTM_DELRULE: u16 = 33;
pub const RTM_GETRULE: u16 = 34;
pub const RTM_NEWNEIGH: u16 = 28;
pub const RTM_DELNEIGH: u16 = 29;
pub const RTM_GETNEIGH: u16 = 30;
pub const RTM_NEWQDISC: u16 = 36;
pub const RTM_DELQDISC: u16 = 37;
pub const RTM_GETQDISC: u16 = 38;
pub const RTM_NEWTFILTER: u16 = 44;
pub const RTM_GETTFILTER: u16 = 46;

pub const AF_UNSPEC: u8 = 0;
pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

const IFF_UP: u32 = 0x1;
const IFF_LOOPBACK: u32 = 0x8;
const IFLA_ADDRESS: u16 = 1;
pub const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;

pub const IFA_ADDRESS: u16 = 1;
pub const IFA_LOCAL: u16 = 2;
/// `RT_SCOPE_UNIVERSE` and `RT_SCOPE_HOST`.
pub const SCOPE_UNIVERSE: u8 = 0;
pub const SCOPE_HOST: u8 = 254;

pub const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PREFSRC: u16 = 7;
const RTA_VIA: u16 = 18;

const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;

const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
/// `TCA_BPF_NAME` and `TCA_BPF_ID`, inside a `bpf` filter's `TCA_OPTIONS`.
const TCA_BPF_NAME: u16 = 7;
const TCA_BPF_ID: u16 = 11;
/// `TC_H_CLSACT` (== `TC_H_INGRESS`): the clsact qdisc's parent and major handle.
pub const TC_H_CLSACT: u32 = 0xffff_fff1;
/// `TC_H_MAKE(TC_H_CLSACT, 0)`: the clsact qdisc's handle.
pub const CLSACT_HANDLE: u32 = 0xffff_0000;
/// `TC_H_MIN_INGRESS` and `TC_H_MIN_EGRESS`: the clsact hooks' minor numbers.
pub const TC_H_MIN_INGRESS: u32 = 0xfff2;
pub const TC_H_MIN_EGRESS: u32 = 0xfff3;

/// The input did not hold what its framing says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// `NLMSG_ALIGN` / `RTA_ALIGN`: rounded up to 4 bytes.
pub fn align(n: usize) -> usize {
    (n + 3) & !3
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// One netlink message of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msg<'a> {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    /// the sender's port id (for the kernel's answers: the requester's)
    pub port: u32,
    pub payload: &'a [u8],
}

/// The messages of one datagram, in order. Each header's length must cover the header and
/// fit in what is left; the last message need not be padded.
pub fn messages(mut buf: &[u8]) -> Result<Vec<Msg<'_>>, Malformed> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let len = u32_at(buf, 0).ok_or(Malformed("message header"))? as usize;
        if len < NLMSG_HDRLEN || buf.len() < NLMSG_HDRLEN || len > buf.len() {
            return Err(Malformed("message length"));
        }
        out.push(Msg {
            ty: u16_at(buf, 4).ok_or(Malformed("message header"))?,
            flags: u16_at(buf, 6).ok_or(Malformed("message header"))?,
            seq: u32_at(buf, 8).ok_or(Malformed("message header"))?,
            port: u32_at(buf, 12).ok_or(Malformed("message header"))?,
            payload: &buf[NLMSG_HDRLEN..len],
        });
        buf = &buf[align(len).min(buf.len())..];
    }
    Ok(out)
}

/// The error code of an `NLMSG_ERROR` payload: 0 for an acknowledgement, else a negative
/// errno.
pub fn error_code(payload: &[u8]) -> Result<i32, Malformed> {
    u32_at(payload, 0)
        .map(|v| v as i32)
        .ok_or(Malformed("error message"))
}

/// The attributes in `buf` as (type without flag bits, value). Trailing bytes too short for
/// an attribute header are padding.
pub fn attrs(mut buf: &[u8]) -> Result<Vec<(u16, &[u8])>, Malformed> {
    let mut out = Vec::new();
    while buf.len() >= RTA_HDRLEN {
        let len = usize::from(u16_at(buf, 0).ok_or(Malformed("attribute"))?);
        if len < RTA_HDRLEN || len > buf.len() {
            return Err(Malformed("attribute length"));
        }
        let ty = u16_at(buf, 2).ok_or(Malformed("attribute"))? & NLA_TYPE_MASK;
        out.push((ty, &buf[RTA_HDRLEN..len]));
        buf = &buf[align(len).min(buf.len())..];
    }
    Ok(out)
}

/// A request: header (length, type, flags, sequence number, port 0) and payload.
pub fn request(ty: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + payload.len();
    let mut m = Vec::with_capacity(align(len));
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(payload);
    m
}

/// Appends attribute `ty` with value `data` (padded to 4 bytes) to `buf`.
pub fn push_attr(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = RTA_HDRLEN + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(align(buf.len()), 0);
}

/// An address's family number and bytes.
pub fn ip_bytes(ip: IpAddr) -> (u8, Vec<u8>) {
    match ip {
        IpAddr::V4(a) => (AF_INET, a.octets().to_vec()),
        IpAddr::V6(a) => (AF_INET6, a.octets().to_vec()),
    }
}

/// The address of family `family` in `b` (exactly 4 or 16 bytes).
pub fn ip_from(family: u8, b: &[u8]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(b).ok()?))),
        AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(b).ok()?))),
        _ => None,
    }
}

/// A NUL-terminated (or not) string attribute.
fn string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn mac(b: &[u8]) -> Option<[u8; 6]> {
    b.try_into().ok()
}

/// `struct ifinfomsg` (16 bytes) asking for interface `index` (0: all, or by name).
pub fn ifinfomsg(index: u32) -> Vec<u8> {
    let mut m = vec![AF_UNSPEC, 0, 0, 0];
    m.extend_from_slice(&index.to_ne_bytes());
    m.extend_from_slice(&[0; 8]);
    m
}

/// An `RTM_NEWLINK` payload.
pub fn parse_link(p: &[u8]) -> Result<Link, Malformed> {
    let bad = Malformed("link message");
    let ifindex = u32_at(p, 4).ok_or(bad)?;
    let flags = u32_at(p, 8).ok_or(bad)?;
    let mut link = Link {
        ifindex,
        name: String::new(),
        mac: [0; 6],
        up: flags & IFF_UP != 0,
        loopback: flags & IFF_LOOPBACK != 0,
        mtu: 0,
    };
    for (ty, v) in attrs(p.get(16..).ok_or(bad)?)? {
        match ty {
            IFLA_IFNAME => link.name = string(v),
            IFLA_ADDRESS => link.mac = mac(v).unwrap_or_default(),
            IFLA_MTU => link.mtu = u32_at(v, 0).ok_or(bad)?,
            _ => {}
        }
    }
    Ok(link)
}

/// An interface address (`RTM_NEWADDR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr {
    pub ifindex: u32,
    pub addr: IpAddr,
    pub prefix_len: u8,
}

/// `struct ifaddrmsg` (8 bytes).
pub fn ifaddrmsg(family: u8, prefix_len: u8, scope: u8, ifindex: u32) -> Vec<u8> {
    let mut m = vec![family, prefix_len, 0, scope];
    m.extend_from_slice(&ifindex.to_ne_bytes());
    m
}

/// An `RTM_NEWADDR` payload: the local address (`IFA_LOCAL`, which differs from
/// `IFA_ADDRESS` on point-to-point links), else `IFA_ADDRESS`. None: no address of a known
/// family.
pub fn parse_addr(p: &[u8]) -> Result<Option<Addr>, Malformed> {
    let bad = Malformed("address message");
    let (family, prefix_len) = (*p.first().ok_or(bad)?, *p.get(1).ok_or(bad)?);
    let ifindex = u32_at(p, 4).ok_or(bad)?;
    let (mut local, mut address) = (None, None);
    for (ty, v) in attrs(p.get(8..).ok_or(bad)?)? {
        match ty {
            IFA_LOCAL => local = ip_from(family, v),
            IFA_ADDRESS => address = ip_from(family, v),
            _ => {}
        }
    }
    Ok(local.or(address).map(|addr| Addr {
        ifindex,
        addr,
        prefix_len,
    }))
}

/// `struct rtmsg` (12 bytes) for a route lookup of a host address of `family`.
pub fn rtmsg_get(family: u8) -> Vec<u8> {
    let bits = if family == AF_INET { 32 } else { 128 };
    let mut m = vec![family, bits, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&0u32.to_ne_bytes());
    m
}

/// An `RTM_NEWROUTE` payload (the answer of a route lookup).
pub fn parse_route(p: &[u8]) -> Result<Route, Malformed> {
    let bad = Malformed("route message");
    let family = *p.first().ok_or(bad)?;
    let rtype = *p.get(7).ok_or(bad)?;
    let mut route = Route {
        oif: 0,
        gateway: None,
        prefsrc: None,
        rtype,
    };
    for (ty, v) in attrs(p.get(12..).ok_or(bad)?)? {
        match ty {
            RTA_OIF => route.oif = u32_at(v, 0).ok_or(bad)?,
            RTA_GATEWAY => route.gateway = ip_from(family, v),
            RTA_PREFSRC => route.prefsrc = ip_from(family, v),
            // `struct rtvia`: a gateway of another family (an IPv4 route via IPv6)
            RTA_VIA => {
                let via_family = u16_at(v, 0).ok_or(bad)?;
                route.gateway = ip_from(via_family as u8, v.get(2..).ok_or(bad)?);
            }
            _ => {}
        }
    }
    Ok(route)
}

/// A neighbour table entry (`RTM_NEWNEIGH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighEntry {
    pub ifindex: u32,
    pub addr: IpAddr,
    /// the link-layer address, when it is an Ethernet one
    pub mac: Option<[u8; 6]>,
    /// `NUD_*` bits
    pub state: u16,
}

/// `struct ndmsg` (12 bytes) for a dump of `family`'s neighbours.
pub fn ndmsg(family: u8) -> Vec<u8> {
    let mut m = vec![family, 0, 0, 0];
    m.extend_from_slice(&[0; 8]);
    m
}

/// An `RTM_NEWNEIGH` payload. None: an entry without a destination of a known family.
pub fn parse_neigh(p: &[u8]) -> Result<Option<NeighEntry>, Malformed> {
    let bad = Malformed("neighbour message");
    let family = *p.first().ok_or(bad)?;
    let ifindex = u32_at(p, 4).ok_or(bad)?;
    let state = u16_at(p, 8).ok_or(bad)?;
    let (mut dst, mut lladdr) = (None, None);
    for (ty, v) in attrs(p.get(12..).ok_or(bad)?)? {
        match ty {
            NDA_DST => dst = ip_from(family, v),
            NDA_LLADDR => lladdr = mac(v),
            _ => {}
        }
    }
    Ok(dst.map(|addr| NeighEntry {
        ifindex,
        addr,
        mac: lladdr,
        state,
    }))
}

/// `struct tcmsg` (20 bytes).
pub fn tcmsg(ifindex: u32, handle: u32, parent: u32) -> Vec<u8> {
    let mut m = vec![AF_UNSPEC, 0, 0, 0];
    m.extend_from_slice(&ifindex.to_ne_bytes());
    m.extend_from_slice(&handle.to_ne_bytes());
    m.extend_from_slice(&parent.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m
}

/// A tc object (qdisc or filter) as a dump lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcFilter {
    pub ifindex: u32,
    pub handle: u32,
    pub parent: u32,
    /// filters: the priority (`tcm_info`'s upper half)
    pub prio: u16,
    /// `TCA_KIND`: "bpf", "clsact", …
    pub kind: String,
    /// a `bpf` filter's program name and id
    pub name: Option<String>,
    pub prog_id: Option<u32>,
}

/// An `RTM_NEWTFILTER` or `RTM_NEWQDISC` payload.
pub fn parse_tc(p: &[u8]) -> Result<TcFilter, Malformed> {
    let bad = Malformed("tc message");
    let mut f = TcFilter {
        ifindex: u32_at(p, 4).ok_or(bad)?,
        handle: u32_at(p, 8).ok_or(bad)?,
        parent: u32_at(p, 12).ok_or(bad)?,
        prio: (u32_at(p, 16).ok_or(bad)? >> 16) as u16,
        kind: String::new(),
        name: None,
        prog_id: None,
    };
    let mut options = None;
    for (ty, v) in attrs(p.get(20..).ok_or(bad)?)? {
        match ty {
            TCA_KIND => f.kind = string(v),
            TCA_OPTIONS => options = Some(v),
            _ => {}
        }
    }
    if let (Some(o), "bpf") = (options, f.kind.as_str()) {
        for (ty, v) in attrs(o)? {
            match ty {
                TCA_BPF_NAME => f.name = Some(string(v)),
                TCA_BPF_ID => f.prog_id = Some(u32_at(v, 0).ok_or(bad)?),
                _ => {}
            }
        }
    }
    Ok(f)
}

/// The kind attribute of a qdisc request.
pub fn tc_kind(kind: &str) -> Vec<u8> {
    let mut v = Vec::new();
    let mut name = kind.as_bytes().to_vec();
    name.push(0);
    push_attr(&mut v, TCA_KIND, &name);
    v
}

const FRA_PRIORITY: u16 = 6;
const FRA_SUPPRESS_IFGROUP: u16 = 13;
const FRA_SUPPRESS_PREFIXLEN: u16 = 14;
const FRA_TABLE: u16 = 15;
const FRA_PROTOCOL: u16 = 21;

/// `FR_ACT_TO_TBL`: a rule that looks a table up
const FR_ACT_TO_TBL: u8 = 1;

/// The rules every namespace starts with, (priority, table): local, main and (IPv4) default.
const DEFAULT_RULES: [(u32, u32); 3] = [(0, 255), (32766, 254), (32767, 253)];

/// `struct fib_rule_hdr` (12 bytes) for a rule dump of `family`.
pub fn fib_rule_hdr(family: u8) -> Vec<u8> {
    let mut m = vec![family, 0, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&0u32.to_ne_bytes());
    m
}

/// Whether an `RTM_NEWRULE` payload is one of the rules a namespace starts with: no selector
/// (source, destination, TOS, interface, mark, ports, UID range, ...), not inverted, looking up
/// the local, main or default table at its usual priority. Under those rules alone a route
/// lookup depends only on the destination (and, for forwarding, the interface it came in by).
pub fn is_default_rule(p: &[u8]) -> Result<bool, Malformed> {
    let bad = Malformed("rule message");
    let hdr = p.get(..12).ok_or(bad)?;
    let (dst_len, src_len, tos, table, action) = (hdr[1], hdr[2], hdr[3], hdr[4], hdr[7]);
    let flags = u32_at(hdr, 8).ok_or(bad)?;
    if dst_len != 0 || src_len != 0 || tos != 0 || action != FR_ACT_TO_TBL || flags != 0 {
        return Ok(false);
    }
    let (mut prio, mut table) = (0u32, u32::from(table));
    for (ty, v) in attrs(&p[12..])? {
        match ty {
            FRA_PRIORITY => prio = u32_at(v, 0).ok_or(bad)?,
            FRA_TABLE => table = u32_at(v, 0).ok_or(bad)?,
            FRA_PROTOCOL => {}
            // -1: no suppression (the kernel sends it for every rule)
            FRA_SUPPRESS_IFGROUP | FRA_SUPPRESS_PREFIXLEN if u32_at(v, 0) == Some(u32::MAX) => {}
            _ => return Ok(false),
        }
    }
    Ok(DEFAULT_RULES.contains(&(prio, table)))
}

const RTA_MULTIPATH: u16 = 9;
const RTA_NH_ID: u16 = 30;

/// Whether a route message's route makes where a packet goes depend on more than its
/// destination: it selects on TOS or (IPv6) on the source, or it has several paths (a
/// multipath route, or a next-hop object, which may be a group), chosen per flow by a hash of
/// the source.
pub fn route_beyond_destination(p: &[u8]) -> Result<bool, Malformed> {
    let bad = Malformed("route message");
    let hdr = p.get(..12).ok_or(bad)?;
    if hdr[2] != 0 || hdr[3] != 0 {
        return Ok(true);
    }
    Ok(attrs(&p[12..])?
        .iter()
        .any(|(ty, _)| *ty == RTA_MULTIPATH || *ty == RTA_NH_ID))
}

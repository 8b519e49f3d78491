//! Frames for the NAT fixtures, written field by field, every checksum computed from scratch
//! (RFC 1071 over all the bytes it covers, pseudo-header included): an expected output is
//! what the receiver should get, built like the input from its own fields, never derived
//! from what the program produced or from the program's incremental arithmetic.

use std::net::{IpAddr, SocketAddr};

pub const ICMP: u8 = 1;
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const FRAG6: u8 = 44;
pub const ICMP6: u8 = 58;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// The ones' complement sum (RFC 1071) of `data` as big-endian 16-bit words (an odd last
/// byte padded with zero), added to `acc` without folding.
pub fn sum(data: &[u8], acc: u64) -> u64 {
    data.chunks(2).fold(acc, |a, c| {
        a + u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
    })
}

/// The checksum of a sum: folded to 16 bits, complemented.
pub fn fold(acc: u64) -> u16 {
    let mut s = acc;
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

pub fn csum(data: &[u8]) -> u16 {
    fold(sum(data, 0))
}

pub fn octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The sum of the pseudo-header for `len` upper-layer bytes of protocol `proto` (RFC 768 for
/// IPv4, RFC 8200 8.1 for IPv6).
pub fn pseudo(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u64 {
    let mut p = octets(src);
    p.extend(octets(dst));
    if src.is_ipv4() {
        p.extend([0, proto]);
        p.extend((len as u16).to_be_bytes());
    } else {
        p.extend((len as u32).to_be_bytes());
        p.extend([0, 0, 0, proto]);
    }
    sum(&p, 0)
}

/// `n` payload bytes that are not all alike.
pub fn payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

/// A TCP segment or UDP datagram between two endpoints.
#[derive(Debug, Clone)]
pub struct Seg {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub proto: u8,
    /// TCP flags
    pub flags: u8,
    pub payload: Vec<u8>,
    /// UDP: sent with a checksum (false: the field is 0)
    pub csum: bool,
}

impl Seg {
    pub fn tcp(src: SocketAddr, dst: SocketAddr, flags: u8, len: usize) -> Seg {
        Seg {
            src,
            dst,
            proto: TCP,
            flags,
            payload: payload(len, flags),
            csum: true,
        }
    }

    pub fn udp(src: SocketAddr, dst: SocketAddr, len: usize) -> Seg {
        Seg {
            src,
            dst,
            proto: UDP,
            flags: 0,
            payload: payload(len, 0x5a),
            csum: true,
        }
    }

    /// The same segment between other endpoints (what NAT should make of it).
    pub fn with(&self, src: SocketAddr, dst: SocketAddr) -> Seg {
        Seg {
            src,
            dst,
            ..self.clone()
        }
    }

    /// The L4 header and payload, checksum computed over the pseudo-header of its addresses.
    pub fn l4(&self) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend(self.src.port().to_be_bytes());
        h.extend(self.dst.port().to_be_bytes());
        let at = if self.proto == TCP {
            h.extend([
                1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d, 0x50, self.flags, 0x20, 0,
            ]);
            h.extend([0, 0, 0, 0]);
            16
        } else {
            h.extend(((8 + self.payload.len()) as u16).to_be_bytes());
            h.extend([0, 0]);
            6
        };
        h.extend(&self.payload);
        if self.proto == TCP || self.csum {
            let c = fold(sum(
                &h,
                pseudo(self.src.ip(), self.dst.ip(), self.proto, h.len()),
            ));
            // UDP sends a computed 0 as all ones (0 says "no checksum")
            let c = if c == 0 && self.proto == UDP {
                0xffff
            } else {
                c
            };
            h[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
        h
    }

    /// The IP packet (TTL / hop limit `ttl`).
    pub fn ip(&self, ttl: u8) -> Vec<u8> {
        ip(self.src.ip(), self.dst.ip(), self.proto, ttl, &self.l4())
    }
}

/// An IP packet: IPv4 with ID 0x1234 and DF, or IPv6 with flow label 0.
pub fn ip(src: IpAddr, dst: IpAddr, proto: u8, ttl: u8, payload: &[u8]) -> Vec<u8> {
    if src.is_ipv4() {
        ip4(src, dst, proto, ttl, 0x1234, 0x4000, payload)
    } else {
        ip6(src, dst, proto, ttl, payload)
    }
}

/// An IPv4 packet with identification `id` and flags/fragment offset field `frag`.
pub fn ip4(src: IpAddr, dst: IpAddr, proto: u8, ttl: u8, id: u16, frag: u16, l4: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend(((20 + l4.len()) as u16).to_be_bytes());
    h.extend(id.to_be_bytes());
    h.extend(frag.to_be_bytes());
    h.extend([ttl, proto, 0, 0]);
    h.extend(octets(src));
    h.extend(octets(dst));
    let c = csum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(l4);
    h
}

/// IPv4 packet `ip` with `opts` (a multiple of 4 bytes) after its fixed header: header
/// length, total length and header checksum written again.
pub fn with_options(ip: &[u8], opts: &[u8]) -> Vec<u8> {
    let mut h = ip[..20].to_vec();
    h.extend_from_slice(opts);
    h[0] = 0x40 | (h.len() / 4) as u8;
    h[2..4].copy_from_slice(&((ip.len() + opts.len()) as u16).to_be_bytes());
    h[10..12].copy_from_slice(&[0, 0]);
    let c = csum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(&ip[20..]);
    h
}

pub fn ip6(src: IpAddr, dst: IpAddr, next: u8, hops: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend((payload.len() as u16).to_be_bytes());
    h.extend([next, hops]);
    h.extend(octets(src));
    h.extend(octets(dst));
    h.extend_from_slice(payload);
    h
}

/// An Ethernet frame around IP packet `ip` (the EtherType by its version).
pub fn eth(dst: [u8; 6], src: [u8; 6], ip: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend(src);
    f.extend(if ip[0] >> 4 == 4 {
        [0x08, 0]
    } else {
        [0x86, 0xdd]
    });
    f.extend_from_slice(ip);
    f
}

/// An ICMP message (`rest`: the four bytes after the checksum) quoting `quoted`.
pub fn icmp4(kind: u8, code: u8, rest: [u8; 4], quoted: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0];
    m.extend(rest);
    m.extend_from_slice(quoted);
    let c = csum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// An ICMPv6 message from `src` to `dst` quoting `quoted` (its checksum covers the
/// pseudo-header).
pub fn icmp6(
    src: IpAddr,
    dst: IpAddr,
    kind: u8,
    code: u8,
    rest: [u8; 4],
    quoted: &[u8],
) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0];
    m.extend(rest);
    m.extend_from_slice(quoted);
    let c = fold(sum(&m, pseudo(src, dst, ICMP6, m.len())));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// The IPv4 fragments of `seg` (ID `id`): the first carries `first` bytes of its L4 bytes
/// (a multiple of 8), the second the rest.
pub fn frags4(seg: &Seg, ttl: u8, id: u16, first: usize) -> (Vec<u8>, Vec<u8>) {
    let l4 = seg.l4();
    let (s, d) = (seg.src.ip(), seg.dst.ip());
    (
        ip4(s, d, seg.proto, ttl, id, 0x2000, &l4[..first]),
        ip4(s, d, seg.proto, ttl, id, (first / 8) as u16, &l4[first..]),
    )
}

/// The IPv6 fragments of `seg` (fragment header right after the fixed header, ID `id`).
pub fn frags6(seg: &Seg, hops: u8, id: u32, first: usize) -> (Vec<u8>, Vec<u8>) {
    let l4 = seg.l4();
    let (s, d) = (seg.src.ip(), seg.dst.ip());
    let frag = |off: usize, more: bool, part: &[u8]| {
        let mut p = vec![seg.proto, 0];
        p.extend((off as u16 | u16::from(more)).to_be_bytes());
        p.extend(id.to_be_bytes());
        p.extend_from_slice(part);
        ip6(s, d, FRAG6, hops, &p)
    };
    (
        frag(0, true, &l4[..first]),
        frag(first, false, &l4[first..]),
    )
}

/// What is wrong with the checksums of frame `f` (IP header, TCP/UDP, ICMP and the quoted
/// IPv4 header of an ICMP error): each verified on its own from the bytes, so a failing row
/// says which one the program got wrong. Fragments are not looked into past the IP header;
/// a frame too short for what its headers say is "truncated".
pub fn bad_checksums(f: &[u8]) -> Vec<&'static str> {
    checksums(f).unwrap_or_else(|| vec!["truncated"])
}

fn checksums(f: &[u8]) -> Option<Vec<&'static str>> {
    let mut bad = Vec::new();
    let ip = f.get(14..)?;
    let (src, dst, proto, l4) = if ip.first()? >> 4 == 4 {
        let hl = usize::from(ip[0] & 15) * 4;
        if csum(ip.get(..hl.max(20))?) != 0 {
            bad.push("IPv4 header");
        }
        if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
            return Some(bad);
        }
        let tot = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let a = |i: usize| IpAddr::from([ip[i], ip[i + 1], ip[i + 2], ip[i + 3]]);
        (a(12), a(16), ip[9], ip.get(hl..tot)?)
    } else {
        let plen = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
        let l4 = ip.get(40..40 + plen)?;
        let a = |i: usize| {
            let mut o = [0u8; 16];
            o.copy_from_slice(&ip[i..i + 16]);
            IpAddr::from(o)
        };
        (a(8), a(24), ip[6], l4)
    };
    match proto {
        TCP | UDP => {
            let skip = proto == UDP && l4.get(6..8)? == [0, 0];
            if !skip && fold(sum(l4, pseudo(src, dst, proto, l4.len()))) != 0 {
                bad.push("TCP/UDP");
            }
        }
        ICMP => {
            if csum(l4) != 0 {
                bad.push("ICMP");
            }
            let q = l4.get(8..)?;
            if q.len() >= 20 && csum(q.get(..usize::from(q[0] & 15) * 4)?) != 0 {
                bad.push("quoted IPv4 header");
            }
        }
        ICMP6 if fold(sum(l4, pseudo(src, dst, ICMP6, l4.len()))) != 0 => bad.push("ICMPv6"),
        _ => {}
    }
    Some(bad)
}

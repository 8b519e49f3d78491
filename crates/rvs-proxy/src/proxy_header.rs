//! PROXY protocol headers, versions 1 and 2 (HAProxy's `proxy-protocol.txt`).
//!
//! A real server behind a userspace proxy sees the proxy's address as the client's; with the
//! PROXY protocol the proxy first sends a header that carries the original client address
//! and the virtual address it connected to. [`encode`] writes it for TCP (v1 text line or v2
//! binary block), [`encode_udp_v2`] for UDP (v2 with the DGRAM transport; v1 has none).
//!
//! Both addresses of a header are of one family. IPv4-mapped IPv6 addresses count as IPv4
//! (a dual-stack socket reports IPv4 peers that way), so two IPv4 endpoints give `TCP4`; an
//! IPv4 client of an IPv6 virtual service is sent mapped (`::ffff:a.b.c.d`) with `TCP6`.
//!
//! [`decode`] reads a header from the start of a buffer, the way a real server does: it
//! returns `Ok(None)` while the bytes so far could still be the start of a valid header, and
//! rejects anything else without panicking.
//!
//! ```
//! use rvs_proxy::proxy_header::{decode, encode, Version};
//! let (src, dst) = ("192.0.2.7:40000".parse().unwrap(), "198.51.100.1:443".parse().unwrap());
//! let mut out = Vec::new();
//! encode(Version::V1, src, dst, &mut out);
//! assert_eq!(out, b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\n");
//! let (header, used) = decode(&out).unwrap().unwrap();
//! assert_eq!(used, out.len());
//! assert_eq!(header.addrs.unwrap().src, src);
//! ```
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// The 12 bytes that start every v2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Longest v1 line, CRLF included.
pub const V1_MAX: usize = 107;

/// Fixed part of a v2 header: signature, version/command, family/transport, length.
const V2_FIXED: usize = 16;

/// Protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Human-readable line (`PROXY TCP4 …\r\n`), TCP only.
    V1,
    /// Binary block.
    V2,
}

/// Transport of the proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP (`TCP4`/`TCP6`, v2 `STREAM`).
    Stream,
    /// UDP (v2 `DGRAM`).
    Datagram,
}

/// The addresses a header carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addrs {
    /// Transport of the original connection.
    pub transport: Transport,
    /// The original client.
    pub src: SocketAddr,
    /// The address the client connected to.
    pub dst: SocketAddr,
}

/// A decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The version it was written in.
    pub version: Version,
    /// v2 `LOCAL` (a connection of the proxy's own, e.g. a health check): use the real
    /// endpoints. Always false for v1.
    pub local: bool,
    /// `None` for `LOCAL`, v1 `UNKNOWN`, v2 `UNSPEC`, and v2 `UNIX` addresses (which a
    /// `SocketAddr` cannot hold): the receiver uses the connection's own endpoints.
    pub addrs: Option<Addrs>,
}

/// Why bytes are not a PROXY header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Neither signature.
    #[error("not a PROXY protocol header")]
    NotProxy,
    /// No CRLF within the first 107 bytes.
    #[error("PROXY v1 line longer than {V1_MAX} bytes")]
    V1TooLong,
    /// A v1 line that does not follow the grammar.
    #[error("malformed PROXY v1 line")]
    V1Syntax,
    /// A v2 version nibble other than 2.
    #[error("unsupported PROXY v2 version {0}")]
    V2Version(u8),
    /// A v2 command other than LOCAL (0) or PROXY (1).
    #[error("unknown PROXY v2 command {0}")]
    V2Command(u8),
    /// A v2 family/transport byte the specification does not define.
    #[error("unknown PROXY v2 family/transport {0:#04x}")]
    V2Family(u8),
    /// A v2 address block shorter than its family needs.
    #[error("PROXY v2 address block of {len} bytes, {need} needed")]
    V2Short {
        /// Length announced by the header.
        len: u16,
        /// Length the family needs.
        need: u16,
    },
}

/// Writes a TCP header for the connection `src` → `dst` in version `v` to `out`.
pub fn encode(v: Version, src: SocketAddr, dst: SocketAddr, out: &mut Vec<u8>) {
    match v {
        Version::V1 => encode_v1(src, dst, out),
        Version::V2 => encode_v2(Transport::Stream, src, dst, out),
    }
}

/// Writes a v2 header with the DGRAM transport (UDP services) to `out`.
pub fn encode_udp_v2(src: SocketAddr, dst: SocketAddr, out: &mut Vec<u8>) {
    encode_v2(Transport::Datagram, src, dst, out);
}

/// Both endpoints in one family.
enum Pair {
    V4(SocketAddrV4, SocketAddrV4),
    V6(SocketAddrV6, SocketAddrV6),
}

/// IPv4-mapped IPv6 counts as IPv4.
fn canonical(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, v6.port())),
            None => a,
        },
        SocketAddr::V4(_) => a,
    }
}

fn as_v6(a: SocketAddr) -> SocketAddrV6 {
    match a {
        SocketAddr::V4(v4) => SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0),
        SocketAddr::V6(v6) => SocketAddrV6::new(*v6.ip(), v6.port(), 0, 0),
    }
}

fn pair(src: SocketAddr, dst: SocketAddr) -> Pair {
    match (canonical(src), canonical(dst)) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => Pair::V4(s, d),
        (s, d) => Pair::V6(as_v6(s), as_v6(d)),
    }
}

fn encode_v1(src: SocketAddr, dst: SocketAddr, out: &mut Vec<u8>) {
    // Writing to a Vec cannot fail.
    let _ = match pair(src, dst) {
        Pair::V4(s, d) => write!(
            out,
            "PROXY TCP4 {} {} {} {}\r\n",
            s.ip(),
            d.ip(),
            s.port(),
            d.port()
        ),
        Pair::V6(s, d) => write!(
            out,
            "PROXY TCP6 {} {} {} {}\r\n",
            s.ip(),
            d.ip(),
            s.port(),
            d.port()
        ),
    };
}

fn encode_v2(t: Transport, src: SocketAddr, dst: SocketAddr, out: &mut Vec<u8>) {
    let proto = match t {
        Transport::Stream => 0x1,
        Transport::Datagram => 0x2,
    };
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21); // version 2, PROXY
    match pair(src, dst) {
        Pair::V4(s, d) => {
            out.extend_from_slice(&[0x10 | proto, 0, 12]);
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
        Pair::V6(s, d) => {
            out.extend_from_slice(&[0x20 | proto, 0, 36]);
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
    }
}

/// Reads a header at the start of `buf`: `Ok(Some((header, bytes used)))`, `Ok(None)` when
/// more bytes are needed, or why the bytes cannot be a header. v2 TLVs are skipped.
pub fn decode(buf: &[u8]) -> Result<Option<(Header, usize)>, Error> {
    if buf.is_empty() {
        return Ok(None);
    }
    if is_prefix(buf, &V2_SIGNATURE) {
        return decode_v2(buf);
    }
    if is_prefix(buf, b"PROXY ") {
        return decode_v1(buf);
    }
    Err(Error::NotProxy)
}

/// `buf` and `sig` agree on their common length.
fn is_prefix(buf: &[u8], sig: &[u8]) -> bool {
    let n = buf.len().min(sig.len());
    buf[..n] == sig[..n]
}

fn decode_v1(buf: &[u8]) -> Result<Option<(Header, usize)>, Error> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        // Only printable ASCII (and a final CR) can precede the CRLF.
        let last = window.len().saturating_sub(1);
        let fits = |(i, &b): (usize, &u8)| printable(b) || (b == b'\r' && i == last);
        if !window.iter().enumerate().all(fits) {
            return Err(Error::V1Syntax);
        }
        return if buf.len() >= V1_MAX {
            Err(Error::V1TooLong)
        } else {
            Ok(None)
        };
    };
    let line = match lf.checked_sub(1).map(|cr| (cr, window[cr])) {
        Some((cr, b'\r')) => &window[..cr],
        _ => return Err(Error::V1Syntax),
    };
    if !line.iter().all(|&b| printable(b)) {
        return Err(Error::V1Syntax);
    }
    let line = std::str::from_utf8(line).map_err(|_| Error::V1Syntax)?;
    let addrs = parse_v1(line).ok_or(Error::V1Syntax)?;
    let header = Header {
        version: Version::V1,
        local: false,
        addrs,
    };
    Ok(Some((header, lf + 1)))
}

fn printable(b: u8) -> bool {
    (0x20..0x7f).contains(&b)
}

/// The line without CRLF; `Some(None)` for UNKNOWN.
fn parse_v1(line: &str) -> Option<Option<Addrs>> {
    let rest = line.strip_prefix("PROXY ")?;
    if rest == "UNKNOWN" || rest.starts_with("UNKNOWN ") {
        return Some(None);
    }
    let mut words = rest.split(' ');
    let proto = words.next()?;
    let (s, d, sp, dp) = (words.next()?, words.next()?, words.next()?, words.next()?);
    if words.next().is_some() {
        return None;
    }
    let (src, dst): (IpAddr, IpAddr) = match proto {
        "TCP4" => (
            s.parse::<Ipv4Addr>().ok()?.into(),
            d.parse::<Ipv4Addr>().ok()?.into(),
        ),
        "TCP6" => (
            s.parse::<Ipv6Addr>().ok()?.into(),
            d.parse::<Ipv6Addr>().ok()?.into(),
        ),
        _ => return None,
    };
    Some(Some(Addrs {
        transport: Transport::Stream,
        src: SocketAddr::new(src, port(sp)?),
        dst: SocketAddr::new(dst, port(dp)?),
    }))
}

/// A decimal port: digits only, no leading zero, at most 65535.
fn port(s: &str) -> Option<u16> {
    let digits = !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

fn decode_v2(buf: &[u8]) -> Result<Option<(Header, usize)>, Error> {
    if buf.len() < V2_FIXED {
        return Ok(None);
    }
    let (ver_cmd, fam) = (buf[12], buf[13]);
    if ver_cmd >> 4 != 2 {
        return Err(Error::V2Version(ver_cmd >> 4));
    }
    let local = match ver_cmd & 0xf {
        0 => true,
        1 => false,
        c => return Err(Error::V2Command(c)),
    };
    let len = u16::from_be_bytes([buf[14], buf[15]]);
    // LOCAL ignores the family; PROXY must name a defined one (checked before waiting for
    // the rest, so garbage is refused early).
    let need: u16 = match fam {
        _ if local => 0,
        0x00 => 0,
        0x11 | 0x12 => 12,
        0x21 | 0x22 => 36,
        0x31 | 0x32 => 216,
        _ => return Err(Error::V2Family(fam)),
    };
    if len < need {
        return Err(Error::V2Short { len, need });
    }
    let total = V2_FIXED + usize::from(len);
    let Some(body) = buf.get(V2_FIXED..total) else {
        return Ok(None);
    };
    let addrs = if local { None } else { v2_addrs(fam, body) };
    let header = Header {
        version: Version::V2,
        local,
        addrs,
    };
    Ok(Some((header, total)))
}

/// Addresses of a v2 block whose length was checked against the family.
fn v2_addrs(fam: u8, body: &[u8]) -> Option<Addrs> {
    let transport = if fam & 0xf == 2 {
        Transport::Datagram
    } else {
        Transport::Stream
    };
    let port = |at: usize| Some(u16::from_be_bytes(body.get(at..at + 2)?.try_into().ok()?));
    let (src, dst): (IpAddr, IpAddr) = match fam >> 4 {
        1 => {
            let s: [u8; 4] = body.get(0..4)?.try_into().ok()?;
            let d: [u8; 4] = body.get(4..8)?.try_into().ok()?;
            (Ipv4Addr::from(s).into(), Ipv4Addr::from(d).into())
        }
        2 => {
            let s: [u8; 16] = body.get(0..16)?.try_into().ok()?;
            let d: [u8; 16] = body.get(16..32)?.try_into().ok()?;
            (Ipv6Addr::from(s).into(), Ipv6Addr::from(d).into())
        }
        _ => return None,
    };
    let ports_at = if fam >> 4 == 1 { 8 } else { 32 };
    Some(Addrs {
        transport,
        src: SocketAddr::new(src, port(ports_at)?),
        dst: SocketAddr::new(dst, port(ports_at + 2)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn enc(v: Version, src: &str, dst: &str) -> Vec<u8> {
        let mut out = Vec::new();
        encode(v, sa(src), sa(dst), &mut out);
        out
    }

    fn addrs_of(buf: &[u8]) -> Addrs {
        let (h, used) = decode(buf).unwrap().unwrap();
        assert_eq!(used, buf.len());
        h.addrs.unwrap()
    }

    #[test]
    fn v1_lines_are_exact() {
        let v4 = enc(Version::V1, "192.168.0.1:56324", "192.168.0.11:443");
        assert_eq!(v4, b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
        let v6 = enc(Version::V1, "[2001:db8::7]:1", "[2001:db8::1]:65535");
        assert_eq!(v6, b"PROXY TCP6 2001:db8::7 2001:db8::1 1 65535\r\n");
        // An IPv4 client of an IPv6 virtual service: the client is mapped.
        let mixed = enc(Version::V1, "192.0.2.7:40000", "[2001:db8::1]:80");
        assert_eq!(
            mixed,
            b"PROXY TCP6 ::ffff:192.0.2.7 2001:db8::1 40000 80\r\n"
        );
        // Both endpoints IPv4-mapped (a dual-stack socket): plain TCP4.
        let dual = enc(Version::V1, "[::ffff:192.0.2.7]:5", "[::ffff:10.0.0.1]:80");
        assert_eq!(dual, b"PROXY TCP4 192.0.2.7 10.0.0.1 5 80\r\n");
        let longest = enc(
            Version::V1,
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
        );
        // The specification's worst case for TCP6: 104 bytes.
        assert_eq!(longest.len(), 104);
    }

    #[test]
    fn v2_blocks_are_exact() {
        let b = enc(Version::V2, "172.19.0.1:42578", "172.19.0.3:80");
        let mut want = V2_SIGNATURE.to_vec();
        want.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c, 172, 19, 0, 1, 172, 19, 0, 3]);
        want.extend_from_slice(&[0xa6, 0x52, 0x00, 0x50]);
        assert_eq!(b, want);
        let mut u = Vec::new();
        encode_udp_v2(sa("[2001:db8::7]:53"), sa("[2001:db8::1]:5353"), &mut u);
        assert_eq!(&u[12..16], &[0x21, 0x22, 0x00, 36]);
        assert_eq!(u.len(), 16 + 36);
        let src: Ipv6Addr = "2001:db8::7".parse().unwrap();
        assert_eq!(&u[16..32], &src.octets());
        assert_eq!(&u[48..52], &[0, 53, 0x14, 0xe9]);
    }

    #[test]
    fn round_trips_for_every_family_mix() {
        let cases = [
            (
                "10.1.2.3:1234",
                "10.9.8.7:80",
                "10.1.2.3:1234",
                "10.9.8.7:80",
            ),
            (
                "[2001:db8::7]:1234",
                "[2001:db8::1]:443",
                "[2001:db8::7]:1234",
                "[2001:db8::1]:443",
            ),
            (
                "10.1.2.3:1234",
                "[2001:db8::1]:443",
                "[::ffff:10.1.2.3]:1234",
                "[2001:db8::1]:443",
            ),
            (
                "[2001:db8::7]:9",
                "10.9.8.7:80",
                "[2001:db8::7]:9",
                "[::ffff:10.9.8.7]:80",
            ),
            (
                "[::ffff:10.1.2.3]:1",
                "[::ffff:10.9.8.7]:2",
                "10.1.2.3:1",
                "10.9.8.7:2",
            ),
        ];
        for (s, d, ws, wd) in cases {
            for v in [Version::V1, Version::V2] {
                let a = addrs_of(&enc(v, s, d));
                assert_eq!(
                    (a.src, a.dst, a.transport),
                    (sa(ws), sa(wd), Transport::Stream),
                    "{v:?} {s} {d}"
                );
            }
            let mut u = Vec::new();
            encode_udp_v2(sa(s), sa(d), &mut u);
            let a = addrs_of(&u);
            assert_eq!(
                (a.src, a.dst, a.transport),
                (sa(ws), sa(wd), Transport::Datagram)
            );
        }
    }

    #[test]
    fn waits_for_the_whole_header_and_reports_its_length() {
        for v in [Version::V1, Version::V2] {
            let h = enc(v, "[2001:db8::7]:1234", "10.0.0.1:80");
            for cut in 0..h.len() {
                assert_eq!(decode(&h[..cut]), Ok(None), "{v:?} cut at {cut}");
            }
            let mut with_data = h.clone();
            with_data.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            let (_, used) = decode(&with_data).unwrap().unwrap();
            assert_eq!(used, h.len());
        }
    }

    #[test]
    fn local_unknown_unspec_and_tlvs() {
        let (h, n) = decode(b"PROXY UNKNOWN\r\nxyz").unwrap().unwrap();
        assert_eq!((h.addrs, n), (None, 15));
        let (h, _) = decode(b"PROXY UNKNOWN ffff:f...f:ffff 1.2.3.4 1 2\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.addrs, None);
        // LOCAL with any family (ignored), and a length that covers TLVs.
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x77, 0x00, 0x03, 1, 2, 3]);
        let (h, n) = decode(&local).unwrap().unwrap();
        assert!(h.local && h.addrs.is_none() && n == local.len());
        let mut unspec = V2_SIGNATURE.to_vec();
        unspec.extend_from_slice(&[0x21, 0x00, 0x00, 0x00]);
        assert_eq!(decode(&unspec).unwrap().unwrap().0.addrs, None);
        // A TCP4 block followed by a TLV (type 0x04 NOOP, length 2).
        let mut tlv = enc(Version::V2, "1.2.3.4:5", "6.7.8.9:10");
        tlv[15] = 12 + 5;
        tlv.extend_from_slice(&[0x04, 0x00, 0x02, 0xaa, 0xbb]);
        let (h, n) = decode(&tlv).unwrap().unwrap();
        assert_eq!((h.addrs.unwrap().src, n), (sa("1.2.3.4:5"), tlv.len()));
        // UNIX addresses: accepted, no IP addresses to report.
        let mut unix = V2_SIGNATURE.to_vec();
        unix.extend_from_slice(&[0x21, 0x31, 0x00, 216]);
        unix.resize(16 + 216, b'/');
        assert_eq!(decode(&unix).unwrap().unwrap().0.addrs, None);
    }

    #[test]
    fn rejects_malformed_headers() {
        let bad_v1: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\n",
            b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
            b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4\x005.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n",
        ];
        for b in bad_v1 {
            assert!(decode(b).is_err(), "{:?}", String::from_utf8_lossy(b));
        }
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(V1_MAX, b'x');
        assert_eq!(decode(&long), Err(Error::V1TooLong));
        long.truncate(V1_MAX - 1);
        assert_eq!(decode(&long), Ok(None));

        let good = enc(Version::V2, "1.2.3.4:5", "6.7.8.9:10");
        let with = |at: usize, b: u8| {
            let mut v = good.clone();
            v[at] = b;
            decode(&v)
        };
        assert_eq!(with(12, 0x11), Err(Error::V2Version(1)));
        assert_eq!(with(12, 0x22), Err(Error::V2Command(2)));
        assert_eq!(with(13, 0x13), Err(Error::V2Family(0x13)));
        assert_eq!(with(13, 0x21), Err(Error::V2Short { len: 12, need: 36 }));
        assert_eq!(with(15, 11), Err(Error::V2Short { len: 11, need: 12 }));
        assert_eq!(with(3, b'x'), Err(Error::NotProxy));
        // Garbage after a valid fixed part is refused before the body arrives.
        assert_eq!(decode(&with_fixed(0x21, 0x99)), Err(Error::V2Family(0x99)));
    }

    fn with_fixed(ver_cmd: u8, fam: u8) -> Vec<u8> {
        let mut v = V2_SIGNATURE.to_vec();
        v.extend_from_slice(&[ver_cmd, fam, 0xff, 0xff]);
        v
    }

    /// xorshift64*: a fixed-seed generator, so a failure replays.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn addr(&mut self) -> SocketAddr {
            let port = self.next() as u16;
            match self.below(3) {
                0 => SocketAddr::new(Ipv4Addr::from(self.next() as u32).into(), port),
                1 => SocketAddr::new(
                    Ipv6Addr::from(u128::from(self.next()) << 64 | u128::from(self.next())).into(),
                    port,
                ),
                _ => SocketAddr::new(
                    Ipv4Addr::from(self.next() as u32).to_ipv6_mapped().into(),
                    port,
                ),
            }
        }
    }

    /// What decode promises for any input: no panic, a length within the input, and
    /// `None` only for inputs shorter than the longest header.
    fn check_any(buf: &[u8]) {
        match decode(buf) {
            Ok(Some((_, used))) => assert!(used > 0 && used <= buf.len()),
            Ok(None) => assert!(buf.len() < V2_FIXED + 65535),
            Err(_) => {}
        }
    }

    #[test]
    fn random_addresses_round_trip() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5_000 {
            let (s, d) = (rng.addr(), rng.addr());
            let want = match pair(s, d) {
                Pair::V4(a, b) => (SocketAddr::V4(a), SocketAddr::V4(b)),
                Pair::V6(a, b) => (SocketAddr::V6(a), SocketAddr::V6(b)),
            };
            for v in [Version::V1, Version::V2] {
                let mut out = Vec::new();
                encode(v, s, d, &mut out);
                assert!(v == Version::V2 || out.len() <= V1_MAX);
                let a = addrs_of(&out);
                assert_eq!((a.src, a.dst), want, "{v:?} {s} {d}");
                assert_eq!(canonical(a.src), canonical(s));
            }
        }
    }

    #[test]
    fn fuzz_never_panics() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut buf = Vec::new();
        for _ in 0..200_000 {
            buf.clear();
            let len = rng.below(140);
            buf.extend((0..len).map(|_| rng.next() as u8));
            check_any(&buf);
        }
        // Mutations of valid headers reach much deeper into the parsers.
        for i in 0..200_000 {
            buf.clear();
            let v = if i % 2 == 0 { Version::V1 } else { Version::V2 };
            encode(v, rng.addr(), rng.addr(), &mut buf);
            for _ in 0..=rng.below(3) {
                match rng.below(4) {
                    0 | 1 if buf.is_empty() => {}
                    0 => {
                        let at = rng.below(buf.len());
                        buf[at] = rng.next() as u8;
                    }
                    1 => {
                        let at = rng.below(buf.len());
                        buf[at] = b" .:0123456789abcdef\r\n"[rng.below(21)];
                    }
                    2 => buf.truncate(rng.below(buf.len() + 1)),
                    _ => buf.extend((0..rng.below(8)).map(|_| rng.next() as u8)),
                }
            }
            check_any(&buf);
        }
    }
}

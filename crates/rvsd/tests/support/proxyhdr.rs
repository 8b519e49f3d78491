//! A small, strict reader of the PROXY protocol header (haproxy's proxy-protocol.txt,
//! versions 1 and 2) as a real server sees it at the start of a relayed connection.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The version 2 signature.
pub const V2_SIG: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// What a PROXY header said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyHeader {
    /// 1 (text) or 2 (binary)
    pub version: u8,
    /// `TCP4`, `TCP6`, `UDP4`, `UDP6`, `UNKNOWN` (v1) or `LOCAL` (v2 LOCAL command)
    pub transport: String,
    /// the client (source) address, when the header carries addresses
    pub src: Option<SocketAddr>,
    /// the address the client connected to
    pub dst: Option<SocketAddr>,
    /// bytes of v2 TLVs after the addresses
    pub tlv_len: usize,
}

fn read_exact(r: &mut impl Read, n: usize) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; n];
    r.read_exact(&mut buf)
        .map_err(|e| format!("header cut short: {e}"))?;
    Ok(buf)
}

/// Read one header from the start of a stream (the bytes after it stay unread).
pub fn read_header(r: &mut impl Read) -> Result<ProxyHeader, String> {
    // both versions are at least 16 bytes long; 12 decide which one it is
    let start = read_exact(r, 12)?;
    if start == V2_SIG {
        let fixed = read_exact(r, 4)?;
        let len = usize::from(u16::from_be_bytes([fixed[2], fixed[3]]));
        let rest = read_exact(r, len)?;
        return parse_v2(fixed[0], fixed[1], &rest);
    }
    if !start.starts_with(b"PROXY ") {
        return Err(format!(
            "no PROXY header: {:?}",
            String::from_utf8_lossy(&start)
        ));
    }
    let mut line = start;
    while !line.ends_with(b"\r\n") {
        if line.len() >= 107 {
            return Err("v1 line longer than 107 bytes".into());
        }
        line.extend(read_exact(r, 1)?);
    }
    let text = std::str::from_utf8(&line).map_err(|_| "v1 line not ASCII".to_string())?;
    parse_v1(text)
}

/// Parse a whole v1 line (with its CRLF).
pub fn parse_v1(line: &str) -> Result<ProxyHeader, String> {
    let body = line
        .strip_suffix("\r\n")
        .ok_or_else(|| format!("v1 line without CRLF: {line:?}"))?;
    let words: Vec<&str> = body.split(' ').collect();
    let unknown = ProxyHeader {
        version: 1,
        transport: "UNKNOWN".into(),
        src: None,
        dst: None,
        tlv_len: 0,
    };
    match words.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Ok(unknown),
        ["PROXY", fam @ ("TCP4" | "TCP6"), sa, da, sp, dp] => {
            let v6 = *fam == "TCP6";
            let addr = |a: &str| -> Result<IpAddr, String> {
                let ip: IpAddr = a.parse().map_err(|_| format!("bad address {a:?}"))?;
                if ip.is_ipv6() != v6 {
                    return Err(format!("{a} is not a {fam} address"));
                }
                Ok(ip)
            };
            let port = |p: &str| -> Result<u16, String> {
                if p.len() > 1 && p.starts_with('0') {
                    return Err(format!("port with a leading zero: {p:?}"));
                }
                p.parse().map_err(|_| format!("bad port {p:?}"))
            };
            Ok(ProxyHeader {
                version: 1,
                transport: fam.to_string(),
                src: Some(SocketAddr::new(addr(sa)?, port(sp)?)),
                dst: Some(SocketAddr::new(addr(da)?, port(dp)?)),
                tlv_len: 0,
            })
        }
        _ => Err(format!("malformed v1 line {line:?}")),
    }
}

/// Parse a v2 header after its signature: version/command byte, family byte, and the
/// `len` bytes that follow the length field.
pub fn parse_v2(ver_cmd: u8, fam: u8, rest: &[u8]) -> Result<ProxyHeader, String> {
    if ver_cmd >> 4 != 2 {
        return Err(format!("v2 version nibble {:#x}", ver_cmd >> 4));
    }
    let mut h = ProxyHeader {
        version: 2,
        transport: "LOCAL".into(),
        src: None,
        dst: None,
        tlv_len: 0,
    };
    match ver_cmd & 0xf {
        0 => return Ok(h),
        1 => {}
        c => return Err(format!("v2 command {c}")),
    }
    let (v6, alen) = match fam >> 4 {
        1 => (false, 12),
        2 => (true, 36),
        f => return Err(format!("v2 address family {f}")),
    };
    h.transport = match fam & 0xf {
        1 => if v6 { "TCP6" } else { "TCP4" }.into(),
        2 => if v6 { "UDP6" } else { "UDP4" }.into(),
        p => return Err(format!("v2 transport {p}")),
    };
    if rest.len() < alen {
        return Err(format!("v2 length {} below {alen}", rest.len()));
    }
    let (sip, dip, ports) = if v6 {
        let a: [u8; 16] = rest[..16].try_into().unwrap();
        let b: [u8; 16] = rest[16..32].try_into().unwrap();
        (
            IpAddr::V6(Ipv6Addr::from(a)),
            IpAddr::V6(Ipv6Addr::from(b)),
            &rest[32..36],
        )
    } else {
        let a: [u8; 4] = rest[..4].try_into().unwrap();
        let b: [u8; 4] = rest[4..8].try_into().unwrap();
        (
            IpAddr::V4(Ipv4Addr::from(a)),
            IpAddr::V4(Ipv4Addr::from(b)),
            &rest[8..12],
        )
    };
    h.src = Some(SocketAddr::new(
        sip,
        u16::from_be_bytes([ports[0], ports[1]]),
    ));
    h.dst = Some(SocketAddr::new(
        dip,
        u16::from_be_bytes([ports[2], ports[3]]),
    ));
    h.tlv_len = rest.len() - alen;
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_lines() {
        let h = read_header(&mut &b"PROXY TCP4 127.1.2.3 127.0.0.10 40000 80\r\nGET"[..]).unwrap();
        assert_eq!(h.src, Some("127.1.2.3:40000".parse().unwrap()));
        assert_eq!(h.dst, Some("127.0.0.10:80".parse().unwrap()));
        let h = parse_v1("PROXY TCP6 ::1 ::1 5 6\r\n").unwrap();
        assert_eq!((h.transport.as_str(), h.src.unwrap().port()), ("TCP6", 5));
        assert!(parse_v1("PROXY TCP4 ::1 127.0.0.1 1 2\r\n").is_err());
        assert!(parse_v1("PROXY TCP4 127.0.0.1 127.0.0.1 01 2\r\n").is_err());
        assert!(parse_v1("PROXY TCP4 127.0.0.1 127.0.0.1 1 2\n").is_err());
        assert!(read_header(&mut &b"GET / HTTP/1.0\r\n\r\n"[..]).is_err());
    }

    #[test]
    fn v2_headers() {
        let mut raw = V2_SIG.to_vec();
        raw.extend([
            0x21, 0x11, 0, 12, 127, 1, 2, 3, 127, 0, 0, 10, 0x9c, 0x40, 0, 80,
        ]);
        raw.extend(b"payload");
        let mut r = &raw[..];
        let h = read_header(&mut r).unwrap();
        assert_eq!(h.src, Some("127.1.2.3:40000".parse().unwrap()));
        assert_eq!(h.dst, Some("127.0.0.10:80".parse().unwrap()));
        assert_eq!((h.transport.as_str(), h.tlv_len), ("TCP4", 0));
        assert_eq!(r, b"payload");
        let mut local = V2_SIG.to_vec();
        local.extend([0x20, 0x00, 0, 0]);
        assert_eq!(read_header(&mut &local[..]).unwrap().transport, "LOCAL");
        let mut short = V2_SIG.to_vec();
        short.extend([0x21, 0x21, 0, 12]);
        short.extend([0u8; 12]);
        assert!(read_header(&mut &short[..]).is_err());
    }
}

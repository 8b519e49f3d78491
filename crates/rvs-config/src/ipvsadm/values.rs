//! Value parsing as ipvsadm 1.31 does it with the C library: `strtol` numbers that must use the
//! whole word, `atoi`, `inet_aton` (so `10.1` and `0x0a000001` are addresses), `host[:port]`
//! service addresses (`parse_service`), fwmarks and scheduler flags.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rvs_core::model::{svc_flags, Protocol};

/// Name lookups the parser needs for non-numeric input; numeric input never calls them.
pub trait Resolve {
    /// `gethostbyname`: the first IPv4 address of a host name.
    fn host(&self, name: &str) -> Option<Ipv4Addr>;
    /// `getservbyname`: the port of a service name for `tcp`, `udp` or `sctp`.
    fn service(&self, name: &str, proto: &str) -> Option<u16>;
}

/// A resolver that knows no names (every lookup fails).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoResolve;

impl Resolve for NoResolve {
    fn host(&self, _name: &str) -> Option<Ipv4Addr> {
        None
    }
    fn service(&self, _name: &str, _proto: &str) -> Option<u16> {
        None
    }
}

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// `strtol(s, &end, 10)` demanding that the whole word is used (`*end == '\0' && end != s`);
/// `None` also for a value outside `i64` (ERANGE).
pub fn strtol_whole(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let mut i = b.iter().take_while(|&&c| is_c_space(c)).count();
    let neg = match b.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits = &s[i..];
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let v: i64 = digits.parse().ok().or_else(|| {
        // i64::MIN has no positive twin
        (neg && digits.trim_start_matches('0') == "9223372036854775808").then_some(i64::MIN)
    })?;
    Some(if neg { v.wrapping_neg() } else { v })
}

/// ipvsadm's `string_to_number`: a whole-word decimal in `min ..= max`.
pub fn number(s: &str, min: i64, max: i64) -> Option<i64> {
    strtol_whole(s).filter(|v| (min..=max).contains(v))
}

/// C `atoi` (leading blanks, a sign, then digits up to the first non-digit; 0 if none).
pub fn atoi(s: &str) -> i64 {
    let b = s.as_bytes();
    let mut i = b.iter().take_while(|&&c| is_c_space(c)).count();
    let neg = b.get(i) == Some(&b'-');
    if matches!(b.get(i), Some(b'-' | b'+')) {
        i += 1;
    }
    let mut v: i64 = 0;
    for &c in b[i..].iter().take_while(|c| c.is_ascii_digit()) {
        v = v.saturating_mul(10).saturating_add(i64::from(c - b'0'));
    }
    if neg {
        -v
    } else {
        v
    }
}

/// One part of an `inet_aton` address: decimal, octal (`0…`) or hex (`0x…`).
fn aton_part(p: &str) -> Option<u64> {
    if p.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
        (h, 16)
    } else if p.len() > 1 && p.starts_with('0') {
        (&p[1..], 8)
    } else {
        (p, 10)
    };
    // "0x" alone: strtoul stops before the `x`, which then trails the number
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok().or(Some(u64::MAX))
}

/// glibc `inet_aton`: 1 to 4 parts (`a`, `a.b`, `a.b.c`, `a.b.c.d`); anything after a blank
/// is ignored.
pub fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    let s = match s.find(|c: char| c.is_ascii() && is_c_space(c as u8)) {
        Some(i) => &s[..i],
        None => s,
    };
    let parts: Vec<u64> = s.split('.').map(aton_part).collect::<Option<_>>()?;
    let (last, head) = parts.split_last()?;
    if parts.len() > 4 || head.iter().any(|&p| p > 255) {
        return None;
    }
    let room = 32 - 8 * head.len() as u32;
    if room < 64 && *last >= 1u64 << room {
        return None;
    }
    let mut v = *last as u32;
    for (i, &p) in head.iter().enumerate() {
        v |= (p as u32) << (24 - 8 * i as u32);
    }
    Some(Ipv4Addr::from(v))
}

/// An IPv4 address as `parse_service`/`parse_netmask` read it: `inet_aton`, else a host name.
pub fn ipv4_or_host(s: &str, names: &dyn Resolve) -> Option<Ipv4Addr> {
    inet_aton(s).or_else(|| names.host(s))
}

/// What `parse_service` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// the address
    pub addr: IpAddr,
    /// the port, if the word had one
    pub port: Option<u16>,
}

/// ipvsadm's `parse_service`: `host[:port]`, `[v6]:port`, a bare IPv6 literal. `proto` is the
/// protocol known at this point (service names are looked up for it). `None` = rejected.
pub fn host_port(word: &str, proto: Option<Protocol>, names: &dyn Resolve) -> Option<HostPort> {
    if word.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let (addr_text, mut port_text) = match word.strip_prefix('[') {
        Some(inner) => {
            let (a, after) = inner.split_once(']')?;
            (a, Some(after.strip_prefix(':')?))
        }
        None => (word, None),
    };
    let addr = if let Ok(v6) = addr_text.parse::<Ipv6Addr>() {
        IpAddr::V6(v6)
    } else {
        let host = match addr_text.rsplit_once(':') {
            Some((h, p)) => {
                port_text = Some(p);
                h
            }
            // `[10.0.0.1]:80`: the bracketed text has no colon, so the port is lost
            None => {
                port_text = None;
                addr_text
            }
        };
        IpAddr::V4(ipv4_or_host(host, names)?)
    };
    let port = match port_text {
        None => None,
        Some(p) => Some(port_number(p, proto, names)?),
    };
    Some(HostPort { addr, port })
}

fn port_number(p: &str, proto: Option<Protocol>, names: &dyn Resolve) -> Option<u16> {
    if let Some(n) = number(p, 0, 65535) {
        return Some(n as u16);
    }
    let proto = match proto? {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
        Protocol::Ip => return None,
    };
    names.service(p, proto)
}

/// ipvsadm's `parse_fwmark`: 1 … 4294967295.
pub fn fwmark(s: &str) -> Option<u32> {
    strtol_whole(s)
        .filter(|&v| v > 0 && v <= i64::from(u32::MAX))
        .map(|v| v as u32)
}

/// Why a `-b` list was refused (`parse_sched_flags`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlagError {
    /// ``incompatible scheduler flag `X'``
    Incompatible(String),
    /// ``invalid scheduler flag `X'``
    Invalid(String),
    /// the list has no flag at all (`-b ,`): ipvsadm 1.31 crashes on a null pointer
    Empty,
}

/// ipvsadm's `parse_sched_flags` for scheduler `sched` (empty = the default `wlc`).
pub fn sched_flags(sched: &str, list: &str) -> Result<u32, FlagError> {
    let sched = if sched.is_empty() { "wlc" } else { sched };
    let mut flags = 0;
    let mut any = false;
    for flag in list.split(',').filter(|f| !f.is_empty()) {
        any = true;
        let (bit, only) = match flag {
            "flag-1" => (svc_flags::SCHED1, None),
            "flag-2" => (svc_flags::SCHED2, None),
            "flag-3" => (svc_flags::SCHED3, None),
            "sh-fallback" => (svc_flags::SCHED_SH_FALLBACK, Some("sh")),
            "sh-port" => (svc_flags::SCHED_SH_PORT, Some("sh")),
            "mh-fallback" => (svc_flags::SCHED_MH_FALLBACK, Some("mh")),
            "mh-port" => (svc_flags::SCHED_MH_PORT, Some("mh")),
            _ => return Err(FlagError::Invalid(flag.to_string())),
        };
        if only.is_some_and(|s| s != sched) {
            return Err(FlagError::Incompatible(flag.to_string()));
        }
        flags |= bit;
    }
    if any {
        Ok(flags)
    } else {
        Err(FlagError::Empty)
    }
}

/// The first `n` bytes of `s` (C `strncpy` into a fixed buffer), cut on a character boundary.
pub fn truncate(s: &str, n: usize) -> String {
    let mut end = n.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

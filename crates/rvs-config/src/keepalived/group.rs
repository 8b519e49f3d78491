//! `virtual_server_group NAME { … }`: addresses, address ranges and firewall marks that one
//! `virtual_server group NAME` stands for, each member becoming one IPVS service.
//!
//! Members, one per line: `<IP> [<PORT>]`, a range `<IP>-<LAST>` (the last part of the
//! address, decimal for IPv4 and hexadecimal for IPv6) or `<IP>-<IP>`, a block `<IP>/<LEN>`
//! (the network address of the block), and `fwmark <N> [inet|inet6]`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rvs_core::model::Family;

use super::parser::Stmt;
use super::values::{arg, bad, port, uint};
use super::Sink;
use crate::spec::{ConfigError, Loc};

/// Most addresses one range may stand for (a guard against `/8`).
pub const MAX_RANGE: u128 = 65_536;

/// One member line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Member {
    /// `count` consecutive addresses from `first`, all with `port` (0: none given)
    Addr {
        /// the first address
        first: IpAddr,
        /// how many
        count: u32,
        /// the port
        port: u16,
    },
    /// a firewall mark, with the family if given
    Fwmark {
        /// the mark
        mark: u32,
        /// `inet` / `inet6`
        af: Option<Family>,
    },
}

impl Member {
    /// The addresses of an address member.
    pub fn addrs(&self) -> Vec<IpAddr> {
        let Member::Addr { first, count, .. } = self else {
            return Vec::new();
        };
        (0..u128::from(*count))
            .map(|i| match first {
                IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(*a) + i as u32)),
                IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(*a) + i)),
            })
            .collect()
    }
}

/// A group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// where it is declared
    pub loc: Loc,
    /// its members in file order
    pub members: Vec<Member>,
}

/// Every `virtual_server_group` of the file, by name.
pub fn groups(top: &[Stmt], sink: &mut Sink) -> Result<BTreeMap<String, Group>, ConfigError> {
    let mut out: BTreeMap<String, Group> = BTreeMap::new();
    for s in top.iter().filter(|s| s.name() == "virtual_server_group") {
        let name = arg(s, 0, "group name")?;
        if out.contains_key(&name.text) {
            return Err(bad(
                s.name(),
                name,
                "a group of this name is already defined",
            ));
        }
        let mut members = Vec::new();
        for m in s.block.as_deref().unwrap_or(&[]) {
            if m.block.is_some() {
                sink.unknown(&format!("virtual_server_group {}", name.text), m);
                continue;
            }
            members.push(member(m)?);
        }
        out.insert(
            name.text.clone(),
            Group {
                loc: s.kw.loc.clone(),
                members,
            },
        );
    }
    Ok(out)
}

fn member(m: &Stmt) -> Result<Member, ConfigError> {
    if m.name() == "fwmark" {
        let mark = uint(m, 0, 1, u64::from(u32::MAX))? as u32;
        let af = match m.args.get(1) {
            None => None,
            Some(t) if t.text == "inet" => Some(Family::V4),
            Some(t) if t.text == "inet6" => Some(Family::V6),
            Some(t) => return Err(bad("fwmark", t, "the family must be inet or inet6")),
        };
        return Ok(Member::Fwmark { mark, af });
    }
    let (first, count) = range(&m.kw.text).ok_or_else(|| {
        bad(
            "virtual_server_group member",
            &m.kw,
            "not an address, range or block",
        )
    })?;
    let port = match m.args.first() {
        Some(t) => port("virtual_server_group member port", t)?,
        None => 0,
    };
    if let Some(extra) = m.args.get(1) {
        return Err(bad(
            "virtual_server_group member",
            extra,
            "unexpected word after the port",
        ));
    }
    Ok(Member::Addr { first, count, port })
}

/// `a`, `a-last`, `a-b` or `a/len` as the first address and a count.
fn range(text: &str) -> Option<(IpAddr, u32)> {
    if let Some((a, len)) = text.split_once('/') {
        let a: IpAddr = a.parse().ok()?;
        let bits = if a.is_ipv4() { 32 } else { 128 };
        let len: u32 = len.parse().ok().filter(|l| *l <= bits)?;
        let size = 1u128.checked_shl(bits - len).unwrap_or(u128::MAX);
        let host_bits = size - 1;
        if size > MAX_RANGE || to_u128(&a) & host_bits != 0 {
            return None;
        }
        return Some((a, size as u32));
    }
    let Some((a, end)) = text.split_once('-') else {
        return Some((text.parse().ok()?, 1));
    };
    let a: IpAddr = a.parse().ok()?;
    let last = match (&a, end.parse::<IpAddr>()) {
        (IpAddr::V4(_), Ok(e @ IpAddr::V4(_))) | (IpAddr::V6(_), Ok(e @ IpAddr::V6(_))) => {
            to_u128(&e)
        }
        (IpAddr::V4(v), Err(_)) => {
            let n: u8 = end.parse().ok()?;
            u128::from((u32::from(*v) & !0xff) | u32::from(n))
        }
        (IpAddr::V6(v), Err(_)) => {
            let n = u16::from_str_radix(end, 16).ok()?;
            (u128::from(*v) & !0xffff) | u128::from(n)
        }
        _ => return None,
    };
    let first = to_u128(&a);
    if last < first || last - first >= MAX_RANGE {
        return None;
    }
    Some((a, (last - first + 1) as u32))
}

fn to_u128(a: &IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(*v)),
        IpAddr::V6(v) => u128::from(*v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_and_blocks() {
        assert_eq!(range("10.0.0.1"), Some((ip("10.0.0.1"), 1)));
        assert_eq!(range("10.0.0.1-3"), Some((ip("10.0.0.1"), 3)));
        assert_eq!(range("10.0.0.250-10.0.1.2"), Some((ip("10.0.0.250"), 9)));
        assert_eq!(range("2001:db8::a-c"), Some((ip("2001:db8::a"), 3)));
        assert_eq!(range("10.0.0.0/30"), Some((ip("10.0.0.0"), 4)));
        for bad in [
            "10.0.0.5-3",
            "10.0.0.1/30",
            "10.0.0.0/8",
            "x",
            "10.0.0.1-2001:db8::1",
        ] {
            assert_eq!(range(bad), None, "{bad}");
        }
        let m = Member::Addr {
            first: ip("10.0.0.254"),
            count: 3,
            port: 80,
        };
        assert_eq!(
            m.addrs(),
            vec![ip("10.0.0.254"), ip("10.0.0.255"), ip("10.0.1.0")]
        );
    }
}

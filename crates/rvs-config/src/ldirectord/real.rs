//! `real =` / `real6 =` lines and `fallback =` servers: addresses, ranges, ports, the
//! forwarding method, weight, request/receive pair and thresholds.

use std::net::{IpAddr, Ipv4Addr};

use rvs_core::model::{DestConf, Forward};

use super::line::{Ctx, Val};
use crate::spec::{ConfigError, Loc};

/// ldirectord's services and the ports they default from (`ld_port_to_service`).
pub(crate) const SERVICES: [(&str, u16); 21] = [
    ("ftp", 21),
    ("smtp", 25),
    ("dns", 53),
    ("http", 80),
    ("pop", 110),
    ("nntp", 119),
    ("imap", 143),
    ("ldap", 389),
    ("https", 443),
    ("submission", 587),
    ("ldaps", 636),
    ("imaps", 993),
    ("pops", 995),
    ("oracle", 1521),
    ("radius", 1812),
    ("http_proxy", 3128),
    ("mysql", 3306),
    ("sip", 5060),
    ("pgsql", 5432),
    ("none", 0),
    ("simpletcp", 0),
];

/// The most servers one range may stand for.
const MAX_RANGE: u32 = 65_536;

/// Common names of the services file that are not ldirectord service names (ldirectord
/// resolves port names with `getservbyname`; rvs-config reads no other file).
const PORT_NAMES: [(&str, u16); 11] = [
    ("ssh", 22),
    ("telnet", 23),
    ("domain", 53),
    ("www", 80),
    ("pop3", 110),
    ("imap2", 143),
    ("pop3s", 995),
    ("ms-sql-s", 1433),
    ("postgresql", 5432),
    ("http-alt", 8080),
    ("webcache", 8080),
];

/// A port: a number 0–65535, one of ldirectord's service names or a common name of the
/// services file (`domain`, `www`, `ssh`, …).
pub(crate) fn port(ctx: &Ctx, v: &Val, what: &str) -> Result<u16, ConfigError> {
    if let Ok(n) = v.text.parse::<u16>() {
        return Ok(n);
    }
    if let Some((_, p)) = PORT_NAMES.iter().find(|(n, _)| *n == v.text) {
        return Ok(*p);
    }
    match SERVICES.iter().find(|(n, p)| *n == v.text && *p != 0) {
        Some((_, p)) => Ok(*p),
        None => Err(ctx.err(
            v.col,
            format!(
                "{what}: invalid port \"{}\" (a number, or a service name such as http)",
                v.text
            ),
        )),
    }
}

/// A numeric address of the family the section asks for (`v6`: in brackets).
pub(crate) fn addr(ctx: &Ctx, v: &Val, v6: bool, what: &str) -> Result<IpAddr, ConfigError> {
    let bare = v
        .text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(v.text);
    match bare.parse::<IpAddr>() {
        Ok(a) if a.is_ipv6() == v6 => Ok(a),
        Ok(_) if v6 => Err(ctx.err(v.col, format!("{what}: {} is not an IPv6 address", v.text))),
        Ok(_) => Err(ctx.err(
            v.col,
            format!(
                "{what}: {} is an IPv6 address; use the \"6\" form of the directive",
                v.text
            ),
        )),
        Err(_) => Err(ctx.err(
            v.col,
            format!(
                "{what}: \"{}\" is not a numeric address (rvs does not resolve host names)",
                v.text
            ),
        )),
    }
}

/// Split `host[:port]` (IPv6 in brackets) into the host and the optional port.
pub(crate) fn split_host_port<'a>(v: &Val<'a>) -> (Val<'a>, Option<Val<'a>>) {
    let t = v.text;
    let cut = if t.starts_with('[') {
        t.find(']')
            .map(|e| e + 1)
            .filter(|&e| t[e..].starts_with(':'))
    } else if t.parse::<IpAddr>().is_ok() {
        None
    } else {
        t.rfind(':')
    };
    match cut {
        Some(i) => (v.sub(0, &t[..i]), Some(v.sub(i + 1, &t[i + 1..]))),
        None => (*v, None),
    }
}

pub(crate) fn forward(ctx: &Ctx, v: &Val) -> Result<Forward, ConfigError> {
    match v.text {
        "gate" => Ok(Forward::Route),
        "masq" => Ok(Forward::Masq),
        "ipip" => Ok(Forward::Tunnel),
        w => Err(ctx.err(
            v.col,
            format!("forward method must be gate, masq or ipip, not \"{w}\""),
        )),
    }
}

/// One server of a `real` line, its port as configured (the virtual port is applied later).
#[derive(Clone, Debug)]
pub(crate) struct Real {
    pub loc: Loc,
    pub dest: DestConf,
    /// the per-server `"request", "receive"` pair
    pub pair: Option<(String, String)>,
}

/// Words of a real line: whitespace-separated, a `"…"` string being one word (its quotes
/// kept), a comma between the two strings of the pair dropped.
fn words<'a>(v: &Val<'a>) -> Vec<Val<'a>> {
    let t = v.text;
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        let rest = &t[i..];
        let skip = rest.len() - rest.trim_start_matches([' ', '\t', ',']).len();
        i += skip;
        if i >= t.len() {
            break;
        }
        let end = if t[i..].starts_with('"') {
            t[i + 1..].find('"').map_or(t.len(), |e| i + e + 2)
        } else {
            t[i..].find([' ', '\t']).map_or(t.len(), |e| i + e)
        };
        out.push(v.sub(i, &t[i..end]));
        i = end;
    }
    out
}

/// `real = addr[->addr][:port] gate|masq|ipip [weight] ["request", "receive"] [l:N] [u:N]`.
pub(crate) fn parse_real(ctx: &Ctx, v: &Val, v6: bool) -> Result<Vec<Real>, ConfigError> {
    let w = words(v);
    let Some(first) = w.first() else {
        return Err(ctx.err(v.col, "real: an address is required"));
    };
    let (hosts, port_v) = split_host_port(first);
    let port = port_v.map_or(Ok(0), |p| port(ctx, &p, "real"))?;
    let (lo, hi) = match hosts.text.split_once("->") {
        Some((a, b)) => (hosts.sub(0, a), Some(hosts.sub(a.len() + 2, b))),
        None => (hosts, None),
    };
    let lo_a = addr(ctx, &lo, v6, "real")?;
    let Some(fwd_v) = w.get(1) else {
        return Err(ctx.err(
            first.col,
            "real: the forward method (gate, masq or ipip) is missing",
        ));
    };
    let mut dest = DestConf::new(lo_a, port).fwd(forward(ctx, fwd_v)?);
    let mut rest = &w[2..];
    if let Some(n) = rest
        .first()
        .filter(|x| x.text.starts_with(|c: char| c.is_ascii_digit()))
    {
        dest = dest.weight(n.number(ctx, "real weight", 0, 65535)? as i32);
        rest = &rest[1..];
    }
    let mut pair = None;
    if let Some(req) = rest.first().filter(|x| x.text.starts_with('"')) {
        let Some(rcv) = rest.get(1).filter(|x| x.text.starts_with('"')) else {
            return Err(ctx.err(req.col, "real: a request string needs a receive string"));
        };
        // `add_real_server` takes both strings as they are, empty ones too
        let (request, receive) = (unquote(ctx, req)?, unquote(ctx, rcv)?);
        pair = Some((slash(request), receive.to_string()));
        rest = &rest[2..];
    }
    let (mut l, mut u) = (0, 0);
    for (prefix, slot) in [("l:", &mut l), ("u:", &mut u)] {
        if let Some(t) = rest.first().and_then(|x| x.text.strip_prefix(prefix)) {
            let tv = rest[0].sub(2, t);
            *slot = tv.number(ctx, "real threshold", 0, i32::MAX as u32)?;
            rest = &rest[1..];
        }
    }
    if let Some(extra) = rest.first() {
        return Err(ctx.err(extra.col, format!("real: unexpected \"{}\"", extra.text)));
    }
    if l > u {
        return Err(ctx.err(
            first.col,
            format!("real: lower threshold {l} is above the upper threshold {u}"),
        ));
    }
    dest = dest.thresholds(u, l);
    let one = |a: IpAddr| Real {
        loc: ctx.loc(first.col),
        dest: DestConf { addr: a, ..dest },
        pair: pair.clone(),
    };
    let Some(hi) = hi else {
        return Ok(vec![one(lo_a)]);
    };
    range(ctx, &lo, &hi, lo_a, v6).map(|addrs| addrs.into_iter().map(one).collect())
}

/// The addresses of `lo->hi` (IPv4 only, as ldirectord).
fn range(
    ctx: &Ctx,
    lo: &Val,
    hi: &Val,
    lo_a: IpAddr,
    v6: bool,
) -> Result<Vec<IpAddr>, ConfigError> {
    if v6 {
        return Err(ctx.err(lo.col, "real6: an address range, which ldirectord refuses for IPv6 (it takes ranges in real lines only)"));
    }
    let hi_a = addr(ctx, hi, false, "real")?;
    let (IpAddr::V4(a), IpAddr::V4(b)) = (lo_a, hi_a) else {
        unreachable!("both checked to be IPv4")
    };
    let (a, b) = (u32::from(a), u32::from(b));
    if a > b {
        return Err(ctx.err(
            lo.col,
            format!(
                "real: invalid range {}->{}: the first address is above the last",
                lo.text, hi.text
            ),
        ));
    }
    if b - a >= MAX_RANGE {
        return Err(ctx.err(
            lo.col,
            format!(
                "real: range {}->{} has more than {MAX_RANGE} addresses",
                lo.text, hi.text
            ),
        ));
    }
    Ok((a..=b).map(|n| IpAddr::V4(Ipv4Addr::from(n))).collect())
}

/// The text of a `"…"` word, which may be empty.
fn unquote<'a>(ctx: &Ctx, v: &Val<'a>) -> Result<&'a str, ConfigError> {
    v.text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .ok_or_else(|| ctx.err(v.col, "real: a string without its closing quote"))
}

/// ldirectord puts a `/` in front of a request that has none.
pub(crate) fn slash(s: &str) -> String {
    if s.starts_with('/') {
        s.to_string()
    } else {
        format!("/{s}")
    }
}

/// A `fallback = addr[:port] [gate|masq|ipip]` server (port: the virtual port when omitted;
/// method: gate when omitted).
#[derive(Clone, Debug)]
pub(crate) struct Fallback {
    pub loc: Loc,
    pub addr: IpAddr,
    pub port: Option<u16>,
    pub fwd: Forward,
}

impl Fallback {
    pub fn parse(ctx: &Ctx, v: &Val, v6: bool) -> Result<Fallback, ConfigError> {
        let key = if v6 { "fallback6" } else { "fallback" };
        let w = words(v);
        let Some(first) = w.first() else {
            return Err(ctx.err(v.col, format!("{key}: an address is required")));
        };
        let (host, port_v) = split_host_port(first);
        let fwd = match w.get(1) {
            Some(f) => forward(ctx, f)?,
            None => Forward::Route,
        };
        if let Some(extra) = w.get(2) {
            return Err(ctx.err(extra.col, format!("{key}: unexpected \"{}\"", extra.text)));
        }
        Ok(Fallback {
            loc: ctx.loc(first.col),
            addr: addr(ctx, &host, v6, key)?,
            port: port_v.map(|p| port(ctx, &p, key)).transpose()?,
            fwd,
        })
    }
}

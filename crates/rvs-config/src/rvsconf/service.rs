//! `[[service]]` and `[[service.server]]`: keys, IPVS settings, real servers, sorry server,
//! quorum and passive health.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rvs_core::model::{
    svc_flags, tun_flags, validate_new_dest_addr, DestConf, Family, Forward, Netmask, Protocol,
    ProxyProtocol, ServiceConf, ServiceKey, TunnelConf, TunnelType, DEFAULT_PERSIST_TIMEOUT,
    MAX_PERSIST_TIMEOUT,
};
use toml::Spanned;

use super::check::{self, TimingSet};
use super::raw;
use super::Ctx;
use crate::spec::{ConfigError, Passive, RealServer, Sorry, VirtualService};

type R<T> = Result<T, ConfigError>;

/// What a service hands down to its servers.
struct Inherit {
    forward: Forward,
    alpha: bool,
    inhibit: bool,
    slow_start: Option<Duration>,
    proxy_protocol: ProxyProtocol,
    timing: TimingSet,
}

/// One `[[service]]`, validated.
pub fn build(ctx: &Ctx<'_>, s: Spanned<raw::Service>) -> R<VirtualService> {
    let span = s.span();
    let s = s.into_inner();
    let key = key(ctx, &s, span.clone())?;
    let conf = conf(ctx, &s, &key)?;
    let inherit = Inherit {
        forward: match &s.forward {
            Some(f) => forward(ctx, f)?,
            None => Forward::Masq,
        },
        alpha: s.alpha.unwrap_or(false),
        inhibit: s.inhibit_on_failure.unwrap_or(false),
        slow_start: s.slow_start.map(|d| d.0),
        proxy_protocol: match &s.proxy_protocol {
            Some(p) => proxy_protocol(ctx, p)?,
            None => ProxyProtocol::None,
        },
        timing: TimingSet::read(
            ctx,
            [
                &s.delay_loop,
                &s.connect_timeout,
                &s.delay_before_retry,
                &s.warmup,
            ],
            &s.retry,
        )?,
    };
    let mut reals: Vec<RealServer> = Vec::with_capacity(s.server.len());
    for rs in s.server {
        let addr_span = rs.get_ref().address.span();
        let real = server(ctx, rs, &key, &inherit)?;
        if let Some(prev) = reals
            .iter()
            .find(|p| (p.dest.addr, p.dest.port) == (real.dest.addr, real.dest.port))
        {
            return Err(ctx.err(
                addr_span,
                format!(
                    "real server {} is already declared at line {}",
                    SocketAddr::new(real.dest.addr, real.dest.port),
                    prev.loc.line
                ),
            ));
        }
        reals.push(real);
    }
    let sorry = match s.sorry {
        Some(so) => Some(sorry(ctx, so, &key, inherit.forward)?),
        None => None,
    };
    let (quorum, hysteresis) = quorum(ctx, &s.quorum, &s.hysteresis)?;
    let passive = match s.passive {
        Some(p) => Some(passive(ctx, p)?),
        None => None,
    };
    Ok(VirtualService {
        loc: ctx.loc(span.start),
        keys: vec![key],
        conf,
        reals,
        sorry,
        quorum,
        hysteresis,
        quorum_up: s.quorum_up.map(|c| c.0),
        quorum_down: s.quorum_down.map(|c| c.0),
        omega: s.omega,
        quorum_down_at_start: false,
        passive,
    })
}

fn key(ctx: &Ctx<'_>, s: &raw::Service, span: std::ops::Range<usize>) -> R<ServiceKey> {
    match (&s.address, &s.fwmark) {
        (None, None) => Err(ctx.err(span, "a service needs `address` or `fwmark`")),
        (Some(_), Some(m)) => Err(ctx.err(m.span(), "`address` and `fwmark` are exclusive")),
        (Some(a), None) => {
            if let Some(f) = &s.family {
                return Err(ctx.err(
                    f.span(),
                    "`family` is for fwmark services (an address says its family)",
                ));
            }
            let sa: SocketAddr = a.get_ref().parse().map_err(|_| {
                ctx.err(
                    a.span(),
                    format!(
                        "invalid service address \"{}\": expected IP:PORT (\"192.0.2.10:80\", \"[2001:db8::10]:80\")",
                        a.get_ref()
                    ),
                )
            })?;
            let proto = match &s.protocol {
                Some(p) => protocol(ctx, p)?,
                None => Protocol::Tcp,
            };
            Ok(ServiceKey::Addr {
                proto,
                addr: sa.ip(),
                port: sa.port(),
            })
        }
        (None, Some(m)) => {
            if let Some(p) = &s.protocol {
                return Err(ctx.err(
                    p.span(),
                    "`protocol` does not apply to a fwmark service (the mark selects the packets)",
                ));
            }
            let mark = ctx.int(m, "fwmark", 1, i64::from(u32::MAX))? as u32;
            let af = match &s.family {
                Some(f) => match f.get_ref().to_ascii_lowercase().as_str() {
                    "ipv4" | "inet" => Family::V4,
                    "ipv6" | "inet6" => Family::V6,
                    other => {
                        return Err(ctx.err(
                            f.span(),
                            format!("unknown family \"{other}\" (expected ipv4 or ipv6)"),
                        ))
                    }
                },
                None => Family::V4,
            };
            Ok(ServiceKey::Fwmark { af, mark })
        }
    }
}

fn protocol(ctx: &Ctx<'_>, p: &Spanned<String>) -> R<Protocol> {
    match p.get_ref().to_ascii_lowercase().as_str() {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        "sctp" => Ok(Protocol::Sctp),
        _ => Err(ctx.err(
            p.span(),
            format!(
                "unknown protocol \"{}\" (expected tcp, udp or sctp)",
                p.get_ref()
            ),
        )),
    }
}

fn conf(ctx: &Ctx<'_>, s: &raw::Service, key: &ServiceKey) -> R<ServiceConf> {
    let sched = match &s.scheduler {
        Some(n) if rvs_core::sched::new_scheduler(n.get_ref()).is_err() => {
            return Err(ctx.err(
                n.span(),
                format!(
                    "unknown scheduler \"{}\" (known: {}, none)",
                    n.get_ref(),
                    rvs_core::sched::SCHEDULERS.join(", ")
                ),
            ))
        }
        Some(n) => n.get_ref().clone(),
        None => "wlc".to_string(),
    };
    let mut conf = ServiceConf::new(key.family(), &sched);
    if let Some(flags) = &s.flags {
        for f in flags.get_ref() {
            conf.flags |= sched_flag(ctx, f, &sched)?;
        }
    }
    if let Some(ops) = &s.ops {
        if *ops.get_ref() {
            if !key.is_fwmark() && key.protocol() != Protocol::Udp {
                return Err(ctx.err(
                    ops.span(),
                    "`ops` (one-packet scheduling) is only for UDP and fwmark services",
                ));
            }
            conf.flags |= svc_flags::ONEPACKET;
        }
    }
    if let Some(pe) = &s.pe {
        if rvs_core::pe::Engine::by_name(pe.get_ref()).is_none() {
            return Err(ctx.err(
                pe.span(),
                format!(
                    "unknown persistence engine \"{}\" (known: sip)",
                    pe.get_ref()
                ),
            ));
        }
        conf.pe = Some(pe.get_ref().clone());
    }
    if let Some(p) = &s.persistence {
        persistence(ctx, p.get_ref(), key.family(), &mut conf)?;
    }
    if !key.is_fwmark() && key.port() == 0 && !conf.is_persistent() {
        return Err(ctx.err(
            s.address.as_ref().map_or(0..0, |a| a.span()),
            "port 0 (any port) is only for persistent services: add `persistence`",
        ));
    }
    Ok(conf)
}

fn sched_flag(ctx: &Ctx<'_>, f: &Spanned<String>, sched: &str) -> R<u32> {
    let (bit, only) = match f.get_ref().as_str() {
        "flag-1" => (svc_flags::SCHED1, None),
        "flag-2" => (svc_flags::SCHED2, None),
        "flag-3" => (svc_flags::SCHED3, None),
        "sh-fallback" => (svc_flags::SCHED_SH_FALLBACK, Some("sh")),
        "sh-port" => (svc_flags::SCHED_SH_PORT, Some("sh")),
        "mh-fallback" => (svc_flags::SCHED_MH_FALLBACK, Some("mh")),
        "mh-port" => (svc_flags::SCHED_MH_PORT, Some("mh")),
        other => {
            return Err(ctx.err(
                f.span(),
                format!("unknown scheduler flag \"{other}\" (known: sh-fallback, sh-port, mh-fallback, mh-port, flag-1, flag-2, flag-3)"),
            ))
        }
    };
    match only {
        Some(s) if s != sched => Err(ctx.err(
            f.span(),
            format!(
                "scheduler flag \"{}\" needs scheduler \"{s}\", not \"{sched}\"",
                f.get_ref()
            ),
        )),
        _ => Ok(bit),
    }
}

fn persistence(ctx: &Ctx<'_>, p: &raw::Persistence, af: Family, conf: &mut ServiceConf) -> R<()> {
    let timeout = match &p.timeout {
        Some(t) => ctx.secs(t, "persistence timeout", 1, u64::from(MAX_PERSIST_TIMEOUT))?,
        None => DEFAULT_PERSIST_TIMEOUT,
    };
    conf.flags |= svc_flags::PERSISTENT;
    conf.timeout = timeout;
    if let Some(m) = &p.netmask {
        conf.netmask = netmask(ctx, m, af)?;
    }
    Ok(())
}

fn netmask(ctx: &Ctx<'_>, m: &Spanned<toml::Value>, af: Family) -> R<Netmask> {
    let bad = |msg: String| Err(ctx.err(m.span(), msg));
    match (m.get_ref(), af) {
        (toml::Value::Integer(p), Family::V4) if (1..=32).contains(p) => {
            Ok(Netmask::V4(u32::MAX << (32 - *p)))
        }
        (toml::Value::Integer(p), Family::V6) if (1..=128).contains(p) => Ok(Netmask::V6(*p as u8)),
        (toml::Value::Integer(p), Family::V4) => {
            bad(format!("netmask /{p} is out of range (1 to 32)"))
        }
        (toml::Value::Integer(p), Family::V6) => {
            bad(format!("netmask /{p} is out of range (1 to 128)"))
        }
        (toml::Value::String(s), Family::V4) => match s.parse::<std::net::Ipv4Addr>() {
            Ok(a) => Ok(Netmask::V4(u32::from(a))),
            Err(_) => bad(format!(
                "invalid netmask \"{s}\": expected a dotted mask or a prefix length"
            )),
        },
        (toml::Value::String(_), Family::V6) => {
            bad("an IPv6 netmask is a prefix length (1 to 128)".to_string())
        }
        _ => bad("netmask is a dotted mask (\"255.255.255.0\") or a prefix length (24)".into()),
    }
}

fn forward(ctx: &Ctx<'_>, f: &Spanned<String>) -> R<Forward> {
    match f.get_ref().to_ascii_lowercase().as_str() {
        "nat" | "masq" => Ok(Forward::Masq),
        "dr" | "route" => Ok(Forward::Route),
        "tunnel" | "tun" => Ok(Forward::Tunnel),
        _ => Err(ctx.err(
            f.span(),
            format!(
                "unknown forward \"{}\" (expected nat, dr or tunnel)",
                f.get_ref()
            ),
        )),
    }
}

fn proxy_protocol(ctx: &Ctx<'_>, p: &Spanned<String>) -> R<ProxyProtocol> {
    match p.get_ref().as_str() {
        "none" => Ok(ProxyProtocol::None),
        "v1" => Ok(ProxyProtocol::V1),
        "v2" => Ok(ProxyProtocol::V2),
        other => Err(ctx.err(
            p.span(),
            format!("unknown proxy_protocol \"{other}\" (expected none, v1 or v2)"),
        )),
    }
}

/// A real server's address: `IP`, `IP:PORT`, `[IPv6]:PORT`; the port applying the DR/TUN
/// rule (no port: the service's).
fn dest_addr(
    ctx: &Ctx<'_>,
    a: &Spanned<String>,
    key: &ServiceKey,
    fwd: Forward,
    what: &str,
) -> R<DestConf> {
    let text = a.get_ref();
    let (ip, port) = match text.parse::<SocketAddr>() {
        Ok(sa) => (sa.ip(), Some(sa.port())),
        Err(_) => match text.parse::<IpAddr>() {
            Ok(ip) => (ip, None),
            Err(_) => {
                return Err(ctx.err(
                    a.span(),
                    format!("invalid {what} address \"{text}\": expected IP or IP:PORT"),
                ))
            }
        },
    };
    let dr_like = matches!(fwd, Forward::Route | Forward::Tunnel) && !key.is_fwmark();
    if let (true, Some(p)) = (dr_like, port) {
        if p != key.port() {
            return Err(ctx.err(
                a.span(),
                format!(
                    "{what} port {p} differs from the service port {}: {} cannot map ports (use forward = \"nat\")",
                    key.port(),
                    if fwd == Forward::Route { "dr" } else { "tunnel" }
                ),
            ));
        }
    }
    let port = port.unwrap_or(key.port());
    let dest = DestConf::new(ip, port).fwd(fwd);
    if Family::of(&ip) != key.family() && fwd != Forward::Tunnel {
        return Err(ctx.err(
            a.span(),
            format!("{what} {text} is not of the service's address family (only tunnels may mix)"),
        ));
    }
    if validate_new_dest_addr(&dest).is_err() {
        return Err(ctx.err(
            a.span(),
            format!("{what} address {ip} is not a unicast address"),
        ));
    }
    Ok(dest)
}

fn server(
    ctx: &Ctx<'_>,
    rs: Spanned<raw::Server>,
    key: &ServiceKey,
    inh: &Inherit,
) -> R<RealServer> {
    let span = rs.span();
    let rs = rs.into_inner();
    let fwd = match &rs.forward {
        Some(f) => forward(ctx, f)?,
        None => inh.forward,
    };
    let mut dest = dest_addr(ctx, &rs.address, key, fwd, "real server")?;
    if let Some(w) = &rs.weight {
        dest.weight = ctx.int(w, "weight", 0, i64::from(i32::MAX))? as i32;
    }
    let hi = i64::from(i32::MAX);
    let u = rs
        .uthreshold
        .as_ref()
        .map(|v| ctx.int(v, "uthreshold", 0, hi));
    let l = rs
        .lthreshold
        .as_ref()
        .map(|v| ctx.int(v, "lthreshold", 0, hi));
    dest.u_threshold = u.transpose()?.unwrap_or(0) as u32;
    dest.l_threshold = l.transpose()?.unwrap_or(0) as u32;
    if dest.l_threshold > dest.u_threshold {
        let at = rs.lthreshold.as_ref().map_or(span.clone(), |v| v.span());
        return Err(ctx.err(
            at,
            format!(
                "lthreshold {} is above uthreshold {}",
                dest.l_threshold, dest.u_threshold
            ),
        ));
    }
    dest.tun = tunnel(ctx, &rs.tunnel, fwd)?;
    dest.proxy_protocol = match &rs.proxy_protocol {
        Some(p) => proxy_protocol(ctx, p)?,
        None => inh.proxy_protocol,
    };
    let timing = inh.timing.under(TimingSet::read(
        ctx,
        [
            &rs.delay_loop,
            &rs.connect_timeout,
            &rs.delay_before_retry,
            &rs.warmup,
        ],
        &rs.retry,
    )?);
    let checks = rs
        .check
        .into_iter()
        .map(|c| check::build(ctx, c, &dest, timing))
        .collect::<R<Vec<_>>>()?;
    let slow_start = rs.slow_start.map(|d| d.0).or(inh.slow_start);
    Ok(RealServer {
        loc: ctx.loc(span.start),
        dest,
        inhibit_on_failure: rs.inhibit_on_failure.unwrap_or(inh.inhibit),
        alpha: rs.alpha.unwrap_or(inh.alpha),
        notify_up: rs.notify_up.map(|c| c.0),
        notify_down: rs.notify_down.map(|c| c.0),
        checks,
        slow_start: slow_start.filter(|d| !d.is_zero()),
    })
}

fn tunnel(ctx: &Ctx<'_>, t: &Option<Spanned<raw::Tunnel>>, fwd: Forward) -> R<TunnelConf> {
    let Some(t) = t else {
        return Ok(TunnelConf::default());
    };
    if fwd != Forward::Tunnel {
        return Err(ctx.err(t.span(), "`tunnel` applies to forward = \"tunnel\" only"));
    }
    let t = t.get_ref();
    let kind = match &t.kind {
        None => TunnelType::Ipip,
        Some(k) => match k.get_ref().as_str() {
            "ipip" => TunnelType::Ipip,
            "gue" => TunnelType::Gue,
            "gre" => TunnelType::Gre,
            other => {
                return Err(ctx.err(
                    k.span(),
                    format!("unknown tunnel type \"{other}\" (expected ipip, gue or gre)"),
                ))
            }
        },
    };
    let port = match (&t.port, kind) {
        (Some(p), TunnelType::Gue) => ctx.int(p, "tunnel port", 1, 65535)? as u16,
        (None, TunnelType::Gue) => {
            let at = t.kind.as_ref().map_or(0..0, |k| k.span());
            return Err(ctx.err(at, "a gue tunnel needs `port`"));
        }
        (Some(p), _) => return Err(ctx.err(p.span(), "tunnel `port` is for gue tunnels only")),
        (None, _) => 0,
    };
    let flags = match (&t.csum, kind) {
        (None, _) => tun_flags::NOCSUM,
        (Some(c), TunnelType::Ipip) => {
            return Err(ctx.err(c.span(), "an ipip tunnel takes no `csum`"))
        }
        (Some(c), _) => match c.get_ref().as_str() {
            "nocsum" => tun_flags::NOCSUM,
            "csum" => tun_flags::CSUM,
            "remcsum" if kind == TunnelType::Gue => tun_flags::REMCSUM,
            "remcsum" => return Err(ctx.err(c.span(), "remcsum is for gue tunnels only")),
            other => {
                return Err(ctx.err(
                    c.span(),
                    format!("unknown csum \"{other}\" (expected nocsum, csum or remcsum)"),
                ))
            }
        },
    };
    Ok(TunnelConf { kind, port, flags })
}

fn sorry(
    ctx: &Ctx<'_>,
    so: Spanned<raw::Sorry>,
    key: &ServiceKey,
    default_fwd: Forward,
) -> R<Sorry> {
    let span = so.span();
    let so = so.into_inner();
    let fwd = match &so.forward {
        Some(f) => forward(ctx, f)?,
        None => default_fwd,
    };
    let mut dest = dest_addr(ctx, &so.address, key, fwd, "sorry server")?;
    if let Some(w) = &so.weight {
        dest.weight = ctx.int(w, "sorry weight", 0, i64::from(i32::MAX))? as i32;
    }
    Ok(Sorry {
        loc: ctx.loc(span.start),
        dest,
        inhibit: so.inhibit,
        command: so.command.map(|c| c.0),
    })
}

fn quorum(ctx: &Ctx<'_>, q: &Option<Spanned<i64>>, h: &Option<Spanned<i64>>) -> R<(u32, u32)> {
    let quorum = match q {
        Some(q) => ctx.int(q, "quorum", 1, i64::from(u32::MAX))? as u32,
        None => 1,
    };
    let hysteresis = match h {
        Some(h) => ctx.int(h, "hysteresis", 0, i64::from(u32::MAX))? as u32,
        None => 0,
    };
    if hysteresis >= quorum {
        let at = h.as_ref().map_or(0..0, |h| h.span());
        return Err(ctx.err(
            at,
            format!("hysteresis {hysteresis} must be less than quorum {quorum}"),
        ));
    }
    Ok((quorum, hysteresis))
}

fn passive(ctx: &Ctx<'_>, p: Spanned<raw::Passive>) -> R<Passive> {
    let p = p.into_inner();
    let failures = match &p.failures {
        Some(f) => ctx.int(f, "passive failures", 1, i64::from(u32::MAX))? as u32,
        None => 5,
    };
    let backoff = match &p.backoff {
        Some(b) => ctx.positive(b, "passive backoff")?,
        None => Duration::from_secs(30),
    };
    let max_backoff = match &p.max_backoff {
        Some(m) if m.get_ref().0 < backoff => {
            return Err(ctx.err(
                m.span(),
                format!(
                    "passive max_backoff {:?} is shorter than backoff {:?}",
                    m.get_ref().0,
                    backoff
                ),
            ))
        }
        Some(m) => m.get_ref().0,
        None => backoff.max(Duration::from_secs(300)),
    };
    let max_ejected_percent = match &p.max_ejected_percent {
        Some(v) => ctx.int(v, "passive max_ejected_percent", 0, 100)? as u8,
        None => 50,
    };
    Ok(Passive {
        failures,
        backoff,
        max_backoff,
        max_ejected_percent,
    })
}

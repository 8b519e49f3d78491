//! `[[service.server.check]]`: the kind, the keys that kind takes, and the timers inherited
//! from the server and the service (keepalived's defaults below them).

use std::net::IpAddr;
use std::ops::Range;
use std::time::Duration;

use rvs_core::model::DestConf;
use toml::Spanned;

use super::raw::{self, Opt};
use super::values::{hex_bytes, hex_pattern, Dur, Reply, Status};
use super::Ctx;
use crate::spec::{
    Check, CheckKind, ConfigError, DnsType, HttpCheck, HttpProtocol, MiscCheck, Timing, UdpCheck,
    UrlCheck,
};

type R<T> = Result<T, ConfigError>;

/// Check timers as given at one level; `None` inherits.
#[derive(Clone, Copy, Debug, Default)]
pub struct TimingSet {
    delay_loop: Option<Duration>,
    connect_timeout: Option<Duration>,
    retry: Option<u32>,
    delay_before_retry: Option<Duration>,
    warmup: Option<Duration>,
}

impl TimingSet {
    /// Read `[delay_loop, connect_timeout, delay_before_retry, warmup]` and `retry`.
    pub fn read(ctx: &Ctx<'_>, durs: [&Opt<Dur>; 4], retry: &Opt<i64>) -> R<TimingSet> {
        let [dl, ct, dbr, wu] = durs;
        Ok(TimingSet {
            delay_loop: dl
                .as_ref()
                .map(|v| ctx.positive(v, "delay_loop"))
                .transpose()?,
            connect_timeout: ct
                .as_ref()
                .map(|v| ctx.positive(v, "connect_timeout"))
                .transpose()?,
            retry: retry
                .as_ref()
                .map(|v| {
                    ctx.int(v, "retry", 0, i64::from(u32::MAX))
                        .map(|n| n as u32)
                })
                .transpose()?,
            delay_before_retry: dbr.as_ref().map(|v| v.get_ref().0),
            warmup: wu.as_ref().map(|v| v.get_ref().0),
        })
    }

    /// These values, overridden by those `lower` sets.
    pub fn under(self, lower: TimingSet) -> TimingSet {
        TimingSet {
            delay_loop: lower.delay_loop.or(self.delay_loop),
            connect_timeout: lower.connect_timeout.or(self.connect_timeout),
            retry: lower.retry.or(self.retry),
            delay_before_retry: lower.delay_before_retry.or(self.delay_before_retry),
            warmup: lower.warmup.or(self.warmup),
        }
    }

    /// Fill in keepalived's defaults for a check of `kind`.
    fn resolve(self, kind: &str) -> Timing {
        let delay_loop = self.delay_loop.unwrap_or(Duration::from_secs(60));
        let retry = match kind {
            "dns" => 3,
            "misc" => 0,
            _ => 1,
        };
        let dbr = match kind {
            "http" | "https" => Duration::from_secs(3),
            "dns" => delay_loop,
            _ => Duration::from_secs(1),
        };
        Timing {
            delay_loop,
            connect_timeout: self.connect_timeout.unwrap_or(Duration::from_secs(5)),
            retry: self.retry.unwrap_or(retry),
            delay_before_retry: self.delay_before_retry.unwrap_or(dbr),
            warmup: self.warmup.unwrap_or(delay_loop),
        }
    }
}

const KINDS: [&str; 8] = ["tcp", "http", "https", "smtp", "dns", "udp", "misc", "ping"];

/// Whether a check of `kind` takes `key`.
fn takes(kind: &str, key: &str) -> bool {
    match key {
        "url" | "http_protocol" | "virtualhost" | "method" => matches!(kind, "http" | "https"),
        "sni" | "sni_name" | "close_notify" => kind == "https",
        "helo_name" => kind == "smtp",
        "type" | "name" => kind == "dns",
        "payload" | "require_reply" | "min_reply_length" | "max_reply_length" => kind == "udp",
        "command" | "timeout" | "dynamic" => kind == "misc",
        "connect_port" | "bind_port" => !matches!(kind, "misc" | "ping"),
        // the network keys: every kind but misc, which runs a program
        _ => kind != "misc",
    }
}

/// The keys of a check that not every kind takes, with their spans.
fn specific_keys(c: &raw::Check) -> Vec<(&'static str, Range<usize>)> {
    fn s<T>(v: &Opt<T>) -> Option<Range<usize>> {
        v.as_ref().map(Spanned::span)
    }
    let keys = [
        ("connect_timeout", s(&c.connect_timeout)),
        ("connect_ip", s(&c.connect_ip)),
        ("connect_port", s(&c.connect_port)),
        ("bind_addr", s(&c.bind_addr)),
        ("bind_port", s(&c.bind_port)),
        ("bind_if", s(&c.bind_if)),
        ("fwmark", s(&c.fwmark)),
        ("url", s(&c.url)),
        ("http_protocol", s(&c.http_protocol)),
        ("virtualhost", s(&c.virtualhost)),
        ("method", s(&c.method)),
        ("sni", s(&c.sni)),
        ("sni_name", s(&c.sni_name)),
        ("close_notify", s(&c.close_notify)),
        ("helo_name", s(&c.helo_name)),
        ("type", s(&c.qtype)),
        ("name", s(&c.name)),
        ("payload", s(&c.payload)),
        ("require_reply", s(&c.require_reply)),
        ("min_reply_length", s(&c.min_reply_length)),
        ("max_reply_length", s(&c.max_reply_length)),
        ("command", s(&c.command)),
        ("timeout", s(&c.timeout)),
        ("dynamic", s(&c.dynamic)),
    ];
    keys.into_iter()
        .filter_map(|(k, sp)| sp.map(|sp| (k, sp)))
        .collect()
}

/// One check of the real server `dest`, its timers inherited from `above`.
pub fn build(ctx: &Ctx<'_>, c: Spanned<raw::Check>, dest: &DestConf, above: TimingSet) -> R<Check> {
    let span = c.span();
    let c = c.into_inner();
    let kind = c.kind.get_ref().as_str();
    if !KINDS.contains(&kind) {
        return Err(ctx.err(
            c.kind.span(),
            format!(
                "unknown check kind \"{kind}\" (known: {})",
                KINDS.join(", ")
            ),
        ));
    }
    if let Some((key, sp)) = specific_keys(&c).into_iter().find(|(k, _)| !takes(kind, k)) {
        return Err(ctx.err(sp, format!("`{key}` does not apply to a {kind} check")));
    }
    let own = TimingSet::read(
        ctx,
        [
            &c.delay_loop,
            &c.connect_timeout,
            &c.delay_before_retry,
            &c.warmup,
        ],
        &c.retry,
    )?;
    let timing = above.under(own).resolve(kind);
    let connect = connect(ctx, &c, dest, kind, span.clone())?;
    let check_kind = match kind {
        "tcp" => CheckKind::Tcp,
        "ping" => CheckKind::Ping,
        "http" | "https" => CheckKind::Http(http(ctx, &c, kind == "https")?),
        "smtp" => CheckKind::Smtp {
            helo_name: c
                .helo_name
                .as_ref()
                .map_or("smtpchecker.keepalived.org".into(), |h| h.get_ref().clone()),
        },
        "dns" => dns(ctx, &c)?,
        "udp" => CheckKind::Udp(udp(ctx, &c)?),
        _ => CheckKind::Misc(misc(ctx, &c, timing.delay_loop, span.clone())?),
    };
    Ok(Check {
        loc: ctx.loc(span.start),
        kind: check_kind,
        timing,
        connect,
        bind_addr: c
            .bind_addr
            .as_ref()
            .map(|a| ip(ctx, a, "bind_addr"))
            .transpose()?,
        bind_port: c
            .bind_port
            .as_ref()
            .map(|p| ctx.int(p, "bind_port", 1, 65535).map(|n| n as u16))
            .transpose()?,
        bind_if: c.bind_if.map(Spanned::into_inner),
        fwmark: c
            .fwmark
            .as_ref()
            .map(|m| {
                ctx.int(m, "fwmark", 1, i64::from(u32::MAX))
                    .map(|n| n as u32)
            })
            .transpose()?,
        log_all_failures: c.log_all_failures.is_some_and(|v| *v.get_ref()),
    })
}

fn ip(ctx: &Ctx<'_>, a: &Spanned<String>, key: &str) -> R<IpAddr> {
    a.get_ref().parse().map_err(|_| {
        ctx.err(
            a.span(),
            format!("invalid {key} \"{}\": expected an IP address", a.get_ref()),
        )
    })
}

/// Where the check connects: `None` (the server itself) unless `connect_ip`/`connect_port`
/// say otherwise; a check that needs a port fails when neither it nor the server has one.
fn connect(
    ctx: &Ctx<'_>,
    c: &raw::Check,
    dest: &DestConf,
    kind: &str,
    span: Range<usize>,
) -> R<Option<(IpAddr, u16)>> {
    let addr = c
        .connect_ip
        .as_ref()
        .map(|a| ip(ctx, a, "connect_ip"))
        .transpose()?;
    let port = c
        .connect_port
        .as_ref()
        .map(|p| ctx.int(p, "connect_port", 1, 65535).map(|n| n as u16))
        .transpose()?;
    let needs_port = !matches!(kind, "misc" | "ping");
    if needs_port && port.is_none() && dest.port == 0 {
        return Err(ctx.err(
            span,
            format!(
                "the {kind} check of {} needs `connect_port`: the real server has no port",
                dest.addr
            ),
        ));
    }
    Ok(match (addr, port) {
        (None, None) => None,
        (a, p) => Some((a.unwrap_or(dest.addr), p.unwrap_or(dest.port))),
    })
}

fn http(ctx: &Ctx<'_>, c: &raw::Check, tls: bool) -> R<HttpCheck> {
    let urls = match &c.url {
        Some(u) if !u.get_ref().is_empty() => u.get_ref(),
        Some(u) => return Err(ctx.err(u.span(), "`url` needs at least one entry")),
        None => {
            return Err(ctx.err(
                c.kind.span(),
                "an http check needs `url = [{ path = \"/…\" }]`",
            ))
        }
    };
    let protocol = match &c.http_protocol {
        None => HttpProtocol::Http10,
        Some(p) => match p.get_ref().as_str() {
            "1.0" => HttpProtocol::Http10,
            "1.0C" | "1.0c" => HttpProtocol::Http10Close,
            "1.1" => HttpProtocol::Http11,
            other => {
                return Err(ctx.err(
                    p.span(),
                    format!("unknown http_protocol \"{other}\" (expected 1.0, 1.0C or 1.1)"),
                ))
            }
        },
    };
    let method = match &c.method {
        None => "GET".to_string(),
        Some(m) if matches!(m.get_ref().as_str(), "GET" | "HEAD") => m.get_ref().clone(),
        Some(m) => {
            return Err(ctx.err(
                m.span(),
                format!("unknown method \"{}\" (expected GET or HEAD)", m.get_ref()),
            ))
        }
    };
    Ok(HttpCheck {
        tls,
        urls: urls.iter().map(|u| url(ctx, u)).collect::<R<_>>()?,
        protocol,
        virtualhost: c.virtualhost.as_ref().map(|v| v.get_ref().clone()),
        method,
        sni: c.sni.as_ref().is_some_and(|v| *v.get_ref()),
        sni_name: c.sni_name.as_ref().map(|v| v.get_ref().clone()),
        tls_close_notify: c.close_notify.as_ref().is_some_and(|v| *v.get_ref()),
    })
}

fn url(ctx: &Ctx<'_>, u: &Spanned<raw::Url>) -> R<UrlCheck> {
    let u = u.get_ref();
    if !u.path.get_ref().starts_with('/') {
        return Err(ctx.err(
            u.path.span(),
            format!("url path \"{}\" must start with /", u.path.get_ref()),
        ));
    }
    let digest = match &u.digest {
        Some(d) if d.get_ref().len() == 32 && hex_bytes(d.get_ref()).is_some() => {
            Some(d.get_ref().to_ascii_lowercase())
        }
        Some(d) => {
            return Err(ctx.err(
                d.span(),
                format!(
                    "digest \"{}\" is not an MD5 sum (32 hex digits)",
                    d.get_ref()
                ),
            ))
        }
        None => None,
    };
    let status = match &u.status {
        Some(list) if !list.is_empty() => list.iter().map(|s| status(ctx, s)).collect::<R<_>>()?,
        _ => vec![(200, 299)],
    };
    Ok(UrlCheck {
        path: u.path.get_ref().clone(),
        digest,
        status,
        virtualhost: u.virtualhost.clone(),
        regex: u.regex.clone(),
        regex_no_match: u.regex_no_match,
        regex_min_offset: u.regex_min_offset,
        regex_max_offset: u.regex_max_offset,
        regex_first_line: false,
    })
}

fn status(ctx: &Ctx<'_>, s: &Spanned<Status>) -> R<(u16, u16)> {
    let code = |n: i64| (100..=599).contains(&n).then_some(n as u16);
    let range = match s.get_ref() {
        Status::One(n) => code(*n).map(|c| (c, c)),
        Status::Range(t) => {
            let (a, b) = t.split_once('-').unwrap_or((t, t));
            match (
                a.trim().parse().ok().and_then(code),
                b.trim().parse().ok().and_then(code),
            ) {
                (Some(a), Some(b)) if a <= b => Some((a, b)),
                _ => None,
            }
        }
    };
    range.ok_or_else(|| {
        let shown = match s.get_ref() {
            Status::One(n) => n.to_string(),
            Status::Range(t) => format!("\"{t}\""),
        };
        ctx.err(
            s.span(),
            format!("status {shown} is not a code or range within 100 to 599"),
        )
    })
}

fn dns(ctx: &Ctx<'_>, c: &raw::Check) -> R<CheckKind> {
    let qtype = match &c.qtype {
        None => DnsType::Soa,
        Some(t) => DnsType::from_name(t.get_ref()).ok_or_else(|| {
            ctx.err(
                t.span(),
                format!(
                    "unknown dns type \"{}\" (expected A, NS, CNAME, SOA, MX, TXT or AAAA)",
                    t.get_ref()
                ),
            )
        })?,
    };
    Ok(CheckKind::Dns {
        qtype,
        name: c.name.as_ref().map_or(".".into(), |n| n.get_ref().clone()),
    })
}

fn udp(ctx: &Ctx<'_>, c: &raw::Check) -> R<UdpCheck> {
    let payload = match &c.payload {
        None => Vec::new(),
        Some(p) => hex_bytes(p.get_ref()).ok_or_else(|| {
            ctx.err(
                p.span(),
                format!("payload \"{}\" is not hex bytes", p.get_ref()),
            )
        })?,
    };
    let require_reply = match &c.require_reply {
        None => None,
        Some(r) => match r.get_ref() {
            Reply::Flag(false) => None,
            Reply::Flag(true) => Some(None),
            Reply::Pattern(p) => Some(Some(hex_pattern(p, true).ok_or_else(|| {
                ctx.err(
                    r.span(),
                    format!("require_reply \"{p}\" is not a hex pattern (x for any nibble)"),
                )
            })?)),
        },
    };
    let len = |v: &Opt<i64>, key, dflt| match v {
        Some(v) => ctx.int(v, key, 0, 65535).map(|n| n as usize),
        None => Ok(dflt),
    };
    let min = len(&c.min_reply_length, "min_reply_length", 0)?;
    let max = len(&c.max_reply_length, "max_reply_length", 255)?;
    if min > max {
        let at = c.min_reply_length.as_ref().map_or(0..0, |v| v.span());
        return Err(ctx.err(
            at,
            format!("min_reply_length {min} is above max_reply_length {max}"),
        ));
    }
    Ok(UdpCheck {
        payload,
        require_reply,
        min_reply_length: min,
        max_reply_length: max,
    })
}

fn misc(ctx: &Ctx<'_>, c: &raw::Check, delay_loop: Duration, span: Range<usize>) -> R<MiscCheck> {
    let Some(command) = &c.command else {
        return Err(ctx.err(span, "a misc check needs `command`"));
    };
    let timeout = match &c.timeout {
        Some(t) => ctx.positive(t, "timeout")?,
        None => delay_loop,
    };
    Ok(MiscCheck {
        command: command.get_ref().0.clone(),
        timeout,
        dynamic: c.dynamic.as_ref().is_some_and(|v| *v.get_ref()),
    })
}

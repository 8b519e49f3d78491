//! `checktype`, `service` and the timers of a section, turned into each real server's
//! [`Check`]s (see the module documentation of [`super`] for the mapping).

use std::net::IpAddr;
use std::time::Duration;

use super::line::{Ctx, Val};
use super::real::{Real, SERVICES};
use super::virt::{Proto, Virt};
use super::Globals;
use crate::spec::{
    Check, CheckKind, Command, ConfigError, DnsType, HttpCheck, HttpProtocol, MiscCheck, Notice,
    Timing, UrlCheck,
};

/// ldirectord's default timeouts (`$DEFAULT_CHECKTIMEOUT`, `$DEFAULT_NEGOTIATETIMEOUT`) and
/// interval.
const CHECKTIMEOUT: u32 = 5;
const NEGOTIATETIMEOUT: u32 = 30;
const CHECKINTERVAL: u32 = 10;

/// The HELO name of the SMTP check: what Perl's Net::SMTP says when not told.
const SMTP_HELO: &str = "localhost.localdomain";

/// `checktype`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CheckType {
    Connect,
    External,
    ExternalPerl,
    Negotiate,
    Off,
    On,
    Ping,
    /// N connect checks, then one negotiate check
    Combined(u32),
}

impl CheckType {
    pub fn parse(ctx: &Ctx, v: &Val) -> Result<CheckType, ConfigError> {
        Ok(match v.text {
            "connect" => CheckType::Connect,
            "external" => CheckType::External,
            "external-perl" => CheckType::ExternalPerl,
            "negotiate" => CheckType::Negotiate,
            "off" => CheckType::Off,
            "on" => CheckType::On,
            "ping" => CheckType::Ping,
            t if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => {
                CheckType::Combined(v.number(ctx, "checktype", 0, u32::MAX)?)
            }
            t => {
                return Err(ctx.err(
                    v.col,
                    format!(
                        "checktype must be connect, negotiate, on, off, ping, external, \
                         external-perl or a number, not \"{t}\""
                    ),
                ))
            }
        })
    }
}

/// The resolved timers and check kinds of a section, shared by its real servers.
pub(crate) struct Plan {
    interval: u32,
    checktimeout: u32,
    negotiatetimeout: u32,
    retry: u32,
    /// the negotiate check has a checker in rvs (else the connect check stands in)
    negotiate_native: bool,
}

impl Plan {
    /// Resolve the timers as `ld_setup` does and report what rvs does not act on.
    pub fn new(v: &Virt, g: &Globals, notices: &mut Vec<Notice>) -> Plan {
        let checktimeout = v
            .checktimeout
            .or(v.negotiatetimeout)
            .or(g.checktimeout)
            .or(g.negotiatetimeout)
            .unwrap_or(CHECKTIMEOUT);
        let negotiatetimeout = v
            .negotiatetimeout
            .or(v.checktimeout)
            .or(g.negotiatetimeout)
            .or(g.checktimeout)
            .unwrap_or(NEGOTIATETIMEOUT);
        let global_interval = g.checkinterval.unwrap_or(CHECKINTERVAL);
        let interval = match &v.checkinterval {
            Some((_, n)) if g.fork => *n,
            Some((loc, _)) => {
                notices.push(Notice {
                    loc: loc.clone(),
                    msg: "checkinterval: ignored in a virtual section when fork = no (as \
                          ldirectord does)"
                        .into(),
                });
                global_interval
            }
            None => global_interval,
        };
        let failurecount = v.failurecount.or(g.failurecount).unwrap_or(1);
        let service = v.service();
        let negotiate_native = matches!(
            service,
            "http" | "https" | "smtp" | "submission" | "dns" | "simpletcp" | "none"
        );
        let negotiates = matches!(v.checktype, CheckType::Negotiate | CheckType::Combined(_));
        let note = |notices: &mut Vec<Notice>, loc: &crate::spec::Loc, msg: String| {
            notices.push(Notice {
                loc: loc.clone(),
                msg,
            })
        };
        if negotiates && !negotiate_native {
            let fallback = if v.proto == Proto::Udp {
                "an ICMP ping"
            } else {
                "a TCP connect"
            };
            note(
                notices,
                &v.loc,
                format!("service {service}: rvs has no {service} check; {fallback} check is used"),
            );
        }
        if negotiates && service == "dns" && !v.receive.is_empty() {
            note(
                notices,
                &v.loc,
                "receive: not checked for dns (rvs checks that the A query is answered)".into(),
            );
        }
        if v.checktype == CheckType::ExternalPerl {
            note(
                notices,
                &v.loc,
                "checktype external-perl: the checkcommand is run as an external program".into(),
            );
        }
        for (loc, what) in &v.credentials {
            note(
                notices,
                loc,
                format!("{what}: ignored (no check of rvs uses it)"),
            );
        }
        Plan {
            interval,
            checktimeout,
            negotiatetimeout,
            retry: failurecount - 1,
            negotiate_native,
        }
    }

    fn timing(&self, every: u32, timeout: u32) -> Timing {
        Timing {
            delay_loop: secs(every),
            connect_timeout: secs(timeout),
            retry: self.retry,
            delay_before_retry: secs(self.interval),
            warmup: Duration::ZERO,
        }
    }

    /// The checks of one real server.
    pub fn checks(&self, v: &Virt, r: &Real) -> Vec<Check> {
        let connect = self.connect(v, r);
        let negotiate = || self.negotiate(v, r, self.interval);
        match v.checktype {
            CheckType::Connect => vec![connect],
            CheckType::Negotiate | CheckType::Combined(0) => vec![negotiate()],
            CheckType::Combined(n) => {
                let every = self.interval.saturating_mul(n.saturating_add(1));
                vec![connect, self.negotiate(v, r, every)]
            }
            CheckType::Ping => vec![self.check(v, r, CheckKind::Ping, self.checktimeout)],
            CheckType::On => vec![self.check(v, r, CheckKind::On, self.checktimeout)],
            CheckType::Off => vec![self.check(v, r, CheckKind::Off, self.checktimeout)],
            CheckType::External | CheckType::ExternalPerl => {
                vec![self.check(v, r, self.external(v, r), self.checktimeout)]
            }
        }
    }

    fn check(&self, v: &Virt, r: &Real, kind: CheckKind, timeout: u32) -> Check {
        Check {
            loc: r.loc.clone(),
            kind,
            timing: self.timing(self.interval, timeout),
            connect: checkport(v, r),
            bind_addr: None,
            bind_port: None,
            bind_if: None,
            fwmark: None,
            log_all_failures: false,
        }
    }

    /// `connect`: TCP, or ping for UDP services.
    fn connect(&self, v: &Virt, r: &Real) -> Check {
        let kind = if v.proto == Proto::Udp {
            CheckKind::Ping
        } else {
            CheckKind::Tcp
        };
        self.check(v, r, kind, self.checktimeout)
    }

    /// The external command with ldirectord's four arguments.
    fn external(&self, v: &Virt, r: &Real) -> CheckKind {
        let (vip, vport) = match v.addr {
            Some((a, p)) => (ld_host(a), p),
            None => (v.fwmark.to_string(), 0),
        };
        CheckKind::Misc(MiscCheck {
            command: Command {
                argv: vec![
                    v.checkcommand.clone(),
                    vip,
                    vport.to_string(),
                    ld_host(r.dest.addr),
                    r.dest.port.to_string(),
                ],
                shell: false,
                user: None,
                group: None,
            },
            timeout: secs(self.checktimeout),
            dynamic: false,
        })
    }

    /// The negotiate check of the section's service, run every `every` seconds.
    fn negotiate(&self, v: &Virt, r: &Real, every: u32) -> Check {
        if !self.negotiate_native {
            let mut c = self.connect(v, r);
            c.timing.delay_loop = secs(every);
            return c;
        }
        let (request, receive) = match &r.pair {
            Some((q, a)) => (q.as_str(), a.as_str()),
            None => (v.request.as_str(), v.receive.as_str()),
        };
        let mut connect = checkport(v, r);
        let kind = match v.service() {
            s @ ("http" | "https") => {
                // only a real server's own request may name another server (`ld_setup`)
                let (path, target) = match r.pair {
                    Some(_) => absolute_url(request, s),
                    None => (request.to_string(), None),
                };
                connect = target.or(connect);
                CheckKind::Http(http(v, s == "https", path, receive))
            }
            "smtp" | "submission" => CheckKind::Smtp {
                helo_name: SMTP_HELO.into(),
            },
            "dns" => CheckKind::Dns {
                qtype: DnsType::A,
                name: request.trim_start_matches('/').to_string(),
            },
            "simpletcp" => CheckKind::Send {
                request: request[1..].replace("\\n", "\n").into_bytes(),
                receive: (!receive.is_empty()).then(|| receive.to_string()),
            },
            _ => CheckKind::On,
        };
        let mut c = self.check(v, r, kind, self.negotiatetimeout);
        c.timing.delay_loop = secs(every);
        c.connect = connect;
        c
    }
}

fn http(v: &Virt, tls: bool, path: String, receive: &str) -> HttpCheck {
    HttpCheck {
        tls,
        urls: vec![UrlCheck {
            path,
            digest: None,
            status: vec![(200, 299)],
            virtualhost: None,
            regex: (!receive.is_empty()).then(|| receive.to_string()),
            regex_no_match: false,
            regex_min_offset: 0,
            regex_max_offset: None,
            regex_first_line: false,
        }],
        protocol: HttpProtocol::Http11,
        virtualhost: v.virtualhost.clone(),
        method: v.httpmethod.clone(),
        sni: false,
        sni_name: None,
        tls_close_notify: false,
    }
}

/// A per-server request `scheme://address[:port]/path` names the server to ask; the path
/// is what is requested (a section's `request` is always a path, as `ld_setup` reads it). A host name there is left to the real server (rvs does not
/// resolve), keeping only the path.
fn absolute_url(request: &str, scheme: &str) -> (String, Option<(IpAddr, u16)>) {
    let prefix = format!("{scheme}://");
    let Some(at) = request.find(&prefix) else {
        return (request.to_string(), None);
    };
    let rest = &request[at + prefix.len()..];
    let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let default = if scheme == "https" { 443 } else { 80 };
    let target = if let Some(inner) = hostport.strip_prefix('[') {
        inner.split_once(']').and_then(|(a, p)| {
            let port = p
                .strip_prefix(':')
                .map_or(Some(default), |p| p.parse().ok());
            Some((a.parse().ok()?, port?))
        })
    } else {
        let (a, p) = hostport.split_once(':').unwrap_or((hostport, ""));
        let port = if p.is_empty() {
            Some(default)
        } else {
            p.parse().ok()
        };
        a.parse().ok().zip(port)
    };
    (path.to_string(), target)
}

/// Where a check connects (`ld_checkport`): `checkport`, else the real server's own port,
/// else (a fwmark server without a port) the service's port; `None` means the real server
/// as it is in the table.
fn checkport(v: &Virt, r: &Real) -> Option<(IpAddr, u16)> {
    let svc_port = SERVICES
        .iter()
        .find(|(n, _)| *n == v.service())
        .map_or(0, |(_, p)| *p);
    match v.checkport {
        Some(p) => Some((r.dest.addr, p)),
        None if r.dest.port == 0 && svc_port != 0 => Some((r.dest.addr, svc_port)),
        None => None,
    }
}

/// An address as ldirectord writes it (`ld_gethostbyname`): IPv6 in brackets.
fn ld_host(a: IpAddr) -> String {
    match a {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

fn secs(n: u32) -> Duration {
    Duration::from_secs(u64::from(n))
}

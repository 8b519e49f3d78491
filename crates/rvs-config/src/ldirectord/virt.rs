//! A `virtual =` section: its key, its indented keys, and the [`VirtualService`] it becomes.

use std::net::IpAddr;

use rvs_core::model::{
    svc_flags, DestConf, Family, Netmask, Protocol, ServiceConf, ServiceKey, SockAddr,
    MAX_PERSIST_TIMEOUT,
};

use super::check::{self, CheckType};
use super::line::{Ctx, Val};
use super::real::{self, Fallback, Real, SERVICES};
use super::Globals;
use crate::spec::{Command, ConfigError, Loc, Notice, RealServer, Sorry, VirtualService};

/// The protocol a section asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Proto {
    Tcp,
    Udp,
    Fwm,
}

/// A section as read, resolved against the globals once the whole file is read.
#[derive(Debug)]
pub(crate) struct Virt {
    pub loc: Loc,
    pub v6: bool,
    /// address and port, or the fwmark
    pub addr: Option<(IpAddr, u16)>,
    pub fwmark: u32,
    pub proto: Proto,
    pub checktype: CheckType,
    pub service: Option<&'static str>,
    pub checkcommand: String,
    pub checkport: Option<u16>,
    pub request: String,
    pub receive: String,
    pub httpmethod: String,
    pub virtualhost: Option<String>,
    pub scheduler: String,
    pub persistent: Option<u32>,
    pub netmask: Option<Netmask>,
    pub schedflags: u32,
    pub ops: Option<(Loc, bool)>,
    pub quiescent: Option<bool>,
    pub fallback: Option<Fallback>,
    pub fallbackcommand: Option<String>,
    pub checktimeout: Option<u32>,
    pub negotiatetimeout: Option<u32>,
    pub checkinterval: Option<(Loc, u32)>,
    pub failurecount: Option<u32>,
    /// `login`, `passwd`, `database`, `secret` as given, for the notice
    pub credentials: Vec<(Loc, &'static str)>,
    pub reals: Vec<Real>,
}

impl Virt {
    /// `virtual = ip:port | fwmark` (`virtual6 = [ip]:port | fwmark`).
    pub fn open(ctx: &Ctx, v6: bool, v: &Val) -> Result<Virt, ConfigError> {
        let key = if v6 { "virtual6" } else { "virtual" };
        let (addr, fwmark, proto) = if v.text.bytes().all(|b| b.is_ascii_digit()) {
            let mark = v
                .text
                .parse::<u32>()
                .ok()
                .filter(|&m| m > 0)
                .ok_or_else(|| {
                    ctx.err(
                        v.col,
                        format!("{key}: invalid firewall mark \"{}\"", v.text),
                    )
                })?;
            (None, mark, Proto::Fwm)
        } else {
            let (host, port_v) = real::split_host_port(v);
            let Some(port_v) = port_v else {
                return Err(ctx.err(
                    v.col,
                    format!(
                        "{key}: expected address:port or a firewall mark, not \"{}\"",
                        v.text
                    ),
                ));
            };
            let a = real::addr(ctx, &host, v6, key)?;
            let p = real::port(ctx, &port_v, key)?;
            let proto = if p == 53 { Proto::Udp } else { Proto::Tcp };
            (Some((a, p)), 0, proto)
        };
        Ok(Virt {
            loc: ctx.loc(v.col),
            v6,
            addr,
            fwmark,
            proto,
            checktype: CheckType::Negotiate,
            service: None,
            checkcommand: "/bin/true".into(),
            checkport: None,
            request: "/".into(),
            receive: String::new(),
            httpmethod: "GET".into(),
            virtualhost: None,
            scheduler: "wrr".into(),
            persistent: None,
            netmask: None,
            schedflags: 0,
            ops: None,
            quiescent: None,
            fallback: None,
            fallbackcommand: None,
            checktimeout: None,
            negotiatetimeout: None,
            checkinterval: None,
            failurecount: None,
            credentials: Vec::new(),
            reals: Vec::new(),
        })
    }

    /// One indented line of the section, starting at byte `at`.
    pub fn key(
        &mut self,
        ctx: &Ctx,
        at: usize,
        notices: &mut Vec<Notice>,
    ) -> Result<(), ConfigError> {
        let (key, val) = ctx.key_value(at)?;
        let k = key.text;
        match k {
            "real" | "real6" => {
                self.six(ctx, &key, "real")?;
                self.reals.extend(real::parse_real(ctx, &val, self.v6)?);
            }
            "fallback" | "fallback6" => {
                self.six(ctx, &key, "fallback")?;
                self.fallback = Some(Fallback::parse(ctx, &val, self.v6)?);
            }
            "checktype" => self.checktype = CheckType::parse(ctx, &val)?,
            "service" => self.service = Some(service(ctx, &val)?),
            "checkcommand" => self.checkcommand = val.command(ctx, k)?,
            "checkport" => self.checkport = Some(val.number(ctx, k, 1, 65535)? as u16),
            "request" => self.request = real::slash(val.quoted(ctx, k)?),
            "receive" => self.receive = val.quoted(ctx, k)?.to_string(),
            "httpmethod" => self.httpmethod = httpmethod(ctx, &val)?,
            "virtualhost" => {
                self.virtualhost = Some(val.nonempty(ctx, k)?.trim_matches('"').into())
            }
            "scheduler" => self.scheduler = scheduler(ctx, &val)?,
            "persistent" => self.persistent = Some(val.number(ctx, k, 1, MAX_PERSIST_TIMEOUT)?),
            "netmask" => self.netmask = Some(netmask(ctx, &val, self.v6)?),
            "schedflags" => self.schedflags = schedflags(ctx, &val)?,
            "protocol" => self.protocol(ctx, &val)?,
            "ops" => self.ops = Some((ctx.loc(key.col), val.yes_no(ctx, k)?)),
            "quiescent" => self.quiescent = Some(val.yes_no(ctx, k)?),
            "fallbackcommand" => self.fallbackcommand = Some(val.command(ctx, k)?),
            "checktimeout" => self.checktimeout = Some(val.positive(ctx, k)?),
            "negotiatetimeout" => self.negotiatetimeout = Some(val.positive(ctx, k)?),
            "failurecount" => self.failurecount = Some(val.positive(ctx, k)?),
            "checkinterval" => self.checkinterval = Some((ctx.loc(key.col), val.positive(ctx, k)?)),
            "login" | "passwd" | "database" | "secret" => {
                val.quoted(ctx, k)?;
                let name = ["login", "passwd", "database", "secret"]
                    .into_iter()
                    .find(|n| *n == k)
                    .unwrap_or("login");
                self.credentials.push((ctx.loc(key.col), name));
            }
            _ => self.unused(ctx, &key, &val, notices)?,
        }
        Ok(())
    }

    /// Section keys checked as ldirectord checks them and reported as not acted on.
    fn unused(
        &self,
        ctx: &Ctx,
        key: &Val,
        val: &Val,
        notices: &mut Vec<Notice>,
    ) -> Result<(), ConfigError> {
        let k = key.text;
        let why = match k {
            "checkcount" => {
                val.positive(ctx, k)?;
                "checkcount: deprecated (see failurecount); ignored"
            }
            "cleanstop" => {
                val.yes_no(ctx, k)?;
                "cleanstop: ignored"
            }
            "monitorfile" => {
                val.nonempty(ctx, k)?;
                "monitorfile: ignored (rvsd logs every transition)"
            }
            "load" => "load: ignored",
            "servicename" | "comment" => return Ok(()),
            "connecttimeout" => {
                return Err(ctx.err(
                    key.col,
                    "connecttimeout: deprecated in favour of negotiatetimeout",
                ))
            }
            _ => alert_key(ctx, key, val)?.ok_or_else(|| {
                ctx.err(
                    key.col,
                    format!("unknown directive \"{k}\" in a virtual section"),
                )
            })?,
        };
        notices.push(Notice {
            loc: ctx.loc(key.col),
            msg: why.to_string(),
        });
        Ok(())
    }

    /// `real6` only in a `virtual6` section, `real` only in a `virtual` one (same for
    /// `fallback`).
    fn six(&self, ctx: &Ctx, key: &Val, base: &str) -> Result<(), ConfigError> {
        let is6 = key.text.ends_with('6');
        if is6 != self.v6 {
            let want = if self.v6 {
                format!("{base}6")
            } else {
                base.to_string()
            };
            return Err(ctx.err(
                key.col,
                format!("cannot use \"{}\" here; use \"{want}\"", key.text),
            ));
        }
        Ok(())
    }

    fn protocol(&mut self, ctx: &Ctx, v: &Val) -> Result<(), ConfigError> {
        match (self.proto, v.text) {
            (Proto::Fwm, "fwm") => Ok(()),
            (Proto::Fwm, _) => Err(ctx.err(
                v.col,
                "protocol must be fwm if the virtual service is a firewall mark",
            )),
            (_, "tcp") => {
                self.proto = Proto::Tcp;
                Ok(())
            }
            (_, "udp") => {
                self.proto = Proto::Udp;
                Ok(())
            }
            _ => Err(ctx.err(
                v.col,
                "protocol must be tcp or udp if the virtual service is an address and port",
            )),
        }
    }

    pub fn key_of(&self) -> ServiceKey {
        let af = if self.v6 { Family::V6 } else { Family::V4 };
        match (self.addr, self.proto) {
            (Some((addr, port)), Proto::Udp) => ServiceKey::Addr {
                proto: Protocol::Udp,
                addr,
                port,
            },
            (Some((addr, port)), _) => ServiceKey::Addr {
                proto: Protocol::Tcp,
                addr,
                port,
            },
            (None, _) => ServiceKey::Fwmark {
                af,
                mark: self.fwmark,
            },
        }
    }

    /// The service (`service`, else from the virtual port; fwmarks: none).
    pub fn service(&self) -> &'static str {
        self.service.unwrap_or_else(|| {
            let port = self.addr.map_or(0, |(_, p)| p);
            SERVICES
                .iter()
                .find(|(_, p)| *p == port && port != 0)
                .map_or("none", |(n, _)| n)
        })
    }

    /// The [`VirtualService`] this section stands for.
    pub fn build(
        self,
        g: &Globals,
        notices: &mut Vec<Notice>,
    ) -> Result<VirtualService, ConfigError> {
        let key = self.key_of();
        let mut conf = ServiceConf::new(key.family(), &self.scheduler);
        conf.flags |= self.schedflags;
        if let Some(t) = self.persistent {
            conf = conf.persistent(t);
            if let Some(m) = self.netmask {
                conf.netmask = m;
            }
        }
        match &self.ops {
            Some((_, true)) if self.proto == Proto::Udp => conf.flags |= svc_flags::ONEPACKET,
            Some((loc, true)) => notices.push(Notice {
                loc: loc.clone(),
                msg: "ops: ignored (one-packet scheduling is for UDP services only)".into(),
            }),
            _ => {}
        }
        let inhibit = self.quiescent.or(g.quiescent).unwrap_or(false);
        let plan = check::Plan::new(&self, g, notices);
        let mut reals: Vec<RealServer> = Vec::new();
        for r in &self.reals {
            let dest = r.dest.port_for(&key);
            if reals
                .iter()
                .any(|x| x.dest.addr == dest.addr && x.dest.port == dest.port)
            {
                notices.push(Notice {
                    loc: r.loc.clone(),
                    msg: format!(
                        "real: duplicate server {} ignored",
                        rvs_core::model::SockAddr(dest.addr, dest.port)
                    ),
                });
                continue;
            }
            reals.push(RealServer {
                loc: r.loc.clone(),
                dest,
                inhibit_on_failure: inhibit,
                alpha: true,
                notify_up: None,
                notify_down: None,
                checks: plan.checks(&self, r),
                slow_start: None,
            });
        }
        let sorry = self.sorry(&key, g);
        // without a fallback server the command still runs (`do_fallback_command`): when
        // the last real server goes down and when one comes back, i.e. the quorum commands
        let lone = |verb: &str| {
            let c = self.fallback_command(g).filter(|_| sorry.is_none())?;
            let mut argv = vec![c, verb.to_string()];
            argv.extend(fallback_args(&key));
            Some(shell(argv))
        };
        let (quorum_down, quorum_up) = (lone("start"), lone("stop"));
        Ok(VirtualService {
            loc: self.loc.clone(),
            keys: vec![key],
            conf,
            reals,
            sorry,
            quorum: 1,
            hysteresis: 0,
            quorum_up,
            // ldirectord starts with every server down and runs `fallbackcommand start`
            quorum_down_at_start: quorum_down.is_some(),
            quorum_down,
            omega: false,
            passive: None,
        })
    }

    /// The fallback server (the section's, else the global one of its family), with the
    /// fallback command; always removed, never quiesced, when a real server is up. As in
    /// ldirectord, which keeps the global one per tcp and udp, it does not reach fwmark
    /// services.
    fn sorry(&self, key: &ServiceKey, g: &Globals) -> Option<Sorry> {
        let global = match (self.proto, self.v6) {
            (Proto::Fwm, _) => None,
            (_, true) => g.fallback6.as_ref(),
            (_, false) => g.fallback.as_ref(),
        };
        let fb = self.fallback.as_ref().or(global)?;
        let port = fb.port.unwrap_or(key.port());
        let dest = DestConf::new(fb.addr, port).fwd(fb.fwd).port_for(key);
        Some(Sorry {
            loc: fb.loc.clone(),
            dest,
            inhibit: false,
            command: self.fallback_command(g).map(|c| shell(vec![c])),
        })
    }

    /// The section's `fallbackcommand`, else the global one.
    fn fallback_command(&self, g: &Globals) -> Option<String> {
        self.fallbackcommand
            .clone()
            .or_else(|| g.fallbackcommand.clone())
    }
}

/// A command ldirectord runs through the shell (`system_wrapper`).
fn shell(argv: Vec<String>) -> Command {
    Command {
        argv,
        shell: true,
        user: None,
        group: None,
    }
}

/// What `do_fallback_command` appends after start / stop: `address:port protocol` (the
/// mark and `fwm` for a firewall mark service).
fn fallback_args(key: &ServiceKey) -> [String; 2] {
    match key {
        ServiceKey::Addr { proto, addr, port } => [
            SockAddr(*addr, *port).to_string(),
            proto.name().to_ascii_lowercase(),
        ],
        ServiceKey::Fwmark { mark, .. } => [mark.to_string(), "fwm".to_string()],
    }
}

fn service(ctx: &Ctx, v: &Val) -> Result<&'static str, ConfigError> {
    SERVICES
        .iter()
        .map(|(n, _)| *n)
        .find(|n| *n == v.text)
        .ok_or_else(|| {
            ctx.err(
                v.col,
                format!(
                    "service must be dns, ftp, http, https, http_proxy, imap, imaps, ldap, ldaps, \
                 mysql, nntp, none, oracle, pgsql, pop, pops, radius, simpletcp, sip, smtp or \
                 submission, not \"{}\"",
                    v.text
                ),
            )
        })
}

fn httpmethod(ctx: &Ctx, v: &Val) -> Result<String, ConfigError> {
    let m = v.text.to_ascii_uppercase();
    if m == "GET" || m == "HEAD" {
        return Ok(m);
    }
    Err(ctx.err(
        v.col,
        format!("httpmethod must be GET or HEAD, not \"{}\"", v.text),
    ))
}

/// Any lowercase name (ldirectord leaves the check of the scheduler to ipvsadm); at most
/// 15 letters, as the kernel takes.
fn scheduler(ctx: &Ctx, v: &Val) -> Result<String, ConfigError> {
    let ok =
        !v.text.is_empty() && v.text.len() <= 15 && v.text.bytes().all(|b| b.is_ascii_lowercase());
    if ok {
        return Ok(v.text.to_string());
    }
    Err(ctx.err(
        v.col,
        format!(
            "scheduler: invalid name \"{}\" (lowercase letters a-z, at most 15)",
            v.text
        ),
    ))
}

/// A dotted IPv4 mask, or an IPv6 prefix length 1–128.
fn netmask(ctx: &Ctx, v: &Val, v6: bool) -> Result<Netmask, ConfigError> {
    if v6 {
        let p = v.text.parse::<u8>().ok().filter(|p| (1..=128).contains(p));
        return p.map(Netmask::V6).ok_or_else(|| {
            ctx.err(
                v.col,
                "invalid netmask: a prefix length between 1 and 128 is required",
            )
        });
    }
    match v.text.parse::<std::net::Ipv4Addr>() {
        Ok(m) => Ok(Netmask::V4(u32::from(m))),
        Err(_) => Err(ctx.err(v.col, "invalid netmask: dotted quad notation is required")),
    }
}

/// `schedflags = flag[,flag…]` (ipvsadm `-b`).
fn schedflags(ctx: &Ctx, v: &Val) -> Result<u32, ConfigError> {
    let mut bits = 0;
    for f in v.text.split(',') {
        bits |= match f {
            "flag-1" | "sh-fallback" | "mh-fallback" => svc_flags::SCHED1,
            "flag-2" | "sh-port" | "mh-port" => svc_flags::SCHED2,
            "flag-3" => svc_flags::SCHED3,
            _ => return Err(ctx.err(v.col, format!("schedflags: invalid flag \"{f}\""))),
        };
    }
    Ok(bits)
}

/// The e-mail alert keys (global or per section): checked, then reported as not acted on.
/// `None` when `key` is not one of them.
pub(crate) fn alert_key(
    ctx: &Ctx,
    key: &Val,
    v: &Val,
) -> Result<Option<&'static str>, ConfigError> {
    let k = key.text;
    Ok(Some(match k {
        "emailalert" => {
            v.nonempty(ctx, k)?;
            "emailalert: ignored (rvs sends no e-mail)"
        }
        "emailalertfrom" => {
            v.nonempty(ctx, k)?;
            "emailalertfrom: ignored (rvs sends no e-mail)"
        }
        "emailalertfreq" => {
            v.number(ctx, k, 0, u32::MAX)?;
            "emailalertfreq: ignored (rvs sends no e-mail)"
        }
        "emailalertstatus" => {
            for s in v.text.split(',').map(str::trim) {
                if ![
                    "all",
                    "none",
                    "starting",
                    "running",
                    "stopping",
                    "reloading",
                ]
                .contains(&s)
                {
                    return Err(ctx.err(v.col, format!("emailalertstatus: invalid status \"{s}\"")));
                }
            }
            "emailalertstatus: ignored (rvs sends no e-mail)"
        }
        "smtp" => {
            let ok = !v.text.is_empty()
                && v.text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
            if !ok {
                return Err(ctx.err(
                    v.col,
                    format!("smtp: invalid SMTP server address \"{}\"", v.text),
                ));
            }
            "smtp: ignored (rvs sends no e-mail)"
        }
        _ => return Ok(None),
    }))
}

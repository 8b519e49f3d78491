//! `real_server`, `sorry_server` and the forwarding method (`lvs_method` / `lb_kind`).

use std::net::IpAddr;
use std::time::Duration;

use rvs_core::model::{tun_flags, DestConf, Family, Forward, TunnelConf, TunnelType};

use super::checks::{self, Inherit, CHECKERS, IGNORED_CHECKERS};
use super::parser::Stmt;
use super::values::{addr_port, arg, bad, command, opt_bool, timer, uint, uint1, After};
use super::Sink;
use crate::spec::{Command, ConfigError, Loc, RealServer};

/// A forwarding method with its tunnel options.
pub type Method = (Forward, TunnelConf);

/// `NAT|DR|TUN [type ipip|gue|gre] [port N] [nocsum|csum|remcsum]`.
pub fn method(s: &Stmt) -> Result<Method, ConfigError> {
    let t = arg(s, 0, "forwarding method")?;
    let fwd = match t.text.as_str() {
        "NAT" => Forward::Masq,
        "DR" => Forward::Route,
        "TUN" => Forward::Tunnel,
        _ => return Err(bad(s.name(), t, "must be NAT, DR or TUN")),
    };
    let mut tun = TunnelConf::default();
    let mut i = 1;
    while let Some(opt) = s.args.get(i) {
        let value = s.args.get(i + 1);
        let need = |what: &str| {
            value.ok_or_else(|| bad(s.name(), opt, &format!("needs a {what} after it")))
        };
        match opt.text.as_str() {
            "type" => {
                let v = need("tunnel type")?;
                tun.kind = match v.text.as_str() {
                    "ipip" => TunnelType::Ipip,
                    "gue" => TunnelType::Gue,
                    "gre" => TunnelType::Gre,
                    _ => return Err(bad(s.name(), v, "tunnel type must be ipip, gue or gre")),
                };
                i += 1;
            }
            "port" => {
                let v = need("port")?;
                tun.port = v
                    .text
                    .parse()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| bad(s.name(), v, "tunnel port must be 1 to 65535"))?;
                i += 1;
            }
            "nocsum" => tun.flags = tun_flags::NOCSUM,
            "csum" => tun.flags = tun_flags::CSUM,
            "remcsum" => tun.flags = tun_flags::REMCSUM,
            _ => return Err(bad(s.name(), opt, "unknown tunnel option")),
        }
        i += 1;
    }
    let wrong = if fwd != Forward::Tunnel && s.args.len() > 1 {
        Some("tunnel options need TUN")
    } else if (tun.kind == TunnelType::Gue) != (tun.port != 0) {
        Some("a gue tunnel needs a port, and only a gue tunnel takes one")
    } else if tun.kind == TunnelType::Ipip && tun.flags != tun_flags::NOCSUM {
        Some("ipip tunnels take no checksum option")
    } else if tun.kind == TunnelType::Gre && tun.flags == tun_flags::REMCSUM {
        Some("gre tunnels do not support remcsum")
    } else {
        None
    };
    match wrong {
        Some(why) => Err(ConfigError::new(
            s.kw.loc.clone(),
            format!("{}: {why}", s.head()),
        )),
        None => Ok((fwd, tun)),
    }
}

/// What a real server takes from its virtual server.
#[derive(Clone, Debug)]
pub struct VsDefaults {
    /// the service's family
    pub family: Family,
    /// the port real servers take (an address service with one port); `None` for fwmarks
    pub port: Option<u16>,
    /// forwarding method
    pub method: Method,
    /// default weight (`weight` on the virtual server, else 1)
    pub weight: i32,
    /// `inhibit_on_failure`
    pub inhibit: bool,
    /// `alpha`
    pub alpha: bool,
    /// checker timers
    pub delay_loop: Duration,
    /// `connect_timeout`
    pub connect_timeout: Duration,
    /// `retry`
    pub retry: Option<u32>,
    /// `delay_before_retry`
    pub delay_before_retry: Option<Duration>,
    /// `warmup`
    pub warmup: Option<Duration>,
    /// `virtualhost`
    pub virtualhost: Option<String>,
    /// what it is, for messages
    pub name: String,
}

/// The port a real (or sorry) server gets, as `check_data.c` sets it: NAT without a port
/// takes the service's; DR and TUN cannot map ports, so they take the service's port (a
/// fwmark service: none).
pub fn server_port(
    d: &VsDefaults,
    fwd: Forward,
    given: u16,
    what: &str,
    loc: &Loc,
    sink: &mut Sink,
) -> u16 {
    if fwd == Forward::Masq {
        return if given == 0 {
            d.port.unwrap_or(0)
        } else {
            given
        };
    }
    let want = d.port.unwrap_or(0);
    if given != 0 && given != want {
        sink.notice(
            loc,
            format!(
                "{}: {what} port {given} differs from the service's and cannot be mapped \
                 without NAT; {want} used",
                d.name
            ),
        );
    }
    want
}

/// RS-level settings while a block is read.
#[derive(Default)]
struct RsOpts {
    weight: Option<i32>,
    method: Option<Method>,
    uthreshold: u32,
    lthreshold: Option<(u32, Loc)>,
    inhibit: Option<bool>,
    alpha: Option<bool>,
    notify_up: Option<Command>,
    notify_down: Option<Command>,
    retry: Option<u32>,
    delay_before_retry: Option<Duration>,
    warmup: Option<Duration>,
    connect_timeout: Option<Duration>,
    delay_loop: Option<Duration>,
    virtualhost: Option<String>,
}

impl RsOpts {
    fn take(&mut self, s: &Stmt, sink: &mut Sink) -> Result<bool, ConfigError> {
        match s.name() {
            "weight" => self.weight = Some(uint1(s, 0, i32::MAX as u64)? as i32),
            "lvs_method" => self.method = Some(method(s)?),
            "uthreshold" => self.uthreshold = uint1(s, 0, u64::from(u32::MAX))? as u32,
            "lthreshold" => {
                let v = uint1(s, 0, u64::from(u32::MAX))? as u32;
                self.lthreshold = Some((v, s.args[0].loc.clone()));
            }
            "inhibit_on_failure" => self.inhibit = Some(opt_bool(s)?),
            "alpha" => self.alpha = Some(opt_bool(s)?),
            "notify_up" => self.notify_up = Some(command(s, After::UserGroup, sink)?),
            "notify_down" => self.notify_down = Some(command(s, After::UserGroup, sink)?),
            "retry" => self.retry = Some(uint1(s, 0, u64::from(u32::MAX))? as u32),
            "delay_before_retry" => self.delay_before_retry = Some(timer(s, Duration::ZERO)?),
            "warmup" => self.warmup = Some(timer(s, Duration::ZERO)?),
            "connect_timeout" => self.connect_timeout = Some(timer(s, Duration::from_micros(1))?),
            "delay_loop" => self.delay_loop = Some(timer(s, Duration::from_micros(1))?),
            "virtualhost" => self.virtualhost = Some(arg(s, 0, "host name")?.text.clone()),
            "smtp_alert" | "snmp_name" => sink.ignored(s, "rvs sends no SMTP alerts nor SNMP"),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// A `real_server` block; `None` when it is dropped (other family than the service, not
/// tunnelled, as keepalived skips it).
pub fn real_server(
    s: &Stmt,
    d: &VsDefaults,
    sink: &mut Sink,
) -> Result<Option<RealServer>, ConfigError> {
    let (addr, given_port) = addr_port(s)?;
    let mut o = RsOpts::default();
    let mut checker_stmts = Vec::new();
    for st in s.block.as_deref().unwrap_or(&[]) {
        if CHECKERS.contains(&st.name()) {
            checker_stmts.push(st);
        } else if IGNORED_CHECKERS.contains(&st.name()) || st.name().starts_with("track_") {
            sink.ignored(st, "rvs does not run this checker");
        } else if !o.take(st, sink)? {
            sink.unknown("real_server", st);
        }
    }
    let (fwd, tun) = o.method.unwrap_or(d.method);
    if Family::of(&addr) != d.family && fwd != Forward::Tunnel {
        sink.notice(
            &s.kw.loc,
            format!(
                "{}: real_server {addr} is of the other address family, skipped",
                d.name
            ),
        );
        return Ok(None);
    }
    let port = server_port(d, fwd, given_port, "real_server", &s.kw.loc, sink);
    let mut dest = DestConf::new(addr, port)
        .fwd(fwd)
        .weight(o.weight.unwrap_or(d.weight));
    dest.tun = tun;
    dest.u_threshold = o.uthreshold;
    if let Some((l, loc)) = o.lthreshold {
        if o.uthreshold != 0 && l > o.uthreshold {
            return Err(ConfigError::new(
                loc,
                format!("lthreshold {l}: above uthreshold {}", o.uthreshold),
            ));
        }
        dest.l_threshold = l;
    }
    let inh = Inherit {
        addr,
        port,
        delay_loop: o.delay_loop.unwrap_or(d.delay_loop),
        connect_timeout: o.connect_timeout.unwrap_or(d.connect_timeout),
        retry: o.retry.or(d.retry),
        delay_before_retry: o.delay_before_retry.or(d.delay_before_retry),
        warmup: o.warmup.or(d.warmup),
        virtualhost: o.virtualhost.clone().or_else(|| d.virtualhost.clone()),
    };
    let rs_alpha = o.alpha.unwrap_or(d.alpha);
    let mut checks_out = Vec::new();
    let mut alpha = checker_stmts.is_empty() && rs_alpha;
    for st in checker_stmts {
        if let Some((check, a)) = checks::checker(st, &inh, sink)? {
            alpha |= a.unwrap_or(rs_alpha);
            checks_out.push(check);
        }
    }
    Ok(Some(RealServer {
        loc: s.kw.loc.clone(),
        dest,
        inhibit_on_failure: o.inhibit.unwrap_or(d.inhibit),
        alpha,
        notify_up: o.notify_up,
        notify_down: o.notify_down,
        checks: checks_out,
        slow_start: None,
    }))
}

/// A real server's identity for duplicate removal.
pub fn same(a: &DestConf, b: &DestConf) -> bool {
    a.addr == b.addr && a.port == b.port
}

/// The family of the first real server of a block (for fwmark services without
/// `ip_family`).
pub fn first_family(body: &[Stmt]) -> Option<Family> {
    body.iter()
        .filter(|s| s.name() == "real_server")
        .find_map(|s| s.args.first()?.text.parse::<IpAddr>().ok())
        .map(|a| Family::of(&a))
}

/// `sorry_server <IP> [<PORT>]` with its method and port resolved.
pub fn sorry_dest(
    s: &Stmt,
    method: Method,
    d: &VsDefaults,
    sink: &mut Sink,
) -> Result<DestConf, ConfigError> {
    let (addr, given) = addr_port(s)?;
    let port = server_port(d, method.0, given, "sorry_server", &s.kw.loc, sink);
    let mut dest = DestConf::new(addr, port).fwd(method.0).weight(1);
    dest.tun = method.1;
    Ok(dest)
}

/// `quorum` / `hysteresis` values.
pub fn quorum_value(s: &Stmt, min: u64) -> Result<u32, ConfigError> {
    Ok(uint(s, 0, min, u64::from(u32::MAX))? as u32)
}

//! The top level and `virtual_server`: the IPVS service(s) it stands for, their settings, and
//! the corrections keepalived's `check_data.c` makes (protocol defaulting to UDP, `ops` only
//! for UDP, a zero port forcing persistence, duplicate real servers, quorum and hysteresis).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use rvs_core::model::{
    svc_flags, Family, Forward, Netmask, Protocol, ServiceConf, ServiceKey, TunnelConf,
    DEFAULT_PERSIST_TIMEOUT, MAX_PERSIST_TIMEOUT, SCHEDNAME_MAXLEN,
};
use rvs_core::sched::SCHEDULERS;

use super::group::{self, Group, Member};
use super::lexer::Token;
use super::parser::Stmt;
use super::real::{self, Method, VsDefaults};
use super::values::{arg, bad, command, ip, opt_bool, port, timer, uint, uint1, After};
use super::Sink;
use crate::spec::{Command, ConfigError, Sorry, VirtualService};

/// Top-level blocks keepalived has that rvs does not act on, and why.
fn ignored_top(name: &str) -> Option<&'static str> {
    Some(match name {
        n if n.starts_with("vrrp_") => "rvs does not run VRRP",
        "global_defs" => "keepalived's global settings do not apply to rvs",
        "static_ipaddress" | "static_routes" | "static_rules" => {
            "rvs does not manage addresses or routes"
        }
        "SSL" => "rvs's SSL_GET uses no client certificate",
        "linkbeat_interfaces"
        | "garp_group"
        | "bfd_instance"
        | "track_file"
        | "track_process"
        | "net_namespace"
        | "instance"
        | "use_pid_dir"
        | "linkbeat_use_polling" => "not part of the LVS configuration rvs reads",
        _ => return None,
    })
}

/// Every virtual service of the file.
pub fn services(top: &[Stmt], sink: &mut Sink) -> Result<Vec<VirtualService>, ConfigError> {
    let groups = group::groups(top, sink)?;
    let mut out = Vec::new();
    for s in top {
        match s.name() {
            "virtual_server_group" => {}
            "virtual_server" => {
                let vs = virtual_server(s, &groups, sink)?;
                if vs.reals.is_empty() {
                    // keepalived's vs_end_handler drops such a service
                    sink.notice(
                        &s.kw.loc,
                        format!("{}: no real servers, ignored (as keepalived)", s.head()),
                    );
                } else {
                    out.push(vs);
                }
            }
            n => match ignored_top(n) {
                Some(why) => sink.ignored(s, why),
                None => sink.unknown("keepalived.conf", s),
            },
        }
    }
    Ok(out)
}

/// What a `virtual_server` line names.
enum Head<'g> {
    Addr(IpAddr, u16),
    Fwmark(u32),
    Group(&'g Group),
}

fn head<'g>(s: &Stmt, groups: &'g BTreeMap<String, Group>) -> Result<Head<'g>, ConfigError> {
    let first = arg(s, 0, "address, fwmark or group")?;
    let h =
        match first.text.as_str() {
            "fwmark" => Head::Fwmark(uint(s, 1, 1, u64::from(u32::MAX))? as u32),
            "group" => {
                let name = arg(s, 1, "group name")?;
                Head::Group(groups.get(&name.text).ok_or_else(|| {
                    bad("virtual_server group", name, "no such virtual_server_group")
                })?)
            }
            _ => {
                let a = ip(s.name(), first)?;
                let p = match s.args.get(1) {
                    Some(t) => port(s.name(), t)?,
                    None => 0,
                };
                Head::Addr(a, p)
            }
        };
    if let Some(extra) = s.args.get(2) {
        return Err(bad(s.name(), extra, "unexpected word"));
    }
    Ok(h)
}

/// The settings of a `virtual_server` block while it is read.
struct VsOpts {
    sched: String,
    flags: u32,
    persist: Option<u32>,
    granularity: Option<Token>,
    pe: Option<String>,
    proto: Option<(Protocol, Token)>,
    method: Option<Method>,
    family: Option<(Family, Token)>,
    sorry_stmt: Option<Stmt>,
    sorry_inhibit: bool,
    sorry_method: Option<Method>,
    quorum: u32,
    hysteresis: u32,
    quorum_up: Option<Command>,
    quorum_down: Option<Command>,
    omega: bool,
    defaults: VsDefaults,
}

impl VsOpts {
    fn new(name: String) -> VsOpts {
        VsOpts {
            sched: "wlc".to_string(),
            flags: 0,
            persist: None,
            granularity: None,
            pe: None,
            proto: None,
            method: None,
            family: None,
            sorry_stmt: None,
            sorry_inhibit: false,
            sorry_method: None,
            quorum: 1,
            hysteresis: 0,
            quorum_up: None,
            quorum_down: None,
            omega: false,
            defaults: VsDefaults {
                family: Family::V4,
                port: None,
                method: (Forward::Masq, TunnelConf::default()),
                weight: 1,
                inhibit: false,
                alpha: false,
                delay_loop: Duration::from_secs(60),
                connect_timeout: Duration::from_secs(5),
                retry: None,
                delay_before_retry: None,
                warmup: None,
                virtualhost: None,
                name,
            },
        }
    }

    /// Take one statement of the block; `Ok(false)` when it is not a VS keyword.
    fn take(&mut self, s: &Stmt, sink: &mut Sink) -> Result<bool, ConfigError> {
        let d = &mut self.defaults;
        match s.name() {
            "lvs_sched" | "lb_algo" => self.sched = scheduler(s)?,
            "ops" => self.flags |= svc_flags::ONEPACKET,
            "flag-1" => self.flags |= svc_flags::SCHED1,
            "flag-2" => self.flags |= svc_flags::SCHED2,
            "flag-3" => self.flags |= svc_flags::SCHED3,
            "sh-port" | "sh-fallback" | "mh-port" | "mh-fallback" => self.sched_flag(s, sink),
            "lvs_method" | "lb_kind" => self.method = Some(real::method(s)?),
            "persistence_timeout" => {
                self.persist = Some(match s.args.is_empty() {
                    true => DEFAULT_PERSIST_TIMEOUT,
                    false => uint1(s, 1, u64::from(MAX_PERSIST_TIMEOUT))? as u32,
                })
            }
            "persistence_granularity" => {
                self.granularity = Some(arg(s, 0, "netmask or prefix length")?.clone());
                // keepalived's pgr_handler: a granularity makes the service persistent
                self.persist.get_or_insert(DEFAULT_PERSIST_TIMEOUT);
            }
            "persistence_engine" => {
                let t = arg(s, 0, "engine name")?;
                if t.text.len() > SCHEDNAME_MAXLEN {
                    return Err(bad(s.name(), t, "longer than 15 characters"));
                }
                self.pe = Some(t.text.clone());
            }
            "protocol" => self.proto = Some((protocol(s)?, s.args[0].clone())),
            "ip_family" => {
                let t = arg(s, 0, "inet or inet6")?;
                let f = match t.text.as_str() {
                    "inet" => Family::V4,
                    "inet6" => Family::V6,
                    _ => return Err(bad(s.name(), t, "must be inet or inet6")),
                };
                self.family = Some((f, t.clone()));
            }
            "sorry_server" => self.sorry_stmt = Some(s.clone()),
            "sorry_server_inhibit" => self.sorry_inhibit = opt_bool(s)?,
            "sorry_server_lvs_method" => self.sorry_method = Some(real::method(s)?),
            "quorum" => self.quorum = real::quorum_value(s, 1)?,
            "hysteresis" => self.hysteresis = real::quorum_value(s, 0)?,
            "quorum_up" => self.quorum_up = Some(command(s, After::UserGroup, sink)?),
            "quorum_down" => self.quorum_down = Some(command(s, After::UserGroup, sink)?),
            "omega" => self.omega = true,
            "alpha" => d.alpha = true,
            "inhibit_on_failure" => d.inhibit = opt_bool(s)?,
            "weight" => d.weight = uint1(s, 1, i32::MAX as u64)? as i32,
            "delay_loop" => d.delay_loop = timer(s, Duration::from_micros(1))?,
            "connect_timeout" => d.connect_timeout = timer(s, Duration::from_micros(1))?,
            "retry" => d.retry = Some(uint1(s, 0, u64::from(u32::MAX))? as u32),
            "delay_before_retry" => d.delay_before_retry = Some(timer(s, Duration::ZERO)?),
            "warmup" => d.warmup = Some(timer(s, Duration::ZERO)?),
            "virtualhost" => d.virtualhost = Some(arg(s, 0, "host name")?.text.clone()),
            "ha_suspend" | "smtp_alert" | "snmp_name" | "hashed" => {
                sink.ignored(s, "rvs does not act on it")
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `sh-*` and `mh-*` apply to the scheduler set so far, as in keepalived.
    fn sched_flag(&mut self, s: &Stmt, sink: &mut Sink) {
        let (sched, bit) = match s.name() {
            "sh-port" => ("sh", svc_flags::SCHED_SH_PORT),
            "sh-fallback" => ("sh", svc_flags::SCHED_SH_FALLBACK),
            "mh-port" => ("mh", svc_flags::SCHED_MH_PORT),
            _ => ("mh", svc_flags::SCHED_MH_FALLBACK),
        };
        if self.sched == sched {
            self.flags |= bit;
        } else {
            sink.ignored(s, &format!("it applies to the {sched} scheduler only"));
        }
    }
}

fn scheduler(s: &Stmt) -> Result<String, ConfigError> {
    let t = arg(s, 0, "scheduler")?;
    if !SCHEDULERS.contains(&t.text.as_str()) {
        return Err(bad(
            s.name(),
            t,
            &format!("unknown scheduler (one of {})", SCHEDULERS.join(", ")),
        ));
    }
    Ok(t.text.clone())
}

fn protocol(s: &Stmt) -> Result<Protocol, ConfigError> {
    let t = arg(s, 0, "protocol")?;
    match t.text.to_ascii_uppercase().as_str() {
        "TCP" => Ok(Protocol::Tcp),
        "UDP" => Ok(Protocol::Udp),
        "SCTP" => Ok(Protocol::Sctp),
        _ => Err(bad(s.name(), t, "must be TCP, UDP or SCTP")),
    }
}

fn virtual_server(
    s: &Stmt,
    groups: &BTreeMap<String, Group>,
    sink: &mut Sink,
) -> Result<VirtualService, ConfigError> {
    let head = head(s, groups)?;
    let body = s.block.as_deref().unwrap_or(&[]);
    let mut o = VsOpts::new(s.head());
    let mut reals = Vec::new();
    for st in body {
        if st.name() == "real_server" {
            reals.push(st);
        } else if !o.take(st, sink)? {
            sink.unknown("virtual_server", st);
        }
    }
    let family = family(&head, &o, body, sink);
    o.defaults.family = family;
    let members = match &head {
        Head::Group(g) => g.members.clone(),
        _ => Vec::new(),
    };
    let has_addr = match &head {
        Head::Addr(..) => true,
        Head::Fwmark(_) => false,
        Head::Group(_) => members.iter().any(|m| matches!(m, Member::Addr { .. })),
    };
    let proto = resolve_proto(s, &mut o, has_addr, sink);
    let ports = match &head {
        Head::Addr(_, p) => vec![*p],
        _ => members
            .iter()
            .filter_map(|m| match m {
                Member::Addr { port, .. } => Some(*port),
                Member::Fwmark { .. } => None,
            })
            .collect(),
    };
    if has_addr && o.persist.is_none() && ports.contains(&0) {
        sink.notice(
            &s.kw.loc,
            format!(
                "{}: a zero port is only valid for a persistent service; persistence_timeout \
                 {DEFAULT_PERSIST_TIMEOUT} set",
                o.defaults.name
            ),
        );
        o.persist = Some(DEFAULT_PERSIST_TIMEOUT);
    }
    let one_port = ports
        .first()
        .copied()
        .filter(|p| ports.iter().all(|q| q == p));
    o.defaults.port = if has_addr && !members.iter().any(|m| matches!(m, Member::Fwmark { .. })) {
        one_port
    } else {
        None
    };
    o.defaults.method = o.method.unwrap_or(o.defaults.method);
    let conf = service_conf(&o, family)?;
    let keys = keys(&head, proto, family);
    let reals = real_servers(&reals, &o.defaults, sink)?;
    let sorry = match &o.sorry_stmt {
        Some(st) => {
            let m = o.sorry_method.unwrap_or(o.defaults.method);
            Some(Sorry {
                loc: st.kw.loc.clone(),
                dest: real::sorry_dest(st, m, &o.defaults, sink)?,
                inhibit: o.sorry_inhibit,
                command: None,
            })
        }
        None => None,
    };
    let (quorum, hysteresis) = quorum(&o, &reals, &s.kw.loc, sink);
    Ok(VirtualService {
        loc: s.kw.loc.clone(),
        keys,
        conf,
        reals,
        sorry,
        quorum,
        hysteresis,
        quorum_up: o.quorum_up,
        quorum_down: o.quorum_down,
        omega: o.omega,
        quorum_down_at_start: false,
        passive: None,
    })
}

/// The family: the address's, else `ip_family`, else the group's or first real server's.
fn family(head: &Head, o: &VsOpts, body: &[Stmt], sink: &mut Sink) -> Family {
    let from_head = match head {
        Head::Addr(a, _) => Some(Family::of(a)),
        Head::Group(g) => g.members.iter().find_map(|m| match m {
            Member::Addr { first, .. } => Some(Family::of(first)),
            Member::Fwmark { af, .. } => *af,
        }),
        Head::Fwmark(_) => None,
    };
    match (from_head, &o.family) {
        (Some(h), Some((f, t))) if h != *f => {
            sink.notice(
                &t.loc,
                format!(
                    "{}: ip_family {} conflicts with its addresses, ignored",
                    o.defaults.name, t.text
                ),
            );
            h
        }
        (Some(h), _) => h,
        (None, Some((f, _))) => *f,
        (None, None) => real::first_family(body).unwrap_or(Family::V4),
    }
}

fn resolve_proto(s: &Stmt, o: &mut VsOpts, has_addr: bool, sink: &mut Sink) -> Protocol {
    let name = o.defaults.name.clone();
    if !has_addr {
        if let Some((_, t)) = &o.proto {
            sink.notice(
                &t.loc,
                format!("{name}: protocol {} ignored for a fwmark service", t.text),
            );
        }
        return Protocol::Tcp;
    }
    let proto = match &o.proto {
        Some((p, _)) => *p,
        None => {
            sink.notice(
                &s.kw.loc,
                format!("{name}: no protocol set, UDP assumed (as keepalived)"),
            );
            Protocol::Udp
        }
    };
    if o.flags & svc_flags::ONEPACKET != 0 && proto != Protocol::Udp {
        sink.notice(
            &s.kw.loc,
            format!("{name}: ops (one-packet scheduling) needs UDP, cleared"),
        );
        o.flags &= !svc_flags::ONEPACKET;
    }
    proto
}

fn service_conf(o: &VsOpts, family: Family) -> Result<ServiceConf, ConfigError> {
    let mut conf = ServiceConf::new(family, &o.sched);
    conf.flags |= o.flags;
    if let Some(t) = o.persist {
        conf = conf.persistent(t);
    }
    conf.pe = o.pe.clone();
    if let Some(t) = &o.granularity {
        conf.netmask = match family {
            Family::V4 => Netmask::V4(u32::from(t.text.parse::<Ipv4Addr>().map_err(|_| {
                bad(
                    "persistence_granularity",
                    t,
                    "must be an IPv4 netmask such as 255.255.255.0",
                )
            })?)),
            Family::V6 => Netmask::V6(
                t.text
                    .parse::<u8>()
                    .ok()
                    .filter(|p| (1..=128).contains(p))
                    .ok_or_else(|| {
                        bad(
                            "persistence_granularity",
                            t,
                            "must be an IPv6 prefix length 1 to 128",
                        )
                    })?,
            ),
        };
    }
    Ok(conf)
}

fn keys(head: &Head, proto: Protocol, family: Family) -> Vec<ServiceKey> {
    match head {
        Head::Addr(addr, port) => vec![ServiceKey::Addr {
            proto,
            addr: *addr,
            port: *port,
        }],
        Head::Fwmark(mark) => vec![ServiceKey::Fwmark {
            af: family,
            mark: *mark,
        }],
        Head::Group(g) => g
            .members
            .iter()
            .flat_map(|m| match m {
                Member::Addr { port, .. } => m
                    .addrs()
                    .into_iter()
                    .map(|addr| ServiceKey::Addr {
                        proto,
                        addr,
                        port: *port,
                    })
                    .collect::<Vec<_>>(),
                Member::Fwmark { mark, af } => vec![ServiceKey::Fwmark {
                    af: af.unwrap_or(family),
                    mark: *mark,
                }],
            })
            .collect(),
    }
}

fn real_servers(
    stmts: &[&Stmt],
    d: &VsDefaults,
    sink: &mut Sink,
) -> Result<Vec<crate::spec::RealServer>, ConfigError> {
    let mut out: Vec<crate::spec::RealServer> = Vec::new();
    for st in stmts {
        let Some(rs) = real::real_server(st, d, sink)? else {
            continue;
        };
        if let Some(first) = out.iter().find(|r| real::same(&r.dest, &rs.dest)) {
            let msg = format!(
                "{}: real_server {} duplicates the one at {}, removed",
                d.name,
                rvs_core::model::SockAddr(rs.dest.addr, rs.dest.port),
                first.loc
            );
            sink.notice(&rs.loc, msg);
            continue;
        }
        out.push(rs);
    }
    Ok(out)
}

/// Quorum above the total weight is lowered to it; hysteresis at or above the quorum is
/// lowered to quorum − 1 (keepalived's corrections).
fn quorum(
    o: &VsOpts,
    reals: &[crate::spec::RealServer],
    loc: &crate::spec::Loc,
    sink: &mut Sink,
) -> (u32, u32) {
    let name = &o.defaults.name;
    let total: u64 = reals.iter().map(|r| r.dest.weight.max(0) as u64).sum();
    let mut q = o.quorum;
    if u64::from(q) > total && total > 0 {
        sink.notice(
            loc,
            format!("{name}: quorum {q} exceeds the total weight {total}, lowered to {total}"),
        );
        q = total as u32;
    }
    let mut h = o.hysteresis;
    if h >= q {
        sink.notice(
            loc,
            format!(
                "{name}: hysteresis {h} is not below quorum {q}, set to {}",
                q - 1
            ),
        );
        h = q - 1;
    }
    (q, h)
}

//! The service table: `-L` in all its modes, `-L -t|-u|--sctp-service|-f` (one service) and
//! `-S` (`ipvsadm.c: print_title, print_service_entry, print_tunnel_rule, list_all`).

use rvs_core::dest::Dest;
use rvs_core::ipvs::Ipvs;
use rvs_core::model::{
    svc_flags, Family, Forward, Netmask, Protocol, ProxyProtocol, ServiceKey, TunnelType,
};
use rvs_core::service::Service;
use rvs_core::stats::{Counters, Rates};

use super::num::largenum;
use super::sort::{dests_in_order, services_in_order};
use super::{addrport, cut};
use crate::{ListOpts, Names};

/// The column layout a listing uses, by ipvsadm's priority.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Stats,
    Rate,
    Thresholds,
    PersistConn,
    TunInfo,
    Plain,
    Rule,
}

impl Mode {
    fn of(o: &ListOpts) -> Mode {
        if o.stats {
            Mode::Stats
        } else if o.rate {
            Mode::Rate
        } else if o.thresholds {
            Mode::Thresholds
        } else if o.persistent_conn {
            Mode::PersistConn
        } else if o.tun_info {
            Mode::TunInfo
        } else {
            Mode::Plain
        }
    }
}

struct Ctx<'a> {
    ipvs: &'a Ipvs,
    names: &'a dyn Names,
    opts: &'a ListOpts,
    mode: Mode,
}

/// `ipvsadm -L [options]`: the version header, the titles, then every service (sorted unless
/// `--nosort`) with its destinations. Services come in the core's order.
pub fn list_all(ipvs: &Ipvs, names: &dyn Names, opts: &ListOpts) -> String {
    list_all_from(ipvs, ipvs.services().collect(), names, opts)
}

/// [`list_all`] with the services in a given dump order (`--nosort` prints that order; the
/// sort's result depends on it where ipvsadm's comparison is not transitive, so the golden
/// tests pass the kernel's recorded dump order here).
pub fn list_all_from(
    ipvs: &Ipvs,
    dump: Vec<&Service>,
    names: &dyn Names,
    opts: &ListOpts,
) -> String {
    let mut out = format!(
        "IP Virtual Server version 1.2.1 (size={})\n",
        ipvs.conn_tab_size()
    );
    let ctx = Ctx {
        ipvs,
        names,
        opts,
        mode: Mode::of(opts),
    };
    out.push_str(title(ctx.mode));
    for svc in services_in_order(dump, opts.nosort) {
        service_entry(&ctx, svc, &mut out);
    }
    out
}

/// `ipvsadm -L <service> [options]`: the titles and that service (no version header), or
/// `None` when it does not exist (ipvsadm then prints `No such service` and exits 1).
pub fn list_service(
    ipvs: &Ipvs,
    key: &ServiceKey,
    names: &dyn Names,
    opts: &ListOpts,
) -> Option<String> {
    let svc = ipvs.service(key)?;
    let ctx = Ctx {
        ipvs,
        names,
        opts,
        mode: Mode::of(opts),
    };
    let mut out = title(ctx.mode).to_string();
    service_entry(&ctx, svc, &mut out);
    Some(out)
}

/// `ipvsadm -S [-n]`: the rules that rebuild the table (`-A …` then its `-a …` lines).
///
/// With `opts.extended` (the `--extended` extension) an `-a` line also carries the rvs options
/// ipvsadm does not know (` --proxy-protocol v1|v2` for a server that sends a PROXY header);
/// without it the text is exactly ipvsadm's, so `ipvsadm -R` still reads it.
pub fn save(ipvs: &Ipvs, names: &dyn Names, opts: &ListOpts) -> String {
    save_from(ipvs, ipvs.services().collect(), names, opts)
}

/// [`save`] with the services in a given dump order (see [`list_all_from`]).
pub fn save_from(ipvs: &Ipvs, dump: Vec<&Service>, names: &dyn Names, opts: &ListOpts) -> String {
    let ctx = Ctx {
        ipvs,
        names,
        opts,
        mode: Mode::Rule,
    };
    let mut out = String::new();
    for svc in services_in_order(dump, opts.nosort) {
        service_entry(&ctx, svc, &mut out);
    }
    out
}

fn title(mode: Mode) -> &'static str {
    match mode {
        Mode::Stats => "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n  -> RemoteAddress:Port\n",
        Mode::Rate => "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n  -> RemoteAddress:Port\n",
        Mode::Thresholds => "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n  -> RemoteAddress:Port\n",
        Mode::PersistConn => "Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn \n  -> RemoteAddress:Port\n",
        Mode::TunInfo => "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n",
        Mode::Plain => "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
        Mode::Rule => "",
    }
}

/// `-f <mark>[ -6]` / `FWM  <mark>[ IPv6]` (the mark printed as a signed int), or the
/// protocol and `addr:port`.
fn svc_name(ctx: &Ctx, key: &ServiceKey) -> String {
    let rule = ctx.mode == Mode::Rule;
    match key {
        ServiceKey::Fwmark { af, mark } => {
            let m = *mark as i32;
            match (rule, af) {
                (true, Family::V4) => format!("-f {m}"),
                (true, Family::V6) => format!("-f {m} -6"),
                (false, Family::V4) => format!("FWM  {m}"),
                (false, Family::V6) => format!("FWM  {m} IPv6"),
            }
        }
        ServiceKey::Addr { proto, addr, port } => {
            let v = addrport(addr, *port, *proto, ctx.names, ctx.opts.numeric);
            if rule {
                return format!("{} {v}", rule_option(*proto));
            }
            let s = format!("{:<4} {v}", proto.name());
            if addr.is_ipv4() {
                cut(s, 33)
            } else {
                s
            }
        }
    }
}

fn rule_option(proto: Protocol) -> &'static str {
    match proto {
        Protocol::Tcp => "-t",
        Protocol::Udp => "-u",
        Protocol::Sctp => "--sctp-service",
        Protocol::Ip => "--xxx-service",
    }
}

fn service_entry(ctx: &Ctx, svc: &Service, out: &mut String) {
    let name = svc_name(ctx, &svc.key);
    match ctx.mode {
        Mode::Rule => out.push_str(&rule_service_line(&name, svc)),
        Mode::Stats => {
            let pad = format!("{name:<33}");
            out.push_str(&counters_line(&pad, &svc.stats.shown(), ctx.opts.exact));
        }
        Mode::Rate => {
            let pad = format!("{name:<33}");
            out.push_str(&rates_line(&pad, &svc.stats.rates(), ctx.opts.exact));
        }
        _ => out.push_str(&plain_service_line(&name, svc)),
    }
    out.push('\n');
    let dests = dests_in_order(ctx.ipvs.service_dests(svc).collect(), ctx.opts.nosort);
    for d in dests {
        out.push_str(&dest_line(ctx, &name, &svc.key, d));
        out.push('\n');
    }
}

/// `sh-fallback,sh-port` / `mh-…` / `flag-1,flag-2,flag-3`, or `None` without flag bits.
fn sched_flags(svc: &Service) -> Option<String> {
    let f = svc.conf.flags;
    let names: [&str; 3] = match svc.conf.scheduler.as_str() {
        "sh" => ["sh-fallback", "sh-port", ""],
        "mh" => ["mh-fallback", "mh-port", ""],
        _ => ["flag-1", "flag-2", "flag-3"],
    };
    let bits = [svc_flags::SCHED1, svc_flags::SCHED2, svc_flags::SCHED3];
    if f & svc_flags::SCHED_MASK == 0 {
        return None;
    }
    let set: Vec<&str> = bits
        .iter()
        .zip(names)
        .filter(|(b, n)| f & **b != 0 && !n.is_empty())
        .map(|(_, n)| n)
        .collect();
    Some(set.join(","))
}

/// ` mask <dotted>` / ` mask <plen>` unless the mask is full (`word` is `mask` or `-M`).
fn mask_text(word: &str, mask: &Netmask) -> String {
    match mask {
        Netmask::V4(m) if *m != u32::MAX => {
            format!(" {word} {}", std::net::Ipv4Addr::from(*m))
        }
        Netmask::V6(p) if *p != 128 => format!(" {word} {p}"),
        _ => String::new(),
    }
}

fn plain_service_line(name: &str, svc: &Service) -> String {
    let c = &svc.conf;
    let mut s = format!("{name} {}", c.scheduler);
    if let Some(f) = sched_flags(svc) {
        s.push_str(&format!(" ({f})"));
    }
    if c.is_persistent() {
        s.push_str(&format!(" persistent {}", c.timeout));
        s.push_str(&mask_text("mask", &c.netmask));
        if let Some(pe) = c.pe.as_deref().filter(|p| !p.is_empty()) {
            s.push_str(&format!(" pe {pe}"));
        }
    }
    if c.is_ops() {
        s.push_str(" ops");
    }
    s
}

fn rule_service_line(name: &str, svc: &Service) -> String {
    let c = &svc.conf;
    let mut s = format!("-A {name} -s {}", c.scheduler);
    if c.is_persistent() {
        s.push_str(&format!(" -p {}", c.timeout));
        s.push_str(&mask_text("-M", &c.netmask));
    }
    if let Some(pe) = c.pe.as_deref().filter(|p| !p.is_empty()) {
        s.push_str(&format!(" --pe {pe}"));
    }
    if c.is_ops() {
        s.push_str(" -o");
    }
    if let Some(f) = sched_flags(svc) {
        s.push_str(&format!(" -b {f}"));
    }
    s
}

fn counters_line(name: &str, c: &Counters, exact: bool) -> String {
    let mut s = name.to_string();
    for n in [c.conns, c.inpkts, c.outpkts, c.inbytes, c.outbytes] {
        s.push_str(&largenum(n, exact));
    }
    s
}

fn rates_line(name: &str, r: &Rates, exact: bool) -> String {
    let mut s = name.to_string();
    for n in [r.cps, r.inpps, r.outpps, r.inbps, r.outbps] {
        s.push_str(&largenum(n, exact));
    }
    s
}

fn dest_line(ctx: &Ctx, svc_name: &str, key: &ServiceKey, d: &Dest) -> String {
    // fwmark services have no protocol in the kernel's dump: ports are never named
    let proto = if key.is_fwmark() {
        Protocol::Ip
    } else {
        key.protocol()
    };
    let mut dname = addrport(&d.addr, d.port, proto, ctx.names, ctx.opts.numeric);
    if ctx.mode == Mode::Rule {
        let mut line = rule_dest_line(svc_name, &dname, d);
        if ctx.opts.extended {
            line.push_str(&rule_extensions(d));
        }
        return line;
    }
    if d.addr.is_ipv4() {
        dname = cut(dname, 28);
    }
    let (w, a, i) = (d.weight, d.activeconns, d.inactconns);
    match ctx.mode {
        Mode::Stats => counters_line(
            &format!("  -> {dname:<28}"),
            &d.stats.shown(),
            ctx.opts.exact,
        ),
        Mode::Rate => format!(
            "  -> {dname:<28}{}",
            dest_rate_cols(&d.stats.rates(), ctx.opts.exact)
        ),
        Mode::Thresholds => format!(
            "  -> {dname:<28} {:<10} {:<10} {a:<10} {i:<10}",
            d.u_threshold, d.l_threshold
        ),
        Mode::PersistConn => format!(
            "  -> {dname:<28} {:<9} {:<11} {a:<10} {i:<10}",
            w as u32, d.persistconns
        ),
        Mode::TunInfo => format!(
            "  -> {dname:<28} {:<7} {:<13} {w:<6} {a:<10} {i:<10}",
            d.fwd.name(),
            tun_info(d).unwrap_or_else(|| "n/a".into())
        ),
        _ => format!(
            "  -> {dname:<28} {:<7} {w:<6} {a:<10} {i:<10}",
            d.fwd.name()
        ),
    }
}

const CSUM_SHORT: [&str; 3] = ["-c", "+c", "r+c"];
const CSUM_OPTS: [&str; 3] = ["--tun-nocsum", "--tun-csum", "--tun-remcsum"];

fn csum_index(d: &Dest) -> usize {
    usize::from(d.tun.flags).min(2)
}

/// `fwd_tun_info`: `ipip`, `gue:<port>:<csum>`, `gre:<csum>` for tunnel destinations.
fn tun_info(d: &Dest) -> Option<String> {
    if d.fwd != Forward::Tunnel {
        return None;
    }
    let c = CSUM_SHORT[csum_index(d)];
    Some(match d.tun.kind {
        TunnelType::Ipip => "ipip".to_string(),
        TunnelType::Gue => format!("gue:{}:{c}", d.tun.port),
        TunnelType::Gre => format!("gre:{c}"),
    })
}

fn fwd_switch(f: Forward) -> &'static str {
    match f {
        Forward::Masq => "-m",
        Forward::Tunnel => "-i",
        Forward::Local | Forward::Route => "-g",
        Forward::Bypass => "(null)",
    }
}

fn rule_dest_line(svc_name: &str, dname: &str, d: &Dest) -> String {
    let base = format!(
        "-a {svc_name} -r {dname} {} -w {}",
        fwd_switch(d.fwd),
        d.weight
    );
    if d.fwd != Forward::Tunnel {
        return base;
    }
    let c = CSUM_OPTS[csum_index(d)];
    match d.tun.kind {
        TunnelType::Ipip => format!("{base} --tun-type ipip"),
        TunnelType::Gue => format!("{base} --tun-type gue --tun-port {} {c}", d.tun.port),
        TunnelType::Gre => format!("{base} --tun-type gre {c}"),
    }
}

/// The extension options of an `-a` rule (`-S --extended`): only settings that differ from
/// the default, so a table without extensions saves exactly as plain `-S`.
fn rule_extensions(d: &Dest) -> String {
    match d.proxy_protocol {
        ProxyProtocol::None => String::new(),
        pp => format!(" --proxy-protocol {}", pp.name()),
    }
}

/// A destination's `--rate` columns: CPS, InPPS and OutPPS printed plainly (`%8llu`, never
/// scaled, `--exact` or not), InBPS and OutBPS as large numbers.
fn dest_rate_cols(r: &Rates, exact: bool) -> String {
    format!(
        " {:>8} {:>8} {:>8}{}{}",
        r.cps,
        r.inpps,
        r.outpps,
        largenum(r.inbps, exact),
        largenum(r.outbps, exact)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dest_rates_print_packet_columns_plainly() {
        let r = Rates {
            cps: 123_456_789,
            inpps: 5,
            outpps: 0,
            inbps: 123_456_789,
            outbps: 7,
        };
        assert_eq!(
            dest_rate_cols(&r, false),
            " 123456789        5        0  123456K        7"
        );
        assert_eq!(
            dest_rate_cols(&r, true),
            " 123456789        5        0 123456789        7"
        );
        // the service line scales every column
        assert_eq!(
            rates_line("", &r, false),
            "  123456K        5        0  123456K        7"
        );
    }

    #[test]
    fn mask_words() {
        assert_eq!(mask_text("mask", &Netmask::V4(u32::MAX)), "");
        assert_eq!(
            mask_text("-M", &Netmask::V4(0xffff_ff00)),
            " -M 255.255.255.0"
        );
        assert_eq!(mask_text("mask", &Netmask::V6(128)), "");
        assert_eq!(mask_text("mask", &Netmask::V6(48)), " mask 48");
    }
}

//! The `--json` extension: the same facts as the text listings, in a stable shape.
//!
//! Shapes (keys always present, in this order; absent values are `null`):
//! - service table: `{"version":"1.2.1","conn_tab_size":N,"services":[SERVICE…]}` in listing
//!   order (sorted as ipvsadm sorts, or the core's order with `--nosort`);
//!   `SERVICE = {"protocol":"TCP"|"UDP"|"SCTP"|null,"family":"inet"|"inet6","address":S|null,
//!   "port":N|null,"fwmark":N|null,"scheduler":S,"sched_flags":[S…],"persistent":null|
//!   {"timeout":N,"netmask":"a.b.c.d"|N},"pe":S|null,"ops":B,"stats":STATS,"rates":RATES,
//!   "dests":[DEST…]}` (fwmark services have `protocol`, `address`, `port` null and the mark
//!   unsigned);
//!   `DEST = {"address":S,"port":N,"forward":"Masq"|"Local"|"Tunnel"|"Route"|"Bypass",
//!   "weight":N,"u_threshold":N,"l_threshold":N,"active_conns":N,"inact_conns":N,
//!   "persist_conns":N,"tunnel":null|{"type":"ipip"|"gue"|"gre","port":N,"csum":"none"|"csum"|
//!   "remcsum"},"proxy_protocol":"none"|"v1"|"v2","stats":STATS,"rates":RATES}`
//!   (`proxy_protocol`: the `--proxy-protocol` extension);
//!   `STATS = {"conns","inpkts","outpkts","inbytes","outbytes"}`,
//!   `RATES = {"cps","inpps","outpps","inbps","outbps"}` (numbers);
//! - connections: `{"connections":[{"protocol":S,"expire":SECONDS,"state":S,
//!   "client":{"address":S,"port":N},"virtual":{…},"destination":{…},
//!   "pe":null|{"name":S,"data":S}}]}`;
//! - timeouts: `{"tcp":N,"tcpfin":N,"udp":N}`;
//! - daemons: `{"daemons":[{"role":"master"|"backup","mcast_interface":S,"syncid":N,
//!   "maxlen":N,"group":S|null,"port":N,"ttl":N}]}`.
//!
//! Every document ends with a newline.

use std::fmt::Write;
use std::net::IpAddr;

use rvs_core::dest::Dest;
use rvs_core::ipvs::Ipvs;
use rvs_core::model::{Netmask, ServiceKey, TunnelType};
use rvs_core::service::Service;
use rvs_core::stats::{Counters, Rates};
use rvs_core::time::Tick;

use super::sort::{dests_in_order, services_in_order};
use super::Daemon;

/// A JSON string literal.
fn s(v: &str) -> String {
    let mut o = String::from("\"");
    for c in v.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn opt(v: Option<String>) -> String {
    v.unwrap_or_else(|| "null".into())
}

fn stats(c: &Counters) -> String {
    format!(
        "{{\"conns\":{},\"inpkts\":{},\"outpkts\":{},\"inbytes\":{},\"outbytes\":{}}}",
        c.conns, c.inpkts, c.outpkts, c.inbytes, c.outbytes
    )
}

fn rates(r: &Rates) -> String {
    format!(
        "{{\"cps\":{},\"inpps\":{},\"outpps\":{},\"inbps\":{},\"outbps\":{}}}",
        r.cps, r.inpps, r.outpps, r.inbps, r.outbps
    )
}

fn tunnel(d: &Dest) -> Option<String> {
    if d.fwd != rvs_core::model::Forward::Tunnel {
        return None;
    }
    let kind = match d.tun.kind {
        TunnelType::Ipip => "ipip",
        TunnelType::Gue => "gue",
        TunnelType::Gre => "gre",
    };
    let csum = ["none", "csum", "remcsum"][usize::from(d.tun.flags).min(2)];
    Some(format!(
        "{{\"type\":{},\"port\":{},\"csum\":{}}}",
        s(kind),
        d.tun.port,
        s(csum)
    ))
}

fn dest(d: &Dest) -> String {
    format!(
        "{{\"address\":{},\"port\":{},\"forward\":{},\"weight\":{},\"u_threshold\":{},\
         \"l_threshold\":{},\"active_conns\":{},\"inact_conns\":{},\"persist_conns\":{},\
         \"tunnel\":{},\"proxy_protocol\":{},\"stats\":{},\"rates\":{}}}",
        s(&d.addr.to_string()),
        d.port,
        s(d.fwd.name()),
        d.weight,
        d.u_threshold,
        d.l_threshold,
        d.activeconns,
        d.inactconns,
        d.persistconns,
        opt(tunnel(d)),
        s(d.proxy_protocol.name()),
        stats(&d.stats.shown()),
        rates(&d.stats.rates())
    )
}

fn key_fields(k: &ServiceKey) -> String {
    let fam = s(if k.family().af() == 2 {
        "inet"
    } else {
        "inet6"
    });
    match k {
        ServiceKey::Addr { proto, addr, port } => format!(
            "\"protocol\":{},\"family\":{fam},\"address\":{},\"port\":{port},\"fwmark\":null",
            s(proto.name()),
            s(&addr.to_string())
        ),
        ServiceKey::Fwmark { mark, .. } => format!(
            "\"protocol\":null,\"family\":{fam},\"address\":null,\"port\":null,\"fwmark\":{mark}"
        ),
    }
}

fn persistence(svc: &Service) -> Option<String> {
    let c = &svc.conf;
    c.is_persistent().then(|| {
        let mask = match c.netmask {
            Netmask::V4(m) => s(&std::net::Ipv4Addr::from(m).to_string()),
            Netmask::V6(p) => p.to_string(),
        };
        format!("{{\"timeout\":{},\"netmask\":{mask}}}", c.timeout)
    })
}

fn sched_flags(svc: &Service) -> String {
    use rvs_core::model::svc_flags::{SCHED1, SCHED2, SCHED3};
    let names: [&str; 3] = match svc.conf.scheduler.as_str() {
        "sh" => ["sh-fallback", "sh-port", "flag-3"],
        "mh" => ["mh-fallback", "mh-port", "flag-3"],
        _ => ["flag-1", "flag-2", "flag-3"],
    };
    let set: Vec<String> = [SCHED1, SCHED2, SCHED3]
        .iter()
        .zip(names)
        .filter(|(b, _)| svc.conf.flags & **b != 0)
        .map(|(_, n)| s(n))
        .collect();
    format!("[{}]", set.join(","))
}

fn service(ipvs: &Ipvs, svc: &Service, nosort: bool) -> String {
    let dests: Vec<String> = dests_in_order(ipvs.service_dests(svc).collect(), nosort)
        .into_iter()
        .map(dest)
        .collect();
    format!(
        "{{{},\"scheduler\":{},\"sched_flags\":{},\"persistent\":{},\"pe\":{},\"ops\":{},\
         \"stats\":{},\"rates\":{},\"dests\":[{}]}}",
        key_fields(&svc.key),
        s(&svc.conf.scheduler),
        sched_flags(svc),
        opt(persistence(svc)),
        opt(svc.conf.pe.as_deref().filter(|p| !p.is_empty()).map(s)),
        svc.conf.is_ops(),
        stats(&svc.stats.shown()),
        rates(&svc.stats.rates()),
        dests.join(",")
    )
}

/// The service table as JSON: every service, or only `only` (`None` if it does not exist).
pub fn services_json(ipvs: &Ipvs, only: Option<&ServiceKey>, nosort: bool) -> Option<String> {
    let svcs: Vec<&Service> = match only {
        Some(k) => vec![ipvs.service(k)?],
        None => services_in_order(ipvs.services().collect(), nosort),
    };
    let body: Vec<String> = svcs.iter().map(|v| service(ipvs, v, nosort)).collect();
    Some(format!(
        "{{\"version\":\"1.2.1\",\"conn_tab_size\":{},\"services\":[{}]}}\n",
        ipvs.conn_tab_size(),
        body.join(",")
    ))
}

fn endpoint(a: &(IpAddr, u16)) -> String {
    format!("{{\"address\":{},\"port\":{}}}", s(&a.0.to_string()), a.1)
}

/// The connection table as JSON (`-Lc --json`).
pub fn conns_json(ipvs: &Ipvs, now: Tick) -> String {
    let rows: Vec<String> = ipvs
        .conn_listing(now)
        .iter()
        .map(|c| {
            let pe = ipvs.conn_pe(c.id).map(|p| {
                let data = String::from_utf8_lossy(&p.data);
                format!("{{\"name\":{},\"data\":{}}}", s(p.engine.name()), s(&data))
            });
            format!(
                "{{\"protocol\":{},\"expire\":{},\"state\":{},\"client\":{},\"virtual\":{},\
                 \"destination\":{},\"pe\":{}}}",
                s(c.proto.name()),
                c.expire_secs,
                s(c.state),
                endpoint(&c.client),
                endpoint(&c.virt),
                endpoint(&c.dest),
                opt(pe)
            )
        })
        .collect();
    format!("{{\"connections\":[{}]}}\n", rows.join(","))
}

/// The timeouts as JSON (`--timeout --json`).
pub fn timeout_json(ipvs: &Ipvs) -> String {
    let (tcp, fin, udp) = ipvs.timeouts();
    format!("{{\"tcp\":{tcp},\"tcpfin\":{fin},\"udp\":{udp}}}\n")
}

/// The sync daemons as JSON (`--daemon --json`).
pub fn daemons_json(daemons: &[Daemon]) -> String {
    let rows: Vec<String> = daemons
        .iter()
        .map(|d| {
            format!(
                "{{\"role\":{},\"mcast_interface\":{},\"syncid\":{},\"maxlen\":{},\"group\":{},\
                 \"port\":{},\"ttl\":{}}}",
                s(if d.master { "master" } else { "backup" }),
                s(&d.mcast_ifn),
                d.syncid,
                d.maxlen,
                opt(d.group.map(|g| s(&g.to_string()))),
                d.port,
                d.ttl
            )
        })
        .collect();
    format!("{{\"daemons\":[{}]}}\n", rows.join(","))
}

#[cfg(test)]
mod tests {
    use super::s;

    #[test]
    fn strings_are_escaped() {
        assert_eq!(s("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}

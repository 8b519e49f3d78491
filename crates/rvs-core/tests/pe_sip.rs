//! The SIP persistence engine (`ipvsadm --pe sip`) as an operator sees it, through the public
//! API: calls pinned by Call-ID, packets without one dropped, templates listed with `sip` and
//! the Call-ID, and requests started by NAT real servers reaching their client and back.

use std::net::IpAddr;

use rvs_core::conn::ListedConn;
use rvs_core::datapath::{Packet, TcpFlags, Verdict};
use rvs_core::ipvs::{Config, Ipvs};
use rvs_core::model::*;
use rvs_core::pe::Engine;
use rvs_core::time::Tick;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const VIP: &str = "10.0.0.1";

fn sip_svc(proto: Protocol) -> ServiceKey {
    ServiceKey::Addr {
        proto,
        addr: ip(VIP),
        port: 5060,
    }
}

fn rs(n: u8) -> DestConf {
    DestConf::new(ip(&format!("10.1.0.{n}")), 5060).fwd(Forward::Masq)
}

/// A director with `ipvsadm -A -u VIP:5060 -s rr -p 300 --pe sip` and real servers 1..=n
/// (rr starts at the last one added).
fn director(n: u8, conf: ServiceConf) -> (Ipvs, ServiceKey) {
    let mut ipvs = Ipvs::new(Config::default());
    let k = sip_svc(Protocol::Udp);
    ipvs.add_service(k, conf).unwrap();
    for i in 1..=n {
        ipvs.add_dest(&k, rs(i)).unwrap();
    }
    (ipvs, k)
}

fn sip_conf() -> ServiceConf {
    let mut c = ServiceConf::new(Family::V4, "rr").persistent(300);
    c.pe = Some("sip".into());
    c
}

/// The OPTIONS request the golden recordings send, with this Call-ID (`None`: no header).
fn options(call_id: Option<&str>) -> Vec<u8> {
    let hdr = call_id.map_or(String::new(), |c| format!("Call-ID: {c}\r\n"));
    format!("OPTIONS sip:rvs@{VIP} SIP/2.0\r\n{hdr}CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
        .into_bytes()
}

fn invite(ipvs: &mut Ipvs, client: &str, cport: u16, call_id: Option<&str>, t: Tick) -> Verdict {
    let p = Packet::udp(ip(client), cport, ip(VIP), 5060);
    ipvs.packet_in_with_payload(&p, &options(call_id), t)
}

fn dest_of(v: Verdict) -> Option<IpAddr> {
    match v {
        Verdict::Forward(f) => Some(f.daddr),
        _ => None,
    }
}

/// Templates with their engine data, as `ipvsadm -Lnc --persistent-conn` shows them.
fn templates(ipvs: &Ipvs, t: Tick) -> Vec<(ListedConn, Option<(&'static str, String)>)> {
    ipvs.conn_listing(t)
        .into_iter()
        .filter(|r| r.client.1 == 0)
        .map(|r| {
            let pe = ipvs
                .conn_pe(r.id)
                .map(|p| (p.engine.name(), String::from_utf8(p.data.to_vec()).unwrap()));
            (r, pe)
        })
        .collect()
}

#[test]
fn calls_are_pinned_by_call_id_and_balanced_per_call() {
    let (mut ipvs, _) = director(3, sip_conf());
    let t = Tick::from_secs(1);
    let a = dest_of(invite(&mut ipvs, "10.9.0.5", 5060, Some("call-a@pbx"), t)).unwrap();
    assert_eq!(a, ip("10.1.0.3"), "rr starts at the newest server");
    // another call from the same client (another port) is scheduled on its own
    let b = dest_of(invite(&mut ipvs, "10.9.0.5", 5061, Some("call-b@pbx"), t)).unwrap();
    assert_eq!(b, ip("10.1.0.2"));
    // the first call from yet another port still reaches its server
    for port in [5062, 5063] {
        let v = invite(&mut ipvs, "10.9.0.5", port, Some("call-a@pbx"), t);
        assert_eq!(dest_of(v), Some(a));
    }
    // the same Call-ID from another client is another template (the client network is part
    // of the key)
    let c = dest_of(invite(&mut ipvs, "10.9.0.6", 5060, Some("call-a@pbx"), t)).unwrap();
    assert_eq!(c, ip("10.1.0.1"));
    let tpls = templates(&ipvs, t);
    assert_eq!(tpls.len(), 3);
    for (r, pe) in &tpls {
        assert_eq!(
            (r.proto, r.state, r.virt),
            (Protocol::Udp, "NONE", (ip(VIP), 5060))
        );
        assert_eq!(pe.as_ref().unwrap().0, "sip");
    }
    let mut keys: Vec<_> = tpls
        .iter()
        .map(|(r, pe)| (r.client.0, pe.clone().unwrap().1, r.dest.0))
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            (ip("10.9.0.5"), "call-a@pbx".into(), a),
            (ip("10.9.0.5"), "call-b@pbx".into(), b),
            (ip("10.9.0.6"), "call-a@pbx".into(), c),
        ]
    );
}

#[test]
fn a_datagram_without_call_id_is_dropped_before_scheduling() {
    let (mut ipvs, _) = director(2, sip_conf());
    let t = Tick::from_secs(1);
    assert_eq!(invite(&mut ipvs, "10.9.0.5", 5060, None, t), Verdict::Drop);
    let empty = Packet::udp(ip("10.9.0.5"), 5061, ip(VIP), 5060);
    assert_eq!(ipvs.packet_in(&empty, t), Verdict::Drop);
    // trailing blank: not followed by CR/LF
    assert_eq!(
        invite(&mut ipvs, "10.9.0.5", 5062, Some("x "), t),
        Verdict::Drop
    );
    assert_eq!(ipvs.conn_count(), 0);
    // rr was not consulted: the first real call gets rr's first choice
    let v = invite(&mut ipvs, "10.9.0.5", 5063, Some("ok"), t);
    assert_eq!(dest_of(v), Some(ip("10.1.0.2")));
    assert_eq!(ipvs.total_stats().total.conns, 1);
}

#[test]
fn tcp_to_a_sip_service_is_dropped() {
    let mut ipvs = Ipvs::new(Config::default());
    let k = sip_svc(Protocol::Tcp);
    ipvs.add_service(k, sip_conf()).unwrap();
    ipvs.add_dest(&k, rs(1)).unwrap();
    let syn = Packet::tcp(ip("10.9.0.5"), 40000, ip(VIP), 5060, TcpFlags::SYN);
    let payload = options(Some("tcp-call"));
    assert_eq!(
        ipvs.packet_in_with_payload(&syn, &payload, Tick(1)),
        Verdict::Drop
    );
    assert_eq!(ipvs.conn_count(), 0);
}

#[test]
fn an_open_udp_entry_wins_over_a_new_call_id() {
    // the connection entry of a client ip:port is found before any scheduling, so a second
    // call from the same port goes where the first went (one-packet scheduling avoids this)
    let (mut ipvs, _) = director(2, sip_conf());
    let t = Tick::from_secs(1);
    let a = dest_of(invite(&mut ipvs, "10.9.0.5", 5060, Some("first"), t)).unwrap();
    let v = invite(&mut ipvs, "10.9.0.5", 5060, Some("second"), t);
    assert_eq!(dest_of(v), Some(a));
    assert_eq!(templates(&ipvs, t).len(), 1);
    // and a datagram without a Call-ID on that entry passes too
    assert_eq!(
        dest_of(invite(&mut ipvs, "10.9.0.5", 5060, None, t)),
        Some(a)
    );
}

#[test]
fn one_packet_scheduling_keeps_only_the_call_templates() {
    let mut conf = sip_conf();
    conf.flags |= svc_flags::ONEPACKET;
    let (mut ipvs, _) = director(2, conf);
    let t = Tick::from_secs(1);
    let a = dest_of(invite(&mut ipvs, "10.9.0.5", 5060, Some("first"), t)).unwrap();
    let b = dest_of(invite(&mut ipvs, "10.9.0.5", 5060, Some("second"), t)).unwrap();
    assert_ne!(a, b);
    assert_eq!(
        dest_of(invite(&mut ipvs, "10.9.0.5", 5060, Some("first"), t)),
        Some(a)
    );
    assert_eq!(ipvs.conn_count(), 2, "two templates, no connection entries");
}

#[test]
fn templates_and_their_call_ids_go_when_they_expire() {
    let (mut ipvs, _) = director(2, sip_conf());
    invite(
        &mut ipvs,
        "10.9.0.5",
        5060,
        Some("gone"),
        Tick::from_secs(1),
    );
    assert_eq!(ipvs.conn_table().pe_entries(), 1);
    // UDP entry 300 s, then the template lingers 60 s more
    ipvs.advance(Tick::from_secs(302));
    assert_eq!(ipvs.conn_count(), 1);
    ipvs.advance(Tick::from_secs(362));
    assert_eq!(ipvs.conn_count(), 0);
    assert_eq!(ipvs.conn_table().pe_entries(), 0);
}

#[test]
fn a_deleted_server_invalidates_the_call_template() {
    let (mut ipvs, k) = director(2, sip_conf());
    let t = Tick::from_secs(1);
    let a = dest_of(invite(&mut ipvs, "10.9.0.5", 5060, Some("c1"), t)).unwrap();
    ipvs.del_dest(&k, &a, 5060, t).unwrap();
    let b = dest_of(invite(&mut ipvs, "10.9.0.5", 5061, Some("c1"), t)).unwrap();
    assert_ne!(a, b);
    let tpls = templates(&ipvs, t);
    let old = tpls.iter().find(|(r, _)| r.dest.0 == a).unwrap();
    assert_eq!((old.0.virt.1, old.0.dest.1), (65535, 65535));
    assert_eq!(
        old.1.as_ref().unwrap().1,
        "c1",
        "still listed with its Call-ID"
    );
}

#[test]
fn fwmark_sip_templates_carry_the_mark_and_the_call_id() {
    let mut ipvs = Ipvs::new(Config::default());
    let k = ServiceKey::Fwmark {
        af: Family::V4,
        mark: 7,
    };
    ipvs.add_service(k, sip_conf()).unwrap();
    ipvs.add_dest(&k, rs(1)).unwrap();
    let t = Tick(1);
    let p = Packet::udp(ip("10.9.0.5"), 5060, ip("10.7.0.9"), 5060).mark(7);
    let v = ipvs.packet_in_with_payload(&p, &options(Some("fw")), t);
    assert_eq!(dest_of(v), Some(ip("10.1.0.1")));
    let tpls = templates(&ipvs, t);
    assert_eq!(tpls.len(), 1);
    assert_eq!(
        (tpls[0].0.proto, tpls[0].0.virt),
        (Protocol::Ip, (ip("0.0.0.7"), 0))
    );
    assert_eq!(tpls[0].1, Some(("sip", "fw".to_string())));
    let syn = Packet::tcp(ip("10.9.0.5"), 1, ip("10.7.0.9"), 5060, TcpFlags::SYN).mark(7);
    assert_eq!(
        ipvs.packet_in_with_payload(&syn, &options(Some("fw")), t),
        Verdict::Drop
    );
}

/// A datagram the real server `n` sends on its own to a client.
fn from_server(n: u8, client: &str, cport: u16) -> Packet {
    Packet::udp(ip(&format!("10.1.0.{n}")), 5060, ip(client), cport)
}

#[test]
fn a_request_started_by_a_real_server_creates_its_entries() {
    let (mut ipvs, k) = director(2, sip_conf());
    let t = Tick::from_secs(1);
    let bye = from_server(1, "10.9.0.7", 5070);
    let v = ipvs.packet_out_with_payload(&bye, &options(Some("srv-call")), t);
    let Verdict::Forward(f) = v else {
        panic!("translated: {v:?}")
    };
    assert!(f.new);
    assert_eq!((f.daddr, f.fwd), (ip("10.1.0.1"), Forward::Masq));
    let tpls = templates(&ipvs, t);
    assert_eq!(tpls.len(), 1);
    let (tpl, pe) = &tpls[0];
    assert_eq!(
        (tpl.state, tpl.client, tpl.virt, tpl.dest),
        (
            "ASSURED",
            (ip("10.9.0.7"), 0),
            (ip(VIP), 5060),
            (ip("10.1.0.1"), 5060)
        )
    );
    assert_eq!(pe.clone(), Some(("sip", "srv-call".to_string())));
    let svc = ipvs.service(&k).unwrap();
    assert_eq!(svc.stats.total.conns, 1);
    // the client's answer, with or without a Call-ID, finds the connection
    let answer = Packet::udp(ip("10.9.0.7"), 5070, ip(VIP), 5060);
    let v = ipvs.packet_in(&answer, t);
    assert_eq!((dest_of(v), ipvs.conn_count()), (Some(ip("10.1.0.1")), 2));
    // and a new request of that call from another port follows the template
    let again = invite(&mut ipvs, "10.9.0.7", 5071, Some("srv-call"), t);
    assert_eq!(dest_of(again), Some(ip("10.1.0.1")));
}

#[test]
fn a_server_datagram_creates_nothing_without_call_id_or_for_other_services() {
    let (mut ipvs, k) = director(1, sip_conf());
    let t = Tick(1);
    let bye = from_server(1, "10.9.0.7", 5070);
    assert_eq!(
        ipvs.packet_out_with_payload(&bye, &options(None), t),
        Verdict::Accept
    );
    assert_eq!(ipvs.packet_out(&bye, t), Verdict::Accept);
    // another source port is no real service
    let other = Packet::udp(ip("10.1.0.1"), 5099, ip("10.9.0.7"), 5070);
    assert_eq!(
        ipvs.packet_out_with_payload(&other, &options(Some("x")), t),
        Verdict::Accept
    );
    assert_eq!(ipvs.conn_count(), 0);
    // direct routing: the director never sees the server's packets as NAT
    ipvs.edit_dest(&k, rs(1).fwd(Forward::Route)).unwrap();
    assert_eq!(
        ipvs.packet_out_with_payload(&bye, &options(Some("x")), t),
        Verdict::Accept
    );
    // without a persistence engine
    let mut plain = sip_conf();
    plain.pe = None;
    ipvs.edit_dest(&k, rs(1)).unwrap();
    ipvs.edit_service(&k, plain).unwrap();
    assert_eq!(
        ipvs.packet_out_with_payload(&bye, &options(Some("x")), t),
        Verdict::Accept
    );
    assert_eq!(ipvs.conn_count(), 0);
}

#[test]
fn a_server_request_replaces_a_call_template_pointing_elsewhere() {
    let (mut ipvs, _) = director(2, sip_conf());
    let t = Tick::from_secs(1);
    let first = dest_of(invite(&mut ipvs, "10.9.0.7", 5070, Some("moved"), t)).unwrap();
    assert_eq!(first, ip("10.1.0.2"));
    let bye = from_server(1, "10.9.0.7", 5071);
    assert!(matches!(
        ipvs.packet_out_with_payload(&bye, &options(Some("moved")), t),
        Verdict::Forward(_)
    ));
    let tpls = templates(&ipvs, t);
    let old = tpls.iter().find(|(r, _)| r.dest.0 == first).unwrap();
    assert_eq!(old.0.virt.1, 65535, "invalidated");
    let v = invite(&mut ipvs, "10.9.0.7", 5072, Some("moved"), t);
    assert_eq!(
        dest_of(v),
        Some(ip("10.1.0.1")),
        "the call now follows the server"
    );
}

#[test]
fn a_server_in_two_services_answers_for_the_one_hashed_last() {
    // ip_vs_find_real_service returns the first NAT destination in the real-server hash
    // chain: the one added (or revived) most recently
    let mut ipvs = Ipvs::new(Config::default());
    let sip = sip_svc(Protocol::Udp);
    let other = ServiceKey::Addr {
        proto: Protocol::Udp,
        addr: ip("10.0.0.2"),
        port: 5060,
    };
    ipvs.add_service(sip, sip_conf()).unwrap();
    ipvs.add_service(other, ServiceConf::new(Family::V4, "rr"))
        .unwrap();
    ipvs.add_dest(&sip, rs(1)).unwrap();
    ipvs.add_dest(&other, rs(1)).unwrap();
    let t = Tick(1);
    let bye = from_server(1, "10.9.0.7", 5070);
    let payload = options(Some("two"));
    assert_eq!(
        ipvs.packet_out_with_payload(&bye, &payload, t),
        Verdict::Accept
    );
    // deleting and re-adding the sip service's server puts it in front
    ipvs.del_dest(&sip, &ip("10.1.0.1"), 5060, t).unwrap();
    ipvs.add_dest(&sip, rs(1)).unwrap();
    assert!(matches!(
        ipvs.packet_out_with_payload(&bye, &payload, t),
        Verdict::Forward(_)
    ));
    // an edit that changes the method rehashes too
    ipvs.edit_dest(&other, rs(1).fwd(Forward::Tunnel)).unwrap();
    ipvs.edit_dest(&other, rs(1)).unwrap();
    let bye2 = from_server(1, "10.9.0.8", 5070);
    assert_eq!(
        ipvs.packet_out_with_payload(&bye2, &payload, t),
        Verdict::Accept
    );
    // a plain edit does not
    ipvs.edit_dest(&sip, rs(1).weight(5)).unwrap();
    assert_eq!(
        ipvs.packet_out_with_payload(&bye2, &payload, t),
        Verdict::Accept
    );
}

#[test]
fn a_non_persistent_service_with_the_engine_takes_server_requests_without_call_id() {
    // the engine's data is read only for templates; without -p the connection alone is made
    let mut conf = ServiceConf::new(Family::V4, "rr");
    conf.pe = Some(Engine::Sip.name().into());
    let (mut ipvs, _) = director(1, conf);
    let bye = from_server(1, "10.9.0.7", 5070);
    let v = ipvs.packet_out(&bye, Tick(1));
    assert!(matches!(v, Verdict::Forward(f) if f.new));
    assert_eq!(ipvs.conn_count(), 1);
    // and clients are scheduled without looking for one
    let p = Packet::udp(ip("10.9.0.8"), 5060, ip(VIP), 5060);
    assert_eq!(dest_of(ipvs.packet_in(&p, Tick(1))), Some(ip("10.1.0.1")));
}

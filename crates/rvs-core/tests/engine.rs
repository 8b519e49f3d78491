//! Behaviour of the engine that operators rely on, checked through the public API: the
//! kernel's errors, list order, the destination trash, persistence, one-packet scheduling,
//! thresholds, timeouts, statistics and zeroing.

#[path = "support/fixtures.rs"]
mod fixtures;

use rvs_core::datapath::{Packet, TcpFlags, Verdict};
use rvs_core::ipvs::{Config, Ipvs};
use rvs_core::model::*;
use rvs_core::time::Tick;

use fixtures::*;
use rvs_core::IpvsError;

fn syn(client: &str, cport: u16, key: &ServiceKey) -> Packet {
    Packet::tcp(ip(client), cport, key.addr(), key.port(), TcpFlags::SYN)
}

/// An established NAT connection: SYN, SYN-ACK, ACK.
fn establish(ipvs: &mut Ipvs, client: &str, cport: u16, key: &ServiceKey, now: Tick) -> Verdict {
    let v = ipvs.packet_in(&syn(client, cport, key), now);
    if let Verdict::Forward(f) = v {
        ipvs.packet_out(
            &Packet::tcp(f.daddr, f.dport, ip(client), cport, TcpFlags::SYN_ACK),
            now,
        );
        ipvs.packet_in(
            &Packet::tcp(ip(client), cport, key.addr(), key.port(), TcpFlags::ACK),
            now,
        );
    }
    v
}

#[test]
fn control_errors_are_the_kernels() {
    let mut ipvs = Ipvs::new(Config::default());
    let k = tcp_svc(80);
    let conf = ServiceConf::new(Family::V4, "wrr");
    ipvs.add_service(k, conf.clone()).unwrap();
    let err = |e: IpvsError| e.to_string();
    assert_eq!(
        err(ipvs.add_service(k, conf.clone()).unwrap_err()),
        "Service already exists"
    );
    assert_eq!(
        err(ipvs
            .add_service(tcp_svc(81), ServiceConf::new(Family::V4, "nosuch"))
            .unwrap_err()),
        "Scheduler or persistence engine not found"
    );
    assert_eq!(
        err(ipvs.edit_service(&tcp_svc(82), conf.clone()).unwrap_err()),
        "No such service"
    );
    assert_eq!(
        err(ipvs.add_dest(&tcp_svc(82), rs(1, 80)).unwrap_err()),
        "Service not defined"
    );
    ipvs.add_dest(&k, rs(1, 80)).unwrap();
    assert_eq!(
        err(ipvs.add_dest(&k, rs(1, 80)).unwrap_err()),
        "Destination already exists"
    );
    assert_eq!(
        err(ipvs.edit_dest(&k, rs(2, 80)).unwrap_err()),
        "No such destination"
    );
    assert_eq!(
        err(ipvs
            .del_dest(&k, &ip("10.1.0.2"), 80, Tick::ZERO)
            .unwrap_err()),
        "No such destination"
    );
    assert_eq!(
        err(ipvs.edit_dest(&k, rs(1, 80).weight(-1)).unwrap_err()),
        "Numerical result out of range"
    );
    assert_eq!(
        err(ipvs.edit_dest(&k, rs(1, 80).thresholds(5, 9)).unwrap_err()),
        "Numerical result out of range"
    );
    // nothing changed by the refused operations
    let svc = ipvs.service(&k).unwrap();
    let d: Vec<_> = ipvs
        .service_dests(svc)
        .map(|d| (d.weight, d.u_threshold))
        .collect();
    assert_eq!(d, vec![(1, 0)]);
    // the kernel accepts weights above ipvsadm's 65535
    ipvs.edit_dest(&k, rs(1, 80).weight(1_000_000)).unwrap();
}

#[test]
fn new_real_servers_go_to_the_front_of_the_list() {
    let mut ipvs = Ipvs::new(Config::default());
    let k = tcp_svc(80);
    ipvs.add_service(k, ServiceConf::new(Family::V4, "rr"))
        .unwrap();
    for n in 1..=3 {
        ipvs.add_dest(&k, rs(n, 80)).unwrap();
    }
    let svc = ipvs.service(&k).unwrap();
    let order: Vec<String> = ipvs
        .service_dests(svc)
        .map(|d| d.addr.to_string())
        .collect();
    assert_eq!(order, ["10.1.0.3", "10.1.0.2", "10.1.0.1"]);
    // rr therefore starts with the newest: C, B, A, C
    let picks: Vec<_> = (0..4)
        .map(|i| dest_of(ipvs.packet_in(&syn("192.168.0.1", 1000 + i, &k), Tick(1))).unwrap())
        .collect();
    assert_eq!(
        picks,
        [
            ip("10.1.0.3"),
            ip("10.1.0.2"),
            ip("10.1.0.1"),
            ip("10.1.0.3")
        ]
    );
}

#[test]
fn deleted_server_in_use_is_revived_with_its_counters() {
    let mut ipvs = Ipvs::new(Config::default());
    let k = tcp_svc(80);
    ipvs.add_service(k, ServiceConf::new(Family::V4, "rr"))
        .unwrap();
    ipvs.add_dest(&k, rs(1, 80)).unwrap();
    let t = Tick::from_secs(10);
    establish(&mut ipvs, "192.168.0.1", 1000, &k, t);
    establish(&mut ipvs, "192.168.0.2", 1000, &k, t);
    assert_eq!(counters(&ipvs, &k, "10.1.0.1"), (2, 0, 0));
    ipvs.del_dest(&k, &ip("10.1.0.1"), 80, t).unwrap();
    assert_eq!(ipvs.trash().count(), 1);
    // packets of its connections are dropped while it is deleted (expire_nodest_conn = 0)
    let ack = Packet::tcp(ip("192.168.0.1"), 1000, k.addr(), 80, TcpFlags::ACK);
    assert_eq!(ipvs.packet_in(&ack, t), Verdict::Drop);
    // re-added: the same object comes back, counters and statistics included
    ipvs.add_dest(&k, rs(1, 80).weight(4)).unwrap();
    assert_eq!(ipvs.trash().count(), 0);
    assert_eq!(counters(&ipvs, &k, "10.1.0.1"), (2, 0, 0));
    let svc = ipvs.service(&k).unwrap();
    let d = ipvs.service_dests(svc).next().unwrap();
    assert_eq!(d.stats.total.conns, 2);
    assert_eq!(d.weight, 4);
    assert!(matches!(ipvs.packet_in(&ack, t), Verdict::Forward(_)));
}

/// The PROXY protocol setting is kept with the destination like its other settings: an edit
/// replaces it, a re-add from the trash takes the add's value, never the deleted server's.
#[test]
fn proxy_protocol_is_stored_edited_and_not_revived_from_the_trash() {
    let mut ipvs = Ipvs::new(Config::default());
    let k = tcp_svc(80);
    ipvs.add_service(k, ServiceConf::new(Family::V4, "rr"))
        .unwrap();
    let pp = |ipvs: &Ipvs| {
        ipvs.find_dest(&k, &ip("10.1.0.1"), 80)
            .map(|d| d.conf().proxy_protocol)
    };
    assert_eq!(rs(1, 80).proxy_protocol, ProxyProtocol::None);
    ipvs.add_dest(&k, rs(1, 80).proxy_protocol(ProxyProtocol::V2))
        .unwrap();
    assert_eq!(pp(&ipvs), Some(ProxyProtocol::V2));
    ipvs.edit_dest(&k, rs(1, 80).weight(3).proxy_protocol(ProxyProtocol::V1))
        .unwrap();
    assert_eq!(pp(&ipvs), Some(ProxyProtocol::V1));
    let t = Tick::from_secs(1);
    establish(&mut ipvs, "192.168.0.1", 1000, &k, t);
    ipvs.del_dest(&k, &ip("10.1.0.1"), 80, t).unwrap();
    assert_eq!(pp(&ipvs), None, "deleted servers are not found");
    assert_eq!(ipvs.trash().count(), 1);
    ipvs.add_dest(&k, rs(1, 80)).unwrap();
    assert_eq!(ipvs.trash().count(), 0, "revived from the trash");
    assert_eq!(pp(&ipvs), Some(ProxyProtocol::None));
    assert_eq!(
        ipvs.find_dest(&k, &ip("10.1.0.1"), 81).map(|d| d.port),
        None
    );
}

#[test]
fn trash_is_freed_after_the_period_without_users() {
    let mut ipvs = Ipvs::new(Config::default());
    let k = tcp_svc(80);
    ipvs.add_service(k, ServiceConf::new(Family::V4, "rr"))
        .unwrap();
    ipvs.add_dest(&k, rs(1, 80)).unwrap();
    ipvs.del_dest(&k, &ip("10.1.0.1"), 80, Tick::ZERO).unwrap();
    ipvs.advance(Tick::from_secs(61));
    assert_eq!(
        ipvs.trash().count(),
        1,
        "idle time starts at the first check"
    );
    ipvs.advance(Tick::from_secs(300));
    assert_eq!(ipvs.trash().count(), 0);
}

#[test]
fn persistence_pins_a_client_network_and_counts_templates() {
    let mut ipvs = Ipvs::new(Config::default());
    let k = tcp_svc(443);
    let mut conf = ServiceConf::new(Family::V4, "rr").persistent(300);
    conf.netmask = Netmask::V4(0xffff_ff00);
    ipvs.add_service(k, conf).unwrap();
    for n in 1..=3 {
        ipvs.add_dest(&k, rs(n, 443)).unwrap();
    }
    let t = Tick::from_secs(5);
    let a = dest_of(establish(&mut ipvs, "192.168.7.1", 1000, &k, t)).unwrap();
    // same /24: same server whatever rr would say
    for i in 0..5 {
        let c = format!("192.168.7.{}", 10 + i);
        assert_eq!(dest_of(establish(&mut ipvs, &c, 2000, &k, t)), Some(a));
    }
    // another network gets the next rr pick
    let b = dest_of(establish(&mut ipvs, "192.168.8.1", 1000, &k, t)).unwrap();
    assert_ne!(a, b);
    assert_eq!(counters(&ipvs, &k, &a.to_string()), (6, 0, 1));
    let listing = ipvs.conn_listing(t);
    let tpl: Vec<_> = listing.iter().filter(|r| r.client.1 == 0).collect();
    assert_eq!(tpl.len(), 2);
    assert_eq!(tpl[0].state, "ASSURED");
    assert_eq!(tpl[0].client.0, ip("192.168.7.0"));
}

#[test]
fn template_outlives_its_timeout_while_it_controls_connections() {
    let mut ipvs = Ipvs::new(Config::default());
    let k = udp_svc(53);
    ipvs.add_service(k, ServiceConf::new(Family::V4, "rr").persistent(10))
        .unwrap();
    ipvs.add_dest(&k, rs(1, 53)).unwrap();
    ipvs.add_dest(&k, rs(2, 53)).unwrap();
    let dns = |cport| Packet::udp(ip("192.168.0.5"), cport, k.addr(), 53);
    let first = dest_of(ipvs.packet_in(&dns(1000), Tick::from_secs(1))).unwrap();
    assert_eq!(
        counters(&ipvs, &k, &first.to_string()),
        (0, 1, 1),
        "UDP is always inactive"
    );
    // the UDP entry lives 300 s; the 10 s template lingers in 60 s steps while it controls it
    ipvs.advance(Tick::from_secs(200));
    assert_eq!(counters(&ipvs, &k, &first.to_string()), (0, 1, 1));
    assert_eq!(
        dest_of(ipvs.packet_in(&dns(1001), Tick::from_secs(200))),
        Some(first)
    );
    // everything idle: the connections expire, then the template
    ipvs.advance(Tick::from_secs(200 + 301));
    assert_eq!(counters(&ipvs, &k, &first.to_string()).1, 0);
    ipvs.advance(Tick::from_secs(200 + 301 + 61));
    assert_eq!(ipvs.conn_count(), 0);
}

#[test]
fn quiescent_template_keeps_its_server_unless_expire_quiescent_template() {
    for expire_quiescent in [false, true] {
        let mut cfg = Config::default();
        cfg.sysctls.expire_quiescent_template = expire_quiescent;
        let mut ipvs = Ipvs::new(cfg);
        let k = tcp_svc(80);
        ipvs.add_service(k, ServiceConf::new(Family::V4, "rr").persistent(300))
            .unwrap();
        ipvs.add_dest(&k, rs(1, 80)).unwrap();
        ipvs.add_dest(&k, rs(2, 80)).unwrap();
        let t = Tick::from_secs(1);
        let first = dest_of(establish(&mut ipvs, "192.168.0.5", 1000, &k, t)).unwrap();
        let n = if first == ip("10.1.0.1") { 1 } else { 2 };
        ipvs.edit_dest(&k, rs(n, 80).weight(0)).unwrap();
        let again = dest_of(establish(&mut ipvs, "192.168.0.5", 1001, &k, t)).unwrap();
        assert_eq!(again == first, !expire_quiescent);
    }
}

#[test]
fn one_packet_scheduling_leaves_no_connection_entries() {
    let mut ipvs = Ipvs::new(Config::default());
    let k = udp_svc(53);
    let mut conf = ServiceConf::new(Family::V4, "rr");
    conf.flags |= svc_flags::ONEPACKET;
    ipvs.add_service(k, conf).unwrap();
    ipvs.add_dest(&k, rs(1, 53)).unwrap();
    ipvs.add_dest(&k, rs(2, 53)).unwrap();
    let p = Packet::udp(ip("192.168.0.5"), 1000, k.addr(), 53);
    let picks: Vec<_> = (0..4)
        .map(|_| dest_of(ipvs.packet_in(&p, Tick(1))).unwrap())
        .collect();
    // the same client port is scheduled per datagram
    assert_eq!(
        picks,
        [
            ip("10.1.0.2"),
            ip("10.1.0.1"),
            ip("10.1.0.2"),
            ip("10.1.0.1")
        ]
    );
    assert_eq!(ipvs.conn_count(), 0);
    assert_eq!(counters(&ipvs, &k, "10.1.0.1"), (0, 0, 0));
    assert_eq!(ipvs.total_stats().total.conns, 4);
}

#[test]
fn upper_threshold_overloads_and_lower_threshold_clears() {
    let mut ipvs = Ipvs::new(Config::default());
    let k = tcp_svc(80);
    ipvs.add_service(k, ServiceConf::new(Family::V4, "rr"))
        .unwrap();
    ipvs.add_dest(&k, rs(1, 80).thresholds(2, 1)).unwrap();
    let t = Tick::from_secs(1);
    assert!(establish(&mut ipvs, "192.168.0.1", 1, &k, t) != Verdict::Reject);
    assert!(establish(&mut ipvs, "192.168.0.2", 1, &k, t) != Verdict::Reject);
    // two connections reach u-threshold 2: overloaded, nobody else to take it
    assert_eq!(
        ipvs.packet_in(&syn("192.168.0.3", 1, &k), t),
        Verdict::Reject
    );
    // reset both: CLOSE entries expire after 10 s; below l-threshold 1 only at 0
    for c in ["192.168.0.1", "192.168.0.2"] {
        ipvs.packet_in(&Packet::tcp(ip(c), 1, k.addr(), 80, TcpFlags::RST), t);
    }
    ipvs.advance(Tick::from_secs(12));
    assert!(matches!(
        ipvs.packet_in(&syn("192.168.0.3", 1, &k), Tick::from_secs(12)),
        Verdict::Forward(_)
    ));
}

#[test]
fn set_timeouts_change_the_established_and_udp_timeouts() {
    let mut ipvs = Ipvs::new(Config::default());
    assert_eq!(ipvs.timeouts(), (900, 120, 300));
    ipvs.set_timeouts(11, 15, 0).unwrap();
    assert_eq!(ipvs.timeouts(), (11, 15, 300));
    assert_eq!(ipvs.set_timeouts(u32::MAX, 0, 0), Err(IpvsError::Invalid));
    let k = tcp_svc(80);
    ipvs.add_service(k, ServiceConf::new(Family::V4, "rr"))
        .unwrap();
    ipvs.add_dest(&k, rs(1, 80)).unwrap();
    establish(&mut ipvs, "192.168.0.1", 1, &k, Tick::from_secs(1));
    let r = ipvs.conn_listing(Tick::from_secs(1));
    assert_eq!((r[0].state, r[0].expire_secs), ("ESTABLISHED", 11));
    ipvs.advance(Tick::from_secs(13));
    assert_eq!(ipvs.conn_count(), 0);
}

#[test]
fn statistics_count_connections_packets_and_bytes_and_zero() {
    let mut ipvs = Ipvs::new(Config::default());
    let k = tcp_svc(80);
    ipvs.add_service(k, ServiceConf::new(Family::V4, "rr"))
        .unwrap();
    ipvs.add_dest(&k, rs(1, 80)).unwrap();
    ipvs.advance(Tick::ZERO); // the estimator runs every 2 s from the first advance
    let t = Tick::from_secs(1);
    establish(&mut ipvs, "192.168.0.1", 1, &k, t);
    // listings show the estimator's sample: nothing until the next 2-second tick
    assert_eq!(ipvs.service(&k).unwrap().stats.shown().conns, 0);
    ipvs.advance(Tick::from_secs(3));
    let svc = ipvs.service(&k).unwrap();
    let s = svc.stats.shown();
    assert_eq!(
        (s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes),
        (1, 2, 1, 120, 60)
    );
    assert_eq!(ipvs.total_stats().shown(), s);
    // a steady 100 new connections per second shows as ~100 CPS after some periods
    let mut now = Tick::from_secs(3);
    for sec in 0..40u16 {
        for c in 0..100u16 {
            ipvs.packet_in(&syn("192.168.1.1", sec * 100 + c + 2, &k), now);
        }
        now = Tick(now.0 + 1000);
        ipvs.advance(now);
    }
    let rate = ipvs.service(&k).unwrap().stats.rates();
    assert!((95..=105).contains(&rate.cps), "cps {}", rate.cps);
    ipvs.zero(Some(&k)).unwrap();
    let svc = ipvs.service(&k).unwrap();
    assert_eq!(svc.stats.shown().conns, 0);
    assert_eq!(svc.stats.rates().cps, 0);
    assert_eq!(ipvs.zero(Some(&tcp_svc(81))), Err(IpvsError::NoSuchService));
}

#[test]
fn full_table_refuses_new_connections_and_keeps_the_old_ones() {
    let mut ipvs = Ipvs::new(Config {
        max_conns: 4,
        ..Config::default()
    });
    let k = tcp_svc(80);
    ipvs.add_service(k, ServiceConf::new(Family::V4, "rr"))
        .unwrap();
    ipvs.add_dest(&k, rs(1, 80)).unwrap();
    let t = Tick::from_secs(1);
    for c in 1..=4 {
        assert!(matches!(
            ipvs.packet_in(&syn("192.168.0.1", c, &k), t),
            Verdict::Forward(_)
        ));
    }
    assert_eq!(
        ipvs.packet_in(&syn("192.168.0.1", 99, &k), t),
        Verdict::Drop
    );
    assert_eq!(ipvs.conn_count(), 4);
    assert_eq!(ipvs.conn_table().full_drops(), 1);
    assert_eq!(counters(&ipvs, &k, "10.1.0.1"), (4, 0, 0));
    // existing entries still forward
    let ack = Packet::tcp(ip("192.168.0.1"), 1, k.addr(), 80, TcpFlags::ACK);
    assert!(matches!(ipvs.packet_in(&ack, t), Verdict::Forward(_)));
}

#[test]
fn packets_for_no_service_and_non_syn_segments_pass_untouched() {
    let mut ipvs = Ipvs::new(Config::default());
    let k = tcp_svc(80);
    ipvs.add_service(k, ServiceConf::new(Family::V4, "rr"))
        .unwrap();
    ipvs.add_dest(&k, rs(1, 80)).unwrap();
    let t = Tick(1);
    assert_eq!(
        ipvs.packet_in(&syn("192.168.0.1", 1, &tcp_svc(81)), t),
        Verdict::Accept
    );
    let ack = Packet::tcp(ip("192.168.0.1"), 1, k.addr(), 80, TcpFlags::ACK);
    assert_eq!(ipvs.packet_in(&ack, t), Verdict::Accept);
    // a service without servers rejects (ICMP port unreachable in the kernel)
    ipvs.add_service(tcp_svc(82), ServiceConf::new(Family::V4, "rr"))
        .unwrap();
    assert_eq!(
        ipvs.packet_in(&syn("192.168.0.1", 1, &tcp_svc(82)), t),
        Verdict::Reject
    );
}

#[test]
fn fwmark_persistence_spans_addresses_and_ports() {
    let mut ipvs = Ipvs::new(Config::default());
    let k = ServiceKey::Fwmark {
        af: Family::V4,
        mark: 5,
    };
    ipvs.add_service(k, ServiceConf::new(Family::V4, "rr").persistent(60))
        .unwrap();
    ipvs.add_dest(&k, rs(1, 0)).unwrap();
    ipvs.add_dest(&k, rs(2, 0)).unwrap();
    let t = Tick(1);
    let p = |vip: &str, port| {
        Packet::tcp(ip("192.168.0.9"), 1000 + port, ip(vip), port, TcpFlags::SYN).mark(5)
    };
    let first = ipvs.packet_in(&p("10.5.0.1", 80), t);
    let Verdict::Forward(f) = first else {
        panic!("scheduled")
    };
    assert_eq!(f.dport, 80, "port-0 real servers keep the client's port");
    for (vip, port) in [("10.5.0.2", 443), ("10.5.0.3", 25)] {
        assert_eq!(dest_of(ipvs.packet_in(&p(vip, port), t)), Some(f.daddr));
    }
    let tpl = ipvs
        .conn_listing(t)
        .into_iter()
        .find(|r| r.client.1 == 0)
        .unwrap();
    assert_eq!((tpl.proto, tpl.virt), (Protocol::Ip, (ip("0.0.0.5"), 0)));
}

#[test]
fn a_destination_cached_by_lblc_stays_in_the_trash_and_is_revived() {
    let mut ipvs = Ipvs::new(Config::default());
    let k = udp_svc(53);
    ipvs.add_service(k, ServiceConf::new(Family::V4, "lblc"))
        .unwrap();
    let id = ipvs.add_dest(&k, rs(1, 53)).unwrap();
    let p = Packet::udp(ip("192.168.0.5"), 1000, k.addr(), 53);
    assert_eq!(
        dest_of(ipvs.packet_in(&p, Tick::from_secs(1))),
        Some(ip("10.1.0.1"))
    );
    ipvs.advance(Tick::from_secs(400));
    assert_eq!(ipvs.conn_count(), 0);
    ipvs.del_dest(&k, &ip("10.1.0.1"), 53, Tick::from_secs(400))
        .unwrap();
    ipvs.advance(Tick::from_secs(1000));
    assert_eq!(ipvs.trash().count(), 1, "the lblc cache entry holds it");
    assert_eq!(ipvs.add_dest(&k, rs(1, 53)).unwrap(), id);
}

#[test]
fn full_table_keeps_the_template_made_before_the_refused_connection() {
    // ip_vs_sched_persist creates the template first; when the connection itself cannot be
    // allocated the template stays, controlling nothing, until its own timeout
    let mut ipvs = Ipvs::new(Config {
        max_conns: 1,
        ..Config::default()
    });
    let k = tcp_svc(443);
    ipvs.add_service(k, ServiceConf::new(Family::V4, "rr").persistent(30))
        .unwrap();
    ipvs.add_dest(&k, rs(1, 443)).unwrap();
    assert_eq!(
        ipvs.packet_in(&syn("192.168.0.1", 1, &k), Tick(1)),
        Verdict::Drop
    );
    assert_eq!(ipvs.conn_count(), 1);
    assert_eq!(counters(&ipvs, &k, "10.1.0.1"), (0, 0, 1));
    ipvs.advance(Tick::from_secs(32));
    assert_eq!(ipvs.conn_count(), 0);
}

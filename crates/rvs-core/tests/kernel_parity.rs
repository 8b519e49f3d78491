//! Behaviours a review found different from Linux 6.1 and that were then fixed. Each was shown
//! on the real kernel (IPVS oracle VM) or read from its source; the test names the kernel
//! function. They are the fine print an operator meets when reusing tuples, deleting servers
//! in use, zeroing counters, or re-creating services.

#[path = "support/fixtures.rs"]
mod fixtures;

use std::net::IpAddr;

use rvs_core::datapath::{Packet, TcpFlags, Verdict};
use rvs_core::ipvs::{Config, Ipvs};
use rvs_core::model::*;
use rvs_core::time::Tick;

use fixtures::*;
use rvs_core::IpvsError;

fn seg(c: &str, cport: u16, k: &ServiceKey, f: TcpFlags) -> Packet {
    Packet::tcp(ip(c), cport, k.addr(), k.port(), f)
}

/// A NAT connection opened and closed (ends in TIME_WAIT); returns its real server.
fn open_close(ipvs: &mut Ipvs, c: &str, cport: u16, k: &ServiceKey, t: Tick) -> IpAddr {
    let Verdict::Forward(f) = ipvs.packet_in(&seg(c, cport, k, TcpFlags::SYN), t) else {
        panic!("scheduled")
    };
    let back = |flags| Packet::tcp(f.daddr, f.dport, ip(c), cport, flags);
    ipvs.packet_out(&back(TcpFlags::SYN_ACK), t);
    ipvs.packet_in(&seg(c, cport, k, TcpFlags::ACK), t);
    ipvs.packet_in(&seg(c, cport, k, TcpFlags::FIN_ACK), t);
    ipvs.packet_out(&back(TcpFlags::FIN_ACK), t);
    f.daddr
}

/// `ip_vs_in_hook` (Linux ≥ 5.16): with `expire_nodest_conn`, a SYN on an entry whose server
/// has weight 0 is rescheduled even when `conn_reuse_mode` is 0.
#[test]
fn quiescent_server_rule_does_not_depend_on_conn_reuse_mode() {
    let mut cfg = Config::default();
    cfg.sysctls.expire_nodest_conn = true;
    cfg.sysctls.conn_reuse_mode = 0;
    let mut ipvs = Ipvs::new(cfg);
    let k = tcp_svc(80);
    ipvs.add_service(k, ServiceConf::new(Family::V4, "rr"))
        .unwrap();
    ipvs.add_dest(&k, rs(1, 80)).unwrap();
    ipvs.add_dest(&k, rs(2, 80)).unwrap();
    let t = Tick::from_secs(1);
    let first = open_close(&mut ipvs, "192.168.0.5", 4000, &k, t);
    let n = if first == ip("10.1.0.1") { 1 } else { 2 };
    ipvs.edit_dest(&k, rs(n, 80).weight(0)).unwrap();
    let again = dest_of(ipvs.packet_in(&seg("192.168.0.5", 4000, &k, TcpFlags::SYN), t)).unwrap();
    assert_ne!(again, first);
}

/// `ip_vs_expire_nodest_conn_flush`: with `expire_nodest_conn`, deleting a server deletes its
/// connections and then the templates left controlling nothing.
#[test]
fn deleting_a_server_flushes_its_entries_with_expire_nodest_conn() {
    let mut cfg = Config::default();
    cfg.sysctls.expire_nodest_conn = true;
    let mut ipvs = Ipvs::new(cfg);
    let k = tcp_svc(82);
    ipvs.add_service(k, ServiceConf::new(Family::V4, "rr").persistent(300))
        .unwrap();
    ipvs.add_dest(&k, rs(1, 82)).unwrap();
    let t = Tick::from_secs(1);
    ipvs.packet_in(&seg("192.168.0.5", 4000, &k, TcpFlags::SYN), t);
    assert_eq!(ipvs.conn_count(), 2);
    ipvs.del_dest(&k, &ip("10.1.0.1"), 82, t).unwrap();
    ipvs.advance(Tick::from_secs(2));
    assert_eq!(ipvs.conn_count(), 0);
    ipvs.add_dest(&k, rs(1, 82)).unwrap();
    assert_eq!(counters(&ipvs, &k, "10.1.0.1"), (0, 0, 0));
}

/// `__ip_vs_update_dest`: a server revived into a re-created service (a new service object)
/// keeps its connection counters but its statistics are zeroed.
#[test]
fn revival_into_a_recreated_service_zeroes_statistics() {
    let mut ipvs = Ipvs::new(Config::default());
    let k = tcp_svc(80);
    ipvs.add_service(k, ServiceConf::new(Family::V4, "rr"))
        .unwrap();
    ipvs.add_dest(&k, rs(1, 80)).unwrap();
    ipvs.advance(Tick(0));
    ipvs.packet_in(&seg("192.168.0.5", 4000, &k, TcpFlags::SYN), Tick(500));
    ipvs.advance(Tick(2000));
    ipvs.del_service(&k, Tick(2000)).unwrap();
    ipvs.add_service(k, ServiceConf::new(Family::V4, "rr"))
        .unwrap();
    ipvs.add_dest(&k, rs(1, 80)).unwrap();
    let svc = ipvs.service(&k).unwrap();
    let d = ipvs.service_dests(svc).next().unwrap();
    assert_eq!(d.stats.shown().conns, 0);
    assert_eq!(d.inactconns + d.activeconns, 1);
}

/// Deliberate deviation from `ip_vs_conn_out_get`: a reply to client port 0 does not hit a
/// persistence template (the kernel runs the TCP state machine on the template and wraps the
/// server's InActConn below zero).
#[test]
fn a_reply_to_port_0_leaves_templates_alone() {
    let mut ipvs = Ipvs::new(Config::default());
    let k = tcp_svc(80);
    ipvs.add_service(k, ServiceConf::new(Family::V4, "rr").persistent(300))
        .unwrap();
    ipvs.add_dest(&k, rs(1, 80)).unwrap();
    let t = Tick::from_secs(1);
    let Verdict::Forward(f) = ipvs.packet_in(&seg("192.168.0.5", 4000, &k, TcpFlags::SYN), t)
    else {
        panic!("scheduled")
    };
    let reply = Packet::tcp(f.daddr, f.dport, ip("192.168.0.5"), 0, TcpFlags::ACK);
    assert_eq!(
        counters(&ipvs, &k, "10.1.0.1"),
        (1, 0, 1),
        "SYN_RECV is active"
    );
    assert_eq!(ipvs.packet_out(&reply, t), Verdict::Accept);
    assert_eq!(counters(&ipvs, &k, "10.1.0.1"), (1, 0, 1));
    rvs_core::invariants::check(&ipvs, t).unwrap();
}

/// `sctp_conn_schedule`: an ABORT chunk never opens an association, even with `sloppy_sctp`.
#[test]
fn sloppy_sctp_does_not_schedule_an_abort() {
    let mut cfg = Config::default();
    cfg.sysctls.sloppy_sctp = true;
    let mut ipvs = Ipvs::new(cfg);
    let k = ServiceKey::Addr {
        proto: Protocol::Sctp,
        addr: ip("10.0.0.1"),
        port: 80,
    };
    ipvs.add_service(k, ServiceConf::new(Family::V4, "rr"))
        .unwrap();
    ipvs.add_dest(&k, rs(1, 80)).unwrap();
    let abort = Packet::sctp(ip("192.168.0.5"), 4000, k.addr(), 80, 6, None);
    assert_eq!(ipvs.packet_in(&abort, Tick(1)), Verdict::Accept);
    let data = Packet::sctp(ip("192.168.0.5"), 4000, k.addr(), 80, 0, None);
    assert!(matches!(
        ipvs.packet_in(&data, Tick(1)),
        Verdict::Forward(_)
    ));
}

/// Any clock value is fine, up to the end of time.
#[test]
fn clock_values_near_the_end_of_time_do_not_overflow() {
    let mut ipvs = Ipvs::new(Config::default());
    let k = tcp_svc(80);
    ipvs.add_service(k, ServiceConf::new(Family::V4, "rr"))
        .unwrap();
    ipvs.add_dest(&k, rs(1, 80)).unwrap();
    ipvs.advance(Tick(0));
    ipvs.packet_in(
        &seg("192.168.0.5", 4000, &k, TcpFlags::SYN),
        Tick(u64::MAX - 10),
    );
    ipvs.advance(Tick(u64::MAX - 1));
    ipvs.advance(Tick(u64::MAX));
    assert!(ipvs.next_wakeup().is_some());
}

/// `__ip_vs_del_dest`: a delete into an empty trash restarts the trash timer even while it is
/// pending, so the check schedule follows the latest such delete.
#[test]
fn trash_timer_restarts_when_the_trash_was_empty() {
    let mut ipvs = Ipvs::new(Config::default());
    let k = tcp_svc(80);
    ipvs.add_service(k, ServiceConf::new(Family::V4, "rr"))
        .unwrap();
    ipvs.add_dest(&k, rs(1, 80)).unwrap();
    ipvs.add_dest(&k, rs(2, 80)).unwrap();
    ipvs.advance(Tick::from_secs(10));
    ipvs.del_dest(&k, &ip("10.1.0.1"), 80, Tick::from_secs(10))
        .unwrap(); // checks at 70, …
    ipvs.add_dest(&k, rs(1, 80)).unwrap(); // trash empty again, timer still pending
    ipvs.del_dest(&k, &ip("10.1.0.2"), 80, Tick::from_secs(30))
        .unwrap(); // restart: 90, 150, 210
    for s in 31..=200 {
        ipvs.advance(Tick::from_secs(s));
    }
    assert_eq!(
        ipvs.trash().count(),
        1,
        "idle since 90, freed at the check at 210"
    );
    ipvs.advance(Tick::from_secs(211));
    assert_eq!(ipvs.trash().count(), 0);
}

/// `ip_vs_copy_stats` / `ip_vs_zero_stats` (6.1): listings show the estimator's last sample,
/// and `-Z` takes that sample as its zero point.
#[test]
fn listed_statistics_are_the_estimators_samples() {
    let mut ipvs = Ipvs::new(Config::default());
    let k = tcp_svc(80);
    ipvs.add_service(k, ServiceConf::new(Family::V4, "rr"))
        .unwrap();
    ipvs.add_dest(&k, rs(1, 80)).unwrap();
    ipvs.advance(Tick(0)); // samples at 2 s, 4 s, …
    ipvs.packet_in(&seg("192.168.0.5", 4000, &k, TcpFlags::SYN), Tick(2500));
    let shown = ipvs.service(&k).unwrap().stats.shown().conns;
    ipvs.zero(Some(&k)).unwrap();
    ipvs.advance(Tick(4000));
    let after = ipvs.service(&k).unwrap().stats.shown().conns;
    assert_eq!((shown, after), (0, 1));
}

/// `ip_vs_edit_dest` has no address check (a multicast server is simply not found);
/// `ip_vs_new_dest` refuses IPv6 link-local and v4-mapped addresses.
#[test]
fn real_server_address_checks_follow_add_and_edit() {
    let mut ipvs = Ipvs::new(Config::default());
    let k = tcp_svc(80);
    ipvs.add_service(k, ServiceConf::new(Family::V4, "rr"))
        .unwrap();
    let edit = ipvs.edit_dest(&k, DestConf::new(ip("224.0.0.1"), 80).fwd(Forward::Masq));
    assert_eq!(edit, Err(IpvsError::NoSuchDest));
    let k6 = ServiceKey::Addr {
        proto: Protocol::Tcp,
        addr: ip("fd00::100"),
        port: 80,
    };
    ipvs.add_service(k6, ServiceConf::new(Family::V6, "rr"))
        .unwrap();
    for bad in ["fe80::1", "::ffff:10.1.0.1"] {
        let r = ipvs.add_dest(&k6, DestConf::new(ip(bad), 80).fwd(Forward::Masq));
        assert_eq!(r, Err(IpvsError::Invalid), "{bad}");
    }
    assert!(ipvs
        .add_dest(&k6, DestConf::new(ip("fd00:1::2"), 80).fwd(Forward::Masq))
        .is_ok());
}

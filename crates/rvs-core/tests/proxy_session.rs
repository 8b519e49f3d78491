//! The session API a proxying data plane uses (`conn_signal`, `conn_traffic`,
//! `conn_liveness`): the entry follows the connection's life as the kernel's would follow its
//! packets, counters add up, and a gone entry or removed real server is reported.

#[path = "support/fixtures.rs"]
mod fixtures;

use fixtures::*;
use rvs_core::conn::{Direction, PacketInfo};
use rvs_core::datapath::{ConnKey, Liveness, Packet, TcpFlags, Verdict};
use rvs_core::ipvs::{Config, Ipvs};
use rvs_core::model::{Family, Protocol, ServiceConf};
use rvs_core::time::Tick;

fn state(ipvs: &Ipvs, now: Tick) -> &'static str {
    let rows = ipvs.conn_listing(now);
    assert_eq!(rows.len(), 1);
    rows[0].state
}

/// A NAT connection opened by a proxy: SYN in, SYN+ACK out, ACK in; then traffic batches and
/// the close, client first.
fn open(ipvs: &mut Ipvs) -> (rvs_core::conn::ConnId, ConnKey) {
    let key = tcp_svc(80);
    ipvs.add_service(key, ServiceConf::new(Family::V4, "wlc"))
        .unwrap();
    ipvs.add_dest(&key, rs(1, 8080)).unwrap();
    let (c, v) = (ip("192.0.2.9"), ip("10.0.0.1"));
    let syn = Packet::tcp(c, 40000, v, 80, TcpFlags::SYN);
    let Verdict::Forward(fw) = ipvs.packet_in(&syn, Tick(0)) else {
        panic!("not scheduled")
    };
    let synack = Packet::tcp(fw.daddr, fw.dport, c, 40000, TcpFlags::SYN_ACK);
    assert!(matches!(
        ipvs.packet_out(&synack, Tick(1)),
        Verdict::Forward(_)
    ));
    ipvs.packet_in(&Packet::tcp(c, 40000, v, 80, TcpFlags::ACK), Tick(2));
    let ck = ConnKey {
        proto: Protocol::Tcp,
        client: (c, 40000),
        vip: (v, 80),
    };
    (fw.conn.unwrap(), ck)
}

#[test]
fn a_proxied_connection_goes_through_the_kernel_states() {
    let mut ipvs = Ipvs::new(Config::default());
    let (id, ck) = open(&mut ipvs);
    assert_eq!(state(&ipvs, Tick(3)), "ESTABLISHED");
    assert_eq!(counters(&ipvs, &tcp_svc(80), "10.1.0.1"), (1, 0, 0));
    let live = ipvs.conn_traffic(id, &ck, Direction::Input, 10, 1000, Tick(10));
    assert_eq!(live, Liveness::Live);
    ipvs.conn_traffic(id, &ck, Direction::Output, 7, 5000, Tick(10));
    let svc = ipvs.service(&tcp_svc(80)).unwrap();
    let t = svc.stats.total;
    // the three handshake packets were counted by packet_in/out, the batches add up
    assert_eq!((t.inpkts, t.outpkts, t.conns), (12, 8, 1));
    assert_eq!(t.inbytes, 1000 + 2 * 60);
    let fin = PacketInfo::Tcp(TcpFlags::FIN_ACK);
    ipvs.conn_signal(id, &ck, Direction::Input, fin, Tick(20));
    assert_eq!(state(&ipvs, Tick(20)), "CLOSE_WAIT");
    ipvs.conn_signal(id, &ck, Direction::Output, fin, Tick(21));
    ipvs.conn_signal(
        id,
        &ck,
        Direction::Input,
        PacketInfo::Tcp(TcpFlags::ACK),
        Tick(22),
    );
    assert_eq!(state(&ipvs, Tick(22)), "TIME_WAIT");
    assert_eq!(counters(&ipvs, &tcp_svc(80), "10.1.0.1"), (0, 1, 0));
    // signals are not counted as packets
    let t = ipvs.service(&tcp_svc(80)).unwrap().stats.total;
    assert_eq!((t.inpkts, t.outpkts), (12, 8));
    // TIME_WAIT lasts 2 minutes; then the entry is gone
    ipvs.advance(Tick(22 + 120_000));
    assert_eq!(ipvs.conn_liveness(id, &ck), Liveness::Gone);
    assert_eq!(
        ipvs.conn_traffic(id, &ck, Direction::Input, 1, 52, Tick(130_000)),
        Liveness::Gone
    );
}

#[test]
fn a_reset_closes_and_a_removed_server_is_reported() {
    let mut ipvs = Ipvs::new(Config::default());
    let (id, ck) = open(&mut ipvs);
    let other = ConnKey {
        client: (ip("192.0.2.9"), 40001),
        ..ck
    };
    assert_eq!(ipvs.conn_liveness(id, &other), Liveness::Gone);
    ipvs.del_dest(&tcp_svc(80), &ip("10.1.0.1"), 8080, Tick(5))
        .unwrap();
    assert_eq!(ipvs.conn_liveness(id, &ck), Liveness::DestUnavailable);
    let mut ipvs = Ipvs::new(Config::default());
    let (id, ck) = open(&mut ipvs);
    let rst = PacketInfo::Tcp(TcpFlags::RST);
    ipvs.conn_signal(id, &ck, Direction::Output, rst, Tick(5));
    assert_eq!(state(&ipvs, Tick(5)), "CLOSE");
    assert_eq!(counters(&ipvs, &tcp_svc(80), "10.1.0.1"), (0, 1, 0));
}

//! A data plane that schedules on its own (XDP) reports what it did: the entry is made bound
//! to its choice while the scheduler still advances, packets are counted in batches, and
//! expired entries are logged for it.

use std::net::{IpAddr, Ipv4Addr};

use rvs_core::conn::{Direction, PacketInfo};
use rvs_core::datapath::{ConnKey, Liveness, Packet, TcpFlags, Verdict};
use rvs_core::dest::DestId;
use rvs_core::ipvs::{Config, Ipvs};
use rvs_core::model::{DestConf, Family, Protocol, ServiceConf, ServiceKey};
use rvs_core::time::Tick;

const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100));
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

fn key() -> ServiceKey {
    ServiceKey::Addr {
        proto: Protocol::Tcp,
        addr: VIP,
        port: 80,
    }
}

fn service(conf: ServiceConf, weights: &[i32]) -> (Ipvs, Vec<DestId>) {
    let mut ipvs = Ipvs::new(Config::default());
    ipvs.add_service(key(), conf).unwrap();
    let ids = weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let mut d = DestConf::new(IpAddr::V4(Ipv4Addr::new(10, 0, 1, i as u8 + 1)), 80);
            d.weight = *w;
            ipvs.add_dest(&key(), d).unwrap()
        })
        .collect();
    (ipvs, ids)
}

fn syn(port: u16) -> Packet {
    Packet::tcp(CLIENT, port, VIP, 80, TcpFlags::SYN).len(60)
}

fn conn_key(port: u16) -> ConnKey {
    ConnKey {
        proto: Protocol::Tcp,
        client: (CLIENT, port),
        vip: (VIP, 80),
    }
}

fn chosen(v: Verdict) -> DestId {
    match v {
        Verdict::Forward(f) => f.dest,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_reported_choice_binds_the_entry_and_moves_the_scheduler_on() {
    let (mut ipvs, ids) = service(ServiceConf::new(Family::V4, "rr"), &[1, 1, 1]);
    let seq = ipvs.sched_sequence(&key()).unwrap();
    let t = Tick::from_secs(1);
    // the data plane took the first two of the sequence (the second reported elsewhere)
    let id = ipvs.reported_new(&syn(1000), seq[0], t).unwrap();
    let other = ids.iter().copied().find(|d| *d != seq[1]).unwrap();
    ipvs.reported_new(&syn(1001), other, t).unwrap();
    // the next packet_in takes the third: the scheduler moved two places
    assert_eq!(chosen(ipvs.packet_in(&syn(1002), t)), seq[2]);
    let listed = ipvs.conn_listing(t);
    assert_eq!(listed.len(), 3);
    assert_eq!(ipvs.find_conn(&conn_key(1000)), Some(id));
    let d = ipvs.dest(other).unwrap();
    assert_eq!(
        d.inactconns + d.activeconns,
        if other == seq[2] { 2 } else { 1 }
    );
    // connections counted, the reported packets not (their bytes come in batches)
    let total = ipvs.total_stats().total;
    assert_eq!((total.conns, total.inpkts), (3, 1));
    ipvs.reported_traffic(seq[0], Direction::Input, 10, 600);
    let total = ipvs.total_stats().total;
    assert_eq!((total.inpkts, total.inbytes), (11, 660));
    assert_eq!(ipvs.dest(seq[0]).unwrap().stats.total.inpkts, 10);
    // later packets move the state and keep the entry alive
    let ack = PacketInfo::Tcp(TcpFlags::ACK);
    let live = ipvs.conn_signal(id, &conn_key(1000), Direction::Input, ack, t);
    assert_eq!(live, Liveness::Live);
    assert_eq!(ipvs.dest(seq[0]).unwrap().activeconns, 1);
}

#[test]
fn a_real_server_gone_from_the_service_is_not_recorded() {
    let (mut ipvs, ids) = service(ServiceConf::new(Family::V4, "rr"), &[1, 1]);
    let t = Tick::from_secs(1);
    let gone = ipvs.dest(ids[0]).unwrap().addr;
    ipvs.del_dest(&key(), &gone, 80, t).unwrap();
    assert_eq!(ipvs.reported_new(&syn(1000), ids[0], t), None);
    assert_eq!(ipvs.conn_count(), 0);
}

#[test]
fn persistence_follows_the_reported_choice() {
    let conf = ServiceConf::new(Family::V4, "rr").persistent(300);
    let (mut ipvs, ids) = service(conf, &[1, 1, 1]);
    let t = Tick::from_secs(1);
    ipvs.reported_new(&syn(1000), ids[2], t).unwrap();
    // the template sends the client's next connection to the same server
    assert_eq!(chosen(ipvs.packet_in(&syn(1001), t)), ids[2]);
    // a report of another server (the data plane's template was gone) replaces the template
    ipvs.reported_new(&syn(1002), ids[0], t).unwrap();
    assert_eq!(chosen(ipvs.packet_in(&syn(1003), t)), ids[0]);
}

#[test]
fn the_expiry_log_names_each_entry_once() {
    let (mut ipvs, ids) = service(ServiceConf::new(Family::V4, "rr"), &[1]);
    ipvs.set_expiry_log(true);
    let t = Tick::from_secs(1);
    let id = ipvs.reported_new(&syn(1000), ids[0], t).unwrap();
    // SYN_RECV lasts 60 s
    ipvs.advance(Tick::from_secs(30));
    assert!(ipvs.take_expired().is_empty());
    assert_eq!(ipvs.find_conn(&conn_key(1000)), Some(id));
    ipvs.advance(Tick::from_secs(62));
    let gone = ipvs.take_expired();
    assert_eq!(gone.len(), 1);
    assert_eq!((gone[0].key, gone[0].template), (conn_key(1000), false));
    assert!(ipvs.take_expired().is_empty());
    assert_eq!(ipvs.find_conn(&conn_key(1000)), None);
    // a new report on a tuple bound elsewhere replaces the entry
    let (mut ipvs, ids) = service(ServiceConf::new(Family::V4, "rr"), &[1, 1]);
    ipvs.set_expiry_log(true);
    ipvs.reported_new(&syn(1000), ids[0], t).unwrap();
    let id = ipvs.reported_new(&syn(1000), ids[1], t).unwrap();
    assert_eq!(ipvs.find_conn(&conn_key(1000)), Some(id));
    assert_eq!(ipvs.conn_count(), 1);
    assert_eq!(ipvs.take_expired().len(), 1);
}

#[test]
fn a_resumed_entry_neither_schedules_nor_counts() {
    let (mut ipvs, ids) = service(ServiceConf::new(Family::V4, "rr"), &[1, 1, 1]);
    let seq = ipvs.sched_sequence(&key()).unwrap();
    let t = Tick::from_secs(1);
    let id = ipvs.reported_resume(&syn(1000), ids[1], t).unwrap();
    assert_eq!(ipvs.find_conn(&conn_key(1000)), Some(id));
    assert_eq!(ipvs.total_stats().total.conns, 0);
    let d = ipvs.dest(ids[1]).unwrap();
    assert_eq!(
        d.activeconns + d.inactconns,
        1,
        "{:?}",
        ipvs.conn_listing(t)
    );
    // the scheduler did not move
    assert_eq!(chosen(ipvs.packet_in(&syn(1001), t)), seq[0]);
    // an entry that is there is not made twice
    assert_eq!(ipvs.reported_resume(&syn(1000), ids[1], t), None);
}

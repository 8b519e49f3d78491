//! Small builders shared by the engine tests.
#![allow(dead_code)]

use std::net::IpAddr;

use rvs_core::datapath::Verdict;
use rvs_core::ipvs::Ipvs;
use rvs_core::model::*;

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn tcp_svc(port: u16) -> ServiceKey {
    ServiceKey::Addr {
        proto: Protocol::Tcp,
        addr: ip("10.0.0.1"),
        port,
    }
}

pub fn udp_svc(port: u16) -> ServiceKey {
    ServiceKey::Addr {
        proto: Protocol::Udp,
        addr: ip("10.0.0.1"),
        port,
    }
}

pub fn rs(n: u8, port: u16) -> DestConf {
    DestConf::new(ip(&format!("10.1.0.{n}")), port).fwd(Forward::Masq)
}

pub fn dest_of(v: Verdict) -> Option<IpAddr> {
    match v {
        Verdict::Forward(f) => Some(f.daddr),
        _ => None,
    }
}

pub fn counters(ipvs: &Ipvs, key: &ServiceKey, addr: &str) -> (u32, u32, u32) {
    let svc = ipvs.service(key).unwrap();
    let d = ipvs
        .service_dests(svc)
        .find(|d| d.addr == ip(addr))
        .unwrap();
    (d.activeconns, d.inactconns, d.persistconns)
}

//! A reload keeps what the checker knows: a server that is down stays out, a server that is
//! up stays in without being re-added, only changed settings reach IPVS, servers no longer
//! declared are handed back for draining, new ones join, and probes in flight still count.

mod common;

use common::*;
use rvs_core::model::ServiceConf;
use rvs_core::time::Tick;
use rvs_health::RealId;

#[test]
fn a_reload_applies_only_the_differences_and_keeps_the_checkers_state() {
    let before = vec![service(vec![
        real(1, 3, vec![tcp(t())]),
        real(2, 1, vec![tcp(t())]),
        real(3, 1, vec![tcp(t())]),
    ])];
    let mut d = Driver::new(before);
    d.run_until(Tick(2_000));
    d.dead.insert(ip(2));
    d.secs(5);
    assert!(!d.h.real_status(RealId { svc: 0, real: 1 }).unwrap().healthy);
    // after: .1 gets weight 5, .2 (down) unchanged, .3 removed, .4 new; lines moved around
    let mut s = service(vec![
        real(4, 2, vec![tcp(t())]),
        real(2, 1, vec![tcp(t())]),
        real(1, 5, vec![tcp(t())]),
    ]);
    s.loc = rvs_config::spec::Loc::new("test.conf", 40, 1);
    let r = d.h.reload(&cfg(vec![s]), 9, d.now);
    assert_eq!(
        ipvs(&r.actions),
        vec![
            "edit 10.0.0.1:80 of TCP 192.0.2.10:80 weight 5",
            "add 10.0.0.4:80 to TCP 192.0.2.10:80 weight 2",
        ]
    );
    assert_eq!(r.drain.len(), 1);
    assert_eq!(r.drain[0].1.addr, ip(3));
    assert_eq!((r.services, r.reals), ([1, 0, 0, 0], [2, 1, 1]));
    // the down server is still down (its checker kept), and comes back by its checks
    let two = RealId { svc: 0, real: 1 };
    assert!(!d.h.real_status(two).unwrap().healthy);
    d.dead.remove(&ip(2));
    let mark = d.log.len();
    d.secs(3);
    assert!(
        d.first(mark, "add 10.0.0.2:80").is_some(),
        "{:#?}",
        d.since(mark)
    );
    assert!(d.h.real_status(two).unwrap().healthy);
}

#[test]
fn a_reload_edits_changed_services_adds_new_ones_and_drops_the_rest() {
    let mut a = service(vec![real(1, 1, vec![tcp(t())])]);
    let mut b = service(vec![real(2, 1, vec![tcp(t())])]);
    b.keys = vec![rvs_core::model::ServiceKey::Addr {
        proto: rvs_core::model::Protocol::Udp,
        addr: "192.0.2.10".parse().unwrap(),
        port: 53,
    }];
    let mut d = Driver::new(vec![a.clone(), b]);
    d.secs(2);
    a.conf = ServiceConf::new(rvs_core::model::Family::V4, "rr");
    let mut c = service(vec![real(5, 1, vec![tcp(t())])]);
    c.keys = vec![rvs_core::model::ServiceKey::Fwmark {
        af: rvs_core::model::Family::V4,
        mark: 7,
    }];
    let r = d.h.reload(&cfg(vec![a, c]), 9, d.now);
    assert_eq!(
        ipvs(&r.actions),
        vec![
            "edit service TCP 192.0.2.10:80 rr",
            "add service FWM 7 wlc",
            "add 10.0.0.5:80 to FWM 7 weight 1",
            "delete service UDP 192.0.2.10:53",
        ]
    );
    assert_eq!((r.services, r.reals), ([0, 1, 1, 1], [1, 1, 0]));
}

#[test]
fn an_unchanged_reload_changes_nothing() {
    let svc = service(vec![real(1, 3, vec![tcp(t())]), real(2, 1, vec![tcp(t())])]);
    let mut d = Driver::new(vec![svc.clone()]);
    d.secs(3);
    let r = d.h.reload(&cfg(vec![svc]), 9, d.now);
    assert!(ipvs(&r.actions).is_empty(), "{:?}", r.actions);
    assert!(r.drain.is_empty());
    // probes in flight across the reload still count: the checkers keep running
    let mark = d.log.len();
    d.dead.insert(ip(1));
    d.secs(5);
    assert!(d.first(mark, "delete 10.0.0.1:80").is_some());
}

//! Reloads that change more than weights: a group's members, a server's checks, its
//! forwarding method, the sorry server. Each keeps what still holds and leaves IPVS exactly
//! as a fresh start with the new files would, without deleting what stays.

mod common;

use common::*;
use rvs_config::spec::VirtualService;
use rvs_core::model::{Forward, Protocol, ServiceKey};
use rvs_core::time::Tick;
use rvs_health::RealId;

fn port(p: u16) -> ServiceKey {
    ServiceKey::Addr {
        proto: Protocol::Tcp,
        addr: "192.0.2.10".parse().unwrap(),
        port: p,
    }
}

fn group(ports: &[u16]) -> VirtualService {
    let mut s = service(vec![real(1, 1, vec![tcp(t())]), real(2, 2, vec![tcp(t())])]);
    s.keys = ports.iter().map(|p| port(*p)).collect();
    s
}

#[test]
fn a_group_that_gains_a_member_keeps_the_others_and_adds_only_the_new_one() {
    let mut d = Driver::new(vec![group(&[80, 81])]);
    d.secs(3);
    let r = d.h.reload(&cfg(vec![group(&[80, 81, 82])]), 9, d.now);
    assert_eq!(
        ipvs(&r.actions),
        vec![
            "add service TCP 192.0.2.10:82 wlc",
            "add 10.0.0.1:80 to TCP 192.0.2.10:82 weight 1",
            "add 10.0.0.2:80 to TCP 192.0.2.10:82 weight 2",
        ]
    );
    assert!(r.drain.is_empty());
    // the checkers' state is kept: a server that dies leaves all three members
    let mark = d.log.len();
    d.dead.insert(ip(1));
    d.secs(3);
    for p in [80, 81, 82] {
        let line = format!("delete 10.0.0.1:80 from TCP 192.0.2.10:{p}");
        assert!(d.first(mark, &line).is_some(), "{:#?}", d.since(mark));
    }
}

#[test]
fn a_group_that_loses_a_member_deletes_only_that_one() {
    let mut d = Driver::new(vec![group(&[80, 81])]);
    d.secs(3);
    let r = d.h.reload(&cfg(vec![group(&[80])]), 9, d.now);
    assert_eq!(ipvs(&r.actions), vec!["delete service TCP 192.0.2.10:81"]);
    assert!(r.drain.is_empty());
}

#[test]
fn a_member_moving_to_another_service_is_deleted_before_that_service_takes_it() {
    let mut d = Driver::new(vec![group(&[80, 81])]);
    d.secs(3);
    let mut other = service(vec![real(5, 1, vec![tcp(t())])]);
    other.keys = vec![port(81)];
    let r = d.h.reload(&cfg(vec![group(&[80]), other]), 9, d.now);
    assert_eq!(
        ipvs(&r.actions),
        vec![
            "delete service TCP 192.0.2.10:81",
            "add service TCP 192.0.2.10:81 wlc",
            "add 10.0.0.5:80 to TCP 192.0.2.10:81 weight 1",
        ]
    );
}

#[test]
fn a_down_server_whose_checks_change_stays_out_until_the_new_checks_pass() {
    let mut d = Driver::new(vec![service(vec![
        real(1, 1, vec![tcp(t())]),
        real(2, 1, vec![tcp(t())]),
    ])]);
    d.secs(2);
    d.dead.insert(ip(2));
    d.secs(3);
    let two = RealId { svc: 0, real: 1 };
    assert_eq!(d.weight_of(0, 1), None);
    // a new connect_timeout for both: the dead server is not put back by the reload
    let slower = timing(1_000, 700, 0, 1_000);
    let s = service(vec![
        real(1, 1, vec![tcp(slower)]),
        real(2, 1, vec![tcp(slower)]),
    ]);
    let r = d.h.reload(&cfg(vec![s]), 9, d.now);
    assert!(ipvs(&r.actions).is_empty(), "{:#?}", r.actions);
    assert!(!d.h.real_status(two).unwrap().healthy);
    let mark = d.log.len();
    d.secs(3);
    assert!(
        d.first(mark, "add 10.0.0.2:80").is_none(),
        "{:#?}",
        d.since(mark)
    );
    // the server up keeps its place; the dead one returns by its new check once alive
    assert_eq!(d.weight_of(0, 0), Some(1));
    d.dead.remove(&ip(2));
    d.secs(2);
    assert!(
        d.first(mark, "add 10.0.0.2:80").is_some(),
        "{:#?}",
        d.since(mark)
    );
}

#[test]
fn an_alpha_server_up_whose_checks_change_stays_in() {
    let mut r1 = real(1, 1, vec![tcp(t())]);
    r1.alpha = true;
    let mut d = Driver::new(vec![service(vec![r1.clone()])]);
    d.secs(2);
    assert_eq!(d.weight_of(0, 0), Some(1));
    r1.checks = vec![tcp(timing(2_000, 500, 0, 1_000))];
    let r = d.h.reload(&cfg(vec![service(vec![r1])]), 9, d.now);
    assert!(ipvs(&r.actions).is_empty(), "{:#?}", r.actions);
    assert_eq!(d.weight_of(0, 0), Some(1));
}

#[test]
fn a_check_added_beside_a_kept_one_keeps_the_kept_ones_schedule_and_probe() {
    let mut d = Driver::new(vec![service(vec![real(1, 1, vec![tcp(t())])])]);
    d.latency_ms = 300;
    // a probe of the TCP check is in flight (started at 2 010, answered at 2 310)
    d.run_until(Tick(2_100));
    let s = service(vec![real(1, 1, vec![misc(t(), false), tcp(t())])]);
    d.h.reload(&cfg(vec![s]), 9, d.now);
    let st = d.h.real_status(RealId { svc: 0, real: 0 }).unwrap();
    assert_eq!(st.checks_up, vec![true, true]);
    // only the new MISC check starts now: the TCP one is still in flight
    let due: Vec<usize> = d.h.due_probes(d.now).iter().map(|p| p.check).collect();
    assert_eq!(due, vec![0]);
    // and its answer still counts (no timeout at its deadline)
    let mark = d.log.len();
    d.run_until(Tick(2_400));
    assert!(
        d.h.real_status(RealId { svc: 0, real: 0 })
            .unwrap()
            .checks_up[1]
    );
    assert!(d.since(mark).is_empty(), "{:#?}", d.since(mark));
}

#[test]
fn a_forwarding_change_that_moves_the_ipvs_port_replaces_the_server() {
    // masquerading to port 8080, then direct routing (which takes the service's port 80)
    let mut r1 = real(1, 1, vec![tcp(t())]);
    r1.dest.port = 8080;
    let mut d = Driver::new(vec![service(vec![r1.clone()])]);
    d.secs(2);
    r1.dest = r1.dest.fwd(Forward::Route);
    let r = d.h.reload(&cfg(vec![service(vec![r1])]), 9, d.now);
    assert_eq!(
        ipvs(&r.actions),
        vec![
            "delete 10.0.0.1:8080 from TCP 192.0.2.10:80",
            "add 10.0.0.1:80 to TCP 192.0.2.10:80 weight 1",
        ]
    );
    assert!(r.drain.is_empty());
}

#[test]
fn a_server_whose_new_port_gives_the_same_ipvs_server_is_not_drained() {
    // direct routing: 10.0.0.1:8080 and 10.0.0.1:80 are the same IPVS server (port 80)
    let mut r1 = real(1, 1, vec![tcp(t())]);
    r1.dest = r1.dest.fwd(Forward::Route);
    r1.dest.port = 8080;
    let mut d = Driver::new(vec![service(vec![r1.clone()])]);
    d.secs(2);
    r1.dest.port = 80;
    let r = d.h.reload(&cfg(vec![service(vec![r1])]), 9, d.now);
    assert!(r.drain.is_empty(), "{:?}", r.drain);
}

#[test]
fn removing_the_sorry_server_while_it_serves_puts_the_live_servers_back() {
    let mut s = service(vec![
        real(1, 1, vec![tcp(t())]),
        real(2, 1, vec![tcp(t())]),
        real(3, 1, vec![tcp(t())]),
    ]);
    s.quorum = 3;
    s.sorry = Some(sorry(99, false));
    let mut d = Driver::new(vec![s.clone()]);
    d.secs(2);
    d.dead.insert(ip(3));
    d.secs(3);
    assert!(d.h.sorry_active(0));
    s.sorry = None;
    let r = d.h.reload(&cfg(vec![s]), 9, d.now);
    assert!(!d.h.sorry_active(0));
    assert_eq!(d.weight_of(0, 0), Some(1), "{:#?}", r.actions);
    assert_eq!(d.weight_of(0, 1), Some(1));
    assert_eq!(d.weight_of(0, 2), None);
    assert_eq!(r.drain.len(), 1);
    assert_eq!(r.drain[0].1.addr, ip(99));
}

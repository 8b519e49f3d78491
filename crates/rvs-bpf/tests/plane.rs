//! The control side (`Plane`) against the loaded program, packets through
//! `BPF_PROG_TEST_RUN`: the program serves what the core holds, chooses in the kernel's order
//! across rule changes, and what it did comes back into the core (entries, states, counters,
//! expiry). Needs root (loading BPF programs).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use rvs_bpf::plane::{flow_key, Neighbours, Plane};
use rvs_bpf::{verdict, Xdp};
use rvs_core::datapath::{ConnKey, Packet, TcpFlags, Verdict};
use rvs_core::ipvs::{Config, Ipvs};
use rvs_core::model::{Family, Protocol, ServiceConf, ServiceKey};
use rvs_core::time::Tick;

mod common;
use common::*;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 88);

/// Real server 10.0.0.x has Ethernet address 02:01:00:00:00:x.
struct Lan;

impl Neighbours for Lan {
    fn next_hop(&mut self, addr: IpAddr, _new: bool) -> Option<[u8; 6]> {
        match addr {
            IpAddr::V4(a) if a.octets()[3] != 99 => Some([2, 1, 0, 0, 0, a.octets()[3]]),
            _ => None, // 10.0.0.99 never answers
        }
    }
}

fn key() -> ServiceKey {
    ServiceKey::Addr {
        proto: Protocol::Tcp,
        addr: IpAddr::V4(VIP),
        port: 80,
    }
}

fn rules(ipvs: &mut Ipvs, sched: &str, dests: &[(u8, i32)]) {
    ipvs.add_service(key(), ServiceConf::new(Family::V4, sched))
        .unwrap();
    for (last, w) in dests {
        add(ipvs, *last, *w);
    }
}

fn add(ipvs: &mut Ipvs, last: u8, weight: i32) {
    ipvs.add_dest(&key(), dest(last, weight)).unwrap();
}

/// Ethernet + IPv4 + TCP from the client's `sport` to VIP:80 with `flags`.
fn segment(sport: u16, flags: u8) -> Vec<u8> {
    common::segment(VIP, sport, flags)
}

struct Bench {
    ipvs: Ipvs,
    plane: Plane,
    /// the same rules driven by packet_in: what the kernel would choose
    model: Ipvs,
}

impl Bench {
    /// The seed's DR rules: wrr over 10.0.0.9, .20, .21 with weights 2, 5, 5.
    fn new() -> Bench {
        Bench::with("wrr", &[(9, 2), (20, 5), (21, 5)])
    }

    fn with(sched: &str, dests: &[(u8, i32)]) -> Bench {
        let mut ipvs = Ipvs::new(Config::default());
        ipvs.set_expiry_log(true);
        rules(&mut ipvs, sched, dests);
        let mut model = Ipvs::new(Config::default());
        rules(&mut model, sched, dests);
        let mut xdp = Xdp::load().expect("loading the XDP program (needs root)");
        xdp.set_iface(LO, DIRECTOR_MAC).unwrap();
        let plane = Plane::new(xdp, Tick::ZERO).unwrap();
        let mut b = Bench { ipvs, plane, model };
        b.sync();
        b
    }

    fn sync(&mut self) {
        let report = self.plane.sync(&mut self.ipvs, now(), &mut Lan).unwrap();
        assert!(report.skipped.is_empty(), "{report:?}");
    }

    /// Sends a segment; the last byte of the real server's address it went to (None: not
    /// forwarded).
    fn send(&mut self, sport: u16, flags: u8) -> Option<u8> {
        let run = self
            .plane
            .xdp()
            .test_run(&segment(sport, flags), Some(LO), 1)
            .unwrap();
        (run.verdict == verdict::TX).then(|| run.packet[5])
    }

    /// What the kernel (the model) chooses for a SYN from `sport`.
    fn kernel(&mut self, sport: u16) -> Option<u8> {
        self.kernel_segment(sport, TcpFlags::SYN)
    }

    /// The model's real server for a segment from `sport` (its state moves as the kernel's).
    fn kernel_segment(&mut self, sport: u16, flags: TcpFlags) -> Option<u8> {
        let p = Packet::tcp(IpAddr::V4(CLIENT), sport, IpAddr::V4(VIP), 80, flags);
        match self.model.packet_in(&p.len(40), now()) {
            Verdict::Forward(f) => match f.daddr {
                IpAddr::V4(a) => Some(a.octets()[3]),
                IpAddr::V6(_) => None,
            },
            _ => None,
        }
    }

    fn poll(&mut self) {
        self.plane.poll(&mut self.ipvs, now()).unwrap();
    }
}

fn conn_key(sport: u16) -> ConnKey {
    ConnKey {
        proto: Protocol::Tcp,
        client: (IpAddr::V4(CLIENT), sport),
        vip: (IpAddr::V4(VIP), 80),
    }
}

#[test]
fn the_program_chooses_in_the_kernels_order_across_rule_changes() {
    let mut b = Bench::new();
    let mut got = Vec::new();
    let mut want = Vec::new();
    for sport in 1000..1024 {
        got.push(b.send(sport, SYN));
        want.push(b.kernel(sport));
    }
    assert_eq!(got, want, "wrr 2/5/5");
    // a rule change: the program's choices go into the core before the change (as the
    // director polls before it applies one), and its next sequence continues from there
    b.poll();
    add(&mut b.ipvs, 30, 3);
    add(&mut b.model, 30, 3);
    b.sync();
    for sport in 1024..1060 {
        got.push(b.send(sport, SYN));
        want.push(b.kernel(sport));
    }
    assert_eq!(got, want, "after adding 10.0.0.30 with weight 3");
    // every flow is an entry of the core, bound where the packet went
    b.poll();
    let listed = b.ipvs.conn_listing(now());
    assert_eq!(listed.len(), 60);
    let by_port: HashMap<u16, u8> = listed
        .iter()
        .map(|c| match c.dest.0 {
            IpAddr::V4(a) => (c.client.1, a.octets()[3]),
            IpAddr::V6(_) => unreachable!(),
        })
        .collect();
    for (i, sport) in (1000..1060).enumerate() {
        assert_eq!(Some(by_port[&sport]), got[i]);
    }
}

/// The connection-count schedulers decide by the core's counts (written after each poll)
/// plus the connections the program scheduled since: new flows between polls, and flows
/// that became inactive (FIN) once polled, choose as the kernel does.
#[test]
fn connection_count_schedulers_choose_as_the_kernel() {
    let dests = [(9, 1), (20, 3), (21, 2), (22, 0)];
    for sched in ["lc", "wlc", "sed", "nq", "fo", "ovf"] {
        let mut b = Bench::with(sched, &dests);
        let (mut got, mut want) = (Vec::new(), Vec::new());
        let mut open = Vec::new();
        for round in 0..12u16 {
            // three new flows without a poll in between
            for k in 0..3 {
                let sport = 5000 + round * 10 + k;
                got.push(b.send(sport, SYN));
                want.push(b.kernel(sport));
                open.push(sport);
            }
            // the oldest open flow closes (its entry becomes inactive), then a poll
            if round % 2 == 1 {
                let sport = open.remove(0);
                b.send(sport, FIN_ACK).expect("forwarded");
                b.kernel_segment(
                    sport,
                    TcpFlags {
                        fin: true,
                        ack: true,
                        ..TcpFlags::default()
                    },
                );
                b.poll();
            }
        }
        assert_eq!(got, want, "{sched}");
    }
}

#[test]
fn states_counters_and_expiry_come_back_into_the_core() {
    let mut b = Bench::new();
    for sport in 2000..2010 {
        b.send(sport, SYN).expect("forwarded");
    }
    for sport in 2000..2004 {
        b.send(sport, ACK).expect("forwarded");
    }
    // a second ACK changes nothing: no event, counted all the same
    b.send(2000, ACK).expect("forwarded");
    b.poll();
    let listed = b.ipvs.conn_listing(now());
    let established = listed.iter().filter(|c| c.state == "ESTABLISHED").count();
    let syn_recv = listed.iter().filter(|c| c.state == "SYN_RECV").count();
    assert_eq!((established, syn_recv), (4, 6));
    b.plane.count(&mut b.ipvs).unwrap();
    let total = b.ipvs.total_stats().total;
    assert_eq!(
        (total.conns, total.inpkts, total.inbytes),
        (10, 15, 15 * 40)
    );
    let svc = b.ipvs.service(&key()).unwrap();
    assert_eq!(svc.stats.total.inpkts, 15);
    // counting again adds nothing new
    b.plane.count(&mut b.ipvs).unwrap();
    assert_eq!(b.ipvs.total_stats().total.inpkts, 15);

    // 2000 had a packet after its last report: its entry comes back when it expires; the
    // others go, and the program forgets them
    let late = Tick(now().0 + 1_000_000);
    b.ipvs.advance(late);
    b.plane.poll(&mut b.ipvs, late).unwrap();
    let left: Vec<u16> = b
        .ipvs
        .conn_listing(late)
        .iter()
        .map(|c| c.client.1)
        .collect();
    assert_eq!(left, [2000]);
    assert_eq!(b.ipvs.conn_listing(late)[0].state, "ESTABLISHED");
    assert!(b
        .plane
        .xdp()
        .flow(&flow_key(&conn_key(2000)))
        .unwrap()
        .is_some());
    for sport in 2001..2010 {
        assert_eq!(
            b.plane.xdp().flow(&flow_key(&conn_key(sport))).unwrap(),
            None
        );
    }
    // with nothing new from it, it goes at its next expiry
    let later = Tick(late.0 + 1_000_000);
    b.ipvs.advance(later);
    b.plane.poll(&mut b.ipvs, later).unwrap();
    assert_eq!(b.ipvs.conn_count(), 0);
    assert_eq!(
        b.plane.xdp().flow(&flow_key(&conn_key(2000))).unwrap(),
        None
    );
    // an ACK of a forgotten flow is the kernel's
    assert_eq!(b.send(2001, ACK), None);
}

#[test]
fn an_unresolved_next_hop_is_reported_and_its_flows_dropped() {
    let mut b = Bench::new();
    add(&mut b.ipvs, 99, 100);
    let report = b.plane.sync(&mut b.ipvs, now(), &mut Lan).unwrap();
    assert_eq!(report.unresolved, [IpAddr::V4(Ipv4Addr::new(10, 0, 0, 99))]);
    // wrr with weight 100 picks 10.0.0.99 first: its packets are dropped, not misdelivered
    assert_eq!(b.send(3000, SYN), None);
}

#[test]
fn services_the_program_cannot_serve_are_reported_once() {
    let mut b = Bench::new();
    let fw = ServiceKey::Fwmark {
        af: Family::V4,
        mark: 7,
    };
    b.ipvs
        .add_service(fw, ServiceConf::new(Family::V4, "rr"))
        .unwrap();
    let lc = ServiceKey::Addr {
        proto: Protocol::Sctp,
        addr: IpAddr::V4(VIP),
        port: 80,
    };
    b.ipvs
        .add_service(lc, ServiceConf::new(Family::V4, "rr"))
        .unwrap();
    let report = b.plane.sync(&mut b.ipvs, now(), &mut Lan).unwrap();
    let keys: Vec<ServiceKey> = report.skipped.iter().map(|s| s.0).collect();
    assert_eq!(keys.len(), 2, "{report:?}");
    assert!(keys.contains(&fw) && keys.contains(&lc));
    let again = b.plane.sync(&mut b.ipvs, now(), &mut Lan).unwrap();
    assert!(again.skipped.is_empty());
    // removing the service removes it from the program
    b.ipvs.del_service(&key(), now()).unwrap();
    b.sync();
    assert_eq!(b.send(4000, SYN), None);
}

/// Next hops that change: a new Ethernet address is followed at the next refresh; an entry
/// gone from the neighbour table keeps the last address (the kernel ages out entries it does
/// not use itself, and the director's own stack rarely talks to a DR real server).
#[test]
fn next_hops_are_followed_and_kept_while_asked_again() {
    struct Moving(Option<u8>);
    impl Neighbours for Moving {
        fn next_hop(&mut self, _addr: IpAddr, _new: bool) -> Option<[u8; 6]> {
            self.0.map(|b| [2, 9, 9, 9, 9, b])
        }
    }
    let mut b = Bench::with("rr", &[(9, 1)]);
    let mac = |b: &mut Bench, sport: u16| {
        let run = b
            .plane
            .xdp()
            .test_run(&segment(sport, SYN), Some(LO), 1)
            .unwrap();
        (run.verdict == verdict::TX).then(|| run.packet[5])
    };
    b.plane
        .refresh_dests(&b.ipvs, &mut Moving(Some(0x11)))
        .unwrap();
    assert_eq!(mac(&mut b, 6000), Some(0x11));
    b.plane
        .refresh_dests(&b.ipvs, &mut Moving(Some(0x22)))
        .unwrap();
    assert_eq!(mac(&mut b, 6001), Some(0x22));
    let report = b.plane.refresh_dests(&b.ipvs, &mut Moving(None)).unwrap();
    assert!(report.unresolved.is_empty());
    assert_eq!(mac(&mut b, 6002), Some(0x22));
}

/// Flows whose events the core never got (a full ring) are found by a walk of the flow map
/// and taken up, so they are listed and expire like the others.
#[test]
fn a_walk_takes_up_flows_whose_events_were_lost() {
    let mut b = Bench::new();
    for sport in 7000..7003 {
        b.send(sport, SYN).expect("forwarded");
    }
    b.send(7000, ACK).expect("forwarded");
    // the events are not polled: as far as the core knows, nothing happened
    assert_eq!(b.plane.reconcile(&mut b.ipvs, now()).unwrap(), 3);
    let listed = b.ipvs.conn_listing(now());
    let mut states: Vec<(u16, &str)> = listed.iter().map(|c| (c.client.1, c.state)).collect();
    states.sort();
    assert_eq!(
        states,
        [
            (7000, "ESTABLISHED"),
            (7001, "SYN_RECV"),
            (7002, "SYN_RECV")
        ]
    );
    // a second walk finds nothing new
    assert_eq!(b.plane.reconcile(&mut b.ipvs, now()).unwrap(), 0);
}

//! lblc, lblcr and twos in the XDP program, driven by the control side (`Plane`) with packets
//! through `BPF_PROG_TEST_RUN`. lblc and lblcr choose as the kernel (a second `Ipvs` driven
//! by `packet_in`) for new flows to several virtual services (a service's packets all have
//! its virtual address as destination, so each service has its own table entry) across
//! overloads, weight changes, removed and re-added real servers; their tables expire by the
//! kernel's timer. twos is random, as the kernel's is: its properties are tested. Needs root.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use rvs_bpf::plane::Plane;
use rvs_bpf::{verdict, Xdp};
use rvs_core::datapath::{Packet, TcpFlags, Verdict};
use rvs_core::ipvs::{Config, Ipvs};
use rvs_core::model::{Family, Protocol, ServiceConf, ServiceKey};
use rvs_core::time::{Span, Tick};

mod common;
use common::*;

/// Virtual service `v`: 10.0.1.v, TCP port 80.
fn key(v: u8) -> ServiceKey {
    ServiceKey::Addr {
        proto: Protocol::Tcp,
        addr: IpAddr::V4(Ipv4Addr::new(10, 0, 1, v)),
        port: 80,
    }
}

/// Ethernet + IPv4 + TCP from the client's `sport` to service `v` with `flags`.
fn segment(v: u8, sport: u16, flags: u8) -> Vec<u8> {
    common::segment(Ipv4Addr::new(10, 0, 1, v), sport, flags)
}

/// The program's core and a model driven by `packet_in` (what the kernel would choose), with
/// the same rules.
struct Bench {
    ipvs: Ipvs,
    plane: Plane,
    model: Ipvs,
}

impl Bench {
    /// Services 1..=`services`, each with `dests` (last address byte, weight).
    fn new(sched: &str, services: u8, dests: &[(u8, i32)]) -> Bench {
        let mut ipvs = Ipvs::new(Config::default());
        ipvs.set_expiry_log(true);
        let model = Ipvs::new(Config::default());
        let mut xdp = Xdp::load().expect("loading the XDP program (needs root)");
        xdp.set_iface(LO, DIRECTOR_MAC).unwrap();
        let plane = Plane::new(xdp, Tick::ZERO).unwrap();
        let mut b = Bench { ipvs, plane, model };
        for v in 1..=services {
            b.both(|i| {
                i.add_service(key(v), ServiceConf::new(Family::V4, sched))
                    .map(|_| ())
            });
            for (last, w) in dests {
                b.both(|i| i.add_dest(&key(v), dest(*last, *w)).map(|_| ()));
            }
        }
        b.sync();
        b
    }

    /// A rule change made to both (after a poll, as the director does).
    fn both<E: std::fmt::Debug>(&mut self, f: impl Fn(&mut Ipvs) -> Result<(), E>) {
        f(&mut self.ipvs).unwrap();
        f(&mut self.model).unwrap();
    }

    fn sync(&mut self) {
        let report = self.plane.sync(&mut self.ipvs, now(), &mut lan).unwrap();
        assert!(report.skipped.is_empty(), "{report:?}");
    }

    fn poll(&mut self) {
        self.plane.poll(&mut self.ipvs, now()).unwrap();
    }

    /// Sends a segment; the last byte of the real server's address it went to.
    fn send(&mut self, v: u8, sport: u16, flags: u8) -> Option<u8> {
        let run = self
            .plane
            .xdp()
            .test_run(&segment(v, sport, flags), Some(LO), 1)
            .unwrap();
        (run.verdict == verdict::TX).then(|| run.packet[5])
    }

    /// The model's real server for a segment (its state moves as the kernel's).
    fn kernel(&mut self, v: u8, sport: u16, flags: TcpFlags) -> Option<u8> {
        let p = Packet::tcp(
            IpAddr::V4(CLIENT),
            sport,
            IpAddr::V4(Ipv4Addr::new(10, 0, 1, v)),
            80,
            flags,
        );
        match self.model.packet_in(&p.len(40), now()) {
            Verdict::Forward(f) => match f.daddr {
                IpAddr::V4(a) => Some(a.octets()[3]),
                IpAddr::V6(_) => None,
            },
            _ => None,
        }
    }
}

/// A small deterministic generator (xorshift).
struct Draw(u64);

impl Draw {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// New flows to random services, some of the open ones closing (then a poll, so that the
/// program counts them inactive), and rule changes between the rounds: weights (one to 0),
/// the server a service's table holds removed (the next flow takes another) and added back
/// later (the kernel revives it from the trash, where the table kept it), the same removed
/// and added back at once (the table's entry is good again), a new real server. lblc and
/// lblcr choose as the kernel throughout.
#[test]
fn lblc_and_lblcr_choose_as_the_kernel() {
    let dests = [(9, 1), (20, 3), (21, 2), (22, 1)];
    for sched in ["lblc", "lblcr"] {
        let mut b = Bench::new(sched, 3, &dests);
        let mut draw = Draw(0x9e37_79b9_7f4a_7c15);
        let (mut got, mut want) = (Vec::new(), Vec::new());
        let mut open: Vec<(u8, u16, u8)> = Vec::new();
        // the server each service's last flow went to (one its table holds)
        let mut last: HashMap<u8, u8> = HashMap::new();
        let mut removed = 0;
        let mut sport = 10_000u16;
        for round in 0..16u32 {
            for _ in 0..5 {
                let v = 1 + draw.below(3) as u8;
                sport += 1;
                let g = b.send(v, sport, SYN);
                let w = b.kernel(v, sport, TcpFlags::SYN);
                got.push((round, v, g));
                want.push((round, v, w));
                if let Some(to) = g {
                    open.push((v, sport, to));
                    last.insert(v, to);
                }
            }
            // two open flows close, then the director polls
            for _ in 0..2 {
                let (v, sp, _) = open.remove(draw.below(open.len() as u64) as usize);
                b.send(v, sp, FIN_ACK).expect("forwarded");
                b.kernel(
                    v,
                    sp,
                    TcpFlags {
                        fin: true,
                        ack: true,
                        ..TcpFlags::default()
                    },
                );
            }
            b.poll();
            match round {
                3 => b.both(|i| i.edit_dest(&key(1), dest(20, 1))),
                5 => b.both(|i| i.edit_dest(&key(2), dest(21, 0))),
                7 => {
                    // service 1's cached server goes; service 3's goes and comes back at once
                    // (their open flows stay, dropped: the kernel's expire_nodest_conn 0)
                    removed = last[&1];
                    let again = last[&3];
                    b.both(|i| i.del_dest(&key(1), &ip(removed), 80, now()));
                    b.both(|i| i.del_dest(&key(3), &ip(again), 80, now()));
                    b.both(|i| i.add_dest(&key(3), dest(again, 2)).map(|_| ()));
                    open.retain(|f| (f.0, f.2) != (1, removed) && (f.0, f.2) != (3, again));
                }
                9 => b.both(|i| i.add_dest(&key(1), dest(removed, 2)).map(|_| ())),
                11 => {
                    b.both(|i| i.add_dest(&key(2), dest(30, 4)).map(|_| ()));
                    b.both(|i| i.edit_dest(&key(2), dest(21, 2)));
                }
                _ => continue,
            }
            b.sync();
        }
        assert_eq!(got, want, "{sched}");
        // every choice went somewhere, and not always to the same server
        let servers: std::collections::HashSet<u8> = got.iter().filter_map(|c| c.2).collect();
        assert!(servers.len() >= 3, "{sched}: {servers:?}");
        // one table entry per service
        let entries = match sched {
            "lblc" => b.plane.xdp().lblc_entries().unwrap().len(),
            _ => b.plane.xdp().lblcr_entries().unwrap().len(),
        };
        assert_eq!(entries, 3, "{sched}");
    }
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

/// lblc: the entry of an address goes after `lblc_expiration` unused, at the kernel's full
/// check (every 30th run of the 60-second timer); the next flow takes the wlc choice. The
/// same for lblcr's sets.
#[test]
fn locality_entries_expire_by_the_kernels_timer() {
    for sched in ["lblc", "lblcr"] {
        let mut b = Bench::new(sched, 1, &[(9, 4), (20, 4)]);
        b.ipvs.sysctls_mut().lblc_expiration = Span::secs(10 * 60);
        b.ipvs.sysctls_mut().lblcr_expiration = Span::secs(10 * 60);
        let start = now();
        let first = b.send(1, 100, SYN).expect("forwarded");
        // 1 and 2 active of weight 4: the cached server is not overloaded, and stays
        assert_eq!(b.send(1, 101, SYN), Some(first), "{sched}");
        assert_eq!(b.send(1, 102, SYN), Some(first), "{sched}");
        let entries = |b: &mut Bench| match sched {
            "lblc" => b.plane.xdp().lblc_entries().unwrap().len(),
            _ => b.plane.xdp().lblcr_entries().unwrap().len(),
        };
        assert_eq!(entries(&mut b), 1);
        // 29 runs of the timer: no full check yet
        let at = |min: u64| Tick(start.0 + min * 60_000 + 500);
        b.plane.poll(&mut b.ipvs, at(29)).unwrap();
        assert_eq!(entries(&mut b), 1, "{sched}");
        assert_eq!(b.send(1, 103, SYN), Some(first), "{sched}");
        // the 30th: the entry, unused for 30 minutes (the program's clock did not move,
        // the control plane's did), goes
        b.plane.poll(&mut b.ipvs, at(31)).unwrap();
        assert_eq!(entries(&mut b), 0, "{sched}");
        let next = b.send(1, 104, SYN).expect("forwarded");
        assert_ne!(next, first, "{sched}: the wlc choice (4 active against 0)");
    }
}

/// lblcr: a set of more than one member that did not change for `lblcr_expiration` loses its
/// most loaded member (the least loaded was chosen before that, as in the kernel).
#[test]
fn lblcr_prunes_a_set_unchanged_for_the_expiration() {
    let mut b = Bench::new("lblcr", 1, &[(9, 1), (20, 1)]);
    b.ipvs.sysctls_mut().lblcr_expiration = Span(300);
    b.sync();
    let a = b.send(1, 200, SYN).expect("forwarded");
    assert_eq!(
        b.send(1, 201, SYN),
        Some(a),
        "1 active of weight 1: not overloaded"
    );
    // 2 active > 1 while the other has 0 * 2 < 1: overloaded, the wlc choice joins the set
    let other = b.send(1, 202, SYN).expect("forwarded");
    assert_ne!(other, a);
    let set = |b: &mut Bench| -> Vec<u32> {
        let e = b.plane.xdp().lblcr_entries().unwrap();
        assert_eq!(e.len(), 1);
        e[0].1.members().to_vec()
    };
    assert_eq!(set(&mut b).len(), 2);
    std::thread::sleep(std::time::Duration::from_millis(400));
    // the least loaded (the newer member, 1 active) is chosen; the most loaded leaves the set
    assert_eq!(b.send(1, 203, SYN), Some(other));
    let members = set(&mut b);
    assert_eq!(members.len(), 1);
    // and right away nothing more goes: a set of one is never pruned
    assert_eq!(
        b.send(1, 204, SYN),
        Some(other),
        "2 active > 1, but nobody is half loaded"
    );
    assert_eq!(set(&mut b), members);
}

/// A removed service's entries go with it (its id may serve another service next), and so do
/// a scheduler's when the service changes to another one.
#[test]
fn locality_entries_go_with_their_service_or_scheduler() {
    let mut b = Bench::new("lblc", 2, &[(9, 1), (20, 1)]);
    b.send(1, 300, SYN).expect("forwarded");
    b.send(2, 301, SYN).expect("forwarded");
    assert_eq!(b.plane.xdp().lblc_entries().unwrap().len(), 2);
    b.poll();
    b.ipvs.del_service(&key(1), now()).unwrap();
    b.sync();
    assert_eq!(b.plane.xdp().lblc_entries().unwrap().len(), 1);
    b.ipvs
        .edit_service(&key(2), ServiceConf::new(Family::V4, "wlc"))
        .unwrap();
    b.sync();
    assert!(b.plane.xdp().lblc_entries().unwrap().is_empty());
}

/// twos (random in the kernel too): only servers in the service, not overloaded, with a
/// weight; shares that follow the weights; and of the two picks the less loaded one.
#[test]
fn twos_picks_the_less_loaded_of_two_weighted_random_choices() {
    // .30 is overloaded (upper threshold 1, reached by the one flow it had alone)
    let mut b = Bench::new("twos", 1, &[]);
    b.both(|i| {
        i.add_dest(&key(1), dest(30, 5).thresholds(1, 0))
            .map(|_| ())
    });
    b.sync();
    assert_eq!(b.send(1, 1, SYN), Some(30));
    b.poll();
    for (last, w) in [(9, 1), (20, 2), (21, 3), (22, 0), (23, 4)] {
        b.both(|i| i.add_dest(&key(1), dest(last, w)).map(|_| ()));
    }
    b.poll();
    b.both(|i| i.del_dest(&key(1), &ip(23), 80, now()));
    b.sync();
    let mut shares: HashMap<u8, u32> = HashMap::new();
    const N: u32 = 3000;
    for sport in 0..N as u16 {
        let to = b.send(1, 1000 + sport, SYN).expect("forwarded");
        *shares.entry(to).or_default() += 1;
        if sport % 500 == 499 {
            b.poll();
        }
    }
    let mut seen: Vec<u8> = shares.keys().copied().collect();
    seen.sort_unstable();
    assert_eq!(seen, [9, 20, 21], "{shares:?}");
    for (last, w) in [(9, 1.0), (20, 2.0), (21, 3.0)] {
        let share = f64::from(shares[&last]) / f64::from(N);
        assert!((share - w / 6.0).abs() < 0.03, "{last}: {share} {shares:?}");
    }

    // with every count at 0 (written back before each flow) the comparison never lets the
    // second draw win: the choice is the first draw, which lands by weight over 0..=6, the
    // first server of the list owning one value more (.21: 0..=3, .20: 4..=5, .9: 6)
    let mut draws: HashMap<u8, u32> = HashMap::new();
    const M: u32 = 3500;
    for sport in 0..M as u16 {
        for idx in 0..16 {
            // no connection in the core, and every one the program made counted there
            let made = b.plane.xdp().sched(idx).unwrap();
            let zero = rvs_bpf::abi::DestConns {
                seen_active: made.active,
                seen_inactive: made.inactive,
                ..Default::default()
            };
            b.plane.xdp().set_conns(idx, &zero).unwrap();
        }
        let to = b.send(1, 20_000 + sport, SYN).expect("forwarded");
        *draws.entry(to).or_default() += 1;
    }
    for (last, want) in [(21, 4.0 / 7.0), (20, 2.0 / 7.0), (9, 1.0 / 7.0)] {
        let share = f64::from(draws.get(&last).copied().unwrap_or(0)) / f64::from(M);
        // σ < 0.009
        assert!((share - want).abs() < 0.045, "{last}: {share} {draws:?}");
    }

    // .9 (weight 2) with 1000 connections, .20 and .21 (weight 1, newer: first in the list)
    // with none: .9 is chosen only when both draws land on it, (2/5)² of the time (of
    // 0..=4, .21 owns 0 and 1, .20 owns 2, .9 owns 3 and 4)
    let mut b = Bench::new("twos", 1, &[(9, 2)]);
    for sport in 0..1000 {
        assert_eq!(b.send(1, 5000 + sport, SYN), Some(9));
    }
    b.poll();
    b.both(|i| i.add_dest(&key(1), dest(20, 1)).map(|_| ()));
    b.both(|i| i.add_dest(&key(1), dest(21, 1)).map(|_| ()));
    b.sync();
    let mut shares: HashMap<u8, u32> = HashMap::new();
    for sport in 0..600 {
        let to = b.send(1, 7000 + sport, SYN).expect("forwarded");
        *shares.entry(to).or_default() += 1;
    }
    let heavy = shares.get(&9).copied().unwrap_or(0);
    // 96 expected (σ ≈ 9); one draw alone would give 240, the more loaded of two 384
    assert!((55..=140).contains(&heavy), "{shares:?}");
}

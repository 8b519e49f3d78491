//! The control side against the loaded program where events, expiry and the flow map can
//! disagree: a flow taken up again keeps its own last packet's time, a template made again
//! by a connection before the poll stays, FTP templates expire, and a reused tuple whose
//! report was lost is taken up on the real server the program chose. Needs root.
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use rvs_bpf::plane::{flow_key, Plane};
use rvs_bpf::{verdict, Xdp};
use rvs_core::datapath::ConnKey;
use rvs_core::ipvs::{Config, Ipvs};
use rvs_core::model::{DestConf, Family, Forward, Protocol, ServiceConf, ServiceKey};
use rvs_core::time::Tick;

mod common;
use common::*;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 88);

fn key() -> ServiceKey {
    ServiceKey::Addr {
        proto: Protocol::Tcp,
        addr: IpAddr::V4(VIP),
        port: 80,
    }
}

fn add(ipvs: &mut Ipvs, last: u8, weight: i32) {
    ipvs.add_dest(&key(), dest(last, weight)).unwrap();
}

fn segment(sport: u16, flags: u8) -> Vec<u8> {
    common::segment(VIP, sport, flags)
}

fn setup(conf: ServiceConf) -> (Ipvs, Plane) {
    let _ = now();
    let mut ipvs = Ipvs::new(Config::default());
    ipvs.set_expiry_log(true);
    ipvs.add_service(key(), conf).unwrap();
    add(&mut ipvs, 9, 1);
    add(&mut ipvs, 20, 1);
    let mut xdp = Xdp::load().unwrap();
    xdp.set_iface(LO, DIRECTOR_MAC).unwrap();
    let mut plane = Plane::new(xdp, now()).unwrap();
    plane.sync(&mut ipvs, now(), &mut lan).unwrap();
    (ipvs, plane)
}

fn send(p: &mut Plane, sport: u16, flags: u8) -> Option<u8> {
    let run = p
        .xdp()
        .test_run(&segment(sport, flags), Some(LO), 1)
        .unwrap();
    (run.verdict == verdict::TX).then(|| run.packet[5])
}

fn ck(sport: u16) -> ConnKey {
    ConnKey {
        proto: Protocol::Tcp,
        client: (IpAddr::V4(CLIENT), sport),
        vip: (IpAddr::V4(VIP), 80),
    }
}

/// A closed connection whose last ACK was not reported is taken up again at the time of that
/// ACK, not at the time of the newest event of another flow: it expires one FIN_WAIT timeout
/// after its last packet.
#[test]
fn an_entry_taken_up_again_runs_from_its_flows_last_packet() {
    let (mut ipvs, mut plane) = setup(ServiceConf::new(Family::V4, "rr"));
    ipvs.set_timeouts(0, 2, 0).unwrap(); // FIN_WAIT: 2 s
    send(&mut plane, 3000, SYN).unwrap();
    send(&mut plane, 3000, ACK).unwrap();
    send(&mut plane, 3000, FIN_ACK).unwrap(); // STATE FIN_WAIT
    send(&mut plane, 3000, ACK).unwrap(); // no state change: unreported
    plane.poll(&mut ipvs, now()).unwrap();
    let t_last = now();
    std::thread::sleep(Duration::from_millis(2500));
    // another client's new flow: an event at ~2.5 s
    send(&mut plane, 3001, SYN).unwrap();
    let t = now();
    ipvs.advance(t);
    plane.poll(&mut ipvs, t).unwrap();
    let l = ipvs.conn_listing(t);
    let e = l.iter().find(|c| c.client.1 == 3000);
    eprintln!(
        "last packet of 3000 at {t_last:?}, poll at {t:?}: entry {:?}",
        e.map(|c| (c.state, c.expire_secs))
    );
    // correct: taken up from its last packet (t_last), it would be due at t_last + 2 s < t
    let t2 = Tick(t.0 + 300);
    ipvs.advance(t2);
    plane.poll(&mut ipvs, t2).unwrap();
    let still = ipvs.conn_listing(t2).iter().any(|c| c.client.1 == 3000);
    let flow = plane.xdp().flow(&flow_key(&ck(3000))).unwrap().is_some();
    eprintln!("300 ms later: entry still there: {still}, flow still there: {flow}");
    assert!(
        !still,
        "resumed entry outlived its last packet + FIN_WAIT timeout by a whole timeout"
    );
}

/// The core's template expires and a new connection of the same client uses the program's
/// template before the poll; the poll makes the core's template again, and the program's
/// stays: the client's next connection goes to the same real server.
#[test]
fn a_template_made_again_before_the_poll_stays_in_the_program() {
    let (mut ipvs, mut plane) = setup(ServiceConf::new(Family::V4, "rr").persistent(300));
    let first = send(&mut plane, 4000, SYN).unwrap();
    send(&mut plane, 4000, ACK).unwrap();
    send(&mut plane, 4000, 0x04).unwrap(); // RST: CLOSE
    plane.poll(&mut ipvs, now()).unwrap();
    // everything expires (connection, then its template)
    let late = Tick(now().0 + 1_000_000);
    ipvs.advance(late);
    // the same client comes back before the poll: the program still has its template
    let second = send(&mut plane, 4001, SYN).unwrap();
    plane.poll(&mut ipvs, late).unwrap();
    let tmpls_core: Vec<_> = ipvs
        .conn_listing(late)
        .iter()
        .filter(|c| c.client.1 == 0)
        .map(|c| c.dest)
        .collect();
    let tmpls_prog = plane.xdp().templates().unwrap().len();
    eprintln!("first {first} second {second}; core templates {tmpls_core:?}; program templates {tmpls_prog}");
    let third = send(&mut plane, 4002, SYN).unwrap();
    eprintln!("third {third}");
    assert_eq!(
        tmpls_prog,
        tmpls_core.len(),
        "core holds a template the program deleted"
    );
    assert_eq!(
        third, second,
        "client moved to another real server while its template lives"
    );
}

fn segment_from(client: Ipv4Addr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut f = segment(sport, flags);
    f[26..30].copy_from_slice(&client.octets());
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    f
}

/// A second service (port 81, one DR real server .30) whose new connections fill the ring.
fn add_filler(ipvs: &mut Ipvs, plane: &mut Plane) {
    let k81 = ServiceKey::Addr {
        proto: Protocol::Tcp,
        addr: IpAddr::V4(VIP),
        port: 81,
    };
    ipvs.add_service(k81, ServiceConf::new(Family::V4, "rr"))
        .unwrap();
    ipvs.add_dest(
        &k81,
        DestConf::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 30)), 81)
            .fwd(Forward::Route)
            .weight(1),
    )
    .unwrap();
    plane.sync(ipvs, now(), &mut lan).unwrap();
}

/// Events the program could not put in its ring so far.
fn lost(p: &mut Plane) -> u64 {
    p.xdp().counters().unwrap()[rvs_bpf::abi::Counter::EventLost as usize]
}

/// New connections to port 81 until the ring is full (an event was lost); how many.
fn fill_ring(plane: &mut Plane) -> u32 {
    let mut n = 0u32;
    for a in 1..=255u8 {
        for sport in 1024..=65535u16 {
            let c = Ipv4Addr::new(10, 1, 0, a);
            plane
                .xdp()
                .test_run(&segment_from(c, sport, 81, SYN), Some(LO), 1)
                .unwrap();
            n += 1;
            if n.is_multiple_of(1024) && lost(plane) > 0 {
                return n;
            }
        }
    }
    panic!("the ring took {n} events without losing one");
}

/// A reuse SYN's NEW event is lost (full ring) while the core still has the old entry (CLOSE,
/// bound to the old real server): the next event of the new connection takes it up on the
/// real server the program chose, the flow outlives the old entry's timeout, and once that
/// server is removed a newcomer in its slot never gets the old flow's packets.
#[test]
fn a_reused_tuple_whose_report_was_lost_is_taken_up_on_the_programs_choice() {
    let (mut ipvs, mut plane) = setup(ServiceConf::new(Family::V4, "rr"));
    add_filler(&mut ipvs, &mut plane);
    let x = send(&mut plane, 6000, SYN).unwrap();
    send(&mut plane, 6000, ACK).unwrap(); // ESTABLISHED
    send(&mut plane, 6000, 0x04).unwrap(); // RST: CLOSE
    plane.poll(&mut ipvs, now()).unwrap();
    let n = fill_ring(&mut plane);
    // the client reuses its port: a new connection, rr's next server, NEW lost
    let y = send(&mut plane, 6000, SYN).unwrap();
    eprintln!(
        "old connection went to .{x}, the reused tuple's to .{y}; filler {n}, lost {}",
        lost(&mut plane)
    );
    while plane.poll(&mut ipvs, now()).unwrap() > 0 {}
    send(&mut plane, 6000, ACK).unwrap(); // STATE ESTABLISHED
    plane.poll(&mut ipvs, now()).unwrap();
    let taken = plane.reconcile(&mut ipvs, now()).unwrap();
    let e: Vec<_> = ipvs
        .conn_listing(now())
        .into_iter()
        .filter(|c| c.client.1 == 6000 && c.virt.1 == 80)
        .map(|c| (c.state, c.dest, c.expire_secs))
        .collect();
    eprintln!("walk took up {taken}; core entries of 6000: {e:?}; program forwards to .{y}");
    // 11 s later (CLOSE's 10 s timeout) the old entry expires and the live flow goes with it
    let t = Tick(now().0 + 11_000);
    ipvs.advance(t);
    plane.poll(&mut ipvs, t).unwrap();
    let flow = plane.xdp().flow(&flow_key(&ck(6000))).unwrap();
    eprintln!(
        "after 11 s: flow {}",
        if flow.is_some() { "kept" } else { "deleted" }
    );
    // the flow's real server is deleted; nothing in the core holds it, so it leaves the trash
    ipvs.del_dest(&key(), &IpAddr::V4(Ipv4Addr::new(10, 0, 0, y)), 80, t)
        .unwrap();
    plane.sync(&mut ipvs, t, &mut lan).unwrap();
    let t2 = Tick(t.0 + 200_000);
    ipvs.advance(t2);
    plane.poll(&mut ipvs, t2).unwrap();
    plane.sync(&mut ipvs, t2, &mut lan).unwrap(); // gone: quarantined
    plane.reconcile(&mut ipvs, t2).unwrap(); // freed (the flow is skipped: an entry exists)
    add(&mut ipvs, 40, 1);
    plane.sync(&mut ipvs, t2, &mut lan).unwrap(); // the newcomer takes the slot
    let to = send(&mut plane, 6000, ACK);
    eprintln!("an ACK of the old connection now goes to {to:?}");
    assert_ne!(x, y, "rr sent the reused tuple elsewhere");
    assert!(
        !e.is_empty()
            && e.iter()
                .all(|c| c.1 .0 == IpAddr::V4(Ipv4Addr::new(10, 0, 0, y))),
        "the core's entry follows the program's choice: {e:?}"
    );
    assert!(
        flow.is_some(),
        "the live flow outlives the old entry's CLOSE timeout"
    );
    assert_ne!(
        to,
        Some(40),
        "a newcomer in the freed slot never gets the old flow's packets"
    );
}

/// A persistent service on port 21: the core keys its templates with virtual port 0 (FTP), and
/// so does the program, so the core's expiry deletes the program's template.
#[test]
fn ftp_templates_expire_with_the_cores() {
    let _ = now();
    let k21 = ServiceKey::Addr {
        proto: Protocol::Tcp,
        addr: IpAddr::V4(VIP),
        port: 21,
    };
    let mut ipvs = Ipvs::new(Config::default());
    ipvs.set_expiry_log(true);
    ipvs.add_service(k21, ServiceConf::new(Family::V4, "rr").persistent(60))
        .unwrap();
    for last in [9u8, 20] {
        ipvs.add_dest(
            &k21,
            DestConf::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)), 21)
                .fwd(Forward::Route)
                .weight(1),
        )
        .unwrap();
    }
    let mut xdp = Xdp::load().unwrap();
    xdp.set_iface(LO, DIRECTOR_MAC).unwrap();
    let mut plane = Plane::new(xdp, now()).unwrap();
    plane.sync(&mut ipvs, now(), &mut lan).unwrap();
    let r = plane
        .xdp()
        .test_run(&segment_from(CLIENT, 5000, 21, SYN), Some(LO), 1)
        .unwrap();
    assert_eq!(r.verdict, verdict::TX);
    plane
        .xdp()
        .test_run(&segment_from(CLIENT, 5000, 21, ACK), Some(LO), 1)
        .unwrap();
    plane
        .xdp()
        .test_run(&segment_from(CLIENT, 5000, 21, 0x04), Some(LO), 1)
        .unwrap();
    plane.poll(&mut ipvs, now()).unwrap();
    let late = Tick(now().0 + 1_000_000);
    ipvs.advance(late);
    plane.poll(&mut ipvs, late).unwrap();
    let core = ipvs.conn_count();
    let prog = plane.xdp().templates().unwrap();
    eprintln!(
        "core entries {core}; program templates {:?}",
        prog.iter()
            .map(|(k, _)| u16::from_be(k.vport))
            .collect::<Vec<_>>()
    );
    assert!(prog.is_empty(), "program template outlives the core's");
}

/// A walk reads the flows with no lock held, so the program and the core move on between
/// its start and its end. A real server's slot freed meanwhile must wait for the next walk:
/// a flow made while the dump ran may be missing from it, and if its NEW event was lost,
/// only a walk finds it; a newcomer given the slot at once would get its packets.
#[test]
fn a_slot_freed_during_a_walk_waits_for_the_next_walk() {
    let (mut ipvs, mut plane) = setup(ServiceConf::new(Family::V4, "rr"));
    add_filler(&mut ipvs, &mut plane);
    let walk = plane.begin_walk().unwrap();
    let mut dump = walk.dump().unwrap();
    // after the dump: a connection whose NEW event is lost (full ring)
    fill_ring(&mut plane);
    let to = send(&mut plane, 7000, SYN).unwrap();
    while plane.poll(&mut ipvs, now()).unwrap() > 0 {}
    // its real server leaves; no entry holds it, so once out of the trash its slot is free
    ipvs.del_dest(&key(), &IpAddr::V4(Ipv4Addr::new(10, 0, 0, to)), 80, now())
        .unwrap();
    let t = Tick(now().0 + 200_000);
    ipvs.advance(t);
    plane.sync(&mut ipvs, t, &mut lan).unwrap();
    plane
        .walk_some(&mut ipvs, t, &mut dump, usize::MAX)
        .unwrap();
    plane.finish_walk(walk, &dump).unwrap();
    add(&mut ipvs, 40, 1);
    plane.sync(&mut ipvs, t, &mut lan).unwrap();
    let after_walk = send(&mut plane, 7000, ACK);
    eprintln!("connection 7000 went to .{to}; after the walk its ACK goes to {after_walk:?}");
    assert_ne!(
        after_walk,
        Some(40),
        "the newcomer got the packets of a connection to .{to}"
    );
    // the next walk finds the flow, deletes it and releases the slot
    plane.reconcile(&mut ipvs, t).unwrap();
    assert!(plane.xdp().flow(&flow_key(&ck(7000))).unwrap().is_none());
    add(&mut ipvs, 41, 1);
    plane.sync(&mut ipvs, t, &mut lan).unwrap();
    assert_eq!(send(&mut plane, 7000, ACK), None, "no flow: the kernel's");
    let mut seen = std::collections::BTreeSet::new();
    for sport in 7100..7106 {
        seen.extend(send(&mut plane, sport, SYN));
    }
    assert!(
        seen.contains(&41),
        "the last newcomer gets connections: {seen:?}"
    );
}

/// The walk reads the flow map in batches of a few thousand: every flow comes out once, as
/// reading it key by key gives it, across batch boundaries and with the program's own flows.
#[test]
fn flows_read_in_batches_are_the_flows_read_key_by_key() {
    let (_ipvs, mut plane) = setup(ServiceConf::new(Family::V4, "rr"));
    for sport in 8000..8003 {
        send(&mut plane, sport, SYN).unwrap();
    }
    let table = plane.xdp().flow_table().unwrap();
    let n = 10_000u32; // more than two batches
    for i in 0..n {
        let key = rvs_bpf::abi::FlowKey {
            caddr: [
                u32::from_ne_bytes([10, 2, (i >> 8) as u8, i as u8]),
                0,
                0,
                0,
            ],
            vaddr: [u32::from_ne_bytes(VIP.octets()), 0, 0, 0],
            cport: (20_000 + i as u16).to_be(),
            vport: 80u16.to_be(),
            proto: 6,
            family: rvs_bpf::abi::AF_INET,
            pad: 0,
        };
        let flow = rvs_bpf::abi::Flow {
            dest: i % 2,
            packets: u64::from(i),
            ..Default::default()
        };
        table.insert(&key, &flow).unwrap();
    }
    let batched = table.dump().unwrap();
    let by_key = table.dump_by_key().unwrap();
    let as_map = |v: &[(rvs_bpf::abi::FlowKey, rvs_bpf::abi::Flow)]| {
        v.iter()
            .copied()
            .collect::<std::collections::HashMap<_, _>>()
    };
    assert_eq!(batched.len(), n as usize + 3, "every flow once");
    assert_eq!(as_map(&batched).len(), batched.len(), "no flow twice");
    assert_eq!(as_map(&batched), as_map(&by_key));
    let mine = batched
        .iter()
        .filter(|(k, _)| (8000..8003).contains(&u16::from_be(k.cport)))
        .count();
    assert_eq!(mine, 3, "the program's own flows are in the batches");
}

/// The connection-count schedulers add the connections the program made that the core has
/// not heard of. A SYN the program schedules but then hands to the kernel (it came in on an
/// interface the control plane did not set up) makes no connection and no event: it must
/// not count, or the real server it was scheduled to would look busier for good (no event
/// will ever bring it into the core).
#[test]
fn a_packet_handed_to_the_kernel_leaves_no_pending_connection() {
    let (_ipvs, mut plane) = setup(ServiceConf::new(Family::V4, "wlc"));
    let pending = |p: &mut Plane| -> u64 {
        (0..4)
            .map(|i| {
                let (a, i) = p.xdp().scheduled_counts(i).unwrap();
                a + i
            })
            .sum()
    };
    plane.xdp().remove_iface(LO).unwrap();
    for sport in 9000..9010 {
        let run = plane
            .xdp()
            .test_run(&segment(sport, SYN), Some(LO), 1)
            .unwrap();
        assert_eq!(
            run.verdict,
            verdict::PASS,
            "no interface set up: the kernel's"
        );
    }
    let counters = plane.xdp().counters().unwrap();
    eprintln!(
        "NoIface {}, pending after 10 such SYNs: {}",
        counters[rvs_bpf::abi::Counter::NoIface as usize],
        pending(&mut plane)
    );
    assert_eq!(pending(&mut plane), 0);
    plane.xdp().set_iface(LO, DIRECTOR_MAC).unwrap();
    send(&mut plane, 9100, SYN).unwrap();
    assert_eq!(pending(&mut plane), 1, "a forwarded new connection counts");
}

/// What the connection-count schedulers count for a real server is the core's counts plus
/// the connections the program scheduled that the core has not heard of yet. A poll brings
/// in at most 65,536 events; after one that left events in the ring (a burst of new
/// connections), the program must still count the ones it left there.
#[test]
fn connections_a_poll_has_not_brought_in_yet_still_count() {
    let (mut ipvs, mut plane) = setup(ServiceConf::new(Family::V4, "wlc"));
    let count =
        |p: &mut Plane| -> u64 { (0..4).map(|i| p.xdp().scheduled_counts(i).unwrap().0).sum() };
    let n = 70_000u32;
    for i in 0..n {
        let [_, a, b, c] = i.to_be_bytes();
        let client = Ipv4Addr::new(10, a, b, c);
        let run = plane
            .xdp()
            .test_run(&segment_from(client, 5000, 80, SYN), Some(LO), 1)
            .unwrap();
        assert_eq!(run.verdict, verdict::TX);
    }
    assert_eq!(lost(&mut plane), 0, "the ring holds the burst");
    let brought = plane.poll(&mut ipvs, now()).unwrap();
    let core: u64 = ipvs
        .service_dests(ipvs.service(&key()).unwrap())
        .map(|d| u64::from(d.activeconns))
        .sum();
    let program = count(&mut plane);

    eprintln!("first poll brought {brought} of {n}; core counts {core}, the program {program}");
    assert!(brought < n as usize, "the burst needs more than one poll");
    assert_eq!(
        program,
        u64::from(n),
        "the program counts every connection it made"
    );
    while plane.poll(&mut ipvs, now()).unwrap() > 0 {}
    assert_eq!(
        count(&mut plane),
        u64::from(n),
        "and still does once the core has them"
    );
}

/// Connections whose NEW events were lost are in the program's count and in no event: the
/// walk that lost events cause takes them up in the core, and from then on the program and
/// the core count the same connections again.
#[test]
fn after_lost_events_the_walk_brings_the_counts_back_in_step() {
    let (mut ipvs, mut plane) = setup(ServiceConf::new(Family::V4, "wlc"));
    add_filler(&mut ipvs, &mut plane);
    fill_ring(&mut plane);
    for sport in 9500..9510 {
        send(&mut plane, sport, SYN).unwrap(); // NEW lost
    }
    while plane.poll(&mut ipvs, now()).unwrap() > 0 {}
    let program =
        |p: &mut Plane| -> u64 { (0..8).map(|i| p.xdp().scheduled_counts(i).unwrap().0).sum() };
    let core = |ipvs: &Ipvs| -> u64 {
        ipvs.services()
            .flat_map(|s| ipvs.service_dests(s))
            .map(|d| u64::from(d.activeconns))
            .sum()
    };
    let before = (program(&mut plane), core(&ipvs));
    let taken = plane.reconcile(&mut ipvs, now()).unwrap();
    let after = (program(&mut plane), core(&ipvs));
    eprintln!("program, core: {before:?} before the walk, {after:?} after ({taken} taken up)");
    assert!(taken >= 10, "the walk takes the lost connections up");
    assert_eq!(after.0, after.1, "the program counts what the core counts");
    send(&mut plane, 9600, SYN).unwrap();
    plane.poll(&mut ipvs, now()).unwrap();
    assert_eq!(
        (program(&mut plane), core(&ipvs)),
        (after.0 + 1, after.1 + 1),
        "and goes on counting in step"
    );
}

/// The walk reads the flows with no lock held, and the core moves on meanwhile: an entry that
/// expires between the read and the judging takes its flow with it, and the walk must not
/// bring the entry back from what it read.
#[test]
fn a_flow_deleted_after_the_read_is_not_taken_up_again() {
    let (mut ipvs, mut plane) = setup(ServiceConf::new(Family::V4, "rr"));
    send(&mut plane, 9700, SYN).unwrap();
    plane.poll(&mut ipvs, now()).unwrap();
    let walk = plane.begin_walk().unwrap();
    let mut dump = walk.dump().unwrap();
    // SYN_RECV's 60 s pass: the entry expires, and the plane deletes the flow
    let t = Tick(now().0 + 61_000);
    ipvs.advance(t);
    plane.poll(&mut ipvs, t).unwrap();
    assert!(plane.xdp().flow(&flow_key(&ck(9700))).unwrap().is_none());
    let taken = plane
        .walk_some(&mut ipvs, t, &mut dump, usize::MAX)
        .unwrap();
    plane.finish_walk(walk, &dump).unwrap();
    let entries = ipvs
        .conn_listing(t)
        .into_iter()
        .filter(|c| c.client.1 == 9700)
        .count();
    assert_eq!(
        (taken, entries),
        (0, 0),
        "no entry comes back for a flow that is gone"
    );
}

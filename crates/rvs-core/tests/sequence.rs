//! `Ipvs::sched_sequence`: the cycle of choices rr and wrr will make from their current state
//! is what they then make, again and again, until the list changes; reading it moves nothing.

use std::net::{IpAddr, Ipv4Addr};

use rvs_core::datapath::{Packet, TcpFlags, Verdict};
use rvs_core::dest::DestId;
use rvs_core::ipvs::{Config, Ipvs};
use rvs_core::model::{DestConf, Family, Protocol, ServiceConf, ServiceKey};
use rvs_core::rng::Rng;
use rvs_core::time::Tick;

const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100));

fn key() -> ServiceKey {
    ServiceKey::Addr {
        proto: Protocol::Tcp,
        addr: VIP,
        port: 80,
    }
}

fn service(sched: &str, weights: &[i32]) -> Ipvs {
    let mut ipvs = Ipvs::new(Config::default());
    ipvs.add_service(key(), ServiceConf::new(Family::V4, sched))
        .unwrap();
    for (i, w) in weights.iter().enumerate() {
        let mut d = DestConf::new(IpAddr::V4(Ipv4Addr::new(10, 0, 1, i as u8 + 1)), 80);
        d.weight = *w;
        ipvs.add_dest(&key(), d).unwrap();
    }
    ipvs
}

/// The next `n` choices for new connections (distinct client ports from `port` on).
fn choose(ipvs: &mut Ipvs, n: usize, port: &mut u16) -> Vec<Option<DestId>> {
    (0..n)
        .map(|_| {
            *port += 1;
            let p = Packet::tcp(
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
                *port,
                VIP,
                80,
                TcpFlags::SYN,
            )
            .len(60);
            match ipvs.packet_in(&p, Tick::from_secs(1)) {
                Verdict::Forward(f) => Some(f.dest),
                _ => None,
            }
        })
        .collect()
}

/// The sequence, then three of its cycles of real choices equal to it.
fn holds(ipvs: &mut Ipvs, port: &mut u16) -> usize {
    let seq = ipvs
        .sched_sequence(&key())
        .expect("rr and wrr have a sequence");
    assert_eq!(
        ipvs.sched_sequence(&key()).unwrap(),
        seq,
        "reading moves nothing"
    );
    let want: Vec<Option<DestId>> = seq.iter().map(|d| Some(*d)).collect();
    if seq.is_empty() {
        assert_eq!(choose(ipvs, 3, port), vec![None; 3]);
    }
    for _ in 0..3 {
        assert_eq!(choose(ipvs, seq.len(), port), want);
    }
    seq.len()
}

#[test]
fn the_seed_s_wrr_2_5_5_cycle_is_twelve_long() {
    let mut ipvs = service("wrr", &[2, 5, 5]);
    assert_eq!(holds(&mut ipvs, &mut 1000), 12);
}

#[test]
fn rr_and_wrr_sequences_hold_from_any_state_and_after_changes() {
    let mut rng = Rng::seeded(7);
    let mut port = 1000;
    for round in 0..200 {
        let sched = if round % 2 == 0 { "wrr" } else { "rr" };
        let n = 1 + rng.below(6) as usize;
        let weights: Vec<i32> = (0..n)
            .map(|_| rng.below(7) as i32 * if rng.below(2) == 0 { 1 } else { 3 })
            .collect();
        let mut ipvs = service(sched, &weights);
        // start anywhere in the cycle
        choose(&mut ipvs, rng.below(9) as usize, &mut port);
        holds(&mut ipvs, &mut port);
        // an edit (weights, even unchanged) resets wrr's position: the new sequence holds
        let i = rng.below(n as u32) as usize;
        let mut d = DestConf::new(IpAddr::V4(Ipv4Addr::new(10, 0, 1, i as u8 + 1)), 80);
        d.weight = rng.below(5) as i32;
        ipvs.edit_dest(&key(), d).unwrap();
        holds(&mut ipvs, &mut port);
        if port > 60000 {
            port = 1000;
        }
    }
}

#[test]
fn other_schedulers_have_no_sequence() {
    for s in ["wlc", "lc", "sh", "dh", "mh", "lblc"] {
        assert_eq!(service(s, &[1, 2]).sched_sequence(&key()), None, "{s}");
    }
}

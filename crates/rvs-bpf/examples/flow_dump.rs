//! The minute walk of the XDP program's flows at scale: how long reading every flow takes,
//! in batches (`BPF_MAP_LOOKUP_BATCH`, what rvsd uses, with no lock held) and key by key
//! (aya's iterator: two system calls per flow), and how long judging them takes under the
//! core's lock (rvsd judges 16,384 at a time). Run as root: `cargo run --release -p rvs-bpf
//! --example flow_dump -- [FLOWS ...]` (default 10000 100000 1000000; the map holds at most
//! 1,048,576). Prints a markdown table.
//!
//! The flows are direct-routing TCP flows of one service with two real servers. "taken up"
//! is the walk after lost events (no flow is in the core: each gets its entry); "known" the
//! usual minute walk (every flow has its entry).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use rvs_bpf::plane::Plane;
use rvs_bpf::{abi, Xdp};
use rvs_core::ipvs::{Config, Ipvs};
use rvs_core::model::{DestConf, Family, Forward, Protocol, ServiceConf, ServiceKey};
use rvs_core::time::Tick;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 88);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One walk in steps: (taken up, time reading, longest step, all steps).
fn walk(plane: &mut Plane, ipvs: &mut Ipvs) -> (usize, Duration, Duration, Duration) {
    let w = plane.begin_walk().expect("walk");
    let t = Instant::now();
    let mut dump = w.dump().expect("dump");
    let read = t.elapsed();
    let (mut taken, mut longest, mut all) = (0, Duration::ZERO, Duration::ZERO);
    while !dump.is_done() {
        // as rvsd does: room made before the core's lock would be taken
        plane.make_room(&dump, 16_384);
        let t = Instant::now();
        taken += plane
            .walk_some(ipvs, Tick(10), &mut dump, 16_384)
            .expect("judge");
        let d = t.elapsed();
        longest = longest.max(d);
        all += d;
    }
    plane.finish_walk(w, &dump).expect("finish");
    (taken, read, longest, all)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sizes: Vec<u32> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000, 1_000_000]
    } else {
        sizes
    };
    println!("| flows | read in batches ms | read key by key ms | judged, taken up: ms (longest step) | judged, known: ms (longest step) |");
    println!("|---:|---:|---:|---:|---:|");
    for n in sizes {
        let key = ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr: IpAddr::V4(VIP),
            port: 80,
        };
        let mut ipvs = Ipvs::new(Config::default());
        ipvs.add_service(key, ServiceConf::new(Family::V4, "rr"))?;
        for last in [9u8, 20] {
            let rs = IpAddr::V4(Ipv4Addr::new(10, 0, 0, last));
            ipvs.add_dest(&key, DestConf::new(rs, 80).fwd(Forward::Route).weight(1))?;
        }
        // a fresh program per size: its map starts empty
        let mut plane = Plane::new(Xdp::load()?, Tick(0))?;
        // a made-up Ethernet address for each real server
        let mut lan = |_: IpAddr, _: bool| Some([2, 1, 0, 0, 0, 1]);
        plane.sync(&mut ipvs, Tick(0), &mut lan)?;
        let table = plane.xdp().flow_table()?;
        for i in 0..n {
            let [_, b, c, d] = i.to_be_bytes();
            let key = abi::FlowKey {
                caddr: [u32::from_ne_bytes([10, b, c, d]), 0, 0, 0],
                vaddr: [u32::from_ne_bytes(VIP.octets()), 0, 0, 0],
                cport: 40_000u16.to_be(),
                vport: 80u16.to_be(),
                proto: 6,
                family: abi::AF_INET,
                pad: 0,
            };
            let flow = abi::Flow {
                dest: i % 2,
                state: 1, // ESTABLISHED
                packets: 1,
                ..Default::default()
            };
            table.insert(&key, &flow)?;
        }
        let t = Instant::now();
        let by_key = table.dump_by_key()?;
        let key_ms = ms(t.elapsed());
        assert_eq!(by_key.len(), n as usize, "the walk read every flow");
        let (taken, read, long1, all1) = walk(&mut plane, &mut ipvs);
        assert_eq!(taken, n as usize, "every flow taken up");
        let (again, _, long2, all2) = walk(&mut plane, &mut ipvs);
        assert_eq!(again, 0, "the second walk finds every flow known");
        println!(
            "| {n} | {:.1} | {key_ms:.1} | {:.1} ({:.1}) | {:.1} ({:.1}) |",
            ms(read),
            ms(all1),
            ms(long1),
            ms(all2),
            ms(long2)
        );
    }
    Ok(())
}

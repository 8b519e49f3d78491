//! The XDP program's hashing schedulers choose what rvs-core chooses (and rvs-core's choices
//! are held to the kernel's by its golden tests): for thousands of new flows, the real server
//! the program sends a flow to is the one `Ipvs::packet_in` schedules for the same packet,
//! with the bucket table taken from the core (`Ipvs::sched_table`).
//!
//! Needs root (loading BPF programs).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rvs_bpf::plane::words;
use rvs_bpf::{abi, verdict, Xdp};
use rvs_core::datapath::{Packet, TcpFlags, Verdict};
use rvs_core::dest::DestId;
use rvs_core::ipvs::{Config, Ipvs};
use rvs_core::model::{svc_flags, DestConf, Family, Netmask, Protocol, ServiceConf, ServiceKey};
use rvs_core::rng::Rng;
use rvs_core::time::Tick;

const LO: u32 = 1;
const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

fn rs_mac(i: u32) -> [u8; 6] {
    let b = i.to_be_bytes();
    [0x02, 0x01, b[0], b[1], b[2], b[3]]
}

/// Ethernet + IP + a TCP SYN from `src:sport` to `dst:80`.
fn syn(src: IpAddr, sport: u16, dst: IpAddr) -> Vec<u8> {
    let mut tcp = Vec::new();
    tcp.extend_from_slice(&sport.to_be_bytes());
    tcp.extend_from_slice(&80u16.to_be_bytes());
    tcp.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    let mut f = Vec::new();
    f.extend_from_slice(&DIRECTOR_MAC);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0xfe]);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            f.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&0x86ddu16.to_be_bytes());
            f.extend_from_slice(&[0x60, 0, 0, 0, 0, 20, 6, 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        _ => unreachable!("one family per packet"),
    }
    f.extend_from_slice(&tcp);
    f
}

/// A random client address of the family asked for.
fn client(rng: &mut Rng, v6: bool) -> IpAddr {
    let r = rng.next_u64();
    if v6 {
        IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            (r >> 48) as u16,
            (r >> 32) as u16,
            0,
            0,
            (r >> 16) as u16,
            r as u16,
        ))
    } else {
        IpAddr::V4(Ipv4Addr::from((r >> 32) as u32))
    }
}

/// A director with one hashing service per VIP, and the XDP program loaded with the same
/// services, real servers and tables. Real server `k` of the whole setup is XDP dest `k`.
struct Setup {
    ipvs: Ipvs,
    xdp: Xdp,
    dests: Vec<DestId>,
}

fn setup(sched: &str, flags: u32, vips: &[IpAddr], weights: &[i32]) -> Setup {
    setup_with(sched, flags, vips, weights, None)
}

/// [`setup`], the services persistent (timeout in seconds, netmask) when asked.
fn setup_with(
    sched: &str,
    flags: u32,
    vips: &[IpAddr],
    weights: &[i32],
    persist: Option<(u32, Netmask)>,
) -> Setup {
    let mut ipvs = Ipvs::new(Config::default());
    let mut xdp = Xdp::load().expect("loading the XDP program (needs root)");
    xdp.set_iface(LO, DIRECTOR_MAC).unwrap();
    let mut dests = Vec::new();
    for (s, vip) in vips.iter().enumerate() {
        let af = if vip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        };
        let key = service_key(*vip);
        let mut conf = ServiceConf::new(af, sched);
        conf.flags |= flags;
        if let Some((timeout, mask)) = persist {
            conf = conf.persistent(timeout);
            conf.netmask = mask;
        }
        ipvs.add_service(key, conf).unwrap();
        for (i, w) in weights.iter().enumerate() {
            let addr = match vip {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(10, 1, s as u8, 10 + i as u8)),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    1,
                    s as u16,
                    0,
                    0,
                    0,
                    10 + i as u16,
                )),
            };
            let mut dc = DestConf::new(addr, 80);
            dc.weight = *w;
            let id = ipvs.add_dest(&key, dc).unwrap();
            let idx = dests.len() as u32;
            xdp.set_dest(idx, &dest_entry(idx, addr, s as u32, *w))
                .unwrap();
            dests.push(id);
        }
    }
    let mut setup = Setup { ipvs, xdp, dests };
    for (s, vip) in vips.iter().enumerate() {
        setup.load_schedule(s as u32, *vip);
    }
    setup
}

/// Real server number `idx` at `addr` (direct routing), of service `svc`.
fn dest_entry(idx: u32, addr: IpAddr, svc: u32, weight: i32) -> abi::Dest {
    let (addr, family) = words(addr);
    abi::Dest {
        addr,
        port: 80u16.to_be(),
        family,
        fwd: abi::FWD_DROUTE,
        mac: rs_mac(idx),
        flags: abi::DEST_AVAILABLE,
        svc,
        weight,
        ..Default::default()
    }
}

fn service_key(vip: IpAddr) -> ServiceKey {
    ServiceKey::Addr {
        proto: Protocol::Tcp,
        addr: vip,
        port: 80,
    }
}

impl Setup {
    /// Gives service `s` (at `vip`) the core's schedule: its bucket table (sh, dh, mh) or its
    /// next cycle of choices (rr, wrr) from the position 0, with the service's flags and
    /// persistence. Real servers are numbered by their place in `dests`.
    fn load_schedule(&mut self, s: u32, vip: IpAddr) {
        let key = service_key(vip);
        let index = |id: DestId| self.dests.iter().position(|x| *x == id).unwrap() as u32;
        let (sched, entries) = match self.ipvs.sched_table(&key) {
            Some(table) => {
                let (sched, size) = match self.ipvs.service(&key).unwrap().sched.name() {
                    "sh" => (abi::SCHED_SH, abi::HASH_TAB_SIZE),
                    "mh" => (abi::SCHED_MH, abi::MH_TAB_SIZE),
                    _ => (abi::SCHED_DH, abi::HASH_TAB_SIZE),
                };
                assert_eq!(table.len() as u32, size);
                let t = table
                    .into_iter()
                    .map(|d| d.map_or(abi::NO_DEST, index))
                    .collect();
                (sched, t)
            }
            None => {
                let seq = self.ipvs.sched_sequence(&key).expect("rr or wrr");
                (
                    abi::SCHED_SEQ,
                    seq.into_iter().map(index).collect::<Vec<u32>>(),
                )
            }
        };
        let off = s * 4096; // room for the largest table (mh's 4,093 slots)
        self.xdp.set_seq(off, &entries).unwrap();
        self.xdp.set_position(s, 0).unwrap();
        let (addr, family) = words(vip);
        let vip = abi::Vip {
            addr,
            port: 80u16.to_be(),
            proto: 6,
            family,
        };
        let conf = &self.ipvs.service(&key).unwrap().conf;
        let netmask = match conf.netmask {
            Netmask::V4(m) => u32::from_ne_bytes(m.to_be_bytes()),
            Netmask::V6(plen) => u32::from(plen),
        };
        let svc = abi::Service {
            id: s,
            flags: conf.flags,
            sched,
            seq_off: off,
            seq_len: entries.len() as u32,
            persist_timeout: conf.timeout,
            netmask,
            expire_ms: 0,
        };
        self.xdp.set_service(&vip, &svc).unwrap();
    }

    /// What the program and the core choose for a SYN: the real server's number, or None.
    fn choices(&mut self, src: IpAddr, sport: u16, vip: IpAddr) -> (Option<u32>, Option<u32>) {
        let run = self
            .xdp
            .test_run(&syn(src, sport, vip), Some(LO), 1)
            .unwrap();
        let xdp = match run.verdict {
            verdict::TX => {
                let mac = &run.packet[0..6];
                Some(u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]))
            }
            verdict::DROP => None,
            v => panic!("verdict {v} for a SYN to a service"),
        };
        let pkt = Packet::tcp(src, sport, vip, 80, TcpFlags::SYN).len(40);
        let core = match self.ipvs.packet_in(&pkt, Tick::from_secs(1)) {
            Verdict::Forward(f) => {
                Some(self.dests.iter().position(|d| *d == f.dest).unwrap() as u32)
            }
            _ => None,
        };
        (xdp, core)
    }
}

/// Runs `flows` SYNs from random clients through both and requires the same choice each time;
/// returns the choices made.
fn agree(
    sched: &str,
    flags: u32,
    vips: &[IpAddr],
    weights: &[i32],
    flows: usize,
    seed: u64,
) -> std::collections::BTreeSet<Option<u32>> {
    let mut s = setup(sched, flags, vips, weights);
    let mut rng = Rng::seeded(seed);
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..flows {
        let vip = vips[i % vips.len()];
        let src = client(&mut rng, vip.is_ipv6());
        let sport = 1024 + (i % 60000) as u16;
        let (xdp, core) = s.choices(src, sport, vip);
        assert_eq!(
            xdp, core,
            "{sched} flags {flags:#x}: client {src}:{sport} to {vip}"
        );
        seen.insert(core);
    }
    seen
}

/// Every server with a weight was chosen (the flows spread over the whole table).
fn all_chosen(seen: &std::collections::BTreeSet<Option<u32>>, weights: &[i32]) {
    let usable = weights.iter().filter(|w| **w > 0).count();
    assert_eq!(seen.iter().flatten().count(), usable, "{seen:?}");
}

fn v4(a: &str) -> IpAddr {
    a.parse().unwrap()
}

#[test]
fn sh_by_source_address_as_the_core() {
    let seen = agree("sh", 0, &[v4("10.0.0.100")], &[1, 2, 3, 4], 3000, 1);
    all_chosen(&seen, &[1, 2, 3, 4]);
}

#[test]
fn sh_over_ipv6_as_the_core() {
    let seen = agree("sh", 0, &[v4("2001:db8::100")], &[3, 1, 5], 2000, 2);
    all_chosen(&seen, &[3, 1, 5]);
}

#[test]
fn sh_port_adds_the_source_port_as_the_core() {
    let seen = agree(
        "sh",
        svc_flags::SCHED_SH_PORT,
        &[v4("10.0.0.100")],
        &[1, 1, 2],
        2000,
        3,
    );
    all_chosen(&seen, &[1, 1, 2]);
}

#[test]
fn sh_with_weight_zero_servers_refuses_or_falls_back_as_the_core() {
    // weight 0 servers still own buckets: without fallback their clients get no server
    let seen = agree("sh", 0, &[v4("10.0.0.100")], &[2, 0, 3, 0], 2000, 4);
    assert!(seen.contains(&None), "{seen:?}");
    all_chosen(&seen, &[2, 0, 3, 0]);
    let seen = agree(
        "sh",
        svc_flags::SCHED_SH_FALLBACK,
        &[v4("10.0.0.100")],
        &[2, 0, 3, 0],
        2000,
        5,
    );
    assert!(!seen.contains(&None), "fallback finds a server: {seen:?}");
    let seen = agree(
        "sh",
        svc_flags::SCHED_SH_FALLBACK | svc_flags::SCHED_SH_PORT,
        &[v4("2001:db8::100")],
        &[0, 1, 0, 4],
        2000,
        6,
    );
    assert!(!seen.contains(&None), "fallback finds a server: {seen:?}");
}

#[test]
fn dh_by_destination_address_as_the_core() {
    let vips: Vec<IpAddr> = (1..=12).map(|i| v4(&format!("10.0.0.{i}"))).collect();
    let seen = agree("dh", 0, &vips, &[1, 2, 0, 3], 1200, 7);
    // one bucket per virtual address: most of the 12 get a server, some a weight-0 one's
    assert!(seen.iter().flatten().count() >= 6, "{seen:?}");
}

#[test]
fn rr_and_wrr_take_the_core_s_cycle_in_the_core_s_order() {
    for (sched, weights) in [
        ("wrr", &[2, 5, 5][..]),
        ("wrr", &[4, 0, 3, 2]),
        ("rr", &[1, 0, 7, 1]),
    ] {
        let vip = v4("10.0.0.100");
        let mut s = setup(sched, 0, &[vip], weights);
        let mut rng = Rng::seeded(8);
        for i in 0..60u16 {
            let (xdp, core) = s.choices(client(&mut rng, false), 2000 + i, vip);
            assert!(core.is_some());
            assert_eq!(xdp, core, "{sched} {weights:?}: flow {i}");
        }
        // a weight changes: the core's wrr starts a new cycle; the program takes it over
        let first = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 10));
        let mut d = DestConf::new(first, 80);
        d.weight = 3;
        s.ipvs.edit_dest(&service_key(vip), d).unwrap();
        s.xdp.set_dest(0, &dest_entry(0, first, 0, 3)).unwrap();
        s.load_schedule(0, vip);
        for i in 0..60u16 {
            let (xdp, core) = s.choices(client(&mut rng, false), 3000 + i, vip);
            assert_eq!(xdp, core, "{sched} {weights:?} after the edit: flow {i}");
        }
    }
}

#[test]
fn mh_by_source_address_as_the_core() {
    let seen = agree("mh", 0, &[v4("10.0.0.100")], &[1, 2, 3, 4], 2500, 9);
    all_chosen(&seen, &[1, 2, 3, 4]);
    let seen = agree("mh", 0, &[v4("2001:db8::100")], &[5, 1, 3], 1500, 10);
    all_chosen(&seen, &[5, 1, 3]);
}

#[test]
fn mh_port_and_fallback_as_the_core() {
    let seen = agree(
        "mh",
        svc_flags::SCHED2,
        &[v4("10.0.0.100")],
        &[2, 2, 1],
        1500,
        11,
    );
    all_chosen(&seen, &[2, 2, 1]);
    // quiesced servers (weight 0 after having a weight) keep their slots in the core; here
    // weight-0 servers from the start own none, and unusable ones are skipped by fallback
    let seen = agree(
        "mh",
        svc_flags::SCHED1,
        &[v4("10.0.0.100")],
        &[3, 0, 2, 0],
        1500,
        12,
    );
    assert!(!seen.contains(&None), "{seen:?}");
}

#[test]
fn mh_quiesced_servers_keep_their_slots_and_fall_back_as_the_core() {
    for flags in [0, svc_flags::SCHED1, svc_flags::SCHED1 | svc_flags::SCHED2] {
        let vip = v4("10.0.0.100");
        let mut s = setup("mh", flags, &[vip], &[2, 3, 1, 4]);
        // quiesce two servers: the core keeps their slots (last_weight); the program gets
        // the new weights and the table the core then has
        for (i, idx) in [(1u8, 1u32), (3, 3)] {
            let addr = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 10 + i));
            let mut d = DestConf::new(addr, 80);
            d.weight = 0;
            s.ipvs.edit_dest(&service_key(vip), d).unwrap();
            s.xdp.set_dest(idx, &dest_entry(idx, addr, 0, 0)).unwrap();
        }
        s.load_schedule(0, vip);
        let mut rng = Rng::seeded(13);
        let mut none = 0;
        for i in 0..1500u16 {
            let (xdp, core) = s.choices(client(&mut rng, false), 1024 + i, vip);
            assert_eq!(xdp, core, "flags {flags:#x}: flow {i}");
            none += usize::from(core.is_none());
        }
        // without fallback the quiesced servers' clients get none; with it, nobody does
        assert_eq!(
            none > 0,
            flags & svc_flags::SCHED1 == 0,
            "flags {flags:#x}: {none}"
        );
    }
}

/// Persistence: new connections from one client network go where that network's template
/// says, for rr and sh alike, IPv4 under a /24 mask and IPv6 under a /64 prefix; the core's
/// sequence moves only when a template is made, and the program's with it.
#[test]
fn persistence_templates_choose_as_the_core() {
    let cases = [
        ("rr", v4("10.0.0.100"), Netmask::V4(0xffff_ff00)),
        ("wrr", v4("10.0.0.100"), Netmask::V4(0xffff_0000)),
        ("sh", v4("10.0.0.100"), Netmask::V4(0xffff_ff00)),
        ("rr", v4("2001:db8::100"), Netmask::V6(64)),
    ];
    for (sched, vip, mask) in cases {
        let mut s = setup_with(sched, 0, &[vip], &[1, 2, 3], Some((300, mask)));
        let mut rng = Rng::seeded(14);
        // a dozen client networks, each client connecting from new ports
        let nets: Vec<IpAddr> = (0..12).map(|_| client(&mut rng, vip.is_ipv6())).collect();
        let mut per_net = std::collections::HashMap::new();
        for i in 0..600u16 {
            let base = nets[usize::from(i) % nets.len()];
            let src = match base {
                IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) ^ u32::from(i % 7))),
                IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) ^ u128::from(i % 7))),
            };
            let (xdp, core) = s.choices(src, 2000 + i, vip);
            assert_eq!(xdp, core, "{sched} {vip}: flow {i} from {src}");
            // one server per client network
            let first = *per_net.entry(base).or_insert(core);
            assert_eq!(core, first, "{sched}: {src} left its network's server");
        }
    }
}

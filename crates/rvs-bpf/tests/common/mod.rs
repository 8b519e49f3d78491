//! What the rvs-bpf tests share.
// Each test binary uses its own part of what follows.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};

use rvs_core::model::{DestConf, Forward};
use rvs_core::time::Tick;

/// Loopback's interface index: `BPF_PROG_TEST_RUN` packets come in on it.
pub const LO: u32 = 1;
pub const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const FIN_ACK: u8 = 0x11;

/// Milliseconds since the test began are close enough to the core's clock for these checks.
pub fn now() -> Tick {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    Tick(START.get_or_init(Instant::now).elapsed().as_millis() as u64)
}

/// The LAN's neighbour table (`Plane::sync` takes it as `&mut lan`): real server 10.0.0.x
/// has Ethernet address 02:01:00:00:00:x.
pub fn lan(addr: IpAddr, _new: bool) -> Option<[u8; 6]> {
    match addr {
        IpAddr::V4(a) => Some([2, 1, 0, 0, 0, a.octets()[3]]),
        IpAddr::V6(_) => None,
    }
}

/// Real server 10.0.0.`last`:80, direct routing.
pub fn dest(last: u8, weight: i32) -> DestConf {
    DestConf::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)), 80)
        .fwd(Forward::Route)
        .weight(weight)
}

/// Ethernet + IPv4 + TCP from the client's `sport` to `vip`:80 with `flags`.
pub fn segment(vip: Ipv4Addr, sport: u16, flags: u8) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&DIRECTOR_MAC);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0xfe]);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&CLIENT.octets());
    f.extend_from_slice(&vip.octets());
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&80u16.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f
}

/// The frames Linux IPVS sent in `golden/tunnel.golden` (recorded by `golden/tunnel.sh`).
pub fn tunnel_frames() -> Vec<Vec<u8>> {
    include_str!("../golden/tunnel.golden")
        .lines()
        .filter_map(|l| l.strip_prefix("frame "))
        .map(|h| {
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex"))
                .collect()
        })
        .collect()
}

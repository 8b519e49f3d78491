//! Nanoseconds per packet of the XDP program for each kind of packet, through
//! `BPF_PROG_TEST_RUN` (the kernel times the runs; no network). Run as root:
//! `bench/xdp-test-run.sh` (or `cargo run --release -p rvs-bpf --example testrun_bench --
//! [RUNS]`). Prints a markdown table.
//!
//! A test run repeats the program on the same buffer without restoring it, so a program that
//! rewrites the packet (a TTL one lower each time, a tunnel header more each time) would
//! measure something else from the second repetition on. Each figure is therefore the mean of
//! RUNS single runs, each on a fresh copy of the packet; it includes the kernel's timing of
//! one run (a few tens of nanoseconds), the same for every row.

use std::net::{Ipv4Addr, Ipv6Addr};

use rvs_bpf::{abi, verdict, Xdp};

const LO: u32 = 1;
const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];

fn w4(a: Ipv4Addr) -> [u32; 4] {
    [u32::from_ne_bytes(a.octets()), 0, 0, 0]
}

fn w6(a: Ipv6Addr) -> [u32; 4] {
    let o = a.octets();
    [0, 4, 8, 12].map(|i| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]))
}

/// Ethernet + IPv4 + TCP (`flags`) or UDP + `payload` bytes.
fn v4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    sport: u16,
    dport: u16,
    flags: u8,
    payload: usize,
) -> Vec<u8> {
    let l4len = if proto == 6 { 20 } else { 8 } + payload;
    let mut f = MAC.to_vec();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0xfe, 0x08, 0x00]);
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((20 + l4len) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = rvs_bpf::ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    if proto == 6 {
        f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    } else {
        f.extend_from_slice(&(l4len as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
    }
    f.extend(std::iter::repeat_n(0x5a, payload));
    f
}

fn v6(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut f = MAC.to_vec();
    f.extend_from_slice(&[
        0x02, 0, 0, 0, 0, 0xfe, 0x86, 0xdd, 0x60, 0, 0, 0, 0, 20, 6, 64,
    ]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f
}

fn main() {
    let runs: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let mut xdp = Xdp::load().expect("loading the XDP program (needs root)");
    xdp.set_iface_full(
        LO,
        &abi::Iface {
            mac: MAC,
            addr4: u32::from_ne_bytes([10, 0, 0, 1]),
            addr6: w6("2001:db8::1".parse().unwrap()),
            ..Default::default()
        },
    )
    .unwrap();
    let vip = Ipv4Addr::new(10, 0, 0, 100);
    let vip6: Ipv6Addr = "2001:db8::100".parse().unwrap();
    let client = Ipv4Addr::new(192, 0, 2, 10);
    let client6: Ipv6Addr = "2001:db8::c".parse().unwrap();
    // (port, protocol, service flags, scheduler, real server: method, tunnel type, tunnel flags)
    let services: [(u16, u8, u32, u32, u8, u8, u8); 6] = [
        (80, 6, 0, abi::SCHED_SEQ, abi::FWD_DROUTE, 0, 0),
        (81, 6, 0, abi::SCHED_SEQ, abi::FWD_TUNNEL, abi::TUN_IPIP, 0),
        (82, 17, 0, abi::SCHED_SEQ, abi::FWD_TUNNEL, abi::TUN_GUE, 1),
        (83, 17, 0, abi::SCHED_SEQ, abi::FWD_TUNNEL, abi::TUN_GRE, 1),
        (
            84,
            17,
            abi::SVC_ONEPACKET,
            abi::SCHED_SEQ,
            abi::FWD_DROUTE,
            0,
            0,
        ),
        (
            85,
            17,
            abi::SVC_ONEPACKET,
            abi::SCHED_SH,
            abi::FWD_DROUTE,
            0,
            0,
        ),
    ];
    for (i, (port, proto, flags, sched, fwd, tun_type, tun_flags)) in
        services.into_iter().enumerate()
    {
        let id = i as u32;
        let (off, len) = if sched == abi::SCHED_SH {
            (1000, 256)
        } else {
            (id, 1)
        };
        xdp.set_service(
            &abi::Vip {
                addr: w4(vip),
                port: port.to_be(),
                proto,
                family: abi::AF_INET,
            },
            &abi::Service {
                id,
                flags,
                sched,
                seq_off: off,
                seq_len: len,
                ..Default::default()
            },
        )
        .unwrap();
        xdp.set_seq(off, &vec![id; len as usize]).unwrap();
        xdp.set_dest(
            id,
            &abi::Dest {
                addr: w4(Ipv4Addr::new(10, 0, 1, 10 + i as u8)),
                port: port.to_be(),
                family: abi::AF_INET,
                fwd,
                mac: [0x02, 0, 0, 0, 1, i as u8],
                flags: abi::DEST_AVAILABLE,
                weight: 1,
                tun_type,
                tun_flags,
                tun_port: 6080u16.to_be(),
                ..Default::default()
            },
        )
        .unwrap();
    }
    xdp.set_service(
        &abi::Vip {
            addr: w6(vip6),
            port: 80u16.to_be(),
            proto: 6,
            family: abi::AF_INET6,
        },
        &abi::Service {
            id: 9,
            seq_off: 9,
            seq_len: 1,
            ..Default::default()
        },
    )
    .unwrap();
    xdp.set_seq(9, &[9]).unwrap();
    xdp.set_dest(
        9,
        &abi::Dest {
            addr: w6("2001:db8::9".parse().unwrap()),
            port: 80u16.to_be(),
            family: abi::AF_INET6,
            fwd: abi::FWD_DROUTE,
            flags: abi::DEST_AVAILABLE,
            weight: 1,
            ..Default::default()
        },
    )
    .unwrap();
    let mut icmp = v4(Ipv4Addr::new(198, 51, 100, 1), vip, 1, 0, 0, 0, 0);
    icmp.truncate(34);
    let quoted = v4(vip, client, 6, 80, 40000, 0x12, 0);
    icmp.extend_from_slice(&[3, 4, 0, 0, 0, 0, 5, 0xdc]);
    icmp.extend_from_slice(&quoted[14..14 + 28]);
    let tot = (icmp.len() - 14) as u16;
    icmp[16..18].copy_from_slice(&tot.to_be_bytes());
    icmp[23] = 1;
    let rows: Vec<(&str, Vec<u8>, u32)> = vec![
        (
            "not for a service (to the kernel)",
            v4(client, Ipv4Addr::new(10, 0, 0, 200), 6, 40000, 80, 0x02, 0),
            verdict::PASS,
        ),
        (
            "malformed: IPv4 total length past the frame",
            {
                let mut f = v4(client, vip, 6, 40000, 80, 0x10, 0);
                f[16] = 0x7f;
                f
            },
            verdict::PASS,
        ),
        (
            "DR, IPv4 TCP, known flow",
            v4(client, vip, 6, 40000, 80, 0x10, 0),
            verdict::TX,
        ),
        (
            "DR, IPv6 TCP, known flow",
            v6(client6, vip6, 40000, 80, 0x10),
            verdict::TX,
        ),
        (
            "IPIP, IPv4 TCP, known flow",
            v4(client, vip, 6, 40000, 81, 0x10, 0),
            verdict::TX,
        ),
        (
            "GUE with checksum, 1,400-byte UDP",
            v4(client, vip, 17, 40000, 82, 0, 1400),
            verdict::TX,
        ),
        (
            "GRE with checksum, 1,400-byte UDP",
            v4(client, vip, 17, 40000, 83, 0, 1400),
            verdict::TX,
        ),
        (
            "new flow every packet: rr, one-packet UDP",
            v4(client, vip, 17, 40000, 84, 0, 64),
            verdict::TX,
        ),
        (
            "new flow every packet: sh, one-packet UDP",
            v4(client, vip, 17, 40000, 85, 0, 64),
            verdict::TX,
        ),
        (
            "ICMP error steered to a flow's real server",
            icmp,
            verdict::TX,
        ),
    ];
    // the flows the "known flow" rows hit, and the ICMP row's
    for f in [
        v4(client, vip, 6, 40000, 80, 0x02, 0),
        v6(client6, vip6, 40000, 80, 0x02),
        v4(client, vip, 6, 40000, 81, 0x02, 0),
    ] {
        xdp.test_run(&f, Some(LO), 1).unwrap();
    }
    println!("| packet | verdict | ns per packet (mean of {runs} runs) |");
    println!("|---|---|---:|");
    for (name, pkt, want) in rows {
        let mut total = 0u64;
        for _ in 0..runs {
            let run = xdp.test_run(&pkt, Some(LO), 1).unwrap();
            assert_eq!(run.verdict, want, "{name}");
            total += u64::from(run.ns_per_run);
        }
        let v = if want == verdict::PASS {
            "XDP_PASS"
        } else {
            "XDP_TX"
        };
        println!("| {name} | {v} | {:.0} |", total as f64 / f64::from(runs));
    }
}

//! The XDP program packet by packet through `BPF_PROG_TEST_RUN`: a table of (input packet,
//! expected verdict, expected output, expected counter changes), run in order against one
//! set of maps (so flows created by earlier rows are seen by later ones).
//!
//! Needs root (loading BPF programs).

use std::net::{Ipv4Addr, Ipv6Addr};

use rvs_bpf::abi::{self, Counter};
use rvs_bpf::{verdict, Xdp};

const LO: u32 = 1; // every network namespace has lo as interface 1
const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];

fn rs_mac(i: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 1, i]
}

const TCP: u8 = 6;
const UDP: u8 = 17;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;

fn v4(a: &str) -> Ipv4Addr {
    a.parse().unwrap()
}

fn v6(a: &str) -> Ipv6Addr {
    a.parse().unwrap()
}

fn addr4(a: Ipv4Addr) -> [u32; 4] {
    [u32::from_ne_bytes(a.octets()), 0, 0, 0]
}

fn addr6(a: Ipv6Addr) -> [u32; 4] {
    let o = a.octets();
    let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
    [w(0), w(4), w(8), w(12)]
}

/// An L4 header: TCP (20 bytes, `flags`) or UDP (8 bytes), then `payload` bytes.
fn l4(proto: u8, sport: u16, dport: u16, flags: u8, payload: usize) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    if proto == TCP {
        h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    } else {
        h.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
        h.extend_from_slice(&[0, 0]);
    }
    h.extend(std::iter::repeat_n(0xabu8, payload));
    h
}

fn eth(ethertype: u16) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&DIRECTOR_MAC);
    f.extend_from_slice(&ROUTER_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// Ethernet + IPv4 (with `opts` option bytes) + `l4`; `frag` is the flags/offset field.
fn ip4_opts(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, opts: &[u8], frag: u16, l4: &[u8]) -> Vec<u8> {
    let hlen = 20 + opts.len();
    let mut f = eth(0x0800);
    f.push(0x40 | (hlen / 4) as u8);
    f.push(0);
    f.extend_from_slice(&((hlen + l4.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0x12, 0x34]);
    f.extend_from_slice(&frag.to_be_bytes());
    f.extend_from_slice(&[64, proto, 0, 0]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(opts);
    let c = csum(&f[14..14 + hlen]);
    f[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(l4);
    f
}

fn ip4(src: &str, sport: u16, dst: &str, dport: u16, proto: u8, flags: u8) -> Vec<u8> {
    ip4_opts(
        v4(src),
        v4(dst),
        proto,
        &[],
        0,
        &l4(proto, sport, dport, flags, 16),
    )
}

fn ip6_raw(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = eth(0x86dd);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    f.extend_from_slice(&[next, 64]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(payload);
    f
}

/// A UDP header whose length field says `total` bytes, followed by `have` payload bytes (a
/// first fragment carries only part of the datagram).
fn udp_head(sport: u16, dport: u16, total: u16, have: usize) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend(std::iter::repeat_n(0xabu8, have));
    h
}

/// IPv6 from the v6 client to [2001:db8::100] with a fragment header (`off`: offset and M
/// bit as on the wire, `id`) in front of TCP `l4`.
fn frag6(off: u16, id: u32, l4: &[u8]) -> Vec<u8> {
    let mut p = vec![TCP, 0];
    p.extend_from_slice(&off.to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(l4);
    ip6_raw(v6("2001:db8::c"), v6("2001:db8::100"), 44, &p)
}

fn ip6(src: &str, sport: u16, dst: &str, dport: u16, proto: u8, flags: u8) -> Vec<u8> {
    ip6_raw(v6(src), v6(dst), proto, &l4(proto, sport, dport, flags, 16))
}

/// An ICMP error (`type`, `code`) from a router to the virtual address about `offending` (a
/// frame the real server sent from the VIP): its IP header and first 8 bytes of L4 quoted.
fn icmp4(router: &str, icmp_type: u8, code: u8, offending: &[u8], quote: usize) -> Vec<u8> {
    let inner = &offending[14..];
    let mut body = vec![icmp_type, code, 0, 0, 0, 0, 0x05, 0xdc];
    body.extend_from_slice(&inner[..quote.min(inner.len())]);
    let dst = Ipv4Addr::new(inner[12], inner[13], inner[14], inner[15]);
    ip4_opts(v4(router), dst, 1, &[], 0, &body)
}

/// The ICMPv6 counterpart (packet too big is type 2).
fn icmp6(router: &str, icmp_type: u8, offending: &[u8], quote: usize) -> Vec<u8> {
    let inner = &offending[14..];
    let mut body = vec![icmp_type, 0, 0, 0, 0, 0, 0x05, 0x00];
    body.extend_from_slice(&inner[..quote.min(inner.len())]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&inner[8..24]);
    ip6_raw(v6(router), Ipv6Addr::from(dst), 58, &body)
}

/// Sets a byte of a frame (malformed variants).
fn poke(mut f: Vec<u8>, at: usize, v: u8) -> Vec<u8> {
    f[at] = v;
    f
}

/// The IPv4 header checksum of a poked frame made right again.
fn valid(mut f: Vec<u8>) -> Vec<u8> {
    let hlen = usize::from(f[14] & 0xf) * 4;
    f[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
    let c = csum(&f[14..14 + hlen]);
    f[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    f
}

fn cut(mut f: Vec<u8>, len: usize) -> Vec<u8> {
    f.truncate(len);
    f
}

/// What a row expects.
#[derive(Debug)]
enum Out {
    /// XDP_PASS, the packet unchanged
    Pass,
    /// XDP_DROP
    Drop,
    /// XDP_TX toward real server `n` (its MAC as destination, the director's as source), the
    /// rest of the frame unchanged
    To(u8),
    /// XDP_TX toward real server `n` through an IPIP or IPv6-in-IPv6 tunnel: a new Ethernet
    /// header, the outer IP header from the director's tunnel address, then the IP packet
    Tun(u8),
}

/// The director's tunnel source addresses on lo.
const TUN_SRC4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const TUN_SRC6: &str = "2001:db8::1";

fn tun_dst4(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 2, n)
}

fn tun_dst6(n: u8) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, u16::from(n))
}

/// RFC 1071 checksum of a header.
fn csum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// `frame` as the director forwards it: TTL / hop limit one less (the IPv4 header checksum
/// computed again from scratch), MACs toward real server `n`.
fn forwarded(frame: &[u8], n: u8) -> Vec<u8> {
    let mut p = frame.to_vec();
    p[0..6].copy_from_slice(&rs_mac(n));
    p[6..12].copy_from_slice(&DIRECTOR_MAC);
    if p[14] >> 4 == 4 {
        p[14 + 8] -= 1;
        let hlen = usize::from(p[14] & 0xf) * 4;
        p[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
        let c = csum(&p[14..14 + hlen]);
        p[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    } else {
        p[14 + 7] -= 1;
    }
    p
}

/// The outer DS field for an inner one: Congestion Experienced becomes ECT(0).
fn ecn_encap(ds: u8) -> u8 {
    if ds & 3 == 3 {
        (ds & !3) | 2
    } else {
        ds
    }
}

/// What the tunnel of real server `n` makes of `frame` (written out field by field here, not
/// with the program's logic); `id` is the outer IPv4 ID the program chose.
fn tunnelled(frame: &[u8], n: u8, id: u16) -> Vec<u8> {
    let fwd = forwarded(frame, n);
    let inner = &fwd[14..];
    let mut out = rs_mac(n).to_vec();
    out.extend_from_slice(&DIRECTOR_MAC);
    if inner[0] >> 4 == 4 {
        let ip_len = u16::from_be_bytes([inner[2], inner[3]]);
        let df = u16::from_be_bytes([inner[6], inner[7]]) & 0x4000;
        let mut o = vec![0x45, ecn_encap(inner[1])];
        o.extend_from_slice(&(ip_len + 20).to_be_bytes());
        o.extend_from_slice(&id.to_be_bytes());
        o.extend_from_slice(&df.to_be_bytes());
        o.extend_from_slice(&[inner[8], 4, 0, 0]);
        o.extend_from_slice(&TUN_SRC4.octets());
        o.extend_from_slice(&tun_dst4(n).octets());
        let c = csum(&o);
        o[10..12].copy_from_slice(&c.to_be_bytes());
        out.extend_from_slice(&0x0800u16.to_be_bytes());
        out.extend_from_slice(&o);
    } else {
        let payload = u16::from_be_bytes([inner[4], inner[5]]) + 40;
        let tc = ((u16::from_be_bytes([inner[0], inner[1]]) >> 4) & 0xff) as u8;
        let first = 0x6000_0000u32 | (u32::from(ecn_encap(tc)) << 20);
        out.extend_from_slice(&0x86ddu16.to_be_bytes());
        out.extend_from_slice(&first.to_be_bytes());
        out.extend_from_slice(&payload.to_be_bytes());
        out.extend_from_slice(&[41, inner[7]]);
        out.extend_from_slice(&v6(TUN_SRC6).octets());
        out.extend_from_slice(&tun_dst6(n).octets());
    }
    out.extend_from_slice(inner);
    out
}

struct Row {
    name: &'static str,
    packet: Vec<u8>,
    out: Out,
    counters: &'static [(Counter, u64)],
}

fn row(name: &'static str, packet: Vec<u8>, out: Out, counters: &'static [(Counter, u64)]) -> Row {
    Row {
        name,
        packet,
        out,
        counters,
    }
}

/// Services and real servers of the table.
fn setup(xdp: &mut Xdp) {
    xdp.set_iface_full(
        LO,
        &abi::Iface {
            mac: DIRECTOR_MAC,
            addr4: u32::from_ne_bytes(TUN_SRC4.octets()),
            addr6: addr6(v6(TUN_SRC6)),
            ..Default::default()
        },
    )
    .unwrap();
    let svc = |id, seq_off, seq_len| abi::Service {
        id,
        seq_off,
        seq_len,
        ..Default::default()
    };
    let vip4 = |a: &str, port: u16, proto| abi::Vip {
        addr: addr4(v4(a)),
        port: port.to_be(),
        proto,
        family: abi::AF_INET,
    };
    // TCP 10.0.0.100:80, rr over real servers 0, 1, 2
    xdp.set_service(&vip4("10.0.0.100", 80, TCP), &svc(0, 0, 3))
        .unwrap();
    xdp.set_seq(0, &[0, 1, 2]).unwrap();
    // UDP 10.0.0.100:53 -> 3
    xdp.set_service(&vip4("10.0.0.100", 53, UDP), &svc(1, 3, 1))
        .unwrap();
    xdp.set_seq(3, &[3]).unwrap();
    // TCP [2001:db8::100]:80 -> 4
    let vip6 = abi::Vip {
        addr: addr6(v6("2001:db8::100")),
        port: 80u16.to_be(),
        proto: TCP,
        family: abi::AF_INET6,
    };
    xdp.set_service(&vip6, &svc(2, 4, 1)).unwrap();
    xdp.set_seq(4, &[4]).unwrap();
    // TCP 10.0.0.101:0 (every port) -> 5
    xdp.set_service(&vip4("10.0.0.101", 0, TCP), &svc(3, 5, 1))
        .unwrap();
    xdp.set_seq(5, &[5]).unwrap();
    // TCP 10.0.0.102:80 without real servers
    xdp.set_service(&vip4("10.0.0.102", 80, TCP), &svc(4, 6, 0))
        .unwrap();
    // TCP 10.0.0.103:80 -> 6, a local real server (not this program's)
    xdp.set_service(&vip4("10.0.0.103", 80, TCP), &svc(5, 6, 1))
        .unwrap();
    xdp.set_seq(6, &[6]).unwrap();
    // tunnelled real servers: TCP 10.0.0.104:80 -> 7 (IPIP), TCP [2001:db8::104]:80 -> 8
    // (IPv6 in IPv6), UDP 10.0.0.104:53 -> 9 (an IPv6 tunnel for an IPv4 service)
    xdp.set_service(&vip4("10.0.0.104", 80, TCP), &svc(6, 7, 1))
        .unwrap();
    xdp.set_seq(7, &[7]).unwrap();
    let vip6_tun = abi::Vip {
        addr: addr6(v6("2001:db8::104")),
        ..vip6
    };
    xdp.set_service(&vip6_tun, &svc(7, 8, 1)).unwrap();
    xdp.set_seq(8, &[8]).unwrap();
    xdp.set_service(&vip4("10.0.0.104", 53, UDP), &svc(8, 9, 1))
        .unwrap();
    xdp.set_seq(9, &[9]).unwrap();
    for (i, family, addr) in [
        (7u8, abi::AF_INET, addr4(tun_dst4(7))),
        (8, abi::AF_INET6, addr6(tun_dst6(8))),
        (9, abi::AF_INET6, addr6(tun_dst6(9))),
    ] {
        let dest = abi::Dest {
            addr,
            port: 80u16.to_be(),
            family,
            fwd: abi::FWD_TUNNEL,
            tun_type: abi::TUN_IPIP,
            mac: rs_mac(i),
            flags: abi::DEST_AVAILABLE,
            weight: 1,
            ..Default::default()
        };
        xdp.set_dest(u32::from(i), &dest).unwrap();
    }
    for i in 0..=6u8 {
        let (family, addr) = if i == 4 {
            (abi::AF_INET6, addr6(v6("2001:db8::14")))
        } else {
            (abi::AF_INET, addr4(Ipv4Addr::new(10, 0, 1, 10 + i)))
        };
        let dest = abi::Dest {
            addr,
            port: 80u16.to_be(),
            family,
            fwd: if i == 6 {
                abi::FWD_LOCALNODE
            } else {
                abi::FWD_DROUTE
            },
            mac: rs_mac(i),
            flags: abi::DEST_AVAILABLE,
            weight: 1,
            ..Default::default()
        };
        xdp.set_dest(u32::from(i), &dest).unwrap();
    }
}

fn rows() -> Vec<Row> {
    use Counter::*;
    const NEW: &[(Counter, u64)] = &[(Packets, 1), (FlowNew, 1), (Tx, 1)];
    const HIT: &[(Counter, u64)] = &[(Packets, 1), (FlowHit, 1), (Tx, 1)];
    const NO_SVC: &[(Counter, u64)] = &[(Packets, 1), (PassNoService, 1)];
    const BAD: &[(Counter, u64)] = &[(Packets, 1), (Malformed, 1)];
    const FRAG: &[(Counter, u64)] = &[(Packets, 1), (Fragment, 1)];
    const FRAG_FWD: &[(Counter, u64)] = &[(Packets, 1), (FragForwarded, 1), (Tx, 1)];
    let c = "192.0.2.10";
    let vip = "10.0.0.100";
    let tcp_syn = ip4(c, 40000, vip, 80, TCP, SYN);
    vec![
        row(
            "v4 TCP SYN: first of the sequence",
            tcp_syn.clone(),
            Out::To(0),
            NEW,
        ),
        row(
            "v4 TCP ACK of that flow",
            ip4(c, 40000, vip, 80, TCP, ACK),
            Out::To(0),
            HIT,
        ),
        row(
            "v4 TCP SYN, another client port: second",
            ip4(c, 40001, vip, 80, TCP, SYN),
            Out::To(1),
            NEW,
        ),
        row(
            "v4 TCP SYN: third",
            ip4(c, 40002, vip, 80, TCP, SYN),
            Out::To(2),
            NEW,
        ),
        row(
            "v4 TCP SYN: the sequence wraps",
            ip4(c, 40003, vip, 80, TCP, SYN),
            Out::To(0),
            NEW,
        ),
        row("v4 TCP SYN again on a known flow", tcp_syn, Out::To(0), HIT),
        row(
            "v4 TCP ACK of no flow: the kernel's",
            ip4(c, 41000, vip, 80, TCP, ACK),
            Out::Pass,
            NO_SVC,
        ),
        row(
            "v4 UDP: any datagram starts a flow",
            ip4(c, 5353, vip, 53, UDP, 0),
            Out::To(3),
            NEW,
        ),
        row(
            "v4 UDP, same flow",
            ip4(c, 5353, vip, 53, UDP, 0),
            Out::To(3),
            HIT,
        ),
        row(
            "v6 TCP SYN",
            ip6("2001:db8::c", 40000, "2001:db8::100", 80, TCP, SYN),
            Out::To(4),
            NEW,
        ),
        row(
            "v6 TCP ACK of that flow",
            ip6("2001:db8::c", 40000, "2001:db8::100", 80, TCP, ACK),
            Out::To(4),
            HIT,
        ),
        row(
            "port-0 service takes any port",
            ip4(c, 40000, "10.0.0.101", 8443, TCP, SYN),
            Out::To(5),
            NEW,
        ),
        row(
            "v4 TCP to another address",
            ip4(c, 40000, "10.0.0.200", 80, TCP, SYN),
            Out::Pass,
            NO_SVC,
        ),
        row(
            "v4 TCP to the VIP on another port",
            ip4(c, 40000, vip, 81, TCP, SYN),
            Out::Pass,
            NO_SVC,
        ),
        row(
            "v4 UDP to the TCP port",
            ip4(c, 40000, vip, 80, UDP, 0),
            Out::Pass,
            NO_SVC,
        ),
        row(
            "v6 to another address",
            ip6("2001:db8::c", 1, "2001:db8::200", 80, TCP, SYN),
            Out::Pass,
            NO_SVC,
        ),
        row(
            "ICMP to the VIP",
            ip4_opts(v4(c), v4(vip), 1, &[], 0, &[8, 0, 0, 0, 0, 1, 0, 1]),
            Out::Pass,
            NO_SVC,
        ),
        row(
            "ARP",
            {
                let mut f = eth(0x0806);
                f.extend_from_slice(&[0; 28]);
                f
            },
            Out::Pass,
            &[(Packets, 1), (PassNotIp, 1)],
        ),
        row(
            "Ethernet header only, unknown type",
            eth(0x88b5),
            Out::Pass,
            &[(Packets, 1), (PassNotIp, 1)],
        ),
        row("Ethernet only, IPv4 type", eth(0x0800), Out::Pass, BAD),
        row(
            "v4 header cut at 19 bytes",
            cut(ip4(c, 1, vip, 80, TCP, SYN), 14 + 19),
            Out::Pass,
            BAD,
        ),
        row(
            "v4 IHL 4",
            poke(ip4(c, 1, vip, 80, TCP, SYN), 14, 0x44),
            Out::Pass,
            BAD,
        ),
        row(
            "v4 version 6 in a v4 frame",
            poke(ip4(c, 1, vip, 80, TCP, SYN), 14, 0x65),
            Out::Pass,
            BAD,
        ),
        row(
            "v4 IHL 15, past the packet",
            cut(poke(ip4(c, 1, vip, 80, TCP, SYN), 14, 0x4f), 14 + 40),
            Out::Pass,
            BAD,
        ),
        row(
            "v4 total length past the frame",
            poke(ip4(c, 1, vip, 80, TCP, SYN), 16, 0x7f),
            Out::Pass,
            BAD,
        ),
        row(
            "v4 total length under the header",
            poke(poke(ip4(c, 1, vip, 80, TCP, SYN), 16, 0), 17, 12),
            Out::Pass,
            BAD,
        ),
        row(
            "v4 TCP header cut at 10 bytes",
            cut(
                poke(poke(ip4(c, 1, vip, 80, TCP, SYN), 16, 0), 17, 30),
                14 + 30,
            ),
            Out::Pass,
            BAD,
        ),
        row(
            "v4 TCP data offset 4",
            poke(ip4(c, 2, vip, 80, TCP, SYN), 14 + 20 + 12, 0x40),
            Out::Pass,
            BAD,
        ),
        row(
            "v4 TCP data offset past the packet",
            poke(ip4(c, 3, vip, 80, TCP, SYN), 14 + 20 + 12, 0xf0),
            Out::Pass,
            BAD,
        ),
        row(
            "v4 UDP header cut at 4 bytes",
            cut(
                poke(poke(ip4(c, 1, vip, 53, UDP, 0), 16, 0), 17, 24),
                14 + 24,
            ),
            Out::Pass,
            BAD,
        ),
        row(
            "v4 UDP length past the packet",
            poke(ip4(c, 1, vip, 53, UDP, 0), 14 + 20 + 4, 0x7f),
            Out::Pass,
            BAD,
        ),
        row(
            "v4 UDP length under 8",
            poke(
                poke(ip4(c, 1, vip, 53, UDP, 0), 14 + 20 + 4, 0),
                14 + 20 + 5,
                7,
            ),
            Out::Pass,
            BAD,
        ),
        row(
            "v4 with options: forwarded as is",
            ip4_opts(
                v4(c),
                v4(vip),
                TCP,
                &[1, 1, 1, 0],
                0,
                &l4(TCP, 40010, 80, SYN, 0),
            ),
            Out::To(1),
            NEW,
        ),
        row(
            "v4 first fragment of a UDP datagram (UDP length past it): scheduled",
            ip4_opts(
                v4(c),
                v4(vip),
                UDP,
                &[],
                0x2000,
                &udp_head(5400, 53, 3000, 1472),
            ),
            Out::To(3),
            NEW,
        ),
        row(
            "v4 later fragment: where its first went",
            ip4_opts(v4(c), v4(vip), UDP, &[], 0x00b9, &[0xab; 24]),
            Out::To(3),
            FRAG_FWD,
        ),
        row(
            "v4 later fragment of a datagram not seen",
            poke(
                ip4_opts(v4(c), v4(vip), UDP, &[], 0x00b9, &[0xab; 24]),
                14 + 4,
                0x77,
            ),
            Out::Pass,
            FRAG,
        ),
        row(
            "v4 first fragment of a TCP segment to another address: the kernel's",
            ip4_opts(
                v4(c),
                v4("10.0.0.200"),
                TCP,
                &[],
                0x2000,
                &l4(TCP, 40011, 80, SYN, 16),
            ),
            Out::Pass,
            NO_SVC,
        ),
        row(
            "v6 first fragment (fragment header): scheduled",
            frag6(0x0001, 0x0102_0304, &l4(TCP, 40100, 80, SYN, 16)),
            Out::To(4),
            NEW,
        ),
        row(
            "v6 later fragment: where its first went",
            frag6(0x0008 * 6, 0x0102_0304, &[0xab; 24]),
            Out::To(4),
            FRAG_FWD,
        ),
        row(
            "v6 later fragment of a packet not seen",
            frag6(0x0008 * 6, 0x0a0b_0c0d, &[0xab; 24]),
            Out::Pass,
            FRAG,
        ),
        row(
            "v6 atomic fragment (offset 0, no more): the kernel's",
            frag6(0, 0x0102_0305, &l4(TCP, 40101, 80, SYN, 16)),
            Out::Pass,
            &[(Packets, 1), (IpOptions, 1)],
        ),
        row(
            "v6 hop-by-hop header first",
            ip6_raw(v6("2001:db8::c"), v6("2001:db8::100"), 0, &{
                let mut p = vec![TCP, 0, 1, 4, 0, 0, 0, 0];
                p.extend(l4(TCP, 1, 80, SYN, 0));
                p
            }),
            Out::Pass,
            &[(Packets, 1), (IpOptions, 1)],
        ),
        row(
            "v6 header cut at 39 bytes",
            cut(
                ip6("2001:db8::c", 1, "2001:db8::100", 80, TCP, SYN),
                14 + 39,
            ),
            Out::Pass,
            BAD,
        ),
        row(
            "v6 payload length past the frame",
            poke(
                ip6("2001:db8::c", 1, "2001:db8::100", 80, TCP, SYN),
                14 + 4,
                0x7f,
            ),
            Out::Pass,
            BAD,
        ),
        row(
            "v6 version 4 in a v6 frame",
            poke(
                ip6("2001:db8::c", 1, "2001:db8::100", 80, TCP, SYN),
                14,
                0x40,
            ),
            Out::Pass,
            BAD,
        ),
        row(
            "service without real servers: dropped",
            ip4(c, 1, "10.0.0.102", 80, TCP, SYN),
            Out::Drop,
            &[(Packets, 1), (NoDest, 1)],
        ),
        row(
            "local real server: not this program's",
            ip4(c, 1, "10.0.0.103", 80, TCP, SYN),
            Out::Pass,
            &[(Packets, 1), (FlowNew, 1), (UnsupportedFwd, 1)],
        ),
        row(
            "v4 TCP SYN to a tunnelled real server: IPIP",
            ip4(c, 40030, "10.0.0.104", 80, TCP, SYN),
            Out::Tun(7),
            NEW,
        ),
        row(
            "its ACK, same tunnel",
            ip4(c, 40030, "10.0.0.104", 80, TCP, ACK),
            Out::Tun(7),
            HIT,
        ),
        row(
            "IPIP keeps DF and TOS",
            {
                let mut f = poke(ip4(c, 40031, "10.0.0.104", 80, TCP, SYN), 14 + 6, 0x40);
                f[15] = 0xb8;
                valid(f)
            },
            Out::Tun(7),
            NEW,
        ),
        row(
            "v6 TCP SYN tunnelled: IPv6 in IPv6",
            ip6("2001:db8::c", 40032, "2001:db8::104", 80, TCP, SYN),
            Out::Tun(8),
            NEW,
        ),
        row(
            "v6 traffic class kept",
            poke(
                poke(
                    ip6("2001:db8::c", 40033, "2001:db8::104", 80, TCP, SYN),
                    14,
                    0x6b,
                ),
                15,
                0x80,
            ),
            Out::Tun(8),
            NEW,
        ),
        row(
            "v4 service, IPv6 tunnel: not this program's",
            ip4(c, 40034, "10.0.0.104", 53, UDP, 0),
            Out::Pass,
            &[(Packets, 1), (FlowNew, 1), (UnsupportedFwd, 1)],
        ),
        row(
            "v4 TTL 1: not forwarded",
            poke(ip4(c, 40040, vip, 80, TCP, SYN), 14 + 8, 1),
            Out::Drop,
            &[(Packets, 1), (FlowNew, 1), (TtlExpired, 1)],
        ),
        row(
            "v4 TTL 0: not forwarded",
            poke(ip4(c, 40041, vip, 80, TCP, SYN), 14 + 8, 0),
            Out::Drop,
            &[(Packets, 1), (FlowNew, 1), (TtlExpired, 1)],
        ),
        row(
            "v4 TTL 2: forwarded with 1",
            valid(poke(ip4(c, 40042, vip, 80, TCP, SYN), 14 + 8, 2)),
            // the two expired SYNs before took their turns in the sequence
            Out::To(1),
            NEW,
        ),
        row(
            "v6 hop limit 1: not forwarded",
            poke(
                ip6("2001:db8::c", 40043, "2001:db8::100", 80, TCP, SYN),
                14 + 7,
                1,
            ),
            Out::Drop,
            &[(Packets, 1), (FlowNew, 1), (TtlExpired, 1)],
        ),
        row(
            "IPIP: Congestion Experienced becomes ECT(0) outside",
            {
                let mut f = ip4(c, 40044, "10.0.0.104", 80, TCP, SYN);
                f[15] = 0xbb;
                valid(f)
            },
            Out::Tun(7),
            NEW,
        ),
        row(
            "ICMP frag needed about a DR flow's answer: to its real server",
            icmp4(
                "198.51.100.1",
                3,
                4,
                &ip4(vip, 80, c, 40000, TCP, SYN | ACK),
                28,
            ),
            Out::To(0),
            &[(Packets, 1), (IcmpSteered, 1), (Tx, 1)],
        ),
        row(
            "ICMP time exceeded about a tunnelled flow: through the tunnel",
            icmp4(
                "198.51.100.1",
                11,
                0,
                &ip4("10.0.0.104", 80, c, 40030, TCP, ACK),
                28,
            ),
            Out::Tun(7),
            &[(Packets, 1), (IcmpSteered, 1), (Tx, 1)],
        ),
        row(
            "ICMP about a UDP flow",
            icmp4("198.51.100.1", 3, 3, &ip4(vip, 53, c, 5353, UDP, 0), 28),
            Out::To(3),
            &[(Packets, 1), (IcmpSteered, 1), (Tx, 1)],
        ),
        row(
            "ICMP about no known flow: the kernel's",
            icmp4("198.51.100.1", 3, 4, &ip4(vip, 80, c, 49999, TCP, ACK), 28),
            Out::Pass,
            NO_SVC,
        ),
        row(
            "ICMP echo request to the VIP: the kernel's",
            ip4_opts(v4(c), v4(vip), 1, &[], 0, &[8, 0, 0, 0, 0, 1, 0, 1]),
            Out::Pass,
            NO_SVC,
        ),
        row(
            "ICMP error quoting a cut IP header",
            icmp4("198.51.100.1", 3, 4, &ip4(vip, 80, c, 40000, TCP, ACK), 10),
            Out::Pass,
            BAD,
        ),
        row(
            "ICMP error quoting 4 bytes of TCP",
            icmp4("198.51.100.1", 3, 4, &ip4(vip, 80, c, 40000, TCP, ACK), 24),
            Out::Pass,
            BAD,
        ),
        row(
            "ICMP error shorter than its header",
            cut(
                valid(poke(
                    poke(
                        icmp4("198.51.100.1", 3, 4, &ip4(vip, 80, c, 40000, TCP, ACK), 28),
                        16,
                        0,
                    ),
                    17,
                    24,
                )),
                14 + 24,
            ),
            Out::Pass,
            BAD,
        ),
        row(
            "ICMPv6 packet too big about a v6 flow",
            icmp6(
                "2001:db8::fe",
                2,
                &ip6("2001:db8::100", 80, "2001:db8::c", 40000, TCP, ACK),
                48,
            ),
            Out::To(4),
            &[(Packets, 1), (IcmpSteered, 1), (Tx, 1)],
        ),
        row(
            "ICMPv6 echo: the kernel's",
            ip6_raw(
                v6("2001:db8::c"),
                v6("2001:db8::100"),
                58,
                &[128, 0, 0, 0, 0, 1, 0, 1],
            ),
            Out::Pass,
            NO_SVC,
        ),
        row(
            "ICMPv6 error quoting a cut header",
            icmp6(
                "2001:db8::fe",
                1,
                &ip6("2001:db8::100", 80, "2001:db8::c", 40000, TCP, ACK),
                30,
            ),
            Out::Pass,
            BAD,
        ),
        row(
            "Ethernet padding after the IP packet",
            {
                let mut f = ip4(c, 40020, vip, 80, TCP, SYN);
                f.extend_from_slice(&[0; 6]);
                f
            },
            Out::To(2),
            NEW,
        ),
        row(
            "v4 TCP SYN, one more flow",
            ip4(c, 40030, vip, 80, TCP, SYN),
            Out::To(0),
            NEW,
        ),
        row(
            "v4 TCP ACK: the flow is established",
            ip4(c, 40003, vip, 80, TCP, ACK),
            Out::To(0),
            HIT,
        ),
        row(
            "v4 TCP RST closes the flow (still forwarded)",
            ip4(c, 40003, vip, 80, TCP, RST),
            Out::To(0),
            HIT,
        ),
        row(
            "v4 TCP SYN on the closed flow's tuple: scheduled again (conn_reuse_mode)",
            ip4(c, 40003, vip, 80, TCP, SYN),
            Out::To(1),
            &[(Packets, 1), (Reused, 1), (FlowNew, 1), (Tx, 1)],
        ),
    ]
}

fn load() -> Xdp {
    let mut xdp = Xdp::load().expect("loading the XDP program (needs root)");
    setup(&mut xdp);
    xdp
}

#[test]
fn every_row_gives_its_verdict_output_and_counts() {
    let mut xdp = load();
    let mut failures = Vec::new();
    let rows = rows();
    for r in &rows {
        let before = xdp.counters().unwrap();
        let run = xdp.test_run(&r.packet, Some(LO), 1).unwrap();
        let after = xdp.counters().unwrap();
        let (want_verdict, want_packet) = match r.out {
            Out::Pass => (verdict::PASS, r.packet.clone()),
            Out::Drop => (verdict::DROP, r.packet.clone()),
            Out::To(n) => (verdict::TX, forwarded(&r.packet, n)),
            Out::Tun(n) => {
                let id = u16::from_be_bytes([run.packet[18], run.packet[19]]);
                (verdict::TX, tunnelled(&r.packet, n, id))
            }
        };
        if run.verdict != want_verdict {
            failures.push(format!(
                "{}: verdict {} want {}",
                r.name, run.verdict, want_verdict
            ));
            continue;
        }
        // a dropped packet's bytes do not matter
        if want_verdict != verdict::DROP && run.packet != want_packet {
            failures.push(format!("{}: output differs", r.name));
        }
        for c in Counter::ALL {
            let got = after[c as usize] - before[c as usize];
            let want = r
                .counters
                .iter()
                .find(|(k, _)| *k == c)
                .map_or(0, |(_, v)| *v);
            if got != want {
                failures.push(format!("{}: counter {c:?} +{got}, want +{want}", r.name));
            }
        }
    }
    assert!(rows.len() >= 64, "{} rows", rows.len());
    assert!(
        failures.is_empty(),
        "{} of {} rows:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

fn key4(c: &str, cport: u16, v: &str, vport: u16, proto: u8) -> abi::FlowKey {
    abi::FlowKey {
        caddr: addr4(v4(c)),
        vaddr: addr4(v4(v)),
        cport: cport.to_be(),
        vport: vport.to_be(),
        proto,
        family: abi::AF_INET,
        pad: 0,
    }
}

#[test]
fn flows_follow_the_client_tcp_flags_and_count_ip_bytes() {
    let mut xdp = load();
    let (c, v) = ("198.51.100.7", "10.0.0.100");
    let key = key4(c, 50000, v, 80, TCP);
    let mut bytes = 0u64;
    for (flags, want) in [
        (SYN, abi::state::SYN_RECV),
        (ACK, abi::state::ESTABLISHED),
        (ACK, abi::state::ESTABLISHED),
        (FIN | ACK, abi::state::FIN_WAIT),
        (RST, abi::state::CLOSE),
    ] {
        let p = ip4(c, 50000, v, 80, TCP, flags);
        bytes += (p.len() - 14) as u64;
        assert_eq!(xdp.test_run(&p, Some(LO), 1).unwrap().verdict, verdict::TX);
        let f = xdp.flow(&key).unwrap().expect("the flow is recorded");
        assert_eq!(f.state, want, "after flags {flags:#x}");
        assert_eq!(f.dest, 0);
    }
    let f = xdp.flow(&key).unwrap().unwrap();
    // five packets, each of them a state change the control plane was told of
    assert_eq!((f.packets, f.reported_packets), (5, 5));
    let st = xdp.dest_stats(0).unwrap();
    assert_eq!((st.conns, st.packets, st.bytes), (1, 5, bytes));
    // a client port never seen has no flow
    assert_eq!(xdp.flow(&key4(c, 50001, v, 80, TCP)).unwrap(), None);
}

#[test]
fn a_removed_real_server_s_flows_are_dropped() {
    let mut xdp = load();
    let p = ip4("198.51.100.8", 50000, "10.0.0.100", 80, TCP, SYN);
    assert_eq!(xdp.test_run(&p, Some(LO), 1).unwrap().verdict, verdict::TX);
    let mut d = abi::Dest {
        addr: addr4(Ipv4Addr::new(10, 0, 1, 10)),
        port: 80u16.to_be(),
        family: abi::AF_INET,
        fwd: abi::FWD_DROUTE,
        mac: rs_mac(0),
        weight: 1,
        ..Default::default()
    };
    xdp.set_dest(0, &d).unwrap(); // no longer available
    let ack = ip4("198.51.100.8", 50000, "10.0.0.100", 80, TCP, ACK);
    assert_eq!(
        xdp.test_run(&ack, Some(LO), 1).unwrap().verdict,
        verdict::DROP
    );
    d.flags = abi::DEST_AVAILABLE;
    xdp.set_dest(0, &d).unwrap();
    assert_eq!(
        xdp.test_run(&ack, Some(LO), 1).unwrap().verdict,
        verdict::TX
    );
}

#[test]
fn the_sequence_position_is_shared_and_settable() {
    let mut xdp = load();
    xdp.set_position(0, 2).unwrap();
    let run = xdp
        .test_run(
            &ip4("198.51.100.9", 1, "10.0.0.100", 80, TCP, SYN),
            Some(LO),
            1,
        )
        .unwrap();
    assert_eq!(&run.packet[0..6], &rs_mac(2));
}

#[test]
fn without_the_interface_s_address_the_packet_goes_to_the_kernel() {
    let mut xdp = load();
    xdp.remove_iface(LO).unwrap();
    let p = ip4("198.51.100.10", 1, "10.0.0.100", 80, TCP, SYN);
    let run = xdp.test_run(&p, Some(LO), 1).unwrap();
    assert_eq!(run.verdict, verdict::PASS);
    assert_eq!(run.packet, p);
}

#[test]
fn every_tunnelled_ipv4_packet_gets_a_fresh_id() {
    let mut xdp = load();
    let mut ids = std::collections::BTreeSet::new();
    for flags in [SYN, ACK, ACK, ACK] {
        let run = xdp
            .test_run(
                &ip4("198.51.100.11", 1, "10.0.0.104", 80, TCP, flags),
                Some(LO),
                1,
            )
            .unwrap();
        assert_eq!(run.verdict, verdict::TX);
        ids.insert(u16::from_be_bytes([run.packet[18], run.packet[19]]));
    }
    assert_eq!(ids.len(), 4, "{ids:?}");
}

/// What the control plane hears: the first packet of a flow (NEW, with the real server and
/// the state), each state change (STATE), and nothing more for a flow's packets within
/// TOUCH_NS of its last report; a refused packet reports nothing.
#[test]
fn events_report_new_flows_and_state_changes() {
    let mut xdp = load();
    let mut events = xdp.take_events().unwrap();
    while events.read().is_some() {}
    let (c, vip) = ("192.0.2.77", "10.0.0.100");
    let sent = [
        (SYN, verdict::TX),
        (ACK, verdict::TX),
        (ACK, verdict::TX),
        (FIN | ACK, verdict::TX),
        (ACK, verdict::TX),
    ];
    for (flags, want) in sent {
        let run = xdp
            .test_run(&ip4(c, 50000, vip, 80, TCP, flags), Some(LO), 1)
            .unwrap();
        assert_eq!(run.verdict, want);
    }
    // not a flow: passed, no event
    xdp.test_run(&ip4(c, 50001, vip, 80, TCP, ACK), Some(LO), 1)
        .unwrap();
    let mut got = Vec::new();
    while let Some(ev) = events.read() {
        got.push(ev);
    }
    let kinds: Vec<(u8, u8, u8)> = got.iter().map(|e| (e.kind, e.tcp_flags, e.state)).collect();
    assert_eq!(
        kinds,
        [
            (abi::event::NEW, SYN, abi::state::SYN_RECV),
            (abi::event::STATE, ACK, abi::state::ESTABLISHED),
            (abi::event::STATE, FIN | ACK, abi::state::FIN_WAIT),
        ]
    );
    let key = key4(c, 50000, vip, 80, TCP);
    let len = ip4(c, 50000, vip, 80, TCP, SYN).len() as u32 - 14;
    assert!(got.iter().all(|e| e.key == key && e.len == len), "{got:?}");
    let flow = xdp.flow(&key).unwrap().expect("recorded");
    assert_eq!((flow.packets, flow.dest), (5, got[0].dest));
    assert!(got.windows(2).all(|w| w[0].ns <= w[1].ns));
    xdp.delete_flow(&key).unwrap();
    assert_eq!(xdp.flow(&key).unwrap(), None);
    // deleting what is not there is fine
    xdp.delete_flow(&key).unwrap();
}

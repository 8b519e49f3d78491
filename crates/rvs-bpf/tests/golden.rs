//! The XDP program's tunnel packets against the real kernel's: `golden/tunnel.golden` holds
//! the frames Linux IPVS put on the wire for IPIP, GUE and GRE real servers (recorded with
//! the IPVS oracle by `golden/tunnel.sh`). Each recorded inner packet, as the client sent it
//! (one TTL more), goes through the program with the same real server; the output must be
//! the kernel's byte for byte, except where the kernel's value is not a function of the
//! packet: the IPv4 ID of a packet without DF (a fresh number either way), and the GUE UDP
//! source port (a hash of the flow with the boot's random seed) with the UDP checksum that
//! covers it, which is checked for validity instead.
//!
//! Needs root (loading BPF programs).

mod common;

use std::net::Ipv4Addr;

use rvs_bpf::{abi, verdict, Xdp};

const LO: u32 = 1;
const DIRECTOR: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
const REAL: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 11);
const VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 100);

fn sum16(b: &[u8]) -> u32 {
    b.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The real server's settings for the service the inner packet was sent to (see tunnel.sh).
fn dest_for(port: u16) -> Option<(u8, u8, u16)> {
    Some(match port {
        81 | 82 => (abi::TUN_IPIP, 0, 0),
        83 => (abi::TUN_GUE, 0, 6080),
        84 => (abi::TUN_GUE, 1, 6080),
        86 => (abi::TUN_GRE, 1, 0),
        87 => (abi::TUN_GRE, 0, 0),
        // --tun-remcsum: the kernel added its option because the datagram came from a local
        // socket with its checksum still to be computed; a packet XDP sees never is
        _ => return None,
    })
}

/// The outer header's length (IPv4 + encapsulation) of a kernel frame.
fn outer_len(f: &[u8]) -> usize {
    20 + match f[14 + 9] {
        17 => 12,
        47 if f[34] & 0x80 != 0 => 8,
        47 => 4,
        _ => 0,
    }
}

#[test]
fn tunnel_packets_are_the_kernel_s() {
    let frames = common::tunnel_frames();
    assert_eq!(frames.len(), 7, "the recording has its seven frames");
    let mut compared = 0;
    for f in &frames {
        let outer = outer_len(f);
        let inner = &f[14 + outer..];
        let proto = inner[9];
        let port = u16::from_be_bytes([inner[22], inner[23]]);
        let Some((tun_type, tun_flags, tun_port)) = dest_for(port) else {
            continue;
        };
        // the client's packet: one TTL more, its header checksum as it was
        let mut sent = inner.to_vec();
        sent[8] += 1;
        sent[10..12].copy_from_slice(&[0, 0]);
        let c = !fold(sum16(&sent[..20]));
        sent[10..12].copy_from_slice(&c.to_be_bytes());
        let mut frame = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 0xfe, 0x08, 0x00];
        frame.extend_from_slice(&sent);

        let mut xdp = Xdp::load().expect("loading the XDP program (needs root)");
        xdp.set_iface_full(
            LO,
            &abi::Iface {
                mac: [0x02, 0, 0, 0, 0, 1],
                addr4: u32::from_ne_bytes(DIRECTOR.octets()),
                ..Default::default()
            },
        )
        .unwrap();
        let vip = abi::Vip {
            addr: [u32::from_ne_bytes(VIP.octets()), 0, 0, 0],
            port: port.to_be(),
            proto,
            family: abi::AF_INET,
        };
        xdp.set_service(
            &vip,
            &abi::Service {
                seq_len: 1,
                ..Default::default()
            },
        )
        .unwrap();
        xdp.set_seq(0, &[0]).unwrap();
        let dest = abi::Dest {
            addr: [u32::from_ne_bytes(REAL.octets()), 0, 0, 0],
            port: port.to_be(),
            family: abi::AF_INET,
            fwd: abi::FWD_TUNNEL,
            mac: [0x02, 0, 0, 0, 1, 1],
            flags: abi::DEST_AVAILABLE,
            weight: 1,
            tun_type,
            tun_flags,
            tun_port: tun_port.to_be(),
            ..Default::default()
        };
        xdp.set_dest(0, &dest).unwrap();
        let run = xdp.test_run(&frame, Some(LO), 1).unwrap();
        assert_eq!(run.verdict, verdict::TX, "port {port}");
        let (got, want) = (&run.packet[14..], &f[14..]);
        assert_eq!(got.len(), want.len(), "port {port}: length");
        // the outer IPv4 header is a valid one either way
        assert_eq!(
            fold(sum16(&got[..20])),
            0xffff,
            "port {port}: outer checksum"
        );
        let df = want[6] & 0x40 != 0;
        let mut masked: Vec<(usize, usize)> = vec![(10, 12)]; // header checksum (checked above)
        if !df {
            masked.push((4, 6)); // a fresh ID
        }
        if tun_type == abi::TUN_GUE {
            masked.push((20, 22)); // source port: a flow hash
            masked.push((26, 28)); // UDP checksum over it
            let (gc, wc) = (&got[26..28], &want[26..28]);
            assert_eq!(
                gc == [0, 0],
                wc == [0, 0],
                "port {port}: UDP checksum present"
            );
            if gc != [0, 0] {
                let ulen = u16::from_be_bytes([got[24], got[25]]);
                let pseudo = sum16(&got[12..20]) + 17 + u32::from(ulen);
                let s = pseudo + sum16(&got[20..20 + usize::from(ulen)]);
                assert_eq!(fold(s), 0xffff, "port {port}: UDP checksum valid");
            }
        } else {
            assert!(df || got[4..6] != [0, 0], "port {port}: an ID without DF");
        }
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            if masked.iter().any(|(a, b)| (*a..*b).contains(&i)) {
                continue;
            }
            assert_eq!(
                g, w,
                "port {port}: byte {i} of {:02x?}\n vs kernel {:02x?}",
                got, want
            );
        }
        compared += 1;
    }
    assert_eq!(compared, 6);
}

/// IPv6 outside (no recording: the oracle's topology is IPv4): GUE with its checksum over the
/// IPv6 pseudo header, GRE with its own, both valid, and the inner packet intact after its hop
/// limit.
#[test]
fn ipv6_gue_and_gre_checksums_are_valid() {
    let src: std::net::Ipv6Addr = "2001:db8::c".parse().unwrap();
    let vip: std::net::Ipv6Addr = "2001:db8::100".parse().unwrap();
    let me: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
    let real: std::net::Ipv6Addr = "2001:db8:2::8".parse().unwrap();
    let words = |a: std::net::Ipv6Addr| {
        let o = a.octets();
        [0, 4, 8, 12].map(|i| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]))
    };
    // UDP 2001:db8::c:5000 -> [2001:db8::100]:53, 77 bytes of payload (an odd length)
    let payload: Vec<u8> = (0..77u8).collect();
    let mut pkt = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 0xfe, 0x86, 0xdd];
    pkt.extend_from_slice(&[0x60, 0, 0, 0]);
    pkt.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    pkt.extend_from_slice(&[17, 30]);
    pkt.extend_from_slice(&src.octets());
    pkt.extend_from_slice(&vip.octets());
    pkt.extend_from_slice(&5000u16.to_be_bytes());
    pkt.extend_from_slice(&53u16.to_be_bytes());
    pkt.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    pkt.extend_from_slice(&[0x12, 0x34]);
    pkt.extend_from_slice(&payload);
    for (tun_type, encap) in [(abi::TUN_GUE, 12usize), (abi::TUN_GRE, 8)] {
        let mut xdp = Xdp::load().expect("loading the XDP program (needs root)");
        xdp.set_iface_full(
            LO,
            &abi::Iface {
                mac: [0x02, 0, 0, 0, 0, 1],
                addr6: words(me),
                ..Default::default()
            },
        )
        .unwrap();
        let v = abi::Vip {
            addr: words(vip),
            port: 53u16.to_be(),
            proto: 17,
            family: abi::AF_INET6,
        };
        xdp.set_service(
            &v,
            &abi::Service {
                seq_len: 1,
                ..Default::default()
            },
        )
        .unwrap();
        xdp.set_seq(0, &[0]).unwrap();
        let d = abi::Dest {
            addr: words(real),
            port: 53u16.to_be(),
            family: abi::AF_INET6,
            fwd: abi::FWD_TUNNEL,
            flags: abi::DEST_AVAILABLE,
            weight: 1,
            tun_type,
            tun_flags: 1, // --tun-csum
            tun_port: 6080u16.to_be(),
            ..Default::default()
        };
        xdp.set_dest(0, &d).unwrap();
        let run = xdp.test_run(&pkt, Some(LO), 1).unwrap();
        assert_eq!(run.verdict, verdict::TX);
        let o = &run.packet[14..];
        let inner_len = pkt.len() - 14;
        assert_eq!(o.len(), 40 + encap + inner_len);
        assert_eq!(
            usize::from(u16::from_be_bytes([o[4], o[5]])),
            encap + inner_len
        );
        assert_eq!(
            (o[7], &o[8..24], &o[24..40]),
            (29, &me.octets()[..], &real.octets()[..])
        );
        let body = &o[40..];
        let mut inner = pkt[14..].to_vec();
        inner[7] -= 1;
        assert_eq!(&body[encap..], &inner[..], "the inner packet, one hop less");
        if tun_type == abi::TUN_GUE {
            assert_eq!(o[6], 17);
            assert_eq!(&body[2..4], &6080u16.to_be_bytes());
            assert_eq!(&body[8..12], &[0, 41, 0, 0], "GUE: version 0, IPv6 inside");
            let pseudo = sum16(&o[8..40]) + 17 + (encap + inner_len) as u32;
            assert_eq!(fold(pseudo + sum16(body)), 0xffff, "UDP checksum");
        } else {
            assert_eq!(o[6], 47);
            assert_eq!(&body[0..2], &[0x80, 0], "GRE: checksum present");
            assert_eq!(&body[2..4], &0x86ddu16.to_be_bytes());
            assert_eq!(fold(sum16(body)), 0xffff, "GRE checksum");
        }
    }
}

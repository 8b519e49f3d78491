//! The NAT table, continued: ICMP errors about NAT flows, the ways out of the director,
//! fragments and reused tuples.

use super::pkt::*;
use super::rows::*;
use super::{key, sa, Check, Net, Row, Want};
use super::{CA_MAC, CLIENT_MAC, RB_MAC, RS_B_MAC, RS_MAC};
use rvs_bpf::abi::state::*;
use rvs_bpf::abi::Counter::*;

/// ICMP errors about NAT flows, from either side, v4 and v6.
pub fn icmp_rows(net: &Net) -> Vec<Row> {
    let (ca, rb) = (net.ca, net.rb);
    let (c, vip, rs) = (
        sa("192.0.2.2:3000"),
        sa("203.0.113.10:53"),
        sa("10.9.0.2:5353"),
    );
    // the real server's port unreachable about the UDP flow's datagram, quoted whole
    let got = Seg::udp(c, rs, 13);
    let unreach = icmp_ip(rs.ip(), c.ip(), 64, PORT_UNREACH, [0; 4], &got.ip(63));
    let unreach_out = icmp_ip(
        vip.ip(),
        c.ip(),
        63,
        PORT_UNREACH,
        [0; 4],
        &quoted_as(&got.with(c, vip), &got, 63),
    );
    let (c6, vip6, rs6) = (
        sa("[2001:db8:a::2]:3000"),
        sa("[2001:db8:f::10]:53"),
        sa("[fd00:9::2]:5300"),
    );
    let got6 = Seg::udp(c6, rs6, 33);
    let unreach6 = icmp_ip(rs6.ip(), c6.ip(), 64, (1, 4), [0; 4], &got6.ip(63));
    let unreach6_out = icmp_ip(
        vip6.ip(),
        c6.ip(),
        63,
        (1, 4),
        [0; 4],
        &quoted_as(&got6.with(c6, vip6), &got6, 63),
    );
    // the client's frag needed about a reply of the v4 TCP flow, quoted whole
    let (tc, tvip, trs) = (
        sa("192.0.2.2:40000"),
        sa("203.0.113.10:80"),
        sa("10.9.0.2:8000"),
    );
    let reply = Seg::tcp(tvip, tc, ACK, 13);
    let needed = icmp_ip(tc.ip(), tvip.ip(), 64, FRAG_NEEDED, MTU_1400, &reply.ip(63));
    let needed_out = icmp_ip(
        tc.ip(),
        trs.ip(),
        63,
        FRAG_NEEDED,
        MTU_1400,
        &quoted_as(&reply.with(trs, tc), &reply, 63),
    );
    let mut wrong = needed.clone();
    wrong[20 + 2] ^= 0x5a;
    // the v6 client's packet too big about a reply of the v6 TCP flow
    let (tc6, tvip6, trs6) = (
        sa("[2001:db8:a::2]:40000"),
        sa("[2001:db8:f::10]:80"),
        sa("[fd00:9::2]:8080"),
    );
    let reply6 = Seg::tcp(tvip6, tc6, ACK, 20);
    let big = [0, 0, 0x05, 0x00];
    let big6 = icmp_ip(tc6.ip(), tvip6.ip(), 64, (2, 0), big, &reply6.ip(63));
    let big6_out = icmp_ip(
        tc6.ip(),
        trs6.ip(),
        63,
        (2, 0),
        big,
        &quoted_as(&reply6.with(trs6, tc6), &reply6, 63),
    );
    let unreach_ttl1 = icmp_ip(rs.ip(), c.ip(), 1, PORT_UNREACH, [0; 4], &got.ip(63));
    let mut wrong6 = unreach6.clone();
    wrong6[40 + 2] ^= 0x01;
    vec![
        Row::new(
            "v4 port unreachable from the real server with TTL 1: dropped",
            rb,
            eth(RB_MAC, RS_MAC, &unreach_ttl1),
            Want::Drop,
            &[(Packets, 1), (TtlExpired, 1)],
        ),
        Row::new(
            "v6 port unreachable with a wrong checksum: dropped",
            rb,
            eth(RB_MAC, RS_MAC, &wrong6),
            Want::Drop,
            &[(Packets, 1), (BadCsum, 1)],
        ),
        Row::new(
            "v4 port unreachable from the real server: from the VIP, quoting VIP:53",
            rb,
            eth(RB_MAC, RS_MAC, &unreach),
            Want::Redirect(eth(CLIENT_MAC, CA_MAC, &unreach_out)),
            ICMP_OK,
        ),
        Row::new(
            "v6 port unreachable from the real server",
            rb,
            eth(RB_MAC, RS_MAC, &unreach6),
            Want::Redirect(eth(CLIENT_MAC, CA_MAC, &unreach6_out)),
            ICMP_OK,
        ),
        Row::new(
            "v4 frag needed from the client about a reply: to the real server",
            ca,
            eth(CA_MAC, CLIENT_MAC, &needed),
            Want::Redirect(eth(RS_MAC, RB_MAC, &needed_out)),
            ICMP_OK,
        ),
        Row::new(
            "v4 frag needed with a wrong ICMP checksum: dropped",
            ca,
            eth(CA_MAC, CLIENT_MAC, &wrong),
            Want::Drop,
            &[(Packets, 1), (BadCsum, 1)],
        ),
        Row::new(
            "v6 packet too big from the client about a reply",
            ca,
            eth(CA_MAC, CLIENT_MAC, &big6),
            Want::Redirect(eth(RS_MAC, RB_MAC, &big6_out)),
            ICMP_OK,
        ),
    ]
}

/// The ways out: unresolved next hop, no route, forwarding off, an egress the program does
/// not run on.
pub fn route_rows(net: &Net) -> Vec<Row> {
    let (ca, rb) = (net.ca, net.rb);
    let c = sa("192.0.2.2:40300");
    let s = Seg::tcp(c, sa("203.0.113.12:80"), SYN, 0);
    let (uc, uvip, urs) = (
        sa("192.0.2.2:3000"),
        sa("203.0.113.10:53"),
        sa("10.9.0.2:5353"),
    );
    let reply = Seg::udp(urs, uc, 21);
    let datagram = Seg::udp(uc, uvip, 21);
    vec![
        Row::new(
            "v4 SYN to 10.9.0.3 (no neighbour): to the kernel with the note for tc",
            ca,
            client_in(&s),
            Want::Kernel(
                rb,
                eth(CA_MAC, CLIENT_MAC, &s.with(c, sa("10.9.0.3:80")).ip(63)),
            ),
            &[(Packets, 1), (FlowNew, 1), (ViaKernel, 1)],
        ),
        Row::new(
            "v4 SYN to 198.51.100.7 (unreachable): no route",
            ca,
            client_in(&Seg::tcp(c, sa("203.0.113.13:80"), SYN, 0)),
            Want::Drop,
            &[(Packets, 1), (FlowNew, 1), (NoRoute, 1)],
        ),
        Row::new(
            "v4 reply out of ca while ca is not a tx port: through the kernel",
            rb,
            rs_in(&reply),
            Want::Kernel(ca, eth(RB_MAC, RS_MAC, &reply.with(uvip, uc).ip(63))),
            &[(Packets, 1), (NatReply, 1), (ViaKernel, 1)],
        )
        .before(|xdp, net| xdp.set_tx_port(net.ca, false).unwrap()),
        Row::new(
            "v4 UDP in while ca forwards nothing: no route",
            ca,
            client_in(&datagram),
            Want::Drop,
            &[(Packets, 1), (FlowHit, 1), (NoRoute, 1)],
        )
        .before_announced(|xdp, net| {
            xdp.set_tx_port(net.ca, true).unwrap();
            net.ns.sysctl("net.ipv4.conf.ca.forwarding=0");
        }),
        Row::new(
            "v4 UDP in, forwarding on again",
            ca,
            client_in(&datagram),
            Want::Redirect(to_rs(&datagram.with(uc, urs))),
            IN_HIT,
        )
        .before_announced(|_, net| net.ns.sysctl("net.ipv4.conf.ca.forwarding=1")),
    ]
}

/// A first and a later fragment each way, v4 and v6.
pub fn frag_rows(net: &Net) -> Vec<Row> {
    let (ca, rb) = (net.ca, net.rb);
    let (vip, rs) = (sa("203.0.113.10:53"), sa("10.9.0.2:5353"));
    let c = sa("192.0.2.2:3002");
    let d = Seg::udp(c, vip, 64);
    let (in1, in2) = frags4(&d, 64, 0x4242, 32);
    let (want1, want2) = frags4(&d.with(c, rs), 63, 0x4242, 32);
    let r = Seg::udp(rs, c, 64);
    let (rin1, rin2) = frags4(&r, 64, 0x5151, 40);
    let (rwant1, rwant2) = frags4(&r.with(vip, c), 63, 0x5151, 40);
    let c0 = sa("192.0.2.2:3003");
    let z = Seg {
        csum: false,
        ..Seg::udp(c0, vip, 64)
    };
    let (zin, _) = frags4(&z, 64, 0x4343, 32);
    let (zwant, _) = frags4(&z.with(c0, rs), 63, 0x4343, 32);
    let (vip6, rs6, c6) = (
        sa("[2001:db8:f::10]:53"),
        sa("[fd00:9::2]:5300"),
        sa("[2001:db8:a::2]:3002"),
    );
    let d6 = Seg::udp(c6, vip6, 100);
    let (in61, in62) = frags6(&d6, 64, 0xabcd_0001, 48);
    let (want61, want62) = frags6(&d6.with(c6, rs6), 63, 0xabcd_0001, 48);
    let r6 = Seg::udp(rs6, c6, 100);
    let (rin61, rin62) = frags6(&r6, 64, 0xabcd_0002, 56);
    let (rwant61, rwant62) = frags6(&r6.with(vip6, c6), 63, 0xabcd_0002, 56);
    let to_client_ip = |p: &[u8]| eth(CLIENT_MAC, CA_MAC, p);
    let to_rs_ip = |p: &[u8]| eth(RS_MAC, RB_MAC, p);
    let from_client = |p: &[u8]| eth(CA_MAC, CLIENT_MAC, p);
    let from_rs = |p: &[u8]| eth(RB_MAC, RS_MAC, p);
    let row = Row::new;
    vec![
        row(
            "v4 first UDP fragment in: a new flow",
            ca,
            from_client(&in1),
            Want::Redirect(to_rs_ip(&want1)),
            IN_NEW,
        ),
        row(
            "v4 later fragment in: its address only",
            ca,
            from_client(&in2),
            Want::Redirect(to_rs_ip(&want2)),
            FRAG_OK,
        ),
        row(
            "v4 first fragment of a reply",
            rb,
            from_rs(&rin1),
            Want::Redirect(to_client_ip(&rwant1)),
            REPLY,
        ),
        row(
            "v4 later fragment of the reply",
            rb,
            from_rs(&rin2),
            Want::Redirect(to_client_ip(&rwant2)),
            FRAG_OK,
        ),
        row(
            "v4 first fragment without checksum: left without",
            ca,
            from_client(&zin),
            Want::Redirect(to_rs_ip(&zwant)),
            IN_NEW,
        ),
        row(
            "v6 first UDP fragment in",
            ca,
            from_client(&in61),
            Want::Redirect(to_rs_ip(&want61)),
            IN_NEW,
        ),
        row(
            "v6 later fragment in",
            ca,
            from_client(&in62),
            Want::Redirect(to_rs_ip(&want62)),
            FRAG_OK,
        ),
        row(
            "v6 first fragment of a reply",
            rb,
            from_rs(&rin61),
            Want::Redirect(to_client_ip(&rwant61)),
            REPLY,
        ),
        row(
            "v6 later fragment of the reply",
            rb,
            from_rs(&rin62),
            Want::Redirect(to_client_ip(&rwant62)),
            FRAG_OK,
        ),
    ]
}

/// A closed flow's tuple taken by a new connection that goes to the other real server: the
/// old real server's reply entry goes, its replies are nobody's.
pub fn reuse_rows(net: &Net) -> Vec<Row> {
    let (ca, rb) = (net.ca, net.rb);
    let (c, vip) = (sa("192.0.2.2:40200"), sa("203.0.113.14:80"));
    let (rs7, rs8) = (sa("10.9.0.2:9000"), sa("10.9.0.4:9000"));
    let k = key(c, vip, TCP);
    let to_b = |s: &Seg| eth(RS_B_MAC, RB_MAC, &s.ip(63));
    let from_b = |s: &Seg| eth(RB_MAC, RS_B_MAC, &s.ip(64));
    let inn = |flags| Seg::tcp(c, vip, flags, 0);
    vec![
        Row::new(
            "rr SYN: 10.9.0.2:9000",
            ca,
            client_in(&inn(SYN)),
            Want::Redirect(to_rs(&inn(SYN).with(c, rs7))),
            IN_NEW,
        )
        .check(Check::Reply(key(rs7, c, TCP), 7, vip)),
        Row::new(
            "its SYN-ACK",
            rb,
            rs_in(&Seg::tcp(rs7, c, SYN | ACK, 0)),
            Want::Redirect(to_client(&Seg::tcp(vip, c, SYN | ACK, 0))),
            REPLY,
        ),
        Row::new(
            "its ACK",
            ca,
            client_in(&inn(ACK)),
            Want::Redirect(to_rs(&inn(ACK).with(c, rs7))),
            IN_HIT,
        )
        .check(Check::State(k, ESTABLISHED)),
        Row::new(
            "RST in: CLOSE",
            ca,
            client_in(&inn(RST)),
            Want::Redirect(to_rs(&inn(RST).with(c, rs7))),
            IN_HIT,
        )
        .check(Check::State(k, CLOSE)),
        Row::new(
            "SYN on the closed tuple: the next real server, 10.9.0.4",
            ca,
            client_in(&inn(SYN)),
            Want::Redirect(to_b(&inn(SYN).with(c, rs8))),
            &[(Packets, 1), (Reused, 1), (FlowNew, 1), (Redirect, 1)],
        )
        .check(Check::Absent(key(rs7, c, TCP)))
        .check(Check::Reply(key(rs8, c, TCP), 8, vip))
        .check(Check::State(k, SYN_RECV)),
        Row::new(
            "a late reply of the old real server: nobody's",
            rb,
            rs_in(&Seg::tcp(rs7, c, ACK, 0)),
            Want::Pass,
            NO_SVC,
        ),
        Row::new(
            "the new real server's SYN-ACK",
            rb,
            from_b(&Seg::tcp(rs8, c, SYN | ACK, 0)),
            Want::Redirect(to_client(&Seg::tcp(vip, c, SYN | ACK, 0))),
            REPLY,
        )
        .check(Check::State(k, SYN_RECV)),
    ]
}

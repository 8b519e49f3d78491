//! The NAT table: each row's input frame as the client or the real server sends it, and the
//! frame the other side should receive, both written from their own fields. TCP and UDP
//! here; ICMP errors, the ways out, fragments and reused tuples in `rows_more.rs`.

use std::net::{IpAddr, SocketAddr};

use super::pkt::*;
use super::rows_more as more;
use super::{key, sa, Check, Net, Row, Want};
use super::{CA_MAC, CLIENT_B_MAC, CLIENT_MAC, RB_MAC, RS_MAC};
use rvs_bpf::abi::state::*;
use rvs_bpf::abi::Counter::{self, *};

pub const IN_NEW: &[(Counter, u64)] = &[(Packets, 1), (FlowNew, 1), (Redirect, 1)];
pub const IN_HIT: &[(Counter, u64)] = &[(Packets, 1), (FlowHit, 1), (Redirect, 1)];
pub const REPLY: &[(Counter, u64)] = &[(Packets, 1), (NatReply, 1), (Redirect, 1)];
pub const ICMP_OK: &[(Counter, u64)] = &[(Packets, 1), (IcmpSteered, 1), (Redirect, 1)];
pub const FRAG_OK: &[(Counter, u64)] = &[(Packets, 1), (FragForwarded, 1), (Redirect, 1)];
pub const BAD: &[(Counter, u64)] = &[(Packets, 1), (Malformed, 1)];
pub const NO_SVC: &[(Counter, u64)] = &[(Packets, 1), (PassNoService, 1)];

/// From the client, arriving on `ca`.
pub fn client_in(s: &Seg) -> Vec<u8> {
    eth(CA_MAC, CLIENT_MAC, &s.ip(64))
}

/// From the real server, arriving on `rb`.
pub fn rs_in(s: &Seg) -> Vec<u8> {
    eth(RB_MAC, RS_MAC, &s.ip(64))
}

/// Forwarded to the real server 10.9.0.2 / fd00:9::2 out of `rb`.
pub fn to_rs(s: &Seg) -> Vec<u8> {
    eth(RS_MAC, RB_MAC, &s.ip(63))
}

/// Forwarded to the client out of `ca`.
pub fn to_client(s: &Seg) -> Vec<u8> {
    eth(CLIENT_MAC, CA_MAC, &s.ip(63))
}

/// An IP packet carrying an ICMP or ICMPv6 error (by the addresses' family).
pub fn icmp_ip(src: IpAddr, dst: IpAddr, ttl: u8, t: (u8, u8), rest: [u8; 4], q: &[u8]) -> Vec<u8> {
    if src.is_ipv4() {
        ip(src, dst, ICMP, ttl, &icmp4(t.0, t.1, rest, q))
    } else {
        ip(src, dst, ICMP6, ttl, &icmp6(src, dst, t.0, t.1, rest, q))
    }
}

/// `out` as quoted in a translated ICMP error: its addresses and ports rewritten, its IPv4
/// header checksum right, but its TCP/UDP checksum still that of `orig` (the quoted packet
/// as it was), which neither the kernel nor the program updates.
pub fn quoted_as(out: &Seg, orig: &Seg, ttl: u8) -> Vec<u8> {
    let mut l4 = out.l4();
    let at = if out.proto == TCP { 16 } else { 6 };
    l4[at..at + 2].copy_from_slice(&orig.l4()[at..at + 2]);
    ip(out.src.ip(), out.dst.ip(), out.proto, ttl, &l4)
}

pub const FRAG_NEEDED: (u8, u8) = (3, 4);
pub const PORT_UNREACH: (u8, u8) = (3, 3);
pub const MTU_1400: [u8; 4] = [0, 0, 0x05, 0x78];

/// An ICMP error from each side about a TCP flow `c` -> `vip` -> `rs`: the client's frag
/// needed about a reply (quoting it whole), the real server's port unreachable about a
/// packet of the client (quoting its first 8 bytes of TCP).
pub fn icmp_pair(c: SocketAddr, vip: SocketAddr, rs: SocketAddr) -> (Vec<u8>, Vec<u8>) {
    let reply = Seg::tcp(vip, c, ACK, 20).ip(63);
    let client = icmp_ip(c.ip(), vip.ip(), 64, FRAG_NEEDED, MTU_1400, &reply);
    let sent = Seg::tcp(c, rs, ACK, 0).ip(63);
    let server = icmp_ip(rs.ip(), c.ip(), 64, PORT_UNREACH, [0; 4], &sent[..28]);
    (
        eth(CA_MAC, CLIENT_MAC, &client),
        eth(RB_MAC, RS_MAC, &server),
    )
}

/// A checksum-free UDP datagram `s` whose checksum, computed once it goes from `src` to `dst`,
/// comes out 0 (its last two payload bytes chosen for that): sent as 0xffff.
pub fn zero_sum(s: &Seg, src: SocketAddr, dst: SocketAddr) -> Seg {
    let mut out = s.with(src, dst);
    let n = out.payload.len();
    out.payload[n - 2..].copy_from_slice(&[0, 0]);
    out.csum = false;
    let l4 = out.l4();
    let folded = !fold(sum(&l4, pseudo(src.ip(), dst.ip(), UDP, l4.len())));
    let fill = 0xffff - folded;
    out.payload[n - 2..].copy_from_slice(&fill.to_be_bytes());
    out.csum = true;
    assert_eq!(
        u16::from_be_bytes(out.l4()[6..8].try_into().unwrap()),
        0xffff
    );
    Seg {
        csum: s.csum,
        ..out.with(s.src, s.dst)
    }
}

/// IPv4 router alert option (RFC 2113).
pub const RA: [u8; 4] = [0x94, 0x04, 0, 0];

/// A frame padded to Ethernet's minimum of 60 bytes.
pub fn pad(mut f: Vec<u8>) -> Vec<u8> {
    f.resize(f.len().max(60), 0);
    f
}

pub fn cut(mut f: Vec<u8>, len: usize) -> Vec<u8> {
    f.truncate(len);
    f
}

/// An IPv4 frame with header byte `at` set to `v` and the header checksum made right again.
pub fn poke4(mut f: Vec<u8>, at: usize, v: u8) -> Vec<u8> {
    f[14 + at] = v;
    f[24..26].copy_from_slice(&[0, 0]);
    let c = csum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}

pub fn rows(net: &Net) -> Vec<Row> {
    let mut v = tcp4_rows(net);
    v.extend(tcp6_rows(net));
    v.extend(udp_rows(net));
    v.extend(more::icmp_rows(net));
    v.extend(more::route_rows(net));
    v.extend(more::frag_rows(net));
    v.extend(more::reuse_rows(net));
    v
}

/// v4 TCP: a connection through its states (IPVS's INPUT rows for the client's segments,
/// OUTPUT rows for the real server's), with the limits along the way.
fn tcp4_rows(net: &Net) -> Vec<Row> {
    let (ca, rb) = (net.ca, net.rb);
    let (c, vip, rs) = (
        sa("192.0.2.2:40000"),
        sa("203.0.113.10:80"),
        sa("10.9.0.2:8000"),
    );
    let k = key(c, vip, TCP);
    let rk = key(rs, c, TCP);
    let inn = |flags, len| {
        let s = Seg::tcp(c, vip, flags, len);
        (client_in(&s), Want::Redirect(to_rs(&s.with(c, rs))))
    };
    let out = |flags, len| {
        let s = Seg::tcp(rs, c, flags, len);
        (rs_in(&s), Want::Redirect(to_client(&s.with(vip, c))))
    };
    let row = |name, ingress, (p, w): (Vec<u8>, Want), counters, state| {
        Row::new(name, ingress, p, w, counters).check(Check::State(k, state))
    };
    let big = |len| client_in(&Seg::tcp(c, vip, ACK, len));
    vec![
        row(
            "v4 SYN in: 80 -> 10.9.0.2:8000, redirected out of rb",
            ca,
            inn(SYN, 0),
            IN_NEW,
            SYN_RECV,
        )
        .check(Check::Reply(rk, 0, vip)),
        row(
            "v4 SYN-ACK out: from VIP:80 to the client",
            rb,
            out(SYN | ACK, 0),
            REPLY,
            SYN_RECV,
        ),
        row(
            "v4 ACK in: established",
            ca,
            inn(ACK, 0),
            IN_HIT,
            ESTABLISHED,
        ),
        row(
            "v4 data in (13 bytes)",
            ca,
            inn(ACK | PSH, 13),
            IN_HIT,
            ESTABLISHED,
        ),
        row(
            "v4 data out (301 bytes)",
            rb,
            out(ACK | PSH, 301),
            REPLY,
            ESTABLISHED,
        ),
        Row::new(
            "v4 in with TTL 1: dropped",
            ca,
            poke4(inn(ACK, 0).0, 8, 1),
            Want::Drop,
            &[(Packets, 1), (FlowHit, 1), (TtlExpired, 1)],
        ),
        Row::new(
            "v4 reply with TTL 1: dropped",
            rb,
            poke4(out(ACK, 0).0, 8, 1),
            Want::Drop,
            &[(Packets, 1), (TtlExpired, 1)],
        ),
        Row::new(
            "v4 in, 1450 bytes toward rb (MTU 1400): too big",
            ca,
            big(1410),
            Want::Drop,
            &[(Packets, 1), (FlowHit, 1), (TooBig, 1)],
        ),
        row(
            "v4 in, 1400 bytes: fits rb's MTU",
            ca,
            inn(ACK, 1360),
            IN_HIT,
            ESTABLISHED,
        ),
        Row::new(
            "v4 reply cut inside the TCP header",
            rb,
            cut(poke4(out(ACK, 0).0, 3, 30), 44),
            Want::Pass,
            BAD,
        ),
        Row::new(
            "v4 reply, IP length beyond the frame",
            rb,
            poke4(out(ACK, 8).0, 3, 60),
            Want::Pass,
            BAD,
        ),
        Row::new(
            "v4 reply, IHL 4",
            rb,
            poke4(out(ACK, 0).0, 0, 0x44),
            Want::Pass,
            BAD,
        ),
        Row::new(
            "v4 reply of no flow: the kernel's, untouched",
            rb,
            rs_in(&Seg::tcp(rs, sa("192.0.2.2:49999"), ACK, 0)),
            Want::Pass,
            NO_SVC,
        ),
        Row::new(
            "v4 in with IP options (router alert)",
            ca,
            eth(
                CA_MAC,
                CLIENT_MAC,
                &with_options(&Seg::tcp(c, vip, ACK, 5).ip(64), &RA),
            ),
            Want::Redirect(eth(
                RS_MAC,
                RB_MAC,
                &with_options(&Seg::tcp(c, rs, ACK, 5).ip(63), &RA),
            )),
            IN_HIT,
        ),
        Row::new(
            "v4 reply with IP options",
            rb,
            eth(
                RB_MAC,
                RS_MAC,
                &with_options(&Seg::tcp(rs, c, ACK, 6).ip(64), &RA),
            ),
            Want::Redirect(eth(
                CLIENT_MAC,
                CA_MAC,
                &with_options(&Seg::tcp(vip, c, ACK, 6).ip(63), &RA),
            )),
            REPLY,
        ),
        Row::new(
            "v4 reply in a padded 60-byte frame: the padding kept",
            rb,
            pad(rs_in(&Seg::tcp(rs, c, ACK, 0))),
            Want::Redirect(pad(to_client(&Seg::tcp(vip, c, ACK, 0)))),
            REPLY,
        ),
        row(
            "v4 FIN in: CLOSE_WAIT",
            ca,
            inn(FIN | ACK, 0),
            IN_HIT,
            CLOSE_WAIT,
        ),
        row(
            "v4 ACK out: still CLOSE_WAIT",
            rb,
            out(ACK, 0),
            REPLY,
            CLOSE_WAIT,
        ),
        row(
            "v4 FIN out: TIME_WAIT",
            rb,
            out(FIN | ACK, 0),
            REPLY,
            TIME_WAIT,
        ),
        row(
            "v4 last ACK in: TIME_WAIT",
            ca,
            inn(ACK, 0),
            IN_HIT,
            TIME_WAIT,
        ),
        Row::new(
            "v4 SYN on the TIME_WAIT tuple: a new flow, same real server",
            ca,
            inn(SYN, 0).0,
            inn(SYN, 0).1,
            &[(Packets, 1), (Reused, 1), (FlowNew, 1), (Redirect, 1)],
        )
        .check(Check::State(k, SYN_RECV))
        .check(Check::Reply(rk, 0, vip)),
        row(
            "v4 RST out: CLOSE (OUTPUT rst)",
            rb,
            out(RST | ACK, 0),
            REPLY,
            CLOSE,
        ),
        // a flow whose main entry went away: its replies are the kernel's
        Row::new(
            "v4 SYN in, another client port",
            ca,
            client_in(&Seg::tcp(sa("192.0.2.2:40100"), vip, SYN, 0)),
            Want::Redirect(to_rs(&Seg::tcp(sa("192.0.2.2:40100"), rs, SYN, 0))),
            IN_NEW,
        ),
        Row::new(
            "v4 reply whose flow was deleted: stale, untouched",
            rb,
            rs_in(&Seg::tcp(rs, sa("192.0.2.2:40100"), SYN | ACK, 0)),
            Want::Pass,
            &[(Packets, 1), (StaleReply, 1)],
        )
        .before(move |xdp, _| {
            xdp.delete_flow(&key(sa("192.0.2.2:40100"), vip, TCP))
                .unwrap()
        }),
        Row::new(
            "ICMP from the real server about the deleted flow: stale, untouched",
            rb,
            icmp_pair(sa("192.0.2.2:40100"), vip, rs).1,
            Want::Pass,
            &[(Packets, 1), (StaleReply, 1)],
        ),
        // a client on the real servers' side: in and out of the same interface
        Row::new(
            "v4 SYN from rb's side to rb's side: XDP_TX",
            rb,
            eth(
                RB_MAC,
                CLIENT_B_MAC,
                &Seg::tcp(sa("10.9.0.9:41000"), vip, SYN, 0).ip(64),
            ),
            Want::Tx(to_rs(&Seg::tcp(sa("10.9.0.9:41000"), rs, SYN, 0))),
            &[(Packets, 1), (FlowNew, 1), (Tx, 1)],
        ),
        Row::new(
            "its SYN-ACK: XDP_TX",
            rb,
            rs_in(&Seg::tcp(rs, sa("10.9.0.9:41000"), SYN | ACK, 0)),
            Want::Tx(eth(
                CLIENT_B_MAC,
                RB_MAC,
                &Seg::tcp(vip, sa("10.9.0.9:41000"), SYN | ACK, 0).ip(63),
            )),
            &[(Packets, 1), (NatReply, 1), (Tx, 1)],
        ),
    ]
}

/// v6 TCP both ways.
fn tcp6_rows(net: &Net) -> Vec<Row> {
    let (ca, rb) = (net.ca, net.rb);
    let (c, vip, rs) = (
        sa("[2001:db8:a::2]:40000"),
        sa("[2001:db8:f::10]:80"),
        sa("[fd00:9::2]:8080"),
    );
    let k = key(c, vip, TCP);
    let inn = |flags, len| {
        let s = Seg::tcp(c, vip, flags, len);
        (client_in(&s), Want::Redirect(to_rs(&s.with(c, rs))))
    };
    let out = |flags, len| {
        let s = Seg::tcp(rs, c, flags, len);
        (rs_in(&s), Want::Redirect(to_client(&s.with(vip, c))))
    };
    let row = |name, ingress, (p, w): (Vec<u8>, Want), counters, state| {
        Row::new(name, ingress, p, w, counters).check(Check::State(k, state))
    };
    let mut hop1 = out(ACK, 0).0;
    hop1[14 + 7] = 1;
    vec![
        row(
            "v6 SYN in: 80 -> [fd00:9::2]:8080",
            ca,
            inn(SYN, 0),
            IN_NEW,
            SYN_RECV,
        )
        .check(Check::Reply(key(rs, c, TCP), 2, vip)),
        row("v6 SYN-ACK out", rb, out(SYN | ACK, 0), REPLY, SYN_RECV),
        row("v6 ACK in", ca, inn(ACK, 0), IN_HIT, ESTABLISHED),
        row(
            "v6 data in (77 bytes)",
            ca,
            inn(ACK | PSH, 77),
            IN_HIT,
            ESTABLISHED,
        ),
        row(
            "v6 data out (1111 bytes)",
            rb,
            out(ACK | PSH, 1111),
            REPLY,
            ESTABLISHED,
        ),
        Row::new(
            "v6 reply with hop limit 1: dropped",
            rb,
            hop1,
            Want::Drop,
            &[(Packets, 1), (TtlExpired, 1)],
        ),
        Row::new(
            "v6 in, 1450 bytes toward rb: too big",
            ca,
            client_in(&Seg::tcp(c, vip, ACK, 1390)),
            Want::Drop,
            &[(Packets, 1), (FlowHit, 1), (TooBig, 1)],
        ),
        row(
            "v6 server FIN out: FIN_WAIT",
            rb,
            out(FIN | ACK, 0),
            REPLY,
            FIN_WAIT,
        ),
        row(
            "v6 client ACK in: FIN_WAIT",
            ca,
            inn(ACK, 0),
            IN_HIT,
            FIN_WAIT,
        ),
        row(
            "v6 client FIN in: TIME_WAIT",
            ca,
            inn(FIN | ACK, 0),
            IN_HIT,
            TIME_WAIT,
        ),
    ]
}

/// UDP both ways, v4 and v6; v4 checksums absent (computed) and coming out 0 (sent as
/// 0xffff); a real server of port 0 (TCP) keeps the port.
fn udp_rows(net: &Net) -> Vec<Row> {
    let (ca, rb) = (net.ca, net.rb);
    let (c, vip, rs) = (
        sa("192.0.2.2:3000"),
        sa("203.0.113.10:53"),
        sa("10.9.0.2:5353"),
    );
    let no_sum = |s: Seg| Seg { csum: false, ..s };
    let d_in = Seg::udp(c, vip, 1001);
    let d_out = Seg::udp(rs, c, 600);
    let z = zero_sum(&no_sum(Seg::udp(c, vip, 40)), c, rs);
    let zc = zero_sum(&Seg::udp(c, vip, 42), c, rs);
    let (c6, vip6, rs6) = (
        sa("[2001:db8:a::2]:3000"),
        sa("[2001:db8:f::10]:53"),
        sa("[fd00:9::2]:5300"),
    );
    let (c0, vip0, rs0) = (
        sa("192.0.2.2:40400"),
        sa("203.0.113.11:4444"),
        sa("10.9.0.2:4444"),
    );
    let in6 = Seg::udp(c6, vip6, 33);
    let out6 = Seg::udp(rs6, c6, 45);
    let rk = key(rs, c, UDP);
    vec![
        Row::new(
            "v4 UDP in (13 bytes): 53 -> 5353",
            ca,
            client_in(&Seg::udp(c, vip, 13)),
            Want::Redirect(to_rs(&Seg::udp(c, rs, 13))),
            IN_NEW,
        )
        .check(Check::Reply(rk, 1, vip)),
        Row::new(
            "v4 UDP reply (57 bytes)",
            rb,
            rs_in(&Seg::udp(rs, c, 57)),
            Want::Redirect(to_client(&Seg::udp(vip, c, 57))),
            REPLY,
        ),
        Row::new(
            "v4 UDP in without checksum (1001 bytes): one computed",
            ca,
            client_in(&no_sum(d_in.clone())),
            Want::Redirect(to_rs(&d_in.with(c, rs))),
            IN_HIT,
        ),
        Row::new(
            "v4 UDP reply without checksum (600 bytes): one computed",
            rb,
            rs_in(&no_sum(d_out.clone())),
            Want::Redirect(to_client(&d_out.with(vip, c))),
            REPLY,
        ),
        Row::new(
            "v4 UDP in without checksum, computed 0: sent as 0xffff",
            ca,
            client_in(&z),
            Want::Redirect(to_rs(&Seg {
                csum: true,
                ..z.with(c, rs)
            })),
            IN_HIT,
        ),
        Row::new(
            "v4 UDP in whose updated checksum is 0: sent as 0xffff",
            ca,
            client_in(&zc),
            Want::Redirect(to_rs(&zc.with(c, rs))),
            IN_HIT,
        ),
        Row::new(
            "v6 UDP in: 53 -> 5300",
            ca,
            client_in(&in6),
            Want::Redirect(to_rs(&in6.with(c6, rs6))),
            IN_NEW,
        )
        .check(Check::Reply(key(rs6, c6, UDP), 3, vip6)),
        Row::new(
            "v6 UDP reply",
            rb,
            rs_in(&out6),
            Want::Redirect(to_client(&out6.with(vip6, c6))),
            REPLY,
        ),
        Row::new(
            "v4 SYN to a port-0 real server: the port kept",
            ca,
            client_in(&Seg::tcp(c0, vip0, SYN, 0)),
            Want::Redirect(to_rs(&Seg::tcp(c0, rs0, SYN, 0))),
            IN_NEW,
        )
        .check(Check::Reply(key(rs0, c0, TCP), 4, vip0)),
        Row::new(
            "its SYN-ACK: from 203.0.113.11:4444",
            rb,
            rs_in(&Seg::tcp(rs0, c0, SYN | ACK, 0)),
            Want::Redirect(to_client(&Seg::tcp(vip0, c0, SYN | ACK, 0))),
            REPLY,
        ),
    ]
}

//! NAT (`-m`) in the XDP program, packet by packet through `BPF_PROG_TEST_RUN`, in a network
//! namespace of the test's own: a client side (`ca`) and a real-server side (`rb`, MTU 1400)
//! with permanent neighbours, so the program's FIB lookups find real routes, next hops and
//! MTUs. A table of rows, run in order against one set of maps: input frame and interface,
//! expected verdict, expected output frame (built by the test from its own fields, checksums
//! from scratch: see `nat/pkt.rs`), every counter's change, and what the flow map should then
//! hold (TCP states by IPVS's INPUT and OUTPUT rows, reply entries).
//!
//! Needs root (BPF programs, network namespaces).

#[path = "nat/netns.rs"]
mod netns;
#[path = "nat/pkt.rs"]
mod pkt;
#[path = "nat/rows.rs"]
mod rows;
#[path = "nat/rows_more.rs"]
mod rows_more;

use std::net::{IpAddr, SocketAddr};

use netns::Netns;
use pkt::{bad_checksums, eth, Seg, ACK, FIN, PSH, SYN, TCP, UDP};
use rvs_bpf::abi::{self, Counter};
use rvs_bpf::{verdict, NextHops, Xdp};

/// The director's interfaces.
pub const CA_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xca, 0x01];
pub const RB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0b, 0x01];
/// The client (192.0.2.2, 2001:db8:a::2) on `ca`, a client on the real servers' side
/// (10.9.0.9) and the real servers (10.9.0.2 / fd00:9::2, 10.9.0.4) on `rb`.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xc1, 0x02];
pub const CLIENT_B_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xc1, 0x09];
pub const RS_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xd2, 0x02];
pub const RS_B_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xd2, 0x04];

/// `RVS_META_MAGIC`
const META_MAGIC: u32 = 0x5256_5331;

fn mac(m: [u8; 6]) -> String {
    m.map(|b| format!("{b:02x}")).join(":")
}

pub fn sa(s: &str) -> SocketAddr {
    s.parse().expect("a socket address")
}

/// The namespace and the indexes of its two interfaces.
pub struct Net {
    pub ns: Netns,
    pub ca: u32,
    pub rb: u32,
}

/// Builds the namespace's interfaces, addresses, neighbours and routes, and enters it.
fn topology(tag: &str) -> Net {
    let mut ns = Netns::new(tag);
    let setup = [
        "link set lo up".to_string(),
        "link add ca type veth peer name ca-p".into(),
        "link add rb type veth peer name rb-p".into(),
        format!("link set ca address {}", mac(CA_MAC)),
        format!("link set rb address {} mtu 1400", mac(RB_MAC)),
        "addr add 192.0.2.1/24 dev ca".into(),
        "addr add 2001:db8:a::1/64 dev ca nodad".into(),
        "addr add 10.9.0.1/24 dev rb".into(),
        "addr add fd00:9::1/64 dev rb nodad".into(),
        "link set ca up".into(),
        "link set ca-p up".into(),
        "link set rb up".into(),
        "link set rb-p up".into(),
        format!(
            "neigh add 192.0.2.2 lladdr {} dev ca nud permanent",
            mac(CLIENT_MAC)
        ),
        format!(
            "neigh add 2001:db8:a::2 lladdr {} dev ca nud permanent",
            mac(CLIENT_MAC)
        ),
        format!(
            "neigh add 10.9.0.2 lladdr {} dev rb nud permanent",
            mac(RS_MAC)
        ),
        format!(
            "neigh add fd00:9::2 lladdr {} dev rb nud permanent",
            mac(RS_MAC)
        ),
        format!(
            "neigh add 10.9.0.4 lladdr {} dev rb nud permanent",
            mac(RS_B_MAC)
        ),
        format!(
            "neigh add 10.9.0.9 lladdr {} dev rb nud permanent",
            mac(CLIENT_B_MAC)
        ),
        // 10.9.0.3 and fd00:9::3: on rb's subnet, no neighbour entry
        "route add unreachable 198.51.100.0/24".into(),
    ];
    for cmd in &setup {
        ns.ip(cmd);
    }
    ns.sysctl("net.ipv4.ip_forward=1");
    ns.sysctl("net.ipv6.conf.all.forwarding=1");
    let (ca, rb) = (ns.ifindex("ca"), ns.ifindex("rb"));
    ns.enter();
    Net { ns, ca, rb }
}

/// An address as the maps hold it (network order, IPv4 in the first word).
pub fn words(a: IpAddr) -> [u32; 4] {
    match a {
        IpAddr::V4(a) => [u32::from_ne_bytes(a.octets()), 0, 0, 0],
        IpAddr::V6(a) => {
            let o = a.octets();
            std::array::from_fn(|i| {
                u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
            })
        }
    }
}

fn family(a: IpAddr) -> u8 {
    if a.is_ipv4() {
        abi::AF_INET
    } else {
        abi::AF_INET6
    }
}

/// The flow key of a packet from `src` to `dst`.
pub fn key(src: SocketAddr, dst: SocketAddr, proto: u8) -> abi::FlowKey {
    abi::FlowKey {
        caddr: words(src.ip()),
        vaddr: words(dst.ip()),
        cport: src.port().to_be(),
        vport: dst.port().to_be(),
        proto,
        family: family(src.ip()),
        pad: 0,
    }
}

/// Virtual services (`proto`, VIP:port) and their NAT real servers, in dest-index order; the
/// last service takes turns over two.
pub const SERVICES: [(u8, &str, &[&str]); 8] = [
    (TCP, "203.0.113.10:80", &["10.9.0.2:8000"]),
    (UDP, "203.0.113.10:53", &["10.9.0.2:5353"]),
    (TCP, "[2001:db8:f::10]:80", &["[fd00:9::2]:8080"]),
    (UDP, "[2001:db8:f::10]:53", &["[fd00:9::2]:5300"]),
    // every port of 203.0.113.11, to a real server of port 0 (keeps the packet's port)
    (TCP, "203.0.113.11:0", &["10.9.0.2:0"]),
    // a real server whose next hop is not resolved
    (TCP, "203.0.113.12:80", &["10.9.0.3:80"]),
    // a real server in an unreachable network
    (TCP, "203.0.113.13:80", &["198.51.100.7:80"]),
    (TCP, "203.0.113.14:80", &["10.9.0.2:9000", "10.9.0.4:9000"]),
];

fn setup(xdp: &mut Xdp, net: &Net) {
    for (ifindex, mac) in [(net.ca, CA_MAC), (net.rb, RB_MAC)] {
        let iface = abi::Iface {
            mac,
            ..Default::default()
        };
        xdp.set_iface_full(ifindex, &iface).unwrap();
        xdp.set_tx_port(ifindex, true).unwrap();
    }
    let mut dest = 0u32;
    for (id, (proto, vip, rss)) in SERVICES.iter().enumerate() {
        let vip = sa(vip);
        let svc = abi::Service {
            id: id as u32,
            seq_off: dest,
            seq_len: rss.len() as u32,
            ..Default::default()
        };
        let v = abi::Vip {
            addr: words(vip.ip()),
            port: vip.port().to_be(),
            proto: *proto,
            family: family(vip.ip()),
        };
        xdp.set_service(&v, &svc).unwrap();
        let seq: Vec<u32> = (dest..dest + rss.len() as u32).collect();
        xdp.set_seq(dest, &seq).unwrap();
        for rs in rss.iter() {
            let rs = sa(rs);
            let d = abi::Dest {
                addr: words(rs.ip()),
                port: rs.port().to_be(),
                family: family(rs.ip()),
                fwd: abi::FWD_MASQ,
                flags: abi::DEST_AVAILABLE,
                svc: id as u32,
                weight: 1,
                ..Default::default()
            };
            xdp.set_dest(dest, &d).unwrap();
            dest += 1;
        }
    }
}

/// What a row expects.
pub enum Want {
    /// XDP_PASS, the frame untouched
    Pass,
    /// XDP_DROP
    Drop,
    /// XDP_TX with this frame
    Tx(Vec<u8>),
    /// XDP_REDIRECT with this frame
    Redirect(Vec<u8>),
    /// XDP_PASS with this frame behind the program's note to tc: send it out of `ifindex`
    Kernel(u32, Vec<u8>),
}

/// What the flow map should hold after a row.
pub enum Check {
    /// the flow of this key is in this TCP state
    State(abi::FlowKey, u8),
    /// a reply entry of this key leads to dest `dest` and this virtual address and port
    Reply(abi::FlowKey, u32, SocketAddr),
    /// no entry of this key
    Absent(abi::FlowKey),
}

/// Something to do before a row's packet (on the maps or the namespace).
pub type Action = Box<dyn Fn(&mut Xdp, &Net)>;

pub struct Row {
    pub name: &'static str,
    pub ingress: u32,
    pub packet: Vec<u8>,
    pub want: Want,
    pub counters: &'static [(Counter, u64)],
    pub before: Option<Action>,
    /// `before` changes the namespace (the kernel announces it: kept next hops go stale)
    pub announced: bool,
    pub checks: Vec<Check>,
}

impl Row {
    pub fn new(
        name: &'static str,
        ingress: u32,
        packet: Vec<u8>,
        want: Want,
        counters: &'static [(Counter, u64)],
    ) -> Row {
        Row {
            name,
            ingress,
            packet,
            want,
            counters,
            before: None,
            announced: false,
            checks: Vec::new(),
        }
    }

    pub fn check(mut self, c: Check) -> Row {
        self.checks.push(c);
        self
    }

    pub fn before(mut self, f: impl Fn(&mut Xdp, &Net) + 'static) -> Row {
        self.before = Some(Box::new(f));
        self
    }

    /// Like `before`, for a change of the namespace (routes, neighbours, settings), which
    /// the kernel announces.
    pub fn before_announced(mut self, f: impl Fn(&mut Xdp, &Net) + 'static) -> Row {
        self.announced = true;
        self.before(f)
    }
}

/// Which bytes of two frames differ (the first few), and the bytes of each from the first.
fn differ(got: &[u8], want: &[u8]) -> String {
    let at: Vec<usize> = (0..got.len().max(want.len()))
        .filter(|&i| got.get(i) != want.get(i))
        .collect();
    let first = at.first().copied().unwrap_or(0);
    let hex = |f: &[u8]| {
        f.iter()
            .skip(first)
            .take(12)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    format!(
        "output differs at bytes {:?}{} (lengths {} / {}): got {}… want {}…",
        &at[..at.len().min(8)],
        if at.len() > 8 { " and more" } else { "" },
        got.len(),
        want.len(),
        hex(got),
        hex(want)
    )
}

fn check_flows(xdp: &mut Xdp, checks: &[Check]) -> Vec<String> {
    let mut bad = Vec::new();
    for c in checks {
        match c {
            Check::State(k, s) => match xdp.flow(k).unwrap() {
                Some(f) if f.state == *s && f.flags & abi::FLOW_REPLY == 0 => {}
                f => bad.push(format!("flow state: {:?}, want {s}", f.map(|f| f.state))),
            },
            Check::Reply(k, dest, vip) => match xdp.flow(k).unwrap() {
                Some(f)
                    if f.flags & abi::FLOW_REPLY != 0
                        && f.dest == *dest
                        && f.vaddr == words(vip.ip())
                        && f.vport == vip.port().to_be() => {}
                f => bad.push(format!("reply entry {f:?}, want dest {dest} vip {vip}")),
            },
            Check::Absent(k) => {
                if xdp.flows().unwrap().iter().any(|(fk, _)| fk == k) {
                    bad.push(format!("entry {k:?} still there"));
                }
            }
        }
    }
    bad
}

/// Runs one row; what went wrong, if anything. With `kept` (next hops kept between
/// packets), a row's change to the namespace is followed by what rvsd's routing watcher does
/// on the kernel's announcement (the kept next hops go stale; a change of the program's maps
/// is not announced), and the count of packets sent by a kept next hop is not compared (it
/// depends on which CPU ran the row before).
fn run_row(xdp: &mut Xdp, net: &Net, r: &Row, mut kept: Option<&mut NextHops>) -> Vec<String> {
    if let Some(f) = &r.before {
        f(xdp, net);
        if let (true, Some(k)) = (r.announced, kept.as_deref_mut()) {
            k.invalidate().unwrap();
        }
    }
    let before = xdp.counters().unwrap();
    let run = xdp.test_run(&r.packet, Some(r.ingress), 1).unwrap();
    let after = xdp.counters().unwrap();
    let mut bad = Vec::new();
    // verdict, and the output: metadata (tc's note) and frame
    let (v, out) = match &r.want {
        Want::Pass => (verdict::PASS, Some((Vec::new(), r.packet.clone()))),
        Want::Drop => (verdict::DROP, None),
        Want::Tx(f) => (verdict::TX, Some((Vec::new(), f.clone()))),
        Want::Redirect(f) => (verdict::REDIRECT, Some((Vec::new(), f.clone()))),
        Want::Kernel(ifindex, f) => {
            let mut m = META_MAGIC.to_ne_bytes().to_vec();
            m.extend(ifindex.to_ne_bytes());
            (verdict::PASS, Some((m, f.clone())))
        }
    };
    if run.verdict != v {
        bad.push(format!("verdict {} want {v}", run.verdict));
    } else if let Some((meta, frame)) = out {
        let want = [meta.as_slice(), &frame].concat();
        if run.packet != want {
            bad.push(differ(&run.packet, &want));
            let got = run.packet.get(meta.len()..).unwrap_or_default();
            for what in bad_checksums(got) {
                bad.push(format!("the output's {what} checksum does not verify"));
            }
        }
    }
    for c in Counter::ALL {
        if kept.is_some() && c == Counter::NextHopKept {
            continue;
        }
        let got = after[c as usize] - before[c as usize];
        let want = r
            .counters
            .iter()
            .find(|(k, _)| *k == c)
            .map_or(0, |(_, v)| *v);
        if got != want {
            bad.push(format!("counter {c:?} +{got}, want +{want}"));
        }
    }
    bad.extend(check_flows(xdp, &r.checks));
    bad
}

fn load(net: &Net) -> Xdp {
    let mut xdp = Xdp::load().expect("loading the XDP program (needs root)");
    setup(&mut xdp, net);
    xdp
}

#[test]
fn every_nat_row_gives_its_verdict_frame_counts_and_flows() {
    run_table("rows", false);
}

/// The same table with next hops kept between packets: every row gives the same verdict,
/// frame, counts and flows, and kept next hops did send packets.
#[test]
fn every_nat_row_holds_with_next_hops_kept() {
    run_table("kept", true);
}

fn run_table(tag: &str, keep: bool) {
    let net = topology(tag);
    let mut xdp = load(&net);
    let mut kept = keep.then(|| xdp.take_next_hops().unwrap());
    if let Some(k) = kept.as_mut() {
        k.set_enabled(true).unwrap();
    }
    let rows = rows::rows(&net);
    let mut failures = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        // the table's own frames must be right before the program's are judged by them: a
        // packet the program sends on, and what it should send, have valid checksums
        if let Want::Tx(f) | Want::Redirect(f) | Want::Kernel(_, f) = &r.want {
            for (what, frame) in [("input", &r.packet), ("expected output", f)] {
                let bad = bad_checksums(frame);
                assert!(bad.is_empty(), "row {i} ({}): {what} {bad:?}", r.name);
            }
        }
        for e in run_row(&mut xdp, &net, r, kept.as_mut()) {
            failures.push(format!("row {i} ({}): {e}", r.name));
        }
    }
    assert!(rows.len() >= 60, "{} rows", rows.len());
    if keep {
        let sent = xdp.counters().unwrap()[Counter::NextHopKept as usize];
        assert!(sent >= 20, "{sent} packets sent by kept next hops");
    }
    assert!(
        failures.is_empty(),
        "{} failures in {} rows:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

/// A short exchange, its events (kind, direction, state) and its real server's counters:
/// packets and IP bytes toward it, and (OutPkts / OutBytes) of its replies, ICMP errors
/// about the flow counted on the side they came from.
#[test]
fn a_nat_exchange_reports_both_directions_and_counts_replies() {
    let net = topology("events");
    let mut xdp = load(&net);
    let mut events = xdp.take_events().unwrap();
    let (c, vip, rs) = (
        sa("192.0.2.2:45000"),
        sa("203.0.113.10:80"),
        sa("10.9.0.2:8000"),
    );
    // (from the client?, flags, payload bytes)
    let exchange = [
        (true, SYN, 0),
        (false, SYN | ACK, 0),
        (true, ACK, 0),
        (true, ACK | PSH, 100),
        (false, ACK | PSH, 1000),
        (false, FIN | ACK, 0),
        (true, ACK, 0),
        (true, FIN | ACK, 0),
        (false, ACK, 0),
    ];
    let (mut inn, mut out) = ((0u64, 0u64), (0u64, 0u64));
    for (from_client, flags, len) in exchange {
        let (frame, ingress, seg) = if from_client {
            let s = Seg::tcp(c, vip, flags, len);
            (eth(CA_MAC, CLIENT_MAC, &s.ip(64)), net.ca, s)
        } else {
            let s = Seg::tcp(rs, c, flags, len);
            (eth(RB_MAC, RS_MAC, &s.ip(64)), net.rb, s)
        };
        let run = xdp.test_run(&frame, Some(ingress), 1).unwrap();
        assert_eq!(run.verdict, verdict::REDIRECT, "{flags:#x}");
        let n = seg.ip(64).len() as u64;
        let side = if from_client { &mut inn } else { &mut out };
        *side = (side.0 + 1, side.1 + n);
    }
    // an ICMP error from each side about the flow
    let (icmp_in, icmp_out) = rows::icmp_pair(c, vip, rs);
    for (frame, ingress, side) in [(icmp_in, net.ca, &mut inn), (icmp_out, net.rb, &mut out)] {
        let run = xdp.test_run(&frame, Some(ingress), 1).unwrap();
        assert_eq!(run.verdict, verdict::REDIRECT);
        *side = (side.0 + 1, side.1 + frame.len() as u64 - 14);
    }
    let st = xdp.dest_stats(0).unwrap();
    assert_eq!(
        (st.conns, st.packets, st.bytes, st.out_packets, st.out_bytes),
        (1, inn.0, inn.1, out.0, out.1)
    );
    let mut got = Vec::new();
    while let Some(ev) = events.read() {
        got.push(ev);
    }
    use abi::{dir, event, state};
    let seen: Vec<(u8, u8, u8, u8)> = got
        .iter()
        .map(|e| (e.kind, e.dir, e.tcp_flags, e.state))
        .collect();
    assert_eq!(
        seen,
        [
            (event::NEW, dir::INPUT, SYN, state::SYN_RECV),
            // the SYN-ACK leaves SYN_RECV as it is (OUTPUT syn)
            (event::STATE, dir::INPUT, ACK, state::ESTABLISHED),
            (event::STATE, dir::OUTPUT, FIN | ACK, state::FIN_WAIT),
            (event::STATE, dir::INPUT, FIN | ACK, state::TIME_WAIT),
        ]
    );
    let k = key(c, vip, TCP);
    assert!(got.iter().all(|e| e.key == k && e.dest == 0), "{got:?}");
    assert_eq!(got[2].len as usize, Seg::tcp(rs, c, 0, 0).ip(64).len());
    let f = xdp.flow(&k).unwrap().expect("the flow");
    assert_eq!(
        (f.packets, f.state),
        (exchange.len() as u64, state::TIME_WAIT)
    );
}

/// Keeps the test's thread on one CPU (the first it may run on): the program's per-CPU next
/// hops are then the ones it reads and writes. Returns that CPU.
fn pin_to_one_cpu() -> usize {
    // SAFETY: cpu_set_t is a plain bit set; sched_getaffinity writes and sched_setaffinity
    // reads `size_of::<cpu_set_t>()` bytes of it; CPU_ISSET / CPU_ZERO / CPU_SET stay within
    // it.
    unsafe {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, size, &mut set),
            0,
            "sched_getaffinity"
        );
        let cpu = (0..libc::CPU_SETSIZE as usize)
            .find(|&c| libc::CPU_ISSET(c, &set))
            .expect("a CPU to run on");
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, size, &set),
            0,
            "sched_setaffinity"
        );
        cpu
    }
}

/// Next hops kept between packets, each way: the first packet asks the FIB and keeps its
/// answer (way out, Ethernet address, MTU), the next ones use it without asking; the kept
/// answer holds until the generation moves on (a neighbour that changed is not seen before,
/// and is after), a real server written again forgets it, a packet longer than the kept MTU
/// is too big, and with keeping off every packet asks.
#[test]
fn kept_next_hops_follow_the_kernel() {
    let cpu = pin_to_one_cpu();
    let net = topology("keep");
    let mut xdp = load(&net);
    let mut hops = xdp.take_next_hops().unwrap();
    hops.set_enabled(true).unwrap();
    let (c, vip, rs) = (
        sa("192.0.2.2:46000"),
        sa("203.0.113.10:80"),
        sa("10.9.0.2:8000"),
    );
    let seg = |flags, len| Seg::tcp(c, vip, flags, len);
    let send = |xdp: &mut Xdp, s: &Seg| {
        let before = xdp.counters().unwrap()[Counter::NextHopKept as usize];
        let run = xdp
            .test_run(&eth(CA_MAC, CLIENT_MAC, &s.ip(64)), Some(net.ca), 1)
            .unwrap();
        let kept = xdp.counters().unwrap()[Counter::NextHopKept as usize] - before;
        (run, kept)
    };
    let to_rs = |s: &Seg, mac| eth(mac, RB_MAC, &s.with(c, rs).ip(63));

    // the first packet asks and keeps: out of rb, to the real server's address, MTU 1400
    let (run, kept) = send(&mut xdp, &seg(SYN, 0));
    assert_eq!((run.verdict, kept), (verdict::REDIRECT, 0));
    assert_eq!(run.packet, to_rs(&seg(SYN, 0), RS_MAC));
    let want = abi::NextHop {
        gen: hops.generation(),
        iif: net.ca as u16,
        oif: net.rb as u16,
        dmac: RS_MAC,
        smac: RB_MAC,
        mtu: 1400,
        pad: 0,
        tag: 0,
    };
    assert_eq!(xdp.kept_next_hop(0, cpu).unwrap(), want);
    // the next one uses it, with the same frame
    let (run, kept) = send(&mut xdp, &seg(ACK, 10));
    assert_eq!((run.verdict, kept), (verdict::REDIRECT, 1));
    assert_eq!(run.packet, to_rs(&seg(ACK, 10), RS_MAC));

    // the real server moves to another Ethernet address: unseen until the generation moves
    let moved = [0x02, 0, 0, 0, 0xd2, 0x99];
    net.ns.ip(&format!(
        "neigh replace 10.9.0.2 lladdr {} dev rb nud permanent",
        mac(moved)
    ));
    let (run, kept) = send(&mut xdp, &seg(ACK, 20));
    assert_eq!((kept, run.packet), (1, to_rs(&seg(ACK, 20), RS_MAC)));
    hops.invalidate().unwrap();
    let (run, kept) = send(&mut xdp, &seg(ACK, 30));
    assert_eq!((kept, run.packet), (0, to_rs(&seg(ACK, 30), moved)));
    let (run, kept) = send(&mut xdp, &seg(ACK, 40));
    assert_eq!((kept, run.packet), (1, to_rs(&seg(ACK, 40), moved)));
    assert_eq!(xdp.kept_next_hop(0, cpu).unwrap().dmac, moved);

    // longer than the kept MTU (rb's 1400): too big, as the FIB would say
    let too_long = seg(ACK, 1400 - 40 + 1);
    let before = xdp.counters().unwrap();
    let (run, kept) = send(&mut xdp, &too_long);
    let after = xdp.counters().unwrap();
    assert_eq!((run.verdict, kept), (verdict::DROP, 0));
    assert_eq!(
        after[Counter::TooBig as usize] - before[Counter::TooBig as usize],
        1
    );
    let (run, kept) = send(&mut xdp, &seg(ACK, 1400 - 40));
    assert_eq!((run.verdict, kept), (verdict::REDIRECT, 1));

    // the reply entry keeps the way to the client: out of ca, the client's address, 1500
    let reply = Seg::tcp(rs, c, ACK, 5);
    let answer = || eth(RB_MAC, RS_MAC, &reply.ip(64));
    let want_out = eth(CLIENT_MAC, CA_MAC, &reply.with(vip, c).ip(63));
    for n in 0..2u64 {
        let before = xdp.counters().unwrap()[Counter::NextHopKept as usize];
        let run = xdp.test_run(&answer(), Some(net.rb), 1).unwrap();
        let kept = xdp.counters().unwrap()[Counter::NextHopKept as usize] - before;
        assert_eq!((run.verdict, kept), (verdict::REDIRECT, n));
        assert_eq!(run.packet, want_out);
    }
    let entry = xdp
        .flow(&key(rs, c, TCP))
        .unwrap()
        .expect("the reply entry");
    let want_back = abi::NextHop {
        gen: hops.generation(),
        iif: net.rb as u16,
        oif: net.ca as u16,
        dmac: CLIENT_MAC,
        smac: CA_MAC,
        mtu: 1500,
        pad: 0,
        tag: words(c.ip()).iter().fold(0, |a, w| a ^ w),
    };
    assert_eq!(entry.nh, want_back);

    // writing the real server again forgets what was kept toward it
    let d = abi::Dest {
        addr: words(rs.ip()),
        port: rs.port().to_be(),
        family: abi::AF_INET,
        fwd: abi::FWD_MASQ,
        flags: abi::DEST_AVAILABLE,
        svc: 0,
        weight: 1,
        ..Default::default()
    };
    xdp.set_dest(0, &d).unwrap();
    assert_eq!(xdp.kept_next_hop(0, cpu).unwrap(), abi::NextHop::default());
    let (run, kept) = send(&mut xdp, &seg(ACK, 50));
    assert_eq!((run.verdict, kept), (verdict::REDIRECT, 0));

    // keeping off: every packet asks
    hops.set_enabled(false).unwrap();
    for len in [60, 70] {
        let (run, kept) = send(&mut xdp, &seg(ACK, len));
        assert_eq!((run.verdict, kept), (verdict::REDIRECT, 0));
        assert_eq!(run.packet, to_rs(&seg(ACK, len), moved));
    }
    // and on again, under a generation no entry has
    hops.set_enabled(true).unwrap();
    assert_ne!(hops.generation(), want.gen);
    let (_, kept) = send(&mut xdp, &seg(ACK, 80));
    assert_eq!(kept, 0);
    let (_, kept) = send(&mut xdp, &seg(ACK, 90));
    assert_eq!(kept, 1);
}

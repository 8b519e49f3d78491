//! `rvsd --dataplane xdp` with masquerading (NAT, `-m`) real servers, end to end in network
//! namespaces of the test's own, set up as the IPVS oracle's `topo_nat 3`: a client
//! (192.168.50.2) on a veth `vcl` of the director (192.168.50.1, the VIP 192.168.50.100 on
//! its lo, forwarding on), and three real servers rs1..rs3 (10.1.I.2), each on a veth `vrsI`
//! of its own (10.1.I.1) with its default route via the director. The rules are the seed's
//! VS-NAT example (TCP VIP:80 -> :8000 wrr 1/2/3, UDP VIP:53 -> :5353 rr) and the few extra
//! services of the recording; every answer must be the one Linux IPVS gave for the same
//! traffic (`tests/golden/nat-seed.golden`, recorded with `tests/golden/nat-seed.sh` whose
//! header says what each line is): the real servers in order, the TCP states of a scenario
//! of closings and the connection counts, a real server's port unreachable reaching the
//! client as ECONNREFUSED, and counters equal to what nftables counted leaving the client
//! and the real servers. The same over IPv6, in the order of rvs-core (no recording).
//! Needs root.

mod common;
mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use support::director::Director;
use support::listing;
use support::model::Model;
use support::net::{self, Got};
use support::netns::Netns;
use support::servers::UdpServer;
use support::wait::poll_for;

const VIP: &str = "192.168.50.100";
const CLIENT: &str = "192.168.50.2";
const VIP6: &str = "2001:db8:50::100";
const CLIENT6: &str = "2001:db8:50::2";
/// Generic XDP on the client's veth and the real servers' (see xdp.rs: driver-mode XDP_TX
/// on a veth needs a program on the peer, and a local sender's checksums are unfinished).
const XDP_ARGS: [&str; 12] = [
    "--dataplane",
    "xdp",
    "--iface",
    "vcl",
    "--iface",
    "vrs1",
    "--iface",
    "vrs2",
    "--iface",
    "vrs3",
    "--xdp-mode",
    "generic",
];
/// How long the daemon may take to show a state or a count.
const SETTLE: Duration = Duration::from_secs(5);

/// Real server `i` (1-based), as in the oracle.
fn rip(i: usize) -> String {
    format!("10.1.{i}.2")
}

fn rip6(i: usize) -> String {
    format!("fd00:1:{i}::2")
}

/// The seed's VS-NAT rules and the recording's extra services, in the order the oracle's
/// job added them (the order of a service's real servers is its schedulers' order).
fn nat_rules() -> Vec<String> {
    let mut l = vec![format!("-A -t {VIP}:80 -s wrr")];
    for (i, w) in [(1, 1), (2, 2), (3, 3)] {
        l.push(format!("-a -t {VIP}:80 -r {}:8000 -m -w {w}", rip(i)));
    }
    l.push(format!("-A -u {VIP}:53 -s rr"));
    for i in 1..=3 {
        l.push(format!("-a -u {VIP}:53 -r {}:5353 -m", rip(i)));
    }
    l.push(format!("-A -t {VIP}:81 -s rr"));
    for i in 1..=3 {
        l.push(format!("-a -t {VIP}:81 -r {}:8001 -m", rip(i)));
    }
    l.push(format!("-A -t {VIP}:82 -s rr"));
    l.push(format!("-a -t {VIP}:82 -r {}:8002 -m", rip(1)));
    l.push(format!("-A -u {VIP}:54 -s rr"));
    l.push(format!("-a -u {VIP}:54 -r {}:5454 -m", rip(1)));
    l
}

// ---- the recording ----

/// One step of the recording's state scenario.
#[derive(Debug)]
struct Step {
    /// a..f
    id: String,
    udp: bool,
    sport: u16,
    vip: SocketAddr,
    /// the real server's name, or the client's error (`ECONNREFUSED`)
    got: String,
}

/// `tests/golden/nat-seed.golden`, read.
#[derive(Debug, Default)]
struct Golden {
    timeouts: String,
    tcp: Vec<String>,
    udp: Vec<String>,
    steps: Vec<Step>,
    /// `PROTO STATE SOURCE VIRTUAL DEST`, sorted
    conns: Vec<String>,
    /// `PROTO VIP:PORT RIP:PORT FORWARD WEIGHT ACTIVE INACT`
    dests: Vec<String>,
    icmp: String,
    /// `PROTO VIP:PORT conns=N` and `PROTO VIP:PORT RIP:PORT conns=N`, sorted
    stats_conns: Vec<String>,
}

fn golden() -> Golden {
    let mut g = Golden::default();
    let mut service = String::new();
    for line in include_str!("golden/nat-seed.golden").lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["timeouts", rest @ ..] => g.timeouts = rest.join(" "),
            ["tcp", _, rs] => g.tcp.push(rs.to_string()),
            ["udp", _, rs] => g.udp.push(rs.to_string()),
            ["step", id, proto, sport, vip, got] => g.steps.push(Step {
                id: id.to_string(),
                udp: *proto == "UDP",
                sport: sport.parse().unwrap(),
                vip: vip.parse().unwrap(),
                got: got.to_string(),
            }),
            ["conn", rest @ ..] => g.conns.push(rest.join(" ")),
            ["dest", rest @ ..] => g.dests.push(rest.join(" ")),
            ["icmp", _, _, got] => g.icmp = got.to_string(),
            ["stats", "->", dest, conns, ..] => g
                .stats_conns
                .push(format!("{service} {dest} conns={conns}")),
            ["stats", proto, addr, conns, ..] => {
                service = format!("{proto} {addr}");
                g.stats_conns.push(format!("{service} conns={conns}"));
            }
            _ => panic!("a golden line not understood: {line:?}"),
        }
    }
    g.conns.sort();
    g.stats_conns.sort();
    assert_eq!(g.tcp.len(), 24, "{g:?}");
    assert_eq!(g.udp.len(), 6, "{g:?}");
    assert_eq!(g.steps.len(), 6, "{g:?}");
    g
}

// ---- the namespaces ----

/// `topo_nat 3` of the oracle, with both address families.
struct Topo {
    client: Netns,
    director: Netns,
    reals: Vec<Netns>,
}

/// A veth `near` in `a` whose peer is `eth0` in `b`; fixed Ethernet addresses
/// 02:00:00:00:NN:01 (near) and 02:00:00:00:NN:02 (peer); no IPv6 duplicate address
/// detection on either; both up.
fn veth(a: &Netns, near: &str, b: &Netns, nn: u8) {
    a.ip(&[
        "link", "add", near, "type", "veth", "peer", "name", "eth0", "netns", &b.name,
    ]);
    a.ip(&[
        "link",
        "set",
        near,
        "address",
        &format!("02:00:00:00:{nn:02x}:01"),
    ]);
    b.ip(&[
        "link",
        "set",
        "eth0",
        "address",
        &format!("02:00:00:00:{nn:02x}:02"),
    ]);
    a.sysctl(&format!("net.ipv6.conf.{near}.accept_dad"), "0");
    b.sysctl("net.ipv6.conf.eth0.accept_dad", "0");
    // the client and the real servers finish their checksums themselves (no offload), so the
    // receivers verify what the director's NAT rewrote, as on a wire
    b.exec(&["ethtool", "-K", "eth0", "tx", "off"]);
    a.ip(&["link", "set", near, "up"]);
    b.ip(&["link", "set", "eth0", "up"]);
}

impl Topo {
    fn new(tag: &str) -> Topo {
        let client = Netns::new(&format!("{tag}-cl"));
        let director = Netns::new(&format!("{tag}-dir"));
        let reals: Vec<Netns> = (1..=3)
            .map(|i| Netns::new(&format!("{tag}-rs{i}")))
            .collect();
        veth(&director, "vcl", &client, 0x50);
        director.ip(&["addr", "add", "192.168.50.1/24", "dev", "vcl"]);
        director.ip(&["addr", "add", "2001:db8:50::1/64", "dev", "vcl", "nodad"]);
        director.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
        director.ip(&["addr", "add", &format!("{VIP6}/128"), "dev", "lo"]);
        client.ip(&["addr", "add", &format!("{CLIENT}/24"), "dev", "eth0"]);
        client.ip(&[
            "addr",
            "add",
            &format!("{CLIENT6}/64"),
            "dev",
            "eth0",
            "nodad",
        ]);
        client.ip(&["route", "add", "default", "via", "192.168.50.1"]);
        client.ip(&["-6", "route", "add", "default", "via", "2001:db8:50::1"]);
        // the IPv6 VIP is inside the client's on-link prefix, and the director answers
        // neighbour solicitations only for addresses of the interface they arrive on (the
        // VIP is on lo): the client reaches it through its router, as a client elsewhere
        // would (the IPv4 VIP is answered by ARP from any interface)
        client.ip(&[
            "-6",
            "route",
            "add",
            &format!("{VIP6}/128"),
            "via",
            "2001:db8:50::1",
        ]);
        for (k, rs) in reals.iter().enumerate() {
            let i = k + 1;
            let near = format!("vrs{i}");
            veth(&director, &near, rs, i as u8);
            director.ip(&["addr", "add", &format!("10.1.{i}.1/24"), "dev", &near]);
            director.ip(&[
                "addr",
                "add",
                &format!("fd00:1:{i}::1/64"),
                "dev",
                &near,
                "nodad",
            ]);
            rs.ip(&["addr", "add", &format!("{}/24", rip(i)), "dev", "eth0"]);
            rs.ip(&[
                "addr",
                "add",
                &format!("{}/64", rip6(i)),
                "dev",
                "eth0",
                "nodad",
            ]);
            rs.ip(&["route", "add", "default", "via", &format!("10.1.{i}.1")]);
            rs.ip(&[
                "-6",
                "route",
                "add",
                "default",
                "via",
                &format!("fd00:1:{i}::1"),
            ]);
        }
        director.sysctl("net.ipv4.ip_forward", "1");
        director.sysctl("net.ipv6.conf.all.forwarding", "1");
        Topo {
            client,
            director,
            reals,
        }
    }
}

// ---- nftables counters ----

/// An nftables counter in `ns` of the IP packets sent out (output hook) to `daddr`:
/// packets and bytes (IP lengths, as the service counters count).
struct Sent<'a> {
    ns: &'a Netns,
    fam: &'static str,
}

impl<'a> Sent<'a> {
    fn start(ns: &'a Netns, daddr: IpAddr) -> Sent<'a> {
        let (fam, field) = match daddr {
            IpAddr::V4(_) => ("ip", "ip daddr"),
            IpAddr::V6(_) => ("ip6", "ip6 daddr"),
        };
        let rules = format!(
            "table {fam} count {{\n counter sent {{ }}\n chain out {{\n  type filter hook output priority 0;\n  {field} {daddr} counter name \"sent\"\n }}\n}}\n"
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(rules.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "nft {rules}");
        Sent { ns, fam }
    }

    fn read(&self) -> (u64, u64) {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns.name,
                "nft",
                "-j",
                "list",
                "counter",
                self.fam,
                "count",
                "sent",
            ])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let c = v["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|o| o.get("counter"))
            .expect("the counter");
        (c["packets"].as_u64().unwrap(), c["bytes"].as_u64().unwrap())
    }
}

/// What left the client toward the VIP and what left the real servers toward the client.
struct Counted<'a> {
    client: Sent<'a>,
    reals: Vec<Sent<'a>>,
}

impl<'a> Counted<'a> {
    fn start(topo: &'a Topo, vip: IpAddr, client: IpAddr) -> Counted<'a> {
        Counted {
            client: Sent::start(&topo.client, vip),
            reals: topo
                .reals
                .iter()
                .map(|rs| Sent::start(rs, client))
                .collect(),
        }
    }

    /// (in packets, in bytes, out packets, out bytes)
    fn read(&self) -> (u64, u64, u64, u64) {
        let (ip, ib) = self.client.read();
        let (op, ob) = self
            .reals
            .iter()
            .map(Sent::read)
            .fold((0, 0), |a, (p, b)| (a.0 + p, a.1 + b));
        (ip, ib, op, ob)
    }
}

/// InPkts, InBytes, OutPkts, OutBytes summed over the services of `-Ln --stats --exact`
/// (Prot LocalAddress:Port Conns InPkts OutPkts InBytes OutBytes).
fn service_sums(listing: &str) -> (u64, u64, u64, u64) {
    let mut sum = (0, 0, 0, 0);
    for line in listing.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() >= 7 && matches!(w[0], "TCP" | "UDP" | "SCTP") {
            let n = |i: usize| w[i].parse::<u64>().unwrap();
            sum = (sum.0 + n(3), sum.1 + n(5), sum.2 + n(4), sum.3 + n(6));
        }
    }
    sum
}

/// The services' counters equal what nftables counted: InPkts/InBytes what the client
/// sent to the VIP, OutPkts/OutBytes what the real servers sent to the client (answers,
/// resets, port unreachables).
fn counters_equal_nftables(d: &Director, counted: &Counted) {
    let mut last = (String::new(), (0, 0, 0, 0));
    let same = poll_for(SETTLE, || {
        let ln = d.text("-Ln --stats --exact");
        let nft = counted.read();
        let ok = service_sums(&ln) == nft;
        last = (ln, nft);
        ok
    });
    let (ln, nft) = last;
    assert!(
        same,
        "nftables: client sent {} packets, {} bytes to the VIP; real servers sent {} packets, {} bytes to the client; services (in pkts, in bytes, out pkts, out bytes) {:?}:\n{ln}",
        nft.0,
        nft.1,
        nft.2,
        nft.3,
        service_sums(&ln)
    );
    assert!(nft.2 > 0, "the real servers' answers were counted");
}

// ---- real servers ----

/// What a TCP real server does after its greeting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Then {
    /// close at once (the oracle's `serve_name`)
    Close,
    /// hold the connection: never read, never close (until the server is dropped)
    Hold,
}

/// A TCP real server greeting every connection with `NAME\n`; records its peers.
struct Server {
    stop: Arc<AtomicBool>,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(addr: SocketAddr, name: &str, then: Then) -> Server {
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .expect("socket");
        sock.set_reuse_address(true).unwrap();
        sock.bind(&addr.into())
            .unwrap_or_else(|e| panic!("real server bind {addr}: {e}"));
        sock.listen(128).unwrap();
        // accept(2) honours SO_RCVTIMEO: the loop wakes to look at its stop flag
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let (st, pe) = (stop.clone(), peers.clone());
        let greeting = format!("{name}\n");
        let thread = std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            while !st.load(Ordering::SeqCst) {
                let Ok((conn, peer)) = sock.accept() else {
                    continue;
                };
                pe.lock()
                    .unwrap()
                    .push(peer.as_socket().expect("inet peer"));
                let mut s: TcpStream = conn.into();
                let _ = s.write_all(greeting.as_bytes());
                if then == Then::Hold {
                    held.push(s);
                }
            }
        });
        Server {
            stop,
            peers,
            thread: Some(thread),
        }
    }

    fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The real servers of the recording on real server `i` at `addr`: greeting and closing
/// on 8000, answering UDP on 5353, greeting and holding on 8001; nothing on 8002 or 5454.
struct Reals {
    tcp: Vec<Server>,
    udp: Vec<UdpServer>,
}

impl Reals {
    fn start(topo: &Topo, addr: fn(usize) -> String, hold: bool) -> Reals {
        let mut r = Reals {
            tcp: Vec::new(),
            udp: Vec::new(),
        };
        for (k, ns) in topo.reals.iter().enumerate() {
            let i = k + 1;
            let ip: IpAddr = addr(i).parse().unwrap();
            let name = format!("rs{i}");
            ns.run(|| {
                r.tcp
                    .push(Server::start(SocketAddr::new(ip, 8000), &name, Then::Close));
                if hold {
                    r.tcp
                        .push(Server::start(SocketAddr::new(ip, 8001), &name, Then::Hold));
                }
                r.udp
                    .push(UdpServer::start(SocketAddr::new(ip, 5353), &name));
            });
        }
        r
    }

    /// Every real server saw the client's own address (NAT keeps it; only the destination
    /// changes on the way in).
    fn saw_only(&self, client: IpAddr) {
        let tcp: Vec<SocketAddr> = self.tcp.iter().flat_map(Server::peers).collect();
        let udp: Vec<SocketAddr> = self
            .udp
            .iter()
            .flat_map(|u| u.received().into_iter().map(|(from, _)| from))
            .collect();
        assert!(!tcp.is_empty() && !udp.is_empty());
        for p in tcp.iter().chain(&udp) {
            assert_eq!(p.ip(), client, "a real server's peer: {tcp:?} {udp:?}");
        }
    }
}

// ---- the client ----

/// The first word of an answer (the real server's name).
fn first_word(text: &str) -> String {
    text.split_whitespace().next().unwrap_or("").to_string()
}

/// One TCP connection from `src`, port `sport` (0: any): the greeting's name and the local
/// address; the client closes once it has the greeting.
fn ask_tcp(topo: &Topo, src: IpAddr, sport: u16, vip: SocketAddr) -> (String, SocketAddr) {
    topo.client.run(|| {
        let mut s = net::connect_from(src, sport, vip).expect("connect to the VIP");
        let local = s.local_addr().unwrap();
        (first_word(&net::greeting(&mut s)), local)
    })
}

/// One UDP request from a new socket (port `sport`, 0: any) connected to `vip`: the
/// answer's first word or the error's name (only the VIP's answers reach a connected
/// socket), and the local address.
fn ask_udp(topo: &Topo, src: IpAddr, sport: u16, vip: SocketAddr) -> (String, SocketAddr) {
    topo.client.run(|| {
        let sock = net::udp_from(src, sport);
        sock.connect(vip).unwrap();
        let local = sock.local_addr().unwrap();
        sock.send(b"?").expect("udp send");
        let mut buf = [0u8; 256];
        let got = match sock.recv(&mut buf) {
            Ok(n) => first_word(&String::from_utf8_lossy(&buf[..n])),
            Err(e) => errno_name(&e),
        };
        (got, local)
    })
}

fn errno_name(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => "ECONNREFUSED".into(),
        Some(libc::ECONNRESET) => "ECONNRESET".into(),
        Some(libc::EAGAIN) => "EAGAIN (no answer)".into(),
        Some(libc::ETIMEDOUT) => "ETIMEDOUT".into(),
        _ => format!("{e}"),
    }
}

/// The oracle's name (`rsI`) of a real server's address (`rip`: [`rip`] or [`rip6`]).
fn name_of(addr: SocketAddr, rip: fn(usize) -> String) -> String {
    (1..=3)
        .find(|&i| addr.ip() == rip(i).parse::<IpAddr>().unwrap())
        .map(|i| format!("rs{i}"))
        .unwrap_or_else(|| format!("not a real server: {addr}"))
}

/// `-Lnc` rows of the client's ports `ports` as `PROTO STATE SOURCE VIRTUAL DEST`, sorted.
fn entries(d: &Director, client: IpAddr, ports: &BTreeSet<u16>) -> Vec<String> {
    let mut rows: Vec<String> = listing::conns(&d.text("-Lnc"))
        .into_iter()
        .filter(|c| {
            c.source
                .parse::<SocketAddr>()
                .is_ok_and(|s| s.ip() == client && ports.contains(&s.port()))
        })
        .map(|c| format!("{} {} {} {} {}", c.proto, c.state, c.source, c.virt, c.dest))
        .collect();
    rows.sort();
    rows
}

/// `-Ln` real servers as `PROTO VIP:PORT RIP:PORT FORWARD WEIGHT ACTIVE INACT`.
fn dest_rows(d: &Director) -> Vec<String> {
    listing::dests(&d.text("-Ln"))
        .into_iter()
        .map(|r| {
            format!(
                "{} {} {} {} {} {}",
                r.service, r.addr, r.fwd, r.weight, r.active, r.inact
            )
        })
        .collect()
}

/// The Conns column of every service and real server, rendered as the golden's.
fn stats_conns(d: &Director) -> Vec<String> {
    let mut rows: Vec<String> = listing::stats(&d.text("-Ln --stats --exact"))
        .into_iter()
        .map(|r| match r.dest {
            Some(dest) => format!("{} {dest} conns={}", r.service, r.conns),
            None => format!("{} conns={}", r.service, r.conns),
        })
        .collect();
    rows.sort();
    rows
}

/// A connection the scenario keeps open until its check.
type Held = Vec<TcpStream>;

/// Step `st` of the recording's state scenario from `CLIENT:sport`; the stream is kept in
/// `held` when the step holds it.
fn scenario_step(topo: &Topo, st: &Step, held: &mut Held) -> String {
    let src: IpAddr = CLIENT.parse().unwrap();
    if st.udp {
        return ask_udp(topo, src, st.sport, st.vip).0;
    }
    topo.client.run(|| {
        let mut s = match net::connect_from(src, st.sport, st.vip) {
            Ok(s) => s,
            Err(e) => return errno_name(&e),
        };
        let got = match net::read_line(&mut s) {
            Got::Line(l) => first_word(&l),
            other => return format!("{other:?}"),
        };
        let end = |s: &mut TcpStream| {
            let mut b = [0u8; 16];
            assert_eq!(s.read(&mut b).ok(), Some(0), "the real server's end");
        };
        match st.id.as_str() {
            // held open
            "a" | "e" => held.push(s),
            // the client's write side shut, the real server's open
            "b" => {
                s.shutdown(Shutdown::Write).unwrap();
                held.push(s);
            }
            // the real server closed, the client does not
            "c" => {
                end(&mut s);
                held.push(s);
            }
            // the real server closed, then the client
            "d" => {
                end(&mut s);
                drop(s);
            }
            other => panic!("no step {other}"),
        }
        got
    })
}

// ---- the tests ----

#[test]
fn seed_nat_setup_as_the_kernel_does() {
    let g = golden();
    let topo = Topo::new("xnat");
    let reals = Reals::start(&topo, rip, true);
    let d = Director::start_in("xdp-nat", &XDP_ARGS, Some(&topo.director.name));
    let mut model = Model::new();
    for line in nat_rules() {
        d.ok(&line);
        model.adm(&line);
    }
    let timeouts = d.text("-L --timeout");
    assert_eq!(
        timeouts.trim_end(),
        format!("Timeout (tcp tcpfin udp): {}", g.timeouts),
        "the oracle's timeouts"
    );
    let src: IpAddr = CLIENT.parse().unwrap();
    let vip: IpAddr = VIP.parse().unwrap();
    let counted = Counted::start(&topo, vip, src);

    // 1. 24 TCP connections one after another: served in the kernel's wrr order
    let tcp = SocketAddr::new(vip, 80);
    let mut got = Vec::new();
    let mut core = Vec::new();
    // each from a port of its own: a port the client's kernel picked again would find its
    // entry in TIME_WAIT, which ends that entry (one fewer InActConn than the recording)
    for i in 0..24 {
        let (name, local) = ask_tcp(&topo, src, 22000 + i, tcp);
        got.push(name);
        let rs = model.tcp(local, tcp).expect("a real server");
        assert_eq!(rs.port(), 8000);
        core.push(name_of(rs, rip));
    }
    assert_eq!(
        got, g.tcp,
        "the kernel's wrr order for weights 1/2/3 (rvs-core's: {core:?})"
    );
    assert_eq!(core, g.tcp, "rvs-core's wrr order is the kernel's");

    // 2. six UDP requests, a new socket each: rr as the kernel
    let udp = SocketAddr::new(vip, 53);
    // each from a port of its own: a port the kernel picked again would reuse a flow
    let answers: Vec<String> = (0..6)
        .map(|i| ask_udp(&topo, src, 21000 + i, udp).0)
        .collect();
    assert_eq!(
        answers, g.udp,
        "the kernel's rr order, answered from the VIP"
    );

    // 3. the state scenario: each step's entry reaches the kernel's state before the next
    let ports: BTreeSet<u16> = g.steps.iter().map(|s| s.sport).collect();
    let mut held = Held::new();
    for st in &g.steps {
        let answer = scenario_step(&topo, st, &mut held);
        assert_eq!(answer, st.got, "step {} ({}:{})", st.id, CLIENT, st.sport);
        let source = format!("{CLIENT}:{}", st.sport);
        let want: Vec<&String> = g
            .conns
            .iter()
            .filter(|c| c.split_whitespace().nth(2) == Some(source.as_str()))
            .collect();
        let mut seen = Vec::new();
        let reached = poll_for(SETTLE, || {
            seen = entries(&d, src, &BTreeSet::from([st.sport]));
            seen.iter().collect::<Vec<_>>() == want
        });
        assert!(
            reached,
            "step {}: the entry of {source}: rvsd {seen:?}, kernel {want:?}\n{}",
            st.id,
            d.text("-Lnc")
        );
    }
    let mut seen = (Vec::new(), Vec::new());
    let same = poll_for(SETTLE, || {
        seen = (entries(&d, src, &ports), dest_rows(&d));
        seen.0 == g.conns && seen.1 == g.dests
    });
    assert!(
        same,
        "after the scenario\n-Lnc rvsd:   {:#?}\n-Lnc kernel: {:#?}\n-Ln rvsd:   {:#?}\n-Ln kernel: {:#?}",
        seen.0, g.conns, seen.1, g.dests
    );

    // 4. a real server's port unreachable, translated back: ECONNREFUSED on the client
    let (icmp, _) = ask_udp(&topo, src, 20007, SocketAddr::new(vip, 54));
    assert_eq!(g.icmp, "ECONNREFUSED", "the recording");
    assert_eq!(icmp, g.icmp, "the client's connected UDP socket");

    // 5. counters: Conns as the kernel's, packets and bytes as nftables counted them
    let mut conns = Vec::new();
    let same = poll_for(SETTLE, || {
        conns = stats_conns(&d);
        conns == g.stats_conns
    });
    assert!(
        same,
        "Conns\n  rvsd:   {conns:#?}\n  kernel: {:#?}",
        g.stats_conns
    );
    counters_equal_nftables(&d, &counted);
    reals.saw_only(src);
    drop(held);
}

#[test]
fn ipv6_nat_with_port_mapping() {
    let topo = Topo::new("xnat6");
    let reals = Reals::start(&topo, rip6, false);
    let d = Director::start_in("xdp-nat6", &XDP_ARGS, Some(&topo.director.name));
    let mut model = Model::new();
    let mut lines = vec![
        format!("-A -t [{VIP6}]:80 -s wrr"),
        format!("-A -u [{VIP6}]:53 -s rr"),
    ];
    for (i, w) in [(1, 1), (2, 2), (3, 3)] {
        lines.push(format!("-a -t [{VIP6}]:80 -r [{}]:8000 -m -w {w}", rip6(i)));
        lines.push(format!("-a -u [{VIP6}]:53 -r [{}]:5353 -m", rip6(i)));
    }
    for line in &lines {
        d.ok(line);
        model.adm(line);
    }
    let src: IpAddr = CLIENT6.parse().unwrap();
    let vip: IpAddr = VIP6.parse().unwrap();
    let counted = Counted::start(&topo, vip, src);

    // TCP in rvs-core's order (= the kernel's), to port 8000 of the real servers
    let tcp = SocketAddr::new(vip, 80);
    let (mut got, mut want) = (Vec::new(), Vec::new());
    for i in 0..12 {
        let (name, local) = ask_tcp(&topo, src, 22000 + i, tcp);
        got.push(name);
        let rs = model.tcp(local, tcp).expect("a real server");
        assert_eq!(rs.port(), 8000);
        want.push(name_of(rs, rip6));
    }
    assert_eq!(
        got, want,
        "every connection answered, in the kernel's order"
    );

    // UDP from new sockets, answered from the VIP, in rr order
    let udp = SocketAddr::new(vip, 53);
    let (mut got, mut want) = (Vec::new(), Vec::new());
    for i in 0..6 {
        // each from a port of its own: a port the kernel picked again would reuse a flow
        let (name, local) = ask_udp(&topo, src, 21000 + i, udp);
        got.push(name);
        let rs = model.udp(local, udp).expect("a real server");
        assert_eq!(rs.port(), 5353);
        want.push(name_of(rs, rip6));
    }
    assert_eq!(
        got, want,
        "every request answered from the VIP, in rr order"
    );

    let mut conns = Vec::new();
    let want_conns = vec![
        format!("TCP [{VIP6}]:80 conns=12"),
        format!("UDP [{VIP6}]:53 conns=6"),
    ];
    let same = poll_for(SETTLE, || {
        conns = stats_conns(&d)
            .into_iter()
            .filter(|r| r.split_whitespace().count() == 3)
            .collect();
        conns == want_conns
    });
    assert!(same, "Conns: {conns:?}");
    counters_equal_nftables(&d, &counted);
    reals.saw_only(src);
}

/// The next hops the program keeps between packets follow the kernel: the director's
/// neighbour entry of a real server, or of the client, pointed at an address nobody has
/// stops the flow's packets at once (the kept next hop went stale with the kernel's
/// announcement), and pointed back makes them flow again.
#[test]
fn kept_next_hops_follow_neighbour_changes() {
    let topo = Topo::new("xnatnh");
    let reals = Reals::start(&topo, rip, false);
    let d = Director::start_in("xdp-nat-nh", &XDP_ARGS, Some(&topo.director.name));
    d.ok(&format!("-A -u {VIP}:53 -s rr"));
    d.ok(&format!("-a -u {VIP}:53 -r {}:5353 -m", rip(1)));
    let src: IpAddr = CLIENT.parse().unwrap();
    let vip = SocketAddr::new(VIP.parse().unwrap(), 53);
    // the client's requests all cross the director's XDP program on one CPU (a veth hands a
    // packet on on its sender's CPU), whose kept next hop toward the real server is the one
    // that must go stale
    let ask = || {
        topo.client.run(|| {
            pin_to_one_cpu();
            let sock = net::udp_from(src, 40123);
            sock.connect(vip).unwrap();
            sock.send(b"?").expect("udp send");
            let mut buf = [0u8; 256];
            match sock.recv(&mut buf) {
                Ok(n) => first_word(&String::from_utf8_lossy(&buf[..n])),
                Err(e) => errno_name(&e),
            }
        })
    };
    for _ in 0..3 {
        assert_eq!(ask(), "rs1");
    }
    assert!(
        poll_for(SETTLE, || d.log().contains("kept between packets")),
        "{}",
        d.log()
    );
    let neigh = |addr: &str, mac: &str, dev: &str| {
        topo.director.ip(&[
            "neigh",
            "replace",
            addr,
            "lladdr",
            mac,
            "dev",
            dev,
            "nud",
            "permanent",
        ]);
        // the announcement reaches rvsd's watcher in well under this
        std::thread::sleep(Duration::from_millis(100));
    };
    let nobody = "02:00:00:00:ee:ee";
    for (addr, right, dev) in [
        (rip(1), "02:00:00:00:01:02", "vrs1"),
        (CLIENT.to_string(), "02:00:00:00:50:02", "vcl"),
    ] {
        neigh(&addr, nobody, dev);
        assert_eq!(ask(), "EAGAIN (no answer)", "{addr} pointed elsewhere");
        neigh(&addr, right, dev);
        assert_eq!(ask(), "rs1", "{addr} pointed back");
        assert_eq!(ask(), "rs1");
    }
    let from: Vec<SocketAddr> = reals.udp[0].received().into_iter().map(|r| r.0).collect();
    assert_eq!(from.len(), 3 + 2 + 3, "requests that reached rs1: {from:?}");
    assert!(from.iter().all(|f| f.ip() == src), "{from:?}");
}

/// Keeps the calling thread on the first CPU it may run on.
fn pin_to_one_cpu() {
    // SAFETY: cpu_set_t is a plain bit set; sched_getaffinity writes and sched_setaffinity
    // reads `size_of::<cpu_set_t>()` bytes of it; CPU_ISSET / CPU_ZERO / CPU_SET stay within
    // it.
    unsafe {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(libc::sched_getaffinity(0, size, &mut set), 0);
        let cpu = (0..libc::CPU_SETSIZE as usize)
            .find(|&c| libc::CPU_ISSET(c, &set))
            .expect("a CPU to run on");
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(libc::sched_setaffinity(0, size, &set), 0);
    }
}

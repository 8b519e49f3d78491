//! `rvsd --dataplane xdp` end to end, in network namespaces of the test's own: a client, a
//! director and three real servers on one bridge (the LVS-DR LAN of the seed: VIP 10.0.0.88,
//! director 10.0.0.12, real servers 10.0.0.9, .20, .21, client 10.0.0.100). The seed's
//! director script's ipvsadm lines run through rvsadm, the real servers are set up by
//! `rvsd realserver` (the seed's lvs-rs script: VIP on lo, arp_ignore 1, arp_announce 2), and
//! real TCP and UDP traffic goes through: every request answered, new connections in the
//! wrr order of the kernel, the answers straight from the real servers to the client, and
//! `rvsadm -Ln --stats --exact` counting what the client sent. Needs root.

mod common;
mod support;

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use support::director::Director;
use support::listing;
use support::model::Model;
use support::net::{self, greeting};
use support::netns::Netns;
use support::servers::{Behavior, TcpServer, UdpServer};
use support::wait::poll;

const VIP: &str = "10.0.0.88";
const DIRECTOR: &str = "10.0.0.12";
const CLIENT: &str = "10.0.0.100";
const RIPS: [&str; 3] = ["10.0.0.9", "10.0.0.20", "10.0.0.21"];
/// The director's data plane. Generic XDP: a frame a veth sends back with XDP_TX in the
/// driver reaches its peer only when the peer runs an XDP program of its own, which a bridge
/// port does not, and the client's checksums (left to offload on its veth) would arrive
/// unfinished; generic XDP transmits through the stack, as on any device.
const XDP_ARGS: [&str; 6] = [
    "--dataplane",
    "xdp",
    "--iface",
    "eth0",
    "--xdp-mode",
    "generic",
];
const VIP6: &str = "2001:db8::88";
const CLIENT6: &str = "2001:db8::100";

fn rip6(i: usize) -> String {
    format!("2001:db8::{}", [9, 20, 21][i])
}

/// The LAN: a bridge in a namespace of its own, and one namespace per host with `eth0` on it.
struct Lan {
    /// the bridge's namespace (the ports go with it)
    _bridge: Netns,
    client: Netns,
    director: Netns,
    reals: Vec<Netns>,
}

impl Lan {
    fn new(tag: &str) -> Lan {
        let bridge = Netns::new(&format!("{tag}-br"));
        bridge.ip(&["link", "add", "br0", "type", "bridge"]);
        bridge.ip(&["link", "set", "br0", "up"]);
        let host = |name: &str, n: usize| {
            let ns = Netns::new(&format!("{tag}-{name}"));
            let port = format!("p{n}");
            bridge.ip(&[
                "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
            ]);
            bridge.ip(&["link", "set", &port, "master", "br0", "up"]);
            ns.ip(&[
                "link",
                "set",
                "eth0",
                "address",
                &format!("02:00:00:00:00:{n:02x}"),
            ]);
            ns.ip(&["link", "set", "eth0", "up"]);
            // addresses usable at once (no IPv6 duplicate address detection wait)
            ns.sysctl("net.ipv6.conf.eth0.accept_dad", "0");
            ns
        };
        let client = host("cl", 1);
        let director = host("dir", 2);
        let reals: Vec<Netns> = (0..3).map(|i| host(&format!("rs{i}"), 3 + i)).collect();
        client.ip(&["addr", "add", &format!("{CLIENT}/24"), "dev", "eth0"]);
        client.ip(&[
            "addr",
            "add",
            &format!("{CLIENT6}/64"),
            "dev",
            "eth0",
            "nodad",
        ]);
        director.ip(&["addr", "add", &format!("{DIRECTOR}/24"), "dev", "eth0"]);
        director.ip(&["addr", "add", "2001:db8::12/64", "dev", "eth0", "nodad"]);
        // the seed's director script: `ifconfig eth0:0 $VIP up`, `route add -host $VIP dev eth0:0`
        director.ip(&[
            "addr",
            "add",
            &format!("{VIP}/32"),
            "dev",
            "eth0",
            "label",
            "eth0:0",
        ]);
        director.ip(&[
            "addr",
            "add",
            &format!("{VIP6}/128"),
            "dev",
            "eth0",
            "nodad",
        ]);
        director.sysctl("net.ipv4.ip_forward", "1");
        for (i, rs) in reals.iter().enumerate() {
            rs.ip(&["addr", "add", &format!("{}/24", RIPS[i]), "dev", "eth0"]);
            rs.ip(&[
                "addr",
                "add",
                &format!("{}/64", rip6(i)),
                "dev",
                "eth0",
                "nodad",
            ]);
        }
        Lan {
            _bridge: bridge,
            client,
            director,
            reals,
        }
    }

    /// `rvsd realserver ARGS…` on every real server.
    fn realserver(&self, args: &[&str]) {
        for rs in &self.reals {
            let out = Command::new("ip")
                .args(["netns", "exec", &rs.name])
                .arg(common::rvsd_bin())
                .arg("realserver")
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "rvsd realserver {args:?}: {out:?}");
        }
    }

    /// The director's eth0 received-bytes counter.
    fn director_rx_bytes(&self) -> u64 {
        let out = Command::new("ip")
            .args([
                "-n",
                &self.director.name,
                "-s",
                "-j",
                "link",
                "show",
                "eth0",
            ])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0]["stats64"]["rx"]["bytes"].as_u64().unwrap()
    }
}

/// nftables counters on the client of what it sends to the VIP (packets, bytes of IP).
struct Sent<'a> {
    ns: &'a Netns,
}

impl<'a> Sent<'a> {
    fn start(ns: &'a Netns, family: &str, vip: &str) -> Sent<'a> {
        let (fam, field) = if family == "ip" {
            ("ip", "ip daddr")
        } else {
            ("ip6", "ip6 daddr")
        };
        let rules = format!(
            "table {fam} count {{\n counter sent {{ }}\n chain out {{\n  type filter hook output priority 0;\n  {field} {vip} counter name \"sent\"\n }}\n}}\n"
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(rules.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "nft {rules}");
        Sent { ns }
    }

    fn read(&self, family: &str) -> (u64, u64) {
        let fam = if family == "ip" { "ip" } else { "ip6" };
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns.name,
                "nft",
                "-j",
                "list",
                "counter",
                fam,
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

/// Conns, InPkts, InBytes, OutPkts of a service row of `-Ln --stats --exact`.
fn service_stats(listing: &str, service: &str) -> (u64, u64, u64, u64) {
    for line in listing.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() >= 7 && format!("{} {}", w[0], w[1]) == service {
            let n = |i: usize| w[i].parse::<u64>().unwrap();
            return (n(2), n(3), n(5), n(4));
        }
    }
    panic!("no {service} in\n{listing}");
}

/// One TCP connection from the client's port `sport`: the real server's greeting name, and
/// the local address.
fn land(lan: &Lan, src: IpAddr, sport: u16, vip: SocketAddr) -> (String, SocketAddr) {
    lan.client.run(|| {
        let mut s = net::connect_from(src, sport, vip).expect("connect to the VIP");
        let local = s.local_addr().unwrap();
        let g = greeting(&mut s);
        (g.split_whitespace().next().unwrap_or("").to_string(), local)
    })
}

/// Greeting TCP servers on VIP:80 and UDP servers on VIP:53 in every real server, each named
/// by its real address.
fn servers(lan: &Lan, vip: IpAddr, names: &[String]) -> (Vec<TcpServer>, Vec<UdpServer>) {
    let tcp = lan
        .reals
        .iter()
        .zip(names)
        .map(|(ns, name)| {
            ns.run(|| TcpServer::start(SocketAddr::new(vip, 80), name, Behavior::Greet))
        })
        .collect();
    let udp = lan
        .reals
        .iter()
        .zip(names)
        .map(|(ns, name)| ns.run(|| UdpServer::start(SocketAddr::new(vip, 53), name)))
        .collect();
    (tcp, udp)
}

/// `n` TCP connections to `vip`: each answered, by the real server the kernel model picks;
/// the names of the real servers in order.
fn tcp_in_kernel_order(
    lan: &Lan,
    model: &mut Model,
    src: IpAddr,
    vip: SocketAddr,
    n: usize,
) -> Vec<String> {
    let mut got = Vec::new();
    let mut want = Vec::new();
    // each from a port of its own: a port the client's kernel picked again would follow its
    // old entry (direct routing), as in the kernel, and leave the recorded order
    for i in 0..n {
        let sport = 23000 + u16::try_from(i).expect("fewer connections than ports");
        let (name, local) = land(lan, src, sport, vip);
        got.push(name);
        want.push(model.tcp(local, vip).unwrap().ip().to_string());
    }
    assert_eq!(
        got, want,
        "every connection answered, in the kernel's order"
    );
    got
}

/// `n` UDP requests from distinct ports to `vip`: each answered from the VIP; the names.
fn udp_answers(lan: &Lan, src: IpAddr, vip: SocketAddr, n: u16) -> Vec<String> {
    lan.client.run(|| {
        (0..n)
            .map(|i| {
                let sock = net::udp_from(src, 40000 + i);
                sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                sock.connect(vip).unwrap();
                sock.send(b"who").unwrap();
                let mut buf = [0u8; 256];
                let n = sock.recv(&mut buf).expect("an answer from the VIP");
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                text.split_whitespace().next().unwrap_or("").to_string()
            })
            .collect()
    })
}

/// `-Ln --stats --exact` counts exactly what the client sent to the services (`sent`), the
/// director saw no answers (OutPkts 0, and its interface received about what the client
/// sent), and `-Lnc` lists `conns` TCP connections.
fn counted_as_sent(d: &Director, sent: (u64, u64), services: &[String], rx: u64, conns: u64) {
    let (pkts, bytes) = sent;
    let sums = || {
        let ln = d.text("-Ln --stats --exact");
        services.iter().fold((0, 0, 0), |a, s| {
            let (_, p, b, o) = service_stats(&ln, s);
            (a.0 + p, a.1 + b, a.2 + o)
        })
    };
    let counted = poll(|| {
        let (p, b, _) = sums();
        (p, b) == (pkts, bytes)
    });
    let ln = d.text("-Ln --stats --exact");
    assert!(counted, "client sent {pkts} packets, {bytes} bytes:\n{ln}");
    assert_eq!(sums().2, 0, "the director sees no answers\n{ln}");
    let (tcp_conns, _, _, _) = service_stats(&ln, &services[0]);
    assert_eq!(tcp_conns, conns, "{ln}");
    assert!(
        rx < bytes * 2 + 4096,
        "director received {rx} bytes, client sent {bytes}"
    );
    let lnc = d.text("-Lnc");
    let listed = listing::conns(&lnc)
        .iter()
        .filter(|c| c.virt == services[0][4..])
        .count() as u64;
    assert_eq!(listed, conns, "{lnc}");
}

/// Runs the seed's director script's ipvsadm lines against `d`.
fn seed_director_script(d: &Director) {
    let out = common::run_seed_dr_script(&d.socket);
    assert!(out.status.success(), "{out:?}");
}

/// What each scenario sends and checks: `n` TCP connections to `tcp` in the kernel model's
/// order and six UDP requests to `udp` spread over the three real servers, all from `src`;
/// then the counters (`counted_as_sent`). Returns the TCP answers' real servers in order.
fn traffic(
    lan: &Lan,
    d: &Director,
    model: &mut Model,
    tcp: SocketAddr,
    udp: SocketAddr,
    src: IpAddr,
    n: usize,
) -> Vec<String> {
    let (family, vip) = match tcp.ip() {
        IpAddr::V4(a) => ("ip", a.to_string()),
        IpAddr::V6(a) => ("ip6", a.to_string()),
    };
    let sent = Sent::start(&lan.client, family, &vip);
    let rx_before = lan.director_rx_bytes();
    let got = tcp_in_kernel_order(lan, model, src, tcp, n);
    let answers = udp_answers(lan, src, udp, 6);
    let distinct: std::collections::BTreeSet<&String> = answers.iter().collect();
    assert_eq!(distinct.len(), 3, "rr over three real servers: {answers:?}");
    let rx = lan.director_rx_bytes() - rx_before;
    let services = [format!("TCP {tcp}"), format!("UDP {udp}")];
    counted_as_sent(d, sent.read(family), &services, rx, n as u64);
    got
}

/// The LAN with its real servers set up for direct routing (`rvsd realserver --mode dr`),
/// each serving TCP on VIP:80 and UDP on VIP:53 under its address as its name, and rvsd
/// with the XDP data plane on the director (no rules yet).
fn dr_lan(tag: &str) -> (Lan, (Vec<TcpServer>, Vec<UdpServer>), Director) {
    let lan = Lan::new(tag);
    lan.realserver(&["--vip", VIP, "--mode", "dr"]);
    let names: Vec<String> = RIPS.iter().map(|s| s.to_string()).collect();
    let servers = servers(&lan, VIP.parse().unwrap(), &names);
    let d = Director::start_in(tag, &XDP_ARGS, Some(&lan.director.name));
    (lan, servers, d)
}

#[test]
fn seed_dr_setup_serves_tcp_and_udp_through_xdp() {
    let (lan, servers, d) = dr_lan("xdr");
    seed_director_script(&d);
    d.ok(&format!("-A -u {VIP}:53 -s rr"));
    for r in RIPS {
        d.ok(&format!("-a -u {VIP}:53 -r {r} -g"));
    }
    let mut model = Model::new();
    model.adm(&format!("-A -t {VIP}:80 -s wrr"));
    for (a, w) in RIPS.iter().zip([2, 5, 5]) {
        model.adm(&format!("-a -t {VIP}:80 -r {a} -g -w {w}"));
    }
    let (tcp, udp) = (format!("{VIP}:80"), format!("{VIP}:53"));
    let src = CLIENT.parse().unwrap();
    let got = traffic(
        &lan,
        &d,
        &mut model,
        tcp.parse().unwrap(),
        udp.parse().unwrap(),
        src,
        24,
    );
    // the order Linux IPVS gave the same rules (tests/golden/dr-wrr-seed.sh, recorded with
    // the IPVS oracle): rsN is the N-th real server added
    let kernel: Vec<String> = include_str!("golden/dr-wrr-seed.golden")
        .lines()
        .map(|l| RIPS[l.trim_start_matches("rs").parse::<usize>().unwrap() - 1].to_string())
        .collect();
    assert_eq!(got, kernel, "the kernel's wrr order for weights 2/5/5");
    drop(servers);
    lan.realserver(&["--stop"]);
}

/// Rules applied to the director and to the kernel model alike.
fn rules(d: &Director, model: &mut Model, lines: &[String]) {
    for line in lines {
        d.ok(line);
        model.adm(line);
    }
}

/// Tunnelled real servers: IPIP for TCP, GUE with its checksum for UDP; the real servers
/// take the tunnel headers off with rvs's tc program (this kernel has no ipip module).
#[test]
fn tunnel_real_servers_decapsulate_with_the_tc_program() {
    let lan = Lan::new("xtun");
    lan.realserver(&["--vip", VIP, "--mode", "tun", "--gue-port", "6080"]);
    let names: Vec<String> = RIPS.iter().map(|s| s.to_string()).collect();
    let servers = servers(&lan, VIP.parse().unwrap(), &names);
    let d = Director::start_in("xdp-tun", &XDP_ARGS, Some(&lan.director.name));
    let mut model = Model::new();
    let mut lines = vec![
        format!("-A -t {VIP}:80 -s wrr"),
        format!("-A -u {VIP}:53 -s rr"),
    ];
    for (r, w) in RIPS.iter().zip([2, 5, 5]) {
        lines.push(format!("-a -t {VIP}:80 -r {r} -i -w {w}"));
        lines.push(format!(
            "-a -u {VIP}:53 -r {r} -i --tun-type gue --tun-port 6080 --tun-csum"
        ));
    }
    rules(&d, &mut model, &lines);
    let (tcp, udp) = (format!("{VIP}:80"), format!("{VIP}:53"));
    let src = CLIENT.parse().unwrap();
    traffic(
        &lan,
        &d,
        &mut model,
        tcp.parse().unwrap(),
        udp.parse().unwrap(),
        src,
        12,
    );
    drop(servers);
    lan.realserver(&["--stop"]);
}

/// IPv6: direct routing of TCP and UDP to real servers holding the IPv6 VIP on lo.
#[test]
fn ipv6_direct_routing() {
    let lan = Lan::new("x6");
    lan.realserver(&["--vip", VIP6, "--mode", "dr"]);
    let names: Vec<String> = (0..3).map(rip6).collect();
    let servers = servers(&lan, VIP6.parse().unwrap(), &names);
    let d = Director::start_in("xdp-v6", &XDP_ARGS, Some(&lan.director.name));
    let mut model = Model::new();
    let mut lines = vec![
        format!("-A -t [{VIP6}]:80 -s wrr"),
        format!("-A -u [{VIP6}]:53 -s rr"),
    ];
    for (i, w) in [2, 5, 5].iter().enumerate() {
        lines.push(format!("-a -t [{VIP6}]:80 -r [{}]:80 -g -w {w}", rip6(i)));
        lines.push(format!("-a -u [{VIP6}]:53 -r [{}]:53 -g", rip6(i)));
    }
    rules(&d, &mut model, &lines);
    let (tcp, udp) = (format!("[{VIP6}]:80"), format!("[{VIP6}]:53"));
    let src = CLIENT6.parse().unwrap();
    traffic(
        &lan,
        &d,
        &mut model,
        tcp.parse().unwrap(),
        udp.parse().unwrap(),
        src,
        12,
    );
    drop(servers);
    lan.realserver(&["--stop"]);
}

/// A direct-routing real server's next hop is looked up again every second (outside the
/// core's lock, one neighbour-table dump per refresh): the director's neighbour entry of the
/// real server pointed at an address nobody has stops the traffic the program sends it, and
/// pointed back brings it back, without a rule change.
#[test]
fn direct_routing_next_hops_follow_the_neighbour_table() {
    let (lan, servers, d) = dr_lan("xnh");
    d.ok(&format!("-A -u {VIP}:53 -s rr"));
    d.ok(&format!("-a -u {VIP}:53 -r {} -g", RIPS[0]));
    let vip: SocketAddr = format!("{VIP}:53").parse().unwrap();
    let src: IpAddr = CLIENT.parse().unwrap();
    // one datagram from a port not used before (a new flow): the answering server's name
    let mut port = 41000;
    let mut ask = || {
        port += 1;
        let p = port;
        lan.client.run(|| {
            let sock = net::udp_from(src, p);
            sock.set_read_timeout(Some(Duration::from_millis(400)))
                .unwrap();
            sock.connect(vip).unwrap();
            sock.send(b"who").unwrap();
            let mut buf = [0u8; 256];
            sock.recv(&mut buf).ok().map(|n| {
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                text.split_whitespace().next().unwrap_or("").to_string()
            })
        })
    };
    assert_eq!(ask().as_deref(), Some(RIPS[0]));
    let neigh = |mac: &str| {
        lan.director.ip(&[
            "neigh",
            "replace",
            RIPS[0],
            "lladdr",
            mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ]);
    };
    neigh("02:00:00:00:ee:ee");
    assert!(
        support::wait::poll_for(Duration::from_secs(6), || ask().is_none()),
        "traffic still reaches {} after its neighbour entry changed",
        RIPS[0]
    );
    // rs0 is host 3 of the LAN (02:00:00:00:00:03)
    neigh("02:00:00:00:00:03");
    assert!(
        support::wait::poll_for(Duration::from_secs(6), || ask().as_deref() == Some(RIPS[0])),
        "traffic does not reach {} again",
        RIPS[0]
    );
    assert_eq!(ask().as_deref(), Some(RIPS[0]));
    drop(servers);
    lan.realserver(&["--stop"]);
}

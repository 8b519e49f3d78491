//! rvsd's userspace data plane end to end: real connections on loopback (each test in its
//! own `127.B.0.0/16`, so tests run in parallel), real servers as threads of the test, and
//! rvsadm's listings. Decisions are compared with the kernel's recordings
//! (`support::golden`) or, where addresses are hashed, with rvs-core fed the same rules and
//! connections (`support::model`).
#![deny(unsafe_code)]

mod common;
mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{IpAddr, Shutdown, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::TempDir;
use support::director::Director;
use support::listing::{self, conns_of};
use support::model::Model;
use support::net::{self, greeting, Got};
use support::proxyhdr::read_header;
use support::servers::{bulk_byte, Behavior, TcpServer, UdpServer, BULK};
use support::wait::{poll, poll_for};

/// Kernel transcripts replayed through the data plane: every choice of a real server, every
/// `-Ln` counter (with PersistConn) and every `-Lnc` entry as the kernel recorded them.
mod kernel_transcripts {
    use super::support::golden::replay;

    macro_rules! scenarios {
        ($group:literal: $($name:ident)*) => {
            $(
                #[test]
                fn $name() {
                    replay($group, stringify!($name));
                }
            )*
        };
    }

    // rr in list order (newest first), weights 0 skipped, cursor across changes; wrr cycles
    scenarios!("rr_wrr": rr_basic rr_add_remove rr_udp rr_all_zero wrr_123 wrr_edit sched_switch);
    // the least-connection family with held (active) and closed (inactive) connections
    scenarios!("lc_family": wlc_123_hold wlc_default_edit);
    // persistence: a client keeps its server, new clients continue the cycle; -M; -o
    scenarios!("persist": p_rr_clients p_netmask24 p_ops_udp p_wlc_persistconns);
    // overflow and thresholds (-x/-y) with held connections; the destination trash
    scenarios!("fo_ovf": ovf_hold);
    scenarios!("thresholds": thr_all_overloaded);
    scenarios!("trash": trash_revive_rr_order);
    // the Conns column of -Ln --stats: one per datagram with -o, templates never count
    scenarios!("stats": st_ops st_persist);
}

/// `n` TCP real servers `rs1`… on `127.B.10.I` (any port) behaving as `behavior`.
fn tcp_servers(b: u8, n: u8, behavior: Behavior) -> Vec<TcpServer> {
    (1..=n)
        .map(|i| TcpServer::start(net::sa(b, 10, i, 0), &format!("rs{i}"), behavior))
        .collect()
}

/// The name of the server listening on `addr`.
fn name_of(servers: &[TcpServer], addr: SocketAddr) -> String {
    let i = servers
        .iter()
        .position(|s| s.addr == addr)
        .expect("a server");
    format!("rs{}", i + 1)
}

/// The first word of a greeting: the server's name.
fn who(line: &str) -> String {
    line.split_whitespace().next().unwrap_or("").to_string()
}

/// One connection from `src` (any port): which server greeted, and the client's address.
fn land(src: IpAddr, vip: SocketAddr) -> (String, SocketAddr) {
    let mut s = net::connect_from(src, 0, vip).expect("connect to the VIP");
    let local = s.local_addr().unwrap();
    let line = greeting(&mut s);
    (who(&line), local)
}

/// Send one datagram to `to` and return the name in the answer, which must come from `to`.
fn udp_who(sock: &UdpSocket, to: SocketAddr, payload: &[u8]) -> String {
    let (line, from) = net::udp_ask(sock, to, payload, net::IO_TIMEOUT)
        .unwrap_or_else(|| panic!("no answer from {to}"));
    assert_eq!(from, to, "the answer comes from the virtual service");
    who(&line)
}

/// sh and mh: each client address keeps one server, and the mapping is the one rvs-core
/// (equal to the kernel) computes for these addresses; with sh-port/mh-port the client port
/// counts too.
#[test]
fn sh_and_mh_hash_the_client_address_as_the_kernel() {
    let b = net::subnet();
    let rs = tcp_servers(b, 4, Behavior::Greet);
    let d = Director::start("hash", &[]);
    let mut model = Model::new();
    let vip = |port| net::sa(b, 0, 100, port);
    let rules = [
        (vip(81), "-s sh"),
        (vip(82), "-s mh"),
        (vip(83), "-s sh -b sh-port"),
        (vip(84), "-s mh -b mh-port"),
    ];
    for (v, sched) in &rules {
        let mut lines = vec![format!("-A -t {v} {sched}")];
        for (i, s) in rs.iter().enumerate() {
            lines.push(format!("-a -t {v} -r {} -m -w {}", s.addr, i + 1));
        }
        for l in &lines {
            d.ok(l);
            model.adm(l);
        }
    }
    let mut wrong = Vec::new();
    for (v, sched) in &rules[..2] {
        let mut used = BTreeSet::new();
        for host in 10..30 {
            let src = net::v4(b, 50, host);
            let mut mine = BTreeSet::new();
            for _ in 0..3 {
                let (got, local) = land(src, *v);
                let want = name_of(&rs, model.tcp(local, *v).expect("a destination"));
                if got != want {
                    wrong.push(format!("{sched} {local}: {got}, expected {want}"));
                }
                mine.insert(got);
            }
            assert_eq!(mine.len(), 1, "{sched}: {src} moved between {mine:?}");
            used.extend(mine);
        }
        assert!(used.len() >= 3, "{sched}: 20 clients on {used:?} only");
    }
    for (v, sched) in &rules[2..] {
        let src = net::v4(b, 50, 5);
        let mut used = BTreeSet::new();
        for _ in 0..12 {
            let (got, local) = land(src, *v);
            let want = name_of(&rs, model.tcp(local, *v).expect("a destination"));
            if got != want {
                wrong.push(format!("{sched} {local}: {got}, expected {want}"));
            }
            used.insert(got);
        }
        assert!(
            used.len() >= 2,
            "{sched}: every port of one client on {used:?}"
        );
    }
    assert!(wrong.is_empty(), "decisions differ:\n{}", wrong.join("\n"));
}

/// Three UDP real servers `rs1`… and an rvsd with one rr service over them at `vip`
/// (`flags` added to its -A), the same rules in a [`Model`].
struct UdpSetup {
    b: u8,
    rs: Vec<UdpServer>,
    d: Director,
    model: Model,
    vip: SocketAddr,
}

impl UdpSetup {
    fn new(tag: &str, flags: &str) -> UdpSetup {
        let b = net::subnet();
        let rs: Vec<UdpServer> = (1..=3)
            .map(|i| UdpServer::start(net::sa(b, 10, i, 0), &format!("rs{i}")))
            .collect();
        let (d, mut model) = (Director::start(tag, &[]), Model::new());
        let vip = net::sa(b, 0, 100, 53);
        let mut lines = vec![format!("-A -u {vip} -s rr {flags}")];
        lines.extend(rs.iter().map(|s| format!("-a -u {vip} -r {} -m", s.addr)));
        for l in &lines {
            d.ok(l);
            model.adm(l);
        }
        UdpSetup {
            b,
            rs,
            d,
            model,
            vip,
        }
    }

    /// The name of the server at `a`.
    fn name(&self, a: SocketAddr) -> String {
        format!(
            "rs{}",
            self.rs.iter().position(|s| s.addr == a).unwrap() + 1
        )
    }

    /// The server the model sends one datagram from `client` to.
    fn expect(&mut self, client: SocketAddr) -> String {
        let rs = self.model.udp(client, self.vip).expect("a destination");
        self.name(rs)
    }
}

/// UDP: datagrams go both ways unchanged, a session is keyed by the client's address and
/// port (every datagram of it to one server), and -Lnc lists each session.
#[test]
fn udp_sessions_are_keyed_by_client_address_and_port() {
    let mut u = UdpSetup::new("udp", "");
    let mut clients = Vec::new();
    for (host, port) in [(7, 5353), (7, 5354), (8, 5353), (9, 0)] {
        let sock = net::udp_from(net::v4(u.b, 50, host), port);
        let local = sock.local_addr().unwrap();
        let want = u.expect(local);
        for k in 0..4 {
            let payload = format!("{local} datagram {k}");
            let got = udp_who(&sock, u.vip, payload.as_bytes());
            assert_eq!(got, want, "{local} #{k}");
            u.expect(local);
        }
        clients.push((local.to_string(), want));
    }
    for (i, s) in u.rs.iter().enumerate() {
        for (_, payload) in s.received() {
            let text = String::from_utf8(payload).unwrap();
            let (client, _) = text.split_once(" datagram").expect("relayed unchanged");
            let owner = clients.iter().find(|c| c.0 == client).unwrap();
            assert_eq!(
                owner.1,
                format!("rs{}", i + 1),
                "{text} reached rs{}",
                i + 1
            );
        }
    }
    let rows = listing::conns(&u.d.text("-Lnc"));
    for (client, server) in &clients {
        let i: usize = server[2..].parse().unwrap();
        let row = rows
            .iter()
            .find(|r| &r.source == client)
            .unwrap_or_else(|| panic!("no -Lnc entry for {client}: {rows:?}"));
        assert_eq!((row.proto.as_str(), row.state.as_str()), ("UDP", "UDP"));
        let want = (u.vip.to_string(), u.rs[i - 1].addr.to_string());
        assert_eq!((row.virt.clone(), row.dest.clone()), want);
    }
}

/// -o: every datagram of one client port is scheduled on its own, in rr order, and no
/// entry is kept.
#[test]
fn one_packet_scheduling_spreads_one_clients_datagrams() {
    let mut u = UdpSetup::new("udp-ops", "-o");
    let sock = net::udp_from(net::v4(u.b, 50, 20), 0);
    let local = sock.local_addr().unwrap();
    let got: Vec<String> = (0..6).map(|_| udp_who(&sock, u.vip, b"ops")).collect();
    let want: Vec<String> = (0..6).map(|_| u.expect(local)).collect();
    assert_eq!(got, want, "one-packet scheduling order");
    assert_eq!(got.iter().collect::<BTreeSet<_>>().len(), 3);
    let lnc = u.d.text("-Lnc");
    assert!(
        listing::conns(&lnc).is_empty(),
        "-o keeps no entries:\n{lnc}"
    );
}

/// A UDP session ends after the udp timeout: the client's next datagram is scheduled
/// afresh. A real server opted in to PROXY v2 gets a DGRAM header before every datagram.
#[test]
fn udp_sessions_expire_and_carry_proxy_v2_headers() {
    let b = net::subnet();
    let rs: Vec<UdpServer> = (1..=2)
        .map(|i| UdpServer::start(net::sa(b, 10, i, 0), &format!("rs{i}")))
        .collect();
    let name = |a: SocketAddr| format!("rs{}", rs.iter().position(|s| s.addr == a).unwrap() + 1);
    let pp = UdpServer::start(net::sa(b, 10, 5, 0), "pp");
    let d = Director::start("udp-expiry", &[]);
    let mut model = Model::new();
    let (vip, vip_pp) = (net::sa(b, 0, 100, 53), net::sa(b, 0, 100, 54));
    let mut lines = vec!["--set 0 0 1".to_string(), format!("-A -u {vip} -s rr")];
    lines.extend(rs.iter().map(|s| format!("-a -u {vip} -r {} -m", s.addr)));
    for l in &lines {
        d.ok(l);
        model.adm(l);
    }
    let sock = net::udp_from(net::v4(b, 50, 2), 0);
    let local = sock.local_addr().unwrap();
    let first = udp_who(&sock, vip, b"one");
    assert_eq!(first, name(model.udp(local, vip).unwrap()));
    assert_eq!(udp_who(&sock, vip, b"two"), first, "same session");
    let expired = poll_for(Duration::from_secs(5), || {
        let lnc = d.text("-Lnc");
        !listing::conns(&lnc)
            .iter()
            .any(|r| r.source == local.to_string())
    });
    assert!(
        expired,
        "the session outlived its 1 s timeout:\n{}",
        d.text("-Lnc")
    );
    model.advance(2);
    let again = udp_who(&sock, vip, b"three");
    assert_eq!(
        again,
        name(model.udp(local, vip).unwrap()),
        "scheduled afresh"
    );
    assert_ne!(again, first, "rr moved on");
    d.ok(&format!("-A -u {vip_pp} -s rr"));
    d.ok(&format!(
        "-a -u {vip_pp} -r {} -m --proxy-protocol v2",
        pp.addr
    ));
    for payload in [&b"hello"[..], b"world"] {
        assert_eq!(udp_who(&sock, vip_pp, payload), "pp");
        let (_, got) = pp.received().pop().unwrap();
        let mut rest = &got[..];
        let h = read_header(&mut rest).expect("a PROXY v2 header");
        assert_eq!((h.version, h.transport.as_str()), (2, "UDP4"));
        assert_eq!((h.src, h.dst), (Some(local), Some(vip_pp)));
        assert_eq!(rest, payload, "the datagram follows its header");
    }
}

/// One client of [`concurrent_connections_keep_their_bytes`]: 256 KiB of its own pattern
/// through an echoing real server; returns the server's name.
fn echo_roundtrip(src: IpAddr, vip: SocketAddr, seed: u8) -> String {
    let mut s = net::connect_from(src, 0, vip).expect("connect");
    let server = who(&greeting(&mut s));
    let data: Vec<u8> = (0..256 * 1024u32)
        .map(|k| (k as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    let mut w = s.try_clone().unwrap();
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        w.write_all(&sent).expect("client write");
        w.shutdown(Shutdown::Write).unwrap();
    });
    let (back, end) = net::read_all(&mut s);
    writer.join().unwrap();
    assert_eq!(end, Got::Eof, "client {src}");
    assert!(
        back == data,
        "client {src}: {} bytes back, not its own",
        back.len()
    );
    server
}

/// Many connections relayed at once each get exactly their own bytes back.
#[test]
fn concurrent_connections_keep_their_bytes() {
    let b = net::subnet();
    let rs = tcp_servers(b, 3, Behavior::Echo);
    let d = Director::start("concurrent", &[]);
    let vip = net::sa(b, 0, 100, 80);
    d.ok(&format!("-A -t {vip} -s rr"));
    for s in &rs {
        d.ok(&format!("-a -t {vip} -r {} -m", s.addr));
    }
    let servers: BTreeSet<String> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..24u8)
            .map(|i| scope.spawn(move || echo_roundtrip(net::v4(b, 50, 10 + i), vip, i)))
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    assert_eq!(servers.len(), 3, "spread over {servers:?}");
}

/// A client that shuts down its write side: the real server sees the end of the stream,
/// then answers, and the client gets the whole answer and the end of the stream.
#[test]
fn half_close_is_relayed_and_the_answer_still_arrives() {
    let b = net::subnet();
    let rs = tcp_servers(b, 1, Behavior::Drain);
    let d = Director::start("halfclose", &[]);
    let vip = net::sa(b, 0, 100, 80);
    d.ok(&format!("-A -t {vip} -s rr"));
    d.ok(&format!("-a -t {vip} -r {} -m", rs[0].addr));
    let mut s = net::connect_from(net::v4(b, 50, 2), 0, vip).unwrap();
    let sent: Vec<u8> = (0..100_000u32).map(|i| (i % 7) as u8 + b'a').collect();
    net::send(&mut s, &sent);
    s.shutdown(Shutdown::Write).unwrap();
    let (data, end) = net::read_all(&mut s);
    assert_eq!(end, Got::Eof, "the answer ends with a clean end of stream");
    let sum: u64 = sent.iter().map(|&b| u64::from(b)).sum();
    let head = format!("rs1 got {} {sum}\n", sent.len());
    assert!(
        data.starts_with(head.as_bytes()),
        "{:?}",
        String::from_utf8_lossy(&data[..data.len().min(60)])
    );
    let body = &data[head.len()..];
    assert_eq!(body.len(), BULK, "the whole answer");
    assert!(body.iter().enumerate().all(|(i, &b)| b == bulk_byte(i)));
}

/// A real server that resets, and one that refuses (nothing listens): the client's
/// connection is reset; both connections are counted in -Ln --stats.
#[test]
fn resets_and_refusals_reach_the_client_and_are_counted() {
    let b = net::subnet();
    let rs = tcp_servers(b, 1, Behavior::Reset);
    let d = Director::start("reset", &[]);
    let (vip, dead) = (net::sa(b, 0, 100, 80), net::sa(b, 0, 100, 81));
    let nobody = net::sa(b, 10, 9, 9);
    d.ok(&format!("-A -t {vip} -s rr"));
    d.ok(&format!("-a -t {vip} -r {} -m", rs[0].addr));
    d.ok(&format!("-A -t {dead} -s rr"));
    d.ok(&format!("-a -t {dead} -r {nobody} -m"));
    let src = net::v4(b, 50, 3);
    assert_eq!(net::ask(src, vip), Got::Reset, "a reset real server");
    assert_eq!(rs[0].seen().len(), 1);
    assert_eq!(net::ask(src, dead), Got::Reset, "a refusing real server");
    // listed counters are the estimator's 2-second samples, as the kernel's are
    let counted = poll_for(Duration::from_secs(5), || {
        let st = d.text("-Ln --stats");
        [
            conns_of(&st, &format!("TCP {vip}"), None),
            conns_of(&st, &format!("TCP {vip}"), Some(&rs[0].addr.to_string())),
            conns_of(&st, &format!("TCP {dead}"), None),
            conns_of(&st, &format!("TCP {dead}"), Some(&nobody.to_string())),
        ] == [1; 4]
    });
    assert!(counted, "Conns 1 each:\n{}", d.text("-Ln --stats"));
}

/// PROXY protocol v1 and v2 headers, each to the real server that opted in, carry the
/// client's address and port and the virtual service's.
#[test]
fn proxy_protocol_headers_carry_the_client() {
    let b = net::subnet();
    let rs = tcp_servers(b, 3, Behavior::Proxy);
    let plain = TcpServer::start(net::sa(b, 10, 4, 0), "plain", Behavior::Greet);
    let d = Director::start("proxy", &[]);
    let mut cases = Vec::new();
    for (i, version) in ["v1", "v2"].into_iter().enumerate() {
        let vip = net::sa(b, 0, 100, 80 + i as u16);
        d.ok(&format!("-A -t {vip} -s rr"));
        d.ok(&format!(
            "-a -t {vip} -r {} -m --proxy-protocol {version}",
            rs[i].addr
        ));
        cases.push((vip, &rs[i], i as u8 + 1));
    }
    // a server without the option on the same service sees no header
    let vip3 = net::sa(b, 0, 100, 82);
    d.ok(&format!("-A -t {vip3} -s rr"));
    d.ok(&format!("-a -t {vip3} -r {} -m", plain.addr));
    for (vip, server, version) in cases {
        for host in [7, 8] {
            let mut s = net::connect_from(net::v4(b, 50, host), 0, vip).unwrap();
            let local = s.local_addr().unwrap();
            assert!(greeting(&mut s).starts_with(&format!("rs{version} ")));
            let seen = server.seen();
            let header = seen.last().unwrap().proxy.clone().unwrap();
            let h = header.unwrap_or_else(|e| panic!("v{version}: {e}"));
            assert_eq!((h.version, h.transport.as_str()), (version, "TCP4"));
            assert_eq!((h.src, h.dst), (Some(local), Some(vip)), "v{version}");
        }
    }
    let (got, _) = land(net::v4(b, 50, 9), vip3);
    assert_eq!(
        got, "plain",
        "no header: the greeting is the server's first line"
    );
}

/// SIGTERM: new connections are refused, the open one completes its exchange, rvsd exits 0
/// once it is done.
#[test]
fn sigterm_drains_open_connections_and_exits_zero() {
    let b = net::subnet();
    let rs = tcp_servers(b, 1, Behavior::Echo);
    let mut d = Director::start("drain", &[]);
    let vip = net::sa(b, 0, 100, 80);
    d.ok(&format!("-A -t {vip} -s rr"));
    d.ok(&format!("-a -t {vip} -r {} -m", rs[0].addr));
    let src = net::v4(b, 50, 2);
    let mut open = net::connect_from(src, 0, vip).unwrap();
    assert!(greeting(&mut open).starts_with("rs1 "));
    d.sigterm();
    let refused = poll(|| match net::connect_from(src, 0, vip) {
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        Ok(_) => false,
    });
    assert!(refused, "new connections are still accepted after SIGTERM");
    assert!(
        d.wait_exit(Duration::ZERO).is_none(),
        "rvsd exited with a connection open"
    );
    net::send(&mut open, b"still there?\n");
    assert_eq!(net::read_line(&mut open), Got::Line("still there?".into()));
    drop(open);
    let t = Instant::now();
    let st = d
        .wait_exit(Duration::from_secs(10))
        .expect("rvsd still running 10 s after its last connection closed");
    assert_eq!(st.code(), Some(0), "exit status after draining");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "exit took {:?}",
        t.elapsed()
    );
}

/// A connection still open when `--drain-timeout` runs out is closed, and rvsd exits 0.
#[test]
fn drain_timeout_closes_what_is_left_and_exits_zero() {
    let b = net::subnet();
    let rs = tcp_servers(b, 1, Behavior::Echo);
    let mut d = Director::start("drain-timeout", &["--drain-timeout", "1"]);
    let vip = net::sa(b, 0, 100, 80);
    d.ok(&format!("-A -t {vip} -s rr"));
    d.ok(&format!("-a -t {vip} -r {} -m", rs[0].addr));
    let mut open = net::connect_from(net::v4(b, 50, 2), 0, vip).unwrap();
    greeting(&mut open);
    let t = Instant::now();
    d.sigterm();
    let st = d
        .wait_exit(Duration::from_secs(10))
        .expect("rvsd still running 10 s after SIGTERM with a 1 s drain timeout");
    assert_eq!(st.code(), Some(0), "exit status after the drain timeout");
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "exited after {:?}, before the drain timeout, with a connection open",
        t.elapsed()
    );
    let (_, end) = net::read_all(&mut open);
    assert!(
        matches!(end, Got::Eof | Got::Reset),
        "the client's connection is closed: {end:?}"
    );
}

/// After `-d` returns, the removed server's open connection carries nothing more: the
/// kernel drops its packets (expire_nodest_conn 0), rvs stops relaying them. Re-added from
/// the trash, the server gets what waited (as TCP retransmits what the kernel dropped).
#[test]
fn a_removed_real_servers_connection_carries_nothing_more() {
    let b = net::subnet();
    let rs = tcp_servers(b, 1, Behavior::Echo);
    let d = Director::start("removed", &[]);
    let vip = net::sa(b, 0, 100, 80);
    d.ok(&format!("-A -t {vip} -s rr"));
    d.ok(&format!("-a -t {vip} -r {} -m", rs[0].addr));
    let mut s = net::connect_from(net::v4(b, 50, 2), 0, vip).unwrap();
    greeting(&mut s);
    net::send(&mut s, b"before\n");
    assert_eq!(net::read_line(&mut s), Got::Line("before".into()));
    d.ok(&format!("-d -t {vip} -r {}", rs[0].addr));
    let _ = s.write_all(b"after\n");
    let got = net::read_line(&mut s);
    assert_ne!(got, Got::Line("after".into()), "relayed after -d returned");
    d.ok(&format!("-a -t {vip} -r {} -m", rs[0].addr));
    assert_eq!(net::read_line(&mut s), Got::Line("after".into()));
}

/// A real server whose listen queue is full drops the SYNs: after the director's connect
/// timeout (`connect_timeout` of the configuration file) the client is reset and the failure
/// logged.
#[test]
fn a_real_server_that_never_answers_costs_the_connect_timeout() {
    let b = net::subnet();
    let dir = TempDir::new("dp-ctimeout");
    let conf = dir.path().join("rvs.toml");
    std::fs::write(&conf, "[director]\nconnect_timeout = \"400ms\"\n").unwrap();
    // backlog 0 and one connection never accepted: the queue is full
    let silent = net::sa(b, 10, 7, 7);
    let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    l.bind(&silent.into()).unwrap();
    l.listen(0).unwrap();
    let _queued = std::net::TcpStream::connect(silent).unwrap();
    let d = Director::start("ctimeout", &["--config", conf.to_str().unwrap()]);
    let vip = net::sa(b, 0, 100, 80);
    d.ok(&format!("-A -t {vip} -s rr"));
    d.ok(&format!("-a -t {vip} -r {silent} -m"));
    let t0 = Instant::now();
    let mut s = net::connect_from(net::v4(b, 50, 4), 0, vip).unwrap();
    assert_eq!(net::read_line(&mut s), Got::Reset);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(2500),
        "reset after {took:?}"
    );
    assert!(
        poll_for(Duration::from_secs(3), || d
            .log()
            .contains("connect timed out; client reset")),
        "{}",
        d.log()
    );
}

/// `--state FILE`: rules restored at the next start serve the same VIP again, with the
/// same list order (servers added out of address order: rr after the restart starts where a
/// fresh engine given the original commands starts) and the PROXY setting.
#[test]
fn state_file_restores_a_serving_vip() {
    let b = net::subnet();
    let rs = tcp_servers(b, 3, Behavior::Greet);
    let dir = TempDir::new("dp-state");
    let state = dir.path().join("rules");
    let pp = TcpServer::start(net::sa(b, 10, 5, 0), "pp", Behavior::Proxy);
    let mut d = Director::start("state", &["--state", state.to_str().unwrap()]);
    let (vip, vip_pp) = (net::sa(b, 0, 100, 80), net::sa(b, 0, 100, 81));
    let mut lines = vec![format!("-A -t {vip} -s rr")];
    lines.extend([1, 0, 2].map(|i| format!("-a -t {vip} -r {} -m", rs[i].addr)));
    lines.push(format!("-A -t {vip_pp} -s rr"));
    lines.push(format!(
        "-a -t {vip_pp} -r {} -m --proxy-protocol v2",
        pp.addr
    ));
    lines.iter().for_each(|l| d.ok(l));
    let src = net::v4(b, 50, 2);
    // rr over the list rs3, rs1, rs2 (newest first), from a fresh engine's start
    let rotation = || -> (Vec<String>, Vec<String>) {
        let mut model = Model::new();
        lines.iter().for_each(|l| model.adm(l));
        (0..3)
            .map(|_| {
                let (got, local) = land(src, vip);
                (got, name_of(&rs, model.tcp(local, vip).unwrap()))
            })
            .unzip()
    };
    let (before, want) = rotation();
    assert_eq!(before, want, "rr before the restart");
    let saved = d.text("-Sn --extended");
    assert_eq!(d.stop().code(), Some(0));
    assert!(
        matches!(net::ask(src, vip), Got::Reset | Got::Error(_)),
        "nothing serves the VIP while rvsd is down"
    );
    d.restart();
    assert_eq!(d.text("-Sn --extended"), saved);
    let (after, want) = rotation();
    assert_eq!(after, want, "the restored list order");
    // the real server's PROXY protocol setting came back with it
    let (got, local) = land(src, vip_pp);
    assert_eq!(got, "pp");
    let h = pp
        .seen()
        .pop()
        .unwrap()
        .proxy
        .unwrap()
        .expect("a v2 header");
    assert_eq!((h.version, h.src), (2, Some(local)));
    assert_eq!(d.stop().code(), Some(0));
}

/// The seed's DR init script (10.0.0.x addresses, so in a namespace of the test's own),
/// run with rvsadm, and traffic through its VIP: its -g servers are reached through the
/// full proxy, in the wrr order rvs-core computes for its weights.
#[test]
fn dr_init_script_serves_its_vip() {
    let ns = support::netns::Netns::new("dr");
    for a in [
        "10.0.0.88",
        "10.0.0.9",
        "10.0.0.20",
        "10.0.0.21",
        "10.0.0.100",
    ] {
        ns.ip(&["addr", "add", &format!("{a}/32"), "dev", "lo"]);
    }
    let rips = ["10.0.0.9", "10.0.0.20", "10.0.0.21"];
    let rs: Vec<TcpServer> = ns.run(|| {
        rips.iter()
            .map(|a| TcpServer::start(format!("{a}:80").parse().unwrap(), a, Behavior::Greet))
            .collect()
    });
    let d = Director::start_in("dr-script", &[], Some(&ns.name));
    let out = common::run_seed_dr_script(&d.socket);
    assert!(out.status.success(), "{out:?}");
    let mut model = Model::new();
    model.adm("-A -t 10.0.0.88:80 -s wrr");
    for (a, w) in rips.iter().zip([2, 5, 5]) {
        model.adm(&format!("-a -t 10.0.0.88:80 -r {a} -g -w {w}"));
    }
    let vip: SocketAddr = "10.0.0.88:80".parse().unwrap();
    let src: IpAddr = "10.0.0.100".parse().unwrap();
    let (got, locals): (Vec<String>, Vec<SocketAddr>) =
        ns.run(|| (0..12).map(|_| land(src, vip)).unzip());
    let want: Vec<String> = locals
        .iter()
        .map(|l| model.tcp(*l, vip).unwrap().ip().to_string())
        .collect();
    assert_eq!(got, want, "wrr 2/5/5 order through the script's VIP");
    let ln = d.text("-Ln");
    let total: u64 = listing::dests(&ln).iter().map(|r| r.active + r.inact).sum();
    assert_eq!(total, 12, "{ln}");
    drop(rs);
}

/// IPv6 services on [::1]: UDP answered from the VIP, TCP in rr order with -Lnc entries,
/// and a PROXY v2 header for TCP6.
#[test]
fn ipv6_service_on_loopback() {
    let ip6: IpAddr = "::1".parse().unwrap();
    let rs: Vec<TcpServer> = (1..=2)
        .map(|i| TcpServer::start(SocketAddr::new(ip6, 0), &format!("rs{i}"), Behavior::Greet))
        .collect();
    let pp = TcpServer::start(SocketAddr::new(ip6, 0), "pp", Behavior::Proxy);
    let d = Director::start("ipv6", &[]);
    let (vip, vip_pp) = (SocketAddr::new(ip6, 18461), SocketAddr::new(ip6, 18462));
    d.ok(&format!("-A -t {vip} -s rr"));
    for s in &rs {
        d.ok(&format!("-a -t {vip} -r {} -m", s.addr));
    }
    d.ok(&format!("-A -t {vip_pp} -s rr"));
    d.ok(&format!(
        "-a -t {vip_pp} -r {} -m --proxy-protocol v2",
        pp.addr
    ));
    let u6 = UdpServer::start(SocketAddr::new(ip6, 0), "u6");
    let vip_udp = SocketAddr::new(ip6, 18463);
    d.ok(&format!("-A -u {vip_udp} -s rr"));
    d.ok(&format!("-a -u {vip_udp} -r {} -m", u6.addr));
    assert_eq!(udp_who(&net::udp_from(ip6, 0), vip_udp, b"?"), "u6");
    let mut held = Vec::new();
    let mut got = Vec::new();
    for _ in 0..4 {
        let mut s = net::connect_from(ip6, 0, vip).unwrap();
        got.push(who(&greeting(&mut s)));
        held.push(s);
    }
    assert_eq!(got, ["rs2", "rs1", "rs2", "rs1"]);
    let local = held[0].local_addr().unwrap();
    let listed = poll(|| {
        listing::conns(&d.text("-Lnc")).iter().any(|r| {
            r.source == local.to_string()
                && r.virt == vip.to_string()
                && r.dest == rs[1].addr.to_string()
                && r.state == "ESTABLISHED"
        })
    });
    assert!(listed, "-Lnc lists {local}:\n{}", d.text("-Lnc"));
    let mut s = net::connect_from(ip6, 0, vip_pp).unwrap();
    let client = s.local_addr().unwrap();
    assert!(greeting(&mut s).starts_with("pp "));
    let h = pp.seen()[0].proxy.clone().unwrap().expect("a v2 header");
    assert_eq!((h.version, h.transport.as_str()), (2, "TCP6"));
    assert_eq!((h.src, h.dst), (Some(client), Some(vip_pp)));
}

/// -Lnc shows ESTABLISHED while a relayed connection is open (ActiveConn 1), a closing
/// state after it closed (InActConn 1); -D removes the listener at once.
#[test]
fn connection_listing_follows_a_relayed_connection() {
    let b = net::subnet();
    let rs = tcp_servers(b, 1, Behavior::Greet);
    let d = Director::start("lnc", &[]);
    let vip = net::sa(b, 0, 100, 80);
    d.ok(&format!("-A -t {vip} -s rr"));
    d.ok(&format!("-a -t {vip} -r {} -m", rs[0].addr));
    let mut s = net::connect_from(net::v4(b, 50, 2), 0, vip).unwrap();
    let local = s.local_addr().unwrap();
    greeting(&mut s);
    let entry = |d: &Director| {
        listing::conns(&d.text("-Lnc"))
            .into_iter()
            .find(|r| r.source == local.to_string())
    };
    let counters = |d: &Director| {
        let r = listing::dests(&d.text("-Ln")).remove(0);
        (r.active, r.inact)
    };
    let open =
        poll(|| entry(&d).is_some_and(|r| r.state == "ESTABLISHED") && counters(&d) == (1, 0));
    let row = entry(&d);
    assert!(open, "{row:?} {:?}", counters(&d));
    let row = row.unwrap();
    assert_eq!(
        (row.proto.as_str(), row.virt.clone(), row.dest.clone()),
        ("TCP", vip.to_string(), rs[0].addr.to_string())
    );
    drop(s);
    let closed =
        poll(|| entry(&d).is_some_and(|r| listing::is_closing(&r.state)) && counters(&d) == (0, 1));
    assert!(closed, "{:?} {:?}", entry(&d), counters(&d));
    d.ok(&format!("-D -t {vip}"));
    let gone = net::connect_from(net::v4(b, 50, 2), 0, vip);
    assert!(
        matches!(&gone, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "-D returned but the VIP still accepts: {gone:?}"
    );
}

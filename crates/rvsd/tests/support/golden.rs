//! Kernel transcripts replayed through rvsd's data plane. rvs-core's golden files
//! (`crates/rvs-core/tests/golden/GROUP.golden`) record, for scripted ipvsadm commands and
//! client connections, which real server the real kernel IPVS chose, and the counters and
//! connection entries at each `check`. A scenario is replayed here with real connections on
//! loopback: the oracle's addresses move into the test's `127.B.0.0/16` (client and VIP
//! `192.168.C.D` → `127.B.C.D`, real server `10.1.I.2` → `127.B.10.I`), real servers greet
//! with `rsI PORT` as the oracle's did, and every choice, `-Ln` counter and `-Lnc` entry
//! must equal the recording; `stats` events compare the Conns column, `sleep` sleeps.
//!
//! Only decisions that do not hash addresses can be replayed this way (rr, wrr, the
//! least-connection family, fo/ovf, thresholds, persistence by client identity; sh/mh/dh
//! hash the moved addresses), and not `sysctl` events, fwmark services or port-0 services
//! (a userspace data plane serves neither). A client port below 32768 was fixed by the
//! scenario and is used again; others are ephemeral and matched to the recording by event.

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};

use super::director::Director;
use super::listing::{self, ConnRow, DestRow};
use super::net::{self, Got};
use super::servers::{Behavior, TcpServer, UdpServer};
use super::wait::poll;

/// Where the oracle's addresses go.
#[derive(Clone, Copy, Debug)]
pub struct Map {
    /// the test's second octet
    pub b: u8,
}

impl Map {
    /// An oracle address in the test's subnet.
    pub fn ip(&self, ip: Ipv4Addr) -> Ipv4Addr {
        match ip.octets() {
            [192, 168, c, d] => Ipv4Addr::new(127, self.b, c, d),
            [10, 1, i, 2] => Ipv4Addr::new(127, self.b, 10, i),
            _ => panic!("no loopback place for {ip}"),
        }
    }

    /// `ADDR` or `ADDR:PORT` of the oracle mapped; any other word unchanged.
    pub fn word(&self, w: &str) -> String {
        let (addr, port) = match w.split_once(':') {
            Some((a, p)) => (a, Some(p)),
            None => (w, None),
        };
        match addr.parse::<Ipv4Addr>() {
            Ok(ip) if matches!(ip.octets(), [192, 168, ..] | [10, 1, _, 2]) => match port {
                Some(p) => format!("{}:{p}", self.ip(ip)),
                None => self.ip(ip).to_string(),
            },
            _ => w.to_string(),
        }
    }

    fn rs_addr(&self, i: u8, port: u16) -> SocketAddr {
        SocketAddr::new(Ipv4Addr::new(127, self.b, 10, i).into(), port)
    }
}

/// One event of a transcript.
#[derive(Clone, Debug)]
enum Step {
    Adm {
        args: Vec<String>,
        status: i32,
    },
    Conn {
        id: String,
        udp: bool,
        src: SocketAddr,
        dst: SocketAddr,
        hold: bool,
        want: String,
    },
    Close {
        id: String,
    },
    Sleep(std::time::Duration),
    Stats(Vec<String>),
    Check {
        dests: Vec<String>,
        conns: Vec<String>,
    },
}

/// A scenario of a transcript: the number of real servers and its events.
struct Scenario {
    servers: u8,
    steps: Vec<Step>,
}

fn golden_path(group: &str) -> String {
    format!(
        "{}/../rvs-core/tests/golden/{group}.golden",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn parse_event(words: &[&str]) -> Option<Step> {
    match words {
        [_, "ipvsadm", args @ .., "=>", status] => Some(Step::Adm {
            args: args.iter().map(|s| s.to_string()).collect(),
            status: status.parse().unwrap(),
        }),
        [_, "conn", id, proto, src, dst, mode, "=>", want @ ..] => Some(Step::Conn {
            id: id.to_string(),
            udp: *proto == "udp",
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            hold: *mode == "hold",
            want: want[0].to_string(),
        }),
        [_, "close", id] => Some(Step::Close { id: id.to_string() }),
        [_, "sleep", secs] => Some(Step::Sleep(std::time::Duration::from_secs_f64(
            secs.parse().unwrap(),
        ))),
        [_, "stats"] => Some(Step::Stats(Vec::new())),
        [_, "check"] => Some(Step::Check {
            dests: Vec::new(),
            conns: Vec::new(),
        }),
        [_, kind, ..] => panic!("transcript event {kind} is not replayed here: {words:?}"),
        _ => None,
    }
}

fn load(group: &str, name: &str) -> Scenario {
    let text = std::fs::read_to_string(golden_path(group)).expect("golden transcript");
    let servers = text
        .lines()
        .find_map(|l| l.strip_prefix("topo nat "))
        .expect("a nat topology")
        .trim()
        .parse()
        .unwrap();
    let mut steps = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if let Some(s) = line.strip_prefix("scenario ") {
            inside = s.trim() == name;
            continue;
        }
        if !inside {
            continue;
        }
        if line == "end" {
            break;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if line.starts_with('@') {
            steps.extend(parse_event(&words));
        } else {
            match (steps.last_mut(), words.first()) {
                (Some(Step::Check { dests, .. }), Some(&"dest")) => {
                    dests.push(line.trim().to_string())
                }
                (Some(Step::Check { conns, .. }), Some(&"conn")) => {
                    conns.push(line.trim().to_string())
                }
                (Some(Step::Stats(rows)), Some(&"stats")) => rows.push(line.trim().to_string()),
                _ => {}
            }
        }
    }
    assert!(!steps.is_empty(), "scenario {name} not in {group}");
    Scenario { servers, steps }
}

/// A connection entry as compared: closing TCP states are one class (the proxy may see
/// the two FINs in either order), the expiry is left out.
fn conn_key(proto: &str, state: &str, src: &str, virt: &str, dest: &str) -> String {
    let class = if listing::is_closing(state) {
        "closing"
    } else {
        state
    };
    format!("{proto} {class} {src} {virt} {dest}")
}

fn dest_key(r: &DestRow) -> String {
    format!(
        "{} {} {} weight={} active={} inact={} persist={}",
        r.service,
        r.addr,
        r.fwd,
        r.weight,
        r.active,
        r.inact,
        r.persist.unwrap_or(0)
    )
}

/// Differences after which a replay stops.
const MAX_PROBLEMS: usize = 6;

/// Replays one scenario against a fresh rvsd.
struct Replay {
    d: Director,
    map: Map,
    /// the oracle's client `addr:port` of each connection → this run's
    ports: HashMap<String, SocketAddr>,
    held: HashMap<String, (TcpStream, SocketAddr)>,
    problems: Vec<String>,
    _tcp: Vec<TcpServer>,
    _udp: Vec<UdpServer>,
}

/// Replay scenario `name` of `GROUP.golden`; panics with every difference found.
pub fn replay(group: &str, name: &str) {
    let scn = load(group, name);
    let map = Map { b: net::subnet() };
    let mut ports = BTreeSet::from([80u16]);
    for step in &scn.steps {
        match step {
            Step::Conn { dst, .. } => {
                ports.insert(dst.port());
            }
            Step::Adm { args, .. } => {
                for w in args {
                    if let Some((_, p)) = w.split_once(':') {
                        ports.extend(p.parse::<u16>().ok());
                    }
                }
            }
            _ => {}
        }
    }
    let (mut tcp, mut udp) = (Vec::new(), Vec::new());
    for i in 1..=scn.servers {
        for &p in &ports {
            let name = format!("rs{i}");
            tcp.push(TcpServer::start(map.rs_addr(i, p), &name, Behavior::Greet));
            udp.push(UdpServer::start(map.rs_addr(i, p), &name));
        }
    }
    let mut r = Replay {
        d: Director::start(&format!("golden-{name}"), &[]),
        map,
        ports: HashMap::new(),
        held: HashMap::new(),
        problems: Vec::new(),
        _tcp: tcp,
        _udp: udp,
    };
    for step in &scn.steps {
        r.step(step);
        // past a few differences the rest only repeats them (and each can cost a wait)
        if r.problems.len() >= MAX_PROBLEMS {
            r.problems.push("… replay stopped here".into());
            break;
        }
    }
    r.held.clear();
    assert!(
        r.problems.is_empty(),
        "{group}/{name}: {} differences from the kernel's transcript:\n{}",
        r.problems.len(),
        r.problems.join("\n")
    );
}

impl Replay {
    fn step(&mut self, step: &Step) {
        match step {
            Step::Adm { args, status } => {
                let mapped: Vec<String> = args.iter().map(|w| self.map.word(w)).collect();
                let words: Vec<&str> = mapped.iter().map(String::as_str).collect();
                let out = self.d.adm(&words);
                if out.status != *status {
                    self.problems.push(format!(
                        "rvsadm {}: status {} (kernel {status}) {}",
                        mapped.join(" "),
                        out.status,
                        out.stderr.trim_end()
                    ));
                }
            }
            Step::Conn {
                id,
                udp,
                src,
                dst,
                hold,
                want,
            } => {
                let got = if *udp {
                    self.udp(*src, *dst, want)
                } else {
                    self.tcp(id, *src, *dst, *hold)
                };
                if &got != want {
                    self.problems
                        .push(format!("conn {id} ({src} -> {dst}): {got}, kernel {want}"));
                }
            }
            Step::Close { id } => {
                if let Some((stream, local)) = self.held.remove(id) {
                    drop(stream);
                    self.wait_state(local, "closing", listing::is_closing);
                }
            }
            Step::Sleep(d) => std::thread::sleep(*d),
            Step::Stats(rows) => self.stats(rows),
            Step::Check { dests, conns } => self.check(dests, conns),
        }
    }

    /// The oracle's name for a greeting `rsI PORT`.
    fn oracle_rs(line: &str) -> String {
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            [name, port] if name.starts_with("rs") => format!("10.1.{}.2:{port}", &name[2..]),
            _ => format!("unexpected greeting {line:?}"),
        }
    }

    fn tcp(&mut self, id: &str, src: SocketAddr, dst: SocketAddr, hold: bool) -> String {
        let from = self.map.word(&src.ip().to_string()).parse().unwrap();
        let to: SocketAddr = self.map.word(&dst.to_string()).parse().unwrap();
        let mut s = match net::connect_from(from, fixed_port(src), to) {
            Ok(s) => s,
            // refused, or reset before connect returned: no destination
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                return "none".into()
            }
            Err(e) => return format!("connect error {e}"),
        };
        let local = s.local_addr().unwrap();
        self.ports.insert(src.to_string(), local);
        let got = match net::read_line(&mut s) {
            Got::Line(l) => Self::oracle_rs(&l),
            Got::Eof | Got::Reset => return "none".into(),
            other => return format!("{other:?}"),
        };
        if hold {
            self.wait_state(local, "ESTABLISHED", |s| s == "ESTABLISHED");
            self.held.insert(id.to_string(), (s, local));
        } else {
            drop(s);
            self.wait_state(local, "closing", listing::is_closing);
        }
        got
    }

    fn udp(&mut self, src: SocketAddr, dst: SocketAddr, want: &str) -> String {
        let from = self.map.word(&src.ip().to_string()).parse().unwrap();
        let to: SocketAddr = self.map.word(&dst.to_string()).parse().unwrap();
        let sock = net::udp_from(from, fixed_port(src));
        self.ports
            .insert(src.to_string(), sock.local_addr().unwrap());
        // connected: only the VIP's answers count, and a port unreachable (no service on
        // the VIP at all) ends the wait at once; a director that drops is only silent
        sock.connect(to).unwrap();
        let wait = if want == "none" { 300 } else { 3000 };
        sock.set_read_timeout(Some(std::time::Duration::from_millis(wait)))
            .unwrap();
        sock.send(b"?").expect("udp send");
        let mut buf = [0u8; 512];
        match sock.recv(&mut buf) {
            Ok(n) => Self::oracle_rs(String::from_utf8_lossy(&buf[..n]).trim_end()),
            Err(_) => "none".into(),
        }
    }

    /// Wait until the entry of client `local` is in a state `ok` accepts (as the oracle's
    /// driver waited for the kernel's entry).
    fn wait_state(&mut self, local: SocketAddr, what: &str, ok: fn(&str) -> bool) {
        let src = local.to_string();
        let mut last = String::new();
        let reached = poll(|| {
            last = self.d.text("-Lnc");
            listing::conns(&last)
                .iter()
                .any(|c| c.source == src && ok(&c.state))
        });
        if !reached {
            self.problems
                .push(format!("entry of {src} never {what}; -Lnc:\n{last}"));
        }
    }

    fn expected(&self, dests: &[String], conns: &[String]) -> (Vec<String>, Vec<String>) {
        let mut want_dests: Vec<String> = dests
            .iter()
            .map(|l| {
                let w: Vec<String> = l.split_whitespace().map(|w| self.map.word(w)).collect();
                w[1..].join(" ")
            })
            .collect();
        let mut want_conns: Vec<String> = conns
            .iter()
            .map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                let src = match self.ports.get(w[4]) {
                    Some(ours) => ours.to_string(),
                    None => self.map.word(w[4]),
                };
                conn_key(w[1], w[2], &src, &self.map.word(w[5]), &self.map.word(w[6]))
            })
            .collect();
        want_dests.sort();
        want_conns.sort();
        (want_dests, want_conns)
    }

    fn check(&mut self, dests: &[String], conns: &[String]) {
        let want = self.expected(dests, conns);
        let mut seen = (Vec::new(), Vec::new());
        let same = poll(|| {
            let ln = listing::dests(&self.d.text("-Ln"));
            let persist = listing::dests(&self.d.text("-Ln --persistent-conn"));
            let lnc = self.d.text("-Lnc");
            let mut d: Vec<String> = ln
                .into_iter()
                .map(|mut r| {
                    r.persist = persist
                        .iter()
                        .find(|p| (&p.service, &p.addr) == (&r.service, &r.addr))
                        .and_then(|p| p.persist);
                    dest_key(&r)
                })
                .collect();
            let mut c: Vec<String> = listing::conns(&lnc).iter().map(row_key).collect();
            d.sort();
            c.sort();
            seen = (d, c);
            seen == want
        });
        if !same {
            self.problems.push(format!(
                "check: real servers\n  rvsd:   {:?}\n  kernel: {:?}\nentries only in rvsd: {:?}\nentries only in the kernel: {:?}",
                seen.0,
                want.0,
                minus(&seen.1, &want.1),
                minus(&want.1, &seen.1)
            ));
        }
    }
}

impl Replay {
    /// The Conns column of every service and real server, after the estimator's next
    /// sample (listed counters are its 2-second samples, so the oracle's driver slept 2.2 s).
    fn stats(&mut self, rows: &[String]) {
        std::thread::sleep(std::time::Duration::from_millis(2200));
        let mut want: Vec<String> = rows
            .iter()
            .map(|l| {
                let w: Vec<String> = l.split_whitespace().map(|w| self.map.word(w)).collect();
                w[1..].join(" ")
            })
            .collect();
        want.sort();
        let mut seen = Vec::new();
        let same = poll(|| {
            let listed = self.d.text("-Ln --stats --exact");
            seen = listing::stats(&listed)
                .into_iter()
                .map(|r| match r.dest {
                    Some(d) => format!("{} {d} conns={}", r.service, r.conns),
                    None => format!("{} conns={}", r.service, r.conns),
                })
                .collect();
            seen.sort();
            seen == want
        });
        if !same {
            self.problems.push(format!(
                "stats (Conns):\n  rvsd:   {seen:?}\n  kernel: {want:?}"
            ));
        }
    }
}

/// The client port a scenario fixed (the oracle's ephemeral ports start at 32768): used
/// again, on the test's address, where the scenario reuses it; 0 (any) otherwise.
fn fixed_port(src: SocketAddr) -> u16 {
    if src.port() < 32768 {
        src.port()
    } else {
        0
    }
}

fn row_key(c: &ConnRow) -> String {
    conn_key(&c.proto, &c.state, &c.source, &c.virt, &c.dest)
}

/// The elements of `a` not matched by one of `b` (multiset difference).
fn minus(a: &[String], b: &[String]) -> Vec<String> {
    let mut rest = b.to_vec();
    a.iter()
        .filter(|x| match rest.iter().position(|y| y == *x) {
            Some(i) => {
                rest.swap_remove(i);
                false
            }
            None => true,
        })
        .cloned()
        .collect()
}

//! The driver shared by every test that replays the kernel transcripts of
//! `crates/rvs-core/tests/golden/`: it applies each `ipvsadm` event to an
//! `rvs_core::ipvs::Ipvs`, turns each `conn` event into the packet exchange the kernel saw (both
//! directions for NAT, the client's packets only for DR/TUN) and checks the choice, and hands
//! every `check` and `stats` event to a [`Checks`] implementation: the core's replay compares
//! counters and connection entries, the renderer's replay compares listings.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::ipvsadm::{self, Cmd};
use rvs_core::datapath::{Packet, TcpFlags, Verdict};
use rvs_core::ipvs::{Config, Ipvs};
use rvs_core::model::{Forward, Protocol, ServiceKey};
use rvs_core::time::Tick;

/// What a replay compares at the transcript's `check` and `stats` events.
pub trait Checks {
    /// `@MS check` with its indented lines.
    fn check(&mut self, r: &mut Replay, line: usize, now: Tick, extra: &[&str]);
    /// `@MS stats` with its indented lines.
    fn stats(&mut self, r: &mut Replay, line: usize, now: Tick, extra: &[&str]);
}

/// Seconds of slack allowed between a kernel expire column and ours (the VM's packets of one
/// event are spread over a few hundred ms; ours all happen at the event's timestamp).
pub const EXPIRE_SLACK: i64 = 2;

#[derive(Clone, Debug)]
pub struct Flow {
    pub proto: Protocol,
    pub caddr: IpAddr,
    pub cport: u16,
    pub vaddr: IpAddr,
    pub vport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    pub nat: bool,
    /// what every datagram of the client carries (`callid=`), empty otherwise
    pub payload: Vec<u8>,
}

/// The request the recorder's client sends for `callid=TEXT` (`None` for `callid=-`).
pub fn sip_options(vaddr: &str, call_id: Option<&str>) -> Vec<u8> {
    let hdr = call_id.map_or(String::new(), |c| format!("Call-ID: {c}\r\n"));
    format!("OPTIONS sip:rvs@{vaddr} SIP/2.0\r\n{hdr}CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
        .into_bytes()
}

pub struct Replay {
    pub file: String,
    pub ipvs: Ipvs,
    pub base: u64,
    pub last: u64,
    pub scenario: String,
    pub flows: HashMap<String, Flow>,
    pub services: Vec<ServiceKey>,
    /// `marks PREFIX/LEN MARK` lines of the topology: packets to PREFIX carry MARK
    pub marks: Vec<(IpAddr, u8, u32)>,
    pub failures: Vec<String>,
    pub decisions: usize,
    /// listings compared (the renderer's replay counts them)
    pub compared: usize,
}

pub fn addr_port(s: &str) -> (IpAddr, u16) {
    if let Some(rest) = s.strip_prefix('[') {
        let (a, p) = rest.split_once("]:").expect("[addr]:port");
        return (a.parse().expect("addr"), p.parse().expect("port"));
    }
    let (a, p) = s.rsplit_once(':').expect("addr:port");
    (a.parse().expect("addr"), p.parse().expect("port"))
}

/// The address part of `addr:port` / `[addr]:port` as written.
pub fn vip_text(s: &str) -> String {
    let (a, _) = s.rsplit_once(':').expect("addr:port");
    a.trim_start_matches('[').trim_end_matches(']').to_string()
}

pub fn fmt_ap(a: &IpAddr, p: u16) -> String {
    match a {
        IpAddr::V4(v) => format!("{v}:{p}"),
        IpAddr::V6(v) => format!("[{v}]:{p}"),
    }
}

impl Replay {
    pub fn new(file: &str) -> Replay {
        Replay {
            file: file.to_string(),
            ipvs: Ipvs::new(Config::default()),
            base: 1_000_000,
            last: 1_000_000,
            scenario: String::new(),
            flows: HashMap::new(),
            services: Vec::new(),
            marks: Vec::new(),
            failures: Vec::new(),
            decisions: 0,
            compared: 0,
        }
    }

    pub fn fail(&mut self, line: usize, msg: String) {
        self.failures.push(format!(
            "{}:{} [{}] {}",
            self.file,
            line + 1,
            self.scenario,
            msg
        ));
    }

    pub fn at(&mut self, ms: u64) -> Tick {
        let t = self.base + ms;
        self.last = self.last.max(t);
        Tick(self.last)
    }

    pub fn run(&mut self, text: &str, checks: &mut dyn Checks) {
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i];
            if let Some(spec) = line.strip_prefix("marks ") {
                let w: Vec<&str> = spec.split_whitespace().collect();
                let (net, len) = w[0].split_once('/').expect("prefix/len");
                self.marks.push((
                    net.parse().expect("prefix"),
                    len.parse().expect("len"),
                    w[1].parse().expect("mark"),
                ));
            } else if let Some(name) = line.strip_prefix("scenario ") {
                self.scenario = name.trim().to_string();
                // the recording driver gives every scenario a fresh director namespace, so a
                // fresh IPVS instance: nothing carries over between scenarios
                self.ipvs = Ipvs::new(Config::default());
                self.base = self.last + 2_000;
                self.last = self.base;
                // the director's timers (estimator, trash) start with the namespace
                self.ipvs.advance(Tick(self.base));
                self.flows.clear();
                self.services.clear();
            } else if let Some(rest) = line.strip_prefix('@') {
                let (ms, ev) = rest.split_once(' ').expect("@MS event");
                let now = self.at(ms.parse().expect("ms"));
                let extra: Vec<&str> = lines[i + 1..]
                    .iter()
                    .take_while(|l| l.starts_with("  "))
                    .copied()
                    .collect();
                self.event(i, ev, now, &extra, checks);
                i += extra.len();
            }
            i += 1;
        }
    }

    fn event(&mut self, line: usize, ev: &str, now: Tick, extra: &[&str], checks: &mut dyn Checks) {
        let words: Vec<&str> = ev.split_whitespace().collect();
        match words[0] {
            "ipvsadm" => self.ipvsadm(line, &words[1..], now, extra),
            "conn" => self.conn(line, &words[1..], now),
            "close" => self.close(words[1], now),
            "sleep" => self.ipvs.advance(now),
            "check" => checks.check(self, line, now, extra),
            "sysctl" => self.sysctl(line, words[1], words[2]),
            "stats" => checks.stats(self, line, now, extra),
            other => panic!("unknown event {other}"),
        }
    }

    pub fn ipvsadm(&mut self, line: usize, args: &[&str], now: Tick, extra: &[&str]) {
        let sep = args.iter().position(|w| *w == "=>").expect("=> status");
        let status: i32 = args[sep + 1].parse().expect("status");
        let out: Vec<String> = extra
            .iter()
            .filter_map(|l| l.strip_prefix("  | "))
            .map(str::to_string)
            .collect();
        let Some(cmd) = ipvsadm::parse(&args[..sep]) else {
            if status == 0 {
                self.fail(line, format!("replay cannot read: {:?}", &args[..sep]));
            }
            return; // refused by ipvsadm itself: nothing reached the kernel
        };
        if status == 2 {
            return; // ipvsadm's own option checks refused it
        }
        // The recording kernel (6.1) predates `twos` (Linux 6.7); rvs has it, so the one
        // refusal that depends on the kernel's age is expected to differ.
        if status != 0 && args.windows(2).any(|w| w == ["-s", "twos"]) {
            return;
        }
        let res = self.apply(cmd, now);
        match (status, res) {
            (0, Ok(())) => {}
            (0, Err(e)) => self.fail(line, format!("kernel accepted, core refused: {e}")),
            (_, Ok(())) => self.fail(line, format!("kernel refused ({out:?}), core accepted")),
            (_, Err(e)) => {
                let text = e.to_string();
                if !out.contains(&text) {
                    self.fail(line, format!("error text: kernel {out:?}, core {text:?}"));
                }
            }
        }
    }

    pub fn apply(&mut self, cmd: Cmd, now: Tick) -> Result<(), rvs_core::IpvsError> {
        match cmd {
            Cmd::AddService(k, c) => {
                self.services.push(k);
                self.ipvs.add_service(k, c).map(|_| ())
            }
            Cmd::EditService(k, c) => self.ipvs.edit_service(&k, c),
            Cmd::DelService(k) => self.ipvs.del_service(&k, now),
            Cmd::Flush => {
                self.ipvs.flush(now);
                Ok(())
            }
            Cmd::AddDest(k, d) => self.ipvs.add_dest(&k, d).map(|_| ()),
            Cmd::EditDest(k, d) => self.ipvs.edit_dest(&k, d),
            Cmd::DelDest(k, a, p) => self.ipvs.del_dest(&k, &a, p, now),
            Cmd::Zero(k) => self.ipvs.zero(k.as_ref()),
            Cmd::SetTimeouts(a, b, c) => self.ipvs.set_timeouts(a, b, c),
            Cmd::List(k) => self
                .ipvs
                .service(&k)
                .map(|_| ())
                .ok_or(rvs_core::IpvsError::NoSuchService),
            Cmd::Other => Ok(()),
        }
    }

    /// `conn ID PROTO CADDR:CPORT VADDR:VPORT MODE => DEST|none` (fwmark given as `mark=N`).
    pub fn conn(&mut self, line: usize, w: &[&str], now: Tick) {
        let id = w[0].to_string();
        let proto = if w[1] == "udp" {
            Protocol::Udp
        } else {
            Protocol::Tcp
        };
        let (caddr, cport) = addr_port(w[2]);
        let (vaddr, vport) = addr_port(w[3]);
        let mode = w[4];
        let arrow = w.iter().position(|x| *x == "=>").expect("=>");
        // `none (dropped)`: IPVS dropped the packet (no ICMP); `none`: refused with ICMP
        let expect = w[arrow + 1..].join(" ");
        let mark = w[..arrow]
            .iter()
            .find_map(|x| x.strip_prefix("mark="))
            .map(|m| m.parse::<u32>().expect("mark"))
            .unwrap_or_else(|| self.mark_for(&vaddr));
        let payload = w[..arrow]
            .iter()
            .find_map(|x| x.strip_prefix("callid="))
            .map(|c| sip_options(&vip_text(w[3]), (c != "-").then_some(c)))
            .unwrap_or_default();
        let first = match proto {
            Protocol::Udp => Packet::udp(caddr, cport, vaddr, vport),
            _ => Packet::tcp(caddr, cport, vaddr, vport, TcpFlags::SYN),
        }
        .mark(mark);
        self.decisions += 1;
        let got = match self.ipvs.packet_in_with_payload(&first, &payload, now) {
            Verdict::Forward(f) => {
                let flow = Flow {
                    proto,
                    caddr,
                    cport,
                    vaddr,
                    vport,
                    daddr: f.daddr,
                    dport: f.dport,
                    nat: f.fwd == Forward::Masq,
                    payload,
                };
                self.exchange(&flow, mode, mark, now);
                self.flows.insert(id, flow);
                // the transcript names the real server as configured (port 0 stays 0)
                let d = self.ipvs.dest(f.dest).expect("chosen destination exists");
                fmt_ap(&d.addr, d.port)
            }
            Verdict::Drop => "none (dropped)".to_string(),
            Verdict::Reject | Verdict::Accept => "none".to_string(),
        };
        if got != expect {
            self.fail(
                line,
                format!("conn {}: kernel chose {expect}, core {got}", w[0]),
            );
        }
    }

    /// The fwmark the recorded topology put on packets to `vaddr` (`marks PREFIX N` lines).
    pub fn mark_for(&self, vaddr: &IpAddr) -> u32 {
        self.marks
            .iter()
            .find(|(net, len, _)| in_prefix(vaddr, net, *len))
            .map(|m| m.2)
            .unwrap_or(0)
    }

    pub fn pkt_in(&mut self, f: &Flow, flags: TcpFlags, mark: u32, now: Tick) {
        let p = match f.proto {
            Protocol::Udp => Packet::udp(f.caddr, f.cport, f.vaddr, f.vport),
            _ => Packet::tcp(f.caddr, f.cport, f.vaddr, f.vport, flags),
        };
        self.ipvs
            .packet_in_with_payload(&p.mark(mark), &f.payload, now);
    }

    pub fn pkt_out(&mut self, f: &Flow, flags: TcpFlags, now: Tick) {
        if !f.nat {
            return; // DR/TUN replies bypass the director
        }
        let p = match f.proto {
            Protocol::Udp => Packet::udp(f.daddr, f.dport, f.caddr, f.cport),
            _ => Packet::tcp(f.daddr, f.dport, f.caddr, f.cport, flags),
        };
        self.ipvs.packet_out(&p, now);
    }

    /// After the first packet: the rest of what the kernel saw for this exchange.
    pub fn exchange(&mut self, f: &Flow, mode: &str, mark: u32, now: Tick) {
        if f.proto == Protocol::Udp {
            self.pkt_out(f, TcpFlags::default(), now);
            return;
        }
        self.pkt_out(f, TcpFlags::SYN_ACK, now);
        self.pkt_in(f, TcpFlags::ACK, mark, now);
        self.pkt_out(f, TcpFlags::ACK, now); // the server's name line
        self.pkt_in(f, TcpFlags::ACK, mark, now);
        if mode == "close" {
            self.finish(f, mark, now);
        }
    }

    /// The client closes, the server answers with its own FIN.
    pub fn finish(&mut self, f: &Flow, mark: u32, now: Tick) {
        self.pkt_in(f, TcpFlags::FIN_ACK, mark, now);
        self.pkt_out(f, TcpFlags::FIN_ACK, now);
        self.pkt_in(f, TcpFlags::ACK, mark, now);
    }

    pub fn close(&mut self, id: &str, now: Tick) {
        if let Some(f) = self.flows.get(id).cloned() {
            if f.proto == Protocol::Tcp {
                let mark = self.mark_for(&f.vaddr);
                self.finish(&f, mark, now);
            }
        }
    }

    /// `sysctl NAME VALUE` (net.ipv4.vs.NAME in the recording director).
    pub fn sysctl(&mut self, line: usize, name: &str, value: &str) {
        let v: u8 = value.parse().expect("sysctl value");
        let s = self.ipvs.sysctls_mut();
        match name {
            "expire_quiescent_template" => s.expire_quiescent_template = v != 0,
            "expire_nodest_conn" => s.expire_nodest_conn = v != 0,
            "conn_reuse_mode" => s.conn_reuse_mode = v,
            "sloppy_tcp" => s.sloppy_tcp = v != 0,
            "sloppy_sctp" => s.sloppy_sctp = v != 0,
            other => self.fail(line, format!("replay does not know sysctl {other}")),
        }
    }

    pub fn find_service(&self, vspec: &[&str]) -> Option<ServiceKey> {
        let text = vspec.join(" ");
        self.ipvs
            .services()
            .map(|s| s.key)
            .find(|k| k.to_string() == text)
    }
}

pub fn in_prefix(a: &IpAddr, net: &IpAddr, len: u8) -> bool {
    match (a, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            u32::from(*a) & m == u32::from(*n) & m
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            u128::from(*a) & m == u128::from(*n) & m
        }
        _ => false,
    }
}

/// The transcripts, sorted by name.
pub fn golden_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rvs-core/tests/golden");
    let mut v: Vec<PathBuf> = fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "golden"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

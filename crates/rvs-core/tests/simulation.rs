//! Deterministic simulation of the IPVS engine.
//!
//! A seeded driver applies random control operations (services and real servers added,
//! edited and deleted, schedulers swapped, thresholds, weights, zeroing), random traffic (new
//! TCP and UDP connections from many clients, handshakes, data, FIN/RST from both sides) and
//! random clock jumps, and checks the engine's invariants after every step:
//!
//! - every destination's ActiveConn / InActConn / PersistConn and reference count equal what
//!   the live connection entries bound to it say;
//! - a newly scheduled (non-persistent) connection never went to a weight-0 server, nor to an
//!   OVERLOADed one for the schedulers that skip overloaded servers;
//! - no entry outlives its timeout: after `advance(now)` every entry expires in the future and
//!   no later than its timeout from now (templates: their persistence timeout or the 60 s
//!   linger);
//! - a server without an upper threshold is never OVERLOADed;
//! - the connection table never exceeds its capacity, and a full table refuses new entries
//!   without touching existing ones;
//! - the global connection counter equals the number of scheduled connections (zeroing moves
//!   only the zero point of what is listed);
//! - SIP persistence-engine templates carry their Call-ID exactly while they live, and the
//!   real-server table behind server-started connections holds exactly the live NAT servers.
//!
//! Some services use `--pe sip`; client datagrams carry a SIP request with one of a few
//! Call-IDs (or none), and NAT real servers also send datagrams of their own.
//!
//! A failure prints its seed and step; `SIM_SEED=<seed> cargo test --test simulation` replays
//! it exactly. `SIM_SEEDS=<n>` sets how many seeds the sweep runs (default 40).

use std::collections::BTreeMap;
use std::net::IpAddr;

use rvs_core::datapath::{Packet, TcpFlags, Verdict};
use rvs_core::dest::DestId;
use rvs_core::ipvs::{Config, Ipvs, Sysctls};
use rvs_core::model::*;
use rvs_core::rng::Rng;
use rvs_core::time::{Span, Tick};

const SCHEDS: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "sed", "nq", "fo", "ovf", "lblc", "lblcr", "dh", "sh", "mh", "twos",
];
const STEPS: usize = 1500;

#[derive(Clone, Copy, Debug)]
struct Flow {
    proto: Protocol,
    caddr: IpAddr,
    cport: u16,
    vaddr: IpAddr,
    vport: u16,
    daddr: IpAddr,
    dport: u16,
    nat: bool,
    mark: u32,
}

struct Sim {
    seed: u64,
    step: usize,
    rng: Rng,
    ipvs: Ipvs,
    now: Tick,
    flows: Vec<Flow>,
    scheduled: u64,
    log: Vec<String>,
}

fn services() -> Vec<ServiceKey> {
    vec![
        ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr: "10.0.0.1".parse().unwrap(),
            port: 80,
        },
        ServiceKey::Addr {
            proto: Protocol::Udp,
            addr: "10.0.0.1".parse().unwrap(),
            port: 53,
        },
        ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr: "10.0.0.2".parse().unwrap(),
            port: 0,
        },
        ServiceKey::Fwmark {
            af: Family::V4,
            mark: 7,
        },
        ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr: "2001:db8::1".parse().unwrap(),
            port: 443,
        },
    ]
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = Rng::seeded(seed);
        let max_conns = if rng.below(4) == 0 { 64 } else { 1 << 16 };
        let sysctls = Sysctls {
            expire_quiescent_template: rng.below(2) == 0,
            expire_nodest_conn: rng.below(2) == 0,
            ..Sysctls::default()
        };
        let ipvs = Ipvs::new(Config {
            max_conns,
            seed,
            sysctls,
            ..Config::default()
        });
        Sim {
            seed,
            step: 0,
            rng,
            ipvs,
            now: Tick::from_secs(1000),
            flows: Vec::new(),
            scheduled: 0,
            log: Vec::new(),
        }
    }

    fn pick<T: Clone>(&mut self, v: &[T]) -> T {
        v[self.rng.below(v.len() as u32) as usize].clone()
    }

    fn svc_conf(&mut self, key: &ServiceKey) -> ServiceConf {
        let sched = self.pick(SCHEDS);
        let mut c = ServiceConf::new(key.family(), sched);
        let must_persist = !key.is_fwmark() && key.port() == 0;
        if must_persist || self.rng.below(3) == 0 {
            c = c.persistent(1 + self.rng.below(400));
            if key.family() == Family::V4 && self.rng.below(2) == 0 {
                c.netmask = Netmask::V4(0xffff_ff00);
            }
        }
        if self.rng.below(3) == 0 {
            c.flags |= svc_flags::SCHED1;
        }
        if self.rng.below(3) == 0 {
            c.flags |= svc_flags::SCHED2;
        }
        if key.protocol() == Protocol::Udp && self.rng.below(3) == 0 {
            c.flags |= svc_flags::ONEPACKET;
        }
        if self.rng.below(4) == 0 {
            c.pe = Some("sip".into());
        }
        c
    }

    /// A SIP request with one of a few Call-IDs, or without one.
    fn sip_payload(&mut self) -> Vec<u8> {
        let hdr = match self.rng.below(8) {
            0 => String::new(),
            n => format!("Call-ID: call-{n}@pbx\r\n"),
        };
        format!("INVITE sip:x@10.0.0.1 SIP/2.0\r\n{hdr}CSeq: 1 INVITE\r\n\r\n").into_bytes()
    }

    fn dest_conf(&mut self, key: &ServiceKey) -> DestConf {
        let host = 1 + self.rng.below(6) as u8;
        let addr: IpAddr = match key.family() {
            Family::V4 => format!("10.1.0.{host}").parse().unwrap(),
            Family::V6 => format!("2001:db8:1::{host}").parse().unwrap(),
        };
        let fwd = self.pick(&[Forward::Masq, Forward::Route, Forward::Tunnel]);
        let port = if fwd == Forward::Masq {
            8000 + self.rng.below(2) as u16
        } else {
            key.port()
        };
        let weight = self.pick(&[0, 1, 1, 2, 3, 5, 100]);
        let (u, l) = match self.rng.below(4) {
            0 => {
                let u = 1 + self.rng.below(6);
                (u, self.rng.below(u + 1))
            }
            _ => (0, 0),
        };
        DestConf::new(addr, port)
            .fwd(fwd)
            .weight(weight)
            .thresholds(u, l)
    }

    fn control(&mut self) {
        let keys = services();
        let key = self.pick(&keys);
        let now = self.now;
        match self.rng.below(10) {
            0 => {
                let c = self.svc_conf(&key);
                let _ = self.ipvs.add_service(key, c);
            }
            1 => {
                let c = self.svc_conf(&key);
                let _ = self.ipvs.edit_service(&key, c);
            }
            2 if self.rng.below(4) == 0 => {
                let _ = self.ipvs.del_service(&key, now);
            }
            3..=5 => {
                let d = self.dest_conf(&key);
                let _ = self.ipvs.add_dest(&key, d);
            }
            6 | 7 => {
                let d = self.dest_conf(&key);
                let _ = self.ipvs.edit_dest(&key, d);
            }
            8 => {
                let d = self.dest_conf(&key);
                let _ = self.ipvs.del_dest(&key, &d.addr, d.port, now);
            }
            _ => self.ipvs.zero(None).unwrap(),
        }
    }

    fn new_flow(&mut self) {
        let keys = services();
        let key = self.pick(&keys);
        let (proto, vaddr, vport, mark) = match key {
            ServiceKey::Addr { proto, addr, port } => {
                let p = if port == 0 {
                    1 + self.rng.below(3) as u16
                } else {
                    port
                };
                (proto, addr, p, 0)
            }
            ServiceKey::Fwmark { mark, .. } => {
                let a: IpAddr = format!("10.9.0.{}", 1 + self.rng.below(30))
                    .parse()
                    .unwrap();
                let proto = self.pick(&[Protocol::Tcp, Protocol::Udp]);
                (proto, a, 80, mark)
            }
        };
        let caddr: IpAddr = match vaddr {
            IpAddr::V4(_) => format!("192.168.{}.{}", self.rng.below(3), 1 + self.rng.below(40)),
            IpAddr::V6(_) => format!("2001:db8:c::{:x}", 1 + self.rng.below(40)),
        }
        .parse()
        .unwrap();
        let cport = 1024 + self.rng.below(200) as u16;
        let pkt = match proto {
            Protocol::Udp => Packet::udp(caddr, cport, vaddr, vport),
            _ => Packet::tcp(caddr, cport, vaddr, vport, TcpFlags::SYN),
        }
        .mark(mark);
        let payload = self.sip_payload();
        self.send_new(pkt, &payload, key);
    }

    /// Send a connection opener; check the choice and remember the flow.
    fn send_new(&mut self, pkt: Packet, payload: &[u8], key: ServiceKey) {
        // entries a previous packet expired "now" go first, as the kernel's timers would
        self.ipvs.advance(self.now);
        let before = self.snapshot_choice_rules(&key);
        let full_before = self.ipvs.conn_count();
        let v = self.ipvs.packet_in_with_payload(&pkt, payload, self.now);
        self.log.push(format!("{:?} -> {:?}", pkt, v));
        if let Verdict::Forward(f) = v {
            if f.new {
                self.scheduled += 1;
                if let Some((persistent, sched, rules)) = before {
                    if !persistent {
                        let (w, over) = rules
                            .get(&f.dest)
                            .copied()
                            .unwrap_or_else(|| self.fail("chose a server not in the list"));
                        if w <= 0 {
                            self.fail(&format!("{sched} chose weight-0 server {}", f.daddr));
                        }
                        if over && !matches!(sched.as_str(), "lblc" | "lblcr") {
                            self.fail(&format!("{sched} chose overloaded server {}", f.daddr));
                        }
                    }
                }
            }
            if f.conn.is_some() {
                self.flows.push(Flow {
                    proto: pkt.proto,
                    caddr: pkt.saddr,
                    cport: pkt.sport,
                    vaddr: pkt.daddr,
                    vport: pkt.dport,
                    daddr: f.daddr,
                    dport: f.dport,
                    nat: f.fwd == Forward::Masq,
                    mark: pkt.fwmark,
                });
            }
        } else if v == Verdict::Drop {
            // a full table refuses the connection; for a persistent service the kernel keeps
            // the template it made just before (`ip_vs_sched_persist`), nothing else changes
            let persistent = before.as_ref().is_some_and(|b| b.0);
            let grown = self.ipvs.conn_count().saturating_sub(full_before);
            if grown > usize::from(persistent) {
                self.fail("a refused connection added entries");
            }
        }
    }

    /// (persistent, scheduler, destination → (weight, overloaded)) of the service a packet
    /// would hit, before the decision.
    #[allow(clippy::type_complexity)]
    fn snapshot_choice_rules(
        &self,
        key: &ServiceKey,
    ) -> Option<(bool, String, BTreeMap<DestId, (i32, bool)>)> {
        let svc = self.ipvs.service(key)?;
        let rules = self
            .ipvs
            .service_dests(svc)
            .map(|d| (d.id, (d.weight, d.is_overloaded())))
            .collect();
        Some((svc.conf.is_persistent(), svc.conf.scheduler.clone(), rules))
    }

    fn traffic(&mut self) {
        if self.flows.is_empty() {
            return;
        }
        let i = self.rng.below(self.flows.len() as u32) as usize;
        let f = self.flows[i];
        let flags = self.pick(&[
            TcpFlags::ACK,
            TcpFlags::ACK,
            TcpFlags::FIN_ACK,
            TcpFlags::RST,
            TcpFlags::SYN,
            TcpFlags::SYN_ACK,
            TcpFlags::default(),
        ]);
        let outbound = f.nat && self.rng.below(2) == 0;
        let pkt = match (f.proto, outbound) {
            (Protocol::Udp, false) => Packet::udp(f.caddr, f.cport, f.vaddr, f.vport),
            (Protocol::Udp, true) => Packet::udp(f.daddr, f.dport, f.caddr, f.cport),
            (_, false) => Packet::tcp(f.caddr, f.cport, f.vaddr, f.vport, flags),
            (_, true) => Packet::tcp(f.daddr, f.dport, f.caddr, f.cport, flags),
        };
        let payload = self.sip_payload();
        let v = if outbound {
            self.ipvs.packet_out_with_payload(&pkt, &payload, self.now)
        } else {
            self.ipvs
                .packet_in_with_payload(&pkt.mark(f.mark), &payload, self.now)
        };
        if let Verdict::Forward(fw) = v {
            if fw.new {
                self.scheduled += 1;
            }
        }
        if self.rng.below(8) == 0 {
            self.flows.swap_remove(i);
        }
    }

    /// A NAT real server sends a datagram of its own to a client (SIP `conn_out`).
    fn server_datagram(&mut self) {
        let host = 1 + self.rng.below(6);
        let saddr: IpAddr = format!("10.1.0.{host}").parse().unwrap();
        let sport = self.pick(&[8000, 8001, 53]);
        let caddr: IpAddr = format!("192.168.{}.{}", self.rng.below(3), 1 + self.rng.below(40))
            .parse()
            .unwrap();
        let cport = 1024 + self.rng.below(200) as u16;
        let pkt = Packet::udp(saddr, sport, caddr, cport);
        let payload = self.sip_payload();
        let v = self.ipvs.packet_out_with_payload(&pkt, &payload, self.now);
        self.log.push(format!("{pkt:?} out -> {v:?}"));
        if let Verdict::Forward(f) = v {
            if f.new {
                self.scheduled += 1;
            }
            if let Some(id) = f.conn {
                let c = self.ipvs.conn_table().get(id).unwrap();
                self.flows.push(Flow {
                    proto: Protocol::Udp,
                    caddr,
                    cport,
                    vaddr: c.vaddr,
                    vport: c.vport,
                    daddr: saddr,
                    dport: sport,
                    nat: true,
                    mark: 0,
                });
            }
        }
    }

    /// Every SIP template's Call-ID is one the simulation sends.
    fn check_pe(&self) {
        for r in self.ipvs.conn_listing(self.now) {
            if let Some(pe) = self.ipvs.conn_pe(r.id) {
                let ok = pe.data.starts_with(b"call-") && pe.data.ends_with(b"@pbx");
                if !ok || r.client.1 != 0 {
                    self.fail(&format!("template {r:?} carries {pe:?}"));
                }
            }
        }
    }

    fn clock(&mut self) {
        let jump = match self.rng.below(10) {
            0 => Span::secs(u64::from(self.rng.below(3000))),
            1..=3 => Span::secs(u64::from(self.rng.below(130))),
            _ => Span(u64::from(self.rng.below(3000))),
        };
        self.now = self.now + jump;
        self.ipvs.advance(self.now);
    }

    fn fail(&self, what: &str) -> ! {
        let tail: Vec<&String> = self.log.iter().rev().take(8).collect();
        panic!(
            "simulation invariant broken: {what}\n  seed {} step {} (replay: SIM_SEED={} cargo test --test simulation)\n  last events (newest first): {tail:#?}",
            self.seed, self.step, self.seed
        );
    }

    fn step(&mut self) {
        match self.rng.below(20) {
            0..=2 => self.control(),
            3..=9 => self.new_flow(),
            10..=15 => self.traffic(),
            16 => self.server_datagram(),
            _ => self.clock(),
        }
        self.check();
        self.check_pe();
    }

    fn check(&self) {
        if let Err(e) = rvs_core::invariants::check(&self.ipvs, self.now) {
            self.fail(&e);
        }
        let total = self.ipvs.total_stats().total.conns;
        if total != self.scheduled {
            self.fail(&format!(
                "global conns counter {total} != scheduled {}",
                self.scheduled
            ));
        }
    }
}

fn run_seed(seed: u64) {
    let mut sim = Sim::new(seed);
    for step in 0..STEPS {
        sim.step = step;
        sim.step();
    }
}

#[test]
fn simulation_sweep() {
    if let Ok(s) = std::env::var("SIM_SEED") {
        run_seed(s.parse().expect("SIM_SEED is a number"));
        return;
    }
    let n: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    for seed in 0..n {
        run_seed(seed);
    }
}

#[test]
fn same_seed_same_run() {
    let run = |seed| {
        let mut sim = Sim::new(seed);
        for step in 0..400 {
            sim.step = step;
            sim.step();
        }
        (sim.log, sim.ipvs.conn_count())
    };
    assert_eq!(run(12345), run(12345));
}

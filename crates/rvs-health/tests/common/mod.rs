//! Configuration builders and a driver that runs the engine against simulated servers, with
//! time advanced by arguments (no clock, no sleeps).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use rvs_config::spec::{
    Check, CheckKind, Command, Loc, MiscCheck, RealServer, Sorry, Timing, VirtualService,
};
use rvs_core::model::{DestConf, Family, Forward, Protocol, ServiceConf, ServiceKey};
use rvs_core::time::Tick;
use rvs_health::{Action, Health, Outcome, ProbeRequest, RealId};

pub fn ip(last: u8) -> IpAddr {
    IpAddr::from([10, 0, 0, last])
}

pub fn key() -> ServiceKey {
    ServiceKey::Addr {
        proto: Protocol::Tcp,
        addr: "192.0.2.10".parse().unwrap(),
        port: 80,
    }
}

pub fn cmd(words: &str) -> Command {
    Command {
        argv: words.split(' ').map(String::from).collect(),
        shell: false,
        user: None,
        group: None,
    }
}

pub fn timing(delay_loop: u64, connect_timeout: u64, retry: u32, dbr: u64) -> Timing {
    Timing {
        delay_loop: Duration::from_millis(delay_loop),
        connect_timeout: Duration::from_millis(connect_timeout),
        retry,
        delay_before_retry: Duration::from_millis(dbr),
        warmup: Duration::ZERO,
    }
}

pub fn check(kind: CheckKind, t: Timing) -> Check {
    Check {
        loc: Loc::new("test.conf", 1, 1),
        kind,
        timing: t,
        connect: None,
        bind_addr: None,
        bind_port: None,
        bind_if: None,
        fwmark: None,
        log_all_failures: false,
    }
}

pub fn tcp(t: Timing) -> Check {
    check(CheckKind::Tcp, t)
}

pub fn misc(t: Timing, dynamic: bool) -> Check {
    check(
        CheckKind::Misc(MiscCheck {
            command: cmd("/bin/check"),
            timeout: t.connect_timeout,
            dynamic,
        }),
        t,
    )
}

pub fn real(last: u8, weight: i32, checks: Vec<Check>) -> RealServer {
    RealServer {
        loc: Loc::new("test.conf", 2, 1),
        dest: DestConf::new(ip(last), 80)
            .fwd(Forward::Masq)
            .weight(weight),
        inhibit_on_failure: false,
        alpha: false,
        notify_up: Some(cmd(&format!("/bin/up {last}"))),
        notify_down: Some(cmd(&format!("/bin/down {last}"))),
        checks,
        slow_start: None,
    }
}

pub fn service(reals: Vec<RealServer>) -> VirtualService {
    VirtualService {
        loc: Loc::new("test.conf", 1, 1),
        keys: vec![key()],
        conf: ServiceConf::new(Family::V4, "wlc"),
        reals,
        sorry: None,
        quorum: 1,
        hysteresis: 0,
        quorum_up: Some(cmd("/bin/quorum up")),
        quorum_down: Some(cmd("/bin/quorum down")),
        omega: false,
        quorum_down_at_start: false,
        passive: None,
    }
}

pub fn sorry(last: u8, inhibit: bool) -> Sorry {
    Sorry {
        loc: Loc::new("test.conf", 3, 1),
        dest: DestConf::new(ip(last), 80).fwd(Forward::Masq),
        inhibit,
        command: None,
    }
}

/// The engine, the time, every action with the time it was returned, and simulated servers:
/// a server in `dead` refuses (after `refuse_ms`) or, in `silent`, never answers; a server in
/// `weights` answers MISC dynamic probes with that weight.
pub struct Driver {
    pub h: Health,
    pub now: Tick,
    pub log: Vec<(Tick, Action)>,
    pub dead: BTreeSet<IpAddr>,
    pub silent: BTreeSet<IpAddr>,
    pub weights: BTreeMap<IpAddr, u32>,
    pub latency_ms: u64,
    pending: Vec<(Tick, u64, Outcome)>,
}

impl Driver {
    pub fn new(services: Vec<VirtualService>) -> Driver {
        let cfg = rvs_config::spec::Config {
            services,
            ..Default::default()
        };
        let mut h = Health::new(&cfg, 7, Tick::ZERO);
        let log = h
            .initial_actions()
            .into_iter()
            .map(|a| (Tick::ZERO, a))
            .collect();
        Driver {
            h,
            now: Tick::ZERO,
            log,
            dead: BTreeSet::new(),
            silent: BTreeSet::new(),
            weights: BTreeMap::new(),
            latency_ms: 5,
            pending: Vec::new(),
        }
    }

    fn answer(&self, req: &ProbeRequest) -> Option<(Outcome, u64)> {
        let addr = req.target.0;
        if self.silent.contains(&addr) {
            return None;
        }
        if self.dead.contains(&addr) {
            return Some((Outcome::Fail("connection refused".into()), 1));
        }
        match (self.weights.get(&addr), &req.spec.kind) {
            (Some(w), rvs_config::spec::CheckKind::Misc(_)) => {
                Some((Outcome::Weight(*w), self.latency_ms))
            }
            _ => Some((Outcome::Ok, self.latency_ms)),
        }
    }

    /// Run every event up to `end` (inclusive).
    pub fn run_until(&mut self, end: Tick) {
        for _ in 0..1_000_000 {
            for req in self.h.due_probes(self.now) {
                if let Some((o, lat)) = self.answer(&req) {
                    self.pending
                        .push((self.now + rvs_core::time::Span(lat), req.id, o));
                }
            }
            let next_report = self.pending.iter().map(|p| p.0).min();
            let next = [self.h.next_wakeup(), next_report]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= end => self.now = self.now.max(t),
                _ => {
                    self.now = end;
                    return;
                }
            }
            self.pending.sort_by_key(|p| (p.0, p.1));
            while self.pending.first().is_some_and(|p| p.0 <= self.now) {
                let (t, id, o) = self.pending.remove(0);
                let acts = self.h.report(id, o, t);
                self.log.extend(acts.into_iter().map(|a| (t, a)));
            }
            let acts = self.h.advance(self.now);
            let now = self.now;
            self.log.extend(acts.into_iter().map(|a| (now, a)));
        }
        panic!("run_until did not reach {end:?}");
    }

    pub fn secs(&mut self, s: u64) {
        let end = Tick(self.now.as_millis() + s * 1000);
        self.run_until(end);
    }

    /// Actions since index `from`, as text.
    pub fn since(&self, from: usize) -> Vec<String> {
        self.log[from..]
            .iter()
            .map(|(_, a)| a.to_string())
            .collect()
    }

    /// The time of the first action at or after index `from` whose text contains `pat`.
    pub fn first(&self, from: usize, pat: &str) -> Option<Tick> {
        self.log[from..]
            .iter()
            .find(|(_, a)| a.to_string().contains(pat))
            .map(|(t, _)| *t)
    }

    pub fn weight_of(&self, svc: usize, real: usize) -> Option<i32> {
        self.h
            .real_status(RealId { svc, real })
            .unwrap()
            .ipvs_weight
    }
}

/// Timers for the reload tests: delay_loop 1 s, connect_timeout 0.5 s, no retry.
pub fn t() -> rvs_config::spec::Timing {
    timing(1_000, 500, 0, 1_000)
}

/// A configuration of these services.
pub fn cfg(services: Vec<VirtualService>) -> rvs_config::spec::Config {
    rvs_config::spec::Config {
        services,
        ..Default::default()
    }
}

/// The IPVS changes among `actions`, as text (scripts and log lines left out).
pub fn ipvs(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter(|a| !matches!(a, Action::Log(_) | Action::Run(_)))
        .map(ToString::to_string)
        .collect()
}

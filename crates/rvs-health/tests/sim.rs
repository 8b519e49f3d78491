//! Seeded deterministic simulation: random configurations, random probe results and
//! latencies (some past their deadline, some never answered), random passive events and
//! stray reports, with the invariants checked after every call into the engine. A failing
//! seed is printed; `RVS_HEALTH_SEED=<n>` replays that one.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use common::*;
use rvs_config::spec::{Config, Passive, RealServer, VirtualService};
use rvs_core::model::{Protocol, ServiceKey};
use rvs_core::rng::Rng;
use rvs_core::time::{Span, Tick};
use rvs_health::{Action, Health, Outcome, PassiveEvent, RealId};

#[derive(Clone, Copy, Debug)]
enum Truth {
    Up,
    Refuse,
    Silent,
    Weight(u32),
}

fn pick(rng: &mut Rng, pct: u32) -> bool {
    rng.below(100) < pct
}

fn range(rng: &mut Rng, lo: u64, hi: u64) -> u64 {
    lo + rng.below_u64(hi - lo + 1)
}

fn gen_real(rng: &mut Rng, last: u8) -> RealServer {
    let checks = (0..rng.below(3))
        .map(|_| {
            let dl = range(rng, 1_000, 10_000);
            let mut t = timing(
                dl,
                range(rng, 200, 3_000),
                rng.below(4),
                range(rng, 200, 3_000),
            );
            t.warmup = Duration::from_millis(rng.below_u64(dl));
            if pick(rng, 40) {
                misc(t, pick(rng, 70))
            } else {
                tcp(t)
            }
        })
        .collect();
    let mut r = real(last, rng.below(6) as i32, checks);
    r.alpha = pick(rng, 30);
    r.inhibit_on_failure = pick(rng, 30);
    if pick(rng, 30) {
        r.slow_start = Some(Duration::from_millis(range(rng, 500, 20_000)));
    }
    r
}

fn gen_config(rng: &mut Rng) -> Config {
    let services = (0..range(rng, 1, 3))
        .map(|i| {
            let reals = (1..=range(rng, 1, 6) as u8)
                .map(|j| gen_real(rng, j))
                .collect();
            let mut s: VirtualService = service(reals);
            s.keys = vec![ServiceKey::Addr {
                proto: Protocol::Tcp,
                addr: std::net::IpAddr::from([192, 0, 2, 10 + i as u8]),
                port: 80,
            }];
            s.quorum = rng.below(6) + 1;
            s.hysteresis = rng.below(3);
            if pick(rng, 50) {
                s.sorry = Some(sorry(200, pick(rng, 50)));
            }
            if pick(rng, 50) {
                let backoff = range(rng, 1_000, 10_000);
                s.passive = Some(Passive {
                    failures: rng.below(4) + 1,
                    backoff: Duration::from_millis(backoff),
                    max_backoff: Duration::from_millis(backoff * range(rng, 1, 8)),
                    max_ejected_percent: rng.below(101) as u8,
                });
            }
            s
        })
        .collect();
    Config {
        services,
        ..Default::default()
    }
}

/// What the engine knew before a call, to check the transitions logged by it.
#[derive(PartialEq)]
struct Snapshot {
    reals: BTreeMap<RealId, (bool, bool)>,
    quorum: Vec<bool>,
}

struct World {
    seed: u64,
    cfg: Config,
    h: Health,
    rng: Rng,
    now: Tick,
    truth: BTreeMap<(RealId, usize), Truth>,
    pending: Vec<(Tick, u64, Outcome)>,
    ipvs: HashMap<(ServiceKey, std::net::IpAddr, u16), i32>,
    services: HashSet<ServiceKey>,
    /// how often each kind of log line was seen (the run must exercise them all)
    seen: BTreeMap<&'static str, usize>,
}

impl World {
    fn new(seed: u64) -> World {
        let mut rng = Rng::seeded(seed);
        let cfg = gen_config(&mut rng);
        let h = Health::new(&cfg, seed, Tick::ZERO);
        let mut w = World {
            seed,
            cfg,
            h,
            rng,
            now: Tick::ZERO,
            truth: BTreeMap::new(),
            pending: Vec::new(),
            ipvs: HashMap::new(),
            services: HashSet::new(),
            seen: BTreeMap::new(),
        };
        let acts = w.h.initial_actions();
        w.apply(&acts);
        w.invariants();
        w
    }

    fn ids(&self) -> Vec<RealId> {
        (0..self.cfg.services.len())
            .flat_map(|svc| {
                (0..self.cfg.services[svc].reals.len()).map(move |real| RealId { svc, real })
            })
            .collect()
    }

    fn snapshot(&self) -> Snapshot {
        let reals = self
            .ids()
            .into_iter()
            .map(|id| {
                let s = self.h.real_status(id).unwrap();
                (id, (s.healthy, s.ejected_until.is_some()))
            })
            .collect();
        let quorum = (0..self.cfg.services.len())
            .map(|s| self.h.quorum_up(s))
            .collect();
        Snapshot { reals, quorum }
    }

    fn fail(&self, msg: &str) -> ! {
        panic!("seed {} at {:?}: {msg}", self.seed, self.now);
    }

    /// Apply actions to the model IPVS table: each must make sense where it lands.
    fn apply(&mut self, acts: &[Action]) {
        for a in acts {
            match a {
                Action::AddService { key, .. } => {
                    if !self.services.insert(*key) {
                        self.fail(&format!("service added twice: {a}"));
                    }
                }
                Action::AddDest { service, dest } => {
                    if !self.services.contains(service)
                        || self
                            .ipvs
                            .insert((*service, dest.addr, dest.port), dest.weight)
                            .is_some()
                    {
                        self.fail(&format!("bad add: {a}"));
                    }
                }
                // the simulation never reloads
                Action::EditService { .. } | Action::DelService { .. } => {
                    self.fail(&format!("service change without a reload: {a}"))
                }
                Action::EditDest { service, dest } => {
                    match self.ipvs.get_mut(&(*service, dest.addr, dest.port)) {
                        Some(w) => *w = dest.weight,
                        None => self.fail(&format!("edit of an absent server: {a}")),
                    }
                }
                Action::DelDest {
                    service,
                    addr,
                    port,
                } => {
                    if self.ipvs.remove(&(*service, *addr, *port)).is_none() {
                        self.fail(&format!("delete of an absent server: {a}"));
                    }
                }
                Action::Run(_) | Action::Log(_) => {}
            }
        }
    }

    /// Apply the actions of one call and check every transition is logged exactly once.
    fn after(&mut self, before: Snapshot, acts: Vec<Action>) {
        self.apply(&acts);
        let logs: Vec<&str> = acts
            .iter()
            .filter_map(|a| match a {
                Action::Log(l) => Some(l.as_str()),
                _ => None,
            })
            .collect();
        let count = |pats: &[String]| {
            logs.iter()
                .filter(|l| pats.iter().any(|p| l.starts_with(p.as_str())))
                .count()
        };
        for l in &logs {
            for kind in KINDS {
                if l.contains(kind) {
                    *self.seen.entry(kind).or_default() += 1;
                }
            }
        }
        let after = self.snapshot();
        for (id, &(healthy, ejected)) in &after.reals {
            let (was_h, was_e) = before.reals[id];
            let svc = &self.cfg.services[id.svc];
            let label = format!(
                "real server {}:80 of {}",
                svc.reals[id.real].dest.addr, svc.keys[0]
            );
            let n = count(&[format!("{label} up:"), format!("{label} down:")]);
            if n != usize::from(healthy != was_h) {
                self.fail(&format!(
                    "{label}: {n} health lines for one change: {logs:?}"
                ));
            }
            let n = count(&[
                format!("{label} ejected for"),
                format!("{label} back from ejection"),
                format!("{label} ejection over"),
            ]);
            if n != usize::from(ejected != was_e) {
                self.fail(&format!("{label}: {n} ejection lines: {logs:?}"));
            }
        }
        for (i, (&q, &was)) in after.quorum.iter().zip(&before.quorum).enumerate() {
            let k = self.cfg.services[i].keys[0];
            let n = count(&[format!("{k} gained quorum"), format!("{k} lost quorum")]);
            if n != usize::from(q != was) {
                self.fail(&format!("{k}: {n} quorum lines: {logs:?}"));
            }
        }
        self.invariants();
    }

    fn invariants(&self) {
        for (si, svc) in self.cfg.services.iter().enumerate() {
            let key = svc.keys[0];
            let table = self.h.table(si);
            let model: BTreeMap<_, _> = self
                .ipvs
                .iter()
                .filter(|(k, _)| k.0 == key)
                .map(|(k, w)| ((k.1, k.2), *w))
                .collect();
            let engine: BTreeMap<_, _> =
                table.iter().map(|d| ((d.addr, d.port), d.weight)).collect();
            if model != engine {
                self.fail(&format!("{key}: applied {model:?} != engine {engine:?}"));
            }
            if model.values().any(|&w| w < 0) {
                self.fail("negative weight");
            }
            self.service_invariants(si, svc, &model);
        }
    }

    fn service_invariants(
        &self,
        si: usize,
        svc: &VirtualService,
        model: &BTreeMap<(std::net::IpAddr, u16), i32>,
    ) {
        let sorry = self.h.sorry_active(si);
        let quorum = self.h.quorum_up(si);
        let mut sum = 0i64;
        let mut ejected = 0;
        for (ri, r) in svc.reals.iter().enumerate() {
            let st = self.h.real_status(RealId { svc: si, real: ri }).unwrap();
            let in_service = st.healthy && st.ejected_until.is_none();
            if in_service {
                sum += i64::from(st.weight);
            }
            ejected += usize::from(st.ejected_until.is_some());
            if st.healthy != st.checks_up.iter().all(|&u| u) {
                self.fail("healthy is not 'all checks up'");
            }
            let w = model.get(&(r.dest.addr, r.dest.port)).copied();
            match w {
                Some(w) if w > 0 && (sorry || !in_service) => {
                    self.fail(&format!("{} has weight {w} out of service", r.dest.addr))
                }
                Some(w) if w > st.weight => self.fail("pool weight above the server's weight"),
                Some(w) if in_service && !sorry && !st.ramping && w != st.weight => {
                    self.fail("a settled server in service has not its weight")
                }
                None if r.inhibit_on_failure => self.fail("inhibited server absent"),
                None if in_service && !sorry => self.fail("server in service absent"),
                _ => {}
            }
        }
        let (q, h) = (i64::from(svc.quorum), i64::from(svc.hysteresis));
        if quorum && (sum == 0 || sum < q - h) || !quorum && sum >= q + h {
            self.fail(&format!("quorum {quorum} with weight {sum}, {q}±{h}"));
        }
        if let Some(s) = &svc.sorry {
            let w = model.get(&(s.dest.addr, s.dest.port)).copied();
            let present = w.is_some_and(|w| w > 0);
            if present != sorry || sorry == quorum {
                self.fail(&format!("sorry {w:?} active {sorry} quorum {quorum}"));
            }
            if s.inhibit && w.is_none() {
                self.fail("inhibited sorry server absent");
            }
        } else if sorry {
            self.fail("sorry active without a sorry server");
        }
        if let Some(p) = svc.passive {
            let n = svc.reals.len();
            let pct = usize::from(p.max_ejected_percent);
            let cap = if pct == 0 { 0 } else { (n * pct / 100).max(1) };
            if ejected > cap {
                self.fail(&format!("{ejected} ejected, cap {cap}"));
            }
        }
    }

    fn answer(&mut self, id: RealId, check: usize, kind_dynamic: bool) -> Option<Outcome> {
        let t = *self.truth.get(&(id, check)).unwrap_or(&Truth::Up);
        Some(match t {
            Truth::Up => Outcome::Ok,
            Truth::Refuse => Outcome::Fail("connection refused".into()),
            Truth::Silent => return None,
            Truth::Weight(w) if kind_dynamic => Outcome::Weight(w),
            Truth::Weight(_) => Outcome::Ok,
        })
    }

    fn launch(&mut self) {
        for req in self.h.due_probes(self.now) {
            if req.deadline < self.now {
                self.fail("deadline in the past");
            }
            let dynamic =
                matches!(&req.spec.kind, rvs_config::spec::CheckKind::Misc(m) if m.dynamic);
            if let Some(o) = self.answer(req.real, req.check, dynamic) {
                let window = req.deadline.since(self.now);
                let lat = self.rng.below_u64(window + window / 3 + 1);
                self.pending.push((self.now + Span(lat), req.id, o));
            }
        }
    }

    fn perturb(&mut self) {
        let ids = self.ids();
        if ids.is_empty() {
            return;
        }
        let id = ids[self.rng.below(ids.len() as u32) as usize];
        if pick(&mut self.rng, 5) {
            let t = match self.rng.below(4) {
                0 => Truth::Up,
                1 => Truth::Refuse,
                2 => Truth::Silent,
                _ => Truth::Weight(self.rng.below(8)),
            };
            let check = self.rng.below(2) as usize;
            self.truth.insert((id, check), t);
        }
        if pick(&mut self.rng, 30) {
            let ev = match self.rng.below(3) {
                0 => PassiveEvent::ConnectFailure,
                1 => PassiveEvent::Reset,
                _ => PassiveEvent::Success,
            };
            let before = self.snapshot();
            let acts = self.h.passive(id, ev, self.now);
            self.after(before, acts);
        }
        if pick(&mut self.rng, 2) {
            let before = self.snapshot();
            let acts = self
                .h
                .report(u64::MAX - self.rng.below_u64(10), Outcome::Ok, self.now);
            if !acts.is_empty() {
                self.fail("a stray report changed something");
            }
            self.after(before, acts);
        }
    }

    fn step(&mut self) {
        self.perturb();
        self.launch();
        let cap = self.now + Span(range(&mut self.rng, 1, 2_000));
        let next = [self.h.next_wakeup(), self.pending.iter().map(|p| p.0).min()]
            .into_iter()
            .flatten()
            .min()
            .map_or(cap, |t| t.min(cap));
        self.now = self.now.max(next);
        self.pending.sort_by_key(|p| (p.0, p.1));
        while self.pending.first().is_some_and(|p| p.0 <= self.now) {
            let (t, id, o) = self.pending.remove(0);
            let before = self.snapshot();
            let acts = self.h.report(id, o, t);
            self.after(before, acts);
        }
        let before = self.snapshot();
        let acts = self.h.advance(self.now);
        self.after(before, acts);
    }
}

/// Log lines a batch of runs must all have produced.
const KINDS: [&str; 10] = [
    " down: ",
    " up: ",
    "lost quorum",
    "gained quorum",
    "sorry server",
    "ejected for",
    "back from ejection",
    "not ejected",
    "slow start",
    "(MISC_CHECK)",
];

fn run(seed: u64, steps: usize, seen: &mut BTreeMap<&'static str, usize>) {
    let mut w = World::new(seed);
    for _ in 0..steps {
        w.step();
    }
    // the run must have gone somewhere: time advanced and probes ran
    assert!(
        w.now > Tick::from_secs(10),
        "seed {seed}: time stuck at {:?}",
        w.now
    );
    for (k, n) in w.seen {
        *seen.entry(k).or_default() += n;
    }
}

#[test]
fn random_runs_keep_every_invariant() {
    if let Some(seed) = std::env::var("RVS_HEALTH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        run(seed, 5_000, &mut BTreeMap::new());
        return;
    }
    let mut seen = BTreeMap::new();
    for seed in 0..200 {
        run(seed, 2_000, &mut seen);
    }
    eprintln!("log lines seen: {seen:?}");
    for kind in KINDS {
        assert!(
            seen.get(kind).copied().unwrap_or(0) >= 20,
            "too few {kind:?}: {seen:?}"
        );
    }
}

#[test]
fn the_same_seed_gives_the_same_actions() {
    let trace = |seed| {
        let mut w = World::new(seed);
        let mut out = Vec::new();
        for _ in 0..500 {
            w.step();
            let mut table: Vec<String> = w.ipvs.iter().map(|e| format!("{e:?}")).collect();
            table.sort();
            out.push(format!("{:?} {table:?}", w.now));
        }
        out
    };
    assert_eq!(trace(42), trace(42));
    assert_ne!(trace(42), trace(43));
}

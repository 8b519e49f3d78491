//! The engine: every service's real servers, their checkers, the quorum and the sorry server,
//! driven by probe results, passive events and time (keepalived `ipwrapper.c` semantics).

use std::collections::BTreeMap;

use rvs_config::spec::{Command, Config, RealServer, VirtualService};
use rvs_core::model::DestConf;
use rvs_core::rng::Rng;
use rvs_core::time::{Span, Tick};

use crate::checker::{Change, Checker};
use crate::passive::{cap, PassiveState, Verdict};
use crate::pool::{self, dest_label, service_label, Table};
use crate::{fmt_ms, kind_name, ms, Action, Outcome, PassiveEvent, ProbeRequest, Prober, RealId};

mod reload;
pub use reload::Reloaded;

/// Slow-start steps are at most this often.
const STEP_MS: u64 = 1000;

/// What the engine knows of one real server (for the control API and tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealStatus {
    /// all its checks are up (keepalived's "alive")
    pub healthy: bool,
    /// passive health ejected it until then
    pub ejected_until: Option<Tick>,
    /// each check's state, in configuration order
    pub checks_up: Vec<bool>,
    /// the weight the checks give it (configured, or MISC dynamic), before slow start
    pub weight: i32,
    /// its weight in IPVS, `None` when absent
    pub ipvs_weight: Option<i32>,
    /// slow start in progress
    pub ramping: bool,
}

/// Slow start in progress.
#[derive(Clone, Copy, Debug)]
struct Ramp {
    start: Tick,
    next: Tick,
    weight: i32,
}

#[derive(Clone, Debug)]
struct Real {
    cfg: RealServer,
    checkers: Vec<Checker>,
    healthy: bool,
    passive: PassiveState,
    ramp: Option<Ramp>,
}

impl Real {
    fn in_service(&self) -> bool {
        self.healthy && self.passive.until.is_none()
    }

    /// keepalived's `real_weight(effective_weight)`: the configured weight moved by each MISC
    /// dynamic checker's offset, clamped to what IPVS takes.
    fn weight(&self) -> i32 {
        let base = i64::from(self.cfg.dest.weight);
        let eff = self
            .checkers
            .iter()
            .filter_map(|c| c.dyn_weight)
            .fold(base, |acc, w| acc + i64::from(w) - base);
        eff.clamp(0, i64::from(i32::MAX)) as i32
    }

    fn pool_weight(&self) -> i32 {
        match self.ramp {
            Some(r) => r.weight.min(self.weight()),
            None => self.weight(),
        }
    }

    fn failing(&self) -> usize {
        self.checkers.iter().filter(|c| !c.up).count()
    }

    /// Start slow start at `now` if configured; returns the note for the log line.
    fn begin_ramp(&mut self, now: Tick) -> String {
        self.ramp = None;
        let total = self.cfg.slow_start.map(ms).unwrap_or(0);
        if total == 0 || self.weight() <= 1 {
            return String::new();
        }
        self.ramp = Some(Ramp {
            start: now,
            next: now + Span(STEP_MS.min(total)),
            weight: 1,
        });
        format!(", slow start over {}", fmt_ms(total))
    }

    /// One slow-start step at `now`; whether the ramp is over.
    fn step_ramp(&mut self, now: Tick) {
        let Some(mut r) = self.ramp else { return };
        let total = self.cfg.slow_start.map(ms).unwrap_or(0);
        let elapsed = now.since(r.start);
        if elapsed >= total {
            self.ramp = None;
            return;
        }
        let target = u64::try_from(self.weight()).unwrap_or(0);
        let w = (u128::from(target) * u128::from(elapsed) / u128::from(total)) as u64;
        r.weight = i32::try_from(w.max(1)).unwrap_or(i32::MAX);
        r.next = Tick((now.as_millis() + STEP_MS).min(r.start.as_millis() + total));
        self.ramp = Some(r);
    }
}

#[derive(Clone, Debug)]
struct Svc {
    cfg: VirtualService,
    label: String,
    reals: Vec<Real>,
    quorum_up: bool,
    sorry_active: bool,
    table: Table,
}

impl Svc {
    fn weight_sum(&self) -> i64 {
        self.reals
            .iter()
            .filter(|r| r.in_service())
            .map(|r| i64::from(r.weight()))
            .sum()
    }

    fn real_label(&self, i: usize) -> String {
        format!(
            "real server {} of {}",
            dest_label(&self.reals[i].cfg.dest),
            self.label
        )
    }

    /// The table the state calls for.
    fn wanted(&self) -> Table {
        let mut t = Table::new();
        for r in &self.reals {
            let w = if r.in_service() && !self.sorry_active {
                Some(r.pool_weight())
            } else if r.cfg.inhibit_on_failure {
                Some(0)
            } else {
                None
            };
            if let Some(w) = w {
                let d = r.cfg.dest.weight(w);
                t.insert((d.addr, d.port), d);
            }
        }
        if let Some(s) = &self.cfg.sorry {
            let k = (s.dest.addr, s.dest.port);
            if self.sorry_active {
                t.insert(k, s.dest);
            } else if s.inhibit {
                t.entry(k).or_insert(s.dest.weight(0));
            }
        }
        t
    }

    /// The service and its starting table (see [`Health::initial_actions`]).
    fn install(&mut self, out: &mut Vec<Action>) {
        for key in &self.cfg.keys {
            out.push(Action::AddService {
                key: *key,
                conf: self.cfg.conf.clone(),
            });
        }
        if !self.quorum_up && self.cfg.sorry.is_some() {
            let (q, h) = (self.cfg.quorum, self.cfg.hysteresis);
            let line = format!(
                "{} starting with quorum down: weight {} < {q}+{h}",
                self.label,
                self.weight_sum()
            );
            self.enter_sorry(line, out);
            push_cmd(&self.cfg.quorum_down, out);
        } else {
            self.reconcile(out);
            if !self.quorum_up && self.cfg.quorum_down_at_start {
                push_cmd(&self.cfg.quorum_down, out);
            }
        }
    }

    fn reconcile(&mut self, out: &mut Vec<Action>) {
        let want = self.wanted();
        pool::apply(&self.cfg.keys, &mut self.table, want, out);
    }

    fn sorry_command(&self, verb: &str, out: &mut Vec<Action>) {
        let (Some(s), Some(key)) = (&self.cfg.sorry, self.cfg.keys.first()) else {
            return;
        };
        if let Some(c) = &s.command {
            let mut c = c.clone();
            c.argv.push(verb.to_string());
            c.argv.extend(pool::fallback_args(key));
            out.push(Action::Run(c));
        }
    }

    fn sorry_label(&self) -> String {
        self.cfg
            .sorry
            .as_ref()
            .map(|s| dest_label(&s.dest))
            .unwrap_or_default()
    }

    /// keepalived `update_quorum_state`: gain at ≥ quorum + hysteresis while down, loss at 0
    /// or < quorum − hysteresis while up.
    fn update_quorum(&mut self, out: &mut Vec<Action>) {
        let sum = self.weight_sum();
        let (q, h) = (i64::from(self.cfg.quorum), i64::from(self.cfg.hysteresis));
        if !self.quorum_up && sum >= q + h {
            self.quorum_up = true;
            let mut line = format!("{} gained quorum: weight {sum} >= {q}+{h}", self.label);
            let had_sorry = std::mem::take(&mut self.sorry_active);
            if had_sorry {
                line += &format!(", sorry server {} removed", self.sorry_label());
            }
            out.push(Action::Log(line));
            self.reconcile(out);
            if had_sorry {
                self.sorry_command("stop", out);
            }
            push_cmd(&self.cfg.quorum_up, out);
        } else if self.quorum_up && (sum == 0 || sum < q - h) {
            self.quorum_up = false;
            let mut line = format!("{} lost quorum: weight {sum} < {q}-{h}", self.label);
            if sum >= q - h {
                line = format!("{} lost quorum: weight 0", self.label);
            }
            self.enter_sorry(line, out);
            push_cmd(&self.cfg.quorum_down, out);
        }
    }

    /// Log `line` (adding the sorry server to it when there is one) and switch to it.
    fn enter_sorry(&mut self, mut line: String, out: &mut Vec<Action>) {
        let add = self.cfg.sorry.is_some() && !self.sorry_active;
        if add {
            self.sorry_active = true;
            line += &format!(", sorry server {} added", self.sorry_label());
        }
        out.push(Action::Log(line));
        self.reconcile(out);
        if add {
            self.sorry_command("start", out);
        }
    }

    /// Server `i` changed health (all checks up, or one down) at `now`.
    fn health_changed(
        &mut self,
        i: usize,
        healthy: bool,
        why: &str,
        now: Tick,
        out: &mut Vec<Action>,
    ) {
        let label = self.real_label(i);
        let r = &mut self.reals[i];
        r.healthy = healthy;
        let line = if healthy {
            let note = if r.passive.until.is_some() {
                ", still ejected".to_string()
            } else {
                r.begin_ramp(now)
            };
            format!("{label} up: {why}{note}")
        } else {
            r.ramp = None;
            let inhibit = if r.cfg.inhibit_on_failure {
                ", inhibited (weight 0)"
            } else {
                ""
            };
            format!("{label} down: {why}{inhibit}")
        };
        out.push(Action::Log(line));
        self.reconcile(out);
        let r = &self.reals[i];
        push_cmd(
            if healthy {
                &r.cfg.notify_up
            } else {
                &r.cfg.notify_down
            },
            out,
        );
        self.update_quorum(out);
    }

    /// Checker `c` of server `i` completed a probe at `now`.
    fn probe_done(
        &mut self,
        i: usize,
        c: usize,
        outcome: &Outcome,
        now: Tick,
        out: &mut Vec<Action>,
    ) {
        let before = self.reals[i].weight();
        let change = self.reals[i].checkers[c].complete(outcome, now);
        let kind = kind_name(&self.reals[i].checkers[c].spec.kind);
        let was = self.reals[i].healthy;
        match change {
            Change::None => {}
            Change::Weight => {
                let after = self.reals[i].weight();
                if after != before {
                    let line =
                        format!("{} weight {before} -> {after} ({kind})", self.real_label(i));
                    out.push(Action::Log(line));
                    self.reconcile(out);
                    self.update_quorum(out);
                }
            }
            Change::Up if self.reals[i].failing() == 0 => {
                self.health_changed(i, true, &format!("{kind} passed"), now, out);
            }
            Change::Down(why) if was => self.health_changed(i, false, &why, now, out),
            Change::Up | Change::Down(_) => {
                let state = if matches!(change, Change::Up) {
                    "up"
                } else {
                    "down"
                };
                let line = format!(
                    "{}: {kind} (check {}) {state}; still down, {} of {} checks failing",
                    self.real_label(i),
                    c + 1,
                    self.reals[i].failing(),
                    self.reals[i].checkers.len()
                );
                out.push(Action::Log(line));
            }
        }
    }

    /// A passive event for server `i` at `now`.
    fn passive(&mut self, i: usize, ev: PassiveEvent, now: Tick, out: &mut Vec<Action>) {
        let Some(cfg) = self.cfg.passive else { return };
        if !self.reals[i].in_service() {
            return;
        }
        if self.reals[i].passive.event(&cfg, ev) != Verdict::Eject {
            return;
        }
        let ejected = self
            .reals
            .iter()
            .filter(|r| r.passive.until.is_some())
            .count();
        let max = cap(&cfg, self.reals.len());
        let label = self.real_label(i);
        let r = &mut self.reals[i];
        if ejected >= max {
            if !r.passive.refused {
                r.passive.refused = true;
                out.push(Action::Log(format!(
                    "{label} not ejected: {ejected} of {} servers already ejected (max {}%)",
                    self.reals.len(),
                    cfg.max_ejected_percent
                )));
            }
            return;
        }
        let n = r.passive.streak;
        let span = r.passive.eject(&cfg, now);
        r.ramp = None;
        out.push(Action::Log(format!(
            "{label} ejected for {}: {n} consecutive connection failures or resets",
            fmt_ms(span)
        )));
        self.reconcile(out);
        self.update_quorum(out);
    }

    /// End the ejection of server `i` at `now`.
    fn end_ejection(&mut self, i: usize, now: Tick, out: &mut Vec<Action>) {
        let label = self.real_label(i);
        let r = &mut self.reals[i];
        r.passive.end(now);
        let line = if r.healthy {
            format!("{label} back from ejection{}", r.begin_ramp(now))
        } else {
            format!("{label} ejection over; stays out until its checks pass")
        };
        out.push(Action::Log(line));
        self.reconcile(out);
        self.update_quorum(out);
    }
}

fn push_cmd(c: &Option<Command>, out: &mut Vec<Action>) {
    if let Some(c) = c {
        out.push(Action::Run(c.clone()));
    }
}

/// The health checker of a whole configuration. See the crate documentation for how to drive
/// it.
#[derive(Clone, Debug)]
pub struct Health {
    svcs: Vec<Svc>,
    next_id: u64,
    /// probes in flight: id → (server, check)
    probes: BTreeMap<u64, (RealId, usize)>,
}

impl Health {
    /// The checker of `cfg`, started at `now`; `seed` draws the warmup delays.
    pub fn new(cfg: &Config, seed: u64, now: Tick) -> Health {
        let mut rng = Rng::seeded(seed);
        let svcs = cfg
            .services
            .iter()
            .map(|vs| {
                let reals: Vec<Real> = vs
                    .reals
                    .iter()
                    .map(|rs| {
                        let checkers: Vec<Checker> = rs
                            .checks
                            .iter()
                            .map(|c| {
                                let jitter = rng.below_u64(Checker::warmup(c).saturating_add(1));
                                Checker::new(c, rs.alpha, now, jitter)
                            })
                            .collect();
                        Real {
                            healthy: checkers.iter().all(|c| c.up),
                            cfg: rs.clone(),
                            checkers,
                            passive: PassiveState::default(),
                            ramp: None,
                        }
                    })
                    .collect();
                let mut s = Svc {
                    label: service_label(vs),
                    cfg: vs.clone(),
                    reals,
                    quorum_up: false,
                    sorry_active: false,
                    table: Table::new(),
                };
                let (q, h) = (i64::from(vs.quorum), i64::from(vs.hysteresis));
                s.quorum_up = s.weight_sum() >= q + h;
                s
            })
            .collect();
        Health {
            svcs,
            next_id: 1,
            probes: BTreeMap::new(),
        }
    }

    /// The rules to install at start: each service, then its real servers (those without
    /// `alpha` with their weight, `alpha` ones only with `inhibit_on_failure` and weight 0),
    /// and the sorry server when the service starts without its quorum (then `quorum_down`
    /// runs, as keepalived does); a `sorry_server_inhibit` server is present with weight 0
    /// otherwise.
    pub fn initial_actions(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        for s in &mut self.svcs {
            s.install(&mut out);
        }
        out
    }

    /// The probes to start at `now`; each is in flight until reported or failed at its
    /// deadline.
    pub fn due_probes(&mut self, now: Tick) -> Vec<ProbeRequest> {
        let mut reqs = Vec::new();
        for (si, s) in self.svcs.iter_mut().enumerate() {
            for (ri, r) in s.reals.iter_mut().enumerate() {
                for (ci, c) in r.checkers.iter_mut().enumerate() {
                    if !c.is_due(now) {
                        continue;
                    }
                    let id = self.next_id;
                    self.next_id += 1;
                    let deadline = c.start(id, now);
                    let real = RealId { svc: si, real: ri };
                    self.probes.insert(id, (real, ci));
                    reqs.push(ProbeRequest {
                        id,
                        real,
                        check: ci,
                        target: c.spec.connect.unwrap_or((r.cfg.dest.addr, r.cfg.dest.port)),
                        spec: c.spec.clone(),
                        deadline,
                    });
                }
            }
        }
        reqs
    }

    /// [`Health::due_probes`] handed to a [`Prober`].
    pub fn launch_due(&mut self, now: Tick, prober: &mut impl Prober) {
        for req in self.due_probes(now) {
            prober.launch(req);
        }
    }

    /// The result of probe `id`, completed at `now`. A result for a probe no longer in flight
    /// (already failed at its deadline) is ignored; one reported after its deadline counts as
    /// a timeout at the deadline.
    pub fn report(&mut self, id: u64, outcome: Outcome, now: Tick) -> Vec<Action> {
        let mut out = Vec::new();
        let Some((rid, ci)) = self.probes.remove(&id) else {
            return out;
        };
        let s = &mut self.svcs[rid.svc];
        let deadline = match s.reals[rid.real].checkers[ci].in_flight {
            Some((_, d)) => d,
            None => return out,
        };
        if now > deadline {
            s.probe_done(rid.real, ci, &Outcome::Timeout, deadline, &mut out);
        } else {
            s.probe_done(rid.real, ci, &outcome, now, &mut out);
        }
        out
    }

    /// What the data plane saw on a connection to `real` at `now` (passive health; ignored
    /// for services without it and for servers out of the pool).
    pub fn passive(&mut self, real: RealId, ev: PassiveEvent, now: Tick) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(s) = self.svcs.get_mut(real.svc) {
            if real.real < s.reals.len() {
                s.passive(real.real, ev, now, &mut out);
            }
        }
        out
    }

    /// Everything that falls due by `now` without a report: probes past their deadline fail
    /// (at the deadline), ejections end, slow start steps.
    pub fn advance(&mut self, now: Tick) -> Vec<Action> {
        let mut out = Vec::new();
        let late: Vec<(u64, RealId, usize, Tick)> = self
            .probes
            .iter()
            .filter_map(|(&id, &(rid, ci))| {
                let c = &self.svcs[rid.svc].reals[rid.real].checkers[ci];
                match c.in_flight {
                    Some((_, d)) if d <= now => Some((id, rid, ci, d)),
                    _ => None,
                }
            })
            .collect();
        for (id, rid, ci, d) in late {
            self.probes.remove(&id);
            self.svcs[rid.svc].probe_done(rid.real, ci, &Outcome::Timeout, d, &mut out);
        }
        for s in &mut self.svcs {
            for i in 0..s.reals.len() {
                if s.reals[i].passive.until.is_some_and(|t| t <= now) {
                    s.end_ejection(i, now, &mut out);
                }
                if s.reals[i].ramp.is_some_and(|r| r.next <= now) {
                    s.reals[i].step_ramp(now);
                    s.reconcile(&mut out);
                }
            }
        }
        out
    }

    /// The next time [`Health::due_probes`] or [`Health::advance`] has something to do.
    pub fn next_wakeup(&self) -> Option<Tick> {
        let mut next: Option<Tick> = None;
        let mut at = |t: Tick| next = Some(next.map_or(t, |n| n.min(t)));
        for r in self.svcs.iter().flat_map(|s| &s.reals) {
            for c in &r.checkers {
                match c.in_flight {
                    Some((_, d)) => at(d),
                    None => c.next.into_iter().for_each(&mut at),
                }
            }
            r.passive.until.into_iter().for_each(&mut at);
            r.ramp.into_iter().for_each(|x| at(x.next));
        }
        next
    }

    /// Shutting down: with `omega`, the down notifiers of the servers up and the quorum_down
    /// script of services holding their quorum (keepalived runs them as it clears IPVS).
    pub fn stop_actions(&self) -> Vec<Action> {
        let mut out = Vec::new();
        for s in self.svcs.iter().filter(|s| s.cfg.omega) {
            for r in s.reals.iter().filter(|r| r.healthy) {
                push_cmd(&r.cfg.notify_down, &mut out);
            }
            if s.quorum_up {
                push_cmd(&s.cfg.quorum_down, &mut out);
            }
        }
        out
    }

    /// The state of one real server, `None` if there is no such server.
    pub fn real_status(&self, id: RealId) -> Option<RealStatus> {
        let s = self.svcs.get(id.svc)?;
        let r = s.reals.get(id.real)?;
        Some(RealStatus {
            healthy: r.healthy,
            ejected_until: r.passive.until,
            checks_up: r.checkers.iter().map(|c| c.up).collect(),
            weight: r.weight(),
            ipvs_weight: s
                .table
                .get(&(r.cfg.dest.addr, r.cfg.dest.port))
                .map(|d| d.weight),
            ramping: r.ramp.is_some(),
        })
    }

    /// Whether service `svc` holds its quorum.
    pub fn quorum_up(&self, svc: usize) -> bool {
        self.svcs.get(svc).is_some_and(|s| s.quorum_up)
    }

    /// Whether service `svc` has switched to its sorry server.
    pub fn sorry_active(&self, svc: usize) -> bool {
        self.svcs.get(svc).is_some_and(|s| s.sorry_active)
    }

    /// The real servers the engine has put in service `svc`'s table, with the settings given
    /// (before the DR/TUN port adjustment).
    pub fn table(&self, svc: usize) -> Vec<DestConf> {
        self.svcs
            .get(svc)
            .map(|s| s.table.values().copied().collect())
            .unwrap_or_default()
    }

    /// How many services the engine runs.
    pub fn services(&self) -> usize {
        self.svcs.len()
    }

    /// The real server `addr`:`port` of the service `key` (as the data plane names it: the
    /// port IPVS holds, which for DR/TUN is the service's), if the configuration has it.
    pub fn find_real(
        &self,
        key: &rvs_core::model::ServiceKey,
        addr: std::net::IpAddr,
        port: u16,
    ) -> Option<RealId> {
        self.svcs.iter().enumerate().find_map(|(si, s)| {
            if !s.cfg.keys.contains(key) {
                return None;
            }
            let ri = s.reals.iter().position(|r| {
                let d = r.cfg.dest.port_for(key);
                d.addr == addr && d.port == port
            })?;
            Some(RealId { svc: si, real: ri })
        })
    }
}

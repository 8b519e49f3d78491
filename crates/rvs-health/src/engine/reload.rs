//! Reloading the configuration without losing what is known: a service declared before and
//! after keeps its table, quorum and sorry-server state; a real server declared before and
//! after keeps its checkers' state (when its checks are the same), its passive-health and
//! slow-start state and probes in flight. Only the differences reach IPVS.

use std::collections::BTreeMap;

use rvs_config::spec::{Check, Config, Loc};
use rvs_core::model::{DestConf, ServiceKey};
use rvs_core::time::Tick;

use super::{Health, Svc};
use crate::{Action, RealId};

/// What [`Health::reload`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reloaded {
    /// the IPVS changes (and log lines, scripts) to apply, in order
    pub actions: Vec<Action>,
    /// real servers no longer declared that IPVS still holds: the caller drains them (no new
    /// connections now, removal once their connections end or a grace period is over). The
    /// engine has forgotten them.
    pub drain: Vec<(ServiceKey, DestConf)>,
    /// services: unchanged, changed, added, removed
    pub services: [usize; 4],
    /// real servers: kept, added (in services kept or added), draining
    pub reals: [usize; 3],
}

/// The checks without where they were written (a reload that only moves lines changes
/// nothing).
fn same_checks(a: &[Check], b: &[Check]) -> bool {
    let strip = |c: &Check| Check {
        loc: Loc::new("", 0, 0),
        ..c.clone()
    };
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| strip(x) == strip(y))
}

fn sorted(keys: &[ServiceKey]) -> Vec<String> {
    let mut k: Vec<String> = keys.iter().map(ToString::to_string).collect();
    k.sort();
    k
}

impl Health {
    /// Take `cfg` as the configuration from `now` on (`seed` draws the warmup of checkers
    /// that are new). Services are matched by their keys, real servers by address and port.
    pub fn reload(&mut self, cfg: &Config, seed: u64, now: Tick) -> Reloaded {
        let fresh = Health::new(cfg, seed, now);
        let mut old: Vec<Option<Svc>> = std::mem::take(&mut self.svcs)
            .into_iter()
            .map(Some)
            .collect();
        let old_probes = std::mem::take(&mut self.probes);
        let mut r = Reloaded::default();
        // (old service, old real) → new real id, for the probes in flight
        let mut moved: BTreeMap<(usize, usize), RealId> = BTreeMap::new();
        let mut svcs = Vec::with_capacity(fresh.svcs.len());
        for (ni, mut new) in fresh.svcs.into_iter().enumerate() {
            let keys = sorted(&new.cfg.keys);
            let found = old
                .iter()
                .position(|o| o.as_ref().is_some_and(|o| sorted(&o.cfg.keys) == keys));
            let Some(oi) = found else {
                r.services[2] += 1;
                r.reals[1] += new.reals.len();
                r.actions
                    .push(Action::Log(format!("{}: added by the reload", new.label)));
                new.install(&mut r.actions);
                svcs.push(new);
                continue;
            };
            let prev = old[oi].take().expect("matched once");
            let changed = prev.cfg.conf != new.cfg.conf;
            if changed {
                for key in &new.cfg.keys {
                    r.actions.push(Action::EditService {
                        key: *key,
                        conf: new.cfg.conf.clone(),
                    });
                }
            }
            r.services[usize::from(changed)] += 1;
            carry(prev, &mut new, oi, ni, &mut moved, &mut r);
            new.update_quorum(&mut r.actions);
            new.reconcile(&mut r.actions);
            svcs.push(new);
        }
        for gone in old.into_iter().flatten() {
            r.services[3] += 1;
            r.actions.push(Action::Log(format!(
                "{}: removed by the reload",
                gone.label
            )));
            for key in &gone.cfg.keys {
                r.actions.push(Action::DelService { key: *key });
            }
        }
        self.svcs = svcs;
        for (id, (rid, ci)) in old_probes {
            if let Some(&to) = moved.get(&(rid.svc, rid.real)) {
                let c = &self.svcs[to.svc].reals[to.real].checkers;
                if c.get(ci)
                    .is_some_and(|c| c.in_flight.is_some_and(|(p, _)| p == id))
                {
                    self.probes.insert(id, (to, ci));
                }
            }
        }
        r
    }
}

/// Move what `prev` (old index `oi`) knew into `new` (new index `ni`).
fn carry(
    mut prev: Svc,
    new: &mut Svc,
    oi: usize,
    ni: usize,
    moved: &mut BTreeMap<(usize, usize), RealId>,
    r: &mut Reloaded,
) {
    new.quorum_up = prev.quorum_up;
    new.sorry_active = prev.sorry_active;
    let mut table = std::mem::take(&mut prev.table);
    let mut prev_reals: Vec<Option<_>> = prev.reals.into_iter().map(Some).collect();
    for (nri, real) in new.reals.iter_mut().enumerate() {
        let at = (real.cfg.dest.addr, real.cfg.dest.port);
        let found = prev_reals.iter().position(|o| {
            o.as_ref()
                .is_some_and(|o| (o.cfg.dest.addr, o.cfg.dest.port) == at)
        });
        let Some(ori) = found else {
            r.reals[1] += 1;
            continue;
        };
        let old = prev_reals[ori].take().expect("matched once");
        r.reals[0] += 1;
        real.passive = old.passive;
        real.ramp = old.ramp;
        if same_checks(&old.cfg.checks, &real.cfg.checks) {
            real.checkers = old.checkers;
            real.healthy = old.healthy;
            moved.insert((oi, ori), RealId { svc: ni, real: nri });
        }
    }
    let sorry = new.cfg.sorry.as_ref().map(|s| (s.dest.addr, s.dest.port));
    let declared: Vec<_> = new
        .reals
        .iter()
        .map(|x| (x.cfg.dest.addr, x.cfg.dest.port))
        .chain(sorry)
        .collect();
    let leaving: Vec<_> = table
        .keys()
        .filter(|k| !declared.contains(k))
        .copied()
        .collect();
    for k in leaving {
        let d = table.remove(&k).expect("listed");
        r.reals[2] += 1;
        for key in &new.cfg.keys {
            r.drain.push((*key, d.port_for(key)));
        }
    }
    new.table = table;
}

//! Reloading the configuration without losing what is known: a service declared before and
//! after keeps its table, quorum and sorry-server state; a real server declared before and
//! after keeps the state of the checks it keeps, its passive-health and
//! slow-start state and probes in flight. Only the differences reach IPVS.

use std::collections::BTreeMap;

use rvs_config::spec::{Check, Config, Loc};
use rvs_core::model::{DestConf, ServiceKey};
use rvs_core::time::Tick;

use super::{Health, Real, Svc};
use crate::checker::Checker;
use crate::pool::Table;
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

/// Two checks are the same without where they were written (a reload that only moves lines
/// changes nothing).
fn same_check(a: &Check, b: &Check) -> bool {
    let strip = |c: &Check| Check {
        loc: Loc::new("", 0, 0),
        ..c.clone()
    };
    strip(a) == strip(b)
}

fn sorted(keys: &[ServiceKey]) -> Vec<String> {
    let mut k: Vec<String> = keys.iter().map(ToString::to_string).collect();
    k.sort();
    k
}

/// Which old service each new one continues: the one with the same keys, else the first one
/// left that shares a key with it (a group that gained or lost members).
fn match_services(old: &[Svc], new: &[Svc]) -> Vec<Option<usize>> {
    let mut taken = vec![false; old.len()];
    let mut found: Vec<Option<usize>> = new
        .iter()
        .map(|n| {
            let keys = sorted(&n.cfg.keys);
            let i = (0..old.len()).find(|&i| !taken[i] && sorted(&old[i].cfg.keys) == keys)?;
            taken[i] = true;
            Some(i)
        })
        .collect();
    for (ni, n) in new.iter().enumerate() {
        if found[ni].is_some() {
            continue;
        }
        let i = (0..old.len())
            .find(|&i| !taken[i] && old[i].cfg.keys.iter().any(|k| n.cfg.keys.contains(k)));
        if let Some(i) = i {
            taken[i] = true;
            found[ni] = Some(i);
        }
    }
    found
}

impl Health {
    /// Take `cfg` as the configuration from `now` on (`seed` draws the warmup of checkers
    /// that are new). Services are matched by their keys (a group that gains or loses
    /// members stays the same service for the keys it keeps), real servers by address and
    /// port, checks by their settings.
    pub fn reload(&mut self, cfg: &Config, seed: u64, now: Tick) -> Reloaded {
        let fresh = Health::new(cfg, seed, now);
        let matches = match_services(&self.svcs, &fresh.svcs);
        let mut old: Vec<Option<Svc>> = std::mem::take(&mut self.svcs)
            .into_iter()
            .map(Some)
            .collect();
        let old_probes = std::mem::take(&mut self.probes);
        let mut r = Reloaded::default();
        // the keys each old service gives up, deleted from IPVS: first those another
        // service takes (so that it starts from nothing), the others at the end
        let all_new: Vec<ServiceKey> = fresh.svcs.iter().flat_map(|s| s.cfg.keys.clone()).collect();
        let mut dropped: Vec<ServiceKey> = Vec::new();
        for (oi, o) in old.iter().enumerate() {
            let Some(o) = o else { continue };
            let stays = matches
                .iter()
                .position(|m| *m == Some(oi))
                .map_or(&[][..], |ni| &fresh.svcs[ni].cfg.keys[..]);
            dropped.extend(o.cfg.keys.iter().filter(|k| !stays.contains(k)));
        }
        for key in dropped.iter().filter(|k| all_new.contains(k)) {
            r.actions.push(Action::DelService { key: *key });
        }
        // (old service, old real, old check) → new real and check, for the probes in flight
        let mut moved: BTreeMap<(usize, usize, usize), (RealId, usize)> = BTreeMap::new();
        let mut svcs = Vec::with_capacity(fresh.svcs.len());
        for (ni, mut new) in fresh.svcs.into_iter().enumerate() {
            let Some(oi) = matches[ni] else {
                r.services[2] += 1;
                r.reals[1] += new.reals.len();
                r.actions
                    .push(Action::Log(format!("{}: added by the reload", new.label)));
                new.install(&mut r.actions);
                svcs.push(new);
                continue;
            };
            let prev = old[oi].take().expect("matched once");
            let changed =
                prev.cfg.conf != new.cfg.conf || sorted(&prev.cfg.keys) != sorted(&new.cfg.keys);
            if prev.cfg.conf != new.cfg.conf {
                for key in new.cfg.keys.iter().filter(|k| prev.cfg.keys.contains(k)) {
                    r.actions.push(Action::EditService {
                        key: *key,
                        conf: new.cfg.conf.clone(),
                    });
                }
            }
            r.services[usize::from(changed)] += 1;
            let before = prev.cfg.keys.clone();
            carry(prev, &mut new, (oi, ni), &mut moved, &mut r);
            new.add_keys(&before, &mut r.actions);
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
        }
        for key in dropped.iter().filter(|k| !all_new.contains(k)) {
            r.actions.push(Action::DelService { key: *key });
        }
        self.svcs = svcs;
        for (id, (rid, ci)) in old_probes {
            if let Some(&(to, nci)) = moved.get(&(rid.svc, rid.real, ci)) {
                let c = &self.svcs[to.svc].reals[to.real].checkers;
                if c.get(nci)
                    .is_some_and(|c| c.in_flight.is_some_and(|(p, _)| p == id))
                {
                    self.probes.insert(id, (to, nci));
                }
            }
        }
        r
    }
}

impl Svc {
    /// The keys a group gained (not in `before`): created with the service's settings and
    /// given the real servers it has in IPVS now.
    fn add_keys(&mut self, before: &[ServiceKey], out: &mut Vec<Action>) {
        for key in self.cfg.keys.iter().filter(|k| !before.contains(k)) {
            out.push(Action::AddService {
                key: *key,
                conf: self.cfg.conf.clone(),
            });
            for d in self.table.values() {
                out.push(Action::AddDest {
                    service: *key,
                    dest: d.port_for(key),
                });
            }
        }
    }
}

/// Move what `prev` (old index `ids.0`) knew into `new` (new index `ids.1`).
fn carry(
    mut prev: Svc,
    new: &mut Svc,
    ids: (usize, usize),
    moved: &mut BTreeMap<(usize, usize, usize), (RealId, usize)>,
    r: &mut Reloaded,
) {
    new.quorum_up = prev.quorum_up;
    // a sorry server the files no longer declare cannot stand in for the real servers
    new.sorry_active = prev.sorry_active && new.cfg.sorry.is_some();
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
        real.passive = old.passive.clone();
        real.ramp = old.ramp;
        let to = RealId {
            svc: ids.1,
            real: nri,
        };
        carry_checkers(old, real, |oci, nci| {
            moved.insert((ids.0, ori, oci), (to, nci));
        });
    }
    rekey_or_drain(&mut table, new, r);
    new.table = table;
}

/// Give `new` the state of the checkers of `old` that it keeps (same settings), calling
/// `keep(old index, new index)` for each. A new check starts in the state the server was
/// in: up if it was healthy, down (until its first pass) if not.
fn carry_checkers(old: Real, new: &mut Real, mut keep: impl FnMut(usize, usize)) {
    let was_healthy = old.healthy;
    let mut olds: Vec<Option<Checker>> = old.checkers.into_iter().map(Some).collect();
    for (nci, c) in new.checkers.iter_mut().enumerate() {
        let found = olds
            .iter()
            .position(|o| o.as_ref().is_some_and(|o| same_check(&o.spec, &c.spec)));
        match found {
            Some(oci) => {
                let mut kept = olds[oci].take().expect("matched once");
                kept.spec = c.spec.clone();
                *c = kept;
                keep(oci, nci);
            }
            None => c.assume(was_healthy),
        }
    }
    new.healthy = new.checkers.iter().all(|c| c.up);
}

/// The real servers in IPVS the files no longer declare: one whose place in IPVS a declared
/// server takes (direct routing maps every port to the service's) becomes that server's
/// entry; the others leave the table and are handed back for draining.
fn rekey_or_drain(table: &mut Table, new: &Svc, r: &mut Reloaded) {
    let sorry = new.cfg.sorry.as_ref().map(|s| s.dest);
    let declared: Vec<DestConf> = new.reals.iter().map(|x| x.cfg.dest).chain(sorry).collect();
    let ipvs = |d: &DestConf| {
        new.cfg
            .keys
            .iter()
            .map(|k| {
                let x = d.port_for(k);
                (x.addr, x.port)
            })
            .collect::<Vec<_>>()
    };
    let leaving: Vec<_> = table
        .keys()
        .filter(|k| !declared.iter().any(|d| (d.addr, d.port) == **k))
        .copied()
        .collect();
    for k in leaving {
        let d = table.remove(&k).expect("listed");
        let heir = declared
            .iter()
            .find(|x| !new.cfg.keys.is_empty() && ipvs(x) == ipvs(&d));
        match heir {
            Some(h) => {
                table.entry((h.addr, h.port)).or_insert(d);
            }
            None => {
                r.reals[2] += 1;
                for key in &new.cfg.keys {
                    r.drain.push((*key, d.port_for(key)));
                }
            }
        }
    }
}

//! `lblcr` scheduler: locality-based least-connection with replication (`ip_vs_lblcr.c`).
//!
//! A cache maps each packet *destination* address to a *set* of destinations (newest member
//! first, as the kernel's `list_add_rcu` keeps it):
//!
//! * no entry: the wlc choice starts a new set;
//! * otherwise the set's least loaded member (`ip_vs_dest_set_min`: OVERLOAD skipped,
//!   `weight > 0` and AVAILABLE for the first pick, then `(s64)loh × w > (s64)doh × lw`) is used,
//!   unless there is none or it is "overloaded" in lblcr's sense (`activeconns > weight`
//!   while some destination has `activeconns * 2 < weight`); then the wlc choice is used and
//!   added to the set;
//! * before that, when the set has more than one member and was last modified more than
//!   `lblcr_expiration` ago, its most loaded member (`ip_vs_dest_set_max`) is pruned.
//!
//! Entries expire through the same periodic GC as lblc's (see [`super::lblc`]), except that
//! lblcr never replaces an entry, so its `entries` counter does not drift.
//!
//! Set members are [`DestId`]s; a member no longer in the list is not AVAILABLE (skipped by
//! the least-loaded pick). The kernel's most-loaded pick does not look at AVAILABLE: it reads
//! a deleted member's weight and connection counters. This implementation remembers the
//! weight a member had when it was removed and takes its connection overhead as 0 (its
//! connections have drained by the time a set is pruned, `lblcr_expiration` after its last
//! change). [`Lblcr::dest_refs`] gives the references the sets hold, so the engine can keep
//! such destinations in the trash (and their ids unused) as the kernel does.

use std::collections::HashMap;
use std::net::IpAddr;

use super::index::{
    conn_overhead, reference_is_overloaded, DestRefs, LocalityIndex, LocalityTable, TableEntry,
    DEFAULT_EXPIRATION,
};
use super::lc::Wlc;
use super::{DestChange, SchedCtx, SchedPacket, Scheduler};
use crate::dest::{DestId, DestList};
use crate::time::{Span, Tick};

#[derive(Debug)]
struct Entry {
    /// members, oldest first (the kernel's list order is the reverse)
    set: Vec<DestId>,
    /// `set.lastmod`
    lastmod: Tick,
    /// `en->lastuse`
    lastuse: Tick,
}

impl TableEntry for Entry {
    #[inline]
    fn lastuse(&self) -> Tick {
        self.lastuse
    }
}

/// `lblcr` scheduler state.
#[derive(Debug)]
pub struct Lblcr {
    expiration: Span,
    idx: LocalityIndex,
    table: LocalityTable<Entry>,
    refs: DestRefs,
    /// weight at removal of referenced destinations no longer in the list
    gone: HashMap<DestId, i32>,
}

impl Default for Lblcr {
    /// With the kernel's default `lblcr_expiration` of 24 hours.
    fn default() -> Self {
        Lblcr::new(DEFAULT_EXPIRATION)
    }
}

/// `ip_vs_dest_set_min`: the set's weighted least-connection member, newest first.
fn set_min(
    set: &[DestId],
    list: DestList<'_>,
    locate: impl Fn(DestId) -> Option<usize>,
) -> Option<usize> {
    let mut it = set.iter().rev();
    let (mut least, mut lw, mut loh) = loop {
        // a member not in the list is not AVAILABLE: skipped whatever its flags
        let Some(pos) = locate(*it.next()?) else {
            continue;
        };
        let d = list.get(pos);
        if d.is_overloaded() {
            continue;
        }
        if d.weight > 0 && d.is_available() {
            break (pos, d.weight, conn_overhead(d));
        }
    };
    for &id in it {
        let Some(pos) = locate(id) else {
            continue;
        };
        let d = list.get(pos);
        if d.is_overloaded() {
            continue;
        }
        let doh = conn_overhead(d);
        if i64::from(loh) * i64::from(d.weight) > i64::from(doh) * i64::from(lw) && d.is_available()
        {
            least = pos;
            lw = d.weight;
            loh = doh;
        }
    }
    Some(least)
}

/// `ip_vs_dest_set_max`: the set's weighted most-connection member, newest first. `view`
/// gives a member's weight and overhead.
fn set_max(set: &[DestId], view: impl Fn(DestId) -> (i32, i32)) -> Option<DestId> {
    let mut it = set.iter().rev();
    let (mut most, mut mw, mut moh) = loop {
        let id = *it.next()?;
        let (w, oh) = view(id);
        if w > 0 {
            break (id, w, oh);
        }
    };
    for &id in it {
        let (dw, doh) = view(id);
        // moh/mw < doh/dw ==> moh*dw < doh*mw, where mw,dw>0
        if i64::from(moh) * i64::from(dw) < i64::from(doh) * i64::from(mw) && dw > 0 {
            most = id;
            mw = dw;
            moh = doh;
        }
    }
    Some(most)
}

impl Lblcr {
    /// The default `lblcr_expiration` (24 h).
    pub const DEFAULT_EXPIRATION: Span = DEFAULT_EXPIRATION;

    /// A scheduler with the given `net.ipv4.vs.lblcr_expiration`: the idle time after which
    /// the full GC sweep drops an entry, and the age of a set's last change after which its
    /// most loaded member is pruned.
    pub fn new(expiration: Span) -> Lblcr {
        Lblcr {
            expiration,
            idx: LocalityIndex::default(),
            table: LocalityTable::default(),
            refs: DestRefs::default(),
            gone: HashMap::new(),
        }
    }

    /// The current `lblcr_expiration`.
    pub fn expiration(&self) -> Span {
        self.expiration
    }

    /// Change `lblcr_expiration` (the kernel reads the sysctl at every use).
    pub fn set_expiration(&mut self, expiration: Span) {
        self.expiration = expiration;
    }

    /// Start the GC timer at `now`, as `init_service` does. Without this call the timer
    /// starts at the first time the scheduler sees (a `schedule` or `housekeeping` call).
    pub fn start_timer(&mut self, now: Tick) {
        self.table.start_timer(now);
    }

    /// How many set memberships reference destination `id` (the kernel's
    /// `ip_vs_dest_hold`s): while non-zero, the kernel keeps a deleted destination in the
    /// trash.
    pub fn dest_refs(&self, id: DestId) -> u32 {
        self.refs.get(id)
    }

    /// The set cached for `daddr`, newest member first (the kernel's list order).
    pub fn cached_set(&self, daddr: &IpAddr) -> Option<Vec<DestId>> {
        self.table
            .get(daddr)
            .map(|e| e.set.iter().rev().copied().collect())
    }

    /// Number of cache entries.
    pub fn entries(&self) -> usize {
        self.table.len()
    }

    /// The kernel's `tbl->entries` counter.
    pub fn entries_counter(&self) -> i32 {
        self.table.entries_counter()
    }

    /// `ip_vs_lblcr_schedule` with kernel-literal O(n) scans for the wlc choice, the
    /// `is_overloaded` test and the AVAILABLE lookups; same cache and GC as
    /// [`Scheduler::schedule`].
    pub fn reference_schedule(
        &mut self,
        list: DestList<'_>,
        pkt: &SchedPacket,
        ctx: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        self.decide(list, pkt.daddr, ctx.now, true)
    }

    fn run_timer(&mut self, now: Tick) {
        let refs = &mut self.refs;
        let mut freed = false;
        self.table.run_timer(now, self.expiration, &mut |e: Entry| {
            for id in e.set {
                refs.put(id);
            }
            freed = true;
        });
        if freed && !self.gone.is_empty() {
            self.gone.retain(|id, _| refs.get(*id) > 0);
        }
    }

    #[inline]
    fn decide(
        &mut self,
        list: DestList<'_>,
        daddr: IpAddr,
        now: Tick,
        literal: bool,
    ) -> Option<usize> {
        self.run_timer(now);
        if !literal && self.idx.len() != list.len() {
            self.idx.rebuild(list);
        }
        let idx = &self.idx;
        let refs = &mut self.refs;
        let gone = &self.gone;
        let locate = |id: DestId| {
            if literal {
                list.position(id)
            } else {
                idx.position(list, id)
            }
        };
        let wlc = || {
            if literal {
                Wlc::reference_schedule(list)
            } else {
                idx.wlc(list)
            }
        };
        let overloaded = |pos: usize| {
            let d = list.get(pos);
            if literal {
                reference_is_overloaded(d, list)
            } else {
                idx.is_overloaded(d)
            }
        };
        // First look in our cache
        if let Some(en) = self.table.get_mut(&daddr) {
            en.lastuse = now;
            // Get the least loaded destination
            let least = set_min(&en.set, list, locate);
            // More than one destination + enough time passed by, cleanup
            if en.set.len() > 1 && now > en.lastmod + self.expiration {
                let view = |id: DestId| match locate(id) {
                    Some(pos) => {
                        let d = list.get(pos);
                        (d.weight, conn_overhead(d))
                    }
                    None => (gone.get(&id).copied().unwrap_or(0), 0),
                };
                if let Some(m) = set_max(&en.set, view) {
                    if let Some(i) = en.set.iter().rposition(|x| *x == m) {
                        en.set.remove(i);
                        en.lastmod = now;
                        refs.put(m);
                    }
                }
            }
            // If the destination is not overloaded, use it
            if let Some(pos) = least {
                if !overloaded(pos) {
                    return Some(pos);
                }
            }
            // The cache entry is invalid, time to schedule
            let pos = wlc()?;
            let id = list.id(pos);
            // Update our cache entry
            if !en.set.contains(&id) {
                en.set.push(id);
                en.lastmod = now;
                refs.hold(id);
            }
            return Some(pos);
        }
        // No cache entry, time to schedule
        let pos = wlc()?;
        let id = list.id(pos);
        refs.hold(id);
        self.table.hash(
            daddr,
            Entry {
                set: vec![id],
                lastmod: now,
                lastuse: now,
            },
        );
        Some(pos)
    }
}

impl Scheduler for Lblcr {
    fn name(&self) -> &'static str {
        "lblcr"
    }

    fn holds(&self, id: DestId) -> bool {
        self.dest_refs(id) > 0
    }

    fn dests_changed(&mut self, list: DestList<'_>, change: DestChange) {
        match change {
            DestChange::Init => {
                self.table.reset();
                self.refs.clear();
                self.gone.clear();
                self.idx.rebuild(list);
            }
            DestChange::Updated { pos } => self.idx.sync(list, pos),
            DestChange::Added { .. } => {
                self.idx.rebuild(list);
                if !self.gone.is_empty() {
                    let idx = &self.idx;
                    self.gone.retain(|id, _| idx.position(list, *id).is_none());
                }
            }
            DestChange::Removed { old_pos, id } => {
                if let Some((was, weight)) = self.idx.meta_at(old_pos) {
                    if was == id && self.refs.get(id) > 0 {
                        self.gone.insert(id, weight);
                    }
                }
                self.idx.rebuild(list);
            }
        }
    }

    #[inline]
    fn counts_changed(&mut self, list: DestList<'_>, pos: usize) {
        self.idx.sync(list, pos);
    }

    fn housekeeping(&mut self, _list: DestList<'_>, now: Tick) {
        self.run_timer(now);
    }

    #[inline]
    fn schedule(
        &mut self,
        list: DestList<'_>,
        pkt: &SchedPacket,
        ctx: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        self.decide(list, pkt.daddr, ctx.now, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use crate::sched::index::testutil::{ctx, pkt, Spec, TestList};
    use crate::sched::lblc::tests::{daddr, drive, op};
    use proptest::prelude::*;

    const A: &str = "10.1.0.1";

    fn addr(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    struct Rig {
        t: TestList,
        s: Lblcr,
        rng: Rng,
        now: Tick,
    }

    impl Rig {
        fn new(specs: &[Spec], exp: Span) -> Rig {
            let t = TestList::new(specs);
            let mut s = Lblcr::new(exp);
            s.dests_changed(t.list(), DestChange::Init);
            s.start_timer(Tick::ZERO);
            Rig {
                t,
                s,
                rng: Rng::seeded(5),
                now: Tick::ZERO,
            }
        }
        fn sched(&mut self, daddr: &str) -> Option<usize> {
            self.s.schedule(
                self.t.list(),
                &pkt(addr(daddr)),
                &mut ctx(&mut self.rng, self.now),
            )
        }
        fn set_active(&mut self, pos: usize, a: u32) {
            self.t.at(pos).activeconns = a;
            self.s.counts_changed(self.t.list(), pos);
        }
        /// the cached set as list positions (None for members not in the list)
        fn set(&self, daddr: &str) -> Vec<Option<usize>> {
            let l = self.t.list();
            self.s
                .cached_set(&addr(daddr))
                .unwrap_or_default()
                .into_iter()
                .map(|id| l.position(id))
                .collect()
        }
    }

    #[test]
    fn new_entry_holds_the_wlc_choice() {
        let mut r = Rig::new(
            &[(1, 2, 0, false), (1, 1, 0, false), (1, 3, 0, false)],
            Lblcr::DEFAULT_EXPIRATION,
        );
        assert_eq!(r.sched(A), Some(1));
        assert_eq!(r.set(A), vec![Some(1)]);
        assert_eq!(r.s.dest_refs(r.t.order[1]), 1);
    }

    #[test]
    fn set_grows_when_its_least_loaded_member_is_overloaded() {
        let mut r = Rig::new(
            &[(2, 0, 0, false), (2, 0, 0, false), (2, 0, 0, false)],
            Lblcr::DEFAULT_EXPIRATION,
        );
        assert_eq!(r.sched(A), Some(0));
        // member 0 overloaded: 3 > 2 and dest 1 has 0*2 < 2 → wlc → 1, added to the set
        r.set_active(0, 3);
        r.now = Tick::from_secs(5);
        assert_eq!(r.sched(A), Some(1));
        assert_eq!(r.set(A), vec![Some(1), Some(0)]);
        // set_min now picks 1 (least loaded member) as long as it is fine
        r.set_active(1, 2);
        assert_eq!(r.sched(A), Some(1));
        // 1 overloaded as well: wlc → 2, set of three, newest first
        r.set_active(1, 3);
        assert_eq!(r.sched(A), Some(2));
        assert_eq!(r.set(A), vec![Some(2), Some(1), Some(0)]);
        // picking a member already in the set does not add it again
        r.set_active(2, 3);
        r.set_active(0, 0); // 0 is least: set_min → 0
        assert_eq!(r.sched(A), Some(0));
        assert_eq!(r.set(A).len(), 3);
    }

    #[test]
    fn set_min_skips_overload_flag_and_weight_zero_first() {
        let mut r = Rig::new(
            &[(1, 0, 0, false), (1, 0, 0, false), (1, 0, 0, false)],
            Lblcr::DEFAULT_EXPIRATION,
        );
        assert_eq!(r.sched(A), Some(0));
        r.set_active(0, 2);
        assert_eq!(r.sched(A), Some(1)); // 0 overloaded (2 > 1, 2 idle is half loaded)
                                         // set = [1, 0]; OVERLOAD flag on 1 → set_min skips it → 0, which is still
                                         // overloaded in lblcr's sense → wlc (OVERLOAD skipped) → 2
        r.t.set_overload(1, true);
        r.s.counts_changed(r.t.list(), 1);
        assert_eq!(r.sched(A), Some(2));
        assert_eq!(r.set(A), vec![Some(2), Some(1), Some(0)]);
    }

    #[test]
    fn most_loaded_member_is_pruned_after_the_expiration() {
        let exp = Span::secs(600);
        let mut r = Rig::new(&[(1, 0, 0, false), (1, 0, 0, false), (1, 0, 0, false)], exp);
        assert_eq!(r.sched(A), Some(0));
        r.set_active(0, 2);
        r.now = Tick::from_secs(100);
        assert_eq!(r.sched(A), Some(1)); // lastmod = 100
        assert_eq!(r.set(A), vec![Some(1), Some(0)]);
        // at exactly lastmod + exp nothing is pruned (time_after is strict)
        r.now = Tick::from_secs(700);
        assert_eq!(r.sched(A), Some(1));
        assert_eq!(r.set(A).len(), 2);
        // later: the most loaded member (0: 512 vs 1: 0) goes, lastmod = now
        r.now = Tick::from_secs(701);
        assert_eq!(r.sched(A), Some(1));
        assert_eq!(r.set(A), vec![Some(1)]);
        assert_eq!(r.s.dest_refs(r.t.order[0]), 0);
    }

    #[test]
    fn pruning_happens_before_the_pick_is_returned() {
        // the least loaded member is returned even when the prune removes it
        let exp = Span::secs(60);
        let mut r = Rig::new(&[(1, 0, 0, false), (2, 0, 0, false)], exp);
        assert_eq!(r.sched(A), Some(0));
        r.set_active(0, 2); // 2 > 1, dest 1 half loaded → wlc → 1
        assert_eq!(r.sched(A), Some(1));
        // equal loads: set_min keeps the newest member (1) and so does set_max
        r.set_active(0, 0);
        r.set_active(1, 0);
        r.now = Tick::from_secs(200);
        assert_eq!(r.sched(A), Some(1), "set_min picked 1 (newest of equals)");
        assert_eq!(
            r.set(A),
            vec![Some(0)],
            "set_max pruned 1 (newest of equals)"
        );
    }

    #[test]
    fn removed_member_is_unavailable_and_revived_member_counts_again() {
        let mut r = Rig::new(
            &[(1, 0, 0, false), (1, 0, 0, false)],
            Lblcr::DEFAULT_EXPIRATION,
        );
        assert_eq!(r.sched(A), Some(0));
        let id0 = r.t.order[0];
        let id = r.t.remove(0);
        r.s.dests_changed(r.t.list(), DestChange::Removed { old_pos: 0, id });
        // set_min finds no available member → wlc → the remaining one, added
        assert_eq!(r.sched(A), Some(0));
        assert_eq!(r.set(A), vec![Some(0), None]);
        assert_eq!(r.s.dest_refs(id0), 1);
        // revive: back at the head, a member again
        r.t.revive(id0);
        r.s.dests_changed(r.t.list(), DestChange::Added { pos: 0 });
        assert_eq!(r.set(A), vec![Some(1), Some(0)]);
        r.set_active(1, 1);
        assert_eq!(
            r.sched(A),
            Some(0),
            "the revived member is the least loaded"
        );
    }

    #[test]
    fn pruning_considers_a_removed_member_with_its_last_weight() {
        let exp = Span::secs(60);
        let mut r = Rig::new(&[(1, 0, 0, false), (1, 0, 0, false), (1, 0, 0, false)], exp);
        assert_eq!(r.sched(A), Some(0));
        r.set_active(0, 2);
        assert_eq!(r.sched(A), Some(1)); // set [1, 0]
                                         // remove 1 (newest member): for set_max it has weight 1 and no connections
        let id = r.t.remove(1);
        r.s.dests_changed(r.t.list(), DestChange::Removed { old_pos: 1, id });
        r.now = Tick::from_secs(100);
        // set_min: 0 (the only available member) is overloaded → wlc → position 1 (old 2);
        // before that set_max: newest = removed (w 1, oh 0), then 0 with 512 → prune 0
        assert_eq!(r.sched(A), Some(1));
        assert_eq!(r.set(A), vec![Some(1), None]);
    }

    #[test]
    fn entries_expire_on_the_full_sweep() {
        let exp = Span::secs(10 * 60);
        let mut r = Rig::new(&[(1, 0, 0, false), (1, 0, 0, false)], exp);
        assert_eq!(r.sched(A), Some(0));
        r.set_active(0, 1);
        r.now = Tick::from_secs(29 * 60);
        r.s.housekeeping(r.t.list(), r.now);
        assert_eq!(r.s.entries(), 1);
        r.now = Tick::from_secs(30 * 60);
        r.s.housekeeping(r.t.list(), r.now);
        assert_eq!(r.s.entries(), 0);
        assert_eq!(r.s.dest_refs(r.t.order[0]), 0);
        assert_eq!(r.sched(A), Some(1));
    }

    fn lblcr_call(
        s: &mut Lblcr,
        l: DestList<'_>,
        p: &SchedPacket,
        c: &mut SchedCtx<'_>,
        literal: bool,
    ) -> Option<usize> {
        if literal {
            s.reference_schedule(l, p, c)
        } else {
            s.schedule(l, p, c)
        }
    }

    fn lblcr_same(a: &Lblcr, b: &Lblcr, _t: &TestList) -> bool {
        (0..12).all(|i| a.cached_set(&daddr(i)) == b.cached_set(&daddr(i)))
            && a.entries_counter() == b.entries_counter()
            && (0..64).all(|i| a.dest_refs(DestId(i)) == b.dest_refs(DestId(i)))
    }

    proptest! {
        #[test]
        fn lblcr_index_equals_scan(ops in prop::collection::vec(op(), 0..250)) {
            let exp = Span::secs(15 * 60);
            drive(&ops, &mut Lblcr::new(exp), &mut Lblcr::new(exp), lblcr_call, lblcr_same);
        }
    }
}

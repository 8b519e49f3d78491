//! `lblc` scheduler: locality-based least-connection (`ip_vs_lblc.c`).
//!
//! A cache maps each packet *destination* address to the destination chosen for it last
//! time. A cached destination is reused while it is AVAILABLE (still in the service's list),
//! has weight > 0 and is not "overloaded" in lblc's own sense — `activeconns > weight` while
//! some destination of the service has `activeconns * 2 < weight`. The OVERLOAD flag is *not*
//! checked for a cached destination. Otherwise the wlc choice (OVERLOAD and weight 0 skipped)
//! replaces the cache entry.
//!
//! Entries expire through the kernel's periodic GC: every 60 s a timer either does a full
//! sweep (every 30th run when no over-size collection happened) of entries idle for
//! `lblc_expiration` (24 h by default), or, when the table holds more than 16384 entries,
//! drops entries idle for 6 minutes bucket by bucket from a rover. The kernel's `entries`
//! counter is kept as the kernel keeps it: replacing an entry deletes the old one without
//! decrementing the counter, so it drifts upwards and can keep the over-size GC (and the
//! postponed full sweep) running — the same in this implementation.
//!
//! Cache entries hold [`DestId`]s; an id that is no longer in the list is "not AVAILABLE",
//! so the entry is replaced at its next use, as the kernel replaces an entry whose destination
//! went to the trash. The kernel also keeps such a destination in the trash while an entry
//! references it (and revives the very same object if it is re-added); [`Lblc::dest_refs`]
//! tells the engine how many references the cache holds so it can do the same.

use std::net::IpAddr;

use super::index::{
    reference_is_overloaded, DestRefs, LocalityIndex, LocalityTable, TableEntry, DEFAULT_EXPIRATION,
};
use super::lc::Wlc;
use super::{DestChange, SchedCtx, SchedPacket, Scheduler};
use crate::dest::{DestId, DestList};
use crate::time::{Span, Tick};

#[derive(Debug)]
struct Entry {
    dest: DestId,
    lastuse: Tick,
}

impl TableEntry for Entry {
    #[inline]
    fn lastuse(&self) -> Tick {
        self.lastuse
    }
}

/// `lblc` scheduler state.
#[derive(Debug)]
pub struct Lblc {
    expiration: Span,
    idx: LocalityIndex,
    table: LocalityTable<Entry>,
    refs: DestRefs,
}

impl Default for Lblc {
    /// With the kernel's default `lblc_expiration` of 24 hours.
    fn default() -> Self {
        Lblc::new(DEFAULT_EXPIRATION)
    }
}

impl Lblc {
    /// The default `lblc_expiration` (24 h).
    pub const DEFAULT_EXPIRATION: Span = DEFAULT_EXPIRATION;

    /// A scheduler whose full GC sweep drops entries idle for `expiration` (the
    /// `net.ipv4.vs.lblc_expiration` sysctl).
    pub fn new(expiration: Span) -> Lblc {
        Lblc {
            expiration,
            idx: LocalityIndex::default(),
            table: LocalityTable::default(),
            refs: DestRefs::default(),
        }
    }

    /// The current `lblc_expiration`.
    pub fn expiration(&self) -> Span {
        self.expiration
    }

    /// Change `lblc_expiration` (the kernel reads the sysctl at every sweep).
    pub fn set_expiration(&mut self, expiration: Span) {
        self.expiration = expiration;
    }

    /// Start the GC timer at `now`, as `init_service` does. Without this call the timer
    /// starts at the first time the scheduler sees (a `schedule` or `housekeeping` call).
    pub fn start_timer(&mut self, now: Tick) {
        self.table.start_timer(now);
    }

    /// How many cache entries reference destination `id` (the kernel's `ip_vs_dest_hold`s):
    /// while non-zero, the kernel keeps a deleted destination in the trash.
    pub fn dest_refs(&self, id: DestId) -> u32 {
        self.refs.get(id)
    }

    /// The destination cached for `daddr`, if any.
    pub fn cached(&self, daddr: &IpAddr) -> Option<DestId> {
        self.table.get(daddr).map(|e| e.dest)
    }

    /// Number of cache entries.
    pub fn entries(&self) -> usize {
        self.table.len()
    }

    /// The kernel's `tbl->entries` counter (drifts above [`Lblc::entries`], see the module
    /// docs).
    pub fn entries_counter(&self) -> i32 {
        self.table.entries_counter()
    }

    /// `ip_vs_lblc_schedule` with kernel-literal O(n) scans for the wlc choice, the
    /// `is_overloaded` test and the AVAILABLE lookup; same cache and GC as
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
        self.table
            .run_timer(now, self.expiration, &mut |e: Entry| refs.put(e.dest));
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
        // First look in our cache
        if let Some(en) = self.table.get_mut(&daddr) {
            en.lastuse = now;
            let pos = if literal {
                list.position(en.dest)
            } else {
                idx.position(list, en.dest)
            };
            if let Some(pos) = pos {
                let d = list.get(pos);
                let overloaded = if literal {
                    reference_is_overloaded(d, list)
                } else {
                    idx.is_overloaded(d)
                };
                if d.is_available() && d.weight > 0 && !overloaded {
                    return Some(pos);
                }
            }
        }
        // No cache entry or it is invalid, time to schedule
        let pos = if literal {
            Wlc::reference_schedule(list)
        } else {
            idx.wlc(list)
        }?;
        let id = list.id(pos);
        // ip_vs_lblc_new
        if let Some(en) = self.table.get_mut(&daddr) {
            if en.dest == id {
                return Some(pos);
            }
        }
        self.refs.hold(id);
        if let Some(old) = self.table.hash(
            daddr,
            Entry {
                dest: id,
                lastuse: now,
            },
        ) {
            self.refs.put(old.dest);
        }
        Some(pos)
    }
}

impl Scheduler for Lblc {
    fn name(&self) -> &'static str {
        "lblc"
    }

    fn holds(&self, id: DestId) -> bool {
        self.dest_refs(id) > 0
    }

    fn dests_changed(&mut self, list: DestList<'_>, change: DestChange) {
        match change {
            DestChange::Init => {
                self.table.reset();
                self.refs.clear();
                self.idx.rebuild(list);
            }
            DestChange::Updated { pos } => self.idx.sync(list, pos),
            DestChange::Added { .. } | DestChange::Removed { .. } => self.idx.rebuild(list),
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
pub(crate) mod tests {
    use super::*;
    use crate::rng::Rng;
    use crate::sched::index::testutil::{ctx, pkt, Spec, TestList};
    use proptest::prelude::*;

    fn addr(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    struct Rig {
        t: TestList,
        s: Lblc,
        rng: Rng,
        now: Tick,
    }

    impl Rig {
        fn new(specs: &[Spec], exp: Span) -> Rig {
            let t = TestList::new(specs);
            let mut s = Lblc::new(exp);
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
        /// schedule and bind (activeconns += 1)
        fn bind(&mut self, daddr: &str) -> Option<usize> {
            let r = self.sched(daddr);
            if let Some(p) = r {
                self.t.at(p).activeconns += 1;
                self.s.counts_changed(self.t.list(), p);
            }
            r
        }
        fn set_active(&mut self, pos: usize, a: u32) {
            self.t.at(pos).activeconns = a;
            self.s.counts_changed(self.t.list(), pos);
        }
        fn set_inact(&mut self, pos: usize, i: u32) {
            self.t.at(pos).inactconns = i;
            self.s.counts_changed(self.t.list(), pos);
        }
    }

    #[test]
    fn hit_returns_the_cached_destination() {
        let mut r = Rig::new(
            &[(1, 0, 0, false), (1, 0, 0, false), (1, 0, 0, false)],
            Lblc::DEFAULT_EXPIRATION,
        );
        // wlc: all idle → position 0; cached for A
        assert_eq!(r.bind("10.1.0.1"), Some(0));
        // B goes to the least loaded one: 1
        assert_eq!(r.bind("10.1.0.2"), Some(1));
        // A again: cached 0 although 2 is less loaded (0 has 1 active = weight, not > weight)
        assert_eq!(r.bind("10.1.0.1"), Some(0));
        assert_eq!(r.s.cached(&addr("10.1.0.1")), Some(r.t.order[0]));
        assert_eq!(r.s.entries(), 2);
        assert_eq!(r.s.dest_refs(r.t.order[0]), 1);
    }

    #[test]
    fn overloaded_cached_destination_is_replaced() {
        let mut r = Rig::new(
            &[(2, 0, 0, false), (4, 0, 0, false)],
            Lblc::DEFAULT_EXPIRATION,
        );
        assert_eq!(r.sched("10.1.0.1"), Some(0));
        // 3 active > weight 2, and dest 1 has 0*2 < 4 → overloaded: re-pick wlc → 1
        r.set_active(0, 3);
        assert_eq!(r.sched("10.1.0.1"), Some(1));
        assert_eq!(r.s.cached(&addr("10.1.0.1")), Some(r.t.order[1]));
        // the kernel counter drifted: one entry, counter 2
        assert_eq!((r.s.entries(), r.s.entries_counter()), (1, 2));
        assert_eq!(r.s.dest_refs(r.t.order[0]), 0);
        assert_eq!(r.s.dest_refs(r.t.order[1]), 1);
    }

    #[test]
    fn active_above_weight_without_a_half_loaded_destination_keeps_the_cache() {
        let mut r = Rig::new(
            &[(2, 0, 0, false), (4, 0, 0, false)],
            Lblc::DEFAULT_EXPIRATION,
        );
        assert_eq!(r.sched("10.1.0.1"), Some(0));
        r.set_active(0, 3);
        // dest 1: 2*2 < 4 is false → nobody is half loaded (dest 0: 6 < 2 false)
        r.set_active(1, 2);
        assert_eq!(r.sched("10.1.0.1"), Some(0));
    }

    #[test]
    fn overload_flag_is_not_checked_on_a_cached_destination() {
        let mut r = Rig::new(
            &[(1, 0, 0, false), (1, 0, 0, false)],
            Lblc::DEFAULT_EXPIRATION,
        );
        assert_eq!(r.sched("10.1.0.1"), Some(0));
        r.t.set_overload(0, true);
        r.s.counts_changed(r.t.list(), 0);
        assert_eq!(r.sched("10.1.0.1"), Some(0));
        // a new address does not get the OVERLOAD one
        assert_eq!(r.sched("10.1.0.2"), Some(1));
    }

    #[test]
    fn weight_zero_or_removed_cached_destination_is_replaced() {
        let mut r = Rig::new(
            &[(1, 0, 0, false), (1, 1, 0, false), (1, 2, 0, false)],
            Lblc::DEFAULT_EXPIRATION,
        );
        assert_eq!(r.sched("10.1.0.1"), Some(0));
        r.t.at(0).weight = 0;
        r.s.dests_changed(r.t.list(), DestChange::Updated { pos: 0 });
        assert_eq!(r.sched("10.1.0.1"), Some(1));
        // remove position 1 (the cached one): entry replaced by the wlc pick
        let id = r.t.remove(1);
        r.s.dests_changed(r.t.list(), DestChange::Removed { old_pos: 1, id });
        assert_eq!(
            r.s.dest_refs(id),
            1,
            "the entry still holds the removed destination"
        );
        assert_eq!(r.sched("10.1.0.1"), Some(1));
        assert_eq!(r.s.cached(&addr("10.1.0.1")), Some(r.t.order[1]));
        assert_eq!(r.s.dest_refs(id), 0);
    }

    #[test]
    fn cached_same_destination_is_kept_when_wlc_picks_it_again() {
        let mut r = Rig::new(
            &[(4, 0, 0, false), (1, 0, 400, false)],
            Lblc::DEFAULT_EXPIRATION,
        );
        // wlc: 0/4 vs 400/1 → 0
        assert_eq!(r.sched("10.1.0.1"), Some(0));
        assert_eq!(r.s.entries_counter(), 1);
        // 0 is overloaded (5 > 4 and 1 has 0*2 < 1) but still the wlc choice (1280/4 = 320
        // < 400/1): ip_vs_lblc_new finds the same destination and keeps the entry
        r.set_active(0, 5);
        assert_eq!(r.sched("10.1.0.1"), Some(0));
        assert_eq!(r.s.entries_counter(), 1);
        // 1 lighter now (100/1): replaced, the counter drifts
        r.set_inact(1, 100);
        assert_eq!(r.sched("10.1.0.1"), Some(1));
        assert_eq!((r.s.entries(), r.s.entries_counter()), (1, 2));
    }

    #[test]
    fn entries_expire_on_the_full_sweep() {
        let exp = Span::secs(10 * 60);
        let mut r = Rig::new(&[(1, 0, 0, false), (1, 0, 0, false)], exp);
        assert_eq!(r.sched("10.1.0.1"), Some(0));
        // make 1 the wlc choice, 0 not overloaded in lblc's sense
        r.set_active(0, 1);
        // timer runs at 60 s, 120 s, …; counter reaches 30 at the run at 30 min: full sweep
        r.now = Tick::from_secs(29 * 60);
        r.s.housekeeping(r.t.list(), r.now);
        assert_eq!(r.s.entries(), 1, "no sweep before the 30th run");
        r.now = Tick::from_secs(30 * 60);
        r.s.housekeeping(r.t.list(), r.now);
        assert_eq!(r.s.entries(), 0, "idle 30 min > 10 min: swept");
        assert_eq!(r.sched("10.1.0.1"), Some(1));
    }

    #[test]
    fn used_entries_survive_the_sweep_and_schedule_runs_the_timer() {
        let exp = Span::secs(10 * 60);
        let mut r = Rig::new(&[(1, 0, 0, false), (1, 0, 0, false)], exp);
        assert_eq!(r.sched("10.1.0.1"), Some(0));
        assert_eq!(r.sched("10.1.0.2"), Some(0));
        r.now = Tick::from_secs(25 * 60);
        assert_eq!(r.sched("10.1.0.2"), Some(0)); // touched at 25 min
        r.set_active(0, 1);
        // no housekeeping call: the next schedule first runs the overdue timer expiries
        r.now = Tick::from_secs(31 * 60);
        assert_eq!(
            r.sched("10.1.0.1"),
            Some(1),
            "A expired at the 30-min sweep"
        );
        assert_eq!(r.s.cached(&addr("10.1.0.2")), Some(r.t.order[0]));
    }

    #[test]
    fn ipv6_destinations_are_cached_too() {
        let mut r = Rig::new(
            &[(1, 0, 0, false), (1, 0, 0, false)],
            Lblc::DEFAULT_EXPIRATION,
        );
        assert_eq!(r.bind("2001:db8::1"), Some(0));
        assert_eq!(r.bind("2001:db8::2"), Some(1));
        assert_eq!(r.bind("2001:db8::1"), Some(0));
    }

    // ---------------------------------------------------------------------------------------
    // property: indexed and kernel-literal scans agree over random histories

    #[derive(Clone, Debug)]
    pub(crate) enum Op {
        AddHead(Spec),
        Remove(usize),
        Revive,
        SetWeight(usize, i32),
        SetActive(usize, u32),
        ToggleOverload(usize),
        Touch(usize),
        Schedule(u8, bool),
        Advance(u32),
        Housekeeping,
    }

    pub(crate) fn op() -> impl Strategy<Value = Op> {
        let i = any::<usize>();
        let w = prop_oneof![3 => 0..5i32, 1 => 1..100i32];
        let c = prop_oneof![6 => 0..8u32, 1 => 0..300u32, 1 => (1u32 << 23)..(1u32 << 24)];
        prop_oneof![
            2 => (w.clone(), c.clone(), c.clone(), prop::bool::weighted(0.2))
                .prop_map(Op::AddHead),
            1 => i.prop_map(Op::Remove),
            1 => Just(Op::Revive),
            2 => (i, w).prop_map(|(p, w)| Op::SetWeight(p, w)),
            3 => (i, c).prop_map(|(p, c)| Op::SetActive(p, c)),
            1 => i.prop_map(Op::ToggleOverload),
            1 => i.prop_map(Op::Touch),
            8 => (0..12u8, any::<bool>()).prop_map(|(a, b)| Op::Schedule(a, b)),
            2 => (0..600_000u32).prop_map(Op::Advance),
            1 => Just(Op::Housekeeping),
        ]
    }

    pub(crate) fn daddr(i: u8) -> IpAddr {
        if i < 8 {
            IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 0, i))
        } else {
            IpAddr::V6(std::net::Ipv6Addr::new(
                0x2001,
                0xdb8,
                0,
                0,
                0,
                0,
                0,
                u16::from(i),
            ))
        }
    }

    /// Drive `a` (indexed) and `b` (literal) through the same history with `call`.
    pub(crate) fn drive<S>(
        ops: &[Op],
        a: &mut S,
        b: &mut S,
        call: impl Fn(&mut S, DestList<'_>, &SchedPacket, &mut SchedCtx<'_>, bool) -> Option<usize>,
        same_state: impl Fn(&S, &S, &TestList) -> bool,
    ) where
        S: Scheduler,
    {
        let mut t = TestList::default();
        let mut trash: Vec<DestId> = Vec::new();
        a.dests_changed(t.list(), DestChange::Init);
        b.dests_changed(t.list(), DestChange::Init);
        let mut rng = Rng::seeded(9);
        let mut now = Tick::from_secs(1000);
        for (step, op) in ops.iter().enumerate() {
            let n = t.order.len();
            match op.clone() {
                Op::AddHead(sp) => {
                    t.add_head(sp);
                    a.dests_changed(t.list(), DestChange::Added { pos: 0 });
                    b.dests_changed(t.list(), DestChange::Added { pos: 0 });
                }
                Op::Remove(i) if n > 0 => {
                    let id = t.remove(i % n);
                    trash.push(id);
                    let ch = DestChange::Removed { old_pos: i % n, id };
                    a.dests_changed(t.list(), ch);
                    b.dests_changed(t.list(), ch);
                }
                Op::Revive => {
                    if let Some(id) = trash.pop() {
                        t.revive(id);
                        a.dests_changed(t.list(), DestChange::Added { pos: 0 });
                        b.dests_changed(t.list(), DestChange::Added { pos: 0 });
                    }
                }
                Op::SetWeight(i, w) if n > 0 => {
                    t.at(i % n).weight = w;
                    let ch = DestChange::Updated { pos: i % n };
                    a.dests_changed(t.list(), ch);
                    b.dests_changed(t.list(), ch);
                }
                Op::SetActive(i, c) if n > 0 => {
                    t.at(i % n).activeconns = c;
                    a.counts_changed(t.list(), i % n);
                    b.counts_changed(t.list(), i % n);
                }
                Op::ToggleOverload(i) if n > 0 => {
                    let on = !t.at(i % n).is_overloaded();
                    t.set_overload(i % n, on);
                    a.counts_changed(t.list(), i % n);
                    b.counts_changed(t.list(), i % n);
                }
                Op::Touch(i) if n > 0 => {
                    a.counts_changed(t.list(), i % n);
                    b.counts_changed(t.list(), i % n);
                }
                Op::Schedule(d, bind) => {
                    let p = pkt(daddr(d));
                    let ra = call(a, t.list(), &p, &mut ctx(&mut rng, now), false);
                    let rb = call(b, t.list(), &p, &mut ctx(&mut rng, now), true);
                    assert_eq!(ra, rb, "step {step} {op:?}");
                    if let (Some(pos), true) = (ra, bind) {
                        t.at(pos).activeconns += 1;
                        a.counts_changed(t.list(), pos);
                        b.counts_changed(t.list(), pos);
                    }
                }
                Op::Advance(ms) => now = now + Span(u64::from(ms)),
                Op::Housekeeping => {
                    a.housekeeping(t.list(), now);
                    b.housekeeping(t.list(), now);
                }
                _ => {}
            }
            assert!(same_state(a, b, &t), "state after step {step} {op:?}");
        }
    }

    fn lblc_call(
        s: &mut Lblc,
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

    fn lblc_same(a: &Lblc, b: &Lblc, _t: &TestList) -> bool {
        (0..12).all(|i| a.cached(&daddr(i)) == b.cached(&daddr(i)))
            && a.entries_counter() == b.entries_counter()
            && (0..64).all(|i| a.dest_refs(DestId(i)) == b.dest_refs(DestId(i)))
    }

    proptest! {
        #[test]
        fn lblc_index_equals_scan(ops in prop::collection::vec(op(), 0..250)) {
            let exp = Span::secs(15 * 60);
            drive(&ops, &mut Lblc::new(exp), &mut Lblc::new(exp), lblc_call, lblc_same);
        }
    }
}

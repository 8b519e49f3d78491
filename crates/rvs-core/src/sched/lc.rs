//! Least-connection family: lc, wlc, sed, nq (`ip_vs_lc.c`, `ip_vs_wlc.c`, `ip_vs_sed.c`,
//! `ip_vs_nq.c`).
//!
//! Each scheduler keeps a `MinTree` (see `sched::index`) over list positions, refreshed by
//! [`Scheduler::counts_changed`] in O(log n), so [`Scheduler::schedule`] is O(1). The
//! kernel-literal scans are kept as `reference_schedule` and a property test proves both give
//! the same destination for every sequence of list edits, counter changes and flag flips.
//!
//! What the kernel does, per algorithm (the first destination in list order wins ties):
//!
//! * **lc**: skip OVERLOAD and weight 0; least `activeconns × 256 + inactconns` (unsigned).
//! * **wlc**: the first non-OVERLOAD destination with weight > 0, then any later non-OVERLOAD
//!   destination with `(s64)loh × w > (s64)doh × lw` replaces it.
//! * **sed**: as wlc with the overhead `activeconns + 1`.
//! * **nq**: skip OVERLOAD and weight 0; the first destination with no active connection is
//!   taken at once; otherwise the sed choice.

use super::index::{
    conn_overhead, reference_wlc_with, sed_overhead, LcPolicy, MinTree, NqPolicy, Policy,
    SedPolicy, WlcPolicy,
};
use super::{DestChange, SchedCtx, SchedPacket, Scheduler};
use crate::dest::DestList;

/// The tree plus the glue every scheduler of this file shares.
#[derive(Debug)]
struct Indexed<P: Policy> {
    tree: MinTree<P>,
}

impl<P: Policy> Default for Indexed<P> {
    fn default() -> Self {
        Indexed {
            tree: MinTree::default(),
        }
    }
}

impl<P: Policy> Indexed<P> {
    fn dests_changed(&mut self, list: DestList<'_>, change: DestChange) {
        match change {
            DestChange::Updated { pos } if self.tree.len() == list.len() && pos < list.len() => {
                self.tree.update(list, pos)
            }
            _ => self.tree.rebuild(list),
        }
    }

    #[inline]
    fn counts_changed(&mut self, list: DestList<'_>, pos: usize) {
        if self.tree.len() == list.len() && pos < list.len() {
            self.tree.update(list, pos);
        } else {
            self.tree.rebuild(list);
        }
    }

    #[inline]
    fn schedule(
        &mut self,
        list: DestList<'_>,
        reference: fn(DestList<'_>) -> Option<usize>,
    ) -> Option<usize> {
        if self.tree.len() != list.len() {
            self.tree.rebuild(list);
        }
        if self.tree.has_quirks() {
            reference(list)
        } else {
            self.tree.best()
        }
    }
}

macro_rules! least_conn_scheduler {
    ($(#[$doc:meta])* $ty:ident, $name:literal, $policy:ty) => {
        $(#[$doc])*
        #[derive(Debug, Default)]
        pub struct $ty {
            idx: Indexed<$policy>,
        }

        impl Scheduler for $ty {
            fn name(&self) -> &'static str {
                $name
            }
            fn dests_changed(&mut self, list: DestList<'_>, change: DestChange) {
                self.idx.dests_changed(list, change);
            }
            #[inline]
            fn counts_changed(&mut self, list: DestList<'_>, pos: usize) {
                self.idx.counts_changed(list, pos);
            }
            #[inline]
            fn schedule(
                &mut self,
                list: DestList<'_>,
                _: &SchedPacket,
                _: &mut SchedCtx<'_>,
            ) -> Option<usize> {
                self.idx.schedule(list, $ty::reference_schedule)
            }
        }
    };
}

least_conn_scheduler!(
    /// `lc` scheduler: least connections (`activeconns × 256 + inactconns`), unweighted.
    Lc,
    "lc",
    LcPolicy
);
least_conn_scheduler!(
    /// `wlc` scheduler: least `(activeconns × 256 + inactconns) / weight`.
    Wlc,
    "wlc",
    WlcPolicy
);
least_conn_scheduler!(
    /// `sed` scheduler: shortest expected delay, least `(activeconns + 1) / weight`.
    Sed,
    "sed",
    SedPolicy
);
least_conn_scheduler!(
    /// `nq` scheduler: never queue — an idle destination if any, else the sed choice.
    Nq,
    "nq",
    NqPolicy
);

impl Lc {
    /// `ip_vs_lc_schedule`, literally: an O(n) scan of the list.
    pub fn reference_schedule(list: DestList<'_>) -> Option<usize> {
        let mut least = None;
        let mut loh: u32 = 0;
        for (pos, d) in list.iter().enumerate() {
            if d.is_overloaded() || d.weight == 0 {
                continue;
            }
            let doh = d.overhead();
            if least.is_none() || doh < loh {
                least = Some(pos);
                loh = doh;
            }
        }
        least
    }
}

impl Wlc {
    /// `ip_vs_wlc_schedule`, literally: an O(n) scan of the list.
    pub fn reference_schedule(list: DestList<'_>) -> Option<usize> {
        reference_wlc_with(list, conn_overhead)
    }
}

impl Sed {
    /// `ip_vs_sed_schedule`, literally: an O(n) scan of the list.
    pub fn reference_schedule(list: DestList<'_>) -> Option<usize> {
        reference_wlc_with(list, sed_overhead)
    }
}

impl Nq {
    /// `ip_vs_nq_schedule`, literally: an O(n) scan of the list.
    pub fn reference_schedule(list: DestList<'_>) -> Option<usize> {
        let mut least: Option<(usize, i32, i32)> = None;
        for (pos, d) in list.iter().enumerate() {
            if d.is_overloaded() || d.weight == 0 {
                continue;
            }
            let doh = sed_overhead(d);
            if d.activeconns == 0 {
                return Some(pos);
            }
            let take = match least {
                None => true,
                Some((_, lw, loh)) => {
                    i64::from(loh) * i64::from(d.weight) > i64::from(doh) * i64::from(lw)
                }
            };
            if take {
                least = Some((pos, d.weight, doh));
            }
        }
        least.map(|(pos, _, _)| pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use crate::sched::index::testutil::{ctx, pkt, Spec, TestList};
    use crate::time::Tick;
    use proptest::prelude::*;

    fn pick<S: Scheduler + Default>(specs: &[Spec]) -> Option<usize> {
        let t = TestList::new(specs);
        let mut s = S::default();
        s.dests_changed(t.list(), DestChange::Init);
        let mut rng = Rng::seeded(1);
        s.schedule(
            t.list(),
            &pkt("10.9.9.9".parse().unwrap()),
            &mut ctx(&mut rng, Tick::ZERO),
        )
    }

    fn all_refs(specs: &[Spec]) -> [Option<usize>; 4] {
        let t = TestList::new(specs);
        let l = t.list();
        [
            Lc::reference_schedule(l),
            Wlc::reference_schedule(l),
            Sed::reference_schedule(l),
            Nq::reference_schedule(l),
        ]
    }

    fn all_indexed(specs: &[Spec]) -> [Option<usize>; 4] {
        [
            pick::<Lc>(specs),
            pick::<Wlc>(specs),
            pick::<Sed>(specs),
            pick::<Nq>(specs),
        ]
    }

    fn check(specs: &[Spec], expect: [Option<usize>; 4]) {
        assert_eq!(all_refs(specs), expect, "reference");
        assert_eq!(all_indexed(specs), expect, "indexed");
    }

    #[test]
    fn empty_and_all_ineligible() {
        check(&[], [None; 4]);
        // weight 0 or OVERLOAD everywhere: "no destination available"
        check(&[(0, 0, 0, false), (3, 0, 0, true)], [None; 4]);
    }

    #[test]
    fn ties_go_to_the_first_in_list_order() {
        check(
            &[(1, 0, 0, false), (1, 0, 0, false), (1, 0, 0, false)],
            [Some(0); 4],
        );
        // lc: 257 vs 514 → first; wlc: 257/1 vs 514/2 equal → first;
        // sed/nq: (1+1)/1 vs (2+1)/2 → second
        check(
            &[(1, 1, 1, false), (2, 2, 2, false)],
            [Some(0), Some(0), Some(1), Some(1)],
        );
    }

    #[test]
    fn weight_zero_and_overload_are_skipped() {
        // head is idle but quiesced, second is idle but overloaded
        check(
            &[
                (0, 0, 0, false),
                (5, 0, 0, true),
                (1, 3, 0, false),
                (1, 2, 9, false),
            ],
            [Some(3), Some(3), Some(3), Some(3)],
        );
    }

    #[test]
    fn lc_ignores_weights_wlc_uses_them() {
        // overheads 256 (w 1) and 512 (w 4): lc → 0, wlc 256/1 > 512/4 → 1
        check(
            &[(1, 1, 0, false), (4, 2, 0, false)],
            [Some(0), Some(1), Some(1), Some(1)],
        );
    }

    #[test]
    fn inactive_connections_count_one_256th() {
        // lc/wlc: 0*256+300 = 300 vs 1*256 = 256 → second; sed/nq look at active only
        check(
            &[(1, 0, 300, false), (1, 1, 0, false)],
            [Some(1), Some(1), Some(0), Some(0)],
        );
    }

    #[test]
    fn sed_differs_from_wlc() {
        // wlc: 0/1 = 0 vs 0/10 = 0 tie → first; sed: (0+1)/1 vs (0+1)/10 → second
        check(
            &[(1, 0, 0, false), (10, 0, 0, false)],
            [Some(0), Some(0), Some(1), Some(0)],
        );
        // wlc: 256/1 vs 768/2=384 → first; sed: 2/1=2 vs 4/2=2 tie → first
        check(
            &[(1, 1, 0, false), (2, 3, 0, false)],
            [Some(0), Some(0), Some(0), Some(0)],
        );
        // lc: 512 vs 1024 → first; wlc: 512/1 vs 1024/3 → second; sed 3/1 vs 5/3 → second
        check(
            &[(1, 2, 0, false), (3, 4, 0, false)],
            [Some(0), Some(1), Some(1), Some(1)],
        );
    }

    #[test]
    fn nq_takes_the_first_idle_destination() {
        // sed takes the heavy-weight busy head (2/100 ties 1/50, first wins); wlc and nq take
        // the first idle one (pos 2)
        check(
            &[
                (100, 1, 0, false),
                (1, 5, 0, false),
                (1, 0, 0, false),
                (50, 0, 0, false),
            ],
            [Some(2), Some(2), Some(0), Some(2)],
        );
        // an idle but overloaded or quiesced destination does not count
        check(
            &[
                (1, 0, 0, true),
                (0, 0, 0, false),
                (2, 3, 0, false),
                (3, 3, 0, false),
            ],
            [Some(2), Some(3), Some(3), Some(3)],
        );
    }

    #[test]
    fn cross_multiplication_is_64_bit() {
        // 65536 active → overhead 2^24; weight 2^20 — 32-bit products would overflow
        check(
            &[(1 << 20, 1 << 16, 0, false), (1, 100, 0, false)],
            [Some(1), Some(0), Some(0), Some(0)],
        );
    }

    #[test]
    fn negative_overhead_quirk_follows_the_kernel() {
        // activeconns = 2^23 makes (activeconns << 8) overflow to i32::MIN: after the first
        // pick, a weight-0 destination with that overhead wins in wlc (0 > doh × lw).
        let specs = [(1, 0, 0, false), (0, 1 << 23, 0, false), (1, 0, 0, false)];
        let t = TestList::new(&specs);
        assert_eq!(Wlc::reference_schedule(t.list()), Some(1));
        assert_eq!(pick::<Wlc>(&specs), Some(1));
        // lc compares unsigned: 2^31 is large, weight 0 skipped anyway
        assert_eq!(pick::<Lc>(&specs), Some(0));
    }

    #[test]
    fn counts_changed_moves_the_pick() {
        let mut t = TestList::new(&[(1, 0, 0, false), (1, 0, 0, false)]);
        let mut s = Wlc::default();
        s.dests_changed(t.list(), DestChange::Init);
        let mut rng = Rng::seeded(1);
        let p = pkt("10.9.9.9".parse().unwrap());
        let mut seq = Vec::new();
        for _ in 0..4 {
            let pos = s
                .schedule(t.list(), &p, &mut ctx(&mut rng, Tick::ZERO))
                .unwrap();
            seq.push(pos);
            t.at(pos).activeconns += 1;
            s.counts_changed(t.list(), pos);
        }
        assert_eq!(seq, vec![0, 1, 0, 1]);
        // OVERLOAD on position 0 sends everything to 1
        t.set_overload(0, true);
        s.counts_changed(t.list(), 0);
        assert_eq!(
            s.schedule(t.list(), &p, &mut ctx(&mut rng, Tick::ZERO)),
            Some(1)
        );
    }

    // ---------------------------------------------------------------------------------------
    // property: the indexed pick equals the literal scan after every operation

    #[derive(Clone, Debug)]
    enum Op {
        AddHead(Spec),
        Remove(usize),
        SetWeight(usize, i32),
        SetActive(usize, u32),
        SetInact(usize, u32),
        ToggleOverload(usize),
        /// counts_changed for a position whose counters did not change
        Touch(usize),
        /// schedule and bind the chosen destination
        Bind,
        /// unbind one connection from a destination
        Unbind(usize),
    }

    fn weight() -> impl Strategy<Value = i32> {
        prop_oneof![
            4 => 0..4i32,
            2 => 1..200i32,
            1 => Just(65535),
            1 => Just(i32::MAX),
            1 => Just(-1),
        ]
    }

    fn count() -> impl Strategy<Value = u32> {
        prop_oneof![
            8 => 0..6u32,
            2 => 0..1000u32,
            1 => (1u32 << 23)..(1u32 << 24),
            1 => any::<u32>(),
        ]
    }

    fn spec() -> impl Strategy<Value = Spec> {
        (weight(), count(), count(), prop::bool::weighted(0.2))
    }

    fn op() -> impl Strategy<Value = Op> {
        let i = any::<usize>();
        prop_oneof![
            3 => spec().prop_map(Op::AddHead),
            1 => i.prop_map(Op::Remove),
            2 => (i, weight()).prop_map(|(p, w)| Op::SetWeight(p, w)),
            3 => (i, count()).prop_map(|(p, c)| Op::SetActive(p, c)),
            2 => (i, count()).prop_map(|(p, c)| Op::SetInact(p, c)),
            2 => i.prop_map(Op::ToggleOverload),
            1 => i.prop_map(Op::Touch),
            6 => Just(Op::Bind),
            3 => i.prop_map(Op::Unbind),
        ]
    }

    fn run_ops<S: Scheduler + Default>(ops: &[Op], reference: fn(DestList<'_>) -> Option<usize>) {
        let mut t = TestList::default();
        let mut s = S::default();
        s.dests_changed(t.list(), DestChange::Init);
        let mut rng = Rng::seeded(3);
        let p = pkt("10.9.9.9".parse().unwrap());
        for (step, op) in ops.iter().enumerate() {
            let n = t.order.len();
            match op.clone() {
                Op::AddHead(sp) => {
                    t.add_head(sp);
                    s.dests_changed(t.list(), DestChange::Added { pos: 0 });
                }
                Op::Remove(i) if n > 0 => {
                    let id = t.remove(i % n);
                    s.dests_changed(t.list(), DestChange::Removed { old_pos: i % n, id });
                }
                Op::SetWeight(i, w) if n > 0 => {
                    t.at(i % n).weight = w;
                    s.dests_changed(t.list(), DestChange::Updated { pos: i % n });
                }
                Op::SetActive(i, c) if n > 0 => {
                    t.at(i % n).activeconns = c;
                    s.counts_changed(t.list(), i % n);
                }
                Op::SetInact(i, c) if n > 0 => {
                    t.at(i % n).inactconns = c;
                    s.counts_changed(t.list(), i % n);
                }
                Op::ToggleOverload(i) if n > 0 => {
                    let on = !t.at(i % n).is_overloaded();
                    t.set_overload(i % n, on);
                    s.counts_changed(t.list(), i % n);
                }
                Op::Touch(i) if n > 0 => s.counts_changed(t.list(), i % n),
                Op::Bind => {
                    let got = s.schedule(t.list(), &p, &mut ctx(&mut rng, Tick::ZERO));
                    assert_eq!(got, reference(t.list()), "step {step} {op:?}");
                    if let Some(pos) = got {
                        let d = t.at(pos);
                        d.activeconns = d.activeconns.wrapping_add(1);
                        s.counts_changed(t.list(), pos);
                    }
                }
                Op::Unbind(i) if n > 0 => {
                    let d = t.at(i % n);
                    if d.activeconns > 0 {
                        d.activeconns -= 1;
                        d.inactconns = d.inactconns.wrapping_add(1);
                    }
                    s.counts_changed(t.list(), i % n);
                }
                _ => {}
            }
            let got = s.schedule(t.list(), &p, &mut ctx(&mut rng, Tick::ZERO));
            assert_eq!(got, reference(t.list()), "after step {step} {op:?}");
        }
    }

    proptest! {
        #[test]
        fn lc_index_equals_scan(ops in prop::collection::vec(op(), 0..200)) {
            run_ops::<Lc>(&ops, Lc::reference_schedule);
        }

        #[test]
        fn wlc_index_equals_scan(ops in prop::collection::vec(op(), 0..200)) {
            run_ops::<Wlc>(&ops, Wlc::reference_schedule);
        }

        #[test]
        fn sed_index_equals_scan(ops in prop::collection::vec(op(), 0..200)) {
            run_ops::<Sed>(&ops, Sed::reference_schedule);
        }

        #[test]
        fn nq_index_equals_scan(ops in prop::collection::vec(op(), 0..200)) {
            run_ops::<Nq>(&ops, Nq::reference_schedule);
        }
    }
}

//! `wrr`: weighted round robin (kernel `net/netfilter/ipvs/ip_vs_wrr.c`, as in 6.1).
//!
//! State: `cl` (the list position chosen last, or the list head), `cw` (the weight a server
//! needs in the current pass), `mw` and `di`. `di` is the gcd of the positive weights (1 when
//! there are none) and `mw` is the largest weight minus `di - 1`, so the passes run with
//! `cw = mw, mw - di, …, 1` and a server of weight `w` is chosen in `w / di` passes per cycle:
//! weights 4, 3, 2 (list order A, B, C) give A A B A B C A B C.
//!
//! A decision continues the current pass after `cl`, taking the first server that is not
//! OVERLOADed and whose weight is at least `cw`. At the end of the list the next pass starts
//! from the first entry with `cw - di`; when that is not positive, `cw` wraps to `mw`. The
//! decision gives up ("all destinations are overloaded") once every server has been looked at
//! in a pass with `cw <= di`:
//! * started at the head: giving up happens at the wrap, which leaves `cl` at the head and
//!   `cw = mw`;
//! * started after a server `last`: if the `cw <= di` pass already began before the wrap it
//!   ends at the wrap as above; otherwise (the wrap came first) the `cw <= di` pass after it
//!   stops at `last` itself, leaving `cl = last` and `cw` at that pass's value.
//!
//! `mw == 0` (no positive weight) answers "no destination" at once, state untouched.
//!
//! Every add, delete or edit of a destination (`ip_vs_wrr_dest_changed`, even an edit that
//! changes nothing) resets `cl` to the head and recomputes `di` and `mw`; `cw` becomes `mw` when
//! it exceeds the new `mw` or is 0, else, when `di > 1`, it is rounded to `(cw / di) * di + 1`.
//! `mw` counts OVERLOADed servers and servers of weight 0 never match (`cw >= 1`). A
//! consequence: a service built up one `-a` at a time does not start at a cycle boundary
//! (after `-a` of a lone weight-2 server `di = 2`, `mw = 1`, so `cw = 1`, and later adds keep
//! it), whereas binding wrr to a service that already has its servers starts at `cw = mw`.
//!
//! Because `cl` always returns to the head on a list change, it is kept as a list position.
//! [`Wrr::schedule`] runs the same pass machine, but each pass is one query on a max segment
//! tree of [`open_weight`]s ("first position after `p` with weight >= `cw`", O(log n)), and a
//! run of full passes that cannot match (`cw` above the largest open weight) is skipped with
//! one subtraction that lands on exactly the `cw` (and give-up state) the kernel reaches. A
//! decision thus costs a few tree queries whatever the weights. [`Wrr::reference_schedule`] is
//! the kernel's literal walk.

use super::weights::{open_weight, MaxTree};
use super::{DestChange, SchedCtx, SchedPacket, Scheduler};
use crate::dest::DestList;

/// `wrr` scheduler state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wrr {
    cl: Option<usize>,
    cw: i32,
    mw: i32,
    di: i32,
    index: MaxTree,
}

impl Default for Wrr {
    /// The state `init_service` gives an empty service.
    fn default() -> Wrr {
        Wrr {
            cl: None,
            cw: 0,
            mw: 0,
            di: 1,
            index: MaxTree::default(),
        }
    }
}

fn gcd(mut a: i32, mut b: i32) -> i32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Per-decision bookkeeping of the pass machine (the kernel's locals).
struct Walk {
    last: Option<usize>,
    stop: Option<usize>,
    last_pass: bool,
    restarted: bool,
}

impl Walk {
    fn new(last: Option<usize>) -> Walk {
        Walk {
            last,
            stop: None,
            last_pass: false,
            restarted: false,
        }
    }
}

impl Wrr {
    /// The current weight; exposed for tests and diagnostics.
    pub fn current_weight(&self) -> i32 {
        self.cw
    }

    fn recompute(&mut self, list: DestList<'_>, init: bool) {
        let positive = list.iter().map(|d| d.weight).filter(|&w| w > 0);
        self.di = positive.fold(0, gcd).max(1);
        let max = list.iter().map(|d| d.weight).fold(0, i32::max);
        self.mw = max - (self.di - 1);
        self.cl = None;
        if init || self.cw > self.mw || self.cw == 0 {
            self.cw = self.mw;
        } else if self.di > 1 {
            self.cw = (self.cw / self.di) * self.di + 1;
        }
    }

    /// End of a pass that found nobody: lower `cw`, wrap, and decide whether to give up.
    /// `Err(cl)` is the give-up state of `cl`.
    fn next_pass(&mut self, walk: &mut Walk) -> Result<(), Option<usize>> {
        self.cw -= self.di;
        if self.cw <= 0 {
            self.cw = self.mw;
            if walk.last_pass || walk.last.is_none() {
                return Err(None);
            }
            walk.restarted = true;
        }
        self.after_pass_change(walk);
        Ok(())
    }

    fn after_pass_change(&self, walk: &mut Walk) {
        walk.last_pass = self.cw <= self.di;
        if walk.last_pass && walk.restarted && walk.last.is_some() {
            walk.stop = walk.last;
        }
    }

    fn finish(&mut self, outcome: Result<usize, Option<usize>>) -> Option<usize> {
        match outcome {
            Ok(pos) => {
                self.cl = Some(pos);
                Some(pos)
            }
            Err(cl) => {
                self.cl = cl;
                None
            }
        }
    }

    /// The kernel's literal walk (`ip_vs_wrr_schedule`). Same result and state changes as
    /// [`Scheduler::schedule`]; kept for tests and as the specification.
    pub fn reference_schedule(
        &mut self,
        list: DestList<'_>,
        _pkt: &SchedPacket,
        _ctx: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        if self.mw == 0 {
            return None;
        }
        let outcome = self.reference_walk(list);
        self.finish(outcome)
    }

    fn reference_walk(&mut self, list: DestList<'_>) -> Result<usize, Option<usize>> {
        let mut walk = Walk::new(self.cl);
        let mut pos = self.cl.map_or(0, |p| p + 1);
        loop {
            while pos < list.len() {
                let d = list.get(pos);
                if !d.is_overloaded() && d.weight >= self.cw {
                    return Ok(pos);
                }
                if walk.stop == Some(pos) {
                    return Err(walk.stop);
                }
                pos += 1;
            }
            self.next_pass(&mut walk)?;
            pos = 0;
        }
    }

    /// The pass machine with each pass answered by the index.
    fn indexed_walk(&mut self) -> Result<usize, Option<usize>> {
        let mut walk = Walk::new(self.cl);
        let mut from = self.cl.map_or(0, |p| p + 1);
        let top = i64::from(self.index.max());
        loop {
            let full = from == 0 && walk.stop.is_none();
            if full && i64::from(self.cw) > top && self.cw > self.di {
                self.skip_barren_passes(top, &mut walk);
                continue;
            }
            let hit = self.index.first_at_least(from, self.cw as u32);
            match (hit, walk.stop) {
                (Some(p), None) => return Ok(p),
                (Some(p), Some(s)) if p <= s => return Ok(p),
                (_, Some(s)) => return Err(Some(s)),
                (None, None) => {}
            }
            self.next_pass(&mut walk)?;
            from = 0;
        }
    }

    /// Full passes with `cw > top` match nobody. While `cw > di` such a pass only lowers `cw`
    /// by `di` (no wrap, no "last pass"), so jump to the first `cw <= max(top, di)` and apply
    /// the end-of-pass bookkeeping of the last skipped pass.
    fn skip_barren_passes(&mut self, top: i64, walk: &mut Walk) {
        let cw = i64::from(self.cw);
        let di = i64::from(self.di);
        let floor = top.max(di);
        let passes = (cw - floor + di - 1) / di;
        self.cw = (cw - passes * di) as i32;
        self.after_pass_change(walk);
    }
}

impl Scheduler for Wrr {
    fn name(&self) -> &'static str {
        "wrr"
    }

    fn sequence(&self, list: DestList<'_>) -> Option<Vec<usize>> {
        // one cycle of passes: a server of weight w is chosen w / gcd times (the gcd of all
        // positive weights, as the kernel's `di`)
        let g = list
            .iter()
            .filter(|d| d.weight > 0)
            .fold(0, |g, d| gcd(g, d.weight));
        let n: usize = list
            .iter()
            .filter(|d| super::choosable(d))
            .map(|d| (d.weight / g.max(1)) as usize)
            .sum();
        Some(super::peek(self, list, n))
    }

    fn dests_changed(&mut self, list: DestList<'_>, change: DestChange) {
        self.recompute(list, change == DestChange::Init);
        self.index.rebuild(list, open_weight);
    }

    fn counts_changed(&mut self, list: DestList<'_>, pos: usize) {
        if pos < self.index.len() {
            self.index.set(pos, open_weight(list.get(pos)));
        }
    }

    fn schedule(
        &mut self,
        list: DestList<'_>,
        _pkt: &SchedPacket,
        _ctx: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        if self.index.len() != list.len() {
            self.index.rebuild(list, open_weight);
        }
        if self.mw == 0 {
            return None;
        }
        let outcome = self.indexed_walk();
        self.finish(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::super::weights::testkit::{check_agreement, picks, scenario, World};
    use super::*;
    use proptest::prelude::*;

    /// A service whose list position `i` holds `weights[i]` (added last to first), with wrr
    /// bound after the destinations exist (as `ipvsadm -E … -s wrr` does): `cw` starts at `mw`.
    fn setup(weights: &[i32]) -> (World, Wrr) {
        let mut w = World::new();
        for &x in weights.iter().rev() {
            w.add(x, &mut []);
        }
        let mut s = Wrr::default();
        w.init(&mut [&mut s]);
        (w, s)
    }

    fn seq(v: &[usize]) -> Vec<Option<usize>> {
        v.iter().map(|&p| Some(p)).collect()
    }

    #[test]
    fn weights_4_3_2_cycle() {
        let (w, mut s) = setup(&[4, 3, 2]);
        let want = [0, 0, 1, 0, 1, 2, 0, 1, 2];
        let got = picks(&w, &mut s, 18);
        assert_eq!(got[..9], seq(&want)[..]);
        assert_eq!(got[9..], seq(&want)[..]);
    }

    #[test]
    fn service_built_up_one_by_one_starts_mid_cycle() {
        // -A -s wrr, then -a C w2, -a B w3, -a A w4. After the first add di = 2 and
        // mw = 2 - (2 - 1) = 1, so cw = 1; the later adds keep cw = 1 (di = 1), so the first
        // decisions are the tail of a cycle (the weight >= 1 pass) before the full cycles.
        let mut w = World::new();
        let mut s = Wrr::default();
        w.init(&mut [&mut s]);
        for x in [2, 3, 4] {
            w.add(x, &mut [&mut s]);
        }
        assert_eq!(s.current_weight(), 1);
        let want = [0, 1, 2, 0, 0, 1, 0, 1, 2, 0, 1, 2, 0, 0, 1];
        assert_eq!(picks(&w, &mut s, 15), seq(&want));
    }

    #[test]
    fn gcd_above_one_steps_by_the_gcd() {
        let (w, mut s) = setup(&[4, 2]); // di 2, mw 3: passes cw = 3, 1
        assert_eq!(picks(&w, &mut s, 6), seq(&[0, 0, 1, 0, 0, 1]));
        let (w, mut s) = setup(&[6, 4, 2]); // same cycle as 3, 2, 1
        assert_eq!(picks(&w, &mut s, 6), seq(&[0, 0, 1, 0, 1, 2]));
    }

    #[test]
    fn weight_zero_is_never_chosen() {
        let (w, mut s) = setup(&[2, 0, 1]);
        assert_eq!(picks(&w, &mut s, 6), seq(&[0, 0, 2, 0, 0, 2]));
    }

    #[test]
    fn all_weights_zero_is_no_destination_until_one_is_raised() {
        let (mut w, mut s) = setup(&[0, 0]);
        assert_eq!(picks(&w, &mut s, 2), [None, None]);
        w.edit(1, 3, &mut [&mut s]);
        assert_eq!(picks(&w, &mut s, 2), seq(&[1, 1]));
    }

    #[test]
    fn all_overloaded_from_the_head_gives_up_at_the_wrap() {
        let (mut w, mut s) = setup(&[2, 1]);
        w.overload(0, true, &mut [&mut s]);
        w.overload(1, true, &mut [&mut s]);
        assert_eq!(picks(&w, &mut s, 1), [None]);
        assert_eq!(s.current_weight(), 2);
        w.overload(1, false, &mut [&mut s]);
        assert_eq!(picks(&w, &mut s, 2), seq(&[1, 1]));
    }

    #[test]
    fn all_overloaded_after_a_wrap_stops_at_the_last_chosen() {
        let (mut w, mut s) = setup(&[1, 1, 1]);
        assert_eq!(picks(&w, &mut s, 1), seq(&[0])); // cl = A, cw = 1
        for p in 0..3 {
            w.overload(p, true, &mut [&mut s]);
        }
        assert_eq!(picks(&w, &mut s, 1), [None]);
        assert_eq!(s.current_weight(), 1);
        // The mark stayed on A: the walk resumes after it, so C comes before A.
        w.overload(0, false, &mut [&mut s]);
        w.overload(2, false, &mut [&mut s]);
        assert_eq!(picks(&w, &mut s, 3), seq(&[2, 0, 2]));
    }

    #[test]
    fn all_overloaded_before_a_wrap_returns_to_the_head() {
        let (mut w, mut s) = setup(&[2, 1]);
        assert_eq!(picks(&w, &mut s, 1), seq(&[0])); // cl = A, cw = 2
        w.overload(0, true, &mut [&mut s]);
        w.overload(1, true, &mut [&mut s]);
        assert_eq!(picks(&w, &mut s, 1), [None]);
        assert_eq!(s.current_weight(), 2); // wrapped to mw, cl at the head
        w.overload(0, false, &mut [&mut s]);
        w.overload(1, false, &mut [&mut s]);
        assert_eq!(picks(&w, &mut s, 3), seq(&[0, 0, 1]));
    }

    #[test]
    fn heavy_server_overloaded_leaves_the_light_ones_in_turn() {
        let (mut w, mut s) = setup(&[1000, 1, 1]);
        w.overload(0, true, &mut [&mut s]);
        assert_eq!(picks(&w, &mut s, 5), seq(&[1, 2, 1, 2, 1]));
        w.overload(0, false, &mut [&mut s]);
        // cl = B, cw = 1: C finishes the pass, then the heavy server takes every pass from
        // cw = 1000 down to 1 before B and C get their turn.
        let got = picks(&w, &mut s, 1003);
        assert_eq!(got[0], Some(2));
        assert!(got[1..1001].iter().all(|&p| p == Some(0)));
        assert_eq!(got[1001..], seq(&[1, 2]));
    }

    #[test]
    fn edit_mid_cycle_restarts_from_the_head_keeping_cw() {
        let (mut w, mut s) = setup(&[4, 3, 2]);
        assert_eq!(picks(&w, &mut s, 4), seq(&[0, 0, 1, 0])); // cl = A, cw = 2
        w.edit(2, 2, &mut [&mut s]); // no real change, still a reset of cl
        let want = [0, 1, 2, 0, 1, 2, 0, 0, 1];
        assert_eq!(picks(&w, &mut s, 9), seq(&want));
    }

    #[test]
    fn edit_mid_cycle_to_gcd_two_rounds_cw() {
        let (mut w, mut s) = setup(&[4, 3, 2]);
        assert_eq!(picks(&w, &mut s, 4), seq(&[0, 0, 1, 0])); // cw = 2
        w.edit(1, 4, &mut [&mut s]); // 4, 4, 2: di 2, mw 3, cw (2/2)*2+1 = 3
        assert_eq!(s.current_weight(), 3);
        assert_eq!(picks(&w, &mut s, 7), seq(&[0, 1, 0, 1, 2, 0, 1]));
    }

    #[test]
    fn edit_below_cw_resets_cw_to_the_new_max() {
        let (mut w, mut s) = setup(&[4, 3, 2]);
        assert_eq!(picks(&w, &mut s, 1), seq(&[0])); // cw = 4
        w.edit(0, 1, &mut [&mut s]); // 1, 3, 2: mw 3 < cw
        assert_eq!(picks(&w, &mut s, 7), seq(&[1, 1, 2, 0, 1, 2, 1]));
    }

    #[test]
    fn delete_mid_cycle_recomputes_gcd() {
        let (mut w, mut s) = setup(&[4, 3, 2]);
        assert_eq!(picks(&w, &mut s, 2), seq(&[0, 0])); // cw = 3
        w.remove(1, &mut [&mut s]); // 4, 2: di 2, mw 3, cw stays 3
        assert_eq!(picks(&w, &mut s, 6), seq(&[0, 0, 1, 0, 0, 1]));
    }

    #[test]
    fn add_mid_cycle_joins_at_the_head() {
        let (mut w, mut s) = setup(&[4, 3, 2]);
        assert_eq!(picks(&w, &mut s, 2), seq(&[0, 0])); // cw = 3
        w.add(5, &mut [&mut s]); // D5 A4 B3 C2, cw 3, cl head
        let want = [0, 1, 2, 0, 1, 2, 3, 0, 1, 2, 3, 0, 0, 1];
        assert_eq!(picks(&w, &mut s, 14), seq(&want));
    }

    proptest! {
        #[test]
        fn indexed_walk_equals_kernel_walk((scale, ops) in scenario(), seed in any::<u64>()) {
            check_agreement::<Wrr>(scale, &ops, seed, Wrr::reference_schedule)?;
        }

        #[test]
        fn each_cycle_serves_weight_over_gcd(
            weights in prop::collection::vec(0i32..=12, 1..8),
            scale in 1i32..=4,
            offset in 0usize..50,
        ) {
            let weights: Vec<i32> = weights.iter().map(|w| w * scale).collect();
            let g = weights.iter().copied().filter(|&w| w > 0).fold(0, gcd);
            prop_assume!(g > 0);
            let cycle: usize = weights.iter().map(|&w| (w / g) as usize).sum();
            let (w, mut s) = setup(&weights);
            let got = picks(&w, &mut s, offset + 3 * cycle);
            for start in [0, offset, offset + cycle] {
                let mut count = vec![0; weights.len()];
                for p in &got[start..start + cycle] {
                    count[p.expect("someone is available")] += 1;
                }
                let want: Vec<usize> = weights.iter().map(|&w| (w / g) as usize).collect();
                prop_assert_eq!(&count, &want, "window at {}", start);
            }
        }
    }
}

//! `twos`: power of two choices (kernel `net/netfilter/ipvs/ip_vs_twos.c`, mainline; the
//! scheduler is newer than 6.1, so mainline is the reference).
//!
//! Eligible destinations are those not OVERLOADed with a positive weight; `total` is the sum of
//! their weights (none → no destination, and no random number is drawn). Two numbers `r1`,
//! `r2` are drawn, in that order, each `below(total + 1)`, i.e. from `0..=total`: the bound is
//! inclusive, so the *first* eligible destination in list order gets one extra chance (it
//! owns `0..=w`, the others own `w` values each). Each draw picks the first eligible
//! destination at which the running sum of weights reaches it. The second pick wins only if it
//! is strictly less loaded per weight: `w2 * overhead1 > w1 * overhead2`, with overhead =
//! `activeconns * 256 + inactconns`; otherwise (ties included) the first pick wins. With equal
//! loads the result therefore follows the weights.
//!
//! Quirk kept: the kernel computes the sum, the draws' bound and the products in C `int`
//! (32-bit, wrapping: the kernel builds with `-fno-strict-overflow`), so huge overheads or
//! weights can flip the comparison; both paths here compute them the same way. If the weight
//! sum does not fit an `int` the kernel's walk degenerates (it may find no pick and fall back
//! to the last eligible destination); [`Twos::schedule`] then runs the literal walk.
//!
//! [`Twos::schedule`] keeps a Fenwick tree of eligible weights: `total` is kept current and
//! each draw is resolved by one O(log n) descent. `counts_changed` re-reads one destination's
//! OVERLOAD flag (O(1) unless it flipped). [`Twos::reference_schedule`] is the literal two-pass
//! walk; both consume the random source identically (exactly two `below` calls per decision).

use super::weights::{open_weight, SumTree};
use super::{DestChange, SchedCtx, SchedPacket, Scheduler};
use crate::dest::{Dest, DestList};

/// `twos` scheduler state: the index of eligible weights (the kernel keeps none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Twos {
    index: SumTree,
}

/// `ip_vs_dest_conn_overhead` as the kernel's `int`.
fn overhead(d: &Dest) -> i32 {
    d.overhead() as i32
}

/// The kernel's final comparison: does the second pick beat the first?
fn second_wins(w1: i32, o1: i32, w2: i32, o2: i32) -> bool {
    w2.wrapping_mul(o1) > w1.wrapping_mul(o2)
}

/// One pick of the literal walk: position, weight, overhead.
type Pick = (usize, i32, i32);

impl Twos {
    /// The kernel's literal two-pass walk (`ip_vs_twos_schedule`), O(n); same answer and the
    /// same random draws as [`Scheduler::schedule`].
    pub fn reference_schedule(
        &mut self,
        list: DestList<'_>,
        _pkt: &SchedPacket,
        ctx: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        let mut total: i32 = 0;
        let mut last = None;
        for (pos, d) in list.iter().enumerate() {
            if !d.is_overloaded() && d.weight > 0 {
                total = total.wrapping_add(d.weight);
                last = Some(pos);
            }
        }
        let last = last?;
        let bound = total.wrapping_add(1) as u32;
        let r1 = ctx.rng.below(bound) as i32;
        let r2 = ctx.rng.below(bound) as i32;
        let (first, second) = Self::reference_walk(list, r1, r2);
        // Without a first pick the kernel keeps the last eligible destination with weight -1
        // and overhead 0.
        let (p1, w1, o1) = first.unwrap_or((last, -1, 0));
        match second {
            Some((p2, w2, o2)) if second_wins(w1, o1, w2, o2) => Some(p2),
            _ => Some(p1),
        }
    }

    fn reference_walk(
        list: DestList<'_>,
        mut r1: i32,
        mut r2: i32,
    ) -> (Option<Pick>, Option<Pick>) {
        let (mut first, mut second) = (None, None);
        for (pos, d) in list.iter().enumerate() {
            let w = d.weight;
            if d.is_overloaded() || w <= 0 {
                continue;
            }
            r1 = r1.wrapping_sub(w);
            r2 = r2.wrapping_sub(w);
            if r1 <= 0 && first.is_none() {
                first = Some((pos, w, overhead(d)));
            }
            if r2 <= 0 && second.is_none() {
                second = Some((pos, w, overhead(d)));
            }
            if first.is_some() && second.is_some() {
                break;
            }
        }
        (first, second)
    }
}

impl Scheduler for Twos {
    fn name(&self) -> &'static str {
        "twos"
    }

    fn dests_changed(&mut self, list: DestList<'_>, _change: DestChange) {
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
        pkt: &SchedPacket,
        ctx: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        if self.index.len() != list.len() {
            self.index.rebuild(list, open_weight);
        }
        let total = self.index.total();
        if total == 0 {
            return None;
        }
        if total >= i32::MAX as u64 {
            return self.reference_schedule(list, pkt, ctx);
        }
        let bound = total as u32 + 1;
        let r1 = ctx.rng.below(bound);
        let r2 = ctx.rng.below(bound);
        // A draw of 0 belongs to the first eligible destination, like a draw of 1.
        let (p1, p2) = self
            .index
            .first_reaching_pair(u64::from(r1.max(1)), u64::from(r2.max(1)));
        let (w1, w2) = (self.index.get(p1) as i32, self.index.get(p2) as i32);
        let (o1, o2) = (overhead(list.get(p1)), overhead(list.get(p2)));
        Some(if second_wins(w1, o1, w2, o2) { p2 } else { p1 })
    }
}

#[cfg(test)]
mod tests {
    use super::super::weights::testkit::{check_agreement, pick, scenario, World};
    use super::*;
    use crate::rng::Rng;
    use proptest::prelude::*;

    fn setup(weights: &[i32]) -> (World, Twos) {
        let mut w = World::new();
        let mut s = Twos::default();
        w.init(&mut [&mut s]);
        for &x in weights.iter().rev() {
            w.add(x, &mut [&mut s]);
        }
        (w, s)
    }

    /// List A(w2) B(w0) C(w1): total 3, draws from 0..=3; A owns 0, 1, 2 and C owns 3.
    const OWNER: [usize; 4] = [0, 0, 0, 2];

    /// The two draws the next decision will make.
    fn next_draws(rng: &Rng, bound: u32) -> (usize, usize) {
        let mut probe = rng.clone();
        let r1 = probe.below(bound) as usize;
        let r2 = probe.below(bound) as usize;
        (r1, r2)
    }

    #[test]
    fn inclusive_bound_gives_the_first_an_extra_value_and_ties_keep_the_first_pick() {
        let (mut w, mut s) = setup(&[2, 0, 1]);
        // A: 256 per weight 2 = 128 each; C: 128 for weight 1: equal load per weight.
        w.counts(0, 1, 0, &mut [&mut s]);
        w.counts(2, 0, 128, &mut [&mut s]);
        let mut rng = Rng::seeded(11);
        for _ in 0..400 {
            let (r1, _) = next_draws(&rng, 4);
            assert_eq!(pick(&w, &mut s, &mut rng), Some(OWNER[r1]));
        }
    }

    #[test]
    fn the_second_pick_wins_only_when_less_loaded_per_weight() {
        let (mut w, mut s) = setup(&[2, 0, 1]);
        w.counts(0, 1, 0, &mut [&mut s]); // A: 256 / 2
        w.counts(2, 0, 129, &mut [&mut s]); // C: 129 / 1, busier
        let mut rng = Rng::seeded(5);
        let (mut saw_c_first, mut saw_c_both) = (false, false);
        for _ in 0..400 {
            let (r1, r2) = next_draws(&rng, 4);
            let (c1, c2) = (OWNER[r1], OWNER[r2]);
            let want = if c1 == 2 && c2 == 2 { 2 } else { 0 };
            saw_c_first |= c1 == 2 && c2 == 0;
            saw_c_both |= c1 == 2 && c2 == 2;
            assert_eq!(pick(&w, &mut s, &mut rng), Some(want));
        }
        assert!(saw_c_first && saw_c_both, "both cases were exercised");
    }

    #[test]
    fn exactly_two_draws_per_decision_and_none_without_eligible() {
        let (mut w, mut s) = setup(&[3, 1]);
        let mut rng = Rng::seeded(3);
        let mut probe = rng.clone();
        pick(&w, &mut s, &mut rng);
        probe.below(5);
        probe.below(5);
        assert_eq!(probe.next_u64(), rng.clone().next_u64());
        w.overload(0, true, &mut [&mut s]);
        w.edit(1, 0, &mut [&mut s]);
        let before = rng.clone().next_u64();
        assert_eq!(pick(&w, &mut s, &mut rng), None);
        assert_eq!(rng.next_u64(), before, "no draw when nothing is eligible");
    }

    #[test]
    fn overloaded_and_quiescent_servers_are_never_picked() {
        let (mut w, mut s) = setup(&[5, 0, 5, 1]);
        w.overload(2, true, &mut [&mut s]);
        let mut rng = Rng::seeded(9);
        for _ in 0..300 {
            let p = pick(&w, &mut s, &mut rng);
            assert!(matches!(p, Some(0) | Some(3)), "{p:?}");
        }
    }

    #[test]
    fn weight_sums_beyond_int_follow_the_kernel_walk() {
        for weights in [[i32::MAX - 5, 3], [i32::MAX, 1], [i32::MAX, i32::MAX]] {
            let (w, mut s) = setup(&weights);
            let (mut ra, mut rb) = (Rng::seeded(1), Rng::seeded(1));
            for _ in 0..50 {
                let fast = pick(&w, &mut s, &mut ra);
                let mut ctx = SchedCtx {
                    now: crate::time::Tick::ZERO,
                    svc_flags: 0,
                    rng: &mut rb,
                };
                let slow = s.clone().reference_schedule(
                    w.list(),
                    &super::super::weights::testkit::packet(),
                    &mut ctx,
                );
                assert_eq!(fast, slow);
                assert!(fast.is_some());
            }
        }
    }

    #[test]
    fn equal_weights_and_equal_loads_spread_evenly() {
        let (mut w, mut s) = setup(&[1, 1, 1, 1]);
        for p in 0..4 {
            w.counts(p, 3, 7, &mut [&mut s]);
        }
        let mut rng = Rng::seeded(21);
        let mut count = [0u32; 4];
        for _ in 0..50_000 {
            count[pick(&w, &mut s, &mut rng).unwrap()] += 1;
        }
        // Draws from 0..=4: the first owns two values, the others one each.
        let want = [20_000.0, 10_000.0, 10_000.0, 10_000.0];
        for (c, e) in count.iter().zip(want) {
            assert!((f64::from(*c) - e).abs() < 5.0 * e.sqrt(), "{count:?}");
        }
    }

    proptest! {
        #[test]
        fn index_equals_kernel_walk((scale, ops) in scenario(), seed in any::<u64>()) {
            check_agreement::<Twos>(scale, &ops, seed, Twos::reference_schedule)?;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn picks_follow_weights_under_equal_load(
            weights in prop::collection::vec(0i32..=20, 1..10),
            seed in any::<u64>(),
        ) {
            let total: i32 = weights.iter().sum();
            prop_assume!(total > 0);
            let (w, mut s) = setup(&weights);
            let first = weights.iter().position(|&x| x > 0).unwrap();
            let mut rng = Rng::seeded(seed);
            let n = 40_000u32;
            let mut count = vec![0u32; weights.len()];
            for _ in 0..n {
                count[pick(&w, &mut s, &mut rng).unwrap()] += 1;
            }
            for (i, &c) in count.iter().enumerate() {
                let owned = weights[i] + i32::from(i == first);
                let p = f64::from(owned) / f64::from(total + 1);
                let mean = p * f64::from(n);
                let sd = (mean * (1.0 - p)).sqrt();
                prop_assert!((f64::from(c) - mean).abs() <= 5.0 * sd + 1.0,
                    "dest {} weight {}: {} picks, expected {:.0}", i, weights[i], c, mean);
            }
        }
    }
}

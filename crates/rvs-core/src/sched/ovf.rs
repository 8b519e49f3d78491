//! `ovf`: weighted overflow (kernel `net/netfilter/ipvs/ip_vs_ovf.c`, unchanged in 6.1).
//!
//! A destination is a candidate when it is not OVERLOADed, its weight is not 0 and its
//! `activeconns` does not exceed its weight; among candidates the highest weight wins, ties to
//! the first in list order. So connections fill the heaviest server up to "weight" active
//! connections, then overflow to the next. Only *active* connections count (UDP entries are
//! never active, so UDP never overflows). The kernel compares `activeconns` and the weight as
//! C `int`s; that is reproduced.
//!
//! [`Ovf::schedule`] reads the first maximum of a max segment tree whose leaf is the weight of
//! a candidate and 0 otherwise (O(log n)); `counts_changed` re-evaluates one destination
//! (O(1) unless its candidacy flipped, then O(log n)). [`Ovf::reference_schedule`] is the
//! kernel's literal scan.

use super::weights::MaxTree;
use super::{DestChange, SchedCtx, SchedPacket, Scheduler};
use crate::dest::{Dest, DestList};

/// The kernel's candidate test.
fn is_candidate(d: &Dest) -> bool {
    let w = d.weight;
    !(d.is_overloaded() || d.activeconns as i32 > w || w == 0)
}

/// Index leaf: the weight of a candidate, else 0. (Weights are never negative.)
fn leaf(d: &Dest) -> u32 {
    if is_candidate(d) {
        d.weight.max(0) as u32
    } else {
        0
    }
}

/// `ovf` scheduler state: the index of candidate weights.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ovf {
    index: MaxTree,
}

impl Ovf {
    /// The kernel's literal scan (`ip_vs_ovf_schedule`), O(n); same answer as
    /// [`Scheduler::schedule`].
    pub fn reference_schedule(
        &mut self,
        list: DestList<'_>,
        _pkt: &SchedPacket,
        _ctx: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        let mut best: Option<(usize, i32)> = None;
        for (pos, d) in list.iter().enumerate() {
            if !is_candidate(d) {
                continue;
            }
            let better = match best {
                None => true,
                Some((_, hw)) => d.weight > hw,
            };
            if better {
                best = Some((pos, d.weight));
            }
        }
        best.map(|(pos, _)| pos)
    }
}

impl Scheduler for Ovf {
    fn name(&self) -> &'static str {
        "ovf"
    }

    fn dests_changed(&mut self, list: DestList<'_>, _change: DestChange) {
        self.index.rebuild(list, leaf);
    }

    fn counts_changed(&mut self, list: DestList<'_>, pos: usize) {
        if pos < self.index.len() {
            self.index.set(pos, leaf(list.get(pos)));
        }
    }

    fn schedule(
        &mut self,
        list: DestList<'_>,
        _pkt: &SchedPacket,
        _ctx: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        if self.index.len() != list.len() {
            self.index.rebuild(list, leaf);
        }
        self.index.first_max()
    }
}

#[cfg(test)]
mod tests {
    use super::super::weights::testkit::{check_agreement, picks, scenario, World};
    use super::*;
    use proptest::prelude::*;

    fn setup(weights: &[i32]) -> (World, Ovf) {
        let mut w = World::new();
        let mut s = Ovf::default();
        w.init(&mut [&mut s]);
        for &x in weights.iter().rev() {
            w.add(x, &mut [&mut s]);
        }
        (w, s)
    }

    /// Schedule `n` connections, each of which becomes active on the chosen server.
    fn fill(w: &mut World, s: &mut Ovf, n: usize) -> Vec<Option<usize>> {
        (0..n)
            .map(|_| {
                let p = picks(w, s, 1)[0];
                if let Some(p) = p {
                    let (a, i) = (w.list().get(p).activeconns, w.list().get(p).inactconns);
                    w.counts(p, a + 1, i, &mut [&mut *s]);
                }
                p
            })
            .collect()
    }

    #[test]
    fn fills_the_heaviest_to_its_weight_then_overflows() {
        let (mut w, mut s) = setup(&[1, 3, 2]);
        // B takes 4 (active 0..=3 are <= 3), then C 3, then A 2, then nobody.
        let want = [1, 1, 1, 1, 2, 2, 2, 0, 0].map(Some);
        let got = fill(&mut w, &mut s, 10);
        assert_eq!(got[..9], want[..]);
        assert_eq!(got[9], None);
        // One of B's connections closes: B is a candidate again.
        w.counts(1, 3, 1, &mut [&mut s]);
        assert_eq!(picks(&w, &mut s, 1), [Some(1)]);
    }

    #[test]
    fn inactive_connections_do_not_count_and_ties_go_first() {
        let (mut w, mut s) = setup(&[2, 2]);
        w.counts(0, 2, 1000, &mut [&mut s]);
        assert_eq!(picks(&w, &mut s, 1), [Some(0)]);
        w.counts(0, 3, 0, &mut [&mut s]);
        assert_eq!(picks(&w, &mut s, 1), [Some(1)]);
    }

    #[test]
    fn overload_and_weight_zero_are_skipped() {
        let (mut w, mut s) = setup(&[0, 4, 1]);
        w.overload(1, true, &mut [&mut s]);
        assert_eq!(picks(&w, &mut s, 1), [Some(2)]);
        w.overload(2, true, &mut [&mut s]);
        assert_eq!(picks(&w, &mut s, 1), [None]);
    }

    proptest! {
        #[test]
        fn index_equals_kernel_scan((scale, ops) in scenario(), seed in any::<u64>()) {
            check_agreement::<Ovf>(scale, &ops, seed, Ovf::reference_schedule)?;
        }
    }
}

//! `fo`: weighted failover (kernel `net/netfilter/ipvs/ip_vs_fo.c`, unchanged in 6.1).
//!
//! Every new connection goes to the destination with the highest weight among those that are
//! not OVERLOADed and have a positive weight; on a tie the first in list order (the most
//! recently added) wins. Connection counts play no part, so the answer changes only when the
//! configuration or an OVERLOAD flag changes.
//!
//! [`Fo::schedule`] reads the first maximum of a max segment tree of [`open_weight`]s
//! (O(log n)); `counts_changed` re-reads one destination's OVERLOAD flag (O(1) unless it
//! flipped). [`Fo::reference_schedule`] is the kernel's literal scan.

use super::weights::{open_weight, MaxTree};
use super::{DestChange, SchedCtx, SchedPacket, Scheduler};
use crate::dest::DestList;

/// `fo` scheduler state: the index of open weights.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fo {
    index: MaxTree,
}

impl Fo {
    /// The kernel's literal scan (`ip_vs_fo_schedule`), O(n); same answer as
    /// [`Scheduler::schedule`].
    pub fn reference_schedule(
        &mut self,
        list: DestList<'_>,
        _pkt: &SchedPacket,
        _ctx: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        let mut best = None;
        let mut hw = 0;
        for (pos, d) in list.iter().enumerate() {
            if !d.is_overloaded() && d.weight > hw {
                best = Some(pos);
                hw = d.weight;
            }
        }
        best
    }
}

impl Scheduler for Fo {
    fn name(&self) -> &'static str {
        "fo"
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
        _pkt: &SchedPacket,
        _ctx: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        if self.index.len() != list.len() {
            self.index.rebuild(list, open_weight);
        }
        self.index.first_max()
    }
}

#[cfg(test)]
mod tests {
    use super::super::weights::testkit::{check_agreement, picks, scenario, World};
    use super::*;
    use proptest::prelude::*;

    fn setup(weights: &[i32]) -> (World, Fo) {
        let mut w = World::new();
        let mut s = Fo::default();
        w.init(&mut [&mut s]);
        for &x in weights.iter().rev() {
            w.add(x, &mut [&mut s]);
        }
        (w, s)
    }

    #[test]
    fn highest_weight_takes_everything_ties_go_first_in_list() {
        let (w, mut s) = setup(&[2, 5, 3, 5]);
        assert_eq!(picks(&w, &mut s, 3), [Some(1); 3]);
    }

    #[test]
    fn fails_over_on_overload_and_back() {
        let (mut w, mut s) = setup(&[2, 5, 3, 5]);
        w.overload(1, true, &mut [&mut s]);
        assert_eq!(picks(&w, &mut s, 1), [Some(3)]);
        w.overload(3, true, &mut [&mut s]);
        assert_eq!(picks(&w, &mut s, 1), [Some(2)]);
        w.counts(2, 500, 500, &mut [&mut s]); // load does not matter
        assert_eq!(picks(&w, &mut s, 1), [Some(2)]);
        w.overload(1, false, &mut [&mut s]);
        assert_eq!(picks(&w, &mut s, 1), [Some(1)]);
    }

    #[test]
    fn newest_of_equal_weights_wins_and_zero_weight_never() {
        let (mut w, mut s) = setup(&[0, 0]);
        assert_eq!(picks(&w, &mut s, 1), [None]);
        w.add(1, &mut [&mut s]);
        w.add(1, &mut [&mut s]);
        assert_eq!(picks(&w, &mut s, 1), [Some(0)]);
        w.overload(0, true, &mut [&mut s]);
        w.overload(1, true, &mut [&mut s]);
        assert_eq!(picks(&w, &mut s, 1), [None]);
    }

    proptest! {
        #[test]
        fn index_equals_kernel_scan((scale, ops) in scenario(), seed in any::<u64>()) {
            check_agreement::<Fo>(scale, &ops, seed, Fo::reference_schedule)?;
        }
    }
}

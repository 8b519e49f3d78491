//! `rr`: round robin (kernel `net/netfilter/ipvs/ip_vs_rr.c`, unchanged in 6.1).
//!
//! The kernel remembers one list position: the destination chosen last, or the list head
//! before the first choice. A decision walks forward from the entry after it to the end of the
//! list (the head itself is never a candidate), then, unless the remembered position is the
//! head, wraps to the first entry and continues up to and including the remembered entry. The
//! first destination with a positive weight and OVERLOAD clear is chosen and remembered; other
//! weights do not matter. If the walk finds nobody the remembered position stays.
//!
//! Because new destinations are inserted at the head, servers added A, B, C are served
//! C, B, A, C, B, … . When the remembered destination is deleted, the kernel moves the mark to
//! the entry before it (the head if it was first), so the walk resumes with the deleted
//! entry's successor. Adding, editing or re-weighting never moves the mark.
//!
//! The mark is kept as a [`DestId`] (positions shift when a destination is added at the head)
//! with its position cached. [`Rr::schedule`] finds the next usable entry with a max segment
//! tree of [`open_weight`]s (O(log n), even across long runs of quiescent or overloaded
//! servers); [`Rr::reference_schedule`] is the literal walk.

use super::weights::{open_weight, MaxTree};
use super::{DestChange, SchedCtx, SchedPacket, Scheduler};
use crate::dest::{DestId, DestList};

/// The remembered destination and its cached list position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mark {
    id: DestId,
    pos: usize,
}

/// `rr` scheduler state: the mark (None = the list head) and the eligibility index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rr {
    mark: Option<Mark>,
    index: MaxTree,
}

impl Rr {
    /// The remembered position, re-located if the cached position went stale.
    fn mark_pos(&mut self, list: DestList<'_>) -> Option<usize> {
        let m = self.mark?;
        if m.pos < list.len() && list.id(m.pos) == m.id {
            return Some(m.pos);
        }
        self.mark = list.position(m.id).map(|pos| Mark { id: m.id, pos });
        self.mark.map(|m| m.pos)
    }

    fn remember(&mut self, list: DestList<'_>, pos: usize) -> Option<usize> {
        self.mark = Some(Mark {
            id: list.id(pos),
            pos,
        });
        Some(pos)
    }

    fn sync_index(&mut self, list: DestList<'_>) {
        if self.index.len() != list.len() {
            self.index.rebuild(list, open_weight);
        }
    }

    /// The kernel's literal walk (`ip_vs_rr_schedule`): O(n). Same result and state changes
    /// as [`Scheduler::schedule`]; kept for tests and as the specification.
    pub fn reference_schedule(
        &mut self,
        list: DestList<'_>,
        _pkt: &SchedPacket,
        _ctx: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        let last = self.mark_pos(list);
        let mut pos = last.map_or(0, |p| p + 1);
        let mut passes = 0;
        loop {
            while pos < list.len() {
                let d = list.get(pos);
                if !d.is_overloaded() && d.weight > 0 {
                    return self.remember(list, pos);
                }
                if Some(pos) == last {
                    return None;
                }
                pos += 1;
            }
            passes += 1;
            if passes >= 2 || last.is_none() {
                return None;
            }
            pos = 0;
        }
    }
}

impl Scheduler for Rr {
    fn name(&self) -> &'static str {
        "rr"
    }

    fn sequence(&self, list: DestList<'_>) -> Option<Vec<usize>> {
        // one turn: each choosable server once
        let n = list.iter().filter(|d| super::choosable(d)).count();
        Some(super::peek(self, list, n))
    }

    fn dests_changed(&mut self, list: DestList<'_>, change: DestChange) {
        match change {
            DestChange::Init => self.mark = None,
            DestChange::Removed { old_pos, id } if self.mark.map(|m| m.id) == Some(id) => {
                self.mark = old_pos.checked_sub(1).map(|pos| Mark {
                    id: list.id(pos),
                    pos,
                });
            }
            _ => {}
        }
        if let Some(m) = self.mark {
            self.mark = list.position(m.id).map(|pos| Mark { id: m.id, pos });
        }
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
        self.sync_index(list);
        let last = self.mark_pos(list);
        let from = last.map_or(0, |p| p + 1);
        let hit = self.index.first_at_least(from, 1).or_else(|| {
            let last = last?;
            self.index.first_at_least(0, 1).filter(|&p| p <= last)
        })?;
        self.remember(list, hit)
    }
}

#[cfg(test)]
mod tests {
    use super::super::weights::testkit::{check_agreement, picks, scenario, World};
    use super::*;
    use proptest::prelude::*;

    fn setup(weights: &[i32]) -> (World, Rr) {
        let mut w = World::new();
        let mut rr = Rr::default();
        w.init(&mut [&mut rr]);
        for &x in weights {
            w.add(x, &mut [&mut rr]);
        }
        (w, rr)
    }

    #[test]
    fn added_a_b_c_serves_newest_first() {
        let (w, mut rr) = setup(&[1, 1, 1]); // A, B, C → list C, B, A
        let got = picks(&w, &mut rr, 7);
        assert_eq!(got, [0, 1, 2, 0, 1, 2, 0].map(Some));
    }

    #[test]
    fn other_weights_are_ignored_zero_and_overload_skipped() {
        let (mut w, mut rr) = setup(&[5, 0, 1, 3]); // list: D3 C1 B0 A5
        w.overload(1, true, &mut [&mut rr]);
        assert_eq!(picks(&w, &mut rr, 5), [0, 3, 0, 3, 0].map(Some));
    }

    #[test]
    fn added_destination_at_head_waits_for_the_wrap() {
        let (mut w, mut rr) = setup(&[1, 1, 1]); // C B A
        assert_eq!(picks(&w, &mut rr, 2), [Some(0), Some(1)]); // C, B
        w.add(1, &mut [&mut rr]); // D C B A: mark stays on B (now position 2)
        assert_eq!(picks(&w, &mut rr, 4), [3, 0, 1, 2].map(Some)); // A, D, C, B
    }

    #[test]
    fn deleting_the_last_chosen_resumes_with_its_successor() {
        let (mut w, mut rr) = setup(&[1, 1, 1, 1]); // D C B A
        assert_eq!(picks(&w, &mut rr, 2), [Some(0), Some(1)]); // D, C
        w.remove(1, &mut [&mut rr]); // D B A: mark moves to D
        assert_eq!(picks(&w, &mut rr, 3), [1, 2, 0].map(Some)); // B, A, D
    }

    #[test]
    fn deleting_the_first_while_marked_restarts_from_the_head() {
        let (mut w, mut rr) = setup(&[1, 1, 1]); // C B A
        assert_eq!(picks(&w, &mut rr, 1), [Some(0)]); // C
        w.remove(0, &mut [&mut rr]); // B A: mark at head
        assert_eq!(picks(&w, &mut rr, 3), [0, 1, 0].map(Some)); // B, A, B
    }

    #[test]
    fn lone_usable_server_is_chosen_again_and_none_when_all_unusable() {
        let (mut w, mut rr) = setup(&[1, 1, 1]); // C B A
        assert_eq!(picks(&w, &mut rr, 2), [Some(0), Some(1)]);
        w.overload(0, true, &mut [&mut rr]);
        w.edit(2, 0, &mut [&mut rr]);
        assert_eq!(picks(&w, &mut rr, 2), [Some(1), Some(1)]);
        w.overload(1, true, &mut [&mut rr]);
        assert_eq!(picks(&w, &mut rr, 2), [None, None]);
        // The failed walks left the mark on B: clearing C's overload resumes after B.
        w.overload(0, false, &mut [&mut rr]);
        w.edit(2, 1, &mut [&mut rr]);
        assert_eq!(picks(&w, &mut rr, 3), [2, 0, 2].map(Some));
    }

    #[test]
    fn empty_service_has_no_destination() {
        let (w, mut rr) = setup(&[]);
        assert_eq!(picks(&w, &mut rr, 1), [None]);
    }

    proptest! {
        #[test]
        fn indexed_walk_equals_kernel_walk((scale, ops) in scenario(), seed in any::<u64>()) {
            check_agreement::<Rr>(scale, &ops, seed, Rr::reference_schedule)?;
        }
    }
}

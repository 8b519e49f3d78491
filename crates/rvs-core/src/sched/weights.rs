//! Position indexes shared by the list-walking schedulers (rr, wrr, fo, ovf, twos).
//!
//! The kernel's `ip_vs_rr.c`, `ip_vs_wrr.c`, `ip_vs_fo.c`, `ip_vs_ovf.c` and `ip_vs_twos.c`
//! walk the whole destination list on every decision. With a thousand destinations that is a
//! thousand cache lines per new connection, so these schedulers keep one small index over list
//! positions instead, holding one number per destination (its *leaf*):
//!
//! * [`MaxTree`]: a segment tree of leaf maxima. It answers "the first position at or after
//!   `p` whose leaf is at least `t`" (rr: the next usable destination; wrr: the next one whose
//!   weight reaches the current weight) and "the first position holding the largest leaf"
//!   (fo, ovf) in O(log n).
//! * [`SumTree`]: a Fenwick tree of leaf sums. It answers "the first position where the running
//!   sum of leaves reaches `r`" (twos' weighted draw) in O(log n) and keeps the total.
//!
//! Leaves are recomputed from the [`Dest`] by a scheduler-specific function: [`open_weight`]
//! (weight of a destination that is not OVERLOADed, else 0) for rr, wrr, fo and twos, and the
//! overflow rule for ovf. The engine reports configuration changes (`dests_changed`, an O(n)
//! rebuild) and counter/flag changes of one destination (`counts_changed`, an O(1) compare that
//! climbs the tree only when the leaf really changed).

use crate::dest::{Dest, DestList};

/// The weight a destination offers to rr, wrr, fo and twos: its weight when it is not
/// OVERLOADed and the weight is positive, else 0 ("never eligible").
#[inline]
pub fn open_weight(d: &Dest) -> u32 {
    if d.is_overloaded() || d.weight <= 0 {
        0
    } else {
        d.weight as u32
    }
}

/// A max segment tree over list positions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaxTree {
    len: usize,
    base: usize,
    node: Vec<u32>,
}

impl MaxTree {
    /// Rebuild from the list with `leaf` giving each destination's value (O(n)).
    pub fn rebuild(&mut self, list: DestList<'_>, leaf: impl Fn(&Dest) -> u32) {
        self.len = list.len();
        self.base = self.len.next_power_of_two().max(1);
        self.node.clear();
        self.node.resize(2 * self.base, 0);
        for (i, d) in list.iter().enumerate() {
            self.node[self.base + i] = leaf(d);
        }
        for i in (1..self.base).rev() {
            self.node[i] = self.node[2 * i].max(self.node[2 * i + 1]);
        }
    }

    /// Number of positions.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// No positions.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The leaf at `pos`.
    #[inline]
    pub fn get(&self, pos: usize) -> u32 {
        self.node[self.base + pos]
    }

    /// Set the leaf at `pos`; O(1) when unchanged, else O(log n).
    pub fn set(&mut self, pos: usize, value: u32) {
        let mut i = self.base + pos;
        if self.node[i] == value {
            return;
        }
        self.node[i] = value;
        while i > 1 {
            i /= 2;
            let m = self.node[2 * i].max(self.node[2 * i + 1]);
            if self.node[i] == m {
                return;
            }
            self.node[i] = m;
        }
    }

    /// The largest leaf (0 when empty).
    #[inline]
    pub fn max(&self) -> u32 {
        if self.len == 0 {
            0
        } else {
            self.node[1]
        }
    }

    /// The first position holding the largest leaf, if that leaf is positive.
    pub fn first_max(&self) -> Option<usize> {
        let top = self.max();
        if top == 0 {
            return None;
        }
        let mut i = 1;
        while i < self.base {
            i *= 2;
            if self.node[i] != top {
                i += 1;
            }
        }
        Some(i - self.base)
    }

    /// The first position `>= from` whose leaf is `>= thr` (`thr` must be positive).
    pub fn first_at_least(&self, from: usize, thr: u32) -> Option<usize> {
        debug_assert!(thr > 0, "padding leaves are 0");
        if from >= self.len {
            return None;
        }
        let mut i = self.base + from;
        // Climb to the leftmost subtree right of `from` that holds a large enough leaf.
        while self.node[i] < thr {
            while i & 1 == 1 {
                i /= 2;
            }
            if i == 0 {
                return None;
            }
            i += 1;
        }
        while i < self.base {
            i *= 2;
            if self.node[i] < thr {
                i += 1;
            }
        }
        Some(i - self.base)
    }
}

/// A Fenwick (binary indexed) tree of leaf sums over list positions, padded with zero leaves
/// to a power of two so that a descent is a fixed number of branch-free steps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SumTree {
    leaf: Vec<u32>,
    fen: Vec<u64>,
    total: u64,
}

impl SumTree {
    /// Rebuild from the list with `leaf` giving each destination's value (O(n)).
    pub fn rebuild(&mut self, list: DestList<'_>, leaf: impl Fn(&Dest) -> u32) {
        self.leaf.clear();
        self.leaf.extend(list.iter().map(leaf));
        let cap = self.leaf.len().next_power_of_two();
        self.fen.clear();
        self.fen.resize(cap + 1, 0);
        for i in 1..=cap {
            self.fen[i] += self.leaf.get(i - 1).map_or(0, |&w| u64::from(w));
            let j = i + (i & i.wrapping_neg());
            if j <= cap {
                self.fen[j] += self.fen[i];
            }
        }
        self.total = self.leaf.iter().map(|&w| u64::from(w)).sum();
    }

    /// Number of positions.
    #[inline]
    pub fn len(&self) -> usize {
        self.leaf.len()
    }

    /// No positions.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.leaf.is_empty()
    }

    /// The leaf at `pos`.
    #[inline]
    pub fn get(&self, pos: usize) -> u32 {
        self.leaf[pos]
    }

    /// Sum of all leaves.
    #[inline]
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Set the leaf at `pos`; O(1) when unchanged, else O(log n).
    pub fn set(&mut self, pos: usize, value: u32) {
        let old = self.leaf[pos];
        if old == value {
            return;
        }
        self.leaf[pos] = value;
        self.total = self.total - u64::from(old) + u64::from(value);
        let mut i = pos + 1;
        while i < self.fen.len() {
            self.fen[i] = self.fen[i] - u64::from(old) + u64::from(value);
            i += i & i.wrapping_neg();
        }
    }

    /// The first position whose running sum (leaves `0..=pos`) is `>= target`.
    /// Requires `1 <= target <= total()`; the position found then has a positive leaf.
    pub fn first_reaching(&self, target: u64) -> usize {
        self.first_reaching_pair(target, target).0
    }

    /// [`SumTree::first_reaching`] for two targets at once: the two descents are interleaved
    /// so that their memory loads overlap.
    pub fn first_reaching_pair(&self, t1: u64, t2: u64) -> (usize, usize) {
        debug_assert!(t1 >= 1 && t1 <= self.total && t2 >= 1 && t2 <= self.total);
        let (mut p1, mut p2) = (0, 0);
        let (mut rem1, mut rem2) = (t1, t2);
        // fen.len() - 1 is a power of two; every probe stays below it.
        let mut step = (self.fen.len() - 1) / 2;
        while step > 0 {
            let (v1, v2) = (self.fen[p1 + step], self.fen[p2 + step]);
            // All ones when the probe is below the remainder (sums stay far below 2^63).
            let m1 = (v1.wrapping_sub(rem1) as i64 >> 63) as u64;
            let m2 = (v2.wrapping_sub(rem2) as i64 >> 63) as u64;
            p1 += step & m1 as usize;
            p2 += step & m2 as usize;
            rem1 -= v1 & m1;
            rem2 -= v2 & m2;
            step /= 2;
        }
        (p1, p2)
    }
}

#[cfg(test)]
pub(crate) mod testkit;

#[cfg(test)]
mod tests {
    use super::testkit::World;
    use super::*;

    fn world(weights: &[i32]) -> World {
        let mut w = World::new();
        // Added in reverse so that list position i holds weights[i].
        for &x in weights.iter().rev() {
            w.add(x, &mut []);
        }
        w
    }

    #[test]
    fn max_tree_finds_first_at_least_and_first_max() {
        let w = world(&[0, 3, 1, 5, 0, 5, 2]);
        let mut t = MaxTree::default();
        t.rebuild(w.list(), open_weight);
        assert_eq!(t.max(), 5);
        assert_eq!(t.first_max(), Some(3));
        assert_eq!(t.first_at_least(0, 1), Some(1));
        assert_eq!(t.first_at_least(4, 1), Some(5));
        assert_eq!(t.first_at_least(4, 3), Some(5));
        assert_eq!(t.first_at_least(6, 3), None);
        assert_eq!(t.first_at_least(7, 1), None);
        t.set(3, 0);
        assert_eq!(t.first_max(), Some(5));
        t.set(5, 0);
        assert_eq!(t.first_max(), Some(1));
        assert_eq!(t.first_at_least(2, 3), None);
    }

    #[test]
    fn empty_trees_answer_nothing() {
        let w = World::new();
        let mut t = MaxTree::default();
        assert_eq!(t.first_max(), None);
        t.rebuild(w.list(), open_weight);
        assert_eq!(t.first_at_least(0, 1), None);
        assert_eq!(t.max(), 0);
        let mut s = SumTree::default();
        s.rebuild(w.list(), open_weight);
        assert_eq!(s.total(), 0);
    }

    #[test]
    fn sum_tree_finds_running_sum_positions() {
        let w = world(&[2, 0, 3, 1, 0, 4]);
        let mut s = SumTree::default();
        s.rebuild(w.list(), open_weight);
        assert_eq!(s.total(), 10);
        let expect = [0, 0, 2, 2, 2, 3, 5, 5, 5, 5];
        for (r, &p) in expect.iter().enumerate() {
            assert_eq!(s.first_reaching(r as u64 + 1), p, "target {}", r + 1);
        }
        s.set(2, 0);
        assert_eq!(s.total(), 7);
        assert_eq!(s.first_reaching(3), 3);
        assert_eq!(s.first_reaching(4), 5);
    }
}

#[cfg(test)]
mod speed;

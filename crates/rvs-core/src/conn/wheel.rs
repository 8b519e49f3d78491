//! A hierarchical timer wheel with millisecond resolution that fires timers *exactly*: never
//! before their expiry, and in a deterministic order (by expiry time, then by id).
//!
//! The kernel gives every connection a `struct timer_list` (`ip_vs_conn.c`); since Linux 4.8
//! its timer wheel rounds long timers up to a coarse bucket, so a 15-minute entry may live
//! ~16 s longer than its timeout. rvs keeps the timeouts exact instead: the caller's clock
//! drives [`Wheel::pop_expired`], which yields every timer whose expiry is `<= now`.
//!
//! # Layout
//! Eleven levels of 64 slots; level `k` slots span `64^k` ms, so the eleven levels cover the
//! whole `u64` millisecond range. A timer is placed at the level of the highest bit in which
//! its expiry differs from the wheel's current time (`elapsed`) and in the slot given by that
//! level's six bits of its expiry. Slots are intrusive doubly-linked lists threaded through the
//! caller's entries ([`Link`]), and each level keeps a 64-bit occupancy mask, so finding the
//! next deadline costs one `trailing_zeros` per level and a jump of the clock by hours costs
//! O(levels + timers due + timers cascaded), never O(elapsed time).
//!
//! When the earliest occupied slot is due, its timers either are exactly due (they move to a
//! *ready* list, sorted by `(expires, id)`) or cascade to a lower level; each timer cascades at
//! most ten times in its life. Timers armed for a time already passed go straight into the
//! ready list at their sorted place.

/// "No entry" in a link field.
pub const NIL: u32 = u32::MAX;
/// Bit marking a `prev` field that points at a list head rather than at an entry.
const HEAD_TAG: u32 = 0x8000_0000;
/// Largest usable id (ids carry no tag bit).
pub const MAX_ID: u32 = HEAD_TAG - 1;

const LEVEL_BITS: u32 = 6;
const SLOTS: usize = 1 << LEVEL_BITS;
const LEVELS: usize = 11;
/// Index of the ready list among the list heads.
const READY: usize = LEVELS * SLOTS;

/// The per-entry timer fields, stored inside the caller's entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// previous entry, or `HEAD_TAG | list`, or [`NIL`] when not armed
    prev: u32,
    /// next entry or [`NIL`]
    next: u32,
    /// expiry in milliseconds
    pub expires: u64,
}

impl Link {
    /// An unarmed timer.
    pub const UNARMED: Link = Link {
        prev: NIL,
        next: NIL,
        expires: 0,
    };
    /// Whether the timer is armed (in the wheel or in the ready list).
    pub fn is_armed(&self) -> bool {
        self.prev != NIL
    }
}

/// Where the wheel finds the [`Link`] of an id.
pub trait Links {
    /// The link of `id` (an id the caller armed or is arming).
    fn link(&self, id: u32) -> &Link;
    /// The link of `id`, mutably.
    fn link_mut(&mut self, id: u32) -> &mut Link;
}

/// A plain vector of links, for callers (and tests) that keep timers apart from their data.
impl Links for Vec<Link> {
    fn link(&self, id: u32) -> &Link {
        &self[id as usize]
    }
    fn link_mut(&mut self, id: u32) -> &mut Link {
        &mut self[id as usize]
    }
}

/// The wheel: list heads, occupancy masks and the current time. Entries live in a [`Links`].
#[derive(Clone, Debug)]
pub struct Wheel {
    elapsed: u64,
    heads: Box<[u32]>,
    occupied: [u64; LEVELS],
    ready_tail: u32,
    armed: usize,
    scratch: Vec<u32>,
}

impl Default for Wheel {
    fn default() -> Wheel {
        Wheel::new()
    }
}

/// Level and slot of a timer expiring at `when` when the wheel is at `elapsed` (`when > elapsed`).
fn place(elapsed: u64, when: u64) -> (usize, usize) {
    let masked = (elapsed ^ when) | (SLOTS as u64 - 1);
    let significant = 63 - masked.leading_zeros();
    let level = (significant / LEVEL_BITS) as usize;
    let slot = ((when >> (level as u32 * LEVEL_BITS)) as usize) & (SLOTS - 1);
    (level, slot)
}

impl Wheel {
    /// An empty wheel at time 0.
    pub fn new() -> Wheel {
        Wheel {
            elapsed: 0,
            heads: vec![NIL; READY + 1].into_boxed_slice(),
            occupied: [0; LEVELS],
            ready_tail: NIL,
            armed: 0,
            scratch: Vec::new(),
        }
    }

    /// Number of armed timers.
    pub fn len(&self) -> usize {
        self.armed
    }

    /// Whether no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.armed == 0
    }

    /// The wheel's time: every timer expiring at or before it has been moved to the ready list.
    pub fn elapsed(&self) -> u64 {
        self.elapsed
    }

    /// Arm (or re-arm) the timer of `id` to fire at `when` (milliseconds).
    pub fn set<L: Links + ?Sized>(&mut self, links: &mut L, id: u32, when: u64) {
        debug_assert!(id <= MAX_ID);
        self.cancel(links, id);
        links.link_mut(id).expires = when;
        self.armed += 1;
        if when <= self.elapsed {
            self.ready_insert(links, id);
        } else {
            let (level, slot) = place(self.elapsed, when);
            self.push_head(links, level * SLOTS + slot, id);
        }
    }

    /// Disarm the timer of `id`; returns whether it was armed.
    pub fn cancel<L: Links + ?Sized>(&mut self, links: &mut L, id: u32) -> bool {
        let Link { prev, next, .. } = *links.link(id);
        if prev == NIL {
            return false;
        }
        if next != NIL {
            links.link_mut(next).prev = prev;
        }
        if prev & HEAD_TAG != 0 {
            let list = (prev & !HEAD_TAG) as usize;
            self.heads[list] = next;
            if next == NIL && list < READY {
                self.occupied[list / SLOTS] &= !(1u64 << (list % SLOTS));
            }
        } else {
            links.link_mut(prev).next = next;
        }
        if self.ready_tail == id {
            self.ready_tail = if prev & HEAD_TAG != 0 { NIL } else { prev };
        }
        let l = links.link_mut(id);
        l.prev = NIL;
        l.next = NIL;
        self.armed -= 1;
        true
    }

    /// Disarm and return the next timer due at `now`: the armed timer with the smallest
    /// `(expires, id)` among those with `expires <= now`, or `None` if none is due.
    pub fn pop_expired<L: Links + ?Sized>(&mut self, links: &mut L, now: u64) -> Option<u32> {
        loop {
            let head = self.heads[READY];
            if head != NIL {
                if links.link(head).expires > now {
                    return None; // only when the caller's clock went backwards
                }
                self.cancel(links, head);
                return Some(head);
            }
            match self.next_deadline() {
                Some((level, slot, deadline)) if deadline <= now => {
                    self.elapsed = deadline;
                    self.expire_slot(links, level, slot);
                }
                _ => {
                    self.elapsed = self.elapsed.max(now);
                    return None;
                }
            }
        }
    }

    /// The earliest time at which a timer may be due (`None` when nothing is armed). Exact for
    /// timers in the ready list and the lowest level, a lower bound otherwise.
    pub fn next_wakeup<L: Links + ?Sized>(&self, links: &L) -> Option<u64> {
        let head = self.heads[READY];
        if head != NIL {
            return Some(links.link(head).expires);
        }
        self.next_deadline().map(|(_, _, d)| d)
    }

    /// First occupied slot: (level, slot, start time of that slot).
    fn next_deadline(&self) -> Option<(usize, usize, u64)> {
        let level = self.occupied.iter().position(|&m| m != 0)?;
        let slot = self.occupied[level].trailing_zeros() as usize;
        let shift = level as u32 * LEVEL_BITS;
        let block = shift + LEVEL_BITS;
        let block_start = if block >= 64 {
            0
        } else {
            self.elapsed & !((1u64 << block) - 1)
        };
        debug_assert!(slot > ((self.elapsed >> shift) as usize & (SLOTS - 1)));
        Some((level, slot, block_start + ((slot as u64) << shift)))
    }

    /// Empty a due slot: exactly-due timers go to the ready list in `(expires, id)` order, the
    /// others cascade to lower levels.
    fn expire_slot<L: Links + ?Sized>(&mut self, links: &mut L, level: usize, slot: usize) {
        let list = level * SLOTS + slot;
        let mut id = self.heads[list];
        self.heads[list] = NIL;
        self.occupied[level] &= !(1u64 << slot);
        let mut due = std::mem::take(&mut self.scratch);
        while id != NIL {
            let l = links.link_mut(id);
            let next = l.next;
            let when = l.expires;
            l.prev = NIL;
            l.next = NIL;
            if when <= self.elapsed {
                due.push(id);
            } else {
                let (lv, sl) = place(self.elapsed, when);
                debug_assert!(lv < level);
                self.push_head(links, lv * SLOTS + sl, id);
            }
            id = next;
        }
        due.sort_unstable_by_key(|&i| (links.link(i).expires, i));
        for &i in &due {
            self.push_tail_ready(links, i);
        }
        due.clear();
        self.scratch = due;
    }

    fn push_head<L: Links + ?Sized>(&mut self, links: &mut L, list: usize, id: u32) {
        let old = self.heads[list];
        if old != NIL {
            links.link_mut(old).prev = id;
        } else if list < READY {
            self.occupied[list / SLOTS] |= 1u64 << (list % SLOTS);
        }
        let l = links.link_mut(id);
        l.prev = HEAD_TAG | list as u32;
        l.next = old;
        self.heads[list] = id;
    }

    fn push_tail_ready<L: Links + ?Sized>(&mut self, links: &mut L, id: u32) {
        let tail = self.ready_tail;
        let l = links.link_mut(id);
        l.next = NIL;
        if tail == NIL {
            l.prev = HEAD_TAG | READY as u32;
            self.heads[READY] = id;
        } else {
            l.prev = tail;
            links.link_mut(tail).next = id;
        }
        self.ready_tail = id;
    }

    /// Insert into the ready list at its `(expires, id)` place, searching from the tail.
    fn ready_insert<L: Links + ?Sized>(&mut self, links: &mut L, id: u32) {
        let key = (links.link(id).expires, id);
        let mut after = self.ready_tail;
        while after != NIL && (links.link(after).expires, after) > key {
            let p = links.link(after).prev;
            after = if p & HEAD_TAG != 0 { NIL } else { p };
        }
        if after == self.ready_tail {
            self.push_tail_ready(links, id);
        } else if after == NIL {
            self.push_head(links, READY, id);
        } else {
            let next = links.link(after).next;
            links.link_mut(next).prev = id;
            links.link_mut(after).next = id;
            let l = links.link_mut(id);
            l.prev = after;
            l.next = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn links(n: usize) -> Vec<Link> {
        vec![Link::UNARMED; n]
    }

    fn drain(w: &mut Wheel, l: &mut Vec<Link>, now: u64) -> Vec<u32> {
        std::iter::from_fn(|| w.pop_expired(l, now)).collect()
    }

    #[test]
    fn fires_in_expiry_then_id_order_and_never_early() {
        let mut w = Wheel::new();
        let mut l = links(8);
        for (id, when) in [(5, 300), (1, 100), (3, 100), (2, 4_000_000), (0, 100)] {
            w.set(&mut l, id, when);
        }
        assert_eq!(drain(&mut w, &mut l, 99), Vec::<u32>::new());
        assert_eq!(drain(&mut w, &mut l, 100), vec![0, 1, 3]);
        assert_eq!(drain(&mut w, &mut l, 3_999_999), vec![5]);
        assert_eq!(w.len(), 1);
        assert_eq!(drain(&mut w, &mut l, 4_000_000), vec![2]);
        assert!(w.is_empty());
    }

    #[test]
    fn rearm_moves_and_cancel_removes() {
        let mut w = Wheel::new();
        let mut l = links(4);
        w.set(&mut l, 0, 1_000);
        w.set(&mut l, 1, 2_000);
        w.set(&mut l, 0, 5_000); // re-armed later
        assert!(w.cancel(&mut l, 1));
        assert!(!w.cancel(&mut l, 1));
        assert_eq!(drain(&mut w, &mut l, 4_999), Vec::<u32>::new());
        assert_eq!(drain(&mut w, &mut l, 5_000), vec![0]);
        assert!(!l[0].is_armed());
    }

    #[test]
    fn hours_long_jump_pops_everything_due_in_order() {
        let mut w = Wheel::new();
        let mut l = links(1000);
        for id in 0..1000u32 {
            // spread over ~10 hours, ids deliberately not in expiry order
            w.set(&mut l, id, u64::from((id * 7919) % 1000) * 36_000 + 1);
        }
        let got = drain(&mut w, &mut l, 10 * 3_600_000);
        let mut want: Vec<u32> = (0..1000).collect();
        want.sort_by_key(|&id| (u64::from((id * 7919) % 1000) * 36_000 + 1, id));
        assert_eq!(got, want);
    }

    #[test]
    fn timers_armed_in_the_past_fire_at_once_in_order() {
        let mut w = Wheel::new();
        let mut l = links(4);
        assert_eq!(w.pop_expired(&mut l, 10_000), None);
        w.set(&mut l, 3, 9_000);
        w.set(&mut l, 1, 500);
        w.set(&mut l, 2, 9_000);
        assert_eq!(drain(&mut w, &mut l, 10_000), vec![1, 2, 3]);
    }

    #[test]
    fn far_future_and_max_expiry() {
        let mut w = Wheel::new();
        let mut l = links(2);
        w.set(&mut l, 0, u64::MAX);
        w.set(&mut l, 1, 1 << 40);
        assert_eq!(drain(&mut w, &mut l, (1 << 40) - 1), Vec::<u32>::new());
        assert_eq!(drain(&mut w, &mut l, u64::MAX - 1), vec![1]);
        assert_eq!(drain(&mut w, &mut l, u64::MAX), vec![0]);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Set(u32, u64),
        Cancel(u32),
        Advance(u64),
        Back(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..64u32, 0..200_000u64).prop_map(|(i, d)| Op::Set(i, d)),
            1 => (0..64u32, 0..(1u64 << 40)).prop_map(|(i, d)| Op::Set(i, d)),
            1 => (0..64u32).prop_map(Op::Cancel),
            3 => (0..50_000u64).prop_map(Op::Advance),
            1 => (0..(1u64 << 36)).prop_map(Op::Advance),
            1 => (0..5_000u64).prop_map(Op::Back),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// The wheel pops exactly what an ordered map of (expires, id) pops.
        #[test]
        fn matches_btreemap_reference(ops in proptest::collection::vec(op(), 1..300)) {
            let mut w = Wheel::new();
            let mut l = links(64);
            let mut reference: BTreeMap<(u64, u32), ()> = BTreeMap::new();
            let mut armed: BTreeMap<u32, u64> = BTreeMap::new();
            let mut now = 0u64;
            for op in ops {
                match op {
                    Op::Set(id, delta) => {
                        // relative to the caller's clock, sometimes in the past
                        let when = (now + delta).saturating_sub(1_000);
                        if let Some(old) = armed.insert(id, when) {
                            reference.remove(&(old, id));
                        }
                        reference.insert((when, id), ());
                        w.set(&mut l, id, when);
                    }
                    Op::Cancel(id) => {
                        let was = armed.remove(&id);
                        if let Some(old) = was {
                            reference.remove(&(old, id));
                        }
                        prop_assert_eq!(w.cancel(&mut l, id), was.is_some());
                    }
                    Op::Advance(d) | Op::Back(d) => {
                        now = if matches!(op, Op::Back(_)) { now.saturating_sub(d) } else { now + d };
                        loop {
                            let want = reference.keys().next().copied().filter(|k| k.0 <= now);
                            let got = w.pop_expired(&mut l, now);
                            prop_assert_eq!(got, want.map(|k| k.1));
                            let Some(k) = want else { break };
                            reference.remove(&k);
                            armed.remove(&k.1);
                        }
                    }
                }
                prop_assert_eq!(w.len(), armed.len());
            }
        }
    }
}

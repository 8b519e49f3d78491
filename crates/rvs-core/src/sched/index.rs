//! Indexes shared by the least-connection family (lc, wlc, sed, nq, lblc, lblcr).
//!
//! The kernel's schedulers of this family scan the whole destination list for every new
//! connection and keep the *first* destination (in list order) that no later one beats
//! strictly. `MinTree` reproduces that choice in O(log n) per counter change and O(1) per
//! decision: a segment tree over list positions whose internal nodes hold the better child
//! under the scheduler's comparator, ties going to the left (lower position) child. This is
//! the kernel's answer exactly when the comparator is a total preorder, which holds for every
//! eligible destination the kernel can actually pick:
//!
//! * lc: `overhead` as `u32` (widened to `u64` so an ineligible sentinel sorts last),
//!   compared with `<` — a total order;
//! * wlc / lblc / lblcr / sed: `oh_a * w_b < oh_b * w_a` with 64-bit products and `w > 0`,
//!   which is the exact comparison of the rationals `oh_a / w_a < oh_b / w_b` (the products
//!   of two 32-bit values never overflow 64 bits), hence a total preorder;
//! * nq: idle destinations (class 0, all equal) before the others (class 1, sed key).
//!
//! The kernel scans also look at a few destinations that are not "eligible" in that clean
//! sense: in wlc/sed/lblc/lblcr a weight-0 destination *after* the first eligible one is
//! compared with the cross-multiplication and wins if its 32-bit overhead is negative
//! (≥ 2²³ active connections, an `int` overflow), and negative weights (which the
//! configuration refuses) would be compared the same way there and in nq. Such leaves are
//! counted as *quirks*; while any exists, the schedulers answer with the kernel-literal scan
//! instead of the tree, so the answer stays exact in every case.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

use crate::dest::{Dest, DestId, DestList};
use crate::time::{Span, Tick};

/// "No position" in a tree node.
const NONE: u32 = u32::MAX;

/// `ip_vs_dest_conn_overhead`: `(activeconns << 8) + inactconns` in C `int` arithmetic
/// (wrapping, as the kernel is built with `-fno-strict-overflow`).
#[inline]
pub(crate) fn conn_overhead(d: &Dest) -> i32 {
    d.overhead() as i32
}

/// `ip_vs_sed_dest_overhead` / `ip_vs_nq_dest_overhead`: `activeconns + 1` as `int`.
#[inline]
pub(crate) fn sed_overhead(d: &Dest) -> i32 {
    (d.activeconns as i32).wrapping_add(1)
}

/// How a destination enters a scheduler's tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Leaf<K> {
    /// Never chosen by the kernel scan (OVERLOAD, weight 0 …).
    Skip,
    /// Competes with this key.
    Key(K),
    /// The kernel's scan treats it in a way the tree cannot express (see the module docs).
    Quirk,
}

/// A scheduler's view of a destination: eligibility and the comparison of keys.
pub(crate) trait Policy {
    /// What the comparator looks at.
    type Key: Copy + PartialEq + std::fmt::Debug;
    /// The key of a leaf that is not eligible: every eligible key is better than it, it is
    /// better than nothing.
    const SENTINEL: Self::Key;
    /// Classify a destination.
    fn classify(d: &Dest) -> Leaf<Self::Key>;
    /// `a` strictly better than `b` (the kernel replaces its current pick `b` with `a`).
    fn better(a: &Self::Key, b: &Self::Key) -> bool;
}

/// A load ratio `oh / w`, compared by 64-bit cross-multiplication as the kernel does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ratio {
    pub(crate) oh: i32,
    pub(crate) w: i32,
}

impl Ratio {
    /// Worse than every ratio with `w > 0`: `1 / 0`.
    const SENTINEL: Ratio = Ratio { oh: 1, w: 0 };

    /// `self` strictly less loaded than `other`: the kernel's
    /// `(s64)other.oh * self.w > (s64)self.oh * other.w`.
    #[inline]
    fn less(&self, other: &Ratio) -> bool {
        i64::from(other.oh) * i64::from(self.w) > i64::from(self.oh) * i64::from(other.w)
    }
}

/// The weighted-least-connection eligibility (`ip_vs_wlc.c`, `__ip_vs_lblc_schedule`,
/// `ip_vs_sed.c`): the first pick needs `!OVERLOAD && weight > 0`; later candidates only need
/// `!OVERLOAD` but a weight-0 one can win only with a negative overhead.
#[inline]
fn wlc_like(d: &Dest, oh: i32) -> Leaf<Ratio> {
    if d.is_overloaded() {
        Leaf::Skip
    } else if d.weight > 0 {
        Leaf::Key(Ratio { oh, w: d.weight })
    } else if d.weight == 0 && oh >= 0 {
        Leaf::Skip
    } else {
        Leaf::Quirk
    }
}

/// `lc`: least `overhead` (unsigned), weight ≠ 0, not OVERLOAD. The key is widened to 64
/// bits so that the sentinel is above every overhead.
#[derive(Debug)]
pub(crate) struct LcPolicy;

impl Policy for LcPolicy {
    type Key = u64;
    const SENTINEL: u64 = u64::MAX;
    #[inline]
    fn classify(d: &Dest) -> Leaf<u64> {
        if d.is_overloaded() || d.weight == 0 {
            Leaf::Skip
        } else {
            Leaf::Key(u64::from(d.overhead()))
        }
    }
    #[inline]
    fn better(a: &u64, b: &u64) -> bool {
        a < b
    }
}

/// `wlc` (and the fallback of lblc/lblcr): least `overhead / weight`.
#[derive(Debug)]
pub(crate) struct WlcPolicy;

impl Policy for WlcPolicy {
    type Key = Ratio;
    const SENTINEL: Ratio = Ratio::SENTINEL;
    #[inline]
    fn classify(d: &Dest) -> Leaf<Ratio> {
        wlc_like(d, conn_overhead(d))
    }
    #[inline]
    fn better(a: &Ratio, b: &Ratio) -> bool {
        a.less(b)
    }
}

/// `sed`: least `(activeconns + 1) / weight`.
#[derive(Debug)]
pub(crate) struct SedPolicy;

impl Policy for SedPolicy {
    type Key = Ratio;
    const SENTINEL: Ratio = Ratio::SENTINEL;
    #[inline]
    fn classify(d: &Dest) -> Leaf<Ratio> {
        wlc_like(d, sed_overhead(d))
    }
    #[inline]
    fn better(a: &Ratio, b: &Ratio) -> bool {
        a.less(b)
    }
}

/// nq key: class 0 = idle (no active connection), 1 = busy with its sed ratio,
/// 2 = the sentinel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NqKey {
    class: u8,
    ratio: Ratio,
}

/// `nq`: the first idle eligible destination, else the sed choice.
#[derive(Debug)]
pub(crate) struct NqPolicy;

impl Policy for NqPolicy {
    type Key = NqKey;
    const SENTINEL: NqKey = NqKey {
        class: 2,
        ratio: Ratio::SENTINEL,
    };
    #[inline]
    fn classify(d: &Dest) -> Leaf<NqKey> {
        if d.is_overloaded() || d.weight == 0 {
            Leaf::Skip
        } else if d.weight < 0 {
            Leaf::Quirk
        } else if d.activeconns == 0 {
            Leaf::Key(NqKey {
                class: 0,
                ratio: Ratio::default(),
            })
        } else {
            Leaf::Key(NqKey {
                class: 1,
                ratio: Ratio {
                    oh: sed_overhead(d),
                    w: d.weight,
                },
            })
        }
    }
    #[inline]
    fn better(a: &NqKey, b: &NqKey) -> bool {
        (a.class < b.class) | ((a.class == 1) & (b.class == 1) & a.ratio.less(&b.ratio))
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Node<K> {
    key: K,
    pos: u32,
}

const SKIP: u8 = 0;
const KEY: u8 = 1;
const QUIRK: u8 = 2;

/// Segment tree over list positions; each internal node holds the better child (ties to the
/// left), so the root is the kernel scan's pick. Ineligible leaves (and the padding up to a
/// power of two) hold the policy's sentinel, which loses to every eligible key, so combining
/// two nodes is a single comparison.
#[derive(Debug)]
pub(crate) struct MinTree<P: Policy> {
    len: usize,
    size: usize,
    nodes: Vec<Node<P::Key>>,
    state: Vec<u8>,
    quirks: usize,
}

impl<P: Policy> Default for MinTree<P> {
    fn default() -> Self {
        MinTree {
            len: 0,
            size: 1,
            nodes: vec![Self::EMPTY; 2],
            state: Vec::new(),
            quirks: 0,
        }
    }
}

impl<P: Policy> MinTree<P> {
    const EMPTY: Node<P::Key> = Node {
        key: P::SENTINEL,
        pos: NONE,
    };

    /// Recompute internal node `i` from its children.
    #[inline]
    fn pull(nodes: &mut [Node<P::Key>], i: usize) {
        let (l, r) = (nodes[2 * i], nodes[2 * i + 1]);
        nodes[i] = if P::better(&r.key, &l.key) { r } else { l };
    }

    #[inline]
    fn leaf(d: &Dest, pos: usize) -> (Node<P::Key>, u8) {
        match P::classify(d) {
            Leaf::Skip => (Self::EMPTY, SKIP),
            Leaf::Quirk => (Self::EMPTY, QUIRK),
            Leaf::Key(key) => (
                Node {
                    key,
                    pos: pos as u32,
                },
                KEY,
            ),
        }
    }

    /// Number of positions indexed.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Rebuild from the whole list (O(n)).
    pub(crate) fn rebuild(&mut self, list: DestList<'_>) {
        self.len = list.len();
        self.size = self.len.next_power_of_two().max(1);
        self.nodes.clear();
        self.nodes.resize(2 * self.size, Self::EMPTY);
        self.state.clear();
        self.quirks = 0;
        for (pos, d) in list.iter().enumerate() {
            let (node, st) = Self::leaf(d, pos);
            self.nodes[self.size + pos] = node;
            self.state.push(st);
            self.quirks += usize::from(st == QUIRK);
        }
        for i in (1..self.size).rev() {
            Self::pull(&mut self.nodes, i);
        }
    }

    /// Refresh position `pos` from the list (O(log n); O(1) when nothing the tree looks at
    /// changed). `pos` must be below [`MinTree::len`].
    #[inline]
    pub(crate) fn update(&mut self, list: DestList<'_>, pos: usize) {
        let (node, st) = Self::leaf(list.get(pos), pos);
        let old = self.state[pos];
        if old != st {
            self.quirks = self.quirks + usize::from(st == QUIRK) - usize::from(old == QUIRK);
            self.state[pos] = st;
        }
        let mut i = self.size + pos;
        if self.nodes[i] == node {
            return;
        }
        self.nodes[i] = node;
        // Walk up carrying the recomputed node in registers: only the sibling is read from
        // memory (at an address known in advance), so a level does not wait on the store of
        // the level below. Plain branches measured faster than branch-free selects here: the
        // comparison outcome is mostly predictable (a destination that just got a connection
        // usually stays the winner in most of its subtrees).
        let mut cur = node;
        while i > 1 {
            let sib = self.nodes[i ^ 1];
            let (l, r) = if i & 1 == 1 { (sib, cur) } else { (cur, sib) };
            cur = if P::better(&r.key, &l.key) { r } else { l };
            i >>= 1;
            if self.nodes[i] == cur {
                break;
            }
            self.nodes[i] = cur;
        }
    }

    /// Some leaf needs the literal scan.
    #[inline]
    pub(crate) fn has_quirks(&self) -> bool {
        self.quirks != 0
    }

    /// The tree's pick (meaningful only without quirks).
    #[inline]
    pub(crate) fn best(&self) -> Option<usize> {
        let r = self.nodes[1].pos;
        (r != NONE).then_some(r as usize)
    }
}

// ------------------------------------------------------------------------------------------
// kernel-literal helpers shared by the schedulers

/// `ip_vs_wlc_schedule` / `__ip_vs_lblc_schedule` / `__ip_vs_lblcr_schedule`, literally.
pub(crate) fn reference_wlc_with(list: DestList<'_>, oh: impl Fn(&Dest) -> i32) -> Option<usize> {
    let mut it = list.iter().enumerate();
    let (mut least, mut lw, mut loh) = loop {
        let (pos, d) = it.next()?;
        if !d.is_overloaded() && d.weight > 0 {
            break (pos, d.weight, oh(d));
        }
    };
    for (pos, d) in it {
        if d.is_overloaded() {
            continue;
        }
        let doh = oh(d);
        if i64::from(loh) * i64::from(d.weight) > i64::from(doh) * i64::from(lw) {
            least = pos;
            lw = d.weight;
            loh = doh;
        }
    }
    Some(least)
}

/// lblc/lblcr `is_overloaded`, literally: `activeconns > weight` and some destination of the
/// service has `activeconns * 2 < weight`.
pub(crate) fn reference_is_overloaded(d: &Dest, list: DestList<'_>) -> bool {
    (d.activeconns as i32) > d.weight && list.iter().any(half_loaded)
}

/// `atomic_read(&d->activeconns) * 2 < atomic_read(&d->weight)` in `int` arithmetic.
#[inline]
fn half_loaded(d: &Dest) -> bool {
    (d.activeconns as i32).wrapping_mul(2) < d.weight
}

// ------------------------------------------------------------------------------------------
// lblc / lblcr: the wlc tree plus the is_overloaded count and an id → position map

#[derive(Clone, Copy, Debug)]
struct PosMeta {
    id: DestId,
    weight: i32,
    half: bool,
}

/// What lblc and lblcr need about the destination list: the wlc pick, the number of
/// destinations with `activeconns * 2 < weight` (for `is_overloaded`), each destination's
/// position by id, and its last reported weight.
#[derive(Debug, Default)]
pub(crate) struct LocalityIndex {
    tree: MinTree<WlcPolicy>,
    pos_of: Vec<u32>,
    meta: Vec<PosMeta>,
    half: usize,
}

impl LocalityIndex {
    /// Positions indexed.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.meta.len()
    }

    /// Rebuild from the list (O(n)).
    pub(crate) fn rebuild(&mut self, list: DestList<'_>) {
        self.tree.rebuild(list);
        for m in &self.meta {
            if let Some(p) = self.pos_of.get_mut(m.id.0 as usize) {
                *p = NONE;
            }
        }
        self.meta.clear();
        self.half = 0;
        for (pos, d) in list.iter().enumerate() {
            let id = list.id(pos);
            let i = id.0 as usize;
            if i >= self.pos_of.len() {
                self.pos_of.resize(i + 1, NONE);
            }
            self.pos_of[i] = pos as u32;
            let half = half_loaded(d);
            self.half += usize::from(half);
            self.meta.push(PosMeta {
                id,
                weight: d.weight,
                half,
            });
        }
    }

    /// Refresh position `pos` (O(log n)).
    #[inline]
    pub(crate) fn update(&mut self, list: DestList<'_>, pos: usize) {
        self.tree.update(list, pos);
        let d = list.get(pos);
        let m = &mut self.meta[pos];
        m.weight = d.weight;
        let half = half_loaded(d);
        if half != m.half {
            m.half = half;
            if half {
                self.half += 1;
            } else {
                self.half -= 1;
            }
        }
    }

    /// Keep the index in step with a change reported by the engine.
    pub(crate) fn sync(&mut self, list: DestList<'_>, pos: usize) {
        if self.len() == list.len() && pos < self.len() && self.meta[pos].id == list.id(pos) {
            self.update(list, pos);
        } else {
            self.rebuild(list);
        }
    }

    /// The wlc pick (`__ip_vs_lblc_schedule`).
    #[inline]
    pub(crate) fn wlc(&self, list: DestList<'_>) -> Option<usize> {
        if self.tree.has_quirks() {
            reference_wlc_with(list, conn_overhead)
        } else {
            self.tree.best()
        }
    }

    /// `is_overloaded(dest, svc)` with the half-loaded count.
    #[inline]
    pub(crate) fn is_overloaded(&self, d: &Dest) -> bool {
        (d.activeconns as i32) > d.weight && self.half != 0
    }

    /// The position of `id` in the list, if it is there (the kernel's AVAILABLE).
    #[inline]
    pub(crate) fn position(&self, list: DestList<'_>, id: DestId) -> Option<usize> {
        let p = *self.pos_of.get(id.0 as usize)? as usize;
        (p < list.len() && list.id(p) == id).then_some(p)
    }

    /// The id and last reported weight at `pos` (before a removal is applied).
    pub(crate) fn meta_at(&self, pos: usize) -> Option<(DestId, i32)> {
        self.meta.get(pos).map(|m| (m.id, m.weight))
    }
}

// ------------------------------------------------------------------------------------------
// lblc / lblcr: the cache table with the kernel's garbage collection

/// `CONFIG_IP_VS_LBLC_TAB_BITS` / `CONFIG_IP_VS_LBLCR_TAB_BITS` (default 10).
pub(crate) const TAB_BITS: u32 = 10;
/// Buckets of the kernel table.
pub(crate) const TAB_SIZE: u32 = 1 << TAB_BITS;
const TAB_MASK: u32 = TAB_SIZE - 1;
/// `CHECK_EXPIRE_INTERVAL`: the GC timer period.
pub(crate) const CHECK_EXPIRE_INTERVAL: Span = Span::secs(60);
/// `ENTRY_TIMEOUT`: idle time after which the over-size GC may drop an entry.
pub(crate) const ENTRY_TIMEOUT: Span = Span::secs(6 * 60);
/// `DEFAULT_EXPIRATION`: the default `lblc_expiration` / `lblcr_expiration` (24 h).
pub(crate) const DEFAULT_EXPIRATION: Span = Span::secs(24 * 60 * 60);
/// `COUNT_FOR_FULL_EXPIRATION`: a full sweep every this many timer runs.
const COUNT_FOR_FULL_EXPIRATION: i32 = 30;
/// `tbl->max_size`.
const MAX_SIZE: i32 = (TAB_SIZE * 16) as i32;

/// `ip_vs_lblc_hashkey` / `ip_vs_lblcr_hashkey`: IPv6 addresses fold their four 32-bit words
/// by XOR, then `hash_32(ntohl(fold), TAB_BITS)`.
#[inline]
pub(crate) fn bucket_of(addr: &IpAddr) -> u32 {
    super::hash::hash_32(super::hash::fold_addr(addr), TAB_BITS)
}

/// A fast hasher for the address-keyed map (FxHash mixing with a murmur3 finaliser, so the
/// low bits hashbrown uses depend on every input bit).
#[derive(Default, Clone, Copy)]
pub(crate) struct AddrHasher(u64);

impl AddrHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for AddrHasher {
    #[inline]
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.add(i as u64);
        self.add((i >> 64) as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
}

/// An entry of an lblc/lblcr table.
pub(crate) trait TableEntry {
    /// `en->lastuse`
    fn lastuse(&self) -> Tick;
}

/// The kernel's `ip_vs_lblc_table` / `ip_vs_lblcr_table`: entries keyed by the packet's
/// destination address, the `entries` counter (kept as the kernel keeps it, including lblc's
/// upward drift on entry replacement), the GC timer with its `rover` and `counter`.
///
/// Lookups go through a hash map; the kernel's bucket of each entry is recomputed when the
/// over-size GC needs to walk buckets in rover order.
#[derive(Debug)]
pub(crate) struct LocalityTable<E> {
    map: HashMap<IpAddr, E, BuildHasherDefault<AddrHasher>>,
    /// `atomic_t entries`
    entries: i32,
    rover: u32,
    counter: i32,
    /// next expiry of the periodic timer; `None` until the first time is seen
    due: Option<Tick>,
}

impl<E> Default for LocalityTable<E> {
    fn default() -> Self {
        LocalityTable {
            map: HashMap::default(),
            entries: 0,
            rover: 0,
            counter: 1,
            due: None,
        }
    }
}

impl<E: TableEntry> LocalityTable<E> {
    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
    /// The kernel's `tbl->entries` counter.
    pub(crate) fn entries_counter(&self) -> i32 {
        self.entries
    }
    /// Look an address up.
    #[inline]
    pub(crate) fn get_mut(&mut self, addr: &IpAddr) -> Option<&mut E> {
        self.map.get_mut(addr)
    }
    /// Look an address up.
    pub(crate) fn get(&self, addr: &IpAddr) -> Option<&E> {
        self.map.get(addr)
    }
    /// Hash a new entry (`ip_vs_lblc_hash`): stores it and increments `entries`.
    /// Any entry already stored under `addr` is replaced without decrementing the counter, as
    /// `ip_vs_lblc_new` deletes the old entry with `ip_vs_lblc_del`, which does not.
    #[inline]
    pub(crate) fn hash(&mut self, addr: IpAddr, e: E) -> Option<E> {
        self.entries = self.entries.wrapping_add(1);
        self.map.insert(addr, e)
    }
    /// Drop everything and stop the timer (`done_service` + `init_service`).
    pub(crate) fn reset(&mut self) {
        *self = LocalityTable::default();
    }
    /// Start the periodic timer at `now` (`init_service`), unless already started.
    pub(crate) fn start_timer(&mut self, now: Tick) {
        self.due.get_or_insert(now + CHECK_EXPIRE_INTERVAL);
    }

    /// Run every timer expiry due at or before `now`, each at its own expiry time, as the
    /// kernel's `ip_vs_lblc(r)_check_expire` would have run. The timer starts at the first
    /// time this table sees.
    #[inline]
    pub(crate) fn run_timer(&mut self, now: Tick, expiration: Span, on_free: &mut impl FnMut(E)) {
        let due = *self.due.get_or_insert(now + CHECK_EXPIRE_INTERVAL);
        if due <= now {
            self.run_timer_slow(now, expiration, on_free);
        }
    }

    #[cold]
    fn run_timer_slow(&mut self, now: Tick, expiration: Span, on_free: &mut impl FnMut(E)) {
        while let Some(due) = self.due.filter(|d| *d <= now) {
            self.check_expire(due, expiration, on_free);
            self.due = Some(due + CHECK_EXPIRE_INTERVAL);
        }
    }

    /// `ip_vs_lblc_check_expire` / `ip_vs_lblcr_check_expire` at time `now`.
    pub(crate) fn check_expire(
        &mut self,
        now: Tick,
        expiration: Span,
        on_free: &mut impl FnMut(E),
    ) {
        if self.counter % COUNT_FOR_FULL_EXPIRATION == 0 {
            // full check: every bucket from rover+1 round to rover, rover unchanged
            self.remove_where(|e| now >= e.lastuse() + expiration, on_free);
            self.counter = 1;
            return;
        }
        if self.entries <= MAX_SIZE {
            self.counter += 1;
            return;
        }
        let mut goal = self.entries.wrapping_sub(MAX_SIZE).wrapping_mul(4) / 3;
        if goal > MAX_SIZE / 2 {
            goal = MAX_SIZE / 2;
        }
        // Buckets are visited from rover+1 on; the walk stops after the first bucket that
        // brings goal to 0 or below, and that bucket becomes the rover. A full round leaves
        // the rover where it was.
        let rover = self.rover;
        let mut expired: Vec<(u32, IpAddr)> = self
            .map
            .iter()
            .filter(|(_, e)| now >= e.lastuse() + ENTRY_TIMEOUT)
            .map(|(a, _)| (bucket_of(a).wrapping_sub(rover + 1) & TAB_MASK, *a))
            .collect();
        expired.sort_unstable_by_key(|(order, _)| *order);
        let mut i = 0;
        while i < expired.len() {
            let order = expired[i].0;
            while i < expired.len() && expired[i].0 == order {
                if let Some(e) = self.map.remove(&expired[i].1) {
                    on_free(e);
                }
                self.entries = self.entries.wrapping_sub(1);
                goal -= 1;
                i += 1;
            }
            if goal <= 0 {
                self.rover = (rover + 1 + order) & TAB_MASK;
                return;
            }
        }
    }

    fn remove_where(&mut self, mut pred: impl FnMut(&E) -> bool, on_free: &mut impl FnMut(E)) {
        let doomed: Vec<IpAddr> = self
            .map
            .iter()
            .filter(|(_, e)| pred(e))
            .map(|(a, _)| *a)
            .collect();
        for a in doomed {
            if let Some(e) = self.map.remove(&a) {
                on_free(e);
            }
            self.entries = self.entries.wrapping_sub(1);
        }
    }

    #[cfg(test)]
    pub(crate) fn gc_state(&self) -> (i32, u32, i32, Option<Tick>) {
        (self.entries, self.rover, self.counter, self.due)
    }
}

/// Destination references held by cache entries (the kernel's `ip_vs_dest_hold` /
/// `ip_vs_dest_put` from lblc/lblcr), so the engine can keep a referenced destination in the
/// trash (and its id unused) as the kernel does.
#[derive(Debug, Default)]
pub(crate) struct DestRefs(Vec<u32>);

impl DestRefs {
    #[inline]
    pub(crate) fn hold(&mut self, id: DestId) {
        let i = id.0 as usize;
        if i >= self.0.len() {
            self.0.resize(i + 1, 0);
        }
        self.0[i] += 1;
    }
    #[inline]
    pub(crate) fn put(&mut self, id: DestId) {
        if let Some(r) = self.0.get_mut(id.0 as usize) {
            *r = r.saturating_sub(1);
        }
    }
    #[inline]
    pub(crate) fn get(&self, id: DestId) -> u32 {
        self.0.get(id.0 as usize).copied().unwrap_or(0)
    }
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }
}

// ------------------------------------------------------------------------------------------
// test helpers

#[cfg(test)]
pub(crate) mod testutil {
    //! Build destination lists from `(weight, activeconns, inactconns, overload)` tuples.

    use std::net::{IpAddr, Ipv4Addr};

    use crate::dest::{Dest, DestId, DestList, Dests, SvcId, DEST_F_AVAILABLE, DEST_F_OVERLOAD};
    use crate::model::{DestConf, Protocol};
    use crate::rng::Rng;
    use crate::sched::{SchedCtx, SchedPacket};
    use crate::time::Tick;

    /// `(weight, activeconns, inactconns, overload)`
    pub(crate) type Spec = (i32, u32, u32, bool);

    /// A service's destinations: the slab plus the list order (index 0 = head).
    #[derive(Debug, Default)]
    pub(crate) struct TestList {
        pub(crate) dests: Dests,
        pub(crate) order: Vec<DestId>,
        next_addr: u32,
    }

    impl TestList {
        /// Destinations in list order (the first tuple is the list head).
        pub(crate) fn new(specs: &[Spec]) -> TestList {
            let mut t = TestList::default();
            for s in specs.iter().rev() {
                t.add_head(*s);
            }
            t
        }
        /// The list view.
        pub(crate) fn list(&self) -> DestList<'_> {
            DestList::new(&self.order, &self.dests)
        }
        /// Insert a new destination at the head (what `ip_vs_add_dest` does).
        pub(crate) fn add_head(&mut self, s: Spec) -> DestId {
            self.next_addr += 1;
            let addr = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + self.next_addr));
            let conf = DestConf::new(addr, 80).weight(s.0);
            let id = self.dests.insert_with(|id| Dest::new(id, SvcId(0), &conf));
            let d = self.dests.get_mut(id).expect("just inserted");
            d.weight = s.0;
            d.activeconns = s.1;
            d.inactconns = s.2;
            if s.3 {
                d.flags |= DEST_F_OVERLOAD;
            }
            self.order.insert(0, id);
            id
        }
        /// Unlink the destination at `pos` into the "trash" (kept in the slab, not
        /// AVAILABLE); returns its id.
        pub(crate) fn remove(&mut self, pos: usize) -> DestId {
            let id = self.order.remove(pos);
            self.dests.get_mut(id).expect("live").flags &= !DEST_F_AVAILABLE;
            id
        }
        /// Revive a trashed destination at the head.
        pub(crate) fn revive(&mut self, id: DestId) {
            self.dests.get_mut(id).expect("in trash").flags |= DEST_F_AVAILABLE;
            self.order.insert(0, id);
        }
        /// Mutable access to the destination at `pos`.
        pub(crate) fn at(&mut self, pos: usize) -> &mut Dest {
            let id = self.order[pos];
            self.dests.get_mut(id).expect("live")
        }
        /// Set the OVERLOAD flag of `pos`.
        pub(crate) fn set_overload(&mut self, pos: usize, on: bool) {
            let d = self.at(pos);
            if on {
                d.flags |= DEST_F_OVERLOAD;
            } else {
                d.flags &= !DEST_F_OVERLOAD;
            }
        }
    }

    /// A TCP packet to `daddr`.
    pub(crate) fn pkt(daddr: IpAddr) -> SchedPacket {
        SchedPacket {
            proto: Protocol::Tcp,
            saddr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            sport: 40000,
            daddr,
            dport: 80,
        }
    }

    /// A context at `now`.
    pub(crate) fn ctx(rng: &mut Rng, now: Tick) -> SchedCtx<'_> {
        SchedCtx {
            now,
            svc_flags: 0,
            rng,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::TestList;
    use super::*;
    use crate::sched::hash::hash_32;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn hash_32_matches_kernel_values() {
        // hash_32(x, 10) = (x * 0x61C88647) >> 22
        assert_eq!(hash_32(0, 10), 0);
        assert_eq!(hash_32(1, 10), 0x61C8_8647 >> 22);
        // 10.0.0.1 = 0x0a000001
        let v = 0x0a00_0001u32.wrapping_mul(0x61C8_8647) >> 22;
        assert_eq!(bucket_of(&IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))), v);
    }

    #[test]
    fn ipv6_fold_xors_the_four_words() {
        let a = Ipv6Addr::new(0x2001, 0x0db8, 0, 1, 0, 0, 0x1234, 0x5678);
        // words 2001:0db8, 0000:0001, 0000:0000, 1234:5678
        let fold = 0x2001_0db8u32 ^ 0x0000_0001 ^ 0x1234_5678;
        assert_eq!(bucket_of(&IpAddr::V6(a)), hash_32(fold, TAB_BITS));
        // an address whose words cancel out lands where 0.0.0.0 does
        let b = Ipv6Addr::new(0xabcd, 0x1234, 0xabcd, 0x1234, 0, 0, 0, 0);
        assert_eq!(bucket_of(&IpAddr::V6(b)), 0);
    }

    #[test]
    fn tree_ties_go_to_the_lower_position() {
        let t = TestList::new(&[
            (0, 0, 0, false),
            (2, 1, 0, false),
            (1, 0, 128, false),
            (4, 2, 0, false),
        ]);
        let mut tree = MinTree::<WlcPolicy>::default();
        tree.rebuild(t.list());
        // 256/2 = 128/1 = 512/4 → first of them, position 1
        assert_eq!(tree.best(), Some(1));
        assert_eq!(reference_wlc_with(t.list(), conn_overhead), Some(1));
    }

    #[test]
    fn tree_update_is_a_noop_when_nothing_changed() {
        let mut t = TestList::new(&[(1, 3, 0, false), (1, 2, 0, false), (1, 5, 0, false)]);
        let mut tree = MinTree::<LcPolicy>::default();
        tree.rebuild(t.list());
        assert_eq!(tree.best(), Some(1));
        tree.update(t.list(), 0);
        tree.update(t.list(), 2);
        assert_eq!(tree.best(), Some(1));
        t.at(1).activeconns = 9;
        tree.update(t.list(), 1);
        assert_eq!(tree.best(), Some(0));
    }

    /// A literal model of the kernel table's GC: 1024 bucket lists, the `entries` counter,
    /// rover and counter, exactly as `ip_vs_lblc.c` walks them.
    struct LiteralTable {
        buckets: Vec<Vec<(IpAddr, Tick)>>,
        entries: i32,
        rover: u32,
        counter: i32,
    }

    impl LiteralTable {
        fn new() -> Self {
            LiteralTable {
                buckets: vec![Vec::new(); TAB_SIZE as usize],
                entries: 0,
                rover: 0,
                counter: 1,
            }
        }
        fn find(&mut self, a: &IpAddr) -> Option<&mut (IpAddr, Tick)> {
            self.buckets[bucket_of(a) as usize]
                .iter_mut()
                .find(|e| e.0 == *a)
        }
        /// lblc_new: delete an existing entry without decrementing, then hash a new one.
        fn insert(&mut self, a: IpAddr, now: Tick) {
            let b = &mut self.buckets[bucket_of(&a) as usize];
            b.retain(|e| e.0 != a);
            b.insert(0, (a, now));
            self.entries += 1;
        }
        fn check_expire(&mut self, now: Tick, exp: Span) {
            if self.counter % 30 == 0 {
                let mut j = self.rover;
                for _ in 0..TAB_SIZE {
                    j = (j + 1) & TAB_MASK;
                    let b = &mut self.buckets[j as usize];
                    let before = b.len();
                    b.retain(|e| now < e.1 + exp);
                    self.entries -= (before - b.len()) as i32;
                }
                self.rover = j;
                self.counter = 1;
                return;
            }
            if self.entries <= MAX_SIZE {
                self.counter += 1;
                return;
            }
            let mut goal = (self.entries - MAX_SIZE) * 4 / 3;
            if goal > MAX_SIZE / 2 {
                goal = MAX_SIZE / 2;
            }
            let mut j = self.rover;
            for _ in 0..TAB_SIZE {
                j = (j + 1) & TAB_MASK;
                let b = &mut self.buckets[j as usize];
                let before = b.len();
                b.retain(|e| now < e.1 + ENTRY_TIMEOUT);
                let removed = (before - b.len()) as i32;
                self.entries -= removed;
                goal -= removed;
                if goal <= 0 {
                    break;
                }
            }
            self.rover = j;
        }
        fn keys(&self) -> Vec<IpAddr> {
            let mut v: Vec<IpAddr> = self.buckets.iter().flatten().map(|e| e.0).collect();
            v.sort();
            v
        }
    }

    #[derive(Debug)]
    struct E(Tick);
    impl TableEntry for E {
        fn lastuse(&self) -> Tick {
            self.0
        }
    }

    /// The over-size GC (rover walk, goal, drifted counter) and the full sweep match the
    /// literal bucket walk over a long random run with more than 16384 entries.
    #[test]
    fn table_gc_matches_literal_bucket_walk() {
        let mut rng = crate::rng::Rng::seeded(7);
        let mut ours: LocalityTable<E> = LocalityTable::default();
        let mut lit = LiteralTable::new();
        let exp = Span::secs(20 * 60);
        let mut now = Tick::from_secs(1);
        ours.start_timer(now);
        let mut due = now + CHECK_EXPIRE_INTERVAL;
        let mut freed = 0usize;
        for step in 0..300u32 {
            // a burst of lookups/inserts at this time
            let burst = if step < 40 { 1500 } else { 200 };
            for _ in 0..burst {
                let a = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | rng.below(40_000)));
                let replace = rng.below(4) == 0;
                match ours.get_mut(&a) {
                    Some(e) if !replace => {
                        e.0 = now;
                        lit.find(&a).expect("same content").1 = now;
                    }
                    _ => {
                        ours.hash(a, E(now));
                        lit.insert(a, now);
                    }
                }
            }
            now = now + Span(rng.below(90_000) as u64);
            while due <= now {
                lit.check_expire(due, exp);
                due = due + CHECK_EXPIRE_INTERVAL;
            }
            ours.run_timer(now, exp, &mut |_| freed += 1);
            let (entries, rover, counter, _) = ours.gc_state();
            assert_eq!(
                (entries, rover, counter),
                (lit.entries, lit.rover, lit.counter),
                "step {step}"
            );
            let mut keys: Vec<IpAddr> = ours.map.keys().copied().collect();
            keys.sort();
            assert_eq!(keys, lit.keys(), "step {step}");
        }
        assert!(freed > 0);
    }
}

/// Per-decision cost at 8, 64 and 1,024 destinations (minimum of several repetitions, so
/// that a loaded machine disturbs it less):
/// `cargo test --release -p rvs-core --lib -- --ignored --nocapture measure_ns_per_decision`
#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a wall-clock measurement, not engine logic
mod measure {
    use std::hint::black_box;
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Instant;

    use super::testutil::{ctx, pkt, TestList};
    use crate::dest::DestList;
    use crate::rng::Rng;
    use crate::sched::lblc::Lblc;
    use crate::sched::lblcr::Lblcr;
    use crate::sched::lc::{Lc, Nq, Sed, Wlc};
    use crate::sched::{DestChange, SchedPacket, Scheduler};
    use crate::time::Tick;

    const ITERS: usize = 400_000;
    const REPS: usize = 7;

    fn list(n: usize, rng: &mut Rng) -> TestList {
        let specs: Vec<_> = (0..n)
            .map(|_| {
                (
                    1 + rng.below(100) as i32,
                    rng.below(50),
                    rng.below(500),
                    false,
                )
            })
            .collect();
        TestList::new(&specs)
    }

    fn min_ns(mut f: impl FnMut() -> f64) -> f64 {
        (0..REPS).map(|_| f()).fold(f64::INFINITY, f64::min)
    }

    struct Row {
        /// `schedule` alone
        sched: f64,
        /// `schedule` + `counts_changed` of the chosen destination (bind)
        bind: f64,
        /// one `counts_changed` of a random destination whose activeconns went down (unbind)
        unbind: f64,
    }

    fn run(s: &mut dyn Scheduler, n: usize) -> Row {
        let mut rng = Rng::seeded(42);
        let mut t = list(n, &mut rng);
        s.dests_changed(t.list(), DestChange::Init);
        let pkts: Vec<SchedPacket> = (0..4096)
            .map(|_| pkt(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | rng.below(1 << 20)))))
            .collect();
        let unbind: Vec<usize> = (0..4096).map(|_| rng.below(n as u32) as usize).collect();
        let mut r2 = Rng::seeded(1);
        let now = Tick::from_secs(1);
        // warm the caches (lblc/lblcr entries for every address)
        for p in &pkts {
            black_box(s.schedule(t.list(), p, &mut ctx(&mut r2, now)));
        }
        let sched = min_ns(|| {
            let start = Instant::now();
            for i in 0..ITERS {
                black_box(s.schedule(t.list(), &pkts[i & 4095], &mut ctx(&mut r2, now)));
            }
            start.elapsed().as_nanos() as f64 / ITERS as f64
        });
        // bind and unbind alternate so the counters stay in a steady state
        let (mut bind, mut unb) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..REPS {
            let mut tb = 0u128;
            let mut tu = 0u128;
            for blk in 0..ITERS / 256 {
                let start = Instant::now();
                for i in 0..256 {
                    let p = &pkts[(blk * 256 + i) & 4095];
                    if let Some(pos) = s.schedule(t.list(), p, &mut ctx(&mut r2, now)) {
                        t.at(pos).activeconns += 1;
                        s.counts_changed(t.list(), pos);
                    }
                }
                tb += start.elapsed().as_nanos();
                let start = Instant::now();
                for i in 0..256 {
                    let u = unbind[(blk * 256 + i) & 4095];
                    let d = t.at(u);
                    if d.activeconns > 0 {
                        d.activeconns -= 1;
                        d.inactconns += 1;
                    }
                    s.counts_changed(t.list(), u);
                }
                tu += start.elapsed().as_nanos();
            }
            bind = bind.min(tb as f64 / ITERS as f64);
            unb = unb.min(tu as f64 / ITERS as f64);
        }
        Row {
            sched,
            bind,
            unbind: unb,
        }
    }

    fn reference(f: fn(DestList<'_>) -> Option<usize>, n: usize) -> f64 {
        let mut rng = Rng::seeded(42);
        let t = list(n, &mut rng);
        let iters = ITERS / 20;
        min_ns(|| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(f(black_box(t.list())));
            }
            start.elapsed().as_nanos() as f64 / iters as f64
        })
    }

    #[test]
    #[ignore]
    fn measure_ns_per_decision() {
        println!(
            "{:6} {:>5} {:>9} {:>12} {:>10} {:>10}",
            "sched", "n", "schedule", "sched+bind", "unbind", "scan"
        );
        for n in [8usize, 64, 1024] {
            type Reference = Option<fn(DestList<'_>) -> Option<usize>>;
            let rows: Vec<(&str, Box<dyn Scheduler>, Reference)> = vec![
                ("lc", Box::new(Lc::default()), Some(Lc::reference_schedule)),
                (
                    "wlc",
                    Box::new(Wlc::default()),
                    Some(Wlc::reference_schedule),
                ),
                (
                    "sed",
                    Box::new(Sed::default()),
                    Some(Sed::reference_schedule),
                ),
                ("nq", Box::new(Nq::default()), Some(Nq::reference_schedule)),
                ("lblc", Box::new(Lblc::default()), None),
                ("lblcr", Box::new(Lblcr::default()), None),
            ];
            for (name, mut s, r) in rows {
                let row = run(s.as_mut(), n);
                let scan = r
                    .map(|f| format!("{:.1}", reference(f, n)))
                    .unwrap_or_default();
                println!(
                    "{name:6} {n:>5} {:>9.1} {:>12.1} {:>10.1} {scan:>10}",
                    row.sched, row.bind, row.unbind
                );
            }
        }
    }
}

//! The connection table (`ip_vs_conn_tab` in `net/netfilter/ipvs/ip_vs_conn.c`): a bounded,
//! seeded hash table of connection entries and persistence templates with a timer per entry.
//!
//! # Hashing and lookups
//! Like the kernel, every entry is hashed by its *client* side `(protocol, caddr, cport)`
//! (templates by the masked client address and port 0; templates of a persistence engine by
//! its data, see `pe_side`); chains are singly linked and new
//! entries go to the head, so the newest of two identical entries is found first. The three
//! lookups follow `ip_vs_conn_in_get`, `ip_vs_conn_out_get` and `ip_vs_ct_in_get` exactly,
//! including the `NO_CPORT` rule (an entry without a client port matches only a lookup with
//! port 0, and a failed lookup is retried with port 0 while such entries exist) and the rule
//! that outbound packets match NAT entries by `daddr:dport` but DR/TUN/local entries by
//! `vaddr:vport`. `ONE_PACKET` entries are never hashed, so no lookup finds them and the
//! listing does not show them. The hash is rvs's own seeded 64-bit mixer (the kernel's
//! `jhash` with a boot-time random value has no observable contract beyond spreading).
//!
//! # Storage
//! Entries live in fixed-size chunks (no reallocation of live entries) addressed by a
//! [`ConnId`]; a chunk's memory is reserved when its first slot is created and written one
//! slot at a time; freed slots are reused LIFO. An entry whose three addresses are IPv4 keeps
//! them inline (96 bytes per entry). When any of them is IPv6, the client address goes to a
//! side slab and the virtual and real-server addresses are interned (a director has few
//! distinct VIPs and real servers, so each costs a 4-byte reference). The bucket array has
//! one `u32` head per bucket; by default there are at least twice as many buckets as the
//! capacity (a power of two), which keeps chains short: a hit touches 1.25 entries on
//! average at full load, and 4–8 bytes per entry buy that. The array starts small and
//! doubles as the table fills, moving a few chains per insert, so that no insert (and no
//! holder of the engine's lock) pays for re-linking the whole table. At 1,000,000 IPv4
//! entries the table allocates about 104 bytes per entry in all.
//!
//! # Timers
//! Each entry carries a [`Link`] into a [`Wheel`] with millisecond resolution; the caller's
//! clock drives [`ConnTable::pop_expired`], and the engine decides what an expiry means.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use thiserror::Error;

use super::entry::{Conn, ConnId, ConnState, ListedConn, TemplateKey};
use super::wheel::{Link, Links, Wheel, MAX_ID, NIL};
use super::{conn_flags, tpl_state};
use crate::model::Protocol;
use crate::pe::PeData;
use crate::time::Tick;

mod pe_side;
use pe_side::PeSide;

/// The table is at its capacity; the entry was not inserted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[error("connection table full")]
pub struct TableFull;

const CHUNK_BITS: u32 = 16;
const CHUNK: usize = 1 << CHUNK_BITS;
const MIN_BUCKETS: usize = 256;
/// `kind` bit: the slot holds an entry.
const LIVE: u8 = 1;
/// `kind` bit: the addresses are in [`SideAddrs`] (`addrs` holds the client slot and the two
/// interned references).
const SIDE: u8 = 2;
/// `kind` bit: a persistence-engine template; its engine and data are in [`PeSide`].
const PE: u8 = 4;
/// Port value of an invalidated template (`htons(0xffff)`).
const INVALID_PORT: u16 = 0xffff;

#[derive(Clone, Copy, Debug)]
struct Slot {
    /// caddr, vaddr, daddr as IPv4, or `[client slot, vaddr ref, daddr ref]` in [`SideAddrs`]
    addrs: [u32; 3],
    /// cport, vport, dport
    ports: [u16; 3],
    proto: u8,
    kind: u8,
    /// next entry in the hash chain, or in the free list
    hnext: u32,
    link: Link,
    st: ConnState,
}

impl Slot {
    const FREE: Slot = Slot {
        addrs: [0; 3],
        ports: [0; 3],
        proto: 0,
        kind: 0,
        hnext: NIL,
        link: Link::UNARMED,
        st: ConnState {
            flags: 0,
            state: 0,
            timeout: 0,
            n_control: 0,
            in_pkts: 0,
            fwmark: 0,
            dest: None,
            control: None,
            svc: None,
        },
    };

    fn addr(&self, side: &SideAddrs, i: usize) -> IpAddr {
        if self.kind & SIDE == 0 {
            IpAddr::V4(Ipv4Addr::from(self.addrs[i]))
        } else {
            side.get(&self.addrs, i)
        }
    }

    fn proto(&self) -> Protocol {
        proto_of(self.proto)
    }

    fn is_masq(&self) -> bool {
        self.st.flags & conn_flags::FWD_MASK == conn_flags::MASQ
    }
}

fn proto_of(n: u8) -> Protocol {
    match n {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        132 => Protocol::Sctp,
        _ => Protocol::Ip,
    }
}

/// Addresses of entries that are not all-IPv4: client addresses in a slab, virtual and
/// real-server addresses interned with reference counts.
#[derive(Clone, Debug, Default)]
struct SideAddrs {
    clients: Vec<IpAddr>,
    clients_free: Vec<u32>,
    interned: Vec<(IpAddr, u32)>,
    interned_free: Vec<u32>,
    by_addr: BTreeMap<IpAddr, u32>,
}

impl SideAddrs {
    fn store(&mut self, c: IpAddr, v: IpAddr, d: IpAddr) -> [u32; 3] {
        let ci = match self.clients_free.pop() {
            Some(i) => {
                self.clients[i as usize] = c;
                i
            }
            None => {
                self.clients.push(c);
                (self.clients.len() - 1) as u32
            }
        };
        [ci, self.intern(v), self.intern(d)]
    }

    fn intern(&mut self, a: IpAddr) -> u32 {
        if let Some(&i) = self.by_addr.get(&a) {
            self.interned[i as usize].1 += 1;
            return i;
        }
        let i = match self.interned_free.pop() {
            Some(i) => {
                self.interned[i as usize] = (a, 1);
                i
            }
            None => {
                self.interned.push((a, 1));
                (self.interned.len() - 1) as u32
            }
        };
        self.by_addr.insert(a, i);
        i
    }

    fn unintern(&mut self, i: u32) {
        let e = &mut self.interned[i as usize];
        e.1 -= 1;
        if e.1 == 0 {
            self.by_addr.remove(&e.0);
            self.interned_free.push(i);
        }
    }

    fn release(&mut self, idx: &[u32; 3]) {
        self.clients_free.push(idx[0]);
        self.unintern(idx[1]);
        self.unintern(idx[2]);
    }

    #[inline]
    fn get(&self, idx: &[u32; 3], i: usize) -> IpAddr {
        match i {
            0 => self.clients[idx[0] as usize],
            _ => self.interned[idx[i] as usize].0,
        }
    }
}

/// The chunked slot storage; implements [`Links`] for the wheel.
#[derive(Clone, Debug, Default)]
struct Store {
    chunks: Vec<Vec<Slot>>,
}

impl Store {
    #[inline]
    fn slot(&self, id: u32) -> &Slot {
        &self.chunks[(id >> CHUNK_BITS) as usize][id as usize & (CHUNK - 1)]
    }
    #[inline]
    fn slot_mut(&mut self, id: u32) -> &mut Slot {
        &mut self.chunks[(id >> CHUNK_BITS) as usize][id as usize & (CHUNK - 1)]
    }
}

impl Links for Store {
    fn link(&self, id: u32) -> &Link {
        &self.slot(id).link
    }
    fn link_mut(&mut self, id: u32) -> &mut Link {
        &mut self.slot_mut(id).link
    }
}

/// 64-bit finaliser (murmur3 `fmix64`): every input bit affects every output bit.
#[inline]
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

#[inline]
fn hash_key(seed: u64, proto: u8, addr: &IpAddr, port: u16) -> u64 {
    let tail = (u64::from(port) << 8) | u64::from(proto);
    match addr {
        IpAddr::V4(a) => mix(seed ^ (u64::from(u32::from(*a)) << 32) ^ tail),
        IpAddr::V6(a) => {
            let bits = u128::from(*a);
            let hi = mix(seed ^ (bits >> 64) as u64);
            mix(hi ^ (bits as u64).rotate_left(24) ^ tail ^ (1 << 63))
        }
    }
}

/// The first 32 bits of an address: all a fwmark template's `vaddr` compares on.
fn first_word(a: &IpAddr) -> u32 {
    match a {
        IpAddr::V4(v) => u32::from(*v),
        IpAddr::V6(v) => (u128::from(*v) >> 96) as u32,
    }
}

/// Old buckets whose chains move to the doubled array per insert: enough that the move
/// ends long before the table can double again (that takes at least half as many inserts as
/// there are old buckets), few enough that no insert does much more work than another.
const MOVE_PER_INSERT: usize = 8;

/// A doubling in progress. The chains of old buckets `0..moved` are in the new array (an
/// old bucket `b` splits into new buckets `b` and `b + old.len()`); the others are still in
/// `old`, and entries whose old bucket has not moved yet are linked there, in front, as
/// before. Each insert moves [`MOVE_PER_INSERT`] old buckets, so no single insert re-links
/// the whole table.
#[derive(Clone, Debug)]
struct Growth {
    old: Box<[u32]>,
    moved: usize,
}

/// A bucket holds its first entry's id plus one, so an empty bucket is 0 (`NIL` + 1 wraps):
/// a new bucket array then comes zeroed from the allocator, its pages untouched until used,
/// instead of being written whole inside the insert that doubles the table.
#[inline]
fn to_bucket(id: u32) -> u32 {
    id.wrapping_add(1)
}

#[inline]
fn from_bucket(v: u32) -> u32 {
    v.wrapping_sub(1)
}

fn empty_buckets(n: usize) -> Box<[u32]> {
    vec![to_bucket(NIL); n].into_boxed_slice()
}

/// Where a chain's head is: an index into the buckets or into the old buckets of a doubling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Head {
    New(usize),
    Old(usize),
}

/// The connection table. See the [`crate::conn`] module documentation.
#[derive(Clone, Debug)]
pub struct ConnTable {
    store: Store,
    /// slots created so far (free or live)
    created: u32,
    free_head: u32,
    len: usize,
    capacity: usize,
    buckets: Box<[u32]>,
    /// the buckets before the last doubling while their chains move over (see [`Growth`])
    growth: Option<Growth>,
    /// the bucket count the table grows to (doubling while it fills)
    max_buckets: usize,
    seed: u64,
    wheel: Wheel,
    side: SideAddrs,
    /// engine data of persistence-engine templates (nothing for plain entries)
    pe: PeSide,
    no_cport: usize,
    full_drops: u64,
}

impl ConnTable {
    /// A table holding at most `capacity` entries, with `seed` for the hash. It starts with
    /// 256 buckets and doubles them whenever it holds more entries than half its buckets, up
    /// to the power of two at or above twice the capacity: a full table has the same short
    /// chains as one allocated whole, and an idle director does not hold megabytes of empty
    /// buckets. A doubling moves the chains of a few buckets per insert (see the module
    /// docs): the longest insert while filling to a million entries takes about 0.3 ms
    /// instead of the 49 ms of moving every chain at once (`cargo bench -p rvs-core --bench
    /// conntable`).
    pub fn new(capacity: usize, seed: u64) -> ConnTable {
        let max = capacity
            .saturating_mul(2)
            .checked_next_power_of_two()
            .unwrap_or(1 << 31)
            .clamp(MIN_BUCKETS, 1 << 31);
        let mut t = ConnTable::with_buckets(capacity, MIN_BUCKETS, seed);
        t.max_buckets = max;
        t
    }

    /// A table with an explicit, fixed bucket count (rounded up to a power of two, at least
    /// 256). The capacity is capped at 2^31 − 1 entries.
    pub fn with_buckets(capacity: usize, buckets: usize, seed: u64) -> ConnTable {
        let buckets = buckets.clamp(MIN_BUCKETS, 1 << 31).next_power_of_two();
        ConnTable {
            store: Store::default(),
            created: 0,
            free_head: NIL,
            len: 0,
            capacity: capacity.min(MAX_ID as usize),
            buckets: empty_buckets(buckets),
            growth: None,
            max_buckets: buckets,
            seed,
            wheel: Wheel::new(),
            side: SideAddrs::default(),
            pe: PeSide::default(),
            no_cport: 0,
            full_drops: 0,
        }
    }

    /// Number of entries (connections and templates, hashed or not).
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Most entries the table accepts.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// Number of hash buckets (after a doubling that is still moving chains, the new count).
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// A doubling of the buckets is moving chains.
    #[cfg(test)]
    pub(super) fn doubling_under_way(&self) -> bool {
        self.growth.is_some()
    }
    /// Inserts refused because the table was full.
    pub fn full_drops(&self) -> u64 {
        self.full_drops
    }

    #[inline]
    fn key_hash(&self, proto: u8, addr: &IpAddr, port: u16) -> u64 {
        hash_key(self.seed, proto, addr, port)
    }

    /// The chain a hash belongs to: in the old buckets while a doubling has not moved its
    /// old bucket yet, else in the buckets.
    #[inline]
    fn head_of(&self, hash: u64) -> Head {
        if let Some(g) = &self.growth {
            let b = hash as usize & (g.old.len() - 1);
            if b >= g.moved {
                return Head::Old(b);
            }
        }
        Head::New(hash as usize & (self.buckets.len() - 1))
    }

    /// The first entry of the chain of `hash` (`NIL` when empty).
    #[inline]
    fn first(&self, hash: u64) -> u32 {
        self.chain(self.head_of(hash))
    }

    /// The first entry of a chain (`NIL` when empty).
    #[inline]
    fn chain(&self, at: Head) -> u32 {
        from_bucket(match at {
            Head::New(b) => self.buckets[b],
            Head::Old(b) => self.growth.as_ref().expect("old bucket while growing").old[b],
        })
    }

    fn set_chain(&mut self, at: Head, id: u32) {
        let v = to_bucket(id);
        match at {
            Head::New(b) => self.buckets[b] = v,
            Head::Old(b) => self.growth.as_mut().expect("old bucket while growing").old[b] = v,
        }
    }

    fn live(&self, id: ConnId) -> Option<&Slot> {
        (id.0 < self.created)
            .then(|| self.store.slot(id.0))
            .filter(|s| s.kind & LIVE != 0)
    }

    fn live_mut(&mut self, id: ConnId) -> Option<&mut Slot> {
        if id.0 >= self.created {
            return None;
        }
        Some(self.store.slot_mut(id.0)).filter(|s| s.kind & LIVE != 0)
    }

    /// Add an entry and arm its timer at `now + conn.st.timeout` (`conn.expires` is ignored).
    /// The entry is hashed unless it is `ONE_PACKET`. When the table is full nothing changes
    /// except [`full_drops`](Self::full_drops).
    pub fn insert(&mut self, conn: Conn, now: Tick) -> Result<ConnId, TableFull> {
        self.insert_entry(conn, None, now)
    }

    fn insert_entry(
        &mut self,
        conn: Conn,
        pe: Option<PeData>,
        now: Tick,
    ) -> Result<ConnId, TableFull> {
        if self.len >= self.capacity {
            self.full_drops += 1;
            return Err(TableFull);
        }
        let id = self.alloc_slot();
        let (addrs, mut kind) = self.encode_addrs(&conn);
        if let Some(pe) = pe {
            kind |= PE;
            self.pe.store(id, pe);
        }
        let slot = self.store.slot_mut(id);
        *slot = Slot {
            addrs,
            ports: [conn.cport, conn.vport, conn.dport],
            proto: conn.proto.number(),
            kind,
            hnext: NIL,
            link: Link::UNARMED,
            st: conn.st,
        };
        slot.st.flags &= !conn_flags::HASHED;
        if conn.st.flags & conn_flags::NO_CPORT != 0 {
            self.no_cport += 1;
        }
        if conn.st.flags & conn_flags::ONE_PACKET == 0 {
            self.hash(id);
        }
        self.len += 1;
        let when = now + crate::time::Span(conn.st.timeout);
        self.wheel.set(&mut self.store, id, when.0);
        Ok(ConnId(id))
    }

    fn alloc_slot(&mut self) -> u32 {
        if self.free_head != NIL {
            let id = self.free_head;
            self.free_head = self.store.slot(id).hnext;
            return id;
        }
        let id = self.created;
        if id as usize & (CHUNK - 1) == 0 {
            // reserved, not written: the pages are touched one slot at a time as slots are
            // created, not all at once inside one insert
            let n = CHUNK.min(self.capacity - id as usize);
            self.store.chunks.push(Vec::with_capacity(n));
        }
        let chunk = self
            .store
            .chunks
            .last_mut()
            .expect("the chunk of a new slot");
        chunk.push(Slot::FREE);
        self.created += 1;
        id
    }

    fn encode_addrs(&mut self, c: &Conn) -> ([u32; 3], u8) {
        if let (IpAddr::V4(a), IpAddr::V4(b), IpAddr::V4(d)) = (c.caddr, c.vaddr, c.daddr) {
            return ([a.into(), b.into(), d.into()], LIVE);
        }
        (self.side.store(c.caddr, c.vaddr, c.daddr), LIVE | SIDE)
    }

    /// The hash an entry is chained by: its protocol and client side, or its engine data for
    /// a persistence-engine template (`ip_vs_conn_hashkey_conn` with `pe->hashkey_raw`).
    fn slot_hash(&self, id: u32) -> u64 {
        let s = self.store.slot(id);
        if s.kind & PE != 0 {
            return self.pe_hash(&self.pe.get(id).data);
        }
        self.key_hash(s.proto, &s.addr(&self.side, 0), s.ports[0])
    }

    /// Start doubling the buckets (see [`Growth`]). Only once the last doubling has ended:
    /// it ends long before the table holds enough entries to double again.
    fn grow(&mut self) {
        debug_assert!(self.growth.is_none(), "a doubling is still moving chains");
        let doubled = empty_buckets(self.buckets.len() * 2);
        let old = std::mem::replace(&mut self.buckets, doubled);
        self.growth = Some(Growth { old, moved: 0 });
    }

    /// Move the chains of the next `n` old buckets of a doubling. The entries of an old
    /// bucket split over its two new buckets (which nothing has been linked to yet) keeping
    /// their relative order, so lookups that find the newest of two equal keys first still do.
    fn move_chains(&mut self, n: usize) {
        let Some(mut g) = self.growth.take() else {
            return;
        };
        let half = g.old.len();
        let end = (g.moved + n).min(half);
        for b in g.moved..end {
            let (mut lo, mut hi) = (NIL, NIL);
            let (mut lo_tail, mut hi_tail) = (NIL, NIL);
            let mut id = from_bucket(std::mem::replace(&mut g.old[b], to_bucket(NIL)));
            while id != NIL {
                let next = self.store.slot(id).hnext;
                self.store.slot_mut(id).hnext = NIL;
                let upper = self.slot_hash(id) as usize & half != 0;
                let (head, tail) = if upper {
                    (&mut hi, &mut hi_tail)
                } else {
                    (&mut lo, &mut lo_tail)
                };
                if *tail == NIL {
                    *head = id;
                } else {
                    self.store.slot_mut(*tail).hnext = id;
                }
                *tail = id;
                id = next;
            }
            self.buckets[b] = to_bucket(lo);
            self.buckets[b + half] = to_bucket(hi);
        }
        g.moved = end;
        if end < half {
            self.growth = Some(g);
        }
    }

    /// Link an entry at the head of its bucket and set `HASHED` (`ip_vs_conn_hash`).
    fn hash(&mut self, id: u32) {
        let full = self.len * 2 > self.buckets.len() && self.buckets.len() < self.max_buckets;
        if full && self.growth.is_none() {
            self.grow();
        }
        self.move_chains(MOVE_PER_INSERT);
        let at = self.head_of(self.slot_hash(id));
        let head = self.chain(at);
        let s = self.store.slot_mut(id);
        s.hnext = head;
        s.st.flags |= conn_flags::HASHED;
        self.set_chain(at, id);
    }

    /// Unlink a hashed entry from its bucket and clear `HASHED`; false if it was not hashed.
    fn unhash(&mut self, id: u32) -> bool {
        let s = self.store.slot(id);
        if s.st.flags & conn_flags::HASHED == 0 {
            return false;
        }
        let next = s.hnext;
        let at = self.head_of(self.slot_hash(id));
        let first = self.chain(at);
        if first == id {
            self.set_chain(at, next);
        } else {
            let mut cur = first;
            while self.store.slot(cur).hnext != id {
                cur = self.store.slot(cur).hnext;
            }
            self.store.slot_mut(cur).hnext = next;
        }
        let s = self.store.slot_mut(id);
        s.hnext = NIL;
        s.st.flags &= !conn_flags::HASHED;
        true
    }

    /// Remove an entry: unhash it, disarm its timer, free its slot, return it.
    pub fn remove(&mut self, id: ConnId) -> Option<Conn> {
        let conn = self.get(id)?;
        self.unhash(id.0);
        self.wheel.cancel(&mut self.store, id.0);
        let s = self.store.slot_mut(id.0);
        if s.kind & SIDE != 0 {
            self.side.release(&s.addrs);
        }
        if s.kind & PE != 0 {
            self.pe.remove(id.0);
        }
        if s.st.flags & conn_flags::NO_CPORT != 0 {
            self.no_cport = self.no_cport.saturating_sub(1);
        }
        *s = Slot::FREE;
        s.hnext = self.free_head;
        self.free_head = id.0;
        self.len -= 1;
        Some(conn)
    }

    /// The entry, by value.
    pub fn get(&self, id: ConnId) -> Option<Conn> {
        let s = self.live(id)?;
        Some(Conn {
            proto: s.proto(),
            caddr: s.addr(&self.side, 0),
            cport: s.ports[0],
            vaddr: s.addr(&self.side, 1),
            vport: s.ports[1],
            daddr: s.addr(&self.side, 2),
            dport: s.ports[2],
            expires: Tick(s.link.expires),
            st: s.st,
        })
    }

    /// The mutable part of an entry, read-only.
    pub fn state(&self, id: ConnId) -> Option<&ConnState> {
        self.live(id).map(|s| &s.st)
    }

    /// The mutable part of an entry (state, timeout, counters, flags, bindings).
    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut ConnState> {
        self.live_mut(id).map(|s| &mut s.st)
    }

    /// Inbound lookup for a packet `caddr:cport → vaddr:vport` (`ip_vs_conn_in_get`).
    pub fn find_in(
        &self,
        proto: Protocol,
        caddr: IpAddr,
        cport: u16,
        vaddr: IpAddr,
        vport: u16,
    ) -> Option<ConnId> {
        let p = proto.number();
        self.find_in_port(p, caddr, cport, vaddr, vport)
            .or_else(|| {
                (self.no_cport > 0 && cport != 0)
                    .then(|| self.find_in_port(p, caddr, 0, vaddr, vport))
                    .flatten()
            })
            .map(ConnId)
    }

    fn find_in_port(&self, p: u8, c: IpAddr, cport: u16, v: IpAddr, vport: u16) -> Option<u32> {
        let want_nocport = cport == 0;
        let matches = |s: &Slot| {
            s.ports[0] == cport
                && s.ports[1] == vport
                && s.proto == p
                && want_nocport == (s.st.flags & conn_flags::NO_CPORT != 0)
        };
        let mut id = self.first(self.key_hash(p, &c, cport));
        if let (IpAddr::V4(c4), IpAddr::V4(v4)) = (c, v) {
            let (c4, v4) = (u32::from(c4), u32::from(v4));
            while id != NIL {
                let s = self.store.slot(id);
                let addrs_eq = if s.kind & SIDE == 0 {
                    s.addrs[0] == c4 && s.addrs[1] == v4
                } else {
                    s.addr(&self.side, 0) == c && s.addr(&self.side, 1) == v
                };
                if addrs_eq && matches(s) {
                    return Some(id);
                }
                id = s.hnext;
            }
            return None;
        }
        while id != NIL {
            let s = self.store.slot(id);
            if matches(s) && s.addr(&self.side, 0) == c && s.addr(&self.side, 1) == v {
                return Some(id);
            }
            id = s.hnext;
        }
        None
    }

    /// Outbound lookup for a packet `saddr:sport → daddr:dport` travelling towards the client
    /// (`ip_vs_conn_out_get`): the destination must be the client; the source must be the real
    /// server (`daddr:dport`) for NAT entries, the virtual service (`vaddr:vport`) otherwise.
    pub fn find_out(
        &self,
        proto: Protocol,
        saddr: IpAddr,
        sport: u16,
        daddr: IpAddr,
        dport: u16,
    ) -> Option<ConnId> {
        let p = proto.number();
        let mut id = self.first(self.key_hash(p, &daddr, dport));
        while id != NIL {
            let s = self.store.slot(id);
            // Deliberate deviation: the kernel's `ip_vs_conn_out_get` does not skip templates,
            // so a reply to client port 0 runs the TCP state machine on a template and wraps
            // the server's InActConn below zero; templates never see packets here.
            let template = s.st.flags & conn_flags::TEMPLATE != 0;
            if s.ports[0] == dport && s.proto == p && !template {
                let (port_i, addr_i) = if s.is_masq() { (2, 2) } else { (1, 1) };
                if s.ports[port_i] == sport
                    && s.addr(&self.side, 0) == daddr
                    && s.addr(&self.side, addr_i) == saddr
                {
                    return Some(ConnId(id));
                }
            }
            id = s.hnext;
        }
        None
    }

    /// Template lookup (`ip_vs_ct_in_get`): a `TEMPLATE` entry with client port 0 and the
    /// key's protocol, client network, virtual port and virtual address (only its first 32
    /// bits for protocol `IP`, where the address holds the fwmark). Persistence-engine
    /// templates are never found here (the kernel hashes them by their engine data, so a
    /// plain lookup does not walk their chains); see [`find_template_pe`](Self::find_template_pe).
    pub fn find_template(&self, key: &TemplateKey) -> Option<ConnId> {
        let p = key.proto.number();
        let mut id = self.first(self.key_hash(p, &key.caddr, 0));
        while id != NIL {
            let s = self.store.slot(id);
            if s.kind & PE == 0 && self.template_matches(s, key) {
                return Some(ConnId(id));
            }
            id = s.hnext;
        }
        None
    }

    /// What a template lookup compares besides engine data (`ip_vs_ct_in_get`, and the `sip`
    /// engine's `ct_match`, which omits only the client port, always 0 on templates).
    fn template_matches(&self, s: &Slot, key: &TemplateKey) -> bool {
        s.ports[0] == 0
            && s.ports[1] == key.vport
            && s.proto == key.proto.number()
            && s.st.flags & conn_flags::TEMPLATE != 0
            && s.addr(&self.side, 0) == key.caddr
            && self.vaddr_matches(s, key)
    }

    fn vaddr_matches(&self, s: &Slot, key: &TemplateKey) -> bool {
        let v = s.addr(&self.side, 1);
        if key.proto == Protocol::Ip {
            first_word(&v) == first_word(&key.vaddr)
        } else {
            v == key.vaddr
        }
    }

    /// Make a template unusable, as `ip_vs_check_template` does when its destination is gone:
    /// rehash it with `cport = 0`, `vport = dport = 0xffff` so no lookup matches it again; it
    /// stays in the table until its timer fires. Returns false if it was already invalidated
    /// or is not hashed.
    pub fn invalidate_template(&mut self, id: ConnId) -> bool {
        match self.live(id) {
            Some(s) if s.ports[1] != INVALID_PORT => {}
            _ => return false,
        }
        if !self.unhash(id.0) {
            return false;
        }
        self.store.slot_mut(id.0).ports = [0, INVALID_PORT, INVALID_PORT];
        self.hash(id.0);
        true
    }

    /// Give a `NO_CPORT` entry its client port and rehash it (`ip_vs_conn_fill_cport`).
    /// Returns false if the entry is not hashed or already has a port.
    pub fn fill_cport(&mut self, id: ConnId, cport: u16) -> bool {
        match self.live(id) {
            Some(s) if s.st.flags & conn_flags::NO_CPORT != 0 => {}
            _ => return false,
        }
        if !self.unhash(id.0) {
            return false;
        }
        let s = self.store.slot_mut(id.0);
        s.st.flags &= !conn_flags::NO_CPORT;
        s.ports[0] = cport;
        self.no_cport = self.no_cport.saturating_sub(1);
        self.hash(id.0);
        true
    }

    /// Mark a template `ASSURED` (`ip_vs_control_assure_ct`); false if `id` is not a template
    /// or was already assured.
    pub fn assure_template(&mut self, id: ConnId) -> bool {
        match self.get_mut(id) {
            Some(st) if st.is_template() && st.state & tpl_state::ASSURED == 0 => {
                st.state |= tpl_state::ASSURED;
                true
            }
            _ => false,
        }
    }

    /// Arm (or re-arm) the entry's timer to fire at `expires`.
    pub fn set_timer(&mut self, id: ConnId, expires: Tick) -> bool {
        if self.live(id).is_none() {
            return false;
        }
        self.wheel.set(&mut self.store, id.0, expires.0);
        true
    }

    /// Re-arm the timer to `now + timeout` after a packet (`ip_vs_conn_put`); a `ONE_PACKET`
    /// entry gets timeout 0 and is due at once.
    pub fn touch(&mut self, id: ConnId, now: Tick) -> bool {
        let Some(st) = self.state(id) else {
            return false;
        };
        let t = if st.flags & conn_flags::ONE_PACKET != 0 {
            0
        } else {
            st.timeout
        };
        self.set_timer(id, now + crate::time::Span(t))
    }

    /// Disarm the entry's timer.
    pub fn cancel_timer(&mut self, id: ConnId) -> bool {
        self.live(id).is_some() && self.wheel.cancel(&mut self.store, id.0)
    }

    /// Make an armed timer due now if it would fire later (`ip_vs_conn_expire_now`).
    pub fn expire_now(&mut self, id: ConnId, now: Tick) -> bool {
        match self.live(id) {
            Some(s) if s.link.is_armed() && s.link.expires > now.0 => self.set_timer(id, now),
            _ => false,
        }
    }

    /// Next entry whose timer is due at `now`, disarmed, in `(expires, id)` order. The entry
    /// stays in the table: the caller re-arms it ([`set_timer`](Self::set_timer)) or removes it.
    pub fn pop_expired(&mut self, now: Tick) -> Option<ConnId> {
        self.wheel.pop_expired(&mut self.store, now.0).map(ConnId)
    }

    /// Earliest time a timer may be due (a lower bound), for scheduling the next call.
    pub fn next_wakeup(&self) -> Option<Tick> {
        self.wheel.next_wakeup(&self.store).map(Tick)
    }

    /// Ids of all entries, in id order (deterministic for a given sequence of operations).
    pub fn ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        (0..self.created)
            .filter(|&i| self.store.slot(i).kind & LIVE != 0)
            .map(ConnId)
    }

    /// All entries by value, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, Conn)> + '_ {
        self.ids().filter_map(|id| self.get(id).map(|c| (id, c)))
    }

    /// What `/proc/net/ip_vs_conn` (and so `ipvsadm -Lnc`) shows at `now`: the hashed entries,
    /// in id order.
    pub fn listing(&self, now: Tick) -> impl Iterator<Item = ListedConn> + '_ {
        self.iter()
            .filter(|(_, c)| c.st.flags & conn_flags::HASHED != 0)
            .map(move |(id, c)| listed(id, &c, self.store.slot(id.0).link, now))
    }
}

fn listed(id: ConnId, c: &Conn, link: Link, now: Tick) -> ListedConn {
    let expire_ms = if link.is_armed() {
        link.expires.saturating_sub(now.0)
    } else {
        0
    };
    ListedConn {
        id,
        proto: c.proto,
        expire_secs: expire_ms / 1000,
        state: c.state_name(),
        client: (c.caddr, c.cport),
        virt: (c.vaddr, c.vport),
        dest: (c.daddr, c.dport),
        flags: c.st.flags,
    }
}

#[cfg(test)]
mod layout {
    #[test]
    fn slot_is_96_bytes() {
        assert_eq!(std::mem::size_of::<super::Slot>(), 96);
    }
}

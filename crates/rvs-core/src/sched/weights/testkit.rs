//! Test support for the list schedulers: a service's destination list that tests edit the way
//! the engine does (telling each scheduler about every change), random operation sequences, and
//! the check that the indexed `schedule` agrees with the kernel-literal `reference_schedule`.

use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::dest::{Dest, DestId, DestList, Dests, SvcId, DEST_F_OVERLOAD};
use crate::model::{DestConf, Protocol};
use crate::rng::Rng;
use crate::sched::{DestChange, SchedCtx, SchedPacket, Scheduler};
use crate::time::Tick;

/// One service's destinations plus the slab that holds them.
pub struct World {
    pub dests: Dests,
    pub order: Vec<DestId>,
    next_host: u32,
}

impl World {
    pub fn new() -> World {
        World {
            dests: Dests::default(),
            order: Vec::new(),
            next_host: 1,
        }
    }

    pub fn list(&self) -> DestList<'_> {
        DestList::new(&self.order, &self.dests)
    }

    pub fn dest_mut(&mut self, pos: usize) -> &mut Dest {
        self.dests.get_mut(self.order[pos]).expect("live")
    }

    /// `ipvsadm -a … -w weight`: the new destination goes to the list head.
    pub fn add(&mut self, weight: i32, scheds: &mut [&mut dyn Scheduler]) -> DestId {
        let addr = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + self.next_host));
        self.next_host += 1;
        let conf = DestConf::new(addr, 80).weight(weight);
        let id = self.dests.insert_with(|id| Dest::new(id, SvcId(0), &conf));
        self.order.insert(0, id);
        for s in scheds.iter_mut() {
            s.dests_changed(self.list(), DestChange::Added { pos: 0 });
        }
        id
    }

    /// `ipvsadm -d`: unlink the destination at `pos`.
    pub fn remove(&mut self, pos: usize, scheds: &mut [&mut dyn Scheduler]) {
        let id = self.order.remove(pos);
        self.dests.remove(id);
        let change = DestChange::Removed { old_pos: pos, id };
        for s in scheds.iter_mut() {
            s.dests_changed(self.list(), change);
        }
    }

    /// `ipvsadm -e … -w weight` (like the kernel, this clears OVERLOAD: no thresholds here).
    pub fn edit(&mut self, pos: usize, weight: i32, scheds: &mut [&mut dyn Scheduler]) {
        let d = self.dest_mut(pos);
        let conf = d.conf();
        d.apply_conf(&DestConf { weight, ..conf });
        for s in scheds.iter_mut() {
            s.dests_changed(self.list(), DestChange::Updated { pos });
        }
    }

    /// Set or clear OVERLOAD as the threshold logic would.
    pub fn overload(&mut self, pos: usize, on: bool, scheds: &mut [&mut dyn Scheduler]) {
        let d = self.dest_mut(pos);
        if on {
            d.flags |= DEST_F_OVERLOAD;
        } else {
            d.flags &= !DEST_F_OVERLOAD;
        }
        self.touch(pos, scheds);
    }

    /// Set the connection counters of the destination at `pos`.
    pub fn counts(&mut self, pos: usize, act: u32, inact: u32, scheds: &mut [&mut dyn Scheduler]) {
        let d = self.dest_mut(pos);
        d.activeconns = act;
        d.inactconns = inact;
        self.touch(pos, scheds);
    }

    /// Report a (possibly empty) counter change at `pos`.
    pub fn touch(&mut self, pos: usize, scheds: &mut [&mut dyn Scheduler]) {
        for s in scheds.iter_mut() {
            s.counts_changed(self.list(), pos);
        }
    }

    /// Bind the schedulers to the service as it is now.
    pub fn init(&self, scheds: &mut [&mut dyn Scheduler]) {
        for s in scheds.iter_mut() {
            s.dests_changed(self.list(), DestChange::Init);
        }
    }
}

/// A SYN from a client (the list schedulers ignore it).
pub fn packet() -> SchedPacket {
    let a = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    SchedPacket {
        proto: Protocol::Tcp,
        saddr: a,
        sport: 40000,
        daddr: a,
        dport: 80,
    }
}

/// One decision through the scheduler's `schedule`.
pub fn pick(w: &World, s: &mut dyn Scheduler, rng: &mut Rng) -> Option<usize> {
    let mut ctx = SchedCtx {
        now: Tick::ZERO,
        svc_flags: 0,
        rng,
    };
    s.schedule(w.list(), &packet(), &mut ctx)
}

/// `n` decisions with a fixed seed.
pub fn picks(w: &World, s: &mut dyn Scheduler, n: usize) -> Vec<Option<usize>> {
    let mut rng = Rng::seeded(1);
    (0..n).map(|_| pick(w, s, &mut rng)).collect()
}

/// One step of a random scenario. Positions are reduced modulo the list length.
#[derive(Clone, Debug)]
pub enum Op {
    Add(i32),
    Remove(usize),
    Edit(usize, i32),
    Overload(usize, bool),
    Counts(usize, u32, u32),
    Touch(usize),
    Init,
    Schedule(u8),
}

fn weight() -> impl Strategy<Value = i32> {
    prop::sample::select(vec![0, 1, 1, 2, 2, 3, 4, 6, 8, 12, 100])
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => weight().prop_map(Op::Add),
        1 => any::<usize>().prop_map(Op::Remove),
        2 => (any::<usize>(), weight()).prop_map(|(p, w)| Op::Edit(p, w)),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(p, o)| Op::Overload(p, o)),
        2 => (any::<usize>(), 0u32..14, 0u32..14).prop_map(|(p, a, i)| Op::Counts(p, a, i)),
        1 => any::<usize>().prop_map(Op::Touch),
        1 => Just(Op::Init),
        4 => (1u8..24).prop_map(Op::Schedule),
    ]
}

/// A weight multiplier (so that gcds above 1 are common) and a list of operations.
pub fn scenario() -> impl Strategy<Value = (i32, Vec<Op>)> {
    (
        prop::sample::select(vec![1, 1, 2, 3]),
        prop::collection::vec(op(), 1..150),
    )
}

impl World {
    /// Apply `op`; returns how many decisions to take afterwards.
    fn apply(&mut self, op: &Op, scale: i32, s: &mut [&mut dyn Scheduler]) -> usize {
        let n = self.order.len();
        match *op {
            Op::Add(w) => {
                self.add(w * scale, s);
            }
            Op::Init => self.init(s),
            Op::Schedule(k) => return usize::from(k),
            _ if n == 0 => {}
            Op::Remove(p) => self.remove(p % n, s),
            Op::Edit(p, w) => self.edit(p % n, w * scale, s),
            Op::Overload(p, on) => self.overload(p % n, on, s),
            Op::Counts(p, a, i) => self.counts(p % n, a, i, s),
            Op::Touch(p) => self.touch(p % n, s),
        }
        1
    }
}

/// A scheduler's kernel-literal decision function.
pub type RefFn<S> = fn(&mut S, DestList<'_>, &SchedPacket, &mut SchedCtx<'_>) -> Option<usize>;

/// Run `ops` against two instances of `S`, deciding with `schedule` on one and `reference` on
/// the other after every operation; both answers and both states must stay equal.
pub fn check_agreement<S>(
    scale: i32,
    ops: &[Op],
    seed: u64,
    reference: RefFn<S>,
) -> Result<(), TestCaseError>
where
    S: Scheduler + Default + PartialEq,
{
    let mut w = World::new();
    let (mut fast, mut slow) = (S::default(), S::default());
    w.init(&mut [&mut fast, &mut slow]);
    let (mut rf, mut rs) = (Rng::seeded(seed), Rng::seeded(seed));
    for (step, op) in ops.iter().enumerate() {
        let times = w.apply(op, scale, &mut [&mut fast, &mut slow]);
        for _ in 0..times {
            let a = pick(&w, &mut fast, &mut rf);
            let mut ctx = SchedCtx {
                now: Tick::ZERO,
                svc_flags: 0,
                rng: &mut rs,
            };
            let b = reference(&mut slow, w.list(), &packet(), &mut ctx);
            prop_assert_eq!(a, b, "step {} after {:?}", step, op);
            prop_assert_eq!(&fast, &slow, "state after step {}", step);
            prop_assert_eq!(rf.clone().next_u64(), rs.clone().next_u64());
        }
    }
    Ok(())
}

//! One scheduling decision, for every scheduler, at 8, 64 and 1,024 real servers.
//!
//! Each iteration is what the engine does per new connection in steady state: ask the
//! scheduler, bind a connection to the chosen server (its counters change and the scheduler is
//! told), and let the oldest of 4,096 outstanding connections go (the counters of its server
//! change again). Clients come from 4,096 addresses and ports, destinations (for dh / lblc /
//! lblcr) from 256 addresses, so hashing and locality schedulers see realistic key spreads.
//!
//! `cargo bench -p rvs-core --bench sched`

use std::collections::VecDeque;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rvs_core::dest::{Dest, DestId, Dests, SvcId};
use rvs_core::model::{DestConf, Forward, Protocol};
use rvs_core::rng::Rng;
use rvs_core::sched::{new_scheduler, DestChange, SchedCtx, SchedPacket, Scheduler, SCHEDULERS};
use rvs_core::time::Tick;

const OUTSTANDING: usize = 4096;

struct Setup {
    dests: Dests,
    order: Vec<DestId>,
    sched: Box<dyn Scheduler>,
    packets: Vec<SchedPacket>,
    live: VecDeque<(DestId, bool)>,
    rng: Rng,
}

fn setup(name: &str, n: usize) -> Setup {
    let mut dests = Dests::default();
    let mut order = Vec::new();
    let mut sched = new_scheduler(name).expect("known scheduler");
    for i in 0..n {
        let addr = IpAddr::V4(Ipv4Addr::from(0x0a01_0000 + i as u32));
        let conf = DestConf::new(addr, 80)
            .fwd(Forward::Masq)
            .weight(1 + (i % 4) as i32);
        let id = dests.insert_with(|id| Dest::new(id, SvcId(0), &conf));
        order.insert(0, id);
        for (pos, did) in order.iter().enumerate() {
            dests.get_mut(*did).unwrap().pos = pos;
        }
        sched.dests_changed(dests.list(&order), DestChange::Added { pos: 0 });
    }
    let packets = (0..4096u32)
        .map(|i| SchedPacket {
            proto: Protocol::Tcp,
            saddr: IpAddr::V4(Ipv4Addr::from(
                0xc0a8_0000 + i.wrapping_mul(2_654_435_761) % 65_536,
            )),
            sport: 1024 + (i % 60_000) as u16,
            daddr: IpAddr::V4(Ipv4Addr::from(0xc0a8_3c00 + (i % 256))),
            dport: 80,
        })
        .collect();
    Setup {
        dests,
        order,
        sched,
        packets,
        live: VecDeque::with_capacity(OUTSTANDING + 1),
        rng: Rng::seeded(7),
    }
}

impl Setup {
    /// One decision plus the counter updates it causes.
    fn decide(&mut self, i: usize) -> Option<usize> {
        let pkt = &self.packets[i % self.packets.len()];
        let mut ctx = SchedCtx {
            now: Tick(i as u64),
            svc_flags: 0,
            rng: &mut self.rng,
        };
        let pos = self
            .sched
            .schedule(self.dests.list(&self.order), pkt, &mut ctx);
        if let Some(p) = pos {
            let id = self.order[p];
            let active = !i.is_multiple_of(3);
            self.bump(id, active, true);
            self.live.push_back((id, active));
        }
        if self.live.len() > OUTSTANDING {
            let (id, active) = self.live.pop_front().expect("non-empty");
            self.bump(id, active, false);
        }
        pos
    }

    fn bump(&mut self, id: DestId, active: bool, up: bool) {
        let d = self.dests.get_mut(id).expect("live");
        let c = if active {
            &mut d.activeconns
        } else {
            &mut d.inactconns
        };
        *c = if up { *c + 1 } else { *c - 1 };
        let pos = d.pos;
        self.sched.counts_changed(self.dests.list(&self.order), pos);
    }
}

fn bench_schedulers(c: &mut Criterion) {
    let mut group = c.benchmark_group("decision");
    group.throughput(Throughput::Elements(1));
    for name in SCHEDULERS {
        for n in [8usize, 64, 1024] {
            let mut s = setup(name, n);
            for i in 0..OUTSTANDING * 2 {
                s.decide(i);
            }
            let mut i = 0usize;
            group.bench_with_input(BenchmarkId::new(*name, n), &n, |b, _| {
                b.iter(|| {
                    i = i.wrapping_add(1);
                    black_box(s.decide(i))
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_millis(800));
    targets = bench_schedulers
}
criterion_main!(benches);

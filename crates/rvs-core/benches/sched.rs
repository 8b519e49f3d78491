//! One scheduling decision, for every scheduler, at 8, 64 and 1,024 real servers.
//!
//! `decision/<sched>/<n>` times what the engine does when a new connection arrives: ask the
//! scheduler, then bind the connection to the chosen server (its counters change and the
//! scheduler's index is told). `release/<sched>/<n>` times the other half of a connection's
//! life: the oldest of 4,096 outstanding connections goes and its server's index entry is
//! updated. Both run interleaved in blocks of 256 so the load stays steady; only the half being
//! measured is timed. Clients come from 4,096 addresses and ports, destinations (for dh / lblc
//! / lblcr) from 256 addresses, so hashing and locality schedulers see realistic key spreads.
//!
//! `cargo bench -p rvs-core --bench sched`

use std::collections::VecDeque;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rvs_core::dest::{Dest, DestId, Dests, SvcId};
use rvs_core::model::{DestConf, Forward, Protocol};
use rvs_core::rng::Rng;
use rvs_core::sched::{new_scheduler, DestChange, SchedCtx, SchedPacket, Scheduler, SCHEDULERS};
use rvs_core::time::Tick;

const OUTSTANDING: usize = 4096;
const BLOCK: usize = 256;

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
    /// One decision and the bind it causes.
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
        pos
    }

    /// The oldest connection ends.
    fn release(&mut self) {
        if let Some((id, active)) = self.live.pop_front() {
            self.bump(id, active, false);
        }
    }

    /// Run `iters` decisions and as many releases in blocks, timing one of the two halves.
    // A benchmark measures time; the core itself never reads a clock.
    #[allow(clippy::disallowed_methods)]
    fn timed(&mut self, start: &mut usize, iters: u64, time_decisions: bool) -> Duration {
        let mut total = Duration::ZERO;
        let mut left = iters as usize;
        while left > 0 {
            let n = left.min(BLOCK);
            let t = Instant::now();
            if time_decisions {
                for k in 0..n {
                    black_box(self.decide(*start + k));
                }
                total += t.elapsed();
                for _ in 0..n {
                    self.release();
                }
            } else {
                for _ in 0..n {
                    self.release();
                }
                total += t.elapsed();
                for k in 0..n {
                    black_box(self.decide(*start + k));
                }
            }
            *start += n;
            left -= n;
        }
        total
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
    for (group_name, decisions) in [("decision", true), ("release", false)] {
        let mut group = c.benchmark_group(group_name);
        group.throughput(Throughput::Elements(1));
        for name in SCHEDULERS {
            for n in [8usize, 64, 1024] {
                let mut s = setup(name, n);
                for i in 0..OUTSTANDING {
                    s.decide(i);
                }
                let mut i = OUTSTANDING;
                group.bench_with_input(BenchmarkId::new(*name, n), &n, |b, _| {
                    b.iter_custom(|iters| s.timed(&mut i, iters, decisions))
                });
            }
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_millis(800));
    targets = bench_schedulers
}
// (criterion's own timing reads the clock too; that is outside the core)
criterion_main!(benches);

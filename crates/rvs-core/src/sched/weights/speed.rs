//! Per-decision timing of the list schedulers (indexed `schedule` against the kernel-literal
//! `reference_schedule`). Ignored by default; run with
//! `cargo test --release -p rvs-core decision_speed -- --ignored --nocapture`.
//!
//! The one place in rvs-core that reads a clock: a test-only, ignored timing harness, never
//! part of the library (the crate's clippy.toml forbids `Instant::now`, hence the allow).
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::time::Instant;

use super::testkit::{packet, World};
use crate::rng::Rng;
use crate::sched::{fo::Fo, ovf::Ovf, rr::Rr, twos::Twos, wrr::Wrr};
use crate::sched::{SchedCtx, SchedPacket, Scheduler};
use crate::time::Tick;

type Decide<S> =
    fn(&mut S, crate::dest::DestList<'_>, &SchedPacket, &mut SchedCtx<'_>) -> Option<usize>;

/// A list of `n` destinations shaped as `shape` says:
/// * `even`: weights 1..=5, all usable;
/// * `skewed`: one server of weight 1000 in the middle, the others weight 1;
/// * `skewed-ovl`: the same with the heavy server OVERLOADed;
/// * `sparse`: one usable server (weight 1) every 64 positions, the others in alternating runs
///   of 8 quiescent (weight 0) and 8 OVERLOADed servers;
/// * `lone`: only the last server usable.
fn build(shape: &str, n: usize) -> World {
    let mut w = World::new();
    for _ in 0..n {
        w.add(1, &mut []);
    }
    let stride = n.min(64);
    for p in 0..n {
        let usable = match shape {
            "sparse" => p % stride == stride - 1,
            "lone" => p == n - 1,
            _ => true,
        };
        let weight = match shape {
            "even" => 1 + (p % 5) as i32,
            "skewed" | "skewed-ovl" if p == n / 2 => 1000,
            "sparse" | "lone" if !usable && (p / 8) % 2 == 0 => 0,
            _ => 1,
        };
        w.edit(p, weight, &mut []);
        let overloaded = (shape == "skewed-ovl" && p == n / 2) || (!usable && weight > 0);
        w.overload(p, overloaded, &mut []);
    }
    w
}

/// Mean ns per decision over `iters` consecutive decisions (long enough to cover whole wrr
/// cycles); the best of 5 runs, because the machine is shared.
fn time<S: Scheduler + Default>(w: &World, decide: Decide<S>, iters: u32) -> f64 {
    let mut s = S::default();
    w.init(&mut [&mut s]);
    let mut rng = Rng::seeded(7);
    let pkt = packet();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..iters {
            let mut ctx = SchedCtx {
                now: Tick::ZERO,
                svc_flags: 0,
                rng: &mut rng,
            };
            black_box(decide(&mut s, w.list(), &pkt, &mut ctx));
        }
        best = best.min(start.elapsed().as_nanos() as f64 / f64::from(iters));
    }
    best
}

fn fast<S: Scheduler>(
    s: &mut S,
    l: crate::dest::DestList<'_>,
    p: &SchedPacket,
    c: &mut SchedCtx<'_>,
) -> Option<usize> {
    s.schedule(l, p, c)
}

fn row<S: Scheduler + Default>(name: &str, shape: &str, reference: Decide<S>) {
    let mut line = format!("{name:5} {shape:10}");
    for n in [8, 64, 1024] {
        let w = build(shape, n);
        let f = time::<S>(&w, fast::<S>, 200_000);
        let r = time::<S>(&w, reference, 20_000);
        line += &format!(" | n={n:4}: {f:6.1} ns (kernel walk {r:8.1})");
    }
    eprintln!("{line}");
}

/// Cost of `counts_changed` when the destination's leaf flips every call (ovf).
fn counts_flip_cost(n: usize) -> f64 {
    let mut w = build("even", n);
    let mut s = Ovf::default();
    w.init(&mut [&mut s]);
    let p = n / 3;
    let weight = w.list().get(p).weight as u32;
    let iters = 400_000u32;
    let start = Instant::now();
    for i in 0..iters {
        w.dest_mut(p).activeconns = weight + (i & 1);
        s.counts_changed(w.list(), black_box(p));
    }
    start.elapsed().as_nanos() as f64 / f64::from(iters)
}

#[test]
#[ignore = "timing; run in release with --ignored --nocapture"]
fn decision_speed() {
    for shape in ["even", "skewed", "skewed-ovl", "sparse", "lone"] {
        row::<Rr>("rr", shape, Rr::reference_schedule);
        row::<Wrr>("wrr", shape, Wrr::reference_schedule);
        row::<Fo>("fo", shape, Fo::reference_schedule);
        row::<Ovf>("ovf", shape, Ovf::reference_schedule);
        row::<Twos>("twos", shape, Twos::reference_schedule);
    }
    for n in [8, 64, 1024] {
        eprintln!(
            "ovf counts_changed with a flipping leaf, n={n}: {:.1} ns",
            counts_flip_cost(n)
        );
    }
}

fn per_iter(start: Instant, iters: u32) -> f64 {
    start.elapsed().as_nanos() as f64 / f64::from(iters)
}

#[test]
#[ignore = "timing"]
fn twos_parts() {
    let mut rng = Rng::seeded(3);
    let iters = 2_000_000u32;
    let start = Instant::now();
    for _ in 0..iters {
        black_box(rng.below(black_box(3001)));
    }
    eprintln!("below: {:.1} ns", per_iter(start, iters));
    let w = build("even", 1024);
    let mut t = super::SumTree::default();
    t.rebuild(w.list(), super::open_weight);
    let total = t.total();
    let targets: Vec<u64> = (0..4096u64)
        .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20) % total + 1)
        .collect();
    let start = Instant::now();
    for i in 0..iters as usize {
        black_box(t.first_reaching(targets[i & 4095]));
    }
    eprintln!("fenwick descent: {:.1} ns", per_iter(start, iters));
    let start = Instant::now();
    for i in 0..iters as usize {
        black_box(t.first_reaching_pair(targets[i & 4095], targets[(i + 7) & 4095]));
    }
    eprintln!("fenwick pair, random: {:.1} ns", per_iter(start, iters));
    let start = Instant::now();
    for _ in 0..iters {
        black_box(t.first_reaching_pair(black_box(targets[5]), black_box(targets[9])));
    }
    eprintln!("fenwick pair, fixed: {:.1} ns", per_iter(start, iters));
    let start = Instant::now();
    for i in 0..iters as usize {
        let (a, b) = t.first_reaching_pair(targets[i & 4095], targets[(i + 7) & 4095]);
        black_box((w.list().get(a).overhead(), w.list().get(b).overhead()));
    }
    eprintln!("pair + 2 dest reads: {:.1} ns", per_iter(start, iters));
}

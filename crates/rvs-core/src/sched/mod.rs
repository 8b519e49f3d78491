//! The IPVS schedulers (`net/netfilter/ipvs/ip_vs_<name>.c`), one type per algorithm.
//!
//! A scheduler is bound to one service. The engine tells it about configuration changes of
//! the destination list ([`Scheduler::dests_changed`]) and, on the hot path, about changes of a
//! destination's connection counters or OVERLOAD flag ([`Scheduler::counts_changed`]), and
//! asks it to pick a destination for each new connection ([`Scheduler::schedule`]).
//!
//! Every scheduler must pick exactly what the kernel's would pick for the same list order,
//! weights, counters and flags. Schedulers whose kernel version scans the whole list keep an
//! index so a decision stays O(log n); each such scheduler also keeps the kernel-literal scan
//! (`reference_*`) and a property test proves both agree.

use std::fmt;
use std::net::IpAddr;

use crate::dest::{DestId, DestList};
use crate::error::IpvsError;
use crate::model::Protocol;
use crate::rng::Rng;
use crate::time::Tick;

pub mod dh;
pub mod fo;
pub mod hash;
pub mod index;
pub mod lblc;
pub mod lblcr;
pub mod lc;
pub mod mh;
pub mod ovf;
pub mod rr;
pub mod sh;
pub mod twos;
pub mod weights;
pub mod wrr;

/// What a scheduler may look at in the packet that opens a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedPacket {
    /// transport protocol of the packet
    pub proto: Protocol,
    /// client address
    pub saddr: IpAddr,
    /// client port
    pub sport: u16,
    /// destination (virtual) address of the packet
    pub daddr: IpAddr,
    /// destination port of the packet
    pub dport: u16,
}

/// Per-decision context: the caller's clock, the service flags, injected randomness.
pub struct SchedCtx<'r> {
    /// now
    pub now: Tick,
    /// the service's `IP_VS_SVC_F_*` flags (sh-port, mh-fallback, …)
    pub svc_flags: u32,
    /// randomness (twos)
    pub rng: &'r mut Rng,
}

/// A change of a service's destination list, as the kernel's `add_dest`/`del_dest`/`upd_dest`
/// callbacks see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestChange {
    /// The scheduler was just bound to the service (`init_service`): build state from scratch.
    Init,
    /// A destination was inserted (at the head: position 0) or revived from the trash.
    Added {
        /// its position in the new list
        pos: usize,
    },
    /// A destination was unlinked; the list no longer holds it.
    Removed {
        /// the position it had before removal
        old_pos: usize,
        /// its id
        id: DestId,
    },
    /// A destination's weight, thresholds or method were edited (`-e`).
    Updated {
        /// its position
        pos: usize,
    },
}

/// One scheduling algorithm bound to one service.
pub trait Scheduler: Send + fmt::Debug {
    /// The kernel name (`rr`, `wlc`, …).
    fn name(&self) -> &'static str;

    /// The destination list changed by configuration. The list passed is the list *after* the
    /// change.
    fn dests_changed(&mut self, list: DestList<'_>, change: DestChange);

    /// A destination's `activeconns`/`inactconns` or OVERLOAD flag changed (hot path).
    fn counts_changed(&mut self, _list: DestList<'_>, _pos: usize) {}

    /// Whether the scheduler's own state still references destination `id` (lblc/lblcr cache
    /// entries hold their destination, as `ip_vs_dest_hold` does in the kernel). The engine
    /// keeps a deleted destination in the trash while this is true, so a later re-add revives
    /// the same object instead of a new one taking its place in the cache.
    fn holds(&self, _id: DestId) -> bool {
        false
    }

    /// The bucket table of a scheduler that picks by a hash of the packet (sh, dh, mh): for each
    /// bucket, the list position it holds (`None`: empty). A data plane that hashes packets
    /// itself (XDP) takes the table over and makes the same choice; other schedulers have
    /// none.
    fn table(&self) -> Option<Vec<Option<usize>>> {
        None
    }

    /// The choices of the next whole cycle of a scheduler that picks by its own state alone
    /// (rr, wrr), as list positions, without moving that state. The cycle repeats as long as
    /// the list, weights and overload flags stay: a data plane that schedules itself (XDP)
    /// takes the sequence in turn. Empty when no server can be chosen; `None` for
    /// schedulers that depend on the packet or on connection counts.
    fn sequence(&self, _list: DestList<'_>) -> Option<Vec<usize>> {
        None
    }

    /// Periodic housekeeping (lblc/lblcr table expiry); the engine calls it at least once a
    /// minute with the current time.
    fn housekeeping(&mut self, _list: DestList<'_>, _now: Tick) {}

    /// Pick the destination for a new connection: its list position, or `None` when no
    /// destination is available (the kernel's "no destination available").
    fn schedule(
        &mut self,
        list: DestList<'_>,
        pkt: &SchedPacket,
        ctx: &mut SchedCtx<'_>,
    ) -> Option<usize>;
}

/// The next `n` choices of `s` (rr, wrr: they ignore the packet and the context), made on a
/// copy, stopping early if no server can be chosen.
fn peek<S: Scheduler + Clone>(s: &S, list: DestList<'_>, n: usize) -> Vec<usize> {
    let mut copy = s.clone();
    let mut rng = Rng::seeded(0);
    let mut ctx = SchedCtx {
        now: Tick::ZERO,
        svc_flags: 0,
        rng: &mut rng,
    };
    let any = IpAddr::from([0, 0, 0, 0]);
    let pkt = SchedPacket {
        proto: Protocol::Tcp,
        saddr: any,
        sport: 0,
        daddr: any,
        dport: 0,
    };
    (0..n)
        .map_while(|_| copy.schedule(list, &pkt, &mut ctx))
        .collect()
}

/// Whether rr/wrr may choose `d` (a positive weight, OVERLOAD clear).
fn choosable(d: &crate::dest::Dest) -> bool {
    d.weight > 0 && !d.is_overloaded()
}

/// Names the kernel knows, in ipvsadm's help order (plus `twos`, newer than ipvsadm 1.31).
pub const SCHEDULERS: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos",
];

/// The special scheduler name `none`: a service without a scheduler; every new connection
/// finds no destination.
#[derive(Debug, Default)]
pub struct NoScheduler;

impl Scheduler for NoScheduler {
    fn name(&self) -> &'static str {
        "none"
    }
    fn dests_changed(&mut self, _list: DestList<'_>, _change: DestChange) {}
    fn schedule(
        &mut self,
        _: DestList<'_>,
        _: &SchedPacket,
        _: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        None
    }
}

/// Create a scheduler by its kernel name. Unknown names give `ENOENT`
/// ("Scheduler or persistence engine not found"), as a missing `ip_vs_<name>` module does.
pub fn new_scheduler(name: &str) -> Result<Box<dyn Scheduler>, IpvsError> {
    Ok(match name {
        "rr" => Box::new(rr::Rr::default()),
        "wrr" => Box::new(wrr::Wrr::default()),
        "lc" => Box::new(lc::Lc::default()),
        "wlc" => Box::new(lc::Wlc::default()),
        "sed" => Box::new(lc::Sed::default()),
        "nq" => Box::new(lc::Nq::default()),
        "fo" => Box::new(fo::Fo::default()),
        "ovf" => Box::new(ovf::Ovf::default()),
        "twos" => Box::new(twos::Twos::default()),
        "lblc" => Box::new(lblc::Lblc::default()),
        "lblcr" => Box::new(lblcr::Lblcr::default()),
        "dh" => Box::new(dh::Dh::default()),
        "sh" => Box::new(sh::Sh::default()),
        "mh" => Box::new(mh::Mh::default()),
        "none" => Box::new(NoScheduler),
        _ => return Err(IpvsError::SchedulerNotFound),
    })
}

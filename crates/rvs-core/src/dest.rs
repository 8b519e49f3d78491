//! Real servers ("destinations") as live objects: configuration plus the kernel's per-destination
//! state (connection counters, AVAILABLE/OVERLOAD flags, `last_weight`, statistics).
//!
//! Destinations live in a slab ([`Dests`]) addressed by a stable [`DestId`]; each service keeps
//! its destinations' ids in the kernel's list order (newest first). Schedulers see a service's
//! destinations through a [`DestList`].

use std::net::IpAddr;

use crate::model::{DestConf, Family, Forward, ProxyProtocol, ServiceKey, TunnelConf};
use crate::stats::Stats;
use crate::time::Tick;

/// Stable handle of a destination (survives list reordering and the trash).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestId(pub u32);

/// Handle of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SvcId(pub u32);

/// Destination flag: usable (cleared when deleted / in the trash).
pub const DEST_F_AVAILABLE: u32 = 0x0001;
/// Destination flag: over its upper threshold.
pub const DEST_F_OVERLOAD: u32 = 0x0002;

/// A real server with its live state.
#[derive(Clone, Debug)]
pub struct Dest {
    /// stable id
    pub id: DestId,
    /// address family of the destination itself
    pub af: Family,
    /// address
    pub addr: IpAddr,
    /// port
    pub port: u16,
    /// forwarding method
    pub fwd: Forward,
    /// current weight (0 = quiescent)
    pub weight: i32,
    /// last non-zero weight (used by mh)
    pub last_weight: i32,
    /// upper threshold (0 = none)
    pub u_threshold: u32,
    /// lower threshold (0 = none)
    pub l_threshold: u32,
    /// tunnel parameters
    pub tun: TunnelConf,
    /// extension: the PROXY protocol header a data plane sends to this server
    pub proxy_protocol: ProxyProtocol,
    /// `DEST_F_*` bits
    pub flags: u32,
    /// connections in an active state
    pub activeconns: u32,
    /// connections in an inactive state
    pub inactconns: u32,
    /// persistence templates pointing here
    pub persistconns: u32,
    /// connection entries (and templates) that reference this destination
    pub refs: u32,
    /// traffic counters and rate estimator
    pub stats: Stats,
    /// owning service (kept while in the trash, so a re-add can revive it)
    pub svc: SvcId,
    /// key of the owning service (what the trash matches a re-added destination against)
    pub svc_key: Option<ServiceKey>,
    /// incarnation (`Service::seq`) of the owning service: a destination revived into a new
    /// incarnation of the same key gets its statistics zeroed
    pub svc_seq: u64,
    /// position in the owning service's list (maintained by the engine; meaningless in the trash)
    pub pos: usize,
    /// when the last reference went away while in the trash
    pub trash_idle_since: Option<Tick>,
}

impl Dest {
    /// A fresh destination from its configuration (AVAILABLE, no counters).
    pub fn new(id: DestId, svc: SvcId, conf: &DestConf) -> Dest {
        let mut d = Dest {
            id,
            af: Family::of(&conf.addr),
            addr: conf.addr,
            port: conf.port,
            fwd: conf.fwd,
            weight: 0,
            last_weight: 0,
            u_threshold: 0,
            l_threshold: 0,
            tun: conf.tun,
            proxy_protocol: conf.proxy_protocol,
            flags: DEST_F_AVAILABLE,
            activeconns: 0,
            inactconns: 0,
            persistconns: 0,
            refs: 0,
            stats: Stats::default(),
            svc,
            svc_key: None,
            svc_seq: 0,
            pos: 0,
            trash_idle_since: None,
        };
        d.apply_conf_added(conf);
        d
    }

    /// Apply the settings of an add (`-a`, new or revived from the trash): unlike an edit, an
    /// add sets `last_weight` even to 0 (`__ip_vs_update_dest` with `add`), so an mh table gives
    /// a server added at weight 0 no slots.
    pub fn apply_conf_added(&mut self, conf: &DestConf) {
        self.apply_conf(conf);
        self.last_weight = conf.weight;
    }

    /// Apply `-a`/`-e` settings (`__ip_vs_update_dest`): weight, thresholds, method, tunnel,
    /// and the PROXY protocol extension.
    /// The OVERLOAD flag is cleared when the new upper threshold is 0 or above the old one.
    pub fn apply_conf(&mut self, conf: &DestConf) {
        self.fwd = conf.fwd;
        self.tun = conf.tun;
        self.proxy_protocol = conf.proxy_protocol;
        self.weight = conf.weight;
        if conf.weight > 0 {
            self.last_weight = conf.weight;
        }
        if conf.u_threshold == 0 || conf.u_threshold > self.u_threshold {
            self.flags &= !DEST_F_OVERLOAD;
        }
        self.u_threshold = conf.u_threshold;
        self.l_threshold = conf.l_threshold;
    }

    /// The configuration this destination carries now.
    pub fn conf(&self) -> DestConf {
        DestConf {
            addr: self.addr,
            port: self.port,
            fwd: self.fwd,
            weight: self.weight,
            u_threshold: self.u_threshold,
            l_threshold: self.l_threshold,
            tun: self.tun,
            proxy_protocol: self.proxy_protocol,
        }
    }

    /// `ip_vs_dest_conn_overhead`: activeconns × 256 + inactconns.
    #[inline]
    pub fn overhead(&self) -> u32 {
        (self.activeconns << 8).wrapping_add(self.inactconns)
    }

    /// OVERLOAD flag set.
    #[inline]
    pub fn is_overloaded(&self) -> bool {
        self.flags & DEST_F_OVERLOAD != 0
    }

    /// AVAILABLE flag set.
    #[inline]
    pub fn is_available(&self) -> bool {
        self.flags & DEST_F_AVAILABLE != 0
    }

    /// A new connection was bound (`ip_vs_bind_dest`): set OVERLOAD at the upper threshold.
    pub fn check_overload_on_bind(&mut self) {
        if self.u_threshold != 0 && self.activeconns + self.inactconns >= self.u_threshold {
            self.flags |= DEST_F_OVERLOAD;
        }
    }

    /// A connection was unbound (`ip_vs_unbind_dest`): clear OVERLOAD below the lower
    /// threshold, or below ¾ of the upper one when no lower threshold is set, or always when
    /// there are no thresholds.
    pub fn check_overload_on_unbind(&mut self) {
        let total = self.activeconns + self.inactconns;
        if self.l_threshold != 0 {
            if total < self.l_threshold {
                self.flags &= !DEST_F_OVERLOAD;
            }
        } else if self.u_threshold != 0 {
            if u64::from(total) * 4 < u64::from(self.u_threshold) * 3 {
                self.flags &= !DEST_F_OVERLOAD;
            }
        } else {
            self.flags &= !DEST_F_OVERLOAD;
        }
    }
}

/// The slab of all destinations (live and in the trash).
#[derive(Clone, Debug, Default)]
pub struct Dests {
    slots: Vec<Option<Dest>>,
    free: Vec<u32>,
}

impl Dests {
    /// Store a new destination built by `make` from its id.
    pub fn insert_with(&mut self, make: impl FnOnce(DestId) -> Dest) -> DestId {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        let id = DestId(idx);
        self.slots[idx as usize] = Some(make(id));
        id
    }
    /// Free a destination's slot.
    pub fn remove(&mut self, id: DestId) -> Option<Dest> {
        let d = self.slots.get_mut(id.0 as usize)?.take();
        if d.is_some() {
            self.free.push(id.0);
        }
        d
    }
    /// The destination with this id.
    #[inline]
    pub fn get(&self, id: DestId) -> Option<&Dest> {
        self.slots.get(id.0 as usize).and_then(Option::as_ref)
    }
    /// Mutable access.
    #[inline]
    pub fn get_mut(&mut self, id: DestId) -> Option<&mut Dest> {
        self.slots.get_mut(id.0 as usize).and_then(Option::as_mut)
    }
    /// Every stored destination.
    pub fn iter(&self) -> impl Iterator<Item = &Dest> {
        self.slots.iter().filter_map(Option::as_ref)
    }
    /// A service's list view.
    pub fn list<'a>(&'a self, order: &'a [DestId]) -> DestList<'a> {
        DestList { order, dests: self }
    }
}

/// A service's destinations in kernel list order (index 0 = list head = most recently added).
#[derive(Clone, Copy)]
pub struct DestList<'a> {
    order: &'a [DestId],
    dests: &'a Dests,
}

impl<'a> DestList<'a> {
    /// Build a view (tests and schedulers' unit tests use this directly).
    pub fn new(order: &'a [DestId], dests: &'a Dests) -> DestList<'a> {
        DestList { order, dests }
    }
    /// Number of destinations.
    #[inline]
    pub fn len(&self) -> usize {
        self.order.len()
    }
    /// No destinations.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
    /// The destination at list position `pos`.
    #[inline]
    pub fn get(&self, pos: usize) -> &'a Dest {
        self.dests
            .get(self.order[pos])
            .expect("service lists only hold live destination ids")
    }
    /// The id at list position `pos`.
    #[inline]
    pub fn id(&self, pos: usize) -> DestId {
        self.order[pos]
    }
    /// The list position of `id`, if present.
    pub fn position(&self, id: DestId) -> Option<usize> {
        self.order.iter().position(|&x| x == id)
    }
    /// Iterate in list order.
    pub fn iter(&self) -> impl Iterator<Item = &'a Dest> + 'a {
        let dests = self.dests;
        self.order
            .iter()
            .map(move |id| dests.get(*id).expect("live id"))
    }
}

//! The engine: one IPVS instance (the kernel's per-netns `struct netns_ipvs`).
//!
//! Control operations (`-A -E -D -C -a -e -d -Z --set`) live here with the kernel's checks,
//! errors and side effects: destination list order, the destination trash, scheduler binding.
//! The packet path (scheduling, persistence, connection states, counters) is in
//! [`crate::datapath`]; expiry and the periodic work in [`Ipvs::advance`].
//!
//! ```
//! use rvs_core::ipvs::Ipvs;
//! use rvs_core::model::*;
//! let mut ipvs = Ipvs::new(Default::default());
//! let vip = ServiceKey::Addr { proto: Protocol::Tcp, addr: "10.0.0.1".parse().unwrap(), port: 80 };
//! ipvs.add_service(vip, ServiceConf::new(Family::V4, "rr")).unwrap();
//! ipvs.add_dest(&vip, DestConf::new("10.0.1.1".parse().unwrap(), 80).fwd(Forward::Masq)).unwrap();
//! assert_eq!(ipvs.add_service(vip, ServiceConf::new(Family::V4, "rr")).unwrap_err().to_string(),
//!            "Service already exists");
//! ```

use crate::conn::{ConnTable, Timeouts};
use crate::datapath::RsTable;
use crate::dest::{Dest, DestId, Dests, SvcId, DEST_F_AVAILABLE};
use crate::error::IpvsError;
use crate::model::{
    validate_dest_family, validate_dest_ranges, validate_new_dest_addr, validate_service, DestConf,
    Family, ServiceConf, ServiceKey,
};
use crate::pe::Engine;
use crate::rng::Rng;
use crate::sched::{new_scheduler, DestChange};
use crate::service::{Service, ServiceTable};
use crate::stats::{Stats, EST_PERIOD};
use crate::time::{Span, Tick};

/// A deleted destination is freed once it has had no references for this long
/// (`IP_VS_DEST_TRASH_PERIOD`); the trash is checked every half period.
pub const DEST_TRASH_PERIOD: Span = Span::secs(120);
/// How often the trash is checked (half the period).
const TRASH_CHECK: Span = Span::secs(60);
/// How often schedulers get their housekeeping call (the lblc/lblcr GC timer period).
const HOUSEKEEPING: Span = Span::secs(60);

/// The tunables of `/proc/sys/net/ipv4/vs/*` that change decisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sysctls {
    /// `expire_quiescent_template`: a template whose server has weight 0 is not used
    pub expire_quiescent_template: bool,
    /// `expire_nodest_conn`: packets of connections whose server is gone expire them
    pub expire_nodest_conn: bool,
    /// `conn_reuse_mode` (default 1): a SYN on a TIME_WAIT/CLOSE entry is rescheduled
    pub conn_reuse_mode: u8,
    /// `sloppy_tcp`: any non-RST segment may open a connection
    pub sloppy_tcp: bool,
    /// `sloppy_sctp`: any chunk may open an association
    pub sloppy_sctp: bool,
    /// `secure_tcp` defence active (uses the secure TCP state table)
    pub secure_tcp: bool,
    /// `lblc_expiration` in ms (default 24 h)
    pub lblc_expiration: Span,
    /// `lblcr_expiration` in ms (default 24 h)
    pub lblcr_expiration: Span,
}

impl Default for Sysctls {
    fn default() -> Self {
        Sysctls {
            expire_quiescent_template: false,
            expire_nodest_conn: false,
            conn_reuse_mode: 1,
            sloppy_tcp: false,
            sloppy_sctp: false,
            secure_tcp: false,
            lblc_expiration: Span::secs(24 * 60 * 60),
            lblcr_expiration: Span::secs(24 * 60 * 60),
        }
    }
}

/// Construction parameters of an engine.
#[derive(Clone, Debug)]
pub struct Config {
    /// most connection entries (templates included) held at once
    pub max_conns: usize,
    /// `conn_tab_bits`: what `size=` reports in the listing header (2^bits, 8 … 20)
    pub conn_tab_bits: u8,
    /// seed of the connection hash and of scheduler randomness
    pub seed: u64,
    /// tunables
    pub sysctls: Sysctls,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_conns: 1 << 20,
            conn_tab_bits: 12,
            seed: 0x05ee_d1f5,
            sysctls: Sysctls::default(),
        }
    }
}

/// One IPVS instance.
#[derive(Debug)]
pub struct Ipvs {
    pub(crate) services: ServiceTable,
    pub(crate) dests: Dests,
    /// deleted destinations kept while referenced (and up to the trash period after)
    pub(crate) trash: Vec<DestId>,
    pub(crate) conns: ConnTable,
    pub(crate) timeouts: Timeouts,
    pub(crate) sysctls: Sysctls,
    /// director-wide counters
    pub(crate) stats: Stats,
    pub(crate) rng: Rng,
    pub(crate) conn_tab_bits: u8,
    pub(crate) next_estimate: Option<Tick>,
    pub(crate) next_housekeeping: Option<Tick>,
    pub(crate) next_trash_check: Option<Tick>,
    /// `expire_nodest_conn`: a destination was deleted; its entries go at the next advance
    pub(crate) nodest_flush_pending: bool,
    /// NAT destinations by address and port, for connections started by real servers
    pub(crate) rs_table: RsTable,
    /// while a data plane's own choice is recorded (`reported_new`): that real server
    pub(crate) adopt: Option<crate::datapath::Adopt>,
    /// entries that expired, while a data plane wants to know (`set_expiry_log`)
    pub(crate) expired: Option<Vec<crate::datapath::Expired>>,
}

impl Ipvs {
    /// A fresh engine with no services.
    pub fn new(cfg: Config) -> Ipvs {
        Ipvs {
            services: ServiceTable::default(),
            dests: Dests::default(),
            trash: Vec::new(),
            conns: ConnTable::new(cfg.max_conns, cfg.seed),
            timeouts: Timeouts::default(),
            sysctls: cfg.sysctls,
            stats: Stats::default(),
            rng: Rng::seeded(cfg.seed ^ 0x7277_735f_7477_6f73),
            conn_tab_bits: cfg.conn_tab_bits.clamp(8, 20),
            next_estimate: None,
            next_housekeeping: None,
            next_trash_check: None,
            nodest_flush_pending: false,
            rs_table: RsTable::default(),
            adopt: None,
            expired: None,
        }
    }

    /// The tunables.
    pub fn sysctls(&self) -> &Sysctls {
        &self.sysctls
    }

    /// Change the tunables.
    pub fn sysctls_mut(&mut self) -> &mut Sysctls {
        &mut self.sysctls
    }

    /// `size=` of the listing header: the connection hash table size.
    pub fn conn_tab_size(&self) -> u32 {
        1u32 << self.conn_tab_bits
    }

    /// `-A`: add a virtual service.
    pub fn add_service(&mut self, key: ServiceKey, conf: ServiceConf) -> Result<SvcId, IpvsError> {
        validate_service(&key, &conf)?;
        if self.services.find(&key).is_some() {
            return Err(IpvsError::ServiceExists);
        }
        let mut sched = new_scheduler(&conf.scheduler)?;
        check_pe(&conf)?;
        sched.dests_changed(self.dests.list(&[]), DestChange::Init);
        Ok(self.services.insert(key, |id, seq| Service {
            id,
            key,
            conf,
            dests: Vec::new(),
            sched,
            stats: Stats::default(),
            seq,
        }))
    }

    /// `-E`: replace a service's settings. The scheduler is rebound (its state rebuilt) only
    /// when its name changes, as the kernel keeps the same scheduler object otherwise.
    pub fn edit_service(&mut self, key: &ServiceKey, conf: ServiceConf) -> Result<(), IpvsError> {
        validate_service(key, &conf)?;
        let id = self.services.find(key).ok_or(IpvsError::NoSuchService)?;
        check_pe(&conf)?;
        let rebind = {
            let svc = self.services.get(id).expect("found");
            svc.conf.scheduler != conf.scheduler
        };
        let new_sched = if rebind {
            Some(new_scheduler(&conf.scheduler)?)
        } else {
            None
        };
        let svc = self.services.get_mut(id).expect("found");
        if let Some(s) = new_sched {
            svc.sched = s;
            svc.notify(&self.dests, DestChange::Init);
        }
        svc.conf = conf;
        Ok(())
    }

    /// `-D`: delete a service; its destinations go to the trash.
    pub fn del_service(&mut self, key: &ServiceKey, now: Tick) -> Result<(), IpvsError> {
        let id = self.services.find(key).ok_or(IpvsError::NoSuchService)?;
        self.remove_service(id, now);
        Ok(())
    }

    fn remove_service(&mut self, id: SvcId, now: Tick) {
        let svc = self.services.remove(id).expect("live service");
        for did in svc.dests {
            self.trash_dest(did, now);
        }
    }

    /// `-C`: delete every service.
    pub fn flush(&mut self, now: Tick) {
        for id in self.services.ids() {
            self.remove_service(id, now);
        }
    }

    /// `-a`: add a real server at the head of the service's list, reviving it from the trash
    /// (with its counters) when it was deleted recently or is still in use.
    pub fn add_dest(&mut self, key: &ServiceKey, conf: DestConf) -> Result<DestId, IpvsError> {
        let sid = self
            .services
            .find(key)
            .ok_or(IpvsError::ServiceNotDefined)?;
        validate_dest_family(key, &conf)?;
        validate_dest_ranges(&conf)?;
        let af = Family::of(&conf.addr);
        let svc = self.services.get(sid).expect("found");
        let seq = svc.seq;
        if svc
            .find_dest(&self.dests, af, &conf.addr, conf.port)
            .is_some()
        {
            return Err(IpvsError::DestExists);
        }
        let did = match self.take_from_trash(sid, key, &conf) {
            Some(did) => did,
            None => {
                validate_new_dest_addr(&conf)?;
                self.dests.insert_with(|id| {
                    let mut d = Dest::new(id, sid, &conf);
                    d.svc_key = Some(*key);
                    d.svc_seq = seq;
                    d
                })
            }
        };
        self.rs_table.hash(self.dests.get(did).expect("live"));
        let svc = self.services.get_mut(sid).expect("found");
        svc.dests.insert(0, did);
        renumber(&mut self.dests, &svc.dests);
        svc.notify(&self.dests, DestChange::Added { pos: 0 });
        Ok(did)
    }

    /// Find a trashed destination of the same service, address and port, and bring it back
    /// (`ip_vs_trash_get_dest`). A destination that belonged to an earlier incarnation of the
    /// service (deleted and added again) has its statistics zeroed (`__ip_vs_update_dest`).
    fn take_from_trash(&mut self, sid: SvcId, key: &ServiceKey, conf: &DestConf) -> Option<DestId> {
        let af = Family::of(&conf.addr);
        let pos = self.trash.iter().position(|id| {
            let d = self.dests.get(*id).expect("trash holds live ids");
            d.af == af
                && d.addr == conf.addr
                && d.port == conf.port
                && d.svc_key.is_some_and(|k| same_trash_service(&k, key))
        })?;
        let seq = self.services.get(sid).expect("found").seq;
        let did = self.trash.remove(pos);
        let d = self.dests.get_mut(did).expect("live");
        if d.svc_seq != seq {
            d.stats.zero();
            d.svc_seq = seq;
        }
        d.svc = sid;
        d.svc_key = Some(*key);
        d.flags |= DEST_F_AVAILABLE;
        d.trash_idle_since = None;
        d.apply_conf_added(conf);
        Some(did)
    }

    /// `-e`: replace a real server's weight, thresholds, method and tunnel settings (and the
    /// PROXY protocol extension: `conf` is the whole new configuration).
    pub fn edit_dest(&mut self, key: &ServiceKey, conf: DestConf) -> Result<(), IpvsError> {
        let sid = self
            .services
            .find(key)
            .ok_or(IpvsError::ServiceNotDefined)?;
        validate_dest_family(key, &conf)?;
        validate_dest_ranges(&conf)?;
        let af = Family::of(&conf.addr);
        let svc = self.services.get_mut(sid).expect("found");
        let did = svc
            .find_dest(&self.dests, af, &conf.addr, conf.port)
            .ok_or(IpvsError::NoSuchDest)?;
        let d = self.dests.get_mut(did).expect("live");
        // `__ip_vs_update_dest`: a new method or tunnel setting rehashes the real server
        if (d.fwd, d.tun.kind, d.tun.port) != (conf.fwd, conf.tun.kind, conf.tun.port) {
            self.rs_table.unhash(d);
        }
        d.apply_conf(&conf);
        let pos = d.pos;
        self.rs_table.hash(d);
        svc.notify(&self.dests, DestChange::Updated { pos });
        Ok(())
    }

    /// `-d`: unlink a real server; it waits in the trash until unused.
    pub fn del_dest(
        &mut self,
        key: &ServiceKey,
        addr: &std::net::IpAddr,
        port: u16,
        now: Tick,
    ) -> Result<(), IpvsError> {
        let sid = self
            .services
            .find(key)
            .ok_or(IpvsError::ServiceNotDefined)?;
        let svc = self.services.get_mut(sid).expect("found");
        let did = svc
            .find_dest(&self.dests, Family::of(addr), addr, port)
            .ok_or(IpvsError::NoSuchDest)?;
        let old_pos = self.dests.get(did).expect("live").pos;
        svc.dests.remove(old_pos);
        renumber(&mut self.dests, &svc.dests);
        svc.notify(&self.dests, DestChange::Removed { old_pos, id: did });
        self.trash_dest(did, now);
        Ok(())
    }

    fn trash_dest(&mut self, did: DestId, now: Tick) {
        let d = self.dests.get_mut(did).expect("live");
        self.rs_table.unhash(d);
        d.flags &= !DEST_F_AVAILABLE;
        d.trash_idle_since = None;
        if self.trash.is_empty() {
            // `mod_timer` on an empty trash restarts the timer even while it is pending
            self.next_trash_check = Some(now + TRASH_CHECK);
        }
        self.trash.push(did);
        if self.sysctls.expire_nodest_conn {
            self.nodest_flush_pending = true;
        }
    }

    /// The trash timer firing at `fired` (`ip_vs_dest_trash_expire`): a destination nothing
    /// references is freed a whole trash period after the first check that found it idle.
    pub(crate) fn trash_gc(&mut self, fired: Tick) {
        let mut keep = Vec::with_capacity(self.trash.len());
        for did in std::mem::take(&mut self.trash) {
            let held = self.held_by_scheduler(did);
            let d = self.dests.get_mut(did).expect("live");
            if d.refs > 0 || held {
                keep.push(did);
                continue;
            }
            match d.trash_idle_since {
                None => {
                    d.trash_idle_since = Some(fired);
                    keep.push(did);
                }
                Some(t) if fired.since(t) < DEST_TRASH_PERIOD.0 => keep.push(did),
                Some(_) => {
                    self.dests.remove(did);
                }
            }
        }
        self.trash = keep;
        self.next_trash_check = (!self.trash.is_empty()).then(|| fired + TRASH_CHECK);
    }

    /// Run the trash timer for every firing due by `now`. After three firings in one go the
    /// outcome of further ones no longer changes (references cannot change without packets),
    /// so the timer skips ahead in whole periods.
    fn trash_due(&mut self, now: Tick) {
        for _ in 0..3 {
            match self.next_trash_check {
                Some(t) if t <= now => self.trash_gc(t),
                _ => return,
            }
        }
        if let Some(t) = self.next_trash_check.filter(|t| *t <= now) {
            let k = now.since(t) / TRASH_CHECK.0 + 1;
            self.next_trash_check = Some(Tick(t.0.saturating_add(k.saturating_mul(TRASH_CHECK.0))));
        }
    }

    /// Whether the scheduler of the destination's (still existing) service references it.
    fn held_by_scheduler(&self, did: DestId) -> bool {
        let d = self.dests.get(did).expect("live");
        self.services
            .get(d.svc)
            .is_some_and(|s| Some(s.key) == d.svc_key && s.sched.holds(did))
    }

    /// `-Z`: zero one service and its destinations, or everything including the totals.
    pub fn zero(&mut self, key: Option<&ServiceKey>) -> Result<(), IpvsError> {
        let ids = match key {
            Some(k) => vec![self.services.find(k).ok_or(IpvsError::NoSuchService)?],
            None => {
                self.stats.zero();
                self.services.ids()
            }
        };
        for sid in ids {
            let svc = self.services.get_mut(sid).expect("live");
            svc.stats.zero();
            for did in &svc.dests {
                self.dests.get_mut(*did).expect("live").stats.zero();
            }
        }
        Ok(())
    }

    /// `--set tcp tcpfin udp` (seconds; 0 keeps the current value).
    pub fn set_timeouts(&mut self, tcp: u32, tcpfin: u32, udp: u32) -> Result<(), IpvsError> {
        self.timeouts
            .set_tcp_tcpfin_udp(i64::from(tcp), i64::from(tcpfin), i64::from(udp))
    }

    /// `-L --timeout`: the (tcp, tcpfin, udp) timeouts in seconds.
    pub fn timeouts(&self) -> (u64, u64, u64) {
        self.timeouts.get()
    }

    /// The timeouts table.
    pub fn timeouts_table(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Director-wide statistics.
    pub fn total_stats(&self) -> &Stats {
        &self.stats
    }

    /// All services, in insertion order.
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.services.iter()
    }

    /// The service with this key.
    pub fn service(&self, key: &ServiceKey) -> Option<&Service> {
        self.services.get(self.services.find(key)?)
    }

    /// A service's destinations in kernel list order.
    pub fn service_dests<'a>(&'a self, svc: &'a Service) -> impl Iterator<Item = &'a Dest> + 'a {
        svc.dests
            .iter()
            .map(move |id| self.dests.get(*id).expect("live"))
    }

    /// The bucket table of the service's scheduler, if it picks by a hash of the packet (sh,
    /// dh, mh; see [`crate::sched::Scheduler::table`]), with the real server of each bucket.
    pub fn sched_table(&self, key: &ServiceKey) -> Option<Vec<Option<DestId>>> {
        let svc = self.service(key)?;
        let table = svc.sched.table()?;
        Some(
            table
                .into_iter()
                .map(|pos| pos.and_then(|p| svc.dests.get(p).copied()))
                .collect(),
        )
    }

    /// The next whole cycle of choices of the service's scheduler, if it picks by its own
    /// state alone (rr, wrr; see [`crate::sched::Scheduler::sequence`]), without moving it.
    pub fn sched_sequence(&self, key: &ServiceKey) -> Option<Vec<DestId>> {
        let svc = self.service(key)?;
        let seq = svc.sched.sequence(svc.list(&self.dests))?;
        Some(seq.into_iter().map(|p| svc.dests[p]).collect())
    }

    /// The live destination `addr`:`port` of the service `key` (what `-e` and `-d` name).
    pub fn find_dest(&self, key: &ServiceKey, addr: &std::net::IpAddr, port: u16) -> Option<&Dest> {
        let svc = self.services.get(self.services.find(key)?)?;
        let did = svc.find_dest(&self.dests, Family::of(addr), addr, port)?;
        self.dests.get(did)
    }

    /// Any destination, live or in the trash.
    pub fn dest(&self, id: DestId) -> Option<&Dest> {
        self.dests.get(id)
    }

    /// Destinations waiting in the trash.
    pub fn trash(&self) -> impl Iterator<Item = &Dest> {
        self.trash
            .iter()
            .map(move |id| self.dests.get(*id).expect("live"))
    }
}

/// The trash matches a re-added destination to the service it was deleted from by fwmark alone
/// for fwmark services (any family) and by protocol, address and port otherwise
/// (`ip_vs_trash_get_dest`).
fn same_trash_service(a: &ServiceKey, b: &ServiceKey) -> bool {
    match (a, b) {
        (ServiceKey::Fwmark { mark: x, .. }, ServiceKey::Fwmark { mark: y, .. }) => x == y,
        _ => a == b,
    }
}

/// Only the `sip` persistence engine exists (an empty name means none).
fn check_pe(conf: &ServiceConf) -> Result<(), IpvsError> {
    match conf.pe.as_deref() {
        None | Some("") => Ok(()),
        Some(name) if Engine::by_name(name).is_some() => Ok(()),
        Some(_) => Err(IpvsError::SchedulerNotFound),
    }
}

/// Keep each destination's `pos` equal to its index in the service list.
fn renumber(dests: &mut Dests, order: &[DestId]) {
    for (pos, id) in order.iter().enumerate() {
        dests.get_mut(*id).expect("live").pos = pos;
    }
}

impl Ipvs {
    /// When the estimator, housekeeping and trash timers next need [`Ipvs::advance`].
    pub(crate) fn periodic_due(&mut self, now: Tick) {
        let est = *self.next_estimate.get_or_insert(now + EST_PERIOD);
        if now >= est {
            // catch up whole periods, as the kernel's timer would have fired for each (after
            // 64 idle periods every average has decayed to 0)
            let periods = now.since(est) / EST_PERIOD.0;
            for _ in 0..=periods.min(64) {
                self.run_estimators();
            }
            let next = est
                .0
                .saturating_add((periods + 1).saturating_mul(EST_PERIOD.0));
            self.next_estimate = Some(Tick(next.max(now.0.saturating_add(1))));
        }
        self.trash_due(now);
        let hk = *self.next_housekeeping.get_or_insert(now + HOUSEKEEPING);
        if now >= hk {
            for sid in self.services.ids() {
                let svc = self.services.get_mut(sid).expect("live");
                let list = self.dests.list(&svc.dests);
                svc.sched.housekeeping(list, now);
            }
            self.next_housekeeping = Some(now + HOUSEKEEPING);
        }
    }

    /// The earliest time [`Ipvs::advance`] has work to do (a connection timer, the estimator,
    /// scheduler housekeeping, the trash): a data plane arms its own timer on it.
    pub fn next_wakeup(&self) -> Option<Tick> {
        if self.nodest_flush_pending {
            return Some(Tick::ZERO);
        }
        [
            self.conns.next_wakeup(),
            self.next_estimate,
            self.next_housekeeping,
            self.next_trash_check,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn run_estimators(&mut self) {
        self.stats.estimate();
        for sid in self.services.ids() {
            let svc = self.services.get_mut(sid).expect("live");
            svc.stats.estimate();
            for did in &svc.dests {
                self.dests.get_mut(*did).expect("live").stats.estimate();
            }
        }
    }
}

//! The XDP data plane's control side: [`Plane`] keeps the program's maps in step with an
//! [`Ipvs`] and brings what the program did back into it.
//!
//! Into the program ([`Plane::sync`], after every accepted change): each TCP/UDP virtual
//! service with its flags, persistence and schedule (rr/wrr: the next cycle of choices the
//! core's scheduler will make; sh/dh/mh: the core's bucket table), each real server with its
//! method, tunnel settings, weight, availability and the Ethernet address of its next hop.
//! Sequences are written to the half of `rvs_seq` not in use, then the service entries
//! switch over, so a packet never reads a half-written sequence. The schedulers that look at
//! the list (lc … ovf, lblc, lblcr, twos) get it in the kernel's order with the core's
//! connection counts (`rvs_conns`); lblc and lblcr keep their tables in the program
//! (`rvs_lblc`, `rvs_lblcr`), which the plane empties of what the kernel would have dropped:
//! entries of a removed service or of a scheduler changed away, members that are no real
//! server any more, and (on [`Plane::poll`], by the kernel's timer) idle entries.
//!
//! Back into the core ([`Plane::poll`], [`Plane::count`]): the program's events become
//! connection entries, state changes and timer refreshes (`Ipvs::reported_new`,
//! `Ipvs::conn_signal`); the per-real-server packet and byte counters are added in batches
//! (`Ipvs::reported_traffic`); entries the core expires are deleted from the program's maps,
//! unless the flow sent packets after its last report (then the entry is taken up again from
//! the flow's last packet, `Ipvs::reported_resume`), so expiry follows the kernel's timeouts.
//!
//! The caller holds the core's lock for each call; `Plane` does no locking of its own.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rvs_core::conn::{Direction, PacketInfo};
use rvs_core::datapath::{ConnKey, Expired, Packet, TcpFlags};
use rvs_core::dest::{Dest, DestId, DEST_F_OVERLOAD};
use rvs_core::ipvs::Ipvs;
use rvs_core::model::{Forward, Netmask, Protocol, ServiceKey, TunnelType};
use rvs_core::service::Service;
use rvs_core::time::{Span, Tick};

use crate::{abi, Error, Events, Xdp};

/// Where the control plane learns the Ethernet address of the next hop toward a real server.
pub trait Neighbours {
    /// The resolved Ethernet address of the next hop toward `addr` (None while unresolved).
    /// `new`: the real server is new to the program (worth waiting a moment for); otherwise
    /// this is a refresh, which should not wait.
    fn next_hop(&mut self, addr: IpAddr, new: bool) -> Option<[u8; 6]>;
}

/// A function of (address, new) is a neighbour table too (a fixed one, in tests and
/// benchmarks).
impl<F: FnMut(IpAddr, bool) -> Option<[u8; 6]>> Neighbours for F {
    fn next_hop(&mut self, addr: IpAddr, new: bool) -> Option<[u8; 6]> {
        self(addr, new)
    }
}

/// The schedulers the program runs: rr and wrr from a sequence, sh, dh and mh from a table,
/// the connection-count ones (and lblc, lblcr, twos) by scanning the list with the counts in
/// `rvs_conns`.
const IN_PROGRAM: [&str; 14] = [
    "rr", "wrr", "sh", "dh", "mh", "lc", "wlc", "sed", "nq", "fo", "ovf", "lblc", "lblcr", "twos",
];

/// The codes of the schedulers that scan the service's list.
fn scan_code(name: &str) -> Option<u32> {
    Some(match name {
        "lc" => abi::SCHED_LC,
        "wlc" => abi::SCHED_WLC,
        "sed" => abi::SCHED_SED,
        "nq" => abi::SCHED_NQ,
        "fo" => abi::SCHED_FO,
        "ovf" => abi::SCHED_OVF,
        "lblc" => abi::SCHED_LBLC,
        "lblcr" => abi::SCHED_LBLCR,
        "twos" => abi::SCHED_TWOS,
        _ => return None,
    })
}

/// Whether a scheduler keeps a table in the program (lblc, lblcr).
fn locality(code: u32) -> bool {
    code == abi::SCHED_LBLC || code == abi::SCHED_LBLCR
}

/// The period of the lblc/lblcr garbage collection (`CHECK_EXPIRE_INTERVAL`).
const GC_PERIOD: Span = Span::secs(60);

/// Every this many runs the collection drops the entries idle for the expiration
/// (`COUNT_FOR_FULL_EXPIRATION`).
const GC_FULL: u32 = 30;

/// Slots of `rvs_seq` in each half.
const HALF: u32 = abi::SEQ_SLOTS / 2;

/// Events handled per [`Plane::poll`] at most, so one call holds the core's lock briefly.
const POLL_BATCH: usize = 65_536;

/// A real server's place in `rvs_dests`.
struct DestSlot {
    idx: u32,
    /// what the program has for it
    entry: abi::Dest,
    /// what was last written to `rvs_conns`
    conns: abi::DestConns,
    /// how many of the program's connections to it (`rvs_sched`, TCP and UDP) the core's
    /// counts include: its NEW events brought in (wrapping as the program's counts do)
    seen: (u32, u32),
    /// the counters last added to the core
    counted: abi::DestStats,
}

/// A walk of the program's flows under way ([`Plane::begin_walk`]); it holds real-server
/// slots, which only [`Plane::finish_walk`] or [`Plane::abandon_walk`] give back.
#[derive(Debug)]
#[must_use = "a walk holds freed slots until it is finished or abandoned"]
pub struct Walk {
    freed: Vec<u32>,
    table: crate::FlowTable,
}

impl Walk {
    /// Every flow the program holds now, ready to be judged; needs no lock on the plane or
    /// the core.
    pub fn dump(&self) -> Result<Dump, Error> {
        let flows = self.table.dump()?;
        // the flows that NAT reply entries lead back to, and the real server each is bound
        // to (no reply entries, as with DR and tunnels: nothing to look up)
        let wanted: HashSet<abi::FlowKey> = flows
            .iter()
            .filter(|(_, f)| f.flags & abi::FLOW_REPLY != 0)
            .map(|(k, f)| reply_owner(k, f))
            .collect();
        let firsts = if wanted.is_empty() {
            HashMap::new()
        } else {
            flows
                .iter()
                .filter(|(k, f)| f.flags & abi::FLOW_REPLY == 0 && wanted.contains(k))
                .map(|(k, f)| (*k, f.dest))
                .collect()
        };
        Ok(Dump {
            flows,
            firsts,
            next: 0,
        })
    }
}

/// The flows a [`Walk`] read, judged a part at a time ([`Plane::walk_some`]).
#[derive(Debug)]
pub struct Dump {
    flows: Vec<(abi::FlowKey, abi::Flow)>,
    /// flow → real server slot, for the flows reply entries lead back to
    firsts: HashMap<abi::FlowKey, u32>,
    /// the next flow to judge
    next: usize,
}

impl Dump {
    /// Every flow has been judged.
    pub fn is_done(&self) -> bool {
        self.next >= self.flows.len()
    }
}

/// The key of the flow a NAT reply entry (`key`, `reply`) leads back to.
fn reply_owner(key: &abi::FlowKey, reply: &abi::Flow) -> abi::FlowKey {
    abi::FlowKey {
        caddr: key.vaddr,
        vaddr: reply.vaddr,
        cport: key.vport,
        vport: reply.vport,
        proto: key.proto,
        family: key.family,
        pad: 0,
    }
}

/// The control side of the XDP program.
pub struct Plane {
    xdp: Xdp,
    events: Events,
    /// served services: their id and map key
    svcs: HashMap<ServiceKey, (u32, abi::Vip)>,
    free_svc: Vec<u32>,
    next_svc: u32,
    dests: HashMap<DestId, DestSlot>,
    /// `rvs_dests` index → real server
    slots: Vec<Option<DestId>>,
    free_dest: Vec<u32>,
    /// slots of real servers gone from the core, not reused until a walk of the flows and
    /// templates deleted whatever still points at them (a flow whose events were lost)
    quarantine: Vec<u32>,
    /// the half of `rvs_seq` the services read now
    half: u32,
    /// `bpf_ktime_get_ns()` at the core's tick 0
    epoch_ns: u64,
    /// last tick handed to the core (events are applied in time order)
    last_tick: Tick,
    /// flows taken up again after their entry expired, with the flow's packet count then
    resumed: HashMap<abi::FlowKey, u64>,
    /// services already reported as not served here
    warned: HashSet<ServiceKey>,
    /// the scheduler code last written for each service id
    codes: HashMap<u32, u32>,
    /// the next run of the lblc/lblcr collection, and the kernel's run counter
    gc_due: Option<Tick>,
    gc_counter: u32,
}

/// What a [`Plane::sync`] could not do (each service and real server once).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// services left to the kernel, with the reason
    pub skipped: Vec<(ServiceKey, String)>,
    /// real servers whose next hop is not resolved (their flows' packets are dropped)
    pub unresolved: Vec<IpAddr>,
}

impl Plane {
    /// Takes over a loaded program whose core clock reads `now`.
    pub fn new(mut xdp: Xdp, now: Tick) -> Result<Plane, Error> {
        let events = xdp.take_events()?;
        Ok(Plane {
            xdp,
            events,
            svcs: HashMap::new(),
            free_svc: Vec::new(),
            next_svc: 0,
            dests: HashMap::new(),
            slots: Vec::new(),
            free_dest: Vec::new(),
            quarantine: Vec::new(),
            half: 0,
            epoch_ns: monotonic_ns().saturating_sub(now.as_millis() * 1_000_000),
            last_tick: now,
            resumed: HashMap::new(),
            warned: HashSet::new(),
            codes: HashMap::new(),
            gc_due: None,
            gc_counter: 1,
        })
    }

    /// The program and its maps.
    pub fn xdp(&mut self) -> &mut Xdp {
        &mut self.xdp
    }

    /// The event ring (its descriptor polls readable when events wait).
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Makes the program's services, real servers and schedules those of `ipvs`.
    pub fn sync(
        &mut self,
        ipvs: &mut Ipvs,
        now: Tick,
        nh: &mut dyn Neighbours,
    ) -> Result<SyncReport, Error> {
        // every choice the program made goes into the core's schedulers first, so the
        // sequences computed below continue where the program stands (a caller about to
        // change the rules polls before the change too: the choices were made under the old
        // rules, and a scheduler replays them correctly only before it sees the new list)
        self.poll(ipvs, now)?;
        let mut report = SyncReport::default();
        let served = self.served_services(ipvs, &mut report);
        self.sync_dests(ipvs, nh, &mut report)?;
        self.sync_services(ipvs, &served, &mut report)?;
        Ok(report)
    }

    /// The services the program serves, each with its id (new ones get one) and map key.
    fn served_services(
        &mut self,
        ipvs: &Ipvs,
        report: &mut SyncReport,
    ) -> Vec<(ServiceKey, abi::Vip)> {
        let mut out = Vec::new();
        for svc in ipvs.services() {
            match served(svc) {
                Ok(vip) if IN_PROGRAM.contains(&svc.sched.name()) => {
                    self.service_id(svc.key, vip);
                    out.push((svc.key, vip));
                }
                Ok(_) => self.skip(
                    svc.key,
                    format!("scheduler {} is not in the XDP program", svc.sched.name()),
                    report,
                ),
                Err(why) => self.skip(svc.key, why, report),
            }
        }
        out
    }

    /// Updates the real servers only (their next hops above all), as
    /// [`sync`](Self::sync) does, without touching services or schedules.
    pub fn refresh_dests(
        &mut self,
        ipvs: &Ipvs,
        nh: &mut dyn Neighbours,
    ) -> Result<SyncReport, Error> {
        let mut report = SyncReport::default();
        self.sync_dests(ipvs, nh, &mut report)?;
        Ok(report)
    }

    /// The addresses of the real servers whose next hop a refresh asks `Neighbours` for (direct
    /// routing and tunnelling ones, in services or in the trash): for looking them up before
    /// [`Plane::refresh_dests`], without holding whatever guards the core meanwhile.
    pub fn next_hop_addrs(ipvs: &Ipvs) -> Vec<IpAddr> {
        let mut addrs: Vec<IpAddr> = live_dests(ipvs)
            .into_iter()
            .filter(|d| needs_mac(d))
            .map(|d| d.addr)
            .collect();
        addrs.sort_unstable();
        addrs.dedup();
        addrs
    }

    fn sync_dests(
        &mut self,
        ipvs: &Ipvs,
        nh: &mut dyn Neighbours,
        report: &mut SyncReport,
    ) -> Result<(), Error> {
        let live = live_dests(ipvs);
        let ids: HashSet<DestId> = live.iter().map(|d| d.id).collect();
        // real servers gone from the core entirely (no entry refers to them any more)
        let gone: Vec<DestId> = self
            .dests
            .keys()
            .filter(|id| !ids.contains(id))
            .copied()
            .collect();
        for id in gone {
            let slot = self.dests.remove(&id).expect("listed");
            self.xdp.set_dest(slot.idx, &abi::Dest::default())?;
            self.slots[slot.idx as usize] = None;
            self.quarantine.push(slot.idx);
        }
        for d in live {
            let svc_id = self
                .svcs
                .get(d.svc_key.as_ref().expect("a live real server"))
                .map(|s| s.0);
            let mut entry = dest_entry(d, svc_id.unwrap_or(u32::MAX));
            let slot = self.dests.get(&d.id);
            let known = slot.map(|s| s.entry.mac).filter(|m| *m != [0; 6]);
            // NAT finds its next hop in the kernel's FIB from the program
            let resolved = if needs_mac(d) {
                nh.next_hop(d.addr, slot.is_none())
            } else {
                None
            };
            match (resolved, known) {
                (Some(mac), _) => entry.mac = mac,
                // the neighbour entry went (unused entries age out of the kernel's table):
                // the last address stays while it is asked for again
                (None, Some(mac)) => entry.mac = mac,
                (None, None) if needs_mac(d) => {
                    entry.flags &= !abi::DEST_AVAILABLE;
                    report.unresolved.push(d.addr);
                }
                (None, None) => {}
            }
            self.put_dest(d.id, entry)?;
        }
        Ok(())
    }

    fn put_dest(&mut self, id: DestId, entry: abi::Dest) -> Result<(), Error> {
        if let Some(slot) = self.dests.get_mut(&id) {
            if slot.entry != entry {
                slot.entry = entry;
                self.xdp.set_dest(slot.idx, &entry)?;
            }
            return Ok(());
        }
        let idx = match self.free_dest.pop() {
            Some(i) => i,
            None if self.slots.len() < abi::MAX_DESTS as usize => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
            None => return Err(Error::Full("real servers")),
        };
        // what the slot counted before it was this real server's is not its traffic, nor
        // its connections (the program cannot choose it before set_dest)
        let sched = self.xdp.sched(idx)?;
        let conns = abi::DestConns {
            seen_active: sched.active,
            seen_inactive: sched.inactive,
            ..Default::default()
        };
        self.xdp.set_conns(idx, &conns)?;
        self.xdp.set_dest(idx, &entry)?;
        self.slots[idx as usize] = Some(id);
        let counted = self.xdp.dest_stats(idx)?;
        self.dests.insert(
            id,
            DestSlot {
                idx,
                entry,
                conns,
                seen: (sched.active, sched.inactive),
                counted,
            },
        );
        Ok(())
    }

    fn sync_services(
        &mut self,
        ipvs: &Ipvs,
        served: &[(ServiceKey, abi::Vip)],
        report: &mut SyncReport,
    ) -> Result<(), Error> {
        let half = 1 - self.half;
        let mut off = half * HALF;
        let mut keep = HashSet::new();
        for (key, vip) in served {
            let Some((sched, entries)) = self.schedule(ipvs, key) else {
                continue;
            };
            if off + entries.len() as u32 > (half + 1) * HALF {
                self.skip(*key, "no room left for its schedule".into(), report);
                continue;
            }
            let id = self.service_id(*key, *vip);
            let was = self.codes.insert(id, sched);
            self.xdp.set_seq(off, &entries)?;
            self.xdp.set_position(id, 0)?;
            let conf = &ipvs.service(key).expect("served").conf;
            let entry = abi::Service {
                id,
                flags: conf.flags,
                sched,
                seq_off: off,
                seq_len: entries.len() as u32,
                persist_timeout: conf.timeout,
                netmask: match conf.netmask {
                    Netmask::V4(m) => u32::from_ne_bytes(m.to_be_bytes()),
                    Netmask::V6(plen) => u32::from(plen),
                },
                expire_ms: if sched == abi::SCHED_LBLCR {
                    u32::try_from(ipvs.sysctls().lblcr_expiration.0).unwrap_or(u32::MAX)
                } else {
                    0
                },
            };
            self.xdp.set_service(vip, &entry)?;
            // a scheduler bound anew starts with an empty table, as the kernel's does (the
            // old one's entries go once no packet can make them any more)
            if was.is_some_and(|w| w != sched && locality(w)) {
                self.forget_locality(id)?;
            }
            off += entries.len() as u32;
            keep.insert(*key);
        }
        self.half = half;
        let gone: Vec<ServiceKey> = self
            .svcs
            .keys()
            .filter(|k| !keep.contains(k))
            .copied()
            .collect();
        for key in gone {
            let (id, vip) = self.svcs.remove(&key).expect("listed");
            self.xdp.remove_service(&vip)?;
            if self.codes.remove(&id).is_some_and(locality) {
                self.forget_locality(id)?;
            }
            self.free_svc.push(id);
        }
        Ok(())
    }

    /// Deletes the lblc/lblcr entries of service `id`.
    fn forget_locality(&mut self, id: u32) -> Result<(), Error> {
        for (k, _) in self.xdp.lblc_entries()? {
            if k.svc == id {
                self.xdp.delete_lblc(&k)?;
            }
        }
        for (k, _) in self.xdp.lblcr_entries()? {
            if k.svc == id {
                self.xdp.delete_lblcr(&k)?;
            }
        }
        Ok(())
    }

    /// Takes the real servers of slots `freed` out of the lblc/lblcr entries (an lblc entry
    /// or an lblcr set left empty goes).
    fn forget_members(&mut self, freed: &HashSet<u32>) -> Result<(), Error> {
        for (k, e) in self.xdp.lblc_entries()? {
            if freed.contains(&e.dest) {
                self.xdp.delete_lblc(&k)?;
            }
        }
        for (k, mut e) in self.xdp.lblcr_entries()? {
            if !e.members().iter().any(|d| freed.contains(d)) {
                continue;
            }
            let kept: Vec<u32> = e
                .members()
                .iter()
                .copied()
                .filter(|d| !freed.contains(d))
                .collect();
            if kept.is_empty() {
                self.xdp.delete_lblcr(&k)?;
                continue;
            }
            e.dests = [0; abi::LBLCR_SET];
            e.dests[..kept.len()].copy_from_slice(&kept);
            e.n = kept.len() as u32;
            self.xdp.update_lblcr(&k, &e)?;
        }
        Ok(())
    }

    /// The lblc/lblcr garbage collection as the kernel's timer runs it: every 60 s, and on
    /// every 30th run the entries idle for `lblc_expiration` / `lblcr_expiration` go
    /// ([`expire_locality`](Self::expire_locality)). The kernel's other collection, of
    /// entries idle for six minutes while a table holds more than 16384, never has work here:
    /// a service's packets all have its virtual address as destination, so its table holds
    /// one entry.
    fn locality_timer(&mut self, ipvs: &Ipvs, now: Tick) -> Result<(), Error> {
        let mut due = *self.gc_due.get_or_insert(now + GC_PERIOD);
        while due <= now {
            if self.gc_counter.is_multiple_of(GC_FULL) {
                self.gc_counter = 1;
                self.expire_locality(ipvs, due)?;
            } else {
                self.gc_counter += 1;
            }
            due = due + GC_PERIOD;
        }
        self.gc_due = Some(due);
        Ok(())
    }

    /// Deletes the lblc and lblcr entries unused for `lblc_expiration` /
    /// `lblcr_expiration` at `now` (the kernel's full check). Returns how many went.
    pub fn expire_locality(&mut self, ipvs: &Ipvs, now: Tick) -> Result<usize, Error> {
        let at = self.epoch_ns + now.as_millis() * 1_000_000;
        let idle = |last: u64, exp: Span| at >= last.saturating_add(exp.0 * 1_000_000);
        let mut n = 0;
        let exp = ipvs.sysctls().lblc_expiration;
        for (k, e) in self.xdp.lblc_entries()? {
            if idle(e.last_ns, exp) {
                self.xdp.delete_lblc(&k)?;
                n += 1;
            }
        }
        let exp = ipvs.sysctls().lblcr_expiration;
        for (k, e) in self.xdp.lblcr_entries()? {
            if idle(e.last_ns, exp) {
                self.xdp.delete_lblcr(&k)?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn skip(&mut self, key: ServiceKey, why: String, report: &mut SyncReport) {
        if self.warned.insert(key) {
            report.skipped.push((key, why));
        }
    }

    fn service_id(&mut self, key: ServiceKey, vip: abi::Vip) -> u32 {
        if let Some((id, _)) = self.svcs.get(&key) {
            return *id;
        }
        let id = self.free_svc.pop().unwrap_or_else(|| {
            self.next_svc += 1;
            self.next_svc - 1
        });
        self.svcs.insert(key, (id, vip));
        id
    }

    /// The service's schedule in real-server slots: `RVS_SCHED_*` and its entries.
    fn schedule(&self, ipvs: &Ipvs, key: &ServiceKey) -> Option<(u32, Vec<u32>)> {
        let slot = |id: DestId| self.dests.get(&id).map_or(abi::NO_DEST, |s| s.idx);
        let svc = ipvs.service(key)?;
        if let Some(code) = scan_code(svc.sched.name()) {
            let list: Vec<u32> = ipvs.service_dests(svc).map(|d| slot(d.id)).collect();
            if list.len() > abi::MAX_LIST as usize {
                return None;
            }
            return Some((code, list));
        }
        if let Some(table) = ipvs.sched_table(key) {
            let sched = match ipvs.service(key)?.sched.name() {
                "sh" => abi::SCHED_SH,
                "mh" => abi::SCHED_MH,
                _ => abi::SCHED_DH,
            };
            let t = table
                .into_iter()
                .map(|d| d.map_or(abi::NO_DEST, slot))
                .collect();
            return Some((sched, t));
        }
        let seq = ipvs.sched_sequence(key)?;
        Some((abi::SCHED_SEQ, seq.into_iter().map(slot).collect()))
    }

    /// Brings the program's events into the core, then deletes the flows and templates of
    /// the entries the core expired. Returns the number of events handled.
    ///
    /// The program counts a real server's connections as the core's counts plus those it
    /// made that the core has not heard of: its own count of the connections whose NEW
    /// event it sent, minus the ones whose NEW event the core has (`seen`), so a burst
    /// larger than one poll is counted whole. A connection whose event was lost is in
    /// neither until the walk of the flows takes it up in the core.
    pub fn poll(&mut self, ipvs: &mut Ipvs, now: Tick) -> Result<usize, Error> {
        let mut n = 0;
        while n < POLL_BATCH {
            let Some(ev) = self.events.read() else {
                break;
            };
            self.apply(ipvs, &ev, now)?;
            n += 1;
        }
        let expired = ipvs.take_expired();
        for e in &expired {
            self.expired(ipvs, e, now)?;
        }
        if n > 0 || !expired.is_empty() {
            self.write_conns(ipvs)?;
        }
        self.locality_timer(ipvs, now)?;
        Ok(n)
    }

    /// Gives the program the core's connection counts (what the connection-count schedulers
    /// decide by) with how many of its connections they include. The program only ever adds
    /// to its own count, in a map this never writes, so a connection it makes meanwhile is
    /// counted either way.
    fn write_conns(&mut self, ipvs: &Ipvs) -> Result<(), Error> {
        for (id, slot) in self.dests.iter_mut() {
            let Some(d) = ipvs.dest(*id) else {
                continue;
            };
            let c = abi::DestConns {
                active: d.activeconns,
                inactive: d.inactconns,
                seen_active: slot.seen.0,
                seen_inactive: slot.seen.1,
            };
            if c != slot.conns {
                self.xdp.set_conns(slot.idx, &c)?;
                slot.conns = c;
            }
        }
        Ok(())
    }

    fn apply(&mut self, ipvs: &mut Ipvs, ev: &abi::Event, now: Tick) -> Result<(), Error> {
        let Some(did) = self.slots.get(ev.dest as usize).copied().flatten() else {
            return Ok(());
        };
        let t = self.tick(ev.ns, now);
        let pkt = packet(&ev.key, ev.tcp_flags).len(ev.len);
        let key = conn_key(&pkt);
        if ev.kind == abi::event::NEW {
            self.resumed.remove(&ev.key);
            // counted in the core from now on (or forgotten below): no longer the program's
            // alone
            if let Some(slot) = self.dests.get_mut(&did) {
                if ev.key.proto == libc::IPPROTO_TCP as u8 {
                    slot.seen.0 = slot.seen.0.wrapping_add(1);
                } else {
                    slot.seen.1 = slot.seen.1.wrapping_add(1);
                }
            }
            if ipvs.reported_new(&pkt, did, t).is_none() {
                // the core cannot hold it (its real server left the service, or the table
                // is full): the program forgets it too
                self.xdp.delete_flow(&ev.key)?;
            }
            return Ok(());
        }
        let id = match ipvs.find_conn(&key) {
            Some(id) if ipvs.conn_dest(id) == Some(did) => id,
            // no entry, or one bound to another real server (the program scheduled this
            // tuple afresh and that report was lost): taken up as the program has it, if the
            // flow is still there (the core may have expired it and the plane deleted it
            // since this event was sent)
            _ => match self.xdp.flow(&ev.key)? {
                Some(f) if f.dest == ev.dest && f.flags & abi::FLOW_REPLY == 0 => {
                    let t = self.flow_tick(f.last_ns, now);
                    match self.resume(ipvs, &ev.key, did, f.state, t) {
                        Some(_) => {
                            self.resumed.insert(ev.key, f.packets);
                            return Ok(());
                        }
                        None => return self.forget_flow(&ev.key, ev.dest),
                    }
                }
                _ => return Ok(()),
            },
        };
        let dir = if ev.dir == abi::dir::OUTPUT {
            Direction::Output
        } else {
            Direction::Input
        };
        ipvs.conn_signal(id, &key, dir, info(&pkt), t);
        Ok(())
    }

    /// The key of the reply entry a NAT flow of `key` has with the real server of slot
    /// `idx` (None: not a NAT real server's, or the slot is free).
    fn reply_key(&self, key: &abi::FlowKey, idx: u32) -> Option<abi::FlowKey> {
        let id = self.slots.get(idx as usize).copied().flatten()?;
        let d = &self.dests.get(&id)?.entry;
        (d.fwd == abi::FWD_MASQ).then_some(abi::FlowKey {
            caddr: d.addr,
            vaddr: key.caddr,
            cport: if d.port != 0 { d.port } else { key.vport },
            vport: key.cport,
            proto: key.proto,
            family: key.family,
            pad: 0,
        })
    }

    /// Deletes the flow of `key` (bound to slot `idx`) and its reply entry if it has one.
    fn forget_flow(&mut self, key: &abi::FlowKey, idx: u32) -> Result<(), Error> {
        if let Some(rk) = self.reply_key(key, idx) {
            self.xdp.delete_flow(&rk)?;
        }
        self.resumed.remove(key);
        self.xdp.delete_flow(key)
    }

    /// Makes the entry of a flow again, in the flow's state, at `t`.
    fn resume(
        &mut self,
        ipvs: &mut Ipvs,
        key: &abi::FlowKey,
        did: DestId,
        state: u8,
        t: Tick,
    ) -> Option<rvs_core::conn::ConnId> {
        let opener = packet(key, TCP_SYN);
        let nat = self
            .dests
            .get(&did)
            .is_some_and(|s| s.entry.fwd == abi::FWD_MASQ);
        let id = ipvs.reported_resume(&opener, did, t)?;
        if key.proto == PROTO_TCP {
            let ck = conn_key(&opener);
            for (dir, flags) in state_path(state, nat) {
                ipvs.conn_signal(id, &ck, *dir, PacketInfo::Tcp(tcp_flags(*flags)), t);
            }
        }
        Some(id)
    }

    fn expired(&mut self, ipvs: &mut Ipvs, e: &Expired, now: Tick) -> Result<(), Error> {
        if e.template {
            // a connection the program sent by its template before this poll made the core's
            // template again: the program's stays
            if ipvs.find_live_template(&e.key).is_some() {
                return Ok(());
            }
            return self.xdp.delete_template(&tmpl_key(&e.key));
        }
        if ipvs.find_conn(&e.key).is_some() {
            return Ok(()); // replaced by a new connection on the same tuple
        }
        let fk = flow_key(&e.key);
        let Some(flow) = self.xdp.flow(&fk)? else {
            return Ok(());
        };
        if flow.flags & abi::FLOW_REPLY != 0 {
            return Ok(()); // not a flow of the entry's: a reply entry of a NAT flow
        }
        // packets the core heard of: up to the flow's last report, or its last taking up
        let heard = self
            .resumed
            .get(&fk)
            .copied()
            .unwrap_or(0)
            .max(flow.reported_packets);
        if flow.packets > heard {
            if let Some(did) = self.slots.get(flow.dest as usize).copied().flatten() {
                let t = self.flow_tick(flow.last_ns, now);
                if self.resume(ipvs, &fk, did, flow.state, t).is_some() {
                    self.resumed.insert(fk, flow.packets);
                    return Ok(());
                }
            }
        }
        self.forget_flow(&fk, flow.dest)
    }

    /// Walks the program's flows and takes up in the core those it does not hold (their
    /// events were lost to a full ring): each gets its entry from its last packet, so it
    /// expires (and leaves the program) by the usual timeouts. Flows and templates of real
    /// servers gone from the core are deleted, and only then are those servers' slots free
    /// for new ones (so nothing left behind is sent to a newcomer). Returns how many flows
    /// were taken up.
    ///
    /// Everything happens under the caller's locks here. A caller that holds the core's lock
    /// for others walks in steps instead: [`Plane::begin_walk`], [`Walk::dump`] without any
    /// lock, [`Plane::walk_some`] a part at a time, [`Plane::finish_walk`].
    pub fn reconcile(&mut self, ipvs: &mut Ipvs, now: Tick) -> Result<usize, Error> {
        let walk = self.begin_walk()?;
        let mut dump = match walk.dump() {
            Ok(d) => d,
            Err(e) => {
                self.abandon_walk(walk);
                return Err(e);
            }
        };
        let n = match self.walk_some(ipvs, now, &mut dump, usize::MAX) {
            Ok(n) => n,
            Err(e) => {
                self.abandon_walk(walk);
                return Err(e);
            }
        };
        self.finish_walk(walk, &dump)?;
        Ok(n)
    }

    /// Gives up a walk that could not be finished: its slots wait for the next walk.
    pub fn abandon_walk(&mut self, walk: Walk) {
        self.quarantine.extend(walk.freed);
    }

    /// Starts a walk of the flows ([`Plane::reconcile`] in steps): the slots freed so far
    /// are the walk's to release, and the returned [`Walk`] reads the flows from any thread,
    /// with no lock held (a million flows take over half a second to read).
    pub fn begin_walk(&mut self) -> Result<Walk, Error> {
        let table = self.xdp.flow_table()?;
        Ok(Walk {
            freed: std::mem::take(&mut self.quarantine),
            table,
        })
    }

    /// Makes room for the next `max` flows of `dump` to be taken up, so that the step that
    /// judges them grows nothing while it holds the core's lock: call it before taking the
    /// lock for [`Plane::walk_some`]. (When a million flows are taken up after lost events,
    /// the record of taken-up flows doubling inside a step held the lock for 345 ms.)
    pub fn make_room(&mut self, dump: &Dump, max: usize) {
        let left = dump.flows.len().saturating_sub(dump.next);
        self.resumed.reserve(left.min(max));
    }

    /// Judges up to `max` more flows of `dump` by the core as it is now (as
    /// [`Plane::reconcile`] says); returns how many were taken up. Flows scheduled since the
    /// dump are the next walk's. [`Plane::make_room`] first keeps the step short.
    pub fn walk_some(
        &mut self,
        ipvs: &mut Ipvs,
        now: Tick,
        dump: &mut Dump,
        max: usize,
    ) -> Result<usize, Error> {
        let mut n = 0;
        let end = dump.flows.len().min(dump.next.saturating_add(max));
        while dump.next < end {
            let (fk, flow) = dump.flows[dump.next];
            dump.next += 1;
            if flow.flags & abi::FLOW_REPLY != 0 {
                // a NAT flow's reply entry goes with its flow (or when that is bound elsewhere);
                // the read is no snapshot, so a flow made during it is looked at again
                let owner = reply_owner(&fk, &flow);
                if dump.firsts.get(&owner) != Some(&flow.dest)
                    && self.xdp.flow(&owner)?.map(|f| f.dest) != Some(flow.dest)
                {
                    self.xdp.delete_flow(&fk)?;
                }
                continue;
            }
            let pkt = packet(&fk, 0);
            // the real server the core's entry binds, if the core holds the tuple
            let bound = ipvs.find_conn(&conn_key(&pkt)).map(|id| ipvs.conn_dest(id));
            let slot = self.slots.get(flow.dest as usize).copied().flatten();
            if bound == Some(slot) {
                continue; // its entry binds its real server, whose slot is therefore in use
            }
            // The core does not hold it as read. The read ran without the core's lock, so
            // the flow may have changed or gone since (the core expired its entry and the
            // plane deleted it, or the program scheduled the tuple afresh): it is judged as
            // it is now.
            let Some(flow) = self.xdp.flow(&fk)? else {
                continue;
            };
            if flow.flags & abi::FLOW_REPLY != 0 {
                continue;
            }
            let slot = self.slots.get(flow.dest as usize).copied().flatten();
            if bound == Some(slot) {
                continue;
            }
            let Some(did) = slot else {
                // its reply entry (if any) goes in this walk too: its flow is gone
                self.resumed.remove(&fk);
                self.xdp.delete_flow(&fk)?;
                continue;
            };
            let t = self.flow_tick(flow.last_ns, now);
            match self.resume(ipvs, &fk, did, flow.state, t) {
                Some(_) => {
                    self.resumed.insert(fk, flow.packets);
                    n += 1;
                }
                None => self.forget_flow(&fk, flow.dest)?,
            }
        }
        if n > 0 {
            // the connections taken up count in the core now, and so for the program
            self.write_conns(ipvs)?;
        }
        Ok(n)
    }

    /// Ends a walk whose `dump` has been judged in full: templates of real servers gone are
    /// deleted, and then the slots freed before the walk began are free for newcomers (slots
    /// freed since wait for the next walk: their flows may be missing from this dump). A
    /// dump not judged in full gives its slots back to the next walk. Needs no core.
    pub fn finish_walk(&mut self, walk: Walk, dump: &Dump) -> Result<(), Error> {
        if !dump.is_done() {
            self.abandon_walk(walk);
            return Ok(());
        }
        let freed = walk.freed;
        if let Err(e) = self.delete_orphan_templates() {
            self.quarantine.extend(freed);
            return Err(e);
        }
        // the kernel's lblc/lblcr tables hold a real server until it is freed, and then lose
        // it; here its slot goes to another one, which the tables must not take for it
        if !freed.is_empty() {
            if let Err(e) = self.forget_members(&freed.iter().copied().collect()) {
                self.quarantine.extend(freed);
                return Err(e);
            }
        }
        self.free_dest.extend(freed);
        Ok(())
    }

    /// Deletes the templates whose real server is gone.
    fn delete_orphan_templates(&mut self) -> Result<(), Error> {
        for (tk, tmpl) in self.xdp.templates()? {
            if self
                .slots
                .get(tmpl.dest as usize)
                .copied()
                .flatten()
                .is_none()
            {
                self.xdp.delete_template(&tk)?;
            }
        }
        Ok(())
    }

    /// Adds the packets and bytes the program forwarded since the last call to the core's
    /// counters of each real server (its service's and the totals with it).
    pub fn count(&mut self, ipvs: &mut Ipvs) -> Result<(), Error> {
        let ids: Vec<DestId> = self.dests.keys().copied().collect();
        for id in ids {
            let idx = self.dests[&id].idx;
            let now = self.xdp.dest_stats(idx)?;
            let slot = self.dests.get_mut(&id).expect("listed");
            let packets = now.packets.saturating_sub(slot.counted.packets);
            let bytes = now.bytes.saturating_sub(slot.counted.bytes);
            let out_packets = now.out_packets.saturating_sub(slot.counted.out_packets);
            let out_bytes = now.out_bytes.saturating_sub(slot.counted.out_bytes);
            slot.counted = now;
            ipvs.reported_traffic(id, Direction::Input, packets, bytes);
            ipvs.reported_traffic(id, Direction::Output, out_packets, out_bytes);
        }
        Ok(())
    }

    /// The core's tick of a flow's last packet (for an entry taken up again: its timer runs
    /// from that packet, not from the newest event), never after `now`.
    fn flow_tick(&self, ns: u64, now: Tick) -> Tick {
        Tick(ns.saturating_sub(self.epoch_ns) / 1_000_000).min(now)
    }

    /// The core's tick of a program timestamp, never before the last one handed over nor
    /// after `now`.
    fn tick(&mut self, ns: u64, now: Tick) -> Tick {
        let t = Tick(ns.saturating_sub(self.epoch_ns) / 1_000_000);
        let t = t.max(self.last_tick).min(now);
        self.last_tick = t;
        t
    }
}

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// The segments (their way and flags) that take a new entry, after its SYN (SYN_RECV), to a
/// flow's state: by IPVS's INPUT and OUTPUT rows for a NAT flow (`nat`), by the INPUT-ONLY
/// rows otherwise. States no segment leads to from SYN_RECV (LAST_ACK, LISTEN, SYNACK) get
/// none.
fn state_path(state: u8, nat: bool) -> &'static [(Direction, u8)] {
    use Direction::{Input as In, Output as Out};
    const ACK: (Direction, u8) = (In, TCP_ACK);
    const RST: (Direction, u8) = (In, TCP_RST);
    match (state, nat) {
        (abi::state::ESTABLISHED, _) => &[ACK],
        (abi::state::FIN_WAIT, false) => &[ACK, (In, TCP_FIN | TCP_ACK)],
        (abi::state::FIN_WAIT, true) => &[ACK, (Out, TCP_FIN | TCP_ACK)],
        (abi::state::CLOSE_WAIT, true) => &[ACK, (In, TCP_FIN | TCP_ACK)],
        (abi::state::TIME_WAIT, _) => &[(In, TCP_FIN)],
        (abi::state::CLOSE, _) => &[ACK, RST],
        (abi::state::SYN_SENT, true) => &[ACK, RST, (Out, TCP_SYN)],
        _ => &[],
    }
}

fn tcp_flags(b: u8) -> TcpFlags {
    TcpFlags {
        syn: b & TCP_SYN != 0,
        fin: b & TCP_FIN != 0,
        ack: b & TCP_ACK != 0,
        rst: b & TCP_RST != 0,
    }
}

fn info(pkt: &Packet) -> PacketInfo {
    pkt.info
}

/// Whether a service is one the program serves: its map key, or why not.
fn served(svc: &Service) -> Result<abi::Vip, String> {
    match svc.key {
        ServiceKey::Addr { proto, addr, port } => {
            let proto = match proto {
                Protocol::Tcp => PROTO_TCP,
                Protocol::Udp => PROTO_UDP,
                other => return Err(format!("{other:?} is not in the XDP program")),
            };
            if svc.conf.pe.as_deref().is_some_and(|p| !p.is_empty()) {
                return Err(
                    "a persistence engine needs the payload, which the program does not parse"
                        .into(),
                );
            }
            let (addr, family) = words(addr);
            Ok(abi::Vip {
                addr,
                port: port.to_be(),
                proto,
                family,
            })
        }
        ServiceKey::Fwmark { .. } => Err("a packet's firewall mark is not known at XDP".into()),
    }
}

/// Every real server of a service, and those in the trash.
fn live_dests(ipvs: &Ipvs) -> Vec<&Dest> {
    let mut live: Vec<&Dest> = Vec::new();
    for svc in ipvs.services() {
        live.extend(ipvs.service_dests(svc));
    }
    live.extend(ipvs.trash());
    live
}

/// Whether forwarding to `d` rewrites the Ethernet header with its next hop's address.
fn needs_mac(d: &Dest) -> bool {
    matches!(d.fwd, Forward::Route | Forward::Tunnel)
}

/// The program's entry for real server `d` (next-hop address left to the caller).
fn dest_entry(d: &Dest, svc: u32) -> abi::Dest {
    let (addr, family) = words(d.addr);
    let mut flags = 0;
    if d.is_available() {
        flags |= abi::DEST_AVAILABLE;
    }
    if d.flags & DEST_F_OVERLOAD != 0 {
        flags |= abi::DEST_OVERLOAD;
    }
    abi::Dest {
        addr,
        port: d.port.to_be(),
        family,
        fwd: match d.fwd {
            Forward::Masq => abi::FWD_MASQ,
            Forward::Tunnel => abi::FWD_TUNNEL,
            Forward::Route => abi::FWD_DROUTE,
            Forward::Local | Forward::Bypass => abi::FWD_LOCALNODE,
        },
        flags,
        svc,
        weight: d.weight,
        tun_type: match d.tun.kind {
            TunnelType::Ipip => abi::TUN_IPIP,
            TunnelType::Gue => abi::TUN_GUE,
            TunnelType::Gre => abi::TUN_GRE,
        },
        tun_flags: d.tun.flags as u8,
        tun_port: d.tun.port.to_be(),
        ..Default::default()
    }
}

/// An address as the program keeps it (network order words) and its family.
pub fn words(a: IpAddr) -> ([u32; 4], u8) {
    match a {
        IpAddr::V4(v4) => ([u32::from_ne_bytes(v4.octets()), 0, 0, 0], abi::AF_INET),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            ([w(0), w(4), w(8), w(12)], abi::AF_INET6)
        }
    }
}

/// The address the program's words hold.
pub fn addr_of(w: &[u32; 4], family: u8) -> IpAddr {
    if family == abi::AF_INET {
        return IpAddr::V4(Ipv4Addr::from(w[0].to_ne_bytes()));
    }
    let mut o = [0u8; 16];
    for (i, word) in w.iter().enumerate() {
        o[4 * i..4 * i + 4].copy_from_slice(&word.to_ne_bytes());
    }
    IpAddr::V6(Ipv6Addr::from(o))
}

/// The packet a flow key and TCP flags describe (no length).
fn packet(k: &abi::FlowKey, flags: u8) -> Packet {
    let saddr = addr_of(&k.caddr, k.family);
    let daddr = addr_of(&k.vaddr, k.family);
    let (sport, dport) = (u16::from_be(k.cport), u16::from_be(k.vport));
    if k.proto == PROTO_TCP {
        Packet::tcp(saddr, sport, daddr, dport, tcp_flags(flags))
    } else {
        Packet::udp(saddr, sport, daddr, dport)
    }
}

fn conn_key(p: &Packet) -> ConnKey {
    ConnKey {
        proto: p.proto,
        client: (p.saddr, p.sport),
        vip: (p.daddr, p.dport),
    }
}

/// The program's key of a connection entry.
pub fn flow_key(k: &ConnKey) -> abi::FlowKey {
    let (caddr, family) = words(k.client.0);
    abi::FlowKey {
        caddr,
        vaddr: words(k.vip.0).0,
        cport: k.client.1.to_be(),
        vport: k.vip.1.to_be(),
        proto: proto_num(k.proto),
        family,
        pad: 0,
    }
}

/// The program's key of a persistence template entry.
fn tmpl_key(k: &ConnKey) -> abi::TmplKey {
    let (caddr, family) = words(k.client.0);
    abi::TmplKey {
        caddr,
        vaddr: words(k.vip.0).0,
        vport: k.vip.1.to_be(),
        proto: proto_num(k.proto),
        family,
    }
}

fn proto_num(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => PROTO_TCP,
        Protocol::Udp => PROTO_UDP,
        _ => 0,
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds, the clock of `bpf_ktime_get_ns()` and (a tick behind
/// at most) of the `bpf_ktime_get_coarse_ns()` the program stamps flows with.
#[allow(unsafe_code)]
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

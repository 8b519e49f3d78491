//! Virtual services and the service table (`ip_vs_ctl.c`: `ip_vs_service_find` and friends).

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::dest::{DestId, DestList, Dests, SvcId};
use crate::model::{Family, Protocol, ServiceConf, ServiceKey};
use crate::sched::{DestChange, Scheduler};
use crate::stats::Stats;

/// The FTP control port: port-21 services also catch FTP data connections (`FTPPORT`).
pub const FTPPORT: u16 = 21;
/// The FTP data port (`FTPDATA`): never scheduled.
pub const FTPDATA: u16 = 20;

/// A virtual service with its scheduler and destination list.
#[derive(Debug)]
pub struct Service {
    /// handle
    pub id: SvcId,
    /// identity
    pub key: ServiceKey,
    /// settings from `-A`/`-E`
    pub conf: ServiceConf,
    /// destinations in kernel list order (head = most recently added)
    pub dests: Vec<DestId>,
    /// the bound scheduler
    pub sched: Box<dyn Scheduler>,
    /// counters and rates
    pub stats: Stats,
    /// insertion sequence (the order `--nosort` lists services in)
    pub seq: u64,
}

impl Service {
    /// The list view the scheduler works on.
    pub fn list<'a>(&'a self, dests: &'a Dests) -> DestList<'a> {
        dests.list(&self.dests)
    }

    /// Tell the scheduler about a configuration change of the list.
    pub fn notify(&mut self, dests: &Dests, change: DestChange) {
        let list = dests.list(&self.dests);
        self.sched.dests_changed(list, change);
    }

    /// The live destination with this address and port, if any (`ip_vs_lookup_dest`).
    pub fn find_dest(&self, dests: &Dests, af: Family, addr: &IpAddr, port: u16) -> Option<DestId> {
        self.dests.iter().copied().find(|id| {
            let d = dests.get(*id).expect("live id");
            d.af == af && d.addr == *addr && d.port == port
        })
    }
}

/// Key of the address table: the service key without the fwmark case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct AddrKey {
    proto: u8,
    addr: IpAddr,
    port: u16,
}

/// All services, addressable by key, with the counters the packet lookup needs.
#[derive(Debug, Default)]
pub struct ServiceTable {
    slots: Vec<Option<Service>>,
    free: Vec<u32>,
    by_addr: BTreeMap<AddrKey, SvcId>,
    by_mark: BTreeMap<(Family, u32), SvcId>,
    /// services with port 21 (`ftpsvc_counter`)
    ftp_services: u32,
    /// services with port 0 (`nullsvc_counter`)
    null_services: u32,
    next_seq: u64,
}

impl ServiceTable {
    /// Number of services.
    pub fn len(&self) -> usize {
        self.by_addr.len() + self.by_mark.len()
    }

    /// No services.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The service with exactly this key.
    pub fn find(&self, key: &ServiceKey) -> Option<SvcId> {
        match key {
            ServiceKey::Addr { proto, addr, port } => self
                .by_addr
                .get(&AddrKey {
                    proto: proto.number(),
                    addr: *addr,
                    port: *port,
                })
                .copied(),
            ServiceKey::Fwmark { af, mark } => self.by_mark.get(&(*af, *mark)).copied(),
        }
    }

    /// The service a packet belongs to (`ip_vs_service_find`): fwmark first, then the exact
    /// (protocol, address, port), then an FTP service for data connections (TCP to port 20 or
    /// an unprivileged port while a port-21 service exists), then a port-0 service.
    pub fn lookup_packet(
        &self,
        af: Family,
        fwmark: u32,
        proto: Protocol,
        daddr: &IpAddr,
        dport: u16,
    ) -> Option<SvcId> {
        if fwmark != 0 {
            if let Some(id) = self.by_mark.get(&(af, fwmark)) {
                return Some(*id);
            }
        }
        let k = |port| AddrKey {
            proto: proto.number(),
            addr: *daddr,
            port,
        };
        if let Some(id) = self.by_addr.get(&k(dport)) {
            return Some(*id);
        }
        if proto == Protocol::Tcp && self.ftp_services > 0 && (dport == FTPDATA || dport >= 1024) {
            if let Some(id) = self.by_addr.get(&k(FTPPORT)) {
                return Some(*id);
            }
        }
        if self.null_services > 0 {
            return self.by_addr.get(&k(0)).copied();
        }
        None
    }

    /// Insert a new service built by `make` (the caller checked the key is free).
    pub fn insert(&mut self, key: ServiceKey, make: impl FnOnce(SvcId, u64) -> Service) -> SvcId {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        let id = SvcId(idx);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.slots[idx as usize] = Some(make(id, seq));
        self.index(&key, id, true);
        id
    }

    /// Remove a service.
    pub fn remove(&mut self, id: SvcId) -> Option<Service> {
        let svc = self.slots.get_mut(id.0 as usize)?.take()?;
        self.free.push(id.0);
        self.index(&svc.key, id, false);
        Some(svc)
    }

    fn index(&mut self, key: &ServiceKey, id: SvcId, add: bool) {
        match key {
            ServiceKey::Addr { proto, addr, port } => {
                let k = AddrKey {
                    proto: proto.number(),
                    addr: *addr,
                    port: *port,
                };
                let delta: i64 = if add { 1 } else { -1 };
                if *port == FTPPORT {
                    self.ftp_services = (i64::from(self.ftp_services) + delta) as u32;
                }
                if *port == 0 {
                    self.null_services = (i64::from(self.null_services) + delta) as u32;
                }
                if add {
                    self.by_addr.insert(k, id);
                } else {
                    self.by_addr.remove(&k);
                }
            }
            ServiceKey::Fwmark { af, mark } => {
                if add {
                    self.by_mark.insert((*af, *mark), id);
                } else {
                    self.by_mark.remove(&(*af, *mark));
                }
            }
        }
    }

    /// The service with this handle.
    #[inline]
    pub fn get(&self, id: SvcId) -> Option<&Service> {
        self.slots.get(id.0 as usize).and_then(Option::as_ref)
    }

    /// Mutable access.
    #[inline]
    pub fn get_mut(&mut self, id: SvcId) -> Option<&mut Service> {
        self.slots.get_mut(id.0 as usize).and_then(Option::as_mut)
    }

    /// All services in insertion order (what `--nosort` shows; the kernel's own order is its
    /// hash-bucket order, which depends on a per-boot random value and so is not reproduced).
    pub fn iter(&self) -> impl Iterator<Item = &Service> {
        let mut v: Vec<&Service> = self.slots.iter().filter_map(Option::as_ref).collect();
        v.sort_by_key(|s| s.seq);
        v.into_iter()
    }

    /// Handles of all services in insertion order.
    pub fn ids(&self) -> Vec<SvcId> {
        self.iter().map(|s| s.id).collect()
    }
}

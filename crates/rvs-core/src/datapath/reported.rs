//! What a data plane that schedules on its own tells the core.
//!
//! The XDP data plane chooses real servers in the kernel, from tables and sequences the core
//! computed, and forwards without asking. So that listings, ActiveConn/InActConn, expiry and
//! the schedulers' counts still come from this engine, it reports
//! - every scheduled packet ([`Ipvs::reported_new`]): the entry is made as `packet_in` makes
//!   it (template, state, timer, connection counters), bound to the real server the data plane
//!   chose; the service's scheduler still runs, so its position moves on as the kernel's would
//!   (rr and wrr sequences stay in step), but its answer yields to what really happened;
//! - a flow whose entry expired while it still had unreported packets
//!   ([`Ipvs::reported_resume`]): the entry is made again, without scheduling or counting;
//! - state changes and the liveness of busy flows through [`Ipvs::conn_signal`];
//! - packets and bytes per real server in batches ([`Ipvs::reported_traffic`]), since the
//!   data plane counts every packet and reports only a few;
//! - and it learns which entries expired ([`Ipvs::take_expired`], once
//!   [`Ipvs::set_expiry_log`] turned the log on) to delete its own flows and templates.

use crate::conn::{ConnId, Direction};
use crate::datapath::{ConnKey, Packet, Verdict};
use crate::dest::DestId;
use crate::ipvs::Ipvs;
use crate::time::Tick;

/// The data plane's choice while its packet goes through `packet_in`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Adopt {
    /// the real server it went to
    pub dest: DestId,
    /// a new connection (the scheduler runs and the connection is counted), not one taken up
    /// again
    pub new: bool,
}

/// An entry that expired: its key, and whether it was a persistence template (whose client
/// address is then the masked client network and whose client port is 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expired {
    /// the entry's client and virtual sides
    pub key: ConnKey,
    /// a persistence template
    pub template: bool,
}

impl Ipvs {
    /// `pkt` was scheduled by the data plane to `dest` and forwarded (its bytes are not
    /// counted here: see [`reported_traffic`](Self::reported_traffic)). Returns the entry, or
    /// `None` when the core cannot record it (the real server is no longer in the service, or
    /// the table is full); an entry of the same tuple bound elsewhere is replaced.
    pub fn reported_new(&mut self, pkt: &Packet, dest: DestId, now: Tick) -> Option<ConnId> {
        let old = self
            .conns
            .find_in(pkt.proto, pkt.saddr, pkt.sport, pkt.daddr, pkt.dport);
        if let Some(id) = old {
            let st = self.conns.state(id).expect("found");
            if st.dest != Some(dest) && st.n_control == 0 {
                self.conns.expire_now(id, now);
            }
        }
        self.adopt = Some(Adopt { dest, new: true });
        let verdict = self.packet_in(pkt, now);
        self.adopt = None;
        match verdict {
            Verdict::Forward(fw) if fw.dest == dest => fw.conn,
            _ => None,
        }
    }

    /// A flow the data plane still forwards to `dest` whose entry is gone (it expired while
    /// the flow had packets not yet reported, or its report was lost) or bound to another
    /// real server (the data plane scheduled the tuple afresh and that report was lost): the
    /// entry is made again from `pkt` (a SYN for TCP; the caller moves the state on with
    /// [`conn_signal`](Self::conn_signal)), without running the scheduler or counting a
    /// connection. `None` when an entry bound to `dest` is there already, else as for
    /// [`reported_new`](Self::reported_new).
    pub fn reported_resume(&mut self, pkt: &Packet, dest: DestId, now: Tick) -> Option<ConnId> {
        let key = ConnKey {
            proto: pkt.proto,
            client: (pkt.saddr, pkt.sport),
            vip: (pkt.daddr, pkt.dport),
        };
        if let Some(id) = self.find_conn(&key) {
            if self.conn_dest(id) == Some(dest) {
                return None;
            }
            self.conns.expire_now(id, now);
            self.expire_due(now);
        }
        self.adopt = Some(Adopt { dest, new: false });
        let verdict = self.packet_in(pkt, now);
        self.adopt = None;
        match verdict {
            Verdict::Forward(fw) if fw.dest == dest => fw.conn,
            _ => None,
        }
    }

    /// `pkts` packets of `bytes` bytes forwarded to (or, for `Output`, from) `dest` that no
    /// report counted: added to the real server, its service and the totals.
    pub fn reported_traffic(&mut self, dest: DestId, dir: Direction, pkts: u64, bytes: u64) {
        if pkts == 0 {
            return;
        }
        let Some(d) = self.dests.get_mut(dest) else {
            return;
        };
        let sid = d.svc;
        let add = |s: &mut crate::stats::Stats| match dir {
            Direction::Input => s.add_in_n(pkts, bytes),
            Direction::Output => s.add_out_n(pkts, bytes),
        };
        add(&mut d.stats);
        if let Some(s) = self.services.get_mut(sid) {
            add(&mut s.stats);
        }
        add(&mut self.stats);
    }

    /// The real server entry `id` is bound to.
    pub fn conn_dest(&self, id: ConnId) -> Option<DestId> {
        self.conns.get(id).and_then(|c| c.st.dest)
    }

    /// The live persistence template of `key` (its client address the masked client
    /// network, its client port 0).
    pub fn find_live_template(&self, key: &ConnKey) -> Option<ConnId> {
        self.conns.find_template(&crate::conn::TemplateKey::service(
            key.proto,
            key.client.0,
            key.vip.0,
            key.vip.1,
        ))
    }

    /// The live connection entry (not a template) of `key`.
    pub fn find_conn(&self, key: &ConnKey) -> Option<ConnId> {
        self.conns
            .find_in(key.proto, key.client.0, key.client.1, key.vip.0, key.vip.1)
            .filter(|id| self.conns.get(*id).is_some_and(|c| !c.is_template()))
    }

    /// Keep (`true`) or stop keeping a log of the entries that expire, for
    /// [`take_expired`](Self::take_expired).
    pub fn set_expiry_log(&mut self, on: bool) {
        self.expired = on.then(Vec::new);
    }

    /// The entries that expired since the last call (empty when the log is off).
    pub fn take_expired(&mut self) -> Vec<Expired> {
        match &mut self.expired {
            Some(log) => std::mem::take(log),
            None => Vec::new(),
        }
    }

    /// Note an entry that is going (with the log on).
    pub(crate) fn log_expired(&mut self, c: &crate::conn::Conn) {
        if let Some(log) = &mut self.expired {
            log.push(Expired {
                key: ConnKey {
                    proto: c.proto,
                    client: (c.caddr, c.cport),
                    vip: (c.vaddr, c.vport),
                },
                template: c.is_template(),
            });
        }
    }
}

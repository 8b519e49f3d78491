//! The packet path of the engine (`ip_vs_core.c: ip_vs_in_hook, ip_vs_out_hook, ip_vs_schedule,
//! ip_vs_sched_persist`; `ip_vs_conn.c: ip_vs_conn_new, ip_vs_bind_dest, ip_vs_unbind_dest,
//! ip_vs_conn_expire, ip_vs_check_template`).
//!
//! A data plane describes each packet it sees as a [`Packet`] and gets a [`Verdict`]. The core
//! finds or creates the connection entry (scheduling a destination, through a persistence
//! template when the service is persistent), moves it through the protocol state machine,
//! keeps ActiveConn / InActConn / PersistConn and the OVERLOAD flag as the kernel does, counts
//! statistics, and re-arms the entry's idle timer. [`Ipvs::advance`] expires entries.
//!
//! The transport payload matters only to a persistence engine ([`crate::pe`]): a data plane
//! that serves `--pe sip` services hands it over with [`Ipvs::packet_in_with_payload`] (and
//! [`Ipvs::packet_out_with_payload`] for datagrams real servers send on their own, see
//! `datapath/conn_out.rs`); [`Ipvs::packet_in`] and [`Ipvs::packet_out`] are the same with an
//! empty payload.

mod conn_out;
mod reported;
mod session;

use std::net::IpAddr;

use crate::conn::{self, conn_flags, Conn, ConnId, CounterMove, Direction, TemplateKey};
use crate::dest::{DestId, SvcId};
use crate::ipvs::Ipvs;
use crate::model::{Family, Forward, Protocol, ServiceConf, ServiceKey};
use crate::pe::{Engine, PeData};
use crate::sched::{SchedCtx, SchedPacket};
use crate::service::{FTPDATA, FTPPORT};
use crate::time::Tick;

pub use crate::conn::tcp::TcpFlags;
pub use crate::conn::PacketInfo;
pub(crate) use conn_out::RsTable;
pub(crate) use reported::Adopt;
pub use reported::Expired;
pub use session::{ConnKey, Liveness};

/// What a data plane tells the core about one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    /// transport protocol
    pub proto: Protocol,
    /// what the protocol state machine looks at (TCP flags, SCTP chunk types)
    pub info: PacketInfo,
    /// source address and port
    pub saddr: IpAddr,
    /// source port
    pub sport: u16,
    /// destination address
    pub daddr: IpAddr,
    /// destination port
    pub dport: u16,
    /// netfilter mark (0 = none)
    pub fwmark: u32,
    /// IP datagram length in bytes (for the byte counters)
    pub len: u32,
}

impl Packet {
    /// A TCP segment.
    pub fn tcp(saddr: IpAddr, sport: u16, daddr: IpAddr, dport: u16, flags: TcpFlags) -> Packet {
        Packet {
            proto: Protocol::Tcp,
            info: PacketInfo::Tcp(flags),
            saddr,
            sport,
            daddr,
            dport,
            fwmark: 0,
            len: 60,
        }
    }
    /// A UDP datagram.
    pub fn udp(saddr: IpAddr, sport: u16, daddr: IpAddr, dport: u16) -> Packet {
        Packet {
            proto: Protocol::Udp,
            info: PacketInfo::Udp,
            saddr,
            sport,
            daddr,
            dport,
            fwmark: 0,
            len: 29,
        }
    }
    /// An SCTP packet whose first chunk has type `first` (and `second` after it).
    pub fn sctp(
        saddr: IpAddr,
        sport: u16,
        daddr: IpAddr,
        dport: u16,
        first: u8,
        second: Option<u8>,
    ) -> Packet {
        Packet {
            proto: Protocol::Sctp,
            info: PacketInfo::Sctp { first, second },
            saddr,
            sport,
            daddr,
            dport,
            fwmark: 0,
            len: 64,
        }
    }
    fn tcp_flags(&self) -> TcpFlags {
        match self.info {
            PacketInfo::Tcp(f) => f,
            _ => TcpFlags::default(),
        }
    }
    fn sctp_init(&self) -> bool {
        matches!(self.info, PacketInfo::Sctp { first, .. } if first == conn::sctp::chunk::INIT)
    }
    /// With a firewall mark.
    pub fn mark(mut self, fwmark: u32) -> Packet {
        self.fwmark = fwmark;
        self
    }
    /// With an IP length.
    pub fn len(mut self, len: u32) -> Packet {
        self.len = len;
        self
    }
    fn family(&self) -> Family {
        Family::of(&self.daddr)
    }
}

/// Where a forwarded packet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forwarding {
    /// the connection entry (`None` for one-packet scheduling, whose entry is gone already)
    pub conn: Option<ConnId>,
    /// the real server
    pub dest: DestId,
    /// real server address
    pub daddr: IpAddr,
    /// real server port (NAT rewrites to it)
    pub dport: u16,
    /// forwarding method
    pub fwd: Forward,
    /// this packet created the connection (it was scheduled)
    pub new: bool,
}

/// The core's decision about one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it (inbound: to the real server; outbound: back to the client as from the VIP).
    Forward(Forwarding),
    /// Not IPVS's packet (no service, or not a connection opener): leave it to the stack.
    Accept,
    /// A service matched but no real server is available: the kernel answers with ICMP port
    /// unreachable.
    Reject,
    /// Drop it (destination gone, connection table full).
    Drop,
}

/// Why scheduling produced no connection.
enum NoConn {
    /// no destination: `ip_vs_leave`
    NoDest,
    /// allocation failure or invalid input: drop
    Drop,
}

impl Ipvs {
    /// A packet from a client towards a virtual service (`ip_vs_in_hook`), without its
    /// payload: the same as [`packet_in_with_payload`](Self::packet_in_with_payload) with an
    /// empty one (a new connection to a `--pe sip` service is then dropped).
    pub fn packet_in(&mut self, pkt: &Packet, now: Tick) -> Verdict {
        self.packet_in_with_payload(pkt, &[], now)
    }

    /// A packet from a client towards a virtual service (`ip_vs_in_hook`) with its transport
    /// payload (the bytes after the UDP/TCP/SCTP header), which a persistence engine reads
    /// when the packet opens a connection to a service that has one.
    pub fn packet_in_with_payload(&mut self, pkt: &Packet, payload: &[u8], now: Tick) -> Verdict {
        self.expire_due(now);
        let mut found = self
            .conns
            .find_in(pkt.proto, pkt.saddr, pkt.sport, pkt.daddr, pkt.dport);
        if let Some(id) = found {
            if is_conn_opener(pkt) && self.should_reschedule(id) {
                if self.conns.state(id).expect("found").n_control == 0 {
                    self.conns.expire_now(id, now);
                }
                found = None;
            }
        }
        if let Some(id) = found {
            if let Some(did) = self.conns.state(id).expect("found").dest {
                if !self.dests.get(did).expect("bound").is_available() {
                    if !self.sysctls.expire_nodest_conn {
                        return Verdict::Drop;
                    }
                    self.conns.expire_now(id, now);
                    found = None;
                }
            }
        }
        let (id, new) = match found {
            Some(id) => (id, false),
            None => match self.try_schedule(pkt, payload, now) {
                Ok(Some(id)) => (id, true),
                Ok(None) => return Verdict::Accept,
                Err(v) => return v,
            },
        };
        self.account(id, Direction::Input, pkt, now, new)
    }

    /// A packet from a real server (or from the VIP side of a DR/TUN flow) towards a client
    /// (`ip_vs_out_hook`) without its payload: the same as
    /// [`packet_out_with_payload`](Self::packet_out_with_payload) with an empty one.
    pub fn packet_out(&mut self, pkt: &Packet, now: Tick) -> Verdict {
        self.packet_out_with_payload(pkt, &[], now)
    }

    /// A packet from a real server towards a client (`ip_vs_out_hook`) with its transport
    /// payload: NAT replies are matched to their entry and counted; an unmatched UDP datagram
    /// from a NAT real server of a service with a persistence engine creates its connection
    /// (and template) on the fly (`ip_vs_new_conn_out`).
    pub fn packet_out_with_payload(&mut self, pkt: &Packet, payload: &[u8], now: Tick) -> Verdict {
        self.expire_due(now);
        if let Some(id) = self
            .conns
            .find_out(pkt.proto, pkt.saddr, pkt.sport, pkt.daddr, pkt.dport)
        {
            return self.account(id, Direction::Output, pkt, now, false);
        }
        if pkt.proto == Protocol::Udp {
            if let Some(id) = self.rs_conn_out(pkt, payload, now) {
                return self.account(id, Direction::Output, pkt, now, true);
            }
        }
        Verdict::Accept
    }

    /// A new connection reusing the tuple of an old entry (`is_new_conn_expected` and the
    /// `expire_nodest_conn` rule for quiescent servers).
    /// The weight-0 rule applies whatever `conn_reuse_mode` says (Linux ≥ 5.16).
    fn should_reschedule(&self, id: ConnId) -> bool {
        let c = self.conns.get(id).expect("found");
        if self.sysctls.expire_nodest_conn {
            if let Some(did) = c.st.dest {
                if self.dests.get(did).expect("bound").weight == 0 {
                    return true;
                }
            }
        }
        if self.sysctls.conn_reuse_mode == 0 || c.st.control.is_some() {
            return false;
        }
        match c.proto {
            Protocol::Tcp => {
                c.st.state == conn::tcp::TIME_WAIT
                    || c.st.state == conn::tcp::CLOSE
                    || (self.sysctls.conn_reuse_mode & 2 != 0
                        && c.st.state == conn::tcp::FIN_WAIT
                        && c.st.flags & conn_flags::NOOUTPUT != 0)
            }
            Protocol::Sctp => c.st.state == conn::sctp::CLOSED,
            _ => false,
        }
    }

    /// `conn_schedule` of the protocol + `ip_vs_schedule`: Ok(None) = not ours (accept).
    fn try_schedule(
        &mut self,
        pkt: &Packet,
        payload: &[u8],
        now: Tick,
    ) -> Result<Option<ConnId>, Verdict> {
        let opener = match pkt.proto {
            Protocol::Tcp => {
                let f = pkt.tcp_flags();
                !f.rst && (f.syn || self.sysctls.sloppy_tcp)
            }
            Protocol::Sctp => {
                // `sctp_conn_schedule`: an ABORT never opens an association
                let abort = matches!(pkt.info, PacketInfo::Sctp { first, .. }
                    if first == conn::sctp::chunk::ABORT);
                !abort && (pkt.sctp_init() || self.sysctls.sloppy_sctp)
            }
            Protocol::Udp => true,
            Protocol::Ip => false,
        };
        if !opener {
            return Ok(None);
        }
        let af = pkt.family();
        let Some(sid) = self
            .services
            .lookup_packet(af, pkt.fwmark, pkt.proto, &pkt.daddr, pkt.dport)
        else {
            return Ok(None);
        };
        if pkt.sport == FTPDATA {
            return Ok(None);
        }
        let persistent = self.services.get(sid).expect("found").conf.is_persistent();
        let res = if persistent {
            self.sched_persist(sid, pkt, payload, now)
        } else {
            self.sched_plain(sid, pkt, now)
        };
        match res {
            Ok(id) => Ok(Some(id)),
            Err(NoConn::Drop) => Err(Verdict::Drop),
            Err(NoConn::NoDest) => {
                let svc_port = self.services.get(sid).expect("found").key.port();
                if svc_port == FTPPORT && pkt.dport != FTPPORT {
                    Ok(None)
                } else {
                    Err(Verdict::Reject)
                }
            }
        }
    }

    /// Ask the service's scheduler for a destination.
    fn pick(&mut self, sid: SvcId, pkt: &Packet, now: Tick) -> Option<DestId> {
        let svc = self.services.get_mut(sid).expect("live");
        let list = self.dests.list(&svc.dests);
        let sp = SchedPacket {
            proto: pkt.proto,
            saddr: pkt.saddr,
            sport: pkt.sport,
            daddr: pkt.daddr,
            dport: pkt.dport,
        };
        let mut ctx = SchedCtx {
            now,
            svc_flags: svc.conf.flags,
            rng: &mut self.rng,
        };
        match self.adopt {
            // a data plane chose already: for a new connection the scheduler runs (its
            // position moves on as the kernel's), but the choice is the one made; an entry
            // taken up again does not schedule
            Some(a) => {
                if a.new {
                    svc.sched.schedule(list, &sp, &mut ctx);
                }
                list.position(a.dest).map(|_| a.dest)
            }
            None => svc.sched.schedule(list, &sp, &mut ctx).map(|p| list.id(p)),
        }
    }

    fn sched_plain(&mut self, sid: SvcId, pkt: &Packet, now: Tick) -> Result<ConnId, NoConn> {
        let key = self.services.get(sid).expect("live").key;
        if !key.is_fwmark() && pkt.dport != key.port() {
            return Err(NoConn::NoDest);
        }
        let did = self.pick(sid, pkt, now).ok_or(NoConn::NoDest)?;
        let d = self.dests.get(did).expect("picked");
        let dport = if d.port != 0 { d.port } else { pkt.dport };
        let id = self.new_conn(sid, pkt, did, dport, now)?;
        self.count_conn(sid, did);
        Ok(id)
    }

    /// `ip_vs_sched_persist`: find or create the client's template, then the connection.
    /// With a persistence engine the template key also holds the engine's data from the
    /// payload; a packet the engine finds none in is dropped before anything is scheduled.
    fn sched_persist(
        &mut self,
        sid: SvcId,
        pkt: &Packet,
        payload: &[u8],
        now: Tick,
    ) -> Result<ConnId, NoConn> {
        let svc = self.services.get(sid).expect("live");
        let (key, netmask, timeout) = (svc.key, svc.conf.netmask, svc.conf.timeout);
        let engine = pe_engine(&svc.conf);
        let svc_port = key.port();
        let tkey = template_key(&key, netmask.apply(&pkt.saddr), pkt);
        let pe = match engine {
            Some(e) => Some((e, e.fill_param(pkt.proto, payload).ok_or(NoConn::Drop)?)),
            None => None,
        };
        let mut tpl = self.find_template(&tkey, pe);
        if let Some(t) = tpl {
            let elsewhere = self
                .adopt
                .is_some_and(|a| self.conns.state(t).expect("found").dest != Some(a.dest));
            if elsewhere || !self.template_usable(t) {
                self.conns.invalidate_template(t);
                tpl = None;
            }
        }
        let (tid, did) = match tpl {
            Some(t) => (t, self.conns.state(t).expect("found").dest.expect("bound")),
            None => {
                let did = self.pick(sid, pkt, now).ok_or(NoConn::NoDest)?;
                let d = self.dests.get(did).expect("picked");
                let tdport = if pkt.dport == svc_port && svc_port != FTPPORT {
                    d.port
                } else {
                    0
                };
                let timeout_ms = u64::from(timeout) * 1000;
                let mut t = Conn::template(&tkey, (d.addr, tdport), 0, timeout_ms);
                t.st.fwmark = pkt.fwmark;
                let tid = self
                    .bind_new(t, did, sid, pe_data(pe), now)
                    .ok_or(NoConn::Drop)?;
                self.conns.get_mut(tid).expect("new").timeout = timeout_ms;
                (tid, did)
            }
        };
        let d = self.dests.get(did).expect("bound");
        let dport = if pkt.dport == svc_port && d.port != 0 {
            d.port
        } else {
            pkt.dport
        };
        let res = self.new_conn(sid, pkt, did, dport, now);
        // ip_vs_conn_put(ct): the template's timer restarts from now
        self.conns.touch(tid, now);
        let id = res?;
        self.conns.get_mut(id).expect("new").control = Some(tid);
        self.conns.get_mut(tid).expect("live").n_control += 1;
        self.count_conn(sid, did);
        Ok(id)
    }

    /// `ip_vs_ct_in_get`: the template for `key`, with the engine's data when there is one.
    fn find_template(&self, key: &TemplateKey, pe: Option<(Engine, &[u8])>) -> Option<ConnId> {
        match pe {
            Some((engine, data)) => self.conns.find_template_pe(key, engine, data),
            None => self.conns.find_template(key),
        }
    }

    /// `ip_vs_check_template`: a template is unusable when its server is gone, or quiescent
    /// with `expire_quiescent_template`.
    fn template_usable(&self, tid: ConnId) -> bool {
        let Some(did) = self.conns.state(tid).expect("found").dest else {
            return false;
        };
        let d = self.dests.get(did).expect("bound");
        d.is_available() && !(self.sysctls.expire_quiescent_template && d.weight == 0)
    }

    /// `ip_vs_conn_new` for a real connection (not a template).
    fn new_conn(
        &mut self,
        sid: SvcId,
        pkt: &Packet,
        did: DestId,
        dport: u16,
        now: Tick,
    ) -> Result<ConnId, NoConn> {
        let svc = self.services.get(sid).expect("live");
        let ops = svc.conf.is_ops() && pkt.proto == Protocol::Udp;
        let d = self.dests.get(did).expect("picked");
        let flags = if ops { conn_flags::ONE_PACKET } else { 0 };
        let mut c = Conn::new(
            pkt.proto,
            (pkt.saddr, pkt.sport),
            (pkt.daddr, pkt.dport),
            (d.addr, dport),
            flags,
        );
        c.st.fwmark = pkt.fwmark;
        self.bind_new(c, did, sid, None, now).ok_or(NoConn::Drop)
    }

    /// Store an entry (a template with its engine data, if any) and bind it to its
    /// destination (`ip_vs_bind_dest`): flags from the destination's method, counters,
    /// OVERLOAD at the upper threshold.
    fn bind_new(
        &mut self,
        mut c: Conn,
        did: DestId,
        sid: SvcId,
        pe: Option<PeData>,
        now: Tick,
    ) -> Option<ConnId> {
        let d = self.dests.get(did).expect("live");
        c.st.flags |= dest_conn_flags(d.fwd);
        c.st.dest = Some(did);
        c.st.svc = Some(sid);
        let template = c.is_template();
        let id = match pe {
            Some(pe) => self.conns.insert_pe_template(c, pe, now),
            None => self.conns.insert(c, now),
        }
        .ok()?;
        let d = self.dests.get_mut(did).expect("live");
        d.refs += 1;
        if template {
            d.persistconns += 1;
        } else {
            d.inactconns += 1;
        }
        d.check_overload_on_bind();
        self.counts_changed(did);
        Some(id)
    }

    /// `ip_vs_conn_stats`: one more scheduled connection for the destination, the service that
    /// scheduled it and the totals.
    fn count_conn(&mut self, sid: SvcId, did: DestId) {
        if self.adopt.is_some_and(|a| !a.new) {
            return;
        }
        let d = self.dests.get_mut(did).expect("live");
        d.stats.add_conn();
        if let Some(s) = self.services.get_mut(sid) {
            s.stats.add_conn();
        }
        self.stats.add_conn();
    }

    /// Tell the destination's scheduler that its counters or OVERLOAD flag may have changed.
    pub(crate) fn counts_changed(&mut self, did: DestId) {
        let d = self.dests.get(did).expect("live");
        if !d.is_available() {
            return;
        }
        let (sid, pos) = (d.svc, d.pos);
        if let Some(svc) = self.services.get_mut(sid) {
            let list = self.dests.list(&svc.dests);
            svc.sched.counts_changed(list, pos);
        }
    }

    /// Statistics, state transition, timer re-arm for a packet of an existing entry.
    fn account(
        &mut self,
        id: ConnId,
        dir: Direction,
        pkt: &Packet,
        now: Tick,
        new: bool,
    ) -> Verdict {
        let c = self.conns.get(id).expect("live");
        let did = c.st.dest.expect("bound");
        if self.adopt.is_none() {
            self.count_packet(did, dir, u64::from(pkt.len));
        }
        self.set_state(id, dir, pkt);
        let st = self.conns.get_mut(id).expect("live");
        if dir == Direction::Input {
            st.in_pkts = st.in_pkts.wrapping_add(1);
        }
        let fw = Forwarding {
            conn: Some(id),
            dest: did,
            daddr: c.daddr,
            dport: c.dport,
            fwd: st.forward(),
            new,
        };
        if st.flags & conn_flags::ONE_PACKET != 0 {
            self.expire_conn(id, now);
            return Verdict::Forward(Forwarding { conn: None, ..fw });
        }
        self.conns.touch(id, now);
        Verdict::Forward(fw)
    }

    /// `ip_vs_in_stats` / `ip_vs_out_stats`: only while the destination is available.
    fn count_packet(&mut self, did: DestId, dir: Direction, bytes: u64) {
        let d = self.dests.get_mut(did).expect("bound");
        if !d.is_available() {
            return;
        }
        let sid = d.svc;
        let add = |s: &mut crate::stats::Stats| match dir {
            Direction::Output => s.add_out(bytes),
            Direction::Input => s.add_in(bytes),
        };
        add(&mut d.stats);
        if let Some(s) = self.services.get_mut(sid) {
            add(&mut s.stats);
        }
        add(&mut self.stats);
    }

    /// `ip_vs_set_state`: run the protocol state machine and move the connection between
    /// ActiveConn and InActConn when its activity changes.
    fn set_state(&mut self, id: ConnId, dir: Direction, pkt: &Packet) {
        self.set_state_info(id, dir, pkt.info);
    }

    fn set_state_info(&mut self, id: ConnId, dir: Direction, info: PacketInfo) {
        let secure = self.sysctls.secure_tcp;
        let st = self.conns.get_mut(id).expect("live");
        let change = conn::on_packet(st, dir, info, &self.timeouts, secure);
        let (did, control) = (st.dest, st.control);
        if let Some(did) = did {
            let d = self.dests.get_mut(did).expect("bound");
            match change.counter {
                CounterMove::None => {}
                CounterMove::ToActive => {
                    d.inactconns -= 1;
                    d.activeconns += 1;
                }
                CounterMove::ToInactive => {
                    d.activeconns -= 1;
                    d.inactconns += 1;
                }
            }
            if change.counter != CounterMove::None {
                self.counts_changed(did);
            }
        }
        if change.assure_control {
            if let Some(t) = control {
                self.conns.assure_template(t);
            }
        }
    }

    /// Run every timer due at `now`: connection expiry, the estimator (every 2 s), scheduler
    /// housekeeping and the destination trash (every 60 s). A data plane calls it from its own
    /// timer (see [`Ipvs::next_wakeup`]); packets only expire the connection entries that are
    /// due, so the periodic passes over all services never land on a packet's latency.
    pub fn advance(&mut self, now: Tick) {
        self.expire_due(now);
        self.periodic_due(now);
    }

    /// Expire the connection entries due at `now` (and run a pending `expire_nodest_conn`
    /// flush): what must happen before a packet is looked up.
    fn expire_due(&mut self, now: Tick) {
        while let Some(id) = self.conns.pop_expired(now) {
            self.expire_conn(id, now);
        }
        if self.nodest_flush_pending {
            self.nodest_flush_pending = false;
            self.expire_nodest_flush(now);
        }
    }

    /// `ip_vs_expire_nodest_conn_flush` (with `expire_nodest_conn`, after a destination was
    /// deleted): every entry whose destination is gone and that controls nothing is deleted,
    /// and then its template if that now controls nothing.
    fn expire_nodest_flush(&mut self, now: Tick) {
        let victims: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.st.n_control == 0
                    && c.st
                        .dest
                        .is_some_and(|d| !self.dests.get(d).expect("bound").is_available())
            })
            .map(|(id, _)| id)
            .collect();
        for id in victims {
            let Some(st) = self.conns.get_mut(id) else {
                continue; // deleted above as a controller
            };
            if st.n_control != 0 {
                continue;
            }
            let control = st.control;
            st.timeout = 0; // ip_vs_conn_del
            self.expire_conn(id, now);
            if let Some(t) = control {
                if self.conns.state(t).is_some_and(|c| c.n_control == 0) {
                    self.expire_conn(t, now);
                }
            }
        }
    }

    /// `ip_vs_conn_expire`: a template that still controls connections lingers 60 s more;
    /// anything else is detached from its template, unbound from its destination and freed.
    fn expire_conn(&mut self, id: ConnId, now: Tick) {
        let st = self.conns.get_mut(id).expect("due entry");
        if st.n_control > 0 {
            st.timeout = conn::TEMPLATE_REARM_MS;
            // re-armed from when the timer fired, not from when we got to it
            let fired = self.conns.get(id).expect("due entry").expires.min(now);
            self.conns.touch(id, fired);
            return;
        }
        let c = self.conns.remove(id).expect("due entry");
        self.log_expired(&c);
        if let Some(t) = c.st.control {
            let tst = self
                .conns
                .get_mut(t)
                .expect("controller outlives controlled");
            tst.n_control -= 1;
            let drop_tpl = c.st.timeout == 0
                && tst.n_control == 0
                && tst.state & conn::tpl_state::ASSURED == 0;
            if drop_tpl {
                self.conns.expire_now(t, now);
            }
        }
        if let Some(did) = c.st.dest {
            self.unbind(&c, did);
        }
    }

    /// `ip_vs_unbind_dest`.
    fn unbind(&mut self, c: &Conn, did: DestId) {
        let d = self.dests.get_mut(did).expect("bound");
        if c.is_template() {
            d.persistconns -= 1;
        } else if c.st.flags & conn_flags::INACTIVE != 0 {
            d.inactconns -= 1;
        } else {
            d.activeconns -= 1;
        }
        d.check_overload_on_unbind();
        d.refs -= 1;
        self.counts_changed(did);
    }

    /// Number of connection entries (templates included).
    pub fn conn_count(&self) -> usize {
        self.conns.len()
    }

    /// The connection table (for listings).
    pub fn conn_table(&self) -> &conn::ConnTable {
        &self.conns
    }

    /// What `ipvsadm -Lnc` lists, in table order.
    pub fn conn_listing(&self, now: Tick) -> Vec<conn::ListedConn> {
        self.conns.listing(now).collect()
    }

    /// The persistence engine and its data of a template (the `pe name` and `pe_data`
    /// columns of `ipvsadm -Lnc --persistent-conn`, e.g. `sip` and the Call-ID); `None` for
    /// connections and plain templates.
    pub fn conn_pe(&self, id: ConnId) -> Option<&PeData> {
        self.conns.pe_data(id)
    }
}

/// The persistence engine a service names, if any (an empty name is none, as in the kernel).
pub(crate) fn pe_engine(conf: &ServiceConf) -> Option<Engine> {
    conf.pe.as_deref().and_then(Engine::by_name)
}

/// Owned engine data for a new template.
fn pe_data(pe: Option<(Engine, &[u8])>) -> Option<PeData> {
    pe.map(|(engine, data)| PeData {
        engine,
        data: data.into(),
    })
}

/// Whether the packet starts a new connection on an existing entry's tuple (`is_new_conn`:
/// any TCP segment with SYN, even with RST, and an SCTP INIT). A SYN+RST that retires an old
/// entry is then not scheduled itself: it passes on, as the kernel lets it.
fn is_conn_opener(pkt: &Packet) -> bool {
    match pkt.proto {
        Protocol::Tcp => pkt.tcp_flags().syn,
        Protocol::Sctp => pkt.sctp_init(),
        _ => false,
    }
}

/// The template key for a packet of a persistent service: (protocol, vaddr, vport).
/// FTP services use vport 0; port-0 services use vport 0; fwmark services use protocol IP and
/// the mark in place of the address.
fn template_key(key: &ServiceKey, snet: IpAddr, pkt: &Packet) -> TemplateKey {
    let svc_port = key.port();
    if pkt.dport == svc_port {
        let vport = if svc_port == FTPPORT { 0 } else { pkt.dport };
        return TemplateKey::service(pkt.proto, snet, pkt.daddr, vport);
    }
    match key {
        ServiceKey::Fwmark { af, mark } => TemplateKey {
            proto: Protocol::Ip,
            caddr: snet,
            vaddr: mark_addr(*af, *mark),
            vport: 0,
        },
        ServiceKey::Addr { .. } => TemplateKey::service(pkt.proto, snet, pkt.daddr, 0),
    }
}

/// The kernel stores a fwmark in the first 32-bit word of the template's virtual address.
pub fn mark_addr(af: Family, mark: u32) -> IpAddr {
    conn::fwmark_vaddr(af, mark)
}

/// Flags a connection inherits from its destination's method (`__ip_vs_update_dest`): the
/// method, INACTIVE until the protocol says otherwise, NOOUTPUT unless NAT.
fn dest_conn_flags(fwd: Forward) -> u32 {
    let mut f = fwd.code() | conn_flags::INACTIVE;
    if !fwd.sees_output() {
        f |= conn_flags::NOOUTPUT;
    }
    f
}

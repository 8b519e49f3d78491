//! Connections started by real servers (`ip_vs_core.c: __ip_vs_rs_conn_out,
//! ip_vs_new_conn_out`, `ip_vs_pe_sip.c: ip_vs_sip_conn_out`, `ip_vs_ctl.c:
//! ip_vs_find_real_service, ip_vs_rs_hash`; Linux 6.1, unchanged since 4.7).
//!
//! A SIP server behind a NAT director also sends requests of its own (a BYE, a re-INVITE) to
//! clients that never wrote to it from that port. When such a UDP datagram leaves a real
//! server and matches no connection entry, the kernel looks the source up among the NAT
//! destinations (`ip_vs_find_real_service`: the first destination with that address and port
//! whose service has the packet's protocol, or is a fwmark service, in the real-server hash
//! chain, where the most recently hashed comes first). If that destination's service has a
//! persistence engine with a `conn_out` hook (`sip` has one, for UDP only), the kernel makes
//! the entries a client's request would have made, pointing at that server:
//!
//! * nothing for fwmark services, port-0 services or source port 0;
//! * for a persistent service, a template keyed by the client's network (the packet's
//!   destination under the service's netmask), the service's address and port and the
//!   engine's data taken from the *server's* datagram (no Call-ID: nothing is created and the
//!   datagram passes untranslated). An existing template is reused when it is usable and
//!   points at this server; otherwise it is invalidated and a new one is made;
//! * a connection client → VIP:port → server with the service's one-packet flag, controlled
//!   by the template, counted as a new connection of the server and service.
//!
//! The datagram is then handled as a reply of that connection (source rewritten to the VIP,
//! output statistics, the UDP state machine, which also assures the template), so the
//! client's answer finds the connection.
//!
//! The real-server chain order is kept by [`RsTable`]: a NAT destination is hashed when it is
//! added (also when revived from the trash) and when an edit changes its method or tunnel
//! settings, unhashed when deleted.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::{pe_data, pe_engine, NoConn};
use crate::conn::{conn_flags, Conn, ConnId, TemplateKey};
use crate::datapath::Packet;
use crate::dest::{Dest, DestId, SvcId};
use crate::ipvs::Ipvs;
use crate::model::{Forward, Protocol, ServiceKey};
use crate::time::Tick;

/// The NAT destinations of `ipvs->rs_table` by address and port, each chain most recently
/// hashed first (destinations of other methods never match a real-service lookup).
#[derive(Clone, Debug, Default)]
pub(crate) struct RsTable {
    chains: BTreeMap<(IpAddr, u16), Vec<DestId>>,
}

impl RsTable {
    /// `ip_vs_rs_hash`: a NAT destination not yet hashed goes to the head of its chain.
    pub(crate) fn hash(&mut self, d: &Dest) {
        if d.fwd != Forward::Masq {
            return;
        }
        let chain = self.chains.entry((d.addr, d.port)).or_default();
        if !chain.contains(&d.id) {
            chain.insert(0, d.id);
        }
    }

    /// `ip_vs_rs_unhash`.
    pub(crate) fn unhash(&mut self, d: &Dest) {
        let key = (d.addr, d.port);
        if let Some(chain) = self.chains.get_mut(&key) {
            chain.retain(|id| *id != d.id);
            if chain.is_empty() {
                self.chains.remove(&key);
            }
        }
    }

    /// Every hashed destination with its chain's address and port.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (IpAddr, u16, DestId)> + '_ {
        self.chains
            .iter()
            .flat_map(|(&(a, p), ids)| ids.iter().map(move |id| (a, p, *id)))
    }

    fn chain(&self, addr: IpAddr, port: u16) -> &[DestId] {
        self.chains.get(&(addr, port)).map_or(&[], Vec::as_slice)
    }
}

impl Ipvs {
    /// `__ip_vs_rs_conn_out` for an unmatched UDP datagram leaving a real server.
    pub(super) fn rs_conn_out(
        &mut self,
        pkt: &Packet,
        payload: &[u8],
        now: Tick,
    ) -> Option<ConnId> {
        let did = self.find_real_service(pkt)?;
        let sid = self.dests.get(did).expect("hashed").svc;
        let svc = self.services.get(sid)?;
        pe_engine(&svc.conf)?;
        self.new_conn_out(sid, did, pkt, payload, now).ok()
    }

    /// `ip_vs_find_real_service`: the first hashed NAT destination at the packet's source
    /// whose service has the packet's protocol (or is a fwmark service).
    fn find_real_service(&self, pkt: &Packet) -> Option<DestId> {
        let af = pkt.family();
        self.rs_table
            .chain(pkt.saddr, pkt.sport)
            .iter()
            .copied()
            .find(|id| {
                let d = self.dests.get(*id).expect("hashed");
                d.af == af
                    && match d.svc_key {
                        Some(ServiceKey::Fwmark { .. }) => true,
                        Some(ServiceKey::Addr { proto, .. }) => proto == pkt.proto,
                        None => false,
                    }
            })
    }

    /// `ip_vs_new_conn_out`: the template (persistent services) and the connection a client
    /// request to the service would have created, towards destination `did`.
    fn new_conn_out(
        &mut self,
        sid: SvcId,
        did: DestId,
        pkt: &Packet,
        payload: &[u8],
        now: Tick,
    ) -> Result<ConnId, NoConn> {
        let svc = self.services.get(sid).expect("live");
        let ServiceKey::Addr {
            addr: vaddr,
            port: vport,
            ..
        } = svc.key
        else {
            return Err(NoConn::Drop); // fwmark: the virtual address is unknown
        };
        if vport == 0 || pkt.sport == 0 {
            return Err(NoConn::Drop);
        }
        let ops = svc.conf.is_ops() && pkt.proto == Protocol::Udp;
        let tid = if svc.conf.is_persistent() {
            Some(self.conn_out_template(sid, did, (vaddr, vport), pkt, payload, now)?)
        } else {
            None
        };
        let flags = if ops { conn_flags::ONE_PACKET } else { 0 };
        let c = Conn::new(
            pkt.proto,
            (pkt.daddr, pkt.dport),
            (vaddr, vport),
            (pkt.saddr, pkt.sport),
            flags,
        );
        let res = self.bind_new(c, did, sid, None, now);
        if let Some(t) = tid {
            self.conns.touch(t, now); // ip_vs_conn_put(ct)
        }
        let id = res.ok_or(NoConn::Drop)?;
        if let Some(t) = tid {
            self.conns.get_mut(id).expect("new").control = Some(t);
            self.conns.get_mut(t).expect("live").n_control += 1;
        }
        self.count_conn(sid, did);
        Ok(id)
    }

    /// The persistent half of `ip_vs_new_conn_out`: the engine's data from the server's
    /// datagram, then the template for the client's network if it is usable and points at
    /// `did` (`ip_vs_check_template(ct, dest)`), else a new one (the old one invalidated).
    fn conn_out_template(
        &mut self,
        sid: SvcId,
        did: DestId,
        virt: (IpAddr, u16),
        pkt: &Packet,
        payload: &[u8],
        now: Tick,
    ) -> Result<ConnId, NoConn> {
        let svc = self.services.get(sid).expect("live");
        let snet = svc.conf.netmask.apply(&pkt.daddr);
        let timeout_ms = u64::from(svc.conf.timeout) * 1000;
        let pe = match pe_engine(&svc.conf) {
            Some(e) => Some((e, e.fill_param(pkt.proto, payload).ok_or(NoConn::Drop)?)),
            None => None,
        };
        let tkey = TemplateKey::service(pkt.proto, snet, virt.0, virt.1);
        if let Some(t) = self.find_template(&tkey, pe) {
            let same_dest = self.conns.state(t).expect("found").dest == Some(did);
            if same_dest && self.template_usable(t) {
                return Ok(t);
            }
            self.conns.invalidate_template(t);
        }
        let c = Conn::template(&tkey, (pkt.saddr, pkt.sport), 0, timeout_ms);
        let tid = self
            .bind_new(c, did, sid, pe_data(pe), now)
            .ok_or(NoConn::Drop)?;
        self.conns.get_mut(tid).expect("new").timeout = timeout_ms;
        Ok(tid)
    }
}

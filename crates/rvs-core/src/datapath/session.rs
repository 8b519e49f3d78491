//! What a proxying data plane tells the core about a connection it holds.
//!
//! A proxy (the userspace data plane) does not see packets: it accepts a connection, so the
//! kernel's view is rebuilt from socket events. The opening segments go through
//! [`Ipvs::packet_in`] / [`Ipvs::packet_out`] like real packets (they schedule and count);
//! afterwards the proxy reports
//! - state signals ([`Ipvs::conn_signal`]): a FIN or RST seen on one side, which move the entry
//!   through the protocol state machine exactly as that segment would, without counting it
//!   (the batch counters below include it);
//! - traffic batches ([`Ipvs::conn_traffic`]): packets and bytes per direction since the last
//!   report, counted on the destination, the service and the totals, re-arming the idle timer.
//!
//! Both answer whether the entry still carries traffic ([`Liveness`]): the kernel drops the
//! packets of a connection whose entry expired or whose real server was removed, and the proxy
//! then resets its sockets instead of relaying what IPVS would not.

use std::net::IpAddr;

use crate::conn::{ConnId, Direction, PacketInfo};
use crate::ipvs::Ipvs;
use crate::model::Protocol;
use crate::time::Tick;

/// The client side of a connection entry: what identifies it while the proxy holds it (the
/// slot of a [`ConnId`] may be reused once the entry is gone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnKey {
    /// transport protocol
    pub proto: Protocol,
    /// client address and port
    pub client: (IpAddr, u16),
    /// virtual address and port
    pub vip: (IpAddr, u16),
}

/// Whether an entry still forwards traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// the entry lives and its real server is available
    Live,
    /// the entry expired (or was replaced by a new connection on the same tuple)
    Gone,
    /// the real server was removed: the kernel drops this connection's packets
    DestUnavailable,
}

impl Ipvs {
    /// Whether `id` is still the entry of `key`, and its real server available.
    pub fn conn_liveness(&self, id: ConnId, key: &ConnKey) -> Liveness {
        let Some(c) = self.conns.get(id) else {
            return Liveness::Gone;
        };
        if c.is_template()
            || c.proto != key.proto
            || (c.caddr, c.cport) != key.client
            || (c.vaddr, c.vport) != key.vip
        {
            return Liveness::Gone;
        }
        match c.st.dest.and_then(|d| self.dests.get(d)) {
            Some(d) if d.is_available() => Liveness::Live,
            _ => Liveness::DestUnavailable,
        }
    }

    /// A segment that changes the entry's state (FIN, RST, the closing ACK) seen in `dir`:
    /// the state machine runs and the idle timer is re-armed, nothing is counted.
    pub fn conn_signal(
        &mut self,
        id: ConnId,
        key: &ConnKey,
        dir: Direction,
        info: PacketInfo,
        now: Tick,
    ) -> Liveness {
        self.expire_due(now);
        let live = self.conn_liveness(id, key);
        if live == Liveness::Live {
            self.set_state_info(id, dir, info);
            self.conns.touch(id, now);
        }
        live
    }

    /// `pkts` packets of `bytes` bytes in all seen in `dir` since the last report: counted as
    /// the kernel counts forwarded packets, and the idle timer re-armed (when `pkts` > 0).
    pub fn conn_traffic(
        &mut self,
        id: ConnId,
        key: &ConnKey,
        dir: Direction,
        pkts: u64,
        bytes: u64,
        now: Tick,
    ) -> Liveness {
        self.expire_due(now);
        let live = self.conn_liveness(id, key);
        if live != Liveness::Live || pkts == 0 {
            return live;
        }
        let st = self.conns.get_mut(id).expect("live");
        let did = st.dest.expect("bound");
        if dir == Direction::Input {
            st.in_pkts = st.in_pkts.wrapping_add(pkts as u32);
        }
        let sid = self.dests.get(did).expect("bound").svc;
        let add = |s: &mut crate::stats::Stats| match dir {
            Direction::Input => s.add_in_n(pkts, bytes),
            Direction::Output => s.add_out_n(pkts, bytes),
        };
        add(&mut self.dests.get_mut(did).expect("bound").stats);
        if let Some(s) = self.services.get_mut(sid) {
            add(&mut s.stats);
        }
        add(&mut self.stats);
        self.conns.touch(id, now);
        live
    }
}

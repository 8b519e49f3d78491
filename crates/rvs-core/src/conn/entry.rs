//! The connection entry as the engine sees it (`struct ip_vs_conn`, `include/net/ip_vs.h`):
//! [`Conn`] is the full value (addresses, ports, flags, state…), [`ConnState`] the part the
//! engine updates in place while the entry lives in the table.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{conn_flags, state_name, INITIAL_TIMEOUT_MS};
use crate::dest::{DestId, SvcId};
use crate::model::{Family, Forward, Protocol};
use crate::time::Tick;

/// Handle of an entry in a [`super::ConnTable`]. Valid until the entry is removed; the slot may
/// then be reused by a later insert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u32);

/// The mutable part of an entry: what packets, the state machines and the engine change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnState {
    /// `IP_VS_CONN_F_*` bits ([`conn_flags`]). The table owns `HASHED`; change `NO_CPORT` only
    /// through [`super::ConnTable::fill_cport`] and never toggle `TEMPLATE`.
    pub flags: u32,
    /// protocol state (`tcp::*`, `udp::*`, `sctp::*`, or `tpl_state::*` for templates)
    pub state: u16,
    /// idle timeout in milliseconds, used when the timer is next re-armed
    pub timeout: u64,
    /// number of entries this one controls (templates, FTP control connections)
    pub n_control: u32,
    /// packets seen in the input direction (sync threshold bookkeeping)
    pub in_pkts: u32,
    /// firewall mark of the packet that created the entry
    pub fwmark: u32,
    /// the destination the entry is bound to
    pub dest: Option<DestId>,
    /// the template (or FTP control connection) that controls this entry
    pub control: Option<ConnId>,
    /// the service the entry was scheduled by, if the engine records it
    pub svc: Option<SvcId>,
}

impl ConnState {
    /// The forwarding method encoded in the flags.
    pub fn forward(&self) -> Forward {
        match self.flags & conn_flags::FWD_MASK {
            conn_flags::MASQ => Forward::Masq,
            conn_flags::LOCALNODE => Forward::Local,
            conn_flags::TUNNEL => Forward::Tunnel,
            conn_flags::DROUTE => Forward::Route,
            _ => Forward::Bypass,
        }
    }
    /// Whether this is a persistence template.
    pub fn is_template(&self) -> bool {
        self.flags & conn_flags::TEMPLATE != 0
    }
}

/// A connection entry or persistence template, by value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conn {
    /// protocol (`Ip` only for fwmark templates)
    pub proto: Protocol,
    /// client address (masked client network for templates)
    pub caddr: IpAddr,
    /// client port (0 for templates and `NO_CPORT` entries)
    pub cport: u16,
    /// virtual address (for fwmark templates, the mark: see [`fwmark_vaddr`])
    pub vaddr: IpAddr,
    /// virtual port
    pub vport: u16,
    /// destination (real server) address
    pub daddr: IpAddr,
    /// destination port
    pub dport: u16,
    /// expiry time of the timer (set by the table; ignored by `insert`)
    pub expires: Tick,
    /// the mutable part
    pub st: ConnState,
}

impl Conn {
    /// A new connection entry as `ip_vs_conn_new` makes it: state 0, timeout 3 s, no
    /// destination bound, the given `IP_VS_CONN_F_*` flags.
    pub fn new(
        proto: Protocol,
        client: (IpAddr, u16),
        virt: (IpAddr, u16),
        dest: (IpAddr, u16),
        flags: u32,
    ) -> Conn {
        Conn {
            proto,
            caddr: client.0,
            cport: client.1,
            vaddr: virt.0,
            vport: virt.1,
            daddr: dest.0,
            dport: dest.1,
            expires: Tick::ZERO,
            st: ConnState {
                flags,
                state: 0,
                timeout: INITIAL_TIMEOUT_MS,
                n_control: 0,
                in_pkts: 0,
                fwmark: 0,
                dest: None,
                control: None,
                svc: None,
            },
        }
    }

    /// A persistence template for `key` pointing at `dest` (`ip_vs_sched_persist`): client
    /// port 0, `TEMPLATE` set, the persistence timeout in milliseconds.
    pub fn template(key: &TemplateKey, dest: (IpAddr, u16), flags: u32, timeout_ms: u64) -> Conn {
        let mut c = Conn::new(
            key.proto,
            (key.caddr, 0),
            (key.vaddr, key.vport),
            dest,
            flags | conn_flags::TEMPLATE,
        );
        c.st.timeout = timeout_ms;
        c
    }

    /// Address family of the client / virtual side (`cp->af`).
    pub fn af(&self) -> Family {
        Family::of(&self.caddr)
    }
    /// Address family of the destination (`cp->daf`; differs only for mixed-family tunnels).
    pub fn daf(&self) -> Family {
        Family::of(&self.daddr)
    }
    /// Whether this is a persistence template.
    pub fn is_template(&self) -> bool {
        self.st.is_template()
    }
    /// The state name `ipvsadm -Lnc` prints for this entry.
    pub fn state_name(&self) -> &'static str {
        state_name(self.proto, self.st.state, self.is_template())
    }
}

/// The virtual "address" of a fwmark template: the kernel stores the mark, in network order,
/// in the first 32 bits of `vaddr` (`0.0.0.1` for mark 1; `0:1::` for an IPv6 service).
pub fn fwmark_vaddr(af: Family, mark: u32) -> IpAddr {
    match af {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(mark)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(u128::from(mark) << 96)),
    }
}

/// What a template lookup matches on (`ip_vs_ct_in_get` with no persistence engine).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TemplateKey {
    /// protocol of the service, or `Ip` for fwmark services
    pub proto: Protocol,
    /// the client network (client address with the persistence mask applied)
    pub caddr: IpAddr,
    /// virtual address, or the mark for fwmark services
    pub vaddr: IpAddr,
    /// virtual port, 0 for port-0 / FTP / fwmark services, 0xffff once invalidated
    pub vport: u16,
}

impl TemplateKey {
    /// Key of an address service's template.
    pub fn service(proto: Protocol, caddr_masked: IpAddr, vaddr: IpAddr, vport: u16) -> Self {
        TemplateKey {
            proto,
            caddr: caddr_masked,
            vaddr,
            vport,
        }
    }
    /// Key of a fwmark service's template: protocol `IP`, the mark as address, port 0.
    pub fn fwmark(caddr_masked: IpAddr, mark: u32) -> Self {
        TemplateKey {
            proto: Protocol::Ip,
            caddr: caddr_masked,
            vaddr: fwmark_vaddr(Family::of(&caddr_masked), mark),
            vport: 0,
        }
    }
}

/// One line of `ipvsadm -Lnc` (`/proc/net/ip_vs_conn`), not yet rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListedConn {
    /// the entry
    pub id: ConnId,
    /// protocol (its `name()` is the `pro` column: `TCP`, `UDP`, `SCTP`, `IP`)
    pub proto: Protocol,
    /// seconds until the timer fires, `(expires - now) / 1000` truncated, 0 once due
    pub expire_secs: u64,
    /// state column (`ESTABLISHED`, `UDP`, `NONE`, `ASSURED`, `ERR!`, …)
    pub state: &'static str,
    /// client address and port
    pub client: (IpAddr, u16),
    /// virtual address and port
    pub virt: (IpAddr, u16),
    /// destination address and port
    pub dest: (IpAddr, u16),
    /// `IP_VS_CONN_F_*` flags (`SYNC` gives the `Origin` column of `ip_vs_conn_sync`)
    pub flags: u32,
}

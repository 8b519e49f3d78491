//! Connection tracking: the connection table, the TCP / UDP / SCTP state machines, the
//! per-state timeouts and expiry (`net/netfilter/ipvs/ip_vs_conn.c`, `ip_vs_proto_tcp.c`,
//! `ip_vs_proto_udp.c`, `ip_vs_proto_sctp.c`, `include/net/ip_vs.h`; Linux 6.1).
//!
//! * [`ConnTable`] stores connection entries and persistence templates ([`Conn`]), hashed by
//!   their client side, with the kernel's inbound, outbound and template lookups, template
//!   invalidation, and a timer per entry in an exact millisecond [`wheel`]. Templates of
//!   services with a persistence engine also carry the engine's data
//!   ([`ConnTable::insert_pe_template`], [`ConnTable::find_template_pe`]).
//! * [`on_packet`] runs a protocol state machine ([`tcp`], [`udp`], [`sctp`]) for one packet,
//!   sets the entry's new idle timeout from [`Timeouts`], and says how the destination's
//!   active / inactive counters must move; the engine applies that and re-arms the timer.
//! * [`state_name`] and [`ConnTable::listing`] give what `ipvsadm -Lnc` prints.
//!
//! The table only reports expiries; the engine decides (a template that still controls
//! connections is re-armed with [`TEMPLATE_REARM_MS`], others are unbound and removed).
//!
//! ```
//! use rvs_core::conn::{conn_flags, on_packet, tcp, Conn, ConnTable, Direction, PacketInfo, Timeouts};
//! use rvs_core::model::Protocol;
//! use rvs_core::time::Tick;
//!
//! let mut table = ConnTable::new(1024, 42);
//! let (c, v, d) = ("10.0.0.5".parse().unwrap(), "192.168.1.100".parse().unwrap(), "10.1.0.1".parse().unwrap());
//! let flags = conn_flags::MASQ | conn_flags::INACTIVE;
//! let id = table.insert(Conn::new(Protocol::Tcp, (c, 51234), (v, 80), (d, 80), flags), Tick(0)).unwrap();
//! assert_eq!(table.find_in(Protocol::Tcp, c, 51234, v, 80), Some(id));
//! assert_eq!(table.find_out(Protocol::Tcp, d, 80, c, 51234), Some(id));
//!
//! let syn = PacketInfo::Tcp(tcp::TcpFlags::from_byte(0x02));
//! let change = on_packet(table.get_mut(id).unwrap(), Direction::Input, syn, &Timeouts::default(), false);
//! assert_eq!(change.new_state, tcp::SYN_RECV);
//! table.touch(id, Tick(5));
//! assert_eq!(table.pop_expired(Tick(60_004)), None);
//! assert_eq!(table.pop_expired(Tick(60_005)), Some(id));
//! ```

mod entry;
pub mod sctp;
mod state;
mod table;
pub mod tcp;
mod timeouts;
pub mod udp;
pub mod wheel;

#[cfg(test)]
mod table_tests;

pub use entry::{fwmark_vaddr, Conn, ConnId, ConnState, ListedConn, TemplateKey};
pub use state::{on_packet, CounterMove, Direction, PacketInfo, StateChange};
pub use table::{ConnTable, TableFull};
pub use timeouts::{Timeouts, MAX_SET_SECS};

use crate::model::Protocol;

/// Connection flag bits (`IP_VS_CONN_F_*`, `include/uapi/linux/ip_vs.h`).
pub mod conn_flags {
    /// mask of the forwarding method
    pub const FWD_MASK: u32 = 0x0007;
    /// masquerading / NAT
    pub const MASQ: u32 = 0x0000;
    /// local node
    pub const LOCALNODE: u32 = 0x0001;
    /// IP tunnel
    pub const TUNNEL: u32 = 0x0002;
    /// direct routing
    pub const DROUTE: u32 = 0x0003;
    /// cache bypass
    pub const BYPASS: u32 = 0x0004;
    /// entry created by the sync daemon
    pub const SYNC: u32 = 0x0020;
    /// hashed in the table (owned by the table)
    pub const HASHED: u32 = 0x0040;
    /// no output packets expected (DR / tunnel / local) until one is seen
    pub const NOOUTPUT: u32 = 0x0080;
    /// counted in the destination's `inactconns`
    pub const INACTIVE: u32 = 0x0100;
    /// output sequence numbers need adjusting (NAT helpers)
    pub const OUT_SEQ: u32 = 0x0200;
    /// input sequence numbers need adjusting (NAT helpers)
    pub const IN_SEQ: u32 = 0x0400;
    /// both sequence adjustment bits
    pub const SEQ_MASK: u32 = 0x0600;
    /// created without a client port (FTP data), matched with port 0
    pub const NO_CPORT: u32 = 0x0800;
    /// persistence template, not a connection
    pub const TEMPLATE: u32 = 0x1000;
    /// one-packet scheduling: not hashed, expires after its packet
    pub const ONE_PACKET: u32 = 0x2000;
    /// netfilter conntrack kept (not sent to a backup)
    pub const NFCT: u32 = 1 << 16;
}

/// Template states (`IP_VS_CTPL_S_*`): a template is `NONE` until one of its connections
/// establishes (TCP, SCTP) or sees a reply (UDP), then `ASSURED`.
pub mod tpl_state {
    /// not assured
    pub const NONE: u16 = 0;
    /// assured (a bit, OR-ed in)
    pub const ASSURED: u16 = 1;
    /// number of template states
    pub const LAST: u16 = 2;
}

/// The kernel tick rate of the reference (Debian 12 amd64: `CONFIG_HZ=250`); it only bounds
/// the values `--set` accepts (`INT_MAX / HZ`).
pub const HZ: u64 = 250;

/// Timeout of a new entry until its first state transition (`ip_vs_conn_new`: `3*HZ`).
pub const INITIAL_TIMEOUT_MS: u64 = 3_000;

/// Timeout a template gets when its timer fires while it still controls connections
/// (`ip_vs_conn_expire`: `60*HZ`); it keeps this value afterwards.
pub const TEMPLATE_REARM_MS: u64 = 60_000;

/// The state name `/proc/net/ip_vs_conn` and `ipvsadm -Lnc` print (`ip_vs_state_name`):
/// `NONE` / `ASSURED` for templates, the protocol's table otherwise, `ERR!` out of range.
pub fn state_name(proto: Protocol, state: u16, is_template: bool) -> &'static str {
    if is_template {
        return match state {
            tpl_state::NONE => "NONE",
            tpl_state::ASSURED => "ASSURED",
            _ => "ERR!",
        };
    }
    match proto {
        Protocol::Tcp => tcp::state_name(state),
        Protocol::Udp => udp::state_name(state),
        Protocol::Sctp => sctp::state_name(state),
        // no protocol handler: the kernel prints NONE for protocol IP
        Protocol::Ip => "NONE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_as_printed() {
        assert_eq!(
            state_name(Protocol::Tcp, tcp::ESTABLISHED, false),
            "ESTABLISHED"
        );
        assert_eq!(state_name(Protocol::Tcp, tcp::SYN_RECV, false), "SYN_RECV");
        assert_eq!(state_name(Protocol::Tcp, 11, false), "ERR!");
        assert_eq!(state_name(Protocol::Udp, 0, false), "UDP");
        assert_eq!(
            state_name(Protocol::Sctp, sctp::COOKIE_ECHOED, false),
            "C-ECHOED"
        );
        // templates, whatever their protocol
        assert_eq!(state_name(Protocol::Tcp, tpl_state::NONE, true), "NONE");
        assert_eq!(
            state_name(Protocol::Udp, tpl_state::ASSURED, true),
            "ASSURED"
        );
        assert_eq!(
            state_name(Protocol::Ip, tpl_state::ASSURED, true),
            "ASSURED"
        );
        assert_eq!(state_name(Protocol::Tcp, 2, true), "ERR!");
        assert_eq!(state_name(Protocol::Ip, 0, false), "NONE");
    }
}

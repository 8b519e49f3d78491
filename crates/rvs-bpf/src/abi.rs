//! The Rust mirror of `bpf/rvs_abi.h`: the same structs with `#[repr(C)]`, and compile-time
//! checks of every size and offset, so the two cannot drift apart silently.

use std::mem::{offset_of, size_of};

/// Map sizes (`RVS_MAX_*`).
pub const MAX_SERVICES: u32 = 4096;
/// `RVS_MAX_IFINDEX`: interface indexes below this can be served
pub const MAX_IFINDEX: u32 = 65_536;
/// `RVS_IFACE_ON`
pub const IFACE_ON: u16 = 0x1;
/// Real servers of all services together.
pub const MAX_DESTS: u32 = 16384;
/// Entries of all schedule sequences together.
pub const SEQ_SLOTS: u32 = 262_144;
/// Flows the connection map holds.
pub const MAX_FLOWS: u32 = 1_048_576;

/// `RVS_AF_INET`
pub const AF_INET: u8 = 2;
/// `RVS_AF_INET6`
pub const AF_INET6: u8 = 10;

/// `RVS_FWD_MASQ`
pub const FWD_MASQ: u8 = 0;
/// `RVS_FWD_TUNNEL`
pub const FWD_TUNNEL: u8 = 2;
/// `RVS_FWD_DROUTE`
pub const FWD_DROUTE: u8 = 3;

/// `RVS_FWD_LOCALNODE`
pub const FWD_LOCALNODE: u8 = 1;
/// `RVS_TUN_IPIP`
pub const TUN_IPIP: u8 = 0;
/// `RVS_TUN_GUE`
pub const TUN_GUE: u8 = 1;
/// `RVS_TUN_GRE`
pub const TUN_GRE: u8 = 2;
/// `RVS_SVC_PERSISTENT`
pub const SVC_PERSISTENT: u32 = 0x1;
/// `RVS_SVC_ONEPACKET`
pub const SVC_ONEPACKET: u32 = 0x4;
/// `RVS_SVC_SCHED1` (sh-fallback, mh-fallback)
pub const SVC_SCHED1: u32 = 0x8;
/// `RVS_SVC_SCHED2` (sh-port, mh-port)
pub const SVC_SCHED2: u32 = 0x10;
/// `RVS_SCHED_SEQ`: the service's sequence, in turn (rr, wrr)
pub const SCHED_SEQ: u32 = 0;
/// `RVS_SCHED_SH`: the kernel's sh table
pub const SCHED_SH: u32 = 1;
/// `RVS_SCHED_DH`: the kernel's dh table
pub const SCHED_DH: u32 = 2;
/// `RVS_SCHED_MH`: the kernel's mh (Maglev) table
pub const SCHED_MH: u32 = 3;
/// `RVS_MH_TAB_SIZE`: slots of an mh table
pub const MH_TAB_SIZE: u32 = 4093;
/// `RVS_SCHED_LC` … `RVS_SCHED_OVF`: the connection-count schedulers
pub const SCHED_LC: u32 = 4;
pub const SCHED_WLC: u32 = 5;
pub const SCHED_SED: u32 = 6;
pub const SCHED_NQ: u32 = 7;
pub const SCHED_FO: u32 = 8;
pub const SCHED_OVF: u32 = 9;
/// `RVS_SCHED_LBLC`, `RVS_SCHED_LBLCR`: the locality schedulers (tables `rvs_lblc`,
/// `rvs_lblcr`, the wlc choice of the list otherwise)
pub const SCHED_LBLC: u32 = 10;
pub const SCHED_LBLCR: u32 = 11;
/// `RVS_SCHED_TWOS`: weighted random two choices over the list
pub const SCHED_TWOS: u32 = 12;
/// `RVS_MAX_LOCALITY`: entries of `rvs_lblc` and of `rvs_lblcr`
pub const MAX_LOCALITY: u32 = 65_536;
/// `RVS_LBLCR_SET`: members of an lblcr set at most
pub const LBLCR_SET: usize = 16;
/// `RVS_MAX_LIST`: the longest list a connection-count scheduler scans
pub const MAX_LIST: u32 = 4096;
/// `RVS_HASH_TAB_SIZE`: buckets of an sh or dh table
pub const HASH_TAB_SIZE: u32 = 256;
/// `RVS_NO_DEST`: an empty bucket
pub const NO_DEST: u32 = u32::MAX;
/// `RVS_DEST_AVAILABLE`
pub const DEST_AVAILABLE: u32 = 0x1;
/// `RVS_DEST_OVERLOAD`
pub const DEST_OVERLOAD: u32 = 0x2;

/// Flow states (`RVS_S_*`, the kernel's `IP_VS_TCP_S_*`).
pub mod state {
    pub const NONE: u8 = 0;
    pub const ESTABLISHED: u8 = 1;
    pub const SYN_SENT: u8 = 2;
    pub const SYN_RECV: u8 = 3;
    pub const FIN_WAIT: u8 = 4;
    pub const TIME_WAIT: u8 = 5;
    pub const CLOSE: u8 = 6;
    pub const CLOSE_WAIT: u8 = 7;
    pub const LAST_ACK: u8 = 8;
    pub const LISTEN: u8 = 9;
    pub const SYNACK: u8 = 10;
}

/// `RVS_FLOW_REPLY`: [`Flow::flags`] of a NAT flow's reply entry.
pub const FLOW_REPLY: u8 = 0x1;

/// `RVS_DIR_*`: which way an event's packet went.
pub mod dir {
    /// client to real server
    pub const INPUT: u8 = 0;
    /// a NAT real server's reply
    pub const OUTPUT: u8 = 1;
}

/// Global counters, in the order of `enum rvs_counter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Counter {
    Packets = 0,
    PassNotIp,
    PassNoService,
    Malformed,
    Fragment,
    IpOptions,
    NoDest,
    FlowNew,
    FlowHit,
    FlowFull,
    Tx,
    UnsupportedFwd,
    NoRoom,
    TtlExpired,
    NoIface,
    IcmpSteered,
    PersistHit,
    EventLost,
    Reused,
    FragForwarded,
    NatReply,
    Redirect,
    ViaKernel,
    NoRoute,
    TooBig,
    BadCsum,
    StaleReply,
    NextHopKept,
}

/// `RVS_C_COUNT`
pub const COUNTERS: usize = 28;

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; COUNTERS] = [
        Counter::Packets,
        Counter::PassNotIp,
        Counter::PassNoService,
        Counter::Malformed,
        Counter::Fragment,
        Counter::IpOptions,
        Counter::NoDest,
        Counter::FlowNew,
        Counter::FlowHit,
        Counter::FlowFull,
        Counter::Tx,
        Counter::UnsupportedFwd,
        Counter::NoRoom,
        Counter::TtlExpired,
        Counter::NoIface,
        Counter::IcmpSteered,
        Counter::PersistHit,
        Counter::EventLost,
        Counter::Reused,
        Counter::FragForwarded,
        Counter::NatReply,
        Counter::Redirect,
        Counter::ViaKernel,
        Counter::NoRoute,
        Counter::TooBig,
        Counter::BadCsum,
        Counter::StaleReply,
        Counter::NextHopKept,
    ];
}

/// `struct rvs_vip`: key of the services map. Addresses and ports in network order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct Vip {
    pub addr: [u32; 4],
    pub port: u16,
    pub proto: u8,
    pub family: u8,
}

/// `struct rvs_service`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Service {
    pub id: u32,
    pub flags: u32,
    pub sched: u32,
    pub seq_off: u32,
    pub seq_len: u32,
    pub persist_timeout: u32,
    pub netmask: u32,
    /// lblcr: `lblcr_expiration` in milliseconds
    pub expire_ms: u32,
}

/// `struct rvs_dest`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Dest {
    pub addr: [u32; 4],
    pub port: u16,
    pub family: u8,
    pub fwd: u8,
    pub mac: [u8; 6],
    pub pad: u16,
    pub flags: u32,
    pub svc: u32,
    pub weight: i32,
    pub tun_type: u8,
    pub tun_flags: u8,
    pub tun_port: u16,
}

/// `struct rvs_flow_key`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct FlowKey {
    pub caddr: [u32; 4],
    pub vaddr: [u32; 4],
    pub cport: u16,
    pub vport: u16,
    pub proto: u8,
    pub family: u8,
    pub pad: u16,
}

/// `struct rvs_nexthop`: a next hop the program looked up in the kernel's FIB and kept
/// (valid while `gen` is the generation in `rvs_nh_gen`, see [`crate::NextHops`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct NextHop {
    pub gen: u32,
    /// the interface the packet arrived on
    pub iif: u16,
    /// the interface it leaves by
    pub oif: u16,
    /// the next hop's Ethernet address
    pub dmac: [u8; 6],
    /// the way out's Ethernet address
    pub smac: [u8; 6],
    /// the way out's MTU (at most 65535)
    pub mtu: u16,
    pub pad: u16,
    /// the destination address folded to 32 bits (a reply entry's client; 0 toward a real
    /// server)
    pub tag: u32,
}

/// `struct rvs_flow`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Flow {
    pub dest: u32,
    pub svc: u32,
    pub state: u8,
    /// `RVS_FLOW_*`
    pub flags: u8,
    /// a reply entry's virtual port (network order)
    pub vport: u16,
    /// a reply entry's virtual address
    pub vaddr: [u32; 4],
    /// a reply entry's way to the client, as the program last looked it up
    pub nh: NextHop,
    pub last_ns: u64,
    pub packets: u64,
    pub reported_packets: u64,
    pub reported_ns: u64,
}

/// `struct rvs_dest_conns`: a real server's counts as the core had them, and how many of the
/// connections the program scheduled there ([`DestSched`]) they include.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct DestConns {
    pub active: u32,
    pub inactive: u32,
    pub seen_active: u32,
    pub seen_inactive: u32,
}

/// `struct rvs_dest_sched`: the connections the program scheduled to a real server (TCP as
/// active, UDP as inactive), counting up and wrapping; written by the program only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct DestSched {
    pub active: u32,
    pub inactive: u32,
}

/// Event kinds (`RVS_EV_*`).
pub mod event {
    /// a packet was scheduled (a new flow, or a one-packet datagram)
    pub const NEW: u8 = 1;
    /// a packet moved its flow to another TCP state
    pub const STATE: u8 = 2;
    /// a packet of a flow that reported nothing for [`super::TOUCH_NS`]
    pub const TOUCH: u8 = 3;
}

/// `RVS_TOUCH_NS`: a busy flow reports itself at most this often.
pub const TOUCH_NS: u64 = 1_000_000_000;

/// `struct rvs_event`: what the program reports through the ring `rvs_events`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Event {
    pub key: FlowKey,
    pub dest: u32,
    pub svc: u32,
    pub ns: u64,
    pub len: u32,
    pub kind: u8,
    pub tcp_flags: u8,
    pub state: u8,
    /// `RVS_DIR_*`
    pub dir: u8,
}

/// `struct rvs_tmpl_key`: a persistence template's key
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct TmplKey {
    pub caddr: [u32; 4],
    pub vaddr: [u32; 4],
    pub vport: u16,
    pub proto: u8,
    pub family: u8,
}

/// `struct rvs_tmpl`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Tmpl {
    pub dest: u32,
    pub pad: u32,
    pub last_ns: u64,
}

/// `struct rvs_loc_key`: key of `rvs_lblc` and `rvs_lblcr` (service and destination address)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct LocKey {
    pub addr: [u32; 4],
    pub svc: u32,
    pub family: u8,
    pub pad: [u8; 3],
}

/// `struct rvs_lblc`: the real server an address was last sent to
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Lblc {
    pub dest: u32,
    pub pad: u32,
    pub last_ns: u64,
}

/// `struct rvs_lblcr`: an address's set of real servers, oldest member first
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Lblcr {
    pub last_ns: u64,
    pub lastmod_ns: u64,
    pub n: u32,
    pub pad: u32,
    pub dests: [u32; LBLCR_SET],
}

impl Lblcr {
    /// The members, oldest first.
    pub fn members(&self) -> &[u32] {
        &self.dests[..(self.n as usize).min(LBLCR_SET)]
    }
}

/// `struct rvs_iface`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Iface {
    pub mac: [u8; 6],
    /// [`IFACE_ON`]: set up (the control plane's writes set it)
    pub flags: u16,
    /// outer source of IPv4 tunnels (network order; 0: none)
    pub addr4: u32,
    /// outer source of IPv6 tunnels (network order; all 0: none)
    pub addr6: [u32; 4],
}

/// `struct rvs_dest_stats` (per CPU)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct DestStats {
    pub conns: u64,
    pub packets: u64,
    pub bytes: u64,
    /// a NAT real server's replies
    pub out_packets: u64,
    pub out_bytes: u64,
}

/// `struct rvs_decap_vip`: a virtual address the real server's decapsulation serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct DecapVip {
    pub addr: [u32; 4],
    pub family: u8,
    pub pad: [u8; 3],
}

/// The decapsulation program's counters, in the order of `enum rvs_decap_counter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum DecapCounter {
    Decapsulated = 0,
    NotVip,
    Failed,
}

/// `RVS_D_COUNT`
pub const DECAP_COUNTERS: usize = 3;

// SAFETY (for aya's Pod): each type is #[repr(C)], made of integers only, with every padding
// byte an explicit field, so any bit pattern is a valid value and none is uninitialised.
unsafe impl aya::Pod for Vip {}
unsafe impl aya::Pod for Service {}
unsafe impl aya::Pod for Dest {}
unsafe impl aya::Pod for FlowKey {}
unsafe impl aya::Pod for Flow {}
unsafe impl aya::Pod for NextHop {}
unsafe impl aya::Pod for Iface {}
unsafe impl aya::Pod for TmplKey {}
unsafe impl aya::Pod for DecapVip {}
unsafe impl aya::Pod for Tmpl {}
unsafe impl aya::Pod for DestStats {}
unsafe impl aya::Pod for DestConns {}
unsafe impl aya::Pod for DestSched {}
unsafe impl aya::Pod for LocKey {}
unsafe impl aya::Pod for Lblc {}
unsafe impl aya::Pod for Lblcr {}

const _: () = {
    assert!(size_of::<Vip>() == 20);
    assert!(offset_of!(Vip, port) == 16 && offset_of!(Vip, proto) == 18);
    assert!(offset_of!(Vip, family) == 19);
    assert!(size_of::<Service>() == 32);
    assert!(offset_of!(Service, sched) == 8 && offset_of!(Service, seq_off) == 12);
    assert!(offset_of!(Service, netmask) == 24 && offset_of!(Service, expire_ms) == 28);
    assert!(size_of::<LocKey>() == 24 && offset_of!(LocKey, svc) == 16);
    assert!(offset_of!(LocKey, family) == 20);
    assert!(size_of::<Lblc>() == 16 && offset_of!(Lblc, last_ns) == 8);
    assert!(size_of::<Lblcr>() == 88 && offset_of!(Lblcr, lastmod_ns) == 8);
    assert!(offset_of!(Lblcr, n) == 16 && offset_of!(Lblcr, dests) == 24);
    assert!(size_of::<Dest>() == 44);
    assert!(offset_of!(Dest, weight) == 36 && offset_of!(Dest, tun_type) == 40);
    assert!(offset_of!(Dest, tun_port) == 42);
    assert!(offset_of!(Dest, port) == 16 && offset_of!(Dest, fwd) == 19);
    assert!(offset_of!(Dest, mac) == 20 && offset_of!(Dest, flags) == 28);
    assert!(offset_of!(Dest, svc) == 32);
    assert!(size_of::<FlowKey>() == 40);
    assert!(offset_of!(FlowKey, cport) == 32 && offset_of!(FlowKey, proto) == 36);
    assert!(offset_of!(FlowKey, family) == 37);
    assert!(size_of::<Flow>() == 88 && offset_of!(Flow, reported_ns) == 80);
    assert!(offset_of!(Flow, nh) == 28);
    assert!(size_of::<NextHop>() == 28 && offset_of!(NextHop, dmac) == 8);
    assert!(offset_of!(NextHop, oif) == 6 && offset_of!(NextHop, smac) == 14);
    assert!(offset_of!(NextHop, mtu) == 20 && offset_of!(NextHop, tag) == 24);
    assert!(offset_of!(Flow, flags) == 9 && offset_of!(Flow, vport) == 10);
    assert!(offset_of!(Flow, vaddr) == 12);
    assert!(size_of::<Event>() == 64 && offset_of!(Event, dest) == 40);
    assert!(size_of::<DestConns>() == 16 && offset_of!(DestConns, seen_active) == 8);
    assert!(size_of::<DestSched>() == 8 && offset_of!(DestSched, inactive) == 4);
    assert!(offset_of!(Event, ns) == 48 && offset_of!(Event, len) == 56);
    assert!(offset_of!(Event, kind) == 60 && offset_of!(Event, state) == 62);
    assert!(offset_of!(Flow, state) == 8 && offset_of!(Flow, last_ns) == 56);
    assert!(offset_of!(Flow, reported_packets) == 72);
    assert!(size_of::<DecapVip>() == 20 && offset_of!(DecapVip, family) == 16);
    assert!(size_of::<TmplKey>() == 36);
    assert!(offset_of!(TmplKey, vport) == 32 && offset_of!(TmplKey, family) == 35);
    assert!(size_of::<Tmpl>() == 16 && offset_of!(Tmpl, last_ns) == 8);
    assert!(size_of::<Iface>() == 28);
    assert!(offset_of!(Iface, addr4) == 8 && offset_of!(Iface, addr6) == 12);
    assert!(size_of::<DestStats>() == 40 && offset_of!(DestStats, out_bytes) == 32);
};

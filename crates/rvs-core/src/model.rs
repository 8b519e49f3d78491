//! The IPVS object model: virtual services, real servers (destinations) and their settings,
//! with the kernel's limits (`include/uapi/linux/ip_vs.h`, `net/netfilter/ipvs/ip_vs_ctl.c`).
//!
//! These are *configuration* values. Live state (counters, flags, scheduler state) lives in
//! [`crate::dest::Dest`] and [`crate::service::Service`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::IpvsError;

/// Address family of a service or destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// AF_INET (2)
    V4,
    /// AF_INET6 (10)
    V6,
}

impl Family {
    /// The Linux `AF_*` number (used by ipvsadm's sort order: IPv4 before IPv6).
    pub fn af(self) -> u16 {
        match self {
            Family::V4 => 2,
            Family::V6 => 10,
        }
    }
    /// The family of an address.
    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
    /// The all-zero address of this family.
    pub fn unspecified(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        }
    }
}

/// Transport protocol of a service or connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// IPPROTO_TCP (6)
    Tcp,
    /// IPPROTO_UDP (17)
    Udp,
    /// IPPROTO_SCTP (132)
    Sctp,
    /// Protocol 0 ("IP"): fwmark persistence templates.
    Ip,
}

impl Protocol {
    /// IANA protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
            Protocol::Ip => 0,
        }
    }
    /// The name the kernel and ipvsadm print (`TCP`, `UDP`, `SCTP`, `IP`).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
            Protocol::Ip => "IP",
        }
    }
    /// Whether the protocol carries ports (used by sh-port / mh-port).
    pub fn has_ports(self) -> bool {
        !matches!(self, Protocol::Ip)
    }
}

/// How a virtual service is identified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceKey {
    /// (protocol, VIP, port). Port 0 means "any port" (must be persistent).
    Addr {
        /// TCP, UDP or SCTP
        proto: Protocol,
        /// virtual IP
        addr: IpAddr,
        /// virtual port (host order)
        port: u16,
    },
    /// Firewall-mark service (stored by the kernel with protocol TCP, address 0, port 0).
    Fwmark {
        /// address family (`-6` makes it IPv6)
        af: Family,
        /// the mark, 1 … 2^32−1
        mark: u32,
    },
}

impl ServiceKey {
    /// Address family of the service.
    pub fn family(&self) -> Family {
        match self {
            ServiceKey::Addr { addr, .. } => Family::of(addr),
            ServiceKey::Fwmark { af, .. } => *af,
        }
    }
    /// Virtual port (0 for fwmark services).
    pub fn port(&self) -> u16 {
        match self {
            ServiceKey::Addr { port, .. } => *port,
            ServiceKey::Fwmark { .. } => 0,
        }
    }
    /// Protocol as the kernel stores it (fwmark services say TCP).
    pub fn protocol(&self) -> Protocol {
        match self {
            ServiceKey::Addr { proto, .. } => *proto,
            ServiceKey::Fwmark { .. } => Protocol::Tcp,
        }
    }
    /// Whether this is a fwmark service.
    pub fn is_fwmark(&self) -> bool {
        matches!(self, ServiceKey::Fwmark { .. })
    }
    /// The firewall mark, 0 for address services.
    pub fn fwmark(&self) -> u32 {
        match self {
            ServiceKey::Fwmark { mark, .. } => *mark,
            ServiceKey::Addr { .. } => 0,
        }
    }
    /// The virtual address (the unspecified address for fwmark services).
    pub fn addr(&self) -> IpAddr {
        match self {
            ServiceKey::Addr { addr, .. } => *addr,
            ServiceKey::Fwmark { af, .. } => af.unspecified(),
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceKey::Addr { proto, addr, port } => {
                write!(f, "{} {}", proto.name(), SockAddr(*addr, *port))
            }
            ServiceKey::Fwmark {
                af: Family::V4,
                mark,
            } => write!(f, "FWM {mark}"),
            ServiceKey::Fwmark {
                af: Family::V6,
                mark,
            } => write!(f, "FWM {mark} IPv6"),
        }
    }
}

/// `addr:port` printed the way ipvsadm prints it (IPv6 in brackets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockAddr(pub IpAddr, pub u16);

impl fmt::Display for SockAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.1),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.1),
        }
    }
}

/// Service flag bits (`IP_VS_SVC_F_*`).
pub mod svc_flags {
    /// persistent port
    pub const PERSISTENT: u32 = 0x0001;
    /// hashed entry (internal)
    pub const HASHED: u32 = 0x0002;
    /// one-packet scheduling
    pub const ONEPACKET: u32 = 0x0004;
    /// scheduler flag 1 (sh-fallback / mh-fallback)
    pub const SCHED1: u32 = 0x0008;
    /// scheduler flag 2 (sh-port / mh-port)
    pub const SCHED2: u32 = 0x0010;
    /// scheduler flag 3
    pub const SCHED3: u32 = 0x0020;
    /// sh: fall back to the next available bucket
    pub const SCHED_SH_FALLBACK: u32 = SCHED1;
    /// sh: hash the source port too
    pub const SCHED_SH_PORT: u32 = SCHED2;
    /// mh: fall back to the next available slot
    pub const SCHED_MH_FALLBACK: u32 = SCHED1;
    /// mh: hash the source port too
    pub const SCHED_MH_PORT: u32 = SCHED2;
    /// all three scheduler flag bits
    pub const SCHED_MASK: u32 = SCHED1 | SCHED2 | SCHED3;
}

/// Persistence netmask: an IPv4 mask (any bit pattern, contiguous or not) or an IPv6 prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Netmask {
    /// IPv4 mask in host order (`0xffffffff` = /32, the default)
    V4(u32),
    /// IPv6 prefix length 1 … 128 (128 is the default)
    V6(u8),
}

impl Netmask {
    /// The default mask for a family (/32 or /128).
    pub fn full(af: Family) -> Netmask {
        match af {
            Family::V4 => Netmask::V4(u32::MAX),
            Family::V6 => Netmask::V6(128),
        }
    }
    /// Apply the mask to a client address (`ip_vs_addr_set` + `ipv6_addr_prefix`).
    pub fn apply(&self, addr: &IpAddr) -> IpAddr {
        match (self, addr) {
            (Netmask::V4(m), IpAddr::V4(a)) => IpAddr::V4(Ipv4Addr::from(u32::from(*a) & m)),
            (Netmask::V6(p), IpAddr::V6(a)) => {
                let bits = u128::from(*a);
                let mask = if *p == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from((*p).min(128)))
                };
                IpAddr::V6(Ipv6Addr::from(bits & mask))
            }
            // a mask of the other family leaves the address whole
            (_, a) => *a,
        }
    }
}

/// The settings of a virtual service that `-A`/`-E` give (everything but the key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceConf {
    /// scheduler name (`wlc` by default); at most 15 characters
    pub scheduler: String,
    /// `IP_VS_SVC_F_*` bits (persistent, one-packet, scheduler flags)
    pub flags: u32,
    /// persistence timeout in seconds (meaningful when PERSISTENT is set)
    pub timeout: u32,
    /// persistence granularity
    pub netmask: Netmask,
    /// persistence engine name (`sip`), if any
    pub pe: Option<String>,
}

impl ServiceConf {
    /// A service with scheduler `sched`, no persistence, no flags.
    pub fn new(af: Family, sched: &str) -> ServiceConf {
        ServiceConf {
            scheduler: sched.to_string(),
            flags: 0,
            timeout: 0,
            netmask: Netmask::full(af),
            pe: None,
        }
    }
    /// Make it persistent with `timeout` seconds.
    pub fn persistent(mut self, timeout: u32) -> ServiceConf {
        self.flags |= svc_flags::PERSISTENT;
        self.timeout = timeout;
        self
    }
    /// Whether the service is persistent.
    pub fn is_persistent(&self) -> bool {
        self.flags & svc_flags::PERSISTENT != 0
    }
    /// Whether one-packet scheduling is on.
    pub fn is_ops(&self) -> bool {
        self.flags & svc_flags::ONEPACKET != 0
    }
}

/// Longest scheduler / PE name the kernel takes (`IP_VS_SCHEDNAME_MAXLEN` − 1).
pub const SCHEDNAME_MAXLEN: usize = 15;
/// Longest persistence timeout ipvsadm and keepalived accept (31 days).
pub const MAX_PERSIST_TIMEOUT: u32 = 2_678_400;
/// `IPVS_SVC_PERSISTENT_TIMEOUT`: `-p` without a value.
pub const DEFAULT_PERSIST_TIMEOUT: u32 = 360;

/// Forwarding method of a real server (`IP_VS_CONN_F_FWD_MASK` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Forward {
    /// NAT (`-m`), code 0
    Masq,
    /// the director itself, code 1 (`Local`, never asked for explicitly)
    Local,
    /// IP tunnel (`-i`), code 2
    Tunnel,
    /// direct routing (`-g`, the default), code 3
    Route,
    /// cache bypass, code 4 (internal)
    Bypass,
}

impl Forward {
    /// Kernel code.
    pub fn code(self) -> u32 {
        match self {
            Forward::Masq => 0,
            Forward::Local => 1,
            Forward::Tunnel => 2,
            Forward::Route => 3,
            Forward::Bypass => 4,
        }
    }
    /// The word ipvsadm prints in the Forward column.
    pub fn name(self) -> &'static str {
        match self {
            Forward::Masq => "Masq",
            Forward::Local => "Local",
            Forward::Tunnel => "Tunnel",
            Forward::Route => "Route",
            Forward::Bypass => "Bypass",
        }
    }
    /// NAT is the only method that sees replies; the others use the input-only TCP table.
    pub fn sees_output(self) -> bool {
        matches!(self, Forward::Masq)
    }
}

/// Tunnel encapsulation type (`IP_VS_CONN_F_TUNNEL_TYPE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TunnelType {
    /// IP-in-IP (0), the default
    #[default]
    Ipip,
    /// Generic UDP Encapsulation (1); needs a port
    Gue,
    /// GRE (2)
    Gre,
}

/// Tunnel checksum flag bits (`IP_VS_TUNNEL_ENCAP_FLAG_*`).
pub mod tun_flags {
    /// no checksum
    pub const NOCSUM: u16 = 0;
    /// outer checksum
    pub const CSUM: u16 = 1 << 0;
    /// remote checksum offload
    pub const REMCSUM: u16 = 1 << 1;
}

/// Tunnel parameters of a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct TunnelConf {
    /// encapsulation
    pub kind: TunnelType,
    /// UDP destination port for GUE (0 otherwise)
    pub port: u16,
    /// checksum flags
    pub flags: u16,
}

/// The PROXY protocol header (HAProxy's `proxy-protocol.txt`) a proxying data plane prepends on
/// a connection to a real server, so the server learns the client's address. An rvs extension
/// (`--proxy-protocol`); the engine stores it with the destination and does not act on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ProxyProtocol {
    /// no header (ipvsadm's behaviour), the default
    #[default]
    None,
    /// version 1: one human-readable text line
    V1,
    /// version 2: the binary header
    V2,
}

impl ProxyProtocol {
    /// The word `--proxy-protocol` takes and listings print: `none`, `v1`, `v2`.
    pub fn name(self) -> &'static str {
        match self {
            ProxyProtocol::None => "none",
            ProxyProtocol::V1 => "v1",
            ProxyProtocol::V2 => "v2",
        }
    }
}

/// The settings of a real server that `-a`/`-e` give.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DestConf {
    /// real server address (may be of the other family only for tunnels)
    pub addr: IpAddr,
    /// real server port (forced to the service port for DR/TUN by ipvsadm)
    pub port: u16,
    /// forwarding method
    pub fwd: Forward,
    /// weight; the kernel takes 0 … i32::MAX (ipvsadm limits it to 65535)
    pub weight: i32,
    /// upper connection threshold (0 = none)
    pub u_threshold: u32,
    /// lower connection threshold (0 = none)
    pub l_threshold: u32,
    /// tunnel parameters (used with [`Forward::Tunnel`])
    pub tun: TunnelConf,
    /// extension: the PROXY protocol header sent to this server (a data plane's business)
    pub proxy_protocol: ProxyProtocol,
}

impl DestConf {
    /// A real server with ipvsadm's defaults: DR, weight 1, no thresholds, no PROXY header.
    pub fn new(addr: IpAddr, port: u16) -> DestConf {
        DestConf {
            addr,
            port,
            fwd: Forward::Route,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
            tun: TunnelConf::default(),
            proxy_protocol: ProxyProtocol::None,
        }
    }
    /// Set the forwarding method.
    pub fn fwd(mut self, fwd: Forward) -> DestConf {
        self.fwd = fwd;
        self
    }
    /// Set the weight.
    pub fn weight(mut self, w: i32) -> DestConf {
        self.weight = w;
        self
    }
    /// Apply ipvsadm's port rule for `-a`/`-e` (`process_options`): direct routing and
    /// tunnelling cannot map ports, so on an address service the real server's port becomes the
    /// service port. Firewall-mark services keep the port given (0 = the client's port).
    pub fn port_for(mut self, svc: &ServiceKey) -> DestConf {
        if matches!(self.fwd, Forward::Route | Forward::Tunnel) && !svc.is_fwmark() {
            self.port = svc.port();
        }
        self
    }
    /// Set the thresholds.
    pub fn thresholds(mut self, upper: u32, lower: u32) -> DestConf {
        self.u_threshold = upper;
        self.l_threshold = lower;
        self
    }
    /// Set the PROXY protocol header sent to the server.
    pub fn proxy_protocol(mut self, pp: ProxyProtocol) -> DestConf {
        self.proxy_protocol = pp;
        self
    }
}

/// Validate a service configuration as `ip_vs_add_service`/`ip_vs_edit_service` would.
pub fn validate_service(key: &ServiceKey, conf: &ServiceConf) -> Result<(), IpvsError> {
    if conf.scheduler.len() > SCHEDNAME_MAXLEN {
        return Err(IpvsError::Invalid);
    }
    if let Some(pe) = &conf.pe {
        if pe.len() > SCHEDNAME_MAXLEN {
            return Err(IpvsError::Invalid);
        }
    }
    match (key.family(), conf.netmask) {
        (Family::V6, Netmask::V6(p)) if !(1..=128).contains(&p) => return Err(IpvsError::Invalid),
        (Family::V6, Netmask::V4(_)) | (Family::V4, Netmask::V6(_)) => {
            return Err(IpvsError::Invalid)
        }
        _ => {}
    }
    if let ServiceKey::Fwmark { mark: 0, .. } = key {
        return Err(IpvsError::Invalid);
    }
    if let ServiceKey::Addr {
        proto: Protocol::Ip,
        ..
    } = key
    {
        return Err(IpvsError::BadProtocol);
    }
    Ok(())
}

/// Every check the kernel makes on a destination, in its order: the family rule of the netlink
/// layer, the ranges of `ip_vs_add_dest`/`ip_vs_edit_dest`, and the address check that
/// `ip_vs_new_dest` makes for a destination it allocates.
pub fn validate_dest(svc: &ServiceKey, d: &DestConf) -> Result<(), IpvsError> {
    validate_dest_family(svc, d)?;
    validate_dest_ranges(d)?;
    validate_new_dest_addr(d)
}

/// A real server of the other address family than its service is only allowed for tunnels
/// (`ip_vs_genl_set_cmd`, checked for add and edit).
pub fn validate_dest_family(svc: &ServiceKey, d: &DestConf) -> Result<(), IpvsError> {
    if Family::of(&d.addr) != svc.family() && d.fwd != Forward::Tunnel {
        return Err(IpvsError::Invalid);
    }
    Ok(())
}

/// Weight, thresholds and the GUE port (`ip_vs_add_dest` / `ip_vs_edit_dest`).
pub fn validate_dest_ranges(d: &DestConf) -> Result<(), IpvsError> {
    if d.weight < 0 || d.l_threshold > d.u_threshold {
        return Err(IpvsError::Range);
    }
    if d.fwd == Forward::Tunnel && d.tun.kind == TunnelType::Gue && d.tun.port == 0 {
        return Err(IpvsError::Invalid);
    }
    Ok(())
}

/// The address of a destination being created (`ip_vs_new_dest`): unicast; for IPv6 also not
/// link-local and not v4-mapped (the kernel allows those only when they are the director's
/// own addresses, which the pure core cannot know). Revived and edited destinations are not
/// checked again, as in the kernel.
pub fn validate_new_dest_addr(d: &DestConf) -> Result<(), IpvsError> {
    let ok = match d.addr {
        IpAddr::V4(v) => !(v.is_multicast() || v.is_broadcast() || v.is_unspecified()),
        IpAddr::V6(v) => {
            let seg = v.segments();
            let link_local = seg[0] & 0xffc0 == 0xfe80;
            let mapped = v.to_ipv4_mapped().is_some();
            !(v.is_multicast() || v.is_unspecified() || link_local || mapped)
        }
    };
    if ok {
        Ok(())
    } else {
        Err(IpvsError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netmask_apply_v4_noncontiguous() {
        let m = Netmask::V4(0xffff_00ff);
        assert_eq!(
            m.apply(&"10.1.2.3".parse().unwrap()),
            "10.1.0.3".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn netmask_apply_v6_prefix() {
        let m = Netmask::V6(64);
        assert_eq!(
            m.apply(&"2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn weight_above_65535_is_accepted_negative_is_range() {
        let svc = ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr: "10.0.0.1".parse().unwrap(),
            port: 80,
        };
        let d = DestConf::new("10.0.1.1".parse().unwrap(), 80).weight(100_000);
        assert!(validate_dest(&svc, &d).is_ok());
        let d = d.weight(-1);
        assert_eq!(validate_dest(&svc, &d), Err(IpvsError::Range));
    }

    #[test]
    fn lower_threshold_above_upper_is_range() {
        let svc = ServiceKey::Fwmark {
            af: Family::V4,
            mark: 1,
        };
        let d = DestConf::new("10.0.1.1".parse().unwrap(), 0).thresholds(5, 6);
        assert_eq!(validate_dest(&svc, &d), Err(IpvsError::Range));
    }

    #[test]
    fn dr_and_tun_take_the_service_port_nat_maps() {
        let svc = ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr: "10.0.0.1".parse().unwrap(),
            port: 80,
        };
        let d = DestConf::new("10.0.1.1".parse().unwrap(), 8000);
        assert_eq!(d.port_for(&svc).port, 80);
        assert_eq!(d.fwd(Forward::Tunnel).port_for(&svc).port, 80);
        assert_eq!(d.fwd(Forward::Masq).port_for(&svc).port, 8000);
        let fwm = ServiceKey::Fwmark {
            af: Family::V4,
            mark: 3,
        };
        assert_eq!(d.port_for(&fwm).port, 8000);
    }

    #[test]
    fn new_destination_addresses_must_be_unicast() {
        let bad = [
            "224.0.0.1",
            "255.255.255.255",
            "0.0.0.0",
            "ff02::1",
            "::",
            "fe80::1",
            "::ffff:10.0.0.1",
        ];
        for a in bad {
            let d = DestConf::new(a.parse().unwrap(), 80);
            assert_eq!(validate_new_dest_addr(&d), Err(IpvsError::Invalid), "{a}");
        }
        for a in ["10.0.0.1", "2001:db8::1", "::1"] {
            assert!(validate_new_dest_addr(&DestConf::new(a.parse().unwrap(), 80)).is_ok());
        }
    }

    #[test]
    fn mixed_family_only_for_tunnels() {
        let svc = ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr: "10.0.0.1".parse().unwrap(),
            port: 80,
        };
        let d = DestConf::new("2001:db8::1".parse().unwrap(), 80);
        assert_eq!(validate_dest(&svc, &d), Err(IpvsError::Invalid));
        assert!(validate_dest(&svc, &d.fwd(Forward::Tunnel)).is_ok());
    }
}

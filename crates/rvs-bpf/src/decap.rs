//! [`Decap`]: the real server's tc program (`bpf/tc_decap.c`), its maps, pinning in bpffs so
//! that several invocations of `rvsd realserver` share one program, and its attachment to tc
//! ingress.
//!
//! A pinned program lives in a directory of bpffs as four objects: the program
//! ([`Decap::PIN`]) and its maps under their own names. [`Decap::load_pinned`] opens them
//! when they are there and otherwise loads the object and pins it; [`Decap::unpin`] removes
//! them. An attachment is a tc filter on the interface's clsact ingress hook, which keeps the
//! program loaded however long the process that attached it lives, until [`Decap::detach`].

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use aya::maps::{HashMap, Map, MapData, MapError, PerCpuArray};
use aya::programs::tc::{self, NlOptions, TcAttachOptions};
use aya::programs::{SchedClassifier, TcAttachType};
use aya::Ebpf;

use crate::{abi, testrun, Error, TestRun};

/// The real server's decapsulation program (`bpf/tc_decap.c`).
static DECAP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tc_decap.o"));

/// Name of the tc program in the decapsulation object (and of its tc filters).
const PROGRAM: &str = Decap::PROGRAM;
/// The program's pin in a pin directory.
const PROGRAM_PIN: &str = Decap::PIN;
const VIPS: &str = "rvs_decap_vips";
const PORTS: &str = "rvs_decap_ports";
const COUNTERS: &str = "rvs_decap_counters";
/// The maps' pins, under their own names.
const MAP_PINS: [&str; 3] = [VIPS, PORTS, COUNTERS];

/// The real server's tc program that takes tunnel headers off (IPIP, IPv6 in IPv6, GUE on
/// the configured ports, GRE) for the configured virtual addresses, for hosts whose kernel has
/// no tunnel modules. Loaded (or opened from its pins), attached only by [`Decap::attach`].
pub struct Decap {
    prog: Prog,
    vips: HashMap<MapData, abi::DecapVip, u8>,
    ports: HashMap<MapData, u16, u8>,
    counters: PerCpuArray<MapData, u64>,
}

/// Where the program is held.
enum Prog {
    /// loaded from the object by this process
    Object(Ebpf),
    /// opened from its pin
    Pinned(Box<SchedClassifier>),
}

impl Decap {
    /// The program's name, which its tc filters carry.
    pub const PROGRAM: &'static str = "rvs_decap";
    /// The program's pin in a pin directory (the maps' pins are named after the maps).
    pub const PIN: &'static str = "rvs_decap";

    /// Loads the program into the kernel (not pinned, not attached).
    pub fn load() -> Result<Decap, Error> {
        let (ebpf, maps) = load_object()?;
        Decap::assemble(Prog::Object(ebpf), maps)
    }

    /// The handles on the program and its maps (VIPs, ports, counters).
    fn assemble(prog: Prog, [vips, ports, counters]: [Map; 3]) -> Result<Decap, Error> {
        Ok(Decap {
            vips: HashMap::try_from(vips)?,
            ports: HashMap::try_from(ports)?,
            counters: PerCpuArray::try_from(counters)?,
            prog,
        })
    }

    /// The program pinned in `dir` (a directory of a bpffs), if it is there.
    pub fn open_pinned(dir: &Path) -> Result<Option<Decap>, Error> {
        if !dir.join(PROGRAM_PIN).exists() {
            return Ok(None);
        }
        let map = |name: &str| MapData::from_pin(dir.join(name));
        let maps = [
            Map::HashMap(map(VIPS)?),
            Map::HashMap(map(PORTS)?),
            Map::PerCpuArray(map(COUNTERS)?),
        ];
        let prog = SchedClassifier::from_pin(dir.join(PROGRAM_PIN))?;
        Decap::assemble(Prog::Pinned(Box::new(prog)), maps).map(Some)
    }

    /// The program pinned in `dir`, or else loaded and pinned there (the directory is made;
    /// it must be on a bpffs). The flag says whether it was loaded now.
    pub fn load_pinned(dir: &Path) -> Result<(Decap, bool), Error> {
        if let Some(d) = Decap::open_pinned(dir)? {
            return Ok((d, false));
        }
        std::fs::create_dir_all(dir)?;
        let (mut ebpf, maps) = load_object()?;
        if let Err(e) = pin(&mut ebpf, &maps, dir) {
            let _ = Decap::unpin(dir);
            return Err(e);
        }
        Ok((Decap::assemble(Prog::Object(ebpf), maps)?, true))
    }

    /// Removes the pins in `dir` (those that are there) and the directory when it is left
    /// empty. What is still attached stays loaded until it is detached.
    pub fn unpin(dir: &Path) -> Result<(), Error> {
        for name in std::iter::once(PROGRAM_PIN).chain(MAP_PINS) {
            match std::fs::remove_file(dir.join(name)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        match std::fs::remove_dir(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            // another process's pins share the directory
            Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => Ok(()),
            r => Ok(r?),
        }
    }

    fn prog(&mut self) -> Result<&mut SchedClassifier, Error> {
        match &mut self.prog {
            Prog::Pinned(p) => Ok(p),
            Prog::Object(ebpf) => Ok(ebpf
                .program_mut(PROGRAM)
                .ok_or(Error::Missing("tc program"))?
                .try_into()?),
        }
    }

    /// The program's id in the kernel (what a tc filter that runs it names).
    pub fn program_id(&mut self) -> Result<u32, Error> {
        Ok(self.prog()?.info()?.id())
    }

    /// Attaches the program to tc ingress of interface `iface` as a filter (adding the
    /// clsact qdisc when the interface has none), which stays after this object and this
    /// process are gone, until [`Decap::detach`]. True: the clsact qdisc was added now (it
    /// stays, empty, when the attachment then fails).
    pub fn attach(&mut self, iface: &str) -> Result<bool, Error> {
        let added = match tc::qdisc_add_clsact(iface) {
            Ok(()) => true,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => false,
            Err(e) => return Err(e.into()),
        };
        let opts = TcAttachOptions::Netlink(NlOptions::default());
        let id = self
            .prog()?
            .attach_with_options(iface, TcAttachType::Ingress, opts)?;
        // Dropping the link would remove the filter; forgetting it leaves the filter to the
        // kernel (the link holds only the interface, priority and handle: nothing leaks).
        std::mem::forget(self.prog()?.take_link(id)?);
        Ok(added)
    }

    /// Removes this program's filters (by name) from tc ingress of `iface`. False: there
    /// were none. The clsact qdisc stays.
    pub fn detach(iface: &str) -> Result<bool, Error> {
        match tc::qdisc_detach_program(iface, TcAttachType::Ingress, PROGRAM) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Takes tunnelled packets for `vip`.
    pub fn add_vip(&mut self, vip: IpAddr) -> Result<(), Error> {
        self.vips.insert(vip_key(vip), 1, 0)?;
        Ok(())
    }

    /// Stops taking tunnelled packets for `vip`. False: it was not there.
    pub fn remove_vip(&mut self, vip: IpAddr) -> Result<bool, Error> {
        absent_is_false(self.vips.remove(&vip_key(vip)))
    }

    /// The virtual addresses it takes packets for (in the map's order).
    pub fn vips(&self) -> Result<Vec<IpAddr>, Error> {
        let mut out = Vec::new();
        for k in self.vips.keys() {
            out.extend(vip_addr(&k?));
        }
        Ok(out)
    }

    /// Takes GUE packets arriving on UDP `port`.
    pub fn add_gue_port(&mut self, port: u16) -> Result<(), Error> {
        self.ports.insert(port.to_be(), 1, 0)?;
        Ok(())
    }

    /// Stops taking GUE packets on `port`. False: it was not there.
    pub fn remove_gue_port(&mut self, port: u16) -> Result<bool, Error> {
        absent_is_false(self.ports.remove(&port.to_be()))
    }

    /// The GUE ports (in the map's order).
    pub fn gue_ports(&self) -> Result<Vec<u16>, Error> {
        let mut out = Vec::new();
        for k in self.ports.keys() {
            out.push(u16::from_be(k?));
        }
        Ok(out)
    }

    /// The counters, summed over CPUs, in [`abi::DecapCounter`] order.
    pub fn counters(&mut self) -> Result<[u64; abi::DECAP_COUNTERS], Error> {
        let mut out = [0u64; abi::DECAP_COUNTERS];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = self.counters.get(&(i as u32), 0)?.iter().sum();
        }
        Ok(out)
    }

    /// Runs the program on the Ethernet frame `packet`, without a network.
    pub fn test_run(&mut self, packet: &[u8]) -> Result<TestRun, Error> {
        let prog = self.prog()?;
        Ok(testrun::run(prog.fd()?, packet, None, 1)?)
    }
}

/// A map deletion's result: true, or false when the key was not there (`ENOENT`).
fn absent_is_false(r: Result<(), MapError>) -> Result<bool, Error> {
    match r {
        Ok(()) => Ok(true),
        Err(MapError::KeyNotFound) => Ok(false),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Loads the object and its program; its maps taken out (VIPs, ports, counters).
fn load_object() -> Result<(Ebpf, [Map; 3]), Error> {
    let mut ebpf = Ebpf::load(DECAP_OBJECT)?;
    let prog: &mut SchedClassifier = ebpf
        .program_mut(PROGRAM)
        .ok_or(Error::Missing("tc program"))?
        .try_into()?;
    prog.load()?;
    let mut take = |name: &'static str| ebpf.take_map(name).ok_or(Error::Missing(name));
    let maps = [take(VIPS)?, take(PORTS)?, take(COUNTERS)?];
    Ok((ebpf, maps))
}

/// Pins the maps, then the program (whose pin says the set is complete).
fn pin(ebpf: &mut Ebpf, maps: &[Map; 3], dir: &Path) -> Result<(), Error> {
    for (map, name) in maps.iter().zip(MAP_PINS) {
        map.pin(dir.join(name))?;
    }
    let prog: &mut SchedClassifier = ebpf
        .program_mut(PROGRAM)
        .ok_or(Error::Missing("tc program"))?
        .try_into()?;
    prog.pin(dir.join(PROGRAM_PIN))?;
    Ok(())
}

/// `vip` as the VIP map's key (the address in network order).
fn vip_key(vip: IpAddr) -> abi::DecapVip {
    let (addr, family) = match vip {
        IpAddr::V4(a) => ([u32::from_ne_bytes(a.octets()), 0, 0, 0], abi::AF_INET),
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            ([w(0), w(4), w(8), w(12)], abi::AF_INET6)
        }
    };
    abi::DecapVip {
        addr,
        family,
        pad: [0; 3],
    }
}

/// The address of a VIP map key (None: an unknown family).
fn vip_addr(k: &abi::DecapVip) -> Option<IpAddr> {
    let b = |i: usize| k.addr[i].to_ne_bytes();
    match k.family {
        abi::AF_INET => Some(IpAddr::V4(Ipv4Addr::from(b(0)))),
        abi::AF_INET6 => {
            let mut o = [0u8; 16];
            for i in 0..4 {
                o[4 * i..4 * i + 4].copy_from_slice(&b(i));
            }
            Some(IpAddr::V6(Ipv6Addr::from(o)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vip_keys_round_trip() {
        for a in ["10.200.0.1", "2001:db8::100", "::ffff:1.2.3.4"] {
            let ip: IpAddr = a.parse().unwrap();
            assert_eq!(vip_addr(&vip_key(ip)), Some(ip));
        }
        let k = vip_key("10.200.0.1".parse().unwrap());
        assert_eq!(k.addr[0].to_ne_bytes(), [10, 200, 0, 1]);
    }
}

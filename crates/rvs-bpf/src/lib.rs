//! # rvs-bpf: the XDP data plane
//!
//! The BPF programs are C (`bpf/`), compiled by clang from `build.rs` and embedded here;
//! [`Xdp`] loads them with aya, fills their maps (services, real servers, schedule
//! sequences, the director's interfaces), reads their counters and flows, and runs a program
//! on a packet without a network (`BPF_PROG_TEST_RUN`, [`Xdp::test_run`]). Every struct the
//! programs share with Rust is declared once, in `bpf/rvs_abi.h`; [`abi`] mirrors it with
//! compile-time size and offset checks. [`Decap`] is the real server's side: the tc program
//! that takes tunnel headers off, pinned in bpffs and attached by `rvsd realserver`.
//!
//! Loading needs root (CAP_BPF, CAP_NET_ADMIN).
//!
//! ```no_run
//! use rvs_bpf::{abi, Xdp};
//!
//! let mut xdp = Xdp::load().unwrap();
//! let vip = abi::Vip { addr: [u32::from_ne_bytes([10, 0, 0, 100]), 0, 0, 0], port: 80u16.to_be(), proto: 6, family: abi::AF_INET };
//! xdp.set_service(&vip, &abi::Service { id: 0, seq_off: 0, seq_len: 1, ..Default::default() }).unwrap();
//! xdp.set_dest(0, &abi::Dest { fwd: abi::FWD_DROUTE, flags: abi::DEST_AVAILABLE, ..Default::default() }).unwrap();
//! xdp.set_seq(0, &[0]).unwrap();
//! let run = xdp.test_run(&[0u8; 64], None, 1).unwrap();
//! println!("verdict {}", run.verdict);
//! ```

#![deny(unsafe_code)]

#[allow(unsafe_code)] // aya::Pod for the map structs (see abi.rs)
pub mod abi;
#[allow(unsafe_code)] // the bpf(2) call of BPF_MAP_LOOKUP_BATCH
mod batch;
mod decap;
pub mod plane;
#[allow(unsafe_code)] // the bpf(2) call of BPF_PROG_TEST_RUN
mod testrun;

use aya::maps::{Array, DevMapHash, HashMap, MapData, PerCpuArray, PerCpuValues, RingBuf};
use aya::programs::tc::{self, SchedClassifierLinkId};
use aya::programs::xdp::XdpLinkId;
use aya::programs::{SchedClassifier, TcAttachType, Xdp as XdpProgram, XdpFlags};
use aya::Ebpf;
use std::os::fd::AsFd;

pub use decap::Decap;
pub use testrun::TestRun;

/// The compiled object (`bpf/xdp_lb.c`).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp_lb.o"));

/// tc verdicts (`TC_ACT_*`).
pub mod tc_verdict {
    pub const OK: u32 = 0;
    pub const SHOT: u32 = 2;
}

/// Name of the XDP program in the object.
const PROGRAM: &str = "rvs_xdp";

/// Name of the tc program that sends on what the XDP program handed to the kernel (a NAT
/// packet whose next hop is not resolved yet).
const TC_PROGRAM: &str = "rvs_tc_neigh";

/// XDP verdicts (`enum xdp_action`).
pub mod verdict {
    pub const ABORTED: u32 = 0;
    pub const DROP: u32 = 1;
    pub const PASS: u32 = 2;
    pub const TX: u32 = 3;
    pub const REDIRECT: u32 = 4;
}

/// What can go wrong loading or driving the programs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("loading the BPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("BPF program: {0}")]
    Program(#[from] aya::programs::ProgramError),
    #[error("BPF map: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("BPF device map: {0}")]
    DevMap(#[from] aya::maps::xdp::XdpMapError),
    #[error("tc: {0}")]
    Tc(#[from] aya::programs::tc::TcError),
    #[error("pinning in bpffs: {0}")]
    Pin(#[from] aya::pin::PinError),
    #[error("the object has no {0}")]
    Missing(&'static str),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no room for more {0} in the XDP program's maps")]
    Full(&'static str),
}

/// The loaded XDP programs and their maps.
pub struct Xdp {
    ebpf: Ebpf,
    /// the interfaces the programs are attached to (detached when this is dropped)
    links: Vec<Link>,
}

/// The programs on one interface.
struct Link {
    name: String,
    ifindex: u32,
    xdp: XdpLinkId,
    tc: SchedClassifierLinkId,
}

/// The program's event ring, taken out of [`Xdp`] so that a thread of its own can wait on
/// it (its descriptor polls readable when events wait).
pub struct Events {
    ring: RingBuf<MapData>,
}

impl Events {
    /// The next event, if one waits.
    pub fn read(&mut self) -> Option<abi::Event> {
        let item = self.ring.next()?;
        if item.len() < std::mem::size_of::<abi::Event>() {
            return None;
        }
        // the ring's bytes, copied field by field (`struct rvs_event`'s layout, abi.rs)
        let mut ev = abi::Event::default();
        let b: &[u8] = &item;
        let words = |o: usize| u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        for i in 0..4 {
            ev.key.caddr[i] = words(4 * i);
            ev.key.vaddr[i] = words(16 + 4 * i);
        }
        ev.key.cport = u16::from_ne_bytes([b[32], b[33]]);
        ev.key.vport = u16::from_ne_bytes([b[34], b[35]]);
        ev.key.proto = b[36];
        ev.key.family = b[37];
        ev.dest = words(40);
        ev.svc = words(44);
        ev.ns = u64::from(words(48)) | (u64::from(words(52)) << 32);
        ev.len = words(56);
        ev.kind = b[60];
        ev.tcp_flags = b[61];
        ev.state = b[62];
        ev.dir = b[63];
        Some(ev)
    }
}

impl Events {
    /// Something another thread can wait on for events while this ring is used elsewhere
    /// (a duplicate of the ring's descriptor).
    #[allow(unsafe_code)]
    pub fn waiter(&self) -> Result<Waiter, Error> {
        use std::os::fd::AsRawFd;
        // SAFETY: the ring's descriptor is open while `self.ring` lives, which covers this
        // borrow; it is duplicated at once and the duplicate owned by the waiter.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.ring.as_raw_fd()) };
        Ok(Waiter {
            fd: fd.try_clone_to_owned()?,
        })
    }
}

/// Waits for the event ring to hold events.
pub struct Waiter {
    fd: std::os::fd::OwnedFd,
}

impl Waiter {
    /// Returns when events wait or `limit` passed (or a signal came).
    #[allow(unsafe_code)]
    pub fn wait(&self, limit: std::time::Duration) {
        use std::os::fd::AsRawFd;
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = limit.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: poll(2) reads and writes the one pollfd we pass (count 1), which lives on
        // this stack frame for the whole call; the descriptor is owned by `self` and open.
        unsafe { libc::poll(&mut pfd, 1, ms) };
    }
}

/// The generation of the next hops the NAT path keeps (`rvs_nh_gen`): the program looks a
/// packet's way out up in the kernel's FIB and keeps the answer (per real server, per CPU;
/// per client, in a flow's reply entry), which holds while the generation stays. Whoever
/// watches the kernel's tables moves it on at every change ([`NextHops::invalidate`]), and
/// turns keeping off where the FIB's answer could depend on more than a packet's destination
/// and the interface it came in by ([`NextHops::set_enabled`]).
pub struct NextHops {
    map: Array<MapData, u32>,
    /// the generation in the map (0: keeping is off)
    gen: u32,
    /// the last one used (a generation is never used twice)
    last: u32,
}

impl NextHops {
    /// Turns keeping on (under a generation never used before) or off.
    pub fn set_enabled(&mut self, on: bool) -> Result<(), Error> {
        if on == (self.gen != 0) {
            return Ok(());
        }
        let gen = if on { self.next() } else { 0 };
        self.map.set(0, gen, 0)?;
        self.gen = gen;
        Ok(())
    }

    /// Whether the program keeps next hops.
    pub fn enabled(&self) -> bool {
        self.gen != 0
    }

    /// Makes every kept next hop stale (the kernel's tables changed): each is looked up again
    /// by the next packet that would use it.
    pub fn invalidate(&mut self) -> Result<(), Error> {
        if self.gen == 0 {
            return Ok(());
        }
        let gen = self.next();
        self.map.set(0, gen, 0)?;
        self.gen = gen;
        Ok(())
    }

    /// The generation in force (0: off).
    pub fn generation(&self) -> u32 {
        self.gen
    }

    fn next(&mut self) -> u32 {
        self.last = self.last.wrapping_add(1).max(1);
        self.last
    }
}

impl std::os::fd::AsRawFd for Events {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.ring.as_raw_fd()
    }
}

/// The flow map, readable from any thread ([`Xdp::flow_table`]).
#[derive(Debug)]
pub struct FlowTable {
    fd: std::os::fd::OwnedFd,
}

impl FlowTable {
    /// Every flow the map holds, read in batches of a few thousand per system call where
    /// the kernel can (Linux 5.6+), else key by key. The program goes on meanwhile: a flow
    /// added or deleted during the dump may or may not be in it, one present throughout is
    /// in it once.
    pub fn dump(&self) -> Result<Vec<(abi::FlowKey, abi::Flow)>, Error> {
        match batch::dump(self.fd.as_fd())? {
            Some(all) => Ok(all),
            None => self.dump_by_key(),
        }
    }

    /// Adds or replaces a flow (the program takes it as its own: a way to hand flows over,
    /// and to fill the map in tests and benchmarks).
    pub fn insert(&self, key: &abi::FlowKey, flow: &abi::Flow) -> Result<(), Error> {
        self.map()?.insert(key, flow, 0)?;
        Ok(())
    }

    /// The same, key by key (two system calls per flow), whatever the kernel can do.
    pub fn dump_by_key(&self) -> Result<Vec<(abi::FlowKey, abi::Flow)>, Error> {
        // a flow deleted while the walk runs ends it early at worst; the next walk sees the rest
        Ok(self.map()?.iter().filter_map(Result::ok).collect())
    }

    /// The map through aya, on a descriptor of its own.
    fn map(&self) -> Result<HashMap<MapData, abi::FlowKey, abi::Flow>, Error> {
        let data = MapData::from_fd(self.fd.try_clone()?)?;
        Ok(HashMap::try_from(aya::maps::Map::HashMap(data))?)
    }
}

impl Xdp {
    /// Loads the object and its XDP program into the kernel (not attached to any interface).
    pub fn load() -> Result<Xdp, Error> {
        let mut ebpf = Ebpf::load(OBJECT)?;
        let prog: &mut XdpProgram = ebpf
            .program_mut(PROGRAM)
            .ok_or(Error::Missing("XDP program"))?
            .try_into()?;
        prog.load()?;
        let tc: &mut SchedClassifier = ebpf
            .program_mut(TC_PROGRAM)
            .ok_or(Error::Missing("tc program"))?
            .try_into()?;
        tc.load()?;
        Ok(Xdp {
            ebpf,
            links: Vec::new(),
        })
    }

    /// Attaches the program to interface `name` as `how` says, with its tc companion on the
    /// interface's ingress (which sends on the NAT packets the XDP program hands to the
    /// kernel), and makes the interface one NAT may send packets out of; returns the mode the
    /// XDP program runs in.
    pub fn attach(&mut self, name: &str, how: XdpAttach) -> Result<XdpMode, Error> {
        let ifindex = ifindex(name)?;
        let tc_prog: &mut SchedClassifier = self
            .ebpf
            .program_mut(TC_PROGRAM)
            .ok_or(Error::Missing("tc program"))?
            .try_into()?;
        let tc_link = match tc_prog.attach(name, TcAttachType::Ingress) {
            Ok(id) => id,
            // kernels before tcx (6.6) attach through a clsact qdisc
            Err(_) => {
                match tc::qdisc_add_clsact(name) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                tc_prog.attach(name, TcAttachType::Ingress)?
            }
        };
        let prog: &mut XdpProgram = self
            .ebpf
            .program_mut(PROGRAM)
            .ok_or(Error::Missing("XDP program"))?
            .try_into()?;
        let (id, mode) = match how {
            XdpAttach::Driver => (prog.attach(name, XdpFlags::DRV_MODE)?, XdpMode::Driver),
            XdpAttach::Generic => (prog.attach(name, XdpFlags::SKB_MODE)?, XdpMode::Generic),
            XdpAttach::Auto => match prog.attach(name, XdpFlags::DRV_MODE) {
                Ok(id) => (id, XdpMode::Driver),
                Err(_) => (prog.attach(name, XdpFlags::SKB_MODE)?, XdpMode::Generic),
            },
        };
        self.links.push(Link {
            name: name.to_string(),
            ifindex,
            xdp: id,
            tc: tc_link,
        });
        self.set_tx_port(ifindex, true)?;
        Ok(mode)
    }

    /// Detaches the program from interface `name` (nothing when it is not attached there).
    pub fn detach(&mut self, name: &str) -> Result<(), Error> {
        let Some(i) = self.links.iter().position(|l| l.name == name) else {
            return Ok(());
        };
        let link = self.links.remove(i);
        self.set_tx_port(link.ifindex, false)?;
        let prog: &mut XdpProgram = self
            .ebpf
            .program_mut(PROGRAM)
            .ok_or(Error::Missing("XDP program"))?
            .try_into()?;
        prog.detach(link.xdp)?;
        let tc_prog: &mut SchedClassifier = self
            .ebpf
            .program_mut(TC_PROGRAM)
            .ok_or(Error::Missing("tc program"))?
            .try_into()?;
        tc_prog.detach(link.tc)?;
        Ok(())
    }

    /// Whether NAT may send packets out of interface `ifindex` itself (XDP_REDIRECT; `attach`
    /// makes every interface it attaches to one). Packets for other interfaces go out
    /// through the kernel.
    pub fn set_tx_port(&mut self, ifindex: u32, on: bool) -> Result<(), Error> {
        let mut ports: DevMapHash<&mut MapData> = DevMapHash::try_from(self.map("rvs_tx_ports")?)?;
        if on {
            ports.insert(ifindex, ifindex, None, 0)?;
            return Ok(());
        }
        absent_ok(ports.remove(ifindex))
    }

    /// Takes the event ring (once; later calls fail with [`Error::Missing`]).
    pub fn take_events(&mut self) -> Result<Events, Error> {
        let map = self
            .ebpf
            .take_map("rvs_events")
            .ok_or(Error::Missing("rvs_events"))?;
        Ok(Events {
            ring: RingBuf::try_from(map)?,
        })
    }

    /// Deletes the flow of `key` (nothing when the map does not have it).
    pub fn delete_flow(&mut self, key: &abi::FlowKey) -> Result<(), Error> {
        let mut m: HashMap<&mut MapData, abi::FlowKey, abi::Flow> =
            HashMap::try_from(self.map("rvs_flows")?)?;
        absent_ok(m.remove(key))
    }

    /// Every flow the map holds (see [`FlowTable::dump`]).
    pub fn flows(&mut self) -> Result<Vec<(abi::FlowKey, abi::Flow)>, Error> {
        self.flow_table()?.dump()
    }

    /// A handle on the flow map of its own (a duplicate of the map's descriptor), so a
    /// thread can read every flow without holding whatever guards this `Xdp`.
    pub fn flow_table(&mut self) -> Result<FlowTable, Error> {
        let aya::maps::Map::HashMap(m) = self.map("rvs_flows")? else {
            return Err(Error::Missing("rvs_flows as a hash map"));
        };
        Ok(FlowTable {
            fd: m.fd().as_fd().try_clone_to_owned()?,
        })
    }

    /// Deletes the persistence template of `key` (nothing when the map does not have it).
    pub fn delete_template(&mut self, key: &abi::TmplKey) -> Result<(), Error> {
        let mut m: HashMap<&mut MapData, abi::TmplKey, abi::Tmpl> =
            HashMap::try_from(self.map("rvs_templates")?)?;
        absent_ok(m.remove(key))
    }

    /// Every persistence template the map holds.
    pub fn templates(&mut self) -> Result<Vec<(abi::TmplKey, abi::Tmpl)>, Error> {
        let m: HashMap<&mut MapData, abi::TmplKey, abi::Tmpl> =
            HashMap::try_from(self.map("rvs_templates")?)?;
        Ok(m.iter().filter_map(Result::ok).collect())
    }

    /// Every entry of the lblc table (`rvs_lblc`).
    pub fn lblc_entries(&mut self) -> Result<Vec<(abi::LocKey, abi::Lblc)>, Error> {
        let m: HashMap<&mut MapData, abi::LocKey, abi::Lblc> =
            HashMap::try_from(self.map("rvs_lblc")?)?;
        Ok(m.iter().filter_map(Result::ok).collect())
    }

    /// Deletes an lblc entry (nothing when the map does not have it).
    pub fn delete_lblc(&mut self, key: &abi::LocKey) -> Result<(), Error> {
        let mut m: HashMap<&mut MapData, abi::LocKey, abi::Lblc> =
            HashMap::try_from(self.map("rvs_lblc")?)?;
        absent_ok(m.remove(key))
    }

    /// Every entry of the lblcr table (`rvs_lblcr`).
    pub fn lblcr_entries(&mut self) -> Result<Vec<(abi::LocKey, abi::Lblcr)>, Error> {
        let m: HashMap<&mut MapData, abi::LocKey, abi::Lblcr> =
            HashMap::try_from(self.map("rvs_lblcr")?)?;
        Ok(m.iter().filter_map(Result::ok).collect())
    }

    /// Replaces an existing lblcr entry (nothing when the map does not have it any more).
    pub fn update_lblcr(&mut self, key: &abi::LocKey, set: &abi::Lblcr) -> Result<(), Error> {
        let mut m: HashMap<&mut MapData, abi::LocKey, abi::Lblcr> =
            HashMap::try_from(self.map("rvs_lblcr")?)?;
        // BPF_EXIST: an entry the program dropped meanwhile stays dropped
        absent_ok(m.insert(key, set, 2))
    }

    /// Deletes an lblcr entry (nothing when the map does not have it).
    pub fn delete_lblcr(&mut self, key: &abi::LocKey) -> Result<(), Error> {
        let mut m: HashMap<&mut MapData, abi::LocKey, abi::Lblcr> =
            HashMap::try_from(self.map("rvs_lblcr")?)?;
        absent_ok(m.remove(key))
    }

    fn map(&mut self, name: &'static str) -> Result<&mut aya::maps::Map, Error> {
        self.ebpf.map_mut(name).ok_or(Error::Missing(name))
    }

    /// Adds or replaces a virtual service.
    pub fn set_service(&mut self, vip: &abi::Vip, svc: &abi::Service) -> Result<(), Error> {
        let mut m: HashMap<&mut MapData, abi::Vip, abi::Service> =
            HashMap::try_from(self.map("rvs_services")?)?;
        m.insert(vip, svc, 0)?;
        Ok(())
    }

    /// Removes a virtual service (its flows stay until they expire).
    pub fn remove_service(&mut self, vip: &abi::Vip) -> Result<(), Error> {
        let mut m: HashMap<&mut MapData, abi::Vip, abi::Service> =
            HashMap::try_from(self.map("rvs_services")?)?;
        m.remove(vip)?;
        Ok(())
    }

    /// Sets real server number `idx`, and forgets the next hops the program kept toward the
    /// one before (after the write: a packet in between could keep the old one again).
    pub fn set_dest(&mut self, idx: u32, dest: &abi::Dest) -> Result<(), Error> {
        let mut m: Array<&mut MapData, abi::Dest> = Array::try_from(self.map("rvs_dests")?)?;
        m.set(idx, dest, 0)?;
        let mut kept: PerCpuArray<&mut MapData, abi::NextHop> =
            PerCpuArray::try_from(self.map("rvs_nh_dest")?)?;
        let none = vec![abi::NextHop::default(); aya::util::nr_cpus().map_err(|(_, e)| e)?];
        kept.set(idx, PerCpuValues::try_from(none)?, 0)?;
        Ok(())
    }

    /// The next hop CPU `cpu` keeps toward real server `idx` (see [`NextHops`]).
    pub fn kept_next_hop(&mut self, idx: u32, cpu: usize) -> Result<abi::NextHop, Error> {
        let kept: PerCpuArray<&mut MapData, abi::NextHop> =
            PerCpuArray::try_from(self.map("rvs_nh_dest")?)?;
        let v = kept.get(&idx, 0)?;
        v.get(cpu).copied().ok_or(Error::Missing("that CPU"))
    }

    /// Takes the generation of the kept next hops (once; later calls fail with
    /// [`Error::Missing`]). Until it is turned on, the program keeps none.
    pub fn take_next_hops(&mut self) -> Result<NextHops, Error> {
        let map = self
            .ebpf
            .take_map("rvs_nh_gen")
            .ok_or(Error::Missing("rvs_nh_gen"))?;
        Ok(NextHops {
            map: Array::try_from(map)?,
            gen: 0,
            last: 0,
        })
    }

    /// Sets real server `idx`'s connection counts from the core, with how many of the
    /// program's connections to it ([`Xdp::sched`]) they include.
    pub fn set_conns(&mut self, idx: u32, conns: &abi::DestConns) -> Result<(), Error> {
        let mut m: Array<&mut MapData, abi::DestConns> = Array::try_from(self.map("rvs_conns")?)?;
        m.set(idx, conns, 0)?;
        Ok(())
    }

    /// Real server `idx`'s connection counts as the control plane last wrote them.
    pub fn conns(&mut self, idx: u32) -> Result<abi::DestConns, Error> {
        let m: Array<&mut MapData, abi::DestConns> = Array::try_from(self.map("rvs_conns")?)?;
        Ok(m.get(&idx, 0)?)
    }

    /// The connections the program scheduled to real server `idx`, ever (wrapping).
    pub fn sched(&mut self, idx: u32) -> Result<abi::DestSched, Error> {
        let m: Array<&mut MapData, abi::DestSched> = Array::try_from(self.map("rvs_sched")?)?;
        Ok(m.get(&idx, 0)?)
    }

    /// Real server `idx`'s (active, inactive) connections as the program's schedulers count
    /// them: the core's counts plus the program's connections the core has not heard of.
    pub fn scheduled_counts(&mut self, idx: u32) -> Result<(u64, u64), Error> {
        let c = self.conns(idx)?;
        let s = self.sched(idx)?;
        // as the program: the difference as a signed number, never below 0
        let more = |made: u32, seen: u32| u64::from((made.wrapping_sub(seen) as i32).max(0) as u32);
        Ok((
            u64::from(c.active) + more(s.active, c.seen_active),
            u64::from(c.inactive) + more(s.inactive, c.seen_inactive),
        ))
    }

    /// Writes a schedule sequence (real server numbers) from slot `off` on.
    pub fn set_seq(&mut self, off: u32, seq: &[u32]) -> Result<(), Error> {
        let mut m: Array<&mut MapData, u32> = Array::try_from(self.map("rvs_seq")?)?;
        for (i, d) in seq.iter().enumerate() {
            let i = u32::try_from(i).map_err(|_| Error::Missing("room for the sequence"))?;
            m.set(off + i, d, 0)?;
        }
        Ok(())
    }

    /// Sets the next position in service `id`'s sequence.
    pub fn set_position(&mut self, id: u32, pos: u32) -> Result<(), Error> {
        let mut m: Array<&mut MapData, u32> = Array::try_from(self.map("rvs_pos")?)?;
        m.set(id, pos, 0)?;
        Ok(())
    }

    /// The director's Ethernet address on interface `ifindex`, without tunnel sources.
    pub fn set_iface(&mut self, ifindex: u32, mac: [u8; 6]) -> Result<(), Error> {
        self.set_iface_full(
            ifindex,
            &abi::Iface {
                mac,
                ..Default::default()
            },
        )
    }

    /// Everything the program knows of interface `ifindex` (see [`abi::Iface`]); packets
    /// arriving there are the program's from now on.
    pub fn set_iface_full(&mut self, ifindex: u32, iface: &abi::Iface) -> Result<(), Error> {
        if ifindex >= abi::MAX_IFINDEX {
            return Err(Error::Full("interfaces (its index is too large)"));
        }
        let on = abi::Iface {
            flags: iface.flags | abi::IFACE_ON,
            ..*iface
        };
        let mut m: Array<&mut MapData, abi::Iface> = Array::try_from(self.map("rvs_ifaces")?)?;
        m.set(ifindex, on, 0)?;
        Ok(())
    }

    /// Forgets interface `ifindex`: packets arriving there go to the kernel.
    pub fn remove_iface(&mut self, ifindex: u32) -> Result<(), Error> {
        if ifindex >= abi::MAX_IFINDEX {
            return Ok(());
        }
        let mut m: Array<&mut MapData, abi::Iface> = Array::try_from(self.map("rvs_ifaces")?)?;
        m.set(ifindex, abi::Iface::default(), 0)?;
        Ok(())
    }

    /// The global counters, summed over CPUs, in [`abi::Counter::ALL`] order.
    pub fn counters(&mut self) -> Result<[u64; abi::COUNTERS], Error> {
        let m: PerCpuArray<&mut MapData, u64> = PerCpuArray::try_from(self.map("rvs_counters")?)?;
        let mut out = [0u64; abi::COUNTERS];
        for (i, slot) in out.iter_mut().enumerate() {
            let v = m.get(&(i as u32), 0)?;
            *slot = v.iter().sum();
        }
        Ok(out)
    }

    /// Real server `idx`'s counters, summed over CPUs.
    pub fn dest_stats(&mut self, idx: u32) -> Result<abi::DestStats, Error> {
        let m: PerCpuArray<&mut MapData, abi::DestStats> =
            PerCpuArray::try_from(self.map("rvs_dest_stats")?)?;
        let v = m.get(&idx, 0)?;
        Ok(v.iter()
            .fold(abi::DestStats::default(), |a, s| abi::DestStats {
                conns: a.conns + s.conns,
                packets: a.packets + s.packets,
                bytes: a.bytes + s.bytes,
                out_packets: a.out_packets + s.out_packets,
                out_bytes: a.out_bytes + s.out_bytes,
            }))
    }

    /// The flow of `key`, if the map has it.
    pub fn flow(&mut self, key: &abi::FlowKey) -> Result<Option<abi::Flow>, Error> {
        // an LRU hash map reads like a hash map
        let m: HashMap<&mut MapData, abi::FlowKey, abi::Flow> =
            HashMap::try_from(self.map("rvs_flows")?)?;
        match m.get(key, 0) {
            Ok(f) => Ok(Some(f)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs the XDP program on `packet` (`repeat` times) as if it arrived on interface
    /// `ifindex` of the caller's network namespace (None: its loopback), without a network.
    /// The packet must hold at least an Ethernet header (14 bytes), as every frame XDP sees.
    pub fn test_run(
        &mut self,
        packet: &[u8],
        ifindex: Option<u32>,
        repeat: u32,
    ) -> Result<TestRun, Error> {
        let prog: &XdpProgram = self
            .ebpf
            .program(PROGRAM)
            .ok_or(Error::Missing("XDP program"))?
            .try_into()?;
        let fd = prog.fd()?;
        Ok(testrun::run(fd, packet, ifindex, repeat)?)
    }
}

/// Runs the XDP program `prog` (loaded by the caller, from any object) on `packet` as if it
/// arrived on interface `ifindex` (None: the loopback), without a network, as
/// [`Xdp::test_run`] does for the data plane's program.
pub fn xdp_test_run(
    prog: &XdpProgram,
    packet: &[u8],
    ifindex: Option<u32>,
) -> Result<TestRun, Error> {
    Ok(testrun::run(prog.fd()?, packet, ifindex, 1)?)
}

/// Runs the XDP program `prog` (loaded by the caller, from any object) `repeat` times on
/// copies of `packet` as live frames arriving on interface `ifindex` of the caller's network
/// namespace (`BPF_F_TEST_XDP_LIVE_FRAMES`, kernel 5.18+): the frames it transmits (XDP_TX) or
/// redirects really leave, at the rate one CPU can make them. Returns the kernel's mean
/// nanoseconds per run. A packet generator (examples/pktgen.rs) is built on this.
pub fn xdp_live_run(
    prog: &XdpProgram,
    packet: &[u8],
    ifindex: u32,
    repeat: u32,
) -> Result<u32, Error> {
    Ok(testrun::run_live(prog.fd()?, packet, ifindex, repeat)?)
}

/// The Internet checksum of an IPv4 header (`header` with its checksum field zero), for
/// building test packets.
pub fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut s: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// The index of network interface `name` in the caller's namespace.
#[allow(unsafe_code)]
fn ifindex(name: &str) -> Result<u32, Error> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: if_nametoindex reads the NUL-terminated string `c`, which lives across the call.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(std::io::Error::last_os_error().into()),
        i => Ok(i),
    }
}

/// A deletion of what is not there succeeds.
fn absent_ok(r: Result<(), aya::maps::MapError>) -> Result<(), Error> {
    match r {
        Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(aya::maps::MapError::SyscallError(e))
            if e.io_error.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// How to attach the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpAttach {
    /// in the driver when it has XDP, else generic
    #[default]
    Auto,
    /// in the driver only
    Driver,
    /// generic XDP only
    Generic,
}

/// How the program runs on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// in the driver, before an skb exists
    Driver,
    /// generic XDP, after the skb is built (every driver has it; slower)
    Generic,
}

//! `--dataplane xdp`: the XDP program (rvs-bpf) on the director's interfaces.
//!
//! The program forwards DR and tunnel services in the kernel; this module wires its control
//! side (`rvs_bpf::plane::Plane`) to the director:
//! - start: load the program, tell it each interface's Ethernet address and its addresses
//!   (a tunnel's outer source), attach it (in the driver, else generic XDP), turn the core's
//!   expiry log on;
//! - before a rule change: bring the program's choices into the core ([`XdpDataplane::prepare`]),
//!   because a scheduler replays them correctly only under the rules they were made with;
//! - after it: [`XdpDataplane::sync`] (services, real servers, schedules; next hops resolved
//!   through rtnetlink, waiting up to [`RESOLVE_WAIT`] for one not known yet);
//! - before a listing: [`XdpDataplane::refresh`], so `-Ln --stats` and `-Lnc` show what was
//!   forwarded up to that moment;
//! - a thread of its own: waits on the event ring (at most [`POLL_EVERY`]) and brings events
//!   and expiries over; every second it adds the per-server counters and refreshes the next
//!   hops (a real server whose Ethernet address changed is followed, one that does not answer
//!   is retried).
//!
//! Lock order: the director's lock, then the plane's, then the core's; the thread takes the
//! plane's and then the core's.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rvs_bpf::plane::{Neighbours, Plane, SyncReport};
use rvs_bpf::{abi, Xdp, XdpAttach, XdpMode};
use rvs_proxy::core::Core;

use crate::netlink;

/// How long a sync waits for a real server's next hop to answer ARP / neighbour discovery.
pub const RESOLVE_WAIT: Duration = Duration::from_millis(300);

/// The longest the thread sleeps between looks at the event ring.
pub const POLL_EVERY: Duration = Duration::from_millis(100);

/// Counters and next hops are refreshed this often.
const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// The XDP data plane of a running director.
pub struct XdpDataplane {
    plane: Arc<Mutex<Plane>>,
    core: Arc<Core>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// follows the kernel's routing for the next hops NAT keeps ([`watch_routing`])
    watcher: Option<JoinHandle<()>>,
}

/// Next hops from the kernel's routing and neighbour tables; a real server new to the
/// program is waited for up to `wait`. Without waiting, each address family's neighbour
/// table is dumped once per `Kernel` (a refresh), not once per real server.
struct Kernel {
    wait: Duration,
    tables: HashMap<u8, HashMap<(u32, IpAddr), netlink::Neigh>>,
}

impl Kernel {
    fn new(wait: Duration) -> Kernel {
        Kernel {
            wait,
            tables: HashMap::new(),
        }
    }

    /// The usable neighbour entry of `hop` on `ifindex`, from the table of its family.
    fn neighbour(&mut self, ifindex: u32, hop: IpAddr) -> Option<netlink::Neigh> {
        let family = if hop.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        } as u8;
        let table = match self.tables.entry(family) {
            Entry::Occupied(t) => t.into_mut(),
            Entry::Vacant(v) => v.insert(netlink::neighbours(family).ok()?),
        };
        table.get(&(ifindex, hop)).copied()
    }
}

impl Neighbours for Kernel {
    fn next_hop(&mut self, addr: IpAddr, new: bool) -> Option<[u8; 6]> {
        if new && !self.wait.is_zero() {
            return netlink::resolve(addr, self.wait).ok().map(|h| h.mac);
        }
        // a refresh: look without waiting; a missing entry is asked for (the kernel resolves
        // it and the next refresh finds it), and until then the plane keeps the last address
        let route = netlink::route_get(addr).ok()?;
        let hop = route.gateway.unwrap_or(addr);
        match self.neighbour(route.oif, hop) {
            Some(n) => Some(n.mac),
            None => {
                let _ = netlink::solicit(hop, route.oif);
                None
            }
        }
    }
}

/// A refresh's next hops, looked up before the core was locked ([`look_up`]); a real server
/// added since is looked up then (with the neighbour tables already dumped).
struct Looked {
    hops: HashMap<IpAddr, Option<[u8; 6]>>,
    rest: Kernel,
}

impl Neighbours for Looked {
    fn next_hop(&mut self, addr: IpAddr, new: bool) -> Option<[u8; 6]> {
        match self.hops.get(&addr) {
            Some(h) => *h,
            None => self.rest.next_hop(addr, new),
        }
    }
}

/// The next hops of `addrs` (real servers reached by direct routing or tunnelling), asked of
/// the kernel while no lock is held: with many real servers this is many routing lookups,
/// which must not stall the control socket or new connections waiting for the core.
fn look_up(addrs: &[IpAddr]) -> Looked {
    let mut k = Kernel::new(Duration::ZERO);
    let hops = addrs.iter().map(|a| (*a, k.next_hop(*a, false))).collect();
    Looked { hops, rest: k }
}

impl XdpDataplane {
    /// Loads the program and attaches it to `ifaces`.
    pub fn start(core: Arc<Core>, ifaces: &[String], how: XdpAttach) -> Result<XdpDataplane> {
        if ifaces.is_empty() {
            bail!("--dataplane xdp needs at least one --iface");
        }
        let mut xdp = Xdp::load().context("loading the XDP program (needs root)")?;
        for name in ifaces {
            let mode = attach(&mut xdp, name, how)?;
            tracing::info!(iface = %name, mode = ?mode, "XDP program attached");
            warn_forwarding(name);
        }
        core.lock().set_expiry_log(true);
        let hops = xdp.take_next_hops()?;
        let plane = Plane::new(xdp, core.now())?;
        let plane = Arc::new(Mutex::new(plane));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (plane, core, stop) = (plane.clone(), core.clone(), stop.clone());
            std::thread::Builder::new()
                .name("rvs-xdp".into())
                .spawn(move || run(&plane, &core, &stop))?
        };
        let watcher = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("rvs-nexthops".into())
                .spawn(move || watch_routing(hops, &stop))
        };
        let watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                stop.store(true, Ordering::SeqCst);
                let _ = thread.join();
                return Err(e.into());
            }
        };
        Ok(XdpDataplane {
            plane,
            core,
            stop,
            thread: Some(thread),
            watcher: Some(watcher),
        })
    }

    fn plane(&self) -> MutexGuard<'_, Plane> {
        self.plane.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Brings the program's events into the core (before a rule change).
    pub fn prepare(&self) {
        let mut plane = self.plane();
        let mut ipvs = self.core.lock();
        if let Err(e) = plane.poll(&mut ipvs, self.core.now()) {
            tracing::error!("XDP events: {e}");
        }
    }

    /// Makes the program serve the core's rules.
    pub fn sync(&self) {
        let mut plane = self.plane();
        let mut ipvs = self.core.lock();
        let mut nh = Kernel::new(RESOLVE_WAIT);
        match plane.sync(&mut ipvs, self.core.now(), &mut nh) {
            Ok(report) => log_report(&report),
            Err(e) => tracing::error!("XDP sync: {e}"),
        }
    }

    /// Events and counters up to now, into the core (before a listing).
    pub fn refresh(&self) {
        let mut plane = self.plane();
        let mut ipvs = self.core.lock();
        let r = plane
            .poll(&mut ipvs, self.core.now())
            .and_then(|_| plane.count(&mut ipvs));
        if let Err(e) = r {
            tracing::error!("XDP refresh: {e}");
        }
    }

    /// Stops the thread and detaches the program from every interface.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in [self.thread.take(), self.watcher.take()]
            .into_iter()
            .flatten()
        {
            let _ = t.join();
        }
        // dropping the last handle closes the program's links: it is detached
    }
}

/// Attaches the program to `name` and tells it the interface's addresses.
fn attach(xdp: &mut Xdp, name: &str, how: XdpAttach) -> Result<XdpMode> {
    let ifindex = netlink::ifindex(name).with_context(|| format!("--iface {name}"))?;
    let link = netlink::link(ifindex).with_context(|| format!("--iface {name}"))?;
    let mut iface = abi::Iface {
        mac: link.mac,
        ..Default::default()
    };
    for a in netlink::addrs(ifindex).with_context(|| format!("--iface {name}: addresses"))? {
        match a {
            IpAddr::V4(v4) if iface.addr4 == 0 => iface.addr4 = u32::from_ne_bytes(v4.octets()),
            IpAddr::V6(v6) if iface.addr6 == [0; 4] && !is_link_local(&v6) => {
                iface.addr6 = rvs_bpf::plane::words(IpAddr::V6(v6)).0;
            }
            _ => {}
        }
    }
    xdp.set_iface_full(ifindex, &iface)?;
    xdp.attach(name, how)
        .with_context(|| format!("attaching the XDP program to {name}"))
}

/// NAT sends packets on as the kernel would route them arriving on the interface, which it
/// refuses while forwarding is off there: say so at start (direct routing and tunnels do not
/// need it).
fn warn_forwarding(name: &str) {
    for (family, path) in [
        ("IPv4", format!("/proc/sys/net/ipv4/conf/{name}/forwarding")),
        ("IPv6", format!("/proc/sys/net/ipv6/conf/{name}/forwarding")),
    ] {
        if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == "0") {
            tracing::warn!(
                iface = %name,
                "{family} forwarding is off here: NAT (-m) real servers' packets arriving on it are dropped (NoRoute) until it is on"
            );
        }
    }
}

fn is_link_local(a: &std::net::Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

fn log_report(r: &SyncReport) {
    for (key, why) in &r.skipped {
        tracing::warn!(service = ?key, "not forwarded by XDP (packets go to the kernel): {why}");
    }
    for a in &r.unresolved {
        tracing::warn!(real_server = %a, "next hop not resolved yet: its flows' packets are dropped until it answers");
    }
}

/// How long the routing watcher waits for the kernel's announcements before it looks at the
/// stop flag again.
const WATCH_EVERY: Duration = Duration::from_millis(200);

/// The routing watcher asks whether routing is plain at most this often (the question dumps
/// every route).
const RECHECK_EVERY: Duration = Duration::from_secs(1);

/// The thread that keeps the NAT path's kept next hops true ([`rvs_bpf::NextHops`]): every
/// announcement of a change to links, neighbours' addresses, addresses, routes, rules or
/// forwarding settings makes them stale at once. Keeping is on only while routing is plain
/// ([`netlink::plain_routing`]: policy rules, routes by TOS or source, or multipath routes
/// make the FIB's answer depend on more than the destination, and then every packet asks the
/// FIB): an announcement of such a rule or route turns keeping off at once, and routing is
/// looked at again (at most every [`RECHECK_EVERY`]) before it is turned on. Without the
/// announcements (the socket cannot be opened) keeping stays off.
fn watch_routing(mut hops: rvs_bpf::NextHops, stop: &AtomicBool) {
    let mut changes = match netlink::Changes::open() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("routing announcements: {e}; NAT looks every packet's next hop up");
            return;
        }
    };
    // subscribed before the first look: a change from here on is seen
    let mut recheck = Some(Instant::now());
    let mut last_check: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if recheck.is_some_and(|t| now >= t) {
            last_check = Some(now);
            recheck = None;
            match netlink::plain_routing() {
                Ok(plain) => {
                    if plain != hops.enabled() {
                        tracing::info!(
                            "NAT next hops: {}",
                            if plain {
                                "kept between packets (plain routing)"
                            } else {
                                "looked up for every packet (policy rules, or routes by TOS, by source or with several paths)"
                            }
                        );
                    }
                    if let Err(e) = hops.set_enabled(plain) {
                        tracing::error!("NAT next hops: {e}");
                    }
                }
                Err(e) => {
                    tracing::warn!("reading the routing rules and routes: {e}");
                    let _ = hops.set_enabled(false);
                    recheck = Some(now + RECHECK_EVERY);
                }
            }
        }
        let timeout = recheck.map_or(WATCH_EVERY, |t| {
            t.saturating_duration_since(now).min(WATCH_EVERY)
        });
        match changes.wait(timeout) {
            Ok(None) => {}
            Ok(Some(c)) => {
                if c.policy {
                    // off at once (nothing kept under the new rules before the look), then a
                    // look at the routing
                    if let Err(e) = hops.set_enabled(false) {
                        tracing::error!("NAT next hops: {e}");
                    }
                    let due = last_check.map_or(now, |t| (t + RECHECK_EVERY).max(now));
                    recheck = Some(recheck.map_or(due, |r| r.min(due)));
                } else if let Err(e) = hops.invalidate() {
                    tracing::error!("NAT next hops: {e}");
                }
            }
            Err(e) => {
                tracing::error!("routing announcements: {e}; NAT looks every packet's next hop up");
                let _ = hops.set_enabled(false);
                return;
            }
        }
    }
}

/// The thread: events as they come, counters and next hops every second.
fn run(plane: &Mutex<Plane>, core: &Core, stop: &AtomicBool) {
    let waiter = match plane
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .events()
        .waiter()
    {
        Ok(w) => w,
        Err(e) => {
            tracing::error!("XDP event ring: {e}");
            return;
        }
    };
    let mut last_refresh = Instant::now();
    let mut watch = Watch::default();
    while !stop.load(Ordering::SeqCst) {
        waiter.wait(POLL_EVERY);
        let due = last_refresh.elapsed() >= REFRESH_EVERY;
        let addrs = {
            let mut p = plane.lock().unwrap_or_else(|e| e.into_inner());
            let mut ipvs = core.lock();
            if let Err(e) = p.poll(&mut ipvs, core.now()) {
                tracing::error!("XDP events: {e}");
            }
            if !due {
                continue;
            }
            Plane::next_hop_addrs(&ipvs)
        };
        last_refresh = Instant::now();
        let mut hops = look_up(&addrs);
        let walk_due = {
            let mut p = plane.lock().unwrap_or_else(|e| e.into_inner());
            let mut ipvs = core.lock();
            refresh(&mut p, &mut ipvs, &mut watch, &mut hops).unwrap_or_else(|e| {
                tracing::error!("XDP refresh: {e}");
                false
            })
        };
        if walk_due {
            match walk(plane, core) {
                Ok(n) => {
                    if n > 0 {
                        tracing::warn!(flows = n, "XDP flows taken up after lost events");
                    }
                    watch.last_reconcile = Some(Instant::now());
                }
                // tried again at the next refresh
                Err(e) => tracing::error!("XDP walk of the flows: {e}"),
            }
        }
    }
}

/// Flows judged per hold of the core's lock in a walk (some milliseconds' worth).
const WALK_STEP: usize = 16_384;

/// Walks the program's flows ([`Plane::reconcile`]) without holding the core's lock for
/// long: the flows are read with no lock held (a million take over half a second, which
/// neither new connections of the userspace plane nor `rvsadm` should wait for), then judged
/// [`WALK_STEP`] at a time under the locks, the first time after the events that came during
/// the read.
fn walk(plane: &Mutex<Plane>, core: &Core) -> Result<usize, rvs_bpf::Error> {
    let walk = plane
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .begin_walk()?;
    let dump = walk.dump();
    let lock = || plane.lock().unwrap_or_else(|e| e.into_inner());
    let mut dump = match dump {
        Ok(d) => d,
        Err(e) => {
            lock().abandon_walk(walk);
            return Err(e);
        }
    };
    let mut taken = 0;
    let mut first = true;
    while !dump.is_done() {
        let mut p = lock();
        p.make_room(&dump, WALK_STEP);
        let mut ipvs = core.lock();
        // the first time, the new connections of the read's time (in the ring) go into the
        // core first, so their flows are not taken for ones whose events were lost
        let polled = if first {
            p.poll(&mut ipvs, core.now()).map(drop)
        } else {
            Ok(())
        };
        let step = polled.and_then(|()| p.walk_some(&mut ipvs, core.now(), &mut dump, WALK_STEP));
        first = false;
        match step {
            Ok(n) => taken += n,
            Err(e) => {
                p.abandon_walk(walk);
                return Err(e);
            }
        }
    }
    lock().finish_walk(walk, &dump)?;
    Ok(taken)
}

/// The program's counters worth an operator's attention, and when they were last reported.
#[derive(Default)]
struct Watch {
    seen: Option<[u64; abi::COUNTERS]>,
    last_report: Option<Instant>,
    last_reconcile: Option<Instant>,
    /// the lost-event counter at the last look
    lost: u64,
}

/// Counters the log reports when they grow: each is a packet the program could not handle
/// as asked.
const WATCHED: [abi::Counter; 9] = [
    abi::Counter::FlowFull,
    abi::Counter::EventLost,
    abi::Counter::NoRoom,
    abi::Counter::UnsupportedFwd,
    abi::Counter::NoIface,
    abi::Counter::TtlExpired,
    abi::Counter::NoRoute,
    abi::Counter::TooBig,
    abi::Counter::BadCsum,
];

/// Every second: the per-server counters into the core, the next hops, a look at the
/// program's counters. True when a walk of the flows is due (lost events, or a minute since
/// the last).
fn refresh(
    p: &mut Plane,
    ipvs: &mut rvs_core::ipvs::Ipvs,
    watch: &mut Watch,
    hops: &mut Looked,
) -> Result<bool, rvs_bpf::Error> {
    p.count(ipvs)?;
    p.refresh_dests(ipvs, hops)?;
    let now = p.xdp().counters()?;
    let grew = |c: abi::Counter| watch.seen.map_or(0, |s| now[c as usize] - s[c as usize]);
    let lost_now = now[abi::Counter::EventLost as usize];
    let lost = lost_now > watch.lost;
    watch.lost = lost_now;
    let report_due = watch
        .last_report
        .is_none_or(|t| t.elapsed() >= Duration::from_secs(10));
    if report_due {
        let grown: Vec<String> = WATCHED
            .iter()
            .filter(|c| grew(**c) > 0)
            .map(|c| format!("{c:?} +{}", grew(*c)))
            .collect();
        if !grown.is_empty() {
            tracing::warn!("XDP program: {}", grown.join(", "));
        }
        watch.seen = Some(now);
        watch.last_report = Some(Instant::now());
    }
    let minute = watch
        .last_reconcile
        .is_none_or(|t| t.elapsed() >= Duration::from_secs(60));
    Ok(lost || minute)
}

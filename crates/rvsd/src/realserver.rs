//! `rvsd realserver`: what a real server of a direct-routing or tunnelling service needs, as
//! the LVS `lvs-rs` script does it, and more for tunnels.
//!
//! ```text
//! rvsd realserver --vip ADDR... --mode dr|tun [--iface NAME]... [--gue-port N]...
//! rvsd realserver --stop [--vip ADDR]... [--gue-port N]...
//! ```
//!
//! Start, both modes: each VIP on `lo` (`/32`, IPv6 `/128`, as `ip addr add VIP/32 dev lo`
//! gives); with an IPv4 VIP, `arp_ignore` 1 and `arp_announce` 2 on `lo` and `all`, so the
//! host neither answers ARP for the VIP nor uses it as the source of its own ARP. TUN also
//! puts the VIPs (and GUE ports) in the maps of the decapsulation tc program
//! ([`rvs_bpf::Decap`]), pinned under `/sys/fs/bpf/rvs/net<N>/` so that every invocation in the namespace shares it,
//! and attaches it to tc ingress of each `--iface` (default: every interface that is up and
//! not loopback). A decapsulated packet arrives on that interface with the client's source
//! address, so strict reverse-path filtering drops it unless the route back to the client
//! leaves through the same interface (a real server whose default route is elsewhere); when
//! an interface's effective `rp_filter` is strict (1) it is set to loose (2) there, which
//! only asks that the client be reachable at all.
//!
//! What it changed is written to a state file (`/run/rvs/realserver-net<N>.json`, per network namespace): the sysctls'
//! previous values, the VIPs (and whether their address was added here), the interfaces the
//! program was attached to (and whether the clsact qdisc was added), the GUE ports. `--stop`
//! undoes it for the given VIPs (all without `--vip`): addresses added here are removed, the
//! ARP sysctls go back to their previous values when no IPv4 VIP is left, and when no TUN VIP
//! is left the program is detached (the clsact qdisc removed if it was added here and holds
//! nothing else), `rp_filter` restored and the pins removed. Starting or stopping twice does
//! nothing more. A start that fails undoes what it did (exit 1); bad input exits 2.
//!
//! The pins must outlive the run, so they belong on the host's bpffs (mounted on
//! `/sys/fs/bpf` when nothing is). Under `ip netns exec`, whose private mount namespace has a
//! /sys of its own, they do not: each run then loads the program again with every TUN VIP
//! and GUE port of the state file, and puts it in place of the filters of the earlier
//! instance (a filter named `rvs_decap` whose program id is not the pinned program's), so
//! the result is the same; `nsenter --net=/run/netns/NAME` keeps the host's mounts.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::net::IpAddr;
use std::path::Path;

use anyhow::{bail, Context, Result};
use rvs_bpf::Decap;
use serde::{Deserialize, Serialize};

use crate::netlink::{self, Hook};
use crate::{bpffs, statefile};

mod args;

use args::{parse, Mode, Opts, USAGE};

/// `rvsd realserver ARGS`: the exit status (2: bad input, 1: failed, 0: done).
pub fn main(argv: &[String]) -> i32 {
    let opts = match parse(argv) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{USAGE}");
            return 0;
        }
        Err(e) => {
            eprintln!("rvsd realserver: {e:#}\n{USAGE}");
            return 2;
        }
    };
    let done = if opts.stop { stop(&opts) } else { start(&opts) };
    match done {
        Ok(()) => 0,
        Err(e) if e.is::<Usage>() => {
            eprintln!("rvsd realserver: {e:#}");
            2
        }
        Err(e) => {
            eprintln!("rvsd realserver: {e:#}");
            1
        }
    }
}

/// Bad input found once the system is looked at (an interface that does not exist).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Usage(String);

/// One line per action.
fn say(what: impl std::fmt::Display) {
    eprintln!("rvsd realserver: {what}");
}

// ---- the state file ----

/// The state of this namespace's real server. A state file left by a namespace that is gone
/// is not taken, nor are the tc program's pins beside it (same inode, same directory): the
/// program's maps would still hold that namespace's VIPs.
fn load_state(opts: &Opts) -> Result<State> {
    let (state, stale) = State::load(&opts.state)?;
    if stale {
        say(format_args!(
            "{} was written in a network namespace that is gone: starting afresh",
            opts.state.display()
        ));
        if opts.pin_dir.join(Decap::PIN).exists() {
            Decap::unpin(&opts.pin_dir)?;
            say(format_args!(
                "removed that namespace's tc program pins from {}",
                opts.pin_dir.display()
            ));
        }
    }
    Ok(state)
}

/// What earlier runs changed (the state file).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    /// sysctls changed (path under /proc/sys) → the value before
    #[serde(default)]
    sysctls: BTreeMap<String, String>,
    #[serde(default)]
    vips: Vec<VipState>,
    /// interfaces the tc program is attached to
    #[serde(default)]
    ifaces: Vec<IfaceState>,
    #[serde(default)]
    gue_ports: Vec<u16>,
    /// The cookie of the network namespace these changes were made in (see [`netlink::netns_cookie`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    netns: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct VipState {
    addr: IpAddr,
    mode: Mode,
    /// the address on lo was added by us (it was not there before)
    added: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct IfaceState {
    name: String,
    /// the clsact qdisc was added by us
    clsact_added: bool,
    /// `rp_filter` of the interface before we set it to loose
    #[serde(default)]
    rp_filter: Option<String>,
}

impl State {
    /// The state file of this network namespace: empty when there is none, or when it was
    /// written in another namespace (gone, its inode given to this one: then `true`).
    fn load(path: &Path) -> Result<(State, bool)> {
        let state = State::read(path)?;
        match (state.netns, netlink::netns_cookie()) {
            (Some(then), Some(now)) if then != now => Ok((State::default(), true)),
            _ => Ok((state, false)),
        }
    }

    fn read(path: &Path) -> Result<State> {
        match fs::read_to_string(path) {
            Ok(t) => {
                serde_json::from_str(&t).with_context(|| format!("reading {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Nothing to undo.
    fn is_empty(&self) -> bool {
        self.sysctls.is_empty()
            && self.vips.is_empty()
            && self.ifaces.is_empty()
            && self.gue_ports.is_empty()
    }

    /// Writes the state, with this namespace's cookie (removes the file when nothing is left
    /// to undo).
    fn save(&self, path: &Path) -> Result<()> {
        if self.is_empty() {
            return match fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            };
        }
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let state = State {
            netns: netlink::netns_cookie(),
            ..self.clone()
        };
        statefile::write_atomic(path, &(serde_json::to_string_pretty(&state)? + "\n"))
    }

    fn vip(&self, a: IpAddr) -> Option<&VipState> {
        self.vips.iter().find(|v| v.addr == a)
    }

    fn has_v4(&self) -> bool {
        self.vips.iter().any(|v| v.addr.is_ipv4())
    }

    fn has_tun(&self) -> bool {
        self.vips.iter().any(|v| v.mode == Mode::Tun)
    }
}

/// Serialises runs: an exclusive lock on `STATE.lock`, held until the returned file closes.
fn lock(state: &Path) -> Result<File> {
    if let Some(dir) = state.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let path = state.with_extension("lock");
    let f = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    f.lock()
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(f)
}

// ---- sysctls ----

/// The ARP sysctls of an IPv4 VIP on lo and the values they get.
const ARP_SYSCTLS: [(&str, &str); 4] = [
    ("net/ipv4/conf/lo/arp_ignore", "1"),
    ("net/ipv4/conf/lo/arp_announce", "2"),
    ("net/ipv4/conf/all/arp_ignore", "1"),
    ("net/ipv4/conf/all/arp_announce", "2"),
];

fn sysctl_read(key: &str) -> Result<String> {
    let path = Path::new("/proc/sys").join(key);
    Ok(fs::read_to_string(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_string())
}

fn sysctl_write(key: &str, value: &str) -> Result<()> {
    let path = Path::new("/proc/sys").join(key);
    fs::write(&path, format!("{value}\n")).with_context(|| format!("writing {}", path.display()))
}

/// `net/ipv4/conf/lo/arp_ignore` → `net.ipv4.conf.lo.arp_ignore`
fn dotted(key: &str) -> String {
    key.replace('/', ".")
}

// ---- one run, and what undoes it ----

/// What a run did, to undo when a later step fails.
#[derive(Debug)]
enum Undo {
    Addr(u32, IpAddr),
    Sysctl(String, String),
    Pinned,
    MapVip(IpAddr),
    MapPort(u16),
    Attached { iface: String, clsact_added: bool },
}

/// A run in progress: the state as it will be saved, what to undo on failure.
struct Run<'a> {
    opts: &'a Opts,
    state: State,
    done: Vec<Undo>,
    decap: Option<Decap>,
    lo: u32,
}

fn prefix_len(a: IpAddr) -> u8 {
    if a.is_ipv4() {
        32
    } else {
        128
    }
}

/// Start: the VIPs on lo, the sysctls, and for TUN the tc program.
fn start(opts: &Opts) -> Result<()> {
    let mode = opts.mode.context("--mode is required")?;
    let _lock = lock(&opts.state)?;
    let state = load_state(opts)?;
    for v in &opts.vips {
        if let Some(old) = state.vip(*v).filter(|old| old.mode != mode) {
            let m = if old.mode == Mode::Dr { "dr" } else { "tun" };
            bail!("{v} is set up for --mode {m}: --stop --vip {v} first");
        }
    }
    let ifaces = if mode == Mode::Tun {
        tun_ifaces(opts)?
    } else {
        Vec::new()
    };
    let mut run = Run {
        opts,
        state,
        done: Vec::new(),
        decap: None,
        lo: netlink::ifindex("lo").context("the loopback interface")?,
    };
    let result = run.start(mode, &ifaces);
    let result = result.and_then(|()| run.state.save(&opts.state));
    if let Err(e) = result {
        run.undo();
        return Err(e);
    }
    Ok(())
}

/// The interfaces to attach to: `--iface` (each must exist), else every interface that is up
/// and not loopback.
fn tun_ifaces(opts: &Opts) -> Result<Vec<String>> {
    if opts.ifaces.is_empty() {
        let links = netlink::links().context("listing the interfaces")?;
        let up: Vec<String> = links
            .into_iter()
            .filter(|l| l.up && !l.loopback)
            .map(|l| l.name)
            .collect();
        if up.is_empty() {
            bail!("no interface is up (besides loopback): give --iface");
        }
        return Ok(up);
    }
    for name in &opts.ifaces {
        match netlink::ifindex(name) {
            Err(netlink::Error::NoLink(_)) => {
                return Err(Usage(format!("--iface: no interface named {name}")).into())
            }
            r => {
                r.with_context(|| format!("looking up {name}"))?;
            }
        }
    }
    Ok(opts.ifaces.clone())
}

impl Run<'_> {
    fn start(&mut self, mode: Mode, ifaces: &[String]) -> Result<()> {
        for v in self.opts.vips.clone() {
            self.vip_on_lo(v, mode)?;
        }
        if self.state.has_v4() {
            self.arp_sysctls()?;
        }
        if mode == Mode::Tun {
            self.tun(ifaces)?;
        }
        Ok(())
    }

    /// The VIP's address on lo (already there: kept, and left there by --stop).
    fn vip_on_lo(&mut self, v: IpAddr, mode: Mode) -> Result<()> {
        let len = prefix_len(v);
        let added = match netlink::addr_add(self.lo, v, len) {
            Ok(()) => {
                say(format_args!("added {v}/{len} to lo"));
                self.done.push(Undo::Addr(self.lo, v));
                true
            }
            Err(e) if e.errno() == Some(libc::EEXIST) => {
                self.state.vip(v).is_some_and(|old| old.added)
            }
            Err(e) => return Err(e).with_context(|| format!("adding {v}/{len} to lo")),
        };
        self.state.vips.retain(|old| old.addr != v);
        self.state.vips.push(VipState {
            addr: v,
            mode,
            added,
        });
        Ok(())
    }

    fn arp_sysctls(&mut self) -> Result<()> {
        for (key, want) in ARP_SYSCTLS {
            let was = sysctl_read(key)?;
            if was == want {
                continue;
            }
            sysctl_write(key, want)?;
            say(format_args!("{} = {want} (was {was})", dotted(key)));
            self.done.push(Undo::Sysctl(key.to_string(), was.clone()));
            self.state.sysctls.entry(key.to_string()).or_insert(was);
        }
        Ok(())
    }

    /// The tc program: pinned (loaded if it is not), the VIPs and ports in its maps, attached.
    fn tun(&mut self, ifaces: &[String]) -> Result<()> {
        let dir = self.opts.pin_dir.clone();
        if bpffs::ensure(&dir)? {
            say(format_args!("mounted bpffs on {}", bpffs::DEFAULT_MOUNT));
        }
        let (decap, fresh) = Decap::load_pinned(&dir)
            .with_context(|| format!("loading the tc program pinned in {}", dir.display()))?;
        if fresh {
            say(format_args!(
                "loaded the tc program, pinned in {}",
                dir.display()
            ));
            self.done.push(Undo::Pinned);
        }
        let decap = self.decap.insert(decap);
        let in_map = decap.vips()?;
        // a fresh program also gets what earlier runs put in the one whose pins were lost
        let earlier = self.state.vips.iter().filter(|v| v.mode == Mode::Tun);
        let mut want: Vec<IpAddr> = earlier.map(|v| v.addr).collect();
        want.retain(|v| !self.opts.vips.contains(v));
        want.extend(&self.opts.vips);
        for v in want.iter().filter(|v| !in_map.contains(v)) {
            decap.add_vip(*v)?;
            say(format_args!("{v}: tunnelled packets taken off"));
            self.done.push(Undo::MapVip(*v));
        }
        let ports = decap.gue_ports()?;
        let mut want = self.state.gue_ports.clone();
        want.extend(&self.opts.gue_ports);
        want.sort_unstable();
        want.dedup();
        for p in want.into_iter().filter(|p| !ports.contains(p)) {
            decap.add_gue_port(p)?;
            say(format_args!("GUE port {p}"));
            self.done.push(Undo::MapPort(p));
            if !self.state.gue_ports.contains(&p) {
                self.state.gue_ports.push(p);
            }
        }
        for name in ifaces {
            self.attach(name)?;
        }
        Ok(())
    }

    /// Attaches the program to `name` unless it is already there, and loosens a strict
    /// `rp_filter` there.
    fn attach(&mut self, name: &str) -> Result<()> {
        let ifindex = netlink::ifindex(name).with_context(|| format!("looking up {name}"))?;
        let decap = self.decap.as_mut().context("the tc program")?;
        let id = decap.program_id()?;
        let filters = netlink::tc_filters(ifindex, Hook::Ingress)?;
        let ours = filters.iter().any(|f| f.prog_id == Some(id));
        let mut clsact_added = false;
        if !ours {
            // a filter of an earlier instance whose pins were lost (a bpffs that was
            // unmounted, as a private mount namespace's is when its process exits)
            if filters
                .iter()
                .any(|f| f.name.as_deref() == Some(Decap::PROGRAM))
            {
                Decap::detach(name)?;
                say(format_args!(
                    "detached an earlier instance of the tc program from {name}"
                ));
            }
            let had = netlink::has_clsact(ifindex)?;
            if let Err(e) = decap.attach(name) {
                if !had {
                    let _ = netlink::clsact_del(ifindex);
                }
                return Err(e).with_context(|| format!("attaching to tc ingress of {name}"));
            }
            say(format_args!("attached the tc program to ingress of {name}"));
            clsact_added = !had;
            self.done.push(Undo::Attached {
                iface: name.to_string(),
                clsact_added,
            });
        }
        if !self.state.ifaces.iter().any(|i| i.name == name) {
            let rp_filter = self.loosen_rp_filter(name)?;
            self.state.ifaces.push(IfaceState {
                name: name.to_string(),
                clsact_added,
                rp_filter,
            });
        }
        Ok(())
    }

    /// Strict reverse-path filtering (the larger of `all` and the interface's value is 1)
    /// becomes loose on the interface. Returns the value it had when it was changed.
    fn loosen_rp_filter(&mut self, name: &str) -> Result<Option<String>> {
        let key = format!("net/ipv4/conf/{name}/rp_filter");
        let all = sysctl_read("net/ipv4/conf/all/rp_filter")?;
        let was = sysctl_read(&key)?;
        if all.as_str().max(was.as_str()) != "1" {
            return Ok(None);
        }
        sysctl_write(&key, "2")?;
        say(format_args!(
            "{} = 2 (was {was}): decapsulated packets come from the client's address",
            dotted(&key)
        ));
        self.done.push(Undo::Sysctl(key, was.clone()));
        Ok(Some(was))
    }

    /// Undoes this run's changes, last first (best effort: what fails is reported).
    fn undo(&mut self) {
        while let Some(u) = self.done.pop() {
            if let Err(e) = self.undo_one(&u) {
                say(format_args!("undoing {u:?}: {e:#}"));
            }
        }
    }

    fn undo_one(&mut self, u: &Undo) -> Result<()> {
        match u {
            Undo::Addr(ifindex, a) => netlink::addr_del(*ifindex, *a, prefix_len(*a))?,
            Undo::Sysctl(key, was) => sysctl_write(key, was)?,
            Undo::Pinned => {
                self.decap = None;
                Decap::unpin(&self.opts.pin_dir)?;
            }
            Undo::MapVip(a) => {
                if let Some(d) = self.decap.as_mut() {
                    d.remove_vip(*a)?;
                }
            }
            Undo::MapPort(p) => {
                if let Some(d) = self.decap.as_mut() {
                    d.remove_gue_port(*p)?;
                }
            }
            Undo::Attached {
                iface,
                clsact_added,
            } => detach(iface, *clsact_added)?,
        }
        Ok(())
    }
}

/// Detaches the program from `iface`, and removes the clsact qdisc when it was added by us
/// and nothing else is on it. An interface that went away has nothing to detach.
fn detach(iface: &str, clsact_added: bool) -> Result<()> {
    let ifindex = match netlink::ifindex(iface) {
        Err(netlink::Error::NoLink(_)) => return Ok(()),
        r => r?,
    };
    if Decap::detach(iface).with_context(|| format!("detaching from {iface}"))? {
        say(format_args!("detached the tc program from {iface}"));
    }
    if clsact_added
        && netlink::tc_filters(ifindex, Hook::Ingress)?.is_empty()
        && netlink::tc_filters(ifindex, Hook::Egress)?.is_empty()
    {
        netlink::clsact_del(ifindex)?;
        say(format_args!("removed the clsact qdisc of {iface}"));
    }
    Ok(())
}

// ---- stop ----

/// Stop: undo, for the VIPs given (all without `--vip`), what earlier runs did.
fn stop(opts: &Opts) -> Result<()> {
    let _lock = lock(&opts.state)?;
    let mut state = load_state(opts)?;
    if state.is_empty() {
        say("nothing to undo");
    }
    let result = stop_in(opts, &mut state);
    let saved = state.save(&opts.state);
    result.and(saved)
}

fn stop_in(opts: &Opts, state: &mut State) -> Result<()> {
    let targets: Vec<IpAddr> = if opts.vips.is_empty() {
        state.vips.iter().map(|v| v.addr).collect()
    } else {
        opts.vips.clone()
    };
    let mut decap = Decap::open_pinned(&opts.pin_dir).with_context(|| {
        format!(
            "opening the tc program pinned in {}",
            opts.pin_dir.display()
        )
    })?;
    for a in targets {
        let Some(v) = state.vip(a).cloned() else {
            say(format_args!(
                "{a}: not set up by rvsd realserver, left alone"
            ));
            continue;
        };
        if let (Mode::Tun, Some(d)) = (v.mode, decap.as_mut()) {
            d.remove_vip(a)?;
        }
        if v.added {
            remove_addr(a)?;
        }
        state.vips.retain(|x| x.addr != a);
    }
    if !state.has_v4() {
        restore_sysctls(state)?;
    }
    if let Some(d) = decap.as_mut() {
        for p in &opts.gue_ports {
            d.remove_gue_port(*p)?;
            state.gue_ports.retain(|x| x != p);
        }
    }
    if !state.has_tun() {
        drop(decap);
        teardown(opts, state)?;
    }
    Ok(())
}

fn remove_addr(a: IpAddr) -> Result<()> {
    let len = prefix_len(a);
    match netlink::addr_del(netlink::ifindex("lo")?, a, len) {
        Err(e) if e.errno() == Some(libc::EADDRNOTAVAIL) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {a}/{len} from lo")),
        Ok(()) => {
            say(format_args!("removed {a}/{len} from lo"));
            Ok(())
        }
    }
}

fn restore_sysctls(state: &mut State) -> Result<()> {
    while let Some((key, was)) = state.sysctls.pop_first() {
        if let Err(e) = sysctl_write(&key, &was) {
            state.sysctls.insert(key, was);
            return Err(e);
        }
        say(format_args!("{} = {was} (restored)", dotted(&key)));
    }
    Ok(())
}

/// No TUN VIP left: detach from every interface, restore their `rp_filter`, unpin.
fn teardown(opts: &Opts, state: &mut State) -> Result<()> {
    while let Some(i) = state.ifaces.last().cloned() {
        detach(&i.name, i.clsact_added)?;
        if let Some(was) = &i.rp_filter {
            let key = format!("net/ipv4/conf/{}/rp_filter", i.name);
            match sysctl_write(&key, was) {
                Ok(()) => say(format_args!("{} = {was} (restored)", dotted(&key))),
                // the interface went away, and its setting with it
                Err(_) if netlink::ifindex(&i.name).is_err() => {}
                Err(e) => return Err(e),
            }
        }
        state.ifaces.pop();
    }
    state.gue_ports.clear();
    if opts.pin_dir.join(Decap::PIN).exists() {
        Decap::unpin(&opts.pin_dir)?;
        say(format_args!(
            "unpinned the tc program from {}",
            opts.pin_dir.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_reads_back() {
        let s = State {
            sysctls: [("net/ipv4/conf/lo/arp_ignore".into(), "0".into())].into(),
            vips: vec![VipState {
                addr: "10.200.0.1".parse().unwrap(),
                mode: Mode::Tun,
                added: true,
            }],
            ifaces: vec![IfaceState {
                name: "eth0".into(),
                clsact_added: true,
                rp_filter: Some("1".into()),
            }],
            gue_ports: vec![6080],
            netns: Some(7),
        };
        let text = serde_json::to_string(&s).unwrap();
        assert!(text.contains(r#""mode":"tun""#), "{text}");
        assert_eq!(serde_json::from_str::<State>(&text).unwrap(), s);
        assert!(s.has_v4() && s.has_tun());
        assert_eq!(
            serde_json::from_str::<State>("{}").unwrap(),
            State::default()
        );
    }

    /// The default state file is named after the namespace's inode, which a new namespace
    /// may get again once the old one is gone: a file written in another namespace (another
    /// cookie) is not taken for this one's, a file of this namespace or of an older rvsd (no
    /// cookie) is.
    #[test]
    fn a_state_file_of_a_namespace_that_is_gone_is_not_taken() {
        let cookie = netlink::netns_cookie().expect("SO_NETNS_COOKIE (Linux 5.14)");
        assert_eq!(netlink::netns_cookie(), Some(cookie));
        let dir = std::env::temp_dir().join(format!("rvs-rs-state-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("realserver.json");
        let s = State {
            vips: vec![VipState {
                addr: "10.200.0.1".parse().unwrap(),
                mode: Mode::Dr,
                added: true,
            }],
            ..State::default()
        };
        s.save(&path).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains(&format!("\"netns\": {cookie}")), "{text}");
        let (back, stale) = State::load(&path).unwrap();
        assert_eq!((back.vips, stale), (s.vips.clone(), false));
        let elsewhere = text.replace(&cookie.to_string(), &(cookie ^ 1).to_string());
        fs::write(&path, elsewhere).unwrap();
        let (back, stale) = State::load(&path).unwrap();
        assert!(back.is_empty() && stale);
        fs::write(&path, serde_json::to_string(&s).unwrap()).unwrap();
        let (back, stale) = State::load(&path).unwrap();
        assert_eq!(
            (back.vips, stale),
            (s.vips, false),
            "a file without a cookie"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}

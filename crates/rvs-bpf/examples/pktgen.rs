//! The packets-per-second benchmark's helpers (bench/xdp-pps.sh), one subcommand each, run
//! as root inside the network namespace they work in (`ip netns exec NS pktgen ...`). The
//! programs are `bpf/bench_pps.c`, compiled by build.rs with the data plane's.
//!
//! ```text
//! pktgen send IFACE --src-mac M --dst-mac M --src IP --dst IP --dport N
//!        [--port-base N] [--flows N] [--size BYTES] [--seconds S] [--max-packets N]
//!        [--udp-csum on|off] [--pin PATH]
//!     UDP frames out of IFACE at the rate one CPU makes them: BPF_PROG_TEST_RUN in
//!     live-frames mode runs `pps_gen` (headers written anew, the next source port of the
//!     range, XDP_TX) on the frame; stops after S seconds (default 5) or N frames.
//!     --udp-csum on: the datagrams carry a UDP checksum (default off: none, checksum 0);
//!     --pin: the count of frames sent is pinned at PATH (bpffs) for `count`
//! pktgen bare IFACE --src-mac M --dst-mac M [--seconds S]
//!     attach `pps_bare` (rewrite the Ethernet addresses, XDP_TX) to IFACE in the driver
//! pktgen sink IFACE --pin PATH [--seconds S]
//!     attach `pps_sink` (count, XDP_DROP); its counter is pinned at PATH (bpffs)
//! pktgen echo IFACE --pin PATH [--seconds S]
//!     attach `pps_echo` (count, send the UDP datagram back: addresses and ports swapped,
//!     XDP_TX); its counter is pinned at PATH
//! pktgen nat FRONT BACK --vip IP --vport N --rip IP --rport N --front-mac M --client-mac M
//!        --back-mac M --rs-mac M [--seconds S]
//!     attach `pps_nat` (a fixed NAT rewrite, XDP_REDIRECT to the other interface) to both:
//!     from FRONT, destination VIP:vport becomes RIP:rport, out of BACK from --back-mac to
//!     --rs-mac; from BACK, the source becomes VIP:vport, out of FRONT to --client-mac
//! pktgen switch IFACE[=MAC]... [--seconds S]
//!     attach `pps_switch` (an L2 switch over a devmap) to every IFACE; MAC: the address
//!     behind that port (the switch's static table; other destinations are flooded)
//! pktgen count PATH...
//!     print `NANOSECONDS TOTAL COUNT...`: CLOCK_MONOTONIC and the pinned counters' sums
//! ```
//!
//! `bare`, `sink`, `echo`, `nat` and `switch` stay until killed or for S seconds (default 900), then exit;
//! their programs are detached when the process ends (XDP links die with their descriptor).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use aya::maps::{DevMapHash, HashMap, Map, MapData, PerCpuArray};
use aya::programs::{Xdp, XdpFlags};
use aya::{Ebpf, EbpfLoader};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench_pps.o"));

/// Test runs per live-frames call: each call is one syscall that cannot be stopped midway by
/// the time limit, so it stays short (about 0.1 s at 10 Mpps).
const CHUNK: u64 = 1 << 20;

/// Ethernet, IPv4 and UDP headers: what `pps_gen` writes into every frame (`GEN_HDR`).
const GEN_HDR: usize = 42;

fn main() {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and changes nothing else: a helper
    // left behind by a script that died ends with it.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("pktgen: {e}");
        std::process::exit(1);
    }
}

fn run(args: &[String]) -> Res<()> {
    let (cmd, rest) = args
        .split_first()
        .ok_or("usage: pktgen send|bare|sink|echo|nat|switch|count ...")?;
    let opts = Opts::parse(rest)?;
    match cmd.as_str() {
        "send" => send(&opts),
        "bare" => bare(&opts),
        "sink" => sink(&opts, "pps_sink"),
        "echo" => sink(&opts, "pps_echo"),
        "nat" => nat(&opts),
        "switch" => switch(&opts),
        "count" => count(&opts),
        _ => Err(format!("unknown subcommand {cmd}").into()),
    }
}

/// Positional arguments and `--name value` options.
struct Opts {
    pos: Vec<String>,
    named: Vec<(String, String)>,
}

impl Opts {
    fn parse(args: &[String]) -> Res<Opts> {
        let mut o = Opts {
            pos: Vec::new(),
            named: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                let v = it.next().ok_or(format!("--{name} needs a value"))?;
                o.named.push((name.to_string(), v.clone()));
            } else {
                o.pos.push(a.clone());
            }
        }
        Ok(o)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.named
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn need(&self, name: &str) -> Res<&str> {
        Ok(self.get(name).ok_or(format!("--{name} is required"))?)
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Res<T> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => Ok(v.parse().map_err(|_| format!("--{name}: bad number {v}"))?),
        }
    }

    fn mac(&self, name: &str) -> Res<[u8; 6]> {
        parse_mac(self.need(name)?).map_err(|e| format!("--{name}: {e}").into())
    }

    fn iface(&self) -> Res<&str> {
        Ok(self.pos.first().ok_or("an interface name is required")?)
    }

    /// How long an attaching subcommand stays.
    fn hold(&self) -> Res<Duration> {
        Ok(Duration::from_secs(self.num("seconds", 900)?))
    }
}

fn parse_mac(v: &str) -> Res<[u8; 6]> {
    let bad = || format!("bad Ethernet address {v}");
    let parts: Vec<u8> = v
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    Ok(parts.try_into().map_err(|_| bad())?)
}

fn ifindex(name: &str) -> Res<u32> {
    let c = std::ffi::CString::new(name)?;
    // SAFETY: `c` is a valid NUL-terminated string alive for the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(format!("no interface {name}").into());
    }
    Ok(i)
}

/// Loads the object with the given globals and loads program `name` into the kernel.
fn load(globals: &[(&'static str, &[u8])], name: &str) -> Res<Ebpf> {
    let mut loader = EbpfLoader::new();
    for (g, v) in globals {
        loader.set_global(g, *v, true);
    }
    let mut ebpf = loader.load(OBJECT)?;
    program(&mut ebpf, name)?.load()?;
    Ok(ebpf)
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Res<&'a mut Xdp> {
    Ok(ebpf
        .program_mut(name)
        .ok_or(format!("no program {name}"))?
        .try_into()?)
}

/// Attaches program `name` to every interface in the driver (native XDP), or fails.
fn attach(ebpf: &mut Ebpf, name: &str, ifaces: &[String]) -> Res<()> {
    let prog = program(ebpf, name)?;
    for i in ifaces {
        prog.attach(i, XdpFlags::DRV_MODE)
            .map_err(|e| format!("attaching {name} to {i} (native XDP): {e}"))?;
    }
    Ok(())
}

fn bare(o: &Opts) -> Res<()> {
    let (src, dst) = (o.mac("src-mac")?, o.mac("dst-mac")?);
    let mut ebpf = load(
        &[("bare_src", &src[..]), ("bare_dst", &dst[..])],
        "pps_bare",
    )?;
    attach(&mut ebpf, "pps_bare", &[o.iface()?.to_string()])?;
    std::thread::sleep(o.hold()?);
    Ok(())
}

/// `sink` and `echo`: program `name`, which counts in `pps_count`.
fn sink(o: &Opts, name: &str) -> Res<()> {
    let mut ebpf = load(&[], name)?;
    pin_map(&ebpf, "pps_count", o.need("pin")?)?;
    attach(&mut ebpf, name, &[o.iface()?.to_string()])?;
    std::thread::sleep(o.hold()?);
    Ok(())
}

fn pin_map(ebpf: &Ebpf, map: &str, path: &str) -> Res<()> {
    ebpf.map(map)
        .ok_or(format!("no map {map}"))?
        .pin(path)
        .map_err(|e| format!("pinning {map} at {path}: {e}"))?;
    Ok(())
}

fn nat(o: &Opts) -> Res<()> {
    let [front, back] = o.pos.as_slice() else {
        return Err("nat: name the front and the back interface".into());
    };
    let (fi, bi) = (ifindex(front)?, ifindex(back)?);
    let addr = |n: &str| -> Res<[u8; 4]> { Ok(o.need(n)?.parse::<Ipv4Addr>()?.octets()) };
    let port = |n: &str| -> Res<[u8; 2]> { Ok(o.need(n)?.parse::<u16>()?.to_be_bytes()) };
    let (vip, rip) = (addr("vip")?, addr("rip")?);
    let (vport, rport) = (port("vport")?, port("rport")?);
    let macs = [
        o.mac("front-mac")?,
        o.mac("client-mac")?,
        o.mac("back-mac")?,
        o.mac("rs-mac")?,
    ];
    let mut ebpf = load(
        &[
            ("nat_front", &fi.to_ne_bytes()[..]),
            ("nat_back", &bi.to_ne_bytes()[..]),
            ("nat_vip", &vip[..]),
            ("nat_rip", &rip[..]),
            ("nat_vport", &vport[..]),
            ("nat_rport", &rport[..]),
            ("nat_front_src", &macs[0][..]),
            ("nat_front_dst", &macs[1][..]),
            ("nat_back_src", &macs[2][..]),
            ("nat_back_dst", &macs[3][..]),
        ],
        "pps_nat",
    )?;
    {
        let mut ports: DevMapHash<MapData> =
            DevMapHash::try_from(ebpf.take_map("pps_ports").ok_or("no map pps_ports")?)?;
        for i in [fi, bi] {
            ports.insert(i, i, None, 0)?;
        }
    }
    attach(&mut ebpf, "pps_nat", &[front.clone(), back.clone()])?;
    std::thread::sleep(o.hold()?);
    Ok(())
}

fn switch(o: &Opts) -> Res<()> {
    if o.pos.is_empty() {
        return Err("switch: name its ports".into());
    }
    // PORT or PORT=MAC (the address behind the port)
    let ports_macs: Vec<(&str, Option<&str>)> = o
        .pos
        .iter()
        .map(|p| match p.split_once('=') {
            Some((n, m)) => (n, Some(m)),
            None => (p.as_str(), None),
        })
        .collect();
    let mut ebpf = load(&[], "pps_switch")?;
    {
        // taken out of the object: the loaded program keeps its own references to them
        let mut ports: DevMapHash<MapData> =
            DevMapHash::try_from(ebpf.take_map("pps_ports").ok_or("no map pps_ports")?)?;
        let mut fdb: HashMap<MapData, [u8; 8], u32> =
            HashMap::try_from(ebpf.take_map("pps_fdb").ok_or("no map pps_fdb")?)?;
        for (p, mac) in &ports_macs {
            let i = ifindex(p)?;
            ports.insert(i, i, None, 0)?;
            if let Some(mac) = mac {
                let mut key = [0u8; 8];
                key[..6].copy_from_slice(&parse_mac(mac)?);
                fdb.insert(key, i, 0)?;
            }
        }
    }
    let names: Vec<String> = ports_macs.iter().map(|(p, _)| p.to_string()).collect();
    attach(&mut ebpf, "pps_switch", &names)?;
    std::thread::sleep(o.hold()?);
    Ok(())
}

fn count(o: &Opts) -> Res<()> {
    let mut counts = Vec::new();
    for p in &o.pos {
        let data = MapData::from_pin(p).map_err(|e| format!("{p}: {e}"))?;
        let m: PerCpuArray<MapData, u64> = PerCpuArray::try_from(Map::PerCpuArray(data))?;
        counts.push(m.get(&0, 0)?.iter().sum::<u64>());
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let ns = ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128;
    let each: Vec<String> = counts.iter().map(u64::to_string).collect();
    println!("{ns} {} {}", counts.iter().sum::<u64>(), each.join(" "));
    Ok(())
}

fn send(o: &Opts) -> Res<()> {
    let name = o.iface()?;
    let ifi = ifindex(name)?;
    let flows: u32 = o.num("flows", 256)?;
    if !flows.is_power_of_two() || flows > 32768 {
        return Err("--flows: a power of two up to 32768".into());
    }
    let base: u16 = o.num("port-base", 10000)?;
    if u32::from(base) + flows > 65536 {
        return Err("--port-base + --flows passes 65535".into());
    }
    let csum = match o.get("udp-csum").unwrap_or("off") {
        "on" => true,
        "off" => false,
        v => return Err(format!("--udp-csum: on or off, got {v}").into()),
    };
    let frame = udp_frame(o, csum)?;
    let secs: f64 = o.num("seconds", 5.0)?;
    let max: u64 = o.num("max-packets", u64::MAX)?;
    let mut ebpf = load(
        &[
            ("gen_hdr", &frame[..GEN_HDR]),
            ("gen_port_base", &base.to_ne_bytes()[..]),
            ("gen_port_count", &flows.to_ne_bytes()[..]),
            ("gen_csum", &[u8::from(csum)][..]),
        ],
        "pps_gen",
    )?;
    if let Some(path) = o.get("pin") {
        pin_map(&ebpf, "pps_seq", path)?;
    }
    let prog = program(&mut ebpf, "pps_gen")?;
    let start = Instant::now();
    let limit = Duration::from_secs_f64(secs);
    let mut sent = 0u64;
    while start.elapsed() < limit && sent < max {
        let n = CHUNK.min(max - sent);
        rvs_bpf::xdp_live_run(prog, &frame, ifi, n as u32)
            .map_err(|e| format!("live-frames test run on {name}: {e}"))?;
        sent += n;
    }
    let t = start.elapsed().as_secs_f64();
    println!(
        "sent {sent} frames in {t:.3} s: {:.3} Mpps",
        sent as f64 / t / 1e6
    );
    Ok(())
}

/// Ethernet + IPv4 + UDP, zero-padded to `--size` bytes (default 60, the smallest Ethernet
/// frame without its FCS); the source port is 0 (the generator's), and so is the UDP
/// checksum (none) unless `csum`: then it is that of the datagram with source port 0, which
/// the generator adjusts to the port it writes.
fn udp_frame(o: &Opts, csum: bool) -> Res<Vec<u8>> {
    let size: usize = o.num("size", 60)?;
    if !(42..=1514).contains(&size) {
        return Err("--size: 42 to 1514 bytes".into());
    }
    let src: Ipv4Addr = o.need("src")?.parse()?;
    let dst: Ipv4Addr = o.need("dst")?.parse()?;
    let dport: u16 = o.num("dport", 9000)?;
    let mut f = Vec::with_capacity(size);
    f.extend_from_slice(&o.mac("dst-mac")?);
    f.extend_from_slice(&o.mac("src-mac")?);
    f.extend_from_slice(&[0x08, 0x00]);
    let ip_len = (size - 14) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&ip_len.to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let sum = rvs_bpf::ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&0u16.to_be_bytes()); // source port: the program's
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&(ip_len - 20).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.resize(size, 0);
    if csum {
        // pseudo-header (RFC 768) + the UDP header and payload as they are
        let mut sum = Vec::with_capacity(12 + size);
        sum.extend_from_slice(&src.octets());
        sum.extend_from_slice(&dst.octets());
        sum.extend_from_slice(&[0, 17]);
        sum.extend_from_slice(&(ip_len - 20).to_be_bytes());
        sum.extend_from_slice(&f[34..]);
        let c = rvs_bpf::ipv4_checksum(&sum);
        f[40..42].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
    }
    Ok(f)
}

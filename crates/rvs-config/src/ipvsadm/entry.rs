//! ipvsadm's command entry (`struct ipvs_command_entry`) being filled option by option, and the
//! checks `process_options` makes once every option is read.

use std::net::{IpAddr, Ipv4Addr};

use rvs_core::model::{
    svc_flags, tun_flags, DestConf, Family, Forward, Netmask, Protocol, ProxyProtocol, ServiceConf,
    ServiceKey, TunnelConf, TunnelType, MAX_PERSIST_TIMEOUT,
};

use super::check::{self, optc, Cmd};
use super::popt::{Opt, Popt};
use super::values::{self, FlagError, Resolve};
use super::{Command, DaemonConf, Exit, SyncState};
use crate::ListOpts;

/// Everything the options set (zeroed like ipvsadm's `memset`, then its defaults).
pub(super) struct Entry<'n> {
    names: &'n dyn Resolve,
    cmd: Option<Cmd>,
    options: u64,
    /// service: family (None = not given yet), protocol, address, port, fwmark
    af: Option<Family>,
    proto: Option<Protocol>,
    addr: Option<IpAddr>,
    port: u16,
    fwmark: u32,
    sched: String,
    flags: u32,
    timeout: u32,
    /// IPv4 mask in host order, or an IPv6 prefix length
    netmask: u32,
    pe: String,
    sched_flags: String,
    dest_af: Option<Family>,
    dest_addr: Option<IpAddr>,
    dest_port: u16,
    fwd: Forward,
    weight: i32,
    u_thresh: u32,
    l_thresh: u32,
    tun_type: usize,
    tun_port: u16,
    tun_flags: u16,
    /// extension `--proxy-protocol` (`None`: not given)
    proxy_protocol: Option<ProxyProtocol>,
    daemon: DaemonConf,
    list: ListOpts,
    timeouts: [u32; 3],
}

fn fail<T>(msg: &str) -> Result<T, Exit> {
    Err(Exit::fail(msg))
}

fn first_command(opt: Opt) -> Option<Cmd> {
    Some(match opt {
        Opt::AddService => Cmd::Add,
        Opt::EditService => Cmd::Edit,
        Opt::DelService => Cmd::Del,
        Opt::AddServer => Cmd::AddDest,
        Opt::EditServer => Cmd::EditDest,
        Opt::DelServer => Cmd::DelDest,
        Opt::Clear => Cmd::Flush,
        Opt::List => Cmd::List,
        Opt::Zero => Cmd::Zero,
        Opt::Set => Cmd::Timeout,
        Opt::Restore => Cmd::Restore,
        Opt::Save => Cmd::Save,
        Opt::StartDaemon => Cmd::StartDaemon,
        Opt::StopDaemon => Cmd::StopDaemon,
        _ => return None,
    })
}

/// The whole of `process_options` up to the action.
pub(super) fn parse(
    argv0: &str,
    args: &[&str],
    names: &dyn Resolve,
    in_restore: bool,
) -> Result<Command, Exit> {
    if args.is_empty() && !in_restore {
        return Ok(Command::List {
            service: None,
            opts: ListOpts::default(),
        });
    }
    let mut popt = Popt::new(args);
    let mut e = Entry::new(names);
    let Ok(Some((first, value))) = popt.next_opt() else {
        return Err(Exit::try_help(argv0));
    };
    match first {
        Opt::Help => return Err(super::help_exit(argv0)),
        Opt::Version => return Err(super::version_exit()),
        _ => {}
    }
    let cmd = first_command(first).ok_or_else(|| Exit::try_help(argv0))?;
    e.cmd = Some(cmd);
    if matches!(cmd, Cmd::StartDaemon | Cmd::StopDaemon) {
        e.daemon.state = daemon_state(cmd, value.unwrap_or(""))?;
    }
    loop {
        match popt.next_opt() {
            Ok(Some((opt, value))) => e.option(opt, value, popt.bad_option())?,
            Ok(None) => break,
            Err(err) => {
                return Err(Exit {
                    stdout: String::new(),
                    stderr: format!("{}: {}\n", popt.bad_option(), err.text()),
                    status: 255,
                })
            }
        }
    }
    e.positionals(&popt.leftovers)?;
    e.finish(argv0, in_restore)
}

fn daemon_state(cmd: Cmd, word: &str) -> Result<SyncState, Exit> {
    match word {
        "master" => Ok(SyncState::Master),
        "backup" => Ok(SyncState::Backup),
        _ if cmd == Cmd::StartDaemon => fail("illegal start-daemon parameter specified"),
        _ => fail("illegal start_daemon specified"),
    }
}

/// `parse_timeout`: `None` (a bare `-p`) is the default 360 s.
fn timeout(word: Option<&str>, min: i64) -> Result<u32, Exit> {
    match word {
        None => Ok(rvs_core::model::DEFAULT_PERSIST_TIMEOUT),
        Some(w) => values::number(w, min, i64::from(MAX_PERSIST_TIMEOUT))
            .map(|v| v as u32)
            .ok_or_else(|| Exit::fail(&format!("invalid timeout value `{w}' specified"))),
    }
}

/// The extension `--proxy-protocol none|v1|v2` (`1` and `2` too), refused as ipvsadm refuses
/// its own bad values.
fn proxy_protocol(word: &str) -> Result<ProxyProtocol, Exit> {
    match word {
        "none" => Ok(ProxyProtocol::None),
        "v1" | "1" => Ok(ProxyProtocol::V1),
        "v2" | "2" => Ok(ProxyProtocol::V2),
        _ => fail("illegal PROXY protocol version specified"),
    }
}

fn num(word: &str, min: i64, max: i64, what: &str) -> Result<i64, Exit> {
    values::number(word, min, max).ok_or_else(|| Exit::fail(&format!("illegal {what} specified")))
}

impl<'n> Entry<'n> {
    fn new(names: &'n dyn Resolve) -> Entry<'n> {
        Entry {
            names,
            cmd: None,
            options: 0,
            af: None,
            proto: None,
            addr: None,
            port: 0,
            fwmark: 0,
            sched: String::new(),
            flags: 0,
            timeout: 0,
            netmask: u32::MAX,
            pe: String::new(),
            sched_flags: String::new(),
            dest_af: None,
            dest_addr: None,
            dest_port: 0,
            fwd: Forward::Route,
            weight: 1,
            u_thresh: 0,
            l_thresh: 0,
            tun_type: 0,
            tun_port: 0,
            tun_flags: 0,
            proxy_protocol: None,
            daemon: DaemonConf {
                state: SyncState::Master,
                mcast_ifn: String::new(),
                syncid: 0,
                sync_maxlen: None,
                mcast_group: None,
                mcast_port: None,
                mcast_ttl: None,
            },
            list: ListOpts::default(),
            timeouts: [0; 3],
        }
    }

    /// `set_option`: each tracked option at most once.
    fn set_option(&mut self, opt: Opt) -> Result<(), Exit> {
        if let Some(c) = check::optc_of(opt) {
            if self.options & (1 << c) != 0 {
                return fail(&format!(
                    "multiple '{}' options specified",
                    check::OPT_NAMES[c]
                ));
            }
            self.options |= 1 << c;
        }
        Ok(())
    }

    fn has(&self, c: usize) -> bool {
        self.options & (1 << c) != 0
    }

    /// One option after the command, in the order given.
    fn option(&mut self, opt: Opt, value: Option<&str>, bad: &str) -> Result<(), Exit> {
        if first_command(opt).is_some() || matches!(opt, Opt::Help | Opt::Version) {
            return fail(&format!("invalid option `{bad}'"));
        }
        self.set_option(opt)?;
        let v = value.unwrap_or("");
        match opt {
            Opt::Tcp => self.service(v, Protocol::Tcp),
            Opt::Udp => self.service(v, Protocol::Udp),
            Opt::Sctp => self.service(v, Protocol::Sctp),
            Opt::Fwmark => self.fwmark(v),
            Opt::Scheduler => {
                self.sched = values::truncate(v, 15);
                Ok(())
            }
            Opt::Persistent => {
                self.flags |= svc_flags::PERSISTENT;
                self.timeout = timeout(value, 1)?;
                Ok(())
            }
            Opt::Netmask => self.netmask(v),
            Opt::RealServer => self.real_server(v),
            Opt::Ipv6 => self.ipv6(),
            Opt::Ops => {
                self.flags |= svc_flags::ONEPACKET;
                Ok(())
            }
            Opt::Pe => {
                self.pe = values::truncate(v, 16);
                Ok(())
            }
            Opt::SchedFlags => {
                self.sched_flags = v.to_string();
                Ok(())
            }
            _ => self.dest_option(opt, v),
        }
    }

    fn dest_option(&mut self, opt: Opt, v: &str) -> Result<(), Exit> {
        match opt {
            Opt::Masq => self.fwd = Forward::Masq,
            Opt::Ipip => self.fwd = Forward::Tunnel,
            Opt::Gate => self.fwd = Forward::Route,
            Opt::Weight => self.weight = num(v, 0, i64::from(i32::MAX), "weight")? as i32,
            Opt::UThreshold => {
                self.u_thresh = num(v, 0, i64::from(i32::MAX), "u_threshold")? as u32
            }
            Opt::LThreshold => {
                self.l_thresh = num(v, 0, i64::from(i32::MAX), "l_threshold")? as u32
            }
            Opt::TunType => {
                self.tun_type = ["ipip", "gue", "gre"]
                    .iter()
                    .position(|t| *t == v)
                    .ok_or_else(|| Exit::fail("illegal tunnel type specified"))?
            }
            Opt::TunPort => self.tun_port = num(v, 1, 65535, "tunnel port")? as u16,
            Opt::TunNocsum => self.tun_flags |= tun_flags::NOCSUM,
            Opt::TunCsum => self.tun_flags |= tun_flags::CSUM,
            Opt::TunRemcsum => self.tun_flags |= tun_flags::REMCSUM,
            Opt::ProxyProtocol => self.proxy_protocol = Some(proxy_protocol(v)?),
            _ => return self.daemon_option(opt, v),
        }
        Ok(())
    }

    fn daemon_option(&mut self, opt: Opt, v: &str) -> Result<(), Exit> {
        let d = &mut self.daemon;
        match opt {
            Opt::McastInterface => d.mcast_ifn = values::truncate(v, 15),
            Opt::Syncid => d.syncid = num(v, 0, 255, "syncid")? as u8,
            Opt::McastGroup => d.mcast_group = Some(mcast_group(v)?),
            Opt::McastPort => d.mcast_port = Some(num(v, 1, 65535, "mcast-port")? as u16),
            Opt::McastTtl => d.mcast_ttl = Some(num(v, 1, 255, "mcast-ttl")? as u8),
            Opt::SyncMaxlen => {
                d.sync_maxlen = Some(num(v, 1, 65535 - 20 - 8, "sync-maxlen")? as u16)
            }
            _ => self.list_option(opt),
        }
        Ok(())
    }

    fn list_option(&mut self, opt: Opt) {
        let l = &mut self.list;
        match opt {
            Opt::Numeric => l.numeric = true,
            Opt::Connection => l.connection = true,
            Opt::Timeout => l.timeout = true,
            Opt::Daemon => l.daemon = true,
            Opt::Stats => l.stats = true,
            Opt::Rate => l.rate = true,
            Opt::Thresholds => l.thresholds = true,
            Opt::PersistentConn => l.persistent_conn = true,
            Opt::NoSort => l.nosort = true,
            Opt::Exact => l.exact = true,
            Opt::TunInfo => l.tun_info = true,
            Opt::Json => l.json = true,
            Opt::Extended => l.extended = true,
            _ => {} // --sort: a no-op kept for compatibility
        }
    }

    /// `-t/-u/--sctp-service host[:port]`.
    fn service(&mut self, word: &str, proto: Protocol) -> Result<(), Exit> {
        self.proto = Some(proto);
        let hp = values::host_port(word, Some(proto), self.names)
            .ok_or_else(|| Exit::fail("illegal virtual server address[:port] specified"))?;
        self.af = Some(Family::of(&hp.addr));
        if hp.addr.is_ipv6() {
            self.netmask = 128;
        }
        self.addr = Some(hp.addr);
        if let Some(p) = hp.port {
            self.port = p;
        }
        Ok(())
    }

    fn fwmark(&mut self, word: &str) -> Result<(), Exit> {
        self.af = Some(Family::V4);
        self.proto = Some(Protocol::Tcp);
        self.fwmark = values::fwmark(word)
            .ok_or_else(|| Exit::fail(&format!("invalid fwmark value `{word}' specified")))?;
        Ok(())
    }

    fn ipv6(&mut self) -> Result<(), Exit> {
        if self.fwmark == 0 {
            return fail("-6 used before -f\n");
        }
        self.af = Some(Family::V6);
        self.netmask = 128;
        Ok(())
    }

    fn netmask(&mut self, word: &str) -> Result<(), Exit> {
        if self.af == Some(Family::V6) {
            let n = values::atoi(word);
            if !(1..=128).contains(&n) {
                return fail("illegal ipv6 netmask specified");
            }
            self.netmask = n as u32;
        } else {
            let m = values::ipv4_or_host(word, self.names)
                .ok_or_else(|| Exit::fail("illegal virtual server persistent mask specified"))?;
            self.netmask = u32::from(m);
        }
        Ok(())
    }

    /// `-r host[:port]`: parsed against the service as known so far; no port = service port.
    fn real_server(&mut self, word: &str) -> Result<(), Exit> {
        let hp = values::host_port(word, self.proto, self.names);
        let hp = hp.ok_or_else(|| Exit::fail("illegal real server address[:port] specified"))?;
        self.dest_af = Some(Family::of(&hp.addr));
        self.dest_addr = Some(hp.addr);
        self.dest_port = hp.port.unwrap_or(self.port);
        Ok(())
    }

    /// `--set`'s three values, then any word left over.
    fn positionals(&mut self, words: &[&str]) -> Result<(), Exit> {
        let mut rest = words;
        if self.cmd == Some(Cmd::Timeout) {
            if words.len() < 3 {
                return fail("--set option requires 3 timeout values");
            }
            for (slot, w) in self.timeouts.iter_mut().zip(words) {
                *slot = timeout(Some(w), 0)?;
            }
            rest = &words[3..];
        }
        if let Some(w) = rest.first() {
            return fail(&format!("unexpected argument {w}"));
        }
        if !self.sched_flags.is_empty() {
            self.flags &= !svc_flags::SCHED_MASK;
            self.flags |=
                values::sched_flags(&self.sched, &self.sched_flags).map_err(|e| match e {
                    FlagError::Incompatible(f) => {
                        Exit::fail(&format!("incompatible scheduler flag `{f}'"))
                    }
                    FlagError::Invalid(f) => Exit::fail(&format!("invalid scheduler flag `{f}'")),
                    FlagError::Empty => Exit {
                        stdout: String::new(),
                        stderr: String::new(),
                        status: 139,
                    },
                })?;
        }
        Ok(())
    }

    /// The checks after parsing, then the command.
    fn finish(mut self, argv0: &str, in_restore: bool) -> Result<Command, Exit> {
        let cmd = self.cmd.expect("the first option set the command");
        check::generic(cmd, self.options).map_err(|m| Exit::fail(&m))?;
        if matches!(cmd, Cmd::Add | Cmd::Edit) {
            self.service_rules()?;
        }
        if cmd == Cmd::StartDaemon && self.daemon.mcast_ifn.is_empty() {
            self.daemon.mcast_ifn = "eth0".to_string();
        }
        if matches!(cmd, Cmd::AddDest | Cmd::EditDest) {
            self.dest_rules()?;
        }
        if cmd == Cmd::List {
            self.list_rules()?;
        }
        if cmd == Cmd::Restore && in_restore {
            return Err(Exit::try_help(argv0));
        }
        Ok(self.command(cmd))
    }

    fn service_rules(&mut self) -> Result<(), Exit> {
        if self.fwmark == 0 && self.port == 0 && self.flags & svc_flags::PERSISTENT == 0 {
            return fail("Zero port specified for non-persistent service");
        }
        if self.flags & svc_flags::ONEPACKET != 0
            && self.fwmark == 0
            && self.proto != Some(Protocol::Udp)
        {
            return fail("One-Packet Scheduling is only for UDP virtual services");
        }
        if self.sched.is_empty() {
            self.sched = "wlc".to_string();
        }
        Ok(())
    }

    fn dest_rules(&mut self) -> Result<(), Exit> {
        if self.fwmark == 0 && matches!(self.fwd, Forward::Tunnel | Forward::Route) {
            self.dest_port = self.port;
        }
        if self.dest_af != self.af && self.fwd != Forward::Tunnel {
            return fail("Different address family is allowed only for tunneling servers");
        }
        let tun_opts = [
            optc::TUN_TYPE,
            optc::TUN_PORT,
            optc::TUN_NOCSUM,
            optc::TUN_CSUM,
            optc::TUN_REMCSUM,
        ];
        if tun_opts.iter().any(|&c| self.has(c)) && self.fwd != Forward::Tunnel {
            return fail("Tunnel options conflict with forward method");
        }
        check::tunnel(self.tun_type, self.options).map_err(|m| Exit::fail(&m))
    }

    fn list_rules(&self) -> Result<(), Exit> {
        let l = &self.list;
        let special = l.connection || l.timeout || l.daemon;
        if (special && (l.stats || l.rate || l.thresholds))
            || ((l.timeout || l.daemon) && l.persistent_conn)
        {
            return fail("options conflicts in the list command");
        }
        Ok(())
    }

    fn key(&self) -> Option<ServiceKey> {
        if !self.has(optc::SERVICE) {
            return None;
        }
        let af = self.af.unwrap_or(Family::V4);
        Some(if self.fwmark != 0 {
            ServiceKey::Fwmark {
                af,
                mark: self.fwmark,
            }
        } else {
            ServiceKey::Addr {
                proto: self.proto.unwrap_or(Protocol::Tcp),
                addr: self.addr.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                port: self.port,
            }
        })
    }

    fn conf(&self) -> ServiceConf {
        let af = self.af.unwrap_or(Family::V4);
        ServiceConf {
            scheduler: self.sched.clone(),
            flags: self.flags,
            timeout: self.timeout,
            netmask: match af {
                Family::V4 => Netmask::V4(self.netmask),
                Family::V6 => Netmask::V6(self.netmask as u8),
            },
            pe: (!self.pe.is_empty()).then(|| self.pe.clone()),
        }
    }

    fn dest(&self) -> DestConf {
        let addr = self.dest_addr.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let kind = [TunnelType::Ipip, TunnelType::Gue, TunnelType::Gre][self.tun_type];
        DestConf {
            tun: TunnelConf {
                kind,
                port: self.tun_port,
                flags: self.tun_flags,
            },
            ..DestConf::new(addr, self.dest_port)
                .fwd(self.fwd)
                .weight(self.weight)
                .thresholds(self.u_thresh, self.l_thresh)
                .proxy_protocol(self.proxy_protocol.unwrap_or_default())
        }
    }

    fn command(self, cmd: Cmd) -> Command {
        let key = self.key();
        let svc = || key.expect("the table made the service mandatory");
        match cmd {
            Cmd::Add => Command::AddService {
                key: svc(),
                conf: self.conf(),
            },
            Cmd::Edit => Command::EditService {
                key: svc(),
                conf: self.conf(),
            },
            Cmd::Del => Command::DelService { key: svc() },
            Cmd::Flush => Command::Flush,
            Cmd::List => Command::List {
                service: key,
                opts: self.list,
            },
            Cmd::AddDest => Command::AddDest {
                key: svc(),
                dest: self.dest(),
                proxy_protocol: self.proxy_protocol,
            },
            Cmd::EditDest => Command::EditDest {
                key: svc(),
                dest: self.dest(),
                proxy_protocol: self.proxy_protocol,
            },
            Cmd::DelDest => Command::DelDest {
                key: svc(),
                dest: self.dest(),
            },
            Cmd::Timeout => Command::SetTimeouts {
                tcp: self.timeouts[0],
                tcpfin: self.timeouts[1],
                udp: self.timeouts[2],
            },
            Cmd::StartDaemon => Command::StartDaemon(self.daemon),
            Cmd::StopDaemon => Command::StopDaemon(self.daemon),
            Cmd::Restore => Command::Restore,
            Cmd::Save => Command::Save {
                numeric: self.list.numeric,
                extended: self.list.extended,
            },
            Cmd::Zero => Command::Zero { service: key },
        }
    }
}

/// `--mcast-group`: a multicast address, IPv6 when the word has a colon.
fn mcast_group(word: &str) -> Result<IpAddr, Exit> {
    if word.contains(':') {
        match word.parse::<std::net::Ipv6Addr>() {
            Ok(a) if a.is_multicast() => Ok(IpAddr::V6(a)),
            _ => fail(&format!("invalid IPv6 mcast-group `{word}'")),
        }
    } else {
        match word.parse::<Ipv4Addr>() {
            Ok(a) if a.is_multicast() => Ok(IpAddr::V4(a)),
            _ => fail(&format!("invalid IPv4 mcast-group `{word}'")),
        }
    }
}

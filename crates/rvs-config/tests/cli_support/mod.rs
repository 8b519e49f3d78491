//! Helpers of the ipvsadm replay: the record reader, a shell-word splitter for the recorded
//! argument lines, applying a parsed command to `rvs_core::ipvs::Ipvs`, and the `-Sn` rule
//! lines of a state (order aside) to compare with the kernel's.

use std::net::Ipv4Addr;

use rvs_config::ipvsadm::{Command, Resolve};
use rvs_core::error::IpvsError;
use rvs_core::ipvs::Ipvs;
use rvs_core::model::{svc_flags, Forward, Netmask, Protocol, ServiceKey, SockAddr, TunnelType};
use rvs_core::time::Tick;

/// The names `cli.sh` gives the VM (`/etc/hosts`, `/etc/services`).
pub struct Names;

impl Resolve for Names {
    fn host(&self, name: &str) -> Option<Ipv4Addr> {
        let a = match name {
            "localhost" => [127, 0, 0, 1],
            "vip2" => [10, 0, 0, 2],
            "rs7" => [10, 0, 1, 7],
            "mask24" => [255, 255, 255, 0],
            _ => return None,
        };
        Some(Ipv4Addr::from(a))
    }
    fn service(&self, name: &str, proto: &str) -> Option<u16> {
        match (name, proto) {
            ("http", "tcp") => Some(80),
            ("domain", "udp" | "tcp") => Some(53),
            ("sip", "udp") => Some(5060),
            ("webcache", "tcp") => Some(8080),
            _ => None,
        }
    }
}

/// One recorded invocation.
pub struct Record {
    pub args: String,
    pub setup: String,
    /// the program path it was run as (`ipvsadm` unless recorded)
    pub argv0: String,
    pub stdin: Option<String>,
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
    pub save: String,
}

impl Record {
    /// Every record of a `cli.golden` file.
    pub fn parse_all(data: &[u8]) -> Vec<Record> {
        let text = std::str::from_utf8(data).expect("utf-8 records");
        let mut rest = text;
        let mut out = Vec::new();
        while let Some(after) = rest.strip_prefix("=== ") {
            let (args, mut tail) = after.split_once('\n').expect("args line");
            let mut rec = Record {
                args: args.to_string(),
                setup: String::new(),
                argv0: "ipvsadm".to_string(),
                stdin: None,
                status: -1,
                stdout: String::new(),
                stderr: String::new(),
                save: String::new(),
            };
            while let Some(sec) = tail.strip_prefix("--- ") {
                let (head, body) = sec.split_once('\n').expect("section line");
                let (name, val) = head.split_once(' ').expect("section value");
                tail = body;
                match name {
                    "setup" => rec.setup = val.to_string(),
                    "argv0" => rec.argv0 = val.to_string(),
                    "status" => rec.status = val.parse().expect("status"),
                    _ => {
                        let n: usize = val.parse().expect("length");
                        let bytes = tail[..n].to_string();
                        tail = &tail[n..];
                        match name {
                            "stdin" => rec.stdin = Some(bytes),
                            "stdout" => rec.stdout = bytes,
                            "stderr" => rec.stderr = bytes,
                            "save" => rec.save = bytes,
                            other => panic!("unknown section {other}"),
                        }
                    }
                }
            }
            out.push(rec);
            rest = tail;
        }
        assert!(rest.is_empty(), "trailing data: {rest:.80}");
        out
    }

    /// The rules `ipvsadm -Sn` printed after the case.
    pub fn save_lines(&self) -> Vec<String> {
        self.save.lines().map(str::to_string).collect()
    }
}

/// Split a line quoted by Python's `shlex.quote` (plain words, '…' and the '"'"' escape).
pub fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' => words.extend(cur.take()),
            '\'' => {
                let w = cur.get_or_insert_with(String::new);
                w.extend(chars.by_ref().take_while(|&c| c != '\''));
            }
            '"' => {
                let w = cur.get_or_insert_with(String::new);
                w.extend(chars.by_ref().take_while(|&c| c != '"'));
            }
            c => cur.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(cur);
    words
}

/// Apply a command as ipvsadm's action would; `None` when rvs-core does not model it
/// (sync daemons).
pub fn apply(ipvs: &mut Ipvs, cmd: &Command) -> Option<Result<(), IpvsError>> {
    let now = Tick(0);
    Some(match cmd {
        Command::AddService { key, conf } => ipvs.add_service(*key, conf.clone()).map(drop),
        Command::EditService { key, conf } => ipvs.edit_service(key, conf.clone()),
        Command::DelService { key } => ipvs.del_service(key, now),
        Command::Flush => {
            ipvs.flush(now);
            Ok(())
        }
        Command::List { service, .. } => match service {
            Some(k) if ipvs.service(k).is_none() => Err(IpvsError::NoSuchService),
            _ => Ok(()),
        },
        Command::AddDest { key, dest, .. } => ipvs.add_dest(key, *dest).map(drop),
        Command::EditDest {
            key,
            dest,
            proxy_protocol,
        } => {
            let current = ipvs.find_dest(key, &dest.addr, dest.port).map(|d| d.conf());
            let conf = rvs_config::ipvsadm::edited_dest(dest, *proxy_protocol, current.as_ref());
            ipvs.edit_dest(key, conf)
        }
        Command::DelDest { key, dest } => ipvs.del_dest(key, &dest.addr, dest.port, now),
        Command::SetTimeouts { tcp, tcpfin, udp } => ipvs.set_timeouts(*tcp, *tcpfin, *udp),
        Command::StartDaemon(_) | Command::StopDaemon(_) => return None,
        Command::Restore | Command::Save { .. } => Ok(()),
        Command::Zero { service } => ipvs.zero(service.as_ref()),
    })
}

fn svc_name(key: &ServiceKey) -> String {
    match key {
        // ipvsadm 1.31 as packaged by Debian prints the mark signed in -S (`-f -1`)
        ServiceKey::Fwmark { af, mark } if af.af() == 10 => format!("-f {} -6", *mark as i32),
        ServiceKey::Fwmark { mark, .. } => format!("-f {}", *mark as i32),
        ServiceKey::Addr { proto, addr, port } => {
            let opt = match proto {
                Protocol::Tcp => "-t",
                Protocol::Udp => "-u",
                Protocol::Sctp => "--sctp-service",
                Protocol::Ip => "--xxx-service",
            };
            format!("{opt} {}", SockAddr(*addr, *port))
        }
    }
}

fn flag_names(sched: &str, flags: u32) -> String {
    let names: [&str; 3] = match sched {
        "sh" => ["sh-fallback", "sh-port", ""],
        "mh" => ["mh-fallback", "mh-port", ""],
        _ => ["flag-1", "flag-2", "flag-3"],
    };
    let bits = [svc_flags::SCHED1, svc_flags::SCHED2, svc_flags::SCHED3];
    let on: Vec<&str> = bits
        .iter()
        .zip(names)
        .filter(|(b, n)| flags & **b != 0 && !n.is_empty())
        .map(|(_, n)| n)
        .collect();
    on.join(",")
}

fn service_line(key: &ServiceKey, conf: &rvs_core::model::ServiceConf) -> String {
    let mut s = format!("-A {} -s {}", svc_name(key), conf.scheduler);
    if conf.is_persistent() {
        s += &format!(" -p {}", conf.timeout);
        match conf.netmask {
            Netmask::V4(m) if m != u32::MAX => {
                s += &format!(" -M {}", std::net::Ipv4Addr::from(m));
            }
            Netmask::V6(p) if p != 128 => s += &format!(" -M {p}"),
            _ => {}
        }
    }
    if let Some(pe) = &conf.pe {
        s += &format!(" --pe {pe}");
    }
    if conf.is_ops() {
        s += " -o";
    }
    if conf.flags & svc_flags::SCHED_MASK != 0 {
        s += &format!(" -b {}", flag_names(&conf.scheduler, conf.flags));
    }
    s
}

fn dest_line(svc: &str, d: &rvs_core::dest::Dest) -> String {
    let switch = match d.fwd {
        Forward::Masq => "-m",
        Forward::Tunnel => "-i",
        _ => "-g",
    };
    let mut s = format!(
        "-a {svc} -r {} {switch} -w {}",
        SockAddr(d.addr, d.port),
        d.weight
    );
    if d.fwd == Forward::Tunnel {
        let flag = ["--tun-nocsum", "--tun-csum", "--tun-remcsum"][usize::from(d.tun.flags)];
        s += &match d.tun.kind {
            TunnelType::Ipip => " --tun-type ipip".to_string(),
            TunnelType::Gue => format!(" --tun-type gue --tun-port {} {flag}", d.tun.port),
            TunnelType::Gre => format!(" --tun-type gre {flag}"),
        };
    }
    s
}

/// The `-Sn` lines of a state, in no particular order.
pub fn save_lines(ipvs: &Ipvs) -> Vec<String> {
    let mut out = Vec::new();
    for svc in ipvs.services() {
        out.push(service_line(&svc.key, &svc.conf));
        let name = svc_name(&svc.key);
        for d in ipvs.service_dests(svc) {
            out.push(dest_line(&name, d));
        }
    }
    out
}

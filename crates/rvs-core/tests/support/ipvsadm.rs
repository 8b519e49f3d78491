//! A small reader of ipvsadm command lines for replaying golden transcripts through the core.
//! It understands the commands and options the recorded scenarios use, with ipvsadm's
//! defaults (wlc, DR, weight 1, `-p` = 360 s, real-server port = service port, DR/TUN port
//! forced to the service port). The complete ipvsadm front end (every error text, every option)
//! lives in the command-line crate; this is only the replay's view of a recorded command.

use std::net::IpAddr;

use rvs_core::model::*;

/// One control operation.
#[derive(Debug, Clone)]
pub enum Cmd {
    AddService(ServiceKey, ServiceConf),
    EditService(ServiceKey, ServiceConf),
    DelService(ServiceKey),
    Flush,
    AddDest(ServiceKey, DestConf),
    EditDest(ServiceKey, DestConf),
    DelDest(ServiceKey, IpAddr, u16),
    Zero(Option<ServiceKey>),
    SetTimeouts(u32, u32, u32),
    /// `-L` of one service (fails when it does not exist)
    List(ServiceKey),
    /// listing or other read-only command
    Other,
}

fn parse_addr_port(s: &str) -> Option<(IpAddr, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (a, p) = rest.split_once("]:")?;
        return Some((a.parse().ok()?, Some(p.parse().ok()?)));
    }
    if let Ok(a) = s.parse::<IpAddr>() {
        return Some((a, None));
    }
    let (a, p) = s.rsplit_once(':')?;
    Some((a.parse().ok()?, Some(p.parse().ok()?)))
}

fn parse_mask(s: &str, af: Family) -> Option<Netmask> {
    match af {
        Family::V4 => {
            let a: std::net::Ipv4Addr = s.parse().ok()?;
            Some(Netmask::V4(u32::from(a)))
        }
        Family::V6 => Some(Netmask::V6(s.parse().ok()?)),
    }
}

fn sched_flag(name: &str) -> Option<u32> {
    Some(match name {
        "flag-1" | "sh-fallback" | "mh-fallback" => svc_flags::SCHED1,
        "flag-2" | "sh-port" | "mh-port" => svc_flags::SCHED2,
        "flag-3" => svc_flags::SCHED3,
        _ => return None,
    })
}

#[derive(Default)]
struct Opts {
    cmd: Option<String>,
    svc: Option<ServiceKey>,
    v6: bool,
    sched: Option<String>,
    persist: Option<u32>,
    mask: Option<String>,
    flags: u32,
    ops: bool,
    pe: Option<String>,
    real: Option<(IpAddr, Option<u16>)>,
    fwd: Option<Forward>,
    weight: Option<i32>,
    uth: u32,
    lth: u32,
    tun: TunnelConf,
    set: Vec<u32>,
}

fn svc_arg(proto: Protocol, v: &str) -> Option<ServiceKey> {
    let (addr, port) = parse_addr_port(v)?;
    Some(ServiceKey::Addr {
        proto,
        addr,
        port: port.unwrap_or(0),
    })
}

/// Parse the arguments of one ipvsadm invocation (without the program name).
pub fn parse(args: &[&str]) -> Option<Cmd> {
    let mut o = Opts::default();
    let mut i = 0;
    let next = |i: &mut usize| -> Option<String> {
        *i += 1;
        args.get(*i).map(|s| s.to_string())
    };
    while i < args.len() {
        let a = args[i];
        match a {
            "-A" | "-E" | "-D" | "-C" | "-a" | "-e" | "-d" | "-Z" | "-L" | "-l" | "-S" | "-R"
            | "--set" => o.cmd = Some(a.to_string()),
            "-t" => o.svc = svc_arg(Protocol::Tcp, &next(&mut i)?),
            "-u" => o.svc = svc_arg(Protocol::Udp, &next(&mut i)?),
            "--sctp-service" => o.svc = svc_arg(Protocol::Sctp, &next(&mut i)?),
            "-f" => {
                o.svc = Some(ServiceKey::Fwmark {
                    af: Family::V4,
                    mark: next(&mut i)?.parse().ok()?,
                })
            }
            "-6" => o.v6 = true,
            "-s" => o.sched = Some(next(&mut i)?),
            "-p" => {
                let v = args.get(i + 1).filter(|s| !s.starts_with('-'));
                o.persist = Some(match v {
                    Some(t) => {
                        i += 1;
                        t.parse().ok()?
                    }
                    None => DEFAULT_PERSIST_TIMEOUT,
                });
            }
            "-M" => o.mask = Some(next(&mut i)?),
            "-b" => {
                for f in next(&mut i)?.split(',') {
                    o.flags |= sched_flag(f)?;
                }
            }
            "-o" => o.ops = true,
            "--pe" => o.pe = Some(next(&mut i)?),
            "-r" => o.real = Some(parse_addr_port(&next(&mut i)?)?),
            "-g" => o.fwd = Some(Forward::Route),
            "-i" => o.fwd = Some(Forward::Tunnel),
            "-m" => o.fwd = Some(Forward::Masq),
            "-w" => o.weight = Some(next(&mut i)?.parse().ok()?),
            "-x" => o.uth = next(&mut i)?.parse().ok()?,
            "-y" => o.lth = next(&mut i)?.parse().ok()?,
            "--tun-type" => {
                o.tun.kind = match next(&mut i)?.as_str() {
                    "gue" => TunnelType::Gue,
                    "gre" => TunnelType::Gre,
                    _ => TunnelType::Ipip,
                }
            }
            "--tun-port" => o.tun.port = next(&mut i)?.parse().ok()?,
            "--tun-csum" => o.tun.flags = tun_flags::CSUM,
            "--tun-remcsum" => o.tun.flags = tun_flags::REMCSUM,
            "--tun-nocsum" => o.tun.flags = tun_flags::NOCSUM,
            "-n" | "-c" | "--stats" | "--rate" | "--exact" | "--timeout" | "--thresholds"
            | "--persistent-conn" => {}
            other if o.cmd.as_deref() == Some("--set") => o.set.push(other.parse().ok()?),
            _ => return None,
        }
        i += 1;
    }
    if o.v6 {
        if let Some(ServiceKey::Fwmark { mark, .. }) = o.svc {
            o.svc = Some(ServiceKey::Fwmark {
                af: Family::V6,
                mark,
            });
        }
    }
    build(o)
}

fn build(o: Opts) -> Option<Cmd> {
    let cmd = o.cmd.clone()?;
    Some(match cmd.as_str() {
        "-A" | "-E" => {
            let key = o.svc?;
            let af = key.family();
            let mut conf = ServiceConf::new(af, o.sched.as_deref().unwrap_or("wlc"));
            if let Some(t) = o.persist {
                conf = conf.persistent(t);
            }
            if let Some(m) = &o.mask {
                conf.netmask = parse_mask(m, af)?;
            }
            conf.flags |= o.flags;
            if o.ops {
                conf.flags |= svc_flags::ONEPACKET;
            }
            conf.pe = o.pe.clone();
            if cmd == "-A" {
                Cmd::AddService(key, conf)
            } else {
                Cmd::EditService(key, conf)
            }
        }
        "-D" => Cmd::DelService(o.svc?),
        "-C" => Cmd::Flush,
        "-Z" => Cmd::Zero(o.svc),
        "--set" => Cmd::SetTimeouts(*o.set.first()?, *o.set.get(1)?, *o.set.get(2)?),
        "-a" | "-e" | "-d" => dest_cmd(&cmd, &o)?,
        "-L" | "-l" => match o.svc {
            Some(k) => Cmd::List(k),
            None => Cmd::Other,
        },
        _ => Cmd::Other,
    })
}

fn dest_cmd(cmd: &str, o: &Opts) -> Option<Cmd> {
    let key = o.svc?;
    let (addr, port) = o.real?;
    let fwd = o.fwd.unwrap_or(Forward::Route);
    let port = port.unwrap_or(key.port());
    if cmd == "-d" {
        return Some(Cmd::DelDest(key, addr, port));
    }
    let mut d = DestConf::new(addr, port)
        .fwd(fwd)
        .port_for(&key)
        .weight(o.weight.unwrap_or(1))
        .thresholds(o.uth, o.lth);
    d.tun = o.tun;
    Some(if cmd == "-a" {
        Cmd::AddDest(key, d)
    } else {
        Cmd::EditDest(key, d)
    })
}

//! The command line of `rvsd realserver`: flags, their values, and what they must say
//! together (bad input is refused before anything is looked at or changed).

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

pub const USAGE: &str = "\
Usage: rvsd realserver --vip ADDR [--vip ADDR]... --mode dr|tun
                       [--iface NAME]... [--gue-port N]...
       rvsd realserver --stop [--vip ADDR]... [--gue-port N]...
  --vip ADDR       a virtual address (IPv4 or IPv6) this host serves; repeatable
  --mode dr|tun    direct routing, or IP tunnelling (IPIP, IPv6 in IPv6, GUE, GRE taken
                   off by rvs's tc program, kernel tunnel modules not needed)
  --iface NAME     tun: where tunnelled packets arrive (default: every interface that is
                   up and not loopback); repeatable
  --gue-port N     tun: a UDP port GUE packets arrive on; repeatable
  --stop           undo what earlier runs did, for the --vip given (default: all);
                   --mode and --iface are accepted and ignored with it
  --state FILE     what was changed (default /run/rvs/realserver-net<N>.json, N the
                   network namespace's inode: each namespace is a real server of its own)
  --pin-dir DIR    where the tc program is pinned (default /sys/fs/bpf/rvs/net<N>)
";

/// `net<inode>` of this process's network namespace: what a real server's settings (VIPs,
/// sysctls, tc programs) belong to, so two namespaces on one host never share state.
pub fn netns_tag() -> String {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata("/proc/self/ns/net") {
        Ok(m) => format!("net{}", m.ino()),
        Err(_) => "net".into(),
    }
}

/// How a real server gets its packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Dr,
    Tun,
}

/// The command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opts {
    pub vips: Vec<IpAddr>,
    pub mode: Option<Mode>,
    pub ifaces: Vec<String>,
    pub gue_ports: Vec<u16>,
    pub stop: bool,
    pub state: PathBuf,
    pub pin_dir: PathBuf,
}

/// `None`: help was asked for.
pub fn parse(argv: &[String]) -> Result<Option<Opts>> {
    let mut o = Opts {
        vips: Vec::new(),
        mode: None,
        ifaces: Vec::new(),
        gue_ports: Vec::new(),
        stop: false,
        state: PathBuf::from(format!("/run/rvs/realserver-{}.json", netns_tag())),
        pin_dir: PathBuf::from("/sys/fs/bpf/rvs").join(netns_tag()),
    };
    let mut words = argv.iter();
    while let Some(word) = words.next() {
        let (flag, inline) = match word.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (word.as_str(), None),
        };
        match flag {
            "-h" | "--help" => return Ok(None),
            "--stop" => o.stop = true,
            "--vip" | "--mode" | "--iface" | "--gue-port" | "--state" | "--pin-dir" => {
                let Some(v) = inline.or_else(|| words.next().cloned()) else {
                    bail!("{flag}: missing value");
                };
                value(&mut o, flag, &v)?;
            }
            _ => bail!("unknown option {word}"),
        }
    }
    check(&o)?;
    Ok(Some(o))
}

fn value(o: &mut Opts, flag: &str, v: &str) -> Result<()> {
    match flag {
        "--vip" => {
            let Ok(a) = v.parse::<IpAddr>() else {
                bail!("--vip: not an IPv4 or IPv6 address: {v}");
            };
            if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
                bail!("--vip: not a unicast address of its own: {v}");
            }
            if !o.vips.contains(&a) {
                o.vips.push(a);
            }
        }
        "--mode" => {
            o.mode = Some(match v {
                "dr" => Mode::Dr,
                "tun" => Mode::Tun,
                _ => bail!("--mode: expected dr or tun, got {v}"),
            })
        }
        "--iface" if v.is_empty() || v.len() > 15 || v.contains('/') => {
            bail!("--iface: not an interface name: {v}")
        }
        "--iface" => o.ifaces.push(v.to_string()),
        "--gue-port" => match v.parse::<u16>() {
            Ok(p) if p != 0 => o.gue_ports.push(p),
            _ => bail!("--gue-port: not a UDP port (1-65535): {v}"),
        },
        "--state" => o.state = v.into(),
        _ => o.pin_dir = v.into(),
    }
    Ok(())
}

/// What the flags must say together.
fn check(o: &Opts) -> Result<()> {
    if o.stop {
        return Ok(());
    }
    if o.vips.is_empty() {
        bail!("--vip is required (or --stop)");
    }
    match o.mode {
        None => bail!("--mode is required: dr or tun"),
        Some(Mode::Dr) if !o.ifaces.is_empty() => bail!("--iface is for --mode tun"),
        Some(Mode::Dr) if !o.gue_ports.is_empty() => bail!("--gue-port is for --mode tun"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Result<Option<Opts>> {
        parse(&words.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn err(words: &[&str]) -> String {
        format!("{:#}", args(words).unwrap_err())
    }

    #[test]
    fn a_start_and_a_stop_parse() {
        let o = args(&["--vip", "10.200.0.1", "--vip=2001:db8::1", "--mode", "tun"])
            .unwrap()
            .unwrap();
        assert_eq!(o.vips.len(), 2);
        assert_eq!(o.mode, Some(Mode::Tun));
        assert!(!o.stop && o.ifaces.is_empty());
        let tag = netns_tag();
        assert!(tag.len() > 3 && tag.starts_with("net"), "{tag}");
        assert_eq!(
            o.state,
            PathBuf::from(format!("/run/rvs/realserver-{tag}.json"))
        );
        assert_eq!(o.pin_dir, PathBuf::from(format!("/sys/fs/bpf/rvs/{tag}")));
        let o = args(&["--vip", "10.200.0.1", "--mode", "tun", "--iface", "eth0"])
            .unwrap()
            .unwrap();
        assert_eq!(o.ifaces, ["eth0"]);
        let o = args(&["--stop"]).unwrap().unwrap();
        assert!(o.stop && o.vips.is_empty());
        let o = args(&["--gue-port", "6080", "--mode", "tun", "--vip", "10.0.0.1"]);
        assert_eq!(o.unwrap().unwrap().gue_ports, [6080]);
        assert!(args(&["-h"]).unwrap().is_none());
    }

    #[test]
    fn bad_input_is_named() {
        assert_eq!(
            err(&["--vip", "10.0.0", "--mode", "dr"]),
            "--vip: not an IPv4 or IPv6 address: 10.0.0"
        );
        assert_eq!(
            err(&["--vip", "10.0.0.1", "--mode", "nat"]),
            "--mode: expected dr or tun, got nat"
        );
        assert_eq!(err(&["--vip", "10.0.0.1"]), "--mode is required: dr or tun");
        assert_eq!(err(&["--mode", "dr"]), "--vip is required (or --stop)");
        assert_eq!(
            err(&["--vip", "10.0.0.1", "--mode", "dr", "--iface", "eth0"]),
            "--iface is for --mode tun"
        );
        assert_eq!(
            err(&["--vip", "1.2.3.4", "--mode", "tun", "--gue-port", "0"]),
            "--gue-port: not a UDP port (1-65535): 0"
        );
        assert_eq!(
            err(&["--vip", "0.0.0.0", "--mode", "dr"]),
            "--vip: not a unicast address of its own: 0.0.0.0"
        );
        assert_eq!(err(&["--vip"]), "--vip: missing value");
        assert_eq!(err(&["--frob"]), "unknown option --frob");
    }
}

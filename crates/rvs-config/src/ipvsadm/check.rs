//! The legality tables of ipvsadm 1.31 (`commands_v_options`, `tunnel_types_v_options`) and
//! their checks (`generic_opt_check`, `tunnel_opt_check`): `+` mandatory, `x` illegal, `1` at
//! most one of the group, blank optional. The checks walk the options in table order and the
//! first offence wins; in a `1` group the later option is named first.

use super::popt::Opt;

/// Option names in table order (`optnames[]`); from index 34 on, the extensions (`--json`,
/// `--proxy-protocol`, `--extended`): checked after every ipvsadm option, so an invocation
/// ipvsadm accepts or refuses meets the same first offence.
pub const OPT_NAMES: [&str; 37] = [
    "numeric",
    "connection",
    "service-address",
    "scheduler",
    "persistent",
    "netmask",
    "real-server",
    "forwarding-method",
    "weight",
    "u-threshold",
    "l-threshold",
    "mcast-interface",
    "timeout",
    "daemon",
    "stats",
    "rate",
    "thresholds",
    "persistent-conn",
    "nosort",
    "syncid",
    "exact",
    "ops",
    "pe",
    "sched-flags",
    "mcast-group",
    "mcast-port",
    "mcast-ttl",
    "sync-maxlen",
    "tun-info",
    "tun-type",
    "tun-port",
    "tun-nocsum",
    "tun-csum",
    "tun-remcsum",
    "json",
    "proxy-protocol",
    "extended",
];

/// Index of an option name in [`OPT_NAMES`].
#[allow(missing_docs)]
pub mod optc {
    pub const NUMERIC: usize = 0;
    pub const CONNECTION: usize = 1;
    pub const SERVICE: usize = 2;
    pub const SCHEDULER: usize = 3;
    pub const PERSISTENT: usize = 4;
    pub const NETMASK: usize = 5;
    pub const SERVER: usize = 6;
    pub const FORWARD: usize = 7;
    pub const WEIGHT: usize = 8;
    pub const UTHRESHOLD: usize = 9;
    pub const LTHRESHOLD: usize = 10;
    pub const MCAST: usize = 11;
    pub const TIMEOUT: usize = 12;
    pub const DAEMON: usize = 13;
    pub const STATS: usize = 14;
    pub const RATE: usize = 15;
    pub const THRESHOLDS: usize = 16;
    pub const PERSISTENTCONN: usize = 17;
    pub const NOSORT: usize = 18;
    pub const SYNCID: usize = 19;
    pub const EXACT: usize = 20;
    pub const ONEPACKET: usize = 21;
    pub const PE: usize = 22;
    pub const SCHED_FLAGS: usize = 23;
    pub const MCAST_GROUP: usize = 24;
    pub const MCAST_PORT: usize = 25;
    pub const MCAST_TTL: usize = 26;
    pub const SYNC_MAXLEN: usize = 27;
    pub const TUN_INFO: usize = 28;
    pub const TUN_TYPE: usize = 29;
    pub const TUN_PORT: usize = 30;
    pub const TUN_NOCSUM: usize = 31;
    pub const TUN_CSUM: usize = 32;
    pub const TUN_REMCSUM: usize = 33;
    pub const JSON: usize = 34;
    pub const PROXY_PROTOCOL: usize = 35;
    pub const EXTENDED: usize = 36;
}

/// The option index an option counts as, if ipvsadm tracks it (`set_option`).
pub fn optc_of(opt: Opt) -> Option<usize> {
    use optc::*;
    Some(match opt {
        Opt::Tcp | Opt::Udp | Opt::Sctp | Opt::Fwmark => SERVICE,
        Opt::Masq | Opt::Ipip | Opt::Gate => FORWARD,
        Opt::Numeric => NUMERIC,
        Opt::Connection => CONNECTION,
        Opt::Scheduler => SCHEDULER,
        Opt::Persistent => PERSISTENT,
        Opt::Netmask => NETMASK,
        Opt::RealServer => SERVER,
        Opt::Weight => WEIGHT,
        Opt::UThreshold => UTHRESHOLD,
        Opt::LThreshold => LTHRESHOLD,
        Opt::McastInterface => MCAST,
        Opt::Timeout => TIMEOUT,
        Opt::Daemon => DAEMON,
        Opt::Stats => STATS,
        Opt::Rate => RATE,
        Opt::Thresholds => THRESHOLDS,
        Opt::PersistentConn => PERSISTENTCONN,
        Opt::NoSort => NOSORT,
        Opt::Syncid => SYNCID,
        Opt::Exact => EXACT,
        Opt::Ops => ONEPACKET,
        Opt::Pe => PE,
        Opt::SchedFlags => SCHED_FLAGS,
        Opt::McastGroup => MCAST_GROUP,
        Opt::McastPort => MCAST_PORT,
        Opt::McastTtl => MCAST_TTL,
        Opt::SyncMaxlen => SYNC_MAXLEN,
        Opt::TunInfo => TUN_INFO,
        Opt::TunType => TUN_TYPE,
        Opt::TunPort => TUN_PORT,
        Opt::TunNocsum => TUN_NOCSUM,
        Opt::TunCsum => TUN_CSUM,
        Opt::TunRemcsum => TUN_REMCSUM,
        Opt::Json => JSON,
        Opt::ProxyProtocol => PROXY_PROTOCOL,
        Opt::Extended => EXTENDED,
        _ => return None,
    })
}

/// The commands in table order, with the names ipvsadm prints (`cmdnames[]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmd {
    /// `-A`
    Add = 0,
    /// `-E`
    Edit,
    /// `-D`
    Del,
    /// `-C`
    Flush,
    /// `-L`
    List,
    /// `-a`
    AddDest,
    /// `-d`
    DelDest,
    /// `-e`
    EditDest,
    /// `--set`
    Timeout,
    /// `--start-daemon`
    StartDaemon,
    /// `--stop-daemon`
    StopDaemon,
    /// `-R`
    Restore,
    /// `-S`
    Save,
    /// `-Z`
    Zero,
}

const CMD_NAMES: [&str; 14] = [
    "add-service",
    "edit-service",
    "delete-service",
    "flush",
    "list",
    "add-server",
    "delete-server",
    "edit-server",
    "set",
    "start-daemon",
    "stop-daemon",
    "restore",
    "save",
    "zero",
];

/// One row per command, one column per option (the last three columns are the extensions
/// `--json`, `--proxy-protocol` (with `-a`/`-e`) and `--extended` (with `-S`)).
const MATRIX: [&[u8; 37]; 14] = [
    b"xx+   xxxxxxxxxxxxxxx   xxxxxxxxxxxxx",
    b"xx+   xxxxxxxxxxxxxxx   xxxxxxxxxxxxx",
    b"xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    b" 11xxxxxxxxx11       xxxxxxx xxxxx xx",
    b"xx+xxx+    xxxxxxxxxxxxxxxxxx     x x",
    b"xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    b"xx+xxx+    xxxxxxxxxxxxxxxxxx     x x",
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    b"xxxxxxxxxxx xxxxxxx xxxx    xxxxxxxxx",
    b"xxxxxxxxxxxxxxxxxxx xxxxxxxxxxxxxxxxx",
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    b" xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx ",
    b"xx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
];

/// `generic_opt_check`: the first offence against the command's row, as ipvsadm words it.
pub fn generic(cmd: Cmd, options: u64) -> Result<(), String> {
    let row = MATRIX[cmd as usize];
    let name = CMD_NAMES[cmd as usize];
    let mut first_of_group: Option<usize> = None;
    for (j, &rule) in row.iter().enumerate() {
        let given = options & (1 << j) != 0;
        match (given, rule) {
            (false, b'+') => {
                return Err(format!(
                    "You need to supply the '{}' option for the '{name}' command",
                    OPT_NAMES[j]
                ))
            }
            (true, b'x') => {
                return Err(format!(
                    "Illegal '{}' option with the '{name}' command",
                    OPT_NAMES[j]
                ))
            }
            (true, b'1') => match first_of_group {
                None => first_of_group = Some(j),
                Some(last) => {
                    return Err(format!(
                        "The option '{}' conflicts with the '{}' option in the '{name}' command",
                        OPT_NAMES[j], OPT_NAMES[last]
                    ))
                }
            },
            _ => {}
        }
    }
    Ok(())
}

const TUN_NAMES: [&str; 3] = ["ipip", "gue", "gre"];
const TUN_OPTS: [usize; 4] = [
    optc::TUN_PORT,
    optc::TUN_NOCSUM,
    optc::TUN_CSUM,
    optc::TUN_REMCSUM,
];
const TUN_MATRIX: [&[u8; 4]; 3] = [b"xxxx", b"+111", b"x11x"];

/// `tunnel_opt_check` for tunnel type `kind` (0 ipip, 1 gue, 2 gre).
pub fn tunnel(kind: usize, options: u64) -> Result<(), String> {
    let ty = TUN_NAMES[kind];
    let mut first_of_group: Option<usize> = None;
    for (j, &k) in TUN_OPTS.iter().enumerate() {
        let given = options & (1 << k) != 0;
        match (given, TUN_MATRIX[kind][j]) {
            (false, b'+') => {
                return Err(format!(
                    "You need to supply the '{}' option for the '{ty}' tunnel type",
                    OPT_NAMES[k]
                ))
            }
            (true, b'x') => {
                return Err(format!(
                    "Illegal '{}' option with the '{ty}' tunnel type",
                    OPT_NAMES[k]
                ))
            }
            (true, b'1') => match first_of_group {
                None => first_of_group = Some(k),
                Some(last) => {
                    return Err(format!(
                        "The option '{}' conflicts with the '{}' option in the '{ty}' tunnel type",
                        OPT_NAMES[k], OPT_NAMES[last]
                    ))
                }
            },
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_match_ipvsadm_widths() {
        for row in MATRIX {
            assert_eq!(row.len(), OPT_NAMES.len());
        }
    }
}

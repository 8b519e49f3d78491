//! The ipvsadm 1.31 command line: [`parse`] turns an argument vector into a [`Command`] carrying
//! rvs-core values, or into an [`Exit`] holding exactly what ipvsadm prints and its exit status
//! when the invocation ends in the parser (misuse, `-h`, `-v`).
//!
//! ```
//! use rvs_config::ipvsadm::{parse, Command, NoResolve};
//! let cmd = parse("ipvsadm", &["-A", "-t", "10.0.0.1:80", "-p"], &NoResolve).unwrap();
//! let Command::AddService { conf, .. } = cmd else { panic!() };
//! assert_eq!((conf.scheduler.as_str(), conf.timeout), ("wlc", 360));
//! let err = parse("ipvsadm", &["-A", "-t", "10.0.0.1"], &NoResolve).unwrap_err();
//! assert_eq!(err.stderr, "Zero port specified for non-persistent service\n");
//! assert_eq!(err.status, 2);
//! ```
//!
//! What ipvsadm does, in order (`parse_options`, `process_options`): the first option must be a
//! command (else ``Try `ipvsadm -h' …``, status 255; `-h`/`-v` print and exit 0); every other
//! option is parsed and checked as it comes (`multiple '…' options specified` and value errors,
//! status 2; a popt error prints `WORD: text`, status 255); then `--set`'s three values, leftover
//! words, `-b`, the command × option table, the service and real-server rules, the list
//! conflicts. Kernel refusals are printed later by the caller: see [`kernel_error`].
//! Input with names (`host:http`) goes through [`Resolve`]; numeric input needs no lookup.
//! The `-R` reader is [`restore_lines`]; each line is parsed with [`parse_restore_line`].
//!
//! rvs extensions are long options only, checked after every ipvsadm option: `--json` (with
//! `-L`), `--proxy-protocol none|v1|v2` (with `-a`/`-e`; see [`edited_dest`]) and `--extended`
//! (with `-S`). `-h` does not list them.

mod check;
mod entry;
mod help;
mod popt;
mod restore;
mod values;

use std::net::IpAddr;

use rvs_core::error::IpvsError;
use rvs_core::model::{DestConf, ProxyProtocol, ServiceConf, ServiceKey};

use crate::ListOpts;

pub use help::{help_text, VERSION_LINE};
pub use restore::restore_lines;
pub use values::{inet_aton, NoResolve, Resolve};

/// A parsed invocation that reaches the IPVS state (or lists it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `-A`: add a service
    AddService {
        /// the service
        key: ServiceKey,
        /// its settings, with ipvsadm's defaults filled in
        conf: ServiceConf,
    },
    /// `-E`: replace every setting of a service
    EditService {
        /// the service
        key: ServiceKey,
        /// its new settings (omitted options take their defaults)
        conf: ServiceConf,
    },
    /// `-D`
    DelService {
        /// the service
        key: ServiceKey,
    },
    /// `-C`
    Flush,
    /// `-L`/`-l` (also no arguments at all, without `-n`)
    List {
        /// `-t/-u/--sctp-service/-f`: list only this service
        service: Option<ServiceKey>,
        /// the listing options
        opts: ListOpts,
    },
    /// `-a`
    AddDest {
        /// the service
        key: ServiceKey,
        /// the real server (port already forced to the service port for DR/TUN); its
        /// `proxy_protocol` is the one given, else none: hand it to the engine as it is
        dest: DestConf,
        /// extension `--proxy-protocol` as given (`None`: not given, which for `-a` means
        /// no header)
        proxy_protocol: Option<ProxyProtocol>,
    },
    /// `-e`: hand the engine [`edited_dest`]`(dest, proxy_protocol, current)`, not `dest`
    /// alone, so that an `-e` without `--proxy-protocol` keeps the server's setting
    EditDest {
        /// the service
        key: ServiceKey,
        /// the real server's new settings (`proxy_protocol` is none when not given)
        dest: DestConf,
        /// extension `--proxy-protocol` as given (`None`: not given, keep the current one)
        proxy_protocol: Option<ProxyProtocol>,
    },
    /// `-d`
    DelDest {
        /// the service
        key: ServiceKey,
        /// the real server (address and port identify it)
        dest: DestConf,
    },
    /// `--set tcp tcpfin udp` (seconds, 0 = unchanged)
    SetTimeouts {
        /// TCP ESTABLISHED
        tcp: u32,
        /// TCP FIN_WAIT
        tcpfin: u32,
        /// UDP
        udp: u32,
    },
    /// `--start-daemon master|backup`
    StartDaemon(DaemonConf),
    /// `--stop-daemon master|backup`
    StopDaemon(DaemonConf),
    /// `-R`: read invocations from stdin ([`restore_lines`], [`parse_restore_line`])
    Restore,
    /// `-S`
    Save {
        /// `-n`
        numeric: bool,
        /// extension `--extended`: the `-a` lines also carry rvs's extension options
        extended: bool,
    },
    /// `-Z`: zero one service's counters, or everything when `None`
    Zero {
        /// the service
        service: Option<ServiceKey>,
    },
}

/// Which sync daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncState {
    /// `master` (IP_VS_STATE_MASTER = 1)
    Master,
    /// `backup` (IP_VS_STATE_BACKUP = 2)
    Backup,
}

/// The sync-daemon options of `--start-daemon`/`--stop-daemon`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonConf {
    /// master or backup
    pub state: SyncState,
    /// `--mcast-interface` (at most 15 bytes; `eth0` for `--start-daemon` when absent)
    pub mcast_ifn: String,
    /// `--syncid` 0 … 255 (0 when absent)
    pub syncid: u8,
    /// `--sync-maxlen` 1 … 65507 (kernel default when absent)
    pub sync_maxlen: Option<u16>,
    /// `--mcast-group`, a multicast address (kernel default 224.0.0.81 when absent)
    pub mcast_group: Option<IpAddr>,
    /// `--mcast-port` 1 … 65535 (kernel default 8848)
    pub mcast_port: Option<u16>,
    /// `--mcast-ttl` 1 … 255 (kernel default 1)
    pub mcast_ttl: Option<u8>,
}

/// The invocation ends without touching the IPVS state: print `stdout` and `stderr` exactly and
/// exit with `status` (0 for `-h`/`-v`, 2 for ipvsadm's `fail()`, 255 for popt errors and the
/// "Try …" line, 139 where ipvsadm 1.31 itself crashes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    /// text for standard output
    pub stdout: String,
    /// text for standard error
    pub stderr: String,
    /// the exit status
    pub status: i32,
}

impl Exit {
    /// `fail(2, msg)`: the message and a newline on stderr, status 2.
    pub fn fail(msg: &str) -> Exit {
        Exit {
            stdout: String::new(),
            stderr: format!("{msg}\n"),
            status: 2,
        }
    }
    /// ``Try `P -h' or 'P --help' for more information.``, status 255.
    pub fn try_help(argv0: &str) -> Exit {
        Exit {
            stdout: String::new(),
            stderr: format!("Try `{argv0} -h' or '{argv0} --help' for more information.\n"),
            status: 255,
        }
    }
    fn stdout(text: String) -> Exit {
        Exit {
            stdout: text,
            stderr: String::new(),
            status: 0,
        }
    }
}

/// Parse one ipvsadm invocation. `argv0` is the program name (printed by `-h` and the "Try"
/// line), `args` the words after it; `names` resolves host and service names.
pub fn parse(argv0: &str, args: &[&str], names: &dyn Resolve) -> Result<Command, Exit> {
    entry::parse(argv0, args, names, false)
}

/// The configuration an `-e` gives a real server whose configuration is `current` (`None`:
/// no such server; the engine then refuses the edit anyway): `dest`, with the PROXY protocol
/// setting `given` by `--proxy-protocol`, else the server's current one, so that an operator's
/// unchanged ipvsadm script (`-e … -w 0`) never drops the extension.
///
/// ```
/// use rvs_config::ipvsadm::{edited_dest, parse, Command, NoResolve};
/// use rvs_core::model::{DestConf, ProxyProtocol};
/// let current = DestConf::new("10.0.1.1".parse().unwrap(), 80).proxy_protocol(ProxyProtocol::V2);
/// let cmd = parse("ipvsadm", &["-e", "-t", "10.0.0.1:80", "-r", "10.0.1.1", "-w", "0"], &NoResolve);
/// let Ok(Command::EditDest { dest, proxy_protocol, .. }) = cmd else { panic!() };
/// let conf = edited_dest(&dest, proxy_protocol, Some(&current));
/// assert_eq!((conf.weight, conf.proxy_protocol), (0, ProxyProtocol::V2));
/// ```
pub fn edited_dest(
    dest: &DestConf,
    given: Option<ProxyProtocol>,
    current: Option<&DestConf>,
) -> DestConf {
    let kept = current.map_or(ProxyProtocol::None, |c| c.proxy_protocol);
    dest.proxy_protocol(given.unwrap_or(kept))
}

/// Parse one line of `-R` input (the words of [`restore_lines`]); as in ipvsadm, a nested `-R`
/// ends the restore with the "Try" line. An `Err` ends the whole restore (ipvsadm exits); a
/// kernel refusal of a parsed line is printed and the restore goes on, its exit status being
/// that of the last line.
pub fn parse_restore_line(
    argv0: &str,
    args: &[&str],
    names: &dyn Resolve,
) -> Result<Command, Exit> {
    entry::parse(argv0, args, names, true)
}

/// The line ipvsadm prints when the kernel refuses `cmd` with the errno of `err`
/// (`ipvs_strerror`, whose wording depends on the operation), and the exit status: 1 for a
/// listing (`-L -t …` of a missing service), 255 for everything else.
pub fn kernel_error(cmd: &Command, err: IpvsError) -> Exit {
    Exit {
        stdout: String::new(),
        stderr: format!("{}\n", errno_text(cmd, err.errno())),
        status: if matches!(cmd, Command::List { .. }) {
            1
        } else {
            255
        },
    }
}

/// `ipvs_strerror(errno)` for the operation of `cmd`.
pub fn errno_text(cmd: &Command, errno: i32) -> String {
    use Command as C;
    let specific = match (errno, cmd) {
        (17, C::AddService { .. }) => Some("Service already exists"),
        (2, C::AddService { .. } | C::EditService { .. }) => {
            Some("Scheduler or persistence engine not found")
        }
        (3, C::EditService { .. } | C::DelService { .. } | C::Zero { .. } | C::List { .. }) => {
            Some("No such service")
        }
        (3, C::AddDest { .. } | C::EditDest { .. } | C::DelDest { .. }) => {
            Some("Service not defined")
        }
        (17, C::AddDest { .. }) => Some("Destination already exists"),
        (2, C::EditDest { .. } | C::DelDest { .. }) => Some("No such destination"),
        (17, C::StartDaemon(_)) => Some("Daemon has already run"),
        (3, C::StopDaemon(_)) => Some("No daemon is running"),
        _ => None,
    };
    specific
        .unwrap_or_else(|| generic_errno_text(errno))
        .to_string()
}

fn generic_errno_text(errno: i32) -> &'static str {
    match errno {
        1 => "Permission denied (you must be root)",
        22 => "Invalid operation.  Possibly wrong module version, address not unicast, ...",
        92 => "Protocol not available",
        12 => "Memory allocation problem",
        95 => "Operation not supported with IPv6",
        97 => "Operation not supported with specified address family",
        90 => "Module is wrong version",
        2 => "No such file or directory",
        3 => "No such process",
        14 => "Bad address",
        17 => "File exists",
        19 => "No such device",
        34 => "Numerical result out of range",
        101 => "Network is unreachable",
        _ => "Unknown error",
    }
}

/// `-v`'s output.
fn version_exit() -> Exit {
    Exit::stdout(VERSION_LINE.to_string())
}

/// `-h`'s output.
fn help_exit(argv0: &str) -> Exit {
    Exit::stdout(help_text(argv0))
}

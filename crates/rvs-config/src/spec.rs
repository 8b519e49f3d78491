//! The declarative configuration every file format reads into: virtual services with their
//! real servers, health checks, sorry server and quorum, as keepalived understands them.
//!
//! Three front ends produce a [`Config`]: the rvs TOML format, keepalived.conf and
//! ldirectord.cf. The checker (`rvs-health`) runs its checks, and the reload computes
//! differences between two of them. Values are resolved: defaults are filled in and
//! inheritance (virtual server → real server → checker) is applied, so a consumer never needs
//! to know which format a value came from.
//!
//! The IPVS side of a service is exactly the rvs-core model: a [`VirtualService`] holds the
//! [`ServiceKey`]s and the [`ServiceConf`] that `ipvsadm -A` would give, and each
//! [`RealServer`] the [`DestConf`] that `ipvsadm -a` would give (with its configured weight),
//! so a file and the equivalent ipvsadm commands build the same rules.
//!
//! ```
//! use rvs_config::spec::{Config, Loc};
//! let cfg = Config::default();
//! assert!(cfg.services.is_empty());
//! let at = Loc::new("keepalived.conf", 12, 5);
//! assert_eq!(at.to_string(), "keepalived.conf:12:5");
//! ```

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use rvs_core::model::{DestConf, ServiceConf, ServiceKey};

/// Where something is in a configuration file (1-based line and column, in characters).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Loc {
    /// the file as it was named (an `include`d file by its resolved path)
    pub file: String,
    /// line, from 1
    pub line: u32,
    /// column, from 1
    pub col: u32,
}

impl Loc {
    /// A location.
    pub fn new(file: impl Into<String>, line: u32, col: u32) -> Loc {
        Loc {
            file: file.into(),
            line,
            col,
        }
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// A refused configuration: where, and what is wrong (`file:line:column: message`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{loc}: {msg}")]
pub struct ConfigError {
    /// where the problem is
    pub loc: Loc,
    /// what is wrong, in one sentence, naming the directive and the value
    pub msg: String,
}

impl ConfigError {
    /// An error at `loc`.
    pub fn new(loc: Loc, msg: impl Into<String>) -> ConfigError {
        ConfigError {
            loc,
            msg: msg.into(),
        }
    }
}

/// Something accepted but not acted on (an ignored block or keyword, a deprecated spelling,
/// a value keepalived would correct). Each is reported once, with its location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// where
    pub loc: Loc,
    /// what, e.g. "vrrp_instance VI_1: ignored (rvs does not run VRRP)"
    pub msg: String,
}

/// A whole configuration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    /// virtual services in file order
    pub services: Vec<VirtualService>,
    /// director-wide settings (the rvs TOML format only; the others leave them unset)
    pub settings: Settings,
    /// what was read but is not acted on
    pub notices: Vec<Notice>,
}

/// Director-wide settings; `None` leaves rvsd's command line or default in force.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// data-plane worker threads (`--workers`)
    pub workers: Option<usize>,
    /// how long SIGTERM waits for open connections (`--drain-timeout`)
    pub drain_timeout: Option<Duration>,
    /// the userspace data plane's connect timeout to real servers
    pub connect_timeout: Option<Duration>,
    /// `ipvsadm --set tcp tcpfin udp` in seconds (0 leaves one unchanged, as --set does)
    pub timeouts: Option<(u32, u32, u32)>,
    /// how long a removed real server's open connections may finish on a reload before
    /// they are closed
    pub drain_grace: Option<Duration>,
}

/// One virtual service (a keepalived `virtual_server`, an ldirectord `virtual`, an rvs
/// `[[service]]`). A keepalived `virtual_server group` is one `VirtualService` with one key
/// per member of the group.
#[derive(Clone, Debug, PartialEq)]
pub struct VirtualService {
    /// where it is declared
    pub loc: Loc,
    /// the IPVS services it stands for (one, or every member of a group)
    pub keys: Vec<ServiceKey>,
    /// the settings `ipvsadm -A` would give each of them
    pub conf: ServiceConf,
    /// real servers in file order (duplicates removed, as keepalived does)
    pub reals: Vec<RealServer>,
    /// the sorry server (keepalived `sorry_server`, ldirectord `fallback`)
    pub sorry: Option<Sorry>,
    /// quorum: the least sum of alive real servers' weights that keeps the service up
    /// (keepalived default 1)
    pub quorum: u32,
    /// hysteresis around the quorum (default 0)
    pub hysteresis: u32,
    /// run when the quorum is gained
    pub quorum_up: Option<Command>,
    /// run when the quorum is lost
    pub quorum_down: Option<Command>,
    /// `omega`: run the real servers' down notifiers (and quorum_down) when rvsd stops
    pub omega: bool,
    /// run `quorum_down` at start when the service starts without its quorum even if it has
    /// no sorry server (ldirectord's `fallbackcommand start`); keepalived runs it at start
    /// only with a sorry server
    pub quorum_down_at_start: bool,
    /// rvs extension: passive health from the data plane's connect failures and resets
    pub passive: Option<Passive>,
}

/// Passive health (rvs extension): a real server whose connections keep failing is ejected
/// for a while, its active checks still deciding when it is back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Passive {
    /// consecutive connect failures or resets that eject a server
    pub failures: u32,
    /// how long an ejection lasts at first (doubling on each repeat, up to `max_backoff`)
    pub backoff: Duration,
    /// the longest ejection
    pub max_backoff: Duration,
    /// never eject more than this share of the service's servers (percent, 0–100)
    pub max_ejected_percent: u8,
}

/// The sorry server of a service.
#[derive(Clone, Debug, PartialEq)]
pub struct Sorry {
    /// where it is declared
    pub loc: Loc,
    /// the real server added while the quorum is lost (weight 1 unless the format says)
    pub dest: DestConf,
    /// keepalived `sorry_server_inhibit`: kept in the table with weight 0 while the quorum
    /// holds, instead of being absent
    pub inhibit: bool,
    /// ldirectord `fallbackcommand`: run with `start` / `stop`, the service and protocol
    pub command: Option<Command>,
}

/// A real server and everything that decides whether it receives traffic.
#[derive(Clone, Debug, PartialEq)]
pub struct RealServer {
    /// where it is declared
    pub loc: Loc,
    /// what `ipvsadm -a` would give, with the configured weight
    pub dest: DestConf,
    /// when it fails: keep it with weight 0 (keepalived `inhibit_on_failure`, ldirectord
    /// `quiescent = yes`) instead of removing it
    pub inhibit_on_failure: bool,
    /// keepalived `alpha`: starts down, added after its checks first succeed (without it a
    /// server is assumed up at start)
    pub alpha: bool,
    /// run when it comes up / goes down
    pub notify_up: Option<Command>,
    /// run when it goes down
    pub notify_down: Option<Command>,
    /// all must pass for the server to be up; none at all means always up
    pub checks: Vec<Check>,
    /// rvs extension: after recovery the weight ramps from 1 to the configured weight over
    /// this time
    pub slow_start: Option<Duration>,
}

/// A command line to run (notify scripts, MISC_CHECK, quorum scripts): the words as the
/// file gave them, the first one being the program. keepalived runs such strings without a
/// shell, split on spaces with quotes honoured; `shell` marks the ones meant for `sh -c`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// the program and its arguments
    pub argv: Vec<String>,
    /// run through `/bin/sh -c` (the joined words) rather than directly
    pub shell: bool,
    /// run as this user (keepalived `user` in MISC_CHECK, `script_user`), if set
    pub user: Option<String>,
    /// and this group
    pub group: Option<String>,
}

/// One health check of a real server, its timing resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// where it is declared
    pub loc: Loc,
    /// what is checked
    pub kind: CheckKind,
    /// how often and how patiently
    pub timing: Timing,
    /// where to connect: address (default the real server's) and port (default its port)
    pub connect: Option<(IpAddr, u16)>,
    /// source address to bind (keepalived `bindto`)
    pub bind_addr: Option<IpAddr>,
    /// source port to bind (keepalived `bind_port`)
    pub bind_port: Option<u16>,
    /// interface to bind (keepalived `bind_if`)
    pub bind_if: Option<String>,
    /// firewall mark on the checker's packets (keepalived `fwmark`)
    pub fwmark: Option<u32>,
    /// log every failure, not only transitions (keepalived `log_all_failures`)
    pub log_all_failures: bool,
}

/// The timers of a check (keepalived semantics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// interval between checks (`delay_loop`, ldirectord `checkinterval`)
    pub delay_loop: Duration,
    /// time allowed to connect and answer (`connect_timeout`, ldirectord `checktimeout` or
    /// `negotiatetimeout`)
    pub connect_timeout: Duration,
    /// retries of a failing check before the server is marked down (`retry`; ldirectord
    /// `failurecount` − 1)
    pub retry: u32,
    /// delay between those retries (`delay_before_retry`; ldirectord: `checkinterval`)
    pub delay_before_retry: Duration,
    /// the first check runs after a random delay up to this (`warmup`; zero: at once)
    pub warmup: Duration,
}

/// What a check does.
#[derive(Clone, Debug, PartialEq)]
pub enum CheckKind {
    /// keepalived TCP_CHECK, ldirectord `checktype = connect`: the connection completes
    Tcp,
    /// keepalived HTTP_GET / SSL_GET, ldirectord negotiate with http / https
    Http(HttpCheck),
    /// keepalived SMTP_CHECK, ldirectord negotiate smtp: 220 banner, HELO, 250, QUIT
    Smtp {
        /// the HELO name (keepalived default `smtpchecker.keepalived.org`)
        helo_name: String,
    },
    /// keepalived DNS_CHECK, ldirectord negotiate dns: a query answered with RCODE 0
    Dns {
        /// record type (keepalived default SOA)
        qtype: DnsType,
        /// the name asked (default the root, `.`)
        name: String,
    },
    /// keepalived UDP_CHECK
    Udp(UdpCheck),
    /// keepalived MISC_CHECK, ldirectord `checktype = external`
    Misc(MiscCheck),
    /// keepalived PING_CHECK, ldirectord `checktype = ping`: an ICMP echo is answered
    Ping,
    /// ldirectord negotiate for a plain TCP service (`simpletcp`): send `request`, expect
    /// `receive`
    Send {
        /// bytes sent after connecting (may be empty)
        request: Vec<u8>,
        /// regular expression the answer must match (none: any answer)
        receive: Option<String>,
    },
    /// ldirectord `checktype = on`: always up
    On,
    /// ldirectord `checktype = off`: always down
    Off,
}

/// An HTTP(S) check (keepalived HTTP_GET / SSL_GET).
#[derive(Clone, Debug, PartialEq)]
pub struct HttpCheck {
    /// SSL_GET (TLS) rather than HTTP_GET
    pub tls: bool,
    /// every URL must pass
    pub urls: Vec<UrlCheck>,
    /// `http_protocol`: 1.0 (default), 1.0C (1.0 with `Connection: close`), 1.1
    pub protocol: HttpProtocol,
    /// Host header (`virtualhost` of the check, else of the real server or service)
    pub virtualhost: Option<String>,
    /// `GET` (default) or `HEAD` (ldirectord `httpmethod`)
    pub method: String,
    /// TLS: send SNI (`enable_sni`)
    pub sni: bool,
    /// TLS: the SNI name when it is not the virtualhost (`sni_name`)
    pub sni_name: Option<String>,
    /// TLS: end the connection with a close_notify alert (keepalived `tls_compliant`)
    pub tls_close_notify: bool,
}

/// `http_protocol` of an HTTP check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpProtocol {
    /// HTTP/1.0
    Http10,
    /// HTTP/1.0 with `Connection: close`
    Http10Close,
    /// HTTP/1.1 (with `Connection: close`)
    Http11,
}

/// One `url { }` of an HTTP check.
#[derive(Clone, Debug, PartialEq)]
pub struct UrlCheck {
    /// the request path
    pub path: String,
    /// lowercase hex MD5 of the body, when given
    pub digest: Option<String>,
    /// accepted status codes as inclusive ranges (default 200–299)
    pub status: Vec<(u16, u16)>,
    /// Host header for this URL, overriding the check's
    pub virtualhost: Option<String>,
    /// regular expression the body must match (or must not, with `regex_no_match`)
    pub regex: Option<String>,
    /// `regex_no_match`
    pub regex_no_match: bool,
    /// where a match may start: at this byte offset of the body or later
    /// (`regex_min_offset`) …
    pub regex_min_offset: usize,
    /// … and before this one (`regex_max_offset`, none: anywhere)
    pub regex_max_offset: Option<usize>,
    /// the match must start in the body's first line (PCRE2 `firstline`)
    pub regex_first_line: bool,
}

/// DNS query types a DNS check can ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsType {
    /// A
    A,
    /// NS
    Ns,
    /// CNAME
    Cname,
    /// SOA
    Soa,
    /// MX
    Mx,
    /// TXT
    Txt,
    /// AAAA
    Aaaa,
}

impl DnsType {
    /// The record type named `name` (any case), as keepalived's `type` and rvs's `qtype`
    /// name it.
    pub fn from_name(name: &str) -> Option<DnsType> {
        Some(match name.to_ascii_uppercase().as_str() {
            "A" => DnsType::A,
            "NS" => DnsType::Ns,
            "CNAME" => DnsType::Cname,
            "SOA" => DnsType::Soa,
            "MX" => DnsType::Mx,
            "TXT" => DnsType::Txt,
            "AAAA" => DnsType::Aaaa,
            _ => return None,
        })
    }
}

/// A UDP check (keepalived UDP_CHECK).
#[derive(Clone, Debug, PartialEq)]
pub struct UdpCheck {
    /// bytes sent (`payload`, hex in the file)
    pub payload: Vec<u8>,
    /// a reply is required; `Some(pattern)` also says what it must be (`None` inside:
    /// any reply), each element a byte or a wildcard (`x` nibbles are matched per nibble:
    /// (value, mask))
    pub require_reply: Option<Option<Vec<(u8, u8)>>>,
    /// shortest acceptable reply
    pub min_reply_length: usize,
    /// longest acceptable reply
    pub max_reply_length: usize,
}

/// An external check (keepalived MISC_CHECK, ldirectord external).
#[derive(Clone, Debug, PartialEq)]
pub struct MiscCheck {
    /// what to run (ldirectord: with the service and server as arguments, already added)
    pub command: Command,
    /// killed after this long (`misc_timeout`; default: the delay loop)
    pub timeout: Duration,
    /// `misc_dynamic`: exit 2–255 means up with weight exit − 2
    pub dynamic: bool,
}

/// How a reader gets at files (`include` in keepalived.conf, the file itself): rvs-config
/// does no I/O, so the binaries hand it the file system and tests hand it a map.
pub trait Files {
    /// The text of `path` (an error names the problem, e.g. "No such file or directory").
    fn read(&self, path: &str) -> Result<String, String>;
    /// The paths matching a glob pattern (`*`, `?`, `[…]`), sorted; none is not an error.
    fn glob(&self, pattern: &str) -> Vec<String>;
}

/// Files held in memory, for tests and for text already read.
#[derive(Clone, Debug, Default)]
pub struct MemFiles(pub std::collections::BTreeMap<String, String>);

impl MemFiles {
    /// One file.
    pub fn one(path: &str, text: &str) -> MemFiles {
        let mut m = MemFiles::default();
        m.0.insert(path.to_string(), text.to_string());
        m
    }
}

impl Files for MemFiles {
    fn read(&self, path: &str) -> Result<String, String> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| "No such file or directory".to_string())
    }

    fn glob(&self, pattern: &str) -> Vec<String> {
        self.0
            .keys()
            .filter(|k| glob_match(pattern.as_bytes(), k.as_bytes()))
            .cloned()
            .collect()
    }
}

/// Shell-style matching of `*`, `?` and `[…]` (with `!` or `^` negation and ranges); `*`
/// and `?` do not match `/`.
pub fn glob_match(pat: &[u8], name: &[u8]) -> bool {
    match pat.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len())
            .take_while(|&i| i == 0 || name[i - 1] != b'/')
            .any(|i| glob_match(rest, &name[i..])),
        Some((b'?', rest)) => {
            matches!(name.split_first(), Some((c, tail)) if *c != b'/' && glob_match(rest, tail))
        }
        Some((b'[', rest)) => match (class_match(rest, name.first()), name.split_first()) {
            (Some((true, after)), Some((_, tail))) => glob_match(after, tail),
            (Some((false, _)), _) | (_, None) => false,
            // no closing bracket: a literal '['
            (None, Some((c, tail))) => *c == b'[' && glob_match(rest, tail),
        },
        Some((c, rest)) => {
            matches!(name.split_first(), Some((n, tail)) if n == c && glob_match(rest, tail))
        }
    }
}

/// A `[…]` class (the part after `[`) against `c`: whether it matches and what follows the
/// class; `None` when the class is not closed.
fn class_match<'p>(pat: &'p [u8], c: Option<&u8>) -> Option<(bool, &'p [u8])> {
    let (negate, body) = match pat.first() {
        Some(b'!' | b'^') => (true, &pat[1..]),
        _ => (false, pat),
    };
    let end = body.iter().skip(1).position(|&b| b == b']')? + 1;
    let (set, after) = (&body[..end], &body[end + 1..]);
    let Some(&c) = c else {
        return Some((false, after));
    };
    let mut hit = false;
    let mut i = 0;
    while i < set.len() {
        if i + 2 < set.len() && set[i + 1] == b'-' {
            hit |= set[i] <= c && c <= set[i + 2];
            i += 3;
        } else {
            hit |= set[i] == c;
            i += 1;
        }
    }
    Some((hit != negate && c != b'/', after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_the_shell_does() {
        let yes = [
            (
                "/etc/keepalived/conf.d/*.conf",
                "/etc/keepalived/conf.d/web.conf",
            ),
            ("a?c", "abc"),
            ("[ab]x", "bx"),
            ("[!ab]x", "cx"),
            ("[a-c]*", "b-file"),
            ("*", ""),
        ];
        for (p, n) in yes {
            assert!(
                glob_match(p.as_bytes(), n.as_bytes()),
                "{p} should match {n}"
            );
        }
        let no = [
            ("/etc/*.conf", "/etc/sub/x.conf"),
            ("a?c", "a/c"),
            ("[ab]x", "cx"),
            ("[!ab]x", "ax"),
            ("*.conf", "x.cfg"),
        ];
        for (p, n) in no {
            assert!(
                !glob_match(p.as_bytes(), n.as_bytes()),
                "{p} should not match {n}"
            );
        }
    }

    #[test]
    fn mem_files_read_and_glob() {
        let mut f = MemFiles::one("/k/a.conf", "x");
        f.0.insert("/k/b.conf".into(), "y".into());
        f.0.insert("/k/c.txt".into(), "z".into());
        assert_eq!(f.glob("/k/*.conf"), vec!["/k/a.conf", "/k/b.conf"]);
        assert_eq!(f.read("/k/c.txt").unwrap(), "z");
        assert!(f.read("/k/none").is_err());
    }
}

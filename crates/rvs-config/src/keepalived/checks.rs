//! The checker blocks of a `real_server`: TCP_CHECK, HTTP_GET, SSL_GET, SMTP_CHECK, DNS_CHECK,
//! UDP_CHECK, MISC_CHECK and PING_CHECK, with keepalived's per-checker defaults and the
//! inheritance real server → checker (`check_data.c`: a value not given on the checker is the
//! real server's, itself the virtual server's, else the checker's own default).

use std::net::IpAddr;
use std::time::Duration;

use super::parser::Stmt;
use super::values::{arg, bad, command, ip, opt_bool, port, timer, uint1, After};
use super::Sink;
use crate::spec::{
    Check, CheckKind, ConfigError, DnsType, HttpCheck, HttpProtocol, MiscCheck, Timing, UdpCheck,
    UrlCheck,
};

/// Checkers rvs runs.
pub const CHECKERS: &[&str] = &[
    "TCP_CHECK",
    "HTTP_GET",
    "SSL_GET",
    "SMTP_CHECK",
    "DNS_CHECK",
    "UDP_CHECK",
    "MISC_CHECK",
    "PING_CHECK",
];

/// Checkers keepalived has and rvs does not run (reported as ignored).
pub const IGNORED_CHECKERS: &[&str] = &["FILE_CHECK", "BFD_CHECK"];

/// What a checker inherits from its real server (already resolved against the virtual server).
#[derive(Clone, Debug)]
pub struct Inherit {
    /// the real server's address and port
    pub addr: IpAddr,
    /// its port
    pub port: u16,
    /// `delay_loop` (always set: the virtual server's default is 60 s)
    pub delay_loop: Duration,
    /// `connect_timeout` (always set: the virtual server's default is 5 s)
    pub connect_timeout: Duration,
    /// `retry`, if given on the real or virtual server
    pub retry: Option<u32>,
    /// `delay_before_retry`, if given
    pub delay_before_retry: Option<Duration>,
    /// `warmup`, if given
    pub warmup: Option<Duration>,
    /// `virtualhost` of the real server, else of the virtual server
    pub virtualhost: Option<String>,
}

/// Options every checker may have.
#[derive(Default)]
struct Common {
    connect_ip: Option<IpAddr>,
    connect_port: Option<u16>,
    bindto: Option<IpAddr>,
    bind_port: Option<u16>,
    bind_if: Option<String>,
    fwmark: Option<u32>,
    connect_timeout: Option<Duration>,
    retry: Option<u32>,
    delay_before_retry: Option<Duration>,
    warmup: Option<Duration>,
    delay_loop: Option<Duration>,
    alpha: Option<bool>,
    log_all_failures: bool,
}

const MICRO: Duration = Duration::from_micros(1);

impl Common {
    /// Take `s` if it is a common option (`conn`: the connection options apply); `Ok(false)`
    /// when it is not one.
    fn take(&mut self, s: &Stmt, conn: bool) -> Result<bool, ConfigError> {
        let conn_kw = matches!(
            s.name(),
            "connect_ip"
                | "connect_port"
                | "bindto"
                | "bind_port"
                | "bind_if"
                | "fwmark"
                | "connect_timeout"
        );
        if conn_kw && !conn {
            return Ok(false);
        }
        match s.name() {
            "connect_ip" => self.connect_ip = Some(ip(s.name(), arg(s, 0, "address")?)?),
            "connect_port" => self.connect_port = Some(port(s.name(), arg(s, 0, "port")?)?),
            "bindto" => self.bindto = Some(ip(s.name(), arg(s, 0, "address")?)?),
            "bind_port" => self.bind_port = Some(port(s.name(), arg(s, 0, "port")?)?),
            "bind_if" => self.bind_if = Some(arg(s, 0, "interface")?.text.clone()),
            "fwmark" => self.fwmark = Some(uint1(s, 0, u64::from(u32::MAX))? as u32),
            "connect_timeout" => self.connect_timeout = Some(timer(s, MICRO)?),
            "retry" => self.retry = Some(uint1(s, 0, u64::from(u32::MAX))? as u32),
            "delay_before_retry" => self.delay_before_retry = Some(timer(s, Duration::ZERO)?),
            "warmup" => self.warmup = Some(timer(s, Duration::ZERO)?),
            "delay_loop" => self.delay_loop = Some(timer(s, MICRO)?),
            "alpha" => self.alpha = Some(opt_bool(s)?),
            "log_all_failures" => self.log_all_failures = opt_bool(s)?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// A checker block: the check and whether it starts down (`alpha`), or `None` when the
/// checker is dropped (an HTTP check without URLs, as keepalived does).
pub fn checker(
    s: &Stmt,
    inh: &Inherit,
    sink: &mut Sink,
) -> Result<Option<(Check, Option<bool>)>, ConfigError> {
    let kind_name = s.name();
    let body = s.block.as_deref().unwrap_or(&[]);
    let mut common = Common::default();
    let conn = kind_name != "MISC_CHECK";
    let mut kind = Kind::new(kind_name);
    for st in body {
        if common.take(st, conn)? || kind.take(st, &mut common, sink)? {
            continue;
        }
        sink.unknown(kind_name, st);
    }
    let Some(kind) = kind.finish(s, sink)? else {
        return Ok(None);
    };
    let delay_loop = common.delay_loop.unwrap_or(inh.delay_loop);
    let default_dbr = match kind {
        CheckKind::Http(_) => Duration::from_secs(3),
        CheckKind::Dns { .. } => delay_loop,
        _ => Duration::from_secs(1),
    };
    let default_retry = match kind {
        CheckKind::Dns { .. } => 3,
        CheckKind::Misc(_) => 0,
        _ => 1,
    };
    let timing = Timing {
        delay_loop,
        connect_timeout: common.connect_timeout.unwrap_or(inh.connect_timeout),
        retry: common.retry.or(inh.retry).unwrap_or(default_retry),
        delay_before_retry: common
            .delay_before_retry
            .or(inh.delay_before_retry)
            .unwrap_or(default_dbr),
        warmup: common.warmup.or(inh.warmup).unwrap_or(delay_loop),
    };
    let kind = resolve_kind(kind, inh, &timing);
    let connect = (common.connect_ip.is_some() || common.connect_port.is_some()).then(|| {
        (
            common.connect_ip.unwrap_or(inh.addr),
            common.connect_port.unwrap_or(inh.port),
        )
    });
    let check = Check {
        loc: s.kw.loc.clone(),
        kind,
        timing,
        connect,
        bind_addr: common.bindto,
        bind_port: common.bind_port,
        bind_if: common.bind_if,
        fwmark: common.fwmark,
        log_all_failures: common.log_all_failures,
    };
    Ok(Some((check, common.alpha)))
}

/// Defaults that depend on the resolved timing or the real server.
fn resolve_kind(kind: CheckKind, inh: &Inherit, timing: &Timing) -> CheckKind {
    match kind {
        CheckKind::Http(mut h) => {
            h.virtualhost = h.virtualhost.or_else(|| inh.virtualhost.clone());
            CheckKind::Http(h)
        }
        CheckKind::Misc(mut m) => {
            if m.timeout.is_zero() {
                m.timeout = timing.delay_loop;
            }
            CheckKind::Misc(m)
        }
        k => k,
    }
}

/// A checker's own options while its block is read.
enum Kind {
    Tcp,
    Ping,
    Http(HttpCheck),
    Smtp(Option<String>),
    Dns(Option<DnsType>, Option<String>),
    Udp(UdpCheck),
    Misc(Option<crate::spec::Command>, MiscCheck),
}

impl Kind {
    fn new(name: &str) -> Kind {
        match name {
            "HTTP_GET" | "SSL_GET" => Kind::Http(HttpCheck {
                tls: name == "SSL_GET",
                urls: Vec::new(),
                protocol: HttpProtocol::Http10,
                virtualhost: None,
                method: "GET".to_string(),
                sni: false,
                sni_name: None,
                tls_close_notify: false,
            }),
            "SMTP_CHECK" => Kind::Smtp(None),
            "DNS_CHECK" => Kind::Dns(None, None),
            "UDP_CHECK" => Kind::Udp(UdpCheck {
                payload: Vec::new(),
                require_reply: None,
                min_reply_length: 0,
                max_reply_length: 255,
            }),
            "MISC_CHECK" => Kind::Misc(
                None,
                MiscCheck {
                    command: crate::spec::Command {
                        argv: Vec::new(),
                        shell: false,
                        user: None,
                        group: None,
                    },
                    timeout: Duration::ZERO,
                    dynamic: false,
                },
            ),
            "PING_CHECK" => Kind::Ping,
            _ => Kind::Tcp,
        }
    }

    /// Take a checker-specific option; `Ok(false)` when `s` is not one.
    fn take(
        &mut self,
        s: &Stmt,
        common: &mut Common,
        sink: &mut Sink,
    ) -> Result<bool, ConfigError> {
        match self {
            Kind::Tcp | Kind::Ping => Ok(false),
            Kind::Http(h) => http_option(h, s, common, sink),
            Kind::Smtp(helo) => match s.name() {
                "helo_name" => {
                    *helo = Some(arg(s, 0, "name")?.text.clone());
                    Ok(true)
                }
                "host" => {
                    sink.ignored(s, "the SMTP_CHECK host block is obsolete; use connect_ip");
                    Ok(true)
                }
                _ => Ok(false),
            },
            Kind::Dns(t, n) => match s.name() {
                "type" => {
                    *t = Some(dns_type(s)?);
                    Ok(true)
                }
                "name" => {
                    *n = Some(arg(s, 0, "name")?.text.clone());
                    Ok(true)
                }
                _ => Ok(false),
            },
            Kind::Udp(u) => udp_option(u, s),
            Kind::Misc(cmd, m) => misc_option(cmd, m, s, sink),
        }
    }

    fn finish(self, s: &Stmt, sink: &mut Sink) -> Result<Option<CheckKind>, ConfigError> {
        Ok(Some(match self {
            Kind::Tcp => CheckKind::Tcp,
            Kind::Ping => CheckKind::Ping,
            Kind::Http(h) if h.urls.is_empty() => {
                sink.notice(
                    &s.kw.loc,
                    format!("{}: no url given, checker ignored", s.name()),
                );
                return Ok(None);
            }
            Kind::Http(h) => CheckKind::Http(h),
            Kind::Smtp(helo) => CheckKind::Smtp {
                helo_name: helo.unwrap_or_else(|| "smtpchecker.keepalived.org".to_string()),
            },
            Kind::Dns(t, n) => CheckKind::Dns {
                qtype: t.unwrap_or(DnsType::Soa),
                name: n.unwrap_or_else(|| ".".to_string()),
            },
            Kind::Udp(u) => CheckKind::Udp(u),
            Kind::Misc(None, _) => {
                return Err(ConfigError::new(
                    s.kw.loc.clone(),
                    "MISC_CHECK: misc_path is missing (the command to run)",
                ))
            }
            Kind::Misc(Some(cmd), mut m) => {
                m.command.argv = cmd.argv;
                CheckKind::Misc(m)
            }
        }))
    }
}

fn http_option(
    h: &mut HttpCheck,
    s: &Stmt,
    common: &mut Common,
    sink: &mut Sink,
) -> Result<bool, ConfigError> {
    match s.name() {
        "url" => {
            let (u, close_notify) = url(s, sink)?;
            h.urls.push(u);
            h.tls_close_notify |= close_notify;
        }
        "tls_compliant" => h.tls_close_notify = true,
        "http_protocol" => {
            let t = arg(s, 0, "version")?;
            h.protocol = match t.text.as_str() {
                "1.0" => HttpProtocol::Http10,
                "1.0C" | "1.0c" => HttpProtocol::Http10Close,
                "1.1" => HttpProtocol::Http11,
                _ => return Err(bad(s.name(), t, "must be 1.0, 1.0C or 1.1")),
            }
        }
        "virtualhost" => h.virtualhost = Some(arg(s, 0, "host name")?.text.clone()),
        "enable_sni" => h.sni = opt_bool(s)?,
        "sni_name" => h.sni_name = Some(arg(s, 0, "name")?.text.clone()),
        "nb_get_retry" => {
            common.retry = Some(uint1(s, 0, u64::from(u32::MAX))? as u32);
            sink.notice(
                &s.kw.loc,
                "nb_get_retry is deprecated, read as retry".to_string(),
            );
        }
        // keepalived without it checks one URL per delay_loop while recovering; each rvs probe
        // asks every URL at once, which is what fast_recovery asks for
        "fast_recovery" => {
            opt_bool(s)?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// A `url { }` block, and whether it asked for `tls_compliant` (a flag of the whole SSL_GET).
fn url(s: &Stmt, sink: &mut Sink) -> Result<(UrlCheck, bool), ConfigError> {
    let mut path = None;
    let mut flags = String::new();
    let mut close_notify = false;
    let mut u = UrlCheck {
        path: String::new(),
        digest: None,
        status: Vec::new(),
        virtualhost: None,
        regex: None,
        regex_no_match: false,
        regex_min_offset: 0,
        regex_max_offset: None,
        regex_first_line: false,
    };
    for st in s.block.as_deref().unwrap_or(&[]) {
        match st.name() {
            "path" => path = Some(arg(st, 0, "path")?.text.clone()),
            "digest" => u.digest = Some(digest(st)?),
            "status_code" => {
                arg(st, 0, "status code")?;
                for t in &st.args {
                    u.status.push(status_range(&t.text).ok_or_else(|| {
                        bad(
                            st.name(),
                            t,
                            "must be a status code N or range N-M within 100-599",
                        )
                    })?);
                }
            }
            "virtualhost" => u.virtualhost = Some(arg(st, 0, "host name")?.text.clone()),
            "regex" => u.regex = Some(arg(st, 0, "regular expression")?.text.clone()),
            "regex_no_match" => u.regex_no_match = true,
            "regex_options" => regex_options(st, &mut flags, &mut u.regex_first_line, sink)?,
            // PCRE2's JIT stack sizes: rvs's regex engine (no backtracking) has no such stack
            "regex_stack" => {
                uint1(st, 0, u64::MAX)?;
            }
            "regex_min_offset" => u.regex_min_offset = uint1(st, 0, u64::from(u32::MAX))? as usize,
            "regex_max_offset" => {
                u.regex_max_offset = Some(uint1(st, 0, u64::from(u32::MAX))? as usize)
            }
            "tls_compliant" => close_notify = true,
            _ => sink.unknown("url", st),
        }
    }
    u.path = path.ok_or_else(|| ConfigError::new(s.kw.loc.clone(), "url: path is missing"))?;
    if u.status.is_empty() {
        u.status.push((200, 299));
    }
    if let Some(re) = u.regex.as_mut().filter(|_| !flags.is_empty()) {
        let mut on: String = flags.chars().filter(|&c| c != '~').collect();
        if flags.contains('~') && !on.contains('u') {
            on.push_str("-u");
        }
        *re = format!("(?{on}){re}");
    }
    Ok((u, close_notify))
}

/// keepalived's `regex_options` (PCRE2 compile options) as the regex's inline flags. Options
/// that only tune PCRE2's engine change nothing that matches and are taken as they are;
/// those that change PCRE2's pattern syntax have no counterpart and are reported.
fn regex_options(
    st: &Stmt,
    flags: &mut String,
    first_line: &mut bool,
    sink: &mut Sink,
) -> Result<(), ConfigError> {
    arg(st, 0, "option")?;
    for t in &st.args {
        match t.text.as_str() {
            "caseless" => flags.push('i'),
            "multiline" => flags.push('m'),
            "dotall" => flags.push('s'),
            "extended" | "extended_more" => flags.push('x'),
            "ungreedy" => flags.push('U'),
            "utf" | "ucp" => flags.push('u'),
            // no Unicode classes: marked here, written as `-u` after the positive flags
            "never_utf" | "never_ucp" => flags.push('~'),
            "firstline" => *first_line = true,
            // `$` only at the very end: what rvs's `$` does anyway
            "dollar_endonly" | "auto_callout" | "dupnames" | "no_auto_capture"
            | "no_auto_possess" | "no_dotstar_anchor" | "no_start_optimize"
            | "use_offset_limit" => {}
            "allow_empty_class" | "alt_bsux" | "alt_circumflex" | "alt_verbnames"
            | "match_unset_backref" | "never_backslash_c" => sink.notice(
                &t.loc,
                format!(
                    "regex_options {}: a PCRE2 syntax variant; the pattern is read with the standard syntax",
                    t.text
                ),
            ),
            _ => return Err(bad("regex_options", t, "is not a PCRE2 option keepalived knows")),
        }
    }
    Ok(())
}

fn digest(s: &Stmt) -> Result<String, ConfigError> {
    let t = arg(s, 0, "MD5 sum")?;
    if t.text.len() != 32 || !t.text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(
            s.name(),
            t,
            "must be 32 hexadecimal digits (an MD5 sum)",
        ));
    }
    Ok(t.text.to_ascii_lowercase())
}

fn status_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b): (u16, u16) = (a.parse().ok()?, b.parse().ok()?);
    ((100..=599).contains(&a) && (100..=599).contains(&b) && a <= b).then_some((a, b))
}

fn dns_type(s: &Stmt) -> Result<DnsType, ConfigError> {
    let t = arg(s, 0, "record type")?;
    DnsType::from_name(&t.text)
        .ok_or_else(|| bad(s.name(), t, "must be A, NS, CNAME, SOA, MX, TXT or AAAA"))
}

fn udp_option(u: &mut UdpCheck, s: &Stmt) -> Result<bool, ConfigError> {
    match s.name() {
        "payload" => {
            let t = arg(s, 0, "hexadecimal bytes")?;
            let pat = hex_pattern(&t.text)
                .filter(|p| p.iter().all(|&(_, m)| m == 0xff))
                .ok_or_else(|| bad(s.name(), t, "must be an even number of hexadecimal digits"))?;
            u.payload = pat.into_iter().map(|(v, _)| v).collect();
        }
        "require_reply" => {
            u.require_reply = Some(match s.args.first() {
                None => None,
                Some(t) => Some(hex_pattern(&t.text).ok_or_else(|| {
                    bad(
                        s.name(),
                        t,
                        "must be an even number of hexadecimal digits or x",
                    )
                })?),
            })
        }
        "min_reply_length" => u.min_reply_length = uint1(s, 0, 65535)? as usize,
        "max_reply_length" => u.max_reply_length = uint1(s, 0, 65535)? as usize,
        _ => return Ok(false),
    }
    Ok(true)
}

/// Hex bytes where an `x` nibble matches anything: (value, mask) per byte.
fn hex_pattern(s: &str) -> Option<Vec<(u8, u8)>> {
    let b = s.as_bytes();
    if b.is_empty() || !b.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| -> Option<(u8, u8)> {
        match c {
            b'x' | b'X' => Some((0, 0)),
            _ => Some(((c as char).to_digit(16)? as u8, 0xf)),
        }
    };
    b.chunks(2)
        .map(|p| {
            let (hv, hm) = nibble(p[0])?;
            let (lv, lm) = nibble(p[1])?;
            Some(((hv << 4) | lv, (hm << 4) | lm))
        })
        .collect()
}

fn misc_option(
    cmd: &mut Option<crate::spec::Command>,
    m: &mut MiscCheck,
    s: &Stmt,
    sink: &mut Sink,
) -> Result<bool, ConfigError> {
    match s.name() {
        "misc_path" => *cmd = Some(command(s, After::Nothing, sink)?),
        "misc_timeout" => {
            // whole seconds (keepalived: read_unsigned up to UINT_MAX / TIMER_HZ)
            m.timeout = Duration::from_secs(uint1(s, 0, u64::from(u32::MAX) / 1_000_000)?)
        }
        "misc_dynamic" => m.dynamic = opt_bool(s)?,
        "user" => {
            m.command.user = Some(arg(s, 0, "user name")?.text.clone());
            m.command.group = s.args.get(1).map(|g| g.text.clone());
        }
        _ => return Ok(false),
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges_are_checked() {
        assert_eq!(status_range("200"), Some((200, 200)));
        assert_eq!(status_range("300-399"), Some((300, 399)));
        for bad in ["99", "600", "300-200", "2x", "200-", ""] {
            assert_eq!(status_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn hex_patterns_with_wildcards() {
        assert_eq!(hex_pattern("0aFf"), Some(vec![(0x0a, 0xff), (0xff, 0xff)]));
        assert_eq!(hex_pattern("x1"), Some(vec![(0x01, 0x0f)]));
        assert_eq!(hex_pattern("abc"), None);
        assert_eq!(hex_pattern("zz"), None);
    }
}

//! ldirectord.cf files read into the rules the equivalent ipvsadm commands build (each
//! `fixtures/ldirectord/X.cf` beside `X.ipvsadm`, the commands ldirectord runs), their
//! checks and notices, and one located error per kind of malformed line.

use std::net::IpAddr;
use std::time::Duration;

use rvs_config::ipvsadm::{parse, Command, NoResolve};
use rvs_config::ldirectord::read;
use rvs_config::spec::{CheckKind, Config, DnsType, HttpProtocol, MemFiles, Timing};
use rvs_core::model::{DestConf, ServiceConf, ServiceKey};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ldirectord");

/// A service as ipvsadm commands build it: key, settings, real servers, fallback server.
type Rules = (ServiceKey, ServiceConf, Vec<DestConf>, Option<DestConf>);

fn ipvsadm(line: &str) -> Command {
    let words: Vec<&str> = line.split_whitespace().collect();
    parse("ipvsadm", &words, &NoResolve).unwrap_or_else(|e| panic!("{line}: {e:?}"))
}

/// The rules of `X.ipvsadm`; a `# fallback: -a …` line gives the service's fallback server.
fn rules_of(name: &str) -> Vec<Rules> {
    let text = std::fs::read_to_string(format!("{DIR}/{name}.ipvsadm")).unwrap();
    let mut out: Vec<Rules> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (fallback, cmd) = match line.strip_prefix("# fallback:") {
            Some(rest) => (true, rest),
            None if line.starts_with('#') => continue,
            None => (false, line),
        };
        match ipvsadm(cmd) {
            Command::AddService { key, conf } => out.push((key, conf, vec![], None)),
            Command::AddDest { key, dest, .. } => {
                let svc = out.iter_mut().find(|s| s.0 == key).expect("-A before -a");
                if fallback {
                    svc.3 = Some(dest);
                } else {
                    svc.2.push(dest);
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}

fn read_fixture(name: &str) -> Config {
    let path = format!("/etc/ha.d/{name}.cf");
    let text = std::fs::read_to_string(format!("{DIR}/{name}.cf")).unwrap();
    read(&path, &MemFiles::one(&path, &text)).unwrap_or_else(|e| panic!("{e}"))
}

/// Read `X.cf`, assert it builds exactly the rules of `X.ipvsadm`, and return it.
fn equivalent(name: &str) -> Config {
    let cfg = read_fixture(name);
    let got: Vec<Rules> = cfg
        .services
        .iter()
        .map(|s| {
            assert_eq!(s.keys.len(), 1);
            let reals = s.reals.iter().map(|r| r.dest).collect();
            (
                s.keys[0],
                s.conf.clone(),
                reals,
                s.sorry.as_ref().map(|f| f.dest),
            )
        })
        .collect();
    assert_eq!(got, rules_of(name), "{name}.cf against {name}.ipvsadm");
    cfg
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn timing(every: u64, timeout: u64, retry: u32, interval: u64) -> Timing {
    Timing {
        delay_loop: secs(every),
        connect_timeout: secs(timeout),
        retry,
        delay_before_retry: secs(interval),
        warmup: Duration::ZERO,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn notices(cfg: &Config) -> Vec<String> {
    cfg.notices
        .iter()
        .map(|n| format!("{}: {}", n.loc, n.msg))
        .collect()
}

#[test]
fn web_farm_builds_the_ipvsadm_rules_with_http_checks() {
    let cfg = equivalent("web");
    let http = &cfg.services[0];
    // section quiescent = yes overrides the global no; the 443 section says no again
    assert!(http.reals.iter().all(|r| r.inhibit_on_failure && r.alpha));
    assert!(cfg.services[1].reals.iter().all(|r| !r.inhibit_on_failure));
    assert_eq!((http.quorum, http.hysteresis), (1, 0));
    let sorry = http.sorry.as_ref().unwrap();
    assert!(!sorry.inhibit);
    let cmd = sorry.command.as_ref().unwrap();
    assert_eq!(
        (cmd.argv.clone(), cmd.shell),
        (vec!["/usr/local/bin/fallback".to_string()], true)
    );

    // negotiate http: failurecount 3 → retry 2 one checkinterval (5 s, the section's 7 is
    // ignored with fork = no) apart, negotiatetimeout 12
    let c = &http.reals[0].checks;
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].timing, timing(5, 12, 2, 5));
    assert_eq!(c[0].connect, None);
    let CheckKind::Http(h) = &c[0].kind else {
        panic!("{:?}", c[0].kind)
    };
    assert!(!h.tls);
    assert_eq!(
        (h.method.as_str(), h.protocol),
        ("HEAD", HttpProtocol::Http11)
    );
    assert_eq!(h.virtualhost.as_deref(), Some("www.example.com"));
    assert_eq!(h.urls.len(), 1);
    assert_eq!(h.urls[0].path, "/health");
    assert_eq!(h.urls[0].regex.as_deref(), Some("alive"));
    assert_eq!(h.urls[0].status, vec![(200, 299)]);
    // the per-server request/receive pair
    let CheckKind::Http(h) = &http.reals[2].checks[0].kind else {
        panic!()
    };
    assert_eq!(
        (h.urls[0].path.as_str(), h.urls[0].regex.as_deref()),
        ("/ready", Some("OK"))
    );
    // a real without a port: the check of service http goes to the table's port
    assert_eq!(http.reals[4].checks[0].connect, Some((ip("10.0.0.9"), 80)));

    // checktype = 4 on https: a connect check every 5 s (checktimeout 3) and an HTTPS check
    // every 25 s retried every 5 s
    let https = &cfg.services[1];
    let c = &https.reals[0].checks;
    assert_eq!(c.len(), 2);
    assert_eq!(
        (c[0].kind.clone(), c[0].timing),
        (CheckKind::Tcp, timing(5, 3, 2, 5))
    );
    assert_eq!(c[1].timing, timing(25, 12, 2, 5));
    let CheckKind::Http(h) = &c[1].kind else {
        panic!()
    };
    assert!(h.tls);
    assert_eq!(h.urls[0].path, "/");
    // an absolute URL names the server to ask
    let c = &https.reals[2].checks[1];
    assert_eq!(c.connect, Some((ip("10.0.0.30"), 8443)));
    let CheckKind::Http(h) = &c.kind else {
        panic!()
    };
    assert_eq!(
        (h.urls[0].path.as_str(), h.urls[0].regex.as_deref()),
        ("/probe", Some("up"))
    );
    // the section's fallback (no port: the virtual port) wins over the global one; the
    // global fallbackcommand still applies
    assert!(https.sorry.as_ref().unwrap().command.is_some());

    let f = "/etc/ha.d/web.cf";
    let expected: Vec<String> = [
        "6:1: autoreload: ignored (rvsd re-reads its files on SIGHUP)",
        "7:1: callback: ignored",
        "8:1: logfile: ignored (rvsd logs to its standard error)",
        "9:1: emailalert: ignored (rvs sends no e-mail)",
        "10:1: emailalertfrom: ignored (rvs sends no e-mail)",
        "11:1: emailalertfreq: ignored (rvs sends no e-mail)",
        "12:1: emailalertstatus: ignored (rvs sends no e-mail)",
        "13:1: smtp: ignored (rvs sends no e-mail)",
        "14:1: execute: ignored (rvsd does not start other ldirectord instances)",
        "15:1: supervised: ignored (rvsd runs in the foreground)",
        "16:1: fork: rvs checks every server on its own timer",
        "18:1: readdquiescent: ignored (the file owns the servers it declares)",
        "19:1: cleanstop: ignored",
        "20:1: maintenancedir: ignored (rvs does not force servers down from files)",
        "21:1: checkcount: deprecated (see failurecount); ignored",
        "39:2: checkinterval: ignored in a virtual section when fork = no (as ldirectord does)",
    ]
    .iter()
    .map(|s| format!("{f}:{s}"))
    .collect();
    assert_eq!(notices(&cfg), expected);
}

#[test]
fn check_types_and_services_map_to_checks() {
    let cfg = equivalent("checks");
    let check = |i: usize| cfg.services[i].reals[0].checks.clone();
    // default timers: checkinterval 10, failurecount 1; checktimeout falls back to the
    // global negotiatetimeout (20), as ldirectord's ld_setup does
    let c = check(0);
    assert_eq!(
        c[0].kind,
        CheckKind::Smtp {
            helo_name: "localhost.localdomain".into()
        }
    );
    assert_eq!(c[0].timing, timing(10, 20, 0, 10));
    let c = check(1);
    assert_eq!(
        c[0].kind,
        CheckKind::Dns {
            qtype: DnsType::A,
            name: "www.example.com".into()
        }
    );
    let c = check(2);
    assert_eq!(
        c[0].kind,
        CheckKind::Send {
            request: b"PING\n".to_vec(),
            receive: Some("PONG".into())
        }
    );
    // ftp has no checker in rvs: a TCP connect instead
    assert_eq!(check(3)[0].kind, CheckKind::Tcp);
    let c = check(4);
    assert_eq!(
        (c[0].kind.clone(), c[0].connect),
        (CheckKind::Tcp, Some((ip("10.1.1.1"), 2222)))
    );
    assert_eq!(c[0].timing, timing(10, 2, 0, 10));
    // external: ldirectord's four arguments, no shell, checktimeout as the timeout
    let c = check(5);
    let CheckKind::Misc(m) = &c[0].kind else {
        panic!()
    };
    assert_eq!(
        m.command.argv,
        [
            "/usr/local/bin/check web",
            "10.1.0.1",
            "1000",
            "10.1.1.1",
            "1000"
        ]
    );
    assert!(!m.command.shell && !m.dynamic);
    assert_eq!((m.timeout, c[0].timing.retry), (secs(20), 1));
    let CheckKind::Misc(m) = &check(6)[0].kind else {
        panic!()
    };
    assert_eq!(
        m.command.argv,
        [
            "/usr/local/bin/check.pl",
            "10.1.0.1",
            "1001",
            "10.1.1.1",
            "0"
        ]
    );
    assert_eq!(check(7)[0].kind, CheckKind::Ping);
    assert_eq!(check(8)[0].kind, CheckKind::On);
    assert_eq!(check(9)[0].kind, CheckKind::Off);
    // connect on UDP is a ping; so is the stand-in for radius
    assert_eq!(check(10)[0].kind, CheckKind::Ping);
    assert_eq!(check(11)[0].kind, CheckKind::Ping);
    // checktype = 0: negotiate only (pop: the connect stand-in)
    let c = check(12);
    assert_eq!((c.len(), c[0].kind.clone()), (1, CheckKind::Tcp));
    // checktype = 2 on submission: connect every 10 s, SMTP every 30 s
    let c = check(13);
    assert_eq!(c.len(), 2);
    assert_eq!(
        (c[0].kind.clone(), c[0].timing.delay_loop),
        (CheckKind::Tcp, secs(10))
    );
    assert!(matches!(c[1].kind, CheckKind::Smtp { .. }));
    assert_eq!(
        (c[1].timing.delay_loop, c[1].timing.delay_before_retry),
        (secs(30), secs(10))
    );

    let f = "/etc/ha.d/checks.cf";
    let expected: Vec<String> = [
        "5:11: receive: not checked for dns (rvs checks that the A query is answered)",
        "15:11: service ftp: rvs has no ftp check; a TCP connect check is used",
        "17:5: login: ignored (no check of rvs uses it)",
        "18:5: passwd: ignored (no check of rvs uses it)",
        "29:11: checktype external-perl: the checkcommand is run as an external program",
        "46:11: service radius: rvs has no radius check; an ICMP ping check is used",
        "49:5: secret: ignored (no check of rvs uses it)",
        "50:11: service pop: rvs has no pop check; a TCP connect check is used",
    ]
    .iter()
    .map(|s| format!("{f}:{s}"))
    .collect();
    assert_eq!(notices(&cfg), expected);
}

#[test]
fn ipv6_fwmark_and_udp_sections() {
    let cfg = equivalent("six");
    // service none: always up
    assert_eq!(cfg.services[0].reals[0].checks[0].kind, CheckKind::On);
    // fwmark with service http: the real without a port is checked on port 80
    let c = &cfg.services[1].reals[0].checks[0];
    assert!(matches!(c.kind, CheckKind::Http(_)));
    assert_eq!(c.connect, Some((ip("10.2.0.1"), 80)));
    assert_eq!(cfg.services[1].reals[1].checks[0].connect, None);
    assert_eq!(cfg.services[2].reals[0].checks[0].kind, CheckKind::Tcp);
    // the global fallback6 is for the IPv6 address service only, never for fwmarks; there
    // is no IPv4 one
    assert!(cfg.services[0].sorry.is_some() && cfg.services[2].sorry.is_none());
    assert!(cfg.services[1].sorry.is_none() && cfg.services[3].sorry.is_none());
    let f = "/etc/ha.d/six.cf";
    let expected: Vec<String> = [
        "16:5: ops: ignored (one-packet scheduling is for UDP services only)",
        "24:12: real: duplicate server 10.2.1.1:5353 ignored",
    ]
    .iter()
    .map(|s| format!("{f}:{s}"))
    .collect();
    assert_eq!(notices(&cfg), expected);
}

/// Each kind of malformed line, with its exact located message.
#[test]
fn malformed_lines_are_refused_where_they_are() {
    let v = "virtual = 10.0.0.1:80\n";
    let cases: Vec<(String, &str)> = vec![
        ("frobnicate = 1\n".into(), "1:1: unknown directive \"frobnicate\""),
        ("checkinterval 5\n".into(), "1:15: checkinterval: expected \"=\" after the key"),
        ("checktimeout = 0\n".into(), "1:16: checktimeout: \"0\" is not a positive whole number"),
        ("failurecount = x\n".into(), "1:16: failurecount: \"x\" is not a positive whole number"),
        ("quiescent = maybe\n".into(), "1:13: quiescent: must be yes or no, not \"maybe\""),
        ("logfile = /var/log/x\n".into(), "1:11: logfile: the value must be in double quotes"),
        ("timeout = 5\n".into(), "1:1: timeout: deprecated in favour of checktimeout and negotiatetimeout"),
        ("    real = 10.0.0.2:80 gate\n".into(), "1:1: indented line outside a virtual section (a blank or unindented line ends a section)"),
        (format!("{v}    real = 10.0.0.2:80 gate\n\n    scheduler = rr\n"), "4:1: indented line outside a virtual section (a blank or unindented line ends a section)"),
        ("virtual = 10.0.0.1\n".into(), "1:11: virtual: expected address:port or a firewall mark, not \"10.0.0.1\""),
        ("virtual = www.example.com:80\n".into(), "1:11: virtual: \"www.example.com\" is not a numeric address (rvs does not resolve host names)"),
        ("virtual = 10.0.0.1:nosuchport\n".into(), "1:20: virtual: invalid port \"nosuchport\" (a number, or a service name such as http)"),
        ("virtual = [2001:db8::1]:80\n".into(), "1:11: virtual: [2001:db8::1] is an IPv6 address; use the \"6\" form of the directive"),
        ("virtual = 0\n".into(), "1:11: virtual: invalid firewall mark \"0\""),
        (format!("{v}    real = 10.0.0.2:80 route\n"), "2:24: forward method must be gate, masq or ipip, not \"route\""),
        (format!("{v}    real = 10.0.0.2:80\n"), "2:12: real: the forward method (gate, masq or ipip) is missing"),
        (format!("{v}    real = 10.0.0.2:80 masq 70000\n"), "2:29: real weight: \"70000\" is not a number from 0 to 65535"),
        (format!("{v}    real = 10.0.0.2:80 masq 1 \"/x\"\n"), "2:31: real: a request string needs a receive string"),
        (format!("{v}    real = 10.0.0.2:80 masq 1 \"/x\", \"ok\n"), "2:37: real: a string without its closing quote"),
        (format!("{v}    real = 10.0.0.2:80 masq 1 l:9 u:5\n"), "2:12: real: lower threshold 9 is above the upper threshold 5"),
        (format!("{v}    real = 10.0.0.2:80 masq 1 x:5\n"), "2:31: real: unexpected \"x:5\""),
        (format!("{v}    real = 10.0.0.9->10.0.0.2 gate\n"), "2:12: real: invalid range 10.0.0.9->10.0.0.2: the first address is above the last"),
        (format!("{v}    real6 = [2001:db8::2]:80 gate\n"), "2:5: cannot use \"real6\" here; use \"real\""),
        ("virtual6 = [2001:db8::1]:80\n    real6 = [2001:db8::2]->[2001:db8::3] gate\n".into(), "2:13: real6: an address range, which ldirectord refuses for IPv6 (it takes ranges in real lines only)"),
        (format!("{v}    checktype = sometimes\n"), "2:17: checktype must be connect, negotiate, on, off, ping, external, external-perl or a number, not \"sometimes\""),
        (format!("{v}    service = gopher\n"), "2:15: service must be dns, ftp, http, https, http_proxy, imap, imaps, ldap, ldaps, mysql, nntp, none, oracle, pgsql, pop, pops, radius, simpletcp, sip, smtp or submission, not \"gopher\""),
        (format!("{v}    protocol = fwm\n"), "2:16: protocol must be tcp or udp if the virtual service is an address and port"),
        ("virtual = 3\n    protocol = tcp\n".into(), "2:16: protocol must be fwm if the virtual service is a firewall mark"),
        (format!("{v}    scheduler = WRR\n"), "2:17: scheduler: invalid name \"WRR\" (lowercase letters a-z, at most 15)"),
        (format!("{v}    persistent = 0\n"), "2:18: persistent: \"0\" is not a number from 1 to 2678400"),
        (format!("{v}    netmask = 24\n"), "2:15: invalid netmask: dotted quad notation is required"),
        ("virtual6 = [2001:db8::1]:80\n    netmask = 255.255.0.0\n".into(), "2:15: invalid netmask: a prefix length between 1 and 128 is required"),
        (format!("{v}    httpmethod = POST\n"), "2:18: httpmethod must be GET or HEAD, not \"POST\""),
        (format!("{v}    request = health\n"), "2:15: request: the value must be in double quotes"),
        (format!("{v}    receive = \"\"\n"), "2:15: receive: the quoted value is empty"),
        (format!("{v}    checkport = 0\n"), "2:17: checkport: \"0\" is not a number from 1 to 65535"),
        (format!("{v}    ops = 1\n"), "2:11: ops: must be yes or no, not \"1\""),
        (format!("{v}    fallback = 10.0.0.99:80 direct\n"), "2:29: forward method must be gate, masq or ipip, not \"direct\""),
        (format!("{v}    schedflags = sh-weird\n"), "2:18: schedflags: invalid flag \"sh-weird\""),
        (format!("{v}    emailalertstatus = all,sometimes\n"), "2:24: emailalertstatus: invalid status \"sometimes\""),
        (format!("{v}    connecttimeout = 5\n"), "2:5: connecttimeout: deprecated in favour of negotiatetimeout"),
        (format!("{v}    colour = blue\n"), "2:5: unknown directive \"colour\" in a virtual section"),
        (format!("{v}    real = 10.0.0.2:80 gate\n{v}    real = 10.0.0.3:80 gate\n"), "3:11: duplicate virtual server TCP 10.0.0.1:80"),
    ];
    for (text, want) in cases {
        let got = read("ld.cf", &MemFiles::one("ld.cf", &text)).unwrap_err();
        assert_eq!(got.to_string(), format!("ld.cf:{want}"), "for:\n{text}");
    }
}

#[test]
fn a_missing_file_is_refused() {
    let err = read("/etc/ha.d/none.cf", &MemFiles::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/etc/ha.d/none.cf:0:0: cannot read: No such file or directory"
    );
}

#[test]
fn defaults_follow_ldirectord() {
    let cf = "virtual = 10.0.0.1:8080\n\treal = 10.0.0.2 gate\n";
    let cfg = read("ld.cf", &MemFiles::one("ld.cf", cf)).unwrap();
    let s = &cfg.services[0];
    assert_eq!(s.conf, ServiceConf::new(rvs_core::model::Family::V4, "wrr"));
    let r = &s.reals[0];
    // quiescent defaults to no (ldirectord's program, not its manual); the server keeps its
    // weight in the rule
    assert!(!r.inhibit_on_failure);
    assert_eq!(r.dest.weight, 1);
    // negotiate with service none (port 8080): always up; timers 10 s, 30 s
    assert_eq!(r.checks[0].kind, CheckKind::On);
    assert_eq!(r.checks[0].timing, timing(10, 30, 0, 10));
    assert!(s.sorry.is_none() && cfg.notices.is_empty());
}

fn read_str(cf: &str) -> Config {
    read("ld.cf", &MemFiles::one("ld.cf", cf)).unwrap_or_else(|e| panic!("{e}"))
}

/// `do_fallback_command` runs the fallback command when no real server is up, with or
/// without a fallback server: without one it becomes the quorum commands.
#[test]
fn fallbackcommand_runs_without_a_fallback_server() {
    let cf = "fallbackcommand = /usr/local/bin/sorry.sh\n\
              virtual = 10.0.0.1:80\n    real = 10.0.0.2:80 gate\n";
    let s = &read_str(cf).services[0];
    assert!(s.sorry.is_none());
    let run = |c: &Option<rvs_config::spec::Command>| {
        let c = c.as_ref().expect("a quorum command");
        assert!(c.shell);
        c.argv.join(" ")
    };
    assert_eq!(
        run(&s.quorum_down),
        "/usr/local/bin/sorry.sh start 10.0.0.1:80 tcp"
    );
    assert_eq!(
        run(&s.quorum_up),
        "/usr/local/bin/sorry.sh stop 10.0.0.1:80 tcp"
    );
    // ldirectord starts with every server down: `start` runs at start too
    assert!(s.quorum_down_at_start);
    // with a fallback server the command goes with it, not twice
    let cf = "virtual = 10.0.0.1:80\n    real = 10.0.0.2:80 gate\n    \
              fallback = 127.0.0.1:80\n    fallbackcommand = \"/bin/fb\"\n";
    let s = &read_str(cf).services[0];
    assert!(s.sorry.as_ref().unwrap().command.is_some());
    assert!(s.quorum_down.is_none() && s.quorum_up.is_none());
    assert!(!s.quorum_down_at_start);
}

/// `check_external` passes ldirectord's addresses: IPv6 ones in brackets, as
/// `ld_gethostbyname` gives them.
#[test]
fn external_check_gets_bracketed_ipv6_addresses() {
    let cf = "virtual6 = [2001:db8::1]:80\n    real6 = [2001:db8::2]:8080 masq\n    \
              checktype = external\n    checkcommand = /bin/chk\n";
    let c = &read_str(cf).services[0].reals[0].checks[0];
    let CheckKind::Misc(m) = &c.kind else {
        panic!("{:?}", c.kind)
    };
    assert_eq!(
        m.command.argv,
        ["/bin/chk", "[2001:db8::1]", "80", "[2001:db8::2]", "8080"]
    );
}
/// `ld_setup` takes `scheme://host/path` as the URL to ask only from a real server's own
/// request; a section's request is always a path on the real server.
#[test]
fn only_a_real_servers_request_is_an_absolute_url() {
    let cf = "virtual = 10.0.0.1:80\n    real = 10.0.0.2:80 masq\n    \
              real = 10.0.0.3:80 masq 1 \"http://10.0.0.9:81/up\", \"ok\"\n    \
              request = \"http://10.0.0.8/x\"\n";
    let s = &read_str(cf).services[0];
    let path = |i: usize| {
        let c = &s.reals[i].checks[0];
        let CheckKind::Http(h) = &c.kind else {
            panic!()
        };
        (h.urls[0].path.clone(), c.connect)
    };
    assert_eq!(path(0), ("/http://10.0.0.8/x".to_string(), None));
    assert_eq!(path(1), ("/up".to_string(), Some((ip("10.0.0.9"), 81))));
}
/// `add_real_server` takes empty request and receive strings: the request becomes `/`, an
/// empty receive matches any answer.
#[test]
fn a_real_servers_strings_may_be_empty() {
    let cf = "virtual = 10.0.0.1:80\n    real = 10.0.0.2:80 masq 2 \"\", \"\"\n";
    let r = &read_str(cf).services[0].reals[0];
    assert_eq!(r.dest.weight, 2);
    let CheckKind::Http(h) = &r.checks[0].kind else {
        panic!()
    };
    assert_eq!((h.urls[0].path.as_str(), &h.urls[0].regex), ("/", &None));
}

/// ldirectord resolves port names with `getservbyname`: the common names of the services
/// file are taken too.
#[test]
fn common_service_file_port_names_are_ports() {
    let cf = "virtual = 10.0.0.1:ssh\n    real = 10.0.0.2:ssh masq\n    checktype = connect\n\
              virtual = 10.0.0.1:www\n    real = 10.0.0.3:postgresql masq\n\
              virtual = 10.0.0.1:webcache\n    real = 10.0.0.4 masq\n";
    let cfg = read_str(cf);
    let ports: Vec<(u16, u16)> = cfg
        .services
        .iter()
        .map(|s| (s.keys[0].port(), s.reals[0].dest.port))
        .collect();
    assert_eq!(ports, [(22, 22), (80, 5432), (8080, 0)]);
}

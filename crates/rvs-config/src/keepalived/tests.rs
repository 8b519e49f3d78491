//! Tests of the keepalived.conf reader: the specification's example field by field, one bad
//! file per kind of malformed directive with its exact located message, and includes.

use std::time::Duration;

use rvs_core::model::{DestConf, Forward, Netmask, Protocol, ServiceConf, ServiceKey};

use super::read;
use crate::spec::{CheckKind, Config, HttpProtocol, MemFiles};

const PATH: &str = "/etc/keepalived/keepalived.conf";

fn ok(text: &str) -> Config {
    read(PATH, &MemFiles::one(PATH, text)).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> String {
    read(PATH, &MemFiles::one(PATH, text))
        .expect_err("should be refused")
        .to_string()
}

const SPEC_EXAMPLE: &str = "\
virtual_server 192.168.1.100 80 {
    delay_loop 6
    lvs_sched wlc
    lvs_method NAT
    persistence_timeout 300
    protocol TCP
    quorum 2
    hysteresis 1
    sorry_server 192.168.10.99 80
    real_server 192.168.10.1 80 {
        weight 3
        inhibit_on_failure
        HTTP_GET {
            url {
                path /health
                status_code 200
            }
            connect_timeout 3
            retry 3
            delay_before_retry 2
        }
    }
    real_server 192.168.10.2 80 {
        weight 1
        TCP_CHECK {
            connect_timeout 3
        }
    }
}
";

#[test]
fn the_specification_example_field_by_field() {
    let cfg = ok(SPEC_EXAMPLE);
    assert!(cfg.notices.is_empty(), "{:?}", cfg.notices);
    assert_eq!(cfg.services.len(), 1);
    let vs = &cfg.services[0];
    assert_eq!(vs.loc.to_string(), format!("{PATH}:1:1"));
    let key = ServiceKey::Addr {
        proto: Protocol::Tcp,
        addr: "192.168.1.100".parse().unwrap(),
        port: 80,
    };
    assert_eq!(vs.keys, [key]);
    let conf = ServiceConf::new(rvs_core::model::Family::V4, "wlc").persistent(300);
    assert_eq!(vs.conf, conf);
    assert_eq!(vs.conf.netmask, Netmask::V4(u32::MAX));
    assert_eq!((vs.quorum, vs.hysteresis, vs.omega), (2, 1, false));
    assert_eq!((vs.quorum_up.clone(), vs.quorum_down.clone()), (None, None));
    let sorry = vs.sorry.as_ref().unwrap();
    let sorry_dest = DestConf::new("192.168.10.99".parse().unwrap(), 80).fwd(Forward::Masq);
    assert_eq!(
        (sorry.dest, sorry.inhibit, sorry.loc.line),
        (sorry_dest, false, 9)
    );

    let [r1, r2] = vs.reals.as_slice() else {
        panic!("two real servers")
    };
    let d1 = DestConf::new("192.168.10.1".parse().unwrap(), 80)
        .fwd(Forward::Masq)
        .weight(3);
    assert_eq!(r1.dest, d1);
    assert!(r1.inhibit_on_failure && !r1.alpha);
    assert_eq!((r1.notify_up.clone(), r1.notify_down.clone()), (None, None));
    assert_eq!(r1.checks.len(), 1);
    let c = &r1.checks[0];
    let CheckKind::Http(h) = &c.kind else {
        panic!("{:?}", c.kind)
    };
    assert!(!h.tls && !h.sni);
    assert_eq!(
        (h.protocol, h.method.as_str()),
        (HttpProtocol::Http10, "GET")
    );
    assert_eq!(h.urls.len(), 1);
    assert_eq!(h.urls[0].path, "/health");
    assert_eq!(h.urls[0].status, [(200, 200)]);
    assert_eq!(h.urls[0].digest, None);
    let t = c.timing;
    assert_eq!(t.delay_loop, Duration::from_secs(6));
    assert_eq!(t.connect_timeout, Duration::from_secs(3));
    assert_eq!((t.retry, t.delay_before_retry), (3, Duration::from_secs(2)));
    assert_eq!(t.warmup, Duration::from_secs(6));
    assert_eq!(c.connect, None);

    let d2 = DestConf::new("192.168.10.2".parse().unwrap(), 80).fwd(Forward::Masq);
    assert_eq!(r2.dest, d2);
    assert!(!r2.inhibit_on_failure);
    let t = r2.checks[0].timing;
    assert_eq!(r2.checks[0].kind, CheckKind::Tcp);
    assert_eq!((t.connect_timeout, t.retry), (Duration::from_secs(3), 1));
    assert_eq!(
        (t.delay_before_retry, t.delay_loop),
        (Duration::from_secs(1), Duration::from_secs(6))
    );
}

/// One file per kind of malformed directive: the exact `file:line:column: message`.
#[test]
fn malformed_directives_are_located() {
    let vs = |body: &str| format!("virtual_server 10.0.0.1 80 {{\n    protocol TCP\n{body}\n}}\n");
    let rs = |body: &str| vs(&format!("    real_server 10.0.1.1 80 {{\n{body}\n    }}"));
    let check = |kind: &str, body: &str| rs(&format!("        {kind} {{\n{body}\n        }}"));
    let at = |l: u32, c: u32, m: &str| format!("{PATH}:{l}:{c}: {m}");
    let cases: Vec<(String, String)> = vec![
        (
            "virtual_server 10.0.0.300 80 {\n}\n".into(),
            at(1, 16, "virtual_server 10.0.0.300: not an IPv4 or IPv6 address"),
        ),
        (
            "virtual_server 10.0.0.1 http {\n}\n".into(),
            at(1, 25, "virtual_server http: not a port number (0 to 65535)"),
        ),
        (
            "virtual_server fwmark 0 {\n}\n".into(),
            at(1, 23, "virtual_server 0: must be an integer from 1 to 4294967295"),
        ),
        (
            "virtual_server group NONE {\n}\n".into(),
            at(1, 22, "virtual_server group NONE: no such virtual_server_group"),
        ),
        (
            "virtual_server_group G {\n  10.0.0.9-3 80\n}\n".into(),
            at(2, 3, "virtual_server_group member 10.0.0.9-3: not an address, range or block"),
        ),
        (
            vs("    lvs_sched fastest"),
            at(3, 15, "lvs_sched fastest: unknown scheduler (one of rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh, twos)"),
        ),
        (vs("    lb_kind FULLNAT"), at(3, 13, "lb_kind FULLNAT: must be NAT, DR or TUN")),
        (
            vs("    lvs_method TUN type gue"),
            at(3, 5, "lvs_method TUN type gue: a gue tunnel needs a port, and only a gue tunnel takes one"),
        ),
        (
            vs("    lvs_method TUN type vxlan"),
            at(3, 25, "lvs_method vxlan: tunnel type must be ipip, gue or gre"),
        ),
        (
            vs("    persistence_timeout 2678401"),
            at(3, 25, "persistence_timeout 2678401: must be an integer from 1 to 2678400"),
        ),
        (
            // keepalived's vs_weight_handler: a virtual server's default weight is 1 or more
            vs("    weight 0"),
            at(3, 12, "weight 0: must be an integer from 1 to 2147483647"),
        ),
        (
            // keepalived's misc_timeout takes whole seconds only
            check("MISC_CHECK", "            misc_path /bin/true\n            misc_timeout 0.5"),
            at(6, 26, "misc_timeout 0.5: must be an integer from 0 to 4294"),
        ),
        (
            vs("    persistence_granularity 24"),
            at(3, 29, "persistence_granularity 24: must be an IPv4 netmask such as 255.255.255.0"),
        ),
        (vs("    protocol ICMP"), at(3, 14, "protocol ICMP: must be TCP, UDP or SCTP")),
        (vs("    quorum 0"), at(3, 12, "quorum 0: must be an integer from 1 to 4294967295")),
        (vs("    delay_loop soon"), at(3, 16, "delay_loop soon: must be a time in seconds of at least 0.000001")),
        (vs("    ip_family inet4"), at(3, 15, "ip_family inet4: must be inet or inet6")),
        (
            vs("    sorry_server 10.0.0.x 80"),
            at(3, 18, "sorry_server 10.0.0.x: not an IPv4 or IPv6 address"),
        ),
        (
            rs("        weight 2147483648"),
            at(4, 16, "weight 2147483648: must be an integer from 0 to 2147483647"),
        ),
        (rs("        weight -1"), at(4, 16, "weight -1: must be an integer from 0 to 2147483647")),
        (
            rs("        uthreshold 5\n        lthreshold 6"),
            at(5, 20, "lthreshold 6: above uthreshold 5"),
        ),
        (
            rs("        inhibit_on_failure maybe"),
            at(4, 28, "inhibit_on_failure maybe: must be true, on, yes, false, off or no"),
        ),
        (
            check("HTTP_GET", "            url {\n                path /\n                digest 1234\n            }"),
            at(7, 24, "digest 1234: must be 32 hexadecimal digits (an MD5 sum)"),
        ),
        (
            check("HTTP_GET", "            url {\n                path /\n                status_code 200-700\n            }"),
            at(7, 29, "status_code 200-700: must be a status code N or range N-M within 100-599"),
        ),
        (
            check("HTTP_GET", "            url {\n                digest 9f86d081884c7d659a2feaa0c55ad015\n            }"),
            at(5, 13, "url: path is missing"),
        ),
        (
            check("SSL_GET", "            http_protocol 2"),
            at(5, 27, "http_protocol 2: must be 1.0, 1.0C or 1.1"),
        ),
        (
            check("TCP_CHECK", "            connect_port 70000"),
            at(5, 26, "connect_port 70000: not a port number (0 to 65535)"),
        ),
        (check("DNS_CHECK", "            type PTR"), at(5, 18, "type PTR: must be A, NS, CNAME, SOA, MX, TXT or AAAA")),
        (
            check("UDP_CHECK", "            payload abc"),
            at(5, 21, "payload abc: must be an even number of hexadecimal digits"),
        ),
        (
            check("MISC_CHECK", "            misc_timeout 3"),
            at(4, 9, "MISC_CHECK: misc_path is missing (the command to run)"),
        ),
        (
            rs("        notify_up \"/bin/x 'open\""),
            at(4, 19, "notify_up /bin/x 'open: unbalanced quotes in the command"),
        ),
        (rs("        weight"), at(4, 9, "weight: missing value")),
        (
            "virtual_server 10.0.0.1 80 {\n    real_server 10.0.1.1 80 {\n".into(),
            at(2, 29, "unbalanced braces: this `{` is never closed"),
        ),
        ("}\n".into(), at(1, 1, "unbalanced braces: `}` closes no block")),
        (
            "virtual_server 10.0.0.1 80 {\n  notify_up \"/bin/x\n}\n".into(),
            at(2, 13, "unterminated quoted string (no closing \")"),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(err(&text), want, "for:\n{text}");
    }
}

#[test]
fn ignored_blocks_and_unknown_keywords_are_noticed_once_each() {
    let cfg = ok("\
global_defs {
  router_id X
  script_user root
}
vrrp_script chk {
  script /bin/true
}
vrrp_sync_group G {
  group {
    VI_1
  }
}
static_ipaddress {
  10.0.0.1/24 dev eth0
}
SSL {
  ca /etc/ca.pem
}
frobnicate 3
virtual_server fwmark 5 {
  frob 1
  real_server 10.0.0.2 {
    BFD_CHECK {
      name x
    }
    zap
    TCP_CHECK {
      zip 2
    }
  }
}
");
    let got: Vec<String> = cfg
        .notices
        .iter()
        .map(|n| format!("{}: {}", n.loc.line, n.msg))
        .collect();
    assert_eq!(
        got,
        [
            "1: global_defs: ignored (keepalived's global settings do not apply to rvs)",
            "5: vrrp_script chk: ignored (rvs does not run VRRP)",
            "8: vrrp_sync_group G: ignored (rvs does not run VRRP)",
            "13: static_ipaddress: ignored (rvs does not manage addresses or routes)",
            "16: SSL: ignored (rvs's SSL_GET uses no client certificate)",
            "19: keepalived.conf: unknown keyword frobnicate, ignored",
            "21: virtual_server: unknown keyword frob, ignored",
            "23: BFD_CHECK: ignored (rvs does not run this checker)",
            "26: real_server: unknown keyword zap, ignored",
            "28: TCP_CHECK: unknown keyword zip, ignored",
        ]
    );
    let vs = &cfg.services[0];
    assert_eq!(
        vs.keys,
        [ServiceKey::Fwmark {
            af: rvs_core::model::Family::V4,
            mark: 5
        }]
    );
    // a fwmark service's NAT real server keeps no port when none is given
    assert_eq!(vs.reals[0].dest.port, 0);
}

#[test]
fn quorum_and_hysteresis_are_corrected_as_keepalived_does() {
    let cfg = ok("\
virtual_server 10.0.0.1 80 {
  protocol TCP
  quorum 10
  hysteresis 4
  real_server 10.0.1.1 80 {
    weight 3
  }
}
");
    let vs = &cfg.services[0];
    assert_eq!((vs.quorum, vs.hysteresis), (3, 2));
    assert_eq!(cfg.notices.len(), 2, "{:?}", cfg.notices);
}

fn tree(files: &[(&str, &str)]) -> MemFiles {
    let mut m = MemFiles::default();
    for (p, t) in files {
        m.0.insert(p.to_string(), t.to_string());
    }
    m
}

const VS: &str = "virtual_server 10.0.0.1 80 {\n  protocol TCP\n  include rs/*.conf\n}\n";

#[test]
fn includes_with_globs_relative_paths_and_nesting() {
    let files = tree(&[
        (PATH, "include conf.d/*.conf\ninclude /etc/other/x.conf\n"),
        ("/etc/keepalived/conf.d/a.conf", VS),
        (
            "/etc/keepalived/conf.d/rs/1.conf",
            "real_server 10.0.1.1 80 {\n  weight 4\n}\n",
        ),
        (
            "/etc/keepalived/conf.d/rs/2.conf",
            "real_server 10.0.1.2 80\ninclude ../../extra.conf\n",
        ),
        (
            "/etc/keepalived/extra.conf",
            "real_server 10.0.1.3 80 {\n}\n",
        ),
        ("/etc/keepalived/conf.d/b.txt", "garbage {"),
        ("/etc/other/x.conf", "include none/*.conf\n"),
    ]);
    let cfg = read(PATH, &files).unwrap();
    let vs = &cfg.services[0];
    let addrs: Vec<String> = vs.reals.iter().map(|r| r.dest.addr.to_string()).collect();
    assert_eq!(addrs, ["10.0.1.1", "10.0.1.2", "10.0.1.3"]);
    assert_eq!(vs.reals[0].dest.weight, 4);
    assert_eq!(
        vs.reals[0].loc.to_string(),
        "/etc/keepalived/conf.d/rs/1.conf:1:1"
    );
    assert_eq!(
        vs.reals[2].loc.to_string(),
        "/etc/keepalived/extra.conf:1:1"
    );
    assert_eq!(cfg.notices.len(), 1);
    assert_eq!(cfg.notices[0].loc.to_string(), "/etc/other/x.conf:1:9");
    assert_eq!(
        cfg.notices[0].msg,
        "include none/*.conf: no file matches, nothing included"
    );
}

#[test]
fn an_include_cycle_is_refused() {
    let files = tree(&[
        (PATH, "include a.conf\n"),
        ("/etc/keepalived/a.conf", "\n  include sub/b.conf\n"),
        ("/etc/keepalived/sub/b.conf", "include ../a.conf\n"),
    ]);
    assert_eq!(
        read(PATH, &files).unwrap_err().to_string(),
        "/etc/keepalived/sub/b.conf:1:9: include ../a.conf: includes itself \
         (/etc/keepalived/keepalived.conf -> /etc/keepalived/a.conf -> \
         /etc/keepalived/sub/b.conf -> /etc/keepalived/a.conf)"
    );
    let selfish = tree(&[(PATH, "include keepalived.conf\n")]);
    assert!(read(PATH, &selfish)
        .unwrap_err()
        .msg
        .contains("includes itself"));
}

#[test]
fn a_missing_include_is_a_notice_and_a_missing_file_is_refused() {
    // keepalived globs every include and goes on when nothing matches (it logs it)
    let files = tree(&[(PATH, "global_defs {\n}\n  include missing.conf\n")]);
    let cfg = read(PATH, &files).unwrap();
    assert_eq!(
        cfg.notices[0].msg,
        "include missing.conf: no file matches, nothing included"
    );
    assert_eq!(cfg.notices[0].loc.to_string(), format!("{PATH}:3:11"));
    assert_eq!(
        read("/nowhere.conf", &files).unwrap_err().to_string(),
        "/nowhere.conf:1:1: cannot read /nowhere.conf: No such file or directory"
    );
}

#[test]
fn words_after_a_command_are_user_and_group_or_ignored_as_in_keepalived() {
    // keepalived: notify_* / quorum_* take `"<command>" [user [group]]`; misc_path runs only
    // its first word (or quoted string) and drops the rest.
    let cfg = ok("virtual_server 10.0.0.1 80 {
    protocol TCP
    quorum_up /bin/up.sh keepalived_script
    real_server 10.0.1.1 80 {
        notify_up \"/bin/n.sh UP 'rs one'\" nobody nogroup extra
        MISC_CHECK {
            misc_path /bin/check.sh 10.0.1.1
        }
    }
}
");
    let vs = &cfg.services[0];
    let up = vs.quorum_up.as_ref().unwrap();
    assert_eq!(up.argv, ["/bin/up.sh"]);
    assert_eq!(
        (up.user.as_deref(), up.group.as_deref()),
        (Some("keepalived_script"), None)
    );
    let rs = &vs.reals[0];
    let n = rs.notify_up.as_ref().unwrap();
    assert_eq!(n.argv, ["/bin/n.sh", "UP", "rs one"]);
    assert_eq!(
        (n.user.as_deref(), n.group.as_deref()),
        (Some("nobody"), Some("nogroup"))
    );
    let CheckKind::Misc(m) = &rs.checks[0].kind else {
        panic!("{:?}", rs.checks[0].kind)
    };
    assert_eq!(m.command.argv, ["/bin/check.sh"]);
    assert_eq!(m.command.user, None);
    let msgs: Vec<String> = cfg
        .notices
        .iter()
        .map(|n| format!("{}: {}", n.loc, n.msg))
        .collect();
    assert_eq!(
        msgs,
        [
            format!("{PATH}:3:26: quorum_up: keepalived_script is the user to run /bin/up.sh as (quote the whole command to pass arguments)"),
            format!("{PATH}:5:43: notify_up: nobody is the user to run /bin/n.sh as (quote the whole command to pass arguments)"),
            format!("{PATH}:5:58: notify_up: extra ignored (keepalived reads at most a user and a group after the command)"),
            format!("{PATH}:7:37: misc_path: 10.0.1.1 ignored (keepalived runs only the first word or quoted string)"),
                    ]
    );
}

#[test]
fn a_persistence_granularity_alone_makes_the_service_persistent() {
    // keepalived's pgr_handler sets persistence_timeout 360 when none is given
    let cfg = ok("virtual_server 10.0.0.1 80 {
    protocol TCP
    persistence_granularity 255.255.255.0
    real_server 10.0.1.1 80 {
    }
}
virtual_server 10.0.0.2 80 {
    protocol TCP
    persistence_granularity 255.255.0.0
    persistence_timeout 50
    real_server 10.0.1.1 80 {
    }
}
");
    let want = ServiceConf::new(rvs_core::model::Family::V4, "wlc").persistent(360);
    assert_eq!(cfg.services[0].conf.timeout, want.timeout);
    assert_eq!(cfg.services[0].conf.flags, want.flags);
    assert_eq!(cfg.services[0].conf.netmask, Netmask::V4(0xffff_ff00));
    assert_eq!(cfg.services[1].conf.timeout, 50);
    assert_eq!(cfg.services[1].conf.netmask, Netmask::V4(0xffff_0000));
}

#[test]
fn a_virtual_server_without_real_servers_is_dropped_as_keepalived_does() {
    // keepalived's vs_end_handler: "Virtual server … has no real servers - ignoring", even
    // with a sorry_server; a real server of the other family does not count
    let cfg = ok("virtual_server 10.0.0.1 80 {
    protocol TCP
    sorry_server 10.0.9.9 80
}
virtual_server 10.0.0.2 80 {
    protocol TCP
    real_server 2001:db8::1 80 {
    }
}
virtual_server 10.0.0.3 80 {
    protocol TCP
    real_server 10.0.1.1 80 {
    }
}
");
    assert_eq!(cfg.services.len(), 1);
    assert_eq!(cfg.services[0].loc.line, 10);
    let msgs: Vec<String> = cfg
        .notices
        .iter()
        .filter(|n| n.msg.contains("no real servers"))
        .map(|n| format!("{}: {}", n.loc, n.msg))
        .collect();
    assert_eq!(
        msgs,
        [
            format!(
                "{PATH}:1:1: virtual_server 10.0.0.1 80: no real servers, ignored (as keepalived)"
            ),
            format!(
                "{PATH}:5:1: virtual_server 10.0.0.2 80: no real servers, ignored (as keepalived)"
            ),
        ]
    );
}

#[test]
fn regex_options_offsets_and_tls_compliant_are_read() {
    let cfg = ok("virtual_server 10.0.0.1 443 {
    protocol TCP
    real_server 10.0.1.1 443 {
        SSL_GET {
            url {
                path /health
                regex \"ready\"
                regex_options caseless multiline never_utf no_start_optimize
                regex_min_offset 4
                regex_max_offset 100
                regex_stack 32768 1048576
                tls_compliant
            }
            fast_recovery
        }
    }
}
");
    let CheckKind::Http(h) = &cfg.services[0].reals[0].checks[0].kind else {
        panic!("not an HTTP check")
    };
    assert!(h.tls && h.tls_close_notify);
    let u = &h.urls[0];
    assert_eq!(u.regex.as_deref(), Some("(?im-u)ready"));
    assert_eq!((u.regex_min_offset, u.regex_max_offset), (4, Some(100)));
    assert!(!u.regex_first_line);
    assert!(cfg.notices.is_empty(), "{:?}", cfg.notices);
    let cfg = ok("virtual_server 10.0.0.1 80 {
    protocol TCP
    real_server 10.0.1.1 80 {
        HTTP_GET {
            url {
                path /
                regex x
                regex_options firstline alt_bsux
            }
        }
    }
}
");
    let CheckKind::Http(h) = &cfg.services[0].reals[0].checks[0].kind else {
        panic!("not an HTTP check")
    };
    assert!(h.urls[0].regex_first_line);
    assert!(cfg
        .notices
        .iter()
        .any(|n| n.msg.starts_with("regex_options alt_bsux")));
    let bad = read(
        PATH,
        &tree(&[(
            PATH,
            "virtual_server 10.0.0.1 80 {\n protocol TCP\n real_server 10.0.1.1 80 {\n  HTTP_GET {\n   url {\n    path /\n    regex_options loud\n   }\n  }\n }\n}\n",
        )]),
    )
    .unwrap_err();
    assert_eq!(
        bad.to_string(),
        format!("{PATH}:7:19: regex_options loud: is not a PCRE2 option keepalived knows")
    );
}

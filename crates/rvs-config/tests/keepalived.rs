//! keepalived.conf files read into the same IPVS rules as the equivalent ipvsadm commands
//! (`tests/fixtures/keepalived/X.conf` against `X.ipvsadm`), plus the checks, quorum and
//! sorry-server fields and the notices keepalived would log.

use std::path::Path;
use std::time::Duration;

use rvs_config::ipvsadm::{parse, restore_lines, Command, NoResolve};
use rvs_config::keepalived::read;
use rvs_config::spec::{
    CheckKind, Config, DnsType, HttpProtocol, MemFiles, RealServer, VirtualService,
};
use rvs_core::model::{DestConf, ServiceConf, ServiceKey};

const DIR: &str = "tests/fixtures/keepalived";

type Rules = Vec<(ServiceKey, ServiceConf, Vec<DestConf>)>;

fn fixture(name: &str) -> (Config, Rules) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(DIR);
    let conf = std::fs::read_to_string(dir.join(format!("{name}.conf"))).unwrap();
    let path = format!("/etc/keepalived/{name}.conf");
    let cfg = read(&path, &MemFiles::one(&path, &conf)).unwrap_or_else(|e| panic!("{e}"));
    let cmds = std::fs::read_to_string(dir.join(format!("{name}.ipvsadm"))).unwrap();
    let mut rules: Rules = Vec::new();
    for words in restore_lines(&cmds) {
        match parse("ipvsadm", &words, &NoResolve).unwrap_or_else(|e| panic!("{words:?}: {e:?}")) {
            Command::AddService { key, conf } => rules.push((key, conf, Vec::new())),
            Command::AddDest { key, dest, .. } => {
                let svc = rules.iter_mut().find(|r| r.0 == key).expect("-a before -A");
                svc.2.push(dest);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    (cfg, rules)
}

/// The rules a configuration stands for, one per key.
fn rules_of(cfg: &Config) -> Rules {
    cfg.services
        .iter()
        .flat_map(|vs| {
            vs.keys.iter().map(|k| {
                let dests = vs.reals.iter().map(|r| r.dest).collect();
                (*k, vs.conf.clone(), dests)
            })
        })
        .collect()
}

fn assert_same_rules(name: &str) -> Config {
    let (cfg, rules) = fixture(name);
    let got = rules_of(&cfg);
    assert_eq!(got.len(), rules.len(), "{name}: number of services");
    for (g, w) in got.iter().zip(&rules) {
        assert_eq!(g, w, "{name}");
    }
    cfg
}

fn has_notice(cfg: &Config, line: u32, part: &str) {
    assert!(
        cfg.notices
            .iter()
            .any(|n| n.loc.line == line && n.msg.contains(part)),
        "no notice at line {line} containing {part:?} in {:#?}",
        cfg.notices
    );
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn basic_services_match_ipvsadm() {
    let cfg = assert_same_rules("basic");
    has_notice(&cfg, 3, "global_defs: ignored");
    has_notice(
        &cfg,
        10,
        "vrrp_instance VI_1: ignored (rvs does not run VRRP)",
    );
    has_notice(
        &cfg,
        54,
        "real_server 10.0.1.2:8080 duplicates the one at /etc/keepalived/basic.conf:49:5, removed",
    );
    // keepalived reads the words after an unquoted command as the user and group to run it as
    has_notice(
        &cfg,
        33,
        "notify_down: nobody is the user to run /usr/local/bin/down.sh as",
    );
    assert_eq!(cfg.notices.len(), 4, "{:#?}", cfg.notices);
    let rs = &cfg.services[0].reals[0];
    assert!(rs.inhibit_on_failure && !rs.alpha);
    assert_eq!(
        rs.notify_up.as_ref().unwrap().argv,
        ["/usr/local/bin/up.sh", "10.0.1.1", "web one"]
    );
    let down = rs.notify_down.as_ref().unwrap();
    assert_eq!(down.argv, ["/usr/local/bin/down.sh"]);
    assert_eq!(
        (down.user.as_deref(), down.group.as_deref()),
        (Some("nobody"), Some("nogroup"))
    );
    assert_eq!(rs.notify_up.as_ref().unwrap().user, None);
    let c = &rs.checks[0];
    assert_eq!(c.kind, CheckKind::Tcp);
    assert_eq!(c.connect, Some(("10.0.2.1".parse().unwrap(), 8081)));
    assert_eq!(c.bind_addr, Some("10.0.0.2".parse().unwrap()));
    assert_eq!(
        (c.bind_port, c.bind_if.as_deref(), c.fwmark),
        (Some(5000), Some("eth0"), Some(7))
    );
    assert!(c.log_all_failures);
    assert_eq!(c.timing.connect_timeout, Duration::from_millis(2500));
    assert_eq!(
        (c.timing.retry, c.timing.delay_before_retry),
        (4, Duration::from_millis(500))
    );
    assert_eq!(
        (c.timing.warmup, c.timing.delay_loop),
        (Duration::ZERO, secs(3))
    );
    let ping = &cfg.services[0].reals[1].checks[0];
    assert_eq!(ping.kind, CheckKind::Ping);
    // VS delay_loop 10 inherited, warmup defaults to it, keepalived's defaults otherwise
    assert_eq!(ping.timing.delay_loop, secs(10));
    assert_eq!(ping.timing.warmup, secs(10));
    assert_eq!(
        (ping.timing.retry, ping.timing.delay_before_retry),
        (1, secs(1))
    );
    assert_eq!(ping.timing.connect_timeout, secs(5));
    assert_eq!(ping.connect, None);
    let vs = &cfg.services[0];
    assert_eq!(
        (vs.quorum, vs.hysteresis, vs.sorry.is_none(), vs.omega),
        (1, 0, true, false)
    );
}

#[test]
fn fwmark_services_match_ipvsadm() {
    let cfg = assert_same_rules("fwmark");
    has_notice(&cfg, 10, "protocol TCP ignored for a fwmark service");
    assert_eq!(cfg.notices.len(), 1, "{:#?}", cfg.notices);
}

#[test]
fn groups_match_ipvsadm() {
    let cfg = assert_same_rules("groups");
    assert_eq!(cfg.services.len(), 2);
    assert_eq!(cfg.services[0].keys.len(), 5);
    assert!(cfg.notices.is_empty(), "{:#?}", cfg.notices);
}

fn http(rs: &RealServer, i: usize) -> &rvs_config::spec::HttpCheck {
    match &rs.checks[i].kind {
        CheckKind::Http(h) => h,
        k => panic!("{k:?}"),
    }
}

#[test]
fn checks_quorum_and_sorry_server() {
    let cfg = assert_same_rules("checks");
    let vs: &VirtualService = &cfg.services[0];
    assert_eq!((vs.quorum, vs.hysteresis, vs.omega), (3, 1, true));
    assert_eq!(vs.quorum_up.as_ref().unwrap().argv, ["/bin/echo", "up"]);
    assert_eq!(vs.quorum_down.as_ref().unwrap().argv, ["/bin/echo", "down"]);
    let sorry = vs.sorry.as_ref().unwrap();
    let want = DestConf::new("10.9.9.9".parse().unwrap(), 80);
    assert_eq!((sorry.dest, sorry.inhibit), (want, true));

    let rs1 = &vs.reals[0];
    assert!(rs1.alpha, "VS alpha inherited");
    let h = http(rs1, 0);
    assert!(!h.tls);
    assert_eq!(h.protocol, HttpProtocol::Http11);
    assert_eq!(h.virtualhost.as_deref(), Some("check.example"));
    assert_eq!(h.urls.len(), 2);
    let u = &h.urls[0];
    assert_eq!(u.path, "/health");
    assert_eq!(
        u.digest.as_deref(),
        Some("9f86d081884c7d659a2feaa0c55ad015")
    );
    assert_eq!(u.status, [(200, 200), (300, 302)]);
    assert_eq!(u.virtualhost.as_deref(), Some("a.example"));
    assert_eq!(
        (u.regex.as_deref(), u.regex_no_match),
        (Some("ok|fine"), true)
    );
    assert_eq!(h.urls[1].status, [(200, 299)]);
    let t = rs1.checks[0].timing;
    assert_eq!(
        (t.retry, t.delay_before_retry, t.delay_loop),
        (4, secs(3), secs(20))
    );
    assert_eq!((t.connect_timeout, t.warmup), (secs(4), secs(20)));
    let s = http(rs1, 1);
    assert!(s.tls && s.sni);
    assert_eq!(s.sni_name.as_deref(), Some("tls.example"));
    assert_eq!(s.virtualhost.as_deref(), Some("vs.example"));
    assert_eq!(s.protocol, HttpProtocol::Http10Close);
    assert_eq!(rs1.checks[1].timing.retry, 2, "VS retry inherited");

    let rs2 = &vs.reals[1];
    assert!(!rs2.alpha);
    let CheckKind::Udp(udp) = &rs2.checks[0].kind else {
        panic!()
    };
    assert_eq!(udp.payload, [0x0a, 0x0b]);
    assert_eq!(udp.require_reply, Some(Some(vec![(0x01, 0xff), (0, 0)])));
    assert_eq!((udp.min_reply_length, udp.max_reply_length), (2, 100));
    assert_eq!(rs2.checks[0].timing.warmup, secs(7));
    assert_eq!(rs2.checks[0].timing.delay_before_retry, secs(9));
    let dns = &rs2.checks[1];
    let want = CheckKind::Dns {
        qtype: DnsType::A,
        name: "example.com".into(),
    };
    assert_eq!(dns.kind, want);
    assert_eq!(dns.timing.retry, 2);

    let rs3 = &vs.reals[2];
    let helo = CheckKind::Smtp {
        helo_name: "me.example".into(),
    };
    assert_eq!(rs3.checks[0].kind, helo);
    let CheckKind::Misc(m) = &rs3.checks[1].kind else {
        panic!()
    };
    assert_eq!(m.command.argv, ["/usr/bin/check.sh", "10.0.1.3", "x y"]);
    assert_eq!(
        (m.command.user.as_deref(), m.command.group.as_deref()),
        (Some("nobody"), Some("nogroup"))
    );
    assert_eq!((m.timeout, m.dynamic), (secs(7), true));
    let CheckKind::Misc(m2) = &rs3.checks[2].kind else {
        panic!()
    };
    assert_eq!((m2.timeout, m2.dynamic), (secs(20), false));

    let rs4 = &vs.reals[3];
    assert_eq!(
        rs4.checks.len(),
        1,
        "HTTP_GET without url dropped, FILE_CHECK ignored"
    );
    let dflt = CheckKind::Dns {
        qtype: DnsType::Soa,
        name: ".".into(),
    };
    assert_eq!(rs4.checks[0].kind, dflt);
    // VS retry 2 is inherited before DNS_CHECK's own default of 3; delay_before_retry
    // defaults to the delay loop
    assert_eq!(rs4.checks[0].timing.delay_before_retry, secs(20));

    for (line, part) in [
        (3, "ops (one-packet scheduling) needs UDP, cleared"),
        (11, "sh-port: ignored (it applies to the sh scheduler only)"),
        (78, "HTTP_GET: no url given, checker ignored"),
        (80, "FILE_CHECK: ignored"),
        (88, "no protocol set, UDP assumed"),
        (
            88,
            "a zero port is only valid for a persistent service; persistence_timeout 360 set",
        ),
        (36, "nb_get_retry is deprecated"),
    ] {
        has_notice(&cfg, line, part);
    }
}

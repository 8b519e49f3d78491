//! Every file in `examples/` is accepted, and the services each one declares are exactly the
//! IPVS rules of the `# ipvsadm ...` commands written next to them.

use std::path::PathBuf;

use rvs_config::ipvsadm::{parse as ipvsadm, Command, NoResolve};
use rvs_config::rvsconf;
use rvs_config::spec::{CheckKind, MemFiles};
use rvs_core::model::{DestConf, ServiceConf, ServiceKey};

fn examples() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "examples/ holds the tour and the smaller files"
    );
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("readable example");
            (p.display().to_string(), text)
        })
        .collect()
}

type Rules = Vec<(ServiceKey, ServiceConf, Vec<DestConf>)>;

/// The rules the `# ipvsadm ...` comment lines build, in order.
fn ipvsadm_rules(text: &str) -> Rules {
    let mut rules: Rules = Vec::new();
    for line in text.lines() {
        let Some(cmd) = line.trim().strip_prefix("# ipvsadm ") else {
            continue;
        };
        let args: Vec<&str> = cmd.split_whitespace().collect();
        match ipvsadm("ipvsadm", &args, &NoResolve).expect(cmd) {
            Command::AddService { key, conf } => rules.push((key, conf, Vec::new())),
            Command::AddDest { key, dest, .. } => rules
                .iter_mut()
                .find(|r| r.0 == key)
                .expect("the service is added first")
                .2
                .push(dest),
            other => panic!("unexpected command in an example: {other:?}"),
        }
    }
    rules
}

#[test]
fn every_example_is_accepted_and_equals_its_ipvsadm_commands() {
    for (path, text) in examples() {
        let cfg =
            rvsconf::read(&path, &MemFiles::one(&path, &text)).unwrap_or_else(|e| panic!("{e}"));
        assert!(!cfg.services.is_empty(), "{path}");
        let from_file: Rules = cfg
            .services
            .iter()
            .map(|s| {
                let dests = s.reals.iter().map(|r| r.dest).collect();
                (s.keys[0], s.conf.clone(), dests)
            })
            .collect();
        let from_ipvsadm = ipvsadm_rules(&text);
        assert_eq!(from_file.len(), from_ipvsadm.len(), "{path}: services");
        for (f, i) in from_file.iter().zip(&from_ipvsadm) {
            assert_eq!(f, i, "{path}: service {}", f.0);
        }
    }
}

#[test]
fn the_tour_resolves_inheritance_and_defaults() {
    let (path, text) = examples()
        .into_iter()
        .find(|(p, _)| p.ends_with("/rvs.toml"))
        .expect("examples/rvs.toml");
    let cfg = rvsconf::parse(&path, &text).unwrap();
    assert_eq!(cfg.settings.workers, Some(2));
    assert_eq!(cfg.settings.timeouts, Some((900, 120, 300)));
    let web = &cfg.services[0];
    assert_eq!((web.quorum, web.hysteresis, web.omega), (3, 1, true));
    let first = text.lines().position(|l| l == "[[service]]").unwrap() + 1;
    assert_eq!((web.loc.line, web.loc.col), (first as u32, 1));
    let rs1 = &web.reals[0];
    assert!(rs1.inhibit_on_failure && !rs1.alpha);
    // the https check of the second server: where the regex may match, close_notify
    let https = web.reals[1]
        .checks
        .iter()
        .find_map(|c| match &c.kind {
            CheckKind::Http(h) if h.tls => Some(h),
            _ => None,
        })
        .expect("an https check");
    assert!(https.tls_close_notify);
    assert_eq!(
        (
            https.urls[0].regex_min_offset,
            https.urls[0].regex_max_offset
        ),
        (0, Some(4096))
    );
    assert_eq!(rs1.slow_start, Some(std::time::Duration::from_secs(30)));
    let http = &rs1.checks[0];
    // the check's own delay_loop, the service's other timers
    assert_eq!(http.timing.delay_loop.as_secs(), 5);
    assert_eq!(http.timing.connect_timeout.as_secs(), 3);
    assert_eq!((http.timing.retry, http.timing.warmup.as_secs()), (2, 5));
    assert_eq!(http.connect, Some(("10.0.0.1".parse().unwrap(), 8081)));
    let CheckKind::Http(h) = &http.kind else {
        panic!("http check")
    };
    assert_eq!(h.urls[1].status, vec![(200, 200), (300, 399)]);
    let notify = rs1.notify_down.as_ref().unwrap();
    assert!(notify.shell);
    assert_eq!(notify.argv, vec!["logger", "-t", "rvs", "10.0.0.1 down"]);
    let smtp = &cfg.services[1].reals[0].checks[0];
    // keepalived's defaults where nothing is said
    assert_eq!(smtp.timing.delay_loop.as_secs(), 60);
    assert_eq!(smtp.timing.delay_before_retry.as_secs(), 1);
    assert_eq!(smtp.timing.retry, 1);
}

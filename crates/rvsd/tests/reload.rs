//! Reload without loss: rvsd runs a TOML file (TCP checks, delay_loop 1 s) while clients
//! send HTTP requests through its VIPs, some many per connection, some one per connection;
//! meanwhile the file is rewritten and reloaded 20 times (services and real servers added,
//! changed, removed). Nothing that stays declared may lose a request, a connection, its
//! listener, its counters or its persistence templates; a removed real server drains (weight
//! 0, its open connections finish) and then leaves the table. A file that does not read
//! changes nothing (exact located message, listings byte for byte the same), and SIGHUP does
//! what `rvsadm --reload` does.

mod common;
mod support;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use common::TempDir;
use support::director::Director;
use support::http::{HttpClient, HttpServer};
use support::listing::{self, conns_of};
use support::net::{sa, v4};
use support::reloadconf::{
    check_listing, snapshot, summary, svc, templates, toml, write, Svc, GRACE, RS_PORT,
};
use support::wait::poll_for;

/// A second octet of its own for each test of this binary (141…170: other test binaries
/// take 171 and up).
fn subnet() -> u8 {
    static NEXT: AtomicU8 = AtomicU8::new(141);
    let b = NEXT.fetch_add(1, Ordering::SeqCst);
    assert!((141..171).contains(&b), "out of test subnets");
    b
}

/// The services that stay declared all along (they carry the load):
/// 1 never changes, 2 never changes and is persistent, 3 changes at almost every step.
const STEADY: [u8; 3] = [1, 2, 3];
/// The reload that removes real server 5 from service 3 while a client holds a keep-alive
/// connection to it.
const HOLD_STEP: usize = 13;

/// The configuration before the first reload and after each of the 20.
fn schedule() -> Vec<Vec<Svc>> {
    let s1 = svc(1, "rr", None, &[(1, 1), (2, 1)]);
    let s2 = svc(2, "rr", Some(300), &[(1, 1), (2, 1)]);
    let s3 = |sched, reals: &[(u8, u32)]| svc(3, sched, None, reals);
    let base = |extra: Vec<Svc>| [vec![s1.clone(), s2.clone()], extra].concat();
    let s4a = svc(4, "rr", None, &[(5, 1)]);
    let s4b = svc(4, "rr", None, &[(5, 1), (6, 1)]);
    let s4c = svc(4, "wrr", None, &[(5, 1), (6, 1)]);
    let s4d = svc(4, "wrr", Some(60), &[(5, 1), (6, 1)]);
    let s5 = svc(5, "lc", None, &[(1, 1)]);
    vec![
        base(vec![s3("wrr", &[(3, 1), (4, 1)])]),
        base(vec![s3("wrr", &[(3, 2), (4, 1)])]),
        base(vec![s3("wlc", &[(3, 2), (4, 1)])]),
        base(vec![s3("wlc", &[(3, 2), (4, 1)]), s4a.clone()]),
        base(vec![s3("wlc", &[(3, 2), (4, 1), (5, 1)]), s4a]),
        base(vec![s3("wlc", &[(4, 1), (5, 1)]), s4b.clone()]),
        base(vec![s3("wlc", &[(4, 1), (5, 1)]), s4b.clone()]),
        base(vec![s3("rr", &[(4, 1), (5, 1)]), s4b]),
        base(vec![s3("rr", &[(4, 1), (5, 1)])]),
        base(vec![s3("rr", &[(3, 1), (4, 1), (5, 1)])]),
        base(vec![s3("rr", &[(3, 1), (4, 3), (5, 1)])]),
        base(vec![s3("rr", &[(3, 1), (4, 3), (5, 1)]), s4c.clone()]),
        base(vec![s3("sed", &[(3, 1), (4, 3), (5, 1)]), s4c.clone()]),
        base(vec![s3("sed", &[(3, 1), (4, 3)]), s4c]),
        base(vec![s3("sed", &[(3, 1), (4, 3)]), s4d.clone()]),
        base(vec![s3("sed", &[(3, 1), (6, 1)]), s4d]),
        base(vec![s3("sed", &[(3, 1), (6, 1)])]),
        base(vec![s3("wrr", &[(3, 1), (6, 1)])]),
        base(vec![s3("wrr", &[(3, 1), (6, 1)]), s5.clone()]),
        base(vec![s3("wrr", &[(3, 2), (6, 2)]), s5]),
        base(vec![s3("wrr", &[(3, 2), (6, 2)])]),
    ]
}

/// What one client thread saw.
#[derive(Debug, Default)]
struct Tally {
    vip: u8,
    src: Option<IpAddr>,
    conns: u64,
    /// connections from a client port used before (see [`check_tallies`])
    reused: u64,
    requests: u64,
    servers: BTreeSet<String>,
    failures: Vec<String>,
}

/// Send requests from `src` through `vip` until `stop` (bounded: 60 s, 3000 connections):
/// `keepalive` clients send 20 requests 10 ms apart on each connection and close it,
/// the others one `Connection: close` request per connection.
fn client(b: u8, vip: u8, src: IpAddr, keepalive: bool, stop: &AtomicBool) -> Tally {
    let mut t = Tally {
        vip,
        src: Some(src),
        ..Tally::default()
    };
    let start = Instant::now();
    let to = sa(b, 0, vip, 80);
    let mut ports = BTreeSet::new();
    while !stop.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(60) {
        if t.conns >= 3000 || t.failures.len() >= 20 {
            break;
        }
        let mut c = match HttpClient::connect(src, to) {
            Ok(c) => c,
            Err(f) => {
                t.failures.push(format!("connect to {to}: {f:?}"));
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        t.conns += 1;
        t.reused += u64::from(!ports.insert(c.local_port()));
        let n = if keepalive { 20 } else { 1 };
        for _ in 0..n {
            match c.get(!keepalive) {
                Ok(name) => {
                    t.requests += 1;
                    t.servers.insert(name);
                }
                Err(f) => {
                    t.failures.push(format!("request {to}: {f:?}"));
                    break;
                }
            }
            if keepalive {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if !keepalive {
            if let Err(f) = c.expect_end() {
                t.failures.push(format!("end of {to}: {f:?}"));
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    t
}

/// A keep-alive connection through service 3 that real server `rs` answers, and how many
/// connections it took (bounded tries: the scheduler decides).
///
/// The connections answered by other servers stay open until `rs` answers: service 3 then
/// schedules by active connections (sed), and a connection closed at once would leave the
/// favourite (weight 3) with nothing active, so `rs` might never come up. Held open, they
/// raise the others' active counts until `rs`, with none, is the shortest expected delay.
fn hold_on(b: u8, rs: &str) -> (HttpClient, u64) {
    let mut others = Vec::new();
    for n in 0..200u8 {
        let mut c = HttpClient::connect(v4(b, 60, 1 + n % 50), sa(b, 0, 3, 80))
            .expect("connect to service 3");
        if c.get(false).expect("a first answer") == rs {
            return (c, u64::from(n) + 1);
        }
        others.push(c);
    }
    panic!("service 3 never chose {rs} in 200 connections");
}

/// After the reload that removed `rs` from service 3: the held connection goes on (weight
/// 0 in `-Ln`, answers from `rs`), then ends with a clean close.
fn drain_held(d: &Director, b: u8, mut held: HttpClient, rs: u8) {
    let ln = d.text("-Ln");
    let row = listing::dests(&ln)
        .into_iter()
        .find(|r| {
            r.service == format!("TCP 127.{b}.0.3:80")
                && r.addr == format!("127.{b}.10.{rs}:{RS_PORT}")
        })
        .unwrap_or_else(|| panic!("rs{rs} gone at once, not draining:\n{ln}"));
    assert_eq!(
        (row.weight, row.active >= 1),
        (0, true),
        "draining: {row:?}"
    );
    for k in 0..10 {
        std::thread::sleep(Duration::from_millis(50));
        let last = k == 9;
        assert_eq!(
            held.get(last),
            Ok(format!("rs{rs}")),
            "request {k} after drain"
        );
    }
    assert_eq!(
        held.expect_end(),
        Ok(()),
        "the drained connection ends cleanly"
    );
}

/// The real servers, the file and where it lives, for the load test.
struct Setup {
    b: u8,
    _servers: Vec<HttpServer>,
    _dir: TempDir,
    file: PathBuf,
}

/// Real servers 1 to `n` and rvsd running `conf`.
fn setup(tag: &str, n: u8, conf: &[Svc]) -> (Setup, Director) {
    let b = subnet();
    let servers = (1..=n)
        .map(|i| HttpServer::start(sa(b, 10, i, RS_PORT), &format!("rs{i}")))
        .collect();
    let dir = TempDir::new(tag);
    let file = dir.path().join("rvs.toml");
    std::fs::write(&file, toml(b, conf)).unwrap();
    let d = Director::start(tag, &["--config", file.to_str().unwrap()]);
    let ready = poll_for(Duration::from_secs(5), || {
        std::panic::catch_unwind(|| check_listing(b, &d.text("-Ln"), conf, 0)).is_ok()
    });
    assert!(ready, "initial rules not installed:\n{}", d.text("-Ln"));
    let s = Setup {
        b,
        _servers: servers,
        _dir: dir,
        file,
    };
    (s, d)
}

/// One reload of the schedule: the file rewritten, `rvsadm --reload`, its answer, the
/// listing, the templates and the counters of the steady services.
fn reload_step(d: &Director, s: &Setup, steps: &[Vec<Svc>], k: usize, kept: &BTreeSet<String>) {
    let before = d.text("-Ln --stats");
    write(&s.file, &toml(s.b, &steps[k]));
    let out = d.adm(&["--reload"]);
    assert_eq!(
        (out.status, out.stdout.as_str(), out.stderr.as_str()),
        (0, summary(&steps[k - 1], &steps[k]).as_str(), ""),
        "reload {k}"
    );
    check_listing(s.b, &d.text("-Ln"), &steps[k], k);
    let after = d.text("-Ln --stats");
    for vip in STEADY {
        let name = format!("TCP 127.{}.0.{vip}:80", s.b);
        let (x, y) = (
            conns_of(&before, &name, None),
            conns_of(&after, &name, None),
        );
        assert!(x <= y, "{name}: Conns went from {x} to {y} at reload {k}");
    }
    let now = templates(&d.text("-Lnc"));
    let lost: Vec<&String> = kept.difference(&now).collect();
    assert!(lost.is_empty(), "templates lost at reload {k}: {lost:?}");
}

#[test]
fn twenty_reloads_under_load_lose_nothing() {
    let steps = schedule();
    assert_eq!(steps.len(), 21);
    let (s, d) = setup("reload-load", 6, &steps[0]);
    let b = s.b;
    let stop = AtomicBool::new(false);
    let tallies = std::thread::scope(|scope| {
        let mut clients = Vec::new();
        for (n, vip) in STEADY.into_iter().enumerate() {
            for (m, keepalive) in [true, false].into_iter().enumerate() {
                let src = v4(b, 50, (10 * n + m + 1) as u8);
                let stop = &stop;
                clients.push(scope.spawn(move || client(b, vip, src, keepalive, stop)));
            }
        }
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_reloads(&d, &s, &steps)));
        stop.store(true, Ordering::SeqCst);
        let mut tallies: Vec<Tally> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        match result {
            // the held connections' search counts as a client of service 3
            Ok(held) => tallies.push(Tally {
                vip: 3,
                conns: held,
                ..Tally::default()
            }),
            Err(e) => std::panic::resume_unwind(e),
        }
        tallies
    });
    check_tallies(&d, b, &tallies);
    // the servers dropped from service 3 (4 and 5) leave the table within the grace period
    let last = &steps[20];
    let gone = poll_for(GRACE + Duration::from_secs(3), || {
        listing::dests(&d.text("-Ln")).len() == last.iter().map(|s| s.reals.len()).sum()
    });
    assert!(gone, "drained servers still listed:\n{}", d.text("-Ln"));
    check_listing(b, &d.text("-Ln"), last, 20);
}

/// The 20 reloads, 250 ms apart, with the held connection around [`HOLD_STEP`]; returns the
/// connections opened through service 3 to find one to hold.
fn run_reloads(d: &Director, s: &Setup, steps: &[Vec<Svc>]) -> u64 {
    std::thread::sleep(Duration::from_millis(500));
    let kept = templates(&d.text("-Lnc"));
    assert!(
        kept.iter()
            .any(|t| t.contains(&format!("127.{}.0.2:80", s.b))),
        "service 2 made no persistence template:\n{}",
        d.text("-Lnc")
    );
    let mut opened = 0;
    for k in 1..steps.len() {
        std::thread::sleep(Duration::from_millis(250));
        let held = (k == HOLD_STEP).then(|| hold_on(s.b, "rs5"));
        reload_step(d, s, steps, k, &kept);
        if let Some((h, n)) = held {
            drain_held(d, s.b, h, 5);
            opened += n;
        }
    }
    opened
}

/// Every client of a steady service: no failure, each VIP counted every connection (the
/// listing shows counters as sampled every 2 s, so once a sample has been taken), and the
/// persistent service kept each client on one real server.
///
/// A client port can come back while the entry of its previous connection is still in
/// TIME_WAIT. A persistent service's entries are controlled by their template, and IPVS
/// then takes the new connection over the old entry (`is_new_conn_expected`): it is not
/// counted again. So the persistent service counts the connections from new ports.
fn check_tallies(d: &Director, b: u8, tallies: &[Tally]) {
    for t in tallies {
        println!(
            "service {} client {:?}: {} connections ({} from a reused port), {} requests, servers {:?}, {} failures",
            t.vip, t.src, t.conns, t.reused, t.requests, t.servers, t.failures.len()
        );
        assert!(
            t.failures.is_empty(),
            "client {:?} of service {}: {} failures: {:?}",
            t.src,
            t.vip,
            t.failures.len(),
            t.failures
        );
        if t.src.is_some() {
            assert!(t.requests >= 20 && t.conns >= 10, "client {t:?} hardly ran");
        }
        if t.vip == 2 {
            assert_eq!(t.servers.len(), 1, "persistence broken for {t:?}");
        }
    }
    let made = |vip: u8| -> u64 {
        let reused = |t: &Tally| if vip == 2 { t.reused } else { 0 };
        tallies
            .iter()
            .filter(|t| t.vip == vip)
            .map(|t| t.conns - reused(t))
            .sum()
    };
    let listed = |stats: &str, vip: u8| conns_of(stats, &format!("TCP 127.{b}.0.{vip}:80"), None);
    poll_for(Duration::from_secs(5), || {
        let stats = d.text("-Ln --stats");
        STEADY.iter().all(|&v| listed(&stats, v) == made(v))
    });
    let stats = d.text("-Ln --stats");
    for vip in STEADY {
        assert_eq!(
            listed(&stats, vip),
            made(vip),
            "service {vip}: Conns against the connections the clients made"
        );
    }
}

/// The TOML file of the bad-file tests (`B` stands for the subnet); line numbers below
/// count in it.
const TOML: &str = r#"[director]
drain_grace = "3s"

[[service]]
address = "127.B.0.1:80"
scheduler = "rr"
persistence = { timeout = "300s" }
delay_loop = "1s"

[[service.server]]
address = "127.B.10.1:8080"
weight = 1

[[service.server.check]]
kind = "tcp"
"#;

/// keepalived.conf of the bad-file tests.
const KEEPALIVED: &str = "virtual_server 127.B.0.5 80 {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 127.B.10.2 8080 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
        }
    }
}
";

/// A malformed directive: the text replaced, its replacement, and the located message
/// (line, column, what).
type Bad = (&'static str, &'static str, u32, u32, &'static str);

/// Malformed directives of the TOML file.
const BAD_TOML: &[Bad] = &[
    (
        "scheduler = \"rr\"",
        "scheduler = \"rrr\"",
        6,
        13,
        "unknown scheduler \"rrr\" (known: rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh, twos, none)",
    ),
    (
        "weight = 1",
        "weight = -1",
        12,
        10,
        "weight -1 is out of range (0 to 2147483647)",
    ),
    (
        "weight = 1",
        "wieght = 1",
        12,
        1,
        "unknown field `wieght`, expected one of `address`, `forward`, `tunnel`, `weight`, `uthreshold`, `lthreshold`, `inhibit_on_failure`, `alpha`, `notify_up`, `notify_down`, `slow_start`, `proxy_protocol`, `delay_loop`, `connect_timeout`, `retry`, `delay_before_retry`, `warmup`, `check`",
    ),
    (
        "kind = \"tcp\"",
        "kind = \"tcpp\"",
        15,
        8,
        "unknown check kind \"tcpp\" (known: tcp, http, https, smtp, dns, udp, misc, ping)",
    ),
    (
        "drain_grace = \"3s\"",
        "drain_grace = \"3 parsecs\"",
        2,
        15,
        "invalid duration \"3 parsecs\": expected a number with ms, s, m or h (\"500ms\", \"5s\")",
    ),
    (
        "\"300s\" }",
        "\"300s\"",
        8,
        1,
        "missing comma between key-value pairs, expected `,`",
    ),
    (
        "scheduler = \"rr\"",
        "scheduler = \"rr\"\nscheduler = \"wrr\"",
        7,
        1,
        "duplicate key",
    ),
];

/// Malformed directives of keepalived.conf.
const BAD_KEEPALIVED: &[Bad] = &[
    (
        "lb_algo rr",
        "lb_algo bogus",
        3,
        13,
        "lb_algo bogus: unknown scheduler (one of rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh, twos)",
    ),
    (
        "weight 1",
        "weight abc",
        7,
        16,
        "weight abc: must be an integer from 0 to 2147483647",
    ),
    (
        "lb_kind NAT",
        "lb_kind XYZ",
        4,
        13,
        "lb_kind XYZ: must be NAT, DR or TUN",
    ),
    (
        "protocol TCP",
        "protocol ICMP",
        5,
        14,
        "protocol ICMP: must be TCP, UDP or SCTP",
    ),
    (
        "    }\n}\n",
        "    }\n",
        1,
        31,
        "unbalanced braces: this `{` is never closed",
    ),
];

/// Write `bad` over the good text at `path`, reload: exit 1 with exactly the located
/// message, and nothing changed.
fn refuse(d: &Director, path: &Path, good: &str, bad: &Bad) {
    let (from, to, line, col, what) = *bad;
    assert!(good.contains(from), "{from:?} not in the file");
    let before = snapshot(d);
    write(path, &good.replacen(from, to, 1));
    let out = d.adm(&["--reload"]);
    let msg = format!(
        "{}:{line}:{col}: {what}\nrvsd: reload refused, nothing changed\n",
        path.display()
    );
    assert_eq!(
        (out.status, out.stdout.as_str(), out.stderr.as_str()),
        (1, "", msg.as_str()),
        "{to:?}"
    );
    assert_eq!(
        snapshot(d),
        before,
        "a refused reload ({to:?}) changed the state"
    );
}

#[test]
fn a_bad_file_changes_nothing() {
    let b = subnet();
    let _servers: Vec<HttpServer> = (1..=2)
        .map(|i| HttpServer::start(sa(b, 10, i, RS_PORT), &format!("rs{i}")))
        .collect();
    let dir = TempDir::new("reload-bad");
    let (toml_path, ka_path) = (
        dir.path().join("rvs.toml"),
        dir.path().join("keepalived.conf"),
    );
    let sub = |t: &str| t.replace("127.B.", &format!("127.{b}."));
    let (good_toml, good_ka) = (sub(TOML), sub(KEEPALIVED));
    write(&toml_path, &good_toml);
    write(&ka_path, &good_ka);
    let d = Director::start(
        "reload-bad",
        &[
            "--config",
            toml_path.to_str().unwrap(),
            "--keepalived",
            ka_path.to_str().unwrap(),
        ],
    );
    assert!(
        poll_for(Duration::from_secs(5), || listing::dests(&d.text("-Ln"))
            .len()
            == 2),
        "rules not installed:\n{}",
        d.text("-Ln")
    );
    // an open connection and a persistence template in -Lnc
    let mut held = HttpClient::connect(v4(b, 50, 1), sa(b, 0, 1, 80)).expect("connect");
    assert_eq!(held.get(false), Ok("rs1".to_string()));
    for bad in BAD_TOML {
        refuse(&d, &toml_path, &good_toml, bad);
    }
    write(&toml_path, &good_toml);
    for bad in BAD_KEEPALIVED {
        refuse(&d, &ka_path, &good_ka, bad);
    }
    // the next good file is taken
    write(&ka_path, &good_ka.replace("weight 1", "weight 4"));
    let out = d.adm(&["--reload"]);
    assert_eq!(
        (out.status, out.stdout.as_str(), out.stderr.as_str()),
        (
            0,
            "reloaded: services 2 unchanged, 0 changed, 0 added, 0 removed; real servers 2 kept, 0 added, 0 draining\n",
            ""
        )
    );
    assert!(d
        .text("-Ln")
        .contains(&format!("127.{b}.10.2:8080            Masq    4")));
    assert_eq!(
        held.get(false),
        Ok("rs1".to_string()),
        "the held connection lives on"
    );
}

#[test]
fn sighup_reloads_as_rvsadm_does() {
    let b = subnet();
    let _servers: Vec<HttpServer> = (1..=2)
        .map(|i| HttpServer::start(sa(b, 10, i, RS_PORT), &format!("rs{i}")))
        .collect();
    let dir = TempDir::new("reload-hup");
    let path = dir.path().join("rvs.toml");
    let good = TOML.replace("127.B.", &format!("127.{b}."));
    write(&path, &good);
    let d = Director::start("reload-hup", &["--config", path.to_str().unwrap()]);
    assert!(poll_for(Duration::from_secs(5), || listing::dests(
        &d.text("-Ln")
    )
    .len()
        == 1));
    let hup = || {
        let st = std::process::Command::new("kill")
            .args(["-HUP", &d.pid().to_string()])
            .status()
            .unwrap();
        assert!(st.success(), "kill -HUP");
    };
    // a second real server and another scheduler
    let more = good.replace("\"rr\"", "\"wlc\"")
        + &format!("\n[[service.server]]\naddress = \"127.{b}.10.2:8080\"\n\n[[service.server.check]]\nkind = \"tcp\"\n");
    write(&path, &more);
    hup();
    let line = "reloaded: services 0 unchanged, 1 changed, 0 added, 0 removed; real servers 1 kept, 1 added, 0 draining";
    assert!(
        poll_for(Duration::from_secs(5), || d.log().contains(line)),
        "no {line:?} in the log"
    );
    let ln = d.text("-Ln");
    assert!(
        ln.contains(&format!("TCP  127.{b}.0.1:80 wlc persistent 300")),
        "{ln}"
    );
    assert_eq!(listing::dests(&ln).len(), 2, "{ln}");
    // a bad file: the error in the log, nothing changed
    let before = snapshot(&d);
    write(&path, &more.replace("weight = 1", "weight = -1"));
    hup();
    let err = format!(
        "reload refused, nothing changed: {}:12:10: weight -1 is out of range (0 to 2147483647)",
        path.display()
    );
    assert!(
        poll_for(Duration::from_secs(5), || d.log().contains(&err)),
        "no {err:?} in the log"
    );
    assert_eq!(snapshot(&d), before);
    // and back to the first file: the second server drains and goes
    write(&path, &good);
    hup();
    let line = "reloaded: services 0 unchanged, 1 changed, 0 added, 0 removed; real servers 1 kept, 0 added, 1 draining";
    assert!(poll_for(Duration::from_secs(5), || d.log().contains(line)));
    assert!(
        poll_for(GRACE + Duration::from_secs(3), || {
            listing::dests(&d.text("-Ln")).len() == 1
        }),
        "the dropped server is still listed:\n{}",
        d.text("-Ln")
    );
}

/// A real server dropped by one reload and declared again (here as a spare, weight 0) by the
/// next, while its connections still hold it in the table, is the file's again: it stays
/// after the grace period.
#[test]
fn a_server_declared_again_while_draining_stays() {
    let both = [svc(1, "rr", None, &[(1, 1), (2, 1)])];
    let (s, d) = setup("reload-again", 2, &both);
    let b = s.b;
    // connections to both servers (their entries outlive them: TIME_WAIT)
    for n in 0..4 {
        let mut c = HttpClient::connect(v4(b, 50, 1 + n), sa(b, 0, 1, 80)).expect("connect");
        c.get(true).expect("answer");
        c.expect_end().expect("clean end");
    }
    let one = [svc(1, "rr", None, &[(1, 1)])];
    let spare = [svc(1, "rr", None, &[(1, 1), (2, 0)])];
    for (conf, prev) in [(&one[..], &both[..]), (&spare[..], &one[..])] {
        write(&s.file, &toml(b, conf));
        let out = d.adm(&["--reload"]);
        assert_eq!((out.status, out.stdout), (0, summary(prev, conf)));
    }
    std::thread::sleep(GRACE + Duration::from_secs(1));
    check_listing(b, &d.text("-Ln"), &spare, 2);
}

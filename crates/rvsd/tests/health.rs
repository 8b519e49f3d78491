//! rvsd's health checker end to end: rvsd runs a keepalived.conf, an ldirectord.cf or an
//! rvs TOML file, real servers on loopback pass and fail their checks, and the tests watch
//! what an operator sees: `rvsadm -Ln`, the log, the notify scripts' output and where
//! connections through the VIP land. Timers are short (delay_loop 1 s) and every wait has a
//! deadline. Each test has its own `127.B.0.0/16` (B from 171 up, apart from the data-plane
//! tests' 201 up), so tests run in parallel.
#![deny(unsafe_code)]

mod common;
mod support;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use common::TempDir;
use support::director::Director;
use support::hc::{
    lines_of, log_lines, md5_hex, pool, until_logged, until_pool, want, write_file, HttpServer,
};
use support::net::{self, Got};
use support::servers::{Behavior, TcpServer};

/// Slack on every timing bound: rvsadm's start and listing in the poll loop (a process per
/// try, tens of milliseconds on a busy machine), the checker thread's wake-up and the probe's
/// own connect on loopback. Far below the one-second timers, so a missed retry or an extra
/// delay_loop still fails the bound.
const SLACK: Duration = Duration::from_millis(700);

/// A second octet no other test of this binary uses (171, 172, …).
fn subnet() -> u8 {
    static NEXT: AtomicU8 = AtomicU8::new(171);
    let b = NEXT.fetch_add(1, Ordering::SeqCst);
    assert!((171..201).contains(&b), "out of test subnets");
    b
}

/// Start rvsd on `flag FILE` with `text` written to `dir/name`.
fn director(tag: &str, dir: &Path, name: &str, flag: &str, text: &str) -> Director {
    let file = write_file(dir, name, text);
    Director::start(tag, &[flag, &file.to_string_lossy()])
}

/// Which server answered `n` connections from `src` to `vip` (their greeting's first word).
fn landings(src: IpAddr, vip: SocketAddr, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| match net::ask(src, vip) {
            Got::Line(l) => l.split_whitespace().next().unwrap_or("").to_string(),
            other => panic!("no answer through {vip}: {other:?}"),
        })
        .collect()
}

/// Wait until `server` has accepted a connection (a probe reached it).
fn until_probed(server: &TcpServer) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.seen().is_empty() {
        assert!(Instant::now() < deadline, "{} never probed", server.addr);
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The keepalived TCP_CHECK of these tests: one retry, one-second timers.
const TCP_CHECK: &str = "TCP_CHECK {
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }";

/// keepalived TCP_CHECK: a killed server leaves `-Ln` no sooner than one
/// delay_before_retry (its retry) and no later than delay_loop × (retry + 1) +
/// delay_before_retry; no connection through the VIP reaches it then; restarted, it is back
/// with its weight within one delay_loop (one success). Each transition is one log line
/// with its reason, and the notify scripts run with the arguments the file gives them.
#[test]
fn tcp_check_kill_and_restart_within_the_bounds() {
    let b = subnet();
    let dir = TempDir::new("hc-tcp");
    let (a1, a2) = (net::sa(b, 10, 1, 8001), net::sa(b, 10, 2, 8002));
    let mut rs1 = Some(TcpServer::start(a1, "rs1", Behavior::Greet));
    let rs2 = TcpServer::start(a2, "rs2", Behavior::Greet);
    let notes = dir.path().join("notes");
    let notify = write_file(
        dir.path(),
        "notify.sh",
        &format!("printf '%s|' \"$@\" >> {0}\necho >> {0}\n", notes.display()),
    );
    let n = notify.display();
    let conf = format!(
        "virtual_server 127.{b}.0.1 80 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server {} {} {{
        weight 3
        notify_up \"/bin/sh {n} UP 'rs one' {a1}\"
        notify_down \"/bin/sh {n} DOWN 'rs one' {a1}\"
        {TCP_CHECK}
    }}
    real_server {} {} {{
        weight 1
        {TCP_CHECK}
    }}
}}
",
        a1.ip(),
        a1.port(),
        a2.ip(),
        a2.port()
    );
    let d = director(
        "hc-tcp",
        dir.path(),
        "keepalived.conf",
        "--keepalived",
        &conf,
    );
    let svc = format!("TCP 127.{b}.0.1:80");
    let vip = net::sa(b, 0, 1, 80);
    let both = want(&[(&a1.to_string(), 3), (&a2.to_string(), 1)]);
    until_pool(&d, &svc, &both, Duration::from_secs(3));
    until_probed(rs1.as_ref().unwrap());

    // delay_loop 1 × (retry 1 + 1) + delay_before_retry 1
    let bound = Duration::from_secs(3);
    let killed = Instant::now();
    drop(rs1.take());
    let only2 = want(&[(&a2.to_string(), 1)]);
    until_pool(&d, &svc, &only2, bound + SLACK);
    let took = killed.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "out after {took:?}: without waiting for its retry"
    );
    assert!(took <= bound + SLACK, "out after {took:?}, bound {bound:?}");
    let src = net::v4(b, 50, 1);
    assert_eq!(
        landings(src, vip, 6),
        vec!["rs2"; 6],
        "traffic while rs1 is out"
    );

    let _rs1 = TcpServer::start(a1, "rs1", Behavior::Greet);
    let restarted = Instant::now();
    until_pool(&d, &svc, &both, Duration::from_secs(1) + SLACK);
    let back = restarted.elapsed();
    assert!(
        back <= Duration::from_secs(1) + SLACK,
        "back after {back:?}"
    );
    let mut got = landings(src, vip, 8);
    got.sort();
    assert!(
        got.contains(&"rs1".to_string()),
        "rs1 back in rotation: {got:?}"
    );
    assert!(!rs2.seen().is_empty());

    let label = format!("real server {a1} of {svc}");
    let down = log_lines(&d, &[&label, "down:"]);
    assert_eq!(
        down.len(),
        1,
        "one line for the transition: {down:?}\n{}",
        d.log()
    );
    assert!(
        down[0].ends_with("down: TCP_CHECK connection refused after 1 retry"),
        "{down:?}"
    );
    let up = log_lines(&d, &[&label, "up:"]);
    assert_eq!(up.len(), 1, "{up:?}");
    assert!(up[0].ends_with("up: TCP_CHECK passed"), "{up:?}");
    assert!(log_lines(&d, &[&format!("real server {a2}")]).is_empty());

    let expect = vec![format!("DOWN|rs one|{a1}|"), format!("UP|rs one|{a1}|")];
    let deadline = Instant::now() + Duration::from_secs(3);
    while lines_of(&notes) != expect && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(lines_of(&notes), expect, "notify_down then notify_up");
}

/// One keepalived real server with an HTTP_GET / SSL_GET of `url_body` (retry 0).
fn http_real(a: SocketAddr, kind: &str, url_body: &str) -> String {
    format!(
        "    real_server {} {} {{
        weight 1
        {kind} {{
            url {{
                path /health
                {url_body}
            }}
            connect_timeout 1
            retry 0
            delay_before_retry 1
        }}
    }}
",
        a.ip(),
        a.port()
    )
}

/// HTTP_GET and SSL_GET: a 503 takes a server out unless `status_code` accepts it; a
/// `digest` that differs from the body's MD5 takes it out, the right one keeps it in; and
/// each server whose answer changes follows it (back in, or out).
#[test]
fn http_and_ssl_get_status_codes_and_digests() {
    let b = subnet();
    let dir = TempDir::new("hc-http");
    let addr = |i: u8| net::sa(b, 10, i, 8080);
    let body = "hello from the health page\n";
    let servers = [
        HttpServer::start(addr(1), 503, body, false),
        HttpServer::start(addr(2), 503, body, false),
        HttpServer::start(addr(3), 200, body, false),
        HttpServer::start(addr(4), 200, body, false),
        HttpServer::start(addr(5), 200, body, true),
        HttpServer::start(addr(6), 500, body, true),
    ];
    let good = md5_hex(body);
    let other = md5_hex("another page");
    let reals = [
        http_real(addr(1), "HTTP_GET", ""),
        http_real(addr(2), "HTTP_GET", "status_code 503"),
        http_real(addr(3), "HTTP_GET", &format!("digest {other}")),
        http_real(addr(4), "HTTP_GET", &format!("digest {good}")),
        http_real(addr(5), "SSL_GET", &format!("digest {good}")),
        http_real(addr(6), "SSL_GET", ""),
    ];
    let conf = format!(
        "virtual_server 127.{b}.0.1 80 {{\n    delay_loop 1\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n{}}}\n",
        reals.concat()
    );
    let d = director(
        "hc-http",
        dir.path(),
        "keepalived.conf",
        "--keepalived",
        &conf,
    );
    let svc = format!("TCP 127.{b}.0.1:80");
    let listed = |ids: &[u8]| -> Vec<(String, i64)> {
        let rows: Vec<(String, i64)> = ids.iter().map(|&i| (addr(i).to_string(), 1)).collect();
        let refs: Vec<(&str, i64)> = rows.iter().map(|(a, w)| (a.as_str(), *w)).collect();
        want(&refs)
    };
    // all start in (no alpha); those failing leave after their first probe (warmup ≤ 1 s)
    for s in &servers {
        until_probed_http(s, 1, Duration::from_secs(1) + SLACK);
    }
    until_pool(&d, &svc, &listed(&[2, 4, 5]), SLACK);
    let reason = |i: u8| {
        let label = format!("real server {} of {svc} down:", addr(i));
        let lines = log_lines(&d, &[&label]);
        assert_eq!(lines.len(), 1, "{label} {lines:?}");
        lines[0].split_once(" down: ").unwrap().1.to_string()
    };
    assert_eq!(reason(1), "HTTP_GET /health: status 503 (expected 200-299)");
    assert_eq!(
        reason(3),
        format!("HTTP_GET /health: digest {good} (expected {other})")
    );
    assert_eq!(reason(6), "SSL_GET /health: status 500 (expected 200-299)");
    // still in after more probes than one
    let asked = servers[1].served();
    let limit = Duration::from_secs(1) + SLACK;
    until_probed_http(&servers[1], asked + 1, limit);
    until_probed_http(&servers[3], servers[3].served() + 1, limit);
    assert_eq!(pool(&d, &svc), listed(&[2, 4, 5]));

    // the answers change: 1 and 6 recover, 4's page changes under its digest
    servers[0].set(200, body);
    servers[5].set(204, "");
    servers[3].set(200, "a new page\n");
    until_pool(
        &d,
        &svc,
        &listed(&[1, 2, 5, 6]),
        Duration::from_secs(1) + SLACK,
    );
    let changed = reason(4);
    assert!(
        changed.starts_with("HTTP_GET /health: digest "),
        "{changed}"
    );
    for i in [1, 6] {
        let kind = if i == 6 { "SSL_GET" } else { "HTTP_GET" };
        let label = format!("real server {} of {svc} up: {kind} passed", addr(i));
        assert_eq!(log_lines(&d, &[&label]).len(), 1, "{label}\n{}", d.log());
    }
}

/// Wait (at most `limit`) until `s` has answered `n` requests.
fn until_probed_http(s: &HttpServer, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while s.served() < n {
        assert!(Instant::now() < deadline, "{} not asked again", s.addr);
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// MISC_CHECK: the script's exit status decides (it exits with the number in a file the test
/// writes): 0 in, 1 out; with `misc_dynamic`, 2 + N keeps the server with weight N, as `-Ln`
/// shows.
#[test]
fn misc_check_exit_codes_and_dynamic_weights() {
    let b = subnet();
    let dir = TempDir::new("hc-misc");
    let script = write_file(dir.path(), "check.sh", "read c < \"$1\"\nexit \"$c\"\n");
    let code = |n: u8, c: u8| write_file(dir.path(), &format!("code{n}"), &format!("{c}\n"));
    let (c1, c2) = (code(1, 0), code(2, 0));
    let (a1, a2) = (net::sa(b, 10, 1, 8001), net::sa(b, 10, 2, 8002));
    let real = |a: SocketAddr, w: u8, file: &Path, dynamic: &str| {
        format!(
            "    real_server {} {} {{
        weight {w}
        MISC_CHECK {{
            misc_path \"/bin/sh {} {}\"
            misc_timeout 2
            {dynamic}
            retry 0
        }}
    }}
",
            a.ip(),
            a.port(),
            script.display(),
            file.display()
        )
    };
    let conf = format!(
        "virtual_server 127.{b}.0.1 80 {{\n    delay_loop 1\n    lb_algo wrr\n    lb_kind NAT\n    protocol TCP\n{}{}}}\n",
        real(a1, 3, &c1, ""),
        real(a2, 5, &c2, "misc_dynamic")
    );
    let d = director(
        "hc-misc",
        dir.path(),
        "keepalived.conf",
        "--keepalived",
        &conf,
    );
    let svc = format!("TCP 127.{b}.0.1:80");
    let (s1, s2) = (a1.to_string(), a2.to_string());
    let step = Duration::from_secs(2) + SLACK;
    until_pool(&d, &svc, &want(&[(&s1, 3), (&s2, 5)]), step);

    code(2, 9);
    until_pool(&d, &svc, &want(&[(&s1, 3), (&s2, 7)]), step);
    code(1, 1);
    until_pool(&d, &svc, &want(&[(&s2, 7)]), step);
    code(2, 2);
    until_pool(&d, &svc, &want(&[(&s2, 0)]), step);
    code(1, 0);
    code(2, 1);
    until_pool(&d, &svc, &want(&[(&s1, 3)]), step);
    code(2, 0);
    until_pool(&d, &svc, &want(&[(&s1, 3), (&s2, 5)]), step);

    let of = |a: &str| format!("real server {a} of {svc}");
    let lines = |a: &str, what: &str| log_lines(&d, &[&of(a), what]);
    assert_eq!(
        lines(&s2, " weight ").len(),
        2,
        "5 -> 7, 7 -> 0:\n{}",
        d.log()
    );
    assert!(lines(&s2, "weight 5 -> 7 (MISC_CHECK)").len() == 1);
    assert!(lines(&s2, "weight 7 -> 0 (MISC_CHECK)").len() == 1);
    let down1 = lines(&s1, " down: ");
    assert_eq!(down1.len(), 1, "{down1:?}");
    assert!(down1[0].ends_with("down: MISC_CHECK /bin/sh exited with 1"));
    assert_eq!(lines(&s1, " up: MISC_CHECK passed").len(), 1);
    assert_eq!(
        lines(&s2, " down: MISC_CHECK /bin/sh exited with 1").len(),
        1
    );
    assert_eq!(lines(&s2, " up: MISC_CHECK passed").len(), 1);
}

/// Quorum with hysteresis and the sorry server, two services over the same two servers of
/// weight 2 (total 4), quorum 3:
/// - A, hysteresis 1: quorum is lost below 3 − 1 and gained at 3 + 1 (keepalived's
///   `update_quorum_state`), so losing one server (weight 2) keeps it; losing both brings
///   the sorry server in; one server back (2 < 4) keeps the sorry server; both back remove it.
/// - B, hysteresis 0, `sorry_server_inhibit`, rs1 `inhibit_on_failure`: losing one server
///   (2 < 3) brings the sorry server in and takes rs2 out, rs1 stays with weight 0; back,
///   the sorry server stays listed with weight 0.
///
/// Connections through B's VIP reach the sorry server while it is in.
#[test]
fn quorum_hysteresis_sorry_server_and_inhibit() {
    let b = subnet();
    let dir = TempDir::new("hc-quorum");
    let (a1, a2, sa) = (
        net::sa(b, 10, 1, 8001),
        net::sa(b, 10, 2, 8002),
        net::sa(b, 10, 9, 8009),
    );
    let mut rs1 = Some(TcpServer::start(a1, "rs1", Behavior::Greet));
    let mut rs2 = Some(TcpServer::start(a2, "rs2", Behavior::Greet));
    let _sorry = TcpServer::start(sa, "sorry", Behavior::Greet);
    let real = |a: SocketAddr, extra: &str| {
        format!(
            "    real_server {} {} {{\n        weight 2\n        {extra}\n        TCP_CHECK {{\n            connect_timeout 1\n            retry 0\n        }}\n    }}\n",
            a.ip(),
            a.port()
        )
    };
    let vs = |port: u16, opts: &str, inhibit1: &str| {
        format!(
            "virtual_server 127.{b}.0.1 {port} {{\n    delay_loop 1\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n    quorum 3\n    sorry_server {} {}\n{opts}{}{}}}\n",
            sa.ip(),
            sa.port(),
            real(a1, inhibit1),
            real(a2, "")
        )
    };
    let conf = vs(80, "    hysteresis 1\n", "")
        + &vs(
            81,
            "    hysteresis 0\n    sorry_server_inhibit\n",
            "inhibit_on_failure",
        );
    let d = director(
        "hc-quorum",
        dir.path(),
        "keepalived.conf",
        "--keepalived",
        &conf,
    );
    let (sva, svb) = (format!("TCP 127.{b}.0.1:80"), format!("TCP 127.{b}.0.1:81"));
    let (s1, s2, ss) = (a1.to_string(), a2.to_string(), sa.to_string());
    let step = Duration::from_secs(2) + SLACK;
    let full = want(&[(&s1, 2), (&s2, 2)]);
    until_pool(&d, &sva, &full, step);
    until_pool(&d, &svb, &want(&[(&s1, 2), (&s2, 2), (&ss, 0)]), step);
    until_probed(rs1.as_ref().unwrap());

    drop(rs1.take());
    until_pool(&d, &svb, &want(&[(&s1, 0), (&ss, 1)]), step);
    until_pool(&d, &sva, &want(&[(&s2, 2)]), step);
    let src = net::v4(b, 50, 1);
    let vip_b = net::sa(b, 0, 1, 81);
    assert_eq!(landings(src, vip_b, 4), vec!["sorry"; 4]);

    drop(rs2.take());
    until_pool(&d, &sva, &want(&[(&ss, 1)]), step);
    // B's own check of rs2 must have seen it go too, or rs1's return below could meet a B
    // that still counts rs2 (and gains, then loses its quorum again)
    until_logged(&d, &[&format!("real server {s2} of {svb} down")], step);
    let lost_a = log_lines(&d, &[&format!("{sva} lost quorum"), "sorry server"]);
    assert_eq!(lost_a.len(), 1, "{lost_a:?}");
    assert!(
        lost_a[0].ends_with(&format!(
            "lost quorum: weight 0 < 3-1, sorry server {ss} added"
        )),
        "{lost_a:?}"
    );

    let _rs1 = TcpServer::start(a1, "rs1", Behavior::Greet);
    let up1 = format!("real server {s1} of {sva} up");
    until_logged(&d, &[&up1], step);
    assert_eq!(pool(&d, &sva), want(&[(&ss, 1)]), "2 < 3 + 1: still sorry");
    let _rs2 = TcpServer::start(a2, "rs2", Behavior::Greet);
    until_pool(&d, &sva, &full, step);
    until_pool(&d, &svb, &want(&[(&s1, 2), (&s2, 2), (&ss, 0)]), step);
    let mut got = landings(src, vip_b, 4);
    got.sort();
    assert_eq!(got, vec!["rs1", "rs1", "rs2", "rs2"]);

    let gained = log_lines(&d, &[&format!("{sva} gained quorum")]);
    assert_eq!(gained.len(), 1, "{gained:?}");
    assert!(
        gained[0].ends_with(&format!(
            "gained quorum: weight 4 >= 3+1, sorry server {ss} removed"
        )),
        "{gained:?}"
    );
    let lost_b = log_lines(&d, &[&format!("{svb} lost quorum")]);
    assert_eq!(lost_b.len(), 1, "{lost_b:?}\n{}", d.log());
    assert!(lost_b[0].ends_with(&format!(
        "lost quorum: weight 2 < 3-0, sorry server {ss} added"
    )));
}

/// ldirectord.cf: `checktype = negotiate` (HTTP `request` / `receive`) and `connect`,
/// `quiescent = yes` (a failed server stays with weight 0), `failurecount = 2` (out after
/// two failures one `checkinterval` apart, not one), and the `fallback` server, in only
/// while every real server is down; connections reach it then.
#[test]
fn ldirectord_negotiate_connect_quiescent_fallback_failurecount() {
    let b = subnet();
    let dir = TempDir::new("hc-ld");
    let (a1, a2, a3, fb) = (
        net::sa(b, 10, 1, 8080),
        net::sa(b, 10, 2, 8080),
        net::sa(b, 10, 3, 8003),
        net::sa(b, 10, 9, 8009),
    );
    let h1 = HttpServer::start(a1, 200, "status: OK\n", false);
    let h2 = HttpServer::start(a2, 200, "status: OK\n", false);
    let mut rs3 = Some(TcpServer::start(a3, "rs3", Behavior::Greet));
    let _fallback = TcpServer::start(fb, "fallback", Behavior::Greet);
    let cf = format!(
        "checkinterval = 1
checktimeout = 1
failurecount = 2
quiescent = yes

virtual = 127.{b}.0.1:80
    real = {a1} masq 2
    real = {a2} masq 3
    fallback = {fb} masq
    scheduler = wrr
    checktype = negotiate
    service = http
    request = \"health\"
    receive = \"OK\"

virtual = 127.{b}.0.1:81
    real = {a3} masq 1
    scheduler = rr
    checktype = connect
"
    );
    let d = director("hc-ld", dir.path(), "ldirectord.cf", "--ldirectord", &cf);
    let (sv80, sv81) = (format!("TCP 127.{b}.0.1:80"), format!("TCP 127.{b}.0.1:81"));
    let (s1, s2, s3, sf) = (
        a1.to_string(),
        a2.to_string(),
        a3.to_string(),
        fb.to_string(),
    );
    let step = Duration::from_secs(2) + SLACK;
    until_pool(&d, &sv80, &want(&[(&s1, 2), (&s2, 3)]), step);
    until_pool(&d, &sv81, &want(&[(&s3, 1)]), step);

    // two failures one checkinterval apart: at least 1 s, at most 2 s after the change
    h1.set(200, "status: BAD\n");
    let t = Instant::now();
    until_pool(&d, &sv80, &want(&[(&s1, 0), (&s2, 3)]), step);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took <= step,
        "weight 0 after {took:?}"
    );
    h2.set(500, "status: OK\n");
    until_pool(&d, &sv80, &want(&[(&s1, 0), (&s2, 0), (&sf, 1)]), step);
    let src = net::v4(b, 50, 1);
    let vip80 = net::sa(b, 0, 1, 80);
    assert_eq!(landings(src, vip80, 4), vec!["fallback"; 4]);
    h1.set(200, "status: OK\n");
    until_pool(&d, &sv80, &want(&[(&s1, 2), (&s2, 0)]), step);

    drop(rs3.take());
    until_pool(
        &d,
        &sv81,
        &want(&[(&s3, 0)]),
        Duration::from_secs(3) + SLACK,
    );
    let _rs3 = TcpServer::start(a3, "rs3", Behavior::Greet);
    until_pool(&d, &sv81, &want(&[(&s3, 1)]), step);

    let down = |a: &str, svc: &str| log_lines(&d, &[&format!("real server {a} of {svc} down:")]);
    for (a, svc) in [(&s1, &sv80), (&s2, &sv80), (&s3, &sv81)] {
        let lines = down(a, svc);
        assert_eq!(lines.len(), 1, "{a}: {lines:?}\n{}", d.log());
        assert!(
            lines[0].ends_with("after 1 retry, inhibited (weight 0)"),
            "{lines:?}"
        );
    }
    assert!(down(&s2, &sv80)[0].contains("status 500"));
    assert!(down(&s3, &sv81)[0].contains("TCP_CHECK connection refused"));
    let fb_in = log_lines(&d, &[&format!("{sv80} lost quorum"), "added"]);
    assert_eq!(fb_in.len(), 1, "{fb_in:?}");
    // servers start down (ldirectord checks before adding): the fallback is in until the
    // first pass, and again while both are down
    let start = log_lines(&d, &[&format!("{sv80} starting with quorum down"), "added"]);
    assert_eq!(start.len(), 1, "{start:?}");
    let fb_out = log_lines(&d, &[&format!("{sv80} gained quorum"), "removed"]);
    assert_eq!(fb_out.len(), 2, "{fb_out:?}");
}

/// The rvs TOML file: a service with TCP checks and `inhibit_on_failure` behaves as the
/// keepalived file does — a killed server goes to weight 0 after its retry and within
/// delay_loop × (retry + 1) + delay_before_retry, gets no connection through the VIP, and is
/// back with its weight after one success.
#[test]
fn rvs_toml_service_with_checks() {
    let b = subnet();
    let dir = TempDir::new("hc-toml");
    let (a1, a2) = (net::sa(b, 10, 1, 8001), net::sa(b, 10, 2, 8002));
    let mut rs1 = Some(TcpServer::start(a1, "rs1", Behavior::Greet));
    let _rs2 = TcpServer::start(a2, "rs2", Behavior::Greet);
    let toml = format!(
        "[[service]]
address = \"127.{b}.0.1:80\"
scheduler = \"rr\"
delay_loop = \"1s\"
connect_timeout = \"1s\"
retry = 1
delay_before_retry = \"1s\"
inhibit_on_failure = true

[[service.server]]
address = \"{a1}\"
weight = 4

[[service.server.check]]
kind = \"tcp\"

[[service.server]]
address = \"{a2}\"
weight = 1

[[service.server.check]]
kind = \"tcp\"
"
    );
    let d = director("hc-toml", dir.path(), "rvs.toml", "--config", &toml);
    let svc = format!("TCP 127.{b}.0.1:80");
    let (s1, s2) = (a1.to_string(), a2.to_string());
    let both = want(&[(&s1, 4), (&s2, 1)]);
    until_pool(&d, &svc, &both, Duration::from_secs(3));
    until_probed(rs1.as_ref().unwrap());

    let bound = Duration::from_secs(3);
    let killed = Instant::now();
    drop(rs1.take());
    until_pool(&d, &svc, &want(&[(&s1, 0), (&s2, 1)]), bound + SLACK);
    let took = killed.elapsed();
    assert!(took >= Duration::from_secs(1), "weight 0 after {took:?}");
    let src = net::v4(b, 50, 1);
    assert_eq!(landings(src, net::sa(b, 0, 1, 80), 6), vec!["rs2"; 6]);

    let _rs1 = TcpServer::start(a1, "rs1", Behavior::Greet);
    until_pool(&d, &svc, &both, Duration::from_secs(1) + SLACK);
    let label = format!("real server {s1} of {svc}");
    let down = log_lines(&d, &[&label, " down: "]);
    assert_eq!(down.len(), 1, "{down:?}");
    assert!(
        down[0].ends_with("down: TCP_CHECK connection refused after 1 retry, inhibited (weight 0)")
    );
    assert_eq!(log_lines(&d, &[&label, " up: TCP_CHECK passed"]).len(), 1);
}

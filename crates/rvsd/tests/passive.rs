//! Passive health end to end: a real server that passes its TCP check but resets every
//! relayed connection is ejected by the data plane's reports, for the configured backoff,
//! and `rvsadm --health` shows it; a healthy neighbour keeps serving.
#![deny(unsafe_code)]

mod common;
mod support;

use std::time::Duration;

use support::director::Director;
use support::net::{self, greeting, Got};
use support::servers::{Behavior, TcpServer};
use support::wait::poll_for;

#[test]
fn resets_eject_a_server_for_its_backoff_and_health_shows_it() {
    let b = net::subnet();
    let good = TcpServer::start(net::sa(b, 10, 1, 0), "good", Behavior::Greet);
    let bad = TcpServer::start(net::sa(b, 10, 2, 0), "bad", Behavior::Reset);
    let vip = net::sa(b, 50, 100, 8080);
    let dir = common::TempDir::new("passive");
    let conf = dir.path().join("rvs.toml");
    let server = |a: std::net::SocketAddr| {
        format!(
            "[[service.server]]\naddress = \"{a}\"\ncheck = [{{ kind = \"tcp\", delay_loop = \"1s\", connect_timeout = \"1s\" }}]\n"
        )
    };
    std::fs::write(
        &conf,
        format!(
            "[[service]]\naddress = \"{vip}\"\nscheduler = \"rr\"\n\
             passive = {{ failures = 3, backoff = \"3s\", max_backoff = \"10s\", max_ejected_percent = 50 }}\n{}{}",
            server(good.addr),
            server(bad.addr)
        ),
    )
    .unwrap();
    let d = Director::start(
        "passive",
        &["--config", conf.to_str().unwrap(), "--workers", "1"],
    );
    let listed = |d: &Director| d.adm(&["-Ln"]).stdout;
    assert!(
        poll_for(Duration::from_secs(5), || listed(&d)
            .contains(&bad.addr.to_string())),
        "both servers in service"
    );
    // round robin alternates: the bad server resets its connections until it is ejected
    let client = net::v4(b, 50, 1);
    let mut greeted = 0;
    for _ in 0..10 {
        if let Got::Line(l) = net::ask(client, vip) {
            assert!(l.starts_with("good"), "{l}");
            greeted += 1;
        }
    }
    assert!(greeted >= 5, "the good server kept serving: {greeted}");
    assert!(
        poll_for(Duration::from_secs(3), || !listed(&d)
            .contains(&bad.addr.to_string())),
        "not ejected:\n{}",
        listed(&d)
    );
    assert!(
        d.log().contains(&format!(
        "real server {} of TCP {vip} ejected for 3s: 3 consecutive connection failures or resets",
        bad.addr
    )),
        "{}",
        d.log()
    );
    let health = d.adm(&["--health"]);
    assert!(health.stdout.contains("ejected for"), "{health:?}");
    let json = d.adm(&["--health", "--json"]).stdout;
    assert!(
        json.contains("\"ejected_ms\":") && json.contains("\"quorum_up\":true"),
        "{json}"
    );
    // while ejected, every connection goes to the good server
    for _ in 0..4 {
        let mut c = net::connect_from(client, 0, vip).unwrap();
        assert!(greeting(&mut c).starts_with("good"));
    }
    // the backoff ends and its TCP check still passes: it is back
    assert!(
        poll_for(Duration::from_secs(6), || listed(&d)
            .contains(&bad.addr.to_string())),
        "back after the backoff"
    );
    // the line is written once the change is made: the listing may show it first
    let back = format!("real server {} of TCP {vip} back from ejection", bad.addr);
    assert!(
        poll_for(Duration::from_secs(2), || d.log().contains(&back)),
        "{}",
        d.log()
    );
}

/// The files own their services from the start: a real server the state file restored but
/// the checker does not want yet (`alpha`, its check failing) leaves the table at once.
#[test]
fn a_restored_server_the_checker_does_not_want_is_removed_at_start() {
    let b = net::subnet();
    let good = TcpServer::start(net::sa(b, 10, 1, 0), "good", Behavior::Greet);
    let dead = std::net::TcpListener::bind(net::sa(b, 10, 2, 0)).unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let vip = net::sa(b, 50, 100, 8080);
    let dir = common::TempDir::new("restored");
    let state = dir.path().join("rules");
    std::fs::write(
        &state,
        format!(
            "-A -t {vip} -s rr\n-a -t {vip} -r {} -m -w 1\n-a -t {vip} -r {dead_addr} -m -w 1\n",
            good.addr
        ),
    )
    .unwrap();
    let conf = dir.path().join("rvs.toml");
    let server = |a: std::net::SocketAddr| {
        format!(
            "[[service.server]]\naddress = \"{a}\"\nalpha = true\ncheck = [{{ kind = \"tcp\", delay_loop = \"1s\", connect_timeout = \"1s\" }}]\n"
        )
    };
    std::fs::write(
        &conf,
        format!(
            "[[service]]\naddress = \"{vip}\"\nscheduler = \"rr\"\n{}{}",
            server(good.addr),
            server(dead_addr)
        ),
    )
    .unwrap();
    let d = Director::start(
        "restored",
        &[
            "--config",
            conf.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
        ],
    );
    // the good server passes its first check and is in; the dead one never gets in again
    assert!(
        poll_for(Duration::from_secs(5), || {
            let ln = d.adm(&["-Ln"]).stdout;
            ln.contains(&good.addr.to_string()) && !ln.contains(&dead_addr.to_string())
        }),
        "{}",
        d.adm(&["-Ln"]).stdout
    );
    assert!(d.log().contains(&format!(
        "real server {dead_addr} of TCP {vip} removed: not in the checker's starting table"
    )));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!d.adm(&["-Ln"]).stdout.contains(&dead_addr.to_string()));
}

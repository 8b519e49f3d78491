//! rvsd and rvsadm together: commands through the socket, ipvsadm's texts and statuses,
//! listings equal to what rvs-config renders, save/restore, the state file, the socket's
//! mode, signals, and a DR init script run literally.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use common::{rvsadm, wait_timeout, Daemon, TempDir};
use rvs_config::{render, ListOpts, NoNames};
use rvs_core::ipvs::{Config, Ipvs};
use rvs_core::model::{DestConf, Family, Forward, Protocol, ServiceConf, ServiceKey};

fn ok(out: &common::Out) {
    assert_eq!((out.status, out.stderr.as_str()), (0, ""), "{out:?}");
}

fn err(out: &common::Out, status: i32, stderr: &str) {
    assert_eq!(
        (out.status, out.stderr.as_str(), out.stdout.as_str()),
        (status, stderr, "")
    );
}

#[test]
fn add_edit_delete_with_ipvsadm_errors() {
    let dir = TempDir::new("crud");
    let d = Daemon::start(&dir.path().join("rvsd.sock"), &[]);
    ok(&d.adm(&["-A", "-t", "10.0.0.1:80", "-s", "rr"]));
    err(
        &d.adm(&["-A", "-t", "10.0.0.1:80"]),
        255,
        "Service already exists\n",
    );
    ok(&d.adm(&[
        "-a",
        "-t",
        "10.0.0.1:80",
        "-r",
        "10.0.1.1:8080",
        "-m",
        "-w",
        "2",
    ]));
    err(
        &d.adm(&["-a", "-t", "10.0.0.1:80", "-r", "10.0.1.1:8080", "-m"]),
        255,
        "Destination already exists\n",
    );
    err(
        &d.adm(&["-a", "-t", "10.9.9.9:80", "-r", "10.0.1.1"]),
        255,
        "Service not defined\n",
    );
    ok(&d.adm(&[
        "-e",
        "-t",
        "10.0.0.1:80",
        "-r",
        "10.0.1.1:8080",
        "-m",
        "-w",
        "7",
    ]));
    err(
        &d.adm(&["-e", "-t", "10.0.0.1:80", "-r", "10.0.1.2:80", "-m"]),
        255,
        "No such destination\n",
    );
    ok(&d.adm(&["-E", "-t", "10.0.0.1:80", "-s", "wlc", "-p", "60"]));
    err(
        &d.adm(&["-E", "-t", "10.0.0.2:80"]),
        255,
        "No such service\n",
    );
    err(
        &d.adm(&["-A", "-t", "10.0.0.3:80", "-s", "nope"]),
        255,
        "Scheduler or persistence engine not found\n",
    );
    let listed = d.adm(&["-Ln"]);
    ok(&listed);
    assert!(
        listed
            .stdout
            .contains("TCP  10.0.0.1:80 wlc persistent 60\n"),
        "{}",
        listed.stdout
    );
    assert!(listed
        .stdout
        .contains("  -> 10.0.1.1:8080                Masq    7      0          0         \n"));
    ok(&d.adm(&["-d", "-t", "10.0.0.1:80", "-r", "10.0.1.1:8080"]));
    err(
        &d.adm(&["-d", "-t", "10.0.0.1:80", "-r", "10.0.1.1:8080"]),
        255,
        "No such destination\n",
    );
    ok(&d.adm(&["-D", "-t", "10.0.0.1:80"]));
    err(
        &d.adm(&["-D", "-t", "10.0.0.1:80"]),
        255,
        "No such service\n",
    );
    err(
        &d.adm(&["-L", "-n", "-t", "10.0.0.1:80"]),
        1,
        "No such service\n",
    );
    // decided by the parser, as ipvsadm decides them
    err(
        &d.adm(&["-A", "-t", "10.0.0.1"]),
        2,
        "Zero port specified for non-persistent service\n",
    );
    err(
        &d.adm(&["-x"]),
        255,
        "Try `rvsadm -h' or 'rvsadm --help' for more information.\n",
    );
    err(&d.adm(&["-A", "--frob"]), 255, "--frob: unknown option\n");
    assert_eq!(d.stop().code(), Some(0));
}

fn build_reference() -> Ipvs {
    let mut ipvs = Ipvs::new(Config::default());
    let web = ServiceKey::Addr {
        proto: Protocol::Tcp,
        addr: "192.168.1.100".parse().unwrap(),
        port: 80,
    };
    let dns = ServiceKey::Addr {
        proto: Protocol::Udp,
        addr: "192.168.1.100".parse().unwrap(),
        port: 53,
    };
    ipvs.add_service(web, ServiceConf::new(Family::V4, "wrr"))
        .unwrap();
    ipvs.add_service(dns, ServiceConf::new(Family::V4, "rr"))
        .unwrap();
    for (a, w) in [("10.1.0.2", 3), ("10.1.0.10", 1)] {
        ipvs.add_dest(
            &web,
            DestConf::new(a.parse().unwrap(), 8080)
                .fwd(Forward::Masq)
                .weight(w),
        )
        .unwrap();
    }
    ipvs.add_dest(
        &dns,
        DestConf::new("10.1.0.3".parse().unwrap(), 53).fwd(Forward::Route),
    )
    .unwrap();
    ipvs
}

#[test]
fn numeric_listing_and_save_equal_the_renderer() {
    let dir = TempDir::new("render");
    let d = Daemon::start(&dir.path().join("rvsd.sock"), &[]);
    for args in [
        "-A -t 192.168.1.100:80 -s wrr",
        "-A -u 192.168.1.100:53 -s rr",
        "-a -t 192.168.1.100:80 -r 10.1.0.2:8080 -m -w 3",
        "-a -t 192.168.1.100:80 -r 10.1.0.10:8080 -m -w 1",
        "-a -u 192.168.1.100:53 -r 10.1.0.3 -g",
    ] {
        ok(&d.adm(&args.split(' ').collect::<Vec<_>>()));
    }
    let ipvs = build_reference();
    let numeric = ListOpts {
        numeric: true,
        ..ListOpts::default()
    };
    assert_eq!(
        d.adm(&["-Ln"]).stdout,
        render::list_all(&ipvs, &NoNames, &numeric)
    );
    assert_eq!(
        d.adm(&["-S", "-n"]).stdout,
        render::save(&ipvs, &NoNames, &numeric)
    );
    let json = ListOpts {
        json: true,
        ..numeric.clone()
    };
    let want = render::listing(&ipvs, rvs_core::time::Tick(0), &NoNames, &json, None, &[]).unwrap();
    assert_eq!(d.adm(&["-Ln", "--json"]).stdout, want);
    let stats = ListOpts {
        stats: true,
        ..numeric
    };
    assert_eq!(
        d.adm(&["-Ln", "--stats"]).stdout,
        render::list_all(&ipvs, &NoNames, &stats)
    );
}

#[test]
fn save_output_restores_into_a_second_daemon() {
    let dir = TempDir::new("roundtrip");
    let a = Daemon::start(&dir.path().join("a.sock"), &[]);
    let b = Daemon::start(&dir.path().join("b.sock"), &[]);
    for args in [
        "-A -t 10.0.0.1:443 -s sh -b sh-port -p 300 -M 255.255.255.0",
        "-a -t 10.0.0.1:443 -r 10.0.2.1 -i -w 5 -x 100 -y 10",
        "-A -f 7 -s mh -b mh-fallback",
        "-a -f 7 -r 10.0.2.2:0 -g",
        "-A -u [2001:db8::1]:53 -s lc -o",
        "-a -u [2001:db8::1]:53 -r [2001:db8::10]:5353 -m",
    ] {
        ok(&a.adm(&args.split(' ').collect::<Vec<_>>()));
    }
    let saved = a.adm(&["-S"]);
    ok(&saved);
    let restored = rvsadm(&b.socket, &["-R"], Some(&saved.stdout));
    ok(&restored);
    assert_eq!(b.adm(&["-S"]).stdout, saved.stdout);
    assert_eq!(b.adm(&["-Ln"]).stdout, a.adm(&["-Ln"]).stdout);
}

#[test]
fn restore_goes_on_after_state_errors_and_stops_at_parser_errors() {
    let dir = TempDir::new("restore");
    let d = Daemon::start(&dir.path().join("rvsd.sock"), &[]);
    let input = "-A -t 10.0.0.1:80\n-A -t 10.0.0.1:80\n-A -t 10.0.0.2:80\n";
    let out = rvsadm(&d.socket, &["-R"], Some(input));
    assert_eq!(
        (out.status, out.stderr.as_str()),
        (0, "Service already exists\n")
    );
    let input = "-A -t 10.0.0.3:80\n-A -t 10.0.0.4\n-A -t 10.0.0.5:80\n";
    let out = rvsadm(&d.socket, &["-R"], Some(input));
    let msg = "Zero port specified for non-persistent service\n";
    assert_eq!((out.status, out.stderr.as_str()), (2, msg));
    let listed = d.adm(&["-Ln"]).stdout;
    for (vip, present) in [
        ("10.0.0.1", true),
        ("10.0.0.2", true),
        ("10.0.0.3", true),
        ("10.0.0.5", false),
    ] {
        assert_eq!(
            listed.contains(&format!("TCP  {vip}:80 wlc")),
            present,
            "{vip}\n{listed}"
        );
    }
    // a state refusal on the last line is the restore's status
    let out = rvsadm(&d.socket, &["-R"], Some("-D -t 10.0.0.9:80"));
    assert_eq!(
        (out.status, out.stderr.as_str()),
        (255, "No such service\n")
    );
}

#[test]
fn state_file_survives_a_restart() {
    let dir = TempDir::new("state");
    let sock = dir.path().join("run/rvsd.sock");
    let state = dir.path().join("rules");
    let state_arg = state.to_str().unwrap();
    let d = Daemon::start(&sock, &["--state", state_arg]);
    ok(&d.adm(&["-A", "-t", "10.0.0.1:80", "-s", "wrr", "-p"]));
    ok(&d.adm(&["-a", "-t", "10.0.0.1:80", "-r", "10.0.1.1", "-g", "-w", "4"]));
    ok(&d.adm(&["-A", "-u", "10.0.0.1:53"]));
    ok(&d.adm(&["-D", "-u", "10.0.0.1:53"]));
    ok(&d.adm(&["--set", "11", "15", "300"]));
    let saved = std::fs::read_to_string(&state).unwrap();
    assert_eq!(
        saved,
        "-A -t 10.0.0.1:80 -s wrr -p 360\n-a -t 10.0.0.1:80 -r 10.0.1.1:80 -g -w 4\n--set 11 15 300\n"
    );
    let before = (d.adm(&["-Ln"]).stdout, d.adm(&["-Ln", "--timeout"]).stdout);
    assert_eq!(d.stop().code(), Some(0));
    let d = Daemon::start(&sock, &["--state", state_arg]);
    let after = (d.adm(&["-Ln"]).stdout, d.adm(&["-Ln", "--timeout"]).stdout);
    assert_eq!(after, before);
    assert_eq!(after.1, "Timeout (tcp tcpfin udp): 11 15 300\n");
    assert_eq!(d.stop().code(), Some(0));
}

#[test]
fn socket_is_private_single_owner_and_stale_ones_are_replaced() {
    let dir = TempDir::new("socket");
    let sock = dir.path().join("rvsd.sock");
    let d = Daemon::start(&sock, &[]);
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let mut second = Command::new(common::rvsd_bin())
        .arg("--socket")
        .arg(&sock)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert_eq!(
        wait_timeout(&mut second, Duration::from_secs(20)).code(),
        Some(1)
    );
    ok(&d.adm(&["-A", "-t", "10.0.0.1:80"]));
    d.signal("KILL");
    drop(d);
    assert!(sock.exists(), "a killed rvsd leaves its socket");
    let d = Daemon::start(&sock, &[]);
    ok(&d.adm(&["-Ln"]));
    assert_eq!(d.stop().code(), Some(0));
    assert!(!sock.exists(), "SIGTERM removes the socket");
}

/// SIGTERM stops rvsd even when its socket file was deleted, and an rvsd whose file was
/// deleted and whose path another rvsd then took leaves that other one's socket in place.
#[test]
fn sigterm_stops_without_the_socket_file_and_spares_a_successors() {
    let dir = TempDir::new("socket-gone");
    let sock = dir.path().join("rvsd.sock");
    let first = Daemon::start(&sock, &[]);
    std::fs::remove_file(&sock).unwrap();
    let second = Daemon::start(&sock, &[]);
    ok(&second.adm(&["-A", "-t", "10.0.0.2:80"]));
    assert_eq!(
        first.stop().code(),
        Some(0),
        "an rvsd without its socket file still stops on SIGTERM"
    );
    assert!(sock.exists(), "the first rvsd removed the second's socket");
    assert!(second.adm(&["-Ln"]).stdout.contains("TCP  10.0.0.2:80 wlc"));
    std::fs::remove_file(&sock).unwrap();
    assert_eq!(second.stop().code(), Some(0));
}

#[test]
fn sighup_keeps_serving_and_sigterm_exits_zero() {
    let dir = TempDir::new("signals");
    let d = Daemon::start(&dir.path().join("rvsd.sock"), &[]);
    ok(&d.adm(&["-A", "-t", "10.0.0.1:80"]));
    d.signal("HUP");
    std::thread::sleep(Duration::from_millis(100));
    assert!(d.adm(&["-Ln"]).stdout.contains("TCP  10.0.0.1:80 wlc"));
    assert_eq!(d.stop().code(), Some(0));
}

#[test]
fn without_a_daemon_rvsadm_says_what_ipvsadm_says_without_ipvs() {
    let dir = TempDir::new("absent");
    let out = rvsadm(&dir.path().join("none.sock"), &["-Ln"], None);
    err(
        &out,
        2,
        "Can't initialize ipvs: Protocol not available\n\
         Are you sure that IP Virtual Server is built in the kernel or as module?\n",
    );
}

#[test]
fn dr_init_script_runs_unchanged() {
    let dir = TempDir::new("initscript");
    let d = Daemon::start(&dir.path().join("rvsd.sock"), &[]);
    let out = common::run_seed_dr_script(&d.socket);
    assert!(out.status.success());
    // `-- set 11 15 300` (a space after `--`): popt ends the options at `--`, so ipvsadm
    // finds no command and prints its "Try" line; rvsadm does the same.
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "Try `rvsadm -h' or 'rvsadm --help' for more information.\n"
    );
    let mut want = "IP Virtual Server version 1.2.1 (size=4096)\n\
                    Prot LocalAddress:Port Scheduler Flags\n\
                    \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
                    TCP  10.0.0.88:80 wrr\n"
        .to_string();
    for (rip, w) in [("10.0.0.9:80", 2), ("10.0.0.20:80", 5), ("10.0.0.21:80", 5)] {
        want.push_str(&format!(
            "  -> {rip:<29}Route   {w}      0          0         \n"
        ));
    }
    assert_eq!(String::from_utf8(out.stdout).unwrap(), want);
    assert_eq!(d.stop().code(), Some(0));
}

#[test]
fn names_resolve_through_the_hosts_and_services_files() {
    let dir = TempDir::new("names");
    let d = Daemon::start(&dir.path().join("rvsd.sock"), &[]);
    // forward lookups while parsing: `localhost` is in every hosts file
    ok(&d.adm(&["-A", "-t", "localhost:80", "-s", "rr"]));
    ok(&d.adm(&["-a", "-t", "127.0.0.1:80", "-r", "127.0.0.1:8080", "-m"]));
    let mut ipvs = Ipvs::new(Config::default());
    let key = ServiceKey::Addr {
        proto: Protocol::Tcp,
        addr: "127.0.0.1".parse().unwrap(),
        port: 80,
    };
    ipvs.add_service(key, ServiceConf::new(Family::V4, "rr"))
        .unwrap();
    ipvs.add_dest(
        &key,
        DestConf::new("127.0.0.1".parse().unwrap(), 8080).fwd(Forward::Masq),
    )
    .unwrap();
    let names = rvs_api::names::SystemNames::load();
    let plain = ListOpts::default();
    let listed = d.adm(&["-L"]);
    ok(&listed);
    assert_eq!(listed.stdout, render::list_all(&ipvs, &names, &plain));
    assert!(
        listed.stdout.contains("TCP  localhost:"),
        "{}",
        listed.stdout
    );
    assert_eq!(
        d.adm(&[]).stdout,
        listed.stdout,
        "no arguments lists with names"
    );
}

#[test]
fn sync_daemon_settings_are_kept_one_master_one_backup() {
    let dir = TempDir::new("syncd");
    let d = Daemon::start(&dir.path().join("rvsd.sock"), &[]);
    ok(&d.adm(&["--start-daemon", "master"]));
    err(
        &d.adm(&["--start-daemon", "master"]),
        255,
        "Daemon has already run\n",
    );
    ok(&d.adm(&[
        "--start-daemon",
        "backup",
        "--mcast-interface",
        "eth1",
        "--syncid",
        "3",
    ]));
    assert_eq!(
        d.adm(&["-L", "--daemon"]).stdout,
        "master sync daemon (mcast=eth0, syncid=0, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n\
         backup sync daemon (mcast=eth1, syncid=3, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"
    );
    ok(&d.adm(&["--stop-daemon", "master"]));
    err(
        &d.adm(&["--stop-daemon", "master"]),
        255,
        "No daemon is running\n",
    );
    assert_eq!(d.stop().code(), Some(0));
}

/// ipvsadm's `-S` prints a fwmark of 2^31 or more as a negative number that its `-R` refuses;
/// the state file keeps it restorable.
#[test]
fn fwmark_above_2_31_survives_a_restart() {
    let dir = TempDir::new("rv-fwm");
    let sock = dir.path().join("rvsd.sock");
    let state = dir.path().join("rules");
    let st = state.to_str().unwrap();
    let d = Daemon::start(&sock, &["--state", st]);
    assert_eq!(d.adm(&["-A", "-f", "4294967295", "-s", "rr"]).status, 0);
    assert_eq!(d.stop().code(), Some(0));
    let d = Daemon::start(&sock, &["--state", st]);
    let out = d.adm(&["-S", "-n"]);
    assert_eq!(out.stdout, "-A -f -1 -s rr\n", "listed as ipvsadm lists it");
}

/// The `--proxy-protocol` extension: kept by an `-e` that does not name it (an unchanged
/// ipvsadm script), absent from plain `-S` (ipvsadm's `-R` must read it), present in
/// `-S --extended`, the state file and `--json`, and kept across a restart.
#[test]
fn proxy_protocol_survives_an_edit_and_a_restart() {
    let dir = TempDir::new("rv-pp");
    let sock = dir.path().join("rvsd.sock");
    let state = dir.path().join("rules");
    let st = state.to_str().unwrap();
    let d = Daemon::start(&sock, &["--state", st]);
    let rs = ["-t", "10.0.0.1:80", "-r", "10.0.1.1:8080", "-m"];
    ok(&d.adm(&["-A", "-t", "10.0.0.1:80", "-s", "rr"]));
    ok(&d.adm(&[&["-a"][..], &rs, &["--proxy-protocol", "v2"]].concat()));
    ok(&d.adm(&[&["-e"][..], &rs, &["-w", "5"]].concat()));
    err(
        &d.adm(&[&["-e"][..], &rs, &["--proxy-protocol", "v3"]].concat()),
        2,
        "illegal PROXY protocol version specified
",
    );
    err(
        &d.adm(&["-S", "--proxy-protocol", "v2"]),
        2,
        "Illegal 'proxy-protocol' option with the 'save' command
",
    );
    let plain = "-A -t 10.0.0.1:80 -s rr
-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m -w 5
";
    let extended = "-A -t 10.0.0.1:80 -s rr
-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m -w 5 --proxy-protocol v2
";
    assert_eq!(d.adm(&["-S", "-n"]).stdout, plain);
    assert_eq!(d.adm(&["-S", "-n", "--extended"]).stdout, extended);
    assert_eq!(std::fs::read_to_string(&state).unwrap(), extended);
    assert_eq!(d.stop().code(), Some(0));

    let d = Daemon::start(&sock, &["--state", st]);
    let after = d.adm(&["-S", "-n", "--extended"]);
    ok(&after);
    assert_eq!(after.stdout, extended);
    assert!(d
        .adm(&["-Ln", "--json"])
        .stdout
        .contains("\"proxy_protocol\":\"v2\""));
    // rvsadm -R reads the extended rules back; an edit with `none` clears the setting
    ok(&d.adm(&["-C"]));
    ok(&rvsadm(&d.socket, &["-R"], Some(extended)));
    assert_eq!(d.adm(&["-S", "-n", "--extended"]).stdout, extended);
    ok(&d.adm(&[&["-e"][..], &rs, &["--proxy-protocol", "none"]].concat()));
    assert_eq!(
        d.adm(&["-S", "-n", "--extended"]).stdout,
        plain.replace("-w 5", "-w 1")
    );
    assert_eq!(d.stop().code(), Some(0));
}

/// The state file is written through a fresh private temporary file: a symlink planted where
/// a temporary file could be is never followed, and the rules are not world-readable.
#[test]
fn state_write_follows_no_planted_symlink_and_is_private() {
    let dir = TempDir::new("rv-link");
    let sock = dir.path().join("rvsd.sock");
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, dir.path().join(".rules.tmp")).unwrap();
    let state = dir.path().join("rules");
    let d = Daemon::start(&sock, &["--state", state.to_str().unwrap()]);
    assert_eq!(d.adm(&["-A", "-t", "10.0.0.1:80"]).status, 0);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// A client that trickles its request neither holds other clients up nor keeps its connection
/// past the request deadline.
#[test]
fn a_slow_client_holds_nobody_up() {
    use std::io::{Read, Write};
    let dir = TempDir::new("rv-slow");
    let sock = dir.path().join("rvsd.sock");
    let d = Daemon::start(&sock, &[]);
    let mut slow = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    slow.write_all(b" ").unwrap();
    let t = std::time::Instant::now();
    assert_eq!(d.adm(&["-Ln"]).status, 0);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "-Ln waited {:?}",
        t.elapsed()
    );
    // the slow request is answered as bad once its deadline passes
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reply = String::new();
    slow.read_to_string(&mut reply).unwrap();
    assert!(reply.contains("bad request"), "{reply}");
}

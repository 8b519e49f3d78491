//! What the parser hands to the rest of rvs: the rvs-core values and defaults an operator
//! relies on (the golden replay proves texts and kernel outcomes; these name the values).

use std::net::IpAddr;

use rvs_config::ipvsadm::{
    errno_text, help_text, kernel_error, parse, Command, DaemonConf, NoResolve, SyncState,
};
use rvs_core::error::IpvsError;
use rvs_core::model::{svc_flags, Family, Forward, Netmask, Protocol, ServiceKey, TunnelType};

fn ok(args: &[&str]) -> Command {
    parse("ipvsadm", args, &NoResolve).unwrap_or_else(|e| panic!("{args:?}: {e:?}"))
}

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn add_service_defaults_are_wlc_full_mask_no_flags() {
    let Command::AddService { key, conf } = ok(&["-A", "-t", "10.0.0.1:80"]) else {
        panic!()
    };
    assert_eq!(
        key,
        ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr: v4("10.0.0.1"),
            port: 80
        }
    );
    assert_eq!(conf.scheduler, "wlc");
    assert_eq!((conf.flags, conf.timeout), (0, 0));
    assert_eq!(conf.netmask, Netmask::V4(u32::MAX));
    assert_eq!(conf.pe, None);
}

#[test]
fn bare_p_is_360_seconds_and_options_fill_the_conf() {
    let args = [
        "-A",
        "-u",
        "10.0.0.1:53",
        "-s",
        "sh",
        "-p",
        "-M",
        "255.255.0.0",
        "-o",
        "--pe",
        "sip",
        "-b",
        "sh-port",
    ];
    let Command::AddService { conf, .. } = ok(&args) else {
        panic!()
    };
    assert_eq!(conf.timeout, 360);
    let want = svc_flags::PERSISTENT | svc_flags::ONEPACKET | svc_flags::SCHED_SH_PORT;
    assert_eq!(conf.flags, want);
    assert_eq!(conf.netmask, Netmask::V4(0xffff_0000));
    assert_eq!(conf.pe.as_deref(), Some("sip"));
}

#[test]
fn ipv6_services_get_prefix_128_and_fwmark_6_too() {
    let Command::AddService { conf, .. } = ok(&["-A", "-t", "[2001:db8::1]:80", "-p"]) else {
        panic!()
    };
    assert_eq!(conf.netmask, Netmask::V6(128));
    let Command::AddService { key, conf } = ok(&["-A", "-f", "5", "-6", "-p", "-M", "64"]) else {
        panic!()
    };
    assert_eq!(
        key,
        ServiceKey::Fwmark {
            af: Family::V6,
            mark: 5
        }
    );
    assert_eq!(conf.netmask, Netmask::V6(64));
}

#[test]
fn real_server_defaults_to_dr_weight_1_and_the_service_port() {
    let Command::AddDest { dest, .. } = ok(&["-a", "-t", "10.0.0.1:80", "-r", "10.0.1.1:8080"])
    else {
        panic!()
    };
    // DR cannot map ports: the port given is replaced by the service's
    assert_eq!((dest.fwd, dest.weight, dest.port), (Forward::Route, 1, 80));
    assert_eq!((dest.u_threshold, dest.l_threshold), (0, 0));
    let Command::AddDest { dest, .. } =
        ok(&["-a", "-t", "10.0.0.1:80", "-r", "10.0.1.1:8080", "-m"])
    else {
        panic!()
    };
    assert_eq!((dest.fwd, dest.port), (Forward::Masq, 8080));
    let Command::AddDest { dest, .. } = ok(&["-a", "-f", "7", "-r", "10.0.1.1:99", "-g"]) else {
        panic!()
    };
    assert_eq!(dest.port, 99, "fwmark services keep the real server's port");
}

#[test]
fn tunnel_options_reach_the_dest() {
    let args = [
        "-a",
        "-t",
        "10.0.0.1:80",
        "-r",
        "10.0.1.1",
        "-i",
        "--tun-type",
        "gue",
        "--tun-port",
        "6080",
        "--tun-csum",
    ];
    let Command::AddDest { dest, .. } = ok(&args) else {
        panic!()
    };
    assert_eq!(dest.tun.kind, TunnelType::Gue);
    assert_eq!((dest.tun.port, dest.tun.flags), (6080, 1));
}

#[test]
fn start_daemon_defaults_to_eth0() {
    let Command::StartDaemon(d) = ok(&["--start-daemon", "backup", "--syncid", "9"]) else {
        panic!()
    };
    let want = DaemonConf {
        state: SyncState::Backup,
        mcast_ifn: "eth0".into(),
        syncid: 9,
        sync_maxlen: None,
        mcast_group: None,
        mcast_port: None,
        mcast_ttl: None,
    };
    assert_eq!(d, want);
    let Command::StopDaemon(d) = ok(&["--stop-daemon", "master"]) else {
        panic!()
    };
    assert_eq!(
        d.mcast_ifn, "",
        "only --start-daemon gets the default interface"
    );
}

#[test]
fn no_arguments_list_with_names_and_set_takes_three_values() {
    let Command::List { service, opts } = ok(&[]) else {
        panic!()
    };
    assert!(service.is_none() && !opts.numeric);
    assert_eq!(
        ok(&["--set", "10", "0", "20"]),
        Command::SetTimeouts {
            tcp: 10,
            tcpfin: 0,
            udp: 20
        }
    );
}

#[test]
fn help_names_the_program_and_goes_to_stdout() {
    let e = parse("/usr/sbin/rvsadm", &["-h"], &NoResolve).unwrap_err();
    assert_eq!((e.status, e.stderr.as_str()), (0, ""));
    assert_eq!(e.stdout, help_text("/usr/sbin/rvsadm"));
    assert!(e
        .stdout
        .contains("\n  /usr/sbin/rvsadm -D virtual-service\n"));
    let e = parse("rvsadm", &["-Z", "-x", "5"], &NoResolve).unwrap_err();
    assert_eq!(
        e.stderr,
        "Illegal 'u-threshold' option with the 'zero' command\n"
    );
    let e = parse("rvsadm", &["bogus"], &NoResolve).unwrap_err();
    assert_eq!(
        e.stderr,
        "Try `rvsadm -h' or 'rvsadm --help' for more information.\n"
    );
}

#[test]
fn kernel_errors_are_worded_by_operation() {
    let list = ok(&["-L", "-f", "1"]);
    let del = ok(&["-D", "-f", "1"]);
    let deldest = ok(&["-d", "-f", "1", "-r", "10.0.1.1"]);
    let e = kernel_error(&list, IpvsError::NoSuchService);
    assert_eq!((e.status, e.stderr.as_str()), (1, "No such service\n"));
    let e = kernel_error(&del, IpvsError::NoSuchService);
    assert_eq!((e.status, e.stderr.as_str()), (255, "No such service\n"));
    // the same errno (ESRCH) reads differently for a real-server command
    let e = kernel_error(&deldest, IpvsError::NoSuchService);
    assert_eq!(e.stderr, "Service not defined\n");
    assert_eq!(errno_text(&deldest, 2), "No such destination");
    assert_eq!(errno_text(&del, 2), "No such file or directory");
}

mod never_panics {
    use proptest::prelude::*;
    use rvs_config::ipvsadm::{parse, parse_restore_line, restore_lines, NoResolve};

    const WORDS: &[&str] = &[
        "-A",
        "-E",
        "-D",
        "-C",
        "-L",
        "-a",
        "-e",
        "-d",
        "-Z",
        "-S",
        "-R",
        "-h",
        "-v",
        "--set",
        "--start-daemon",
        "--stop-daemon",
        "-t",
        "-u",
        "-f",
        "-6",
        "-s",
        "-p",
        "-M",
        "-r",
        "-m",
        "-i",
        "-g",
        "-w",
        "-x",
        "-y",
        "-n",
        "-c",
        "-o",
        "-b",
        "--pe",
        "--tun-type",
        "--tun-port",
        "--tun-csum",
        "--mcast-group",
        "--syncid",
        "--json",
        "--proxy-protocol",
        "--extended",
        "v2",
        "--",
        "-",
        "10.0.0.1:80",
        "[::1]:80",
        "::1",
        "7",
        "0",
        "master",
        "gue",
        "sh-port,flag-1",
        ",",
        "",
        "-Ltn",
        "-p10",
        "--persistent=",
        "255.255.255.0",
        "64",
        "é",
        "-é",
    ];

    proptest! {
        #[test]
        fn any_word_sequence_parses_or_exits(idx in prop::collection::vec(0..WORDS.len(), 0..9),
                                            junk in "\\PC{0,6}") {
            let mut args: Vec<&str> = idx.iter().map(|&i| WORDS[i]).collect();
            args.push(&junk);
            let _ = parse("ipvsadm", &args, &NoResolve);
            let _ = parse_restore_line("ipvsadm", &args, &NoResolve);
            let line = args.join(" ");
            let _ = restore_lines(&line);
        }
    }
}

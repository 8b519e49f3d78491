//! The `--proxy-protocol` extension of `-a`/`-e` and its `-S --extended` form: what the parser
//! accepts and refuses (in ipvsadm's words and statuses), that `-e` without it keeps the
//! server's setting, that plain `-S` and `-L` stay ipvsadm's text, and that the extended rules
//! restore the same table.

use rvs_config::ipvsadm::{
    edited_dest, help_text, parse, parse_restore_line, restore_lines, Command, Exit, NoResolve,
};
use rvs_config::{render, ListOpts, NoNames};
use rvs_core::error::IpvsError;
use rvs_core::ipvs::{Config, Ipvs};
use rvs_core::model::{DestConf, ProxyProtocol};
use rvs_core::time::Tick;

const SVC: [&str; 3] = ["-a", "-t", "10.0.0.1:80"];

fn ok(args: &[&str]) -> Command {
    parse("ipvsadm", args, &NoResolve).unwrap_or_else(|e| panic!("{args:?}: {e:?}"))
}

fn refused(args: &[&str]) -> Exit {
    parse("ipvsadm", args, &NoResolve).expect_err("refused")
}

/// `-a -t 10.0.0.1:80 -r 10.0.1.1 -m` and `extra`.
fn add<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = SVC.to_vec();
    v.extend(["-r", "10.0.1.1", "-m"]);
    v.extend(extra);
    v
}

fn added(extra: &[&str]) -> (DestConf, Option<ProxyProtocol>) {
    match ok(&add(extra)) {
        Command::AddDest {
            dest,
            proxy_protocol,
            ..
        } => (dest, proxy_protocol),
        other => panic!("{other:?}"),
    }
}

#[test]
fn accepted_versions_and_the_default() {
    for (word, want) in [
        ("v1", ProxyProtocol::V1),
        ("1", ProxyProtocol::V1),
        ("v2", ProxyProtocol::V2),
        ("2", ProxyProtocol::V2),
        ("none", ProxyProtocol::None),
    ] {
        let (dest, given) = added(&["--proxy-protocol", word]);
        assert_eq!((dest.proxy_protocol, given), (want, Some(want)), "{word}");
        let glued = format!("--proxy-protocol={word}");
        assert_eq!(added(&[&glued]).0.proxy_protocol, want, "{glued}");
    }
    // `-a` without the option: no header, and "not given" stays visible to the caller
    let (dest, given) = added(&[]);
    assert_eq!((dest.proxy_protocol, given), (ProxyProtocol::None, None));
    // the other settings are unaffected by the extension
    let (dest, _) = added(&["-w", "5", "--proxy-protocol", "v2", "-x", "9"]);
    assert_eq!((dest.weight, dest.u_threshold, dest.port), (5, 9, 80));
}

#[test]
fn a_bad_version_fails_like_ipvsadms_bad_values() {
    for word in ["v3", "V1", "", "0", "proxy", "v1 "] {
        let e = refused(&add(&["--proxy-protocol", word]));
        let want = Exit::fail("illegal PROXY protocol version specified");
        assert_eq!(e, want, "{word:?}");
        assert_eq!(e.status, 2);
    }
    // checked when read, like `-w`: the first bad value in the line is the one reported
    let e = refused(&add(&["--proxy-protocol", "v9", "-w", "x"]));
    assert_eq!(e.stderr, "illegal PROXY protocol version specified\n");
    let e = refused(&add(&["-w", "x", "--proxy-protocol", "v9"]));
    assert_eq!(e.stderr, "illegal weight specified\n");
    // popt's own errors, as for any option with a value
    let e = refused(&add(&["--proxy-protocol"]));
    assert_eq!(
        (e.status, e.stderr.as_str()),
        (255, "--proxy-protocol: missing argument\n")
    );
    let e = refused(&add(&["--proxy-protocol", "v1", "--proxy-protocol", "v1"]));
    assert_eq!(
        (e.status, e.stderr.as_str()),
        (2, "multiple 'proxy-protocol' options specified\n")
    );
}

#[test]
fn only_add_and_edit_server_take_it() {
    let pp = ["--proxy-protocol", "v1"];
    let cases: [(&[&str], &str); 8] = [
        (&["-A", "-t", "10.0.0.1:80"], "add-service"),
        (&["-E", "-t", "10.0.0.1:80"], "edit-service"),
        (&["-D", "-t", "10.0.0.1:80"], "delete-service"),
        (
            &["-d", "-t", "10.0.0.1:80", "-r", "10.0.1.1"],
            "delete-server",
        ),
        (&["-L", "-n"], "list"),
        (&["-S"], "save"),
        (&["-Z"], "zero"),
        (&["-C"], "flush"),
    ];
    for (args, name) in cases {
        let mut v = args.to_vec();
        v.extend(pp);
        let e = refused(&v);
        let want = format!("Illegal 'proxy-protocol' option with the '{name}' command\n");
        assert_eq!(
            (e.status, e.stderr.as_str(), e.stdout.as_str()),
            (2, want.as_str(), "")
        );
    }
    let mut edit = vec!["-e", "-t", "10.0.0.1:80", "-r", "10.0.1.1"];
    edit.extend(pp);
    assert!(matches!(ok(&edit), Command::EditDest { .. }));
    // an offence ipvsadm itself reports is still the one reported
    let e = refused(&[
        "-d",
        "-t",
        "10.0.0.1:80",
        "-r",
        "10.0.1.1",
        "-w",
        "2",
        "--proxy-protocol",
        "v1",
    ]);
    assert_eq!(
        e.stderr,
        "Illegal 'weight' option with the 'delete-server' command\n"
    );
    let e = refused(&["-a", "--proxy-protocol", "v1", "-r", "10.0.1.1"]);
    assert_eq!(
        e.stderr,
        "You need to supply the 'service-address' option for the 'add-server' command\n"
    );
}

#[test]
fn extended_goes_with_save_only() {
    assert_eq!(
        ok(&["-S", "-n", "--extended"]),
        Command::Save {
            numeric: true,
            extended: true
        }
    );
    assert_eq!(
        ok(&["-S"]),
        Command::Save {
            numeric: false,
            extended: false
        }
    );
    for (args, name) in [
        (&["-L", "--extended"][..], "list"),
        (&add(&["--extended"])[..], "add-server"),
        (&["-R", "--extended"][..], "restore"),
    ] {
        let e = refused(args);
        let want = format!("Illegal 'extended' option with the '{name}' command\n");
        assert_eq!((e.status, e.stderr.as_str()), (2, want.as_str()));
    }
    let e = refused(&["-S", "--extended=yes"]);
    assert_eq!(
        (e.status, e.stderr.as_str()),
        (255, "--extended=yes: option does not take an argument\n")
    );
}

#[test]
fn help_is_ipvsadms_and_names_no_extension() {
    let h = help_text("ipvsadm");
    assert!(!h.contains("proxy") && !h.contains("extended") && !h.contains("json"));
}

/// Apply a command as rvsd's director does (`-e` merged with the server's current setting).
fn apply(ipvs: &mut Ipvs, cmd: &Command) -> Result<(), IpvsError> {
    match cmd {
        Command::AddService { key, conf } => ipvs.add_service(*key, conf.clone()).map(drop),
        Command::AddDest { key, dest, .. } => ipvs.add_dest(key, *dest).map(drop),
        Command::EditDest {
            key,
            dest,
            proxy_protocol,
        } => {
            let current = ipvs.find_dest(key, &dest.addr, dest.port).map(|d| d.conf());
            ipvs.edit_dest(key, edited_dest(dest, *proxy_protocol, current.as_ref()))
        }
        Command::DelDest { key, dest } => ipvs.del_dest(key, &dest.addr, dest.port, Tick(0)),
        other => panic!("not needed here: {other:?}"),
    }
}

fn run(ipvs: &mut Ipvs, line: &str) {
    let words: Vec<&str> = line.split(' ').collect();
    apply(ipvs, &ok(&words)).unwrap_or_else(|e| panic!("{line}: {e:?}"));
}

fn pp_of(ipvs: &Ipvs, addr: &str, port: u16) -> ProxyProtocol {
    ipvs.find_dest(&key80(), &addr.parse().unwrap(), port)
        .expect("present")
        .proxy_protocol
}

#[test]
fn edit_keeps_overrides_and_clears() {
    let mut ipvs = Ipvs::new(Config::default());
    run(&mut ipvs, "-A -t 10.0.0.1:80 -s rr");
    run(
        &mut ipvs,
        "-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m --proxy-protocol v2",
    );
    // an unchanged ipvsadm script draining the server keeps the setting
    run(&mut ipvs, "-e -t 10.0.0.1:80 -r 10.0.1.1:8080 -m -w 0");
    assert_eq!(pp_of(&ipvs, "10.0.1.1", 8080), ProxyProtocol::V2);
    let d = ipvs
        .find_dest(&key80(), &"10.0.1.1".parse().unwrap(), 8080)
        .unwrap();
    assert_eq!(d.weight, 0, "the rest of the edit applies");
    run(
        &mut ipvs,
        "-e -t 10.0.0.1:80 -r 10.0.1.1:8080 -m --proxy-protocol 1",
    );
    assert_eq!(pp_of(&ipvs, "10.0.1.1", 8080), ProxyProtocol::V1);
    run(
        &mut ipvs,
        "-e -t 10.0.0.1:80 -r 10.0.1.1:8080 -m --proxy-protocol none",
    );
    assert_eq!(pp_of(&ipvs, "10.0.1.1", 8080), ProxyProtocol::None);
    run(&mut ipvs, "-e -t 10.0.0.1:80 -r 10.0.1.1:8080 -m");
    assert_eq!(pp_of(&ipvs, "10.0.1.1", 8080), ProxyProtocol::None);
    // `-a` without the option means none, even for a server back from the trash
    run(
        &mut ipvs,
        "-e -t 10.0.0.1:80 -r 10.0.1.1:8080 -m --proxy-protocol v2",
    );
    run(&mut ipvs, "-d -t 10.0.0.1:80 -r 10.0.1.1:8080");
    run(&mut ipvs, "-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m");
    assert_eq!(pp_of(&ipvs, "10.0.1.1", 8080), ProxyProtocol::None);
    // an edit of a missing server is still the kernel's refusal
    let cmd = ok(&["-e", "-t", "10.0.0.1:80", "-r", "10.0.1.9", "-m"]);
    assert_eq!(apply(&mut ipvs, &cmd), Err(IpvsError::NoSuchDest));
}

fn key80() -> rvs_core::model::ServiceKey {
    match ok(&["-D", "-t", "10.0.0.1:80"]) {
        Command::DelService { key } => key,
        _ => unreachable!(),
    }
}

/// A table with one server of each PROXY version and one without, DR and tunnel included.
fn table(with_pp: bool) -> Ipvs {
    let mut ipvs = Ipvs::new(Config::default());
    let pp = |v: &str| {
        if with_pp {
            format!(" --proxy-protocol {v}")
        } else {
            String::new()
        }
    };
    for line in [
        "-A -t 10.0.0.1:80 -s wrr".to_string(),
        format!("-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m -w 3{}", pp("v1")),
        format!("-a -t 10.0.0.1:80 -r 10.0.1.2:8080 -m -w 2{}", pp("2")),
        format!("-a -t 10.0.0.1:80 -r 10.0.1.3:8080 -m{}", pp("none")),
        "-A -t 10.0.0.2:443 -s rr".to_string(),
        format!(
            "-a -t 10.0.0.2:443 -r 10.0.2.1 -i --tun-type gre --tun-csum{}",
            pp("v2")
        ),
    ] {
        run(&mut ipvs, &line);
    }
    ipvs
}

fn opts(numeric: bool, extended: bool) -> ListOpts {
    ListOpts {
        numeric,
        extended,
        ..ListOpts::default()
    }
}

const PLAIN_SAVE: &str = "-A -t 10.0.0.1:80 -s wrr
-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m -w 3
-a -t 10.0.0.1:80 -r 10.0.1.2:8080 -m -w 2
-a -t 10.0.0.1:80 -r 10.0.1.3:8080 -m -w 1
-A -t 10.0.0.2:443 -s rr
-a -t 10.0.0.2:443 -r 10.0.2.1:443 -i -w 1 --tun-type gre --tun-csum
";

#[test]
fn plain_save_and_listings_are_ipvsadms_text() {
    let with = table(true);
    let without = table(false);
    assert_eq!(
        render::save(&with, &NoNames, &opts(true, false)),
        PLAIN_SAVE
    );
    assert_eq!(
        render::save(&without, &NoNames, &opts(true, false)),
        PLAIN_SAVE
    );
    // without extensions in use, --extended prints exactly the plain rules
    assert_eq!(
        render::save(&without, &NoNames, &opts(true, true)),
        PLAIN_SAVE
    );
    for o in [
        opts(true, false),
        ListOpts {
            numeric: true,
            tun_info: true,
            ..ListOpts::default()
        },
        ListOpts {
            numeric: true,
            stats: true,
            ..ListOpts::default()
        },
    ] {
        assert_eq!(
            render::list_all(&with, &NoNames, &o),
            render::list_all(&without, &NoNames, &o)
        );
    }
}

#[test]
fn extended_save_appends_the_option_and_restores_the_same_table() {
    let with = table(true);
    let extended = render::save(&with, &NoNames, &opts(true, true));
    assert_eq!(
        extended,
        "-A -t 10.0.0.1:80 -s wrr
-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m -w 3 --proxy-protocol v1
-a -t 10.0.0.1:80 -r 10.0.1.2:8080 -m -w 2 --proxy-protocol v2
-a -t 10.0.0.1:80 -r 10.0.1.3:8080 -m -w 1
-A -t 10.0.0.2:443 -s rr
-a -t 10.0.0.2:443 -r 10.0.2.1:443 -i -w 1 --tun-type gre --tun-csum --proxy-protocol v2
"
    );
    // `-R` of the extended rules rebuilds the same table
    let mut restored = Ipvs::new(Config::default());
    for words in restore_lines(&extended) {
        let cmd = parse_restore_line("ipvsadm", &words, &NoResolve).expect("restorable");
        apply(&mut restored, &cmd).expect("applies");
    }
    assert_eq!(
        render::save(&restored, &NoNames, &opts(true, true)),
        extended
    );
    assert_eq!(pp_of(&restored, "10.0.1.1", 8080), ProxyProtocol::V1);
    assert_eq!(
        render::save(&restored, &NoNames, &opts(true, false)),
        PLAIN_SAVE
    );
}

#[test]
fn json_names_the_version_of_every_server() {
    let with = table(true);
    let o = ListOpts {
        json: true,
        ..opts(true, false)
    };
    let text = render::listing(&with, Tick(0), &NoNames, &o, None, &[]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut got: Vec<(String, String)> = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["dests"].as_array().unwrap().iter())
        .map(|d| {
            let pp = d["proxy_protocol"].as_str().expect("a string");
            (d["address"].as_str().unwrap().to_string(), pp.to_string())
        })
        .collect();
    got.sort();
    let want = [
        ("10.0.1.1", "v1"),
        ("10.0.1.2", "v2"),
        ("10.0.1.3", "none"),
        ("10.0.2.1", "v2"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, p)| (a.to_string(), p.to_string()))
        .collect();
    assert_eq!(got, want);
}

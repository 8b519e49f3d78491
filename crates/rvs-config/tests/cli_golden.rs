//! Replays every invocation recorded from the real ipvsadm 1.31 (`tests/golden/cli/cli.golden`,
//! recorded by `cli.sh` in the ipvs-oracle VM) through the parser:
//! - where ipvsadm decided alone (misuse, `-h`, `-v`), status, stdout and stderr must match
//!   byte for byte;
//! - where it reached the kernel, the parsed command is applied to an `rvs_core::ipvs::Ipvs`
//!   set up the same way: the status and error line must match, and the rules left behind
//!   (`ipvsadm -Sn`, compared line by line, order aside) must be the kernel's.
//!
//! The job gives the VM a fixed name environment (`/etc/hosts`, `/etc/services`); the replay's
//! resolver, [`cli_support::Names`], knows the same names. Listing and `-S` output is the
//! renderer's and is not compared here.

mod cli_support;

use cli_support::{apply, save_lines, shell_words, Names, Record};
use rvs_config::ipvsadm::{parse, parse_restore_line, restore_lines, Command};
use rvs_core::ipvs::{Config, Ipvs};

const GOLDEN: &[u8] = include_bytes!("golden/cli/cli.golden");

/// The recorded setups (`SETUP` in cli.sh).
fn setup(name: &str) -> Ipvs {
    let mut ipvs = Ipvs::new(Config::default());
    let lines: &[&str] = match name {
        "none" => &[],
        "svc" => &[
            "-A -t 10.0.0.1:80 -s rr",
            "-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m",
            "-A -u 10.0.0.1:53",
            "-A -f 7",
            "-A -t [2001:db8::1]:80",
        ],
        other => panic!("unknown setup {other}"),
    };
    for line in lines {
        let words: Vec<&str> = line.split(' ').collect();
        let cmd = parse("ipvsadm", &words, &Names).expect("setup parses");
        apply(&mut ipvs, &cmd)
            .expect("modelled")
            .expect("setup applies");
    }
    ipvs
}

/// What the replay produced for one invocation.
struct Outcome {
    status: i32,
    stdout: Option<String>,
    stderr: String,
}

fn run_once(ipvs: &mut Ipvs, argv0: &str, args: &[&str], restore: bool) -> Option<Outcome> {
    let parsed = if restore {
        parse_restore_line(argv0, args, &Names)
    } else {
        parse(argv0, args, &Names)
    };
    let cmd = match parsed {
        Err(exit) => {
            return Some(Outcome {
                status: exit.status,
                stdout: Some(exit.stdout),
                stderr: exit.stderr,
            })
        }
        Ok(cmd) => cmd,
    };
    let result = apply(ipvs, &cmd)?;
    Some(match result {
        Ok(()) => Outcome {
            status: 0,
            stdout: None,
            stderr: String::new(),
        },
        Err(e) => {
            let exit = rvs_config::ipvsadm::kernel_error(&cmd, e);
            Outcome {
                status: exit.status,
                stdout: None,
                stderr: exit.stderr,
            }
        }
    })
}

/// `-R`: every line in turn; a parser exit ends it, kernel errors are printed and it goes on.
fn run_restore(ipvs: &mut Ipvs, argv0: &str, input: &str) -> Option<Outcome> {
    let mut stderr = String::new();
    let mut status = 0;
    for words in restore_lines(input) {
        let out = run_once(ipvs, argv0, &words, true)?;
        stderr.push_str(&out.stderr);
        status = out.status;
        if out.stdout.is_some() {
            return Some(Outcome {
                status,
                stdout: out.stdout,
                stderr,
            });
        }
    }
    Some(Outcome {
        status,
        stdout: Some(String::new()),
        stderr,
    })
}

fn replay(rec: &Record, counts: &mut [usize; 3]) -> Result<(), String> {
    let words = shell_words(&rec.args);
    let args: Vec<&str> = words.iter().map(String::as_str).collect();
    let mut ipvs = setup(&rec.setup);
    let top = parse(&rec.argv0, &args, &Names);
    let out = match (&top, &rec.stdin) {
        (Ok(Command::Restore), Some(input)) => run_restore(&mut ipvs, &rec.argv0, input),
        _ => run_once(&mut ipvs, &rec.argv0, &args, false),
    };
    let Some(out) = out else {
        // sync daemons: parsed, not modelled by rvs-core; ipvsadm must have reached the kernel
        counts[2] += 1;
        return match rec.status {
            0 | 255 => Ok(()),
            s => Err(format!(
                "`ipvsadm {}`: parsed, but ipvsadm exited {s}",
                rec.args
            )),
        };
    };
    let ctx = format!("`{} {}` (setup {})", rec.argv0, rec.args, rec.setup);
    if out.status != rec.status || out.stderr != rec.stderr {
        return Err(format!(
            "{ctx}: got status {} stderr {:?}, ipvsadm: status {} stderr {:?}",
            out.status, out.stderr, rec.status, rec.stderr
        ));
    }
    match out.stdout {
        Some(stdout) => {
            counts[0] += 1;
            if stdout != rec.stdout {
                return Err(format!(
                    "{ctx}: stdout differs:\n{stdout}\n---\n{}",
                    rec.stdout
                ));
            }
        }
        None => counts[1] += 1,
    }
    let (mut got, mut want) = (save_lines(&ipvs), rec.save_lines());
    got.sort();
    want.sort();
    if got != want {
        return Err(format!(
            "{ctx}: rules after differ:\n{got:#?}\nkernel:\n{want:#?}"
        ));
    }
    Ok(())
}

#[test]
fn every_recorded_invocation_replays() {
    let records = Record::parse_all(GOLDEN);
    assert!(records.len() >= 300, "{} records", records.len());
    let mut counts = [0usize; 3];
    let mut failures = Vec::new();
    for rec in &records {
        if rec.args.contains("--json") {
            continue; // our extension: ipvsadm 1.31 does not know it
        }
        if let Err(e) = replay(rec, &mut counts) {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        records.len(),
        failures.join("\n")
    );
    eprintln!(
        "{} decided by the parser (byte for byte), {} through the model, {} daemon cases parsed",
        counts[0], counts[1], counts[2]
    );
}

#[test]
fn json_is_a_list_extension_only() {
    let Ok(Command::List { opts, .. }) = parse("ipvsadm", &["-L", "--json"], &Names) else {
        panic!("-L --json parses");
    };
    assert!(opts.json);
    let err = parse("ipvsadm", &["-S", "--json"], &Names).unwrap_err();
    assert_eq!(
        err.stderr,
        "Illegal 'json' option with the 'save' command\n"
    );
}

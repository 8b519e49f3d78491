//! # rvsd: the rvs director daemon
//!
//! Holds one IPVS state (`rvs_core::ipvs::Ipvs`, shared through `rvs_proxy::core::Core`),
//! runs its timers, serves its virtual services with the userspace data plane
//! (`rvs_proxy::Dataplane`), and serves the control socket that `rvsadm` talks to (protocol:
//! `rvs_api::proto`, `docs/control-api.md`). Foreground, logs to stderr. SIGTERM/SIGINT: stop
//! accepting (control and data), let open connections finish up to `--drain-timeout`, remove
//! the socket, exit 0. SIGHUP re-reads the configuration files (`--config`, `--keepalived`,
//! `--ldirectord`) and applies only what changed (also `rvsadm --reload`).
//! `--demo` starts three HTTP real servers on loopback and a service in front of them.
//! `--check-config FILE` validates an rvs TOML configuration file and exits (status 0 and
//! `FILE: ok (…)` on stdout, or status 1 and `file:line:column: message` on stderr) without
//! starting anything.
//!
//! ```text
//! rvsd [--socket PATH] [--state FILE] [--workers N]
//!      [--dataplane userspace | --dataplane xdp --iface NAME...]
//!      [--drain-timeout SECS] [--demo]
//! rvsd --check-config FILE
//! rvsd realserver --vip ADDR... --mode dr|tun [--iface NAME]... [--gue-port N]... [--stop]
//! ```
//!
//! `rvsd realserver` sets up (or with `--stop` undoes) a real server of direct-routing or
//! tunnelling services on the host it runs on and exits (see `realserver.rs`).
#![deny(unsafe_code)]

#[allow(unsafe_code)] // mount(2) of bpffs
mod bpffs;
mod config;
mod demo;
mod director;
mod files;
mod health;
#[allow(unsafe_code)] // the netlink socket's system calls (each `unsafe` says why it is sound)
mod netlink;
mod realserver;
mod server;
mod statefile;
mod status;
mod xdp;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use director::Director;
use server::Shared;

const USAGE: &str = "\
Usage: rvsd [--socket PATH] [--state FILE] [--workers N]
            [--dataplane userspace | --dataplane xdp --iface NAME...]
            [--drain-timeout SECS] [--demo]
            [--config FILE] [--keepalived FILE] [--ldirectord FILE]
       rvsd --check-config [FILE] [--config FILE] [--keepalived FILE] [--ldirectord FILE]
       rvsd realserver --vip ADDR... --mode dr|tun [--iface NAME]... [--gue-port N]...
       rvsd realserver --stop [--vip ADDR]...      (rvsd realserver --help)
  --socket PATH          control socket (default: $RVS_SOCKET, else /run/rvs/rvsd.sock;
                         with --demo, a socket in a temporary directory)
  --state FILE           save the rules to FILE after every change, restore them at start
  --workers N            data-plane worker threads (default: number of CPUs)
  --dataplane KIND       userspace (default): a proxy, no kernel module needed;
                         xdp: DR and tunnel services forwarded in the kernel by XDP
  --iface NAME           (xdp; repeatable) an interface clients' packets arrive on
  --xdp-mode MODE        (xdp) auto (default: in the driver when it can, else generic),
                         driver, or generic
  --drain-timeout SECS   on SIGTERM, how long open connections may finish (default 30)
  --demo                 three HTTP real servers on loopback behind 127.0.0.1:8080 (wlc 1/2/3)
  --config FILE          rvs configuration file (TOML): services, real servers, checks
  --keepalived FILE      keepalived.conf: its virtual servers and checkers (VRRP ignored)
  --ldirectord FILE      ldirectord.cf: its virtual services and checks
  --check-config [FILE]  validate FILE (TOML) and the files given with --config,
                         --keepalived, --ldirectord, and exit; starts nothing
";

/// The command line.
#[derive(Debug)]
struct Args {
    socket: PathBuf,
    /// `--socket` given explicitly (or by `RVS_SOCKET`)
    socket_set: bool,
    state: Option<PathBuf>,
    workers: usize,
    dataplane: String,
    /// `--iface` (for `--dataplane xdp`)
    ifaces: Vec<String>,
    /// `--xdp-mode`
    xdp_mode: rvs_bpf::XdpAttach,
    drain: Duration,
    demo: bool,
    /// `--workers` / `--drain-timeout` given (a configuration file's settings yield to them)
    workers_set: bool,
    drain_set: bool,
    /// `--check-config`: validate and exit
    check: bool,
    /// `--config`, `--keepalived`, `--ldirectord` (and the value of `--check-config FILE`)
    sources: config::Sources,
}

fn parse_args(argv: impl Iterator<Item = String>) -> Result<Option<Args>> {
    let mut args = Args {
        socket: rvs_api::proto::default_socket(),
        socket_set: std::env::var_os("RVS_SOCKET").is_some(),
        state: None,
        workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        dataplane: "userspace".into(),
        ifaces: Vec::new(),
        xdp_mode: rvs_bpf::XdpAttach::Auto,
        drain: Duration::from_secs(30),
        demo: false,
        workers_set: false,
        drain_set: false,
        check: false,
        sources: config::Sources::default(),
    };
    let mut argv = argv.peekable();
    while let Some(word) = argv.next() {
        let (flag, inline) = match word.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (word.clone(), None),
        };
        if flag == "--help" || flag == "-h" {
            return Ok(None);
        }
        if flag == "--demo" {
            args.demo = true;
            continue;
        }
        if flag == "--check-config" {
            args.check = true;
            // its value is optional: the files may come with --config/--keepalived/…
            let value = inline.or_else(|| argv.next_if(|w| !w.starts_with("--")));
            if let Some(v) = value {
                set_once(&mut args.sources.config, "--config", v)?;
            }
            continue;
        }
        let value = match inline.or_else(|| argv.next()) {
            Some(v) => v,
            None => bail!("{flag}: missing value"),
        };
        match flag.as_str() {
            "--socket" => {
                args.socket = value.into();
                args.socket_set = true;
            }
            "--state" => args.state = Some(value.into()),
            "--config" => set_once(&mut args.sources.config, "--config", value)?,
            "--keepalived" => set_once(&mut args.sources.keepalived, "--keepalived", value)?,
            "--ldirectord" => set_once(&mut args.sources.ldirectord, "--ldirectord", value)?,
            "--workers" => {
                args.workers_set = true;
                args.workers = value
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| format!("--workers: not a positive number: {value}"))?;
            }
            "--dataplane" if value == "userspace" || value == "xdp" => args.dataplane = value,
            "--dataplane" => bail!("--dataplane: expected userspace or xdp, got {value}"),
            "--iface" => args.ifaces.push(value),
            "--xdp-mode" => {
                args.xdp_mode = match value.as_str() {
                    "auto" => rvs_bpf::XdpAttach::Auto,
                    "driver" => rvs_bpf::XdpAttach::Driver,
                    "generic" => rvs_bpf::XdpAttach::Generic,
                    _ => bail!("--xdp-mode: expected auto, driver or generic, got {value}"),
                }
            }
            "--drain-timeout" => {
                let secs: u64 = value.parse().with_context(|| {
                    format!("--drain-timeout: not a number of seconds: {value}")
                })?;
                args.drain = Duration::from_secs(secs);
                args.drain_set = true;
            }
            _ => bail!("unknown option {flag}"),
        }
    }
    match (args.dataplane.as_str(), args.ifaces.is_empty()) {
        ("xdp", true) => bail!("--dataplane xdp: name the interfaces to serve with --iface"),
        ("userspace", false) => bail!("--iface: only with --dataplane xdp"),
        _ => {}
    }
    Ok(Some(args))
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("realserver") {
        std::process::exit(realserver::main(&argv[1..]));
    }
    let args = match parse_args(argv.into_iter()) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("rvsd: {e:#}\n{USAGE}");
            std::process::exit(2);
        }
    };
    if args.check {
        std::process::exit(check_config(&args));
    }
    if let Err(e) = run(&args) {
        tracing::error!("{e:#}");
        std::process::exit(1);
    }
}

fn set_once(slot: &mut Option<PathBuf>, flag: &str, value: String) -> Result<()> {
    if slot.is_some() {
        bail!("{flag} given twice");
    }
    *slot = Some(value.into());
    Ok(())
}

/// `--check-config`: read and validate the files, report, and give the exit status.
fn check_config(args: &Args) -> i32 {
    match args.sources.load() {
        Ok(None) => {
            eprintln!("rvsd: --check-config: no file to check (give FILE, --config, --keepalived or --ldirectord)");
            2
        }
        Ok(Some(cfg)) => {
            let reals: usize = cfg.services.iter().map(|s| s.reals.len()).sum();
            let checks: usize = cfg
                .services
                .iter()
                .flat_map(|s| &s.reals)
                .map(|r| r.checks.len())
                .sum();
            let names = args.sources.names();
            for n in &cfg.notices {
                eprintln!("{}: {}", n.loc, n.msg);
            }
            println!(
                "{}: ok ({} services, {reals} real servers, {checks} checks)",
                names.join(", "),
                cfg.services.len()
            );
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

fn run(args: &Args) -> Result<()> {
    let config = args.sources.load().map_err(anyhow::Error::msg)?;
    if let Some(cfg) = &config {
        for n in &cfg.notices {
            tracing::warn!("{}: {}", n.loc, n.msg);
        }
    }
    let settings = config
        .as_ref()
        .map(|c| c.settings.clone())
        .unwrap_or_default();
    let mut director = Director::new();
    if let Some(path) = &args.state {
        let n = statefile::restore(path, &mut director)?;
        tracing::info!(state = %path.display(), lines = n, "restored");
    }
    if let Some((tcp, tcpfin, udp)) = settings.timeouts {
        let set = rvs_config::ipvsadm::Command::SetTimeouts { tcp, tcpfin, udp };
        let out = director.run(&set, &rvs_config::NoNames);
        if out.exit.status != 0 {
            bail!("timeouts: {}", out.exit.stderr.trim_end());
        }
    }
    let workers = match (args.workers_set, settings.workers) {
        (false, Some(n)) => n,
        _ => args.workers,
    };
    let drain_limit = match (args.drain_set, settings.drain_timeout) {
        (false, Some(d)) => d,
        _ => args.drain,
    };
    let mut opts = rvs_proxy::Options {
        workers,
        ..rvs_proxy::Options::default()
    };
    if let Some(t) = settings.connect_timeout {
        opts.connect_timeout = t;
    }
    // passive health: the data plane reports each connection to a real server to the checker
    let passive = config.as_ref().map(|_| {
        let (sink, rx) = health::passive_channel();
        opts.events = Some(sink);
        rx
    });
    let dp = if args.dataplane == "xdp" {
        director::Dataplane::Xdp(xdp::XdpDataplane::start(
            director.core().clone(),
            &args.ifaces,
            args.xdp_mode,
        )?)
    } else {
        director::Dataplane::Proxy(
            rvs_proxy::Dataplane::start(director.core().clone(), opts)
                .context("starting the data plane")?,
        )
    };
    director.attach(dp);
    let shared = Arc::new(Shared {
        director: Mutex::new(director),
        state: args.state.clone(),
        checker: Mutex::new(None),
    });
    let socket = match (&args.demo, args.socket_set) {
        (true, false) => demo::socket_path(),
        _ => args.socket.clone(),
    };
    let control = server::bind(&socket)?;
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = spawn_ticker(shared.clone(), stop.clone());
    let stopper = control.stopper().context("the control socket")?;
    spawn_signals(stopper, stop.clone(), shared.clone())?;
    if let (Some(cfg), Some(passive)) = (config, passive) {
        let checker = health::Checker::start(cfg, shared.clone(), passive)?;
        *shared.checker.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((args.sources.clone(), checker));
    }
    tracing::info!(
        socket = %socket.display(),
        dataplane = %args.dataplane,
        workers,
        "rvsd ready"
    );
    let _demo = if args.demo {
        Some(demo::start(&shared, &socket)?)
    } else {
        None
    };
    server::serve(&control.listener, &shared, &stop);
    stop.store(true, Ordering::SeqCst);
    control.remove_file();
    if args.demo && !args.socket_set {
        demo::remove_dir(&socket);
    }
    let checker = shared
        .checker
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some((_, c)) = checker {
        c.stop();
    }
    drain(&shared, drain_limit);
    let _ = ticker.join();
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM: close every listening socket, let open connections finish within `limit`, then
/// stop the workers (closing what is left).
fn drain(shared: &Shared, limit: Duration) {
    let dp = shared
        .director
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .detach();
    let mut dp = match dp {
        Some(director::Dataplane::Proxy(dp)) => dp,
        Some(director::Dataplane::Xdp(x)) => {
            // flows forwarded in the kernel need no draining here: the program detaches
            x.shutdown();
            return;
        }
        None => return,
    };
    dp.stop_accepting();
    let deadline = std::time::Instant::now() + limit;
    let open = dp.open_connections();
    if open > 0 {
        tracing::info!(open, limit = ?limit, "draining");
    }
    while dp.open_connections() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = dp.open_connections();
    if left > 0 {
        tracing::warn!(left, "drain timeout: closing the connections left");
    }
    dp.shutdown();
}

/// Drive the engine's timers (`advance` at `next_wakeup`, checked at least every 200 ms).
fn spawn_ticker(shared: Arc<Shared>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            let wait = {
                let mut d = shared.director.lock().unwrap_or_else(|e| e.into_inner());
                let next = d.advance();
                next.map_or(200, |t| t.as_millis().saturating_sub(d.now().as_millis()))
            };
            std::thread::sleep(Duration::from_millis(wait.clamp(1, 200)));
        }
    })
}

/// SIGTERM/SIGINT raise `stop` and wake the accept loop (through the socket itself: its file
/// may be gone); SIGHUP reloads the configuration files.
fn spawn_signals(
    stopper: server::Stopper,
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
) -> Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP]).context("signal handlers")?;
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if sig == SIGHUP {
                if let Err(e) = health::reload_files(&shared) {
                    tracing::error!("SIGHUP: {e}");
                }
                continue;
            }
            tracing::info!(signal = sig, "stopping");
            stop.store(true, Ordering::SeqCst);
            stopper.stop();
            break;
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Result<Option<Args>> {
        parse_args(words.iter().map(|s| s.to_string()))
    }

    #[test]
    fn flags_and_values() {
        let a = args(&["--socket", "/tmp/s", "--state=/tmp/st", "--workers", "3"])
            .unwrap()
            .unwrap();
        assert_eq!(a.socket, PathBuf::from("/tmp/s"));
        assert_eq!(a.state, Some(PathBuf::from("/tmp/st")));
        assert_eq!((a.workers, a.dataplane.as_str()), (3, "userspace"));
        assert!(args(&["--help"]).unwrap().is_none());
        assert!(args(&["--workers", "0"]).is_err());
        assert!(args(&["--dataplane", "dpdk"]).is_err());
        assert!(args(&["--dataplane", "xdp"]).is_err(), "xdp needs --iface");
        assert!(args(&["--iface", "eth0"]).is_err(), "--iface needs xdp");
        let a = args(&["--dataplane", "xdp", "--iface", "eth0", "--iface=eth1"])
            .unwrap()
            .unwrap();
        assert_eq!(a.ifaces, ["eth0", "eth1"]);
        let a = args(&["--demo", "--drain-timeout", "2"]).unwrap().unwrap();
        assert!(a.demo);
        assert_eq!(a.drain, Duration::from_secs(2));
        assert!(args(&["--drain-timeout", "soon"]).is_err());
        assert!(args(&["--socket"]).is_err());
        assert!(args(&["--frob", "1"]).is_err());
        let a = args(&["--check-config", "/etc/rvs/rvs.toml"])
            .unwrap()
            .unwrap();
        assert!(a.check);
        assert_eq!(a.sources.config, Some(PathBuf::from("/etc/rvs/rvs.toml")));
        let a = args(&["--check-config", "--keepalived", "/etc/k.conf"])
            .unwrap()
            .unwrap();
        assert!(a.check && a.sources.config.is_none());
        assert_eq!(a.sources.keepalived, Some(PathBuf::from("/etc/k.conf")));
        assert!(args(&["--config", "a", "--config", "b"]).is_err());
        assert!(args(&["--keepalived"]).is_err());
    }
}

//! # rvsd: the rvs director daemon (control plane)
//!
//! Holds one IPVS state (`rvs_core::ipvs::Ipvs`), runs its timers, and serves the control
//! socket that `rvsadm` talks to (protocol: `rvs_api::proto`, `docs/control-api.md`).
//! Foreground, logs to stderr. SIGTERM/SIGINT: stop accepting, finish the request in hand,
//! remove the socket, exit 0. SIGHUP is logged (configuration reload arrives with `--config`).
//!
//! ```text
//! rvsd [--socket PATH] [--state FILE] [--workers N] [--dataplane userspace|xdp]
//! ```
#![forbid(unsafe_code)]

mod director;
mod server;
mod statefile;

use std::io::IsTerminal;
use std::os::unix::net::UnixStream;
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
Usage: rvsd [--socket PATH] [--state FILE] [--workers N] [--dataplane userspace|xdp]
  --socket PATH     control socket (default: $RVS_SOCKET, else /run/rvs/rvsd.sock)
  --state FILE      save the rules to FILE after every change, restore them at start
  --workers N       data-plane worker threads (default: number of CPUs)
  --dataplane KIND  userspace (default) or xdp
";

/// The command line.
#[derive(Debug)]
struct Args {
    socket: PathBuf,
    state: Option<PathBuf>,
    workers: usize,
    dataplane: String,
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Option<Args>> {
    let mut args = Args {
        socket: rvs_api::proto::default_socket(),
        state: None,
        workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        dataplane: "userspace".into(),
    };
    while let Some(word) = argv.next() {
        let (flag, inline) = match word.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (word.clone(), None),
        };
        if flag == "--help" || flag == "-h" {
            return Ok(None);
        }
        let value = match inline.or_else(|| argv.next()) {
            Some(v) => v,
            None => bail!("{flag}: missing value"),
        };
        match flag.as_str() {
            "--socket" => args.socket = value.into(),
            "--state" => args.state = Some(value.into()),
            "--workers" => {
                args.workers = value
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| format!("--workers: not a positive number: {value}"))?;
            }
            "--dataplane" if value == "userspace" || value == "xdp" => args.dataplane = value,
            "--dataplane" => bail!("--dataplane: expected userspace or xdp, got {value}"),
            _ => bail!("unknown option {flag}"),
        }
    }
    Ok(Some(args))
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = match parse_args(std::env::args().skip(1)) {
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
    if let Err(e) = run(&args) {
        tracing::error!("{e:#}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<()> {
    let mut director = Director::new();
    if let Some(path) = &args.state {
        let n = statefile::restore(path, &mut director)?;
        tracing::info!(state = %path.display(), lines = n, "restored");
    }
    let shared = Arc::new(Shared {
        director: Mutex::new(director),
        state: args.state.clone(),
    });
    let listener = server::bind(&args.socket)?;
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = spawn_ticker(shared.clone(), stop.clone());
    spawn_signals(args.socket.clone(), stop.clone())?;
    tracing::info!(
        socket = %args.socket.display(),
        dataplane = %args.dataplane,
        workers = args.workers,
        "rvsd ready (control plane; no data plane runs in this build)"
    );
    server::serve(&listener, &shared, &stop);
    stop.store(true, Ordering::SeqCst);
    let _ = std::fs::remove_file(&args.socket);
    let _ = ticker.join();
    tracing::info!("stopped");
    Ok(())
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

/// SIGTERM/SIGINT raise `stop` and wake the accept loop; SIGHUP is logged.
fn spawn_signals(socket: PathBuf, stop: Arc<AtomicBool>) -> Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP]).context("signal handlers")?;
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if sig == SIGHUP {
                tracing::info!("SIGHUP: no configuration file to reload");
                continue;
            }
            tracing::info!(signal = sig, "stopping");
            stop.store(true, Ordering::SeqCst);
            let _ = UnixStream::connect(&socket);
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
        assert!(args(&["--socket"]).is_err());
        assert!(args(&["--frob", "1"]).is_err());
    }
}

//! The health checker at work: rvs-health's engine (pure) driven on a thread of its own, its
//! probes run by rvs-probe, its decisions applied to the director exactly as the equivalent
//! ipvsadm commands would be (so `rvsadm -Ln`, the state file and the data plane follow),
//! its scripts started, one log line per transition.
//!
//! The files own what they declare: at start each declared service is created (or, when the
//! state file already restored it, edited to the file's settings), and from then on the
//! checker adds, edits and removes its real servers. An operator may still change them with
//! rvsadm; the checker's next decision about a server applies over such a change.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use rvs_config::ipvsadm::Command;
use rvs_config::spec::{self, Config};
use rvs_config::NoNames;
use rvs_core::model::DestConf;
use rvs_core::time::Tick;
use rvs_health::{Action, Health, Outcome, ProbeRequest};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::server::Shared;
use crate::statefile;

/// The running checker.
pub struct Checker {
    stop: Arc<tokio::sync::Notify>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Checker {
    /// Install the configuration's services and start checking their real servers.
    pub fn start(cfg: Config, shared: Arc<Shared>) -> Result<Checker> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("the checker's runtime")?;
        let stop = Arc::new(tokio::sync::Notify::new());
        let stopping = Arc::new(AtomicBool::new(false));
        let (s, flag) = (stop.clone(), stopping.clone());
        let thread = std::thread::Builder::new()
            .name("rvs-health".into())
            .spawn(move || rt.block_on(run(cfg, shared, s, flag)))
            .context("starting the checker")?;
        Ok(Checker {
            stop,
            stopping,
            thread: Some(thread),
        })
    }

    /// Stop checking (the `omega` notifiers run) and wait for the thread.
    pub fn stop(mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn now(shared: &Shared) -> Tick {
    shared
        .director
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .now()
}

async fn run(
    cfg: Config,
    shared: Arc<Shared>,
    stop: Arc<tokio::sync::Notify>,
    stopping: Arc<AtomicBool>,
) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let mut health = Health::new(&cfg, seed, now(&shared));
    apply(&shared, health.initial_actions());
    let (tx, mut rx) = unbounded_channel::<(u64, Outcome)>();
    while !stopping.load(Ordering::SeqCst) {
        let t = now(&shared);
        apply(&shared, health.advance(t));
        for req in health.due_probes(t) {
            let tx = tx.clone();
            tokio::spawn(async move {
                let outcome = probe(&req).await;
                let _ = tx.send((req.id, outcome));
            });
        }
        let wait = health
            .next_wakeup()
            .map_or(1000, |w| {
                w.as_millis().saturating_sub(now(&shared).as_millis())
            })
            .clamp(1, 1000);
        tokio::select! {
            got = rx.recv() => {
                if let Some((id, outcome)) = got {
                    apply(&shared, health.report(id, outcome, now(&shared)));
                    drain_results(&shared, &mut health, &mut rx);
                }
            }
            () = tokio::time::sleep(Duration::from_millis(wait)) => {}
            () = stop.notified() => {}
        }
    }
    apply(&shared, health.stop_actions());
}

/// Results that arrived together are applied before the next round of probes.
fn drain_results(shared: &Shared, health: &mut Health, rx: &mut UnboundedReceiver<(u64, Outcome)>) {
    while let Ok((id, outcome)) = rx.try_recv() {
        apply(shared, health.report(id, outcome, now(shared)));
    }
}

async fn probe(req: &ProbeRequest) -> Outcome {
    let target = SocketAddr::new(req.target.0, req.target.1);
    rvs_probe::run(&req.spec, target).await
}

/// The ipvsadm command an IPVS action stands for.
fn command(a: &Action) -> Option<Command> {
    Some(match a {
        Action::AddService { key, conf } => Command::AddService {
            key: *key,
            conf: conf.clone(),
        },
        Action::AddDest { service, dest } => Command::AddDest {
            key: *service,
            dest: *dest,
            proxy_protocol: Some(dest.proxy_protocol),
        },
        Action::EditDest { service, dest } => Command::EditDest {
            key: *service,
            dest: *dest,
            proxy_protocol: Some(dest.proxy_protocol),
        },
        Action::DelDest {
            service,
            addr,
            port,
        } => Command::DelDest {
            key: *service,
            dest: DestConf::new(*addr, *port),
        },
        Action::Run(_) | Action::Log(_) => return None,
    })
}

/// What to do instead when a command meets a state it did not expect (a service restored
/// from the state file, a server an operator already added or removed).
fn fallback(cmd: &Command) -> Option<Command> {
    match cmd {
        Command::AddService { key, conf } => Some(Command::EditService {
            key: *key,
            conf: conf.clone(),
        }),
        Command::AddDest {
            key,
            dest,
            proxy_protocol,
        } => Some(Command::EditDest {
            key: *key,
            dest: *dest,
            proxy_protocol: *proxy_protocol,
        }),
        Command::EditDest {
            key,
            dest,
            proxy_protocol,
        } => Some(Command::AddDest {
            key: *key,
            dest: *dest,
            proxy_protocol: *proxy_protocol,
        }),
        _ => None,
    }
}

/// Apply the engine's actions in order: IPVS changes under the director's lock (the state
/// file rewritten once after them), then scripts and log lines.
pub fn apply(shared: &Shared, actions: Vec<Action>) {
    if actions.is_empty() {
        return;
    }
    let mut changed = false;
    {
        let mut d = shared.director.lock().unwrap_or_else(|e| e.into_inner());
        for a in &actions {
            let Some(cmd) = command(a) else { continue };
            let mut out = d.run(&cmd, &NoNames);
            if out.exit.status != 0 {
                if let Some(other) = fallback(&cmd) {
                    out = d.run(&other, &NoNames);
                }
            }
            // a server already gone is what a removal wants
            let gone = matches!(cmd, Command::DelDest { .. });
            if out.exit.status != 0 && !gone {
                tracing::warn!("checker: {a}: {}", out.exit.stderr.trim_end());
            }
            changed |= out.changed;
        }
        if changed {
            if let Some(path) = &shared.state {
                if let Err(e) = statefile::write_atomic(path, &d.saved_rules()) {
                    tracing::error!("state file {}: {e:#}", path.display());
                }
            }
        }
    }
    for a in actions {
        match a {
            Action::Log(line) => tracing::info!("{line}"),
            Action::Run(cmd) => spawn(&cmd),
            _ => {}
        }
    }
}

/// Start a notify / quorum / sorry-server script without waiting for it (a thread reaps it).
fn spawn(c: &spec::Command) {
    let Some(prog) = c.argv.first() else { return };
    let mut cmd = if c.shell {
        let mut x = std::process::Command::new("/bin/sh");
        x.arg("-c").arg(c.argv.join(" "));
        x
    } else {
        let mut x = std::process::Command::new(prog);
        x.args(&c.argv[1..]);
        x
    };
    cmd.stdin(std::process::Stdio::null());
    match cmd.spawn() {
        Ok(mut child) => {
            std::thread::spawn(move || {
                let _ = child.wait();
            });
        }
        Err(e) => tracing::warn!("cannot run {prog}: {e}"),
    }
}

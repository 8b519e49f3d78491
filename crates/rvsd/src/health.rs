//! The health checker at work: rvs-health's engine (pure) driven on a thread of its own, its
//! probes run by rvs-probe, its decisions applied to the director exactly as the equivalent
//! ipvsadm commands would be (so `rvsadm -Ln`, the state file and the data plane follow),
//! its scripts started, one log line per transition.
//!
//! The files own what they declare: at start each declared service is created (or, when the
//! state file already restored it, edited to the file's settings), and from then on the
//! checker adds, edits and removes its real servers. An operator may still change them with
//! rvsadm; the checker's next decision about a server applies over such a change.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use rvs_config::ipvsadm::Command;
use rvs_config::spec::{self, Config};
use rvs_config::NoNames;
use rvs_core::model::{DestConf, ServiceKey};
use rvs_core::time::Tick;
use rvs_health::{Action, Health, Outcome, PassiveEvent, ProbeRequest};
use rvs_proxy::{DestEvent, DestEventKind};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::server::Shared;
use crate::statefile;

/// The running checker.
pub struct Checker {
    stop: Arc<tokio::sync::Notify>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    asks: UnboundedSender<Ask>,
}

/// A request to the checker's thread.
enum Ask {
    /// take this configuration; answer the summary
    Reload {
        cfg: Config,
        done: std::sync::mpsc::Sender<String>,
    },
    /// answer the state of every service and real server (`json`: as JSON)
    Status {
        json: bool,
        done: std::sync::mpsc::Sender<String>,
    },
}

/// Real servers no longer declared, draining: weight 0 until their connections are gone or
/// the grace period is over, then removed.
struct Draining {
    key: ServiceKey,
    dest: DestConf,
    until: Tick,
}

impl Checker {
    /// Install the configuration's services and start checking their real servers;
    /// `passive` brings the data plane's connection reports (passive health).
    pub fn start(cfg: Config, shared: Arc<Shared>, passive: PassiveFeed) -> Result<Checker> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("the checker's runtime")?;
        let stop = Arc::new(tokio::sync::Notify::new());
        let stopping = Arc::new(AtomicBool::new(false));
        let (s, flag) = (stop.clone(), stopping.clone());
        let (asks, rx) = unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("rvs-health".into())
            .spawn(move || rt.block_on(run(cfg, shared, s, flag, rx, passive)))
            .context("starting the checker")?;
        Ok(Checker {
            stop,
            stopping,
            thread: Some(thread),
            asks,
        })
    }

    /// Hand the checker a new configuration; returns the summary of what changed once it is
    /// applied.
    pub fn reload(&self, cfg: Config) -> Result<String> {
        let (done, wait) = std::sync::mpsc::channel();
        self.asks
            .send(Ask::Reload { cfg, done })
            .map_err(|_| anyhow::anyhow!("the checker has stopped"))?;
        wait.recv_timeout(Duration::from_secs(30))
            .context("the checker did not answer the reload")
    }

    /// The checker's view of every service and real server, as text or JSON.
    pub fn status(&self, json: bool) -> Result<String> {
        let (done, wait) = std::sync::mpsc::channel();
        self.asks
            .send(Ask::Status { json, done })
            .map_err(|_| anyhow::anyhow!("the checker has stopped"))?;
        wait.recv_timeout(Duration::from_secs(5))
            .context("the checker did not answer")
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

/// SIGHUP and `rvsadm --reload`: read the files again and hand them to the checker. A file
/// that does not read leaves everything as it was (the error says where and what).
pub fn reload_files(shared: &Shared) -> Result<String, String> {
    let guard = shared.checker.lock().unwrap_or_else(|e| e.into_inner());
    let Some((sources, checker)) = guard.as_ref() else {
        return Err(
            "rvsd: no configuration file to reload (started without --config, --keepalived or --ldirectord)"
                .into(),
        );
    };
    let cfg = match sources.load() {
        Ok(Some(cfg)) => cfg,
        Ok(None) => return Err("rvsd: no configuration file to reload".into()),
        Err(e) => {
            tracing::error!("reload refused, nothing changed: {e}");
            return Err(format!("{e}\nrvsd: reload refused, nothing changed"));
        }
    };
    for n in &cfg.notices {
        tracing::warn!("{}: {}", n.loc, n.msg);
    }
    checker
        .reload(cfg)
        .map_err(|e| format!("rvsd: reload: {e:#}"))
}

fn now(shared: &Shared) -> Tick {
    shared
        .director
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .now()
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

async fn run(
    cfg: Config,
    shared: Arc<Shared>,
    stop: Arc<tokio::sync::Notify>,
    stopping: Arc<AtomicBool>,
    mut asks: UnboundedReceiver<Ask>,
    mut passive: PassiveFeed,
) {
    passive.want(&cfg);
    let mut grace = cfg.settings.drain_grace.unwrap_or(DEFAULT_GRACE);
    let mut health = Health::new(&cfg, seed(), now(&shared));
    apply(&shared, health.initial_actions());
    apply(&shared, undeclared(&shared, &health, &cfg));
    let mut current = cfg;
    let (tx, mut rx) = unbounded_channel::<(u64, Outcome)>();
    let mut draining: Vec<Draining> = Vec::new();
    while !stopping.load(Ordering::SeqCst) {
        let t = now(&shared);
        apply(&shared, health.advance(t));
        drain_step(&shared, &mut draining, t);
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
            Some(ev) = passive.rx.recv() => {
                let t = now(&shared);
                let mut evs = vec![ev];
                while let Ok(more) = passive.rx.try_recv() {
                    evs.push(more);
                }
                for ev in evs {
                    on_passive(&shared, &mut health, ev, t);
                }
            }
            got = asks.recv() => match got {
                Some(Ask::Reload { cfg, done }) => {
                    grace = cfg.settings.drain_grace.unwrap_or(DEFAULT_GRACE);
                    passive.want(&cfg);
                    let summary = reload(&shared, &mut health, &cfg, &mut draining, grace);
                    current = cfg;
                    let _ = done.send(summary);
                }
                Some(Ask::Status { json, done }) => {
                    let st = crate::status::collect(&health, &current, now(&shared));
                    let _ = done.send(if json { crate::status::json(&st) } else { crate::status::text(&st) });
                }
                None => {}
            },
            () = tokio::time::sleep(Duration::from_millis(wait)) => {}
            () = stop.notified() => {}
        }
    }
    let _ = grace;
    apply(&shared, health.stop_actions());
}

/// A connection report from the data plane, for the server's passive health.
fn on_passive(shared: &Shared, health: &mut Health, ev: DestEvent, t: Tick) {
    let Some(real) = health.find_real(&ev.service, ev.dest.ip(), ev.dest.port()) else {
        return;
    };
    let kind = match ev.kind {
        DestEventKind::ConnectFailure => PassiveEvent::ConnectFailure,
        DestEventKind::Reset => PassiveEvent::Reset,
        DestEventKind::Success => PassiveEvent::Success,
    };
    apply(shared, health.passive(real, kind, t));
}

/// The data plane's connection reports on their way to the checker: only those of services
/// with passive health pass (the others would wake the checker once per connection for
/// nothing).
pub struct PassiveFeed {
    rx: UnboundedReceiver<DestEvent>,
    wanted: Arc<RwLock<HashSet<ServiceKey>>>,
}

impl PassiveFeed {
    /// Let through the reports of the services of `cfg` with passive health.
    fn want(&self, cfg: &Config) {
        let keys = cfg
            .services
            .iter()
            .filter(|s| s.passive.is_some())
            .flat_map(|s| s.keys.iter().copied())
            .collect();
        *self.wanted.write().unwrap_or_else(|e| e.into_inner()) = keys;
    }
}

/// The data plane's side of passive health: a sink that hands the reports the checker wants
/// to it.
pub fn passive_channel() -> (rvs_proxy::EventSink, PassiveFeed) {
    let (tx, rx) = unbounded_channel();
    let wanted: Arc<RwLock<HashSet<ServiceKey>>> = Arc::default();
    let filter = wanted.clone();
    let sink = rvs_proxy::EventSink(Arc::new(move |ev: DestEvent| {
        let want = filter.read().unwrap_or_else(|e| e.into_inner());
        if want.contains(&ev.service) {
            let _ = tx.send(ev);
        }
    }));
    (sink, PassiveFeed { rx, wanted })
}

/// How long a real server dropped by a reload may keep its connections, unless the
/// configuration says (`drain_grace`).
const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// Apply a reload: the engine's differences, then the dropped servers set to weight 0 to
/// drain.
fn reload(
    shared: &Shared,
    health: &mut Health,
    cfg: &Config,
    draining: &mut Vec<Draining>,
    grace: Duration,
) -> String {
    let t = now(shared);
    let r = health.reload(cfg, seed(), t);
    // a draining server the file declares again is the checker's again, whatever its weight
    draining.retain(|d| !declares(cfg, &d.key, &d.dest));
    apply(shared, r.actions);
    let until = Tick(t.as_millis() + grace.as_millis() as u64);
    let quiesce: Vec<Action> = r
        .drain
        .iter()
        .filter(|(_, d)| d.weight != 0)
        .map(|(key, d)| Action::EditDest {
            service: *key,
            dest: d.weight(0),
        })
        .collect();
    apply(shared, quiesce);
    for (key, dest) in r.drain {
        tracing::info!(
            "real server {} of {key} draining: no longer declared (removed once its connections end, at most {}s)",
            rvs_core::model::SockAddr(dest.addr, dest.port),
            grace.as_secs()
        );
        draining
            .retain(|d| !(d.key == key && (d.dest.addr, d.dest.port) == (dest.addr, dest.port)));
        draining.push(Draining { key, dest, until });
    }
    let [same, changed, added, removed] = r.services;
    let [kept, new, drained] = r.reals;
    let line = format!(
        "reloaded: services {same} unchanged, {changed} changed, {added} added, {removed} removed; real servers {kept} kept, {new} added, {drained} draining"
    );
    tracing::info!("{line}");
    line
}

/// Whether `cfg` declares `dest` (a real server or the sorry server) in service `key`.
fn declares(cfg: &Config, key: &ServiceKey, dest: &DestConf) -> bool {
    cfg.services
        .iter()
        .filter(|s| s.keys.contains(key))
        .flat_map(|s| {
            let sorry = s.sorry.as_ref().map(|x| x.dest);
            s.reals.iter().map(|r| r.dest).chain(sorry)
        })
        .any(|d| {
            let d = d.port_for(key);
            (d.addr, d.port) == (dest.addr, dest.port)
        })
}

/// Remove the draining servers whose connections have ended or whose grace is over (a
/// server declared again meanwhile is the checker's again: it is left alone).
fn drain_step(shared: &Shared, draining: &mut Vec<Draining>, t: Tick) {
    if draining.is_empty() {
        return;
    }
    let mut done = Vec::new();
    {
        let d = shared.director.lock().unwrap_or_else(|e| e.into_inner());
        let ipvs = d.core().lock();
        draining.retain(|x| {
            let open = ipvs
                .find_dest(&x.key, &x.dest.addr, x.dest.port)
                .map(|d| (d.weight, d.activeconns + d.inactconns));
            match open {
                None => false,
                // declared again and put back in service by the checker
                Some((w, _)) if w > 0 => false,
                Some((_, 0)) => {
                    done.push((x.key, x.dest, "its connections ended"));
                    false
                }
                Some(_) if t >= x.until => {
                    done.push((x.key, x.dest, "grace period over"));
                    false
                }
                Some(_) => true,
            }
        });
    }
    for (key, dest, why) in done {
        tracing::info!(
            "real server {} of {key} removed: {why}",
            rvs_core::model::SockAddr(dest.addr, dest.port)
        );
        apply(
            shared,
            vec![Action::DelDest {
                service: key,
                addr: dest.addr,
                port: dest.port,
            }],
        );
    }
}

/// The real servers IPVS holds in the files' services (restored from the state file, added
/// with rvsadm before a restart) that the checker's starting table does not want, e.g. an
/// `alpha` server not yet checked: the files own their services, so these go.
fn undeclared(shared: &Shared, health: &Health, cfg: &Config) -> Vec<Action> {
    let d = shared.director.lock().unwrap_or_else(|e| e.into_inner());
    let ipvs = d.core().lock();
    let mut out = Vec::new();
    for (si, vs) in cfg.services.iter().enumerate() {
        let table = health.table(si);
        for key in &vs.keys {
            let Some(svc) = ipvs.service(key) else {
                continue;
            };
            for id in &svc.dests {
                let Some(dest) = ipvs.dest(*id) else { continue };
                let wanted = table.iter().any(|t| {
                    let t = t.port_for(key);
                    (t.addr, t.port) == (dest.addr, dest.port)
                });
                if !wanted {
                    out.push(Action::Log(format!(
                        "real server {} of {key} removed: not in the checker's starting table",
                        rvs_core::model::SockAddr(dest.addr, dest.port)
                    )));
                    out.push(Action::DelDest {
                        service: *key,
                        addr: dest.addr,
                        port: dest.port,
                    });
                }
            }
        }
    }
    out
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
        Action::EditService { key, conf } => Command::EditService {
            key: *key,
            conf: conf.clone(),
        },
        Action::DelService { key } => Command::DelService { key: *key },
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
    let prog = c.argv.first().map_or("", String::as_str);
    let mut cmd = match rvs_probe::users::command(c) {
        Ok(cmd) => cmd,
        Err(e) => return tracing::warn!("cannot run {prog}: {e}"),
    };
    match cmd.spawn() {
        Ok(mut child) => {
            std::thread::spawn(move || {
                let _ = child.wait();
            });
        }
        Err(e) => tracing::warn!("cannot run {prog}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_config::spec::{Passive, VirtualService};
    use rvs_core::model::{Family, Protocol, ServiceConf};

    fn key(port: u16) -> ServiceKey {
        ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr: "127.0.0.1".parse().unwrap(),
            port,
        }
    }

    fn event(port: u16) -> DestEvent {
        DestEvent {
            service: key(port),
            dest: "127.0.0.2:80".parse().unwrap(),
            kind: DestEventKind::Success,
        }
    }

    fn service(port: u16, passive: bool) -> VirtualService {
        VirtualService {
            loc: spec::Loc::new("t", 1, 1),
            keys: vec![key(port)],
            conf: ServiceConf::new(Family::V4, "wlc"),
            reals: Vec::new(),
            sorry: None,
            quorum: 1,
            hysteresis: 0,
            quorum_up: None,
            quorum_down: None,
            omega: false,
            quorum_down_at_start: false,
            passive: passive.then(|| Passive {
                failures: 3,
                backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(2),
                max_ejected_percent: 50,
            }),
        }
    }

    #[test]
    fn only_services_with_passive_health_send_their_connections_to_the_checker() {
        let (sink, mut feed) = passive_channel();
        let cfg = Config {
            services: vec![service(80, false), service(81, true)],
            ..Default::default()
        };
        feed.want(&cfg);
        (sink.0)(event(80));
        (sink.0)(event(81));
        assert_eq!(feed.rx.try_recv().ok(), Some(event(81)));
        assert!(feed.rx.try_recv().is_err());
        // a reload that gives the first service passive health lets its reports through
        let cfg = Config {
            services: vec![service(80, true)],
            ..Default::default()
        };
        feed.want(&cfg);
        (sink.0)(event(80));
        (sink.0)(event(81));
        assert_eq!(feed.rx.try_recv().ok(), Some(event(80)));
        assert!(feed.rx.try_recv().is_err());
    }
}

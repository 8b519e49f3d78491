//! The director's state: one [`Ipvs`] with the sync-daemon settings, and the execution of
//! parsed ipvsadm commands against it, answering what ipvsadm prints.

use std::sync::Arc;

use rvs_config::ipvsadm::{edited_dest, kernel_error, Command, DaemonConf, Exit, SyncState};
use rvs_config::render::{self, Daemon};
use rvs_config::{ListOpts, Names};
use rvs_core::dest::Dest;
use rvs_core::error::IpvsError;
use rvs_core::ipvs::{Config, Ipvs};
use rvs_core::time::Tick;
use rvs_proxy::core::Core;

use crate::xdp::XdpDataplane;

/// The data plane serving the rules.
pub enum Dataplane {
    /// `--dataplane userspace`: the proxy (rvs-proxy)
    Proxy(rvs_proxy::Dataplane),
    /// `--dataplane xdp`: the XDP program (rvs-bpf)
    Xdp(XdpDataplane),
}

/// The IPVS instance and what the control commands need besides it.
pub struct Director {
    /// the engine, shared with the data plane
    core: Arc<Core>,
    /// `--start-daemon` settings (recorded and listed; no sync traffic is sent yet)
    daemons: Vec<Daemon>,
    /// the data plane serving the rules (none in control-only tests)
    dataplane: Option<Dataplane>,
}

/// The result of one command.
pub struct Outcome {
    /// what ipvsadm prints, and its status
    pub exit: Exit,
    /// the rules changed (the state file must be rewritten)
    pub changed: bool,
}

fn ok() -> Exit {
    Exit {
        stdout: String::new(),
        stderr: String::new(),
        status: 0,
    }
}

fn text(stdout: String) -> Exit {
    Exit {
        stdout,
        stderr: String::new(),
        status: 0,
    }
}

impl Default for Director {
    fn default() -> Self {
        Director::new()
    }
}

impl Director {
    /// An empty director whose clock starts now, with no data plane.
    pub fn new() -> Director {
        Director {
            core: Arc::new(Core::new(Ipvs::new(Config::default()))),
            daemons: Vec::new(),
            dataplane: None,
        }
    }

    /// The engine (for the data plane).
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Serve the rules with `dp` from now on (its listeners are made to match them now).
    pub fn attach(&mut self, dp: Dataplane) {
        self.dataplane = Some(dp);
        self.sync_dataplane();
    }

    /// Take the data plane away (to drain and stop it).
    pub fn detach(&mut self) -> Option<Dataplane> {
        self.dataplane.take()
    }

    /// The sockets the data plane serves now (the proxy's; none for XDP).
    pub fn listening(&self) -> Vec<rvs_proxy::Listen> {
        match &self.dataplane {
            Some(Dataplane::Proxy(dp)) => dp.listening().copied().collect(),
            _ => Vec::new(),
        }
    }

    /// Make the data plane serve the rules (the proxy's listeners, the XDP program's maps).
    pub fn sync_dataplane(&mut self) {
        match &mut self.dataplane {
            Some(Dataplane::Proxy(dp)) => dp.sync(),
            Some(Dataplane::Xdp(x)) => x.sync(),
            None => {}
        }
    }

    /// What the XDP program did so far, into the engine (before a change or a listing).
    fn catch_up(&self, listing: bool) {
        if let Some(Dataplane::Xdp(x)) = &self.dataplane {
            if listing {
                x.refresh();
            } else {
                x.prepare();
            }
        }
    }

    /// The engine's clock: milliseconds since the director started.
    pub fn now(&self) -> Tick {
        self.core.now()
    }

    /// Run the engine's timers due now; returns when they are next due.
    pub fn advance(&mut self) -> Option<Tick> {
        let now = self.now();
        let mut ipvs = self.core.lock();
        ipvs.advance(now);
        ipvs.next_wakeup()
    }

    /// What `-S -n --extended` prints (the extension options included, so a restart keeps
    /// them), plus a `--set` line when the timeouts are not the defaults: the state file's
    /// content (`rvsadm -R` reads it back).
    pub fn saved_rules(&self) -> String {
        let opts = ListOpts {
            numeric: true,
            extended: true,
            nosort: true,
            ..ListOpts::default()
        };
        let ipvs = self.core.lock();
        let saved = render::save(&ipvs, &rvs_config::NoNames, &opts);
        let mut out = unsigned_fwmarks(&oldest_first(&saved));
        let (tcp, fin, udp) = ipvs.timeouts();
        if (tcp, fin, udp) != Ipvs::new(Config::default()).timeouts() {
            out.push_str(&format!("--set {tcp} {fin} {udp}\n"));
        }
        out
    }

    /// Apply `cmd`; `names` serves listings without `-n`.
    pub fn run(&mut self, cmd: &Command, names: &dyn Names) -> Outcome {
        self.catch_up(matches!(cmd, Command::List { .. } | Command::Save { .. }));
        let now = self.now();
        let result = match cmd {
            Command::List { service, opts } => {
                return Outcome {
                    exit: self.list(cmd, service.as_ref(), opts, names),
                    changed: false,
                }
            }
            Command::Save { numeric, extended } => {
                let opts = ListOpts {
                    numeric: *numeric,
                    extended: *extended,
                    ..ListOpts::default()
                };
                return Outcome {
                    exit: text(render::save(&self.core.lock(), names, &opts)),
                    changed: false,
                };
            }
            Command::Restore => {
                return Outcome {
                    exit: Exit::fail("rvsd: -R input is sent line by line by the client"),
                    changed: false,
                }
            }
            other => self.change(other, now),
        };
        match result {
            Ok(()) => {
                self.sync_dataplane();
                Outcome {
                    exit: ok(),
                    changed: !matches!(cmd, Command::Zero { .. }),
                }
            }
            Err(e) => Outcome {
                exit: kernel_error(cmd, e),
                changed: false,
            },
        }
    }

    fn list(
        &self,
        cmd: &Command,
        service: Option<&rvs_core::model::ServiceKey>,
        opts: &ListOpts,
        names: &dyn Names,
    ) -> Exit {
        let now = self.now();
        let ipvs = self.core.lock();
        match render::listing(&ipvs, now, names, opts, service, &self.daemons) {
            Some(out) => text(out),
            None => kernel_error(cmd, IpvsError::NoSuchService),
        }
    }

    fn change(&mut self, cmd: &Command, now: Tick) -> Result<(), IpvsError> {
        let core = self.core.clone();
        let mut guard = core.lock();
        let ipvs = &mut *guard;
        match cmd {
            Command::AddService { key, conf } => ipvs.add_service(*key, conf.clone()).map(drop),
            Command::EditService { key, conf } => ipvs.edit_service(key, conf.clone()),
            Command::DelService { key } => ipvs.del_service(key, now),
            Command::Flush => {
                ipvs.flush(now);
                Ok(())
            }
            Command::AddDest { key, dest, .. } => ipvs.add_dest(key, *dest).map(drop),
            Command::EditDest {
                key,
                dest,
                proxy_protocol,
            } => {
                // `-e` without `--proxy-protocol` keeps the server's setting
                let current = ipvs.find_dest(key, &dest.addr, dest.port).map(Dest::conf);
                ipvs.edit_dest(key, edited_dest(dest, *proxy_protocol, current.as_ref()))
            }
            Command::DelDest { key, dest } => ipvs.del_dest(key, &dest.addr, dest.port, now),
            Command::SetTimeouts { tcp, tcpfin, udp } => ipvs.set_timeouts(*tcp, *tcpfin, *udp),
            Command::Zero { service } => ipvs.zero(service.as_ref()),
            Command::StartDaemon(conf) => {
                drop(guard);
                self.start_daemon(conf)
            }
            Command::StopDaemon(conf) => {
                drop(guard);
                self.stop_daemon(conf)
            }
            Command::List { .. } | Command::Save { .. } | Command::Restore => Ok(()),
        }
    }

    /// The kernel keeps one master and one backup; a second start of either is EEXIST.
    /// Unset values are listed with the kernel's defaults.
    fn start_daemon(&mut self, conf: &DaemonConf) -> Result<(), IpvsError> {
        let master = conf.state == SyncState::Master;
        if self.daemons.iter().any(|d| d.master == master) {
            return Err(IpvsError::DaemonRunning);
        }
        self.daemons.push(Daemon {
            master,
            mcast_ifn: conf.mcast_ifn.clone(),
            syncid: u32::from(conf.syncid),
            maxlen: conf.sync_maxlen.unwrap_or(1472),
            group: Some(conf.mcast_group.unwrap_or([224, 0, 0, 81].into())),
            port: conf.mcast_port.unwrap_or(8848),
            ttl: conf.mcast_ttl.unwrap_or(1),
        });
        Ok(())
    }

    fn stop_daemon(&mut self, conf: &DaemonConf) -> Result<(), IpvsError> {
        let master = conf.state == SyncState::Master;
        let before = self.daemons.len();
        self.daemons.retain(|d| d.master != master);
        if self.daemons.len() == before {
            return Err(IpvsError::NoDaemon);
        }
        Ok(())
    }
}

/// `-S --nosort` lists each service's real servers in the kernel's order, newest first; a
/// restore adds each at the front, so the state file lists them oldest first: after a restart
/// the list order, and with it rr's rotation and mh's table, is what it was.
fn oldest_first(saved: &str) -> String {
    let mut out = String::with_capacity(saved.len());
    let mut dests: Vec<&str> = Vec::new();
    for line in saved.lines() {
        if line.starts_with("-a ") {
            dests.push(line);
            continue;
        }
        for d in dests.drain(..).rev() {
            out.push_str(d);
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    for d in dests.drain(..).rev() {
        out.push_str(d);
        out.push('\n');
    }
    out
}

/// ipvsadm 1.31's `-S` prints fwmarks of 2^31 and above as negative numbers (`-f -1`), which
/// its own `-R` then refuses; the state file writes them unsigned so a restart keeps them.
fn unsigned_fwmarks(saved: &str) -> String {
    let mut out = String::with_capacity(saved.len());
    for line in saved.lines() {
        let mut words: Vec<String> = line.split(' ').map(str::to_string).collect();
        for i in 1..words.len() {
            if words[i - 1] == "-f" {
                if let Ok(v) = words[i].parse::<i32>() {
                    words[i] = (v as u32).to_string();
                }
            }
        }
        out.push_str(&words.join(" "));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{oldest_first, unsigned_fwmarks, Director};
    use rvs_config::NoNames;

    #[test]
    fn the_state_file_rebuilds_the_same_list_order() {
        let mut d = Director::new();
        for line in [
            "-A -t 10.0.0.1:80 -s rr",
            "-a -t 10.0.0.1:80 -r 10.0.1.1:80 -m",
            "-a -t 10.0.0.1:80 -r 10.0.1.3:80 -m",
            "-a -t 10.0.0.1:80 -r 10.0.1.2:80 -m",
        ] {
            let words: Vec<&str> = line.split(' ').collect();
            let cmd = rvs_config::ipvsadm::parse("rvsadm", &words, &rvs_config::ipvsadm::NoResolve)
                .unwrap();
            assert_eq!(d.run(&cmd, &NoNames).exit.status, 0);
        }
        let saved = d.saved_rules();
        let mut again = Director::new();
        for line in saved.lines() {
            let words: Vec<&str> = line.split(' ').collect();
            let cmd = rvs_config::ipvsadm::parse_restore_line(
                "rvsadm",
                &words,
                &rvs_config::ipvsadm::NoResolve,
            )
            .unwrap();
            assert_eq!(again.run(&cmd, &NoNames).exit.status, 0);
        }
        assert_eq!(again.saved_rules(), saved);
        let order = |d: &Director| {
            let ipvs = d.core.lock();
            let svc = ipvs.services().next().unwrap();
            ipvs.service_dests(svc)
                .map(|x| x.addr.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(order(&again), ["10.0.1.2", "10.0.1.3", "10.0.1.1"]);
        assert_eq!(order(&again), order(&d));
        assert_eq!(
            oldest_first("-A x\n-a 1\n-a 2\n-A y\n-a 3\n"),
            "-A x\n-a 2\n-a 1\n-A y\n-a 3\n"
        );
    }

    #[test]
    fn negative_fwmarks_are_written_unsigned() {
        let s = "-A -f -1 -s rr\n-a -f -1 -r 10.0.0.2:0 -g -w 1\n-A -f 7 -s rr\n";
        assert_eq!(
            unsigned_fwmarks(s),
            "-A -f 4294967295 -s rr\n-a -f 4294967295 -r 10.0.0.2:0 -g -w 1\n-A -f 7 -s rr\n"
        );
    }
}

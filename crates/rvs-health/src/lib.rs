//! # rvs-health: keepalived's health-checking state machines, pure
//!
//! [`Health`] takes a [`Config`](rvs_config::spec::Config) and runs, for every real server of
//! every virtual service, the checkers' schedules and keepalived's decisions: retries before a
//! server goes down, one success to bring it back, `alpha`, `inhibit_on_failure`, MISC_CHECK
//! dynamic weights, quorum with hysteresis, the sorry server and the notify / quorum scripts.
//! On top of keepalived it adds slow start (the weight ramps up after a recovery) and passive
//! health (the data plane's connect failures and resets eject a server for a backoff).
//!
//! The engine is sans-io: it never reads a clock, sleeps, opens a socket or runs a program.
//! Time comes in as a [`Tick`] argument, randomness (the `warmup` delays) as a seed. The caller
//! (rvsd) drives it:
//!
//! 1. apply [`Health::initial_actions`] once;
//! 2. launch the probes [`Health::due_probes`] returns (TCP connect, HTTP GET, MISC script…,
//!    through a [`Prober`]), and hand each result to [`Health::report`] with the time it
//!    completed; a probe not reported by its deadline is failed by [`Health::advance`];
//! 3. call [`Health::advance`] at [`Health::next_wakeup`] (timeouts, slow-start steps, the end
//!    of ejections), and [`Health::passive`] when the data plane sees connections fail;
//! 4. apply every returned [`Action`] in order: IPVS changes, commands to run, log lines.
//!
//! ```
//! use rvs_config::spec::Config;
//! use rvs_core::time::Tick;
//! use rvs_health::Health;
//!
//! let mut h = Health::new(&Config::default(), 1, Tick::ZERO);
//! assert!(h.initial_actions().is_empty());
//! assert!(h.due_probes(Tick::ZERO).is_empty());
//! assert_eq!(h.next_wakeup(), None);
//! ```
//!
//! ## Decisions beyond keepalived
//!
//! - An ejected server (passive health) counts as not alive for the quorum and leaves the pool
//!   as a failed one does (deleted, or weight 0 with `inhibit_on_failure`); notify scripts are
//!   not run for ejections (they follow the active checks, as in keepalived).
//! - Passive ejections are capped at `max_ejected_percent` of the service's real servers,
//!   rounded down but at least one when the percentage is not 0, so small pools can eject too.
//! - When an ejection ends the server returns at once if its active checks are all up at that
//!   moment; otherwise it stays out until they recover.
//! - Slow start applies to every return to the pool after start (a recovery, the end of an
//!   ejection, an `alpha` server's first success), not to servers present from the start. The
//!   quorum counts the full weight, not the ramped one.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::net::IpAddr;

use rvs_config::spec::{Check, CheckKind, Command};
use rvs_core::model::{DestConf, ServiceConf, ServiceKey};
use rvs_core::time::Tick;

mod checker;
mod engine;
mod passive;
mod pool;

pub use engine::{Health, RealStatus, Reloaded};

/// A real server: index of its service in the configuration, and its index there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RealId {
    /// index of the virtual service in `Config::services`
    pub svc: usize,
    /// index of the real server in `VirtualService::reals`
    pub real: usize,
}

/// One probe in flight, as handed to the [`Prober`].
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeRequest {
    /// to give back to [`Health::report`]
    pub id: u64,
    /// the real server checked
    pub real: RealId,
    /// index of the check in `RealServer::checks`
    pub check: usize,
    /// where to connect (the check's `connect_ip`/`connect_port`, else the real server's)
    pub target: (IpAddr, u16),
    /// what to do
    pub spec: Check,
    /// the probe counts as failed (timed out) if not reported by then
    pub deadline: Tick,
}

/// What a probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// the check passed
    Ok,
    /// the check failed; the reason is logged after the check's name, e.g.
    /// `"status 503 (expected 200-299)"`
    Fail(String),
    /// MISC_CHECK with `misc_dynamic`: passed, and the real server's weight is now this
    /// (the exit status − 2)
    Weight(u32),
    /// no answer before the deadline
    Timeout,
}

impl Outcome {
    /// A MISC_CHECK exit status as keepalived reads it: 0 passes, 2–255 pass with weight
    /// status − 2 when `dynamic`, anything else fails.
    pub fn from_misc_exit(status: u8, dynamic: bool) -> Outcome {
        match status {
            0 => Outcome::Ok,
            2.. if dynamic => Outcome::Weight(u32::from(status) - 2),
            s => Outcome::Fail(format!("exited with status {s}")),
        }
    }
}

/// What the data plane saw on one connection to a real server (passive health).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassiveEvent {
    /// the connection to the real server could not be established
    ConnectFailure,
    /// the real server reset the connection
    Reset,
    /// a connection was established and ended normally
    Success,
}

/// Something the caller must do, in the order given.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// `ipvsadm -A` (only in [`Health::initial_actions`])
    AddService {
        /// the service
        key: ServiceKey,
        /// its settings
        conf: ServiceConf,
    },
    /// `ipvsadm -E`: a reload changed the service's settings
    EditService {
        /// the service
        key: ServiceKey,
        /// its new settings
        conf: ServiceConf,
    },
    /// `ipvsadm -D`: a reload dropped the service
    DelService {
        /// the service
        key: ServiceKey,
    },
    /// `ipvsadm -a`: add a real server with this weight
    AddDest {
        /// the service
        service: ServiceKey,
        /// the real server (port already adjusted for DR/TUN as ipvsadm does)
        dest: DestConf,
    },
    /// `ipvsadm -e`: change a real server, typically its weight
    EditDest {
        /// the service
        service: ServiceKey,
        /// the real server with its new settings
        dest: DestConf,
    },
    /// `ipvsadm -d`: remove a real server
    DelDest {
        /// the service
        service: ServiceKey,
        /// the real server's address
        addr: IpAddr,
        /// and port
        port: u16,
    },
    /// run a command (notify_up/down, quorum_up/down, the sorry server's command) without
    /// waiting for it
    Run(Command),
    /// one log line
    Log(String),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use rvs_core::model::SockAddr;
        match self {
            Action::AddService { key, conf } => write!(f, "add service {key} {}", conf.scheduler),
            Action::EditService { key, conf } => {
                write!(f, "edit service {key} {}", conf.scheduler)
            }
            Action::DelService { key } => write!(f, "delete service {key}"),
            Action::AddDest { service, dest } => write!(
                f,
                "add {} to {service} weight {}",
                SockAddr(dest.addr, dest.port),
                dest.weight
            ),
            Action::EditDest { service, dest } => write!(
                f,
                "edit {} of {service} weight {}",
                SockAddr(dest.addr, dest.port),
                dest.weight
            ),
            Action::DelDest {
                service,
                addr,
                port,
            } => write!(f, "delete {} from {service}", SockAddr(*addr, *port)),
            Action::Run(c) => write!(f, "run {}", c.argv.join(" ")),
            Action::Log(l) => write!(f, "log {l}"),
        }
    }
}

/// The boundary to the network: the daemon starts each probe (without blocking) and later
/// hands its [`Outcome`] to [`Health::report`].
pub trait Prober {
    /// Start one probe.
    fn launch(&mut self, req: ProbeRequest);
}

/// The name keepalived (or ldirectord) gives a check kind, used in log lines.
pub fn kind_name(kind: &CheckKind) -> &'static str {
    match kind {
        CheckKind::Tcp => "TCP_CHECK",
        CheckKind::Http(h) if h.tls => "SSL_GET",
        CheckKind::Http(_) => "HTTP_GET",
        CheckKind::Smtp { .. } => "SMTP_CHECK",
        CheckKind::Dns { .. } => "DNS_CHECK",
        CheckKind::Udp(_) => "UDP_CHECK",
        CheckKind::Misc(_) => "MISC_CHECK",
        CheckKind::Ping => "PING_CHECK",
        CheckKind::Send { .. } => "NEGOTIATE_CHECK",
        CheckKind::On => "checktype on",
        CheckKind::Off => "checktype off",
    }
}

/// Milliseconds of a duration, saturating.
pub(crate) fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A span of milliseconds as a log line says it: `3s`, `1500ms`.
pub(crate) fn fmt_ms(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misc_exit_statuses_read_as_keepalived_does() {
        assert_eq!(Outcome::from_misc_exit(0, false), Outcome::Ok);
        assert_eq!(Outcome::from_misc_exit(0, true), Outcome::Ok);
        assert!(matches!(Outcome::from_misc_exit(1, true), Outcome::Fail(_)));
        assert!(matches!(
            Outcome::from_misc_exit(7, false),
            Outcome::Fail(_)
        ));
        assert_eq!(Outcome::from_misc_exit(2, true), Outcome::Weight(0));
        assert_eq!(Outcome::from_misc_exit(255, true), Outcome::Weight(253));
    }

    #[test]
    fn spans_print_in_whole_seconds_when_they_can() {
        assert_eq!(fmt_ms(3000), "3s");
        assert_eq!(fmt_ms(1500), "1500ms");
    }
}

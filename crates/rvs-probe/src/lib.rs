//! # rvs-probe: the network side of the health checks
//!
//! One probe answers one question, "does this real server pass this check now?", with the
//! reason when it does not: TCP connect, HTTP GET and SSL_GET (status set, MD5 digest of the
//! body, regex), SMTP (220, HELO, 250), DNS (an answer with RCODE 0), UDP (no ICMP error, or
//! a matching reply), ICMP echo, external commands (MISC_CHECK, ldirectord external), and
//! ldirectord's send/expect. Each is bounded by the check's `connect_timeout` (a command by its
//! own timeout); running out of time is [`Outcome::Timeout`]. The decisions (retries, quorum,
//! weights) are rvs-health's: this crate only does the I/O.
//!
//! ```no_run
//! # async fn demo(req: rvs_health::ProbeRequest) {
//! let outcome = rvs_probe::run(&req.spec, req.target.into()).await;
//! println!("{outcome:?}");
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod http;
pub mod misc;
pub mod net;
pub mod simple;
pub mod users;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rvs_config::spec::{Check, CheckKind};
pub use rvs_health::Outcome;

/// Run `check` against `target` (rvs-health's `ProbeRequest::target`: the check's connect
/// address and port, else the real server's).
pub async fn run(check: &Check, target: SocketAddr) -> Outcome {
    let t = check.timing.connect_timeout;
    let bind = Bind {
        addr: check.bind_addr,
        port: check.bind_port,
        iface: check.bind_if.clone(),
        mark: check.fwmark,
    };
    let r = match &check.kind {
        CheckKind::Tcp => {
            within(t, async {
                net::tcp_connect(target, &bind).await.map(|_| ())
            })
            .await
        }
        CheckKind::Http(h) => within(t, http::check(h, target, &bind)).await,
        CheckKind::Smtp { helo_name } => within(t, simple::smtp(target, &bind, helo_name)).await,
        CheckKind::Dns { qtype, name } => within(t, simple::dns(target, &bind, *qtype, name)).await,
        CheckKind::Udp(u) => within(t, simple::udp(target, &bind, u, t)).await,
        CheckKind::Send { request, receive } => {
            within(t, simple::send(target, &bind, request, receive.as_deref())).await
        }
        CheckKind::Ping => within(t, net::ping(target.ip(), &bind)).await,
        CheckKind::Misc(m) => return misc::run(m).await,
        CheckKind::On => Ok(()),
        CheckKind::Off => Err(Failed::Fail("checktype off".into())),
    };
    match r {
        Ok(()) => Outcome::Ok,
        Err(Failed::Fail(why)) => Outcome::Fail(why),
        Err(Failed::Timeout) => Outcome::Timeout,
    }
}

/// Why a probe did not pass.
#[derive(Debug)]
enum Failed {
    Fail(String),
    Timeout,
}

impl From<String> for Failed {
    fn from(s: String) -> Failed {
        Failed::Fail(s)
    }
}

/// Source settings of a probe's socket.
#[derive(Clone, Debug, Default)]
pub struct Bind {
    /// source address
    pub addr: Option<IpAddr>,
    /// source port
    pub port: Option<u16>,
    /// interface (SO_BINDTODEVICE)
    pub iface: Option<String>,
    /// SO_MARK
    pub mark: Option<u32>,
}

/// `f` within `t`.
async fn within(
    t: Duration,
    f: impl std::future::Future<Output = Result<(), String>>,
) -> Result<(), Failed> {
    match tokio::time::timeout(t, f).await {
        Ok(r) => r.map_err(Failed::Fail),
        Err(_) => Err(Failed::Timeout),
    }
}

/// "5s", "500ms", "1.5s".
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

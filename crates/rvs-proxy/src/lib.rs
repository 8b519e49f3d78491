//! # rvs-proxy: the userspace data plane
//!
//! Serves every TCP and UDP virtual service of an [`rvs_core::ipvs::Ipvs`] as a full proxy,
//! with no kernel module:
//! - one listening socket per service and worker thread (IP_FREEBIND, SO_REUSEPORT; `listen`);
//!   a BPF program on each TCP service's sockets has the kernel put every new connection in
//!   the queue of the least loaded worker as its SYN arrives (`steer`), so the hash of
//!   SO_REUSEPORT cannot leave one worker with a surplus of connections; where the kernel
//!   refuses the program, a worker that holds [`HANDOFF_MARGIN`] connections more than
//!   another hands the connection it accepts to the least loaded worker (`tcp`);
//! - each accepted connection (or new UDP flow) is scheduled by the core exactly as a SYN (or
//!   first datagram) would be in the kernel, and its entry then follows the connection:
//!   handshake, FIN and RST signals, packet counts from TCP_INFO and exact byte counts (`tcp`,
//!   `udp`), so `-Lnc`, ActiveConn/InActConn and `--stats`/`--rate` show live truth;
//! - TCP bytes move with splice(2) between the two sockets (`relay`), half-close and resets
//!   propagated; an opted-in real server first receives a PROXY protocol header
//!   (`proxy_header`).
//!
//! ```no_run
//! use std::sync::Arc;
//! use rvs_core::ipvs::{Config, Ipvs};
//! use rvs_proxy::{core::Core, Dataplane, Options};
//!
//! let core = Arc::new(Core::new(Ipvs::new(Config::default())));
//! let mut dp = Dataplane::start(core.clone(), Options::default()).unwrap();
//! // ... change the rules through core.lock(), then:
//! dp.sync(); // listeners now match the services
//! dp.stop_accepting(); // SIGTERM: drain
//! dp.shutdown();
//! ```

#![deny(unsafe_code)]

pub mod core;
#[allow(unsafe_code)] // getrlimit(2), setrlimit(2)
pub mod limits;
mod listen;
#[allow(unsafe_code)] // splice(2), pipe2(2), fcntl(2)
pub mod pipe;
pub mod proxy_header;
#[allow(unsafe_code)] // epoll(7), accept4(2)
mod reactor;
pub mod relay;
#[allow(unsafe_code)] // io_uring submissions (raw buffers of the relay)
mod sendq;
#[allow(unsafe_code)] // bpf(2), mmap(2), setsockopt(SO_ATTACH_REUSEPORT_EBPF)
mod steer;
mod tcp;
#[allow(unsafe_code)] // getsockopt(TCP_INFO)
pub mod tcpinfo;
mod udp;
mod worker;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rvs_core::model::{Forward, Protocol, ProxyProtocol, ServiceKey};

use crate::core::Core;
pub use tcp::HANDOFF_MARGIN;
use worker::{Cmd, Sock, Worker};

/// Tunables of the data plane.
#[derive(Clone, Debug)]
pub struct Options {
    /// worker threads (each with its own listening sockets)
    pub workers: usize,
    /// how long a connection to a real server may take before the client is reset
    pub connect_timeout: Duration,
    /// how often a busy connection's counters reach the core
    pub report_every: Duration,
    /// connections (and UDP flows) relayed at once; `None`: as many as the descriptor limit
    /// carries (see [`limits`]), after raising the soft limit to the hard one
    pub max_conns: Option<usize>,
    /// told how each TCP connection to a real server went (passive health checking)
    pub events: Option<EventSink>,
}

/// How a TCP connection to a real server went, for passive health checking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DestEvent {
    /// the virtual service (TCP, the listener's address and port)
    pub service: rvs_core::model::ServiceKey,
    /// the real server's address and port
    pub dest: SocketAddr,
    /// what happened
    pub kind: DestEventKind,
}

/// What happened on a connection to a real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestEventKind {
    /// the connection could not be established (refused, unreachable, timed out)
    ConnectFailure,
    /// the real server reset the connection
    Reset,
    /// the connection was established and ended without a reset from the server
    Success,
}

/// Receives [`DestEvent`]s; called on the worker threads, so it must not block.
#[derive(Clone)]
pub struct EventSink(pub Arc<dyn Fn(DestEvent) + Send + Sync>);

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventSink")
    }
}

impl Options {
    /// Tell `events` about connections to real servers.
    pub(crate) fn event(&self, service: SocketAddr, dest: SocketAddr, kind: DestEventKind) {
        if let Some(sink) = &self.events {
            let service = rvs_core::model::ServiceKey::Addr {
                proto: rvs_core::model::Protocol::Tcp,
                addr: service.ip(),
                port: service.port(),
            };
            (sink.0)(DestEvent {
                service,
                dest,
                kind,
            });
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            connect_timeout: Duration::from_secs(5),
            report_every: Duration::from_millis(250),
            max_conns: None,
            events: None,
        }
    }
}

/// Transport of a listening socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// TCP
    Tcp,
    /// UDP
    Udp,
}

/// A listening socket address (one per TCP/UDP virtual service).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Listen {
    /// TCP or UDP
    pub transport: Transport,
    /// the virtual address and port
    pub addr: SocketAddr,
}

/// What every worker shares.
pub(crate) struct Ctx {
    pub(crate) core: Arc<Core>,
    pub(crate) opts: Options,
    /// TCP connections being relayed
    pub(crate) sessions: AtomicUsize,
    /// TCP connections each worker holds (accepted and not yet over), for the choice of a
    /// worker (see [`steer`]) or the hand-off
    pub(crate) loads: steer::Board,
    /// where each worker takes the connections another worker hands it (see
    /// [`tcp::accept_loop`])
    pub(crate) handoff: Vec<tokio::sync::mpsc::UnboundedSender<tcp::Accepted>>,
    /// admission: one permit per relayed connection or UDP flow
    pub(crate) slots: Arc<tokio::sync::Semaphore>,
    /// idle pipes each worker keeps
    pub(crate) pipe_pool: usize,
    /// failed connection attempts per real server (refused, timed out, unreachable)
    pub(crate) connect_failures: Mutex<HashMap<SocketAddr, u64>>,
    /// rate limit of repetitive warnings
    pub(crate) warn_at: AtomicU64,
}

impl Ctx {
    /// Whether a repetitive warning may be logged now (at most one per 5 seconds).
    pub(crate) fn may_warn(&self) -> bool {
        let now = self.core.now().as_millis();
        let last = self.warn_at.load(Ordering::Relaxed);
        (last == 0 || now >= last + 5000)
            && self
                .warn_at
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// Whether `e` says the process or the system ran short of something for a while.
pub(crate) fn scarce(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// The one log line of a data plane whose workers hand connections over because the kernel
/// does not choose them.
fn refused_steering(e: &std::io::Error) {
    tracing::info!(
        "workers hand connections over (the kernel refused the listeners' BPF program: {e})"
    );
}

/// The userspace data plane: worker threads and the listening sockets they serve.
pub struct Dataplane {
    ctx: Arc<Ctx>,
    workers: Vec<Worker>,
    /// the sockets served, each with the program that gives its connections to a worker by
    /// the worker's load, when the kernel does ([`steer`])
    bound: BTreeMap<Listen, Option<Arc<steer::Steer>>>,
    /// services already warned about (forwarded by the proxy though -g/-i, or not servable)
    warned: HashSet<(ServiceKey, Warning)>,
    /// whether new TCP services get the program that chooses their workers ([`steer`])
    steering: Steering,
}

/// Whether the data plane gives its TCP listeners the program that chooses their workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Steering {
    /// no: one worker, more than the program compares ([`steer::MAX_WORKERS`]), or the
    /// kernel refused the program the first time it was asked (no privilege, a kernel before
    /// 5.5), which is logged once
    Off,
    /// yes, the kernel has not been asked yet
    Untried,
    /// yes, the kernel took it: a later failure (descriptors, memory, the locked-memory
    /// limit of older kernels) is that service's alone
    Works,
}

impl Dataplane {
    /// Start `opts.workers` worker threads serving nothing yet.
    pub fn start(core: Arc<Core>, opts: Options) -> std::io::Result<Dataplane> {
        let n = opts.workers.max(1);
        let max = match opts.max_conns {
            Some(m) => m.max(1),
            None => limits::budget(limits::raise_nofile()?, n),
        };
        tracing::info!(workers = n, max_conns = max, "data plane");
        let (handoff, adopt): (Vec<_>, Vec<_>) = (0..n)
            .map(|_| tokio::sync::mpsc::unbounded_channel())
            .unzip();
        // more workers than the program compares hand over too (see steer::MAX_WORKERS)
        let loads = match n {
            2..=steer::MAX_WORKERS => steer::Board::shared(n, "rvs_loads")
                .inspect_err(refused_steering)
                .ok(),
            _ => None,
        };
        let steering = match loads {
            Some(_) => Steering::Untried,
            None => Steering::Off,
        };
        let loads = loads.unwrap_or_else(|| steer::Board::plain(n));
        let ctx = Arc::new(Ctx {
            core,
            opts,
            sessions: AtomicUsize::new(0),
            loads,
            handoff,
            slots: Arc::new(tokio::sync::Semaphore::new(max)),
            pipe_pool: limits::pipe_pool(max, n),
            connect_failures: Mutex::new(HashMap::new()),
            warn_at: AtomicU64::new(0),
        });
        let workers = adopt
            .into_iter()
            .enumerate()
            .map(|(i, adopt)| Worker::spawn(i, ctx.clone(), adopt))
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Dataplane {
            ctx,
            workers,
            bound: BTreeMap::new(),
            warned: HashSet::new(),
            steering,
        })
    }

    /// Make the listening sockets match the core's services: close those of removed services,
    /// bind those of new ones. Returns when every worker has done so. A socket that cannot be
    /// bound is logged (the rule stays, as the kernel keeps a rule whatever the traffic); the
    /// next sync tries again.
    pub fn sync(&mut self) {
        self.signal_dest_changes();
        let wanted = self.wanted();
        let gone: Vec<Listen> = self
            .bound
            .keys()
            .filter(|k| !wanted.contains(k))
            .copied()
            .collect();
        for key in gone {
            self.close(key);
            self.bound.remove(&key);
            tracing::info!(proto = ?key.transport, addr = %key.addr, "stopped listening");
        }
        let new: Vec<Listen> = wanted
            .iter()
            .filter(|k| !self.bound.contains_key(k))
            .copied()
            .collect();
        for key in new {
            match self.open(key) {
                Ok(steer) => {
                    let steered = steer.is_some();
                    self.bound.insert(key, steer);
                    tracing::info!(proto = ?key.transport, addr = %key.addr, steered, "listening");
                }
                Err(e) => {
                    tracing::error!(proto = ?key.transport, addr = %key.addr, "cannot listen: {e}")
                }
            }
        }
    }

    /// Tell the connections of real servers that became unavailable (deleted, their service
    /// deleted, flushed) to stop moving bytes, and those of servers revived from the trash to
    /// go on: the kernel drops a connection's packets only while its server is unavailable,
    /// and TCP's retransmission carries them over once it is back. A paused connection whose
    /// entry expires is reset. Each worker looks at the real servers of its own connections;
    /// when this returns, the connections of an unavailable server move no more bytes.
    fn signal_dest_changes(&self) {
        self.each_worker(|ack| Cmd::CheckDests { ack });
    }

    /// The sockets the services call for, warning once per service about what this data
    /// plane forwards differently from the kernel or cannot serve.
    fn wanted(&mut self) -> BTreeSet<Listen> {
        let ipvs = self.ctx.core.lock();
        let mut wanted = BTreeSet::new();
        let mut warn = Vec::new();
        for svc in ipvs.services() {
            let key = svc.key;
            let ServiceKey::Addr { proto, addr, port } = key else {
                warn.push((key, Warning::Fwmark));
                continue;
            };
            let transport = match proto {
                Protocol::Tcp => Transport::Tcp,
                Protocol::Udp => Transport::Udp,
                _ => {
                    warn.push((key, Warning::Sctp));
                    continue;
                }
            };
            if port == 0 {
                warn.push((key, Warning::Port0));
                continue;
            }
            wanted.insert(Listen {
                transport,
                addr: SocketAddr::new(addr, port),
            });
            let proxied = ipvs
                .service_dests(svc)
                .any(|d| matches!(d.fwd, Forward::Route | Forward::Tunnel));
            if proxied {
                warn.push((key, Warning::Proxied));
            }
            let v1_udp = transport == Transport::Udp
                && ipvs
                    .service_dests(svc)
                    .any(|d| d.proxy_protocol == ProxyProtocol::V1);
            if v1_udp {
                warn.push((key, Warning::UdpV1));
            }
        }
        let present: HashSet<ServiceKey> = ipvs.services().map(|s| s.key).collect();
        drop(ipvs);
        // a service deleted and added again is warned about again
        self.warned.retain(|(k, _)| present.contains(k));
        for (key, what) in warn {
            if self.warned.insert((key, what)) {
                warn_service(&key, what);
            }
        }
        wanted
    }

    /// Bind `key`'s sockets and give them to the workers; the program that chooses the worker
    /// of each connection, when the kernel does ([`steer`]).
    fn open(&mut self, key: Listen) -> std::io::Result<Option<Arc<steer::Steer>>> {
        let socks = (0..self.workers.len())
            .map(|_| match key.transport {
                Transport::Tcp => listen::tcp(key.addr).map(Sock::Tcp),
                Transport::Udp => listen::udp(key.addr).map(Sock::Udp),
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let steer = self.steer(key, &socks);
        let mut acks = Vec::new();
        for (w, sock) in self.workers.iter().zip(socks) {
            let (tx, rx) = sync_channel(1);
            let steer = steer.clone();
            if w.send(Cmd::Listen {
                key,
                sock,
                steer,
                ack: tx,
            }) {
                acks.push(rx);
            }
        }
        for rx in acks {
            rx.recv().unwrap_or(Ok(()))?;
        }
        Ok(steer)
    }

    /// The program that chooses the worker of each new connection to the TCP listeners
    /// `socks` (see [`steer`]); none for UDP, with fewer than two workers alive, when steering
    /// is off ([`Steering::Off`]), or when the kernel refuses it for this service.
    fn steer(&mut self, key: Listen, socks: &[Sock]) -> Option<Arc<steer::Steer>> {
        if key.transport != Transport::Tcp || self.steering == Steering::Off || socks.len() < 2 {
            return None;
        }
        let fds: Vec<_> = socks
            .iter()
            .filter_map(|s| match s {
                Sock::Tcp(l) => Some(l.as_raw_fd()),
                Sock::Udp(_) => None,
            })
            .collect();
        match steer::Steer::attach(&self.ctx.loads, &fds) {
            Ok(s) => {
                self.steering = Steering::Works;
                Some(Arc::new(s))
            }
            Err(e) if self.steering == Steering::Untried && !scarce(&e) => {
                refused_steering(&e);
                self.steering = Steering::Off;
                None
            }
            Err(e) => {
                // this service's workers hand over; the next service tries again
                tracing::warn!(addr = %key.addr, "listeners without the BPF program: {e}");
                None
            }
        }
    }

    fn close(&self, key: Listen) {
        self.each_worker(|ack| Cmd::Close { key, ack });
    }

    /// Send a command to every worker and wait for every answer.
    fn each_worker(&self, cmd: impl Fn(std::sync::mpsc::SyncSender<()>) -> Cmd) {
        let acks: Vec<_> = self
            .workers
            .iter()
            .filter_map(|w| {
                let (tx, rx) = sync_channel(1);
                w.send(cmd(tx)).then_some(rx)
            })
            .collect();
        for rx in acks {
            let _ = rx.recv();
        }
    }

    /// Close every listening socket (draining): open connections go on.
    pub fn stop_accepting(&mut self) {
        self.each_worker(|ack| Cmd::StopAccepting { ack });
        self.bound.clear();
    }

    /// TCP connections being relayed now.
    pub fn open_connections(&self) -> usize {
        self.ctx.sessions.load(Ordering::SeqCst)
    }

    /// TCP connections each worker holds now (accepted, connecting or relaying). No worker
    /// holds more than [`HANDOFF_MARGIN`] more than another after taking a connection (see
    /// the module docs); on steered listeners, no more than one while connections arrive one
    /// at a time (SYNs handled at the same moment on several CPUs can pick the same worker).
    /// A worker whose thread has ended shows `u32::MAX / 2`, so it is never chosen again.
    pub fn worker_loads(&self) -> Vec<usize> {
        self.ctx
            .loads
            .get()
            .iter()
            .map(|l| l.load(Ordering::Relaxed) as usize)
            .collect()
    }

    /// Failed connection attempts per real server since the start.
    pub fn connect_failures(&self) -> HashMap<SocketAddr, u64> {
        self.ctx
            .connect_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether the kernel gives each new connection to `key`'s listeners to the least loaded
    /// worker (a BPF program on the listeners; see the module docs). False for UDP, with one
    /// worker or more than 256, on a kernel that refused the program, or for a service
    /// whose program could not be loaded (descriptors or memory short): then the workers
    /// hand connections over ([`HANDOFF_MARGIN`]).
    pub fn steered(&self, key: &Listen) -> bool {
        self.bound.get(key).is_some_and(Option::is_some)
    }

    /// The sockets served now.
    pub fn listening(&self) -> impl Iterator<Item = &Listen> {
        self.bound.keys()
    }

    /// Stop the workers; connections still open are closed.
    pub fn shutdown(self) {
        for w in self.workers {
            w.join();
        }
    }
}

/// What the userspace data plane tells the operator once per service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Warning {
    /// a firewall-mark service: no socket receives its traffic
    Fwmark,
    /// an SCTP service: no socket receives its traffic
    Sctp,
    /// a port-0 (all ports) service: no socket receives its traffic
    Port0,
    /// real servers with -g/-i, forwarded by the full proxy
    Proxied,
    /// a UDP service with PROXY v1 real servers (v1 has no UDP form)
    UdpV1,
}

fn warn_service(key: &ServiceKey, what: Warning) {
    let why = match what {
        Warning::Fwmark => "firewall-mark services need the XDP data plane; no socket serves it",
        Warning::Sctp => "SCTP services need the XDP data plane; no socket serves it",
        Warning::Port0 => "port-0 services need the XDP data plane; no socket serves it",
        Warning::UdpV1 => "PROXY protocol v1 has no form for UDP: datagrams go to its v1 real servers without a header (use v2)",
        Warning::Proxied => "real servers with -g/-i are forwarded by the full proxy (as -m) until the XDP data plane takes them",
    };
    tracing::warn!(service = ?key, "{why}");
}

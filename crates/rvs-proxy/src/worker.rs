//! Worker threads: each runs a single-threaded tokio runtime with its own listening sockets
//! (SO_REUSEPORT) and the connections they accept, so a connection never moves between
//! threads. TCP connections live in the thread's event loop ([`crate::reactor`]), UDP flows
//! and the listeners in tasks. The manager ([`crate::Dataplane`]) talks to a worker over a command channel and
//! waits for its answer, which is how "the listener is bound when `rvsadm` returns" holds.

use std::collections::HashMap;
use std::io;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle as Task;
use tokio::time::Instant;

use crate::steer::{self, Steer};
use crate::{tcp, udp, Ctx, Listen};

/// A bound socket handed to a worker.
pub enum Sock {
    /// a TCP listener
    Tcp(std::net::TcpListener),
    /// a UDP socket
    Udp(std::net::UdpSocket),
}

/// What the manager asks of a worker.
pub enum Cmd {
    /// serve this socket
    Listen {
        key: Listen,
        sock: Sock,
        /// the program choosing the worker of each new connection, when there is one
        steer: Option<Arc<Steer>>,
        ack: SyncSender<io::Result<()>>,
    },
    /// close the socket of `key` (open connections go on)
    Close { key: Listen, ack: SyncSender<()> },
    /// close every socket (draining: open connections go on)
    StopAccepting { ack: SyncSender<()> },
    /// real servers may have become unavailable or available again: pause or resume their
    /// TCP connections
    CheckDests { ack: SyncSender<()> },
}

/// Marks a worker whose thread ends (stopped, or a bug unwound it) as so loaded that neither
/// the kernel's choice ([`crate::steer`]) nor a hand-off ever gives it a connection again:
/// its listeners are gone with its runtime.
struct Gone(Arc<Ctx>, usize);

impl Drop for Gone {
    fn drop(&mut self) {
        self.0.loads.get()[self.1].store(u32::MAX / 2, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The manager's handle on one worker thread.
pub struct Worker {
    tx: UnboundedSender<Cmd>,
    thread: JoinHandle<()>,
}

impl Worker {
    /// Start worker number `idx`; `adopt` brings the connections other workers hand it.
    pub fn spawn(
        idx: usize,
        ctx: Arc<Ctx>,
        adopt: UnboundedReceiver<tcp::Accepted>,
    ) -> io::Result<Worker> {
        // the runtime looks at its own events (listeners, commands) every 8 task polls while
        // tasks are busy, rather than every 61
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .event_interval(8)
            .build()?;
        let (tx, rx) = unbounded_channel();
        let thread = std::thread::Builder::new()
            .name(format!("rvs-worker-{idx}"))
            .spawn(move || {
                let _gone = Gone(ctx.clone(), idx);
                rt.block_on(run(idx, rx, adopt, ctx))
            })?;
        Ok(Worker { tx, thread })
    }

    /// Send a command; false when the worker is gone (its thread ended).
    pub fn send(&self, cmd: Cmd) -> bool {
        self.tx.send(cmd).is_ok()
    }

    /// End the worker: its runtime stops and whatever it still holds is closed.
    pub fn join(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

async fn run(
    idx: usize,
    mut rx: UnboundedReceiver<Cmd>,
    adopt: UnboundedReceiver<tcp::Accepted>,
    ctx: Arc<Ctx>,
) {
    crate::pipe::set_pool_limit(ctx.pipe_pool);
    // ends with the runtime (after the last command); a connection handed over later is
    // kept by the worker that accepted it
    tokio::spawn(tcp::adopt_loop(adopt, ctx.clone()));
    let mut serving: HashMap<Listen, Serving> = HashMap::new();
    // while some listener is steered: each second this worker's pending counts turn over
    // (see Steer), for all its listeners at once
    let mut turns: Option<tokio::time::Interval> = None;
    loop {
        let cmd = tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(cmd) => cmd,
                None => break,
            },
            _ = next_turn(&mut turns) => {
                serving.values().filter_map(|s| s.steer.as_ref()).for_each(|s| s.turn(idx));
                continue;
            }
        };
        match cmd {
            Cmd::Listen {
                key,
                sock,
                steer,
                ack,
            } => {
                let res = match start(idx, key, sock, steer.clone(), &ctx) {
                    Ok(task) => {
                        if let Some(old) = serving.insert(key, Serving { task, steer }) {
                            stop(old.task).await;
                        }
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
                let _ = ack.send(res);
            }
            Cmd::Close { key, ack } => {
                if let Some(old) = serving.remove(&key) {
                    stop(old.task).await;
                }
                let _ = ack.send(());
            }
            Cmd::StopAccepting { ack } => {
                for (_, old) in serving.drain() {
                    stop(old.task).await;
                }
                let _ = ack.send(());
            }
            Cmd::CheckDests { ack } => {
                // the core's lock only for reading the servers' states, not for the walk
                let dests = crate::reactor::dests();
                let up: HashMap<_, bool> = {
                    let ipvs = ctx.core.lock();
                    dests
                        .into_iter()
                        .map(|d| (d, ipvs.dest(d).is_some_and(|x| x.is_available())))
                        .collect()
                };
                crate::reactor::check_dests(|d| up.get(&d).copied().unwrap_or(false));
                let _ = ack.send(());
            }
        }
        let steered = serving.values().any(|s| s.steer.is_some());
        if steered != turns.is_some() {
            turns = steered.then(|| {
                let mut i = tokio::time::interval_at(Instant::now() + steer::TURN, steer::TURN);
                i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                i
            });
        }
    }
}

/// A socket this worker serves: the task of its loop, and the program that chooses the
/// worker of its connections when there is one.
struct Serving {
    task: Task<()>,
    steer: Option<Arc<Steer>>,
}

/// The next tick of `turns`; never, without.
async fn next_turn(turns: &mut Option<tokio::time::Interval>) {
    match turns {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Cancel a socket's loop and wait until its future (and so the socket) is dropped.
async fn stop(task: Task<()>) {
    task.abort();
    let _ = task.await;
}

/// Register the socket with this runtime (worker `idx`'s) and spawn its loop (which owns the
/// socket).
fn start(
    idx: usize,
    key: Listen,
    sock: Sock,
    steer: Option<Arc<Steer>>,
    ctx: &Arc<Ctx>,
) -> io::Result<Task<()>> {
    let ctx = ctx.clone();
    Ok(match sock {
        Sock::Tcp(l) => {
            let l = crate::reactor::register(l)?;
            tokio::spawn(tcp::accept_loop(l, key, steer, ctx, idx))
        }
        Sock::Udp(s) => {
            let s = tokio::net::UdpSocket::from_std(s)?;
            tokio::spawn(udp::serve(s, key, ctx))
        }
    })
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use rvs_core::ipvs::{Config, Ipvs};
    use rvs_core::model::{DestConf, Family, Forward, Protocol, ServiceConf, ServiceKey};

    use crate::core::Core;
    use crate::{Dataplane, Options};

    /// A real server that greets each connection with one byte and keeps it open.
    fn greeter() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            for mut s in l.incoming().flatten() {
                if s.write_all(b"+").is_ok() {
                    kept.push(s);
                }
            }
        });
        addr
    }

    /// A data plane of two workers serving one TCP service (rr, one greeting real server)
    /// on a fresh loopback port.
    fn director() -> (Dataplane, SocketAddr) {
        let rs = greeter();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let vip = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        let core = Arc::new(Core::new(Ipvs::new(Config::default())));
        {
            let mut ipvs = core.lock();
            let key = ServiceKey::Addr {
                proto: Protocol::Tcp,
                addr: vip.ip(),
                port,
            };
            ipvs.add_service(key, ServiceConf::new(Family::V4, "rr"))
                .unwrap();
            ipvs.add_dest(&key, DestConf::new(rs.ip(), rs.port()).fwd(Forward::Masq))
                .unwrap();
        }
        let opts = Options {
            workers: 2,
            ..Options::default()
        };
        let mut dp = Dataplane::start(core, opts).unwrap();
        dp.sync();
        (dp, vip)
    }

    /// One connection through the director: its real server's greeting arrives.
    fn greeted(vip: SocketAddr) -> TcpStream {
        let mut c = TcpStream::connect(vip).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut hello = [0u8];
        c.read_exact(&mut hello).unwrap();
        assert_eq!(&hello, b"+", "relayed");
        c
    }

    #[test]
    fn a_worker_whose_thread_ended_is_never_given_a_connection() {
        let (mut dp, vip) = director();

        // worker 1's thread ends (its runtime, and with it its listener, is gone)
        dp.workers.pop().unwrap().join();
        assert_eq!(dp.worker_loads(), vec![0, u32::MAX as usize / 2]);

        // every new connection is relayed by worker 0, however many it already holds
        let conns: Vec<TcpStream> = (0..24).map(|_| greeted(vip)).collect();
        settled_loads(&dp, vec![24, u32::MAX as usize / 2]);
        drop(conns);
        dp.shutdown();
    }

    #[test]
    fn a_count_of_connections_that_never_arrived_is_dropped_after_one_to_two_seconds() {
        let (dp, vip) = director();
        let key = crate::Listen {
            transport: crate::Transport::Tcp,
            addr: vip,
        };
        assert!(
            dp.steered(&key),
            "the kernel chooses the workers (root, BPF)"
        );
        let steer = dp.bound[&key].clone().unwrap();

        // a turn has just happened when a count in the older generation is dropped; the
        // next one is a second away
        steer.sent(0, 1, true);
        let deadline = Instant::now() + Duration::from_secs(5);
        while steer.pending() != [0, 0] {
            assert!(Instant::now() < deadline, "no turn: {:?}", steer.pending());
            std::thread::sleep(Duration::from_millis(1));
        }
        // three SYNs counted for worker 0 whose connections never reach its queue (a failed
        // handshake, a SYN dropped at a full queue)
        let counted = Instant::now();
        steer.sent(0, 3, false);
        // while they count, worker 0 looks busier: new connections go to worker 1
        let mut conns: Vec<TcpStream> = (0..2).map(|_| greeted(vip)).collect();
        assert_eq!(steer.pending(), [3, 0]);
        settled_loads(&dp, vec![0, 2]);
        assert_eq!(steer.pending(), [3, 0]);

        // the worker's turns drop them: at the second turn from now, two seconds on (tokio
        // takes a tick up to 5 ms late as on time)
        let deadline = counted + Duration::from_secs(5);
        while steer.pending() != [0, 0] {
            assert!(Instant::now() < deadline, "still {:?}", steer.pending());
            std::thread::sleep(Duration::from_millis(5));
        }
        let lasted = counted.elapsed();
        assert!(
            lasted >= 2 * crate::steer::TURN - Duration::from_millis(20),
            "dropped after {lasted:?}"
        );

        // and worker 0 is the less loaded one again
        conns.extend((0..2).map(|_| greeted(vip)));
        settled_loads(&dp, vec![2, 2]);
        assert_eq!(steer.pending(), [0, 0]);
        drop(conns);
        dp.shutdown();
    }

    /// Wait until the workers hold `want` connections.
    fn settled_loads(dp: &Dataplane, want: Vec<usize>) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while dp.worker_loads() != want {
            assert!(Instant::now() < deadline, "{:?}", dp.worker_loads());
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

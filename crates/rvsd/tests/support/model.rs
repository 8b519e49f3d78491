//! The expected decisions, from rvs-core itself: an in-process `Ipvs` given the same
//! rvsadm command lines and fed the packets a relayed connection amounts to. rvs-core is
//! proven equal to the kernel by its golden replay, so where no kernel recording fits (the
//! hash of loopback client addresses), this is the kernel's decision.

use std::net::SocketAddr;

use rvs_config::ipvsadm::{parse, Command, NoResolve};
use rvs_core::datapath::{Packet, TcpFlags, Verdict};
use rvs_core::ipvs::{Config, Ipvs};
use rvs_core::time::Tick;

/// An engine fed by the test.
pub struct Model {
    ipvs: Ipvs,
    now: Tick,
}

impl Default for Model {
    fn default() -> Self {
        Model::new()
    }
}

impl Model {
    /// An empty engine.
    pub fn new() -> Model {
        Model {
            ipvs: Ipvs::new(Config::default()),
            now: Tick(0),
        }
    }

    /// Let `secs` seconds pass (entries and templates expire as their timers say).
    pub fn advance(&mut self, secs: u64) {
        self.now = Tick(self.now.as_millis() + secs * 1000);
        self.ipvs.advance(self.now);
    }

    /// Apply one rvsadm command line (a change; listings are not modelled).
    pub fn adm(&mut self, line: &str) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let cmd =
            parse("rvsadm", &words, &NoResolve).unwrap_or_else(|e| panic!("model: {line}: {e:?}"));
        let now = self.now;
        let ipvs = &mut self.ipvs;
        let res = match &cmd {
            Command::AddService { key, conf } => ipvs.add_service(*key, conf.clone()).map(drop),
            Command::EditService { key, conf } => ipvs.edit_service(key, conf.clone()),
            Command::DelService { key } => ipvs.del_service(key, now),
            Command::Flush => {
                ipvs.flush(now);
                Ok(())
            }
            Command::AddDest { key, dest, .. } => ipvs.add_dest(key, *dest).map(drop),
            Command::EditDest { key, dest, .. } => ipvs.edit_dest(key, *dest),
            Command::DelDest { key, dest, .. } => ipvs.del_dest(key, &dest.addr, dest.port, now),
            Command::SetTimeouts { tcp, tcpfin, udp } => ipvs.set_timeouts(*tcp, *tcpfin, *udp),
            other => panic!("model: not a change: {other:?}"),
        };
        res.unwrap_or_else(|e| panic!("model: {line}: {e}"));
    }

    fn forward(v: Verdict) -> Option<SocketAddr> {
        match v {
            Verdict::Forward(f) => Some(SocketAddr::new(f.daddr, f.dport)),
            _ => None,
        }
    }

    /// A TCP connection from `client` to `vip` that gets established: the real server it
    /// goes to, or `None` when there is no destination.
    pub fn tcp(&mut self, client: SocketAddr, vip: SocketAddr) -> Option<SocketAddr> {
        let now = self.now;
        let (c, v) = (client, vip);
        let syn = Packet::tcp(c.ip(), c.port(), v.ip(), v.port(), TcpFlags::SYN);
        let rs = Self::forward(self.ipvs.packet_in(&syn, now))?;
        let synack = Packet::tcp(rs.ip(), rs.port(), c.ip(), c.port(), TcpFlags::SYN_ACK);
        self.ipvs.packet_out(&synack, now);
        let ack = Packet::tcp(c.ip(), c.port(), v.ip(), v.port(), TcpFlags::ACK);
        self.ipvs.packet_in(&ack, now);
        Some(rs)
    }

    /// One UDP datagram from `client` to `vip`: the real server it goes to.
    pub fn udp(&mut self, client: SocketAddr, vip: SocketAddr) -> Option<SocketAddr> {
        let pkt = Packet::udp(client.ip(), client.port(), vip.ip(), vip.port());
        Self::forward(self.ipvs.packet_in(&pkt, self.now))
    }
}

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

    /// A TCP connection from `client` to `vip` that gets established and then closed by both
    /// ends, the client first: the real server it goes to, or `None` when there is no
    /// destination. The close matters when the client's kernel picks the same port again
    /// later: the entry it left is then in TIME_WAIT (NAT) and the new SYN is scheduled afresh,
    /// or still in FIN_WAIT (direct routing sees only the client's half) and goes where the
    /// old one went, as the kernel's `conn_reuse_mode` 1 does.
    pub fn tcp(&mut self, client: SocketAddr, vip: SocketAddr) -> Option<SocketAddr> {
        let now = self.now;
        let (c, v) = (client, vip);
        let input = |flags| Packet::tcp(c.ip(), c.port(), v.ip(), v.port(), flags);
        let rs = Self::forward(self.ipvs.packet_in(&input(TcpFlags::SYN), now))?;
        let output = |flags| Packet::tcp(rs.ip(), rs.port(), c.ip(), c.port(), flags);
        self.ipvs.packet_out(&output(TcpFlags::SYN_ACK), now);
        self.ipvs.packet_in(&input(TcpFlags::ACK), now);
        self.ipvs.packet_in(&input(TcpFlags::FIN_ACK), now);
        self.ipvs.packet_out(&output(TcpFlags::FIN_ACK), now);
        self.ipvs.packet_in(&input(TcpFlags::ACK), now);
        Some(rs)
    }

    /// One UDP datagram from `client` to `vip`: the real server it goes to.
    pub fn udp(&mut self, client: SocketAddr, vip: SocketAddr) -> Option<SocketAddr> {
        let pkt = Packet::udp(client.ip(), client.port(), vip.ip(), vip.port());
        Self::forward(self.ipvs.packet_in(&pkt, self.now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three rr real servers behind 10.0.0.1:80, forwarded with `fwd` (`-m` or `-g`).
    fn rr(fwd: &str) -> Model {
        let mut m = Model::new();
        m.adm("-A -t 10.0.0.1:80 -s rr");
        for i in 1..=3 {
            m.adm(&format!("-a -t 10.0.0.1:80 -r 10.0.1.{i}:80 {fwd}"));
        }
        m
    }

    #[test]
    fn a_port_used_again_is_scheduled_as_the_kernel_does() {
        let vip: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let (a, b): (SocketAddr, SocketAddr) = (
            "10.0.9.9:40000".parse().unwrap(),
            "10.0.9.9:40001".parse().unwrap(),
        );
        // NAT: the closed entry is in TIME_WAIT, the new SYN takes the next server
        let mut nat = rr("-m");
        let first = [a, b, a].map(|c| nat.tcp(c, vip).unwrap().ip().to_string());
        assert_eq!(first, ["10.0.1.3", "10.0.1.2", "10.0.1.1"]);
        // direct routing: the entry is in FIN_WAIT, the SYN follows it
        let mut dr = rr("-g");
        let first = [a, b, a].map(|c| dr.tcp(c, vip).unwrap().ip().to_string());
        assert_eq!(first, ["10.0.1.3", "10.0.1.2", "10.0.1.3"]);
    }
}

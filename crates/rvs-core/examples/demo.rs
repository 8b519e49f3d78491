//! A small director on a simulated clock: one wlc service with real servers of weight 1, 2 and
//! 3, a burst of client connections (some held open, some closed), then the table as
//! `ipvsadm -Ln` and `ipvsadm -Lnc` would show it, and the same service after two minutes.
//!
//! `cargo run --release -p rvs-core --example demo`

use std::net::IpAddr;

use rvs_core::datapath::{Packet, TcpFlags, Verdict};
use rvs_core::ipvs::Ipvs;
use rvs_core::model::{DestConf, Family, Forward, ServiceConf, ServiceKey, SockAddr};
use rvs_core::time::Tick;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut ipvs = Ipvs::new(Default::default());
    let vip: IpAddr = "127.0.0.1".parse()?;
    let key = ServiceKey::Addr {
        proto: rvs_core::model::Protocol::Tcp,
        addr: vip,
        port: 8080,
    };
    ipvs.add_service(key, ServiceConf::new(Family::V4, "wlc"))?;
    for (i, w) in [1, 2, 3].into_iter().enumerate() {
        let rs: IpAddr = format!("127.0.0.{}", 11 + i).parse()?;
        ipvs.add_dest(
            &key,
            DestConf::new(rs, 8001 + i as u16)
                .fwd(Forward::Masq)
                .weight(w),
        )?;
    }
    let mut now = Tick::from_secs(1);
    println!(
        "30 clients connect to {}; every third one closes at once:",
        SockAddr(vip, 8080)
    );
    for c in 0..30u16 {
        let client: IpAddr = format!("10.0.{}.{}", c / 200, 1 + c % 200).parse()?;
        let syn = Packet::tcp(client, 40000 + c, vip, 8080, TcpFlags::SYN);
        if let Verdict::Forward(f) = ipvs.packet_in(&syn, now) {
            let sep = if c % 5 == 4 { "\n" } else { "" };
            print!("  {:<16}{sep}", SockAddr(f.daddr, f.dport).to_string());
            let reply = Packet::tcp(f.daddr, f.dport, client, 40000 + c, TcpFlags::SYN_ACK);
            ipvs.packet_out(&reply, now);
            ipvs.packet_in(
                &Packet::tcp(client, 40000 + c, vip, 8080, TcpFlags::ACK),
                now,
            );
            if c.is_multiple_of(3) {
                ipvs.packet_in(
                    &Packet::tcp(client, 40000 + c, vip, 8080, TcpFlags::FIN_ACK),
                    now,
                );
            }
        }
        now = Tick(now.0 + 100);
    }
    println!();
    print_table(&ipvs);
    println!("\nFirst connection entries (ipvsadm -Lnc):");
    println!("pro expire state       source             virtual            destination");
    for r in ipvs.conn_listing(now).into_iter().take(6) {
        println!(
            "{:<3} {:02}:{:02}  {:<11} {:<18} {:<18} {}",
            r.proto.name(),
            r.expire_secs / 60,
            r.expire_secs % 60,
            r.state,
            SockAddr(r.client.0, r.client.1).to_string(),
            SockAddr(r.virt.0, r.virt.1).to_string(),
            SockAddr(r.dest.0, r.dest.1)
        );
    }
    now = Tick(now.0 + 130_000);
    ipvs.advance(now);
    println!("\nTwo minutes later (closed connections have expired; open ones stay):");
    print_table(&ipvs);
    Ok(())
}

fn print_table(ipvs: &Ipvs) {
    println!("Prot LocalAddress:Port Scheduler Flags");
    println!("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn");
    for svc in ipvs.services() {
        println!(
            "{:<4} {} {}",
            svc.key.protocol().name(),
            SockAddr(svc.key.addr(), svc.key.port()),
            svc.conf.scheduler
        );
        for d in ipvs.service_dests(svc) {
            println!(
                "  -> {:<28} {:<7} {:<6} {:<10} {:<10}",
                SockAddr(d.addr, d.port).to_string(),
                d.fwd.name(),
                d.weight,
                d.activeconns,
                d.inactconns
            );
        }
    }
}

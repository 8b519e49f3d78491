//! Per-protocol, per-state idle timeouts (`pd->timeout_table` in each `ip_vs_proto_*.c`) and
//! the `ipvsadm --set tcp tcpfin udp` / `-L --timeout` interface (`ip_vs_ctl.c:
//! ip_vs_set_timeout`, `__ip_vs_get_timeouts`).
//!
//! The kernel keeps timeouts in jiffies; rvs keeps milliseconds. `--set` changes exactly three
//! entries (TCP `ESTABLISHED`, TCP `FIN_WAIT`, UDP), a 0 leaves an entry alone, and a value
//! below 0 or above `INT_MAX / HZ` seconds is refused with `EINVAL`. SCTP timeouts have no
//! user interface in ipvsadm and keep their defaults.

use super::{sctp, tcp, udp, HZ};
use crate::error::IpvsError;
use crate::model::Protocol;

/// The timeout tables of one IPVS instance (one network namespace in the kernel).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    tcp: [u64; tcp::LAST as usize],
    udp: u64,
    sctp: [u64; sctp::LAST as usize],
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            tcp: tcp::DEFAULT_TIMEOUTS_MS,
            udp: udp::DEFAULT_TIMEOUT_MS,
            sctp: sctp::DEFAULT_TIMEOUTS_MS,
        }
    }
}

/// Largest value `--set` accepts, in seconds: `INT_MAX / HZ`.
pub const MAX_SET_SECS: i64 = i32::MAX as i64 / HZ as i64;

/// Timeout (ms) of the states the kernel has no table entry for: `[…_S_LAST] = 2*HZ`.
const FALLBACK_MS: u64 = 2_000;

impl Timeouts {
    /// The idle timeout in milliseconds of a `proto` connection in `state`.
    ///
    /// States outside a protocol's table get the kernel's sentinel value (2 s); protocol `IP`
    /// (templates) has no table and also gets 2 s, though templates never use it.
    pub fn timeout(&self, proto: Protocol, state: u16) -> u64 {
        let s = usize::from(state);
        match proto {
            Protocol::Tcp => self.tcp.get(s).copied().unwrap_or(FALLBACK_MS),
            Protocol::Udp if state == udp::NORMAL => self.udp,
            Protocol::Sctp => self.sctp.get(s).copied().unwrap_or(FALLBACK_MS),
            Protocol::Udp | Protocol::Ip => FALLBACK_MS,
        }
    }

    /// `ipvsadm --set tcp tcpfin udp`: seconds, 0 keeps the current value.
    ///
    /// Refused as a whole (nothing changed) with [`IpvsError::Invalid`] when any value is
    /// negative or larger than [`MAX_SET_SECS`].
    pub fn set_tcp_tcpfin_udp(&mut self, tcp: i64, tcpfin: i64, udp: i64) -> Result<(), IpvsError> {
        if [tcp, tcpfin, udp]
            .iter()
            .any(|&v| !(0..=MAX_SET_SECS).contains(&v))
        {
            return Err(IpvsError::Invalid);
        }
        let ms = |v: i64| v.unsigned_abs() * 1000;
        if tcp != 0 {
            self.tcp[usize::from(tcp::ESTABLISHED)] = ms(tcp);
        }
        if tcpfin != 0 {
            self.tcp[usize::from(tcp::FIN_WAIT)] = ms(tcpfin);
        }
        if udp != 0 {
            self.udp = ms(udp);
        }
        Ok(())
    }

    /// What `-L --timeout` prints: (tcp, tcpfin, udp) in whole seconds.
    pub fn get(&self) -> (u64, u64, u64) {
        (
            self.tcp[usize::from(tcp::ESTABLISHED)] / 1000,
            self.tcp[usize::from(tcp::FIN_WAIT)] / 1000,
            self.udp / 1000,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_print_900_120_300() {
        assert_eq!(Timeouts::default().get(), (900, 120, 300));
    }

    #[test]
    fn set_changes_three_entries_and_zero_keeps() {
        let mut t = Timeouts::default();
        t.set_tcp_tcpfin_udp(3600, 0, 60).unwrap();
        assert_eq!(t.get(), (3600, 120, 60));
        assert_eq!(t.timeout(Protocol::Tcp, tcp::ESTABLISHED), 3_600_000);
        assert_eq!(t.timeout(Protocol::Udp, udp::NORMAL), 60_000);
        // other TCP states and SCTP are untouched
        assert_eq!(t.timeout(Protocol::Tcp, tcp::TIME_WAIT), 120_000);
        assert_eq!(t.timeout(Protocol::Sctp, sctp::ESTABLISHED), 900_000);
        t.set_tcp_tcpfin_udp(0, 30, 0).unwrap();
        assert_eq!(t.get(), (3600, 30, 60));
    }

    #[test]
    fn out_of_range_is_einval_and_changes_nothing() {
        let mut t = Timeouts::default();
        assert_eq!(t.set_tcp_tcpfin_udp(10, -1, 10), Err(IpvsError::Invalid));
        assert_eq!(
            t.set_tcp_tcpfin_udp(MAX_SET_SECS + 1, 0, 0),
            Err(IpvsError::Invalid)
        );
        assert_eq!(t, Timeouts::default());
        t.set_tcp_tcpfin_udp(MAX_SET_SECS, 0, 0).unwrap();
        assert_eq!(t.get().0, 8_589_934);
    }

    #[test]
    fn states_outside_the_tables_get_two_seconds() {
        let t = Timeouts::default();
        assert_eq!(t.timeout(Protocol::Tcp, tcp::LAST), 2_000);
        assert_eq!(t.timeout(Protocol::Udp, 1), 2_000);
        assert_eq!(t.timeout(Protocol::Ip, 0), 2_000);
    }
}

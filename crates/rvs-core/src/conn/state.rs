//! Applying one packet to an entry's state: the common part of `tcp_state_transition`,
//! `udp_state_transition` and `sctp_state_transition` (`ip_vs_proto_*.c`).
//!
//! For TCP and SCTP, an entry flagged `NOOUTPUT` uses the INPUT-ONLY rows for input packets,
//! and the first output packet clears `NOOUTPUT` for good. When the state changes, an entry
//! bound to a destination flips its `INACTIVE` flag if it crosses the active / inactive line,
//! and the caller moves it between the destination's `activeconns` and `inactconns`
//! ([`CounterMove`]); entering `ESTABLISHED` assures the controlling template. Whatever the
//! state does, the timeout becomes the new state's timeout (the caller then re-arms the timer
//! to `now + timeout`, as `ip_vs_conn_put` does).

use super::entry::ConnState;
use super::timeouts::Timeouts;
use super::{conn_flags, sctp, tcp, udp};
use crate::model::Protocol;

/// Direction of a packet relative to the connection (`IP_VS_DIR_INPUT` / `_OUTPUT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// client → virtual service
    Input,
    /// real server → client (seen by the director only on NAT's return path, or DR replies
    /// that happen to pass through it)
    Output,
}

/// What the state machines need to know about a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketInfo {
    /// a TCP segment with these flags
    Tcp(tcp::TcpFlags),
    /// a UDP datagram
    Udp,
    /// an SCTP packet: type of the first chunk and of the chunk after it, if any
    Sctp {
        /// first chunk type
        first: u8,
        /// second chunk type (for the COOKIE + ABORT bundling rule)
        second: Option<u8>,
    },
}

impl PacketInfo {
    /// The protocol the packet belongs to.
    pub fn protocol(&self) -> Protocol {
        match self {
            PacketInfo::Tcp(_) => Protocol::Tcp,
            PacketInfo::Udp => Protocol::Udp,
            PacketInfo::Sctp { .. } => Protocol::Sctp,
        }
    }
}

/// How the caller must move the entry between its destination's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CounterMove {
    /// nothing to do
    None,
    /// `inactconns -= 1; activeconns += 1`
    ToActive,
    /// `activeconns -= 1; inactconns += 1`
    ToInactive,
}

/// What [`on_packet`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StateChange {
    /// state before the packet
    pub old_state: u16,
    /// state after the packet
    pub new_state: u16,
    /// counter move for the entry's destination (already reflected in `INACTIVE`)
    pub counter: CounterMove,
    /// the controlling template, if any, must be assured (see `ConnTable::assure_template`)
    pub assure_control: bool,
}

/// Run the protocol state machine for one packet on `st` and set its new timeout.
///
/// `secure_tcp` selects the TCP table used while the `secure_tcp` defence is on.
pub fn on_packet(
    st: &mut ConnState,
    dir: Direction,
    pkt: PacketInfo,
    timeouts: &Timeouts,
    secure_tcp: bool,
) -> StateChange {
    let old = st.state;
    let input_only = take_output_hint(st, dir);
    let (new, active) = match pkt {
        PacketInfo::Udp => {
            st.timeout = timeouts.timeout(Protocol::Udp, udp::NORMAL);
            return StateChange {
                old_state: old,
                new_state: old,
                counter: CounterMove::None,
                assure_control: dir == Direction::Output,
            };
        }
        PacketInfo::Tcp(flags) => {
            let row = match (dir, input_only) {
                (Direction::Output, _) => tcp::Dir::Output,
                (Direction::Input, true) => tcp::Dir::InputOnly,
                (Direction::Input, false) => tcp::Dir::Input,
            };
            let new = tcp::transition(old, row, flags.event(), secure_tcp);
            (new, tcp::is_active(new))
        }
        PacketInfo::Sctp { first, second } => {
            let row = match (dir, input_only) {
                (Direction::Output, _) => sctp::Dir::Output,
                (Direction::Input, true) => sctp::Dir::InputOnly,
                (Direction::Input, false) => sctp::Dir::Input,
            };
            let new = sctp::transition(old, row, sctp::packet_event(first, second));
            (new, sctp::is_active(new))
        }
    };
    let mut change = StateChange {
        old_state: old,
        new_state: new,
        counter: CounterMove::None,
        assure_control: false,
    };
    if new != old {
        change.counter = flip_activity(st, active);
        change.assure_control = new == established_of(pkt.protocol());
    }
    st.state = new;
    st.timeout = timeouts.timeout(pkt.protocol(), new);
    change
}

/// The `NOOUTPUT` rule: an output packet clears the flag; an input packet on a flagged entry
/// uses the input-only rows (returns true).
fn take_output_hint(st: &mut ConnState, dir: Direction) -> bool {
    if st.flags & conn_flags::NOOUTPUT == 0 {
        return false;
    }
    match dir {
        Direction::Output => {
            st.flags &= !conn_flags::NOOUTPUT;
            false
        }
        Direction::Input => true,
    }
}

/// Flip `INACTIVE` when a bound entry crosses the active line; report the counter move.
fn flip_activity(st: &mut ConnState, now_active: bool) -> CounterMove {
    if st.dest.is_none() {
        return CounterMove::None;
    }
    let inactive = st.flags & conn_flags::INACTIVE != 0;
    if !inactive && !now_active {
        st.flags |= conn_flags::INACTIVE;
        CounterMove::ToInactive
    } else if inactive && now_active {
        st.flags &= !conn_flags::INACTIVE;
        CounterMove::ToActive
    } else {
        CounterMove::None
    }
}

fn established_of(proto: Protocol) -> u16 {
    match proto {
        Protocol::Sctp => sctp::ESTABLISHED,
        _ => tcp::ESTABLISHED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{Conn, ConnState};
    use crate::dest::DestId;

    fn fresh(flags: u32) -> ConnState {
        let a = "10.0.0.1".parse().unwrap();
        let mut st = Conn::new(Protocol::Tcp, (a, 1000), (a, 80), (a, 80), flags).st;
        st.dest = Some(DestId(7));
        st
    }

    fn seg(b: u8) -> PacketInfo {
        PacketInfo::Tcp(tcp::TcpFlags::from_byte(b))
    }
    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    const FIN_ACK: u8 = 0x11;
    const SYN_ACK: u8 = 0x12;

    #[test]
    fn nat_flow_moves_counters_and_timeouts() {
        let t = Timeouts::default();
        // a new NAT entry is bound INACTIVE (counted in inactconns)
        let mut st = fresh(conn_flags::MASQ | conn_flags::INACTIVE);
        let c = on_packet(&mut st, Direction::Input, seg(SYN), &t, false);
        assert_eq!(
            (c.new_state, c.counter),
            (tcp::SYN_RECV, CounterMove::ToActive)
        );
        assert_eq!(st.timeout, 60_000);
        let c = on_packet(&mut st, Direction::Output, seg(SYN_ACK), &t, false);
        assert_eq!((c.new_state, c.counter), (tcp::SYN_RECV, CounterMove::None));
        let c = on_packet(&mut st, Direction::Input, seg(ACK), &t, false);
        assert_eq!(c.new_state, tcp::ESTABLISHED);
        assert!(c.assure_control);
        assert_eq!(st.timeout, 900_000);
        let c = on_packet(&mut st, Direction::Input, seg(FIN_ACK), &t, false);
        assert_eq!(
            (c.new_state, c.counter),
            (tcp::CLOSE_WAIT, CounterMove::ToInactive)
        );
        assert_ne!(st.flags & conn_flags::INACTIVE, 0);
        assert_eq!(st.timeout, 60_000);
    }

    #[test]
    fn dr_entry_uses_input_only_rows_until_output_seen() {
        let t = Timeouts::default();
        let flags = conn_flags::DROUTE | conn_flags::NOOUTPUT | conn_flags::INACTIVE;
        let mut st = fresh(flags);
        on_packet(&mut st, Direction::Input, seg(SYN), &t, false);
        on_packet(&mut st, Direction::Input, seg(ACK), &t, false);
        let c = on_packet(&mut st, Direction::Input, seg(FIN_ACK), &t, false);
        // INPUT-ONLY: client FIN from ESTABLISHED goes to FIN_WAIT (INPUT would say CLOSE_WAIT)
        assert_eq!(c.new_state, tcp::FIN_WAIT);
        assert_eq!(st.timeout, 120_000);
        assert_ne!(st.flags & conn_flags::NOOUTPUT, 0);
        // an output packet clears NOOUTPUT for good
        let mut st = fresh(flags);
        st.state = tcp::ESTABLISHED;
        on_packet(&mut st, Direction::Output, seg(ACK), &t, false);
        assert_eq!(st.flags & conn_flags::NOOUTPUT, 0);
        let c = on_packet(&mut st, Direction::Input, seg(FIN_ACK), &t, false);
        assert_eq!(c.new_state, tcp::CLOSE_WAIT);
    }

    #[test]
    fn flagless_segment_closes_and_clears_nooutput_on_output() {
        let t = Timeouts::default();
        let mut st = fresh(conn_flags::DROUTE | conn_flags::NOOUTPUT);
        st.state = tcp::ESTABLISHED;
        let c = on_packet(&mut st, Direction::Output, seg(0x08), &t, false);
        assert_eq!(
            (c.new_state, c.counter),
            (tcp::CLOSE, CounterMove::ToInactive)
        );
        assert_eq!(st.flags & conn_flags::NOOUTPUT, 0);
        assert_eq!(st.timeout, 10_000);
    }

    #[test]
    fn unbound_entry_changes_state_without_counter_moves() {
        let t = Timeouts::default();
        let mut st = fresh(conn_flags::MASQ | conn_flags::INACTIVE);
        st.dest = None;
        let c = on_packet(&mut st, Direction::Input, seg(SYN), &t, false);
        assert_eq!((c.new_state, c.counter), (tcp::SYN_RECV, CounterMove::None));
        assert_ne!(st.flags & conn_flags::INACTIVE, 0);
    }

    #[test]
    fn udp_refreshes_timeout_and_assures_on_reply() {
        let mut t = Timeouts::default();
        t.set_tcp_tcpfin_udp(0, 0, 45).unwrap();
        let mut st = fresh(conn_flags::MASQ | conn_flags::INACTIVE);
        let c = on_packet(&mut st, Direction::Input, PacketInfo::Udp, &t, false);
        assert_eq!(
            (c.new_state, c.counter, c.assure_control),
            (0, CounterMove::None, false)
        );
        assert_eq!(st.timeout, 45_000);
        let c = on_packet(&mut st, Direction::Output, PacketInfo::Udp, &t, false);
        assert!(c.assure_control);
        assert_ne!(st.flags & conn_flags::INACTIVE, 0);
    }

    #[test]
    fn sctp_established_is_active_and_assures() {
        let t = Timeouts::default();
        let mut st = fresh(conn_flags::DROUTE | conn_flags::NOOUTPUT | conn_flags::INACTIVE);
        let init = PacketInfo::Sctp {
            first: sctp::chunk::INIT,
            second: None,
        };
        let echo = PacketInfo::Sctp {
            first: sctp::chunk::COOKIE_ECHO,
            second: None,
        };
        let c = on_packet(&mut st, Direction::Input, init, &t, false);
        assert_eq!((c.new_state, c.counter), (sctp::INIT1, CounterMove::None));
        assert_eq!(st.timeout, 4_000);
        let c = on_packet(&mut st, Direction::Input, echo, &t, false);
        assert_eq!(c.new_state, sctp::ESTABLISHED);
        assert_eq!(c.counter, CounterMove::ToActive);
        assert!(c.assure_control);
        let abort = PacketInfo::Sctp {
            first: sctp::chunk::COOKIE_ECHO,
            second: Some(6),
        };
        let c = on_packet(&mut st, Direction::Input, abort, &t, false);
        assert_eq!(
            (c.new_state, c.counter),
            (sctp::CLOSED, CounterMove::ToInactive)
        );
    }
}
